//! The top level of a plain line, read in one pass over its bytes.
//!
//! Most lines of a recording are plain: an object of known fields whose strings have no
//! escapes and whose numbers no exponent, such as every line the generator and the common
//! SDKs write. [`scan`] reads such a line into the same [`TopLevel`] serde_json's pass gives
//! (each value's text exactly as serde_json's raw value holds it) and checks its syntax on
//! the way, several times faster than serde_json's generic visitor, which reads every value
//! it skips through the whole deserializer. Anything else — an escape, a control character,
//! an exponent, a number of 300 bytes or more, a key twice, more than a few unknown keys,
//! deep nesting, any syntax error — makes it answer `None`, and the line goes through
//! serde_json, which decides it (and names the reason) as before. So the scanner only ever
//! accepts a subset of what serde_json accepts, with the same result: a property test
//! compares both on generated and corrupted lines.

use super::fields::{Fields, Raw};

/// Nesting deeper than this goes to serde_json (whose own limit is 128).
const MAX_DEPTH: u32 = 32;
/// Unknown top-level keys the scanner checks for repeats; more go to serde_json. A track
/// call as Segment's spec shows it has nine (`messageId`, `sentAt`, `receivedAt`,
/// `originalTimestamp`, `integrations`, `channel`, `version`, `writeKey`, `projectId`).
const MAX_OTHER_KEYS: usize = 16;
/// A number this long or longer goes to serde_json (it may be out of range).
const MAX_NUMBER_BYTES: usize = 300;

/// The top level of `text` if it is a plain line, with [`Fields::plain`] set.
#[cfg(test)]
pub(super) fn scan(text: &str) -> Option<super::fields::TopLevel<'_>> {
    let mut fields = Fields::default();
    scan_into(text, &mut fields)?;
    Some(super::fields::TopLevel {
        fields,
        duplicate_key: false,
    })
}

