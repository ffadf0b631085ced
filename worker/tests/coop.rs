//! End-to-end tests of cooperative plans against an in-process coordinator.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use floe_coordinator::state::Config;
use floe_coordinator::LocalCoordinator;
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Codec, Command, CommitId, CommitMode, Coordinator, DType,
    Envelope, FloeError, Outcome, PlannedTask, Query, Region, Reply, RepoName, Request, SessionId,
    SessionStatus, TaskId, TaskState,
};
use floe_worker::coop::{CoopEvent, EventHook};
use floe_worker::{
    plan_grid, read_at, run_plan, write_npy, ArrayData, CoopOptions, CoopReport, NpyFile, Reader,
    Session, Source, Store, Synthetic, Tiling,
};

fn repo() -> RepoName {
    RepoName::new("coop").unwrap()
}

fn main_branch() -> BranchName {
    BranchName::new("main").unwrap()
}

fn t() -> ArrayPath {
    ArrayPath::new("/t").unwrap()
}

/// A coordinator with repo `coop` whose C1 creates `/t` with `meta`.
async fn setup(meta: &ArrayMeta, store: &Store) -> Arc<LocalCoordinator> {
    let coord = Arc::new(LocalCoordinator::new(Config::default()));
    coord
        .call_now(Request::Command(Command::CreateRepo { repo: repo() }))
        .unwrap();
    let mut s = Session::checkout(coord.clone(), store.clone(), repo(), main_branch())
        .await
        .unwrap();
    s.create_array(&t(), meta.clone()).unwrap();
    assert_eq!(
        s.commit("create", CommitMode::Strict).await.unwrap(),
        CommitId(1)
    );
    coord
}

/// Wraps a source, sleeping before every read.
struct Slow<S> {
    inner: S,
    delay: Duration,
    /// Only the first read of this region is slow, when set.
    only: Option<Region>,
    fired: AtomicBool,
}

impl<S> Slow<S> {
    /// `inner`, sleeping `delay_ms` before every read (or only before the
    /// first read of `only`).
    fn new(inner: S, delay_ms: u64, only: Option<Region>) -> Arc<Self> {
        Arc::new(Slow {
            inner,
            delay: Duration::from_millis(delay_ms),
            only,
            fired: AtomicBool::new(false),
        })
    }
}

impl<S: Source> Source for Slow<S> {
    fn read(
        &self,
        path: &ArrayPath,
        meta: &ArrayMeta,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        let slow = match &self.only {
            None => true,
            Some(r) => r == region && !self.fired.swap(true, Ordering::SeqCst),
        };
        if slow {
            std::thread::sleep(self.delay);
        }
        self.inner.read(path, meta, region)
    }
}

/// Runs `plan` on branch `main` of repo `coop`.
async fn run<C: Coordinator + 'static>(
    coord: Arc<C>,
    store: &Store,
    plan: Vec<PlannedTask>,
    source: Arc<dyn Source>,
    opts: CoopOptions,
) -> Result<CoopReport, FloeError> {
    run_plan(
        coord,
        store.clone(),
        repo(),
        main_branch(),
        plan,
        source,
        opts,
    )
    .await
}

/// The status of cooperative `session`.
fn session_status(coord: &LocalCoordinator, session: SessionId) -> SessionStatus {
    let status = coord
        .call_now(Request::Query(Query::Session { session }))
        .unwrap();
    let Reply::Session(status) = status else {
        panic!("{status:?}")
    };
    *status
}

