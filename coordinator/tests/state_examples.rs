//! The seed's two examples, and the one-round-trip fast-forward, at the
//! state-machine level.

mod state_support;

use floe_protocol::{
    CommitId, CommitMode, Conflict, ConflictKind, FloeError, MetaChange, Query, Reply,
};
use state_support::*;

/// Example 1: `0:20` and `20:30` on an array of 30 with chunks of 10.
#[test]
fn seed_example_one_no_conflicts() {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    let c1 = h.create_array("/t", &m);
    assert_eq!(c1, CommitId(1));

    // Both sessions check out main at C1.
    let s1 = writes("/t", &m, "0:20");
    let s2 = writes("/t", &m, "20:30");
    assert_eq!(committed(h.commit(c1, s1, CommitMode::Strict)), CommitId(2));

    // "sorry, your branch is out of date"
    assert_eq!(
        h.commit(c1, s2.clone(), CommitMode::Strict),
        Err(FloeError::OutOfDate { tip: CommitId(2) })
    );
    // "can I fast forward?" -> "yes"
    assert_eq!(
        h.can_fast_forward(c1, &s2),
        Ok(Reply::FastForward {
            tip: CommitId(2),
            conflicts: vec![]
        })
    );
    // "fast forward and commit session" on the new tip.
    assert_eq!(
        h.commit(CommitId(2), s2, CommitMode::Strict),
        Ok(Reply::Committed {
            commit: CommitId(3),
            parent: CommitId(2),
            rebased_over: 0
        })
    );
    assert_eq!(h.tip(), CommitId(3));
    let log = match h.query(Query::Log {
        repo: repo(),
        branch: main_branch(),
        limit: 10,
    }) {
        Ok(Reply::Log(log)) => log,
        other => panic!("{other:?}"),
    };
    let ids: Vec<u64> = log.iter().map(|c| c.id.0).collect();
    assert_eq!(ids, vec![3, 2, 1, 0]);
}

/// Example 2: `0:20` and `15:30` collide on chunk `[1]` (10:20).
#[test]
fn seed_example_two_chunk_conflict_then_manual_retry() {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    let c1 = h.create_array("/t", &m);
    let s1 = writes("/t", &m, "0:20");
    let s2 = writes("/t", &m, "15:30");
    assert_eq!(committed(h.commit(c1, s1, CommitMode::Strict)), CommitId(2));
    assert_eq!(
        h.commit(c1, s2.clone(), CommitMode::Strict),
        Err(FloeError::OutOfDate { tip: CommitId(2) })
    );
    let chunk_1 = vec![Conflict {
        path: path("/t"),
        kind: ConflictKind::ChunkDoubleUpdate {
            chunks: vec![vec![1]],
            total: 1,
        },
    }];
    // "can I fast forward?" -> "no: conflict detected"
    assert_eq!(
        h.can_fast_forward(c1, &s2),
        Ok(Reply::FastForward {
            tip: CommitId(2),
            conflicts: chunk_1.clone()
        })
    );
    assert_eq!(
        h.commit(c1, s2.clone(), REBASE),
        Err(FloeError::Conflict {
            tip: CommitId(2),
            conflicts: chunk_1
        })
    );
    assert_eq!(h.tip(), CommitId(2), "a refused commit changes nothing");
    // Manual retry: check out main (C2) and rewrite 15:30.
    let fresh = h.tip();
    assert_eq!(fresh, CommitId(2));
    assert_eq!(
        committed(h.commit(fresh, s2, CommitMode::Strict)),
        CommitId(3)
    );
}

/// Rebase mode fast-forwards server-side in one round trip.
#[test]
fn rebase_lands_in_one_round_trip_and_counts_commits_skipped() {
    let mut h = Harness::with_repo();
    let m = meta(&[40], &[10]);
    let c1 = h.create_array("/t", &m);
    committed(h.commit(c1, writes("/t", &m, "0:10"), CommitMode::Strict));
    committed(h.commit(CommitId(2), writes("/t", &m, "10:20"), CommitMode::Strict));
    let ours = writes("/t", &m, "30:40");
    assert_eq!(
        h.commit(c1, ours.clone(), REBASE),
        Ok(Reply::Committed {
            commit: CommitId(4),
            parent: CommitId(3),
            rebased_over: 2
        })
    );
    let rec = h.record(CommitId(4));
    assert_eq!(rec.parent, Some(CommitId(3)));
    assert_eq!(rec.base, Some(c1));
    assert_eq!(rec.height, 4);
    assert_eq!(rec.rebased_over, 2);
    assert_eq!(rec.footprint, ours);
    assert_eq!(rec.arrays.get(&path("/t")), Some(&m));
    assert_eq!(rec.branch, main_branch());
    // Rebase on an unchanged branch lands directly.
    let tip = h.tip();
    assert_eq!(
        h.commit(tip, writes("/t", &m, "0:10"), REBASE),
        Ok(Reply::Committed {
            commit: CommitId(5),
            parent: CommitId(4),
            rebased_over: 0
        })
    );
}

/// Commit records carry the array metadata after their changes.
#[test]
fn landed_commits_apply_metadata_changes() {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    let root = h.record(CommitId(0));
    assert_eq!(root.message, "repository created");
    assert!(root.arrays.is_empty() && root.parent.is_none());
    let c1 = h.create_array("/t", &m);
    let bigger = meta(&[50], &[10]);
    let resize = meta_change("/t", &bigger, MetaChange::Update(bigger.clone()));
    let c2 = committed(h.commit(c1, resize, CommitMode::Strict));
    assert_eq!(h.record(c2).arrays.get(&path("/t")), Some(&bigger));
    // Chunks of the resized grid are now valid.
    let c3 = committed(h.commit(c2, writes("/t", &bigger, "40:50"), CommitMode::Strict));
    let delete = meta_change("/t", &bigger, MetaChange::Delete);
    let c4 = committed(h.commit(c3, delete, CommitMode::Strict));
    assert!(h.record(c4).arrays.is_empty());
    assert_eq!(h.record(c4).height, 4);
    // The old commits still describe the array.
    assert_eq!(h.record(c3).arrays.get(&path("/t")), Some(&bigger));
}
