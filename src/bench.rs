//! `floe bench`: side-by-side measurements on the embedded cluster, and the
//! commit rule's apply time on one in-process state machine. Figures on a
//! shared machine are noisy; read the ratios.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use anyhow::{bail, ensure, Context, Result};
use floe_coordinator::{Config, EmbeddedCluster, State, StateMachine};
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitId, CommitMode, CommitRequest,
    Coordinator, DType, Envelope, Footprint, MetaChange, ObjectId, Outcome, Region, Reply,
    RepoName, Request, Solver,
};
use floe_worker::{ArrayData, Session, Store};

/// Above this many writers the seed's client loop (O(N^2) requests by
/// nature) is skipped unless asked for with `--only seed-loop`.
const SEED_LOOP_MAX_WRITERS: u64 = 1000;

/// Arguments of `floe bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Concurrent non-cooperative writers, each writing its own chunk. A
    /// comma-separated list (`256,1000,4096,16384`) runs each count on a
    /// fresh cluster and prints them side by side.
    #[arg(long, value_delimiter = ',', default_values_t = [64])]
    writers: Vec<u64>,
    /// Run only these parts (comma-separated): `rebase` (server-side
    /// rebase), `seed-loop` (the seed's client loop), `apply` (the commit
    /// rule's apply time). By default all run, and the seed loop is skipped
    /// above 1000 writers.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// At most this many commits in flight at once (default: every writer
    /// at once). All writers still share one base, so the k-th commit is
    /// rebased over k-1 others either way; a cap only keeps the clients'
    /// 300 ms response timeout from firing while thousands of requests
    /// queue at the leader, which would measure their resends.
    #[arg(long)]
    in_flight: Option<usize>,
    /// Commits per writer: after its first commit each writer writes its
    /// chunk again and commits on its new base, `rounds` times in all, so
    /// that a run lasts long enough to measure and its clients' sessions
    /// are opened once, as a long-lived writer's are.
    #[arg(long, default_value_t = 1)]
    rounds: u64,
    /// Run against this running cluster (a `floe up` cluster file) instead
    /// of an embedded one; each run uses a fresh repo.
    #[arg(long)]
    cluster: Option<std::path::PathBuf>,
    /// Footprint sizes, in chunks, for the apply-time measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 1_000, 100_000])]
    footprints: Vec<u64>,
    #[command(subcommand)]
    other: Option<OtherBench>,
}

/// Benchmarks of their own.
#[derive(clap::Subcommand)]
enum OtherBench {
    /// A cooperative job on a local deployment next to a raw write of the
    /// same bytes.
    Coop(crate::bench_coop::CoopArgs),
}

/// One part of the benchmark.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Server-side rebase: one round trip per commit.
    Rebase,
    /// The seed's loop: commit, out of date, ask, fast-forward, commit.
    SeedLoop,
    /// The state machine's apply time per commit, by footprint size.
    Apply,
}

/// Counts the requests a client sends.
struct Counting<C> {
    inner: Arc<C>,
    requests: AtomicU64,
    /// Commit commands sent (resends included): the attempts.
    commit_sends: AtomicU64,
}

impl<C> Counting<C> {
    fn new(inner: Arc<C>) -> Self {
        Counting {
            inner,
            requests: AtomicU64::new(0),
            commit_sends: AtomicU64::new(0),
        }
    }
}

impl<C: Coordinator> Coordinator for Counting<C> {
    fn nodes(&self) -> Vec<u64> {
        self.inner.nodes()
    }

