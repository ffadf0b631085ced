//! The driver of a cooperative job: opens the session with its plan, waits
//! for every task to be done, commits the session as one commit.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, FloeError, Outcome,
    PlannedTask, Query, Reply, RepoName, Request, SessionId, SessionStatus, Solver, TaskState,
};

use super::{unexpected, Effect, Input, Machine, Outbox, Requester, RetryPolicy, Routed};

/// How often the job polls its session's state, ms.
pub const JOB_POLL_MS: u64 = 100;

/// What a [`Job`] runs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// The repo.
    pub repo: RepoName,
    /// The branch the session commits to.
    pub branch: BranchName,
    /// The chunk-aligned, disjoint tasks.
    pub plan: Vec<PlannedTask>,
    /// Lease length of a claimed task, ms.
    pub lease_ms: u64,
    /// Commit message.
    pub message: String,
    /// How the session commits; a `Strict` commit refused as `OutOfDate`
    /// is retried once with `Rebase{Fail}`.
    pub mode: CommitMode,
    /// Where `floe worker` processes read the data (see
    /// `Command::OpenSession`); `None` when the job's own workers are given
    /// their source directly.
    pub source: Option<String>,
    /// Arrays the session creates, landing with its commit (see
    /// `Command::OpenSession`); the plan's tasks may target them.
    pub create: BTreeMap<ArrayPath, ArrayMeta>,
}

/// Where a [`Job`] stands.
#[derive(Clone, Debug, PartialEq)]
pub enum JobStatus {
    /// Still working.
    Running,
    /// The session landed as this commit.
    Committed(CommitId),
    /// It failed (opening, polling or committing).
    Failed(FloeError),
}

/// What a [`Job`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct JobReport {
    /// The session, once opened.
    pub session: Option<SessionId>,
    /// Its base commit, once opened.
    pub base: Option<CommitId>,
    /// Every `CommitSession` sent: mode, seq and final outcome once answered.
    pub commits: Vec<(CommitMode, u64, Option<Outcome>)>,
    /// The outcome of the last `CommitSession`, once answered.
    pub outcome: Option<Outcome>,
    /// The session's state at the last poll (for progress reports).
    pub last_status: Option<SessionStatus>,
    /// Where it stands.
    pub status: JobStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Opening,
    Polling,
    Sleeping(u64),
    Committing,
    Done,
}

/// The driver of one cooperative job (see [`JobSpec`]).
#[derive(Debug)]
pub struct Job {
    spec: JobSpec,
    requester: Requester,
    out: Outbox,
    phase: Phase,
    arrays: Option<BTreeMap<ArrayPath, ArrayMeta>>,
    poll_ms: u64,
    author: String,
    report: JobReport,
}

impl Job {
    /// A job for `client` (a client id of its own) over coordinator `nodes`.
    pub fn new(client: ClientId, nodes: Vec<u64>, spec: JobSpec) -> Self {
        Job {
            spec,
            requester: Requester::new(client, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            phase: Phase::Idle,
            arrays: None,
            poll_ms: JOB_POLL_MS,
            author: "floe-job".into(),
            report: JobReport {
                session: None,
                base: None,
                commits: Vec::new(),
                outcome: None,
                last_status: None,
                status: JobStatus::Running,
            },
        }
    }

    /// Polls the session every `poll_ms` instead of [`JOB_POLL_MS`].
    pub fn with_poll_ms(mut self, poll_ms: u64) -> Self {
        self.poll_ms = poll_ms.max(1);
        self
    }

    /// Replaces the retry policy of its requests.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.requester.set_policy(policy);
        self
    }

    /// Sets the author recorded in the commit.
    pub fn with_author(mut self, author: impl Into<String>) -> Self {
        self.author = author.into();
        self
    }

    /// The session, once opened (so the shell can start workers).
    pub fn session(&self) -> Option<SessionId> {
        self.report.session
    }

    /// The arrays of the session's base, once opened.
    pub fn arrays(&self) -> Option<&BTreeMap<ArrayPath, ArrayMeta>> {
        self.arrays.as_ref()
    }

    /// The job's spec.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// What it did so far.
    pub fn report(&self) -> &JobReport {
        &self.report
    }

