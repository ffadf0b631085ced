//! The index-based commit rule against the reference walk it replaced
//! (`collect_since_base` + `detect`), on random histories: writes, resizes
//! that grow and shrink (aligned or not, with their edge rewrites), deletes,
//! re-creates with another rank, metadata updates, rebased commits whose
//! `theirs` solver dropped chunks, and branches created from old commits.

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, CommitRequest,
    DType, Envelope, Footprint, MetaChange, ObjectId, Outcome, Query, Reply, RepoName, Request,
    Solver,
};

use super::commit::{collect_since_base, detect, span_since_base, Detection};
use super::repo::Repo;
use super::{Config, State};
use crate::machine::StateMachine;

const PATHS: [&str; 3] = ["/a", "/b", "/c"];
const BRANCHES: [&str; 3] = ["main", "dev", "old"];

fn repo_name() -> RepoName {
    RepoName::new("r").expect("valid name")
}

fn branch_name(s: &str) -> BranchName {
    BranchName::new(s).expect("valid name")
}

fn array_path(s: &str) -> ArrayPath {
    ArrayPath::new(s).expect("valid path")
}

/// Drives a [`State`] through envelopes, as a node would.
struct World {
    state: State,
    rng: SmallRng,
    seq: u64,
}

impl World {
    fn new(seed: u64) -> Self {
        let mut w = World {
            state: State::new(Config::default()),
            rng: SmallRng::seed_from_u64(seed),
            seq: 0,
        };
        // OpenClient is not numbered in the idempotency table.
        w.apply(Command::OpenClient).expect("session opened");
        w.seq = 0;
        w.apply(Command::CreateRepo { repo: repo_name() })
            .expect("repo created");
        w
    }

    fn apply(&mut self, command: Command) -> Outcome {
        self.seq += 1;
        let envelope = Envelope {
            client: ClientId(1),
            seq: self.seq,
            request: Request::Command(command),
        };
        self.state.apply(1_000 + self.seq, &envelope)
    }

    fn repo(&self) -> &Repo {
        self.state.repos.get(&repo_name()).expect("repo r")
    }

    fn branches(&self) -> Vec<BranchName> {
        self.repo().branches.keys().cloned().collect()
    }

    fn any_commit(&mut self) -> CommitId {
        let n = self.repo().next_id().0;
        CommitId(self.rng.gen_range(0..n))
    }

    fn pick_branch(&mut self) -> BranchName {
        let branches = self.branches();
        branches[self.rng.gen_range(0..branches.len())].clone()
    }

    /// An ancestor of `tip`, at most a few commits back, or `tip`.
    fn ancestor(&mut self, tip: CommitId) -> CommitId {
        let mut id = tip;
        for _ in 0..self.rng.gen_range(0..6) {
            match self.repo().commit(id).ok().and_then(|r| r.parent) {
                Some(parent) => id = parent,
                None => break,
            }
        }
        id
    }

    /// One random step of history.
    fn step(&mut self) {
        let roll = self.rng.gen_range(0..20);
        if roll == 0 {
            self.branch_from_anywhere();
            return;
        }
        let branch = self.pick_branch();
        let tip = self.repo().tip(&branch).expect("tip");
        let (base, mode) = if roll < 5 {
            let solver = [Solver::Ours, Solver::Theirs][self.rng.gen_range(0..2)];
            (self.ancestor(tip), CommitMode::Rebase { solver })
        } else {
            (tip, CommitMode::Strict)
        };
        let footprint = self.footprint(base);
        let _ = self.commit(&branch, base, footprint, mode);
    }

    fn branch_from_anywhere(&mut self) {
        let at = self.any_commit();
        let branch = branch_name(BRANCHES[self.rng.gen_range(1..BRANCHES.len())]);
        let _ = self.apply(Command::CreateBranch {
            repo: repo_name(),
            branch,
            at,
        });
    }

    fn commit(
        &mut self,
        branch: &BranchName,
        base: CommitId,
        footprint: Footprint,
        mode: CommitMode,
    ) -> Outcome {
        let deltas = match footprint.chunk_count() {
            0 => Vec::new(),
            _ => vec![ObjectId(u128::from(self.seq))],
        };
        self.apply(Command::Commit(CommitRequest {
            repo: repo_name(),
            branch: branch.clone(),
            base,
            footprint,
            deltas,
            message: String::new(),
            author: String::new(),
            mode,
        }))
    }

