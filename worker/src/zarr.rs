//! Zarr v3, pure: the metadata documents (`zarr.json`) and chunk keys of
//! the hierarchy `floe export zarr` writes, and the Zarr encoding of a
//! chunk buffer. No IO: the exporting shell resolves a commit's chunk map
//! ([`crate::Reader::chunk_map`]), decodes each chunk object
//! ([`crate::format::decode_chunk`]), re-encodes it with [`encode_chunk`]
//! and writes the files these functions name.
//!
//! An array at `/x/y` becomes the directory `x/y/` holding its `zarr.json`
//! and its chunks under `c/<i>/<j>` (the `default` chunk key encoding with
//! separator `/`); `x/` is a group. The codecs are `bytes` (little endian)
//! and, for arrays floe compresses, `zstd` at the same level. A chunk
//! object holds the full chunk buffer (edge chunks padded), which is what
//! Zarr's regular chunk grid stores too.
//!
//! `floe import zarr` uses the inverse, from the same tables:
//! [`parse_node`] reads a `zarr.json` (refusing, by name, the codecs, chunk
//! grids, dtypes and key encodings floe cannot hold), [`KeyEncoding`] names
//! and parses chunk keys, and [`decode_zarr_chunk`] turns one chunk file
//! into the block of the array it covers.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use floe_protocol::{ArrayMeta, ArrayPath, Codec, DType};

/// Why a commit cannot be written as a Zarr hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ZarrError {
    /// An array path segment Zarr does not allow as a node name (`.`,
    /// `..`, names starting with `__`, or `zarr.json`, which would collide
    /// with a metadata document).
    #[error("array {path}: {segment:?} is not a valid Zarr node name")]
    BadName {
        /// The array.
        path: ArrayPath,
        /// The offending segment.
        segment: String,
    },
    /// One array's path lies under another's: a Zarr array has no children.
    #[error("array {inner} lies inside array {outer}; a Zarr array cannot contain other nodes")]
    Nested {
        /// The array that would have to be a group.
        outer: ArrayPath,
        /// The array under it.
        inner: ArrayPath,
    },
    /// Metadata that does not describe a valid array (a fill value of the
    /// wrong size).
    #[error("array {path}: {why}")]
    BadArray {
        /// The array.
        path: ArrayPath,
        /// What is wrong.
        why: String,
    },
    /// A chunk buffer that is not one full chunk of its array.
    #[error("a chunk buffer holds {got} bytes, a chunk of this array needs {expected}")]
    ChunkSize {
        /// Bytes given.
        got: usize,
        /// Bytes of one full chunk.
        expected: usize,
    },
    /// zstd failed to compress a chunk.
    #[error("zstd compression failed: {0}")]
    Compress(String),
}

/// One `zarr.json` of the hierarchy.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's directory below the hierarchy's root, as path segments
    /// (empty for the root group).
    pub dir: Vec<String>,
    /// The document to write as `<dir>/zarr.json`.
    pub metadata: Value,
}

/// The metadata document of a group (no attributes).
pub fn group_metadata() -> Value {
    json!({"zarr_format": 3, "node_type": "group", "attributes": {}})
}

/// The Zarr v3 `data_type` of a floe dtype (the same names as numpy's).
pub fn data_type(dtype: DType) -> &'static str {
    dtype.name()
}

/// The Zarr `fill_value` of an array: an integer for integer dtypes,
/// `true`/`false` for bool, a number or `"NaN"`/`"Infinity"`/`"-Infinity"`
/// for floats. Fails when the stored fill value is not one element of the
/// dtype.
pub fn fill_value(meta: &ArrayMeta) -> Result<Value, String> {
    let b = meta.fill_value.as_slice();
    if b.len() != meta.dtype.size() {
        return Err(format!(
            "the fill value holds {} bytes, one {} element is {}",
            b.len(),
            meta.dtype,
            meta.dtype.size()
        ));
    }
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    let (b2, b4) = ([buf[0], buf[1]], [buf[0], buf[1], buf[2], buf[3]]);
    let float = |v: f64| -> Value {
        if v.is_nan() {
            json!("NaN")
        } else if v == f64::INFINITY {
            json!("Infinity")
        } else if v == f64::NEG_INFINITY {
            json!("-Infinity")
        } else {
            json!(v)
        }
    };
    Ok(match meta.dtype {
        DType::Bool => json!(buf[0] != 0),
        DType::I8 => json!(buf[0] as i8),
        DType::I16 => json!(i16::from_le_bytes(b2)),
        DType::I32 => json!(i32::from_le_bytes(b4)),
        DType::I64 => json!(i64::from_le_bytes(buf)),
        DType::U8 => json!(buf[0]),
        DType::U16 => json!(u16::from_le_bytes(b2)),
        DType::U32 => json!(u32::from_le_bytes(b4)),
        DType::U64 => json!(u64::from_le_bytes(buf)),
        DType::F32 => float(f64::from(f32::from_le_bytes(b4))),
        DType::F64 => float(f64::from_le_bytes(buf)),
    })
}

/// The codec pipeline of an array: `bytes` (little endian), then `zstd`
/// when floe compresses its chunks.
pub fn codecs(meta: &ArrayMeta) -> Value {
    let mut codecs = vec![json!({"name": "bytes", "configuration": {"endian": "little"}})];
    if let Codec::Zstd { level } = meta.codec {
        codecs.push(json!({
            "name": "zstd",
            "configuration": {"level": level, "checksum": false}
        }));
    }
    Value::Array(codecs)
}

