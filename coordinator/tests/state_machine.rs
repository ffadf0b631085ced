//! The state machine as Raft sees it: idempotent retries, monotonic time,
//! snapshots and digests, determinism across replicas; and the in-process
//! `LocalCoordinator` shell.

// `Config` has more fields with the `planted-bugs` feature: `..Default`
// is needed then, and needless without it.
#![allow(clippy::needless_update)]

mod state_support;

use floe_coordinator::state::{Config, State};
use floe_coordinator::{LocalCoordinator, StateMachine};
use floe_protocol::{
    ClientId, Command, CommitId, CommitMode, Coordinator, Envelope, FloeError, Query, Reply,
    Request,
};
use state_support::*;

fn envelope(client: u64, seq: u64, command: Command) -> Envelope {
    Envelope {
        client: ClientId(client),
        seq,
        request: Request::Command(command),
    }
}

/// Opens `client`'s session.
fn open(state: &mut State, client: u64, now: u64) {
    let opened = state.apply(now, &envelope(client, 0, Command::OpenClient));
    assert_eq!(opened, Ok(Reply::Done));
}

#[test]
fn a_retry_returns_the_first_outcome_and_changes_nothing() {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    let c1 = h.create_array("/t", &m);
    let commit = h.envelope(Command::Commit(floe_protocol::CommitRequest {
        repo: repo(),
        branch: main_branch(),
        base: c1,
        footprint: writes("/t", &m, "0:10"),
        deltas: vec![floe_protocol::ObjectId(1)],
        message: "once".into(),
        author: "a".into(),
        mode: CommitMode::Strict,
    }));
    let first = h.state.apply(5_000, &commit);
    assert_eq!(committed(first.clone()), CommitId(2));
    let digest = h.digest();
    let retry = h.state.apply(9_000, &commit);
    assert_eq!(retry, first);
    assert_eq!(h.digest(), digest, "a retry must not change the state");
    assert_eq!(h.tip(), CommitId(2), "never committed twice");
    assert_eq!(
        h.state.time(),
        5_000,
        "a retry does not even move the clock"
    );
    // Errors are remembered too: a retry of a refused command is refused
    // the same way even if it would now succeed.
    let create = h.envelope(Command::CreateRepo {
        repo: floe_protocol::RepoName::new("later").unwrap(),
    });
    let dup = Command::CreateRepo { repo: repo() };
    let dup_env = h.envelope(dup);
    let refused = h.state.apply(6_000, &dup_env);
    assert_eq!(refused, Err(FloeError::RepoExists { repo: repo() }));
    assert!(h.state.apply(6_001, &create).is_ok());
    let digest = h.digest();
    assert_eq!(h.state.apply(6_002, &dup_env), refused);
    assert_eq!(h.digest(), digest);
}

#[test]
fn seqs_older_than_the_window_are_refused_not_reexecuted() {
    let mut state = State::new(Config {
        idempotency_window: 3,
        ..Config::default()
    });
    let make = |i: u64| Command::CreateRepo {
        repo: floe_protocol::RepoName::new(format!("r{i}")).unwrap(),
    };
    open(&mut state, 1, 0);
    open(&mut state, 2, 0);
    for seq in 1..=5 {
        assert!(state.apply(seq, &envelope(1, seq, make(seq))).is_ok());
    }
    // Seqs 3, 4, 5 are retained; 1 and 2 are gone.
    let too_old = Err(FloeError::SeqTooOld { client: 1, seq: 2 });
    let digest = state.digest();
    assert_eq!(state.apply(10, &envelope(1, 2, make(2))), too_old);
    assert_eq!(state.digest(), digest);
    assert_eq!(
        state.apply(10, &envelope(1, 3, make(99))),
        Ok(Reply::RepoCreated { root: CommitId(0) }),
        "seq 3 is retained: its first outcome comes back"
    );
    assert_eq!(state.digest(), digest, "and r99 was not created");
    // Other clients have their own windows.
    assert!(state.apply(11, &envelope(2, 1, make(6))).is_ok());
    // A gap inside the window is still fresh.
    assert!(state.apply(12, &envelope(1, 7, make(7))).is_ok());
    assert!(state.apply(13, &envelope(1, 6, make(8))).is_ok());
    assert_eq!(
        state.apply(14, &envelope(1, 4, make(9))),
        Err(FloeError::SeqTooOld { client: 1, seq: 4 })
    );
}

#[test]
fn queries_through_apply_are_answered_and_not_recorded() {
    let mut h = Harness::with_repo();
    let digest = h.digest();
    let q = Envelope {
        client: ClientId(3),
        seq: 1,
        request: Request::Query(Query::Checkout {
            repo: repo(),
            branch: main_branch(),
        }),
    };
    assert!(matches!(h.state.apply(99_999, &q), Ok(Reply::Commit(_))));
    assert_eq!(h.digest(), digest);
    // The same (client, seq) later carrying a command is executed.
    open(&mut h.state, 3, 99_999);
    let cmd = envelope(
        3,
        1,
        Command::CreateRepo {
            repo: floe_protocol::RepoName::new("other").unwrap(),
        },
    );
    assert!(h.state.apply(100_000, &cmd).is_ok());
}

