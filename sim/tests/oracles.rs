//! Each oracle fails, under its own name, when its property is broken:
//! hand-made histories fed straight to the oracle functions.
//!
//! The base history: array `/t` of 30 `int32` in chunks of 10 (fill 0).
//! `C1` creates it; `C2` ("a#1") writes `0:20` directly on `C1`; `C3`
//! ("b#1") writes `20:30` on base `C1`, fast-forwarded over `C2`.

use std::collections::BTreeMap;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, CommitId, CommitMode, CommitRecord, Conflict, ConflictKind,
    DType, FloeError, Footprint, MetaChange, ObjectId, Outcome, Region, Reply, RepoName, SessionId,
    Solver, TagName, TaskId, WorkerId,
};
use floe_sim::faults::{FaultCounts, FaultKind};
use floe_sim::model::Write;
use floe_sim::obs::{
    Ack, Attempt, ClientEnd, Completion, Contribution, CoopRun, End, Grant, Observations, Read,
    Replica, TagMade, TagRead,
};
use floe_sim::oracle::{self, DigestBook, Failure};
use floe_worker::chunk::patch_chunk;
use floe_worker::data::ArrayData;
use floe_worker::format::{chunk_key, encode_chunk, manifest_key, Manifest};

const REBASE: CommitMode = CommitMode::Rebase {
    solver: Solver::Fail,
};

fn t() -> ArrayPath {
    ArrayPath::new("/t").unwrap()
}

fn meta() -> ArrayMeta {
    ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0).unwrap()
}

fn repo() -> RepoName {
    RepoName::new("sim").unwrap()
}

fn region(lo: u64, hi: u64) -> Region {
    Region::new(&[(lo, hi)])
}

fn footprint(lo: u64, hi: u64) -> Footprint {
    let mut f = Footprint::new();
    f.add_region(&t(), &meta(), &region(lo, hi));
    f
}

/// `value` repeated over `lo..hi`, as int32 bytes.
fn bytes(lo: u64, hi: u64, value: i32) -> Vec<u8> {
    (lo..hi).flat_map(|_| value.to_le_bytes()).collect()
}

/// A history under construction: records plus the store's objects.
struct History {
    /// The branch new records are committed to.
    branch: &'static str,
    /// Branch tips set by hand (a branch created at a commit), else each
    /// branch's newest record.
    tips: BTreeMap<&'static str, u64>,
    /// Tags as the replica resolves them.
    tags: BTreeMap<TagName, CommitId>,
    records: BTreeMap<CommitId, CommitRecord>,
    store: BTreeMap<String, Vec<u8>>,
    next: u128,
}

impl History {
    fn new() -> Self {
        let mut h = History {
            branch: "main",
            tips: BTreeMap::new(),
            tags: BTreeMap::new(),
            records: BTreeMap::new(),
            store: BTreeMap::new(),
            next: 1,
        };
        h.record(
            0,
            None,
            None,
            "repository created",
            Footprint::new(),
            vec![],
        );
        let mut create = Footprint::new();
        create.set_meta(&t(), &meta(), MetaChange::Create(meta()));
        h.record(1, Some(0), Some(0), "setup", create, vec![]);
        h
    }

    fn record(
        &mut self,
        id: u64,
        parent: Option<u64>,
        base: Option<u64>,
        message: &str,
        footprint: Footprint,
        deltas: Vec<ObjectId>,
    ) {
        let arrays = if id == 0 {
            BTreeMap::new()
        } else {
            BTreeMap::from([(t(), meta())])
        };
        let height = parent.map_or(0, |p| self.records[&CommitId(p)].height + 1);
        let rebased = match (parent, base) {
            (Some(p), Some(b)) => (p - b) as u32,
            _ => 0,
        };
        self.records.insert(
            CommitId(id),
            CommitRecord {
                id: CommitId(id),
                parent: parent.map(CommitId),
                base: base.map(CommitId),
                branch: BranchName::new(self.branch).unwrap(),
                height,
                deltas,
                footprint,
                arrays,
                message: message.into(),
                author: String::new(),
                time: 0,
                rebased_over: rebased,
                checkpoint: None,
            },
        );
    }