/// The metadata document of an array.
pub fn array_metadata(meta: &ArrayMeta) -> Result<Value, String> {
    Ok(json!({
        "zarr_format": 3,
        "node_type": "array",
        "shape": meta.shape,
        "data_type": data_type(meta.dtype),
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": meta.chunk_shape}
        },
        "chunk_key_encoding": {
            "name": "default",
            "configuration": {"separator": "/"}
        },
        "fill_value": fill_value(meta)?,
        "codecs": codecs(meta),
        "attributes": {}
    }))
}

/// The key of chunk `coord` below its array's directory: `c/i/j`.
pub fn chunk_key(coord: &[u64]) -> String {
    let mut key = String::from("c");
    for c in coord {
        key.push('/');
        key.push_str(&c.to_string());
    }
    key
}

/// The segments of an array path (`/x/y` -> `["x", "y"]`), checked as Zarr
/// node names.
pub fn segments(path: &ArrayPath) -> Result<Vec<String>, ZarrError> {
    path.as_str()
        .split('/')
        .skip(1)
        .map(|s| {
            if s == "." || s == ".." || s.starts_with("__") || s == "zarr.json" {
                Err(ZarrError::BadName {
                    path: path.clone(),
                    segment: s.to_string(),
                })
            } else {
                Ok(s.to_string())
            }
        })
        .collect()
}

/// Every `zarr.json` of the hierarchy holding `arrays`: the root group,
/// each intermediate group once, then each array, parents before their
/// children. Refuses names Zarr does not allow and an array whose path
/// lies under another array's.
pub fn hierarchy(arrays: &BTreeMap<ArrayPath, ArrayMeta>) -> Result<Vec<Node>, ZarrError> {
    let mut array_dirs: BTreeMap<Vec<String>, &ArrayPath> = BTreeMap::new();
    for path in arrays.keys() {
        array_dirs.insert(segments(path)?, path);
    }
    let mut groups: BTreeMap<Vec<String>, ()> = BTreeMap::new();
    groups.insert(Vec::new(), ());
    for (dir, path) in &array_dirs {
        for end in 1..dir.len() {
            let ancestor = &dir[..end];
            if let Some(outer) = array_dirs.get(ancestor) {
                return Err(ZarrError::Nested {
                    outer: (*outer).clone(),
                    inner: (*path).clone(),
                });
            }
            groups.insert(ancestor.to_vec(), ());
        }
    }
    // Sorted by segments, a parent comes before its children.
    let mut nodes: Vec<Node> = groups
        .into_keys()
        .map(|dir| Node {
            dir,
            metadata: group_metadata(),
        })
        .collect();
    for (path, meta) in arrays {
        let metadata = array_metadata(meta).map_err(|why| ZarrError::BadArray {
            path: path.clone(),
            why,
        })?;
        nodes.push(Node {
            dir: segments(path)?,
            metadata,
        });
    }
    Ok(nodes)
}

/// The Zarr chunk for a full chunk buffer of `meta` (as
/// [`crate::format::decode_chunk`] returns it): the raw little-endian
/// bytes, or their zstd frame (no checksum) when the array is compressed.
pub fn encode_chunk(meta: &ArrayMeta, buffer: &[u8]) -> Result<Vec<u8>, ZarrError> {
    let expected = crate::format::chunk_bytes(meta);
    if buffer.len() != expected {
        return Err(ZarrError::ChunkSize {
            got: buffer.len(),
            expected,
        });
    }
    match meta.codec {
        Codec::Raw => Ok(buffer.to_vec()),
        Codec::Zstd { level } => {
            zstd::bulk::compress(buffer, level).map_err(|e| ZarrError::Compress(e.to_string()))
        }
    }
}

// ---- Import: the inverse of the above. ----

/// How an array's chunk keys are spelled (its `chunk_key_encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEncoding {
    /// `default`: `c` then the coordinates, each preceded by the separator
    /// (`c/1/2` or `c.1.2`).
    Default {
        /// `/` or `.`.
        separator: char,
    },
    /// `v2`: the coordinates joined by the separator (`1.2`).
    V2 {
        /// `.` or `/`.
        separator: char,
    },
}

impl KeyEncoding {
    /// The key of chunk `coord` below the array's directory.
    pub fn key(self, coord: &[u64]) -> String {
        let parts: Vec<String> = coord.iter().map(u64::to_string).collect();
        match self {
            KeyEncoding::Default { .. } if coord.is_empty() => "c".to_string(),
            KeyEncoding::Default { separator } => {
                format!("c{separator}{}", parts.join(&separator.to_string()))
            }
            KeyEncoding::V2 { .. } if coord.is_empty() => "0".to_string(),
            KeyEncoding::V2 { separator } => parts.join(&separator.to_string()),
        }
    }

    /// The chunk coordinate a key (below the array's directory, `/` between
    /// directories) names, if it is a key of this encoding and rank.
    pub fn parse(self, key: &str, rank: usize) -> Option<Vec<u64>> {
        let (rest, separator) = match self {
            KeyEncoding::Default { separator } => {
                (key.strip_prefix('c')?.strip_prefix(separator)?, separator)
            }
            KeyEncoding::V2 { separator } => (key, separator),
        };
        let coord: Vec<u64> = rest
            .split(separator)
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    p.parse().ok()
                }
            })
            .collect::<Option<_>>()?;
        (coord.len() == rank).then_some(coord)
    }
}

/// The directories (`/`-separated, relative to the hierarchy's root; `""`
/// is the root) that hold a `zarr.json`, among `keys` (every object below
/// the root, as a listing of the store gives them), parents first.
pub fn node_dirs<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut dirs: Vec<String> = keys
        .into_iter()
        .filter_map(|k| match k {
            "zarr.json" => Some(String::new()),
            _ => k.strip_suffix("/zarr.json").map(str::to_string),
        })
        .collect();
    dirs.sort_by_key(|d| (depth(d), d.clone()));
    dirs
}

