//! What every checker reads: the operations, the final reads, each
//! branch's chain, and each commit operation with its arguments parsed
//! once (malformed ones reported once, as `well-formed` violations).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::final_reads::{final_state, Chain, Entry, Final};
use crate::model::Change;
use crate::values::{chunk_map, optional, optional_str, Chunks};
use crate::{operations, Line, Op, Violation};

/// A `(repo, branch)` or `(repo, id)` key.
pub(crate) type Key = (String, String);

/// A `commit` operation and its arguments.
#[derive(Debug)]
pub(crate) struct Commit<'h> {
    /// The operation.
    pub op: Op<'h>,
    /// Its repo.
    pub repo: String,
    /// Its branch.
    pub branch: String,
    /// Its message (unique per operation).
    pub message: String,
    /// `strict` or `rebase`, if given.
    pub mode: Option<String>,
    /// `fail`, `ours` or `theirs`, if given.
    pub solver: Option<String>,
    /// The commit the session was checked out at, if given.
    pub base: Option<String>,
    /// The chunks the session wrote, if given.
    pub chunks: Option<Chunks>,
    /// The session's changes in order, if given (and well-formed).
    pub changes: Option<Vec<Change>>,
}

impl Commit<'_> {
    /// The id it was acknowledged under, if it was.
    pub fn acked_id(&self) -> Option<&str> {
        self.op.ok_time()?;
        self.op.result("commit")
    }
}

/// Everything the checkers share.
pub(crate) struct Context<'h> {
    /// Every operation.
    pub ops: Vec<Op<'h>>,
    /// The final reads.
    pub fin: Final,
    /// `(repo, branch)` -> its chain, for branches whose read-log could be
    /// ordered.
    pub chains: BTreeMap<Key, Chain>,
    /// `(repo, id)` -> the commit as any final read-log of the repo lists
    /// it (a branch's log repeats the commits it shares with main).
    pub entries: BTreeMap<Key, Entry>,
    /// Every commit operation with repo, branch and message.
    pub commits: Vec<Commit<'h>>,
    /// `(repo, message)` -> index in `commits`.
    pub by_message: BTreeMap<Key, usize>,
    /// `(repo, acknowledged id)` -> index in `commits`.
    pub by_id: BTreeMap<Key, usize>,
}

impl<'h> Context<'h> {
    /// Builds the context; the violations are malformed lines.
    pub fn new(lines: &'h [Line]) -> (Context<'h>, Vec<Violation>) {
        let (ops, mut bad) = operations(lines);
        let fin = final_state(lines);
        let chains = chains(&fin, &mut bad);
        let mut entries = BTreeMap::new();
        for ((repo, _), log) in &fin.logs {
            for e in log {
                entries.insert((repo.clone(), e.id.clone()), e.clone());
            }
        }
        let commits: Vec<Commit<'h>> = ops
            .iter()
            .filter(|o| o.invoke.f == "commit")
            .filter_map(|o| commit(o, &mut bad))
            .collect();
        let mut by_message = BTreeMap::new();
        let mut by_id = BTreeMap::new();
        for (i, c) in commits.iter().enumerate() {
            by_message.insert((c.repo.clone(), c.message.clone()), i);
            if let Some(id) = c.acked_id() {
                by_id.insert((c.repo.clone(), id.to_string()), i);
            }
        }
        let context = Context {
            ops,
            fin,
            chains,
            entries,
            commits,
            by_message,
            by_id,
        };
        (context, bad)
    }

    /// The commit operation that made commit `id` of `repo`: the one
    /// acknowledged as `id`, else the one whose message the log gives it.
    pub fn maker(&self, repo: &str, id: &str) -> Option<&Commit<'h>> {
        let key = (repo.to_string(), id.to_string());
        let i = self.by_id.get(&key).or_else(|| {
            let message = &self.entries.get(&key)?.message;
            self.by_message.get(&(repo.to_string(), message.clone()))
        })?;
        self.commits.get(*i)
    }

    /// The commit operation with `message` in `repo`.
    pub fn by_message(&self, repo: &str, message: &str) -> Option<&Commit<'h>> {
        let i = self
            .by_message
            .get(&(repo.to_string(), message.to_string()))?;
        self.commits.get(*i)
    }
}

/// Orders every read-log; a log that is not one chain is malformed.
fn chains(fin: &Final, bad: &mut Vec<Violation>) -> BTreeMap<Key, Chain> {
    let mut out = BTreeMap::new();
    for ((repo, branch), log) in &fin.logs {
        match Chain::of(log) {
            Ok(Some(chain)) => {
                out.insert((repo.clone(), branch.clone()), chain);
            }
            Ok(None) => {}
            Err(why) => bad.push(Violation::new(
                "well-formed",
                format!("the final read-log of {repo}/{branch} is not one chain: {why}"),
                String::new(),
            )),
        }
    }
    out
}

/// A commit operation's arguments; `None` (not judged, as before) without
/// repo, branch and message. Malformed optional fields are reported and
/// left out, so the checkers needing them skip the commit.
fn commit<'h>(op: &Op<'h>, bad: &mut Vec<Violation>) -> Option<Commit<'h>> {
    let (repo, branch, message) = (op.arg("repo")?, op.arg("branch")?, op.arg("message")?);
    let v = &op.invoke.value;
    let mut report = |why: String| {
        bad.push(Violation::new(
            "well-formed",
            format!("commit {message:?}: {why}"),
            op.lines(),
        ));
    };
    let mode = known(optional_str(v, "mode"), &mut report);
    let solver = known(optional_str(v, "solver"), &mut report);
    let base = known(optional_str(v, "base"), &mut report);
    let chunks = known(optional(v, "chunks", chunk_map), &mut report);
    let changes = known(optional(v, "changes", changes), &mut report);
    Some(Commit {
        op: op.clone(),
        repo: repo.to_string(),
        branch: branch.to_string(),
        message: message.to_string(),
        mode,
        solver,
        base,
        chunks,
        changes,
    })
}

/// An optional field's value; a malformed one is reported and dropped.
fn known<T>(read: Result<Option<T>, String>, report: &mut impl FnMut(String)) -> Option<T> {
    read.unwrap_or_else(|why| {
        report(why);
        None
    })
}

/// A commit's `changes`, in order.
fn changes(v: &Value) -> Result<Vec<Change>, String> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("changes {v} is not a list"))?;
    items.iter().map(Change::parse).collect()
}
