//! Cooperative sessions: plans, claims, leases and fencing epochs,
//! completions, planless contributions, and committing the whole session.

mod state_support;

use floe_protocol::{
    ArrayMeta, Command, CommitId, CommitMode, ConflictKind, FloeError, Footprint, MetaChange,
    ObjectId, Outcome, Reply, SessionId, TaskId, TaskState, WorkerId,
};
use state_support::*;

const W1: WorkerId = WorkerId(1);
const W2: WorkerId = WorkerId(2);

fn setup() -> (Harness, ArrayMeta) {
    let mut h = Harness::with_repo();
    let m = meta(&[40], &[10]);
    h.create_array("/t", &m);
    (h, m)
}

/// The seed's DAG: four workers writing 0:10 … 30:40.
fn seed_plan() -> Vec<floe_protocol::PlannedTask> {
    ["0:10", "10:20", "20:30", "30:40"]
        .into_iter()
        .map(|r| task("/t", r))
        .collect()
}

fn claim(h: &mut Harness, s: SessionId, w: WorkerId) -> Outcome {
    h.cmd(Command::ClaimTask {
        session: s,
        worker: w,
    })
}

/// The `(task, epoch, lease_until)` of a grant; panics otherwise.
fn granted(outcome: Outcome) -> (TaskId, u64, u64) {
    match outcome {
        Ok(Reply::TaskGranted {
            task,
            epoch,
            lease_until,
            ..
        }) => (task, epoch, lease_until),
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn complete(
    h: &mut Harness,
    s: SessionId,
    task: TaskId,
    epoch: u64,
    delta: u128,
    footprint: Footprint,
) -> Outcome {
    h.cmd(Command::CompleteTask {
        session: s,
        task,
        epoch,
        delta: ObjectId(delta),
        footprint,
        next: None,
    })
}

fn renew(h: &mut Harness, s: SessionId, task: TaskId, epoch: u64) -> Outcome {
    h.cmd(Command::RenewLease {
        session: s,
        task,
        epoch,
    })
}

fn commit_session(h: &mut Harness, s: SessionId, mode: CommitMode) -> Outcome {
    h.cmd(Command::CommitSession {
        session: s,
        message: "job".into(),
        author: "dask".into(),
        mode,
    })
}

fn stale(task: u32, presented: u64, current: u64) -> Outcome {
    Err(FloeError::StaleEpoch {
        task: TaskId(task),
        presented,
        current,
    })
}

#[test]
fn cooperative_session_lands_as_one_commit() {
    let (mut h, m) = setup();
    let opened_reply = h.open_session(Some(seed_plan()), 60_000);
    let Ok(Reply::SessionOpened {
        session: s,
        base,
        arrays,
    }) = opened_reply
    else {
        panic!("{opened_reply:?}");
    };
    assert_eq!((s, base), (SessionId(1), CommitId(1)));
    assert_eq!(arrays.get(&path("/t")), Some(&m));
    let mut grants = Vec::new();
    for w in 0..4 {
        let (task, epoch, _) = granted(claim(&mut h, s, WorkerId(w)));
        assert_eq!((task, epoch), (TaskId(w as u32), 1), "lowest task first");
        grants.push(task);
    }
    assert_eq!(
        claim(&mut h, s, W1),
        Ok(Reply::NoTask {
            claimed: 4,
            unfinished: 4
        })
    );
    // Complete out of order; deltas still land in task order.
    for (i, r) in [(3u32, "30:40"), (1, "10:20"), (0, "0:10"), (2, "20:30")] {
        let left = complete(
            &mut h,
            s,
            TaskId(i),
            1,
            100 + i as u128,
            writes("/t", &m, r),
        );
        assert!(matches!(left, Ok(Reply::Accepted { .. })), "{left:?}");
    }
    assert_eq!(
        claim(&mut h, s, W1),
        Ok(Reply::NoTask {
            claimed: 0,
            unfinished: 0
        })
    );
    let c = committed(commit_session(&mut h, s, CommitMode::Strict));
    let rec = h.record(c);
    assert_eq!(rec.deltas, (100..104).map(ObjectId).collect::<Vec<_>>());
    assert_eq!(rec.footprint, writes("/t", &m, "0:40"));
    assert_eq!((rec.message.as_str(), rec.author.as_str()), ("job", "dask"));
    let status = h.status(s);
    assert!(status.closed);
    assert_eq!(status.committed, Some(c));
    assert!(status
        .tasks
        .iter()
        .all(|t| matches!(t.state, TaskState::Done { .. })));
}

#[test]
fn a_completion_can_carry_the_next_claim() {
    let (mut h, m) = setup();
    let Ok(Reply::SessionOpened { session: s, .. }) = h.open_session(Some(seed_plan()), 60_000)
    else {
        panic!("the session opens");
    };
    let (task, epoch, _) = granted(claim(&mut h, s, W1));
    let next = |h: &mut Harness, task: TaskId, epoch: u64, r: &str| {
        h.cmd(Command::CompleteTask {
            session: s,
            task,
            epoch,
            delta: ObjectId(200 + u128::from(task.0)),
            footprint: writes("/t", &m, r),
            next: Some(W1),
        })
    };
    // Accepted, and the next task granted in the same command.
    let Ok(Reply::AcceptedNext {
        unfinished: 3,
        task: second,
        epoch: 1,
        ..
    }) = next(&mut h, task, epoch, "0:10")
    else {
        panic!("expected the next grant with the acceptance");
    };
    assert_eq!(second, TaskId(1));
    // With the other tasks held elsewhere, a plain acceptance.
    granted(claim(&mut h, s, WorkerId(8)));
    granted(claim(&mut h, s, WorkerId(9)));
    let left = next(&mut h, second, 1, "10:20");
    assert_eq!(left, Ok(Reply::Accepted { unfinished: 2 }));
    // A refused completion grants nothing.
    let stale = next(&mut h, second, 7, "10:20");
    assert!(
        matches!(stale, Err(FloeError::StaleEpoch { .. })),
        "{stale:?}"
    );
    assert!(h.status(s).tasks.iter().all(|t| !matches!(
        t.state,
        TaskState::Claimed { worker, .. } if worker == W1
    )));
}

#[test]
fn expired_lease_is_regranted_with_a_new_epoch_and_the_zombie_is_refused() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:20")]), 100));
    let (t, e1, until) = granted(claim(&mut h, s, W1));
    assert_eq!((t, e1), (TaskId(0), 1));
    assert_eq!(until, h.now + 100);
    // Before expiry nobody else gets it.
    assert_eq!(
        claim(&mut h, s, W2),
        Ok(Reply::NoTask {
            claimed: 1,
            unfinished: 1
        })
    );
    h.now = until; // lease_until <= now: expired
    assert_eq!(
        renew(&mut h, s, t, e1),
        stale(0, 1, 1),
        "an expired lease cannot be renewed"
    );
    let (t2, e2, _) = granted(claim(&mut h, s, W2));
    assert_eq!((t2, e2), (TaskId(0), 2));
    // The zombie's late completion is refused; the new holder's is accepted.
    assert_eq!(
        complete(&mut h, s, t, e1, 11, writes("/t", &m, "0:20")),
        stale(0, 1, 2)
    );
    assert_eq!(renew(&mut h, s, t, e1), stale(0, 1, 2));
    assert_eq!(
        complete(&mut h, s, t, e2, 22, writes("/t", &m, "0:20")),
        Ok(Reply::Accepted { unfinished: 0 })
    );
    let c = committed(commit_session(&mut h, s, CommitMode::Strict));
    assert_eq!(
        h.record(c).deltas,
        vec![ObjectId(22)],
        "the zombie's delta never lands"
    );
}

#[test]
fn completion_after_expiry_is_refused_even_if_not_regranted() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:10")]), 100));
    let (t, e, until) = granted(claim(&mut h, s, W1));
    h.now = until + 5;
    assert_eq!(
        complete(&mut h, s, t, e, 1, writes("/t", &m, "0:10")),
        stale(0, 1, 1)
    );
    let status = h.status(s);
    assert_eq!(
        status.tasks[0].state,
        TaskState::Pending,
        "back in the pool"
    );
}

