//! Raft log storage with an explicit line between synced and unsynced writes.
//!
//! [`LogStore`] is the small write interface the node core needs on top of
//! raft-rs's read-only [`Storage`] trait. [`MemStorage`] implements it in
//! memory for tests and the simulation: every write is applied at once to a
//! *live* image (what raft reads) and queued; it reaches the *synced* image
//! only when [`LogStore::sync`] is called with a mark at or past it. A crash
//! ([`MemStorage::crash`], or restarting from [`MemStorage::durable`]) keeps
//! the synced image only, so whatever was not synced is lost — exactly what a
//! process crash does to writes that were not fsynced.
//!
//! [`LogImage`] is the in-memory view both kinds of store serve raft's
//! reads from; a durable store (raft-engine, in `floe-server`) keeps one as
//! its live image and writes the same operations to disk.

use std::collections::VecDeque;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use thiserror::Error;

/// A write to the log store failed (a full disk, an I/O error, a failed
/// fsync). The node cannot know what reached the disk, so it stops for good
/// (see [`crate::node::Node::failure`]) rather than acknowledge anything more.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("log store write failed: {0}")]
pub struct LogError(pub String);

/// The writes the node core makes to its log store. Writes are visible to
/// raft at once (through [`Storage`]); they are durable only once a
/// [`LogStore::sync`] covering their [`LogStore::mark`] returned.
pub trait LogStore: Storage {
    /// Appends entries, first dropping any existing entries from the first
    /// new index on (a new leader overwrote them). No entries: no write.
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError>;
    /// Saves the hard state (term, vote, commit).
    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError>;
    /// Raises the saved commit index (the light ready's commit index).
    fn set_commit(&mut self, commit: u64) -> Result<(), LogError>;
    /// Saves the configuration in force after an applied conf change.
    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), LogError>;
    /// Installs a snapshot received from the leader: it replaces the whole
    /// log and the configuration.
    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), LogError>;
    /// Stores a snapshot of the local state machine and drops the log
    /// entries it covers (log compaction). Ignored unless newer than the
    /// stored snapshot and within the log.
    fn compact(&mut self, snap: &Snapshot) -> Result<(), LogError>;
    /// The stored snapshot (an empty one, index 0, when there is none).
    fn last_snapshot(&self) -> Snapshot;
    /// A position covering every write made so far.
    fn mark(&self) -> u64;
    /// Makes every write up to `mark` durable (fsync).
    fn sync(&mut self, mark: u64) -> Result<(), LogError>;
}

/// One write, as queued between the live and the synced images.
#[derive(Clone, Debug)]
enum Op {
    Append(Vec<Entry>),
    HardState(HardState),
    Commit(u64),
    ConfState(ConfState),
    Install(Snapshot),
    Compact(Snapshot),
}

/// A complete log-store state in memory: hard state, configuration, the
/// latest snapshot and the entries after it, with raft's reads over it.
#[derive(Clone, Debug, Default)]
pub struct LogImage {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// `entries[i].index == snapshot index + 1 + i`.
    entries: Vec<Entry>,
}

impl LogImage {
    /// An image recovered from disk: the saved states, the snapshot, and
    /// the saved entries (those the snapshot covers are skipped).
    pub fn recovered(
        hard_state: HardState,
        conf_state: ConfState,
        snapshot: Snapshot,
        entries: Vec<Entry>,
    ) -> Self {
        let mut image = LogImage {
            hard_state,
            conf_state,
            snapshot,
            entries: Vec::new(),
        };
        image.append(&entries);
        image
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The latest snapshot (index 0 when none).
    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The index the snapshot covers up to.
    pub fn snap_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// The first index held in the log.
    pub fn first_index(&self) -> u64 {
        self.snap_index() + 1
    }

    /// The last index held (the snapshot's when the log is empty).
    pub fn last_index(&self) -> u64 {
        self.snap_index() + self.entries.len() as u64
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(entries) => self.append(entries),
            Op::HardState(hs) => self.hard_state = hs.clone(),
            Op::Commit(commit) => self.raise_commit(*commit),
            Op::ConfState(cs) => self.conf_state = cs.clone(),
            Op::Install(snap) => self.install(snap),
            Op::Compact(snap) => self.compact(snap),
        }
    }

