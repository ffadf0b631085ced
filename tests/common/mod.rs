//! Shared by the process tests that drive a `floe up` deployment
//! through the CLI and the library (`zarr_export`, `zarr_import`): start it,
//! run `floe` against it, stop every process it started by its pid, also
//! when the test fails; and the data patterns both write.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use floe_protocol::{ArrayPath, DType, Region};
use floe_server::config::{read_token, ClusterFile};
use floe_server::NetCoordinator;
use floe_worker::{ArrayData, Store};

/// A `floe up` deployment; `floe up` and every coordinator it started are
/// stopped on drop.
pub struct Deployment {
    dir: PathBuf,
    up: Child,
    coordinators: Vec<i32>,
    /// Set on every `floe` this test runs (store credentials).
    env: Vec<(String, String)>,
}

impl Deployment {
    pub fn start(dir: &Path) -> Deployment {
        Self::start_with(dir, &[], &[])
    }

    /// `floe up` with `extra` flags (`--workers`, `--store`, ...) and
    /// `env` set for it and for every `floe` run against it.
    pub fn start_with(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Deployment {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let log = std::fs::File::create(dir.join("up.log")).unwrap();
        let up = Command::new(env!("CARGO_BIN_EXE_floe"))
            .args(["up", "--nodes", "3", "--tick-ms", "10", "--dir"])
            .arg(dir)
            .args(extra)
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("floe up starts");
        let mut d = Deployment {
            dir: dir.to_path_buf(),
            up,
            coordinators: Vec::new(),
            env,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.coordinators.len() < 3 {
            assert!(Instant::now() < deadline, "the coordinators never answered");
            std::thread::sleep(Duration::from_millis(100));
            if !d.cluster().exists() {
                continue;
            }
            // Known now: killed by pid on drop, also if `floe up` died.
            let out = d.floe(&["status", "--json"]);
            d.coordinators = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|s| s["pid"].as_i64())
                .map(|p| p as i32)
                .collect();
        }
        d
    }

    pub fn cluster(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// `floe COMMAND --cluster FILE ARGS...`.
    pub fn floe(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_floe"))
            .arg(args[0])
            .arg("--cluster")
            .arg(self.cluster())
            .args(&args[1..])
            .envs(self.env.iter().cloned())
            .output()
            .expect("floe runs")
    }

    pub fn floe_ok(&self, args: &[&str]) -> String {
        let out = self.floe(args);
        assert!(
            out.status.success(),
            "floe {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `floe ARGS...` must fail; its stderr.
    pub fn floe_fails(&self, args: &[&str]) -> String {
        let out = self.floe(args);
        assert!(!out.status.success(), "floe {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The network client and store a user's program would use.
    pub fn library(&self) -> (Arc<NetCoordinator>, Store) {
        let file = ClusterFile::load(&self.cluster()).unwrap();
        let token = read_token(&file.token_file).unwrap();
        let coord = Arc::new(NetCoordinator::new(file.endpoints(), token));
        let store = file
            .store
            .clone()
            .unwrap_or_else(|| self.dir.join("store").to_string_lossy().into_owned());
        let options: Vec<(String, String)> = file.store_options.into_iter().collect();
        (coord, Store::from_url_with(&store, &options).unwrap())
    }

    /// The pids `floe up` reported for its processes (coordinators and
    /// workers), as it printed them (`  w1: pid 123 (log: ...)`).
    fn started(&self) -> Vec<i32> {
        let log = std::fs::read_to_string(self.dir.join("up.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| l.split_once(": pid ")?.1.split(' ').next()?.parse().ok())
            .collect()
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
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
        let mut pids = self.started();
        pids.extend(&self.coordinators);
        for &pid in &pids {
            // SAFETY: signal 0 only checks that the process exists; a
            // process `floe up` failed to stop is killed by its pid.
            unsafe {
                if libc::kill(pid, 0) == 0 {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("up.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            eprintln!("--- up.log (last {} lines)", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

pub fn path(p: &str) -> ArrayPath {
    ArrayPath::new(p).unwrap()
}

/// `n` elements of `dtype` drawn from a pattern that fits every dtype.
pub fn pattern(dtype: DType, n: u64, salt: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for i in 0..n {
        let k = (i * 7 + salt) % 100;
        let v = match dtype {
            DType::Bool => k.is_multiple_of(3) as u8 as f64,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => k as f64 - 50.0,
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => k as f64 + 1.0,
            DType::F32 | DType::F64 => k as f64 * 0.25 - 10.0,
        };
        bytes.extend(dtype.encode(v).unwrap());
    }
    bytes
}

pub fn data(dtype: DType, region: &Region, salt: u64) -> ArrayData {
    let bytes = pattern(dtype, region.elements(), salt);
    ArrayData::from_bytes(dtype, &region.shape(), bytes).unwrap()
}

/// A fill value for each dtype, away from 0 so it shows.
pub fn fill_of(dtype: DType) -> f64 {
    match dtype {
        DType::Bool => 1.0,
        DType::I8 | DType::I16 | DType::I32 | DType::I64 => -3.0,
        DType::U8 | DType::U16 | DType::U32 | DType::U64 => 9.0,
        DType::F32 => -1.5,
        DType::F64 => f64::NAN,
    }
}

/// A real S3-compatible server on loopback for a test: moto's server with
/// IAM auth (`tests/s3_server.py`), run by the Python that
/// `FLOE_S3_PYTHON` names (`.ci/run` installs `moto[server]` into a venv);
/// killed by its pid on drop.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A key with full access, and its secret.
    pub access_key: String,
    pub secret_key: String,
    /// A key that may only list and read, and its secret.
    pub reader_key: String,
    pub reader_secret: String,
    /// The bucket the server was started with.
    pub bucket: String,
}

impl S3Server {
    /// Starts the server; `None` (the test says why and passes) when
    /// `FLOE_S3_PYTHON` is unset, as on a machine without the venv.
    pub fn start() -> Option<S3Server> {
        use std::io::BufRead;
        let Some(python) = std::env::var_os("FLOE_S3_PYTHON") else {
            eprintln!("FLOE_S3_PYTHON is not set: skipping the S3 test (see the README)");
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the S3 server starts");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        let read = std::io::BufReader::new(stdout).read_line(&mut line);
        let field = |k: &str| -> Option<String> {
            let v: Value = serde_json::from_str(&line).ok()?;
            v[k].as_str().map(str::to_string)
        };
        let keys = [
            "endpoint",
            "access_key",
            "secret_key",
            "reader_key",
            "reader_secret",
            "bucket",
        ];
        let fields: Option<Vec<String>> = keys.iter().map(|k| field(k)).collect();
        let (Ok(_), Some(mut f)) = (read, fields) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the S3 server did not start (is moto[server] installed?): {line:?}");
        };
        let mut next = || f.remove(0);
        Some(S3Server {
            endpoint: next(),
            access_key: next(),
            secret_key: next(),
            reader_key: next(),
            reader_secret: next(),
            bucket: next(),
            child,
        })
    }

    /// A store on `url` of this server for the test's own process (which
    /// has no `AWS_*` environment), with the full-access key.
    pub fn store(&self, url: &str) -> Store {
        let options: Vec<(String, String)> = [
            ("access_key_id", self.access_key.as_str()),
            ("secret_access_key", self.secret_key.as_str()),
            ("region", "us-east-1"),
            ("endpoint", self.endpoint.as_str()),
            ("allow_http", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Store::from_url_with(url, &options).unwrap()
    }

    /// The environment a floe process needs to use the server with the
    /// full-access key.
    pub fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
