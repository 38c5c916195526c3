//! The replay source: recorded topics, partitions interleaved deterministically.
//!
//! Each stream of the recording ([`Lines`]) is a partition, kept in its own order. Partitions
//! are merged by the key of their next line — its Kafka timestamp for `kcat -J` envelopes, its
//! event time for plain lines (a malformed line takes its partition's previous key) — ties
//! broken by partition index. The merge is a binary heap over one decoded head per partition,
//! so the order depends only on the files, never on timing. Replay has nothing to commit.
//!
//! # Decoding ahead, in parallel
//!
//! Lines are taken off a partition in chunks (their bytes copied into the chunk's buffers)
//! and each chunk is decoded whole on one of `decode_threads` long-lived helpers (each with
//! its own decoder over a copy of the schema), while the merge hands out the partition's
//! previous chunk: every partition has its next chunk decoding while its current one is
//! merged, so reading and merging on the calling thread overlap with decoding on the others.
//! With one decode thread, chunks are decoded on the calling thread when they are needed.
//! Decoding is a pure function of the line, so the items, and everything downstream, are the
//! same for any thread count. The helpers live as long as the source (a thread per chunk
//! would start a fresh allocator heap each time), and chunk buffers go round between the
//! calling thread and the helpers instead of being allocated per chunk.

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

/// Where a line's record bytes are in its chunk.
#[derive(Debug, Clone)]
enum RecordBytes {
    /// The line itself (a plain line): its range in [`Chunk::raw`].
    Line,
    /// An envelope's payload, unescaped: its range in [`Chunk::payloads`].
    Payload(Range<usize>),
}

/// A line taken off its partition: origin, Kafka timestamp, its bytes in the chunk's `raw`,
/// and where its record's bytes are (or why it has none).
type Span = (
    Origin,
    Option<i64>,
    Range<usize>,
    Result<RecordBytes, Malformed>,
);

/// A line taken off its partition, decoded.
struct Decoded {
    origin: Origin,
    kafka_ts: Option<i64>,
    /// The line's bytes in the chunk's `raw`.
    raw: Range<usize>,
    record: Result<Record, Malformed>,
}

/// Consecutive lines of one partition: their bytes as in the input, the unescaped payloads of
/// envelopes, and the lines.
#[derive(Default)]
struct Chunk {
    raw: Vec<u8>,
    payloads: Vec<u8>,
    spans: Vec<Span>,
}

impl Chunk {
    fn clear(&mut self) {
        self.raw.clear();
        self.payloads.clear();
        self.spans.clear();
    }

    fn decode(&self, decoder: &Decoder<'_>, out: &mut Vec<Decoded>) {
        out.extend(
            self.spans
                .iter()
                .map(|(origin, kafka_ts, raw, record)| Decoded {
                    origin: *origin,
                    kafka_ts: *kafka_ts,
                    raw: raw.clone(),
                    record: record.clone().and_then(|r| {
                        let bytes = match r {
                            RecordBytes::Line => &self.raw[raw.clone()],
                            RecordBytes::Payload(p) => &self.payloads[p],
                        };
                        decoder.decode_at(bytes, *kafka_ts)
                    }),
                }),
        );
    }
}

/// A chunk of partition `partition` (its `seq`-th) and its decoded lines (once decoded).
struct Job {
    partition: usize,
    seq: u64,
    chunk: Chunk,
    out: Vec<Decoded>,
}

/// Long-lived decode helpers: any of them takes the next job on `jobs` and answers on `done`.
/// The calling thread takes queued jobs too while it waits for one (see
/// [`ReplaySource::next_chunk`]).
struct Pool {
    jobs: Sender<Job>,
    queued: Receiver<Job>,
    done: Receiver<Job>,
}