    async fn send(&self, to: u64, envelope: Envelope) -> Outcome {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Request::Command(Command::Commit(_)) = &envelope.request {
            self.commit_sends.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.send(to, envelope).await
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Strategy {
    SeedLoop,
    Rebase,
}

struct Figures {
    secs: f64,
    requests: u64,
    /// Commit commands sent.
    attempts: u64,
    commits: u64,
    /// Each commit's latency, seconds, sorted.
    latencies: Vec<f64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.commits as f64 / self.secs
    }

    fn requests_per_commit(&self) -> f64 {
        self.requests as f64 / self.commits as f64
    }

    fn attempts_per_commit(&self) -> f64 {
        self.attempts as f64 / self.commits as f64
    }

    /// The latency at quantile `q`, in milliseconds.
    fn ms(&self, q: f64) -> f64 {
        let i = ((self.latencies.len() as f64 - 1.0) * q).round() as usize;
        self.latencies.get(i).copied().unwrap_or(0.0) * 1000.0
    }
}

/// Runs the parts asked for. Every error ends the run with one line (the
/// caller prints it) and a non-zero exit.
pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(OtherBench::Coop(coop)) = args.other {
        return crate::bench_coop::run(coop);
    }
    ensure!(
        !args.writers.is_empty() && !args.writers.contains(&0),
        "--writers needs positive counts"
    );
    let wants = |part: Part| args.only.is_empty() || args.only.contains(&part);
    if wants(Part::Rebase) || wants(Part::SeedLoop) {
        fast_forward(&args, wants(Part::SeedLoop), wants(Part::Rebase))?;
    }
    if wants(Part::Apply) {
        apply_times(&args.footprints)?;
    }
    Ok(())
}

/// The fast-forward benchmark: for each writer count, `writers` sessions
/// check out the same base, write disjoint chunks and commit at once, with
/// the seed's client-driven loop and with the one-round-trip server-side
/// rebase.
fn fast_forward(args: &BenchArgs, seed_loop: bool, rebase: bool) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let remote = match &args.cluster {
        Some(path) => Some(connect(path)?),
        None => None,
    };
    let target = match &args.cluster {
        Some(path) => format!("the cluster of {}", path.display()),
        None => "3-node embedded cluster".into(),
    };
    println!("fast-forward: concurrent writers on disjoint chunks, one base, {target}");
    println!(
        "  {:>7}  {:<19} {:>7} {:>9} {:>11} {:>16} {:>16} {:>8} {:>8}",
        "writers",
        "strategy",
        "commits",
        "secs",
        "commits/s",
        "requests/commit",
        "attempts/commit",
        "p50 ms",
        "p99 ms"
    );
    if let Some(cap) = args.in_flight {
        ensure!(cap > 0, "--in-flight needs a positive count");
        println!("  (at most {cap} commits in flight at once)");
    }
    let explicit_seed_loop = args.only.contains(&Part::SeedLoop);
    let run_one = |writers, strategy| {
        rt.block_on(async {
            match &remote {
                Some(net) => {
                    let coord = Arc::new(Counting::new(net.clone()));
                    contend(coord, writers, strategy, args).await
                }
                None => {
                    let cluster = EmbeddedCluster::start(3, Config::default())?;
                    let coord = Arc::new(Counting::new(Arc::new(cluster)));
                    contend(coord, writers, strategy, args).await
                }
            }
        })
    };
    for &writers in &args.writers {
        let mut row = Vec::new();
        if seed_loop && (explicit_seed_loop || writers <= SEED_LOOP_MAX_WRITERS) {
            row.push(("seed loop", run_one(writers, Strategy::SeedLoop)?));
        } else if seed_loop {
            println!("  {writers:>7}  seed loop           skipped: O(N^2) requests above {SEED_LOOP_MAX_WRITERS} writers (--only seed-loop forces it)");
        }
        if rebase {
            row.push(("server-side rebase", run_one(writers, Strategy::Rebase)?));
        }
        for (name, f) in &row {
            println!(
                "  {writers:>7}  {name:<19} {:>7} {:>9.3} {:>11.1} {:>16.2} {:>16.2} {:>8.1} {:>8.1}",
                f.commits,
                f.secs,
                f.rate(),
                f.requests_per_commit(),
                f.attempts_per_commit(),
                f.ms(0.5),
                f.ms(0.99)
            );
        }
        if let [(_, seed), (_, rebase)] = &row[..] {
            println!(
                "  {writers:>7}  ratio (rebase / seed loop): {:.2}x throughput, {:.2}x fewer requests",
                rebase.rate() / seed.rate(),
                seed.requests_per_commit() / rebase.requests_per_commit()
            );
        }
    }
    Ok(())
}

/// A client of the running cluster named by a cluster file.
fn connect(path: &std::path::Path) -> Result<Arc<floe_server::NetCoordinator>> {
    let file = floe_server::config::ClusterFile::load(path)?;
    let token = floe_server::config::read_token(&file.token_file)?;
    Ok(Arc::new(floe_server::NetCoordinator::new(
        file.endpoints(),
        token,
    )))
}

