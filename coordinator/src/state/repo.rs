//! One repository: its commit records, branches and tags.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use floe_protocol::{
    BranchName, CommitId, CommitRecord, FloeError, Footprint, ObjectId, Outcome, Reply, RepoName,
    TagName,
};

/// The name of the branch every repo starts with.
pub(super) const MAIN: &str = "main";

/// A repository. Commit `Cn` is `commits[n]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Repo {
    pub(super) name: RepoName,
    pub(super) commits: Vec<CommitRecord>,
    pub(super) branches: BTreeMap<BranchName, CommitId>,
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
            branches: BTreeMap::from([(main, CommitId(0))]),
            tags: BTreeMap::new(),
        }
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
            .ok_or_else(|| FloeError::UnknownCommit {
                repo: self.name.clone(),
                commit: id,
            })
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
