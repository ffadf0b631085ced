//! The wire codec: `[version byte][bincode 2 payload]`, little-endian,
//! varint integers, a hard frame limit. The only place that knows bincode.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;
use thiserror::Error;

/// Version byte leading every frame.
pub const WIRE_VERSION: u8 = 1;
/// Largest frame accepted, version byte included.
pub const MAX_FRAME_LEN: usize = 16 << 20;

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CodecError {
    /// Zero bytes.
    #[error("empty frame")]
    Empty,
    /// A version this build does not speak.
    #[error("unsupported wire version {got} (this build speaks {WIRE_VERSION})")]
    Version {
        /// The version byte received.
        got: u8,
    },
    /// Larger than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the {max} byte limit")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not a valid encoding of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// Bytes left over after the message.
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

impl From<CodecError> for crate::error::FloeError {
    fn from(e: CodecError) -> Self {
        crate::error::FloeError::Codec(e.to_string())
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_FRAME_LEN>()
}

/// Encodes a message as one frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![WIRE_VERSION];
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if out.len() > MAX_FRAME_LEN {
        return Err(CodecError::TooLong {
            len: out.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Ok(out)
}

/// Decodes one frame; never panics on hostile input.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    let (&version, payload) = frame.split_first().ok_or(CodecError::Empty)?;
    if frame.len() > MAX_FRAME_LEN {
        return Err(CodecError::TooLong {
            len: frame.len(),
            max: MAX_FRAME_LEN,
        });
    }
    if version != WIRE_VERSION {
        return Err(CodecError::Version { got: version });
    }
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::Trailing(payload.len() - used));
    }
    Ok(msg)
}

/// Largest state-machine snapshot [`decode_snapshot`] accepts, version byte
/// included. Snapshots are not frames: they may exceed [`MAX_FRAME_LEN`].
pub const MAX_SNAPSHOT_LEN: usize = 1 << 30;

fn snapshot_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_variable_int_encoding()
        .with_limit::<MAX_SNAPSHOT_LEN>()
}

