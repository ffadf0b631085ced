//! A real cluster: three `floe coordinator` processes on loopback, written
//! to through the network client. The leader is killed with SIGKILL
//! mid-write, writes go on, the killed node restarts from its directory
//! and catches up (it must: another node is then killed and writes still
//! need it), and every acknowledged commit is on the branch exactly once.
//! Bad traffic (garbage, oversized frames, a wrong token) is refused and
//! the node keeps serving. Every process is stopped by its pid, also when
//! the test fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream as StdTcp;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::Arc;
use std::time::Duration;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Command, CommitId, CommitMode, DType, Query, Region, Reply,
    RepoName, Request,
};
use floe_server::config::{read_token, ClusterFile};
use floe_server::local::{write_local_cluster, LocalCluster};
use floe_server::NetCoordinator;
use floe_worker::client::Client;
use floe_worker::{ArrayData, Session, Store};

/// The coordinator processes of one test; killed (SIGKILL) and reaped on
/// drop, so a failing test leaves nothing running.
struct Procs {
    layout: LocalCluster,
    dir: PathBuf,
    running: BTreeMap<u64, Child>,
    /// Flags every coordinator of the test gets.
    flags: Vec<String>,
}

impl Procs {
    fn start(dir: &Path) -> Procs {
        Procs::start_with(dir, &[])
    }

