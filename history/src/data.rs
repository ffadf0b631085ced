//! `data`: each final `read-array` equals the model: the array rebuilt
//! from the root of the branch's chain, commit by commit, with the
//! server's chunk-level semantics.
//!
//! For a commit E with parent P and base B (no base: B = P), the session's
//! view S is the state after B with E's `changes` applied in order. The
//! state after E is the state after P, with the shape of each array E
//! created or resized set to S's, and each chunk E's log entry lists (the
//! chunks that landed, which a `theirs` solver may make fewer than those
//! written) copied from S. Only metadata changes take S's shape: S may
//! predate a resize by a commit E passed, and E must not undo it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use serde_json::Value;

use crate::context::Context;
use crate::final_reads::Entry;
use crate::model::{Array, Change};
use crate::values::{naturals, number};
use crate::{Line, Summary, Type, Violation};

/// Why an array's contents are not known; a fixed phrase, so that the
/// summary counts reasons rather than commits.
type Why = &'static str;

/// An array in the model.
#[derive(Clone, Debug)]
enum Slot {
    /// Known element by element.
    Known(Rc<Array>),
    /// Not known: some commit that touched it is not known well enough.
    Unknown(Why),
}

/// Every array after one commit. `unknown`: a commit on the way touched
/// arrays nobody can name, so an array not listed is not known either.
#[derive(Clone, Debug, Default)]
struct State {
    arrays: BTreeMap<String, Slot>,
    unknown: Option<Why>,
}

/// An array as a state has it.
enum Lookup<'a> {
    Known(&'a Array),
    Unknown(Why),
    Absent,
}

impl State {
    fn unknown(why: Why) -> State {
        State {
            arrays: BTreeMap::new(),
            unknown: Some(why),
        }
    }

    fn lookup(&self, path: &str) -> Lookup<'_> {
        match (self.arrays.get(path), self.unknown) {
            (Some(Slot::Known(a)), _) => Lookup::Known(a),
            (Some(&Slot::Unknown(why)), _) | (None, Some(why)) => Lookup::Unknown(why),
            (None, None) => Lookup::Absent,
        }
    }

    /// Marks `paths` unknown.
    fn forget<'p>(&mut self, paths: impl IntoIterator<Item = &'p String>, why: Why) {
        for path in paths {
            self.arrays.insert(path.clone(), Slot::Unknown(why));
        }
    }
}

/// A session's arrays: `Ok(None)` absent, `Err` unknown.
type Session = BTreeMap<String, Result<Option<Array>, Why>>;

/// Compares every final `read-array` with the model.
pub(crate) fn check(ctx: &Context<'_>, lines: &[Line], summary: &mut Summary) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut models: BTreeMap<String, Model<'_, '_>> = BTreeMap::new();
    for line in lines
        .iter()
        .filter(|l| l.kind == Type::Ok && l.f == "read-array")
    {
        let read = match ArrayRead::parse(line) {
            Ok(read) => read,
            Err(why) => {
                out.push(Violation::new(
                    "well-formed",
                    format!("read-array: {why}"),
                    line.quoted(),
                ));
                continue;
            }
        };
        let model = models
            .entry(read.repo.clone())
            .or_insert_with(|| Model::new(ctx, &read.repo));
        out.extend(judge(model, &read, summary));
    }
    for model in models.into_values() {
        out.extend(model.nobody);
    }
    out
}

/// A final read of an array.
struct ArrayRead<'h> {
    line: &'h Line,
    repo: String,
    branch: String,
    array: String,
    commit: Option<String>,
    shape: Vec<u64>,
    /// Run-length encoded: `(value, count)`, row-major.
    runs: Vec<(f64, u64)>,
}