fn depth(dir: &str) -> usize {
    if dir.is_empty() {
        0
    } else {
        dir.split('/').count()
    }
}

/// The proper ancestors of `dir`, nearest first, ending at the root `""`.
fn ancestors(dir: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(dir);
    std::iter::from_fn(move || {
        let d = rest?;
        if d.is_empty() {
            rest = None;
            return None;
        }
        let parent = d.rsplit_once('/').map_or("", |(p, _)| p);
        rest = Some(parent);
        Some(parent)
    })
}

/// Whether the node at `dir` belongs to the hierarchy: every ancestor is a
/// group (`kinds`: node directory -> is an array). The root always does.
pub fn reachable(kinds: &BTreeMap<String, bool>, dir: &str) -> bool {
    ancestors(dir).all(|a| kinds.get(a) == Some(&false))
}

/// The objects of each array of a hierarchy: for every key of the listing
/// whose nearest node is a reachable array, the key relative to that
/// array's directory (candidate chunk keys; the caller parses them with
/// the array's encoding). Keys under a group that are not nodes, keys of
/// unreachable nodes and hidden keys (a segment starting with `.`) are
/// not part of any array.
pub fn array_objects<'a>(
    kinds: &BTreeMap<String, bool>,
    keys: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = kinds
        .iter()
        .filter(|(dir, &array)| array && reachable(kinds, dir))
        .map(|(dir, _)| (dir.clone(), Vec::new()))
        .collect();
    for key in keys {
        if key.split('/').any(|s| s.starts_with('.')) {
            continue;
        }
        // Everything below an array is its (nodes there are not nodes).
        let owner = ancestors(key).find(|a| kinds.contains_key(*a) && reachable(kinds, a));
        let Some(owner) = owner else {
            continue;
        };
        if let Some(objects) = out.get_mut(owner) {
            let relative = if owner.is_empty() {
                key
            } else {
                &key[owner.len() + 1..]
            };
            if relative != "zarr.json" {
                objects.push(relative.to_string());
            }
        }
    }
    out
}

/// The tasks of a cooperative import of one array: `plan` (chunk-aligned
/// tasks over the whole array, as `coop::plan_grid` cuts it) less the
/// tasks that hold none of the source's `chunks`, which would only write
/// the fill value floe reads there anyway.
pub fn import_tasks(
    meta: &ArrayMeta,
    plan: Vec<floe_protocol::PlannedTask>,
    chunks: &[Vec<u64>],
) -> Vec<floe_protocol::PlannedTask> {
    let holds = |task: &floe_protocol::PlannedTask, coord: &[u64]| {
        task.region
            .0
            .iter()
            .zip(coord.iter().zip(&meta.chunk_shape))
            .all(|(span, (c, size))| span.lo <= c * size && c * size < span.hi)
    };
    plan.into_iter()
        .filter(|task| chunks.iter().any(|c| holds(task, c)))
        .collect()
}

/// An array of a Zarr hierarchy as floe will hold it: its metadata (codec
/// `Zstd` when the Zarr array used zstd) and how its chunk files are named.
#[derive(Clone, Debug, PartialEq)]
pub struct ZarrArray {
    /// floe's metadata for it.
    pub meta: ArrayMeta,
    /// Its chunk key encoding.
    pub keys: KeyEncoding,
}

/// Why a Zarr array cannot be imported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("array {array}: {why}")]
pub struct ImportError {
    /// The array (its path in the hierarchy).
    pub array: String,
    /// What is refused or wrong.
    pub why: String,
}

/// What a `zarr.json` describes.
#[derive(Clone, Debug, PartialEq)]
pub enum ZarrNode {
    /// A group: its children are the subdirectories holding a `zarr.json`.
    Group,
    /// An array floe can hold.
    Array(Box<ZarrArray>),
}

/// The floe dtype of a Zarr v3 `data_type` name (the inverse of
/// [`data_type`]).
pub fn parse_data_type(name: &str) -> Option<DType> {
    DType::ALL.into_iter().find(|&d| data_type(d) == name)
}

/// The level floe compresses with for a Zarr zstd level: zstd's own
/// meaning of 0 (its default, 3), negative (fast) levels as 1, at most 22.
pub fn zstd_level(level: i64) -> i32 {
    match level {
        0 => 3,
        l => l.clamp(1, 22) as i32,
    }
}

/// Parses a `zarr.json` (`array` names the node in messages). A group, or
/// an array floe can hold: `zarr_format` 3, a regular chunk grid, a dtype
/// floe has, the `default` (or `v2`) chunk key encoding, codecs exactly
/// `bytes` (little endian) optionally followed by `zstd`, no storage
/// transformers. Anything else is refused, naming what.
pub fn parse_node(array: &str, doc: &Value) -> Result<ZarrNode, ImportError> {
    let fail = |why: String| ImportError {
        array: array.to_string(),
        why,
    };
    match doc.get("zarr_format") {
        Some(v) if v.as_u64() == Some(3) => {}
        Some(v) => return Err(fail(format!("zarr_format {v} is not supported (only 3)"))),
        None => {
            return Err(fail(
                "zarr.json has no zarr_format (only Zarr v3 is read)".into(),
            ))
        }
    }
    match doc.get("node_type").and_then(Value::as_str) {
        Some("group") => return Ok(ZarrNode::Group),
        Some("array") => {}
        Some(other) => return Err(fail(format!("unknown node_type {other:?}"))),
        None => return Err(fail("zarr.json has no node_type".into())),
    }
    parse_array(doc)
        .map(|a| ZarrNode::Array(Box::new(a)))
        .map_err(fail)
}

