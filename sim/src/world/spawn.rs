//! Creating clients: the setup client first, then (once the arrays exist)
//! the writers and cooperative jobs of the workload, and the workers of
//! each job once its session is open.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, FloeError, Outcome, Region,
    Reply, Request, SessionId, Solver, WorkerId,
};
use floe_worker::data::ArrayData;
use floe_worker::machine::{
    Call, Caller, CheckpointOf, CheckpointTask, CommitEnd, ContributeTask, ContributeTo, Job,
    JobSpec, RetryPolicy, SourceFn, Worker, Writer, WriterScript, WriterStatus,
};
use floe_worker::resolve::History;
use rand::Rng;

use super::{client_id, Ev, Life, Slot, World};
use crate::client::{Client, Role};
use crate::workload;

/// What the world remembers of a cooperative job, to staff it.
pub(crate) struct JobInfo {
    /// The job's client index.
    pub(crate) index: u32,
    /// Its lease length.
    pub(crate) lease_ms: u64,
    /// Its session and base arrays, once open.
    pub(crate) open: Option<(SessionId, BTreeMap<ArrayPath, ArrayMeta>)>,
    /// Client indexes of its workers (crashed ones included).
    pub(crate) workers: Vec<u32>,
}

/// What the world remembers of a planless run.
pub(crate) struct PlanlessInfo {
    /// Its commit message.
    pub(crate) message: String,
    /// Its commit mode.
    pub(crate) mode: CommitMode,
    /// Its session, base and base arrays, once open.
    pub(crate) open: Option<(SessionId, CommitId, BTreeMap<ArrayPath, ArrayMeta>)>,
    /// Client indexes of its contributors.
    pub(crate) contributors: Vec<u32>,
    /// The client index of its `CommitSession`, once sent.
    pub(crate) commit: Option<u32>,
}

impl World {
    /// Adds a client, started at `at`.
    pub(crate) fn spawn(&mut self, client: Client, at: u64) -> u32 {
        let index = self.clients.len() as u32;
        self.clients.push(Slot {
            client,
            life: Life::Live,
            done: false,
            started: false,
        });
        self.queue.push(at, Ev::Start(index));
        index
    }

    /// Sends `request` for `role` at `at` through the core's `Call`.
    pub(crate) fn spawn_call(&mut self, role: Role, request: Request, at: u64) -> u32 {
        let index = self.clients.len() as u32;
        let call = Call::new(self.caller(index), request);
        self.spawn(
            Client::Call {
                call: Box::new(call),
                role,
            },
            at,
        )
    }

    /// The setup: create the repo; the setup writer follows.
    pub(crate) fn spawn_setup(&mut self) {
        let repo = workload::repo();
        let request = Request::Command(Command::CreateRepo { repo });
        self.spawn_call(Role::CreateRepo, request, self.now);
    }

    /// The setup writer: one commit creating the workload's arrays.
    fn spawn_setup_writer(&mut self, tag: &str) {
        let script = WriterScript {
            creates: self.arrays.clone(),
            mode: CommitMode::Strict,
            seed_loop: false,
            ..retrying_script(&mut self.rngs.work, tag)
        };
        self.setup = Some(self.spawn_writer(script, self.now));
    }

    /// A client finished; the setup's end starts the workload.
    pub(crate) fn on_done(&mut self, index: u32) {
        self.trace.event(self.now, "done", u64::from(index) + 1, 0);
        if self.setup == Some(index) {
            // A setup whose session expired (it could not reach a leader
            // for longer than a session lives) is rerun under a new client
            // id, as its user would; it may have landed, so the rerun may
            // find it there and fail.
            if self.setup_expired(index) && self.setup_reruns < 2 {
                self.setup_reruns += 1;
                return self.spawn_setup_writer("setup-rerun");
            }
            return self.spawn_workload();
        }
        match &self.clients[index as usize].client {
            Client::Call { role, call } => {
                let (role, outcome) = (role.clone(), call.outcome().cloned());
                if let Some(outcome) = outcome {
                    self.on_answer(role, outcome);
                }
            }
            Client::Contributor { number, .. } => self.maybe_commit_planless(*number),
            Client::Writer(w) if self.deleter.as_ref().is_some_and(|(i, _)| *i == index) => {
                let landed = matches!(w.status(), WriterStatus::Ended(CommitEnd::Committed { .. }));
                if let (true, Some((_, path))) = (landed, self.deleter.take()) {
                    self.spawn_creator(path);
                }
            }
            _ => {}
        }
    }

