//! The durable Raft log: a [`LogStore`] on raft-engine (TiKV's log engine)
//! in a coordinator's data directory, with state-machine snapshots as files
//! beside it.
//!
//! Every write is applied at once to an in-memory [`LogImage`] (what raft
//! reads) and added to one pending [`LogBatch`]. The batch reaches the disk
//! in one engine write with one fsync: either on the log-writer thread
//! ([`EngineLog::take_batch`], then [`LogWriter::write`], then
//! [`EngineLog::durable_through`]) while the node goes on, or in
//! [`LogStore::sync`] when nothing has written it yet. So the entries and
//! hard state of a ready (and of every ready queued behind it) are one
//! group commit, and nothing is reported persisted before its fsync.
//!
//! Snapshots: the snapshot's data (the encoded state machine) is a file
//! `snap/<index>-<term>.snap`, written atomically (temp file, fsync,
//! rename, fsync of the directory) before its metadata is logged; the
//! metadata (index, term, configuration) is a message in the engine, so
//! [`Storage::term`] answers for the truncated index after compaction.
//! Older snapshot files and log files are purged once a newer snapshot is
//! durable.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft_engine::{Command, Config, Engine, LogBatch, MessageExt};

use floe_coordinator::storage::{LogError, LogImage, LogStore};

/// The one Raft group a coordinator holds.
const REGION: u64 = 1;
const HARD_STATE: &[u8] = b"hard_state";
const CONF_STATE: &[u8] = b"conf_state";
const SNAPSHOT: &[u8] = b"snapshot";

/// raft-engine's view of raft-rs entries.
#[derive(Clone)]
pub struct Entries;

impl MessageExt for Entries {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

fn log_err(what: &str, e: impl std::fmt::Display) -> LogError {
    LogError(format!("{what}: {e}"))
}

/// Writes batches to the engine, with an fsync each. Cheap to clone; one
/// per process, owned by the log-writer thread.
#[derive(Clone)]
pub struct LogWriter {
    engine: Arc<Engine>,
}

impl LogWriter {
    /// Writes `batch` and fsyncs it.
    pub fn write(&self, batch: &mut LogBatch) -> Result<(), LogError> {
        self.engine
            .write(batch, true)
            .map(|_| ())
            .map_err(|e| log_err("raft-engine write", e))
    }
}

/// A pending batch taken by [`EngineLog::take_batch`]: write it with
/// [`LogWriter::write`], then report [`EngineLog::durable_through`]`(mark)`.
pub struct Batch {
    /// Every write up to this mark is in the batch.
    pub mark: u64,
    /// The writes.
    pub batch: LogBatch,
}

/// See the module documentation.
pub struct EngineLog {
    engine: Arc<Engine>,
    snap_dir: PathBuf,
    live: LogImage,
    pending: LogBatch,
    /// Writes made so far.
    written: u64,
    /// Writes handed to the writer (in a taken batch or written here).
    taken: u64,
    /// Writes known to be on disk.
    durable: u64,
    /// The newest snapshot file logged; older ones go once it is durable.
    kept_snapshot: Option<PathBuf>,
    /// Files to delete once the write at the mark is durable.
    removals: Vec<(u64, PathBuf)>,
}

impl EngineLog {
    /// Opens (or creates) the log in `dir`, recovering everything that was
    /// synced there.
    pub fn open(dir: &Path) -> Result<Self, LogError> {
        let snap_dir = dir.join("snap");
        fs::create_dir_all(&snap_dir).map_err(|e| log_err("create snapshot directory", e))?;
        let config = Config {
            dir: dir.join("raft").to_string_lossy().into_owned(),
            ..Config::default()
        };
        let engine = Arc::new(Engine::open(config).map_err(|e| log_err("open raft-engine", e))?);
        let (live, kept_snapshot) = recover(&engine, &snap_dir)?;
        Ok(EngineLog {
            engine,
            snap_dir,
            live,
            pending: LogBatch::default(),
            written: 0,
            taken: 0,
            durable: 0,
            kept_snapshot,
            removals: Vec::new(),
        })
    }

