//! `floe export zarr` on a real deployment (`floe up`, three coordinator
//! processes): arrays of every dtype with edge chunks and unwritten chunks,
//! a zstd-compressed array, an array shrunk and grown again and a sparse
//! one are written through the library over the network client, then
//! exported at a branch, a tag and a commit. The export's `zarr.json`
//! documents are checked, and its chunk files are decoded here (a small
//! Zarr reader: raw or zstd, the fill value where a chunk is absent) and
//! compared with `floe read` of every array. When `FLOE_ZARR_PYTHON` names
//! a python with zarr-python (CI sets it), `tests/zarr_check.py` must open
//! the export and read the same values. Bad targets and unknown refs are
//! clear errors that write nothing. Then a cooperative job on the
//! deployment's two worker processes writes an array with edge chunks, and
//! that commit's export is checked the same way (zarr-python included).
//! Every process is stopped by its pid, also when the test fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Value};

use floe_protocol::{ArrayMeta, BranchName, Codec, CommitMode, DType, Region, RepoName, Solver};
use floe_server::NetCoordinator;
use floe_worker::{NpyFile, Session, Store};

use common::{data, fill_of, path, Deployment};

/// One array the test writes.
struct Case {
    path: &'static str,
    meta: ArrayMeta,
}

/// Every dtype as `/dtypes/<name>`: 7 x 5 in chunks of 3 x 2 (edge chunks
/// in both dimensions); written over 0:7,0:4, so the last chunk column
/// is never written.
fn dtype_cases() -> Vec<Case> {
    DType::ALL
        .iter()
        .map(|&d| Case {
            path: Box::leak(format!("/dtypes/{}", d.name()).into_boxed_str()),
            meta: ArrayMeta::new(vec![7, 5], vec![3, 2], d, fill_of(d)).unwrap(),
        })
        .collect()
}

/// Writes everything: C1 creates and writes every array; C2 shrinks
/// `/resized` inside a chunk; C3 grows it and writes its new tail.
async fn write_all(coord: Arc<NetCoordinator>, store: Store) -> Vec<String> {
    let repo = RepoName::new("demo").unwrap();
    let main = BranchName::new("main").unwrap();
    let mut s = Session::checkout(coord, store, repo, main).await.unwrap();
    let rebase = CommitMode::Rebase {
        solver: Solver::Fail,
    };
    let mut commits = Vec::new();
    for case in dtype_cases() {
        let p = path(case.path);
        let dtype = case.meta.dtype;
        s.create_array(&p, case.meta).unwrap();
        let r: Region = "0:7,0:4".parse().unwrap();
        s.write_region(&p, &r, &data(dtype, &r, 3)).await.unwrap();
    }
    // zstd, 20 x 6 in 8 x 4 (edge chunks), all written.
    let zmeta = ArrayMeta::new(vec![20, 6], vec![8, 4], DType::F64, 0.0)
        .unwrap()
        .with_codec(Codec::Zstd { level: 5 });
    s.create_array(&path("/zstd"), zmeta).unwrap();
    let r: Region = "0:20,0:6".parse().unwrap();
    let d = data(DType::F64, &r, 11);
    s.write_region(&path("/zstd"), &r, &d).await.unwrap();
    // Sparse: two chunks of nine written, one of them partly.
    let sparse = ArrayMeta::new(vec![10, 10], vec![4, 4], DType::I32, -7.0).unwrap();
    s.create_array(&path("/sparse"), sparse).unwrap();
    for (text, salt) in [("0:4,4:8", 1), ("9:10,8:10", 2)] {
        let r: Region = text.parse().unwrap();
        let d = data(DType::I32, &r, salt);
        s.write_region(&path("/sparse"), &r, &d).await.unwrap();
    }
    // Resized later: 12 in chunks of 5, all written.
    let resized = ArrayMeta::new(vec![12], vec![5], DType::U16, 4.0).unwrap();
    s.create_array(&path("/resized"), resized).unwrap();
    let r: Region = "0:12".parse().unwrap();
    let d = data(DType::U16, &r, 5);
    s.write_region(&path("/resized"), &r, &d).await.unwrap();
    commits.push(
        s.commit("write them all", rebase)
            .await
            .unwrap()
            .to_string(),
    );

    s.resize_array(&path("/resized"), vec![7]).await.unwrap();
    commits.push(s.commit("shrink", rebase).await.unwrap().to_string());
    s.resize_array(&path("/resized"), vec![18]).await.unwrap();
    let r: Region = "15:18".parse().unwrap();
    let d = data(DType::U16, &r, 6);
    s.write_region(&path("/resized"), &r, &d).await.unwrap();
    commits.push(s.commit("grow", rebase).await.unwrap().to_string());
    commits
}

