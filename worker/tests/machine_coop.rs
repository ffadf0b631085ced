//! The sans-IO cooperative job and workers, driven synchronously against a
//! bare coordinator state and an in-memory map.

mod machine_harness;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use floe_protocol::{
    ArrayMeta, ArrayPath, ClientId, Command, CommitId, CommitMode, DType, FloeError, PlannedTask,
    Region, Request, SessionId, TaskId, WorkerId,
};
use floe_worker::machine::{
    Effect, Job, JobSpec, JobStatus, Machine, SourceFn, Worker, WorkerStatus,
};
use floe_worker::ArrayData;
use machine_harness::*;

const NODES: [u64; 3] = [1, 2, 3];

fn grid() -> ArrayPath {
    path("/grid")
}

/// 60 x 40 i32 in 10 x 10 chunks, fill -1.
fn meta() -> ArrayMeta {
    ArrayMeta::new(vec![60, 40], vec![10, 10], DType::I32, -1.0).unwrap()
}

/// Element at global (row, col), offset per worker when `per_worker`.
fn value(row: u64, col: u64, offset: i32) -> i32 {
    offset + (row * 40 + col) as i32
}

/// A source of `value`, offset by `offset(worker)`.
fn source(offset: fn(WorkerId) -> i32) -> SourceFn {
    Arc::new(
        move |_: &ArrayPath, _: &ArrayMeta, r: &Region, w: WorkerId| {
            let cols = r.0[1].len();
            Ok(ints(r, |i| {
                let (row, col) = (r.0[0].lo + i as u64 / cols, r.0[1].lo + i as u64 % cols);
                value(row, col, offset(w))
            }))
        },
    )
}

fn expected(r: &Region, offset: i32) -> ArrayData {
    let cols = r.0[1].len();
    ints(r, |i| {
        value(
            r.0[0].lo + i as u64 / cols,
            r.0[1].lo + i as u64 % cols,
            offset,
        )
    })
}

/// `rows` x `cols`-chunk tasks tiling the whole array, row-major.
fn plan(rows: u64, cols: u64) -> Vec<PlannedTask> {
    let mut tasks = Vec::new();
    for r in (0..60).step_by(rows as usize) {
        for c in (0..40).step_by(cols as usize) {
            tasks.push(PlannedTask {
                array: grid(),
                region: Region::new(&[(r, r + rows), (c, c + cols)]),
            });
        }
    }
    tasks
}

fn job(plan: Vec<PlannedTask>, lease_ms: u64) -> Job {
    let spec = JobSpec {
        repo: repo(),
        branch: main_branch(),
        plan,
        lease_ms,
        message: "cooperative".into(),
        mode: CommitMode::Strict,
        source: None,
        create: Default::default(),
    };
    Job::new(ClientId(100), NODES.to_vec(), spec)
}

fn worker(n: u64, job: &Job, src: SourceFn) -> Worker {
    let session = job.session().expect("session opened");
    Worker::new(
        WorkerId(n),
        ClientId(200 + n),
        NODES.to_vec(),
        session,
        repo(),
        src,
        1_000 + n,
    )
}

/// Starts the job and steps until its session is open.
fn open(world: &mut World, job: &mut Job) -> SessionId {
    job.start(world.now);
    while job.session().is_none() {
        assert!(world.step(&mut [job]));
    }
    job.session().unwrap_or(SessionId(0))
}

fn accepted(w: &Worker) -> usize {
    w.report()
        .completions
        .iter()
        .filter(|c| matches!(&c.outcome, Some(Ok(r)) if r.accepted().is_some()))
        .count()
}

#[test]
fn three_workers_land_a_twelve_task_plan_as_one_commit() {
    let mut world = World::with_array(&grid(), &meta());
    world.fail_puts = 4;
    let mut job = job(plan(10, 20), 1_000);
    open(&mut world, &mut job);
    let arrays = job.arrays().cloned().unwrap_or_default();
    let src = source(|_| 0);
    // One worker reads the metadata from the session's base, two are given it.
    let mut w1 = worker(1, &job, src.clone());
    let mut w2 = worker(2, &job, src.clone()).with_arrays(arrays.clone());
    let mut w3 = worker(3, &job, src)
        .with_arrays(arrays)
        .with_lease_ms(1_000);
    world.run(&mut [&mut job, &mut w1, &mut w2, &mut w3], 60_000);

    assert_eq!(job.status(), &JobStatus::Committed(CommitId(2)));
    assert_eq!(world.tip(), CommitId(2));
    assert_eq!(world.log().len(), 3, "C0, C1 and the one session commit");
    let record = world.record(CommitId(2));
    assert_eq!(record.footprint.chunk_count(), 24);
    assert_eq!(record.deltas.len(), 12);
    let workers = [&w1, &w2, &w3];
    for w in workers {
        assert_eq!(w.status(), &WorkerStatus::Finished);
        assert!(!w.report().grants.is_empty(), "{:?} got no task", w.id());
    }
    let total: usize = workers.iter().map(|w| accepted(w)).sum();
    assert_eq!(total, 12);
    let whole = Region::new(&[(0, 60), (0, 40)]);
    assert_eq!(
        world.read(CommitId(2), &grid(), &whole),
        expected(&whole, 0)
    );
    assert_eq!(world.failed_puts.len(), 4);
}

