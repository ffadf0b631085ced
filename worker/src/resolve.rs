//! Chunk resolution, pure: which object holds chunk `(array, coord)` at a
//! commit.
//!
//! A commit's content is its parent's content with its deltas applied, so a
//! chunk is found by walking back from the commit along `parent`:
//!
//! * a commit after which the array does not exist, or whose chunk grid for
//!   it does not contain the coordinate, answers "fill" (the array was
//!   deleted, not yet created, or shrunk past the chunk);
//! * a commit with a `checkpoint` answers definitively from it;
//! * a commit whose footprint says it wrote the chunk answers from its
//!   deltas (readers consult deltas only for chunks in the footprint: chunks
//!   dropped by the `theirs` solver stay in the manifest but not in it);
//! * a commit that created the array stops the walk: fill;
//! * the root stops the walk: fill.
//!
//! The walk never does IO. It runs over a [`History`], a cache of commit
//! records and manifests, and when something is missing it says what
//! ([`Need`]); the async shell fetches it, inserts it and asks again. The
//! simulation can drive the very same code.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use floe_protocol::{ArrayPath, CommitId, CommitRecord, FloeError, MetaChange, ObjectId};

use crate::format::Manifest;

/// Something the walk needs that the cache does not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Need {
    /// A commit record (from the coordinator).
    Record(CommitId),
    /// A delta manifest (`manifests/<id>`).
    Manifest(ObjectId),
    /// A checkpoint (`checkpoints/<id>`).
    Checkpoint(ObjectId),
}

/// Where a chunk's data comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// This chunk object.
    Chunk(ObjectId),
    /// Nothing was written: the fill value.
    Fill,
}

/// The answer of a walk: done, or something to fetch first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<T> {
    /// The walk finished.
    Done(T),
    /// Fetch this, insert it into the [`History`], and walk again.
    Need(Need),
}

/// A cache of commit records and manifests (delta manifests and checkpoints
/// are both [`Manifest`]s; ids are random 128-bit values, so one map holds
/// both). Unbounded: it lives as long as a session or reader.
#[derive(Clone, Debug, Default)]
pub struct History {
    records: HashMap<CommitId, CommitRecord>,
    manifests: HashMap<ObjectId, Arc<Manifest>>,
}

macro_rules! need {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(need) => return Ok(Step::Need(need)),
        }
    };
}

fn within(coord: &[u64], grid: &[u64]) -> bool {
    coord.len() == grid.len() && coord.iter().zip(grid).all(|(c, g)| c < g)
}

fn missing_chunk(rec: &CommitRecord, path: &ArrayPath, coord: &[u64]) -> FloeError {
    FloeError::Codec(format!(
        "commit {} lists chunk {coord:?} of {path} in its footprint but none of its {} delta manifests holds it",
        rec.id,
        rec.deltas.len()
    ))
}

impl History {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a commit record.
    pub fn insert_record(&mut self, record: CommitRecord) {
        self.records.insert(record.id, record);
    }

    /// Adds a manifest or checkpoint under its object id.
    pub fn insert_manifest(&mut self, id: ObjectId, manifest: Arc<Manifest>) {
        self.manifests.insert(id, manifest);
    }

    /// A cached commit record.
    pub fn record(&self, id: CommitId) -> Option<&CommitRecord> {
        self.records.get(&id)
    }

    /// A cached manifest.
    pub fn manifest(&self, id: ObjectId) -> Option<&Arc<Manifest>> {
        self.manifests.get(&id)
    }

    fn rec(&self, id: CommitId) -> Result<&CommitRecord, Need> {
        self.records.get(&id).ok_or(Need::Record(id))
    }

    fn delta(&self, id: ObjectId) -> Result<&Manifest, Need> {
        self.manifests
            .get(&id)
            .map(|m| m.as_ref())
            .ok_or(Need::Manifest(id))
    }

    fn checkpoint(&self, id: ObjectId) -> Result<&Manifest, Need> {
        self.manifests
            .get(&id)
            .map(|m| m.as_ref())
            .ok_or(Need::Checkpoint(id))
    }

    /// Finds the deltas entry for a chunk a commit wrote; the last delta
    /// listing it wins.
    fn in_deltas(
        &self,
        rec: &CommitRecord,
        path: &ArrayPath,
        coord: &[u64],
    ) -> Result<Result<Option<ObjectId>, Need>, FloeError> {
        for &d in rec.deltas.iter().rev() {
            match self.delta(d) {
                Ok(m) => {
                    if let Some(id) = m.get(path, coord) {
                        return Ok(Ok(Some(id)));
                    }
                }
                Err(need) => return Ok(Err(need)),
            }
        }
        Err(missing_chunk(rec, path, coord))
    }

