//! floe-server: the shells around floe's cores — the durable Raft log on
//! raft-engine ([`log`]). Every decision stays in the cores of
//! `floe-coordinator`; this crate only moves their inputs in and their
//! effects out, to disk and to the network.

#![warn(missing_docs)]

pub mod log;
