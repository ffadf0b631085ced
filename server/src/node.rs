//! The node actor: owns the sans-IO [`Node`] (state machine and Raft core)
//! and its ticks, moves inputs in (peer messages, client requests, finished
//! fsyncs) and effects out (to peer links, to the log-writer thread, to
//! waiting clients). It decides nothing: every decision is the node core's.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::oneshot;

use floe_coordinator::node::{Effect, Node, Role};
use floe_coordinator::State;
use floe_protocol::{ClientId, Envelope, FloeError, NodeStatus, Outcome, Request};

use crate::link::{Close, PartIn, PeerAddr, PeerLink, RaftOut};
use crate::log::{Batch, EngineLog, LogWriter};
use crate::metrics::{Metrics, RequestLabels};

/// The node core on the raft-engine log.
pub type EngineNode = Node<State, EngineLog>;

/// Where the node actor sends a peer's Raft messages: the peer's link, with
/// the address it connects to.
pub type PeerQueue = (SocketAddr, Addr<PeerLink>);

/// A peer said in its handshake where it listens: a link to it is made
/// (or moved) if this node has none to that address. A peer listed in this
/// node's configuration is always reached at the configured address: the
/// operator's word beats discovery (peers behind proxies or NAT).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LearnPeer {
    /// The peer's node id.
    pub id: u64,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// A Raft message from peer `from`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Step {
    /// The sender.
    pub from: u64,
    /// Protobuf bytes.
    pub bytes: Vec<u8>,
}

/// A client's request; the answer comes on the returned channel.
#[derive(Message)]
#[rtype(result = "oneshot::Receiver<Outcome>")]
pub struct ClientRequest(pub Envelope);

/// The log writer made the batch up to `mark` durable: `token` is persisted.
#[derive(Message)]
#[rtype(result = "()")]
struct Persisted {
    token: u64,
    mark: u64,
    failed: Option<String>,
}

/// Runs the node's pending work: sent to itself once after a burst of
/// requests, so that every request already in the mailbox joins one Raft
/// entry (the node core batches commands proposed before a drain).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// A part of a snapshot transfer from peer `from`, for that peer's link;
/// the answer is the acknowledgement (none when the peer is unknown here).
#[derive(Message)]
#[rtype(result = "Option<floe_protocol::Message>")]
pub struct RoutePart {
    /// The sending peer.
    pub from: u64,
    /// The part.
    pub part: PartIn,
}

/// Asks for the node's [`NodeStatus`].
#[derive(Message)]
#[rtype(result = "NodeStatus")]
pub struct GetStatus;

/// A job for the log-writer thread: write the batch (if any), then report
/// `token` persisted.
struct WriteJob {
    token: u64,
    batch: Option<Batch>,
}

/// A client waiting for an answer.
struct Waiter {
    tx: oneshot::Sender<Outcome>,
    since: Instant,
    kind: &'static str,
}

/// See the module documentation.
pub struct NodeActor {
    node: EngineNode,
    peers: BTreeMap<u64, PeerQueue>,
    /// How this node greets a peer (for links made at run time).
    template: PeerAddr,
    /// Peers' addresses as configured; they win over handshakes.
    configured: BTreeMap<u64, SocketAddr>,
    /// The voters of the last configuration applied.
    voters: Vec<u64>,
    waiting: HashMap<(ClientId, u64), Vec<Waiter>>,
    writer: Option<mpsc::Sender<WriteJob>>,
    log_writer: LogWriter,
    tick: Duration,
    metrics: Metrics,
    /// A [`Flush`] is in the mailbox.
    flush_queued: bool,
}

impl NodeActor {
    /// An actor around `node`, ticking every `tick`, sending Raft messages
    /// to `peers` and making links like `template` to peers it learns of.
    pub fn new(
        node: EngineNode,
        peers: BTreeMap<u64, PeerQueue>,
        template: PeerAddr,
        tick: Duration,
        metrics: Metrics,
    ) -> Self {
        let log_writer = node.storage().writer();
        let configured = peers.iter().map(|(id, (addr, _))| (*id, *addr)).collect();
        NodeActor {
            voters: node.voters(),
            node,
            peers,
            template,
            configured,
            waiting: HashMap::new(),
            writer: None,
            log_writer,
            tick,
            metrics,
            flush_queued: false,
        }
    }

