//! Report tallies shared between replicas: the compacted `<prefix>.reports` topic (one
//! partition, key `partition/P`, value the tallies and days by campaign of activate
//! partition `P` as of its owner's last commit). Every replica reads it, so the report route covers every
//! activate partition whichever replica owns it (DESIGN §9 "Report").

use std::collections::BTreeMap;

use super::{read_to_end, StageProducer};
use crate::config::KafkaSettings;
use crate::report::Tally;

/// One activate partition's tallies, by campaign id.
pub type Tallies = BTreeMap<String, Tally>;

/// What an activate partition's owner writes: each campaign's tally and days.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartitionReport {
    pub tallies: Tallies,
    #[serde(default)]
    pub daily: BTreeMap<String, crate::report::Daily>,
    /// Each campaign's latest qualification time (ms), when it has decided users.
    #[serde(default)]
    pub last_qualified: BTreeMap<String, i64>,
}

fn group(k: &KafkaSettings) -> String {
    format!("{}-reports", k.group_prefix)
}

/// Sends partition `p`'s report (not waited for: a lost one is sent again at the next
/// commit that changes it, and the owner's own route does not need it).
pub fn write(producer: &StageProducer, k: &KafkaSettings, p: i32, report: &PartitionReport) {
    let value = serde_json::to_vec(report).expect("serialisable");
    super::send(
        producer,
        &k.topic("reports"),
        Some(0),
        Some(format!("partition/{p}").as_bytes()),
        Some(&value),
        None,
    );
}

/// Every activate partition's report as the topic holds it. A record that is not one is
/// skipped and logged.
pub fn read(k: &KafkaSettings) -> anyhow::Result<BTreeMap<i32, PartitionReport>> {
    let mut all = BTreeMap::new();
    for (key, value) in read_to_end(k, &group(k), &k.topic("reports"), 0)? {
        let parsed = std::str::from_utf8(&key)
            .ok()
            .and_then(|k| k.strip_prefix("partition/")?.parse::<i32>().ok());
        let (Some(p), Some(value)) = (parsed, value) else {
            continue;
        };
        match serde_json::from_slice::<PartitionReport>(&value) {
            Ok(t) => {
                all.insert(p, t);
            }
            Err(e) => tracing::warn!(partition = p, error = %e, "reports topic: record skipped"),
        }
    }
    Ok(all)
}
