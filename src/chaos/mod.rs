//! `floe chaos`: a local deployment of coordinator processes under a
//! workload ([`workload`]) while a nemesis kills, pauses, partitions and
//! re-members coordinators; then it heals, waits for the cluster to
//! settle, reads every branch, tag and array back, writes the history
//! (Jepsen's format, see `floe-history`) and checks it. Exit 0 only when
//! no violation is found.
//!
//! Every connection of the deployment goes through a proxy the harness
//! owns ([`proxy`]), so partitions need no root; the faults follow a
//! schedule drawn from the seed ([`schedule`]) that the nemesis carries
//! out ([`nemesis`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use floe_server::NetCoordinator;
use floe_worker::Store;

use crate::cluster::Deployment;

mod nemesis;
pub(crate) mod picture;
mod proxy;
pub mod schedule;
mod workload;

use nemesis::Nemesis;
use proxy::Network;
use schedule::Fault;

/// `floe chaos`.
#[derive(clap::Args)]
pub struct ChaosArgs {
    /// Coordinators.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Worker processes for the cooperative jobs (0: no jobs).
    #[arg(long, default_value_t = 2)]
    workers: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: u64,
    /// How long the workload and the faults run, seconds.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Faults to inject (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Fault::Kill, Fault::Pause, Fault::Partition, Fault::Member])]
    faults: Vec<Fault>,
    /// Coordinators snapshot their state every this many Raft entries
    /// (small, so that snapshots and their installation happen under the
    /// faults too).
    #[arg(long, default_value_t = 200)]
    snapshot_every: u64,
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
pub struct History {
    file: Arc<Mutex<std::fs::File>>,
}

/// Wall-clock ns: the clock of every line, the harness's and the worker
/// processes' (merged at the end), on one machine.
fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl History {
    /// Appends one line.
    pub fn line(&self, process: Value, kind: &str, f: &str, value: Value) {
        let line = json!({
            "process": process,
            "type": kind,
            "f": f,
            "value": value,
            "time": wall_ns(),
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
    };
    let dir = args.out.join("deployment");
    let runtime = tokio::runtime::Runtime::new()?;
    let (deployment, routes) =
        Deployment::start_proxied(&dir, args.nodes, args.workers, 20, args.snapshot_every)?;
    let network = Network::start(&routes, &runtime)?;
    let nodes: Vec<u64> = (1..=args.nodes).collect();
    let file = floe_server::config::ClusterFile::load(&deployment.cluster_file)?;
    let token = floe_server::config::read_token(&file.token_file)?;
    let coord = Arc::new(NetCoordinator::new(file.endpoints(), token.clone()));
    let store = Store::local(dir.join("store"))?;
    let recording = Arc::new(workload::Recording::new(coord.clone()));
    runtime.block_on(workload::setup(&recording, &store, &history))?;
    let steps = schedule::schedule(
        args.seed,
        &args.faults,
        &nodes,
        args.workers,
        args.duration * 1000,
    );
    println!(
        "chaos: {} coordinators, {} workers, {} writers, {} s, {} faults of {:?}, seed {}; out {}",
        args.nodes,
        args.workers,
        args.writers,
        args.duration,
        steps.len(),
        args.faults,
        args.seed,
        args.out.display()
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.duration);
    let deployment = Mutex::new(deployment);
    let shared = workload::Shared::default();
    let writers: Vec<_> = (0..args.writers)
        .map(|p| {
            let writer = workload::Writer {
                p,
                coord: Arc::new(workload::Recording::new(coord.clone())),
                store: store.clone(),
                history: history.clone(),
                shared: shared.clone(),
                seed: args.seed.wrapping_mul(1000).wrapping_add(p),
            };
            runtime.spawn(writer.run(deadline))
        })
        .collect();
    let jobs = (args.workers > 0).then(|| {
        let jobs = workload::Jobs {
            coord: coord.clone(),
            history: history.clone(),
            dir: dir.clone(),
        };
        runtime.spawn(jobs.run(deadline))
    });
    // The nemesis runs on this thread: processes it restarts get SIGTERM
    // when the thread that spawned them ends (PR_SET_PDEATHSIG).
    let nemesis = Nemesis {
        deployment: &deployment,
        network: &network,
        history: &history,
        nodes: nodes.clone(),
        endpoints: file.endpoints(),
        token,
        coord: coord.clone(),
        dir,
    };
    let faults = nemesis.run(&steps, start, deadline);
    runtime.block_on(async {
        for w in writers.into_iter().chain(jobs) {
            let _ = w.await;
        }
    });
    network.heal();
    heal(&deployment, &nodes, args.workers)?;
    runtime.block_on(workload::final_reads(&coord, &store, &history))?;
    drop(deployment);
    let workers: Vec<PathBuf> = (1..=args.workers)
        .map(|w| Deployment::worker_history(&args.out.join("deployment"), &format!("w{w}")))
        .collect();
    merge(&history_path, &workers)?;
    verdict(&args, &history_path, &faults)
}

/// Adds the worker processes' task histories to the history, every line
/// in time order (one clock; each process's own lines keep their order).
fn merge(history: &std::path::Path, extra: &[PathBuf]) -> Result<()> {
    let mut lines: Vec<(u64, String)> = Vec::new();
    for path in std::iter::once(&history.to_path_buf()).chain(extra) {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let time = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v.get("time").and_then(Value::as_u64))
                .unwrap_or(0);
            lines.push((time, line.to_string()));
        }
    }
    lines.sort_by_key(|(time, _)| *time);
    let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    std::fs::write(history, text)?;
    Ok(())
}

/// Every coordinator and worker running again (none paused).
fn heal(deployment: &Mutex<Deployment>, nodes: &[u64], workers: u64) -> Result<()> {
    let mut d = deployment
        .lock()
        .map_err(|_| anyhow::anyhow!("the deployment lock is poisoned"))?;
    let names = nodes.iter().map(|id| format!("n{id}"));
    for name in names.chain((1..=workers).map(|w| format!("w{w}"))) {
        d.signal(&name, libc::SIGCONT);
        d.restart(&name)?;
    }
    Ok(())
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
    let picture = args.out.join("latency.svg");
    let title = format!(
        "floe chaos: {} coordinators, {} workers, {} writers, {} s, seed {}",
        args.nodes, args.workers, args.writers, args.duration, args.seed
    );
    if let Err(e) = picture::draw(&lines, &picture, &title) {
        eprintln!("warning: {e}");
    }
    let mut report = summary.to_json();
    if let Some(map) = report.as_object_mut() {
        let planted = std::env::var("FLOE_PLANTED_BUG").ok();
        let run = json!({
            "nodes": args.nodes,
            "workers": args.workers,
            "writers": args.writers,
            "duration_s": args.duration,
            "seed": args.seed,
            "faults": faults,
            "planted_bug": planted,
            "picture": picture.display().to_string(),
            "violations": violations.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
            "valid": violations.is_empty(),
        });
        map.extend(run.as_object().cloned().unwrap_or_default());
    }
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let faults: Vec<String> = faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("faults: {}", faults.join(", "));
    print!("{summary}");
    println!("latency picture: {}", picture.display());
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
