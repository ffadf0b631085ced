//! Cooperative mode: running a planned job with many workers in one
//! session, landing as one commit.
//!
//! The per-task decisions (what a claim, renewal or completion reply means,
//! which chunks a task writes, when to renew) are plain functions so the
//! simulation can drive them; [`run_plan`] is the tokio shell.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use floe_protocol::region::linear_index;
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ChunkPart, ClientId, Command, CommitId, CommitMode,
    Coordinator, FloeError, Footprint, GeometryError, Outcome, PlannedTask, Region, Reply,
    RepoName, SessionId, Solver, Span, TaskId, WorkerId,
};

use crate::chunk::{covers_whole_chunk, patch_chunk};
use crate::client::Client;
use crate::data::{check_region, check_region_data, ArrayData};
use crate::driver::Driven;
use crate::machine::{Job, JobSpec, JobStatus, SourceFn, Worker, WorkerStatus};
use crate::npy::NpyFile;
use crate::session::unexpected;
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
        crate::source::read_npy(self, path, meta, region)
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

impl Tiling {
    /// About `tasks` tasks over a chunk grid of `grid` chunks per
    /// dimension: the slowest dimensions are split first (whole rows of
    /// chunks stay together), never finer than one chunk.
    pub fn about(grid: &[u64], tasks: u64) -> Tiling {
        let mut want = tasks.max(1);
        let per_dim = grid
            .iter()
            .map(|&g| {
                let split = want.min(g.max(1));
                want = want.div_ceil(split);
                split
            })
            .collect();
        Tiling::TasksPerDim(per_dim)
    }
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

/// Which open session a free worker slot joins: the oldest one with a task
/// to claim now, skipping `skip` (sessions whose source this worker could
/// not read). Jobs finish in the order they were submitted.
pub fn pick_session<'a>(
    open: &'a [floe_protocol::OpenSession],
    skip: &std::collections::BTreeSet<SessionId>,
) -> Option<&'a floe_protocol::OpenSession> {
    open.iter()
        .filter(|s| s.claimable > 0 && !skip.contains(&s.session))
        .min_by_key(|s| s.session)
}

/// Whether a worker slot leaves a session for good after its work there
/// failed with `error`: yes when the session's input is bad for this
/// worker (a source that does not fit the array, a region out of bounds),
/// which another try would meet again; no when the failure was the
/// cluster's (unavailable, a lost lease, an expired client), which the
/// next look may not meet.
pub fn leave_session_after(error: &FloeError) -> bool {
    error.is_invalid_input()
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
    /// The completion counts, and the next task was granted with it.
    Next(Grant),
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
        Ok(Reply::AcceptedNext {
            task,
            array,
            region,
            epoch,
            lease_until,
            ..
        }) => Ok(CompleteDecision::Next(Grant {
            task,
            array,
            region,
            epoch,
            lease_until,
        })),
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
    /// A completion was refused as late: the task was re-granted (stale
    /// epoch), or done by another worker and the session already closed.
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
    /// Completions refused as late: stale epoch, or the session already
    /// committed (their chunks are garbage).
    pub stale: u32,
    /// Tasks dropped after a lost lease was noticed.
    pub abandoned: u32,
}

