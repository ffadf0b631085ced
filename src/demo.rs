//! `floe demo`: the seed's scenarios, replayed step by step in the seed's
//! words on a local deployment of processes (three coordinators and
//! `floe worker` processes on loopback, as `floe up` starts them; stopped
//! at the end) or, with `--embedded`, on an in-process cluster; chunks go
//! to a local-disk store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Codec, Command, CommitId, CommitMode, Coordinator,
    DType, FloeError, Region, Reply, RepoName, Request, Solver,
};
use floe_server::NetCoordinator;
use floe_worker::machine::{Job, JobSpec, JobStatus};
use floe_worker::{
    plan_grid, run_plan, ArrayData, CoopOptions, SeedStep, Session, Source, Store, Synthetic,
    Tiling,
};

use crate::cluster::Deployment;

/// Arguments of `floe demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep the store in this directory instead of a temporary one.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Workers for the cooperative scenario (worker processes, or
    /// in-process workers with `--embedded`).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Run on an in-process cluster instead of coordinator and worker
    /// processes.
    #[arg(long)]
    embedded: bool,
}

/// Runs every scenario; fails unless each expected outcome happened.
pub fn run(args: DemoArgs) -> Result<()> {
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
    if args.embedded {
        let store = Store::local(&dir).with_context(|| format!("opening {}", dir.display()))?;
        let coord = Arc::new(crate::embedded::start()?);
        println!("floe demo: {} ; store {}", coord.describe(), dir.display());
        runtime.block_on(async {
            example_one(&coord, &store).await?;
            example_two(&coord, &store).await?;
            cooperative(&coord, &store, args.workers).await
        })?;
    } else {
        let deployment = Deployment::start(&dir, 3, args.workers as u64, 20)?;
        let names: Vec<String> = deployment
            .children
            .iter()
            .map(|(name, child)| format!("{name} (pid {})", child.id()))
            .collect();
        println!(
            "floe demo: processes on loopback: {}; as `floe up --nodes 3 --workers {} --dir {}`",
            names.join(", "),
            args.workers,
            dir.display()
        );
        let (coord, store) = connect(&deployment)?;
        runtime.block_on(async {
            example_one(&coord, &store).await?;
            example_two(&coord, &store).await?;
            on_worker_processes(&coord, &store, &dir).await
        })?;
        println!("\nstopping the processes it started");
    }
    println!("\nall scenarios behaved as the seed describes");
    Ok(())
}

/// The network client and the store of a deployment.
fn connect(d: &Deployment) -> Result<(Arc<NetCoordinator>, Store)> {
    let file = floe_server::config::ClusterFile::load(&d.cluster_file)?;
    let token = floe_server::config::read_token(&file.token_file)?;
    let coord = Arc::new(NetCoordinator::new(file.endpoints(), token));
    let dir = d.cluster_file.parent().unwrap_or(std::path::Path::new("."));
    Ok((coord, Store::local(dir.join("store"))?))
}

fn name<T>(make: fn(String) -> Result<T, FloeError>, s: &str) -> Result<T> {
    make(s.to_string()).map_err(Into::into)
}

/// Creates `repo` and an array in commit C1, as the seed's diagrams start.
async fn setup<C: Coordinator + 'static>(
    coord: &Arc<C>,
    store: &Store,
    repo: &RepoName,
    path: &ArrayPath,
    meta: ArrayMeta,
) -> Result<CommitId> {
    let create = Request::Command(Command::CreateRepo { repo: repo.clone() });
    match floe_worker::client::call(coord, create).await? {
        Reply::RepoCreated { .. } => {}
        other => bail!("unexpected reply to CreateRepo: {other:?}"),
    }
    let main = name(BranchName::new, "main")?;
    let mut s = Session::checkout(coord.clone(), store.clone(), repo.clone(), main).await?;
    s.create_array(path, meta)?;
    Ok(s.commit("create the array", Default::default()).await?)
}

fn values(region: &Region, start: i32) -> Result<ArrayData> {
    let n = region.elements() as i32;
    let data: Vec<i32> = (start..start + n).collect();
    Ok(ArrayData::from_slice(&region.shape(), &data)?)
}

fn say(who: &str, what: impl std::fmt::Display) {
    println!("  {who:<6} {what}");
}

