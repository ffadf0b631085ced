//! `floe export zarr`: one commit's arrays as a Zarr v3 hierarchy in a
//! local directory. A thin shell: the commit is resolved as `floe read`
//! resolves it, its chunk map comes from the reader
//! (`Reader::chunk_map`, the walk checkpoints use), the documents and chunk
//! keys from the pure `floe_worker::zarr`, and each chunk object is decoded
//! (`Store::get_chunk`) and re-encoded for Zarr. Everything is written
//! into a staging directory beside the target and renamed into place at
//! the end, so a failure leaves nothing behind.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};

use floe_worker::{zarr, Reader};

use crate::remote::{block_on_value, repo, resolve_commit, ClusterArgs};

/// `floe export`.
#[derive(Subcommand)]
pub enum ExportCmd {
    /// Write a commit's arrays as a Zarr v3 hierarchy (zarr-python 3 opens
    /// it): groups and arrays with their `zarr.json`, chunks under
    /// `<array>/c/i/j`; chunks never written are left out (they read as
    /// the fill value).
    Zarr(ZarrArgs),
}

/// `floe export zarr`.
#[derive(Args)]
#[command(group(ArgGroup::new("commit").required(true).args(["at", "branch", "tag"])))]
pub struct ZarrArgs {
    /// The repo.
    repo: String,
    /// Export this commit (e.g. `C7` or `7`).
    #[arg(long)]
    at: Option<String>,
    /// Export this branch's tip.
    #[arg(long)]
    branch: Option<String>,
    /// Export this tag's commit.
    #[arg(long)]
    tag: Option<String>,
    /// The directory to write; it must not exist or be empty.
    #[arg(long)]
    to: PathBuf,
}

/// `floe export ...`.
pub fn export(cluster: ClusterArgs, cmd: ExportCmd) -> Result<()> {
    let ExportCmd::Zarr(args) = cmd;
    check_target(&args.to)?;
    let remote = cluster.connect()?;
    let name = repo(&args.repo)?;
    let to = args.to.clone();
    let repo_name = name.clone();
    let (arrays, chunks, commit) = block_on_value(async move {
        let at = (
            args.at.as_deref(),
            args.tag.as_deref(),
            args.branch.as_deref(),
        );
        let commit = resolve_commit(&remote.client(), &name, at).await?;
        let store = remote.store().await?;
        let mut reader = Reader::new(remote.coord.clone(), store.clone(), name.clone());
        let record = reader
            .record(commit)
            .await
            .with_context(|| format!("reading commit {commit} of {name}"))?;
        let nodes = zarr::hierarchy(&record.arrays)
            .with_context(|| format!("{commit} of {name} cannot be written as Zarr"))?;
        let map = reader.chunk_map(commit).await?;
        let staging = Staging::beside(&args.to)?;
        for node in &nodes {
            let dir = staging.dir(&node.dir);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let doc = serde_json::to_vec_pretty(&node.metadata)?;
            write(&dir.join("zarr.json"), &doc)?;
        }
        let mut chunks = 0usize;
        for (path, meta) in &record.arrays {
            let dir = staging.dir(&zarr::segments(path)?);
            for (coord, &id) in map.arrays.get(path).into_iter().flatten() {
                let buffer = store
                    .get_chunk(&name, meta, id)
                    .await
                    .with_context(|| format!("{path} chunk {coord:?} at {commit}"))?;
                let bytes = zarr::encode_chunk(meta, &buffer)
                    .with_context(|| format!("{path} chunk {coord:?} at {commit}"))?;
                let file = dir.join(zarr::chunk_key(coord));
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                write(&file, &bytes)?;
                chunks += 1;
            }
        }
        staging.finish(&args.to)?;
        Ok((record.arrays.len(), chunks, commit))
    })?;
    println!(
        "exported {arrays} arrays ({chunks} chunks) of {repo_name} at {commit} to {}",
        to.display()
    );
    Ok(())
}

/// Refuses a target that exists and is not an empty directory, or that
/// is a URL (only local directories are written).
fn check_target(to: &Path) -> Result<()> {
    if to.to_string_lossy().contains("://") {
        bail!(
            "--to {}: only a local directory can be written (not a URL)",
            to.display()
        );
    }
    match std::fs::symlink_metadata(to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("--to {}", to.display())),
        Ok(m) if !m.is_dir() => bail!("--to {} exists and is not a directory", to.display()),
        Ok(_) => {
            let mut entries =
                std::fs::read_dir(to).with_context(|| format!("--to {}", to.display()))?;
            if entries.next().is_some() {
                bail!(
                    "--to {} exists and is not empty; export into a new or empty directory",
                    to.display()
                );
            }
            Ok(())
        }
    }
}

fn write(file: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(file, bytes).with_context(|| format!("writing {}", file.display()))
}

/// A directory beside the target that the export fills; removed on drop
/// unless [`Staging::finish`] renamed it into place.
struct Staging(Option<tempfile::TempDir>);

impl Staging {
    fn beside(to: &Path) -> Result<Self> {
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(".floe-export-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
        Ok(Staging(Some(dir)))
    }

    /// The staging directory's subdirectory `segments`.
    fn dir(&self, segments: &[String]) -> PathBuf {
        let mut dir = self
            .0
            .as_ref()
            .map_or_else(PathBuf::new, |d| d.path().to_path_buf());
        dir.extend(segments);
        dir
    }

    /// Renames the staged hierarchy to `to` (an empty directory there is
    /// replaced; anything else appearing meanwhile is refused).
    fn finish(mut self, to: &Path) -> Result<()> {
        let Some(dir) = self.0.take() else {
            bail!("the staging directory is gone");
        };
        check_target(to)?;
        if to.exists() {
            std::fs::remove_dir(to).with_context(|| format!("replacing {}", to.display()))?;
        }
        let staged = dir.keep();
        // A temporary directory is private (0700); an export is not.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let open = std::fs::Permissions::from_mode(0o755);
            let _ = std::fs::set_permissions(&staged, open);
        }
        if let Err(e) = std::fs::rename(&staged, to) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(e).with_context(|| format!("moving the export into {}", to.display()));
        }
        Ok(())
    }
}