    /// A writer for the log-writer thread.
    pub fn writer(&self) -> LogWriter {
        LogWriter {
            engine: self.engine.clone(),
        }
    }

    /// Takes every pending write, for the log-writer thread; `None` when
    /// there is nothing to write.
    pub fn take_batch(&mut self) -> Option<Batch> {
        if self.taken == self.written {
            return None;
        }
        self.taken = self.written;
        let batch = std::mem::take(&mut self.pending);
        Some(Batch {
            mark: self.written,
            batch,
        })
    }

    /// The writer thread made every write up to `mark` durable.
    pub fn durable_through(&mut self, mark: u64) {
        self.durable = self.durable.max(mark);
        if self.removals.iter().any(|(m, _)| *m <= self.durable) {
            self.purge();
        }
    }

    /// Deletes the snapshot files a durable newer snapshot replaced, and
    /// the engine's log files that only hold compacted entries. Failures
    /// only leave garbage behind: logged, not fatal.
    fn purge(&mut self) {
        let durable = self.durable;
        let (gone, kept) = std::mem::take(&mut self.removals)
            .into_iter()
            .partition(|(m, _)| *m <= durable);
        self.removals = kept;
        for (_, path) in gone {
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old snapshot");
            }
        }
        if let Err(e) = self.engine.purge_expired_files() {
            tracing::warn!(error = %e, "raft-engine purge failed");
        }
    }

    fn queued(&mut self) -> Result<(), LogError> {
        self.written += 1;
        Ok(())
    }

    fn put(&mut self, key: &[u8], message: &impl protobuf::Message) -> Result<(), LogError> {
        self.pending
            .put_message(REGION, key.to_vec(), message)
            .map_err(|e| log_err("raft-engine batch", e))?;
        self.queued()
    }

    /// Writes the snapshot's data as a file, atomically, and returns its
    /// path. Done before its metadata is logged, so a logged snapshot
    /// always has its file.
    fn save_snapshot_file(&self, snap: &Snapshot) -> Result<PathBuf, LogError> {
        let meta = snap.get_metadata();
        let path = snapshot_path(&self.snap_dir, meta);
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(snap.get_data())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&self.snap_dir)?.sync_all()
        };
        write().map_err(|e| log_err(&format!("write snapshot {}", path.display()), e))?;
        Ok(path)
    }

    /// Logs a snapshot's metadata (its data is already a durable file).
    fn log_snapshot(&mut self, snap: &Snapshot, path: PathBuf) -> Result<(), LogError> {
        self.put(SNAPSHOT, snap.get_metadata())?;
        self.pending.add_command(
            REGION,
            Command::Compact {
                index: snap.get_metadata().index + 1,
            },
        );
        // The previous file is dropped once this metadata is durable.
        if let Some(old) = self.kept_snapshot.replace(path) {
            self.removals.push((self.written, old));
        }
        Ok(())
    }
}

impl LogStore for EngineLog {
    fn append(&mut self, entries: &[Entry]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.live.append(entries);
        self.pending
            .add_entries::<Entries>(REGION, entries)
            .map_err(|e| log_err("raft-engine batch", e))?;
        self.queued()
    }

    fn set_hard_state(&mut self, hs: &HardState) -> Result<(), LogError> {
        self.live.set_hard_state(hs);
        self.put(HARD_STATE, hs)
    }

    fn set_commit(&mut self, commit: u64) -> Result<(), LogError> {
        if commit <= self.live.hard_state().commit {
            return Ok(());
        }
        self.live.raise_commit(commit);
        let hs = self.live.hard_state().clone();
        self.put(HARD_STATE, &hs)
    }

