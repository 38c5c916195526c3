//! `remarket publish`: produce recorded topics into a Kafka topic, so a test cluster can be fed the
//! same bytes a replay reads.
//!
//! Owns turning a [`Recording`] (plain JSON lines or `kcat -C -J` envelopes, detected per line as
//! replay does) into Kafka records, and delivering all of them or failing loudly.
//!
//! What a line becomes (see [`outgoing`]):
//! - envelope line: the envelope's payload (unescaped; a `null` payload stays a tombstone), its
//!   key and its Kafka timestamp `ts`; with `--keep-partitions` also its recorded partition;
//! - plain line: the line's bytes as they are; key = the record's `user_id`, `userId` or
//!   `identity` (whichever exists); timestamp = its `ts` (integer ms used as-is, or an RFC 3339
//!   string) or Segment's `timestamp`, else none (the producer stamps the current time). A line
//!   that is not JSON is produced anyway, without key, so bad input reaches the consumer's
//!   dead-letter path.
//!
//! Partitioning and co-partitioning: without `--keep-partitions` (and for plain lines always),
//! the partition is picked as Kafka's Java producer does (`partitioner=murmur2_random`:
//! murmur2 of the key, random without one; librdkafka's own default is CRC32). Events and
//! profiles are co-partitioned — a user's records land on the same partition number in both
//! topics — when both topics have the same partition count and their producers hash alike
//! (this command, Java clients, Kafka Streams); `-X partitioner=...` overrides it.
//!
//! Delivery: one idempotent producer (`enable.idempotence=true`, so `acks=all` and no reordering
//! or duplicates on retry; tansu 0.6 grants producer ids), `linger.ms=5`. Lines are sent in file
//! order (files in the order given, the streams of a file merged back by line number), so every
//! partition receives its records in file order whatever the partitioning. Every delivery report
//! is awaited; any failed record makes the command fail with the count and the first error.
//! Nothing from the records (keys, payloads) is ever logged.
//!
//! The topic must exist, or `--create-partitions N` creates it (replication 1), and fails if it
//! already exists with another count. The producer never auto-creates topics.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaRespErr;
use serde::Deserialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::event::recording::{Line, Recording};
use crate::kafka::Role;

/// Arguments of `remarket publish`. `Debug` hides the values of `-X` properties (they may be
/// credentials).
#[derive(Clone, clap::Args)]
pub struct PublishArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT...]
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: String,
    /// Topic to produce to (it must exist unless --create-partitions is given)
    #[arg(long)]
    pub topic: String,
    /// Create the topic with N partitions (replication 1) if it does not exist; fail if it
    /// exists with a different partition count
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub create_partitions: Option<i32>,
    /// Produce each `kcat -J` envelope to the partition it was recorded in (plain lines are
    /// still partitioned by key)
    #[arg(long)]
    pub keep_partitions: bool,
    /// A record not delivered within this time fails the command; also bounds the metadata
    /// and topic-creation requests
    #[arg(long, default_value = "30s")]
    pub timeout: humantime::Duration,
    /// Extra librdkafka property KEY=VALUE for all clients (repeatable), e.g.
    /// `-X partitioner=murmur2_random` or security settings
    #[arg(
        short = 'X',
        long = "kafka-config",
        value_name = "KEY=VALUE",
        value_parser = parse_property
    )]
    pub kafka_config: Vec<(String, String)>,
    /// Recorded topics: plain JSON lines or `kcat -C -J` output
    #[arg(required = true)]
    pub recording: Vec<PathBuf>,
}

impl PublishArgs {
    /// Arguments with the defaults of the command line.
    pub fn new(
        brokers: impl Into<String>,
        topic: impl Into<String>,
        recording: Vec<PathBuf>,
    ) -> Self {
        PublishArgs {
            brokers: brokers.into(),
            topic: topic.into(),
            create_partitions: None,
            keep_partitions: false,
            timeout: Duration::from_secs(30).into(),
            kafka_config: Vec::new(),
            recording,
        }
    }
}

