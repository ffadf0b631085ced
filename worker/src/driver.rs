//! The one driver of client machines: executes a [`Machine`]'s effects
//! against any [`Coordinator`] and object [`Store`] on tokio, and feeds the
//! results back, until the machine is done. Every user entry point runs its
//! machines through [`drive`]; the simulation executes the same effects in
//! its simulated world instead. The driver decides nothing: where to send,
//! when to resend and when to give up is the machines' business.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use floe_protocol::{Coordinator, FloeError};
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::path::Path;

use crate::machine::{Effect, Input, Machine};
use crate::store::Store;

type Pending = FuturesUnordered<Pin<Box<dyn Future<Output = Input> + Send>>>;

/// Milliseconds on a monotonic clock shared by every machine of this
/// process (leases and timers only compare differences).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs `machine` to completion (see [`Driven`]) and hands it back: its own
/// report says how it ended.
pub async fn drive<M, C>(machine: M, coord: Arc<C>, store: Option<Store>) -> Result<M, FloeError>
where
    M: Machine + Send,
    C: Coordinator + ?Sized + 'static,
{
    let mut driven = Driven::new(machine, coord, store);
    driven.run().await?;
    Ok(driven.into_machine())
}

/// A machine with its effects in flight, run in steps: the futures of its
/// sends, puts, gets and timers survive between [`Driven::run_until`] calls,
/// so a caller can stop at a point of interest (a job's session opened),
/// act, and go on.
pub struct Driven<M, C: ?Sized> {
    machine: M,
    coord: Arc<C>,
    store: Option<Store>,
    pending: Pending,
    started: bool,
}

impl<M, C> Driven<M, C>
where
    M: Machine + Send,
    C: Coordinator + ?Sized + 'static,
{
    /// `machine`, not started yet, over `coord` and (for machines that put
    /// or get objects) `store`.
    pub fn new(machine: M, coord: Arc<C>, store: Option<Store>) -> Self {
        Driven {
            machine,
            coord,
            store,
            pending: FuturesUnordered::new(),
            started: false,
        }
    }

    /// The machine, for inspection between steps.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine back (its in-flight effects are dropped).
    pub fn into_machine(self) -> M {
        self.machine
    }

    /// Runs until the machine is done.
    pub async fn run(&mut self) -> Result<(), FloeError> {
        self.run_until(|_| false).await
    }

    /// Starts the machine if needed, then executes its effects concurrently
    /// (sends through the coordinator, puts and gets through the store,
    /// timers on tokio's clock) and hands every result back as an
    /// [`Input`], until the machine is done or `stop` (called after every
    /// input that did not finish the machine) says so. A machine left with nothing in flight and not done
    /// is a bug in it, reported as an internal error rather than a hang.
    pub async fn run_until(&mut self, mut stop: impl FnMut(&M) -> bool) -> Result<(), FloeError> {
        if !self.started {
            self.started = true;
            self.machine.start(now_ms());
        }
        loop {
            while let Some(effect) = self.machine.poll() {
                let future = execute(effect, self.coord.clone(), self.store.clone());
                self.pending.push(future);
            }
            if self.machine.is_done() || stop(&self.machine) {
                return Ok(());
            }
            let Some(input) = self.pending.next().await else {
                return Err(FloeError::Codec(
                    "a client machine stalled: not done and nothing in flight".into(),
                ));
            };
            self.machine.handle(now_ms(), input);
        }
    }
}

/// One effect as a future of the input it produces.
fn execute<C: Coordinator + ?Sized + 'static>(
    effect: Effect,
    coord: Arc<C>,
    store: Option<Store>,
) -> Pin<Box<dyn Future<Output = Input> + Send>> {
    match effect {
        Effect::Send { to, envelope } => Box::pin(async move {
            let seq = envelope.seq;
            let outcome = coord.send(to, envelope).await;
            Input::Response { seq, outcome }
        }),
        Effect::Timer { token, after_ms } => Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(after_ms)).await;
            Input::Timer { token }
        }),
        Effect::Put { token, key, bytes } => Box::pin(async move {
            let result = match &store {
                Some(store) => store.put_raw(&Path::from(key), bytes).await,
                None => Err(no_store()),
            };
            Input::PutDone {
                token,
                result: result.map_err(|e| e.to_string()),
            }
        }),
        Effect::Get { token, key } => Box::pin(async move {
            let result = match &store {
                Some(store) => store.get_opt(&Path::from(key)).await,
                None => Err(no_store()),
            };
            Input::GetDone {
                token,
                result: result.map_err(|e| e.to_string()),
            }
        }),
    }
}

fn no_store() -> FloeError {
    FloeError::Store("this client has no object store".into())
}
