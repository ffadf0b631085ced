//! The reference model: what every commit must contain and which commits
//! may land, computed independently of the coordinator from what the
//! clients attempted and plain sets of chunk coordinates.

use std::collections::{BTreeMap, BTreeSet};

use floe_protocol::footprint::MAX_LISTED_CHUNKS;
use floe_protocol::region::{chunk_region, copy_box};
use floe_protocol::{
    ArrayMeta, ArrayPath, CommitId, CommitMode, CommitRecord, Conflict, ConflictKind, Footprint,
    MetaChange, Region, Span,
};

/// One region written by an attempt, with its bytes (row-major, LE).
#[derive(Clone, Debug)]
pub struct Write {
    /// The array.
    pub path: ArrayPath,
    /// The region.
    pub region: Region,
    /// Its elements.
    pub data: Vec<u8>,
}

/// A commit attempt, as the client made it: identified by its unique
/// message (its tag).
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The base its data was computed against.
    pub base: CommitId,
    /// The resizes made before the writes, in order: array and shape.
    pub resizes: Vec<(ArrayPath, Vec<u64>)>,
    /// The regions written.
    pub writes: Vec<Write>,
    /// Its footprint as sent.
    pub footprint: Footprint,
    /// Commit mode used.
    pub mode: CommitMode,
}

/// Array contents: one full row-major buffer per array.
pub type Contents = BTreeMap<ArrayPath, Vec<u8>>;

/// Plain chunk-coordinate sets of a footprint, per array.
pub fn coord_sets(f: &Footprint) -> BTreeMap<ArrayPath, BTreeSet<Vec<u64>>> {
    f.arrays
        .iter()
        .map(|(p, c)| (p.clone(), c.coords().collect()))
        .collect()
}

/// Chunk sets as `/a [0, 1] [0, 2]; /b [3]` (`nothing` when empty).
pub fn show(sets: &BTreeMap<ArrayPath, BTreeSet<Vec<u64>>>) -> String {
    let parts: Vec<String> = sets
        .iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(p, s)| {
            let coords: Vec<String> = s.iter().map(|c| format!("{c:?}")).collect();
            format!("{p} {}", coords.join(" "))
        })
        .collect();
    if parts.is_empty() {
        return "nothing".into();
    }
    parts.join("; ")
}

/// Chunks both footprints touch, by brute force.
pub fn shared(a: &Footprint, b: &Footprint) -> BTreeMap<ArrayPath, BTreeSet<Vec<u64>>> {
    let (a, b) = (coord_sets(a), coord_sets(b));
    a.into_iter()
        .filter_map(|(p, ours)| {
            let theirs = b.get(&p)?;
            let both: BTreeSet<_> = ours.intersection(theirs).cloned().collect();
            (!both.is_empty()).then_some((p, both))
        })
        .collect()
}

/// The commits after `base` up to and including `tip`, oldest first, or
/// `None` when `base` is not an ancestor of `tip`.
pub fn since(
    records: &BTreeMap<CommitId, CommitRecord>,
    base: CommitId,
    tip: CommitId,
) -> Option<Vec<&CommitRecord>> {
    let mut out = Vec::new();
    let mut cur = tip;
    while cur != base {
        let rec = records.get(&cur)?;
        out.push(rec);
        cur = rec.parent?;
    }
    out.reverse();
    Some(out)
}

