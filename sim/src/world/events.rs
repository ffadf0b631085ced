//! Handling events and executing the effects of nodes and clients.

use floe_coordinator::node::{Effect as NodeEffect, Role};
use floe_protocol::{ClientId, Outcome};

use super::client_id;
use rand::Rng;

use super::{Ev, Life, World, TICK_MS};
use crate::client::{Effect, Input};
use crate::codes;
use crate::faults::FaultKind;
use crate::net::Addr;
use crate::oracle::{Failure, PANIC};
use crate::trace::Kind;

impl World {
    pub(crate) fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Tick => self.tick(),
            Ev::Raft { from, to, bytes } => self.raft(from, to, &bytes),
            Ev::ToNode { client, to, env } => self.request(client, to, *env),
            Ev::ToClient {
                node,
                client,
                seq,
                outcome,
            } => self.on_reply(node, client, seq, *outcome),
            Ev::Persisted { node, life, token } => self.persisted(node, life, token),
            Ev::Crash => self.crash(),
            Ev::Restart(id) => self.restart(id),
            Ev::NetFault => self.net_fault(),
            Ev::NetHeal => self.net_heal(),
            Ev::WorkerFault => self.worker_fault(),
            Ev::Wake(i) => self.wake(i),
            Ev::Start(i) => self.start_client(i),
            Ev::Put {
                client,
                token,
                key,
                bytes,
                ok,
                written,
            } => {
                if written {
                    self.store.insert(key, bytes);
                }
                self.on_put(client, token, ok);
            }
            Ev::Get {
                client,
                token,
                key,
                ok,
            } => self.on_get(client, token, &key, ok),
            Ev::Input { client, input } => {
                if let Input::Timer { token } = input {
                    let n = [u64::from(client) + 1, token, 0, 0];
                    self.trace.rec(self.now, Kind::Timer, n);
                }
                self.deliver(client, input);
            }
            Ev::EndSafety => self.end_safety(),
            Ev::Member => self.member_step(),
            Ev::Decommission(id) => self.decommission(id),
        }
    }

    fn on_reply(&mut self, node: u64, client: u32, seq: u64, outcome: Outcome) {
        let n = [node, u64::from(client) + 1, seq, codes::outcome(&outcome)];
        self.trace.rec(self.now, Kind::Reply, n);
        if let Err(floe_protocol::FloeError::SessionExpired { .. }) = outcome {
            self.expired_replies += 1;
        }
        let live = self
            .clients
            .get(client as usize)
            .is_some_and(|slot| matches!(slot.life, Life::Live));
        if live {
            self.timeline.received(client, seq, &outcome, self.now);
        }
        self.deliver(client, Input::Response { seq, outcome });
    }

    fn on_put(&mut self, client: u32, token: u64, ok: bool) {
        let n = [u64::from(client) + 1, token, ok as u64, 0];
        self.trace.rec(self.now, Kind::Put, n);
        let result = match ok {
            true => Ok(()),
            false => Err("injected put failure".into()),
        };
        self.deliver(client, Input::PutDone { token, result });
    }

    fn on_get(&mut self, client: u32, token: u64, key: &str, ok: bool) {
        let found = self.store.get(key).cloned();
        let n = [
            u64::from(client) + 1,
            token,
            found.is_some() as u64,
            ok as u64,
        ];
        self.trace.rec(self.now, Kind::Get, n);
        let result = match ok {
            true => Ok(found),
            false => Err("injected get failure".into()),
        };
        self.deliver(client, Input::GetDone { token, result });
    }

    fn tick(&mut self) {
        for id in self.cluster.ids() {
            if let Some(node) = self.cluster.up(id) {
                node.tick();
                self.drain_node(id);
            }
        }
        self.queue.push(self.now + TICK_MS, Ev::Tick);
        if self.calm && self.all_done() && self.caught_up() {
            self.trace.note(
                self.now,
                "settled",
                "every client done, replicas caught up".into(),
            );
            self.finished = true;
        }
    }

    fn raft(&mut self, from: u64, to: u64, bytes: &[u8]) {
        let Some(node) = self.cluster.up(to) else {
            return;
        };
        self.trace
            .rec(self.now, Kind::Raft, [from, to, raft_type(bytes), 0]);
        // Refusals (stale peers, duplicates) are part of life; a panic is not.
        let _ = node.step(from, bytes);
        self.drain_node(to);
    }

    fn request(&mut self, client: u32, to: u64, env: floe_protocol::Envelope) {
        let Some(node) = self.cluster.up(to) else {
            return;
        };
        let code = codes::request(&env.request);
        self.trace.rec(
            self.now,
            Kind::Request,
            [u64::from(client) + 1, to, env.seq, code],
        );
        node.propose(self.now, env);
        self.drain_node(to);
    }

    fn persisted(&mut self, id: u64, life: u32, token: u64) {
        let Some(node) = self.cluster.up_as(id, life) else {
            return;
        };
        node.persisted(token);
        self.trace.rec(self.now, Kind::Persisted, [id, token, 0, 0]);
        self.drain_node(id);
    }

    /// Executes a node's effects until it has none.
    pub(crate) fn drain_node(&mut self, id: u64) {
        while let Some(effect) = self.cluster.up(id).and_then(|n| n.poll()) {
            self.node_effect(id, effect);
        }
    }

    fn node_effect(&mut self, id: u64, effect: NodeEffect) {
        match effect {
            NodeEffect::Send { to, bytes } => {
                let delays = self.route(Addr::Node(id), Addr::Node(to));
                // The last copy takes the bytes, the others clone them.
                let last = delays.len().saturating_sub(1);
                let mut bytes = bytes;
                for (i, d) in delays.into_iter().enumerate() {
                    let bytes = match i == last {
                        true => std::mem::take(&mut bytes),
                        false => bytes.clone(),
                    };
                    self.queue.push(
                        self.now + d,
                        Ev::Raft {
                            from: id,
                            to,
                            bytes,
                        },
                    );
                }
            }
            NodeEffect::Persist { token } => {
                let latency = self.rngs.fault.gen_range(0..=self.plan.max_fsync_ms);
                if let Some((life, at)) = self.cluster.fsync_slot(id, self.now + latency) {
                    self.queue.push(
                        at,
                        Ev::Persisted {
                            node: id,
                            life,
                            token,
                        },
                    );
                }
            }
            NodeEffect::Reply {
                client,
                seq,
                outcome,
            } => self.reply(id, client, seq, outcome),
            NodeEffect::Applied { index, digest } => {
                self.trace
                    .rec(self.now, Kind::Applied, [id, index, digest, 0]);
                if let Err(f) = self.digests.record(id, index, digest) {
                    self.fail(f);
                }
            }
            NodeEffect::RoleChanged { role, term, leader } => {
                let n = [id, role_code(role), term, leader.unwrap_or(0)];
                self.trace.rec(self.now, Kind::Role, n);
            }
            NodeEffect::ConfChanged { .. } | NodeEffect::Proposed { .. } => {}
            NodeEffect::LostLog { node, had, has } => self.trace.note(
                self.now,
                "lost-log",
                format!("n{id} found n{node} lost its log ({had} acknowledged, {has} now)"),
            ),
            // The simulated disk never fails: a node stopping on its own is
            // a core bug, reported like a panic.
            NodeEffect::Failed { error } => self.fail(crate::oracle::Failure::new(
                crate::oracle::PANIC,
                format!("node {id} stopped: {error}"),
            )),
        }
    }

    fn reply(&mut self, node: u64, client: ClientId, seq: u64, outcome: Outcome) {
        let Some(index) = self.index_of(client) else {
            return;
        };
        let delays = self.route(Addr::Node(node), Addr::Client(index));
        for d in delays {
            let ev = Ev::ToClient {
                node,
                client: index,
                seq,
                outcome: Box::new(outcome.clone()),
            };
            self.queue.push(self.now + d, ev);
        }
    }

    /// The delivery delays of one message from the network model.
    pub(crate) fn route(&mut self, from: Addr, to: Addr) -> Vec<u64> {
        self.net
            .route(&mut self.rngs.net, &self.plan, &mut self.counts, from, to)
    }

    /// Hands an input to a client (held while it is paused, dropped once
    /// it crashed).
    pub(crate) fn deliver(&mut self, index: u32, input: Input) {
        let Some(slot) = self.clients.get_mut(index as usize) else {
            return;
        };
        match &mut slot.life {
            Life::Crashed => return,
            Life::Paused(held) => return held.push(input),
            Life::Live => {}
        }
        slot.client.machine().handle(self.now, input);
        self.drain_client(index);
    }

    pub(crate) fn start_client(&mut self, index: u32) {
        let now = self.now;
        let Some(slot) = self.clients.get_mut(index as usize) else {
            return;
        };
        self.trace.event(now, "start", u64::from(index) + 1, 0);
        slot.started = true;
        slot.client.machine().start(now);
        self.drain_client(index);
    }

    /// Executes a client's effects, then notices if it finished.
    pub(crate) fn drain_client(&mut self, index: u32) {
        loop {
            let slot = &mut self.clients[index as usize];
            if !matches!(slot.life, Life::Live) {
                return;
            }
            let Some(effect) = slot.client.machine().poll() else {
                break;
            };
            self.client_effect(index, effect);
        }
        self.staff(index);
        let slot = &mut self.clients[index as usize];
        if !slot.done && slot.client.is_done() {
            slot.done = true;
            self.on_done(index);
        }
    }

    fn client_effect(&mut self, index: u32, effect: Effect) {
        match effect {
            Effect::Send { to, envelope } => {
                let seq = envelope.seq;
                if envelope.client != client_id(index) {
                    // A client that renewed its id after `SessionExpired`.
                    self.renewed_ids.insert(envelope.client, index);
                }
                self.timeline.sent(index, seq, &envelope.request, self.now);
                let delays = self.route(Addr::Client(index), Addr::Node(to));
                for d in delays {
                    let env = Box::new(envelope.clone());
                    self.queue.push(
                        self.now + d,
                        Ev::ToNode {
                            client: index,
                            to,
                            env,
                        },
                    );
                }
            }
            Effect::Put { token, key, bytes } => self.put(index, token, key, bytes),
            Effect::Get { token, key } => self.get(index, token, key),
            Effect::Timer { token, after_ms } => {
                let input = Input::Timer { token };
                self.queue.push(
                    self.now + after_ms,
                    Ev::Input {
                        client: index,
                        input,
                    },
                );
            }
        }
    }

    fn put(&mut self, client: u32, token: u64, key: String, bytes: Vec<u8>) {
        let failed = self.store_fails(self.plan.put_failure, FaultKind::PutFailure);
        // A failed put may still have written the object (a timeout after
        // the write): harmless garbage under a fresh id.
        let written = !failed || self.rngs.store.gen_bool(0.5);
        let at = self.now + self.store_latency();
        let ev = Ev::Put {
            client,
            token,
            key,
            bytes,
            ok: !failed,
            written,
        };
        self.queue.push(at, ev);
    }

    fn get(&mut self, client: u32, token: u64, key: String) {
        let failed = self.store_fails(self.plan.get_failure, FaultKind::GetFailure);
        let at = self.now + self.store_latency();
        let ev = Ev::Get {
            client,
            token,
            key,
            ok: !failed,
        };
        self.queue.push(at, ev);
    }

    /// Draws whether a store operation fails with probability `p` (no draw
    /// when `p` is zero), counting the fault.
    fn store_fails(&mut self, p: f64, kind: FaultKind) -> bool {
        let failed = p > 0.0 && self.rngs.store.gen_bool(p);
        if failed {
            self.counts.add(kind);
        }
        failed
    }

    fn store_latency(&mut self) -> u64 {
        self.rngs
            .store
            .gen_range(1..=self.plan.max_store_latency_ms.max(1))
    }

    /// True when every client that is not crashed is done.
    pub(crate) fn all_done(&self) -> bool {
        self.clients
            .iter()
            .all(|s| s.done || matches!(s.life, Life::Crashed))
    }

    /// True when every node runs, one leader is known, and every node
    /// applied everything the leader committed.
    pub(crate) fn caught_up(&self) -> bool {
        if !self.cluster.down_ids().is_empty() || !self.members.idle() {
            return false;
        }
        let nodes: Vec<_> = self.cluster.running().collect();
        let Some(leader) = nodes.iter().find(|n| n.role() == Role::Leader) else {
            return false;
        };
        let commit = leader.commit_index();
        nodes.iter().all(|n| n.applied_index() == commit)
    }

    /// Records a panic of a core as a violation.
    pub(crate) fn panicked(&mut self, message: String) {
        self.fail(Failure::new(PANIC, message));
    }
}

/// The message type of protobuf `eraftpb::Message` bytes: field 1, a
/// varint, comes first when present (absent means 0, `MsgHup`).
fn raft_type(bytes: &[u8]) -> u64 {
    match bytes {
        [0x08, t, ..] if *t < 0x80 => u64::from(*t),
        _ => 0,
    }
}

fn role_code(role: Role) -> u64 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}
