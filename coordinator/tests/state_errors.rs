//! Every bad input to repos, branches, tags, commits and checkpoints gets
//! its own error, and changes nothing.

mod state_support;

use floe_protocol::RepoName;
use floe_protocol::{
    ArrayChange, ArrayMeta, Codec, Command, CommitId, CommitMode, CommitRequest, DType, FloeError,
    GeometryError, MetaChange, ObjectId, Query, Reply, SessionId, TagName, TaskId, WorkerId,
};
use state_support::*;

fn setup() -> (Harness, ArrayMeta) {
    let mut h = Harness::with_repo();
    let m = meta(&[30], &[10]);
    h.create_array("/t", &m);
    (h, m)
}

fn tag(name: &str) -> TagName {
    TagName::new(name).unwrap()
}

/// Asserts `outcome` is `expected` and that it left the state untouched
/// (apart from the idempotency record and clock of the command itself).
fn refused(h: &mut Harness, command: Command, expected: FloeError) {
    let tip = h.tip();
    assert_eq!(h.cmd(command), Err(expected));
    assert_eq!(h.tip(), tip);
}

#[test]
fn unknown_repo() {
    let (mut h, m) = setup();
    let nope = RepoName::new("nope").unwrap();
    let err = FloeError::UnknownRepo { repo: nope.clone() };
    let q = h.query(Query::Checkout {
        repo: nope.clone(),
        branch: main_branch(),
    });
    assert_eq!(q, Err(err.clone()));
    refused(
        &mut h,
        Command::Commit(CommitRequest {
            repo: nope.clone(),
            branch: main_branch(),
            base: CommitId(1),
            footprint: writes("/t", &m, "0:10"),
            deltas: vec![ObjectId(1)],
            message: String::new(),
            author: String::new(),
            mode: CommitMode::Strict,
        }),
        err.clone(),
    );
    let open = h.cmd(Command::OpenSession {
        repo: nope,
        branch: main_branch(),
        plan: None,
        lease_ms: 1000,
        source: None,
        create: Default::default(),
    });
    assert_eq!(open, Err(err));
}

#[test]
fn unknown_branch() {
    let (mut h, m) = setup();
    let err = FloeError::UnknownBranch {
        repo: repo(),
        branch: branch("nope"),
    };
    let q = h.query(Query::Checkout {
        repo: repo(),
        branch: branch("nope"),
    });
    assert_eq!(q, Err(err.clone()));
    let r = h.commit_on(
        &branch("nope"),
        CommitId(1),
        writes("/t", &m, "0:10"),
        REBASE,
    );
    assert_eq!(r, Err(err.clone()));
    let log = h.query(Query::Log {
        repo: repo(),
        branch: branch("nope"),
        limit: 3,
    });
    assert_eq!(log, Err(err));
}

#[test]
fn unknown_tag() {
    let h = setup().0;
    assert_eq!(
        h.query(Query::ResolveTag {
            repo: repo(),
            tag: tag("v1")
        }),
        Err(FloeError::UnknownTag {
            repo: repo(),
            tag: tag("v1")
        })
    );
}

#[test]
fn unknown_commit() {
    let (mut h, m) = setup();
    let err = FloeError::UnknownCommit {
        repo: repo(),
        commit: CommitId(99),
    };
    assert_eq!(
        h.query(Query::GetCommit {
            repo: repo(),
            commit: CommitId(99)
        }),
        Err(err.clone())
    );
    refused(
        &mut h,
        Command::CreateBranch {
            repo: repo(),
            branch: branch("dev"),
            at: CommitId(99),
        },
        err.clone(),
    );
    refused(
        &mut h,
        Command::CreateTag {
            repo: repo(),
            tag: tag("v1"),
            at: CommitId(99),
        },
        err.clone(),
    );
    assert_eq!(
        h.commit(CommitId(99), writes("/t", &m, "0:10"), REBASE),
        Err(err.clone())
    );
    assert_eq!(
        h.can_fast_forward(CommitId(99), &writes("/t", &m, "0:10")),
        Err(err)
    );
}

