//! A non-cooperative writer running one script: check out, write regions
//! (partial chunks read-modify-written from the base), put the chunks and
//! one delta manifest, commit — with the seed's fast-forward loop and an
//! optional manual retry after a conflict.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, CommitId, CommitMode, CommitRecord, CommitRequest,
    Conflict, FloeError, Footprint, ObjectId, Outcome, Query, Region, Reply, RepoName, Request,
};

use crate::data::ArrayData;
use crate::format::{encode_chunk, Manifest};

use super::build::Buffers;
use super::commit::{CommitEnd, CommitSpec, Committer};
use super::fetch::{Build, Built, Cache};
use super::stage::{Stage, Staged};
use super::view::View;
use super::{unexpected, Effect, Input, Machine, Outbox, Requester, RetryPolicy, Routed};

/// Most commits sent on one checkout by the fast-forward loop.
pub const MAX_FAST_FORWARDS: usize = 64;

/// What a [`Writer`] does.
#[derive(Clone, Debug, PartialEq)]
pub struct WriterScript {
    /// The repo.
    pub repo: RepoName,
    /// The branch checked out and committed to.
    pub branch: BranchName,
    /// Unique base of the commit messages: `"{tag}#{n}"`, n counting
    /// fresh checkouts from 1.
    pub tag: String,
    /// Arrays deleted first (see [`super::View::delete_array`]).
    pub deletes: Vec<ArrayPath>,
    /// Arrays created next, with their metadata.
    pub creates: Vec<(ArrayPath, ArrayMeta)>,
    /// Resizes made next, in order: array and new shape (see
    /// [`super::View::resize_array`]: edge chunks cut, chunks brought back
    /// by a grow after a shrink set to the fill value).
    pub resizes: Vec<(ArrayPath, Vec<u64>)>,
    /// The regions written next, in order, with their data.
    pub writes: Vec<(ArrayPath, Region, ArrayData)>,
    /// How commits are sent.
    pub mode: CommitMode,
    /// On `OutOfDate`: ask `CanFastForward`; on "yes" commit again on the
    /// new tip, looping (the seed's Example 1). Without it `OutOfDate` is
    /// final (a failed [`CommitEnd`]).
    pub seed_loop: bool,
    /// On a conflict (or a "no" to `CanFastForward`): check out again,
    /// redo the writes, commit once more (the seed's Example 2).
    pub manual_retry: bool,
}

/// One `Command::Commit` sent.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptLog {
    /// The commit message.
    pub message: String,
    /// The checkout the data was computed against.
    pub data_base: CommitId,
    /// The base sent (differs from `data_base` after a fast-forward).
    pub base_sent: CommitId,
    /// The footprint sent.
    pub footprint: Footprint,
    /// The mode sent.
    pub mode: CommitMode,
    /// The request's sequence number.
    pub seq: u64,
    /// The final outcome, once answered (`None`: unknown, it may have landed).
    pub outcome: Option<Outcome>,
}

/// Where a [`Writer`] stands.
#[derive(Clone, Debug, PartialEq)]
pub enum WriterStatus {
    /// Still working.
    Running,
    /// Its commit landed, conflicted (no retry left) or failed.
    Ended(CommitEnd),
}

/// What a [`Writer`] did, for the simulation's oracles.
#[derive(Clone, Debug, PartialEq)]
pub struct WriterReport {
    /// Every checkout's commit, in order.
    pub checkouts: Vec<CommitId>,
    /// One entry per `Command::Commit` sent.
    pub attempts: Vec<AttemptLog>,
    /// Every `CanFastForward` answer: the base asked about and the
    /// `Reply::FastForward`.
    pub fast_forward_answers: Vec<(CommitId, Reply)>,
    /// Where it stands.
    pub status: WriterStatus,
}