    /// True when the setup writer `index` ended on `SessionExpired`.
    fn setup_expired(&self, index: u32) -> bool {
        matches!(
            &self.clients[index as usize].client,
            Client::Writer(w) if matches!(
                w.status(),
                WriterStatus::Ended(CommitEnd::Failed(FloeError::SessionExpired { .. }))
            )
        )
    }

    /// A single request was answered: its next step.
    fn on_answer(&mut self, role: Role, outcome: Outcome) {
        match (role, outcome) {
            // Rerun as its user would; a rerun may find the repo there.
            (Role::CreateRepo, Err(FloeError::SessionExpired { .. })) if self.setup_reruns < 2 => {
                self.setup_reruns += 1;
                self.spawn_setup();
            }
            (Role::CreateRepo, _) => self.spawn_setup_writer("setup"),
            (
                Role::OpenPlanless(n),
                Ok(Reply::SessionOpened {
                    session,
                    base,
                    arrays,
                }),
            ) => {
                self.planless[n].open = Some((session, base, arrays));
                self.staff_planless(n);
            }
            (role, Ok(reply)) => self.on_branch_answer(role, reply),
            _ => {}
        }
    }

    /// Writers in waves (so that they really run concurrently) and jobs,
    /// spread over the rest of the safety phase.
    fn spawn_workload(&mut self) {
        let end = self.safety_end.max(self.now + 1);
        let waves: Vec<u64> = (0..self.shape.writers.div_ceil(3))
            .map(|_| self.rngs.work.gen_range(self.now..end))
            .collect();
        for n in 0..self.shape.writers {
            let at = if self.shape.waves {
                let wave = waves[self.rngs.work.gen_range(0..waves.len())];
                wave + self.rngs.work.gen_range(0..30)
            } else {
                self.rngs.work.gen_range(self.now..end)
            };
            let client = self.writer(n);
            self.spawn(client, at);
        }
        self.spawn_resizers(end, &waves);
        for n in 0..self.shape.jobs {
            let at = self.rngs.work.gen_range(self.now..end);
            self.spawn_job(n, at);
        }
        for n in 0..self.shape.planless {
            let at = self.rngs.work.gen_range(self.now..end);
            let mode = if self.rngs.work.gen_bool(0.3) {
                CommitMode::Strict
            } else {
                CommitMode::Rebase {
                    solver: Solver::Fail,
                }
            };
            let open = Command::OpenSession {
                repo: workload::repo(),
                branch: main(),
                plan: None,
                lease_ms: 1_000,
                source: None,
                create: Default::default(),
            };
            self.spawn_call(Role::OpenPlanless(n), Request::Command(open), at);
            self.planless.push(PlanlessInfo {
                message: format!("planless{n}"),
                mode,
                open: None,
                contributors: Vec::new(),
                commit: None,
            });
        }
        for _ in 0..self.shape.checkpointers {
            let at = self.rngs.work.gen_range(self.now..end);
            let index = self.clients.len() as u32;
            let seed = self.rngs.work.gen();
            let caller = self.caller(index);
            let of = CheckpointOf::Tip(main());
            let c = CheckpointTask::new(caller, seed, workload::repo(), of, History::new());
            self.spawn(Client::Checkpoint(Box::new(c)), at);
        }
        self.spawn_deleter(end);
        self.spawn_branch_work(end);
    }

    /// On some seeds without cooperative runs: a writer deletes one array;
    /// once that lands, another creates an array at the same path with new
    /// metadata and writes into it, while the other writers still hold
    /// scripts for the old one.
    fn spawn_deleter(&mut self, end: u64) {
        let rng = &mut self.rngs.work;
        if self.shape.jobs > 0 || self.shape.planless > 0 || !rng.gen_bool(0.3) {
            return;
        }
        let (path, _) = self.arrays[rng.gen_range(0..self.arrays.len())].clone();
        let at = rng.gen_range(self.now..end);
        let script = WriterScript {
            deletes: vec![path.clone()],
            ..retrying_script(rng, "delete")
        };
        let index = self.spawn_writer(script, at);
        self.deleter = Some((index, path));
    }

    /// The delete landed: re-create the array with new metadata and write
    /// into it.
    fn spawn_creator(&mut self, path: ArrayPath) {
        let rng = &mut self.rngs.work;
        let meta = workload::array(rng);
        let aligned = rng.gen_bool(0.5);
        let region = workload::region(rng, &meta, aligned, false);
        let data = ArrayData {
            dtype: meta.dtype,
            shape: region.shape(),
            bytes: workload::data(&meta, &region, rng.gen()),
        };
        let script = WriterScript {
            creates: vec![(path.clone(), meta)],
            writes: vec![(path, region, data)],
            ..retrying_script(rng, "recreate")
        };
        self.spawn_writer(script, self.now + 1);
    }

