//! The commit rule (DESIGN 2.2): validate, check the base is on the
//! branch, detect conflicts through the branch's index, resolve them, land.

use roaring::RoaringTreemap;
use std::collections::{BTreeMap, BTreeSet};

use floe_protocol::footprint::MAX_LISTED_CHUNKS;
use floe_protocol::region::coord_of;
use floe_protocol::{
    ArrayChange, ArrayMeta, ArrayPath, BranchName, CommitId, CommitMode, CommitRecord,
    CommitRequest, Conflict, ConflictKind, FloeError, Footprint, MetaChange, ObjectId, Outcome,
    Reply, RepoName, Solver,
};

use super::index::BranchIndex;
use super::repo::Repo;
use super::{Config, State};

/// A change to land on a branch: a non-cooperative commit or a committed
/// cooperative session.
pub(super) struct Change {
    /// The branch to advance.
    pub(super) branch: BranchName,
    /// The commit the change was made against.
    pub(super) base: CommitId,
    /// What it touches.
    pub(super) footprint: Footprint,
    /// Its delta manifests.
    pub(super) deltas: Vec<ObjectId>,
    /// Commit message.
    pub(super) message: String,
    /// Author.
    pub(super) author: String,
    /// What to do if the branch moved.
    pub(super) mode: CommitMode,
}

impl State {
    /// `Command::Commit`.
    pub(super) fn commit(&mut self, request: &CommitRequest) -> Outcome {
        let change = Change {
            branch: request.branch.clone(),
            base: request.base,
            footprint: request.footprint.clone(),
            deltas: request.deltas.clone(),
            message: request.message.clone(),
            author: request.author.clone(),
            mode: request.mode,
        };
        self.commit_change(&request.repo, change)
    }

    /// Runs the commit rule on `change` and lands it if it may.
    pub(super) fn commit_change(&mut self, repo_name: &RepoName, mut change: Change) -> Outcome {
        let repo = self.repo(repo_name)?;
        let tip = repo.tip(&change.branch)?;
        validate(&repo.commit(change.base)?.arrays, &change.footprint)?;
        if change.footprint.chunk_count() > 0 && change.deltas.is_empty() {
            return Err(invalid(
                "chunks are written but no delta manifest holds them",
            ));
        }
        let mut rebased_over = 0;
        if change.base != tip {
            let CommitMode::Rebase { solver } = change.mode else {
                return Err(FloeError::OutOfDate { tip });
            };
            let span = span_since_base(repo, &change.branch, change.base, tip)?;
            let index = repo.index(&change.branch)?;
            let found = detect_indexed(&self.config, index, &change.footprint, span);
            rebased_over = u32::try_from(span.distance()).unwrap_or(u32::MAX);
            change.footprint = resolve(&self.config, change.footprint, &found, solver, tip)?;
        }
        let time = self.time;
        let commit = land(self.repo_mut(repo_name)?, change, tip, rebased_over, time)?;
        Ok(Reply::Committed {
            commit,
            parent: tip,
            rebased_over,
        })
    }

    /// `Query::CanFastForward`: the commit rule's detection, without
    /// landing.
    pub(super) fn can_fast_forward(
        &self,
        repo_name: &RepoName,
        branch: &BranchName,
        base: CommitId,
        footprint: &Footprint,
    ) -> Outcome {
        let repo = self.repo(repo_name)?;
        let tip = repo.tip(branch)?;
        validate(&repo.commit(base)?.arrays, footprint)?;
        let conflicts = if base == tip {
            Vec::new()
        } else {
            let span = span_since_base(repo, branch, base, tip)?;
            let index = repo.index(branch)?;
            detect_indexed(&self.config, index, footprint, span).conflicts(footprint)
        };
        Ok(Reply::FastForward { tip, conflicts })
    }
}

fn invalid(why: impl Into<String>) -> FloeError {
    FloeError::InvalidChange { why: why.into() }
}

/// Step 1: the footprint must make sense against the base commit's arrays.
pub(super) fn validate(
    arrays: &BTreeMap<ArrayPath, ArrayMeta>,
    footprint: &Footprint,
) -> Result<(), FloeError> {
    for (path, change) in &footprint.arrays {
        let meta = target_meta(arrays, path, change)?;
        let grid = meta.grid();
        if change.grid != grid {
            return Err(invalid(format!(
                "{path}: footprint grid {:?} is not the array's chunk grid {grid:?}",
                change.grid
            )));
        }
        if let Some(max) = change.chunks.max().filter(|&m| m >= meta.chunk_count()) {
            return Err(invalid(format!(
                "{path}: chunk index {max} is outside the chunk grid {grid:?}"
            )));
        }
    }
    Ok(())
}