async fn contend<C: Coordinator + 'static>(
    coord: Arc<Counting<C>>,
    writers: u64,
    strategy: Strategy,
    args: &BenchArgs,
) -> Result<Figures> {
    let sessions = prepare(&coord, writers).await?;
    let rounds = args.rounds.max(1);
    let permits = args.in_flight.unwrap_or(sessions.len()).max(1);
    let gate = Arc::new(Semaphore::new(permits));
    let before = coord.requests.load(Ordering::Relaxed);
    let attempts_before = coord.commit_sends.load(Ordering::Relaxed);
    let began = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(w, mut s)| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await;
                let mut latencies = Vec::with_capacity(rounds as usize);
                for round in 0..rounds {
                    if round > 0 {
                        rewrite(&mut s, w as u64, round).await?;
                    }
                    let started = Instant::now();
                    commit_once(&mut s, strategy).await?;
                    latencies.push(started.elapsed().as_secs_f64());
                }
                Ok::<_, floe_protocol::FloeError>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for (w, t) in tasks.into_iter().enumerate() {
        let mine = t
            .await
            .with_context(|| format!("writer {w} of {writers} did not finish"))?
            .with_context(|| format!("writer {w} of {writers} could not commit"))?;
        latencies.extend(mine);
    }
    let secs = began.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(Figures {
        secs,
        requests: coord.requests.load(Ordering::Relaxed) - before,
        attempts: coord.commit_sends.load(Ordering::Relaxed) - attempts_before,
        commits: latencies.len() as u64,
        latencies,
    })
}

/// One commit of a writer's session, by `strategy`.
async fn commit_once<C: Coordinator + 'static>(
    s: &mut Session<C>,
    strategy: Strategy,
) -> Result<(), floe_protocol::FloeError> {
    match strategy {
        Strategy::SeedLoop => s.commit_with_fast_forward("w", 100_000).await.map(|_| ()),
        Strategy::Rebase => {
            let mode = CommitMode::Rebase {
                solver: Solver::Fail,
            };
            s.commit("w", mode).await.map(|_| ())
        }
    }
}

/// Writer `w`'s chunk again, with the round number in it.
async fn rewrite<C: Coordinator + 'static>(
    s: &mut Session<C>,
    w: u64,
    round: u64,
) -> Result<(), floe_protocol::FloeError> {
    let region = Region::new(&[(w * 10, w * 10 + 10)]);
    let data = ArrayData::from_slice(&[10], &[(w * 1000 + round) as i64; 10])?;
    s.write_region(&bench_path(), &region, &data).await
}

fn bench_path() -> ArrayPath {
    ArrayPath::new("/a").unwrap_or_else(|_| unreachable!("a valid path"))
}

/// Creates the repo and the array, then one session per writer on the
/// same base, each with its own chunk written (not yet committed).
async fn prepare<C: Coordinator + 'static>(
    coord: &Arc<Counting<C>>,
    writers: u64,
) -> Result<Vec<Session<Counting<C>>>> {
    let store = Store::memory();
    // A fresh repo per run, so that runs against one cluster do not meet.
    let repo = RepoName::new(format!("bench-{:016x}", rand::random::<u64>()))?;
    let path = ArrayPath::new("/a")?;
    let main = BranchName::new("main")?;
    floe_worker::client::call(
        coord,
        Request::Command(Command::CreateRepo { repo: repo.clone() }),
    )
    .await?;
    let mut setup =
        Session::checkout(coord.clone(), store.clone(), repo.clone(), main.clone()).await?;
    setup.create_array(
        &path,
        ArrayMeta::new(vec![writers * 10], vec![10], DType::I64, 0.0)?,
    )?;
    setup.commit("create", CommitMode::Strict).await?;
    let mut sessions = Vec::new();
    for w in 0..writers {
        let mut s =
            Session::checkout(coord.clone(), store.clone(), repo.clone(), main.clone()).await?;
        let region = Region::new(&[(w * 10, w * 10 + 10)]);
        s.write_region(
            &path,
            &region,
            &ArrayData::from_slice(&[10], &[w as i64; 10])?,
        )
        .await?;
        sessions.push(s);
    }
    Ok(sessions)
}

