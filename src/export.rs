//! `floe export zarr`: one commit's arrays as a Zarr v3 hierarchy in a
//! local directory or at an object-store URL. A thin shell: the commit is resolved as `floe read`
//! resolves it, its chunk map comes from the reader
//! (`Reader::chunk_map`, the walk checkpoints use), the documents and chunk
//! keys from the pure `floe_worker::zarr`, and each chunk object is decoded
//! (`Store::get_chunk`) and re-encoded for Zarr. A local export is written
//! into a staging directory beside the target and renamed into place at
//! the end, so a failure leaves nothing behind. An object store has no
//! rename: there the chunks go first and the `zarr.json` documents last,
//! deepest first and the root group's at the very end, so a failed export
//! leaves no hierarchy that opens.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};

use futures::StreamExt;
use object_store::path::Path as Key;

use floe_worker::{zarr, Reader, Store};

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
    /// Where to write: a directory that does not exist or is empty, or an
    /// object-store URL with nothing under it (`s3://bucket/prefix`).
    #[arg(long)]
    to: String,
    /// An object_store option for `--to`, KEY=VALUE (repeat); by default a
    /// URL of the same scheme as the cluster's store takes its options.
    #[arg(long = "to-option", value_name = "KEY=VALUE")]
    to_options: Vec<String>,
}

/// `floe export ...`.
pub fn export(cluster: ClusterArgs, cmd: ExportCmd) -> Result<()> {
    let ExportCmd::Zarr(args) = cmd;
    let remote = cluster.connect()?;
    let target = Target::open(&remote, &args)?;
    let name = repo(&args.repo)?;
    let (repo_name, to) = (name.clone(), args.to.clone());
    let (arrays, chunks, commit) = block_on_value(async move {
        let at = (
            args.at.as_deref(),
            args.tag.as_deref(),
            args.branch.as_deref(),
        );
        let commit = resolve_commit(&remote.client(), &name, at).await?;
        target.check_empty().await?;
        let store = remote.store().await?;
        let mut reader = Reader::new(remote.coord.clone(), store.clone(), name.clone());
        let record = reader
            .record(commit)
            .await
            .with_context(|| format!("reading commit {commit} of {name}"))?;
        let nodes = zarr::hierarchy(&record.arrays)
            .with_context(|| format!("{commit} of {name} cannot be written as Zarr"))?;
        let map = reader.chunk_map(commit).await?;
        let mut chunks = 0usize;
        for (path, meta) in &record.arrays {
            let dir = zarr::segments(path)?.join("/");
            for (coord, &id) in map.arrays.get(path).into_iter().flatten() {
                let buffer = store
                    .get_chunk(&name, meta, id)
                    .await
                    .with_context(|| format!("{path} chunk {coord:?} at {commit}"))?;
                let bytes = zarr::encode_chunk(meta, &buffer)
                    .with_context(|| format!("{path} chunk {coord:?} at {commit}"))?;
                target
                    .put(&format!("{dir}/{}", zarr::chunk_key(coord)), bytes)
                    .await?;
                chunks += 1;
            }
        }
        // Children before parents, the root group last.
        for node in nodes.iter().rev() {
            let doc = serde_json::to_vec_pretty(&node.metadata)?;
            let key = node.dir.iter().map(String::as_str).chain(["zarr.json"]);
            target.put(&key.collect::<Vec<_>>().join("/"), doc).await?;
        }
        target.finish()?;
        Ok((record.arrays.len(), chunks, commit))
    })?;
    println!(
        "exported {arrays} arrays ({chunks} chunks) of {repo_name} at {commit} to {}",
        to
    );
    Ok(())
}

/// Where an export goes: a local directory (through a staging directory
/// renamed into place) or an object store.
struct Target {
    store: Store,
    /// The staging directory and the final one, for a local export.
    local: Option<(Staging, PathBuf)>,
    label: String,
}

impl Target {
    fn open(remote: &crate::remote::Remote, args: &ZarrArgs) -> Result<Target> {
        let Some(dir) = crate::remote::local_dir(&args.to).map(PathBuf::from) else {
            return Ok(Target {
                store: remote.other_store(&args.to, &args.to_options)?,
                local: None,
                label: args.to.clone(),
            });
        };
        if !args.to_options.is_empty() {
            bail!(
                "--to-option is for object-store URLs, not the directory {}",
                dir.display()
            );
        }
        check_target(&dir)?;
        let staging = Staging::beside(&dir)?;
        Ok(Target {
            store: Store::local(staging.dir(&[]))?,
            local: Some((staging, dir)),
            label: args.to.clone(),
        })
    }

    /// Refuses a URL target that already holds objects (a local one was
    /// checked when opened).
    async fn check_empty(&self) -> Result<()> {
        if self.local.is_some() {
            return Ok(());
        }
        self.store.probe().await?;
        let first = self.store.object_store().list(None).next().await;
        match first {
            None => Ok(()),
            Some(Ok(meta)) => bail!(
                "--to {} is not empty (it holds {}); export to a new prefix",
                self.label,
                meta.location
            ),
            Some(Err(e)) => Err(e).with_context(|| format!("listing {}", self.label)),
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        self.store
            .put_raw(&Key::from(key), bytes)
            .await
            .with_context(|| format!("writing {key} to {}", self.label))
    }

    /// Moves a local export into place.
    fn finish(self) -> Result<()> {
        match self.local {
            Some((staging, dir)) => staging.finish(&dir),
            None => Ok(()),
        }
    }
}

/// Refuses a local target that exists and is not an empty directory.
fn check_target(to: &Path) -> Result<()> {
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