    fn start_with(dir: &Path, flags: &[&str]) -> Procs {
        let layout = write_local_cluster(dir, 3, 10).expect("layout");
        let mut procs = Procs {
            layout,
            dir: dir.to_path_buf(),
            running: BTreeMap::new(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
        };
        for id in 1..=3 {
            procs.spawn(id);
        }
        procs
    }

    fn spawn(&mut self, id: u64) {
        self.spawn_with(id, &[]);
    }

    fn spawn_with(&mut self, id: u64, flags: &[&str]) {
        let config = &self.layout.nodes[(id - 1) as usize].1;
        let mut args = vec!["--config".to_string(), config.display().to_string()];
        args.extend(self.flags.iter().cloned());
        args.extend(flags.iter().map(|f| f.to_string()));
        self.spawn_args(id, &args);
    }

    /// Starts `floe coordinator ARGS` as node `id`, logging to `n<id>.log`.
    fn spawn_args(&mut self, id: u64, args: &[String]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{id}.log")))
            .unwrap();
        let child = Process::new(env!("CARGO_BIN_EXE_floe"))
            .arg("coordinator")
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("coordinator starts");
        self.running.insert(id, child);
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.running.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client(&self) -> Arc<NetCoordinator> {
        let file = ClusterFile::load(&self.layout.cluster_file).unwrap();
        let token = read_token(&file.token_file).unwrap();
        Arc::new(NetCoordinator::new(file.endpoints(), token))
    }

    /// Waits (bounded) until node `id` has applied everything node `from`
    /// had committed when asked.
    async fn wait_caught_up(&self, id: u64, from: u64) {
        let token = std::fs::read_to_string(self.dir.join("token")).unwrap();
        let status = |n| floe_server::net::node_status(self.endpoint(n), token.trim());
        let target = status(from).await.expect("status").commit;
        for _ in 0..200 {
            if let Ok(s) = status(id).await {
                if s.applied >= target && !s.voters.is_empty() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("n{id} did not catch up with n{from} (commit {target}) in 10 s");
    }

    /// One counter of node `id`'s `/metrics`.
    fn metric(&self, id: u64, name: &str) -> u64 {
        let file = ClusterFile::load(&self.layout.cluster_file).unwrap();
        let mut http = StdTcp::connect(file.metrics[&id.to_string()]).expect("metrics address");
        http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        http.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("n{id} has no metric {name}")) as u64
    }

    fn endpoint(&self, id: u64) -> std::net::SocketAddr {
        ClusterFile::load(&self.layout.cluster_file)
            .unwrap()
            .endpoints()[&id]
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        if std::thread::panicking() {
            // What the coordinators said, for whoever reads the failure:
            // the whole logs kept aside, their tails printed.
            let keep = std::env::temp_dir().join(format!("floe-failed-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&keep);
            let logged: Vec<u64> = (1..=9)
                .filter(|id| self.dir.join(format!("n{id}.log")).exists())
                .collect();
            for id in &logged {
                let name = format!("n{id}.log");
                let _ = std::fs::copy(self.dir.join(&name), keep.join(&name));
            }
            eprintln!("coordinator logs kept in {}", keep.display());
            for id in logged {
                let log = std::fs::read_to_string(self.dir.join(format!("n{id}.log")));
                let log = log.unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- n{id}.log (last {} lines)", tail.len());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn path() -> ArrayPath {
    ArrayPath::new("/t").unwrap()
}

fn repo() -> RepoName {
    RepoName::new("r").unwrap()
}

fn main_branch() -> BranchName {
    BranchName::new("main").unwrap()
}

/// Commits `value` over chunk `i` of `/t` (chunks of 4) in its own session.
async fn write_chunk(coord: &Arc<NetCoordinator>, store: &Store, i: u64, value: i32) -> CommitId {
    let mut s = Session::checkout(coord.clone(), store.clone(), repo(), main_branch())
        .await
        .expect("checkout");
    let region = Region::new(&[(i * 4, i * 4 + 4)]);
    let data = ArrayData::from_slice(&[4], &[value; 4]).unwrap();
    s.write_region(&path(), &region, &data)
        .await
        .expect("write");
    let mode = CommitMode::Rebase {
        solver: floe_protocol::Solver::Fail,
    };
    s.commit(&format!("chunk {i}"), mode).await.expect("commit")
}

/// The node that answers a read itself (the others say `NotLeader`).
async fn leader_of(coord: &Arc<NetCoordinator>) -> u64 {
    use floe_protocol::Coordinator;
    for seq in 1..=50 {
        for id in coord.nodes() {
            let envelope = floe_protocol::Envelope {
                client: floe_protocol::ClientId(u64::MAX - id),
                seq,
                request: Request::Query(Query::Checkout {
                    repo: repo(),
                    branch: main_branch(),
                }),
            };
            if coord.send(id, envelope).await.is_ok() {
                return id;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no leader answers");
}

async fn log(client: &Client<NetCoordinator>) -> Vec<floe_protocol::CommitRecord> {
    let q = Query::Log {
        repo: repo(),
        branch: main_branch(),
        limit: 10_000,
    };
    match client.call(Request::Query(q)).await {
        Ok(Reply::Log(records)) => records,
        other => panic!("log: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_process_cluster_survives_kill_9_and_restarts_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, coord, store, mut acked) = started(dir.path(), &[], 10).await;
    let leader = leader_of(&coord).await;
    procs.kill(leader);
    write_chunks(&coord, &store, &mut acked, 10..20).await;
    // Back from its directory; then another node goes, so the next writes
    // need the restarted one (two of three make a quorum).
    procs.spawn(leader);
    let other = (1..=3).find(|&id| id != leader).unwrap();
    procs.wait_caught_up(leader, other).await;
    procs.kill(other);
    write_chunks(&coord, &store, &mut acked, 20..30).await;
    procs.spawn(other);
    procs.wait_caught_up(other, leader).await;
    check_acknowledged(&coord, &store, &acked).await;
}

/// Three coordinators started with `flags`, the array created, and the
/// first `writes` chunks written and acknowledged.
async fn started(
    dir: &Path,
    flags: &[&str],
    writes: u64,
) -> (Procs, Arc<NetCoordinator>, Store, BTreeMap<u64, CommitId>) {
    let procs = Procs::start_with(dir, flags);
    let coord = procs.client();
    let store = Store::local(dir.join("store")).unwrap();
    create_array(&coord, &store).await;
    let mut acked = BTreeMap::new();
    write_chunks(&coord, &store, &mut acked, 0..writes).await;
    (procs, coord, store, acked)
}

/// Writes chunks `range` (chunk i holds i), one commit each, recording
/// each acknowledged commit.
async fn write_chunks(
    coord: &Arc<NetCoordinator>,
    store: &Store,
    acked: &mut BTreeMap<u64, CommitId>,
    range: std::ops::Range<u64>,
) {
    for i in range {
        acked.insert(i, write_chunk(coord, store, i, i as i32).await);
    }
}

/// Every acknowledged commit is on the branch exactly once, under its
/// acknowledged id, and the array holds what they wrote.
async fn check_acknowledged(
    coord: &Arc<NetCoordinator>,
    store: &Store,
    acked: &BTreeMap<u64, CommitId>,
) {
    let client = Client::new(coord.clone());
    let records = log(&client).await;
    for (i, id) in acked {
        let message = format!("chunk {i}");
        let on_branch: Vec<_> = records.iter().filter(|r| r.message == message).collect();
        assert_eq!(on_branch.len(), 1, "{message} must land exactly once");
        assert_eq!(on_branch[0].id, *id, "{message} under its acknowledged id");
    }
    let mut reader = Session::checkout(coord.clone(), store.clone(), repo(), main_branch())
        .await
        .unwrap();
    let n = acked.len() as u64;
    let all = reader
        .read_region(&path(), &Region::new(&[(0, n * 4)]))
        .await
        .unwrap()
        .to_vec::<i32>()
        .unwrap();
    let want: Vec<i32> = (0..n as i32).flat_map(|i| [i; 4]).collect();
    assert_eq!(all, want);
}

/// Creates the repo and the array `/t` the tests write.
async fn create_array(coord: &Arc<NetCoordinator>, store: &Store) {
    let client = Client::new(coord.clone());
    let created = client
        .command(Command::CreateRepo { repo: repo() })
        .await
        .expect("create repo");
    assert!(matches!(created, Reply::RepoCreated { .. }));
    let mut s = Session::checkout(coord.clone(), store.clone(), repo(), main_branch())
        .await
        .unwrap();
    let meta = ArrayMeta::new(vec![400], vec![4], DType::I32, 0.0).unwrap();
    s.create_array(&path(), meta).unwrap();
    s.commit("create", CommitMode::Strict).await.unwrap();
}

/// Snapshots every 8 entries, sent in 1 KiB parts: a node that was down
/// while the others compacted their logs catches up by a snapshot
/// transfer; a node whose directory is wiped rejoins (`--join`), is sent
/// the state, and then counts in the quorum when another node goes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_and_wiped_members_catch_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--snapshot-every", "8", "--raft-chunk-bytes", "1024"];
    let (mut procs, coord, store, mut acked) = started(dir.path(), &flags, 5).await;
    let leader = leader_of(&coord).await;
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    let other = (1..=3).find(|&id| id != leader && id != lagging).unwrap();

    procs.kill(lagging);
    // Enough commits that the state outgrows one 1 KiB part.
    write_chunks(&coord, &store, &mut acked, 5..45).await;
    procs.spawn(lagging);
    procs.wait_caught_up(lagging, leader).await;
    assert!(procs.metric(lagging, "floe_snapshots_received_total") >= 1);

    procs.kill(lagging);
    std::fs::remove_dir_all(dir.path().join(format!("n{lagging}"))).unwrap();
    procs.spawn_with(lagging, &["--join"]);
    write_chunks(&coord, &store, &mut acked, 45..50).await;
    procs.wait_caught_up(lagging, leader).await;
    assert!(procs.metric(lagging, "floe_snapshots_received_total") >= 1);
    // Now the quorum needs the wiped node.
    procs.kill(other);
    write_chunks(&coord, &store, &mut acked, 50..55).await;
    check_acknowledged(&coord, &store, &acked).await;
}

/// Raw bytes to a node: what it answers, if anything, before it closes.
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = StdTcp::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn refusal(answer: &[u8]) -> String {
    assert!(answer.len() > 4, "expected an answer, got {answer:?}");
    match floe_protocol::codec::decode(&answer[4..]) {
        Ok(floe_protocol::Message::Refused { why }) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_traffic_is_refused_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let procs = Procs::start(dir.path());
    let addr = procs.endpoint(1);
    let client = Client::new(procs.client());
    client
        .command(Command::CreateRepo { repo: repo() })
        .await
        .expect("the cluster serves");

    let hello = |token: &str| {
        let m = floe_protocol::Message::Hello {
            protocol: floe_protocol::PROTOCOL_VERSION,
            token: token.into(),
            peer: None,
            listen: None,
        };
        frame(&floe_protocol::codec::encode(&m).unwrap())
    };
    // A wrong token.
    let why = refusal(&raw_exchange(addr, &hello("not the token")));
    assert_eq!(why, "wrong cluster token");
    // A newer protocol.
    let newer = floe_protocol::Message::Hello {
        protocol: floe_protocol::PROTOCOL_VERSION + 1,
        token: "x".into(),
        peer: None,
        listen: None,
    };
    let why = refusal(&raw_exchange(
        addr,
        &frame(&floe_protocol::codec::encode(&newer).unwrap()),
    ));
    assert!(why.contains("upgrade"), "{why}");
    // Garbage instead of a hello.
    let why = refusal(&raw_exchange(addr, &frame(b"\x01garbage garbage")));
    assert!(why.contains("hello") || why.contains("malformed"), "{why}");
    // An oversized frame (its length prefix alone) and a truncated one:
    // closed without reading further.
    raw_exchange(addr, &u32::MAX.to_be_bytes());
    raw_exchange(addr, &[0, 0, 0, 10, 1, 2]);
    // After a good hello, garbage: a refusal, then the connection closes.
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let mut bytes = hello(token.trim());
    bytes.extend(frame(b"\x01\xff\xff\xff"));
    let answer = raw_exchange(addr, &bytes);
    assert!(answer.len() > 8, "welcome then refusal: {answer:?}");

    // Still serving.
    let again = client
        .command(Command::CreateRepo {
            repo: RepoName::new("r2").unwrap(),
        })
        .await;
    assert!(matches!(again, Ok(Reply::RepoCreated { .. })), "{again:?}");
}

/// Runs `floe member ...` against the test's cluster file; returns what it
/// printed, or panics with its error output.
fn floe_member(procs: &Procs, args: &[&str]) -> String {
    let out = Process::new(env!("CARGO_BIN_EXE_floe"))
        .arg("member")
        .arg("--cluster")
        .arg(&procs.layout.cluster_file)
        .args(args)
        .output()
        .expect("floe member runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "floe member {args:?} failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Waits (bounded) for coordinator `id`'s process to exit by itself.
fn wait_exit(procs: &mut Procs, id: u64) -> std::process::ExitStatus {
    for _ in 0..200 {
        if let Some(child) = procs.running.get_mut(&id) {
            if let Ok(Some(status)) = child.try_wait() {
                procs.running.remove(&id);
                return status;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("n{id} did not stop within 10 s after its removal");
}

/// A fourth coordinator started with `--join` is added with `floe member
/// add` while writes go on and catches up; a member is then removed with
/// `floe member remove`, stops by itself, and the cluster keeps writing
/// with the newcomer in the quorum. The cluster file follows each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_and_removed_with_floe_member() {
    let dir = tempfile::tempdir().unwrap();
    let (mut procs, coord, store, mut acked) = started(dir.path(), &[], 5).await;

    // n4 knows the members; they learn its address from its handshake.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let mut flags: Vec<String> = vec![
        "--id=4".into(),
        format!("--listen={addr}"),
        format!("--data-dir={}", dir.path().join("n4").display()),
        format!("--token-file={}", dir.path().join("token").display()),
        "--tick-ms=10".into(),
        "--join".into(),
    ];
    for id in 1..=3 {
        flags.push(format!("--peer={id}={}", procs.endpoint(id)));
    }
    flags.push(format!("--peer=4={addr}"));
    procs.spawn_args(4, &flags);

    let added = floe_member(&procs, &["add", "4", &addr.to_string()]);
    assert!(
        added.contains("added n4; voters now [1, 2, 3, 4]"),
        "{added}"
    );
    assert_eq!(procs.endpoint(4), addr, "the cluster file names n4");
    write_chunks(&coord, &store, &mut acked, 5..10).await;
    let leader = leader_of(&coord).await;
    procs.wait_caught_up(4, leader).await;

    // Adding it again changes nothing and says so.
    let again = floe_member(&procs, &["add", "4", &addr.to_string()]);
    assert!(again.contains("voters now [1, 2, 3, 4]"), "{again}");

    let gone = (1..=3).find(|&id| id != leader).unwrap();
    let removed = floe_member(&procs, &["remove", &gone.to_string()]);
    assert!(removed.contains(&format!("removed n{gone}")), "{removed}");
    assert!(
        wait_exit(&mut procs, gone).success(),
        "a removed member exits cleanly"
    );
    let file = ClusterFile::load(&procs.layout.cluster_file).unwrap();
    assert!(!file.endpoints().contains_key(&gone));

    // Three voters left, one of them n4: with another member down, the
    // writes need n4 in the quorum.
    let other = (1..=3).find(|&id| id != leader && id != gone).unwrap();
    procs.kill(other);
    let coord = procs.client();
    write_chunks(&coord, &store, &mut acked, 10..15).await;
    check_acknowledged(&coord, &store, &acked).await;
}
