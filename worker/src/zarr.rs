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

#[cfg(test)]
mod tests {
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
}
