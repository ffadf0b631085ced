//! The `floe-sim` command line, as the README uses it.

use std::process::Command;

fn sim(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_floe-sim"))
        .args(args)
        .output()
        .expect("floe-sim runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lists_every_planted_bug() {
    let (ok, out, _) = sim(&["--list-bugs"]);
    assert!(ok);
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(names.len(), floe_sim::Bug::ALL.len());
    assert!(names.contains(&"check-only-tip"));
}

#[test]
fn unknown_bug_is_a_clear_error() {
    let (ok, _, err) = sim(&["--bug", "no-such-bug", "--seeds", "1"]);
    assert!(!ok);
    assert!(err.contains("unknown bug \"no-such-bug\""), "{err}");
}

#[test]
fn one_seed_prints_its_trace_hash_and_is_clean() {
    let (ok, out, err) = sim(&["--seed", "7", "--check-determinism"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("seed 7: trace hash "), "{out}");
    assert!(out.contains("violations: 0"), "{out}");
}

#[test]
fn a_planted_bug_is_caught_and_named() {
    let (ok, out, err) = sim(&["--bug", "skip-conflict-check", "--seeds", "50"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("planted bug skip-conflict-check caught at seed"),
        "{out}"
    );
}

#[test]
fn four_nodes_are_refused() {
    let (ok, _, err) = sim(&["--seeds", "1", "--nodes", "4"]);
    assert!(!ok);
    assert!(err.contains("--nodes must be 3 or 5"), "{err}");
}
