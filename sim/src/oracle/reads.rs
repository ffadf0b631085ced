//! Oracle 7, linearizable reads: a checkout must return a branch state that
//! existed at some point between its request and its answer. Checked in
//! its strongest cheap form: the tip returned is a commit of the final
//! history, and every commit to that branch acknowledged to any client
//! before the checkout was first sent is on that tip's chain. A read answered by a
//! stale replica (a follower, a deposed leader) fails it.

use std::collections::BTreeSet;

use floe_protocol::CommitId;

use super::{Check, Failure, LINEARIZABLE_READS};
use crate::obs::{Observations, Replica};

/// Checks every checkout against the acknowledgements before it.
pub fn linearizable_reads(obs: &Observations, r: &Replica) -> Check {
    for read in &obs.reads {
        let Some(chain) = chain_of(r, read.tip) else {
            return Err(Failure::new(
                LINEARIZABLE_READS,
                format!(
                    "checkout by c{} (asked at {} ms) returned {}, which is not in the final history",
                    read.client.wrapping_add(1),
                    read.invoked_ms,
                    read.tip
                ),
            ));
        };
        let missing = obs
            .acks
            .iter()
            .filter(|a| a.at_ms < read.invoked_ms)
            .filter(|a| r.records.get(&a.commit).map(|c| &c.branch) == Some(&read.branch))
            .find(|a| !chain.contains(&a.commit));
        if let Some(ack) = missing {
            return Err(Failure::new(
                LINEARIZABLE_READS,
                format!(
                    "stale read: checkout of {} by c{} asked at {} ms (answered at {} ms) returned \
                     tip {}, but {} was acknowledged to c{} at {} ms, before the checkout began",
                    read.branch,
                    read.client.wrapping_add(1),
                    read.invoked_ms,
                    read.replied_ms,
                    read.tip,
                    ack.commit,
                    ack.client.wrapping_add(1),
                    ack.at_ms
                ),
            ));
        }
    }
    Ok(())
}

/// `tip` and its ancestors in `r`'s history; `None` when `tip` is unknown.
fn chain_of(r: &Replica, tip: CommitId) -> Option<BTreeSet<CommitId>> {
    let mut chain = BTreeSet::new();
    let mut cur = Some(tip);
    while let Some(id) = cur {
        let rec = r.records.get(&id)?;
        chain.insert(id);
        cur = rec.parent;
    }
    Some(chain)
}
