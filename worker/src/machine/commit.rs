//! Committing a change, the one implementation: send `Command::Commit`;
//! in the seed's client loop, on "out of date" ask "can I fast forward?"
//! and on "yes" commit again on the new tip. [`Committer`] is a component
//! that any machine embeds (it shares the machine's [`Requester`] and
//! [`Outbox`]); [`CommitTask`] is the machine a `Session` drives.

use floe_protocol::{
    Command, CommitId, CommitRequest, Conflict, FloeError, Outcome, Query, Reply, Request,
};

use super::{unexpected, Caller, Effect, Input, Machine, Outbox, Requester};

/// What to commit and how.
#[derive(Clone, Debug, PartialEq)]
pub struct CommitSpec {
    /// The commit as first sent (its `base` is the change's base; the seed
    /// loop resends it on later tips).
    pub request: CommitRequest,
    /// The seed's client loop: on `OutOfDate` ask `CanFastForward`, on
    /// "yes" commit again on the new tip; a "no" ends in a conflict.
    pub seed_loop: bool,
    /// Most commits sent (the seed loop's bound).
    pub max_commits: usize,
}

/// One step of the seed's client-driven commit loop, in the seed's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeedStep {
    /// "commit session" was sent on `base`.
    CommitSent {
        /// The base sent.
        base: CommitId,
    },
    /// "sorry, your branch is out of date".
    OutOfDate {
        /// The branch's tip.
        tip: CommitId,
    },
    /// "can I fast forward?" was asked; "yes" when `yes`, else "no:
    /// conflict detected".
    Asked {
        /// The tip the answer is about.
        tip: CommitId,
        /// The answer.
        yes: bool,
    },
    /// The change moved its base from `from` to `to` ("fast forward").
    FastForwarded {
        /// The old base.
        from: CommitId,
        /// The new base.
        to: CommitId,
    },
    /// "success: new commit".
    Committed {
        /// The new commit.
        commit: CommitId,
    },
}

/// How a commit ended.
#[derive(Clone, Debug, PartialEq)]
pub enum CommitEnd {
    /// It landed.
    Committed {
        /// The new commit.
        commit: CommitId,
        /// The tip it landed on.
        parent: CommitId,
        /// Commits it was fast-forwarded over server-side.
        rebased_over: u32,
    },
    /// Refused: a conflict (or a "no" to "can I fast forward?").
    Conflict {
        /// The tip the conflict is about.
        tip: CommitId,
        /// What collided.
        conflicts: Vec<Conflict>,
    },
    /// Any other failure (an `OutOfDate` outside the seed loop included).
    Failed(FloeError),
}

impl CommitEnd {
    /// The commit, or the error a caller sees (`Conflict{tip, conflicts}`
    /// for a conflict).
    pub fn into_result(self) -> Result<CommitId, FloeError> {
        match self {
            CommitEnd::Committed { commit, .. } => Ok(commit),
            CommitEnd::Conflict { tip, conflicts } => Err(FloeError::Conflict { tip, conflicts }),
            CommitEnd::Failed(e) => Err(e),
        }
    }
}

/// One `Command::Commit` sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    /// The request's sequence number.
    pub seq: u64,
    /// The base sent.
    pub base: CommitId,
    /// The final outcome, once answered (`None`: unknown, it may have landed).
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Committing,
    Asking,
    Done,
}

/// The commit component (see the module docs).
#[derive(Clone, Debug)]
pub struct Committer {
    spec: CommitSpec,
    base_sent: CommitId,
    phase: Phase,
    steps: Vec<SeedStep>,
    sent: Vec<Sent>,
    answers: Vec<(CommitId, Reply)>,
    end: Option<CommitEnd>,
}

impl Committer {
    /// A commit of `spec`, not sent yet.
    pub fn new(spec: CommitSpec) -> Self {
        Committer {
            base_sent: spec.request.base,
            spec,
            phase: Phase::Idle,
            steps: Vec::new(),
            sent: Vec::new(),
            answers: Vec::new(),
            end: None,
        }
    }

    /// What is being committed.
    pub fn spec(&self) -> &CommitSpec {
        &self.spec
    }

    /// The seed loop's steps so far.
    pub fn steps(&self) -> &[SeedStep] {
        &self.steps
    }

    /// Every commit sent so far.
    pub fn sent(&self) -> &[Sent] {
        &self.sent
    }

    /// Every `CanFastForward` answer: the base asked about and the reply.
    pub fn answers(&self) -> &[(CommitId, Reply)] {
        &self.answers
    }

    /// How it ended, once it did.
    pub fn end(&self) -> Option<&CommitEnd> {
        self.end.as_ref()
    }

    /// True while a request of this commit is in flight.
    pub fn waiting(&self) -> bool {
        matches!(self.phase, Phase::Committing | Phase::Asking)
    }

    /// Sends the first commit.
    pub fn start(&mut self, req: &mut Requester, out: &mut Outbox) {
        if self.phase == Phase::Idle {
            self.send_commit(req, out);
        }
    }

