//! Decoders: one line of bytes → a projected [`Record`], for the `native`, `segment` and
//! `clevertap` formats of DESIGN §2.
//!
//! Every failure is a [`Malformed`] reason, never a panic. Decoding borrows from the input:
//! property names are matched against the [`Schema`] without allocating, properties no campaign
//! refers to are skipped, and email/phone values are hashed as they are read.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

mod fields;
mod scan;

use fields::{Fields, Raw, TopLevel};
pub(crate) use fields::{SeenKeys, StrCow};

use super::Format;
use super::{
    device_key, Event, EventTime, IdUpdate, ProfilePatch, Props, Record, Schema, UserId, Value,
};
use super::{HAS_EMAIL, HAS_PHONE};
use crate::identity;

/// Lines longer than this are rejected as `oversize`.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Why a line was not decoded. The names are the `reason` of dead-letter lines and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    Oversize,
    InvalidUtf8,
    InvalidJson,
    NotAnObject,
    /// A key twice at the top level of the record (see `fields`).
    DuplicateKey,
    MissingUserId,
    InvalidUserId,
    /// A device id (native `device_id`, Segment `context.device.id`, CleverTap `objectId` as
    /// the device) that is not a string or an integer.
    InvalidDeviceId,
    MissingEvent,
    InvalidEvent,
    MissingTs,
    InvalidTs,
    InvalidProps,
    UnknownType,
    InvalidEnvelope,
    /// `ts` too far ahead of the record's reference time (`engine.max_future`): a clock or
    /// unit error (milliseconds read as seconds…) that would otherwise move the watermark.
    FutureTs,
    /// Not malformed, but arrived behind the watermark (DESIGN §4).
    Late,
}

impl Malformed {
    pub const ALL: [Malformed; 17] = [
        Malformed::Oversize,
        Malformed::InvalidUtf8,
        Malformed::InvalidJson,
        Malformed::NotAnObject,
        Malformed::DuplicateKey,
        Malformed::MissingUserId,
        Malformed::InvalidUserId,
        Malformed::InvalidDeviceId,
        Malformed::MissingEvent,
        Malformed::InvalidEvent,
        Malformed::MissingTs,
        Malformed::InvalidTs,
        Malformed::InvalidProps,
        Malformed::UnknownType,
        Malformed::InvalidEnvelope,
        Malformed::FutureTs,
        Malformed::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::Oversize => "oversize",
            Malformed::InvalidUtf8 => "invalid_utf8",
            Malformed::InvalidJson => "invalid_json",
            Malformed::NotAnObject => "not_an_object",
            Malformed::DuplicateKey => "duplicate_key",
            Malformed::MissingUserId => "missing_user_id",
            Malformed::InvalidUserId => "invalid_user_id",
            Malformed::InvalidDeviceId => "invalid_device_id",
            Malformed::MissingEvent => "missing_event",
            Malformed::InvalidEvent => "invalid_event",
            Malformed::MissingTs => "missing_ts",
            Malformed::InvalidTs => "invalid_ts",
            Malformed::InvalidProps => "invalid_props",
            Malformed::UnknownType => "unknown_type",
            Malformed::InvalidEnvelope => "invalid_envelope",
            Malformed::FutureTs => "future_ts",
            Malformed::Late => "late",
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decodes lines of one format against a schema.
#[derive(Debug, Clone)]
pub struct Decoder<'s> {
    format: Format,
    schema: &'s Schema,
}

fn is_null(v: Option<Raw<'_>>) -> Option<Raw<'_>> {
    v.filter(|r| r.get() != "null")
}

/// Whether JSON text `b` holds an escape (a backslash). Ids and names are short, and a plain
/// loop beats memchr's set-up on them.
fn has_escape(b: &[u8]) -> bool {
    if b.len() < 32 {
        b.contains(&b'\\')
    } else {
        memchr::memchr(b'\\', b).is_some()
    }
}

/// A JSON string, borrowed unless it has escapes.
fn string(v: Raw<'_>) -> Option<Cow<'_, str>> {
    // Without escapes, a string is its text between the quotes (its syntax, control
    // characters included, was checked when the line was read).
    let text = v.get();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !has_escape(inner.as_bytes()) {
            return Some(Cow::Borrowed(inner));
        }
    }
    match <&str>::deserialize(&mut serde_json::Deserializer::from_str(v.get())) {
        Ok(s) => Some(Cow::Borrowed(s)),
        Err(_) => serde_json::from_str::<String>(v.get()).ok().map(Cow::Owned),
    }
}

fn str_field<'a>(
    v: Option<Raw<'a>>,
    missing: Malformed,
    invalid: Malformed,
) -> Result<Cow<'a, str>, Malformed> {
    let v = is_null(v).ok_or(missing)?;
    match string(v) {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(missing),
        None => Err(invalid),
    }
}

