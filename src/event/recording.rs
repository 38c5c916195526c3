//! Recorded topics: files of plain JSON lines or of `kcat -C -J` envelopes, detected per line.
//!
//! A file's lines form *streams*: its plain lines one stream (one partition, file order); its
//! envelope lines one stream per `(topic, partition)`, in file (= offset) order. The replay
//! source merges streams by Kafka timestamp (envelopes) or event time (plain lines), through
//! the [`Lines`] trait: [`Recording`] holds files in memory (tests, `publish`), and
//! [`stream::RecordingStream`] reads them as the merge goes (`replay`: gzip, zstd and stdin
//! too, memory independent of the recording's size).

mod envelope;
pub mod stream;

/// Streams of lines, read front to back: what the replay source merges.
pub trait Lines {
    /// Number of streams (all known from the start: files are scanned for theirs).
    fn streams(&self) -> usize;
    /// The name of stream `s`: `path` for plain lines, `path#topic/partition` for envelopes.
    fn name(&self, s: usize) -> &str;
    /// The path part of [`Lines::name`] (for dead-letter output).
    fn source_name(&self, s: usize) -> &str {
        let name = self.name(s);
        name.split('#').next().unwrap_or(name)
    }
    /// The next line of stream `s` (read ahead as needed), `Ok(None)` at its end. It stays the
    /// front until [`Lines::pop`].
    fn front(&mut self, s: usize) -> std::io::Result<Option<Line<'_>>>;
    /// The front line of stream `s` as [`Lines::front`] last returned it (no reading).
    fn peek(&self, s: usize) -> Option<Line<'_>>;
    /// Drops the front line of stream `s`.
    fn pop(&mut self, s: usize);
    /// Hands up to `max` of stream `s`'s next lines to `take`, in order, as [`Lines::front`]
    /// and [`Lines::pop`] would one by one; `Ok(false)` once the stream has ended. On an
    /// error, the lines handed before it stay taken.
    fn take_lines(
        &mut self,
        s: usize,
        max: usize,
        take: &mut dyn FnMut(Line<'_>),
    ) -> std::io::Result<bool> {
        take_each(self, s, max, take)
    }
    /// Lines of only whitespace, which belong to no stream: all of them once every stream
    /// has been read to its end.
    fn blank_lines(&self) -> u64;
}

/// [`Lines::take_lines`] by [`Lines::front`] and [`Lines::pop`], line by line.
pub(crate) fn take_each<L: Lines + ?Sized>(
    lines: &mut L,
    s: usize,
    max: usize,
    take: &mut dyn FnMut(Line<'_>),
) -> std::io::Result<bool> {
    for _ in 0..max {
        match lines.front(s)? {
            Some(line) => take(line),
            None => return Ok(false),
        }
        lines.pop(s);
    }
    Ok(true)
}

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::decode::Malformed;

/// Where a line came from: for dead-letter output and error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub file: u32,
    /// 1-based line number in the file.
    pub line: u64,
}

/// One indexed stream of lines of one file.
#[derive(Debug)]
pub struct Stream {
    pub file: u32,
    /// `path` for plain lines, `path#topic/partition` for envelopes.
    pub name: String,
    /// Whether the stream's lines are `kcat -J` envelopes (a stream never mixes).
    pub envelopes: bool,
    /// Byte offset of each line's start, in stream order.
    starts: Vec<u64>,
    /// 1-based line number of each line.
    lines: Vec<u64>,
}

/// The files of a recording, loaded and indexed.
#[derive(Debug, Default)]
pub struct Recording {
    pub paths: Vec<PathBuf>,
    data: Vec<Vec<u8>>,
    pub streams: Vec<Stream>,
    /// Lines of only whitespace, over every file.
    pub blank_lines: u64,
}

/// A [`Recording`] read front to back, as [`Lines`].
pub struct Cursor<'r> {
    recording: &'r Recording,
    next: Vec<usize>,
}