/// The metadata a change's chunk indices refer to, after checking the
/// change against the array as it is at the base.
fn target_meta<'a>(
    arrays: &'a BTreeMap<ArrayPath, ArrayMeta>,
    path: &ArrayPath,
    change: &'a ArrayChange,
) -> Result<&'a ArrayMeta, FloeError> {
    let at_base = arrays.get(path);
    let unknown = || FloeError::UnknownArray { path: path.clone() };
    match (&change.meta, at_base) {
        (Some(MetaChange::Create(_)), Some(_)) => Err(invalid(format!(
            "cannot create {path}: it already exists at the base"
        ))),
        (Some(MetaChange::Create(meta)), None) => {
            meta.validate().map_err(|e| FloeError::geometry(path, e))?;
            Ok(meta)
        }
        (Some(MetaChange::Update(meta)), Some(old)) => {
            meta.validate().map_err(|e| FloeError::geometry(path, e))?;
            check_update(path, old, meta)?;
            Ok(meta)
        }
        (Some(MetaChange::Delete), Some(old)) if change.chunks.is_empty() => Ok(old),
        (Some(MetaChange::Delete), Some(_)) => Err(invalid(format!(
            "{path}: a change cannot both delete the array and write its chunks"
        ))),
        (None, Some(old)) => Ok(old),
        (_, None) => Err(unknown()),
    }
}

/// An update may resize an array or change its fill value or codec, not
/// reinterpret its existing chunks.
fn check_update(path: &ArrayPath, old: &ArrayMeta, new: &ArrayMeta) -> Result<(), FloeError> {
    if new.dtype != old.dtype {
        return Err(FloeError::DTypeMismatch {
            path: path.clone(),
            expected: old.dtype,
            got: new.dtype,
        });
    }
    if new.chunk_shape != old.chunk_shape {
        return Err(invalid(format!(
            "{path}: an update cannot change the chunk shape {:?} to {:?}",
            old.chunk_shape, new.chunk_shape
        )));
    }
    Ok(())
}

/// The heights a rebase spans: the commits since the base are those of
/// the tip's chain above `base` and up to `tip`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Span {
    /// The base's height.
    base: u64,
    /// The tip's height.
    tip: u64,
}

impl Span {
    /// The base's height: the commits since the base are those above it.
    #[cfg(test)]
    pub(super) fn base_height(self) -> u64 {
        self.base
    }

    /// How many commits landed since the base.
    fn distance(self) -> u64 {
        self.tip - self.base
    }
}

/// Step 3's precondition: `base` (which differs from `tip`) must be an
/// ancestor of the branch's tip. There is no window: any base on the chain
/// is accepted, and checking costs O(log distance) hops, not a walk.
pub(super) fn span_since_base(
    repo: &Repo,
    branch: &BranchName,
    base: CommitId,
    tip: CommitId,
) -> Result<Span, FloeError> {
    let base_height = repo.commit(base)?.height;
    let tip_height = repo.commit(tip)?.height;
    let on_chain = base_height < tip_height && repo.ancestor_at(tip, base_height)? == Some(base);
    if !on_chain {
        return Err(FloeError::BaseNotOnBranch {
            base,
            branch: branch.clone(),
        });
    }
    Ok(Span {
        base: base_height,
        tip: tip_height,
    })
}

/// Step 4's detection through the branch's index, with the planted bugs
/// that break it.
fn detect_indexed(config: &Config, index: &BranchIndex, ours: &Footprint, span: Span) -> Detection {
    #[cfg(feature = "planted-bugs")]
    if config.bugs.skip_conflict_check {
        return Detection::default();
    }
    #[allow(unused_mut)]
    let mut after = span.base;
    // Only the tip's own writes: those at the tip's height.
    #[cfg(feature = "planted-bugs")]
    if config.bugs.check_only_tip {
        after = after.max(span.tip - 1);
    }
    let _ = config;
    index.detect(ours, after)
}

/// The reference walk the index replaces: the commits on the branch after
/// `base`, tip first, in O(distance). `base` must differ from `tip`.
#[cfg(test)]
pub(super) fn collect_since_base<'r>(
    repo: &'r Repo,
    branch: &BranchName,
    base: CommitId,
    tip: CommitId,
) -> Result<Vec<&'r CommitRecord>, FloeError> {
    let not_on_branch = || FloeError::BaseNotOnBranch {
        base,
        branch: branch.clone(),
    };
    let base_height = repo.commit(base)?.height;
    let mut current = repo.commit(tip)?;
    let Some(distance) = current.height.checked_sub(base_height).filter(|&d| d > 0) else {
        return Err(not_on_branch());
    };
    let mut since = Vec::with_capacity(distance as usize);
    for _ in 0..distance {
        since.push(current);
        let parent = current.parent.ok_or_else(not_on_branch)?;
        current = repo.commit(parent)?;
    }
    if current.id != base {
        return Err(not_on_branch());
    }
    Ok(since)
}

/// What collided between our footprint and the commits since the base.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Detection {
    /// Chunks we share with any of them, per array, as indices in our grid.
    pub(super) shared: BTreeMap<ArrayPath, RoaringTreemap>,
    /// Every other kind of conflict, deduplicated, per array, in the order
    /// a walk from the tip meets them.
    pub(super) other: BTreeMap<ArrayPath, Vec<ConflictKind>>,
}

impl Detection {
    fn is_empty(&self) -> bool {
        self.shared.is_empty() && self.other.is_empty()
    }

