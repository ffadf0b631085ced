//! Cooperative mode: running a planned job with many workers in one
//! session, landing as one commit.
//!
//! The per-task decisions (what a claim, renewal or completion reply means,
//! which chunks a task writes, when to renew) are plain functions so the
//! simulation can drive them; [`run_plan`] is the tokio shell.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use floe_protocol::region::linear_index;
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ChunkPart, Command, CommitId, CommitMode, Coordinator,
    FloeError, Footprint, GeometryError, ObjectId, Outcome, PlannedTask, Region, Reply, RepoName,
    SessionId, Solver, Span, TaskId, WorkerId,
};

use crate::chunk::{covers_whole_chunk, patch_chunk};
use crate::client::Client;
use crate::data::{check_region, check_region_data, meta_of, ArrayData};
use crate::format::Manifest;
use crate::npy::NpyFile;
use crate::session::{unexpected, MAX_IN_FLIGHT};
use crate::store::Store;

/// Produces the data a task writes.
pub trait Source: Send + Sync {
    /// The data of `region` of array `path` (whose metadata is `meta`):
    /// `meta.dtype` elements of the region's shape.
    fn read(
        &self,
        path: &ArrayPath,
        meta: &ArrayMeta,
        region: &Region,
    ) -> Result<ArrayData, FloeError>;
}

/// Deterministic pseudo-random data: each element is a function of the
/// seed, the array path and the element's global (row-major) index, so any
/// region can be regenerated to verify a read-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Synthetic {
    /// The seed.
    pub seed: u64,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Synthetic {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Synthetic { seed }
    }

    /// Appends the element at global `index` of `path` as `dtype`:
    /// integers take the hash's low bytes, floats are multiples of 1/1000
    /// in [-1000, 1000], bools its lowest bit.
    pub fn element(
        &self,
        path: &ArrayPath,
        dtype: floe_protocol::DType,
        index: u64,
        out: &mut Vec<u8>,
    ) {
        use floe_protocol::DType::*;
        let h = splitmix64(self.seed ^ fnv1a(path.as_str().as_bytes()) ^ splitmix64(index));
        let real = (h % 2_000_001) as f64 / 1000.0 - 1000.0;
        match dtype {
            Bool => out.push((h & 1) as u8),
            F32 => out.extend_from_slice(&(real as f32).to_le_bytes()),
            F64 => out.extend_from_slice(&real.to_le_bytes()),
            int => out.extend_from_slice(&h.to_le_bytes()[..int.size()]),
        }
    }
}

impl Source for Synthetic {
    fn read(
        &self,
        path: &ArrayPath,
        meta: &ArrayMeta,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        check_region(path, meta, region)?;
        let rank = region.rank();
        let mut bytes = Vec::with_capacity(region.elements() as usize * meta.dtype.size());
        let mut prefix: Vec<u64> = region.0[..rank - 1].iter().map(|s| s.lo).collect();
        let last = region.0[rank - 1];
        loop {
            let mut point = prefix.clone();
            point.push(last.lo);
            let first = linear_index(&point, &meta.shape);
            for i in 0..last.len() {
                self.element(path, meta.dtype, first + i, &mut bytes);
            }
            let mut dim = rank - 1;
            loop {
                if dim == 0 {
                    return ArrayData::from_bytes(meta.dtype, &region.shape(), bytes);
                }
                dim -= 1;
                prefix[dim] += 1;
                if prefix[dim] < region.0[dim].hi {
                    break;
                }
                prefix[dim] = region.0[dim].lo;
            }
        }
    }
}

impl Source for NpyFile {
    fn read(
        &self,
        path: &ArrayPath,
        meta: &ArrayMeta,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        self.check_fits(path, meta)?;
        check_region(path, meta, region)?;
        self.read_region(region)
    }
}

/// How [`plan_grid`] cuts an array into tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tiling {
    /// Each task covers this many chunks along each dimension.
    ChunksPerTask(Vec<u64>),
    /// About this many tasks along each dimension (chunk-aligned, so the
    /// last ones may be smaller, and never more tasks than chunks).
    TasksPerDim(Vec<u64>),
}

