//! Where a cooperative job's data comes from ([`open_source`]): an `.npy`
//! file on a path the workers share, or at an object-store URL
//! (`s3://bucket/dir/x.npy`, `file:///abs/x.npy`, ...), read region by
//! region with ranged GETs, for one array; or a Zarr v3 hierarchy
//! (`zarr:<root>`, see [`ZarrSource`]) serving each of its arrays. The
//! submitter only checks that the source fits; each worker reads the
//! regions of its tasks.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;

use floe_protocol::{ArrayMeta, ArrayPath, FloeError, Region};

use crate::coop::Source;
use crate::data::{check_region, elements, ArrayData};
use crate::npy::{check_fits, parse_header, row_ranges, NpyFile, NpyHeader, MAX_NPY_HEADER};
use crate::store::Store;
pub use crate::zarr_source::ZarrSource;

/// The prefix of a source string naming a Zarr hierarchy:
/// `zarr:<directory or store URL of the hierarchy's root>`.
pub const ZARR_PREFIX: &str = "zarr:";

/// A job's source as workers open it from the session's source string:
/// it reads regions of the arrays it serves ([`Source::read`], which
/// checks the fit first).
pub trait JobSource: Source {
    /// Its name, for logs and errors.
    fn label(&self) -> String;
    /// Whether it can feed array `path` with metadata `meta`.
    fn check_fits(&self, path: &ArrayPath, meta: &ArrayMeta) -> Result<(), FloeError>;
}

/// An `.npy` a job reads regions of.
pub trait NpySource: Send + Sync {
    /// Its header.
    fn header(&self) -> &NpyHeader;
    /// Its name, for errors.
    fn label(&self) -> String;
    /// The data of `region` (inside its shape).
    fn read_region(&self, region: &Region) -> Result<ArrayData, FloeError>;
    /// Whether it can feed array `path` with metadata `meta`.
    fn check_fits(&self, path: &ArrayPath, meta: &ArrayMeta) -> Result<(), FloeError> {
        check_fits(self.header(), &self.label(), path, meta)
    }
}

impl NpySource for NpyFile {
    fn header(&self) -> &NpyHeader {
        NpyFile::header(self)
    }

    fn label(&self) -> String {
        self.path().display().to_string()
    }

    fn read_region(&self, region: &Region) -> Result<ArrayData, FloeError> {
        NpyFile::read_region(self, region)
    }
}

/// Reads `region` of array `path` from an `.npy` source, after checking
/// that it fits the array and the region lies inside it.
pub(crate) fn read_npy(
    npy: &impl NpySource,
    path: &ArrayPath,
    meta: &ArrayMeta,
    region: &Region,
) -> Result<ArrayData, FloeError> {
    npy.check_fits(path, meta)?;
    check_region(path, meta, region)?;
    npy.read_region(region)
}

impl JobSource for NpyFile {
    fn label(&self) -> String {
        NpySource::label(self)
    }

    fn check_fits(&self, path: &ArrayPath, meta: &ArrayMeta) -> Result<(), FloeError> {
        NpySource::check_fits(self, path, meta)
    }
}

impl Source for RemoteNpy {
    fn read(
        &self,
        path: &ArrayPath,
        meta: &ArrayMeta,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        read_npy(self, path, meta, region)
    }
}

impl JobSource for RemoteNpy {
    fn label(&self) -> String {
        NpySource::label(self)
    }

    fn check_fits(&self, path: &ArrayPath, meta: &ArrayMeta) -> Result<(), FloeError> {
        NpySource::check_fits(self, path, meta)
    }
}

/// Opens a job's source string: `zarr:<root>` a Zarr hierarchy (see
/// [`ZarrSource::open`]); else an `.npy`, through the object store for a
/// URL (anything with `://`), else at a local path.
pub fn open_source(text: &str) -> Result<Arc<dyn JobSource>, FloeError> {
    if let Some(root) = text.strip_prefix(ZARR_PREFIX) {
        Ok(Arc::new(ZarrSource::open(root)?))
    } else if text.contains("://") {
        Ok(Arc::new(RemoteNpy::open(text)?))
    } else {
        Ok(Arc::new(NpyFile::open(text)?))
    }
}