    /// One entry per array and kind; chunk double updates aggregated over
    /// all commits, listed in row-major order.
    pub(super) fn conflicts(&self, ours: &Footprint) -> Vec<Conflict> {
        let paths: BTreeSet<&ArrayPath> = self.shared.keys().chain(self.other.keys()).collect();
        let mut out = Vec::new();
        for path in paths {
            for kind in self.other.get(path).into_iter().flatten() {
                out.push(Conflict {
                    path: path.clone(),
                    kind: kind.clone(),
                });
            }
            let grid = ours.arrays.get(path).map(|c| c.grid.as_slice());
            if let (Some(shared), Some(grid)) = (self.shared.get(path), grid) {
                let chunks = shared
                    .iter()
                    .take(MAX_LISTED_CHUNKS)
                    .map(|i| coord_of(i, grid))
                    .collect();
                out.push(Conflict {
                    path: path.clone(),
                    kind: ConflictKind::ChunkDoubleUpdate {
                        chunks,
                        total: shared.len(),
                    },
                });
            }
        }
        out
    }
}

/// The reference detection the index replaces: `conflicts_with` against
/// every commit since the base, O(sum of their footprints).
#[cfg(test)]
pub(super) fn detect(ours: &Footprint, since: &[&CommitRecord]) -> Detection {
    let mut found = Detection::default();
    for theirs in since {
        for conflict in ours.conflicts_with(&theirs.footprint) {
            let path = conflict.path;
            if let ConflictKind::ChunkDoubleUpdate { .. } = conflict.kind {
                let (Some(a), Some(b)) =
                    (ours.arrays.get(&path), theirs.footprint.arrays.get(&path))
                else {
                    continue;
                };
                let shared = shared_in_our_grid(a, b);
                if !shared.is_empty() {
                    *found.shared.entry(path).or_default() |= shared;
                }
            } else {
                let kinds = found.other.entry(path).or_default();
                if !kinds.contains(&conflict.kind) {
                    kinds.push(conflict.kind);
                }
            }
        }
    }
    found
}

/// The chunks both changes wrote, as indices in our grid.
#[cfg(test)]
fn shared_in_our_grid(ours: &ArrayChange, theirs: &ArrayChange) -> RoaringTreemap {
    if ours.grid == theirs.grid {
        return &ours.chunks & &theirs.chunks;
    }
    let inside =
        |c: &Vec<u64>| c.len() == ours.grid.len() && c.iter().zip(&ours.grid).all(|(a, g)| a < g);
    theirs
        .coords()
        .filter(inside)
        .map(|c| floe_protocol::region::linear_index(&c, &ours.grid))
        .filter(|&i| ours.chunks.contains(i))
        .collect()
}

/// Step 4's resolution: fail, or let the solver settle chunk double updates.
pub(super) fn resolve(
    config: &Config,
    mut footprint: Footprint,
    found: &Detection,
    solver: Solver,
    tip: CommitId,
) -> Result<Footprint, FloeError> {
    if found.is_empty() {
        return Ok(footprint);
    }
    // `theirs` gives up our shared chunks, but not those of an array we
    // resize: they are the resize's edge rewrite, and without it a later
    // grow would show what the shrink cut off.
    let resized = |path: &ArrayPath| footprint.arrays.get(path).is_some_and(|a| a.meta.is_some());
    #[allow(unused_mut)]
    let mut unsettled = solver == Solver::Theirs && found.shared.keys().any(resized);
    #[cfg(feature = "planted-bugs")]
    if config.bugs.theirs_drops_resize_chunks {
        unsettled = false;
    }
    let _ = config;
    if solver == Solver::Fail || !found.other.is_empty() || unsettled {
        return Err(FloeError::Conflict {
            tip,
            conflicts: found.conflicts(&footprint),
        });
    }
    if solver == Solver::Theirs {
        for (path, shared) in &found.shared {
            footprint.remove_chunks(path, shared);
        }
    }
    Ok(footprint)
}

/// Step 5: the new commit goes on top of `tip`, the branch moves to it and
/// its index records it.
fn land(
    repo: &mut Repo,
    mut change: Change,
    tip: CommitId,
    rebased_over: u32,
    time: u64,
) -> Result<CommitId, FloeError> {
    let parent = repo.commit(tip)?;
    let mut arrays = parent.arrays.clone();
    let height = parent.height + 1;
    change
        .footprint
        .arrays
        .retain(|_, c| !c.chunks.is_empty() || c.meta.is_some());
    for (path, c) in &change.footprint.arrays {
        match &c.meta {
            Some(MetaChange::Create(meta) | MetaChange::Update(meta)) => {
                arrays.insert(path.clone(), meta.clone());
            }
            Some(MetaChange::Delete) => {
                arrays.remove(path);
            }
            None => {}
        }
    }
    let id = repo.next_id();
    repo.push_commit(CommitRecord {
        id,
        parent: Some(tip),
        base: Some(change.base),
        branch: change.branch,
        height,
        deltas: change.deltas,
        footprint: change.footprint,
        arrays,
        message: change.message,
        author: change.author,
        time,
        rebased_over,
        checkpoint: None,
    })?;
    Ok(id)
}
