//! What the test broker does when a consumer resumes from an offset in the middle of a
//! producer batch — the situation of every restart from a committed offset.
//!
//! Kafka returns the batch that contains the offset and the client skips the records before
//! it. tansu 0.6 (memory storage) returns only later batches: resuming inside a batch loses
//! the rest of it. The Kafka tests therefore run remarket and their publishers with one record
//! per batch on tansu (`batch.num.messages=1`); this test pins that down, so that a tansu
//! upgrade that fixes it shows here.

#[path = "common/kafka.rs"]
mod kafka;

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The first offset a consumer assigned at `from` receives, for a partition written as one
/// batch of ten records.
fn first_offset_after_resume(bootstrap: &str, batch_size: &str, from: i64) -> Option<i64> {
    let topic = format!("mid-batch-{batch_size}");
    kafka::create_topic(bootstrap, &topic, 1, &[]);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "200")
        .set("batch.num.messages", batch_size)
        .create()
        .unwrap();
    for i in 0..10 {
        producer
            .send(
                BaseRecord::to(&topic)
                    .partition(0)
                    .key("k")
                    .payload(&format!("{i}")),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "mid-batch")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(from))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    match consumer.poll(Duration::from_secs(5)) {
        Some(Ok(m)) => Some(m.offset()),
        Some(Err(e)) => panic!("{e}"),
        None => None,
    }
}

#[test]
fn resuming_mid_batch() {
    let Some(broker) = kafka::Broker::start() else {
        eprintln!("skipping: tansu not installed");
        return;
    };
    let one_batch = first_offset_after_resume(&broker.bootstrap, "100", 5);
    let single = first_offset_after_resume(&broker.bootstrap, "1", 5);
    eprintln!(
        "resume at 5: first offset {one_batch:?} (one batch of 10), {single:?} (batches of 1)"
    );
    assert_eq!(
        single,
        Some(5),
        "with one record per batch, resuming is exact"
    );
}
