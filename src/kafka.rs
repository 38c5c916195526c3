//! `remarket run` over Kafka: client configuration, topic set-up, and the two stages as
//! consumer groups — [`detect`] (events and profiles → per-partition state machines →
//! qualified topic, state changelog) and [`activate`] (qualified → decisions → TikTok).
//!
//! Topics (names from `[kafka]`): the inputs `events_topic` and `profiles_topic`, which must be
//! co-partitioned by user id (equal partition counts, same partitioner); internal
//! `<prefix>.changelog` (compacted, partitioned like the inputs: key user id, value the user's
//! state snapshot, tombstone when it empties, plus one checkpoint record per partition),
//! `<prefix>.qualified` (key campaign id), `<prefix>.decisions` (compacted, partitioned like
//! qualified: key `campaign/user`), `<prefix>.audiences` (compacted, one partition: the
//! audience each campaign writes to), `<prefix>.campaigns` (compacted, one partition: the
//! campaign store, [`campaigns`]) and `<prefix>.dead-letter`.

pub mod activate;
pub mod audiences;
pub mod campaigns;
pub mod detect;
pub mod erase;
pub mod reports;
pub mod stage;
pub mod wire;

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::KafkaSettings;

/// The kind of librdkafka client a configuration is for: `[kafka.client]` settings that
/// librdkafka documents for consumers only are not given to producers, and the other way
/// round (each would log a configuration warning at every start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Consumer,
    Producer,
    /// Admin and metadata clients: neither consumer nor producer properties.
    Admin,
}

/// Properties librdkafka marks `C` (consumer only) in its CONFIGURATION.md (v2.12.1).
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// Properties librdkafka marks `P` (producer only) in its CONFIGURATION.md (v2.12.1).
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

impl Role {
    /// Whether librdkafka property `key` applies to this kind of client.
    pub fn applies(self, key: &str) -> bool {
        let consumer = CONSUMER_ONLY.contains(&key);
        let producer = PRODUCER_ONLY.contains(&key);
        match self {
            Role::Consumer => !producer,
            Role::Producer => !consumer,
            Role::Admin => !consumer && !producer,
        }
    }
}

/// A client configuration with the brokers and the pass-through properties that apply to
/// `role`.
pub fn client_config(k: &KafkaSettings, role: Role) -> ClientConfig {
    tuned_config(k, role, &[])
}

/// `defaults`, then the `[kafka.client]` settings (which win over them), each only where it
/// applies to `role`.
fn tuned_config(k: &KafkaSettings, role: Role, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    for (key, v) in defaults.iter().filter(|(key, _)| role.applies(key)) {
        c.set(*key, *v);
    }
    for (key, v) in k.client.iter().filter(|(key, _)| role.applies(key)) {
        c.set(key, v.expose());
    }
    c
}

/// Fetch sizes for reading a topic at speed (inputs and changelog restores): up to 16 MiB a
/// partition per fetch instead of librdkafka's 1 MiB, which left the consumer waiting on
/// round trips (restore read 2.4 s → 0.8 s for 23 MB, `cargo bench --bench kafka`).
const FAST_FETCH: [(&str, &str); 2] = [
    ("max.partition.fetch.bytes", "16777216"),
    ("fetch.max.bytes", "67108864"),
];

/// A stage's consumer lag per `(topic, partition)`: records between the position and the end
/// of the partition, as librdkafka's statistics report it (every `statistics.interval.ms`),
/// over all the stage's consumers (detect has one per worker).
#[derive(Debug, Default)]
pub struct Lag {
    by_client: std::sync::Mutex<BTreeMap<String, PartitionLag>>,
    /// Per client too, so that partitions it no longer fetches disappear.
    ends: std::sync::Mutex<BTreeMap<String, PartitionEnds>>,
}

/// Lag per `(topic, partition)`.
pub type PartitionLag = BTreeMap<(String, i32), i64>;

/// [`Ends`] per `(topic, partition)`.
pub type PartitionEnds = BTreeMap<(String, i32), Ends>;

