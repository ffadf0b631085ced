//! End-to-end tests of writer sessions against an in-process coordinator,
//! on in-memory and local-filesystem stores.

use std::sync::Arc;

use floe_coordinator::state::Config;
use floe_coordinator::LocalCoordinator;
use floe_protocol::{
    ArrayMeta, ArrayPath, BranchName, Codec, Command, CommitId, CommitMode, ConflictKind, DType,
    FloeError, GeometryError, Region, Reply, RepoName, Request, Solver,
};
use floe_worker::{read_at, ArrayData, FastForward, Reader, SeedStep, Session, Store};

type Coord = Arc<LocalCoordinator>;

fn repo() -> RepoName {
    RepoName::new("weather").unwrap()
}

fn main_branch() -> BranchName {
    BranchName::new("main").unwrap()
}

fn t() -> ArrayPath {
    ArrayPath::new("/t").unwrap()
}

fn region(text: &str) -> Region {
    text.parse().unwrap()
}

fn coordinator() -> Coord {
    let coord = Arc::new(LocalCoordinator::new(Config::default()));
    let created = coord.call_now(Request::Command(Command::CreateRepo { repo: repo() }));
    assert!(
        matches!(created, Ok(Reply::RepoCreated { .. })),
        "{created:?}"
    );
    coord
}

async fn session(coord: &Coord, store: &Store) -> Session<LocalCoordinator> {
    Session::checkout(coord.clone(), store.clone(), repo(), main_branch())
        .await
        .unwrap()
}

/// Commits the creation of `/t` with `meta` and returns the commit (C1).
async fn create(coord: &Coord, store: &Store, meta: ArrayMeta) -> CommitId {
    let mut s = session(coord, store).await;
    s.create_array(&t(), meta).unwrap();
    s.commit("create /t", CommitMode::Strict).await.unwrap()
}

fn ints(region: &Region, f: impl Fn(usize) -> i32) -> ArrayData {
    let vals: Vec<i32> = (0..region.elements() as usize).map(f).collect();
    ArrayData::from_slice(&region.shape(), &vals).unwrap()
}

/// Writes `ints(r, f)` to `/t` in `s` and returns the data written.
async fn write_ints(
    s: &mut Session<LocalCoordinator>,
    r: &Region,
    f: impl Fn(usize) -> i32,
) -> ArrayData {
    let data = ints(r, f);
    s.write_region(&t(), r, &data).await.unwrap();
    data
}

/// `/t` at `commit` over `text`, as i32s.
async fn ints_at(coord: &Coord, store: &Store, commit: CommitId, text: &str) -> Vec<i32> {
    read_at(
        coord.clone(),
        store.clone(),
        repo(),
        commit,
        &t(),
        &region(text),
    )
    .await
    .unwrap()
    .to_vec::<i32>()
    .unwrap()
}

/// A reference model: a dense row-major 2-D i32 array.
struct Model {
    cols: usize,
    vals: Vec<i32>,
}

impl Model {
    fn new(rows: usize, cols: usize, fill: i32) -> Self {
        Model {
            cols,
            vals: vec![fill; rows * cols],
        }
    }

    fn write(&mut self, r: &Region, data: &ArrayData) {
        let d = data.to_vec::<i32>().unwrap();
        let w = r.0[1].len() as usize;
        for (i, v) in d.into_iter().enumerate() {
            let (row, col) = (r.0[0].lo as usize + i / w, r.0[1].lo as usize + i % w);
            self.vals[row * self.cols + col] = v;
        }
    }
}

