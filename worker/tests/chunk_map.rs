//! `Reader::chunk_map` and `Reader::chunks_of`: the chunk objects of a
//! commit (what `floe export zarr` writes), against an in-process
//! coordinator and an in-memory store. Every chunk listed decodes to what a
//! read of that chunk's region returns; chunks never written, cut off by a
//! shrink, or of a deleted array are absent.

use std::sync::Arc;

use floe_coordinator::state::Config;
use floe_coordinator::LocalCoordinator;
use floe_protocol::{
    region::chunk_region, ArrayMeta, ArrayPath, BranchName, Codec, Command, CommitId, CommitMode,
    DType, FloeError, Reply, RepoName, Request,
};
use floe_worker::{ArrayData, Reader, Session, Store};

fn repo() -> RepoName {
    RepoName::new("r").unwrap()
}

fn path(p: &str) -> ArrayPath {
    ArrayPath::new(p).unwrap()
}

fn coordinator() -> Arc<LocalCoordinator> {
    let coord = Arc::new(LocalCoordinator::new(Config::default()));
    let created = coord.call_now(Request::Command(Command::CreateRepo { repo: repo() }));
    assert!(matches!(created, Ok(Reply::RepoCreated { .. })));
    coord
}

async fn write(s: &mut Session<LocalCoordinator>, p: &ArrayPath, text: &str, value: i32) {
    let r: floe_protocol::Region = text.parse().unwrap();
    let data = ArrayData::from_slice(&r.shape(), &vec![value; r.elements() as usize]).unwrap();
    s.write_region(p, &r, &data).await.unwrap();
}

/// The coordinates `chunks_of` lists for `p` at `commit`, after checking
/// that each chunk object decodes to what a read of its region returns.
async fn listed(
    reader: &mut Reader<LocalCoordinator>,
    store: &Store,
    commit: CommitId,
    p: &ArrayPath,
) -> Vec<Vec<u64>> {
    let meta: ArrayMeta = reader.record(commit).await.unwrap().arrays[p].clone();
    let chunks = reader.chunks_of(commit, p).await.unwrap();
    for (coord, &id) in &chunks {
        let buffer = store.get_chunk(&repo(), &meta, id).await.unwrap();
        let region = chunk_region(coord, &meta);
        let read = reader.read(commit, p, &region).await.unwrap();
        // The buffer is the full (padded) chunk; the arrays here are 1-D,
        // so the elements inside the array come first.
        let inside = region.elements() as usize * meta.dtype.size();
        assert_eq!(
            &buffer[..inside],
            read.bytes.as_slice(),
            "{p} {coord:?} at {commit}"
        );
    }
    chunks.into_keys().collect()
}

#[tokio::test]
async fn chunk_maps_list_what_each_commit_holds() {
    let coord = coordinator();
    let store = Store::memory();
    let main = BranchName::new("main").unwrap();
    let mut s = Session::checkout(coord.clone(), store.clone(), repo(), main)
        .await
        .unwrap();
    let (t, z) = (path("/g/t"), path("/z"));
    s.create_array(
        &t,
        ArrayMeta::new(vec![30], vec![10], DType::I32, -1.0).unwrap(),
    )
    .unwrap();
    let zmeta = ArrayMeta::new(vec![25], vec![10], DType::I32, 0.0)
        .unwrap()
        .with_codec(Codec::Zstd { level: 3 });
    s.create_array(&z, zmeta).unwrap();
    write(&mut s, &t, "0:10", 1).await;
    write(&mut s, &t, "20:30", 2).await;
    write(&mut s, &z, "12:25", 3).await;
    let c1 = s.commit("write", CommitMode::Strict).await.unwrap();

    let mut reader = Reader::new(coord.clone(), store.clone(), repo());
    assert_eq!(listed(&mut reader, &store, c1, &t).await, [[0], [2]]);
    assert_eq!(listed(&mut reader, &store, c1, &z).await, [[1], [2]]);
    let all = reader.chunk_map(c1).await.unwrap();
    assert_eq!(all.len(), 4);
    // The root commit holds nothing.
    assert!(reader.chunk_map(CommitId(0)).await.unwrap().is_empty());

    // A later commit overwrites one chunk: its object replaces the old one.
    write(&mut s, &t, "0:10", 5).await;
    let c2 = s.commit("rewrite", CommitMode::Strict).await.unwrap();
    let before = reader.chunks_of(c1, &t).await.unwrap();
    let after = reader.chunks_of(c2, &t).await.unwrap();
    assert_ne!(before[&vec![0]], after[&vec![0]]);
    assert_eq!(before[&vec![2]], after[&vec![2]]);

    // Shrink past chunk 2 then grow back: chunk 2 stays cut off.
    s.resize_array(&t, vec![15]).await.unwrap();
    let c3 = s.commit("shrink", CommitMode::Strict).await.unwrap();
    s.resize_array(&t, vec![30]).await.unwrap();
    let c4 = s.commit("grow", CommitMode::Strict).await.unwrap();
    assert!(!listed(&mut reader, &store, c3, &t).await.contains(&vec![2]));
    assert!(!listed(&mut reader, &store, c4, &t).await.contains(&vec![2]));

    // A deleted array is gone from the map, and asking for it is an error.
    s.delete_array(&z).unwrap();
    let c5 = s.commit("delete", CommitMode::Strict).await.unwrap();
    assert!(!reader.chunk_map(c5).await.unwrap().arrays.contains_key(&z));
    assert_eq!(
        reader.chunks_of(c5, &z).await,
        Err(FloeError::UnknownArray { path: z.clone() })
    );
    // An unknown commit is the coordinator's error.
    assert!(matches!(
        reader.chunk_map(CommitId(99)).await,
        Err(FloeError::UnknownCommit { .. })
    ));
    // A fresh reader (empty cache) finds the same map.
    let mut fresh = Reader::new(coord, store.clone(), repo());
    assert_eq!(
        fresh.chunk_map(c4).await.unwrap(),
        reader.chunk_map(c4).await.unwrap()
    );
}
