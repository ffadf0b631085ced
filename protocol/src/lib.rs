//! floe-protocol: the vocabulary every floe component speaks.
//!
//! Pure data and pure functions, no IO: ids, array metadata, regions and
//! their chunk geometry, footprints and conflicts, every command, query,
//! reply and error, and the versioned wire codec.

#![warn(missing_docs)]

pub mod array;
pub mod client;
pub mod codec;
pub mod error;
pub mod footprint;
pub mod ids;
pub mod messages;
pub mod region;

pub use array::{ArrayMeta, Codec, DType};
pub use client::Coordinator;
pub use error::{ErrorKind, FloeError, GeometryError};
pub use footprint::{ArrayChange, Conflict, ConflictKind, Footprint, MetaChange};
pub use ids::{
    ArrayPath, BranchName, ClientId, CommitId, ObjectId, RepoName, SessionId, TagName, TaskId,
    WorkerId,
};
pub use messages::{
    Command, CommitMode, CommitRecord, CommitRequest, Envelope, MemberChange, Message, NodeStatus,
    OpenSession, Outcome, PlannedTask, Query, Reply, Request, SessionStatus, Solver, TaskState,
    TaskStatus, PROTOCOL_VERSION,
};
pub use region::{ChunkPart, Region, Span};
