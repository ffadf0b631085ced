//! Oracle 1: exact conflicts (non-cooperative commits and conflict
//! answers) and its cooperative half (plans, epochs).

use std::collections::{BTreeMap, BTreeSet};

use floe_protocol::footprint::MAX_LISTED_CHUNKS;
use floe_protocol::{
    ArrayMeta, ArrayPath, CommitId, CommitMode, CommitRecord, Conflict, ConflictKind, FloeError,
    Footprint, ObjectId, Outcome, Solver, TaskId,
};

use super::{by_message, history, Check, Failure, COOPERATIVE, EXACT_CONFLICTS, ONE_HISTORY};
use crate::model::{self, coord_sets, shared, show, since};
use crate::obs::{Attempt, Contribution, CoopRun, Observations, Replica};

type Coords = BTreeMap<floe_protocol::ArrayPath, BTreeSet<Vec<u64>>>;

fn fail(d: String) -> Check {
    Err(Failure::new(EXACT_CONFLICTS, d))
}

/// The commits after `base` up to `tip`, or a [`ONE_HISTORY`] failure when
/// `base` is not an ancestor of `tip` on the final chain (the answer came
/// from a state that was lost).
fn between<'r>(
    r: &'r Replica,
    what: &str,
    base: CommitId,
    tip: CommitId,
) -> Result<Vec<&'r CommitRecord>, Failure> {
    since(&r.records, base, tip).ok_or_else(|| {
        Failure::new(
            ONE_HISTORY,
            format!("{what} names base {base} and tip {tip}, but {base} is not an ancestor of {tip} on the final chain"),
        )
    })
}

/// Truly shared chunks of `ours` with each of `commits`, unioned.
fn truth(ours: &Footprint, commits: &[&CommitRecord]) -> Coords {
    let mut out = Coords::new();
    for rec in commits {
        for (p, s) in shared(ours, &rec.footprint) {
            out.entry(p).or_default().extend(s);
        }
    }
    out
}

/// The commits, each with its message and the chunks it wrote.
fn list(commits: &[&CommitRecord]) -> String {
    let one = |c: &&CommitRecord| {
        let resized: Vec<String> = c
            .footprint
            .arrays
            .iter()
            .filter_map(|(p, a)| match &a.meta {
                Some(floe_protocol::MetaChange::Update(m)) => {
                    Some(format!(", resized {p} to {:?}", m.shape))
                }
                _ => None,
            })
            .collect();
        format!(
            "{} ({:?} wrote {}{})",
            c.id,
            c.message,
            show(&coord_sets(&c.footprint)),
            resized.concat()
        )
    };
    let mut shown: Vec<String> = commits.iter().take(12).map(one).collect();
    if commits.len() > 12 {
        shown.push(format!("and {} more", commits.len() - 12));
    }
    if shown.is_empty() {
        return "no commit".into();
    }
    shown.join(", ")
}

/// Oracle 1 on the final chain and on every answer the clients received.
pub fn exact_conflicts(obs: &Observations, r: &Replica) -> Check {
    let ids = history(r)?;
    let attempts = obs.model_attempts();
    for (message, at) in by_message(r, &ids) {
        let (Some(attempt), Some(&id)) = (attempts.get(&message), at.first()) else {
            continue;
        };
        landed(obs, r, &r.records[&id], attempt)?;
    }
    for a in &obs.attempts {
        footprint_is_the_writes(a, r)?;
        let what = format!(
            "the reply to {:?} (client c{})",
            a.message,
            a.client.wrapping_add(1)
        );
        answer(
            r,
            &what,
            a.base_sent,
            &a.footprint,
            a.mode,
            a.outcome.as_ref(),
        )?;
    }
    for run in &obs.coops {
        let (Some(base), Some(attempt)) = (run.base, run.as_attempt()) else {
            continue;
        };
        let what = format!("the reply to session commit {:?}", run.message);
        answer(
            r,
            &what,
            base,
            &attempt.footprint,
            run.mode,
            run.outcome.as_ref(),
        )?;
    }
    for ff in &obs.ff_answers {
        let what = format!(
            "CanFastForward from {} (client c{})",
            ff.base,
            ff.client.wrapping_add(1)
        );
        let commits = between(r, &what, ff.base, ff.tip)?;
        named_exactly(&what, &ff.footprint, &commits, &ff.conflicts)?;
    }
    Ok(())
}

