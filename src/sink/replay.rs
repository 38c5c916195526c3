//! The TikTok sink behind the synchronous [`AudienceSink`] trait, for `replay --sink tiktok`:
//! it owns a small tokio runtime, resolves the campaigns' audiences at start (remembering
//! created ones in `<out>/audiences.json`), and on `finish` writes any permanently refused ops
//! to `<out>/sink-failed.jsonl` (hashed ids only) and reports them as an error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::audiences::{audience_sizes, resolve, AudienceStore, Target};
use super::metrics::SinkMetrics;
use super::ratelimit::RateLimiter;
use super::service::{SinkSettings, TikTokSink};
use super::tiktok::{Client, Tokens};
use super::{Action, AudienceOp, AudienceSink, SinkError, SinkReport};
use crate::config::Config;
use crate::identity::to_hex;

/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ReplayTikTokSink {
    rt: tokio::runtime::Runtime,
    sink: Option<TikTokSink>,
    client: Arc<Client>,
    limiter: Arc<RateLimiter>,
    campaigns: Vec<String>,
    failed_path: PathBuf,
    pub metrics: SinkMetrics,
    pub targets: Vec<Target>,
}

impl ReplayTikTokSink {
    /// Resolves audiences and starts the sink against `config.tiktok`.
    pub fn start(config: &Config, out_dir: &Path) -> Result<ReplayTikTokSink, SinkError> {
        let token = Tokens::load(&config.tiktok)?;
        Self::start_with(
            config,
            out_dir,
            token,
            SinkSettings {
                retry_for: Some(config.tiktok.retry_for.duration()),
                ..SinkSettings::new(config.tiktok.max_batch, config.tiktok.linger.duration())
            },
        )
    }

    /// As [`start`](Self::start), with an explicit token and settings.
    pub fn start_with(
        config: &Config,
        out_dir: &Path,
        token: impl Into<Tokens>,
        settings: SinkSettings,
    ) -> Result<ReplayTikTokSink, SinkError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tiktok-sink")
            .enable_all()
            .build()
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        std::fs::create_dir_all(out_dir).map_err(|e| SinkError::Unavailable(e.to_string()))?;
        let client = Arc::new(Client::new(
            &config.tiktok.base_url,
            token,
            REQUEST_TIMEOUT,
        )?);
        let limiter = Arc::new(RateLimiter::new(config.tiktok.qps));
        let metrics = SinkMetrics::new();
        let mut store =
            AudienceStore::open(&out_dir.join("audiences.json"))?.recreating_forgotten();
        let targets = rt.block_on(resolve(
            &client,
            &limiter,
            &metrics,
            &config.campaigns,
            &mut store,
        ))?;
        let sink = {
            let _guard = rt.enter();
            TikTokSink::start(
                client.clone(),
                limiter.clone(),
                targets.clone(),
                settings,
                metrics.clone(),
            )
        };
        Ok(ReplayTikTokSink {
            rt,
            sink: Some(sink),
            client,
            limiter,
            campaigns: config.campaigns.iter().map(|c| c.id.clone()).collect(),
            failed_path: out_dir.join("sink-failed.jsonl"),
            metrics,
            targets,
        })
    }
}

#[derive(Serialize)]
struct FailedLine<'a> {
    campaign: &'a str,
    user_id: &'a str,
    action: &'static str,
    code: i64,
    message: &'a str,
    #[serde(rename = "EMAIL_SHA256", skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(rename = "PHONE_SHA256", skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
}

impl AudienceSink for ReplayTikTokSink {
    fn send(&mut self, op: AudienceOp) -> Result<(), SinkError> {
        let sink = self
            .sink
            .as_ref()
            .ok_or_else(|| SinkError::Unavailable("finished".into()))?;
        self.rt
            .block_on(sink.send(op))
            .map_err(|e| SinkError::Unavailable(e.to_string()))
    }

    fn audience_sizes(&mut self) -> Vec<Option<u64>> {
        self.rt.block_on(audience_sizes(
            &self.client,
            &self.limiter,
            &self.metrics,
            &self.targets,
        ))
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        let sink = self
            .sink
            .take()
            .ok_or_else(|| SinkError::Unavailable("finished".into()))?;
        let outcome = self.rt.block_on(sink.finish());
        if outcome.failed.is_empty() {
            let _ = std::fs::remove_file(&self.failed_path);
            return Ok(outcome.report);
        }
        let write = || -> std::io::Result<()> {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&self.failed_path)?);
            for f in &outcome.failed {
                let line = FailedLine {
                    campaign: &self.campaigns[usize::from(f.op.campaign)],
                    user_id: &f.op.user,
                    action: match f.op.action {
                        Action::Add => "add",
                        Action::Delete => "delete",
                    },
                    code: f.code,
                    message: &f.message,
                    email: f.op.ids.email.as_ref().map(to_hex),
                    phone: f.op.ids.phone.as_ref().map(to_hex),
                };
                serde_json::to_writer(&mut w, &line)?;
                w.write_all(b"\n")?;
            }
            w.flush()
        };
        write().map_err(|e| SinkError::Unavailable(e.to_string()))?;
        Err(SinkError::Failed {
            report: outcome.report,
            path: self.failed_path.display().to_string(),
        })
    }
}
