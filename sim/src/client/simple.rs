//! The simulation's built-in non-cooperative writer, for chunk-aligned
//! writes only (whole chunks, so no read-modify-write): checkout, put the
//! chunks and a delta manifest, commit; on `OutOfDate` the seed's loop
//! (ask `CanFastForward`, commit again on the new tip); on a conflict, at
//! most one manual retry from a fresh checkout. Cheap, and independent of
//! `worker::machine`, it drives high-contention commit traffic.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, CommitRequest,
    FloeError, Footprint, ObjectId, Outcome, Query, Region, Reply, RepoName, Request,
};
use floe_worker::chunk::patch_chunk;
use floe_worker::data::ArrayData;
use floe_worker::format::{chunk_key, encode_chunk, manifest_key, Manifest};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::Write;
use crate::obs::{Attempt, FfAnswer};
use floe_worker::machine::{Effect, Input, Machine, Outbox, Requester, RetryPolicy};

/// Most tries of one put before the writer gives up.
const MAX_PUTS: u32 = 8;

/// A chunk (array and coordinate) or, for `None`, the delta manifest.
type Object = Option<(ArrayPath, Vec<u64>)>;

/// A put in flight: what, its bytes, tries so far.
type Pending = (Object, Vec<u8>, u32);

/// What one simple writer does.
#[derive(Clone, Debug)]
pub struct SimpleScript {
    /// The repo.
    pub repo: RepoName,
    /// Unique message base.
    pub tag: String,
    /// Chunk-aligned regions and their bytes.
    pub writes: Vec<(ArrayPath, Region, Vec<u8>)>,
    /// Commit mode.
    pub mode: CommitMode,
    /// Run the seed's fast-forward loop on `OutOfDate`.
    pub seed_loop: bool,
    /// Check out again and retry once after a conflict.
    pub manual_retry: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Checkout,
    Upload,
    Commit,
    AskFf,
    Done,
}

/// The built-in writer; see the module docs.
pub struct SimpleWriter {
    req: Requester,
    out: Outbox,
    rng: SmallRng,
    client: u32,
    script: SimpleScript,
    step: Step,
    checkouts: u32,
    data_base: CommitId,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    footprint: Footprint,
    manifest: Manifest,
    manifest_id: ObjectId,
    /// Puts in flight: token -> (array, chunk coord, bytes, tries); the
    /// manifest's put has no array.
    puts: BTreeMap<u64, Pending>,
    /// Every commit sent.
    pub attempts: Vec<Attempt>,
    /// Every fast-forward answer.
    pub ff_answers: Vec<FfAnswer>,
}

