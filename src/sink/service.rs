//! The TikTok sink's dispatcher: audience ops in, mapping requests out.
//!
//! Stages, each its own type: [`Batcher`] (per campaign × action, `max_batch` users or
//! `linger`) → ordering (below) → concurrency cap (`max_in_flight` requests) →
//! [`RateLimiter`] (`qps`) → request → [`classify`](super::retry::classify) → retry with
//! backoff / split on 40011 / permanent.
//!
//! Memory is bounded: the input channel holds `max_batch` ops, at most `max_queued` closed
//! batches wait for a request slot, and while they wait the dispatcher stops reading its input,
//! so a TikTok outage pushes back on the producer instead of growing memory. Permanent
//! failures are never dropped: the ops are kept and returned in [`SinkOutcome::failed`].
//!
//! # Order
//!
//! An audience is a set of hashed ids, and the ops come from activate in the order it applied
//! them (a delete only for ids no member holds any more). Adds commute with adds and deletes
//! with deletes, so those run concurrently; an add and a delete *of one id* are applied in
//! arrival order, whatever the batching: a batch waits until every earlier op of the other
//! action that shares an id with one of its ops was answered. So that no two batches wait
//! for each other, an op that shares an id with a pending op of the other action first
//! closes the campaign's open batches: a batch then waits only for batches closed before it.
//! TikTok's final state is a function of the ops alone.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::audiences::{outcome_of, Target};
use super::batch::{Batch, Batcher};
use super::metrics::{self, Endpoint, Outcome, SinkMetrics};
use super::ratelimit::RateLimiter;
use super::retry::{Backoff, RetryAction, RetryReason};
use super::tiktok::{Client, MapAction};
use super::{Action, AudienceOp, SinkReport};
use crate::identity::IdHash;
use crate::model::{CampaignIdx, Ids};

/// Tuning of the dispatcher.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub max_batch: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
    /// Closed batches waiting for a request slot before the input is no longer read.
    pub max_queued: usize,
    pub backoff: Backoff,
    /// How long one batch is retried before its users are reported as failed (`replay`:
    /// `tiktok.retry_for`); `None`: until it succeeds (`run`, where the input waits meanwhile
    /// and nothing is lost).
    pub retry_for: Option<Duration>,
}

impl SinkSettings {
    pub fn new(max_batch: usize, linger: Duration) -> SinkSettings {
        SinkSettings {
            max_batch,
            linger,
            max_in_flight: 4,
            max_queued: 8,
            backoff: Backoff::default(),
            retry_for: None,
        }
    }
}

/// Ops TikTok refused for good, with its answer.
#[derive(Debug, Clone)]
pub struct Failed {
    pub op: AudienceOp,
    pub code: i64,
    pub message: String,
}

/// What the sink did.
#[derive(Debug, Default)]
pub struct SinkOutcome {
    pub report: SinkReport,
    pub failed: Vec<Failed>,
}

type Key = (CampaignIdx, MapAction);
/// One hashed id of one campaign's audience (`true` = email, `false` = phone).
type IdKey = (CampaignIdx, bool, IdHash);

/// Ops of one id not yet answered, by action.
#[derive(Debug, Default)]
struct PendingOps {
    adds: BTreeSet<u64>,
    deletes: BTreeSet<u64>,
}

impl PendingOps {
    fn of(&mut self, action: MapAction) -> &mut BTreeSet<u64> {
        match action {
            MapAction::Add => &mut self.adds,
            MapAction::Delete => &mut self.deletes,
        }
    }

    fn other(&self, action: MapAction) -> &BTreeSet<u64> {
        match action {
            MapAction::Add => &self.deletes,
            MapAction::Delete => &self.adds,
        }
    }
}

fn id_keys(campaign: CampaignIdx, ids: Ids) -> impl Iterator<Item = IdKey> {
    ids.email
        .map(|h| (campaign, true, h))
        .into_iter()
        .chain(ids.phone.map(|h| (campaign, false, h)))
}
/// An op, its arrival number, and the caller's token to acknowledge once TikTok accepted it.
type Item = (u64, AudienceOp, Option<u64>);

