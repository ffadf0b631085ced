//! Writing regions into a session: build the new chunk buffers (whole
//! chunks from the data, partial ones read-modify-written from the
//! session's own pending chunks, else the base's, else the fill value),
//! then put them under fresh ids. The machine behind `Session::write_region`;
//! the simulation's writer builds through the same [`Build`].

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use floe_protocol::{ArrayMeta, ArrayPath, CommitId, FloeError, ObjectId, Region, RepoName};

use crate::data::{meta_of, ArrayData};
use crate::format::{encode_chunk, Manifest, ObjectKind};
use crate::resolve::History;

use super::build::Buffers;
use super::fetch::{Build, Built, Cache};
use super::upload::{Progress, Upload};
use super::view::Resized;
use super::{Caller, Effect, Input, Machine, Outbox, Requester};

/// The chunks a [`WriteTask`] stored: array, chunk coordinate, object id.
pub type Written = Vec<(ArrayPath, Vec<u64>, ObjectId)>;

#[derive(Debug)]
enum Phase {
    Idle(Build),
    Building(Build),
    Putting(Upload, Vec<(ArrayPath, Vec<u64>)>),
    Done,
}

/// Writes regions on a base (see the module docs).
#[derive(Debug)]
pub struct WriteTask {
    requester: Requester,
    out: Outbox,
    rng: SmallRng,
    repo: RepoName,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    cache: Cache,
    phase: Phase,
    result: Option<Result<Written, FloeError>>,
}

/// Where a [`WriteTask`] writes: the session's base and view.
#[derive(Clone, Debug)]
pub struct WriteBase {
    /// The repo.
    pub repo: RepoName,
    /// The commit partial chunks are read from.
    pub base: CommitId,
    /// The arrays as the session sees them.
    pub arrays: BTreeMap<ArrayPath, ArrayMeta>,
    /// The session's pending chunks, read before the base's.
    pub pending: Manifest,
}

impl WriteTask {
    /// The leader its requester last learnt of.
    pub fn leader(&self) -> Option<u64> {
        self.requester.leader()
    }

    /// Its requester: the leader and the session state it learnt, for
    /// the client's next machines ([`crate::client::Client::learn`]).
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    /// Writes `writes` on `at` for `caller`, drawing object ids from
    /// `seed`, reading records and manifests through `history` (handed back
    /// by [`WriteTask::finish`]).
    pub fn new(
        caller: Caller,
        seed: u64,
        at: WriteBase,
        writes: Vec<(ArrayPath, Region, ArrayData)>,
        history: History,
    ) -> Self {
        let requester = caller.requester();
        let build = Build::new(
            at.repo.clone(),
            at.base,
            at.arrays.clone(),
            at.pending,
            writes,
        );
        WriteTask {
            requester,
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            repo: at.repo,
            arrays: at.arrays,
            cache: Cache {
                history,
                chunks: BTreeMap::new(),
            },
            phase: Phase::Idle(build),
            result: None,
        }
    }

    /// Also writes the chunks a resize must write (see
    /// [`super::View::resize_array`]), before the writes.
    pub fn with_resized(mut self, resized: Resized) -> Self {
        if let Phase::Idle(build) = std::mem::replace(&mut self.phase, Phase::Done) {
            self.phase = Phase::Idle(build.with_resized(resized));
        }
        self
    }

    /// The chunks stored (or why not), and the record/manifest cache.
    pub fn finish(self) -> (Result<Written, FloeError>, History) {
        let result = self
            .result
            .unwrap_or_else(|| Err(FloeError::Unavailable("the write did not finish".into())));
        (result, self.cache.history)
    }

    fn end(&mut self, result: Result<Written, FloeError>) {
        self.result = Some(result);
        self.phase = Phase::Done;
        self.requester.cancel();
    }

    fn on_built(&mut self, built: Built) {
        match built {
            Built::Waiting => {}
            Built::Failed(e) => self.end(Err(e)),
            Built::Done(buffers) => self.put(buffers),
        }
    }

    fn put(&mut self, buffers: Buffers) {
        let mut keys = Vec::with_capacity(buffers.len());
        let mut objects = Vec::with_capacity(buffers.len());
        for ((path, coord), buffer) in buffers {
            match meta_of(&self.arrays, &path).and_then(|m| encode_chunk(m, &buffer)) {
                Ok(bytes) => objects.push((ObjectKind::Chunk, bytes)),
                Err(e) => return self.end(Err(e)),
            }
            keys.push((path, coord));
        }
        if keys.is_empty() {
            return self.end(Ok(Vec::new()));
        }
        let upload = Upload::start(&mut self.out, &mut self.rng, &self.repo, objects);
        self.phase = Phase::Putting(upload, keys);
    }

    fn on_put(&mut self, token: u64, result: Result<(), String>) {
        let Phase::Putting(upload, keys) = &mut self.phase else {
            return;
        };
        match upload.on_put(&mut self.out, &mut self.rng, &self.repo, token, result) {
            Progress::Ignored | Progress::Waiting => {}
            Progress::Failed(e) => self.end(Err(e)),
            Progress::Done(ids) => {
                let written = std::mem::take(keys)
                    .into_iter()
                    .zip(ids)
                    .map(|((path, coord), id)| (path, coord, id))
                    .collect();
                self.end(Ok(written));
            }
        }
    }
}

impl Machine for WriteTask {
    fn start(&mut self, _now_ms: u64) {
        let Phase::Idle(build) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        self.phase = Phase::Building(build);
        let Phase::Building(build) = &mut self.phase else {
            return;
        };
        let built = build.step(&mut self.requester, &mut self.out, &self.cache);
        self.on_built(built);
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        let (req, out) = (&mut self.requester, &mut self.out);
        let built = match (&mut self.phase, input) {
            (Phase::Putting(..), Input::PutDone { token, result }) => {
                return self.on_put(token, result);
            }
            (Phase::Building(build), Input::GetDone { token, result }) => {
                build.on_get(req, out, &mut self.cache, token, result)
            }
            (Phase::Building(build), input) => match req.on_input(out, input) {
                Some(outcome) => Some(build.on_record(req, out, &mut self.cache, outcome)),
                None => None,
            },
            _ => None,
        };
        if let Some(built) = built {
            self.on_built(built);
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.result.is_some()
    }
}
