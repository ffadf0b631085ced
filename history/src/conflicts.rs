//! `conflicts`: a rebase commit refused by the solver `fail` names exactly
//! the chunk double updates the commit rule finds.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::context::{Commit, Context};
use crate::final_reads::Chain;
use crate::model::Change;
use crate::values::{coord_set, Chunks};
use crate::{Summary, Type, Violation};

/// The kind judged exactly; other kinds are read and left alone.
const DOUBLE_UPDATE: &str = "chunk-double-update";

/// The chunk double updates a refusal lists for one array.
#[derive(Debug, Default)]
struct Listed {
    /// The chunks listed (the server lists at most a few).
    chunks: BTreeSet<Vec<u64>>,
    /// How many chunks are shared in all.
    total: u64,
}

/// Judges every failed rebase commit with solver `fail` that lists its
/// conflicts and the tip it was decided against.
pub(crate) fn check(ctx: &Context<'_>, summary: &mut Summary) -> Vec<Violation> {
    let mut out = Vec::new();
    for c in ctx.commits.iter().filter(|c| judged_kind(c)) {
        out.extend(judge(ctx, c, summary));
    }
    out
}

/// A failed, non-strict commit with solver `fail` that carries conflicts.
fn judged_kind(c: &Commit<'_>) -> bool {
    c.op.outcome() == Type::Fail
        && c.mode.as_deref() != Some("strict")
        && c.solver.as_deref() == Some("fail")
        && c.op.end.is_some_and(|e| e.value.get("conflicts").is_some())
}

fn judge(ctx: &Context<'_>, c: &Commit<'_>, summary: &mut Summary) -> Option<Violation> {
    let end = c.op.end?;
    let Some(tip) = end.value.get("tip").and_then(Value::as_str) else {
        summary.skip("conflicts: a refusal without a tip");
        return None;
    };
    let (Some(base), Some(ours)) = (c.base.as_deref(), c.chunks.as_ref()) else {
        summary.skip("conflicts: a refused commit without base or chunks");
        return None;
    };
    let Some(chain) = ctx.chains.get(&(c.repo.clone(), c.branch.clone())) else {
        summary.skip("conflicts: no ordered final read-log of the branch");
        return None;
    };
    let (Some(from), Some(to)) = (chain.at(base), chain.at(tip)) else {
        summary.skip("conflicts: base or tip not on the final read-log");
        return None;
    };
    let listed = match listed(&end.value) {
        Ok(listed) => listed,
        Err(why) => return Some(Violation::new("well-formed", why, c.op.lines())),
    };
    summary.conflicts_checked += 1;
    let wrong = |what: String| {
        Some(Violation::new(
            "conflicts",
            format!("commit {:?} (base {base}, tip {tip}): {what}", c.message),
            c.op.lines(),
        ))
    };
    if to <= from {
        return wrong("was refused against a tip that is not after its base".into());
    }
    let expected = expected(ctx, c, ours, chain, base, tip);
    let arrays: BTreeSet<&String> = expected.keys().chain(listed.keys()).collect();
    let wrong_arrays: Vec<String> = arrays
        .into_iter()
        .filter_map(|path| {
            let none = BTreeSet::new();
            let want = expected.get(path).unwrap_or(&none);
            let got = listed.get(path);
            (!matches(got, want)).then(|| describe(path, got, want))
        })
        .collect();
    if wrong_arrays.is_empty() {
        return None;
    }
    wrong(wrong_arrays.join("; "))
}

/// Whether a listing is exact: all of them when the total fits the list,
/// else a subset with the exact total.
fn matches(got: Option<&Listed>, want: &BTreeSet<Vec<u64>>) -> bool {
    let Some(got) = got else {
        return want.is_empty();
    };
    if got.total as usize <= got.chunks.len() {
        got.chunks == *want
    } else {
        got.chunks.is_subset(want) && got.total as usize == want.len()
    }
}

fn describe(path: &str, got: Option<&Listed>, want: &BTreeSet<Vec<u64>>) -> String {
    let got = got.map_or("none".to_string(), |g| {
        format!("{:?} (total {})", g.chunks, g.total)
    });
    format!(
        "{path}: chunk double updates listed {got}, but its chunks and those written after its base share {want:?} ({})",
        want.len()
    )
}

/// Per array, the chunk double updates the refusal lists.
fn listed(v: &Value) -> Result<BTreeMap<String, Listed>, String> {
    let items = v
        .get("conflicts")
        .and_then(Value::as_array)
        .ok_or("conflicts is not a list")?;
    let mut out: BTreeMap<String, Listed> = BTreeMap::new();
    for item in items {
        if item.get("kind").and_then(Value::as_str) != Some(DOUBLE_UPDATE) {
            continue;
        }
        let path = item.get("array").and_then(Value::as_str);
        let total = item.get("total").and_then(Value::as_u64);
        let (Some(path), Some(total)) = (path, total) else {
            return Err(format!("conflict {item} has no array or no total"));
        };
        let chunks = coord_set(item.get("chunks").unwrap_or(&Value::Null))?;
        // One entry per array is what the server sends; should it send
        // more, they add up.
        let slot = out.entry(path.to_string()).or_default();
        slot.chunks.extend(chunks);
        slot.total += total;
    }
    Ok(out)
}

/// Per array, our chunks that a commit after `base` up to `tip` wrote.
/// As the commit rule: chunks a passed commit wrote while resizing the
/// array (its edge rewrite) count only against a commit creating it;
/// any other commit already conflicts with the resize itself.
fn expected(
    ctx: &Context<'_>,
    c: &Commit<'_>,
    ours: &Chunks,
    chain: &Chain,
    base: &str,
    tip: &str,
) -> Chunks {
    let passed = chain.between(base, tip).unwrap_or_default();
    let mut out = Chunks::new();
    for (path, mine) in ours {
        let creates = touches(c.changes.as_deref(), path, |ch| {
            matches!(ch, Change::Create { .. })
        });
        let theirs: BTreeSet<&Vec<u64>> = passed
            .iter()
            .filter_map(|id| ctx.entries.get(&(c.repo.clone(), id.clone())))
            .filter(|e| creates || !resized(ctx, &c.repo, &e.id, path))
            .filter_map(|e| e.chunks.get(path))
            .flatten()
            .collect();
        let shared: BTreeSet<Vec<u64>> = mine
            .iter()
            .filter(|x| theirs.contains(x))
            .cloned()
            .collect();
        if !shared.is_empty() {
            out.insert(path.clone(), shared);
        }
    }
    out
}

/// Whether the commit `id` resized `path`, as far as its operation says
/// (an unknown operation counts as a plain write).
fn resized(ctx: &Context<'_>, repo: &str, id: &str, path: &str) -> bool {
    let changes = ctx.maker(repo, id).and_then(|m| m.changes.as_deref());
    touches(changes, path, |ch| matches!(ch, Change::Resize { .. }))
}

fn touches(changes: Option<&[Change]>, path: &str, kind: impl Fn(&Change) -> bool) -> bool {
    changes
        .into_iter()
        .flatten()
        .any(|ch| ch.array() == path && kind(ch))
}