struct Shared {
    client: Arc<Client>,
    limiter: Arc<RateLimiter>,
    targets: Vec<Target>,
    metrics: SinkMetrics,
    backoff: Backoff,
    retry_for: Option<Duration>,
    inflight: Semaphore,
    /// Arrival numbers of the ops not yet answered, per campaign and hashed id.
    pending: Mutex<HashMap<IdKey, PendingOps>>,
    answered: Notify,
    requests: AtomicU64,
    retries: AtomicU64,
    adds: AtomicU64,
    deletes: AtomicU64,
    failed: Mutex<Vec<Failed>>,
    acks: Option<mpsc::UnboundedSender<u64>>,
}

/// A running TikTok sink.
pub struct TikTokSink {
    tx: mpsc::Sender<(AudienceOp, Option<u64>)>,
    task: tokio::task::JoinHandle<SinkOutcome>,
}

#[derive(Debug, thiserror::Error)]
#[error("the TikTok sink stopped")]
pub struct SinkStopped;

/// Why [`TikTokSink::try_send_tracked`] did not take an op.
#[derive(Debug)]
pub enum TrySend {
    /// The sink is full: the op, to offer again later.
    Full(AudienceOp),
    Stopped,
}

impl TikTokSink {
    /// Starts the dispatcher on the current runtime. `targets[c]` is campaign `c`'s audience.
    pub fn start(
        client: Arc<Client>,
        limiter: Arc<RateLimiter>,
        targets: Vec<Target>,
        settings: SinkSettings,
        metrics: SinkMetrics,
    ) -> TikTokSink {
        Self::spawn(client, limiter, targets, settings, metrics, None)
    }

    /// As [`start`](Self::start); tokens given to [`send_tracked`](Self::send_tracked) come back
    /// on the returned channel once TikTok acknowledged their op. Refused ops are never
    /// acknowledged (they are in [`SinkOutcome::failed`]).
    pub fn start_tracked(
        client: Arc<Client>,
        limiter: Arc<RateLimiter>,
        targets: Vec<Target>,
        settings: SinkSettings,
        metrics: SinkMetrics,
    ) -> (TikTokSink, mpsc::UnboundedReceiver<u64>) {
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let sink = Self::spawn(client, limiter, targets, settings, metrics, Some(ack_tx));
        (sink, ack_rx)
    }

    fn spawn(
        client: Arc<Client>,
        limiter: Arc<RateLimiter>,
        targets: Vec<Target>,
        settings: SinkSettings,
        metrics: SinkMetrics,
        acks: Option<mpsc::UnboundedSender<u64>>,
    ) -> TikTokSink {
        let (tx, rx) = mpsc::channel(settings.max_batch.max(1));
        metrics.rate_limit_qps.set(limiter.rate());
        let shared = Arc::new(Shared {
            client,
            limiter,
            targets,
            metrics,
            backoff: settings.backoff.clone(),
            retry_for: settings.retry_for,
            inflight: Semaphore::new(settings.max_in_flight.max(1)),
            pending: Mutex::new(HashMap::new()),
            answered: Notify::new(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            adds: AtomicU64::new(0),
            deletes: AtomicU64::new(0),
            failed: Mutex::new(Vec::new()),
            acks,
        });
        let task = tokio::spawn(dispatch(rx, shared, settings));
        TikTokSink { tx, task }
    }

    /// Hands an op to the sink; waits while the sink is full (backpressure).
    pub async fn send(&self, op: AudienceOp) -> Result<(), SinkStopped> {
        self.tx.send((op, None)).await.map_err(|_| SinkStopped)
    }

    /// Hands an op over only if the sink has room now; a full sink gives it back.
    pub fn try_send_tracked(&self, op: AudienceOp, token: u64) -> Result<(), TrySend> {
        self.tx.try_send((op, Some(token))).map_err(|e| match e {
            mpsc::error::TrySendError::Full((op, _)) => TrySend::Full(op),
            mpsc::error::TrySendError::Closed(_) => TrySend::Stopped,
        })
    }

    /// Flushes everything, waits for every request to finish, and reports.
    pub async fn finish(self) -> SinkOutcome {
        drop(self.tx);
        self.task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the TikTok sink task failed");
            SinkOutcome::default()
        })
    }
}

