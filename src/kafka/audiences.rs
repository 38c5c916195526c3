//! The audience store of `run`: the compacted `<prefix>.audiences` topic (one partition, key =
//! campaign id), read to its end at start; every change is produced and flushed before it is
//! used.
//!
//! Creating a `new` audience is claimed first, because replicas starting at the same moment
//! would each create one (TikTok allows duplicate names). The single partition orders the
//! claims: each replica appends a claim record with a random token, reads the partition back,
//! and the first live claim since the campaign's last finished record wins. The others wait
//! for the winner's finished record (its audience id) to appear. A claim older than
//! [`CLAIM_TTL`] is dead (its writer crashed mid-create): a replica that waited that long
//! claims again. Claim records are `StoreEntry` JSON with two more fields, so readers that do
//! not know them still read the entry.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{flush_durable, producer, read_to_end, scan, StageProducer};
use crate::config::KafkaSettings;
use crate::sink::audiences::{AudienceStore, Claim, StoreEntry};

/// How long a claim stays live: longer than any create takes, retries included.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// Claims give up after this many rounds of waiting for dead claims.
const CLAIM_ROUNDS: usize = 3;

/// A record of the audiences topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    entry: StoreEntry,
    /// Set on claims: the claimant's random token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim: Option<String>,
    /// Set on claims: when it was made (Unix ms, the claimant's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claimed_at_ms: Option<i64>,
}

/// Opens the store: entries from the topic, persistence and claims through it.
pub fn store(k: &KafkaSettings) -> anyhow::Result<AudienceStore> {
    let topic = k.topic("audiences");
    let mut entries = BTreeMap::new();
    for (key, v) in read_to_end(k, &group(k), &topic, 0)? {
        if let Some(e) = v.and_then(|v| serde_json::from_slice::<StoreEntry>(&v).ok()) {
            entries.insert(String::from_utf8_lossy(&key).into_owned(), e);
        }
    }
    let producer = Arc::new(producer(k)?);
    let persist = {
        let (producer, topic) = (producer.clone(), topic.clone());
        Box::new(move |campaign: &str, entry: &StoreEntry| {
            let record = Record {
                entry: entry.clone(),
                claim: None,
                claimed_at_ms: None,
            };
            write(&producer, &topic, campaign, &record)
        })
    };
    let k = k.clone();
    let claim = Box::new(move |campaign: &str, entry: &StoreEntry| {
        claim(&k, &producer, &topic, campaign, entry)
    });
    Ok(AudienceStore::with_persist(entries, persist).with_claim(claim))
}

fn group(k: &KafkaSettings) -> String {
    format!("{}-audiences", k.group_prefix)
}

