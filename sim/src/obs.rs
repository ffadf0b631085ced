//! What the clients saw, in plain data: the input of the oracles. Filled
//! from the client machines' reports at the end of a run, or by hand in
//! tests (to prove each oracle fails when its property is broken).

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, CommitId, CommitMode, CommitRecord, Conflict, Footprint,
    MetaChange, ObjectId, Outcome, PlannedTask, SessionId, TagName, TaskId, WorkerId,
};

use crate::model::{self, Write};

/// One commit request as a client sent it (one per `Commit` sent; a
/// fast-forward retry is a second attempt with the same message).
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The client (sim index) that sent it.
    pub client: u32,
    /// The commit message: unique per checkout, shared by fast-forwards.
    pub message: String,
    /// The checkout the data was computed against.
    pub data_base: CommitId,
    /// The base in the request.
    pub base_sent: CommitId,
    /// The footprint in the request.
    pub footprint: Footprint,
    /// The resizes made before the writes, in order: array and shape.
    pub resizes: Vec<(ArrayPath, Vec<u64>)>,
    /// True when it also deleted or created arrays.
    pub recreates: bool,
    /// The regions written, with their bytes.
    pub writes: Vec<Write>,
    /// The commit mode.
    pub mode: CommitMode,
    /// The final outcome the client received, if any.
    pub outcome: Option<Outcome>,
}

/// An answer to `CanFastForward`.
#[derive(Clone, Debug)]
pub struct FfAnswer {
    /// The client that asked.
    pub client: u32,
    /// The base asked about.
    pub base: CommitId,
    /// The footprint asked about.
    pub footprint: Footprint,
    /// The tip the answer is about.
    pub tip: CommitId,
    /// The conflicts named.
    pub conflicts: Vec<Conflict>,
}

/// A task grant a worker received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The worker.
    pub worker: WorkerId,
    /// The task.
    pub task: TaskId,
    /// Its epoch.
    pub epoch: u64,
}

/// A completion a worker sent, with the answer it got.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The worker.
    pub worker: WorkerId,
    /// The task.
    pub task: TaskId,
    /// The epoch presented.
    pub epoch: u64,
    /// The answer, if one came.
    pub outcome: Option<Outcome>,
    /// The chunks it wrote.
    pub footprint: Footprint,
    /// The regions written with their bytes.
    pub writes: Vec<Write>,
}

impl Completion {
    /// True when the coordinator accepted it.
    pub fn accepted(&self) -> bool {
        matches!(&self.outcome, Some(Ok(reply)) if reply.accepted().is_some())
    }
}

/// A planless writer's contribution, with the answer it got.
#[derive(Clone, Debug)]
pub struct Contribution {
    /// The writer.
    pub worker: WorkerId,
    /// Its delta manifest.
    pub delta: ObjectId,
    /// The chunks it wrote.
    pub footprint: Footprint,
    /// The regions written with their bytes.
    pub writes: Vec<Write>,
    /// The answer, if one came.
    pub outcome: Option<Outcome>,
}

impl Contribution {
    /// True when the coordinator accepted it.
    pub fn accepted(&self) -> bool {
        matches!(&self.outcome, Some(Ok(reply)) if reply.accepted().is_some())
    }

    /// True when the writer cannot know whether the session holds it: no
    /// answer came, or a retry found the client's session expired (an
    /// earlier send may have been applied and its reply lost).
    pub fn indeterminate(&self) -> bool {
        matches!(
            self.outcome,
            None | Some(Err(floe_protocol::FloeError::SessionExpired { .. }))
        )
    }
}

/// One cooperative job: its plan, what its workers saw, its commit.
#[derive(Clone, Debug, Default)]
pub struct CoopRun {
    /// The session, once opened.
    pub session: Option<SessionId>,
    /// The session's base, once opened.
    pub base: Option<CommitId>,
    /// The plan sent.
    pub plan: Vec<PlannedTask>,
    /// Every grant observed by any worker of the job.
    pub grants: Vec<Grant>,
    /// Every completion sent by any worker of the job.
    pub completions: Vec<Completion>,
    /// The session's commit message.
    pub message: String,
    /// The commit mode of the last `CommitSession` sent.
    pub mode: CommitMode,
    /// The outcome of the session's commit, if any.
    pub outcome: Option<Outcome>,
    /// Per task, the worker the final state credits with its completion
    /// and the task's epoch there (filled from a replica at the end of the
    /// run; may be empty in hand-made histories).
    pub done_by: BTreeMap<TaskId, (WorkerId, u64)>,
    /// True for a planless session (no plan; writers contribute).
    pub planless: bool,
    /// The contributions of a planless session's writers.
    pub contributions: Vec<Contribution>,
    /// The deltas of the contributions the session holds, as the final
    /// state reports them (filled from a replica at the end of the run;
    /// `None` in hand-made histories).
    pub held_deltas: Option<Vec<ObjectId>>,
    /// The arrays the session creates (`OpenSession::create`), landing
    /// with its commit.
    pub create: BTreeMap<ArrayPath, ArrayMeta>,
}

