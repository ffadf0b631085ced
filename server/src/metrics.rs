//! What a coordinator exposes to operators: Prometheus text at `/metrics`
//! (prometheus-client, plus raft-engine's own metrics), `/healthz` (the
//! process serves) and `/readyz` (it knows a leader and its log works),
//! served by axum.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's kind and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `command` or `query`.
    pub kind: &'static str,
    /// landed, fast_forwarded, conflict, out_of_date, not_leader, ok, error.
    pub outcome: &'static str,
}

/// The coordinator's metrics. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// Raft term.
    pub term: Gauge,
    /// 0 follower, 1 pre-candidate, 2 candidate, 3 leader.
    pub role: Gauge,
    /// The leader this node knows of (0: none).
    pub leader: Gauge,
    /// Raft commit index.
    pub commit_index: Gauge,
    /// Applied index.
    pub applied_index: Gauge,
    /// Commands proposed through this node.
    pub proposals: Counter,
    /// Log batches written (group commits) and their fsync time.
    pub fsync_seconds: Histogram,
    /// Client commands per Raft entry proposed here (group commit).
    pub batch_commands: Histogram,
    /// Client requests by kind and outcome, with their latency.
    pub request_seconds: Family<RequestLabels, Histogram>,
    /// Open client connections.
    pub client_connections: Gauge,
    /// Peer links up.
    pub peer_links_up: Gauge,
    /// Snapshot transfers this node finished sending (acknowledged whole).
    pub snapshots_sent: Counter,
    /// Snapshot transfers this node received whole.
    pub snapshots_received: Counter,
    /// Bytes of snapshot parts sent (resent parts included).
    pub snapshot_bytes_sent: Counter,
    /// Raft messages dropped at a peer link (queue full, or a snapshot
    /// while another one is being sent); Raft sends them again.
    pub peer_messages_dropped: Counter,
    /// True when the node knows a leader and its log works.
    pub ready: Arc<AtomicBool>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("floe");
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            term: Gauge::default(),
            role: Gauge::default(),
            leader: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            proposals: Counter::default(),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            batch_commands: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
            }),
            client_connections: Gauge::default(),
            peer_links_up: Gauge::default(),
            snapshots_sent: Counter::default(),
            snapshots_received: Counter::default(),
            snapshot_bytes_sent: Counter::default(),
            peer_messages_dropped: Counter::default(),
            ready: Arc::new(AtomicBool::new(false)),
        };
        registry.register("raft_term", "Raft term", m.term.clone());
        registry.register(
            "raft_role",
            "0 follower, 1 pre-candidate, 2 candidate, 3 leader",
            m.role.clone(),
        );
        registry.register("raft_leader", "Known leader id (0: none)", m.leader.clone());
        registry.register("raft_commit_index", "Commit index", m.commit_index.clone());
        registry.register(
            "raft_applied_index",
            "Applied index",
            m.applied_index.clone(),
        );
        registry.register("proposals", "Commands proposed here", m.proposals.clone());
        registry.register(
            "log_fsync_seconds",
            "raft-engine group commits: write and fsync time",
            m.fsync_seconds.clone(),
        );
        registry.register(
            "raft_batch_commands",
            "Client commands per Raft entry proposed here",
            m.batch_commands.clone(),
        );
        registry.register(
            "request_seconds",
            "Client requests by kind and outcome",
            m.request_seconds.clone(),
        );
        registry.register(
            "client_connections",
            "Open client connections",
            m.client_connections.clone(),
        );
        registry.register("peer_links_up", "Peer links up", m.peer_links_up.clone());
        let counters = [
            (
                "snapshots_sent",
                "Snapshot transfers sent whole",
                &m.snapshots_sent,
            ),
            (
                "snapshots_received",
                "Snapshot transfers received whole",
                &m.snapshots_received,
            ),
            (
                "snapshot_bytes_sent",
                "Snapshot bytes sent, resent parts included",
                &m.snapshot_bytes_sent,
            ),
            (
                "peer_messages_dropped",
                "Raft messages dropped at a peer link (Raft resends)",
                &m.peer_messages_dropped,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        Metrics {
            registry: Arc::new(registry),
            ..m
        }
    }

    /// The Prometheus text of every metric, raft-engine's included.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        let engine = prometheus::TextEncoder::new().encode_to_string(&prometheus::gather());
        match engine {
            Ok(text) => out.push_str(&text),
            Err(e) => tracing::warn!(error = %e, "cannot encode raft-engine metrics"),
        }
        out
    }
}

/// Serves `registry` as Prometheus text at `/metrics`, and `/healthz`, on
/// `addr` (a task of the current runtime): for processes other than
/// coordinators (`floe worker`).
pub async fn serve_registry(addr: SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let render = |State(registry): State<Arc<Registry>>| async move {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    };
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(registry);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(())
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` (a task of the
/// current runtime).
pub async fn serve(addr: SocketAddr, metrics: Metrics) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(metrics);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics server stopped");
        }
    });
    Ok(())
}

async fn render(State(metrics): State<Metrics>) -> String {
    metrics.render()
}

async fn ready(State(metrics): State<Metrics>) -> (StatusCode, &'static str) {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no leader known\n")
    }
}
