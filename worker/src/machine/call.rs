//! The smallest client machine: one request, retried by the [`Requester`]
//! until it has a final outcome.

use floe_protocol::{ClientId, FloeError, Outcome, Request};

use super::{Caller, Effect, Input, Machine, Outbox, Requester, RetryPolicy};

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
    /// A call of `request` as `client`, sent with sequence number `seq`, to
    /// coordinator `nodes`.
    pub fn new(
        client: ClientId,
        seq: u64,
        nodes: Vec<u64>,
        policy: RetryPolicy,
        request: Request,
    ) -> Self {
        let mut requester = Requester::new(client, nodes, policy);
        requester.continue_after(seq.saturating_sub(1));
        Call {
            requester,
            request: Some(request),
            seq,
            out: Outbox::new(),
            outcome: None,
        }
    }

    /// Starts with `leader` as the leader hint (the first send goes there).
    pub fn with_leader(mut self, leader: Option<u64>) -> Self {
        let caller = Caller {
            client: self.requester.client(),
            last_seq: self.seq.saturating_sub(1),
            nodes: self.requester.nodes().to_vec(),
            policy: self.requester.policy(),
            leader,
        };
        self.requester = caller.requester();
        self
    }

    /// The leader its requester last learnt of.
    pub fn leader(&self) -> Option<u64> {
        self.requester.leader()
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