/// Prints the seed loop's steps in the seed's words; a commit sent right
/// after a fast-forward is the seed's "fast forward and commit session".
fn narrator(session: &str) -> impl FnMut(&SeedStep) + Send + '_ {
    let mut after_ff = false;
    move |step| {
        let skip = after_ff && matches!(step, SeedStep::CommitSent { .. });
        after_ff = matches!(step, SeedStep::FastForwarded { .. });
        if !skip {
            seed_words(session, step);
        }
    }
}

fn seed_words(session: &str, step: &SeedStep) {
    match step {
        SeedStep::CommitSent { .. } => say(session, "-> floe: commit session"),
        SeedStep::OutOfDate { tip } => say(
            "floe",
            format!("-> {session}: sorry, your branch is out of date (main: {tip})"),
        ),
        SeedStep::Asked { yes: true, .. } => {
            say(session, "-> floe: can I fast forward?");
            say("floe", format!("-> {session}: yes"));
        }
        SeedStep::Asked { yes: false, .. } => {
            say(session, "-> floe: can I fast forward?");
            say("floe", format!("-> {session}: no: conflict detected"));
        }
        SeedStep::FastForwarded { to, .. } => say(
            session,
            format!("-> floe: fast forward (onto {to}) and commit session"),
        ),
        SeedStep::Committed { commit } => {
            say(
                "floe",
                format!("-> {session}: success: new commit {commit}"),
            );
            println!("  {:<6} main: {commit}", "note");
        }
    }
}

async fn checkout<C: Coordinator + 'static>(
    coord: &Arc<C>,
    store: &Store,
    repo: &RepoName,
    who: &str,
) -> Result<Session<C>> {
    say(who, "-> floe: check out main");
    let main = name(BranchName::new, "main")?;
    let s = Session::checkout(coord.clone(), store.clone(), repo.clone(), main).await?;
    say("floe", format!("-> {who}: commit {}", s.base().id));
    Ok(s)
}

async fn write<C: Coordinator + 'static>(
    s: &mut Session<C>,
    who: &str,
    path: &ArrayPath,
    region: &str,
    start: i32,
) -> Result<Region> {
    let region: Region = region.parse()?;
    say(who, format!("-> floe: write array region {region}"));
    s.write_region(path, &region, &values(&region, start)?)
        .await?;
    Ok(region)
}

fn seed_array() -> Result<ArrayMeta> {
    Ok(ArrayMeta::new(vec![30], vec![10], DType::I32, -1.0)?)
}

/// Example 1: `0:20` and `20:30` — out of date, fast-forward, C3.
async fn example_one<C: Coordinator + 'static>(coord: &Arc<C>, store: &Store) -> Result<()> {
    println!("\n== Example 1: no conflicts (chunk size 10; S1 writes 0:20, S2 writes 20:30)");
    let repo = name(RepoName::new, "example-1")?;
    let path = name(ArrayPath::new, "/array")?;
    let c1 = setup(coord, store, &repo, &path, seed_array()?).await?;
    println!("  {:<6} main: {c1}", "note");
    let mut s1 = checkout(coord, store, &repo, "S1").await?;
    let mut s2 = checkout(coord, store, &repo, "S2").await?;
    write(&mut s1, "S1", &path, "0:20", 100).await?;
    write(&mut s2, "S2", &path, "20:30", 200).await?;
    let c2 = s1
        .commit_with_fast_forward_observed("S1 writes 0:20", 1, narrator("S1"))
        .await?;
    let c3 = s2
        .commit_with_fast_forward_observed("S2 writes 20:30", 8, narrator("S2"))
        .await?;
    ensure!(
        c2 == CommitId(2) && c3 == CommitId(3),
        "expected C2 then C3, got {c2} then {c3}"
    );
    let all = s2
        .read_region(&path, &"0:30".parse()?)
        .await?
        .to_vec::<i32>()?;
    let want: Vec<i32> = (100..120).chain(200..210).collect();
    ensure!(all == want, "C3 holds {all:?}, expected {want:?}");
    println!("  check  C3 holds S1's 0:20 and S2's 20:30");
    Ok(())
}

