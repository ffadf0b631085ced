//! Oracle 3: every array at every commit of the final chain, read through
//! the real read path (`worker::resolve` over the simulated store and the
//! replica's commit records), equals the reference model.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use floe_protocol::region::{chunk_region, copy_box};
use floe_protocol::{ArrayMeta, ArrayPath, CommitId, RepoName};
use floe_worker::format::{checkpoint_key, chunk_key, decode_chunk, manifest_key, Manifest};
use floe_worker::resolve::{History, Location, Need, Step};

use super::{history, Check, Failure, DATA};
use crate::model::Model;
use crate::obs::{Observations, Replica};

/// The simulated object store's contents: key -> bytes.
pub type Objects = BTreeMap<String, Vec<u8>>;

fn fail(d: String) -> Failure {
    Failure::new(DATA, d)
}

/// Oracle 3 on one replica's final chain.
pub fn data(obs: &Observations, r: &Replica, repo: &RepoName, store: &Objects) -> Check {
    let ids = history(r)?;
    let attempts = obs.model_attempts();
    let mut model = Model::new(&r.records, &attempts);
    let mut history = History::new();
    // Chunk objects are immutable: decode each once for the whole chain.
    let mut chunks = Chunks::new();
    for rec in r.records.values() {
        history.insert_record(rec.clone());
    }
    for &id in &ids {
        let manifest = materialize(&mut history, repo, store, id)?;
        let expected = model.contents(id).map_err(fail)?;
        let rec = &r.records[&id];
        for (path, meta) in &rec.arrays {
            let got = read_array(repo, store, &mut chunks, &manifest, path, meta, id)?;
            let want = expected
                .get(path)
                .ok_or_else(|| fail(format!("model has no {path} at {id}")))?;
            compare(id, &rec.message, path, meta, want, &got)?;
        }
    }
    if let Some(tip) = r.records.get(&r.tip) {
        resolve_agrees(&history, tip, repo, store)?;
    }
    tag_reads(obs, r, &mut model)
}

/// Each region a client read at a tag (through the core's `ReadTask`)
/// equals the model's at the commit the tag resolved to.
fn tag_reads(obs: &Observations, r: &Replica, model: &mut Model) -> Check {
    for read in &obs.tag_reads {
        let Some(w) = &read.read else { continue };
        let contents = model.contents(read.commit).map_err(fail)?;
        let meta = r
            .records
            .get(&read.commit)
            .and_then(|rec| rec.arrays.get(&w.path));
        let (Some(full), Some(meta)) = (contents.get(&w.path), meta) else {
            return Err(fail(format!(
                "c{} read {} at tag {} ({}), which has no such array",
                read.client.wrapping_add(1),
                w.path,
                read.tag,
                read.commit
            )));
        };
        let want = region_of(full, meta, &w.region);
        let what = format!(
            "the read of {:?} at tag {} by c{}",
            w.region,
            read.tag,
            read.client.wrapping_add(1)
        );
        let region_meta = ArrayMeta {
            shape: w.region.shape(),
            ..meta.clone()
        };
        compare(read.commit, &what, &w.path, &region_meta, &want, &w.data)?;
    }
    Ok(())
}

/// The bytes of `region` out of a whole array's row-major buffer.
fn region_of(full: &[u8], meta: &ArrayMeta, region: &floe_protocol::Region) -> Vec<u8> {
    let size = meta.dtype.size();
    let shape = region.shape();
    let mut out = vec![0; shape.iter().product::<u64>() as usize * size];
    let at: Vec<u64> = region.0.iter().map(|s| s.lo).collect();
    let zero = vec![0; at.len()];
    copy_box(
        full,
        &meta.shape,
        &at,
        &mut out,
        &shape,
        &zero,
        &shape,
        size,
    );
    out
}

/// Chunk by chunk, `History::resolve` (the path a session's reads take)
/// finds what `History::materialize` found, at the tip.
fn resolve_agrees(
    history: &History,
    tip: &floe_protocol::CommitRecord,
    repo: &RepoName,
    store: &Objects,
) -> Check {
    let mut history = history.clone();
    let manifest = materialize(&mut history, repo, store, tip.id)?;
    for (path, meta) in &tip.arrays {
        for index in 0..meta.chunk_count() {
            let coord = floe_protocol::region::coord_of(index, &meta.grid());
            let located = match history.resolve(tip.id, path, &coord) {
                Ok(Step::Done(Location::Chunk(id))) => Some(id),
                Ok(Step::Done(Location::Fill)) => None,
                other => {
                    return Err(fail(format!(
                        "resolving {path} {coord:?} at {}: {other:?}",
                        tip.id
                    )))
                }
            };
            let listed = manifest.get(path, &coord);
            if located != listed {
                return Err(fail(format!(
                    "at {} chunk {coord:?} of {path} resolves to {located:?} but the full chunk map lists {listed:?}",
                    tip.id
                )));
            }
        }
    }
    Ok(())
}

