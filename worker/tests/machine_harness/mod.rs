//! A tiny synchronous world for driving the sans-IO machines in tests: a
//! bare coordinator `State` answers `Send`s, a map answers puts and gets,
//! timers fire in time order when nothing else is pending. Faults are
//! hooks: hold an effect back, answer a request without applying it,
//! replace or drop a response, fail puts.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use floe_coordinator::state::Config;
use floe_coordinator::{State, StateMachine};
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, CommitRecord,
    CommitRequest, Envelope, Footprint, MetaChange, Outcome, Query, Region, Reply, RepoName,
    Request,
};
use floe_worker::chunk::extract_part;
use floe_worker::format::{chunk_key, decode_chunk, manifest_key};
use floe_worker::machine::{Effect, Input, Machine};
use floe_worker::resolve::{History, Location, Need, Step};
use floe_worker::{ArrayData, Manifest};

/// What to do with a request before the state sees it.
pub enum Before {
    /// Apply it.
    Apply,
    /// Lose it.
    Drop,
    /// Answer this without applying it.
    Answer(Outcome),
}

/// `(machine, node, envelope, done flags)` -> what to do.
pub type BeforeHook = Box<dyn FnMut(usize, u64, &Envelope) -> Before>;
/// `(machine, node, envelope, outcome)` -> the response delivered (`None`: lost).
pub type AfterHook = Box<dyn FnMut(usize, u64, &Envelope, &Outcome) -> Option<Outcome>>;
/// `(machine, effect, done flags)` -> true to hold the effect back for now.
pub type HoldHook = Box<dyn FnMut(usize, &Effect, &[bool]) -> bool>;

pub fn repo() -> RepoName {
    RepoName::new("r").unwrap()
}

pub fn main_branch() -> BranchName {
    BranchName::new("main").unwrap()
}

pub fn path(p: &str) -> ArrayPath {
    ArrayPath::new(p).unwrap()
}

pub fn region(text: &str) -> Region {
    text.parse().unwrap()
}

/// i32 data for `region` with element `i` = `f(i)` (row-major index in the region).
pub fn ints(region: &Region, f: impl Fn(usize) -> i32) -> ArrayData {
    let vals: Vec<i32> = (0..region.elements() as usize).map(f).collect();
    ArrayData::from_slice(&region.shape(), &vals).unwrap()
}

pub struct World {
    pub state: State,
    pub store: BTreeMap<String, Vec<u8>>,
    pub now: u64,
    timers: BTreeMap<(u64, u64), (usize, u64)>,
    timer_order: u64,
    inbox: VecDeque<(usize, Input)>,
    parked: Vec<(usize, Effect)>,
    /// Every effect polled, as `"{machine} {effect:?}"`.
    pub trace: Vec<String>,
    /// Every envelope sent: machine, node, envelope.
    pub sends: Vec<(usize, u64, Envelope)>,
    /// Keys whose put was failed.
    pub failed_puts: Vec<String>,
    /// Fail this many of the next puts.
    pub fail_puts: u32,
    pub before: BeforeHook,
    pub after: AfterHook,
    pub hold: HoldHook,
    setup_seq: u64,
}

impl World {
    /// A world with repo `r` whose `main` is at C1, which creates `path` with `meta`.
    pub fn with_array(path: &ArrayPath, meta: &ArrayMeta) -> Self {
        let mut w = World {
            state: State::new(Config::default()),
            store: BTreeMap::new(),
            now: 1_000,
            timers: BTreeMap::new(),
            timer_order: 0,
            inbox: VecDeque::new(),
            parked: Vec::new(),
            trace: Vec::new(),
            sends: Vec::new(),
            failed_puts: Vec::new(),
            fail_puts: 0,
            before: Box::new(|_, _, _| Before::Apply),
            after: Box::new(|_, _, _, o| Some(o.clone())),
            hold: Box::new(|_, _, _| false),
            setup_seq: 0,
        };
        let opened = w.setup(Command::OpenClient);
        assert_eq!(opened, Ok(Reply::Done));
        let created = w.setup(Command::CreateRepo { repo: repo() });
        assert!(
            matches!(created, Ok(Reply::RepoCreated { .. })),
            "{created:?}"
        );
        let mut footprint = Footprint::new();
        footprint.set_meta(path, meta, MetaChange::Create(meta.clone()));
        let commit = w.setup(Command::Commit(CommitRequest {
            repo: repo(),
            branch: main_branch(),
            base: CommitId(0),
            footprint,
            deltas: vec![],
            message: "create".into(),
            author: "test".into(),
            mode: CommitMode::Strict,
        }));
        assert!(
            matches!(
                commit,
                Ok(Reply::Committed {
                    commit: CommitId(1),
                    ..
                })
            ),
            "{commit:?}"
        );
        w
    }

    fn setup(&mut self, command: Command) -> Outcome {
        self.setup_seq += 1;
        let env = Envelope {
            client: ClientId(u64::MAX),
            seq: self.setup_seq,
            request: Request::Command(command),
        };
        self.state.apply(self.now, &env)
    }

    pub fn query(&self, q: Query) -> Outcome {
        self.state.query(&q)
    }

    pub fn record(&self, commit: CommitId) -> CommitRecord {
        match self.query(Query::GetCommit {
            repo: repo(),
            commit,
        }) {
            Ok(Reply::Commit(rec)) => *rec,
            other => panic!("no commit {commit}: {other:?}"),
        }
    }

