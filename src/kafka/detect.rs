//! The detect stage over Kafka: consumer group `<group_prefix>-detect` on the events and
//! profiles topics (cooperative-sticky), one [`Shard`] per input partition number (the two
//! topics are co-partitioned, so partition `p` of both is one task).
//!
//! # Commit point
//!
//! Every `commit_interval` (and once the input runs dry, at most every 200 ms), and before a
//! partition is revoked, a task *checkpoints*: it advances its shard to the watermark `W`;
//! once every record sent so far is written (the qualifications the state reflects among
//! them), it writes every changed user's snapshot (or a tombstone) to its changelog
//! partition; once those are written, a checkpoint record (`W`, per input the largest ts seen
//! and the next offset to consume); once that is written, it commits, per input, the offset of
//! the earliest record still buffered (not yet applied), or the next offset if none is.
//! The task only encodes its changed users: the steps, each waiting for the broker, are the
//! worker's [`writer`] thread's, and consumption goes on meanwhile (before a revocation and on
//! the way out it waits for them). So after a crash:
//! - the changelog holds the effect of the records with `ts <= W` below `consumed` — and
//!   possibly, in snapshots written after the last checkpoint record, of some later ones.
//!   Those snapshots are set aside on restore (see [`read_checkpointed`]): the users keep
//!   their state as of the checkpoint and the later records are applied again, once, as
//!   they were the first time (their outputs come again: duplicates, which activate drops).
//!   This relies on the log cleaner leaving the changelog's tail alone — it never cleans
//!   the active segment, and a checkpoint is far smaller than one;
//! - consumption restarts at or below the first unapplied record; re-read records below
//!   `consumed` with `ts <= W` were applied (or dropped as late) before, and are skipped;
//!   the others are applied as new.
//!
//! Duplicated qualified records are possible (emitted after the last checkpoint); the activate
//! stage decides once per user, so they change nothing. Offsets are never committed past a
//! record whose effect is not durable.
//!
//! On assignment, a task first reads its changelog partition to the end (last value per key
//! wins, so compaction is an optimisation, not a requirement), then its inputs are consumed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::Producer;
use tokio::time::Instant;

use super::stage::{Offsets, Round, Stage, StageError};
use super::wire::{hex_ids, Checkpoint, InputMark, Qualified, CHECKPOINT_KEY};
use crate::clock::WallClock;
use crate::config::Config;
use crate::detect::preview::{Preview, PreviewCounts};
use crate::detect::router::{route, Routed, Totals};
use crate::detect::shard::Shard;
use crate::detect::watermark::Watermarks;
use crate::detect::Rules;
use crate::event::decode::{Decoder, Malformed};
use crate::event::EventTime;

mod writer;

/// Live counters of the stage (all its workers), read by `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct DetectStatus {
    /// The router's counters per worker, as of its last advance round.
    workers: Mutex<Vec<Totals>>,
    pub qualified: std::sync::atomic::AtomicU64,
    /// Backfills of newly loaded behaviour rules, by campaign id.
    pub backfills: Mutex<BTreeMap<String, crate::detect::Backfill>>,
    /// Custom profile properties dropped over `engine.max_custom_props`.
    pub custom_props_dropped: std::sync::atomic::AtomicU64,
    /// Input partitions owned, over all workers.
    pub assigned: std::sync::atomic::AtomicU64,
    /// Set once some worker's first assignment was restored.
    pub ready: AtomicBool,
    /// Per owned partition, as of the last checkpoint.
    pub partitions: Mutex<BTreeMap<i32, PartitionGauge>>,
    /// The consumer's lag per `(topic, partition)`, from librdkafka's statistics.
    pub lag: super::Lag,
    /// Preview requests to every worker.
    pub previews: PreviewBoard,
}

/// Whether a user is in a campaign's control group (activate's rule, given by the caller).
pub type InControl = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What one worker answered to a preview.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreviewAnswer {
    pub counts: PreviewCounts,
    /// Input partitions the worker owns.
    pub partitions: usize,
    /// The worker runs other campaigns than the preview was compiled against.
    pub stale: bool,
}

#[derive(Clone)]
struct PreviewJob {
    id: u64,
    /// The pipeline config the preview was compiled against.
    config: Arc<Config>,
    preview: Arc<Preview>,
    control: InControl,
    reply: std::sync::mpsc::Sender<PreviewAnswer>,
}

/// Preview requests posted to every detect worker, each answered from the worker's poll loop
/// (between two polls, so the state is consistent).
#[derive(Default)]
pub struct PreviewBoard {
    jobs: Mutex<Vec<PreviewJob>>,
    next: std::sync::atomic::AtomicU64,
    /// Workers running now.
    live: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for PreviewBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreviewBoard")
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PreviewBoard {
    /// Asks every running worker, waiting at most `timeout`; returns the answers (fewer than
    /// the workers when some did not answer in time) and how many workers there were.
    pub fn ask(
        &self,
        config: Arc<Config>,
        preview: Arc<Preview>,
        control: InControl,
        timeout: Duration,
    ) -> (Vec<PreviewAnswer>, usize) {
        let workers = self.live.load(Ordering::SeqCst);
        let (tx, rx) = std::sync::mpsc::channel();
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PreviewJob {
                id,
                config,
                preview,
                control,
                reply: tx,
            });
        let deadline = Instant::now() + timeout;
        let mut answers = Vec::new();
        while answers.len() < workers {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(a) => answers.push(a),
                Err(_) => break,
            }
        }
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|j| j.id != id);
        (answers, workers)
    }

    /// A worker's turn: answers the jobs posted since `seen` with `f`.
    fn serve(&self, seen: &mut u64, f: impl Fn(&PreviewJob) -> PreviewAnswer) {
        let from = *seen;
        // Copied out: workers evaluate at the same time, not one after the other.
        let jobs: Vec<PreviewJob> = (self.jobs.lock().unwrap_or_else(|e| e.into_inner()))
            .iter()
            .filter(|j| j.id > from)
            .cloned()
            .collect();
        for job in jobs {
            let _ = job.reply.send(f(&job));
            *seen = job.id;
        }
    }
}

/// Counts a worker as running while it lives.
struct LiveWorker(Arc<DetectStatus>);

impl Drop for LiveWorker {
    fn drop(&mut self) {
        self.0.previews.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DetectStatus {
    /// The router's counters over all workers.
    pub fn totals(&self) -> Totals {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = Totals::default();
        for t in workers.iter() {
            sum.add(t);
        }
        sum
    }

    fn report(&self, worker: usize, totals: &Totals) {
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if workers.len() <= worker {
            workers.resize_with(worker + 1, Totals::default);
        }
        workers[worker].clone_from(totals);
    }
}

/// What `/metrics` shows of one owned input partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionGauge {
    /// Users with state.
    pub users: u64,
    /// The partition's event-time watermark (`None` before the first record).
    pub watermark: Option<EventTime>,
}

struct Input {
    topic: String,
    consumed: i64,
    /// Records below this offset were seen before the last restart.
    replay_until: i64,
    /// Whether every record below `replay_until` was received again since the restore.
    /// Until then the records between the group's committed offset and `replay_until` are
    /// not in `buffered` yet, so no offset may be committed for this input: committing
    /// `consumed` then would skip the ones a checkpoint had buffered (a trigger lost for
    /// good when the process died before they were re-read — the crash test's missing
    /// qualification).
    caught_up: bool,
    last_seen: Instant,
    /// Pushed into the shard, in offset order: `(offset, ts)`. The front is the earliest
    /// record not applied yet once the applied ones (`ts <= W`) are popped off it; those
    /// behind it stay until they reach the front (W only grows, so they stay applied).
    buffered: std::collections::VecDeque<(i64, EventTime)>,
}

struct Task {
    shard: Shard,
    inputs: Vec<Input>,
    wm: Watermarks,
    restored_wm: EventTime,
    seq: u64,
}

struct State {
    config: Arc<Config>,
    rules: Arc<Rules>,
    tasks: BTreeMap<i32, Task>,
    producer: Arc<super::StageProducer>,
    /// Writes each checkpoint (markers, snapshots, checkpoint records) through `producer`
    /// on a thread of its own.
    writer: writer::Writer,
    changelog: String,
    qualified: String,
    dead_letter: String,
    status: Arc<DetectStatus>,
    /// Checkpoints not committed yet, oldest first (see [`Unwritten`]).
    unwritten: std::collections::VecDeque<Unwritten>,
    /// The clock as of the current poll round.
    now: Instant,
    /// The wall clock an idle task's watermark follows (DESIGN.md §4).
    clock: Arc<dyn WallClock>,
    /// The router's counters (copied to the status every advance round).
    totals: Totals,
    /// This worker's number (its slot in the status).
    worker: usize,
    /// The poll loop's bookkeeping (see [`Stage::round`]).
    pace: Pace,
    /// Partitions of the inputs (the number of detect tasks; the writer sends each task's
    /// watermark records to every partition of the qualified topic).
    input_partitions: u32,
    /// The last preview job answered.
    previews_seen: u64,
}

/// An input's next offset to consume: `(topic, partition, offset)`.
type InputOffset = (String, i32, i64);

/// A checkpoint on its way to the commit. The writer sends its snapshots once every record
/// sent before them (the qualifications they reflect included) is written, and its
/// checkpoint records once the snapshots are (see [`writer`]); its offsets are committed once
/// those are. So a checkpoint record in the changelog always follows its whole state, and no
/// state in the changelog reflects an output that could still be lost.
struct Unwritten {
    /// The producer epoch sealed after its checkpoint records: once it is written, the
    /// offsets may be committed (`None` while the writer has not sent them).
    epoch: Option<u64>,
    offsets: Vec<InputOffset>,
}

/// When detect advances, checkpoints and commits.
struct Pace {
    interval: Duration,
    last_checkpoint: Instant,
    /// Records taken since the last advance round.
    since_advance: usize,
    /// Records consumed since the last checkpoint.
    unsaved: u64,
    /// Whether a task's watermark moved, or an input went idle, since the last checkpoint:
    /// its marker (what activate's holdback waits for) is behind.
    marker_behind: bool,
    /// The last poll's wait.
    wait: Duration,
    /// For the per-checkpoint debug line: polls, idle polls, time waited.
    polled: u64,
    idle_polls: u64,
    poll_time: Duration,
    /// Snapshots the last checkpoint handed to the writer.
    snapshots: usize,
    /// Rounds a due checkpoint waited for the previous one to be written, and whether that
    /// was logged (once it is [`POSTPONED_WARNING`] late).
    postponed: u64,
    warned: bool,
}

impl Stage for State {
    const NAME: &'static str = "detect";

