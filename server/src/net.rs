//! Frames on TCP: length-delimited (tokio-util) frames, each one versioned
//! bincode [`Message`] (the protocol crate's codec), with the frame limit
//! checked from the length prefix, before anything is allocated. Every
//! connection starts with a handshake: the caller's [`Message::Hello`]
//! (protocol version, cluster token, node id for a peer), answered
//! [`Message::Welcome`] or [`Message::Refused`] (then closed).

use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use floe_protocol::codec::{self, MAX_FRAME_LEN};
use floe_protocol::{Message, PROTOCOL_VERSION};

/// A TCP connection carrying frames.
pub type Conn = Framed<TcpStream, LengthDelimitedCodec>;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The socket failed, or a frame's length prefix exceeds the limit.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame that is not a message of this protocol.
    #[error("bad frame: {0}")]
    Codec(#[from] codec::CodecError),
    /// The peer closed the connection.
    #[error("connection closed")]
    Closed,
    /// The handshake was refused (by either side).
    #[error("refused: {0}")]
    Refused(String),
}

/// Frames over `stream`, refusing frames larger than the protocol's limit.
pub fn framed(stream: TcpStream) -> Conn {
    let _ = stream.set_nodelay(true);
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec();
    Framed::new(stream, codec)
}

/// Sends one message.
pub async fn send(conn: &mut Conn, message: &Message) -> Result<(), NetError> {
    let bytes = codec::encode(message)?;
    conn.send(Bytes::from(bytes)).await?;
    Ok(())
}

/// Queues one message without flushing (batching: flush once after many).
pub async fn feed(conn: &mut Conn, message: &Message) -> Result<(), NetError> {
    let bytes = codec::encode(message)?;
    conn.feed(Bytes::from(bytes)).await?;
    Ok(())
}