/// The commit rule's apply time per commit, by footprint size: one state
/// machine in process (no Raft, no network), `commits` commits of
/// `footprint` fresh chunks each, all made against the same old base, so
/// the k-th is rebased over k-1 commits.
fn apply_times(footprints: &[u64]) -> Result<()> {
    println!("commit rule: apply time per rebased commit, one state machine in process");
    println!(
        "  {:>9}  {:>7}  {:>14}  {:>11}",
        "footprint", "commits", "rebased over", "µs/commit"
    );
    for &chunks in footprints {
        ensure!(chunks > 0, "--footprints needs positive sizes");
        // About a million chunks written per size, at most 10,000 commits.
        let commits = (1_000_000 / chunks).clamp(4, 10_000);
        let per_commit = time_applies(chunks, commits)?;
        println!(
            "  {chunks:>9}  {commits:>7}  {:>14}  {:>11.1}",
            format!("0..{}", commits - 1),
            per_commit.as_secs_f64() * 1e6
        );
    }
    Ok(())
}

/// Mean apply time of `commits` rebased commits of `chunks` chunks each.
fn time_applies(chunks: u64, commits: u64) -> Result<Duration> {
    let mut bench = ApplyBench::new(chunks * (commits + 1))?;
    let mut total = Duration::ZERO;
    for k in 0..commits {
        let envelope = bench.commit_envelope(k * chunks..(k + 1) * chunks);
        let began = Instant::now();
        let outcome = bench.apply(&envelope);
        total += began.elapsed();
        match outcome {
            Ok(Reply::Committed { .. }) => {}
            other => bail!("commit {k} of {commits} did not land: {other:?}"),
        }
    }
    Ok(total / u32::try_from(commits).unwrap_or(u32::MAX))
}

/// One state machine with a repo and a one-dimensional array of
/// one-element chunks, fed envelopes directly.
struct ApplyBench {
    state: State,
    repo: RepoName,
    branch: BranchName,
    path: ArrayPath,
    meta: ArrayMeta,
    seq: u64,
}

impl ApplyBench {
    fn new(chunks: u64) -> Result<Self> {
        let mut bench = ApplyBench {
            state: State::new(Config::default()),
            repo: RepoName::new("bench")?,
            branch: BranchName::new("main")?,
            path: ArrayPath::new("/a")?,
            meta: ArrayMeta::new(vec![chunks], vec![1], DType::I64, 0.0)?,
            seq: 0,
        };
        let create = Command::CreateRepo {
            repo: bench.repo.clone(),
        };
        let envelope = bench.envelope(create);
        bench.apply(&envelope)?;
        let mut footprint = Footprint::new();
        let meta = bench.meta.clone();
        footprint.set_meta(&bench.path, &meta, MetaChange::Create(meta.clone()));
        let envelope = bench.envelope(bench.request(footprint, CommitId(0)));
        bench.apply(&envelope)?;
        Ok(bench)
    }

    fn envelope(&mut self, command: Command) -> Envelope {
        self.seq += 1;
        Envelope {
            client: ClientId(1),
            seq: self.seq,
            request: Request::Command(command),
        }
    }

    fn request(&self, footprint: Footprint, base: CommitId) -> Command {
        Command::Commit(CommitRequest {
            repo: self.repo.clone(),
            branch: self.branch.clone(),
            base,
            footprint,
            deltas: vec![ObjectId(u128::from(self.seq))],
            message: String::new(),
            author: String::new(),
            mode: CommitMode::Rebase {
                solver: Solver::Fail,
            },
        })
    }

    /// A commit of chunks `range`, made against the array's creation (C1).
    fn commit_envelope(&mut self, range: std::ops::Range<u64>) -> Envelope {
        let mut footprint = Footprint::new();
        let grid = vec![self.meta.chunk_count()];
        footprint.arrays.insert(
            self.path.clone(),
            floe_protocol::ArrayChange {
                grid,
                chunks: range.collect(),
                meta: None,
            },
        );
        let command = self.request(footprint, CommitId(1));
        self.envelope(command)
    }

    fn apply(&mut self, envelope: &Envelope) -> Outcome {
        self.state.apply(self.seq, envelope)
    }
}
