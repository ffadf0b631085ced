//! `floe check HISTORY` as a user runs it: exit 0 on a valid history,
//! non-zero with the violation and its lines on a broken one, and a clear
//! error on a file that is not a history.

use std::process::Command;

const HISTORY: &str = r#"{"process": 0, "type": "invoke", "f": "commit", "value": {"repo": "demo", "branch": "main", "message": "w0-1"}, "time": 1}
{"process": 0, "type": "ok", "f": "commit", "value": {"commit": "C2"}, "time": 2}
{"process": 1, "type": "ok", "f": "read-log", "value": {"repo": "demo", "branch": "main", "log": [LOG]}, "time": 3}
"#;

fn check(log: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, HISTORY.replace("LOG", log)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("check")
        .arg(&path)
        .output()
        .expect("floe runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn floe_check_judges_a_history() {
    let (ok, text) = check(r#"{"id": "C2", "message": "w0-1"}"#);
    assert!(ok, "{text}");
    assert!(text.contains("valid: no violation found"), "{text}");
    let (ok, text) = check("");
    assert!(!ok, "{text}");
    assert!(
        text.contains("[commits] acknowledged commit C2 (\"w0-1\") is not on demo/main: lost"),
        "{text}"
    );
    assert!(
        text.contains("2: {\"process\": 0, \"type\": \"ok\""),
        "{text}"
    );
    let (ok, text) = check("oops");
    assert!(!ok);
    assert!(
        text.contains("is not a history") && text.contains("line 3"),
        "{text}"
    );
}

#[test]
fn floe_check_draws_the_latency_picture_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    let log = r#"{"id": "C2", "message": "w0-1"}"#;
    std::fs::write(&path, HISTORY.replace("LOG", log)).unwrap();
    let svg = dir.path().join("latency.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("check")
        .arg(&path)
        .arg("--picture")
        .arg(&svg)
        .output()
        .expect("floe runs");
    assert!(out.status.success(), "{out:?}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("commit ok (1)"), "{drawn}");
}
