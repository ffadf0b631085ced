//! Whole runs: determinism, clean seeds pass with 3 and 5 coordinators,
//! the liveness oracle fires when something never recovers, and a
//! violation tells how to replay it.

use std::collections::BTreeSet;

use floe_sim::{oracle, run_seed, run_seed_tweaked, SimOptions, Tweaks};

fn opts(nodes: usize) -> SimOptions {
    SimOptions {
        nodes,
        ..SimOptions::default()
    }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for (seed, nodes) in [(0, 3), (1, 3), (7, 5), (42, 3), (1234, 5)] {
        let a = run_seed(seed, &opts(nodes));
        let b = run_seed(seed, &opts(nodes));
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(
            (a.events, a.sim_ms, a.commits),
            (b.events, b.sim_ms, b.commits)
        );
        assert!(
            a.events > 100 && a.commits > 1,
            "seed {seed} did little: {a:?}"
        );
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: BTreeSet<u64> = (0..30).map(|s| run_seed(s, &opts(3)).trace_hash).collect();
    assert_eq!(hashes.len(), 30);
}

#[test]
fn printing_the_trace_does_not_change_it() {
    let quiet = run_seed(5, &opts(3));
    let loud = run_seed(
        5,
        &SimOptions {
            trace: true,
            ..opts(3)
        },
    );
    assert_eq!(quiet.trace_hash, loud.trace_hash);
}

fn clean(nodes: usize, seeds: std::ops::Range<u64>) {
    let (mut commits, mut conflicts, mut ffs) = (0, 0, 0);
    for seed in seeds {
        let r = run_seed(seed, &opts(nodes));
        if let Some(v) = r.violation {
            panic!("{v}");
        }
        commits += r.commits;
        conflicts += r.conflicts;
        ffs += r.fast_forwards;
    }
    // The workload must actually contend.
    assert!(
        commits > 0 && conflicts > 0 && ffs > 0,
        "{commits} {conflicts} {ffs}"
    );
}

#[test]
fn clean_seeds_pass_with_three_coordinators() {
    clean(3, 0..60);
}

#[test]
fn clean_seeds_pass_with_five_coordinators() {
    clean(5, 0..40);
}

#[test]
fn clean_seeds_far_apart_pass() {
    for start in [10_000, 1 << 32, u64::MAX - 20] {
        clean(3, start..start + 10);
    }
}

#[test]
fn liveness_fires_when_a_node_never_comes_back() {
    let tweaks = Tweaks {
        keep_down: Some(2),
        liveness_ms: Some(5_000),
    };
    let r = run_seed_tweaked(3, &opts(3), &tweaks);
    let v = r
        .violation
        .expect("a node that never restarts never catches up");
    assert_eq!(v.oracle, oracle::LIVENESS, "{v}");
    assert!(v.detail.contains("down: [2]"), "{v}");
}

#[test]
fn liveness_fires_when_the_bound_is_too_short() {
    let tweaks = Tweaks {
        liveness_ms: Some(1),
        ..Tweaks::default()
    };
    let v = (0..10)
        .find_map(|s| run_seed_tweaked(s, &opts(3), &tweaks).violation)
        .expect("1 ms is too short to settle");
    assert_eq!(v.oracle, oracle::LIVENESS, "{v}");
}

#[test]
fn a_violation_says_how_to_replay_it() {
    let opts = SimOptions {
        nodes: 5,
        bug: Some(floe_sim::Bug::SkipConflictCheck),
        trace: false,
    };
    let v = (0..20)
        .find_map(|s| run_seed(s, &opts).violation)
        .expect("caught");
    let text = v.to_string();
    assert!(
        text.contains(&format!("seed {} violated oracle", v.seed)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "floe-sim --seed {} --trace --nodes 5 --bug skip-conflict-check",
            v.seed
        )),
        "{text}"
    );
    assert!(!v.tail.is_empty() && v.tail.len() <= floe_sim::trace::TAIL + 1);
}

#[test]
fn membership_changes_happen_and_stay_clean() {
    use floe_sim::faults::FaultKind;
    let (mut added, mut removed) = (0, 0);
    for (seed, nodes) in (0..40).map(|s| (s, 3)).chain((100..120).map(|s| (s, 5))) {
        let r = run_seed(seed, &opts(nodes));
        if let Some(v) = r.violation {
            panic!("{v}");
        }
        added += r.faults.0.get(&FaultKind::AddNode).copied().unwrap_or(0);
        removed += r.faults.0.get(&FaultKind::RemoveNode).copied().unwrap_or(0);
    }
    assert!(added > 3 && removed > 3, "added {added}, removed {removed}");
}
