//! The request/retry core shared by every client machine: the one place
//! where floe's clients decide to resend, where, after how long, and when to
//! give up.

use floe_protocol::{ClientId, Command, Envelope, FloeError, Outcome, Request};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Effect, Input, Outbox};

/// How a [`Requester`] retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait for an answer this long before resending to the next node.
    pub timeout_ms: u64,
    /// The timeout doubles on every expiry, up to this.
    pub max_timeout_ms: u64,
    /// Pause before resending after a retryable error (`Unavailable`, a
    /// `NotLeader` without a usable hint). The pause doubles with each one
    /// in a row (up to `max_timeout_ms`: a node that refuses connections
    /// fails at once, and twenty instant failures must still outlast an
    /// election), and each is drawn from `[pause, 2 * pause)` so that
    /// clients turned away together do not come back together.
    pub redirect_delay_ms: u64,
    /// Give up after this many sends of one request without a final
    /// answer, with `Unavailable` (0: never give up).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 300 ms for a first answer, doubling to 2.4 s; give up after 20 sends
    /// (about 40 s when no node answers at all).
    fn default() -> Self {
        RetryPolicy {
            timeout_ms: 300,
            max_timeout_ms: 2_400,
            redirect_delay_ms: 20,
            max_attempts: 20,
        }
    }
}

impl RetryPolicy {
    /// The default timings, never giving up (a client that must outlive any
    /// outage, such as the simulation's, whose liveness oracle waits for it).
    pub fn patient() -> Self {
        RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        }
    }
}

/// Who a machine's requests come from: a client id, the sequence number to
/// continue after, the nodes and the retry policy (what a shell hands a
/// task machine it starts for one of its clients).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The client id.
    pub client: ClientId,
    /// Requests are numbered after this.
    pub last_seq: u64,
    /// The coordinator nodes.
    pub nodes: Vec<u64>,
    /// How to retry.
    pub policy: RetryPolicy,
    /// The leader as last seen by this client, if known: the first send
    /// goes there instead of to a node at random.
    pub leader: Option<u64>,
    /// The client's session is open at the coordinators (an earlier
    /// machine sent [`Command::OpenClient`]); if not, the first command
    /// opens it.
    pub opened: bool,
}

impl Caller {
    /// The requester of this caller.
    pub fn requester(self) -> Requester {
        let mut requester = Requester::new(self.client, self.nodes, self.policy);
        requester.continue_after(self.last_seq);
        requester.leader = self.leader.filter(|l| requester.nodes.contains(l));
        requester.opened = self.opened;
        requester
    }
}

/// What [`Requester::route`] made of an input.
#[derive(Clone, Debug, PartialEq)]
pub enum Routed {
    /// The final outcome of the request in flight (an answer, or giving up).
    Final(Outcome),
    /// The requester's business, done (a resend, a stale answer).
    Taken,
    /// Not the requester's: a put, a get, another timer of the machine.
    Other(Input),
}

/// What [`Requester::on_timer`] made of a timer.
#[derive(Clone, Debug, PartialEq)]
pub enum TimerOutcome {
    /// Not this requester's timer: the owner handles it.
    NotMine,
    /// The request was sent again (or the timer was stale).
    Resent,
    /// The request is given up: this is its final outcome.
    GaveUp(Outcome),
}

/// The request in flight.
#[derive(Clone, Debug)]
struct Inflight {
    envelope: Envelope,
    /// The node it was last sent to.
    to: u64,
    /// The pending timer: a response timeout, or a pause before resending.
    timer: u64,
    /// True when `timer` is a pause (resend to the current target), false
    /// when it is a response timeout (move on to the next node).
    pausing: bool,
    timeout_ms: u64,
    /// Immediate redirects since the last timer-driven send.
    redirects: usize,
    /// Sends of this envelope so far.
    attempts: u32,
    /// Pauses after retryable errors so far (each doubles the next).
    pauses: u32,
    /// The last retryable answer, for the give-up message.
    last_error: Option<FloeError>,
}

