//! Footprints: what a change touches, per array (chunk set plus metadata
//! change), and the conflicts between two footprints.

use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use crate::array::ArrayMeta;
use crate::ids::ArrayPath;
use crate::region::{coord_of, linear_index, Region};

/// Conflicts list at most this many chunk coordinates each; `total` counts all.
pub const MAX_LISTED_CHUNKS: usize = 64;

/// A change to an array's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaChange {
    /// The array was created with this metadata.
    Create(ArrayMeta),
    /// The array's metadata was replaced (e.g. resized).
    Update(ArrayMeta),
    /// The array was deleted.
    Delete,
}

/// What one change does to one array.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArrayChange {
    /// The chunk grid the chunk indices refer to (row-major linearisation).
    pub grid: Vec<u64>,
    /// Linear indices of the chunks written.
    pub chunks: RoaringTreemap,
    /// The metadata change, if any.
    pub meta: Option<MetaChange>,
}

impl ArrayChange {
    /// Chunk coordinates of the written chunks, in index order.
    pub fn coords(&self) -> impl Iterator<Item = Vec<u64>> + '_ {
        self.chunks.iter().map(|i| coord_of(i, &self.grid))
    }

    /// Whether the chunk at `coord` was written.
    pub fn wrote(&self, coord: &[u64]) -> bool {
        coord.len() == self.grid.len()
            && coord.iter().zip(&self.grid).all(|(c, g)| c < g)
            && self.chunks.contains(linear_index(coord, &self.grid))
    }

    /// Our chunks re-expressed in `grid` (dropping those outside it).
    fn chunks_in(&self, grid: &[u64]) -> RoaringTreemap {
        if grid == self.grid.as_slice() {
            return self.chunks.clone();
        }
        self.coords()
            .filter(|c| c.len() == grid.len() && c.iter().zip(grid).all(|(a, g)| a < g))
            .map(|c| linear_index(&c, grid))
            .collect()
    }

    fn changes_shape_or_deletes(&self) -> bool {
        matches!(self.meta, Some(MetaChange::Update(_) | MetaChange::Delete))
    }
}

/// Per array: the chunks a change touches and its metadata change.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Changes by array path.
    pub arrays: BTreeMap<ArrayPath, ArrayChange>,
}

/// The kind of a conflict between a session and a commit that landed after
/// its base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConflictKind {
    /// Both wrote the same chunks.
    ChunkDoubleUpdate {
        /// Up to [`MAX_LISTED_CHUNKS`] of the shared chunk coordinates.
        chunks: Vec<Vec<u64>>,
        /// How many chunks are shared.
        total: u64,
    },
    /// Both created an array at the same path.
    ArrayCreatedTwice,
    /// Both changed the array's metadata (e.g. resize vs resize).
    MetadataDoubleUpdate,
    /// We wrote chunks of an array that was resized or deleted since our base.
    ChunksWrittenToChangedArray {
        /// Up to [`MAX_LISTED_CHUNKS`] of the chunks we wrote.
        chunks: Vec<Vec<u64>>,
        /// How many chunks we wrote.
        total: u64,
        /// True when the array was deleted, false when its metadata changed.
        deleted: bool,
    },
    /// We deleted an array that was written or changed since our base.
    DeleteOfUpdatedArray,
    /// We changed the metadata of an array deleted since our base.
    MetadataUpdateOfDeletedArray,
}

/// One conflict: an array path and what collided there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The array concerned.
    pub path: ArrayPath,
    /// What collided.
    pub kind: ConflictKind,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |chunks: &[Vec<u64>], total: u64| {
            let shown: Vec<String> = chunks.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>();
            let more = total.saturating_sub(chunks.len() as u64);
            if more > 0 {
                format!("{} and {more} more", shown.join(" "))
            } else {
                shown.join(" ")
            }
        };
        match &self.kind {
            ConflictKind::ChunkDoubleUpdate { chunks, total } => {
                write!(
                    f,
                    "{}: chunk double update at {}",
                    self.path,
                    list(chunks, *total)
                )
            }
            ConflictKind::ArrayCreatedTwice => write!(f, "{}: array created twice", self.path),
            ConflictKind::MetadataDoubleUpdate => {
                write!(f, "{}: metadata double update", self.path)
            }
            ConflictKind::ChunksWrittenToChangedArray {
                chunks,
                total,
                deleted,
            } => write!(
                f,
                "{}: chunks {} written to an array {} since the base",
                self.path,
                list(chunks, *total),
                if *deleted { "deleted" } else { "resized" }
            ),
            ConflictKind::DeleteOfUpdatedArray => {
                write!(
                    f,
                    "{}: delete of an array updated since the base",
                    self.path
                )
            }
            ConflictKind::MetadataUpdateOfDeletedArray => {
                write!(f, "{}: metadata update of a deleted array", self.path)
            }
        }
    }
}

