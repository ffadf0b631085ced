//! Building a writer's new chunk buffers from its writes, pure: whole
//! chunks straight from the data, partial chunks read-modify-written from
//! the base (resolved through [`History`]), asking for whatever is missing.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, ChunkPart, CommitId, FloeError, Footprint, ObjectId, Region,
};

use super::view::{Resized, Rewrite};
use crate::chunk::{covers_whole_chunk, fill_chunk, patch_chunk};
use floe_protocol::region::{chunk_region, copy_box};

use crate::data::{check_region, check_region_data, meta_of, ArrayData};
use crate::format::{decode_chunk, Manifest, ObjectKind};
use crate::resolve::{History, Location, Need, Step};

/// Something the build needs fetched before it can go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// A commit record (`Query::GetCommit`).
    Record(CommitId),
    /// An object of the store.
    Object(ObjectKind, ObjectId),
}

impl From<Need> for Want {
    fn from(need: Need) -> Self {
        match need {
            Need::Record(c) => Want::Record(c),
            Need::Manifest(id) => Want::Object(ObjectKind::Manifest, id),
            Need::Checkpoint(id) => Want::Object(ObjectKind::Checkpoint, id),
        }
    }
}

/// What the build reads from: the cache of records and manifests, the
/// chunk objects fetched, and the base's arrays.
pub(crate) struct Sources<'a> {
    pub(crate) history: &'a History,
    pub(crate) chunks: &'a BTreeMap<ObjectId, Vec<u8>>,
    pub(crate) arrays: &'a BTreeMap<ArrayPath, ArrayMeta>,
    /// Chunks written since the base (a session's pending writes): read
    /// before the base's.
    pub(crate) overlay: &'a Manifest,
}

/// New chunk buffers, keyed by array and chunk coordinate.
pub(crate) type Buffers = BTreeMap<(ArrayPath, Vec<u64>), Vec<u8>>;

/// A resumable build against `base`: first the chunks resizes rewrite
/// (edge chunks cut, chunks brought back as the fill value), in order, then
/// the writes, which patch over them.
#[derive(Clone, Debug)]
pub(crate) struct Builder {
    base: CommitId,
    write: usize,
    part: usize,
    /// What resizes rewrite, and how far that went.
    rewrites: Resized,
    rewritten: usize,
    /// The new buffers so far; later writes patch earlier ones.
    pub(crate) buffers: Buffers,
}

impl Builder {
    /// A build against commit `base`.
    pub(crate) fn new(base: CommitId) -> Self {
        Builder {
            base,
            write: 0,
            part: 0,
            rewrites: Vec::new(),
            rewritten: 0,
            buffers: BTreeMap::new(),
        }
    }

    /// Also rebuilds the chunks `resized` rewrites, before the writes.
    pub(crate) fn with_resized(mut self, resized: Resized) -> Self {
        self.rewrites = resized;
        self
    }

    /// Goes as far as it can: `Ok(None)` when every write is built,
    /// `Ok(Some(want))` when something must be fetched first.
    pub(crate) fn run(
        &mut self,
        src: &Sources<'_>,
        writes: &[(ArrayPath, Region, ArrayData)],
    ) -> Result<Option<Want>, FloeError> {
        if let Some(want) = self.run_rewrites(src)? {
            return Ok(Some(want));
        }
        while let Some((path, region, data)) = writes.get(self.write) {
            let meta = meta_of(src.arrays, path)?;
            if self.part == 0 {
                check_region(path, meta, region)?;
                check_region_data(path, meta, region, data)?;
            }
            let parts = region.chunk_parts(meta);
            let Some(part) = parts.get(self.part) else {
                self.write += 1;
                self.part = 0;
                continue;
            };
            let previous = match self.previous(src, path, meta, part)? {
                Ok(previous) => previous,
                Err(want) => return Ok(Some(want)),
            };
            let buffer = patch_chunk(meta, previous.as_deref(), part, data)?;
            self.buffers
                .insert((path.clone(), part.coord.clone()), buffer);
            self.part += 1;
        }
        Ok(None)
    }

