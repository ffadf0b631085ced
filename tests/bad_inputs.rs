//! Bad input gets a clear, typed error and changes nothing — checked through
//! the whole stack (session or raw command -> Raft cluster -> state machine).

use std::sync::Arc;
use std::time::Duration;

use floe_coordinator::{Config, EmbeddedCluster};
use floe_protocol::codec::{self, CodecError, MAX_FRAME_LEN, WIRE_VERSION};
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, DType, FloeError,
    GeometryError, Message, ObjectId, PlannedTask, Query, Region, Reply, RepoName, Request,
    SessionId, TaskId, WorkerId,
};
use floe_worker::{ArrayData, Session, Store};

struct Fixture {
    coord: Arc<EmbeddedCluster>,
    store: Store,
    repo: RepoName,
}

fn path() -> ArrayPath {
    ArrayPath::new("/array").unwrap()
}

fn main_branch() -> BranchName {
    BranchName::new("main").unwrap()
}

/// A cluster with repo `r` whose C1 holds int32[30] in chunks of 10.
async fn fixture() -> Fixture {
    let coord = Arc::new(EmbeddedCluster::start(3, Config::default()).unwrap());
    let store = Store::memory();
    let repo = RepoName::new("r").unwrap();
    cmd(&coord, Command::CreateRepo { repo: repo.clone() })
        .await
        .unwrap();
    let mut s = Session::checkout(coord.clone(), store.clone(), repo.clone(), main_branch())
        .await
        .unwrap();
    let meta = ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0).unwrap();
    s.create_array(&path(), meta).unwrap();
    s.commit("create", CommitMode::Strict).await.unwrap();
    Fixture { coord, store, repo }
}

async fn session(f: &Fixture) -> Session<EmbeddedCluster> {
    Session::checkout(
        f.coord.clone(),
        f.store.clone(),
        f.repo.clone(),
        main_branch(),
    )
    .await
    .unwrap()
}

async fn cmd(coord: &Arc<EmbeddedCluster>, c: Command) -> Result<Reply, FloeError> {
    floe_worker::client::call(coord, Request::Command(c)).await
}

async fn tip(f: &Fixture) -> CommitId {
    let q = Query::Checkout {
        repo: f.repo.clone(),
        branch: main_branch(),
    };
    match floe_worker::client::call(&f.coord, Request::Query(q)).await {
        Ok(Reply::Commit(rec)) => rec.id,
        other => panic!("checkout failed: {other:?}"),
    }
}

