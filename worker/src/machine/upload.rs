//! Putting a batch of immutable objects under fresh ids, retrying failed
//! puts under new ids: the one place that decides how a failed put is
//! retried (the writer's, worker's and contributor's `Stage`, and
//! [`PutTask`] for a session's delta manifest).

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use floe_protocol::{FloeError, ObjectId, RepoName};

use crate::format::{object_key, ObjectKind};

use super::{Effect, Input, Machine, Outbox};

/// Attempts per object before a batch fails (each under a new id).
pub const MAX_PUT_ATTEMPTS: u32 = 8;

/// One object of a batch, in flight.
#[derive(Clone, Debug)]
struct Pending {
    slot: usize,
    kind: ObjectKind,
    bytes: Vec<u8>,
    attempts: u32,
}

/// What a put completion meant for the batch.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Progress {
    /// Not a put of this batch (stale or unknown token).
    Ignored,
    /// More puts are outstanding.
    Waiting,
    /// Every object is stored: their ids, in the order given.
    Done(Vec<ObjectId>),
    /// An object could not be stored within [`MAX_PUT_ATTEMPTS`].
    Failed(FloeError),
}

/// A batch of puts.
#[derive(Clone, Debug, Default)]
pub(crate) struct Upload {
    inflight: BTreeMap<u64, Pending>,
    ids: Vec<Option<ObjectId>>,
}

impl Upload {
    /// Starts putting `objects` of `repo`, all at once.
    pub(crate) fn start(
        out: &mut Outbox,
        rng: &mut SmallRng,
        repo: &RepoName,
        objects: Vec<(ObjectKind, Vec<u8>)>,
    ) -> Self {
        let mut upload = Upload {
            inflight: BTreeMap::new(),
            ids: vec![None; objects.len()],
        };
        for (slot, (kind, bytes)) in objects.into_iter().enumerate() {
            let pending = Pending {
                slot,
                kind,
                bytes,
                attempts: 0,
            };
            upload.send(out, rng, repo, pending);
        }
        upload
    }

    /// True when nothing remains in flight.
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.inflight.is_empty()
    }

    /// The ids of the objects stored so far (by slot).
    fn finished(&self) -> Option<Vec<ObjectId>> {
        self.ids.iter().copied().collect()
    }

    /// Handles a put completion.
    pub(crate) fn on_put(
        &mut self,
        out: &mut Outbox,
        rng: &mut SmallRng,
        repo: &RepoName,
        token: u64,
        result: Result<(), String>,
    ) -> Progress {
        let Some(pending) = self.inflight.remove(&token) else {
            return Progress::Ignored;
        };
        if let Err(error) = result {
            if pending.attempts >= MAX_PUT_ATTEMPTS {
                self.inflight.clear();
                return Progress::Failed(FloeError::Store(format!(
                    "put failed {} times, last: {error}",
                    pending.attempts
                )));
            }
            self.send(out, rng, repo, pending);
            return Progress::Waiting;
        }
        if !self.inflight.is_empty() {
            return Progress::Waiting;
        }
        match self.finished() {
            Some(ids) => Progress::Done(ids),
            None => Progress::Failed(FloeError::Store("an upload lost track of an object".into())),
        }
    }

    /// Puts one object under a fresh id (recorded as its id until it
    /// fails and is retried under another).
    fn send(&mut self, out: &mut Outbox, rng: &mut SmallRng, repo: &RepoName, mut p: Pending) {
        let id = ObjectId(rng.gen());
        p.attempts += 1;
        if let Some(slot) = self.ids.get_mut(p.slot) {
            *slot = Some(id);
        }
        let key = object_key(repo, p.kind, id).to_string();
        let token = out.put(key, p.bytes.clone());
        self.inflight.insert(token, p);
    }
}

/// A machine that puts a batch of objects (see [`Upload`]) and ends with
/// their ids.
#[derive(Debug)]
pub struct PutTask {
    repo: RepoName,
    rng: SmallRng,
    out: Outbox,
    objects: Vec<(ObjectKind, Vec<u8>)>,
    upload: Option<Upload>,
    result: Option<Result<Vec<ObjectId>, FloeError>>,
}

impl PutTask {
    /// Puts `objects` of `repo`, drawing their ids from `seed`.
    pub fn new(repo: RepoName, seed: u64, objects: Vec<(ObjectKind, Vec<u8>)>) -> Self {
        PutTask {
            repo,
            rng: SmallRng::seed_from_u64(seed),
            out: Outbox::new(),
            objects,
            upload: None,
            result: None,
        }
    }

