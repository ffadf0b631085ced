//! The chaos workload: non-cooperative writers on one array shared by
//! every writer (so conflicts, fast-forwards and solvers all happen), in
//! every commit mode and solver, on aligned and unaligned regions, with
//! resizes, branch and tag creation, reads of branch tips, and duplicate
//! deliveries of acknowledged commits (an at-least-once network resending
//! a request whose answer was lost: the idempotency table must answer it
//! with the original commit); then the final reads of every branch, tag
//! and array. Each operation is one
//! invoke and one completion in the history, with what the checkers need
//! to judge it (see `floe-history`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, ConflictKind, Coordinator,
    DType, Envelope, FloeError, Outcome, Query, Region, Reply, RepoName, Request, Solver, TagName,
};
use floe_server::NetCoordinator;
use floe_worker::{ArrayData, Client, Session, Store};

use super::History;

/// The repo every operation works in.
pub const REPO: &str = "chaos";
/// The shared array.
const ARRAY: &str = "/a";
/// Elements per chunk.
const CHUNK: u64 = 8;
/// The array cooperative jobs write, whole, with the worker processes.
const JOB_ARRAY: &str = "/j";
/// Its shape and chunks: 16 x 2 chunks, one task each (enough that the
/// workers hold tasks most of the time, so faults hit them mid-task).
const JOB_SHAPE: [u64; 2] = [64, 16];
const JOB_CHUNKS: [u64; 2] = [4, 8];
/// A job's lease: short, so that a paused or killed worker loses its task
/// within the nemesis's hold and a late completion meets a newer epoch.
const JOB_LEASE_MS: u64 = 1_500;
/// Chunks of the array at the start: few enough that writers collide.
const CHUNKS: u64 = 24;
/// Branches created at most (beyond `main`), so writes stay concentrated.
const MAX_BRANCHES: usize = 4;
/// How long one operation may take before it is recorded as
/// indeterminate.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Acknowledged commits a writer keeps for duplicate deliveries: enough
/// that a resend often reaches back past a restart or a snapshot install,
/// where a lost idempotency table would show.
const KEPT_ACKS: usize = 4096;

/// A writer's coordinator: the network client, remembering the last
/// commit envelope it sent (so that the writer can deliver it again) and
/// the client id and sequence number of the last request of any kind (so
/// that each operation in the history carries them).
pub struct Recording {
    inner: Arc<NetCoordinator>,
    last: Mutex<Option<Envelope>>,
    last_id: Mutex<Option<(u64, u64)>>,
}

impl Recording {
    /// Wraps `inner`.
    pub fn new(inner: Arc<NetCoordinator>) -> Self {
        Recording {
            inner,
            last: Mutex::new(None),
            last_id: Mutex::new(None),
        }
    }

    /// `value` with the client id and sequence number of the last request
    /// sent (the operation's own, as the coordinator saw it).
    fn stamp(&self, mut value: Value) -> Value {
        let id = self.last_id.lock().ok().and_then(|mut l| l.take());
        if let (Some((client, seq)), Some(map)) = (id, value.as_object_mut()) {
            map.insert("client".into(), json!(client));
            map.insert("seq".into(), json!(seq));
        }
        value
    }

    fn take_last(&self) -> Option<Envelope> {
        self.last.lock().ok()?.take()
    }
}

impl Coordinator for Recording {
    fn nodes(&self) -> Vec<u64> {
        self.inner.nodes()
    }

    async fn send(&self, to: u64, envelope: Envelope) -> Outcome {
        if let Ok(mut id) = self.last_id.lock() {
            *id = Some((envelope.client.0, envelope.seq));
        }
        if matches!(envelope.request, Request::Command(Command::Commit(_))) {
            if let Ok(mut last) = self.last.lock() {
                *last = Some(envelope.clone());
            }
        }
        self.inner.send(to, envelope).await
    }
}

/// An acknowledged commit and the envelope that carried it.
struct Acked {
    branch: String,
    message: String,
    commit: CommitId,
    envelope: Envelope,
}

/// What the writers share: the branches created so far.
#[derive(Clone, Default)]
pub struct Shared {
    branches: Arc<Mutex<Vec<String>>>,
}