/// Encodes a whole state (e.g. a Raft snapshot) like [`encode`], but up to
/// [`MAX_SNAPSHOT_LEN`] bytes instead of the frame limit.
pub fn encode_snapshot<T: Serialize>(state: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![WIRE_VERSION];
    bincode::serde::encode_into_std_write(state, &mut out, snapshot_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if out.len() > MAX_SNAPSHOT_LEN {
        return Err(CodecError::TooLong {
            len: out.len(),
            max: MAX_SNAPSHOT_LEN,
        });
    }
    Ok(out)
}

/// A 64-bit digest of `state`'s snapshot encoding, computed without
/// building the encoding in memory (replicas compare digests after every
/// applied entry, so this runs often).
pub fn snapshot_digest<T: Serialize>(state: &T) -> Result<u64, CodecError> {
    use std::hash::Hasher;
    let mut hashing = std::io::BufWriter::with_capacity(8192, HashWriter::default());
    hashing
        .write_all(&[WIRE_VERSION])
        .and_then(|()| {
            bincode::serde::encode_into_std_write(state, &mut hashing, snapshot_config())
                .map(|_| ())
                .map_err(std::io::Error::other)
        })
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    let hasher = hashing
        .into_inner()
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    Ok(hasher.0.finish())
}

/// An `io::Write` that feeds a hasher.
#[derive(Default)]
struct HashWriter(std::hash::DefaultHasher);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::hash::Hasher::write(&mut self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes what [`encode_snapshot`] produced; never panics on hostile input.
pub fn decode_snapshot<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, payload) = bytes.split_first().ok_or(CodecError::Empty)?;
    if bytes.len() > MAX_SNAPSHOT_LEN {
        return Err(CodecError::TooLong {
            len: bytes.len(),
            max: MAX_SNAPSHOT_LEN,
        });
    }
    if version != WIRE_VERSION {
        return Err(CodecError::Version { got: version });
    }
    let (state, used) = bincode::serde::decode_from_slice(payload, snapshot_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::Trailing(payload.len() - used));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footprint::Footprint;
    use crate::ids::{BranchName, ClientId, CommitId, ObjectId, RepoName};
    use crate::messages::{Command, CommitMode, CommitRequest, Envelope, Message, Request};
    use crate::{ArrayMeta, ArrayPath, DType, Region};
    use proptest::prelude::*;

    #[test]
    fn the_digest_is_the_hash_of_the_snapshot_bytes() {
        use std::hash::Hasher;
        let state: Vec<(u64, String)> = (0..5_000).map(|i| (i * 977, format!("r{i}"))).collect();
        let bytes = encode_snapshot(&state).unwrap();
        let mut hasher = std::hash::DefaultHasher::new();
        hasher.write(&bytes);
        assert_eq!(snapshot_digest(&state).unwrap(), hasher.finish());
        let mut other = state.clone();
        other[4_999].1.push('!');
        assert_ne!(snapshot_digest(&other).unwrap(), hasher.finish());
    }

    fn sample() -> Message {
        let path = ArrayPath::new("/t").unwrap();
        let meta = ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0).unwrap();
        let mut footprint = Footprint::new();
        footprint.add_region(&path, &meta, &Region::new(&[(0, 20)]));
        Message::Request(Envelope {
            client: ClientId(7),
            seq: 300,
            request: Request::Command(Command::Commit(CommitRequest {
                repo: RepoName::new("r").unwrap(),
                branch: BranchName::new("main").unwrap(),
                base: CommitId(1),
                footprint,
                deltas: vec![ObjectId(0xab)],
                message: "m".into(),
                author: "a".into(),
                mode: CommitMode::Strict,
            })),
        })
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn round_trips() {
        let msg = sample();
        let frame = encode(&msg).unwrap();
        assert_eq!(decode::<Message>(&frame).unwrap(), msg);
    }

    /// Pins the wire format: if this changes, bump WIRE_VERSION.
    #[test]
    fn golden_bytes() {
        let frame = encode(&sample()).unwrap();
        assert_eq!(hex(&frame), GOLDEN);
    }

    const GOLDEN: &str = "010007fb2c0100030172046d61696e0101022f740103200100000000000000000000003a300000010000000000010010000000000001000001ab016d016100";

    #[test]
    fn refuses_bad_frames() {
        let frame = encode(&sample()).unwrap();
        assert_eq!(decode::<Message>(&[]), Err(CodecError::Empty));
        let mut wrong = frame.clone();
        wrong[0] = 9;
        assert_eq!(
            decode::<Message>(&wrong),
            Err(CodecError::Version { got: 9 })
        );
        let mut trailing = frame.clone();
        trailing.push(0);
        assert_eq!(decode::<Message>(&trailing), Err(CodecError::Trailing(1)));
        assert!(matches!(
            decode::<Message>(&frame[..frame.len() - 3]),
            Err(CodecError::Malformed(_))
        ));
        let huge = vec![WIRE_VERSION; MAX_FRAME_LEN + 1];
        assert!(matches!(
            decode::<Message>(&huge),
            Err(CodecError::TooLong { .. })
        ));
    }

    #[test]
    fn a_length_prefix_claiming_gigabytes_is_refused_not_allocated() {
        // Message::Raft{from: 1, bytes: <len = u64::MAX>}
        let mut frame = vec![WIRE_VERSION, 2, 1, 0xFF];
        frame.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode::<Message>(&frame),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn snapshots_round_trip_beyond_the_frame_limit() {
        let big = vec![7u8; MAX_FRAME_LEN + 10];
        assert!(matches!(encode(&big), Err(CodecError::TooLong { .. })));
        let bytes = encode_snapshot(&big).unwrap();
        assert_eq!(decode_snapshot::<Vec<u8>>(&bytes).unwrap(), big);
        assert_eq!(decode_snapshot::<Vec<u8>>(&[]), Err(CodecError::Empty));
        let mut trailing = bytes;
        trailing.push(1);
        assert_eq!(
            decode_snapshot::<Vec<u8>>(&trailing),
            Err(CodecError::Trailing(1))
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut frame = vec![WIRE_VERSION];
            frame.extend(bytes);
            let _ = decode::<Message>(&frame);
        }

        #[test]
        fn corrupted_frames_never_panic(pos in 0usize..64, byte in any::<u8>()) {
            let mut frame = encode(&sample()).unwrap();
            let pos = pos % frame.len();
            frame[pos] = byte;
            let _ = decode::<Message>(&frame);
        }
    }
}