impl<'h> ArrayRead<'h> {
    fn parse(line: &'h Line) -> Result<ArrayRead<'h>, String> {
        let v = &line.value;
        let text = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let (Some(repo), Some(array)) = (text("repo"), text("array")) else {
            return Err("no repo or no array".into());
        };
        let shape = naturals(v.get("shape").unwrap_or(&Value::Null), "shape")?;
        let runs = runs(v.get("data").unwrap_or(&Value::Null))?;
        let n: u64 = runs.iter().map(|r| r.1).sum();
        let want = shape.iter().try_fold(1u64, |n, s| n.checked_mul(*s));
        if want != Some(n) {
            return Err(format!(
                "data holds {n} elements but shape {shape:?} has {want:?}"
            ));
        }
        Ok(ArrayRead {
            line,
            repo,
            branch: text("branch").unwrap_or_else(|| "main".into()),
            array,
            commit: text("commit"),
            shape,
            runs,
        })
    }
}

/// `[[value, count], ...]`.
fn runs(v: &Value) -> Result<Vec<(f64, u64)>, String> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("data {v} is not a list"))?;
    items
        .iter()
        .map(|run| match run.as_array().map(Vec::as_slice) {
            Some([value, count]) => {
                let count = count
                    .as_u64()
                    .ok_or_else(|| format!("run {run} has no count"))?;
                Ok((number(value, "a value")?, count))
            }
            _ => Err(format!("run {run} is not [value, count]")),
        })
        .collect()
}

/// One repo's states, commit by commit, built as reads need them.
struct Model<'c, 'h> {
    ctx: &'c Context<'h>,
    repo: String,
    states: HashMap<String, Rc<State>>,
    /// Commits on a chain that wrote chunks but that no operation made.
    nobody: Vec<Violation>,
    reported: BTreeSet<String>,
}

impl<'c, 'h> Model<'c, 'h> {
    fn new(ctx: &'c Context<'h>, repo: &str) -> Self {
        Model {
            ctx,
            repo: repo.to_string(),
            states: HashMap::new(),
            nobody: Vec::new(),
            reported: BTreeSet::new(),
        }
    }

