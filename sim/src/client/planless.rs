//! Planless cooperative sessions (`OpenSession { plan: None }`, then
//! `Contribute`): a lead opens the session; the world starts a few
//! contributors on it, each writing whole chunks of one or two regions
//! and contributing its delta manifest; once every contributor is done,
//! the world tells the lead to commit the session. Overlapping
//! contributions must be refused with `OverlappingContribution` naming
//! the shared chunks; the accepted ones land as one commit.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, Footprint, ObjectId,
    Outcome, Region, Reply, RepoName, Request, SessionId, WorkerId,
};
use floe_worker::chunk::patch_chunk;
use floe_worker::data::ArrayData;
use floe_worker::format::{chunk_key, encode_chunk, manifest_key, Manifest};
use floe_worker::machine::{Effect, Input, Machine, Outbox, Requester, RetryPolicy};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::model::Write;
use crate::obs::Contribution;

/// Most tries of one put before a contributor gives up.
const MAX_PUTS: u32 = 8;

#[derive(Debug, PartialEq, Eq)]
enum LeadStep {
    Open,
    Wait,
    Commit,
    Done,
}

/// Opens a planless session and, when told, commits it.
pub struct PlanlessLead {
    req: Requester,
    out: Outbox,
    repo: RepoName,
    step: LeadStep,
    lease_ms: u64,
    /// The session's commit message.
    pub message: String,
    /// The commit mode.
    pub mode: CommitMode,
    /// The session, once open.
    pub session: Option<SessionId>,
    /// Its base, once open.
    pub base: Option<CommitId>,
    /// The base's arrays, once open.
    pub arrays: Option<BTreeMap<ArrayPath, ArrayMeta>>,
    /// The outcome of `CommitSession`, once final.
    pub outcome: Option<Outcome>,
}

