//! A writer's view of one branch, pure: the base commit, the arrays as the
//! writer sees them (creates, resizes and deletes applied), the metadata
//! changes and the chunks written so far, and every decision about them —
//! what a resize drops, which edge chunks it must rewrite, which chunks a
//! grow after a shrink must blank, what the footprint is. `Session` and the
//! simulation's `Writer` both keep their changes in a [`View`].

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, CommitRecord, FloeError, Footprint, GeometryError, MetaChange, Region,
};

use crate::chunk::regrown_chunks;
use crate::data::meta_of;
use crate::format::Manifest;

/// One chunk a resize must rewrite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// An edge chunk a shrink left inside a chunk: rebuilt keeping what lies
    /// inside `shape`, the fill value past it.
    Cut {
        /// The array.
        path: ArrayPath,
        /// The chunk.
        coord: Vec<u64>,
        /// The array's shape right after the shrink.
        shape: Vec<u64>,
    },
    /// A chunk an earlier shrink of the view cut off that the base may
    /// still hold data for: the fill value.
    Fill {
        /// The array.
        path: ArrayPath,
        /// The chunk.
        coord: Vec<u64>,
    },
}

/// The chunks resizes must write, in order (later ones build on earlier
/// ones).
pub type Resized = Vec<Rewrite>;

/// Planted client bugs (simulation self-test only; see `floe-sim --list-bugs`).
#[cfg(feature = "planted-bugs")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientBugs {
    /// A shrink that ends inside a chunk does not rewrite the edge chunk,
    /// so a later grow shows what it cut off.
    pub forget_edge_rewrite: bool,
    /// A grow after a shrink in the same change does not blank the chunks
    /// the shrink cut off (the shrink-then-grow bug of issue 7).
    pub forget_regrow: bool,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct View {
    base: CommitRecord,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    changes: BTreeMap<ArrayPath, MetaChange>,
    pending: Manifest,
    /// The smallest shape each base array had in this view, per dimension,
    /// once it was resized: what a later grow must blank.
    min_shape: BTreeMap<ArrayPath, Vec<u64>>,
    #[cfg(feature = "planted-bugs")]
    bugs: ClientBugs,
}

impl View {
    /// Plants client bugs in this view's decisions.
    #[cfg(feature = "planted-bugs")]
    pub fn with_bugs(mut self, bugs: ClientBugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// A clean view of `base`.
    pub fn new(base: CommitRecord) -> Self {
        View {
            arrays: base.arrays.clone(),
            base,
            changes: BTreeMap::new(),
            pending: Manifest::new(),
            min_shape: BTreeMap::new(),
            #[cfg(feature = "planted-bugs")]
            bugs: ClientBugs::default(),
        }
    }

    /// The base commit.
    pub fn base(&self) -> &CommitRecord {
        &self.base
    }

    /// Every array as the view sees it.
    pub fn arrays(&self) -> &BTreeMap<ArrayPath, ArrayMeta> {
        &self.arrays
    }

    /// The chunks written and not yet committed.
    pub fn pending(&self) -> &Manifest {
        &self.pending
    }

    /// True when there is nothing to commit.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty() && self.changes.is_empty()
    }

    /// The metadata of `path` as the view sees it.
    pub fn meta(&self, path: &ArrayPath) -> Result<&ArrayMeta, FloeError> {
        meta_of(&self.arrays, path)
    }

    /// What the view touches: its metadata changes and chunks.
    pub fn footprint(&self) -> Footprint {
        let mut f = Footprint::new();
        for (path, change) in &self.changes {
            let meta = match change {
                MetaChange::Create(m) | MetaChange::Update(m) => Some(m),
                MetaChange::Delete => self.base.arrays.get(path),
            };
            if let Some(meta) = meta {
                f.set_meta(path, meta, change.clone());
            }
        }
        for (path, coord, _) in self.pending.iter() {
            if let Some(meta) = self.arrays.get(path) {
                f.add_chunk(path, meta, coord);
            }
        }
        f
    }

    /// Records chunks written (array, chunk coordinate, object id).
    pub fn add_chunks(
        &mut self,
        written: impl IntoIterator<Item = (ArrayPath, Vec<u64>, floe_protocol::ObjectId)>,
    ) {
        for (path, coord, id) in written {
            self.pending.insert(path, coord, id);
        }
    }

    /// Creates an array (a `Create` in the footprint).
    pub fn create_array(&mut self, path: &ArrayPath, meta: ArrayMeta) -> Result<(), FloeError> {
        meta.validate().map_err(|e| FloeError::geometry(path, e))?;
        if self.arrays.contains_key(path) {
            return Err(FloeError::InvalidChange {
                why: format!("cannot create {path}: it already exists"),
            });
        }
        if matches!(self.changes.get(path), Some(MetaChange::Delete)) {
            return Err(FloeError::InvalidChange {
                why: format!(
                    "cannot re-create {path} in the session that deletes it; commit the delete first"
                ),
            });
        }
        self.arrays.insert(path.clone(), meta.clone());
        self.changes.insert(path.clone(), MetaChange::Create(meta));
        Ok(())
    }

    /// Deletes an array (a `Delete` in the footprint; deleting an array
    /// created in this view just forgets it). Its pending chunks are dropped.
    pub fn delete_array(&mut self, path: &ArrayPath) -> Result<(), FloeError> {
        self.meta(path)?;
        self.drop_pending(path, |_| false);
        match self.changes.get(path) {
            Some(MetaChange::Create(_)) => {
                self.changes.remove(path);
            }
            _ => {
                self.changes.insert(path.clone(), MetaChange::Delete);
            }
        }
        self.arrays.remove(path);
        Ok(())
    }

