//! The `floe` binary: argument parsing and wiring only.

mod bench;
mod bench_coop;
mod chaos;
mod check;
mod cluster;
mod demo;
mod embedded;
mod export;
mod import;
mod jobs;
mod remote;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// floe: a Raft-replicated coordinator for concurrent writes to versioned arrays.
#[derive(Parser)]
#[command(name = "floe", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the seed's scenarios on an embedded cluster and a local-disk store.
    Demo(demo::DemoArgs),
    /// Side-by-side benchmarks on the embedded cluster (figures, not tests).
    Bench(bench::BenchArgs),
    /// Run one coordinator process (raft-engine log in its data directory).
    Coordinator(cluster::CoordinatorArgs),
    /// Start a local cluster of coordinator processes in the foreground.
    Up(cluster::UpArgs),
    /// Each coordinator's role, term, indexes and health.
    Status {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        /// One JSON object per node.
        #[arg(long)]
        json: bool,
    },
    /// Repos.
    Repo {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: remote::RepoCmd,
    },
    /// Arrays.
    Array {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: remote::ArrayCmd,
    },
    /// Write a region from a `.npy` file and commit it.
    Write {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(flatten)]
        args: remote::WriteArgs,
    },
    /// Read a region into a `.npy` file.
    Read {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(flatten)]
        args: remote::ReadArgs,
    },
    /// A branch's commits, newest first.
    Log {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(flatten)]
        args: remote::LogArgs,
    },
    /// Branches.
    Branch {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: remote::RefCmd,
    },
    /// A worker process: claims tasks of cooperative jobs and writes them.
    Worker {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(flatten)]
        args: jobs::WorkerArgs,
    },
    /// Cooperative jobs: submit, status, cancel.
    Job {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: jobs::JobCmd,
    },
    /// Write a commit's arrays in another format (`floe export zarr`).
    Export {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: export::ExportCmd,
    },
    /// Land arrays from another format as one commit (`floe import zarr`).
    Import {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: import::ImportCmd,
    },
    /// Run a workload on a local deployment under faults, then check its history.
    Chaos(chaos::ChaosArgs),
    /// Check a history (one JSON operation per line, Jepsen's format).
    Check(check::CheckArgs),
    /// Add or remove a coordinator.
    Member {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: remote::MemberCmd,
    },
    /// Tags (immutable).
    Tag {
        #[command(flatten)]
        cluster: remote::ClusterArgs,
        #[command(subcommand)]
        cmd: remote::RefCmd,
    },
}

/// Runs the command; an error is printed as one line (its causes joined
/// by `: `, no backtrace) and the exit status is 1.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: processes of a deployment log
        // to files that people grep.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Demo(args) => {
            restore_sigpipe();
            demo::run(args)
        }
        Command::Bench(args) => {
            restore_sigpipe();
            bench::run(args)
        }
        Command::Coordinator(args) => cluster::coordinator(args),
        Command::Up(args) => cluster::up(args),
        Command::Status { cluster, json } => remote::status(cluster, json),
        Command::Repo { cluster, cmd } => remote::repo_cmd(cluster, cmd),
        Command::Array { cluster, cmd } => remote::array_cmd(cluster, cmd),
        Command::Write { cluster, args } => remote::write(cluster, args),
        Command::Read { cluster, args } => remote::read(cluster, args),
        Command::Export { cluster, cmd } => export::export(cluster, cmd),
        Command::Import { cluster, cmd } => import::import(cluster, cmd),
        Command::Log { cluster, args } => remote::log(cluster, args),
        Command::Branch { cluster, cmd } => remote::reference(cluster, cmd, false),
        Command::Tag { cluster, cmd } => remote::reference(cluster, cmd, true),
        Command::Member { cluster, cmd } => remote::member(cluster, cmd),
        Command::Check(args) => check::run(args),
        Command::Chaos(args) => chaos::run(args),
        Command::Worker { cluster, args } => {
            keep_large_buffers();
            jobs::worker(cluster, args)
        }
        Command::Job { cluster, cmd } => jobs::job(cluster, cmd),
    }
}

/// A worker allocates and frees a few chunk-sized buffers per task; glibc
/// serves those from fresh mmaps, so every task page-faults and zeroes
/// them again (a fifth of a worker's CPU in a profile). Keep them on the
/// heap and reuse them instead.
fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread
    // of the worker starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// Dies quietly on a closed pipe (`floe bench | head`), as Unix tools
/// do, instead of panicking in `println!`. Only for the commands that
/// print: a server writing to a socket its peer closed must get an error
/// back, not die of SIGPIPE.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread starts;
    // SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
