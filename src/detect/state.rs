//! Per-user state and its pure transitions (DESIGN §4). No I/O, no clock, no channels: the
//! shard calls [`UserState::apply`] for each record in event-time order and
//! [`UserState::fire`] for each due timer; outputs and new timers go into a [`Ctx`].
//!
//! Invariants:
//! - windows of a campaign are kept in trigger-time order, so their deadlines (`tA + within`)
//!   are created in non-decreasing order and the shard can keep one FIFO timer queue a campaign;
//! - a timer is *stale* when its window was closed meanwhile: `fire` checks the window still
//!   exists before acting, so timers are never cancelled;
//! - `Qualified`/`Done` entries are kept: a user gets at most one decision per campaign.

use compact_str::CompactString;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use super::snapshot::{SnapCampaign, SnapValue, UserSnapshot};
use super::{CampaignIdx, Conversion, Ids, Output, Qualification, Role, Rules};
use crate::campaign::condition::all_hold;
use crate::event::{EventTime, IdUpdate, ProfilePatch, PropId, Record, UserId, Value, ValueRef};
use extra::Extra;

/// A shard's string values, interned: profiles hold a `u32` per string property, and values
/// such as countries, cities and app versions are stored once per shard. Numbers that an
/// `f32` does not hold exactly are interned the same way.
#[derive(Debug, Default)]
pub struct Interner {
    ids: FxHashMap<CompactString, u32>,
    strs: Vec<CompactString>,
    /// Names of custom profile properties (string ids): property id `base + i` is
    /// `custom[i]`, where `base` is [`Rules::custom_base`].
    custom: Vec<u32>,
    custom_ids: FxHashMap<u32, PropId>,
    /// Interned numbers (by their `f64` bits).
    nums: Vec<f64>,
    num_ids: FxHashMap<u64, u32>,
}

impl Interner {
    /// The property id of custom property `name` (`None`: the id space is full).
    pub fn custom_prop(&mut self, name: &CompactString, base: PropId) -> Option<PropId> {
        let s = self.intern(name);
        if let Some(&k) = self.custom_ids.get(&s) {
            return Some(base + k);
        }
        let k = PropId::try_from(self.custom.len()).ok()?;
        base.checked_add(k)?;
        self.custom.push(s);
        self.custom_ids.insert(s, k);
        Some(base + k)
    }

    /// The property id custom property `name` has in this interner, if any user has it.
    pub fn find_custom(&self, name: &str, base: PropId) -> Option<PropId> {
        let s = self.ids.get(name)?;
        self.custom_ids.get(s).map(|&k| base + k)
    }

    /// The name of property `id`: a campaign's, or a custom one.
    pub fn prop_name<'a>(&'a self, rules: &'a Rules, id: PropId) -> &'a str {
        match id.checked_sub(rules.custom_base) {
            Some(k) => self.get(self.custom[usize::from(k)]),
            None => &rules.prop_names[usize::from(id)],
        }
    }

    pub fn intern(&mut self, s: &CompactString) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.strs.len()).expect("fewer than 4G distinct strings");
        self.strs.push(s.clone());
        self.ids.insert(s.clone(), id);
        id
    }

    pub fn get(&self, id: u32) -> &str {
        &self.strs[id as usize]
    }

    fn intern_num(&mut self, n: f64) -> u32 {
        let bits = n.to_bits();
        if let Some(&id) = self.num_ids.get(&bits) {
            return id;
        }
        let id = u32::try_from(self.nums.len()).expect("fewer than 4G distinct numbers");
        self.nums.push(n);
        self.num_ids.insert(bits, id);
        id
    }

    pub fn len(&self) -> usize {
        self.strs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strs.is_empty()
    }
}

/// One stored profile property: 8 bytes. Strings are interned; a number is kept inline as an
/// `f32` when that holds it exactly (ages, counts, prices in cents and most small decimals
/// with a short binary expansion), and interned otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prop {
    /// A bool as 0/1, `f32` bits, or an interned string or number id.
    val: u32,
    id: PropId,
    tag: Tag,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Bool,
    /// `val` is the number's `f32` bits.
    Num,
    /// `val` is an interned number.
    BigNum,
    Str,
    Other,
}

impl Prop {
    fn new(id: PropId, v: &Value, strings: &mut Interner) -> Option<Prop> {
        let (tag, val) = match v {
            Value::Null => return None,
            Value::Bool(b) => (Tag::Bool, u32::from(*b)),
            Value::Num(n) => {
                let small = *n as f32;
                if f64::from(small).to_bits() == n.to_bits() {
                    (Tag::Num, small.to_bits())
                } else {
                    (Tag::BigNum, strings.intern_num(*n))
                }
            }
            Value::Str(s) => (Tag::Str, strings.intern(s)),
            Value::Other => (Tag::Other, 0),
            // Resolved against the current value by `merge_profile`; alone, added to 0.
            Value::Add(n) => return Prop::new(id, &Value::Num(*n), strings),
        };
        Some(Prop { val, id, tag })
    }

