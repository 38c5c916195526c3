//! The record model: a decoded, *projected* user event or profile update.
//!
//! Decoders (see [`decode`]) keep only what the configured campaigns can look at: property
//! names are interned into [`PropId`]s and event names into [`EventId`]s by a [`Schema`] built
//! from the config, so per-user state never holds property-name strings. Raw email and phone
//! values are normalised and hashed while decoding (see [`crate::identity`]) and never stored.

pub mod decode;
pub mod recording;

use compact_str::CompactString;
use rustc_hash::FxHashMap;
use serde::Deserialize;
use smallvec::SmallVec;

use crate::identity::IdHash;

/// A user id as found in the record (`user_id`, `userId`, `identity`). Ids of up to 24 bytes are
/// stored inline, without a heap allocation.
pub type UserId = CompactString;

/// Event time: milliseconds since the Unix epoch, UTC.
pub type EventTime = i64;

/// An interned property name (index into [`Schema::props`]).
pub type PropId = u16;

/// An interned event name (index into [`Schema::events`]).
pub type EventId = u16;

/// A property value as the campaign conditions see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null`: in a profile update, removes the property.
    Null,
    Bool(bool),
    Num(f64),
    Str(CompactString),
    /// An array or object: it exists, but no comparison matches it.
    Other,
    /// In a profile patch only (CleverTap's `$incr`/`$decr`): add to the current number; a
    /// missing or non-numeric current value counts as 0.
    Add(f64),
}

impl Value {
    /// A borrowed view for comparisons; `None` for `Null` (a missing value).
    pub fn as_ref(&self) -> Option<ValueRef<'_>> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::Num(n) => ValueRef::Num(*n),
            Value::Str(s) => ValueRef::Str(s),
            Value::Other => ValueRef::Other,
            Value::Add(n) => ValueRef::Num(*n),
        })
    }
}

/// A property value as conditions compare it, borrowed from wherever it is stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Other,
}

/// Projected properties: only those some campaign refers to. Two inline: trigger filters
/// rarely look at more, and a record must stay small (it is buffered and moved).
pub type Props = SmallVec<[(PropId, Value); 2]>;

/// An identifier change carried by a profile update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdUpdate {
    /// The update does not mention the identifier.
    #[default]
    Unchanged,
    /// Set to a valid value (already normalised and hashed).
    Set(IdHash),
    /// Removed (`null`) or set to an invalid value: the user no longer has one.
    Cleared,
}

/// A profile patch: properties to merge (`Value::Null` removes) and identifier changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfilePatch {
    pub props: Props,
    /// Custom properties no campaign reads, by name (kept up to
    /// [`Schema::max_custom_props`] per user).
    pub custom: Vec<(CompactString, Value)>,
    pub email: IdUpdate,
    pub phone: IdUpdate,
    /// The device the record came from ([`device_key`] of its device id), if it names one:
    /// its app fields ([`APP_FIELDS`]) are that device's (DESIGN.md §3a).
    pub device: Option<u64>,
}

/// The app fields, kept per device (DESIGN.md §3a); the other profile properties are the
/// user's.
pub const APP_FIELDS: [&str; 5] = [
    "app_version",
    "device_make",
    "device_model",
    "os_version",
    "sdk_version",
];

/// A device id as state keeps it: FNV-1a 64 of its bytes (stable across versions, as it is
/// written to the changelog), never 0 (the key of the default device, whose records name
/// none).
pub fn device_key(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

impl ProfilePatch {
    pub fn is_empty(&self) -> bool {
        self.props.is_empty()
            && self.custom.is_empty()
            && self.email == IdUpdate::Unchanged
            && self.phone == IdUpdate::Unchanged
    }
}

/// A user event; `id` is `None` when no campaign refers to the event name.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Option<EventId>,
    pub props: Props,
}

/// One decoded record. A Segment `track` with a `context` carries both an event and a profile
/// patch (its app/device fields); a profile update carries only the patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub user: UserId,
    pub ts: EventTime,
    pub event: Option<Event>,
    /// Boxed: most records are events, and the patch is large.
    pub profile: Option<Box<ProfilePatch>>,
    /// An erasure request (`{"type": "delete"}`): the user's state, profile and decisions
    /// are forgotten and their ids leave every audience (DESIGN §9 "Erasure").
    pub erase: bool,
}

impl Record {
    /// An erasure request for `user` at `ts`.
    pub fn erasure(user: UserId, ts: EventTime) -> Record {
        Record {
            user,
            ts,
            event: None,
            profile: None,
            erase: true,
        }
    }

    /// Whether the record can change any campaign state.
    pub fn is_relevant(&self) -> bool {
        self.erase
            || self.event.as_ref().is_some_and(|e| e.id.is_some())
            || self.profile.as_ref().is_some_and(|p| !p.is_empty())
    }
}

