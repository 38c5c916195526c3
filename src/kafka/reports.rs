//! Report tallies shared between replicas: the compacted `<prefix>.reports` topic (one
//! partition, key `partition/P`, value the tallies by campaign of activate partition `P` as
//! of its owner's last commit). Every replica reads it, so the report route covers every
//! activate partition whichever replica owns it (DESIGN §9 "Report").

use std::collections::BTreeMap;

use super::{read_to_end, StageProducer};
use crate::config::KafkaSettings;
use crate::report::Tally;

/// One activate partition's tallies, by campaign id.
pub type Tallies = BTreeMap<String, Tally>;

fn group(k: &KafkaSettings) -> String {
    format!("{}-reports", k.group_prefix)
}

/// Sends partition `p`'s tallies (not waited for: a lost one is sent again at the next
/// commit that changes them, and the owner's own route does not need it).
pub fn write(producer: &StageProducer, k: &KafkaSettings, p: i32, tallies: &Tallies) {
    let value = serde_json::to_vec(tallies).expect("serialisable");
    super::send(
        producer,
        &k.topic("reports"),
        Some(0),
        Some(format!("partition/{p}").as_bytes()),
        Some(&value),
        None,
    );
}

/// Every activate partition's tallies as the topic holds them. A record that is not one is
/// skipped and logged.
pub fn read(k: &KafkaSettings) -> anyhow::Result<BTreeMap<i32, Tallies>> {
    let mut all = BTreeMap::new();
    for (key, value) in read_to_end(k, &group(k), &k.topic("reports"), 0)? {
        let parsed = std::str::from_utf8(&key)
            .ok()
            .and_then(|k| k.strip_prefix("partition/")?.parse::<i32>().ok());
        let (Some(p), Some(value)) = (parsed, value) else {
            continue;
        };
        match serde_json::from_slice::<Tallies>(&value) {
            Ok(t) => {
                all.insert(p, t);
            }
            Err(e) => tracing::warn!(partition = p, error = %e, "reports topic: record skipped"),
        }
    }
    Ok(all)
}