impl fmt::Debug for PublishArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: Vec<String> = self
            .kafka_config
            .iter()
            .map(|(k, _)| format!("{k}=***"))
            .collect();
        f.debug_struct("PublishArgs")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("create_partitions", &self.create_partitions)
            .field("keep_partitions", &self.keep_partitions)
            .field("timeout", &self.timeout)
            .field("kafka_config", &props)
            .field("recording", &self.recording)
            .finish()
    }
}

pub(crate) fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// What [`publish`] delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PublishReport {
    /// Records acknowledged by the broker.
    pub records: u64,
    /// Payload bytes of those records.
    pub bytes: u64,
    /// Records acknowledged per partition.
    pub partitions: BTreeMap<i32, u64>,
}

impl fmt::Display for PublishReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} records, {} payload bytes, {} partitions",
            self.records,
            self.bytes,
            self.partitions.len()
        )?;
        if !self.partitions.is_empty() {
            f.write_str(" (")?;
            for (i, (p, n)) in self.partitions.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                write!(f, "{sep}{p}:{n}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

// === line → record ===

/// A recorded line as it is produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub key: Option<Cow<'a, [u8]>>,
    /// `None` only for an envelope recorded with a `null` payload (a tombstone).
    pub payload: Option<Cow<'a, [u8]>>,
    /// Kafka timestamp, ms since the epoch.
    pub timestamp: Option<i64>,
    /// The recorded partition (envelopes, when partitions are kept).
    pub partition: Option<i32>,
}

/// The envelope fields that [`Line`] does not carry.
#[derive(Deserialize)]
struct EnvelopeHead<'a> {
    partition: Option<i64>,
    #[serde(borrow)]
    key: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// The fields of a plain record that give its key and timestamp.
#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "userId")]
    user_id_segment: Option<&'a RawValue>,
    #[serde(borrow)]
    identity: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
}

/// What line `line` of a stream becomes; `envelope` is the stream's `envelopes` flag and
/// `keep_partitions` whether the envelope's partition is kept.
pub fn outgoing(line: Line<'_>, envelope: bool, keep_partitions: bool) -> Outgoing<'_> {
    if envelope {
        if let Ok(head) = serde_json::from_slice::<EnvelopeHead>(line.raw) {
            let payload = match (head.payload.map(RawValue::get), line.record) {
                (None | Some("null"), _) => None,
                (_, Ok(p)) => Some(p),
                // Not a JSON string: produce the whole line, so it is dead-lettered downstream.
                (_, Err(_)) => Some(Cow::Borrowed(line.raw)),
            };
            return Outgoing {
                key: head.key.and_then(json_text),
                payload,
                timestamp: line.kafka_ts.filter(|&t| t >= 0),
                partition: head
                    .partition
                    .filter(|_| keep_partitions)
                    .and_then(|p| i32::try_from(p).ok()),
            };
        }
    }
    let head = serde_json::from_slice::<RecordHead>(line.raw).ok();
    let key = head.as_ref().and_then(|h| {
        [h.user_id, h.user_id_segment, h.identity]
            .into_iter()
            .flatten()
            .find_map(json_text)
    });
    let timestamp = head.as_ref().and_then(|h| {
        h.ts.and_then(timestamp_ms)
            .or_else(|| h.timestamp.and_then(timestamp_ms))
    });
    Outgoing {
        key,
        payload: Some(Cow::Borrowed(line.raw)),
        timestamp,
        partition: None,
    }
}

/// A JSON string's text or a number's digits as bytes; `None` for anything else or `""`.
fn json_text(v: &RawValue) -> Option<Cow<'_, [u8]>> {
    let s = v.get();
    let text: Cow<'_, str> = if s.starts_with('"') {
        match serde_json::from_str::<&str>(s) {
            Ok(b) => Cow::Borrowed(b),
            // Escapes inside: unescaping allocates.
            Err(_) => Cow::Owned(serde_json::from_str::<String>(s).ok()?),
        }
    } else if s.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Cow::Borrowed(s)
    } else {
        return None;
    };
    match text {
        Cow::Borrowed("") => None,
        Cow::Borrowed(b) => Some(Cow::Borrowed(b.as_bytes())),
        Cow::Owned(o) if o.is_empty() => None,
        Cow::Owned(o) => Some(Cow::Owned(o.into_bytes())),
    }
}

