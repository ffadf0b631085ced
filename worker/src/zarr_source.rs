//! A Zarr v3 hierarchy as the source of a cooperative job
//! (`zarr:<root>`, see [`crate::source::open_source`]): it serves every
//! array of the hierarchy. A read of a region of array `/x/y` reads the
//! array's document `<root>/x/y/zarr.json` once (parsed by
//! [`zarr::parse_node`], checked against the session's metadata, then
//! cached), then the Zarr chunks covering the region, each decoded by
//! [`zarr::decode_zarr_chunk`] and copied into the region's block; a chunk
//! absent from the store reads as the array's fill value.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;

use floe_protocol::region::copy_box;
use floe_protocol::{ArrayMeta, ArrayPath, ChunkPart, FloeError, Region};

use crate::coop::Source;
use crate::data::{check_region, ArrayData};
use crate::source::{Blocking, JobSource};
use crate::store::Store;
use crate::zarr::{self, ZarrArray, ZarrNode};

/// Chunks of one read fetched at once.
const CONCURRENT_GETS: usize = 8;

/// A Zarr v3 hierarchy a job's workers read their arrays from. Reads
/// block the calling thread, as [`crate::source::RemoteNpy`]'s do.
pub struct ZarrSource {
    label: String,
    store: Store,
    /// Parsed array documents, by floe array path.
    arrays: Mutex<BTreeMap<ArrayPath, Arc<ZarrArray>>>,
    blocking: Blocking,
}

impl ZarrSource {
    /// Opens the hierarchy rooted at `root`: a local directory (which must
    /// exist) or a store URL as [`Store::from_url`] takes it
    /// (`file:///data/h`, `s3://bucket/prefix`, configured from the
    /// environment). Its root `zarr.json` must be a group.
    pub fn open(root: &str) -> Result<Self, FloeError> {
        check_local_root(root)?;
        let store = Store::from_url(root)?;
        Self::with_store(format!("{}{root}", crate::source::ZARR_PREFIX), store)
    }

    /// The hierarchy whose root is the root of `store`; `label` names it
    /// in errors. Its root `zarr.json` must be a group.
    pub fn with_store(label: String, store: Store) -> Result<Self, FloeError> {
        let source = ZarrSource {
            blocking: Blocking::new(&label)?,
            label,
            store,
            arrays: Mutex::new(BTreeMap::new()),
        };
        source.check_root()?;
        Ok(source)
    }

    fn check_root(&self) -> Result<(), FloeError> {
        let (store, label) = (self.store.clone(), self.label.clone());
        let node = self.blocking.run(&self.label, async move {
            node_at(&store, &label, &[], "/").await
        })?;
        match node {
            ZarrNode::Group => Ok(()),
            ZarrNode::Array(_) => {
                Err(self.invalid("its root is a Zarr array, not a group holding arrays".into()))
            }
        }
    }

    fn invalid(&self, why: String) -> FloeError {
        invalid(&self.label, why)
    }