#[test]
fn unknown_session_and_task() {
    let mut h = setup().0;
    let s99 = SessionId(99);
    let err = FloeError::UnknownSession { session: s99 };
    assert_eq!(h.query(Query::Session { session: s99 }), Err(err.clone()));
    assert_eq!(
        h.cmd(Command::ClaimTask {
            session: s99,
            worker: WorkerId(1)
        }),
        Err(err.clone())
    );
    assert_eq!(h.cmd(Command::AbortSession { session: s99 }), Err(err));
    let s = opened(h.open_session(Some(vec![task("/t", "0:10")]), 1000));
    assert_eq!(
        h.cmd(Command::RenewLease {
            session: s,
            task: TaskId(5),
            epoch: 1
        }),
        Err(FloeError::UnknownTask {
            session: s,
            task: TaskId(5)
        })
    );
    // A planless session has no tasks at all.
    let p = opened(h.open_session(None, 1000));
    assert_eq!(
        h.cmd(Command::CompleteTask {
            session: p,
            task: TaskId(0),
            epoch: 1,
            delta: ObjectId(1),
            footprint: Default::default(),
            next: None,
        }),
        Err(FloeError::UnknownTask {
            session: p,
            task: TaskId(0)
        })
    );
}

#[test]
fn repo_exists() {
    let mut h = setup().0;
    refused(
        &mut h,
        Command::CreateRepo { repo: repo() },
        FloeError::RepoExists { repo: repo() },
    );
    assert_eq!(h.tip(), CommitId(1), "the repo was not reset");
}

#[test]
fn branch_exists() {
    let mut h = setup().0;
    let create = |at| Command::CreateBranch {
        repo: repo(),
        branch: main_branch(),
        at,
    };
    refused(
        &mut h,
        create(CommitId(0)),
        FloeError::BranchExists {
            repo: repo(),
            branch: main_branch(),
        },
    );
    assert_eq!(h.tip(), CommitId(1), "main did not move");
}

