//! Commands (replicated, mutating), queries (read-only), replies and the
//! records they carry.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::array::ArrayMeta;
use crate::error::FloeError;
use crate::footprint::{Conflict, Footprint};
use crate::ids::{
    ArrayPath, BranchName, ClientId, CommitId, ObjectId, RepoName, SessionId, TagName, TaskId,
    WorkerId,
};
use crate::region::Region;

/// How a commit whose base is no longer the branch tip is treated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitMode {
    /// Refuse with `OutOfDate{tip}`; the client may ask `CanFastForward` and
    /// commit again on the new tip (the seed's loop).
    #[default]
    Strict,
    /// Fast-forward server-side, atomically, in one round trip: land on the
    /// tip unless a commit since the base conflicts.
    Rebase {
        /// How chunk double-updates are resolved.
        solver: Solver,
    },
}

/// Resolution of chunk double-updates during a rebase (as Icechunk's
/// `BasicConflictSolver`). Other conflict kinds always fail.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Solver {
    /// Any conflict fails the commit.
    #[default]
    Fail,
    /// Our chunks win.
    Ours,
    /// Their chunks win: ours are dropped from the commit.
    Theirs,
}

/// A non-cooperative commit: the session's changes on top of `base`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitRequest {
    /// The repo.
    pub repo: RepoName,
    /// The branch to advance.
    pub branch: BranchName,
    /// The commit the session was checked out at.
    pub base: CommitId,
    /// What the session touched.
    pub footprint: Footprint,
    /// Delta manifests holding the written chunks.
    pub deltas: Vec<ObjectId>,
    /// Commit message.
    pub message: String,
    /// Who wrote it.
    pub author: String,
    /// What to do if the branch moved.
    pub mode: CommitMode,
}

/// One task of a cooperative plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTask {
    /// The array written.
    pub array: ArrayPath,
    /// A chunk-aligned region of it.
    pub region: Region,
}

/// Everything that changes state. Applied in log order by every replica.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Creates a repo with a `main` branch at a root commit `C0`.
    CreateRepo {
        /// The new repo.
        repo: RepoName,
    },
    /// Creates a branch at a commit.
    CreateBranch {
        /// The repo.
        repo: RepoName,
        /// The new branch.
        branch: BranchName,
        /// Where it starts.
        at: CommitId,
    },
    /// Creates an immutable tag.
    CreateTag {
        /// The repo.
        repo: RepoName,
        /// The new tag.
        tag: TagName,
        /// The commit tagged.
        at: CommitId,
    },
    /// A non-cooperative commit.
    Commit(CommitRequest),
    /// Opens a cooperative session on a branch.
    OpenSession {
        /// The repo.
        repo: RepoName,
        /// The branch the session will commit to.
        branch: BranchName,
        /// Chunk-aligned, pairwise disjoint tasks; `None` for a planless
        /// session whose writers contribute freely (overlaps are refused).
        plan: Option<Vec<PlannedTask>>,
        /// Lease length for claimed tasks, in milliseconds.
        lease_ms: u64,
        /// Where the workers read the data they write: a `.npy` file on a
        /// path every worker sees, or an object-store URL of one. Opaque to
        /// the coordinator; `floe worker` takes part only in sessions that
        /// name one.
        source: Option<String>,
        /// Arrays the session creates, by path, with their metadata. They
        /// land with the session's commit and not before: until then no
        /// commit shows them, and an aborted session leaves nothing. Each
        /// path must not exist at the base and each metadata must be
        /// valid. The session's arrays (`Reply::SessionOpened`) include
        /// them, so tasks and contributions may write them; on commit they
        /// are `MetaChange::Create`s, treated by the commit rule exactly as
        /// a non-cooperative commit creating them (another commit creating
        /// the same path since the base is `ArrayCreatedTwice`).
        create: BTreeMap<ArrayPath, ArrayMeta>,
    },
    /// A worker asks for a task.
    ClaimTask {
        /// The session.
        session: SessionId,
        /// The worker.
        worker: WorkerId,
    },
    /// Extends a lease.
    RenewLease {
        /// The session.
        session: SessionId,
        /// The task.
        task: TaskId,
        /// The epoch of the grant.
        epoch: u64,
    },
    /// A worker finished a task.
    CompleteTask {
        /// The session.
        session: SessionId,
        /// The task.
        task: TaskId,
        /// The epoch of the grant (fencing token).
        epoch: u64,
        /// The delta manifest of the chunks written.
        delta: ObjectId,
        /// The chunks written.
        footprint: Footprint,
        /// Claim the next task for this worker in the same command when
        /// the completion is accepted (one Raft round per task instead of
        /// two); answered `AcceptedNext` when one was granted.
        next: Option<WorkerId>,
    },
    /// A planless writer adds its changes to the session.
    Contribute {
        /// The session.
        session: SessionId,
        /// The writer.
        worker: WorkerId,
        /// The delta manifest.
        delta: ObjectId,
        /// The chunks written.
        footprint: Footprint,
    },
    /// Commits the whole session as one commit.
    CommitSession {
        /// The session.
        session: SessionId,
        /// Commit message.
        message: String,
        /// Who ran the job.
        author: String,
        /// What to do if the branch moved.
        mode: CommitMode,
    },
    /// Abandons a session; its objects become garbage.
    AbortSession {
        /// The session.
        session: SessionId,
    },
    /// Records a consolidated manifest written for a commit.
    RecordCheckpoint {
        /// The repo.
        repo: RepoName,
        /// The commit.
        commit: CommitId,
        /// The checkpoint object.
        checkpoint: ObjectId,
    },
    /// Opens the sending client's session in the idempotency table (or
    /// keeps it alive): the first command of every client id. A command
    /// from a client without a session is refused with
    /// [`crate::FloeError::SessionExpired`], so a retry that comes after its
    /// session expired is never applied a second time. Answered `Done`.
    OpenClient,
    /// Adds or removes a coordinator: a Raft configuration change, decided
    /// by the leader's node core and never applied to the state machine.
    /// Answered `Done` once proposed, or at once when the change is already
    /// in effect (so a retry is harmless); `Unavailable` (retried by the
    /// client) while another change is under way.
    ChangeMembers(MemberChange),
}

