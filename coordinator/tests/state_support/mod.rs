//! Shared helpers for the state machine tests: a harness that stamps
//! envelopes and advances a fake leader clock.
#![allow(dead_code)]

use floe_coordinator::state::{Config, State};
use floe_coordinator::StateMachine;
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, CommitRecord,
    CommitRequest, DType, Envelope, FloeError, Footprint, MetaChange, ObjectId, Outcome,
    PlannedTask, Query, Region, Reply, RepoName, Request, SessionId, SessionStatus, Solver,
};

pub const REBASE: CommitMode = CommitMode::Rebase {
    solver: Solver::Fail,
};

pub fn repo() -> RepoName {
    RepoName::new("r").unwrap()
}

pub fn main_branch() -> BranchName {
    BranchName::new("main").unwrap()
}

pub fn branch(name: &str) -> BranchName {
    BranchName::new(name).unwrap()
}

pub fn path(p: &str) -> ArrayPath {
    ArrayPath::new(p).unwrap()
}

pub fn meta(shape: &[u64], chunks: &[u64]) -> ArrayMeta {
    ArrayMeta::new(shape.to_vec(), chunks.to_vec(), DType::I32, 0.0).unwrap()
}

pub fn region(text: &str) -> Region {
    text.parse().unwrap()
}

/// The footprint of writing `region` of `array` (metadata `m`).
pub fn writes(array: &str, m: &ArrayMeta, region_text: &str) -> Footprint {
    let mut f = Footprint::new();
    f.add_region(&path(array), m, &region(region_text));
    f
}

/// The footprint of a metadata change.
pub fn meta_change(array: &str, m: &ArrayMeta, change: MetaChange) -> Footprint {
    let mut f = Footprint::new();
    f.set_meta(&path(array), m, change);
    f
}

pub fn task(array: &str, region_text: &str) -> PlannedTask {
    PlannedTask {
        array: path(array),
        region: region(region_text),
    }
}

/// Drives a [`State`] the way a Raft node would: every command in an
/// envelope with a fresh `(client, seq)` and a leader timestamp.
pub struct Harness {
    pub state: State,
    pub client: ClientId,
    pub seq: u64,
    /// The leader clock; each command advances it by 1 ms.
    pub now: u64,
    next_object: u128,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Self {
        Harness {
            state: State::new(config),
            client: ClientId(7),
            seq: 0,
            now: 1_000,
            next_object: 1,
        }
        .opened()
    }

    /// Opens the harness client's session.
    fn opened(mut self) -> Self {
        let open = Envelope {
            client: self.client,
            seq: 0,
            request: Request::Command(Command::OpenClient),
        };
        assert_eq!(self.state.apply(self.now, &open), Ok(Reply::Done));
        self
    }

    /// A harness with repo `r` created.
    pub fn with_repo() -> Self {
        let mut h = Self::new();
        h.create_repo();
        h
    }

    pub fn envelope(&mut self, command: Command) -> Envelope {
        self.seq += 1;
        Envelope {
            client: self.client,
            seq: self.seq,
            request: Request::Command(command),
        }
    }

    pub fn cmd(&mut self, command: Command) -> Outcome {
        self.now += 1;
        let env = self.envelope(command);
        self.state.apply(self.now, &env)
    }

    pub fn query(&self, query: Query) -> Outcome {
        self.state.query(&query)
    }

    pub fn object(&mut self) -> ObjectId {
        self.next_object += 1;
        ObjectId(self.next_object)
    }

    pub fn create_repo(&mut self) {
        let r = self.cmd(Command::CreateRepo { repo: repo() });
        assert_eq!(r, Ok(Reply::RepoCreated { root: CommitId(0) }));
    }

    pub fn tip(&self) -> CommitId {
        self.tip_of(&main_branch())
    }

    pub fn tip_of(&self, b: &BranchName) -> CommitId {
        match self.query(Query::Checkout {
            repo: repo(),
            branch: b.clone(),
        }) {
            Ok(Reply::Commit(c)) => c.id,
            other => panic!("checkout failed: {other:?}"),
        }
    }

