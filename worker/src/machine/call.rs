//! The smallest client machine: one request, retried by the [`Requester`]
//! until it has a final outcome.

use floe_protocol::{FloeError, Outcome, Request};

use super::{Caller, Effect, Input, Machine, Outbox, Requester};

/// Sends one request (under sequence number `seq`, so several calls can
/// share a client id) and ends with its final outcome.
#[derive(Debug)]
pub struct Call {
    requester: Requester,
    request: Option<Request>,
    seq: u64,
    out: Outbox,
    outcome: Option<Outcome>,
}

impl Call {
    /// A call of `request` for `caller`: sent under the sequence number
    /// after `caller.last_seq`, first to the leader `caller` knows of.
    pub fn new(caller: Caller, request: Request) -> Self {
        let seq = caller.last_seq + 1;
        Call {
            requester: caller.requester(),
            request: Some(request),
            seq,
            out: Outbox::new(),
            outcome: None,
        }
    }

    /// The leader its requester last learnt of.
    pub fn leader(&self) -> Option<u64> {
        self.requester.leader()
    }

    /// Its requester: the leader and the session state it learnt, for
    /// the client's next machines ([`crate::client::Client::learn`]).
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    /// The final outcome, once there is one.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The final outcome; `Unavailable` if the call never ran.
    pub fn into_outcome(self) -> Outcome {
        self.outcome
            .unwrap_or_else(|| Err(FloeError::Unavailable("the call was not driven".into())))
    }
}

impl Machine for Call {
    fn start(&mut self, _now_ms: u64) {
        if let Some(request) = self.request.take() {
            let seq = self.requester.request(&mut self.out, request);
            debug_assert_eq!(seq, self.seq);
        }
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if let Some(outcome) = self.requester.on_input(&mut self.out, input) {
            self.outcome = Some(outcome);
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.outcome.is_some()
    }
}