/// Chunk-aligned tasks covering the whole of array `path`, row-major.
pub fn plan_grid(
    path: &ArrayPath,
    meta: &ArrayMeta,
    tiling: &Tiling,
) -> Result<Vec<PlannedTask>, FloeError> {
    let grid = meta.grid();
    let per_dim = match tiling {
        Tiling::ChunksPerTask(v) | Tiling::TasksPerDim(v) => v,
    };
    if per_dim.len() != grid.len() {
        return Err(FloeError::geometry(
            path,
            GeometryError::RankMismatch {
                expected: grid.len(),
                got: per_dim.len(),
            },
        ));
    }
    if per_dim.contains(&0) {
        return Err(FloeError::InvalidPlan {
            why: format!("tiling {tiling:?} has a zero entry"),
        });
    }
    let chunks_per_task: Vec<u64> = match tiling {
        Tiling::ChunksPerTask(v) => v.clone(),
        Tiling::TasksPerDim(v) => grid
            .iter()
            .zip(v)
            .map(|(&g, &t)| g.div_ceil(t).max(1))
            .collect(),
    };
    let counts: Vec<u64> = grid
        .iter()
        .zip(&chunks_per_task)
        .map(|(&g, &c)| g.div_ceil(c))
        .collect();
    let total = counts
        .iter()
        .try_fold(1u64, |a, &c| a.checked_mul(c))
        .filter(|&n| n <= u64::from(u32::MAX))
        .ok_or_else(|| FloeError::InvalidPlan {
            why: "the tiling yields too many tasks".into(),
        })?;
    let mut tasks = Vec::with_capacity(total as usize);
    for index in 0..total {
        let cell = floe_protocol::region::coord_of(index, &counts);
        let spans = cell
            .iter()
            .zip(&chunks_per_task)
            .zip(meta.chunk_shape.iter().zip(&meta.shape))
            .map(|((&i, &per), (&c, &extent))| Span {
                lo: (i * per * c).min(extent),
                hi: ((i + 1) * per * c).min(extent),
            })
            .collect();
        tasks.push(PlannedTask {
            array: path.clone(),
            region: Region(spans),
        });
    }
    Ok(tasks)
}

/// A task granted to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The task.
    pub task: TaskId,
    /// Its array.
    pub array: ArrayPath,
    /// Its region.
    pub region: Region,
    /// Fencing epoch.
    pub epoch: u64,
    /// Lease expiry, leader ms.
    pub lease_until: u64,
}

/// What a worker does after a `ClaimTask` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimDecision {
    /// Run this task.
    Work(Grant),
    /// Tasks are held by others (their leases may expire): wait, claim again.
    Wait {
        /// Tasks not yet completed.
        unfinished: u32,
    },
    /// Nothing left to do.
    Exit,
}

/// Interprets a `ClaimTask` outcome.
pub fn on_claim(outcome: Outcome) -> Result<ClaimDecision, FloeError> {
    match outcome {
        Ok(Reply::TaskGranted {
            task,
            array,
            region,
            epoch,
            lease_until,
        }) => Ok(ClaimDecision::Work(Grant {
            task,
            array,
            region,
            epoch,
            lease_until,
        })),
        Ok(Reply::NoTask { unfinished: 0, .. }) => Ok(ClaimDecision::Exit),
        Ok(Reply::NoTask { unfinished, .. }) => Ok(ClaimDecision::Wait { unfinished }),
        Err(FloeError::SessionClosed { .. }) => Ok(ClaimDecision::Exit),
        Ok(other) => Err(unexpected("ClaimTask", &other)),
        Err(e) => Err(e),
    }
}

/// What a `RenewLease` outcome means for the task in hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewDecision {
    /// The lease runs until this leader time.
    Renewed {
        /// New expiry, leader ms.
        lease_until: u64,
    },
    /// The lease is gone (expired and re-granted, or the session closed):
    /// stop working on the task, its chunks are garbage.
    Lost,
    /// The coordinator did not answer: try again at the next tick.
    Retry,
}

/// Interprets a `RenewLease` outcome.
pub fn on_renew(outcome: &Outcome) -> RenewDecision {
    match outcome {
        Ok(Reply::LeaseRenewed { lease_until }) => RenewDecision::Renewed {
            lease_until: *lease_until,
        },
        Err(
            FloeError::StaleEpoch { .. }
            | FloeError::SessionClosed { .. }
            | FloeError::UnknownSession { .. }
            | FloeError::UnknownTask { .. },
        ) => RenewDecision::Lost,
        _ => RenewDecision::Retry,
    }
}

