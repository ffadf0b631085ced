//! The clients the simulation runs: the real sans-IO client machines of
//! `worker::machine` (writers — aligned, unaligned, resizing —, cooperative
//! jobs and their workers) and the built-in setup, checkpoint and planless
//! clients, all driven alike.

pub mod planless;
pub mod setup;

pub use floe_worker::machine::{Effect, Input, Machine};

use floe_protocol::{BranchName, Reply};
use floe_worker::machine::{Job, Worker, Writer};

use crate::model::Write;
use crate::obs::{Attempt, ClientEnd, End, FfAnswer, Observations};

/// One client of the simulation.
pub enum Client {
    /// Creates the repo and arrays.
    Setup(setup::Setup),
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
    /// Opens a planless session and commits it; `number` numbers the
    /// planless runs.
    Lead {
        /// The machine.
        lead: planless::PlanlessLead,
        /// Its number.
        number: usize,
    },
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
}

impl Client {
    /// The machine to drive.
    pub fn machine(&mut self) -> &mut dyn Machine {
        match self {
            Client::Setup(m) => m,
            Client::Writer(m) => m.as_mut(),
            Client::Checkpoint(m) => m.as_mut(),
            Client::Job { job, .. } => job.as_mut(),
            Client::Worker { worker, .. } => worker.as_mut(),
            Client::Lead { lead, .. } => lead,
            Client::Contributor { contributor, .. } => contributor.as_mut(),
        }
    }

    /// True when its work is over.
    pub fn is_done(&self) -> bool {
        match self {
            Client::Setup(m) => m.is_done(),
            Client::Writer(m) => m.is_done(),
            Client::Checkpoint(m) => m.is_done(),
            Client::Job { job, .. } => job.is_done(),
            Client::Worker { worker, .. } => worker.is_done(),
            Client::Lead { lead, .. } => lead.is_done(),
            Client::Contributor { contributor, .. } => contributor.is_done(),
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
            Client::Setup(m) => obs.attempts.extend(m.attempt.iter().cloned()),
            Client::Writer(m) => observe_writer(m, index, obs),
            Client::Job { .. }
            | Client::Worker { .. }
            | Client::Checkpoint(_)
            | Client::Lead { .. }
            | Client::Contributor { .. } => {}
        }
    }

    /// How a client of the core ended (`None` for the simulation's own
    /// setup client and planless lead). `arrays` are the setup's,
    /// to judge a job's plan.
    pub fn end(
        &self,
        index: u32,
        arrays: &[(floe_protocol::ArrayPath, floe_protocol::ArrayMeta)],
    ) -> Option<ClientEnd> {
        use floe_worker::machine::{CommitEnd, JobStatus, WorkerStatus, WriterStatus};
        let (end, invalid_plan) = match self {
            Client::Writer(w) => match w.status() {
                WriterStatus::Running => (End::Running, false),
                WriterStatus::Ended(CommitEnd::Committed { .. }) => (End::Landed, false),
                WriterStatus::Ended(CommitEnd::Conflict { .. }) => (End::Conflict, false),
                WriterStatus::Ended(CommitEnd::Failed(e)) => (End::Failed(e.clone()), false),
            },
            Client::Job { job, .. } => {
                let invalid = plan_overlaps(&job.spec().plan, arrays);
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
            Client::Checkpoint(c) => match c.result() {
                None => (End::Running, false),
                Some(Ok(_)) => (End::Finished, false),
                Some(Err(e)) => (End::Failed(e.clone()), false),
            },
            Client::Worker { worker, .. } => match worker.status() {
                WorkerStatus::Running => (End::Running, false),
                WorkerStatus::Finished => (End::Finished, false),
                WorkerStatus::Failed(e) => (End::Failed(e.clone()), false),
            },
            _ => return None,
        };
        Some(ClientEnd {
            client: index,
            kind: self.kind(),
            end,
            invalid_plan,
        })
    }

    /// What kind of client it is, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Client::Setup(_) => "setup",
            Client::Writer(_) => "writer",
            Client::Checkpoint(_) => "checkpointer",
            Client::Job { .. } => "job",
            Client::Worker { .. } => "worker",
            Client::Lead { .. } => "planless-lead",
            Client::Contributor { .. } => "contributor",
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

/// The branch the built-in clients work on.
fn main_branch() -> BranchName {
    BranchName::new("main").expect("valid")
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