/// Every array path of the export with its shape.
fn all_arrays(resized_len: u64) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<(String, Vec<u64>)> = dtype_cases()
        .iter()
        .map(|c| (c.path.to_string(), vec![7, 5]))
        .collect();
    out.push(("/zstd".into(), vec![20, 6]));
    out.push(("/sparse".into(), vec![10, 10]));
    out.push(("/resized".into(), vec![resized_len]));
    out
}

fn read_json(file: &Path) -> Value {
    let text = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_slice(&text).unwrap()
}

fn dtype_named(name: &str) -> DType {
    *DType::ALL.iter().find(|d| d.name() == name).unwrap()
}

/// The chunk files below an array's directory, as coordinates.
fn chunk_files(array_dir: &Path) -> BTreeSet<Vec<u64>> {
    fn walk(dir: &Path, prefix: Vec<u64>, out: &mut BTreeSet<Vec<u64>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut coord = prefix.clone();
            coord.push(name.parse().unwrap_or_else(|_| panic!("chunk key {name}")));
            if entry.file_type().unwrap().is_dir() {
                walk(&entry.path(), coord, out);
            } else {
                out.insert(coord);
            }
        }
    }
    let mut out = BTreeSet::new();
    let c = array_dir.join("c");
    if c.exists() {
        walk(&c, Vec::new(), &mut out);
    }
    out
}

