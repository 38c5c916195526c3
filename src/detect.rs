//! The detect stage: per-user state machines that turn records into qualifications.
//!
//! Records are routed by a stable hash of the user id to shards ([`shard::Shard`]); each shard
//! owns its users' state without locks, buffers records and applies them in event-time order as
//! the watermark ([`watermark`]) passes them, and fires window timers. The transitions themselves
//! are pure and synchronous ([`state`]). [`Rules`] is the campaigns compiled for this stage.
//! A shard's users can be exported and restored ([`snapshot`]), so state can move with its
//! partition.

pub mod past;
pub mod preview;
pub mod router;
pub mod shard;
pub mod snapshot;
pub mod state;
pub mod watermark;

pub use crate::model::{CampaignIdx, Conversion, Erasure, Ids, Output, Qualification};

use smallvec::SmallVec;

use crate::campaign::condition::Condition;
use crate::campaign::{Campaign, Identifiers};
use crate::event::{EventId, EventTime, PropId, Schema, HAS_EMAIL, HAS_PHONE};

/// What an event means to a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Closes open windows (processed before `Trigger` for the same event).
    Inaction,
    Trigger,
    Goal,
}

/// One campaign, compiled for the detect stage.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `max(start, live_from)`: triggers and runs count from here.
    pub start: EventTime,
    pub end: EventTime,
    pub trigger_conditions: Vec<Condition>,
    /// `trigger.inaction.where`: only such an inaction event closes windows.
    pub inaction_conditions: Vec<Condition>,
    /// `trigger.inaction.match`: an inaction event closes only the windows whose trigger had
    /// its values of these properties.
    pub inaction_match: Vec<PropId>,
    /// 0 for a live single-event trigger.
    pub within: i64,
    /// `who.where` (with its segment's) on the user's profile…
    pub who: Vec<Condition>,
    /// … and its conditions on app fields, which hold when one device satisfies them all.
    pub who_app: Vec<Condition>,
    pub goal_within: Option<i64>,
    /// `goal.where`: only a goal event satisfying these converts.
    pub goal_conditions: Vec<Condition>,
    /// `goal.revenue_prop`: the goal event's property whose number is the revenue.
    pub goal_revenue: Option<PropId>,
    pub identifiers: Identifiers,
    /// Behaviour rules (indices into [`Rules::past`]) that must hold at `at`, with `who`.
    pub past: Vec<u16>,
    /// A past-behaviour campaign's runs (it has no trigger then).
    pub schedule: Option<crate::campaign::schedule::Schedule>,
    /// The configured `start`: a schedule's repeats count from it.
    pub anchor: EventTime,
    /// Published at (see [`crate::campaign::Campaign::live_from`]).
    pub live_from: EventTime,
    /// `false`: a scheduled campaign qualifies a user at every run that finds them.
    pub once_per_user: bool,
    /// `sync = "mirror"`: every run also tells which users qualified at the previous one and
    /// do not any more.
    pub mirror: bool,
}

impl Rule {
    /// The first scheduled run after `t`, if the campaign is scheduled and has one.
    pub fn next_run(&self, t: EventTime) -> Option<EventTime> {
        let end = (self.end < EventTime::MAX).then_some(self.end);
        let s = self.schedule.as_ref()?;
        // Runs are anchored at the configured start; those before publishing do not happen.
        s.next_after(t.max(self.live_from.saturating_sub(1)), self.anchor, end)
    }
}

/// The campaigns compiled for the detect stage, with an index from event to campaign roles.
#[derive(Debug, Clone)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// `by_event[event id]` = the campaigns that event matters to, and how.
    pub by_event: Vec<SmallVec<[(CampaignIdx, Role); 2]>>,
    pub has_email: Option<PropId>,
    /// `email_unsubscribed`, `sms_unsubscribed`: `false` for a user who never set them.
    pub unsubscribed: [Option<PropId>; 2],
    pub has_phone: Option<PropId>,
    /// The app fields' ids ([`crate::event::APP_FIELDS`]): kept per device.
    pub app_fields: [Option<PropId>; 5],
    /// Property names by id and campaign ids by index, for state snapshots that survive a
    /// config change.
    pub prop_names: Vec<String>,
    pub campaign_ids: Vec<String>,
    /// Property ids from here on are custom properties, named per shard
    /// ([`state::Interner::custom_prop`]); at most `max_custom_props` a user.
    pub custom_base: PropId,
    pub max_custom_props: u8,
    /// Every behaviour rule of every campaign (and of the segments they use).
    pub past: Vec<past::PastRule>,
    /// `past_by_event[event id]` = the behaviour rules that count that event.
    pub past_by_event: Vec<SmallVec<[u16; 2]>>,
}

