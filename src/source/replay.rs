//! The replay source: recorded topics, partitions interleaved deterministically.
//!
//! Each stream of the recording ([`Lines`]) is a partition, kept in its own order. Partitions
//! are merged by the key of their next line — its Kafka timestamp for `kcat -J` envelopes, its
//! event time for plain lines (a malformed line takes its partition's previous key) — ties
//! broken by partition index. The merge is a binary heap over one decoded head per partition,
//! so the order depends only on the files, never on timing. Replay has nothing to commit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{Source, SourceItem};
use crate::event::decode::{Decoder, Malformed};
use crate::event::recording::{Lines, Origin};
use crate::event::Record;

/// A partition's next line, decoded.
struct Head {
    origin: Origin,
    record: Result<Record, Malformed>,
}

/// Replays recorded topics.
pub struct ReplaySource<'a, L: Lines> {
    lines: L,
    decoder: Decoder<'a>,
    last_key: Vec<i64>,
    heads: Vec<Option<Head>>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    ended: Vec<usize>,
    /// The partition whose head was handed out last: its line is dropped on the next call.
    handed: Option<usize>,
    error: Option<std::io::Error>,
}

impl<'a, L: Lines> ReplaySource<'a, L> {
    pub fn new(lines: L, decoder: Decoder<'a>) -> Self {
        let mut s = ReplaySource {
            lines,
            decoder,
            last_key: Vec::new(),
            heads: Vec::new(),
            heap: BinaryHeap::new(),
            ended: Vec::new(),
            handed: None,
            error: None,
        };
        for p in 0..s.lines.streams() {
            s.heads.push(None);
            s.last_key.push(i64::MIN);
            s.load_head(p);
        }
        s
    }

    /// The recording's lines.
    pub fn lines(&self) -> &L {
        &self.lines
    }

    /// An I/O error that ended the input early, if any.
    pub fn take_error(&mut self) -> Option<std::io::Error> {
        self.error.take()
    }

    /// Decodes the next line of partition `p` into its head slot and queues it.
    fn load_head(&mut self, p: usize) {
        let line = match self.lines.front(p) {
            Ok(Some(line)) => line,
            Ok(None) => {
                self.ended.push(p);
                return;
            }
            Err(e) => {
                self.error.get_or_insert(e);
                self.ended.push(p);
                return;
            }
        };
        let record = line.record.and_then(|bytes| self.decoder.decode(&bytes));
        let key = match (&record, line.kafka_ts) {
            (_, Some(kts)) => kts,
            (Ok(r), None) => r.ts,
            (Err(_), None) => self.last_key[p],
        };
        self.last_key[p] = key;
        self.heads[p] = Some(Head {
            origin: line.origin,
            record,
        });
        self.heap.push(Reverse((key, p)));
    }
}

impl<'a, L: Lines> Source for ReplaySource<'a, L> {
    fn partitions(&self) -> usize {
        self.lines.streams()
    }

    fn next_item(&mut self) -> Option<SourceItem<'_>> {
        if let Some(p) = self.handed.take() {
            self.lines.pop(p);
            self.load_head(p);
        }
        if let Some(p) = self.ended.pop() {
            return Some(SourceItem::PartitionEnd { partition: p });
        }
        let Reverse((_, p)) = self.heap.pop()?;
        let head = self.heads[p].take().expect("queued partition has a head");
        self.handed = Some(p);
        let lines = &self.lines;
        let raw = lines
            .peek(p)
            .expect("a head's line stays the front until it is handed out")
            .raw;
        Some(SourceItem::Line {
            partition: p,
            source: lines.source_name(p),
            origin: head.origin,
            raw: std::borrow::Cow::Borrowed(raw),
            record: head.record,
        })
    }
}
