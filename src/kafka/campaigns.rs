//! The campaign store of `run` (DESIGN §9): the compacted `<prefix>.campaigns` topic (one
//! partition, key `campaign/ID` or `segment/ID`, value a [`Doc`]). Read to its end at start;
//! the admin API's changes are produced and flushed before they are applied; every replica
//! reads the topic again every [`FOLLOW_EVERY`] to see the others' changes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{flush_durable, read_to_end, StageProducer};
use crate::config::KafkaSettings;
use crate::store::{Doc, Store};

/// How often a replica reads the campaigns topic again.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

fn group(k: &KafkaSettings) -> String {
    format!("{}-campaigns", k.group_prefix)
}

/// The store as the topic holds it. A record that is not a valid [`Doc`] is skipped and
/// logged (another tool wrote it).
pub fn read(k: &KafkaSettings) -> anyhow::Result<Store> {
    let mut store = Store::default();
    for (key, value) in read_to_end(k, &group(k), &k.topic("campaigns"), 0)? {
        let key = String::from_utf8_lossy(&key);
        if let Err(e) = store.apply(&key, value.as_deref()) {
            tracing::warn!(error = %e, "campaigns topic: record skipped");
        }
    }
    Ok(store)
}

/// Writes one change (a tombstone for `None`) and waits until every in-sync replica has it.
pub fn write(
    producer: &StageProducer,
    k: &KafkaSettings,
    key: &str,
    doc: Option<&Doc>,
) -> anyhow::Result<()> {
    let value = doc.map(|d| serde_json::to_vec(d).expect("serialisable"));
    super::send(
        producer,
        &k.topic("campaigns"),
        Some(0),
        Some(key.as_bytes()),
        value.as_deref(),
        None,
    );
    flush_durable(producer)?;
    Ok(())
}

/// The shared store, and a count of the changes applied to it by this replica's API, so that
/// a follower's read that raced with a change does not undo it.
#[derive(Debug, Default)]
pub struct Shared {
    pub store: Arc<Mutex<Store>>,
    pub writes: std::sync::atomic::AtomicU64,
    /// Times [`follow_once`] replaced the store.
    pub replaced: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Counts every change: the API's writes and the follower's replacements.
    pub fn changes(&self) -> u64 {
        use std::sync::atomic::Ordering;
        self.writes.load(Ordering::SeqCst) + self.replaced.load(Ordering::SeqCst)
    }
}

/// Reads the topic again and replaces the shared store with it, unless this replica changed
/// the store meanwhile; whether it changed.
pub fn follow_once(k: &KafkaSettings, shared: &Shared) -> anyhow::Result<bool> {
    use std::sync::atomic::Ordering;
    let before = shared.writes.load(Ordering::SeqCst);
    let read = read(k)?;
    let mut store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
    if shared.writes.load(Ordering::SeqCst) != before || *store == read {
        return Ok(false);
    }
    *store = read;
    shared.replaced.fetch_add(1, Ordering::SeqCst);
    Ok(true)
}
