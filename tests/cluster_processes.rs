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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("n{id}.log")))
            .unwrap();
        let child = Process::new(env!("CARGO_BIN_EXE_floe"))
            .args(["coordinator", "--config"])
            .arg(config)
            .args(&self.flags)
            .args(flags)
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
            for id in 1..=3 {
                let name = format!("n{id}.log");
                let _ = std::fs::copy(self.dir.join(&name), keep.join(&name));
            }
            eprintln!("coordinator logs kept in {}", keep.display());
            for id in 1..=3 {
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
    let mut procs = Procs::start(dir.path());
    let coord = procs.client();
    let store = Store::local(dir.path().join("store")).unwrap();
    create_array(&coord, &store).await;

    let mut acked = BTreeMap::new();
    for i in 0..10 {
        acked.insert(i, write_chunk(&coord, &store, i, i as i32).await);
    }
    let leader = leader_of(&coord).await;
    procs.kill(leader);
    for i in 10..20 {
        acked.insert(i, write_chunk(&coord, &store, i, i as i32).await);
    }
    // Back from its directory; then another node goes, so the next writes
    // need the restarted one (two of three make a quorum).
    procs.spawn(leader);
    let other = (1..=3).find(|&id| id != leader).unwrap();
    procs.wait_caught_up(leader, other).await;
    procs.kill(other);
    for i in 20..30 {
        acked.insert(i, write_chunk(&coord, &store, i, i as i32).await);
    }
    procs.spawn(other);
    procs.wait_caught_up(other, leader).await;
    check_acknowledged(&coord, &store, &acked).await;
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
    let mut procs = Procs::start_with(dir.path(), &flags);
    let coord = procs.client();
    let store = Store::local(dir.path().join("store")).unwrap();
    create_array(&coord, &store).await;
    let mut acked = BTreeMap::new();
    for i in 0..5 {
        acked.insert(i, write_chunk(&coord, &store, i, i as i32).await);
    }
    let leader = leader_of(&coord).await;
    let lagging = (1..=3).find(|&id| id != leader).unwrap();
    let other = (1..=3).find(|&id| id != leader && id != lagging).unwrap();

    procs.kill(lagging);
    // Enough commits that the state outgrows one 1 KiB part.
    for i in 5..45 {
        acked.insert(i, write_chunk(&coord, &store, i, i as i32).await);
    }
    procs.spawn(lagging);
    procs.wait_caught_up(lagging, leader).await;
    assert!(procs.metric(lagging, "floe_snapshots_received_total") >= 1);

    procs.kill(lagging);
    std::fs::remove_dir_all(dir.path().join(format!("n{lagging}"))).unwrap();
    procs.spawn_with(lagging, &["--join"]);
    for i in 45..50 {
        acked.insert(i, write_chunk(&coord, &store, i, i as i32).await);
    }
    procs.wait_caught_up(lagging, leader).await;
    assert!(procs.metric(lagging, "floe_snapshots_received_total") >= 1);
    // Now the quorum needs the wiped node.
    procs.kill(other);
    for i in 50..55 {
        acked.insert(i, write_chunk(&coord, &store, i, i as i32).await);
    }
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
