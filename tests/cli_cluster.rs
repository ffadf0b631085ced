//! The README's walk-through, as a user runs it: `floe up`, then the client
//! commands against it (`status`, `repo create`, `array create`, `write`,
//! `read`, `log`, `tag create`), a coordinator killed with SIGKILL and
//! restarted by hand, and nothing lost. `floe up` is stopped with SIGTERM
//! and must stop its coordinators; every process is killed by pid on
//! failure too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use floe_worker::{write_npy, ArrayData, NpyFile};

/// Processes to kill (by pid) when the test ends, however it ends.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn floe(cluster: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(args)
        .env("FLOE_CLUSTER", cluster)
        .output()
        .expect("floe runs")
}

/// Runs a client command that must succeed; returns its stdout.
fn ok(cluster: &Path, args: &[&str]) -> String {
    let out = floe(cluster, args);
    assert!(
        out.status.success(),
        "floe {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{path:?} never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The node statuses, one JSON object per line.
fn statuses(cluster: &Path) -> Vec<serde_json::Value> {
    let out = floe(cluster, &["status", "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait_for_leader(cluster: &Path) -> serde_json::Value {
    let start = Instant::now();
    loop {
        if let Some(leader) = statuses(cluster)
            .into_iter()
            .find(|s| s["role"] == "leader")
        {
            return leader;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no leader");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn npy(dir: &Path, name: &str, rows: u64, start: i32) -> PathBuf {
    let values: Vec<i32> = (start..start + (rows * 8) as i32).collect();
    let path = dir.join(name);
    write_npy(&path, &ArrayData::from_slice(&[rows, 8], &values).unwrap()).unwrap();
    path
}

#[test]
fn the_readme_walk_through_works() {
    let dir = tempfile::tempdir().unwrap();
    let cdir = dir.path().join("c");
    let up = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["up", "--nodes", "3", "--dir"])
        .arg(&cdir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reaper = Reaper(vec![up]);
    let cluster = cdir.join("cluster.toml");
    wait_for(&cluster);
    let first = wait_for_leader(&cluster);
    // Kill the coordinators too if the test fails: their pids are known now.
    let pids: Vec<u64> = statuses(&cluster)
        .iter()
        .filter_map(|s| s["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 3, "{first}");

    ok(&cluster, &["repo", "create", "demo"]);
    let c1 = ok(
        &cluster,
        &[
            "array", "create", "demo", "/t", "--shape", "8,8", "--chunks", "4,4", "--dtype", "i32",
            "--fill", "-1",
        ],
    );
    assert_eq!(c1.trim(), "C1");
    let top = npy(dir.path(), "top.npy", 4, 0);
    let top = top.to_str().unwrap();
    assert_eq!(
        ok(&cluster, &["write", "demo", "/t", "0:4,0:8", "--from", top]).trim(),
        "C2"
    );
    ok(&cluster, &["tag", "create", "demo", "v1", "--at", "C2"]);

    // Kill the leader with SIGKILL; writes go on.
    let leader_pid = first["pid"].as_u64().unwrap() as i32;
    // SAFETY: kill(2) on a pid this test's `floe up` started.
    unsafe {
        libc::kill(leader_pid, libc::SIGKILL);
    }
    let rows = npy(dir.path(), "rows.npy", 2, 100);
    let rows = rows.to_str().unwrap();
    let c3 = ok(
        &cluster,
        &[
            "write",
            "demo",
            "/t",
            "4:6,0:8",
            "--from",
            rows,
            "--mode",
            "client-loop",
        ],
    );
    assert_eq!(c3.trim(), "C3");
    // Restart it by hand from its directory.
    let id = first["id"].as_u64().unwrap();
    let restarted = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["coordinator", "--config"])
        .arg(cdir.join(format!("n{id}.toml")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    reaper.0.push(restarted);
    let c4 = ok(
        &cluster,
        &[
            "write", "demo", "/t", "6:8,0:8", "--from", rows, "--mode", "strict",
        ],
    );
    assert_eq!(c4.trim(), "C4");

    let log = ok(&cluster, &["log", "demo", "--json"]);
    let ids: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(ids, ["\"C4\"", "\"C3\"", "\"C2\"", "\"C1\"", "\"C0\""]);
    let out = dir.path().join("out.npy");
    ok(
        &cluster,
        &[
            "read",
            "demo",
            "/t",
            "2:8,0:8",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let got = NpyFile::open(&out)
        .unwrap()
        .read_region(&"0:6,0:8".parse().unwrap())
        .unwrap();
    let want: Vec<i32> = (16..32).chain(100..116).chain(100..116).collect();
    assert_eq!(got.to_vec::<i32>().unwrap(), want);
    let at_tag = dir.path().join("tag.npy");
    ok(
        &cluster,
        &[
            "read",
            "demo",
            "/t",
            "4:6,0:2",
            "--tag",
            "v1",
            "--out",
            at_tag.to_str().unwrap(),
        ],
    );
    let fill = NpyFile::open(&at_tag)
        .unwrap()
        .read_region(&"0:2,0:2".parse().unwrap())
        .unwrap();
    assert_eq!(
        fill.to_vec::<i32>().unwrap(),
        vec![-1; 4],
        "the tag is C2: rows 4-5 unwritten"
    );

    ok(&cluster, &["branch", "create", "demo", "dev", "--at", "C2"]);
    assert_eq!(
        ok(&cluster, &["branch", "list", "demo"]),
        "dev C2\nmain C4\n"
    );
    assert_eq!(ok(&cluster, &["tag", "list", "demo"]), "v1 C2\n");

    // Bad input: a clear error, nothing changed.
    let bad = floe(&cluster, &["write", "demo", "/t", "0:3,0:8", "--from", top]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has shape [3, 8]"));

    // SIGTERM to `floe up` stops every coordinator it started.
    let up_pid = reaper.0[0].id() as i32;
    // SAFETY: kill(2) on the child this test started.
    unsafe {
        libc::kill(up_pid, libc::SIGTERM);
    }
    let status = reaper.0[0].wait().unwrap();
    assert!(status.success(), "floe up exits cleanly: {status}");
    for pid in pids.iter().filter(|&&p| p as i32 != leader_pid) {
        // SAFETY: signal 0 only checks whether the process exists.
        let alive = unsafe { libc::kill(*pid as i32, 0) } == 0;
        assert!(!alive, "coordinator {pid} still runs after floe up stopped");
    }
}

#[test]
fn bad_setups_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let layout = floe_server::local::write_local_cluster(dir.path(), 1, 20).unwrap();
    let config = &layout.nodes[0].1;
    let run = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["coordinator", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };
    // The port is taken: hold one, and point the node at it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap();
    let mut node = floe_server::config::NodeConfig::load(config).unwrap();
    let peers = node.peers.values_mut();
    for addr in peers {
        *addr = listen;
    }
    node.listen = listen;
    std::fs::write(config, toml::to_string(&node).unwrap()).unwrap();
    let text = std::fs::read_to_string(config).unwrap();
    let out = run(config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {listen}")), "{err}");
    drop(taken);
    // Another cluster's data directory (its token changed).
    std::fs::write(dir.path().join("token"), "another cluster\n").unwrap();
    let out = run(config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("belongs to another cluster"), "{err}");
    // A bad key, named with its line.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text.replace("tick_ms", "tik_ms")).unwrap();
    let out = run(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("tik_ms"), "{err}");
    // A second `floe up` in the same directory does not clobber it.
    let again = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args(["up", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("exists"), "{err}");
}