/// Parses an event time: integers are in `int_unit_ms` units, strings are RFC 3339; a
/// missing one is `default` (the Kafka timestamp), if there is one.
fn ts_field(
    v: Option<Raw<'_>>,
    int_unit_ms: i64,
    default: Option<EventTime>,
) -> Result<EventTime, Malformed> {
    let Some(v) = is_null(v) else {
        return default.ok_or(Malformed::MissingTs);
    };
    let text = v.get();
    if text.starts_with('"') {
        let s = string(v).ok_or(Malformed::InvalidTs)?;
        return super::parse_rfc3339_ms(&s).ok_or(Malformed::InvalidTs);
    }
    let n: i64 = text.parse().map_err(|_| Malformed::InvalidTs)?;
    n.checked_mul(int_unit_ms).ok_or(Malformed::InvalidTs)
}

/// The top level of any line, through serde_json.
fn top_level(text: &str) -> Result<TopLevel<'_>, Malformed> {
    serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Malformed::NotAnObject,
        _ => Malformed::InvalidJson,
    })
}

impl<'s> Decoder<'s> {
    pub fn new(format: Format, schema: &'s Schema) -> Self {
        Decoder { format, schema }
    }

    pub fn schema(&self) -> &'s Schema {
        self.schema
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Decodes one line (without its newline).
    pub fn decode(&self, line: &[u8]) -> Result<Record, Malformed> {
        self.decode_at(line, None)
    }

    /// Decodes one record whose Kafka timestamp is `kafka_ts` (in `run`, or from a kcat
    /// envelope): a record without its own time takes that one.
    pub fn decode_at(&self, line: &[u8], kafka_ts: Option<EventTime>) -> Result<Record, Malformed> {
        if line.len() > MAX_RECORD_BYTES {
            return Err(Malformed::Oversize);
        }
        let text = simdutf8::basic::from_utf8(line).map_err(|_| Malformed::InvalidUtf8)?;
        self.decode_str_at(text, kafka_ts)
    }

    /// Decodes one line of text.
    pub fn decode_str(&self, text: &str) -> Result<Record, Malformed> {
        self.decode_str_at(text, None)
    }

    fn decode_str_at(&self, text: &str, kafka_ts: Option<EventTime>) -> Result<Record, Malformed> {
        if text.len() > MAX_RECORD_BYTES {
            return Err(Malformed::Oversize);
        }
        let mut scanned = TopLevel::default();
        let parsed;
        let top = if scan::scan_into(text, &mut scanned.fields).is_some() {
            &scanned
        } else {
            parsed = top_level(text)?;
            &parsed
        };
        self.record(top, kafka_ts)
    }

    /// The record a line's top level makes.
    fn record(&self, top: &TopLevel, kafka_ts: Option<EventTime>) -> Result<Record, Malformed> {
        if top.duplicate_key {
            return Err(Malformed::DuplicateKey);
        }
        let f = &top.fields;
        match self.format {
            Format::Native => self.native(f, kafka_ts),
            Format::Segment => self.segment(f, kafka_ts),
            Format::Clevertap => self.clevertap(f, kafka_ts),
        }
    }