/// A change of the coordinators' voting membership (`floe member`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Adds coordinator `id` as a voter. Start it first with `--join` and
    /// the other members as its peers: it connects to them and they learn
    /// its address from its handshake.
    Add {
        /// The new coordinator's node id.
        id: u64,
    },
    /// Removes coordinator `id`; a removed coordinator stops. The leader
    /// cannot remove itself.
    Remove {
        /// The coordinator's node id.
        id: u64,
    },
}

/// Read-only requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Query {
    /// The tip of a branch, as a full commit record.
    Checkout {
        /// The repo.
        repo: RepoName,
        /// The branch.
        branch: BranchName,
    },
    /// The commit a tag points to.
    ResolveTag {
        /// The repo.
        repo: RepoName,
        /// The tag.
        tag: TagName,
    },
    /// One commit record.
    GetCommit {
        /// The repo.
        repo: RepoName,
        /// The commit.
        commit: CommitId,
    },
    /// The newest `limit` commits of a branch, tip first.
    Log {
        /// The repo.
        repo: RepoName,
        /// The branch.
        branch: BranchName,
        /// Most records returned.
        limit: u32,
    },
    /// The seed's "can I fast forward?": would a change based on `base`
    /// land on the current tip without conflict?
    CanFastForward {
        /// The repo.
        repo: RepoName,
        /// The branch.
        branch: BranchName,
        /// The session's base.
        base: CommitId,
        /// The session's footprint.
        footprint: Footprint,
    },
    /// The state of a cooperative session.
    Session {
        /// The session.
        session: SessionId,
    },
    /// A repo's branches and tags.
    Refs {
        /// The repo.
        repo: RepoName,
    },
    /// Every open planned session that names a source, in any repo: what
    /// `floe worker` looks for work in.
    OpenSessions,
}

/// A command or a query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Goes through the log.
    Command(Command),
    /// Answered from applied state (linearizably, under Raft).
    Query(Query),
}

/// A request with its idempotency key: a retry carries the same
/// `(client, seq)` and gets the first reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The sender.
    pub client: ClientId,
    /// Per-client sequence number, increasing.
    pub seq: u64,
    /// What is asked.
    pub request: Request,
}

/// A commit as the coordinator records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// Its id.
    pub id: CommitId,
    /// The commit it was landed on (`None` for the root).
    pub parent: Option<CommitId>,
    /// The commit its changes were made against; differs from `parent`
    /// when it was fast-forwarded.
    pub base: Option<CommitId>,
    /// The branch it landed on.
    pub branch: BranchName,
    /// Distance from the root.
    pub height: u64,
    /// Delta manifests holding its chunks.
    pub deltas: Vec<ObjectId>,
    /// What it changed. Chunks dropped by the `theirs` solver are not in it:
    /// readers consult `deltas` only for chunks in the footprint.
    pub footprint: Footprint,
    /// Every array's metadata after this commit.
    pub arrays: BTreeMap<ArrayPath, ArrayMeta>,
    /// Commit message.
    pub message: String,
    /// Author.
    pub author: String,
    /// Leader time at landing, ms since the epoch.
    pub time: u64,
    /// How many commits it was fast-forwarded over (0 = landed directly).
    pub rebased_over: u32,
    /// A consolidated manifest of the whole commit, once written.
    pub checkpoint: Option<ObjectId>,
}

