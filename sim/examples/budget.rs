//! Measures how many seeds each planted bug needs to be caught, from
//! several starting seeds: `cargo run --release -p floe-sim --example
//! budget -- [windows] [nodes] [bug]`.

use floe_sim::{run_seed, Bug, SimOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let windows: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let nodes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let bugs: Vec<Bug> = match args.get(3).and_then(|s| Bug::from_name(s)) {
        Some(b) => vec![b],
        None => Bug::ALL.to_vec(),
    };
    for bug in bugs {
        let opts = SimOptions {
            nodes,
            bug: Some(bug),
            trace: false,
        };
        let mut needed = Vec::new();
        let mut oracles = std::collections::BTreeMap::new();
        for w in 0..windows {
            let start = w * 1_000;
            let n = (start..start + 200).find_map(|s| {
                run_seed(s, &opts)
                    .violation
                    .map(|v| (s - start + 1, v.oracle))
            });
            if let Some((n, oracle)) = n {
                *oracles.entry(oracle).or_insert(0) += 1;
                needed.push(n);
            } else {
                needed.push(u64::MAX);
            }
        }
        let worst = needed.iter().max().copied().unwrap_or(0);
        let mean = needed.iter().sum::<u64>() as f64 / needed.len() as f64;
        println!(
            "{:<32} worst {worst:>4} mean {mean:>6.1} seeds {needed:?} oracles {oracles:?}",
            bug.name()
        );
    }
}