    /// A user id: a non-empty string, or an integer (Segment allows a numeric `userId`; it is
    /// the id written in decimal, as JavaScript would print it).
    fn user(v: Option<Raw<'_>>) -> Result<UserId, Malformed> {
        if let Some(raw) = is_null(v) {
            let text = raw.get();
            let digits = text.strip_prefix('-').unwrap_or(text);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(UserId::from(text));
            }
        }
        str_field(v, Malformed::MissingUserId, Malformed::InvalidUserId).map(|s| UserId::from(&*s))
    }

    /// A device id ([`device_key`] of it): a string or an integer, as user ids are; `None`
    /// when absent, `null` or empty.
    fn device(v: Option<Raw<'_>>) -> Result<Option<u64>, Malformed> {
        match is_null(v) {
            None => Ok(None),
            Some(_) => match Self::user(v) {
                Ok(id) => Ok(Some(device_key(&id))),
                Err(Malformed::MissingUserId) => Ok(None),
                Err(_) => Err(Malformed::InvalidDeviceId),
            },
        }
    }

    fn event(
        &self,
        name: Option<Raw<'_>>,
        props: Option<Raw<'_>>,
        plain: bool,
    ) -> Result<Event, Malformed> {
        let name = str_field(name, Malformed::MissingEvent, Malformed::InvalidEvent)?;
        self.event_named(&name, props, plain)
    }

    fn event_named(
        &self,
        name: &str,
        props: Option<Raw<'_>>,
        plain: bool,
    ) -> Result<Event, Malformed> {
        let id = self.schema.event(name);
        let mut patch = ProfilePatch::default();
        // Properties of events no campaign listens to (or of any event, when no campaign
        // reads a property) are read as well, none kept: whether a record is malformed does
        // not depend on the campaigns.
        if let Some(p) = is_null(props) {
            let keys = if id.is_some() && self.schema.reads_props() {
                Keys::Event
            } else {
                Keys::Unread
            };
            // A plain line's values were seen to have no escape, exponent or long number:
            // only the type of `props` is left to look at.
            let acceptable = if plain {
                p.get().starts_with('{')
            } else {
                plainly_acceptable(p.get())
            };
            if keys != Keys::Unread || !acceptable {
                self.props(p, keys, &mut patch)?;
            }
        }
        Ok(Event {
            id,
            props: patch.props,
        })
    }

    fn props(&self, raw: Raw<'_>, keys: Keys, out: &mut ProfilePatch) -> Result<(), Malformed> {
        let mut de = serde_json::Deserializer::from_str(raw.get());
        PropsSeed {
            schema: self.schema,
            keys,
            out,
        }
        .deserialize(&mut de)
        .map_err(|_| Malformed::InvalidProps)
    }

    fn profile(&self, raw: Option<Raw<'_>>, keys: Keys) -> Result<ProfilePatch, Malformed> {
        let mut patch = ProfilePatch::default();
        if let Some(p) = is_null(raw) {
            self.props(p, keys, &mut patch)?;
        }
        Ok(patch)
    }

    fn native(&self, f: &Fields, kafka_ts: Option<EventTime>) -> Result<Record, Malformed> {
        let user = Self::user(f.user_id)?;
        let kind = match is_null(f.kind) {
            None => None,
            Some(k) => Some(string(k).ok_or(Malformed::UnknownType)?),
        };
        let ts = ts_field(f.ts, 1, kafka_ts)?;
        match kind.as_deref() {
            None | Some("event") | Some("track") => Ok(Record {
                user,
                ts,
                event: Some(self.event(f.event, f.props, f.plain)?),
                profile: None,
                erase: false,
            }),
            Some("delete") => Ok(Record::erasure(user, ts)),
            Some("profile") => {
                let mut patch = self.profile(f.props, Keys::Profile)?;
                patch.device = Self::device(f.device_id)?;
                Ok(Record {
                    user,
                    ts,
                    event: None,
                    profile: Some(Box::new(patch)),
                    erase: false,
                })
            }
            Some(_) => Err(Malformed::UnknownType),
        }
    }

    /// Segment's calls: `track` is an event; `page` and `screen` are events named as Segment's
    /// destinations name them (`Viewed Home Page` / `Loaded a Page` without a name; `Viewed Home
    /// Screen` / `Loaded a Screen`); `identify` is a profile; `alias` and `group` are accepted
    /// and counted but change nothing (they link identities and describe accounts). The
    /// profile part of `context` (`traits`, `location`, app and device) goes with any call.
    fn segment(&self, f: &Fields, kafka_ts: Option<EventTime>) -> Result<Record, Malformed> {
        let kind = str_field(f.kind, Malformed::UnknownType, Malformed::UnknownType)?;
        let user = match is_null(f.user_id_camel) {
            Some(_) => Self::user(f.user_id_camel)?,
            None => Self::user(f.anonymous_id)?,
        };
        let ts = ts_field(f.timestamp, 1, kafka_ts)?;
        let context =
            |patch: Option<ProfilePatch>| -> Result<Option<Box<ProfilePatch>>, Malformed> {
                let ctx = match is_null(f.context) {
                    Some(c) => Some(self.segment_context(c)?),
                    None => None,
                };
                Ok(match (patch, ctx) {
                    (None, None) => None,
                    (Some(p), None) | (None, Some(p)) => Some(Box::new(p)),
                    (Some(mut p), Some(ctx)) => {
                        // The call's own traits win over those of its context.
                        let mut merged = ctx;
                        merged.props.append(&mut p.props);
                        if p.email != IdUpdate::Unchanged {
                            merged.email = p.email;
                        }
                        if p.phone != IdUpdate::Unchanged {
                            merged.phone = p.phone;
                        }
                        merged.custom.append(&mut p.custom);
                        Some(Box::new(merged))
                    }
                })
            };
        let record = |event: Option<Event>, profile| Record {
            user,
            ts,
            event,
            profile,
            erase: false,
        };
        match &*kind {
            "track" => {
                let event = self.event(f.event, f.properties, f.plain)?;
                Ok(record(Some(event), context(None)?))
            }
            "page" | "screen" => {
                let what = if &*kind == "page" { "Page" } else { "Screen" };
                let name = match is_null(f.name) {
                    None => None,
                    Some(n) => Some(string(n).ok_or(Malformed::InvalidEvent)?),
                };
                let name = match name.as_deref().map(str::trim) {
                    Some(n) if !n.is_empty() => format!("Viewed {n} {what}"),
                    _ => format!("Loaded a {what}"),
                };
                let event = self.event_named(&name, f.properties, f.plain)?;
                Ok(record(Some(event), context(None)?))
            }
            "identify" => {
                let patch = self.profile(f.traits, Keys::SegmentTraits)?;
                Ok(record(None, context(Some(patch))?))
            }
            "alias" | "group" => Ok(record(None, None)),
            // Segment's `delete` (a user deletion request, as its regulation API forwards it).
            "delete" => Ok(Record {
                erase: true,
                ..record(None, None)
            }),
            _ => Err(Malformed::UnknownType),
        }
    }

    /// `context.app.version`, `context.os.version`, `context.device.{manufacturer,model}`,
    /// `context.library.version` feed the app/device profile fields.
    fn segment_context(&self, raw: Raw<'_>) -> Result<ProfilePatch, Malformed> {
        #[derive(Deserialize, Default)]
        struct Part<'a> {
            #[serde(borrow)]
            version: Option<&'a RawValue>,
            #[serde(borrow)]
            manufacturer: Option<&'a RawValue>,
            #[serde(borrow)]
            model: Option<&'a RawValue>,
            #[serde(borrow)]
            id: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Context<'a> {
            #[serde(borrow)]
            app: Option<Part<'a>>,
            #[serde(borrow)]
            os: Option<Part<'a>>,
            #[serde(borrow)]
            device: Option<Part<'a>>,
            #[serde(borrow)]
            library: Option<Part<'a>>,
            #[serde(borrow)]
            traits: Option<&'a RawValue>,
            #[serde(borrow)]
            location: Option<Location<'a>>,
        }
        #[derive(Deserialize, Default)]
        struct Location<'a> {
            #[serde(borrow)]
            country: Option<&'a RawValue>,
            #[serde(borrow)]
            region: Option<&'a RawValue>,
            #[serde(borrow)]
            city: Option<&'a RawValue>,
        }
        let ctx: Context = serde_json::from_str(raw.get()).map_err(|_| Malformed::InvalidProps)?;
        let mut patch = ProfilePatch {
            device: Self::device(ctx.device.as_ref().and_then(|d| d.id).map(Raw::from))?,
            ..ProfilePatch::default()
        };
        // `context.traits` first: what the call itself says about device and place wins.
        if let Some(t) = is_null(ctx.traits.map(Raw::from)) {
            self.props(t, Keys::SegmentTraits, &mut patch)?;
        }
        let location = ctx.location.unwrap_or_default();
        let fields = [
            ("country", location.country),
            ("region", location.region),
            ("city", location.city),
            ("app_version", ctx.app.as_ref().and_then(|p| p.version)),
            ("os_version", ctx.os.as_ref().and_then(|p| p.version)),
            (
                "device_make",
                ctx.device.as_ref().and_then(|p| p.manufacturer),
            ),
            ("device_model", ctx.device.as_ref().and_then(|p| p.model)),
            ("sdk_version", ctx.library.as_ref().and_then(|p| p.version)),
        ];
        for (name, raw) in fields {
            let Some(raw) = raw else { continue };
            // Read whether or not a campaign reads it (the same verdict either way).
            let mut de = serde_json::Deserializer::from_str(raw.get());
            let v = ValueSeed
                .deserialize(&mut de)
                .map_err(|_| Malformed::InvalidProps)?;
            if let Some(id) = self.schema.prop(name) {
                patch.props.push((id, v));
            }
        }
        Ok(patch)
    }

    /// A CleverTap record: the user is `identity`, else `objectId` (CleverTap's own id of the
    /// profile), else `FBID`, else `GPID` — the identifiers CleverTap's upload API accepts,
    /// in that order of precedence; `ts` is in seconds. A profile record's `objectId` is also
    /// its device: the CleverTap ID identifies a device (an app install; "Set CleverTap ID —
    /// unique device identifiers", https://developer.clevertap.com/docs/set-clevertap-id), so
    /// a user identified by `identity` who uses two phones has two.
    fn clevertap(&self, f: &Fields, kafka_ts: Option<EventTime>) -> Result<Record, Malformed> {
        let id = [f.identity, f.object_id, f.fbid, f.gpid]
            .into_iter()
            .find(|v| is_null(*v).is_some())
            .flatten();
        let user = Self::user(id)?;
        let ts = ts_field(f.ts, 1000, kafka_ts)?;
        let kind = match is_null(f.kind) {
            None => None,
            Some(k) => Some(string(k).ok_or(Malformed::UnknownType)?),
        };
        match kind.as_deref() {
            None | Some("event") => Ok(Record {
                user,
                ts,
                event: Some(self.event(f.evt_name, f.evt_data, f.plain)?),
                profile: None,
                erase: false,
            }),
            // Not a CleverTap upload type: remarket's own, so an erasure can travel on a
            // CleverTap-format topic too.
            Some("delete") => Ok(Record::erasure(user, ts)),
            Some("profile") => {
                let mut patch = self.profile(f.profile_data, Keys::Clevertap)?;
                patch.device = Self::device(f.object_id)?;
                Ok(Record {
                    user,
                    ts,
                    event: None,
                    profile: Some(Box::new(patch)),
                    erase: false,
                })
            }
            Some(_) => Err(Malformed::UnknownType),
        }
    }
}

