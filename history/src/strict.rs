//! `strict`: a strict commit lands only on its base, and is refused out of
//! date only by a tip that came after its base.

use serde_json::Value;

use crate::context::{Commit, Context};
use crate::{Summary, Type, Violation};

/// Judges every strict commit that landed or was refused out of date.
pub(crate) fn check(ctx: &Context<'_>, summary: &mut Summary) -> Vec<Violation> {
    let strict = ctx
        .commits
        .iter()
        .filter(|c| c.mode.as_deref() == Some("strict"));
    strict.filter_map(|c| judge(ctx, c, summary)).collect()
}

fn judge(ctx: &Context<'_>, c: &Commit<'_>, summary: &mut Summary) -> Option<Violation> {
    let refused_by = c.op.end.and_then(|e| e.value.get("out-of-date"));
    match c.op.outcome() {
        Type::Ok => landed_on_base(ctx, c, summary),
        Type::Fail if refused_by.is_some() => out_of_date(ctx, c, refused_by?, summary),
        _ => None,
    }
}

/// An acknowledged strict commit's parent is its base.
fn landed_on_base(ctx: &Context<'_>, c: &Commit<'_>, summary: &mut Summary) -> Option<Violation> {
    let Some(base) = c.base.as_deref() else {
        summary.skip("strict: a commit without base");
        return None;
    };
    let log = ctx.fin.logs.get(&(c.repo.clone(), c.branch.clone()))?;
    // Not found: lost, which the commits checker reports.
    let entry = log.iter().find(|e| e.message == c.message)?;
    let Some(parent) = entry.parent.as_deref() else {
        summary.skip("strict: a landed commit without parent in the final read-log");
        return None;
    };
    summary.strict_checked += 1;
    (parent != base).then(|| {
        Violation::new(
            "strict",
            format!(
                "strict commit {:?} made on {base} landed as {} on {parent}",
                c.message, entry.id
            ),
            c.op.lines(),
        )
    })
}

/// A strict commit refused out of date names a tip after its base.
fn out_of_date(
    ctx: &Context<'_>,
    c: &Commit<'_>,
    tip: &Value,
    summary: &mut Summary,
) -> Option<Violation> {
    let Some(tip) = tip.as_str() else {
        let what = format!(
            "commit {:?}: out-of-date {tip} is not a commit id",
            c.message
        );
        return Some(Violation::new("well-formed", what, c.op.lines()));
    };
    let Some(base) = c.base.as_deref() else {
        summary.skip("strict: a commit without base");
        return None;
    };
    let Some(chain) = ctx.chains.get(&(c.repo.clone(), c.branch.clone())) else {
        summary.skip("strict: no ordered final read-log of the branch");
        return None;
    };
    summary.strict_checked += 1;
    let why = match (chain.at(base), chain.at(tip)) {
        (_, None) => format!("the tip {tip} is not on {}/{}", c.repo, c.branch),
        (None, _) => format!("its base {base} is not on {}/{}", c.repo, c.branch),
        (Some(b), Some(t)) if t <= b => format!("the tip {tip} is not after its base {base}"),
        _ => return None,
    };
    let what = format!(
        "strict commit {:?} was refused as out of date, but {why}",
        c.message
    );
    Some(Violation::new("strict", what, c.op.lines()))
}
