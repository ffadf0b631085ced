//! Planted bugs: switches that break the state machine and the node core
//! on purpose, so the simulation and the chaos harness can prove their
//! checkers catch them. Compiled only with the `planted-bugs` feature,
//! which the `floe-sim` crate and a `floe` built with `--features
//! planted-bugs` enable; the shipped `floe` binary has none of it (CI
//! checks its bytes).

use crate::node::NodeBugs;

/// Which planted bugs are active. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The commit rule lands every rebase without looking for conflicts
    /// (breaks "exact conflicts": missed conflicts).
    pub skip_conflict_check: bool,
    /// The fast-forward check compares only with the tip commit, not with
    /// every commit since the base (missed conflicts with older commits).
    pub check_only_tip: bool,
    /// A task completion is accepted whatever its epoch and lease, so a
    /// zombie worker's late completion lands.
    pub accept_stale_epoch: bool,
    /// Restoring a snapshot drops the idempotency table, so a retry after a
    /// snapshot install is executed a second time.
    pub forget_idempotency_on_restore: bool,
    /// The solver `theirs` gives up a resize's rewritten edge chunks like
    /// any chunk, so a later grow shows what the shrink cut off.
    pub theirs_drops_resize_chunks: bool,
    /// A tag resolves to the tip of the branch its commit was made on, so
    /// it follows the branch instead of staying where it was created.
    pub tag_follows_branch: bool,
    /// Restoring a snapshot leaves every branch's conflict index empty, so
    /// a rebase after a snapshot install misses conflicts with the commits
    /// that landed before it.
    pub index_lost_on_restore: bool,
}

/// One planted bug by name: the simulation (`floe-sim --bug NAME`) and a
/// coordinator of a planted-bugs build (`FLOE_PLANTED_BUG=NAME`) switch
/// it on through the same table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// Rebases land without looking for conflicts.
    SkipConflictCheck,
    /// The fast-forward check compares only with the tip commit.
    CheckOnlyTip,
    /// The leader applies and answers before the entry is committed.
    ReplyBeforeCommit,
    /// A completion is accepted whatever its epoch.
    AcceptStaleEpoch,
    /// Restoring a snapshot forgets the idempotency table.
    ForgetIdempotencyOnRestore,
    /// A follower restores a stale (older) snapshot, rolling back.
    SnapshotOutOfOrder,
    /// A writer's shrink that ends inside a chunk does not rewrite the edge
    /// chunk (client core).
    ForgetEdgeRewrite,
    /// A writer's grow after a shrink in the same commit does not blank the
    /// chunks the shrink cut off (client core).
    ForgetRegrow,
    /// The solver `theirs` gives up a resize's rewritten edge chunks.
    TheirsDropsResizeChunks,
    /// Every node answers reads from its own state without ReadIndex.
    StaleReads,
    /// A tag resolves to the current tip of its commit's branch.
    TagFollowsBranch,
    /// Restoring a snapshot leaves the branches' conflict indexes empty.
    IndexLostOnRestore,
    /// The leader ignores that a wiped follower lost its log.
    IgnoreLostLog,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 13] = [
        Bug::SkipConflictCheck,
        Bug::CheckOnlyTip,
        Bug::ReplyBeforeCommit,
        Bug::AcceptStaleEpoch,
        Bug::ForgetIdempotencyOnRestore,
        Bug::SnapshotOutOfOrder,
        Bug::ForgetEdgeRewrite,
        Bug::ForgetRegrow,
        Bug::TheirsDropsResizeChunks,
        Bug::StaleReads,
        Bug::TagFollowsBranch,
        Bug::IndexLostOnRestore,
        Bug::IgnoreLostLog,
    ];

    /// The bug's name (`floe-sim --bug NAME`, `FLOE_PLANTED_BUG=NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Bug::SkipConflictCheck => "skip-conflict-check",
            Bug::CheckOnlyTip => "check-only-tip",
            Bug::ReplyBeforeCommit => "reply-before-commit",
            Bug::AcceptStaleEpoch => "accept-stale-epoch",
            Bug::ForgetIdempotencyOnRestore => "forget-idempotency-on-restore",
            Bug::SnapshotOutOfOrder => "snapshot-out-of-order",
            Bug::ForgetEdgeRewrite => "forget-edge-rewrite",
            Bug::ForgetRegrow => "forget-regrow",
            Bug::TheirsDropsResizeChunks => "theirs-drops-resize-chunks",
            Bug::StaleReads => "stale-reads",
            Bug::TagFollowsBranch => "tag-follows-branch",
            Bug::IndexLostOnRestore => "index-lost-on-restore",
            Bug::IgnoreLostLog => "ignore-lost-log",
        }
    }

    /// The bug named `name`, if any.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The state-machine switches for `bug` (all off for `None`).
    pub fn state_bugs(bug: Option<Bug>) -> Bugs {
        Bugs {
            skip_conflict_check: bug == Some(Bug::SkipConflictCheck),
            check_only_tip: bug == Some(Bug::CheckOnlyTip),
            accept_stale_epoch: bug == Some(Bug::AcceptStaleEpoch),
            forget_idempotency_on_restore: bug == Some(Bug::ForgetIdempotencyOnRestore),
            theirs_drops_resize_chunks: bug == Some(Bug::TheirsDropsResizeChunks),
            tag_follows_branch: bug == Some(Bug::TagFollowsBranch),
            index_lost_on_restore: bug == Some(Bug::IndexLostOnRestore),
        }
    }

    /// The node-core switches for `bug`.
    pub fn node_bugs(bug: Option<Bug>) -> NodeBugs {
        NodeBugs {
            reply_before_commit: bug == Some(Bug::ReplyBeforeCommit),
            apply_snapshot_out_of_order: bug == Some(Bug::SnapshotOutOfOrder),
            serve_stale_reads: bug == Some(Bug::StaleReads),
            ignore_lost_log: bug == Some(Bug::IgnoreLostLog),
        }
    }
}

impl std::fmt::Display for Bug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for bug in Bug::ALL {
            assert_eq!(Bug::from_name(bug.name()), Some(bug));
        }
        assert_eq!(Bug::from_name("nope"), None);
    }
}
