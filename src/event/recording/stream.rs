//! Recorded topics read as the replay goes: memory does not grow with the recording.
//!
//! An input is a path or `-` (stdin); gzip and zstd are recognised by their magic bytes, so
//! `.gz` / `.zst` files (and compressed stdin) need no flag. Each file is read once, in order,
//! and its lines are handed to their streams' queues ([`Lines::front`] reads ahead until the
//! wanted stream has a line or the file ends).
//!
//! Streams are the same as those of an in-memory [`Recording`](super::Recording), and in the
//! same order: a file is scanned for its streams when opened (one extra sequential read,
//! keeping only the names), so every partition holds the watermark back from the start.
//! Stdin cannot be read twice, so it is first copied as it comes (still compressed, if it is)
//! to an unnamed temporary file, which is then read like any other.
//!
//! Memory: a queue holds the lines of its stream read ahead while another stream of the same
//! file was wanted. Files whose partitions are interleaved (as `kcat` writes them) keep that
//! small; a file holding one partition after another buffers the later ones while the first
//! is merged — split such files per partition.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use super::{
    envelope_hint, envelope_key, is_blank, looks_like_envelope, plain_line, take_each, trim_cr,
    unwrap, Line, Lines, Origin, BOM,
};

/// Bytes read from an input at a time.
const READ_BUFFER: usize = 1 << 20;

/// An input, decompressed if it is compressed.
fn open(file: &std::fs::File) -> std::io::Result<Box<dyn BufRead + Send>> {
    let mut raw = file.try_clone()?;
    std::io::Seek::rewind(&mut raw)?;
    let mut buffered = BufReader::with_capacity(READ_BUFFER, raw);
    let magic = buffered.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        let gz = flate2::bufread::MultiGzDecoder::new(buffered);
        Box::new(BufReader::with_capacity(READ_BUFFER, gz))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let zst = zstd::stream::read::Decoder::with_buffer(buffered)?;
        Box::new(BufReader::with_capacity(READ_BUFFER, zst))
    } else {
        Box::new(buffered)
    })
}

/// Reads the next line (without its `\n`) into `buf`; `false` at the end.
fn next_line(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    buf.clear();
    if r.read_until(b'\n', buf)? == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(true)
}

/// A line as read (without its `\n`): its `\r` dropped and, for a file's first line, its
/// byte order mark.
fn line_of(buf: &[u8], first: bool) -> &[u8] {
    let line = trim_cr(buf);
    if first {
        line.strip_prefix(BOM).unwrap_or(line)
    } else {
        line
    }
}

/// A stream's lines read ahead: their bytes back to back from `base`.
#[derive(Debug, Default)]
struct Queue {
    bytes: Vec<u8>,
    /// Offset of `bytes[0]` in the stream's byte sequence.
    base: usize,
    /// `(start, end, line number)`, start and end counted like `base`.
    lines: VecDeque<(usize, usize, u64)>,
}

impl Queue {
    fn push(&mut self, line: &[u8], lineno: u64) {
        let start = self.base + self.bytes.len();
        self.bytes.extend_from_slice(line);
        self.lines.push_back((start, start + line.len(), lineno));
    }

    fn pop(&mut self) {
        let Some((_, end, _)) = self.lines.pop_front() else {
            return;
        };
        let done = end - self.base;
        // Drop consumed bytes once they are most of the buffer (amortised O(1) per byte).
        if done >= self.bytes.len() / 2 && done >= 64 * 1024 || self.lines.is_empty() {
            self.bytes.drain(..done);
            self.base = end;
        }
    }
}

/// Opens `path`, or copies stdin to a temporary file for `-`.
fn open_input(path: &Path) -> std::io::Result<std::fs::File> {
    if path == Path::new("-") {
        let mut spool = tempfile::tempfile()?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool)?;
        return Ok(spool);
    }
    std::fs::File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))
}

/// One input being read.
struct File {
    reader: Option<Box<dyn BufRead + Send>>,
    path: PathBuf,
    index: u32,
    lineno: u64,
    /// The stream of its plain lines, and of each envelope `(topic, partition)`.
    plain: Option<usize>,
    parts: FxHashMap<(String, i64), usize>,
    /// Some line of it may be an envelope (holds `"partition"`), as its scan found; a file
    /// without one has only plain lines, which are read without looking for envelopes.
    envelopes: bool,
}