/// Example 2: `0:20` vs `15:30` — conflict on chunk 10:20, manual retry, C3.
async fn example_two<C: Coordinator + 'static>(coord: &Arc<C>, store: &Store) -> Result<()> {
    println!("\n== Example 2: chunk conflicts (S1 writes 0:20, S2 writes 15:30)");
    let repo = name(RepoName::new, "example-2")?;
    let path = name(ArrayPath::new, "/array")?;
    let meta = seed_array()?;
    let c1 = setup(coord, store, &repo, &path, meta.clone()).await?;
    println!("  {:<6} main: {c1}", "note");
    let mut s1 = checkout(coord, store, &repo, "S1").await?;
    let mut s2 = checkout(coord, store, &repo, "S2").await?;
    write(&mut s1, "S1", &path, "0:20", 100).await?;
    write(&mut s2, "S2", &path, "15:30", 500).await?;
    s1.commit_with_fast_forward_observed("S1 writes 0:20", 1, narrator("S1"))
        .await?;
    let err = s2
        .commit_with_fast_forward_observed("S2 writes 15:30", 8, narrator("S2"))
        .await;
    let conflicts = match err {
        Err(FloeError::Conflict { conflicts, .. }) => conflicts,
        other => bail!("expected a conflict, got {other:?}"),
    };
    say(
        "S2",
        format!(
            "raises: {}",
            FloeError::Conflict {
                tip: CommitId(2),
                conflicts: conflicts.clone()
            }
        ),
    );
    let chunk_10_20 = conflicts.iter().any(|c| {
        matches!(&c.kind, floe_protocol::ConflictKind::ChunkDoubleUpdate { chunks, .. } if chunks == &vec![vec![1u64]])
    });
    ensure!(
        chunk_10_20,
        "the conflict must name chunk [1] (10:20): {conflicts:?}"
    );
    say(
        "note",
        "the conflicting chunk is [1], which spans 10:20; S2 retries by hand",
    );
    let mut s2 = checkout(coord, store, &repo, "S2").await?;
    ensure!(s2.base().id == CommitId(2), "the retry must see C2");
    say("note", "now S2 can see S1's changes");
    let seen = s2
        .read_region(&path, &"0:20".parse()?)
        .await?
        .to_vec::<i32>()?;
    ensure!(
        seen == (100..120).collect::<Vec<_>>(),
        "S2 must see S1's 0:20"
    );
    say("S2", "-> floe: rewrite array region 15:30");
    let region: Region = "15:30".parse()?;
    s2.write_region(&path, &region, &values(&region, 500)?)
        .await?;
    let c3 = s2
        .commit_with_fast_forward_observed("S2 rewrites 15:30", 1, narrator("S2"))
        .await?;
    ensure!(c3 == CommitId(3), "expected C3, got {c3}");
    let all = s2
        .read_region(&path, &"0:30".parse()?)
        .await?
        .to_vec::<i32>()?;
    let want: Vec<i32> = (100..115).chain(500..515).collect();
    ensure!(all == want, "C3 holds {all:?}, expected {want:?}");
    println!("  check  C3 holds S1's 0:15 and S2's 15:30");
    Ok(())
}

/// The cooperative array and its plan, created in commit C1 of its repo.
async fn coop_setup<C: Coordinator + 'static>(
    coord: &Arc<C>,
    store: &Store,
) -> Result<(
    RepoName,
    ArrayPath,
    ArrayMeta,
    Vec<floe_protocol::PlannedTask>,
)> {
    let repo = name(RepoName::new, "cooperative")?;
    let path = name(ArrayPath::new, "/temperature")?;
    let meta = ArrayMeta::new(vec![400, 600], vec![40, 60], DType::F32, 0.0)?
        .with_codec(Codec::Zstd { level: 3 });
    let c1 = setup(coord, store, &repo, &path, meta.clone()).await?;
    let plan = plan_grid(&path, &meta, &Tiling::ChunksPerTask(vec![1, 2]))?;
    println!(
        "  check out main at {c1}; plan: {} chunk-aligned tasks over a {}x{} array in {}x{} chunks",
        plan.len(),
        meta.shape[0],
        meta.shape[1],
        meta.chunk_shape[0],
        meta.chunk_shape[1]
    );
    Ok((repo, path, meta, plan))
}

