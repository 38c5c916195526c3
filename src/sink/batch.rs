//! Batching: items are grouped by key (campaign audience × action) into batches of at most
//! `max_items`, flushed when full or when their oldest item has waited `linger`.
//!
//! Pure and synchronous, with time passed in, so invariants are property-tested: no item is
//! lost or duplicated, items of one key keep their order, no batch exceeds the limit, and every
//! item is flushed at the latest `linger` after it arrived. Batches carry a sequence number in
//! creation order, which the dispatcher uses to keep per-audience ordering where it matters.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// A batch of items of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<K, T> {
    pub key: K,
    pub items: Vec<T>,
    /// Creation order over all keys (the order in which batches were closed).
    pub seq: u64,
}

struct Open<T> {
    items: Vec<T>,
    since: Instant,
}

/// Groups items into batches by key.
pub struct Batcher<K, T> {
    max_items: usize,
    linger: Duration,
    open: HashMap<K, Open<T>>,
    /// Keys in the order their open batch started (for expiry scans).
    next_seq: u64,
    buffered: usize,
}

impl<K: Hash + Eq + Clone + Ord, T> Batcher<K, T> {
    /// `max_items` ≥ 1.
    pub fn new(max_items: usize, linger: Duration) -> Self {
        assert!(max_items >= 1, "batches hold at least one item");
        Batcher {
            max_items,
            linger,
            open: HashMap::new(),
            next_seq: 0,
            buffered: 0,
        }
    }

    /// Adds an item; returns the key's batch if it is now full.
    pub fn push(&mut self, key: K, item: T, now: Instant) -> Option<Batch<K, T>> {
        let open = self.open.entry(key.clone()).or_insert_with(|| Open {
            items: Vec::new(),
            since: now,
        });
        open.items.push(item);
        self.buffered += 1;
        if open.items.len() >= self.max_items {
            return self.close(&key);
        }
        None
    }

    fn close(&mut self, key: &K) -> Option<Batch<K, T>> {
        let open = self.open.remove(key)?;
        self.buffered -= open.items.len();
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(Batch {
            key: key.clone(),
            items: open.items,
            seq,
        })
    }

    /// Closes every batch whose oldest item arrived at least `linger` before `now`, oldest
    /// first (ties by key).
    pub fn expired(&mut self, now: Instant) -> Vec<Batch<K, T>> {
        let mut due: Vec<(Instant, K)> = self
            .open
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.since) >= self.linger)
            .map(|(k, o)| (o.since, k.clone()))
            .collect();
        due.sort();
        due.into_iter()
            .filter_map(|(_, k)| self.close(&k))
            .collect()
    }

    /// When the next batch expires, if any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|o| o.since + self.linger).min()
    }

    /// Closes the open batch of `key`, if there is one.
    pub fn flush_key(&mut self, key: &K) -> Option<Batch<K, T>> {
        self.close(key)
    }

    /// Closes every open batch, oldest first.
    pub fn flush_all(&mut self) -> Vec<Batch<K, T>> {
        let mut keys: Vec<(Instant, K)> = self
            .open
            .iter()
            .map(|(k, o)| (o.since, k.clone()))
            .collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|(_, k)| self.close(&k))
            .collect()
    }

    /// Items buffered in open batches.
    pub fn len(&self) -> usize {
        self.buffered
    }

    pub fn is_empty(&self) -> bool {
        self.buffered == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Random pushes with random time steps: every item comes out exactly once, in order
        /// per key, in batches of at most `max`, and no later than `linger` after it arrived.
        #[test]
        fn no_loss_no_reorder_bounded_and_lingered(
            max in 1usize..6,
            linger_ms in 1u64..50,
            ops in proptest::collection::vec((0u8..3, 0u64..30), 0..200),
        ) {
            let start = Instant::now();
            let linger = Duration::from_millis(linger_ms);
            let mut b: Batcher<u8, (u8, usize, Instant)> = Batcher::new(max, linger);
            let mut out: Vec<Batch<u8, (u8, usize, Instant)>> = Vec::new();
            let mut now = start;
            let mut closed_at: Vec<Instant> = Vec::new();
            for (i, (key, step)) in ops.iter().enumerate() {
                let target = now + Duration::from_millis(*step);
                // The dispatcher wakes at each deadline before the next input arrives.
                while let Some(d) = b.next_deadline().filter(|&d| d <= target) {
                    now = d;
                    for batch in b.expired(now) {
                        closed_at.push(now);
                        out.push(batch);
                    }
                }
                now = target;
                if let Some(full) = b.push(*key, (*key, i, now), now) {
                    closed_at.push(now);
                    out.push(full);
                }
                if let Some(d) = b.next_deadline() {
                    prop_assert!(d > now, "an expired batch stayed open");
                }
            }
            while let Some(d) = b.next_deadline() {
                for batch in b.expired(d) {
                    closed_at.push(d);
                    out.push(batch);
                }
            }
            prop_assert!(b.is_empty());
            let mut seen: Vec<usize> = Vec::new();
            for (batch, at) in out.iter().zip(&closed_at) {
                prop_assert!(!batch.items.is_empty() && batch.items.len() <= max);
                for (k, i, arrived) in &batch.items {
                    prop_assert_eq!(*k, batch.key);
                    prop_assert!(at.duration_since(*arrived) <= linger, "lingered too long");
                    seen.push(*i);
                }
            }
            let mut sorted = seen.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..ops.len()).collect::<Vec<_>>(), "lost or duplicated");
            for key in 0u8..3 {
                let order: Vec<usize> = out
                    .iter()
                    .flat_map(|b| b.items.iter())
                    .filter(|(k, _, _)| *k == key)
                    .map(|(_, i, _)| *i)
                    .collect();
                prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "reordered within a key");
            }
            let seqs: Vec<u64> = out.iter().map(|b| b.seq).collect();
            prop_assert_eq!(seqs, (0..out.len() as u64).collect::<Vec<_>>());
        }
    }
}
