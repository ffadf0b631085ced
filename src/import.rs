//! `floe import zarr`: a Zarr v3 hierarchy (as zarr-python 3 writes it),
//! in a local directory or at an object-store URL, landed as one commit.
//! A thin shell: the source is listed once, the pure `floe_worker::zarr`
//! sorts the listing into nodes and each array's objects and parses every
//! `zarr.json` (refusing codecs, grids, dtypes and key encodings floe
//! cannot hold, naming them), and every object is matched to its chunk
//! before anything is written. Then one session checks out the branch, creates every array,
//! writes each chunk present in the source (decoded and clipped to the
//! array by `zarr::decode_zarr_chunk`) and commits once: chunk objects are
//! stored before the commit, so a failure on the way lands nothing.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use futures::TryStreamExt;
use object_store::path::Path as Key;

use floe_protocol::{ArrayPath, BranchName, CommitId, CommitMode, Query, Solver};
use floe_worker::coop::plan_grid;
use floe_worker::machine::JobSpec;
use floe_worker::source::ZARR_PREFIX;
use floe_worker::zarr::{self, ZarrArray, ZarrNode};
use floe_worker::{Session, Store};

use crate::jobs;
use crate::remote::{block_on_value, record, repo, ClusterArgs};

/// `floe import`.
#[derive(Subcommand)]
pub enum ImportCmd {
    /// Land a Zarr v3 hierarchy (written by zarr-python 3, in a local
    /// directory or at a store URL such as `s3://bucket/h`) as one commit:
    /// every array of it is created at its path (`/g/a` for `SOURCE/g/a`)
    /// with its chunks; chunks absent in the source read
    /// as the fill value. Codecs `bytes` (little endian), optionally
    /// followed by `zstd`, are accepted; anything else is refused before
    /// anything is written.
    Zarr(ZarrArgs),
}

/// `floe import zarr`.
#[derive(Args)]
pub struct ZarrArgs {
    /// The hierarchy's root (holding a group `zarr.json`): a directory, or
    /// an object-store URL (`s3://bucket/prefix`, `file:///abs/dir`).
    source: String,
    /// The repo.
    repo: String,
    /// The branch to commit to.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Commit message (default: `floe import zarr SOURCE`).
    #[arg(long)]
    message: Option<String>,
    /// An object_store option for SOURCE, KEY=VALUE (repeat); by default a
    /// SOURCE of the same scheme as the cluster's store takes its options.
    /// (With `--workers`, the workers open SOURCE with their environment's
    /// settings.)
    #[arg(long = "source-option", value_name = "KEY=VALUE")]
    source_options: Vec<String>,
    /// Import as a cooperative job: the cluster's `floe worker` processes
    /// read SOURCE (a path they all see, or a URL) and write its chunks as
    /// tasks of chunk ranges; the arrays' creation and all their chunks
    /// land as one commit. For large imports.
    #[arg(long)]
    workers: bool,
    /// With `--workers`: about this many tasks per array (default: 64, or
    /// one per chunk for smaller arrays).
    #[arg(long, requires = "workers", conflicts_with = "chunks_per_task")]
    tasks: Option<u64>,
    /// With `--workers`: chunks per task along the first dimension.
    #[arg(long, requires = "workers")]
    chunks_per_task: Option<u64>,
    /// With `--workers`: the lease of a claimed task, ms.
    #[arg(long, requires = "workers", default_value_t = 10_000)]
    lease_ms: u64,
}

/// One array found in the hierarchy, with its chunk files.
struct Found {
    path: ArrayPath,
    array: ZarrArray,
    chunks: Vec<(Vec<u64>, Key)>,
}

