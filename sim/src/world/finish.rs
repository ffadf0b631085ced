//! The end of a run: the liveness verdict, the final oracles over the
//! replicas' states, and the numbers of the report.

use std::collections::BTreeMap;

use floe_coordinator::StateMachine;
use floe_protocol::{BranchName, CommitId, FloeError, Query, Reply, RepoName, SessionId, TagName};

use super::{Life, World};
use crate::client::Client;
use crate::cluster::SimNode;
use crate::model::Write;
use crate::obs::{Completion, Contribution, CoopRun, Grant, Observations, Replica};
use crate::oracle::{self, Check, Failure, LIVENESS};
use floe_worker::coop::task_footprint;
use floe_worker::machine::Worker;

/// Counts for the seed report.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) commits: u64,
    pub(crate) fast_forwards: u64,
    pub(crate) conflicts: u64,
    pub(crate) branch_commits: u64,
    pub(crate) tag_reads: u64,
}

impl World {
    /// Runs every end-of-run oracle (unless a violation was already found)
    /// and counts what happened.
    pub(crate) fn finish(&mut self) -> Tally {
        let replicas = self.replicas();
        let mut obs = self.observations();
        if let Some(r) = replicas.first() {
            record_done_by(&mut obs, r);
        }
        if self.failure.is_none() {
            if let Err(f) = self
                .liveness()
                .and_then(|()| final_oracles(&obs, &replicas, &self.store))
            {
                self.found_at_end = true;
                self.fail(f);
            }
        }
        if self.trace.printing() {
            self.summarize(&obs);
        }
        tally(&obs, replicas.first())
    }

    /// With the trace on, what the clients saw, for the person replaying
    /// (printed after the trace, not part of it: the hash stays the same).
    fn summarize(&self, obs: &Observations) {
        for a in &obs.attempts {
            let outcome = a
                .outcome
                .as_ref()
                .map(|o| crate::codes::outcome_name(crate::codes::outcome(o)));
            let resizes: String = a
                .resizes
                .iter()
                .map(|(p, s)| format!(" resize {p} to {s:?};"))
                .collect();
            let line = format!(
                "c{} {:?} data on {} sent on {}{resizes} {:?} -> {outcome:?}",
                a.client.wrapping_add(1),
                a.message,
                a.data_base,
                a.base_sent,
                a.mode
            );
            crate::trace::print_line(&format!("attempt   {line}"));
        }
        for run in &obs.coops {
            let line =
                format!(
                "{:?} {:?} on {:?}: grants {:?}; completions {:?}; done by {:?}; commit -> {:?}",
                run.message,
                run.session,
                run.base,
                run.grants.iter().map(|g| (g.worker, g.task, g.epoch)).collect::<Vec<_>>(),
                run.completions
                    .iter()
                    .map(|c| (c.worker, c.task, c.epoch, c.accepted()))
                    .collect::<Vec<_>>(),
                run.done_by,
                run.outcome.as_ref().map(|o| crate::codes::outcome_name(crate::codes::outcome(o)))
            );
            crate::trace::print_line(&format!("job       {line}"));
            for c in &run.contributions {
                let outcome = c
                    .outcome
                    .as_ref()
                    .map(|o| crate::codes::outcome_name(crate::codes::outcome(o)));
                let line = format!(
                    "{} writes {:?} -> {outcome:?}",
                    c.worker,
                    crate::model::show(&crate::model::coord_sets(&c.footprint))
                );
                crate::trace::print_line(&format!("contrib   {line}"));
            }
        }
    }

    /// What every client saw.
    pub(crate) fn observations(&self) -> Observations {
        let mut obs = Observations::default();
        for (i, slot) in self.clients.iter().enumerate() {
            slot.client.observe(i as u32, &mut obs);
            obs.ends.push(slot.client.end(i as u32, &self.arrays));
        }
        obs.faults = self.counts.clone();
        obs.client_expiry_ms = self.shape.client_expiry_ms;
        obs.reads = self.timeline.reads.clone();
        obs.acks = self.timeline.acks.clone();
        for info in &self.jobs {
            if let Some(run) = self.coop_run(info) {
                obs.coops.push(run);
            }
        }
        for info in &self.planless {
            if let Some(run) = self.planless_run(info) {
                obs.coops.push(run);
            }
        }
        obs
    }

