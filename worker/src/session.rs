//! Writer sessions and readers: the async shell around [`crate::chunk`] and
//! [`crate::resolve`] that talks to the coordinator and the object store.
//!
//! A [`Session`] is a non-cooperative writer's view of one branch: checked
//! out at a base commit, it collects metadata changes and chunk writes
//! (each chunk object is written to the store at once, so memory stays
//! bounded), then commits them as one delta manifest plus a
//! `Command::Commit`. A [`Reader`] reads any commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, CommitId, CommitMode, CommitRecord, CommitRequest, Conflict,
    Coordinator, FloeError, Footprint, ObjectId, Query, Region, Reply, RepoName,
};

use crate::client::Client;
use crate::data::ArrayData;
use crate::driver::{drive, Driven};
use crate::format::{Manifest, ObjectKind};
use crate::machine::{
    CheckpointOf, CheckpointTask, CommitSpec, CommitTask, PutTask, ReadSpec, ReadTask, Resized,
    SeedStep, View, WriteBase, WriteTask, Written,
};
use crate::resolve::{History, Need, Step};
use crate::store::Store;

/// An error for a reply that does not answer the request sent.
pub(crate) fn unexpected(what: &str, reply: &Reply) -> FloeError {
    FloeError::Codec(format!("unexpected reply to {what}: {reply:?}"))
}

/// Reads commits of one repo, caching commit records and manifests.
pub struct Reader<C: Coordinator> {
    client: Client<C>,
    store: Store,
    repo: RepoName,
    history: History,
}

impl<C: Coordinator + 'static> Reader<C> {
    /// A reader of `repo`, with an empty cache.
    pub fn new(coord: Arc<C>, store: Store, repo: RepoName) -> Self {
        Reader {
            client: Client::new(coord),
            store,
            repo,
            history: History::new(),
        }
    }

    /// The repo read.
    pub fn repo(&self) -> &RepoName {
        &self.repo
    }

    /// The store read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cache of records and manifests.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// A commit record, from the cache or the coordinator.
    pub async fn record(&mut self, commit: CommitId) -> Result<CommitRecord, FloeError> {
        if let Some(rec) = self.history.record(commit) {
            return Ok(rec.clone());
        }
        let q = Query::GetCommit {
            repo: self.repo.clone(),
            commit,
        };
        match self.client.query(q).await? {
            Reply::Commit(rec) if rec.id == commit => {
                self.history.insert_record((*rec).clone());
                Ok(*rec)
            }
            other => Err(unexpected("GetCommit", &other)),
        }
    }

    /// The full chunk map of `commit`: for every array that exists at it,
    /// the chunk object holding each chunk written and still inside its
    /// grid (chunks never written, or cut off by a shrink, are absent: they
    /// read as the fill value). The same walk a checkpoint materialises
    /// ([`History::materialize`]); commit records come from the cache or
    /// the coordinator, manifests and checkpoints from the store. An
    /// unknown commit is the coordinator's `UnknownCommit`.
    pub async fn chunk_map(&mut self, commit: CommitId) -> Result<Manifest, FloeError> {
        loop {
            match self.history.materialize(commit)? {
                Step::Done(manifest) => return Ok(manifest),
                Step::Need(Need::Record(c)) => {
                    self.record(c).await?;
                }
                Step::Need(Need::Manifest(id)) => {
                    let m = self.store.get_manifest(&self.repo, id).await?;
                    self.history.insert_manifest(id, Arc::new(m));
                }
                Step::Need(Need::Checkpoint(id)) => {
                    let m = self.store.get_checkpoint(&self.repo, id).await?;
                    self.history.insert_manifest(id, Arc::new(m));
                }
            }
        }
    }

    /// The chunk objects of array `path` at `commit`, by chunk coordinate
    /// (see [`Reader::chunk_map`]); empty when nothing was written, and an
    /// `UnknownArray` error when the array does not exist at `commit`.
    pub async fn chunks_of(
        &mut self,
        commit: CommitId,
        path: &ArrayPath,
    ) -> Result<BTreeMap<Vec<u64>, ObjectId>, FloeError> {
        let record = self.record(commit).await?;
        if !record.arrays.contains_key(path) {
            return Err(FloeError::UnknownArray { path: path.clone() });
        }
        let mut map = self.chunk_map(commit).await?;
        Ok(map.arrays.remove(path).unwrap_or_default())
    }

    /// Adds a record to the cache (e.g. one a checkout returned).
    pub fn remember(&mut self, record: CommitRecord) {
        self.history.insert_record(record);
    }

    /// Materialises `commit`'s chunk map into a checkpoint object and
    /// records it with the coordinator (`Command::RecordCheckpoint`): the
    /// [`CheckpointTask`] machine, run by the driver. Returns the object.
    pub async fn write_checkpoint(&mut self, commit: CommitId) -> Result<ObjectId, FloeError> {
        // A fetch per commit on the chain, and the record command.
        let caller = self.client.caller(commit.0 + 3);
        let history = std::mem::take(&mut self.history);
        let of = CheckpointOf::Commit(commit);
        let task = CheckpointTask::new(caller, rand::random(), self.repo.clone(), of, history);
        let coord = self.client.coordinator().clone();
        let task = drive(task, coord, Some(self.store.clone())).await?;
        self.client.learn(task.requester());
        let (result, history) = task.finish();
        self.history = history;
        result.map(|(_, id)| id)
    }

    /// Reads `region` of `path` at `commit`: the fill value where nothing
    /// was written.
    pub async fn read(
        &mut self,
        commit: CommitId,
        path: &ArrayPath,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        self.read_with(commit, path, None, region, &Manifest::new())
            .await
    }

    /// Reads `region` of `path` (with metadata `meta` when the caller knows
    /// better than the commit): chunks listed in `overlay` first, else as
    /// resolved at `commit` — the [`ReadTask`] machine, run by the driver.
    async fn read_with(
        &mut self,
        commit: CommitId,
        path: &ArrayPath,
        meta: Option<ArrayMeta>,
        region: &Region,
        overlay: &Manifest,
    ) -> Result<ArrayData, FloeError> {
        let spec = ReadSpec {
            repo: self.repo.clone(),
            commit,
            path: path.clone(),
            region: region.clone(),
            meta,
            overlay: overlay.clone(),
        };
        // A record or manifest fetch per commit on the chain, at most.
        let caller = self.client.caller(commit.0 + 2);
        let history = std::mem::take(&mut self.history);
        let task = ReadTask::new(caller, spec, history);
        let coord = self.client.coordinator().clone();
        let task = drive(task, coord, Some(self.store.clone())).await?;
        self.client.learn(task.requester());
        let (result, history) = task.finish();
        self.history = history;
        result
    }
}