    /// Executes every effect the node has, then updates the gauges.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(effect) = self.node.poll() {
            self.execute(effect, ctx);
        }
        let (n, m) = (&self.node, &self.metrics);
        m.term.set(n.term() as i64);
        m.role.set(match n.role() {
            Role::Follower => 0,
            Role::PreCandidate => 1,
            Role::Candidate => 2,
            Role::Leader => 3,
        });
        m.leader.set(n.leader().unwrap_or(0) as i64);
        m.commit_index.set(n.commit_index() as i64);
        m.applied_index.set(n.applied_index() as i64);
        let ready = n.leader().is_some() && n.failure().is_none();
        m.ready.store(ready, std::sync::atomic::Ordering::Relaxed);
    }

    fn execute(&mut self, effect: Effect, ctx: &mut Context<Self>) {
        match effect {
            Effect::Send { to, bytes } => {
                if let Some((_, link)) = self.peers.get(&to) {
                    link.do_send(RaftOut(bytes));
                }
            }
            Effect::Persist { token } => {
                let batch = self.node.storage_mut().take_batch();
                let job = WriteJob { token, batch };
                if let Some(writer) = &self.writer {
                    if writer.send(job).is_err() {
                        tracing::error!("the log writer is gone; stopping");
                        ctx.stop();
                    }
                }
            }
            Effect::Reply {
                client,
                seq,
                outcome,
            } => {
                let label = outcome_label(&outcome);
                for waiter in self.waiting.remove(&(client, seq)).into_iter().flatten() {
                    let labels = RequestLabels {
                        kind: waiter.kind,
                        outcome: label,
                    };
                    let seconds = waiter.since.elapsed().as_secs_f64();
                    self.metrics
                        .request_seconds
                        .get_or_create(&labels)
                        .observe(seconds);
                    let _ = waiter.tx.send(outcome.clone());
                }
            }
            Effect::RoleChanged { role, term, leader } => {
                tracing::info!(?role, term, ?leader, "role changed");
            }
            Effect::Failed { error } => {
                tracing::error!(%error, "the Raft log failed; the node stops");
                System::current().stop_with_code(2);
            }
            Effect::LostLog { node, had, has } => {
                tracing::warn!(
                    peer = node,
                    had,
                    has,
                    "a follower lost its log (wiped?): probing it from scratch"
                );
            }
            Effect::Proposed { commands } => {
                self.metrics.batch_commands.observe(commands as f64);
            }
            Effect::ConfChanged { voters, learners } => {
                tracing::info!(?voters, ?learners, "membership changed");
                self.close_departed(&voters, &learners);
                if self.node.is_removed() {
                    tracing::warn!("this node was removed from the cluster; stopping");
                    System::current().stop();
                }
            }
            _ => {}
        }
    }

    /// Closes the links of voters that left the configuration.
    fn close_departed(&mut self, voters: &[u64], learners: &[u64]) {
        let before = std::mem::replace(&mut self.voters, voters.to_vec());
        for id in before {
            if voters.contains(&id) || learners.contains(&id) {
                continue;
            }
            if let Some((_, link)) = self.peers.remove(&id) {
                link.do_send(Close);
            }
        }
    }

    /// Starts the log-writer thread: raft-engine writes and fsyncs happen
    /// there, in order, while the node goes on.
    fn start_writer(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = mpsc::channel::<WriteJob>();
        let writer = self.log_writer.clone();
        let fsync = self.metrics.fsync_seconds.clone();
        let addr = ctx.address();
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                for mut job in rx {
                    let started = Instant::now();
                    let (mark, failed) = match job.batch.as_mut() {
                        Some(b) => (b.mark, writer.write(&mut b.batch).err().map(|e| e.0)),
                        None => (0, None),
                    };
                    if mark > 0 {
                        fsync.observe(started.elapsed().as_secs_f64());
                    }
                    addr.do_send(Persisted {
                        token: job.token,
                        mark,
                        failed,
                    });
                }
            });
        match spawned {
            Ok(_) => self.writer = Some(tx),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the log writer");
                System::current().stop_with_code(2);
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_writer(ctx);
        ctx.run_interval(self.tick, |actor, ctx| {
            actor.node.tick();
            actor.drain(ctx);
        });
        self.drain(ctx);
    }
}

impl Handler<Step> for NodeActor {
    type Result = ();

