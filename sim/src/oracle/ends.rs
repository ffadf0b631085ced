//! Oracle 6, client ends: a client that stops on an error nobody can
//! explain (a codec error, a valid plan refused, a writer that gives up
//! while nothing was failing) is a bug even when every other oracle is
//! happy. Each client of the core (writers, jobs, workers, checkpoint
//! writers) must end landed, in a conflict (checked
//! exactly by `exact-conflicts`), out of date, finished, or failed in a way
//! the injected faults explain.

use floe_protocol::FloeError;

use super::{Check, Failure, CLIENT_ENDS};
use crate::faults::FaultKind;
use crate::obs::{ClientEnd, End, Observations, Replica};

/// Checks every client's end against the faults of the run and the
/// history of replica `r`.
pub fn client_ends(obs: &Observations, r: &Replica) -> Check {
    for end in &obs.ends {
        if let End::Failed(e) = &end.end {
            if !explained(end, e, obs) && !resized_under(e, r) && !created_before(end, e, r) {
                return Err(Failure::new(
                    CLIENT_ENDS,
                    format!(
                        "{} c{} failed with {e} ({}), which neither the workload nor the injected faults ({}) explain",
                        end.kind,
                        end.client.wrapping_add(1),
                        e.kind(),
                        obs.faults
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A write planned on the arrays' first metadata that no longer fits
/// because a resize or a delete (and re-create) of that array landed, or
/// because the setup commit creating the arrays never landed (its client
/// gave up, e.g. on `SessionExpired`): the clear refusal the client must
/// get.
fn resized_under(e: &FloeError, r: &Replica) -> bool {
    use floe_protocol::MetaChange::{Create, Delete, Update};
    let no_setup = !r.records.values().any(|rec| {
        rec.footprint
            .arrays
            .values()
            .any(|c| matches!(c.meta, Some(Create(_))))
    });
    if no_setup
        && matches!(
            e,
            FloeError::UnknownArray { .. } | FloeError::InvalidPlan { .. }
        )
    {
        return true;
    }
    let path = match e {
        FloeError::Geometry { path, .. }
        | FloeError::DTypeMismatch { path, .. }
        | FloeError::UnknownArray { path } => path,
        _ => return false,
    };
    r.records.values().any(|rec| {
        let change = rec.footprint.arrays.get(path);
        change.is_some_and(|c| matches!(c.meta, Some(Update(_) | Delete)))
    })
}

/// A job whose session would create an array that a landed commit created
/// is refused at open, as a commit creating it would be.
fn created_before(end: &ClientEnd, e: &FloeError, r: &Replica) -> bool {
    use floe_protocol::MetaChange::Create;
    let created = |path| {
        r.records.values().any(|rec| {
            let change = rec.footprint.arrays.get(path);
            change.is_some_and(|c| matches!(c.meta, Some(Create(_))))
        })
    };
    matches!(e, FloeError::InvalidChange { .. }) && end.creates.iter().any(created)
}

/// Whether a client's failure has a cause in the workload or the faults.
fn explained(end: &ClientEnd, e: &FloeError, obs: &Observations) -> bool {
    let faults = &obs.faults;
    let any = |kinds: &[FaultKind]| {
        kinds
            .iter()
            .any(|k| faults.0.get(k).copied().unwrap_or(0) > 0)
    };
    let network = [
        FaultKind::Drop,
        FaultKind::Delay,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Clog,
        FaultKind::Crash,
        FaultKind::AddNode,
        FaultKind::RemoveNode,
    ];
    let store = [FaultKind::PutFailure, FaultKind::GetFailure];
    match e {
        // Lost a race: the conflict oracles judge it.
        e if e.is_conflict() => true,
        FloeError::InvalidPlan { .. } => end.invalid_plan,
        // Gave up retrying: something must have been failing.
        FloeError::NotLeader { .. } | FloeError::Unavailable(_) => any(&network),
        FloeError::StoreUnavailable(_) => any(&store),
        // Silent longer than a session lives: only on seeds that make
        // sessions short (never with the default hour).
        FloeError::SessionExpired { .. } => obs.client_expiry_ms < 60_000,
        // Puts that kept failing; a missing object is never explained.
        FloeError::Store(m) => m.starts_with("put failed") && any(&store),
        _ => false,
    }
}
