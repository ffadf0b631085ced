//! The one interface a writer or worker needs from the coordinator cluster.

use std::future::Future;

use crate::messages::{Outcome, Request};

/// Something that answers requests: an in-process coordinator, a network
/// client of a cluster, or a simulated one. Implementations stamp each call
/// with the client's id and a fresh sequence number and reuse both when they
/// retry, so a retried command is applied at most once.
pub trait Coordinator: Send + Sync {
    /// Sends `request` and waits for its outcome.
    fn call(&self, request: Request) -> impl Future<Output = Outcome> + Send;
}