    fn lag(&self) -> &super::Lag {
        &self.status.lag
    }

    fn assign(&mut self, parts: &[i32]) -> Result<(), StageError> {
        let parts: Vec<i32> = parts
            .iter()
            .copied()
            .filter(|p| !self.tasks.contains_key(p))
            .collect();
        // Partitions are restored side by side, one per core: reading and rebuilding a
        // partition keeps one core busy.
        let started = Instant::now();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut restored = Vec::with_capacity(parts.len());
        for chunk in parts.chunks(cores) {
            std::thread::scope(|scope| {
                let st = &*self;
                let workers: Vec<_> = chunk
                    .iter()
                    .map(|&p| scope.spawn(move || (p, st.restore(p))))
                    .collect();
                restored.extend(
                    workers
                        .into_iter()
                        .map(|w| w.join().expect("restore thread panicked")),
                );
            });
        }
        let before = self.tasks.len();
        let mut error = None;
        for (p, result) in restored {
            match result {
                Ok((task, users)) => {
                    tracing::info!(
                        partition = p,
                        users,
                        took_ms = started.elapsed().as_millis() as u64,
                        "restored"
                    );
                    self.tasks.insert(p, task);
                }
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "restore failed");
                    error.get_or_insert(StageError::Fatal(e));
                }
            }
        }
        // The repairs of restored partitions are written before any of their records is.
        if let Err(e) = super::flush_durable(&self.producer) {
            error.get_or_insert(e);
        }
        self.status
            .assigned
            .fetch_add((self.tasks.len() - before) as u64, Ordering::Relaxed);
        self.status.ready.store(true, Ordering::Relaxed);
        error.map_or(Ok(()), Err)
    }

    fn durable(&mut self, only: Option<&BTreeSet<i32>>) -> Result<Offsets, StageError> {
        self.checkpoint_durable(only)
    }

    fn revoked(&mut self, parts: &BTreeSet<i32>) {
        let removed = parts
            .iter()
            .filter(|p| self.tasks.remove(p).is_some())
            .count();
        // Never write a checkpoint record or commit for a partition another member may own
        // by now.
        // (A revocation's checkpoint waited for the writer: no checkpoint record of theirs
        // is left to send.)
        for u in self.unwritten.iter_mut() {
            u.offsets.retain(|(_, p, _)| !parts.contains(p));
        }
        let mut gauges = self
            .status
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        gauges.retain(|p, _| !parts.contains(p));
        drop(gauges);
        self.status
            .assigned
            .fetch_sub(removed as u64, Ordering::Relaxed);
    }

    fn record(&mut self, m: &BorrowedMessage<'_>, now: Instant) -> Result<(), StageError> {
        self.now = now;
        self.on_message(
            m.topic(),
            m.partition(),
            m.offset(),
            m.timestamp().to_millis(),
            m.key(),
            m.payload().unwrap_or(&[]),
        );
        Ok(())
    }

    fn round(&mut self, polled: bool, now: Instant) -> Result<Round, StageError> {
        self.now = now;
        self.serve_previews();
        let idle = !polled;
        self.pace.polled += 1;
        self.pace.idle_polls += u64::from(idle);
        if idle {
            self.pace.poll_time += self.pace.wait;
        }
        let mut commit = Vec::new();
        // Advance in rounds while busy, and whenever the input goes quiet; commit what the
        // broker has written meanwhile.
        if self.pace.since_advance >= 1024 || idle {
            self.advance_all(k_idle(&self.config));
            self.pace.since_advance = 0;
            commit = self.written_offsets()?;
        }
        // Every interval while busy; once the input runs dry (a poll waited for nothing), at
        // most every 200 ms, so that caught-up offsets are committed without waiting.
        let interval = self.pace.interval;
        let since = now.duration_since(self.pace.last_checkpoint);
        // A marker that is behind (the watermark moved with no record or output, as it follows
        // the wall clock once the input is drained) is sent at most every second: another
        // partition's qualifications may be waiting in activate for it.
        if since >= interval
            || (idle && self.pace.unsaved > 0 && since >= interval.min(IDLE_CHECKPOINT))
            || (idle && self.pace.marker_behind && since >= interval.min(IDLE_MARKER))
        {
            let started = Instant::now();
            if self.writer_busy()? {
                // The previous checkpoint is still being written (the broker is slow or
                // away): the changes stay marked, and a later round takes them.
                self.pace.postponed += 1;
                if since >= interval + POSTPONED_WARNING && !self.pace.warned {
                    self.pace.warned = true;
                    tracing::warn!(
                        since_ms = since.as_millis() as u64,
                        "checkpoint postponed: the previous one is not written yet"
                    );
                }
                return Ok(Round {
                    commit,
                    pause: false,
                    wait: self.pace.wait,
                });
            }
            self.checkpoint(None)?;
            self.pace.unsaved = 0;
            self.pace.marker_behind = false;
            // (Taken outside the macro: its fields are not evaluated when debug is off.)
            let postponed = std::mem::take(&mut self.pace.postponed);
            self.pace.warned = false;
            let queue_full_waits = super::QUEUE_FULL_WAITS.swap(0, Ordering::Relaxed);
            tracing::debug!(
                polled = self.pace.polled,
                idle_polls = self.pace.idle_polls,
                queue_full_waits,
                idle_ms = self.pace.poll_time.as_millis() as u64,
                since_ms = since.as_millis() as u64,
                checkpoint_ms = started.elapsed().as_millis() as u64,
                snapshots = self.pace.snapshots,
                postponed,
                unwritten = self.unwritten.len(),
                "detect checkpoint"
            );
            (self.pace.polled, self.pace.idle_polls, self.pace.poll_time) = (0, 0, Duration::ZERO);
            // The round's clock (injected in tests), moved on by the checkpoint's own time.
            self.pace.last_checkpoint = now + started.elapsed();
        }
        // Briefly while a checkpoint waits, so that its commit is not held back.
        self.pace.wait = Duration::from_millis(if self.unwritten.is_empty() { 100 } else { 10 });
        Ok(Round {
            commit,
            pause: false,
            wait: self.pace.wait,
        })
    }
}

/// Runs detect worker `worker` until `stop` is set; checkpoints and leaves the group on the
/// way out. Each worker is one member of the detect consumer group with its own producer, as
/// each of Kafka Streams' stream threads is: the group spreads the input partitions over the
/// workers of every replica, and each partition's changelog, checkpoint and commit stay with
/// the one worker that owns it.
pub fn run(
    config: Arc<Config>,
    layout: super::Layout,
    status: Arc<DetectStatus>,
    stop: Arc<AtomicBool>,
    worker: usize,
    clock: Arc<dyn WallClock>,
) -> anyhow::Result<()> {
    let k = super::settings(&config)?;
    status.previews.live.fetch_add(1, Ordering::SeqCst);
    let _live = LiveWorker(status.clone());
    let state = State::new(config.clone(), layout, status, worker, clock)?;
    let mut topics = vec![k.events_topic.as_str()];
    if k.profiles_topic != k.events_topic {
        topics.push(k.profiles_topic.as_str());
    }
    tracing::info!(worker, "detect worker starting");
    super::stage::run(&k, &topics, state, &stop)?;
    tracing::info!(worker, "detect stage stopped");
    Ok(())
}