    /// A planless run as its opener, its contributors and its committer
    /// saw it.
    fn planless_run(&self, info: &super::spawn::PlanlessInfo) -> Option<CoopRun> {
        let outcome = info
            .commit
            .and_then(|c| self.clients[c as usize].client.answered())
            .map(|(_, outcome)| outcome.clone());
        let mut run = CoopRun {
            session: info.open.as_ref().map(|o| o.0),
            base: info.open.as_ref().map(|o| o.1),
            message: info.message.clone(),
            mode: info.mode,
            outcome,
            planless: true,
            ..CoopRun::default()
        };
        for &c in &info.contributors {
            if let Client::Contributor {
                contributor,
                writes,
                worker,
                ..
            } = &self.clients[c as usize].client
            {
                if let Some((delta, footprint)) = contributor.sent() {
                    run.contributions.push(Contribution {
                        worker: *worker,
                        delta: *delta,
                        footprint: footprint.clone(),
                        writes: writes.clone(),
                        outcome: contributor.outcome().cloned(),
                    });
                }
            }
        }
        Some(run)
    }

    /// A cooperative job as its driver and its workers saw it.
    fn coop_run(&self, info: &super::spawn::JobInfo) -> Option<CoopRun> {
        let Client::Job { job, .. } = &self.clients[info.index as usize].client else {
            return None;
        };
        let report = job.report();
        let mut run = CoopRun {
            session: report.session,
            base: report.base,
            plan: job.spec().plan.clone(),
            create: job.spec().create.clone(),
            message: job.spec().message.clone(),
            mode: report.commits.last().map_or(job.spec().mode, |c| c.0),
            outcome: report.outcome.clone(),
            ..CoopRun::default()
        };
        for &w in &info.workers {
            if let Client::Worker { worker, .. } = &self.clients[w as usize].client {
                self.worker_saw(worker, &mut run);
            }
        }
        Some(run)
    }

    fn worker_saw(&self, worker: &Worker, run: &mut CoopRun) {
        let id = worker.id();
        let report = worker.report();
        for &(task, epoch) in &report.grants {
            run.grants.push(Grant {
                worker: id,
                task,
                epoch,
            });
        }
        for c in &report.completions {
            let setup = self.arrays.iter().find(|(p, _)| *p == c.array);
            let Some(meta) = setup
                .map(|(_, m)| m)
                .or_else(|| run.create.get(&c.array))
                .cloned()
            else {
                continue;
            };
            let meta = &meta;
            run.completions.push(Completion {
                worker: id,
                task: c.task,
                epoch: c.epoch,
                outcome: c.outcome.clone(),
                footprint: task_footprint(&c.array, meta, &c.region),
                // The source is deterministic: the data is what the
                // worker wrote (the machine keeps no copy of it).
                writes: vec![Write {
                    path: c.array.clone(),
                    region: c.region.clone(),
                    data: super::spawn::source_data(&c.array, meta, &c.region, id),
                }],
            });
        }
    }

    fn liveness(&self) -> Check {
        if self.finished {
            return Ok(());
        }
        let pending: Vec<String> = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.done && !matches!(s.life, Life::Crashed))
            .map(|(i, s)| format!("c{} ({})", i + 1, s.client.kind()))
            .collect();
        let nodes: Vec<String> = self
            .cluster
            .running()
            .map(|n| {
                format!(
                    "n{} {:?} applied {} commit {}",
                    n.id(),
                    n.role(),
                    n.applied_index(),
                    n.commit_index()
                )
            })
            .collect();
        Err(Failure::new(
            LIVENESS,
            format!(
                "{} ms after the faults stopped, still pending: [{}]; down: {:?}; nodes: [{}]",
                self.liveness_ms(),
                pending.join(", "),
                self.cluster.down_ids(),
                nodes.join("; ")
            ),
        ))
    }

    /// Every running replica's final view.
    pub(crate) fn replicas(&self) -> Vec<Replica> {
        let repo = crate::workload::repo();
        let names = Names {
            branches: &self.branches,
            tags: &self.tags,
        };
        self.cluster
            .running()
            .map(|n| replica(n, &repo, &names))
            .collect()
    }
}