    fn get<'s>(&self, strings: &'s Interner) -> ValueRef<'s> {
        match self.tag {
            Tag::Bool => ValueRef::Bool(self.val != 0),
            Tag::Num => ValueRef::Num(f64::from(f32::from_bits(self.val))),
            Tag::BigNum => ValueRef::Num(strings.nums[self.val as usize]),
            Tag::Str => ValueRef::Str(strings.get(self.val)),
            Tag::Other => ValueRef::Other,
        }
    }
}

/// A campaign's progress for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampState {
    /// Windows still open (for a live trigger, until they fire at `tA`): their trigger time
    /// and `inaction.match` key (0 without `match`). One inline: most users have one window
    /// open a campaign, and a second inline slot cost every entry 16 bytes (done ones too).
    Open(SmallVec<[(EventTime, u64); 1]>),
    /// Qualified at `at`; waiting for a goal event until `at + goal.within`.
    Qualified { at: EventTime },
    /// Qualified, nothing more to track.
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct CampEntry {
    campaign: CampaignIdx,
    state: CampState,
}

/// One user's state in a shard.
#[derive(Debug, Clone, PartialEq)]
pub struct UserState {
    pub id: UserId,
    /// Profile properties some campaign looks at, as of the last applied record.
    profile: Box<[Prop]>,
    /// Hashed identifiers; boxed because many users never have any.
    ids: Option<Box<Ids>>,
    /// Boxed slice, not `Vec`: entries come and go rarely, and 8 bytes a user count.
    camps: Box<[CampEntry]>,
    /// Day buckets per behaviour rule and devices, packed ([`extra`]); one pointer, no
    /// allocation for the many users with neither.
    extra: Extra,
    /// The device whose app fields are those in `profile` ([`crate::event::device_key`];
    /// 0: records that named none). Most users have one device: it costs no more.
    device: u64,
}

/// A device's app fields (DESIGN.md §3a). [`Extra`] keeps the user's other devices (besides
/// [`UserState::device`], whose app fields are in the profile) with their app fields, and —
/// once there is one — an entry for the profile's device (its key, no fields) with its
/// last-seen time; none for a user with one device.
#[derive(Debug, Clone, PartialEq)]
struct Device {
    /// [`crate::event::device_key`] of its id; 0 = records that named none.
    key: u64,
    /// The latest `ts` of a record that set its app fields.
    seen: EventTime,
    fields: SmallVec<[Prop; 2]>,
}

/// Devices kept per user, the default one included; the least recently seen goes first.
pub const MAX_DEVICES: usize = 8;

/// Inaction events applied at the current event time, so that a trigger at the *same* time
/// that arrives after its inaction event is still closed (`tA <= tB` is inclusive).
#[derive(Debug, Default)]
pub struct InactionNow {
    ts: EventTime,
    /// `(user, match key, campaign)` of the inaction events at `ts`.
    seen: Vec<(UserId, u64, CampaignIdx)>,
}

impl InactionNow {
    fn note(&mut self, ts: EventTime, user: &UserId, key: u64, campaign: CampaignIdx) {
        if ts != self.ts {
            self.ts = ts;
            self.seen.clear();
        }
        self.seen.push((user.clone(), key, campaign));
    }

    fn closed(&self, ts: EventTime, user: &UserId, key: u64, campaign: CampaignIdx) -> bool {
        ts == self.ts
            && self
                .seen
                .iter()
                .any(|(u, k, c)| *c == campaign && *k == key && u == user)
    }
}

/// The `inaction.match` key of an event: a hash of its values of the `match` properties
/// (0 without `match`). JSON-equal values hash alike; a missing property is its own value, so
/// missing on both sides matches and missing on one side does not.
fn match_key(props_to_match: &[PropId], props: &crate::event::Props) -> u64 {
    use std::hash::{Hash, Hasher};
    if props_to_match.is_empty() {
        return 0;
    }
    let mut h = rustc_hash::FxHasher::default();
    for &p in props_to_match {
        match event_prop(props, p) {
            None => 0u8.hash(&mut h),
            Some(ValueRef::Bool(b)) => (1u8, b).hash(&mut h),
            Some(ValueRef::Num(n)) => (2u8, (n + 0.0).to_bits()).hash(&mut h),
            Some(ValueRef::Str(s)) => (3u8, s).hash(&mut h),
            Some(ValueRef::Other) => 4u8.hash(&mut h),
        }
    }
    // 0 stays "no match": a real key that hashes to 0 becomes 1.
    h.finish().max(1)
}

/// An event property (projected), as conditions read it.
fn event_prop(props: &crate::event::Props, p: PropId) -> Option<ValueRef<'_>> {
    props
        .iter()
        .find(|(k, _)| *k == p)
        .and_then(|(_, v)| v.as_ref())
}

/// What a transition may touch besides the user's own state.
pub struct Ctx<'a> {
    pub rules: &'a Rules,
    pub out: &'a mut Output,
    /// New timers: `(campaign, deadline)`.
    pub timers: &'a mut Vec<(CampaignIdx, EventTime)>,
    pub inaction_now: &'a mut InactionNow,
    pub strings: &'a mut Interner,
}