/// Reads partition `p` of `changelog` back into a fresh shard (change tracking on) at the
/// checkpoint's watermark: the shard, the checkpoint, and the number of users restored.
pub fn restore_shard(
    k: &crate::config::KafkaSettings,
    rules: Arc<Rules>,
    changelog: &str,
    p: i32,
) -> anyhow::Result<(Shard, Option<Checkpoint>, usize)> {
    restore_checkpointed(k, rules, changelog, p).map(|r| (r.shard, r.checkpoint, r.users))
}

/// A changelog partition read back (see [`restore_checkpointed`]).
pub struct Restored {
    pub shard: Shard,
    pub checkpoint: Option<Checkpoint>,
    pub users: usize,
    /// Keys whose snapshots came after the last checkpoint record, each with its value as of
    /// that record (`None`: no state): written again before the partition is consumed.
    pub repairs: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// As [`restore_shard`], with the repairs a partition needs before it is consumed.
pub fn restore_checkpointed(
    k: &crate::config::KafkaSettings,
    rules: Arc<Rules>,
    changelog: &str,
    p: i32,
) -> anyhow::Result<Restored> {
    let (latest, checkpoint, pending) = read_checkpointed(k, changelog, p)?;
    if !pending.is_empty() {
        tracing::info!(
            partition = p,
            discarded = pending.len(),
            "snapshots written after the last checkpoint record set aside: their records are re-read"
        );
    }
    let repairs = pending
        .into_keys()
        .map(|key| {
            let value = latest.get(&key).cloned().flatten();
            (key, value)
        })
        .collect();
    let mut shard = Shard::new(rules);
    shard.track_changes();
    let w = checkpoint.as_ref().map_or(EventTime::MIN, |c| c.watermark);
    let values = latest.iter().filter_map(|(key, v)| {
        let user = std::str::from_utf8(key).ok()?;
        Some((user, v.as_deref()?))
    });
    let (users, undecodable) = shard.restore_encoded(values, w);
    if undecodable > 0 {
        tracing::warn!(
            partition = p,
            undecodable,
            "changelog records that are not user snapshots were skipped"
        );
    }
    Ok(Restored {
        shard,
        checkpoint,
        users,
        repairs,
    })
}

/// Changelog values by key, last one wins (`None`: a tombstone).
type Snapshots = rustc_hash::FxHashMap<Vec<u8>, Option<Vec<u8>>>;

/// Reads partition `p` of `changelog` as it stood at its last checkpoint record: each user's
/// last snapshot (or tombstone) written before that record, the checkpoint, and the
/// snapshots written after it, set aside.
///
/// A checkpoint writes its users' snapshots, then its checkpoint record; a crash between the
/// two leaves snapshots that reflect records the checkpoint does not cover. Restoring those
/// and then re-reading the input from the checkpoint would apply their records twice
/// (a trigger twice, a window timer out of order — seen as the crash test's changed `at`s
/// and a stalled holdback). Set aside, the users keep their state as of the checkpoint, and
/// the re-read records take them exactly where the lost checkpoint had. The partition's next
/// owner writes those users' values as of the checkpoint again, and the checkpoint record,
/// before it consumes (see [`State::repair`]), so that a later checkpoint record never covers
/// the set-aside snapshots; and a checkpoint's snapshots are sent only once every earlier
/// checkpoint record is written (see [`State::checkpoint`]), so the snapshots between two
/// checkpoint records are always those of the second.
fn read_checkpointed(
    k: &crate::config::KafkaSettings,
    changelog: &str,
    p: i32,
) -> anyhow::Result<(Snapshots, Option<Checkpoint>, Snapshots)> {
    let mut committed = Snapshots::default();
    let mut pending = Snapshots::default();
    let mut checkpoint = None;
    let group = format!("{}-restore", k.group("detect"));
    super::scan(k, &group, changelog, p, |key, value| {
        let Some(key) = key else { return };
        if key == CHECKPOINT_KEY {
            if let Some(c) = value.and_then(|v| serde_json::from_slice::<Checkpoint>(v).ok()) {
                checkpoint = Some(c);
                committed.extend(pending.drain());
            }
            return;
        }
        super::keep_latest(&mut pending, key, value);
    })?;
    Ok((committed, checkpoint, pending))
}

/// The behaviour rules a restored state holds no figures for: those not named by its
/// checkpoint record (none for a checkpoint of an earlier version, which names none).
fn missing_rules(rules: &Rules, c: &Checkpoint) -> Vec<u16> {
    let Some(held) = &c.past_rules else {
        return Vec::new();
    };
    (0..rules.past.len())
        .filter(|&r| !held.iter().any(|k| *k == rules.past[r].key))
        .map(|r| r as u16)
        .collect()
}

/// The oldest event time `rule` reads at watermark `w` (a day more, for day boundaries in
/// its time zone).
fn past_reach(rule: &crate::detect::past::PastRule, w: EventTime) -> EventTime {
    use crate::campaign::past::Range;
    const DAY: i64 = 86_400_000;
    let days = match rule.range {
        Range::Last(n) => i64::from(n),
        Range::Between(n, _) => i64::from(n) + 1,
        Range::All => return EventTime::MIN,
    };
    w.saturating_sub((days + 1) * DAY)
}

/// How late a postponed checkpoint is when it is logged as a warning (the broker is slow or
/// away: the previous checkpoint's records are not acknowledged).
const POSTPONED_WARNING: Duration = Duration::from_secs(10);

/// The least time between two checkpoints taken because the input ran dry.
const IDLE_CHECKPOINT: Duration = Duration::from_millis(200);
/// The least time between two checkpoints taken only because the watermark moved (or an
/// input went idle) while the input is dry: while drained, the watermark follows the wall
/// clock, so this paces the markers (and the checkpoint records) an idle worker sends.
const IDLE_MARKER: Duration = Duration::from_secs(1);

fn k_idle(config: &Config) -> Duration {
    config.engine.idle_timeout.duration()
}

impl State {
    /// Worker `worker`'s state, owning no partition yet, with a producer of its own.
    fn new(
        config: Arc<Config>,
        layout: super::Layout,
        status: Arc<DetectStatus>,
        worker: usize,
        clock: Arc<dyn WallClock>,
    ) -> anyhow::Result<State> {
        let k = super::settings(&config)?;
        let producer = Arc::new(super::producer(&k)?);
        let (changelog, qualified) = (k.topic("changelog"), k.topic("qualified"));
        Ok(State {
            previews_seen: status.previews.next.load(Ordering::SeqCst),
            rules: Arc::new(Rules::compile(&config.campaigns, &config.schema)),
            tasks: BTreeMap::new(),
            writer: writer::Writer::start(
                producer.clone(),
                writer::Topics {
                    changelog: changelog.clone(),
                    qualified: qualified.clone(),
                    qualified_partitions: layout.activate_partitions as i32,
                },
                worker,
            ),
            producer,
            changelog,
            qualified,
            dead_letter: k.topic("dead-letter"),
            status,
            unwritten: Default::default(),
            now: Instant::now(),
            clock,
            totals: Totals::default(),
            worker,
            pace: Pace {
                interval: k.commit_interval.duration(),
                last_checkpoint: Instant::now(),
                since_advance: 0,
                unsaved: 0,
                marker_behind: false,
                wait: Duration::from_millis(100),
                polled: 0,
                idle_polls: 0,
                poll_time: Duration::ZERO,
                snapshots: 0,
                postponed: 0,
                warned: false,
            },
            input_partitions: layout.input_partitions as u32,
            config,
        })
    }

    /// Writes the set-aside users' values as of the restored checkpoint again, then the
    /// checkpoint record (see [`read_checkpointed`]); the caller has them written before the
    /// partition is consumed.
    fn repair(
        &self,
        p: i32,
        repairs: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        checkpoint: Option<&Checkpoint>,
    ) {
        if repairs.is_empty() {
            return;
        }
        for (key, value) in &repairs {
            super::send(
                &self.producer,
                &self.changelog,
                Some(p),
                Some(key),
                value.as_deref(),
                None,
            );
        }
        if let Some(c) = checkpoint {
            let mark = serde_json::to_vec(c).expect("serialisable");
            super::send(
                &self.producer,
                &self.changelog,
                Some(p),
                Some(CHECKPOINT_KEY),
                Some(&mark),
                None,
            );
        }
    }