/// Runs a cooperative plan: the [`Job`] machine opens a session on
/// `branch`, `opts.workers` [`Worker`] machines claim tasks, produce their
/// data from `source`, write the chunks and complete the tasks (renewing
/// leases meanwhile), and the job commits the session as one commit — the
/// same machines the simulation checks, run by the one [`Driven`] driver.
///
/// A worker whose completion is refused as stale (its lease expired and
/// the task went to another) logs it and moves on. A worker that fails
/// (source, store or coordinator error) stops the job: the session is
/// aborted, so the other workers stop claiming, and the first error is
/// returned.
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
    let mut rng = match opts.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_entropy(),
    };
    let spec = JobSpec {
        repo: repo.clone(),
        branch,
        plan,
        lease_ms: opts.lease_ms,
        message: opts.message.clone(),
        mode: opts.mode,
        source: None,
        create: Default::default(),
    };
    let job = Job::new(ClientId(rng.gen()), coord.nodes(), spec).with_author(opts.author.clone());
    let mut job = Driven::new(job, coord.clone(), Some(store.clone()));
    job.run_until(|j| j.session().is_some()).await?;
    let (Some(session), Some(arrays)) = (job.machine().session(), job.machine().arrays().cloned())
    else {
        return Err(job_error(job.machine().status()));
    };
    let job = tokio::spawn(async move { job.run().await.map(|()| job.into_machine()) });
    let first_worker: u64 = rng.gen::<u32>().into();
    let mut workers = Vec::new();
    for i in 0..opts.workers.max(1) {
        let id = WorkerId(first_worker + i as u64);
        let machine = Worker::new(
            id,
            ClientId(rng.gen()),
            coord.nodes(),
            session,
            repo.clone(),
            source_fn(source.clone()),
            rng.gen(),
        )
        .with_arrays(arrays.clone())
        .with_lease_ms(opts.lease_ms)
        .with_idle_ms(opts.idle_ms);
        let (coord, store, events) = (coord.clone(), store.clone(), opts.on_event.clone());
        workers.push(tokio::spawn(run_worker(machine, coord, store, events)));
    }
    let client = Client::new(coord);
    let mut report = CoopReport {
        session,
        commit: CommitId(0),
        tasks,
        chunks: 0,
        per_worker: BTreeMap::new(),
        stale: 0,
        abandoned: 0,
    };
    let mut first_error = None;
    for handle in workers {
        let worker = handle
            .await
            .map_err(|e| FloeError::Unavailable(format!("a worker task died: {e}")))??;
        emit(
            &opts.on_event,
            CoopEvent::WorkerDone {
                worker: worker.id(),
                error: match worker.status() {
                    WorkerStatus::Failed(e) => Some(e.to_string()),
                    _ => None,
                },
            },
        );
        if let WorkerStatus::Failed(e) = worker.status() {
            tracing::warn!(worker = %worker.id(), error = %e, "worker failed; aborting the session");
            if first_error.is_none() {
                // Closing the session stops the other workers and the job.
                let _ = client.command(Command::AbortSession { session }).await;
                first_error = Some(e.clone());
            }
        }
        tally(&mut report, &worker);
    }
    let job = job
        .await
        .map_err(|e| FloeError::Unavailable(format!("the job task died: {e}")))??;
    if let Some(error) = first_error {
        return Err(error);
    }
    match job.status() {
        JobStatus::Committed(commit) => {
            report.commit = *commit;
            Ok(report)
        }
        status => {
            let error = job_error(status);
            if !error.is_conflict() {
                let _ = client.command(Command::AbortSession { session }).await;
            }
            Err(error)
        }
    }
}

/// Runs one worker machine to its end, turning its progress into events.
async fn run_worker<C: Coordinator + 'static>(
    machine: Worker,
    coord: Arc<C>,
    store: Store,
    events: Option<EventHook>,
) -> Result<Worker, FloeError> {
    let mut driven = Driven::new(machine, coord, Some(store));
    let mut seen = Seen::default();
    driven
        .run_until(|w| {
            seen.report(w, &events);
            false
        })
        .await?;
    let worker = driven.into_machine();
    seen.report(&worker, &events);
    Ok(worker)
}

/// How much of a worker's report was already turned into events.
#[derive(Default)]
struct Seen {
    grants: usize,
    completions: usize,
    abandoned: usize,
}

impl Seen {
    fn report(&mut self, w: &Worker, events: &Option<EventHook>) {
        let r = w.report();
        for &(task, epoch) in &r.grants[self.grants..] {
            emit(
                events,
                CoopEvent::Claimed {
                    worker: w.id(),
                    task,
                    epoch,
                },
            );
        }
        self.grants = r.grants.len();
        let answered = r
            .completions
            .iter()
            .take_while(|c| c.outcome.is_some())
            .count();
        for c in &r.completions[self.completions.min(answered)..answered] {
            let event = match &c.outcome {
                Some(Ok(reply)) if reply.accepted().is_some() => CoopEvent::Completed {
                    worker: w.id(),
                    task: c.task,
                    chunks: c.chunks,
                    unfinished: reply.accepted().unwrap_or(0),
                },
                Some(Err(e)) if refused_late(e) => CoopEvent::StaleCompletion {
                    worker: w.id(),
                    task: c.task,
                    epoch: c.epoch,
                },
                _ => continue,
            };
            emit(events, event);
        }
        self.completions = self.completions.max(answered);
        for &(task, _) in &r.abandoned[self.abandoned..] {
            emit(
                events,
                CoopEvent::Abandoned {
                    worker: w.id(),
                    task,
                },
            );
        }
        self.abandoned = r.abandoned.len();
    }
}

