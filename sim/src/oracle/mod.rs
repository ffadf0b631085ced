//! The oracles of DESIGN.md section 4, as plain functions over plain data
//! ([`Observations`](crate::obs::Observations) from the clients, [`Replica`] views of the final
//! states, the simulated store), so tests can feed them hand-made broken
//! histories and watch them fail.

mod conflicts;
mod data;
mod ends;
mod history;
mod reads;
mod tags;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use floe_protocol::{BranchName, CommitId, CommitRecord};

pub use conflicts::{cooperative, exact_conflicts};
pub use data::data;
pub use ends::client_ends;
pub use history::{one_history, replicas_agree, DigestBook};
pub use reads::linearizable_reads;
pub use tags::tags_stay;

use crate::obs::Replica;

/// Oracle 1: landed commits share no chunk with what landed since their
/// base; conflict answers name exactly the shared chunks.
pub const EXACT_CONFLICTS: &str = "exact-conflicts";
/// Oracle 1, cooperative half: plans never overlap, stale epochs never land.
pub const COOPERATIVE: &str = "cooperative";
/// Oracle 2: one chain; every acknowledged commit on it exactly once.
pub const ONE_HISTORY: &str = "one-history";
/// Oracle 3: every commit reads back as the reference model says.
pub const DATA: &str = "data";
/// Oracle 4: equal digests at equal applied indexes; equal final states.
pub const REPLICAS_AGREE: &str = "replicas-agree";
/// Oracle 5: after the faults stop, everything finishes in bounded time.
pub const LIVENESS: &str = "liveness";
/// Oracle 6: every client of the core ended landed, in a true conflict,
/// out of date, or with a failure the injected faults explain.
pub const CLIENT_ENDS: &str = "client-ends";
/// Oracle 7: a checkout returns a state that existed between its request
/// and its answer: every commit acknowledged before it began is there.
pub const LINEARIZABLE_READS: &str = "linearizable-reads";
/// Oracle 8: a tag never moves: it resolves, for every client and on
/// every replica, to the commit it was created at.
pub const TAGS: &str = "tags-stay";
/// Not an oracle: a core panicked (always a bug).
pub const PANIC: &str = "panic";

/// A violated property: which oracle, and exactly what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The oracle's name (one of the constants of this module).
    pub oracle: &'static str,
    /// What was seen, precisely enough to start debugging.
    pub detail: String,
}

impl Failure {
    /// A failure of `oracle`.
    pub fn new(oracle: &'static str, detail: impl Into<String>) -> Self {
        Failure {
            oracle,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.oracle, self.detail)
    }
}

/// What an oracle returns.
pub type Check = Result<(), Failure>;

/// Every commit of the replica's history, in id order, after checking
/// the history is a tree of branch chains holding every record: along
/// each branch, heights step by one and parents link down to the root;
/// every record is on the chain of the branch it was committed to.
/// Fails with [`ONE_HISTORY`].
pub fn history(r: &Replica) -> Result<Vec<CommitId>, Failure> {
    let fail = |d: String| Failure::new(ONE_HISTORY, format!("replica n{}: {d}", r.node));
    let mut on_branch: BTreeMap<&BranchName, BTreeSet<CommitId>> = BTreeMap::new();
    for (branch, &tip) in &r.branches {
        let ids = branch_chain(r, tip).map_err(|d| fail(format!("branch {branch}: {d}")))?;
        on_branch.insert(branch, ids);
    }
    for (id, rec) in &r.records {
        if id.0 == 0 {
            continue;
        }
        let Some(ids) = on_branch.get(&rec.branch) else {
            return Err(fail(format!(
                "{id} ({:?}) was committed to branch {}, which does not exist",
                rec.message, rec.branch
            )));
        };
        if !ids.contains(id) {
            return Err(fail(format!(
                "{id} ({:?}) is not on the chain of its branch {} (tip {}): the history forked",
                rec.message, rec.branch, r.branches[&rec.branch]
            )));
        }
    }
    Ok(r.records.keys().copied().collect())
}

/// The commits from `tip` down to the root, checking heights and links.
fn branch_chain(r: &Replica, tip: CommitId) -> Result<BTreeSet<CommitId>, String> {
    let mut out = BTreeSet::new();
    let mut cur = Some(tip);
    let mut child: Option<&CommitRecord> = None;
    while let Some(id) = cur {
        let rec = r
            .records
            .get(&id)
            .ok_or_else(|| format!("the chain from tip {tip} reaches unknown {id}"))?;
        if let Some(child) = child.filter(|c| rec.height + 1 != c.height) {
            return Err(format!(
                "{} (height {}) has parent {id} of height {}",
                child.id, child.height, rec.height
            ));
        }
        if !out.insert(id) {
            return Err(format!("the chain from {tip} loops"));
        }
        child = Some(rec);
        cur = rec.parent;
    }
    if !out.contains(&CommitId(0)) {
        return Err(format!("the chain from {tip} does not end at C0"));
    }
    Ok(out)
}

/// The chain's record ids by message (messages may repeat on a broken chain).
fn by_message(r: &Replica, chain: &[CommitId]) -> BTreeMap<String, Vec<CommitId>> {
    let mut out: BTreeMap<String, Vec<CommitId>> = BTreeMap::new();
    for id in chain {
        out.entry(r.records[id].message.clone())
            .or_default()
            .push(*id);
    }
    out
}
