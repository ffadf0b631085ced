//! Teeth on real processes: `floe chaos` against coordinators running a
//! planted bug reports it. Built only with `--features planted-bugs`
//! (`cargo test -p floe --features planted-bugs --test chaos_planted --
//! --test-threads=1`, as `.ci/run` does); the shipped binary has no
//! planted code. The coordinators inherit `FLOE_PLANTED_BUG`.
#![cfg(feature = "planted-bugs")]

use std::process::Command;

/// Runs `floe chaos` with `bug` planted (`writers` writers, no workers);
/// returns its exit success and its output.
fn chaos(bug: &str, faults: &str, writers: &str, seconds: &str, seed: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .env("FLOE_PLANTED_BUG", bug)
        .args(["chaos", "--writers", writers, "--workers", "0"])
        .args(["--duration", seconds])
        .args(["--faults", faults, "--seed", seed, "--out"])
        .arg(dir.path().join("chaos"))
        .output()
        .expect("floe chaos runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = std::fs::read_to_string(dir.path().join("chaos/summary.json")).unwrap();
    assert!(
        summary.contains(&format!("\"planted_bug\": \"{bug}\"")),
        "{summary}"
    );
    (out.status.success(), text)
}

/// The leader answers before its entry is committed: a leader cut off
/// from its peers acknowledges commits the majority never sees, and the
/// final read does not have them. Only commits already sent when the
/// leader is cut off are lost (a checkout needs a quorum), so many
/// writers: 16 gave 7 to 11 losses in 40 s runs here.
#[test]
fn reply_before_commit_loses_acknowledged_commits() {
    let (ok, text) = chaos("reply-before-commit", "partition", "16", "60", "2");
    assert!(!ok, "{text}");
    assert!(text.contains("[commits] acknowledged commit"), "{text}");
    assert!(text.contains(": lost"), "{text}");
}

/// Restoring a snapshot (a restarted coordinator) forgets which requests
/// were executed: a duplicate delivery of an acknowledged commit is
/// executed again.
#[test]
fn forget_idempotency_on_restore_executes_a_duplicate_again() {
    let (ok, text) = chaos("forget-idempotency-on-restore", "kill", "4", "30", "1");
    assert!(!ok, "{text}");
    assert!(
        text.contains("[idempotency] a duplicate delivery of"),
        "{text}"
    );
}
