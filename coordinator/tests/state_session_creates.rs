//! Cooperative sessions that create arrays: the creations land with the
//! session's commit and not before, and the commit rule treats them as a
//! non-cooperative commit creating the same arrays.

mod state_support;

use floe_protocol::{
    ArrayMeta, Command, CommitId, CommitMode, ConflictKind, FloeError, MetaChange, ObjectId,
    Outcome, Reply, SessionId, TaskId, WorkerId,
};
use state_support::*;

/// A repo whose `main` holds `/t` (commit 1); the metadata of `/t` and of
/// the array `/new` the sessions create.
fn setup() -> (Harness, ArrayMeta, ArrayMeta) {
    let mut h = Harness::with_repo();
    let t = meta(&[40], &[10]);
    h.create_array("/t", &t);
    (h, t, meta(&[25], &[10]))
}

/// A session creating `/new`, planned as two tasks over it.
fn open_creating_new(h: &mut Harness, new: &ArrayMeta) -> SessionId {
    let plan = vec![task("/new", "0:10"), task("/new", "10:25")];
    opened(h.open_creating(Some(plan), &[("/new", new)]))
}

/// Claims and completes every task of `s` (two, on `/new`).
fn do_tasks(h: &mut Harness, s: SessionId, new: &ArrayMeta) {
    for (i, r) in ["0:10", "10:25"].into_iter().enumerate() {
        let claim = h.cmd(Command::ClaimTask {
            session: s,
            worker: WorkerId(1),
        });
        let Ok(Reply::TaskGranted { task, epoch, .. }) = claim else {
            panic!("expected a grant, got {claim:?}");
        };
        assert_eq!(task, TaskId(i as u32));
        let done = h.cmd(Command::CompleteTask {
            session: s,
            task,
            epoch,
            delta: ObjectId(100 + i as u128),
            footprint: writes("/new", new, r),
            next: None,
        });
        assert!(matches!(done, Ok(Reply::Accepted { .. })), "{done:?}");
    }
}

fn commit_session(h: &mut Harness, s: SessionId, mode: CommitMode) -> Outcome {
    h.cmd(Command::CommitSession {
        session: s,
        message: "import".into(),
        author: "floe".into(),
        mode,
    })
}

#[test]
fn the_created_arrays_are_the_sessions_and_land_only_with_its_commit() {
    let (mut h, t, new) = setup();
    let plan = vec![task("/new", "0:10"), task("/new", "10:25")];
    let reply = h.open_creating(Some(plan), &[("/new", &new)]);
    let Ok(Reply::SessionOpened {
        session, arrays, ..
    }) = reply
    else {
        panic!("{reply:?}");
    };
    assert_eq!(arrays.get(&path("/new")), Some(&new));
    assert_eq!(arrays.get(&path("/t")), Some(&t));
    do_tasks(&mut h, session, &new);
    assert_eq!(h.tip(), CommitId(1));
    assert!(!h.record(h.tip()).arrays.contains_key(&path("/new")));
    let c = committed(commit_session(&mut h, session, CommitMode::Strict));
    let rec = h.record(c);
    assert_eq!(rec.arrays.get(&path("/new")), Some(&new));
    let change = &rec.footprint.arrays[&path("/new")];
    assert_eq!(change.meta, Some(MetaChange::Create(new.clone())));
    assert_eq!(change.chunks.len(), 3);
    assert_eq!(rec.deltas, vec![ObjectId(100), ObjectId(101)]);
}

#[test]
fn a_rebased_session_creates_over_unrelated_commits_and_strict_is_out_of_date() {
    let (mut h, t, new) = setup();
    let s = open_creating_new(&mut h, &new);
    do_tasks(&mut h, s, &new);
    committed(h.commit(CommitId(1), writes("/t", &t, "0:10"), CommitMode::Strict));
    assert_eq!(
        commit_session(&mut h, s, CommitMode::Strict),
        Err(FloeError::OutOfDate { tip: CommitId(2) })
    );
    let c = committed(commit_session(&mut h, s, REBASE));
    assert_eq!(h.record(c).arrays.get(&path("/new")), Some(&new));
}

#[test]
fn a_concurrent_create_of_the_same_path_makes_the_rebase_a_conflict() {
    let (mut h, _, new) = setup();
    let s = open_creating_new(&mut h, &new);
    do_tasks(&mut h, s, &new);
    h.create_array("/new", &meta(&[5], &[5]));
    let Err(FloeError::Conflict { conflicts, .. }) = commit_session(&mut h, s, REBASE) else {
        panic!("expected a conflict");
    };
    assert!(conflicts
        .iter()
        .any(|c| c.path == path("/new") && c.kind == ConflictKind::ArrayCreatedTwice));
    assert!(!h.status(s).closed);
}

#[test]
fn opening_refuses_an_existing_path_and_invalid_metadata() {
    let (mut h, t, _) = setup();
    let why = change_error(h.open_creating(None, &[("/t", &t)]));
    assert!(why.contains("already exists"), "{why}");
    let mut bad = meta(&[10], &[5]);
    bad.chunk_shape = vec![0];
    let refused = h.open_creating(None, &[("/bad", &bad)]);
    assert!(
        matches!(refused, Err(FloeError::Geometry { .. })),
        "{refused:?}"
    );
    // The plan still may not target an array neither existing nor created.
    let refused = h.open_creating(Some(vec![task("/nowhere", "0:10")]), &[]);
    assert!(
        matches!(refused, Err(FloeError::InvalidPlan { .. })),
        "{refused:?}"
    );
}

#[test]
fn an_aborted_session_leaves_no_array() {
    let (mut h, _, new) = setup();
    let s = open_creating_new(&mut h, &new);
    do_tasks(&mut h, s, &new);
    assert_eq!(h.cmd(Command::AbortSession { session: s }), Ok(Reply::Done));
    assert_eq!(h.tip(), CommitId(1));
    assert!(!h.record(h.tip()).arrays.contains_key(&path("/new")));
    // The path is still free.
    h.create_array("/new", &new);
}

#[test]
fn a_planless_session_creates_too() {
    let (mut h, _, new) = setup();
    let s = opened(h.open_creating(None, &[("/new", &new)]));
    let accepted = h.cmd(Command::Contribute {
        session: s,
        worker: WorkerId(1),
        delta: ObjectId(7),
        footprint: writes("/new", &new, "0:10"),
    });
    assert!(
        matches!(accepted, Ok(Reply::Accepted { .. })),
        "{accepted:?}"
    );
    let c = committed(commit_session(&mut h, s, CommitMode::Strict));
    let rec = h.record(c);
    assert_eq!(rec.arrays.get(&path("/new")), Some(&new));
    assert_eq!(
        rec.footprint.arrays[&path("/new")].meta,
        Some(MetaChange::Create(new))
    );
}
