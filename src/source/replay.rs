//! The replay source: recorded topics, partitions interleaved deterministically.
//!
//! Each stream of the [`Recording`] is a partition, kept in its own order. Partitions are merged
//! by the key of their next line — its Kafka timestamp for `kcat -J` envelopes, its event time
//! for plain lines (a malformed line takes its partition's previous key) — ties broken by
//! partition index. The merge is a binary heap over one decoded head per partition, so the
//! order depends only on the files, never on timing. Replay has nothing to commit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Source, SourceItem};
use crate::event::decode::Decoder;
use crate::event::recording::Recording;

/// Replays a loaded recording.
pub struct ReplaySource<'a> {
    recording: &'a Recording,
    decoder: Decoder<'a>,
    next_line: Vec<usize>,
    last_key: Vec<i64>,
    heads: Vec<Option<SourceItem<'a>>>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    ended: Vec<usize>,
}

impl<'a> ReplaySource<'a> {
    pub fn new(recording: &'a Recording, decoder: Decoder<'a>) -> Self {
        let n = recording.streams.len();
        let mut s = ReplaySource {
            recording,
            decoder,
            next_line: vec![0; n],
            last_key: vec![i64::MIN; n],
            heads: (0..n).map(|_| None).collect(),
            heap: BinaryHeap::with_capacity(n),
            ended: Vec::new(),
        };
        for p in 0..n {
            s.load_head(p);
        }
        s
    }

    /// Decodes the next line of partition `p` into its head slot and queues it.
    fn load_head(&mut self, p: usize) {
        let i = self.next_line[p];
        if i >= self.recording.len(p) {
            self.ended.push(p);
            return;
        }
        self.next_line[p] = i + 1;
        let line = self.recording.line(p, i);
        let record = line.record.and_then(|bytes| self.decoder.decode(&bytes));
        let key = match (&record, line.kafka_ts) {
            (_, Some(kts)) => kts,
            (Ok(r), None) => r.ts,
            (Err(_), None) => self.last_key[p],
        };
        self.last_key[p] = key;
        self.heads[p] = Some(SourceItem::Line {
            partition: p,
            origin: line.origin,
            raw: std::borrow::Cow::Borrowed(line.raw),
            record,
        });
        self.heap.push(Reverse((key, p)));
    }
}

impl<'a> Source<'a> for ReplaySource<'a> {
    fn partitions(&self) -> usize {
        self.recording.streams.len()
    }

    fn partition_name(&self, p: usize) -> String {
        self.recording.streams[p].name.clone()
    }

    fn next_item(&mut self) -> Option<SourceItem<'a>> {
        if let Some(p) = self.ended.pop() {
            return Some(SourceItem::PartitionEnd { partition: p });
        }
        let Reverse((_, p)) = self.heap.pop()?;
        let item = self.heads[p].take().expect("queued partition has a head");
        self.load_head(p);
        Some(item)
    }
}