/// One outstanding request at a time, stamped `(client, seq)` with `seq`
/// increasing per new request. Sends to the leader hint, else round-robin
/// over the nodes; on a retryable error ([`FloeError::is_retryable`]) or a
/// timeout it resends **the same envelope** (same seq) to another node, so
/// the coordinator's idempotency table makes a command exactly-once. Any
/// other outcome is final and handed back to the owner, and so is the
/// `Unavailable` it gives up with after [`RetryPolicy::max_attempts`] sends.
/// Pauses are jittered from an RNG seeded with the client id, so runs stay
/// reproducible.
#[derive(Clone, Debug)]
pub struct Requester {
    client: ClientId,
    nodes: Vec<u64>,
    policy: RetryPolicy,
    last_seq: u64,
    cursor: usize,
    leader: Option<u64>,
    inflight: Option<Inflight>,
    /// The client's session is open (see [`Caller::opened`]).
    opened: bool,
    /// A command waiting for the session to open.
    waiting: Option<Envelope>,
    sends: u64,
    rng: SmallRng,
}

impl Requester {
    /// A requester for `client` over coordinator `nodes` (raft ids; should
    /// not be empty — node 0 is used if it is). Use a client id no other
    /// machine (and no earlier incarnation of this one) uses: sequence
    /// numbers start at 1.
    pub fn new(client: ClientId, nodes: Vec<u64>, policy: RetryPolicy) -> Self {
        Requester {
            client,
            nodes,
            policy,
            last_seq: 0,
            cursor: 0,
            leader: None,
            inflight: None,
            opened: false,
            waiting: None,
            sends: 0,
            rng: SmallRng::seed_from_u64(client.0 ^ 0x6a09_e667_f3bc_c909),
        }
    }

    /// Takes a fresh client id after the coordinators expired this one's
    /// session (`SessionExpired`): numbering restarts and the next command
    /// opens a new session. Any request in flight is forgotten. The new id
    /// is a hash of the old one, so a seeded run stays reproducible and
    /// the id stays unique with the odds of a random 64-bit draw. Returns
    /// the new id.
    pub fn renew(&mut self) -> ClientId {
        self.client = ClientId(splitmix64(self.client.0));
        self.last_seq = 0;
        self.opened = false;
        self.inflight = None;
        self.waiting = None;
        self.client
    }

    /// Continues numbering after `seq`: the next request gets `seq + 1`.
    /// For a client id shared by several requesters (each request in
    /// flight under a seq of its own); never move it backwards.
    pub fn continue_after(&mut self, seq: u64) {
        self.last_seq = self.last_seq.max(seq);
    }

    /// Replaces the retry policy (for requests sent from now on).
    pub fn set_policy(&mut self, policy: RetryPolicy) {
        self.policy = policy;
    }

    /// The coordinator nodes it sends to.
    pub fn nodes(&self) -> &[u64] {
        &self.nodes
    }

    /// The leader as last learnt from a hint, if any.
    pub fn leader(&self) -> Option<u64> {
        self.leader
    }

    /// The sequence number of the latest request.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The client id requests are stamped with.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// True while a request awaits its final outcome.
    pub fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// The envelope awaiting its final outcome, if any.
    pub fn inflight(&self) -> Option<&Envelope> {
        self.inflight.as_ref().map(|i| &i.envelope)
    }

    /// Envelopes sent so far, resends included.
    pub fn sends(&self) -> u64 {
        self.sends
    }

    /// True once the client's session is open at the coordinators.
    pub fn opened(&self) -> bool {
        self.opened
    }

