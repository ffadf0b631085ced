//! `floe bench coop`: a cooperative job on a real local deployment (three
//! coordinators with fsync, W worker processes, a local-disk store),
//! next to a raw write of the same bytes in the same run: W threads
//! copying the source into chunk-sized files on the same disk, with the
//! same sync policy as the store (object_store's local store does not
//! fsync objects). Figures on a shared machine are noisy; read the ratio.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use rand::Rng;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, ClientId, Command, CommitMode, Coordinator, RepoName, Solver,
};
use floe_worker::coop::{plan_grid, Tiling};
use floe_worker::machine::{Job, JobSpec, JobStatus};
use floe_worker::{write_npy, ArrayData, Client, Driven, NpyFile, Session, Store};

use crate::cluster::Deployment;

/// `floe bench coop`.
#[derive(clap::Args)]
pub struct CoopArgs {
    /// Worker processes (one slot each).
    #[arg(long, default_value_t = 4)]
    workers: u64,
    /// Bytes written, e.g. 512MiB, 64MiB, 1GiB.
    #[arg(long, default_value = "512MiB", value_parser = bytes)]
    size: u64,
    /// Bytes per chunk (one task per chunk).
    #[arg(long, default_value = "4MiB", value_parser = bytes)]
    chunk: u64,
    /// Element type.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Where the deployment, the source and the store go (default: a
    /// temporary directory, removed afterwards). Use a directory on the
    /// disk you want measured.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rounds of (raw write, job), alternating; the medians are compared.
    #[arg(long, default_value_t = 3)]
    repeat: u32,
}

/// `512MiB`, `4MiB`, `1GiB`, `100KiB` or a plain byte count.
fn bytes(text: &str) -> Result<u64, String> {
    let units = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ];
    for (suffix, scale) in units {
        if let Some(n) = text.strip_suffix(suffix) {
            return n
                .trim()
                .parse::<u64>()
                .map(|n| n * scale)
                .map_err(|e| format!("{text:?}: {e}"));
        }
    }
    text.parse().map_err(|e| format!("{text:?}: {e}"))
}