impl Rules {
    pub fn compile(campaigns: &[Campaign], schema: &Schema) -> Rules {
        let mut by_event: Vec<SmallVec<[(CampaignIdx, Role); 2]>> = Vec::new();
        let mut add = |event: &str, c: usize, role: Role| {
            let id = usize::from(schema.event(event).expect("interned at validation"));
            if by_event.len() <= id {
                by_event.resize(id + 1, SmallVec::new());
            }
            by_event[id].push((c as CampaignIdx, role));
        };
        let mut rules = Vec::with_capacity(campaigns.len());
        let mut past_specs = Vec::new();
        let app_fields = crate::event::APP_FIELDS.map(|name| schema.prop(name));
        for (i, c) in campaigns.iter().enumerate() {
            if let Some(t) = &c.trigger {
                if let Some(ina) = &t.inaction {
                    add(&ina.event, i, Role::Inaction);
                }
                add(&t.event, i, Role::Trigger);
            }
            if let Some(g) = &c.goal {
                add(&g.event, i, Role::Goal);
            }
            rules.push(Rule {
                start: c.start.max(c.live_from),
                anchor: c.start,
                live_from: c.live_from,
                end: c.end,
                trigger_conditions: c
                    .trigger
                    .as_ref()
                    .map_or_else(Vec::new, |t| t.conditions.clone()),
                inaction_conditions: c
                    .trigger
                    .as_ref()
                    .and_then(|t| t.inaction.as_ref())
                    .map_or_else(Vec::new, |i| i.conditions.clone()),
                inaction_match: c
                    .trigger
                    .as_ref()
                    .and_then(|t| t.inaction.as_ref())
                    .map_or_else(Vec::new, |i| i.match_props.clone()),
                within: c.within_ms(),
                who: (c.who.conditions.iter())
                    .filter(|w| !app_fields.contains(&Some(w.prop)))
                    .cloned()
                    .collect(),
                who_app: (c.who.conditions.iter())
                    .filter(|w| app_fields.contains(&Some(w.prop)))
                    .cloned()
                    .collect(),
                goal_within: c.goal.as_ref().map(|g| g.within.as_millis()),
                goal_conditions: c
                    .goal
                    .as_ref()
                    .map_or_else(Vec::new, |g| g.conditions.clone()),
                goal_revenue: c.goal.as_ref().and_then(|g| g.revenue_prop),
                identifiers: c.what.identifiers,
                past: Vec::new(),
                schedule: c.schedule.clone(),
                once_per_user: c.once_per_user,
                mirror: c.what.mirror,
            });
            let tz = c.zone();
            for (n, spec) in c.who.past.iter().enumerate() {
                past_specs.push((i as CampaignIdx, format!("{}#{n}", c.id), spec, tz.clone()));
            }
        }
        for roles in &mut by_event {
            // Inaction first: an event that both closes and opens keeps its own new window.
            roles.sort_by_key(|&(c, r)| (r != Role::Inaction, c));
        }
        let mut compiled = Rules {
            rules,
            by_event,
            unsubscribed: crate::event::UNSUBSCRIBED.map(|name| schema.prop(name)),
            has_email: schema.prop(HAS_EMAIL),
            has_phone: schema.prop(HAS_PHONE),
            app_fields,
            prop_names: schema.prop_names().to_vec(),
            campaign_ids: campaigns.iter().map(|c| c.id.clone()).collect(),
            custom_base: PropId::try_from(schema.prop_names().len()).expect("fewer than 65536"),
            max_custom_props: schema.max_custom_props,
            past: Vec::new(),
            past_by_event: Vec::new(),
        };
        for (c, key, spec, tz) in past_specs {
            let rule = past::PastRule {
                key,
                negated: spec.negated,
                event: schema.event(&spec.event).expect("interned at validation"),
                conditions: spec.conditions.clone(),
                agg: spec.agg.clone(),
                range: spec.range,
                tz: past::Zone::new(tz),
            };
            compiled.add_past(c, rule);
        }
        compiled
    }

    /// Adds behaviour rule `rule` to campaign `c` (the config compiles them; tests add their
    /// own).
    pub fn add_past(&mut self, c: CampaignIdx, rule: past::PastRule) {
        let idx = u16::try_from(self.past.len()).expect("fewer than 65536 behaviour rules");
        let ev = usize::from(rule.event);
        if self.past_by_event.len() <= ev {
            self.past_by_event.resize(ev + 1, SmallVec::new());
        }
        self.past_by_event[ev].push(idx);
        self.past.push(rule);
        self.rules[usize::from(c)].past.push(idx);
    }

    /// The behaviour rules that count `event`.
    pub fn past_of(&self, event: EventId) -> &[u16] {
        self.past_by_event
            .get(usize::from(event))
            .map_or(&[], |v| v.as_slice())
    }

    /// Whether `p` is an app field (kept per device).
    pub fn is_app_field(&self, p: PropId) -> bool {
        self.app_fields.contains(&Some(p))
    }

    pub fn roles(&self, event: EventId) -> &[(CampaignIdx, Role)] {
        self.by_event
            .get(usize::from(event))
            .map_or(&[], |v| v.as_slice())
    }
}

/// A stable 64-bit hash of a user id (FxHash: fixed, seedless, fast on short ids).
pub fn user_hash(user: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(user)
}

/// The shard of a user among `n`. Uses the hash's high bits, so that the shard's own table
/// (which indexes by the low bits) stays evenly filled.
pub fn shard_for(hash: u64, n: usize) -> usize {
    (((hash >> 32) * n as u64) >> 32) as usize
}

/// A campaign's backfill (over the partitions this replica restored with it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    /// Partitions backfilled.
    pub partitions: u32,
    /// Records read (routed as applied, at or below the checkpoints' watermarks), and of
    /// them those counted into the campaign's rules.
    pub records: u64,
    pub counted: u64,
    /// The oldest event time the rules read.
    pub wanted_from: Option<EventTime>,
    /// Where retention had deleted the oldest records: the youngest first record of the
    /// partitions read.
    pub covered_from: Option<EventTime>,
    /// Retention fell short: some figures start after `wanted_from`.
    pub short: bool,
}