/// A small runtime of a source's own that blocking reads run on, from a
/// scoped thread, so they may be called from inside another runtime.
pub(crate) struct Blocking {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Blocking {
    /// A runtime for the source named `label`.
    pub(crate) fn new(label: &str) -> Result<Self, FloeError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| FloeError::Store(format!("cannot start a runtime for {label}: {e}")))?;
        Ok(Blocking {
            runtime: Some(runtime),
        })
    }

    /// Runs `fut` to completion, blocking the calling thread.
    pub(crate) fn run<T: Send>(
        &self,
        label: &str,
        fut: impl std::future::Future<Output = Result<T, FloeError>> + Send,
    ) -> Result<T, FloeError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| FloeError::Store("the source is closed".into()))?;
        match std::thread::scope(|s| s.spawn(|| runtime.block_on(fut)).join()) {
            Ok(result) => result,
            Err(_) => Err(FloeError::Store(format!("reading {label} panicked"))),
        }
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        // Dropping a runtime may block; this one may be dropped inside
        // another runtime (a worker's actor), where blocking is refused.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An `.npy` object read with ranged GETs. Reads block the calling thread
/// (the worker machine asks for its task's data synchronously); they run
/// on a small runtime of their own, from a scoped thread, so they may be
/// called from inside another runtime.
pub struct RemoteNpy {
    url: String,
    store: Store,
    key: ObjectPath,
    header: NpyHeader,
    blocking: Blocking,
}

impl RemoteNpy {
    /// Opens `url` (`scheme://bucket/dir/name.npy`): reads and checks its
    /// header and that the object holds all the data it promises.
    pub fn open(url: &str) -> Result<Self, FloeError> {
        let (dir, name) = url
            .rsplit_once('/')
            .filter(|(dir, name)| !name.is_empty() && dir.contains("://"))
            .ok_or_else(|| FloeError::Store(format!("{url}: expected scheme://.../name.npy")))?;
        // `file:///x.npy` splits into `file://` and `x.npy`: keep the root.
        let dir = if dir.ends_with(':') || dir.ends_with("//") {
            format!("{dir}/")
        } else {
            dir.to_string()
        };
        let mut source = RemoteNpy {
            url: url.to_string(),
            store: Store::from_url(&dir)?,
            key: ObjectPath::from(name),
            header: NpyHeader {
                dtype: floe_protocol::DType::U8,
                shape: Vec::new(),
                data_offset: 0,
            },
            blocking: Blocking::new(url)?,
        };
        source.header = source.read_header()?;
        Ok(source)
    }

    fn read_header(&self) -> Result<NpyHeader, FloeError> {
        let size = self.size()?;
        let head = self.get(std::iter::once(0..size.min(12)).collect())?;
        let header_len = match head.get(6) {
            Some(1) if head.len() >= 10 => 10 + u16::from_le_bytes([head[8], head[9]]) as u64,
            Some(2 | 3) if head.len() >= 12 => {
                12 + u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as u64
            }
            _ => return Err(self.bad(parse_header(&head).err())),
        };
        if header_len > (MAX_NPY_HEADER + 12) as u64 || header_len > size {
            return Err(self.bad(None));
        }
        let bytes = self.get(std::iter::once(0..header_len).collect())?;
        let header = parse_header(&bytes).map_err(|e| self.bad(Some(e)))?;
        let data = elements(&header.shape)
            .and_then(|n| n.checked_mul(header.dtype.size() as u64))
            .ok_or_else(|| self.bad(None))?;
        if size < header.data_offset.saturating_add(data) {
            return Err(FloeError::Codec(format!(
                "{}: the header promises {data} data bytes but the object holds {}",
                self.url,
                size.saturating_sub(header.data_offset)
            )));
        }
        Ok(header)
    }

