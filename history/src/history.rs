//! Lines of a history and the operations they pair into.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Violation;

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

impl Type {
    /// The name as a history writes it.
    pub fn name(self) -> &'static str {
        match self {
            Type::Invoke => "invoke",
            Type::Ok => "ok",
            Type::Fail => "fail",
            Type::Info => "info",
        }
    }
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

impl Line {
    /// The line as a report quotes it: number and text.
    pub(crate) fn quoted(&self) -> String {
        format!("  {}: {}", self.number, self.text)
    }
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

    /// A string argument of the invoke.
    pub(crate) fn arg(&self, key: &str) -> Option<&str> {
        self.invoke.value.get(key).and_then(Value::as_str)
    }

    /// A string field of the completion.
    pub(crate) fn result(&self, key: &str) -> Option<&str> {
        self.end?.value.get(key).and_then(Value::as_str)
    }

    /// When it completed `ok`, if it did.
    pub(crate) fn ok_time(&self) -> Option<u64> {
        self.end.filter(|e| e.kind == Type::Ok).map(|e| e.time)
    }

    /// Its lines, as a report quotes them.
    pub(crate) fn lines(&self) -> String {
        let mut out = self.invoke.quoted();
        if let Some(end) = self.end {
            out.push('\n');
            out.push_str(&end.quoted());
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
                    line.quoted(),
                )),
                // A completion with no invoke: final reads are written as
                // bare `ok` lines, and nemesis events as bare `info`.
                None => {}
            },
        }
    }
    (ops, bad)
}
