//! `remarket run`: the production mode. Wires the Kafka stages, the TikTok sink and the admin
//! HTTP server (`/metrics`, `/healthz`, `/readyz`), and stops cleanly on SIGTERM or Ctrl-C:
//! stop consuming, checkpoint state, flush the sink, commit, exit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::admin::{Admin, Startup, SystemClock, WallClock};
use crate::config::Config;
use crate::kafka::activate::ActivateStatus;
use crate::kafka::detect::DetectStatus;
use crate::kafka::{ensure_topics, partition_counts};
use crate::sink::audiences::resolve;
use crate::sink::metrics::SinkMetrics;
use crate::sink::ratelimit::RateLimiter;
use crate::sink::service::{SinkSettings, TikTokSink};
use crate::sink::tiktok::{Client, Token, Tokens};

/// How long a preview waits for every detect worker.
const PREVIEW_TIMEOUT: Duration = Duration::from_secs(5);

/// A future that completes when the service should stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the service takes from its surroundings: production's come from the config and the
/// process ([`Env::from_config`]); tests and embedders pass their own.
pub struct Env {
    /// The admin server's listener (`/metrics`, `/healthz`, `/readyz`).
    pub listener: std::net::TcpListener,
    /// Completes when the service should checkpoint, flush, commit and return.
    pub shutdown: Shutdown,
    /// The TikTok Marketing API client.
    pub client: Arc<Client>,
    /// The wall clock: of the gauges, and the one an idle input's watermark follows.
    pub clock: Arc<dyn WallClock>,
}

impl Env {
    /// Production's: binds `[http] listen`, stops on SIGTERM or Ctrl-C, loads the TikTok token.
    pub fn from_config(config: &Config) -> anyhow::Result<Env> {
        let listener = std::net::TcpListener::bind(config.http.listen).map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} ([http] listen): {e}",
                config.http.listen
            )
        })?;
        let token = Tokens::load(&config.tiktok)?;
        let client = Arc::new(Client::new(
            &config.tiktok.base_url,
            token,
            Duration::from_secs(30),
        )?);
        Ok(Env {
            listener,
            shutdown: Box::pin(shutdown_signal()),
            client,
            clock: Arc::new(SystemClock),
        })
    }
}

/// Runs until SIGTERM or Ctrl-C, then drains.
pub fn run(config: Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.kafka.is_some(),
        "`remarket run` needs a [kafka] section"
    );
    let env = Env::from_config(&config)?;
    serve(config, env)
}