    /// Commit `id` writing `value` over the whole chunks of `lo..hi`.
    fn write(
        &mut self,
        id: u64,
        parent: u64,
        base: u64,
        message: &str,
        (lo, hi): (u64, u64),
        value: i32,
    ) {
        let data = ArrayData {
            dtype: DType::I32,
            shape: vec![hi - lo],
            bytes: bytes(lo, hi, value),
        };
        let mut manifest = Manifest::new();
        for part in region(lo, hi).chunk_parts(&meta()) {
            let chunk = patch_chunk(&meta(), None, &part, &data).unwrap();
            let obj = ObjectId(self.next);
            self.next += 1;
            self.store.insert(
                chunk_key(&repo(), obj).to_string(),
                encode_chunk(&meta(), &chunk).unwrap(),
            );
            manifest.insert(t(), part.coord, obj);
        }
        let delta = ObjectId(self.next);
        self.next += 1;
        self.store.insert(
            manifest_key(&repo(), delta).to_string(),
            manifest.encode().unwrap(),
        );
        self.record(
            id,
            Some(parent),
            Some(base),
            message,
            footprint(lo, hi),
            vec![delta],
        );
    }

    fn replica(&self) -> Replica {
        let mut branches = BTreeMap::new();
        for rec in self.records.values() {
            branches.insert(rec.branch.clone(), rec.id);
        }
        for (name, tip) in &self.tips {
            branches.insert(BranchName::new(*name).unwrap(), CommitId(*tip));
        }
        Replica {
            node: 1,
            applied: 10,
            digest: 7,
            tip: branches[&BranchName::new("main").unwrap()],
            branches,
            tags: self.tags.clone(),
            records: self.records.clone(),
            sessions: BTreeMap::new(),
        }
    }
}

fn attempt(
    message: &str,
    base: u64,
    sent: u64,
    (lo, hi): (u64, u64),
    value: i32,
    mode: CommitMode,
    outcome: Outcome,
) -> Attempt {
    Attempt {
        client: 1,
        message: message.into(),
        data_base: CommitId(base),
        base_sent: CommitId(sent),
        footprint: footprint(lo, hi),
        resizes: Vec::new(),
        recreates: false,
        writes: vec![Write {
            path: t(),
            region: region(lo, hi),
            data: bytes(lo, hi, value),
        }],
        mode,
        outcome: Some(outcome),
    }
}

fn committed(commit: u64, parent: u64, rebased_over: u32) -> Outcome {
    Ok(Reply::Committed {
        commit: CommitId(commit),
        parent: CommitId(parent),
        rebased_over,
    })
}

/// The good history and what its clients saw.
fn good() -> (History, Observations) {
    let mut h = History::new();
    h.write(2, 1, 1, "a#1", (0, 20), 5);
    h.write(3, 2, 1, "b#1", (20, 30), 6);
    let setup = Attempt {
        client: 0,
        message: "setup".into(),
        data_base: CommitId(0),
        base_sent: CommitId(0),
        footprint: h.records[&CommitId(1)].footprint.clone(),
        resizes: Vec::new(),
        recreates: false,
        writes: vec![],
        mode: CommitMode::Strict,
        outcome: Some(committed(1, 0, 0)),
    };
    let obs = Observations {
        attempts: vec![
            setup,
            attempt(
                "a#1",
                1,
                1,
                (0, 20),
                5,
                CommitMode::Strict,
                committed(2, 1, 0),
            ),
            attempt("b#1", 1, 1, (20, 30), 6, REBASE, committed(3, 2, 1)),
        ],
        ..Observations::default()
    };
    (h, obs)
}

