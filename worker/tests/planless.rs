//! Planless cooperative sessions through the user API (`Planless`): the
//! `ContributeTask` machine the simulation also runs.

use std::sync::Arc;

use floe_coordinator::state::Config;
use floe_coordinator::LocalCoordinator;
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitMode, ConflictKind, DType, FloeError, Region,
    Reply, RepoName, Request, Solver, WorkerId,
};
use floe_worker::{read_at, ArrayData, Planless, Session, Store};

fn repo() -> RepoName {
    RepoName::new("weather").unwrap()
}

fn t() -> ArrayPath {
    ArrayPath::new("/t").unwrap()
}

fn region(text: &str) -> Region {
    text.parse().unwrap()
}

fn ints(r: &Region, v: i32) -> ArrayData {
    let vals = vec![v; r.elements() as usize];
    ArrayData::from_slice(&r.shape(), &vals).unwrap()
}

/// A repo whose `/t` (30 int32 in chunks of 10, fill 0) exists.
async fn setup() -> (Arc<LocalCoordinator>, Store) {
    let coord = Arc::new(LocalCoordinator::new(Config::default()));
    let created = coord.call_now(Request::Command(Command::CreateRepo { repo: repo() }));
    assert!(matches!(created, Ok(Reply::RepoCreated { .. })));
    let store = Store::memory();
    let main = BranchName::new("main").unwrap();
    let mut s = Session::checkout(coord.clone(), store.clone(), repo(), main)
        .await
        .unwrap();
    let meta = ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0).unwrap();
    s.create_array(&t(), meta).unwrap();
    s.commit("create", CommitMode::Strict).await.unwrap();
    (coord, store)
}

async fn open(coord: &Arc<LocalCoordinator>, store: &Store) -> Planless<LocalCoordinator> {
    let main = BranchName::new("main").unwrap();
    Planless::open(coord.clone(), store.clone(), repo(), main)
        .await
        .unwrap()
}

#[tokio::test]
async fn disjoint_contributions_land_as_one_commit_and_an_overlap_is_refused() {
    let (coord, store) = setup().await;
    let p = open(&coord, &store).await;
    let (a, b) = (region("0:12"), region("20:30"));
    p.contribute(WorkerId(1), vec![(t(), a.clone(), ints(&a, 7))])
        .await
        .unwrap();
    p.contribute(WorkerId(2), vec![(t(), b.clone(), ints(&b, 9))])
        .await
        .unwrap();
    // 5:15 shares chunks 0 and 1 with the first contribution.
    let c = region("5:15");
    let refused = p
        .contribute(WorkerId(3), vec![(t(), c.clone(), ints(&c, 1))])
        .await
        .unwrap_err();
    assert!(
        refused.conflicts().iter().any(|x| matches!(
            &x.kind,
            ConflictKind::ChunkDoubleUpdate { chunks, .. } if chunks == &vec![vec![0], vec![1]]
        )),
        "{refused}"
    );
    let mode = CommitMode::Rebase {
        solver: Solver::Fail,
    };
    let commit = p.commit("planless", mode).await.unwrap();
    let got = read_at(coord, store, repo(), commit, &t(), &region("0:30"))
        .await
        .unwrap();
    let mut want = vec![0i32; 30];
    want[..12].fill(7);
    want[20..].fill(9);
    assert_eq!(got, ArrayData::from_slice(&[30], &want).unwrap());
}

#[tokio::test]
async fn bad_contributions_are_clear_errors_and_change_nothing() {
    let (coord, store) = setup().await;
    let p = open(&coord, &store).await;
    let outside = region("25:35");
    let err = p
        .contribute(WorkerId(1), vec![(t(), outside.clone(), ints(&outside, 1))])
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err}");
    let r = region("0:10");
    let wrong = ArrayData::from_slice(&[10], &[1.5f64; 10]).unwrap();
    let err = p
        .contribute(WorkerId(1), vec![(t(), r.clone(), wrong)])
        .await
        .unwrap_err();
    assert!(matches!(err, FloeError::DTypeMismatch { .. }), "{err}");
    // Nothing was contributed: the session still takes this chunk.
    p.contribute(WorkerId(2), vec![(t(), r.clone(), ints(&r, 4))])
        .await
        .unwrap();
    p.abort().await.unwrap();
    let again = p.commit("too late", CommitMode::Strict).await.unwrap_err();
    assert!(matches!(again, FloeError::SessionClosed { .. }), "{again}");
}
