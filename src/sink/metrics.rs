//! Sink metrics, registered into a Prometheus registry (`remarket_sink_*`). Label values come
//! from closed enums, never from error text, ids or user data.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label values are lowercase snake_case, as the alerts and the dashboard match them.
macro_rules! label_values {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, for series initialised at 0.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text),+
                }
            }
        }

        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Endpoint {
    Mapping,
    Audience,
    Get,
    List,
}

label_values!(Endpoint {
    Mapping => "mapping",
    Audience => "audience",
    Get => "get",
    List => "list",
});

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Throttled,
    NotReady,
    Server,
    Transport,
    Split,
    Permanent,
}

label_values!(Outcome {
    Ok => "ok",
    Throttled => "throttled",
    NotReady => "not_ready",
    Server => "server",
    Transport => "transport",
    Split => "split",
    Permanent => "permanent",
});

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: Endpoint,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Action {
    Add,
    Delete,
}

label_values!(Action {
    Add => "add",
    Delete => "delete",
});

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
    /// The adaptive request rate in force (at most `tiktok.qps`; lowered on throttles).
    pub rate_limit_qps: Gauge<f64, std::sync::atomic::AtomicU64>,
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
            rate_limit_qps: Gauge::default(),
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
        r.register(
            "rate_limit_qps",
            "The adaptive TikTok request rate in force (at most tiktok.qps; halved on throttles)",
            m.rate_limit_qps.clone(),
        );
        // Every known series exists from the start at 0, so that `increase()` sees the first
        // permanent failure (a series born at 1 has no increase).
        for &endpoint in Endpoint::ALL {
            for &outcome in Outcome::ALL {
                let _ = m
                    .requests
                    .get_or_create(&RequestLabels { endpoint, outcome });
            }
        }
        for &action in Action::ALL {
            let _ = m.users.get_or_create(&ActionLabels { action });
        }
        m
    }

    pub fn request(&self, endpoint: Endpoint, outcome: Outcome) {
        self.requests
            .get_or_create(&RequestLabels { endpoint, outcome })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_snake_case_and_every_series_starts_at_zero() {
        let mut registry = Registry::default();
        let m = SinkMetrics::register_into(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "remarket_sink_requests_total{endpoint=\"mapping\",outcome=\"permanent\"} 0"
            ),
            "{text}"
        );
        assert!(
            text.contains("remarket_sink_requests_total{endpoint=\"get\",outcome=\"not_ready\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("remarket_sink_users_total{action=\"delete\"} 0"),
            "{text}"
        );
        m.request(Endpoint::Audience, Outcome::Throttled);
        text.clear();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "remarket_sink_requests_total{endpoint=\"audience\",outcome=\"throttled\"} 1"
            ),
            "{text}"
        );
        // No label value with an upper-case letter anywhere (but histograms' `le="+Inf"`).
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
        {
            if let Some(labels) = line.split_once('{').map(|(_, r)| r) {
                assert!(!labels.chars().any(|c| c.is_ascii_uppercase()), "{line}");
            }
        }
    }
}
