//! The simulated world: a clock, one event queue, the coordinators, the
//! clients, the network and the object store, all driven from one seeded
//! RNG (split into per-component RNGs so that, e.g., drawing one more
//! network delay does not shift every later fault).

mod branches;
mod events;
mod faults;
mod finish;
mod members;
mod spawn;

use std::collections::BTreeMap;

use floe_coordinator::node::NodeConfig;
use floe_coordinator::Config;
use floe_protocol::{ClientId, Envelope, Outcome};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::bug::Bug;
use crate::client::{Client, Input};
use crate::cluster::Cluster;
use crate::faults::{FaultCounts, FaultPlan};
use crate::net::Network;
use crate::oracle::{DigestBook, Failure};
use crate::queue::Queue;
use crate::trace::Trace;
use crate::workload::Shape;
use crate::{SimOptions, Tweaks};

/// Milliseconds between node ticks.
pub const TICK_MS: u64 = 10;
/// The bound on the liveness phase: everything must finish within it.
pub const LIVENESS_MS: u64 = 60_000;
/// Simulated time at which a run starts.
const START_MS: u64 = 1_000;

/// Something scheduled to happen.
pub(crate) enum Ev {
    /// Every running node ticks.
    Tick,
    /// A raft message arrives.
    Raft { from: u64, to: u64, bytes: Vec<u8> },
    /// A client request arrives at a node.
    ToNode {
        client: u32,
        to: u64,
        env: Box<Envelope>,
    },
    /// A node's reply arrives at a client.
    ToClient {
        node: u64,
        client: u32,
        seq: u64,
        outcome: Box<Outcome>,
    },
    /// An fsync finished.
    Persisted { node: u64, life: u32, token: u64 },
    /// A coordinator crashes (the next crash is scheduled then).
    Crash,
    /// A crashed coordinator restarts.
    Restart(u64),
    /// A network fault starts.
    NetFault,
    /// The network heals.
    NetHeal,
    /// A cooperative worker crashes or pauses.
    WorkerFault,
    /// A paused client wakes up.
    Wake(u32),
    /// A client starts.
    Start(u32),
    /// A put reaches the store.
    Put {
        client: u32,
        token: u64,
        key: String,
        bytes: Vec<u8>,
        ok: bool,
        written: bool,
    },
    /// A get reaches the store.
    Get {
        client: u32,
        token: u64,
        key: String,
        ok: bool,
    },
    /// Any other client input (timers).
    Input { client: u32, input: Input },
    /// The safety phase ends: faults stop, the network heals.
    EndSafety,
    /// Start or drive the pending membership change.
    Member,
    /// A removed node leaves the simulation.
    Decommission(u64),
}

/// How a client is doing.
pub(crate) enum Life {
    /// Running.
    Live,
    /// Paused: inputs are held until it wakes.
    Paused(Vec<Input>),
    /// Crashed for good: inputs are dropped.
    Crashed,
}

/// A client and its bookkeeping.
pub(crate) struct Slot {
    pub(crate) client: Client,
    pub(crate) life: Life,
    pub(crate) done: bool,
    /// True once started (only started clients are crashed or paused).
    pub(crate) started: bool,
}

/// Per-component RNGs, all derived from the seed.
pub(crate) struct Rngs {
    pub(crate) net: SmallRng,
    pub(crate) fault: SmallRng,
    pub(crate) store: SmallRng,
    pub(crate) work: SmallRng,
    pub(crate) member: SmallRng,
    pub(crate) branch: SmallRng,
}

