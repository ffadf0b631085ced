//! The repository format on object storage. Pure: keys, chunk object
//! encoding and manifest encoding, no IO.
//!
//! Layout under a repo (every id is a random 128-bit [`ObjectId`] printed as
//! 32 hex digits; every object is written once and never changed, so no
//! backend needs conditional writes):
//!
//! ```text
//! <repo>/chunks/<id>        one chunk: header + full chunk buffer (raw or zstd)
//! <repo>/manifests/<id>     a delta manifest: (array, chunk coord) -> chunk id
//! <repo>/checkpoints/<id>   the full chunk map of one commit (same type)
//! ```
//!
//! A chunk object is a 14-byte header followed by the payload:
//!
//! ```text
//! offset 0  4 bytes  magic "FLCK"
//! offset 4  1 byte   chunk format version (1)
//! offset 5  1 byte   codec: 0 raw, 1 zstd
//! offset 6  8 bytes  length of the decoded buffer, u64 little-endian
//! offset 14 ...      payload: the buffer (raw) or its zstd frame
//! ```
//!
//! The decoded buffer always holds `chunk_shape` elements, row-major,
//! little-endian; edge chunks are padded with the fill value.

use std::collections::BTreeMap;

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use floe_protocol::{codec, ArrayMeta, ArrayPath, Codec, FloeError, ObjectId, RepoName};

/// Magic bytes opening every chunk object.
pub const CHUNK_MAGIC: [u8; 4] = *b"FLCK";
/// The chunk object format this build writes and reads.
pub const CHUNK_FORMAT_VERSION: u8 = 1;
/// Length of the chunk object header.
pub const CHUNK_HEADER_LEN: usize = 14;

const CODEC_RAW: u8 = 0;
const CODEC_ZSTD: u8 = 1;

/// The kinds of object a repo holds, each under its own folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A chunk object (`chunks/`).
    Chunk,
    /// A delta manifest (`manifests/`).
    Manifest,
    /// A checkpoint (`checkpoints/`).
    Checkpoint,
}

impl ObjectKind {
    /// The folder name of this kind inside a repo.
    pub fn folder(self) -> &'static str {
        match self {
            ObjectKind::Chunk => "chunks",
            ObjectKind::Manifest => "manifests",
            ObjectKind::Checkpoint => "checkpoints",
        }
    }
}

/// The key of an object: `<repo>/<folder>/<id>`.
pub fn object_key(repo: &RepoName, kind: ObjectKind, id: ObjectId) -> Path {
    Path::from_iter([
        repo.as_str().to_string(),
        kind.folder().to_string(),
        id.to_string(),
    ])
}

/// `<repo>/chunks/<id>`.
pub fn chunk_key(repo: &RepoName, id: ObjectId) -> Path {
    object_key(repo, ObjectKind::Chunk, id)
}

/// `<repo>/manifests/<id>`.
pub fn manifest_key(repo: &RepoName, id: ObjectId) -> Path {
    object_key(repo, ObjectKind::Manifest, id)
}

/// `<repo>/checkpoints/<id>`.
pub fn checkpoint_key(repo: &RepoName, id: ObjectId) -> Path {
    object_key(repo, ObjectKind::Checkpoint, id)
}

/// Bytes of one full (padded) chunk buffer of `meta`.
pub fn chunk_bytes(meta: &ArrayMeta) -> usize {
    meta.chunk_elements() * meta.dtype.size()
}

thread_local! {
    /// zstd contexts, one per thread, reused: creating one per chunk costs
    /// more than compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `zstd::bulk::compress` on this thread's context.
fn compress(buffer: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(buffer),
            None => zstd::bulk::compress(buffer, level),
        }
    })
}

/// `zstd::bulk::decompress` on this thread's context.
fn decompress(payload: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot.as_mut() {
            Some(d) => d.decompress(payload, capacity),
            None => zstd::bulk::decompress(payload, capacity),
        }
    })
}

