//! Reading a region of an array at a commit: locate each chunk (a
//! session's own pending chunks first, else by walking the commit's chain,
//! fetching records and manifests), get the chunk objects (a bounded number
//! at once), and copy the covered parts out; the fill value where nothing
//! was written. The machine behind `Reader::read` and
//! `Session::read_region`.

use std::collections::BTreeMap;

use floe_protocol::{ArrayMeta, ArrayPath, ChunkPart, CommitId, FloeError, ObjectId, Region};

use crate::chunk::extract_part;
use crate::data::{check_region, meta_of, ArrayData};
use crate::format::{chunk_key, decode_chunk, Manifest};
use crate::resolve::{History, Location, Step};

use super::build::Want;
use super::fetch::{Cache, Fetch, Fetched, MAX_GET_ATTEMPTS};
use super::{Caller, Effect, Input, Machine, Outbox, Requester, Routed};

/// Most chunk objects read at once.
pub const MAX_READS_IN_FLIGHT: usize = 16;

/// What to read.
#[derive(Clone, Debug)]
pub struct ReadSpec {
    /// The repo.
    pub repo: floe_protocol::RepoName,
    /// The commit read.
    pub commit: CommitId,
    /// The array.
    pub path: ArrayPath,
    /// The region.
    pub region: Region,
    /// The array's metadata when the reader knows better than the commit
    /// (a session's created or resized array); else the commit's.
    pub meta: Option<ArrayMeta>,
    /// Chunks that override the commit's (a session's pending writes).
    pub overlay: Manifest,
}

/// A chunk object being read.
#[derive(Clone, Copy, Debug)]
struct Get {
    part: usize,
    id: ObjectId,
    attempts: u32,
}

/// See the module docs.
#[derive(Debug)]
pub struct ReadTask {
    requester: Requester,
    out: Outbox,
    spec: ReadSpec,
    cache: Cache,
    fetch: Fetch,
    meta: Option<ArrayMeta>,
    parts: Vec<ChunkPart>,
    /// Parts located so far.
    next: usize,
    /// Chunk objects still to read: (part, object).
    to_read: Vec<(usize, ObjectId)>,
    gets: BTreeMap<u64, Get>,
    data: Option<ArrayData>,
    result: Option<Result<ArrayData, FloeError>>,
    started: bool,
}

impl ReadTask {
    /// Reads `spec` for `caller`, walking through `history` (handed back by
    /// [`ReadTask::finish`]).
    pub fn new(caller: Caller, spec: ReadSpec, history: History) -> Self {
        ReadTask {
            requester: caller.requester(),
            out: Outbox::new(),
            fetch: Fetch::new(spec.repo.clone()),
            meta: spec.meta.clone(),
            spec,
            cache: Cache {
                history,
                chunks: BTreeMap::new(),
            },
            parts: Vec::new(),
            next: 0,
            to_read: Vec::new(),
            gets: BTreeMap::new(),
            data: None,
            result: None,
            started: false,
        }
    }

    /// The data read (or why not), and the record/manifest cache.
    pub fn finish(self) -> (Result<ArrayData, FloeError>, History) {
        let result = self
            .result
            .unwrap_or_else(|| Err(FloeError::Unavailable("the read did not finish".into())));
        (result, self.cache.history)
    }

    /// The data read (or why not), once the read is over.
    pub fn result(&self) -> Option<&Result<ArrayData, FloeError>> {
        self.result.as_ref()
    }

    /// What it reads.
    pub fn spec(&self) -> &ReadSpec {
        &self.spec
    }

    /// The leader its requester last learnt of.
    pub fn leader(&self) -> Option<u64> {
        self.requester.leader()
    }

    /// Its requester: the leader and the session state it learnt, for
    /// the client's next machines ([`crate::client::Client::learn`]).
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    fn end(&mut self, result: Result<ArrayData, FloeError>) {
        self.result = Some(result);
        self.requester.cancel();
        self.gets.clear();
    }

    /// Goes as far as the cache allows: the metadata, then each part's
    /// location, then the chunk reads.
    fn advance(&mut self) {
        if let Err(e) = self.try_advance() {
            self.end(Err(e));
        }
    }

