//! The client side of floe as sans-IO state machines: a non-cooperative
//! [`Writer`], a cooperative [`Worker`] and the cooperative [`Job`] that
//! opens and commits their session, all built on one [`Requester`].
//!
//! Pure and deterministic (DESIGN 2.1): no IO, no clock reads, no threads,
//! no unseeded randomness. A shell (or the simulation) drives a machine:
//!
//! ```text
//! machine.start(now);
//! loop {
//!     while let Some(effect) = machine.poll() { execute(effect) }  // Send, Put, Get, Timer
//!     machine.handle(now, next_input());                          // Response, PutDone, GetDone, Timer
//!     if machine.is_done() { break }                              // its report is final
//! }
//! ```
//!
//! Tokens (of puts, gets and timers) are unique per machine, never reused,
//! and inputs carrying unknown tokens or sequence numbers are ignored, so
//! duplicated, late or stale deliveries are harmless.

mod build;
mod call;
mod checkpoint;
mod commit;
mod contribute;
mod fetch;
mod job;
mod read;
mod requester;
mod stage;
mod upload;
mod view;
mod worker;
mod write;
mod writer;

use std::collections::VecDeque;

use floe_protocol::{Envelope, Outcome};

use crate::session::unexpected;

pub use call::Call;
pub use checkpoint::{CheckpointOf, CheckpointTask};
pub use commit::{CommitEnd, CommitSpec, CommitTask, Committer, SeedStep, Sent};
pub use contribute::{ContributeTask, ContributeTo};
pub use fetch::MAX_GET_ATTEMPTS;
pub use job::{Job, JobReport, JobSpec, JobStatus, JOB_POLL_MS};
pub use read::{ReadSpec, ReadTask, MAX_READS_IN_FLIGHT};
pub use requester::{Caller, Requester, RetryPolicy, Routed, TimerOutcome};
pub use upload::{PutTask, MAX_PUT_ATTEMPTS};
#[cfg(feature = "planted-bugs")]
pub use view::ClientBugs;
pub use view::{Resized, Rewrite, View};
pub use worker::{CompletionLog, SourceFn, Worker, WorkerReport, WorkerStatus, WORKER_IDLE_MS};
pub use write::{WriteBase, WriteTask, Written};
pub use writer::{AttemptLog, Writer, WriterReport, WriterScript, WriterStatus, MAX_FAST_FORWARDS};

/// Something that happened outside a machine, handed to [`Machine::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The coordinator answered request `seq` (may be a duplicate or stale:
    /// unknown seqs are ignored).
    Response {
        /// The request answered.
        seq: u64,
        /// The answer.
        outcome: Outcome,
    },
    /// A put finished.
    PutDone {
        /// The token of the [`Effect::Put`].
        token: u64,
        /// `Err` carries the store's error message.
        result: Result<(), String>,
    },
    /// A get finished (`Ok(None)`: no such object).
    GetDone {
        /// The token of the [`Effect::Get`].
        token: u64,
        /// The object's bytes, or the store's error message.
        result: Result<Option<Vec<u8>>, String>,
    },
    /// A timer set with [`Effect::Timer`] fired.
    Timer {
        /// The token of the timer.
        token: u64,
    },
}

/// Something a machine asks its shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Send this envelope to coordinator node `to` (its raft id).
    Send {
        /// The node.
        to: u64,
        /// The request, with its idempotency key.
        envelope: Envelope,
    },
    /// Store an immutable object under `key` (as produced by
    /// [`crate::format`], e.g. `<repo>/chunks/<id>`).
    Put {
        /// Answered by [`Input::PutDone`] with this token.
        token: u64,
        /// The object key.
        key: String,
        /// The object's bytes.
        bytes: Vec<u8>,
    },
    /// Read an object.
    Get {
        /// Answered by [`Input::GetDone`] with this token.
        token: u64,
        /// The object key.
        key: String,
    },
    /// Call back with [`Input::Timer`] after `after_ms`.
    Timer {
        /// Answered by [`Input::Timer`] with this token.
        token: u64,
        /// Delay in milliseconds.
        after_ms: u64,
    },
}

/// Common to all machines.
pub trait Machine {
    /// Begins the machine's work (sends its first request).
    fn start(&mut self, now_ms: u64);
    /// Feeds one input.
    fn handle(&mut self, now_ms: u64, input: Input);
    /// The next effect to execute, in order.
    fn poll(&mut self) -> Option<Effect>;
    /// True when the machine has nothing left to do (its report is final).
    fn is_done(&self) -> bool;
}

/// A machine's queue of effects and its token counter.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    effects: VecDeque<Effect>,
    last_token: u64,
}

impl Outbox {
    /// An empty outbox; tokens start at 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh token, never handed out before by this outbox.
    pub fn token(&mut self) -> u64 {
        self.last_token += 1;
        self.last_token
    }

    /// Queues an effect.
    pub fn push(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    /// Queues a timer firing after `after_ms`; returns its token.
    pub fn timer(&mut self, after_ms: u64) -> u64 {
        let token = self.token();
        self.push(Effect::Timer { token, after_ms });
        token
    }

    /// Queues a put; returns its token.
    pub fn put(&mut self, key: String, bytes: Vec<u8>) -> u64 {
        let token = self.token();
        self.push(Effect::Put { token, key, bytes });
        token
    }

    /// Queues a get; returns its token.
    pub fn get(&mut self, key: String) -> u64 {
        let token = self.token();
        self.push(Effect::Get { token, key });
        token
    }

    /// The oldest queued effect.
    pub fn pop(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Number of queued effects.
    pub fn len(&self) -> usize {
        self.effects.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.effects.is_empty()
    }
}
