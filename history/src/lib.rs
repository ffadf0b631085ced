//! floe-history: operation histories in Jepsen's format, one JSON object
//! per line, and the checkers that judge them. Pure: a history is read
//! from text and judged from what it says; nothing here talks to a
//! cluster, so anyone can write a history by hand and check it.
//!
//! A line has Jepsen's fields: `process` (a client number, or a name such
//! as `"nemesis"`), `type` (`invoke`, `ok`, `fail`, or `info` for an
//! indeterminate outcome), `f`, `value` and `time` (nanoseconds). A
//! process has at most one operation in flight: its next `ok`/`fail`/
//! `info` completes its last `invoke`. The `f`s floe's checkers read:
//!
//! * `commit`: invoke `{"repo", "branch", "message"}` (the message is
//!   unique per operation); ok `{"commit": "C5"}`; fail or info
//!   `{"error": "..."}`.
//! * `tag`: invoke `{"repo", "tag", "at": "C3"}`; ok `{}`.
//! * `read-log` (the final reads): ok `{"repo", "branch", "log":
//!   [{"id": "C5", "message": "...", "parent": "C4", "base": "C3",
//!   "chunks": {"/a": [[0], [1]]}}, ...]}`, every commit on the branch
//!   (`parent`, `base` and `chunks` optional; with them, fast-forwards are
//!   checked).
//! * `read-tags`: ok `{"repo", "tags": {"v1": "C3"}}`.
//!
//! Other `f`s (faults, reads of data) are kept and counted, not judged.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

/// How an operation ended, or that it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Type {
    /// Started.
    Invoke,
    /// Succeeded.
    Ok,
    /// Failed; it had no effect.
    Fail,
    /// Unknown: it may or may not have taken effect.
    Info,
}

/// One line of a history.
#[derive(Clone, Debug, Deserialize)]
pub struct Line {
    /// Who: a client number, or a name (`"nemesis"`).
    pub process: Value,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: Type,
    /// The operation.
    pub f: String,
    /// Its arguments (invoke) or result.
    #[serde(default)]
    pub value: Value,
    /// When, in nanoseconds.
    #[serde(default)]
    pub time: u64,
    /// The line number in the file (1-based), for reports.
    #[serde(skip)]
    pub number: usize,
    /// The line as written, for reports.
    #[serde(skip)]
    pub text: String,
}

/// A history that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

/// Reads a history: one JSON object per line; blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Line>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let mut line: Line = serde_json::from_str(raw).map_err(|e| ParseError {
            line: i + 1,
            why: e.to_string(),
        })?;
        line.number = i + 1;
        line.text = raw.to_string();
        out.push(line);
    }
    Ok(out)
}

/// An operation: its invoke and, if it came, its completion.
#[derive(Clone, Debug)]
pub struct Op<'h> {
    /// The invoke line.
    pub invoke: &'h Line,
    /// The completion line, if any (none: the history ended first, which
    /// counts as indeterminate).
    pub end: Option<&'h Line>,
}

impl Op<'_> {
    /// How it ended (`Info` when it never did).
    pub fn outcome(&self) -> Type {
        self.end.map_or(Type::Info, |e| e.kind)
    }

    fn arg(&self, key: &str) -> Option<&str> {
        self.invoke.value.get(key).and_then(Value::as_str)
    }

    fn result(&self, key: &str) -> Option<&str> {
        self.end?.value.get(key).and_then(Value::as_str)
    }

    fn lines(&self) -> String {
        let mut out = format!("  {}: {}", self.invoke.number, self.invoke.text);
        if let Some(end) = self.end {
            out.push_str(&format!("\n  {}: {}", end.number, end.text));
        }
        out
    }
}

/// Pairs each invoke with the next completion of the same process.
/// Completions without an invoke are reported as violations.
pub fn operations(lines: &[Line]) -> (Vec<Op<'_>>, Vec<Violation>) {
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut ops: Vec<Op<'_>> = Vec::new();
    let mut bad = Vec::new();
    for line in lines {
        let who = line.process.to_string();
        match line.kind {
            Type::Invoke => {
                open.insert(who, ops.len());
                ops.push(Op {
                    invoke: line,
                    end: None,
                });
            }
            _ => match open.remove(&who) {
                Some(i) if ops[i].invoke.f == line.f => ops[i].end = Some(line),
                Some(i) => bad.push(Violation::new(
                    "well-formed",
                    format!(
                        "process {who} completed {:?} while {:?} was in flight",
                        line.f, ops[i].invoke.f
                    ),
                    format!("  {}: {}", line.number, line.text),
                )),
                // A completion with no invoke: final reads are written as
                // bare `ok` lines, and nemesis events as bare `info`.
                None => {}
            },
        }
    }
    (ops, bad)
}

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
    fn new(checker: &'static str, what: String, lines: String) -> Self {
        Violation {
            checker,
            what,
            lines,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}\n{}", self.checker, self.what, self.lines)
    }
}

