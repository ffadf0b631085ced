//! `floe check HISTORY`: runs the history checkers of `floe-history` over
//! a history file (Jepsen's format, one JSON object per line) and prints
//! what was checked and every violation with the lines involved.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// `floe check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The history file (`history.jsonl`).
    history: PathBuf,
    /// Also draw the latency picture of the history (SVG) here.
    #[arg(long, value_name = "SVG")]
    picture: Option<PathBuf>,
}

/// Exits non-zero when the history shows a violation.
pub fn run(args: CheckArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.history)
        .with_context(|| format!("cannot read {}", args.history.display()))?;
    let lines = floe_history::parse(&text)
        .with_context(|| format!("{} is not a history", args.history.display()))?;
    let (violations, summary) = floe_history::check(&lines);
    if let Some(svg) = &args.picture {
        let title = format!("floe check {}", args.history.display());
        crate::chaos::picture::draw(&lines, svg, &title)?;
        println!("latency picture: {}", svg.display());
    }
    println!("{}: {} lines", args.history.display(), lines.len());
    print!("{summary}");
    if violations.is_empty() {
        println!("valid: no violation found");
        return Ok(());
    }
    for v in &violations {
        println!("\n{v}");
    }
    bail!("{} violations", violations.len())
}