fn all(obs: &Observations, h: &History) -> Result<(), Failure> {
    let r = h.replica();
    oracle::one_history(obs, &r)?;
    oracle::exact_conflicts(obs, &r)?;
    oracle::cooperative(obs, &r)?;
    oracle::client_ends(obs, &r)?;
    oracle::linearizable_reads(obs, &r)?;
    oracle::tags_stay(obs, &r)?;
    oracle::data(obs, &r, &repo(), &h.store)
}

fn expect(result: Result<(), Failure>, oracle: &str, needle: &str) {
    let failure = result.expect_err("the oracle should fail");
    assert_eq!(failure.oracle, oracle, "{failure}");
    assert!(failure.detail.contains(needle), "{failure}");
}

#[test]
fn the_good_history_passes_every_oracle() {
    let (h, obs) = good();
    all(&obs, &h).unwrap();
    oracle::replicas_agree(&[h.replica(), h.replica()]).unwrap();
}

#[test]
fn a_lost_acknowledged_commit_is_reported() {
    let (h, mut obs) = good();
    obs.attempts
        .push(attempt("c#1", 3, 3, (0, 10), 9, REBASE, committed(4, 3, 0)));
    expect(all(&obs, &h), oracle::ONE_HISTORY, "has no C4");
}

#[test]
fn an_acknowledged_id_holding_another_commit_is_reported() {
    let (mut h, mut obs) = good();
    h.write(4, 3, 3, "d#1", (0, 10), 8);
    obs.attempts
        .push(attempt("d#1", 3, 3, (0, 10), 8, REBASE, committed(4, 3, 0)));
    obs.attempts
        .push(attempt("c#1", 3, 3, (0, 10), 9, REBASE, committed(4, 3, 0)));
    expect(
        all(&obs, &h),
        oracle::ONE_HISTORY,
        "an acknowledged commit was lost",
    );
}

#[test]
fn a_message_landing_twice_is_reported() {
    let (mut h, obs) = good();
    h.write(4, 3, 3, "a#1", (0, 20), 5);
    expect(all(&obs, &h), oracle::ONE_HISTORY, "landed 2 times");
}

#[test]
fn a_fork_is_reported() {
    let (mut h, mut obs) = good();
    // C4 on C2 while the tip is C5 on C3: C4 is off the chain.
    h.write(4, 2, 2, "c#1", (20, 30), 1);
    h.write(5, 3, 3, "d#1", (0, 10), 2);
    obs.attempts.push(attempt(
        "c#1",
        2,
        2,
        (20, 30),
        1,
        REBASE,
        committed(4, 2, 0),
    ));
    obs.attempts
        .push(attempt("d#1", 3, 3, (0, 10), 2, REBASE, committed(5, 3, 0)));
    expect(all(&obs, &h), oracle::ONE_HISTORY, "forked");
}

#[test]
fn a_data_mismatch_is_reported() {
    let (mut h, obs) = good();
    let key = h
        .store
        .keys()
        .find(|k| k.contains("chunks"))
        .unwrap()
        .clone();
    let object = h.store.get_mut(&key).unwrap();
    let last = object.len() - 1;
    object[last] ^= 0x40;
    expect(all(&obs, &h), oracle::DATA, "elements differ");
}

#[test]
fn data_written_but_never_attempted_is_reported() {
    let (mut h, obs) = good();
    h.write(4, 3, 3, "ghost#1", (0, 10), 3);
    expect(all(&obs, &h), oracle::ONE_HISTORY, "no client attempted it");
}

#[test]
fn a_digest_mismatch_is_reported() {
    let mut book = DigestBook::default();
    book.record(1, 5, 0xaa).unwrap();
    book.record(2, 5, 0xaa).unwrap();
    book.record(3, 6, 0xbb).unwrap();
    let failure = book.record(2, 6, 0xcc).unwrap_err();
    assert_eq!(failure.oracle, oracle::REPLICAS_AGREE);
    assert!(failure.detail.contains("index 6"), "{failure}");
}

