//! Fault plans, drawn per seed (swarm testing): each fault kind is switched
//! on or off at random and given a random rate, so that across seeds every
//! combination — including "almost none" — gets explored.

use rand::Rng;
use std::collections::BTreeMap;
use std::fmt;

/// Rates and switches for one seed's safety phase.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    /// Probability a message is dropped.
    pub drop: f64,
    /// Probability a message is delivered twice.
    pub duplicate: f64,
    /// Extra delay drawn uniformly in `0..=max_extra_delay_ms` (reorders messages).
    pub max_extra_delay_ms: u64,
    /// Share of messages that get the extra delay.
    pub delay_share: f64,
    /// Mean milliseconds between network partitions/clogs (0 = none).
    pub partition_every_ms: u64,
    /// Mean milliseconds between coordinator crashes (0 = none).
    pub crash_every_ms: u64,
    /// Mean milliseconds between worker crashes/pauses (0 = none).
    pub worker_crash_every_ms: u64,
    /// Probability an object-store put fails.
    pub put_failure: f64,
    /// Probability an object-store get fails.
    pub get_failure: f64,
    /// Object-store latency drawn in `1..=max_store_latency_ms`.
    pub max_store_latency_ms: u64,
    /// Fsync latency drawn in `0..=max_fsync_ms`.
    pub max_fsync_ms: u64,
}

impl FaultPlan {
    /// No faults at all (the liveness phase).
    pub fn calm() -> Self {
        FaultPlan {
            drop: 0.0,
            duplicate: 0.0,
            max_extra_delay_ms: 0,
            delay_share: 0.0,
            partition_every_ms: 0,
            crash_every_ms: 0,
            worker_crash_every_ms: 0,
            put_failure: 0.0,
            get_failure: 0.0,
            max_store_latency_ms: 2,
            max_fsync_ms: 1,
        }
    }

    /// Draws a random plan: each fault on with probability 1/2.
    pub fn draw(rng: &mut impl Rng) -> Self {
        let mut on = |p: f64| rng.gen_bool(p);
        let (d, u, x, pa, c, w, pf) = (
            on(0.5),
            on(0.5),
            on(0.5),
            on(0.5),
            on(0.6),
            on(0.5),
            on(0.5),
        );
        FaultPlan {
            drop: if d { rng.gen_range(0.005..0.15) } else { 0.0 },
            duplicate: if u { rng.gen_range(0.005..0.10) } else { 0.0 },
            max_extra_delay_ms: if x { rng.gen_range(5..200) } else { 0 },
            delay_share: if x { rng.gen_range(0.05..0.5) } else { 0.0 },
            partition_every_ms: if pa { rng.gen_range(300..3000) } else { 0 },
            crash_every_ms: if c { rng.gen_range(300..3000) } else { 0 },
            worker_crash_every_ms: if w { rng.gen_range(300..3000) } else { 0 },
            put_failure: if pf { rng.gen_range(0.01..0.3) } else { 0.0 },
            get_failure: if pf { rng.gen_range(0.0..0.1) } else { 0.0 },
            max_store_latency_ms: rng.gen_range(1..30),
            max_fsync_ms: rng.gen_range(0..10),
        }
    }
}

/// The kinds of fault injected, for the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A message dropped.
    Drop,
    /// A message delivered twice.
    Duplicate,
    /// A message delayed beyond the base latency.
    Delay,
    /// Two nodes cut apart both ways.
    Partition,
    /// One direction of a link cut.
    OneWay,
    /// A node isolated from everyone (rolling clog).
    Clog,
    /// A coordinator crashed (unsynced writes lost).
    Crash,
    /// A coordinator restarted with its disk wiped.
    Wipe,
    /// A worker crashed or paused mid-task.
    WorkerCrash,
    /// An object-store put failed.
    PutFailure,
    /// An object-store get failed.
    GetFailure,
    /// A fresh node joined the configuration (conf change applied).
    AddNode,
    /// A voter left the configuration (conf change applied).
    RemoveNode,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FaultKind::Drop => "drop",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Delay => "delay",
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one-way",
            FaultKind::Clog => "clog",
            FaultKind::Crash => "crash",
            FaultKind::Wipe => "wipe",
            FaultKind::WorkerCrash => "worker-crash",
            FaultKind::PutFailure => "put-failure",
            FaultKind::GetFailure => "get-failure",
            FaultKind::AddNode => "add-node",
            FaultKind::RemoveNode => "remove-node",
        };
        f.write_str(s)
    }
}

/// Faults injected, by kind.
#[derive(Clone, Debug, Default)]
pub struct FaultCounts(pub BTreeMap<FaultKind, u64>);

impl FaultCounts {
    /// Counts one fault.
    pub fn add(&mut self, kind: FaultKind) {
        *self.0.entry(kind).or_default() += 1;
    }

    /// Adds another tally into this one.
    pub fn absorb(&mut self, other: &FaultCounts) {
        for (k, v) in &other.0 {
            *self.0.entry(*k).or_default() += v;
        }
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        f.write_str(&parts.join(", "))
    }
}