impl UserState {
    pub fn new(id: UserId) -> UserState {
        UserState {
            id,
            profile: Box::default(),
            ids: None,
            camps: Box::default(),
            extra: Extra::default(),
            device: 0,
        }
    }

    /// No profile, no identifiers, no campaign progress: the state can be dropped.
    pub fn is_empty(&self) -> bool {
        self.profile.is_empty()
            && self.ids.is_none()
            && self.camps.is_empty()
            && self.extra.is_empty()
    }

    /// Behaviour rule `r`'s buckets, if the user has any.
    pub fn buckets(&self, r: u16) -> Option<&[u64]> {
        self.extra.past(r)
    }

    /// Whether every behaviour rule of `rule` holds at `at`.
    pub fn past_holds(&self, rules: &Rules, rule: &super::Rule, at: EventTime) -> bool {
        rule.past
            .iter()
            .all(|&r| rules.past[usize::from(r)].holds(self.buckets(r), at))
    }

    /// [`UserState::past_holds`] with each rule's day of the instant given (`days[i]` for
    /// `rule.past[i]`).
    fn past_holds_on(&self, rules: &Rules, rule: &super::Rule, days: &[i32]) -> bool {
        (rule.past.iter().zip(days))
            .all(|(&r, &d)| rules.past[usize::from(r)].holds_on(self.buckets(r), d))
    }

    /// Counts an event into the behaviour rules that look at it (of them only those in
    /// `only`, when given: a backfill). Whether it counted into any.
    pub(crate) fn record_past(
        &mut self,
        rules: &Rules,
        event: crate::event::EventId,
        props: &crate::event::Props,
        ts: EventTime,
        only: Option<&[u16]>,
    ) -> bool {
        let mut counted = false;
        for &r in rules.past_of(event) {
            if only.is_some_and(|o| !o.contains(&r)) {
                continue;
            }
            let rule = &rules.past[usize::from(r)];
            let lookup = |p: PropId| event_prop(props, p);
            if !rule.matches(lookup) {
                continue;
            }
            let value = rule.value(lookup);
            let extra = &mut self.extra;
            let repacked = match extra.past_mut(r) {
                Some(days) => rule.record_cells(days, ts, value),
                None => rule.record_cells(&mut [], ts, value),
            };
            if let Some(days) = repacked {
                extra.set_past(r, &days);
            }
            counted = true;
        }
        counted
    }

    /// The devices records named (see [`Device`]).
    fn devices(&self) -> Vec<Device> {
        self.extra.devices()
    }

    fn push_camp(&mut self, e: CampEntry) {
        let mut v = std::mem::take(&mut self.camps).into_vec();
        v.reserve_exact(1);
        v.push(e);
        self.camps = v.into_boxed_slice();
    }

    fn remove_camp(&mut self, i: usize) {
        let mut v = std::mem::take(&mut self.camps).into_vec();
        v.swap_remove(i);
        self.camps = v.into_boxed_slice();
    }

    fn has_app_fields(&self, rules: &Rules) -> bool {
        self.profile.iter().any(|p| rules.is_app_field(p.id))
    }

    /// Whether campaign `rule`'s Who holds: its profile conditions on the profile, its
    /// app-field conditions all on one device (DESIGN.md §3a). The profile holds one device's
    /// app fields; a user with no other device has that one (an empty one if no app field is
    /// set: `not_exists` holds there, the other operators do not).
    pub fn who_holds(&self, rules: &Rules, strings: &Interner, rule: &super::Rule) -> bool {
        if !all_hold(&rule.who, |p| self.prop(rules, strings, p)) {
            return false;
        }
        if rule.who_app.is_empty() {
            return true;
        }
        let devices = self.devices();
        let mut others = devices.iter().filter(|d| d.key != self.device);
        let profile_device = self.has_app_fields(rules) || others.clone().next().is_none();
        (profile_device && all_hold(&rule.who_app, |p| self.prop(rules, strings, p)))
            || others.any(|d| {
                all_hold(&rule.who_app, |p| {
                    d.fields.iter().find(|f| f.id == p).map(|f| f.get(strings))
                })
            })
    }

    /// Whether a record from device `key` that sets app fields sets the profile's: it is the
    /// profile's device, or the user has no device with app fields yet (the profile's becomes
    /// `key`). Notes the profile device's last-seen time.
    fn on_profile_device(&mut self, key: u64, ts: EventTime, rules: &Rules) -> bool {
        let mut devices = self.devices();
        let others = devices.iter().any(|d| d.key != self.device);
        if key != self.device && (others || self.has_app_fields(rules)) {
            return false;
        }
        self.device = key;
        if let Some(d) = devices.iter_mut().find(|d| d.key == key) {
            if ts > d.seen {
                d.seen = ts;
                self.extra.set_devices(&devices);
            }
        }
        true
    }