impl Pool {
    fn start(helpers: usize, format: Format, schema: &Schema) -> Pool {
        let (done_tx, done) = crossbeam_channel::unbounded::<Job>();
        let (jobs, queued) = crossbeam_channel::unbounded::<Job>();
        let schema = Arc::new(schema.clone());
        for i in 0..helpers {
            let (rx, done_tx, schema) = (queued.clone(), done_tx.clone(), schema.clone());
            std::thread::Builder::new()
                .name(format!("decode-{i}"))
                .spawn(move || {
                    let decoder = Decoder::new(format, &schema);
                    for mut job in rx {
                        job.chunk.decode(&decoder, &mut job.out);
                        if done_tx.send(job).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawn a decode thread");
        }
        Pool { jobs, queued, done }
    }
}

/// Chunks taken off a partition ahead of the one being handed out.
const IN_FLIGHT: usize = 2;

/// A partition's chunk being handed out, and the next ones.
#[derive(Default)]
struct Ahead {
    /// The chunk the items came from.
    chunk: Chunk,
    items: Vec<Decoded>,
    /// The next item to hand out.
    next: usize,
    /// The next chunks in order: `(seq, the chunk once decoded)`.
    coming: VecDeque<(u64, Option<Job>)>,
    /// The `seq` of the next chunk taken off the input.
    seq: u64,
    /// The input has no more lines for this partition.
    done: bool,
}

/// Replays recorded topics.
pub struct ReplaySource<'a, L: Lines> {
    lines: L,
    /// Each partition's [`Lines::source_name`], looked up once.
    sources: Vec<Box<str>>,
    decoder: Decoder<'a>,
    chunk: usize,
    last_key: Vec<i64>,
    ahead: Vec<Ahead>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    ended: Vec<usize>,
    /// The partition whose head was handed out last: it moves on at the next call.
    handed: Option<usize>,
    error: Option<std::io::Error>,
    pool: Option<Pool>,
    /// Emptied chunks and item buffers, for the next chunks.
    spare: Vec<(Chunk, Vec<Decoded>)>,
}

impl<'a, L: Lines> ReplaySource<'a, L> {
    /// A source decoding on one thread per core.
    pub fn new(lines: L, decoder: Decoder<'a>) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_decode_threads(lines, decoder, threads)
    }

    /// A source decoding on `threads` threads: the calling one and `threads - 1` helpers.
    pub fn with_decode_threads(lines: L, decoder: Decoder<'a>, threads: usize) -> Self {
        let streams = lines.streams();
        let chunk = (CHUNK_LINES * 8 / streams.max(1)).clamp(64, CHUNK_LINES);
        let pool =
            (threads > 1).then(|| Pool::start(threads - 1, decoder.format(), decoder.schema()));
        let sources = (0..streams).map(|p| lines.source_name(p).into()).collect();
        let mut s = ReplaySource {
            lines,
            sources,
            decoder,
            chunk,
            last_key: vec![i64::MIN; streams],
            ahead: (0..streams).map(|_| Ahead::default()).collect(),
            heap: BinaryHeap::new(),
            ended: Vec::new(),
            handed: None,
            error: None,
            pool,
            spare: Vec::new(),
        };
        // Every partition's first chunks are queued before any is waited for.
        for p in 0..streams {
            s.prefetch(p);
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

    /// Takes chunks of partition `p` off the input until [`IN_FLIGHT`] are on their way
    /// (queued for decoding) or the partition has no more lines.
    fn prefetch(&mut self, p: usize) {
        while !self.ahead[p].done && self.ahead[p].coming.len() < IN_FLIGHT {
            let Some(chunk) = self.take_chunk(p) else {
                break;
            };
            let ahead = &mut self.ahead[p];
            let (seq, out) = (ahead.seq, chunk.1);
            ahead.seq += 1;
            let job = Job {
                partition: p,
                seq,
                chunk: chunk.0,
                out,
            };
            match &self.pool {
                Some(pool) => {
                    ahead.coming.push_back((seq, None));
                    pool.jobs
                        .send(job)
                        .expect("decode helpers live as long as the source");
                }
                None => ahead.coming.push_back((seq, Some(job))),
            }
        }
    }

    /// Partition `p`'s next lines, up to a chunk (`None` if it has no more).
    fn take_chunk(&mut self, p: usize) -> Option<(Chunk, Vec<Decoded>)> {
        let (mut chunk, out) = self.spare.pop().unwrap_or_default();
        let taken = self.lines.take_lines(p, self.chunk, &mut |line| {
            let raw = chunk.raw.len()..chunk.raw.len() + line.raw.len();
            chunk.raw.extend_from_slice(line.raw);
            let record = line.record.map(|bytes| match bytes {
                std::borrow::Cow::Borrowed(_) => RecordBytes::Line,
                std::borrow::Cow::Owned(bytes) => {
                    let r = chunk.payloads.len()..chunk.payloads.len() + bytes.len();
                    chunk.payloads.extend_from_slice(&bytes);
                    RecordBytes::Payload(r)
                }
            });
            chunk.spans.push((line.origin, line.kafka_ts, raw, record));
        });
        match taken {
            Ok(true) => {}
            Ok(false) => self.ahead[p].done = true,
            Err(e) => {
                self.error.get_or_insert(e);
                self.ahead[p].done = true;
            }
        }
        if chunk.spans.is_empty() {
            self.spare.push((chunk, out));
            return None;
        }
        Some((chunk, out))
    }

    /// Files a decoded job with its partition's coming chunks.
    fn file(&mut self, job: Job) {
        let coming = &mut self.ahead[job.partition].coming;
        let slot = coming
            .iter_mut()
            .find(|(seq, _)| *seq == job.seq)
            .expect("a decoded chunk is one its partition waits for");
        slot.1 = Some(job);
    }

    /// Makes partition `p`'s next chunk its current one and queues more; `false` when it has
    /// no more. While the helpers are still decoding it, this thread decodes queued chunks
    /// (of any partition) instead of waiting.
    fn next_chunk(&mut self, p: usize) -> bool {
        let Some((_, first)) = self.ahead[p].coming.front() else {
            return false;
        };
        let mut ready = first.is_some();
        while !ready {
            let pool = self
                .pool
                .as_ref()
                .expect("pending chunks are with the helpers");
            let job = match pool.queued.try_recv() {
                Ok(mut job) => {
                    job.chunk.decode(&self.decoder, &mut job.out);
                    job
                }
                Err(_) => pool
                    .done
                    .recv()
                    .expect("decode helpers live as long as the source"),
            };
            ready =
                job.partition == p && Some(job.seq) == self.ahead[p].coming.front().map(|c| c.0);
            self.file(job);
        }
        let (_, job) = self.ahead[p].coming.pop_front().expect("a first chunk");
        let mut job = job.expect("decoded");
        if self.pool.is_none() {
            job.chunk.decode(&self.decoder, &mut job.out);
        }
        let ahead = &mut self.ahead[p];
        let mut chunk = std::mem::replace(&mut ahead.chunk, job.chunk);
        let mut items = std::mem::replace(&mut ahead.items, job.out);
        ahead.next = 0;
        chunk.clear();
        items.clear();
        self.spare.push((chunk, items));
        self.prefetch(p);
        true
    }

    /// Queues partition `p`'s next decoded line as its head (taking its next chunk if needed).
    fn load_head(&mut self, p: usize) {
        if self.ahead[p].next >= self.ahead[p].items.len() && !self.next_chunk(p) {
            self.ended.push(p);
            return;
        }
        let ahead = &self.ahead[p];
        let head = &ahead.items[ahead.next];
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
            self.ahead[p].next += 1;
            self.load_head(p);
        }
        if let Some(p) = self.ended.pop() {
            return Some(SourceItem::PartitionEnd { partition: p });
        }
        let Reverse((_, p)) = self.heap.pop()?;
        self.handed = Some(p);
        let ahead = &mut self.ahead[p];
        let head = &mut ahead.items[ahead.next];
        // The record moves out; the partition moves past it on the next call.
        let record = std::mem::replace(&mut head.record, Err(Malformed::InvalidJson));
        Some(SourceItem::Line {
            partition: p,
            source: &self.sources[p],
            origin: head.origin,
            kafka_ts: head.kafka_ts,
            raw: std::borrow::Cow::Borrowed(&ahead.chunk.raw[head.raw.clone()]),
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
