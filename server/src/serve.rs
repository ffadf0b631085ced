//! A coordinator process: the data directory, the node actor, one link
//! task per peer, and the listener whose connections (peers and clients)
//! each get a task after the handshake.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio_util::bytes::Bytes;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use floe_coordinator::node::{Node, NodeConfig as CoreConfig};
use floe_coordinator::{Config, State};
use floe_protocol::{FloeError, Message};

use crate::config::{read_token, NodeConfig};
use crate::log::EngineLog;
use crate::metrics::Metrics;
use crate::net::{self, Caller, Conn};
use crate::node::{ClientRequest, GetStatus, NodeActor, PeerQueue, Step};

/// Raft messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;

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
    let node = Node::new(core, State::new(Config::default()), log)
        .map_err(|e| ServeError::Node(e.to_string()))?;
    let system = System::new();
    let result = system.block_on(async move { start(config, token, node).await });
    result?;
    let code = system.run_with_code().unwrap_or(1);
    if code != 0 {
        return Err(ServeError::Node(format!("stopped with code {code}")));
    }
    Ok(())
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

/// Binds, starts the node actor and the peer links, and accepts.
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
    let mut queues: BTreeMap<u64, PeerQueue> = BTreeMap::new();
    let mut links = Vec::new();
    for (id, addr) in config.peer_addrs() {
        if id == config.id {
            continue;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        queues.insert(id, tx);
        links.push((id, addr, rx));
    }
    let tick = Duration::from_millis(config.tick_ms);
    let metrics = Metrics::new();
    if let Some(addr) = config.metrics {
        crate::metrics::serve(addr, metrics.clone())
            .await
            .map_err(|error| ServeError::Listen { addr, error })?;
    }
    let actor = NodeActor::new(node, queues, tick, metrics.clone()).start();
    for (id, addr, rx) in links {
        let link = Link {
            me: config.id,
            peer: id,
            addr,
            token: token.clone(),
            chunk: config.raft_chunk_bytes,
        };
        tokio::spawn(peer_link(link, rx, metrics.clone()));
    }
    tokio::spawn(accept_loop(listener, config.id, token, actor, metrics));
    tokio::spawn(async {
        shutdown_signal().await;
        tracing::info!("shutting down");
        System::current().stop();
    });
    tracing::info!(id = config.id, listen = %config.listen, "coordinator started");
    Ok(())
}