/// Stream metadata.
#[derive(Debug)]
struct Stream {
    name: String,
    file: usize,
}

/// Recorded topics, read as they are merged (see the module docs).
pub struct RecordingStream {
    files: Vec<File>,
    streams: Vec<Stream>,
    queues: Vec<Queue>,
    scratch: Vec<u8>,
    /// Bytes read so far (after decompression).
    bytes: u64,
    /// Blank lines read so far.
    blank_lines: u64,
}

impl RecordingStream {
    /// Opens the inputs (`-` = stdin) and scans each regular file for its streams.
    pub fn open(paths: &[PathBuf]) -> std::io::Result<RecordingStream> {
        let mut rec = RecordingStream {
            files: Vec::new(),
            streams: Vec::new(),
            queues: Vec::new(),
            scratch: Vec::new(),
            bytes: 0,
            blank_lines: 0,
        };
        for (i, path) in paths.iter().enumerate() {
            rec.files.push(File {
                reader: None,
                path: path.clone(),
                index: i as u32,
                lineno: 0,
                plain: None,
                parts: FxHashMap::default(),
                envelopes: false,
            });
            let input = open_input(path)?;
            rec.scan(i, &mut *open(&input)?)?;
            rec.files[i].reader = Some(open(&input)?);
        }
        Ok(rec)
    }

    /// Finds the streams of file `f`. Lines are looked at in the read buffer, not copied;
    /// once the file's plain stream is known (usually at its first line), only lines that
    /// may be envelopes can name a new stream, and the buffer is searched for those.
    fn scan(&mut self, f: usize, r: &mut dyn BufRead) -> std::io::Result<()> {
        let mut first = true;
        let mut long = Vec::new();
        let line = |rec: &mut Self, bytes: &[u8], first: &mut bool| {
            let line = line_of(bytes, std::mem::take(first));
            if !is_blank(line) {
                rec.files[f].envelopes |= looks_like_envelope(line);
                rec.stream_of(f, line);
            }
        };
        loop {
            let buf = r.fill_buf()?;
            if buf.is_empty() {
                return Ok(());
            }
            let Some(last) = memchr::memrchr(b'\n', buf) else {
                // A line longer than the buffer, or the last one without a `\n`.
                next_line(r, &mut long)?;
                line(self, &long, &mut first);
                continue;
            };
            let region = &buf[..last];
            let mut at = 0;
            while at <= region.len() {
                let rest = &region[at..];
                let start = if self.files[f].plain.is_none() || first {
                    at
                } else {
                    match envelope_hint(rest) {
                        None => break,
                        Some(i) => memchr::memrchr(b'\n', &rest[..i]).map_or(at, |j| at + j + 1),
                    }
                };
                let end =
                    memchr::memchr(b'\n', &region[start..]).map_or(region.len(), |j| start + j);
                line(self, &region[start..end], &mut first);
                at = end + 1;
            }
            r.consume(last + 1);
        }
    }

