//! `LocalCoordinator`: the state machine behind a mutex in one process, no
//! Raft. For embedded use, examples and tests of the layers above.

use std::future::{ready, Future};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use floe_protocol::{ClientId, Command, Coordinator, Envelope, FloeError, Outcome, Request};

use crate::machine::StateMachine;
use crate::state::{Config, State};

/// A coordinator for one process: applies every command directly to a
/// [`State`], stamped with its own client id, a fresh sequence number and
/// the wall clock.
#[derive(Debug)]
pub struct LocalCoordinator {
    state: Mutex<State>,
    client: ClientId,
    seq: AtomicU64,
    /// Its own client's session is open (see [`LocalCoordinator::call_now`]).
    opened: AtomicBool,
}

impl LocalCoordinator {
    /// A coordinator over an empty state.
    pub fn new(config: Config) -> Self {
        Self::with_state(State::new(config))
    }

    /// A coordinator over an existing state.
    pub fn with_state(state: State) -> Self {
        LocalCoordinator {
            state: Mutex::new(state),
            client: ClientId(rand::random()),
            seq: AtomicU64::new(0),
            opened: AtomicBool::new(false),
        }
    }

    /// The client id its commands are stamped with.
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// A copy of the current state (for tests and inspection).
    pub fn state(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Answers one request synchronously, stamped with this coordinator's
    /// own client id and the next sequence number (for tests and setup).
    pub fn call_now(&self, request: Request) -> Outcome {
        if matches!(request, Request::Command(_)) && !self.opened.swap(true, Ordering::Relaxed) {
            let open = Envelope {
                client: self.client,
                seq: 0,
                request: Request::Command(Command::OpenClient),
            };
            self.deliver(&open)?;
        }
        let envelope = Envelope {
            client: self.client,
            seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            request,
        };
        self.deliver(&envelope)
    }

    /// Applies a command (idempotently, by its client and seq) or answers a
    /// query.
    fn deliver(&self, envelope: &Envelope) -> Outcome {
        let mut state = self.lock()?;
        match &envelope.request {
            Request::Query(query) => state.query(query),
            Request::Command(_) => state.apply(now_ms(), envelope),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, FloeError> {
        self.state.lock().map_err(|_| {
            FloeError::Unavailable("the local coordinator's state lock is poisoned".into())
        })
    }
}

impl Coordinator for LocalCoordinator {
    /// One node, id 1.
    fn nodes(&self) -> Vec<u64> {
        vec![1]
    }

    fn send(&self, to: u64, envelope: Envelope) -> impl Future<Output = Outcome> + Send {
        ready(match to {
            1 => self.deliver(&envelope),
            _ => Err(FloeError::Unavailable(format!(
                "the local coordinator is node 1, not {to}"
            ))),
        })
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_protocol::{BranchName, Command, Query, RepoName};

    #[test]
    fn a_poisoned_lock_makes_it_unavailable_not_a_panic() {
        let local = LocalCoordinator::new(Config::default());
        let repo = RepoName::new("r").unwrap();
        assert!(local
            .call_now(Request::Command(Command::CreateRepo { repo: repo.clone() }))
            .is_ok());
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = local.state.lock();
                panic!("poison the lock");
            })
            .join()
        });
        let checkout = Request::Query(Query::Checkout {
            repo,
            branch: BranchName::new("main").unwrap(),
        });
        assert!(matches!(
            local.call_now(checkout),
            Err(FloeError::Unavailable(_))
        ));
        // Inspection still works on a poisoned lock.
        assert!(local.state().time() > 0);
    }
}
