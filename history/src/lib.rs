//! floe-history: operation histories in Jepsen's format, one JSON object
//! per line, and the checkers that judge them. Pure: a history is read
//! from text and judged from what it says; nothing here talks to a
//! cluster, so anyone can write a history by hand and check it.
//!
//! # Lines
//!
//! A line has Jepsen's fields: `process` (a client number, or a name such
//! as `"nemesis"`), `type` (`invoke`, `ok`, `fail`, or `info` for an
//! indeterminate outcome), `f`, `value` and `time` (nanoseconds, from one
//! clock for the whole history, so times of different processes compare).
//! A process has at most one operation in flight: its next `ok`/`fail`/
//! `info` completes its last `invoke`. Final reads are bare `ok` lines.
//!
//! # The `f`s floe's checkers read
//!
//! * `commit`: invoke `{"repo", "branch", "message"}` (the message is
//!   unique per operation), with optional fields:
//!   - `"mode"`: `"strict"` or `"rebase"`;
//!   - `"solver"`: `"fail"`, `"ours"` or `"theirs"`;
//!   - `"base"`: the commit the writer's session was checked out at;
//!   - `"chunks"`: the chunks the session wrote, by array,
//!     `{"/a": [[3], [4]]}`;
//!   - `"changes"`: what the session did, in order, each one of
//!     `{"array": "/a", "create": {"shape": [192], "chunks": [8], "fill": 0}}`
//!     (a new array; `chunks` is the chunk shape; `fill` a number),
//!     `{"array": "/a", "write": [[16, 40]], "value": 7}` (every element
//!     of the region, one `[start, end)` per dimension, set to `value`),
//!     `{"array": "/a", "resize": [200]}` (the new shape: elements beyond
//!     it are cut, new ones are the fill value).
//!
//!   ok `{"commit": "C5"}`; fail or info `{"error": "..."}`. A rebase
//!   commit that failed on conflicts may add `"conflicts": [{"array": "/a",
//!   "kind": "chunk-double-update", "chunks": [[3], [4]], "total": 2},
//!   ...]` and `"tip": "C9"` (the branch's tip when it was decided); other
//!   kinds (`"metadata-double-update"`, `"chunks-written-to-changed-array"`,
//!   ...) are read but only `chunk-double-update` is judged exactly. A
//!   strict commit refused because the tip was not its base may add
//!   `"out-of-date": "C9"` (that tip).
//! * `read`: a linearizable read of a branch's tip: invoke `{"repo",
//!   "branch"}`; ok `{"commit": "C7"}`.
//! * `branch`: invoke `{"repo", "branch", "at": "C3"}`; ok `{}`: the
//!   branch is created at that commit.
//! * `tag`: invoke `{"repo", "tag", "at": "C3"}`; ok `{}`.
//! * `claim` (a worker asks for a task): invoke `{"session": "S1",
//!   "worker": "w2"}`; ok `{"task": 17, "epoch": 3}`.
//! * `complete`: invoke `{"session": "S1", "task": 17, "epoch": 3}`; ok
//!   `{}`, fail `{"error": "stale epoch ..."}`, or info.
//!
//! Final reads, bare `ok` lines:
//!
//! * `read-log`: `{"repo", "branch", "log": [{"id": "C5", "message":
//!   "...", "parent": "C4", "base": "C3", "chunks": {"/a": [[0], [1]]}},
//!   ...]}`: every commit on the branch's chain, back to the root (a
//!   branch's log goes on through the commits it shares with main), in
//!   any order: the order is derived from `parent` links, and the root may
//!   have no parent. `parent`, `base` (`null` or absent: the parent) and
//!   `chunks` (the chunks that landed, by array) are optional; without
//!   them fewer checkers can judge.
//! * `read-tags`: `{"repo", "tags": {"v1": "C3"}}`.
//! * `read-array`: `{"repo", "branch", "array": "/a", "commit": "C9",
//!   "shape": [192], "data": [[value, count], ...]}`: the array's contents
//!   at that commit (without `commit`: the tip of the branch's final
//!   read-log), run-length encoded in row-major order; values are compared
//!   as `f64`, exact for integers up to 2^53.
//!
//! Other `f`s (faults, ...) are kept and counted, not judged.
//!
//! # Checkers
//!
//! Each [`Violation`] names its checker: `well-formed`, `commits`, `tags`,
//! `fast-forwards`, `conflicts`, `strict`, `data`, `reads`, `epochs`. See
//! [`check`] for what each judges and [`Summary`] for what was covered.

