//! floe-coordinator: the replicated state machine that decides every commit
//! (`state`), and the Raft node core that replicates it (`node`).
//!
//! Both are pure, deterministic cores (no IO, no clocks): shells (actors,
//! sockets, raft-engine) and the simulation drive them.

#![warn(missing_docs)]

#[cfg(feature = "planted-bugs")]
pub mod bugs;
pub mod embedded;
pub mod local;
pub mod machine;
pub mod node;
pub mod state;
pub mod storage;

pub use embedded::EmbeddedCluster;
pub use local::LocalCoordinator;
pub use machine::StateMachine;
pub use state::{Config, State};
