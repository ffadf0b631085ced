//! The first checkers: commits landed as answered, tags stayed, and
//! fast-forwards passed no commit sharing a chunk.

use std::collections::BTreeMap;

use crate::context::{Commit, Context};
use crate::final_reads::{Entry, Final};
use crate::{Op, Summary, Type, Violation};

/// Runs the `commits`, `tags` and `fast-forwards` checkers.
pub(crate) fn check(ctx: &Context<'_>, summary: &mut Summary) -> Vec<Violation> {
    let mut out = Vec::new();
    for c in &ctx.commits {
        out.extend(landed_as_answered(c, &ctx.fin, summary));
    }
    for op in ctx.ops.iter().filter(|o| o.invoke.f == "tag") {
        out.extend(tag_stayed(op, &ctx.fin));
    }
    for ((repo, branch), log) in &ctx.fin.logs {
        out.extend(fast_forwards(ctx, repo, branch, log, summary));
    }
    out
}

/// An acknowledged commit is on its branch exactly once, under its
/// acknowledged id; a failed one is nowhere; an indeterminate one at most
/// once.
fn landed_as_answered(c: &Commit<'_>, fin: &Final, summary: &mut Summary) -> Option<Violation> {
    let (repo, branch, message) = (&c.repo, &c.branch, &c.message);
    let Some(log) = fin.logs.get(&(repo.clone(), branch.clone())) else {
        summary.unread += 1;
        return None;
    };
    let found: Vec<&String> = log
        .iter()
        .filter(|e| &e.message == message)
        .map(|e| &e.id)
        .collect();
    if found.len() > 1 && matches!(c.op.outcome(), Type::Ok | Type::Info) {
        summary.duplicated += 1;
    }
    let wrong = |what: String| Some(Violation::new("commits", what, c.op.lines()));
    match c.op.outcome() {
        Type::Ok => {
            let acked = c.op.result("commit").unwrap_or("?");
            match found.as_slice() {
                [id] if *id == acked => {
                    summary.acknowledged += 1;
                    None
                }
                [] => {
                    summary.lost += 1;
                    wrong(format!(
                        "acknowledged commit {acked} ({message:?}) is not on {repo}/{branch}: lost"
                    ))
                }
                [id] => wrong(format!(
                    "acknowledged as {acked} but {message:?} is on {repo}/{branch} as {id}"
                )),
                ids => wrong(format!(
                    "acknowledged commit {message:?} is on {repo}/{branch} {} times: {ids:?}",
                    ids.len()
                )),
            }
        }
        Type::Fail if !found.is_empty() => wrong(format!(
            "commit {message:?} failed but is on {repo}/{branch} as {found:?}"
        )),
        Type::Info if found.len() > 1 => wrong(format!(
            "indeterminate commit {message:?} landed {} times on {repo}/{branch}: {found:?}",
            found.len()
        )),
        Type::Info => {
            summary.indeterminate_landed += found.len() as u64;
            None
        }
        _ => None,
    }
}

/// A tag created `ok` still names the commit it was created at.
fn tag_stayed(op: &Op<'_>, fin: &Final) -> Option<Violation> {
    if op.outcome() != Type::Ok {
        return None;
    }
    let (repo, tag, at) = (op.arg("repo")?, op.arg("tag")?, op.arg("at")?);
    let now = fin.tags.get(&(repo.to_string(), tag.to_string()))?;
    (now != at).then(|| {
        Violation::new(
            "tags",
            format!("tag {repo}/{tag} was created at {at} but names {now} at the end"),
            op.lines(),
        )
    })
}

/// Each commit that landed on a later commit than its base shares no chunk
/// with the commits between its base and its parent (the commit rule's
/// fast-forward), and its base is on the branch before it. A rebase with
/// the solver `ours` is exempt from the first part: its chunks win over
/// the commits it passes, by design.
fn fast_forwards(
    ctx: &Context<'_>,
    repo: &str,
    branch: &str,
    log: &[Entry],
    summary: &mut Summary,
) -> Vec<Violation> {
    let by_id: BTreeMap<&str, &Entry> = log.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut out = Vec::new();
    for e in log {
        let (Some(base), Some(parent)) = (e.base.as_deref(), e.parent.as_deref()) else {
            continue;
        };
        if base == parent {
            continue;
        }
        let ours = ctx
            .by_message
            .get(&(repo.to_string(), e.message.clone()))
            .and_then(|i| ctx.commits[*i].solver.as_deref())
            == Some("ours");
        summary.fast_forwards += 1;
        let mut at = Some(parent);
        while at != Some(base) {
            let Some(passed) = at.and_then(|id| by_id.get(id)) else {
                out.push(Violation::new(
                    "fast-forwards",
                    format!("{repo}/{branch}: {} was made on {base}, which is not before its parent {parent}", e.id),
                    String::new(),
                ));
                break;
            };
            let shared: Vec<String> = e
                .chunks
                .iter()
                .filter_map(|(path, mine)| {
                    let theirs = passed.chunks.get(path)?;
                    let both: Vec<&Vec<u64>> = mine.intersection(theirs).collect();
                    (!both.is_empty()).then(|| format!("{path} {both:?}"))
                })
                .collect();
            if !shared.is_empty() && !ours {
                out.push(Violation::new(
                    "fast-forwards",
                    format!(
                        "{repo}/{branch}: {} ({:?}) was fast-forwarded from {base} over {} ({:?}) although both wrote {}",
                        e.id, e.message, passed.id, passed.message, shared.join("; ")
                    ),
                    String::new(),
                ));
            }
            at = passed.parent.as_deref();
        }
    }
    out
}