fn events() -> (EventHook, Arc<Mutex<Vec<CoopEvent>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let hook: EventHook = Arc::new(move |e: &CoopEvent| sink.lock().unwrap().push(e.clone()));
    (hook, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_tasks_with_four_workers_land_as_one_commit() {
    let meta = ArrayMeta::new(vec![100, 50], vec![10, 5], DType::F64, f64::NAN)
        .unwrap()
        .with_codec(Codec::Zstd { level: 1 });
    let store = Store::memory();
    let coord = setup(&meta, &store).await;
    let plan = plan_grid(&t(), &meta, &Tiling::ChunksPerTask(vec![1, 1])).unwrap();
    assert_eq!(plan.len(), 100);
    let source = Synthetic::new(7);
    let slow = Slow::new(source, 2, None);
    let (hook, log) = events();
    let opts = CoopOptions {
        workers: 4,
        lease_ms: 5_000,
        message: "cooperative load".into(),
        author: "test".into(),
        on_event: Some(hook),
        ..CoopOptions::default()
    };
    let report = run(coord.clone(), &store, plan, slow, opts).await.unwrap();
    assert_eq!(report.tasks, 100);
    assert_eq!(report.chunks, 100);
    assert_eq!(report.stale, 0);
    assert_eq!(report.per_worker.len(), 4);
    assert_eq!(report.per_worker.values().sum::<u32>(), 100);
    assert!(
        report.per_worker.values().filter(|&&n| n > 0).count() >= 2,
        "work was shared: {:?}",
        report.per_worker
    );
    let completed = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, CoopEvent::Completed { .. }))
        .count();
    assert_eq!(completed, 100);

    // One commit, on C1, holding every task's delta.
    assert_eq!(report.commit, CommitId(2));
    let mut reader = Reader::new(coord.clone(), store.clone(), repo());
    let record = reader.record(report.commit).await.unwrap();
    assert_eq!(record.parent, Some(CommitId(1)));
    assert_eq!(record.deltas.len(), 100);
    assert_eq!(record.footprint.chunk_count(), 100);
    assert_eq!(record.message, "cooperative load");
    let tip = Session::checkout(coord.clone(), store.clone(), repo(), main_branch())
        .await
        .unwrap();
    assert_eq!(tip.base().id, report.commit);

    // Reading back gives exactly the source's data.
    let full = Region::full(&meta);
    let got = reader.read(report.commit, &t(), &full).await.unwrap();
    let want = source.read(&t(), &meta, &full).unwrap();
    assert_eq!(got.bytes, want.bytes);
}

/// Drops every lease renewal of the first grant of `task_region`, as if
/// that worker were partitioned from the coordinator while it works.
struct DropRenewals {
    inner: Arc<LocalCoordinator>,
    task_region: Region,
    first_grant: Mutex<Option<(TaskId, u64)>>,
}

impl Coordinator for DropRenewals {
    fn nodes(&self) -> Vec<u64> {
        self.inner.nodes()
    }