    /// Applies a record's app fields to device `key` at `ts`, not the profile's (creating it,
    /// and dropping the least recently seen device beyond [`MAX_DEVICES`]).
    fn merge_device<'v>(
        &mut self,
        key: u64,
        ts: EventTime,
        fields: impl Iterator<Item = (PropId, &'v Value)>,
        rules: &Rules,
        strings: &mut Interner,
    ) {
        let (profile_device, profile_app) = (self.device, self.has_app_fields(rules));
        let mut devices = self.devices();
        if profile_app && !devices.iter().any(|d| d.key == profile_device) {
            // Its last record is older than any seen from now on.
            devices.reserve_exact(1);
            devices.push(Device {
                key: profile_device,
                seen: EventTime::MIN,
                fields: SmallVec::new(),
            });
        }
        let i = match devices.iter().position(|d| d.key == key) {
            Some(i) => i,
            None => {
                devices.reserve_exact(1);
                devices.push(Device {
                    key,
                    seen: ts,
                    fields: SmallVec::new(),
                });
                devices.len() - 1
            }
        };
        let d = &mut devices[i];
        d.seen = d.seen.max(ts);
        for (k, v) in fields {
            let pos = d.fields.iter().position(|f| f.id == k);
            let added;
            let v = match v {
                Value::Add(n) => {
                    let base = match pos.map(|i| d.fields[i].get(strings)) {
                        Some(ValueRef::Num(c)) => c,
                        _ => 0.0,
                    };
                    added = Value::Num(base + n);
                    &added
                }
                v => v,
            };
            match (pos, Prop::new(k, v, strings)) {
                (Some(i), Some(n)) => d.fields[i] = n,
                (Some(i), None) => {
                    d.fields.swap_remove(i);
                }
                (None, Some(n)) => d.fields.push(n),
                (None, None) => {}
            }
        }
        let mut dropped_profile_device = false;
        while devices.len() > MAX_DEVICES {
            let oldest = (0..devices.len())
                .min_by_key(|&i| (devices[i].seen, devices[i].key))
                .expect("not empty");
            dropped_profile_device |= devices.swap_remove(oldest).key == profile_device;
        }
        if dropped_profile_device {
            // The most recently seen other device's app fields move into the profile.
            let newest = (0..devices.len())
                .max_by_key(|&i| (devices[i].seen, devices[i].key))
                .expect("devices beyond the limit remain");
            let d = &mut devices[newest];
            let moved = std::mem::take(&mut d.fields);
            self.device = d.key;
            let kept = (self.profile.iter())
                .filter(|p| !rules.is_app_field(p.id))
                .copied()
                .chain(moved);
            self.profile = kept.collect::<Vec<Prop>>().into_boxed_slice();
        }
        self.extra.set_devices(&devices);
    }

    pub fn ids(&self) -> Ids {
        self.ids.as_deref().copied().unwrap_or_default()
    }