/// An integer (taken as ms) or an RFC 3339 string, as non-negative ms since the epoch.
fn timestamp_ms(v: &RawValue) -> Option<i64> {
    let s = v.get();
    let ms = if s.starts_with('"') {
        let text: String = serde_json::from_str(s).ok()?;
        let t = OffsetDateTime::parse(&text, &Rfc3339).ok()?;
        i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()?
    } else {
        s.parse::<i64>().ok()?
    };
    (ms >= 0).then_some(ms)
}

// === delivery ===

/// Counts delivery reports; the producer's `poll` calls it on the publishing thread.
#[derive(Default)]
struct Tally {
    inner: Mutex<TallyInner>,
}

#[derive(Default)]
struct TallyInner {
    report: PublishReport,
    failed: u64,
    first_error: Option<KafkaError>,
}

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, TallyInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TallyInner {
    fn fail(&mut self, e: KafkaError) {
        self.failed += 1;
        self.first_error.get_or_insert(e);
    }
}

impl ClientContext for Tally {}

impl ProducerContext for Tally {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut t = self.lock();
        match result {
            Ok(m) => {
                t.report.records += 1;
                t.report.bytes += m.payload_len() as u64;
                *t.report.partitions.entry(m.partition()).or_default() += 1;
            }
            Err((e, _)) => t.fail(e.clone()),
        }
    }
}

/// The brokers, then `defaults`, then the user's `-X` properties (which win), each only
/// where it applies to `role`.
fn client_config(args: &PublishArgs, role: Role, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.brokers);
    for (k, v) in defaults {
        c.set(*k, *v);
    }
    for (k, v) in args.kafka_config.iter().filter(|(k, _)| role.applies(k)) {
        c.set(k, v);
    }
    c
}

