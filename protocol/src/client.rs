//! The one interface a client needs from the coordinator cluster: a
//! transport. Deciding where to send, when to resend and when to give up is
//! the client core's job (`floe_worker::machine::Requester`), the same for
//! every transport, so an in-process cluster, a network client and the
//! simulation all run the same retry logic.

use std::future::Future;

use crate::messages::{Envelope, Outcome};

/// Something that delivers envelopes to coordinator nodes: an in-process
/// cluster, a network client of a real one, a test double.
pub trait Coordinator: Send + Sync {
    /// The coordinator nodes a client may address (raft ids), in a stable
    /// order; never empty.
    fn nodes(&self) -> Vec<u64>;

    /// Delivers `envelope` to node `to` once and waits for that node's
    /// answer. A node that is not the leader answers `NotLeader` (with a
    /// hint when it knows one); a node that cannot be reached, or that does
    /// not answer within the transport's own deadline, gives `Unavailable`.
    /// Never retries: the envelope's `(client, seq)` lets the caller resend
    /// it safely, to this node or another.
    fn send(&self, to: u64, envelope: Envelope) -> impl Future<Output = Outcome> + Send;
}
