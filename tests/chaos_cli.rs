//! `floe chaos`, short: three coordinator processes under writers while a
//! nemesis kills and pauses them; the history it writes is valid, and
//! `floe check` agrees. Every process it started is gone afterwards.

use std::process::Command;

#[test]
fn a_short_chaos_run_writes_a_valid_history() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("chaos");
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "chaos",
            "--duration",
            "8",
            "--writers",
            "3",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .expect("floe chaos runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("valid: no violation found"), "{text}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["valid"], true);
    assert!(summary["commits_acknowledged_found_once"].as_u64().unwrap() > 0);
    assert!(
        summary["fast_forwards_checked"].as_u64().unwrap() > 0,
        "{summary}"
    );
    let faults = summary["faults"].as_object().unwrap();
    assert!(
        faults.values().map(|n| n.as_u64().unwrap()).sum::<u64>() > 0,
        "{summary}"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("check")
        .arg(out_dir.join("history.jsonl"))
        .output()
        .unwrap();
    assert!(check.status.success());
}