/// Runs the comparison and prints both rates and their ratio.
pub fn run(args: CoopArgs) -> Result<()> {
    let dtype = crate::remote::dtype(&args.dtype)?;
    let item = dtype.size() as u64;
    ensure!(
        args.chunk >= item && args.size >= args.chunk,
        "--size must be at least --chunk, and --chunk at least one element"
    );
    ensure!(args.workers > 0, "--workers must be at least 1");
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let elements = args.size / item;
    let per_chunk = args.chunk / item;
    let meta = ArrayMeta::new(vec![elements], vec![per_chunk], dtype, 0.0)?;
    println!(
        "cooperative write: {} of {} in {} chunks of {}, {} worker processes, 3 coordinators (fsync), store on {}",
        mib(args.size),
        dtype.name(),
        elements.div_ceil(per_chunk),
        mib(args.chunk),
        args.workers,
        dir.display()
    );
    let source = dir.join("source.npy");
    write_source(&source, &meta)?;
    // Idle workers look for work every 20 ms, the job polls every 20 ms:
    // the figures measure the writes, not the polling intervals.
    let flags = ["--idle-ms", "20"];
    let deployment = Deployment::start_with(&dir.join("deployment"), 3, args.workers, 20, &flags)?;
    let bench = Bench::connect(&deployment)?;
    let rate = |secs: f64| args.size as f64 / (1 << 20) as f64 / secs;
    let (mut raws, mut jobs) = (Vec::new(), Vec::new());
    for round in 0..args.repeat.max(1) {
        // Dirty pages of the previous round are flushed first, for both.
        flush();
        let raw = time_raw(
            &source,
            &dir.join(format!("raw{round}")),
            args.chunk,
            args.workers,
        )?;
        flush();
        let job = bench.time_job(round, &source, &meta)?;
        println!(
            "  round {round}: raw write {raw:>6.2} s {:>7.1} MiB/s   floe job {job:>6.2} s {:>7.1} MiB/s",
            rate(raw),
            rate(job)
        );
        raws.push(raw);
        jobs.push(job);
    }
    drop(deployment);
    let (raw, job) = (median(&mut raws), median(&mut jobs));
    println!(
        "  median: raw write {:.1} MiB/s, floe job (submit to commit) {:.1} MiB/s",
        rate(raw),
        rate(job)
    );
    println!("  ratio (floe / raw): {:.0}%", 100.0 * raw / job);
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Writes dirty pages back (sync(2)), so that one round's writeback does
/// not slow the next.
fn flush() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn mib(bytes: u64) -> String {
    if bytes < 1 << 20 {
        return format!("{} KiB", bytes >> 10);
    }
    format!("{:.0} MiB", bytes as f64 / (1 << 20) as f64)
}

/// A `.npy` of the array's shape, element i holding i (modulo the type).
fn write_source(path: &Path, meta: &ArrayMeta) -> Result<()> {
    let item = meta.dtype.size();
    let bytes: Vec<u8> = (0..meta.shape[0] as usize * item)
        .map(|i| (i / item) as u8 ^ (i % item) as u8)
        .collect();
    let data = ArrayData::from_bytes(meta.dtype, &meta.shape, bytes)?;
    write_npy(path, &data)?;
    Ok(())
}

/// A client of the deployment, with a runtime and the repo.
struct Bench {
    runtime: tokio::runtime::Runtime,
    coord: Arc<floe_server::NetCoordinator>,
    store: Store,
    repo: RepoName,
}

impl Bench {
    fn connect(d: &Deployment) -> Result<Bench> {
        let file = floe_server::config::ClusterFile::load(&d.cluster_file)?;
        let token = floe_server::config::read_token(&file.token_file)?;
        let coord = Arc::new(floe_server::NetCoordinator::new(file.endpoints(), token));
        let store_dir = d
            .cluster_file
            .parent()
            .unwrap_or(Path::new("."))
            .join("store");
        let bench = Bench {
            runtime: tokio::runtime::Runtime::new()?,
            coord,
            store: Store::local(store_dir)?,
            repo: RepoName::new("bench")?,
        };
        let create = Command::CreateRepo {
            repo: bench.repo.clone(),
        };
        bench
            .runtime
            .block_on(Client::new(bench.coord.clone()).command(create))?;
        Ok(bench)
    }

    /// Creates array `/a<round>` and times a job writing it, from opening
    /// its session to its commit.
    fn time_job(&self, round: u32, source: &Path, meta: &ArrayMeta) -> Result<f64> {
        let path = ArrayPath::new(format!("/a{round}"))?;
        let main = BranchName::new("main")?;
        let coord = self.coord.clone();
        self.runtime.block_on(async {
            let store = self.store.clone();
            let mut s =
                Session::checkout(coord.clone(), store, self.repo.clone(), main.clone()).await?;
            s.create_array(&path, meta.clone())?;
            s.commit("create", CommitMode::Strict).await?;
            let plan = plan_grid(&path, meta, &Tiling::ChunksPerTask(vec![1]))?;
            let spec = JobSpec {
                repo: self.repo.clone(),
                branch: main,
                plan,
                lease_ms: 30_000,
                message: "bench coop".into(),
                mode: CommitMode::Rebase {
                    solver: Solver::Fail,
                },
                source: Some(source.to_string_lossy().into_owned()),
                create: Default::default(),
            };
            let job =
                Job::new(ClientId(rand::thread_rng().gen()), coord.nodes(), spec).with_poll_ms(20);
            let began = Instant::now();
            let mut driven = Driven::new(job, coord.clone(), None);
            driven.run().await?;
            let secs = began.elapsed().as_secs_f64();
            match driven.into_machine().status() {
                JobStatus::Committed(_) => Ok(secs),
                JobStatus::Failed(e) => bail!("the job failed: {e}"),
                JobStatus::Running => bail!("the job did not finish"),
            }
        })
    }
}

/// `workers` threads copy the source's data into chunk-sized files under
/// `out` (each thread every `workers`-th chunk), as the workers do minus
/// the coordination; returns the seconds.
fn time_raw(source: &Path, out: &Path, chunk: u64, workers: u64) -> Result<f64> {
    std::fs::create_dir_all(out)?;
    let npy = NpyFile::open(source)?;
    let offset = npy.header().data_offset;
    let total = std::fs::metadata(source)?.len() - offset;
    let chunks = total.div_ceil(chunk);
    let began = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || -> Result<()> {
                    let mut file = std::fs::File::open(source)?;
                    let mut buf = vec![0u8; chunk as usize];
                    for c in (w..chunks).step_by(workers as usize) {
                        let len = chunk.min(total - c * chunk) as usize;
                        file.seek(SeekFrom::Start(offset + c * chunk))?;
                        file.read_exact(&mut buf[..len])?;
                        std::fs::write(out.join(format!("{c}")), &buf[..len])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("a raw writer panicked"))??;
        }
        Ok(())
    })
    .context("raw write")?;
    Ok(began.elapsed().as_secs_f64())
}