/// Produces the recording into `args.topic`, waits for every delivery report, prints a one-line
/// summary to stdout and returns the counts. Fails if any record was not delivered.
pub fn publish(args: &PublishArgs) -> anyhow::Result<PublishReport> {
    let timeout: Duration = *args.timeout;
    let rec = Recording::load(&args.recording)?;

    let message_timeout = timeout.as_millis().max(1).to_string();
    let config = client_config(
        args,
        Role::Producer,
        &[
            // The Java client's partitioner: keyed records land where a Java producer's
            // would, so topics written by both stay co-partitioned by user id.
            ("partitioner", "murmur2_random"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("allow.auto.create.topics", "false"),
            ("message.timeout.ms", &message_timeout),
        ],
    );
    let producer: BaseProducer<Tally> = config
        .create_with_context(Tally::default())
        .context("cannot create the Kafka producer")?;

    let partitions = ensure_topic(producer.client(), args, timeout)?;
    if args.keep_partitions {
        check_recorded_partitions(&rec, &args.topic, partitions)?;
    }
    tracing::info!(
        topic = %args.topic,
        partitions,
        files = rec.paths.len(),
        bytes = rec.bytes(),
        "publishing"
    );

    in_file_order(&rec, |s, line| {
        let out = outgoing(line, rec.streams[s].envelopes, args.keep_partitions);
        send(&producer, &args.topic, &out);
    });

    let deadline = timeout * 2 + Duration::from_secs(5);
    let flushed = producer.flush(deadline);
    let t = std::mem::take(&mut *producer.context().lock());
    if let Err(e) = flushed {
        bail!(
            "{} records still undelivered after {}: {e}",
            producer.in_flight_count(),
            humantime::format_duration(deadline)
        );
    }
    if let Some(e) = t.first_error {
        bail!(
            "{} of {} records were not delivered to topic {:?} at {}; first error: {e}",
            t.failed,
            t.failed + t.report.records,
            args.topic,
            args.brokers
        );
    }
    println!("published to {}: {}", args.topic, t.report);
    Ok(t.report)
}

/// Calls `f(stream, line)` for every line of the recording, file by file, each file's lines in
/// file order (its streams merged back by line number), so that whatever partition a record
/// goes to, each partition receives its records in file order.
fn in_file_order<'r>(rec: &'r Recording, mut f: impl FnMut(usize, Line<'r>)) {
    for file in 0..rec.paths.len() {
        // Per stream of this file with lines left: (stream, index of its next line), that line.
        let mut heads: Vec<(usize, usize)> = (0..rec.streams.len())
            .filter(|&s| rec.streams[s].file as usize == file && rec.len(s) > 0)
            .map(|s| (s, 0))
            .collect();
        let mut next: Vec<Line<'r>> = heads.iter().map(|&(s, i)| rec.line(s, i)).collect();
        while let Some(k) = (0..next.len()).min_by_key(|&k| next[k].origin.line) {
            let (s, i) = heads[k];
            let line = if i + 1 < rec.len(s) {
                heads[k].1 = i + 1;
                std::mem::replace(&mut next[k], rec.line(s, i + 1))
            } else {
                heads.swap_remove(k);
                next.swap_remove(k)
            };
            f(s, line);
        }
    }
}

/// Enqueues one record, serving delivery reports while the local queue is full. A record the
/// producer refuses outright (too large, unknown partition) counts as failed.
fn send(producer: &BaseProducer<Tally>, topic: &str, out: &Outgoing<'_>) {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
    record.key = out.key.as_deref();
    record.payload = out.payload.as_deref();
    record.timestamp = out.timestamp;
    record.partition = out.partition;
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => {
                producer.context().lock().fail(e);
                break;
            }
        }
    }
    producer.poll(Duration::ZERO);
}