/// What a `CompleteTask` outcome means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompleteDecision {
    /// The completion counts.
    Accepted {
        /// Tasks not yet completed.
        unfinished: u32,
    },
    /// Refused: our grant is no longer current (our lease expired and the
    /// task went to another worker). Our chunks are garbage; move on.
    Stale {
        /// The epoch we presented.
        presented: u64,
        /// The current epoch.
        current: u64,
    },
}

/// Interprets a `CompleteTask` outcome; other errors are returned.
pub fn on_complete(outcome: Outcome) -> Result<CompleteDecision, FloeError> {
    match outcome {
        Ok(Reply::Accepted { unfinished }) => Ok(CompleteDecision::Accepted { unfinished }),
        Err(FloeError::StaleEpoch {
            presented, current, ..
        }) => Ok(CompleteDecision::Stale { presented, current }),
        Ok(other) => Err(unexpected("CompleteTask", &other)),
        Err(e) => Err(e),
    }
}

/// How often a worker renews a lease of `lease_ms`: a third of it, so two
/// renewals may be lost before it expires.
pub fn renew_interval_ms(lease_ms: u64) -> u64 {
    (lease_ms / 3).max(1)
}

/// The chunk parts of a task's region, checked to be whole chunks (plans
/// are chunk-aligned, so a task never read-modify-writes).
pub fn task_parts(
    path: &ArrayPath,
    meta: &ArrayMeta,
    region: &Region,
) -> Result<Vec<ChunkPart>, FloeError> {
    check_region(path, meta, region)?;
    let parts = region.chunk_parts(meta);
    if parts.iter().any(|p| !covers_whole_chunk(meta, p)) {
        return Err(FloeError::geometry(
            path,
            GeometryError::NotChunkAligned {
                region: region.to_string(),
                chunk_shape: meta.chunk_shape.clone(),
            },
        ));
    }
    Ok(parts)
}

/// Checks what a source returned for a task (see [`check_region_data`]).
pub fn check_task_data(
    path: &ArrayPath,
    meta: &ArrayMeta,
    region: &Region,
    data: &ArrayData,
) -> Result<(), FloeError> {
    check_region_data(path, meta, region, data)
}

/// The buffer of one whole chunk of a task.
pub fn task_chunk(
    meta: &ArrayMeta,
    part: &ChunkPart,
    data: &ArrayData,
) -> Result<Vec<u8>, FloeError> {
    patch_chunk(meta, None, part, data)
}

/// The footprint a completion of `region` of `path` reports.
pub fn task_footprint(path: &ArrayPath, meta: &ArrayMeta, region: &Region) -> Footprint {
    let mut f = Footprint::new();
    f.add_region(path, meta, region);
    f
}

/// Something that happened while running a plan (for progress displays).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoopEvent {
    /// A worker was granted a task.
    Claimed {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// The grant's epoch.
        epoch: u64,
    },
    /// A completion was accepted.
    Completed {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// Chunks written.
        chunks: u64,
        /// Tasks left.
        unfinished: u32,
    },
    /// A completion was refused as stale: the task was re-granted.
    StaleCompletion {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
        /// The epoch presented.
        epoch: u64,
    },
    /// A worker learnt its lease was lost and dropped the task.
    Abandoned {
        /// The worker.
        worker: WorkerId,
        /// The task.
        task: TaskId,
    },
    /// A worker stopped.
    WorkerDone {
        /// The worker.
        worker: WorkerId,
        /// Its error, if it failed.
        error: Option<String>,
    },
}

/// Called for every [`CoopEvent`].
pub type EventHook = Arc<dyn Fn(&CoopEvent) + Send + Sync>;