    pub fn record(&self, id: CommitId) -> CommitRecord {
        match self.query(Query::GetCommit {
            repo: repo(),
            commit: id,
        }) {
            Ok(Reply::Commit(c)) => *c,
            other => panic!("get commit failed: {other:?}"),
        }
    }

    /// Commits `footprint` on `main` from `base` with one fresh delta.
    pub fn commit(&mut self, base: CommitId, footprint: Footprint, mode: CommitMode) -> Outcome {
        self.commit_on(&main_branch(), base, footprint, mode)
    }

    pub fn commit_on(
        &mut self,
        b: &BranchName,
        base: CommitId,
        footprint: Footprint,
        mode: CommitMode,
    ) -> Outcome {
        let delta = self.object();
        self.cmd(Command::Commit(CommitRequest {
            repo: repo(),
            branch: b.clone(),
            base,
            footprint,
            deltas: vec![delta],
            message: "test".into(),
            author: "tester".into(),
            mode,
        }))
    }

    /// Creates `array` on `main` at the tip; returns the new commit.
    pub fn create_array(&mut self, array: &str, m: &ArrayMeta) -> CommitId {
        let tip = self.tip();
        let f = meta_change(array, m, MetaChange::Create(m.clone()));
        committed(self.commit(tip, f, CommitMode::Strict))
    }

    pub fn can_fast_forward(&self, base: CommitId, footprint: &Footprint) -> Outcome {
        self.query(Query::CanFastForward {
            repo: repo(),
            branch: main_branch(),
            base,
            footprint: footprint.clone(),
        })
    }

    pub fn open_session(&mut self, plan: Option<Vec<PlannedTask>>, lease_ms: u64) -> Outcome {
        self.open_session_with(plan, lease_ms, &[])
    }

    /// Opens a session on `main` (lease 60 s) that creates `create`.
    pub fn open_creating(
        &mut self,
        plan: Option<Vec<PlannedTask>>,
        create: &[(&str, &ArrayMeta)],
    ) -> Outcome {
        self.open_session_with(plan, 60_000, create)
    }

    fn open_session_with(
        &mut self,
        plan: Option<Vec<PlannedTask>>,
        lease_ms: u64,
        create: &[(&str, &ArrayMeta)],
    ) -> Outcome {
        self.cmd(Command::OpenSession {
            repo: repo(),
            branch: main_branch(),
            plan,
            lease_ms,
            source: None,
            create: create
                .iter()
                .map(|(p, m)| (path(p), (*m).clone()))
                .collect(),
        })
    }

    pub fn status(&self, session: SessionId) -> SessionStatus {
        match self.query(Query::Session { session }) {
            Ok(Reply::Session(s)) => *s,
            other => panic!("session query failed: {other:?}"),
        }
    }

    pub fn digest(&self) -> u64 {
        self.state.digest()
    }
}

/// The commit id of a `Committed` outcome; panics otherwise.
pub fn committed(outcome: Outcome) -> CommitId {
    match outcome {
        Ok(Reply::Committed { commit, .. }) => commit,
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// The session id of a `SessionOpened` outcome; panics otherwise.
pub fn opened(outcome: Outcome) -> SessionId {
    match outcome {
        Ok(Reply::SessionOpened { session, .. }) => session,
        other => panic!("expected a session, got {other:?}"),
    }
}

/// The `why` of an `InvalidPlan`; panics otherwise.
pub fn plan_error(outcome: Outcome) -> String {
    match outcome {
        Err(FloeError::InvalidPlan { why }) => why,
        other => panic!("expected InvalidPlan, got {other:?}"),
    }
}

/// The `why` of an `InvalidChange`; panics otherwise.
pub fn change_error(outcome: Outcome) -> String {
    match outcome {
        Err(FloeError::InvalidChange { why }) => why,
        other => panic!("expected InvalidChange, got {other:?}"),
    }
}