/// A landed commit: on its base if Strict; sharing no chunk with what
/// landed since the base its data was computed on, unless a solver
/// settled it (and then exactly as the solver says).
fn landed(obs: &Observations, r: &Replica, rec: &CommitRecord, a: &model::Attempt) -> Check {
    let (Some(parent), Some(base)) = (rec.parent, rec.base) else {
        return Ok(());
    };
    let sent = obs
        .attempts
        .iter()
        .filter(|x| x.message == rec.message)
        .map(|x| x.base_sent);
    let coop = obs.coops.iter().filter(|c| c.message == rec.message);
    let bases: BTreeSet<CommitId> = sent.chain(coop.filter_map(|c| c.base)).collect();
    let what = format!("{} ({:?})", rec.id, rec.message);
    if !bases.contains(&base) {
        return fail(format!(
            "{what} landed with base {base}, which the client never sent"
        ));
    }
    let over = between(r, &what, a.base, parent)?;
    let rebased = between(r, &what, base, parent)?;
    if rec.rebased_over as usize != rebased.len() {
        return fail(format!(
            "{what} says rebased over {} commits, but {} landed between its base {base} and parent {parent}",
            rec.rebased_over,
            rebased.len()
        ));
    }
    let shared_chunks = truth(&a.footprint, &over);
    let written = coord_sets(&rec.footprint);
    // No solver settles a metadata conflict: a rebase never passes over a
    // resize of an array it wrote (its chunks are on the old grid), nor two
    // resizes of one array over each other.
    let meta = model::meta_conflicts(&a.footprint, &over);
    if !meta.is_empty() {
        return fail(format!(
            "missed conflict: {what} (data computed on {}) landed on {parent} although it collides on metadata ({}) with {}",
            a.base,
            model::show_meta(&meta),
            list(&over)
        ));
    }
    match a.mode {
        CommitMode::Strict if base != parent => fail(format!(
            "{what} was sent Strict on {base} but landed on {parent}"
        )),
        CommitMode::Strict | CommitMode::Rebase { solver: Solver::Fail }
            if !shared_chunks.is_empty() =>
        {
            fail(format!(
                "missed conflict: {what} (data computed on {}) landed on {parent} although it shares chunks {} with {}",
                a.base,
                show(&shared_chunks),
                list(&over)
            ))
        }
        CommitMode::Rebase { solver: Solver::Ours } if written != coord_sets(&a.footprint) => {
            fail(format!(
                "{what} landed with solver ours writing {}, not the {} sent",
                show(&written),
                show(&coord_sets(&a.footprint))
            ))
        }
        CommitMode::Rebase { solver: Solver::Theirs }
            if resizes_shared(&a.footprint, &truth(&a.footprint, &rebased)) =>
        {
            fail(format!(
                "{what} landed with solver theirs giving up chunks of an array it resizes ({})",
                show(&truth(&a.footprint, &rebased))
            ))
        }
        CommitMode::Rebase { solver: Solver::Theirs } => {
            // The server settles against what landed since the base sent.
            let mut expect = coord_sets(&a.footprint);
            for (p, s) in &truth(&a.footprint, &rebased) {
                if let Some(e) = expect.get_mut(p) {
                    e.retain(|c| !s.contains(c));
                }
            }
            expect.retain(|_, s| !s.is_empty());
            let got: Coords = written.into_iter().filter(|(_, s)| !s.is_empty()).collect();
            if got != expect {
                return fail(format!(
                    "{what} landed with solver theirs keeping {}, expected {}",
                    show(&got),
                    show(&expect)
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The chunks a footprint names are exactly those its writes touch, the
/// truth computed apart from the client's code: along each dimension the
/// elements `lo..hi` fall in chunks `lo / c ..= (hi - 1) / c` (plain
/// division by the chunk extent `c`), and a region touches the product of
/// those ranges. (Attempts that resize also rewrite edge chunks; they are
/// checked by the data oracle instead.)
fn footprint_is_the_writes(a: &Attempt, r: &Replica) -> Check {
    if !a.resizes.is_empty() || a.recreates {
        return Ok(());
    }
    let Some(base) = r.records.get(&a.data_base) else {
        return Ok(());
    };
    let mut truth: Coords = Coords::new();
    for w in &a.writes {
        let Some(meta) = base.arrays.get(&w.path) else {
            continue;
        };
        let ranges: Vec<(u64, u64)> = w
            .region
            .0
            .iter()
            .zip(&meta.chunk_shape)
            .map(|(s, c)| (s.lo / c, (s.hi.max(s.lo + 1) - 1) / c))
            .collect();
        let set = truth.entry(w.path.clone()).or_default();
        let mut coord: Vec<u64> = ranges.iter().map(|r| r.0).collect();
        'odometer: loop {
            set.insert(coord.clone());
            for d in (0..coord.len()).rev() {
                if coord[d] < ranges[d].1 {
                    coord[d] += 1;
                    continue 'odometer;
                }
                coord[d] = ranges[d].0;
            }
            break;
        }
    }
    let sent: Coords = coord_sets(&a.footprint)
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .collect();
    if sent != truth {
        return fail(format!(
            "{:?} (client c{}) sent a footprint naming chunks {} but its writes touch {}",
            a.message,
            a.client.wrapping_add(1),
            show(&sent),
            show(&truth)
        ));
    }
    Ok(())
}

/// True when chunks in `shared` belong to an array `ours` resizes (has a
/// metadata change for): the solver `theirs` cannot give those up.
fn resizes_shared(ours: &Footprint, shared: &Coords) -> bool {
    shared
        .keys()
        .any(|p| ours.arrays.get(p).is_some_and(|a| a.meta.is_some()))
}

/// A conflict or out-of-date answer names a real tip after the base and
/// exactly the truly shared chunks.
fn answer(
    r: &Replica,
    what: &str,
    base: CommitId,
    footprint: &Footprint,
    mode: CommitMode,
    outcome: Option<&Outcome>,
) -> Check {
    match outcome {
        Some(Err(FloeError::Conflict { tip, conflicts })) => {
            let commits = between(r, what, base, *tip)?;
            let meta = model::meta_conflicts(footprint, &commits);
            let settles = match mode {
                CommitMode::Rebase {
                    solver: Solver::Ours,
                } => true,
                CommitMode::Rebase {
                    solver: Solver::Theirs,
                } => !resizes_shared(footprint, &truth(footprint, &commits)),
                _ => false,
            };
            if settles && meta.is_empty() {
                return fail(format!(
                    "{what} is a conflict although the solver settles chunk conflicts: {conflicts:?}"
                ));
            }
            if truth(footprint, &commits).is_empty() && meta.is_empty() {
                return fail(format!(
                    "false conflict: {what} names {conflicts:?} but nothing in {} shares a chunk with it",
                    list(&commits)
                ));
            }
            named_exactly(what, footprint, &commits, conflicts)
        }
        Some(Err(FloeError::OutOfDate { tip })) => {
            let commits = between(r, what, base, *tip)?;
            if commits.is_empty() || mode != CommitMode::Strict {
                return fail(format!(
                    "{what} is OutOfDate at tip {tip} for a {mode:?} commit on {base}"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn named_exactly(
    what: &str,
    ours: &Footprint,
    commits: &[&CommitRecord],
    named: &[Conflict],
) -> Check {
    model::check_conflicts(ours, commits, named)
        .or_else(|e| fail(format!("{what} over {}: {e}", list(commits))))
}

/// Oracle 1, cooperative half: an accepted plan has pairwise disjoint
/// tasks; a completion is accepted only for the latest grant of its task
/// that any worker saw, and at the epoch the final state holds.
///
/// Planless sessions: accepted contributions are pairwise disjoint; each
/// `OverlappingContribution` names exactly the chunks it shares with the
/// contributions accepted before it (in the order the commit lists their
/// deltas, or, uncommitted, some set of them), by brute force over the
/// regions written.
pub fn cooperative(obs: &Observations, r: &Replica) -> Check {
    for run in &obs.coops {
        if run.planless {
            check_planless(run, r)?;
        } else {
            check_run(run, r)?;
        }
    }
    Ok(())
}

/// The chunks a contribution wrote, by brute force over its regions.
fn written(c: &Contribution, arrays: &BTreeMap<ArrayPath, ArrayMeta>) -> Coords {
    let mut out = Coords::new();
    for w in &c.writes {
        if let Some(meta) = arrays.get(&w.path) {
            out.entry(w.path.clone())
                .or_default()
                .extend(w.region.chunks(meta));
        }
    }
    out
}

fn intersect(a: &Coords, b: &Coords) -> Coords {
    a.iter()
        .filter_map(|(p, xs)| {
            let both: BTreeSet<_> = xs.intersection(b.get(p)?).cloned().collect();
            (!both.is_empty()).then(|| (p.clone(), both))
        })
        .collect()
}

/// True when `named` lists exactly `want`: every array with shared chunks,
/// its total, and its first chunks in grid order.
fn names_exactly(named: &[Conflict], want: &Coords) -> bool {
    let mut seen = 0;
    for c in named {
        let ConflictKind::ChunkDoubleUpdate { chunks, total } = &c.kind else {
            return false;
        };
        let Some(set) = want.get(&c.path) else {
            return false;
        };
        let first: Vec<Vec<u64>> = set.iter().take(MAX_LISTED_CHUNKS).cloned().collect();
        if *total != set.len() as u64 || *chunks != first {
            return false;
        }
        seen += 1;
    }
    seen == want.len()
}

/// The commit a planless session landed as, if any.
fn session_commit<'r>(run: &CoopRun, r: &'r Replica) -> Result<Option<&'r CommitRecord>, Failure> {
    Ok(by_message(r, &history(r)?)
        .get(&run.message)
        .and_then(|ids| ids.first())
        .and_then(|id| r.records.get(id)))
}

/// The session holds every accepted contribution, and besides them only
/// contributions whose writer never learned the answer; its commit lists
/// exactly what it holds, in the order it accepted them.
fn held_as_answered(run: &CoopRun, held: &[ObjectId], rec: Option<&CommitRecord>) -> Check {
    let session = run.session;
    for c in &run.contributions {
        let listed = held.contains(&c.delta);
        let wrong = if c.accepted() {
            (!listed).then_some("accepted but the session does not hold it")
        } else {
            (listed && !c.indeterminate()).then_some("refused but the session holds it")
        };
        if let Some(wrong) = wrong {
            return fail(format!(
                "session {session:?}: the contribution of {} ({:?}) was {wrong}",
                c.worker, c.outcome
            ));
        }
    }
    match rec {
        Some(rec) if rec.deltas != held => fail(format!(
            "session {session:?}: its commit {} lists deltas {:?} but the session held {held:?}",
            rec.id, rec.deltas
        )),
        _ => Ok(()),
    }
}

fn check_planless(run: &CoopRun, r: &Replica) -> Check {
    let (Some(session), Some(base)) = (run.session, run.base) else {
        return Ok(());
    };
    let Some(arrays) = r.records.get(&base).map(|b| &b.arrays) else {
        return Ok(());
    };
    let who = |c: &Contribution| format!("{} ({:?})", c.worker, show(&written(c, arrays)));
    if let Some(held) = &run.held_deltas {
        held_as_answered(run, held, session_commit(run, r)?)?;
    }
    // What the session holds: its commit's deltas, else the accepted ones.
    let held = run.held_contributions();
    for (i, a) in held.iter().enumerate() {
        let wa = written(a, arrays);
        if coord_sets(&a.footprint) != wa {
            return Err(Failure::new(
                COOPERATIVE,
                format!("session {session}: contribution of {} sent footprint {} for regions writing {}",
                    a.worker, show(&coord_sets(&a.footprint)), show(&wa)),
            ));
        }
        for b in &held[..i] {
            let both = intersect(&wa, &written(b, arrays));
            if !both.is_empty() {
                return fail(format!(
                    "session {session}: contributions of {} and {} share {} but the session holds both",
                    who(b),
                    who(a),
                    show(&both)
                ));
            }
        }
    }
    // The acceptance order: the final state lists the deltas in it; in a
    // hand-made history, any subset of those that may have been accepted.
    let mut ordered: Vec<&Contribution> = held.clone();
    let candidates: Vec<Vec<&Contribution>> = match &run.held_deltas {
        Some(deltas) => {
            ordered.sort_by_key(|c| deltas.iter().position(|d| d == &c.delta));
            (0..=ordered.len()).map(|k| ordered[..k].to_vec()).collect()
        }
        None => {
            let maybe: Vec<&Contribution> = run
                .contributions
                .iter()
                .filter(|c| c.accepted() || c.indeterminate())
                .collect();
            if maybe.len() > 8 {
                return Ok(());
            }
            (0..1u32 << maybe.len())
                .map(|m| {
                    maybe
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| m & (1 << i) != 0)
                        .map(|(_, c)| *c)
                        .collect()
                })
                .collect()
        }
    };
    for c in &run.contributions {
        let Some(Err(FloeError::OverlappingContribution { conflicts })) = &c.outcome else {
            continue;
        };
        let mine = written(c, arrays);
        let fits = candidates.iter().any(|before| {
            let mut union = Coords::new();
            for b in before {
                for (p, xs) in written(b, arrays) {
                    union.entry(p).or_default().extend(xs);
                }
            }
            let want = intersect(&mine, &union);
            !want.is_empty() && names_exactly(conflicts, &want)
        });
        if !fits {
            let others: Vec<String> = ordered.iter().map(|b| who(b)).collect();
            return fail(format!(
                "session {session}: contribution of {} was refused naming {conflicts:?}, \
                 which is not what it shares with the contributions accepted before it \
                 (accepted, in order: {})",
                who(c),
                others.join(", ")
            ));
        }
    }
    Ok(())
}

fn check_run(run: &CoopRun, r: &Replica) -> Check {
    let Some(session) = run.session else {
        return Ok(());
    };
    let fail = |d: String| Err(Failure::new(COOPERATIVE, format!("session {session}: {d}")));
    if let Some(base) = run.base.and_then(|b| r.records.get(&b)) {
        let mut arrays = base.arrays.clone();
        arrays.extend(run.create.clone());
        if let Some((a, b)) = overlapping_tasks(run, &arrays) {
            return fail(format!(
                "plan tasks {a} and {b} share chunks but the plan was accepted"
            ));
        }
    }
    let mut latest: BTreeMap<TaskId, u64> = BTreeMap::new();
    for g in &run.grants {
        let e = latest.entry(g.task).or_default();
        *e = (*e).max(g.epoch);
    }
    let status = r.sessions.get(&session);
    let mut accepted: BTreeMap<TaskId, u64> = BTreeMap::new();
    for c in run.completions.iter().filter(|c| c.accepted()) {
        let newest = latest.get(&c.task).copied().unwrap_or(0);
        if c.epoch != newest {
            return fail(format!(
                "{} completed by {} with stale epoch {} was accepted (the latest grant was epoch {newest})",
                c.task, c.worker, c.epoch
            ));
        }
        if let Some(&other) = accepted.get(&c.task).filter(|&&e| e != c.epoch) {
            return fail(format!(
                "{} accepted at two epochs, {other} and {}",
                c.task, c.epoch
            ));
        }
        accepted.insert(c.task, c.epoch);
    }
    // What landed, per the final state, even where no reply told the worker:
    // only the holder of the latest grant can complete a task, and every
    // completion sent is in its worker's report.
    for (task, &(worker, epoch)) in &run.done_by {
        let sent = run
            .completions
            .iter()
            .any(|c| c.task == *task && c.worker == worker && c.epoch == epoch);
        if !sent {
            let others: Vec<String> = run
                .completions
                .iter()
                .filter(|c| c.task == *task)
                .map(|c| format!("{} at epoch {}", c.worker, c.epoch))
                .collect();
            return fail(format!(
                "{task} is done, credited to {worker} at epoch {epoch}, but {worker} never sent that completion: \
                 a stale one landed (completions sent: {})",
                others.join(", ")
            ));
        }
    }
    for (task, c) in run.landed_by_task() {
        let newest = latest.get(&task).copied().unwrap_or(0);
        let current = status
            .and_then(|s| s.tasks.get(task.0 as usize))
            .map_or(0, |t| t.epoch);
        if c.epoch < newest.max(current) {
            return fail(format!(
                "{task} landed the completion {} sent at epoch {}, but the latest grant was epoch {}: a stale epoch landed",
                c.worker,
                c.epoch,
                newest.max(current)
            ));
        }
    }
    Ok(())
}

/// Two tasks of the plan that share a chunk, by brute force.
fn overlapping_tasks(
    run: &CoopRun,
    arrays: &BTreeMap<floe_protocol::ArrayPath, floe_protocol::ArrayMeta>,
) -> Option<(TaskId, TaskId)> {
    let mut owner: BTreeMap<(&floe_protocol::ArrayPath, Vec<u64>), usize> = BTreeMap::new();
    for (i, t) in run.plan.iter().enumerate() {
        let meta = arrays.get(&t.array)?;
        for c in t.region.chunks(meta) {
            if let Some(&j) = owner.get(&(&t.array, c.clone())) {
                return Some((TaskId(j as u32), TaskId(i as u32)));
            }
            owner.insert((&t.array, c), i);
        }
    }
    None
}