// === property projection ===

/// How property keys map to canonical names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Event properties: names as they are.
    Event,
    /// Native profile: canonical names.
    Profile,
    /// Segment `traits`: canonical names, `address` nested.
    SegmentTraits,
    /// Segment `traits.address`: `country`, `state` → `region`, `city`.
    SegmentAddress,
    /// CleverTap `profileData`: capitalised names, `MSG-email`/`MSG-sms` opt-ins.
    Clevertap,
    /// Properties of an event no campaign listens to: read, none kept.
    Unread,
}

/// Where one key's value goes.
enum Target {
    Prop(u16),
    Email(Option<u16>),
    Phone(Option<u16>),
    /// CleverTap opt-in flag: stored negated as the `…_unsubscribed` property.
    OptIn(u16),
    /// Gender, in its canonical vocabulary ([`crate::event::canonical_gender`]).
    Gender(u16),
    Address,
    /// A custom profile property no campaign reads: kept by name.
    Custom(compact_str::CompactString),
    /// Not kept; its value is read as a kept one would be, so that it is malformed exactly
    /// when it would be if a campaign read it.
    Skip,
}

const CLEVERTAP_NAMES: [(&str, &str); 9] = [
    ("Email", "email"),
    ("Phone", "phone"),
    ("Age", "age"),
    ("Gender", "gender"),
    ("Country", "country"),
    ("Region", "region"),
    ("City", "city"),
    ("MSG-email", "email_unsubscribed"),
    ("MSG-sms", "sms_unsubscribed"),
];

