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
//! audience each campaign writes to) and `<prefix>.dead-letter`.

pub mod activate;
pub mod detect;
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

/// A client configuration with the brokers and the pass-through properties.
pub fn client_config(k: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.brokers);
    for (key, v) in &k.client {
        c.set(key, v);
    }
    c
}

/// The producer of the stages: acknowledged by every in-sync replica, lightly batched.
pub fn producer(
    k: &KafkaSettings,
) -> rdkafka::error::KafkaResult<
    rdkafka::producer::ThreadedProducer<rdkafka::producer::DefaultProducerContext>,
> {
    client_config(k)
        .set("linger.ms", "5")
        .set("acks", "all")
        .create()
}

/// A stage's consumer: group `<group_prefix>-<stage>`, cooperative-sticky assignment, offsets
/// committed only by the stage (never automatically), from the beginning when none is.
pub fn group_consumer<C: rdkafka::consumer::ConsumerContext>(
    k: &KafkaSettings,
    stage: &str,
    ctx: C,
) -> rdkafka::error::KafkaResult<BaseConsumer<C>> {
    client_config(k)
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
) -> anyhow::Result<BTreeMap<Vec<u8>, Option<Vec<u8>>>> {
    let reader: BaseConsumer = client_config(k)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    reader.assign(&tpl)?;
    let mut latest = BTreeMap::new();
    loop {
        match reader.poll(Duration::from_secs(30)) {
            Some(Ok(m)) => {
                if let Some(key) = m.key() {
                    latest.insert(key.to_vec(), m.payload().map(<[u8]>::to_vec));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(latest),
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("{topic}/{p}: no answer within 30 s while restoring"),
        }
    }
}

/// Partition count of `topic`, if it exists.
pub fn partition_count(k: &KafkaSettings, topic: &str) -> anyhow::Result<Option<usize>> {
    let consumer: BaseConsumer = client_config(k).create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .filter(|&n| n > 0))
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

/// Checks the inputs and creates missing internal topics.
pub async fn ensure_topics(k: &KafkaSettings) -> anyhow::Result<Layout> {
    let events = partition_count(k, &k.events_topic)?
        .ok_or_else(|| anyhow::anyhow!("input topic {:?} does not exist", k.events_topic))?;
    let profiles = partition_count(k, &k.profiles_topic)?
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
    let admin: AdminClient<DefaultClientContext> = client_config(k).create()?;
    let compact = [("cleanup.policy", "compact")];
    let wanted: [TopicSpec; 5] = [
        (k.topic("changelog"), events, &compact),
        (k.topic("qualified"), activate, &[]),
        (k.topic("decisions"), activate, &compact),
        (k.topic("audiences"), 1, &compact),
        (k.topic("dead-letter"), events, &[]),
    ];
    for (name, partitions, config) in wanted.iter() {
        match partition_count(k, name)? {
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
        let res = admin
            .create_topics(
                [&t],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await?;
        for r in res {
            match r {
                Ok(_) => tracing::info!(topic = %name, partitions, "created topic"),
                Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => anyhow::bail!("cannot create topic {t:?}: {e}"),
            }
        }
    }
    Ok(Layout {
        input_partitions: events,
        activate_partitions: activate,
    })
}
