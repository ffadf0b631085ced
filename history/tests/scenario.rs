//! The new checkers over one realistic hand-made history, and broken
//! variants of it, each rejected by exactly the checker meant to catch it.
//!
//! The scenario (repo `r`): `create` makes `/a` (32 elements, chunks of
//! 8, fill 0) as C2; from C2, `w1` writes chunks 0-1 (C3), `w2` chunks
//! 2-3 (C4, fast-forwarded over C3) and `w3` chunks 0-1 again (refused:
//! double updates with C3); `w4`, from C3 with solver `theirs`, writes
//! chunks 1-2 and lands only chunk 1 (C5, chunk 2 given up to C4); strict
//! `s1` lands C6 on its base C5, strict `s2` from C5 is refused (tip C6);
//! `r1` shrinks `/a` to 28 (C7), `r2` grows it to 36 (C8), showing fill
//! where the shrink cut; `w5`, from C6, writing chunk 3, is refused by
//! the shrink. Branch `b` is made at C3 and gets `b1` (C9).
//! Three linearizable reads, two claims of task 17 and two completions
//! (the stale one refused).

use floe_history::{check, parse, Summary, Violation};
use serde_json::{json, Value};

/// A commit invoke's value.
fn commit(message: &str, base: &str, chunks: Value, changes: Value) -> Value {
    json!({"repo": "r", "branch": "main", "message": message, "mode": "rebase",
           "solver": "fail", "base": base, "chunks": {"/a": chunks}, "changes": changes})
}

fn write(region: [u64; 2], value: i64) -> Value {
    json!({"array": "/a", "write": [region], "value": value})
}

fn line(time: u64, process: Value, kind: &str, f: &str, value: Value) -> Value {
    json!({"process": process, "type": kind, "f": f, "value": value, "time": time})
}

fn entry(
    id: &str,
    message: &str,
    parent: Option<&str>,
    base: Option<&str>,
    chunks: Value,
) -> Value {
    json!({"id": id, "message": message, "parent": parent, "base": base, "chunks": {"/a": chunks}})
}

/// The main branch's final log, newest first.
fn main_log() -> Vec<Value> {
    vec![
        entry("C8", "r2", Some("C7"), Some("C7"), json!([])),
        entry("C7", "r1", Some("C6"), Some("C6"), json!([[3]])),
        entry("C6", "s1", Some("C5"), Some("C5"), json!([[3]])),
        entry("C5", "w4", Some("C4"), Some("C3"), json!([[1]])),
        entry("C4", "w2", Some("C3"), Some("C2"), json!([[2], [3]])),
        entry("C3", "w1", Some("C2"), Some("C2"), json!([[0], [1]])),
        entry("C2", "create", Some("C1"), Some("C1"), json!([])),
        json!({"id": "C1", "message": "init", "parent": null, "base": null, "chunks": {}}),
    ]
}

