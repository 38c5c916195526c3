//! The replay source: recorded topics, partitions interleaved deterministically.
//!
//! Each stream of the recording ([`Lines`]) is a partition, kept in its own order. Partitions
//! are merged by the key of their next line — its Kafka timestamp for `kcat -J` envelopes, its
//! event time for plain lines (a malformed line takes its partition's previous key) — ties
//! broken by partition index. The merge is a binary heap over one decoded head per partition,
//! so the order depends only on the files, never on timing. Replay has nothing to commit.
//!
//! # Decoding in parallel
//!
//! Lines are taken off a partition in chunks (their bytes copied into the chunk's buffer) and
//! the chunk is decoded on `decode_threads` threads at once, each thread a contiguous part of
//! it; the merge then hands the decoded lines out in their order. Decoding is a pure function
//! of the line, so the items, and everything downstream, are the same for any thread count.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::Range;

use super::{Source, SourceItem};
use crate::event::decode::{Decoder, Malformed};
use crate::event::recording::{Lines, Origin};
use crate::event::Record;

/// Lines decoded at once per partition (fewer per partition when there are many).
const CHUNK_LINES: usize = 4096;
/// Below this many lines a chunk is decoded on the calling thread alone.
const PARALLEL_MIN: usize = 512;

/// A line taken off its partition: origin, Kafka timestamp, its bytes in the chunk buffer,
/// and its record's bytes in the scratch buffer (or why it has none).
type Span = (
    Origin,
    Option<i64>,
    Range<usize>,
    Result<Range<usize>, Malformed>,
);

/// A line taken off its partition, decoded.
struct Decoded {
    origin: Origin,
    kafka_ts: Option<i64>,
    /// The line's bytes in the chunk buffer.
    raw: Range<usize>,
    record: Result<Record, Malformed>,
}

/// A partition's decoded lines not handed out yet, and the bytes they came from.
#[derive(Default)]
struct Ahead {
    raw: Vec<u8>,
    items: VecDeque<Decoded>,
    /// The input has no more lines.
    done: bool,
}

/// Replays recorded topics.
pub struct ReplaySource<'a, L: Lines> {
    lines: L,
    decoder: Decoder<'a>,
    threads: usize,
    chunk: usize,
    last_key: Vec<i64>,
    ahead: Vec<Ahead>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    ended: Vec<usize>,
    /// The partition whose head was handed out last: it is dropped on the next call.
    handed: Option<usize>,
    error: Option<std::io::Error>,
    /// Record bytes of the chunk being taken (an envelope's payload may be unescaped).
    scratch: Vec<u8>,
    spans: Vec<Span>,
}

impl<'a, L: Lines> ReplaySource<'a, L> {
    /// A source decoding on one thread per core.
    pub fn new(lines: L, decoder: Decoder<'a>) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_decode_threads(lines, decoder, threads)
    }

