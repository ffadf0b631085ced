//! Runs a range of seeds and prints throughput: `cargo run --release -p
//! floe-sim --example bench -- [seeds] [nodes] [bug]`.

use std::time::Instant;

use floe_sim::{run_seed, Bug, SimOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seeds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(50);
    let nodes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let bug = args.get(3).and_then(|s| Bug::from_name(s));
    let opts = SimOptions {
        nodes,
        bug,
        trace: false,
    };
    let start = Instant::now();
    let (mut events, mut failed, mut commits) = (0, 0, 0);
    let mut first = None;
    for seed in 0..seeds {
        let r = run_seed(seed, &opts);
        events += r.events;
        commits += r.commits;
        if let Some(v) = &r.violation {
            failed += 1;
            first.get_or_insert(seed);
            if failed <= 1 && std::env::var("SHOW").is_ok() {
                println!("{v}");
            }
            println!("seed {seed}: {} {}", v.oracle, v.detail);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{seeds} seeds, {nodes} nodes, bug {:?}: {failed} failed (first {first:?}), {commits} commits, {:.1} seeds/s, {:.0} events/s",
        bug.map(Bug::name),
        seeds as f64 / secs,
        events as f64 / secs
    );
}
