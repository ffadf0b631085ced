//! Incoming connections: the listener's accept loop does the handshake,
//! then hands the connection to an actor of its own: a [`ClientConn`] moves
//! a client's requests into the node actor and the answers back; a
//! [`PeerConn`] moves a peer's Raft messages into the node actor and the
//! parts of its snapshot transfers to that peer's link. Neither decides
//! anything.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::bytes::BytesMut;

use floe_protocol::{FloeError, Message};

use crate::link::PartIn;
use crate::metrics::Metrics;
use crate::net::{self, Caller};
use crate::node::{ClientRequest, GetStatus, LearnPeer, NodeActor, RoutePart, Step};

/// A frame read from the connection.
struct Frame(Result<BytesMut, std::io::Error>);

impl actix::Message for Frame {
    type Result = ();
}

/// Accepts connections on `listener` until the process stops.
pub async fn accept_loop(
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
                actix::spawn(async move {
                    if let Err(e) = greet(stream, from, me, &token, node, metrics).await {
                        tracing::info!(%from, error = %e, "connection refused");
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

/// The handshake, then the connection's actor.
async fn greet(
    stream: TcpStream,
    from: SocketAddr,
    me: u64,
    token: &str,
    node: Addr<NodeActor>,
    metrics: Metrics,
) -> Result<(), net::NetError> {
    let mut conn = net::framed(stream);
    let caller = tokio::time::timeout(Duration::from_secs(5), net::accept(&mut conn, me, token))
        .await
        .map_err(|_| net::NetError::Refused("no hello within 5 s".into()))?;
    let caller = caller.inspect_err(|e| tracing::warn!(error = %e, "handshake refused"))?;
    let (stream, out, _writer) = net::split(conn);
    let frames = stream.map(Frame);
    match caller {
        Caller::Peer(peer, listen) => {
            if let Some(addr) = listen.map(|l| reachable(l, from)) {
                node.do_send(LearnPeer { id: peer, addr });
            }
            let from = peer;
            PeerConn::create(|ctx| {
                ctx.add_stream(frames);
                PeerConn { from, node, out }
            });
        }
        Caller::Client => {
            ClientConn::create(|ctx| {
                ctx.add_stream(frames);
                ClientConn { node, out, metrics }
            });
        }
    }
    Ok(())
}

/// Where a peer that listens on `listen` is reached: an unspecified IP
/// (`0.0.0.0`) means the IP its connection comes from.
fn reachable(listen: SocketAddr, from: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(from.ip(), listen.port())
    } else {
        listen
    }
}

/// A client's connection. Requests are answered as the node answers them,
/// possibly out of order (each names its client and sequence number).
pub struct ClientConn {
    node: Addr<NodeActor>,
    out: mpsc::Sender<Message>,
    metrics: Metrics,
}

impl Actor for ClientConn {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.metrics.client_connections.inc();
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.metrics.client_connections.dec();
    }
}

impl ClientConn {
    /// Refuses the connection: says why, then closes it.
    fn refuse(&mut self, why: String, ctx: &mut Context<Self>) {
        tracing::info!(%why, "client connection closed");
        let _ = self.out.try_send(Message::Refused { why });
        ctx.stop();
    }
}

impl StreamHandler<Frame> for ClientConn {
    fn handle(&mut self, Frame(frame): Frame, ctx: &mut Context<Self>) {
        let frame = match frame {
            Ok(frame) => frame,
            Err(e) => return self.refuse(format!("bad frame: {e}"), ctx),
        };
        let envelope = match floe_protocol::codec::decode::<Message>(&frame) {
            Ok(Message::Request(envelope)) => envelope,
            Ok(Message::StatusRequest) => {
                let (status, out) = (self.node.send(GetStatus), self.out.clone());
                actix::spawn(async move {
                    if let Ok(status) = status.await {
                        let _ = out.send(Message::Status(status)).await;
                    }
                });
                return;
            }
            Ok(other) => return self.refuse(format!("a client sent a {}", net::kind(&other)), ctx),
            Err(e) => return self.refuse(format!("bad frame: {e}"), ctx),
        };
        let (client, seq) = (envelope.client, envelope.seq);
        let (answer, out) = (self.node.send(ClientRequest(envelope)), self.out.clone());
        actix::spawn(async move {
            let outcome = match answer.await {
                Ok(rx) => rx.await.unwrap_or_else(|_| {
                    Err(FloeError::Unavailable(
                        "the node dropped the request".into(),
                    ))
                }),
                Err(_) => Err(FloeError::Unavailable("the node is shutting down".into())),
            };
            let response = Message::Response {
                client,
                seq,
                outcome,
            };
            let _ = out.send(response).await;
        });
    }
}

/// A peer's connection to us: its Raft messages, and the parts of its
/// snapshot transfers (acknowledged on this connection).
pub struct PeerConn {
    from: u64,
    node: Addr<NodeActor>,
    out: mpsc::Sender<Message>,
}

impl Actor for PeerConn {
    type Context = Context<Self>;
}

impl StreamHandler<Frame> for PeerConn {
    fn handle(&mut self, Frame(frame): Frame, ctx: &mut Context<Self>) {
        let from = self.from;
        let message = frame
            .map_err(|e| e.to_string())
            .and_then(|f| floe_protocol::codec::decode::<Message>(&f).map_err(|e| e.to_string()));
        match message {
            Ok(Message::Raft {
                from: sender,
                bytes,
            }) if sender == from => {
                self.node.do_send(Step { from, bytes });
            }
            Ok(Message::RaftChunk {
                from: sender,
                id,
                offset,
                total,
                crc32,
                bytes,
            }) if sender == from => {
                let part = PartIn {
                    id,
                    offset,
                    total,
                    crc32,
                    bytes,
                };
                let (routed, out) = (self.node.send(RoutePart { from, part }), self.out.clone());
                // Parts are acknowledged in order: wait for this one.
                ctx.wait(
                    async move {
                        if let Ok(Some(ack)) = routed.await {
                            let _ = out.send(ack).await;
                        }
                    }
                    .into_actor(self),
                );
            }
            Ok(other) => {
                tracing::warn!(peer = from, "peer sent a {}; closing", net::kind(&other));
                ctx.stop();
            }
            Err(e) => {
                tracing::warn!(peer = from, error = %e, "bad frame from peer; closing");
                ctx.stop();
            }
        }
    }
}