impl SimpleWriter {
    /// A writer for `script`, as sim client `client`.
    pub fn new(
        client: u32,
        id: ClientId,
        nodes: Vec<u64>,
        script: SimpleScript,
        seed: u64,
    ) -> Self {
        SimpleWriter {
            req: Requester::new(id, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            client,
            script,
            step: Step::Checkout,
            checkouts: 0,
            data_base: CommitId(0),
            arrays: BTreeMap::new(),
            footprint: Footprint::new(),
            manifest: Manifest::new(),
            manifest_id: ObjectId(0),
            puts: BTreeMap::new(),
            attempts: Vec::new(),
            ff_answers: Vec::new(),
        }
    }

    fn checkout(&mut self) {
        self.step = Step::Checkout;
        let q = Query::Checkout {
            repo: self.script.repo.clone(),
            branch: main(),
        };
        self.req.request(&mut self.out, Request::Query(q));
    }

    fn message(&self) -> String {
        format!("{}#{}", self.script.tag, self.checkouts)
    }

    /// Builds every chunk of the writes and puts them.
    fn upload(&mut self) {
        self.step = Step::Upload;
        self.footprint = Footprint::new();
        self.manifest = Manifest::new();
        let writes = self.script.writes.clone();
        for (path, region, bytes) in &writes {
            let Some(meta) = self.arrays.get(path).cloned() else {
                return self.finish();
            };
            self.footprint.add_region(path, &meta, region);
            let data = ArrayData {
                dtype: meta.dtype,
                shape: region.shape(),
                bytes: bytes.clone(),
            };
            for part in region.chunk_parts(&meta) {
                let built =
                    patch_chunk(&meta, None, &part, &data).and_then(|b| encode_chunk(&meta, &b));
                let Ok(object) = built else {
                    return self.finish();
                };
                self.put(Some((path.clone(), part.coord)), object, 1);
            }
        }
        if self.puts.is_empty() {
            self.put_manifest();
        }
    }

    fn put(&mut self, what: Object, bytes: Vec<u8>, tries: u32) {
        let id = ObjectId(self.rng.gen());
        let key = match &what {
            Some((path, coord)) => {
                self.manifest.insert(path.clone(), coord.clone(), id);
                chunk_key(&self.script.repo, id)
            }
            None => {
                self.manifest_id = id;
                manifest_key(&self.script.repo, id)
            }
        };
        let token = self.out.put(key.to_string(), bytes.clone());
        self.puts.insert(token, (what, bytes, tries));
    }

    fn put_manifest(&mut self) {
        match self.manifest.encode() {
            Ok(bytes) => self.put(None, bytes, 1),
            Err(_) => self.finish(),
        }
    }

    fn on_put(&mut self, token: u64, ok: bool) {
        let Some((what, bytes, tries)) = self.puts.remove(&token) else {
            return;
        };
        if !ok {
            if tries >= MAX_PUTS {
                return self.finish();
            }
            return self.put(what, bytes, tries + 1);
        }
        if !self.puts.is_empty() {
            return;
        }
        match what {
            Some(_) => self.put_manifest(),
            None => self.commit(self.data_base),
        }
    }

    fn commit(&mut self, base: CommitId) {
        self.step = Step::Commit;
        let request = CommitRequest {
            repo: self.script.repo.clone(),
            branch: main(),
            base,
            footprint: self.footprint.clone(),
            deltas: vec![self.manifest_id],
            message: self.message(),
            author: self.script.tag.clone(),
            mode: self.script.mode,
        };
        self.attempts.push(Attempt {
            client: self.client,
            message: self.message(),
            data_base: self.data_base,
            base_sent: base,
            footprint: self.footprint.clone(),
            writes: self.writes(),
            mode: self.script.mode,
            outcome: None,
        });
        let cmd = Request::Command(Command::Commit(request));
        self.req.request(&mut self.out, cmd);
    }

    fn writes(&self) -> Vec<Write> {
        let w = |(path, region, data): &(ArrayPath, Region, Vec<u8>)| Write {
            path: path.clone(),
            region: region.clone(),
            data: data.clone(),
        };
        self.script.writes.iter().map(w).collect()
    }

    fn finish(&mut self) {
        self.step = Step::Done;
        self.req.cancel();
        self.puts.clear();
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match self.step {
            Step::Checkout => match outcome {
                Ok(Reply::Commit(rec)) => {
                    self.checkouts += 1;
                    self.data_base = rec.id;
                    self.arrays = rec.arrays;
                    self.upload();
                }
                _ => self.finish(),
            },
            Step::Commit => self.on_commit(outcome),
            Step::AskFf => self.on_ff(outcome),
            Step::Upload | Step::Done => {}
        }
    }

    fn on_commit(&mut self, outcome: Outcome) {
        if let Some(a) = self.attempts.last_mut() {
            a.outcome = Some(outcome.clone());
        }
        match outcome {
            Err(FloeError::OutOfDate { .. }) if self.script.seed_loop => {
                self.step = Step::AskFf;
                let q = Query::CanFastForward {
                    repo: self.script.repo.clone(),
                    branch: main(),
                    base: self.data_base,
                    footprint: self.footprint.clone(),
                };
                self.req.request(&mut self.out, Request::Query(q));
            }
            Err(FloeError::Conflict { .. }) => self.retry_or_finish(),
            _ => self.finish(),
        }
    }

    fn on_ff(&mut self, outcome: Outcome) {
        let Ok(Reply::FastForward { tip, conflicts }) = outcome else {
            return self.finish();
        };
        self.ff_answers.push(FfAnswer {
            client: self.client,
            base: self.data_base,
            footprint: self.footprint.clone(),
            tip,
            conflicts: conflicts.clone(),
        });
        if conflicts.is_empty() && self.attempts.len() < 64 {
            self.commit(tip);
        } else {
            self.retry_or_finish();
        }
    }

    fn retry_or_finish(&mut self) {
        if self.script.manual_retry && self.checkouts < 2 {
            self.checkout();
        } else {
            self.finish();
        }
    }
}

fn main() -> BranchName {
    BranchName::new("main").expect("valid")
}

impl Machine for SimpleWriter {
    fn start(&mut self, _now_ms: u64) {
        self.checkout();
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.step == Step::Done {
            return;
        }
        match input {
            Input::Response { seq, outcome } => {
                if let Some(o) = self.req.on_response(&mut self.out, seq, outcome) {
                    self.on_outcome(o);
                }
            }
            Input::Timer { token } => {
                self.req.on_timer(&mut self.out, token);
            }
            Input::PutDone { token, result } => self.on_put(token, result.is_ok()),
            Input::GetDone { .. } => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.step == Step::Done
    }
}
