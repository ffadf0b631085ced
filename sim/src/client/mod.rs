//! The clients the simulation runs: the real sans-IO client machines of
//! `worker::machine`, all driven alike — writers (aligned, unaligned,
//! resizing, deleting, creating), cooperative jobs and their workers,
//! planless contributors, checkpoint writers, readers, and single requests
//! sent through the core's `Call` (creating the repo, branches and tags,
//! opening and committing planless sessions) the way the library's
//! `Client::command` sends them.

pub use floe_worker::machine::{Effect, Input, Machine};

use floe_protocol::{ArrayPath, BranchName, CommitId, Outcome, Region, Reply, TagName};
use floe_worker::machine::{Call, Job, ReadTask, Worker, Writer};

use crate::model::Write;
use crate::obs::{Attempt, ClientEnd, End, FfAnswer, Observations};

/// What a single request of the workload is for: the world acts on its
/// answer (starts the next step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Creates the repo; the setup writer follows.
    CreateRepo,
    /// Opens planless run `n`; its contributors follow.
    OpenPlanless(usize),
    /// Commits planless run `n`.
    CommitPlanless(usize),
    /// Checks out `main` to pick a commit to branch from.
    PickBranchPoint,
    /// Creates the branch; its writers follow.
    CreateBranch,
    /// Checks out `branch` to tag its tip as `tag`.
    CheckoutToTag {
        /// The branch.
        branch: BranchName,
        /// The tag to create.
        tag: TagName,
    },
    /// Creates `tag` at `at`; a reader follows.
    CreateTag {
        /// The tag.
        tag: TagName,
        /// The commit tagged.
        at: CommitId,
    },
    /// Resolves `tag` to read `region` of `path` there.
    ResolveTag {
        /// The tag.
        tag: TagName,
        /// The array to read.
        path: ArrayPath,
        /// The region to read.
        region: Region,
    },
}

impl Role {
    fn kind(&self) -> &'static str {
        match self {
            Role::CreateRepo => "create-repo",
            Role::OpenPlanless(_) => "planless-open",
            Role::CommitPlanless(_) => "planless-commit",
            Role::PickBranchPoint => "branch-point",
            Role::CreateBranch => "brancher",
            Role::CheckoutToTag { .. } => "tag-checkout",
            Role::CreateTag { .. } => "tagger",
            Role::ResolveTag { .. } => "tag-resolver",
        }
    }
}

/// One client of the simulation.
pub enum Client {
    /// A single request.
    Call {
        /// The machine.
        call: Box<Call>,
        /// What it is for.
        role: Role,
    },
    /// A real non-cooperative writer.
    Writer(Box<Writer>),
    /// A cooperative job's driver; `job` numbers the jobs of the run.
    Job {
        /// The machine.
        job: Box<Job>,
        /// Its number.
        number: usize,
        /// Whether its workers were started.
        staffed: bool,
    },
    /// Writes a checkpoint of the tip.
    Checkpoint(Box<floe_worker::machine::CheckpointTask>),
    /// A planless writer of run `number`.
    Contributor {
        /// The machine.
        contributor: Box<floe_worker::machine::ContributeTask>,
        /// What it writes (for the model).
        writes: Vec<Write>,
        /// Its worker id.
        worker: floe_protocol::WorkerId,
        /// Its run's number.
        number: usize,
    },
    /// A cooperative worker of job `number`.
    Worker {
        /// The machine.
        worker: Box<Worker>,
        /// Its job's number.
        number: usize,
    },
    /// Reads a region at the commit `tag` resolved to.
    Read {
        /// The machine.
        read: Box<ReadTask>,
        /// The tag.
        tag: TagName,
    },
}

impl Client {
    /// The machine to drive.
    pub fn machine(&mut self) -> &mut dyn Machine {
        match self {
            Client::Call { call, .. } => call.as_mut(),
            Client::Writer(m) => m.as_mut(),
            Client::Checkpoint(m) => m.as_mut(),
            Client::Job { job, .. } => job.as_mut(),
            Client::Worker { worker, .. } => worker.as_mut(),
            Client::Contributor { contributor, .. } => contributor.as_mut(),
            Client::Read { read, .. } => read.as_mut(),
        }
    }

