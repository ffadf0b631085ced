//! Cooperative jobs over the network: `floe worker` (a worker process of
//! the cluster named by `--cluster`) and `floe job submit|status|cancel`.
//! The job's driver is the client core's `Job` machine; the workers are
//! `floe_server::worker`. A job's source is read by the workers, never by
//! the submitter beyond its header.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rand::Rng;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, Coordinator, Query,
    Reply, Request, SessionId, SessionStatus, Solver, TaskState,
};
use floe_worker::coop::{plan_grid, Tiling};
use floe_worker::machine::{Job, JobSpec, JobStatus};
use floe_worker::source::{open_source, ZARR_PREFIX};
use floe_worker::Driven;

use crate::remote::{block_on_value, record, repo, ClusterArgs};

/// `floe worker`.
#[derive(Args)]
pub struct WorkerArgs {
    /// Tasks worked on at once.
    #[arg(long, default_value_t = 1)]
    slots: usize,
    /// This worker's name, in its logs (default: worker-<pid>).
    #[arg(long)]
    name: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Pause between looks for work when there was none, ms.
    #[arg(long, default_value_t = 200)]
    idle_ms: u64,
    /// Append this worker's claims and completions to FILE as a history
    /// (Jepsen's format, as `floe chaos` merges and `floe check` reads).
    #[arg(long, value_name = "FILE")]
    history: Option<std::path::PathBuf>,
}

/// Runs a worker process until SIGTERM or Ctrl-C.
pub fn worker(cluster: ClusterArgs, args: WorkerArgs) -> Result<()> {
    let remote = cluster.connect()?;
    let store = block_on_value(remote.store())?;
    let opts = floe_server::worker::WorkerOptions {
        endpoints: remote.file.endpoints(),
        token: remote.token.clone(),
        store,
        slots: args.slots,
        name: args
            .name
            .unwrap_or_else(|| format!("worker-{}", std::process::id())),
        metrics: args.metrics,
        idle: Duration::from_millis(args.idle_ms.max(1)),
        history: args.history,
    };
    floe_server::worker::run(opts)?;
    Ok(())
}

/// `floe job`.
#[derive(Subcommand)]
pub enum JobCmd {
    /// Plan a job writing a whole array from a `.npy` file, open its
    /// cooperative session, wait while `floe worker` processes do the
    /// tasks, and commit once; prints the commit id.
    Submit(SubmitArgs),
    /// A job's session: tasks done, claimed and pending.
    Status {
        /// The job's session id (as `submit` printed it, e.g. S3).
        id: String,
    },
    /// Abort a job's session: nothing it wrote will be committed.
    Cancel {
        /// The job's session id.
        id: String,
    },
}

/// `floe job submit`.
#[derive(Args)]
pub struct SubmitArgs {
    /// The repo.
    repo: String,
    /// The array, e.g. `/t`.
    path: String,
    /// A `.npy` of the array's shape and dtype: a path every worker sees,
    /// or an object-store URL (`s3://bucket/dir/x.npy`, `file:///...`); or
    /// `zarr:ROOT`, a Zarr v3 hierarchy (path or URL) holding an array at
    /// the same path with the same shape, chunks and dtype.
    #[arg(long = "from")]
    source: String,
    /// The branch to commit to.
    #[arg(long, default_value = "main")]
    branch: String,
    /// About this many tasks (slowest dimensions split first; default:
    /// about 64, or one per chunk for smaller arrays).
    #[arg(long, conflicts_with = "chunks_per_task")]
    tasks: Option<u64>,
    /// Chunks per task along the first dimension (whole chunks along the
    /// others).
    #[arg(long)]
    chunks_per_task: Option<u64>,
    /// Commit message.
    #[arg(long, default_value = "cooperative job")]
    message: String,
    /// Lease of a claimed task, ms: a worker that stops renewing for this
    /// long loses its task to another.
    #[arg(long, default_value_t = 10_000)]
    lease_ms: u64,
}