/// Whether the properties `text` of an event no campaign listens to are ones [`PropsSeed`]
/// accepts, seen without parsing them again: `text` is a JSON value whose syntax the first
/// pass checked, and with [`Keys::Unread`] the seed checks on top of that only that it is an
/// object whose keys and values decode — a string with an escape may not (a lone surrogate),
/// a number with an exponent or 300 digits in a row may be out of range. `false`: parse it to
/// know. Most lines of a recording are such events (views, page loads).
fn plainly_acceptable(text: &str) -> bool {
    let b = text.as_bytes();
    if b.first() != Some(&b'{') || has_escape(b) {
        return false;
    }
    // An exponent follows a digit or a point (an `e` elsewhere is in a string or a name).
    let exponent = memchr::memchr2_iter(b'e', b'E', b)
        .any(|i| i > 0 && matches!(b[i - 1], b'0'..=b'9' | b'.'));
    // 300 digits in a row take 300 bytes.
    let long = b.len() >= 300 && b.split(|c| !c.is_ascii_digit()).any(|run| run.len() >= 300);
    !exponent && !long
}

fn target(schema: &Schema, keys: Keys, key: &str) -> Target {
    let canonical = match keys {
        Keys::Event => return schema.prop(key).map_or(Target::Skip, Target::Prop),
        Keys::Unread => return Target::Skip,
        Keys::SegmentTraits if key == "address" => return Target::Address,
        Keys::SegmentAddress => match key {
            "country" | "city" => key,
            "state" => "region",
            _ => return Target::Skip,
        },
        Keys::Clevertap => CLEVERTAP_NAMES
            .iter()
            .find(|(ct, _)| *ct == key)
            .map_or(key, |(_, c)| c),
        Keys::Profile | Keys::SegmentTraits => key,
    };
    let prop = schema.prop(canonical);
    match canonical {
        "email" if schema.wants_email => Target::Email(prop),
        "phone" if schema.wants_phone => Target::Phone(prop),
        HAS_EMAIL | HAS_PHONE => Target::Skip,
        _ if prop.is_none() && schema.max_custom_props > 0 && keys != Keys::SegmentAddress => {
            Target::Custom(canonical.into())
        }
        "email_unsubscribed" | "sms_unsubscribed"
            if keys == Keys::Clevertap && key != canonical =>
        {
            prop.map_or(Target::Skip, Target::OptIn)
        }
        "gender" => prop.map_or(Target::Skip, Target::Gender),
        _ => prop.map_or(Target::Skip, Target::Prop),
    }
}