impl PlanlessLead {
    /// A lead committing as `message` with `mode`.
    pub fn new(
        id: ClientId,
        nodes: Vec<u64>,
        repo: RepoName,
        message: String,
        mode: CommitMode,
    ) -> Self {
        PlanlessLead {
            req: Requester::new(id, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            repo,
            step: LeadStep::Open,
            lease_ms: 1_000,
            message,
            mode,
            session: None,
            base: None,
            arrays: None,
            outcome: None,
        }
    }

    /// True once the session is open and the lead waits for its writers.
    pub fn waiting(&self) -> bool {
        self.step == LeadStep::Wait
    }

    /// Every contributor is done: commit the session.
    pub fn commit(&mut self) {
        let Some(session) = self.session.filter(|_| self.step == LeadStep::Wait) else {
            return;
        };
        self.step = LeadStep::Commit;
        let cmd = Command::CommitSession {
            session,
            message: self.message.clone(),
            author: "planless".into(),
            mode: self.mode,
        };
        self.req.request(&mut self.out, Request::Command(cmd));
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match self.step {
            LeadStep::Open => match outcome {
                Ok(Reply::SessionOpened {
                    session,
                    base,
                    arrays,
                }) => {
                    self.session = Some(session);
                    self.base = Some(base);
                    self.arrays = Some(arrays);
                    self.step = LeadStep::Wait;
                }
                _ => self.step = LeadStep::Done,
            },
            LeadStep::Commit => {
                self.outcome = Some(outcome);
                self.step = LeadStep::Done;
            }
            LeadStep::Wait | LeadStep::Done => {}
        }
    }
}

impl Machine for PlanlessLead {
    fn start(&mut self, _now_ms: u64) {
        let cmd = Command::OpenSession {
            repo: self.repo.clone(),
            branch: main(),
            plan: None,
            lease_ms: self.lease_ms,
        };
        self.req.request(&mut self.out, Request::Command(cmd));
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        match input {
            Input::Response { seq, outcome } => {
                if let Some(o) = self.req.on_response(&mut self.out, seq, outcome) {
                    self.on_outcome(o);
                }
            }
            Input::Timer { token } => {
                self.req.on_timer(&mut self.out, token);
            }
            Input::PutDone { .. } | Input::GetDone { .. } => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.step == LeadStep::Done
    }
}

/// A chunk (array and coordinate) or, for `None`, the delta manifest.
type Object = Option<(ArrayPath, Vec<u64>)>;

/// A planless writer: puts whole chunks and a delta manifest, then
/// contributes them to the session.
pub struct Contributor {
    req: Requester,
    out: Outbox,
    rng: SmallRng,
    repo: RepoName,
    worker: WorkerId,
    session: SessionId,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    writes: Vec<(ArrayPath, Region, Vec<u8>)>,
    footprint: Footprint,
    manifest: Manifest,
    manifest_id: ObjectId,
    puts: BTreeMap<u64, (Object, Vec<u8>, u32)>,
    done: bool,
    /// The contribution sent, with its outcome once final.
    pub contribution: Option<Contribution>,
}

impl Contributor {
    /// A contributor writing `writes` (chunk-aligned regions of the
    /// session's base arrays) into `session` of the simulation's repo.
    pub fn new(
        id: ClientId,
        nodes: Vec<u64>,
        worker: WorkerId,
        session: SessionId,
        arrays: BTreeMap<ArrayPath, ArrayMeta>,
        writes: Vec<(ArrayPath, Region, Vec<u8>)>,
        seed: u64,
    ) -> Self {
        Contributor {
            req: Requester::new(id, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            repo: crate::workload::repo(),
            worker,
            session,
            arrays,
            writes,
            footprint: Footprint::new(),
            manifest: Manifest::new(),
            manifest_id: ObjectId(0),
            puts: BTreeMap::new(),
            done: false,
            contribution: None,
        }
    }

    fn upload(&mut self) {
        for (path, region, bytes) in self.writes.clone() {
            let Some(meta) = self.arrays.get(&path).cloned() else {
                self.done = true;
                return;
            };
            self.footprint.add_region(&path, &meta, &region);
            let data = ArrayData {
                dtype: meta.dtype,
                shape: region.shape(),
                bytes,
            };
            for part in region.chunk_parts(&meta) {
                let built =
                    patch_chunk(&meta, None, &part, &data).and_then(|b| encode_chunk(&meta, &b));
                let Ok(object) = built else {
                    self.done = true;
                    return;
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
                chunk_key(&self.repo, id)
            }
            None => {
                self.manifest_id = id;
                manifest_key(&self.repo, id)
            }
        };
        let token = self.out.put(key.to_string(), bytes.clone());
        self.puts.insert(token, (what, bytes, tries));
    }

    fn put_manifest(&mut self) {
        match self.manifest.encode() {
            Ok(bytes) => self.put(None, bytes, 1),
            Err(_) => self.done = true,
        }
    }

    fn on_put(&mut self, token: u64, ok: bool) {
        let Some((what, bytes, tries)) = self.puts.remove(&token) else {
            return;
        };
        if !ok {
            if tries >= MAX_PUTS {
                self.done = true;
                return;
            }
            return self.put(what, bytes, tries + 1);
        }
        if !self.puts.is_empty() {
            return;
        }
        match what {
            Some(_) => self.put_manifest(),
            None => self.contribute(),
        }
    }

    fn contribute(&mut self) {
        self.contribution = Some(Contribution {
            worker: self.worker,
            delta: self.manifest_id,
            footprint: self.footprint.clone(),
            writes: self
                .writes
                .iter()
                .map(|(path, region, data)| Write {
                    path: path.clone(),
                    region: region.clone(),
                    data: data.clone(),
                })
                .collect(),
            outcome: None,
        });
        let cmd = Command::Contribute {
            session: self.session,
            worker: self.worker,
            delta: self.manifest_id,
            footprint: self.footprint.clone(),
        };
        self.req.request(&mut self.out, Request::Command(cmd));
    }
}

impl Machine for Contributor {
    fn start(&mut self, _now_ms: u64) {
        self.upload();
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.done {
            return;
        }
        match input {
            Input::Response { seq, outcome } => {
                if let Some(o) = self.req.on_response(&mut self.out, seq, outcome) {
                    if let Some(c) = self.contribution.as_mut() {
                        c.outcome = Some(o);
                    }
                    self.done = true;
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
        self.done
    }
}

fn main() -> BranchName {
    BranchName::new("main").expect("valid")
}
