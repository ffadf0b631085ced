//! `floe coordinator` (one coordinator process), `floe up` (a local
//! deployment of coordinator and worker processes in the foreground) and
//! the [`Deployment`] it starts (the coop benchmark and the demo start one
//! too).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use floe_server::config::{ClusterFile, NodeConfig};
use floe_server::local::{write_local_cluster, write_proxied_cluster, LocalCluster, Route};
use floe_worker::Store;

/// `floe coordinator`.
#[derive(Args)]
pub struct CoordinatorArgs {
    /// The node's configuration file (TOML); every key can also be given
    /// (or overridden) by its flag below.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `id`: this node's id.
    #[arg(long)]
    id: Option<String>,
    /// `listen`: the address peers and clients connect to.
    #[arg(long)]
    listen: Option<String>,
    /// `data_dir`: the Raft log, snapshots and cluster id.
    #[arg(long)]
    data_dir: Option<String>,
    /// `token_file`: the cluster's shared secret.
    #[arg(long)]
    token_file: Option<String>,
    /// `peers`: an initial voter as ID=ADDRESS (repeat for each).
    #[arg(long = "peer", value_name = "ID=ADDRESS")]
    peers: Vec<String>,
    /// `metrics`: where /metrics, /healthz and /readyz are served.
    #[arg(long)]
    metrics: Option<String>,
    /// `tick_ms`: the Raft tick.
    #[arg(long)]
    tick_ms: Option<String>,
    /// `election_ticks`: ticks without a leader before an election.
    #[arg(long)]
    election_ticks: Option<String>,
    /// `snapshot_every`: applied entries between snapshots.
    #[arg(long)]
    snapshot_every: Option<String>,
    /// `raft_chunk_bytes`: snapshots go to peers in parts this large.
    #[arg(long)]
    raft_chunk_bytes: Option<String>,
    /// `client_expiry_ms`: idle client sessions are forgotten after this.
    #[arg(long)]
    client_expiry_ms: Option<String>,
    /// Print a documented example configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// This member lost its data directory: rejoin the cluster instead of
    /// bootstrapping a new one, and vote only once the leader has sent the
    /// state (until then this node cannot help elect a leader).
    #[arg(long)]
    join: bool,
}

fn check_nodes(nodes: u64) -> Result<()> {
    if nodes == 0 || nodes > 9 {
        bail!("--nodes must be between 1 and 9");
    }
    Ok(())
}

/// Runs one coordinator until SIGTERM or Ctrl-C.
pub fn coordinator(args: CoordinatorArgs) -> Result<()> {
    if args.print_default_config {
        print!("{}", NodeConfig::example());
        return Ok(());
    }
    let overrides = overrides(&args)?;
    let config = NodeConfig::load_with(args.config.as_deref(), &overrides)?;
    floe_server::serve::run(config, args.join)?;
    Ok(())
}

/// The configuration keys given as flags.
fn overrides(args: &CoordinatorArgs) -> Result<Vec<(String, String)>> {
    let keys = [
        ("id", &args.id),
        ("listen", &args.listen),
        ("data_dir", &args.data_dir),
        ("token_file", &args.token_file),
        ("metrics", &args.metrics),
        ("tick_ms", &args.tick_ms),
        ("election_ticks", &args.election_ticks),
        ("snapshot_every", &args.snapshot_every),
        ("raft_chunk_bytes", &args.raft_chunk_bytes),
        ("client_expiry_ms", &args.client_expiry_ms),
    ];
    let mut out: Vec<(String, String)> = keys
        .into_iter()
        .filter_map(|(key, value)| value.clone().map(|v| (key.to_string(), v)))
        .collect();
    for peer in &args.peers {
        let Some((id, addr)) = peer.split_once('=') else {
            bail!("--peer {peer:?}: expected ID=ADDRESS");
        };
        out.push((format!("peers.{id}"), addr.to_string()));
    }
    Ok(out)
}

/// `floe up`.
#[derive(Args)]
pub struct UpArgs {
    /// Coordinators to start.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Directory for the configs, token, data and `cluster.toml`.
    #[arg(long)]
    dir: PathBuf,
    /// Raft tick in milliseconds.
    #[arg(long, default_value_t = 20)]
    tick_ms: u64,
    /// Worker processes to start too (`floe worker`, one slot each,
    /// writing to the store).
    #[arg(long, default_value_t = 0)]
    workers: u64,
    /// The object store URL for chunk data, written into the cluster file
    /// for clients and workers (default: `DIR/store`), e.g.
    /// `s3://bucket/prefix`; credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...).
    #[arg(long)]
    store: Option<String>,
    /// An object_store option for `--store`, KEY=VALUE (repeat), written
    /// into the cluster file: `endpoint=http://127.0.0.1:9000`,
    /// `region=us-east-1`, `allow_http=true`, ...
    #[arg(long = "store-option", value_name = "KEY=VALUE", requires = "store")]
    store_options: Vec<String>,
}