#[test]
fn diverged_final_states_are_reported() {
    let (h, _) = good();
    let mut other = h.replica();
    other.node = 2;
    other.digest = 8;
    let failure = oracle::replicas_agree(&[h.replica(), other]).unwrap_err();
    assert_eq!(failure.oracle, oracle::REPLICAS_AGREE);
}

#[test]
fn a_missed_conflict_is_reported() {
    let (mut h, mut obs) = good();
    // "c#1" writes 10:20 on base C1 and lands over C2, which wrote chunk 1.
    h.write(4, 3, 1, "c#1", (10, 20), 9);
    obs.attempts.push(attempt(
        "c#1",
        1,
        1,
        (10, 20),
        9,
        REBASE,
        committed(4, 3, 2),
    ));
    expect(all(&obs, &h), oracle::EXACT_CONFLICTS, "missed conflict");
}

fn conflict(tip: u64, chunks: Vec<Vec<u64>>) -> Outcome {
    let total = chunks.len() as u64;
    Err(FloeError::Conflict {
        tip: CommitId(tip),
        conflicts: vec![Conflict {
            path: t(),
            kind: ConflictKind::ChunkDoubleUpdate { chunks, total },
        }],
    })
}

#[test]
fn a_false_conflict_is_reported() {
    let (h, mut obs) = good();
    // Based on C2, only C3 (chunk 2) landed since: chunk 0 is no conflict.
    obs.attempts.push(attempt(
        "c#1",
        2,
        2,
        (0, 10),
        9,
        REBASE,
        conflict(3, vec![vec![0]]),
    ));
    expect(all(&obs, &h), oracle::EXACT_CONFLICTS, "false conflict");
}

#[test]
fn a_conflict_naming_the_wrong_chunks_is_reported() {
    let (h, mut obs) = good();
    // Based on C1, writing 0:30: C2 and C3 share chunks 0, 1 and 2.
    obs.attempts.push(attempt(
        "c#1",
        1,
        1,
        (0, 30),
        9,
        REBASE,
        conflict(3, vec![vec![0], vec![1]]),
    ));
    expect(all(&obs, &h), oracle::EXACT_CONFLICTS, "shared chunks are");
    // Naming all three passes.
    obs.attempts.pop();
    let all_three = conflict(3, vec![vec![0], vec![1], vec![2]]);
    obs.attempts
        .push(attempt("c#1", 1, 1, (0, 30), 9, REBASE, all_three));
    all(&obs, &h).unwrap();
}

#[test]
fn a_wrong_fast_forward_answer_is_reported() {
    let (h, mut obs) = good();
    // "Yes, fast-forward" from C1 over C2 and C3 for 10:20: wrong, C2 wrote chunk 1.
    obs.ff_answers.push(floe_sim::obs::FfAnswer {
        client: 1,
        base: CommitId(1),
        footprint: footprint(10, 20),
        tip: CommitId(3),
        conflicts: vec![],
    });
    expect(all(&obs, &h), oracle::EXACT_CONFLICTS, "CanFastForward");
}

#[test]
fn a_strict_commit_landing_off_its_base_is_reported() {
    let (mut h, mut obs) = good();
    h.write(4, 3, 2, "c#1", (0, 10), 9);
    obs.attempts.push(attempt(
        "c#1",
        2,
        2,
        (0, 10),
        9,
        CommitMode::Strict,
        committed(4, 3, 1),
    ));
    expect(all(&obs, &h), oracle::EXACT_CONFLICTS, "Strict");
}

#[test]
fn an_answer_about_a_lost_tip_is_reported() {
    let (h, mut obs) = good();
    let outcome = Err(FloeError::OutOfDate { tip: CommitId(9) });
    obs.attempts.push(attempt(
        "c#1",
        2,
        2,
        (0, 10),
        9,
        CommitMode::Strict,
        outcome,
    ));
    expect(all(&obs, &h), oracle::ONE_HISTORY, "not an ancestor");
}