fn emit(events: &Option<EventHook>, event: CoopEvent) {
    if let Some(hook) = events {
        hook(&event);
    }
}

/// Adds what one finished worker did to the report.
fn tally(report: &mut CoopReport, worker: &Worker) {
    let r = worker.report();
    let mut completed = 0;
    for c in &r.completions {
        match &c.outcome {
            Some(Ok(reply)) if reply.accepted().is_some() => {
                completed += 1;
                report.chunks += c.chunks;
            }
            Some(Err(e)) if refused_late(e) => report.stale += 1,
            _ => {}
        }
    }
    report.per_worker.insert(worker.id(), completed);
    report.abandoned += r.abandoned.len() as u32;
}

/// A completion refused because its lease was lost: the task was granted
/// again (stale epoch), or it was done by another worker and the session
/// committed meanwhile. Its chunks are garbage; nothing of it landed.
fn refused_late(e: &FloeError) -> bool {
    matches!(
        e,
        FloeError::StaleEpoch { .. } | FloeError::SessionClosed { .. }
    )
}

/// The error a job that did not commit ended with.
fn job_error(status: &JobStatus) -> FloeError {
    match status {
        JobStatus::Failed(e) => e.clone(),
        JobStatus::Committed(_) | JobStatus::Running => {
            FloeError::Unavailable("the job stopped before its session opened".into())
        }
    }
}

/// A [`Source`] as the worker machine's source function.
fn source_fn(source: Arc<dyn Source>) -> SourceFn {
    Arc::new(
        move |path: &ArrayPath, meta: &ArrayMeta, region: &Region, _: WorkerId| {
            source.read(path, meta, region)
        },
    )
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

#[cfg(test)]
mod pick_tests {
    use super::*;
    use floe_protocol::OpenSession;
    use std::collections::BTreeSet;

    fn open(id: u64, claimable: u32) -> OpenSession {
        OpenSession {
            session: SessionId(id),
            repo: RepoName::new("r").unwrap(),
            branch: BranchName::new("main").unwrap(),
            source: "/data/x.npy".into(),
            tasks: 10,
            done: 10 - claimable,
            claimable,
        }
    }

    #[test]
    fn about_n_tasks_splits_the_slowest_dimensions_first() {
        assert_eq!(Tiling::about(&[8, 8], 4), Tiling::TasksPerDim(vec![4, 1]));
        assert_eq!(Tiling::about(&[8, 8], 64), Tiling::TasksPerDim(vec![8, 8]));
        assert_eq!(Tiling::about(&[2, 8], 8), Tiling::TasksPerDim(vec![2, 4]));
        assert_eq!(Tiling::about(&[3], 100), Tiling::TasksPerDim(vec![3]));
        assert_eq!(Tiling::about(&[5, 5], 0), Tiling::TasksPerDim(vec![1, 1]));
    }

    #[test]
    fn a_free_slot_joins_the_oldest_session_with_work() {
        let none = BTreeSet::new();
        let listed = [open(7, 3), open(4, 0), open(5, 2)];
        assert_eq!(
            pick_session(&listed, &none).map(|s| s.session),
            Some(SessionId(5))
        );
        let skip: BTreeSet<_> = [SessionId(5)].into();
        assert_eq!(
            pick_session(&listed, &skip).map(|s| s.session),
            Some(SessionId(7))
        );
        assert_eq!(pick_session(&[open(4, 0)], &none), None);
    }

    #[test]
    fn a_slot_leaves_a_session_only_for_its_bad_input() {
        let bad = FloeError::InvalidPlan {
            why: "the source does not fit".into(),
        };
        assert!(leave_session_after(&bad));
        assert!(!leave_session_after(&FloeError::Unavailable(
            "no leader".into()
        )));
        assert!(!leave_session_after(&FloeError::NotLeader {
            leader_hint: None
        }));
    }
}
