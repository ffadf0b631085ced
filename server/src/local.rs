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
    let (layout, _) = write_cluster(dir, n, tick_ms, None)?;
    Ok(layout)
}

/// A TCP route of a proxied cluster: whoever connects to `listen` is
/// relayed to `target`, a coordinator's real listen address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The node that dials through this route (`None`: clients).
    pub from: Option<u64>,
    /// The node it reaches.
    pub to: u64,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// Where the proxy relays to.
    pub target: SocketAddr,
}

/// [`write_local_cluster`] for a harness that owns the network: every
/// connection goes through a proxy of its own. Node `i` reaches node `j`
/// at the route `i -> j` (its `[peers]` table lists the proxies, and
/// configured addresses win over handshakes), and clients reach node `j`
/// at the route `clients -> j` (the cluster file lists those). The caller
/// runs the proxies; nothing connects until it does. Coordinators take a
/// snapshot every `snapshot_every` entries (small values exercise
/// snapshots and their installation).
pub fn write_proxied_cluster(
    dir: &Path,
    n: u64,
    tick_ms: u64,
    snapshot_every: u64,
) -> std::io::Result<(LocalCluster, Vec<Route>)> {
    write_cluster(dir, n, tick_ms, Some(snapshot_every))
}

/// Lays out the files; `proxied_snapshots` is `Some(snapshot_every)` for a
/// proxied cluster.
fn write_cluster(
    dir: &Path,
    n: u64,
    tick_ms: u64,
    proxied_snapshots: Option<u64>,
) -> std::io::Result<(LocalCluster, Vec<Route>)> {
    let proxied = proxied_snapshots.is_some();
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
    let mut ports = Ports::default();
    let mut listen = BTreeMap::new();
    let mut metrics = BTreeMap::new();
    for id in 1..=n {
        listen.insert(id, ports.take()?);
        metrics.insert(id.to_string(), ports.take()?);
    }
    let routes = if proxied {
        routes(&listen, &mut ports)?
    } else {
        Vec::new()
    };
    // Who reaches node `to` where: through its route when proxied.
    let addr_for = |from: Option<u64>, to: u64| {
        routes
            .iter()
            .find(|r| r.from == from && r.to == to)
            .map_or(listen[&to], |r| r.listen)
    };
    let mut nodes = Vec::new();
    for id in 1..=n {
        let peers = (1..=n)
            .map(|j| {
                let addr = if j == id {
                    listen[&j]
                } else {
                    addr_for(Some(id), j)
                };
                (j.to_string(), addr)
            })
            .collect();
        let config = NodeConfig {
            id,
            listen: listen[&id],
            data_dir: dir.join(format!("n{id}")),
            token_file: token_file.clone(),
            peers,
            metrics: Some(metrics[&id.to_string()]),
            tick_ms,
            election_ticks: 10,
            snapshot_every: proxied_snapshots.unwrap_or(10_000),
            raft_chunk_bytes: crate::chunks::CHUNK_BYTES,
            client_expiry_ms: floe_coordinator::state::DEFAULT_CLIENT_EXPIRY_MS,
        };
        let path = dir.join(format!("n{id}.toml"));
        std::fs::write(&path, to_toml(&config)?)?;
        nodes.push((id, path));
    }
    let file = ClusterFile {
        token_file,
        nodes: (1..=n)
            .map(|j| (j.to_string(), addr_for(None, j)))
            .collect(),
        metrics,
        store: None,
        store_options: BTreeMap::new(),
    };
    std::fs::write(&cluster_file, to_toml(&file)?)?;
    let layout = LocalCluster {
        nodes,
        cluster_file,
    };
    Ok((layout, routes))
}

/// One route per ordered pair of nodes and one per node for clients.
fn routes(listen: &BTreeMap<u64, SocketAddr>, ports: &mut Ports) -> std::io::Result<Vec<Route>> {
    let mut out = Vec::new();
    let dialers = std::iter::once(None).chain(listen.keys().map(|id| Some(*id)));
    for from in dialers {
        for (&to, &target) in listen {
            if from != Some(to) {
                let listen = ports.take()?;
                out.push(Route {
                    from,
                    to,
                    listen,
                    target,
                });
            }
        }
    }
    Ok(out)
}

/// Free addresses, none handed out twice (a port free a moment ago is
/// still free, since nothing has bound it yet).
#[derive(Default)]
struct Ports(std::collections::BTreeSet<SocketAddr>);

impl Ports {
    fn take(&mut self) -> std::io::Result<SocketAddr> {
        loop {
            let addr = free_addr()?;
            if self.0.insert(addr) {
                return Ok(addr);
            }
        }
    }
}

fn to_toml<T: serde::Serialize>(value: &T) -> std::io::Result<String> {
    toml::to_string(value).map_err(std::io::Error::other)
}