async fn round_trip_on(store: Store, codec: Codec) {
    let coord = coordinator();
    // 25 x 7 of i32 in 10 x 4 chunks: edge chunks along both dimensions.
    let meta = ArrayMeta::new(vec![25, 7], vec![10, 4], DType::I32, -1.0)
        .unwrap()
        .with_codec(codec);
    let c1 = create(&coord, &store, meta).await;
    let full = region("0:25,0:7");
    let mut model = Model::new(25, 7, -1);

    // Nothing written yet: the fill value everywhere.
    let mut s = session(&coord, &store).await;
    assert_eq!(s.base().id, c1);
    assert_eq!(
        s.read_region(&t(), &full)
            .await
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        model.vals
    );

    // A partial write (RMW from fill), then a write overlapping it in the
    // same session (RMW from the session's own pending chunks).
    let a = region("3:12,1:6");
    let da = write_ints(&mut s, &a, |i| 1000 + i as i32).await;
    model.write(&a, &da);
    let b = region("10:25,5:7");
    let db = write_ints(&mut s, &b, |i| 2000 + i as i32).await;
    model.write(&b, &db);
    assert_eq!(
        s.read_region(&t(), &full)
            .await
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        model.vals,
        "session view before commit"
    );
    let c2 = s.commit("first data", CommitMode::Strict).await.unwrap();
    assert_eq!(s.base().id, c2);
    assert!(s.is_clean());

    // A new session patches a partial chunk written by the previous commit
    // (RMW from the base's chunk).
    let mut s2 = session(&coord, &store).await;
    let c = region("11:13,2:4");
    let dc = write_ints(&mut s2, &c, |i| -50 - i as i32).await;
    let before_c3 = model.vals.clone();
    model.write(&c, &dc);
    let c3 = s2.commit("patch", CommitMode::Strict).await.unwrap();

    // Reading any commit returns exactly the model at that commit.
    let path = t();
    let at = |commit| read_at(coord.clone(), store.clone(), repo(), commit, &path, &full);
    assert_eq!(at(c3).await.unwrap().to_vec::<i32>().unwrap(), model.vals);
    assert_eq!(at(c2).await.unwrap().to_vec::<i32>().unwrap(), before_c3);
    assert_eq!(
        at(c1).await.unwrap().to_vec::<i32>().unwrap(),
        vec![-1; 25 * 7]
    );
    // A sub-region read crossing chunk boundaries.
    let sub = read_at(
        coord.clone(),
        store.clone(),
        repo(),
        c3,
        &t(),
        &region("9:14,3:6"),
    )
    .await
    .unwrap();
    let expected: Vec<i32> = (9..14)
        .flat_map(|r| (3..6).map(move |c| (r, c)))
        .map(|(r, c)| model.vals[r * 7 + c])
        .collect();
    assert_eq!(sub.to_vec::<i32>().unwrap(), expected);
}

#[tokio::test]
async fn round_trips_with_read_modify_write_in_memory() {
    round_trip_on(Store::memory(), Codec::Raw).await;
}

#[tokio::test]
async fn round_trips_with_read_modify_write_on_local_files_with_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(dir.path().join("store")).unwrap();
    round_trip_on(store, Codec::Zstd { level: 3 }).await;
    let chunks = std::fs::read_dir(dir.path().join("store/weather/chunks"))
        .unwrap()
        .count();
    assert!(chunks > 0);
    assert!(dir.path().join("store/weather/manifests").is_dir());
}

fn seed_meta() -> ArrayMeta {
    // The seed's array: chunk size 10 (here 30 elements, three chunks).
    ArrayMeta::new(vec![30], vec![10], DType::I32, 0.0).unwrap()
}

/// A coordinator and an in-memory store whose C1 creates `/t` with
/// [`seed_meta`].
async fn seeded() -> (Coord, Store) {
    let coord = coordinator();
    let store = Store::memory();
    create(&coord, &store, seed_meta()).await;
    (coord, store)
}

