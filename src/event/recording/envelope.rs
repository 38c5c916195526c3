//! `kcat -C -J` envelopes: `{"topic","partition","offset","tstype","ts","broker","key",
//! "payload"}`, one a line.
//!
//! A line whose top-level object has a `partition` key is an envelope (no record format has
//! one). It is well-formed when `partition` is an integer, `topic` a string (or absent), `ts`
//! an integer (or absent or `null`: no Kafka timestamp), `payload` a string, and no key occurs
//! twice; any other envelope's record is `invalid_envelope` (a `null` payload, a tombstone,
//! too). A broken envelope stays in its partition's stream when its topic and partition can be
//! read, else it goes with the file's plain lines.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::decode::{Malformed, SeenKeys, StrCow};

/// An envelope as far as remarket reads it.
pub(super) struct Envelope<'a> {
    /// Its `(topic, partition)`, when both can be read.
    pub key: Option<(Cow<'a, str>, i64)>,
    /// Its Kafka timestamp, when it has one that can be read.
    pub ts: Option<i64>,
    /// Its payload (a JSON string, still escaped), or why the envelope is broken.
    pub payload: Result<&'a RawValue, Malformed>,
}

/// An envelope's top-level fields, raw, as first seen.
#[derive(Default)]
struct Raw<'a> {
    topic: Option<&'a RawValue>,
    partition: Option<&'a RawValue>,
    ts: Option<&'a RawValue>,
    payload: Option<&'a RawValue>,
    /// `topic` or `partition` occurred twice: which partition the line is cannot be told.
    key_twice: bool,
    /// Some key occurred twice.
    any_twice: bool,
}

impl<'de> Deserialize<'de> for Raw<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a kcat envelope")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw<'de>, A::Error> {
        let mut raw = Raw::default();
        let mut seen = SeenKeys::default();
        while let Some(key) = map.next_key_seed(StrCow)? {
            let slot = match &*key {
                "topic" => &mut raw.topic,
                "partition" => &mut raw.partition,
                "ts" => &mut raw.ts,
                "payload" => &mut raw.payload,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    raw.any_twice |= !seen.insert(key);
                    continue;
                }
            };
            let v: &RawValue = map.next_value()?;
            slot.get_or_insert(v);
            if !seen.insert(key.clone()) {
                raw.any_twice = true;
                raw.key_twice |= matches!(&*key, "topic" | "partition");
            }
        }
        Ok(raw)
    }
}

/// A JSON integer's value (`None` for anything else: a string, a fraction, an exponent).
fn integer(v: &RawValue) -> Option<i64> {
    v.get().parse().ok()
}

impl<'a> Envelope<'a> {
    fn from_raw(raw: Raw<'a>) -> Option<Envelope<'a>> {
        let partition = integer(raw.partition?);
        let topic = match raw.topic {
            None => Some(Cow::Borrowed("")),
            Some(t) if t.get() == "null" => Some(Cow::Borrowed("")),
            Some(t) => StrCow
                .deserialize(&mut serde_json::Deserializer::from_str(t.get()))
                .ok(),
        };
        let ts = match raw.ts {
            None => Ok(None),
            Some(t) if t.get() == "null" => Ok(None),
            Some(t) => integer(t).map(Some).ok_or(()),
        };
        let well_formed = topic.is_some() && partition.is_some() && ts.is_ok() && !raw.any_twice;
        let payload = match raw.payload {
            Some(p) if well_formed && p.get().starts_with('"') => Ok(p),
            _ => Err(Malformed::InvalidEnvelope),
        };
        let key = match (topic, partition) {
            (Some(t), Some(p)) if !raw.key_twice => Some((t, p)),
            _ => None,
        };
        Some(Envelope {
            key,
            ts: ts.ok().flatten(),
            payload,
        })
    }
}

/// Parses `line` as an envelope; `None` when it is no envelope (not a JSON object, no
/// top-level `partition`) or not UTF-8 (see [`parse_lossy`]).
pub(super) fn parse(line: &[u8]) -> Option<Envelope<'_>> {
    let raw: Raw = serde_json::from_slice(line).ok()?;
    Envelope::from_raw(raw)
}

/// An envelope that is not UTF-8, as far as it can be read.
pub(super) struct Lossy {
    pub key: Option<(String, i64)>,
    pub ts: Option<i64>,
    /// Whether the envelope itself is well-formed (then only its payload is not UTF-8).
    pub valid: bool,
}