fn listed(chunks: &RoaringTreemap, grid: &[u64]) -> (Vec<Vec<u64>>, u64) {
    let shown = chunks
        .iter()
        .take(MAX_LISTED_CHUNKS)
        .map(|i| coord_of(i, grid))
        .collect();
    (shown, chunks.len())
}

impl Footprint {
    /// An empty footprint.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing is touched.
    pub fn is_empty(&self) -> bool {
        self.arrays
            .values()
            .all(|c| c.chunks.is_empty() && c.meta.is_none())
    }

    /// Number of chunks touched, over all arrays.
    pub fn chunk_count(&self) -> u64 {
        self.arrays.values().map(|c| c.chunks.len()).sum()
    }

    fn entry(&mut self, path: &ArrayPath, meta: &ArrayMeta) -> &mut ArrayChange {
        self.arrays
            .entry(path.clone())
            .or_insert_with(|| ArrayChange {
                grid: meta.grid(),
                ..ArrayChange::default()
            })
    }

    /// Records that the chunks `region` touches in array `path` are written.
    /// The region must already be validated against `meta`.
    pub fn add_region(&mut self, path: &ArrayPath, meta: &ArrayMeta, region: &Region) {
        let indices = region.chunk_indices(meta);
        self.entry(path, meta).chunks.extend(indices);
    }

    /// Records that one chunk of `path` is written.
    pub fn add_chunk(&mut self, path: &ArrayPath, meta: &ArrayMeta, coord: &[u64]) {
        let index = linear_index(coord, &meta.grid());
        self.entry(path, meta).chunks.insert(index);
    }

    /// Records a metadata change of `path`; `meta` is the array's metadata
    /// after the change (or before it, for a delete).
    pub fn set_meta(&mut self, path: &ArrayPath, meta: &ArrayMeta, change: MetaChange) {
        let entry = self.entry(path, meta);
        entry.grid = meta.grid();
        entry.meta = Some(change);
    }

    /// Adds everything `other` touches (later metadata changes win).
    pub fn merge(&mut self, other: &Footprint) {
        for (path, change) in &other.arrays {
            let entry = self.arrays.entry(path.clone()).or_default();
            if entry.grid.is_empty() {
                entry.grid = change.grid.clone();
            }
            entry.chunks |= change.chunks_in(&entry.grid);
            if change.meta.is_some() {
                entry.meta = change.meta.clone();
            }
        }
    }

    /// Chunks touched by both footprints, per array.
    pub fn shared_chunks(&self, other: &Footprint) -> BTreeMap<ArrayPath, RoaringTreemap> {
        let mut out = BTreeMap::new();
        for (path, ours) in &self.arrays {
            if let Some(theirs) = other.arrays.get(path) {
                let shared = ours.chunks_in(&theirs.grid) & &theirs.chunks;
                if !shared.is_empty() {
                    out.insert(path.clone(), shared);
                }
            }
        }
        out
    }

    /// Removes the given chunks (linear indices in our grid) of `path`.
    pub fn remove_chunks(&mut self, path: &ArrayPath, chunks: &RoaringTreemap) {
        if let Some(change) = self.arrays.get_mut(path) {
            change.chunks -= chunks;
        }
    }

    /// Every conflict between our change (`self`) and `theirs`, a change
    /// that landed after our base. Empty means we can fast-forward over it.
    pub fn conflicts_with(&self, theirs: &Footprint) -> Vec<Conflict> {
        let mut out = Vec::new();
        for (path, ours) in &self.arrays {
            let Some(other) = theirs.arrays.get(path) else {
                continue;
            };
            for kind in array_conflicts(ours, other) {
                out.push(Conflict {
                    path: path.clone(),
                    kind,
                });
            }
        }
        out
    }
}

