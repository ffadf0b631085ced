//! A planless cooperative contribution: build the chunks of some regions
//! (read-modify-writing partial chunks from the session's base), store them
//! and their delta manifest, and `Contribute` them to an open session. The
//! coordinator refuses a contribution sharing chunks with earlier ones
//! (`OverlappingContribution`, naming them). The machine behind
//! `Planless::contribute` and the simulation's contributors.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::SeedableRng;

use floe_protocol::{
    ArrayMeta, ArrayPath, Command, CommitId, FloeError, Footprint, ObjectId, Outcome, Region,
    Reply, RepoName, Request, SessionId, WorkerId,
};

use crate::data::ArrayData;
use crate::format::{encode_chunk, Manifest};
use crate::resolve::History;

use super::build::{delta_of, Buffers};
use super::fetch::{Build, Built, Cache};
use super::stage::{Stage, Staged};
use super::{unexpected, Caller, Effect, Input, Machine, Outbox, Requester, Routed};

/// Where a contribution goes: the session, as `OpenSession` described it.
#[derive(Clone, Debug)]
pub struct ContributeTo {
    /// The repo.
    pub repo: RepoName,
    /// The planless session.
    pub session: SessionId,
    /// The contributor's worker id.
    pub worker: WorkerId,
    /// The session's base (partial chunks are read from it).
    pub base: CommitId,
    /// The base's arrays.
    pub arrays: BTreeMap<ArrayPath, ArrayMeta>,
}

#[derive(Debug)]
enum Phase {
    Idle(Build),
    Building(Build),
    Staging(Stage),
    Contributing,
    Done,
}

/// See the module docs.
#[derive(Debug)]
pub struct ContributeTask {
    requester: Requester,
    out: Outbox,
    rng: SmallRng,
    to: ContributeTo,
    cache: Cache,
    phase: Phase,
    sent: Option<(ObjectId, Footprint)>,
    result: Option<Outcome>,
}

impl ContributeTask {
    /// Contributes `writes` to `to` for `caller`, drawing object ids from
    /// `seed`, reading through `history`.
    pub fn new(
        caller: Caller,
        seed: u64,
        to: ContributeTo,
        writes: Vec<(ArrayPath, Region, ArrayData)>,
        history: History,
    ) -> Self {
        let build = Build::new(
            to.repo.clone(),
            to.base,
            to.arrays.clone(),
            Manifest::new(),
            writes,
        );
        ContributeTask {
            requester: caller.requester(),
            out: Outbox::new(),
            rng: SmallRng::seed_from_u64(seed),
            to,
            cache: Cache {
                history,
                chunks: BTreeMap::new(),
            },
            phase: Phase::Idle(build),
            sent: None,
            result: None,
        }
    }

    /// The delta manifest and footprint contributed, once sent.
    pub fn sent(&self) -> Option<&(ObjectId, Footprint)> {
        self.sent.as_ref()
    }

    /// The final outcome: `Accepted`, or why not (`OverlappingContribution`
    /// naming the shared chunks, a store or build failure).
    pub fn outcome(&self) -> Option<&Outcome> {
        self.result.as_ref()
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

    fn end(&mut self, outcome: Outcome) {
        self.result = Some(outcome);
        self.phase = Phase::Done;
        self.requester.cancel();
    }

    fn on_built(&mut self, built: Built) {
        match built {
            Built::Waiting => {}
            Built::Failed(e) => self.end(Err(e)),
            Built::Done(buffers) => self.stage(buffers),
        }
    }

    fn stage(&mut self, buffers: Buffers) {
        let mut chunks = Vec::with_capacity(buffers.len());
        for ((path, coord), buffer) in buffers {
            let encoded = self
                .to
                .arrays
                .get(&path)
                .ok_or_else(|| FloeError::UnknownArray { path: path.clone() })
                .and_then(|meta| encode_chunk(meta, &buffer));
            match encoded {
                Ok(bytes) => chunks.push(((path, coord), bytes)),
                Err(e) => return self.end(Err(e)),
            }
        }
        let (stage, staged) = Stage::start(&mut self.out, &mut self.rng, &self.to.repo, chunks);
        self.phase = Phase::Staging(stage);
        self.on_staged(staged);
    }

    fn on_staged(&mut self, staged: Staged) {
        let (written, delta) = match staged {
            Staged::Waiting => return,
            Staged::Failed(e) => return self.end(Err(e)),
            Staged::Done { written, delta } => (written, delta),
        };
        let Some(delta) = delta else {
            return self.end(Err(FloeError::InvalidChange {
                why: "a contribution must write at least one chunk".into(),
            }));
        };
        let (keys, ids): (Vec<_>, Vec<_>) =
            written.into_iter().map(|(p, c, id)| ((p, c), id)).unzip();
        let footprint = match delta_of(&self.to.arrays, &keys, &ids) {
            Ok((footprint, _)) => footprint,
            Err(e) => return self.end(Err(e)),
        };
        let cmd = Command::Contribute {
            session: self.to.session,
            worker: self.to.worker,
            delta,
            footprint: footprint.clone(),
        };
        self.sent = Some((delta, footprint));
        self.requester.request(&mut self.out, Request::Command(cmd));
        self.phase = Phase::Contributing;
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match (&mut self.phase, outcome) {
            (Phase::Building(build), outcome) => {
                let (req, out) = (&mut self.requester, &mut self.out);
                let built = build.on_record(req, out, &mut self.cache, outcome);
                self.on_built(built);
            }
            (Phase::Contributing, Ok(reply @ Reply::Accepted { .. })) => self.end(Ok(reply)),
            (Phase::Contributing, Ok(other)) => self.end(Err(unexpected("Contribute", &other))),
            (Phase::Contributing, Err(e)) => self.end(Err(e)),
            _ => {}
        }
    }
}

impl Machine for ContributeTask {
    fn start(&mut self, _now_ms: u64) {
        let Phase::Idle(build) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return;
        };
        self.phase = Phase::Building(build);
        if let Phase::Building(build) = &mut self.phase {
            let built = build.step(&mut self.requester, &mut self.out, &self.cache);
            self.on_built(built);
        }
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.result.is_some() {
            return;
        }
        match self.requester.route(&mut self.out, input) {
            Routed::Final(outcome) => self.on_outcome(outcome),
            Routed::Other(Input::GetDone { token, result }) => {
                if let Phase::Building(build) = &mut self.phase {
                    let (req, out) = (&mut self.requester, &mut self.out);
                    if let Some(built) = build.on_get(req, out, &mut self.cache, token, result) {
                        self.on_built(built);
                    }
                }
            }
            Routed::Other(Input::PutDone { token, result }) => {
                if let Phase::Staging(stage) = &mut self.phase {
                    let staged =
                        stage.on_put(&mut self.out, &mut self.rng, &self.to.repo, token, result);
                    self.on_staged(staged);
                }
            }
            Routed::Taken | Routed::Other(_) => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.result.is_some()
    }
}
