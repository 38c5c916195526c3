//! Sink metrics, registered into a Prometheus registry (`remarket_sink_*`). Label values come
//! from closed enums, never from error text, ids or user data.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Endpoint {
    Mapping,
    Audience,
    Get,
    List,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    Ok,
    Throttled,
    NotReady,
    Server,
    Transport,
    Split,
    Permanent,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: Endpoint,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Action {
    Add,
    Delete,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: Action,
}

/// Everything the TikTok sink counts.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    /// Requests by endpoint and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Users TikTok acknowledged, by action.
    pub users: Family<ActionLabels, Counter>,
    /// Users that failed permanently (kept, reported).
    pub failed_users: Counter,
    /// Users accepted by the sink and not yet acknowledged.
    pub pending_users: Gauge,
    /// Rows per mapping request.
    pub batch_rows: Histogram,
    /// Seconds per request.
    pub request_seconds: Histogram,
}

impl Default for SinkMetrics {
    fn default() -> Self {
        SinkMetrics::new()
    }
}

impl SinkMetrics {
    pub fn new() -> SinkMetrics {
        SinkMetrics {
            requests: Family::default(),
            users: Family::default(),
            failed_users: Counter::default(),
            pending_users: Gauge::default(),
            batch_rows: Histogram::new([1.0, 10.0, 100.0, 1_000.0, 5_000.0, 9_000.0, 10_000.0]),
            request_seconds: Histogram::new([
                0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        }
    }

    /// A fresh set of metrics registered under `remarket_sink_`.
    pub fn register_into(registry: &mut Registry) -> SinkMetrics {
        let m = SinkMetrics::new();
        let r = registry.sub_registry_with_prefix("remarket_sink");
        r.register(
            "requests",
            "TikTok API requests by endpoint and outcome",
            m.requests.clone(),
        );
        r.register(
            "users",
            "Users TikTok acknowledged, by action",
            m.users.clone(),
        );
        r.register(
            "failed_users",
            "Users that failed permanently",
            m.failed_users.clone(),
        );
        r.register(
            "pending_users",
            "Users accepted, not yet acknowledged",
            m.pending_users.clone(),
        );
        r.register(
            "batch_rows",
            "Rows per mapping request",
            m.batch_rows.clone(),
        );
        r.register(
            "request_seconds",
            "Seconds per TikTok request",
            m.request_seconds.clone(),
        );
        m
    }

    pub fn request(&self, endpoint: Endpoint, outcome: Outcome) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
    }
}
