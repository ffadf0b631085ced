//! Cooperative sessions: planned tasks under leases with fencing epochs, or
//! planless contributions; committed once, by the commit rule.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use floe_protocol::footprint::MAX_LISTED_CHUNKS;
use floe_protocol::region::coord_of;
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, CommitId, CommitMode, Conflict, ConflictKind, FloeError,
    Footprint, MetaChange, ObjectId, Outcome, PlannedTask, Region, Reply, RepoName, SessionId,
    SessionStatus, TaskId, TaskState, TaskStatus, WorkerId,
};

use super::commit::{validate, Change};
use super::plan::{validate_plan, MAX_LEASE_MS};
use super::State;

/// A cooperative session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Session {
    repo: RepoName,
    branch: BranchName,
    base: CommitId,
    /// The base's arrays and those the session creates, against which
    /// every completion is checked.
    arrays: BTreeMap<ArrayPath, ArrayMeta>,
    /// The arrays the session creates, landing with its commit.
    create: BTreeMap<ArrayPath, ArrayMeta>,
    lease_ms: u64,
    /// Where its workers read, as the job named it.
    source: Option<String>,
    work: Work,
    committed: Option<CommitId>,
    closed: bool,
}

/// What the session's writers do.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Work {
    /// Tasks planned up front.
    Planned(Plan),
    /// Free contributions, refused when they overlap.
    Planless(Pool),
}

/// The tasks of a plan and the indexes that make claiming cheap.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Plan {
    tasks: Vec<Task>,
    /// Tasks from this index on were never granted.
    next_fresh: u32,
    /// Granted tasks whose lease expired, back in the pool.
    returned: BTreeSet<u32>,
    /// Live leases, `(lease_until, task)`.
    leases: BTreeSet<(u64, u32)>,
    /// Number of tasks done.
    done: u32,
}

/// One planned task.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Task {
    array: ArrayPath,
    region: Region,
    /// The epoch of the latest grant (0 = never granted).
    epoch: u64,
    state: TaskState,
    delta: Option<ObjectId>,
    footprint: Footprint,
}

/// Contributions of a planless session.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Pool {
    merged: Footprint,
    deltas: Vec<ObjectId>,
}

impl Plan {
    fn new(planned: &[PlannedTask]) -> Self {
        let tasks = planned
            .iter()
            .map(|t| Task {
                array: t.array.clone(),
                region: t.region.clone(),
                epoch: 0,
                state: TaskState::Pending,
                delta: None,
                footprint: Footprint::new(),
            })
            .collect();
        Plan {
            tasks,
            next_fresh: 0,
            returned: BTreeSet::new(),
            leases: BTreeSet::new(),
            done: 0,
        }
    }

    fn len(&self) -> u32 {
        self.tasks.len() as u32
    }

    fn unfinished(&self) -> u32 {
        self.len() - self.done
    }

    /// Moves every lease expired at `now` back to the pool.
    fn expire(&mut self, now: u64) {
        while let Some(&(until, task)) = self.leases.first() {
            if until > now {
                break;
            }
            self.leases.pop_first();
            self.returned.insert(task);
        }
    }

