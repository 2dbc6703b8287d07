//! Prometheus metrics, served at `/metrics` in the text format.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub notes_posted: IntCounter,
    pub frames_rejected: IntCounter,
    /// Seconds from a post's arrival to its durable commit.
    pub commit_seconds: Histogram,
    /// Seconds from a commit to the frame's hand-off to a recipient's socket.
    pub delivery_seconds: Histogram,
    /// Wake-ups published to other nodes, and received from them.
    pub wakes_sent: IntCounter,
    pub wakes_received: IntCounter,
    /// Entries this node read from the database because another node stored them.
    pub relayed_entries: IntCounter,
    /// 1 while the node's NATS connection is up (always 0 on a single node).
    pub nats_connected: IntGauge,
    /// Spaces whose membership is held in memory (set when `/metrics` is read).
    pub spaces_cached: IntGauge,
    /// Connections refused because the server, or their address, had too many open.
    pub refused_total_cap: IntCounter,
    pub refused_per_address_cap: IntCounter,
    /// Uploads cut off for sending too slowly.
    pub slow_uploads: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let buckets = vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        let connections = IntGauge::new("cairn_connections", "Open WebSocket connections").unwrap();
        let notes_posted = IntCounter::new(
            "cairn_notes_posted_total",
            "Notes stored (not counting idempotent retries)",
        )
        .unwrap();
        let frames_rejected = IntCounter::new(
            "cairn_frames_rejected_total",
            "Frames rejected as malformed, oversize or over the rate limit",
        )
        .unwrap();
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new("cairn_commit_seconds", "Post arrival to durable commit")
                .buckets(buckets.clone()),
        )
        .unwrap();
        let delivery_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "cairn_delivery_seconds",
                "Commit to hand-off to a recipient's socket",
            )
            .buckets(buckets),
        )
        .unwrap();
        let wakes_sent =
            IntCounter::new("cairn_wakes_sent_total", "Wake-ups published to other nodes").unwrap();
        let wakes_received =
            IntCounter::new("cairn_wakes_received_total", "Wake-ups received from other nodes")
                .unwrap();
        let relayed_entries = IntCounter::new(
            "cairn_relayed_entries_total",
            "Entries delivered here that another node stored",
        )
        .unwrap();
        let nats_connected =
            IntGauge::new("cairn_nats_connected", "1 while connected to NATS").unwrap();
        let refused_total_cap = IntCounter::new(
            "cairn_connections_refused_total_cap_total",
            "Connections refused: --max-connections were open",
        )
        .unwrap();
        let refused_per_address_cap = IntCounter::new(
            "cairn_connections_refused_per_address_total",
            "Connections refused: --max-connections-per-ip were open from that address",
        )
        .unwrap();
        let slow_uploads =
            IntCounter::new("cairn_slow_uploads_total", "Uploads cut off for sending too slowly")
                .unwrap();
        let spaces_cached =
            IntGauge::new("cairn_spaces_cached", "Spaces whose membership is held in memory")
                .unwrap();
        for c in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(notes_posted.clone()),
            Box::new(frames_rejected.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(delivery_seconds.clone()),
            Box::new(wakes_sent.clone()),
            Box::new(wakes_received.clone()),
            Box::new(relayed_entries.clone()),
            Box::new(nats_connected.clone()),
            Box::new(spaces_cached.clone()),
            Box::new(refused_total_cap.clone()),
            Box::new(refused_per_address_cap.clone()),
            Box::new(slow_uploads.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            connections,
            notes_posted,
            frames_rejected,
            commit_seconds,
            delivery_seconds,
            wakes_sent,
            wakes_received,
            relayed_entries,
            nats_connected,
            spaces_cached,
            refused_total_cap,
            refused_per_address_cap,
            slow_uploads,
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
