//! The setup client: creates the repo, then commits the creation of the
//! workload's arrays on `C0`. Runs under faults like everyone else.

use floe_protocol::{
    ArrayMeta, ArrayPath, ClientId, Command, CommitId, CommitMode, CommitRequest, Footprint,
    MetaChange, Outcome, Reply, RepoName, Request,
};

use super::main_branch;
use crate::obs::Attempt;
use floe_worker::machine::{Effect, Input, Machine, Outbox, Requester, RetryPolicy};

/// The message of the setup commit.
pub const SETUP_MESSAGE: &str = "setup: create arrays";

enum Step {
    CreateRepo,
    Commit,
    Done,
}

/// Creates the repo and its arrays.
pub struct Setup {
    req: Requester,
    out: Outbox,
    repo: RepoName,
    arrays: Vec<(ArrayPath, ArrayMeta)>,
    step: Step,
    /// The setup commit, as sent (for the oracles).
    pub attempt: Option<Attempt>,
}

impl Setup {
    /// A setup client for `repo` and `arrays`.
    pub fn new(
        client: ClientId,
        nodes: Vec<u64>,
        repo: RepoName,
        arrays: Vec<(ArrayPath, ArrayMeta)>,
    ) -> Self {
        Setup {
            req: Requester::new(client, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            repo,
            arrays,
            step: Step::CreateRepo,
            attempt: None,
        }
    }

    fn commit(&mut self) {
        let mut footprint = Footprint::new();
        for (path, meta) in &self.arrays {
            footprint.set_meta(path, meta, MetaChange::Create(meta.clone()));
        }
        let mode = CommitMode::Strict;
        let request = CommitRequest {
            repo: self.repo.clone(),
            branch: main_branch(),
            base: CommitId(0),
            footprint: footprint.clone(),
            deltas: Vec::new(),
            message: SETUP_MESSAGE.into(),
            author: "sim".into(),
            mode,
        };
        self.attempt = Some(Attempt {
            client: 0,
            message: SETUP_MESSAGE.into(),
            data_base: CommitId(0),
            base_sent: CommitId(0),
            footprint,
            resizes: Vec::new(),
            recreates: false,
            writes: Vec::new(),
            mode,
            outcome: None,
        });
        let cmd = Request::Command(Command::Commit(request));
        self.req.request(&mut self.out, cmd);
        self.step = Step::Commit;
    }

    fn finished(&mut self, outcome: Outcome) {
        match self.step {
            Step::CreateRepo => {
                // RepoExists: an earlier try of ours created it.
                self.commit();
            }
            Step::Commit => {
                if let Some(a) = self.attempt.as_mut() {
                    a.outcome = Some(outcome);
                }
                self.step = Step::Done;
            }
            Step::Done => {}
        }
    }
}

impl Machine for Setup {
    fn start(&mut self, _now_ms: u64) {
        let repo = self.repo.clone();
        let cmd = Request::Command(Command::CreateRepo { repo });
        self.req.request(&mut self.out, cmd);
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if let Some(outcome) = self.req.on_input(&mut self.out, input) {
            self.finished(outcome);
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        matches!(self.step, Step::Done)
    }
}

/// True when a setup outcome means the arrays exist.
pub fn succeeded(outcome: &Outcome) -> bool {
    matches!(outcome, Ok(Reply::Committed { .. }))
}
