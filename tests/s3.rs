//! floe on a real S3-compatible server: moto's server with IAM auth,
//! started on a loopback port by the test (`tests/s3_server.py`, with the
//! Python `FLOE_S3_PYTHON` names; `.ci/run` sets it). A `floe up`
//! deployment with two workers keeps its chunk data in `s3://floe-test/…`:
//!
//! * wrong stores are refused by `floe up` with their reason: a missing
//!   bucket, refused credentials, an unreachable endpoint;
//! * non-cooperative writers: a commit on a moved branch is fast-forwarded
//!   when no chunk overlaps and refused as a conflict when one does;
//! * a cooperative job done by the worker processes, through S3;
//! * reads of both arrays equal what was written, and the chunk objects
//!   are in the bucket;
//! * a key that may read but not write: `floe write` fails on its put and
//!   no commit lands;
//! * `floe export zarr` to an S3 prefix (a non-empty one refused), and
//!   `floe import zarr` from it into another repo reads back equal, in one
//!   session and through the worker processes (`--workers`).
//!
//! Every process is stopped by its pid, also when the test fails.

mod common;

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;

use floe_protocol::{
    ArrayPath, BranchName, CommitMode, DType, FloeError, Region, RepoName, Solver,
};
use floe_server::NetCoordinator;
use floe_worker::{write_npy, ArrayData, NpyFile, Session, Store};

use common::{data, Deployment, S3Server};

/// `floe up` on `store` with `options` must fail saying `why`.
fn up_refused(dir: &Path, env: &[(&str, &str)], store: &str, options: &[&str], why: &str) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_floe"));
    cmd.args(["up", "--dir"]).arg(dir).args(["--store", store]);
    for o in options {
        cmd.args(["--store-option", o]);
    }
    let out = cmd
        .envs(env.iter().copied())
        .output()
        .expect("floe up runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "floe up on {store} started");
    assert!(err.contains(why), "floe up on {store}: {err}");
    assert!(!dir.join("cluster.toml").exists(), "nothing is laid out");
}

fn npy(dir: &Path, name: &str, block: &ArrayData) -> String {
    let file = dir.join(name);
    write_npy(&file, block).unwrap();
    file.display().to_string()
}

/// `floe read REPO PATH REGION` into a file, parsed back.
fn read(d: &Deployment, dir: &Path, repo: &str, path: &str, region: &str) -> ArrayData {
    let out = dir.join(format!("read-{repo}-{}.npy", path.replace('/', "_")));
    d.floe_ok(&["read", repo, path, region, "--out", out.to_str().unwrap()]);
    let file = NpyFile::open(&out).unwrap();
    let all = Region::new(&file.shape().iter().map(|&n| (0, n)).collect::<Vec<_>>());
    file.read_region(&all).unwrap()
}

fn commits(d: &Deployment, repo: &str) -> usize {
    d.floe_ok(&["log", repo]).lines().count()
}

/// Two writers from one base: disjoint chunks fast-forward, the same chunk
/// is a conflict. Returns what `/a` holds then.
async fn non_cooperative(coord: Arc<NetCoordinator>, store: Store) -> (ArrayData, ArrayData) {
    let repo = RepoName::new("r").unwrap();
    let main = BranchName::new("main").unwrap();
    let a = ArrayPath::new("/a").unwrap();
    let open = || Session::checkout(coord.clone(), store.clone(), repo.clone(), main.clone());
    let (mut one, mut two, mut three) = (
        open().await.unwrap(),
        open().await.unwrap(),
        open().await.unwrap(),
    );
    let top: Region = "0:16,0:30".parse().unwrap();
    let bottom: Region = "32:50,0:30".parse().unwrap();
    let (top_data, bottom_data) = (data(DType::F32, &top, 1), data(DType::F32, &bottom, 2));
    one.write_region(&a, &top, &top_data).await.unwrap();
    one.commit("top", CommitMode::Strict).await.unwrap();
    two.write_region(&a, &bottom, &bottom_data).await.unwrap();
    let rebase = CommitMode::Rebase {
        solver: Solver::Fail,
    };
    two.commit("bottom, fast-forwarded", rebase).await.unwrap();
    three
        .write_region(&a, &top, &data(DType::F32, &top, 3))
        .await
        .unwrap();
    let err = three.commit("top again", rebase).await.unwrap_err();
    assert!(matches!(err, FloeError::Conflict { .. }), "{err}");
    (top_data, bottom_data)
}