/// Seed example 1: sessions writing 0:20 and 20:30 both land; the second
/// through "out of date" -> "can I fast forward?" -> "yes" -> C3.
#[tokio::test]
async fn seed_example_one_fast_forwards_to_c3() {
    let coord = coordinator();
    let store = Store::memory();
    let c1 = create(&coord, &store, seed_meta()).await;
    assert_eq!(c1, CommitId(1));
    let mut s1 = session(&coord, &store).await.with_seed(1);
    let mut s2 = session(&coord, &store).await.with_seed(2);
    let (r1, r2) = (region("0:20"), region("20:30"));
    let d1 = write_ints(&mut s1, &r1, |i| i as i32 + 1).await;
    let d2 = write_ints(&mut s2, &r2, |i| 100 + i as i32).await;
    assert_eq!(
        s1.commit("session 1", CommitMode::Strict).await.unwrap(),
        CommitId(2)
    );
    // A plain strict commit is refused with the typed error.
    assert_eq!(
        s2.commit("session 2", CommitMode::Strict).await,
        Err(FloeError::OutOfDate { tip: CommitId(2) })
    );
    let run = s2.commit_with_fast_forward("session 2", 5).await.unwrap();
    assert_eq!(run.commit, CommitId(3));
    assert_eq!(
        run.steps,
        vec![
            SeedStep::CommitSent { base: CommitId(1) },
            SeedStep::OutOfDate { tip: CommitId(2) },
            SeedStep::Asked {
                tip: CommitId(2),
                yes: true
            },
            SeedStep::FastForwarded {
                from: CommitId(1),
                to: CommitId(2)
            },
            SeedStep::CommitSent { base: CommitId(2) },
            SeedStep::Committed {
                commit: CommitId(3)
            },
        ]
    );
    assert_eq!(s2.base().parent, Some(CommitId(2)));
    let all = ints_at(&coord, &store, CommitId(3), "0:30").await;
    let mut expected = d1.to_vec::<i32>().unwrap();
    expected.extend(d2.to_vec::<i32>().unwrap());
    assert_eq!(all, expected);
}

/// Seed example 2: 0:20 and 15:30 share chunk [1] (10:20): the second
/// session gets a conflict naming it, then retries manually on C2.
#[tokio::test]
async fn seed_example_two_conflicts_on_chunk_1_then_retries() {
    let (coord, store) = seeded().await;
    let mut s1 = session(&coord, &store).await;
    let mut s2 = session(&coord, &store).await;
    let (r1, r2) = (region("0:20"), region("15:30"));
    let d1 = write_ints(&mut s1, &r1, |i| i as i32 + 1).await;
    let d2 = write_ints(&mut s2, &r2, |i| 100 + i as i32).await;
    let c2 = s1.commit("session 1", CommitMode::Strict).await.unwrap();

    match s2.can_fast_forward().await.unwrap() {
        FastForward::No { tip, conflicts } => {
            assert_eq!(tip, c2);
            assert_eq!(conflicts.len(), 1);
        }
        yes => panic!("expected a conflict, got {yes:?}"),
    }
    let mut steps = Vec::new();
    let err = s2
        .commit_with_fast_forward_observed("session 2", 5, |s| steps.push(s.clone()))
        .await
        .unwrap_err();
    let FloeError::Conflict { tip, conflicts } = err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(tip, c2);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].path, t());
    assert_eq!(
        conflicts[0].kind,
        ConflictKind::ChunkDoubleUpdate {
            chunks: vec![vec![1]],
            total: 1
        }
    );
    assert_eq!(
        steps.last(),
        Some(&SeedStep::Asked {
            tip: c2,
            yes: false
        })
    );
    // The server-side rebase refuses the same way, in one round trip.
    assert!(matches!(
        s2.commit(
            "session 2",
            CommitMode::Rebase {
                solver: Solver::Fail
            }
        )
        .await,
        Err(FloeError::Conflict { .. })
    ));

    // The user's manual retry: check out C2, rewrite 15:30, commit -> C3.
    let mut retry = session(&coord, &store).await;
    assert_eq!(retry.base().id, c2);
    retry.write_region(&t(), &r2, &d2).await.unwrap();
    let c3 = retry
        .commit("session 2, retried", CommitMode::Strict)
        .await
        .unwrap();
    assert_eq!(c3, CommitId(3));
    let all = ints_at(&coord, &store, c3, "0:30").await;
    let mut expected = d1.to_vec::<i32>().unwrap()[..15].to_vec();
    expected.extend(d2.to_vec::<i32>().unwrap());
    assert_eq!(all, expected);
}

