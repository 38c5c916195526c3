//! `remarket run`: the production mode. Wires the Kafka stages, the TikTok sink and the admin
//! HTTP server (`/metrics`, `/healthz`, `/readyz`), and stops cleanly on SIGTERM or Ctrl-C:
//! stop consuming, checkpoint state, flush the sink, commit, exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::kafka::activate::ActivateStatus;
use crate::kafka::detect::DetectStatus;
use crate::kafka::ensure_topics;
use crate::sink::audiences::resolve;
use crate::sink::metrics::SinkMetrics;
use crate::sink::ratelimit::RateLimiter;
use crate::sink::service::{SinkSettings, TikTokSink};
use crate::sink::tiktok::{Client, Token};

#[derive(Clone)]
struct Admin {
    registry: Arc<Registry>,
    detect: Arc<DetectStatus>,
    activate: Arc<ActivateStatus>,
    sink: SinkMetrics,
    /// The consumer groups of detect and activate, for the lag gauge's `group` label.
    groups: [String; 2],
}

/// Runs until SIGTERM or Ctrl-C, then drains.
pub fn run(config: Config) -> anyhow::Result<()> {
    run_until(config, Arc::new(AtomicBool::new(false)))
}

/// Runs until `stop` is set (or SIGTERM/Ctrl-C), then drains: checkpoints state, flushes the
/// sink, commits.
pub fn run_until(config: Config, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let k = config
        .kafka
        .clone()
        .ok_or_else(|| anyhow::anyhow!("`remarket run` needs a [kafka] section"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // First of all, so that a SIGTERM during start-up is a clean stop too.
    {
        let stop = stop.clone();
        rt.block_on(async {
            let signals = shutdown_signal();
            tokio::spawn(async move {
                signals.await;
                tracing::info!("stopping: checkpointing state, flushing the sink, committing");
                stop.store(true, Ordering::Relaxed);
            });
        });
    }
    let layout = rt.block_on(ensure_topics(&k))?;
    tracing::info!(
        brokers = %k.brokers,
        input_partitions = layout.input_partitions,
        activate_partitions = layout.activate_partitions,
        "topics ready"
    );

    let mut registry = Registry::default();
    let sink_metrics = SinkMetrics::register_into(&mut registry);
    let token = Token::load(&config.tiktok.token)?;
    let client = Arc::new(Client::new(
        &config.tiktok.base_url,
        token,
        Duration::from_secs(30),
    )?);
    let limiter = Arc::new(RateLimiter::new(config.tiktok.qps));
    let detect_status = Arc::new(DetectStatus::default());
    let activate_status = Arc::new(ActivateStatus::default());
    let admin = Admin {
        registry: Arc::new(registry),
        detect: detect_status.clone(),
        activate: activate_status.clone(),
        sink: sink_metrics.clone(),
        groups: [k.group("detect"), k.group("activate")],
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind(config.http.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "admin http: /metrics /healthz /readyz");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(admin);
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin http server stopped");
        }
    });
    let detect = {
        let (config, status, stop) = (config.clone(), detect_status, stop.clone());
        let layout = layout.clone();
        std::thread::Builder::new()
            .name("detect".into())
            .spawn(move || {
                // Either stage ending (an error, or stop) ends the other.
                let r = crate::kafka::detect::run(config, layout, status, stop.clone());
                stop.store(true, Ordering::Relaxed);
                r
            })?
    };
    // Detect needs no audience: it restores and consumes while activate's audiences are
    // verified or created (which takes a TikTok round trip or more per campaign).
    let mut store = crate::kafka::audiences::store(&k)?;
    let targets = rt.block_on(resolve(
        &client,
        &limiter,
        &sink_metrics,
        &config.campaigns,
        &mut store,
    ));
    let targets = match targets {
        Ok(t) => t,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            if let Ok(Err(d)) = detect.join() {
                tracing::warn!(error = %d, "detect stage ended with an error");
            }
            return Err(e.into());
        }
    };
    let (sink, acks) = {
        let _guard = rt.enter();
        TikTokSink::start_tracked(
            client,
            limiter,
            targets,
            SinkSettings::new(config.tiktok.max_batch, config.tiktok.linger.duration()),
            sink_metrics.clone(),
        )
    };
    let activate = {
        let (config, status, stop, handle) = (
            config.clone(),
            activate_status,
            stop.clone(),
            rt.handle().clone(),
        );
        std::thread::Builder::new()
            .name("activate".into())
            .spawn(move || {
                let r =
                    crate::kafka::activate::run(config, handle, sink, acks, status, stop.clone());
                stop.store(true, Ordering::Relaxed);
                r
            })?
    };
    let d = detect
        .join()
        .map_err(|_| anyhow::anyhow!("detect thread panicked"))?;
    stop.store(true, Ordering::Relaxed);
    let a = activate
        .join()
        .map_err(|_| anyhow::anyhow!("activate thread panicked"))?;
    d?;
    a?;
    Ok(())
}