#![warn(missing_docs)]

mod commits;
mod conflicts;
mod context;
mod data;
mod final_reads;
mod history;
pub mod model;
mod reads;
mod resends;
mod strict;
mod tasks;
mod values;

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

pub use final_reads::{final_state, Chain, Entry, Final};
pub use history::{operations, parse, Line, Op, ParseError, Type};
pub use values::Chunks;

/// One thing the history shows went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker that found it.
    pub checker: &'static str,
    /// What is wrong.
    pub what: String,
    /// The lines involved.
    pub lines: String,
}

impl Violation {
    pub(crate) fn new(checker: &'static str, what: String, lines: String) -> Self {
        Violation {
            checker,
            what,
            lines,
        }
    }
}

impl fmt::Display for Summary {
    /// What was checked, one line per topic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for ((op, outcome), n) in &self.ops {
            writeln!(f, "  {op:<12} {:<8} {n}", outcome.name())?;
        }
        writeln!(
            f,
            "  commits: {} acknowledged and found once, {} lost, {} duplicated; {} indeterminate landed; {} on branches never read",
            self.acknowledged, self.lost, self.duplicated, self.indeterminate_landed, self.unread
        )?;
        writeln!(
            f,
            "  checked: {} fast-forwards, {} conflicts, {} strict commits, {} reads, {} arrays against the model ({} not judged), {} task completions, {} duplicate deliveries",
            self.fast_forwards,
            self.conflicts_checked,
            self.strict_checked,
            self.reads_checked,
            self.arrays_checked,
            self.arrays_unjudged,
            self.completions_checked,
            self.resends_checked
        )?;
        for (why, n) in &self.skipped {
            writeln!(f, "  not judged ({n}): {why}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}\n{}", self.checker, self.what, self.lines)
    }
}

/// Runs every checker; returns the violations (empty: the history is
/// valid) and a summary of what was checked.
///
/// * `well-formed`: completions match their invokes; read-logs form one
///   chain; fields the checkers need are of the right type.
/// * `commits`: every acknowledged commit is on its branch exactly once
///   under its id; no failed commit anywhere; an indeterminate one at most
///   once.
/// * `tags`: a tag created `ok` names the same commit at the end.
/// * `fast-forwards`: a commit that landed on a later commit than its base
///   shares no chunk with the commits it passed.
/// * `conflicts`: a commit not `strict`, with solver `fail`, refused with
///   `conflicts` and a `tip`, names exactly the chunk double updates (all
///   of them when `total` fits the list, else a subset with the exact
///   `total`; none listed for an array means none) between its `chunks`
///   and those the commits after its `base` up to the tip wrote, per the
///   final read-log. As in the commit rule, chunks a passed commit wrote
///   while resizing the array (per its `changes`) count only against a
///   commit creating it. Judged when base, tip and chunks are present and
///   base and tip are on the branch's final read-log.
/// * `strict`: a strict commit landed on its base; one refused out of date
///   names a tip after its base.
/// * `data`: each final `read-array` equals the model rebuilt from the
///   commits' changes along the branch's chain, from the root: for a
///   commit E (parent P, base B, or P without base) the session's view S
///   is the state after B with E's `changes` applied in order; the state
///   after E is the state after P with the shape of each array E created
///   or resized set to S's, and each chunk E's log entry lists copied from
///   S. A difference names the first element, both values and the commit
///   that last wrote its chunk in the model; a log entry writing chunks that no commit operation made is a
///   violation. Unjudged when some commit on the chain touching the array
///   has no operation with `changes`, or the log lists no `chunks`.
/// * `reads`: each `read` saw a commit on the branch, no older than any
///   commit acknowledged before it started, made before it ended.
/// * `epochs`: no `complete` was accepted after a later epoch of the task
///   was claimed.
pub fn check(lines: &[Line]) -> (Vec<Violation>, Summary) {
    let (ctx, mut violations) = context::Context::new(lines);
    let mut summary = Summary::default();
    for op in &ctx.ops {
        *summary
            .ops
            .entry((op.invoke.f.clone(), op.outcome()))
            .or_default() += 1;
    }
    violations.extend(commits::check(&ctx, &mut summary));
    violations.extend(conflicts::check(&ctx, &mut summary));
    violations.extend(strict::check(&ctx, &mut summary));
    violations.extend(data::check(&ctx, lines, &mut summary));
    violations.extend(reads::check(&ctx, &mut summary));
    violations.extend(tasks::check(&ctx, &mut summary));
    violations.extend(resends::check(&ctx, &mut summary));
    (violations, summary)
}