/// Checks a conflict answer against brute force: the union of chunks the
/// coordinator named must equal the union of truly shared chunks.
pub fn check_conflicts(
    ours: &Footprint,
    between: &[&CommitRecord],
    reported: &[Conflict],
) -> Result<(), String> {
    let mut truth: BTreeMap<ArrayPath, BTreeSet<Vec<u64>>> = BTreeMap::new();
    for rec in between {
        for (p, s) in shared(ours, &rec.footprint) {
            if !reported_as_chunks(ours, &rec.footprint, &p) {
                continue;
            }
            truth.entry(p).or_default().extend(s);
        }
    }
    let mut named: BTreeMap<ArrayPath, BTreeSet<Vec<u64>>> = BTreeMap::new();
    for c in reported {
        if let ConflictKind::ChunkDoubleUpdate { chunks, total } = &c.kind {
            if *total as usize > chunks.len() {
                // Truncated list: only check that what is named is real.
                let t = truth.get(&c.path).cloned().unwrap_or_default();
                if !chunks.iter().all(|ch| t.contains(ch)) {
                    return Err(format!("{}: named chunks not shared", c.path));
                }
                named.entry(c.path.clone()).or_default().extend(t);
                continue;
            }
            named
                .entry(c.path.clone())
                .or_default()
                .extend(chunks.iter().cloned());
        }
    }
    if truth != named {
        return Err(format!(
            "reported chunk conflicts at {} but the shared chunks are {}",
            show(&named),
            show(&truth)
        ));
    }
    let truth = meta_conflicts(ours, between);
    let mut named = MetaConflicts::new();
    for c in reported {
        let Some(label) = label(&c.kind) else {
            continue;
        };
        if let ConflictKind::ChunksWrittenToChangedArray { chunks, total, .. } = &c.kind {
            let wrote: Vec<Vec<u64>> = ours
                .arrays
                .get(&c.path)
                .map(|a| a.coords().take(MAX_LISTED_CHUNKS).collect())
                .unwrap_or_default();
            let count = ours.arrays.get(&c.path).map_or(0, |a| a.chunks.len());
            if *chunks != wrote || *total != count {
                return Err(format!(
                    "{}: {label} names chunks {chunks:?} ({total} in all) but the change wrote {wrote:?} ({count})",
                    c.path
                ));
            }
        }
        named.insert((c.path.clone(), label));
    }
    if truth != named {
        return Err(format!(
            "reported metadata conflicts {} but the true ones are {}",
            show_meta(&named),
            show_meta(&truth)
        ));
    }
    Ok(())
}

/// Whether chunks of `path` that both touch are a chunk double update. Not
/// when they resized or deleted the array and we wrote to it without
/// creating it: that is the "written to resized/deleted" conflict, which
/// names all our chunks; nor when we delete it (a delete writes no chunk).
fn reported_as_chunks(ours: &Footprint, theirs: &Footprint, path: &ArrayPath) -> bool {
    use MetaChange::{Create, Delete, Update};
    let (Some(a), Some(b)) = (ours.arrays.get(path), theirs.arrays.get(path)) else {
        return false;
    };
    let changed = matches!(b.meta, Some(Update(_) | Delete));
    let created = matches!(a.meta, Some(Create(_)));
    (!changed || created) && !matches!(a.meta, Some(Delete))
}

/// Metadata conflicts: per array, what collided.
pub type MetaConflicts = BTreeSet<(ArrayPath, &'static str)>;

/// The label of a metadata conflict kind (`None` for a chunk double update).
fn label(kind: &ConflictKind) -> Option<&'static str> {
    Some(match kind {
        ConflictKind::ChunkDoubleUpdate { .. } => return None,
        ConflictKind::ArrayCreatedTwice => "created twice",
        ConflictKind::MetadataDoubleUpdate => "metadata double update",
        ConflictKind::ChunksWrittenToChangedArray { deleted: false, .. } => "written to resized",
        ConflictKind::ChunksWrittenToChangedArray { deleted: true, .. } => "written to deleted",
        ConflictKind::DeleteOfUpdatedArray => "delete of updated",
        ConflictKind::MetadataUpdateOfDeletedArray => "update of deleted",
    })
}

/// `/a metadata double update; /b written to resized` (`nothing` when empty).
pub fn show_meta(m: &MetaConflicts) -> String {
    if m.is_empty() {
        return "nothing".into();
    }
    let parts: Vec<String> = m.iter().map(|(p, l)| format!("{p} {l}")).collect();
    parts.join("; ")
}