#[test]
fn renewal_extends_the_lease() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:10")]), 100));
    let (t, e, until) = granted(claim(&mut h, s, W1));
    h.now = until - 10;
    let renewed = renew(&mut h, s, t, e);
    let new_until = h.now + 100;
    assert_eq!(
        renewed,
        Ok(Reply::LeaseRenewed {
            lease_until: new_until
        })
    );
    h.now = until + 20; // past the first lease, inside the renewed one
    assert_eq!(
        claim(&mut h, s, W2),
        Ok(Reply::NoTask {
            claimed: 1,
            unfinished: 1
        })
    );
    assert_eq!(
        complete(&mut h, s, t, e, 1, writes("/t", &m, "0:10")),
        Ok(Reply::Accepted { unfinished: 0 })
    );
}

#[test]
fn renewal_needs_the_current_epoch_of_a_claimed_task() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:10"), task("/t", "10:20")]), 1000));
    assert_eq!(
        renew(&mut h, s, TaskId(1), 1),
        stale(1, 1, 0),
        "never granted"
    );
    let (t, e, _) = granted(claim(&mut h, s, W1));
    assert_eq!(renew(&mut h, s, t, e + 4), stale(0, 5, 1));
    complete(&mut h, s, t, e, 1, writes("/t", &m, "0:10")).unwrap();
    assert_eq!(
        renew(&mut h, s, t, e),
        stale(0, 1, 1),
        "done tasks have no lease"
    );
}

