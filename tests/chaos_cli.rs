//! `floe chaos`, short: three coordinator processes behind the harness's
//! proxies and two worker processes, under writers and cooperative jobs,
//! while a nemesis kills, pauses, partitions and re-members them; the history it writes is valid (nothing lost or
//! duplicated, the data equal to the model), the picture is drawn, and
//! `floe check` agrees.

use std::process::Command;

#[test]
fn a_short_chaos_run_writes_a_valid_history() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("chaos");
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "chaos",
            "--duration",
            "12",
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
    assert_eq!(summary["commits_lost"], 0, "{summary}");
    assert_eq!(summary["commits_duplicated"], 0, "{summary}");
    for judged in [
        "arrays_checked",
        "reads_checked",
        "strict_checked",
        "resends_checked",
        "completions_checked",
    ] {
        assert!(summary[judged].as_u64().unwrap() > 0, "{judged}: {summary}");
    }
    assert_eq!(summary["arrays_unjudged"], 0, "{summary}");
    let svg = std::fs::read_to_string(out_dir.join("latency.svg")).unwrap();
    assert!(svg.contains("commit ok"), "the picture has a legend");
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
