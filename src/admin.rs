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
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use crate::clock::{SystemClock, WallClock};
use crate::event::decode::Malformed;
use crate::kafka::activate::ActivateStatus;
use crate::kafka::detect::DetectStatus;
use crate::sink::metrics::SinkMetrics;

/// What the service is doing before its stages run, for `/readyz` (`None` once they do), and
/// which set of campaigns the stages run.
#[derive(Debug, Default)]
pub struct Startup(
    std::sync::Mutex<Option<String>>,
    /// Stage starts (1 at start, one more after each change of the published campaigns).
    pub std::sync::atomic::AtomicU64,
    /// Campaigns the running stages evaluate.
    pub std::sync::atomic::AtomicU64,
    /// Campaigns by state (the config's and the store's), as of the last look.
    pub std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
);

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
            startup: startup.clone(),
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
    startup: Arc<Startup>,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A labelled family: one metric per label set.
fn family<S: EncodeLabelSet, M: EncodeMetric>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (S, M)>,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in series {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StageCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let d = &self.detect;
        let a = &self.activate;
        let totals = d.totals();
        let pipelines = self.startup.1.load(std::sync::atomic::Ordering::SeqCst);
        gauge(
            &mut e,
            "remarket_engine_generation",
            "Stage starts: 1, then one more for each change of the published campaigns",
            pipelines as i64,
        )?;
        gauge(
            &mut e,
            "remarket_engine_campaigns",
            "Campaigns the running stages evaluate (config and published)",
            self.startup.2.load(std::sync::atomic::Ordering::SeqCst) as i64,
        )?;
        let states = (self.startup.3.lock().unwrap_or_else(|e| e.into_inner())).clone();
        family(
            &mut e,
            "remarket_campaigns",
            "Campaigns by state (draft, scheduled, running, completed, stopped)",
            MetricType::Gauge,
            states
                .iter()
                .map(|(s, n)| ([("state", *s)], ConstGauge::new(*n as i64))),
        )?;
        let tallies = a.tallies_by_campaign();
        let group = |f: fn(&crate::report::Tally) -> (u64, u64)| {
            tallies.iter().flat_map(move |(c, t)| {
                let (x, y) = f(t);
                [
                    (
                        [("campaign", c.as_str()), ("group", "exported")],
                        ConstGauge::new(x as i64),
                    ),
                    (
                        [("campaign", c.as_str()), ("group", "control")],
                        ConstGauge::new(y as i64),
                    ),
                ]
            })
        };
        family(
            &mut e,
            "remarket_campaign_users",
            "Users with an exported / control decision, by campaign and group (the report's; the activate partitions this replica owns)",
            MetricType::Gauge,
            group(|t| (t.users.exported, t.users.control)),
        )?;
        family(
            &mut e,
            "remarket_campaign_conversions",
            "Converted users, by campaign and group (the report's; the activate partitions this replica owns)",
            MetricType::Gauge,
            group(|t| (t.converted.exported, t.converted.control)),
        )?;
        let sizes = (a.audience_sizes.lock().unwrap_or_else(|e| e.into_inner())).clone();
        family(
            &mut e,
            "remarket_audience_size",
            "The size TikTok reports for the campaign's audience (matched users, 0 below 1,000; asked at most hourly)",
            MetricType::Gauge,
            (sizes.iter()).filter_map(|(c, s)| {
                Some(([("campaign", c.as_str())], ConstGauge::new(s.size? as i64)))
            }),
        )?;
        let kinds = [
            ("event", totals.events),
            ("profile", totals.profiles),
            ("other", totals.other),
        ];
        family(
            &mut e,
            "remarket_source_records",
            "Well-formed records consumed, by kind (event, profile, other: Segment alias/group)",
            MetricType::Counter,
            kinds.map(|(kind, n)| ([("kind", kind)], ConstCounter::new(n))),
        )?;
        // Every reason from the start at 0 (so that `increase()` sees the first of each).
        let by_reason = |r: &Malformed| {
            (
                [("reason", r.as_str())],
                ConstCounter::new(totals.by_reason[*r as usize]),
            )
        };
        family(
            &mut e,
            "remarket_source_malformed",
            "Malformed records (dead-lettered), by reason",
            MetricType::Counter,
            Malformed::ALL
                .iter()
                .filter(|r| **r != Malformed::Late)
                .map(by_reason),
        )?;
        counter(
            &mut e,
            "remarket_source_late",
            "Records behind the watermark (dead-lettered)",
            totals.late_dropped,
        )?;
        family(
            &mut e,
            "remarket_source_dead_letters",
            "Records dead-lettered, by reason",
            MetricType::Counter,
            Malformed::ALL.iter().map(by_reason),
        )?;
        counter(
            &mut e,
            "remarket_erasures",
            "Erasure requests applied (input delete records, POST /api/v1/users/{id}/erase)",
            totals.erasures,
        )?;
        counter(
            &mut e,
            "remarket_activate_erased_decisions",
            "Decisions forgotten by erasure requests (the user's ids left the audience)",
            a.erased.load(Ordering::Relaxed),
        )?;
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
        let by_outcome = a
            .by_outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        family(
            &mut e,
            "remarket_activate_decisions",
            "Decisions made, by campaign and outcome",
            MetricType::Counter,
            by_outcome.iter().map(|((campaign, outcome), n)| {
                (
                    [("campaign", campaign.as_str()), ("outcome", outcome)],
                    ConstCounter::new(*n),
                )
            }),
        )?;
        let gauges = d
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let partition = |p: &i32| [("partition", p.to_string())];
        family(
            &mut e,
            "remarket_detect_users",
            "Users with state, per owned input partition",
            MetricType::Gauge,
            gauges
                .iter()
                .map(|(p, g)| (partition(p), ConstGauge::new(g.users as i64))),
        )?;
        let now_ms = self.clock.now_ms();
        let watermarks = || {
            gauges
                .iter()
                .filter_map(|(p, g)| g.watermark.map(|w| (p, w)))
        };
        family(
            &mut e,
            "remarket_detect_watermark_lag_seconds",
            "Wall clock minus the event-time watermark, per owned input partition",
            MetricType::Gauge,
            watermarks().map(|(p, w)| {
                let lag = (i128::from(now_ms) - i128::from(w)) as f64 / 1000.0;
                (partition(p), ConstGauge::new(lag))
            }),
        )?;
        family(
            &mut e,
            "remarket_detect_watermark_seconds",
            "The event-time watermark (Unix seconds), per owned input partition",
            MetricType::Gauge,
            watermarks().map(|(p, w)| (partition(p), ConstGauge::new(w as f64 / 1000.0))),
        )?;
        gauge(
            &mut e,
            "remarket_ready",
            "1 when /readyz answers 200 (start-up over, both stages restored an assignment)",
            i64::from(not_ready(&self.startup, d, a).is_empty()),
        )?;
        let lags: Vec<_> = self.groups.iter().zip([d.lag.get(), a.lag.get()]).collect();
        family(
            &mut e,
            "remarket_kafka_consumer_lag",
            "Records between the consumer's position and the end of the partition \
             (librdkafka statistics, every 5 s)",
            MetricType::Gauge,
            lags.iter().flat_map(|(group, lag)| {
                lag.iter().map(|((topic, p), n)| {
                    (
                        [
                            ("group", (*group).clone()),
                            ("topic", topic.clone()),
                            ("partition", p.to_string()),
                        ],
                        ConstGauge::new(*n),
                    )
                })
            }),
        )?;
        gauge(
            &mut e,
            "remarket_detect_assigned_partitions",
            "Input partitions owned",
            d.assigned.load(Ordering::Relaxed) as i64,
        )
    }
}