/// Where a deployment's chunk data goes; recorded in its cluster file.
#[derive(Clone, Debug, Default)]
pub struct StoreSpec {
    /// The store URL (default: `store/` beside the cluster file).
    pub url: Option<String>,
    /// Its object_store options.
    pub options: Vec<(String, String)>,
}

impl StoreSpec {
    /// Records this store in the cluster file at `path`.
    fn record(&self, path: &Path) -> Result<()> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        let mut file = ClusterFile::load(path)?;
        file.store = Some(url.clone());
        file.store_options = self.options.iter().cloned().collect();
        file.save(path)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// A local deployment: coordinator and worker processes started from this
/// executable, laid out in a directory as `floe up` does; stopped (SIGTERM,
/// then SIGKILL after a grace period) on drop.
pub struct Deployment {
    /// The processes, by name (`n1`, `w1`, ...).
    pub children: Vec<(String, Child)>,
    /// The cluster file clients use.
    pub cluster_file: PathBuf,
    /// Where it is laid out (and the processes log).
    dir: PathBuf,
    /// Each process's arguments, to restart it.
    argv: std::collections::BTreeMap<String, Vec<String>>,
}

impl Deployment {
    /// Lays out `dir` and starts `nodes` coordinators and `workers` worker
    /// processes (one slot each).
    pub fn start(dir: &Path, nodes: u64, workers: u64, tick_ms: u64) -> Result<Deployment> {
        Self::start_with(dir, nodes, workers, tick_ms, &[])
    }

    /// [`Deployment::start`], each worker getting `worker_flags` too.
    pub fn start_with(
        dir: &Path,
        nodes: u64,
        workers: u64,
        tick_ms: u64,
        worker_flags: &[&str],
    ) -> Result<Deployment> {
        Self::start_on(
            dir,
            nodes,
            workers,
            tick_ms,
            worker_flags,
            &StoreSpec::default(),
        )
    }

    /// [`Deployment::start_with`] on the object store `store`.
    pub fn start_on(
        dir: &Path,
        nodes: u64,
        workers: u64,
        tick_ms: u64,
        worker_flags: &[&str],
        store: &StoreSpec,
    ) -> Result<Deployment> {
        check_nodes(nodes)?;
        let layout = write_local_cluster(dir, nodes, tick_ms)
            .with_context(|| format!("cannot lay out a cluster in {}", dir.display()))?;
        store.record(&layout.cluster_file)?;
        Self::launch_all(dir, &layout, workers, worker_flags)
    }

    /// A deployment of `nodes` coordinators whose every connection goes
    /// through a proxy at one of the returned routes (see
    /// [`floe_server::local::write_proxied_cluster`]); the caller runs the
    /// proxies.
    /// `workers` worker processes join it, each appending its task
    /// operations to `DIR/w<i>.history.jsonl`.
    pub fn start_proxied(
        dir: &Path,
        nodes: u64,
        workers: u64,
        tick_ms: u64,
        snapshot_every: u64,
    ) -> Result<(Deployment, Vec<Route>)> {
        check_nodes(nodes)?;
        let (layout, routes) = write_proxied_cluster(dir, nodes, tick_ms, snapshot_every)
            .with_context(|| format!("cannot lay out a cluster in {}", dir.display()))?;
        let mut d = Self::launch_all(dir, &layout, 0, &[])?;
        let cluster_file = layout.cluster_file.display().to_string();
        for w in 1..=workers {
            let name = format!("w{w}");
            let history = Self::worker_history(dir, &name).display().to_string();
            let argv = ["worker", "--cluster", &cluster_file, "--name", &name];
            let flags = ["--idle-ms", "50", "--history", &history];
            d.launch(&name, &[&argv[..], &flags[..]].concat())
                .context("cannot start a worker")?;
        }
        Ok((d, routes))
    }

    /// Where worker `name` of a proxied deployment in `dir` writes its
    /// task history.
    pub fn worker_history(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("{name}.history.jsonl"))
    }

    fn launch_all(
        dir: &Path,
        layout: &LocalCluster,
        workers: u64,
        worker_flags: &[&str],
    ) -> Result<Deployment> {
        let mut d = Deployment {
            children: Vec::new(),
            cluster_file: layout.cluster_file.clone(),
            dir: dir.to_path_buf(),
            argv: Default::default(),
        };
        for (id, config) in &layout.nodes {
            let config = config.display().to_string();
            d.launch(&format!("n{id}"), &["coordinator", "--config", &config])
                .context("cannot start a coordinator")?;
        }
        let cluster_file = layout.cluster_file.display().to_string();
        for w in 1..=workers {
            let name = format!("w{w}");
            let mut argv = vec!["worker", "--cluster", &cluster_file, "--name", &name];
            argv.extend_from_slice(worker_flags);
            d.launch(&name, &argv).context("cannot start a worker")?;
        }
        Ok(d)
    }
}

impl Deployment {
    /// Starts process `name` as `floe ARGV` and remembers how.
    fn launch(&mut self, name: &str, argv: &[&str]) -> Result<()> {
        let child = spawn(&self.dir, name, argv)?;
        self.children.push((name.to_string(), child));
        let argv = argv.iter().map(|a| a.to_string()).collect();
        self.argv.insert(name.to_string(), argv);
        Ok(())
    }