/// Runs `floe job ...`.
pub fn job(cluster: ClusterArgs, cmd: JobCmd) -> Result<()> {
    match cmd {
        JobCmd::Submit(args) => submit(cluster, args),
        JobCmd::Status { id } => status(cluster, &id),
        JobCmd::Cancel { id } => cancel(cluster, &id),
    }
}

fn session_id(text: &str) -> Result<SessionId> {
    let digits = text.trim_start_matches(['S', 's']);
    digits
        .parse()
        .map(SessionId)
        .map_err(|_| anyhow!("{text:?} is not a session id (e.g. S3)"))
}

fn submit(cluster: ClusterArgs, args: SubmitArgs) -> Result<()> {
    let remote = cluster.connect()?;
    let name = repo(&args.repo)?;
    let path = ArrayPath::new(&args.path)?;
    let branch = BranchName::new(&args.branch)?;
    let source = absolute_source(&args.source)?;
    let npy = open_source(&source)?;
    block_on_value(async move {
        let client = remote.client();
        let q = Query::Checkout {
            repo: name.clone(),
            branch: branch.clone(),
        };
        let tip = record(&client, q).await?;
        let meta = tip
            .arrays
            .get(&path)
            .ok_or_else(|| anyhow!("{name} has no array {path} on {branch}"))?;
        // The workers read it; the submitter only checks that it fits.
        npy.check_fits(&path, meta)?;
        let plan = plan_grid(&path, meta, &tiling(meta, args.tasks, args.chunks_per_task))?;
        let bytes = meta.dtype.size() as u64 * meta.shape.iter().product::<u64>();
        let spec = JobSpec {
            repo: name,
            branch,
            plan,
            lease_ms: args.lease_ms,
            message: args.message,
            mode: CommitMode::Rebase {
                solver: Solver::Fail,
            },
            source: Some(source),
            create: Default::default(),
        };
        run_job(&remote.coord, spec, bytes).await?;
        Ok(())
    })
}

/// A job source as every worker can open it: workers resolve a path on
/// their own machines, so a local path (also after `zarr:`) is made
/// absolute; a URL is kept.
pub(crate) fn absolute_source(text: &str) -> Result<String> {
    let (prefix, rest) = match text.strip_prefix(ZARR_PREFIX) {
        Some(rest) => (ZARR_PREFIX, rest),
        None => ("", text),
    };
    if rest.contains("://") {
        return Ok(text.to_string());
    }
    let path = std::fs::canonicalize(rest).with_context(|| format!("source {rest}"))?;
    Ok(format!("{prefix}{}", path.display()))
}

/// Tasks of a job unless `--tasks` or `--chunks-per-task` says. Each task
/// costs a claim and a completion through the Raft log: one task per chunk
/// made a job of 1024 small chunks 2.1x slower than one session writing
/// them, about 64 tasks on 4 workers 0.58x.
const DEFAULT_TASKS: u64 = 64;

/// How `--tasks N` / `--chunks-per-task K` cut `meta`'s chunk grid
/// (default: about [`DEFAULT_TASKS`], or one task per chunk for smaller
/// arrays).
pub(crate) fn tiling(meta: &ArrayMeta, tasks: Option<u64>, chunks_per_task: Option<u64>) -> Tiling {
    let grid = meta.grid();
    match (tasks, chunks_per_task) {
        (_, Some(k)) => {
            let mut per = vec![1; grid.len()];
            per[0] = k.max(1);
            Tiling::ChunksPerTask(per)
        }
        (Some(n), None) => Tiling::about(&grid, n),
        (None, None) => Tiling::about(&grid, grid.iter().product::<u64>().min(DEFAULT_TASKS)),
    }
}