/// The state of one task of a cooperative session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for a worker.
    Pending,
    /// Held under a lease.
    Claimed {
        /// The holder.
        worker: WorkerId,
        /// Lease expiry, leader ms.
        lease_until: u64,
    },
    /// Completed.
    Done {
        /// Who completed it.
        worker: WorkerId,
    },
}

/// One task, as reported by `Query::Session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task: TaskId,
    /// Its array.
    pub array: ArrayPath,
    /// Its region.
    pub region: Region,
    /// Current fencing epoch.
    pub epoch: u64,
    /// Where it is.
    pub state: TaskState,
}

/// A cooperative session, as reported by `Query::Session`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// The session.
    pub session: SessionId,
    /// The repo.
    pub repo: RepoName,
    /// The branch.
    pub branch: BranchName,
    /// The commit it writes against.
    pub base: CommitId,
    /// Its tasks (empty when planless).
    pub tasks: Vec<TaskStatus>,
    /// The delta manifests of a planless session's accepted contributions,
    /// in the order they were accepted (empty when planned).
    pub contributions: Vec<ObjectId>,
    /// Where its workers read (see `Command::OpenSession`).
    pub source: Option<String>,
    /// The arrays it creates (see `Command::OpenSession`): with the base's
    /// arrays, the metadata its tasks are written against.
    pub create: BTreeMap<ArrayPath, ArrayMeta>,
    /// The commit it landed as, once committed.
    pub committed: Option<CommitId>,
    /// True once committed or aborted.
    pub closed: bool,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// The repo exists now, with `main` at `root`.
    RepoCreated {
        /// The root commit.
        root: CommitId,
    },
    /// A branch or tag was created, a checkpoint recorded, a session aborted.
    Done,
    /// A commit landed.
    Committed {
        /// The new commit.
        commit: CommitId,
        /// Its parent (the tip it landed on).
        parent: CommitId,
        /// Commits it was fast-forwarded over (0 = landed directly).
        rebased_over: u32,
    },
    /// A cooperative session was opened.
    SessionOpened {
        /// Its id.
        session: SessionId,
        /// The base commit every worker reads from.
        base: CommitId,
        /// The array metadata the session writes against: the base's
        /// arrays and those the session creates.
        arrays: BTreeMap<ArrayPath, ArrayMeta>,
    },
    /// A task was granted.
    TaskGranted {
        /// The task.
        task: TaskId,
        /// Its array.
        array: ArrayPath,
        /// Its region.
        region: Region,
        /// Fencing epoch to present on renew and complete.
        epoch: u64,
        /// Lease expiry, leader ms.
        lease_until: u64,
    },
    /// No task can be granted now.
    NoTask {
        /// Tasks held by other workers (they may come back on expiry).
        claimed: u32,
        /// Tasks not yet completed.
        unfinished: u32,
    },
    /// The lease was extended.
    LeaseRenewed {
        /// New expiry, leader ms.
        lease_until: u64,
    },
    /// A completion or contribution was accepted.
    Accepted {
        /// Tasks not yet completed.
        unfinished: u32,
    },
    /// A completion accepted, and the next task granted to the same worker
    /// (`CompleteTask` with `next`).
    AcceptedNext {
        /// Tasks not yet completed.
        unfinished: u32,
        /// The task granted.
        task: TaskId,
        /// Its array.
        array: ArrayPath,
        /// Its region.
        region: Region,
        /// Fencing epoch to present on renew and complete.
        epoch: u64,
        /// Lease expiry, leader ms.
        lease_until: u64,
    },
    /// A commit record (checkout, tag, get).
    Commit(Box<CommitRecord>),
    /// A branch's newest commits, tip first.
    Log(Vec<CommitRecord>),
    /// The answer to `CanFastForward`: yes when `conflicts` is empty.
    FastForward {
        /// The tip the answer is about.
        tip: CommitId,
        /// Conflicts with commits since the base.
        conflicts: Vec<Conflict>,
    },
    /// A cooperative session's state.
    Session(Box<SessionStatus>),
    /// The answer to `Refs`: every branch's tip and every tag's commit.
    Refs {
        /// Branches and their tips, by name.
        branches: BTreeMap<BranchName, CommitId>,
        /// Tags and their commits, by name.
        tags: BTreeMap<TagName, CommitId>,
    },
    /// The answer to `OpenSessions`, by session id.
    OpenSessions(Vec<OpenSession>),
}