fn scenario() -> Vec<Value> {
    let create = json!([{"array": "/a", "create": {"shape": [32], "chunks": [8], "fill": 0}}]);
    let mut w4 = commit("w4", "C3", json!([[1], [2]]), json!([write([14, 18], 4)]));
    w4["solver"] = json!("theirs");
    let mut s1 = commit("s1", "C5", json!([[3]]), json!([write([30, 32], 5)]));
    s1["mode"] = json!("strict");
    let mut s2 = commit("s2", "C5", json!([[0]]), json!([write([0, 1], 6)]));
    s2["mode"] = json!("strict");
    let mut b1 = commit("b1", "C3", json!([[0]]), json!([write([0, 2], 9)]));
    b1["branch"] = json!("b");
    let refused = json!({"error": "conflict", "tip": "C4", "conflicts": [
        {"array": "/a", "kind": "chunk-double-update", "chunks": [[0], [1]], "total": 2}]});
    // w5 wrote chunk 3 of an array r1 shrank: r1's rewrite of that edge
    // chunk is no double update, the resize itself is the conflict.
    let resize_refused = json!({"error": "conflict", "tip": "C7", "conflicts": [
        {"array": "/a", "kind": "chunks-written-to-changed-array", "chunks": [[3]], "total": 1}]});
    let mut b_log: Vec<Value> = main_log().split_off(5);
    b_log.insert(0, entry("C9", "b1", Some("C3"), Some("C3"), json!([[0]])));
    let main_data = json!([[1, 10], [0, 4], [4, 2], [0, 4], [2, 8], [0, 8]]);
    vec![
        line(
            10,
            json!(0),
            "invoke",
            "commit",
            commit("create", "C1", json!([]), create),
        ),
        line(20, json!(0), "ok", "commit", json!({"commit": "C2"})),
        line(
            30,
            json!(1),
            "invoke",
            "commit",
            commit("w1", "C2", json!([[0], [1]]), json!([write([0, 10], 1)])),
        ),
        line(
            31,
            json!(2),
            "invoke",
            "commit",
            commit("w2", "C2", json!([[2], [3]]), json!([write([20, 28], 2)])),
        ),
        line(
            32,
            json!(3),
            "invoke",
            "commit",
            commit("w3", "C2", json!([[0], [1]]), json!([write([6, 12], 3)])),
        ),
        line(40, json!(1), "ok", "commit", json!({"commit": "C3"})),
        line(41, json!(2), "ok", "commit", json!({"commit": "C4"})),
        line(42, json!(3), "fail", "commit", refused),
        line(
            45,
            json!(9),
            "invoke",
            "read",
            json!({"repo": "r", "branch": "main"}),
        ),
        line(46, json!(9), "ok", "read", json!({"commit": "C4"})),
        line(50, json!(4), "invoke", "commit", w4),
        line(60, json!(4), "ok", "commit", json!({"commit": "C5"})),
        line(70, json!(5), "invoke", "commit", s1),
        line(71, json!(6), "invoke", "commit", s2),
        line(80, json!(5), "ok", "commit", json!({"commit": "C6"})),
        line(
            81,
            json!(6),
            "fail",
            "commit",
            json!({"error": "out of date", "out-of-date": "C6"}),
        ),
        line(
            90,
            json!(7),
            "invoke",
            "commit",
            commit(
                "r1",
                "C6",
                json!([[3]]),
                json!([{"array": "/a", "resize": [28]}]),
            ),
        ),
        line(
            91,
            json!(12),
            "invoke",
            "commit",
            commit("w5", "C6", json!([[3]]), json!([write([24, 26], 7)])),
        ),
        line(100, json!(7), "ok", "commit", json!({"commit": "C7"})),
        line(101, json!(12), "fail", "commit", resize_refused),
        line(
            110,
            json!(8),
            "invoke",
            "commit",
            commit(
                "r2",
                "C7",
                json!([]),
                json!([{"array": "/a", "resize": [36]}]),
            ),
        ),
        line(120, json!(8), "ok", "commit", json!({"commit": "C8"})),
        line(
            125,
            json!(9),
            "invoke",
            "read",
            json!({"repo": "r", "branch": "main"}),
        ),
        line(126, json!(9), "ok", "read", json!({"commit": "C8"})),
        line(
            130,
            json!(10),
            "invoke",
            "branch",
            json!({"repo": "r", "branch": "b", "at": "C3"}),
        ),
        line(131, json!(10), "ok", "branch", json!({})),
        line(140, json!(11), "invoke", "commit", b1),
        line(150, json!(11), "ok", "commit", json!({"commit": "C9"})),
        line(
            151,
            json!(9),
            "invoke",
            "read",
            json!({"repo": "r", "branch": "b"}),
        ),
        line(152, json!(9), "ok", "read", json!({"commit": "C9"})),
        line(
            200,
            json!("w1"),
            "invoke",
            "claim",
            json!({"session": "S1", "worker": "w1"}),
        ),
        line(
            201,
            json!("w1"),
            "ok",
            "claim",
            json!({"task": 17, "epoch": 1}),
        ),
        line(
            210,
            json!("w2"),
            "invoke",
            "claim",
            json!({"session": "S1", "worker": "w2"}),
        ),
        line(
            211,
            json!("w2"),
            "ok",
            "claim",
            json!({"task": 17, "epoch": 2}),
        ),
        line(
            220,
            json!("w1"),
            "invoke",
            "complete",
            json!({"session": "S1", "task": 17, "epoch": 1}),
        ),
        line(
            221,
            json!("w1"),
            "fail",
            "complete",
            json!({"error": "stale epoch 1, the task is at 2"}),
        ),
        line(
            230,
            json!("w2"),
            "invoke",
            "complete",
            json!({"session": "S1", "task": 17, "epoch": 2}),
        ),
        line(231, json!("w2"), "ok", "complete", json!({})),
        line(
            300,
            json!("final"),
            "ok",
            "read-log",
            json!({"repo": "r", "branch": "main", "log": main_log()}),
        ),
        line(
            301,
            json!("final"),
            "ok",
            "read-log",
            json!({"repo": "r", "branch": "b", "log": b_log}),
        ),
        line(
            302,
            json!("final"),
            "ok",
            "read-array",
            json!({"repo": "r", "branch": "main", "array": "/a",
            "commit": "C8", "shape": [36], "data": main_data}),
        ),
        line(
            303,
            json!("final"),
            "ok",
            "read-array",
            json!({"repo": "r", "branch": "b", "array": "/a",
            "commit": "C9", "shape": [32], "data": [[9, 2], [1, 8], [0, 22]]}),
        ),
    ]
}