/// Everything the clients observed in one run.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Every commit attempt.
    pub attempts: Vec<Attempt>,
    /// Every fast-forward answer.
    pub ff_answers: Vec<FfAnswer>,
    /// Every cooperative job.
    pub coops: Vec<CoopRun>,
    /// How every client of the core (writers, jobs, workers) ended.
    pub ends: Vec<ClientEnd>,
    /// The faults injected during the run.
    pub faults: crate::faults::FaultCounts,
    /// Every checkout a client received, with when it was asked and
    /// answered.
    pub reads: Vec<Read>,
    /// Every commit acknowledged to a client, with when.
    pub acks: Vec<Ack>,
    /// Every tag creation sent.
    pub tags: Vec<TagMade>,
    /// Every tag resolution a client received, and what it read there.
    pub tag_reads: Vec<TagRead>,
    /// How long idle client sessions lived in this run.
    pub client_expiry_ms: u64,
}

/// A `CreateTag` as its client saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct TagMade {
    /// The client (sim index).
    pub client: u32,
    /// The tag.
    pub tag: TagName,
    /// The commit it was created at.
    pub at: CommitId,
    /// The final outcome, if any.
    pub outcome: Option<Outcome>,
}

/// A tag resolved by a client, and the region it then read there.
#[derive(Clone, Debug)]
pub struct TagRead {
    /// The client (sim index).
    pub client: u32,
    /// The tag.
    pub tag: TagName,
    /// The commit the tag resolved to.
    pub commit: CommitId,
    /// What was read at it (the region and its bytes), if the read succeeded.
    pub read: Option<model::Write>,
}

/// A checkout (`Query::Checkout`) as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The client (sim index).
    pub client: u32,
    /// When it first sent the request (simulated ms).
    pub invoked_ms: u64,
    /// When the answer reached it.
    pub replied_ms: u64,
    /// The branch it checked out.
    pub branch: BranchName,
    /// The tip it was told.
    pub tip: CommitId,
}

/// A commit acknowledged to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The client (sim index).
    pub client: u32,
    /// When the acknowledgement reached it (simulated ms).
    pub at_ms: u64,
    /// The commit.
    pub commit: CommitId,
}

/// The world's record of reads and acknowledgements as they happen.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Checkouts in flight: (client, seq) -> first send time and branch.
    asked: BTreeMap<(u32, u64), (u64, BranchName)>,
    /// Requests whose answer was already recorded.
    answered: std::collections::BTreeSet<(u32, u64)>,
    /// The reads so far.
    pub reads: Vec<Read>,
    /// The acknowledgements so far.
    pub acks: Vec<Ack>,
}

impl Timeline {
    /// A client sent `request` under `seq` at `now`.
    pub fn sent(&mut self, client: u32, seq: u64, request: &floe_protocol::Request, now: u64) {
        let floe_protocol::Request::Query(floe_protocol::Query::Checkout { branch, .. }) = request
        else {
            return;
        };
        if !self.answered.contains(&(client, seq)) {
            self.asked
                .entry((client, seq))
                .or_insert_with(|| (now, branch.clone()));
        }
    }

    /// A live client received `outcome` for `seq` at `now`.
    pub fn received(&mut self, client: u32, seq: u64, outcome: &Outcome, now: u64) {
        if self.answered.contains(&(client, seq)) {
            return;
        }
        match outcome {
            Ok(floe_protocol::Reply::Commit(rec)) => {
                if let Some((invoked_ms, branch)) = self.asked.remove(&(client, seq)) {
                    self.answered.insert((client, seq));
                    self.reads.push(Read {
                        client,
                        invoked_ms,
                        replied_ms: now,
                        branch,
                        tip: rec.id,
                    });
                }
            }
            Ok(floe_protocol::Reply::Committed { commit, .. }) => {
                self.answered.insert((client, seq));
                self.acks.push(Ack {
                    client,
                    at_ms: now,
                    commit: *commit,
                });
            }
            _ => {}
        }
    }
}

