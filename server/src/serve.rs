//! A coordinator process: the data directory, the node actor, one link
//! actor per peer, and the listener whose connections (peers and clients)
//! each get an actor after the handshake.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::TcpListener;

use floe_coordinator::node::{Node, NodeConfig as CoreConfig};
use floe_coordinator::{Config, State};

use crate::config::{read_token, NodeConfig};
use crate::conn::accept_loop;
use crate::link::{PeerAddr, PeerLink};
use crate::log::EngineLog;
use crate::metrics::Metrics;
use crate::node::NodeActor;

/// Why a coordinator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A bad configuration or token file.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The data directory cannot be used.
    #[error("data directory {dir}: {why}")]
    DataDir {
        /// The directory.
        dir: String,
        /// Why.
        why: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why (e.g. the port is in use).
        error: std::io::Error,
    },
    /// The node core refused to start.
    #[error("the node cannot start: {0}")]
    Node(String),
}

/// Runs a coordinator until SIGTERM or Ctrl-C (or a fatal log failure).
/// With `join`, a member that lost its data directory rejoins: it does not
/// bootstrap a cluster from `peers`, and it votes only once the leader has
/// sent it the state (it may have acknowledged entries it no longer has).
pub fn run(config: NodeConfig, join: bool) -> Result<(), ServeError> {
    let token = read_token(&config.token_file)?;
    check_cluster_id(&config.data_dir, &token)?;
    let log = EngineLog::open(&config.data_dir).map_err(|e| ServeError::DataDir {
        dir: config.data_dir.display().to_string(),
        why: e.0,
    })?;
    let initial: Vec<u64> = match join {
        true => Vec::new(),
        false => config.peer_addrs().keys().copied().collect(),
    };
    let mut core = CoreConfig::new(config.id, initial, rand_seed());
    core.lost_data = join;
    core.election_tick = config.election_ticks;
    core.heartbeat_tick = (config.election_ticks / 3).max(1);
    core.snapshot_every = config.snapshot_every;
    // A digest encodes the whole state: the simulation checks replicas
    // with it; a production node does not need one per entry.
    core.digest_every = 0;
    #[allow(unused_mut)]
    let mut state_config = Config {
        client_expiry_ms: config.client_expiry_ms,
        ..Config::default()
    };
    #[cfg(feature = "planted-bugs")]
    plant_bug(&mut core, &mut state_config)?;
    let state = State::new(state_config);
    let node = Node::new(core, state, log).map_err(|e| ServeError::Node(e.to_string()))?;
    let system = System::new();
    let result = system.block_on(async move { start(config, token, node).await });
    result?;
    let code = system.run_with_code().unwrap_or(1);
    if code != 0 {
        return Err(ServeError::Node(format!("stopped with code {code}")));
    }
    Ok(())
}

/// Switches on the planted bug named by `FLOE_PLANTED_BUG`, if set.
#[cfg(feature = "planted-bugs")]
fn plant_bug(core: &mut CoreConfig, state: &mut Config) -> Result<(), ServeError> {
    use floe_coordinator::bugs::Bug;
    let Some(name) = std::env::var_os("FLOE_PLANTED_BUG") else {
        return Ok(());
    };
    let name = name.to_string_lossy();
    let bug = Bug::from_name(&name)
        .ok_or_else(|| ServeError::Node(format!("FLOE_PLANTED_BUG: no planted bug {name:?}")))?;
    tracing::warn!(%bug, "PLANTED BUG switched on (self-test build)");
    core.bugs = Bug::node_bugs(Some(bug));
    state.bugs = Bug::state_bugs(Some(bug));
    Ok(())
}

/// A seed from the clock: differs between runs of the process.
pub(crate) fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

/// Binds, starts the node actor and one link actor per peer, and accepts.
async fn start(
    config: NodeConfig,
    token: String,
    node: crate::node::EngineNode,
) -> Result<(), ServeError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|error| ServeError::Listen {
            addr: config.listen,
            error,
        })?;
    let tick = Duration::from_millis(config.tick_ms);
    let metrics = Metrics::new();
    if let Some(addr) = config.metrics {
        crate::metrics::serve(addr, metrics.clone())
            .await
            .map_err(|error| ServeError::Listen { addr, error })?;
    }
    let peers: Vec<PeerAddr> = config
        .peer_addrs()
        .into_iter()
        .filter(|(id, _)| *id != config.id)
        .map(|(peer, addr)| PeerAddr {
            me: config.id,
            listen: config.listen,
            peer,
            addr,
            token: token.clone(),
            chunk: config.raft_chunk_bytes,
        })
        .collect();
    let template = PeerAddr {
        me: config.id,
        listen: config.listen,
        peer: 0,
        addr: config.listen,
        token: token.clone(),
        chunk: config.raft_chunk_bytes,
    };
    let link_metrics = metrics.clone();
    let actor = NodeActor::create(move |ctx| {
        let mut links = BTreeMap::new();
        for to in peers {
            let (id, addr) = (to.peer, to.addr);
            let link = PeerLink::new(to, ctx.address(), link_metrics.clone());
            links.insert(id, (addr, link.start()));
        }
        NodeActor::new(node, links, template, tick, link_metrics)
    });
    actix::spawn(accept_loop(listener, config.id, token, actor, metrics));
    actix::spawn(async {
        shutdown_signal().await;
        tracing::info!("shutting down");
        System::current().stop();
    });
    tracing::info!(id = config.id, listen = %config.listen, "coordinator started");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The data directory belongs to the cluster whose token it was first
/// used with; another cluster's directory is refused.
fn check_cluster_id(dir: &Path, token: &str) -> Result<(), ServeError> {
    let mut h = DefaultHasher::new();
    h.write(token.as_bytes());
    let ours = format!("{:016x}", h.finish());
    let file = dir.join("cluster_id");
    let bad = |why: String| ServeError::DataDir {
        dir: dir.display().to_string(),
        why,
    };
    std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
    match std::fs::read_to_string(&file) {
        Ok(theirs) if theirs.trim() == ours => Ok(()),
        Ok(theirs) => Err(bad(format!(
            "it belongs to another cluster (cluster id {}, this token's is {ours})",
            theirs.trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&file, format!("{ours}\n")).map_err(|e| bad(e.to_string()))
        }
        Err(e) => Err(bad(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        check_cluster_id(dir.path(), "token-a").unwrap();
        check_cluster_id(dir.path(), "token-a").unwrap();
        let err = check_cluster_id(dir.path(), "token-b").unwrap_err();
        assert!(
            err.to_string().contains("belongs to another cluster"),
            "{err}"
        );
    }
}