    /// True when its work is over.
    pub fn is_done(&self) -> bool {
        match self {
            Client::Call { call, .. } => call.is_done(),
            Client::Writer(m) => m.is_done(),
            Client::Checkpoint(m) => m.is_done(),
            Client::Job { job, .. } => job.is_done(),
            Client::Worker { worker, .. } => worker.is_done(),
            Client::Contributor { contributor, .. } => contributor.is_done(),
            Client::Read { read, .. } => read.is_done(),
        }
    }

    /// A single request's role and final outcome, once it has one.
    pub fn answered(&self) -> Option<(&Role, &Outcome)> {
        match self {
            Client::Call { call, role } => call.outcome().map(|o| (role, o)),
            _ => None,
        }
    }

    /// True for a cooperative worker (the target of worker faults).
    pub fn is_worker(&self) -> bool {
        matches!(self, Client::Worker { .. })
    }

    /// True for a cooperative worker holding a task.
    pub fn holds_task(&self) -> bool {
        matches!(self, Client::Worker { worker, .. } if worker.holding().is_some())
    }

    /// Adds the non-cooperative attempts and answers it saw to `obs`
    /// (cooperative runs are gathered per job by the world).
    pub fn observe(&self, index: u32, obs: &mut Observations) {
        match self {
            Client::Writer(m) => observe_writer(m, index, obs),
            Client::Call { call, role } => observe_call(call, role, index, obs),
            Client::Read { read, tag } => observe_read(read, tag, index, obs),
            Client::Job { .. }
            | Client::Worker { .. }
            | Client::Checkpoint(_)
            | Client::Contributor { .. } => {}
        }
    }

    /// How a client ended. `arrays` are the setup's, to judge a job's
    /// plan.
    pub fn end(
        &self,
        index: u32,
        arrays: &[(floe_protocol::ArrayPath, floe_protocol::ArrayMeta)],
    ) -> ClientEnd {
        use floe_worker::machine::{CommitEnd, JobStatus, WorkerStatus, WriterStatus};
        let (end, invalid_plan) = match self {
            Client::Writer(w) => match w.status() {
                WriterStatus::Running => (End::Running, false),
                WriterStatus::Ended(CommitEnd::Committed { .. }) => (End::Landed, false),
                WriterStatus::Ended(CommitEnd::Conflict { .. }) => (End::Conflict, false),
                WriterStatus::Ended(CommitEnd::Failed(e)) => (End::Failed(e.clone()), false),
            },
            Client::Job { job, .. } => {
                let created = job
                    .spec()
                    .create
                    .iter()
                    .map(|(p, m)| (p.clone(), m.clone()));
                let arrays: Vec<_> = arrays.iter().cloned().chain(created).collect();
                let invalid = plan_overlaps(&job.spec().plan, &arrays);
                match job.status() {
                    JobStatus::Running => (End::Running, invalid),
                    JobStatus::Committed(_) => (End::Landed, invalid),
                    JobStatus::Failed(e) => (End::Failed(e.clone()), invalid),
                }
            }
            Client::Contributor { contributor, .. } => match contributor.outcome() {
                None => (End::Running, false),
                Some(Ok(_)) => (End::Finished, false),
                Some(Err(e)) => (End::Failed(e.clone()), false),
            },
            Client::Checkpoint(c) => (finished(c.result()), false),
            Client::Call { call, .. } => (finished(call.outcome()), false),
            Client::Read { read, .. } => (finished(read.result()), false),
            Client::Worker { worker, .. } => match worker.status() {
                WorkerStatus::Running => (End::Running, false),
                WorkerStatus::Finished => (End::Finished, false),
                WorkerStatus::Failed(e) => (End::Failed(e.clone()), false),
            },
        };
        ClientEnd {
            client: index,
            kind: self.kind(),
            end,
            invalid_plan,
            creates: match self {
                Client::Job { job, .. } => job.spec().create.keys().cloned().collect(),
                _ => Vec::new(),
            },
        }
    }

    /// What kind of client it is, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Client::Call { role, .. } => role.kind(),
            Client::Writer(_) => "writer",
            Client::Checkpoint(_) => "checkpointer",
            Client::Job { .. } => "job",
            Client::Worker { .. } => "worker",
            Client::Contributor { .. } => "contributor",
            Client::Read { .. } => "tag-reader",
        }
    }
}

