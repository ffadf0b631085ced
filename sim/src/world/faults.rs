//! Injecting faults during the safety phase, and ending it.

use rand::Rng;

use super::{Ev, Life, World};
use crate::client::Client;
use crate::faults::{FaultKind, FaultPlan};
use crate::net::Addr;

impl World {
    /// Schedules the first fault of each kind the plan switched on.
    pub(crate) fn schedule_faults(&mut self) {
        if self.plan.crash_every_ms > 0 {
            self.after_mean(self.scaled(self.plan.crash_every_ms), Ev::Crash);
        }
        if self.plan.partition_every_ms > 0 {
            self.after_mean(self.scaled(self.plan.partition_every_ms), Ev::NetFault);
        }
        if self.plan.worker_crash_every_ms > 0 {
            self.after_mean(self.plan.worker_crash_every_ms, Ev::WorkerFault);
        }
    }

    fn scaled(&self, mean: u64) -> u64 {
        ((mean as f64) * self.shape.fault_scale).max(50.0) as u64
    }

    /// Schedules `ev` after an exponentially distributed delay of `mean` ms.
    fn after_mean(&mut self, mean: u64, ev: Ev) {
        let u: f64 = self.rngs.fault.gen_range(f64::EPSILON..1.0);
        let delay = ((mean as f64) * -u.ln()).clamp(1.0, 60_000.0) as u64;
        self.queue.push(self.now + delay, ev);
    }

    /// Crashes a random running coordinator, keeping a majority of the
    /// current configuration up (nodes outside it may always crash).
    pub(crate) fn crash(&mut self) {
        if self.calm {
            return;
        }
        let voters = self.cluster.voters();
        // A node rebuilding a wiped directory cannot vote: it counts as down.
        let up: Vec<u64> = self
            .cluster
            .running()
            .filter(|n| !n.rebuilding())
            .map(|n| n.id())
            .collect();
        let down = voters.iter().filter(|v| !up.contains(v)).count();
        let spare = (voters.len().saturating_sub(1) / 2).saturating_sub(down);
        let may: Vec<u64> = up
            .iter()
            .copied()
            .filter(|id| spare > 0 || !voters.contains(id))
            .collect();
        if !may.is_empty() {
            let id = may[self.rngs.fault.gen_range(0..may.len())];
            self.cluster.crash(id);
            self.counts.add(FaultKind::Crash);
            self.trace.event(self.now, "crash", id, 0);
            let down = self.rngs.fault.gen_range(50..2_000);
            self.queue.push(self.now + down, Ev::Restart(id));
        }
        self.after_mean(self.scaled(self.plan.crash_every_ms), Ev::Crash);
    }

    /// Restarts a crashed coordinator from what it synced.
    pub(crate) fn restart(&mut self, id: u64) {
        if !self.cluster.down_ids().contains(&id) || self.tweaks.keep_down == Some(id) {
            return;
        }
        // Now and then the node comes back with its disk wiped.
        let wiped = self.rngs.fault.gen_bool(self.shape.wipe_share) && self.cluster.wipe(id);
        if wiped {
            self.counts.add(FaultKind::Wipe);
        }
        self.trace.event(
            self.now,
            if wiped { "restart-wiped" } else { "restart" },
            id,
            0,
        );
        if let Err(e) = self.cluster.restart(id) {
            return self.panicked(format!(
                "node n{id} cannot restart from its durable log: {e}"
            ));
        }
        self.drain_node(id);
    }

    /// Starts a network fault: a symmetric partition, one-way cuts, or a
    /// clog isolating one node from everyone (clients included).
    pub(crate) fn net_fault(&mut self) {
        if self.calm {
            return;
        }
        let leader = self
            .cluster
            .running()
            .find(|n| n.is_leader())
            .map(|n| n.id());
        let isolate = self.rngs.fault.gen_bool(self.shape.isolate_leader);
        let what = match (leader.filter(|_| isolate), self.rngs.fault.gen_range(0..3)) {
            // Jepsen's "isolate the leader": cut from its peers, still
            // reachable by clients, so it takes commands it cannot commit.
            (Some(l), _) => {
                self.partition(&[l]);
                format!("isolate leader n{l} from its peers")
            }
            (None, 0) => {
                let side = self.minority();
                self.partition(&side);
                format!("partition {side:?} from the rest")
            }
            (None, 1) => self.one_way(),
            (None, _) => {
                let ids = self.cluster.ids();
                let id = ids[self.rngs.fault.gen_range(0..ids.len())];
                self.net.isolate(Addr::Node(id));
                self.counts.add(FaultKind::Clog);
                format!("clog n{id} (cut from everyone, clients too)")
            }
        };
        self.trace.note(self.now, "net-fault", what);
        let heal = self.rngs.fault.gen_range(100..2_000);
        self.queue.push(self.now + heal, Ev::NetHeal);
    }

    /// A random proper, non-empty subset of the nodes.
    fn minority(&mut self) -> Vec<u64> {
        let mut ids = self.cluster.ids();
        let size = self.rngs.fault.gen_range(1..ids.len());
        let mut side = Vec::new();
        while side.len() < size {
            side.push(ids.swap_remove(self.rngs.fault.gen_range(0..ids.len())));
        }
        side.sort_unstable();
        side
    }