/// An open cooperative session as `Query::OpenSessions` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenSession {
    /// The session.
    pub session: SessionId,
    /// Its repo.
    pub repo: RepoName,
    /// The branch it commits to.
    pub branch: BranchName,
    /// Where its workers read (see `Command::OpenSession`).
    pub source: String,
    /// Tasks in its plan.
    pub tasks: u32,
    /// Tasks done.
    pub done: u32,
    /// Tasks a worker could claim now (never granted, or lease expired).
    pub claimable: u32,
}

impl Reply {
    /// For an accepted completion or contribution (`Accepted`,
    /// `AcceptedNext`): the tasks not yet completed.
    pub fn accepted(&self) -> Option<u32> {
        match self {
            Reply::Accepted { unfinished } | Reply::AcceptedNext { unfinished, .. } => {
                Some(*unfinished)
            }
            _ => None,
        }
    }
}

/// Outcome of a request.
pub type Outcome = Result<Reply, FloeError>;

/// Everything that travels between processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Client to coordinator.
    Request(Envelope),
    /// Coordinator to client.
    Response {
        /// The client asked.
        client: ClientId,
        /// The request answered.
        seq: u64,
        /// The answer.
        outcome: Outcome,
    },
    /// Coordinator to coordinator: a raft-rs message as its protobuf bytes.
    Raft {
        /// Sender node id.
        from: u64,
        /// Protobuf-encoded `eraftpb::Message`.
        bytes: Vec<u8>,
    },
    /// The first frame of every connection: the caller's protocol
    /// version, the cluster's token, and, from a coordinator, its node id.
    Hello {
        /// [`PROTOCOL_VERSION`] of the caller.
        protocol: u32,
        /// The cluster token (a shared secret).
        token: String,
        /// The calling coordinator's node id; `None` for a client.
        peer: Option<u64>,
        /// Where the calling coordinator listens (an unspecified IP means
        /// the address the connection comes from): how members learn the
        /// address of a coordinator added after they started.
        listen: Option<std::net::SocketAddr>,
    },
    /// The answer to an accepted [`Message::Hello`].
    Welcome {
        /// The answering node's id.
        node: u64,
    },
    /// The answer to a refused [`Message::Hello`]; the connection closes.
    Refused {
        /// Why, for the caller's log.
        why: String,
    },
    /// Client to one coordinator: how are you? (answered by that node from
    /// its own state, not through Raft).
    StatusRequest,
    /// The answer to [`Message::StatusRequest`].
    Status(NodeStatus),
    /// Coordinator to coordinator: one part of a Raft message too large
    /// for one frame (a state-machine snapshot). Parts go in order; the
    /// receiver checks each one, acknowledges it with
    /// [`Message::RaftChunkAck`], and steps the whole message once it has
    /// every byte. A transfer cut by a lost connection resumes from the
    /// last acknowledged byte.
    RaftChunk {
        /// Sender node id.
        from: u64,
        /// Which transfer (chosen by the sender, unique per transfer).
        id: u64,
        /// Where `bytes` start in the whole message.
        offset: u64,
        /// The whole message's length.
        total: u64,
        /// CRC-32 of `bytes`.
        crc32: u32,
        /// The part.
        bytes: Vec<u8>,
    },
    /// The answer to a [`Message::RaftChunk`], on the same connection:
    /// the receiver holds the first `received` bytes of transfer `id` and
    /// wants the rest from there (`received == total`: done, or given up).
    RaftChunkAck {
        /// The receiving node id.
        from: u64,
        /// The transfer.
        id: u64,
        /// Bytes held, from the start.
        received: u64,
    },
}

/// One coordinator's view of itself, for operators (`floe status`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub id: u64,
    /// Raft role: leader, follower, candidate, pre-candidate.
    pub role: String,
    /// Current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Why the node stopped serving, if it did (a failed log write).
    pub failure: Option<String>,
    /// Process id.
    pub pid: u32,
}

/// The version of the protocol (the messages and their meaning) this build
/// speaks; a [`Message::Hello`] from a newer one is refused. 2: sessions
/// that create arrays (`OpenSession::create`, `SessionStatus::create`) and
/// `CompleteTask::next`.
pub const PROTOCOL_VERSION: u32 = 2;
