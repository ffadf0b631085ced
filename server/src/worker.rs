//! A worker process (`floe worker`): one actor per slot. A free slot asks
//! the cluster for its open cooperative sessions (`Query::OpenSessions`),
//! joins the one [`pick_session`] names, and runs a worker machine of the
//! client core on it until that session has nothing left for it; then it
//! looks again, after a pause when there was nothing to do. The machine
//! decides every claim, renewal and completion (and its fencing epoch);
//! the slot only drives it, reads the job's source for it, and counts.
//!
//! Stopping (SIGTERM, Ctrl-C) drops the task in hand: its lease lapses and
//! the task is granted again under a new epoch, so a completion of this
//! process can never land after another worker's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rand::Rng;

use floe_protocol::{
    ArrayMeta, ArrayPath, ClientId, Coordinator, FloeError, OpenSession, Query, Region, Reply,
    Request, SessionId, WorkerId,
};
use floe_worker::coop::{leave_session_after, pick_session};
use floe_worker::machine::{SourceFn, Worker, WorkerReport, WorkerStatus};
use floe_worker::source::{open_source, JobSource};
use floe_worker::{Driven, Store};

use crate::client::NetCoordinator;

/// What a worker process needs.
pub struct WorkerOptions {
    /// The coordinators' client endpoints, by node id.
    pub endpoints: BTreeMap<u64, SocketAddr>,
    /// The cluster token.
    pub token: String,
    /// Where chunk objects go.
    pub store: Store,
    /// Tasks worked on at once.
    pub slots: usize,
    /// This worker's name, in its logs.
    pub name: String,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Pause between looks when there was nothing to do.
    pub idle: Duration,
    /// Where to append this worker's task operations as a history (see
    /// [`TaskHistory`]), if anywhere.
    pub history: Option<std::path::PathBuf>,
}

/// A worker's claims and completions as history lines in Jepsen's format
/// (`floe-history`), for `floe chaos` to merge with its own: a `claim`
/// (`{"session", "worker"}` -> ok `{"task", "epoch"}`) when a grant
/// arrives, a `complete` (`{"session", "task", "epoch"}`) when it is
/// sent, and its outcome when answered. Times are wall-clock ns, the
/// clock the harness writes with. A grant is written when the worker
/// learns it (no earlier than the coordinator granted it) and a
/// completion before it is sent, so the epoch checker's order between
/// them is never wrongly strict.
#[derive(Clone)]
pub struct TaskHistory(Arc<std::sync::Mutex<std::fs::File>>);

