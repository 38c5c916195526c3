//! Erasure requests of the admin API (`POST /api/v1/users/{id}/erase`) as input records: a
//! `delete` record in the source format, keyed by the user id, written to **every** partition
//! of the profiles topic. Whichever partition the producers keyed the user to (Java clients
//! hash keys with murmur2, librdkafka with CRC32), the user's shard applies the erasure in
//! event time among the user's own records; the other shards hold no state for the user and
//! forward the same erasure, which activate sees once per `(time, user, campaign)`.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::producer::Producer as _;
use serde_json::json;

use super::{flush_durable, StageProducer};
use crate::config::KafkaSettings;
use crate::event::{EventTime, Format};

/// The `delete` record of `user` at `at` (ms) in `format`: native `ts` in ms, Segment an
/// RFC 3339 `timestamp`, CleverTap `ts` in seconds (so the erasure takes effect at the second).
pub fn erasure_line(format: Format, user: &str, at: EventTime) -> Vec<u8> {
    let value = match format {
        Format::Native => json!({"type": "delete", "user_id": user, "ts": at}),
        Format::Segment => {
            let ts = jiff::Timestamp::from_millisecond(at)
                .map_or_else(|_| at.to_string(), |t| t.to_string());
            json!({"type": "delete", "userId": user, "timestamp": ts})
        }
        Format::Clevertap => json!({"type": "delete", "identity": user, "ts": at.div_euclid(1000)}),
    };
    serde_json::to_vec(&value).expect("serialisable")
}

/// Writes the erasure of `user` at `at` to every partition of `k.profiles_topic`, durably.
pub fn write(
    producer: &StageProducer,
    k: &KafkaSettings,
    format: Format,
    user: &str,
    at: EventTime,
) -> anyhow::Result<()> {
    let topic = &k.profiles_topic;
    let metadata = producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("metadata of {topic}"))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    anyhow::ensure!(partitions > 0, "topic {topic} has no partitions");
    let line = erasure_line(format, user, at);
    for p in 0..partitions {
        super::send(
            producer,
            topic,
            Some(p as i32),
            Some(user.as_bytes()),
            Some(&line),
            None,
        );
    }
    flush_durable(producer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode::Decoder;
    use crate::event::{Record, Schema};

    #[test]
    fn each_format_decodes_its_erasure_line_as_an_erasure() {
        let schema = Schema::default();
        let at = 1_764_000_000_123;
        for (format, ts) in [
            (Format::Native, at),
            (Format::Segment, at),
            (Format::Clevertap, 1_764_000_000_000),
        ] {
            let line = erasure_line(format, "user-7", at);
            let got = Decoder::new(format, &schema).decode(&line).unwrap();
            assert_eq!(got, Record::erasure("user-7".into(), ts), "{format:?}");
        }
    }
}
