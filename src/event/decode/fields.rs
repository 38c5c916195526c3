//! The top level of a record: every field any format reads, each kept raw so that it can be
//! typed on its own (a wrongly-typed field gets its own reason instead of a generic parse
//! error), and every key checked against the ones before it.
//!
//! A key that occurs twice at the top level makes the record `duplicate_key`, whichever key it
//! is: JSON parsers disagree on which copy counts (first or last), and the top level is where
//! a record says who, when and what, so remarket does not guess. Inside `props` (and the other
//! property objects) the last value of a key wins.

use std::borrow::Cow;
use std::fmt;

use rustc_hash::FxHashSet;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use smallvec::SmallVec;

/// Every top-level field any format uses (`None` when absent or `null`).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Fields<'a> {
    /// Set by [`super::scan::scan`]: no string has an escape, no number an exponent or 300
    /// bytes, so properties no campaign reads need no second look.
    pub plain: bool,
    pub user_id: Option<Raw<'a>>,
    /// `userId`
    pub user_id_camel: Option<Raw<'a>>,
    /// `anonymousId`
    pub anonymous_id: Option<Raw<'a>>,
    pub identity: Option<Raw<'a>>,
    pub event: Option<Raw<'a>>,
    /// `evtName`
    pub evt_name: Option<Raw<'a>>,
    /// `type`
    pub kind: Option<Raw<'a>>,
    pub ts: Option<Raw<'a>>,
    pub timestamp: Option<Raw<'a>>,
    pub props: Option<Raw<'a>>,
    pub properties: Option<Raw<'a>>,
    pub traits: Option<Raw<'a>>,
    pub context: Option<Raw<'a>>,
    /// `evtData`
    pub evt_data: Option<Raw<'a>>,
    /// `profileData`
    pub profile_data: Option<Raw<'a>>,
    /// Segment `page` / `screen` name.
    pub name: Option<Raw<'a>>,
    /// CleverTap identifiers used when `identity` is absent: `objectId`, `FBID`, `GPID`.
    pub object_id: Option<Raw<'a>>,
    pub fbid: Option<Raw<'a>>,
    pub gpid: Option<Raw<'a>>,
    /// Native `device_id` (of a profile update).
    pub device_id: Option<Raw<'a>>,
}

/// A value's JSON text as it stands in the line, as serde_json's raw value holds it: from
/// the first byte of the value to its last, no whitespace around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Raw<'a>(pub(super) &'a str);

impl<'a> Raw<'a> {
    pub fn get(self) -> &'a str {
        self.0
    }
}

impl<'a> From<&'a RawValue> for Raw<'a> {
    fn from(v: &'a RawValue) -> Self {
        Raw(v.get())
    }
}

/// A parsed top level: its fields, and whether some key occurred twice.
#[derive(Debug, Default, PartialEq)]
pub(super) struct TopLevel<'a> {
    pub fields: Fields<'a>,
    pub duplicate_key: bool,
}

impl<'a> Fields<'a> {
    /// The field `key` names, and its number (for the duplicate check), if it is one.
    pub(super) fn slot(&mut self, key: &str) -> Option<(u32, &mut Option<Raw<'a>>)> {
        Some(match key {
            "user_id" => (0, &mut self.user_id),
            "userId" => (1, &mut self.user_id_camel),
            "anonymousId" => (2, &mut self.anonymous_id),
            "identity" => (3, &mut self.identity),
            "event" => (4, &mut self.event),
            "evtName" => (5, &mut self.evt_name),
            "type" => (6, &mut self.kind),
            "ts" => (7, &mut self.ts),
            "timestamp" => (8, &mut self.timestamp),
            "props" => (9, &mut self.props),
            "properties" => (10, &mut self.properties),
            "traits" => (11, &mut self.traits),
            "context" => (12, &mut self.context),
            "evtData" => (13, &mut self.evt_data),
            "profileData" => (14, &mut self.profile_data),
            "name" => (15, &mut self.name),
            "objectId" => (16, &mut self.object_id),
            "FBID" => (17, &mut self.fbid),
            "GPID" => (18, &mut self.gpid),
            "device_id" => (19, &mut self.device_id),
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
        let mut fields = Fields::default();
        // Known fields by a bit each, other keys by name: a record of known fields only
        // compares no strings.
        let mut known = 0u32;
        let mut others = SeenKeys::default();
        let mut duplicate_key = false;
        // The whole object is read even after a duplicate: a syntax error further on still
        // makes the line `invalid_json`.
        while let Some(key) = map.next_key_seed(StrCow)? {
            match fields.slot(&key) {
                Some((bit, slot)) => {
                    let v: &RawValue = map.next_value()?;
                    *slot = (v.get() != "null").then_some(Raw::from(v));
                    duplicate_key |= known & (1 << bit) != 0;
                    known |= 1 << bit;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    duplicate_key |= !others.insert(key);
                }
            }
        }
        Ok(TopLevel {
            fields,
            duplicate_key,
        })
    }
}

/// A JSON string (an object key, or a value), borrowed from the input unless it has escapes.
pub(crate) struct StrCow;

impl<'de> DeserializeSeed<'de> for StrCow {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StrCow {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// The keys of one JSON object seen so far: a short list (a record has a handful), a hash set
/// past that, so that a line of 100,000 keys still takes linear time.
#[derive(Default)]
pub(crate) struct SeenKeys<'a> {
    few: SmallVec<[Cow<'a, str>; 16]>,
    many: Option<FxHashSet<Cow<'a, str>>>,
}

impl<'a> SeenKeys<'a> {
    /// Notes `key`; `false` when it was noted before.
    pub(crate) fn insert(&mut self, key: Cow<'a, str>) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(key);
        }
        if self.few.contains(&key) {
            return false;
        }
        if self.few.len() == self.few.inline_size() {
            let mut many: FxHashSet<_> = self.few.drain(..).collect();
            many.insert(key);
            self.many = Some(many);
        } else {
            self.few.push(key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_keys_find_a_repeat_among_few_and_many() {
        for n in [3, 16, 17, 1000] {
            let mut seen = SeenKeys::default();
            for i in 0..n {
                assert!(
                    seen.insert(Cow::Owned(format!("k{i}"))),
                    "k{i} of {n} is new"
                );
            }
            assert!(!seen.insert(Cow::Borrowed("k0")), "k0 again, of {n}");
            assert!(
                !seen.insert(Cow::Owned(format!("k{}", n - 1))),
                "the last again"
            );
            assert!(seen.insert(Cow::Borrowed("other")));
        }
    }
}