struct PropsSeed<'a> {
    schema: &'a Schema,
    keys: Keys,
    out: &'a mut ProfilePatch,
}

struct KeySeed<'a> {
    schema: &'a Schema,
    keys: Keys,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Target;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Target, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Target;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Target, E> {
        Ok(target(self.schema, self.keys, key))
    }
}

impl<'de> DeserializeSeed<'de> for PropsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PropsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of properties")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (schema, keys) = (self.schema, self.keys);
        while let Some(t) = map.next_key_seed(KeySeed { schema, keys })? {
            match t {
                Target::Skip => skip_value(&mut map, keys)?,
                Target::Prop(id) => {
                    let Some(v) = profile_value(&mut map, keys)? else {
                        continue;
                    };
                    set(&mut self.out.props, id, v);
                }
                Target::Custom(name) => {
                    let Some(v) = profile_value(&mut map, keys)? else {
                        continue;
                    };
                    match self.out.custom.iter_mut().find(|(n, _)| *n == name) {
                        Some(slot) => slot.1 = v,
                        None => self.out.custom.push((name, v)),
                    }
                }
                Target::Email(prop) | Target::Phone(prop) => {
                    let is_email = matches!(t, Target::Email(_));
                    let Some(v) = profile_value(&mut map, keys)? else {
                        continue;
                    };
                    let update = match &v {
                        Value::Str(s) if is_email => identity::hash_email(s),
                        Value::Str(s) => identity::hash_phone(s),
                        _ => None,
                    }
                    .map_or(IdUpdate::Cleared, IdUpdate::Set);
                    if is_email {
                        self.out.email = update;
                    } else {
                        self.out.phone = update;
                    }
                    if let Some(id) = prop {
                        set(&mut self.out.props, id, v);
                    }
                }
                Target::OptIn(id) => {
                    let v = match profile_value(&mut map, keys)? {
                        None => continue,
                        Some(Value::Bool(b)) => Value::Bool(!b),
                        Some(other) => other,
                    };
                    set(&mut self.out.props, id, v);
                }
                Target::Gender(id) => {
                    let v = match profile_value(&mut map, keys)? {
                        None => continue,
                        Some(Value::Str(s)) => Value::Str(crate::event::canonical_gender(&s)),
                        Some(other) => other,
                    };
                    set(&mut self.out.props, id, v);
                }
                Target::Address => map.next_value_seed(PropsSeed {
                    schema,
                    keys: Keys::SegmentAddress,
                    out: self.out,
                })?,
            }
        }
        Ok(())
    }
}

