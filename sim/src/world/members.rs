//! Membership changes under faults: on some seeds (swarm-style), the
//! safety phase removes voters (handing leadership away first when the
//! victim leads: a leader cannot remove itself) and adds fresh nodes
//! (empty storage, no peers: they catch up by the leader's snapshot),
//! one change at a time, while the other faults run. A change is driven
//! by retries against whichever node leads until the leader's applied
//! configuration shows it; a removed node is then decommissioned.

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::Rng;

use super::{Ev, World};
use crate::faults::FaultKind;

/// Milliseconds between two tries of a pending change.
const RETRY_MS: (u64, u64) = (50, 250);

/// One membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Add a fresh node under this id.
    Add(u64),
    /// Remove a voter, chosen when the change starts.
    Remove,
}

/// The change being driven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Current {
    Add(u64),
    Remove(u64),
}

/// A seed's membership plan and its progress.
#[derive(Debug, Default)]
pub(crate) struct Members {
    /// Changes still to start, with the earliest time each may start.
    queue: VecDeque<(u64, Change)>,
    current: Option<Current>,
    /// Removed nodes not yet decommissioned.
    leaving: Vec<u64>,
    /// Every id that may ever exist (the clients' node list).
    pub(crate) all_ids: Vec<u64>,
    /// True while an `Ev::Member` is scheduled.
    armed: bool,
}

impl Members {
    /// Draws the plan: on about a third of the seeds, one to three
    /// changes (remove, add, or replace: remove then add under a new id)
    /// spread over the safety phase `start..end`.
    pub(crate) fn draw(rng: &mut SmallRng, nodes: u64, start: u64, end: u64) -> Self {
        let mut m = Members {
            all_ids: (1..=nodes).collect(),
            ..Members::default()
        };
        if !rng.gen_bool(0.35) || end <= start + 1_000 {
            return m;
        }
        let mut next_id = nodes + 1;
        let mut times: Vec<u64> = (0..rng.gen_range(1..=3))
            .map(|_| rng.gen_range(start + 200..end - 500))
            .collect();
        times.sort_unstable();
        for at in times {
            let changes: &[Change] = match rng.gen_range(0..3) {
                0 => &[Change::Remove],
                1 => &[Change::Add(0)],
                _ => &[Change::Remove, Change::Add(0)],
            };
            for &c in changes {
                let c = match c {
                    Change::Add(_) => {
                        next_id += 1;
                        m.all_ids.push(next_id - 1);
                        Change::Add(next_id - 1)
                    }
                    Change::Remove => Change::Remove,
                };
                m.queue.push_back((at, c));
            }
        }
        m
    }

    /// True when no change is pending and every removed node is gone.
    pub(crate) fn idle(&self) -> bool {
        self.queue.is_empty() && self.current.is_none() && self.leaving.is_empty()
    }
}

impl World {
    /// Arms the first membership change, if the plan has one.
    pub(crate) fn schedule_members(&mut self) {
        if let Some(&(at, _)) = self.members.queue.front() {
            self.members.armed = true;
            self.queue.push(at, Ev::Member);
        }
    }

    /// Starts or drives the membership change at hand.
    pub(crate) fn member_step(&mut self) {
        self.members.armed = false;
        if self.members.current.is_none() && !self.start_change() {
            return;
        }
        let Some(current) = self.members.current else {
            return;
        };
        if self.drive_change(current) {
            self.members.current = None;
            if let Some(&(at, _)) = self.members.queue.front() {
                self.rearm(at);
            }
            return;
        }
        let delay = self.rngs.member.gen_range(RETRY_MS.0..=RETRY_MS.1);
        self.rearm(self.now + delay);
    }

    fn rearm(&mut self, at: u64) {
        if !self.members.armed {
            self.members.armed = true;
            self.queue.push(at.max(self.now), Ev::Member);
        }
    }

