//! The interface between the Raft node core and the replicated state machine.

use floe_protocol::{Envelope, FloeError, Outcome, Query};

/// A deterministic state machine replicated by Raft. Every replica applies
/// the same envelopes with the same leader timestamps in the same order and
/// must end in the same state (equal [`StateMachine::digest`]).
pub trait StateMachine {
    /// Applies one command. `now_ms` is the leader's timestamp carried in the
    /// log entry; implementations make it monotonic and never read a clock.
    fn apply(&mut self, now_ms: u64, envelope: &Envelope) -> Outcome;

    /// Answers a read-only query from the applied state.
    fn query(&self, query: &Query) -> Outcome;

    /// A self-contained encoding of the whole state (for Raft snapshots).
    /// An error (the state cannot be encoded) is reported, never replaced by
    /// an empty snapshot: the node keeps its log instead of compacting it.
    fn snapshot(&self) -> Result<Vec<u8>, FloeError>;

    /// Replaces the state with a decoded snapshot.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), FloeError>;

    /// A hash of the canonical encoding of the state; equal states give
    /// equal digests.
    fn digest(&self) -> u64;
}