    /// Sends a new request under the next seq, abandoning any request in
    /// flight (its answer will be ignored). Returns the seq. The first
    /// command of a client whose session is not open is preceded by
    /// [`Command::OpenClient`] (under seq 0; it may be sent any number of
    /// times), and sent once that is answered.
    pub fn request(&mut self, out: &mut Outbox, request: Request) -> u64 {
        self.last_seq += 1;
        let envelope = Envelope {
            client: self.client,
            seq: self.last_seq,
            request,
        };
        self.waiting = None;
        if matches!(envelope.request, Request::Command(_)) && !self.opened {
            self.waiting = Some(envelope);
            let open = Envelope {
                client: self.client,
                seq: 0,
                request: Request::Command(Command::OpenClient),
            };
            self.send_new(out, open);
        } else {
            self.send_new(out, envelope);
        }
        self.last_seq
    }

    /// Sends `envelope` as the request in flight.
    fn send_new(&mut self, out: &mut Outbox, envelope: Envelope) {
        let timeout_ms = self.policy.timeout_ms.max(1);
        let to = self.target();
        let timer = self.transmit(out, to, &envelope, timeout_ms);
        self.inflight = Some(Inflight {
            envelope,
            to,
            timer,
            pausing: false,
            timeout_ms,
            redirects: 0,
            attempts: 1,
            pauses: 0,
            last_error: None,
        });
    }

    /// Forgets the request in flight (its answer will be ignored).
    pub fn cancel(&mut self) {
        self.inflight = None;
    }

    /// Handles a response. Returns the outcome when it is final for the
    /// request in flight; `None` when it was ignored (another seq) or led
    /// to a resend.
    pub fn on_response(&mut self, out: &mut Outbox, seq: u64, outcome: Outcome) -> Option<Outcome> {
        let inflight = self.inflight.as_ref()?;
        if inflight.envelope.seq != seq {
            return None;
        }
        match outcome {
            Err(error) if error.is_retryable() => {
                let hint = match error {
                    FloeError::NotLeader { leader_hint } => leader_hint,
                    _ => None,
                };
                if let Some(inflight) = self.inflight.as_mut() {
                    inflight.last_error = Some(error);
                }
                if self.exhausted() {
                    return Some(self.give_up());
                }
                self.redirect(out, hint);
                None
            }
            Ok(_) if seq == 0 && self.waiting.is_some() => {
                // The session is open: now the command it was opened for.
                self.opened = true;
                let waiting = self.waiting.take()?;
                self.send_new(out, waiting);
                None
            }
            final_outcome => {
                self.inflight = None;
                self.waiting = None;
                Some(final_outcome)
            }
        }
    }

    /// Handles a timer: resends after a timeout or a pause, or gives up.
    pub fn on_timer(&mut self, out: &mut Outbox, token: u64) -> TimerOutcome {
        let Some(inflight) = self.inflight.as_mut() else {
            return TimerOutcome::NotMine;
        };
        if inflight.timer != token {
            return TimerOutcome::NotMine;
        }
        if !inflight.pausing {
            // No answer in time: that node may be down or partitioned.
            inflight.timeout_ms = (inflight.timeout_ms * 2).min(self.policy.max_timeout_ms.max(1));
            self.leader = None;
            self.cursor = self.cursor.wrapping_add(1);
            if self.exhausted() {
                return TimerOutcome::GaveUp(self.give_up());
            }
        }
        self.resend(out, 0);
        TimerOutcome::Resent
    }

    /// Takes what is the requester's in `input` (responses, its timers)
    /// and hands back the rest: see [`Routed`].
    pub fn route(&mut self, out: &mut Outbox, input: Input) -> Routed {
        match input {
            Input::Response { seq, outcome } => match self.on_response(out, seq, outcome) {
                Some(outcome) => Routed::Final(outcome),
                None => Routed::Taken,
            },
            Input::Timer { token } => match self.on_timer(out, token) {
                TimerOutcome::GaveUp(outcome) => Routed::Final(outcome),
                TimerOutcome::Resent => Routed::Taken,
                TimerOutcome::NotMine => Routed::Other(Input::Timer { token }),
            },
            other => Routed::Other(other),
        }
    }