impl TaskHistory {
    /// Appends to `path` (created if missing).
    pub fn open(path: &std::path::Path) -> std::io::Result<TaskHistory> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(TaskHistory(Arc::new(std::sync::Mutex::new(file))))
    }

    fn line(&self, process: &str, kind: &str, f: &str, value: serde_json::Value) {
        use std::io::Write;
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let line = serde_json::json!({
            "process": process, "type": kind, "f": f, "value": value, "time": time,
        });
        if let Ok(mut file) = self.0.lock() {
            // One write per line: lines of several slots never interleave.
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// Why a worker process cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The metrics address cannot be bound.
    #[error("cannot serve metrics on {addr}: {error}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// Zero slots.
    #[error("--slots must be at least 1")]
    NoSlots,
    /// The history file cannot be opened.
    #[error("cannot open the history file {}: {error}", path.display())]
    History {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// Counters of one worker process (all slots), served at `/metrics`.
#[derive(Clone, Default)]
struct WorkerMetrics {
    claimed: Counter,
    completed: Counter,
    refused: Counter,
    abandoned: Counter,
    renewals: Counter,
    chunks: Counter,
    bytes: Counter,
    sessions: Counter,
}

impl WorkerMetrics {
    fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("floe_worker");
        let all = [
            (
                "tasks_claimed",
                "Tasks granted to this worker",
                &self.claimed,
            ),
            ("tasks_completed", "Completions accepted", &self.completed),
            (
                "completions_refused",
                "Completions refused (stale epoch, closed session)",
                &self.refused,
            ),
            (
                "tasks_abandoned",
                "Tasks dropped (lease lost, puts failing)",
                &self.abandoned,
            ),
            ("lease_renewals", "Leases renewed", &self.renewals),
            (
                "chunks_written",
                "Chunk objects of accepted tasks",
                &self.chunks,
            ),
            (
                "bytes_written",
                "Array bytes of accepted tasks (rate() is the write throughput)",
                &self.bytes,
            ),
            ("sessions_joined", "Sessions a slot joined", &self.sessions),
        ];
        for (name, help, counter) in all {
            r.register(name, help, counter.clone());
        }
        r
    }
}

/// How much of a worker machine's report the counters (and the history)
/// already hold.
#[derive(Default)]
struct Seen {
    grants: usize,
    sent: usize,
    answered: usize,
    abandoned: usize,
    renewals: u32,
}

/// Where a slot records its task operations.
struct Recorder {
    history: Option<TaskHistory>,
    slot: String,
    session: String,
    /// The machine's client id (a fresh one after `SessionExpired` is not
    /// followed: the sequence number still names the request).
    client: u64,
}

impl Recorder {
    fn line(&self, kind: &str, f: &str, value: serde_json::Value) {
        if let Some(h) = &self.history {
            h.line(&self.slot, kind, f, value);
        }
    }
}

impl Seen {
    /// Counts what the worker's report gained since the last look.
    /// Completions come first: a grant that rode on a completion's answer
    /// follows it.
    fn count(&mut self, worker: &Worker, m: &WorkerMetrics, rec: &Recorder) {
        let report = worker.report();
        let session = &rec.session;
        while let Some(c) = report.completions.get(self.sent) {
            let value = serde_json::json!({
                "session": session, "task": c.task.0, "epoch": c.epoch,
                "client": rec.client, "seq": c.seq,
            });
            rec.line("invoke", "complete", value);
            self.sent += 1;
        }
        self.answer(report, worker.arrays(), m, rec);
        for (task, epoch) in &report.grants[self.grants..] {
            let ask =
                serde_json::json!({"session": session, "worker": rec.slot, "client": rec.client});
            rec.line("invoke", "claim", ask);
            rec.line(
                "ok",
                "claim",
                serde_json::json!({"task": task.0, "epoch": epoch}),
            );
        }
        m.claimed.inc_by((report.grants.len() - self.grants) as u64);
        self.grants = report.grants.len();
        m.abandoned
            .inc_by((report.abandoned.len() - self.abandoned) as u64);
        self.abandoned = report.abandoned.len();
        m.renewals
            .inc_by(u64::from(report.renewals.saturating_sub(self.renewals)));
        self.renewals = report.renewals;
    }

    /// Completions are answered one at a time, in order; `arrays` give
    /// the element size of each completion's array.
    fn answer(
        &mut self,
        report: &WorkerReport,
        arrays: Option<&BTreeMap<ArrayPath, ArrayMeta>>,
        m: &WorkerMetrics,
        rec: &Recorder,
    ) {
        while let Some(c) = report.completions.get(self.answered) {
            let Some(outcome) = &c.outcome else { break };
            match outcome {
                Ok(r) if r.accepted().is_some() => {
                    m.completed.inc();
                    m.chunks.inc_by(c.chunks);
                    let item = arrays
                        .and_then(|a| a.get(&c.array))
                        .map_or(0, |meta| meta.dtype.size() as u64);
                    m.bytes.inc_by(c.region.elements() * item);
                    rec.line("ok", "complete", serde_json::json!({}));
                }
                refused => {
                    m.refused.inc();
                    let error = match refused {
                        Err(e) => e.to_string(),
                        Ok(other) => format!("unexpected answer {other:?}"),
                    };
                    // Refused for good, or given up on: either way the
                    // coordinator may not have seen it, so it is `info`
                    // unless it said no.
                    let kind = match refused {
                        Err(e) if e.had_no_effect() => "fail",
                        _ => "info",
                    };
                    rec.line(kind, "complete", serde_json::json!({"error": error}));
                }
            }
            self.answered += 1;
        }
    }
}

/// Runs a worker process until SIGTERM or Ctrl-C.
pub fn run(opts: WorkerOptions) -> Result<(), WorkerError> {
    if opts.slots == 0 {
        return Err(WorkerError::NoSlots);
    }
    let system = System::new();
    system.block_on(start(opts))?;
    system.run().ok();
    Ok(())
}

async fn start(opts: WorkerOptions) -> Result<(), WorkerError> {
    let metrics = WorkerMetrics::default();
    if let Some(addr) = opts.metrics {
        crate::metrics::serve_registry(addr, Arc::new(metrics.registry()))
            .await
            .map_err(|error| WorkerError::Metrics { addr, error })?;
    }
    let coord = Arc::new(NetCoordinator::new(opts.endpoints, opts.token));
    let history = opts
        .history
        .as_deref()
        .map(TaskHistory::open)
        .transpose()
        .map_err(|error| WorkerError::History {
            path: opts.history.clone().unwrap_or_default(),
            error,
        })?;
    for index in 0..opts.slots {
        let slot = Slot {
            name: format!("{}/{index}", opts.name),
            coord: coord.clone(),
            store: opts.store.clone(),
            idle: opts.idle,
            metrics: metrics.clone(),
            skip: BTreeSet::new(),
            busy: false,
            history: history.clone(),
        };
        slot.start();
    }
    actix::spawn(async {
        crate::serve::shutdown_signal().await;
        tracing::info!("shutting down; tasks in hand are dropped and their leases lapse");
        System::current().stop();
    });
    tracing::info!(name = %opts.name, slots = opts.slots, "worker started");
    Ok(())
}

/// One slot: at most one worker machine at a time.
struct Slot {
    name: String,
    coord: Arc<NetCoordinator>,
    store: Store,
    idle: Duration,
    metrics: WorkerMetrics,
    /// Sessions whose source this slot could not read.
    skip: BTreeSet<SessionId>,
    busy: bool,
    history: Option<TaskHistory>,
}

/// Look for work.
#[derive(Message)]
#[rtype(result = "()")]
struct Look;

impl Actor for Slot {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Look);
    }
}