/// The invoke of the commit with `message`.
fn invoke<'h>(history: &'h mut [Value], message: &str) -> &'h mut Value {
    let at = history
        .iter()
        .position(|l| l["type"] == "invoke" && l["value"]["message"] == message)
        .expect("the scenario has that commit");
    &mut history[at]
}

/// The completion of the commit with `message`.
fn end<'h>(history: &'h mut [Value], message: &str) -> &'h mut Value {
    let at = history
        .iter()
        .position(|l| l["type"] == "invoke" && l["value"]["message"] == message)
        .expect("the scenario has that commit");
    let process = history[at]["process"].clone();
    let rest = &mut history[at + 1..];
    rest.iter_mut()
        .find(|l| l["process"] == process)
        .expect("the commit completes")
}

/// The `n`th line with `f` and `type` (0-based).
fn nth<'h>(history: &'h mut [Value], f: &str, kind: &str, n: usize) -> &'h mut Value {
    history
        .iter_mut()
        .filter(|l| l["f"] == f && l["type"] == kind)
        .nth(n)
        .expect("the scenario has that line")
}

/// The final read of `f` (`read-log`, `read-array`) of `branch`.
fn final_read<'h>(history: &'h mut [Value], f: &str, branch: &str) -> &'h mut Value {
    history
        .iter_mut()
        .find(|l| l["f"] == f && l["value"]["branch"] == branch)
        .expect("the scenario reads that")
}

/// Commit `id` in the final log of `branch`.
fn log_entry<'h>(history: &'h mut [Value], branch: &str, id: &str) -> &'h mut Value {
    let log = final_read(history, "read-log", branch)["value"]["log"]
        .as_array_mut()
        .expect("a log");
    log.iter_mut()
        .find(|e| e["id"] == id)
        .expect("the log lists it")
}

fn judged(history: &[Value]) -> (Vec<Violation>, Summary) {
    let text: Vec<String> = history.iter().map(Value::to_string).collect();
    let lines = parse(&text.join("\n")).expect("the history parses");
    check(&lines)
}

/// The summary of a history that must be valid.
fn valid(history: &[Value]) -> Summary {
    let (violations, summary) = judged(history);
    assert!(violations.is_empty(), "{}", list(&violations));
    summary
}

/// The violations of a history only `checker` must reject.
fn rejected_by(checker: &str, history: &[Value]) -> Vec<String> {
    let (violations, _) = judged(history);
    assert!(!violations.is_empty(), "[{checker}] found nothing");
    assert!(
        violations.iter().all(|v| v.checker == checker),
        "not only [{checker}]:\n{}",
        list(&violations)
    );
    violations.iter().map(|v| v.to_string()).collect()
}

fn list(violations: &[Violation]) -> String {
    violations.iter().map(|v| format!("{v}\n")).collect()
}

fn contains(found: &[String], text: &str) -> bool {
    found.iter().any(|f| f.contains(text))
}

#[test]
fn the_scenario_is_valid_and_every_checker_judged_it() {
    let s = valid(&scenario());
    assert_eq!(s.acknowledged, 8);
    assert_eq!((s.lost, s.duplicated), (0, 0));
    assert_eq!(s.fast_forwards, 2);
    assert_eq!(s.conflicts_checked, 2);
    assert_eq!(s.strict_checked, 2);
    assert_eq!(s.reads_checked, 3);
    assert_eq!((s.arrays_checked, s.arrays_unjudged), (2, 0));
    assert_eq!(s.completions_checked, 1);
    assert!(s.skipped.is_empty(), "{:?}", s.skipped);
}

