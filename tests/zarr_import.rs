//! `floe import zarr` on a real deployment (`floe up`, three coordinator
//! processes). Round trip: arrays of every dtype (edge chunks, a never
//! written chunk column), a zstd array and a sparse one are written with
//! the library, exported with `floe export zarr`, imported into another
//! repo, and `floe read` of each must be equal in both repos, with the same
//! metadata and no chunk written that the source left out; the same
//! import through the deployment's two `floe worker` processes
//! (`--workers`) lands one commit equal to it. A hierarchy with
//! a blosc array and an import over existing arrays are refused, landing
//! nothing. When `FLOE_ZARR_PYTHON` names a python with zarr-python (CI sets
//! it), `tests/zarr_make.py` writes a hierarchy with zarr-python that must
//! import with equal values, and one with blosc that must be refused.
//! Every process is stopped by its pid, also when the test fails.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Codec, CommitMode, DType, Region, RepoName, Solver,
};
use floe_server::NetCoordinator;
use floe_worker::{ArrayData, NpyFile, Session, Store};

use common::{data, fill_of, path, Deployment};

/// Writes the source repo `src` in one commit: every dtype as
/// `/dtypes/<name>` (7 x 5 in 3 x 2, columns 0:4 written so the last chunk
/// column never is), `/zstd` (20 x 6 in 8 x 4, zstd level 5, all written)
/// and `/deep/sparse` (10 x 10 in 4 x 4, two chunks written). Returns every
/// array with its metadata.
async fn write_source(coord: Arc<NetCoordinator>, store: Store) -> BTreeMap<ArrayPath, ArrayMeta> {
    let repo = RepoName::new("src").unwrap();
    let main = BranchName::new("main").unwrap();
    let mut s = Session::checkout(coord, store, repo, main).await.unwrap();
    for d in DType::ALL {
        let p = path(&format!("/dtypes/{}", d.name()));
        let meta = ArrayMeta::new(vec![7, 5], vec![3, 2], d, fill_of(d)).unwrap();
        s.create_array(&p, meta).unwrap();
        let r: Region = "0:7,0:4".parse().unwrap();
        s.write_region(&p, &r, &data(d, &r, 3)).await.unwrap();
    }
    let zmeta = ArrayMeta::new(vec![20, 6], vec![8, 4], DType::F64, 0.0)
        .unwrap()
        .with_codec(Codec::Zstd { level: 5 });
    s.create_array(&path("/zstd"), zmeta).unwrap();
    let r: Region = "0:20,0:6".parse().unwrap();
    s.write_region(&path("/zstd"), &r, &data(DType::F64, &r, 11))
        .await
        .unwrap();
    let sparse = ArrayMeta::new(vec![10, 10], vec![4, 4], DType::I32, -7.0).unwrap();
    s.create_array(&path("/deep/sparse"), sparse).unwrap();
    for (text, salt) in [("0:4,4:8", 1), ("9:10,8:10", 2)] {
        let r: Region = text.parse().unwrap();
        s.write_region(&path("/deep/sparse"), &r, &data(DType::I32, &r, salt))
            .await
            .unwrap();
    }
    let rebase = CommitMode::Rebase {
        solver: Solver::Fail,
    };
    s.commit("the source", rebase).await.unwrap();
    s.arrays().clone()
}

/// The arrays at the tip of `main` of `repo`.
async fn arrays_of(
    coord: Arc<NetCoordinator>,
    store: Store,
    repo: &str,
) -> BTreeMap<ArrayPath, ArrayMeta> {
    let repo = RepoName::new(repo).unwrap();
    let main = BranchName::new("main").unwrap();
    let s = Session::checkout(coord, store, repo, main).await.unwrap();
    s.arrays().clone()
}

/// `floe read REPO PATH <whole array> --out FILE` as data.
fn read_whole(d: &Deployment, repo: &str, p: &str, shape: &[u64], out: &Path) -> ArrayData {
    let region: Vec<String> = shape.iter().map(|n| format!("0:{n}")).collect();
    let region = region.join(",");
    d.floe_ok(&["read", repo, p, &region, "--out", out.to_str().unwrap()]);
    NpyFile::open(out)
        .unwrap()
        .read_region(&region.parse().unwrap())
        .unwrap()
}

