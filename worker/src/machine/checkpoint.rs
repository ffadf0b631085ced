//! Writing a checkpoint: the full chunk map of a commit, materialised by
//! walking its chain (records, delta manifests, earlier checkpoints), put
//! as one object and recorded with the coordinator, so later reads stop at
//! it. The machine behind `Session::write_checkpoint` and the simulation's
//! checkpointers.

use floe_protocol::{
    BranchName, Command, CommitId, FloeError, ObjectId, Query, Reply, RepoName, Request,
};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::format::ObjectKind;
use crate::resolve::{History, Step};

use super::build::Want;
use super::fetch::{Cache, Fetch, Fetched};
use super::upload::{Progress, Upload};
use super::{unexpected, Caller, Effect, Input, Machine, Outbox, Requester, Routed};

/// Which commit to checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointOf {
    /// This commit.
    Commit(CommitId),
    /// The tip of this branch, as a checkout finds it.
    Tip(BranchName),
}

#[derive(Debug)]
enum Phase {
    Idle,
    CheckingOut,
    Walking,
    Putting(Upload),
    Recording(ObjectId),
    Done,
}

/// Writes one checkpoint (see the module docs).
#[derive(Debug)]
pub struct CheckpointTask {
    requester: Requester,
    out: Outbox,
    rng: SmallRng,
    repo: RepoName,
    of: CheckpointOf,
    target: Option<CommitId>,
    cache: Cache,
    fetch: Fetch,
    phase: Phase,
    result: Option<Result<(CommitId, ObjectId), FloeError>>,
}

impl CheckpointTask {
    /// The leader its requester last learnt of.
    pub fn leader(&self) -> Option<u64> {
        self.requester.leader()
    }

    /// Its requester: the leader and the session state it learnt, for
    /// the client's next machines ([`crate::client::Client::learn`]).
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    /// A checkpoint of `of` in `repo` for `caller`, drawing its object id
    /// from `seed`, walking through `history` (handed back by
    /// [`CheckpointTask::finish`]).
    pub fn new(
        caller: Caller,
        seed: u64,
        repo: RepoName,
        of: CheckpointOf,
        history: History,
    ) -> Self {
        CheckpointTask {
            requester: caller.requester(),
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            fetch: Fetch::new(repo.clone()),
            repo,
            target: match &of {
                CheckpointOf::Commit(c) => Some(*c),
                CheckpointOf::Tip(_) => None,
            },
            of,
            cache: Cache {
                history,
                chunks: Default::default(),
            },
            phase: Phase::Idle,
            result: None,
        }
    }

    /// The commit checkpointed and the checkpoint object (or why not), once
    /// done.
    pub fn result(&self) -> Option<&Result<(CommitId, ObjectId), FloeError>> {
        self.result.as_ref()
    }

    /// The result, and the record/manifest cache (the new checkpoint in it).
    pub fn finish(self) -> (Result<(CommitId, ObjectId), FloeError>, History) {
        let result = self.result.unwrap_or_else(|| {
            Err(FloeError::Unavailable(
                "the checkpoint did not finish".into(),
            ))
        });
        (result, self.cache.history)
    }

    fn end(&mut self, result: Result<(CommitId, ObjectId), FloeError>) {
        self.result = Some(result);
        self.phase = Phase::Done;
        self.requester.cancel();
    }

    /// Walks the chain as far as the cache allows; fetches what is missing
    /// or puts the chunk map.
    fn walk(&mut self) {
        let Some(target) = self.target else {
            return;
        };
        self.phase = Phase::Walking;
        match self.cache.history.materialize(target) {
            Err(e) => self.end(Err(e)),
            Ok(Step::Need(need)) => {
                self.fetch
                    .ask(&mut self.requester, &mut self.out, Want::from(need))
            }
            Ok(Step::Done(manifest)) => match manifest.encode() {
                Err(e) => self.end(Err(e)),
                Ok(bytes) => {
                    let objects = vec![(ObjectKind::Checkpoint, bytes)];
                    let up = Upload::start(&mut self.out, &mut self.rng, &self.repo, objects);
                    self.phase = Phase::Putting(up);
                }
            },
        }
    }

    fn after(&mut self, fetched: Fetched) {
        match fetched {
            Fetched::Stored => self.walk(),
            Fetched::Retrying => {}
            Fetched::Failed(e) => self.end(Err(e)),
        }
    }

    fn on_put(&mut self, token: u64, result: Result<(), String>) {
        let Phase::Putting(up) = &mut self.phase else {
            return;
        };
        match up.on_put(&mut self.out, &mut self.rng, &self.repo, token, result) {
            Progress::Ignored | Progress::Waiting => {}
            Progress::Failed(e) => self.end(Err(e)),
            Progress::Done(ids) => match (ids.first(), self.target) {
                (Some(&id), Some(commit)) => {
                    let cmd = Command::RecordCheckpoint {
                        repo: self.repo.clone(),
                        commit,
                        checkpoint: id,
                    };
                    self.requester.request(&mut self.out, Request::Command(cmd));
                    self.phase = Phase::Recording(id);
                }
                _ => self.end(Err(FloeError::Store(
                    "a checkpoint put lost its object".into(),
                ))),
            },
        }
    }

    fn on_outcome(&mut self, outcome: floe_protocol::Outcome) {
        match (&self.phase, outcome) {
            (Phase::CheckingOut, Ok(Reply::Commit(record))) => {
                self.target = Some(record.id);
                self.cache.history.insert_record(*record);
                self.walk();
            }
            (Phase::CheckingOut, Ok(other)) => self.end(Err(unexpected("Checkout", &other))),
            (Phase::Walking, outcome) => {
                let fetched = self.fetch.on_record(&mut self.cache, outcome);
                self.after(fetched);
            }
            (&Phase::Recording(id), Ok(Reply::Done)) => {
                let Some(commit) = self.target else {
                    return;
                };
                if let Some(mut record) = self.cache.history.record(commit).cloned() {
                    record.checkpoint = Some(id);
                    self.cache.history.insert_record(record);
                }
                self.end(Ok((commit, id)));
            }
            (Phase::Recording(_), Ok(other)) => {
                self.end(Err(unexpected("RecordCheckpoint", &other)))
            }
            // Another writer checkpointed it first: same chunk map, done
            // (our object is garbage).
            (Phase::Recording(_), Err(FloeError::CheckpointExists { commit, checkpoint })) => {
                self.end(Ok((commit, checkpoint)))
            }
            (_, Err(e)) => self.end(Err(e)),
            _ => {}
        }
    }
}

impl Machine for CheckpointTask {
    fn start(&mut self, _now_ms: u64) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        match &self.of {
            CheckpointOf::Commit(_) => self.walk(),
            CheckpointOf::Tip(branch) => {
                let q = Query::Checkout {
                    repo: self.repo.clone(),
                    branch: branch.clone(),
                };
                self.requester.request(&mut self.out, Request::Query(q));
                self.phase = Phase::CheckingOut;
            }
        }
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.result.is_some() {
            return;
        }
        match self.requester.route(&mut self.out, input) {
            Routed::Final(outcome) => self.on_outcome(outcome),
            Routed::Other(Input::GetDone { token, result }) => {
                if let Some(f) = self
                    .fetch
                    .on_get(&mut self.out, &mut self.cache, token, result)
                {
                    self.after(f);
                }
            }
            Routed::Other(Input::PutDone { token, result }) => self.on_put(token, result),
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