/// The metadata conflicts (DESIGN 2.2, commit rule point 4) of `ours`
/// with the commits `between`, by brute force over their footprints:
/// created twice; changed twice; changed after a delete; deleted after a
/// write or change; chunks written (to an array we did not create) after
/// it was resized or deleted.
pub fn meta_conflicts(ours: &Footprint, between: &[&CommitRecord]) -> MetaConflicts {
    use MetaChange::{Create, Delete, Update};
    let mut out = MetaConflicts::new();
    for rec in between {
        for (path, a) in &ours.arrays {
            let Some(b) = rec.footprint.arrays.get(path) else {
                continue;
            };
            let mut add = |l: &'static str| {
                out.insert((path.clone(), l));
            };
            let (we_wrote, they_wrote) = (!a.chunks.is_empty(), !b.chunks.is_empty());
            match (&a.meta, &b.meta) {
                (Some(Create(_)), Some(Create(_))) => add("created twice"),
                (Some(Update(_)), Some(Update(_))) => add("metadata double update"),
                (Some(Update(_)), Some(Delete)) => add("update of deleted"),
                (Some(Delete), Some(Update(_) | Create(_))) => add("delete of updated"),
                (Some(Delete), None) if they_wrote => add("delete of updated"),
                _ => {}
            }
            if we_wrote && !matches!(a.meta, Some(Create(_))) {
                match b.meta {
                    Some(Update(_)) => add("written to resized"),
                    Some(Delete) => add("written to deleted"),
                    _ => {}
                }
            }
        }
    }
    out
}

/// Computes the contents of every commit of a chain from the attempts
/// that produced them.
pub struct Model<'a> {
    records: &'a BTreeMap<CommitId, CommitRecord>,
    attempts: &'a BTreeMap<String, Attempt>,
    memo: BTreeMap<CommitId, Contents>,
}

impl<'a> Model<'a> {
    /// A model over landed records and the attempts, keyed by message.
    pub fn new(
        records: &'a BTreeMap<CommitId, CommitRecord>,
        attempts: &'a BTreeMap<String, Attempt>,
    ) -> Self {
        Model {
            records,
            attempts,
            memo: BTreeMap::new(),
        }
    }

    /// The expected contents at `commit`.
    pub fn contents(&mut self, commit: CommitId) -> Result<Contents, String> {
        if let Some(c) = self.memo.get(&commit) {
            return Ok(c.clone());
        }
        let rec = self
            .records
            .get(&commit)
            .ok_or_else(|| format!("model: no record for {commit}"))?;
        let mut contents = match rec.parent {
            Some(p) => self.contents(p)?,
            None => Contents::new(),
        };
        // Arrays that appear take their fill value; an array whose shape
        // changed keeps the elements inside both shapes, and the new ones
        // read as the fill value (a shrink forgets what it cut off, so
        // growing again does not bring it back).
        let parent_arrays = rec
            .parent
            .and_then(|p| self.records.get(&p))
            .map(|r| &r.arrays);
        for (path, meta) in &rec.arrays {
            let size = meta.dtype.size();
            let elements = meta.shape.iter().product::<u64>() as usize;
            let old = parent_arrays.and_then(|a| a.get(path));
            let kept = match (old, contents.get(path)) {
                (Some(old), Some(_)) if old.shape == meta.shape => continue,
                (Some(old), Some(buf)) if old.dtype == meta.dtype => Some((old, buf)),
                _ => None,
            };
            let mut fresh = meta.fill_value.repeat(elements);
            if let Some((old, buf)) = kept {
                let both: Vec<u64> = old
                    .shape
                    .iter()
                    .zip(&meta.shape)
                    .map(|(a, b)| *a.min(b))
                    .collect();
                let zero = vec![0; both.len()];
                copy_box(
                    buf,
                    &old.shape,
                    &zero,
                    &mut fresh,
                    &meta.shape,
                    &zero,
                    &both,
                    size,
                );
            }
            contents.insert(path.clone(), fresh);
        }
        contents.retain(|p, _| rec.arrays.contains_key(p));
        if let Some(attempt) = self.attempts.get(&rec.message) {
            // Chunks are written on the base's grid: a write that landed on
            // another shape (over a resize) has no meaning to model.
            let base_arrays = self.records.get(&attempt.base).map(|b| &b.arrays);
            for (path, change) in &rec.footprint.arrays {
                let (Some(now), Some(then)) =
                    (rec.arrays.get(path), base_arrays.and_then(|a| a.get(path)))
                else {
                    continue;
                };
                if !change.chunks.is_empty() && change.meta.is_none() && now.shape != then.shape {
                    return Err(format!(
                        "{commit} ({:?}) wrote {path} on the shape {:?} of its base {} but landed on the shape {:?}",
                        rec.message, then.shape, attempt.base, now.shape
                    ));
                }
            }
            let base = self.contents(attempt.base)?;
            let base_arrays = self.records.get(&attempt.base).map(|b| b.arrays.clone());
            apply_chunks(
                rec,
                attempt,
                (&base, &base_arrays.unwrap_or_default()),
                &mut contents,
            );
        } else if !rec.footprint.arrays.values().all(|c| c.chunks.is_empty()) {
            return Err(format!("{commit} ({:?}) was never attempted", rec.message));
        }
        self.memo.insert(commit, contents.clone());
        Ok(contents)
    }
}