    pub fn tip(&self) -> CommitId {
        match self.query(Query::Checkout {
            repo: repo(),
            branch: main_branch(),
        }) {
            Ok(Reply::Commit(rec)) => rec.id,
            other => panic!("no tip: {other:?}"),
        }
    }

    /// The branch's commits, tip first.
    pub fn log(&self) -> Vec<CommitRecord> {
        match self.query(Query::Log {
            repo: repo(),
            branch: main_branch(),
            limit: 100,
        }) {
            Ok(Reply::Log(records)) => records,
            other => panic!("no log: {other:?}"),
        }
    }

    /// One unit of work: drain every machine's effects, then deliver one
    /// input (or fire the earliest timer). False when nothing is left.
    pub fn step(&mut self, machines: &mut [&mut dyn Machine]) -> bool {
        let done: Vec<bool> = machines.iter().map(|m| m.is_done()).collect();
        for (i, m) in machines.iter_mut().enumerate() {
            while let Some(effect) = m.poll() {
                self.trace.push(format!("{i} {effect:?}"));
                self.offer(i, effect, &done);
            }
        }
        let parked = std::mem::take(&mut self.parked);
        for (i, effect) in parked {
            self.offer(i, effect, &done);
        }
        if let Some((i, input)) = self.inbox.pop_front() {
            machines[i].handle(self.now, input);
            return true;
        }
        let Some(((due, _), (i, token))) = self.timers.pop_first() else {
            return false;
        };
        self.now = self.now.max(due);
        machines[i].handle(self.now, Input::Timer { token });
        true
    }

    /// Starts the machines and steps until all are done (panics past
    /// `max_ms` of simulated time or when the world runs dry first).
    pub fn run(&mut self, machines: &mut [&mut dyn Machine], max_ms: u64) {
        for m in machines.iter_mut() {
            m.start(self.now);
        }
        self.run_until(machines, max_ms, |ms| ms.iter().all(|m| m.is_done()));
    }

    /// Steps until `until` holds.
    pub fn run_until(
        &mut self,
        machines: &mut [&mut dyn Machine],
        max_ms: u64,
        until: impl Fn(&[&mut dyn Machine]) -> bool,
    ) {
        let deadline = self.now + max_ms;
        while !until(machines) {
            assert!(self.now <= deadline, "ran past {max_ms} ms");
            assert!(self.step(machines), "the world ran dry");
        }
    }

    fn offer(&mut self, i: usize, effect: Effect, done: &[bool]) {
        if (self.hold)(i, &effect, done) {
            self.parked.push((i, effect));
        } else {
            self.execute(i, effect);
        }
    }

    fn execute(&mut self, i: usize, effect: Effect) {
        match effect {
            Effect::Send { to, envelope } => self.deliver(i, to, envelope),
            Effect::Put { token, key, bytes } => {
                let result = if self.fail_puts > 0 {
                    self.fail_puts -= 1;
                    self.failed_puts.push(key);
                    Err("injected put failure".to_string())
                } else {
                    self.store.insert(key, bytes);
                    Ok(())
                };
                self.inbox.push_back((i, Input::PutDone { token, result }));
            }
            Effect::Get { token, key } => {
                let result = Ok(self.store.get(&key).cloned());
                self.inbox.push_back((i, Input::GetDone { token, result }));
            }
            Effect::Timer { token, after_ms } => {
                self.timer_order += 1;
                let at = (self.now + after_ms, self.timer_order);
                self.timers.insert(at, (i, token));
            }
        }
    }

    fn deliver(&mut self, i: usize, to: u64, envelope: Envelope) {
        self.sends.push((i, to, envelope.clone()));
        let outcome = match (self.before)(i, to, &envelope) {
            Before::Drop => return,
            Before::Answer(outcome) => outcome,
            Before::Apply => {
                let outcome = self.state.apply(self.now, &envelope);
                match (self.after)(i, to, &envelope, &outcome) {
                    Some(o) => o,
                    None => return,
                }
            }
        };
        let seq = envelope.seq;
        self.inbox.push_back((i, Input::Response { seq, outcome }));
    }

    /// Reads `region` of `path` at `commit` through `resolve` and the store.
    pub fn read(&self, commit: CommitId, path: &ArrayPath, region: &Region) -> ArrayData {
        let mut history = History::new();
        let meta = self.record(commit).arrays[path].clone();
        let mut out = ArrayData::filled(&meta, &region.shape()).unwrap();
        for part in region.chunk_parts(&meta) {
            let loc = loop {
                match history.resolve(commit, path, &part.coord).unwrap() {
                    Step::Done(loc) => break loc,
                    Step::Need(Need::Record(c)) => history.insert_record(self.record(c)),
                    Step::Need(Need::Manifest(id) | Need::Checkpoint(id)) => {
                        let bytes = &self.store[manifest_key(&repo(), id).as_ref()];
                        history.insert_manifest(id, Arc::new(Manifest::decode(bytes).unwrap()));
                    }
                }
            };
            if let Location::Chunk(id) = loc {
                let object = &self.store[chunk_key(&repo(), id).as_ref()];
                let chunk = decode_chunk(&meta, object).unwrap();
                extract_part(&meta, &chunk, &part, &mut out).unwrap();
            }
        }
        out
    }
}

/// The request inside a send, for matching in hooks.
pub fn is_commit(envelope: &Envelope) -> bool {
    matches!(envelope.request, Request::Command(Command::Commit(_)))
}

/// True for a `Send` of a `Command::Commit`.
pub fn sends_commit(effect: &Effect) -> bool {
    matches!(effect, Effect::Send { envelope, .. } if is_commit(envelope))
}