#[test]
fn repeated_completion_is_idempotent_only_for_the_same_delta() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:10"), task("/t", "10:20")]), 1000));
    let (t, e, _) = granted(claim(&mut h, s, W1));
    let f = writes("/t", &m, "0:10");
    let accepted = Ok(Reply::Accepted { unfinished: 1 });
    assert_eq!(complete(&mut h, s, t, e, 7, f.clone()), accepted);
    assert_eq!(complete(&mut h, s, t, e, 7, f.clone()), accepted);
    assert_eq!(complete(&mut h, s, t, e, 8, f.clone()), stale(0, 1, 1));
    assert_eq!(complete(&mut h, s, t, e + 1, 7, f), stale(0, 2, 1));
}

#[test]
fn completion_footprint_must_stay_inside_the_task() {
    let mut h = Harness::with_repo();
    let m = meta(&[40, 40], &[10, 10]);
    h.create_array("/t", &m);
    h.create_array("/u", &m);
    let s = opened(h.open_session(Some(vec![task("/t", "0:20,0:20")]), 1000));
    let (t, e, _) = granted(claim(&mut h, s, W1));
    let outside = Err(FloeError::FootprintOutsideTask { task: t });
    for bad in [
        writes("/t", &m, "0:20,0:30"),
        writes("/t", &m, "20:30,0:10"),
        writes("/u", &m, "0:10,0:10"),
        meta_change("/t", &m, MetaChange::Delete),
    ] {
        assert_eq!(complete(&mut h, s, t, e, 1, bad), outside);
    }
    // Still claimed: the right footprint is then accepted.
    assert_eq!(
        complete(&mut h, s, t, e, 1, writes("/t", &m, "5:15,0:20")),
        Ok(Reply::Accepted { unfinished: 0 })
    );
}

#[test]
fn committing_an_incomplete_session_is_refused_and_keeps_it_open() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(seed_plan()), 1000));
    let (t, e, _) = granted(claim(&mut h, s, W1));
    complete(&mut h, s, t, e, 1, writes("/t", &m, "0:10")).unwrap();
    assert_eq!(
        commit_session(&mut h, s, CommitMode::Strict),
        Err(FloeError::SessionIncomplete {
            session: s,
            pending: 3
        })
    );
    assert!(!h.status(s).closed);
    assert_eq!(h.tip(), CommitId(1));
}

#[test]
fn closed_sessions_refuse_every_command() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:10")]), 1000));
    let (t, e, _) = granted(claim(&mut h, s, W1));
    complete(&mut h, s, t, e, 1, writes("/t", &m, "0:10")).unwrap();
    committed(commit_session(&mut h, s, CommitMode::Strict));
    let closed = Err(FloeError::SessionClosed { session: s });
    assert_eq!(claim(&mut h, s, W1), closed);
    assert_eq!(renew(&mut h, s, t, e), closed);
    assert_eq!(
        complete(&mut h, s, t, e, 1, writes("/t", &m, "0:10")),
        closed
    );
    assert_eq!(commit_session(&mut h, s, CommitMode::Strict), closed);
    assert_eq!(h.cmd(Command::AbortSession { session: s }), closed);
    // Aborted sessions are closed too, and never commit.
    let a = opened(h.open_session(None, 1000));
    assert_eq!(h.cmd(Command::AbortSession { session: a }), Ok(Reply::Done));
    let status = h.status(a);
    assert!(status.closed && status.committed.is_none());
    assert_eq!(
        h.cmd(Command::Contribute {
            session: a,
            worker: W1,
            delta: ObjectId(1),
            footprint: writes("/t", &m, "0:10")
        }),
        Err(FloeError::SessionClosed { session: a })
    );
}

#[test]
fn plans_must_be_chunk_aligned() {
    let mut h = setup().0;
    let why = plan_error(h.open_session(Some(vec![task("/t", "0:10"), task("/t", "15:20")]), 1000));
    assert!(
        why.contains("T1") && why.contains("not chunk-aligned"),
        "{why}"
    );
}

