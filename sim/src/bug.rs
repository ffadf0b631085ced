//! Planted bugs: switches in the coordinator and the client core (built
//! with their `planted-bugs` features, which only this crate enables) that
//! the simulation turns on to prove its oracles have teeth. Each must be
//! caught within a small budget of seeds.

use floe_worker::machine::ClientBugs;

pub use floe_coordinator::bugs::Bug;

/// The client-core switches for `bug`.
pub(crate) fn client_bugs(bug: Option<Bug>) -> ClientBugs {
    ClientBugs {
        forget_edge_rewrite: bug == Some(Bug::ForgetEdgeRewrite),
        forget_regrow: bug == Some(Bug::ForgetRegrow),
    }
}