/// What a check covered.
#[derive(Debug, Default)]
pub struct Summary {
    /// Operations by `f` and outcome.
    pub ops: BTreeMap<(String, Type), u64>,
    /// Commits acknowledged and found on their branch exactly once.
    pub acknowledged: u64,
    /// Indeterminate commits that landed (at most once).
    pub indeterminate_landed: u64,
    /// Commits whose branch had no final read (not judged).
    pub unread: u64,
    /// Fast-forwarded commits checked against the commits they passed.
    pub fast_forwards: u64,
    /// Acknowledged commits not found on their branch.
    pub lost: u64,
    /// Acknowledged or indeterminate commits found on their branch more
    /// than once.
    pub duplicated: u64,
    /// Refused commits whose chunk double updates were checked (one per
    /// commit, whatever the number of arrays).
    pub conflicts_checked: u64,
    /// Strict commits checked (landed on their base, or refused by a later
    /// tip).
    pub strict_checked: u64,
    /// `read`s checked.
    pub reads_checked: u64,
    /// Final `read-array`s compared with the model.
    pub arrays_checked: u64,
    /// Final `read-array`s not compared: some commit on their chain is not
    /// known well enough (see `skipped`).
    pub arrays_unjudged: u64,
    /// Duplicate deliveries checked (answered with the original commit).
    pub resends_checked: u64,
    /// `ok` completions checked against the claims before them.
    pub completions_checked: u64,
    /// Why things were not judged -> how many times.
    pub skipped: BTreeMap<String, u64>,
}

impl Summary {
    /// The summary as JSON (`summary.json` of a chaos run): operations by
    /// `f` and outcome, and every count.
    pub fn to_json(&self) -> Value {
        let ops: serde_json::Map<String, Value> = self
            .ops
            .iter()
            .map(|((f, t), n)| (format!("{f} {}", t.name()), Value::from(*n)))
            .collect();
        serde_json::json!({
            "operations": ops,
            "commits_acknowledged_found_once": self.acknowledged,
            "commits_lost": self.lost,
            "commits_duplicated": self.duplicated,
            "indeterminate_landed": self.indeterminate_landed,
            "commits_on_unread_branches": self.unread,
            "fast_forwards_checked": self.fast_forwards,
            "conflicts_checked": self.conflicts_checked,
            "strict_checked": self.strict_checked,
            "reads_checked": self.reads_checked,
            "arrays_checked": self.arrays_checked,
            "arrays_unjudged": self.arrays_unjudged,
            "completions_checked": self.completions_checked,
            "resends_checked": self.resends_checked,
            "not_judged": self.skipped,
        })
    }

    /// Counts one thing not judged, and why.
    pub(crate) fn skip(&mut self, why: impl Into<String>) {
        *self.skipped.entry(why.into()).or_default() += 1;
    }
}
