//! Planless cooperative sessions (`OpenSession { plan: None }`, then
//! `Contribute`): a lead opens the session; the world starts a few
//! contributors on it, each writing whole chunks of one or two regions
//! and contributing its delta manifest; once every contributor is done,
//! the world tells the lead to commit the session. Overlapping
//! contributions must be refused with `OverlappingContribution` naming
//! the shared chunks; the accepted ones land as one commit.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, ClientId, Command, CommitId, CommitMode, Outcome, Region, Reply,
    RepoName, Request, SessionId, WorkerId,
};
use floe_worker::machine::{Effect, Input, Machine, Outbox, Requester, RetryPolicy, Routed};

use super::main_branch;
use super::upload::{Progress, Upload};
use crate::model::Write;
use crate::obs::Contribution;

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
            branch: main_branch(),
            plan: None,
            lease_ms: self.lease_ms,
        };
        self.req.request(&mut self.out, Request::Command(cmd));
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if let Some(o) = self.req.on_input(&mut self.out, input) {
            self.on_outcome(o);
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.step == LeadStep::Done
    }
}

/// A planless writer: puts whole chunks and a delta manifest, then
/// contributes them to the session.
pub struct Contributor {
    req: Requester,
    out: Outbox,
    worker: WorkerId,
    session: SessionId,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    writes: Vec<(ArrayPath, Region, Vec<u8>)>,
    upload: Upload,
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
            worker,
            session,
            arrays,
            writes,
            upload: Upload::new(crate::workload::repo(), seed),
            done: false,
            contribution: None,
        }
    }

    fn upload(&mut self) {
        let progress = self.upload.start(&mut self.out, &self.arrays, &self.writes);
        self.on_progress(progress);
    }

    fn on_progress(&mut self, progress: Progress) {
        match progress {
            Progress::Waiting => {}
            Progress::Failed => self.done = true,
            Progress::Done => self.contribute(),
        }
    }

    fn contribute(&mut self) {
        self.contribution = Some(Contribution {
            worker: self.worker,
            delta: self.upload.manifest_id,
            footprint: self.upload.footprint.clone(),
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
            delta: self.upload.manifest_id,
            footprint: self.upload.footprint.clone(),
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
        match self.req.route(&mut self.out, input) {
            Routed::Final(o) => {
                if let Some(c) = self.contribution.as_mut() {
                    c.outcome = Some(o);
                }
                self.done = true;
            }
            Routed::Other(Input::PutDone { token, result }) => {
                let progress = self.upload.on_put(&mut self.out, token, result.is_ok());
                self.on_progress(progress);
            }
            Routed::Taken | Routed::Other(_) => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.done
    }
}