// --- conflicts ---------------------------------------------------------

/// `w3`'s refusal with its listing replaced.
fn w3_refused_with(conflicts: Value) -> Vec<Value> {
    let mut h = scenario();
    end(&mut h, "w3")["value"]["conflicts"] = conflicts;
    h
}

fn double_update(chunks: Value, total: u64) -> Value {
    json!([{"array": "/a", "kind": "chunk-double-update", "chunks": chunks, "total": total}])
}

#[test]
fn a_truncated_listing_with_the_exact_total_is_valid() {
    let s = valid(&w3_refused_with(double_update(json!([[1]]), 2)));
    assert_eq!(s.conflicts_checked, 2);
}

#[test]
fn a_conflict_listing_missing_a_chunk_is_reported() {
    let found = rejected_by(
        "conflicts",
        &w3_refused_with(double_update(json!([[0]]), 1)),
    );
    assert_eq!(found.len(), 1);
    assert!(contains(&found, "commit \"w3\" (base C2, tip C4): /a: chunk double updates listed {[0]} (total 1), but its chunks and those written after its base share {[0], [1]} (2)"), "{found:?}");
}

#[test]
fn a_conflict_on_a_chunk_nobody_else_wrote_is_reported() {
    // Chunk 2 was written by C4, but w3 did not write it; chunk 3 neither.
    let h = w3_refused_with(double_update(json!([[0], [1], [3]]), 3));
    assert!(contains(&rejected_by("conflicts", &h), "share {[0], [1]}"));
}

#[test]
fn a_truncated_listing_with_a_wrong_total_is_reported() {
    let h = w3_refused_with(double_update(json!([[0]]), 3));
    assert!(contains(
        &rejected_by("conflicts", &h),
        "listed {[0]} (total 3)"
    ));
}

#[test]
fn a_refusal_missing_its_double_updates_is_reported() {
    let other = json!([{"array": "/a", "kind": "metadata-double-update"}]);
    assert!(contains(
        &rejected_by("conflicts", &w3_refused_with(other)),
        "listed none"
    ));
}

#[test]
fn double_updates_count_only_commits_after_the_base() {
    // Made on C3, w3 passed only C4, which wrote chunks 2 and 3.
    let mut h = scenario();
    invoke(&mut h, "w3")["value"]["base"] = json!("C3");
    assert!(contains(&rejected_by("conflicts", &h), "share {} (0)"));
}

#[test]
fn a_resize_edge_rewrite_is_no_double_update() {
    let mut h = scenario();
    end(&mut h, "w5")["value"]["conflicts"] = double_update(json!([[3]]), 1);
    let found = rejected_by("conflicts", &h);
    assert!(contains(&found, "commit \"w5\" (base C6, tip C7): /a: chunk double updates listed {[3]} (total 1), but its chunks and those written after its base share {} (0)"), "{found:?}");
    // ... except against a commit creating the array anew.
    let mut h = scenario();
    end(&mut h, "w5")["value"]["conflicts"] = double_update(json!([[3]]), 1);
    invoke(&mut h, "w5")["value"]["changes"] = json!([
        {"array": "/a", "create": {"shape": [32], "chunks": [8], "fill": 0}}, write([24, 26], 7)]);
    valid(&h);
}

#[test]
fn a_log_that_is_not_one_chain_is_not_well_formed() {
    let mut h = scenario();
    let log = final_read(&mut h, "read-log", "b")["value"]["log"]
        .as_array_mut()
        .unwrap();
    log.push(entry("C12", "stray", Some("C2"), None, json!([])));
    let found = rejected_by("well-formed", &h);
    assert!(
        contains(
            &found,
            "the final read-log of r/b is not one chain: it has 2 tips: [\"C12\", \"C9\"]"
        ),
        "{found:?}"
    );
}

#[test]
fn a_refusal_against_its_own_base_is_reported() {
    let mut h = scenario();
    end(&mut h, "w3")["value"]["tip"] = json!("C2");
    assert!(contains(
        &rejected_by("conflicts", &h),
        "a tip that is not after its base"
    ));
}

