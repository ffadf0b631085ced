//! A cooperative worker: claims tasks of one session, writes their chunks
//! from a source, completes them under the grant's fencing epoch and
//! renews its lease meanwhile.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use floe_protocol::{
    ArrayMeta, ArrayPath, ClientId, Command, FloeError, Footprint, ObjectId, Outcome, Query,
    Region, Reply, RepoName, Request, SessionId, TaskId, WorkerId,
};

use crate::coop::{
    check_task_data, on_claim, on_complete, on_renew, renew_interval_ms, task_chunk, task_parts,
    ClaimDecision, CompleteDecision, Grant, RenewDecision,
};
use crate::data::{meta_of, ArrayData};
use crate::format::encode_chunk;

use super::build::delta_of;
use super::stage::Staged;
use super::{unexpected, Effect, Input, Machine, Outbox, Requester, RetryPolicy, Routed};

/// How long a worker waits before claiming again when every remaining task
/// is held by another worker, ms.
pub const WORKER_IDLE_MS: u64 = 50;

/// Produces the data of a task: `(array, its metadata, the task's region,
/// the worker)` to `meta.dtype` elements of the region's shape, or the
/// error that makes the worker fail (a missing or malformed source).
pub type SourceFn = Arc<
    dyn Fn(&ArrayPath, &ArrayMeta, &Region, WorkerId) -> Result<ArrayData, FloeError> + Send + Sync,
>;

/// One `CompleteTask` sent.
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionLog {
    /// The task.
    pub task: TaskId,
    /// The epoch presented.
    pub epoch: u64,
    /// Its array.
    pub array: ArrayPath,
    /// Its region.
    pub region: Region,
    /// Chunk objects written for it.
    pub chunks: u64,
    /// The delta manifest sent.
    pub delta: ObjectId,
    /// The request's sequence number.
    pub seq: u64,
    /// The final outcome, once answered.
    pub outcome: Option<Outcome>,
}

/// Where a [`Worker`] stands.
#[derive(Clone, Debug, PartialEq)]
pub enum WorkerStatus {
    /// Still working.
    Running,
    /// No task left (or the session closed).
    Finished,
    /// Stopped on an error.
    Failed(FloeError),
}

/// What a [`Worker`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerReport {
    /// Every grant received: task and epoch.
    pub grants: Vec<(TaskId, u64)>,
    /// Every completion sent.
    pub completions: Vec<CompletionLog>,
    /// Tasks dropped before completing: lease lost, or puts failing.
    pub abandoned: Vec<(TaskId, u64)>,
    /// How often it took a fresh client id after `SessionExpired`.
    pub renewed_client: u32,
    /// Leases renewed.
    pub renewals: u32,
    /// Where it stands.
    pub status: WorkerStatus,
}

/// What the requester is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Asked {
    Nothing,
    Session,
    Base,
    Claim,
    Renew,
    Complete,
}

/// Where the task in hand is.
#[derive(Debug)]
enum Stage {
    /// Putting the task's chunks, then its delta manifest.
    Storing(super::stage::Stage),
    Completing,
}

/// The task in hand.
#[derive(Debug)]
struct Held {
    task: TaskId,
    epoch: u64,
    array: ArrayPath,
    region: Region,
    chunks: u64,
    renew_timer: u64,
    /// Renewal interval, ms.
    every: u64,
    stage: Stage,
}