    fn bad(&self, why: Option<FloeError>) -> FloeError {
        let why = why.map_or("not an .npy header".to_string(), |e| e.to_string());
        FloeError::Codec(format!("{}: {why}", self.url))
    }

    /// Runs `fut` on this source's runtime, from a scoped thread.
    fn block<T: Send>(
        &self,
        fut: impl std::future::Future<Output = Result<T, object_store::Error>> + Send,
    ) -> Result<T, FloeError> {
        let url = &self.url;
        let fut = async move {
            fut.await
                .map_err(|e| FloeError::Store(format!("cannot read {url}: {e}")))
        };
        self.blocking.run(&self.url, fut)
    }

    fn size(&self) -> Result<u64, FloeError> {
        let store = self.store.object_store().clone();
        let key = self.key.clone();
        self.block(async move { store.head(&key).await.map(|m| m.size) })
    }

    /// The bytes of `ranges`, concatenated.
    fn get(&self, ranges: Vec<std::ops::Range<u64>>) -> Result<Vec<u8>, FloeError> {
        let store = self.store.object_store().clone();
        let key = self.key.clone();
        let parts = self.block(async move { store.get_ranges(&key, &ranges).await })?;
        Ok(parts.iter().flat_map(|b| b.iter().copied()).collect())
    }
}

impl NpySource for RemoteNpy {
    fn header(&self) -> &NpyHeader {
        &self.header
    }

    fn label(&self) -> String {
        self.url.clone()
    }

    fn read_region(&self, region: &Region) -> Result<ArrayData, FloeError> {
        let rows = row_ranges(&self.header, region, &self.url)?;
        let bytes = self.get(rows)?;
        ArrayData::from_bytes(self.header.dtype, &region.shape(), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::DType;

    #[test]
    fn a_source_url_reads_the_same_regions_as_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<i32> = (0..12 * 9).collect();
        let data = ArrayData::from_slice(&[12, 9], &values).unwrap();
        let path = dir.path().join("x.npy");
        crate::npy::write_npy(&path, &data).unwrap();
        let url = format!("file://{}", path.display());
        let file = NpyFile::open(&path).unwrap();
        let remote = RemoteNpy::open(&url).unwrap();
        assert_eq!(remote.header(), file.header());
        let a = ArrayPath::new("/a").unwrap();
        let meta = ArrayMeta::new(vec![12, 9], vec![4, 3], DType::I32, 0.0).unwrap();
        let opened = [
            open_source(path.to_str().unwrap()).unwrap(),
            open_source(&url).unwrap(),
        ];
        for region in ["0:12,0:9", "3:7,2:5", "11:12,8:9"] {
            let region: Region = region.parse().unwrap();
            let want = file.read_region(&region).unwrap();
            assert_eq!(remote.read_region(&region).unwrap(), want);
            for source in &opened {
                assert_eq!(source.read(&a, &meta, &region).unwrap(), want);
            }
        }
        for source in &opened {
            source.check_fits(&a, &meta).unwrap();
        }
        let missing = format!("file://{}/nope.npy", dir.path().display());
        let err = open_source(&missing).err().expect("a missing object fails");
        assert!(err.to_string().contains("nope.npy"), "{err}");
    }

    #[test]
    fn a_zarr_source_string_opens_a_hierarchy_and_a_missing_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("{ZARR_PREFIX}{}/nope", dir.path().display());
        let err = open_source(&missing)
            .err()
            .expect("a missing directory fails");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(!dir.path().join("nope").exists(), "nothing is created");
        let root = dir.path().join("h");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(
            root.join("zarr.json"),
            crate::zarr::group_metadata().to_string(),
        )
        .unwrap();
        let source = open_source(&format!("{ZARR_PREFIX}file://{}", root.display())).unwrap();
        assert!(source.label().starts_with(ZARR_PREFIX));
        let meta = ArrayMeta::new(vec![4], vec![2], DType::I32, 0.0).unwrap();
        let err = source
            .check_fits(&ArrayPath::new("/x").unwrap(), &meta)
            .unwrap_err();
        assert!(err.to_string().contains("/x"), "{err}");
    }
}