/// The next property value of a profile. CleverTap's uploads may give an operation instead
/// of a value (developer.clevertap.com/docs/upload-user-profiles-api; the Android SDK's
/// `ProfileValueHandler` sends the same `$incr`/`$decr` commands): `{"$incr": n}` and
/// `{"$decr": n}` add to the current number (a missing or non-numeric one counts as 0),
/// `{"$delete": …}` removes the property, `{"$add": […]}` makes a multi-value property exist
/// (its values are not kept: only `exists` compares it), and `{"$remove": […]}` leaves the
/// property as it is (`None`; whether values remain is not known). Any other object is a value
/// no comparison matches, as in the other formats.
fn profile_value<'de, A: MapAccess<'de>>(
    map: &mut A,
    keys: Keys,
) -> Result<Option<Value>, A::Error> {
    if keys != Keys::Clevertap {
        return map.next_value_seed(ValueSeed).map(Some);
    }
    Ok(match map.next_value_seed(OpSeed)? {
        Op::Set(v) => Some(v),
        Op::Add(n) => Some(Value::Add(n)),
        Op::Keep => None,
    })
}

/// Reads the next property value as [`profile_value`] would and keeps nothing: for a plain
/// value, `deserialize_any` into [`IgnoredAny`] checks exactly what [`ValueSeed`] does (the
/// value itself parsed, what it nests only for syntax) without allocating.
fn skip_value<'de, A: MapAccess<'de>>(map: &mut A, keys: Keys) -> Result<(), A::Error> {
    if keys == Keys::Clevertap {
        return map.next_value_seed(OpSeed).map(drop);
    }
    map.next_value_seed(Checked)
}

struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(IgnoredAny).map(drop)
    }
}

/// A CleverTap profile value: a plain value or a `$`-operation on the current one.
enum Op {
    Set(Value),
    Add(f64),
    Keep,
}

struct OpSeed;

impl<'de> DeserializeSeed<'de> for OpSeed {
    type Value = Op;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Op, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OpSeed {
    type Value = Op;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property value or a CleverTap operation")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Op, E> {
        ValueSeed.visit_bool(v).map(Op::Set)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Op, E> {
        ValueSeed.visit_i64(v).map(Op::Set)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Op, E> {
        ValueSeed.visit_u64(v).map(Op::Set)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Op, E> {
        ValueSeed.visit_f64(v).map(Op::Set)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Op, E> {
        ValueSeed.visit_str(v).map(Op::Set)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Op, E> {
        ValueSeed.visit_unit().map(Op::Set)
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Op, E> {
        ValueSeed.visit_none().map(Op::Set)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Op, A::Error> {
        ValueSeed.visit_seq(seq).map(Op::Set)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Op, A::Error> {
        // One key: the operation. More keys make it a plain object value.
        let mut op = None;
        let mut keys = 0;
        while let Some(k) = map.next_key::<Cow<'de, str>>()? {
            keys += 1;
            let sign = match k.as_ref() {
                "$incr" => 1.0,
                "$decr" => -1.0,
                "$delete" => {
                    map.next_value::<IgnoredAny>()?;
                    op = Some(Op::Set(Value::Null));
                    continue;
                }
                "$add" => {
                    map.next_value::<IgnoredAny>()?;
                    op = Some(Op::Set(Value::Other));
                    continue;
                }
                "$remove" => {
                    map.next_value::<IgnoredAny>()?;
                    op = Some(Op::Keep);
                    continue;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            op = Some(match map.next_value_seed(ValueSeed)? {
                Value::Num(n) if n.is_finite() => Op::Add(sign * n),
                _ => Op::Keep,
            });
        }
        Ok(match op {
            Some(op) if keys == 1 => op,
            _ => Op::Set(Value::Other),
        })
    }
}

/// Sets a property, last value wins (duplicate keys in one object).
fn set(props: &mut Props, id: u16, v: Value) {
    match props.iter_mut().find(|(p, _)| *p == id) {
        Some(slot) => slot.1 = v,
        None => props.push((id, v)),
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Num(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
}

#[cfg(test)]
mod tests;