    /// The final outcome `input` brought, if any (for machines with no
    /// other inputs of their own).
    pub fn on_input(&mut self, out: &mut Outbox, input: Input) -> Option<Outcome> {
        match self.route(out, input) {
            Routed::Final(outcome) => Some(outcome),
            Routed::Taken | Routed::Other(_) => None,
        }
    }

    /// True when the request in flight used up its sends.
    fn exhausted(&self) -> bool {
        let max = self.policy.max_attempts;
        max > 0 && self.inflight.as_ref().is_some_and(|i| i.attempts >= max)
    }

    /// Ends the request in flight with `Unavailable`, naming the last error.
    fn give_up(&mut self) -> Outcome {
        let Some(inflight) = self.inflight.take() else {
            return Err(FloeError::Unavailable("no request in flight".into()));
        };
        let last = match &inflight.last_error {
            Some(e) => e.to_string(),
            None => format!("no answer within {} ms", inflight.timeout_ms),
        };
        Err(FloeError::Unavailable(format!(
            "request {} of {} given up after {} sends (last: {last})",
            inflight.envelope.seq, self.client, inflight.attempts
        )))
    }

    /// After `NotLeader`/`Unavailable`: follow a fresh hint at once, else
    /// pause and try the next node.
    fn redirect(&mut self, out: &mut Outbox, hint: Option<u64>) {
        let Some(inflight) = self.inflight.as_ref() else {
            return;
        };
        let useful = hint.filter(|h| *h != inflight.to && self.nodes.contains(h));
        if let Some(leader) = useful.filter(|_| inflight.redirects < self.nodes.len()) {
            self.leader = Some(leader);
            let redirects = inflight.redirects + 1;
            self.resend(out, redirects);
            return;
        }
        self.leader = useful;
        if useful.is_none() {
            self.cursor = self.cursor.wrapping_add(1);
        }
        let pauses = inflight.pauses.min(16);
        let base = (self.policy.redirect_delay_ms.max(1) << pauses).min(
            self.policy
                .max_timeout_ms
                .max(self.policy.redirect_delay_ms)
                .max(1),
        );
        let delay = base + self.rng.gen_range(0..base);
        if let Some(inflight) = self.inflight.as_mut() {
            inflight.timer = out.timer(delay);
            inflight.pausing = true;
            inflight.redirects = 0;
            inflight.pauses += 1;
        }
    }

    /// Sends the request in flight again, same seq, to the current target.
    fn resend(&mut self, out: &mut Outbox, redirects: usize) {
        let to = self.target();
        let Some(mut inflight) = self.inflight.take() else {
            return;
        };
        inflight.timer = self.transmit(out, to, &inflight.envelope, inflight.timeout_ms);
        inflight.to = to;
        inflight.pausing = false;
        inflight.redirects = redirects;
        inflight.attempts += 1;
        self.inflight = Some(inflight);
    }

    /// Queues the send and its response timeout; returns the timer token.
    fn transmit(&mut self, out: &mut Outbox, to: u64, envelope: &Envelope, timeout: u64) -> u64 {
        self.sends += 1;
        out.push(Effect::Send {
            to,
            envelope: envelope.clone(),
        });
        out.timer(timeout)
    }

    /// The leader hint, else the node under the round-robin cursor.
    fn target(&self) -> u64 {
        if let Some(leader) = self.leader {
            return leader;
        }
        match self.nodes.len() {
            0 => 0,
            n => self.nodes[self.cursor % n],
        }
    }
}