    /// Bytes read so far (decompressed).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn add_stream(&mut self, file: usize, name: String) -> usize {
        self.streams.push(Stream { name, file });
        self.queues.push(Queue::default());
        self.streams.len() - 1
    }

    /// The stream of `line` of file `f`, made when it is new.
    fn stream_of(&mut self, f: usize, line: &[u8]) -> usize {
        let key = envelope_key(line);
        let file = &self.files[f];
        let known = match &key {
            None => file.plain,
            Some(k) => file.parts.get(k).copied(),
        };
        if let Some(s) = known {
            return s;
        }
        let path = file.path.display().to_string();
        match key {
            None => {
                let s = self.add_stream(f, path);
                self.files[f].plain = Some(s);
                s
            }
            Some(k) => {
                let s = self.add_stream(f, format!("{path}#{}/{}", k.0, k.1));
                self.files[f].parts.insert(k, s);
                s
            }
        }
    }

    /// Counts line `raw` (without its `\n`) of file `f` as read: the line as kept (see
    /// [`line_of`]), or `None` for a blank one.
    fn count_line<'b>(&mut self, f: usize, raw: &'b [u8]) -> Option<&'b [u8]> {
        self.files[f].lineno += 1;
        self.bytes += raw.len() as u64 + 1;
        let line = line_of(raw, self.files[f].lineno == 1);
        if is_blank(line) {
            self.blank_lines += 1;
            return None;
        }
        Some(line)
    }

    /// Queues line `raw` (without its `\n`) of file `f` with its stream.
    fn queue_line(&mut self, f: usize, raw: &[u8]) {
        let Some(line) = self.count_line(f, raw) else {
            return;
        };
        let to = match (self.files[f].envelopes, self.files[f].plain) {
            (false, Some(plain)) => plain,
            _ => self.stream_of(f, line),
        };
        let lineno = self.files[f].lineno;
        self.queues[to].push(line, lineno);
    }

    /// Hands line `raw` of file `f`, whose lines are all plain, to `take` (none if blank).
    fn take_plain(&mut self, f: usize, raw: &[u8], take: &mut dyn FnMut(Line<'_>)) -> bool {
        let Some(line) = self.count_line(f, raw) else {
            return false;
        };
        let origin = Origin {
            file: self.files[f].index,
            line: self.files[f].lineno,
        };
        take(plain_line(line, origin));
        true
    }

    /// Reads lines of stream `s`'s file into their queues until `s` has one or the file ends.
    fn fill(&mut self, s: usize) -> std::io::Result<()> {
        if !self.queues[s].lines.is_empty() {
            return Ok(());
        }
        let f = self.streams[s].file;
        self.read_lines(f, &mut |rec, raw| {
            rec.queue_line(f, raw);
            rec.queues[s].lines.is_empty()
        })
        .map(drop)
    }

    /// Reads file `f`'s next lines (each without its `\n`) and hands them to `each` until it
    /// returns `false` or the file ends; `Ok(false)` once the file has ended. A line whole in
    /// the read buffer is handed from there; one across refills (or the last, without a
    /// `\n`) through `scratch`.
    fn read_lines(
        &mut self,
        f: usize,
        each: &mut dyn FnMut(&mut Self, &[u8]) -> bool,
    ) -> std::io::Result<bool> {
        let Some(mut reader) = self.files[f].reader.take() else {
            return Ok(false);
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut open = true;
        let result = loop {
            let buf = match reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            let (mut used, mut more) = (0, true);
            for i in memchr::memchr_iter(b'\n', buf) {
                more = each(self, &buf[used..i]);
                used = i + 1;
                if !more {
                    break;
                }
            }
            if used > 0 {
                reader.consume(used);
                if !more {
                    break Ok(true);
                }
                continue;
            }
            match next_line(&mut *reader, &mut scratch) {
                Err(e) => break Err(e),
                Ok(false) => {
                    open = false;
                    break Ok(false);
                }
                Ok(true) => {
                    if !each(self, &scratch) {
                        break Ok(true);
                    }
                }
            }
        };
        self.scratch = scratch;
        if open {
            self.files[f].reader = Some(reader);
        }
        result
    }
}

impl Lines for RecordingStream {
    fn streams(&self) -> usize {
        self.streams.len()
    }

    fn name(&self, s: usize) -> &str {
        &self.streams[s].name
    }

    fn front(&mut self, s: usize) -> std::io::Result<Option<Line<'_>>> {
        if self.queues[s].lines.is_empty() {
            self.fill(s)?;
        }
        Ok(self.peek(s))
    }

    fn peek(&self, s: usize) -> Option<Line<'_>> {
        let q = &self.queues[s];
        let &(start, end, line) = q.lines.front()?;
        let file = &self.files[self.streams[s].file];
        let origin = Origin {
            file: file.index,
            line,
        };
        let raw = &q.bytes[start - q.base..end - q.base];
        Some(if file.envelopes {
            unwrap(raw, origin)
        } else {
            plain_line(raw, origin)
        })
    }

    fn pop(&mut self, s: usize) {
        self.queues[s].pop();
    }

    /// A file without envelopes has one stream, so its lines go from the read buffer to
    /// `take` without a queue; other files' lines go through their queues.
    fn take_lines(
        &mut self,
        s: usize,
        max: usize,
        take: &mut dyn FnMut(Line<'_>),
    ) -> std::io::Result<bool> {
        let f = self.streams[s].file;
        if self.files[f].envelopes {
            return take_each(self, s, max, take);
        }
        // A line `front` queued goes first.
        let mut n = 0;
        while n < max {
            let Some(line) = self.peek(s) else { break };
            take(line);
            self.pop(s);
            n += 1;
        }
        if n == max {
            return Ok(true);
        }
        self.read_lines(f, &mut |rec, raw| {
            n += usize::from(rec.take_plain(f, raw, take));
            n < max
        })
    }

    fn blank_lines(&self) -> u64 {
        self.blank_lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::recording::Recording;

    const DATA: &str = concat!(
        "\u{feff}{\"user_id\":\"a\",\"event\":\"X\",\"ts\":1}\n",
        "\n",
        "{\"topic\":\"ev\",\"partition\":1,\"offset\":0,\"ts\":5,\"key\":\"b\",",
        "\"payload\":\"{\\\"user_id\\\":\\\"b\\\",\\\"event\\\":\\\"X\\\",\\\"ts\\\":2}\"}\r\n",
        "{\"topic\":\"ev\",\"partition\":0,\"offset\":0,\"ts\":6,\"payload\":null}\n",
        "not json\n",
        "{\"topic\":\"ev\",\"partition\":1,\"offset\":1,\"ts\":7,\"payload\":\"{}\"}",
    );

    /// A stream's name and its lines as `(raw, line number, kafka ts)`.
    type Drained = (String, Vec<(String, u64, Option<i64>)>);

    /// Every stream, drained stream by stream.
    fn drain(l: &mut dyn Lines) -> Vec<Drained> {
        (0..l.streams())
            .map(|s| {
                let mut lines = Vec::new();
                while let Some(line) = l.front(s).unwrap() {
                    let raw = String::from_utf8(line.raw.to_vec()).unwrap();
                    lines.push((raw, line.origin.line, line.kafka_ts));
                    l.pop(s);
                }
                (l.name(s).to_owned(), lines)
            })
            .collect()
    }

    fn compressed(dir: &Path) -> [PathBuf; 3] {
        let plain = dir.join("r.jsonl");
        std::fs::write(&plain, DATA).unwrap();
        let gz = dir.join("r.jsonl.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, DATA.as_bytes()).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        let zst = dir.join("r.jsonl.zst");
        std::fs::write(&zst, zstd::encode_all(DATA.as_bytes(), 3).unwrap()).unwrap();
        [plain, gz, zst]
    }

    #[test]
    fn streams_and_lines_equal_the_in_memory_recording_for_plain_gzip_and_zstd() {
        let dir = tempfile::tempdir().unwrap();
        for path in compressed(dir.path()) {
            let mut mem = Recording::default();
            mem.add(&path, DATA.as_bytes().to_vec());
            let want = drain(&mut mem.cursor());
            let mut streamed = RecordingStream::open(std::slice::from_ref(&path)).unwrap();
            assert_eq!(streamed.streams(), 3, "{path:?}: found by the scan");
            assert_eq!(drain(&mut streamed), want, "{path:?}");
            assert_eq!(streamed.bytes(), DATA.len() as u64 + 1);
            assert_eq!(
                want[0].1[0].0, r#"{"user_id":"a","event":"X","ts":1}"#,
                "no BOM"
            );
            assert_eq!((streamed.blank_lines(), mem.blank_lines), (1, 1));
        }
    }

    /// A random file: plain lines and envelopes of a few topics and many partitions,
    /// interleaved at random, with blank lines.
    fn layout() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let line = prop_oneof![
            1 => Just(None),
            1 => Just(Some(None)),
            8 => (0..3u8, 0..300i64).prop_map(|(t, p)| Some(Some((t, p)))),
        ];
        proptest::collection::vec(line, 0..400).prop_map(|lines| {
            let mut text = String::new();
            for (i, l) in lines.into_iter().enumerate() {
                match l {
                    None => text.push_str("  \n"),
                    Some(None) => text.push_str(&format!("{{\"user_id\":\"u{i}\"}}\n")),
                    Some(Some((t, p))) => text.push_str(&format!(
                        "{{\"topic\":\"t{t}\",\"partition\":{p},\"ts\":{i},\"payload\":\"{{}}\"}}\n"
                    )),
                }
            }
            text
        })
    }

    /// Streams as they were found before the hash maps: by a scan over the streams seen so
    /// far, in order of first appearance.
    fn by_scan(text: &str) -> Vec<Drained> {
        let mut streams: Vec<(Option<(String, i64)>, Drained)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let key = crate::event::recording::envelope_key(line.as_bytes());
            let at = match streams.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    let name = match &key {
                        None => "f.jsonl".to_owned(),
                        Some((t, p)) => format!("f.jsonl#{t}/{p}"),
                    };
                    streams.push((key.clone(), (name, Vec::new())));
                    streams.len() - 1
                }
            };
            let ts = key.is_some().then_some(i as i64);
            streams[at].1 .1.push((line.to_owned(), i as u64 + 1, ts));
        }
        streams.into_iter().map(|(_, d)| d).collect()
    }

    proptest::proptest! {
        /// Any layout of partitions in a file: the same streams, in the same order, with the
        /// same lines, in memory, read as the merge goes, and by the scan of before.
        #[test]
        fn streams_of_any_partition_layout_are_those_of_a_scan(text in layout()) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.jsonl");
            std::fs::write(&path, &text).unwrap();
            let mut mem = Recording::default();
            mem.add(Path::new("f.jsonl"), text.clone().into_bytes());
            let want = by_scan(&text);
            proptest::prop_assert_eq!(drain(&mut mem.cursor()), want.clone());
            let mut streamed = RecordingStream::open(std::slice::from_ref(&path)).unwrap();
            let got: Vec<Drained> = drain(&mut streamed)
                .into_iter()
                .map(|(name, lines)| (name.replace(&path.display().to_string(), "f.jsonl"), lines))
                .collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// File `f.jsonl` holding `text`, scanned and read through a buffer of `cap` bytes.
    fn scanned(text: &str, cap: usize) -> RecordingStream {
        let mut rec = RecordingStream {
            files: vec![File {
                reader: None,
                path: PathBuf::from("f.jsonl"),
                index: 0,
                lineno: 0,
                plain: None,
                parts: FxHashMap::default(),
                envelopes: false,
            }],
            streams: Vec::new(),
            queues: Vec::new(),
            scratch: Vec::new(),
            bytes: 0,
            blank_lines: 0,
        };
        let mut r = BufReader::with_capacity(cap, text.as_bytes());
        rec.scan(0, &mut r).unwrap();
        let bytes = text.to_owned().into_bytes();
        rec.files[0].reader = Some(Box::new(BufReader::with_capacity(
            cap,
            std::io::Cursor::new(bytes),
        )));
        rec
    }

    /// A line as `take_lines` or `front` hands it out, owned.
    type Taken = (
        Vec<u8>,
        Result<Vec<u8>, crate::event::decode::Malformed>,
        Option<i64>,
        Origin,
    );

    fn taken(l: Line<'_>) -> Taken {
        (
            l.raw.to_vec(),
            l.record.map(|r| r.into_owned()),
            l.kafka_ts,
            l.origin,
        )
    }

    proptest::proptest! {
        /// Lines taken `max` at a time (straight from the read buffer in a file of plain
        /// lines) are the lines the in-memory recording hands out one by one, whatever the
        /// read buffer's size, with a BOM, `\r\n` endings and no last `\n`; the end is told
        /// only once the stream has no more, and lines and bytes are counted alike.
        #[test]
        fn lines_taken_in_chunks_are_those_handed_out_one_by_one(
            text in layout(),
            plain in proptest::bool::ANY,
            crlf in proptest::bool::ANY,
            bom in proptest::bool::ANY,
            tail in proptest::bool::ANY,
            cap in 1usize..200,
            max in 1usize..40,
        ) {
            let mut text = if plain {
                // Envelopes become plain lines: one stream, read without queues.
                text.lines()
                    .map(|l| if looks_like_envelope(l.as_bytes()) { "{\"user_id\":\"e\"}" } else { l })
                    .collect::<Vec<_>>()
                    .join("\n") + "\n"
            } else {
                text
            };
            if crlf {
                text = text.replace("}\n", "}\r\n");
            }
            if bom {
                text.insert(0, '\u{feff}');
            }
            if tail {
                text = text.trim_end_matches('\n').to_owned();
            }
            let mut mem = Recording::default();
            mem.add(Path::new("f.jsonl"), text.clone().into_bytes());
            let mut cursor = mem.cursor();
            let mut rec = scanned(&text, cap);
            proptest::prop_assert_eq!(rec.streams(), cursor.streams());
            for s in 0..cursor.streams() {
                let mut want = Vec::new();
                while let Some(line) = cursor.front(s).unwrap() {
                    want.push(taken(line));
                    cursor.pop(s);
                }
                let mut got = Vec::new();
                loop {
                    let before = got.len();
                    let more = rec.take_lines(s, max, &mut |l| got.push(taken(l))).unwrap();
                    let n = got.len() - before;
                    if more {
                        proptest::prop_assert_eq!(n, max, "a full chunk unless the stream ended");
                    } else {
                        proptest::prop_assert!(n <= max);
                        break;
                    }
                }
                proptest::prop_assert_eq!(got, want);
            }
            // A file of only blank lines has no stream, and is not read again.
            if rec.streams() > 0 {
                proptest::prop_assert_eq!(rec.blank_lines(), mem.blank_lines);
                proptest::prop_assert_eq!(rec.bytes(), text.len() as u64 + u64::from(!text.ends_with('\n')));
            }
        }
    }

    proptest::proptest! {
        /// The scan finds the same streams whatever the read buffer's size: lines split
        /// across refills, longer than the buffer, or last without a `\n`.
        #[test]
        fn the_scan_finds_the_streams_with_any_read_buffer(text in layout(), cap in 1usize..200, tail in proptest::bool::ANY) {
            let text = if tail { text.trim_end_matches('\n').to_owned() } else { text };
            let mut mem = Recording::default();
            mem.add(Path::new("f.jsonl"), text.clone().into_bytes());
            let want: Vec<String> = (0..mem.streams.len()).map(|s| mem.cursor().name(s).to_owned()).collect();
            let mut rec = scanned(&text, cap);
            // Whether lines must be looked at for envelopes: exactly when one may be one.
            let envelopes = text.split('\n').any(|l| looks_like_envelope(l.as_bytes()));
            proptest::prop_assert_eq!(rec.files[0].envelopes, envelopes);
            let got: Vec<String> = rec.streams.iter().map(|s| s.name.clone()).collect();
            proptest::prop_assert_eq!(got, want);
            // Read through the same buffer size, every stream hands out the lines the
            // in-memory recording does (lines whole in the buffer or across refills).
            let mut cursor = mem.cursor();
            for s in 0..mem.streams.len() {
                loop {
                    let line = |l: Option<Line<'_>>| l.map(|l| (l.raw.to_vec(), l.record.map(|r| r.into_owned()), l.kafka_ts, l.origin.line));
                    let (got, want) = (line(rec.front(s).unwrap()), line(cursor.front(s).unwrap()));
                    proptest::prop_assert_eq!(&got, &want);
                    if got.is_none() {
                        break;
                    }
                    rec.pop(s);
                    cursor.pop(s);
                }
            }
        }
    }

    #[test]
    fn lines_read_ahead_for_another_stream_wait_in_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let [path, ..] = compressed(dir.path());
        let mut r = RecordingStream::open(&[path]).unwrap();
        // Stream 2 (ev/0) first: the reader passes stream 0's and 1's first lines.
        assert_eq!(r.front(2).unwrap().unwrap().origin.line, 4);
        assert_eq!(r.queues[0].lines.len(), 1);
        assert_eq!(r.queues[1].lines.len(), 1);
        assert_eq!(r.front(0).unwrap().unwrap().origin.line, 1);
        r.pop(0);
        assert_eq!(r.front(0).unwrap().unwrap().raw, b"not json");
        r.pop(0);
        assert!(r.front(0).unwrap().is_none());
    }
}