/// Where a partition stood at the last statistics: the broker's end of the log (the offset
/// the next record written gets) and the group's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    pub high: i64,
    pub committed: i64,
}

impl Lag {
    /// Replaces the figures of the consumer that sent `stats` (partitions it no longer owns
    /// disappear).
    pub fn update(&self, stats: &rdkafka::Statistics) {
        let active = || {
            stats.topics.iter().flat_map(|(topic, t)| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.fetch_state == "active")
                    .map(move |p| (topic, p))
            })
        };
        let fresh: PartitionLag = active()
            .filter(|(_, p)| p.consumer_lag >= 0)
            .map(|(topic, p)| ((topic.clone(), p.partition), p.consumer_lag))
            .collect();
        let ends = active()
            .filter(|(_, p)| p.hi_offset >= 0)
            .map(|(topic, p)| {
                let e = Ends {
                    high: p.hi_offset,
                    committed: p.committed_offset,
                };
                ((topic.clone(), p.partition), e)
            })
            .collect();
        self.ends
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stats.name.clone(), ends);
        self.by_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stats.name.clone(), fresh);
    }

    /// The current figures.
    pub fn get(&self) -> PartitionLag {
        let by_client = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        by_client
            .values()
            .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), *v)))
            .collect()
    }

    /// Where `(topic, partition)` stood at the last statistics that reported it fetching.
    pub fn ends(&self, topic: &str, partition: i32) -> Option<Ends> {
        let by_client = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        let key = (topic.to_owned(), partition);
        by_client.values().find_map(|m| m.get(&key).copied())
    }
}

/// The producer of the stages, whose context counts records that were never written.
pub type StageProducer = rdkafka::producer::ThreadedProducer<DeliveryGuard>;

/// Counts records the producer gave up on (delivery failed after librdkafka's retries, or the
/// send was refused). A stage must not commit input offsets once one was lost:
/// [`flush_durable`] and [`DeliveryGuard::written_through`] turn any into [`LostWrites`], and
/// the stages exit on it, so that a restart resumes from the last commit, whose records were
/// all written.
///
/// It also tells when the records sent before a point are all written, without a flush: every
/// record [`send`] hands over is tagged with the current *epoch*; [`DeliveryGuard::seal`] ends
/// an epoch, and [`DeliveryGuard::written_through`] says whether every record of that epoch
/// and the earlier ones has been acknowledged. The detect stage commits a checkpoint's offsets
/// that way while it goes on consuming.
#[derive(Debug, Default)]
pub struct DeliveryGuard {
    lost: std::sync::atomic::AtomicU64,
    epoch: std::sync::atomic::AtomicU64,
    /// Per epoch, records handed to librdkafka and not yet reported (absent when none).
    outstanding: std::sync::Mutex<BTreeMap<u64, u64>>,
}

