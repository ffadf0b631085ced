//! The Raft node core: raft-rs's [`RawNode`] wrapped with a replicated
//! [`StateMachine`], as a pure deterministic state machine (sans-IO).
//!
//! A shell drives it: it feeds logical ticks, peer messages, client
//! commands and reads, reports finished fsyncs, and executes the
//! [`Effect`]s drained with [`Node::poll`]:
//!
//! ```ignore
//! node.tick();                       // one logical tick
//! node.step(from, &bytes)?;          // a peer's protobuf-encoded raft message
//! node.propose(now_ms, envelope);    // a client command (or query)
//! node.read(query, client, seq);     // a linearizable read (ReadIndex)
//! node.persisted(token);             // the fsync asked by Persist{token} is done
//! while let Some(effect) = node.poll() { shell.execute(effect) }
//! ```
//!
//! The work happens in `poll` when its queue is empty: commands proposed
//! since the last drain become one log entry ([`Batch`]), then raft-rs's
//! ready loop runs until there is nothing left to do. Persistence is
//! asynchronous: a ready that must be durable yields [`Effect::Persist`], and
//! what depends on it (raft's "persisted messages", the local ack of the
//! appended entries, hence commits and replies) waits for
//! [`Node::persisted`].

mod apply;
mod raft_log;
mod ready;
mod wire;

pub use wire::Batch;

use std::collections::{BTreeMap, VecDeque};

use floe_protocol::{
    ClientId, Command, Envelope, FloeError, MemberChange, Outcome, Query, Reply, Request,
};
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Snapshot};
use raft::{Config, RawNode, ReadOnlyOption, StateRole};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::machine::StateMachine;
use crate::storage::{LogError, LogStore, MemStorage};

/// Where a fresh cluster's log starts: every bootstrapped node holds a
/// snapshot at this index with the initial voters, so nodes added later
/// always catch up by snapshot first (as TiKV does) and never replay a log
/// whose starting configuration they do not know.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// Planted bugs for the simulation's self-test (see DESIGN.md §5). Off by
/// default; each must be caught by the simulation's oracles.
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeBugs {
    /// The leader applies its own entries and replies as soon as it appends
    /// them, before they are committed (or even fsynced): an acknowledged
    /// command is lost if the leader then crashes or is deposed.
    pub reply_before_commit: bool,
    /// A follower restores a snapshot older than what it has applied (a
    /// delayed duplicate), rolling its state back.
    pub apply_snapshot_out_of_order: bool,
    /// Every node answers reads at once from its own applied state, with no
    /// ReadIndex round: a follower or a deposed leader serves stale reads.
    pub serve_stale_reads: bool,
    /// The leader ignores a follower's word that it lost its log and keeps
    /// believing what it acknowledged before: the wiped node never catches
    /// up.
    pub ignore_lost_log: bool,
}

/// Static configuration of one node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's id (non-zero).
    pub id: u64,
    /// The initial voters, this node included, when bootstrapping a new
    /// cluster; empty for a node that joins an existing one (it waits for
    /// the leader's snapshot). Ignored when the storage already holds state.
    pub peers: Vec<u64>,
    /// Seeds the election-timeout RNG (mixed with `id`).
    pub seed: u64,
    /// Ticks without a leader before an election; the randomized timeout is
    /// drawn from `[election_tick, 2 * election_tick)`.
    pub election_tick: usize,
    /// Ticks between leader heartbeats (less than `election_tick`).
    pub heartbeat_tick: usize,
    /// Take a state-machine snapshot and compact the log every this many
    /// applied entries (0: only after membership changes).
    pub snapshot_every: u64,
    /// Emit [`Effect::Applied`] with the state digest at every applied index
    /// that is a multiple of this (0: never; digests can be costly).
    pub digest_every: u64,
    /// Most commands in one log entry.
    pub max_batch: usize,
    /// Ticks after which an unanswered read is answered `Unavailable`.
    pub read_timeout_ticks: u64,
    /// This node lost its data directory while a member (it may have
    /// acknowledged entries it no longer holds): it refuses to vote until
    /// a leader has given it the state. A brand-new node never
    /// acknowledged anything and votes at once.
    pub lost_data: bool,
    /// Planted bugs (simulation self-test only).
    #[cfg(feature = "planted-bugs")]
    pub bugs: NodeBugs,
}

