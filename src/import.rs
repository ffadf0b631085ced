//! `floe import zarr`: a local Zarr v3 hierarchy (as zarr-python 3 writes
//! it) landed as one commit. A thin shell: the hierarchy is walked and
//! every `zarr.json` parsed by the pure `floe_worker::zarr` (which refuses
//! codecs, grids, dtypes and key encodings floe cannot hold, naming them)
//! and every chunk file is matched to its chunk before anything is
//! written. Then one session checks out the branch, creates every array,
//! writes each chunk present in the source (decoded and clipped to the
//! array by `zarr::decode_zarr_chunk`) and commits once: chunk objects are
//! stored before the commit, so a failure on the way lands nothing.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};

use floe_protocol::{ArrayPath, BranchName, CommitMode, Solver};
use floe_worker::zarr::{self, ZarrArray, ZarrNode};
use floe_worker::Session;

use crate::remote::{block_on_value, repo, ClusterArgs};

/// `floe import`.
#[derive(Subcommand)]
pub enum ImportCmd {
    /// Land a Zarr v3 hierarchy (a local directory written by zarr-python
    /// 3) as one commit: every array of it is created at its path (`/g/a`
    /// for `SOURCE/g/a`) with its chunks; chunks absent in the source read
    /// as the fill value. Codecs `bytes` (little endian), optionally
    /// followed by `zstd`, are accepted; anything else is refused before
    /// anything is written.
    Zarr(ZarrArgs),
}

/// `floe import zarr`.
#[derive(Args)]
pub struct ZarrArgs {
    /// The hierarchy's root directory (holding a group `zarr.json`).
    source: PathBuf,
    /// The repo.
    repo: String,
    /// The branch to commit to.
    #[arg(long, default_value = "main")]
    branch: String,
    /// Commit message (default: `floe import zarr SOURCE`).
    #[arg(long)]
    message: Option<String>,
}

/// One array found in the hierarchy, with its chunk files.
struct Found {
    path: ArrayPath,
    array: ZarrArray,
    chunks: Vec<(Vec<u64>, PathBuf)>,
}

/// `floe import ...`.
pub fn import(cluster: ClusterArgs, cmd: ImportCmd) -> Result<()> {
    let ImportCmd::Zarr(args) = cmd;
    let found = discover(&args.source)?;
    if found.is_empty() {
        bail!(
            "{} holds no arrays; nothing to import",
            args.source.display()
        );
    }
    let remote = cluster.connect()?;
    let name = repo(&args.repo)?;
    let branch = BranchName::new(&args.branch)?;
    let message = args
        .message
        .clone()
        .unwrap_or_else(|| format!("floe import zarr {}", args.source.display()));
    let (repo_name, branch_name) = (name.clone(), branch.clone());
    let arrays = found.len();
    let chunks: usize = found.iter().map(|f| f.chunks.len()).sum();
    let commit = block_on_value(async move {
        let store = remote.store().await?;
        let mut s = Session::checkout(remote.coord.clone(), store, name.clone(), branch.clone())
            .await
            .with_context(|| format!("checking out branch {branch} of {name}"))?;
        for f in &found {
            if s.arrays().contains_key(&f.path) {
                bail!(
                    "array {} already exists on branch {branch} of {name}; floe import zarr only \
                     creates arrays (import into another branch or repo)",
                    f.path
                );
            }
        }
        for f in &found {
            s.create_array(&f.path, f.array.meta.clone())
                .with_context(|| format!("creating array {}", f.path))?;
        }
        for f in &found {
            for (coord, file) in &f.chunks {
                let bytes =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                let (region, data) = zarr::decode_zarr_chunk(&f.array.meta, coord, &bytes)
                    .map_err(|e| {
                        anyhow!("array {} chunk {} ({coord:?}): {e}", f.path, file.display())
                    })?;
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
        args.source.display()
    );
    Ok(())
}

/// Reads and parses `dir/zarr.json`; `node` names it in messages.
fn node(dir: &Path, node: &str) -> Result<ZarrNode> {
    let file = dir.join("zarr.json");
    let text = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", file.display()))?;
    Ok(zarr::parse_node(node, &doc)?)
}

/// Every array of the hierarchy at `root`, with its chunk files, in path
/// order. The root must be a group; subdirectories of a group without a
/// `zarr.json` are not nodes and are skipped.
fn discover(root: &Path) -> Result<Vec<Found>> {
    if !root.join("zarr.json").is_file() {
        bail!(
            "{} is not a Zarr v3 hierarchy (it has no zarr.json)",
            root.display()
        );
    }
    if let ZarrNode::Array(_) = node(root, "/")? {
        bail!(
            "{} is a Zarr array, not a group: floe imports a hierarchy (a group holding arrays)",
            root.display()
        );
    }
    let mut found = Vec::new();
    let mut groups = vec![(root.to_path_buf(), Vec::<String>::new())];
    while let Some((dir, segments)) = groups.pop() {
        for sub in subdirectories(&dir)? {
            if !sub.join("zarr.json").is_file() {
                continue;
            }
            let Some(name) = sub.file_name().and_then(|n| n.to_str()) else {
                bail!("{}: not a UTF-8 node name", sub.display());
            };
            let mut segs = segments.clone();
            segs.push(name.to_string());
            let text = format!("/{}", segs.join("/"));
            match node(&sub, &text)? {
                ZarrNode::Group => groups.push((sub, segs)),
                ZarrNode::Array(array) => {
                    let path = ArrayPath::new(&text)
                        .with_context(|| format!("{text} is not a floe array path"))?;
                    let chunks = chunk_files(&sub, &path, &array)?;
                    found.push(Found {
                        path,
                        array: *array,
                        chunks,
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// The subdirectories of `dir`, sorted.
fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut subs = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.path().is_dir() {
            subs.push(entry.path());
        }
    }
    subs.sort();
    Ok(subs)
}

/// Every chunk file below an array's directory with its coordinate. Hidden
/// files are skipped; any other file that is not a chunk key of the array
/// is refused.
fn chunk_files(
    dir: &Path,
    path: &ArrayPath,
    array: &ZarrArray,
) -> Result<Vec<(Vec<u64>, PathBuf)>> {
    let rank = array.meta.shape.len();
    let grid = array.meta.grid();
    let mut chunks = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let entry = entry.with_context(|| format!("listing {}", d.display()))?;
            let file = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                bail!("array {path}: {} is not a chunk key", file.display());
            };
            if name.starts_with('.') || (prefix.is_empty() && name == "zarr.json") {
                continue;
            }
            let key = format!("{prefix}{name}");
            if file.is_dir() {
                pending.push((file, format!("{key}/")));
                continue;
            }
            let coord = array
                .keys
                .parse(&key, rank)
                .filter(|c| c.iter().zip(&grid).all(|(i, g)| i < g))
                .ok_or_else(|| {
                    anyhow!(
                        "array {path}: {} is not a chunk of it (keys like {}, grid {grid:?})",
                        file.display(),
                        array.keys.key(&vec![0; rank])
                    )
                })?;
            chunks.push((coord, file));
        }
    }
    chunks.sort();
    Ok(chunks)
}
