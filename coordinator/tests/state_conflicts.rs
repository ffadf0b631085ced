//! Every conflict kind end to end, the solvers, and which bases a rebase
//! accepts (any on the chain; `BaseNotOnBranch` otherwise).

mod state_support;

use floe_coordinator::state::Config;
use floe_protocol::{
    ArrayMeta, CommitId, CommitMode, Conflict, ConflictKind, FloeError, Footprint, MetaChange,
    Reply, Solver,
};
use state_support::*;

fn rebase(solver: Solver) -> CommitMode {
    CommitMode::Rebase { solver }
}

/// Lands `theirs` on top of C1, then returns the conflicts `ours` (based on
/// C1) gets in `Rebase{Fail}` mode, checking `CanFastForward` agrees.
fn conflicts_after(h: &mut Harness, theirs: Footprint, ours: Footprint) -> Vec<Conflict> {
    let c1 = CommitId(1);
    committed(h.commit(c1, theirs, CommitMode::Strict));
    let tip = h.tip();
    let asked = match h.can_fast_forward(c1, &ours) {
        Ok(Reply::FastForward { tip: t, conflicts }) if t == tip => conflicts,
        other => panic!("{other:?}"),
    };
    match h.commit(c1, ours, REBASE) {
        Err(FloeError::Conflict { tip: t, conflicts }) if t == tip => {
            assert_eq!(conflicts, asked, "CanFastForward and Commit disagree");
            assert_eq!(h.tip(), tip, "a refused commit must not land");
            conflicts
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

fn kinds(conflicts: &[Conflict]) -> Vec<ConflictKind> {
    conflicts.iter().map(|c| c.kind.clone()).collect()
}

fn setup() -> (Harness, ArrayMeta) {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    h.create_array("/t", &m);
    (h, m)
}

#[test]
fn chunk_double_update_names_chunks_in_two_dimensions() {
    let mut h = Harness::with_repo();
    let m = meta(&[40, 40], &[10, 10]);
    h.create_array("/g", &m);
    let c = conflicts_after(
        &mut h,
        writes("/g", &m, "0:20,0:20"),
        writes("/g", &m, "15:40,5:15"),
    );
    assert_eq!(
        c,
        vec![Conflict {
            path: path("/g"),
            kind: ConflictKind::ChunkDoubleUpdate {
                chunks: vec![vec![1, 0], vec![1, 1]],
                total: 2
            }
        }]
    );
}

#[test]
fn array_created_twice() {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    let create = meta_change("/a", &m, MetaChange::Create(m.clone()));
    committed(h.commit(CommitId(0), create.clone(), CommitMode::Strict));
    match h.commit(CommitId(0), create, REBASE) {
        Err(FloeError::Conflict { conflicts, .. }) => {
            assert_eq!(kinds(&conflicts), vec![ConflictKind::ArrayCreatedTwice]);
            assert_eq!(conflicts[0].path, path("/a"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn metadata_double_update() {
    let (mut h, _) = setup();
    let m40 = meta(&[40], &[10]);
    let m50 = meta(&[50], &[10]);
    let c = conflicts_after(
        &mut h,
        meta_change("/t", &m40, MetaChange::Update(m40.clone())),
        meta_change("/t", &m50, MetaChange::Update(m50.clone())),
    );
    assert_eq!(kinds(&c), vec![ConflictKind::MetadataDoubleUpdate]);
}

#[test]
fn chunks_written_to_a_resized_array() {
    let (mut h, m) = setup();
    let m40 = meta(&[40], &[10]);
    let c = conflicts_after(
        &mut h,
        meta_change("/t", &m40, MetaChange::Update(m40.clone())),
        writes("/t", &m, "0:10"),
    );
    assert_eq!(
        kinds(&c),
        vec![ConflictKind::ChunksWrittenToChangedArray {
            chunks: vec![vec![0]],
            total: 1,
            deleted: false
        }]
    );
}

#[test]
fn chunks_written_to_a_deleted_array() {
    let (mut h, m) = setup();
    let c = conflicts_after(
        &mut h,
        meta_change("/t", &m, MetaChange::Delete),
        writes("/t", &m, "10:30"),
    );
    assert_eq!(
        kinds(&c),
        vec![ConflictKind::ChunksWrittenToChangedArray {
            chunks: vec![vec![1], vec![2]],
            total: 2,
            deleted: true
        }]
    );
}

#[test]
fn delete_of_an_updated_array() {
    let (mut h, m) = setup();
    let c = conflicts_after(
        &mut h,
        writes("/t", &m, "0:10"),
        meta_change("/t", &m, MetaChange::Delete),
    );
    assert_eq!(kinds(&c), vec![ConflictKind::DeleteOfUpdatedArray]);
}

#[test]
fn metadata_update_of_a_deleted_array() {
    let (mut h, m) = setup();
    let m40 = meta(&[40], &[10]);
    let c = conflicts_after(
        &mut h,
        meta_change("/t", &m, MetaChange::Delete),
        meta_change("/t", &m40, MetaChange::Update(m40.clone())),
    );
    assert_eq!(kinds(&c), vec![ConflictKind::MetadataUpdateOfDeletedArray]);
}

/// Every commit since the base is checked, not only the tip, and the shared
/// chunks are reported once per array, merged over all of them.
#[test]
fn conflicts_cover_all_commits_since_base_merged_per_array() {
    let mut h = Harness::with_repo();
    let m = meta(&[40], &[10]);
    h.create_array("/t", &m);
    h.create_array("/u", &m);
    let c2 = CommitId(2);
    committed(h.commit(c2, writes("/t", &m, "0:20"), CommitMode::Strict)); // C3: [0] [1]
    committed(h.commit(CommitId(3), writes("/t", &m, "10:30"), CommitMode::Strict)); // C4: [1] [2]
    committed(h.commit(CommitId(4), writes("/u", &m, "0:10"), CommitMode::Strict)); // C5
    let mut ours = writes("/t", &m, "0:40");
    ours.merge(&writes("/u", &m, "30:40"));
    assert_eq!(
        h.commit(c2, ours, REBASE),
        Err(FloeError::Conflict {
            tip: CommitId(5),
            conflicts: vec![Conflict {
                path: path("/t"),
                kind: ConflictKind::ChunkDoubleUpdate {
                    chunks: vec![vec![0], vec![1], vec![2]],
                    total: 3
                }
            }]
        })
    );
    // The conflict with the older C3 alone is found too.
    assert!(matches!(
        h.commit(c2, writes("/t", &m, "0:10"), REBASE),
        Err(FloeError::Conflict { .. })
    ));
}

#[test]
fn long_conflict_lists_are_truncated_but_counted() {
    let mut h = Harness::with_repo();
    let m = meta(&[100, 100], &[1, 1]);
    let c1 = h.create_array("/big", &m);
    committed(h.commit(c1, writes("/big", &m, "0:100,0:100"), CommitMode::Strict));
    match h.commit(c1, writes("/big", &m, "0:10,0:100"), REBASE) {
        Err(FloeError::Conflict { conflicts, .. }) => match &conflicts[0].kind {
            ConflictKind::ChunkDoubleUpdate { chunks, total } => {
                assert_eq!(*total, 1000);
                assert_eq!(chunks.len(), 64);
                assert_eq!(chunks[0], vec![0, 0]);
                assert_eq!(chunks[63], vec![0, 63]);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn solver_ours_lands_with_all_our_chunks() {
    let (mut h, m) = setup();
    committed(h.commit(CommitId(1), writes("/t", &m, "0:20"), CommitMode::Strict));
    let ours = writes("/t", &m, "10:30");
    let c = committed(h.commit(CommitId(1), ours.clone(), rebase(Solver::Ours)));
    assert_eq!(h.record(c).footprint, ours);
    assert_eq!(h.record(c).rebased_over, 1);
}

#[test]
fn solver_theirs_drops_the_shared_chunks_from_the_landed_footprint() {
    let (mut h, m) = setup();
    committed(h.commit(CommitId(1), writes("/t", &m, "0:20"), CommitMode::Strict));
    let c = committed(h.commit(
        CommitId(1),
        writes("/t", &m, "10:30"),
        rebase(Solver::Theirs),
    ));
    let landed = h.record(c).footprint;
    assert_eq!(landed, writes("/t", &m, "20:30"));
    // When every chunk is theirs, nothing of ours is left in the footprint.
    let c = committed(h.commit(
        CommitId(1),
        writes("/t", &m, "0:10"),
        rebase(Solver::Theirs),
    ));
    assert!(h.record(c).footprint.is_empty());
}

/// A shrink to 15 rewrites edge chunk 1 (elements past 15 set to fill) in
/// the resize commit. `theirs` must not give that chunk up to a concurrent
/// write: the write's values past the new edge would come back on a grow.
#[test]
fn solver_theirs_keeps_a_resize_conflict_on_its_rewritten_edge_chunk() {
    let (mut h, m) = setup();
    committed(h.commit(CommitId(1), writes("/t", &m, "10:20"), CommitMode::Strict));
    let mut shrunk = m.clone();
    shrunk.shape = vec![15];
    let mut resize = meta_change("/t", &shrunk, MetaChange::Update(shrunk.clone()));
    resize.add_region(&path("/t"), &shrunk, &region("10:15"));
    let refused = h.commit(CommitId(1), resize.clone(), rebase(Solver::Theirs));
    assert!(
        matches!(&refused, Err(FloeError::Conflict { conflicts, .. }) if conflicts.iter().any(|c| matches!(
            &c.kind,
            ConflictKind::ChunkDoubleUpdate { chunks, .. } if chunks == &vec![vec![1]]
        ))),
        "{refused:?}"
    );
    // `ours` still settles it: our rewritten chunk replaces theirs.
    let c = committed(h.commit(CommitId(1), resize.clone(), rebase(Solver::Ours)));
    assert_eq!(h.record(c).footprint, resize);
}

#[test]
fn solvers_do_not_resolve_metadata_conflicts() {
    for solver in [Solver::Ours, Solver::Theirs] {
        let (mut h, m) = setup();
        committed(h.commit(
            CommitId(1),
            meta_change("/t", &m, MetaChange::Delete),
            CommitMode::Strict,
        ));
        assert!(
            matches!(
                h.commit(CommitId(1), writes("/t", &m, "0:10"), rebase(solver)),
                Err(FloeError::Conflict { .. })
            ),
            "{solver:?}"
        );
    }
}

/// There is no window by count: a base thousands of commits behind the tip
/// is accepted, and its conflicts with the oldest of those commits are
/// still found.
#[test]
fn any_base_on_the_chain_is_accepted_however_old() {
    let mut h = Harness::with_config(Config::default());
    h.create_repo();
    let m = meta(&[3000], &[1]);
    let c1 = h.create_array("/t", &m);
    for i in 0..2500u64 {
        let r = format!("{i}:{}", i + 1);
        committed(h.commit(CommitId(1 + i), writes("/t", &m, &r), CommitMode::Strict));
    }
    let ours = writes("/t", &m, "2999:3000");
    assert_eq!(
        h.commit(c1, ours, REBASE),
        Ok(Reply::Committed {
            commit: CommitId(2502),
            parent: CommitId(2501),
            rebased_over: 2500
        })
    );
    // The first write after the base, 2501 commits back, still conflicts.
    match h.commit(c1, writes("/t", &m, "0:1"), REBASE) {
        Err(FloeError::Conflict { conflicts, .. }) => assert_eq!(
            kinds(&conflicts),
            vec![ConflictKind::ChunkDoubleUpdate {
                chunks: vec![vec![0]],
                total: 1
            }]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn base_on_another_branch_is_refused() {
    let (mut h, m) = setup();
    let dev = branch("dev");
    let r = h.cmd(floe_protocol::Command::CreateBranch {
        repo: repo(),
        branch: dev.clone(),
        at: CommitId(1),
    });
    assert_eq!(r, Ok(Reply::Done));
    let on_dev = committed(h.commit_on(&dev, CommitId(1), writes("/t", &m, "0:10"), REBASE));
    assert_eq!(on_dev, CommitId(2));
    let not_on_main = Err(FloeError::BaseNotOnBranch {
        base: on_dev,
        branch: main_branch(),
    });
    // Ahead of main's tip (C1).
    assert_eq!(
        h.commit(on_dev, writes("/t", &m, "20:30"), REBASE),
        not_on_main
    );
    // Lower than main's tip once main moves on, but not its ancestor.
    committed(h.commit(CommitId(1), writes("/t", &m, "10:20"), REBASE)); // C3
    committed(h.commit(CommitId(3), writes("/t", &m, "10:20"), REBASE)); // C4
    assert_eq!(
        h.commit(on_dev, writes("/t", &m, "20:30"), REBASE),
        not_on_main
    );
    assert_eq!(
        h.can_fast_forward(on_dev, &writes("/t", &m, "20:30")),
        not_on_main
    );
    // The fork point of dev is on main.
    assert!(h
        .commit(CommitId(1), writes("/t", &m, "20:30"), REBASE)
        .is_ok());
}
