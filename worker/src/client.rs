//! [`Client`]: one client id talking to a coordinator cluster, each request
//! a [`Call`] machine run by the [`drive`]r, so it is retried, redirected
//! and given up exactly as every other client machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use floe_protocol::{ClientId, Command, Coordinator, Outcome, Query, Reply, Request};

use crate::driver::drive;
use crate::machine::{Call, Caller, Requester, RetryPolicy};

/// A client of the coordinator cluster with its own client id. Requests
/// may run concurrently (each under a sequence number of its own); a
/// command is applied at most once however often it is resent.
pub struct Client<C: ?Sized> {
    coord: Arc<C>,
    id: ClientId,
    last_seq: AtomicU64,
    policy: RetryPolicy,
    /// The leader last learnt of (0: none).
    leader: AtomicU64,
    /// Its session is open at the coordinators (a machine opened it).
    opened: AtomicBool,
}

impl<C: Coordinator + ?Sized + 'static> Client<C> {
    /// A client with a random id and the default [`RetryPolicy`].
    pub fn new(coord: Arc<C>) -> Self {
        Self::with_id(coord, ClientId(rand::random()))
    }

    /// A client with the given id. Use an id no other client (and no
    /// earlier run of this one) uses: the coordinator would answer this
    /// client's requests with their outcomes.
    pub fn with_id(coord: Arc<C>, id: ClientId) -> Self {
        Client {
            coord,
            id,
            last_seq: AtomicU64::new(0),
            policy: RetryPolicy::default(),
            leader: AtomicU64::new(0),
            opened: AtomicBool::new(false),
        }
    }

    /// Uses `policy` for requests sent from now on.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The client id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The retry policy of its requests.
    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    /// This client as the caller of a task machine that sends up to `n`
    /// requests: the block of `n` sequence numbers is reserved for it, so
    /// concurrent calls never reuse one.
    pub fn caller(&self, n: u64) -> Caller {
        Caller {
            client: self.id,
            last_seq: self.last_seq.fetch_add(n, Ordering::Relaxed),
            nodes: self.coord.nodes(),
            policy: self.policy,
            leader: self.leader(),
            opened: self.opened.load(Ordering::Relaxed),
        }
    }

    /// The leader last learnt of by any of its machines.
    pub fn leader(&self) -> Option<u64> {
        Some(self.leader.load(Ordering::Relaxed)).filter(|&l| l != 0)
    }

    /// Remembers what a finished machine's requester learnt: the leader,
    /// so the next request goes straight there, and that the client's
    /// session is open, so the next machines need not open it.
    pub fn learn(&self, requester: &Requester) {
        if let Some(l) = requester.leader() {
            self.leader.store(l, Ordering::Relaxed);
        }
        if requester.opened() {
            self.opened.store(true, Ordering::Relaxed);
        }
    }

    /// The coordinator behind it.
    pub fn coordinator(&self) -> &Arc<C> {
        &self.coord
    }

    /// Sends `request` and waits for its final outcome (retryable errors
    /// are retried by the policy; giving up is `Unavailable`).
    pub async fn call(&self, request: Request) -> Outcome {
        let call = Call::new(self.caller(1), request);
        let call = drive(call, self.coord.clone(), None).await?;
        self.learn(call.requester());
        call.into_outcome()
    }

    /// Sends a command.
    pub async fn command(&self, command: Command) -> Result<Reply, floe_protocol::FloeError> {
        self.call(Request::Command(command)).await
    }

    /// Sends a query.
    pub async fn query(&self, query: Query) -> Result<Reply, floe_protocol::FloeError> {
        self.call(Request::Query(query)).await
    }
}

/// One request from a fresh client id: for one-off calls (creating a repo,
/// a tag). Programs that send many requests keep a [`Client`].
pub async fn call<C: Coordinator + ?Sized + 'static>(coord: &Arc<C>, request: Request) -> Outcome {
    Client::new(coord.clone()).call(request).await
}