    /// Starts the next queued change if its time came; false when there
    /// is nothing to drive now (the next one is re-armed).
    fn start_change(&mut self) -> bool {
        let Some(&(at, change)) = self.members.queue.front() else {
            return false;
        };
        if at > self.now {
            self.rearm(at);
            return false;
        }
        // As an operator would: no membership change while a member
        // rebuilds a wiped directory (it cannot vote yet).
        if self.cluster.running().any(|n| n.rebuilding()) {
            self.rearm(self.now + RETRY_MS.1);
            return false;
        }
        self.members.queue.pop_front();
        let voters = self.cluster.voters();
        match change {
            Change::Add(id) => {
                if voters.len() >= 7 {
                    self.trace.event(self.now, "skip-add", id, 0);
                    return self.next_later();
                }
                let Some(cfg) = self.cluster.joiner_config(id) else {
                    return self.next_later();
                };
                if let Err(e) = self.cluster.start(cfg) {
                    self.panicked(format!("joiner n{id} cannot boot: {e}"));
                    return false;
                }
                self.trace.note(
                    self.now,
                    "add-node",
                    format!("n{id} boots empty; adding it to {voters:?}"),
                );
                self.members.current = Some(Current::Add(id));
            }
            Change::Remove => {
                // Leave at least two voters.
                let candidates: Vec<u64> = voters
                    .iter()
                    .copied()
                    .filter(|&v| self.cluster.exists(v))
                    .collect();
                if voters.len() <= 2 || candidates.is_empty() {
                    self.trace.event(self.now, "skip-remove", 0, 0);
                    return self.next_later();
                }
                // Often the leader itself: leadership must move first.
                let leader = self.leader_id().filter(|l| candidates.contains(l));
                let victim = match leader {
                    Some(l) if self.rngs.member.gen_bool(0.5) => l,
                    _ => candidates[self.rngs.member.gen_range(0..candidates.len())],
                };
                self.trace.note(
                    self.now,
                    "remove-node",
                    format!("removing n{victim} from {voters:?}"),
                );
                self.members.current = Some(Current::Remove(victim));
            }
        }
        true
    }

    /// A skipped change: try the next one soon.
    fn next_later(&mut self) -> bool {
        if let Some(&(at, _)) = self.members.queue.front() {
            self.rearm(at);
        }
        false
    }

    /// The leader of the highest term among running nodes.
    fn leader_id(&self) -> Option<u64> {
        self.cluster
            .running()
            .filter(|n| n.is_leader())
            .max_by_key(|n| (n.term(), n.id()))
            .map(|n| n.id())
    }

    /// One try at `change`; true once the leader applied it.
    fn drive_change(&mut self, change: Current) -> bool {
        let Some(leader) = self.leader_id() else {
            return false;
        };
        let Some(node) = self.cluster.up(leader) else {
            return false;
        };
        let voters = node.voters();
        match change {
            Current::Add(id) if voters.contains(&id) => {
                self.counts.add(FaultKind::AddNode);
                self.trace.event(self.now, "added", id, leader);
                true
            }
            Current::Remove(id) if !voters.contains(&id) => {
                self.counts.add(FaultKind::RemoveNode);
                self.trace.event(self.now, "removed", id, leader);
                self.members.leaving.push(id);
                let linger = if self.calm {
                    0
                } else {
                    self.rngs.member.gen_range(0..500)
                };
                self.queue.push(self.now + linger, Ev::Decommission(id));
                true
            }
            Current::Remove(id) if id == leader => {
                let heirs: Vec<u64> = voters
                    .iter()
                    .copied()
                    .filter(|&v| v != id && self.cluster.up(v).is_some())
                    .collect();
                if !heirs.is_empty() {
                    let heir = heirs[self.rngs.member.gen_range(0..heirs.len())];
                    self.trace.event(self.now, "transfer", id, heir);
                    if let Some(node) = self.cluster.up(leader) {
                        node.transfer_leader(heir);
                    }
                    self.drain_node(leader);
                }
                false
            }
            Current::Add(id) => {
                // Refusals (a change in progress, a deposed leader) are
                // retried; the applied configuration is the only verdict.
                let _ = node.add_node(id);
                self.drain_node(leader);
                false
            }
            Current::Remove(id) => {
                let _ = node.remove_node(id);
                self.drain_node(leader);
                false
            }
        }
    }

    /// A removed node leaves the simulation for good.
    pub(crate) fn decommission(&mut self, id: u64) {
        self.trace.event(self.now, "decommission", id, 0);
        self.cluster.decommission(id);
        self.members.leaving.retain(|&l| l != id);
    }
}
