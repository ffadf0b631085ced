//! The harness has teeth: every planted bug is caught by some oracle
//! within a small budget of seeds, from two different starting seeds.

use floe_sim::{run_seed, Bug, SimOptions};

/// Seeds each bug may take to be caught. Measured over 20 windows of
/// seeds with 3 and 5 nodes, the worst case is 5 (most bugs: 1 or 2); the
/// margin keeps unrelated changes from making this test flaky. See the
/// crate's `budget` example.
const BUDGET: u64 = 15;

fn caught(bug: Bug, nodes: usize, start: u64) -> (u64, &'static str) {
    let opts = SimOptions {
        nodes,
        bug: Some(bug),
        trace: false,
    };
    (start..start + BUDGET)
        .find_map(|s| run_seed(s, &opts).violation.map(|v| (s, v.oracle)))
        .unwrap_or_else(|| panic!("{} not caught in {BUDGET} seeds from {start}", bug.name()))
}

fn check(bug: Bug) {
    for (nodes, start) in [(3, 0), (3, 1_000), (5, 2_000)] {
        let (seed, oracle) = caught(bug, nodes, start);
        eprintln!(
            "{}: caught by {oracle} at seed {seed} ({nodes} nodes)",
            bug.name()
        );
    }
}

#[test]
fn skip_conflict_check_is_caught() {
    check(Bug::SkipConflictCheck);
}

#[test]
fn check_only_tip_is_caught() {
    check(Bug::CheckOnlyTip);
}

#[test]
fn reply_before_commit_is_caught() {
    check(Bug::ReplyBeforeCommit);
}

#[test]
fn accept_stale_epoch_is_caught() {
    check(Bug::AcceptStaleEpoch);
}

#[test]
fn forget_idempotency_on_restore_is_caught() {
    check(Bug::ForgetIdempotencyOnRestore);
}

#[test]
fn snapshot_out_of_order_is_caught() {
    check(Bug::SnapshotOutOfOrder);
}

#[test]
fn stale_reads_are_caught() {
    check(Bug::StaleReads);
}

#[test]
fn tag_follows_branch_is_caught() {
    check(Bug::TagFollowsBranch);
}

#[test]
fn index_lost_on_restore_is_caught() {
    check(Bug::IndexLostOnRestore);
}

#[test]
fn ignore_lost_log_is_caught() {
    check(Bug::IgnoreLostLog);
}

#[test]
fn bugs_have_names() {
    for bug in Bug::ALL {
        assert_eq!(Bug::from_name(bug.name()), Some(bug));
    }
}
