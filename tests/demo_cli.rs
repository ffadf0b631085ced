//! `floe demo`, as a new user runs it.

use std::process::Command;

/// Runs `floe demo ARGS`; returns its output, checked for the seed's
/// outcomes.
fn demo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .arg("demo")
        .args(args)
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
    stdout.into_owned()
}

#[test]
fn demo_replays_every_scenario_on_processes_and_stops_them() {
    let stdout = demo(&["--workers", "3"]);
    assert!(
        stdout.contains("processes on loopback: n1 (pid"),
        "{stdout}"
    );
    assert!(stdout.contains("(a process) wrote"), "{stdout}");
    // Every process it started is gone: their pids are not alive.
    let pids: Vec<i32> = stdout
        .split("(pid ")
        .skip(1)
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 6, "{stdout}");
    for pid in pids {
        // SAFETY: signal 0 only checks that the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "process {pid} outlived the demo");
    }
}

#[test]
fn demo_replays_every_scenario_embedded() {
    let stdout = demo(&["--embedded", "--workers", "3"]);
    assert!(stdout.contains("embedded"), "{stdout}");
}