/// `floe import ...`.
pub fn import(cluster: ClusterArgs, cmd: ImportCmd) -> Result<()> {
    let ImportCmd::Zarr(args) = cmd;
    let remote = cluster.connect()?;
    let source = open_source(&remote, &args)?;
    let found = block_on_value(discover(&source, &args.source))?;
    if found.is_empty() {
        bail!("{} holds no arrays; nothing to import", args.source);
    }
    let name = repo(&args.repo)?;
    let branch = BranchName::new(&args.branch)?;
    let message = args
        .message
        .clone()
        .unwrap_or_else(|| format!("floe import zarr {}", args.source));
    let (repo_name, branch_name) = (name.clone(), branch.clone());
    let arrays = found.len();
    let chunks: usize = found.iter().map(|f| f.chunks.len()).sum();
    if args.workers && chunks > 0 {
        let commit = cooperative(&remote, &args, found, message)?;
        println!(
            "imported {arrays} arrays ({chunks} chunks) from {} into {repo_name} branch \
             {branch_name} at {commit}, through floe worker processes",
            args.source
        );
        return Ok(());
    }
    let label = args.source.clone();
    let commit = block_on_value(async move {
        let store = remote.store().await?;
        let mut s = Session::checkout(remote.coord.clone(), store, name.clone(), branch.clone())
            .await
            .with_context(|| format!("checking out branch {branch} of {name}"))?;
        refuse_existing(s.arrays(), found.iter().map(|f| &f.path), &name, &branch)?;
        for f in &found {
            s.create_array(&f.path, f.array.meta.clone())
                .with_context(|| format!("creating array {}", f.path))?;
        }
        for f in &found {
            for (coord, key) in &f.chunks {
                let bytes = source
                    .get_raw(key)
                    .await
                    .with_context(|| format!("reading {key} of {label}"))?;
                let (region, data) = zarr::decode_zarr_chunk(&f.array.meta, coord, &bytes)
                    .map_err(|e| anyhow!("array {} chunk {key} ({coord:?}): {e}", f.path))?;
                s.write_region(&f.path, &region, &data)
                    .await
                    .with_context(|| format!("writing array {} chunk {coord:?}", f.path))?;
            }
        }
        let commit = s
            .commit(
                &message,
                CommitMode::Rebase {
                    solver: Solver::Fail,
                },
            )
            .await
            .with_context(|| format!("committing to branch {branch} of {name}"))?;
        Ok(commit)
    })?;
    println!(
        "imported {arrays} arrays ({chunks} chunks) from {} into {repo_name} branch {branch_name} at {commit}",
        args.source
    );
    Ok(())
}

/// Lands the import as one cooperative job: one session on the branch that
/// creates every array and plans tasks over the chunk ranges holding the
/// source's chunks; `floe worker` processes read them from the source
/// (`zarr:SOURCE`) and write them; the session commits once.
fn cooperative(
    remote: &crate::remote::Remote,
    args: &ZarrArgs,
    found: Vec<Found>,
    message: String,
) -> Result<CommitId> {
    let name = repo(&args.repo)?;
    let branch = BranchName::new(&args.branch)?;
    let source = jobs::absolute_source(&format!("{ZARR_PREFIX}{}", args.source))?;
    let mut plan = Vec::new();
    let mut create = BTreeMap::new();
    let mut bytes = 0u64;
    for f in found {
        let meta = &f.array.meta;
        let tiling = jobs::tiling(meta, args.tasks, args.chunks_per_task);
        let coords: Vec<Vec<u64>> = f.chunks.into_iter().map(|(c, _)| c).collect();
        plan.extend(zarr::import_tasks(
            meta,
            plan_grid(&f.path, meta, &tiling)?,
            &coords,
        ));
        bytes += coords.len() as u64 * floe_worker::format::chunk_bytes(meta) as u64;
        create.insert(f.path, f.array.meta);
    }
    let spec = JobSpec {
        repo: name.clone(),
        branch: branch.clone(),
        plan,
        lease_ms: args.lease_ms,
        message,
        mode: CommitMode::Rebase {
            solver: Solver::Fail,
        },
        source: Some(source),
        create,
    };
    block_on_value(async move {
        let tip = record(
            &remote.client(),
            Query::Checkout {
                repo: name.clone(),
                branch: branch.clone(),
            },
        )
        .await
        .with_context(|| format!("checking out branch {branch} of {name}"))?;
        refuse_existing(&tip.arrays, spec.create.keys(), &name, &branch)?;
        jobs::run_job(&remote.coord, spec, bytes).await
    })
}