/// A cooperative worker of one session.
pub struct Worker {
    worker: WorkerId,
    session: SessionId,
    repo: RepoName,
    source: SourceFn,
    /// The metadata tasks are written against, once known.
    arrays: Option<BTreeMap<ArrayPath, ArrayMeta>>,
    /// The arrays the session creates, from its status, until the base's
    /// arrays are read.
    created: BTreeMap<ArrayPath, ArrayMeta>,
    lease_ms: Option<u64>,
    requester: Requester,
    out: Outbox,
    rng: SmallRng,
    asked: Asked,
    held: Option<Held>,
    idle_timer: Option<u64>,
    idle_ms: u64,
    started: bool,
    report: WorkerReport,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("worker", &self.worker)
            .field("session", &self.session)
            .field("asked", &self.asked)
            .field("held", &self.held.as_ref().map(|h| (h.task, h.epoch)))
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker `worker` (requests stamped with `client`, a client id of
    /// its own) of cooperative `session` of `repo`, writing what `source`
    /// produces, drawing object ids from `seed`. Unless given
    /// [`Worker::with_arrays`], it first reads the session's status and
    /// base to learn the arrays' metadata (the base's and those the
    /// session creates).
    pub fn new(
        worker: WorkerId,
        client: ClientId,
        nodes: Vec<u64>,
        session: SessionId,
        repo: RepoName,
        source: SourceFn,
        seed: u64,
    ) -> Self {
        Worker {
            worker,
            session,
            repo,
            source,
            arrays: None,
            created: BTreeMap::new(),
            lease_ms: None,
            requester: Requester::new(client, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            asked: Asked::Nothing,
            held: None,
            idle_timer: None,
            idle_ms: WORKER_IDLE_MS,
            started: false,
            report: WorkerReport {
                grants: Vec::new(),
                completions: Vec::new(),
                abandoned: Vec::new(),
                renewed_client: 0,
                renewals: 0,
                status: WorkerStatus::Running,
            },
        }
    }

    /// The array metadata its tasks are written against, once known.
    pub fn arrays(&self) -> Option<&BTreeMap<ArrayPath, ArrayMeta>> {
        self.arrays.as_ref()
    }

    /// Uses these array metadata (the `arrays` of `SessionOpened`) instead
    /// of reading them from the session's base.
    pub fn with_arrays(mut self, arrays: BTreeMap<ArrayPath, ArrayMeta>) -> Self {
        self.arrays = Some(arrays);
        self
    }

    /// The session's lease length: renewals go every third of it. Without
    /// it, the lease is estimated from each grant's `lease_until - now`.
    pub fn with_lease_ms(mut self, lease_ms: u64) -> Self {
        self.lease_ms = Some(lease_ms);
        self
    }

    /// Replaces the retry policy of its requests.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.requester.set_policy(policy);
        self
    }

    /// Waits `idle_ms` (instead of [`WORKER_IDLE_MS`]) before claiming
    /// again when every remaining task is held by another worker.
    pub fn with_idle_ms(mut self, idle_ms: u64) -> Self {
        self.idle_ms = idle_ms.max(1);
        self
    }

    /// Its worker id.
    pub fn id(&self) -> WorkerId {
        self.worker
    }

    /// The client id its requests carry.
    pub fn client(&self) -> ClientId {
        self.requester.client()
    }

    /// What it did so far.
    pub fn report(&self) -> &WorkerReport {
        &self.report
    }

    /// Where it stands.
    pub fn status(&self) -> &WorkerStatus {
        &self.report.status
    }

    /// The task it holds now, with the grant's epoch.
    pub fn holding(&self) -> Option<(TaskId, u64)> {
        self.held.as_ref().map(|h| (h.task, h.epoch))
    }

    fn ask(&mut self, asked: Asked, request: Request) {
        self.asked = asked;
        self.requester.request(&mut self.out, request);
    }

    fn finish(&mut self, status: WorkerStatus) {
        self.report.status = status;
        self.requester.cancel();
        self.asked = Asked::Nothing;
        self.held = None;
        self.idle_timer = None;
    }

    fn claim(&mut self) {
        self.idle_timer = None;
        let cmd = Command::ClaimTask {
            session: self.session,
            worker: self.worker,
        };
        self.ask(Asked::Claim, Request::Command(cmd));
    }

    fn on_session(&mut self, outcome: Outcome) {
        match outcome {
            Ok(Reply::Session(status)) if status.closed => self.finish(WorkerStatus::Finished),
            Ok(Reply::Session(status)) => {
                self.created = status.create;
                let q = Query::GetCommit {
                    repo: self.repo.clone(),
                    commit: status.base,
                };
                self.ask(Asked::Base, Request::Query(q));
            }
            Err(FloeError::SessionClosed { .. }) => self.finish(WorkerStatus::Finished),
            Ok(other) => self.finish(WorkerStatus::Failed(unexpected("Session", &other))),
            Err(e) => self.finish(WorkerStatus::Failed(e)),
        }
    }

    fn on_base(&mut self, outcome: Outcome) {
        match outcome {
            Ok(Reply::Commit(record)) => {
                let mut arrays = record.arrays;
                arrays.append(&mut self.created);
                self.arrays = Some(arrays);
                self.claim();
            }
            Ok(other) => self.finish(WorkerStatus::Failed(unexpected("GetCommit", &other))),
            Err(e) => self.finish(WorkerStatus::Failed(e)),
        }
    }

    fn on_claim(&mut self, now_ms: u64, outcome: Outcome) {
        match on_claim(outcome) {
            Ok(ClaimDecision::Work(grant)) => self.take(now_ms, grant),
            Ok(ClaimDecision::Exit) => self.finish(WorkerStatus::Finished),
            Ok(ClaimDecision::Wait { .. }) => self.idle_timer = Some(self.out.timer(self.idle_ms)),
            Err(e) => self.finish(WorkerStatus::Failed(e)),
        }
    }

    /// Starts on a granted task (from a claim, or riding on a completion).
    fn take(&mut self, now_ms: u64, grant: Grant) {
        self.report.grants.push((grant.task, grant.epoch));
        let lease = self
            .lease_ms
            .unwrap_or_else(|| grant.lease_until.saturating_sub(now_ms));
        let every = renew_interval_ms(lease);
        self.start_task(grant.task, grant.epoch, grant.array, grant.region, every);
    }

    fn start_task(
        &mut self,
        task: TaskId,
        epoch: u64,
        array: ArrayPath,
        region: Region,
        every: u64,
    ) {
        let objects = match self.task_chunks(&array, &region) {
            Ok(objects) => objects,
            Err(e) => return self.finish(WorkerStatus::Failed(e)),
        };
        let chunks = objects.len() as u64;
        let (stage, staged) =
            super::stage::Stage::start(&mut self.out, &mut self.rng, &self.repo, objects);
        let renew_timer = self.out.timer(every);
        self.held = Some(Held {
            task,
            epoch,
            array,
            region,
            chunks,
            renew_timer,
            every,
            stage: Stage::Storing(stage),
        });
        self.on_staged(staged);
    }

    /// The encoded chunk objects of a task, from its source's data (which
    /// is dropped once encoded).
    #[allow(clippy::type_complexity)]
    fn task_chunks(
        &self,
        array: &ArrayPath,
        region: &Region,
    ) -> Result<super::stage::Chunks, FloeError> {
        let arrays = self
            .arrays
            .as_ref()
            .ok_or_else(|| FloeError::UnknownArray {
                path: array.clone(),
            })?;
        let meta = meta_of(arrays, array)?;
        let parts = task_parts(array, meta, region)?;
        let data = (self.source)(array, meta, region, self.worker)?;
        check_task_data(array, meta, region, &data)?;
        let mut objects = Vec::with_capacity(parts.len());
        for part in parts {
            let buffer = task_chunk(meta, &part, &data)?;
            objects.push(((array.clone(), part.coord), encode_chunk(meta, &buffer)?));
        }
        Ok(objects)
    }

    fn on_put(&mut self, token: u64, result: Result<(), String>) {
        let Some(Held {
            stage: Stage::Storing(stage),
            ..
        }) = self.held.as_mut()
        else {
            return;
        };
        let staged = stage.on_put(&mut self.out, &mut self.rng, &self.repo, token, result);
        self.on_staged(staged);
    }

    /// The task's chunks and manifest are stored: complete it. A put that
    /// keeps failing drops the task (its lease will lapse).
    fn on_staged(&mut self, staged: Staged) {
        match staged {
            Staged::Waiting => {}
            Staged::Failed(_) => self.abandon(),
            Staged::Done { delta: None, .. } => self.abandon(),
            Staged::Done {
                written,
                delta: Some(delta),
            } => {
                let arrays = self.arrays.clone().unwrap_or_default();
                let (keys, ids): (Vec<_>, Vec<_>) =
                    written.into_iter().map(|(p, c, id)| ((p, c), id)).unzip();
                match delta_of(&arrays, &keys, &ids) {
                    Ok((footprint, _)) => {
                        if let Some(held) = self.held.as_mut() {
                            held.stage = Stage::Completing;
                        }
                        self.complete(delta, footprint);
                    }
                    Err(e) => self.finish(WorkerStatus::Failed(e)),
                }
            }
        }
    }

    /// Sends `CompleteTask` (superseding a renewal in flight).
    fn complete(&mut self, delta: ObjectId, footprint: Footprint) {
        let Some(held) = self.held.as_ref() else {
            return;
        };
        let cmd = Command::CompleteTask {
            session: self.session,
            task: held.task,
            epoch: held.epoch,
            delta,
            footprint,
            // The next task comes with the acceptance: one round per task.
            next: Some(self.worker),
        };
        let mut log = CompletionLog {
            task: held.task,
            epoch: held.epoch,
            array: held.array.clone(),
            region: held.region.clone(),
            chunks: held.chunks,
            delta,
            seq: 0,
            outcome: None,
        };
        self.asked = Asked::Complete;
        log.seq = self.requester.request(&mut self.out, Request::Command(cmd));
        self.report.completions.push(log);
    }

    fn on_complete(&mut self, now_ms: u64, outcome: Outcome) {
        if let Some(last) = self.report.completions.last_mut() {
            last.outcome = Some(outcome.clone());
        }
        self.held = None;
        match on_complete(outcome) {
            Ok(CompleteDecision::Accepted { unfinished: 0 })
            | Err(FloeError::SessionClosed { .. }) => self.finish(WorkerStatus::Finished),
            Ok(CompleteDecision::Accepted { .. } | CompleteDecision::Stale { .. }) => self.claim(),
            Ok(CompleteDecision::Next(grant)) => self.take(now_ms, grant),
            Err(e) => self.finish(WorkerStatus::Failed(e)),
        }
    }

    /// The coordinators forgot this worker's client session (it was cut
    /// off longer than a session lives). Whether the command in flight was
    /// applied is unknown, so the task in hand is dropped (a completion
    /// that did land stands; otherwise the lease lapses and the task is
    /// granted again under a new epoch) and the worker goes on under a
    /// fresh client id.
    fn on_expired(&mut self, outcome: Outcome) {
        if self.asked == Asked::Complete {
            if let Some(last) = self.report.completions.last_mut() {
                last.outcome = Some(outcome);
            }
        }
        self.asked = Asked::Nothing;
        self.report.renewed_client += 1;
        self.requester.renew();
        self.abandon();
    }

    /// Drops the task in hand (its objects become garbage) and claims again.
    fn abandon(&mut self) {
        if let Some(held) = self.held.take() {
            self.report.abandoned.push((held.task, held.epoch));
        }
        self.claim();
    }

    fn on_renew_timer(&mut self, token: u64) -> bool {
        let Some(held) = self.held.as_mut() else {
            return false;
        };
        if held.renew_timer != token {
            return false;
        }
        held.renew_timer = self.out.timer(held.every);
        if self.asked == Asked::Nothing {
            let cmd = Command::RenewLease {
                session: self.session,
                task: held.task,
                epoch: held.epoch,
            };
            self.ask(Asked::Renew, Request::Command(cmd));
        }
        true
    }

    fn on_renew(&mut self, outcome: Outcome) {
        self.asked = Asked::Nothing;
        match on_renew(&outcome) {
            // A closed session ends the worker, not just the task.
            RenewDecision::Lost if matches!(outcome, Err(FloeError::SessionClosed { .. })) => {
                self.finish(WorkerStatus::Finished)
            }
            RenewDecision::Lost => self.abandon(),
            RenewDecision::Renewed { .. } => self.report.renewals += 1,
            RenewDecision::Retry => {}
        }
    }

    fn on_outcome(&mut self, now_ms: u64, outcome: Outcome) {
        if let Err(FloeError::SessionExpired { .. }) = outcome {
            return self.on_expired(outcome);
        }
        match self.asked {
            Asked::Session => self.on_session(outcome),
            Asked::Base => self.on_base(outcome),
            Asked::Claim => self.on_claim(now_ms, outcome),
            Asked::Renew => self.on_renew(outcome),
            Asked::Complete => self.on_complete(now_ms, outcome),
            Asked::Nothing => {}
        }
    }

    /// One of its own timers (the requester's are routed before).
    fn on_timer(&mut self, token: u64) {
        if self.on_renew_timer(token) {
            return;
        }
        if self.idle_timer == Some(token) {
            self.claim();
        }
    }
}

impl Machine for Worker {
    fn start(&mut self, _now_ms: u64) {
        if self.started {
            return;
        }
        self.started = true;
        if self.arrays.is_some() {
            return self.claim();
        }
        let q = Query::Session {
            session: self.session,
        };
        self.ask(Asked::Session, Request::Query(q));
    }

    fn handle(&mut self, now_ms: u64, input: Input) {
        if self.is_done() {
            return;
        }
        match self.requester.route(&mut self.out, input) {
            Routed::Final(outcome) => self.on_outcome(now_ms, outcome),
            Routed::Other(Input::Timer { token }) => self.on_timer(token),
            Routed::Other(Input::PutDone { token, result }) => self.on_put(token, result),
            Routed::Taken | Routed::Other(_) => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        !matches!(self.report.status, WorkerStatus::Running)
    }
}
