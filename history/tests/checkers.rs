//! Every checker passes a good hand-made history and fails on a broken
//! one, naming the lines involved.

use floe_history::{check, parse, Type};

/// Two writers commit, one fails on a conflict, one times out; a tag is
/// created; the final reads see exactly that.
const GOOD: &str = r#"
{"process": 0, "type": "invoke", "f": "commit", "value": {"repo": "demo", "branch": "main", "message": "w0-1"}, "time": 1}
{"process": 1, "type": "invoke", "f": "commit", "value": {"repo": "demo", "branch": "main", "message": "w1-1"}, "time": 2}
{"process": 0, "type": "ok", "f": "commit", "value": {"commit": "C2"}, "time": 3}
{"process": "nemesis", "type": "info", "f": "kill", "value": {"node": 2}, "time": 4}
{"process": 1, "type": "fail", "f": "commit", "value": {"error": "conflict"}, "time": 5}
{"process": 2, "type": "invoke", "f": "commit", "value": {"repo": "demo", "branch": "main", "message": "w2-1"}, "time": 6}
{"process": 2, "type": "info", "f": "commit", "value": {"error": "timed out"}, "time": 7}
{"process": 3, "type": "invoke", "f": "tag", "value": {"repo": "demo", "tag": "v1", "at": "C2"}, "time": 8}
{"process": 3, "type": "ok", "f": "tag", "value": {}, "time": 9}
{"process": 4, "type": "ok", "f": "read-log", "value": {"repo": "demo", "branch": "main", "log": [{"id": "C3", "message": "w2-1"}, {"id": "C2", "message": "w0-1"}, {"id": "C1", "message": "create"}]}, "time": 10}
{"process": 4, "type": "ok", "f": "read-tags", "value": {"repo": "demo", "tags": {"v1": "C2"}}, "time": 11}
"#;