fn array_conflicts(ours: &ArrayChange, theirs: &ArrayChange) -> Vec<ConflictKind> {
    use MetaChange::*;
    let mut out = Vec::new();
    match (&ours.meta, &theirs.meta) {
        (Some(Create(_)), Some(Create(_))) => out.push(ConflictKind::ArrayCreatedTwice),
        (Some(Update(_)), Some(Update(_))) => out.push(ConflictKind::MetadataDoubleUpdate),
        (Some(Update(_)), Some(Delete)) => out.push(ConflictKind::MetadataUpdateOfDeletedArray),
        (Some(Delete), Some(Update(_) | Create(_))) => out.push(ConflictKind::DeleteOfUpdatedArray),
        (Some(Delete), None) if !theirs.chunks.is_empty() => {
            out.push(ConflictKind::DeleteOfUpdatedArray)
        }
        _ => {}
    }
    let wrote = !ours.chunks.is_empty();
    if wrote && theirs.changes_shape_or_deletes() && !matches!(ours.meta, Some(Create(_))) {
        let (chunks, total) = listed(&ours.chunks, &ours.grid);
        out.push(ConflictKind::ChunksWrittenToChangedArray {
            chunks,
            total,
            deleted: matches!(theirs.meta, Some(Delete)),
        });
    } else if wrote && !matches!(ours.meta, Some(Delete)) {
        let shared = ours.chunks_in(&theirs.grid) & &theirs.chunks;
        if !shared.is_empty() {
            let (chunks, total) = listed(&shared, &theirs.grid);
            out.push(ConflictKind::ChunkDoubleUpdate { chunks, total });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::DType;

    fn setup() -> (ArrayPath, ArrayMeta) {
        (
            ArrayPath::new("/t").unwrap(),
            ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0).unwrap(),
        )
    }

    fn writes(region: &str) -> Footprint {
        let (p, m) = setup();
        let mut f = Footprint::new();
        f.add_region(&p, &m, &region.parse().unwrap());
        f
    }

    #[test]
    fn seed_example_one_has_no_conflict() {
        assert!(writes("0:20").conflicts_with(&writes("20:30")).is_empty());
    }

    #[test]
    fn seed_example_two_conflicts_on_chunk_10_20() {
        let c = writes("15:30").conflicts_with(&writes("0:20"));
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].kind,
            ConflictKind::ChunkDoubleUpdate {
                chunks: vec![vec![1]],
                total: 1
            }
        );
        assert_eq!(c[0].to_string(), "/t: chunk double update at [1]");
    }

    #[test]
    fn metadata_conflicts_are_named() {
        let (p, m) = setup();
        let bigger = ArrayMeta::new(vec![40], vec![10], DType::I32, 0.0).unwrap();
        let change = |c: MetaChange| {
            let mut f = Footprint::new();
            f.set_meta(&p, &m, c);
            f
        };
        let kinds = |a: &Footprint, b: &Footprint| -> Vec<ConflictKind> {
            a.conflicts_with(b).into_iter().map(|c| c.kind).collect()
        };
        let create = change(MetaChange::Create(m.clone()));
        let resize = change(MetaChange::Update(bigger));
        let delete = change(MetaChange::Delete);
        assert_eq!(
            kinds(&create, &create),
            vec![ConflictKind::ArrayCreatedTwice]
        );
        assert_eq!(
            kinds(&resize, &resize),
            vec![ConflictKind::MetadataDoubleUpdate]
        );
        assert_eq!(
            kinds(&delete, &writes("0:10")),
            vec![ConflictKind::DeleteOfUpdatedArray]
        );
        assert_eq!(
            kinds(&resize, &delete),
            vec![ConflictKind::MetadataUpdateOfDeletedArray]
        );
        assert!(matches!(
            kinds(&writes("0:10"), &resize)[..],
            [ConflictKind::ChunksWrittenToChangedArray { deleted: false, .. }]
        ));
        assert!(matches!(
            kinds(&writes("0:10"), &delete)[..],
            [ConflictKind::ChunksWrittenToChangedArray { deleted: true, .. }]
        ));
    }

    #[test]
    fn merge_unions_chunks() {
        let mut f = writes("0:10");
        f.merge(&writes("20:30"));
        assert_eq!(f.chunk_count(), 2);
        assert_eq!(f.shared_chunks(&writes("15:25")).len(), 1);
    }
}
