//! Runs one seed with the trace printed: `cargo run -p floe-sim --example
//! one -- SEED [nodes] [bug]`.

use floe_sim::{run_seed, Bug, SimOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let nodes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let bug = args.get(3).and_then(|s| Bug::from_name(s));
    let trace = std::env::var("QUIET").is_err();
    let r = run_seed(seed, &SimOptions { nodes, bug, trace });
    println!(
        "seed {} hash {:016x} events {} sim_ms {} commits {} ff {} conflicts {} faults {}",
        r.seed, r.trace_hash, r.events, r.sim_ms, r.commits, r.fast_forwards, r.conflicts, r.faults
    );
    if let Some(v) = r.violation {
        println!("{v}");
    }
}
