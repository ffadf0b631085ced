//! Errors. Every error can cross the wire, so each is plain data.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::array::DType;
use crate::footprint::Conflict;
use crate::ids::{ArrayPath, BranchName, CommitId, ObjectId, RepoName, SessionId, TagName, TaskId};

/// A region or array shape that does not make sense.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum GeometryError {
    /// The region text could not be parsed.
    #[error("cannot parse region {text:?}: {why}")]
    Parse {
        /// The offending text (truncated).
        text: String,
        /// What was expected.
        why: String,
    },
    /// Rank 0 or above the limit.
    #[error("arrays must have 1 to 32 dimensions, not {rank}")]
    BadRank {
        /// The rank given.
        rank: usize,
    },
    /// Two shapes or a region and a shape disagree on the rank.
    #[error("expected {expected} dimensions, got {got}")]
    RankMismatch {
        /// The array's rank.
        expected: usize,
        /// The rank given.
        got: usize,
    },
    /// A chunk extent of zero.
    #[error("chunk extent along dimension {dim} is zero")]
    ZeroChunk {
        /// The dimension.
        dim: usize,
    },
    /// A region covering nothing along a dimension.
    #[error("region {region} is empty along dimension {dim}")]
    EmptyRegion {
        /// The region.
        region: String,
        /// The dimension.
        dim: usize,
    },
    /// A region reaching past the array's edge.
    #[error("region {region} is out of bounds along dimension {dim} (extent {extent})")]
    OutOfBounds {
        /// The region.
        region: String,
        /// The dimension.
        dim: usize,
        /// The array's extent along it.
        extent: u64,
    },
    /// A region that is not chunk-aligned where alignment is required.
    #[error("region {region} is not chunk-aligned (chunk shape {chunk_shape:?})")]
    NotChunkAligned {
        /// The region.
        region: String,
        /// The array's chunk shape.
        chunk_shape: Vec<u64>,
    },
    /// A fill value that the dtype cannot hold.
    #[error("fill value {value} does not fit {dtype}")]
    BadFillValue {
        /// The dtype.
        dtype: DType,
        /// The value given.
        value: String,
    },
    /// A zstd level outside 1..=22.
    #[error("zstd level {level} is outside 1..=22")]
    BadCodec {
        /// The level given.
        level: i32,
    },
    /// The chunk grid has more than 2^64 cells.
    #[error("the chunk grid has too many chunks")]
    TooManyChunks,
    /// One chunk would hold more than 2^27 elements.
    #[error("one chunk would hold more than 2^27 elements")]
    ChunkTooLarge,
    /// A data buffer whose size does not match its region.
    #[error("data holds {got} bytes but the region needs {expected}")]
    DataSize {
        /// Bytes needed.
        expected: u64,
        /// Bytes given.
        got: u64,
    },
}