    fn handle(&mut self, msg: Step, ctx: &mut Context<Self>) {
        if let Err(e) = self.node.step(msg.from, &msg.bytes) {
            tracing::warn!(from = msg.from, error = %e, "dropped a bad raft message");
        }
        self.drain(ctx);
    }
}

impl Handler<ClientRequest> for NodeActor {
    type Result = MessageResult<ClientRequest>;

    fn handle(&mut self, msg: ClientRequest, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let envelope = msg.0;
        let key = (envelope.client, envelope.seq);
        let kind = match envelope.request {
            Request::Query(_) => "query",
            Request::Command(_) => "command",
        };
        let since = Instant::now();
        self.waiting
            .entry(key)
            .or_default()
            .push(Waiter { tx, since, kind });
        if kind == "command" {
            self.metrics.proposals.inc();
        }
        // The core routes it: a command into the next entry, a query to a
        // ReadIndex read, `NotLeader` when this node does not lead.
        self.node.propose(now_ms(), envelope);
        if !self.flush_queued {
            self.flush_queued = true;
            ctx.notify(Flush);
        }
        MessageResult(rx)
    }
}

impl Handler<Flush> for NodeActor {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.flush_queued = false;
        self.drain(ctx);
    }
}

impl Handler<Persisted> for NodeActor {
    type Result = ();

    fn handle(&mut self, msg: Persisted, ctx: &mut Context<Self>) {
        if let Some(error) = msg.failed {
            tracing::error!(%error, "an fsync failed; the node stops");
            self.fail_waiting(&error);
            System::current().stop_with_code(2);
            return;
        }
        if msg.mark > 0 {
            self.node.storage_mut().durable_through(msg.mark);
        }
        self.node.persisted(msg.token);
        self.drain(ctx);
    }
}

impl NodeActor {
    fn fail_waiting(&mut self, error: &str) {
        for (_, waiters) in self.waiting.drain() {
            for w in waiters {
                let _ = w.tx.send(Err(FloeError::Unavailable(format!(
                    "the node stopped: {error}"
                ))));
            }
        }
    }
}

impl Handler<RoutePart> for NodeActor {
    type Result = ResponseFuture<Option<floe_protocol::Message>>;

    fn handle(&mut self, msg: RoutePart, _: &mut Context<Self>) -> Self::Result {
        let link = self.peers.get(&msg.from).map(|(_, link)| link.clone());
        Box::pin(async move {
            match link {
                Some(link) => link.send(msg.part).await.ok(),
                None => None,
            }
        })
    }
}

impl Handler<LearnPeer> for NodeActor {
    type Result = ();

    fn handle(&mut self, msg: LearnPeer, ctx: &mut Context<Self>) {
        let LearnPeer { id, addr } = msg;
        if id == self.template.me || self.node.is_removed() {
            return;
        }
        let addr = self.configured.get(&id).copied().unwrap_or(addr);
        match self.peers.get(&id) {
            Some((known, _)) if *known == addr => return,
            Some((known, link)) => {
                tracing::info!(peer = id, from = %known, to = %addr, "a peer moved");
                link.do_send(Close);
            }
            None => tracing::info!(peer = id, %addr, "learned a new peer's address"),
        }
        let to = self.template.for_peer(id, addr);
        let link = PeerLink::new(to, ctx.address(), self.metrics.clone()).start();
        self.peers.insert(id, (addr, link));
    }
}

impl Handler<GetStatus> for NodeActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let n = &self.node;
        MessageResult(NodeStatus {
            id: n.id(),
            role: role_name(n.role()).into(),
            term: n.term(),
            leader: n.leader(),
            commit: n.commit_index(),
            applied: n.applied_index(),
            voters: n.voters(),
            failure: n.failure().map(|e| e.0.clone()),
            pid: std::process::id(),
        })
    }
}

/// How a request ended, as a metrics label.
fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Ok(floe_protocol::Reply::Committed {
            rebased_over: 0, ..
        }) => "landed",
        Ok(floe_protocol::Reply::Committed { .. }) => "fast_forwarded",
        Ok(_) => "ok",
        Err(FloeError::Conflict { .. }) => "conflict",
        Err(FloeError::OutOfDate { .. }) => "out_of_date",
        Err(FloeError::NotLeader { .. }) => "not_leader",
        Err(_) => "error",
    }
}

/// A role's name in status output.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}
