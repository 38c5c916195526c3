//! `remarket record`: live topics into the recordings `replay` reads — `kcat -C -J` lines,
//! every partition of each topic from `--from` (by timestamp, Kafka's ListOffsets) or the
//! beginning, up to the end each partition had when the command started (and before `--to`).
//! So a production incident can be replayed: `record` the input topics and
//! `<prefix>.campaigns`, then `replay --campaigns campaigns.jsonl events.jsonl`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, Timestamp};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

/// Arguments of `remarket record`. `Debug` is not derived: `-X` values may be credentials.
#[derive(Clone, clap::Args)]
pub struct RecordArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT...]
    #[arg(long, value_name = "HOST:PORT")]
    pub brokers: String,
    /// Topic to record (repeatable)
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Records from this time on (RFC 3339; the Kafka timestamp); default: the beginning
    #[arg(long)]
    pub from: Option<String>,
    /// Records before this time only (RFC 3339); default: up to the end at start
    #[arg(long)]
    pub to: Option<String>,
    /// Output file; default stdout
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// Bounds the metadata and offset requests, and each wait for records
    #[arg(long, default_value = "30s")]
    pub timeout: humantime::Duration,
    /// Extra librdkafka consumer property KEY=VALUE (repeatable), e.g. security settings
    #[arg(short = 'X', long = "kafka-config", value_name = "KEY=VALUE", value_parser = crate::publish::parse_property)]
    pub kafka_config: Vec<(String, String)>,
}

/// One line, as `kcat -C -J` writes it. Keys and payloads that are not UTF-8 are written
/// lossily (JSON text cannot hold their bytes).
#[derive(Serialize)]
struct Envelope<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    tstype: &'static str,
    ts: Option<i64>,
    broker: i32,
    key: Option<std::borrow::Cow<'a, str>>,
    payload: Option<std::borrow::Cow<'a, str>>,
}

fn millis(t: &str, what: &str) -> anyhow::Result<i64> {
    let ts: jiff::Timestamp = t
        .parse()
        .map_err(|e| anyhow!("--{what} {t:?}: not an RFC 3339 time: {e}"))?;
    Ok(ts.as_millisecond())
}

/// Records the topics; returns how many records were written.
pub fn record(args: &RecordArgs) -> anyhow::Result<u64> {
    let timeout: Duration = args.timeout.into();
    let from = args
        .from
        .as_deref()
        .map(|t| millis(t, "from"))
        .transpose()?;
    let to = args.to.as_deref().map(|t| millis(t, "to")).transpose()?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &args.brokers)
        .set("group.id", "remarket-record")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in &args.kafka_config {
        c.set(k, v);
    }
    let consumer: BaseConsumer = c.create().context("cannot create the Kafka consumer")?;
    // Every partition's end at start: what is recorded.
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for topic in &args.topics {
        let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
            anyhow!(
                "no metadata from {} within {}: {e}",
                args.brokers,
                args.timeout
            )
        })?;
        let t = (md.topics().iter())
            .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| anyhow!("topic {topic:?} does not exist"))?;
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
            if high > low {
                ends.insert((topic.clone(), p.id()), high);
                let start = match from {
                    Some(ms) => Offset::Offset(ms),
                    None => Offset::Beginning,
                };
                tpl.add_partition_offset(topic, p.id(), start)?;
            }
        }
    }
    if from.is_some() && tpl.count() > 0 {
        tpl = consumer.offsets_for_times(tpl, timeout)?;
        // A partition with nothing at or after `from` answers the end: nothing to record.
        for e in tpl.elements() {
            let key = (e.topic().to_owned(), e.partition());
            if matches!(e.offset(), Offset::End | Offset::Invalid) {
                ends.remove(&key);
            } else if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&key)) {
                if o >= *end {
                    ends.remove(&key);
                }
            }
        }
        let mut kept = TopicPartitionList::new();
        for e in tpl.elements() {
            if ends.contains_key(&(e.topic().to_owned(), e.partition())) {
                kept.add_partition_offset(e.topic(), e.partition(), e.offset())?;
            }
        }
        tpl = kept;
    }
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    consumer.assign(&tpl)?;
    let mut written = 0u64;
    while !ends.is_empty() {
        let m = match consumer.poll(timeout) {
            None => {
                // The end may be a record that is never delivered (a transaction marker, a
                // compacted tail): a partition whose position reached it is done.
                let before = ends.len();
                if let Ok(pos) = consumer.position() {
                    for e in pos.elements() {
                        let key = (e.topic().to_owned(), e.partition());
                        if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&key)) {
                            if o >= *end {
                                ends.remove(&key);
                            }
                        }
                    }
                }
                if ends.len() == before {
                    anyhow::bail!(
                        "no record within {} while {} partition(s) were not at their end",
                        args.timeout,
                        ends.len()
                    );
                }
                continue;
            }
            Some(m) => m?,
        };
        let key = (m.topic().to_owned(), m.partition());
        let Some(&end) = ends.get(&key) else { continue };
        let ts = match m.timestamp() {
            Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            Timestamp::NotAvailable => None,
        };
        // ListOffsets by time only skips ahead (a broker may answer the beginning): the
        // window is also applied to each record.
        let in_window = ts.is_none_or(|t| from.is_none_or(|f| t >= f) && to.is_none_or(|e| t < e));
        if m.offset() < end && in_window {
            let line = Envelope {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                tstype: match m.timestamp() {
                    Timestamp::LogAppendTime(_) => "logappend",
                    _ => "create",
                },
                ts,
                broker: -1,
                key: m.key().map(String::from_utf8_lossy),
                payload: m.payload().map(String::from_utf8_lossy),
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        if m.offset() + 1 >= end {
            ends.remove(&key);
        }
    }
    out.flush()?;
    Ok(written)
}