/// `Rebase` mode fast-forwards server-side in one round trip, and a
/// partial chunk read-modify-written from the old base is still right.
#[tokio::test]
async fn rebase_mode_lands_disjoint_partial_writes() {
    let (coord, store) = seeded().await;
    let mut s0 = session(&coord, &store).await;
    let all = region("0:30");
    write_ints(&mut s0, &all, |_| 1).await;
    s0.commit("ones", CommitMode::Strict).await.unwrap();
    let mut s1 = session(&coord, &store).await;
    let mut s2 = session(&coord, &store).await;
    let (r1, r2) = (region("0:5"), region("25:28"));
    write_ints(&mut s1, &r1, |_| 7).await;
    write_ints(&mut s2, &r2, |_| 9).await;
    s1.commit("one", CommitMode::Strict).await.unwrap();
    let c3 = s2
        .commit(
            "two",
            CommitMode::Rebase {
                solver: Solver::Fail,
            },
        )
        .await
        .unwrap();
    assert_eq!(s2.base().rebased_over, 1);
    let all = ints_at(&coord, &store, c3, "0:30").await;
    let expected: Vec<i32> = (0..30)
        .map(|i| match i {
            0..5 => 7,
            25..28 => 9,
            _ => 1,
        })
        .collect();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn bad_writes_are_typed_errors() {
    let (coord, store) = seeded().await;
    let mut s = session(&coord, &store).await;
    let r = region("0:10");
    let floats = ArrayData::from_slice(&[10], &[0.5f64; 10]).unwrap();
    assert_eq!(
        s.write_region(&t(), &r, &floats).await,
        Err(FloeError::DTypeMismatch {
            path: t(),
            expected: DType::I32,
            got: DType::F64
        })
    );
    let err = s
        .write_region(&t(), &region("25:31"), &ints(&region("25:31"), |_| 0))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        FloeError::Geometry {
            error: GeometryError::OutOfBounds {
                dim: 0,
                extent: 30,
                ..
            },
            ..
        }
    ));
    assert!(matches!(
        s.read_region(&t(), &region("0:31")).await,
        Err(FloeError::Geometry {
            error: GeometryError::OutOfBounds { .. },
            ..
        })
    ));
    let short = ints(&region("0:9"), |_| 0);
    assert!(matches!(
        s.write_region(&t(), &r, &short).await,
        Err(FloeError::Geometry {
            error: GeometryError::DataSize {
                expected: 40,
                got: 36
            },
            ..
        })
    ));
    let two_d = ArrayData::from_slice(&[2, 5], &[0i32; 10]).unwrap();
    assert!(matches!(
        s.write_region(&t(), &r, &two_d).await,
        Err(FloeError::Geometry {
            error: GeometryError::RankMismatch {
                expected: 1,
                got: 2
            },
            ..
        })
    ));
    let nowhere = ArrayPath::new("/nowhere").unwrap();
    assert_eq!(
        s.write_region(&nowhere, &r, &ints(&r, |_| 0)).await,
        Err(FloeError::UnknownArray { path: nowhere })
    );
    assert!(s.is_clean(), "failed writes leave nothing pending");
    assert!(matches!(
        s.create_array(&t(), seed_meta()),
        Err(FloeError::InvalidChange { .. })
    ));
}

#[tokio::test]
async fn arrays_can_be_created_resized_and_deleted() {
    let coord = coordinator();
    let store = Store::memory();
    let mut s = session(&coord, &store).await;
    // Create and write in the same commit: reads see only our chunks.
    s.create_array(&t(), seed_meta()).unwrap();
    let r = region("5:15");
    write_ints(&mut s, &r, |i| i as i32).await;
    let c1 = s
        .commit("create and write", CommitMode::Strict)
        .await
        .unwrap();
    assert_eq!(s.arrays()[&t()].shape, vec![30]);

    s.resize_array(&t(), vec![45]).await.unwrap();
    assert_eq!(s.footprint().arrays[&t()].grid, vec![5]);
    let tail = region("40:45");
    write_ints(&mut s, &tail, |_| 4).await;
    let c2 = s.commit("grow", CommitMode::Strict).await.unwrap();
    let got = ints_at(&coord, &store, c2, "0:45").await;
    let expected: Vec<i32> = (0..45)
        .map(|i| match i {
            5..15 => i - 5,
            40..45 => 4,
            _ => 0,
        })
        .collect();
    assert_eq!(got, expected);
    // The old version keeps its shape.
    let mut reader = Reader::new(coord.clone(), store.clone(), repo());
    assert!(reader.read(c1, &t(), &region("0:45")).await.is_err());

    s.delete_array(&t()).unwrap();
    let c3 = s.commit("delete", CommitMode::Strict).await.unwrap();
    assert_eq!(
        reader.read(c3, &t(), &region("0:10")).await,
        Err(FloeError::UnknownArray { path: t() })
    );
    // Re-created: old chunks do not show through.
    s.create_array(&t(), seed_meta()).unwrap();
    let c4 = s.commit("re-create", CommitMode::Strict).await.unwrap();
    let got = reader.read(c4, &t(), &region("0:30")).await.unwrap();
    assert_eq!(got.to_vec::<i32>().unwrap(), vec![0; 30]);
}

