//! The simulated network: per-message latency, drops, duplicates and
//! reordering from the fault plan, and link cuts (partitions, one-way
//! cuts, clogs) that the scheduler switches on and off.

use rand::Rng;
use std::collections::BTreeSet;

use crate::faults::{FaultCounts, FaultKind, FaultPlan};

/// An endpoint: a coordinator (by raft id) or a client (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Addr {
    /// A coordinator.
    Node(u64),
    /// A writer, worker or job.
    Client(u32),
}

/// Link state.
#[derive(Default)]
pub struct Network {
    cut: BTreeSet<(Addr, Addr)>,
    /// Endpoints cut off from everyone, both ways (a clog).
    isolated: BTreeSet<Addr>,
}

impl Network {
    /// Cuts `from -> to`.
    pub fn cut(&mut self, from: Addr, to: Addr) {
        self.cut.insert((from, to));
    }

    /// Cuts `addr` off from every endpoint, both ways.
    pub fn isolate(&mut self, addr: Addr) {
        self.isolated.insert(addr);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.isolated.clear();
    }

    /// True when any link is cut.
    pub fn is_cut(&self) -> bool {
        !self.cut.is_empty() || !self.isolated.is_empty()
    }

    /// True when a message `from -> to` is lost to a cut.
    pub fn blocked(&self, from: Addr, to: Addr) -> bool {
        self.isolated.contains(&from)
            || self.isolated.contains(&to)
            || self.cut.contains(&(from, to))
    }

    /// The delivery delays of one message: empty when it is lost, two
    /// entries when it is duplicated.
    pub fn route(
        &self,
        rng: &mut impl Rng,
        plan: &FaultPlan,
        counts: &mut FaultCounts,
        from: Addr,
        to: Addr,
    ) -> Vec<u64> {
        if self.blocked(from, to) {
            return Vec::new();
        }
        if plan.drop > 0.0 && rng.gen_bool(plan.drop) {
            counts.add(FaultKind::Drop);
            return Vec::new();
        }
        let first = delay(rng, plan, counts);
        if plan.duplicate > 0.0 && rng.gen_bool(plan.duplicate) {
            counts.add(FaultKind::Duplicate);
            let second = delay(rng, plan, counts);
            return vec![first, second];
        }
        vec![first]
    }
}

/// Base latency of 1–5 ms, for a share of messages plus a large extra delay (which is what
/// reorders messages).
fn delay(rng: &mut impl Rng, plan: &FaultPlan, counts: &mut FaultCounts) -> u64 {
    let base = rng.gen_range(1..=5);
    if plan.max_extra_delay_ms > 0 && rng.gen_bool(plan.delay_share) {
        counts.add(FaultKind::Delay);
        base + rng.gen_range(0..=plan.max_extra_delay_ms)
    } else {
        base
    }
}