async fn dispatch(
    mut rx: mpsc::Receiver<(AudienceOp, Option<u64>)>,
    shared: Arc<Shared>,
    settings: SinkSettings,
) -> SinkOutcome {
    let mut batcher: Batcher<Key, Item> = Batcher::new(settings.max_batch, settings.linger);
    let mut arrivals = 0u64;
    let slots = Arc::new(Semaphore::new(settings.max_queued.max(1)));
    let mut tasks = JoinSet::new();
    let mut open = true;
    while open {
        let deadline = batcher.next_deadline();
        tokio::select! {
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a TikTok request task failed");
                }
            }
            msg = rx.recv() => match msg {
                Some((op, token)) => {
                    shared.metrics.pending_users.inc();
                    let key = (op.campaign, map_action(op.action));
                    arrivals += 1;
                    let conflict = {
                        let mut pending = shared.pending.lock().expect("pending ops");
                        let mut conflict = false;
                        for k in id_keys(op.campaign, op.ids) {
                            let p = pending.entry(k).or_default();
                            conflict |= !p.other(key.1).is_empty();
                            p.of(key.1).insert(arrivals);
                        }
                        conflict
                    };
                    if conflict {
                        for action in [MapAction::Add, MapAction::Delete] {
                            if let Some(b) = batcher.flush_key(&(op.campaign, action)) {
                                launch(b, &shared, &slots, &mut tasks).await;
                            }
                        }
                    }
                    if let Some(b) = batcher.push(key, (arrivals, op, token), Instant::now()) {
                        launch(b, &shared, &slots, &mut tasks).await;
                    }
                }
                None => open = false,
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                for b in batcher.expired(Instant::now()) {
                    launch(b, &shared, &slots, &mut tasks).await;
                }
            }
        }
    }
    for b in batcher.flush_all() {
        launch(b, &shared, &slots, &mut tasks).await;
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a TikTok request task failed");
        }
    }
    let failed = std::mem::take(&mut *shared.failed.lock().expect("failed list"));
    SinkOutcome {
        report: SinkReport {
            adds: shared.adds.load(Ordering::Relaxed),
            deletes: shared.deletes.load(Ordering::Relaxed),
            requests: shared.requests.load(Ordering::Relaxed),
            retries: shared.retries.load(Ordering::Relaxed),
            failed: failed.len() as u64,
        },
        failed,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn map_action(a: Action) -> MapAction {
    match a {
        Action::Add => MapAction::Add,
        Action::Delete => MapAction::Delete,
    }
}

/// Queues a closed batch: waits for a queue slot (backpressure), then spawns its request task.
async fn launch(
    batch: Batch<Key, Item>,
    shared: &Arc<Shared>,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
) {
    let slot = slots.clone().acquire_owned().await.expect("never closed");
    tasks.spawn(run_batch(shared.clone(), batch, slot));
}

async fn run_batch(shared: Arc<Shared>, batch: Batch<Key, Item>, _slot: OwnedSemaphorePermit) {
    let (campaign, action) = batch.key;
    // Wait until every earlier op of the other action on one of these ids was answered.
    loop {
        let notified = shared.answered.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let blocked = {
            let pending = shared.pending.lock().expect("pending ops");
            batch.items.iter().any(|(n, op, _)| {
                id_keys(campaign, op.ids).any(|k| {
                    pending
                        .get(&k)
                        .is_some_and(|p| p.other(action).range(..*n).next().is_some())
                })
            })
        };
        if !blocked {
            break;
        }
        notified.await;
    }
    send_rows(&shared, campaign, action, &batch.items).await;
    {
        let mut pending = shared.pending.lock().expect("pending ops");
        for (n, op, _) in &batch.items {
            for k in id_keys(campaign, op.ids) {
                if let Some(p) = pending.get_mut(&k) {
                    p.of(action).remove(n);
                    if p.adds.is_empty() && p.deletes.is_empty() {
                        pending.remove(&k);
                    }
                }
            }
        }
    }
    shared.answered.notify_waiters();
}

/// Sends one batch until TikTok acknowledges it or refuses it for good; splits on 40011.
fn send_rows<'a>(
    shared: &'a Shared,
    campaign: CampaignIdx,
    action: MapAction,
    ops: &'a [Item],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let target = &shared.targets[usize::from(campaign)];
        let ids: Vec<Ids> = ops.iter().map(|(_, o, _)| o.ids).collect();
        let mut rng = fastrand::Rng::new();
        let mut attempt = 0u32;
        let started = Instant::now();
        loop {
            let answer = {
                let _permit = shared.inflight.acquire().await.expect("never closed");
                // Held until the answer: see `RateLimiter`.
                let _slot = shared.limiter.acquire().await;
                let started = Instant::now();
                let a = shared
                    .client
                    .mapping(
                        &target.advertiser,
                        &target.audience_id,
                        action,
                        target.email,
                        target.phone,
                        &ids,
                    )
                    .await;
                shared
                    .metrics
                    .request_seconds
                    .observe(started.elapsed().as_secs_f64());
                shared.requests.fetch_add(1, Ordering::Relaxed);
                a
            };
            tracing::debug!(
                campaign = %target.campaign,
                action = action.as_str(),
                users = ops.len(),
                ok = matches!(answer, RetryAction::Ok(_)),
                "mapping answer"
            );
            match &answer {
                RetryAction::Retry(RetryReason::Throttled) => shared.limiter.throttled(),
                RetryAction::Retry(_) => {}
                _ => shared.limiter.succeeded(),
            }
            shared.metrics.rate_limit_qps.set(shared.limiter.rate());
            match answer {
                RetryAction::Ok(_) => {
                    shared.metrics.request(Endpoint::Mapping, Outcome::Ok);
                    shared.metrics.batch_rows.observe(ops.len() as f64);
                    let n = ops.len() as u64;
                    let (counter, label) = match action {
                        MapAction::Add => (&shared.adds, metrics::Action::Add),
                        MapAction::Delete => (&shared.deletes, metrics::Action::Delete),
                    };
                    counter.fetch_add(n, Ordering::Relaxed);
                    shared
                        .metrics
                        .users
                        .get_or_create(&metrics::ActionLabels { action: label })
                        .inc_by(n);
                    shared.metrics.pending_users.dec_by(n as i64);
                    if let Some(acks) = &shared.acks {
                        for token in ops.iter().filter_map(|(_, _, t)| *t) {
                            let _ = acks.send(token);
                        }
                    }
                    return;
                }
                RetryAction::Retry(reason) => {
                    shared
                        .metrics
                        .request(Endpoint::Mapping, outcome_of(reason));
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = shared.backoff.delay(attempt, reason, &mut rng);
                    attempt = attempt.saturating_add(1);
                    if let Some(limit) = shared.retry_for {
                        if started.elapsed() + delay > limit {
                            let message = format!(
                                "retried for {} ({attempt} attempts, tiktok.retry_for); last answer: {}",
                                humantime::format_duration(Duration::from_secs(
                                    started.elapsed().as_secs()
                                )),
                                reason.as_str()
                            );
                            fail(shared, campaign, ops, RETRIES_EXHAUSTED, message);
                            return;
                        }
                    }
                    if attempt == 4 || (attempt > 4 && attempt % 10 == 1) {
                        tracing::warn!(
                            campaign = %target.campaign,
                            reason = reason.as_str(),
                            attempt,
                            users = ops.len(),
                            "TikTok mapping request still being retried"
                        );
                    }
                    tokio::time::sleep(delay).await;
                }
                RetryAction::Split if ops.len() > 1 => {
                    shared.metrics.request(Endpoint::Mapping, Outcome::Split);
                    let (left, right) = ops.split_at(ops.len() / 2);
                    send_rows(shared, campaign, action, left).await;
                    send_rows(shared, campaign, action, right).await;
                    return;
                }
                RetryAction::Split => {
                    fail(
                        shared,
                        campaign,
                        ops,
                        40011,
                        "too many ids for one user".into(),
                    );
                    return;
                }
                RetryAction::Permanent { code, message } => {
                    fail(shared, campaign, ops, code, message);
                    return;
                }
            }
        }
    })
}

/// The `code` of users whose batch was retried for `retry_for` without success (not a
/// TikTok code: TikTok's are positive).
pub const RETRIES_EXHAUSTED: i64 = -1;

fn fail(shared: &Shared, campaign: CampaignIdx, ops: &[Item], code: i64, message: String) {
    shared
        .metrics
        .request(Endpoint::Mapping, Outcome::Permanent);
    shared.metrics.failed_users.inc_by(ops.len() as u64);
    shared.metrics.pending_users.dec_by(ops.len() as i64);
    tracing::error!(
        campaign = %shared.targets[usize::from(campaign)].campaign,
        code,
        users = ops.len(),
        "TikTok refused a mapping request for good; the users are kept as failed"
    );
    let mut failed = shared.failed.lock().expect("failed list");
    failed.extend(ops.iter().map(|(_, op, _)| Failed {
        op: op.clone(),
        code,
        message: message.clone(),
    }));
}