#[test]
fn refusals_of_other_solvers_or_without_a_read_tip_are_not_judged() {
    let mut h = w3_refused_with(double_update(json!([[0]]), 1));
    invoke(&mut h, "w3")["value"]["solver"] = json!("theirs");
    assert_eq!(valid(&h).conflicts_checked, 1);
    let mut h = w3_refused_with(double_update(json!([[0]]), 1));
    end(&mut h, "w3")["value"]["tip"] = json!("C42");
    let s = valid(&h);
    assert_eq!(s.conflicts_checked, 1);
    assert_eq!(
        s.skipped["conflicts: base or tip not on the final read-log"],
        1
    );
}

// --- strict ------------------------------------------------------------

#[test]
fn a_strict_commit_landed_past_its_base_is_reported() {
    // s1 made on C4 but landed on C5 (the log agrees it was made on C4).
    let mut h = scenario();
    invoke(&mut h, "s1")["value"]["base"] = json!("C4");
    log_entry(&mut h, "main", "C6")["base"] = json!("C4");
    let found = rejected_by("strict", &h);
    assert_eq!(found.len(), 1);
    assert!(
        contains(&found, "strict commit \"s1\" made on C4 landed as C6 on C5"),
        "{found:?}"
    );
}

#[test]
fn a_strict_refusal_naming_its_base_or_an_unknown_tip_is_reported() {
    let mut h = scenario();
    end(&mut h, "s2")["value"]["out-of-date"] = json!("C5");
    assert!(contains(
        &rejected_by("strict", &h),
        "the tip C5 is not after its base C5"
    ));
    let mut h = scenario();
    end(&mut h, "s2")["value"]["out-of-date"] = json!("C77");
    assert!(contains(
        &rejected_by("strict", &h),
        "the tip C77 is not on r/main"
    ));
}

// --- data --------------------------------------------------------------

/// The main read-array with its data replaced.
fn main_reads(data: Value) -> Vec<Value> {
    let mut h = scenario();
    final_read(&mut h, "read-array", "main")["value"]["data"] = data;
    h
}

#[test]
fn a_grow_showing_what_a_shrink_cut_is_reported() {
    // As if r1's edge rewrite of chunk 3 had been dropped: s1's 5s at 30
    // and 31 come back when r2 grows the array.
    let h = main_reads(json!([
        [1, 10],
        [0, 4],
        [4, 2],
        [0, 4],
        [2, 8],
        [0, 2],
        [5, 2],
        [0, 4]
    ]));
    let found = rejected_by("data", &h);
    assert_eq!(found.len(), 1);
    assert!(
        contains(&found, "r/main /a at C8: element [30] (chunk [3]) is 5, but the model says 0 (that chunk was last written by C7 (\"r1\"))"),
        "{found:?}"
    );
}

#[test]
fn a_chunk_the_solver_gave_up_showing_its_writes_is_reported() {
    // w4 wrote 14..18 but landed only chunk 1: 16 and 17 must not be 4.
    let h = main_reads(json!([[1, 10], [0, 4], [4, 4], [0, 2], [2, 8], [0, 8]]));
    let found = rejected_by("data", &h);
    assert!(contains(&found, "element [16] (chunk [2]) is 4, but the model says 0 (that chunk was last written by C4 (\"w2\"))"), "{found:?}");
}

#[test]
fn data_on_a_branch_follows_main_up_to_the_branch_point() {
    let mut h = scenario();
    // As if b1 had been made on top of C5 rather than C3.
    final_read(&mut h, "read-array", "b")["value"]["data"] =
        json!([[9, 2], [1, 8], [0, 4], [4, 2], [0, 16]]);
    assert!(contains(&rejected_by("data", &h), "r/b /a at C9: element [14] (chunk [1]) is 4, but the model says 0 (that chunk was last written by C3 (\"w1\"))"));
}

#[test]
fn a_wrong_shape_is_reported() {
    let mut h = main_reads(json!([[1, 10], [0, 22]]));
    final_read(&mut h, "read-array", "main")["value"]["shape"] = json!([32]);
    assert!(contains(
        &rejected_by("data", &h),
        "shape [32], but the model's is [36]"
    ));
}

