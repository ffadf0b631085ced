//! The replicated state machine: repos, branches, tags, commit records,
//! cooperative sessions and the idempotency table.
//!
//! Deterministic: time comes only from the leader timestamp carried by each
//! command (made monotonic), every collection iterates in key order, and the
//! whole state encodes canonically for snapshots and digests.

mod commit;
mod index;
#[cfg(test)]
mod index_tests;
mod plan;
mod repo;
mod session;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hasher};

use floe_protocol::codec;
use floe_protocol::{
    ClientId, Command, Envelope, FloeError, Outcome, Query, RepoName, Request, SessionId,
};

use crate::machine::StateMachine;
use repo::Repo;
use session::Session;

pub use plan::{MAX_LEASE_MS, MAX_PLAN_ROWS, MAX_TASKS};

/// Tuning of the state machine. Not replicated: every replica must be
/// started with the same configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// How many sequence numbers per client are remembered, counting back
    /// from the highest seen; older ones get `SeqTooOld`.
    pub idempotency_window: u64,
    /// A client session with no command for this long (leader time, ms)
    /// is dropped from the idempotency table; its later commands get
    /// `SessionExpired`. 0: sessions never expire.
    pub client_expiry_ms: u64,
    /// Planted bugs for the simulation's self-test.
    #[cfg(feature = "planted-bugs")]
    pub bugs: crate::bugs::Bugs,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idempotency_window: 4096,
            client_expiry_ms: DEFAULT_CLIENT_EXPIRY_MS,
            #[cfg(feature = "planted-bugs")]
            bugs: crate::bugs::Bugs::default(),
        }
    }
}

/// How long a client session lives without a command, by default: an hour.
pub const DEFAULT_CLIENT_EXPIRY_MS: u64 = 3_600_000;

/// The outcomes remembered for one client.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ClientLog {
    /// Leader time of its last command.
    last_active: u64,
    /// Highest sequence number executed.
    highest: u64,
    /// Outcomes of the retained sequence numbers.
    outcomes: BTreeMap<u64, Outcome>,
}

/// What the idempotency table says about an envelope.
enum Seen {
    /// Never executed: run it.
    Fresh,
    /// Executed before: this was the outcome.
    Replay(Outcome),
    /// Older than the retained window.
    TooOld,
    /// The client has no session (expired, or never opened).
    NoSession,
}

/// The whole replicated state. See the module documentation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(skip)]
    config: Config,
    /// Monotonic leader time, ms since the epoch.
    time: u64,
    repos: BTreeMap<RepoName, Repo>,
    sessions: BTreeMap<SessionId, Session>,
    /// Number of sessions ever opened; the next one is `S{sessions_opened + 1}`.
    sessions_opened: u64,
    clients: BTreeMap<ClientId, ClientLog>,
    /// The clients by last activity, oldest first (rebuilt on restore).
    #[serde(skip)]
    by_activity: BTreeSet<(u64, ClientId)>,
}

impl State {
    /// An empty state: no repos, no sessions.
    pub fn new(config: Config) -> Self {
        State {
            config,
            ..State::default()
        }
    }

    /// The state's clock: the highest leader timestamp applied so far.
    pub fn time(&self) -> u64 {
        self.time
    }

    /// The configuration this state runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `ResolveTag`, or with the planted bug, the tip of the tagged
    /// commit's branch.
    fn resolve_tag(&self, repo: &RepoName, tag: &floe_protocol::TagName) -> Outcome {
        let repo = self.repo(repo)?;
        let outcome = repo.resolve_tag(tag);
        #[cfg(feature = "planted-bugs")]
        if let (true, Ok(floe_protocol::Reply::Commit(rec))) =
            (self.config.bugs.tag_follows_branch, &outcome)
        {
            return repo.checkout(&rec.branch);
        }
        outcome
    }

    fn repo(&self, name: &RepoName) -> Result<&Repo, FloeError> {
        self.repos
            .get(name)
            .ok_or_else(|| FloeError::UnknownRepo { repo: name.clone() })
    }