/// The topic's partition count, creating the topic when asked to.
fn ensure_topic<C: ClientContext>(
    client: &Client<C>,
    args: &PublishArgs,
    timeout: Duration,
) -> anyhow::Result<i32> {
    let topic = args.topic.as_str();
    let found = partition_count(client, &args.brokers, topic, timeout)?;
    match (found, args.create_partitions) {
        (Some(n), Some(want)) if n != want => bail!(
            "topic {topic:?} exists with {n} partitions, but --create-partitions asked for {want}"
        ),
        (Some(n), _) => Ok(n),
        (None, None) => bail!(
            "topic {topic:?} does not exist at {}; pass --create-partitions N to create it",
            args.brokers
        ),
        (None, Some(want)) => {
            create_topic(args, want, timeout)?;
            // Metadata may lag the creation: wait until the topic shows its partitions.
            let start = Instant::now();
            loop {
                match partition_count(client, &args.brokers, topic, timeout)? {
                    Some(n) if n == want => return Ok(n),
                    Some(n) => bail!(
                        "topic {topic:?} was created concurrently with {n} partitions, but \
                         --create-partitions asked for {want}"
                    ),
                    None if start.elapsed() > timeout => bail!(
                        "topic {topic:?} was created but does not appear in metadata after {}",
                        humantime::format_duration(timeout)
                    ),
                    None => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

/// `None` when the broker says the topic does not exist.
fn partition_count<C: ClientContext>(
    client: &Client<C>,
    brokers: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Option<i32>> {
    let md = client.fetch_metadata(Some(topic), timeout).map_err(|e| {
        anyhow!(
            "no metadata from the brokers at {brokers} within {}: {e}",
            humantime::format_duration(timeout)
        )
    })?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    match t.error() {
        None if t.partitions().is_empty() => Ok(None),
        None => Ok(Some(t.partitions().len() as i32)),
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => Ok(None),
        Some(e) => bail!("metadata of topic {topic:?}: {}", RDKafkaErrorCode::from(e)),
    }
}

fn create_topic(args: &PublishArgs, partitions: i32, timeout: Duration) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(args, Role::Admin, &[])
            .create()
            .context("cannot create the Kafka admin client")?;
    let opts = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let new = NewTopic::new(&args.topic, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics([&new], &opts))
        .with_context(|| format!("cannot create topic {:?}", args.topic))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("cannot create topic {name:?}: {code}"),
        }
    }
    tracing::info!(topic = %args.topic, partitions, "created topic");
    Ok(())
}

/// With `--keep-partitions`, every recorded partition must exist in the target topic.
fn check_recorded_partitions(rec: &Recording, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let max = (0..rec.streams.len())
        .filter(|&s| rec.streams[s].envelopes && rec.len(s) > 0)
        .filter_map(|s| serde_json::from_slice::<EnvelopeHead>(rec.line(s, 0).raw).ok())
        .filter_map(|h| h.partition)
        .max();
    match max {
        Some(m) if m >= i64::from(partitions) => bail!(
            "--keep-partitions: the recording has partition {m}, but topic {topic:?} has only \
             {partitions} partitions"
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn one(data: &str) -> (Recording, usize) {
        let mut r = Recording::default();
        r.add(Path::new("f.jsonl"), data.as_bytes().to_vec());
        assert_eq!(r.streams.len(), 1);
        (r, 0)
    }

    fn first(r: &Recording, keep: bool) -> Outgoing<'_> {
        outgoing(r.line(0, 0), r.streams[0].envelopes, keep)
    }

    fn key(o: &Outgoing<'_>) -> Option<String> {
        o.key
            .as_deref()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
    }

    #[test]
    fn plain_native_line_keys_by_user_id_with_integer_ts() {
        let line = r#"{"user_id":"u7","event":"X","ts":1764324000000}"#;
        let (r, _) = one(line);
        let o = first(&r, true);
        assert_eq!(key(&o).as_deref(), Some("u7"));
        assert_eq!(o.timestamp, Some(1_764_324_000_000));
        assert_eq!(
            o.partition, None,
            "plain lines are always partitioned by key"
        );
        assert_eq!(o.payload.as_deref(), Some(line.as_bytes()));
    }

    #[test]
    fn plain_rfc3339_ts_segment_timestamp_and_clevertap_identity() {
        let (r, _) = one(r#"{"user_id":"a","ts":"2026-11-28T10:00:00.250Z"}"#);
        assert_eq!(first(&r, false).timestamp, Some(1_795_860_000_250));

        let (r, _) =
            one(r#"{"type":"track","userId":"s1","event":"X","timestamp":"2026-11-28T10:00:00Z"}"#);
        let o = first(&r, false);
        assert_eq!(key(&o).as_deref(), Some("s1"));
        assert_eq!(o.timestamp, Some(1_795_860_000_000));

        // CleverTap seconds are not told apart from ms: used as they are.
        let (r, _) = one(r#"{"identity":12345,"evtName":"X","ts":1764324000}"#);
        let o = first(&r, false);
        assert_eq!(key(&o).as_deref(), Some("12345"));
        assert_eq!(o.timestamp, Some(1_764_324_000));
    }

    #[test]
    fn plain_line_without_json_or_fields_is_produced_without_key() {
        for line in [
            "not json",
            r#"{"event":"X","ts":"yesterday"}"#,
            r#"{"user_id":""}"#,
        ] {
            let (r, _) = one(line);
            let o = first(&r, false);
            assert_eq!(o.key, None, "{line}");
            assert_eq!(o.timestamp, None, "{line}");
            assert_eq!(o.payload.as_deref(), Some(line.as_bytes()));
        }
        let (r, _) = one(r#"{"user_id":"a\"b","ts":-5}"#);
        let o = first(&r, false);
        assert_eq!(key(&o).as_deref(), Some("a\"b"), "escapes are undone");
        assert_eq!(o.timestamp, None, "negative timestamps are dropped");
    }

    #[test]
    fn envelope_line_uses_key_ts_and_partition_of_the_envelope() {
        let line = concat!(
            r#"{"topic":"events","partition":2,"offset":7,"tstype":"create","ts":1764324000042,"#,
            r#""broker":0,"key":"u3","payload":"{\"user_id\":\"u3\",\"ts\":1}"}"#
        );
        let (r, _) = one(line);
        let o = first(&r, true);
        assert_eq!(key(&o).as_deref(), Some("u3"));
        assert_eq!(
            o.timestamp,
            Some(1_764_324_000_042),
            "the Kafka ts, not the record's"
        );
        assert_eq!(o.partition, Some(2));
        assert_eq!(
            o.payload.as_deref(),
            Some(br#"{"user_id":"u3","ts":1}"#.as_slice())
        );
        assert_eq!(first(&r, false).partition, None);
    }

    #[test]
    fn envelope_with_null_key_or_payload() {
        let (r, _) =
            one(r#"{"topic":"p","partition":0,"offset":0,"ts":5,"key":null,"payload":"x"}"#);
        let o = first(&r, true);
        assert_eq!(o.key, None);
        assert_eq!(o.payload.as_deref(), Some(b"x".as_slice()));

        let (r, _) =
            one(r#"{"topic":"p","partition":0,"offset":0,"ts":5,"key":"k","payload":null}"#);
        let o = first(&r, true);
        assert_eq!(key(&o).as_deref(), Some("k"));
        assert_eq!(o.payload, None, "a recorded tombstone stays a tombstone");

        let raw = r#"{"topic":"p","partition":0,"offset":0,"ts":5,"key":"k","payload":7}"#;
        let (r, _) = one(raw);
        assert_eq!(
            first(&r, true).payload.as_deref(),
            Some(raw.as_bytes()),
            "a payload that is not a string is produced as the whole line"
        );
    }

    #[test]
    fn lines_are_visited_in_file_order_across_streams() {
        let mut r = Recording::default();
        let env = |p: u32, o: u32| {
            format!(
                r#"{{"topic":"t","partition":{p},"offset":{o},"ts":1,"key":"k","payload":"x"}}"#
            )
        };
        let a = [
            env(1, 0),
            "plain".into(),
            env(0, 0),
            env(1, 1),
            "{}".into(),
            env(0, 1),
        ];
        r.add(Path::new("a"), (a.join("\n") + "\n").into_bytes());
        r.add(Path::new("b"), b"{\"user_id\":\"u\"}\n".to_vec());
        let mut seen = Vec::new();
        in_file_order(&r, |s, line| {
            seen.push((s, line.origin.file, line.origin.line))
        });
        let lines: Vec<(u32, u64)> = seen.iter().map(|&(_, f, l)| (f, l)).collect();
        assert_eq!(
            lines,
            [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (1, 1)]
        );
        assert_eq!(seen[0].0, seen[3].0, "lines 1 and 4 are one stream");
    }

    #[test]
    fn property_parsing_and_report_summary() {
        assert_eq!(
            parse_property("partitioner=murmur2_random"),
            Ok(("partitioner".into(), "murmur2_random".into()))
        );
        assert_eq!(parse_property("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_property("novalue").is_err());
        let report = PublishReport {
            records: 5,
            bytes: 100,
            partitions: BTreeMap::from([(0, 2), (2, 3)]),
        };
        assert_eq!(
            report.to_string(),
            "5 records, 100 payload bytes, 2 partitions (0:2 2:3)"
        );
    }
}