/// The good history with its first commit, C1, carrying `message`.
fn c1_named(message: &str) -> String {
    GOOD.replace(
        r#"{"id": "C1", "message": "create"}"#,
        &format!(r#"{{"id": "C1", "message": "{message}"}}"#),
    )
}

fn verdict(text: &str) -> Vec<String> {
    let lines = parse(text).expect("the history parses");
    check(&lines).0.iter().map(|v| v.to_string()).collect()
}

#[test]
fn the_good_history_is_valid() {
    let lines = parse(GOOD).unwrap();
    let (violations, summary) = check(&lines);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(summary.acknowledged, 1);
    assert_eq!(summary.indeterminate_landed, 1);
    assert_eq!(summary.ops[&("commit".to_string(), Type::Fail)], 1);
}

#[test]
fn a_lost_acknowledged_commit_is_reported_with_its_lines() {
    let broken = GOOD.replace(r#"{"id": "C2", "message": "w0-1"}, "#, "");
    let found = verdict(&broken);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("acknowledged commit C2 (\"w0-1\") is not on demo/main: lost"));
    assert!(
        found[0].contains("4: {\"process\": 0, \"type\": \"ok\""),
        "{}",
        found[0]
    );
}

#[test]
fn a_duplicated_or_renamed_commit_is_reported() {
    assert!(verdict(&c1_named("w0-1"))[0].contains("is on demo/main 2 times"));
    let renamed = GOOD.replace(
        r#"{"id": "C2", "message": "w0-1"}"#,
        r#"{"id": "C4", "message": "w0-1"}"#,
    );
    assert!(verdict(&renamed)[0].contains("acknowledged as C2 but \"w0-1\" is on demo/main as C4"));
}

#[test]
fn a_failed_commit_that_landed_is_reported() {
    assert!(verdict(&c1_named("w1-1"))[0].contains("commit \"w1-1\" failed but is on demo/main"));
}

#[test]
fn an_indeterminate_commit_landing_twice_is_reported() {
    assert!(verdict(&c1_named("w2-1"))[0].contains("indeterminate commit \"w2-1\" landed 2 times"));
}

#[test]
fn a_moved_tag_is_reported() {
    let broken = GOOD.replace(r#""tags": {"v1": "C2"}"#, r#""tags": {"v1": "C3"}"#);
    assert!(verdict(&broken)[0].contains("tag demo/v1 was created at C2 but names C3 at the end"));
}

#[test]
fn a_completion_of_another_operation_is_not_well_formed() {
    let broken = GOOD.replace(
        r#"{"process": 3, "type": "ok", "f": "tag""#,
        r#"{"process": 3, "type": "ok", "f": "commit""#,
    );
    assert!(verdict(&broken)
        .iter()
        .any(|v| v.contains("process 3 completed \"commit\" while \"tag\" was in flight")));
}

#[test]
fn malformed_lines_are_refused_with_their_number() {
    let err = parse("{\"process\": 0}\n").unwrap_err();
    assert_eq!(err.line, 1);
    let err = parse("\n{\"process\": 0, \"type\": \"later\", \"f\": \"x\"}\n").unwrap_err();
    assert_eq!(err.line, 2);
}

/// A branch where C4 (made on C2) was fast-forwarded over C3.
fn rebased(c3_chunks: &str) -> String {
    let log = format!(
        r#"[{{"id": "C4", "message": "b", "parent": "C3", "base": "C2", "chunks": {{"/a": [[1], [2]]}}}},
            {{"id": "C3", "message": "a", "parent": "C2", "base": "C2", "chunks": {{"/a": {c3_chunks}}}}},
            {{"id": "C2", "message": "create", "parent": "C1", "base": "C1", "chunks": {{}}}}]"#
    );
    let log = log.replace('\n', " ");
    format!(
        r#"{{"process": 0, "type": "ok", "f": "read-log", "value": {{"repo": "r", "branch": "main", "log": {log}}}, "time": 1}}"#
    )
}

#[test]
fn a_fast_forward_over_a_commit_sharing_chunks_is_reported() {
    let lines = parse(&rebased("[[0], [3]]")).unwrap();
    let (violations, summary) = check(&lines);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(summary.fast_forwards, 1);
    let found = verdict(&rebased("[[0], [2]]"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains(
            "C4 (\"b\") was fast-forwarded from C2 over C3 (\"a\") although both wrote /a [[2]]"
        ),
        "{}",
        found[0]
    );
    let lost_base = rebased("[[0]]").replace(
        r#""base": "C2", "chunks": {"/a": [[1]"#,
        r#""base": "C9", "chunks": {"/a": [[1]"#,
    );
    assert!(verdict(&lost_base)[0].contains("C4 was made on C9, which is not before its parent C3"));
}

/// A duplicate delivery of w0-1's request, answered as `answer`.
fn resent(answer: &str) -> String {
    let resend = format!(
        r#"{{"process": 5, "type": "invoke", "f": "resend", "value": {{"repo": "demo", "branch": "main", "message": "w0-1", "commit": "C2"}}, "time": 9}}
{{"process": 5, "type": {answer}, "f": "resend", "time": 9}}
"#
    );
    format!("{GOOD}{resend}")
}

#[test]
fn a_duplicate_delivery_must_get_the_original_answer() {
    assert!(verdict(&resent(r#""ok", "value": {"commit": "C2"}"#)).is_empty());
    let again = verdict(&resent(r#""ok", "value": {"commit": "C4"}"#));
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].starts_with("[idempotency]") && again[0].contains("new commit C4"));
    let refused = verdict(&resent(
        r#""fail", "value": {"error": "out of date", "out-of-date": "C3"}"#,
    ));
    assert!(
        refused[0].contains("refused as a new commit"),
        "{refused:?}"
    );
    // Unknown outcomes are not judged.
    assert!(verdict(&resent(r#""info", "value": {"error": "timed out"}"#)).is_empty());
}

/// C3 was made on C1 and landed on C2, both writing chunk [0], with
/// `solver`.
fn over_an_overlap(solver: &str) -> String {
    format!(
        r#"{{"process": 0, "type": "invoke", "f": "commit", "value": {{"repo": "r", "branch": "main", "message": "a", "solver": "fail"}}, "time": 1}}
{{"process": 0, "type": "ok", "f": "commit", "value": {{"commit": "C2"}}, "time": 2}}
{{"process": 1, "type": "invoke", "f": "commit", "value": {{"repo": "r", "branch": "main", "message": "b", "mode": "rebase", "solver": "{solver}"}}, "time": 3}}
{{"process": 1, "type": "ok", "f": "commit", "value": {{"commit": "C3"}}, "time": 4}}
{{"process": "final", "type": "ok", "f": "read-log", "value": {{"repo": "r", "branch": "main", "log": [{{"id": "C3", "message": "b", "parent": "C2", "base": "C1", "chunks": {{"/a": [[0]]}}}}, {{"id": "C2", "message": "a", "parent": "C1", "base": "C1", "chunks": {{"/a": [[0]]}}}}, {{"id": "C1", "message": "create", "chunks": {{}}}}]}}, "time": 5}}
"#
    )
}

#[test]
fn only_the_solver_ours_may_land_over_an_overlap() {
    assert!(verdict(&over_an_overlap("ours")).is_empty());
    let found = verdict(&over_an_overlap("fail"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("[fast-forwards]"), "{found:?}");
}
