//! The oracles of DESIGN.md section 4, as plain functions over plain data
//! ([`Observations`](crate::obs::Observations) from the clients, [`Replica`] views of the final
//! states, the simulated store), so tests can feed them hand-made broken
//! histories and watch them fail.

mod conflicts;
mod data;
mod ends;
mod history;
mod reads;

use std::collections::BTreeMap;
use std::fmt;

use floe_protocol::{CommitId, CommitRecord};

pub use conflicts::{cooperative, exact_conflicts};
pub use data::data;
pub use ends::client_ends;
pub use history::{one_history, replicas_agree, DigestBook};
pub use reads::linearizable_reads;

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

/// The replica's branch chain, root first, after checking it is one chain
/// holding every record: heights step by one, parents link, it ends at the
/// root. Fails with [`ONE_HISTORY`].
pub fn chain(r: &Replica) -> Result<Vec<CommitId>, Failure> {
    let fail = |d: String| Failure::new(ONE_HISTORY, format!("replica n{}: {d}", r.node));
    let mut out = Vec::new();
    let mut cur = Some(r.tip);
    while let Some(id) = cur {
        let rec = r
            .records
            .get(&id)
            .ok_or_else(|| fail(format!("the chain from tip {} reaches unknown {id}", r.tip)))?;
        if let Some(&prev) = out.last() {
            let child: &CommitRecord = &r.records[&prev];
            if rec.height + 1 != child.height {
                return Err(fail(format!(
                    "{prev} (height {}) has parent {id} of height {}",
                    child.height, rec.height
                )));
            }
        }
        if out.len() > r.records.len() {
            return Err(fail(format!("the chain from {} loops", r.tip)));
        }
        out.push(id);
        cur = rec.parent;
    }
    out.reverse();
    if out.first() != Some(&CommitId(0)) {
        return Err(fail(format!("the chain from {} does not end at C0", r.tip)));
    }
    if out.len() != r.records.len() {
        let on: std::collections::BTreeSet<_> = out.iter().collect();
        let off: Vec<String> = r
            .records
            .keys()
            .filter(|k| !on.contains(k))
            .map(|k| format!("{k} ({:?})", r.records[k].message))
            .collect();
        return Err(fail(format!(
            "commits {} are not on the chain of main (tip {}): the history forked",
            off.join(", "),
            r.tip
        )));
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