#[tokio::test]
async fn checkpoints_give_the_same_reads() {
    let (coord, store) = seeded().await;
    let mut s = session(&coord, &store).await;
    for (k, text) in ["0:12", "8:20", "25:30", "0:3"].iter().enumerate() {
        let r = region(text);
        write_ints(&mut s, &r, |i| (k * 100 + i) as i32).await;
        s.commit(&format!("step {k}"), CommitMode::Strict)
            .await
            .unwrap();
    }
    let tip = s.base().id;
    let full = region("0:30");
    let before = read_at(coord.clone(), store.clone(), repo(), tip, &t(), &full)
        .await
        .unwrap();
    let cp = s.write_checkpoint(tip).await.unwrap();
    // The coordinator now lists the checkpoint on the commit.
    let mut reader = Reader::new(coord.clone(), store.clone(), repo());
    assert_eq!(reader.record(tip).await.unwrap().checkpoint, Some(cp));
    let checkpoint = store.get_checkpoint(&repo(), cp).await.unwrap();
    assert_eq!(checkpoint.len(), 3, "chunks 0, 1 and 2 were written");
    assert_eq!(reader.read(tip, &t(), &full).await.unwrap(), before);
    // Later commits read through the checkpoint.
    let r = region("10:11");
    write_ints(&mut s, &r, |_| -9).await;
    let next = s
        .commit("after checkpoint", CommitMode::Strict)
        .await
        .unwrap();
    let mut expected = before.to_vec::<i32>().unwrap();
    expected[10] = -9;
    assert_eq!(
        reader
            .read(next, &t(), &full)
            .await
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        expected
    );
}

/// Sessions and their futures are `Send`: a writer can run on any tokio task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_run_on_spawned_tasks() {
    let (coord, store) = seeded().await;
    let handles: Vec<_> = ["0:10", "10:20", "20:30"]
        .into_iter()
        .map(|text| {
            let (coord, store) = (coord.clone(), store.clone());
            tokio::spawn(async move {
                let mut s = session(&coord, &store).await;
                let r = region(text);
                write_ints(&mut s, &r, |_| r.0[0].lo as i32).await;
                s.commit_with_fast_forward(text, 10).await.unwrap().commit
            })
        })
        .collect();
    let mut commits = Vec::new();
    for h in handles {
        commits.push(h.await.unwrap());
    }
    commits.sort();
    assert_eq!(commits, vec![CommitId(2), CommitId(3), CommitId(4)]);
    let got = ints_at(&coord, &store, CommitId(4), "0:30").await;
    let expected: Vec<i32> = (0..30).map(|i| i / 10 * 10).collect();
    assert_eq!(got, expected);
}

/// A shrink that ends inside a chunk must not leave the cut-off values
/// behind for a later grow to show again.
#[tokio::test]
async fn a_shrink_inside_a_chunk_then_a_grow_shows_the_fill_value() {
    let (coord, store) = seeded().await;
    let mut s = session(&coord, &store).await;
    write_ints(&mut s, &region("0:30"), |i| i as i32 + 1).await;
    s.commit("write", CommitMode::Strict).await.unwrap();
    s.resize_array(&t(), vec![25]).await.unwrap();
    s.commit("shrink", CommitMode::Strict).await.unwrap();
    s.resize_array(&t(), vec![30]).await.unwrap();
    let grown = s.commit("grow", CommitMode::Strict).await.unwrap();
    let expected: Vec<i32> = (1..=25).chain([0; 5]).collect();
    assert_eq!(ints_at(&coord, &store, grown, "0:30").await, expected);
}