    /// The parsed document of array `path`, read once.
    fn array(&self, path: &ArrayPath) -> Result<Arc<ZarrArray>, FloeError> {
        if let Some(found) = self.cached().get(path) {
            return Ok(found.clone());
        }
        let dir = zarr::segments(path).map_err(|e| self.invalid(e.to_string()))?;
        let (store, label, name) = (self.store.clone(), self.label.clone(), path.to_string());
        let node = self.blocking.run(&self.label, async move {
            node_at(&store, &label, &dir, &name).await
        })?;
        let ZarrNode::Array(array) = node else {
            return Err(self.invalid(format!("{path} is a group there, not an array")));
        };
        let array: Arc<ZarrArray> = Arc::from(array);
        self.cached().insert(path.clone(), array.clone());
        Ok(array)
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, BTreeMap<ArrayPath, Arc<ZarrArray>>> {
        // The map is only read and inserted into: a panic elsewhere leaves
        // it whole.
        self.arrays.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Source for ZarrSource {
    fn read(
        &self,
        path: &ArrayPath,
        meta: &ArrayMeta,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        check_region(path, meta, region)?;
        self.check_fits(path, meta)?;
        let array = self.array(path)?;
        let dir = zarr::segments(path).map_err(|e| self.invalid(e.to_string()))?;
        let (store, label, region) = (self.store.clone(), self.label.clone(), region.clone());
        self.blocking.run(&self.label, async move {
            read_region(&store, &label, &dir, &array, &region).await
        })
    }
}

impl JobSource for ZarrSource {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn check_fits(&self, path: &ArrayPath, meta: &ArrayMeta) -> Result<(), FloeError> {
        let array = self.array(path)?;
        check_meta(&self.label, path, &array.meta, meta)
    }
}

fn invalid(label: &str, why: String) -> FloeError {
    FloeError::InvalidPlan {
        why: format!("{label}: {why}"),
    }
}

/// A local root (no `://`, or `file://`) must be an existing directory:
/// [`Store::from_url`] would create a missing one, empty.
fn check_local_root(root: &str) -> Result<(), FloeError> {
    let dir = match root.strip_prefix("file://") {
        Some(rest) => std::path::PathBuf::from(rest),
        None if !root.contains("://") => std::path::PathBuf::from(root),
        None => return Ok(()),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(FloeError::Store(format!(
        "{}{root}: no such directory",
        crate::source::ZARR_PREFIX
    )))
}

/// The session's metadata for `path` must match the Zarr array's shape,
/// dtype and chunk shape.
fn check_meta(
    label: &str,
    path: &ArrayPath,
    zarr: &ArrayMeta,
    meta: &ArrayMeta,
) -> Result<(), FloeError> {
    let same = zarr.shape == meta.shape
        && zarr.dtype == meta.dtype
        && zarr.chunk_shape == meta.chunk_shape;
    if same {
        return Ok(());
    }
    Err(invalid(
        label,
        format!(
            "its array {path} has shape {:?}, dtype {}, chunks {:?}, but the session's {path} has \
             shape {:?}, dtype {}, chunks {:?}",
            zarr.shape, zarr.dtype, zarr.chunk_shape, meta.shape, meta.dtype, meta.chunk_shape
        ),
    ))
}

/// The object key of `name` in the node directory `dir`.
fn key_in(dir: &[String], name: &str) -> Key {
    let mut parts: Vec<&str> = dir.iter().map(String::as_str).collect();
    parts.push(name);
    Key::from(parts.join("/"))
}

/// Reads and parses the `zarr.json` of the node at `dir` (`name` names
/// it in errors).
async fn node_at(
    store: &Store,
    label: &str,
    dir: &[String],
    name: &str,
) -> Result<ZarrNode, FloeError> {
    let key = key_in(dir, "zarr.json");
    let Some(bytes) = store.get_opt(&key).await? else {
        return Err(invalid(label, format!("no Zarr node {name} (no {key})")));
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(label, format!("{key} is not JSON: {e}")))?;
    zarr::parse_node(name, &doc).map_err(|e| invalid(label, e.to_string()))
}

/// The block of `region` of `array` (its documents under `dir`): the
/// chunks covering it, fetched a few at a time, each copied in as it
/// arrives; absent ones leave the fill value.
async fn read_region(
    store: &Store,
    label: &str,
    dir: &[String],
    array: &ZarrArray,
    region: &Region,
) -> Result<ArrayData, FloeError> {
    let mut out = ArrayData::filled(&array.meta, &region.shape())?;
    let fetches = region.chunk_parts(&array.meta).into_iter().map(|part| {
        let key = key_in(dir, &array.keys.key(&part.coord));
        async move { Ok::<_, FloeError>((part, store.get_opt(&key).await?)) }
    });
    let mut chunks = futures::stream::iter(fetches).buffered(CONCURRENT_GETS);
    while let Some((part, bytes)) = chunks.try_next().await? {
        if let Some(bytes) = bytes {
            copy_chunk(label, array, &part, &bytes, &mut out)?;
        }
    }
    Ok(out)
}

/// Decodes one Zarr chunk and copies the part of it `part` names into
/// `out`, the block of the region read.
fn copy_chunk(
    label: &str,
    array: &ZarrArray,
    part: &ChunkPart,
    bytes: &[u8],
    out: &mut ArrayData,
) -> Result<(), FloeError> {
    let (_, chunk) = zarr::decode_zarr_chunk(&array.meta, &part.coord, bytes).map_err(|e| {
        let key = array.keys.key(&part.coord);
        FloeError::Codec(format!("{label}: chunk {key} ({:?}): {e}", part.coord))
    })?;
    let lows = |r: &Region| r.0.iter().map(|s| s.lo).collect::<Vec<u64>>();
    let out_shape = out.shape.clone();
    copy_box(
        &chunk.bytes,
        &chunk.shape,
        &lows(&part.in_chunk),
        &mut out.bytes,
        &out_shape,
        &lows(&part.in_region),
        &part.in_chunk.shape(),
        array.meta.dtype.size(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::{Codec, DType};

    fn path(p: &str) -> ArrayPath {
        ArrayPath::new(p).unwrap()
    }

    /// Element `(i, j)` of the test array: `i * 100 + j`.
    fn value(i: u64, j: u64) -> i32 {
        (i * 100 + j) as i32
    }

    /// `/g/a`: 10 x 7 of i32 in chunks of 4 x 3 (edge chunks on both
    /// axes), zstd, fill -1.
    fn meta() -> ArrayMeta {
        ArrayMeta::new(vec![10, 7], vec![4, 3], DType::I32, -1.0)
            .unwrap()
            .with_codec(Codec::Zstd { level: 1 })
    }

    /// The full (padded) buffer of chunk `coord`.
    fn chunk_buffer(meta: &ArrayMeta, coord: &[u64]) -> Vec<u8> {
        let (ci, cj) = (meta.chunk_shape[0], meta.chunk_shape[1]);
        let mut out = Vec::new();
        for di in 0..ci {
            for dj in 0..cj {
                let (i, j) = (coord[0] * ci + di, coord[1] * cj + dj);
                let v = if i < meta.shape[0] && j < meta.shape[1] {
                    value(i, j)
                } else {
                    0
                };
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// A hierarchy holding `/g/a` (written as `floe export zarr` writes
    /// it) with every chunk but `absent`.
    fn hierarchy(absent: &[u64]) -> Store {
        let store = Store::memory();
        let arrays = BTreeMap::from([(path("/g/a"), meta())]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            for node in zarr::hierarchy(&arrays).unwrap() {
                let doc = serde_json::to_vec(&node.metadata).unwrap();
                store
                    .put_raw(&key_in(&node.dir, "zarr.json"), doc)
                    .await
                    .unwrap();
            }
            for coord in floe_protocol::Region::full(&meta()).chunks(&meta()) {
                if coord == absent {
                    continue;
                }
                let bytes = zarr::encode_chunk(&meta(), &chunk_buffer(&meta(), &coord)).unwrap();
                let key = Key::from(format!("g/a/{}", zarr::chunk_key(&coord)));
                store.put_raw(&key, bytes).await.unwrap();
            }
        });
        store
    }

    fn expected(region: &Region, absent: &[u64]) -> Vec<i32> {
        let m = meta();
        let mut out = Vec::new();
        for i in region.0[0].lo..region.0[0].hi {
            for j in region.0[1].lo..region.0[1].hi {
                let chunk = [i / m.chunk_shape[0], j / m.chunk_shape[1]];
                out.push(if chunk == absent { -1 } else { value(i, j) });
            }
        }
        out
    }

    #[test]
    fn regions_across_chunks_edges_and_absent_chunks_read_back() {
        let absent = [1, 1];
        let source = ZarrSource::with_store("zarr:test".into(), hierarchy(&absent)).unwrap();
        for text in ["0:10,0:7", "2:9,1:6", "8:10,6:7", "4:8,3:6", "3:5,2:4"] {
            let region: Region = text.parse().unwrap();
            let data = source.read(&path("/g/a"), &meta(), &region).unwrap();
            assert_eq!(data.shape, region.shape(), "{text}");
            assert_eq!(
                data.to_vec::<i32>().unwrap(),
                expected(&region, &absent),
                "{text}"
            );
        }
    }

    #[test]
    fn a_mismatched_or_missing_array_is_refused_by_name() {
        let source = ZarrSource::with_store("zarr:test".into(), hierarchy(&[9, 9])).unwrap();
        let other = ArrayMeta::new(vec![10, 8], vec![4, 3], DType::I32, -1.0).unwrap();
        let region: Region = "0:4,0:3".parse().unwrap();
        let err = source.read(&path("/g/a"), &other, &region).unwrap_err();
        assert!(matches!(err, FloeError::InvalidPlan { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("zarr:test") && text.contains("[10, 7]"),
            "{text}"
        );
        assert!(text.contains("[10, 8]"), "{text}");
        let chunks = ArrayMeta::new(vec![10, 7], vec![5, 3], DType::I32, -1.0).unwrap();
        assert!(source.check_fits(&path("/g/a"), &chunks).is_err());
        let err = source.check_fits(&path("/g/b"), &meta()).unwrap_err();
        assert!(err.to_string().contains("/g/b"), "{err}");
        let err = source.check_fits(&path("/g"), &meta()).unwrap_err();
        assert!(err.to_string().contains("group"), "{err}");
    }

    #[test]
    fn a_store_without_a_root_group_is_not_a_hierarchy() {
        let err = ZarrSource::with_store("zarr:empty".into(), Store::memory())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("zarr.json"), "{err}");
    }
}