    /// Saves the hard state.
    pub fn set_hard_state(&mut self, hs: &HardState) {
        self.hard_state = hs.clone();
    }

    /// Saves the configuration.
    pub fn set_conf_state(&mut self, cs: &ConfState) {
        self.conf_state = cs.clone();
    }

    /// Raises the saved commit index.
    pub fn raise_commit(&mut self, commit: u64) {
        self.hard_state.commit = self.hard_state.commit.max(commit);
    }

    /// Appends entries, dropping any existing ones from the first new
    /// index on.
    pub fn append(&mut self, entries: &[Entry]) {
        // Entries at or below the snapshot are already covered by it; raft
        // never sends them, but a store must not corrupt itself if it did.
        let first = self.first_index();
        let entries: Vec<&Entry> = entries.iter().filter(|e| e.index >= first).collect();
        let Some(head) = entries.first() else { return };
        if head.index > self.last_index() + 1 {
            debug_assert!(false, "gap in appended raft log at {}", head.index);
            return;
        }
        self.entries.truncate((head.index - first) as usize);
        self.entries.extend(entries.into_iter().cloned());
    }

    /// Installs a snapshot from the leader: it replaces the whole log and
    /// the configuration.
    pub fn install(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        self.snapshot = snap.clone();
        self.entries.clear();
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.raise_commit(meta.index);
    }

    /// Whether [`LogImage::compact`] would take `snap`: newer than the
    /// stored snapshot and within the log.
    pub fn takes(&self, snap: &Snapshot) -> bool {
        let index = snap.get_metadata().index;
        index > self.snap_index() && index <= self.last_index()
    }

    /// Stores a local snapshot and drops the entries it covers (ignored
    /// unless [`LogImage::takes`] it).
    pub fn compact(&mut self, snap: &Snapshot) {
        if !self.takes(snap) {
            return;
        }
        let index = snap.get_metadata().index;
        let drop = (index - self.snap_index()) as usize;
        self.entries.drain(..drop);
        self.snapshot = snap.clone();
        // A snapshot covers only committed entries; keep the saved commit
        // consistent with it even if the commit index write was not synced.
        self.raise_commit(index);
    }
}

/// An in-memory [`LogStore`] with a synced/unsynced line (see the module
/// docs). Single-threaded; clone it to copy both images.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    live: LogImage,
    synced: LogImage,
    /// Writes not yet synced, each with its mark.
    pending: VecDeque<(u64, Op)>,
    written: u64,
    /// Injected fault: every write and sync fails from now on.
    broken: bool,
}

impl MemStorage {
    /// An empty, uninitialized store (a node that will join a cluster and
    /// receive its first snapshot from the leader).
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh store holding only what was synced: what a restarted process
    /// finds on disk.
    pub fn durable(&self) -> Self {
        Self {
            live: self.synced.clone(),
            synced: self.synced.clone(),
            pending: VecDeque::new(),
            written: self.written,
            broken: false,
        }
    }

    /// Loses every unsynced write, in place.
    pub fn crash(&mut self) {
        self.live = self.synced.clone();
        self.pending.clear();
    }

    /// How many writes are not yet synced.
    pub fn unsynced_writes(&self) -> usize {
        self.pending.len()
    }

    /// The hard state raft would find after a restart.
    pub fn durable_hard_state(&self) -> &HardState {
        &self.synced.hard_state
    }

    /// The last log index a restart would find.
    pub fn durable_last_index(&self) -> u64 {
        self.synced.last_index()
    }

    /// True when what a restart would find holds entry `index` of term
    /// `term` (or a snapshot past it): by Raft's log matching, then every
    /// entry up to it.
    pub fn durably_holds(&self, index: u64, term: u64) -> bool {
        let image = &self.synced;
        if index <= image.snap_index() {
            return true;
        }
        index <= image.last_index()
            && raft::Storage::term(&self.durable(), index).ok() == Some(term)
    }