    /// Where chunk `coord` of `path` comes from at commit `target`.
    pub fn resolve(
        &self,
        target: CommitId,
        path: &ArrayPath,
        coord: &[u64],
    ) -> Result<Step<Location>, FloeError> {
        let mut cur = target;
        loop {
            let rec = need!(self.rec(cur));
            let Some(meta) = rec.arrays.get(path) else {
                return Ok(Step::Done(Location::Fill));
            };
            if !within(coord, &meta.grid()) {
                return Ok(Step::Done(Location::Fill));
            }
            if let Some(cp) = rec.checkpoint {
                let m = need!(self.checkpoint(cp));
                return Ok(Step::Done(
                    m.get(path, coord).map_or(Location::Fill, Location::Chunk),
                ));
            }
            if let Some(change) = rec.footprint.arrays.get(path) {
                if change.wrote(coord) {
                    let found = need!(self.in_deltas(rec, path, coord)?);
                    return match found {
                        Some(id) => Ok(Step::Done(Location::Chunk(id))),
                        None => Err(missing_chunk(rec, path, coord)),
                    };
                }
                if matches!(change.meta, Some(MetaChange::Create(_))) {
                    return Ok(Step::Done(Location::Fill));
                }
            }
            match rec.parent {
                Some(parent) => cur = parent,
                None => return Ok(Step::Done(Location::Fill)),
            }
        }
    }

    /// The first commit record missing on the chain from `target` back to
    /// the nearest checkpointed commit or the root; `None` when all are
    /// cached. Lets a shell fetch the chain before a long walk.
    pub fn missing_on_chain(&self, target: CommitId) -> Option<CommitId> {
        let mut cur = target;
        loop {
            let rec = match self.rec(cur) {
                Ok(rec) => rec,
                Err(_) => return Some(cur),
            };
            if rec.checkpoint.is_some() {
                return None;
            }
            cur = rec.parent?;
        }
    }

