//! A local cluster's files, as `floe up` and the process tests lay them
//! out: a token, one `n<id>.toml` per coordinator (free loopback ports,
//! a data directory each) and a `cluster.toml` naming the client
//! endpoints.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::config::{ClusterFile, NodeConfig};

/// The files of a local cluster.
#[derive(Clone, Debug)]
pub struct LocalCluster {
    /// Each node's id and configuration file.
    pub nodes: Vec<(u64, PathBuf)>,
    /// The clients' cluster file.
    pub cluster_file: PathBuf,
}

/// A loopback address whose port was free a moment ago. Drawn below the
/// kernel's ephemeral range (32768 and up on Linux), where outgoing
/// connections take their source ports, so that the port is not taken by
/// someone's connection before the coordinator binds it.
pub fn free_addr() -> std::io::Result<SocketAddr> {
    for _ in 0..100 {
        let port = rand::random::<u16>() % 12_000 + 20_000;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr();
        }
    }
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Writes the files of an `n`-node cluster under `dir` (created if
/// missing). Refuses a directory that already holds a cluster file, so a
/// second `floe up` cannot clobber a running one.
pub fn write_local_cluster(dir: &Path, n: u64, tick_ms: u64) -> std::io::Result<LocalCluster> {
    std::fs::create_dir_all(dir)?;
    let cluster_file = dir.join("cluster.toml");
    if cluster_file.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!(
                "{} exists: use another --dir, or remove it",
                cluster_file.display()
            ),
        ));
    }
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{:032x}\n", rand::random::<u128>()))?;
    let mut peers = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    for id in 1..=n {
        peers.insert(id.to_string(), free_addr()?);
        metrics.insert(id.to_string(), free_addr()?);
    }
    let mut nodes = Vec::new();
    for id in 1..=n {
        let config = NodeConfig {
            id,
            listen: peers[&id.to_string()],
            data_dir: dir.join(format!("n{id}")),
            token_file: token_file.clone(),
            peers: peers.clone(),
            metrics: Some(metrics[&id.to_string()]),
            tick_ms,
            election_ticks: 10,
            snapshot_every: 10_000,
            raft_chunk_bytes: crate::chunks::CHUNK_BYTES,
            client_expiry_ms: floe_coordinator::state::DEFAULT_CLIENT_EXPIRY_MS,
        };
        let path = dir.join(format!("n{id}.toml"));
        std::fs::write(&path, to_toml(&config)?)?;
        nodes.push((id, path));
    }
    let file = ClusterFile {
        token_file,
        nodes: peers,
        metrics,
        store: None,
    };
    std::fs::write(&cluster_file, to_toml(&file)?)?;
    Ok(LocalCluster {
        nodes,
        cluster_file,
    })
}

fn to_toml<T: serde::Serialize>(value: &T) -> std::io::Result<String> {
    toml::to_string(value).map_err(std::io::Error::other)
}