    fn repo_mut(&mut self, name: &RepoName) -> Result<&mut Repo, FloeError> {
        self.repos
            .get_mut(name)
            .ok_or_else(|| FloeError::UnknownRepo { repo: name.clone() })
    }

    fn seen(&self, client: ClientId, seq: u64) -> Seen {
        let Some(log) = self.clients.get(&client) else {
            return Seen::NoSession;
        };
        if let Some(outcome) = log.outcomes.get(&seq) {
            return Seen::Replay(outcome.clone());
        }
        if seq < seq_floor(log.highest, self.config.idempotency_window) {
            return Seen::TooOld;
        }
        Seen::Fresh
    }

    /// Opens `client`'s session, or keeps it alive, at the state's time.
    fn touch(&mut self, client: ClientId) {
        let now = self.time;
        let log = self.clients.entry(client).or_default();
        self.by_activity.remove(&(log.last_active, client));
        log.last_active = now;
        self.by_activity.insert((now, client));
    }

    /// Drops the sessions idle for the expiry or longer.
    fn expire_clients(&mut self) {
        let expiry = self.config.client_expiry_ms;
        if expiry == 0 || self.time < expiry {
            return;
        }
        let horizon = self.time - expiry;
        while let Some(&(last, client)) = self.by_activity.first() {
            if last > horizon {
                break;
            }
            self.by_activity.pop_first();
            self.clients.remove(&client);
        }
    }

    fn remember(&mut self, client: ClientId, seq: u64, outcome: &Outcome) {
        let window = self.config.idempotency_window;
        let log = self.clients.entry(client).or_default();
        log.highest = log.highest.max(seq);
        log.outcomes.insert(seq, outcome.clone());
        let floor = seq_floor(log.highest, window);
        if log
            .outcomes
            .first_key_value()
            .is_some_and(|(&s, _)| s < floor)
        {
            log.outcomes = log.outcomes.split_off(&floor);
        }
    }

    /// Executes one command against the state (no idempotency check).
    fn execute(&mut self, command: &Command) -> Outcome {
        match command {
            Command::CreateRepo { repo } => self.create_repo(repo),
            Command::CreateBranch { repo, branch, at } => {
                self.repo_mut(repo)?.create_branch(branch, *at)
            }
            Command::CreateTag { repo, tag, at } => self.repo_mut(repo)?.create_tag(tag, *at),
            Command::Commit(request) => self.commit(request),
            Command::OpenSession {
                repo,
                branch,
                plan,
                lease_ms,
                source,
                create,
            } => self.open_session(
                repo,
                branch,
                plan.as_deref(),
                *lease_ms,
                source.as_deref(),
                create,
            ),
            Command::ClaimTask { session, worker } => self.claim_task(*session, *worker),
            Command::RenewLease {
                session,
                task,
                epoch,
            } => self.renew_lease(*session, *task, *epoch),
            Command::CompleteTask {
                session,
                task,
                epoch,
                delta,
                footprint,
                next,
            } => {
                let done = self.complete_task(*session, *task, *epoch, *delta, footprint);
                match (done, next) {
                    (Ok(floe_protocol::Reply::Accepted { unfinished }), Some(worker))
                        if unfinished > 0 =>
                    {
                        Ok(self.claim_next(*session, *worker, unfinished))
                    }
                    (done, _) => done,
                }
            }
            Command::Contribute {
                session,
                worker: _,
                delta,
                footprint,
            } => self.contribute(*session, *delta, footprint),
            Command::CommitSession {
                session,
                message,
                author,
                mode,
            } => self.commit_session(*session, message, author, *mode),
            Command::AbortSession { session } => self.abort_session(*session),
            Command::RecordCheckpoint {
                repo,
                commit,
                checkpoint,
            } => self.repo_mut(repo)?.record_checkpoint(*commit, *checkpoint),
            // Handled before the idempotency check (see `apply`).
            Command::OpenClient => Ok(floe_protocol::Reply::Done),
            // The node core decides it; it never reaches the log as a command.
            Command::ChangeMembers(_) => Err(FloeError::Unavailable(
                "membership changes are decided by the Raft node, not the state machine".into(),
            )),
        }
    }