    /// The caller of a task machine for client `index` (its own client id,
    /// numbering from 1, no leader known).
    pub(crate) fn caller(&self, index: u32) -> Caller {
        Caller {
            client: client_id(index),
            last_seq: 0,
            nodes: self.client_nodes(),
            policy: RetryPolicy::default(),
            leader: None,
            opened: false,
        }
    }

    /// Spawns a writer running `script` at `at`; returns its index.
    pub(crate) fn spawn_writer(&mut self, script: WriterScript, at: u64) -> u32 {
        let seed = self.rngs.work.gen();
        let index = self.clients.len() as u32;
        let w = Writer::new(client_id(index), self.client_nodes(), script, seed)
            .with_bugs(crate::bug::client_bugs(self.opts.bug));
        self.spawn(Client::Writer(Box::new(w)), at);
        index
    }

    fn writer(&mut self, n: usize) -> Client {
        let index = self.clients.len() as u32;
        let seed = self.rngs.work.gen();
        let nodes = self.client_nodes();
        let script = self.drawn_script(format!("w{n}"));
        let writer = Writer::new(client_id(index), nodes, script, seed)
            .with_bugs(crate::bug::client_bugs(self.opts.bug));
        Client::Writer(Box::new(writer))
    }

    /// A writer's script on `main`: whole-chunk writes only for a share of
    /// them, else aligned or not.
    pub(crate) fn drawn_script(&mut self, tag: String) -> WriterScript {
        if self.rngs.work.gen_bool(self.shape.simple_share) {
            self.aligned_script(tag)
        } else {
            self.writer_script(tag)
        }
    }

    /// Whole-chunk writes only (no read-modify-write): cheap, so many of
    /// them drive high-contention commit traffic.
    fn aligned_script(&mut self, tag: String) -> WriterScript {
        let rng = &mut self.rngs.work;
        let mut writes: Vec<(ArrayPath, Region, ArrayData)> = Vec::new();
        for _ in 0..rng.gen_range(1..=2) {
            let (path, meta) = &self.arrays[rng.gen_range(0..self.arrays.len())];
            if writes.iter().any(|(p, _, _)| p == path) {
                continue;
            }
            let region = workload::region(rng, meta, true, self.shape.hot);
            let data = ArrayData {
                dtype: meta.dtype,
                shape: region.shape(),
                bytes: workload::data(meta, &region, rng.gen()),
            };
            writes.push((path.clone(), region, data));
        }
        let script = drawn_mode(rng, tag);
        WriterScript {
            writes,
            manual_retry: rng.gen_bool(0.3),
            ..script
        }
    }

    /// On some seeds without cooperative runs (whose plans are drawn on the
    /// original shapes), one to three writers that resize one array, one to
    /// three times each (shrinks to any length, grows), racing with the
    /// writers.
    fn spawn_resizers(&mut self, end: u64, waves: &[u64]) {
        let rng = &mut self.rngs.work;
        let busy = self.shape.busy_resizes;
        if self.shape.jobs > 0 || self.shape.planless > 0 || (!busy && rng.gen_bool(0.2)) {
            return;
        }
        let (path, meta) = self.arrays[rng.gen_range(0..self.arrays.len())].clone();
        let (writers, resizes) = if busy { (2..=4, 2..=3) } else { (1..=3, 1..=3) };
        for n in 0..rng.gen_range(writers) {
            let rng = &mut self.rngs.work;
            let resizes = (0..rng.gen_range(resizes.clone()))
                .map(|i| {
                    // Busy: a shrink, then a grow past the original shape.
                    let shape = match (busy, i) {
                        (true, 0) => meta.shape.iter().map(|&n| rng.gen_range(1..=n)).collect(),
                        (true, 1) => meta
                            .shape
                            .iter()
                            .map(|&n| rng.gen_range(n..=2 * n))
                            .collect(),
                        _ => workload::resized_shape(rng, &meta),
                    };
                    (path.clone(), shape)
                })
                .collect();
            let (mode, seed_loop) = match busy && rng.gen_bool(0.5) {
                true => (
                    CommitMode::Rebase {
                        solver: Solver::Theirs,
                    },
                    false,
                ),
                false => workload::mode(rng),
            };
            let script = WriterScript {
                repo: workload::repo(),
                branch: main(),
                tag: format!("r{n}"),
                deletes: Vec::new(),
                creates: Vec::new(),
                resizes,
                writes: Vec::new(),
                mode,
                seed_loop,
                manual_retry: rng.gen_bool(0.3),
            };
            // Mostly within a wave of writers, so that they race.
            let at = if !waves.is_empty() && rng.gen_bool(0.8) {
                waves[rng.gen_range(0..waves.len())] + rng.gen_range(0..30)
            } else {
                rng.gen_range(self.now..end)
            };
            let seed = rng.gen();
            let index = self.clients.len() as u32;
            let w = Writer::new(client_id(index), self.client_nodes(), script, seed)
                .with_bugs(crate::bug::client_bugs(self.opts.bug));
            self.spawn(Client::Writer(Box::new(w)), at);
        }
    }

