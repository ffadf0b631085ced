//! `floe demo`, as a new user runs it.

use std::process::Command;

#[test]
fn demo_replays_every_scenario_and_exits_zero() {
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["demo", "--workers", "3"])
        .output()
        .expect("floe runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "floe   -> S2: sorry, your branch is out of date (main: C2)",
        "floe   -> S2: yes",
        "floe   -> S2: success: new commit C3",
        "floe   -> S2: no: conflict detected",
        "/array: chunk double update at [1]",
        "success: new commit C2 (50 tasks, 100 chunks, one commit)",
        "all scenarios behaved as the seed describes",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