    /// The final outcome of the request in flight (from the requester).
    pub fn on_outcome(&mut self, req: &mut Requester, out: &mut Outbox, outcome: Outcome) {
        match self.phase {
            Phase::Committing => self.on_commit(req, out, outcome),
            Phase::Asking => self.on_answer(req, out, outcome),
            Phase::Idle | Phase::Done => {}
        }
    }

    fn finish(&mut self, end: CommitEnd) {
        self.phase = Phase::Done;
        self.end = Some(end);
    }

    fn send_commit(&mut self, req: &mut Requester, out: &mut Outbox) {
        if self.sent.len() >= self.spec.max_commits.max(1) {
            let tip = self.base_sent;
            return self.finish(CommitEnd::Failed(FloeError::OutOfDate { tip }));
        }
        let request = CommitRequest {
            base: self.base_sent,
            ..self.spec.request.clone()
        };
        let seq = req.request(out, Request::Command(Command::Commit(request)));
        self.sent.push(Sent {
            seq,
            base: self.base_sent,
            outcome: None,
        });
        self.steps.push(SeedStep::CommitSent {
            base: self.base_sent,
        });
        self.phase = Phase::Committing;
    }

    fn on_commit(&mut self, req: &mut Requester, out: &mut Outbox, outcome: Outcome) {
        if let Some(last) = self.sent.last_mut() {
            last.outcome = Some(outcome.clone());
        }
        match outcome {
            Ok(Reply::Committed {
                commit,
                parent,
                rebased_over,
            }) => {
                self.steps.push(SeedStep::Committed { commit });
                self.finish(CommitEnd::Committed {
                    commit,
                    parent,
                    rebased_over,
                })
            }
            Err(FloeError::OutOfDate { tip }) if self.spec.seed_loop => {
                self.steps.push(SeedStep::OutOfDate { tip });
                self.ask(req, out)
            }
            Err(FloeError::Conflict { tip, conflicts }) => {
                self.finish(CommitEnd::Conflict { tip, conflicts })
            }
            Ok(other) => self.finish(CommitEnd::Failed(unexpected("Commit", &other))),
            Err(e) => self.finish(CommitEnd::Failed(e)),
        }
    }

    /// The seed's "can I fast forward?".
    fn ask(&mut self, req: &mut Requester, out: &mut Outbox) {
        let r = &self.spec.request;
        let q = Query::CanFastForward {
            repo: r.repo.clone(),
            branch: r.branch.clone(),
            base: self.base_sent,
            footprint: r.footprint.clone(),
        };
        req.request(out, Request::Query(q));
        self.phase = Phase::Asking;
    }

    fn on_answer(&mut self, req: &mut Requester, out: &mut Outbox, outcome: Outcome) {
        let (tip, conflicts) = match outcome {
            Ok(Reply::FastForward { tip, conflicts }) => (tip, conflicts),
            Ok(other) => {
                return self.finish(CommitEnd::Failed(unexpected("CanFastForward", &other)))
            }
            Err(e) => return self.finish(CommitEnd::Failed(e)),
        };
        let answer = Reply::FastForward {
            tip,
            conflicts: conflicts.clone(),
        };
        self.answers.push((self.base_sent, answer));
        let yes = conflicts.is_empty();
        self.steps.push(SeedStep::Asked { tip, yes });
        if !yes {
            return self.finish(CommitEnd::Conflict { tip, conflicts });
        }
        self.steps.push(SeedStep::FastForwarded {
            from: self.base_sent,
            to: tip,
        });
        self.base_sent = tip;
        self.send_commit(req, out);
    }
}

/// A [`Committer`] as a machine of its own (one client id, one commit).
#[derive(Debug)]
pub struct CommitTask {
    requester: Requester,
    out: Outbox,
    committer: Committer,
}

impl CommitTask {
    /// The leader its requester last learnt of.
    pub fn leader(&self) -> Option<u64> {
        self.requester.leader()
    }

    /// Its requester: the leader and the session state it learnt, for
    /// the client's next machines ([`crate::client::Client::learn`]).
    pub fn requester(&self) -> &Requester {
        &self.requester
    }

    /// Commits `spec` for `caller`.
    pub fn new(caller: Caller, spec: CommitSpec) -> Self {
        CommitTask {
            requester: caller.requester(),
            out: Outbox::new(),
            committer: Committer::new(spec),
        }
    }

    /// The commit's progress and end.
    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// The highest sequence number used (to continue numbering after it).
    pub fn last_seq(&self) -> u64 {
        self.requester.last_seq()
    }
}

impl Machine for CommitTask {
    fn start(&mut self, _now_ms: u64) {
        self.committer.start(&mut self.requester, &mut self.out);
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if let Some(outcome) = self.requester.on_input(&mut self.out, input) {
            let (req, out) = (&mut self.requester, &mut self.out);
            self.committer.on_outcome(req, out, outcome);
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.committer.end().is_some()
    }
}
