//! `floe bench`: side-by-side measurements on the embedded cluster. Figures
//! on a shared machine are noisy; read the ratios.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use floe_coordinator::{Config, EmbeddedCluster};
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitMode, Coordinator, DType, Envelope, Outcome,
    Region, RepoName, Request, Solver,
};
use floe_worker::{ArrayData, Session, Store};

/// Arguments of `floe bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Concurrent non-cooperative writers, each writing its own chunk.
    #[arg(long, default_value_t = 64)]
    writers: u64,
}

/// Counts the requests a client sends.
struct Counting<C> {
    inner: C,
    requests: AtomicU64,
}

impl<C: Coordinator> Coordinator for Counting<C> {
    fn nodes(&self) -> Vec<u64> {
        self.inner.nodes()
    }

    async fn send(&self, to: u64, envelope: Envelope) -> Outcome {
        self.requests.fetch_add(1, Ordering::Relaxed);
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
    commits: u64,
}

/// Runs the fast-forward benchmark: `writers` sessions check out the same
/// base, write disjoint chunks and commit at once, with the seed's
/// client-driven loop and with the one-round-trip server-side rebase.
pub fn run(args: BenchArgs) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "fast-forward: {} concurrent writers on disjoint chunks, one base, 3-node embedded cluster",
        args.writers
    );
    let seed = rt.block_on(contend(args.writers, Strategy::SeedLoop))?;
    let rebase = rt.block_on(contend(args.writers, Strategy::Rebase))?;
    for (name, f) in [("seed loop", &seed), ("server-side rebase", &rebase)] {
        println!(
            "  {name:<19} {:>4} commits in {:>7.3}s  {:>8.1} commits/s  {:>6.2} requests/commit",
            f.commits,
            f.secs,
            f.commits as f64 / f.secs,
            f.requests as f64 / f.commits as f64
        );
    }
    println!(
        "  ratio (rebase / seed loop): {:.2}x throughput, {:.2}x fewer requests",
        (rebase.commits as f64 / rebase.secs) / (seed.commits as f64 / seed.secs),
        (seed.requests as f64 / seed.commits as f64)
            / (rebase.requests as f64 / rebase.commits as f64)
    );
    Ok(())
}

async fn contend(writers: u64, strategy: Strategy) -> Result<Figures> {
    let cluster = EmbeddedCluster::start(3, Config::default())?;
    let coord = Arc::new(Counting {
        inner: cluster,
        requests: AtomicU64::new(0),
    });
    let store = Store::memory();
    let repo = RepoName::new("bench")?;
    let path = ArrayPath::new("/a")?;
    let main = BranchName::new("main")?;
    floe_worker::client::call(
        &coord,
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
    let before = coord.requests.load(Ordering::Relaxed);
    let began = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                match strategy {
                    Strategy::SeedLoop => {
                        s.commit_with_fast_forward("w", 100_000).await.map(|_| ())
                    }
                    Strategy::Rebase => {
                        let mode = CommitMode::Rebase {
                            solver: Solver::Fail,
                        };
                        s.commit("w", mode).await.map(|_| ())
                    }
                }
            })
        })
        .collect();
    let mut commits = 0;
    for t in tasks {
        t.await??;
        commits += 1;
    }
    let secs = began.elapsed().as_secs_f64();
    ensure!(commits == writers, "every writer must land");
    Ok(Figures {
        secs,
        requests: coord.requests.load(Ordering::Relaxed) - before,
        commits,
    })
}