/// An envelope that is not UTF-8: kcat writes a payload's bytes as they are, so a record
/// holding invalid UTF-8 makes its whole line so. Its topic, partition and timestamp are read
/// from a lossy copy (the replacement characters can only be in the payload's text); the
/// record itself is `invalid_utf8`.
pub(super) fn parse_lossy(line: &[u8]) -> Option<Lossy> {
    if std::str::from_utf8(line).is_ok() {
        return None;
    }
    let text = String::from_utf8_lossy(line);
    let env = parse(text.as_bytes())?;
    Some(Lossy {
        key: env.key.map(|(t, p)| (t.into_owned(), p)),
        ts: env.ts,
        valid: env.payload.is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(stream key, kafka ts, payload or reason)` of an envelope.
    type Read = (
        Option<(String, i64)>,
        Option<i64>,
        Result<String, Malformed>,
    );

    /// A line as [`Read`], `None` when it is no envelope.
    fn read(line: &str) -> Option<Read> {
        let e = parse(line.as_bytes())?;
        Some((
            e.key.map(|(t, p)| (t.into_owned(), p)),
            e.ts,
            e.payload.map(|p| p.get().to_owned()),
        ))
    }

    #[test]
    fn well_formed_envelopes_and_plain_lines() {
        let ok = read(
            r#"{"topic":"ev","partition":3,"offset":7,"tstype":"create","ts":5,"broker":1,"key":"u","payload":"{}"}"#,
        );
        assert_eq!(
            ok,
            Some((Some(("ev".into(), 3)), Some(5), Ok(r#""{}""#.into())))
        );
        let no_topic_no_ts = read(r#"{"partition":0,"ts":null,"payload":"{}"}"#);
        assert_eq!(
            no_topic_no_ts,
            Some((Some(("".into(), 0)), None, Ok(r#""{}""#.into())))
        );
        // Records, whatever they hold below the top level.
        assert!(read(
            r#"{"user_id":"u","event":"x","ts":1,"props":{"partition":1,"payload":"p"}}"#
        )
        .is_none());
        assert!(read(r#"{"user_id":"u","payload":"p"}"#).is_none());
        assert!(read(r#"[{"partition":1}]"#).is_none());
        assert!(
            read(r#"{"partition":1,"payload":"#).is_none(),
            "not JSON: a plain line"
        );
    }

    #[test]
    fn broken_envelopes_are_invalid_and_keep_their_partition_when_it_can_be_read() {
        let bad = Err(Malformed::InvalidEnvelope);
        let key = Some(("ev".to_owned(), 1));
        for (line, want) in [
            (
                r#"{"topic":"ev","partition":1,"offset":0,"ts":5,"key":"u"}"#,
                (key.clone(), Some(5)),
            ),
            (
                r#"{"topic":"ev","partition":1,"ts":5,"payload":null}"#,
                (key.clone(), Some(5)),
            ),
            (
                r#"{"topic":"ev","partition":1,"ts":5.5,"payload":"{}"}"#,
                (key.clone(), None),
            ),
            (
                r#"{"topic":"ev","partition":1,"ts":"5","payload":"{}"}"#,
                (key.clone(), None),
            ),
            (
                r#"{"topic":"ev","partition":1,"ts":5,"payload":"{}","payload":"{}"}"#,
                (key.clone(), Some(5)),
            ),
            (
                r#"{"topic":"ev","partition":1,"ts":5,"payload":{}}"#,
                (key.clone(), Some(5)),
            ),
            (
                r#"{"topic":"ev","partition":1,"ts":5,"key":"a","key":"b","payload":"{}"}"#,
                (key.clone(), Some(5)),
            ),
            (
                r#"{"topic":"ev","partition":"1","ts":5,"payload":"{}"}"#,
                (None, Some(5)),
            ),
            (
                r#"{"topic":"ev","partition":1.0,"ts":5,"payload":"{}"}"#,
                (None, Some(5)),
            ),
            (
                r#"{"topic":7,"partition":1,"ts":5,"payload":"{}"}"#,
                (None, Some(5)),
            ),
            (
                r#"{"topic":"ev","partition":1,"partition":2,"ts":5,"payload":"{}"}"#,
                (None, Some(5)),
            ),
        ] {
            let (k, ts, payload) = read(line).unwrap_or_else(|| panic!("{line}: an envelope"));
            assert_eq!((k, ts), want, "{line}");
            assert_eq!(payload, bad, "{line}");
        }
    }
}