/// Encodes a full chunk buffer as a chunk object with `meta.codec`.
pub fn encode_chunk(meta: &ArrayMeta, buffer: &[u8]) -> Result<Vec<u8>, FloeError> {
    let expected = chunk_bytes(meta);
    if buffer.len() != expected {
        return Err(FloeError::Codec(format!(
            "chunk buffer holds {} bytes, a chunk of this array needs {expected}",
            buffer.len()
        )));
    }
    let (codec, payload) = match meta.codec {
        Codec::Raw => (CODEC_RAW, None),
        Codec::Zstd { level } => (
            CODEC_ZSTD,
            Some(
                compress(buffer, level)
                    .map_err(|e| FloeError::Codec(format!("zstd compression failed: {e}")))?,
            ),
        ),
    };
    let payload: &[u8] = payload.as_deref().unwrap_or(buffer);
    let mut out = Vec::with_capacity(CHUNK_HEADER_LEN + payload.len());
    out.extend_from_slice(&CHUNK_MAGIC);
    out.push(CHUNK_FORMAT_VERSION);
    out.push(codec);
    out.extend_from_slice(&(buffer.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes a chunk object into the full chunk buffer of `meta`. Any object
/// that is not a well-formed chunk of exactly that size is an error.
pub fn decode_chunk(meta: &ArrayMeta, object: &[u8]) -> Result<Vec<u8>, FloeError> {
    let bad = |why: String| FloeError::Codec(format!("bad chunk object: {why}"));
    if object.len() < CHUNK_HEADER_LEN {
        return Err(bad(format!(
            "{} bytes is shorter than the header",
            object.len()
        )));
    }
    let (header, payload) = object.split_at(CHUNK_HEADER_LEN);
    if header[0..4] != CHUNK_MAGIC {
        return Err(bad("wrong magic".into()));
    }
    if header[4] != CHUNK_FORMAT_VERSION {
        return Err(bad(format!(
            "unsupported chunk format version {} (this build reads {CHUNK_FORMAT_VERSION})",
            header[4]
        )));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&header[6..14]);
    let len = u64::from_le_bytes(len);
    let expected = chunk_bytes(meta);
    if len != expected as u64 {
        return Err(bad(format!(
            "it holds {len} bytes, a chunk of this array needs {expected}"
        )));
    }
    let buffer = match header[5] {
        CODEC_RAW => payload.to_vec(),
        CODEC_ZSTD => decompress(payload, expected).map_err(|e| bad(format!("zstd: {e}")))?,
        other => return Err(bad(format!("unknown codec {other}"))),
    };
    if buffer.len() != expected {
        return Err(bad(format!(
            "payload decodes to {} bytes, expected {expected}",
            buffer.len()
        )));
    }
    Ok(buffer)
}

/// A map `(array path, chunk coordinate) -> chunk object`. Delta manifests
/// (the chunks one session or task wrote) and checkpoints (every chunk of a
/// commit) share this type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Chunks by array, then by chunk coordinate.
    pub arrays: BTreeMap<ArrayPath, BTreeMap<Vec<u64>, ObjectId>>,
}

impl Manifest {
    /// An empty manifest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that chunk `coord` of `path` is held by object `id`.
    pub fn insert(&mut self, path: ArrayPath, coord: Vec<u64>, id: ObjectId) {
        self.arrays.entry(path).or_default().insert(coord, id);
    }

    /// The object holding chunk `coord` of `path`, if listed.
    pub fn get(&self, path: &ArrayPath, coord: &[u64]) -> Option<ObjectId> {
        self.arrays.get(path)?.get(coord).copied()
    }

    /// Number of chunks listed, over all arrays.
    pub fn len(&self) -> usize {
        self.arrays.values().map(BTreeMap::len).sum()
    }

    /// True when no chunk is listed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every `(path, coord, id)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ArrayPath, &Vec<u64>, ObjectId)> + '_ {
        self.arrays
            .iter()
            .flat_map(|(p, m)| m.iter().map(move |(c, &id)| (p, c, id)))
    }

    /// Encodes the manifest: the protocol's version byte, then bincode.
    /// Manifests may exceed one wire frame, so the snapshot limit applies.
    pub fn encode(&self) -> Result<Vec<u8>, FloeError> {
        Ok(codec::encode_snapshot(self)?)
    }

    /// Decodes a manifest; garbage is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, FloeError> {
        codec::decode_snapshot(bytes)
            .map_err(|e| FloeError::Codec(format!("bad manifest object: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::DType;
    use proptest::prelude::*;

    fn meta(codec: Codec) -> ArrayMeta {
        ArrayMeta::new(vec![25, 7], vec![10, 4], DType::I32, -1.0)
            .unwrap()
            .with_codec(codec)
    }

    fn buffer(meta: &ArrayMeta) -> Vec<u8> {
        (0..chunk_bytes(meta)).map(|i| (i % 7) as u8).collect()
    }

    #[test]
    fn keys_follow_the_layout() {
        let repo = RepoName::new("weather").unwrap();
        let id = ObjectId(0xab);
        assert_eq!(
            chunk_key(&repo, id).as_ref(),
            "weather/chunks/000000000000000000000000000000ab"
        );
        assert_eq!(
            manifest_key(&repo, id).as_ref(),
            "weather/manifests/000000000000000000000000000000ab"
        );
        assert_eq!(
            checkpoint_key(&repo, id).as_ref(),
            "weather/checkpoints/000000000000000000000000000000ab"
        );
    }

    #[test]
    fn chunks_round_trip_raw_and_zstd() {
        for codec in [Codec::Raw, Codec::Zstd { level: 3 }] {
            let m = meta(codec);
            let buf = buffer(&m);
            let obj = encode_chunk(&m, &buf).unwrap();
            assert_eq!(&obj[0..4], b"FLCK");
            assert_eq!(obj[4], CHUNK_FORMAT_VERSION);
            assert_eq!(decode_chunk(&m, &obj).unwrap(), buf);
        }
        // zstd actually compresses a constant buffer.
        let m = meta(Codec::Zstd { level: 3 });
        let obj = encode_chunk(&m, &vec![0u8; chunk_bytes(&m)]).unwrap();
        assert!(obj.len() < chunk_bytes(&m) / 2);
        // Raw objects are header + buffer.
        let m = meta(Codec::Raw);
        assert_eq!(
            encode_chunk(&m, &buffer(&m)).unwrap().len(),
            CHUNK_HEADER_LEN + chunk_bytes(&m)
        );
    }

    #[test]
    fn wrong_sized_buffers_are_refused() {
        let m = meta(Codec::Raw);
        assert!(encode_chunk(&m, &[0u8; 3]).is_err());
        // A chunk of another array's size does not decode as this one's.
        let other = ArrayMeta::new(vec![25, 7], vec![5, 4], DType::I32, 0.0).unwrap();
        let obj = encode_chunk(&other, &vec![0u8; chunk_bytes(&other)]).unwrap();
        assert!(matches!(decode_chunk(&m, &obj), Err(FloeError::Codec(_))));
    }

    #[test]
    fn garbage_chunks_are_errors() {
        let m = meta(Codec::Zstd { level: 1 });
        let good = encode_chunk(&m, &buffer(&m)).unwrap();
        assert!(decode_chunk(&m, &[]).is_err());
        assert!(decode_chunk(&m, b"FLCK").is_err());
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(decode_chunk(&m, &magic).is_err());
        let mut version = good.clone();
        version[4] = 9;
        let err = decode_chunk(&m, &version).unwrap_err().to_string();
        assert!(err.contains("version 9"), "{err}");
        let mut codec = good.clone();
        codec[5] = 7;
        assert!(decode_chunk(&m, &codec).is_err());
        let truncated = &good[..good.len() - 5];
        assert!(decode_chunk(&m, truncated).is_err());
        let raw = meta(Codec::Raw);
        let raw_obj = encode_chunk(&raw, &buffer(&raw)).unwrap();
        assert!(decode_chunk(&raw, &raw_obj[..raw_obj.len() - 1]).is_err());
    }

    fn sample_manifest() -> Manifest {
        let mut man = Manifest::new();
        man.insert(ArrayPath::new("/t").unwrap(), vec![1], ObjectId(7));
        man.insert(ArrayPath::new("/t").unwrap(), vec![2], ObjectId(u128::MAX));
        man.insert(ArrayPath::new("/g/u").unwrap(), vec![0, 3], ObjectId(1));
        man
    }

    #[test]
    fn manifests_round_trip() {
        let man = sample_manifest();
        let bytes = man.encode().unwrap();
        assert_eq!(bytes[0], codec::WIRE_VERSION);
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back, man);
        assert_eq!(back.len(), 3);
        assert_eq!(
            back.get(&ArrayPath::new("/t").unwrap(), &[2]),
            Some(ObjectId(u128::MAX))
        );
        assert_eq!(back.get(&ArrayPath::new("/t").unwrap(), &[3]), None);
    }

    #[test]
    fn garbage_manifests_are_errors() {
        let bytes = sample_manifest().encode().unwrap();
        assert!(Manifest::decode(&[]).is_err());
        assert!(Manifest::decode(&bytes[..bytes.len() - 2]).is_err());
        let mut version = bytes.clone();
        version[0] = 99;
        assert!(Manifest::decode(&version).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(Manifest::decode(&trailing).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let m = meta(Codec::Zstd { level: 1 });
            let _ = decode_chunk(&m, &bytes);
            let _ = Manifest::decode(&bytes);
            let mut chunk = CHUNK_MAGIC.to_vec();
            chunk.extend(&bytes);
            let _ = decode_chunk(&m, &chunk);
        }
    }
}