/// The rewritten edge chunk is part of the resize: a concurrent write to
/// it conflicts instead of being clobbered.
#[tokio::test]
async fn a_shrink_conflicts_with_a_concurrent_write_to_its_edge_chunk() {
    let (coord, store) = seeded().await;
    let mut writer = session(&coord, &store).await;
    let mut resizer = session(&coord, &store).await;
    write_ints(&mut writer, &region("20:25"), |_| 7).await;
    writer.commit("write", CommitMode::Strict).await.unwrap();
    resizer.resize_array(&t(), vec![25]).await.unwrap();
    let rebase = CommitMode::Rebase {
        solver: Solver::Fail,
    };
    let err = resizer.commit("shrink", rebase).await.unwrap_err();
    assert!(
        matches!(&err, FloeError::Conflict { conflicts, .. } if conflicts.iter().any(|c| matches!(
            &c.kind,
            floe_protocol::ConflictKind::ChunkDoubleUpdate { chunks, .. } if chunks == &vec![vec![2]]
        ))),
        "{err}"
    );
}

/// Regression: in one session, a shrink to an unaligned size and a grow
/// back to the base's shape used to commit only the rewritten edge chunk
/// (the metadata change vanished as the shape matched the base again), so
/// the tip showed the cut-off values again past the edge chunk.
#[tokio::test]
async fn a_shrink_then_a_grow_in_one_session_shows_the_fill_value() {
    let (coord, store) = seeded().await;
    let mut s = session(&coord, &store).await;
    write_ints(&mut s, &region("12:30"), |i| i as i32 + 1).await;
    s.commit("write", CommitMode::Strict).await.unwrap();
    s.resize_array(&t(), vec![15]).await.unwrap();
    s.resize_array(&t(), vec![30]).await.unwrap();
    let grown = s
        .commit("shrink and grow", CommitMode::Strict)
        .await
        .unwrap();
    let mut expected = vec![0; 30];
    for (i, v) in expected.iter_mut().enumerate().take(15).skip(12) {
        *v = i as i32 - 11;
    }
    assert_eq!(ints_at(&coord, &store, grown, "0:30").await, expected);
}

/// The same with aligned sizes and a grow past the base's shape, and a
/// write after the grow that must survive it.
#[tokio::test]
async fn an_aligned_shrink_then_a_larger_grow_keeps_only_later_writes() {
    let (coord, store) = seeded().await;
    let mut s = session(&coord, &store).await;
    write_ints(&mut s, &region("0:30"), |i| i as i32 + 1).await;
    s.commit("write", CommitMode::Strict).await.unwrap();
    s.resize_array(&t(), vec![10]).await.unwrap();
    s.resize_array(&t(), vec![20]).await.unwrap();
    write_ints(&mut s, &region("15:20"), |_| 9).await;
    s.resize_array(&t(), vec![40]).await.unwrap();
    let grown = s
        .commit("cut and regrow", CommitMode::Strict)
        .await
        .unwrap();
    let expected: Vec<i32> = (1..=10)
        .chain([0; 5])
        .chain([9; 5])
        .chain([0; 20])
        .collect();
    assert_eq!(ints_at(&coord, &store, grown, "0:40").await, expected);
}

/// A read of more chunks than are read at once (50 chunks, 16 in flight)
/// gets every one of them, the fill value where nothing was written.
#[tokio::test]
async fn a_read_of_many_chunks_gets_them_all() {
    let coord = coordinator();
    let store = Store::memory();
    let meta = ArrayMeta::new(vec![100], vec![2], DType::I32, -1.0).unwrap();
    create(&coord, &store, meta).await;
    let mut s = session(&coord, &store).await;
    write_ints(&mut s, &region("0:90"), |i| i as i32).await;
    let c = s.commit("many", CommitMode::Strict).await.unwrap();
    let got = ints_at(&coord, &store, c, "0:100").await;
    let want: Vec<i32> = (0..90).chain([-1; 10]).collect();
    assert_eq!(got, want);
    // The session's own view reads the same before anything is pending.
    let mine = s.read_region(&t(), &region("85:95")).await.unwrap();
    let expected: Vec<i32> = (85..90).chain([-1; 5]).collect();
    assert_eq!(mine, ArrayData::from_slice(&[10], &expected).unwrap());
}
