//! The embedded default the demo runs on: three Raft coordinators in-process.

use anyhow::Result;
use floe_coordinator::{Config, EmbeddedCluster};

/// Starts an in-process three-coordinator cluster and waits for a leader.
pub fn start() -> Result<EmbeddedCluster> {
    Ok(EmbeddedCluster::start(3, Config::default())?)
}