    /// The first log index still held (everything before is in the snapshot).
    pub fn first_log_index(&self) -> u64 {
        self.live.first_index()
    }

    /// Injects a disk failure: every later write and sync fails (a restart
    /// from [`MemStorage::durable`] gets a working disk with the synced
    /// image).
    pub fn break_disk(&mut self) {
        self.broken = true;
    }

    fn check(&self) -> Result<(), LogError> {
        if self.broken {
            return Err(LogError("injected disk failure".into()));
        }
        Ok(())
    }

    fn write(&mut self, op: Op) -> Result<(), LogError> {
        self.check()?;
        self.live.apply(&op);
        self.written += 1;
        self.pending.push_back((self.written, op));
        Ok(())
    }
}

impl LogStore for MemStorage {
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.write(Op::Append(entries.to_vec()))
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.write(Op::HardState(hs.clone()))
    }

    fn set_commit(&mut self, commit: u64) -> Result<(), LogError> {
        if commit <= self.live.hard_state.commit {
            return Ok(());
        }
        self.write(Op::Commit(commit))
    }

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), LogError> {
        self.write(Op::ConfState(cs.clone()))
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), LogError> {
        self.write(Op::Install(snap.clone()))
    }

    fn compact(&mut self, snap: &Snapshot) -> Result<(), LogError> {
        self.write(Op::Compact(snap.clone()))
    }

    fn last_snapshot(&self) -> Snapshot {
        self.live.snapshot.clone()
    }

    fn mark(&self) -> u64 {
        self.written
    }

    fn sync(&mut self, mark: u64) -> Result<(), LogError> {
        self.check()?;
        while self.pending.front().is_some_and(|(m, _)| *m <= mark) {
            if let Some((_, op)) = self.pending.pop_front() {
                self.synced.apply(&op);
            }
        }
        Ok(())
    }
}

impl Storage for LogImage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first_index()) as usize;
        let to = (high - self.first_index()) as usize;
        let mut entries = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snap_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < self.snap_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first_index()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(LogImage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(LogImage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = &self.snapshot;
        if snap.get_metadata().index == 0 || snap.get_metadata().index < request_index {
            // Snapshots are taken as the state machine applies; the leader
            // retries once a newer one exists.
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap.clone())
    }
}

/// Implements raft's `Storage` for a log store by reading its live
/// [`LogImage`] field: `storage_over_image!(MemStorage, live)`.
#[macro_export]
macro_rules! storage_over_image {
    ($store:ty, $field:ident) => {
        impl raft::Storage for $store {
            fn initial_state(&self) -> raft::Result<raft::RaftState> {
                self.$field.initial_state()
            }

            fn entries(
                &self,
                low: u64,
                high: u64,
                max_size: impl Into<Option<u64>>,
                context: raft::GetEntriesContext,
            ) -> raft::Result<Vec<raft::eraftpb::Entry>> {
                self.$field.entries(low, high, max_size, context)
            }

            fn term(&self, idx: u64) -> raft::Result<u64> {
                self.$field.term(idx)
            }

            fn first_index(&self) -> raft::Result<u64> {
                Ok(self.$field.first_index())
            }

            fn last_index(&self) -> raft::Result<u64> {
                Ok(self.$field.last_index())
            }

            fn snapshot(
                &self,
                request_index: u64,
                to: u64,
            ) -> raft::Result<raft::eraftpb::Snapshot> {
                self.$field.snapshot(request_index, to)
            }
        }
    };
}