/// The array part of [`parse_node`].
fn parse_array(doc: &Value) -> Result<ZarrArray, String> {
    let dims = |v: Option<&Value>, what: &str| -> Result<Vec<u64>, String> {
        v.and_then(Value::as_array)
            .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
            .ok_or_else(|| format!("{what} is missing or not a list of non-negative integers"))
    };
    let shape = dims(doc.get("shape"), "shape")?;
    let dtype = match doc.get("data_type") {
        Some(Value::String(name)) => parse_data_type(name).ok_or_else(|| {
            let all: Vec<&str> = DType::ALL.iter().map(|&d| data_type(d)).collect();
            format!(
                "data type {name:?} is not supported (floe holds {})",
                all.join(", ")
            )
        })?,
        Some(other) => return Err(format!("data type {other} is not supported")),
        None => return Err("data_type is missing".into()),
    };
    let grid = doc.get("chunk_grid").unwrap_or(&Value::Null);
    match grid.get("name").and_then(Value::as_str) {
        Some("regular") => {}
        Some(other) => {
            return Err(format!(
                "chunk grid {other:?} is not supported (only regular)"
            ))
        }
        None => return Err("chunk_grid has no name".into()),
    }
    let chunk_shape = dims(
        grid.get("configuration").and_then(|c| c.get("chunk_shape")),
        "chunk_grid's chunk_shape",
    )?;
    let keys = parse_key_encoding(doc.get("chunk_key_encoding"))?;
    if let Some(t) = doc.get("storage_transformers") {
        if t.as_array().is_none_or(|a| !a.is_empty()) {
            return Err(format!("storage transformers {t} are not supported"));
        }
    }
    let codec = parse_codecs(doc.get("codecs"), dtype)?;
    let fill = parse_fill_value(doc.get("fill_value").unwrap_or(&Value::Null), dtype)?;
    let meta = ArrayMeta {
        shape,
        chunk_shape,
        dtype,
        fill_value: fill,
        codec,
    };
    meta.validate().map_err(|e| e.to_string())?;
    Ok(ZarrArray { meta, keys })
}

fn parse_key_encoding(v: Option<&Value>) -> Result<KeyEncoding, String> {
    let Some(v) = v else {
        return Err("chunk_key_encoding is missing".into());
    };
    let name = v.get("name").and_then(Value::as_str);
    let separator = match v.get("configuration").and_then(|c| c.get("separator")) {
        None => None,
        Some(Value::String(s)) if s == "/" => Some('/'),
        Some(Value::String(s)) if s == "." => Some('.'),
        Some(other) => return Err(format!("chunk key separator {other} is not supported")),
    };
    match name {
        Some("default") => Ok(KeyEncoding::Default {
            separator: separator.unwrap_or('/'),
        }),
        Some("v2") => Ok(KeyEncoding::V2 {
            separator: separator.unwrap_or('.'),
        }),
        Some(other) => Err(format!("chunk key encoding {other:?} is not supported")),
        None => Err("chunk_key_encoding has no name".into()),
    }
}

/// A codec's name, from `{"name": ...}` or a bare string.
fn codec_name(c: &Value) -> Option<&str> {
    c.as_str().or_else(|| c.get("name").and_then(Value::as_str))
}

/// Exactly `bytes` (little endian; no endian for one-byte dtypes), then
/// optionally `zstd`.
fn parse_codecs(v: Option<&Value>, dtype: DType) -> Result<Codec, String> {
    const ACCEPTED: &str = "floe imports `bytes` (little endian), optionally followed by `zstd`";
    let codecs = v
        .and_then(Value::as_array)
        .ok_or("codecs is missing or not a list")?;
    let name = |i: usize| codecs.get(i).map(|c| codec_name(c).unwrap_or("(unnamed)"));
    match name(0) {
        Some("bytes") => {}
        Some(other) => return Err(format!("codec {other:?} is not supported ({ACCEPTED})")),
        None => return Err(format!("the codec list is empty ({ACCEPTED})")),
    }
    let endian = codecs[0]
        .get("configuration")
        .and_then(|c| c.get("endian"))
        .and_then(Value::as_str);
    match endian {
        Some("little") => {}
        None if dtype.size() == 1 => {}
        Some("big") if dtype.size() == 1 => {}
        Some("big") => {
            return Err(format!(
                "codec \"bytes\" with big endian is not supported ({ACCEPTED})"
            ))
        }
        None => return Err("codec \"bytes\" names no endian".into()),
        Some(other) => return Err(format!("codec \"bytes\" with endian {other:?} is unknown")),
    }
    let codec = match name(1) {
        None => Codec::Raw,
        Some("zstd") => {
            let level = codecs[1]
                .get("configuration")
                .and_then(|c| c.get("level"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            Codec::Zstd {
                level: zstd_level(level),
            }
        }
        Some(other) => return Err(format!("codec {other:?} is not supported ({ACCEPTED})")),
    };
    if let Some(extra) = name(2) {
        return Err(format!("codec {extra:?} is not supported ({ACCEPTED})"));
    }
    Ok(codec)
}

/// One little-endian element of `dtype` from a Zarr `fill_value` (the
/// inverse of [`fill_value`]): an integer, `true`/`false`, a number,
/// `"NaN"`/`"Infinity"`/`"-Infinity"` or a hex bit pattern `"0x..."` for
/// floats.
pub fn parse_fill_value(v: &Value, dtype: DType) -> Result<Vec<u8>, String> {
    let bad = || format!("fill value {v} is not one {dtype} element");
    let int = |v: &Value| -> Option<Vec<u8>> {
        Some(match dtype {
            DType::I8 => i8::try_from(v.as_i64()?).ok()?.to_le_bytes().to_vec(),
            DType::I16 => i16::try_from(v.as_i64()?).ok()?.to_le_bytes().to_vec(),
            DType::I32 => i32::try_from(v.as_i64()?).ok()?.to_le_bytes().to_vec(),
            DType::I64 => v.as_i64()?.to_le_bytes().to_vec(),
            DType::U8 => u8::try_from(v.as_u64()?).ok()?.to_le_bytes().to_vec(),
            DType::U16 => u16::try_from(v.as_u64()?).ok()?.to_le_bytes().to_vec(),
            DType::U32 => u32::try_from(v.as_u64()?).ok()?.to_le_bytes().to_vec(),
            DType::U64 => v.as_u64()?.to_le_bytes().to_vec(),
            _ => return None,
        })
    };
    let float = |v: &Value| -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                _ => None,
            },
            _ => None,
        }
    };
    let hex = |v: &Value| -> Option<u64> {
        let digits = v.as_str()?.strip_prefix("0x")?;
        u64::from_str_radix(digits, 16).ok()
    };
    let bytes = match dtype {
        DType::Bool => match v {
            Value::Bool(b) => Some(vec![u8::from(*b)]),
            _ => None,
        },
        DType::F32 => match hex(v) {
            Some(bits) => u32::try_from(bits).ok().map(|b| b.to_le_bytes().to_vec()),
            None => float(v).map(|f| (f as f32).to_le_bytes().to_vec()),
        },
        DType::F64 => match hex(v) {
            Some(bits) => Some(bits.to_le_bytes().to_vec()),
            None => float(v).map(|f| f.to_le_bytes().to_vec()),
        },
        _ => int(v),
    };
    bytes.ok_or_else(bad)
}