    /// A profile property as of now; `has_email`/`has_phone` are derived from the identifiers.
    pub fn prop<'s>(
        &self,
        rules: &Rules,
        strings: &'s Interner,
        id: PropId,
    ) -> Option<ValueRef<'s>> {
        if Some(id) == rules.has_email {
            return Some(ValueRef::Bool(self.ids().email.is_some()));
        }
        if Some(id) == rules.has_phone {
            return Some(ValueRef::Bool(self.ids().phone.is_some()));
        }
        let value = self
            .profile
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.get(strings));
        if value.is_none() && rules.unsubscribed.contains(&Some(id)) {
            return Some(ValueRef::Bool(false));
        }
        value
    }

    /// The state of a campaign, if the user has any.
    pub fn campaign(&self, c: CampaignIdx) -> Option<&CampState> {
        self.camps
            .iter()
            .find(|e| e.campaign == c)
            .map(|e| &e.state)
    }

    /// Whether the user has an open window and no decision for campaign `c`.
    pub fn is_pending(&self, c: CampaignIdx) -> bool {
        matches!(self.campaign(c), Some(CampState::Open(w)) if !w.is_empty())
    }

    fn entry(&mut self, c: CampaignIdx) -> Option<&mut CampEntry> {
        self.camps.iter_mut().find(|e| e.campaign == c)
    }

    /// Applies one record at its event time `ts`.
    pub fn apply(&mut self, rec: &Record, cx: &mut Ctx) {
        if let Some(p) = &rec.profile {
            cx.out.custom_props_dropped += self.merge_profile(p, rec.ts, cx.rules, cx.strings);
        }
        let Some(ev) = &rec.event else { return };
        let Some(event_id) = ev.id else { return };
        let ts = rec.ts;
        self.record_past(cx.rules, event_id, &ev.props, ts, None);
        for &(c, role) in cx.rules.roles(event_id) {
            let rule = &cx.rules.rules[usize::from(c)];
            match role {
                Role::Inaction => {
                    let props = &ev.props;
                    let lookup = |p: PropId| event_prop(props, p);
                    if !all_hold(&rule.inaction_conditions, lookup) {
                        continue;
                    }
                    cx.inaction_now
                        .note(ts, &self.id, match_key(&rule.inaction_match, props), c);
                    if let Some(e) = self.entry(c) {
                        if let CampState::Open(w) = &mut e.state {
                            if rule.inaction_match.is_empty() {
                                w.clear();
                            } else {
                                let key = match_key(&rule.inaction_match, props);
                                w.retain(|x| x.1 != key);
                            }
                        }
                    }
                    let closed = |e: &CampEntry| e.state == CampState::Open(SmallVec::new());
                    if self.camps.iter().any(closed) {
                        let mut v = std::mem::take(&mut self.camps).into_vec();
                        v.retain(|e| !closed(e));
                        self.camps = v.into_boxed_slice();
                    }
                }
                Role::Trigger => {
                    if ts < rule.start || ts >= rule.end {
                        continue;
                    }
                    let props = &ev.props;
                    let lookup = |p: PropId| event_prop(props, p);
                    if !all_hold(&rule.trigger_conditions, lookup) {
                        continue;
                    }
                    let key = match_key(&rule.inaction_match, props);
                    if rule.within > 0 && cx.inaction_now.closed(ts, &self.id, key, c) {
                        continue;
                    }
                    let entry = match self.camps.iter().position(|e| e.campaign == c) {
                        Some(i) => &mut self.camps[i],
                        None => {
                            self.push_camp(CampEntry {
                                campaign: c,
                                state: CampState::Open(SmallVec::new()),
                            });
                            self.camps.last_mut().expect("just pushed")
                        }
                    };
                    if let CampState::Open(w) = &mut entry.state {
                        if !w.iter().rev().take_while(|x| x.0 == ts).any(|x| x.1 == key) {
                            w.push((ts, key));
                            cx.timers.push((c, ts.saturating_add(rule.within)));
                        }
                    }
                }
                Role::Goal => {
                    let Some(within) = rule.goal_within else {
                        continue;
                    };
                    let props = &ev.props;
                    let lookup = |p: PropId| event_prop(props, p);
                    if !all_hold(&rule.goal_conditions, lookup) {
                        continue;
                    }
                    let Some(e) = self.entry(c) else { continue };
                    if let CampState::Qualified { at } = e.state {
                        if ts > at && ts <= at.saturating_add(within) {
                            e.state = CampState::Done;
                            let revenue = match rule.goal_revenue.and_then(lookup) {
                                Some(ValueRef::Num(n)) if n.is_finite() => n,
                                _ => 0.0,
                            };
                            cx.out.conversions.push(Conversion {
                                campaign: c,
                                user: self.id.clone(),
                                ts,
                                revenue,
                            });
                        } else if ts > at.saturating_add(within) {
                            e.state = CampState::Done;
                        }
                    }
                }
            }
        }
    }

    /// Merges a profile patch; returns the custom properties dropped (over the limit).
    fn merge_profile(
        &mut self,
        p: &ProfilePatch,
        ts: EventTime,
        rules: &Rules,
        strings: &mut Interner,
    ) -> u64 {
        let (base, max) = (rules.custom_base, usize::from(rules.max_custom_props));
        let sets_app = p.props.iter().any(|(k, _)| rules.is_app_field(*k));
        // App fields are the profile's device's, or another device's own.
        let key = p.device.unwrap_or(0);
        let other = sets_app && !self.on_profile_device(key, ts, rules);
        if other {
            let app = p.props.iter().filter(|(k, _)| rules.is_app_field(*k));
            self.merge_device(key, ts, app.map(|(k, v)| (*k, v)), rules, strings);
        }
        let mut dropped = 0u64;
        let mut custom: SmallVec<[(PropId, &Value); 4]> = SmallVec::new();
        for (name, v) in &p.custom {
            match strings.custom_prop(name, base) {
                Some(id) => custom.push((id, v)),
                None => dropped += 1,
            }
        }
        // In place when only values change; rebuilt (exactly sized) when the set of
        // properties changes, which is rare after a user's first profile.
        let mut grown: Option<SmallVec<[Prop; 8]>> = None;
        let patch = (p.props.iter())
            .filter(|(k, _)| !other || !rules.is_app_field(*k))
            .map(|(k, v)| (*k, v))
            .chain(custom);
        for (k, v) in patch {
            let props: &mut [Prop] = match &mut grown {
                Some(g) => g,
                None => &mut self.profile,
            };
            let added;
            let v = match v {
                Value::Add(n) => {
                    let current = props.iter().find(|p| p.id == k).map(|p| p.get(strings));
                    let base = match current {
                        Some(ValueRef::Num(c)) => c,
                        _ => 0.0,
                    };
                    added = Value::Num(base + n);
                    &added
                }
                v => v,
            };
            let new = Prop::new(k, v, strings);
            match (props.iter().position(|p| p.id == k), new) {
                (Some(i), Some(n)) => props[i] = n,
                (None, None) => {}
                (None, Some(_))
                    if k >= base && props.iter().filter(|p| p.id >= base).count() >= max =>
                {
                    dropped += 1;
                }
                (pos, new) => {
                    let g = grown.get_or_insert_with(|| self.profile.iter().copied().collect());
                    if let Some(i) = pos {
                        g.swap_remove(i);
                    }
                    g.extend(new);
                }
            }
        }
        if let Some(g) = grown {
            self.profile = g.into_iter().collect();
        }
        if p.email != IdUpdate::Unchanged || p.phone != IdUpdate::Unchanged {
            let mut ids = self.ids();
            let set = |slot: &mut Option<_>, u: IdUpdate| match u {
                IdUpdate::Unchanged => {}
                IdUpdate::Set(h) => *slot = Some(h),
                IdUpdate::Cleared => *slot = None,
            };
            set(&mut ids.email, p.email);
            set(&mut ids.phone, p.phone);
            self.ids = (!ids.is_empty()).then(|| Box::new(ids));
        }
        dropped
    }

    /// A scheduled run of campaign `c` at `at`: the user qualifies when the Who filter and
    /// every behaviour rule hold (slots of removed users, which are empty, never do), once
    /// (a user qualified at an earlier run is not evaluated again) or, with `once_per_user =
    /// false` or `sync = "mirror"`, at every run; a qualified user waits for the goal as a live
    /// campaign's does. Mirror: a user qualified at the previous run who does not qualify now
    /// is returned with `leaves`.
    pub fn evaluate(
        &mut self,
        rules: &Rules,
        strings: &Interner,
        c: CampaignIdx,
        at: EventTime,
        days: &[i32],
    ) -> Option<Qualification> {
        let rule = &rules.rules[usize::from(c)];
        if self.is_empty() {
            return None;
        }
        // Behaviour rules first: a few cells, where Who reads several properties, and most
        // users a run evaluates fail them; the user's campaign entries (another block) are
        // looked at only then, except by a mirror, which removes those who fail.
        let holds = self.past_holds_on(rules, rule, days) && self.who_holds(rules, strings, rule);
        if !holds && !rule.mirror {
            return None;
        }
        let entry = self.camps.iter().position(|e| e.campaign == c);
        if entry.is_some() && rule.once_per_user && !rule.mirror {
            return None;
        }
        if !holds {
            // Mirror: qualified at the previous run, not at this one.
            let i = entry?;
            self.remove_camp(i);
            return Some(Qualification {
                campaign: c,
                user: self.id.clone(),
                at,
                trigger_ts: at,
                ids: self.ids().chosen(rule.identifiers),
                leaves: true,
            });
        }
        // With `once_per_user = false` each run's decision waits for the goal anew.
        let state = match rule.goal_within {
            Some(_) => CampState::Qualified { at },
            None => CampState::Done,
        };
        match entry {
            Some(i) => self.camps[i].state = state,
            None => {
                self.push_camp(CampEntry { campaign: c, state });
            }
        }
        Some(Qualification {
            campaign: c,
            user: self.id.clone(),
            at,
            trigger_ts: at,
            ids: self.ids().chosen(rule.identifiers),
            leaves: false,
        })
    }

    /// Fires the timer of campaign `c` at `deadline` (the watermark passed it, and every record
    /// with `ts <= deadline` was applied).
    pub fn fire(&mut self, c: CampaignIdx, deadline: EventTime, cx: &mut Ctx) {
        let rule = &cx.rules.rules[usize::from(c)];
        let Some(i) = self.camps.iter().position(|e| e.campaign == c) else {
            return;
        };
        let CampState::Open(w) = &mut self.camps[i].state else {
            return;
        };
        let t_a = deadline.saturating_sub(rule.within);
        // The oldest window opened at `tA` (a matched inaction may have closed others first).
        let Some(at) = w.iter().position(|x| x.0 == t_a) else {
            return; // stale: the window was closed by an inaction event
        };
        w.remove(at);
        let (rules, strings) = (cx.rules, &*cx.strings);
        if !self.who_holds(rules, strings, rule) || !self.past_holds(rules, rule, deadline) {
            if matches!(&self.camps[i].state, CampState::Open(w) if w.is_empty()) {
                self.remove_camp(i);
            }
            return;
        }
        self.camps[i].state = match rule.goal_within {
            Some(_) => CampState::Qualified { at: deadline },
            None => CampState::Done,
        };
        cx.out.qualifications.push(Qualification {
            campaign: c,
            user: self.id.clone(),
            at: deadline,
            trigger_ts: t_a,
            ids: self.ids().chosen(rule.identifiers),
            leaves: false,
        });
    }
}

