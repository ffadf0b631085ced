//! Building chunk buffers with what they need fetched: the one
//! read-modify-write loop. [`Build`] runs the pure [`Builder`] and, when it
//! wants a commit record, a manifest or a chunk object, asks for it (through
//! the owner's [`Requester`] and [`Outbox`]) and goes on when it arrives.
//! The simulation's writer and the user's `Session` both build this way.

use std::collections::BTreeMap;
use std::sync::Arc;

use floe_protocol::{
    ArrayMeta, ArrayPath, CommitId, FloeError, ObjectId, Outcome, Query, Region, Reply, RepoName,
    Request,
};

use crate::data::ArrayData;
use crate::format::{object_key, Manifest, ObjectKind};
use crate::resolve::History;

use super::build::{Buffers, Builder, Sources, Want};
use super::view::Resized;
use super::{unexpected, Outbox, Requester};

/// Attempts per object read before the build fails.
pub const MAX_GET_ATTEMPTS: u32 = 8;

/// A pending object read.
#[derive(Clone, Copy, Debug)]
struct Get {
    token: u64,
    kind: ObjectKind,
    id: ObjectId,
    attempts: u32,
}

/// What a build step came to.
#[derive(Debug)]
pub(crate) enum Built {
    /// Waiting for a fetch.
    Waiting,
    /// Every write is built: the new chunk buffers.
    Done(Buffers),
    /// It cannot be built.
    Failed(FloeError),
}

/// The cache a build reads through: commit records and manifests, and the
/// chunk objects fetched (kept across builds of one writer).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cache {
    pub(crate) history: History,
    pub(crate) chunks: BTreeMap<ObjectId, Vec<u8>>,
}

/// What a fetched object or record came to.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// In the cache now: go on.
    Stored,
    /// Asked again (a failed get).
    Retrying,
    /// It cannot be had.
    Failed(FloeError),
}

/// Fetching what a pure walk wants: a commit record through the
/// requester, a manifest, checkpoint or chunk object through a get,
/// retried up to [`MAX_GET_ATTEMPTS`] times.
#[derive(Debug)]
pub(crate) struct Fetch {
    repo: RepoName,
    get: Option<Get>,
}

impl Fetch {
    /// Fetches objects of `repo`.
    pub(crate) fn new(repo: RepoName) -> Self {
        Fetch { repo, get: None }
    }

    /// Asks for `want`.
    pub(crate) fn ask(&mut self, req: &mut Requester, out: &mut Outbox, want: Want) {
        match want {
            Want::Record(commit) => {
                let q = Query::GetCommit {
                    repo: self.repo.clone(),
                    commit,
                };
                req.request(out, Request::Query(q));
            }
            Want::Object(kind, id) => self.send_get(out, kind, id, 1),
        }
    }

    /// The final outcome of a `GetCommit` asked for.
    pub(crate) fn on_record(&mut self, cache: &mut Cache, outcome: Outcome) -> Fetched {
        match outcome {
            Ok(Reply::Commit(record)) => {
                cache.history.insert_record(*record);
                Fetched::Stored
            }
            Ok(other) => Fetched::Failed(unexpected("GetCommit", &other)),
            Err(e) => Fetched::Failed(e),
        }
    }

    /// A get finished; `None` when it was not this fetch's.
    pub(crate) fn on_get(
        &mut self,
        out: &mut Outbox,
        cache: &mut Cache,
        token: u64,
        result: Result<Option<Vec<u8>>, String>,
    ) -> Option<Fetched> {
        let get = self.get.filter(|g| g.token == token)?;
        self.get = None;
        let bytes = match result {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                let missing = FloeError::Store(format!("object {} is missing", get.id));
                return Some(Fetched::Failed(missing));
            }
            Err(e) if get.attempts >= MAX_GET_ATTEMPTS => {
                let failed = FloeError::StoreUnavailable(format!(
                    "get failed {} times, last: {e}",
                    get.attempts
                ));
                return Some(Fetched::Failed(failed));
            }
            Err(_) => {
                self.send_get(out, get.kind, get.id, get.attempts + 1);
                return Some(Fetched::Retrying);
            }
        };
        match get.kind {
            ObjectKind::Chunk => {
                cache.chunks.insert(get.id, bytes);
            }
            ObjectKind::Manifest | ObjectKind::Checkpoint => match Manifest::decode(&bytes) {
                Ok(m) => cache.history.insert_manifest(get.id, Arc::new(m)),
                Err(e) => return Some(Fetched::Failed(e)),
            },
        }
        Some(Fetched::Stored)
    }

    fn send_get(&mut self, out: &mut Outbox, kind: ObjectKind, id: ObjectId, attempts: u32) {
        let key = object_key(&self.repo, kind, id).to_string();
        let token = out.get(key);
        self.get = Some(Get {
            token,
            kind,
            id,
            attempts,
        });
    }
}

/// A resumable build of `writes` against `base` (see the module docs).
#[derive(Debug)]
pub(crate) struct Build {
    builder: Builder,
    writes: Vec<(ArrayPath, Region, ArrayData)>,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    overlay: Manifest,
    fetch: Fetch,
}

impl Build {
    /// Also builds the chunks a resize must write (see
    /// [`Builder::with_resized`]).
    pub(crate) fn with_resized(mut self, resized: Resized) -> Self {
        self.builder = self.builder.with_resized(resized);
        self
    }

    /// A build of `writes` on `base` (whose arrays are `arrays`), reading
    /// chunks listed in `overlay` (a session's own pending writes) before
    /// the base's.
    pub(crate) fn new(
        repo: RepoName,
        base: CommitId,
        arrays: BTreeMap<ArrayPath, ArrayMeta>,
        overlay: Manifest,
        writes: Vec<(ArrayPath, Region, ArrayData)>,
    ) -> Self {
        Build {
            builder: Builder::new(base),
            writes,
            arrays,
            overlay,
            fetch: Fetch::new(repo),
        }
    }

    /// Goes as far as it can.
    pub(crate) fn step(&mut self, req: &mut Requester, out: &mut Outbox, cache: &Cache) -> Built {
        let src = Sources {
            history: &cache.history,
            chunks: &cache.chunks,
            arrays: &self.arrays,
            overlay: &self.overlay,
        };
        match self.builder.run(&src, &self.writes) {
            Err(e) => Built::Failed(e),
            Ok(None) => Built::Done(std::mem::take(&mut self.builder.buffers)),
            Ok(Some(want)) => {
                self.fetch.ask(req, out, want);
                Built::Waiting
            }
        }
    }

    /// The final outcome of the `GetCommit` asked for.
    pub(crate) fn on_record(
        &mut self,
        req: &mut Requester,
        out: &mut Outbox,
        cache: &mut Cache,
        outcome: Outcome,
    ) -> Built {
        let fetched = self.fetch.on_record(cache, outcome);
        self.after(req, out, cache, fetched)
    }

    /// A get finished; `None` when it was not this build's.
    pub(crate) fn on_get(
        &mut self,
        req: &mut Requester,
        out: &mut Outbox,
        cache: &mut Cache,
        token: u64,
        result: Result<Option<Vec<u8>>, String>,
    ) -> Option<Built> {
        let fetched = self.fetch.on_get(out, cache, token, result)?;
        Some(self.after(req, out, cache, fetched))
    }

    fn after(&mut self, req: &mut Requester, out: &mut Outbox, cache: &Cache, f: Fetched) -> Built {
        match f {
            Fetched::Stored => self.step(req, out, cache),
            Fetched::Retrying => Built::Waiting,
            Fetched::Failed(e) => Built::Failed(e),
        }
    }
}
