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
use floe_worker::coop::pick_session;
use floe_worker::machine::{SourceFn, Worker, WorkerReport, WorkerStatus};
use floe_worker::source::{open_source, NpySource};
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

/// How much of a worker machine's report the counters already hold.
#[derive(Default)]
struct Seen {
    grants: usize,
    answered: usize,
    abandoned: usize,
    renewals: u32,
}

impl Seen {
    /// Counts what the report gained since the last look; `item` is the
    /// source's element size in bytes.
    fn count(&mut self, report: &WorkerReport, item: u64, m: &WorkerMetrics) {
        m.claimed.inc_by((report.grants.len() - self.grants) as u64);
        self.grants = report.grants.len();
        m.abandoned
            .inc_by((report.abandoned.len() - self.abandoned) as u64);
        self.abandoned = report.abandoned.len();
        m.renewals
            .inc_by(u64::from(report.renewals.saturating_sub(self.renewals)));
        self.renewals = report.renewals;
        // Completions are answered one at a time, in order.
        while let Some(c) = report.completions.get(self.answered) {
            let Some(outcome) = &c.outcome else { break };
            if outcome.as_ref().is_ok_and(|r| r.accepted().is_some()) {
                m.completed.inc();
                m.chunks.inc_by(c.chunks);
                m.bytes.inc_by(c.region.elements() * item);
            } else {
                m.refused.inc();
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
    for index in 0..opts.slots {
        let slot = Slot {
            name: format!("{}/{index}", opts.name),
            coord: coord.clone(),
            store: opts.store.clone(),
            idle: opts.idle,
            metrics: metrics.clone(),
            skip: BTreeSet::new(),
            busy: false,
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
            Ok(npy) => self.join(pick, npy, ctx),
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

    /// Runs a worker machine on session `pick`, reading `npy`.
    fn join(&mut self, pick: OpenSession, npy: Arc<dyn NpySource>, ctx: &mut Context<Self>) {
        tracing::info!(slot = %self.name, session = %pick.session, source = %pick.source, "joining");
        self.metrics.sessions.inc();
        let mut rng = rand::thread_rng();
        let item = npy.header().dtype.size() as u64;
        let machine = Worker::new(
            WorkerId(rng.gen()),
            ClientId(rng.gen()),
            self.coord.nodes(),
            pick.session,
            pick.repo.clone(),
            source_of(npy),
            rng.gen(),
        );
        let mut driven = Driven::new(machine, self.coord.clone(), Some(self.store.clone()));
        let metrics = self.metrics.clone();
        let work = async move {
            let mut seen = Seen::default();
            let ran = driven
                .run_until(|m| {
                    seen.count(m.report(), item, &metrics);
                    false
                })
                .await;
            let machine = driven.into_machine();
            seen.count(machine.report(), item, &metrics);
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
                if e.is_invalid_input() {
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

/// The data of a task's region, read from the job's `.npy` (which must
/// have the array's shape and dtype).
fn source_of(npy: Arc<dyn NpySource>) -> SourceFn {
    Arc::new(
        move |path: &ArrayPath, meta: &ArrayMeta, region: &Region, _: WorkerId| {
            npy.check_fits(path, meta)?;
            npy.read_region(region)
        },
    ) as Arc<_>
}