// === snapshots ===

impl UserState {
    /// The user's state by names (see [`super::snapshot`]).
    pub fn snapshot(&self, rules: &Rules, strings: &Interner) -> UserSnapshot {
        let ids = self.ids();
        UserSnapshot {
            user: self.id.to_string(),
            profile: snap_props(&self.profile, rules, strings),
            devices: self
                .devices()
                .iter()
                .map(|d| (d.key, d.seen, snap_props(&d.fields, rules, strings)))
                .collect(),
            device: self.device,
            email_sha256: ids.email.as_ref().map(crate::identity::to_hex),
            phone_sha256: ids.phone.as_ref().map(crate::identity::to_hex),
            campaigns: self
                .camps
                .iter()
                .map(|e| {
                    let id = rules.campaign_ids[usize::from(e.campaign)].clone();
                    (id, SnapCampaign::from_state(&e.state))
                })
                .collect(),
            past: self
                .extra
                .pasts()
                .map(|(r, b)| {
                    let rule = &rules.past[usize::from(r)];
                    let days = super::past::days(b, rule.layout());
                    let snap = days.map(|d| super::snapshot::bucket_to_snap(&d)).collect();
                    (rule.key.clone(), snap)
                })
                .collect(),
        }
    }

    /// Appends the changelog encoding of [`UserState::snapshot`] to `out` (the bytes
    /// [`UserSnapshot::encode`] writes), without building the snapshot: no copies of names,
    /// no hex round trip of the identifiers.
    pub fn encode_snapshot(&self, rules: &Rules, strings: &Interner, out: &mut Vec<u8>) {
        use super::snapshot::{CampRef, Seq, WireRef};
        let ids = self.ids.as_deref();
        let devices = self.devices();
        let pasts: Vec<(u16, &[u64])> = self.extra.pasts().collect();
        WireRef {
            profile: Seq(self.profile.iter().map(|p| wire_prop(p, rules, strings))),
            devices: Seq(devices.iter().map(|d| {
                let fields = Seq(d.fields.iter().map(|p| wire_prop(p, rules, strings)));
                (d.key, d.seen, fields)
            })),
            device: self.device,
            email: ids.and_then(|i| i.email.as_ref()),
            phone: ids.and_then(|i| i.phone.as_ref()),
            campaigns: Seq(self.camps.iter().map(|e| {
                let c = match &e.state {
                    CampState::Open(w) if w.iter().all(|x| x.1 == 0) => {
                        CampRef::Open(Seq(w.iter().map(|x| x.0)))
                    }
                    CampState::Open(w) => CampRef::OpenKeyed(Seq(w.iter().copied())),
                    CampState::Qualified { at } => CampRef::Qualified(*at),
                    CampState::Done => CampRef::Done,
                };
                (rules.campaign_ids[usize::from(e.campaign)].as_str(), c)
            })),
            past: Seq(pasts.iter().map(|&(r, b)| {
                let rule = &rules.past[usize::from(r)];
                let days = super::past::days(b, rule.layout());
                let buckets = Seq(days.map(|d| super::snapshot::bucket_to_snap(&d)));
                (rule.key.as_str(), buckets)
            })),
        }
        .encode(out);
    }