fn write(
    producer: &StageProducer,
    topic: &str,
    campaign: &str,
    record: &Record,
) -> Result<(), String> {
    let value = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    super::send(
        producer,
        topic,
        Some(0),
        Some(campaign.as_bytes()),
        Some(&value),
        None,
    );
    flush_durable(producer).map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn claim(
    k: &KafkaSettings,
    producer: &StageProducer,
    topic: &str,
    campaign: &str,
    entry: &StoreEntry,
) -> Result<Claim, String> {
    for _ in 0..CLAIM_ROUNDS {
        let token = format!("{:016x}", fastrand::u64(..));
        let at = now_ms();
        let record = Record {
            entry: StoreEntry {
                audience_id: None,
                ..entry.clone()
            },
            claim: Some(token.clone()),
            claimed_at_ms: Some(at),
        };
        write(producer, topic, campaign, &record)?;
        let deadline = tokio::time::Instant::now() + CLAIM_TTL;
        loop {
            let mut log = Vec::new();
            scan(k, &group(k), topic, 0, |key, value| {
                if key == Some(campaign.as_bytes()) {
                    if let Some(r) = value.and_then(|v| serde_json::from_slice::<Record>(v).ok()) {
                        log.push(r);
                    }
                }
            })
            .map_err(|e| e.to_string())?;
            match decide(&log, entry, &token, at) {
                Some(outcome) => {
                    if let Claim::Lost { audience_id } = &outcome {
                        tracing::info!(campaign, audience = %audience_id, "audience claimed by another replica");
                    }
                    return Ok(outcome);
                }
                None if tokio::time::Instant::now() >= deadline => break,
                None => std::thread::sleep(Duration::from_millis(250)),
            }
        }
        tracing::warn!(
            campaign,
            "the winning audience claim never finished; claiming again"
        );
    }
    Err(format!(
        "campaign {campaign}: audience claims kept being won by replicas that never finished"
    ))
}

/// The claim's outcome from the campaign's records in log order, once known: `None` while
/// another replica's live claim is ahead of `token`'s and its audience id is not written yet
/// (or `token`'s own claim is not visible yet).
fn decide(log: &[Record], entry: &StoreEntry, token: &str, at: i64) -> Option<Claim> {
    let same =
        |r: &Record| r.entry.advertiser_id == entry.advertiser_id && r.entry.name == entry.name;
    let finished = |r: &Record| same(r).then(|| r.entry.audience_id.clone()).flatten();
    let mine = log.iter().position(|r| r.claim.as_deref() == Some(token))?;
    // Finished before this claim (the store read at start was stale): use it.
    if let Some(id) = log[..mine].iter().rev().find_map(finished) {
        return Some(Claim::Lost { audience_id: id });
    }
    let ttl = CLAIM_TTL.as_millis() as i64;
    let winner = log[..=mine]
        .iter()
        .find(|r| same(r) && r.claim.is_some() && r.claimed_at_ms.is_some_and(|t| t > at - ttl))?;
    if winner.claim.as_deref() == Some(token) {
        return Some(Claim::Won);
    }
    log[mine..]
        .iter()
        .find_map(finished)
        .map(|id| Claim::Lost { audience_id: id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: Option<&str>) -> StoreEntry {
        StoreEntry {
            advertiser_id: "adv".into(),
            name: "Cart abandoners".into(),
            audience_id: id.map(str::to_owned),
        }
    }

    fn claim(token: &str, at: i64) -> Record {
        Record {
            entry: entry(None),
            claim: Some(token.into()),
            claimed_at_ms: Some(at),
        }
    }

    fn done(id: &str) -> Record {
        Record {
            entry: entry(Some(id)),
            claim: None,
            claimed_at_ms: None,
        }
    }

    const T: i64 = 1_800_000_000_000;

    #[test]
    fn the_first_live_claim_wins_and_the_others_take_its_audience() {
        let log = [claim("a", T), claim("b", T + 5)];
        assert_eq!(decide(&log, &entry(None), "a", T), Some(Claim::Won));
        assert_eq!(decide(&log, &entry(None), "b", T + 5), None, "b waits");
        let log = [claim("a", T), claim("b", T + 5), done("42")];
        let lost = Some(Claim::Lost {
            audience_id: "42".into(),
        });
        assert_eq!(decide(&log, &entry(None), "b", T + 5), lost);
    }

    #[test]
    fn an_audience_finished_before_the_claim_is_taken_not_created_again() {
        let log = [claim("a", T), done("42"), claim("b", T + 9)];
        assert_eq!(
            decide(&log, &entry(None), "b", T + 9),
            Some(Claim::Lost {
                audience_id: "42".into()
            })
        );
    }

    #[test]
    fn a_dead_claim_does_not_block_forever() {
        let ttl = CLAIM_TTL.as_millis() as i64;
        let log = [claim("crashed", T), claim("b", T + ttl + 1)];
        assert_eq!(
            decide(&log, &entry(None), "b", T + ttl + 1),
            Some(Claim::Won)
        );
    }

    #[test]
    fn claims_for_another_advertiser_or_name_do_not_count() {
        let mut other = claim("x", T);
        other.entry.advertiser_id = "other".into();
        let log = [other, claim("b", T + 1)];
        assert_eq!(decide(&log, &entry(None), "b", T + 1), Some(Claim::Won));
    }

    #[test]
    fn an_unseen_own_claim_decides_nothing() {
        assert_eq!(decide(&[claim("a", T)], &entry(None), "b", T), None);
    }
}