/// A line, unwrapped from its envelope when it has one.
#[derive(Debug)]
pub struct Line<'a> {
    /// The original line as it is in the file (for dead-letter output).
    pub raw: &'a [u8],
    /// The record bytes: the line itself, or the envelope's payload.
    pub record: Result<Cow<'a, [u8]>, Malformed>,
    /// The Kafka timestamp of an envelope.
    pub kafka_ts: Option<i64>,
    pub origin: Origin,
}

pub(crate) fn looks_like_envelope(line: &[u8]) -> bool {
    envelope_hint(line).is_some()
}

/// Where `"partition"` first occurs in `bytes`: a line without it is no envelope.
pub(crate) fn envelope_hint(bytes: &[u8]) -> Option<usize> {
    // Built once: `memmem::find` builds its searcher on every call, which cost more than
    // the search on short lines (13 % of a replay).
    static PARTITION: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"partition\""));
    PARTITION.find(bytes)
}

pub(crate) fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A line of only whitespace (or nothing): skipped, and counted (`blank_lines`).
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The UTF-8 byte order mark some editors and exports put at the start of a file.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where a file's first line starts: after its byte order mark, if it has one.
pub(crate) fn skip_bom(data: &[u8]) -> usize {
    if data.starts_with(BOM) {
        BOM.len()
    } else {
        0
    }
}

impl Stream {
    fn new(file: u32, name: String, envelopes: bool) -> Stream {
        Stream {
            file,
            name,
            envelopes,
            starts: Vec::new(),
            lines: Vec::new(),
        }
    }
}

impl Recording {
    /// Loads and indexes the given files.
    pub fn load(paths: &[PathBuf]) -> std::io::Result<Recording> {
        let mut rec = Recording::default();
        for p in paths {
            let data = std::fs::read(p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot read {}: {e}", p.display()))
            })?;
            rec.add(p, data);
        }
        Ok(rec)
    }

    /// Adds one file's contents.
    pub fn add(&mut self, path: &Path, data: Vec<u8>) {
        let file = self.data.len() as u32;
        let mut plain: Option<usize> = None;
        let mut parts: FxHashMap<(String, i64), usize> = FxHashMap::default();
        let mut pos = skip_bom(&data);
        let mut lineno = 0u64;
        while pos < data.len() {
            let end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i);
            lineno += 1;
            let line = trim_cr(&data[pos..end]);
            if is_blank(line) {
                self.blank_lines += 1;
            } else {
                let idx = match envelope_key(line) {
                    None => *plain.get_or_insert_with(|| {
                        self.streams
                            .push(Stream::new(file, path.display().to_string(), false));
                        self.streams.len() - 1
                    }),
                    Some(k) => *parts.entry(k).or_insert_with_key(|k| {
                        let name = format!("{}#{}/{}", path.display(), k.0, k.1);
                        self.streams.push(Stream::new(file, name, true));
                        self.streams.len() - 1
                    }),
                };
                self.streams[idx].starts.push(pos as u64);
                self.streams[idx].lines.push(lineno);
            }
            pos = end + 1;
        }
        self.paths.push(path.to_owned());
        self.data.push(data);
    }

    /// Total bytes loaded.
    pub fn bytes(&self) -> u64 {
        self.data.iter().map(|d| d.len() as u64).sum()
    }

    /// Number of lines in stream `s`.
    pub fn len(&self, s: usize) -> usize {
        self.streams[s].starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.iter().all(|s| s.starts.is_empty())
    }

    /// Line `i` of stream `s`, unwrapped.
    pub fn line(&self, s: usize, i: usize) -> Line<'_> {
        let st = &self.streams[s];
        let data = &self.data[st.file as usize];
        let start = st.starts[i] as usize;
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |n| start + n);
        let raw = trim_cr(&data[start..end]);
        let origin = Origin {
            file: st.file,
            line: st.lines[i],
        };
        unwrap(raw, origin)
    }
}