/// Everything a coordinator or a session can refuse, and why.
#[derive(Clone, Debug, PartialEq, Error, Serialize, Deserialize)]
pub enum FloeError {
    /// A name or path with characters or a length not allowed.
    #[error("invalid {what} {name:?}")]
    InvalidName {
        /// What kind of name.
        what: String,
        /// The name (truncated).
        name: String,
    },
    /// Bad geometry for an array.
    #[error("array {path}: {error}")]
    Geometry {
        /// The array concerned.
        path: ArrayPath,
        /// What is wrong.
        error: GeometryError,
    },
    /// Element types disagree.
    #[error("array {path} holds {expected}, not {got}")]
    DTypeMismatch {
        /// The array.
        path: ArrayPath,
        /// Its dtype.
        expected: DType,
        /// The dtype given.
        got: DType,
    },
    /// No such repo.
    #[error("unknown repo {repo}")]
    UnknownRepo {
        /// The repo.
        repo: RepoName,
    },
    /// The repo already exists.
    #[error("repo {repo} already exists")]
    RepoExists {
        /// The repo.
        repo: RepoName,
    },
    /// No such branch.
    #[error("unknown branch {branch} in repo {repo}")]
    UnknownBranch {
        /// The repo.
        repo: RepoName,
        /// The branch.
        branch: BranchName,
    },
    /// The branch already exists.
    #[error("branch {branch} already exists in repo {repo}")]
    BranchExists {
        /// The repo.
        repo: RepoName,
        /// The branch.
        branch: BranchName,
    },
    /// No such tag.
    #[error("unknown tag {tag} in repo {repo}")]
    UnknownTag {
        /// The repo.
        repo: RepoName,
        /// The tag.
        tag: TagName,
    },
    /// Tags are immutable: this one already exists.
    #[error("tag {tag} already exists in repo {repo} (tags are immutable)")]
    TagExists {
        /// The repo.
        repo: RepoName,
        /// The tag.
        tag: TagName,
    },
    /// No such commit.
    #[error("unknown commit {commit} in repo {repo}")]
    UnknownCommit {
        /// The repo.
        repo: RepoName,
        /// The commit.
        commit: CommitId,
    },
    /// No such array at the session's base.
    #[error("unknown array {path}")]
    UnknownArray {
        /// The path.
        path: ArrayPath,
    },
    /// The branch moved since the base; commit in `Rebase` mode or fast-forward.
    #[error("branch is out of date: tip is {tip}")]
    OutOfDate {
        /// The branch's tip now.
        tip: CommitId,
    },
    /// The change overlaps commits that landed since its base.
    #[error("conflict with commits since the base (tip {tip}): {}", list_conflicts(.conflicts))]
    Conflict {
        /// The branch's tip now.
        tip: CommitId,
        /// Every conflict found.
        conflicts: Vec<Conflict>,
    },
    /// The base is older than the retained footprint window: check out again.
    ///
    /// No longer produced: the commit rule checks conflicts through a
    /// per-branch index and accepts any base on the branch's chain. Kept
    /// because the wire enum is append-only (variant order is the encoding).
    #[error("base {base} is older than the {window} commits retained for conflict checks; check out again")]
    BaseTooOld {
        /// The session's base.
        base: CommitId,
        /// The window, in commits.
        window: u64,
    },
    /// The base is not an ancestor of the branch's tip.
    #[error("base {base} is not on branch {branch}")]
    BaseNotOnBranch {
        /// The session's base.
        base: CommitId,
        /// The branch.
        branch: BranchName,
    },
    /// A change that is inconsistent in itself or with its base.
    #[error("invalid change: {why}")]
    InvalidChange {
        /// What is wrong.
        why: String,
    },
    /// A cooperative plan that cannot be run.
    #[error("invalid plan: {why}")]
    InvalidPlan {
        /// What is wrong.
        why: String,
    },
    /// No such cooperative session.
    #[error("unknown session {session}")]
    UnknownSession {
        /// The session.
        session: SessionId,
    },
    /// The session was committed or aborted.
    #[error("session {session} is closed")]
    SessionClosed {
        /// The session.
        session: SessionId,
    },
    /// No such task in the session's plan.
    #[error("unknown task {task} in session {session}")]
    UnknownTask {
        /// The session.
        session: SessionId,
        /// The task.
        task: TaskId,
    },
    /// A lease or completion with an epoch that is no longer current: the
    /// lease expired and the task was handed out again.
    #[error("stale epoch {presented} for task {task} (current epoch {current})")]
    StaleEpoch {
        /// The task.
        task: TaskId,
        /// The epoch presented.
        presented: u64,
        /// The current epoch.
        current: u64,
    },
    /// A completion whose footprint leaves the task's region.
    #[error("task {task} footprint touches chunks outside its region")]
    FootprintOutsideTask {
        /// The task.
        task: TaskId,
    },
    /// The session still has unfinished tasks.
    #[error("session {session} has {pending} unfinished tasks")]
    SessionIncomplete {
        /// The session.
        session: SessionId,
        /// Tasks not yet completed.
        pending: u32,
    },
    /// Planless cooperative writers wrote the same chunks.
    #[error("contribution overlaps earlier writers in the session: {}", list_conflicts(.conflicts))]
    OverlappingContribution {
        /// The shared chunks.
        conflicts: Vec<Conflict>,
    },
    /// This node is not the leader.
    #[error("not the leader (try node {leader_hint:?})")]
    NotLeader {
        /// The leader, if known.
        leader_hint: Option<u64>,
    },
    /// A command from a client whose session expired after inactivity (or
    /// was never opened with [`crate::Command::OpenClient`]). If this was a
    /// retry, the earlier attempt may or may not have been applied: check
    /// the branch's log.
    #[error("the session of client {client} expired (or was never opened); an earlier attempt of this request may or may not have been applied")]
    SessionExpired {
        /// The client.
        client: u64,
    },
    /// A membership change that cannot be made as asked (e.g. node id 0,
    /// or the leader removing itself).
    #[error("membership change refused: {why}")]
    BadMemberChange {
        /// Why.
        why: String,
    },
    /// A retry of a request older than the idempotency window.
    #[error("request {seq} of {client} is older than the idempotency window")]
    SeqTooOld {
        /// The client.
        client: u64,
        /// The sequence number.
        seq: u64,
    },
    /// A frame or object could not be decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The object store failed.
    #[error("object store: {0}")]
    Store(String),
    /// The coordinator did not answer in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The object store failed in a way that may go away (a timeout, a
    /// dropped connection, a 5xx) and kept failing after the store's retries.
    #[error("object store unavailable: {0}")]
    StoreUnavailable(String),
    /// Another writer recorded a checkpoint of this commit first; it holds
    /// the same chunk map, so the commit is checkpointed.
    #[error("commit {commit} already has checkpoint {checkpoint}")]
    CheckpointExists {
        /// The commit.
        commit: CommitId,
        /// Its checkpoint.
        checkpoint: ObjectId,
    },
}