#[test]
fn plans_must_not_overlap_and_the_error_names_both_tasks() {
    let mut h = Harness::with_repo();
    let m = meta(&[40, 40], &[10, 10]);
    h.create_array("/t", &m);
    h.create_array("/u", &m);
    let plan = vec![
        task("/t", "0:20,0:20"),
        task("/u", "0:20,0:20"), // same region, other array: fine
        task("/t", "20:40,0:40"),
        task("/t", "10:20,10:30"),
    ];
    let why = plan_error(h.open_session(Some(plan), 1000));
    assert!(why.contains("T0 and T3"), "{why}");
    assert!(why.contains("/t") && why.contains("[1, 1]"), "{why}");
}

#[test]
fn plan_regions_must_be_inside_the_array() {
    let mut h = setup().0;
    let why = plan_error(h.open_session(Some(vec![task("/t", "30:50")]), 1000));
    assert!(why.contains("T0") && why.contains("out of bounds"), "{why}");
    let why = plan_error(h.open_session(Some(vec![task("/t", "0:10,0:10")]), 1000));
    assert!(why.contains("dimensions"), "{why}");
    let why = plan_error(h.open_session(Some(vec![task("/t", "10:10")]), 1000));
    assert!(why.contains("empty"), "{why}");
    let why = plan_error(h.open_session(Some(vec![task("/nope", "0:10")]), 1000));
    assert!(why.contains("/nope"), "{why}");
}

#[test]
fn empty_plans_and_bad_leases_are_refused() {
    let mut h = setup().0;
    let why = plan_error(h.open_session(Some(vec![]), 1000));
    assert!(why.contains("no tasks"), "{why}");
    for lease in [0, 3_600_001] {
        let why = plan_error(h.open_session(None, lease));
        assert!(why.contains("lease"), "{why}");
    }
    assert!(h.open_session(None, 3_600_000).is_ok());
    assert!(h.open_session(None, 1).is_ok());
}

#[test]
fn large_plans_validate_quickly() {
    let mut h = Harness::with_repo();
    let m = meta(&[200_000], &[2]);
    h.create_array("/big", &m);
    let plan: Vec<_> = (0..100_000u64)
        .map(|i| task("/big", &format!("{}:{}", 2 * i, 2 * i + 2)))
        .collect();
    let start = std::time::Instant::now();
    let s = opened(h.open_session(Some(plan), 1000));
    assert!(start.elapsed().as_secs() < 5);
    let (t, _, _) = granted(claim(&mut h, s, W1));
    assert_eq!(t, TaskId(0));
}

#[test]
fn planless_contributions_refuse_overlap() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(None, 1000));
    let contribute = |h: &mut Harness, delta: u128, f: Footprint| {
        h.cmd(Command::Contribute {
            session: s,
            worker: W1,
            delta: ObjectId(delta),
            footprint: f,
        })
    };
    assert_eq!(
        contribute(&mut h, 1, writes("/t", &m, "0:20")),
        Ok(Reply::Accepted { unfinished: 0 })
    );
    match contribute(&mut h, 2, writes("/t", &m, "15:40")) {
        Err(FloeError::OverlappingContribution { conflicts }) => {
            assert_eq!(conflicts.len(), 1);
            assert_eq!(conflicts[0].path, path("/t"));
            assert_eq!(
                conflicts[0].kind,
                ConflictKind::ChunkDoubleUpdate {
                    chunks: vec![vec![1]],
                    total: 1
                }
            );
        }
        other => panic!("{other:?}"),
    }
    contribute(&mut h, 3, writes("/t", &m, "20:40")).unwrap();
    change_error(contribute(
        &mut h,
        4,
        meta_change("/t", &m, MetaChange::Delete),
    ));
    assert_eq!(
        contribute(&mut h, 5, writes("/nope", &m, "0:10")),
        Err(FloeError::UnknownArray {
            path: path("/nope")
        })
    );
    assert!(matches!(
        claim(&mut h, s, W1),
        Err(FloeError::InvalidPlan { .. })
    ));
    let c = committed(commit_session(&mut h, s, CommitMode::Strict));
    let rec = h.record(c);
    assert_eq!(rec.deltas, vec![ObjectId(1), ObjectId(3)]);
    assert_eq!(rec.footprint, writes("/t", &m, "0:40"));
}

