//! The harness's network: one TCP proxy per route of a proxied deployment
//! (every coordinator-to-coordinator direction, and clients to each
//! coordinator), so partitions need no root. A cut link swallows what is
//! sent on it, as a dropped packet would: the sender's writes succeed and
//! nothing arrives. Healing closes the swallowed connections, and the
//! sender reconnects. Client routes are never cut.
//!
//! A node sends its Raft messages on the connection it dialed, so cutting
//! the route `a -> b` stops `a`'s messages to `b` while `b`'s reach `a`:
//! a one-way cut.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use floe_server::local::Route;

/// The links currently cut, as `(from, to)` node ids.
type Cuts = BTreeSet<(u64, u64)>;

/// The proxies' shared switchboard.
pub struct Network {
    cuts: watch::Sender<Cuts>,
}

impl Network {
    /// Binds a proxy for every route and serves them on `runtime`.
    pub fn start(routes: &[Route], runtime: &tokio::runtime::Runtime) -> Result<Network> {
        let (cuts, _) = watch::channel(Cuts::new());
        for route in routes {
            let listener = runtime
                .block_on(TcpListener::bind(route.listen))
                .with_context(|| format!("cannot bind the proxy at {}", route.listen))?;
            runtime.spawn(serve(listener, *route, cuts.subscribe()));
        }
        Ok(Network { cuts })
    }

    /// Cuts exactly `links` (and restores every other).
    pub fn cut(&self, links: Cuts) {
        self.cuts.send_replace(links);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.cuts.send_replace(Cuts::new());
    }
}

/// Accepts on one route's proxy and relays each connection.
async fn serve(listener: TcpListener, route: Route, cuts: watch::Receiver<Cuts>) {
    let link = route.from.map(|from| (from, route.to));
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(relay(inbound, route, link, cuts.clone()));
    }
}

/// Relays `inbound` to the route's target until the link is cut, then
/// swallows what comes in until it heals, then closes.
async fn relay(
    mut inbound: TcpStream,
    route: Route,
    link: Option<(u64, u64)>,
    mut cuts: watch::Receiver<Cuts>,
) {
    let _ = inbound.set_nodelay(true);
    if !is_cut(&cuts, link) {
        let Ok(mut outbound) = TcpStream::connect(route.target).await else {
            return;
        };
        let _ = outbound.set_nodelay(true);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
            _ = until(&mut cuts, link, true) => {}
        }
    }
    let mut sink = vec![0u8; 64 * 1024];
    tokio::select! {
        _ = async { while matches!(inbound.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
        _ = until(&mut cuts, link, false) => {}
    }
}

fn is_cut(cuts: &watch::Receiver<Cuts>, link: Option<(u64, u64)>) -> bool {
    link.is_some_and(|l| cuts.borrow().contains(&l))
}

/// Returns when the link's cut state becomes `cut` (never for client
/// routes, which are not cut).
async fn until(cuts: &mut watch::Receiver<Cuts>, link: Option<(u64, u64)>, cut: bool) {
    if link.is_none() {
        return std::future::pending().await;
    }
    while is_cut(cuts, link) != cut {
        if cuts.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}
