//! `floe-sim`: runs seeds of the deterministic simulation and summarises.
//!
//! The simulation is its own binary so that the planted bugs it switches on
//! (the coordinator's `planted-bugs` feature) never reach the shipped `floe`.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use floe_sim::faults::FaultCounts;
use floe_sim::{run_seed, Bug, SeedReport, SimOptions};
use indicatif::{ProgressBar, ProgressStyle};

/// floe's deterministic simulation: seeded interleavings and faults against the
/// real cores, checked by oracles.
#[derive(Parser)]
#[command(name = "floe-sim", version, about)]
struct SimArgs {
    /// Run only this seed (same as `--start S --seeds 1`).
    #[arg(long, conflicts_with_all = ["start", "seeds"])]
    seed: Option<u64>,
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Coordinators per simulated cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=5))]
    nodes: u8,
    /// Plant a bug; succeeds only if some oracle catches it.
    #[arg(long, value_name = "NAME")]
    bug: Option<String>,
    /// Print every event of the trace.
    #[arg(long)]
    trace: bool,
    /// Run every seed twice and fail unless both runs have the same trace hash.
    #[arg(long)]
    check_determinism: bool,
    /// List the planted bugs and exit.
    #[arg(long)]
    list_bugs: bool,
}

#[derive(Default)]
struct Totals {
    seeds: u64,
    events: u64,
    sim_ms: u64,
    commits: u64,
    fast_forwards: u64,
    conflicts: u64,
    branch_commits: u64,
    tag_reads: u64,
    expired: u64,
    faults: FaultCounts,
}

impl Totals {
    fn add(&mut self, r: &SeedReport) {
        self.seeds += 1;
        self.events += r.events;
        self.sim_ms += r.sim_ms;
        self.commits += r.commits;
        self.fast_forwards += r.fast_forwards;
        self.conflicts += r.conflicts;
        self.branch_commits += r.branch_commits;
        self.tag_reads += r.tag_reads;
        self.expired += r.expired;
        self.faults.absorb(&r.faults);
    }
}

fn main() -> Result<()> {
    restore_sigpipe();
    run(SimArgs::parse())
}

/// Dies quietly on a closed pipe (`floe-sim --trace | head`), as Unix tools
/// do, instead of panicking in `println!`.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread starts;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs the requested seeds.
fn run(args: SimArgs) -> Result<()> {
    if args.list_bugs {
        for bug in Bug::ALL {
            println!("{}", bug.name());
        }
        return Ok(());
    }
    let bug = match &args.bug {
        Some(name) => match Bug::from_name(name) {
            Some(b) => Some(b),
            None => bail!("unknown bug {name:?}; `floe-sim --list-bugs` lists them"),
        },
        None => None,
    };
    let (start, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.start, args.seeds),
    };
    if args.nodes == 4 {
        bail!("--nodes must be 3 or 5");
    }
    let opts = SimOptions {
        nodes: usize::from(args.nodes),
        bug,
        trace: args.trace,
    };
    let bar = progress(count, args.trace);
    let began = Instant::now();
    let mut totals = Totals::default();
    let mut caught = None;
    for seed in start..start.saturating_add(count) {
        let report = run_seed(seed, &opts);
        if args.trace || count == 1 {
            println!(
                "seed {seed}: trace hash {:016x}, {} events",
                report.trace_hash, report.events
            );
        }
        if args.check_determinism {
            let again = run_seed(
                seed,
                &SimOptions {
                    trace: false,
                    ..opts.clone()
                },
            );
            if again.trace_hash != report.trace_hash {
                bar.finish_and_clear();
                bail!(
                    "seed {seed} is not deterministic: trace hash {:016x} then {:016x}",
                    report.trace_hash,
                    again.trace_hash
                );
            }
        }
        totals.add(&report);
        bar.inc(1);
        if let Some(v) = &report.violation {
            bar.finish_and_clear();
            println!("{v}");
            caught = Some(seed);
            break;
        }
    }
    bar.finish_and_clear();
    summary(&totals, began.elapsed().as_secs_f64(), opts.nodes);
    verdict(bug, caught, totals.seeds)
}

fn progress(count: u64, trace: bool) -> ProgressBar {
    if trace || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(count);
    if let Ok(style) =
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds {per_sec} eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}

fn summary(t: &Totals, secs: f64, nodes: usize) {
    let secs = secs.max(1e-9);
    println!(
        "seeds {} ({nodes} nodes) in {secs:.2}s: {:.1} seeds/s, {:.0} events/s, {} events, {:.1} s simulated",
        t.seeds,
        t.seeds as f64 / secs,
        t.events as f64 / secs,
        t.events,
        t.sim_ms as f64 / 1000.0
    );
    println!(
        "commits landed {} ({} off main), fast-forwards {}, conflicts {}, reads at tags {}, sessions expired {}",
        t.commits, t.branch_commits, t.fast_forwards, t.conflicts, t.tag_reads, t.expired
    );
    println!("faults injected: {}", t.faults);
}

fn verdict(bug: Option<Bug>, caught: Option<u64>, ran: u64) -> Result<()> {
    match (bug, caught) {
        (None, None) => {
            println!("violations: 0");
            Ok(())
        }
        (None, Some(seed)) => bail!("violation at seed {seed}"),
        (Some(b), Some(seed)) => {
            println!("planted bug {b} caught at seed {seed} (after {ran} seeds)");
            Ok(())
        }
        (Some(b), None) => bail!("planted bug {b} was NOT caught in {ran} seeds"),
    }
}