/// Runs until `env.shutdown` completes (or a stage fails), then drains: checkpoints state,
/// flushes the sink, commits.
pub fn serve(config: Config, env: Env) -> anyhow::Result<()> {
    let Env {
        listener,
        shutdown,
        client,
        clock,
    } = env;
    let config = Arc::new(config);
    let k = config
        .kafka
        .clone()
        .ok_or_else(|| anyhow::anyhow!("`remarket run` needs a [kafka] section"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The stages poll this flag between rounds; any stage ending sets it too. Start-up's
    // waits end on `stopped`.
    let stop = Arc::new(AtomicBool::new(false));
    // The running pipeline's own flag (see the loop below).
    let current = Arc::new(std::sync::Mutex::new(Arc::new(AtomicBool::new(false))));
    let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
    // First of all, so that a shutdown during start-up is a clean stop too.
    {
        let (stop, current) = (stop.clone(), current.clone());
        rt.spawn(async move {
            shutdown.await;
            tracing::info!("stopping: checkpointing state, flushing the sink, committing");
            stop.store(true, Ordering::Relaxed);
            current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .store(true, Ordering::Relaxed);
            let _ = stopped_tx.send(true);
        });
    }
    let startup = Arc::new(Startup::default());
    startup.waiting("kafka: asking the brokers for the topics");
    let mut registry = Registry::default();
    let sink_metrics = SinkMetrics::register_into(&mut registry);
    let limiter = Arc::new(RateLimiter::new(config.tiktok.qps));
    let detect_status = Arc::new(DetectStatus::default());
    let activate_status = Arc::new(ActivateStatus::default());
    let admin = Admin::new(
        registry,
        detect_status.clone(),
        activate_status.clone(),
        sink_metrics.clone(),
        [k.group("detect"), k.group("activate")],
        clock.clone(),
        startup.clone(),
    );
    listener.set_nonblocking(true)?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    tracing::info!(listen = %listener.local_addr()?, "admin http: /metrics /healthz /readyz /api/v1");
    // The admin API writes the campaign store through the campaigns topic once Kafka is
    // there (503 before).
    let shared = Arc::new(crate::kafka::campaigns::Shared::default());
    let producer_cell: Arc<std::sync::OnceLock<Arc<crate::kafka::StageProducer>>> = Arc::default();
    let persist: crate::api::Persist = {
        let (k, shared, cell) = (k.clone(), shared.clone(), producer_cell.clone());
        Arc::new(move |key: &str, doc: Option<&crate::store::Doc>| {
            let producer = cell
                .get()
                .ok_or_else(|| anyhow::anyhow!("kafka is not reachable yet"))?;
            shared.writes.fetch_add(1, Ordering::SeqCst);
            crate::kafka::campaigns::write(producer, &k, key, doc)
        })
    };
    let admin_token = match &config.http.admin_token {
        crate::config::TokenSource::None => None,
        source => Some(Token::load(source)?.current()),
    };
    let api = crate::api::Api::new(
        admin_token.as_ref().map(|t| t.expose()),
        config.document.clone(),
        shared.store.clone(),
        persist,
        {
            // Over every activate partition: this replica's own, the others' from the
            // reports topic.
            let status = activate_status.clone();
            Arc::new(move |id: &str| {
                let (tally, owned) = status.tally(id);
                (owned > 0).then(|| tally.report(status.audience_size(id)))
            })
        },
        clock.clone(),
    );
    let api = api.with_account_check({
        let client = client.clone();
        Arc::new(move |advertiser: String| {
            let client = client.clone();
            Box::pin(async move { client.account_status(&advertiser).await })
        })
    });
    let api = api.with_daily({
        let status = activate_status.clone();
        Arc::new(move |id: &str| Some(status.daily(id)))
    });
    let api = api.with_backfills({
        let status = detect_status.clone();
        Arc::new(move |id: &str| {
            let b = status.backfills.lock().unwrap_or_else(|e| e.into_inner());
            b.get(id).copied()
        })
    });
    let api = api.with_audience_list({
        let (client, limiter, metrics) = (client.clone(), limiter.clone(), sink_metrics.clone());
        Arc::new(move |advertiser: String| {
            let (client, limiter, metrics) = (client.clone(), limiter.clone(), metrics.clone());
            Box::pin(async move {
                use crate::api::{AudienceItem, AudienceListError};
                use crate::sink::audiences::{partner_audiences, AudienceError};
                let label = "(admin api)";
                match partner_audiences(&client, &limiter, &metrics, label, &advertiser).await {
                    Ok(list) => Ok((list.iter())
                        .map(|a| {
                            let s = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("");
                            AudienceItem {
                                audience_id: s("audience_id").to_owned(),
                                name: s("name").to_owned(),
                                size: a.get("cover_num").and_then(|v| v.as_u64()).unwrap_or(0),
                            }
                        })
                        .collect()),
                    Err(e @ AudienceError::Unavailable { .. }) => {
                        Err(AudienceListError::Unavailable(e.to_string()))
                    }
                    Err(e) => Err(AudienceListError::Refused(e.to_string())),
                }
            })
        })
    });
    // The campaigns the stages run now: what a preview is compiled against.
    let running: Arc<Mutex<Option<Arc<Config>>>> = Arc::default();
    let api = api.with_preview({
        let (running, status) = (running.clone(), detect_status.clone());
        Arc::new(move |definition: &serde_json::Value| {
            use crate::api::PreviewFailure;
            let config = (running.lock().unwrap_or_else(|e| e.into_inner()).clone())
                .ok_or_else(|| PreviewFailure::Unavailable("the stages are starting".into()))?;
            let compiled = crate::preview::compile(&config, definition, std::env::vars())
                .map_err(PreviewFailure::Invalid)?;
            let (answers, workers) = status.previews.ask(
                config,
                compiled.preview.clone(),
                Arc::new(compiled.in_control()),
                PREVIEW_TIMEOUT,
            );
            if answers.iter().any(|a| a.stale) {
                return Err(PreviewFailure::Unavailable(
                    "the published campaigns just changed: try again".into(),
                ));
            }
            if workers == 0 {
                return Err(PreviewFailure::Unavailable("no detect worker runs".into()));
            }
            let mut counts = crate::detect::preview::PreviewCounts::default();
            let mut partitions = 0;
            for a in &answers {
                counts.add(&a.counts);
                partitions += a.partitions;
            }
            Ok(compiled.estimate(counts, partitions, answers.len() == workers))
        })
    });
    let api = api.with_erase({
        let (k, cell, clock) = (k.clone(), producer_cell.clone(), clock.clone());
        let format = config.source.format;
        Arc::new(move |user: &str| {
            let producer = cell
                .get()
                .ok_or_else(|| anyhow::anyhow!("kafka is not reachable yet"))?;
            let at = clock.now_ms();
            crate::kafka::erase::write(producer, &k, format, user, at)?;
            Ok(at)
        })
    });
    // The console (`/`) calls the same API routes, in-process.
    let api = api.router();
    let console = crate::console::Console::new(
        api.clone(),
        admin_token.as_ref().map(|t| t.expose()),
        clock.clone(),
    )
    .router();
    let app = admin.router().merge(api).merge(console);
    rt.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin http server stopped");
        }
    });
    // The admin server answers `/healthz` from here on, whatever Kafka does. Brokers that
    // cannot be reached (a rolling restart, DNS not there yet) are asked again with backoff
    // while `/readyz` says why; a stop ends the wait as a clean exit.
    let mut backoff = Duration::from_millis(500);
    let existing = loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match partition_counts(&k) {
            Ok(t) => break t,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "kafka brokers unreachable");
                startup.waiting(format!("kafka: brokers unreachable ({e:#}); retrying"));
                let mut stopped = stopped.clone();
                rt.block_on(async {
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped.wait_for(|s| *s) => {}
                    }
                });
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    };
    let layout = rt.block_on(ensure_topics(&k, existing))?;
    startup.waiting("kafka: reading the campaigns topic");

    // The campaign store: read to its end, then followed; the API writes through it.
    let store = loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match crate::kafka::campaigns::read(&k) {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "campaigns topic unreadable; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    *shared.store.lock().unwrap_or_else(|e| e.into_inner()) = store;
    let _ = producer_cell.set(Arc::new(crate::kafka::producer(&k)?));
    startup.done();
    tracing::info!(
        brokers = %k.brokers,
        input_partitions = layout.input_partitions,
        activate_partitions = layout.activate_partitions,
        "topics ready"
    );
    {
        let (k, shared, stop) = (k.clone(), shared.clone(), stop.clone());
        let (startup, clock) = (startup.clone(), clock.clone());
        let activate_status = activate_status.clone();
        let config_defs: Vec<serde_json::Value> = match config.document.get("campaign") {
            Some(toml::Value::Array(a)) => (a.iter())
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect(),
            _ => Vec::new(),
        };
        std::thread::Builder::new()
            .name("campaigns".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Err(e) = crate::kafka::campaigns::follow_once(&k, &shared) {
                        tracing::warn!(error = %format!("{e:#}"), "campaigns topic unreadable");
                    }
                    let states = (shared.store.lock().unwrap_or_else(|e| e.into_inner()))
                        .states(&config_defs, clock.now_ms());
                    *startup.3.lock().unwrap_or_else(|e| e.into_inner()) = states;
                    // The other replicas' report tallies.
                    match crate::kafka::reports::read(&k) {
                        Ok(r) => {
                            *(activate_status.remote.lock()).unwrap_or_else(|e| e.into_inner()) = r;
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "reports topic unreadable")
                        }
                    }
                    std::thread::sleep(crate::kafka::campaigns::FOLLOW_EVERY);
                }
            })?;
    }

    // One pipeline per set of published campaigns: a publish, stop or cap raise ends the
    // stages (they checkpoint and commit as at a shutdown) and starts them with the new set;
    // state comes back from the changelogs.
    loop {
        let store = shared
            .store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fingerprint = published_fingerprint(&store);
        let pipe_config = match store.config(&config.document, std::env::vars()) {
            Ok(c) => Arc::new(c),
            Err(p) => {
                // Publishing validated it: only a change of the config file can do this.
                tracing::error!(problems = %p, "the published campaigns do not fit the config; running the config's campaigns only");
                config.clone()
            }
        };
        *running.lock().unwrap_or_else(|e| e.into_inner()) = Some(pipe_config.clone());
        let pipe_stop = Arc::new(AtomicBool::new(false));
        *current.lock().unwrap_or_else(|e| e.into_inner()) = pipe_stop.clone();
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let watcher = {
            let (shared, stop, pipe_stop) = (shared.clone(), stop.clone(), pipe_stop.clone());
            std::thread::Builder::new()
                .name("reconfigure".into())
                .spawn(move || {
                    // The store is looked at only after it changed (the API's writes and the
                    // follower's replacements are counted).
                    let mut seen = None;
                    let mut now = fingerprint.clone();
                    while !pipe_stop.load(Ordering::Relaxed) {
                        let changes = shared.changes();
                        if seen != Some(changes) {
                            seen = Some(changes);
                            // The API holds the lock from its write until the change is
                            // applied: what is read here includes every counted change.
                            let s = shared.store.lock().unwrap_or_else(|e| e.into_inner());
                            now = published_fingerprint(&s);
                        }
                        if now != fingerprint || stop.load(Ordering::Relaxed) {
                            if now != fingerprint {
                                tracing::info!(
                                    "published campaigns changed: restarting the stages with them"
                                );
                            }
                            pipe_stop.store(true, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                })?
        };
        tracing::info!(
            campaigns = pipe_config.campaigns.len(),
            "starting the stages"
        );
        // Not ready until the new stages restored their partitions.
        detect_status.ready.store(false, Ordering::SeqCst);
        activate_status.ready.store(false, Ordering::SeqCst);
        (startup.2).store(pipe_config.campaigns.len() as u64, Ordering::SeqCst);
        (startup.1).fetch_add(1, Ordering::SeqCst);
        let r = pipeline(Pipeline {
            rt: &rt,
            config: pipe_config,
            k: &k,
            layout: &layout,
            stop: pipe_stop.clone(),
            stopped: &stopped,
            clock: &clock,
            detect_status: &detect_status,
            activate_status: &activate_status,
            client: &client,
            limiter: &limiter,
            sink_metrics: &sink_metrics,
        });
        pipe_stop.store(true, Ordering::Relaxed);
        let _ = watcher.join();
        if r.is_err() || stop.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
            return r;
        }
    }
}

/// What identifies the engine's campaign set: the published campaigns' docs.
fn published_fingerprint(store: &crate::store::Store) -> String {
    serde_json::to_string(&store.published()).expect("serialisable")
}

/// What one run of the stages takes.
struct Pipeline<'a> {
    rt: &'a tokio::runtime::Runtime,
    config: Arc<Config>,
    k: &'a crate::config::KafkaSettings,
    layout: &'a crate::kafka::Layout,
    /// Ends this pipeline (shutdown, or a new campaign set).
    stop: Arc<AtomicBool>,
    /// The service's shutdown.
    stopped: &'a tokio::sync::watch::Receiver<bool>,
    clock: &'a Arc<dyn WallClock>,
    detect_status: &'a Arc<DetectStatus>,
    activate_status: &'a Arc<ActivateStatus>,
    client: &'a Arc<Client>,
    limiter: &'a Arc<RateLimiter>,
    sink_metrics: &'a SinkMetrics,
}