    fn writer_script(&mut self, tag: String) -> WriterScript {
        let rng = &mut self.rngs.work;
        let mut writes = Vec::new();
        for _ in 0..rng.gen_range(1..=2) {
            let (path, meta) = &self.arrays[rng.gen_range(0..self.arrays.len())];
            let aligned = rng.gen_bool(0.5);
            let region = workload::region(rng, meta, aligned, self.shape.hot);
            let bytes = workload::data(meta, &region, rng.gen());
            let data = ArrayData {
                dtype: meta.dtype,
                shape: region.shape(),
                bytes,
            };
            writes.push((path.clone(), region, data));
        }
        let script = drawn_mode(rng, tag);
        WriterScript {
            writes,
            manual_retry: rng.gen_bool(0.3),
            ..script
        }
    }

    fn spawn_job(&mut self, n: usize, at: u64) {
        let rng = &mut self.rngs.work;
        let mut create = BTreeMap::new();
        let (path, meta) = if rng.gen_bool(0.3) {
            // A job that creates the array it writes, landing with its
            // commit; two jobs may create the same path.
            let path = ArrayPath::new(format!("/c{}", n % 2)).expect("valid path");
            let meta = workload::array(rng);
            create.insert(path.clone(), meta.clone());
            (path, meta)
        } else {
            self.arrays[rng.gen_range(0..self.arrays.len())].clone()
        };
        let mut plan = workload::plan(rng, &path, &meta);
        if rng.gen_bool(0.1) {
            // An invalid plan (two tasks sharing chunks) must be refused.
            let task = plan[rng.gen_range(0..plan.len())].clone();
            plan.push(task);
        }
        let (lo, hi) = self.shape.lease_ms;
        let lease_ms = rng.gen_range(lo..=hi);
        let mode = if rng.gen_bool(0.4) {
            CommitMode::Strict
        } else {
            CommitMode::Rebase {
                solver: Solver::Fail,
            }
        };
        let spec = JobSpec {
            repo: workload::repo(),
            branch: main(),
            plan,
            lease_ms,
            message: format!("job{n}"),
            mode,
            source: None,
            create,
        };
        let index = self.clients.len() as u32;
        let job = Job::new(client_id(index), self.client_nodes(), spec);
        let client = Client::Job {
            job: Box::new(job),
            number: n,
            staffed: false,
        };
        self.spawn(client, at);
        self.jobs.push(JobInfo {
            index,
            lease_ms,
            open: None,
            workers: Vec::new(),
        });
    }

    /// Starts the contributors of a planless session that just opened.
    fn staff_planless(&mut self, number: usize) {
        let Some((session, base, arrays)) = self.planless[number].open.clone() else {
            return;
        };
        // Hot regions on half the runs: overlaps (refusals) are common.
        let hot = self.rngs.work.gen_bool(0.5);
        let paths: Vec<ArrayPath> = arrays.keys().cloned().collect();
        if paths.is_empty() {
            // Opened on a base without arrays (the setup did not land):
            // nothing to contribute; commit the empty session.
            return self.maybe_commit_planless(number);
        }
        for _ in 0..self.rngs.work.gen_range(2..=4) {
            let rng = &mut self.rngs.work;
            let mut writes = Vec::new();
            for _ in 0..rng.gen_range(1..=2) {
                let path = &paths[rng.gen_range(0..paths.len())];
                if writes.iter().any(|(p, _, _)| p == path) {
                    continue;
                }
                let meta = &arrays[path];
                let region = workload::region(rng, meta, true, hot);
                let data = ArrayData {
                    dtype: meta.dtype,
                    shape: region.shape(),
                    bytes: workload::data(meta, &region, rng.gen()),
                };
                writes.push((path.clone(), region, data));
            }
            let index = self.clients.len() as u32;
            let at = self.now + rng.gen_range(0..300);
            let seed = rng.gen();
            let worker = WorkerId(u64::from(index) + 1);
            let caller = self.caller(index);
            let to = ContributeTo {
                repo: workload::repo(),
                session,
                worker,
                base,
                arrays: arrays.clone(),
            };
            let model_writes = writes
                .iter()
                .map(|(path, region, data)| crate::model::Write {
                    path: path.clone(),
                    region: region.clone(),
                    data: data.bytes.clone(),
                })
                .collect();
            let c = ContributeTask::new(caller, seed, to, writes, History::new());
            let client = Client::Contributor {
                contributor: Box::new(c),
                writes: model_writes,
                worker,
                number,
            };
            self.spawn(client, at);
            self.planless[number].contributors.push(index);
        }
    }