impl Handler<Look> for Slot {
    type Result = ();

    fn handle(&mut self, _: Look, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let coord = self.coord.clone();
        let asked = async move {
            floe_worker::client::call(&coord, Request::Query(Query::OpenSessions)).await
        };
        ctx.spawn(
            asked
                .into_actor(self)
                .map(|answer, slot, ctx| slot.on_sessions(answer, ctx)),
        );
    }
}

impl Slot {
    fn rest(&mut self, ctx: &mut Context<Self>) {
        self.busy = false;
        ctx.notify_later(Look, self.idle);
    }

    fn on_sessions(&mut self, answer: Result<Reply, FloeError>, ctx: &mut Context<Self>) {
        let open = match answer {
            Ok(Reply::OpenSessions(open)) => open,
            Ok(other) => {
                tracing::warn!(slot = %self.name, ?other, "unexpected answer to OpenSessions");
                return self.rest(ctx);
            }
            Err(e) => {
                tracing::warn!(slot = %self.name, error = %e, "cannot list open sessions");
                return self.rest(ctx);
            }
        };
        let Some(pick) = pick_session(&open, &self.skip).cloned() else {
            return self.rest(ctx);
        };
        match open_source(&pick.source) {
            Ok(source) => self.join(pick, source, ctx),
            Err(e) => {
                tracing::warn!(
                    slot = %self.name,
                    session = %pick.session,
                    source = %pick.source,
                    error = %e,
                    "cannot read the job's source; leaving its session to other workers"
                );
                self.skip.insert(pick.session);
                self.rest(ctx);
            }
        }
    }

    /// Runs a worker machine on session `pick`, reading `source`.
    fn join(&mut self, pick: OpenSession, source: Arc<dyn JobSource>, ctx: &mut Context<Self>) {
        tracing::info!(slot = %self.name, session = %pick.session, source = %pick.source, "joining");
        self.metrics.sessions.inc();
        let mut rng = rand::thread_rng();
        let client = ClientId(rng.gen());
        let machine = Worker::new(
            WorkerId(rng.gen()),
            client,
            self.coord.nodes(),
            pick.session,
            pick.repo.clone(),
            source_of(source),
            rng.gen(),
        );
        let mut driven = Driven::new(machine, self.coord.clone(), Some(self.store.clone()));
        let metrics = self.metrics.clone();
        let rec = Recorder {
            history: self.history.clone(),
            slot: self.name.clone(),
            session: pick.session.to_string(),
            client: client.0,
        };
        let work = async move {
            let mut seen = Seen::default();
            let ran = driven
                .run_until(|m| {
                    seen.count(m, &metrics, &rec);
                    false
                })
                .await;
            let machine = driven.into_machine();
            seen.count(&machine, &metrics, &rec);
            (machine, ran)
        };
        let session = pick.session;
        ctx.spawn(
            work.into_actor(self)
                .map(move |(machine, ran), slot, ctx| slot.left(session, &machine, ran, ctx)),
        );
    }

    /// The machine of `session` ended: look again at once, unless it
    /// failed (then pause, and leave a session whose data is bad).
    fn left(
        &mut self,
        session: SessionId,
        machine: &Worker,
        ran: Result<(), FloeError>,
        ctx: &mut Context<Self>,
    ) {
        let status = ran.err().map(WorkerStatus::Failed);
        match status.as_ref().unwrap_or(machine.status()) {
            WorkerStatus::Failed(e) => {
                tracing::warn!(slot = %self.name, %session, error = %e, "left the session");
                if leave_session_after(e) {
                    self.skip.insert(session);
                }
                self.rest(ctx)
            }
            _ => {
                tracing::info!(slot = %self.name, %session, "nothing left to claim");
                self.busy = false;
                ctx.notify(Look);
            }
        }
    }
}

/// The data of a task's region, read from the job's source (which
/// checks that it fits the array).
fn source_of(source: Arc<dyn JobSource>) -> SourceFn {
    Arc::new(
        move |path: &ArrayPath, meta: &ArrayMeta, region: &Region, _: WorkerId| {
            source.read(path, meta, region)
        },
    ) as Arc<_>
}