    /// The pid of process `name`, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
    }

    /// Kills process `name` with SIGKILL and reaps it; false when it was
    /// not running.
    pub fn kill(&mut self, name: &str) -> bool {
        let Some(i) = self.children.iter().position(|(n, _)| n == name) else {
            return false;
        };
        let (_, mut child) = self.children.remove(i);
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    /// Sends `signal` to process `name`, if it runs.
    pub fn signal(&self, name: &str, signal: libc::c_int) {
        if let Some(pid) = self.pid(name) {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// Starts process `name` again as it was last started (its log goes
    /// on), unless it runs.
    pub fn restart(&mut self, name: &str) -> Result<()> {
        self.reap(name);
        if self.pid(name).is_some() {
            return Ok(());
        }
        let argv = self
            .argv
            .get(name)
            .cloned()
            .with_context(|| format!("no process {name}"))?;
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let child = spawn(&self.dir, name, &argv)?;
        self.children.push((name.to_string(), child));
        Ok(())
    }
}

impl Deployment {
    /// Forgets process `name` if it exited by itself (e.g. a coordinator
    /// that was removed from the cluster).
    fn reap(&mut self, name: &str) {
        let exited =
            |(n, c): &mut (String, Child)| n == name && matches!(c.try_wait(), Ok(Some(_)));
        self.children.retain_mut(|entry| !exited(entry));
    }

    /// Whether process `name` is running (not exited, not killed).
    pub fn running(&mut self, name: &str) -> bool {
        self.reap(name);
        self.pid(name).is_some()
    }

    /// Coordinator `name` lost its data: stops it if it runs, wipes
    /// `data_dir`, and starts it again with `--join` (it rejoins instead
    /// of bootstrapping; later restarts keep the flag).
    pub fn rejoin(&mut self, name: &str, data_dir: &Path) -> Result<()> {
        self.kill(name);
        match std::fs::remove_dir_all(data_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot wipe {}", data_dir.display()))
            }
            _ => {}
        }
        let argv = self
            .argv
            .get_mut(name)
            .with_context(|| format!("no process {name}"))?;
        if !argv.iter().any(|a| a == "--join") {
            argv.push("--join".into());
        }
        self.restart(name)
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        stop(&mut self.children);
    }
}

/// Starts a local cluster and keeps it in the foreground; Ctrl-C or
/// SIGTERM stops every process it started.
pub fn up(args: UpArgs) -> Result<()> {
    let store = StoreSpec {
        url: args.store.clone(),
        options: crate::remote::store_options(&args.store_options)?,
    };
    if let Some(url) = &store.url {
        // A wrong store fails here, with its reason, not in every worker.
        let opened = Store::from_url_with(url, &store.options)?;
        crate::remote::block_on_value(async { Ok(opened.probe().await?) })
            .with_context(|| format!("--store {url}"))?;
    }
    let mut d = Deployment::start_on(
        &args.dir,
        args.nodes,
        args.workers,
        args.tick_ms,
        &[],
        &store,
    )?;
    println!(
        "{} coordinators and {} workers up; clients use --cluster {}",
        args.nodes,
        args.workers,
        d.cluster_file.display()
    );
    for (name, child) in &d.children {
        println!(
            "  {name}: pid {} (log: {}/{name}.log)",
            child.id(),
            args.dir.display()
        );
    }
    wait(&mut d.children)
}

/// Starts `floe ARGV`, logging to `DIR/<name>.log`. The child gets
/// SIGTERM if this process dies first (killed, or dead of SIGPIPE), so a
/// deployment never outlives the command that started it.
fn spawn(dir: &Path, name: &str, argv: &[&str]) -> Result<Child> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot find the floe executable")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?;
    let mut command = Command::new(exe);
    command.args(argv).stdout(log.try_clone()?).stderr(log);
    // A deployment's logs are files to read after the fact: the default
    // level there is info (elections, peers, membership), not warn.
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    // SAFETY: prctl(2) is async-signal-safe; it runs in the child between
    // fork and exec and touches nothing of the parent's.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command.spawn()?)
}

/// Waits for a signal. A process that exits (killed, or failed) is
/// reported and the others keep running, so that a node can be killed and
/// restarted by hand (`floe coordinator --config DIR/n<id>.toml`).
fn wait(children: &mut Vec<(String, Child)>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = term.recv() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let mut i = 0;
            while i < children.len() {
                if let Some(status) = children[i].1.try_wait()? {
                    let name = &children[i].0;
                    eprintln!("{name} exited ({status}); the others keep running");
                    children.remove(i);
                } else {
                    i += 1;
                }
            }
            if children.is_empty() {
                bail!("every process exited; see their logs");
            }
        }
    })
}

/// SIGTERM to every child, then SIGKILL to those still up after a grace
/// period; reaps them all.
fn stop(children: &mut [(String, Child)]) {
    for (_, child) in children.iter() {
        // SAFETY: kill(2) with a pid we spawned and still hold.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for (_, child) in children.iter_mut() {
        while std::time::Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
