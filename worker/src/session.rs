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

use futures::stream::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, CommitRecord, CommitRequest,
    Conflict, Coordinator, FloeError, Footprint, GeometryError, MetaChange, ObjectId, Query,
    Region, Reply, RepoName,
};

use crate::chunk::{extract_part, fill_chunk, regrown_chunks};
use crate::client::Client;
use crate::data::{check_region, meta_of, ArrayData};
use crate::driver::{drive, Driven};
use crate::format::Manifest;
use crate::machine::{CommitSpec, CommitTask, SeedStep, WriteBase, WriteTask, Written};
use crate::resolve::{History, Location, Need, Step};
use crate::store::Store;

/// Most chunk objects read or written concurrently by one call.
pub const MAX_IN_FLIGHT: usize = 16;

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
        self.fetch(Need::Record(commit)).await?;
        self.history
            .record(commit)
            .cloned()
            .ok_or(FloeError::UnknownCommit {
                repo: self.repo.clone(),
                commit,
            })
    }

    /// Adds a record to the cache (e.g. one a checkout returned).
    pub fn remember(&mut self, record: CommitRecord) {
        self.history.insert_record(record);
    }

    /// Fetches what a walk needs into the cache.
    async fn fetch(&mut self, need: Need) -> Result<(), FloeError> {
        match need {
            Need::Record(commit) => {
                let q = Query::GetCommit {
                    repo: self.repo.clone(),
                    commit,
                };
                match self.client.query(q).await? {
                    Reply::Commit(rec) if rec.id == commit => self.history.insert_record(*rec),
                    other => return Err(unexpected("GetCommit", &other)),
                }
            }
            Need::Manifest(id) => {
                let m = self.store.get_manifest(&self.repo, id).await?;
                self.history.insert_manifest(id, Arc::new(m));
            }
            Need::Checkpoint(id) => {
                let m = self.store.get_checkpoint(&self.repo, id).await?;
                self.history.insert_manifest(id, Arc::new(m));
            }
        }
        Ok(())
    }

    /// Where chunk `coord` of `path` comes from at `commit`.
    pub async fn locate(
        &mut self,
        commit: CommitId,
        path: &ArrayPath,
        coord: &[u64],
    ) -> Result<Location, FloeError> {
        loop {
            match self.history.resolve(commit, path, coord)? {
                Step::Done(loc) => return Ok(loc),
                Step::Need(need) => self.fetch(need).await?,
            }
        }
    }

    /// The full chunk map of `commit` (what a checkpoint of it holds).
    pub async fn materialize(&mut self, commit: CommitId) -> Result<Manifest, FloeError> {
        while let Some(missing) = self.history.missing_on_chain(commit) {
            self.fetch(Need::Record(missing)).await?;
        }
        loop {
            match self.history.materialize(commit)? {
                Step::Done(m) => return Ok(m),
                Step::Need(need) => self.fetch(need).await?,
            }
        }
    }

    /// Materialises `commit`'s chunk map into checkpoint object `id` and
    /// records it with the coordinator (`Command::RecordCheckpoint`).
    pub async fn write_checkpoint(
        &mut self,
        commit: CommitId,
        id: ObjectId,
    ) -> Result<(), FloeError> {
        let manifest = self.materialize(commit).await?;
        self.store.put_checkpoint(&self.repo, id, &manifest).await?;
        let cmd = Command::RecordCheckpoint {
            repo: self.repo.clone(),
            commit,
            checkpoint: id,
        };
        match self.client.command(cmd).await? {
            Reply::Done => {}
            other => return Err(unexpected("RecordCheckpoint", &other)),
        }
        if let Some(mut rec) = self.history.record(commit).cloned() {
            rec.checkpoint = Some(id);
            self.history.insert_record(rec);
        }
        self.history.insert_manifest(id, Arc::new(manifest));
        Ok(())
    }

    /// Reads `region` of `path` at `commit`: the fill value where nothing
    /// was written.
    pub async fn read(
        &mut self,
        commit: CommitId,
        path: &ArrayPath,
        region: &Region,
    ) -> Result<ArrayData, FloeError> {
        let rec = self.record(commit).await?;
        let meta = meta_of(&rec.arrays, path)?.clone();
        self.read_with(commit, path, &meta, region, &Manifest::new())
            .await
    }

    /// Reads `region` of `path` (whose metadata is `meta`): chunks listed in
    /// `overlay` first, else as resolved at `commit`.
    async fn read_with(
        &mut self,
        commit: CommitId,
        path: &ArrayPath,
        meta: &ArrayMeta,
        region: &Region,
        overlay: &Manifest,
    ) -> Result<ArrayData, FloeError> {
        check_region(path, meta, region)?;
        let mut out = ArrayData::filled(meta, &region.shape())?;
        let mut located = Vec::new();
        for part in region.chunk_parts(meta) {
            let loc = match overlay.get(path, &part.coord) {
                Some(id) => Location::Chunk(id),
                None => self.locate(commit, path, &part.coord).await?,
            };
            if let Location::Chunk(id) = loc {
                located.push((part, id));
            }
        }
        let mut reads = futures::stream::iter(located.into_iter().map(|(part, id)| {
            let store = self.store.clone();
            let repo = self.repo.clone();
            async move {
                let chunk = store.get_chunk(&repo, meta, id).await?;
                Ok::<_, FloeError>((part, chunk))
            }
        }))
        .buffer_unordered(MAX_IN_FLIGHT);
        while let Some(done) = reads.next().await {
            let (part, chunk) = done?;
            extract_part(meta, &chunk, &part, &mut out)?;
        }
        Ok(out)
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

/// A writable view of a branch, based on one commit.
pub struct Session<C: Coordinator> {
    reader: Reader<C>,
    branch: BranchName,
    base: CommitRecord,
    /// The arrays as this session sees them (base + pending changes).
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    /// Pending metadata changes.
    changes: BTreeMap<ArrayPath, MetaChange>,
    /// Pending chunk writes.
    pending: Manifest,
    /// A delta manifest already written for exactly `pending`.
    delta: Option<ObjectId>,
    /// The smallest shape each base array had in this session, per
    /// dimension, once it was resized: what a later grow must blank.
    min_shape: BTreeMap<ArrayPath, Vec<u64>>,
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
            arrays: base.arrays.clone(),
            base,
            changes: BTreeMap::new(),
            pending: Manifest::new(),
            delta: None,
            min_shape: BTreeMap::new(),
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
        &self.base
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
        &self.arrays
    }

    /// The chunk writes not yet committed.
    pub fn pending(&self) -> &Manifest {
        &self.pending
    }

    /// True when the session has nothing to commit.
    pub fn is_clean(&self) -> bool {
        self.pending.is_empty() && self.changes.is_empty()
    }

    /// The reader behind the session (its cache reads other commits too).
    pub fn reader(&mut self) -> &mut Reader<C> {
        &mut self.reader
    }

    /// What the session touches: pending metadata changes and chunks.
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

    fn fresh_id(&mut self) -> ObjectId {
        ObjectId(self.rng.gen())
    }

    fn meta(&self, path: &ArrayPath) -> Result<&ArrayMeta, FloeError> {
        meta_of(&self.arrays, path)
    }

    fn drop_pending(&mut self, path: &ArrayPath, keep: impl Fn(&[u64]) -> bool) {
        if let Some(chunks) = self.pending.arrays.get_mut(path) {
            let before = chunks.len();
            chunks.retain(|c, _| keep(c));
            if chunks.len() != before {
                self.delta = None;
            }
            if chunks.is_empty() {
                self.pending.arrays.remove(path);
            }
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
                why: format!("cannot re-create {path} in the session that deletes it; commit the delete first"),
            });
        }
        self.arrays.insert(path.clone(), meta.clone());
        self.changes.insert(path.clone(), MetaChange::Create(meta));
        Ok(())
    }

    /// Resizes an array (an `Update` in the footprint; a `Create` stays a
    /// `Create`). Pending chunk writes outside the new grid are dropped, and
    /// a shrink that ends inside a chunk rewrites that edge chunk with the
    /// cut-off elements set to the fill value, so a later grow shows the
    /// fill value there, not what the shrink cut off. A grow after a shrink
    /// in the same session writes the fill value into the chunks the shrink
    /// cut off, which the base may still hold data for.
    pub async fn resize_array(
        &mut self,
        path: &ArrayPath,
        shape: Vec<u64>,
    ) -> Result<(), FloeError> {
        let old = self.meta(path)?.clone();
        let meta = self.resize_meta(path, shape)?;
        self.blank_cut_edges(path, &old, &meta).await?;
        self.blank_regrown(path, &meta).await
    }

    /// The metadata half of [`Session::resize_array`].
    fn resize_meta(&mut self, path: &ArrayPath, shape: Vec<u64>) -> Result<ArrayMeta, FloeError> {
        let mut meta = self.meta(path)?.clone();
        if shape.len() != meta.shape.len() {
            return Err(FloeError::geometry(
                path,
                GeometryError::RankMismatch {
                    expected: meta.shape.len(),
                    got: shape.len(),
                },
            ));
        }
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
        Ok(meta)
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

    /// After a grow: every chunk the session's shrinks had cut off and the
    /// base still holds data for becomes the fill value (one fill object,
    /// shared by all of them), unless the session wrote it since.
    async fn blank_regrown(&mut self, path: &ArrayPath, meta: &ArrayMeta) -> Result<(), FloeError> {
        let (Some(min), Some(base)) = (self.min_shape.get(path), self.base.arrays.get(path)) else {
            return Ok(());
        };
        let cut: Vec<Vec<u64>> = regrown_chunks(meta, min, &base.shape)
            .into_iter()
            .filter(|c| self.pending.get(path, c).is_none())
            .collect();
        if cut.is_empty() {
            return Ok(());
        }
        let id = self.fresh_id();
        self.reader
            .store
            .put_chunk(self.repo(), meta, id, &fill_chunk(meta))
            .await?;
        for coord in cut {
            self.pending.insert(path.clone(), coord, id);
        }
        self.delta = None;
        Ok(())
    }

    /// Rewrites the chunks that straddle a new edge left inside a chunk by a
    /// shrink: elements past the edge become the fill value. They join the
    /// footprint, so a concurrent write to them conflicts with the resize
    /// (a metadata update alone does not conflict with chunk writes).
    async fn blank_cut_edges(
        &mut self,
        path: &ArrayPath,
        old: &ArrayMeta,
        new: &ArrayMeta,
    ) -> Result<(), FloeError> {
        let edges: Vec<Option<u64>> = (0..new.shape.len())
            .map(|d| {
                let (n, c) = (new.shape[d], new.chunk_shape[d]);
                (n < old.shape[d] && n % c != 0).then_some(n / c)
            })
            .collect();
        if edges.iter().all(Option::is_none) {
            return Ok(());
        }
        // Rewritten even when a chunk holds only the fill value, so that a
        // concurrent write to it conflicts with the resize instead of
        // leaving values past the edge.
        let cuts: Vec<(ArrayPath, Vec<u64>)> = Region::full(new)
            .chunks(new)
            .into_iter()
            .filter(|coord| coord.iter().zip(&edges).any(|(c, e)| Some(*c) == *e))
            .map(|coord| (path.clone(), coord))
            .collect();
        for (path, coord, id) in self.run_write(Vec::new(), cuts).await? {
            self.pending.insert(path, coord, id);
        }
        self.delta = None;
        Ok(())
    }

    /// Deletes an array (a `Delete` in the footprint; deleting an array
    /// created in this session just forgets it). Its pending writes are
    /// dropped.
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
        for (path, coord, id) in self.run_write(writes, Vec::new()).await? {
            self.pending.insert(path, coord, id);
        }
        self.delta = None;
        Ok(())
    }

    /// Runs the write machine on this session's view (writes, then cut
    /// edge chunks); the chunks it stored.
    async fn run_write(
        &mut self,
        writes: Vec<(ArrayPath, Region, ArrayData)>,
        cuts: Vec<(ArrayPath, Vec<u64>)>,
    ) -> Result<Written, FloeError> {
        let at = WriteBase {
            repo: self.repo().clone(),
            base: self.base.id,
            arrays: self.arrays.clone(),
            pending: self.pending.clone(),
        };
        // A record or manifest fetch per commit on the base's chain, at most.
        let caller = self.reader.client.caller(self.base.id.0 + 2);
        let history = std::mem::take(&mut self.reader.history);
        let task = WriteTask::new(caller, self.rng.gen(), at, writes, history).with_cuts(cuts);
        let store = Some(self.reader.store.clone());
        let coord = self.reader.client.coordinator().clone();
        let task = drive(task, coord, store).await;
        let (result, history) = match task {
            Ok(task) => task.finish(),
            Err(e) => return Err(e),
        };
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
        let meta = self.meta(path)?.clone();
        let base = self.base.id;
        // An array created in this session is absent at the base, so only
        // our own chunks and the fill value show.
        self.reader
            .read_with(base, path, &meta, region, &self.pending)
            .await
    }

    /// Writes the delta manifest of the pending writes, once.
    async fn ensure_delta(&mut self) -> Result<Option<ObjectId>, FloeError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        if let Some(id) = self.delta {
            return Ok(Some(id));
        }
        let id = self.fresh_id();
        self.reader
            .store
            .put_manifest(self.reader.repo(), id, &self.pending)
            .await?;
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
                base: self.base.id,
                footprint: self.footprint(),
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
        let end = driven.machine().committer().end().cloned();
        let commit = end
            .ok_or_else(|| FloeError::Unavailable("the commit did not finish".into()))?
            .into_result()?;
        let record = self.reader.record(commit).await?;
        self.arrays = record.arrays.clone();
        self.base = record;
        self.changes.clear();
        self.min_shape.clear();
        self.pending = Manifest::new();
        self.delta = None;
        Ok(commit)
    }

    /// The seed's "can I fast forward?" (`Query::CanFastForward`).
    pub async fn can_fast_forward(&self) -> Result<FastForward, FloeError> {
        let q = Query::CanFastForward {
            repo: self.repo().clone(),
            branch: self.branch.clone(),
            base: self.base.id,
            footprint: self.footprint(),
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
        let id = self.fresh_id();
        self.reader.write_checkpoint(commit, id).await?;
        if self.base.id == commit {
            self.base.checkpoint = Some(id);
        }
        Ok(id)
    }
}
