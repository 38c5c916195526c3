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
//! the chunk is decoded on `decode_threads` threads at once — the caller's and long-lived
//! helpers (each with its own decoder over a copy of the schema), each a contiguous part of
//! it; the merge then hands the decoded lines out in their order. Decoding is a pure function
//! of the line, so the items, and everything downstream, are the same for any thread count.
//! The helpers live as long as the source: a thread per chunk would start a fresh allocator
//! heap each time (the kernel zeroing its pages showed as a fifth of the profile).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use super::{Source, SourceItem};
use crate::event::decode::{Decoder, Malformed};
use crate::event::recording::{Lines, Origin};
use crate::event::{Format, Record, Schema};

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
    /// The chunk being decoded: its record bytes (an envelope's payload may be unescaped)
    /// and its lines; shared with the helpers while they decode, reused afterwards.
    chunk_data: Arc<Chunk>,
    pool: Option<Pool>,
}

/// A chunk's record bytes and lines.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

impl Chunk {
    fn decode(&self, decoder: &Decoder<'_>, part: Range<usize>, out: &mut Vec<Decoded>) {
        out.extend(
            self.spans[part]
                .iter()
                .map(|(origin, kafka_ts, raw, record)| Decoded {
                    origin: *origin,
                    kafka_ts: *kafka_ts,
                    raw: raw.clone(),
                    record: record
                        .clone()
                        .and_then(|r| decoder.decode_at(&self.bytes[r], *kafka_ts)),
                }),
        );
    }
}

/// A part of a chunk for a helper, and the buffer to decode it into.
struct Job {
    chunk: Arc<Chunk>,
    part: Range<usize>,
    out: Vec<Decoded>,
}

/// Long-lived decode helpers: helper `i` takes jobs on `jobs[i]` and answers on `done`.
struct Pool {
    jobs: Vec<Sender<Job>>,
    done: Receiver<(usize, Vec<Decoded>)>,
    /// Emptied result buffers, for the next jobs.
    spare: Vec<Vec<Decoded>>,
}

impl Pool {
    fn start(helpers: usize, format: Format, schema: &Schema) -> Pool {
        let (done_tx, done) = crossbeam_channel::unbounded();
        let schema = Arc::new(schema.clone());
        let jobs = (0..helpers)
            .map(|i| {
                let (tx, rx) = crossbeam_channel::bounded::<Job>(1);
                let (done_tx, schema) = (done_tx.clone(), schema.clone());
                std::thread::Builder::new()
                    .name(format!("decode-{i}"))
                    .spawn(move || {
                        let decoder = Decoder::new(format, &schema);
                        for mut job in rx {
                            job.chunk.decode(&decoder, job.part, &mut job.out);
                            drop(job.chunk);
                            if done_tx.send((i, job.out)).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn a decode thread");
                tx
            })
            .collect();
        Pool {
            jobs,
            done,
            spare: Vec::new(),
        }
    }
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
            chunk_data: Arc::default(),
            pool: None,
        };
        if s.threads > 1 {
            s.pool = Some(Pool::start(
                s.threads - 1,
                s.decoder.format(),
                s.decoder.schema(),
            ));
        }
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
        let chunk =
            Arc::get_mut(&mut self.chunk_data).expect("helpers hold no chunk between fills");
        chunk.bytes.clear();
        chunk.spans.clear();
        while chunk.spans.len() < self.chunk {
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
                let r = chunk.bytes.len()..chunk.bytes.len() + bytes.len();
                chunk.bytes.extend_from_slice(&bytes);
                r
            });
            chunk.spans.push((line.origin, line.kafka_ts, raw, record));
            self.lines.pop(p);
        }
        let n = chunk.spans.len();
        let pool = match &mut self.pool {
            Some(pool) if n >= PARALLEL_MIN => pool,
            _ => {
                let mut out = Vec::with_capacity(n);
                self.chunk_data.decode(&self.decoder, 0..n, &mut out);
                ahead.items.extend(out);
                return;
            }
        };
        // Part 0 here, the others on the helpers, all at once.
        let per = n.div_ceil(pool.jobs.len() + 1);
        let mut sent = 0;
        for (i, tx) in pool.jobs.iter().enumerate() {
            let part = ((i + 1) * per).min(n)..((i + 2) * per).min(n);
            let out = pool.spare.pop().unwrap_or_default();
            let job = Job {
                chunk: self.chunk_data.clone(),
                part,
                out,
            };
            tx.send(job)
                .expect("decode helpers live as long as the source");
            sent += 1;
        }
        let mut first = pool.spare.pop().unwrap_or_default();
        self.chunk_data
            .decode(&self.decoder, 0..per.min(n), &mut first);
        let mut parts: Vec<Option<Vec<Decoded>>> = (0..sent).map(|_| None).collect();
        for _ in 0..sent {
            let (i, out) = pool
                .done
                .recv()
                .expect("decode helpers live as long as the source");
            parts[i] = Some(out);
        }
        ahead.items.extend(first.drain(..));
        pool.spare.push(first);
        for mut out in parts.into_iter().flatten() {
            ahead.items.extend(out.drain(..));
            pool.spare.push(out);
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
            kafka_ts: head.kafka_ts,
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
                    kafka_ts,
                    raw,
                    record,
                } => format!(
                    "{partition} {source} {origin:?} {kafka_ts:?} {} {record:?}",
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
            days: 0,
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