#[test]
fn a_commit_nobody_made_is_reported() {
    let mut h = scenario();
    let log = final_read(&mut h, "read-log", "main")["value"]["log"]
        .as_array_mut()
        .unwrap();
    log.insert(
        0,
        entry("C10", "ghost", Some("C8"), Some("C8"), json!([[0]])),
    );
    final_read(&mut h, "read-array", "main")["value"]["commit"] = json!("C10");
    let found = rejected_by("data", &h);
    assert!(
        contains(
            &found,
            "C10 (\"ghost\") wrote chunks {\"/a\": {[0]}} but no commit operation made it"
        ),
        "{found:?}"
    );
    // ... and what it wrote is not known, so the array is not judged.
    assert_eq!(judged(&h).1.arrays_unjudged, 1);
}

#[test]
fn arrays_whose_chain_has_a_commit_without_changes_are_unjudged() {
    let mut h = scenario();
    invoke(&mut h, "w1")["value"]
        .as_object_mut()
        .unwrap()
        .remove("changes");
    let s = valid(&h);
    assert_eq!((s.arrays_checked, s.arrays_unjudged), (0, 2));
    assert_eq!(s.skipped["data: a commit on the chain has no changes"], 2);
}

#[test]
fn malformed_changes_and_data_are_not_well_formed() {
    let mut h = scenario();
    invoke(&mut h, "w1")["value"]["changes"] =
        json!([{"array": "/a", "write": [[5, 2]], "value": 1}]);
    assert!(contains(
        &rejected_by("well-formed", &h),
        "region range [5,2] is not [start, end]"
    ));
    let h = main_reads(json!([[1, 10], [0, 4]]));
    assert!(contains(
        &rejected_by("well-formed", &h),
        "data holds 14 elements but shape [36] has Some(36)"
    ));
}

// --- reads -------------------------------------------------------------

#[test]
fn a_read_older_than_an_acknowledged_commit_is_reported() {
    let mut h = scenario();
    nth(&mut h, "read", "ok", 1)["value"]["commit"] = json!("C7");
    let found = rejected_by("reads", &h);
    assert!(contains(&found, "read of r/main saw C7, but C8 was acknowledged (at 120 ns) before the read began (at 125 ns)"), "{found:?}");
}

#[test]
fn a_read_of_a_branch_before_its_branch_point_is_reported() {
    let mut h = scenario();
    nth(&mut h, "read", "ok", 2)["value"]["commit"] = json!("C2");
    assert!(contains(
        &rejected_by("reads", &h),
        "read of r/b saw C2, but C9 was acknowledged"
    ));
    // C3 is where b was made, acknowledged before the read; C9 was not
    // acknowledged yet had the read begun before 150.
    let mut h = scenario();
    nth(&mut h, "read", "ok", 2)["value"]["commit"] = json!("C3");
    nth(&mut h, "read", "invoke", 2)["time"] = json!(135);
    valid(&h);
    nth(&mut h, "read", "ok", 2)["value"]["commit"] = json!("C2");
    assert!(contains(
        &rejected_by("reads", &h),
        "C3 was acknowledged (at 131 ns)"
    ));
}

#[test]
fn a_read_of_the_future_is_reported() {
    // C5's commit was invoked at 50; this read ended at 46.
    let mut h = scenario();
    nth(&mut h, "read", "ok", 0)["value"]["commit"] = json!("C5");
    let found = rejected_by("reads", &h);
    assert!(
        contains(
            &found,
            "saw C5, but its commit \"w4\" was invoked (at 50 ns) after the read ended (at 46 ns)"
        ),
        "{found:?}"
    );
}

#[test]
fn a_read_of_a_commit_not_on_the_branch_is_reported() {
    let mut h = scenario();
    nth(&mut h, "read", "ok", 1)["value"]["commit"] = json!("C9");
    assert!(contains(
        &rejected_by("reads", &h),
        "saw C9, but it is not on the branch's final log"
    ));
}

#[test]
fn a_read_concurrent_with_a_commit_may_miss_it() {
    // C4 was acknowledged at 41; a read begun at 40 may still see C3.
    let mut h = scenario();
    nth(&mut h, "read", "invoke", 0)["time"] = json!(40);
    nth(&mut h, "read", "ok", 0)["value"]["commit"] = json!("C3");
    valid(&h);
}

// --- epochs ------------------------------------------------------------