fn observe_writer(w: &Writer, client: u32, obs: &mut Observations) {
    let report = w.report();
    // Every attempt carries the script's writes (the machine keeps no copy).
    let writes: Vec<Write> = w.script().writes.iter().map(to_write).collect();
    for a in &report.attempts {
        obs.attempts.push(Attempt {
            client,
            message: a.message.clone(),
            data_base: a.data_base,
            base_sent: a.base_sent,
            footprint: a.footprint.clone(),
            resizes: w.script().resizes.clone(),
            recreates: !w.script().deletes.is_empty() || !w.script().creates.is_empty(),
            writes: writes.clone(),
            mode: a.mode,
            outcome: a.outcome.clone(),
        });
    }
    for (base, reply) in &report.fast_forward_answers {
        let Reply::FastForward { tip, conflicts } = reply else {
            continue;
        };
        // The question was asked with the footprint of the attempt sent on
        // that base (one footprint per checkout).
        let footprint = report
            .attempts
            .iter()
            .rev()
            .find(|a| a.base_sent == *base)
            .map(|a| a.footprint.clone());
        if let Some(footprint) = footprint {
            obs.ff_answers.push(FfAnswer {
                client,
                base: *base,
                footprint,
                tip: *tip,
                conflicts: conflicts.clone(),
            });
        }
    }
}

fn to_write(
    (path, region, data): &(
        floe_protocol::ArrayPath,
        floe_protocol::Region,
        floe_worker::ArrayData,
    ),
) -> Write {
    Write {
        path: path.clone(),
        region: region.clone(),
        data: data.bytes.clone(),
    }
}

/// Running, finished, or failed, by a machine's final result.
fn finished<T>(result: Option<&Result<T, floe_protocol::FloeError>>) -> End {
    match result {
        None => End::Running,
        Some(Ok(_)) => End::Finished,
        Some(Err(e)) => End::Failed(e.clone()),
    }
}

/// Tags created and the tags resolved, as the clients saw them.
fn observe_call(call: &Call, role: &Role, client: u32, obs: &mut Observations) {
    match (role, call.outcome()) {
        (Role::CreateTag { tag, at }, outcome) => obs.tags.push(crate::obs::TagMade {
            client,
            tag: tag.clone(),
            at: *at,
            outcome: outcome.cloned(),
        }),
        (Role::ResolveTag { tag, .. }, Some(Ok(Reply::Commit(rec)))) => {
            obs.tag_reads.push(crate::obs::TagRead {
                client,
                tag: tag.clone(),
                commit: rec.id,
                read: None,
            })
        }
        _ => {}
    }
}

/// A read at a tag: what it read, for the data oracle.
fn observe_read(read: &ReadTask, tag: &TagName, client: u32, obs: &mut Observations) {
    let spec = read.spec();
    obs.tag_reads.push(crate::obs::TagRead {
        client,
        tag: tag.clone(),
        commit: spec.commit,
        read: read
            .result()
            .and_then(|r| r.as_ref().ok())
            .map(|data| Write {
                path: spec.path.clone(),
                region: spec.region.clone(),
                data: data.bytes.clone(),
            }),
    });
}

/// Whether two tasks of `plan` share a chunk, computed apart from the
/// code under test: each task's chunk box is its bounds divided by the
/// chunk shape (rounding the upper bound up), and two boxes share a chunk
/// when they overlap along every dimension.
fn plan_overlaps(
    plan: &[floe_protocol::PlannedTask],
    arrays: &[(floe_protocol::ArrayPath, floe_protocol::ArrayMeta)],
) -> bool {
    let boxes: Vec<(&floe_protocol::ArrayPath, Vec<(u64, u64)>)> = plan
        .iter()
        .filter_map(|t| {
            let (_, meta) = arrays.iter().find(|(p, _)| *p == t.array)?;
            let b = t
                .region
                .0
                .iter()
                .zip(&meta.chunk_shape)
                .map(|(s, c)| (s.lo / c, s.hi.div_ceil(*c)))
                .collect();
            Some((&t.array, b))
        })
        .collect();
    boxes.iter().enumerate().any(|(i, (pa, a))| {
        boxes[i + 1..]
            .iter()
            .any(|(pb, b)| pa == pb && a.iter().zip(b).all(|(x, y)| x.0 < y.1 && y.0 < x.1))
    })
}
