//! The simulation's built-in non-cooperative writer, for chunk-aligned
//! writes only (whole chunks, so no read-modify-write): checkout, put the
//! chunks and a delta manifest, commit; on `OutOfDate` the seed's loop
//! (ask `CanFastForward`, commit again on the new tip); on a conflict, at
//! most one manual retry from a fresh checkout. Cheap, and independent of
//! `worker::machine`, it drives high-contention commit traffic.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, ClientId, Command, CommitId, CommitMode, CommitRequest, FloeError,
    Outcome, Query, Region, Reply, RepoName, Request,
};

use super::resize::Resize;
use super::upload::{Progress, Upload};
use super::{main_branch, route, Routed};
use crate::model::Write;
use crate::obs::{Attempt, FfAnswer};
use floe_worker::machine::{Effect, Input, Machine, Outbox, Requester, RetryPolicy};

/// What one simple writer does.
#[derive(Clone, Debug)]
pub struct SimpleScript {
    /// The repo.
    pub repo: RepoName,
    /// Unique message base.
    pub tag: String,
    /// Chunk-aligned regions and their bytes.
    pub writes: Vec<(ArrayPath, Region, Vec<u8>)>,
    /// Commit mode.
    pub mode: CommitMode,
    /// Run the seed's fast-forward loop on `OutOfDate`.
    pub seed_loop: bool,
    /// Check out again and retry once after a conflict.
    pub manual_retry: bool,
    /// A resize to commit along with the writes.
    pub resize: Option<Resize>,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Checkout,
    Upload,
    Commit,
    AskFf,
    Done,
}

/// The built-in writer; see the module docs.
pub struct SimpleWriter {
    req: Requester,
    out: Outbox,
    client: u32,
    script: SimpleScript,
    step: Step,
    checkouts: u32,
    data_base: CommitId,
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    /// The chunks and delta manifest of the current checkout.
    upload: Upload,
    /// Every commit sent.
    pub attempts: Vec<Attempt>,
    /// Every fast-forward answer.
    pub ff_answers: Vec<FfAnswer>,
}

impl SimpleWriter {
    /// A writer for `script`, as sim client `client`.
    pub fn new(
        client: u32,
        id: ClientId,
        nodes: Vec<u64>,
        script: SimpleScript,
        seed: u64,
    ) -> Self {
        SimpleWriter {
            req: Requester::new(id, nodes, RetryPolicy::default()),
            out: Outbox::new(),
            client,
            upload: Upload::new(script.repo.clone(), seed),
            script,
            step: Step::Checkout,
            checkouts: 0,
            data_base: CommitId(0),
            arrays: BTreeMap::new(),
            attempts: Vec::new(),
            ff_answers: Vec::new(),
        }
    }

    fn checkout(&mut self) {
        self.step = Step::Checkout;
        let q = Query::Checkout {
            repo: self.script.repo.clone(),
            branch: main_branch(),
        };
        self.req.request(&mut self.out, Request::Query(q));
    }

    fn message(&self) -> String {
        format!("{}#{}", self.script.tag, self.checkouts)
    }

    /// Builds every chunk of the writes and puts them.
    fn upload(&mut self) {
        self.step = Step::Upload;
        let mut progress = self
            .upload
            .start(&mut self.out, &self.arrays, &self.script.writes);
        if let Some(resize) = &self.script.resize {
            if !resize.record(&self.arrays, &mut self.upload.footprint) {
                progress = Progress::Failed;
            }
        }
        self.on_progress(progress);
    }

    fn on_progress(&mut self, progress: Progress) {
        match progress {
            Progress::Waiting => {}
            Progress::Failed => self.finish(),
            Progress::Done => self.commit(self.data_base),
        }
    }

    fn commit(&mut self, base: CommitId) {
        self.step = Step::Commit;
        let request = CommitRequest {
            repo: self.script.repo.clone(),
            branch: main_branch(),
            base,
            footprint: self.upload.footprint.clone(),
            deltas: vec![self.upload.manifest_id],
            message: self.message(),
            author: self.script.tag.clone(),
            mode: self.script.mode,
        };
        self.attempts.push(Attempt {
            client: self.client,
            message: self.message(),
            data_base: self.data_base,
            base_sent: base,
            footprint: self.upload.footprint.clone(),
            writes: self.writes(),
            mode: self.script.mode,
            outcome: None,
        });
        let cmd = Request::Command(Command::Commit(request));
        self.req.request(&mut self.out, cmd);
    }

    fn writes(&self) -> Vec<Write> {
        let w = |(path, region, data): &(ArrayPath, Region, Vec<u8>)| Write {
            path: path.clone(),
            region: region.clone(),
            data: data.clone(),
        };
        self.script.writes.iter().map(w).collect()
    }

    fn finish(&mut self) {
        self.step = Step::Done;
        self.req.cancel();
        self.upload.abandon();
    }

    fn on_outcome(&mut self, outcome: Outcome) {
        match self.step {
            Step::Checkout => match outcome {
                Ok(Reply::Commit(rec)) => {
                    self.checkouts += 1;
                    self.data_base = rec.id;
                    self.arrays = rec.arrays;
                    self.upload();
                }
                _ => self.finish(),
            },
            Step::Commit => self.on_commit(outcome),
            Step::AskFf => self.on_ff(outcome),
            Step::Upload | Step::Done => {}
        }
    }

    fn on_commit(&mut self, outcome: Outcome) {
        if let Some(a) = self.attempts.last_mut() {
            a.outcome = Some(outcome.clone());
        }
        match outcome {
            Err(FloeError::OutOfDate { .. }) if self.script.seed_loop => {
                self.step = Step::AskFf;
                let q = Query::CanFastForward {
                    repo: self.script.repo.clone(),
                    branch: main_branch(),
                    base: self.data_base,
                    footprint: self.upload.footprint.clone(),
                };
                self.req.request(&mut self.out, Request::Query(q));
            }
            Err(FloeError::Conflict { .. }) => self.retry_or_finish(),
            _ => self.finish(),
        }
    }

    fn on_ff(&mut self, outcome: Outcome) {
        let Ok(Reply::FastForward { tip, conflicts }) = outcome else {
            return self.finish();
        };
        self.ff_answers.push(FfAnswer {
            client: self.client,
            base: self.data_base,
            footprint: self.upload.footprint.clone(),
            tip,
            conflicts: conflicts.clone(),
        });
        if conflicts.is_empty() && self.attempts.len() < 64 {
            self.commit(tip);
        } else {
            self.retry_or_finish();
        }
    }

    fn retry_or_finish(&mut self) {
        if self.script.manual_retry && self.checkouts < 2 {
            self.checkout();
        } else {
            self.finish();
        }
    }
}

impl Machine for SimpleWriter {
    fn start(&mut self, _now_ms: u64) {
        self.checkout();
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        if self.step == Step::Done {
            return;
        }
        match route(&mut self.req, &mut self.out, input) {
            Some(Routed::Outcome(o)) => self.on_outcome(o),
            Some(Routed::Put(token, ok)) => {
                let progress = self.upload.on_put(&mut self.out, token, ok);
                self.on_progress(progress);
            }
            Some(Routed::Get(..)) | None => {}
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.step == Step::Done
    }
}