#[test]
fn tags_are_immutable() {
    let mut h = setup().0;
    let create = |at| Command::CreateTag {
        repo: repo(),
        tag: tag("v1"),
        at,
    };
    assert_eq!(h.cmd(create(CommitId(0))), Ok(Reply::Done));
    let exists = FloeError::TagExists {
        repo: repo(),
        tag: tag("v1"),
    };
    assert_eq!(h.cmd(create(CommitId(1))), Err(exists.clone()));
    assert_eq!(h.cmd(create(CommitId(0))), Err(exists));
    match h.query(Query::ResolveTag {
        repo: repo(),
        tag: tag("v1"),
    }) {
        Ok(Reply::Commit(c)) => assert_eq!(c.id, CommitId(0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn creating_an_existing_array_is_invalid() {
    let (mut h, m) = setup();
    let why = change_error(h.commit(
        CommitId(1),
        meta_change("/t", &m, MetaChange::Create(m.clone())),
        REBASE,
    ));
    assert!(why.contains("already exists"), "{why}");
}

#[test]
fn writing_an_unknown_array_is_refused() {
    let (mut h, m) = setup();
    assert_eq!(
        h.commit(CommitId(1), writes("/nope", &m, "0:10"), REBASE),
        Err(FloeError::UnknownArray {
            path: path("/nope")
        })
    );
    // Deleting or updating one too.
    assert_eq!(
        h.commit(
            CommitId(1),
            meta_change("/nope", &m, MetaChange::Delete),
            REBASE
        ),
        Err(FloeError::UnknownArray {
            path: path("/nope")
        })
    );
}

#[test]
fn footprint_grid_must_match_the_array() {
    let (mut h, _) = setup();
    let other = meta(&[30], &[5]);
    let why = change_error(h.commit(CommitId(1), writes("/t", &other, "0:10"), REBASE));
    assert!(why.contains("grid"), "{why}");
}

#[test]
fn chunk_indices_must_be_inside_the_grid() {
    let (mut h, m) = setup();
    let mut f = writes("/t", &m, "0:10");
    if let Some(c) = f.arrays.get_mut(&path("/t")) {
        c.chunks.insert(3);
    }
    let why = change_error(h.commit(CommitId(1), f, REBASE));
    assert!(why.contains("chunk index 3"), "{why}");
}

#[test]
fn chunks_need_a_delta() {
    let (mut h, m) = setup();
    let r = h.cmd(Command::Commit(CommitRequest {
        repo: repo(),
        branch: main_branch(),
        base: CommitId(1),
        footprint: writes("/t", &m, "0:10"),
        deltas: vec![],
        message: String::new(),
        author: String::new(),
        mode: CommitMode::Strict,
    }));
    let why = change_error(r);
    assert!(why.contains("delta"), "{why}");
}

#[test]
fn created_metadata_must_be_valid() {
    let mut h = Harness::with_repo();
    let bad = ArrayMeta {
        shape: vec![10],
        chunk_shape: vec![0],
        dtype: DType::U8,
        fill_value: vec![0],
        codec: Codec::Raw,
    };
    let mut f = floe_protocol::Footprint::new();
    f.arrays.insert(
        path("/bad"),
        ArrayChange {
            grid: vec![],
            chunks: Default::default(),
            meta: Some(MetaChange::Create(bad)),
        },
    );
    assert_eq!(
        h.commit(CommitId(0), f, CommitMode::Strict),
        Err(FloeError::Geometry {
            path: path("/bad"),
            error: GeometryError::ZeroChunk { dim: 0 }
        })
    );
}

#[test]
fn updates_cannot_reinterpret_existing_chunks() {
    let (mut h, m) = setup();
    let retyped = ArrayMeta::new(vec![30], vec![10], DType::F64, 0.0).unwrap();
    assert_eq!(
        h.commit(
            CommitId(1),
            meta_change("/t", &retyped, MetaChange::Update(retyped.clone())),
            REBASE
        ),
        Err(FloeError::DTypeMismatch {
            path: path("/t"),
            expected: DType::I32,
            got: DType::F64
        })
    );
    let rechunked = meta(&[30], &[5]);
    let why = change_error(h.commit(
        CommitId(1),
        meta_change("/t", &rechunked, MetaChange::Update(rechunked.clone())),
        REBASE,
    ));
    assert!(why.contains("chunk shape"), "{why}");
    // Deleting while writing chunks is incoherent.
    let mut f = meta_change("/t", &m, MetaChange::Delete);
    f.merge(&writes("/t", &m, "0:10"));
    change_error(h.commit(CommitId(1), f, REBASE));
}

#[test]
fn checkpoints_are_set_once() {
    let mut h = setup().0;
    let record = |commit, checkpoint| Command::RecordCheckpoint {
        repo: repo(),
        commit,
        checkpoint: ObjectId(checkpoint),
    };
    assert_eq!(h.cmd(record(CommitId(1), 5)), Ok(Reply::Done));
    assert_eq!(h.cmd(record(CommitId(1), 5)), Ok(Reply::Done));
    // A second writer lost the race: the commit is checkpointed, and the
    // error names the checkpoint it has.
    let lost = h.cmd(record(CommitId(1), 6));
    assert_eq!(
        lost,
        Err(FloeError::CheckpointExists {
            commit: CommitId(1),
            checkpoint: ObjectId(5)
        })
    );
    assert!(lost.unwrap_err().is_conflict());
    assert_eq!(h.record(CommitId(1)).checkpoint, Some(ObjectId(5)));
    assert_eq!(
        h.cmd(record(CommitId(9), 5)),
        Err(FloeError::UnknownCommit {
            repo: repo(),
            commit: CommitId(9)
        })
    );
}

#[test]
fn log_honours_its_limit() {
    let (mut h, m) = setup();
    committed(h.commit(CommitId(1), writes("/t", &m, "0:10"), REBASE));
    let ids = |limit| match h.query(Query::Log {
        repo: repo(),
        branch: main_branch(),
        limit,
    }) {
        Ok(Reply::Log(log)) => log.iter().map(|c| c.id.0).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(ids(0), Vec::<u64>::new());
    assert_eq!(ids(2), vec![2, 1]);
    assert_eq!(ids(100), vec![2, 1, 0]);
}