    /// A source decoding each chunk on `threads` threads.
    pub fn with_decode_threads(lines: L, decoder: Decoder<'a>, threads: usize) -> Self {
        let streams = lines.streams();
        let chunk = (CHUNK_LINES * 8 / streams.max(1)).clamp(64, CHUNK_LINES);
        let mut s = ReplaySource {
            lines,
            decoder,
            threads: threads.max(1),
            chunk,
            last_key: vec![i64::MIN; streams],
            ahead: (0..streams).map(|_| Ahead::default()).collect(),
            heap: BinaryHeap::new(),
            ended: Vec::new(),
            handed: None,
            error: None,
            scratch: Vec::new(),
            spans: Vec::new(),
        };
        for p in 0..streams {
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

    /// Takes the next chunk of partition `p` off the input and decodes it.
    fn fill(&mut self, p: usize) {
        let ahead = &mut self.ahead[p];
        ahead.raw.clear();
        self.scratch.clear();
        self.spans.clear();
        while self.spans.len() < self.chunk {
            let line = match self.lines.front(p) {
                Ok(Some(line)) => line,
                Ok(None) => {
                    ahead.done = true;
                    break;
                }
                Err(e) => {
                    self.error.get_or_insert(e);
                    ahead.done = true;
                    break;
                }
            };
            let raw = ahead.raw.len()..ahead.raw.len() + line.raw.len();
            ahead.raw.extend_from_slice(line.raw);
            let record = line.record.map(|bytes| {
                let r = self.scratch.len()..self.scratch.len() + bytes.len();
                self.scratch.extend_from_slice(&bytes);
                r
            });
            self.spans.push((line.origin, line.kafka_ts, raw, record));
            self.lines.pop(p);
        }
        let (decoder, scratch, spans) = (&self.decoder, &self.scratch, &self.spans);
        let decode = |part: &[Span]| {
            part.iter()
                .map(|(origin, kafka_ts, raw, record)| Decoded {
                    origin: *origin,
                    kafka_ts: *kafka_ts,
                    raw: raw.clone(),
                    record: record.clone().and_then(|r| decoder.decode(&scratch[r])),
                })
                .collect::<Vec<_>>()
        };
        if self.threads == 1 || spans.len() < PARALLEL_MIN {
            ahead.items.extend(decode(spans));
            return;
        }
        let per = spans.len().div_ceil(self.threads);
        let parts: Vec<Vec<Decoded>> = std::thread::scope(|scope| {
            let mut chunks = spans.chunks(per);
            let first = chunks.next().unwrap_or_default();
            let helpers: Vec<_> = chunks.map(|c| scope.spawn(move || decode(c))).collect();
            let mut parts = vec![decode(first)];
            parts.extend(
                helpers
                    .into_iter()
                    .map(|h| h.join().expect("a decode thread panicked")),
            );
            parts
        });
        for part in parts {
            ahead.items.extend(part);
        }
    }

    /// Queues partition `p`'s next decoded line as its head (decoding a chunk if needed).
    fn load_head(&mut self, p: usize) {
        if self.ahead[p].items.is_empty() {
            if self.ahead[p].done {
                self.ended.push(p);
                return;
            }
            self.fill(p);
            if self.ahead[p].items.is_empty() {
                self.ended.push(p);
                return;
            }
        }
        let head = self.ahead[p].items.front().expect("not empty");
        let key = match (&head.record, head.kafka_ts) {
            (_, Some(kts)) => kts,
            (Ok(r), None) => r.ts,
            (Err(_), None) => self.last_key[p],
        };
        self.last_key[p] = key;
        self.heap.push(Reverse((key, p)));
    }
}

impl<'a, L: Lines> Source for ReplaySource<'a, L> {
    fn partitions(&self) -> usize {
        self.lines.streams()
    }

    fn next_item(&mut self) -> Option<SourceItem<'_>> {
        if let Some(p) = self.handed.take() {
            self.ahead[p].items.pop_front();
            self.load_head(p);
        }
        if let Some(p) = self.ended.pop() {
            return Some(SourceItem::PartitionEnd { partition: p });
        }
        let Reverse((_, p)) = self.heap.pop()?;
        self.handed = Some(p);
        let ahead = &mut self.ahead[p];
        let head = ahead
            .items
            .front_mut()
            .expect("a queued partition has a head");
        // The record moves out; the emptied slot is popped on the next call.
        let record = std::mem::replace(&mut head.record, Err(Malformed::InvalidJson));
        Some(SourceItem::Line {
            partition: p,
            source: self.lines.source_name(p),
            origin: head.origin,
            raw: std::borrow::Cow::Borrowed(&ahead.raw[head.raw.clone()]),
            record,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::recording::Recording;
    use crate::generate::{generate, Format, GenerateArgs};

    /// Everything a source hands out, in order, as text.
    fn items(recording: &Recording, config: &Config, threads: usize) -> Vec<String> {
        let decoder = Decoder::new(config.source.format, &config.schema);
        let mut source = ReplaySource::with_decode_threads(recording.cursor(), decoder, threads);
        let mut out = Vec::new();
        while let Some(item) = source.next_item() {
            out.push(match item {
                SourceItem::PartitionEnd { partition } => format!("end {partition}"),
                SourceItem::Line {
                    partition,
                    source,
                    origin,
                    raw,
                    record,
                } => format!(
                    "{partition} {source} {origin:?} {} {record:?}",
                    String::from_utf8_lossy(&raw)
                ),
            });
        }
        out
    }

    #[test]
    fn the_items_do_not_depend_on_the_decode_threads() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
                .unwrap();
        let config = Config::parse(&text, Vec::new()).unwrap();
        // Three partitions, some malformed lines, out-of-order events, more lines than a
        // chunk so that chunks are refilled.
        let args = GenerateArgs {
            users: 500,
            events: 12_000,
            seed: 3,
            format: Format::Native,
            start: "2026-11-02T00:00:00Z".into(),
            malformed_pct: 2.0,
            disorder_ms: 3000,
            partitions: 3,
        };
        let mut data = Vec::new();
        generate(&args, &mut data).unwrap();
        let mut recording = Recording::default();
        recording.add(std::path::Path::new("gen.jsonl"), data);
        assert!(
            recording.streams.len() >= 2,
            "the test needs several partitions"
        );
        let one = items(&recording, &config, 1);
        assert!(one.len() > 12_000);
        assert!(one.iter().any(|i| i.contains("Err(")), "no malformed line");
        for threads in [2, 3, 8] {
            assert!(
                items(&recording, &config, threads) == one,
                "{threads} threads differ"
            );
        }
    }
}