/// The read half of a connection, and a queue to its write half: a task
/// encodes and sends what is queued, in order, until the queue closes or
/// the socket fails (its handle ends then).
pub fn split(
    conn: Conn,
) -> (
    futures::stream::SplitStream<Conn>,
    tokio::sync::mpsc::Sender<Message>,
    tokio::task::JoinHandle<()>,
) {
    let (mut sink, stream) = StreamExt::split::<Bytes>(conn);
    let (out, mut queue) = tokio::sync::mpsc::channel::<Message>(1024);
    let writer = tokio::spawn(async move {
        // Whatever is queued goes out before one flush (batching).
        while let Some(first) = queue.recv().await {
            let mut next = Some(first);
            while let Some(message) = next {
                if let Ok(bytes) = codec::encode(&message) {
                    if sink.feed(Bytes::from(bytes)).await.is_err() {
                        return;
                    }
                }
                next = queue.try_recv().ok();
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    (stream, out, writer)
}

/// Receives one message.
pub async fn recv(conn: &mut Conn) -> Result<Message, NetError> {
    match conn.next().await {
        Some(frame) => Ok(codec::decode(&frame?)?),
        None => Err(NetError::Closed),
    }
}

/// The caller's side of the handshake: says hello (a coordinator with
/// its id and listen address), returns the answering node's id.
pub async fn hello(
    conn: &mut Conn,
    token: &str,
    peer: Option<(u64, SocketAddr)>,
) -> Result<u64, NetError> {
    let hello = Message::Hello {
        protocol: PROTOCOL_VERSION,
        token: token.to_string(),
        peer: peer.map(|p| p.0),
        listen: peer.map(|p| p.1),
    };
    send(conn, &hello).await?;
    match recv(conn).await? {
        Message::Welcome { node } => Ok(node),
        Message::Refused { why } => Err(NetError::Refused(why)),
        other => Err(NetError::Refused(format!(
            "expected a handshake answer, got {}",
            kind(&other)
        ))),
    }
}

/// Asks the node at `addr` for its status, on a connection of its own.
pub async fn node_status(
    addr: std::net::SocketAddr,
    token: &str,
) -> Result<floe_protocol::NodeStatus, NetError> {
    let connect = TcpStream::connect(addr);
    let stream = tokio::time::timeout(std::time::Duration::from_secs(2), connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut conn = framed(stream);
    hello(&mut conn, token, None).await?;
    send(&mut conn, &Message::StatusRequest).await?;
    match tokio::time::timeout(std::time::Duration::from_secs(2), recv(&mut conn)).await {
        Ok(Ok(Message::Status(status))) => Ok(status),
        Ok(Ok(other)) => Err(NetError::Refused(format!(
            "expected a status, got {}",
            kind(&other)
        ))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(NetError::Refused("no status within 2 s".into())),
    }
}

/// Who is calling, once the handshake is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Another coordinator: its node id and, if it said, where it listens.
    Peer(u64, Option<SocketAddr>),
    /// A client.
    Client,
}

/// Decides on a hello (pure): right protocol and token, or why not.
pub fn check_hello(first: &Message, token: &str) -> Result<Caller, String> {
    let Message::Hello {
        protocol,
        token: theirs,
        peer,
        listen,
    } = first
    else {
        return Err(format!(
            "the first frame must be a hello, got {}",
            kind(first)
        ));
    };
    if *protocol > PROTOCOL_VERSION {
        return Err(format!(
            "the caller speaks protocol {protocol}, this node speaks {PROTOCOL_VERSION}: upgrade the node"
        ));
    }
    if !same_secret(theirs.as_bytes(), token.as_bytes()) {
        return Err("wrong cluster token".into());
    }
    Ok(match peer {
        Some(id) => Caller::Peer(*id, *listen),
        None => Caller::Client,
    })
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's side of the handshake: reads the hello, answers it, and
/// returns the caller (or the refusal, already sent).
pub async fn accept(conn: &mut Conn, node: u64, token: &str) -> Result<Caller, NetError> {
    let first = match recv(conn).await {
        Ok(first) => first,
        Err(NetError::Codec(e)) => {
            let why = format!("the first frame must be a hello: {e}");
            let _ = send(conn, &Message::Refused { why: why.clone() }).await;
            return Err(NetError::Refused(why));
        }
        Err(e) => return Err(e),
    };
    match check_hello(&first, token) {
        Ok(caller) => {
            send(conn, &Message::Welcome { node }).await?;
            Ok(caller)
        }
        Err(why) => {
            let _ = send(conn, &Message::Refused { why: why.clone() }).await;
            Err(NetError::Refused(why))
        }
    }
}

/// A message's kind, for errors and logs.
pub fn kind(message: &Message) -> &'static str {
    match message {
        Message::Request(_) => "request",
        Message::Response { .. } => "response",
        Message::Raft { .. } => "raft message",
        Message::Hello { .. } => "hello",
        Message::Welcome { .. } => "welcome",
        Message::Refused { .. } => "refusal",
        Message::StatusRequest => "status request",
        Message::Status(_) => "status",
        Message::RaftChunk { .. } => "raft message part",
        Message::RaftChunkAck { .. } => "raft message part acknowledgement",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(protocol: u32, token: &str, peer: Option<u64>) -> Message {
        Message::Hello {
            protocol,
            token: token.into(),
            peer,
            listen: None,
        }
    }

    #[test]
    fn the_handshake_checks_version_and_token() {
        assert_eq!(
            check_hello(&hello(PROTOCOL_VERSION, "s3cret", Some(2)), "s3cret"),
            Ok(Caller::Peer(2, None))
        );
        assert_eq!(
            check_hello(&hello(PROTOCOL_VERSION, "s3cret", None), "s3cret"),
            Ok(Caller::Client)
        );
        let wrong = check_hello(&hello(PROTOCOL_VERSION, "s3creT", None), "s3cret");
        assert_eq!(wrong, Err("wrong cluster token".into()));
        let short = check_hello(&hello(PROTOCOL_VERSION, "s3", None), "s3cret");
        assert_eq!(short, Err("wrong cluster token".into()));
        let newer = check_hello(&hello(PROTOCOL_VERSION + 1, "s3cret", None), "s3cret");
        assert!(newer.unwrap_err().contains("upgrade the node"));
        let raft = Message::Raft {
            from: 1,
            bytes: vec![],
        };
        assert!(check_hello(&raft, "s3cret")
            .unwrap_err()
            .contains("must be a hello"));
    }
}
