//! Cooperative jobs on a real deployment: `floe up` (three coordinator
//! processes), `floe worker` processes started and killed by the test,
//! `floe job submit` as a user runs it. A job commits once with exactly
//! the source's data while a worker is killed with SIGKILL; a worker
//! paused past its lease cannot complete late; a bad source fails before
//! anything is opened. Every process is stopped by its pid, also when a
//! test fails.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use floe_worker::{write_npy, ArrayData, NpyFile};

/// A `floe up` deployment and the workers the test started; all stopped
/// on drop.
struct Deployment {
    dir: PathBuf,
    up: Child,
    workers: BTreeMap<String, Child>,
}

impl Deployment {
    /// Three coordinators, a repo `demo` and an f32 array `/t` of `n` x `n`
    /// in chunks of `chunk` x `chunk`.
    fn start(dir: &Path, n: u64, chunk: u64) -> Deployment {
        let log = std::fs::File::create(dir.join("up.log")).unwrap();
        let up = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["up", "--nodes", "3", "--tick-ms", "10", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("floe up starts");
        let d = Deployment {
            dir: dir.to_path_buf(),
            up,
            workers: BTreeMap::new(),
        };
        d.wait_for(|| d.dir.join("cluster.toml").exists(), "cluster.toml");
        d.floe_ok(&["repo", "create", "demo"]);
        let shape = format!("{n},{n}");
        let chunks = format!("{chunk},{chunk}");
        d.floe_ok(&[
            "array", "create", "demo", "/t", "--shape", &shape, "--chunks", &chunks, "--dtype",
            "f32",
        ]);
        d
    }

    fn cluster(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// `floe COMMAND --cluster FILE ARGS...`, waited for (bounded by the
    /// command's own timeouts).
    fn floe(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .arg(args[0])
            .arg("--cluster")
            .arg(self.cluster())
            .args(&args[1..])
            .output()
            .expect("floe runs")
    }

    fn floe_ok(&self, args: &[&str]) -> String {
        let out = self.floe(args);
        assert!(
            out.status.success(),
            "floe {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `floe job submit` in the background.
    fn submit(&self, source: &Path, extra: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["job", "--cluster"])
            .arg(self.cluster())
            .args(["submit", "demo", "/t", "--from"])
            .arg(source)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("floe job submit starts")
    }

    /// Starts a worker with its metrics on `metrics`.
    fn worker(&mut self, name: &str, metrics: std::net::SocketAddr) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["worker", "--name", name, "--idle-ms", "50", "--metrics"])
            .arg(metrics.to_string())
            .arg("--cluster")
            .arg(self.cluster())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("floe worker starts");
        self.workers.insert(name.to_string(), child);
    }

    fn signal(&self, name: &str, signal: libc::c_int) {
        let pid = self.workers[name].id() as libc::pid_t;
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Polls `ok` every 50 ms for at most 30 s.
    fn wait_for(&self, mut ok: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    /// Pauses worker `name`, the only one working on S1, at a moment the
    /// session shows a task claimed: it holds that task (or its grant is
    /// on the way to it).
    fn hold_a_task_paused(&self, name: &str) {
        self.wait_for(
            || {
                self.signal(name, libc::SIGSTOP);
                if self.tasks("S1").1 >= 1 {
                    return true;
                }
                self.signal(name, libc::SIGCONT);
                false
            },
            "a worker paused holding a task",
        );
    }

    /// Tasks done and claimed in session `id`, from `floe job status`
    /// (nothing while the session is not open yet).
    fn tasks(&self, id: &str) -> (u64, u64) {
        let out = self.floe(&["job", "status", id]);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("tasks:")).unwrap_or("");
        let number = |word: &str| {
            line.split(',')
                .find(|part| part.contains(word))
                .and_then(|part| part.split_whitespace().rev().nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        (number("done"), number("claimed"))
    }

    /// The whole array as `floe read` writes it.
    fn read_back(&self, n: u64) -> Vec<f32> {
        let out = self.dir.join("back.npy");
        let region = format!("0:{n},0:{n}");
        self.floe_ok(&[
            "read",
            "demo",
            "/t",
            &region,
            "--out",
            out.to_str().unwrap(),
        ]);
        let npy = NpyFile::open(&out).unwrap();
        let all = floe_protocol::Region::new(&[(0, n), (0, n)]);
        npy.read_region(&all).unwrap().to_vec::<f32>().unwrap()
    }

    /// Commits on `main` with `message`.
    fn commits_named(&self, message: &str) -> usize {
        let log = self.floe_ok(&["log", "demo", "--json"]);
        log.lines()
            .filter(|l| l.contains(&format!("\"message\":\"{message}\"")))
            .count()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for child in self.workers.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // SIGTERM: `floe up` stops its coordinators, then exits.
        // SAFETY: kill(2) on a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.up.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.up.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.up.kill();
        let _ = self.up.wait();
        if std::thread::panicking() {
            for name in ["up", "n1", "n2", "n3", "w1", "w2", "w3"] {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")));
                let log = log.unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {name}.log (last {} lines)", tail.len());
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// A free loopback port.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// One counter of a worker's `/metrics` (0 while it does not answer).
fn metric(addr: std::net::SocketAddr, name: &str) -> u64 {
    let Ok(mut http) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return 0;
    };
    let _ = http.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = http.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("floe_worker_{name}_total ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// An `n` x `n` f32 source: element i holds i.
fn source(dir: &Path, n: u64) -> (PathBuf, Vec<f32>) {
    let values: Vec<f32> = (0..n * n).map(|i| i as f32).collect();
    let path = dir.join("source.npy");
    write_npy(&path, &ArrayData::from_slice(&[n, n], &values).unwrap()).unwrap();
    (path, values)
}

/// Waits (bounded) for a background `floe job submit`; returns its stdout.
fn finished(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "floe job submit failed: {err}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("floe job submit did not finish in 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_job_commits_once_with_the_source_data_while_a_worker_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let n = 256;
    let mut d = Deployment::start(dir.path(), n, 16);
    let (src, values) = source(dir.path(), n);
    let w1 = free_addr();
    d.worker("w1", w1);
    let job = d.submit(&src, &["--tasks", "256", "--lease-ms", "1000"]);
    d.wait_for(
        || metric(w1, "tasks_completed") >= 4,
        "w1 to complete tasks",
    );
    d.hold_a_task_paused("w1");
    d.signal("w1", libc::SIGKILL);
    d.worker("w2", free_addr());
    d.worker("w3", free_addr());
    let out = finished(job);
    assert!(out.contains("committed C2: 256 tasks"), "{out}");
    assert_eq!(d.read_back(n), values, "the array equals the source");
    assert_eq!(d.commits_named("cooperative job"), 1);
    let (done, claimed) = d.tasks("S1");
    assert_eq!((done, claimed), (256, 0));
    let status = d.floe_ok(&["job", "status", "S1"]);
    // w1's task went to another worker (others may have been re-granted
    // too, if a loaded machine delayed their renewals).
    let regranted: u64 = status
        .split("; ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(regranted >= 1, "{status}");
}

#[test]
fn a_worker_paused_past_its_lease_cannot_complete_late() {
    let dir = tempfile::tempdir().unwrap();
    let n = 128;
    let mut d = Deployment::start(dir.path(), n, 8);
    let (src, values) = source(dir.path(), n);
    let w1 = free_addr();
    d.worker("w1", w1);
    let job = d.submit(&src, &["--tasks", "256", "--lease-ms", "500"]);
    d.wait_for(
        || metric(w1, "tasks_completed") >= 4,
        "w1 to complete tasks",
    );
    d.hold_a_task_paused("w1");
    d.worker("w2", free_addr());
    let out = finished(job);
    assert!(out.contains("committed C2"), "{out}");
    d.signal("w1", libc::SIGCONT);
    d.wait_for(
        || metric(w1, "completions_refused") >= 1,
        "w1's late completion to be refused",
    );
    assert_eq!(d.read_back(n), values, "nothing w1 wrote late is visible");
    assert_eq!(d.commits_named("cooperative job"), 1);
}

#[test]
fn a_job_reads_its_source_from_an_object_store_url() {
    let dir = tempfile::tempdir().unwrap();
    let n = 64;
    let mut d = Deployment::start(dir.path(), n, 8);
    let (src, values) = source(dir.path(), n);
    d.worker("w1", free_addr());
    d.worker("w2", free_addr());
    // The workers read it through object_store, with ranged GETs.
    let url = format!("file://{}", src.display());
    let out = d.floe_ok(&[
        "job", "submit", "demo", "/t", "--from", &url, "--tasks", "16",
    ]);
    assert!(out.contains("committed C2: 16 tasks"), "{out}");
    assert_eq!(d.read_back(n), values);
    let status = d.floe_ok(&["job", "status", "S1"]);
    assert!(status.contains(&url), "{status}");
    let missing = format!("file://{}/nope.npy", dir.path().display());
    let out = d.floe(&["job", "submit", "demo", "/t", "--from", &missing]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.npy"));
}

/// Writes `data` as source `name` and submits a job from it, which must
/// fail; returns what it said.
fn submit_fails(
    d: &Deployment,
    name: &str,
    data: Result<ArrayData, floe_protocol::FloeError>,
) -> String {
    let path = d.dir.join(name);
    write_npy(&path, &data.unwrap()).unwrap();
    let path = path.to_str().unwrap();
    let out = d.floe(&["job", "submit", "demo", "/t", "--from", path]);
    assert!(!out.status.success(), "a job from {name} must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_source_fails_before_anything_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let d = Deployment::start(dir.path(), 16, 8);
    let missing = d.floe(&[
        "job",
        "submit",
        "demo",
        "/t",
        "--from",
        "/nonexistent/x.npy",
    ]);
    assert!(!missing.status.success());
    let why = String::from_utf8_lossy(&missing.stderr);
    assert!(why.contains("/nonexistent/x.npy"), "{why}");
    let why = submit_fails(
        &d,
        "small.npy",
        ArrayData::from_slice(&[8, 16], &[0f32; 128]),
    );
    assert!(
        why.contains("shape [8, 16]") && why.contains("[16, 16]"),
        "{why}"
    );
    let why = submit_fails(
        &d,
        "ints.npy",
        ArrayData::from_slice(&[16, 16], &[0i32; 256]),
    );
    assert!(why.contains("int32") && why.contains("float32"), "{why}");
    let status = d.floe(&["job", "status", "S1"]);
    assert!(String::from_utf8_lossy(&status.stderr).contains("unknown session S1"));
    assert_eq!(d.commits_named("cooperative job"), 0);
}

/// `floe bench coop` runs end to end on a small size (its figures are for
/// people; this only keeps the command working).
#[test]
fn the_coop_benchmark_runs_and_prints_its_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "bench",
            "coop",
            "--workers",
            "2",
            "--size",
            "1MiB",
            "--chunk",
            "128KiB",
        ])
        .args(["--repeat", "1", "--dir"])
        .arg(dir.path())
        .output()
        .expect("floe bench coop runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("in 8 chunks of 128 KiB"), "{text}");
    assert!(text.contains("ratio (floe / raw):"), "{text}");
}