    /// Resizes an array (an `Update` in the footprint; a `Create` stays a
    /// `Create`). Pending chunks outside the new grid are dropped. Returns
    /// the chunks the caller must write for the resize to hold: the edge
    /// chunks a shrink leaves inside a chunk (cut-off elements become the
    /// fill value, so a later grow shows the fill value, and the rewrite
    /// makes a concurrent write to them conflict), and, after a grow, the
    /// chunks an earlier shrink of this view cut off (the base may still
    /// hold data there).
    pub fn resize_array(
        &mut self,
        path: &ArrayPath,
        shape: Vec<u64>,
    ) -> Result<Resized, FloeError> {
        let old = self.meta(path)?.clone();
        if shape.len() != old.shape.len() {
            return Err(FloeError::geometry(
                path,
                GeometryError::RankMismatch {
                    expected: old.shape.len(),
                    got: shape.len(),
                },
            ));
        }
        let mut meta = old.clone();
        meta.shape = shape;
        meta.validate().map_err(|e| FloeError::geometry(path, e))?;
        let grid = meta.grid();
        self.drop_pending(path, |c| c.iter().zip(&grid).all(|(c, g)| c < g));
        let base = self.base.arrays.get(path).cloned();
        let shrunk = base
            .as_ref()
            .map(|b| self.note_min_shape(path, &b.shape, &meta.shape));
        let change = match self.changes.get(path) {
            Some(MetaChange::Create(_)) => Some(MetaChange::Create(meta.clone())),
            // Back to the base's metadata without ever cutting anything off:
            // no change at all. After a cut it stays an update, so that it
            // conflicts with a concurrent resize like any other.
            _ if base.as_ref() == Some(&meta) && shrunk == Some(false) => None,
            _ => Some(MetaChange::Update(meta.clone())),
        };
        match change {
            Some(c) => self.changes.insert(path.clone(), c),
            None => self.changes.remove(path),
        };
        self.arrays.insert(path.clone(), meta.clone());
        #[allow(unused_mut)]
        let mut cuts = cut_edges(&old, &meta);
        #[allow(unused_mut)]
        let mut fills = match (self.min_shape.get(path), base) {
            (Some(min), Some(base)) => regrown_chunks(&meta, min, &base.shape)
                .into_iter()
                .filter(|c| self.pending.get(path, c).is_none())
                .collect(),
            _ => Vec::new(),
        };
        #[cfg(feature = "planted-bugs")]
        {
            if self.bugs.forget_edge_rewrite {
                cuts.clear();
            }
            if self.bugs.forget_regrow {
                fills.clear();
            }
        }
        // Cuts first: a chunk both cut (an edge along one dimension) and
        // brought back (past the smallest shape along another) lies wholly
        // outside what survives, so its fill comes last.
        let cut = |coord| Rewrite::Cut {
            path: path.clone(),
            coord,
            shape: meta.shape.clone(),
        };
        let fill = |coord| Rewrite::Fill {
            path: path.clone(),
            coord,
        };
        Ok(cuts
            .into_iter()
            .map(cut)
            .chain(fills.into_iter().map(fill))
            .collect())
    }

    /// The commit landed as `record`: the view continues from it, clean.
    pub fn landed(&mut self, record: CommitRecord) {
        let view = View::new(record);
        #[cfg(feature = "planted-bugs")]
        let view = view.with_bugs(self.bugs);
        *self = view;
    }

    /// Moves the base to `record`, keeping the changes (after a "yes" to
    /// "can I fast forward?": nothing since the old base touched them).
    pub fn fast_forward(&mut self, record: CommitRecord) {
        let mut arrays = record.arrays.clone();
        for (path, change) in &self.changes {
            match change {
                MetaChange::Create(m) | MetaChange::Update(m) => {
                    arrays.insert(path.clone(), m.clone());
                }
                MetaChange::Delete => {
                    arrays.remove(path);
                }
            }
        }
        self.arrays = arrays;
        self.base = record;
    }

    /// Notes that commit `record` of the base was checkpointed.
    pub fn set_base_checkpoint(&mut self, record: &CommitRecord) {
        if self.base.id == record.id {
            self.base.checkpoint = record.checkpoint;
        }
    }

    fn drop_pending(&mut self, path: &ArrayPath, keep: impl Fn(&[u64]) -> bool) {
        if let Some(chunks) = self.pending.arrays.get_mut(path) {
            chunks.retain(|c, _| keep(c));
            if chunks.is_empty() {
                self.pending.arrays.remove(path);
            }
        }
    }

    /// Lowers the smallest shape seen for base array `path` to `shape`;
    /// returns whether it is now below `base_shape` along some dimension.
    fn note_min_shape(&mut self, path: &ArrayPath, base_shape: &[u64], shape: &[u64]) -> bool {
        let min = self
            .min_shape
            .entry(path.clone())
            .or_insert_with(|| base_shape.to_vec());
        for (m, n) in min.iter_mut().zip(shape) {
            *m = (*m).min(*n);
        }
        min.iter().zip(base_shape).any(|(m, b)| m < b)
    }
}

/// The chunks of `new`'s grid on an edge a shrink from `old` left inside a
/// chunk.
fn cut_edges(old: &ArrayMeta, new: &ArrayMeta) -> Vec<Vec<u64>> {
    let edges: Vec<Option<u64>> = (0..new.shape.len())
        .map(|d| {
            let (n, c) = (new.shape[d], new.chunk_shape[d]);
            (n < old.shape[d] && n % c != 0).then_some(n / c)
        })
        .collect();
    if edges.iter().all(Option::is_none) {
        return Vec::new();
    }
    Region::full(new)
        .chunks(new)
        .into_iter()
        .filter(|coord| coord.iter().zip(&edges).any(|(c, e)| Some(*c) == *e))
        .collect()
}
