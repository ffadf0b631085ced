//! Planless cooperative sessions (`OpenSession { plan: None }`, then
//! `Contribute`): a lead opens the session; the world starts a few
//! contributors on it (the core's `ContributeTask`, as `Planless` users
//! run it), each writing whole chunks of one or two regions; once every
//! contributor is done, the world tells the lead to commit the session.
//! Overlapping contributions must be refused with `OverlappingContribution`
//! naming the shared chunks; the accepted ones land as one commit.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, ClientId, Command, CommitId, CommitMode, Outcome, Reply, RepoName,
    Request, SessionId,
};
use floe_worker::machine::{Effect, Input, Machine, Outbox, Requester, RetryPolicy};

use super::main_branch;

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