#[test]
fn a_job_creates_its_array_with_its_one_commit() {
    let mut world = World::with_array(&grid(), &meta());
    let made = path("/made");
    let tasks: Vec<PlannedTask> = plan(30, 40)
        .into_iter()
        .map(|t| PlannedTask {
            array: made.clone(),
            ..t
        })
        .collect();
    let mut job = job(tasks, 1_000);
    job = Job::new(
        ClientId(100),
        NODES.to_vec(),
        JobSpec {
            create: [(made.clone(), meta())].into(),
            ..job.spec().clone()
        },
    );
    open(&mut world, &mut job);
    assert!(!world.record(world.tip()).arrays.contains_key(&made));
    // Without given metadata: the worker learns the created array from the
    // session's status.
    let mut w = worker(1, &job, source(|_| 0));
    world.run(&mut [&mut job, &mut w], 60_000);
    assert_eq!(job.status(), &JobStatus::Committed(CommitId(2)));
    assert_eq!(w.arrays().and_then(|a| a.get(&made)), Some(&meta()));
    let record = world.record(CommitId(2));
    assert_eq!(record.arrays.get(&made), Some(&meta()));
    let whole = Region::new(&[(0, 60), (0, 40)]);
    assert_eq!(world.read(CommitId(2), &made, &whole), expected(&whole, 0));
}

#[test]
fn a_worker_whose_lease_expired_is_refused_while_another_redoes_its_task() {
    let mut world = World::with_array(&grid(), &meta());
    let mut job = job(plan(30, 40), 300);
    open(&mut world, &mut job);
    let arrays = job.arrays().cloned().unwrap_or_default();
    let src = source(|w| if w == WorkerId(1) { 100_000 } else { 200_000 });
    // Machine 1 (the zombie-to-be): its puts are held until released and
    // its renewals never arrive.
    let release = Rc::new(Cell::new(false));
    let held = release.clone();
    world.hold = Box::new(move |i, e, _| i == 1 && matches!(e, Effect::Put { .. }) && !held.get());
    world.before = Box::new(|i, _, env| match env.request {
        Request::Command(Command::RenewLease { .. }) if i == 1 => Before::Drop,
        _ => Before::Apply,
    });
    let mut a = worker(1, &job, src.clone()).with_arrays(arrays.clone());
    let mut b = worker(2, &job, src).with_arrays(arrays);
    a.start(world.now);
    while a.holding().is_none() {
        assert!(world.step(&mut [&mut job, &mut a]));
    }
    let (task, epoch) = a.holding().unwrap_or((TaskId(99), 0));
    assert_eq!(task, TaskId(0));
    let granted_at = world.now;
    while world.now < granted_at + 400 {
        assert!(world.step(&mut [&mut job, &mut a]));
    }
    // B claims after A's lease ran out: it gets A's task under a new epoch.
    b.start(world.now);
    while !b.is_done() {
        assert!(world.step(&mut [&mut job, &mut a, &mut b]));
    }
    assert_eq!(b.report().grants[0], (TaskId(0), epoch + 1));
    assert_eq!(accepted(&b), 2);
    // A wakes up and completes with its stale epoch.
    release.set(true);
    world.run(&mut [&mut job, &mut a, &mut b], 10_000);
    let zombie = &a.report().completions;
    assert_eq!(zombie.len(), 1);
    assert_eq!(
        zombie[0].outcome,
        Some(Err(FloeError::StaleEpoch {
            task: TaskId(0),
            presented: epoch,
            current: epoch + 1
        }))
    );
    assert_eq!(job.status(), &JobStatus::Committed(CommitId(2)));
    let t0 = Region::new(&[(0, 30), (0, 40)]);
    assert_eq!(
        world.read(CommitId(2), &grid(), &t0),
        expected(&t0, 200_000)
    );
    assert_eq!(a.status(), &WorkerStatus::Finished);
}