#[test]
fn time_is_monotonic_even_when_leader_timestamps_are_not() {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    let mut times = Vec::new();
    for (i, now) in [5_000u64, 3_000, 7_000, 6_000].into_iter().enumerate() {
        h.now = now - 1; // the harness adds 1 ms per command
        let tip = h.tip();
        let f = if i == 0 {
            meta_change("/t", &m, floe_protocol::MetaChange::Create(m.clone()))
        } else {
            writes("/t", &m, "0:10")
        };
        let c = committed(h.commit(tip, f, CommitMode::Strict));
        times.push(h.record(c).time);
    }
    assert_eq!(times, vec![5_000, 5_000, 7_000, 7_000]);
    assert_eq!(h.state.time(), 7_000);
}

/// A workload touching every part of the state.
fn workload(h: &mut Harness) {
    let m = meta(&[40], &[10]);
    h.create_array("/t", &m);
    committed(h.commit(CommitId(1), writes("/t", &m, "0:10"), REBASE));
    let _ = h.commit(CommitId(1), writes("/t", &m, "0:20"), REBASE); // conflict
    let s = opened(h.open_session(Some(vec![task("/t", "10:20")]), 1000));
    h.cmd(Command::ClaimTask {
        session: s,
        worker: floe_protocol::WorkerId(1),
    })
    .unwrap();
    opened(h.open_session(None, 50));
    h.cmd(Command::CreateTag {
        repo: repo(),
        tag: floe_protocol::TagName::new("v1").unwrap(),
        at: CommitId(2),
    })
    .unwrap();
}

#[test]
fn snapshot_and_restore_preserve_the_digest() {
    let mut h = Harness::with_repo();
    workload(&mut h);
    let bytes = h.state.snapshot().unwrap();
    let mut restored = State::new(Config::default());
    assert_ne!(restored.digest(), h.digest());
    restored.restore(&bytes).unwrap();
    assert_eq!(restored.digest(), h.digest());
    assert_eq!(restored.snapshot().unwrap(), bytes);
    assert_eq!(restored.time(), h.state.time());
    // The restored replica keeps deduplicating the original's commands.
    let retry = envelope(h.client.0, 3, Command::CreateRepo { repo: repo() });
    let before = restored.digest();
    let replay = restored.apply(1, &retry);
    assert_eq!(replay, h.state.apply(1, &retry));
    assert_eq!(restored.digest(), before);
    // Garbage is refused with an error, and leaves the state alone.
    assert!(matches!(
        restored.restore(&[1, 2, 3]),
        Err(FloeError::Codec(_))
    ));
    assert_eq!(restored.digest(), before);
}

#[test]
fn restore_keeps_the_local_configuration() {
    let mut h = Harness::with_repo();
    workload(&mut h);
    let mut small = State::new(Config {
        idempotency_window: 7,
        ..Config::default()
    });
    small.restore(&h.state.snapshot().unwrap()).unwrap();
    assert_eq!(small.config().idempotency_window, 7);
}

#[test]
fn replicas_applying_the_same_log_agree() {
    let mut a = Harness::with_repo();
    let mut b = Harness::with_repo();
    workload(&mut a);
    workload(&mut b);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.state.snapshot().unwrap(), b.state.snapshot().unwrap());
    // One more different command and they differ.
    b.cmd(Command::CreateRepo {
        repo: floe_protocol::RepoName::new("x").unwrap(),
    })
    .unwrap();
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn local_coordinator_stamps_commands_and_answers_queries() {
    let local = LocalCoordinator::new(Config::default());
    let run = |r| local.call_now(r);
    assert_eq!(
        run(Request::Command(Command::CreateRepo { repo: repo() })),
        Ok(Reply::RepoCreated { root: CommitId(0) })
    );
    assert_eq!(
        run(Request::Command(Command::CreateRepo { repo: repo() })),
        Err(FloeError::RepoExists { repo: repo() }),
        "a second call is a new command, not a retry"
    );
    let checkout = run(Request::Query(Query::Checkout {
        repo: repo(),
        branch: main_branch(),
    }));
    assert!(matches!(checkout, Ok(Reply::Commit(c)) if c.id == CommitId(0)));
    let state = local.state();
    let again = LocalCoordinator::with_state(state.clone());
    assert_eq!(again.state().digest(), state.digest());
    assert!(local.state().time() > 1_600_000_000_000, "wall clock ms");
}