/// Reads a whole array of the export the way a Zarr reader does: the
/// fill value everywhere, then each chunk file (raw, or zstd when the
/// codecs say so) copied into place, its padding beyond the shape dropped.
fn read_zarr_array(array_dir: &Path) -> (DType, Vec<u64>, Vec<u8>) {
    let meta = read_json(&array_dir.join("zarr.json"));
    let shape: Vec<u64> = serde_json::from_value(meta["shape"].clone()).unwrap();
    let chunk: Vec<u64> =
        serde_json::from_value(meta["chunk_grid"]["configuration"]["chunk_shape"].clone()).unwrap();
    let dtype = dtype_named(meta["data_type"].as_str().unwrap());
    let fill = match &meta["fill_value"] {
        Value::Bool(b) => *b as u8 as f64,
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        v => v.as_f64().unwrap(),
    };
    let fill = dtype.encode(fill).unwrap();
    let zstd = meta["codecs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "zstd");
    let size = dtype.size();
    let total: u64 = shape.iter().product();
    let mut out = fill.repeat(total as usize);
    let chunk_elems: u64 = chunk.iter().product();
    for coord in chunk_files(array_dir) {
        let mut file = array_dir.join("c");
        file.extend(coord.iter().map(|c| c.to_string()));
        let bytes = std::fs::read(&file).unwrap();
        let bytes = if zstd {
            zstd::decode_all(bytes.as_slice()).unwrap()
        } else {
            bytes
        };
        assert_eq!(
            bytes.len() as u64,
            chunk_elems * size as u64,
            "{} holds a full chunk",
            file.display()
        );
        // Every element of the chunk, row-major; keep those inside the shape.
        for e in 0..chunk_elems {
            let mut rest = e;
            let mut index = 0u64;
            let mut inside = true;
            for d in (0..shape.len()).rev() {
                let within = rest % chunk[d];
                rest /= chunk[d];
                let g = coord[d] * chunk[d] + within;
                inside &= g < shape[d];
                let stride: u64 = shape[d + 1..].iter().product();
                index += g * stride;
            }
            if inside {
                let (i, e) = (index as usize * size, e as usize * size);
                out[i..i + size].copy_from_slice(&bytes[e..e + size]);
            }
        }
    }
    (dtype, shape, out)
}

/// The export at `dir` holds exactly `arrays`, each equal to `floe read`
/// of it at `reference` (`--at C`); the reads are saved as `.npy` files
/// under `expected` with an `arrays.json` index for zarr_check.py.
fn compare_with_floe_read(
    d: &Deployment,
    dir: &Path,
    reference: &str,
    arrays: &[(String, Vec<u64>)],
    expected: &Path,
) {
    std::fs::create_dir_all(expected).unwrap();
    let mut index = BTreeMap::new();
    for (p, shape) in arrays {
        let file = format!("{}.npy", p.trim_start_matches('/').replace('/', "."));
        let npy = expected.join(&file);
        let region: Vec<String> = shape.iter().map(|n| format!("0:{n}")).collect();
        let region = region.join(",");
        d.floe_ok(&[
            "read",
            "demo",
            p,
            &region,
            "--at",
            reference,
            "--out",
            npy.to_str().unwrap(),
        ]);
        let want = NpyFile::open(&npy)
            .unwrap()
            .read_region(&region.parse().unwrap())
            .unwrap();
        let (dtype, got_shape, got) = read_zarr_array(&dir.join(p.trim_start_matches('/')));
        assert_eq!(
            (dtype, &got_shape),
            (want.dtype, shape),
            "{p} at {reference}"
        );
        assert!(got == want.bytes, "{p} at {reference}: values differ");
        index.insert(p.clone(), file);
    }
    std::fs::write(
        expected.join("arrays.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Runs tests/zarr_check.py with `$FLOE_ZARR_PYTHON`, or says it skipped.
fn python_check(export: &Path, expected: &Path) {
    let Some(python) = std::env::var_os("FLOE_ZARR_PYTHON") else {
        eprintln!(
            "note: FLOE_ZARR_PYTHON is not set: zarr-python does not check {} (CI sets it)",
            export.display()
        );
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zarr_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(export)
        .arg(expected)
        .output()
        .unwrap_or_else(|e| panic!("running {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "zarr_check.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `floe export zarr demo ARGS --to DIR`.
fn export_args<'a>(to: &'a str, at: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["export", "zarr", "demo"];
    args.extend_from_slice(at);
    args.extend(["--to", to]);
    args
}

#[test]
fn a_commit_exports_as_zarr_that_reads_like_floe() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Deployment::start_with(tmp.path(), &["--workers", "2"], &[]);
    d.floe_ok(&["repo", "create", "demo"]);
    let (coord, store) = d.library();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let commits = runtime.block_on(write_all(coord, store));
    assert_eq!(commits, ["C1", "C2", "C3"]);
    d.floe_ok(&["tag", "create", "demo", "v1", "--at", "C1"]);

    // The branch tip: every dtype, zstd, sparse, and the resized array.
    let out = tmp.path().join("out");
    let main = out.join("main");
    let to = main.to_str().unwrap();
    let said = d.floe_ok(&export_args(to, &["--branch", "main"]));
    assert!(said.contains("of demo at C3"), "{said}");

    assert_eq!(
        read_json(&main.join("zarr.json")),
        json!({"zarr_format": 3, "node_type": "group", "attributes": {}})
    );
    assert_eq!(
        read_json(&main.join("dtypes/zarr.json"))["node_type"],
        "group"
    );
    assert_eq!(
        read_json(&main.join("zstd/zarr.json")),
        json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": [20, 6],
            "data_type": "float64",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [8, 4]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0.0,
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 5, "checksum": false}}
            ],
            "attributes": {}
        })
    );
    for case in dtype_cases() {
        let meta = read_json(&main.join(&case.path[1..]).join("zarr.json"));
        let dtype = case.meta.dtype;
        assert_eq!(meta["data_type"], dtype.name());
        assert_eq!(meta["shape"], json!([7, 5]));
        assert_eq!(meta["codecs"].as_array().unwrap().len(), 1);
        let fill = match dtype {
            DType::Bool => json!(true),
            DType::I8 | DType::I16 | DType::I32 | DType::I64 => json!(-3),
            DType::U8 | DType::U16 | DType::U32 | DType::U64 => json!(9),
            DType::F32 => json!(-1.5),
            DType::F64 => json!("NaN"),
        };
        assert_eq!(meta["fill_value"], fill, "{}", case.path);
        // Rows 0:7 of columns 0:4 were written: the last chunk column never.
        let written: BTreeSet<Vec<u64>> = (0..3)
            .flat_map(|r| (0..2).map(move |c| vec![r, c]))
            .collect();
        assert_eq!(chunk_files(&main.join(&case.path[1..])), written);
    }
    let sparse: BTreeSet<Vec<u64>> = [vec![0, 1], vec![2, 2]].into_iter().collect();
    assert_eq!(chunk_files(&main.join("sparse")), sparse);
    // Shrunk to 7 (chunk 2 cut off), grown to 18, 15:18 written: chunk 2
    // reads as the fill value.
    let resized: BTreeSet<Vec<u64>> = [vec![0], vec![1], vec![3]].into_iter().collect();
    assert_eq!(chunk_files(&main.join("resized")), resized);
    assert_eq!(
        read_json(&main.join("resized/zarr.json"))["shape"],
        json!([18])
    );

    let expected = tmp.path().join("expected-main");
    compare_with_floe_read(&d, &main, "C3", &all_arrays(18), &expected);
    // floe read itself shows what was written: the resized array's
    // elements 7..15 are the fill value (4), its tail is the new write.
    let resized_now = NpyFile::open(expected.join("resized.npy"))
        .unwrap()
        .read_region(&"0:18".parse().unwrap())
        .unwrap()
        .to_vec::<u16>()
        .unwrap();
    let first = data(DType::U16, &"0:7".parse().unwrap(), 5)
        .to_vec::<u16>()
        .unwrap();
    let tail = data(DType::U16, &"15:18".parse().unwrap(), 6)
        .to_vec::<u16>()
        .unwrap();
    assert_eq!(&resized_now[..7], first.as_slice());
    assert_eq!(&resized_now[7..15], &[4u16; 8]);
    assert_eq!(&resized_now[15..], tail.as_slice());
    python_check(&main, &expected);

    // At a tag (before the resize) and at a commit (after the shrink).
    for (flag, at, reference, len) in [("--tag", "v1", "C1", 12), ("--at", "C2", "C2", 7)] {
        let dir = out.join(at);
        d.floe_ok(&export_args(dir.to_str().unwrap(), &[flag, at]));
        assert_eq!(
            read_json(&dir.join("resized/zarr.json"))["shape"],
            json!([len])
        );
        let expected = tmp.path().join(format!("expected-{at}"));
        compare_with_floe_read(&d, &dir, reference, &all_arrays(len), &expected);
        python_check(&dir, &expected);
    }

    // An empty directory is a fine target.
    let empty = out.join("empty");
    std::fs::create_dir(&empty).unwrap();
    d.floe_ok(&export_args(empty.to_str().unwrap(), &["--at", "C3"]));
    assert!(empty.join("zstd/c/0/0").exists());

    // Bad targets and refs: a clear error, nothing written.
    let full = out.join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("keep"), b"mine").unwrap();
    let err = d.floe_fails(&export_args(full.to_str().unwrap(), &["--branch", "main"]));
    assert!(err.contains("exists and is not empty"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&full).unwrap().collect();
    assert_eq!(left.len(), 1, "only the file that was there");
    let file = out.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = d.floe_fails(&export_args(file.to_str().unwrap(), &["--at", "C1"]));
    assert!(err.contains("not a directory"), "{err}");
    let fresh = out.join("fresh");
    let to = fresh.to_str().unwrap();
    for (args, message) in [
        (&["--branch", "nope"][..], "unknown branch nope"),
        (&["--tag", "nope"][..], "unknown tag nope"),
        (&["--at", "C99"][..], "unknown commit C99"),
        (&["--at", "seven"][..], "is not a commit id"),
    ] {
        let err = d.floe_fails(&export_args(to, args));
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let err = d.floe_fails(&["export", "zarr", "nope", "--branch", "main", "--to", to]);
    assert!(err.contains("unknown repo nope"), "{err}");
    let err = d.floe_fails(&["export", "zarr", "demo", "--to", to]);
    assert!(err.contains("--branch"), "a ref is required: {err}");
    assert!(!fresh.exists(), "a failed export writes nothing");
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".floe-export-")),
        "no staging directory is left behind: {names:?}"
    );

    cooperative_commit_exports(&d, tmp.path());
}