async fn open(f: &Fixture, regions: &[&str], lease_ms: u64) -> Result<Reply, FloeError> {
    let plan = regions
        .iter()
        .map(|r| PlannedTask {
            array: path(),
            region: r.parse().unwrap(),
        })
        .collect();
    cmd(
        &f.coord,
        Command::OpenSession {
            repo: f.repo.clone(),
            branch: main_branch(),
            plan: Some(plan),
            lease_ms,
            source: None,
            create: Default::default(),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_repo() {
    let f = fixture().await;
    let nope = RepoName::new("nope").unwrap();
    let err = Session::checkout(
        f.coord.clone(),
        f.store.clone(),
        nope.clone(),
        main_branch(),
    )
    .await
    .err();
    assert_eq!(err, Some(FloeError::UnknownRepo { repo: nope }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_branch() {
    let f = fixture().await;
    let dev = BranchName::new("dev").unwrap();
    let err = Session::checkout(
        f.coord.clone(),
        f.store.clone(),
        f.repo.clone(),
        dev.clone(),
    )
    .await
    .err();
    assert_eq!(
        err,
        Some(FloeError::UnknownBranch {
            repo: f.repo.clone(),
            branch: dev
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misaligned_plan_is_refused_and_opens_nothing() {
    let f = fixture().await;
    let err = open(&f, &["0:10", "10:25"], 10_000).await.unwrap_err();
    assert!(
        matches!(&err, FloeError::InvalidPlan { why } if why.contains("T1") && why.contains("aligned")),
        "{err}"
    );
    let unknown = cmd(
        &f.coord,
        Command::AbortSession {
            session: SessionId(1),
        },
    )
    .await;
    assert_eq!(
        unknown,
        Err(FloeError::UnknownSession {
            session: SessionId(1)
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_plan_is_refused() {
    let f = fixture().await;
    let err = open(&f, &["0:20", "10:30"], 10_000).await.unwrap_err();
    assert!(
        matches!(&err, FloeError::InvalidPlan { why } if why.contains("T0") && why.contains("T1")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_bounds_region_is_refused_before_anything_is_written() {
    let f = fixture().await;
    let mut s = session(&f).await;
    let region: Region = "25:35".parse().unwrap();
    let data = ArrayData::from_slice(&[10], &[0i32; 10]).unwrap();
    let err = s.write_region(&path(), &region, &data).await.unwrap_err();
    assert!(
        matches!(
            err,
            FloeError::Geometry {
                error: GeometryError::OutOfBounds {
                    dim: 0,
                    extent: 30,
                    ..
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(s.footprint().is_empty(), "nothing may be recorded");
    let plan_err = open(&f, &["20:40"], 10_000).await.unwrap_err();
    assert!(
        matches!(plan_err, FloeError::InvalidPlan { .. }),
        "{plan_err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtype_mismatch_is_refused() {
    let f = fixture().await;
    let mut s = session(&f).await;
    let data = ArrayData::from_slice(&[10], &[0.5f64; 10]).unwrap();
    let err = s
        .write_region(&path(), &"0:10".parse().unwrap(), &data)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        FloeError::DTypeMismatch {
            path: path(),
            expected: DType::I32,
            got: DType::F64
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_with_a_stale_epoch_cannot_complete() {
    let f = fixture().await;
    let Ok(Reply::SessionOpened { session, .. }) = open(&f, &["0:10"], 50).await else {
        panic!("session must open");
    };
    let claim = |worker| Command::ClaimTask {
        session,
        worker: WorkerId(worker),
    };
    let Ok(Reply::TaskGranted { epoch: stale, .. }) = cmd(&f.coord, claim(1)).await else {
        panic!("first claim must be granted");
    };
    tokio::time::sleep(Duration::from_millis(120)).await; // the lease runs out
    let Ok(Reply::TaskGranted { epoch: current, .. }) = cmd(&f.coord, claim(2)).await else {
        panic!("the expired task must be granted again");
    };
    assert_ne!(stale, current);
    let meta = ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0).unwrap();
    let mut footprint = floe_protocol::Footprint::new();
    footprint.add_region(&path(), &meta, &"0:10".parse().unwrap());
    let complete = |epoch| Command::CompleteTask {
        session,
        task: TaskId(0),
        epoch,
        delta: ObjectId(1),
        footprint: footprint.clone(),
        next: None,
    };
    assert_eq!(
        cmd(&f.coord, complete(stale)).await,
        Err(FloeError::StaleEpoch {
            task: TaskId(0),
            presented: stale,
            current
        })
    );
    assert_eq!(
        cmd(&f.coord, complete(current)).await,
        Ok(Reply::Accepted { unfinished: 0 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_sessions_are_refused_after_commit() {
    let f = fixture().await;
    let Ok(Reply::SessionOpened { session, .. }) = open(&f, &["0:10"], 10_000).await else {
        panic!("session must open");
    };
    let commit = Command::CommitSession {
        session,
        message: "early".into(),
        author: "t".into(),
        mode: CommitMode::Strict,
    };
    assert_eq!(
        cmd(&f.coord, commit.clone()).await,
        Err(FloeError::SessionIncomplete {
            session,
            pending: 1
        })
    );
    cmd(&f.coord, Command::AbortSession { session })
        .await
        .unwrap();
    assert_eq!(
        cmd(&f.coord, commit).await,
        Err(FloeError::SessionClosed { session })
    );
    assert_eq!(tip(&f).await, CommitId(1), "nothing landed");
}

#[test]
fn malformed_frames_are_errors_not_panics() {
    assert_eq!(codec::decode::<Message>(&[]), Err(CodecError::Empty));
    assert_eq!(
        codec::decode::<Message>(&[WIRE_VERSION + 1, 0]),
        Err(CodecError::Version {
            got: WIRE_VERSION + 1
        })
    );
    assert!(matches!(
        codec::decode::<Message>(&[WIRE_VERSION, 0xFF, 0xFF, 0xFF]),
        Err(CodecError::Malformed(_))
    ));
    let oversized = vec![WIRE_VERSION; MAX_FRAME_LEN + 1];
    assert!(matches!(
        codec::decode::<Message>(&oversized),
        Err(CodecError::TooLong { .. })
    ));
    // A frame naming a repo that is not a valid name is refused at decode.
    let bad_name = codec::encode(&"no/slashes".to_string()).unwrap();
    assert!(codec::decode::<RepoName>(&bad_name).is_err());
}