fn coop(grants: &[(u64, u64)], completions: &[(u64, u64, bool)]) -> CoopRun {
    CoopRun {
        session: Some(SessionId(1)),
        base: Some(CommitId(3)),
        plan: vec![floe_protocol::PlannedTask {
            array: t(),
            region: region(0, 10),
        }],
        grants: grants
            .iter()
            .map(|&(w, e)| Grant {
                worker: WorkerId(w),
                task: TaskId(0),
                epoch: e,
            })
            .collect(),
        completions: completions
            .iter()
            .map(|&(w, e, ok)| Completion {
                worker: WorkerId(w),
                task: TaskId(0),
                epoch: e,
                outcome: Some(if ok {
                    Ok(Reply::Accepted { unfinished: 0 })
                } else {
                    Err(FloeError::StaleEpoch {
                        task: TaskId(0),
                        presented: e,
                        current: e + 1,
                    })
                }),
                footprint: footprint(0, 10),
                writes: vec![],
            })
            .collect(),
        message: "job0".into(),
        ..CoopRun::default()
    }
}

#[test]
fn a_stale_epoch_acceptance_is_reported() {
    let (h, mut obs) = good();
    // W1's lease expired and W2 got epoch 2; W1's late completion is refused: fine.
    obs.coops
        .push(coop(&[(1, 1), (2, 2)], &[(1, 1, false), (2, 2, true)]));
    oracle::cooperative(&obs, &h.replica()).unwrap();
    // Accepting it is not.
    obs.coops[0] = coop(&[(1, 1), (2, 2)], &[(1, 1, true)]);
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::COOPERATIVE,
        "stale epoch 1",
    );
}

#[test]
fn a_stale_completion_landing_silently_is_reported() {
    let (h, mut obs) = good();
    // The final state credits W2 at epoch 2, but only W1 (epoch 1) completed.
    let mut run = coop(&[(1, 1), (2, 2)], &[]);
    run.completions = coop(&[], &[(1, 1, true)]).completions;
    run.completions[0].outcome = None;
    run.done_by.insert(TaskId(0), (WorkerId(2), 2));
    obs.coops.push(run);
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::COOPERATIVE,
        "never sent",
    );
}

#[test]
fn an_overlapping_plan_that_was_accepted_is_reported() {
    let (h, mut obs) = good();
    let mut run = coop(&[], &[]);
    run.plan.push(floe_protocol::PlannedTask {
        array: t(),
        region: region(5, 20),
    });
    obs.coops.push(run);
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::COOPERATIVE,
        "share chunks",
    );
}

#[test]
fn a_checkpoint_missing_a_chunk_is_reported() {
    let (mut h, obs) = good();
    // A checkpoint of C3 holding only what C2 wrote: C3's chunk 2 is lost.
    let c2 = h.records[&CommitId(2)].deltas[0];
    let key = manifest_key(&repo(), c2).to_string();
    let checkpoint = ObjectId(999);
    let bytes = h.store[&key].clone();
    h.store.insert(
        floe_worker::format::checkpoint_key(&repo(), checkpoint).to_string(),
        bytes,
    );
    all(&obs, &h).unwrap();
    h.records.get_mut(&CommitId(3)).unwrap().checkpoint = Some(checkpoint);
    expect(all(&obs, &h), oracle::DATA, "at C3");
}

fn contribution(worker: u64, lo: u64, hi: u64, outcome: Outcome) -> Contribution {
    Contribution {
        worker: WorkerId(worker),
        delta: ObjectId(u128::from(worker)),
        footprint: footprint(lo, hi),
        writes: vec![Write {
            path: t(),
            region: region(lo, hi),
            data: bytes(lo, hi, worker as i32),
        }],
        outcome: Some(outcome),
    }
}

