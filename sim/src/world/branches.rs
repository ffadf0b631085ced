//! Branches and tags in the workload. On some seeds a brancher checks out
//! `main`, creates the branch `dev` at any commit up to that tip, and
//! writers then commit to `dev` while others go on on `main`. Taggers
//! check out a branch, tag its tip, and a reader later resolves the tag and
//! reads a region there. Every step is a single request through the core's
//! `Call` (or a `ReadTask` for the read), chained by the world. The oracles
//! then check each branch's history, that tags never move, and that the
//! data read at a tag is the model's at the tagged commit.

use floe_protocol::{BranchName, Command, CommitId, Query, Reply, Request, TagName};
use floe_worker::machine::{ReadSpec, ReadTask};
use floe_worker::resolve::History;
use rand::Rng;

use super::spawn::main;
use super::World;
use crate::client::{Client, Role};
use crate::workload;

/// The branch the brancher creates.
pub(crate) const DEV: &str = "dev";

fn dev() -> BranchName {
    BranchName::new(DEV).expect("valid")
}

impl World {
    /// Schedules the brancher and the taggers of this seed.
    pub(crate) fn spawn_branch_work(&mut self, end: u64) {
        let start = self.now;
        if self.shape.branching {
            // Early enough that the branch's writers race for a while.
            let at = self.rngs.branch.gen_range(start..(start + end) / 2 + 1);
            let checkout = checkout(main());
            self.spawn_call(Role::PickBranchPoint, checkout, at);
        }
        for _ in 0..self.shape.taggers {
            let at = self.rngs.branch.gen_range(start..end);
            self.spawn_tagger(main(), at);
        }
    }

    /// Checks out `branch` at `at`, to tag its tip under a new name.
    fn spawn_tagger(&mut self, branch: BranchName, at: u64) {
        let tag = TagName::new(format!("t{}", self.tags.len())).expect("valid");
        self.tags.push(tag.clone());
        let role = Role::CheckoutToTag {
            branch: branch.clone(),
            tag,
        };
        self.spawn_call(role, checkout(branch), at);
    }

    /// A branch or tag step was answered: its next step.
    pub(crate) fn on_branch_answer(&mut self, role: Role, reply: Reply) {
        match (role, reply) {
            (Role::PickBranchPoint, Reply::Commit(tip)) => {
                // Any commit up to the tip, the setup's at least (arrays exist).
                let at = CommitId(self.rngs.branch.gen_range(1..=tip.id.0.max(1)));
                let create = Command::CreateBranch {
                    repo: workload::repo(),
                    branch: dev(),
                    at,
                };
                self.spawn_call(Role::CreateBranch, Request::Command(create), self.now);
            }
            (Role::CreateBranch, _) => self.spawn_branch_writers(),
            (Role::CheckoutToTag { tag, .. }, Reply::Commit(tip)) => {
                let create = Command::CreateTag {
                    repo: workload::repo(),
                    tag: tag.clone(),
                    at: tip.id,
                };
                let role = Role::CreateTag { tag, at: tip.id };
                self.spawn_call(role, Request::Command(create), self.now);
            }
            (Role::CreateTag { tag, .. }, _) => self.spawn_tag_resolver(tag),
            (Role::ResolveTag { tag, path, region }, Reply::Commit(rec)) => {
                let spec = ReadSpec {
                    repo: workload::repo(),
                    commit: rec.id,
                    path,
                    region,
                    meta: None,
                    overlay: Default::default(),
                };
                let index = self.clients.len() as u32;
                let read = ReadTask::new(self.caller(index), spec, History::new());
                let client = Client::Read {
                    read: Box::new(read),
                    tag,
                };
                self.spawn(client, self.now);
            }
            _ => {}
        }
    }

    /// `dev` exists: writers on it (racing each other and, through shared
    /// history, nothing on `main`), and on half the seeds a tagger of it.
    fn spawn_branch_writers(&mut self) {
        self.branches.push(dev());
        let end = self.safety_end.max(self.now + 1);
        let wave = self.rngs.branch.gen_range(self.now..end);
        for n in 0..self.rngs.branch.gen_range(2..=5) {
            let mut script = self.drawn_script(format!("d{n}"));
            script.branch = dev();
            let at = wave + self.rngs.branch.gen_range(0..200);
            self.spawn_writer(script, at);
        }
        if self.rngs.branch.gen_bool(0.5) {
            let at = self.rngs.branch.gen_range(self.now..end);
            self.spawn_tagger(dev(), at);
        }
    }

    /// The tag exists: resolve it later and read a region of an array there.
    fn spawn_tag_resolver(&mut self, tag: TagName) {
        let rng = &mut self.rngs.branch;
        let (path, meta) = self.arrays[rng.gen_range(0..self.arrays.len())].clone();
        let aligned = rng.gen_bool(0.5);
        let region = workload::region(rng, &meta, aligned, false);
        let at = self.now + rng.gen_range(0..2_000);
        let resolve = Query::ResolveTag {
            repo: workload::repo(),
            tag: tag.clone(),
        };
        let role = Role::ResolveTag { tag, path, region };
        self.spawn_call(role, Request::Query(resolve), at);
    }
}

fn checkout(branch: BranchName) -> Request {
    Request::Query(Query::Checkout {
        repo: workload::repo(),
        branch,
    })
}