    /// The objects' ids in the order given, or why they could not all be
    /// stored; `None` until done.
    pub fn result(&self) -> Option<&Result<Vec<ObjectId>, FloeError>> {
        self.result.as_ref()
    }
}

impl Machine for PutTask {
    fn start(&mut self, _now_ms: u64) {
        let objects = std::mem::take(&mut self.objects);
        if objects.is_empty() {
            self.result = Some(Ok(Vec::new()));
            return;
        }
        let upload = Upload::start(&mut self.out, &mut self.rng, &self.repo, objects);
        self.upload = Some(upload);
    }

    fn handle(&mut self, _now_ms: u64, input: Input) {
        let (Input::PutDone { token, result }, Some(upload)) = (input, self.upload.as_mut()) else {
            return;
        };
        match upload.on_put(&mut self.out, &mut self.rng, &self.repo, token, result) {
            Progress::Ignored | Progress::Waiting => {}
            Progress::Done(ids) => self.result = Some(Ok(ids)),
            Progress::Failed(e) => self.result = Some(Err(e)),
        }
    }

    fn poll(&mut self) -> Option<Effect> {
        self.out.pop()
    }

    fn is_done(&self) -> bool {
        self.result.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Effect;
    use rand::SeedableRng;

    #[test]
    fn failed_puts_are_retried_under_new_ids_then_give_up() {
        let mut out = Outbox::new();
        let mut rng = SmallRng::seed_from_u64(1);
        let repo = RepoName::new("r").unwrap();
        let objects = vec![
            (ObjectKind::Chunk, vec![1]),
            (ObjectKind::Manifest, vec![2]),
        ];
        let mut up = Upload::start(&mut out, &mut rng, &repo, objects);
        let puts: Vec<(u64, String)> = std::iter::from_fn(|| out.pop())
            .filter_map(|e| match e {
                Effect::Put { token, key, .. } => Some((token, key)),
                _ => None,
            })
            .collect();
        assert_eq!(puts.len(), 2);
        assert!(puts[0].1.starts_with("r/chunks/"));
        assert!(puts[1].1.starts_with("r/manifests/"));
        let p = up.on_put(&mut out, &mut rng, &repo, puts[0].0, Err("boom".into()));
        assert_eq!(p, Progress::Waiting);
        let Some(Effect::Put { token, key, .. }) = out.pop() else {
            panic!("no retry")
        };
        assert_ne!(key, puts[0].1);
        assert_eq!(
            up.on_put(&mut out, &mut rng, &repo, puts[0].0, Ok(())),
            Progress::Ignored
        );
        assert_eq!(
            up.on_put(&mut out, &mut rng, &repo, puts[1].0, Ok(())),
            Progress::Waiting
        );
        let Progress::Done(ids) = up.on_put(&mut out, &mut rng, &repo, token, Ok(())) else {
            panic!("not done")
        };
        assert_eq!(
            key,
            object_key(&repo, ObjectKind::Chunk, ids[0]).to_string()
        );
        // A put that never succeeds fails the batch.
        let mut up = Upload::start(&mut out, &mut rng, &repo, vec![(ObjectKind::Chunk, vec![])]);
        let mut last = Progress::Waiting;
        for _ in 0..MAX_PUT_ATTEMPTS {
            let Some(Effect::Put { token, .. }) = out.pop() else {
                panic!("no put")
            };
            last = up.on_put(&mut out, &mut rng, &repo, token, Err("no".into()));
        }
        assert!(matches!(last, Progress::Failed(FloeError::Store(_))));
        assert!(up.is_idle());
    }

    fn put_of(effect: Option<Effect>) -> (u64, String) {
        match effect {
            Some(Effect::Put { token, key, .. }) => (token, key),
            other => panic!("expected a put, got {other:?}"),
        }
    }

    #[test]
    fn a_put_task_retries_under_a_new_id_and_ends_with_the_stored_one() {
        let repo = RepoName::new("r").unwrap();
        let mut task = PutTask::new(repo, 7, vec![(ObjectKind::Manifest, vec![1, 2])]);
        task.start(0);
        let (token, first) = put_of(task.poll());
        task.handle(
            0,
            Input::PutDone {
                token,
                result: Err("connection reset".into()),
            },
        );
        assert!(!task.is_done());
        let (token, second) = put_of(task.poll());
        assert_ne!(first, second, "a failed put is retried under a new id");
        task.handle(
            0,
            Input::PutDone {
                token,
                result: Ok(()),
            },
        );
        let Some(Ok(ids)) = task.result() else {
            panic!("expected ids, got {:?}", task.result());
        };
        assert_eq!(ids.len(), 1);
        assert!(
            second.ends_with(&ids[0].to_string()),
            "{second} vs {:?}",
            ids
        );
    }
}