    /// Cuts `side` from the other nodes, both ways (clients unaffected).
    fn partition(&mut self, side: &[u64]) {
        for a in side.iter().copied() {
            for b in self.cluster.ids().into_iter().filter(|b| !side.contains(b)) {
                self.net.cut(Addr::Node(a), Addr::Node(b));
                self.net.cut(Addr::Node(b), Addr::Node(a));
            }
        }
        self.counts.add(FaultKind::Partition);
    }

    /// Cuts one to three links in one direction only.
    fn one_way(&mut self) -> String {
        let ids = self.cluster.ids();
        let mut cuts = Vec::new();
        for _ in 0..self.rngs.fault.gen_range(1..=3) {
            let a = ids[self.rngs.fault.gen_range(0..ids.len())];
            let others: Vec<u64> = ids.iter().copied().filter(|&b| b != a).collect();
            let b = others[self.rngs.fault.gen_range(0..others.len())];
            self.net.cut(Addr::Node(a), Addr::Node(b));
            cuts.push((a, b));
        }
        self.counts.add(FaultKind::OneWay);
        format!("one-way cuts (from, to) {cuts:?}")
    }

    /// Heals the network and schedules the next fault.
    pub(crate) fn net_heal(&mut self) {
        self.net.heal();
        self.trace.event(self.now, "net-heal", 0, 0);
        if !self.calm {
            self.after_mean(self.scaled(self.plan.partition_every_ms), Ev::NetFault);
        }
    }

    /// Crashes or pauses a random busy cooperative worker.
    pub(crate) fn worker_fault(&mut self) {
        if self.calm {
            return;
        }
        if let Some(i) = self.fault_target() {
            self.counts.add(FaultKind::WorkerCrash);
            // Contributors only pause: a lost contribution's fate is not
            // observable without a reply (the lead waits for every one).
            let pause_only = matches!(self.clients[i as usize].client, Client::Contributor { .. });
            if self.rngs.fault.gen_bool(0.5) && !pause_only {
                self.crash_worker(i);
            } else {
                let pause = self.rngs.fault.gen_range(100..3_000);
                self.trace.event(self.now, "pause", u64::from(i) + 1, pause);
                self.clients[i as usize].life = Life::Paused(Vec::new());
                self.queue.push(self.now + pause, Ev::Wake(i));
            }
        }
        self.after_mean(self.plan.worker_crash_every_ms, Ev::WorkerFault);
    }

    /// A running client to crash or pause: mostly a worker holding a task
    /// (a pause mid-task makes a zombie), sometimes a writer mid-commit
    /// (its late retry must be deduplicated).
    fn fault_target(&mut self) -> Option<u32> {
        let running = |s: &super::Slot| s.started && !s.done && matches!(s.life, Life::Live);
        let pick = |want: &dyn Fn(&super::Slot) -> bool| -> Vec<u32> {
            (0..self.clients.len() as u32)
                .filter(|&i| running(&self.clients[i as usize]) && want(&self.clients[i as usize]))
                .collect()
        };
        let writers = self.rngs.fault.gen_bool(0.3);
        let mut busy = if writers {
            pick(&|s| matches!(s.client, Client::Writer(_) | Client::Contributor { .. }))
        } else {
            pick(&|s| s.client.holds_task())
        };
        if busy.is_empty() {
            busy = pick(&|s| s.client.is_worker());
        }
        (!busy.is_empty()).then(|| busy[self.rngs.fault.gen_range(0..busy.len())])
    }

    fn crash_worker(&mut self, i: u32) {
        self.trace.event(self.now, "kill", u64::from(i) + 1, 0);
        self.clients[i as usize].life = Life::Crashed;
        // The job's scheduler replaces a dead worker.
        self.respawn_worker(i);
    }

    /// Wakes a paused client: it handles what it missed, in order.
    pub(crate) fn wake(&mut self, i: u32) {
        let slot = &mut self.clients[i as usize];
        let Life::Paused(held) = std::mem::replace(&mut slot.life, Life::Live) else {
            return;
        };
        self.trace
            .event(self.now, "wake", u64::from(i) + 1, held.len() as u64);
        for input in held {
            self.deliver(i, input);
        }
        self.drain_client(i);
    }

    /// The liveness bound in force.
    pub(crate) fn liveness_ms(&self) -> u64 {
        self.tweaks.liveness_ms.unwrap_or(super::LIVENESS_MS)
    }

    /// Faults stop: the network heals, crashed nodes restart, paused
    /// clients wake; everything pending must now finish in bounded time.
    pub(crate) fn end_safety(&mut self) {
        self.calm = true;
        self.plan = FaultPlan::calm();
        self.net.heal();
        self.trace.note(
            self.now,
            "calm",
            "safety phase over: faults off, network healed".into(),
        );
        for id in self.cluster.down_ids() {
            self.restart(id);
        }
        for i in 0..self.clients.len() as u32 {
            if matches!(self.clients[i as usize].life, Life::Paused(_)) {
                self.wake(i);
            }
        }
        self.deadline = self.now + self.liveness_ms();
    }
}
