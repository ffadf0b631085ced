//! One repository: its commit records, branches and tags.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use floe_protocol::{
    BranchName, CommitId, CommitRecord, FloeError, Footprint, ObjectId, Outcome, Reply, RepoName,
    TagName,
};

use super::index::BranchIndex;

/// The name of the branch every repo starts with.
pub(super) const MAIN: &str = "main";

/// A repository. Commit `Cn` is `commits[n]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Repo {
    pub(super) name: RepoName,
    /// Append only, through [`Repo::push_commit`].
    commits: Vec<CommitRecord>,
    /// `jumps[n]` is an ancestor of `Cn` (`C0` for the root): skew-binary
    /// jump pointers (Myers, "An applicative random-access stack", 1983),
    /// so that the ancestor of any commit at any height is found in
    /// O(log distance) hops without walking the chain.
    jumps: Vec<CommitId>,
    pub(super) branches: BTreeMap<BranchName, CommitId>,
    /// One conflict index per branch, for the chain ending at its tip.
    pub(super) indexes: BTreeMap<BranchName, BranchIndex>,
    pub(super) tags: BTreeMap<TagName, CommitId>,
}

impl Repo {
    /// A repo with the root commit `C0` and `main` pointing at it.
    pub(super) fn new(name: RepoName, time: u64) -> Self {
        let main = BranchName::new(MAIN).unwrap_or_else(|_| unreachable!("\"main\" is valid"));
        let root = CommitRecord {
            id: CommitId(0),
            parent: None,
            base: None,
            branch: main.clone(),
            height: 0,
            deltas: Vec::new(),
            footprint: Footprint::new(),
            arrays: BTreeMap::new(),
            message: "repository created".into(),
            author: String::new(),
            time,
            rebased_over: 0,
            checkpoint: None,
        };
        Repo {
            name,
            commits: vec![root],
            jumps: vec![CommitId(0)],
            indexes: BTreeMap::from([(main.clone(), BranchIndex::default())]),
            branches: BTreeMap::from([(main, CommitId(0))]),
            tags: BTreeMap::new(),
        }
    }

    /// Appends `record` (whose id must be [`Repo::next_id`] and whose
    /// parent must exist), moves its branch to it and records it in the
    /// branch's conflict index. O(footprint).
    pub(super) fn push_commit(&mut self, record: CommitRecord) -> Result<(), FloeError> {
        let parent = record.parent.unwrap_or(CommitId(0));
        let jump = self.next_jump(parent)?;
        let index = self.indexes.entry(record.branch.clone()).or_default();
        index.record(record.height, record.id, &record.footprint);
        self.branches.insert(record.branch.clone(), record.id);
        self.commits.push(record);
        self.jumps.push(jump);
        Ok(())
    }

    /// The jump pointer of a new child of `parent`: the parent's jump's
    /// jump when the parent's two jumps span equal distances, else the
    /// parent itself.
    fn next_jump(&self, parent: CommitId) -> Result<CommitId, FloeError> {
        let p = self.commit(parent)?.height;
        let j1 = self.jump(parent)?;
        let j2 = self.jump(j1)?;
        let (h1, h2) = (self.commit(j1)?.height, self.commit(j2)?.height);
        Ok(if p - h1 == h1 - h2 { j2 } else { parent })
    }