#[test]
fn a_stale_completion_accepted_is_reported() {
    let mut h = scenario();
    let stale = nth(&mut h, "complete", "fail", 0);
    stale["type"] = json!("ok");
    stale["value"] = json!({});
    let (violations, summary) = judged(&h);
    assert_eq!(summary.completions_checked, 2);
    let found = rejected_by("epochs", &h);
    assert_eq!(found.len(), 1, "{violations:?}");
    assert!(contains(&found, "session \"S1\" task 17: the completion at epoch 1 was accepted, but epoch 2 had been claimed before it began"), "{found:?}");
}

#[test]
fn a_completion_concurrent_with_a_later_claim_may_be_accepted() {
    // The completion began at 209, before epoch 2's claim was granted (211).
    let mut h = scenario();
    nth(&mut h, "complete", "invoke", 0)["time"] = json!(209);
    let stale = nth(&mut h, "complete", "fail", 0);
    stale["type"] = json!("ok");
    stale["value"] = json!({});
    assert_eq!(valid(&h).completions_checked, 2);
}

#[test]
fn a_claim_without_an_epoch_is_not_well_formed() {
    let mut h = scenario();
    nth(&mut h, "claim", "ok", 0)["value"] = json!({"task": 17});
    assert!(contains(
        &rejected_by("well-formed", &h),
        "a claim without session, task or epoch"
    ));
}

// --- commits -----------------------------------------------------------

#[test]
fn lost_and_duplicated_commits_are_counted() {
    let mut h = scenario();
    log_entry(&mut h, "b", "C9")["message"] = json!("w1");
    let (violations, s) = judged(&h);
    // b1 is lost from b; w1 is twice on b (but once on main, its branch).
    assert_eq!((s.lost, s.duplicated), (1, 0), "{violations:?}");
    let mut h = scenario();
    log_entry(&mut h, "main", "C7")["message"] = json!("r2");
    let (_, s) = judged(&h);
    assert_eq!((s.lost, s.duplicated), (1, 1));
}

// --- scale -------------------------------------------------------------

#[test]
fn a_long_chain_is_modelled_quickly() {
    // 3,000 commits on a 1,024-element array, each writing 20 elements
    // made on its parent, then a read of the tip.
    const N: u64 = 3_000;
    let mut h = vec![];
    let create = json!([{"array": "/a", "create": {"shape": [1024], "chunks": [32], "fill": -1}}]);
    h.push(line(
        1,
        json!(0),
        "invoke",
        "commit",
        commit("c0", "C0", json!([]), create),
    ));
    h.push(line(2, json!(0), "ok", "commit", json!({"commit": "C1"})));
    let mut log = vec![entry("C1", "c0", Some("C0"), Some("C0"), json!([]))];
    log.push(json!({"id": "C0", "message": "init", "chunks": {}}));
    let mut expected = vec![-1i64; 1024];
    for i in 1..N {
        let start = (i * 37) % 1000;
        let chunks: Vec<Value> = (start / 32..=(start + 19) / 32)
            .map(|c| json!([c]))
            .collect();
        let (id, parent) = (format!("C{}", i + 1), format!("C{i}"));
        let changes = json!([write([start, start + 20], i as i64)]);
        let message = format!("c{i}");
        h.push(line(
            10 * i,
            json!(1),
            "invoke",
            "commit",
            commit(&message, &parent, json!(chunks), changes),
        ));
        h.push(line(
            10 * i + 1,
            json!(1),
            "ok",
            "commit",
            json!({"commit": id}),
        ));
        log.push(entry(&id, &message, Some(&parent), None, json!(chunks)));
        expected[start as usize..start as usize + 20].fill(i as i64);
    }
    log.reverse();
    let mut runs: Vec<Value> = vec![];
    for v in expected {
        match runs.last_mut() {
            Some(run) if run[0] == v => run[1] = json!(run[1].as_u64().unwrap() + 1),
            _ => runs.push(json!([v, 1])),
        }
    }
    h.push(line(
        10 * N,
        json!("final"),
        "ok",
        "read-log",
        json!({"repo": "r", "branch": "main", "log": log}),
    ));
    let read = json!({"repo": "r", "branch": "main", "array": "/a", "shape": [1024], "data": runs});
    h.push(line(10 * N + 1, json!("final"), "ok", "read-array", read));
    let begun = std::time::Instant::now();
    let s = valid(&h);
    assert_eq!((s.acknowledged, s.arrays_checked), (N, 1));
    assert!(begun.elapsed().as_secs() < 20, "took {:?}", begun.elapsed());
}