    fn restore(&self, p: i32) -> anyhow::Result<(Task, usize)> {
        let k = self.config.kafka.as_ref().expect("run has [kafka]");
        let mut topics = vec![k.events_topic.clone()];
        if k.profiles_topic != k.events_topic {
            topics.push(k.profiles_topic.clone());
        }
        let Restored {
            shard,
            checkpoint,
            users,
            repairs,
        } = restore_checkpointed(k, self.rules.clone(), &self.changelog, p)?;
        self.repair(p, repairs, checkpoint.as_ref());
        let mut shard = shard;
        if let Some(c) = &checkpoint {
            let missing = missing_rules(&self.rules, c);
            if !missing.is_empty() {
                self.backfill(p, &mut shard, c, &missing)?;
            }
        }
        let w = shard.watermark();
        let lateness = self.config.engine.allowed_lateness.as_millis();
        let mut wm = Watermarks::new(topics.len(), lateness);
        wm.set_floor(w);
        let now = Instant::now();
        let inputs = topics
            .into_iter()
            .enumerate()
            .map(|(i, topic)| {
                let mark = checkpoint
                    .as_ref()
                    .and_then(|c| c.inputs.iter().find(|m| m.topic == topic));
                wm.restore(i, mark.and_then(|m| m.max_ts));
                let consumed = mark.map_or(0, |m| m.consumed);
                Input {
                    topic,
                    consumed,
                    replay_until: consumed,
                    caught_up: consumed == 0,
                    last_seen: now,
                    buffered: Default::default(),
                }
            })
            .collect();
        Ok((
            Task {
                shard,
                inputs,
                wm,
                restored_wm: w,
                seq: 0,
            },
            users,
        ))
    }

    /// Backfill (DESIGN §9): counts the records the restored state reflects — below the
    /// checkpoint's `consumed`, at or below its watermark — into the behaviour rules
    /// `missing` it holds no figures for (a campaign published since), read from the
    /// beginning retention kept, so that the campaign's first run sees what it would have,
    /// had it been running. The records are routed as the first time (decode, future and
    /// late checks against a watermark rebuilt from them); an event at or before its user's
    /// erasure (read from the profiles topic first) is not counted. The users it changes
    /// are written with the next checkpoint, whose record then names the rules as held; a
    /// crash before that backfills again.
    fn backfill(
        &self,
        p: i32,
        shard: &mut Shard,
        c: &Checkpoint,
        missing: &[u16],
    ) -> anyhow::Result<()> {
        let k = self.config.kafka.as_ref().expect("run has [kafka]");
        let started = Instant::now();
        let decoder = Decoder::new(self.config.source.format, &self.config.schema);
        let until = |topic: &str| {
            (c.inputs.iter())
                .find(|m| m.topic == topic)
                .map_or(0, |m| m.consumed)
        };
        let group = format!("{}-backfill", k.group("detect"));
        let max_future = self.config.engine.max_future.as_millis();
        let not_after = |kafka_ts: Option<i64>| {
            kafka_ts.map_or(EventTime::MAX, |t| t.saturating_add(max_future))
        };
        // The oldest event time the rules read; the inputs are read from the first record
        // whose Kafka timestamp is a day and `max_future` before it (ListOffsets by
        // timestamp: a record's `ts` is at most `max_future` ahead of its Kafka timestamp,
        // and the older ones fall before every range), or from their beginning.
        let wanted = (missing.iter())
            .map(|&r| past_reach(&self.rules.past[usize::from(r)], c.watermark))
            .min()
            .unwrap_or(EventTime::MIN);
        let seek = |topic: &str| -> anyhow::Result<Option<i64>> {
            if wanted == EventTime::MIN {
                return Ok(None);
            }
            let at = wanted.saturating_sub(86_400_000 + max_future);
            super::offset_for_time(k, &group, topic, p, at)
        };
        let mut erased: rustc_hash::FxHashMap<String, EventTime> = Default::default();
        super::scan_records(
            k,
            &group,
            &k.profiles_topic,
            p,
            seek(&k.profiles_topic)?,
            until(&k.profiles_topic),
            |m| {
                let kafka_ts = m.timestamp().to_millis();
                if let Ok(rec) = decoder.decode_at(m.payload().unwrap_or_default(), kafka_ts) {
                    if rec.erase {
                        let e = erased.entry(rec.user.to_string()).or_insert(rec.ts);
                        *e = (*e).max(rec.ts);
                    }
                }
            },
        )?;
        let lateness = self.config.engine.allowed_lateness.as_millis();
        let mut wm = Watermarks::new(1, lateness);
        let mut scratch = Totals::default();
        let (mut records, mut counted) = (0u64, 0u64);
        let mut first: Option<(i64, EventTime)> = None;
        let from = seek(&k.events_topic)?;
        super::scan_records(
            k,
            &group,
            &k.events_topic,
            p,
            from,
            until(&k.events_topic),
            |m| {
                let kafka_ts = m.timestamp().to_millis();
                let decoded = decoder.decode_at(m.payload().unwrap_or_default(), kafka_ts);
                if first.is_none() {
                    first = Some((
                        m.offset(),
                        decoded.as_ref().map_or(EventTime::MAX, |r| r.ts),
                    ));
                }
                let Routed::Apply(rec) =
                    route(&mut scratch, &mut wm, 0, decoded, not_after(kafka_ts))
                else {
                    return;
                };
                if rec.ts > c.watermark {
                    return;
                }
                records += 1;
                if erased.get(rec.user.as_str()).is_some_and(|&e| rec.ts <= e) {
                    return;
                }
                if shard.backfill(&rec, missing) {
                    counted += 1;
                }
            },
        )?;
        // Retention fell short when the partition no longer starts at offset 0 and its
        // first record is younger than the longest range asks for.
        let (low, first_ts) = first.unwrap_or((0, EventTime::MAX));
        let short = low > 0 && first_ts > wanted;
        let mut campaigns: Vec<&str> = (missing.iter())
            .map(|&r| {
                let key = self.rules.past[usize::from(r)].key.as_str();
                key.rsplit_once('#').map_or(key, |(c, _)| c)
            })
            .collect();
        campaigns.dedup();
        tracing::info!(
            partition = p,
            rules = missing.len(),
            records,
            counted,
            from_offset = low,
            short,
            took_ms = started.elapsed().as_millis() as u64,
            "behaviour rules backfilled"
        );
        let mut b = self
            .status
            .backfills
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for campaign in campaigns {
            let e = b.entry(campaign.to_owned()).or_default();
            e.partitions += 1;
            e.records += records;
            e.counted += counted;
            e.short |= short;
            if short {
                e.covered_from = Some(
                    e.covered_from
                        .map_or(first_ts, |t: EventTime| t.max(first_ts)),
                );
            }
            e.wanted_from = Some(e.wanted_from.map_or(wanted, |t: EventTime| t.min(wanted)));
        }
        Ok(())
    }

    /// Takes one input record. `kafka_ts` is its Kafka timestamp: its `ts` may be at most
    /// `engine.max_future` ahead of it (without one, nothing is checked).
    fn on_message(
        &mut self,
        topic: &str,
        p: i32,
        offset: i64,
        kafka_ts: Option<i64>,
        key: Option<&[u8]>,
        payload: &[u8],
    ) {
        self.pace.since_advance += 1;
        self.pace.unsaved += 1;
        let Some(task) = self.tasks.get_mut(&p) else {
            return;
        };
        let Some(i) = task.inputs.iter().position(|inp| inp.topic == topic) else {
            return;
        };
        let inp = &mut task.inputs[i];
        inp.received(offset);
        inp.last_seen = self.now;
        let seen_before = offset < inp.replay_until;
        let decoder = Decoder::new(self.config.source.format, &self.config.schema);
        let decoded = decoder.decode_at(payload, kafka_ts);
        let not_after = kafka_ts.map_or(EventTime::MAX, |t| {
            t.saturating_add(self.config.engine.max_future.as_millis())
        });
        // Re-read after a restart: malformed ones (future ones included) were dead-lettered,
        // and records at or below the restored watermark applied (or dropped as late), before.
        match &decoded {
            Err(_) if seen_before => return,
            Ok(rec) if seen_before && (rec.ts <= task.restored_wm || rec.ts > not_after) => return,
            _ => {}
        }
        let rec = match route(&mut self.totals, &mut task.wm, i, decoded, not_after) {
            Routed::DeadLetter(reason) => {
                let source = Source {
                    topic,
                    partition: p,
                    offset,
                    key,
                };
                let mode = self.config.engine.dead_letter;
                dead_letter(
                    &self.producer,
                    &self.dead_letter,
                    &source,
                    reason,
                    payload,
                    mode,
                );
                return;
            }
            Routed::Skip => return,
            Routed::Apply(rec) => rec,
        };
        let inp = &mut task.inputs[i];
        inp.buffered.push_back((offset, rec.ts));
        task.seq += 1;
        task.shard.push(task.seq, rec);
    }