/// For every chunk the landed commit wrote: the base's chunk patched with
/// the attempt's writes. A chunk of an array the attempt resized holds what
/// every shape the resizes went through kept of the base (the fill value
/// elsewhere), then the writes.
fn apply_chunks(
    rec: &CommitRecord,
    attempt: &Attempt,
    (base, base_arrays): (&Contents, &BTreeMap<ArrayPath, ArrayMeta>),
    out: &mut Contents,
) {
    for (path, change) in &rec.footprint.arrays {
        let Some(meta) = rec.arrays.get(path) else {
            continue;
        };
        let Some(dst) = out.get_mut(path) else {
            continue;
        };
        let shapes: Vec<&Vec<u64>> = attempt
            .resizes
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, s)| s)
            .collect();
        for coord in change.coords() {
            let chunk = chunk_region(&coord, meta);
            match (base.get(path), base_arrays.get(path)) {
                (Some(src), Some(then)) if !shapes.is_empty() => {
                    cut_chunk(src, &then.shape, &shapes, dst, meta, &chunk)
                }
                (Some(src), _) => copy_region(src, dst, meta, &chunk),
                (None, _) => {}
            }
            for w in attempt.writes.iter().filter(|w| &w.path == path) {
                if let Some(part) = w.region.intersect(&chunk) {
                    let from = part.relative_to(&w.region);
                    let origin: Vec<u64> = from.0.iter().map(|s| s.lo).collect();
                    let at: Vec<u64> = part.0.iter().map(|s| s.lo).collect();
                    copy_box(
                        &w.data,
                        &w.region.shape(),
                        &origin,
                        dst,
                        &meta.shape,
                        &at,
                        &part.shape(),
                        meta.dtype.size(),
                    );
                }
            }
        }
    }
}

/// Sets `chunk` of `dst` (of `meta`'s shape) to what survives of the base
/// `src` (of shape `then`) through every shape in `shapes`: the elements
/// inside all of them, the fill value elsewhere.
fn cut_chunk(
    src: &[u8],
    then: &[u64],
    shapes: &[&Vec<u64>],
    dst: &mut [u8],
    meta: &ArrayMeta,
    chunk: &Region,
) {
    let size = meta.dtype.size();
    let zero = vec![0; chunk.rank()];
    let fill = meta.fill_value.repeat(chunk.elements() as usize);
    let at: Vec<u64> = chunk.0.iter().map(|s| s.lo).collect();
    copy_box(
        &fill,
        &chunk.shape(),
        &zero,
        dst,
        &meta.shape,
        &at,
        &chunk.shape(),
        size,
    );
    let kept: Vec<Span> = (0..chunk.rank())
        .map(|d| {
            let edge = shapes
                .iter()
                .map(|s| s[d])
                .fold(then[d].min(meta.shape[d]), u64::min);
            Span {
                lo: chunk.0[d].lo,
                hi: chunk.0[d].hi.min(edge).max(chunk.0[d].lo),
            }
        })
        .collect();
    if kept.iter().any(|s| s.hi == s.lo) {
        return;
    }
    let kept = Region(kept);
    let at: Vec<u64> = kept.0.iter().map(|s| s.lo).collect();
    copy_box(src, then, &at, dst, &meta.shape, &at, &kept.shape(), size);
}

