//! A checkpointer: the background job that consolidates a commit's chunk
//! map. It checks out the tip, walks the chain with `worker::resolve`
//! (fetching records and manifests, reading earlier checkpoints), puts the
//! full chunk map as a checkpoint object and records it. Later reads stop
//! at it, so a wrong checkpoint shows up in the data oracle.

use std::sync::Arc;

use floe_protocol::{
    ClientId, Command, CommitId, ObjectId, Outcome, Query, Reply, RepoName, Request,
};
use floe_worker::format::{checkpoint_key, manifest_key, Manifest};
use floe_worker::machine::{Effect, Input, Machine, Outbox, Requester, RetryPolicy, Routed};
use floe_worker::resolve::{History, Need, Step};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::main_branch;
use super::upload::put_fresh;

/// Most tries of one get or put.
const MAX_TRIES: u32 = 8;

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Checkout,
    Walk,
    Put,
    Record,
    Done,
}

/// The object being read or written, with its tries so far.
#[derive(Clone, Copy)]
struct Io {
    token: u64,
    id: ObjectId,
    checkpoint: bool,
    tries: u32,
}

/// Writes one checkpoint of the tip; see the module docs.
pub struct Checkpointer {
    req: Requester,
    out: Outbox,
    rng: SmallRng,
    repo: RepoName,
    history: History,
    phase: Phase,
    target: CommitId,
    io: Option<Io>,
    manifest: Vec<u8>,
    /// The checkpoint recorded: commit, object, and the final outcome.
    pub recorded: Option<(CommitId, ObjectId, Option<Outcome>)>,
}

impl Checkpointer {
    /// A checkpointer of `repo`'s main branch.
    pub fn new(client: ClientId, nodes: Vec<u64>, repo: RepoName, seed: u64) -> Self {
        Checkpointer {
            req: Requester::new(client, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            repo,
            history: History::new(),
            phase: Phase::Checkout,
            target: CommitId(0),
            io: None,
            manifest: Vec::new(),
            recorded: None,
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        self.req.cancel();
        self.io = None;
    }

    /// Walks as far as the cache allows, then fetches what is missing or
    /// puts the result.
    fn walk(&mut self) {
        self.phase = Phase::Walk;
        match self.history.materialize(self.target) {
            Ok(Step::Done(m)) => self.put(m),
            Ok(Step::Need(Need::Record(c))) => {
                let q = Query::GetCommit {
                    repo: self.repo.clone(),
                    commit: c,
                };
                self.req.request(&mut self.out, Request::Query(q));
            }
            Ok(Step::Need(Need::Manifest(id))) => self.get(id, false, 1),
            Ok(Step::Need(Need::Checkpoint(id))) => self.get(id, true, 1),
            Err(_) => self.finish(),
        }
    }

    fn get(&mut self, id: ObjectId, checkpoint: bool, tries: u32) {
        let key = match checkpoint {
            true => checkpoint_key(&self.repo, id),
            false => manifest_key(&self.repo, id),
        };
        let token = self.out.get(key.to_string());
        self.io = Some(Io {
            token,
            id,
            checkpoint,
            tries,
        });
    }

    fn on_get(&mut self, token: u64, result: Result<Option<Vec<u8>>, String>) {
        let Some(io) = self.io.filter(|io| io.token == token) else {
            return;
        };
        match result {
            Ok(Some(bytes)) => match Manifest::decode(&bytes) {
                Ok(m) => {
                    self.history.insert_manifest(io.id, Arc::new(m));
                    self.walk();
                }
                Err(_) => self.finish(),
            },
            Err(_) if io.tries < MAX_TRIES => self.get(io.id, io.checkpoint, io.tries + 1),
            _ => self.finish(),
        }
    }

    fn put(&mut self, manifest: Manifest) {
        let Ok(bytes) = manifest.encode() else {
            return self.finish();
        };
        self.manifest = bytes;
        self.put_again(1);
    }

    fn put_again(&mut self, tries: u32) {
        self.phase = Phase::Put;
        let repo = &self.repo;
        let (id, token) = put_fresh(&mut self.rng, &mut self.out, &self.manifest, |id| {
            checkpoint_key(repo, id).to_string()
        });
        self.io = Some(Io {
            token,
            id,
            checkpoint: true,
            tries,
        });
    }

    fn on_put(&mut self, token: u64, ok: bool) {
        let Some(io) = self.io.filter(|io| io.token == token) else {
            return;
        };
        if !ok {
            return match io.tries < MAX_TRIES {
                true => self.put_again(io.tries + 1),
                false => self.finish(),
            };
        }
        self.phase = Phase::Record;
        self.recorded = Some((self.target, io.id, None));
        let cmd = Command::RecordCheckpoint {
            repo: self.repo.clone(),
            commit: self.target,
            checkpoint: io.id,
        };
        self.req.request(&mut self.out, Request::Command(cmd));
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match (&self.phase, outcome) {
            (Phase::Checkout | Phase::Walk, Ok(Reply::Commit(rec))) => {
                if self.phase == Phase::Checkout {
                    self.target = rec.id;
                }
                self.history.insert_record(*rec);
                self.walk();
            }
            (Phase::Record, outcome) => {
                if let Some(r) = self.recorded.as_mut() {
                    r.2 = Some(outcome);
                }
                self.finish();
            }
            _ => self.finish(),
        }
    }
}

impl Machine for Checkpointer {
    fn start(&mut self, _now_ms: u64) {
        let q = Query::Checkout {
            repo: self.repo.clone(),
            branch: main_branch(),
        };
        self.req.request(&mut self.out, Request::Query(q));
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.phase == Phase::Done {
            return;
        }
        match self.req.route(&mut self.out, input) {
            Routed::Final(o) => self.on_outcome(o),
            Routed::Other(Input::GetDone { token, result }) => self.on_get(token, result),
            Routed::Other(Input::PutDone { token, result }) => self.on_put(token, result.is_ok()),
            Routed::Taken | Routed::Other(_) => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}