    /// Where it stands.
    pub fn status(&self) -> &JobStatus {
        &self.report.status
    }

    fn finish(&mut self, status: JobStatus) {
        self.report.status = status;
        self.phase = Phase::Done;
        self.requester.cancel();
    }

    fn fail(&mut self, error: FloeError) {
        self.finish(JobStatus::Failed(error));
    }

    fn on_open(&mut self, outcome: Outcome) {
        match outcome {
            Ok(Reply::SessionOpened {
                session,
                base,
                arrays,
            }) => {
                self.report.session = Some(session);
                self.report.base = Some(base);
                self.arrays = Some(arrays);
                self.poll_status();
            }
            Ok(other) => self.fail(unexpected("OpenSession", &other)),
            Err(e) => self.fail(e),
        }
    }

    fn poll_status(&mut self) {
        let Some(session) = self.report.session else {
            return;
        };
        let q = Query::Session { session };
        self.requester.request(&mut self.out, Request::Query(q));
        self.phase = Phase::Polling;
    }

    fn on_status(&mut self, outcome: Outcome) {
        let status = match outcome {
            Ok(Reply::Session(status)) => status,
            Ok(other) => return self.fail(unexpected("Session", &other)),
            Err(e) => return self.fail(e),
        };
        self.report.last_status = Some((*status).clone());
        match *status {
            SessionStatus {
                committed: Some(commit),
                ..
            } => self.finish(JobStatus::Committed(commit)),
            SessionStatus {
                closed: true,
                session,
                ..
            } => self.fail(FloeError::SessionClosed { session }),
            ref s
                if s.tasks
                    .iter()
                    .all(|t| matches!(t.state, TaskState::Done { .. })) =>
            {
                self.commit(self.spec.mode)
            }
            _ => self.phase = Phase::Sleeping(self.out.timer(self.poll_ms)),
        }
    }

    fn commit(&mut self, mode: CommitMode) {
        let Some(session) = self.report.session else {
            return;
        };
        let cmd = Command::CommitSession {
            session,
            message: self.spec.message.clone(),
            author: self.author.clone(),
            mode,
        };
        let seq = self.requester.request(&mut self.out, Request::Command(cmd));
        self.report.commits.push((mode, seq, None));
        self.phase = Phase::Committing;
    }

    fn on_commit(&mut self, outcome: Outcome) {
        if let Some(last) = self.report.commits.last_mut() {
            last.2 = Some(outcome.clone());
        }
        self.report.outcome = Some(outcome.clone());
        let retried = self.report.commits.len() > 1;
        match outcome {
            Ok(Reply::Committed { commit, .. }) => self.finish(JobStatus::Committed(commit)),
            Err(FloeError::OutOfDate { .. }) if !retried => self.commit(CommitMode::Rebase {
                solver: Solver::Fail,
            }),
            Ok(other) => self.fail(unexpected("CommitSession", &other)),
            Err(e) => self.fail(e),
        }
    }
}

impl Job {
    /// The final outcome of the request of the current phase.
    fn on_outcome(&mut self, outcome: Outcome) {
        match self.phase {
            Phase::Opening => self.on_open(outcome),
            Phase::Polling => self.on_status(outcome),
            Phase::Committing => self.on_commit(outcome),
            _ => {}
        }
    }
}

impl Machine for Job {
    fn start(&mut self, _now_ms: u64) {
        if self.phase != Phase::Idle {
            return;
        }
        let cmd = Command::OpenSession {
            repo: self.spec.repo.clone(),
            branch: self.spec.branch.clone(),
            plan: Some(self.spec.plan.clone()),
            lease_ms: self.spec.lease_ms,
            source: self.spec.source.clone(),
            create: self.spec.create.clone(),
        };
        self.requester.request(&mut self.out, Request::Command(cmd));
        self.phase = Phase::Opening;
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.is_done() {
            return;
        }
        match self.requester.route(&mut self.out, input) {
            Routed::Final(outcome) => self.on_outcome(outcome),
            Routed::Other(Input::Timer { token }) if self.phase == Phase::Sleeping(token) => {
                self.poll_status()
            }
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