    /// Rebuilds a user from a snapshot; properties and campaigns unknown to `rules` are
    /// dropped. Returns the timers of its open windows as `(campaign, deadline)`.
    pub fn restore(
        snap: &UserSnapshot,
        rules: &Rules,
        strings: &mut Interner,
    ) -> (UserState, Vec<(CampaignIdx, EventTime)>) {
        let hash = |h: &Option<String>| {
            h.as_deref().and_then(|s| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).ok().map(|()| out)
            })
        };
        let profile = snap.profile.iter().map(|(name, v)| {
            let v = match v {
                SnapValue::Bool(b) => Value::Bool(*b),
                SnapValue::Num(n) => Value::Num(*n),
                SnapValue::Str(s) => Value::Str(s.as_str().into()),
                SnapValue::Other(_) => Value::Other,
            };
            (name.as_str(), v)
        });
        let ids = Ids {
            email: hash(&snap.email_sha256),
            phone: hash(&snap.phone_sha256),
        };
        let campaigns = snap
            .campaigns
            .iter()
            .map(|(id, c)| (id.as_str(), c.to_state()));
        let past = snap.past.iter().map(|(k, b)| (k.as_str(), b.as_slice()));
        let value = |v: &SnapValue| match v {
            SnapValue::Bool(b) => Value::Bool(*b),
            SnapValue::Num(n) => Value::Num(*n),
            SnapValue::Str(s) => Value::Str(s.as_str().into()),
            SnapValue::Other(_) => Value::Other,
        };
        let devices = snap.devices.iter().map(|(key, seen, props)| {
            let props = props.iter().map(|(n, v)| (n.as_str(), value(v))).collect();
            (*key, *seen, props)
        });
        let parts = Parts {
            ids,
            past: past.collect(),
            devices: devices.collect(),
            device: snap.device,
        };
        Self::build(&snap.user, profile, campaigns, parts, rules, strings)
    }

    /// [`UserState::restore`] of [`UserSnapshot::decode`]`(user, value)`, without building the
    /// snapshot first when `value` is binary (names are looked up in place, no hex).
    pub fn restore_encoded(
        user: &str,
        value: &[u8],
        rules: &Rules,
        strings: &mut Interner,
    ) -> Result<(UserState, Vec<(CampaignIdx, EventTime)>), super::snapshot::SnapshotError> {
        use super::snapshot::{decode_wire, WireValue};
        let Some(wire) = decode_wire(value)? else {
            let snap = UserSnapshot::decode(user, value)?;
            return Ok(Self::restore(&snap, rules, strings));
        };
        let profile = wire.profile.iter().map(|(name, v)| {
            let v = match v {
                WireValue::Bool(b) => Value::Bool(*b),
                WireValue::Num(n) => Value::Num(*n),
                WireValue::Str(s) => Value::Str((*s).into()),
                WireValue::Other => Value::Other,
            };
            (*name, v)
        });
        let ids = Ids {
            email: wire.email,
            phone: wire.phone,
        };
        let campaigns = wire.campaigns.iter().map(|(id, c)| (*id, c.to_state()));
        let past = wire.past.iter().map(|(k, b)| (*k, b.as_slice()));
        let value = |v: &WireValue| match v {
            WireValue::Bool(b) => Value::Bool(*b),
            WireValue::Num(n) => Value::Num(*n),
            WireValue::Str(s) => Value::Str((*s).into()),
            WireValue::Other => Value::Other,
        };
        let devices = wire.devices.iter().map(|(key, seen, props)| {
            let props = props.iter().map(|(n, v)| (*n, value(v))).collect();
            (*key, *seen, props)
        });
        let parts = Parts {
            ids,
            past: past.collect(),
            devices: devices.collect(),
            device: wire.device,
        };
        Ok(Self::build(user, profile, campaigns, parts, rules, strings))
    }

    fn build<'a>(
        user: &str,
        profile: impl Iterator<Item = (&'a str, Value)>,
        campaigns: impl Iterator<Item = (&'a str, CampState)>,
        parts: Parts<'a>,
        rules: &Rules,
        strings: &mut Interner,
    ) -> (UserState, Vec<(CampaignIdx, EventTime)>) {
        let Parts {
            ids,
            past,
            devices,
            device,
        } = parts;
        let mut u = UserState::new(UserId::from(user));
        u.device = device;
        let mut props: Vec<Prop> = Vec::new();
        let mut custom = 0u8;
        for (name, v) in profile {
            let id = match rules.prop_names.iter().position(|n| n == name) {
                Some(id) => id as PropId,
                // A property no campaign reads (any more): kept as a custom one.
                None if custom < rules.max_custom_props => {
                    let Some(id) = strings.custom_prop(&name.into(), rules.custom_base) else {
                        continue;
                    };
                    custom += 1;
                    id
                }
                None => continue,
            };
            props.extend(Prop::new(id, &v, strings));
        }
        u.profile = props.into_boxed_slice();
        u.ids = (!ids.is_empty()).then(|| Box::new(ids));
        let mut timers = Vec::new();
        let mut camps = Vec::new();
        for (cid, state) in campaigns {
            let Some(idx) = rules.campaign_ids.iter().position(|x| x == cid) else {
                continue;
            };
            let idx = idx as CampaignIdx;
            if let CampState::Open(w) = &state {
                let within = rules.rules[usize::from(idx)].within;
                timers.extend(w.iter().map(|t| (idx, t.0.saturating_add(within))));
            }
            camps.push(CampEntry {
                campaign: idx,
                state,
            });
        }
        u.camps = camps.into_boxed_slice();
        // Buckets of rules that no longer exist are dropped.
        let buckets: Vec<(u16, Vec<u64>)> = past
            .into_iter()
            .filter_map(|(key, b)| {
                let r = rules.past.iter().position(|p| p.key == key)?;
                let days = b.iter().map(super::snapshot::bucket_from_snap);
                Some((r as u16, super::past::pack(rules.past[r].layout(), days)))
            })
            .collect();
        // App fields by name (those this version does not know are dropped).
        let devices: Vec<Device> = devices
            .into_iter()
            .map(|(key, seen, props)| {
                let fields = props
                    .into_iter()
                    .filter_map(|(name, v)| {
                        let id = rules.prop_names.iter().position(|n| n == name)? as PropId;
                        rules.is_app_field(id).then(|| Prop::new(id, &v, strings))?
                    })
                    .collect();
                Device { key, seen, fields }
            })
            .collect();
        if !buckets.is_empty() || !devices.is_empty() {
            let mut extra = Extra::default();
            for (r, days) in &buckets {
                extra.set_past(*r, days);
            }
            extra.set_devices(&devices);
            u.extra = extra;
        }
        (u, timers)
    }
}