fn overlapping(chunks: Vec<Vec<u64>>) -> Outcome {
    let total = chunks.len() as u64;
    Err(FloeError::OverlappingContribution {
        conflicts: vec![Conflict {
            path: t(),
            kind: ConflictKind::ChunkDoubleUpdate { chunks, total },
        }],
    })
}

fn planless(contributions: Vec<Contribution>) -> CoopRun {
    CoopRun {
        session: Some(SessionId(1)),
        base: Some(CommitId(3)),
        message: "planless0".into(),
        planless: true,
        contributions,
        ..CoopRun::default()
    }
}

#[test]
fn planless_overlaps_are_checked_by_brute_force() {
    let (h, mut obs) = good();
    let ok = Ok(Reply::Accepted { unfinished: 0 });
    // W1 writes chunk 0; W2 (chunks 0 and 1) is refused naming chunk 0.
    obs.coops.push(planless(vec![
        contribution(1, 0, 10, ok.clone()),
        contribution(2, 0, 20, overlapping(vec![vec![0]])),
    ]));
    oracle::cooperative(&obs, &h.replica()).unwrap();
    // Naming chunk 1 too is wrong: W2 shares only chunk 0.
    obs.coops[0].contributions[1] = contribution(2, 0, 20, overlapping(vec![vec![0], vec![1]]));
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::EXACT_CONFLICTS,
        "refused naming",
    );
    // A refusal with nothing accepted to overlap is a false one.
    obs.coops[0] = planless(vec![contribution(2, 0, 20, overlapping(vec![vec![0]]))]);
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::EXACT_CONFLICTS,
        "refused naming",
    );
    // Accepting both is a missed overlap.
    obs.coops[0] = planless(vec![
        contribution(1, 0, 10, ok.clone()),
        contribution(2, 5, 20, ok),
    ]);
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::EXACT_CONFLICTS,
        "the session holds both",
    );
}

#[test]
fn a_contribution_whose_answer_was_lost_counts_as_the_session_holds_it() {
    let (h, mut obs) = good();
    let ok = Ok(Reply::Accepted { unfinished: 0 });
    let expired = Err(FloeError::SessionExpired { client: 3 });
    // W1's retry found its client session expired: the first send landed
    // (the session holds W1), so W2's refusal naming chunk 0 is right.
    let mut run = planless(vec![
        contribution(1, 0, 10, expired.clone()),
        contribution(2, 0, 20, overlapping(vec![vec![0]])),
    ]);
    run.held_deltas = Some(vec![ObjectId(1)]);
    obs.coops.push(run);
    oracle::cooperative(&obs, &h.replica()).unwrap();
    // Had the session not held W1, the refusal would have been false.
    obs.coops[0].held_deltas = Some(Vec::new());
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::EXACT_CONFLICTS,
        "refused naming",
    );
    // A contribution refused for good must not be held.
    obs.coops[0] = planless(vec![
        contribution(1, 0, 10, ok),
        contribution(2, 0, 20, overlapping(vec![vec![0]])),
    ]);
    obs.coops[0].held_deltas = Some(vec![ObjectId(1), ObjectId(2)]);
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::EXACT_CONFLICTS,
        "refused but the session holds it",
    );
    // An accepted one must be.
    obs.coops[0].held_deltas = Some(Vec::new());
    expect(
        oracle::cooperative(&obs, &h.replica()),
        oracle::EXACT_CONFLICTS,
        "accepted but the session does not hold it",
    );
}

fn ended(kind: &'static str, end: End, invalid_plan: bool) -> ClientEnd {
    ClientEnd {
        client: 4,
        kind,
        end,
        invalid_plan,
        creates: Vec::new(),
    }
}