impl DeliveryGuard {
    /// Records lost so far.
    pub fn lost(&self) -> u64 {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts a record the caller could not hand to the producer.
    pub fn refused(&self) {
        self.lost.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Ends the current epoch (records sent from now on belong to the next) and returns it.
    pub fn seal(&self) -> u64 {
        self.epoch
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether every record sent in `epoch` or before was written; an error once any record
    /// was lost (then nothing after it may be committed).
    pub fn written_through(&self, epoch: u64) -> Result<bool, LostWrites> {
        match self.lost() {
            0 => Ok(self.outstanding().range(..=epoch).next().is_none()),
            n => Err(LostWrites(n)),
        }
    }

    fn outstanding(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        self.outstanding.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A record of the current epoch is being handed over: its tag.
    fn sending(&self) -> usize {
        // The epoch is read under the lock, so that a thread sealing it and then asking
        // [`DeliveryGuard::written_through`] never misses a record another thread is
        // registering (the checkpoint writer sends beside the detect thread).
        let mut out = self.outstanding();
        let epoch = self.epoch.load(std::sync::atomic::Ordering::SeqCst);
        *out.entry(epoch).or_default() += 1;
        epoch as usize
    }

    /// A record of `epoch` was written, lost, or never handed over.
    fn settled(&self, epoch: usize) {
        let mut out = self.outstanding();
        if let std::collections::btree_map::Entry::Occupied(mut n) = out.entry(epoch as u64) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
    }
}

impl rdkafka::ClientContext for DeliveryGuard {}

impl rdkafka::producer::ProducerContext for DeliveryGuard {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, epoch: usize) {
        if let Err((e, m)) = result {
            use rdkafka::Message as _;
            self.refused();
            // The topic and error only: keys and payloads may carry user ids.
            tracing::error!(error = %e, topic = m.topic(), "a record was not written to Kafka");
        }
        self.settled(epoch);
    }
}

/// Times a send found librdkafka's queue full and waited 10 ms (the detect stage logs it).
pub(crate) static QUEUE_FULL_WAITS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// Produces one record, waiting while the producer's queue is full (backpressure, never a
/// drop); a record librdkafka refuses is logged (topic and error only) and counted as lost.
pub(crate) fn send(
    producer: &StageProducer,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: Option<rdkafka::message::OwnedHeaders>,
) {
    use rdkafka::producer::{BaseRecord, Producer as _};
    let guard = producer.context();
    let mut rec: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(topic, guard.sending());
    rec.partition = partition;
    rec.key = key;
    rec.payload = value;
    rec.headers = headers;
    loop {
        match producer.send(rec) {
            Ok(()) => return,
            Err((
                KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                back,
            )) => {
                rec = back;
                QUEUE_FULL_WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((e, back)) => {
                tracing::error!(error = %e, topic, "produce failed");
                guard.refused();
                guard.settled(back.delivery_opaque);
                return;
            }
        }
    }
}

/// Records were lost on the way to Kafka: committing now would skip them.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} record(s) could not be written to Kafka; stopping without committing, so that a \
     restart resumes from the last commit"
)]
pub struct LostWrites(pub u64);

/// Waits until every record sent so far is acknowledged and none was lost.
pub fn flush_durable(producer: &StageProducer) -> Result<(), stage::StageError> {
    use rdkafka::producer::Producer as _;
    producer.flush(Duration::from_secs(30))?;
    match producer.context().lost() {
        0 => Ok(()),
        n => Err(LostWrites(n).into()),
    }
}

/// The producer of the stages: acknowledged by every in-sync replica, batched for up to
/// 20 ms, with room for 2 M queued records. `[kafka.client]` may override all three.
pub fn producer(k: &KafkaSettings) -> rdkafka::error::KafkaResult<StageProducer> {
    // A checkpoint hands librdkafka every changed user at once (300 k and more under load);
    // the default queue of 100 000 records made it wait.
    let defaults = [
        ("linger.ms", "20"),
        ("acks", "all"),
        ("queue.buffering.max.messages", "2000000"),
    ];
    tuned_config(k, Role::Producer, &defaults).create_with_context(DeliveryGuard::default())
}

/// A stage's consumer: group `<group_prefix>-<stage>`, cooperative-sticky assignment, offsets
/// committed only by the stage (never automatically), from the beginning when none is.
pub fn group_consumer<C: rdkafka::consumer::ConsumerContext>(
    k: &KafkaSettings,
    stage: &str,
    ctx: C,
) -> rdkafka::error::KafkaResult<BaseConsumer<C>> {
    // Statistics feed the consumer-lag gauge of `/metrics`.
    let defaults = [
        FAST_FETCH[0],
        FAST_FETCH[1],
        ("statistics.interval.ms", "5000"),
        // Once `queued.min.messages` (100 000) are prefetched, librdkafka postpones the
        // partition's next fetch by this much (default 1 s), while a busy stage drains them
        // in a fifth of that and then waits: the detect stage idled ~70 % of the time and
        // consumed 140 k records/s instead of 420 k (`cargo bench --bench kafka`).
        ("fetch.queue.backoff.ms", "10"),
    ];
    tuned_config(k, Role::Consumer, &defaults)
        .set("group.id", k.group(stage))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create_with_context(ctx)
}

/// Reads partition `p` of `topic` from its beginning to its end, keyed last-value-wins
/// (`None` = a tombstone): how every changelog is restored. The end is the consumer's
/// end-of-partition signal, not a ListOffsets answer (tansu 0.6 answers that one wrongly).
pub fn read_to_end(
    k: &KafkaSettings,
    group: &str,
    topic: &str,
    p: i32,
) -> anyhow::Result<rustc_hash::FxHashMap<Vec<u8>, Option<Vec<u8>>>> {
    let mut latest = rustc_hash::FxHashMap::default();
    scan(k, group, topic, p, |key, value| {
        if let Some(key) = key {
            keep_latest(&mut latest, key, value);
        }
    })?;
    Ok(latest)
}

/// Records `value` (`None`: a tombstone) as `key`'s latest. An uncompacted changelog holds
/// many versions of a key: the buffer is overwritten in place.
pub fn keep_latest(
    latest: &mut rustc_hash::FxHashMap<Vec<u8>, Option<Vec<u8>>>,
    key: &[u8],
    value: Option<&[u8]>,
) {
    match (latest.get_mut(key), value) {
        (Some(Some(old)), Some(v)) => {
            old.clear();
            old.extend_from_slice(v);
        }
        (Some(slot), v) => *slot = v.map(<[u8]>::to_vec),
        (None, v) => {
            latest.insert(key.to_vec(), v.map(<[u8]>::to_vec));
        }
    }
}

/// Hands every record of partition `p` of `topic`, from its beginning to its end and in
/// order, to `each(key, value)`.
pub fn scan(
    k: &KafkaSettings,
    group: &str,
    topic: &str,
    p: i32,
    mut each: impl FnMut(Option<&[u8]>, Option<&[u8]>),
) -> anyhow::Result<()> {
    scan_records(k, group, topic, p, None, i64::MAX, |m| {
        each(m.key(), m.payload())
    })
}

/// The first offset of partition `p` of `topic` whose Kafka timestamp is at or after
/// `ts_ms` (ListOffsets by timestamp); `None` when the broker has none (every record is
/// older) or does not answer.
pub fn offset_for_time(
    k: &KafkaSettings,
    group: &str,
    topic: &str,
    p: i32,
    ts_ms: i64,
) -> anyhow::Result<Option<i64>> {
    let reader: BaseConsumer<EofIsNoError> = tuned_config(k, Role::Consumer, &FAST_FETCH)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(EofIsNoError)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Offset(ts_ms))?;
    let answer = reader.offsets_for_times(tpl, Duration::from_secs(10))?;
    close_in_background(reader);
    Ok(match answer.find_partition(topic, p).map(|e| e.offset()) {
        Some(Offset::Offset(o)) if o >= 0 => Some(o),
        _ => None,
    })
}

/// Hands the records of partition `p` of `topic` below offset `until`, from offset `from`
/// (`None`: the partition's beginning, the oldest record retention kept) and in order, to
/// `each`; stops at `until` or at the end.
pub fn scan_records(
    k: &KafkaSettings,
    group: &str,
    topic: &str,
    p: i32,
    from: Option<i64>,
    until: i64,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let reader: BaseConsumer<EofIsNoError> = tuned_config(k, Role::Consumer, &FAST_FETCH)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // The end is reached by an empty fetch: do not let the broker hold it.
        .set("fetch.wait.max.ms", "10")
        .create_with_context(EofIsNoError)?;
    // With the partition's leader known before the assignment, librdkafka asks for the
    // beginning offset at once instead of on its retry timer (~0.45 s per reader).
    reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let start = from.map_or(Offset::Beginning, Offset::Offset);
    tpl.add_partition_offset(topic, p, start)?;
    reader.assign(&tpl)?;
    let mut records = 0u64;
    let done = |records: u64| {
        tracing::debug!(
            topic,
            partition = p,
            records,
            took_ms = started.elapsed().as_millis() as u64,
            "read to the end"
        );
    };
    loop {
        match reader.poll(Duration::from_secs(30)) {
            Some(Ok(m)) => {
                if m.offset() >= until {
                    done(records);
                    close_in_background(reader);
                    return Ok(());
                }
                if records == 0 {
                    tracing::debug!(
                        topic,
                        partition = p,
                        first_record_ms = started.elapsed().as_millis() as u64,
                        "reading"
                    );
                }
                records += 1;
                each(&m);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {
                done(records);
                close_in_background(reader);
                return Ok(());
            }
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("{topic}/{p}: no answer within 30 s while reading"),
        }
    }
}

/// The context of readers that stop at the end of a partition: librdkafka also reports that
/// end as a client error, which rdkafka's default context would log as an ERROR.
struct EofIsNoError;

impl rdkafka::ClientContext for EofIsNoError {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = rdkafka::types::RDKafkaErrorCode::PartitionEOF;
        if !matches!(error, KafkaError::PartitionEOF(_)) && error.rdkafka_error_code() != Some(eof)
        {
            tracing::error!(error = %error, reason, "librdkafka error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EofIsNoError {}

/// Drops a librdkafka client on a thread of its own: destroying one waits ~100 ms for its
/// internal threads, which made every restore (and start-up) that much longer.
fn close_in_background<T: Send + 'static>(client: T) {
    let spawned = std::thread::Builder::new()
        .name("rdkafka-close".into())
        .spawn(move || drop(client));
    if let Err(e) = spawned {
        tracing::debug!(error = %e, "closing a Kafka client in place");
    }
}

/// Partition counts of every topic the cluster has (one metadata request).
/// The `[kafka]` section a stage runs with.
pub fn settings(config: &crate::config::Config) -> anyhow::Result<KafkaSettings> {
    config
        .kafka
        .clone()
        .ok_or_else(|| anyhow::anyhow!("[kafka] is not configured"))
}

/// The cluster's topics and their partition counts (one metadata request, up to 10 s): also
/// the check that the brokers are reachable.
pub fn partition_counts(k: &KafkaSettings) -> anyhow::Result<BTreeMap<String, usize>> {
    let consumer: BaseConsumer = client_config(k, Role::Admin).create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let counts = md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect();
    drop(md);
    close_in_background(consumer);
    Ok(counts)
}

/// The topic layout of a running service.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Partitions of the inputs (= detect tasks, = changelog partitions).
    pub input_partitions: usize,
    /// Partitions of qualified and decisions.
    pub activate_partitions: usize,
}

/// An internal topic: name, partitions, topic configuration.
type TopicSpec<'a> = (String, usize, &'a [(&'a str, &'a str)]);

/// Checks the inputs against the cluster's topics (`existing`, from [`partition_counts`]) and
/// creates missing internal topics.
pub async fn ensure_topics(
    k: &KafkaSettings,
    existing: BTreeMap<String, usize>,
) -> anyhow::Result<Layout> {
    let count = |topic: &str| existing.get(topic).copied();
    let events = count(&k.events_topic)
        .ok_or_else(|| anyhow::anyhow!("input topic {:?} does not exist", k.events_topic))?;
    let profiles = count(&k.profiles_topic)
        .ok_or_else(|| anyhow::anyhow!("input topic {:?} does not exist", k.profiles_topic))?;
    if events != profiles {
        anyhow::bail!(
            "topics {:?} ({events} partitions) and {:?} ({profiles} partitions) must be \
             co-partitioned by user id: their partition counts differ",
            k.events_topic,
            k.profiles_topic
        );
    }
    let activate = if k.partitions > 0 {
        k.partitions as usize
    } else {
        events
    };
    let compact = [("cleanup.policy", "compact")];
    let wanted: [TopicSpec; 7] = [
        (k.topic("changelog"), events, &compact),
        (k.topic("qualified"), activate, &[]),
        (k.topic("decisions"), activate, &compact),
        (k.topic("audiences"), 1, &compact),
        (k.topic("campaigns"), 1, &compact),
        (k.topic("reports"), 1, &compact),
        (k.topic("dead-letter"), events, &[]),
    ];
    let mut missing = Vec::new();
    for (name, partitions, config) in wanted.iter() {
        match count(name) {
            Some(n) if n == *partitions => continue,
            Some(n) => anyhow::bail!(
                "internal topic {name:?} has {n} partitions, expected {partitions}: it was made \
                 for another layout"
            ),
            None => {}
        }
        let mut t = NewTopic::new(
            name,
            *partitions as i32,
            TopicReplication::Fixed(k.replication),
        );
        for (key, v) in config.iter() {
            t = t.set(key, v);
        }
        missing.push(t);
    }
    if !missing.is_empty() {
        // All in one request.
        let admin: AdminClient<DefaultClientContext> = client_config(k, Role::Admin).create()?;
        let res = admin
            .create_topics(
                &missing,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await?;
        for r in res {
            match r {
                Ok(name) => tracing::info!(topic = %name, "created topic"),
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => anyhow::bail!("cannot create topic {t:?}: {e}"),
            }
        }
        close_in_background(admin);
    }
    Ok(Layout {
        input_partitions: events,
        activate_partitions: activate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_is_written_once_it_and_every_earlier_one_are_settled() {
        let g = DeliveryGuard::default();
        let a = g.sending();
        let first = g.seal();
        let b = g.sending();
        let c = g.sending();
        let second = g.seal();
        assert_eq!((a, b, c), (0, 1, 1));
        assert!(!g.written_through(first).unwrap());
        // A later epoch settled does not make an earlier one written.
        g.settled(b);
        g.settled(c);
        assert!(!g.written_through(second).unwrap());
        g.settled(a);
        assert!(g.written_through(first).unwrap());
        assert!(g.written_through(second).unwrap());
        // Nothing is outstanding for an epoch with no records.
        assert!(g.written_through(g.seal()).unwrap());
    }

    #[test]
    fn client_settings_go_only_to_the_clients_they_apply_to() {
        assert!(Role::Consumer.applies("session.timeout.ms"));
        assert!(!Role::Producer.applies("session.timeout.ms"));
        assert!(!Role::Admin.applies("session.timeout.ms"));
        assert!(Role::Producer.applies("linger.ms"));
        assert!(!Role::Consumer.applies("linger.ms"));
        for role in [Role::Consumer, Role::Producer, Role::Admin] {
            assert!(role.applies("security.protocol"));
        }
    }

    /// The librdkafka build has TLS, SASL/SCRAM, OAUTHBEARER and zstd: a client asking for
    /// them is created (librdkafka refuses one at creation when its build lacks a feature).
    #[test]
    fn librdkafka_is_built_with_tls_sasl_and_zstd() {
        for (mechanism, extra) in [
            ("SCRAM-SHA-512", ("sasl.username", "u")),
            ("SCRAM-SHA-256", ("sasl.username", "u")),
            ("OAUTHBEARER", ("sasl.oauthbearer.config", "principal=u")),
            ("PLAIN", ("sasl.username", "u")),
        ] {
            let producer: Result<rdkafka::producer::BaseProducer, _> = ClientConfig::new()
                .set("bootstrap.servers", "127.0.0.1:1")
                .set("security.protocol", "sasl_ssl")
                .set("sasl.mechanism", mechanism)
                .set(extra.0, extra.1)
                .set("sasl.password", "p")
                .set("compression.type", "zstd")
                .create();
            if let Err(e) = producer {
                panic!("{mechanism}: {e}");
            }
        }
    }

    #[test]
    fn a_lost_record_makes_every_epoch_unwritable() {
        let g = DeliveryGuard::default();
        let a = g.sending();
        let epoch = g.seal();
        g.refused();
        g.settled(a);
        assert!(matches!(g.written_through(epoch), Err(LostWrites(1))));
    }
}
