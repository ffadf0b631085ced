//! `floe chaos`: a local deployment of coordinator processes under a
//! workload of non-cooperative writers while a nemesis kills (SIGKILL) and
//! pauses (SIGSTOP past the election timeout) coordinators on a schedule
//! drawn from the seed; then it heals, waits for the cluster to settle,
//! reads every commit back, writes the history (Jepsen's format, see
//! `floe-history`) and checks it. Exit 0 only when no violation is found.
//!
//! This is the first part of the chaos harness: writers on `main` with
//! server-side rebase, kill and pause faults. Partitions (through proxies),
//! membership changes, workers, branches and the picture come next.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitMode, DType, Query, Region, Reply, RepoName,
    Request, Solver,
};
use floe_server::NetCoordinator;
use floe_worker::{ArrayData, Client, Session, Store};

use crate::cluster::Deployment;

/// Chunks of the array the writers share: few enough that writers
/// collide, so conflicts and fast-forwards both happen.
const CHUNKS: u64 = 24;
/// Elements per chunk.
const CHUNK: u64 = 8;

/// The faults the nemesis injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// SIGKILL a coordinator (the leader half the time), restart it later.
    Kill,
    /// SIGSTOP a coordinator for longer than an election, then SIGCONT.
    Pause,
}

/// `floe chaos`.
#[derive(clap::Args)]
pub struct ChaosArgs {
    /// Coordinators.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: u64,
    /// How long the workload and the faults run, seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Faults to inject (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Fault::Kill, Fault::Pause])]
    faults: Vec<Fault>,
    /// Seed of the fault schedule and the writers' choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the deployment, `history.jsonl` and `summary.json` go.
    #[arg(long)]
    out: PathBuf,
}

/// The history being written: one JSON line per event, times in ns since
/// the start.
#[derive(Clone)]
struct History {
    file: Arc<Mutex<std::fs::File>>,
    start: Instant,
}