    /// Advances every task to its watermark and produces what the shards emitted.
    fn advance_all(&mut self, idle: Duration) {
        self.status.report(self.worker, &self.totals);
        let now = self.now;
        let lateness = self.config.engine.allowed_lateness.as_millis();
        let mut wall = None;
        for (&p, task) in self.tasks.iter_mut() {
            for (i, inp) in task.inputs.iter().enumerate() {
                if now.duration_since(inp.last_seen) >= idle && task.wm.is_active(i) {
                    task.wm.deactivate(i);
                    self.pace.marker_behind = true;
                }
            }
            if task.drained(p, &self.status.lag) {
                // Every input is idle and the broker holds nothing more: the watermark follows
                // the wall clock, so windows and scheduled runs fire when traffic stops.
                let now_ms = *wall.get_or_insert_with(|| self.clock.now_ms());
                task.wm.raise_floor(now_ms.saturating_sub(lateness));
            }
            let w = task.wm.current();
            if w <= task.shard.watermark() {
                continue;
            }
            task.shard.advance(w);
            self.pace.marker_behind = true;
            for inp in &mut task.inputs {
                while inp.buffered.front().is_some_and(|&(_, ts)| ts <= w) {
                    inp.buffered.pop_front();
                }
            }
            let out = task.shard.take_output();
            // Outputs wait in activate for the watermark marker of the next checkpoint: when
            // the input is quiet, that is the idle one (within [`IDLE_CHECKPOINT`]), not the
            // next `commit_interval`.
            let outputs = out.qualifications.len() + out.conversions.len() + out.erasures.len();
            self.pace.unsaved += outputs as u64;
            self.status
                .custom_props_dropped
                .fetch_add(out.custom_props_dropped, Ordering::Relaxed);
            let campaigns = &self.config.campaigns;
            for q in out.qualifications {
                let (email_sha256, phone_sha256) = hex_ids(&q.ids);
                let campaign = &campaigns[usize::from(q.campaign)].id;
                let rec = Qualified::Qualification {
                    campaign: campaign.clone(),
                    user: q.user.to_string(),
                    at: q.at,
                    trigger_ts: q.trigger_ts,
                    email_sha256,
                    phone_sha256,
                    leaves: q.leaves,
                };
                produce(
                    &self.producer,
                    &self.qualified,
                    None,
                    campaign.as_bytes(),
                    &rec,
                );
                self.status.qualified.fetch_add(1, Ordering::Relaxed);
            }
            for c in out.conversions {
                let campaign = &campaigns[usize::from(c.campaign)].id;
                let rec = Qualified::Conversion {
                    campaign: campaign.clone(),
                    user: c.user.to_string(),
                    ts: c.ts,
                    revenue: c.revenue,
                };
                produce(
                    &self.producer,
                    &self.qualified,
                    None,
                    campaign.as_bytes(),
                    &rec,
                );
            }
            for e in out.erasures {
                let campaign = &campaigns[usize::from(e.campaign)].id;
                let rec = Qualified::Erasure {
                    campaign: campaign.clone(),
                    user: e.user.to_string(),
                    ts: e.ts,
                };
                produce(
                    &self.producer,
                    &self.qualified,
                    None,
                    campaign.as_bytes(),
                    &rec,
                );
            }
        }
    }

    /// Answers the preview jobs posted since the last round, over every owned partition.
    fn serve_previews(&mut self) {
        let (status, tasks, config) = (&self.status, &self.tasks, &self.config);
        status.previews.serve(&mut self.previews_seen, |job| {
            if !Arc::ptr_eq(&job.config, config) {
                return PreviewAnswer {
                    stale: true,
                    ..PreviewAnswer::default()
                };
            }
            let mut counts = PreviewCounts::default();
            for task in tasks.values() {
                counts.add(&task.shard.preview(&job.preview, |u| (job.control)(u)));
            }
            PreviewAnswer {
                counts,
                partitions: tasks.len(),
                stale: false,
            }
        });
    }

    /// Takes a checkpoint of each task (of `only` partitions, or all) and gives it to the
    /// writer (see [`writer`]), which writes it while consumption goes on; its offsets wait
    /// in [`Unwritten`] for [`State::written_offsets`]. The caller has made sure no
    /// checkpoint is with the writer.
    fn checkpoint(&mut self, only: Option<&BTreeSet<i32>>) -> Result<(), StageError> {
        // Everything the watermark allows is applied first, so that a checkpoint's watermark
        // is its task's watermark: every record it consumed is then either applied or dropped
        // as late (`ts <= W`, skipped when re-read) or still buffered (`ts > W`, applied
        // when re-read). A shard behind its watermark would leave the records between the
        // two to be re-read against the restored watermark, and dropped as late by the
        // partition's next owner (41 of them in a loaded CI run: a revocation's checkpoint
        // came between two advance rounds).
        self.advance_all(k_idle(&self.config));
        // Every record sent so far (the outputs the state reflects among them) is written
        // before anything of the checkpoint goes.
        let mut job = writer::Job {
            outputs: self.producer.context().seal(),
            ..writer::Job::default()
        };
        let mut offsets = Vec::new();
        let mut gauges = self
            .status
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (&p, task) in self.tasks.iter_mut() {
            if only.is_some_and(|o| !o.contains(&p)) {
                continue;
            }
            let w = task.shard.watermark();
            gauges.insert(
                p,
                PartitionGauge {
                    users: task.shard.users() as u64,
                    watermark: (w > EventTime::MIN).then_some(w),
                },
            );
            // Every output at or below `w` is written before the marker goes: it tells each
            // activate partition, which holds qualifications back until every task's
            // watermark passed.
            let marker = Qualified::Watermark {
                partition: p,
                of: self.input_partitions,
                watermark: w,
                idle: (0..task.inputs.len()).all(|i| !task.wm.is_active(i)),
            };
            job.markers
                .push(serde_json::to_vec(&marker).expect("serialisable"));
            let mut batch = self.writer.batch(p);
            task.shard
                .drain_dirty_encoded(|user, value| batch.push(user.as_bytes(), value));
            job.batches.push(batch);
            let mark = Checkpoint {
                past_rules: Some(task.shard.past_keys().map(str::to_owned).collect()),
                watermark: task.shard.watermark(),
                inputs: task
                    .inputs
                    .iter()
                    .enumerate()
                    .map(|(i, inp)| InputMark {
                        topic: inp.topic.clone(),
                        max_ts: task.wm_max(i),
                        consumed: inp.consumed,
                    })
                    .collect(),
            };
            job.marks
                .push((p, serde_json::to_vec(&mark).expect("serialisable")));
            for inp in &task.inputs {
                if let Some(commit) = inp.commit_offset() {
                    offsets.push((inp.topic.clone(), p, commit));
                }
            }
        }
        drop(gauges);
        self.pace.snapshots = job.batches.iter().map(writer::Batch::len).sum();
        self.writer.hand_over(job).map_err(write_error)?;
        self.unwritten.push_back(Unwritten {
            epoch: None,
            offsets,
        });
        Ok(())
    }

    /// The offsets of the queued checkpoints whose checkpoint records are written (to be
    /// committed without waiting for the broker's answer).
    fn written_offsets(&mut self) -> Result<Offsets, StageError> {
        self.collect_writer()?;
        let mut offsets = Vec::new();
        while let Some(front) = self.unwritten.front() {
            let Some(epoch) = front.epoch else { break };
            if !self.producer.context().written_through(epoch)? {
                break;
            }
            offsets.extend(self.unwritten.pop_front().expect("a front entry").offsets);
        }
        Ok(merge_offsets(offsets))
    }

    /// Whether the previous checkpoint is still with the writer.
    fn writer_busy(&mut self) -> Result<bool, StageError> {
        self.collect_writer()?;
        Ok(self.writer.busy())
    }

    /// Notes the epoch of the checkpoint the writer is done with, if it is.
    fn collect_writer(&mut self) -> Result<(), StageError> {
        if let Some(epoch) = self.writer.finished().map_err(write_error)? {
            self.handed_over(epoch);
        }
        Ok(())
    }

    /// Waits until the checkpoint with the writer (if any) is sent.
    fn settle_writer(&mut self) -> Result<(), StageError> {
        if let Some(epoch) = self.writer.settle().map_err(write_error)? {
            self.handed_over(epoch);
        }
        Ok(())
    }

    /// The writer sent the checkpoint records of the checkpoint it had — the latest one
    /// queued: none is queued while the writer is busy —, up to `epoch`.
    fn handed_over(&mut self, epoch: u64) {
        if let Some(u) = self.unwritten.back_mut().filter(|u| u.epoch.is_none()) {
            u.epoch = Some(epoch);
        }
    }