/// Reads `region` of `path` at `commit` of `repo` (a one-off [`Reader`]).
pub async fn read_at<C: Coordinator + 'static>(
    coord: Arc<C>,
    store: Store,
    repo: RepoName,
    commit: CommitId,
    path: &ArrayPath,
    region: &Region,
) -> Result<ArrayData, FloeError> {
    Reader::new(coord, store, repo)
        .read(commit, path, region)
        .await
}

/// The answer to the seed's "can I fast forward?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FastForward {
    /// Nothing since the base touched our chunks: we may move to `tip`.
    Yes {
        /// The branch tip the answer is about.
        tip: CommitId,
    },
    /// Commits since the base conflict with our changes.
    No {
        /// The branch tip the answer is about.
        tip: CommitId,
        /// What collided.
        conflicts: Vec<Conflict>,
    },
}

/// What [`Session::commit_with_fast_forward`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedLoop {
    /// The commit that landed.
    pub commit: CommitId,
    /// Every step, in order.
    pub steps: Vec<SeedStep>,
}

/// A writable view of a branch, based on one commit: a [`View`] (every
/// decision about the changes) with the machines that write chunks and
/// commit, run by the driver.
pub struct Session<C: Coordinator> {
    reader: Reader<C>,
    branch: BranchName,
    view: View,
    /// A delta manifest already written for exactly the pending chunks.
    delta: Option<ObjectId>,
    rng: StdRng,
    author: String,
}

