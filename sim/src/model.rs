//! The reference model: what every commit must contain and which commits
//! may land, computed independently of the coordinator from what the
//! clients attempted and plain sets of chunk coordinates.

use std::collections::{BTreeMap, BTreeSet};

use floe_protocol::region::{chunk_region, copy_box};
use floe_protocol::{
    ArrayMeta, ArrayPath, CommitId, CommitMode, CommitRecord, Conflict, ConflictKind, Footprint,
    Region, Solver,
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
    Ok(())
}

/// Whether the attempt may land over `between` with its solver.
pub fn may_land(attempt: &Attempt, between: &[&CommitRecord]) -> bool {
    let overlap = between
        .iter()
        .any(|r| !shared(&attempt.footprint, &r.footprint).is_empty());
    match attempt.mode {
        CommitMode::Strict => between.is_empty(),
        CommitMode::Rebase {
            solver: Solver::Fail,
        } => !overlap,
        CommitMode::Rebase { .. } => true,
    }
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
        // Arrays that appear or change shape take their fill value.
        for (path, meta) in &rec.arrays {
            let size = meta.shape.iter().product::<u64>() as usize * meta.dtype.size();
            let fresh = contents.get(path).map(|b| b.len() != size).unwrap_or(true);
            if fresh {
                contents.insert(
                    path.clone(),
                    meta.fill_value.repeat(size / meta.dtype.size()),
                );
            }
        }
        contents.retain(|p, _| rec.arrays.contains_key(p));
        if let Some(attempt) = self.attempts.get(&rec.message) {
            let base = self.contents(attempt.base)?;
            apply_chunks(rec, attempt, &base, &mut contents);
        } else if !rec.footprint.arrays.values().all(|c| c.chunks.is_empty()) {
            return Err(format!("{commit} ({:?}) was never attempted", rec.message));
        }
        self.memo.insert(commit, contents.clone());
        Ok(contents)
    }
}

/// For every chunk the landed commit wrote: the base's chunk patched with
/// the attempt's writes.
fn apply_chunks(rec: &CommitRecord, attempt: &Attempt, base: &Contents, out: &mut Contents) {
    for (path, change) in &rec.footprint.arrays {
        let Some(meta) = rec.arrays.get(path) else {
            continue;
        };
        let Some(dst) = out.get_mut(path) else {
            continue;
        };
        for coord in change.coords() {
            let chunk = chunk_region(&coord, meta);
            if let Some(src) = base.get(path) {
                copy_region(src, dst, meta, &chunk);
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