/// Registers the SIGTERM handler now (the returned future only waits).
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn metrics(
    State(a): State<Admin>,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode_registry(&mut text, &a.registry).is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            String::new(),
        );
    }
    let d = &a.detect;
    let counter = |text: &mut String, name: &str, help: &str, v: u64| {
        text.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name}_total {v}\n"
        ));
    };
    let totals = d.totals.lock().unwrap_or_else(|e| e.into_inner()).clone();
    counter(
        &mut text,
        "remarket_source_records",
        "Well-formed records consumed",
        totals.records,
    );
    counter(
        &mut text,
        "remarket_source_malformed",
        "Malformed records (dead-lettered)",
        totals.malformed,
    );
    counter(
        &mut text,
        "remarket_source_late",
        "Records behind the watermark (dead-lettered)",
        totals.late_dropped,
    );
    text.push_str(
        "# HELP remarket_source_dead_letters Records dead-lettered, by reason\n\
         # TYPE remarket_source_dead_letters counter\n",
    );
    for (reason, n) in totals.reasons() {
        text.push_str(&format!(
            "remarket_source_dead_letters_total{{reason=\"{}\"}} {n}\n",
            reason.as_str()
        ));
    }
    counter(
        &mut text,
        "remarket_detect_qualifications",
        "Qualifications emitted",
        d.qualified.load(Ordering::Relaxed),
    );
    counter(
        &mut text,
        "remarket_detect_custom_props_dropped",
        "Custom profile properties not kept: a user already had engine.max_custom_props",
        d.custom_props_dropped.load(Ordering::Relaxed),
    );
    counter(
        &mut text,
        "remarket_activate_pauses",
        "Times consumption of qualified records paused because the TikTok sink was full",
        a.activate.pauses.load(Ordering::Relaxed),
    );
    text.push_str(
        "# HELP remarket_activate_decisions Decisions made, by campaign and outcome\n\
         # TYPE remarket_activate_decisions counter\n",
    );
    let by_outcome = a
        .activate
        .by_outcome
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((campaign, outcome), n) in by_outcome {
        text.push_str(&format!(
            "remarket_activate_decisions_total{{campaign=\"{}\",outcome=\"{outcome}\"}} {n}\n",
            label(&campaign)
        ));
    }
    let gauges = d
        .partitions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    text.push_str(
        "# HELP remarket_detect_users Users with state, per owned input partition\n\
         # TYPE remarket_detect_users gauge\n",
    );
    for (p, g) in &gauges {
        text.push_str(&format!(
            "remarket_detect_users{{partition=\"{p}\"}} {}\n",
            g.users
        ));
    }
    text.push_str(
        "# HELP remarket_detect_watermark_lag_seconds Wall clock minus the event-time \
         watermark, per owned input partition\n\
         # TYPE remarket_detect_watermark_lag_seconds gauge\n",
    );
    for (p, g) in &gauges {
        if let Some(w) = g.watermark {
            let lag = (now_ms - i128::from(w)) as f64 / 1000.0;
            text.push_str(&format!(
                "remarket_detect_watermark_lag_seconds{{partition=\"{p}\"}} {lag}\n"
            ));
        }
    }
    text.push_str(
        "# HELP remarket_kafka_consumer_lag Records between the consumer's position and the \
         end of the partition (librdkafka statistics, every 5 s)\n\
         # TYPE remarket_kafka_consumer_lag gauge\n",
    );
    for (group, lag) in [&a.groups[0], &a.groups[1]]
        .into_iter()
        .zip([a.detect.lag.get(), a.activate.lag.get()])
    {
        for ((topic, p), n) in lag {
            text.push_str(&format!(
                "remarket_kafka_consumer_lag{{group=\"{}\",topic=\"{}\",partition=\"{p}\"}} {n}\n",
                label(group),
                label(&topic)
            ));
        }
    }
    text.push_str(&format!(
        "# HELP remarket_detect_assigned_partitions Input partitions owned\n# TYPE remarket_detect_assigned_partitions gauge\nremarket_detect_assigned_partitions {}\n",
        d.assigned.load(Ordering::Relaxed)
    ));
    text.push_str("# EOF\n");
    (
        StatusCode::OK,
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

async fn readyz(State(a): State<Admin>) -> (StatusCode, String) {
    let mut why = Vec::new();
    if !a.detect.ready.load(Ordering::Relaxed) {
        why.push("detect: no assignment restored yet");
    }
    if !a.activate.ready.load(Ordering::Relaxed) {
        why.push("activate: no assignment restored yet");
    }
    if a.sink.failed_users.get() > 0 {
        why.push("sink: TikTok refused users for good (see logs)");
    }
    if why.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", why.join("\n")),
        )
    }
}