impl<C: Coordinator + 'static> Session<C> {
    /// Checks out the tip of `branch` (`Query::Checkout`).
    pub async fn checkout(
        coord: Arc<C>,
        store: Store,
        repo: RepoName,
        branch: BranchName,
    ) -> Result<Self, FloeError> {
        let q = Query::Checkout {
            repo: repo.clone(),
            branch: branch.clone(),
        };
        let mut reader = Reader::new(coord, store, repo);
        let base = match reader.client.query(q).await? {
            Reply::Commit(rec) => *rec,
            other => return Err(unexpected("Checkout", &other)),
        };
        reader.remember(base.clone());
        Ok(Session {
            reader,
            branch,
            view: View::new(base),
            delta: None,
            rng: StdRng::from_entropy(),
            author: "floe".to_string(),
        })
    }

    /// Draws object ids from a seeded RNG instead of entropy
    /// (deterministic runs). Two writers using the same seed on one store
    /// would overwrite each other's objects: use distinct seeds.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// Sets the author recorded in commits.
    pub fn with_author(mut self, author: impl Into<String>) -> Self {
        self.author = author.into();
        self
    }

    /// The commit this session is based on.
    pub fn base(&self) -> &CommitRecord {
        self.view.base()
    }

    /// The repo.
    pub fn repo(&self) -> &RepoName {
        self.reader.repo()
    }

    /// The branch commits go to.
    pub fn branch(&self) -> &BranchName {
        &self.branch
    }

    /// Every array as this session sees it: the base's, with pending
    /// creates, resizes and deletes applied.
    pub fn arrays(&self) -> &BTreeMap<ArrayPath, ArrayMeta> {
        self.view.arrays()
    }

    /// The chunk writes not yet committed.
    pub fn pending(&self) -> &Manifest {
        self.view.pending()
    }

    /// True when the session has nothing to commit.
    pub fn is_clean(&self) -> bool {
        self.view.is_clean()
    }

    /// The reader behind the session (its cache reads other commits too).
    pub fn reader(&mut self) -> &mut Reader<C> {
        &mut self.reader
    }

    /// What the session touches: pending metadata changes and chunks.
    pub fn footprint(&self) -> Footprint {
        self.view.footprint()
    }

    /// Creates an array (a `Create` in the footprint).
    pub fn create_array(&mut self, path: &ArrayPath, meta: ArrayMeta) -> Result<(), FloeError> {
        self.view.create_array(path, meta)
    }

    /// Resizes an array (an `Update` in the footprint; a `Create` stays a
    /// `Create`). Pending chunk writes outside the new grid are dropped, and
    /// a shrink that ends inside a chunk rewrites that edge chunk with the
    /// cut-off elements set to the fill value, so a later grow shows the
    /// fill value there, not what the shrink cut off (and a concurrent write
    /// to it conflicts). A grow after a shrink in the same session writes
    /// the fill value into the chunks the shrink cut off, which the base may
    /// still hold data for. See [`View::resize_array`].
    pub async fn resize_array(
        &mut self,
        path: &ArrayPath,
        shape: Vec<u64>,
    ) -> Result<(), FloeError> {
        let resized = self.view.resize_array(path, shape)?;
        self.delta = None;
        if !resized.is_empty() {
            let written = self.run_write(Vec::new(), resized).await?;
            self.view.add_chunks(written);
        }
        Ok(())
    }

    /// Deletes an array (a `Delete` in the footprint; deleting an array
    /// created in this session just forgets it). Its pending writes are
    /// dropped.
    pub fn delete_array(&mut self, path: &ArrayPath) -> Result<(), FloeError> {
        self.view.delete_array(path)?;
        self.delta = None;
        Ok(())
    }

    /// Writes `data` (of the region's shape and the array's dtype) into
    /// `region` of `path`. Chunks wholly covered are built from the data;
    /// partly covered ones are read-modify-written from this session's own
    /// pending chunk, else the base's, else the fill value. Every new chunk
    /// object is written to the store before this returns; on error none of
    /// this call's chunks become pending.
    pub async fn write_region(
        &mut self,
        path: &ArrayPath,
        region: &Region,
        data: &ArrayData,
    ) -> Result<(), FloeError> {
        let writes = vec![(path.clone(), region.clone(), data.clone())];
        let written = self.run_write(writes, Resized::new()).await?;
        self.view.add_chunks(written);
        self.delta = None;
        Ok(())
    }

    /// Runs the write machine on this session's view (a resize's chunks,
    /// then the writes); the chunks it stored.
    async fn run_write(
        &mut self,
        writes: Vec<(ArrayPath, Region, ArrayData)>,
        resized: Resized,
    ) -> Result<Written, FloeError> {
        let at = WriteBase {
            repo: self.repo().clone(),
            base: self.view.base().id,
            arrays: self.view.arrays().clone(),
            pending: self.view.pending().clone(),
        };
        // A record or manifest fetch per commit on the base's chain, at most.
        let caller = self.reader.client.caller(self.view.base().id.0 + 2);
        let history = std::mem::take(&mut self.reader.history);
        let task =
            WriteTask::new(caller, self.rng.gen(), at, writes, history).with_resized(resized);
        let store = Some(self.reader.store.clone());
        let coord = self.reader.client.coordinator().clone();
        let task = drive(task, coord, store).await?;
        self.reader.client.learn(task.requester());
        let (result, history) = task.finish();
        self.reader.history = history;
        result
    }

    /// Reads `region` of `path` as this session sees it: its own writes
    /// over the base, the fill value where nothing was written.
    pub async fn read_region(
        &mut self,
        path: &ArrayPath,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        let meta = self.view.meta(path)?.clone();
        let base = self.view.base().id;
        let overlay = self.view.pending().clone();
        // An array created in this session is absent at the base, so only
        // our own chunks and the fill value show.
        self.reader
            .read_with(base, path, Some(meta), region, &overlay)
            .await
    }

    /// Writes the delta manifest of the pending writes, once.
    async fn ensure_delta(&mut self) -> Result<Option<ObjectId>, FloeError> {
        if self.view.pending().is_empty() {
            return Ok(None);
        }
        if let Some(id) = self.delta {
            return Ok(Some(id));
        }
        let bytes = self.view.pending().encode()?;
        let objects = vec![(ObjectKind::Manifest, bytes)];
        let task = PutTask::new(self.repo().clone(), self.rng.gen(), objects);
        let coord = self.reader.client.coordinator().clone();
        let task = drive(task, coord, Some(self.reader.store.clone())).await?;
        let id = match task.result() {
            Some(Ok(ids)) => ids.first().copied(),
            Some(Err(e)) => return Err(e.clone()),
            None => None,
        };
        let id = id.ok_or_else(|| FloeError::Store("the delta manifest was not stored".into()))?;
        self.delta = Some(id);
        Ok(Some(id))
    }

    /// Commits the pending changes: writes one delta manifest, sends
    /// `Command::Commit` with the base, footprint and mode. On success the
    /// session continues from the new commit with nothing pending.
    /// `OutOfDate{tip}` and `Conflict{tip, conflicts}` come back as those
    /// errors and leave the session unchanged. (Should fetching the new
    /// commit's record fail after it landed, that error is returned: check
    /// out again rather than retrying the commit.)
    pub async fn commit(&mut self, message: &str, mode: CommitMode) -> Result<CommitId, FloeError> {
        let spec = self.commit_spec(message, mode, false, 1).await?;
        self.run_commit(spec, |_| {}).await
    }

    /// Commits the pending changes and ends the session: the commit's id as
    /// the coordinator acknowledged it, without reading its record back
    /// (one request and one ReadIndex round fewer than
    /// [`Session::commit`]), for writers that check out afresh for their
    /// next change.
    pub async fn commit_and_close(
        mut self,
        message: &str,
        mode: CommitMode,
    ) -> Result<CommitId, FloeError> {
        let spec = self.commit_spec(message, mode, false, 1).await?;
        self.land(spec, |_| {}).await
    }

    /// What [`Session::commit`] and the seed loop send.
    async fn commit_spec(
        &mut self,
        message: &str,
        mode: CommitMode,
        seed_loop: bool,
        max_commits: usize,
    ) -> Result<CommitSpec, FloeError> {
        let deltas = self.ensure_delta().await?.into_iter().collect();
        Ok(CommitSpec {
            request: CommitRequest {
                repo: self.repo().clone(),
                branch: self.branch.clone(),
                base: self.view.base().id,
                footprint: self.view.footprint(),
                deltas,
                message: message.to_string(),
                author: self.author.clone(),
                mode,
            },
            seed_loop,
            max_commits,
        })
    }

    /// Runs the commit machine, calling `observe` on every seed-loop step
    /// as it happens; once landed, the session continues from the new
    /// commit with nothing pending.
    async fn run_commit(
        &mut self,
        spec: CommitSpec,
        observe: impl FnMut(&SeedStep) + Send,
    ) -> Result<CommitId, FloeError> {
        let commit = self.land(spec, observe).await?;
        let record = self.reader.record(commit).await?;
        self.view.landed(record);
        self.delta = None;
        Ok(commit)
    }

    /// Runs the commit machine to its end: the commit acknowledged.
    async fn land(
        &mut self,
        spec: CommitSpec,
        mut observe: impl FnMut(&SeedStep) + Send,
    ) -> Result<CommitId, FloeError> {
        let client = &self.reader.client;
        // Each round sends a commit and may ask "can I fast forward?".
        let caller = client.caller(2 * spec.max_commits as u64 + 1);
        let task = CommitTask::new(caller, spec);
        let mut driven = Driven::new(task, client.coordinator().clone(), None);
        let mut seen = 0;
        let mut report = |task: &CommitTask| {
            let steps = task.committer().steps();
            steps[seen.min(steps.len())..].iter().for_each(&mut observe);
            seen = steps.len();
        };
        driven
            .run_until(|task| {
                report(task);
                false
            })
            .await?;
        // The last steps came with the input that finished the machine.
        report(driven.machine());
        self.reader.client.learn(driven.machine().requester());
        let end = driven.machine().committer().end().cloned();
        end.ok_or_else(|| FloeError::Unavailable("the commit did not finish".into()))?
            .into_result()
    }

    /// The seed's "can I fast forward?" (`Query::CanFastForward`).
    pub async fn can_fast_forward(&self) -> Result<FastForward, FloeError> {
        let q = Query::CanFastForward {
            repo: self.repo().clone(),
            branch: self.branch.clone(),
            base: self.view.base().id,
            footprint: self.view.footprint(),
        };
        match self.reader.client.query(q).await? {
            Reply::FastForward { tip, conflicts } if conflicts.is_empty() => {
                Ok(FastForward::Yes { tip })
            }
            Reply::FastForward { tip, conflicts } => Ok(FastForward::No { tip, conflicts }),
            other => Err(unexpected("CanFastForward", &other)),
        }
    }

    /// Moves the session's base to `tip`, keeping the pending changes. Safe
    /// after a "yes" from [`Session::can_fast_forward`]: no commit since the
    /// old base touched our chunks, so our read-modify-writes still hold.
    pub async fn fast_forward(&mut self, tip: CommitId) -> Result<(), FloeError> {
        let record = self.reader.record(tip).await?;
        self.view.fast_forward(record);
        Ok(())
    }

    /// The seed's client-driven loop: commit (strict); on "out of date" ask
    /// "can I fast forward?"; on "yes" fast-forward and commit again, at
    /// most `max_rounds` commits. A "no" returns `FloeError::Conflict`;
    /// running out of rounds returns the last `OutOfDate`.
    pub async fn commit_with_fast_forward(
        &mut self,
        message: &str,
        max_rounds: u32,
    ) -> Result<SeedLoop, FloeError> {
        let mut steps = Vec::new();
        let commit = self
            .commit_with_fast_forward_observed(message, max_rounds, |s| steps.push(s.clone()))
            .await?;
        Ok(SeedLoop { commit, steps })
    }

    /// [`Session::commit_with_fast_forward`], calling `observe` on every
    /// step as it happens (so a demo can print the seed's dialogue, the
    /// steps before a conflict included).
    pub async fn commit_with_fast_forward_observed(
        &mut self,
        message: &str,
        max_rounds: u32,
        observe: impl FnMut(&SeedStep) + Send,
    ) -> Result<CommitId, FloeError> {
        let rounds = max_rounds.max(1) as usize;
        let spec = self
            .commit_spec(message, CommitMode::Strict, true, rounds)
            .await?;
        self.run_commit(spec, observe).await
    }

    /// Materialises the full chunk map of `commit` into a checkpoint
    /// object and records it (`Command::RecordCheckpoint`).
    pub async fn write_checkpoint(&mut self, commit: CommitId) -> Result<ObjectId, FloeError> {
        let id = self.reader.write_checkpoint(commit).await?;
        if let Some(record) = self.reader.history().record(commit).cloned() {
            self.view.set_base_checkpoint(&record);
        }
        Ok(id)
    }
}