/// How a client ended.
#[derive(Clone, Debug, PartialEq)]
pub enum End {
    /// Its commit landed (a writer, a job).
    Landed,
    /// Refused with a conflict and no retry left (a writer).
    Conflict,
    /// Its work is over (a worker: no task left).
    Finished,
    /// It stopped on an error.
    Failed(floe_protocol::FloeError),
    /// It never finished.
    Running,
}

/// One client's end, for the client-ends oracle.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientEnd {
    /// The client (sim index).
    pub client: u32,
    /// What kind of client.
    pub kind: &'static str,
    /// How it ended.
    pub end: End,
    /// For a job: whether its plan is invalid (tasks sharing chunks), by
    /// plain division of each task's bounds by the chunk shape.
    pub invalid_plan: bool,
    /// For a job: the arrays its session creates.
    pub creates: Vec<ArrayPath>,
}

impl Observations {
    /// The reference model's attempts, keyed by commit message: the
    /// non-cooperative attempts, plus each cooperative job as one attempt
    /// built from the accepted completions.
    pub fn model_attempts(&self) -> BTreeMap<String, model::Attempt> {
        let mut out = BTreeMap::new();
        for a in &self.attempts {
            out.entry(a.message.clone())
                .or_insert_with(|| model::Attempt {
                    base: a.data_base,
                    resizes: a.resizes.clone(),
                    writes: a.writes.clone(),
                    footprint: a.footprint.clone(),
                    mode: a.mode,
                });
        }
        for run in &self.coops {
            if let Some(attempt) = run.as_attempt() {
                out.insert(run.message.clone(), attempt);
            }
        }
        out
    }
}

impl CoopRun {
    /// The completion of each task that the session holds: the one sent
    /// by the worker the final state credits, at the task's epoch there
    /// (whether or not its reply arrived); else one accepted by a reply.
    pub fn landed_by_task(&self) -> BTreeMap<TaskId, &Completion> {
        let mut out: BTreeMap<TaskId, &Completion> = BTreeMap::new();
        for c in self.completions.iter().filter(|c| c.accepted()) {
            out.insert(c.task, c);
        }
        for c in &self.completions {
            if self.done_by.get(&c.task) == Some(&(c.worker, c.epoch)) {
                out.insert(c.task, c);
            }
        }
        out
    }

    /// The contributions the session holds: those the final state lists
    /// (an indeterminate one included), else those accepted by a reply.
    pub fn held_contributions(&self) -> Vec<&Contribution> {
        match &self.held_deltas {
            Some(deltas) => self
                .contributions
                .iter()
                .filter(|c| deltas.contains(&c.delta))
                .collect(),
            None => self.contributions.iter().filter(|c| c.accepted()).collect(),
        }
    }

    /// The job's commit as a model attempt, once the session is open.
    pub fn as_attempt(&self) -> Option<model::Attempt> {
        let base = self.base?;
        let mut footprint = Footprint::new();
        for (path, meta) in &self.create {
            footprint.set_meta(path, meta, MetaChange::Create(meta.clone()));
        }
        let mut writes = Vec::new();
        for c in self.landed_by_task().values() {
            footprint.merge(&c.footprint);
            writes.extend(c.writes.iter().cloned());
        }
        for c in self.held_contributions() {
            footprint.merge(&c.footprint);
            writes.extend(c.writes.iter().cloned());
        }
        Some(model::Attempt {
            base,
            resizes: Vec::new(),
            writes,
            footprint,
            mode: self.mode,
        })
    }
}

/// One replica's final view, for the history and agreement oracles.
#[derive(Clone, Debug)]
pub struct Replica {
    /// The node id.
    pub node: u64,
    /// Its applied index.
    pub applied: u64,
    /// Its state digest.
    pub digest: u64,
    /// The tip of `main`.
    pub tip: CommitId,
    /// Every branch's tip (`main` included).
    pub branches: BTreeMap<BranchName, CommitId>,
    /// Every tag the workload created, as the replica resolves it.
    pub tags: BTreeMap<TagName, CommitId>,
    /// Every commit record it holds.
    pub records: BTreeMap<CommitId, CommitRecord>,
    /// Cooperative sessions as it reports them.
    pub sessions: BTreeMap<SessionId, floe_protocol::SessionStatus>,
}