/// Settings of [`run_plan`].
#[derive(Clone)]
pub struct CoopOptions {
    /// Number of concurrent workers (at least 1).
    pub workers: usize,
    /// Lease length of a claimed task, ms; renewed every third of it.
    pub lease_ms: u64,
    /// How long a worker waits before claiming again when every remaining
    /// task is held by another worker, ms.
    pub idle_ms: u64,
    /// Commit message.
    pub message: String,
    /// Commit author.
    pub author: String,
    /// How the session commits if the branch moved meanwhile. The default
    /// rebases (fast-forwards server-side) and fails on any conflict.
    pub mode: CommitMode,
    /// Seed of worker ids and object ids; `None` draws from entropy.
    pub seed: Option<u64>,
    /// Progress callback.
    pub on_event: Option<EventHook>,
}

impl Default for CoopOptions {
    fn default() -> Self {
        CoopOptions {
            workers: 4,
            lease_ms: 10_000,
            idle_ms: 50,
            message: "cooperative write".into(),
            author: "floe".into(),
            mode: CommitMode::Rebase {
                solver: Solver::Fail,
            },
            seed: None,
            on_event: None,
        }
    }
}

impl fmt::Debug for CoopOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoopOptions")
            .field("workers", &self.workers)
            .field("lease_ms", &self.lease_ms)
            .field("idle_ms", &self.idle_ms)
            .field("message", &self.message)
            .field("author", &self.author)
            .field("mode", &self.mode)
            .field("seed", &self.seed)
            .field("on_event", &self.on_event.is_some())
            .finish()
    }
}

/// What [`run_plan`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoopReport {
    /// The cooperative session.
    pub session: SessionId,
    /// The commit it landed as.
    pub commit: CommitId,
    /// Tasks in the plan.
    pub tasks: usize,
    /// Chunks written by accepted completions.
    pub chunks: u64,
    /// Accepted completions per worker.
    pub per_worker: BTreeMap<WorkerId, u32>,
    /// Completions refused as stale (their chunks are garbage).
    pub stale: u32,
    /// Tasks dropped after a lost lease was noticed.
    pub abandoned: u32,
}

/// What one worker did.
#[derive(Clone, Debug, Default)]
struct WorkerStats {
    completed: u32,
    chunks: u64,
    stale: u32,
    abandoned: u32,
}

struct Job<C: Coordinator> {
    client: Arc<Client<C>>,
    store: Store,
    repo: RepoName,
    session: SessionId,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    source: Arc<dyn Source>,
    lease_ms: u64,
    idle_ms: u64,
    on_event: Option<EventHook>,
    /// Set when a worker fails: the others stop claiming.
    stop: AtomicBool,
}

impl<C: Coordinator> Job<C> {
    fn emit(&self, event: CoopEvent) {
        if let Some(hook) = &self.on_event {
            hook(&event);
        }
    }
}

async fn command<C: Coordinator>(client: &Client<C>, cmd: Command) -> Outcome {
    client.command(cmd).await
}