#[test]
fn a_job_refused_for_creating_a_landed_array_is_explained() {
    let (h, mut obs) = good();
    let refused = FloeError::InvalidChange {
        why: "cannot create /t: it already exists at the base".into(),
    };
    // `/t` was created by C1: the refusal is the workload's doing.
    let mut end = ended("job", End::Failed(refused), false);
    end.creates = vec![t()];
    obs.ends = vec![end.clone()];
    all(&obs, &h).unwrap();
    // A job creating only a path no commit created has no such excuse.
    end.creates = vec![ArrayPath::new("/u").unwrap()];
    obs.ends = vec![end];
    expect(
        all(&obs, &h),
        "client-ends",
        "job c5 failed with invalid change",
    );
}

#[test]
fn a_client_ending_on_an_unexplained_error_is_reported() {
    let (h, mut obs) = good();
    obs.ends = vec![
        ended("writer", End::Landed, false),
        ended("writer", End::Conflict, false),
        ended("worker", End::Finished, false),
        ended(
            "writer",
            End::Failed(FloeError::OutOfDate { tip: CommitId(3) }),
            false,
        ),
    ];
    all(&obs, &h).unwrap();
    obs.ends.push(ended(
        "writer",
        End::Failed(FloeError::Codec("truncated".into())),
        false,
    ));
    expect(
        all(&obs, &h),
        "client-ends",
        "writer c5 failed with codec: truncated",
    );
}

#[test]
fn giving_up_without_a_fault_to_blame_is_reported() {
    let (h, mut obs) = good();
    let gave_up = FloeError::Unavailable("request 3 given up after 20 sends".into());
    obs.ends = vec![ended("writer", End::Failed(gave_up), false)];
    expect(all(&obs, &h), "client-ends", "given up");
    obs.faults.add(FaultKind::Partition);
    all(&obs, &h).unwrap();
    // A store fault explains store trouble, not a coordinator that never answers.
    obs.faults = FaultCounts::default();
    obs.faults.add(FaultKind::PutFailure);
    expect(all(&obs, &h), "client-ends", "given up");
}

#[test]
fn a_valid_plan_refused_is_reported() {
    let (h, mut obs) = good();
    let refused = FloeError::InvalidPlan {
        why: "tasks 0 and 1 share chunks".into(),
    };
    obs.ends = vec![ended("job", End::Failed(refused.clone()), true)];
    all(&obs, &h).unwrap();
    obs.ends = vec![ended("job", End::Failed(refused), false)];
    expect(
        all(&obs, &h),
        "client-ends",
        "job c5 failed with invalid plan",
    );
}

fn read(invoked_ms: u64, tip: u64) -> Read {
    Read {
        client: 6,
        invoked_ms,
        replied_ms: invoked_ms + 5,
        branch: BranchName::new("main").unwrap(),
        tip: CommitId(tip),
    }
}

#[test]
fn a_stale_read_is_reported() {
    let (h, mut obs) = good();
    obs.acks = vec![Ack {
        client: 2,
        at_ms: 50,
        commit: CommitId(3),
    }];
    // Asked before C3 was acknowledged: C2 is a state that existed.
    obs.reads = vec![read(40, 2), read(60, 3)];
    all(&obs, &h).unwrap();
    obs.reads.push(read(100, 2));
    expect(
        all(&obs, &h),
        "linearizable-reads",
        "stale read: checkout of main by c7 asked at 100 ms (answered at 105 ms) returned tip C2, but C3 was acknowledged",
    );
}

#[test]
fn a_read_of_a_commit_that_never_landed_is_reported() {
    let (h, mut obs) = good();
    obs.reads = vec![read(10, 9)];
    expect(
        all(&obs, &h),
        "linearizable-reads",
        "returned C9, which is not in the final history",
    );
}

/// A footprint that misses a chunk its writes touch (as a wrong
/// region-to-chunk mapping in the client would make) is reported, the
/// truth computed by plain division, not by the client's helpers.
#[test]
fn a_footprint_missing_a_written_chunk_is_reported() {
    let (h, mut obs) = good();
    obs.attempts[1].footprint = footprint(0, 10);
    expect(
        all(&obs, &h),
        "exact-conflicts",
        "sent a footprint naming chunks /t [0] but its writes touch /t [0] [1]",
    );
}