/// The stream key of a line: `Some((topic, partition))` for a `kcat -J` envelope whose
/// topic and partition can be read; `None` for a plain line, and for an envelope too broken to
/// say which partition it belongs to (it goes with the file's plain lines, dead-lettered as
/// `invalid_envelope`).
pub(crate) fn envelope_key(line: &[u8]) -> Option<(String, i64)> {
    if !looks_like_envelope(line) {
        return None;
    }
    match envelope::parse(line) {
        Some(e) => e.key.map(|(topic, p)| (topic.into_owned(), p)),
        None => envelope::parse_lossy(line).and_then(|e| e.key),
    }
}

/// A line unwrapped from its envelope, when it has one.
pub(crate) fn unwrap(raw: &[u8], origin: Origin) -> Line<'_> {
    if looks_like_envelope(raw) {
        if let Some(env) = envelope::parse(raw) {
            // kcat payloads are escaped JSON text, so unescaping allocates.
            let record = env.payload.and_then(|p| {
                serde_json::from_str::<String>(p.get())
                    .map(|s| Cow::Owned(s.into_bytes()))
                    .map_err(|_| Malformed::InvalidEnvelope)
            });
            return Line {
                raw,
                record,
                kafka_ts: env.ts,
                origin,
            };
        }
        if let Some(env) = envelope::parse_lossy(raw) {
            return Line {
                raw,
                record: Err(if env.valid {
                    Malformed::InvalidUtf8
                } else {
                    Malformed::InvalidEnvelope
                }),
                kafka_ts: env.ts,
                origin,
            };
        }
    }
    plain_line(raw, origin)
}

/// A line that is no envelope: the record is the line.
pub(crate) fn plain_line(raw: &[u8], origin: Origin) -> Line<'_> {
    Line {
        raw,
        record: Ok(Cow::Borrowed(raw)),
        kafka_ts: None,
        origin,
    }
}

impl Recording {
    /// The recording as [`Lines`], from its first line.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            recording: self,
            next: vec![0; self.streams.len()],
        }
    }
}