/// One seed's world.
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) opts: SimOptions,
    pub(crate) now: u64,
    pub(crate) queue: Queue<Ev>,
    pub(crate) rngs: Rngs,
    pub(crate) plan: FaultPlan,
    pub(crate) shape: Shape,
    pub(crate) calm: bool,
    pub(crate) net: Network,
    pub(crate) counts: FaultCounts,
    pub(crate) trace: Trace,
    pub(crate) cluster: Cluster,
    pub(crate) clients: Vec<Slot>,
    pub(crate) store: BTreeMap<String, Vec<u8>>,
    pub(crate) digests: DigestBook,
    pub(crate) failure: Option<Failure>,
    pub(crate) finished: bool,
    pub(crate) deadline: u64,
    pub(crate) arrays: Vec<(floe_protocol::ArrayPath, floe_protocol::ArrayMeta)>,
    pub(crate) jobs: Vec<spawn::JobInfo>,
    /// Planless runs: the lead's index and its contributors' indexes.
    pub(crate) planless: Vec<spawn::PlanlessInfo>,
    pub(crate) tweaks: Tweaks,
    /// When the safety phase ends.
    pub(crate) safety_end: u64,
    /// True when the violation was found by the end-of-run checks.
    pub(crate) found_at_end: bool,
    /// Membership changes: the plan and its progress.
    pub(crate) members: members::Members,
    /// Reads and acknowledgements with their times.
    pub(crate) timeline: crate::obs::Timeline,
    /// The writer deleting an array to be re-created, and the array.
    pub(crate) deleter: Option<(u32, floe_protocol::ArrayPath)>,
    /// The setup writer, once started.
    pub(crate) setup: Option<u32>,
    /// How often the repo creation or the setup writer was rerun after
    /// its session expired.
    pub(crate) setup_reruns: u8,
    /// Client ids taken after `SessionExpired`, by sim index.
    pub(crate) renewed_ids: BTreeMap<ClientId, u32>,
    /// `SessionExpired` answers delivered to clients.
    pub(crate) expired_replies: u64,
    /// The branches created so far (`main` first).
    pub(crate) branches: Vec<floe_protocol::BranchName>,
    /// The tags the workload creates (names taken as taggers start).
    pub(crate) tags: Vec<floe_protocol::TagName>,
}

impl World {
    /// Builds the world of `seed`: draws the fault plan, the shape and the
    /// arrays, boots the cluster and schedules the setup client.
    pub(crate) fn new(seed: u64, opts: &SimOptions, tweaks: Tweaks) -> Self {
        let mut master = SmallRng::seed_from_u64(seed);
        let mut rngs = Rngs {
            net: SmallRng::seed_from_u64(master.gen()),
            fault: SmallRng::seed_from_u64(master.gen()),
            store: SmallRng::seed_from_u64(master.gen()),
            work: SmallRng::seed_from_u64(master.gen()),
            member: SmallRng::seed_from_u64(0),
            branch: SmallRng::seed_from_u64(0),
        };
        let mut plan = FaultPlan::draw(&mut rngs.fault);
        let mut shape = Shape::draw(&mut rngs.work, opts.bug);
        shape.adjust(&mut plan, &mut rngs.fault);
        let arrays = crate::workload::arrays(&mut rngs.work);
        let cluster = boot(opts, &shape, master.gen());
        let safety_end = START_MS + shape.safety_ms;
        // Drawn last, from its own stream: the draws above stay as they were.
        rngs.member = SmallRng::seed_from_u64(master.gen());
        rngs.branch = SmallRng::seed_from_u64(master.gen());
        shape.draw_branches(&mut rngs.branch, opts.bug);
        let members =
            members::Members::draw(&mut rngs.member, cluster.len() as u64, START_MS, safety_end);
        let mut w = World {
            seed,
            opts: opts.clone(),
            now: START_MS,
            queue: Queue::default(),
            rngs,
            plan,
            shape,
            calm: false,
            net: Network::default(),
            counts: FaultCounts::default(),
            trace: Trace::new(opts.trace),
            cluster,
            clients: Vec::new(),
            store: BTreeMap::new(),
            digests: DigestBook::default(),
            failure: None,
            finished: false,
            deadline: safety_end + tweaks.liveness_ms.unwrap_or(LIVENESS_MS),
            arrays,
            jobs: Vec::new(),
            planless: Vec::new(),
            tweaks,
            safety_end,
            found_at_end: false,
            members,
            timeline: crate::obs::Timeline::default(),
            deleter: None,
            setup: None,
            setup_reruns: 0,
            renewed_ids: BTreeMap::new(),
            expired_replies: 0,
            branches: vec![spawn::main()],
            tags: Vec::new(),
        };
        if let Some(id) = w.tweaks.keep_down {
            w.cluster.crash(id);
        }
        w.describe();
        w.queue.push(START_MS, Ev::Tick);
        w.queue.push(safety_end, Ev::EndSafety);
        w.schedule_faults();
        w.schedule_members();
        w.spawn_setup();
        w
    }

