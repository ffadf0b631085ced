//! An embedded cluster: N Raft coordinators in one process, for `floe demo`,
//! examples and tests. A shell around the [`Node`] cores: one thread owns
//! the nodes, ticks them on the wall clock, delivers their messages in
//! memory, "fsyncs" at once (the storage is in memory), and answers clients.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use floe_protocol::{ClientId, Coordinator, Envelope, FloeError, Outcome};
use tokio::sync::oneshot;

use crate::node::{Effect, Node, NodeConfig};
use crate::state::{Config, State};

/// Wall-clock length of one Raft tick.
pub const TICK: Duration = Duration::from_millis(10);
/// How long [`EmbeddedCluster::start`] waits for the first leader.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

enum ToLoop {
    /// Deliver an envelope to one node (1-based id) and answer on the channel.
    Send(u64, Envelope, oneshot::Sender<Outcome>),
    Stop,
}

/// A running in-process cluster; implements [`Coordinator`] (each node
/// addressable by its raft id, 1 to N).
pub struct EmbeddedCluster {
    nodes: usize,
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
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| FloeError::Unavailable("no leader elected".into()))?;
        Ok(EmbeddedCluster {
            nodes,
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
    fn nodes(&self) -> Vec<u64> {
        (1..=self.nodes as u64).collect()
    }

    async fn send(&self, to: u64, envelope: Envelope) -> Outcome {
        let stopped = || FloeError::Unavailable("the embedded cluster stopped".into());
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(ToLoop::Send(to, envelope, tx))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// The thread that owns the nodes.
struct Loop {
    nodes: Vec<Node<State>>,
    /// Who waits for the answer to `(client, seq)`: several senders when
    /// a client resent its envelope before the first answer came.
    waiting: HashMap<(ClientId, u64), Vec<oneshot::Sender<Outcome>>>,
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
                Ok(ToLoop::Send(to, env, reply)) => self.submit(to, env, reply),
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

    /// Hands `env` to node `to`, which answers it (`NotLeader` with a hint
    /// when it is not the leader).
    fn submit(&mut self, to: u64, env: Envelope, reply: oneshot::Sender<Outcome>) {
        let Some(node) = to
            .checked_sub(1)
            .and_then(|i| self.nodes.get_mut(i as usize))
        else {
            let _ = reply.send(Err(FloeError::Unavailable(format!(
                "no coordinator node {to} in this cluster"
            ))));
            return;
        };
        self.waiting
            .entry((env.client, env.seq))
            .or_default()
            .push(reply);
        node.propose(now_ms(), env);
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
                for tx in self.waiting.remove(&(client, seq)).into_iter().flatten() {
                    let _ = tx.send(outcome.clone());
                }
            }
            Effect::Failed { error } => tracing::error!(node = i + 1, %error, "node stopped"),
            Effect::Applied { .. }
            | Effect::RoleChanged { .. }
            | Effect::ConfChanged { .. }
            | Effect::Proposed { .. }
            | Effect::LostLog { .. } => {}
        }
    }
}