/// Creates the repo and the array (recorded as a commit with its
/// creation, so the data checker's model starts from it).
pub async fn setup(coord: &Arc<Recording>, store: &Store, history: &History) -> Result<()> {
    let repo = RepoName::new(REPO)?;
    Client::new(coord.clone())
        .command(Command::CreateRepo { repo: repo.clone() })
        .await?;
    let mut s = Session::checkout(coord.clone(), store.clone(), repo, main()?).await?;
    let meta = ArrayMeta::new(vec![CHUNKS * CHUNK], vec![CHUNK], DType::I64, 0.0)?;
    s.create_array(&ArrayPath::new(ARRAY)?, meta)?;
    let job_meta = ArrayMeta::new(JOB_SHAPE.to_vec(), JOB_CHUNKS.to_vec(), DType::I64, 0.0)?;
    s.create_array(&ArrayPath::new(JOB_ARRAY)?, job_meta)?;
    let create = vec![
        json!({"array": ARRAY, "create": {"shape": [CHUNKS * CHUNK], "chunks": [CHUNK], "fill": 0}}),
        json!({"array": JOB_ARRAY, "create": {"shape": JOB_SHAPE, "chunks": JOB_CHUNKS, "fill": 0}}),
    ];
    let invoke = commit_invoke(&s, "main", "create", "strict", None, create);
    history.line(json!("setup"), "invoke", "commit", invoke);
    let id = s.commit_and_close("create", CommitMode::Strict).await?;
    history.line(
        json!("setup"),
        "ok",
        "commit",
        json!({"commit": id.to_string()}),
    );
    Ok(())
}

fn main() -> Result<BranchName, FloeError> {
    BranchName::new("main")
}

/// A writer: operations drawn from `seed` until `deadline`.
pub struct Writer {
    /// Its process number in the history.
    pub p: u64,
    /// The cluster, through a recording client.
    pub coord: Arc<Recording>,
    /// Where chunks go.
    pub store: Store,
    /// Where operations are recorded.
    pub history: History,
    /// What writers share.
    pub shared: Shared,
    /// Its choices.
    pub seed: u64,
}