    fn set_conf_state(&mut self, cs: &ConfState) -> Result<(), LogError> {
        self.live.set_conf_state(cs);
        self.put(CONF_STATE, cs)
    }

    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), LogError> {
        let path = self.save_snapshot_file(snap)?;
        self.live.install(snap);
        // The whole log goes; the states are written again after the clean.
        self.pending.add_command(REGION, Command::Clean);
        let (hs, cs) = (
            self.live.hard_state().clone(),
            self.live.conf_state().clone(),
        );
        self.put(HARD_STATE, &hs)?;
        self.put(CONF_STATE, &cs)?;
        self.log_snapshot(snap, path)
    }

    fn compact(&mut self, snap: &Snapshot) -> Result<(), LogError> {
        if !self.live.takes(snap) {
            return Ok(());
        }
        let path = self.save_snapshot_file(snap)?;
        self.live.compact(snap);
        let hs = self.live.hard_state().clone();
        self.put(HARD_STATE, &hs)?;
        self.log_snapshot(snap, path)
    }

    fn last_snapshot(&self) -> Snapshot {
        self.live.snapshot_ref().clone()
    }

    fn mark(&self) -> u64 {
        self.written
    }

    fn sync(&mut self, mark: u64) -> Result<(), LogError> {
        if mark <= self.durable {
            return Ok(());
        }
        if self.taken >= mark {
            // A batch holding these writes is with the writer thread, which
            // has not reported yet: the node was told too early.
            return Err(LogError(format!(
                "sync to {mark} asked while the log writer holds it (durable {})",
                self.durable
            )));
        }
        if let Some(mut batch) = self.take_batch() {
            self.writer().write(&mut batch.batch)?;
            self.durable_through(batch.mark);
        }
        Ok(())
    }
}

floe_coordinator::storage_over_image!(EngineLog, live);

fn snapshot_path(dir: &Path, meta: &SnapshotMetadata) -> PathBuf {
    dir.join(format!("{:020}-{}.snap", meta.index, meta.term))
}

/// The live image from what the engine and the snapshot files hold, and
/// the snapshot file in use.
fn recover(engine: &Engine, snap_dir: &Path) -> Result<(LogImage, Option<PathBuf>), LogError> {
    let get = |what: &str, e| log_err(&format!("read {what} from raft-engine"), e);
    let hs: HardState = engine
        .get_message(REGION, HARD_STATE)
        .map_err(|e| get("hard state", e))?
        .unwrap_or_default();
    let cs: ConfState = engine
        .get_message(REGION, CONF_STATE)
        .map_err(|e| get("conf state", e))?
        .unwrap_or_default();
    let meta: Option<SnapshotMetadata> = engine
        .get_message(REGION, SNAPSHOT)
        .map_err(|e| get("snapshot metadata", e))?;
    let mut snapshot = Snapshot::default();
    let mut kept = None;
    if let Some(meta) = meta {
        let path = snapshot_path(snap_dir, &meta);
        let data = fs::read(&path).map_err(|e| {
            log_err(
                &format!("the logged snapshot {} cannot be read", path.display()),
                e,
            )
        })?;
        snapshot.set_data(data.into());
        snapshot.set_metadata(meta);
        kept = Some(path);
    }
    let mut entries = Vec::new();
    let first = snapshot.get_metadata().index + 1;
    if let Some(last) = engine.last_index(REGION) {
        let from = engine.first_index(REGION).unwrap_or(first).max(first);
        if from <= last {
            engine
                .fetch_entries_to::<Entries>(REGION, from, last + 1, None, &mut entries)
                .map_err(|e| get("entries", e))?;
        }
    }
    remove_stray_snapshots(snap_dir, kept.as_deref());
    tracing::info!(
        snapshot = snapshot.get_metadata().index,
        first = entries.first().map_or(0, |e| e.index),
        last = entries.last().map_or(0, |e| e.index),
        term = hs.term,
        commit = hs.commit,
        "recovered the raft log"
    );
    Ok((LogImage::recovered(hs, cs, snapshot, entries), kept))
}

/// Snapshot files other than the one in use (left by a crash between
/// writing a newer one and logging it, or before a purge) are garbage.
fn remove_stray_snapshots(dir: &Path, kept: Option<&Path>) {
    let Ok(listing) = fs::read_dir(dir) else {
        return;
    };
    for entry in listing.flatten() {
        let path = entry.path();
        if Some(path.as_path()) != kept {
            let _ = fs::remove_file(&path);
        }
    }
}