/// A commit written by a cooperative job (the deployment's worker
/// processes, four tasks) exports and reads like floe too: `/coop`, 50 x
/// 30 f32 in 16 x 16 chunks (edge chunks on both axes), created at C4 and
/// written whole by the job at C5.
fn cooperative_commit_exports(d: &Deployment, tmp: &Path) {
    let create = ["array", "create", "demo", "/coop", "--shape", "50,30"];
    let meta = ["--chunks", "16,16", "--dtype", "f32", "--fill", "-2"];
    assert_eq!(d.floe_ok(&[&create[..], &meta[..]].concat()).trim(), "C4");
    let whole: Region = "0:50,0:30".parse().unwrap();
    let source = tmp.join("coop.npy");
    floe_worker::write_npy(&source, &data(DType::F32, &whole, 8)).unwrap();
    let job = ["job", "submit", "demo", "/coop", "--tasks", "4", "--from"];
    let said = d.floe_ok(&[&job[..], &[source.to_str().unwrap()]].concat());
    assert!(said.contains("committed C5: 4 tasks"), "{said}");
    let dir = tmp.join("out/coop");
    let said = d.floe_ok(&export_args(dir.to_str().unwrap(), &["--branch", "main"]));
    assert!(said.contains("of demo at C5"), "{said}");
    let mut arrays = all_arrays(18);
    arrays.push(("/coop".into(), vec![50, 30]));
    let expected = tmp.join("expected-coop");
    compare_with_floe_read(d, &dir, "C5", &arrays, &expected);
    let written = NpyFile::open(expected.join("coop.npy"))
        .unwrap()
        .read_region(&whole)
        .unwrap();
    assert_eq!(written, data(DType::F32, &whole, 8), "the job's data");
    python_check(&dir, &expected);
}
