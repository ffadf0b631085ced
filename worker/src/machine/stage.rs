//! Storing a change's objects: its chunk objects under fresh ids, then one
//! delta manifest listing them — the one "put the chunks, then the
//! manifest" sequence of the writer, the cooperative worker and the
//! planless contributor.

use rand::rngs::SmallRng;

use floe_protocol::{ArrayPath, FloeError, ObjectId, RepoName};

use crate::format::{Manifest, ObjectKind};

use super::upload::{Progress, Upload};
use super::write::Written;
use super::Outbox;

/// Encoded chunk objects, by array and chunk coordinate.
pub(crate) type Chunks = Vec<((ArrayPath, Vec<u64>), Vec<u8>)>;

/// What a put did to the stage.
#[derive(Debug)]
pub(crate) enum Staged {
    /// More puts are outstanding (or the put was not the stage's).
    Waiting,
    /// Every object is stored: the chunks and the delta manifest (none
    /// when there was no chunk).
    Done {
        /// The chunks, under their object ids.
        written: Written,
        /// The delta manifest listing them.
        delta: Option<ObjectId>,
    },
    /// An object could not be stored.
    Failed(FloeError),
}

#[derive(Debug)]
enum Phase {
    Chunks(Upload, Vec<(ArrayPath, Vec<u64>)>),
    Manifest(Upload, Written),
    Done,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Stage {
    phase: Phase,
}

impl Stage {
    /// Starts putting `chunks` (encoded chunk objects by array and
    /// coordinate). With none, the stage is done at once, with no manifest.
    pub(crate) fn start(
        out: &mut Outbox,
        rng: &mut SmallRng,
        repo: &RepoName,
        chunks: Chunks,
    ) -> (Stage, Staged) {
        if chunks.is_empty() {
            let done = Staged::Done {
                written: Vec::new(),
                delta: None,
            };
            return (Stage { phase: Phase::Done }, done);
        }
        let (keys, objects): (Vec<_>, Vec<_>) = chunks
            .into_iter()
            .map(|(key, bytes)| (key, (ObjectKind::Chunk, bytes)))
            .unzip();
        let upload = Upload::start(out, rng, repo, objects);
        let phase = Phase::Chunks(upload, keys);
        (Stage { phase }, Staged::Waiting)
    }

    /// A put finished.
    pub(crate) fn on_put(
        &mut self,
        out: &mut Outbox,
        rng: &mut SmallRng,
        repo: &RepoName,
        token: u64,
        result: Result<(), String>,
    ) -> Staged {
        let progress = match &mut self.phase {
            Phase::Chunks(up, _) | Phase::Manifest(up, _) => {
                up.on_put(out, rng, repo, token, result)
            }
            Phase::Done => return Staged::Waiting,
        };
        let ids = match progress {
            Progress::Ignored | Progress::Waiting => return Staged::Waiting,
            Progress::Failed(e) => {
                self.phase = Phase::Done;
                return Staged::Failed(e);
            }
            Progress::Done(ids) => ids,
        };
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Chunks(_, keys) => {
                let written: Written = keys
                    .into_iter()
                    .zip(ids)
                    .map(|((path, coord), id)| (path, coord, id))
                    .collect();
                let mut manifest = Manifest::new();
                for (path, coord, id) in &written {
                    manifest.insert(path.clone(), coord.clone(), *id);
                }
                match manifest.encode() {
                    Ok(bytes) => {
                        let objects = vec![(ObjectKind::Manifest, bytes)];
                        let up = Upload::start(out, rng, repo, objects);
                        self.phase = Phase::Manifest(up, written);
                        Staged::Waiting
                    }
                    Err(e) => Staged::Failed(e),
                }
            }
            Phase::Manifest(_, written) => Staged::Done {
                written,
                delta: ids.first().copied(),
            },
            Phase::Done => Staged::Waiting,
        }
    }
}
