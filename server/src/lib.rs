//! floe-server: the shells around floe's cores — the durable Raft log on
//! raft-engine ([`log`]), frames and handshakes on TCP ([`net`]), the node
//! actor ([`node`]), a coordinator process ([`serve`]) with its
//! configuration ([`config`]) and metrics ([`metrics`]), and the network
//! client ([`client`]). Every
//! decision stays in the cores of `floe-coordinator` and `floe-worker`;
//! this crate only moves their inputs in and their effects out, to disk
//! and to the network.

#![warn(missing_docs)]

pub mod chunks;
pub mod client;
pub mod config;
pub mod conn;
pub mod link;
pub mod local;
pub mod log;
pub mod metrics;
pub mod net;
pub mod node;
pub mod serve;
pub mod worker;

pub use client::NetCoordinator;