#[derive(Debug)]
enum Phase {
    Idle,
    CheckingOut,
    /// Building chunks; waiting for a fetch (a `GetCommit` or a get).
    Building(Build),
    /// Putting the chunks, then the delta manifest.
    Staging(Stage),
    /// Committing (the seed loop included); the report's attempts and
    /// fast-forward answers from these indexes on are this commit's.
    Committing {
        committer: Box<Committer>,
        attempts_from: usize,
        answers_from: usize,
    },
    Done,
}

/// The current checkout: what was sent or will be.
#[derive(Clone, Debug)]
struct Checkout {
    n: u32,
    record: CommitRecord,
    base_sent: CommitId,
    /// The checkout's changes: the script's resizes, then its chunks.
    view: View,
    footprint: Footprint,
    deltas: Vec<ObjectId>,
}

/// A non-cooperative writer (see [`WriterScript`]).
#[derive(Debug)]
pub struct Writer {
    script: WriterScript,
    requester: Requester,
    out: Outbox,
    rng: SmallRng,
    cache: Cache,
    phase: Phase,
    checkout: Option<Checkout>,
    retries_left: u32,
    author: String,
    report: WriterReport,
    #[cfg(feature = "planted-bugs")]
    bugs: super::ClientBugs,
}

impl Writer {
    /// A writer for `client` (a client id of its own) over coordinator
    /// `nodes`, drawing object ids from `seed`.
    pub fn new(client: ClientId, nodes: Vec<u64>, script: WriterScript, seed: u64) -> Self {
        Writer {
            retries_left: u32::from(script.manual_retry),
            script,
            requester: Requester::new(client, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            cache: Cache::default(),
            phase: Phase::Idle,
            checkout: None,
            author: "floe-writer".into(),
            #[cfg(feature = "planted-bugs")]
            bugs: super::ClientBugs::default(),
            report: WriterReport {
                checkouts: Vec::new(),
                attempts: Vec::new(),
                fast_forward_answers: Vec::new(),
                status: WriterStatus::Running,
            },
        }
    }

    /// Replaces the retry policy of its requests.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.requester.set_policy(policy);
        self
    }