    /// The full chunk map of commit `target`: every chunk written to every
    /// array that exists at it (what a checkpoint holds).
    pub fn materialize(&self, target: CommitId) -> Result<Step<Manifest>, FloeError> {
        let top = need!(self.rec(target));
        // Arrays still being walked, with the chunk grid bound seen so far.
        let mut open: BTreeMap<ArrayPath, Vec<u64>> = top
            .arrays
            .iter()
            .map(|(p, m)| (p.clone(), m.grid()))
            .collect();
        let mut out = Manifest::new();
        let mut cur = target;
        loop {
            let rec = need!(self.rec(cur));
            open.retain(|p, bound| match rec.arrays.get(p) {
                None => false,
                Some(m) => {
                    for (b, g) in bound.iter_mut().zip(m.grid()) {
                        *b = (*b).min(g);
                    }
                    bound.len() == m.shape.len()
                }
            });
            if open.is_empty() {
                break;
            }
            if let Some(cp) = rec.checkpoint {
                let m = need!(self.checkpoint(cp));
                for (p, bound) in &open {
                    for (coord, &id) in m.arrays.get(p).into_iter().flatten() {
                        if within(coord, bound) && out.get(p, coord).is_none() {
                            out.insert(p.clone(), coord.clone(), id);
                        }
                    }
                }
                break;
            }
            let mut created = Vec::new();
            for (p, bound) in &open {
                let Some(change) = rec.footprint.arrays.get(p) else {
                    continue;
                };
                for coord in change.coords() {
                    if within(&coord, bound) && out.get(p, &coord).is_none() {
                        match need!(self.in_deltas(rec, p, &coord)?) {
                            Some(id) => out.insert(p.clone(), coord, id),
                            None => return Err(missing_chunk(rec, p, &coord)),
                        }
                    }
                }
                if matches!(change.meta, Some(MetaChange::Create(_))) {
                    created.push(p.clone());
                }
            }
            for p in created {
                open.remove(&p);
            }
            match rec.parent {
                Some(parent) => cur = parent,
                None => break,
            }
        }
        Ok(Step::Done(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::{ArrayMeta, BranchName, DType, Footprint, Region};

    fn path() -> ArrayPath {
        ArrayPath::new("/t").unwrap()
    }

    fn meta(len: u64) -> ArrayMeta {
        ArrayMeta::new(vec![len], vec![10], DType::I32, 0.0).unwrap()
    }

    struct Chain {
        history: History,
        next_delta: u128,
    }

    impl Chain {
        /// C0: the empty root.
        fn new() -> Self {
            let mut history = History::new();
            history.insert_record(record(0, None, Footprint::new(), vec![], None));
            Chain {
                history,
                next_delta: 100,
            }
        }

        /// C0, then C1 creating `/t` of length 30 and writing all of it.
        fn created() -> Self {
            let mut ch = Chain::new();
            ch.commit(
                1,
                Some("0:30"),
                Some(MetaChange::Create(meta(30))),
                Some(30),
            );
            ch
        }

        /// Adds commit `id` writing `region` of `/t` (of length 30).
        fn write(&mut self, id: u64, region: &str) -> CommitId {
            self.commit(id, Some(region), None, Some(30))
        }

        /// Adds commit `id` resizing `/t` to `len`.
        fn resize(&mut self, id: u64, len: u64) -> CommitId {
            self.commit(id, None, Some(MetaChange::Update(meta(len))), Some(len))
        }

        /// Adds commit `id` on `parent`, writing `region` of `/t` into
        /// chunks whose object id is `id * 1000 + chunk index`, with an
        /// optional metadata change; `/t` has length `len` after it.
        fn commit(
            &mut self,
            id: u64,
            region: Option<&str>,
            change: Option<MetaChange>,
            len: Option<u64>,
        ) -> CommitId {
            let mut footprint = Footprint::new();
            let mut delta = Manifest::new();
            let m = meta(len.unwrap_or(30));
            if let Some(change) = change {
                footprint.set_meta(&path(), &m, change);
            }
            if let Some(r) = region {
                let r: Region = r.parse().unwrap();
                footprint.add_region(&path(), &m, &r);
                for c in r.chunks(&m) {
                    delta.insert(path(), c.clone(), ObjectId((id * 1000 + c[0]) as u128));
                }
            }
            let delta_id = ObjectId(self.next_delta);
            self.next_delta += 1;
            self.history.insert_manifest(delta_id, Arc::new(delta));
            self.history.insert_record(record(
                id,
                Some(id - 1),
                footprint,
                vec![delta_id],
                len.map(meta),
            ));
            CommitId(id)
        }

        fn at(&self, commit: u64, chunk: u64) -> Location {
            match self.history.resolve(CommitId(commit), &path(), &[chunk]) {
                Ok(Step::Done(l)) => l,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn record(
        id: u64,
        parent: Option<u64>,
        footprint: Footprint,
        deltas: Vec<ObjectId>,
        t: Option<ArrayMeta>,
    ) -> CommitRecord {
        CommitRecord {
            id: CommitId(id),
            parent: parent.map(CommitId),
            base: parent.map(CommitId),
            branch: BranchName::new("main").unwrap(),
            height: id,
            deltas,
            footprint,
            arrays: t.map(|m| (path(), m)).into_iter().collect(),
            message: String::new(),
            author: String::new(),
            time: 0,
            rebased_over: 0,
            checkpoint: None,
        }
    }

    fn chunk(commit: u64, index: u64) -> Location {
        Location::Chunk(ObjectId((commit * 1000 + index) as u128))
    }

    #[test]
    fn the_newest_writer_wins_and_unwritten_chunks_are_fill() {
        let mut ch = Chain::created();
        ch.write(2, "0:20");
        ch.write(3, "10:20");
        assert_eq!(ch.at(3, 0), chunk(2, 0));
        assert_eq!(ch.at(3, 1), chunk(3, 1));
        assert_eq!(ch.at(3, 2), chunk(1, 2));
        assert_eq!(ch.at(1, 1), chunk(1, 1));
        // Outside the grid, and before the array existed.
        assert_eq!(ch.at(3, 3), Location::Fill);
        assert_eq!(ch.at(0, 0), Location::Fill);
    }

    #[test]
    fn create_stops_the_walk() {
        let mut ch = Chain::created();
        ch.commit(2, None, Some(MetaChange::Delete), None);
        // Re-created without writing: older chunks must not show through.
        ch.commit(3, None, Some(MetaChange::Create(meta(30))), Some(30));
        ch.write(4, "10:20");
        assert_eq!(ch.at(4, 0), Location::Fill);
        assert_eq!(ch.at(4, 1), chunk(4, 1));
        assert_eq!(ch.at(2, 0), Location::Fill);
        // Even when the record of the commit before the create is missing,
        // nothing needs fetching: the walk stops at the create.
        ch.history.records.remove(&CommitId(2));
        assert_eq!(ch.at(4, 2), Location::Fill);
    }

    #[test]
    fn footprint_gates_the_deltas() {
        let mut ch = Chain::created();
        ch.write(2, "0:10");
        // C2's delta also lists chunk 1 (as when the `theirs` solver dropped
        // it from the footprint): readers must not see it.
        let d = ch.history.record(CommitId(2)).unwrap().deltas[0];
        let mut delta = (**ch.history.manifest(d).unwrap()).clone();
        delta.insert(path(), vec![1], ObjectId(999));
        ch.history.insert_manifest(d, Arc::new(delta));
        assert_eq!(ch.at(2, 0), chunk(2, 0));
        assert_eq!(ch.at(2, 1), chunk(1, 1));
    }

    #[test]
    fn a_checkpoint_answers_definitively() {
        let mut ch = Chain::created();
        ch.write(2, "0:10");
        ch.write(3, "20:30");
        // A checkpoint on C2 that holds only chunk 0 (pretend chunk 1 was never written).
        let mut cp = Manifest::new();
        cp.insert(path(), vec![0], ObjectId(42));
        ch.history.insert_manifest(ObjectId(7), Arc::new(cp));
        ch.history.records.get_mut(&CommitId(2)).unwrap().checkpoint = Some(ObjectId(7));
        // C1 is gone from the cache: the walk must not need it.
        ch.history.records.remove(&CommitId(1));
        assert_eq!(ch.at(3, 2), chunk(3, 2));
        assert_eq!(ch.at(3, 0), Location::Chunk(ObjectId(42)));
        assert_eq!(ch.at(3, 1), Location::Fill);
        assert_eq!(ch.history.missing_on_chain(CommitId(3)), None);
    }

    #[test]
    fn a_shrink_hides_the_chunks_cut_off() {
        let mut ch = Chain::created();
        ch.resize(2, 20);
        ch.resize(3, 30);
        assert_eq!(ch.at(3, 1), chunk(1, 1));
        assert_eq!(ch.at(3, 2), Location::Fill);
    }

    #[test]
    fn missing_records_and_manifests_are_asked_for() {
        let mut ch = Chain::created();
        ch.write(2, "0:10");
        let d1 = ch.history.record(CommitId(1)).unwrap().deltas[0];
        let r1 = ch.history.records.remove(&CommitId(1)).unwrap();
        let m1 = ch.history.manifests.remove(&d1).unwrap();
        let res = |h: &History| h.resolve(CommitId(2), &path(), &[2]).unwrap();
        assert_eq!(res(&ch.history), Step::Need(Need::Record(CommitId(1))));
        assert_eq!(ch.history.missing_on_chain(CommitId(2)), Some(CommitId(1)));
        ch.history.insert_record(r1);
        assert_eq!(res(&ch.history), Step::Need(Need::Manifest(d1)));
        ch.history.insert_manifest(d1, m1);
        assert_eq!(res(&ch.history), Step::Done(chunk(1, 2)));
    }

    #[test]
    fn a_footprint_without_a_delta_entry_is_an_error() {
        let mut ch = Chain::created();
        let d = ch.history.record(CommitId(1)).unwrap().deltas[0];
        ch.history.insert_manifest(d, Arc::new(Manifest::new()));
        assert!(ch.history.resolve(CommitId(1), &path(), &[0]).is_err());
    }

    #[test]
    fn materialize_builds_the_full_chunk_map() {
        let mut ch = Chain::created();
        ch.write(2, "10:20");
        ch.resize(3, 20);
        ch.resize(4, 40);
        ch.commit(5, Some("30:40"), None, Some(40));
        let Step::Done(m) = ch.history.materialize(CommitId(5)).unwrap() else {
            panic!("needs")
        };
        let got: Vec<(Vec<u64>, ObjectId)> = m.iter().map(|(_, c, id)| (c.clone(), id)).collect();
        let want = |c: u64, i: u64| (vec![i], ObjectId((c * 1000 + i) as u128));
        assert_eq!(got, vec![want(1, 0), want(2, 1), want(5, 3)]);
        // Materialized maps agree with chunk-by-chunk resolution.
        for i in 0..4 {
            let expected = m.get(&path(), &[i]).map_or(Location::Fill, Location::Chunk);
            assert_eq!(ch.at(5, i), expected);
        }
    }
}