impl History {
    fn line(&self, process: Value, kind: &str, f: &str, value: Value) {
        let line = json!({
            "process": process,
            "type": kind,
            "f": f,
            "value": value,
            "time": self.start.elapsed().as_nanos() as u64,
        });
        if let Ok(mut file) = self.file.lock() {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Runs the experiment; fails when the checkers find a violation.
pub fn run(args: ChaosArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let history_path = args.out.join("history.jsonl");
    let history = History {
        file: Arc::new(Mutex::new(std::fs::File::create(&history_path)?)),
        start: Instant::now(),
    };
    let deployment = Deployment::start(&args.out.join("deployment"), args.nodes, 0, 20)?;
    let nodes: Vec<String> = (1..=args.nodes).map(|id| format!("n{id}")).collect();
    let file = floe_server::config::ClusterFile::load(&deployment.cluster_file)?;
    let token = floe_server::config::read_token(&file.token_file)?;
    let coord = Arc::new(NetCoordinator::new(file.endpoints(), token.clone()));
    let store = Store::local(args.out.join("deployment").join("store"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(setup(&coord, &store))?;
    println!(
        "chaos: {} coordinators, {} writers, {} s, faults {:?}, seed {}; out {}",
        args.nodes,
        args.writers,
        args.duration,
        args.faults,
        args.seed,
        args.out.display()
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let deployment = Mutex::new(deployment);
    let writers: Vec<_> = (0..args.writers)
        .map(|p| {
            let (coord, store, history) = (coord.clone(), store.clone(), history.clone());
            let seed = args.seed.wrapping_mul(1000).wrapping_add(p);
            runtime.spawn(writer(p, coord, store, history, seed, deadline))
        })
        .collect();
    // The nemesis runs on this thread: processes it restarts get SIGTERM
    // when the thread that spawned them ends (PR_SET_PDEATHSIG).
    let endpoints = file.endpoints();
    let faults = nemesis(
        &deployment,
        &history,
        &args.faults,
        &nodes,
        &endpoints,
        &token,
        args.seed,
        deadline,
    );
    runtime.block_on(async {
        for w in writers {
            let _ = w.await;
        }
    });
    heal(&deployment, &nodes)?;
    runtime.block_on(final_reads(&coord, &history))?;
    drop(deployment);
    verdict(&args, &history_path, &faults)
}

/// The repo `chaos` and its array `/a`.
async fn setup(coord: &Arc<NetCoordinator>, store: &Store) -> Result<()> {
    let repo = RepoName::new("chaos")?;
    Client::new(coord.clone())
        .command(Command::CreateRepo { repo: repo.clone() })
        .await?;
    let mut s =
        Session::checkout(coord.clone(), store.clone(), repo, BranchName::new("main")?).await?;
    let meta = ArrayMeta::new(vec![CHUNKS * CHUNK], vec![CHUNK], DType::I64, 0.0)?;
    s.create_array(&ArrayPath::new("/a")?, meta)?;
    s.commit("create", CommitMode::Strict).await?;
    Ok(())
}

/// Writer `p`: check out, write one or two chunks, commit with server-side
/// rebase; each commit is one operation of the history.
async fn writer(
    p: u64,
    coord: Arc<NetCoordinator>,
    store: Store,
    history: History,
    seed: u64,
    deadline: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (Ok(repo), Ok(main), Ok(path)) = (
        RepoName::new("chaos"),
        BranchName::new("main"),
        ArrayPath::new("/a"),
    ) else {
        return;
    };
    let mut k = 0;
    while Instant::now() < deadline {
        let checkout = Session::checkout(coord.clone(), store.clone(), repo.clone(), main.clone());
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(5), checkout).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let first = rng.gen_range(0..CHUNKS);
        let last = (first + rng.gen_range(1..=2)).min(CHUNKS);
        let region = Region::new(&[(first * CHUNK, last * CHUNK)]);
        k += 1;
        let value = (p * 1_000_000 + k) as i64;
        let data = vec![value; ((last - first) * CHUNK) as usize];
        let Ok(data) = ArrayData::from_slice(&[(last - first) * CHUNK], &data) else {
            return;
        };
        if s.write_region(&path, &region, &data).await.is_err() {
            continue;
        }
        let message = format!("w{p}-{k}");
        let args = json!({"repo": "chaos", "branch": "main", "message": message, "region": region.to_string()});
        history.line(json!(p), "invoke", "commit", args);
        let mode = CommitMode::Rebase {
            solver: Solver::Fail,
        };
        let done = tokio::time::timeout(Duration::from_secs(10), s.commit(&message, mode)).await;
        let (kind, value) = match done {
            Ok(Ok(commit)) => ("ok", json!({"commit": commit.to_string()})),
            // Refused: it did not land.
            Ok(Err(e)) if e.is_conflict() || e.is_invalid_input() => {
                ("fail", json!({"error": e.to_string()}))
            }
            // Gave up, expired, or unknown: it may have landed.
            Ok(Err(e)) => ("info", json!({"error": e.to_string()})),
            Err(_) => ("info", json!({"error": "timed out after 10 s"})),
        };
        history.line(json!(p), kind, "commit", value);
    }
}

/// The nemesis: until `deadline`, a fault every 1-3 s on a coordinator
/// (the leader half the time), healed 0.5-2.5 s later. Returns the faults
/// injected, by kind.
#[allow(clippy::too_many_arguments)]
fn nemesis(
    deployment: &Mutex<Deployment>,
    history: &History,
    faults: &[Fault],
    nodes: &[String],
    endpoints: &std::collections::BTreeMap<u64, std::net::SocketAddr>,
    token: &str,
    seed: u64,
    deadline: Instant,
) -> std::collections::BTreeMap<String, u64> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9);
    let mut counts = std::collections::BTreeMap::new();
    let Ok(status_rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return counts;
    };
    while !faults.is_empty() && Instant::now() + Duration::from_secs(3) < deadline {
        std::thread::sleep(Duration::from_millis(rng.gen_range(1_000..3_000)));
        let leader = status_rt.block_on(leader_of(endpoints, token));
        let target = match leader {
            Some(id) if rng.gen_bool(0.5) => format!("n{id}"),
            _ => nodes[rng.gen_range(0..nodes.len())].clone(),
        };
        let fault = faults[rng.gen_range(0..faults.len())];
        let name = format!("{fault:?}").to_lowercase();
        *counts.entry(name.clone()).or_insert(0) += 1;
        history.line(json!("nemesis"), "info", &name, json!({"node": target}));
        match fault {
            Fault::Kill => {
                if let Ok(mut d) = deployment.lock() {
                    d.kill(&target);
                }
            }
            Fault::Pause => {
                if let Ok(d) = deployment.lock() {
                    d.signal(&target, libc::SIGSTOP);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..2_500)));
        if let Ok(mut d) = deployment.lock() {
            d.signal(&target, libc::SIGCONT);
            let _ = d.restart(&target);
        }
        history.line(json!("nemesis"), "info", "heal", json!({"node": target}));
    }
    counts
}

/// The leader as some node reports it.
async fn leader_of(
    endpoints: &std::collections::BTreeMap<u64, std::net::SocketAddr>,
    token: &str,
) -> Option<u64> {
    for addr in endpoints.values() {
        if let Ok(s) = floe_server::net::node_status(*addr, token).await {
            if s.leader.is_some() {
                return s.leader;
            }
        }
    }
    None
}

/// Every coordinator running again (none paused).
fn heal(deployment: &Mutex<Deployment>, nodes: &[String]) -> Result<()> {
    let mut d = deployment
        .lock()
        .map_err(|_| anyhow::anyhow!("the deployment lock is poisoned"))?;
    for name in nodes {
        d.signal(name, libc::SIGCONT);
        d.restart(name)?;
    }
    Ok(())
}

/// The final read of `main` (retried while the cluster settles).
async fn final_reads(coord: &Arc<NetCoordinator>, history: &History) -> Result<()> {
    let q = Query::Log {
        repo: RepoName::new("chaos")?,
        branch: BranchName::new("main")?,
        limit: u32::MAX,
    };
    let client = Client::new(coord.clone());
    let settle = Instant::now() + Duration::from_secs(60);
    loop {
        match client.call(Request::Query(q.clone())).await {
            Ok(Reply::Log(records)) => {
                let log: Vec<Value> = records.iter().map(entry).collect();
                let value = json!({"repo": "chaos", "branch": "main", "log": log});
                history.line(json!("final"), "ok", "read-log", value);
                return Ok(());
            }
            Ok(other) => bail!("unexpected answer to the final read: {other:?}"),
            Err(e) if Instant::now() > settle => {
                bail!("the cluster did not settle within 60 s after healing: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A commit as the final read lists it: with its parent, base and chunks
/// the checkers judge its fast-forward.
fn entry(r: &floe_protocol::CommitRecord) -> Value {
    let chunks: serde_json::Map<String, Value> = r
        .footprint
        .arrays
        .iter()
        .map(|(path, change)| (path.to_string(), json!(change.coords().collect::<Vec<_>>())))
        .collect();
    json!({
        "id": r.id.to_string(),
        "message": r.message,
        "parent": r.parent.map(|c| c.to_string()),
        "base": r.base.map(|c| c.to_string()),
        "chunks": chunks,
    })
}

/// Checks the history, writes `summary.json`, prints the verdict.
fn verdict(
    args: &ChaosArgs,
    history_path: &std::path::Path,
    faults: &std::collections::BTreeMap<String, u64>,
) -> Result<()> {
    let text = std::fs::read_to_string(history_path)?;
    let lines = floe_history::parse(&text).context("the history is malformed")?;
    let (violations, summary) = floe_history::check(&lines);
    let ops: serde_json::Map<String, Value> = summary
        .ops
        .iter()
        .map(|((f, t), n)| (format!("{f} {}", format!("{t:?}").to_lowercase()), json!(n)))
        .collect();
    let report = json!({
        "nodes": args.nodes,
        "writers": args.writers,
        "duration_s": args.duration,
        "seed": args.seed,
        "operations": ops,
        "faults": faults,
        "commits_acknowledged_found_once": summary.acknowledged,
        "indeterminate_landed": summary.indeterminate_landed,
        "fast_forwards_checked": summary.fast_forwards,
        "violations": violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        "valid": violations.is_empty(),
    });
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("operations: {ops:?}");
    println!("faults: {faults:?}");
    println!(
        "acknowledged commits found exactly once: {}; indeterminate that landed: {}; fast-forwards checked: {}",
        summary.acknowledged, summary.indeterminate_landed, summary.fast_forwards
    );
    if violations.is_empty() {
        println!(
            "valid: no violation found (history: {})",
            history_path.display()
        );
        return Ok(());
    }
    for v in &violations {
        println!("\n{v}");
    }
    bail!(
        "{} violations; see {}",
        violations.len(),
        history_path.display()
    )
}