fn final_oracles(
    obs: &Observations,
    replicas: &[Replica],
    store: &BTreeMap<String, Vec<u8>>,
) -> Check {
    oracle::replicas_agree(replicas)?;
    let Some(r) = replicas.first() else {
        return Ok(());
    };
    oracle::one_history(obs, r)?;
    oracle::cooperative(obs, r)?;
    oracle::exact_conflicts(obs, r)?;
    oracle::client_ends(obs, r)?;
    oracle::linearizable_reads(obs, r)?;
    oracle::tags_stay(obs, r)?;
    oracle::data(obs, r, &crate::workload::repo(), store)
}

/// The branch and tag names the workload used.
pub(crate) struct Names<'a> {
    pub(crate) branches: &'a [BranchName],
    pub(crate) tags: &'a [TagName],
}

/// A replica's records, branches, tags and sessions, read through its
/// queries.
pub(crate) fn replica(node: &SimNode, repo: &RepoName, names: &Names) -> Replica {
    let state = node.machine();
    let id_of = |query: Query| match state.query(&query) {
        Ok(Reply::Commit(rec)) => Some(rec.id),
        _ => None,
    };
    let branches: BTreeMap<BranchName, CommitId> = names
        .branches
        .iter()
        .filter_map(|b| {
            let q = Query::Checkout {
                repo: repo.clone(),
                branch: b.clone(),
            };
            id_of(q).map(|id| (b.clone(), id))
        })
        .collect();
    let tags = names
        .tags
        .iter()
        .filter_map(|t| {
            let q = Query::ResolveTag {
                repo: repo.clone(),
                tag: t.clone(),
            };
            id_of(q).map(|id| (t.clone(), id))
        })
        .collect();
    let tip = branches
        .get(&super::spawn::main())
        .copied()
        .unwrap_or(CommitId(0));
    let mut records = BTreeMap::new();
    for i in 0.. {
        let q = Query::GetCommit {
            repo: repo.clone(),
            commit: CommitId(i),
        };
        match state.query(&q) {
            Ok(Reply::Commit(rec)) => records.insert(rec.id, *rec),
            _ => break,
        };
    }
    let mut sessions = BTreeMap::new();
    for i in 1.. {
        match state.query(&Query::Session {
            session: SessionId(i),
        }) {
            Ok(Reply::Session(s)) => sessions.insert(SessionId(i), *s),
            _ => break,
        };
    }
    Replica {
        node: node.id(),
        applied: node.applied_index(),
        digest: node.digest(),
        tip,
        branches,
        tags,
        records,
        sessions,
    }
}

/// Tells each cooperative run which worker the final state says
/// completed each task, and which deltas its commit holds.
fn record_done_by(obs: &mut Observations, r: &Replica) {
    for run in &mut obs.coops {
        let Some(status) = run.session.and_then(|s| r.sessions.get(&s)) else {
            continue;
        };
        run.held_deltas = Some(status.contributions.clone());
        for t in &status.tasks {
            if let floe_protocol::TaskState::Done { worker } = t.state {
                run.done_by.insert(t.task, (worker, t.epoch));
            }
        }
    }
}

fn tally(obs: &Observations, replica: Option<&Replica>) -> Tally {
    let mut t = Tally::default();
    if let Some(r) = replica {
        t.commits = r.records.len().saturating_sub(1) as u64;
        t.fast_forwards = r
            .records
            .values()
            .filter(|rec| rec.rebased_over > 0 || is_seed_loop(obs, &rec.message, rec.base))
            .count() as u64;
        t.branch_commits = r
            .records
            .values()
            .filter(|rec| rec.branch.as_str() != "main")
            .count() as u64;
    }
    let conflict =
        |o: &Option<floe_protocol::Outcome>| matches!(o, Some(Err(FloeError::Conflict { .. })));
    t.tag_reads = obs.tag_reads.iter().filter(|r| r.read.is_some()).count() as u64;
    t.conflicts = obs.attempts.iter().filter(|a| conflict(&a.outcome)).count() as u64
        + obs.coops.iter().filter(|c| conflict(&c.outcome)).count() as u64
        + obs
            .ff_answers
            .iter()
            .filter(|f| !f.conflicts.is_empty())
            .count() as u64;
    t
}

/// True when the commit landed through the seed's loop: sent on a newer
/// base than its data was computed on.
fn is_seed_loop(obs: &Observations, message: &str, base: Option<CommitId>) -> bool {
    obs.attempts
        .iter()
        .any(|a| a.message == message && Some(a.base_sent) == base && a.base_sent != a.data_base)
}