/// The good history plus a branch `dev` created at `C2`, with `C4`
/// ("d#1", writing `0:10` on `C2`) on it while `main` went on to `C3`.
fn branched() -> (History, Observations) {
    let (mut h, mut obs) = good();
    h.branch = "dev";
    h.write(4, 2, 2, "d#1", (0, 10), 7);
    h.branch = "main";
    obs.attempts.push(attempt(
        "d#1",
        2,
        2,
        (0, 10),
        7,
        CommitMode::Strict,
        committed(4, 2, 0),
    ));
    (h, obs)
}

#[test]
fn a_branch_off_an_older_commit_passes_every_oracle() {
    let (h, obs) = branched();
    all(&obs, &h).unwrap();
}

#[test]
fn a_commit_off_its_branch_is_reported() {
    let (mut h, obs) = branched();
    // `dev` says its tip is C2: C4, committed to dev, is on no chain.
    h.tips.insert("dev", 2);
    expect(
        all(&obs, &h),
        oracle::ONE_HISTORY,
        "C4 (\"d#1\") is not on the chain of its branch dev (tip C2)",
    );
}

#[test]
fn a_read_of_another_branch_is_not_stale() {
    let (h, mut obs) = branched();
    obs.acks = vec![Ack {
        client: 2,
        at_ms: 50,
        commit: CommitId(4),
    }];
    // C4 landed on dev: a later checkout of main need not see it.
    obs.reads = vec![read(100, 3)];
    all(&obs, &h).unwrap();
    obs.reads[0].branch = BranchName::new("dev").unwrap();
    expect(
        all(&obs, &h),
        "linearizable-reads",
        "checkout of dev by c7 asked at 100 ms (answered at 105 ms) returned tip C3, but C4",
    );
}

fn tag() -> TagName {
    TagName::new("t0").unwrap()
}

/// `t0` created at C2 (acknowledged), resolved by a client that read
/// `0:15` there.
fn tagged() -> (History, Observations) {
    let (mut h, mut obs) = good();
    h.tags.insert(tag(), CommitId(2));
    obs.tags = vec![TagMade {
        client: 7,
        tag: tag(),
        at: CommitId(2),
        outcome: Some(Ok(Reply::Done)),
    }];
    obs.tag_reads = vec![TagRead {
        client: 8,
        tag: tag(),
        commit: CommitId(2),
        read: Some(Write {
            path: t(),
            region: region(0, 15),
            data: bytes(0, 15, 5),
        }),
    }];
    (h, obs)
}

#[test]
fn a_tag_read_at_its_commit_passes() {
    let (h, obs) = tagged();
    all(&obs, &h).unwrap();
}

#[test]
fn a_tag_that_moved_is_reported() {
    let (mut h, obs) = tagged();
    h.tags.insert(tag(), CommitId(3));
    expect(
        all(&obs, &h),
        oracle::TAGS,
        "tag t0 was created at C2 by c8, but replica n1 resolves it to C3: the tag moved",
    );
    let (h, mut obs) = tagged();
    obs.tag_reads[0].commit = CommitId(3);
    expect(
        all(&obs, &h),
        oracle::TAGS,
        "but c9 resolved it to C3: the tag moved",
    );
}

#[test]
fn an_acknowledged_tag_that_is_gone_is_reported() {
    let (mut h, obs) = tagged();
    h.tags.clear();
    expect(
        all(&obs, &h),
        oracle::TAGS,
        "(acknowledged), but replica n1 has no such tag",
    );
}

#[test]
fn a_wrong_read_at_a_tag_is_reported() {
    let (h, mut obs) = tagged();
    if let Some(w) = obs.tag_reads[0].read.as_mut() {
        w.data = bytes(0, 15, 6);
    }
    expect(all(&obs, &h), oracle::DATA, "at tag t0 by c9");
}