/// Runs a cooperative plan: opens a session on `branch`, lets
/// `opts.workers` workers claim tasks, produce their data from `source`,
/// write the chunks and complete the tasks (renewing leases meanwhile),
/// then commits the session as one commit.
///
/// A worker whose completion is refused as stale (its lease expired and
/// the task went to another) logs it and moves on. A worker that fails
/// (source, store or coordinator error) stops the job: the other workers
/// finish the task in hand and stop claiming, the session is aborted and
/// the first error returned.
pub async fn run_plan<C: Coordinator + 'static>(
    coord: Arc<C>,
    store: Store,
    repo: RepoName,
    branch: BranchName,
    plan: Vec<PlannedTask>,
    source: Arc<dyn Source>,
    opts: CoopOptions,
) -> Result<CoopReport, FloeError> {
    let tasks = plan.len();
    let open = Command::OpenSession {
        repo: repo.clone(),
        branch,
        plan: Some(plan),
        lease_ms: opts.lease_ms,
    };
    let client = Arc::new(Client::new(coord));
    let (session, arrays) = match command(&client, open).await? {
        Reply::SessionOpened {
            session, arrays, ..
        } => (session, arrays),
        other => return Err(unexpected("OpenSession", &other)),
    };
    let mut rng = match opts.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_entropy(),
    };
    let job = Arc::new(Job {
        client: client.clone(),
        store,
        repo,
        session,
        arrays,
        source,
        lease_ms: opts.lease_ms,
        idle_ms: opts.idle_ms.max(1),
        on_event: opts.on_event.clone(),
        stop: AtomicBool::new(false),
    });
    let first_worker: u64 = rng.gen::<u32>().into();
    let mut handles = Vec::new();
    for i in 0..opts.workers.max(1) {
        let worker = WorkerId(first_worker + i as u64);
        let worker_rng = StdRng::seed_from_u64(rng.gen());
        let job = job.clone();
        handles.push((
            worker,
            tokio::spawn(async move { worker_loop(job, worker, worker_rng).await }),
        ));
    }
    let mut per_worker = BTreeMap::new();
    let (mut chunks, mut stale, mut abandoned) = (0, 0, 0);
    let mut first_error = None;
    for (worker, handle) in handles {
        let result = match handle.await {
            Ok(r) => r,
            Err(e) => Err(FloeError::Unavailable(format!("worker {worker} died: {e}"))),
        };
        job.emit(CoopEvent::WorkerDone {
            worker,
            error: result.as_ref().err().map(ToString::to_string),
        });
        match result {
            Ok(stats) => {
                per_worker.insert(worker, stats.completed);
                chunks += stats.chunks;
                stale += stats.stale;
                abandoned += stats.abandoned;
            }
            Err(e) => {
                tracing::warn!(%worker, error = %e, "worker failed");
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(error) = first_error {
        let _ = command(&client, Command::AbortSession { session }).await;
        return Err(error);
    }
    let commit = Command::CommitSession {
        session,
        message: opts.message.clone(),
        author: opts.author.clone(),
        mode: opts.mode,
    };
    match command(&client, commit).await {
        Ok(Reply::Committed { commit, .. }) => Ok(CoopReport {
            session,
            commit,
            tasks,
            chunks,
            per_worker,
            stale,
            abandoned,
        }),
        Ok(other) => Err(unexpected("CommitSession", &other)),
        Err(e) => {
            if !matches!(e, FloeError::OutOfDate { .. } | FloeError::Conflict { .. }) {
                let _ = command(&client, Command::AbortSession { session }).await;
            }
            Err(e)
        }
    }
}

async fn worker_loop<C: Coordinator + 'static>(
    job: Arc<Job<C>>,
    worker: WorkerId,
    mut rng: StdRng,
) -> Result<WorkerStats, FloeError> {
    let result = claim_loop(&job, worker, &mut rng).await;
    if result.is_err() {
        job.stop.store(true, Ordering::SeqCst);
    }
    result
}

async fn claim_loop<C: Coordinator + 'static>(
    job: &Arc<Job<C>>,
    worker: WorkerId,
    rng: &mut StdRng,
) -> Result<WorkerStats, FloeError> {
    let mut stats = WorkerStats::default();
    loop {
        if job.stop.load(Ordering::SeqCst) {
            return Ok(stats);
        }
        let claim = Command::ClaimTask {
            session: job.session,
            worker,
        };
        match on_claim(command(&job.client, claim).await)? {
            ClaimDecision::Exit => return Ok(stats),
            ClaimDecision::Wait { .. } => {
                tokio::time::sleep(Duration::from_millis(job.idle_ms)).await;
            }
            ClaimDecision::Work(grant) => {
                job.emit(CoopEvent::Claimed {
                    worker,
                    task: grant.task,
                    epoch: grant.epoch,
                });
                run_task(job, worker, &grant, rng, &mut stats).await?;
            }
        }
    }
}

/// Renews a lease every third of its length until aborted; sets `lost`
/// when the coordinator says the grant is gone.
fn spawn_renewer<C: Coordinator + 'static>(
    job: Arc<Job<C>>,
    grant: &Grant,
    lost: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (task, epoch) = (grant.task, grant.epoch);
    let every = Duration::from_millis(renew_interval_ms(job.lease_ms));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let renew = Command::RenewLease {
                session: job.session,
                task,
                epoch,
            };
            match on_renew(&command(&job.client, renew).await) {
                RenewDecision::Renewed { .. } => {}
                RenewDecision::Retry => tracing::debug!(%task, epoch, "lease renewal failed"),
                RenewDecision::Lost => {
                    lost.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
    })
}