    /// The resizes' rewrites: a cut keeps the current chunk (ours, else
    /// the base's, else fill) inside the shape right after its shrink, the
    /// fill value past it; a fill is the fill value.
    fn run_rewrites(&mut self, src: &Sources<'_>) -> Result<Option<Want>, FloeError> {
        while let Some(rewrite) = self.rewrites.get(self.rewritten) {
            let (path, coord, buffer) = match rewrite {
                Rewrite::Fill { path, coord } => {
                    let meta = meta_of(src.arrays, path)?;
                    (path, coord, fill_chunk(meta))
                }
                Rewrite::Cut { path, coord, shape } => {
                    let mut meta = meta_of(src.arrays, path)?.clone();
                    meta.shape = shape.clone();
                    let mut after = fill_chunk(&meta);
                    match self.current(src, path, &meta, coord)? {
                        Err(want) => return Ok(Some(want)),
                        Ok(None) => {}
                        Ok(Some(before)) => {
                            let keep = chunk_region(coord, &meta).shape();
                            let origin = vec![0; coord.len()];
                            let (chunk, elem) = (&meta.chunk_shape, meta.dtype.size());
                            copy_box(
                                &before, chunk, &origin, &mut after, chunk, &origin, &keep, elem,
                            );
                        }
                    }
                    (path, coord, after)
                }
            };
            self.buffers.insert((path.clone(), coord.clone()), buffer);
            self.rewritten += 1;
        }
        Ok(None)
    }

    /// The current buffer of a partly covered chunk: ours, else the base's,
    /// else none (fill); `Err(want)` when it must be fetched first.
    #[allow(clippy::type_complexity)]
    fn previous(
        &self,
        src: &Sources<'_>,
        path: &ArrayPath,
        meta: &ArrayMeta,
        part: &ChunkPart,
    ) -> Result<Result<Option<Vec<u8>>, Want>, FloeError> {
        if covers_whole_chunk(meta, part) {
            return Ok(Ok(None));
        }
        self.current(src, path, meta, &part.coord)
    }

    /// The chunk at `coord` as the build sees it: ours, else the overlay's,
    /// else the base's, else none (fill); `Err(want)` when it must be
    /// fetched first.
    #[allow(clippy::type_complexity)]
    fn current(
        &self,
        src: &Sources<'_>,
        path: &ArrayPath,
        meta: &ArrayMeta,
        coord: &[u64],
    ) -> Result<Result<Option<Vec<u8>>, Want>, FloeError> {
        if let Some(ours) = self.buffers.get(&(path.clone(), coord.to_vec())) {
            return Ok(Ok(Some(ours.clone())));
        }
        let located = match src.overlay.get(path, coord) {
            Some(id) => Step::Done(Location::Chunk(id)),
            None => src.history.resolve(self.base, path, coord)?,
        };
        let id = match located {
            Step::Need(need) => return Ok(Err(need.into())),
            Step::Done(Location::Fill) => return Ok(Ok(None)),
            Step::Done(Location::Chunk(id)) => id,
        };
        match src.chunks.get(&id) {
            Some(object) => Ok(Ok(Some(decode_chunk(meta, object)?))),
            None => Ok(Err(Want::Object(ObjectKind::Chunk, id))),
        }
    }
}

/// The footprint and the delta manifest of chunks stored under `ids`
/// (in the order of `buffers`).
pub(crate) fn delta_of(
    arrays: &BTreeMap<ArrayPath, ArrayMeta>,
    keys: &[(ArrayPath, Vec<u64>)],
    ids: &[ObjectId],
) -> Result<(Footprint, Manifest), FloeError> {
    let mut footprint = Footprint::new();
    let mut manifest = Manifest::new();
    for ((path, coord), &id) in keys.iter().zip(ids) {
        footprint.add_chunk(path, meta_of(arrays, path)?, coord);
        manifest.insert(path.clone(), coord.clone(), id);
    }
    Ok((footprint, manifest))
}
