//! Planted bugs: switches that break the state machine on purpose, so the
//! simulation can prove its oracles catch them. Compiled only with the
//! `planted-bugs` feature, which only the `floe-sim` crate enables; the
//! shipped `floe` binary does not depend on it (CI checks its bytes).

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