/// The floe block of one Zarr chunk file of `meta` at `coord`: the file's
/// bytes, zstd-decompressed when the array is compressed, must be one full
/// chunk; the block is the part inside the array (edge chunks clipped),
/// with the region it covers.
pub fn decode_zarr_chunk(
    meta: &ArrayMeta,
    coord: &[u64],
    file: &[u8],
) -> Result<(floe_protocol::Region, crate::ArrayData), String> {
    let expected = crate::format::chunk_bytes(meta);
    let buffer = match meta.codec {
        Codec::Raw => file.to_vec(),
        Codec::Zstd { .. } => {
            // At most one full chunk (and one byte more, to see a longer one).
            zstd::bulk::decompress(file, expected + 1)
                .map_err(|e| format!("zstd decompression failed: {e}"))?
        }
    };
    if buffer.len() != expected {
        return Err(ZarrError::ChunkSize {
            got: buffer.len(),
            expected,
        }
        .to_string());
    }
    let grid = meta.grid();
    if coord.len() != grid.len() || coord.iter().zip(&grid).any(|(c, g)| c >= g) {
        return Err(format!(
            "chunk {coord:?} lies outside the chunk grid {grid:?}"
        ));
    }
    let region = floe_protocol::region::chunk_region(coord, meta);
    let shape = region.shape();
    if shape == meta.chunk_shape {
        let data =
            crate::ArrayData::from_bytes(meta.dtype, &shape, buffer).map_err(|e| e.to_string())?;
        return Ok((region, data));
    }
    let elem = meta.dtype.size();
    let len = shape.iter().product::<u64>() as usize * elem;
    let mut block = vec![0u8; len];
    let origin = vec![0u64; shape.len()];
    floe_protocol::region::copy_box(
        &buffer,
        &meta.chunk_shape,
        &origin,
        &mut block,
        &shape,
        &origin,
        &shape,
        elem,
    );
    let data =
        crate::ArrayData::from_bytes(meta.dtype, &shape, block).map_err(|e| e.to_string())?;
    Ok((region, data))
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_import_plans_only_tasks_holding_source_chunks() {
        use floe_protocol::PlannedTask;
        let meta = ArrayMeta::new(vec![10, 6], vec![4, 3], DType::U8, 0.0).unwrap();
        let path = ArrayPath::new("/a").unwrap();
        // Three row bands of chunks (rows 0:4, 4:8, 8:10), whole width.
        let plan: Vec<PlannedTask> = ["0:4,0:6", "4:8,0:6", "8:10,0:6"]
            .iter()
            .map(|r| PlannedTask {
                array: path.clone(),
                region: r.parse().unwrap(),
            })
            .collect();
        let kept = import_tasks(&meta, plan, &[vec![0, 1], vec![2, 0]]);
        let regions: Vec<String> = kept.iter().map(|t| t.region.to_string()).collect();
        assert_eq!(regions, ["0:4,0:6", "8:10,0:6"]);
    }

    #[test]
    fn listings_find_nodes_and_the_objects_of_each_array() {
        let keys = [
            "zarr.json",
            "notes.txt",
            "g/zarr.json",
            "g/a/zarr.json",
            "g/a/c/0/0",
            "g/a/c/1/0",
            "g/a/.DS_Store",
            "b/zarr.json",
            "b/c/0",
            "b/inner/zarr.json",
            "stray/x",
            "b2/c/0",
        ];
        let dirs = node_dirs(keys);
        assert_eq!(dirs, ["", "b", "g", "b/inner", "g/a"]);
        let kinds: BTreeMap<String, bool> = [
            ("", false),
            ("g", false),
            ("g/a", true),
            ("b", true),
            ("b/inner", false),
        ]
        .into_iter()
        .map(|(d, a)| (d.to_string(), a))
        .collect();
        assert!(reachable(&kinds, "g/a"));
        assert!(!reachable(&kinds, "b/inner"), "under an array");
        let objects = array_objects(&kinds, keys);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects["g/a"], ["c/0/0", "c/1/0"]);
        // A zarr.json under an array is one of its objects (a bad chunk key).
        assert_eq!(objects["b"], ["c/0", "inner/zarr.json"]);
    }
    use super::*;

    fn meta(dtype: DType, fill: f64) -> ArrayMeta {
        ArrayMeta::new(vec![25, 7], vec![10, 4], dtype, fill).unwrap()
    }

    fn path(p: &str) -> ArrayPath {
        ArrayPath::new(p).unwrap()
    }

    #[test]
    fn array_metadata_names_everything() {
        let m = meta(DType::I16, -3.0).with_codec(Codec::Zstd { level: 5 });
        let doc = array_metadata(&m).unwrap();
        assert_eq!(
            doc,
            json!({
                "zarr_format": 3,
                "node_type": "array",
                "shape": [25, 7],
                "data_type": "int16",
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [10, 4]}},
                "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
                "fill_value": -3,
                "codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}},
                    {"name": "zstd", "configuration": {"level": 5, "checksum": false}}
                ],
                "attributes": {}
            })
        );
        let raw = array_metadata(&meta(DType::F32, 0.5)).unwrap();
        assert_eq!(raw["codecs"].as_array().unwrap().len(), 1);
        assert_eq!(raw["data_type"], "float32");
    }

    #[test]
    fn fill_values_follow_the_dtype() {
        assert_eq!(fill_value(&meta(DType::Bool, 1.0)).unwrap(), json!(true));
        assert_eq!(fill_value(&meta(DType::Bool, 0.0)).unwrap(), json!(false));
        assert_eq!(fill_value(&meta(DType::I8, -128.0)).unwrap(), json!(-128));
        assert_eq!(fill_value(&meta(DType::U8, 255.0)).unwrap(), json!(255));
        assert_eq!(fill_value(&meta(DType::I32, -7.0)).unwrap(), json!(-7));
        assert_eq!(
            fill_value(&meta(DType::U16, 65535.0)).unwrap(),
            json!(65535)
        );
        assert_eq!(
            fill_value(&meta(DType::I64, -9.0e15)).unwrap(),
            json!(-9_000_000_000_000_000i64)
        );
        // Integers are exact, even beyond f64's 53 bits.
        let mut big = meta(DType::U64, 0.0);
        big.fill_value = u64::MAX.to_le_bytes().to_vec();
        assert_eq!(fill_value(&big).unwrap(), json!(u64::MAX));
        assert!(fill_value(&big).unwrap().is_u64());
        assert_eq!(fill_value(&meta(DType::F64, 1.5)).unwrap(), json!(1.5));
        assert_eq!(fill_value(&meta(DType::F32, 0.25)).unwrap(), json!(0.25));
        assert_eq!(fill_value(&meta(DType::F64, f64::NAN)).unwrap(), "NaN");
        assert_eq!(fill_value(&meta(DType::F32, f64::NAN)).unwrap(), "NaN");
        assert_eq!(
            fill_value(&meta(DType::F64, f64::INFINITY)).unwrap(),
            "Infinity"
        );
        assert_eq!(
            fill_value(&meta(DType::F32, f64::NEG_INFINITY)).unwrap(),
            "-Infinity"
        );
        let mut bad = meta(DType::I32, 0.0);
        bad.fill_value = vec![1];
        assert!(fill_value(&bad).is_err());
    }

    #[test]
    fn every_dtype_has_its_zarr_name() {
        let names: Vec<&str> = DType::ALL.iter().map(|&d| data_type(d)).collect();
        assert_eq!(
            names,
            [
                "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float32", "float64"
            ]
        );
    }

    #[test]
    fn chunk_keys_use_the_default_encoding() {
        assert_eq!(chunk_key(&[0]), "c/0");
        assert_eq!(chunk_key(&[3, 0, 12]), "c/3/0/12");
    }

    #[test]
    fn the_hierarchy_has_every_group_once_parents_first() {
        let arrays: BTreeMap<ArrayPath, ArrayMeta> = [
            (path("/a/b/x"), meta(DType::U8, 0.0)),
            (path("/a/y"), meta(DType::F64, 0.0)),
            (path("/z"), meta(DType::Bool, 0.0)),
        ]
        .into_iter()
        .collect();
        let nodes = hierarchy(&arrays).unwrap();
        let dirs: Vec<(String, &str)> = nodes
            .iter()
            .map(|n| {
                (
                    n.dir.join("/"),
                    n.metadata["node_type"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            dirs,
            [
                ("".to_string(), "group"),
                ("a".to_string(), "group"),
                ("a/b".to_string(), "group"),
                ("a/b/x".to_string(), "array"),
                ("a/y".to_string(), "array"),
                ("z".to_string(), "array"),
            ]
        );
        assert_eq!(nodes[0].metadata, group_metadata());
        // An empty commit is a lone root group.
        assert_eq!(hierarchy(&BTreeMap::new()).unwrap().len(), 1);
    }

    #[test]
    fn nested_arrays_and_bad_names_are_refused() {
        let nested: BTreeMap<ArrayPath, ArrayMeta> = [
            (path("/a"), meta(DType::U8, 0.0)),
            (path("/a/b/c"), meta(DType::U8, 0.0)),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            hierarchy(&nested),
            Err(ZarrError::Nested {
                outer: path("/a"),
                inner: path("/a/b/c")
            })
        );
        for bad in ["/x/..", "/.", "/__meta", "/g/zarr.json"] {
            let arrays: BTreeMap<ArrayPath, ArrayMeta> =
                [(path(bad), meta(DType::U8, 0.0))].into_iter().collect();
            let err = hierarchy(&arrays).unwrap_err();
            assert!(matches!(err, ZarrError::BadName { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn chunks_are_the_buffer_or_its_zstd_frame() {
        let raw = meta(DType::I32, 0.0);
        let buffer: Vec<u8> = (0..crate::format::chunk_bytes(&raw))
            .map(|i| (i % 5) as u8)
            .collect();
        assert_eq!(encode_chunk(&raw, &buffer).unwrap(), buffer);
        let z = raw.clone().with_codec(Codec::Zstd { level: 3 });
        let frame = encode_chunk(&z, &buffer).unwrap();
        assert!(frame.len() < buffer.len());
        assert_eq!(zstd::decode_all(frame.as_slice()).unwrap(), buffer);
        assert!(encode_chunk(&raw, &buffer[1..]).is_err());
    }

    /// A zarr-python style array document with `codecs` and `data_type`.
    fn doc(dtype: &str, fill: Value, codecs: Value) -> Value {
        json!({
            "shape": [5, 3],
            "data_type": dtype,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 2]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill,
            "codecs": codecs,
            "attributes": {},
            "zarr_format": 3,
            "node_type": "array",
            "storage_transformers": []
        })
    }

    fn bytes_le() -> Value {
        json!({"name": "bytes", "configuration": {"endian": "little"}})
    }

    fn parsed(d: &Value) -> ZarrArray {
        match parse_node("/a", d).unwrap() {
            ZarrNode::Array(a) => *a,
            ZarrNode::Group => panic!("a group"),
        }
    }

    fn refused(d: &Value) -> String {
        let err = parse_node("/g/a", d).unwrap_err();
        assert_eq!(err.array, "/g/a");
        err.to_string()
    }

    #[test]
    fn every_dtype_parses_back_from_what_export_writes() {
        for dtype in DType::ALL {
            for codec in [Codec::Raw, Codec::Zstd { level: 5 }] {
                let m = ArrayMeta::new(vec![25, 7], vec![10, 4], dtype, 1.0)
                    .unwrap()
                    .with_codec(codec);
                let a = parsed(&array_metadata(&m).unwrap());
                assert_eq!(a.meta, m, "{dtype} {codec:?}");
                assert_eq!(a.keys, KeyEncoding::Default { separator: '/' });
            }
        }
        // Fill values that are not plain numbers round-trip too.
        for (dtype, fill) in [
            (DType::F64, f64::NAN),
            (DType::F32, f64::NEG_INFINITY),
            (DType::F64, f64::INFINITY),
            (DType::I64, -9.0e15),
            (DType::Bool, 0.0),
        ] {
            let m = ArrayMeta::new(vec![4], vec![2], dtype, fill).unwrap();
            assert_eq!(parsed(&array_metadata(&m).unwrap()).meta, m);
        }
        let mut big = ArrayMeta::new(vec![4], vec![2], DType::U64, 0.0).unwrap();
        big.fill_value = u64::MAX.to_le_bytes().to_vec();
        assert_eq!(parsed(&array_metadata(&big).unwrap()).meta, big);
    }

    #[test]
    fn zarr_python_documents_parse() {
        // One-byte dtypes: zarr-python writes `bytes` without an endian.
        let b = parsed(&doc("bool", json!(false), json!([{"name": "bytes"}])));
        assert_eq!(b.meta.dtype, DType::Bool);
        assert_eq!(b.meta.fill_value, vec![0]);
        assert_eq!(b.meta.codec, Codec::Raw);
        assert_eq!(b.meta.shape, vec![5, 3]);
        assert_eq!(b.meta.chunk_shape, vec![2, 2]);
        // zstd at level 0 is zstd's default level.
        let zstd = json!({"name": "zstd", "configuration": {"level": 0, "checksum": false}});
        let f = parsed(&doc("float32", json!("NaN"), json!([bytes_le(), zstd])));
        assert_eq!(f.meta.codec, Codec::Zstd { level: 3 });
        assert!(f32::from_le_bytes(f.meta.fill_value.clone().try_into().unwrap()).is_nan());
        let h = parsed(&doc(
            "float64",
            json!("0x3ff0000000000000"),
            json!([bytes_le()]),
        ));
        assert_eq!(h.meta.fill_value, 1.0f64.to_le_bytes());
        let i = parsed(&doc("int8", json!(-128), json!(["bytes"])));
        assert_eq!(i.meta.fill_value, vec![0x80]);
        let dot = {
            let mut d = doc("uint16", json!(7), json!([bytes_le()]));
            d["chunk_key_encoding"] =
                json!({"name": "default", "configuration": {"separator": "."}});
            parsed(&d)
        };
        assert_eq!(dot.keys, KeyEncoding::Default { separator: '.' });
        let v2 = {
            let mut d = doc("uint16", json!(7), json!([bytes_le()]));
            d["chunk_key_encoding"] = json!({"name": "v2"});
            parsed(&d)
        };
        assert_eq!(v2.keys, KeyEncoding::V2 { separator: '.' });
        let group = json!({"zarr_format": 3, "node_type": "group", "attributes": {}});
        assert_eq!(parse_node("/", &group).unwrap(), ZarrNode::Group);
    }

    #[test]
    fn unsupported_codecs_are_refused_by_name() {
        for codec in [
            json!({"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5}}),
            json!({"name": "gzip", "configuration": {"level": 1}}),
            json!({"name": "crc32c"}),
        ] {
            let name = codec["name"].as_str().unwrap().to_string();
            let err = refused(&doc("int16", json!(0), json!([bytes_le(), codec])));
            assert!(
                err.contains(&format!("codec \"{name}\" is not supported")),
                "{err}"
            );
            assert!(err.starts_with("array /g/a: "), "{err}");
        }
        let zstd = json!({"name": "zstd", "configuration": {"level": 1}});
        let err = refused(&doc(
            "int16",
            json!(0),
            json!([bytes_le(), zstd, {"name": "crc32c"}]),
        ));
        assert!(err.contains("codec \"crc32c\""), "{err}");
        for first in ["transpose", "sharding_indexed"] {
            let err = refused(&doc(
                "int16",
                json!(0),
                json!([{"name": first}, bytes_le()]),
            ));
            assert!(err.contains(&format!("codec \"{first}\"")), "{err}");
        }
        let big = json!({"name": "bytes", "configuration": {"endian": "big"}});
        let err = refused(&doc("int16", json!(0), json!([big])));
        assert!(err.contains("big endian is not supported"), "{err}");
        assert!(refused(&doc("int16", json!(0), json!([]))).contains("codec list is empty"));
    }

    #[test]
    fn unsupported_grids_dtypes_encodings_and_formats_are_refused() {
        for dtype in ["complex64", "string", "float16", "int128"] {
            let err = refused(&doc(dtype, json!(0), json!([bytes_le()])));
            assert!(
                err.contains(&format!("data type \"{dtype}\" is not supported")),
                "{err}"
            );
        }
        let mut d = doc("int16", json!(0), json!([bytes_le()]));
        d["chunk_grid"] = json!({"name": "rectilinear", "configuration": {}});
        assert!(refused(&d).contains("chunk grid \"rectilinear\" is not supported"));
        let mut d = doc("int16", json!(0), json!([bytes_le()]));
        d["chunk_key_encoding"] = json!({"name": "fancy"});
        assert!(refused(&d).contains("chunk key encoding \"fancy\" is not supported"));
        let mut d = doc("int16", json!(0), json!([bytes_le()]));
        d["chunk_key_encoding"] = json!({"name": "default", "configuration": {"separator": "-"}});
        assert!(refused(&d).contains("separator \"-\" is not supported"));
        let mut d = doc("int16", json!(0), json!([bytes_le()]));
        d["zarr_format"] = json!(2);
        assert!(refused(&d).contains("zarr_format 2 is not supported"));
        let mut d = doc("int16", json!(0), json!([bytes_le()]));
        d["storage_transformers"] = json!([{"name": "x"}]);
        assert!(refused(&d).contains("storage transformers"));
        let mut d = doc("int16", json!(0), json!([bytes_le()]));
        d["shape"] = json!([5, -1]);
        assert!(refused(&d).contains("shape"));
        for (dtype, fill) in [
            ("uint8", json!(300)),
            ("uint8", json!(-1)),
            ("int32", json!(1.5)),
            ("bool", json!(1)),
            ("float32", json!("nan")),
        ] {
            let err = refused(&doc(dtype, fill.clone(), json!([bytes_le()])));
            assert!(err.contains("fill value"), "{dtype} {fill}: {err}");
        }
    }

    #[test]
    fn chunk_keys_parse_back() {
        let slash = KeyEncoding::Default { separator: '/' };
        let dot = KeyEncoding::Default { separator: '.' };
        let v2 = KeyEncoding::V2 { separator: '.' };
        assert_eq!(slash.key(&[3, 0, 12]), chunk_key(&[3, 0, 12]));
        assert_eq!(dot.key(&[3, 0]), "c.3.0");
        assert_eq!(v2.key(&[3, 0]), "3.0");
        for enc in [slash, dot, v2] {
            assert_eq!(enc.parse(&enc.key(&[4, 17]), 2), Some(vec![4, 17]));
            assert_eq!(enc.parse(&enc.key(&[4, 17]), 3), None);
        }
        assert_eq!(slash.parse("c/1/x", 2), None);
        assert_eq!(slash.parse("c/1/+2", 2), None);
        assert_eq!(slash.parse("d/1/2", 2), None);
        assert_eq!(slash.parse("c.1.2", 2), None);
    }

    #[test]
    fn chunk_files_become_clipped_blocks() {
        // 5 x 3 in 2 x 2: chunk (2, 1) holds one element of the array.
        let m = ArrayMeta::new(vec![5, 3], vec![2, 2], DType::U16, 0.0).unwrap();
        let full: Vec<u8> = [1u16, 2, 3, 4]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (region, block) = decode_zarr_chunk(&m, &[0, 0], &full).unwrap();
        assert_eq!(region.to_string(), "0:2,0:2");
        assert_eq!(block.to_vec::<u16>().unwrap(), [1, 2, 3, 4]);
        let (region, block) = decode_zarr_chunk(&m, &[2, 1], &full).unwrap();
        assert_eq!(region.to_string(), "4:5,2:3");
        assert_eq!(block.to_vec::<u16>().unwrap(), [1]);
        let (_, block) = decode_zarr_chunk(&m, &[1, 1], &full).unwrap();
        assert_eq!(block.to_vec::<u16>().unwrap(), [1, 3]);
        let z = m.clone().with_codec(Codec::Zstd { level: 3 });
        let frame = zstd::bulk::compress(&full, 3).unwrap();
        let (_, block) = decode_zarr_chunk(&z, &[0, 0], &frame).unwrap();
        assert_eq!(block.to_vec::<u16>().unwrap(), [1, 2, 3, 4]);
        let err = decode_zarr_chunk(&m, &[0, 0], &full[1..]).unwrap_err();
        assert!(err.contains("holds 7 bytes"), "{err}");
        let long = zstd::bulk::compress(&[full.clone(), full.clone()].concat(), 3).unwrap();
        assert!(decode_zarr_chunk(&z, &[0, 0], &long).is_err());
        assert!(decode_zarr_chunk(&z, &[0, 0], b"not zstd").is_err());
        assert!(decode_zarr_chunk(&m, &[3, 0], &full).is_err());
    }
}
