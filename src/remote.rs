//! The client commands against a running cluster (`--cluster FILE`, or
//! `$FLOE_CLUSTER`): status, repos, arrays, writes and reads of `.npy`
//! regions, the log, branches and tags. Each is a thin wrapper: the
//! client core (sessions, the requester) does the work over the network
//! client.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, CommitRecord, DType, Query,
    Region, Reply, RepoName, Request, Solver, TagName,
};
use floe_server::config::{read_token, ClusterFile};
use floe_server::NetCoordinator;
use floe_worker::{Client, NpyFile, Reader, Session, Store};

/// Where the cluster is.
#[derive(Args, Clone)]
pub struct ClusterArgs {
    /// The cluster file written by `floe up` (default: $FLOE_CLUSTER).
    #[arg(long, env = "FLOE_CLUSTER")]
    cluster: PathBuf,
    /// Object store URL for chunk data (default: the cluster file's
    /// `store`, else a `store/` directory beside it).
    #[arg(long)]
    store: Option<String>,
    /// An object_store option for the store, KEY=VALUE (repeat; wins over
    /// the cluster file's `store_options` and the environment), e.g.
    /// `endpoint=http://127.0.0.1:9000`, `allow_http=true`.
    #[arg(long = "store-option", value_name = "KEY=VALUE")]
    store_options: Vec<String>,
}

/// The local directory a store argument names (`file:///abs/dir`, or any
/// text without `://`), or `None` for another store's URL.
pub(crate) fn local_dir(text: &str) -> Option<&str> {
    match text.strip_prefix("file://") {
        Some(path) => Some(path),
        None => (!text.contains("://")).then_some(text),
    }
}

/// Parses `--store-option KEY=VALUE` flags.
pub(crate) fn store_options(flags: &[String]) -> Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|f| match f.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => bail!("--store-option {f:?}: expected KEY=VALUE"),
        })
        .collect()
}

/// A connected client.
pub(crate) struct Remote {
    pub(crate) coord: Arc<NetCoordinator>,
    pub(crate) file: ClusterFile,
    pub(crate) token: String,
    pub(crate) store_url: String,
    /// The cluster file's store options, then the flags'.
    pub(crate) store_options: Vec<(String, String)>,
}

impl ClusterArgs {
    pub(crate) fn connect(&self) -> Result<Remote> {
        let file = ClusterFile::load(&self.cluster)?;
        let token = read_token(&file.token_file)?;
        let coord = Arc::new(NetCoordinator::new(file.endpoints(), token.clone()));
        let beside = self
            .cluster
            .parent()
            .unwrap_or(Path::new("."))
            .join("store");
        let store_url = self
            .store
            .clone()
            .or_else(|| file.store.clone())
            .unwrap_or_else(|| beside.to_string_lossy().into_owned());
        let mut options: Vec<(String, String)> = match self.store {
            // Another store than the cluster file's: its options do not apply.
            Some(_) => Vec::new(),
            None => file.store_options.clone().into_iter().collect(),
        };
        options.extend(store_options(&self.store_options)?);
        Ok(Remote {
            coord,
            file,
            token,
            store_url,
            store_options: options,
        })
    }
}

impl Remote {
    /// The store, checked: a store that cannot be reached, a missing
    /// bucket or refused credentials fail here, before anything is written.
    pub(crate) async fn store(&self) -> Result<Store> {
        let store = Store::from_url_with(&self.store_url, &self.store_options)?;
        store.probe().await?;
        Ok(store)
    }

    /// Opens another store than the cluster's (an export's target, an
    /// import's source) at `url`, with `flags` (`KEY=VALUE`) as its
    /// options; without flags, a URL of the same scheme as the cluster's
    /// store (say both `s3://`) takes the cluster store's options.
    pub(crate) fn other_store(&self, url: &str, flags: &[String]) -> Result<Store> {
        let scheme = |u: &str| u.split_once("://").map(|(s, _)| s.to_string());
        let options = if !flags.is_empty() {
            store_options(flags)?
        } else if scheme(url).is_some() && scheme(url) == scheme(&self.store_url) {
            self.store_options.clone()
        } else {
            Vec::new()
        };
        Ok(Store::from_url_with(url, &options)?)
    }

    pub(crate) fn client(&self) -> Client<NetCoordinator> {
        Client::new(self.coord.clone())
    }
}