#[test]
fn local_coordinator_delivers_envelopes_idempotently_as_node_1() {
    let local = LocalCoordinator::new(Config::default());
    assert_eq!(local.nodes(), vec![1]);
    let envelope = Envelope {
        client: ClientId(7),
        seq: 1,
        request: Request::Command(Command::CreateRepo { repo: repo() }),
    };
    let open = Envelope {
        client: ClientId(7),
        seq: 0,
        request: Request::Command(Command::OpenClient),
    };
    assert_eq!(futures_lite_block_on(local.send(1, open)), Ok(Reply::Done));
    let first = futures_lite_block_on(local.send(1, envelope.clone()));
    assert_eq!(first, Ok(Reply::RepoCreated { root: CommitId(0) }));
    let resent = futures_lite_block_on(local.send(1, envelope.clone()));
    assert_eq!(resent, first, "a resend is answered, not applied again");
    let elsewhere = futures_lite_block_on(local.send(2, envelope));
    assert!(matches!(elsewhere, Err(FloeError::Unavailable(_))));
}

/// Polls a future that is ready at once (the local coordinator never waits).
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the local coordinator never waits"),
    }
}

/// The planted bug makes a restored replica execute a retry again.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_forget_idempotency_on_restore_reexecutes_retries() {
    use floe_coordinator::bugs::Bugs;
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    h.create_array("/t", &m);
    let commit = h.envelope(Command::Commit(floe_protocol::CommitRequest {
        repo: repo(),
        branch: main_branch(),
        base: CommitId(1),
        footprint: writes("/t", &m, "0:10"),
        deltas: vec![floe_protocol::ObjectId(1)],
        message: "once".into(),
        author: "a".into(),
        mode: CommitMode::Rebase {
            solver: floe_protocol::Solver::Ours,
        },
    }));
    assert_eq!(committed(h.state.apply(5_000, &commit)), CommitId(2));
    let mut buggy = State::new(Config {
        bugs: Bugs {
            forget_idempotency_on_restore: true,
            ..Bugs::default()
        },
        ..Config::default()
    });
    buggy.restore(&h.state.snapshot().unwrap()).unwrap();
    assert_eq!(
        committed(buggy.apply(6_000, &commit)),
        CommitId(3),
        "committed twice"
    );
}

fn expiring(ms: u64) -> State {
    State::new(Config {
        client_expiry_ms: ms,
        ..Config::default()
    })
}

fn create(name: &str) -> Command {
    Command::CreateRepo {
        repo: floe_protocol::RepoName::new(name).unwrap(),
    }
}

#[test]
fn commands_need_an_open_session() {
    let mut state = expiring(1_000);
    let refused = state.apply(5, &envelope(1, 1, create("a")));
    assert_eq!(refused, Err(FloeError::SessionExpired { client: 1 }));
    open(&mut state, 1, 6);
    open(&mut state, 1, 7);
    assert!(state.apply(8, &envelope(1, 1, create("a"))).is_ok());
}

#[test]
fn idle_sessions_expire_and_their_retries_are_refused_never_reapplied() {
    let mut state = expiring(1_000);
    open(&mut state, 1, 0);
    assert!(state.apply(10, &envelope(1, 1, create("a"))).is_ok());
    // Another client's command at t = 2000 expires client 1 (idle since 10).
    open(&mut state, 2, 2_000);
    let digest = state.digest();
    let expired = Err(FloeError::SessionExpired { client: 1 });
    // The retry of seq 1 (its answer was lost), and a new seq: neither runs.
    assert_eq!(
        state.apply(2_001, &envelope(1, 1, create("again"))),
        expired
    );
    assert_eq!(state.apply(2_002, &envelope(1, 2, create("b"))), expired);
    assert_eq!(state.digest(), digest, "a refusal changes nothing");
    // A client that opens anew goes on (numbering after what it sent).
    open(&mut state, 1, 2_003);
    assert!(state.apply(2_004, &envelope(1, 3, create("b"))).is_ok());
}

#[test]
fn a_client_idle_past_the_expiry_is_refused_by_its_own_next_command() {
    let mut state = expiring(1_000);
    open(&mut state, 1, 0);
    assert!(state.apply(10, &envelope(1, 1, create("a"))).is_ok());
    let expired = Err(FloeError::SessionExpired { client: 1 });
    assert_eq!(state.apply(5_000, &envelope(1, 2, create("b"))), expired);
    // Its outcomes are gone with it: the old seq is refused, not re-run.
    assert_eq!(state.apply(5_001, &envelope(1, 1, create("a2"))), expired);
}

#[test]
fn sessions_in_use_do_not_expire() {
    let mut state = expiring(1_000);
    open(&mut state, 1, 0);
    for seq in 1..=10 {
        let name = format!("r{seq}");
        assert!(state
            .apply(seq * 600, &envelope(1, seq, create(&name)))
            .is_ok());
    }
}

#[test]
fn expiry_goes_on_after_a_snapshot_restore() {
    let mut state = expiring(1_000);
    open(&mut state, 1, 0);
    let mut restored = expiring(1_000);
    restored.restore(&state.snapshot().unwrap()).unwrap();
    assert_eq!(restored.digest(), state.digest());
    open(&mut restored, 2, 2_000);
    let refused = restored.apply(2_001, &envelope(1, 1, create("a")));
    assert_eq!(refused, Err(FloeError::SessionExpired { client: 1 }));
}