    fn jump(&self, id: CommitId) -> Result<CommitId, FloeError> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.jumps.get(i))
            .copied()
            .ok_or_else(|| self.unknown(id))
    }

    fn unknown(&self, commit: CommitId) -> FloeError {
        FloeError::UnknownCommit {
            repo: self.name.clone(),
            commit,
        }
    }

    /// The ancestor of `id` at `height` (`id` itself at its own height),
    /// or `None` when `height` is above it. O(log distance).
    pub(super) fn ancestor_at(
        &self,
        id: CommitId,
        height: u64,
    ) -> Result<Option<CommitId>, FloeError> {
        let mut current = id;
        loop {
            let record = self.commit(current)?;
            if record.height <= height {
                return Ok((record.height == height).then_some(current));
            }
            let jump = self.jump(current)?;
            current = match record.parent {
                _ if self.commit(jump)?.height >= height => jump,
                Some(parent) => parent,
                None => return Ok(None),
            };
        }
    }

    /// Planted bug `index_lost_on_restore`: every branch's index as if
    /// nothing had been written.
    #[cfg(feature = "planted-bugs")]
    pub(super) fn forget_indexes(&mut self) {
        for index in self.indexes.values_mut() {
            *index = BranchIndex::default();
        }
    }

    /// The conflict index of `branch`'s chain.
    pub(super) fn index(&self, branch: &BranchName) -> Result<&BranchIndex, FloeError> {
        self.indexes
            .get(branch)
            .ok_or_else(|| FloeError::UnknownBranch {
                repo: self.name.clone(),
                branch: branch.clone(),
            })
    }

    /// The conflict index of the chain ending at `at`: a copy of a
    /// branch's index when `at` is that branch's tip, else built by walking
    /// `at`'s chain once, down to the root. That walk is O(sum of the
    /// chain's footprints) but happens once, at branch creation; every
    /// commit afterwards updates the new index in O(its footprint).
    pub(super) fn index_at(&self, at: CommitId) -> Result<BranchIndex, FloeError> {
        let tip_of = self.branches.iter().find(|(_, &tip)| tip == at);
        if let Some((branch, _)) = tip_of {
            return self.index(branch).cloned();
        }
        let mut index = BranchIndex::default();
        let mut next = Some(at);
        while let Some(id) = next {
            let record = self.commit(id)?;
            index.record(record.height, record.id, &record.footprint);
            next = record.parent;
        }
        Ok(index)
    }

    /// The root commit's id.
    pub(super) fn root(&self) -> CommitId {
        CommitId(0)
    }

    /// The id the next landed commit gets.
    pub(super) fn next_id(&self) -> CommitId {
        CommitId(self.commits.len() as u64)
    }

    /// A commit record, or `UnknownCommit`.
    pub(super) fn commit(&self, id: CommitId) -> Result<&CommitRecord, FloeError> {
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.commits.get(i))
            .ok_or_else(|| self.unknown(id))
    }

    fn commit_mut(&mut self, id: CommitId) -> Result<&mut CommitRecord, FloeError> {
        let repo = self.name.clone();
        usize::try_from(id.0)
            .ok()
            .and_then(|i| self.commits.get_mut(i))
            .ok_or(FloeError::UnknownCommit { repo, commit: id })
    }

    /// A branch's tip, or `UnknownBranch`.
    pub(super) fn tip(&self, branch: &BranchName) -> Result<CommitId, FloeError> {
        self.branches
            .get(branch)
            .copied()
            .ok_or_else(|| FloeError::UnknownBranch {
                repo: self.name.clone(),
                branch: branch.clone(),
            })
    }

    /// `CreateBranch`.
    pub(super) fn create_branch(&mut self, branch: &BranchName, at: CommitId) -> Outcome {
        self.commit(at)?;
        if self.branches.contains_key(branch) {
            return Err(FloeError::BranchExists {
                repo: self.name.clone(),
                branch: branch.clone(),
            });
        }
        let index = self.index_at(at)?;
        self.indexes.insert(branch.clone(), index);
        self.branches.insert(branch.clone(), at);
        Ok(Reply::Done)
    }

    /// `CreateTag`: tags are immutable.
    pub(super) fn create_tag(&mut self, tag: &TagName, at: CommitId) -> Outcome {
        self.commit(at)?;
        if self.tags.contains_key(tag) {
            return Err(FloeError::TagExists {
                repo: self.name.clone(),
                tag: tag.clone(),
            });
        }
        self.tags.insert(tag.clone(), at);
        Ok(Reply::Done)
    }

    /// `RecordCheckpoint`: set once; the same id again is accepted.
    pub(super) fn record_checkpoint(&mut self, commit: CommitId, checkpoint: ObjectId) -> Outcome {
        let record = self.commit_mut(commit)?;
        match record.checkpoint {
            None => record.checkpoint = Some(checkpoint),
            Some(existing) if existing == checkpoint => {}
            Some(existing) => {
                return Err(FloeError::CheckpointExists {
                    commit,
                    checkpoint: existing,
                })
            }
        }
        Ok(Reply::Done)
    }

    /// `Refs`: every branch and tag.
    pub(super) fn refs(&self) -> Outcome {
        Ok(Reply::Refs {
            branches: self.branches.clone(),
            tags: self.tags.clone(),
        })
    }

    /// `Checkout`: the tip's record.
    pub(super) fn checkout(&self, branch: &BranchName) -> Outcome {
        self.get_commit(self.tip(branch)?)
    }

    /// `ResolveTag`: the tagged commit's record.
    pub(super) fn resolve_tag(&self, tag: &TagName) -> Outcome {
        let id = self
            .tags
            .get(tag)
            .copied()
            .ok_or_else(|| FloeError::UnknownTag {
                repo: self.name.clone(),
                tag: tag.clone(),
            })?;
        self.get_commit(id)
    }

    /// `GetCommit`.
    pub(super) fn get_commit(&self, id: CommitId) -> Outcome {
        Ok(Reply::Commit(Box::new(self.commit(id)?.clone())))
    }

    /// `Log`: up to `limit` records from the tip back, tip first.
    pub(super) fn log(&self, branch: &BranchName, limit: u32) -> Outcome {
        let mut out = Vec::new();
        let mut next = Some(self.tip(branch)?);
        while let Some(id) = next.filter(|_| out.len() < limit as usize) {
            let record = self.commit(id)?;
            next = record.parent;
            out.push(record.clone());
        }
        Ok(Reply::Log(out))
    }
}