    fn entry(&self, id: &str) -> Option<&'c Entry> {
        self.ctx.entries.get(&(self.repo.clone(), id.to_string()))
    }

    /// The state after commit `id`: walks down to the root or a commit
    /// already modelled, then builds up (no recursion: chains are long).
    fn state(&mut self, id: &str) -> Rc<State> {
        let mut path: Vec<&'c Entry> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut at = Some(id.to_string());
        let mut state = Rc::new(State::default());
        while let Some(current) = at {
            if let Some(s) = self.states.get(&current) {
                state = s.clone();
                break;
            }
            let Some(e) = self
                .entry(&current)
                .filter(|_| seen.insert(current.clone()))
            else {
                // A parent no log lists (or a cycle): what it held is unknown.
                state = Rc::new(State::unknown(
                    "a commit on the chain is on no final read-log",
                ));
                break;
            };
            path.push(e);
            at = e.parent.clone();
        }
        for e in path.into_iter().rev() {
            state = Rc::new(self.step(e, &state));
            self.states.insert(e.id.clone(), state.clone());
        }
        state
    }

    /// The state after `e`, given the state after its parent.
    fn step(&mut self, e: &Entry, parent: &Rc<State>) -> State {
        let mut next = (**parent).clone();
        let Some(op) = self.ctx.by_message(&self.repo, &e.message) else {
            if e.wrote_chunks() {
                self.report_nobody(e);
            }
            // Without chunks it changed nothing (e.g. the repo's root).
            next.forget(
                e.chunks.keys(),
                "a commit on the chain was made by no operation",
            );
            return next;
        };
        let Some(changes) = op.changes.as_deref() else {
            if !e.chunks_listed {
                return State::unknown("a commit on the chain has neither changes nor chunks");
            }
            next.forget(e.chunks.keys(), "a commit on the chain has no changes");
            return next;
        };
        self.apply(e, parent, changes)
    }

    /// The state after `e`, made by an operation with `changes`: its
    /// session's view landed on its parent.
    fn apply(&self, e: &Entry, parent: &Rc<State>, changes: &[Change]) -> State {
        let mut next = (**parent).clone();
        if !e.chunks_listed {
            let written: Vec<String> = changes.iter().map(|c| c.array().to_string()).collect();
            next.forget(&written, "a commit on the chain lists no chunks");
            return next;
        }
        // Arrays whose metadata the session changed take its shape.
        let metadata: BTreeSet<String> = changes
            .iter()
            .filter(|c| c.changes_metadata())
            .map(|c| c.array().to_string())
            .collect();
        let touched: BTreeSet<&String> = e.chunks.keys().chain(&metadata).collect();
        let Some(base) = self.base_state(e, parent) else {
            next.forget(touched, "a commit's base is not before it on its chain");
            return next;
        };
        let session = session(&base, changes);
        for path in touched {
            let view = match session.get(path) {
                Some(slot) => slot.as_ref().map(Option::as_ref).map_err(|why| *why),
                None => base.lookup(path).borrowed(),
            };
            let landed = e.chunks.get(path);
            let slot = land(
                parent.lookup(path),
                view,
                metadata.contains(path),
                landed,
                &e.id,
            );
            if let Some(slot) = slot {
                next.arrays.insert(path.clone(), slot);
            }
        }
        next
    }

    /// The state after `e`'s base, which must be an ancestor of `e`: a base
    /// elsewhere would model the wrong contents.
    fn base_state(&self, e: &Entry, parent: &Rc<State>) -> Option<Rc<State>> {
        let base = e.base.as_deref().or(e.parent.as_deref());
        if base == e.parent.as_deref() {
            return Some(parent.clone());
        }
        let base = base?;
        let mut at = e.parent.as_deref();
        let mut steps = 0;
        while let Some(id) = at {
            if id == base {
                return self.states.get(id).cloned();
            }
            steps += 1;
            if steps > self.ctx.entries.len() {
                return None;
            }
            at = self.entry(id)?.parent.as_deref();
        }
        None
    }

    fn report_nobody(&mut self, e: &Entry) {
        if self.reported.insert(e.id.clone()) {
            let what = format!(
                "{}: {} ({:?}) wrote chunks {:?} but no commit operation made it: a commit nobody made",
                self.repo, e.id, e.message, e.chunks
            );
            self.nobody
                .push(Violation::new("data", what, String::new()));
        }
    }

    /// The message of commit `id`, for reports.
    fn message(&self, id: &str) -> String {
        self.entry(id)
            .map_or_else(String::new, |e| format!(" ({:?})", e.message))
    }
}

impl<'a> Lookup<'a> {
    /// As a session holds it: `Ok(None)` absent, `Err` unknown.
    fn borrowed(self) -> Result<Option<&'a Array>, Why> {
        match self {
            Lookup::Known(a) => Ok(Some(a)),
            Lookup::Unknown(why) => Err(why),
            Lookup::Absent => Ok(None),
        }
    }
}

/// The session's view: the arrays its changes touched, after them.
fn session(base: &State, changes: &[Change]) -> Session {
    let mut out = Session::new();
    for change in changes {
        let path = change.array();
        let slot = out
            .entry(path.to_string())
            .or_insert_with(|| base.lookup(path).borrowed().map(|a| a.cloned()));
        *slot = match std::mem::replace(slot, Ok(None)) {
            Err(why) => Err(why),
            Ok(None) => match change {
                Change::Create {
                    shape,
                    chunks,
                    fill,
                    ..
                } => Array::new(shape.clone(), chunks.clone(), *fill)
                    .map(Some)
                    .map_err(|_| "a commit's changes are malformed"),
                _ => Err("a commit changed an array its session did not have"),
            },
            Ok(Some(mut a)) => a
                .apply(change)
                .map(|()| Some(a))
                .map_err(|_| "a commit's changes are malformed"),
        };
    }
    out
}