    /// A random footprint, valid against `base`'s arrays, over one or two
    /// paths.
    fn footprint(&mut self, base: CommitId) -> Footprint {
        let arrays = self.repo().commit(base).expect("base").arrays.clone();
        let mut f = Footprint::new();
        for _ in 0..self.rng.gen_range(1..=2) {
            let path = array_path(PATHS[self.rng.gen_range(0..PATHS.len())]);
            if f.arrays.contains_key(&path) {
                continue;
            }
            match arrays.get(&path) {
                None => self.create(&mut f, &path),
                Some(meta) => self.change(&mut f, &path, meta),
            }
        }
        f
    }

    fn random_meta(&mut self, rank: usize, chunk_shape: Option<Vec<u64>>) -> ArrayMeta {
        let chunks =
            chunk_shape.unwrap_or_else(|| (0..rank).map(|_| self.rng.gen_range(1..=3)).collect());
        let shape = (0..rank).map(|_| self.rng.gen_range(1..=10)).collect();
        ArrayMeta::new(shape, chunks, DType::I32, 0.0).expect("valid meta")
    }

    fn create(&mut self, f: &mut Footprint, path: &ArrayPath) {
        let rank = self.rng.gen_range(1..=2);
        let meta = self.random_meta(rank, None);
        f.set_meta(path, &meta, MetaChange::Create(meta.clone()));
        if self.rng.gen_bool(0.6) {
            self.write_chunks(f, path, &meta);
        }
    }

    fn change(&mut self, f: &mut Footprint, path: &ArrayPath, meta: &ArrayMeta) {
        match self.rng.gen_range(0..10) {
            0 => f.set_meta(path, meta, MetaChange::Delete),
            1..=2 => {
                let new = self.random_meta(meta.shape.len(), Some(meta.chunk_shape.clone()));
                f.set_meta(path, &new, MetaChange::Update(new.clone()));
                if self.rng.gen_bool(0.5) {
                    self.write_chunks(f, path, &new);
                }
            }
            _ => self.write_chunks(f, path, meta),
        }
    }

    fn write_chunks(&mut self, f: &mut Footprint, path: &ArrayPath, meta: &ArrayMeta) {
        let grid = meta.grid();
        for _ in 0..self.rng.gen_range(1..=6) {
            let coord: Vec<u64> = grid.iter().map(|&g| self.rng.gen_range(0..g)).collect();
            f.add_chunk(path, meta, &coord);
        }
    }
}

/// The reference answer: the walk and `detect` over every commit since
/// the base.
fn reference(
    repo: &Repo,
    branch: &BranchName,
    base: CommitId,
    ours: &Footprint,
) -> Result<Detection, String> {
    let tip = repo.tip(branch).map_err(|e| e.to_string())?;
    let since = collect_since_base(repo, branch, base, tip).map_err(|e| e.to_string())?;
    Ok(detect(ours, &since))
}

/// The index's answer.
fn indexed(
    repo: &Repo,
    branch: &BranchName,
    base: CommitId,
    ours: &Footprint,
) -> Result<Detection, String> {
    let tip = repo.tip(branch).map_err(|e| e.to_string())?;
    let span = span_since_base(repo, branch, base, tip).map_err(|e| e.to_string())?;
    let index = repo.index(branch).map_err(|e| e.to_string())?;
    Ok(index.detect(ours, span.base_height()))
}

/// A random history of `steps` steps.
fn history(seed: u64, steps: usize) -> World {
    let mut w = World::new(seed);
    for _ in 0..steps {
        w.step();
    }
    w
}

/// Random (branch, base, footprint) questions, asked of both rules.
fn compare(w: &mut World, questions: usize) -> Result<(), TestCaseError> {
    for _ in 0..questions {
        let branch = w.pick_branch();
        let tip = w.repo().tip(&branch).expect("tip");
        let base = match w.rng.gen_bool(0.7) {
            true => w.ancestor(tip),
            false => w.any_commit(),
        };
        if base == tip {
            continue;
        }
        let ours = w.footprint(base);
        let expected = reference(w.repo(), &branch, base, &ours);
        let got = indexed(w.repo(), &branch, base, &ours);
        prop_assert_eq!(
            &got,
            &expected,
            "branch {} base {} ours {:?}",
            branch,
            base,
            ours
        );
        if let Ok(found) = &expected {
            let asked = fast_forward(&w.state, &branch, base, &ours);
            prop_assert_eq!(asked, found.conflicts(&ours));
        }
    }
    Ok(())
}

