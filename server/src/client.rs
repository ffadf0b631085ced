//! The network client: a [`Coordinator`] over TCP. One connection per
//! node, opened on first use (handshake with the cluster token) and
//! shared by every request to that node; answers are matched to requests
//! by client id and sequence number. It only transports: sending once,
//! failing with `Unavailable` when the node cannot be reached or does not
//! answer in time. Finding the leader, retrying and backing off are the
//! client core's `Requester`, as with the embedded cluster.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use floe_protocol::{ClientId, Coordinator, Envelope, FloeError, Message, Outcome};

use crate::net;

/// Requests waiting for their answers on one connection.
type Waiting = Arc<Mutex<HashMap<(ClientId, u64), Vec<oneshot::Sender<Outcome>>>>>;

/// One open connection: a queue to its writer task, and the requests
/// waiting for answers from its reader task.
#[derive(Clone)]
struct Link {
    out: mpsc::Sender<Message>,
    waiting: Waiting,
}

/// See the module documentation.
pub struct NetCoordinator {
    endpoints: BTreeMap<u64, SocketAddr>,
    token: String,
    /// Longest wait for one answer (the client core's own timeouts are
    /// usually shorter and resend first).
    deadline: Duration,
    /// One slot per node, each behind its own lock: opening a connection
    /// to a node that does not answer holds up requests to that node only.
    links: BTreeMap<u64, tokio::sync::Mutex<Option<Link>>>,
}

impl NetCoordinator {
    /// A client of the nodes at `endpoints` (by node id), with the
    /// cluster's `token`.
    pub fn new(endpoints: BTreeMap<u64, SocketAddr>, token: String) -> Self {
        let links = endpoints
            .keys()
            .map(|&id| (id, tokio::sync::Mutex::new(None)))
            .collect();
        NetCoordinator {
            endpoints,
            token,
            deadline: Duration::from_secs(10),
            links,
        }
    }

    /// The connection to `to`, opened if needed.
    async fn link(&self, to: u64) -> Result<Link, FloeError> {
        let (Some(slot), Some(addr)) = (self.links.get(&to), self.endpoints.get(&to)) else {
            return Err(FloeError::Unavailable(format!("no endpoint for node {to}")));
        };
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref().filter(|l| !l.out.is_closed()) {
            return Ok(link.clone());
        }
        let link = open(*addr, &self.token)
            .await
            .map_err(|e| FloeError::Unavailable(format!("node {to} at {addr}: {e}")))?;
        *slot = Some(link.clone());
        Ok(link)
    }
}

/// Connects, says hello, and starts the connection's reader and writer.
async fn open(addr: SocketAddr, token: &str) -> Result<Link, net::NetError> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut conn = net::framed(stream);
    tokio::time::timeout(Duration::from_secs(2), net::hello(&mut conn, token, None))
        .await
        .map_err(|_| net::NetError::Refused("no answer to the handshake".into()))??;
    let (mut stream, out, _writer) = net::split(conn);
    let waiting: Waiting = Arc::default();
    let answers = waiting.clone();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = stream.next().await {
            match floe_protocol::codec::decode::<Message>(&frame) {
                Ok(Message::Response {
                    client,
                    seq,
                    outcome,
                }) => deliver(&answers, client, seq, outcome),
                Ok(Message::Refused { why }) => {
                    tracing::warn!(%why, "the node refused our traffic");
                    break;
                }
                _ => break,
            }
        }
        // Closed: whoever still waits learns it now, not at its deadline.
        fail_all(&answers, "the connection closed");
    });
    Ok(Link { out, waiting })
}

fn deliver(waiting: &Waiting, client: ClientId, seq: u64, outcome: Outcome) {
    let waiters = waiting
        .lock()
        .ok()
        .and_then(|mut w| w.remove(&(client, seq)));
    for w in waiters.into_iter().flatten() {
        let _ = w.send(outcome.clone());
    }
}

fn fail_all(waiting: &Waiting, why: &str) {
    let all: Vec<_> = match waiting.lock() {
        Ok(mut w) => w.drain().collect(),
        Err(_) => return,
    };
    for (_, waiters) in all {
        for w in waiters {
            let _ = w.send(Err(FloeError::Unavailable(why.to_string())));
        }
    }
}

impl Coordinator for NetCoordinator {
    fn nodes(&self) -> Vec<u64> {
        self.endpoints.keys().copied().collect()
    }

    async fn send(&self, to: u64, envelope: Envelope) -> Outcome {
        let link = self.link(to).await?;
        let (tx, rx) = oneshot::channel();
        let key = (envelope.client, envelope.seq);
        if let Ok(mut w) = link.waiting.lock() {
            w.entry(key).or_default().push(tx);
        }
        if link.out.send(Message::Request(envelope)).await.is_err() {
            return Err(FloeError::Unavailable(format!(
                "node {to}: the connection closed"
            )));
        }
        match tokio::time::timeout(self.deadline, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(FloeError::Unavailable(format!(
                "node {to}: the connection closed"
            ))),
            Err(_) => {
                if let Ok(mut w) = link.waiting.lock() {
                    w.remove(&key);
                }
                Err(FloeError::Unavailable(format!(
                    "node {to}: no answer within {:?}",
                    self.deadline
                )))
            }
        }
    }
}
