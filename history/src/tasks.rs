//! `epochs`: a worker's completion of a task is accepted only at the
//! task's current epoch: once a later epoch was claimed, the earlier
//! claimant's completion must be refused as stale.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::context::Context;
use crate::{Op, Summary, Type, Violation};

/// A claim acknowledged: when, at which epoch, and its lines.
struct Claim<'h> {
    time: u64,
    epoch: u64,
    op: Op<'h>,
}

/// `(session, task)` -> acknowledged claims. Both are keyed by their JSON
/// text, so a task may be a number or a string.
type Claims<'h> = BTreeMap<(String, String), Vec<Claim<'h>>>;

/// Judges every `ok` completion.
pub(crate) fn check(ctx: &Context<'_>, summary: &mut Summary) -> Vec<Violation> {
    let mut out = Vec::new();
    let claims = claims(ctx, &mut out);
    let completes = ctx
        .ops
        .iter()
        .filter(|o| o.invoke.f == "complete" && o.outcome() == Type::Ok);
    for op in completes {
        out.extend(judge(&claims, op, summary));
    }
    out
}

fn claims<'h>(ctx: &Context<'h>, bad: &mut Vec<Violation>) -> Claims<'h> {
    let mut out: Claims<'h> = BTreeMap::new();
    for op in ctx.ops.iter().filter(|o| o.invoke.f == "claim") {
        let (Some(time), Some(end)) = (op.ok_time(), op.end) else {
            continue;
        };
        let session = op.invoke.value.get("session");
        let (task, epoch) = (
            end.value.get("task"),
            end.value.get("epoch").and_then(Value::as_u64),
        );
        let (Some(session), Some(task), Some(epoch)) = (session, task, epoch) else {
            let what =
                "a claim without session, task or epoch (a non-negative integer)".to_string();
            bad.push(Violation::new("well-formed", what, op.lines()));
            continue;
        };
        let claim = Claim {
            time,
            epoch,
            op: op.clone(),
        };
        out.entry((session.to_string(), task.to_string()))
            .or_default()
            .push(claim);
    }
    out
}

fn judge(claims: &Claims<'_>, op: &Op<'_>, summary: &mut Summary) -> Option<Violation> {
    let v = &op.invoke.value;
    let (session, task) = (v.get("session"), v.get("task"));
    let (Some(session), Some(task), Some(epoch)) =
        (session, task, v.get("epoch").and_then(Value::as_u64))
    else {
        let what =
            "a completion without session, task or epoch (a non-negative integer)".to_string();
        return Some(Violation::new("well-formed", what, op.lines()));
    };
    summary.completions_checked += 1;
    let key = (session.to_string(), task.to_string());
    let later = claims
        .get(&key)
        .into_iter()
        .flatten()
        .filter(|c| c.epoch > epoch && c.time < op.invoke.time)
        .max_by_key(|c| c.epoch)?;
    let what = format!(
        "session {session} task {task}: the completion at epoch {epoch} was accepted, but epoch {} had been claimed before it began",
        later.epoch
    );
    Some(Violation::new(
        "epochs",
        what,
        format!("{}\n{}", op.lines(), later.op.lines()),
    ))
}