    fn try_advance(&mut self) -> Result<(), FloeError> {
        if self.meta.is_none() {
            match self.cache.history.record(self.spec.commit) {
                Some(rec) => self.meta = Some(meta_of(&rec.arrays, &self.spec.path)?.clone()),
                None => {
                    self.ask(Want::Record(self.spec.commit));
                    return Ok(());
                }
            }
        }
        let Some(meta) = self.meta.clone() else {
            return Ok(());
        };
        if self.data.is_none() {
            check_region(&self.spec.path, &meta, &self.spec.region)?;
            self.data = Some(ArrayData::filled(&meta, &self.spec.region.shape())?);
            self.parts = self.spec.region.chunk_parts(&meta);
        }
        while let Some(part) = self.parts.get(self.next) {
            let located = match self.spec.overlay.get(&self.spec.path, &part.coord) {
                Some(id) => Step::Done(Location::Chunk(id)),
                None => {
                    self.cache
                        .history
                        .resolve(self.spec.commit, &self.spec.path, &part.coord)?
                }
            };
            match located {
                Step::Need(need) => {
                    self.ask(Want::from(need));
                    return Ok(());
                }
                Step::Done(Location::Fill) => {}
                Step::Done(Location::Chunk(id)) => self.to_read.push((self.next, id)),
            }
            self.next += 1;
        }
        self.read_more();
        Ok(())
    }

    fn ask(&mut self, want: Want) {
        self.fetch.ask(&mut self.requester, &mut self.out, want);
    }

    /// Keeps up to [`MAX_READS_IN_FLIGHT`] chunk reads going; done when none
    /// is left.
    fn read_more(&mut self) {
        while self.gets.len() < MAX_READS_IN_FLIGHT {
            let Some((part, id)) = self.to_read.pop() else {
                break;
            };
            self.get(part, id, 1);
        }
        if self.gets.is_empty() && self.to_read.is_empty() {
            if let Some(data) = self.data.take() {
                self.end(Ok(data));
            }
        }
    }

    fn get(&mut self, part: usize, id: ObjectId, attempts: u32) {
        let token = self.out.get(chunk_key(&self.spec.repo, id).to_string());
        self.gets.insert(token, Get { part, id, attempts });
    }

    fn on_chunk(&mut self, token: u64, result: Result<Option<Vec<u8>>, String>) {
        let Some(get) = self.gets.remove(&token) else {
            return;
        };
        let object = match result {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return self.end(Err(FloeError::Store(format!(
                    "chunk {} is missing",
                    get.id
                ))))
            }
            Err(e) if get.attempts >= MAX_GET_ATTEMPTS => {
                let why = format!("get failed {} times, last: {e}", get.attempts);
                return self.end(Err(FloeError::StoreUnavailable(why)));
            }
            Err(_) => return self.get(get.part, get.id, get.attempts + 1),
        };
        if let Err(e) = self.extract(get, &object) {
            return self.end(Err(e));
        }
        self.read_more();
    }

    fn extract(&mut self, get: Get, object: &[u8]) -> Result<(), FloeError> {
        let (Some(meta), Some(data), Some(part)) = (
            self.meta.as_ref(),
            self.data.as_mut(),
            self.parts.get(get.part),
        ) else {
            return Ok(());
        };
        let chunk = decode_chunk(meta, object)
            .map_err(|e| FloeError::Codec(format!("chunk {}: {e}", get.id)))?;
        extract_part(meta, &chunk, part, data)
    }

    fn after(&mut self, fetched: Fetched) {
        match fetched {
            Fetched::Stored => self.advance(),
            Fetched::Retrying => {}
            Fetched::Failed(e) => self.end(Err(e)),
        }
    }
}

impl Machine for ReadTask {
    fn start(&mut self, _now_ms: u64) {
        if !self.started {
            self.started = true;
            self.advance();
        }
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.result.is_some() {
            return;
        }
        match self.requester.route(&mut self.out, input) {
            Routed::Final(outcome) => {
                let fetched = self.fetch.on_record(&mut self.cache, outcome);
                self.after(fetched);
            }
            Routed::Other(Input::GetDone { token, result }) if self.gets.contains_key(&token) => {
                self.on_chunk(token, result)
            }
            Routed::Other(Input::GetDone { token, result }) => {
                if let Some(f) = self
                    .fetch
                    .on_get(&mut self.out, &mut self.cache, token, result)
                {
                    self.after(f);
                }
            }
            Routed::Taken | Routed::Other(_) => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.result.is_some()
    }
}
