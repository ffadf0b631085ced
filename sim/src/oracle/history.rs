//! Oracles 2 (one history) and 4 (replicas agree).

use std::collections::BTreeMap;

use floe_protocol::{CommitId, Outcome, Reply};

use super::{by_message, history, Check, Failure, ONE_HISTORY, REPLICAS_AGREE};
use crate::obs::{Observations, Replica};

/// Oracle 4, online: every `Applied{index, digest}` of every node, checked
/// as it is reported.
#[derive(Default)]
pub struct DigestBook {
    seen: BTreeMap<u64, (u64, u64)>,
}

impl DigestBook {
    /// Records that `node` reached `index` with `digest`; fails when another
    /// node (or the same one, before a crash) reported another digest there.
    pub fn record(&mut self, node: u64, index: u64, digest: u64) -> Check {
        match self.seen.get(&index) {
            Some(&(first, by)) if first != digest => Err(Failure::new(
                REPLICAS_AGREE,
                format!(
                    "at applied index {index} node n{node} has state digest {digest:016x} \
                     but n{by} had {first:016x}: the replicas applied different commands"
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.seen.insert(index, (digest, node));
                Ok(())
            }
        }
    }

    /// The highest index any node reported.
    pub fn highest(&self) -> u64 {
        self.seen.keys().next_back().copied().unwrap_or(0)
    }
}

/// Oracle 4, final: once caught up, every replica holds the same state.
pub fn replicas_agree(replicas: &[Replica]) -> Check {
    let Some(first) = replicas.first() else {
        return Ok(());
    };
    for r in &replicas[1..] {
        let fail = |what: String| {
            Err(Failure::new(
                REPLICAS_AGREE,
                format!(
                    "after the liveness phase n{} and n{}: {what}",
                    first.node, r.node
                ),
            ))
        };
        if r.applied != first.applied {
            return fail(format!("applied {} vs {}", first.applied, r.applied));
        }
        if r.branches != first.branches {
            return fail(format!("branches {:?} vs {:?}", first.branches, r.branches));
        }
        if r.tags != first.tags {
            return fail(format!("tags {:?} vs {:?}", first.tags, r.tags));
        }
        if r.records != first.records {
            return fail("hold different commit records".into());
        }
        if r.digest != first.digest {
            return fail(format!(
                "digests {:016x} vs {:016x} at index {}",
                first.digest, r.digest, r.applied
            ));
        }
    }
    Ok(())
}

/// Oracle 2 on one replica: one chain; no message twice; every
/// acknowledged commit on it, once, as acknowledged; every commit that
/// wrote chunks was attempted by some client.
pub fn one_history(obs: &Observations, r: &Replica) -> Check {
    let ids = history(r)?;
    let messages = by_message(r, &ids);
    let fail = |d: String| Err(Failure::new(ONE_HISTORY, d));
    for (message, at) in &messages {
        if at.len() > 1 {
            let list: Vec<String> = at.iter().map(ToString::to_string).collect();
            return fail(format!(
                "message {message:?} landed {} times ({}): a retried commit was executed twice",
                at.len(),
                list.join(", ")
            ));
        }
    }
    for a in &obs.attempts {
        let who = format!("client c{}", a.client.wrapping_add(1));
        check_acked(r, &who, &a.message, a.outcome.as_ref())?;
    }
    for c in &obs.coops {
        check_acked(r, "the cooperative job", &c.message, c.outcome.as_ref())?;
    }
    let attempted = obs.model_attempts();
    for id in ids.iter().filter(|id| id.0 != 0) {
        let rec = &r.records[id];
        if !attempted.contains_key(&rec.message) && rec.footprint.chunk_count() > 0 {
            return fail(format!(
                "{id} ({:?}) is on the chain but no client attempted it",
                rec.message
            ));
        }
    }
    Ok(())
}

/// An acknowledged commit is on the chain under its id, as acknowledged.
fn check_acked(r: &Replica, who: &str, message: &str, outcome: Option<&Outcome>) -> Check {
    let Some(Ok(Reply::Committed {
        commit,
        parent,
        rebased_over,
    })) = outcome
    else {
        return Ok(());
    };
    let who = format!("{who} was told {message:?} landed as {commit} on {parent}");
    let fail = |d: String| Err(Failure::new(ONE_HISTORY, format!("{who}, but {d}")));
    let Some(rec) = r.records.get(commit) else {
        return fail(format!(
            "the final chain (tip {}) has no {commit}: an acknowledged commit was lost",
            r.tip
        ));
    };
    if rec.message != message {
        return fail(format!(
            "{commit} on the final chain is {:?}: an acknowledged commit was lost",
            rec.message
        ));
    }
    if rec.parent != Some(*parent) || rec.rebased_over != *rebased_over {
        return fail(format!(
            "the final {commit} has parent {:?} and rebased_over {} (acknowledged {rebased_over})",
            rec.parent.map(|p: CommitId| p.to_string()),
            rec.rebased_over
        ));
    }
    Ok(())
}