    /// Runs until a violation, the end of the liveness phase, or its bound.
    pub(crate) fn run(&mut self) {
        while self.failure.is_none() && !self.finished {
            let Some((time, ev)) = self.queue.pop() else {
                break;
            };
            if time > self.deadline {
                break;
            }
            self.now = time;
            self.handle(ev);
        }
    }

    /// Records a violation (the first one wins).
    pub(crate) fn fail(&mut self, failure: Failure) {
        if self.failure.is_none() {
            self.trace.note(self.now, "VIOLATION", format!("{failure}"));
            self.failure = Some(failure);
        }
    }

    /// The trace lines that best explain the violation: the last events
    /// before it, or, for one found by the end-of-run checks, the last
    /// client-level events.
    pub(crate) fn explain(&self) -> Vec<String> {
        if !self.found_at_end {
            return self.trace.tail();
        }
        let mut lines =
            vec!["(found by the end-of-run checks; last client-level events:)".to_string()];
        lines.extend(self.trace.client_tail());
        lines
    }

    /// Simulated milliseconds since the start.
    pub(crate) fn elapsed(&self) -> u64 {
        self.now - START_MS
    }

    /// The coordinator ids clients send to: every id that may ever exist
    /// in this seed (joiners included; a request to a node that is not
    /// there times out and moves on, as with a crashed one).
    pub(crate) fn client_nodes(&self) -> Vec<u64> {
        self.members.all_ids.clone()
    }

    /// The sim index of a client id.
    pub(crate) fn index_of(&self, id: ClientId) -> Option<u32> {
        if let Some(&index) = self.renewed_ids.get(&id) {
            return Some(index);
        }
        let i = id.0.checked_sub(1)?;
        (i < self.clients.len() as u64).then_some(i as u32)
    }

    fn describe(&mut self) {
        let text = format!(
            "seed {} nodes {} bug {:?} plan {:?} shape {:?} arrays {:?} members {:?}",
            self.seed,
            self.opts.nodes,
            self.opts.bug.map(Bug::name),
            self.plan,
            self.shape,
            self.arrays,
            self.members
        );
        self.trace.note(self.now, "start", text);
    }
}

/// The id every client uses: its sim index plus one.
pub(crate) fn client_id(index: u32) -> ClientId {
    ClientId(u64::from(index) + 1)
}

fn boot(opts: &SimOptions, shape: &Shape, seed: u64) -> Cluster {
    let peers: Vec<u64> = (1..=opts.nodes.clamp(1, 7) as u64).collect();
    let configs = peers
        .iter()
        .map(|&id| {
            let mut cfg = NodeConfig::new(id, peers.clone(), seed);
            cfg.snapshot_every = shape.snapshot_every;
            cfg.digest_every = shape.digest_every;
            cfg.bugs = Bug::node_bugs(opts.bug);
            cfg
        })
        .collect();
    let config = Config {
        bugs: Bug::state_bugs(opts.bug),
        client_expiry_ms: shape.client_expiry_ms,
        ..Config::default()
    };
    Cluster::boot(configs, config).expect("a fresh cluster boots")
}