/// Reads the top level of `text` into `fields` (default ones) and sets [`Fields::plain`]
/// if it is a plain line; `None` (and `fields` to be dropped) if it is not. Filled in
/// place: a line's fields are not copied on their way to the decoder.
pub(super) fn scan_into<'a>(text: &'a str, fields: &mut Fields<'a>) -> Option<()> {
    let mut s = Scanner {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    fields.plain = true;
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        let mut known = 0u32;
        // Unknown keys by their place in `text` (8 bytes each, not a 16-byte `&str`).
        let mut others = [(0u32, 0u32); MAX_OTHER_KEYS];
        let mut n_others = 0;
        loop {
            let key_at = s.i + 1;
            let key = s.string()?;
            s.ws();
            s.eat(b':')?;
            s.ws();
            let start = s.i;
            s.value(1)?;
            let value = &text[start..s.i];
            match fields.slot(key) {
                Some((bit, slot)) => {
                    if known & (1 << bit) != 0 {
                        return None;
                    }
                    known |= 1 << bit;
                    *slot = (value != "null").then_some(Raw(value));
                }
                None => {
                    let seen = |&(at, len): &(u32, u32)| {
                        text.as_bytes().get(at as usize..(at + len) as usize)
                            == Some(key.as_bytes())
                    };
                    if n_others == MAX_OTHER_KEYS || others[..n_others].iter().any(seen) {
                        return None;
                    }
                    // A line is at most MAX_RECORD_BYTES (checked before the scan).
                    others[n_others] =
                        (u32::try_from(key_at).ok()?, u32::try_from(key.len()).ok()?);
                    n_others += 1;
                }
            }
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(())
}

/// The bytes that end a plain string's scan: its closing quote, or what makes it not plain
/// (an escape, or a control character, which JSON refuses unescaped).
static STOPS_A_STRING: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// How many bytes of `b` come before the first that [`STOPS_A_STRING`] (`b.len()` if none):
/// eight at a time, with the zero-byte tests of "Bit Twiddling Hacks" (a flag is exact in
/// the lowest byte it marks, which is the one looked for).
#[inline(always)]
fn plain_run(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |y: u64| y.wrapping_sub(ONES) & !y;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let quote = zero(x ^ (ONES * u64::from(b'"')));
        let escape = zero(x ^ (ONES * u64::from(b'\\')));
        let stops = (control | quote | escape) & HIGH;
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    i + (b[i..].iter())
        .position(|&c| STOPS_A_STRING[usize::from(c)])
        .unwrap_or(b.len() - i)
}

struct Scanner<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// JSON's whitespace: space, tab, newline, carriage return.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string without escapes or control characters; its text between the quotes.
    #[inline(always)]
    fn string(&mut self) -> Option<&'a str> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.i + 1;
        let rest = self.b.get(start..)?;
        let n = plain_run(rest);
        if rest.get(n) != Some(&b'"') {
            return None;
        }
        self.i = start + n + 1;
        self.text.get(start..start + n)
    }

    /// One value at nesting `depth` (the top-level object's values are at 1).
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'{' if depth < MAX_DEPTH => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' if depth < MAX_DEPTH => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)?`: JSON's number without an exponent.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let first = self.i;
            self.digits();
            if self.i == first {
                return None;
            }
        }
        // An exponent, or a digit after a leading zero (which JSON refuses), is left to
        // serde_json; so are numbers long enough to be out of range.
        let ends_well = !matches!(self.peek(), Some(b'e' | b'E' | b'0'..=b'9'));
        (ends_well && self.i - start < MAX_NUMBER_BYTES).then_some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{top_level, Decoder};
    use super::*;
    use crate::event::Format;

    /// A line as producers write them, and variants of it the scanner must leave to serde_json.
    fn json_value(depth: u32) -> BoxedStrategy<String> {
        let pieces: Vec<String> = [
            // Strings: plain, non-ASCII, escaped, with a raw control character or tab.
            "\"\"",
            "\"u1\"",
            "\"Added To Cart\"",
            "\"é ü 日本\"",
            "\"a\\\"b\"",
            "\"\\u00e9\"",
            "\"\\ud800\"",
            "\"tab\there\"",
            "\"nl\u{1}x\"",
            "\"/p/1\"",
            "\"x\\\\\"",
            // Numbers, JSON's and not: leading zeros, bare points, exponents, a lone minus.
            "0",
            "-0",
            "7",
            "1700000000161",
            "-12",
            "9.57",
            "-3.25",
            "0.5",
            "01",
            "-01",
            "1.",
            ".5",
            "-",
            "1e5",
            "1E-2",
            "2.5e+3",
            "00",
            "1.5.2",
            "+1",
            "--1",
            "18446744073709551616",
            "1.7976931348623157e309",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "True",
            "nan",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            "9".repeat(299),
            "9".repeat(300),
            format!("0.{}", "1".repeat(400)),
        ])
        .collect();
        let leaf = prop::sample::select(pieces);
        if depth == 0 {
            return leaf.boxed();
        }
        let inner = json_value(depth - 1);
        prop_oneof![
            3 => leaf,
            1 => prop::collection::vec((key(), inner.clone(), ws()), 0..4).prop_map(|kv| {
                let body: Vec<String> =
                    kv.into_iter().map(|(k, v, w)| format!("{k}{w}:{w}{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
            1 => prop::collection::vec((inner, ws()), 0..4).prop_map(|vs| {
                let body: Vec<String> = vs.into_iter().map(|(v, w)| format!("{w}{v}{w}")).collect();
                format!("[{}]", body.join(","))
            }),
        ]
        .boxed()
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "\"user_id\"",
            "\"event\"",
            "\"ts\"",
            "\"props\"",
            "\"type\"",
            "\"device_id\"",
            "\"userId\"",
            "\"properties\"",
            "\"context\"",
            "\"identity\"",
            "\"evtName\"",
            "\"evtData\"",
            "\"price\"",
            "\"email\"",
            "\"country\"",
            "\"x\"",
            "\"y\"",
            "\"\"",
            "\"user\\u005fid\"",
            "\"a\\\"\"",
            "\"k\u{2}\"",
            "user_id",
            "'ts'",
        ])
        .prop_map(str::to_owned)
    }

    fn ws() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "", "", " ", "\t", "\r\n ", "\u{a0}", "\u{b}"])
            .prop_map(str::to_owned)
    }

    fn line() -> impl Strategy<Value = String> {
        let entries = prop::collection::vec((key(), json_value(3), ws()), 0..12);
        let object = |kv: Vec<(String, String, String)>| {
            let body: Vec<String> = kv
                .into_iter()
                .map(|(k, v, w)| format!("{w}{k}{w}:{v}{w}"))
                .collect();
            format!("{{{}}}", body.join(","))
        };
        // Records of each format whose fields make sense, so that their properties (any
        // value) are decoded too.
        let field = prop_oneof![
            prop::sample::select(vec![
                ("\"user_id\"", "\"u1\""),
                ("\"userId\"", "7"),
                ("\"identity\"", "\"u1\""),
                ("\"event\"", "\"Added To Cart\""),
                ("\"evtName\"", "\"Added To Cart\""),
                ("\"ts\"", "1700000000161"),
                ("\"ts\"", "\"2026-11-28T10:00:00Z\""),
                ("\"timestamp\"", "\"2026-11-28T10:00:00Z\""),
                ("\"type\"", "\"profile\""),
                ("\"type\"", "\"track\""),
                ("\"type\"", "\"identify\""),
            ])
            .prop_map(|(k, v)| (k.to_owned(), v.to_owned())),
            (
                prop::sample::select(vec![
                    "\"props\"",
                    "\"properties\"",
                    "\"evtData\"",
                    "\"profileData\"",
                    "\"traits\"",
                    "\"context\"",
                ]),
                json_value(3),
            )
                .prop_map(|(k, v)| (k.to_owned(), v)),
        ];
        let cores = vec![
            r#""user_id":"u1","event":"Added To Cart","ts":1700000000161"#,
            r#""user_id":"u1","type":"profile","ts":"2026-11-28T10:00:00Z""#,
            r#""type":"track","userId":"u1","event":"Added To Cart","timestamp":"2026-11-28T10:00:00Z""#,
            r#""type":"identify","anonymousId":"a1","timestamp":"2026-11-28T10:00:00Z""#,
            r#""identity":"u1","evtName":"Added To Cart","ts":1795860000"#,
            r#""objectId":"o1","type":"profile","ts":1795860000"#,
        ];
        let record = (
            prop::sample::select(cores),
            prop::collection::vec((field, ws()), 0..3),
        )
            .prop_map(|(core, extra)| {
                let extra: Vec<String> = extra
                    .into_iter()
                    .map(|((k, v), w)| format!("{w}{k}:{w}{v}"))
                    .collect();
                format!("{{{core},{}}}", extra.join(","))
            });
        let top = prop_oneof![
            4 => entries.prop_map(object),
            4 => record,
            1 => json_value(2),
        ];
        // Some lines are then cut, grown or changed at one place.
        (
            top,
            ws(),
            0..8usize,
            any::<prop::sample::Index>(),
            prop::sample::select(vec!["", ",", "}", "{", "]", "\"", ":", "x", " ", "\\", "1"]),
        )
            .prop_map(|(t, w, edit, at, piece)| {
                let mut t = format!("{w}{t}{w}");
                let cut = |t: &String, i: usize| {
                    (0..=i).rev().find(|&j| t.is_char_boundary(j)).unwrap_or(0)
                };
                let i = cut(&t, at.index(t.len() + 1));
                match edit {
                    0 => t.insert_str(i, piece),
                    1 => t.truncate(i),
                    2 if i < t.len() => {
                        let n = t[i..].chars().next().map_or(0, char::len_utf8);
                        t.replace_range(i..i + n, piece);
                    }
                    _ => {}
                }
                t
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Eight bytes at a time finds the byte a plain loop finds.
        #[test]
        fn plain_run_stops_where_a_byte_loop_stops(
            b in prop::collection::vec(prop_oneof![
                4 => 0x20u8..0x7f, 1 => any::<u8>(), 1 => Just(b'"'), 1 => Just(b'\\'),
            ], 0..40),
        ) {
            let expected = b.iter().position(|&c| STOPS_A_STRING[usize::from(c)]).unwrap_or(b.len());
            prop_assert_eq!(plain_run(&b), expected);
        }

        /// What the scanner accepts, serde_json accepts with the same fields.
        #[test]
        fn the_scanner_reads_a_line_as_serde_json_does(line in line()) {
            if let Some(fast) = scan(&line) {
                let slow = top_level(&line);
                prop_assert!(slow.is_ok(), "serde_json refuses {line:?}: {slow:?}");
                let slow = slow.unwrap();
                prop_assert!(!slow.duplicate_key, "{line:?}");
                prop_assert_eq!(Fields { plain: false, ..fast.fields }, slow.fields, "{:?}", line);
            }
        }

        /// Each format decodes a line to the same record (or the same reason) either way,
        /// with the event's `Added To Cart` (read) and other events (unread) alike.
        #[test]
        fn records_are_the_same_through_the_scanner_and_serde_json(
            line in line(),
            name in prop::sample::select(vec!["\"Added To Cart\"", "\"View\""]),
        ) {
            let cfg = super::super::tests::config();
            let line = line.replacen("\"Added To Cart\"", name, 1);
            for format in [Format::Native, Format::Segment, Format::Clevertap] {
                let d = Decoder::new(format, &cfg.schema);
                let slow = top_level(&line).and_then(|top| d.record(&top, Some(5)));
                prop_assert_eq!(d.decode_str_at(&line, Some(5)), slow, "{:?} {:?}", format, line);
            }
        }
    }

    #[test]
    fn producers_plain_lines_take_the_scanner() {
        let lines = [
            r#"{"user_id":"u083569","event":"View","ts":1700000000161,"props":{"sku":"SKU-63878","price":9.57,"currency":"USD","page":"/p/63878"}}"#,
            r#"{ "user_id": "u1", "type": "profile", "ts": "2026-11-28T10:00:00Z", "props": { "email": "a@b.co", "age": 30, "tags": ["x", 1, null, true], "n": -0.5 } }"#,
            r#"{"type":"track","event":"Order Completed","userId":"u1","messageId":"m","timestamp":"2026-11-28T10:00:00.000Z","properties":{"revenue":25},"context":{"app":{"version":"1.2"},"traits":{}}}"#,
            r#"{"identity":"u1","ts":1795860000,"type":"event","evtName":"Charged","evtData":{"Amount":10}}"#,
            // Segment's spec example of a track call: nine keys the decoder does not read.
            r#"{"anonymousId":"23adfd82-aa0f-45a7-a756-24f2a7a4c895","context":{"library":{"name":"analytics.js","version":"2.11.1"},"page":{"path":"/academy/","referrer":"","search":"","title":"Analytics Academy","url":"https://segment.com/academy/"},"userAgent":"Mozilla/5.0","ip":"108.0.78.21"},"event":"Course Clicked","integrations":{},"messageId":"ajs-f8ca1e4de5024d9430b3928bd8ac6b96","properties":{"title":"Intro to Analytics"},"receivedAt":"2015-12-12T19:11:01.266Z","sentAt":"2015-12-12T19:11:01.169Z","timestamp":"2015-12-12T19:11:01.249Z","type":"track","userId":"AiUGstSDIg","originalTimestamp":"2015-12-12T19:11:01.152Z","channel":"client","version":2,"writeKey":"k","projectId":"p"}"#,
            "{}",
        ];
        for line in lines {
            let top = scan(line).unwrap_or_else(|| panic!("{line}"));
            assert!(top.fields.plain);
            assert_eq!(
                Ok(Fields {
                    plain: false,
                    ..top.fields
                }),
                top_level(line).map(|t| t.fields)
            );
        }
        for not_plain in [
            r#"{"user_id":"u\u0031","event":"View","ts":1}"#,
            r#"{"user_id":"u1","event":"View","ts":1e3}"#,
            r#"{"user_id":"u1","user_id":"u2","event":"View","ts":1}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"user_id":"u1","event":"View","ts":1} x"#,
            r#"["user_id"]"#,
        ] {
            assert!(scan(not_plain).is_none(), "{not_plain}");
        }
        // Unknown keys are checked for repeats up to MAX_OTHER_KEYS; more go to serde_json.
        let unknown = |n: usize| {
            let keys: Vec<String> = (0..n).map(|i| format!(r#""k{i}":{i}"#)).collect();
            format!(r#"{{"user_id":"u1",{}}}"#, keys.join(","))
        };
        assert!(scan(&unknown(MAX_OTHER_KEYS)).is_some());
        assert!(scan(&unknown(MAX_OTHER_KEYS + 1)).is_none());
        let repeated = unknown(MAX_OTHER_KEYS).replace(r#""k9":9"#, r#""k3":9"#);
        assert!(scan(&repeated).is_none(), "{repeated}");
    }
}