/// What a caller can do about a [`FloeError`]: see [`FloeError::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Transient: the same request may succeed if sent again (not the
    /// leader, no answer in time, the object store briefly down). Requests
    /// carry a client id and sequence number, so a resend is idempotent.
    Retryable,
    /// Lost a race with another writer: the branch moved, chunks are shared
    /// (see [`FloeError::conflicts`]), a lease was re-granted. Check out
    /// again (or give the task up); resending the same request will not help.
    Conflict,
    /// The request itself is wrong (names, geometry, dtypes, unknown or
    /// closed objects, an invalid plan): fix the input.
    InvalidInput,
    /// Something inside floe or the store broke (undecodable bytes, a
    /// permanent store error, a request older than the idempotency window).
    Internal,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorKind::Retryable => "retryable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Internal => "internal",
        })
    }
}

fn list_conflicts(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl FloeError {
    /// What a caller can do about this error.
    pub fn kind(&self) -> ErrorKind {
        use FloeError as E;
        match self {
            E::NotLeader { .. } | E::Unavailable(_) | E::StoreUnavailable(_) => {
                ErrorKind::Retryable
            }
            E::OutOfDate { .. }
            | E::Conflict { .. }
            | E::OverlappingContribution { .. }
            | E::StaleEpoch { .. }
            | E::BaseTooOld { .. }
            | E::CheckpointExists { .. } => ErrorKind::Conflict,
            E::InvalidName { .. }
            | E::Geometry { .. }
            | E::DTypeMismatch { .. }
            | E::UnknownRepo { .. }
            | E::RepoExists { .. }
            | E::UnknownBranch { .. }
            | E::BranchExists { .. }
            | E::UnknownTag { .. }
            | E::TagExists { .. }
            | E::UnknownCommit { .. }
            | E::UnknownArray { .. }
            | E::BaseNotOnBranch { .. }
            | E::InvalidChange { .. }
            | E::InvalidPlan { .. }
            | E::UnknownSession { .. }
            | E::SessionClosed { .. }
            | E::UnknownTask { .. }
            | E::FootprintOutsideTask { .. }
            | E::SessionIncomplete { .. }
            | E::BadMemberChange { .. } => ErrorKind::InvalidInput,
            E::SeqTooOld { .. } | E::SessionExpired { .. } | E::Codec(_) | E::Store(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// Sending the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    /// Lost a race with another writer (see [`ErrorKind::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        self.kind() == ErrorKind::Conflict
    }

    /// The request was wrong; nothing changed.
    pub fn is_invalid_input(&self) -> bool {
        self.kind() == ErrorKind::InvalidInput
    }

    /// The coordinator refused the request for good, so it certainly had
    /// no effect (a conflict, or bad input). Any other error leaves the
    /// outcome unknown: a history records such an operation as
    /// indeterminate.
    pub fn had_no_effect(&self) -> bool {
        self.is_conflict() || self.is_invalid_input()
    }

    /// Something inside floe or the store broke.
    pub fn is_internal(&self) -> bool {
        self.kind() == ErrorKind::Internal
    }

    /// The shared chunks of a conflict, with their coordinates (empty for
    /// any other error).
    pub fn conflicts(&self) -> &[Conflict] {
        match self {
            FloeError::Conflict { conflicts, .. }
            | FloeError::OverlappingContribution { conflicts } => conflicts,
            _ => &[],
        }
    }

    /// Wraps a geometry error with the array it concerns.
    pub fn geometry(path: &ArrayPath, error: GeometryError) -> Self {
        FloeError::Geometry {
            path: path.clone(),
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::ConflictKind;

    #[test]
    fn a_caller_can_tell_what_to_do() {
        let hint = FloeError::NotLeader { leader_hint: None };
        assert!(hint.is_retryable());
        assert!(FloeError::Unavailable("timeout".into()).is_retryable());
        assert!(FloeError::StoreUnavailable("503".into()).is_retryable());
        assert!(FloeError::Store("403 forbidden".into()).is_internal());
        assert!(FloeError::OutOfDate { tip: CommitId(3) }.is_conflict());
        assert!(FloeError::InvalidPlan {
            why: "overlap".into()
        }
        .is_invalid_input());
        assert!(FloeError::Codec("truncated".into()).is_internal());
        assert_eq!(FloeError::Codec("x".into()).kind().to_string(), "internal");
    }

    #[test]
    fn a_conflict_names_its_chunks() {
        let shared = Conflict {
            path: ArrayPath::new("/t").unwrap(),
            kind: ConflictKind::ChunkDoubleUpdate {
                chunks: vec![vec![1]],
                total: 1,
            },
        };
        let e = FloeError::Conflict {
            tip: CommitId(2),
            conflicts: vec![shared.clone()],
        };
        assert!(e.is_conflict() && !e.is_retryable());
        assert_eq!(e.conflicts(), &[shared][..]);
        assert!(FloeError::Unavailable("x".into()).conflicts().is_empty());
    }
}