/// SplitMix64's finaliser: a bijection on u64 that scatters neighbouring
/// ids (the simulation numbers its clients 1, 2, 3, ...) far apart.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::{Query, Reply, RepoName, SessionId};

    fn query() -> Request {
        Request::Query(Query::Session {
            session: SessionId(1),
        })
    }

    fn drain(out: &mut Outbox) -> Vec<Effect> {
        std::iter::from_fn(|| out.pop()).collect()
    }

    fn sent(effects: &[Effect]) -> Vec<(u64, u64)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to, envelope } => Some((*to, envelope.seq)),
                _ => None,
            })
            .collect()
    }

    fn timer(effects: &[Effect]) -> u64 {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Timer { token, .. } => Some(*token),
                _ => None,
            })
            .unwrap_or(0)
    }

    #[test]
    fn retries_keep_the_seq_and_move_between_nodes() {
        let mut out = Outbox::new();
        let mut r = Requester::new(ClientId(9), vec![1, 2, 3], RetryPolicy::default());
        let seq = r.request(&mut out, query());
        let first = drain(&mut out);
        assert_eq!(sent(&first), vec![(1, seq)]);
        // Timeout: the next node, same seq.
        assert_eq!(r.on_timer(&mut out, timer(&first)), TimerOutcome::Resent);
        let second = drain(&mut out);
        assert_eq!(sent(&second), vec![(2, seq)]);
        // NotLeader with a hint: straight to the hint.
        let hint = Err(FloeError::NotLeader {
            leader_hint: Some(3),
        });
        assert_eq!(r.on_response(&mut out, seq, hint), None);
        assert_eq!(sent(&drain(&mut out)), vec![(3, seq)]);
        // A stale answer and a stale timer are ignored.
        assert_eq!(r.on_response(&mut out, seq + 1, Ok(Reply::Done)), None);
        assert_eq!(r.on_timer(&mut out, timer(&first)), TimerOutcome::NotMine);
        assert!(r.busy());
        // A final answer ends it; the next request gets the next seq.
        assert_eq!(
            r.on_response(&mut out, seq, Ok(Reply::Done)),
            Some(Ok(Reply::Done))
        );
        assert!(!r.busy());
        let next = r.request(&mut out, query());
        assert_eq!(next, seq + 1);
        assert_eq!(sent(&drain(&mut out)), vec![(3, next)]);
    }

    fn clients(effects: &[Effect]) -> Vec<ClientId> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { envelope, .. } => Some(envelope.client),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_expired_session_is_renewed_under_a_fresh_id() {
        let mut out = Outbox::new();
        let mut r = Requester::new(ClientId(9), vec![1], RetryPolicy::default());
        let claim = Request::Command(Command::AbortSession {
            session: SessionId(1),
        });
        r.request(&mut out, claim.clone());
        assert_eq!(sent(&drain(&mut out)), vec![(1, 0)], "OpenClient first");
        assert_eq!(r.on_response(&mut out, 0, Ok(Reply::Done)), None);
        assert_eq!(sent(&drain(&mut out)), vec![(1, 1)]);
        let expired = Err(FloeError::SessionExpired { client: 9 });
        // Final for the request: the owner decides what it means.
        assert_eq!(r.on_response(&mut out, 1, expired.clone()), Some(expired));
        let fresh = r.renew();
        assert_ne!(fresh, ClientId(9));
        assert!(!r.opened() && !r.busy());
        // The next command opens a session for the new id, numbered anew.
        r.request(&mut out, claim);
        let effects = drain(&mut out);
        assert_eq!(sent(&effects), vec![(1, 0)]);
        assert_eq!(clients(&effects), vec![fresh]);
        assert_eq!(r.on_response(&mut out, 0, Ok(Reply::Done)), None);
        assert_eq!(sent(&drain(&mut out)), vec![(1, 1)]);
        // Renewing again never comes back to an id used before.
        assert!(![ClientId(9), fresh].contains(&r.renew()));
    }

    #[test]
    fn unavailable_pauses_then_tries_another_node() {
        let mut out = Outbox::new();
        let mut r = Requester::new(ClientId(9), vec![1, 2], RetryPolicy::default());
        let seq = r.request(&mut out, query());
        drain(&mut out);
        let down = Err(FloeError::Unavailable("x".into()));
        assert_eq!(r.on_response(&mut out, seq, down), None);
        let pause = drain(&mut out);
        assert!(sent(&pause).is_empty());
        assert_eq!(r.on_timer(&mut out, timer(&pause)), TimerOutcome::Resent);
        assert_eq!(sent(&drain(&mut out)), vec![(2, seq)]);
        let other = Err(FloeError::UnknownRepo {
            repo: RepoName::new("r").unwrap(),
        });
        assert!(matches!(
            r.on_response(&mut out, seq, other),
            Some(Err(FloeError::UnknownRepo { .. }))
        ));
    }

    #[test]
    fn it_gives_up_after_max_attempts_naming_the_last_error() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut out = Outbox::new();
        let mut r = Requester::new(ClientId(9), vec![1, 2], policy);
        let seq = r.request(&mut out, query());
        let first = drain(&mut out);
        assert_eq!(r.on_timer(&mut out, timer(&first)), TimerOutcome::Resent);
        drain(&mut out);
        let busy = Err(FloeError::StoreUnavailable("503".into()));
        assert_eq!(r.on_response(&mut out, seq, busy.clone()), None);
        let pause = drain(&mut out);
        assert_eq!(r.on_timer(&mut out, timer(&pause)), TimerOutcome::Resent);
        assert_eq!(r.sends(), 3);
        drain(&mut out);
        let gave_up = r.on_response(&mut out, seq, busy);
        assert!(
            matches!(&gave_up, Some(Err(FloeError::Unavailable(m))) if m.contains("after 3 sends") && m.contains("503")),
            "{gave_up:?}"
        );
        assert!(!r.busy());
        assert!(out.is_empty(), "nothing more is sent");
    }

    #[test]
    fn a_timeout_on_the_last_attempt_gives_up() {
        let policy = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let mut out = Outbox::new();
        let mut r = Requester::new(ClientId(9), vec![1], policy);
        r.request(&mut out, query());
        let first = drain(&mut out);
        assert!(matches!(
            r.on_timer(&mut out, timer(&first)),
            TimerOutcome::GaveUp(Err(FloeError::Unavailable(_)))
        ));
    }

    #[test]
    fn pauses_double_with_jitter_reproducibly() {
        let pauses = |client: u64| -> Vec<u64> {
            let mut out = Outbox::new();
            let mut r = Requester::new(ClientId(client), vec![1, 2], RetryPolicy::patient());
            let seq = r.request(&mut out, query());
            drain(&mut out);
            (0..8)
                .map(|_| {
                    r.on_response(&mut out, seq, Err(FloeError::Unavailable("x".into())));
                    let effects = drain(&mut out);
                    let after = effects
                        .iter()
                        .find_map(|e| match e {
                            Effect::Timer { after_ms, .. } => Some(*after_ms),
                            _ => None,
                        })
                        .unwrap_or(0);
                    r.on_timer(&mut out, timer(&effects));
                    drain(&mut out);
                    after
                })
                .collect()
        };
        let a = pauses(1);
        assert_eq!(a, pauses(1), "same client, same pauses");
        // 20 ms doubling per pause in a row, up to the 2.4 s ceiling, each
        // drawn from [pause, 2 * pause).
        for (i, p) in a.iter().enumerate() {
            let base = (20u64 << i).min(2_400);
            assert!((base..2 * base).contains(p), "pause {i}: {a:?}");
        }
        assert_ne!(a, pauses(2), "jittered per client: {a:?}");
    }

    #[test]
    fn a_shared_client_id_continues_the_numbering() {
        let mut out = Outbox::new();
        let mut r = Requester::new(ClientId(9), vec![1], RetryPolicy::default());
        r.continue_after(41);
        assert_eq!(r.request(&mut out, query()), 42);
        r.continue_after(7);
        assert_eq!(r.request(&mut out, query()), 43);
    }
}
