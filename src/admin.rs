//! The admin HTTP server of `run`: `/metrics` (one prometheus-client [`Registry`] for every
//! stage), `/healthz`, `/readyz`.
//!
//! The sink registers its own metrics (`remarket_sink_*`); the detect and activate stages keep
//! plain atomics and maps on their hot paths, and [`StageCollector`] reads them at each scrape
//! into the same registry, so one encoder writes every metric and there is one format.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

pub use crate::clock::{SystemClock, WallClock};
use crate::kafka::activate::ActivateStatus;
use crate::kafka::detect::DetectStatus;
use crate::sink::metrics::SinkMetrics;

/// What the service is doing before its stages run, for `/readyz` (`None` once they do).
#[derive(Debug, Default)]
pub struct Startup(std::sync::Mutex<Option<String>>);

impl Startup {
    /// Says what start-up waits for (shown by `/readyz`).
    pub fn waiting(&self, why: impl Into<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.into());
    }

    /// Start-up is over: the stages' own readiness counts from here.
    pub fn done(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the admin server reads.
#[derive(Clone)]
pub struct Admin {
    registry: Arc<Registry>,
    detect: Arc<DetectStatus>,
    activate: Arc<ActivateStatus>,
    sink: SinkMetrics,
    startup: Arc<Startup>,
}

impl Admin {
    /// Registers the stages' collector into `registry` (which holds the sink's metrics).
    /// `groups` are the consumer groups of detect and activate (the lag gauge's `group`).
    pub fn new(
        mut registry: Registry,
        detect: Arc<DetectStatus>,
        activate: Arc<ActivateStatus>,
        sink: SinkMetrics,
        groups: [String; 2],
        clock: Arc<dyn WallClock>,
        startup: Arc<Startup>,
    ) -> Admin {
        registry.register_collector(Box::new(StageCollector {
            detect: detect.clone(),
            activate: activate.clone(),
            groups,
            clock,
        }));
        Admin {
            registry: Arc::new(registry),
            detect,
            activate,
            sink,
            startup,
        }
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .with_state(self)
    }
}

/// The detect and activate stages' figures, read at each scrape.
#[derive(Debug)]
struct StageCollector {
    detect: Arc<DetectStatus>,
    activate: Arc<ActivateStatus>,
    groups: [String; 2],
    clock: Arc<dyn WallClock>,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for StageCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let d = &self.detect;
        let a = &self.activate;
        let totals = d.totals();
        counter(
            &mut e,
            "remarket_source_records",
            "Well-formed records consumed",
            totals.records,
        )?;
        counter(
            &mut e,
            "remarket_source_malformed",
            "Malformed records (dead-lettered)",
            totals.malformed,
        )?;
        counter(
            &mut e,
            "remarket_source_late",
            "Records behind the watermark (dead-lettered)",
            totals.late_dropped,
        )?;
        {
            let mut m = e.encode_descriptor(
                "remarket_source_dead_letters",
                "Records dead-lettered, by reason",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (reason, n) in totals.reasons() {
                let labels = [("reason", reason.as_str())];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut e,
            "remarket_detect_qualifications",
            "Qualifications emitted",
            d.qualified.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "remarket_detect_custom_props_dropped",
            "Custom profile properties not kept: a user already had engine.max_custom_props",
            d.custom_props_dropped.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "remarket_activate_pauses",
            "Times consumption of qualified records paused because the TikTok sink was full",
            a.pauses.load(Ordering::Relaxed),
        )?;
        {
            let by_outcome = a
                .by_outcome
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let mut m = e.encode_descriptor(
                "remarket_activate_decisions",
                "Decisions made, by campaign and outcome",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for ((campaign, outcome), n) in &by_outcome {
                let labels = [("campaign", campaign.as_str()), ("outcome", outcome)];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        let gauges = d
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        {
            let mut m = e.encode_descriptor(
                "remarket_detect_users",
                "Users with state, per owned input partition",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (p, g) in &gauges {
                let labels = [("partition", p.to_string())];
                ConstGauge::new(g.users as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        {
            let now_ms = self.clock.now_ms();
            let mut m = e.encode_descriptor(
                "remarket_detect_watermark_lag_seconds",
                "Wall clock minus the event-time watermark, per owned input partition",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (p, g) in &gauges {
                if let Some(w) = g.watermark {
                    let lag = (i128::from(now_ms) - i128::from(w)) as f64 / 1000.0;
                    let labels = [("partition", p.to_string())];
                    ConstGauge::new(lag).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut m = e.encode_descriptor(
                "remarket_kafka_consumer_lag",
                "Records between the consumer's position and the end of the partition \
                 (librdkafka statistics, every 5 s)",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for (group, lag) in self.groups.iter().zip([d.lag.get(), a.lag.get()]) {
                for ((topic, p), n) in lag {
                    let labels = [
                        ("group", group.clone()),
                        ("topic", topic),
                        ("partition", p.to_string()),
                    ];
                    ConstGauge::new(n).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        gauge(
            &mut e,
            "remarket_detect_assigned_partitions",
            "Input partitions owned",
            d.assigned.load(Ordering::Relaxed) as i64,
        )
    }
}

async fn metrics(
    State(a): State<Admin>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &a.registry).is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            String::new(),
        );
    }
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// `/readyz`: 200 once start-up is over and both stages restored an assignment, else 503;
/// the JSON body says why (`{"ready":false,"waiting_for":[...]}`). Users TikTok refused for
/// good do not make the service unready — they are recorded (`sink-failed` logs, metrics,
/// alerts) and handled, and a restart would not bring them back — but are reported.
async fn readyz(State(a): State<Admin>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let mut why: Vec<String> = Vec::new();
    if let Some(s) = a.startup.get() {
        why.push(s);
    } else {
        if !a.detect.ready.load(Ordering::Relaxed) {
            why.push("detect: no assignment restored yet".into());
        }
        if !a.activate.ready.load(Ordering::Relaxed) {
            why.push("activate: no assignment restored yet".into());
        }
    }
    let body = serde_json::json!({
        "ready": why.is_empty(),
        "waiting_for": why,
        "sink_failed_users": a.sink.failed_users.get(),
    });
    let code = if why.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body))
}
