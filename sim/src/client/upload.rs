//! The upload the built-in writers share: build the whole chunks of
//! chunk-aligned writes, put each under a fresh id drawn from the client's
//! RNG, record it in a delta manifest, retry failed puts a bounded number
//! of times, then put the manifest.

use std::collections::BTreeMap;

use floe_protocol::{ArrayMeta, ArrayPath, Footprint, ObjectId, Region, RepoName};
use floe_worker::chunk::patch_chunk;
use floe_worker::data::ArrayData;
use floe_worker::format::{chunk_key, encode_chunk, manifest_key, Manifest};
use floe_worker::machine::Outbox;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Most tries of one put before the writer gives up.
pub(super) const MAX_PUTS: u32 = 8;

/// A chunk (array and coordinate) or, for `None`, the delta manifest.
type Object = Option<(ArrayPath, Vec<u64>)>;

/// A put in flight: what, its bytes, tries so far.
type Pending = (Object, Vec<u8>, u32);

/// Where an upload stands after a step.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// Puts are still in flight.
    Waiting,
    /// A chunk or the manifest could not be built or put: give up.
    Failed,
    /// Every chunk and the manifest are stored.
    Done,
}

/// One writer's chunks and delta manifest; see the module docs.
pub(super) struct Upload {
    rng: SmallRng,
    repo: RepoName,
    /// The footprint of the writes uploaded.
    pub(super) footprint: Footprint,
    manifest: Manifest,
    /// The manifest's id, once put.
    pub(super) manifest_id: ObjectId,
    /// Puts in flight by token.
    puts: BTreeMap<u64, Pending>,
}

impl Upload {
    /// An upload into `repo`, drawing object ids from `seed`.
    pub(super) fn new(repo: RepoName, seed: u64) -> Self {
        Upload {
            rng: SmallRng::seed_from_u64(seed),
            repo,
            footprint: Footprint::new(),
            manifest: Manifest::new(),
            manifest_id: ObjectId(0),
            puts: BTreeMap::new(),
        }
    }

    /// Starts afresh: builds every chunk of `writes` and puts them (the
    /// manifest at once when there are none).
    pub(super) fn start(
        &mut self,
        out: &mut Outbox,
        arrays: &BTreeMap<ArrayPath, ArrayMeta>,
        writes: &[(ArrayPath, Region, Vec<u8>)],
    ) -> Progress {
        self.footprint = Footprint::new();
        self.manifest = Manifest::new();
        for (path, region, bytes) in writes {
            let Some(meta) = arrays.get(path) else {
                return Progress::Failed;
            };
            // A resize since the script was drawn may have cut the region off.
            if region.validate(meta).is_err() {
                return Progress::Failed;
            }
            self.footprint.add_region(path, meta, region);
            let data = ArrayData {
                dtype: meta.dtype,
                shape: region.shape(),
                bytes: bytes.clone(),
            };
            for part in region.chunk_parts(meta) {
                let built =
                    patch_chunk(meta, None, &part, &data).and_then(|b| encode_chunk(meta, &b));
                let Ok(object) = built else {
                    return Progress::Failed;
                };
                self.put(out, Some((path.clone(), part.coord)), object, 1);
            }
        }
        if self.puts.is_empty() {
            return self.put_manifest(out);
        }
        Progress::Waiting
    }

    /// A put finished: retries it on failure, puts the manifest after the
    /// last chunk.
    pub(super) fn on_put(&mut self, out: &mut Outbox, token: u64, ok: bool) -> Progress {
        let Some((what, bytes, tries)) = self.puts.remove(&token) else {
            return Progress::Waiting;
        };
        if !ok {
            if tries >= MAX_PUTS {
                return Progress::Failed;
            }
            self.put(out, what, bytes, tries + 1);
            return Progress::Waiting;
        }
        if !self.puts.is_empty() {
            return Progress::Waiting;
        }
        match what {
            Some(_) => self.put_manifest(out),
            None => Progress::Done,
        }
    }

    fn put(&mut self, out: &mut Outbox, what: Object, bytes: Vec<u8>, tries: u32) {
        let repo = &self.repo;
        let (id, token) = put_fresh(&mut self.rng, out, &bytes, |id| match &what {
            Some(_) => chunk_key(repo, id).to_string(),
            None => manifest_key(repo, id).to_string(),
        });
        match &what {
            Some((path, coord)) => self.manifest.insert(path.clone(), coord.clone(), id),
            None => self.manifest_id = id,
        }
        self.puts.insert(token, (what, bytes, tries));
    }

    fn put_manifest(&mut self, out: &mut Outbox) -> Progress {
        match self.manifest.encode() {
            Ok(bytes) => {
                self.put(out, None, bytes, 1);
                Progress::Waiting
            }
            Err(_) => Progress::Failed,
        }
    }
}

/// Puts `bytes` under a fresh id drawn from `rng`, at the key `key` makes
/// of it; returns the id and the put's token.
pub(super) fn put_fresh(
    rng: &mut SmallRng,
    out: &mut Outbox,
    bytes: &[u8],
    key: impl FnOnce(ObjectId) -> String,
) -> (ObjectId, u64) {
    let id = ObjectId(rng.gen());
    let token = out.put(key(id), bytes.to_vec());
    (id, token)
}