/// Runs detect and activate with one campaign set until `p.stop`, then drains them.
fn pipeline(p: Pipeline<'_>) -> anyhow::Result<()> {
    let Pipeline {
        rt,
        config,
        k,
        layout,
        stop,
        stopped,
        clock,
        detect_status,
        activate_status,
        client,
        limiter,
        sink_metrics,
    } = p;
    // `engine.shards` detect workers, each a member of the detect group.
    let workers = config.engine.workers();
    let mut detect = Vec::with_capacity(workers);
    for worker in 0..workers {
        let (config, status, stop) = (config.clone(), detect_status.clone(), stop.clone());
        let (layout, clock) = (layout.clone(), clock.clone());
        detect.push(
            std::thread::Builder::new()
                .name(format!("detect-{worker}"))
                .spawn(move || {
                    // Any stage ending (an error, or stop) ends the others.
                    let r = crate::kafka::detect::run(
                        config,
                        layout,
                        status,
                        stop.clone(),
                        worker,
                        clock,
                    );
                    stop.store(true, Ordering::Relaxed);
                    r
                })?,
        );
    }
    let join_detect = |detect: Vec<std::thread::JoinHandle<anyhow::Result<()>>>| {
        let mut first = Ok(());
        for d in detect {
            let r = d
                .join()
                .map_err(|_| anyhow::anyhow!("detect thread panicked"))
                .and_then(|r| r);
            if let Err(e) = r {
                if first.is_ok() {
                    first = Err(e);
                } else {
                    tracing::warn!(error = %e, "detect worker ended with an error");
                }
            }
        }
        first
    };
    // Detect needs no audience: it restores and consumes while activate's audiences are
    // verified or created (which takes a TikTok round trip or more per campaign).
    let mut store = crate::kafka::audiences::store(k)?;
    // TikTok may be slow or down: a stop meanwhile is a clean exit.
    let targets = rt.block_on(async {
        let mut stopped = stopped.clone();
        tokio::select! {
            t = resolve(client, limiter, sink_metrics, &config.campaigns, &mut store) => Some(t),
            _ = stopped.wait_for(|s| *s) => None,
        }
    });
    let targets = match targets {
        None => {
            tracing::info!("stopped while the audiences were resolved");
            return join_detect(detect);
        }
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            stop.store(true, Ordering::Relaxed);
            if let Err(d) = join_detect(detect) {
                tracing::warn!(error = %d, "detect stage ended with an error");
            }
            return Err(e.into());
        }
    };
    // TikTok's audience sizes for the report and `remarket_audience_size`, asked at most
    // hourly by the service's clock; the task ends with the pipeline.
    let sizes = rt.spawn(follow_sizes(
        client.clone(),
        limiter.clone(),
        sink_metrics.clone(),
        targets.clone(),
        activate_status.clone(),
        clock.clone(),
    ));
    let (sink, acks) = {
        let _guard = rt.enter();
        TikTokSink::start_tracked(
            client.clone(),
            limiter.clone(),
            targets,
            SinkSettings::new(config.tiktok.max_batch, config.tiktok.linger.duration()),
            sink_metrics.clone(),
        )
    };
    let activate = {
        let (config, status, stop, handle) = (
            config.clone(),
            activate_status.clone(),
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
    let d = join_detect(detect);
    stop.store(true, Ordering::Relaxed);
    let a = activate
        .join()
        .map_err(|_| anyhow::anyhow!("activate thread panicked"));
    sizes.abort();
    let a = a?;
    d?;
    a?;
    Ok(())
}

/// Keeps `status.audience_sizes` to TikTok's answers for `targets`: each audience is asked
/// when it has not been for [`SIZE_EVERY_MS`] of `clock` (at once for a campaign new to the
/// service); campaigns no longer run are dropped.
async fn follow_sizes(
    client: Arc<Client>,
    limiter: Arc<RateLimiter>,
    metrics: SinkMetrics,
    targets: Vec<crate::sink::audiences::Target>,
    status: Arc<ActivateStatus>,
    clock: Arc<dyn WallClock>,
) {
    use crate::sink::audiences::{audience_sizes, SIZE_EVERY_MS};
    (status
        .audience_sizes
        .lock()
        .unwrap_or_else(|e| e.into_inner()))
    .retain(|c, _| targets.iter().any(|t| t.campaign == *c));
    loop {
        let now = clock.now_ms();
        let due: Vec<_> = {
            let m = status
                .audience_sizes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            (targets.iter())
                .filter(|t| {
                    m.get(&t.campaign)
                        .is_none_or(|s| now - s.asked_ms >= SIZE_EVERY_MS)
                })
                .cloned()
                .collect()
        };
        if !due.is_empty() {
            let sizes = audience_sizes(&client, &limiter, &metrics, &due).await;
            let mut m = status
                .audience_sizes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (t, size) in due.iter().zip(sizes) {
                let e = m.entry(t.campaign.clone()).or_default();
                e.asked_ms = now;
                e.size = size.or(e.size);
            }
        }
        // The clock is looked at every second: a clock that jumps (a test's) is followed.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// SIGTERM or Ctrl-C. The handlers are registered when the future is first polled, which
/// [`serve`] does before anything else.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "cannot handle SIGTERM; stopping on Ctrl-C only");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
