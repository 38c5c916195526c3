//! The consumer-group skeleton both Kafka stages share: the consumer and its context, lag
//! statistics, commits (asynchronous while running, synchronous before a revocation and on
//! the way out), the revoke and assign callbacks, pause/resume, the poll loop and its stop.
//! A [`Stage`] supplies only what is its own — restoring a partition, taking a record, making
//! its outputs durable and saying which offsets that covers — and reports failures as a
//! [`StageError`], whose kind decides what the runner does (no downcasts).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::time::Instant;

use super::{Lag, LostWrites};
use crate::config::KafkaSettings;

/// Input offsets to commit: `(topic, partition, next offset to consume)`.
pub type Offsets = Vec<(String, i32, i64)>;

/// Why a step of a stage failed; the kind says what happens next.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Records the broker refused for good: nothing more may be committed, the stage stops
    /// and a restart resumes from the last commit.
    #[error(transparent)]
    Lost(#[from] LostWrites),
    /// The broker is slow or away: logged, and the next round tries again (nothing was
    /// committed past what is durable).
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// The stage cannot go on (a partition could not be restored, the sink stopped).
    #[error("{0:#}")]
    Fatal(anyhow::Error),
}

impl From<rdkafka::error::KafkaError> for StageError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        StageError::Retry(e.into())
    }
}

impl StageError {
    /// A retriable error, from anything.
    pub fn retry(e: impl Into<anyhow::Error>) -> StageError {
        StageError::Retry(e.into())
    }

    /// A fatal error, from anything.
    pub fn fatal(e: impl Into<anyhow::Error>) -> StageError {
        StageError::Fatal(e.into())
    }

    fn into_anyhow(self) -> anyhow::Error {
        match self {
            StageError::Lost(e) => e.into(),
            StageError::Retry(e) | StageError::Fatal(e) => e,
        }
    }
}

/// What the runner does after a round.
#[derive(Debug)]
pub struct Round {
    /// Offsets whose records' effects are durable: committed asynchronously.
    pub commit: Offsets,
    /// Whether consumption should be paused (the stage cannot take more for now).
    pub pause: bool,
    /// How long the next poll may wait for a record.
    pub wait: Duration,
}

/// One consumer-group stage.
pub trait Stage: Send + 'static {
    /// The stage's name: its consumer group is `<group_prefix>-<NAME>`.
    const NAME: &'static str;

    /// Where the consumer's statistics go.
    fn lag(&self) -> &Lag;

    /// Partitions newly assigned (none of them owned yet): restore their state.
    fn assign(&mut self, parts: &[i32]) -> Result<(), StageError>;

    /// Before `only` (all partitions with `None`) are revoked or the stage stops: make what
    /// they hold durable, waiting as long as that takes, and return the offsets it covers (to
    /// be committed synchronously).
    fn durable(&mut self, only: Option<&BTreeSet<i32>>) -> Result<Offsets, StageError>;

    /// After [`Stage::durable`], the partitions are revoked: drop their state.
    fn revoked(&mut self, parts: &BTreeSet<i32>);

    /// One record of an owned partition.
    fn record(&mut self, m: &BorrowedMessage<'_>, now: Instant) -> Result<(), StageError>;

    /// After every poll (`polled`: whether it returned a record): the stage's periodic work.
    fn round(&mut self, polled: bool, now: Instant) -> Result<Round, StageError>;

    /// Consumption was paused because of [`Round::pause`].
    fn paused(&mut self) {}

    /// After the stage left the group (its final commit done): a last chance to finish work
    /// and commit what that covered.
    fn after_leave(&mut self) -> Result<Offsets, StageError> {
        Ok(Vec::new())
    }
}

struct Shared<S> {
    stage: S,
    /// An error of a callback, returned by the poll loop.
    error: Option<StageError>,
    /// Set by every assignment: newly assigned partitions are not paused.
    reassigned: bool,
}

struct Ctx<S> {
    shared: Mutex<Shared<S>>,
}

impl<S> Ctx<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared<S>> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: Stage> ClientContext for Ctx<S> {
    fn stats(&self, statistics: rdkafka::Statistics) {
        self.lock().stage.lag().update(&statistics);
    }
}