/// Refuses to import over an array the branch already has.
fn refuse_existing<'a>(
    arrays: &BTreeMap<ArrayPath, floe_protocol::ArrayMeta>,
    paths: impl IntoIterator<Item = &'a ArrayPath>,
    name: &floe_protocol::RepoName,
    branch: &BranchName,
) -> Result<()> {
    for path in paths {
        if arrays.contains_key(path) {
            bail!(
                "array {path} already exists on branch {branch} of {name}; floe import zarr only \
                 creates arrays (import into another branch or repo)"
            );
        }
    }
    Ok(())
}

/// The source's store. A local directory must exist (a store would create
/// it empty).
fn open_source(remote: &crate::remote::Remote, args: &ZarrArgs) -> Result<Store> {
    if let Some(dir) = crate::remote::local_dir(&args.source) {
        if !std::path::Path::new(dir).is_dir() {
            bail!("{}: no such directory", args.source);
        }
    }
    remote.other_store(&args.source, &args.source_options)
}

/// Every array of the hierarchy in `store` (named `source` in messages),
/// with its chunk objects, in path order: one listing, sorted by the pure
/// `zarr::node_dirs` / `zarr::array_objects`.
async fn discover(store: &Store, source: &str) -> Result<Vec<Found>> {
    store.probe().await?;
    let keys: Vec<String> = store
        .object_store()
        .list(None)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .with_context(|| format!("listing {source}"))?;
    let dirs = zarr::node_dirs(keys.iter().map(String::as_str));
    if dirs.first().map(String::as_str) != Some("") {
        bail!("{source} is not a Zarr v3 hierarchy (it has no zarr.json)");
    }
    let mut nodes = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for dir in dirs {
        if !zarr::reachable(&kinds, &dir) {
            continue;
        }
        let node = node(store, source, &dir).await?;
        if dir.is_empty() && matches!(node, ZarrNode::Array(_)) {
            bail!("{source} is a Zarr array, not a group: floe imports a hierarchy (a group holding arrays)");
        }
        kinds.insert(dir.clone(), matches!(node, ZarrNode::Array(_)));
        nodes.insert(dir, node);
    }
    let objects = zarr::array_objects(&kinds, keys.iter().map(String::as_str));
    let mut found = Vec::new();
    for (dir, keys) in objects {
        let Some(ZarrNode::Array(array)) = nodes.remove(&dir) else {
            continue;
        };
        let text = format!("/{dir}");
        let path =
            ArrayPath::new(&text).with_context(|| format!("{text} is not a floe array path"))?;
        let chunks = chunk_keys(&dir, &path, &array, keys)?;
        found.push(Found {
            path,
            array: *array,
            chunks,
        });
    }
    Ok(found)
}

/// Reads and parses the `zarr.json` of the node at `dir`.
async fn node(store: &Store, source: &str, dir: &str) -> Result<ZarrNode> {
    let key = if dir.is_empty() {
        Key::from("zarr.json")
    } else {
        Key::from(format!("{dir}/zarr.json"))
    };
    let text = store
        .get_raw(&key)
        .await
        .with_context(|| format!("reading {source}/{key}"))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {source}/{key}"))?;
    let name = format!("/{dir}");
    Ok(zarr::parse_node(&name, &doc)?)
}

/// Each object of an array matched to its chunk coordinate; any object
/// that is not a chunk key of the array (in its encoding, inside its grid)
/// is refused.
fn chunk_keys(
    dir: &str,
    path: &ArrayPath,
    array: &ZarrArray,
    keys: Vec<String>,
) -> Result<Vec<(Vec<u64>, Key)>> {
    let rank = array.meta.shape.len();
    let grid = array.meta.grid();
    let mut chunks = Vec::with_capacity(keys.len());
    for key in keys {
        let coord = array
            .keys
            .parse(&key, rank)
            .filter(|c| c.iter().zip(&grid).all(|(i, g)| i < g))
            .ok_or_else(|| {
                anyhow!(
                    "array {path}: {key} is not a chunk of it (keys like {}, grid {grid:?})",
                    array.keys.key(&vec![0; rank])
                )
            })?;
        chunks.push((coord, Key::from(format!("{dir}/{key}"))));
    }
    chunks.sort();
    Ok(chunks)
}