/// The keys of the bucket under `prefix`.
async fn keys(store: Store, prefix: &str) -> Vec<String> {
    let prefix = object_store::path::Path::from(prefix);
    store
        .object_store()
        .list(Some(&prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn both_modes_reads_export_and_import_run_on_s3() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let env = s3.env();
    let endpoint = format!("endpoint={}", s3.endpoint);

    up_refused(
        &tmp.path().join("no-bucket"),
        &env,
        "s3://no-such-bucket/x",
        &[],
        "the bucket does not exist",
    );
    let mut wrong = env.clone();
    wrong.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong.push(("AWS_SECRET_ACCESS_KEY", "wrong"));
    up_refused(
        &tmp.path().join("wrong-secret"),
        &wrong,
        "s3://floe-test/x",
        &[],
        "the credentials were refused",
    );
    up_refused(
        &tmp.path().join("unreachable"),
        &env,
        "s3://floe-test/x",
        &["endpoint=http://127.0.0.1:1"],
        "the store is unreachable",
    );

    let dir = tmp.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    let store_url = format!("s3://{}/data", s3.bucket);
    let flags = [
        "--workers",
        "2",
        "--store",
        &store_url,
        "--store-option",
        &endpoint,
        "--store-option",
        "allow_http=true",
    ];
    let d = Deployment::start_with(&dir, &flags, &env);
    d.floe_ok(&["repo", "create", "r"]);
    // 50 x 30 in 16 x 16 chunks: edge chunks on both axes.
    let create = [
        "array", "create", "r", "/a", "--shape", "50,30", "--chunks", "16,16",
    ];
    d.floe_ok(&[&create[..], &["--dtype", "f32", "--fill", "-1"]].concat());
    let create = [
        "array", "create", "r", "/b", "--shape", "40,24", "--chunks", "8,8",
    ];
    d.floe_ok(&[&create[..], &["--dtype", "i32"]].concat());

    let (coord, _) = d.library();
    let store = s3.store(&store_url);
    let (top, bottom) = runtime().block_on(non_cooperative(coord, store.clone()));

    let whole_b: Region = "0:40,0:24".parse().unwrap();
    let b = data(DType::I32, &whole_b, 5);
    let source = npy(tmp.path(), "b.npy", &b);
    let out = d.floe_ok(&[
        "job",
        "submit",
        "r",
        "/b",
        "--from",
        &source,
        "--lease-ms",
        "3000",
    ]);
    assert!(out.contains("committed"), "{out}");

    let a = read(&d, tmp.path(), "r", "/a", "0:50,0:30");
    let row = 30 * 4;
    assert_eq!(&a.bytes[..16 * row], &top.bytes[..]);
    assert_eq!(&a.bytes[32 * row..], &bottom.bytes[..]);
    let fill = (-1.0f32).to_le_bytes();
    assert!(a.bytes[16 * row..32 * row].chunks(4).all(|x| x == fill));
    assert_eq!(read(&d, tmp.path(), "r", "/b", "0:40,0:24"), b);
    let chunks = runtime().block_on(keys(store.clone(), "r/chunks"));
    // /a: 2 x 2 chunks (top and bottom rows); /b: 5 x 3 chunks.
    assert!(
        chunks.len() >= 4 + 15,
        "chunk objects in the bucket: {chunks:?}"
    );

    // A key that can list and read but not write: the probe passes, the
    // put is refused, and no commit lands.
    let before = commits(&d, "r");
    let mut reader = env.clone();
    reader.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    reader.push(("AWS_ACCESS_KEY_ID", &s3.reader_key));
    reader.push(("AWS_SECRET_ACCESS_KEY", &s3.reader_secret));
    let small = npy(
        tmp.path(),
        "small.npy",
        &data(DType::F32, &"0:16,0:16".parse().unwrap(), 9),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_floe"))
        .args([
            "write",
            "--cluster",
            d.cluster().to_str().unwrap(),
            "r",
            "/a",
            "16:32,0:16",
        ])
        .args(["--from", &small])
        .envs(reader.iter().copied())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a write without put rights succeeded"
    );
    assert!(err.contains("access denied"), "{err}");
    assert_eq!(
        commits(&d, "r"),
        before,
        "no commit lands without its chunks"
    );

    // Export to S3 (the cluster store's options apply to an s3:// target),
    // refused on a non-empty prefix; import from it into another repo.
    let export = format!("s3://{}/exports/r", s3.bucket);
    let out = d.floe_ok(&["export", "zarr", "r", "--branch", "main", "--to", &export]);
    assert!(out.contains("exported 2 arrays"), "{out}");
    let err = d.floe_fails(&["export", "zarr", "r", "--branch", "main", "--to", &export]);
    assert!(err.contains("is not empty"), "{err}");
    let bucket = s3.store(&format!("s3://{}", s3.bucket));
    let exported = runtime().block_on(keys(bucket, "exports/r"));
    assert!(
        exported.contains(&"exports/r/zarr.json".to_string()),
        "{exported:?}"
    );
    assert!(
        exported.contains(&"exports/r/a/c/3/1".to_string()),
        "{exported:?}"
    );
    d.floe_ok(&["repo", "create", "r2"]);
    let out = d.floe_ok(&["import", "zarr", &export, "r2"]);
    assert!(out.contains("imported 2 arrays"), "{out}");
    assert_eq!(read(&d, tmp.path(), "r2", "/a", "0:50,0:30"), a);
    assert_eq!(read(&d, tmp.path(), "r2", "/b", "0:40,0:24"), b);

    // And cooperatively: the worker processes read the Zarr chunks from S3
    // in tasks of chunk ranges; one commit.
    d.floe_ok(&["repo", "create", "r3"]);
    let out = d.floe_ok(&["import", "zarr", &export, "r3", "--workers", "--tasks", "2"]);
    assert!(out.contains("through floe worker processes"), "{out}");
    assert_eq!(commits(&d, "r3"), 2, "one commit after the root");
    assert_eq!(read(&d, tmp.path(), "r3", "/a", "0:50,0:30"), a);
    assert_eq!(read(&d, tmp.path(), "r3", "/b", "0:40,0:24"), b);
}
