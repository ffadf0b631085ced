//! An embedded cluster: N Raft coordinators in one process, for `floe demo`,
//! examples and tests. A shell around the [`Node`] cores: one thread owns
//! the nodes, ticks them on the wall clock, delivers their messages in
//! memory, "fsyncs" at once (the storage is in memory), and answers clients.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use floe_protocol::{ClientId, Coordinator, Envelope, FloeError, Outcome, Request};
use tokio::sync::oneshot;

use crate::node::{Effect, Node, NodeConfig};
use crate::state::{Config, State};

/// Wall-clock length of one Raft tick.
pub const TICK: Duration = Duration::from_millis(10);
/// How long a client waits for an answer before giving up.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

enum ToLoop {
    Call(Envelope, oneshot::Sender<Outcome>),
    Stop,
}

/// A running in-process cluster; implements [`Coordinator`].
pub struct EmbeddedCluster {
    nodes: usize,
    client: ClientId,
    seq: AtomicU64,
    tx: Sender<ToLoop>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedCluster {
    /// Starts `nodes` coordinators with state-machine `config`; returns once
    /// a leader is elected.
    pub fn start(nodes: usize, config: Config) -> Result<Self, FloeError> {
        let peers: Vec<u64> = (1..=nodes as u64).collect();
        let mut cluster = Vec::with_capacity(nodes);
        for &id in &peers {
            let mut cfg = NodeConfig::new(id, peers.clone(), 0x5eed ^ id);
            // Nobody here compares replica digests; hashing the whole state
            // at every applied index would grow with the state.
            cfg.digest_every = 0;
            let node = Node::bootstrap(cfg, State::new(config.clone()))
                .map_err(|e| FloeError::Unavailable(e.to_string()))?;
            cluster.push(node);
        }
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("floe-embedded-cluster".into())
            .spawn(move || Loop::new(cluster).run(rx, ready_tx))
            .map_err(|e| FloeError::Unavailable(e.to_string()))?;
        ready_rx
            .recv_timeout(CALL_TIMEOUT)
            .map_err(|_| FloeError::Unavailable("no leader elected".into()))?;
        Ok(EmbeddedCluster {
            nodes,
            client: ClientId(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64),
            ),
            seq: AtomicU64::new(1),
            tx,
            thread: Some(thread),
        })
    }

    /// One line saying what this is.
    pub fn describe(&self) -> String {
        format!("embedded cluster of {} Raft coordinators", self.nodes)
    }
}

impl Drop for EmbeddedCluster {
    fn drop(&mut self) {
        let _ = self.tx.send(ToLoop::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Coordinator for EmbeddedCluster {
    async fn call(&self, request: Request) -> Outcome {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let envelope = Envelope {
            client: self.client,
            seq,
            request,
        };
        let deadline = Instant::now() + CALL_TIMEOUT;
        // A retry reuses (client, seq): the state machine answers it from
        // its idempotency table, so a command lands at most once.
        loop {
            let (tx, rx) = oneshot::channel();
            self.tx
                .send(ToLoop::Call(envelope.clone(), tx))
                .map_err(|_| FloeError::Unavailable("cluster stopped".into()))?;
            match rx.await {
                Ok(Err(FloeError::NotLeader { .. })) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(TICK).await;
                }
                Ok(outcome) => return outcome,
                Err(_) => return Err(FloeError::Unavailable("cluster stopped".into())),
            }
        }
    }
}

/// The thread that owns the nodes.
struct Loop {
    nodes: Vec<Node<State>>,
    waiting: HashMap<(ClientId, u64), oneshot::Sender<Outcome>>,
    mail: VecDeque<(u64, u64, Vec<u8>)>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Loop {
    fn new(nodes: Vec<Node<State>>) -> Self {
        Loop {
            nodes,
            waiting: HashMap::new(),
            mail: VecDeque::new(),
        }
    }

    fn run(mut self, rx: Receiver<ToLoop>, ready: Sender<()>) {
        let mut next_tick = Instant::now();
        let mut announced = false;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(ToLoop::Call(env, reply)) => self.submit(env, reply),
                Ok(ToLoop::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    self.nodes.iter_mut().for_each(Node::tick);
                    next_tick += TICK;
                }
            }
            self.drain();
            if !announced && self.leader().is_some() {
                announced = ready.send(()).is_ok();
            }
        }
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(Node::is_leader)
    }

    fn submit(&mut self, env: Envelope, reply: oneshot::Sender<Outcome>) {
        let Some(i) = self.leader() else {
            let _ = reply.send(Err(FloeError::NotLeader { leader_hint: None }));
            return;
        };
        self.waiting.insert((env.client, env.seq), reply);
        self.nodes[i].propose(now_ms(), env);
    }

    /// Runs every node's effects until the cluster is quiet.
    fn drain(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.nodes.len() {
                while let Some(effect) = self.nodes[i].poll() {
                    busy = true;
                    self.execute(i, effect);
                }
            }
            while let Some((from, to, bytes)) = self.mail.pop_front() {
                busy = true;
                if let Some(node) = self.nodes.get_mut(to as usize - 1) {
                    if let Err(e) = node.step(from, &bytes) {
                        tracing::warn!("node {to} refused a message from {from}: {e}");
                    }
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn execute(&mut self, i: usize, effect: Effect) {
        match effect {
            Effect::Send { to, bytes } => self.mail.push_back((i as u64 + 1, to, bytes)),
            Effect::Persist { token } => self.nodes[i].persisted(token),
            Effect::Reply {
                client,
                seq,
                outcome,
            } => {
                if let Some(tx) = self.waiting.remove(&(client, seq)) {
                    let _ = tx.send(outcome);
                }
            }
            Effect::Failed { error } => tracing::error!(node = i + 1, %error, "node stopped"),
            Effect::Applied { .. } | Effect::RoleChanged { .. } | Effect::ConfChanged { .. } => {}
        }
    }
}