/// Array `path` after a commit, from its parent's and the session's view
/// of it; `None`: unchanged.
fn land(
    parent: Lookup<'_>,
    view: Result<Option<&Array>, Why>,
    metadata: bool,
    landed: Option<&BTreeSet<Vec<u64>>>,
    id: &str,
) -> Option<Slot> {
    let wrote = landed.is_some_and(|c| !c.is_empty());
    let view = match view {
        Err(why) => return Some(Slot::Unknown(why)),
        Ok(None) if wrote => {
            return Some(Slot::Unknown(
                "a commit landed chunks of an array its session did not have",
            ))
        }
        Ok(None) => return None,
        Ok(Some(view)) => view,
    };
    let mut next = match parent {
        Lookup::Unknown(why) => return Some(Slot::Unknown(why)),
        Lookup::Known(p) if metadata => p.resized(&view.shape).ok()?,
        Lookup::Known(p) => p.clone(),
        Lookup::Absent if metadata => {
            Array::new(view.shape.clone(), view.chunk_shape.clone(), view.fill).ok()?
        }
        Lookup::Absent => {
            return Some(Slot::Unknown(
                "a commit wrote an array its parent did not have",
            ))
        }
    };
    for coord in landed.into_iter().flatten() {
        next.copy_chunk(view, coord, id);
    }
    Some(Slot::Known(Rc::new(next)))
}

/// Compares one read with the model at its commit.
fn judge(
    model: &mut Model<'_, '_>,
    read: &ArrayRead<'_>,
    summary: &mut Summary,
) -> Option<Violation> {
    let key = (read.repo.clone(), read.branch.clone());
    let tip = model.ctx.chains.get(&key).and_then(|c| c.order.last());
    let Some(commit) = read.commit.as_ref().or(tip) else {
        summary.arrays_unjudged += 1;
        summary.skip("data: a read-array without commit, of a branch without ordered log");
        return None;
    };
    if model.entry(commit).is_none() {
        summary.arrays_unjudged += 1;
        summary.skip("data: a read-array at a commit on no final read-log");
        return None;
    }
    let state = model.state(commit);
    let where_ = format!("{}/{} {} at {commit}", read.repo, read.branch, read.array);
    let wrong = |what: String| {
        Some(Violation::new(
            "data",
            format!("{where_}: {what}"),
            read.line.quoted(),
        ))
    };
    let array = match state.lookup(&read.array) {
        Lookup::Known(a) => a,
        Lookup::Unknown(why) => {
            summary.arrays_unjudged += 1;
            summary.skip(format!("data: {why}"));
            return None;
        }
        Lookup::Absent => {
            summary.arrays_checked += 1;
            return wrong("the model has no such array: no commit on the chain created it".into());
        }
    };
    summary.arrays_checked += 1;
    if array.shape != read.shape {
        return wrong(format!(
            "shape {:?}, but the model's is {:?}",
            read.shape, array.shape
        ));
    }
    let (i, found) = first_difference(array, &read.runs)?;
    let index = array.index_of(i);
    let chunk = array.chunk_of(&index);
    let by = array.writers.get(&chunk).map_or_else(
        || "no commit wrote that chunk: the fill value".to_string(),
        |w| format!("that chunk was last written by {w}{}", model.message(w)),
    );
    wrong(format!(
        "element {index:?} (chunk {chunk:?}) is {found}, but the model says {} ({by})",
        array.data[i]
    ))
}

/// The first element (row-major index and value read) where `runs`
/// differs from `array` (same shape).
fn first_difference(array: &Array, runs: &[(f64, u64)]) -> Option<(usize, f64)> {
    let mut i = 0usize;
    for &(value, count) in runs {
        for _ in 0..count {
            let model = *array.data.get(i)?;
            // Exact: values are integers the harness wrote, or copies.
            if model != value {
                return Some((i, value));
            }
            i += 1;
        }
    }
    None
}