    /// The lowest-numbered task that may be granted.
    fn next_available(&self) -> Option<u32> {
        let fresh = (self.next_fresh < self.len()).then_some(self.next_fresh);
        match (self.returned.first().copied(), fresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Grants `index` (from [`Plan::next_available`]) to `worker` with a
    /// new epoch.
    fn grant(&mut self, id: SessionId, index: u32, worker: WorkerId, until: u64) -> Outcome {
        let lease_until = until;
        let task = self.task_mut(id, TaskId(index))?;
        task.epoch += 1;
        task.state = TaskState::Claimed {
            worker,
            lease_until,
        };
        let reply = Reply::TaskGranted {
            task: TaskId(index),
            array: task.array.clone(),
            region: task.region.clone(),
            epoch: task.epoch,
            lease_until,
        };
        if !self.returned.remove(&index) {
            self.next_fresh += 1;
        }
        self.leases.insert((lease_until, index));
        Ok(reply)
    }

    fn task_mut(&mut self, session: SessionId, task: TaskId) -> Result<&mut Task, FloeError> {
        self.tasks
            .get_mut(task.0 as usize)
            .ok_or(FloeError::UnknownTask { session, task })
    }

    /// Marks a task done, dropping it from the lease indexes.
    fn finish(&mut self, index: u32, delta: ObjectId, footprint: &Footprint) {
        let Some(task) = self.tasks.get_mut(index as usize) else {
            return;
        };
        let worker = match task.state {
            TaskState::Claimed {
                worker,
                lease_until,
            } => {
                self.leases.remove(&(lease_until, index));
                worker
            }
            TaskState::Pending | TaskState::Done { .. } => return,
        };
        self.returned.remove(&index);
        task.state = TaskState::Done { worker };
        task.delta = Some(delta);
        task.footprint = footprint.clone();
        self.done += 1;
    }
}

impl Session {
    fn plan_mut(&mut self, id: SessionId, task: TaskId) -> Result<&mut Plan, FloeError> {
        match &mut self.work {
            Work::Planned(plan) => Ok(plan),
            Work::Planless(_) => Err(FloeError::UnknownTask { session: id, task }),
        }
    }

    /// Closes the session and drops what is no longer needed.
    fn close(&mut self, committed: Option<CommitId>) {
        self.closed = true;
        self.committed = committed;
        match &mut self.work {
            Work::Planned(plan) => {
                plan.leases.clear();
                plan.returned.clear();
                for task in &mut plan.tasks {
                    task.footprint = Footprint::new();
                }
            }
            Work::Planless(pool) => pool.merged = Footprint::new(),
        }
    }

    /// The footprint and deltas to commit, in task (or contribution)
    /// order; the footprint starts with the session's array creations.
    fn change(&self, id: SessionId) -> Result<(Footprint, Vec<ObjectId>), FloeError> {
        let mut footprint = creation(&self.create);
        match &self.work {
            Work::Planless(pool) => {
                footprint.merge(&pool.merged);
                Ok((footprint, pool.deltas.clone()))
            }
            Work::Planned(plan) if plan.unfinished() > 0 => Err(FloeError::SessionIncomplete {
                session: id,
                pending: plan.unfinished(),
            }),
            Work::Planned(plan) => {
                for task in &plan.tasks {
                    footprint.merge(&task.footprint);
                }
                let deltas = plan.tasks.iter().filter_map(|t| t.delta).collect();
                Ok((footprint, deltas))
            }
        }
    }

    fn status(&self, id: SessionId, now: u64) -> SessionStatus {
        let tasks = match &self.work {
            Work::Planless(_) => Vec::new(),
            Work::Planned(plan) => plan
                .tasks
                .iter()
                .enumerate()
                .map(|(i, t)| TaskStatus {
                    task: TaskId(i as u32),
                    array: t.array.clone(),
                    region: t.region.clone(),
                    epoch: t.epoch,
                    state: match t.state {
                        TaskState::Claimed { lease_until, .. } if lease_until <= now => {
                            TaskState::Pending
                        }
                        ref state => state.clone(),
                    },
                })
                .collect(),
        };
        SessionStatus {
            session: id,
            repo: self.repo.clone(),
            branch: self.branch.clone(),
            base: self.base,
            tasks,
            contributions: match &self.work {
                Work::Planless(pool) => pool.deltas.clone(),
                Work::Planned(_) => Vec::new(),
            },
            source: self.source.clone(),
            create: self.create.clone(),
            committed: self.committed,
            closed: self.closed,
        }
    }

    /// This session as `Query::OpenSessions` lists it, if it is an open
    /// planned session naming a source.
    fn listed(&self, id: SessionId, now: u64) -> Option<floe_protocol::OpenSession> {
        let (Work::Planned(plan), Some(source), false) = (&self.work, &self.source, self.closed)
        else {
            return None;
        };
        let tasks = plan.tasks.len() as u32;
        let expired = plan
            .leases
            .iter()
            .take_while(|(until, _)| *until <= now)
            .count() as u32;
        let fresh = tasks.saturating_sub(plan.next_fresh);
        Some(floe_protocol::OpenSession {
            session: id,
            repo: self.repo.clone(),
            branch: self.branch.clone(),
            source: source.clone(),
            tasks,
            done: plan.done,
            claimable: fresh + plan.returned.len() as u32 + expired,
        })
    }
}

/// The footprint of creating `create`'s arrays, as a commit creating them
/// records it. Their metadata must be valid (see [`check_creations`]).
fn creation(create: &BTreeMap<ArrayPath, ArrayMeta>) -> Footprint {
    let mut footprint = Footprint::new();
    for (path, meta) in create {
        footprint.set_meta(path, meta, MetaChange::Create(meta.clone()));
    }
    footprint
}

/// Checks the creations of a session against the base's `arrays` with the
/// commit rule's own validation: an existing path or invalid metadata is
/// refused as a commit creating them would be.
fn check_creations(
    arrays: &BTreeMap<ArrayPath, ArrayMeta>,
    create: &BTreeMap<ArrayPath, ArrayMeta>,
) -> Result<(), FloeError> {
    for (path, meta) in create {
        // Before `creation`, which needs a valid chunk grid.
        meta.validate().map_err(|e| FloeError::geometry(path, e))?;
    }
    validate(arrays, &creation(create))
}

fn stale(task: TaskId, presented: u64, current: u64) -> FloeError {
    FloeError::StaleEpoch {
        task,
        presented,
        current,
    }
}

impl State {
    fn session(&self, id: SessionId) -> Result<&Session, FloeError> {
        self.sessions
            .get(&id)
            .ok_or(FloeError::UnknownSession { session: id })
    }

    /// An open session, for a command.
    fn open_mut(&mut self, id: SessionId) -> Result<&mut Session, FloeError> {
        match self.sessions.get_mut(&id) {
            None => Err(FloeError::UnknownSession { session: id }),
            Some(s) if s.closed => Err(FloeError::SessionClosed { session: id }),
            Some(s) => Ok(s),
        }
    }

    /// `OpenSession`: on the branch's tip, with the arrays it creates
    /// checked as a commit creating them would be, and a validated plan
    /// (over the base's arrays and the created ones) or none.
    pub(super) fn open_session(
        &mut self,
        repo_name: &RepoName,
        branch: &BranchName,
        plan: Option<&[PlannedTask]>,
        lease_ms: u64,
        source: Option<&str>,
        create: &BTreeMap<ArrayPath, ArrayMeta>,
    ) -> Outcome {
        let repo = self.repo(repo_name)?;
        let base = repo.tip(branch)?;
        let mut arrays = repo.commit(base)?.arrays.clone();
        check_creations(&arrays, create)?;
        arrays.extend(create.iter().map(|(p, m)| (p.clone(), m.clone())));
        if !(1..=MAX_LEASE_MS).contains(&lease_ms) {
            return Err(FloeError::InvalidPlan {
                why: format!("lease of {lease_ms} ms is outside 1..={MAX_LEASE_MS} ms"),
            });
        }
        let work = match plan {
            None => Work::Planless(Pool::default()),
            Some(tasks) => {
                validate_plan(tasks, &arrays)?;
                Work::Planned(Plan::new(tasks))
            }
        };
        self.sessions_opened += 1;
        let id = SessionId(self.sessions_opened);
        let session = Session {
            repo: repo_name.clone(),
            branch: branch.clone(),
            base,
            arrays: arrays.clone(),
            create: create.clone(),
            lease_ms,
            source: source.map(str::to_string),
            work,
            committed: None,
            closed: false,
        };
        self.sessions.insert(id, session);
        Ok(Reply::SessionOpened {
            session: id,
            base,
            arrays,
        })
    }

    /// `ClaimTask`: the lowest-numbered pending or expired task.
    pub(super) fn claim_task(&mut self, id: SessionId, worker: WorkerId) -> Outcome {
        let now = self.time;
        let session = self.open_mut(id)?;
        let lease_until = now.saturating_add(session.lease_ms);
        let Work::Planned(plan) = &mut session.work else {
            return Err(FloeError::InvalidPlan {
                why: format!("session {id} has no plan: contribute instead of claiming tasks"),
            });
        };
        plan.expire(now);
        match plan.next_available() {
            Some(index) => plan.grant(id, index, worker, lease_until),
            None => Ok(Reply::NoTask {
                claimed: plan.leases.len() as u32,
                unfinished: plan.unfinished(),
            }),
        }
    }

    /// `RenewLease`: only the current grant, before its lease expires.
    pub(super) fn renew_lease(&mut self, id: SessionId, task: TaskId, epoch: u64) -> Outcome {
        let now = self.time;
        let session = self.open_mut(id)?;
        let new_until = now.saturating_add(session.lease_ms);
        let plan = session.plan_mut(id, task)?;
        let t = plan.task_mut(id, task)?;
        let current = t.epoch;
        let TaskState::Claimed {
            worker,
            lease_until,
        } = t.state
        else {
            return Err(stale(task, epoch, current));
        };
        if epoch != current || lease_until <= now {
            return Err(stale(task, epoch, current));
        }
        t.state = TaskState::Claimed {
            worker,
            lease_until: new_until,
        };
        plan.leases.remove(&(lease_until, task.0));
        plan.leases.insert((new_until, task.0));
        Ok(Reply::LeaseRenewed {
            lease_until: new_until,
        })
    }

    /// `CompleteTask`: the current grant, unexpired, inside the task.
    pub(super) fn complete_task(
        &mut self,
        id: SessionId,
        task: TaskId,
        epoch: u64,
        delta: ObjectId,
        footprint: &Footprint,
    ) -> Outcome {
        let now = self.time;
        #[cfg(feature = "planted-bugs")]
        let accept_stale = self.config.bugs.accept_stale_epoch;
        let session = self.open_mut(id)?;
        let arrays = session.arrays.clone();
        let plan = session.plan_mut(id, task)?;
        let t = plan.task_mut(id, task)?;
        let current = t.epoch;
        let live = match t.state {
            TaskState::Done { .. } if epoch == current && t.delta == Some(delta) => {
                return Ok(Reply::Accepted {
                    unfinished: plan.unfinished(),
                })
            }
            TaskState::Done { .. } | TaskState::Pending => false,
            TaskState::Claimed { lease_until, .. } => epoch == current && lease_until > now,
        };
        #[cfg(feature = "planted-bugs")]
        let live = live || (accept_stale && matches!(t.state, TaskState::Claimed { .. }));
        if !live {
            return Err(stale(task, epoch, current));
        }
        check_inside_task(task, &t.array, &t.region, &arrays, footprint)?;
        plan.finish(task.0, delta, footprint);
        Ok(Reply::Accepted {
            unfinished: plan.unfinished(),
        })
    }

    /// The claim that rides on an accepted completion: the next task for
    /// `worker` if one can be granted now, else the plain acceptance (the
    /// worker then claims, or waits, as usual).
    pub(super) fn claim_next(&mut self, id: SessionId, worker: WorkerId, unfinished: u32) -> Reply {
        match self.claim_task(id, worker) {
            Ok(Reply::TaskGranted {
                task,
                array,
                region,
                epoch,
                lease_until,
            }) => Reply::AcceptedNext {
                unfinished,
                task,
                array,
                region,
                epoch,
                lease_until,
            },
            _ => Reply::Accepted { unfinished },
        }
    }

    /// `Contribute`: a planless writer's changes, refused if they overlap.
    pub(super) fn contribute(
        &mut self,
        id: SessionId,
        delta: ObjectId,
        footprint: &Footprint,
    ) -> Outcome {
        let session = self.open_mut(id)?;
        let Work::Planless(pool) = &mut session.work else {
            return Err(FloeError::InvalidPlan {
                why: format!("session {id} has a plan: complete its tasks instead of contributing"),
            });
        };
        if footprint.arrays.values().any(|c| c.meta.is_some()) {
            return Err(FloeError::InvalidChange {
                why: "a contribution to a cooperative session cannot change array metadata".into(),
            });
        }
        validate(&session.arrays, footprint)?;
        let conflicts = overlaps(&pool.merged, footprint);
        if !conflicts.is_empty() {
            return Err(FloeError::OverlappingContribution { conflicts });
        }
        pool.merged.merge(footprint);
        pool.deltas.push(delta);
        Ok(Reply::Accepted { unfinished: 0 })
    }

    /// `CommitSession`: one commit of everything, by the commit rule.
    pub(super) fn commit_session(
        &mut self,
        id: SessionId,
        message: &str,
        author: &str,
        mode: CommitMode,
    ) -> Outcome {
        let session = self.open_mut(id)?;
        let (footprint, deltas) = session.change(id)?;
        let repo = session.repo.clone();
        let change = Change {
            branch: session.branch.clone(),
            base: session.base,
            footprint,
            deltas,
            message: message.to_string(),
            author: author.to_string(),
            mode,
        };
        let outcome = self.commit_change(&repo, change);
        if let (Ok(Reply::Committed { commit, .. }), Some(session)) =
            (&outcome, self.sessions.get_mut(&id))
        {
            session.close(Some(*commit));
        }
        outcome
    }

    /// `AbortSession`.
    pub(super) fn abort_session(&mut self, id: SessionId) -> Outcome {
        self.open_mut(id)?.close(None);
        Ok(Reply::Done)
    }

    /// `Query::Session`.
    pub(super) fn session_status(&self, id: SessionId) -> Outcome {
        let status = self.session(id)?.status(id, self.time);
        Ok(Reply::Session(Box::new(status)))
    }

    /// `Query::OpenSessions`.
    pub(super) fn open_sessions(&self) -> Outcome {
        let listed = self
            .sessions
            .iter()
            .filter_map(|(id, s)| s.listed(*id, self.time))
            .collect();
        Ok(Reply::OpenSessions(listed))
    }
}

/// The chunks `footprint` shares with earlier contributions, per array.
fn overlaps(merged: &Footprint, footprint: &Footprint) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (path, chunks) in merged.shared_chunks(footprint) {
        let Some(grid) = footprint.arrays.get(&path).map(|c| &c.grid) else {
            continue;
        };
        let listed = chunks
            .iter()
            .take(MAX_LISTED_CHUNKS)
            .map(|i| coord_of(i, grid))
            .collect();
        out.push(Conflict {
            path,
            kind: ConflictKind::ChunkDoubleUpdate {
                chunks: listed,
                total: chunks.len(),
            },
        });
    }
    out
}

/// A completion may only write chunks of its task's array inside its region,
/// and may not change metadata.
fn check_inside_task(
    task: TaskId,
    array: &ArrayPath,
    region: &Region,
    arrays: &BTreeMap<ArrayPath, ArrayMeta>,
    footprint: &Footprint,
) -> Result<(), FloeError> {
    let outside = || FloeError::FootprintOutsideTask { task };
    for (path, change) in &footprint.arrays {
        if change.meta.is_some() {
            return Err(outside());
        }
        if change.chunks.is_empty() {
            continue;
        }
        let meta = arrays
            .get(path)
            .filter(|_| path == array)
            .ok_or_else(outside)?;
        let grid = meta.grid();
        if change.grid != grid {
            return Err(FloeError::InvalidChange {
                why: format!(
                    "{path}: footprint grid {:?} is not the array's chunk grid {grid:?}",
                    change.grid
                ),
            });
        }
        if change.chunks.max().is_some_and(|m| m >= meta.chunk_count()) {
            return Err(outside());
        }
        let ranges = region.chunk_ranges(meta);
        let inside = |i: u64| {
            coord_of(i, &grid)
                .iter()
                .zip(&ranges)
                .all(|(c, s)| s.lo <= *c && *c < s.hi)
        };
        if !change.chunks.iter().all(inside) {
            return Err(outside());
        }
    }
    Ok(())
}
