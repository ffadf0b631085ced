//! `reads`: a `read` of a branch's tip is linearizable: it sees a commit
//! on the branch, no older than any commit acknowledged before it began,
//! and made before it ended.

use std::collections::BTreeMap;

use crate::context::{Context, Key};
use crate::final_reads::Chain;
use crate::{Op, Summary, Type, Violation};

/// Something the branch had when it was acknowledged: a commit landing on
/// it, or the branch being created at a commit.
#[derive(Clone, Debug)]
struct Ack {
    /// When it was acknowledged.
    time: u64,
    /// Where the commit is on the branch's chain.
    position: usize,
    /// The commit.
    id: String,
}

/// Per branch: acknowledgements by time, each carrying the furthest
/// position acknowledged up to it (a running maximum, so that one binary
/// search answers "the newest commit a read starting now must see").
type Acks = BTreeMap<Key, Vec<Ack>>;

/// Judges every `ok` read.
pub(crate) fn check(ctx: &Context<'_>, summary: &mut Summary) -> Vec<Violation> {
    let acks = acknowledgements(ctx);
    let reads = ctx
        .ops
        .iter()
        .filter(|o| o.invoke.f == "read" && o.outcome() == Type::Ok);
    reads
        .filter_map(|r| judge(ctx, &acks, r, summary))
        .collect()
}

fn acknowledgements(ctx: &Context<'_>) -> Acks {
    let mut out: Acks = BTreeMap::new();
    let mut add = |key: Key, time: u64, id: &str| {
        let Some(chain) = ctx.chains.get(&key) else {
            return;
        };
        // Not on the chain: lost, which the commits checker reports.
        if let Some(position) = chain.at(id) {
            let id = id.to_string();
            out.entry(key).or_default().push(Ack { time, position, id });
        }
    };
    for c in &ctx.commits {
        if let (Some(time), Some(id)) = (c.op.ok_time(), c.acked_id()) {
            add((c.repo.clone(), c.branch.clone()), time, id);
        }
    }
    for op in ctx.ops.iter().filter(|o| o.invoke.f == "branch") {
        if let (Some(time), Some(repo), Some(branch), Some(at)) =
            (op.ok_time(), op.arg("repo"), op.arg("branch"), op.arg("at"))
        {
            add((repo.to_string(), branch.to_string()), time, at);
        }
    }
    for acks in out.values_mut() {
        acks.sort_by_key(|a| a.time);
        for i in 1..acks.len() {
            if acks[i - 1].position > acks[i].position {
                acks[i].position = acks[i - 1].position;
                acks[i].id = acks[i - 1].id.clone();
            }
        }
    }
    out
}

fn judge(
    ctx: &Context<'_>,
    acks: &Acks,
    read: &Op<'_>,
    summary: &mut Summary,
) -> Option<Violation> {
    let (Some(repo), Some(branch)) = (read.arg("repo"), read.arg("branch")) else {
        summary.skip("reads: a read without repo or branch");
        return None;
    };
    let Some(seen) = read.result("commit") else {
        let what = format!("read of {repo}/{branch} returned no commit id");
        return Some(Violation::new("well-formed", what, read.lines()));
    };
    summary.reads_checked += 1;
    let key = (repo.to_string(), branch.to_string());
    let why = match ctx.chains.get(&key) {
        Some(chain) => stale(chain, acks.get(&key), read, seen),
        None => None,
    };
    let why = why.or_else(|| from_the_future(ctx, repo, read, seen));
    why.map(|why| {
        Violation::new(
            "reads",
            format!("read of {repo}/{branch} saw {seen}, but {why}"),
            read.lines(),
        )
    })
}

/// Why `seen` is not on the chain, or older than a commit acknowledged
/// before the read began.
fn stale(chain: &Chain, acks: Option<&Vec<Ack>>, read: &Op<'_>, seen: &str) -> Option<String> {
    let Some(at) = chain.at(seen) else {
        return Some("it is not on the branch's final log".into());
    };
    let acks = acks?;
    let before = acks.partition_point(|a| a.time < read.invoke.time);
    let newest = before.checked_sub(1).and_then(|i| acks.get(i))?;
    (newest.position > at).then(|| {
        format!(
            "{} was acknowledged (at {} ns) before the read began (at {} ns) and is after it on the branch",
            newest.id, newest.time, read.invoke.time
        )
    })
}

/// Why `seen` could not have existed yet when the read ended.
fn from_the_future(ctx: &Context<'_>, repo: &str, read: &Op<'_>, seen: &str) -> Option<String> {
    let maker = ctx.maker(repo, seen)?;
    let ended = read.end?.time;
    (maker.op.invoke.time > ended).then(|| {
        format!(
            "its commit {:?} was invoked (at {} ns) after the read ended (at {ended} ns)",
            maker.message, maker.op.invoke.time
        )
    })
}