/// Reads the whole array back at `commit` and compares it with `want`.
async fn check_read_back<C: Coordinator + 'static>(
    coord: &Arc<C>,
    store: &Store,
    (repo, path, meta): (RepoName, &ArrayPath, &ArrayMeta),
    commit: CommitId,
    want: &ArrayData,
) -> Result<()> {
    let all = Region::full(meta);
    let back = floe_worker::read_at(coord.clone(), store.clone(), repo, commit, path, &all).await?;
    ensure!(
        &back == want,
        "read-back of {commit} differs from the source"
    );
    println!(
        "  check  read-back of {commit} equals the source ({} elements)",
        want.len()
    );
    Ok(())
}

/// The cooperative scenario on `floe worker` processes: the source goes to
/// a `.npy` file the workers read, the job is submitted as `floe job
/// submit` does, and the workers claim its tasks.
async fn on_worker_processes(
    coord: &Arc<NetCoordinator>,
    store: &Store,
    dir: &std::path::Path,
) -> Result<()> {
    println!("\n== Cooperative mode: worker processes, one session, one commit");
    let (repo, path, meta, plan) = coop_setup(coord, store).await?;
    let want = Synthetic { seed: 7 }.read(&path, &meta, &Region::full(&meta))?;
    let source = dir.join("temperature.npy");
    floe_worker::write_npy(&source, &want)?;
    println!(
        "  $ floe job submit cooperative /temperature --from {}",
        source.display()
    );
    let spec = JobSpec {
        repo: repo.clone(),
        branch: name(BranchName::new, "main")?,
        plan: plan.clone(),
        lease_ms: 10_000,
        message: "cooperative write of /temperature".into(),
        mode: CommitMode::Rebase {
            solver: Solver::Fail,
        },
        source: Some(source.to_string_lossy().into_owned()),
        create: Default::default(),
    };
    let job = Job::new(ClientId(rand::random()), coord.nodes(), spec).with_poll_ms(20);
    let job = floe_worker::drive(job, coord.clone(), None).await?;
    let commit = match job.status() {
        JobStatus::Committed(commit) => *commit,
        JobStatus::Failed(e) => bail!("the job failed: {e}"),
        JobStatus::Running => bail!("the job did not finish"),
    };
    let mut per_worker = std::collections::BTreeMap::new();
    for t in job.report().last_status.iter().flat_map(|s| &s.tasks) {
        if let floe_protocol::TaskState::Done { worker } = t.state {
            *per_worker.entry(worker).or_insert(0) += 1;
        }
    }
    for (n, (_, tasks)) in per_worker.iter().enumerate() {
        println!("  worker {} (a process) wrote {tasks} tasks", n + 1);
    }
    let chunks: usize = plan.iter().map(|t| t.region.chunks(&meta).len()).sum();
    println!(
        "  commit session -> success: new commit {commit} ({} tasks, {chunks} chunks, one commit)",
        plan.len()
    );
    ensure!(
        commit == CommitId(2),
        "the session must land as the single commit C2"
    );
    check_read_back(coord, store, (repo, &path, &meta), commit, &want).await
}

/// The seed's cooperative DAG, larger: 4 workers write a 2-D array in
/// chunk-aligned tasks inside one session; one commit.
async fn cooperative<C: Coordinator + 'static>(
    coord: &Arc<C>,
    store: &Store,
    workers: usize,
) -> Result<()> {
    println!("\n== Cooperative mode: {workers} workers, one session, one commit");
    let (repo, path, meta, plan) = coop_setup(coord, store).await?;
    let source = Arc::new(Synthetic { seed: 7 });
    let opts = CoopOptions {
        workers,
        message: "cooperative write of /temperature".into(),
        seed: Some(7),
        ..CoopOptions::default()
    };
    let main = name(BranchName::new, "main")?;
    let report = run_plan(
        coord.clone(),
        store.clone(),
        repo.clone(),
        main,
        plan.clone(),
        source.clone(),
        opts,
    )
    .await?;
    for (worker, tasks) in &report.per_worker {
        println!("  {worker:<6} wrote {tasks} tasks");
    }
    println!(
        "  commit session -> success: new commit {} ({} tasks, {} chunks, one commit)",
        report.commit, report.tasks, report.chunks
    );
    ensure!(
        report.commit == CommitId(2),
        "the session must land as the single commit C2"
    );
    ensure!(report.tasks == plan.len(), "every task must be done");
    let want = source.read(&path, &meta, &Region::full(&meta))?;
    check_read_back(coord, store, (repo, &path, &meta), report.commit, &want).await
}