async fn run_task<C: Coordinator + 'static>(
    job: &Arc<Job<C>>,
    worker: WorkerId,
    grant: &Grant,
    rng: &mut StdRng,
    stats: &mut WorkerStats,
) -> Result<(), FloeError> {
    let lost = Arc::new(AtomicBool::new(false));
    let renewer = spawn_renewer(job.clone(), grant, lost.clone());
    let result = write_and_complete(job, worker, grant, rng, stats, &lost).await;
    renewer.abort();
    result
}

async fn write_and_complete<C: Coordinator + 'static>(
    job: &Arc<Job<C>>,
    worker: WorkerId,
    grant: &Grant,
    rng: &mut StdRng,
    stats: &mut WorkerStats,
    lost: &AtomicBool,
) -> Result<(), FloeError> {
    let path = &grant.array;
    let meta = meta_of(&job.arrays, path)?.clone();
    let parts = task_parts(path, &meta, &grant.region)?;
    let data = {
        let (source, path, meta, region) = (
            job.source.clone(),
            path.clone(),
            meta.clone(),
            grant.region.clone(),
        );
        tokio::task::spawn_blocking(move || source.read(&path, &meta, &region))
            .await
            .map_err(|e| FloeError::InvalidPlan {
                why: format!("the data source failed: {e}"),
            })??
    };
    check_task_data(path, &meta, &grant.region, &data)?;
    let abandon = |stats: &mut WorkerStats| {
        tracing::info!(%worker, task = %grant.task, "lease lost, task abandoned");
        stats.abandoned += 1;
        job.emit(CoopEvent::Abandoned {
            worker,
            task: grant.task,
        });
    };
    let mut manifest = Manifest::new();
    let mut puts = FuturesUnordered::new();
    for part in &parts {
        if lost.load(Ordering::SeqCst) {
            abandon(stats);
            return Ok(());
        }
        let buffer = task_chunk(&meta, part, &data)?;
        let id = ObjectId(rng.gen());
        manifest.insert(path.clone(), part.coord.clone(), id);
        let (store, repo, meta) = (job.store.clone(), job.repo.clone(), meta.clone());
        puts.push(async move { store.put_chunk(&repo, &meta, id, &buffer).await });
        while puts.len() >= MAX_IN_FLIGHT {
            if let Some(done) = puts.next().await {
                done?;
            }
        }
    }
    while let Some(done) = puts.next().await {
        done?;
    }
    drop(data);
    if lost.load(Ordering::SeqCst) {
        abandon(stats);
        return Ok(());
    }
    let delta = ObjectId(rng.gen());
    job.store.put_manifest(&job.repo, delta, &manifest).await?;
    let complete = Command::CompleteTask {
        session: job.session,
        task: grant.task,
        epoch: grant.epoch,
        delta,
        footprint: task_footprint(path, &meta, &grant.region),
    };
    match on_complete(command(&job.client, complete).await)? {
        CompleteDecision::Accepted { unfinished } => {
            stats.completed += 1;
            stats.chunks += parts.len() as u64;
            job.emit(CoopEvent::Completed {
                worker,
                task: grant.task,
                chunks: parts.len() as u64,
                unfinished,
            });
        }
        CompleteDecision::Stale { presented, current } => {
            tracing::warn!(
                %worker, task = %grant.task, presented, current,
                "completion refused: lease expired and the task was re-granted; its chunks are garbage"
            );
            stats.stale += 1;
            job.emit(CoopEvent::StaleCompletion {
                worker,
                task: grant.task,
                epoch: grant.epoch,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::DType;

    fn path() -> ArrayPath {
        ArrayPath::new("/t").unwrap()
    }

    #[test]
    fn plan_grid_tiles_the_array_with_chunk_aligned_tasks() {
        let meta = ArrayMeta::new(vec![95, 30], vec![10, 10], DType::F32, 0.0).unwrap();
        let tasks = plan_grid(&path(), &meta, &Tiling::ChunksPerTask(vec![2, 3])).unwrap();
        assert_eq!(tasks.len(), 5);
        assert_eq!(tasks[0].region, Region::new(&[(0, 20), (0, 30)]));
        assert_eq!(tasks[4].region, Region::new(&[(80, 95), (0, 30)]));
        let covered: u64 = tasks.iter().map(|t| t.region.elements()).sum();
        assert_eq!(covered, 95 * 30);
        assert!(tasks.iter().all(|t| t.region.is_chunk_aligned(&meta)));
        let split = plan_grid(&path(), &meta, &Tiling::TasksPerDim(vec![10, 3])).unwrap();
        assert_eq!(split.len(), 30);
        let many = plan_grid(&path(), &meta, &Tiling::TasksPerDim(vec![100, 1])).unwrap();
        assert_eq!(many.len(), 10, "never more tasks than chunks");
        assert!(plan_grid(&path(), &meta, &Tiling::ChunksPerTask(vec![1])).is_err());
        assert!(plan_grid(&path(), &meta, &Tiling::ChunksPerTask(vec![0, 1])).is_err());
    }

    #[test]
    fn synthetic_data_is_reproducible_and_region_independent() {
        let meta = ArrayMeta::new(vec![7, 9], vec![3, 4], DType::I64, 0.0).unwrap();
        let src = Synthetic::new(42);
        let whole = src.read(&path(), &meta, &Region::full(&meta)).unwrap();
        let part = src
            .read(&path(), &meta, &"2:5,3:8".parse().unwrap())
            .unwrap();
        let w = whole.to_vec::<i64>().unwrap();
        let p = part.to_vec::<i64>().unwrap();
        for r in 0..3 {
            for c in 0..5 {
                assert_eq!(p[r * 5 + c], w[(r + 2) * 9 + c + 3]);
            }
        }
        assert_eq!(
            src.read(&path(), &meta, &Region::full(&meta)).unwrap(),
            whole
        );
        let other = Synthetic::new(43)
            .read(&path(), &meta, &Region::full(&meta))
            .unwrap();
        assert_ne!(other, whole);
        for dtype in DType::ALL {
            let m = ArrayMeta::new(vec![5], vec![2], dtype, 0.0).unwrap();
            let d = src.read(&path(), &m, &Region::full(&m)).unwrap();
            assert_eq!(d.dtype, dtype);
            assert!(d.check().is_ok());
        }
        assert!(src
            .read(&path(), &meta, &"0:8,0:1".parse().unwrap())
            .is_err());
    }

    #[test]
    fn reply_interpretation() {
        assert_eq!(
            on_claim(Ok(Reply::NoTask {
                claimed: 0,
                unfinished: 0
            }))
            .unwrap(),
            ClaimDecision::Exit
        );
        assert_eq!(
            on_claim(Ok(Reply::NoTask {
                claimed: 2,
                unfinished: 2
            }))
            .unwrap(),
            ClaimDecision::Wait { unfinished: 2 }
        );
        assert!(on_claim(Ok(Reply::Done)).is_err());
        let stale = FloeError::StaleEpoch {
            task: TaskId(1),
            presented: 1,
            current: 2,
        };
        assert_eq!(
            on_complete(Err(stale.clone())).unwrap(),
            CompleteDecision::Stale {
                presented: 1,
                current: 2
            }
        );
        assert!(on_complete(Err(FloeError::Store("x".into()))).is_err());
        assert_eq!(on_renew(&Err(stale)), RenewDecision::Lost);
        assert_eq!(
            on_renew(&Err(FloeError::Unavailable("t".into()))),
            RenewDecision::Retry
        );
        assert_eq!(renew_interval_ms(300), 100);
        assert_eq!(renew_interval_ms(1), 1);
    }

    #[test]
    fn tasks_must_be_chunk_aligned_and_sources_must_fit() {
        let meta = ArrayMeta::new(vec![25], vec![10], DType::U8, 0.0).unwrap();
        assert_eq!(
            task_parts(&path(), &meta, &"10:25".parse().unwrap())
                .unwrap()
                .len(),
            2
        );
        assert!(matches!(
            task_parts(&path(), &meta, &"5:20".parse().unwrap()),
            Err(FloeError::Geometry {
                error: GeometryError::NotChunkAligned { .. },
                ..
            })
        ));
        let region: Region = "0:10".parse().unwrap();
        let wrong = ArrayData::from_slice(&[10], &[0i8; 10]).unwrap();
        assert!(matches!(
            check_task_data(&path(), &meta, &region, &wrong),
            Err(FloeError::DTypeMismatch { .. })
        ));
        let short = ArrayData::from_slice(&[9], &[0u8; 9]).unwrap();
        assert!(check_task_data(&path(), &meta, &region, &short).is_err());
    }
}