/// The names campaigns refer to, interned. Built once from the config.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    props: Vec<String>,
    prop_ids: FxHashMap<String, PropId>,
    events: Vec<String>,
    event_ids: FxHashMap<String, EventId>,
    /// Whether some campaign exports (or filters on) the email / phone identifiers.
    pub wants_email: bool,
    pub wants_phone: bool,
    /// Custom profile properties (names not interned) kept per user; 0 = none.
    pub max_custom_props: u8,
    /// Some campaign names a property ([`Schema::intern_prop`] was called other than by
    /// [`Schema::keep_profile`]); without one, no event property is ever read.
    reads_props: bool,
}

/// The canonical profile properties (DESIGN §2) that are stored as properties: every one is
/// kept whatever the campaigns read. `email` and `phone` are kept only hashed (as identifiers),
/// unless a campaign filters on the raw value.
pub const CANONICAL_PROPS: [&str; 12] = [
    "age",
    "gender",
    "country",
    "region",
    "city",
    "app_version",
    "device_make",
    "device_model",
    "os_version",
    "sdk_version",
    "email_unsubscribed",
    "sms_unsubscribed",
];

/// Distinct property names, and distinct event names, a schema holds at most: ids are 16 bits,
/// and the id after the last property name is where a shard's custom properties begin.
pub const MAX_NAMES: u16 = u16::MAX;

/// Pseudo-property names derived from identifiers.
pub const HAS_EMAIL: &str = "has_email";

/// Gender in one vocabulary whatever the format wrote: `M`, `male`, `Male`, `man` → `male`;
/// `F`, `female`, `woman` → `female`; `O`, `other` → `other`; any other value trimmed and
/// lowercased. Applied to profile values and to conditions on `gender` alike.
pub fn canonical_gender(s: &str) -> CompactString {
    let t = s.trim();
    let is = |words: &[&str]| words.iter().any(|w| t.eq_ignore_ascii_case(w));
    if is(&["m", "male", "man"]) {
        "male".into()
    } else if is(&["f", "female", "woman"]) {
        "female".into()
    } else if is(&["o", "other"]) {
        "other".into()
    } else {
        t.to_lowercase().into()
    }
}

/// Reachability flags a user who never set them has as `false` (CleverTap's default: a
/// user is subscribed until they opt out).
pub const UNSUBSCRIBED: [&str; 2] = ["email_unsubscribed", "sms_unsubscribed"];
pub const HAS_PHONE: &str = "has_phone";

impl Schema {
    /// Keeps every canonical property and both identifiers, and up to `max_custom` custom
    /// profile properties per user.
    pub fn keep_profile(&mut self, max_custom: u8) {
        for name in CANONICAL_PROPS {
            // Called on a schema with room for them (the config interns them first).
            self.intern_name(name)
                .expect("room for the canonical properties");
        }
        self.wants_email = true;
        self.wants_phone = true;
        self.max_custom_props = max_custom;
    }

    /// The id of property `name`, which something reads, interned if new; `None` once
    /// [`MAX_NAMES`] are interned.
    pub fn intern_prop(&mut self, name: &str) -> Option<PropId> {
        self.reads_props = true;
        self.intern_name(name)
    }

    /// Whether anything reads a property by name (see [`Schema::intern_prop`]): if not,
    /// events' properties need only be checked, not kept.
    pub fn reads_props(&self) -> bool {
        self.reads_props
    }

    fn intern_name(&mut self, name: &str) -> Option<PropId> {
        if let Some(&id) = self.prop_ids.get(name) {
            return Some(id);
        }
        let id = PropId::try_from(self.props.len())
            .ok()
            .filter(|&id| id < MAX_NAMES)?;
        self.props.push(name.to_owned());
        self.prop_ids.insert(name.to_owned(), id);
        Some(id)
    }

    /// The id of event `name`, interned if new; `None` once [`MAX_NAMES`] are interned.
    pub fn intern_event(&mut self, name: &str) -> Option<EventId> {
        if let Some(&id) = self.event_ids.get(name) {
            return Some(id);
        }
        let id = EventId::try_from(self.events.len())
            .ok()
            .filter(|&id| id < MAX_NAMES)?;
        self.events.push(name.to_owned());
        self.event_ids.insert(name.to_owned(), id);
        Some(id)
    }

    pub fn prop(&self, name: &str) -> Option<PropId> {
        self.prop_ids.get(name).copied()
    }

    pub fn event(&self, name: &str) -> Option<EventId> {
        self.event_ids.get(name).copied()
    }

    pub fn prop_names(&self) -> &[String] {
        &self.props
    }

    pub fn prop_name(&self, id: PropId) -> &str {
        &self.props[usize::from(id)]
    }

    pub fn event_name(&self, id: EventId) -> &str {
        &self.events[usize::from(id)]
    }
}

/// Wire formats of input records (`source.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Native,
    Segment,
    Clevertap,
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<EventTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}