/// The full chunk map of `id`, fetching manifests from the store as the
/// walk asks for them.
fn materialize(
    history: &mut History,
    repo: &RepoName,
    store: &Objects,
    id: CommitId,
) -> Result<Manifest, Failure> {
    loop {
        let step = history
            .materialize(id)
            .map_err(|e| fail(format!("reading {id}: {e}")))?;
        let (obj, key) = match step {
            Step::Done(m) => return Ok(m),
            Step::Need(Need::Record(c)) => {
                return Err(fail(format!(
                    "reading {id} needs record {c}, not on the replica"
                )))
            }
            Step::Need(Need::Manifest(m)) => (m, manifest_key(repo, m)),
            Step::Need(Need::Checkpoint(m)) => (m, checkpoint_key(repo, m)),
        };
        let bytes = store.get(key.as_ref()).ok_or_else(|| {
            fail(format!(
                "{id} refers to manifest {key}, which is not in the store"
            ))
        })?;
        let manifest = Manifest::decode(bytes).map_err(|e| fail(format!("{key}: {e}")))?;
        history.insert_manifest(obj, Arc::new(manifest));
    }
}

/// Decoded chunk buffers by object id.
type Chunks = BTreeMap<floe_protocol::ObjectId, Vec<u8>>;

/// The whole array `path` at a commit, row-major, from its chunk map.
fn read_array(
    repo: &RepoName,
    store: &Objects,
    chunks: &mut Chunks,
    manifest: &Manifest,
    path: &ArrayPath,
    meta: &ArrayMeta,
    id: CommitId,
) -> Result<Vec<u8>, Failure> {
    let size = meta.dtype.size();
    let elements = meta.shape.iter().product::<u64>() as usize;
    let mut out = meta.fill_value.repeat(elements);
    for (coord, &obj) in manifest.arrays.get(path).into_iter().flatten() {
        let chunk = match chunks.entry(obj) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                let key = chunk_key(repo, obj);
                let bytes = store.get(key.as_ref()).ok_or_else(|| {
                    fail(format!(
                        "{path} chunk {coord:?} at {id}: {key} is not in the store"
                    ))
                })?;
                let decoded = decode_chunk(meta, bytes)
                    .map_err(|e| fail(format!("{path} chunk {coord:?} at {id}: {e}")))?;
                e.insert(decoded)
            }
        };
        let region = chunk_region(coord, meta);
        let at: Vec<u64> = region.0.iter().map(|s| s.lo).collect();
        let zero = vec![0; at.len()];
        copy_box(
            chunk,
            &meta.chunk_shape,
            &zero,
            &mut out,
            &meta.shape,
            &at,
            &region.shape(),
            size,
        );
    }
    Ok(out)
}

fn compare(
    id: CommitId,
    message: &str,
    path: &ArrayPath,
    meta: &ArrayMeta,
    want: &[u8],
    got: &[u8],
) -> Check {
    if want == got {
        return Ok(());
    }
    let size = meta.dtype.size();
    if want.len() != got.len() {
        return Err(fail(format!(
            "{path} at {id} ({message:?}): read {} bytes, the model has {}",
            got.len(),
            want.len()
        )));
    }
    let first = (0..want.len() / size)
        .find(|i| want[i * size..(i + 1) * size] != got[i * size..(i + 1) * size])
        .unwrap_or(0);
    let differing = (0..want.len() / size)
        .filter(|i| want[i * size..(i + 1) * size] != got[i * size..(i + 1) * size])
        .count();
    let coord = unravel(first as u64, &meta.shape);
    Err(fail(format!(
        "{path} at {id} ({message:?}): {differing} elements differ; first at {coord:?}: read {:?}, the model says {:?} ({})",
        &got[first * size..(first + 1) * size],
        &want[first * size..(first + 1) * size],
        meta.dtype
    )))
}

fn unravel(mut i: u64, shape: &[u64]) -> Vec<u64> {
    let mut out = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        out[d] = i % shape[d];
        i /= shape[d];
    }
    out
}