    /// Commits a planless session once every contributor is done.
    fn maybe_commit_planless(&mut self, number: usize) {
        let info = &self.planless[number];
        let all_done = info
            .contributors
            .iter()
            .all(|&c| self.clients[c as usize].done);
        let (Some((session, _, _)), None, true) = (&info.open, info.commit, all_done) else {
            return;
        };
        let commit = Command::CommitSession {
            session: *session,
            message: info.message.clone(),
            author: "planless".into(),
            mode: info.mode,
        };
        let role = Role::CommitPlanless(number);
        let index = self.spawn_call(role, Request::Command(commit), self.now);
        self.planless[number].commit = Some(index);
    }

    /// Starts the workers of a job whose session just opened.
    pub(crate) fn staff(&mut self, index: u32) {
        let Client::Job {
            job,
            number,
            staffed,
        } = &mut self.clients[index as usize].client
        else {
            return;
        };
        let (Some(session), Some(arrays), false) = (job.session(), job.arrays(), *staffed) else {
            return;
        };
        *staffed = true;
        let number = *number;
        self.jobs[number].open = Some((session, arrays.clone()));
        let count = self.rngs.work.gen_range(2..=4);
        for _ in 0..count {
            self.spawn_worker(number, self.now);
        }
    }

    fn spawn_worker(&mut self, number: usize, at: u64) {
        let Some((session, arrays)) = self.jobs[number].open.clone() else {
            return;
        };
        let index = self.clients.len() as u32;
        let worker_id = WorkerId(u64::from(index) + 1);
        let seed = self.rngs.work.gen();
        let worker = Worker::new(
            worker_id,
            client_id(index),
            self.client_nodes(),
            session,
            workload::repo(),
            source(),
            seed,
        )
        .with_arrays(arrays)
        .with_lease_ms(self.jobs[number].lease_ms);
        let client = Client::Worker {
            worker: Box::new(worker),
            number,
        };
        self.spawn(client, at);
        self.jobs[number].workers.push(index);
    }

    /// Replaces a crashed cooperative worker, as a job scheduler would.
    pub(crate) fn respawn_worker(&mut self, index: u32) {
        if let Client::Worker { number, .. } = self.clients[index as usize].client {
            let at = self.now + self.rngs.work.gen_range(50..1_000);
            self.spawn_worker(number, at);
        }
    }
}

/// An empty script tagged `tag` on `main` in a drawn mode, retrying once
/// after a conflict.
fn retrying_script(rng: &mut rand::rngs::SmallRng, tag: &str) -> WriterScript {
    WriterScript {
        manual_retry: true,
        ..drawn_mode(rng, tag.into())
    }
}

/// An empty script tagged `tag` on `main` in a drawn mode.
fn drawn_mode(rng: &mut rand::rngs::SmallRng, tag: String) -> WriterScript {
    let (mode, seed_loop) = workload::mode(rng);
    WriterScript {
        repo: workload::repo(),
        branch: main(),
        tag,
        deletes: Vec::new(),
        creates: Vec::new(),
        resizes: Vec::new(),
        writes: Vec::new(),
        mode,
        seed_loop,
        manual_retry: false,
    }
}

pub(crate) fn main() -> BranchName {
    BranchName::new("main").expect("valid")
}

/// Worker data: deterministic, and different per worker, so a zombie's
/// late completion would show in the data if it ever landed.
fn source() -> SourceFn {
    Arc::new(
        |path: &ArrayPath, meta: &ArrayMeta, region: &Region, worker: WorkerId| {
            Ok(ArrayData {
                dtype: meta.dtype,
                shape: region.shape(),
                bytes: source_data(path, meta, region, worker),
            })
        },
    )
}

/// The bytes worker `worker` writes into `region` of `path`.
pub(crate) fn source_data(
    path: &ArrayPath,
    meta: &ArrayMeta,
    region: &Region,
    worker: WorkerId,
) -> Vec<u8> {
    let salt = worker.0 * 1_000 + path.as_str().len() as u64;
    workload::data(meta, region, salt)
}
