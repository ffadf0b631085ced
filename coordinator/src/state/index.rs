//! The per-branch conflict index: what the commit rule needs to know about
//! the commits since a base, kept so that asking costs time proportional to
//! the asking footprint, not to the number of commits since the base.
//!
//! For each array a branch's chain ever touched it keeps the height of the
//! last commit that created it, changed its metadata, deleted it, or wrote
//! chunks without a metadata change; and for each chunk ever written, the
//! height (and commit) of its last write. Chunks are keyed by their
//! coordinates, not by a linear index, so the entries survive resizes: the
//! reference walk compares coordinates too (a chunk of theirs outside our
//! grid is no conflict), and an array re-created with another rank simply
//! has keys of another length. Heights on one branch's chain are unique, so
//! "written after height h" is "last written at a height above h": the
//! index answers for any base on the chain at once.
//!
//! The size grows with the distinct chunks written on the branch (plus one
//! small record per array), never with the number of commits.

use roaring::RoaringTreemap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use floe_protocol::footprint::MAX_LISTED_CHUNKS;
use floe_protocol::region::coord_of;
use floe_protocol::{ArrayChange, ArrayPath, CommitId, ConflictKind, Footprint, MetaChange};

use super::commit::Detection;

/// One branch's index. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct BranchIndex {
    arrays: BTreeMap<ArrayPath, ArrayIndex>,
}

/// What the branch's chain did to one array path. Heights are those of the
/// last such commit; 0 means never (the root, at height 0, touches nothing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct ArrayIndex {
    /// Last `MetaChange::Create`.
    created: u64,
    /// Last `MetaChange::Update` (a resize, a new fill value or codec).
    updated: u64,
    /// Last `MetaChange::Delete`.
    deleted: u64,
    /// Last commit that wrote chunks without changing the metadata.
    written: u64,
    /// The last write of every chunk ever written, by coordinates.
    chunks: BTreeMap<Vec<u64>, ChunkWrite>,
}

/// The last writes of one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ChunkWrite {
    /// Height of the last commit that wrote the chunk.
    height: u64,
    /// That commit.
    commit: CommitId,
    /// Height of the last commit that wrote it without updating the
    /// array's metadata (0: none). The rule reports a double update against
    /// a resize's own chunks only to a change that creates the array: any
    /// other change already conflicts with the resize itself.
    plain: u64,
}

impl ChunkWrite {
    /// Keeps the later of two writes, field by field, so that recording
    /// commits in any order gives the same index.
    fn merge(&mut self, other: ChunkWrite) {
        if other.height > self.height {
            self.height = other.height;
            self.commit = other.commit;
        }
        self.plain = self.plain.max(other.plain);
    }
}

impl BranchIndex {
    /// Records a commit at `height` on the branch's chain. Every field keeps
    /// its maximum, so the order commits are recorded in does not matter
    /// (building a branch's index by walking a chain tip first is fine).
    /// Costs O(footprint * log(index)).
    pub(super) fn record(&mut self, height: u64, commit: CommitId, footprint: &Footprint) {
        for (path, change) in &footprint.arrays {
            self.arrays
                .entry(path.clone())
                .or_default()
                .record(height, commit, change);
        }
    }

    /// The conflicts between `ours` and the commits of the chain above
    /// height `after`, exactly as the reference walk (`conflicts_with`
    /// against each of them, tip first, deduplicated) reports them.
    pub(super) fn detect(&self, ours: &Footprint, after: u64) -> Detection {
        let mut found = Detection::default();
        for (path, change) in &ours.arrays {
            let Some(array) = self.arrays.get(path) else {
                continue;
            };
            let other = array.other_conflicts(change, after);
            if !other.is_empty() {
                found.other.insert(path.clone(), other);
            }
            let shared = array.shared(change, after);
            if !shared.is_empty() {
                found.shared.insert(path.clone(), shared);
            }
        }
        found
    }

    /// The commit that last wrote chunk `coord` of `path`, with its height.
    #[cfg(test)]
    pub(super) fn last_write(&self, path: &ArrayPath, coord: &[u64]) -> Option<(u64, CommitId)> {
        let write = self.arrays.get(path)?.chunks.get(coord)?;
        Some((write.height, write.commit))
    }
}