    fn create_repo(&mut self, name: &RepoName) -> Outcome {
        if self.repos.contains_key(name) {
            return Err(FloeError::RepoExists { repo: name.clone() });
        }
        let repo = Repo::new(name.clone(), self.time);
        let root = repo.root();
        self.repos.insert(name.clone(), repo);
        Ok(floe_protocol::Reply::RepoCreated { root })
    }
}

/// Lowest sequence number retained when `highest` is the highest seen.
fn seq_floor(highest: u64, window: u64) -> u64 {
    highest.saturating_sub(window.max(1) - 1)
}

impl StateMachine for State {
    fn apply(&mut self, now_ms: u64, envelope: &Envelope) -> Outcome {
        let command = match &envelope.request {
            Request::Query(query) => return self.query(query),
            Request::Command(command) => command,
        };
        let client = envelope.client;
        if *command == Command::OpenClient {
            self.time = self.time.max(now_ms);
            self.expire_clients();
            self.touch(client);
            return Ok(floe_protocol::Reply::Done);
        }
        // A retry, or a refusal, changes nothing (not even the clock).
        match self.seen(client, envelope.seq) {
            Seen::Replay(outcome) => return outcome,
            Seen::TooOld => {
                return Err(FloeError::SeqTooOld {
                    client: client.0,
                    seq: envelope.seq,
                })
            }
            Seen::NoSession => return Err(FloeError::SessionExpired { client: client.0 }),
            Seen::Fresh => {}
        }
        self.time = self.time.max(now_ms);
        self.expire_clients();
        if !self.clients.contains_key(&client) {
            // Idle past the expiry: its outcomes are gone, so an older
            // retry could no longer be recognised; refuse, execute nothing.
            return Err(FloeError::SessionExpired { client: client.0 });
        }
        self.touch(client);
        let outcome = self.execute(command);
        self.remember(envelope.client, envelope.seq, &outcome);
        outcome
    }

    fn query(&self, query: &Query) -> Outcome {
        match query {
            Query::Checkout { repo, branch } => self.repo(repo)?.checkout(branch),
            Query::ResolveTag { repo, tag } => self.resolve_tag(repo, tag),
            Query::GetCommit { repo, commit } => self.repo(repo)?.get_commit(*commit),
            Query::Log {
                repo,
                branch,
                limit,
            } => self.repo(repo)?.log(branch, *limit),
            Query::CanFastForward {
                repo,
                branch,
                base,
                footprint,
            } => self.can_fast_forward(repo, branch, *base, footprint),
            Query::Session { session } => self.session_status(*session),
            Query::OpenSessions => self.open_sessions(),
            Query::Refs { repo } => self.repo(repo)?.refs(),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, FloeError> {
        Ok(codec::encode_snapshot(self)?)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), FloeError> {
        let mut restored: State = codec::decode_snapshot(snapshot)?;
        restored.config = self.config.clone();
        restored.by_activity = restored
            .clients
            .iter()
            .map(|(&client, log)| (log.last_active, client))
            .collect();
        #[cfg(feature = "planted-bugs")]
        if restored.config.bugs.forget_idempotency_on_restore {
            for log in restored.clients.values_mut() {
                log.outcomes.clear();
                log.highest = 0;
            }
        }
        #[cfg(feature = "planted-bugs")]
        if restored.config.bugs.index_lost_on_restore {
            for repo in restored.repos.values_mut() {
                repo.forget_indexes();
            }
        }
        *self = restored;
        Ok(())
    }

    fn digest(&self) -> u64 {
        match codec::snapshot_digest(self) {
            Ok(digest) => digest,
            // Deterministic on every replica, so replicas still compare;
            // the node reports the same error when it tries to snapshot.
            Err(error) => {
                let mut hasher = DefaultHasher::new();
                hasher.write(error.to_string().as_bytes());
                hasher.finish()
            }
        }
    }
}