    async fn send(&self, to: u64, envelope: Envelope) -> Outcome {
        let dropped = match &envelope.request {
            Request::Command(Command::RenewLease { task, epoch, .. }) => {
                *self.first_grant.lock().unwrap() == Some((*task, *epoch))
            }
            _ => false,
        };
        let outcome = if dropped {
            Err(FloeError::Unavailable("renewal lost in the network".into()))
        } else {
            self.inner.send(to, envelope).await
        };
        // A grant answers a claim, or rides on an accepted completion.
        if let Ok(
            Reply::TaskGranted {
                task,
                region,
                epoch,
                ..
            }
            | Reply::AcceptedNext {
                task,
                region,
                epoch,
                ..
            },
        ) = &outcome
        {
            let mut first = self.first_grant.lock().unwrap();
            if *region == self.task_region && first.is_none() {
                *first = Some((*task, *epoch));
            }
        }
        outcome
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_lease_is_redone_by_another_worker_and_the_zombie_is_refused() {
    let meta = ArrayMeta::new(vec![40, 40], vec![10, 10], DType::I32, 0.0).unwrap();
    let store = Store::memory();
    let local = setup(&meta, &store).await;
    let slow_region: Region = "10:20,20:30".parse().unwrap();
    let coord = Arc::new(DropRenewals {
        inner: local.clone(),
        task_region: slow_region.clone(),
        first_grant: Mutex::new(None),
    });
    let plan = plan_grid(&t(), &meta, &Tiling::ChunksPerTask(vec![1, 1])).unwrap();
    let source = Synthetic::new(99);
    let slow = Slow::new(source, 1500, Some(slow_region.clone()));
    let (hook, log) = events();
    let opts = CoopOptions {
        workers: 3,
        lease_ms: 400,
        idle_ms: 10,
        on_event: Some(hook),
        ..CoopOptions::default()
    };
    let report = run(coord.clone(), &store, plan, slow, opts).await.unwrap();
    let (zombie_task, zombie_epoch) = coord.first_grant.lock().unwrap().unwrap();
    assert_eq!(report.stale, 1, "the zombie's completion was refused");
    assert_eq!(report.per_worker.values().sum::<u32>(), 16);
    let log = log.lock().unwrap().clone();
    let zombie = log
        .iter()
        .find_map(|e| match e {
            CoopEvent::StaleCompletion {
                worker,
                task,
                epoch,
            } if *task == zombie_task && *epoch == zombie_epoch => Some(*worker),
            _ => None,
        })
        .expect("a stale completion event");
    let redo = log
        .iter()
        .find_map(|e| match e {
            CoopEvent::Completed { worker, task, .. } if *task == zombie_task => Some(*worker),
            _ => None,
        })
        .expect("the task was completed");
    assert_ne!(zombie, redo, "another worker redid the task");

    // The session shows the task done under a later epoch.
    let status = session_status(&local, report.session);
    let task = &status.tasks[zombie_task.0 as usize];
    assert!(task.epoch > zombie_epoch);
    assert_eq!(task.state, TaskState::Done { worker: redo });
    assert_eq!(status.committed, Some(report.commit));

    // The landed data is the source's, whoever wrote it.
    let full = Region::full(&meta);
    let got = read_at(
        local.clone(),
        store.clone(),
        repo(),
        report.commit,
        &t(),
        &full,
    )
    .await
    .unwrap();
    assert_eq!(got, source.read(&t(), &meta, &full).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_npy_file_is_loaded_cooperatively() {
    let meta = ArrayMeta::new(vec![12, 9], vec![5, 4], DType::U16, 0.0).unwrap();
    let store = Store::memory();
    let coord = setup(&meta, &store).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.npy");
    let values: Vec<u16> = (0..108).map(|i| i * 3).collect();
    let data = ArrayData::from_slice(&[12, 9], &values).unwrap();
    write_npy(&file, &data).unwrap();
    let npy = Arc::new(NpyFile::open(&file).unwrap());
    let plan = plan_grid(&t(), &meta, &Tiling::TasksPerDim(vec![2, 2])).unwrap();
    assert_eq!(plan.len(), 4);
    let report = run(
        coord.clone(),
        &store,
        plan,
        npy,
        CoopOptions {
            workers: 2,
            ..CoopOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(report.chunks, 9);
    let got = read_at(
        coord,
        store,
        repo(),
        report.commit,
        &t(),
        &Region::full(&meta),
    )
    .await
    .unwrap();
    assert_eq!(got, data);
}

#[tokio::test]
async fn a_source_that_does_not_fit_fails_the_job_and_aborts_the_session() {
    let meta = ArrayMeta::new(vec![20], vec![10], DType::U8, 0.0).unwrap();
    let store = Store::memory();
    let coord = setup(&meta, &store).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("wrong.npy");
    write_npy(&file, &ArrayData::from_slice(&[20], &[1i8; 20]).unwrap()).unwrap();
    let plan = plan_grid(&t(), &meta, &Tiling::ChunksPerTask(vec![1])).unwrap();
    let err = run(
        coord.clone(),
        &store,
        plan,
        Arc::new(NpyFile::open(&file).unwrap()),
        CoopOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FloeError::DTypeMismatch { .. }), "{err:?}");
    let status = session_status(&coord, SessionId(1));
    assert!(status.closed);
    assert_eq!(status.committed, None);
}