/// Drives the job with a progress bar; prints and returns its commit.
pub(crate) async fn run_job(
    coord: &std::sync::Arc<floe_server::NetCoordinator>,
    spec: JobSpec,
    bytes: u64,
) -> Result<CommitId> {
    let tasks = spec.plan.len() as u64;
    let job =
        Job::new(ClientId(rand::thread_rng().gen()), coord.nodes(), spec).with_author(whoami());
    let mut driven = Driven::new(job, coord.clone(), None);
    let bar = ProgressBar::new(tasks);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} tasks, {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let began = Instant::now();
    let mut announced = false;
    driven
        .run_until(|job| {
            if let (false, Some(session)) = (announced, job.session()) {
                announced = true;
                bar.suspend(|| {
                    eprintln!(
                        "job {session}: {tasks} tasks, {}; waiting for `floe worker` processes \
                         (`floe job status {session}`, `floe job cancel {session}`)",
                        size(bytes)
                    )
                });
                bar.set_prefix(session.to_string());
            }
            if let Some(status) = &job.report().last_status {
                let p = progress(status);
                bar.set_position(p.done);
                let done_bytes = bytes * p.done / tasks.max(1);
                let rate = done_bytes as f64 / began.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{} claimed, {} re-granted, {} at {}/s",
                    p.claimed,
                    p.regranted,
                    size(done_bytes),
                    size(rate as u64)
                ));
            }
            false
        })
        .await?;
    bar.finish_and_clear();
    let job = driven.into_machine();
    let secs = began.elapsed().as_secs_f64();
    match job.status() {
        JobStatus::Committed(commit) => {
            println!(
                "committed {commit}: {tasks} tasks, {} in {secs:.1} s ({}/s)",
                size(bytes),
                size((bytes as f64 / secs.max(1e-3)) as u64)
            );
            Ok(*commit)
        }
        JobStatus::Failed(e) => bail!("the job failed: {e}"),
        JobStatus::Running => bail!("the job stopped before its commit"),
    }
}

/// Tasks done, claimed, and granted more than once (a lease expired).
struct Progress {
    done: u64,
    claimed: u64,
    regranted: u64,
}

fn progress(status: &SessionStatus) -> Progress {
    let count = |pick: fn(&floe_protocol::TaskStatus) -> bool| {
        status.tasks.iter().filter(|t| pick(t)).count() as u64
    };
    Progress {
        done: count(|t| matches!(t.state, TaskState::Done { .. })),
        claimed: count(|t| matches!(t.state, TaskState::Claimed { .. })),
        regranted: count(|t| t.epoch > 1),
    }
}

fn size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "floe-job".into())
}

fn status(cluster: ClusterArgs, id: &str) -> Result<()> {
    let remote = cluster.connect()?;
    let session = session_id(id)?;
    block_on_value(async move {
        let client = remote.client();
        let status = match client
            .call(Request::Query(Query::Session { session }))
            .await?
        {
            Reply::Session(status) => *status,
            other => bail!("unexpected answer {other:?}"),
        };
        let p = progress(&status);
        let tasks = status.tasks.len() as u64;
        let state = match (status.committed, status.closed) {
            (Some(commit), _) => format!("committed as {commit}"),
            (None, true) => "aborted".into(),
            (None, false) => "open".into(),
        };
        println!(
            "{session} {state}: {}/{} on {} from {}",
            status.repo,
            status.branch,
            status.base,
            status.source.as_deref().unwrap_or("-")
        );
        println!(
            "tasks: {} done, {} claimed, {} pending, of {tasks}; {} granted more than once",
            p.done,
            p.claimed,
            tasks - p.done - p.claimed,
            p.regranted
        );
        Ok(())
    })
}

fn cancel(cluster: ClusterArgs, id: &str) -> Result<()> {
    let remote = cluster.connect()?;
    let session = session_id(id)?;
    block_on_value(async move {
        remote
            .client()
            .command(Command::AbortSession { session })
            .await?;
        println!("{session} aborted; what its workers wrote will not be committed");
        Ok(())
    })
}
