//! floe-coordinator: the replicated state machine that decides every commit
//! (`state`), and the Raft node core that replicates it (`node`).
//!
//! Both are pure, deterministic cores (no IO, no clocks): shells (actors,
//! sockets, raft-engine) and the simulation drive them.

#![warn(missing_docs)]

pub mod machine;

pub use machine::StateMachine;
