//! floe-sim: a single-threaded, deterministic discrete-event simulation of a
//! floe cluster. It drives the real cores — raft-rs nodes with the real
//! state machine, writers and workers — through seeded interleavings and
//! faults, and checks the oracles of DESIGN.md section 4 against a
//! reference model.

#![warn(missing_docs)]

pub mod faults;
pub mod model;
pub mod net;
pub mod queue;
pub mod trace;
