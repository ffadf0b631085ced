//! The one driver of client machines: executes a [`Machine`]'s effects
//! against any [`Coordinator`] and object [`Store`] on tokio, and feeds the
//! results back, until the machine is done. Every user entry point runs its
//! machines through [`drive`]; the simulation executes the same effects in
//! its simulated world instead. The driver decides nothing: where to send,
//! when to resend and when to give up is the machines' business.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use floe_protocol::{Coordinator, FloeError};
use futures::stream::{FuturesUnordered, StreamExt};
use object_store::path::Path;

use crate::machine::{Effect, Input, Machine};
use crate::store::Store;

type Pending<'a> = FuturesUnordered<Pin<Box<dyn Future<Output = Input> + Send + 'a>>>;

/// Milliseconds on a monotonic clock shared by every machine of this
/// process (leases and timers only compare differences).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs `machine` to completion: starts it, executes its effects
/// concurrently (sends through `coord`, puts and gets through `store`,
/// timers on tokio's clock) and hands every result back as an [`Input`].
/// Returns when [`Machine::is_done`]; the machine's own report says how it
/// ended. A machine left with nothing in flight and not done is a bug in
/// it, reported as an internal error rather than a hang. A machine that
/// asks for a put or get without a store gets the error as its input.
pub async fn drive<M, C>(machine: &mut M, coord: &C, store: Option<&Store>) -> Result<(), FloeError>
where
    M: Machine + Send + ?Sized,
    C: Coordinator + ?Sized,
{
    let mut pending: Pending<'_> = FuturesUnordered::new();
    machine.start(now_ms());
    loop {
        while let Some(effect) = machine.poll() {
            pending.push(execute(effect, coord, store));
        }
        if machine.is_done() {
            return Ok(());
        }
        let Some(input) = pending.next().await else {
            return Err(FloeError::Codec(
                "a client machine stalled: not done and nothing in flight".into(),
            ));
        };
        machine.handle(now_ms(), input);
    }
}

/// One effect as a future of the input it produces.
fn execute<'a, C: Coordinator + ?Sized>(
    effect: Effect,
    coord: &'a C,
    store: Option<&'a Store>,
) -> Pin<Box<dyn Future<Output = Input> + Send + 'a>> {
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
            let result = match store {
                Some(store) => store.put_raw(&Path::from(key), bytes).await,
                None => Err(no_store()),
            };
            Input::PutDone {
                token,
                result: result.map_err(|e| e.to_string()),
            }
        }),
        Effect::Get { token, key } => Box::pin(async move {
            let result = match store {
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