impl Lines for Cursor<'_> {
    fn streams(&self) -> usize {
        self.recording.streams.len()
    }

    fn name(&self, s: usize) -> &str {
        &self.recording.streams[s].name
    }

    fn front(&mut self, s: usize) -> std::io::Result<Option<Line<'_>>> {
        Ok(self.peek(s))
    }

    fn peek(&self, s: usize) -> Option<Line<'_>> {
        let i = self.next[s];
        (i < self.recording.len(s)).then(|| self.recording.line(s, i))
    }

    fn pop(&mut self, s: usize) {
        self.next[s] += 1;
    }

    fn blank_lines(&self) -> u64 {
        self.recording.blank_lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kcat writes a payload's bytes as they are: a record with invalid UTF-8 makes a line
    /// that is not UTF-8, which is still that partition's envelope (its record malformed).
    #[test]
    fn an_envelope_whose_payload_is_not_utf8_stays_in_its_partition() {
        let mut r = Recording::default();
        let mut data = b"{\"topic\":\"ev\",\"partition\":1,\"offset\":0,\"ts\":5,\"payload\":\"{\\\"user_id\\\":\\\"b\xff\\\"}\"}\n".to_vec();
        data.extend_from_slice(
            b"{\"topic\":\"ev\",\"partition\":1,\"offset\":1,\"ts\":6,\"payload\":\"{}\"}\n",
        );
        r.add(Path::new("f.jsonl"), data);
        assert_eq!(r.streams.len(), 1, "one stream: ev/1");
        assert_eq!(r.streams[0].name, "f.jsonl#ev/1");
        let bad = r.line(0, 0);
        assert_eq!(bad.record.unwrap_err(), Malformed::InvalidUtf8);
        assert_eq!(bad.kafka_ts, Some(5));
        assert_eq!(r.line(0, 1).kafka_ts, Some(6));
    }

    /// A byte order mark at the start of a file is not part of its first line; blank lines
    /// are counted; an envelope too broken to say its partition goes with the plain lines,
    /// dead-lettered as `invalid_envelope`, the others stay in their partition.
    #[test]
    fn bom_blank_lines_and_broken_envelopes() {
        let mut r = Recording::default();
        let data = concat!(
            "\u{feff}{\"user_id\":\"a\",\"event\":\"X\",\"ts\":1}\n",
            "\n",
            " \t\r\n",
            "{\"topic\":\"ev\",\"partition\":\"1\",\"ts\":5,\"payload\":\"{}\"}\n",
            "{\"topic\":\"ev\",\"partition\":1,\"offset\":0,\"ts\":6,\"key\":\"b\"}\n",
            "{\"topic\":\"ev\",\"partition\":1,\"ts\":7,\"payload\":\"{}\",\"payload\":\"{}\"}\n",
            "{\"topic\":\"ev\",\"partition\":1,\"ts\":8.5,\"payload\":\"{}\"}\n",
            "\u{feff}{\"user_id\":\"a\",\"event\":\"X\",\"ts\":2}",
        );
        r.add(Path::new("f.jsonl"), data.as_bytes().to_vec());
        assert_eq!(r.blank_lines, 2);
        assert_eq!(r.streams.len(), 2);
        assert_eq!(r.streams[0].name, "f.jsonl");
        let first = r.line(0, 0);
        assert_eq!(first.raw, br#"{"user_id":"a","event":"X","ts":1}"#);
        assert!(first.record.is_ok());
        assert_eq!(r.line(0, 1).origin.line, 4);
        assert_eq!(r.line(0, 1).record.unwrap_err(), Malformed::InvalidEnvelope);
        assert_eq!(r.line(0, 1).kafka_ts, Some(5));
        // Only a file's first line may start with a mark: elsewhere it is the line's.
        assert!(r.line(0, 2).raw.starts_with(BOM));
        assert_eq!(r.streams[1].name, "f.jsonl#ev/1");
        let tss: Vec<_> = (0..3).map(|i| r.line(1, i).kafka_ts).collect();
        assert_eq!(tss, [Some(6), Some(7), None]);
        for i in 0..3 {
            assert_eq!(r.line(1, i).record.unwrap_err(), Malformed::InvalidEnvelope);
        }
    }

    #[test]
    fn splits_plain_and_envelope_lines_into_streams() {
        let mut r = Recording::default();
        let data = concat!(
            "{\"user_id\":\"a\",\"event\":\"X\",\"ts\":1}\n",
            "\n",
            "{\"topic\":\"ev\",\"partition\":1,\"offset\":0,\"ts\":5,\"key\":\"b\",",
            "\"payload\":\"{\\\"user_id\\\":\\\"b\\\",\\\"event\\\":\\\"X\\\",\\\"ts\\\":2}\"}\r\n",
            "{\"topic\":\"ev\",\"partition\":0,\"offset\":0,\"ts\":6,\"payload\":null}\n",
            "not json\n",
        );
        r.add(Path::new("f.jsonl"), data.as_bytes().to_vec());
        assert_eq!(r.streams.len(), 3);
        assert_eq!(r.streams[0].name, "f.jsonl");
        assert_eq!(r.len(0), 2, "plain lines, the blank one skipped");
        assert_eq!(r.streams[1].name, "f.jsonl#ev/1");
        let l = r.line(1, 0);
        assert_eq!(l.kafka_ts, Some(5));
        assert_eq!(l.origin.line, 3);
        assert_eq!(
            &*l.record.unwrap(),
            b"{\"user_id\":\"b\",\"event\":\"X\",\"ts\":2}".as_slice()
        );
        assert_eq!(r.line(2, 0).record.unwrap_err(), Malformed::InvalidEnvelope);
        assert_eq!(r.line(0, 1).raw, b"not json");
        assert_eq!(r.line(0, 1).origin.line, 5);
    }
}