    /// Checkpoints (the tasks of `only`, or all) and waits until everything is written:
    /// before a revocation and on the way out. Returns every queued checkpoint's offsets.
    fn checkpoint_durable(&mut self, only: Option<&BTreeSet<i32>>) -> Result<Offsets, StageError> {
        self.settle_writer()?;
        self.checkpoint(only)?;
        self.settle_writer()?;
        super::flush_durable(&self.producer)?;
        let offsets = self.unwritten.drain(..).flat_map(|u| u.offsets).collect();
        Ok(merge_offsets(offsets))
    }
}

fn write_error(e: writer::WriteError) -> StageError {
    match e {
        writer::WriteError::Lost(lost) => StageError::Lost(lost),
        gone => StageError::Fatal(gone.into()),
    }
}

/// One offset per input partition: the latest queued checkpoint's.
fn merge_offsets(offsets: Offsets) -> Offsets {
    let merged: BTreeMap<(String, i32), i64> = offsets
        .into_iter()
        .map(|(topic, p, o)| ((topic, p), o))
        .collect();
    merged.into_iter().map(|((t, p), o)| (t, p, o)).collect()
}

impl Input {
    /// Notes that the record at `offset` was received.
    fn received(&mut self, offset: i64) {
        self.consumed = self.consumed.max(offset + 1);
        if offset + 1 >= self.replay_until {
            self.caught_up = true;
        }
    }

    /// The offset to commit: the earliest record not applied yet, else the next to read;
    /// `None` before anything was consumed or while a restore's re-read is not through.
    fn commit_offset(&self) -> Option<i64> {
        if !self.caught_up {
            return None;
        }
        let commit = self.buffered.front().map_or(self.consumed, |&(o, _)| o);
        (commit > 0).then_some(commit)
    }
}

impl Task {
    fn wm_max(&self, i: usize) -> Option<EventTime> {
        self.wm.max_of(i)
    }

    /// Whether every input of partition `p` is idle and read to the end the broker reported
    /// at its last statistics, with nothing left to re-read after a restore. A partition
    /// whose fetch is merely slow is not drained: records are waiting for it.
    fn drained(&self, p: i32, lag: &super::Lag) -> bool {
        self.inputs.iter().enumerate().all(|(i, inp)| {
            !self.wm.is_active(i)
                && lag.ends(&inp.topic, p).is_some_and(|e| {
                    e.high <= inp.consumed && (inp.caught_up || e.high <= e.committed)
                })
        })
    }
}

fn produce(
    producer: &super::StageProducer,
    topic: &str,
    partition: Option<i32>,
    key: &[u8],
    value: &Qualified,
) {
    let bytes = serde_json::to_vec(value).expect("serialisable");
    super::send(producer, topic, partition, Some(key), Some(&bytes), None);
}

/// Where a dead-lettered record came from.
struct Source<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    key: Option<&'a [u8]>,
}

