//! One actor per peer: the outgoing connection to that peer (connect with
//! backoff, the handshake, Raft messages batched onto the socket) and both
//! sides of its snapshot transfers ([`crate::chunks`]): large messages to
//! the peer go out as acknowledged parts, and parts from the peer (handed
//! over by the connection actor that read them) are assembled here, so
//! that a transfer survives a lost connection.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::StreamExt;
use tokio::net::TcpStream;

use floe_protocol::Message;

use crate::chunks::{Incoming, Outgoing};
use crate::metrics::Metrics;
use crate::net::{self, Conn};
use crate::node::{NodeActor, Step};

/// Raft messages held for a peer while its link is down; older ones are
/// dropped first (Raft resends what matters).
const QUEUE: usize = 4096;
/// How often the link looks after itself (reconnects, stalled transfers).
const TICK: Duration = Duration::from_millis(200);

/// A Raft message for the peer (protobuf bytes), from the node actor.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct RaftOut(pub Vec<u8>);

/// A part of a transfer from the peer, read by a connection actor; the
/// answer is the acknowledgement to write back on that connection.
#[derive(actix::Message)]
#[rtype(result = "Message")]
pub struct PartIn {
    /// The transfer.
    pub id: u64,
    /// Where the part starts.
    pub offset: u64,
    /// The whole message's length.
    pub total: u64,
    /// CRC-32 of the part.
    pub crc32: u32,
    /// The part.
    pub bytes: Vec<u8>,
}

/// The peer left the cluster (or moved): the link stops.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Close;

/// A frame read from the outgoing connection `gen` (`None`: it closed).
struct Read(
    u64,
    Option<Result<tokio_util::bytes::BytesMut, std::io::Error>>,
);

impl actix::Message for Read {
    type Result = ();
}

/// Where a peer is and how to greet it.
#[derive(Clone)]
pub struct PeerAddr {
    /// This node's id.
    pub me: u64,
    /// Where this node listens (told to the peer in the handshake).
    pub listen: SocketAddr,
    /// The peer's id.
    pub peer: u64,
    /// The peer's listen address.
    pub addr: SocketAddr,
    /// The cluster token.
    pub token: String,
    /// Messages larger than this go as a transfer of parts this large.
    pub chunk: usize,
}

impl PeerAddr {
    /// The same greeting for another peer.
    pub fn for_peer(&self, peer: u64, addr: SocketAddr) -> PeerAddr {
        PeerAddr {
            peer,
            addr,
            ..self.clone()
        }
    }
}

/// See the module documentation.
pub struct PeerLink {
    to: PeerAddr,
    node: Addr<NodeActor>,
    metrics: Metrics,
    queue: VecDeque<Vec<u8>>,
    /// The connection's write queue, while connected.
    out: Option<tokio::sync::mpsc::Sender<Message>>,
    /// Generation of the current connection (frames of older ones are ignored).
    generation: u64,
    connecting: bool,
    retry_at: Instant,
    backoff: Duration,
    outgoing: Outgoing,
    incoming: Incoming,
    /// The shell's clock for the transfer core: ms are counted from here.
    born: Instant,
}