impl NodeConfig {
    /// Defaults: election after 10 ticks, heartbeat every 3, a snapshot
    /// every 1000 entries, a digest at every index, 256 commands per entry.
    pub fn new(id: u64, peers: Vec<u64>, seed: u64) -> Self {
        Self {
            id,
            peers,
            seed,
            election_tick: 10,
            heartbeat_tick: 3,
            snapshot_every: 1000,
            digest_every: 1,
            max_batch: 256,
            read_timeout_ticks: 20,
            lost_data: false,
            #[cfg(feature = "planted-bugs")]
            bugs: NodeBugs::default(),
        }
    }
}

/// A node's Raft role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Probing whether an election could be won (pre-vote).
    PreCandidate,
    /// Running for election.
    Candidate,
    /// Leads: takes commands and reads.
    Leader,
}

impl From<StateRole> for Role {
    fn from(r: StateRole) -> Self {
        match r {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// Marks the append rejections of a node that lost its log (see
/// [`NodeConfig::lost_data`]), in the Raft message's context field.
pub const LOST_LOG: &[u8] = b"floe:lost-log";

/// What the shell must do, in the order [`Node::poll`] returns them.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Deliver a raft message (protobuf `eraftpb::Message` bytes) to a peer,
    /// e.g. as `floe_protocol::Message::Raft`. Loss, delay and reordering
    /// are tolerated.
    Send {
        /// The peer's node id.
        to: u64,
        /// The encoded message.
        bytes: Vec<u8>,
    },
    /// Make every write to the log store made so far durable (fsync), then
    /// call [`Node::persisted`] with this token. Tokens increase; reporting
    /// one reports all earlier ones. A crash before that loses the writes.
    Persist {
        /// Echo it to [`Node::persisted`].
        token: u64,
    },
    /// Answer a client.
    Reply {
        /// The client.
        client: ClientId,
        /// Its request's sequence number.
        seq: u64,
        /// The answer.
        outcome: Outcome,
    },
    /// The state machine reached `index`, with this digest (emitted every
    /// [`NodeConfig::digest_every`] indexes and after a snapshot restore):
    /// replicas must agree at equal indexes.
    Applied {
        /// The applied log index.
        index: u64,
        /// [`StateMachine::digest`] after applying it.
        digest: u64,
    },
    /// Role, term or known leader changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The current term.
        term: u64,
        /// The leader, if known.
        leader: Option<u64>,
    },
    /// A log-store write or fsync failed: the node stopped for good (it
    /// answers every request `NotLeader` and ignores peers). The shell should
    /// report it and shut the node down; a restart recovers from what the
    /// store made durable.
    Failed {
        /// What failed.
        error: LogError,
    },
    /// The leader found that a follower lost entries it had acknowledged
    /// (its data directory was wiped) and probes it again from scratch.
    LostLog {
        /// The follower.
        node: u64,
        /// The index it had acknowledged.
        had: u64,
        /// Its last index now.
        has: u64,
    },
    /// As leader, proposed one Raft entry carrying `commands` client
    /// commands (group commit: what arrived since the last drain, up to
    /// [`NodeConfig::max_batch`]). For metrics.
    Proposed {
        /// Commands in the entry.
        commands: usize,
    },
    /// The configuration changed: the voters and learners now.
    ConfChanged {
        /// Voting members, sorted.
        voters: Vec<u64>,
        /// Learners, sorted.
        learners: Vec<u64>,
    },
}

/// Why a node could not be built or refused a peer's message.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum NodeError {
    /// The bytes are not a protobuf raft message.
    #[error("undecodable raft message: {0}")]
    Decode(String),
    /// A decodable message that no correct peer sends here.
    #[error("refused raft message: {0}")]
    Refused(String),
    /// raft-rs refused (bad config, message from an unknown peer, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// The state machine refused its snapshot.
    #[error("state machine: {0}")]
    Machine(FloeError),
    /// The log store could not be written while setting the node up.
    #[error("{0}")]
    Storage(#[from] LogError),
}

impl From<raft::Error> for NodeError {
    fn from(e: raft::Error) -> Self {
        NodeError::Raft(e.to_string())
    }
}

/// Who to answer for a command or read.
#[derive(Clone, Copy, Debug)]
struct Caller {
    client: ClientId,
    seq: u64,
}

/// A batch this node proposed as leader: answered when the entry at its
/// index is applied with the same term, or `NotLeader` otherwise.
#[derive(Debug)]
struct Proposal {
    term: u64,
    callers: Vec<Caller>,
}

/// A linearizable read waiting for its read index, then for apply.
#[derive(Debug)]
struct PendingRead {
    query: Query,
    caller: Caller,
    deadline: u64,
}

/// A ready handed to raft with `advance_append_async` whose persisted
/// messages wait for the fsync of everything written up to `mark`.
#[derive(Debug)]
struct InFlight {
    number: u64,
    mark: u64,
    must_sync: bool,
    messages: Vec<raft::eraftpb::Message>,
}

/// A Raft replica of a [`StateMachine`] over a [`LogStore`]; see the module
/// docs for how to drive it.
pub struct Node<S: StateMachine, L: LogStore = MemStorage> {
    cfg: NodeConfig,
    raw: RawNode<L>,
    machine: S,
    rng: SmallRng,
    effects: VecDeque<Effect>,
    ticks: u64,
    /// Leader timestamps: the highest time proposed or applied here.
    clock: u64,
    /// The last index reflected in `machine`.
    applied: u64,
    /// Index of the snapshot held by the store.
    snapshot_index: u64,
    force_snapshot: bool,
    /// Commands proposed since the last drain: the next entry.
    batch: Vec<Envelope>,
    proposals: BTreeMap<u64, Proposal>,
    reads_waiting: Vec<PendingRead>,
    reads_issued: BTreeMap<u64, Vec<PendingRead>>,
    reads_ready: Vec<(u64, Vec<PendingRead>)>,
    next_read_ctx: u64,
    in_flight: VecDeque<InFlight>,
    /// Peers we just sent a snapshot to (reported to raft after advance).
    snapshots_sent: Vec<u64>,
    /// (role, term, leader) as last observed.
    seen: (Role, u64, Option<u64>),
    /// This node applied a configuration without itself: it is out of the
    /// group for good and drives raft no more.
    removed: bool,
    /// A log-store write failed: the node stopped for good.
    failure: Option<LogError>,
}

impl<S: StateMachine> Node<S, MemStorage> {
    /// A node of a new cluster (`config.peers` non-empty) or one that will
    /// join an existing cluster (`config.peers` empty), on fresh in-memory
    /// storage. `machine` is a fresh state machine.
    pub fn bootstrap(config: NodeConfig, machine: S) -> Result<Self, NodeError> {
        Self::new(config, machine, MemStorage::new())
    }
}

impl<S: StateMachine, L: LogStore> Node<S, L> {
    /// Builds a node over `storage`: bootstraps it when it is empty and
    /// `config.peers` is not, otherwise resumes from what it holds.
    /// `machine` must be fresh; it is restored from the stored snapshot.
    pub fn new(config: NodeConfig, mut machine: S, mut storage: L) -> Result<Self, NodeError> {
        if !storage.initial_state()?.initialized() && !config.peers.is_empty() {
            let snap = bootstrap_snapshot(&config.peers, &machine)?;
            storage.install_snapshot(&snap)?;
            // The initial configuration is durable from birth.
            let mark = storage.mark();
            storage.sync(mark)?;
        }
        let snap = storage.last_snapshot();
        let applied = snap.get_metadata().index;
        let mut clock = 0;
        if applied > 0 {
            let (time_ms, state) = wire::decode_snapshot_data(&snap)?;
            machine.restore(state).map_err(NodeError::Machine)?;
            clock = time_ms;
        }
        let raw = RawNode::new(
            &raft_config(&config, applied)?,
            storage,
            &raft_log::logger(),
        )?;
        let rng =
            SmallRng::seed_from_u64(config.seed ^ config.id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut node = Self {
            cfg: config,
            raw,
            machine,
            rng,
            effects: VecDeque::new(),
            ticks: 0,
            clock,
            applied,
            snapshot_index: applied,
            force_snapshot: false,
            batch: Vec::new(),
            proposals: BTreeMap::new(),
            reads_waiting: Vec::new(),
            reads_issued: BTreeMap::new(),
            reads_ready: Vec::new(),
            next_read_ctx: 0,
            in_flight: VecDeque::new(),
            snapshots_sent: Vec::new(),
            seen: (Role::Follower, 0, None),
            removed: false,
            failure: None,
        };
        node.seen = node.observed();
        node.draw_election_timeout();
        Ok(node)
    }

    /// Rebuilds a node after a crash from what its storage made durable
    /// (e.g. [`MemStorage::durable`]): the state machine is restored from the
    /// stored snapshot and the committed log after it is applied again.
    pub fn restart(config: NodeConfig, machine: S, durable: L) -> Result<Self, NodeError> {
        Self::new(config, machine, durable)
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        if self.halted() {
            return;
        }
        self.ticks += 1;
        let was_leader = self.is_leader();
        // A non-leader's tick returning true started an election, which
        // reset the election timeout even if role and term look unchanged
        // (a pre-candidate trying again).
        let campaigned = self.raw.tick() && !was_leader;
        self.expire_reads();
        self.observe(campaigned);
    }

    /// Feeds a peer's message (protobuf bytes of `eraftpb::Message`).
    /// Undecodable, misaddressed or malformed messages are refused with an
    /// error and change nothing.
    pub fn step(&mut self, from: u64, bytes: &[u8]) -> Result<(), NodeError> {
        let msg = wire::decode_message(bytes)?;
        if self.halted() {
            return Ok(());
        }
        if self.answers_lost_log(&msg) {
            return Ok(());
        }
        wire::check_message(&self.raw.raft, from, &msg)?;
        if self.votes_unsafely(&msg) {
            return Ok(());
        }
        self.forget_lost_progress(&msg);
        #[cfg(feature = "planted-bugs")]
        self.bug_restore_stale_snapshot(&msg);
        let stepped = self.raw.step(msg).map_err(NodeError::from);
        self.observe(false);
        stepped
    }

    /// A node that lost its directory ([`NodeConfig::lost_data`]) and holds
    /// no configuration yet may have acknowledged entries it no longer has:
    /// its vote could elect a leader missing acknowledged commits. It votes
    /// only once a leader has given it the state.
    fn votes_unsafely(&self, msg: &raft::eraftpb::Message) -> bool {
        use raft::eraftpb::MessageType::{MsgRequestPreVote, MsgRequestVote};
        let asks_vote = matches!(msg.get_msg_type(), MsgRequestVote | MsgRequestPreVote);
        asks_vote && self.lost_its_log()
    }

    /// A leader that still believes we hold what we acknowledged before we
    /// lost our log heartbeats us with a commit index past it (raft-rs
    /// would abort on that) and sends no appends we could reject. Answer
    /// with a rejection marked [`LOST_LOG`], so that it probes us again.
    fn answers_lost_log(&mut self, msg: &raft::eraftpb::Message) -> bool {
        use raft::eraftpb::MessageType::{MsgAppendResponse, MsgHeartbeat};
        let last = self.raw.raft.raft_log.last_index();
        if msg.get_msg_type() != MsgHeartbeat || msg.commit <= last || !self.lost_its_log() {
            return false;
        }
        let mut reject = raft::eraftpb::Message::default();
        reject.set_msg_type(MsgAppendResponse);
        reject.from = self.id();
        reject.to = msg.from;
        reject.term = msg.term;
        reject.index = msg.commit;
        reject.reject = true;
        reject.reject_hint = last;
        self.send(vec![reject]);
        true
    }

    /// True while this node rebuilds a lost directory: it has not yet
    /// been given the state and cannot vote (operators wait for it before
    /// other membership changes or restarts).
    pub fn rebuilding(&self) -> bool {
        self.lost_its_log()
    }

    /// This node lost its directory and has not yet been given the state.
    fn lost_its_log(&self) -> bool {
        self.cfg.lost_data && self.raw.raft.prs().conf().voters().ids().is_empty()
    }

    /// A follower that lost its directory and rejoined (it says so in its
    /// rejections, [`LOST_LOG`]) has a last index below what it once
    /// acknowledged. raft-rs would take its rejections for stale ones and
    /// never send it anything again (its heartbeats would even commit past
    /// the follower's log), so the leader forgets what the follower had
    /// matched and probes it from its real last index: entries, or a
    /// snapshot when those are compacted. Lowering a match index never
    /// uncommits anything. (An ordinary rejection with a low hint is no
    /// such sign: a delayed one arrives after later acknowledgements.)
    fn forget_lost_progress(&mut self, msg: &raft::eraftpb::Message) {
        use raft::eraftpb::MessageType::MsgAppendResponse;
        let lost = msg.get_msg_type() == MsgAppendResponse && msg.reject && msg.context == LOST_LOG;
        if !self.is_leader() || !lost {
            return;
        }
        #[cfg(feature = "planted-bugs")]
        if self.cfg.bugs.ignore_lost_log {
            return;
        }
        let Some(pr) = self.raw.raft.mut_prs().get_mut(msg.from) else {
            return;
        };
        if msg.reject_hint >= pr.matched {
            return;
        }
        let had = pr.matched;
        pr.become_probe();
        pr.matched = msg.reject_hint;
        pr.next_idx = msg.reject_hint + 1;
        self.effects.push_back(Effect::LostLog {
            node: msg.from,
            had,
            has: msg.reject_hint,
        });
    }

    /// Submits a client request. A command joins the entry proposed at the
    /// next drain and is answered once applied; a query is a [`Node::read`].
    /// A non-leader answers `NotLeader` at once. `now_ms` is the shell's
    /// clock; the leader stamps entries with it, made monotonic.
    pub fn propose(&mut self, now_ms: u64, envelope: Envelope) {
        self.clock = self.clock.max(now_ms);
        let caller = Caller {
            client: envelope.client,
            seq: envelope.seq,
        };
        match envelope.request {
            Request::Query(query) => self.read(query, caller.client, caller.seq),
            Request::Command(_) if !self.is_leader() || self.halted() => {
                self.reply_not_leader(caller)
            }
            Request::Command(Command::ChangeMembers(change)) => {
                let outcome = self.change_members(change);
                self.reply(caller, outcome);
            }
            Request::Command(_) => self.batch.push(envelope),
        }
    }

    /// A linearizable read: the leader confirms its leadership with a quorum
    /// (ReadIndex) and answers with [`StateMachine::query`] once it applied
    /// up to the read index. A non-leader answers `NotLeader`.
    pub fn read(&mut self, query: Query, client: ClientId, seq: u64) {
        let caller = Caller { client, seq };
        #[cfg(feature = "planted-bugs")]
        if self.cfg.bugs.serve_stale_reads && !self.halted() {
            let outcome = self.machine.query(&query);
            return self.reply(caller, outcome);
        }
        if !self.is_leader() || self.halted() {
            return self.reply_not_leader(caller);
        }
        let deadline = self.ticks + self.cfg.read_timeout_ticks;
        self.reads_waiting.push(PendingRead {
            query,
            caller,
            deadline,
        });
    }

    /// Reports that the fsync asked by `Effect::Persist{token}` (and so every
    /// earlier one) finished. Stale or repeated tokens are ignored.
    pub fn persisted(&mut self, token: u64) {
        if self.halted() {
            return;
        }
        self.release_persisted(token);
        self.observe(false);
    }

    /// Drains one effect, running the ready loop when none is queued.
    pub fn poll(&mut self) -> Option<Effect> {
        if self.effects.is_empty() && !self.halted() {
            self.drive();
        }
        self.effects.pop_front()
    }

    /// Starts an election now instead of waiting for the timeout.
    pub fn campaign(&mut self) -> Result<(), NodeError> {
        if self.halted() {
            return Err(NodeError::Refused(
                "this node was removed from the group or its log store failed".into(),
            ));
        }
        let result = self.raw.campaign().map_err(NodeError::from);
        self.observe(false);
        result
    }

    /// Asks the leader to hand leadership to `to` (e.g. before removing
    /// itself). Best effort; watch [`Effect::RoleChanged`].
    pub fn transfer_leader(&mut self, to: u64) {
        if self.halted() {
            return;
        }
        self.raw.transfer_leader(to);
        self.observe(false);
    }

    /// Proposes adding `id` as a voter. Only the leader accepts, one change
    /// at a time; watch [`Effect::ConfChanged`] for the outcome. The new node
    /// starts with empty storage and `peers` empty, and catches up by
    /// snapshot.
    pub fn add_node(&mut self, id: u64) -> Result<(), FloeError> {
        if self.halted() {
            return Err(FloeError::NotLeader { leader_hint: None });
        }
        self.change_membership(id, ConfChangeType::AddNode)
    }

    /// Proposes removing `id`. The leader cannot remove itself: transfer
    /// leadership first.
    pub fn remove_node(&mut self, id: u64) -> Result<(), FloeError> {
        if self.halted() {
            return Err(FloeError::NotLeader { leader_hint: None });
        }
        if id == self.id() {
            return Err(FloeError::Unavailable(
                "the leader cannot remove itself; transfer leadership first".into(),
            ));
        }
        self.change_membership(id, ConfChangeType::RemoveNode)
    }

    /// A client's [`Command::ChangeMembers`]: proposed unless already in
    /// effect.
    fn change_members(&mut self, change: MemberChange) -> Outcome {
        let voters = self.voters();
        match change {
            MemberChange::Add { id } if voters.contains(&id) => Ok(Reply::Done),
            MemberChange::Remove { id } if !voters.contains(&id) => Ok(Reply::Done),
            MemberChange::Add { id: 0 } => Err(FloeError::BadMemberChange {
                why: "node id 0 is reserved by Raft; pick another".into(),
            }),
            MemberChange::Remove { id } if id == self.id() => Err(FloeError::BadMemberChange {
                why: format!(
                    "node {id} leads the cluster and cannot remove itself; \
                     stop it (another member takes over) and try again"
                ),
            }),
            MemberChange::Add { id } => self.add_node(id).map(|()| Reply::Done),
            MemberChange::Remove { id } => self.remove_node(id).map(|()| Reply::Done),
        }
    }

    /// The log store, mutably: for fault injection only (e.g.
    /// [`MemStorage::break_disk`]); raft owns its contents.
    pub fn storage_mut(&mut self) -> &mut L {
        self.raw.mut_store()
    }

    /// The log-store failure that stopped this node, if any (see
    /// [`Effect::Failed`]).
    pub fn failure(&self) -> Option<&LogError> {
        self.failure.as_ref()
    }

    /// Removed or failed: the node drives raft no more.
    fn halted(&self) -> bool {
        self.removed || self.failure.is_some()
    }

    /// True once this node applied a configuration that does not include
    /// it: it answers every request `NotLeader`, ignores peers, and the
    /// shell should shut it down.
    pub fn is_removed(&self) -> bool {
        self.removed
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.raw.raft.state.into()
    }

    /// True when this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&id| id != 0)
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The last log index reflected in the state machine.
    pub fn applied_index(&self) -> u64 {
        self.applied
    }

    /// The highest log index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The state machine's digest at [`Node::applied_index`].
    pub fn digest(&self) -> u64 {
        self.machine.digest()
    }

    /// The replicated state machine (read-only).
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// The log store (e.g. to take its durable part after a crash).
    pub fn storage(&self) -> &L {
        self.raw.store()
    }

    /// The current voters, sorted.
    pub fn voters(&self) -> Vec<u64> {
        sorted(self.raw.raft.prs().conf().to_conf_state().voters)
    }

    fn change_membership(&mut self, id: u64, kind: ConfChangeType) -> Result<(), FloeError> {
        if !self.is_leader() {
            return Err(FloeError::NotLeader {
                leader_hint: self.leader(),
            });
        }
        let raft = &self.raw.raft;
        if raft.pending_conf_index > raft.raft_log.applied {
            return Err(FloeError::Unavailable(
                "a membership change is still in progress".into(),
            ));
        }
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        let proposed = self.raw.propose_conf_change(Vec::new(), cc);
        self.observe(false);
        proposed.map_err(|e| FloeError::Unavailable(e.to_string()))
    }

    fn reply_not_leader(&mut self, caller: Caller) {
        let leader_hint = self.leader().filter(|_| !self.halted());
        let outcome = Err(FloeError::NotLeader { leader_hint });
        self.reply(caller, outcome);
    }

    fn reply(&mut self, caller: Caller, outcome: Outcome) {
        self.effects.push_back(Effect::Reply {
            client: caller.client,
            seq: caller.seq,
            outcome,
        });
    }

    fn observed(&self) -> (Role, u64, Option<u64>) {
        (self.role(), self.term(), self.leader())
    }

    /// Notices role, term and leader changes after every input: raft-rs
    /// re-draws its election timeout from an unseeded RNG whenever it resets
    /// (any role or term change, or a new campaign), so we overwrite it from
    /// our seeded one; a leader that lost leadership fails what it holds.
    fn observe(&mut self, campaigned: bool) {
        let now = self.observed();
        let (role, term, _) = self.seen;
        if now.0 != role || now.1 != term || campaigned {
            self.draw_election_timeout();
        }
        if now == self.seen {
            return;
        }
        if role == Role::Leader && now.0 != Role::Leader {
            self.abdicate();
        }
        self.seen = now;
        self.effects.push_back(Effect::RoleChanged {
            role: now.0,
            term: now.1,
            leader: now.2,
        });
    }

    fn draw_election_timeout(&mut self) {
        let base = self.cfg.election_tick;
        let timeout = self.rng.gen_range(base..2 * base);
        self.raw.raft.set_randomized_election_timeout(timeout);
    }

    /// Answers everything a former leader still holds with `NotLeader`: the
    /// clients retry with the same (client, seq) at the new leader, and the
    /// state machine's idempotency table makes that exactly-once.
    fn abdicate(&mut self) {
        let mut callers: Vec<Caller> = self.batch.drain(..).map(|e| caller_of(&e)).collect();
        for (_, p) in std::mem::take(&mut self.proposals) {
            callers.extend(p.callers);
        }
        let reads = self.reads_waiting.drain(..);
        let issued = std::mem::take(&mut self.reads_issued)
            .into_values()
            .flatten();
        let ready = std::mem::take(&mut self.reads_ready)
            .into_iter()
            .flat_map(|(_, r)| r);
        callers.extend(reads.chain(issued).chain(ready).map(|r| r.caller));
        for caller in callers {
            self.reply_not_leader(caller);
        }
    }

    /// Answers reads that waited too long `Unavailable` (a lost heartbeat
    /// can leave a ReadIndex unconfirmed); the client retries.
    fn expire_reads(&mut self) {
        let now = self.ticks;
        let mut expired = Vec::new();
        let mut keep = |r: PendingRead| {
            if r.deadline <= now {
                expired.push(r.caller);
                None
            } else {
                Some(r)
            }
        };
        let waiting = std::mem::take(&mut self.reads_waiting);
        self.reads_waiting = waiting.into_iter().filter_map(&mut keep).collect();
        for reads in self.reads_issued.values_mut() {
            *reads = std::mem::take(reads)
                .into_iter()
                .filter_map(&mut keep)
                .collect();
        }
        for (_, reads) in self.reads_ready.iter_mut() {
            *reads = std::mem::take(reads)
                .into_iter()
                .filter_map(&mut keep)
                .collect();
        }
        self.reads_issued.retain(|_, r| !r.is_empty());
        self.reads_ready.retain(|(_, r)| !r.is_empty());
        for caller in expired {
            let outcome = Err(FloeError::Unavailable("read timed out".into()));
            self.reply(caller, outcome);
        }
    }
}

fn caller_of(e: &Envelope) -> Caller {
    Caller {
        client: e.client,
        seq: e.seq,
    }
}

fn sorted(mut ids: Vec<u64>) -> Vec<u64> {
    ids.sort_unstable();
    ids
}

fn raft_config(cfg: &NodeConfig, applied: u64) -> Result<Config, NodeError> {
    let config = Config {
        id: cfg.id,
        election_tick: cfg.election_tick,
        heartbeat_tick: cfg.heartbeat_tick,
        applied,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        // A partitioned leader steps down, and a node coming back from a
        // partition does not disrupt the cluster with a higher term.
        check_quorum: true,
        pre_vote: true,
        read_only_option: ReadOnlyOption::Safe,
        ..Config::default()
    };
    config.validate()?;
    Ok(config)
}

/// The snapshot every bootstrapped node starts from: the initial voters and
/// the fresh state machine, at [`BOOTSTRAP_INDEX`], term 1.
fn bootstrap_snapshot<S: StateMachine>(voters: &[u64], machine: &S) -> Result<Snapshot, NodeError> {
    let mut snap = Snapshot::default();
    let meta = snap.mut_metadata();
    meta.index = BOOTSTRAP_INDEX;
    meta.term = 1;
    meta.mut_conf_state().voters = sorted(voters.to_vec());
    let state = machine.snapshot().map_err(NodeError::Machine)?;
    snap.data = wire::encode_snapshot_data(snap.get_metadata(), 0, &state).into();
    Ok(snap)
}