async fn shutdown_signal() {
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

/// One outgoing peer link's settings.
struct Link {
    me: u64,
    peer: u64,
    addr: SocketAddr,
    token: String,
    /// Raft messages larger than this go in parts.
    chunk: usize,
}

/// Keeps a connection to a peer and sends it the node's Raft messages,
/// batched: whatever is queued goes out before one flush. Reconnects with
/// backoff; messages queued while down may be dropped (Raft retransmits).
async fn peer_link(link: Link, mut rx: mpsc::Receiver<Vec<u8>>, metrics: Metrics) {
    let (me, id, addr) = (link.me, link.peer, link.addr);
    let mut backoff = Duration::from_millis(50);
    let mut runs = 0u64;
    loop {
        match connect_peer(me, addr, &link.token).await {
            Ok(mut conn) => {
                backoff = Duration::from_millis(50);
                tracing::info!(peer = id, %addr, "peer link up");
                metrics.peer_links_up.inc();
                if let Err(e) = pump(&link, &mut conn, &mut rx, &mut runs).await {
                    tracing::warn!(peer = id, error = %e, "peer link down");
                }
                metrics.peer_links_up.dec();
                if rx.is_closed() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(peer = id, error = %e, "cannot reach peer");
                // Drop what piled up: it is stale by the time the peer is back.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

async fn connect_peer(me: u64, addr: SocketAddr, token: &str) -> Result<Conn, net::NetError> {
    let stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut conn = net::framed(stream);
    net::hello(&mut conn, token, Some(me)).await?;
    Ok(conn)
}

async fn pump(
    link: &Link,
    conn: &mut Conn,
    rx: &mut mpsc::Receiver<Vec<u8>>,
    runs: &mut u64,
) -> Result<(), net::NetError> {
    use futures::SinkExt;
    while let Some(bytes) = rx.recv().await {
        feed_raft(link, conn, bytes, runs).await?;
        while let Ok(bytes) = rx.try_recv() {
            feed_raft(link, conn, bytes, runs).await?;
        }
        SinkExt::<Bytes>::flush(conn).await?;
    }
    Ok(())
}

/// Queues one Raft message: in one frame, or in parts when it is large.
async fn feed_raft(
    link: &Link,
    conn: &mut Conn,
    bytes: Vec<u8>,
    runs: &mut u64,
) -> Result<(), net::NetError> {
    if bytes.len() <= link.chunk {
        let message = Message::Raft {
            from: link.me,
            bytes,
        };
        return net::feed(conn, &message).await;
    }
    *runs += 1;
    let parts = crate::chunks::split(link.me, *runs, &bytes, link.chunk);
    tracing::info!(
        peer = link.peer,
        bytes = bytes.len(),
        parts = parts.len(),
        "sending a large raft message in parts"
    );
    for part in parts {
        net::feed(conn, &part).await?;
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    me: u64,
    token: String,
    node: Addr<NodeActor>,
    metrics: Metrics,
) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let (token, node, metrics) = (token.clone(), node.clone(), metrics.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(stream, me, &token, node, metrics).await {
                        tracing::info!(%from, error = %e, "connection closed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection: the handshake, then peer messages into the node, or
/// client requests into the node and their answers back.
async fn serve_conn(
    stream: TcpStream,
    me: u64,
    token: &str,
    node: Addr<NodeActor>,
    metrics: Metrics,
) -> Result<(), net::NetError> {
    let mut conn = net::framed(stream);
    let caller = tokio::time::timeout(Duration::from_secs(5), net::accept(&mut conn, me, token))
        .await
        .map_err(|_| net::NetError::Refused("no hello within 5 s".into()))?;
    match caller {
        Ok(Caller::Peer(from)) => serve_peer(conn, from, node).await,
        Ok(Caller::Client) => {
            metrics.client_connections.inc();
            let result = serve_client(conn, node).await;
            metrics.client_connections.dec();
            result
        }
        Err(e) => {
            tracing::warn!(error = %e, "handshake refused");
            Err(e)
        }
    }
}

async fn serve_peer(mut conn: Conn, from: u64, node: Addr<NodeActor>) -> Result<(), net::NetError> {
    let mut parts = crate::chunks::Reassembler::default();
    loop {
        match net::recv(&mut conn).await? {
            Message::Raft {
                from: sender,
                bytes,
            } if sender == from => {
                node.do_send(Step { from, bytes });
            }
            Message::RaftChunk {
                from: sender,
                id,
                seq,
                last,
                crc32,
                bytes,
            } if sender == from => match parts.push(id, seq, last, crc32, &bytes) {
                Ok(Some(bytes)) => node.do_send(Step { from, bytes }),
                Ok(None) => {}
                Err(why) => tracing::warn!(peer = from, %why, "dropped a large raft message"),
            },
            other => {
                return Err(net::NetError::Refused(format!(
                    "peer {from} sent a {}",
                    net::kind(&other)
                )))
            }
        }
    }
}

/// Requests are answered as the node answers them, possibly out of order
/// (each names its client and sequence number).
async fn serve_client(conn: Conn, node: Addr<NodeActor>) -> Result<(), net::NetError> {
    use futures::StreamExt;
    let (mut stream, tx, writer) = net::split(conn);
    let result = loop {
        let frame = match stream.next().await {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => break Err(e.into()),
            None => break Ok(()),
        };
        let envelope = match floe_protocol::codec::decode::<Message>(&frame) {
            Ok(Message::Request(envelope)) => envelope,
            Ok(Message::StatusRequest) => {
                if let Ok(status) = node.send(GetStatus).await {
                    let _ = tx.send(Message::Status(status)).await;
                }
                continue;
            }
            Ok(other) => {
                let why = format!("a client sent a {}", net::kind(&other));
                let _ = tx.send(Message::Refused { why: why.clone() }).await;
                break Err(net::NetError::Refused(why));
            }
            Err(e) => {
                let why = format!("bad frame: {e}");
                let _ = tx.send(Message::Refused { why }).await;
                break Err(e.into());
            }
        };
        let (client, seq) = (envelope.client, envelope.seq);
        let answer = node.send(ClientRequest(envelope));
        let tx = tx.clone();
        tokio::spawn(async move {
            let outcome = match answer.await {
                Ok(rx) => rx.await.unwrap_or_else(|_| {
                    Err(FloeError::Unavailable(
                        "the node dropped the request".into(),
                    ))
                }),
                Err(_) => Err(FloeError::Unavailable("the node is shutting down".into())),
            };
            let _ = tx
                .send(Message::Response {
                    client,
                    seq,
                    outcome,
                })
                .await;
        });
    };
    drop(tx);
    let _ = writer.await;
    result
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