impl PeerLink {
    /// A link to `to`, stepping what it assembles into `node`.
    pub fn new(to: PeerAddr, node: Addr<NodeActor>, metrics: Metrics) -> Self {
        let first_id = crate::serve::rand_seed();
        PeerLink {
            outgoing: Outgoing::new(to.me, to.chunk, first_id),
            incoming: Incoming::new(to.me),
            to,
            node,
            metrics,
            queue: VecDeque::new(),
            out: None,
            generation: 0,
            connecting: false,
            retry_at: Instant::now(),
            backoff: Duration::from_millis(50),
            born: Instant::now(),
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.connecting || self.out.is_some() || Instant::now() < self.retry_at {
            return;
        }
        self.connecting = true;
        let (me, addr, token) = (self.to.me, self.to.addr, self.to.token.clone());
        let listen = self.to.listen;
        let attempt = async move { connect_peer((me, listen), addr, &token).await };
        ctx.spawn(attempt.into_actor(self).map(|result, link, ctx| {
            link.connecting = false;
            match result {
                Ok(conn) => link.connected(conn, ctx),
                Err(e) => {
                    tracing::debug!(peer = link.to.peer, error = %e, "cannot reach peer");
                    // What piled up is stale by the time the peer is back.
                    link.drop_queue();
                    link.retry_at = Instant::now() + link.backoff;
                    link.backoff = (link.backoff * 2).min(Duration::from_secs(1));
                }
            }
        }));
    }

    fn connected(&mut self, conn: Conn, ctx: &mut Context<Self>) {
        tracing::info!(peer = self.to.peer, addr = %self.to.addr, "peer link up");
        self.metrics.peer_links_up.inc();
        self.backoff = Duration::from_millis(50);
        self.generation += 1;
        let generation = self.generation;
        let (stream, out, _writer) = net::split(conn);
        // Acknowledgements of our transfers come back on this connection.
        let frames = stream
            .map(move |frame| Read(generation, Some(frame)))
            .chain(futures::stream::once(async move { Read(generation, None) }));
        ctx.add_stream(frames);
        self.out = Some(out);
        while let Some(bytes) = self.queue.pop_front() {
            self.send_raft(bytes);
        }
        self.outgoing.reconnected();
        self.pump();
    }

    fn disconnected(&mut self, why: &str) {
        if self.out.take().is_some() {
            tracing::warn!(peer = self.to.peer, why, "peer link down");
            self.metrics.peer_links_up.dec();
        }
        self.outgoing.reconnected();
    }

    fn send_raft(&mut self, bytes: Vec<u8>) {
        let Some(out) = &self.out else {
            if self.queue.len() >= QUEUE {
                self.queue.pop_front();
                self.metrics.peer_messages_dropped.inc();
            }
            self.queue.push_back(bytes);
            return;
        };
        let message = Message::Raft {
            from: self.to.me,
            bytes,
        };
        if out.try_send(message).is_err() {
            self.metrics.peer_messages_dropped.inc();
        }
    }

    /// Sends the parts of the transfer under way that its window allows.
    fn pump(&mut self) {
        let Some(out) = &self.out else {
            return;
        };
        while let Some(part) = self.outgoing.next_part() {
            if let Message::RaftChunk { bytes, .. } = &part {
                self.metrics.snapshot_bytes_sent.inc_by(bytes.len() as u64);
            }
            if out.try_send(part).is_err() {
                // The socket is backed up: send again from the last ack.
                self.outgoing.reconnected();
                return;
            }
        }
    }

    fn drop_queue(&mut self) {
        self.metrics
            .peer_messages_dropped
            .inc_by(self.queue.len() as u64);
        self.queue.clear();
    }

    /// Milliseconds since the link started: the transfer core's clock.
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// Lets the transfer core give up a stalled transfer.
    fn watch_transfer(&mut self) {
        if let Some((acked, total)) = self.outgoing.give_up_if_stalled(self.now_ms()) {
            tracing::warn!(
                peer = self.to.peer,
                acked,
                total,
                "snapshot transfer stalled; given up"
            );
        }
    }
}

async fn connect_peer(
    me: (u64, SocketAddr),
    addr: SocketAddr,
    token: &str,
) -> Result<Conn, net::NetError> {
    let stream = tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut conn = net::framed(stream);
    net::hello(&mut conn, token, Some(me)).await?;
    Ok(conn)
}

impl Actor for PeerLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
        ctx.run_interval(TICK, |link, ctx| {
            link.watch_transfer();
            // Always connected (with backoff): the handshake is how the
            // peer learns this node's address, e.g. after it restarts.
            if link.out.is_none() {
                link.connect(ctx);
            }
            link.pump();
        });
    }
}

impl Handler<RaftOut> for PeerLink {
    type Result = ();

    fn handle(&mut self, msg: RaftOut, ctx: &mut Context<Self>) {
        if self.outgoing.is_large(&msg.0) {
            if self.outgoing.start(msg.0, self.now_ms()) {
                tracing::info!(peer = self.to.peer, "sending a snapshot in parts");
                self.pump();
            } else {
                self.metrics.peer_messages_dropped.inc();
            }
        } else {
            self.send_raft(msg.0);
        }
        if self.out.is_none() {
            self.connect(ctx);
        }
    }
}

impl Handler<Close> for PeerLink {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        tracing::info!(peer = self.to.peer, "peer link closed");
        self.disconnected("closed");
        ctx.stop();
    }
}

impl Handler<PartIn> for PeerLink {
    type Result = MessageResult<PartIn>;

    fn handle(&mut self, part: PartIn, _: &mut Context<Self>) -> Self::Result {
        let received =
            self.incoming
                .push(part.id, part.offset, part.total, part.crc32, &part.bytes);
        if let Some(why) = &received.dropped {
            tracing::warn!(peer = self.to.peer, %why, "dropped a snapshot part");
        }
        if let Some(bytes) = received.whole {
            tracing::info!(
                peer = self.to.peer,
                bytes = bytes.len(),
                "snapshot received"
            );
            self.metrics.snapshots_received.inc();
            self.node.do_send(Step {
                from: self.to.peer,
                bytes,
            });
        }
        MessageResult(received.ack)
    }
}

impl StreamHandler<Read> for PeerLink {
    fn handle(&mut self, Read(generation, frame): Read, _: &mut Context<Self>) {
        if generation != self.generation {
            return;
        }
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return self.disconnected(&e.to_string()),
            None => return self.disconnected("closed by the peer"),
        };
        match floe_protocol::codec::decode::<Message>(&frame) {
            Ok(Message::RaftChunkAck { id, received, .. }) => {
                if self.outgoing.acked(id, received, self.now_ms()) {
                    tracing::info!(peer = self.to.peer, "snapshot sent");
                    self.metrics.snapshots_sent.inc();
                }
                self.pump();
            }
            Ok(other) => tracing::warn!(peer = self.to.peer, "unexpected {}", net::kind(&other)),
            Err(e) => tracing::warn!(peer = self.to.peer, error = %e, "bad frame from peer"),
        }
    }

    /// Connections come and go; the link stays.
    fn finished(&mut self, _: &mut Context<Self>) {}
}
