//! The raft-engine log store: what was synced survives a reopen, what was
//! not does not, and snapshots (compaction and installs) recover with their
//! files.

use floe_coordinator::storage::LogStore;
use floe_server::log::EngineLog;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage};

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index}").into_bytes().into(),
        ..Default::default()
    }
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn snapshot(index: u64, term: u64, data: &[u8]) -> Snapshot {
    let mut snap = Snapshot::default();
    snap.mut_metadata().index = index;
    snap.mut_metadata().term = term;
    snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    snap.data = data.to_vec().into();
    snap
}

fn entries(log: &EngineLog, low: u64, high: u64) -> Vec<u64> {
    log.entries(low, high, None, GetEntriesContext::empty(false))
        .unwrap()
        .iter()
        .map(|e| e.index)
        .collect()
}

#[test]
fn synced_writes_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = EngineLog::open(dir.path()).unwrap();
        let cs = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        log.set_conf_state(&cs).unwrap();
        log.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        log.set_hard_state(&hard_state(1, 2, 3)).unwrap();
        // A new leader overwrote the tail from 4 on.
        log.append(&[entry(4, 2), entry(5, 2), entry(6, 2)])
            .unwrap();
        log.set_commit(5).unwrap();
        log.sync(log.mark()).unwrap();
    }
    let log = EngineLog::open(dir.path()).unwrap();
    let state = log.initial_state().unwrap();
    assert_eq!(state.hard_state, hard_state(1, 2, 5));
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    assert_eq!(entries(&log, 1, 7), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(log.term(3).unwrap(), 1);
    assert_eq!(log.term(6).unwrap(), 2);
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = EngineLog::open(dir.path()).unwrap();
        log.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        log.sync(log.mark()).unwrap();
        log.append(&[entry(3, 1)]).unwrap();
        log.set_hard_state(&hard_state(1, 1, 3)).unwrap();
        // The process dies before the fsync.
    }
    let log = EngineLog::open(dir.path()).unwrap();
    assert_eq!(log.last_index().unwrap(), 2);
    assert_eq!(
        log.initial_state().unwrap().hard_state,
        HardState::default()
    );
}

#[test]
fn a_batch_written_by_the_writer_thread_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = EngineLog::open(dir.path()).unwrap();
        log.append(&[entry(1, 1), entry(2, 1)]).unwrap();
        log.set_hard_state(&hard_state(1, 1, 1)).unwrap();
        let mut batch = log.take_batch().unwrap();
        assert!(log.take_batch().is_none(), "nothing new to take");
        let writer = log.writer();
        std::thread::spawn(move || writer.write(&mut batch.batch).map(|()| batch.mark))
            .join()
            .unwrap()
            .map(|mark| log.durable_through(mark))
            .unwrap();
        // Reported durable: the node's sync is then a no-op.
        log.sync(log.mark()).unwrap();
    }
    let log = EngineLog::open(dir.path()).unwrap();
    assert_eq!(entries(&log, 1, 3), vec![1, 2]);
    assert_eq!(log.initial_state().unwrap().hard_state.commit, 1);
}

#[test]
fn a_compaction_keeps_the_truncated_term_and_the_snapshot_file() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = EngineLog::open(dir.path()).unwrap();
        log.append(&(1..=10).map(|i| entry(i, 1 + i / 6)).collect::<Vec<_>>())
            .unwrap();
        log.set_hard_state(&hard_state(2, 1, 10)).unwrap();
        log.compact(&snapshot(4, 1, b"state at 4")).unwrap();
        log.sync(log.mark()).unwrap();
        log.compact(&snapshot(7, 2, b"state at 7")).unwrap();
        log.sync(log.mark()).unwrap();
    }
    let log = EngineLog::open(dir.path()).unwrap();
    assert_eq!(log.first_index().unwrap(), 8);
    assert_eq!(
        log.term(7).unwrap(),
        2,
        "the truncated index keeps its term"
    );
    assert!(log.term(6).is_err(), "compacted");
    assert_eq!(entries(&log, 8, 11), vec![8, 9, 10]);
    let snap = log.snapshot(7, 0).unwrap();
    assert_eq!(&snap.data[..], b"state at 7");
    assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
    let files: Vec<_> = std::fs::read_dir(dir.path().join("snap"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "the older snapshot file is gone: {files:?}");
}

#[test]
fn an_installed_snapshot_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = EngineLog::open(dir.path()).unwrap();
        log.append(&(1..=3).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        log.sync(log.mark()).unwrap();
        log.install_snapshot(&snapshot(20, 3, b"leader's state"))
            .unwrap();
        log.append(&[entry(21, 3)]).unwrap();
        log.sync(log.mark()).unwrap();
    }
    let log = EngineLog::open(dir.path()).unwrap();
    assert_eq!(log.first_index().unwrap(), 21);
    assert_eq!(entries(&log, 21, 22), vec![21]);
    assert!(log
        .entries(2, 3, None, GetEntriesContext::empty(false))
        .is_err());
    let state = log.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    assert_eq!(state.hard_state.commit, 20);
    assert_eq!(&log.snapshot(20, 0).unwrap().data[..], b"leader's state");
}

#[test]
fn a_missing_snapshot_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = EngineLog::open(dir.path()).unwrap();
        log.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        log.compact(&snapshot(3, 1, b"x")).unwrap();
        log.sync(log.mark()).unwrap();
    }
    for file in std::fs::read_dir(dir.path().join("snap")).unwrap() {
        std::fs::remove_file(file.unwrap().path()).unwrap();
    }
    let err = EngineLog::open(dir.path()).err().expect("must fail");
    assert!(err.0.contains("cannot be read"), "{err}");
}