/// What [`UserState::build`] restores besides the profile and the campaigns.
struct Parts<'a> {
    ids: Ids,
    past: Vec<(&'a str, &'a [super::snapshot::SnapBucket])>,
    devices: Vec<NamedDevice<'a>>,
    device: u64,
}

/// A device by its fields' names: `(key, seen, fields)`.
type NamedDevice<'a> = (u64, EventTime, Vec<(&'a str, Value)>);

fn snap_props(props: &[Prop], rules: &Rules, strings: &Interner) -> Vec<(String, SnapValue)> {
    props
        .iter()
        .map(|p| {
            let v = match p.get(strings) {
                ValueRef::Bool(b) => SnapValue::Bool(b),
                ValueRef::Num(n) => SnapValue::Num(n),
                ValueRef::Str(s) => SnapValue::Str(s.to_owned()),
                ValueRef::Other => SnapValue::Other(Vec::new()),
            };
            (strings.prop_name(rules, p.id).to_owned(), v)
        })
        .collect()
}

fn wire_prop<'s>(
    p: &Prop,
    rules: &'s Rules,
    strings: &'s Interner,
) -> (&'s str, super::snapshot::WireValue<'s>) {
    use super::snapshot::WireValue;
    let v = match p.get(strings) {
        ValueRef::Bool(b) => WireValue::Bool(b),
        ValueRef::Num(n) => WireValue::Num(n),
        ValueRef::Str(s) => WireValue::Str(s),
        ValueRef::Other => WireValue::Other,
    };
    (strings.prop_name(rules, p.id), v)
}

#[cfg(test)]
mod tests;

mod extra;