/// Equal dtype, shape and values; NaN equals NaN (its bits may differ).
fn assert_same(what: &str, got: &ArrayData, want: &ArrayData) {
    assert_eq!(
        (got.dtype, &got.shape),
        (want.dtype, &want.shape),
        "{what}: dtype and shape"
    );
    if got.bytes == want.bytes {
        return;
    }
    assert!(
        matches!(got.dtype, DType::F32 | DType::F64),
        "{what}: values differ"
    );
    for (i, (g, w)) in got.to_f64().iter().zip(want.to_f64()).enumerate() {
        assert!(
            g == &w || (g.is_nan() && w.is_nan()),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

/// The chunk count in `floe import`'s or `floe export`'s summary line.
fn chunks_said(said: &str) -> u64 {
    let after = said.split('(').nth(1).unwrap_or_default();
    after
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk count in {said:?}"))
}

/// The number of commits on `main` of `repo`.
fn commits(d: &Deployment, repo: &str) -> usize {
    d.floe_ok(&["log", repo]).lines().count()
}

#[test]
fn an_export_imports_back_equal_and_bad_codecs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Deployment::start_with(tmp.path(), &["--workers", "2"], &[]);
    for repo in ["src", "dst", "py", "coop"] {
        d.floe_ok(&["repo", "create", repo]);
    }
    let (coord, store) = d.library();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let source = runtime.block_on(write_source(coord.clone(), store.clone()));

    // Export, import into another repo: one commit, the same arrays.
    let export = tmp.path().join("export");
    let said = d.floe_ok(&[
        "export",
        "zarr",
        "src",
        "--branch",
        "main",
        "--to",
        export.to_str().unwrap(),
    ]);
    let exported = chunks_said(&said);
    let said = d.floe_ok(&[
        "import",
        "zarr",
        export.to_str().unwrap(),
        "dst",
        "--message",
        "from the export",
    ]);
    assert!(said.contains("imported 13 arrays"), "{said}");
    assert!(said.contains("into dst branch main at C1"), "{said}");
    // Unwritten chunks stay unwritten: 11 dtypes x 6 chunks, 6 zstd, 2 sparse.
    assert_eq!(exported, 11 * 6 + 6 + 2);
    assert_eq!(chunks_said(&said), exported);
    let log = d.floe_ok(&["log", "dst", "--json"]);
    let tip: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(tip["message"], "from the export");
    assert_eq!(tip["chunks"].as_u64(), Some(exported), "{log}");
    let imported = runtime.block_on(arrays_of(coord.clone(), store.clone(), "dst"));
    assert_eq!(imported, source, "shape, chunks, dtype, fill and codec");
    assert_eq!(
        imported[&path("/zstd")].codec,
        Codec::Zstd { level: 5 },
        "the zstd array stays compressed"
    );
    let reads = tmp.path().join("reads");
    std::fs::create_dir(&reads).unwrap();
    for (p, meta) in &source {
        let file = p.as_str().trim_start_matches('/').replace('/', ".");
        let want = read_whole(
            &d,
            "src",
            p.as_str(),
            &meta.shape,
            &reads.join(format!("src.{file}.npy")),
        );
        let got = read_whole(
            &d,
            "dst",
            p.as_str(),
            &meta.shape,
            &reads.join(format!("dst.{file}.npy")),
        );
        assert_same(p.as_str(), &got, &want);
    }

    // The same through the cooperative mode: the worker processes write
    // one task per source chunk; the arrays and their chunks land as one
    // commit equal to the other import.
    let said = d.floe_ok(&[
        "import",
        "zarr",
        export.to_str().unwrap(),
        "coop",
        "--workers",
    ]);
    assert!(said.contains("through floe worker processes"), "{said}");
    assert!(said.contains("into coop branch main at C1"), "{said}");
    let log = d.floe_ok(&["log", "coop", "--json"]);
    assert_eq!(log.lines().count(), 2, "one commit: {log}");
    let tip: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(tip["chunks"].as_u64(), Some(exported), "{log}");
    let cooperative = runtime.block_on(arrays_of(coord.clone(), store.clone(), "coop"));
    assert_eq!(cooperative, source);
    for (p, meta) in &source {
        let file = p.as_str().trim_start_matches('/').replace('/', ".");
        let want = NpyFile::open(reads.join(format!("src.{file}.npy"))).unwrap();
        let got = read_whole(
            &d,
            "coop",
            p.as_str(),
            &meta.shape,
            &reads.join(format!("coop.{file}.npy")),
        );
        let all = Region::new(&meta.shape.iter().map(|&n| (0, n)).collect::<Vec<_>>());
        assert_same(p.as_str(), &got, &want.read_region(&all).unwrap());
    }
    let err = d.floe_fails(&[
        "import",
        "zarr",
        export.to_str().unwrap(),
        "coop",
        "--workers",
    ]);
    assert!(
        err.contains("already exists on branch main of coop"),
        "{err}"
    );

    // Importing again: the arrays exist; refused, nothing lands.
    let before = commits(&d, "dst");
    let err = d.floe_fails(&["import", "zarr", export.to_str().unwrap(), "dst"]);
    assert!(
        err.contains("already exists on branch main of dst"),
        "{err}"
    );
    assert_eq!(commits(&d, "dst"), before);

    // A blosc array (its zarr.json says so) refuses the whole hierarchy
    // before anything is written, naming the codec and the array.
    let doc = export.join("zstd/zarr.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&doc).unwrap()).unwrap();
    meta["codecs"][1] = serde_json::json!({"name": "blosc", "configuration": {"cname": "lz4"}});
    std::fs::write(&doc, serde_json::to_vec(&meta).unwrap()).unwrap();
    let before = commits(&d, "py");
    let err = d.floe_fails(&["import", "zarr", export.to_str().unwrap(), "py"]);
    assert!(
        err.contains("array /zstd: codec \"blosc\" is not supported"),
        "{err}"
    );
    assert_eq!(commits(&d, "py"), before);
    // A chunk file that is not a full chunk: refused, nothing lands.
    meta["codecs"] = serde_json::json!([{"name": "bytes", "configuration": {"endian": "little"}}]);
    std::fs::write(&doc, serde_json::to_vec(&meta).unwrap()).unwrap();
    let err = d.floe_fails(&["import", "zarr", export.to_str().unwrap(), "py"]);
    assert!(err.contains("array /zstd chunk"), "{err}");
    assert!(err.contains("a chunk of this array needs 256"), "{err}");
    assert_eq!(commits(&d, "py"), before);
    let err = d.floe_fails(&[
        "import",
        "zarr",
        tmp.path().join("nope").to_str().unwrap(),
        "py",
    ]);
    assert!(err.contains("nope: no such directory"), "{err}");
    let err = d.floe_fails(&["import", "zarr", tmp.path().to_str().unwrap(), "py"]);
    assert!(err.contains("is not a Zarr v3 hierarchy"), "{err}");

    python_round_trip(&d, tmp.path());
}

/// With `$FLOE_ZARR_PYTHON`: tests/zarr_make.py writes hierarchies with
/// zarr-python; the good one imports into `py` equal to what zarr-python
/// reads, the blosc one is refused. Without it, a note.
fn python_round_trip(d: &Deployment, tmp: &Path) {
    let Some(python) = std::env::var_os("FLOE_ZARR_PYTHON") else {
        eprintln!(
            "note: FLOE_ZARR_PYTHON is not set: no hierarchy written by zarr-python is imported (CI sets it)"
        );
        return;
    };
    let out = tmp.join("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zarr_make.py");
    let made = Command::new(&python)
        .arg(&script)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("running {python:?}: {e}"));
    assert!(
        made.status.success(),
        "zarr_make.py failed:\n{}\n{}",
        String::from_utf8_lossy(&made.stdout),
        String::from_utf8_lossy(&made.stderr)
    );
    let before = commits(d, "py");
    let err = d.floe_fails(&["import", "zarr", out.join("bad").to_str().unwrap(), "py"]);
    assert!(
        err.contains("array /data/packed: codec \"blosc\" is not supported"),
        "{err}"
    );
    assert_eq!(commits(d, "py"), before, "a refused import lands nothing");

    let said = d.floe_ok(&["import", "zarr", out.join("good").to_str().unwrap(), "py"]);
    let expected = out.join("expected");
    let index: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(expected.join("arrays.json")).unwrap()).unwrap();
    assert!(
        said.contains(&format!("imported {} arrays", index.len())),
        "{said}"
    );
    let reads = tmp.join("python-reads");
    std::fs::create_dir(&reads).unwrap();
    for (p, file) in &index {
        let npy = NpyFile::open(expected.join(file)).unwrap();
        let shape = npy.shape().to_vec();
        let full = Region::new(&shape.iter().map(|&n| (0, n)).collect::<Vec<_>>());
        let want = npy.read_region(&full).unwrap();
        let got = read_whole(d, "py", p, &shape, &reads.join(file));
        assert_same(p, &got, &want);
    }
    // The empty array has no chunk; the raw ones lack their last column.
    let log = d.floe_ok(&["log", "py", "--json"]);
    let tip: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(tip["chunks"].as_u64(), Some(chunks_said(&said)), "{log}");
    assert_eq!(chunks_said(&said), 11 * 6 + 3 + 12, "{said}");
}
