//! The seed's scenarios end to end: sessions on a three-coordinator Raft
//! cluster writing through object storage.

use std::sync::Arc;

use floe_coordinator::{Config, EmbeddedCluster};
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, ConflictKind, DType,
    FloeError, PlannedTask, Region, Reply, RepoName, Request, Solver,
};
use floe_worker::{run_plan, ArrayData, CoopOptions, SeedStep, Session, Source, Store, Synthetic};

fn cluster() -> Arc<EmbeddedCluster> {
    Arc::new(EmbeddedCluster::start(3, Config::default()).expect("cluster starts"))
}

fn path() -> ArrayPath {
    ArrayPath::new("/array").unwrap()
}

fn main_branch() -> BranchName {
    BranchName::new("main").unwrap()
}

/// A repo whose C1 holds an int32 array of 30 elements in chunks of 10.
async fn repo_at_c1(coord: &Arc<EmbeddedCluster>, store: &Store, name: &str) -> RepoName {
    let repo = RepoName::new(name).unwrap();
    let reply = floe_worker::client::call(
        coord,
        Request::Command(Command::CreateRepo { repo: repo.clone() }),
    )
    .await
    .unwrap();
    assert_eq!(reply, Reply::RepoCreated { root: CommitId(0) });
    let mut s = session(coord, store, &repo).await;
    let meta = ArrayMeta::new(vec![30], vec![10], DType::I32, -1.0).unwrap();
    s.create_array(&path(), meta).unwrap();
    assert_eq!(
        s.commit("create", CommitMode::Strict).await.unwrap(),
        CommitId(1)
    );
    repo
}

async fn session(
    coord: &Arc<EmbeddedCluster>,
    store: &Store,
    repo: &RepoName,
) -> Session<EmbeddedCluster> {
    Session::checkout(coord.clone(), store.clone(), repo.clone(), main_branch())
        .await
        .unwrap()
}

async fn write(s: &mut Session<EmbeddedCluster>, region: &str, start: i32) {
    let region: Region = region.parse().unwrap();
    let values: Vec<i32> = (start..start + region.elements() as i32).collect();
    let data = ArrayData::from_slice(&region.shape(), &values).unwrap();
    s.write_region(&path(), &region, &data).await.unwrap();
}

async fn read_all(s: &mut Session<EmbeddedCluster>) -> Vec<i32> {
    let data = s.read_region(&path(), &"0:30".parse().unwrap()).await;
    data.unwrap().to_vec::<i32>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_one_out_of_date_then_fast_forward_to_c3() {
    let (coord, store) = (cluster(), Store::memory());
    let repo = repo_at_c1(&coord, &store, "ex1").await;
    let mut s1 = session(&coord, &store, &repo).await;
    let mut s2 = session(&coord, &store, &repo).await;
    assert_eq!((s1.base().id, s2.base().id), (CommitId(1), CommitId(1)));
    write(&mut s1, "0:20", 100).await;
    write(&mut s2, "20:30", 200).await;
    assert_eq!(s1.commit("S1", CommitMode::Strict).await, Ok(CommitId(2)));

    let mut steps = Vec::new();
    let c3 = s2
        .commit_with_fast_forward_observed("S2", 4, |s| steps.push(s.clone()))
        .await;
    assert_eq!(c3, Ok(CommitId(3)));
    assert_eq!(
        steps,
        vec![
            SeedStep::CommitSent { base: CommitId(1) },
            SeedStep::OutOfDate { tip: CommitId(2) },
            SeedStep::Asked {
                tip: CommitId(2),
                yes: true
            },
            SeedStep::FastForwarded {
                from: CommitId(1),
                to: CommitId(2)
            },
            SeedStep::CommitSent { base: CommitId(2) },
            SeedStep::Committed {
                commit: CommitId(3)
            },
        ]
    );
    let want: Vec<i32> = (100..120).chain(200..210).collect();
    assert_eq!(read_all(&mut s2).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_one_in_one_round_trip_with_server_side_rebase() {
    let (coord, store) = (cluster(), Store::memory());
    let repo = repo_at_c1(&coord, &store, "ex1r").await;
    let mut s1 = session(&coord, &store, &repo).await;
    let mut s2 = session(&coord, &store, &repo).await;
    write(&mut s1, "0:20", 100).await;
    write(&mut s2, "20:30", 200).await;
    s1.commit("S1", CommitMode::Strict).await.unwrap();
    let rebase = CommitMode::Rebase {
        solver: Solver::Fail,
    };
    assert_eq!(s2.commit("S2", rebase).await, Ok(CommitId(3)));
    let want: Vec<i32> = (100..120).chain(200..210).collect();
    assert_eq!(read_all(&mut s2).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_two_conflict_on_chunk_10_20_then_manual_retry() {
    let (coord, store) = (cluster(), Store::memory());
    let repo = repo_at_c1(&coord, &store, "ex2").await;
    let mut s1 = session(&coord, &store, &repo).await;
    let mut s2 = session(&coord, &store, &repo).await;
    write(&mut s1, "0:20", 100).await;
    write(&mut s2, "15:30", 500).await;
    s1.commit("S1", CommitMode::Strict).await.unwrap();

    let err = s2.commit_with_fast_forward("S2", 4).await.unwrap_err();
    let FloeError::Conflict { tip, conflicts } = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(tip, CommitId(2));
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, path());
    assert_eq!(
        conflicts[0].kind,
        ConflictKind::ChunkDoubleUpdate {
            chunks: vec![vec![1]],
            total: 1
        }
    );

    let mut retry = session(&coord, &store, &repo).await;
    assert_eq!(retry.base().id, CommitId(2));
    write(&mut retry, "15:30", 500).await;
    assert_eq!(
        retry.commit("S2 retry", CommitMode::Strict).await,
        Ok(CommitId(3))
    );
    let want: Vec<i32> = (100..115).chain(500..515).collect();
    assert_eq!(read_all(&mut retry).await, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cooperative_dag_lands_as_one_commit() {
    let (coord, store) = (cluster(), Store::memory());
    let repo = RepoName::new("dag").unwrap();
    floe_worker::client::call(
        &coord,
        Request::Command(Command::CreateRepo { repo: repo.clone() }),
    )
    .await
    .unwrap();
    let mut s = session(&coord, &store, &repo).await;
    let meta = ArrayMeta::new(vec![40], vec![10], DType::F64, 0.0).unwrap();
    s.create_array(&path(), meta.clone()).unwrap();
    s.commit("create", CommitMode::Strict).await.unwrap();
    // The seed's DAG: write regions 0:10, 10:20, 20:30, 30:40 in one session.
    let plan: Vec<PlannedTask> = ["0:10", "10:20", "20:30", "30:40"]
        .iter()
        .map(|r| PlannedTask {
            array: path(),
            region: r.parse().unwrap(),
        })
        .collect();
    let source = Arc::new(Synthetic { seed: 3 });
    let report = run_plan(
        coord.clone(),
        store.clone(),
        repo.clone(),
        main_branch(),
        plan,
        source.clone(),
        CoopOptions {
            workers: 4,
            seed: Some(3),
            ..CoopOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.commit, CommitId(2));
    assert_eq!(report.tasks, 4);
    let full = Region::full(&meta);
    let back = floe_worker::read_at(coord, store, repo, CommitId(2), &path(), &full)
        .await
        .unwrap();
    assert_eq!(back, source.read(&path(), &meta, &full).unwrap());
}