fn copy_region(src: &[u8], dst: &mut [u8], meta: &ArrayMeta, region: &Region) {
    if src.len() != dst.len() {
        return;
    }
    let at: Vec<u64> = region.0.iter().map(|s| s.lo).collect();
    copy_box(
        src,
        &meta.shape,
        &at,
        dst,
        &meta.shape,
        &at,
        &region.shape(),
        meta.dtype.size(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::{BranchName, DType};

    fn path() -> ArrayPath {
        ArrayPath::new("/t").unwrap()
    }

    fn meta(len: u64) -> ArrayMeta {
        ArrayMeta::new(vec![len], vec![10], DType::I32, 0.0).unwrap()
    }

    fn resize(len: u64) -> Footprint {
        let mut f = Footprint::new();
        f.set_meta(&path(), &meta(len), MetaChange::Update(meta(len)));
        f
    }

    fn writes(region: &str) -> Footprint {
        let mut f = Footprint::new();
        f.add_region(&path(), &meta(30), &region.parse().unwrap());
        f
    }

    fn record(footprint: Footprint) -> CommitRecord {
        CommitRecord {
            id: CommitId(2),
            parent: Some(CommitId(1)),
            base: Some(CommitId(1)),
            branch: BranchName::new("main").unwrap(),
            height: 2,
            deltas: vec![],
            footprint,
            arrays: BTreeMap::new(),
            message: String::new(),
            author: String::new(),
            time: 0,
            rebased_over: 0,
            checkpoint: None,
        }
    }

    fn conflict(kind: ConflictKind) -> Conflict {
        Conflict { path: path(), kind }
    }

    #[test]
    fn metadata_conflicts_are_found_by_brute_force() {
        let theirs = record(resize(40));
        let both = meta_conflicts(&resize(20), &[&theirs]);
        assert_eq!(show_meta(&both), "/t metadata double update");
        let wrote = meta_conflicts(&writes("0:20"), &[&theirs]);
        assert_eq!(show_meta(&wrote), "/t written to resized");
        // A resize over chunk writes collides with nothing.
        assert!(meta_conflicts(&resize(20), &[&record(writes("0:20"))]).is_empty());
    }

    #[test]
    fn metadata_conflicts_must_be_named_exactly() {
        let theirs = record(resize(40));
        let ours = writes("0:20");
        let right = conflict(ConflictKind::ChunksWrittenToChangedArray {
            chunks: vec![vec![0], vec![1]],
            total: 2,
            deleted: false,
        });
        assert!(check_conflicts(&ours, &[&theirs], &[right]).is_ok());
        // Missing, wrongly listed, or invented kinds are refused.
        assert!(check_conflicts(&ours, &[&theirs], &[]).is_err());
        let short = conflict(ConflictKind::ChunksWrittenToChangedArray {
            chunks: vec![vec![0]],
            total: 1,
            deleted: false,
        });
        assert!(check_conflicts(&ours, &[&theirs], &[short]).is_err());
        let invented = conflict(ConflictKind::MetadataDoubleUpdate);
        assert!(check_conflicts(&ours, &[&theirs], &[invented]).is_err());
    }

    #[test]
    fn a_resize_keeps_the_overlap_and_forgets_the_rest() {
        let mut records = BTreeMap::new();
        let mut at = |id: u64, len: Option<u64>| {
            let mut r = record(Footprint::new());
            r.id = CommitId(id);
            r.parent = id.checked_sub(1).map(CommitId);
            r.arrays = len.map(|l| (path(), meta(l))).into_iter().collect();
            r.message = format!("c{id}");
            records.insert(CommitId(id), r);
        };
        at(0, None);
        at(1, Some(30));
        at(2, Some(25));
        at(3, Some(30));
        let mut data = vec![0u8; 30 * 4];
        data.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8 + 1);
        let attempts = BTreeMap::from([(
            "c1".to_string(),
            Attempt {
                base: CommitId(0),
                resizes: Vec::new(),
                writes: vec![Write {
                    path: path(),
                    region: "0:30".parse().unwrap(),
                    data: data.clone(),
                }],
                footprint: writes("0:30"),
                mode: CommitMode::Strict,
            },
        )]);
        // C1 writes every element (its footprint is the attempt's).
        records.get_mut(&CommitId(1)).unwrap().footprint = writes("0:30");
        let mut model = Model::new(&records, &attempts);
        assert_eq!(model.contents(CommitId(1)).unwrap()[&path()], data);
        assert_eq!(model.contents(CommitId(2)).unwrap()[&path()], data[..100]);
        let regrown = &model.contents(CommitId(3)).unwrap()[&path()];
        assert_eq!(regrown[..100], data[..100]);
        assert!(regrown[100..].iter().all(|&b| b == 0));
    }
}