/// A dead letter: the record as it came (its key kept, so it lands with its user's records),
/// with headers `reason`, `source_topic`, `source_partition` and `source_offset`. Redacted
/// (`engine.dead_letter`), the value is `{"reason", "sha256"}` of the record and there is no
/// key (it is the user id).
fn dead_letter(
    producer: &super::StageProducer,
    topic: &str,
    source: &Source<'_>,
    reason: Malformed,
    payload: &[u8],
    mode: crate::config::DeadLetterMode,
) {
    let redacted = (mode == crate::config::DeadLetterMode::Redacted).then(|| {
        let sha = crate::identity::to_hex(&crate::identity::sha256(payload));
        serde_json::json!({"reason": reason.as_str(), "sha256": sha}).to_string()
    });
    let (key, payload) = match &redacted {
        Some(r) => (None, r.as_bytes()),
        None => (source.key, payload),
    };
    let (partition, offset) = (source.partition.to_string(), source.offset.to_string());
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "reason",
            value: Some(reason.as_str()),
        })
        .insert(Header {
            key: "source_topic",
            value: Some(source.topic),
        })
        .insert(Header {
            key: "source_partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "source_offset",
            value: Some(offset.as_str()),
        });
    super::send(
        producer,
        topic,
        Some(source.partition),
        key,
        Some(payload),
        Some(headers),
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use rdkafka::ClientConfig;

    use super::*;
    use crate::config::duration::HumanDuration;
    use crate::config::KafkaSettings;
    use crate::kafka::wire::WATERMARK_KEY;

    /// Restored from a checkpoint that had consumed up to offset 10 with records from 6 on
    /// still buffered: until the re-read reaches offset 9 nothing is committed (committing 10
    /// would lose 6..=9 if the process died before re-reading them).
    #[test]
    fn nothing_is_committed_before_a_restore_has_re_read_what_it_had_buffered() {
        let mut inp = Input {
            topic: "in".into(),
            consumed: 10,
            replay_until: 10,
            caught_up: false,
            last_seen: Instant::now(),
            buffered: Default::default(),
        };
        assert_eq!(inp.commit_offset(), None, "right after the restore");
        inp.received(6);
        inp.buffered.push_back((6, 1_000));
        inp.received(7);
        assert_eq!(inp.commit_offset(), None, "offsets 8 and 9 not re-read yet");
        inp.received(9);
        assert_eq!(
            inp.commit_offset(),
            Some(6),
            "the earliest record not applied"
        );
        inp.buffered.pop_front();
        assert_eq!(inp.commit_offset(), Some(10));
        inp.received(12);
        assert_eq!(inp.commit_offset(), Some(13));

        let fresh = Input {
            topic: "in".into(),
            consumed: 0,
            replay_until: 0,
            caught_up: true,
            last_seen: Instant::now(),
            buffered: Default::default(),
        };
        assert_eq!(
            fresh.commit_offset(),
            None,
            "nothing consumed, nothing to commit"
        );
    }

    /// One partition's detect stage on `mock`, its topics named after `prefix`: the abandoned
    /// cart campaign (no `Charged` within 10 s), 5 s of lateness, a checkpoint a second;
    /// profiles in the events topic, or (`profiles`) a topic of their own.
    struct Bench {
        config: Arc<Config>,
        /// The events topic, and the profiles topic (the same one, or not).
        inputs: [String; 2],
        prefix: String,
    }

    impl Bench {
        fn new(
            mock: &MockCluster<'static, DefaultProducerContext>,
            prefix: &str,
            profiles: bool,
        ) -> Bench {
            let events = format!("{prefix}-in");
            let inputs = [events.clone(), format!("{prefix}-profiles")];
            let inputs = if profiles {
                inputs
            } else {
                [events.clone(), events]
            };
            for topic in ["changelog", "qualified", "dead-letter"] {
                mock.create_topic(&format!("{prefix}.{topic}"), 1, 1)
                    .unwrap();
            }
            for topic in BTreeSet::from(inputs.clone()) {
                mock.create_topic(&topic, 1, 1).unwrap();
            }
            let text = format!(
                "[engine]\nallowed_lateness = \"5s\"\n\
                 [kafka]\nbrokers = \"{}\"\nevents_topic = \"{}\"\n\
                 profiles_topic = \"{}\"\ntopic_prefix = \"{prefix}\"\n\
                 group_prefix = \"{prefix}\"\ncommit_interval = \"1s\"\n\
                 [[campaign]]\nid = \"carts\"\nname = \"Carts\"\nad_account = \"1\"\n\
                 start = \"1970-01-01T00:00:00Z\"\n\
                 [campaign.trigger]\nevent = \"Added To Cart\"\n\
                 [campaign.trigger.inaction]\nevent = \"Charged\"\nwithin = \"10s\"\n\
                 [campaign.what]\naudience = {{ existing = \"9\" }}\n\
                 identifiers = [\"email\"]\n",
                mock.bootstrap_servers(),
                inputs[0],
                inputs[1],
            );
            Bench {
                config: Arc::new(Config::parse(&text, Vec::new()).unwrap()),
                inputs,
                prefix: prefix.to_owned(),
            }
        }

        /// A fresh worker (as after a restart: its own producer and status).
        fn worker(&self, n: usize) -> State {
            let layout = super::super::Layout {
                input_partitions: 1,
                activate_partitions: 1,
            };
            let status = Arc::new(DetectStatus::default());
            let clock = Arc::new(crate::clock::SystemClock);
            State::new(self.config.clone(), layout, status, n, clock).unwrap()
        }

        /// The topic a line goes to: profiles to the profiles topic.
        fn topic_of(&self, line: &str) -> &str {
            &self.inputs[usize::from(line.contains(r#""type":"profile""#))]
        }

        /// Hands `line`, at `offset` of its topic, to `st`.
        fn take(&self, st: &mut State, offset: usize, line: &str) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = v["user_id"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            let topic = self.topic_of(line);
            st.on_message(topic, 0, offset as i64, None, Some(&key), line.as_bytes());
        }

        /// Every record of `topic` (by suffix) but the watermark markers, as values.
        fn values(&self, topic: &str) -> BTreeSet<String> {
            let k = self.config.kafka.as_ref().unwrap();
            let mut values = BTreeSet::new();
            let topic = format!("{}.{topic}", self.prefix);
            let group = format!("{}-check-{topic}", self.prefix);
            super::super::scan(k, &group, &topic, 0, |key, value| {
                if key != Some(WATERMARK_KEY) {
                    values.insert(String::from_utf8(value.unwrap().to_vec()).unwrap());
                }
            })
            .unwrap();
            values
        }
    }

    /// An `Added To Cart` line of `user` at `ts`.
    fn cart(user: &str, ts: i64) -> String {
        format!(r#"{{"user_id":"{user}","event":"Added To Cart","ts":{ts}}}"#)
    }

    /// What happens after a record is taken.
    #[derive(Debug, Clone, Copy)]
    enum End {
        /// Not an end: a poll that found nothing (the stage advances and commits).
        Idle,
        /// Revoked: a checkpoint, a commit, and the next owner restores.
        Revoke,
        /// Killed: nothing more is written (its producer's queue is purged) and the next
        /// owner restores from what was, reading from the last commit.
        Crash,
    }

    /// Runs `input` through owners of the partition that end as `plan` says (after the
    /// record at each place), a poll round between two records (50 ms apart on the
    /// stage's clock, so that a checkpoint comes every 20 records), then a record an
    /// hour later and the way out. A new owner reads each topic from its last commit, in
    /// the order of `input`. Returns the qualifications and the dead letters.
    fn run_through(
        bench: &Bench,
        input: &[String],
        plan: &BTreeMap<usize, End>,
    ) -> (BTreeSet<String>, BTreeSet<String>) {
        // Each line's offset in its topic.
        let mut next: BTreeMap<&str, usize> = BTreeMap::new();
        let offsets: Vec<usize> = (input.iter())
            .map(|l| {
                let n = next.entry(bench.topic_of(l)).or_default();
                *n += 1;
                *n - 1
            })
            .collect();
        let only = BTreeSet::from([0]);
        let mut owners = 0;
        let mut st = bench.worker(owners);
        st.assign(&[0]).unwrap();
        let mut committed: BTreeMap<String, usize> = BTreeMap::new();
        let (mut now, mut i) = (Instant::now(), 0usize);
        let commit = |offsets: &[(String, i32, i64)], committed: &mut BTreeMap<String, usize>| {
            for (topic, _, o) in offsets {
                committed.insert(topic.clone(), *o as usize);
            }
        };
        let mut ended = BTreeSet::new();
        while i < input.len() {
            let (line, offset) = (&input[i], offsets[i]);
            i += 1;
            if offset < committed.get(bench.topic_of(line)).copied().unwrap_or(0) {
                continue;
            }
            bench.take(&mut st, offset, line);
            now += Duration::from_millis(50);
            let round = st.round(true, now).unwrap();
            commit(&round.commit, &mut committed);
            let Some(end) = plan.get(&i) else {
                continue;
            };
            match end {
                End::Idle => {
                    let round = st.round(false, now).unwrap();
                    commit(&round.commit, &mut committed);
                    continue;
                }
                _ if !ended.insert(i) => continue,
                End::Revoke => {
                    let offsets = st.durable(Some(&only)).unwrap();
                    commit(&offsets, &mut committed);
                    st.revoked(&only);
                    drop(st);
                }
                End::Crash => drop(st),
            }
            owners += 1;
            st = bench.worker(owners);
            st.assign(&[0]).unwrap();
            now = Instant::now();
            i = 0;
        }
        let marker = r#"{"user_id":"marker","event":"Marker","ts":1700003600000}"#;
        bench.take(&mut st, next[bench.topic_of(marker)], marker);
        st.durable(None).unwrap();
        (bench.values("qualified"), bench.values("dead-letter"))
    }

    /// Checkpoints, revocations and crashes at random points of a partition's input (with
    /// records out of order, some late; profiles in the events topic or in their own): the
    /// qualifications (with their users' hashed emails) and the dead letters are those of
    /// one owner that was never interrupted (duplicates aside, which activate drops).
    /// `REMARKET_RESTART_CASES` cases (default 6), `REMARKET_RESTART_SEED` repeats them.
    #[test]
    fn revocations_and_crashes_anywhere_change_no_qualification() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        let cases: u64 = std::env::var("REMARKET_RESTART_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6);
        let first: u64 = std::env::var("REMARKET_RESTART_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| fastrand::u64(..));
        for seed in (0..cases).map(|c| first.wrapping_add(c)) {
            let mut rng = fastrand::Rng::with_seed(seed);
            // 24 users, 200 records about 400 ms apart, most up to 4.5 s early (within the
            // 5 s of lateness), one in ten 6 to 9 s early (late); one in six a `Charged`,
            // one in eight a profile with the user's email.
            let mut t = 1_700_000_000_000i64;
            let input: Vec<String> = (0..200)
                .map(|_| {
                    t += rng.i64(100..700);
                    let early = match rng.u8(0..10) {
                        0 => rng.i64(6_000..9_000),
                        _ => rng.i64(0..4_500),
                    };
                    let ts = t - early;
                    let user = rng.u8(0..24);
                    match rng.u8(0..24) {
                        0..=2 => format!(
                            r#"{{"user_id":"u{user}","type":"profile","ts":{ts},"props":{{"email":"u{user}@example.com"}}}}"#
                        ),
                        3..=6 => format!(r#"{{"user_id":"u{user}","event":"Charged","ts":{ts}}}"#),
                        _ => format!(r#"{{"user_id":"u{user}","event":"Added To Cart","ts":{ts}}}"#),
                    }
                })
                .collect();
            let mut plan: BTreeMap<usize, End> = (0..40)
                .map(|_| (rng.usize(1..input.len()), End::Idle))
                .collect();
            for _ in 0..rng.usize(1..6) {
                let end = if rng.bool() { End::Revoke } else { End::Crash };
                plan.insert(rng.usize(1..input.len()), end);
            }
            let profiles = seed % 2 == 1;
            let bench = |name: &str| Bench::new(&mock, &format!("{name}{seed}"), profiles);
            let want = run_through(&bench("a"), &input, &BTreeMap::new());
            let got = run_through(&bench("b"), &input, &plan);
            // (With a topic of their own, the sparse profiles hold the watermark back: few
            // records are late, and maybe none.)
            assert!(
                !want.0.is_empty() && (profiles || !want.1.is_empty()),
                "seed {seed}: {} qualifications, {} dead letters",
                want.0.len(),
                want.1.len()
            );
            assert!(
                want.0.iter().any(|q| q.contains("email_sha256")),
                "seed {seed}: some qualified user has an email"
            );
            for (what, got, want) in [
                ("qualifications", &got.0, &want.0),
                ("dead letters", &got.1, &want.1),
            ] {
                let differ: Vec<_> = got.symmetric_difference(want).collect();
                assert!(
                    differ.is_empty(),
                    "{what} differ, seed {seed}, profiles topic {profiles}, plan {plan:?}: {differ:?}"
                );
            }
        }
    }

    /// A partition revoked while records wait in its shard (ahead of the shard's watermark,
    /// within the lateness): its next owner re-reads them and applies them, as the first
    /// owner would have. None is late against the restored watermark, and every trigger
    /// qualifies once.
    #[test]
    fn records_buffered_at_a_revocation_are_applied_by_the_next_owner() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        let bench = Bench::new(&mock, "t", false);
        // `a` at 10 s, then `b` at 20 s: the watermark is 14.999 s, and no advance round has
        // run yet (it comes every 1,024 records).
        let input = [cart("a", 10_000), cart("b", 20_000), cart("c", 100_000)];
        let only = BTreeSet::from([0]);

        let mut first = bench.worker(0);
        first.assign(&[0]).unwrap();
        bench.take(&mut first, 0, &input[0]);
        bench.take(&mut first, 1, &input[1]);
        let committed = first.durable(Some(&only)).unwrap();
        first.revoked(&only);
        let from = committed.first().map_or(0, |&(_, _, o)| o) as usize;
        assert!(from <= 1, "`b` is not applied yet: {committed:?}");

        // The next owner, from the committed offset; `c` carries the watermark past both
        // windows (10 s each).
        let mut second = bench.worker(1);
        second.assign(&[0]).unwrap();
        for (offset, line) in input.iter().enumerate().skip(from) {
            bench.take(&mut second, offset, line);
        }
        second.durable(None).unwrap();

        let late = first.totals.late_dropped + second.totals.late_dropped;
        assert_eq!(late, 0, "no record is late");
        let users: Vec<String> = (bench.values("qualified").iter())
            .map(|v| serde_json::from_str::<serde_json::Value>(v).unwrap()["user"].to_string())
            .collect();
        assert_eq!(users, [r#""a""#, r#""b""#], "each window qualifies once");
        assert!(
            bench.values("dead-letter").is_empty(),
            "nothing is dead-lettered"
        );
    }

    /// A checkpoint of many changed users: its snapshots go to the changelog on the writer's
    /// thread while the stage takes more records, its offsets are committed only once its
    /// snapshots and checkpoint record are written, and a crash right after that commit
    /// restores every user of the checkpoint, as it was.
    #[test]
    fn a_checkpoint_handed_to_the_writer_is_committed_only_once_written() {
        const USERS: usize = 20_000;
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        let bench = Bench::new(&mock, "w", false);
        let cart = |u: usize| cart(&format!("u{u}"), u as i64 * 10);
        let mut st = bench.worker(0);
        st.assign(&[0]).unwrap();
        for u in 0..USERS {
            bench.take(&mut st, u, &cart(u));
        }
        // The round a second on checkpoints, and the state it checkpointed.
        let at = Instant::now() + Duration::from_secs(1);
        let round = st.round(true, at).unwrap();
        assert!(round.commit.is_empty(), "nothing is written yet");
        assert_eq!(st.unwritten.len(), 1, "the checkpoint is on its way");
        let shard = &st.tasks[&0].shard;
        let want = (shard.users(), shard.watermark(), shard.snapshot());
        assert!(want.0 > USERS / 2, "a large checkpoint: {} users", want.0);
        // Consumption goes on; these records come after the checkpoint.
        for u in USERS..USERS + 10 {
            bench.take(&mut st, u, &cart(u));
        }
        // Idle rounds at the checkpoint's time (no new checkpoint) until it is committed.
        let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
        let commit = loop {
            let round = st.round(false, at).unwrap();
            if !round.commit.is_empty() {
                break round.commit;
            }
            assert!(
                std::time::SystemTime::now() < deadline,
                "no commit within a minute"
            );
            std::thread::yield_now();
        };
        assert_eq!(commit.len(), 1, "{commit:?}");
        let (_, _, offset) = &commit[0];
        assert!(
            (*offset as usize) <= USERS,
            "only what the checkpoint covers is committed: {commit:?}"
        );
        drop(st);

        let k = bench.config.kafka.as_ref().unwrap();
        let (restored, checkpoint, users) =
            restore_shard(k, bench.worker(1).rules.clone(), "w.changelog", 0).unwrap();
        let checkpoint = checkpoint.expect("the checkpoint record is written");
        assert_eq!(users, want.0, "every user of the checkpoint");
        assert_eq!(checkpoint.watermark, want.1);
        assert!(
            restored.snapshot() == want.2,
            "each user as the checkpoint had it"
        );
    }

    /// While a checkpoint is being written (here: the broker is down), the next one falling
    /// due is postponed and the round returns; once the broker is back, the first is
    /// committed and the postponed one taken.
    #[test]
    fn a_checkpoint_due_while_the_previous_is_written_waits_for_a_later_round() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        let bench = Bench::new(&mock, "p", false);
        let mut st = bench.worker(0);
        st.assign(&[0]).unwrap();
        // `a` is applied at the checkpoint (the watermark is 95 s), `b` stays buffered.
        bench.take(&mut st, 0, &cart("a", 10_000));
        bench.take(&mut st, 1, &cart("b", 100_000));
        mock.broker_down(1).unwrap();
        let t = Instant::now();
        let round = st.round(true, t + Duration::from_secs(1)).unwrap();
        assert!(round.commit.is_empty());
        assert_eq!(
            st.unwritten.len(),
            1,
            "the first checkpoint is with the writer"
        );
        bench.take(&mut st, 2, &cart("c", 200_000));
        let due = t + Duration::from_millis(2_500);
        let round = st.round(true, due).unwrap();
        assert!(round.commit.is_empty());
        assert_eq!(st.pace.postponed, 1, "the second checkpoint waits");
        assert_eq!(st.unwritten.len(), 1, "and is not queued");

        mock.broker_up(1).unwrap();
        let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
        let mut committed = Vec::new();
        while st.pace.last_checkpoint < due {
            committed.extend(st.round(false, due).unwrap().commit);
            assert!(
                std::time::SystemTime::now() < deadline,
                "the postponed checkpoint was not taken within a minute"
            );
            std::thread::yield_now();
        }
        assert_eq!(st.pace.postponed, 0);
        let last = st.durable(None).unwrap();
        committed.extend(last);
        // (The first checkpoint's offset, 1 — `b` is buffered —, may be committed on its own
        // or merged into a later one's.)
        let offsets: Vec<i64> = committed.iter().map(|&(_, _, o)| o).collect();
        assert!(offsets.iter().all(|&o| o == 1 || o == 2), "{offsets:?}");
        assert_eq!(
            offsets.last(),
            Some(&2),
            "everything is committed: {offsets:?}"
        );
    }

    /// A crash between a checkpoint's snapshots and its checkpoint record: on restore, the
    /// snapshots written after the last checkpoint record are set aside (their records are
    /// re-read from the checkpoint's positions), those before it are the state.
    #[test]
    fn restore_takes_the_changelog_as_of_its_last_checkpoint_record() {
        let mock: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).unwrap();
        mock.create_topic("changelog", 1, 1).unwrap();
        let k = KafkaSettings {
            brokers: mock.bootstrap_servers(),
            group_prefix: "t".into(),
            events_topic: "in".into(),
            profiles_topic: "in".into(),
            topic_prefix: "t".into(),
            partitions: 0,
            replication: 1,
            commit_interval: HumanDuration::parse("1s").unwrap(),
            client: Vec::new(),
        };
        let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .create()
            .unwrap();
        let mark = |w: i64, consumed: i64| {
            serde_json::to_vec(&Checkpoint {
                past_rules: None,
                watermark: w,
                inputs: vec![InputMark {
                    topic: "in".into(),
                    max_ts: Some(w),
                    consumed,
                }],
            })
            .unwrap()
        };
        let write = |log: &[(&[u8], Option<Vec<u8>>)]| {
            for (key, value) in log {
                let mut r = BaseRecord::<[u8], Vec<u8>>::to("changelog")
                    .partition(0)
                    .key(*key);
                if let Some(v) = value {
                    r = r.payload(v);
                }
                producer.send(r).map_err(|(e, _)| e).unwrap();
            }
            producer.flush(Duration::from_secs(10)).unwrap();
        };
        let as_text = |state: Snapshots| {
            let mut got: Vec<(String, Option<String>)> = state
                .into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8(k).unwrap(),
                        v.map(|v| String::from_utf8(v).unwrap()),
                    )
                })
                .collect();
            got.sort();
            got
        };
        let log: Vec<(&[u8], Option<Vec<u8>>)> = vec![
            (b"a", Some(b"a1".to_vec())),
            (b"b", Some(b"b1".to_vec())),
            (CHECKPOINT_KEY, Some(mark(100, 10))),
            (b"a", Some(b"a2".to_vec())),
            (b"c", None),
            (CHECKPOINT_KEY, Some(mark(200, 20))),
            // The next checkpoint's snapshots, its checkpoint record never written.
            (b"a", Some(b"a3".to_vec())),
            (b"b", None),
            (b"d", Some(b"d1".to_vec())),
        ];
        write(&log);

        let (state, checkpoint, set_aside) = read_checkpointed(&k, "changelog", 0).unwrap();
        let checkpoint = checkpoint.expect("a checkpoint");
        assert_eq!(checkpoint.watermark, 200);
        assert_eq!(checkpoint.inputs[0].consumed, 20);
        assert_eq!(
            as_text(state),
            [
                ("a".to_owned(), Some("a2".to_owned())),
                ("b".to_owned(), Some("b1".to_owned())),
                ("c".to_owned(), None),
            ]
        );
        let mut set_aside: Vec<_> = set_aside.into_keys().collect();
        set_aside.sort();
        assert_eq!(set_aside, [b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);

        // The next owner's repair (the set-aside keys as of the checkpoint, and the
        // checkpoint record), then a checkpoint of its own that touches only `e`: the
        // set-aside snapshots stay set aside.
        let log: Vec<(&[u8], Option<Vec<u8>>)> = vec![
            (b"a", Some(b"a2".to_vec())),
            (b"b", Some(b"b1".to_vec())),
            (b"d", None),
            (CHECKPOINT_KEY, Some(mark(200, 20))),
            (b"e", Some(b"e1".to_vec())),
            (CHECKPOINT_KEY, Some(mark(300, 30))),
        ];
        write(&log);
        let (state, checkpoint, set_aside) = read_checkpointed(&k, "changelog", 0).unwrap();
        assert_eq!(checkpoint.unwrap().watermark, 300);
        assert!(set_aside.is_empty());
        assert_eq!(
            as_text(state),
            [
                ("a".to_owned(), Some("a2".to_owned())),
                ("b".to_owned(), Some("b1".to_owned())),
                ("c".to_owned(), None),
                ("d".to_owned(), None),
                ("e".to_owned(), Some("e1".to_owned())),
            ]
        );
    }
}