impl Writer {
    /// Runs operations until `deadline`.
    pub async fn run(self, deadline: Instant) {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut acked = std::collections::VecDeque::new();
        let mut k = 0u64;
        while Instant::now() < deadline {
            k += 1;
            let branch = self.pick_branch(&mut rng);
            let done = match rng.gen_range(0..100) {
                0..=56 => self.write(&mut rng, k, &branch, false, &mut acked).await,
                57..=61 => self.write(&mut rng, k, &branch, true, &mut acked).await,
                62..=64 => self.resend(&mut rng, &acked).await,
                65..=84 => self.read(&branch).await,
                85..=92 => self.tag(k, &branch).await,
                _ => self.branch(k).await,
            };
            if done.is_err() {
                // Could not even start (no checkout): wait for the cluster.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn pick_branch(&self, rng: &mut StdRng) -> String {
        let branches = self.shared.branches.lock().map(|b| b.clone());
        match branches {
            Ok(b) if !b.is_empty() && rng.gen_bool(0.25) => b[rng.gen_range(0..b.len())].clone(),
            _ => "main".into(),
        }
    }

    async fn checkout(&self, branch: &str) -> Result<Session<Recording>> {
        let repo = RepoName::new(REPO)?;
        let checkout = Session::checkout(
            self.coord.clone(),
            self.store.clone(),
            repo,
            BranchName::new(branch)?,
        );
        match tokio::time::timeout(Duration::from_secs(5), checkout).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => bail!("checkout: {e}"),
            Err(_) => bail!("checkout timed out"),
        }
    }

    /// Writes a region (and, with `resize`, resizes first) and commits in
    /// a mode drawn from `rng`.
    async fn write(
        &self,
        rng: &mut StdRng,
        k: u64,
        branch: &str,
        resize: bool,
        acked: &mut std::collections::VecDeque<Acked>,
    ) -> Result<()> {
        let mut s = self.checkout(branch).await?;
        let path = ArrayPath::new(ARRAY)?;
        let mut changes = Vec::new();
        let len = s.arrays().get(&path).map_or(0, |m| m.shape[0]);
        let new_len = rng.gen_range(16 * CHUNK..=30 * CHUNK);
        // A resize to the same shape changes nothing (no metadata change
        // in the commit), so it is not recorded as one.
        if resize && new_len != len {
            s.resize_array(&path, vec![new_len]).await?;
            changes.push(json!({"array": ARRAY, "resize": [new_len]}));
        }
        let len = s.arrays().get(&path).map_or(0, |m| m.shape[0]);
        if len > 0 && (!resize || rng.gen_bool(0.5)) {
            let (start, end) = region(rng, len);
            let value = (self.p * 1_000_000 + k) as i64;
            let data = vec![value; (end - start) as usize];
            let data = ArrayData::from_slice(&[end - start], &data)?;
            s.write_region(&path, &Region::new(&[(start, end)]), &data)
                .await?;
            changes.push(json!({"array": ARRAY, "write": [[start, end]], "value": value}));
        }
        let (mode, mode_name) = pick_mode(rng);
        let message = format!("w{}-{k}", self.p);
        let invoke = commit_invoke(&s, branch, &message, mode_name, Some(mode), changes);
        self.history.line(json!(self.p), "invoke", "commit", invoke);
        // The answer as the coordinator gave it: no read-back that could
        // hide a wrong acknowledgement behind a failed read.
        let done = tokio::time::timeout(OP_TIMEOUT, s.commit_and_close(&message, mode)).await;
        let envelope = self.coord.take_last();
        let (kind, value) = match done {
            Ok(Ok(commit)) => {
                if let Some(envelope) = envelope {
                    let branch = branch.to_string();
                    acked.push_back(Acked {
                        branch,
                        message: message.clone(),
                        commit,
                        envelope,
                    });
                    if acked.len() > KEPT_ACKS {
                        acked.pop_front();
                    }
                }
                ("ok", json!({"commit": commit.to_string()}))
            }
            Ok(Err(e)) => refused(&e),
            Err(_) => ("info", json!({"error": "timed out"})),
        };
        self.history
            .line(json!(self.p), kind, "commit", self.coord.stamp(value));
        Ok(())
    }

    /// Delivers an acknowledged commit's envelope again, to the leader.
    async fn resend(
        &self,
        rng: &mut StdRng,
        acked: &std::collections::VecDeque<Acked>,
    ) -> Result<()> {
        if acked.is_empty() {
            return Ok(());
        }
        let a = &acked[rng.gen_range(0..acked.len())];
        let args = json!({
            "repo": REPO, "branch": a.branch, "message": a.message, "commit": a.commit.to_string(),
            "client": a.envelope.client.0, "seq": a.envelope.seq,
        });
        self.history.line(json!(self.p), "invoke", "resend", args);
        let done = tokio::time::timeout(OP_TIMEOUT, deliver(&self.coord.inner, &a.envelope)).await;
        let (kind, value) = match done {
            Ok(Ok(Reply::Committed { commit, .. })) => {
                ("ok", json!({"commit": commit.to_string()}))
            }
            Ok(Ok(other)) => (
                "fail",
                json!({"error": format!("unexpected answer {other:?}")}),
            ),
            Ok(Err(e)) => refused(&e),
            Err(_) => ("info", json!({"error": "timed out"})),
        };
        self.history.line(json!(self.p), kind, "resend", value);
        Ok(())
    }

    /// Reads the branch's tip (a linearizable read through the leader).
    async fn read(&self, branch: &str) -> Result<()> {
        let q = Query::Checkout {
            repo: RepoName::new(REPO)?,
            branch: BranchName::new(branch)?,
        };
        let args = json!({"repo": REPO, "branch": branch});
        self.history.line(json!(self.p), "invoke", "read", args);
        let client = Client::new(self.coord.clone());
        let done = tokio::time::timeout(OP_TIMEOUT, client.call(Request::Query(q))).await;
        let (kind, value) = match done {
            Ok(Ok(Reply::Commit(r))) => ("ok", json!({"commit": r.id.to_string()})),
            Ok(Ok(other)) => ("fail", json!({"error": format!("unexpected {other:?}")})),
            Ok(Err(e)) => ("fail", json!({"error": e.to_string()})),
            Err(_) => ("fail", json!({"error": "timed out"})),
        };
        self.history
            .line(json!(self.p), kind, "read", self.coord.stamp(value));
        Ok(())
    }

    /// Tags the branch's tip as seen by a fresh checkout.
    async fn tag(&self, k: u64, branch: &str) -> Result<()> {
        let s = self.checkout(branch).await?;
        let at = s.base().id;
        let tag = format!("t{}-{k}", self.p);
        let command = Command::CreateTag {
            repo: RepoName::new(REPO)?,
            tag: TagName::new(&tag)?,
            at,
        };
        let args = json!({"repo": REPO, "tag": tag, "at": at.to_string()});
        self.command("tag", args, command).await;
        Ok(())
    }

    /// Creates a branch at `main`'s tip (while fewer than
    /// [`MAX_BRANCHES`] exist).
    async fn branch(&self, k: u64) -> Result<()> {
        let count = self
            .shared
            .branches
            .lock()
            .map_or(MAX_BRANCHES, |b| b.len());
        if count >= MAX_BRANCHES {
            return Ok(());
        }
        let s = self.checkout("main").await?;
        let at = s.base().id;
        let name = format!("b{}-{k}", self.p);
        let command = Command::CreateBranch {
            repo: RepoName::new(REPO)?,
            branch: BranchName::new(&name)?,
            at,
        };
        let args = json!({"repo": REPO, "branch": name, "at": at.to_string()});
        if self.command("branch", args, command).await {
            if let Ok(mut b) = self.shared.branches.lock() {
                b.push(name);
            }
        }
        Ok(())
    }

    /// Runs `command` as operation `f`; true when it succeeded.
    async fn command(&self, f: &str, args: Value, command: Command) -> bool {
        self.history.line(json!(self.p), "invoke", f, args);
        let client = Client::new(self.coord.clone());
        let done = tokio::time::timeout(OP_TIMEOUT, client.command(command)).await;
        let (kind, value) = match done {
            Ok(Ok(_)) => ("ok", json!({})),
            Ok(Err(e)) => refused(&e),
            Err(_) => ("info", json!({"error": "timed out"})),
        };
        self.history
            .line(json!(self.p), kind, f, self.coord.stamp(value));
        kind == "ok"
    }
}

/// Cooperative jobs, one after another until `deadline`: each writes the
/// whole job array from a `.npy` of one value through the worker
/// processes (a plan of one task per chunk, short leases) and commits once
/// with a rebase, recorded as one `commit` of process `"job"`.
pub struct Jobs {
    /// The cluster.
    pub coord: Arc<NetCoordinator>,
    /// Where operations are recorded.
    pub history: History,
    /// Where the sources are written (the workers read them there).
    pub dir: std::path::PathBuf,
}

impl Jobs {
    /// Runs jobs until `deadline` (the last may end after it).
    pub async fn run(self, deadline: Instant) {
        let mut n = 0u64;
        while Instant::now() < deadline {
            n += 1;
            if let Err(e) = self.job(n).await {
                tracing::warn!(job = n, error = %e, "a chaos job could not start");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn job(&self, n: u64) -> Result<()> {
        let value = 9_000_000 + n as i64;
        let elements = (JOB_SHAPE[0] * JOB_SHAPE[1]) as usize;
        let source = self.dir.join(format!("job-{n}.npy"));
        floe_worker::write_npy(
            &source,
            &ArrayData::from_slice(&JOB_SHAPE, &vec![value; elements])?,
        )?;
        let path = ArrayPath::new(JOB_ARRAY)?;
        let meta = ArrayMeta::new(JOB_SHAPE.to_vec(), JOB_CHUNKS.to_vec(), DType::I64, 0.0)?;
        let plan = floe_worker::coop::plan_grid(
            &path,
            &meta,
            &floe_worker::coop::Tiling::about(&meta.grid(), 32),
        )?;
        let message = format!("job-{n}");
        let spec = floe_worker::machine::JobSpec {
            repo: RepoName::new(REPO)?,
            branch: main()?,
            plan,
            lease_ms: JOB_LEASE_MS,
            message: message.clone(),
            mode: rebase(Solver::Fail),
            source: Some(source.display().to_string()),
            create: Default::default(),
        };
        let chunks: Vec<[u64; 2]> = (0..JOB_SHAPE[0] / JOB_CHUNKS[0])
            .flat_map(|i| (0..JOB_SHAPE[1] / JOB_CHUNKS[1]).map(move |j| [i, j]))
            .collect();
        let write = json!({"array": JOB_ARRAY, "write": [[0, JOB_SHAPE[0]], [0, JOB_SHAPE[1]]], "value": value});
        let client = floe_protocol::ClientId(rand::random());
        let invoke = json!({
            "repo": REPO, "branch": "main", "message": message, "mode": "rebase", "solver": "fail",
            "chunks": {JOB_ARRAY: chunks}, "changes": [write], "client": client.0,
        });
        self.history.line(json!("job"), "invoke", "commit", invoke);
        let job = floe_worker::machine::Job::new(client, self.coord.nodes(), spec);
        let mut driven = floe_worker::Driven::new(job, self.coord.clone(), None);
        let ran = tokio::time::timeout(Duration::from_secs(60), driven.run_until(|_| false)).await;
        let status = driven.into_machine().status().clone();
        let (kind, value) = match (ran, status) {
            (_, floe_worker::machine::JobStatus::Committed(c)) => {
                ("ok", json!({"commit": c.to_string()}))
            }
            (_, floe_worker::machine::JobStatus::Failed(e)) | (Ok(Err(e)), _) => refused(&e),
            _ => (
                "info",
                json!({"error": "the job did not finish within 60 s"}),
            ),
        };
        self.history.line(json!("job"), kind, "commit", value);
        let _ = std::fs::remove_file(&source);
        Ok(())
    }
}

/// Sends `envelope` as it is (same client and sequence number) until a
/// leader answers, following `NotLeader` hints.
async fn deliver(coord: &NetCoordinator, envelope: &Envelope) -> Outcome {
    let nodes = coord.nodes();
    let mut to = nodes.first().copied().unwrap_or(1);
    for attempt in 0..50 {
        match coord.send(to, envelope.clone()).await {
            Err(FloeError::NotLeader {
                leader_hint: Some(hint),
            }) if hint != to => to = hint,
            Err(FloeError::NotLeader { .. } | FloeError::Unavailable(_)) => {
                to = nodes[(attempt + 1) % nodes.len()];
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answer => return answer,
        }
    }
    Err(FloeError::Unavailable("no leader answered".into()))
}

/// A region of a `len`-element array: whole chunks half the time, any
/// span of up to two chunks' length otherwise.
fn region(rng: &mut StdRng, len: u64) -> (u64, u64) {
    if rng.gen_bool(0.5) {
        let chunks = len.div_ceil(CHUNK);
        let first = rng.gen_range(0..chunks);
        let last = (first + rng.gen_range(1..=2)).min(chunks);
        (first * CHUNK, (last * CHUNK).min(len))
    } else {
        let start = rng.gen_range(0..len);
        (start, (start + rng.gen_range(1..=2 * CHUNK)).min(len))
    }
}

/// Strict a quarter of the time, else a rebase with each solver.
fn pick_mode(rng: &mut StdRng) -> (CommitMode, &'static str) {
    match rng.gen_range(0..20) {
        0..=4 => (CommitMode::Strict, "strict"),
        5..=13 => (rebase(Solver::Fail), "rebase"),
        14..=16 => (rebase(Solver::Ours), "rebase"),
        _ => (rebase(Solver::Theirs), "rebase"),
    }
}

fn rebase(solver: Solver) -> CommitMode {
    CommitMode::Rebase { solver }
}

/// A commit's invoke: its base, the chunks its session wrote, its mode
/// and its changes in order.
fn commit_invoke(
    s: &Session<Recording>,
    branch: &str,
    message: &str,
    mode: &str,
    commit_mode: Option<CommitMode>,
    changes: Vec<Value>,
) -> Value {
    let solver = match commit_mode {
        Some(CommitMode::Rebase { solver }) => format!("{solver:?}").to_lowercase(),
        _ => "fail".into(),
    };
    json!({
        "repo": REPO,
        "branch": branch,
        "message": message,
        "mode": mode,
        "solver": solver,
        "base": s.base().id.to_string(),
        "chunks": chunks_json(&s.footprint()),
        "changes": changes,
    })
}

/// A footprint's chunk coordinates by array.
pub fn chunks_json(footprint: &floe_protocol::Footprint) -> Value {
    let map: serde_json::Map<String, Value> = footprint
        .arrays
        .iter()
        .map(|(path, change)| (path.to_string(), json!(change.coords().collect::<Vec<_>>())))
        .collect();
    Value::Object(map)
}

/// A refused or failed command: `fail` when it certainly did not take
/// effect (with the conflict's details), `info` when it may have.
fn refused(e: &FloeError) -> (&'static str, Value) {
    match e {
        FloeError::Conflict { tip, conflicts } => {
            let listed: Vec<Value> = conflicts
                .iter()
                .map(|c| {
                    let (kind, chunks, total) = match &c.kind {
                        ConflictKind::ChunkDoubleUpdate { chunks, total } => {
                            ("chunk-double-update", chunks.clone(), *total)
                        }
                        other => (conflict_name(other), Vec::new(), 0),
                    };
                    json!({"array": c.path.to_string(), "kind": kind, "chunks": chunks, "total": total})
                })
                .collect();
            let value =
                json!({"error": e.to_string(), "tip": tip.to_string(), "conflicts": listed});
            ("fail", value)
        }
        FloeError::OutOfDate { tip } => (
            "fail",
            json!({"error": e.to_string(), "out-of-date": tip.to_string()}),
        ),
        e if e.had_no_effect() => ("fail", json!({"error": e.to_string()})),
        // Gave up, expired, or unknown: it may have taken effect.
        e => ("info", json!({"error": e.to_string()})),
    }
}

fn conflict_name(kind: &ConflictKind) -> &'static str {
    match kind {
        ConflictKind::ChunkDoubleUpdate { .. } => "chunk-double-update",
        ConflictKind::ArrayCreatedTwice => "array-created-twice",
        ConflictKind::MetadataDoubleUpdate => "metadata-double-update",
        ConflictKind::ChunksWrittenToChangedArray { .. } => "chunks-written-to-changed-array",
        ConflictKind::DeleteOfUpdatedArray => "delete-of-updated-array",
        ConflictKind::MetadataUpdateOfDeletedArray => "metadata-update-of-deleted-array",
    }
}

/// The final reads, retried while the cluster settles: every branch's
/// log and array, and the tags.
pub async fn final_reads(
    coord: &Arc<NetCoordinator>,
    store: &Store,
    history: &History,
) -> Result<()> {
    let settle = Instant::now() + Duration::from_secs(60);
    loop {
        match read_all(coord, store).await {
            Ok(lines) => {
                for (f, value) in lines {
                    history.line(json!("final"), "ok", f, value);
                }
                return Ok(());
            }
            Err(e) if Instant::now() > settle => {
                bail!("the cluster did not settle within 60 s after healing: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Every final read, or the first error.
async fn read_all(
    coord: &Arc<NetCoordinator>,
    store: &Store,
) -> Result<Vec<(&'static str, Value)>> {
    let repo = RepoName::new(REPO)?;
    let client = Client::new(coord.clone());
    let Reply::Refs { branches, tags } = client
        .call(Request::Query(Query::Refs { repo: repo.clone() }))
        .await?
    else {
        bail!("unexpected answer to Refs");
    };
    let tags: BTreeMap<String, String> = tags
        .iter()
        .map(|(t, c)| (t.to_string(), c.to_string()))
        .collect();
    let mut out = vec![("read-tags", json!({"repo": REPO, "tags": tags}))];
    for branch in branches.keys() {
        let q = Query::Log {
            repo: repo.clone(),
            branch: branch.clone(),
            limit: u32::MAX,
        };
        let Reply::Log(records) = client.call(Request::Query(q)).await? else {
            bail!("unexpected answer to Log");
        };
        let log: Vec<Value> = records.iter().map(entry).collect();
        out.push((
            "read-log",
            json!({"repo": REPO, "branch": branch.to_string(), "log": log}),
        ));
        for array in [ARRAY, JOB_ARRAY] {
            let value = read_array(coord, store, &repo, branch, array).await?;
            out.push(("read-array", value));
        }
    }
    Ok(out)
}

/// A branch's array, run-length encoded in row-major order.
async fn read_array(
    coord: &Arc<NetCoordinator>,
    store: &Store,
    repo: &RepoName,
    branch: &BranchName,
    array: &str,
) -> Result<Value> {
    let mut s =
        Session::checkout(coord.clone(), store.clone(), repo.clone(), branch.clone()).await?;
    let path = ArrayPath::new(array)?;
    let shape = s
        .arrays()
        .get(&path)
        .map(|m| m.shape.clone())
        .unwrap_or_default();
    let whole: Vec<(u64, u64)> = shape.iter().map(|n| (0, *n)).collect();
    let values: Vec<i64> = s.read_region(&path, &Region::new(&whole)).await?.to_vec()?;
    let mut runs: Vec<(i64, u64)> = Vec::new();
    for v in values {
        match runs.last_mut() {
            Some((last, n)) if *last == v => *n += 1,
            _ => runs.push((v, 1)),
        }
    }
    Ok(json!({
        "repo": REPO,
        "branch": branch.to_string(),
        "array": array,
        "commit": s.base().id.to_string(),
        "shape": shape,
        "data": runs,
    }))
}

/// A commit as the final read lists it: with its parent, base and chunks
/// the checkers judge it by.
fn entry(r: &floe_protocol::CommitRecord) -> Value {
    json!({
        "id": r.id.to_string(),
        "message": r.message,
        "parent": r.parent.map(|c: CommitId| c.to_string()),
        "base": r.base.map(|c: CommitId| c.to_string()),
        "chunks": chunks_json(&r.footprint),
    })
}