storage_over_image!(MemStorage, live);

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        }
    }

    fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = voters.to_vec();
        s.data = vec![0xaa].into();
        s
    }

    fn terms(s: &MemStorage) -> Vec<u64> {
        let (lo, hi) = (s.first_index().unwrap(), s.last_index().unwrap());
        (lo..=hi).map(|i| s.term(i).unwrap()).collect()
    }

    #[test]
    fn unsynced_writes_are_lost_on_crash() {
        let mut s = MemStorage::new();
        s.install_snapshot(&snapshot(1, 1, &[1, 2, 3])).unwrap();
        s.append(&[entry(2, 1), entry(3, 1)]).unwrap();
        let mark = s.mark();
        s.sync(mark).unwrap();
        s.append(&[entry(4, 2)]).unwrap();
        let hs = HardState {
            term: 2,
            vote: 1,
            ..Default::default()
        };
        s.set_hard_state(&hs).unwrap();
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.unsynced_writes(), 2);

        let restarted = s.durable();
        assert_eq!(restarted.last_index().unwrap(), 3);
        assert_eq!(restarted.initial_state().unwrap().hard_state.term, 1);
        assert_eq!(
            restarted.initial_state().unwrap().conf_state.voters,
            vec![1, 2, 3]
        );
        s.crash();
        assert_eq!(s.last_index().unwrap(), 3);
        assert_eq!(s.unsynced_writes(), 0);
    }

    #[test]
    fn sync_is_partial_up_to_the_mark() {
        let mut s = MemStorage::new();
        s.append(&[entry(1, 1)]).unwrap();
        let first = s.mark();
        s.append(&[entry(2, 1)]).unwrap();
        s.sync(first).unwrap();
        assert_eq!(s.durable().last_index().unwrap(), 1);
        s.sync(s.mark()).unwrap();
        assert_eq!(s.durable().last_index().unwrap(), 2);
    }

    #[test]
    fn append_overwrites_a_conflicting_suffix() {
        let mut s = MemStorage::new();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).unwrap();
        s.append(&[entry(2, 2)]).unwrap();
        assert_eq!(terms(&s), vec![1, 2]);
    }

    #[test]
    fn compaction_keeps_the_snapshot_term_and_later_entries() {
        let mut s = MemStorage::new();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2)])
            .unwrap();
        s.compact(&snapshot(3, 2, &[1])).unwrap();
        assert_eq!(s.first_index().unwrap(), 4);
        assert_eq!(s.term(3).unwrap(), 2);
        assert!(matches!(
            s.term(2),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.entries(2, 4, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(s.snapshot(0, 2).unwrap().get_metadata().index, 3);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 3);
        // An older snapshot never rolls the store back.
        s.compact(&snapshot(2, 1, &[1])).unwrap();
        assert_eq!(s.first_index().unwrap(), 4);
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let mut s = MemStorage::new();
        s.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        s.install_snapshot(&snapshot(7, 3, &[1, 2])).unwrap();
        assert_eq!(s.first_index().unwrap(), 8);
        assert_eq!(s.last_index().unwrap(), 7);
        let state = s.initial_state().unwrap();
        assert_eq!(state.hard_state.commit, 7);
        assert_eq!(state.hard_state.term, 3);
        assert_eq!(state.conf_state.voters, vec![1, 2]);
    }

    #[test]
    fn a_broken_disk_fails_every_write_and_keeps_the_synced_image() {
        let mut s = MemStorage::new();
        s.append(&[entry(1, 1)]).unwrap();
        s.sync(s.mark()).unwrap();
        s.append(&[entry(2, 1)]).unwrap();
        s.break_disk();
        assert!(s.append(&[entry(3, 1)]).is_err());
        assert!(s.set_commit(2).is_err());
        assert!(s.sync(s.mark()).is_err());
        assert_eq!(s.last_index().unwrap(), 2, "a failed append wrote nothing");
        let restarted = s.durable();
        assert_eq!(restarted.last_index().unwrap(), 1);
        let mut restarted = restarted;
        restarted.append(&[entry(2, 1)]).unwrap();
    }

    #[test]
    fn no_snapshot_yet_is_temporarily_unavailable() {
        let s = MemStorage::new();
        assert!(matches!(
            s.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(!s.initial_state().unwrap().initialized());
    }
}
