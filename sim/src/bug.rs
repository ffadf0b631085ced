//! Planted bugs: switches in the coordinator and the client core (built
//! with their `planted-bugs` features, which only this crate enables) that
//! the simulation turns on to prove its oracles have teeth. Each must be
//! caught within a small budget of seeds.

use floe_coordinator::bugs::Bugs;
use floe_coordinator::node::NodeBugs;
use floe_worker::machine::ClientBugs;

/// One planted bug, switchable only through the simulation.
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

    /// The bug's name on the command line (`floe-sim --bug NAME`).
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
    pub(crate) fn state_bugs(bug: Option<Bug>) -> Bugs {
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

    /// The client-core switches for `bug`.
    pub(crate) fn client_bugs(bug: Option<Bug>) -> ClientBugs {
        ClientBugs {
            forget_edge_rewrite: bug == Some(Bug::ForgetEdgeRewrite),
            forget_regrow: bug == Some(Bug::ForgetRegrow),
        }
    }

    /// The node-core switches for `bug`.
    pub(crate) fn node_bugs(bug: Option<Bug>) -> NodeBugs {
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