/// `CanFastForward` through the state machine's query path.
fn fast_forward(
    state: &State,
    branch: &BranchName,
    base: CommitId,
    ours: &Footprint,
) -> Vec<floe_protocol::Conflict> {
    let query = Query::CanFastForward {
        repo: repo_name(),
        branch: branch.clone(),
        base,
        footprint: ours.clone(),
    };
    match state.query(&query) {
        Ok(Reply::FastForward { conflicts, .. }) => conflicts,
        other => panic!("{other:?}"),
    }
}

/// `ancestor_at` against a walk by parents.
fn check_ancestors(w: &mut World) -> Result<(), TestCaseError> {
    for _ in 0..8 {
        let id = w.any_commit();
        let height = w.repo().commit(id).expect("commit").height;
        let target = w.rng.gen_range(0..=height + 1);
        let mut walked = Some(id);
        while let Some(c) = walked.filter(|&c| w.repo().commit(c).expect("c").height > target) {
            walked = w.repo().commit(c).expect("c").parent;
        }
        let walked = walked.filter(|&c| w.repo().commit(c).expect("c").height == target);
        prop_assert_eq!(w.repo().ancestor_at(id, target).expect("known"), walked);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn index_agrees_with_the_reference_walk(seed in any::<u64>(), steps in 1usize..60) {
        let mut w = history(seed, steps);
        compare(&mut w, 24)?;
        check_ancestors(&mut w)?;
    }

    #[test]
    fn index_survives_snapshot_and_restore(seed in any::<u64>(), steps in 1usize..40) {
        let mut w = history(seed, steps);
        let bytes = w.state.snapshot().expect("snapshot");
        let mut restored = State::new(Config::default());
        restored.restore(&bytes).expect("restore");
        prop_assert_eq!(restored.digest(), w.state.digest());
        prop_assert_eq!(&restored.repos[&repo_name()].indexes, &w.repo().indexes);
        w.state = restored;
        compare(&mut w, 12)?;
    }
}

/// An index built by walking a chain at branch creation equals the one
/// maintained commit by commit.
#[test]
fn a_branch_at_a_tip_and_one_built_by_walking_agree() {
    let mut w = history(7, 40);
    let main = branch_name("main");
    let tip = w.repo().tip(&main).expect("tip");
    let parent = w.repo().commit(tip).expect("tip").parent;
    for (branch, at) in [("dev", Some(tip)), ("old", parent)] {
        let Some(at) = at else { continue };
        let branch = branch_name(branch);
        let _ = w.apply(Command::CreateBranch {
            repo: repo_name(),
            branch: branch.clone(),
            at,
        });
        let ours = w.footprint(at);
        let _ = w.commit(&branch, at, ours, CommitMode::Strict);
    }
    let main_index = w.repo().index(&main).expect("main").clone();
    let walked = w.repo().index_at(tip).expect("walk");
    assert_eq!(main_index, walked);
}

/// Which commit last wrote a chunk: the question the index answers.
#[test]
fn the_index_names_the_last_writer_of_a_chunk() {
    let mut w = World::new(1);
    let main = branch_name("main");
    let a = array_path("/a");
    let meta = ArrayMeta::new(vec![4], vec![1], DType::I32, 0.0).expect("meta");
    let mut create = Footprint::new();
    create.set_meta(&a, &meta, MetaChange::Create(meta.clone()));
    let _ = w.commit(&main, CommitId(0), create, CommitMode::Strict);
    let mut write = Footprint::new();
    write.add_chunk(&a, &meta, &[2]);
    for base in [1, 2] {
        let _ = w.commit(&main, CommitId(base), write.clone(), CommitMode::Strict);
    }
    let index = w.repo().index(&main).expect("main");
    assert_eq!(index.last_write(&a, &[2]), Some((3, CommitId(3))));
    assert_eq!(index.last_write(&a, &[1]), None);
}