    /// Plants client bugs in its decisions (simulation self-test only).
    #[cfg(feature = "planted-bugs")]
    pub fn with_bugs(mut self, bugs: super::ClientBugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// Sets the author recorded in its commits.
    pub fn with_author(mut self, author: impl Into<String>) -> Self {
        self.author = author.into();
        self
    }

    /// The script.
    pub fn script(&self) -> &WriterScript {
        &self.script
    }

    /// What it did so far.
    pub fn report(&self) -> &WriterReport {
        &self.report
    }

    /// Where it stands.
    pub fn status(&self) -> &WriterStatus {
        &self.report.status
    }

    /// The client id its requests carry.
    pub fn client(&self) -> ClientId {
        self.requester.client()
    }

    fn finish(&mut self, status: WriterStatus) {
        self.report.status = status;
        self.phase = Phase::Done;
        self.requester.cancel();
    }

    fn fail(&mut self, error: FloeError) {
        self.finish(WriterStatus::Ended(CommitEnd::Failed(error)));
    }

    fn send_checkout(&mut self) {
        let q = Query::Checkout {
            repo: self.script.repo.clone(),
            branch: self.script.branch.clone(),
        };
        self.requester.request(&mut self.out, Request::Query(q));
        self.phase = Phase::CheckingOut;
    }

    fn on_checkout(&mut self, outcome: Outcome) {
        let record = match outcome {
            Ok(Reply::Commit(record)) => *record,
            Ok(other) => return self.fail(unexpected("Checkout", &other)),
            Err(e) => return self.fail(e),
        };
        let n = self.checkout.as_ref().map_or(1, |c| c.n + 1);
        self.report.checkouts.push(record.id);
        self.cache.history.insert_record(record.clone());
        let view = View::new(record.clone());
        #[cfg(feature = "planted-bugs")]
        let view = view.with_bugs(self.bugs);
        let mut view = view;
        for path in &self.script.deletes {
            if let Err(e) = view.delete_array(path) {
                return self.fail(e);
            }
        }
        for (path, meta) in &self.script.creates {
            if let Err(e) = view.create_array(path, meta.clone()) {
                return self.fail(e);
            }
        }
        let mut rewrites = Vec::new();
        for (path, shape) in &self.script.resizes {
            match view.resize_array(path, shape.clone()) {
                Ok(r) => rewrites.extend(r),
                Err(e) => return self.fail(e),
            }
        }
        let build = Build::new(
            self.script.repo.clone(),
            record.id,
            view.arrays().clone(),
            Manifest::new(),
            self.script.writes.clone(),
        )
        .with_resized(rewrites);
        self.checkout = Some(Checkout {
            n,
            base_sent: record.id,
            view,
            footprint: Footprint::new(),
            deltas: Vec::new(),
            record,
        });
        self.phase = Phase::Building(build);
        self.build();
    }

    fn base(&self) -> CommitId {
        self.checkout.as_ref().map_or(CommitId(0), |c| c.record.id)
    }

    /// The arrays as the checkout's changes leave them.
    fn arrays(&self) -> BTreeMap<ArrayPath, ArrayMeta> {
        self.checkout
            .as_ref()
            .map(|c| c.view.arrays().clone())
            .unwrap_or_default()
    }

    /// Runs the build until it needs a fetch or is done.
    fn build(&mut self) {
        let Phase::Building(build) = &mut self.phase else {
            return;
        };
        let built = build.step(&mut self.requester, &mut self.out, &self.cache);
        self.on_built(built);
    }

    fn on_built(&mut self, built: Built) {
        match built {
            Built::Waiting => {}
            Built::Failed(e) => self.fail(e),
            Built::Done(buffers) => {
                let arrays = self.arrays();
                self.put_chunks(buffers, &arrays)
            }
        }
    }

    fn on_record(&mut self, outcome: Outcome) {
        let Phase::Building(build) = &mut self.phase else {
            return;
        };
        let (req, out) = (&mut self.requester, &mut self.out);
        let built = build.on_record(req, out, &mut self.cache, outcome);
        self.on_built(built);
    }

    fn on_get(&mut self, token: u64, result: Result<Option<Vec<u8>>, String>) {
        let Phase::Building(build) = &mut self.phase else {
            return;
        };
        let (req, out) = (&mut self.requester, &mut self.out);
        if let Some(built) = build.on_get(req, out, &mut self.cache, token, result) {
            self.on_built(built);
        }
    }

    fn put_chunks(&mut self, buffers: Buffers, arrays: &BTreeMap<ArrayPath, ArrayMeta>) {
        let mut chunks = Vec::new();
        for ((path, coord), buffer) in buffers {
            let Some(meta) = arrays.get(&path) else {
                continue;
            };
            // A chunk an earlier resize rewrote that a later shrink cut off.
            if coord.iter().zip(meta.grid()).any(|(c, g)| *c >= g) {
                continue;
            }
            match encode_chunk(meta, &buffer) {
                Ok(bytes) => chunks.push(((path, coord), bytes)),
                Err(e) => return self.fail(e),
            }
        }
        let (stage, staged) = Stage::start(&mut self.out, &mut self.rng, &self.script.repo, chunks);
        self.phase = Phase::Staging(stage);
        self.on_staged(staged);
    }

    fn on_put(&mut self, token: u64, result: Result<(), String>) {
        let Phase::Staging(stage) = &mut self.phase else {
            return;
        };
        let repo = &self.script.repo;
        let staged = stage.on_put(&mut self.out, &mut self.rng, repo, token, result);
        self.on_staged(staged);
    }

    /// The chunks and the manifest are stored: record them in the
    /// checkout's view and commit.
    fn on_staged(&mut self, staged: Staged) {
        match staged {
            Staged::Waiting => {}
            Staged::Failed(e) => self.fail(e),
            Staged::Done { written, delta } => {
                let Some(c) = self.checkout.as_mut() else {
                    return;
                };
                c.view.add_chunks(written);
                c.footprint = c.view.footprint();
                c.deltas = delta.into_iter().collect();
                self.send_commit();
            }
        }
    }

    fn send_commit(&mut self) {
        let Some(c) = self.checkout.as_ref() else {
            return self.fail(FloeError::InvalidChange {
                why: "commit without a checkout".into(),
            });
        };
        let spec = CommitSpec {
            request: CommitRequest {
                repo: self.script.repo.clone(),
                branch: self.script.branch.clone(),
                base: c.base_sent,
                footprint: c.footprint.clone(),
                deltas: c.deltas.clone(),
                message: format!("{}#{}", self.script.tag, c.n),
                author: self.author.clone(),
                mode: self.script.mode,
            },
            seed_loop: self.script.seed_loop,
            max_commits: MAX_FAST_FORWARDS,
        };
        let mut committer = Box::new(Committer::new(spec));
        committer.start(&mut self.requester, &mut self.out);
        let (attempts_from, answers_from) = (
            self.report.attempts.len(),
            self.report.fast_forward_answers.len(),
        );
        self.log_commit(&committer, attempts_from, answers_from);
        self.phase = Phase::Committing {
            committer,
            attempts_from,
            answers_from,
        };
    }

    /// Brings the report's attempts and answers up to date with the
    /// committer's (for the simulation's oracles).
    fn log_commit(&mut self, committer: &Committer, attempts_from: usize, answers_from: usize) {
        let data_base = self.base();
        let spec = &committer.spec().request;
        for (i, sent) in committer.sent().iter().enumerate() {
            let log = AttemptLog {
                message: spec.message.clone(),
                data_base,
                base_sent: sent.base,
                footprint: spec.footprint.clone(),
                mode: spec.mode,
                seq: sent.seq,
                outcome: sent.outcome.clone(),
            };
            match self.report.attempts.get_mut(attempts_from + i) {
                Some(old) => *old = log,
                None => self.report.attempts.push(log),
            }
        }
        let answers = committer.answers();
        self.report.fast_forward_answers.truncate(answers_from);
        self.report.fast_forward_answers.extend_from_slice(answers);
    }

    fn on_commit_outcome(&mut self, outcome: Outcome) {
        let Phase::Committing {
            mut committer,
            attempts_from,
            answers_from,
        } = std::mem::replace(&mut self.phase, Phase::Idle)
        else {
            return;
        };
        committer.on_outcome(&mut self.requester, &mut self.out, outcome);
        self.log_commit(&committer, attempts_from, answers_from);
        match committer.end().cloned() {
            None => {
                self.phase = Phase::Committing {
                    committer,
                    attempts_from,
                    answers_from,
                }
            }
            Some(CommitEnd::Conflict { tip, conflicts }) => self.conflict(tip, conflicts),
            Some(end) => self.finish(WriterStatus::Ended(end)),
        }
    }

    fn conflict(&mut self, tip: CommitId, conflicts: Vec<Conflict>) {
        if self.retries_left == 0 {
            return self.finish(WriterStatus::Ended(CommitEnd::Conflict { tip, conflicts }));
        }
        self.retries_left -= 1;
        self.send_checkout();
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match self.phase {
            Phase::CheckingOut => self.on_checkout(outcome),
            Phase::Building(_) => self.on_record(outcome),
            Phase::Committing { .. } => self.on_commit_outcome(outcome),
            _ => {}
        }
    }
}

impl Machine for Writer {
    fn start(&mut self, _now_ms: u64) {
        if matches!(self.phase, Phase::Idle) {
            self.send_checkout();
        }
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.is_done() {
            return;
        }
        match self.requester.route(&mut self.out, input) {
            Routed::Final(outcome) => self.on_outcome(outcome),
            Routed::Other(Input::PutDone { token, result }) => self.on_put(token, result),
            Routed::Other(Input::GetDone { token, result }) => self.on_get(token, result),
            Routed::Taken | Routed::Other(_) => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
}