/// OpenMetrics when the scrape asks for it (Prometheus does, first), else the Prometheus text
/// format 0.0.4 (what `curl`, `promtool check metrics` and older scrapers read).
async fn metrics(
    State(a): State<Admin>,
    headers: axum::http::HeaderMap,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &a.registry).is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            String::new(),
        );
    }
    let accept = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    if wants_openmetrics(accept) {
        let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        (StatusCode::OK, [("content-type", ct)], text)
    } else {
        let ct = "text/plain; version=0.0.4; charset=utf-8";
        (
            StatusCode::OK,
            [("content-type", ct)],
            openmetrics_to_text(&text),
        )
    }
}

/// Whether an `Accept` header lists `application/openmetrics-text` with a non-zero quality.
fn wants_openmetrics<'a>(accept: impl Iterator<Item = &'a str>) -> bool {
    accept.flat_map(|h| h.split(',')).any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
    })
}

/// Rewrites prometheus-client's OpenMetrics text as the Prometheus text format 0.0.4: a
/// counter's family is named with its `_total` suffix (as its samples are), and `# EOF` and
/// `# UNIT` lines go. Samples, histograms and gauges are written alike in both.
fn openmetrics_to_text(om: &str) -> String {
    let mut counters: Vec<&str> = Vec::new();
    for line in om.lines() {
        if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|r| r.strip_suffix(" counter"))
        {
            counters.push(name);
        }
    }
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(prefix);
                out.push_str(name);
                out.push_str(suffix);
                if !tail.is_empty() {
                    out.push(' ');
                    out.push_str(tail);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `/readyz`: 200 once start-up is over and both stages restored an assignment, else 503;
/// the JSON body says why (`{"ready":false,"waiting_for":[...]}`). Users TikTok refused for
/// good do not make the service unready — they are recorded (`sink-failed` logs, metrics,
/// alerts) and handled, and a restart would not bring them back — but are reported.
async fn readyz(State(a): State<Admin>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let why = not_ready(&a.startup, &a.detect, &a.activate);
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

/// Why the service is not ready (empty when it is): `/readyz` and `remarket_ready` agree.
fn not_ready(startup: &Startup, detect: &DetectStatus, activate: &ActivateStatus) -> Vec<String> {
    let mut why: Vec<String> = Vec::new();
    if let Some(s) = startup.get() {
        why.push(s);
    } else {
        if !detect.ready.load(Ordering::Relaxed) {
            why.push("detect: no assignment restored yet".into());
        }
        if !activate.ready.load(Ordering::Relaxed) {
            why.push("activate: no assignment restored yet".into());
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_asked_for_by_media_type_and_quality() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics([prometheus].into_iter()));
        assert!(!wants_openmetrics(["text/plain;version=0.0.4"].into_iter()));
        assert!(!wants_openmetrics(["*/*"].into_iter()));
        assert!(!wants_openmetrics(std::iter::empty()));
        assert!(!wants_openmetrics(
            ["application/openmetrics-text; q=0"].into_iter()
        ));
    }

    #[test]
    fn text_format_names_counters_with_total_and_has_no_eof() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 3\n\
                  # HELP g A gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 1.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 3\n\
             # HELP g A gauge.\n# TYPE g gauge\ng 1.5\n"
        );
    }
}
