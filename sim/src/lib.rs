//! floe-sim: a single-threaded, deterministic discrete-event simulation of a
//! floe cluster. It drives the real cores — raft-rs nodes with the real
//! state machine, writers and workers — through seeded interleavings and
//! faults, and checks the oracles of DESIGN.md section 4 against a
//! reference model.
//!
//! One seed is one run ([`run_seed`]): a safety phase with faults drawn for
//! that seed (swarm testing), then a liveness phase with every fault off,
//! then the end-of-run oracles. The same seed always gives the same trace
//! hash.
//!
//! Per seed ([`world`](crate) internals, [`workload`], [`faults`]):
//!
//! * **Cluster**: 3 or 5 `Node<State>`s (raft-rs + the real state machine)
//!   on [`MemStorage`](floe_coordinator::storage::MemStorage), ticking
//!   every 10 ms; `Effect::Persist` completes after a drawn fsync latency;
//!   a crash keeps only what was synced and restarts with a fresh `State`.
//!   On about a third of the seeds, one to three membership changes by
//!   conf change during the safety phase: remove a voter (leadership is
//!   transferred first when it leads), add a fresh node (empty storage,
//!   no peers; it catches up by snapshot), or replace one by a new id.
//!   Clients know every id that may exist; crashes keep a majority of the
//!   current configuration up; removed nodes leave the final checks.
//! * **Clients**: a setup client (repo + 1–3 random 1-D/2-D arrays), real
//!   `worker::machine` writers (aligned or not, overlapping or not; Strict
//!   with the seed's loop, Rebase fail, sometimes ours/theirs; manual
//!   retries), a built-in aligned writer, cooperative jobs with 2–4
//!   workers (replaced when they crash; about a third of the jobs open a
//!   session that creates the array it writes, `/c0` or `/c1`, so two jobs
//!   may create the same path), checkpointers, and on about a
//!   third of the seeds planless cooperative sessions: a lead opens
//!   `OpenSession { plan: None }`, 2–4 contributors `Contribute` whole
//!   chunks (often overlapping; they are paused, never killed), the lead
//!   commits once all are done.
//! * **Faults**: drop, duplicate, delay/reorder; symmetric partitions,
//!   one-way cuts, clogs, leader isolation; coordinator crashes; worker
//!   crashes and pauses (zombies); object-store put/get failures and
//!   latency. A planted [`Bug`] leans the draw towards what exposes it.
//! * **Oracles** ([`oracle`]): exact conflicts (and their cooperative
//!   half, planless overlaps named exactly by brute force), one history,
//!   data, replicas agree (online, per applied index, and on the final
//!   states), liveness.

#![warn(missing_docs)]

pub mod bug;
pub mod client;
pub mod cluster;
pub mod codes;
pub mod faults;
pub mod model;
pub mod net;
pub mod obs;
pub mod oracle;
pub mod queue;
pub mod trace;
pub mod workload;
mod world;

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub use bug::Bug;
pub use faults::FaultCounts;

/// How to run a seed.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Coordinators: 3 or 5.
    pub nodes: usize,
    /// A planted bug to switch on, if any.
    pub bug: Option<Bug>,
    /// Print every event as it happens.
    pub trace: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            nodes: 3,
            bug: None,
            trace: false,
        }
    }
}

/// What one seed did, and the first oracle it violated, if any.
#[derive(Clone, Debug)]
pub struct SeedReport {
    /// The seed.
    pub seed: u64,
    /// Hash of every event: equal for equal seeds and options.
    pub trace_hash: u64,
    /// Events processed.
    pub events: u64,
    /// Simulated milliseconds elapsed.
    pub sim_ms: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Commits on the final chain (the setup commit included).
    pub commits: u64,
    /// Landed commits that were fast-forwarded (server-side rebase or the
    /// seed's loop).
    pub fast_forwards: u64,
    /// Conflict answers the clients received.
    pub conflicts: u64,
    /// Commits landed on branches other than `main`.
    pub branch_commits: u64,
    /// Regions read at tags.
    pub tag_reads: u64,
    /// `SessionExpired` answers the clients received.
    pub expired: u64,
    /// The violation, if the seed failed.
    pub violation: Option<Violation>,
}

/// A violated oracle, with what is needed to act on it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The seed that failed.
    pub seed: u64,
    /// The oracle violated (see [`oracle`] for the names).
    pub oracle: &'static str,
    /// Precisely what was seen.
    pub detail: String,
    /// The last trace lines before the violation, oldest first.
    pub tail: Vec<String>,
    /// The command that replays this seed with every event printed.
    pub replay: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} violated oracle `{}`:", self.seed, self.oracle)?;
        writeln!(f, "  {}", self.detail)?;
        writeln!(f, "replay with: {}", self.replay)?;
        writeln!(f, "last {} events:", self.tail.len())?;
        for line in &self.tail {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// The command line replaying `seed` with `opts`, every event printed.
pub fn replay_command(seed: u64, opts: &SimOptions) -> String {
    let mut cmd = format!("floe-sim --seed {seed} --trace");
    if opts.nodes != 3 {
        cmd.push_str(&format!(" --nodes {}", opts.nodes));
    }
    if let Some(bug) = opts.bug {
        cmd.push_str(&format!(" --bug {}", bug.name()));
    }
    cmd
}

/// Deviations from a normal run, for the simulation's own tests (e.g. to
/// prove the liveness oracle fires when something never recovers).
#[derive(Clone, Debug, Default)]
pub struct Tweaks {
    /// Replaces the liveness bound (ms after the faults stop).
    pub liveness_ms: Option<u64>,
    /// Crashes this node at the start and never restarts it.
    pub keep_down: Option<u64>,
}

/// Runs one seed and checks every oracle.
pub fn run_seed(seed: u64, opts: &SimOptions) -> SeedReport {
    run_seed_tweaked(seed, opts, &Tweaks::default())
}

/// [`run_seed`] with [`Tweaks`].
pub fn run_seed_tweaked(seed: u64, opts: &SimOptions, tweaks: &Tweaks) -> SeedReport {
    let mut world = world::World::new(seed, opts, tweaks.clone());
    let ran = catch_unwind(AssertUnwindSafe(|| world.run()));
    if let Err(panic) = ran {
        if is_broken_pipe(&panic) {
            // `floe-sim --trace | head`: the reader left, not a core bug.
            std::panic::resume_unwind(panic);
        }
        world.panicked(panic_message(&panic));
    }
    let tally = match catch_unwind(AssertUnwindSafe(|| world.finish())) {
        Ok(t) => t,
        Err(panic) => {
            world.panicked(panic_message(&panic));
            Default::default()
        }
    };
    let violation = world.failure.take().map(|f| Violation {
        seed,
        oracle: f.oracle,
        detail: f.detail,
        tail: world.explain(),
        replay: replay_command(seed, opts),
    });
    SeedReport {
        seed,
        trace_hash: world.trace.hash(),
        events: world.trace.events(),
        sim_ms: world.elapsed(),
        faults: world.counts.clone(),
        commits: tally.commits,
        fast_forwards: tally.fast_forwards,
        conflicts: tally.conflicts,
        branch_commits: tally.branch_commits,
        tag_reads: tally.tag_reads,
        expired: world.expired_replies,
        violation,
    }
}

fn is_broken_pipe(panic: &Box<dyn std::any::Any + Send>) -> bool {
    panic_message(panic).contains("failed printing to stdout")
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into());
    format!("a core panicked: {text}")
}