impl<S: Stage> ConsumerContext for Ctx<S> {
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            // The next commit covers these offsets too.
            tracing::warn!(stage = S::NAME, error = %e, "commit failed");
        }
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = r else { return };
        let mut sh = self.lock();
        let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        let done = sh
            .stage
            .durable(Some(&parts))
            .and_then(|offsets| commit(consumer, &offsets, CommitMode::Sync));
        match done {
            Ok(()) => {}
            Err(StageError::Retry(e)) => {
                // Typically the session already expired (the broker was away): nothing was
                // committed past what is durable, so the next owner re-reads from the last
                // commit.
                tracing::warn!(stage = S::NAME, error = %e, "commit on revocation failed");
            }
            Err(e) => {
                sh.error.get_or_insert(e);
            }
        }
        sh.stage.revoked(&parts);
        tracing::info!(stage = S::NAME, partitions = ?parts, "revoked");
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = r else { return };
        let mut sh = self.lock();
        sh.reassigned = true;
        let mut parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        parts.sort_unstable();
        parts.dedup();
        if let Err(e) = sh.stage.assign(&parts) {
            sh.error.get_or_insert(e);
        }
    }
}

/// Commits `offsets` (nothing to do for none).
fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &Offsets,
    mode: CommitMode,
) -> Result<(), StageError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, p, o) in offsets {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*o))?;
    }
    consumer.commit(&tpl, mode)?;
    Ok(())
}

/// Runs `stage` as a member of its consumer group on `topics` until `stop` is set or the
/// stage fails; then makes its state durable, commits, leaves the group, and gives the stage
/// its [`Stage::after_leave`].
pub fn run<S: Stage>(
    k: &KafkaSettings,
    topics: &[&str],
    stage: S,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let ctx = Ctx {
        shared: Mutex::new(Shared {
            stage,
            error: None,
            reassigned: false,
        }),
    };
    let consumer = super::group_consumer(k, S::NAME, ctx)?;
    consumer.subscribe(topics)?;
    tracing::info!(brokers = %k.brokers, group = %k.group(S::NAME), ?topics, "{} stage consuming", S::NAME);
    let mut wait = Duration::from_millis(100);
    let mut paused = false;
    while !stop.load(Ordering::Relaxed) {
        let msg = consumer.poll(wait);
        // The one clock reading of the round.
        let now = Instant::now();
        let mut sh = consumer.context().lock();
        if let Some(e) = sh.error.take() {
            return Err(e.into_anyhow());
        }
        let polled = match msg {
            Some(Ok(m)) => {
                if let Err(e) = sh.stage.record(&m, now) {
                    return Err(e.into_anyhow());
                }
                true
            }
            Some(Err(e)) => {
                tracing::warn!(stage = S::NAME, error = %e, "consumer error");
                false
            }
            None => false,
        };
        let round = match sh.stage.round(polled, now) {
            Ok(r) => r,
            Err(StageError::Retry(e)) => {
                tracing::warn!(stage = S::NAME, error = %e, "retrying at the next round");
                continue;
            }
            Err(e) => return Err(e.into_anyhow()),
        };
        wait = round.wait;
        let reassigned = std::mem::take(&mut sh.reassigned);
        if let Err(e) = commit(&consumer, &round.commit, CommitMode::Async) {
            tracing::warn!(stage = S::NAME, error = %e, "commit failed; retrying with the next one");
        }
        // Pausing and resuming can fail while the group is in trouble (the coordinator gone,
        // the assignment lost): that is retried on the next round, never fatal.
        if round.pause && (!paused || reassigned) {
            match consumer.assignment().and_then(|a| consumer.pause(&a)) {
                Ok(()) => {
                    if !paused {
                        tracing::debug!(stage = S::NAME, "consumption paused");
                    }
                    paused = true;
                    sh.stage.paused();
                }
                Err(e) => {
                    tracing::warn!(stage = S::NAME, error = %e, "pausing consumption failed; retrying")
                }
            }
        } else if !round.pause && paused {
            match consumer.assignment().and_then(|a| consumer.resume(&a)) {
                Ok(()) => {
                    tracing::debug!(stage = S::NAME, "consumption resumed");
                    paused = false;
                }
                Err(e) => {
                    tracing::warn!(stage = S::NAME, error = %e, "resuming consumption failed; retrying")
                }
            }
        }
    }
    let mut sh = consumer.context().lock();
    let done = sh
        .stage
        .durable(None)
        .and_then(|offsets| commit(&consumer, &offsets, CommitMode::Sync));
    if let Err(e) = done {
        // Nothing is committed past what is durable; the next owner re-reads from there.
        tracing::warn!(stage = S::NAME, error = %e, "final commit failed");
    }
    drop(sh);
    consumer.unsubscribe();
    let mut sh = consumer.context().lock();
    let done = sh
        .stage
        .after_leave()
        .and_then(|offsets| commit(&consumer, &offsets, CommitMode::Sync));
    if let Err(e) = done {
        tracing::warn!(stage = S::NAME, error = %e, "commit after leaving failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