/// A commit as a final read lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: String,
    /// Its message.
    pub message: String,
    /// The commit it landed on.
    pub parent: Option<String>,
    /// The commit its changes were made against.
    pub base: Option<String>,
    /// The chunks it wrote, by array.
    pub chunks: BTreeMap<String, std::collections::BTreeSet<Vec<u64>>>,
}

/// What the final reads say: each branch's commits and each repo's tags.
#[derive(Debug, Default)]
pub struct Final {
    /// `(repo, branch)` -> commits on the branch, in any order.
    pub logs: BTreeMap<(String, String), Vec<Entry>>,
    /// `(repo, tag)` -> the commit it names.
    pub tags: BTreeMap<(String, String), String>,
}

/// Collects the final reads (`read-log`, `read-tags` completed `ok`).
pub fn final_state(lines: &[Line]) -> Final {
    let mut out = Final::default();
    for line in lines.iter().filter(|l| l.kind == Type::Ok) {
        let v = &line.value;
        let repo = v.get("repo").and_then(Value::as_str).unwrap_or_default();
        match line.f.as_str() {
            "read-log" => {
                let branch = v.get("branch").and_then(Value::as_str).unwrap_or("main");
                let log = v.get("log").and_then(Value::as_array).into_iter().flatten();
                let entries = log.filter_map(entry).collect();
                out.logs
                    .insert((repo.to_string(), branch.to_string()), entries);
            }
            "read-tags" => {
                let tags = v
                    .get("tags")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten();
                for (tag, at) in tags {
                    if let Some(at) = at.as_str() {
                        out.tags
                            .insert((repo.to_string(), tag.clone()), at.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A final read's commit; `None` without an id and a message.
fn entry(e: &Value) -> Option<Entry> {
    let text = |key: &str| e.get(key).and_then(Value::as_str).map(str::to_string);
    let chunks = e
        .get("chunks")
        .and_then(Value::as_object)
        .into_iter()
        .flatten();
    let chunks = chunks
        .map(|(path, coords)| {
            let coords = coords.as_array().into_iter().flatten();
            let coords = coords
                .filter_map(|c| c.as_array()?.iter().map(Value::as_u64).collect())
                .collect();
            (path.clone(), coords)
        })
        .collect();
    Some(Entry {
        id: text("id")?,
        message: text("message")?,
        parent: text("parent"),
        base: text("base"),
        chunks,
    })
}

/// Runs every checker; returns the violations (empty: the history is
/// valid) and a summary of what was checked.
pub fn check(lines: &[Line]) -> (Vec<Violation>, Summary) {
    let (ops, mut violations) = operations(lines);
    let fin = final_state(lines);
    let mut summary = Summary::default();
    for op in &ops {
        *summary
            .ops
            .entry((op.invoke.f.clone(), op.outcome()))
            .or_default() += 1;
    }
    for op in ops.iter().filter(|o| o.invoke.f == "commit") {
        if let Some(v) = commit_landed_as_answered(op, &fin, &mut summary) {
            violations.push(v);
        }
    }
    for op in ops.iter().filter(|o| o.invoke.f == "tag") {
        if let Some(v) = tag_stayed(op, &fin) {
            violations.push(v);
        }
    }
    for ((repo, branch), log) in &fin.logs {
        violations.extend(fast_forwards(repo, branch, log, &mut summary));
    }
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
}

/// Each commit that landed on a later commit than its base shares no chunk
/// with the commits between its base and its parent (the commit rule's
/// fast-forward), and its base is on the branch before it.
fn fast_forwards(repo: &str, branch: &str, log: &[Entry], summary: &mut Summary) -> Vec<Violation> {
    let by_id: BTreeMap<&str, &Entry> = log.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut out = Vec::new();
    for e in log {
        let (Some(base), Some(parent)) = (e.base.as_deref(), e.parent.as_deref()) else {
            continue;
        };
        if base == parent {
            continue;
        }
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
            if !shared.is_empty() {
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

/// An acknowledged commit is on its branch exactly once, under its
/// acknowledged id; a failed one is nowhere; an indeterminate one at most
/// once.
fn commit_landed_as_answered(op: &Op<'_>, fin: &Final, summary: &mut Summary) -> Option<Violation> {
    let (repo, branch, message) = (op.arg("repo")?, op.arg("branch")?, op.arg("message")?);
    let Some(log) = fin.logs.get(&(repo.to_string(), branch.to_string())) else {
        summary.unread += 1;
        return None;
    };
    let found: Vec<&String> = log
        .iter()
        .filter(|e| e.message == message)
        .map(|e| &e.id)
        .collect();
    let wrong = |what: String| Some(Violation::new("commits", what, op.lines()));
    match op.outcome() {
        Type::Ok => {
            let acked = op.result("commit").unwrap_or("?");
            match found.as_slice() {
                [id] if *id == acked => {
                    summary.acknowledged += 1;
                    None
                }
                [] => wrong(format!(
                    "acknowledged commit {acked} ({message:?}) is not on {repo}/{branch}: lost"
                )),
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