#[test]
fn planned_sessions_refuse_contributions() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(seed_plan()), 1000));
    let r = h.cmd(Command::Contribute {
        session: s,
        worker: W1,
        delta: ObjectId(1),
        footprint: writes("/t", &m, "0:10"),
    });
    assert!(matches!(r, Err(FloeError::InvalidPlan { .. })), "{r:?}");
}

#[test]
fn session_commit_follows_the_commit_rule_and_stays_open_on_refusal() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:20")]), 1000));
    let (t, e, _) = granted(claim(&mut h, s, W1));
    complete(&mut h, s, t, e, 1, writes("/t", &m, "0:20")).unwrap();
    // Someone else lands on main meanwhile, on chunk [3].
    committed(h.commit(CommitId(1), writes("/t", &m, "30:40"), CommitMode::Strict));
    assert_eq!(
        commit_session(&mut h, s, CommitMode::Strict),
        Err(FloeError::OutOfDate { tip: CommitId(2) })
    );
    assert!(!h.status(s).closed);
    assert_eq!(
        commit_session(&mut h, s, REBASE),
        Ok(Reply::Committed {
            commit: CommitId(3),
            parent: CommitId(2),
            rebased_over: 1
        })
    );
    assert_eq!(h.record(CommitId(3)).base, Some(CommitId(1)));
}

#[test]
fn session_commit_conflict_keeps_the_session_open() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(vec![task("/t", "0:20")]), 1000));
    let (t, e, _) = granted(claim(&mut h, s, W1));
    complete(&mut h, s, t, e, 1, writes("/t", &m, "0:20")).unwrap();
    committed(h.commit(CommitId(1), writes("/t", &m, "10:20"), CommitMode::Strict));
    assert!(matches!(
        commit_session(&mut h, s, REBASE),
        Err(FloeError::Conflict { .. })
    ));
    assert!(!h.status(s).closed);
    assert_eq!(h.cmd(Command::AbortSession { session: s }), Ok(Reply::Done));
    assert_eq!(h.tip(), CommitId(2));
}

#[test]
fn session_status_reports_each_task() {
    let (mut h, m) = setup();
    let s = opened(h.open_session(Some(seed_plan()), 100));
    let (t0, e0, until) = granted(claim(&mut h, s, W1));
    granted(claim(&mut h, s, W2));
    complete(&mut h, s, t0, e0, 1, writes("/t", &m, "0:10")).unwrap();
    let status = h.status(s);
    assert_eq!(status.base, CommitId(1));
    assert_eq!(status.tasks.len(), 4);
    assert_eq!(status.tasks[0].state, TaskState::Done { worker: W1 });
    assert!(matches!(
        status.tasks[1].state,
        TaskState::Claimed { worker: W2, .. }
    ));
    assert_eq!(status.tasks[2].state, TaskState::Pending);
    assert_eq!(status.tasks[1].epoch, 1);
    assert_eq!(status.tasks[1].region, region("10:20"));
    // Once the lease runs out the claimed task shows as pending again.
    h.now = until + 1;
    h.cmd(Command::CreateTag {
        repo: repo(),
        tag: floe_protocol::TagName::new("tick").unwrap(),
        at: CommitId(0),
    })
    .unwrap();
    assert_eq!(h.status(s).tasks[1].state, TaskState::Pending);
    // Session ids count up across the cluster.
    assert_eq!(opened(h.open_session(None, 10)), SessionId(2));
}

/// The planted bug lets exactly the zombie's completion through.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_accept_stale_epoch_lets_the_zombie_land() {
    use floe_coordinator::bugs::Bugs;
    use floe_coordinator::state::Config;
    let mut h = Harness::with_config(Config {
        bugs: Bugs {
            accept_stale_epoch: true,
            ..Bugs::default()
        },
        ..Config::default()
    });
    h.create_repo();
    let m = meta(&[40], &[10]);
    h.create_array("/t", &m);
    let s = opened(h.open_session(Some(vec![task("/t", "0:10")]), 100));
    let (t, e1, until) = granted(claim(&mut h, s, W1));
    h.now = until;
    let (_, e2, _) = granted(claim(&mut h, s, W2));
    assert_eq!(
        complete(&mut h, s, t, e1, 11, writes("/t", &m, "0:10")),
        Ok(Reply::Accepted { unfinished: 0 })
    );
    assert_eq!(
        complete(&mut h, s, t, e2, 22, writes("/t", &m, "0:10")),
        stale(0, 2, 2)
    );
    let c = committed(commit_session(&mut h, s, CommitMode::Strict));
    assert_eq!(h.record(c).deltas, vec![ObjectId(11)]);
}
