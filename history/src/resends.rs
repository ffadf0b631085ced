//! The `idempotency` checker: a `resend` (an acknowledged commit's request
//! delivered again, same client and sequence number, as an at-least-once
//! network would) must be answered with the original commit, never
//! executed a second time.
//!
//! `resend`: invoke `{"repo", "branch", "message", "commit": "C5"}` (the
//! commit the original request was acknowledged as); ok `{"commit": ...}`;
//! fail `{"error", ...}` with `conflicts` or `out-of-date` when the
//! coordinator refused it as a new commit.

use crate::context::Context;
use crate::{Summary, Type, Violation};

/// Runs the `idempotency` checker.
pub(crate) fn check(ctx: &Context<'_>, summary: &mut Summary) -> Vec<Violation> {
    let mut out = Vec::new();
    for op in ctx.ops.iter().filter(|o| o.invoke.f == "resend") {
        let Some(original) = op.arg("commit") else {
            continue;
        };
        let message = op.arg("message").unwrap_or("?");
        let executed_again = match op.outcome() {
            Type::Ok => match op.result("commit") {
                Some(answer) if answer != original => {
                    Some(format!("answered as a new commit {answer}"))
                }
                _ => None,
            },
            Type::Fail => {
                let refused = op.end.map(|e| &e.value).is_some_and(|v| {
                    v.get("conflicts").is_some() || v.get("out-of-date").is_some()
                });
                refused.then(|| "refused as a new commit (conflict or out of date)".to_string())
            }
            _ => None,
        };
        if op.outcome() != Type::Info {
            summary.resends_checked += 1;
        }
        if let Some(what) = executed_again {
            out.push(Violation::new(
                "idempotency",
                format!("a duplicate delivery of {message:?} (acknowledged as {original}) was executed again: {what}"),
                op.lines(),
            ));
        }
    }
    out
}