impl ArrayIndex {
    fn record(&mut self, height: u64, commit: CommitId, change: &ArrayChange) {
        let raise = |slot: &mut u64| *slot = (*slot).max(height);
        match change.meta {
            Some(MetaChange::Create(_)) => raise(&mut self.created),
            Some(MetaChange::Update(_)) => raise(&mut self.updated),
            Some(MetaChange::Delete) => raise(&mut self.deleted),
            None if !change.chunks.is_empty() => raise(&mut self.written),
            None => {}
        }
        let plain = match change.meta {
            Some(MetaChange::Update(_)) => 0,
            _ => height,
        };
        let write = ChunkWrite {
            height,
            commit,
            plain,
        };
        let mut coord = Vec::with_capacity(change.grid.len());
        for index in &change.chunks {
            fill_coord(&mut coord, index, &change.grid);
            match self.chunks.get_mut(coord.as_slice()) {
                Some(last) => last.merge(write),
                None => {
                    self.chunks.insert(coord.clone(), write);
                }
            }
        }
    }

    /// Our chunks written above `after` by a commit the reference compares
    /// chunks with, as indices in our grid (so row-major in our grid).
    fn shared(&self, ours: &ArrayChange, after: u64) -> RoaringTreemap {
        let creates = matches!(ours.meta, Some(MetaChange::Create(_)));
        let mut out = RoaringTreemap::new();
        if matches!(ours.meta, Some(MetaChange::Delete)) {
            return out;
        }
        let mut coord = Vec::with_capacity(ours.grid.len());
        for index in &ours.chunks {
            fill_coord(&mut coord, index, &ours.grid);
            let Some(write) = self.chunks.get(coord.as_slice()) else {
                continue;
            };
            let height = if creates { write.height } else { write.plain };
            if height > after {
                out.insert(index);
            }
        }
        out
    }

    /// Every conflict kind but chunk double updates, ordered as the
    /// reference finds them: by the height of the latest commit causing
    /// each, tip first, and within one commit the metadata kind first.
    fn other_conflicts(&self, ours: &ArrayChange, after: u64) -> Vec<ConflictKind> {
        let mut found: Vec<(u64, ConflictKind)> = Vec::new();
        let mut add = |height: u64, kind: ConflictKind| {
            if height > after {
                found.push((height, kind));
            }
        };
        match ours.meta {
            Some(MetaChange::Create(_)) => add(self.created, ConflictKind::ArrayCreatedTwice),
            Some(MetaChange::Update(_)) => {
                add(self.updated, ConflictKind::MetadataDoubleUpdate);
                add(self.deleted, ConflictKind::MetadataUpdateOfDeletedArray);
            }
            Some(MetaChange::Delete) => {
                let touched = self.created.max(self.updated).max(self.written);
                add(touched, ConflictKind::DeleteOfUpdatedArray);
            }
            None => {}
        }
        let creates = matches!(ours.meta, Some(MetaChange::Create(_)));
        if !ours.chunks.is_empty() && !creates {
            for (height, deleted) in [(self.updated, false), (self.deleted, true)] {
                add(height, written_to_changed(ours, deleted));
            }
        }
        // Stable: kinds of one commit keep the order they were added in.
        found.sort_by_key(|(height, _)| std::cmp::Reverse(*height));
        found.into_iter().map(|(_, kind)| kind).collect()
    }
}

/// `ChunksWrittenToChangedArray` listing our chunks.
fn written_to_changed(ours: &ArrayChange, deleted: bool) -> ConflictKind {
    let chunks = ours
        .chunks
        .iter()
        .take(MAX_LISTED_CHUNKS)
        .map(|i| coord_of(i, &ours.grid))
        .collect();
    ConflictKind::ChunksWrittenToChangedArray {
        chunks,
        total: ours.chunks.len(),
        deleted,
    }
}

/// `coord_of` into a reused buffer: the index is probed once per chunk of
/// a footprint, and an allocation per probe would dominate.
fn fill_coord(coord: &mut Vec<u64>, mut index: u64, grid: &[u64]) {
    coord.clear();
    coord.resize(grid.len(), 0);
    for (slot, &g) in coord.iter_mut().zip(grid).rev() {
        let g = g.max(1);
        *slot = index % g;
        index /= g;
    }
}