/// `floe member`.
#[derive(Subcommand)]
pub enum MemberCmd {
    /// Add a coordinator as a voter. Start it first (`floe coordinator
    /// --id ID --listen ADDR --join --peer ...` naming the current members
    /// and itself); once it is a voter, ADDR is added to the cluster file.
    Add {
        /// The new coordinator's node id (not 0, not in use).
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        id: u64,
        /// Its client address (its `--listen`).
        addr: std::net::SocketAddr,
        /// Its metrics address, for `floe status`.
        #[arg(long)]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Remove a coordinator; it stops once it learns. The leader cannot
    /// remove itself: stop it first, another member takes over.
    Remove {
        /// The coordinator's node id.
        id: u64,
    },
}

/// `floe repo`.
#[derive(Subcommand)]
pub enum RepoCmd {
    /// Create a repo (with a `main` branch at an empty root commit).
    Create {
        /// The repo's name.
        name: String,
    },
}

/// `floe array`.
#[derive(Subcommand)]
pub enum ArrayCmd {
    /// Create an array (one commit).
    Create {
        /// The repo.
        repo: String,
        /// The array's path, e.g. `/temperature`.
        path: String,
        /// Shape, comma-separated, e.g. `1000,1000`.
        #[arg(long, value_delimiter = ',')]
        shape: Vec<u64>,
        /// Chunk shape, comma-separated.
        #[arg(long, value_delimiter = ',')]
        chunks: Vec<u64>,
        /// Element type: bool, int8..int64, uint8..uint64, float32, float64
        /// (or i8, u16, f64, ...).
        #[arg(long)]
        dtype: String,
        /// Fill value of chunks never written.
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        fill: f64,
        /// The branch to commit to.
        #[arg(long, default_value = "main")]
        branch: String,
    },
}

/// How `floe write` commits.
#[derive(Clone, Copy, ValueEnum)]
pub enum WriteMode {
    /// Server-side rebase: fast-forwarded by the coordinator in one round trip.
    Rebase,
    /// Lands only on its base; out of date otherwise.
    Strict,
    /// The seed's client loop: commit, ask, fast-forward, commit.
    ClientLoop,
}

/// Who wins a shared chunk under `--mode rebase`.
#[derive(Clone, Copy, ValueEnum)]
pub enum SolverArg {
    /// Refuse with a conflict naming the shared chunks.
    Fail,
    /// Our chunks win.
    Ours,
    /// Theirs win: ours are dropped.
    Theirs,
}

/// `floe write`.
#[derive(Args)]
pub struct WriteArgs {
    /// The repo.
    repo: String,
    /// The array.
    path: String,
    /// The region, e.g. `0:100,200:300`.
    region: String,
    /// The data: a `.npy` file with the region's shape and the array's dtype.
    #[arg(long)]
    from: PathBuf,
    /// The branch.
    #[arg(long, default_value = "main")]
    branch: String,
    /// How to commit.
    #[arg(long, value_enum, default_value = "rebase")]
    mode: WriteMode,
    /// The solver of `--mode rebase`.
    #[arg(long, value_enum, default_value = "fail")]
    solver: SolverArg,
    /// Commit message.
    #[arg(long, default_value = "floe write")]
    message: String,
}

/// `floe read`.
#[derive(Args)]
pub struct ReadArgs {
    /// The repo.
    repo: String,
    /// The array.
    path: String,
    /// The region, e.g. `0:100,200:300`.
    region: String,
    /// Read at this commit (e.g. `C7` or `7`).
    #[arg(long, conflicts_with_all = ["branch", "tag"])]
    at: Option<String>,
    /// Read at this branch's tip (default `main`).
    #[arg(long)]
    branch: Option<String>,
    /// Read at this tag.
    #[arg(long, conflicts_with = "branch")]
    tag: Option<String>,
    /// Where to write the `.npy`.
    #[arg(long)]
    out: PathBuf,
}

/// `floe log`.
#[derive(Args)]
pub struct LogArgs {
    /// The repo.
    repo: String,
    /// The branch.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Most commits shown.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// `floe branch` / `floe tag`.
#[derive(Subcommand)]
pub enum RefCmd {
    /// List them with their commits.
    List {
        /// The repo.
        repo: String,
    },
    /// Create it at a commit.
    Create {
        /// The repo.
        repo: String,
        /// Its name.
        name: String,
        /// The commit (e.g. `C7` or `7`).
        #[arg(long)]
        at: String,
    },
}

pub(crate) fn repo(name: &str) -> Result<RepoName> {
    Ok(RepoName::new(name)?)
}

fn commit_id(text: &str) -> Result<CommitId> {
    let digits = text.trim_start_matches(['C', 'c']);
    let n = digits
        .parse()
        .map_err(|_| anyhow!("{text:?} is not a commit id (e.g. C7)"))?;
    Ok(CommitId(n))
}

/// A dtype by its name (`float64`) or short form (`f64`, `i32`, `u8`).
pub(crate) fn dtype(name: &str) -> Result<DType> {
    let long = match name {
        "f32" => "float32",
        "f64" => "float64",
        short if short.starts_with('i') && !short.starts_with("int") => {
            return dtype(&format!("int{}", &short[1..]))
        }
        short if short.starts_with('u') && !short.starts_with("uint") => {
            return dtype(&format!("uint{}", &short[1..]))
        }
        other => other,
    };
    DType::ALL
        .into_iter()
        .find(|d| d.name() == long)
        .ok_or_else(|| {
            let all: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            anyhow!("unknown dtype {name:?} (one of {})", all.join(", "))
        })
}

/// Runs the commands' async part on a small runtime.
fn block_on<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    block_on_value(f)
}

/// `floe member add|remove`: the change goes through the client core like
/// any command (the leader's node core proposes it); then the members'
/// status is polled until the leader's configuration shows it, and the
/// cluster file follows.
pub fn member(cluster: ClusterArgs, cmd: MemberCmd) -> Result<()> {
    let mut remote = cluster.connect()?;
    let (change, id) = match cmd {
        MemberCmd::Add { id, .. } => (floe_protocol::MemberChange::Add { id }, id),
        MemberCmd::Remove { id } => (floe_protocol::MemberChange::Remove { id }, id),
    };
    let adding = matches!(change, floe_protocol::MemberChange::Add { .. });
    let token = remote.token.clone();
    let endpoints = remote.file.endpoints();
    let coord = remote.coord.clone();
    let voters = block_on_value(async move {
        Client::new(coord)
            .command(Command::ChangeMembers(change))
            .await?;
        wait_for_voters(&endpoints, &token, |voters| voters.contains(&id) == adding).await
    })?;
    let key = id.to_string();
    if let MemberCmd::Add { addr, metrics, .. } = cmd {
        remote.file.nodes.insert(key.clone(), addr);
        if let Some(m) = metrics {
            remote.file.metrics.insert(key, m);
        }
    } else {
        remote.file.nodes.remove(&key);
        remote.file.metrics.remove(&key);
    }
    remote
        .file
        .save(&cluster.cluster)
        .with_context(|| format!("updating {}", cluster.cluster.display()))?;
    let verb = if adding { "added" } else { "removed" };
    println!("{verb} n{id}; voters now {voters:?}");
    Ok(())
}

/// Polls the members until the leader reports voters that pass `done`;
/// gives up after 30 s.
async fn wait_for_voters(
    endpoints: &std::collections::BTreeMap<u64, std::net::SocketAddr>,
    token: &str,
    done: impl Fn(&[u64]) -> bool,
) -> Result<Vec<u64>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        for addr in endpoints.values() {
            let Ok(s) = floe_server::net::node_status(*addr, token).await else {
                continue;
            };
            if s.role == "leader" && done(&s.voters) {
                return Ok(s.voters);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("the change was proposed but no leader reported it applied within 30 s; check `floe status`")
}

pub(crate) fn block_on_value<T, F: std::future::Future<Output = Result<T>>>(f: F) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(f)
}

/// `floe status`.
pub fn status(cluster: ClusterArgs, json: bool) -> Result<()> {
    let remote = cluster.connect()?;
    block_on(async move {
        let mut healthy = 0;
        for (id, addr) in remote.file.endpoints() {
            let metrics = remote.file.metrics.get(&id.to_string());
            match floe_server::net::node_status(addr, &remote.token).await {
                Ok(s) if json => {
                    healthy += 1;
                    println!("{}", status_json(&s, addr, metrics));
                }
                Ok(s) => {
                    healthy += usize::from(s.failure.is_none());
                    println!(
                        "n{id} {addr} pid {} {:<9} term {} commit {} applied {} leader {} voters {:?}{}",
                        s.pid,
                        s.role,
                        s.term,
                        s.commit,
                        s.applied,
                        s.leader.map_or("-".into(), |l| format!("n{l}")),
                        s.voters,
                        metrics.map_or(String::new(), |m| format!(" metrics http://{m}/metrics")),
                    );
                }
                Err(e) if json => println!(
                    "{}",
                    serde_json::json!({
                        "id": id,
                        "address": addr.to_string(),
                        "healthy": false,
                        "error": e.to_string(),
                    })
                ),
                Err(e) => println!("n{id} {addr} unreachable: {e}"),
            }
        }
        if healthy == 0 {
            bail!("no coordinator answered");
        }
        Ok(())
    })
}

fn status_json(
    s: &floe_protocol::NodeStatus,
    addr: std::net::SocketAddr,
    metrics: Option<&std::net::SocketAddr>,
) -> String {
    serde_json::json!({
        "id": s.id,
        "address": addr.to_string(),
        "pid": s.pid,
        "role": s.role,
        "term": s.term,
        "commit": s.commit,
        "applied": s.applied,
        "leader": s.leader,
        "voters": s.voters,
        "healthy": s.failure.is_none(),
        "failure": s.failure,
        "metrics": metrics.map(|m| m.to_string()),
    })
    .to_string()
}

/// `floe repo ...`.
pub fn repo_cmd(cluster: ClusterArgs, cmd: RepoCmd) -> Result<()> {
    let remote = cluster.connect()?;
    let RepoCmd::Create { name } = cmd;
    let name = repo(&name)?;
    block_on(async move {
        remote
            .client()
            .command(Command::CreateRepo { repo: name.clone() })
            .await?;
        println!("created repo {name}");
        Ok(())
    })
}

/// `floe array ...`.
pub fn array_cmd(cluster: ClusterArgs, cmd: ArrayCmd) -> Result<()> {
    let remote = cluster.connect()?;
    let ArrayCmd::Create {
        repo: name,
        path,
        shape,
        chunks,
        dtype: dt,
        fill,
        branch,
    } = cmd;
    let meta = ArrayMeta::new(shape, chunks, dtype(&dt)?, fill)?;
    let (name, path, branch) = (
        repo(&name)?,
        ArrayPath::new(path)?,
        BranchName::new(branch)?,
    );
    block_on(async move {
        let store = remote.store().await?;
        let mut s = Session::checkout(remote.coord.clone(), store, name, branch).await?;
        s.create_array(&path, meta)?;
        let commit = s
            .commit(&format!("create {path}"), CommitMode::Strict)
            .await?;
        println!("{commit}");
        Ok(())
    })
}

/// `floe write`.
pub fn write(cluster: ClusterArgs, args: WriteArgs) -> Result<()> {
    let remote = cluster.connect()?;
    let region: Region = args.region.parse()?;
    let (name, path) = (repo(&args.repo)?, ArrayPath::new(&args.path)?);
    let branch = BranchName::new(&args.branch)?;
    let npy = NpyFile::open(&args.from)?;
    if npy.shape() != region.shape().as_slice() {
        bail!(
            "{} holds shape {:?}, the region {region} has shape {:?}",
            args.from.display(),
            npy.shape(),
            region.shape()
        );
    }
    let full = Region::new(&npy.shape().iter().map(|&n| (0, n)).collect::<Vec<_>>());
    let data = npy.read_region(&full)?;
    block_on(async move {
        let store = remote.store().await?;
        let mut s = Session::checkout(remote.coord.clone(), store, name, branch).await?;
        s.write_region(&path, &region, &data).await?;
        let commit = match args.mode {
            WriteMode::ClientLoop => s.commit_with_fast_forward(&args.message, 16).await?.commit,
            WriteMode::Strict => s.commit(&args.message, CommitMode::Strict).await?,
            WriteMode::Rebase => {
                let solver = match args.solver {
                    SolverArg::Fail => Solver::Fail,
                    SolverArg::Ours => Solver::Ours,
                    SolverArg::Theirs => Solver::Theirs,
                };
                s.commit(&args.message, CommitMode::Rebase { solver })
                    .await?
            }
        };
        println!("{commit}");
        Ok(())
    })
}

/// The record a branch or tag points at.
pub(crate) async fn record(client: &Client<NetCoordinator>, query: Query) -> Result<CommitRecord> {
    match client.call(Request::Query(query)).await? {
        Reply::Commit(rec) => Ok(*rec),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// The commit `--at C | --tag T | --branch B` names (in that order of
/// precedence; the tip of `main` when none is given). A tag or branch is
/// resolved by the coordinator; a commit id is taken as given (reading its
/// record later finds whether it exists).
pub(crate) async fn resolve_commit(
    client: &Client<NetCoordinator>,
    repo: &RepoName,
    (at, tag, branch): (Option<&str>, Option<&str>, Option<&str>),
) -> Result<CommitId> {
    Ok(match (at, tag, branch) {
        (Some(at), _, _) => commit_id(at)?,
        (None, Some(tag), _) => {
            let q = Query::ResolveTag {
                repo: repo.clone(),
                tag: TagName::new(tag)?,
            };
            record(client, q).await?.id
        }
        (None, None, branch) => {
            let q = Query::Checkout {
                repo: repo.clone(),
                branch: BranchName::new(branch.unwrap_or("main"))?,
            };
            record(client, q).await?.id
        }
    })
}

/// `floe read`.
pub fn read(cluster: ClusterArgs, args: ReadArgs) -> Result<()> {
    let remote = cluster.connect()?;
    let region: Region = args.region.parse()?;
    let (name, path) = (repo(&args.repo)?, ArrayPath::new(&args.path)?);
    block_on(async move {
        let client = remote.client();
        let at = (
            args.at.as_deref(),
            args.tag.as_deref(),
            args.branch.as_deref(),
        );
        let commit = resolve_commit(&client, &name, at).await?;
        let mut reader = Reader::new(remote.coord.clone(), remote.store().await?, name);
        let data = reader.read(commit, &path, &region).await?;
        floe_worker::write_npy(&args.out, &data)?;
        println!("{} at {commit}: {} -> {}", path, region, args.out.display());
        Ok(())
    })
}

/// `floe log`.
pub fn log(cluster: ClusterArgs, args: LogArgs) -> Result<()> {
    let remote = cluster.connect()?;
    let name = repo(&args.repo)?;
    let branch = BranchName::new(&args.branch)?;
    block_on(async move {
        let q = Query::Log {
            repo: name,
            branch,
            limit: args.limit,
        };
        let Reply::Log(records) = remote.client().call(Request::Query(q)).await? else {
            bail!("unexpected answer to a log query");
        };
        for rec in records {
            if args.json {
                let line = serde_json::json!({
                    "id": rec.id.to_string(),
                    "parent": rec.parent.map(|p| p.to_string()),
                    "height": rec.height,
                    "message": rec.message,
                    "chunks": rec.footprint.chunk_count(),
                    "rebased_over": rec.rebased_over,
                    "time_ms": rec.time,
                });
                println!("{line}");
            } else {
                println!(
                    "{} {:<40} {} chunks{}",
                    rec.id,
                    rec.message,
                    rec.footprint.chunk_count(),
                    match rec.rebased_over {
                        0 => String::new(),
                        n => format!(", fast-forwarded over {n}"),
                    }
                );
            }
        }
        Ok(())
    })
}

/// `floe branch list` / `floe tag list`.
fn list_refs(remote: Remote, name: &str, tags: bool) -> Result<()> {
    let q = Query::Refs { repo: repo(name)? };
    block_on(async move {
        let Reply::Refs { branches, tags: t } = remote.client().call(Request::Query(q)).await?
        else {
            bail!("unexpected answer to a refs query");
        };
        let rows: Vec<(String, CommitId)> = match tags {
            true => t.into_iter().map(|(n, c)| (n.to_string(), c)).collect(),
            false => branches
                .into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
        };
        for (name, commit) in rows {
            println!("{name} {commit}");
        }
        Ok(())
    })
}

/// `floe branch create|list` / `floe tag create|list`.
pub fn reference(cluster: ClusterArgs, cmd: RefCmd, tag: bool) -> Result<()> {
    let remote = cluster.connect()?;
    let (name, ref_name, at) = match cmd {
        RefCmd::List { repo } => return list_refs(remote, &repo, tag),
        RefCmd::Create { repo, name, at } => (repo, name, at),
    };
    let (name, at) = (repo(&name)?, commit_id(&at)?);
    let command = if tag {
        Command::CreateTag {
            repo: name,
            tag: TagName::new(&ref_name)?,
            at,
        }
    } else {
        Command::CreateBranch {
            repo: name,
            branch: BranchName::new(&ref_name)?,
            at,
        }
    };
    block_on(async move {
        remote
            .client()
            .command(command)
            .await
            .context("creating it")?;
        println!("{} {ref_name} at {at}", if tag { "tag" } else { "branch" });
        Ok(())
    })
}
