//! The activate stage: qualified users → decisions (DESIGN §4 "Order of gates").
//!
//! For each qualification, in `(at, user_id)` order: once per user per campaign →
//! reachability (at least one chosen identifier, else `unreachable`) → control group (the
//! SHA-256 rule) → target cap (`capped` once `target_cap` users were exported) → `exported`.
//! Conversions of exported and control users are counted; with `remove_on_goal` an exported
//! converter gets a `removed` decision. The stage is a plain state machine fed one item at a
//! time, so replay (which sorts first, for an exact cap) and `run` share it.

use rustc_hash::FxHashMap as HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::campaign::Campaign;
use crate::event::{EventTime, UserId};
use crate::model::{Action, AudienceOp, CampaignIdx, Conversion, Erasure, Ids, Qualification};
pub use crate::model::{Decision, Outcome};
use crate::report::Tally;

/// Per-campaign counters of the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignCounts {
    pub qualified: u64,
    pub exported: u64,
    pub control: u64,
    pub capped: u64,
    pub unreachable: u64,
    pub removed: u64,
    pub pending: u64,
    pub conversions: Conversions,
    /// Scheduled runs executed (past-behaviour campaigns only; an extension of the summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Conversions {
    pub exported: u64,
    pub control: u64,
}

/// Whether `user_id` is in the control group of `campaign_id` at `percent`:
/// `u64_be(sha256("{campaign_id}:{user_id}")[0..8]) % 10000 < percent * 100`.
pub fn in_control_group(campaign_id: &str, user_id: &str, percent: u8) -> bool {
    if percent == 0 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(campaign_id.as_bytes());
    h.update(b":");
    h.update(user_id.as_bytes());
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    n % 10_000 < u64::from(percent) * 100
}

/// What activate remembers of a decided user: the decision, with the time of the
/// qualification it answered (kept through a conversion) and of the conversion, and what the
/// report counts of the user over every decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decided {
    /// `removed` once removed.
    pub outcome: Outcome,
    pub ids: Ids,
    /// The qualification's `at`.
    pub at: EventTime,
    /// The conversion's `ts`, once converted.
    pub converted_at: Option<EventTime>,
    /// Exported at some decision (`removed` since, or decided again, included).
    pub ever_exported: bool,
    /// Converted after some exported or control decision.
    pub ever_converted: bool,
    /// Revenue of the user's counted conversions (`goal.revenue_prop`).
    pub revenue: f64,
}

impl Decided {
    pub fn converted(&self) -> bool {
        self.converted_at.is_some()
    }
}

/// A [`Decided`] as the stage keeps it, one per decided (campaign, user): 32 bytes instead of
/// 104. Only members and removed members keep their ids (a removal deletes them), only
/// converted users a conversion, and most decided users of a campaign with a cap are capped
/// or control. Replay's memory grows with these maps as a recording qualifies more of its
/// users.
#[derive(Debug, Clone)]
struct Kept {
    at: EventTime,
    /// For `exported` and `removed` only.
    ids: Option<Box<Ids>>,
    conversion: Option<Box<Converted>>,
    outcome: Outcome,
    ever_exported: bool,
    ever_converted: bool,
}

/// A [`Kept`] user's conversion and revenue (revenue outlives the conversion when the user
/// is decided again).
#[derive(Debug, Clone, Copy)]
struct Converted {
    at: Option<EventTime>,
    revenue: f64,
}

impl Kept {
    fn new(d: &Decided) -> Kept {
        Kept {
            at: d.at,
            ids: matches!(d.outcome, Outcome::Exported | Outcome::Removed).then(|| Box::new(d.ids)),
            conversion: (d.converted_at.is_some() || d.revenue != 0.0).then(|| {
                Box::new(Converted {
                    at: d.converted_at,
                    revenue: d.revenue,
                })
            }),
            outcome: d.outcome,
            ever_exported: d.ever_exported,
            ever_converted: d.ever_converted,
        }
    }

    fn decided(&self) -> Decided {
        Decided {
            outcome: self.outcome,
            ids: self.ids(),
            at: self.at,
            converted_at: self.converted_at(),
            ever_exported: self.ever_exported,
            ever_converted: self.ever_converted,
            revenue: self.revenue(),
        }
    }

    fn ids(&self) -> Ids {
        self.ids.as_deref().copied().unwrap_or_default()
    }

    fn converted_at(&self) -> Option<EventTime> {
        self.conversion.as_ref().and_then(|c| c.at)
    }

    fn revenue(&self) -> f64 {
        self.conversion.as_ref().map_or(0.0, |c| c.revenue)
    }

    /// Converted at `ts`, adding `revenue` when the conversion counts.
    fn convert(&mut self, ts: EventTime, revenue: Option<f64>) {
        let c = self.conversion.get_or_insert_with(|| {
            Box::new(Converted {
                at: None,
                revenue: 0.0,
            })
        });
        c.at = Some(ts);
        if let Some(r) = revenue {
            c.revenue += r;
        }
    }
}

/// Tables per campaign in a [`Decisions`].
const PARTS: usize = 16;

/// One campaign's decided users, split by their id's hash over [`PARTS`] tables. A table
/// grows by allocating one twice its size beside it; sixteen tables growing one at a time
/// hold a sixteenth of that extra at once (replay reaches its peak memory as these maps grow
/// at the end of the input).
#[derive(Debug, Clone, Default)]
struct Decisions([HashMap<UserId, Kept>; PARTS]);

impl Decisions {
    fn part(user: &str) -> usize {
        use std::hash::BuildHasher;
        // Bits below the 7 hashbrown compares and above those that place an entry in its
        // table: both stay spread within a part.
        (rustc_hash::FxBuildHasher.hash_one(user) >> 52) as usize % PARTS
    }

    fn get(&self, user: &str) -> Option<&Kept> {
        self.0[Self::part(user)].get(user)
    }

    fn get_mut(&mut self, user: &str) -> Option<&mut Kept> {
        self.0[Self::part(user)].get_mut(user)
    }

    fn insert(&mut self, user: UserId, kept: Kept) -> Option<Kept> {
        self.0[Self::part(&user)].insert(user, kept)
    }

    fn remove(&mut self, user: &str) -> Option<Kept> {
        self.0[Self::part(user)].remove(user)
    }

    fn values(&self) -> impl Iterator<Item = &Kept> {
        self.0.iter().flat_map(|m| m.values())
    }
}

/// What activate needs of a campaign.
#[derive(Debug, Clone)]
struct Gates {
    id: String,
    control_group: u8,
    target_cap: Option<u64>,
    /// Raises of the cap in event time (see [`Campaign::cap_at`]).
    cap_changes: Vec<(EventTime, Option<u64>)>,
    identifiers: crate::campaign::Identifiers,
    remove_on_goal: bool,
    /// `false`: a scheduled campaign decides at every run that qualifies a user.
    once_per_user: bool,
    /// `sync = "mirror"`: members who no longer qualify are removed; non-members go through
    /// the gates at every run.
    mirror: bool,
}

/// The activate stage's state.
pub struct Activator {
    campaigns: Vec<Gates>,
    decided: Vec<Decisions>,
    counts: Vec<CampaignCounts>,
    /// Per campaign, how many current members (`exported`, not removed) hold each hashed id.
    /// An audience is a set of ids: two users may share one (households, test accounts), and
    /// an id is deleted only when its last holder leaves.
    holders: Vec<Holders>,
    /// Per campaign, the users ever exported: what `target_cap` counts (with a decision per
    /// run, `counts.exported` counts decisions).
    exported_users: Vec<u64>,
}

/// Current members per hashed id of one audience (`true` = email, `false` = phone).
#[derive(Debug, Default, Clone)]
struct Holders(HashMap<(bool, crate::identity::IdHash), u32>);

impl Holders {
    fn keys(ids: Ids) -> impl Iterator<Item = (bool, crate::identity::IdHash)> {
        ids.email
            .map(|h| (true, h))
            .into_iter()
            .chain(ids.phone.map(|h| (false, h)))
    }

    /// A member holding `ids` joined.
    fn join(&mut self, ids: Ids) {
        for k in Self::keys(ids) {
            *self.0.entry(k).or_default() += 1;
        }
    }

    /// A member holding `ids` left: the ids nobody holds any more.
    fn leave(&mut self, ids: Ids) -> Ids {
        let mut gone = Ids::default();
        for k in Self::keys(ids) {
            let last = match self.0.get_mut(&k) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    self.0.remove(&k);
                    true
                }
                None => true,
            };
            if last {
                match k.0 {
                    true => gone.email = Some(k.1),
                    false => gone.phone = Some(k.1),
                }
            }
        }
        gone
    }

    /// Of `ids`, those no member holds.
    fn unheld(&self, ids: Ids) -> Ids {
        Ids {
            email: ids.email.filter(|h| !self.0.contains_key(&(true, *h))),
            phone: ids.phone.filter(|h| !self.0.contains_key(&(false, *h))),
        }
    }
}

impl Gates {
    fn cap_at(&self, at: EventTime) -> Option<u64> {
        (self.cap_changes.iter().rev())
            .find(|(t, _)| *t <= at)
            .map_or(self.target_cap, |(_, c)| *c)
    }
}

impl Activator {
    pub fn new(campaigns: &[Campaign]) -> Self {
        Activator {
            campaigns: campaigns
                .iter()
                .map(|c| Gates {
                    id: c.id.clone(),
                    control_group: c.who.control_group,
                    target_cap: c.who.target_cap,
                    cap_changes: c.cap_changes.clone(),
                    identifiers: c.what.identifiers,
                    remove_on_goal: c.what.remove_on_goal,
                    once_per_user: c.once_per_user,
                    mirror: c.what.mirror,
                })
                .collect(),
            decided: vec![Decisions::default(); campaigns.len()],
            counts: vec![CampaignCounts::default(); campaigns.len()],
            holders: vec![Holders::default(); campaigns.len()],
            exported_users: vec![0; campaigns.len()],
        }
    }

    /// Restores one persisted decision (the decisions changelog), counts included.
    pub fn restore(&mut self, campaign: CampaignIdx, user: UserId, decided: Decided) {
        let c = usize::from(campaign);
        let counts = &mut self.counts[c];
        let Decided { outcome, .. } = decided;
        let converted = decided.converted();
        if outcome == Outcome::Exported {
            self.holders[c].join(decided.ids);
        }
        let prev = self.decided[c].insert(user, Kept::new(&decided));
        debug_assert!(prev.is_none(), "one record per user");
        if matches!(outcome, Outcome::Exported | Outcome::Removed) {
            self.exported_users[c] += 1;
        }
        match outcome {
            Outcome::Exported | Outcome::Removed => counts.exported += 1,
            Outcome::Control => counts.control += 1,
            Outcome::Capped => counts.capped += 1,
            Outcome::Unreachable => counts.unreachable += 1,
        }
        counts.qualified += 1;
        if outcome == Outcome::Removed {
            counts.removed += 1;
        }
        if converted {
            match outcome {
                Outcome::Exported | Outcome::Removed => counts.conversions.exported += 1,
                Outcome::Control => counts.conversions.control += 1,
                _ => {}
            }
        }
    }

    /// What campaign `campaign`'s report counts (see [`crate::report`]): a user is in the
    /// exported group once exported, in the control group when the latest decision is.
    pub fn tally(&self, campaign: CampaignIdx) -> Tally {
        self.summary(campaign).0
    }

    /// In one pass over campaign `campaign`'s decided users: its [`Activator::tally`], its
    /// users per UTC day of their latest qualification with the conversions per day, and
    /// the latest qualification's `at`.
    pub fn summary(
        &self,
        campaign: CampaignIdx,
    ) -> (Tally, crate::report::Daily, Option<EventTime>) {
        let mut t = Tally::default();
        let mut days = crate::report::Daily::new();
        let mut last = None;
        for d in self.decided[usize::from(campaign)].values() {
            let (users, converted, revenue) = if d.ever_exported {
                (
                    &mut t.users.exported,
                    &mut t.converted.exported,
                    &mut t.revenue.exported,
                )
            } else if d.outcome == Outcome::Control {
                (
                    &mut t.users.control,
                    &mut t.converted.control,
                    &mut t.revenue.control,
                )
            } else {
                continue;
            };
            *users += 1;
            *converted += u64::from(d.ever_converted);
            *revenue += d.revenue();
            last = last.max(Some(d.at));
            days.entry(crate::report::day_of(d.at))
                .or_default()
                .qualified += 1;
            if let (true, Some(c)) = (d.ever_converted, d.converted_at()) {
                days.entry(crate::report::day_of(c)).or_default().converted += 1;
            }
        }
        (t, days, last)
    }

    /// A user's decision, if there is one.
    pub fn decided(&self, campaign: CampaignIdx, user: &str) -> Option<Decided> {
        self.decided[usize::from(campaign)]
            .get(user)
            .map(Kept::decided)
    }

    /// Decides one qualification; `None` if the user already had a decision — with
    /// `once_per_user = false`, a decision at this `at` or later (a qualification re-read);
    /// with `sync = "mirror"`, also for a member (still one). A qualification that `leaves`
    /// is [`Activator::leave`]'s.
    pub fn qualify(&mut self, q: &Qualification) -> Option<Decision> {
        let c = usize::from(q.campaign);
        let campaign = &self.campaigns[c];
        if q.leaves {
            return None;
        }
        let prev = self.decided[c].get(&q.user).map(Kept::decided);
        let per_run = !campaign.once_per_user || campaign.mirror;
        if prev.is_some_and(|p| {
            !per_run || q.at <= p.at || (campaign.mirror && p.outcome == Outcome::Exported)
        }) {
            return None;
        }
        // Exported before (and not unreachable since): `target_cap` counted them already.
        let member = prev.is_some_and(|p| p.outcome == Outcome::Exported);
        let exported_before =
            prev.is_some_and(|p| matches!(p.outcome, Outcome::Exported | Outcome::Removed));
        let counts = &mut self.counts[c];
        let ids = q.ids.chosen(campaign.identifiers);
        let outcome = if ids.is_empty() {
            counts.unreachable += 1;
            Outcome::Unreachable
        } else if in_control_group(&campaign.id, &q.user, campaign.control_group) {
            counts.control += 1;
            Outcome::Control
        } else if !exported_before
            && campaign
                .cap_at(q.at)
                .is_some_and(|cap| self.exported_users[c] >= cap)
        {
            counts.capped += 1;
            Outcome::Capped
        } else {
            counts.exported += 1;
            Outcome::Exported
        };
        counts.qualified += 1;
        // A member decided again holds its new ids (sync = "add": the old ones stay at
        // TikTok, but no longer keep an id another member's removal would delete).
        if member {
            self.holders[c].leave(prev.map(|p| p.ids).unwrap_or_default());
        }
        if outcome == Outcome::Exported {
            self.holders[c].join(ids);
            if !exported_before {
                self.exported_users[c] += 1;
            }
        }
        self.decided[c].insert(
            q.user.clone(),
            Kept::new(&Decided {
                outcome,
                ids,
                at: q.at,
                converted_at: None,
                ever_exported: exported_before || outcome == Outcome::Exported,
                ever_converted: prev.is_some_and(|p| p.ever_converted),
                revenue: prev.map_or(0.0, |p| p.revenue),
            }),
        );
        Some(Decision {
            campaign: q.campaign,
            user: q.user.clone(),
            at: q.at,
            outcome,
            ids: if outcome == Outcome::Exported {
                ids
            } else {
                Ids::default()
            },
        })
    }

    /// Mirror: a member who no longer qualifies at run `q.at` is removed (a `removed`
    /// decision at `q.at`); `None` for anyone else, and for a removal seen again.
    pub fn leave(&mut self, q: &Qualification) -> Option<Decision> {
        let c = usize::from(q.campaign);
        let d = self.decided[c].get_mut(&q.user)?;
        if !q.leaves || d.outcome != Outcome::Exported || q.at <= d.at {
            return None;
        }
        d.outcome = Outcome::Removed;
        d.at = q.at;
        self.counts[c].removed += 1;
        Some(Decision {
            campaign: q.campaign,
            user: q.user.clone(),
            at: q.at,
            outcome: Outcome::Removed,
            ids: d.ids(),
        })
    }

    /// Counts a conversion; returns a `removed` decision when the campaign removes converters.
    pub fn convert(&mut self, conv: &Conversion) -> Option<Decision> {
        let c = usize::from(conv.campaign);
        let d = self.decided[c].get_mut(&conv.user)?;
        if d.converted_at().is_some() {
            return None;
        }
        let counted = matches!(d.outcome, Outcome::Exported | Outcome::Control);
        d.convert(conv.ts, counted.then_some(conv.revenue));
        d.ever_converted |= counted;
        let counts = &mut self.counts[c];
        match d.outcome {
            Outcome::Exported => {
                counts.conversions.exported += 1;
                if self.campaigns[c].remove_on_goal {
                    counts.removed += 1;
                    d.outcome = Outcome::Removed;
                    return Some(Decision {
                        campaign: conv.campaign,
                        user: conv.user.clone(),
                        at: conv.ts,
                        outcome: Outcome::Removed,
                        ids: d.ids(),
                    });
                }
            }
            Outcome::Control => counts.conversions.control += 1,
            _ => {}
        }
        None
    }

    /// One qualification as a runtime applies it: the decision it made, or — for a user
    /// already `exported` — the add sent again. A qualification is seen twice only when it was
    /// re-read after a restart, when the add decided before may never have been acknowledged;
    /// TikTok adds are idempotent, so sending it again loses nothing and duplicates nothing.
    pub fn step_qualification(&mut self, q: &Qualification) -> Step {
        if q.leaves {
            return self.step_leave(q);
        }
        if let Some(d) = self.qualify(q) {
            let op = AudienceOp::from_decision(&d);
            return Step {
                decision: Some(d),
                op,
            };
        }
        let op = self
            .decided(q.campaign, &q.user)
            .filter(|d| d.outcome == Outcome::Exported && q.at <= d.at)
            .map(|d| resend(q.campaign, &q.user, Action::Add, d.ids));
        Step { decision: None, op }
    }

    /// A mirror run's `leaves` as a runtime applies it: the `removed` decision and the delete
    /// of the ids no other member holds, or — for a removal seen again — that delete again.
    fn step_leave(&mut self, q: &Qualification) -> Step {
        let idx = usize::from(q.campaign);
        if let Some(d) = self.leave(q) {
            return self.removal(d);
        }
        let op = self
            .decided(q.campaign, &q.user)
            .filter(|d| d.outcome == Outcome::Removed && d.at == q.at)
            .map(|d| self.holders[idx].unheld(d.ids))
            .filter(|gone| !gone.is_empty())
            .map(|gone| resend(q.campaign, &q.user, Action::Delete, gone));
        Step { decision: None, op }
    }

    /// A `removed` decision as a runtime applies it: the member's ids leave, and those no
    /// other member holds are deleted (none: no op).
    fn removal(&mut self, d: Decision) -> Step {
        let gone = self.holders[usize::from(d.campaign)].leave(d.ids);
        let op = (!gone.is_empty()).then(|| resend(d.campaign, &d.user, Action::Delete, gone));
        Step {
            decision: Some(d),
            op,
        }
    }

    /// One conversion as a runtime applies it: the `removed` decision it made, or — for a
    /// user already removed on this goal — the delete sent again (as for adds, above). A
    /// delete carries only the ids no other member holds (none: no op).
    pub fn step_conversion(&mut self, c: &Conversion) -> Step {
        let idx = usize::from(c.campaign);
        let before = self.decided(c.campaign, &c.user);
        if let Some(d) = self.convert(c) {
            return self.removal(d);
        }
        let op = before
            .filter(|d| d.outcome == Outcome::Removed && d.converted())
            .map(|d| self.holders[idx].unheld(d.ids))
            .filter(|gone| !gone.is_empty())
            .map(|gone| resend(c.campaign, &c.user, Action::Delete, gone));
        Step { decision: None, op }
    }

    /// An erasure as a runtime applies it: the user's decision is forgotten (counts stay: they
    /// hold no identity; the report no longer counts the user) and, for a member, the ids no
    /// other member holds are deleted. A user with no decision: nothing. The target cap still
    /// counts an erased member, so erasing never makes room for others.
    pub fn step_erasure(&mut self, e: &Erasure) -> Step {
        let c = usize::from(e.campaign);
        let op = match self.decided[c].remove(&e.user) {
            Some(d) if d.outcome == Outcome::Exported => {
                let gone = self.holders[c].leave(d.ids());
                (!gone.is_empty()).then(|| resend(e.campaign, &e.user, Action::Delete, gone))
            }
            _ => None,
        };
        Step { decision: None, op }
    }

    pub fn counts(&self) -> &[CampaignCounts] {
        &self.counts
    }

    pub fn into_counts(self) -> Vec<CampaignCounts> {
        self.counts
    }
}

/// What one qualification or conversion did: a new decision, and the audience op to send
/// (the decision's, or one sent again).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub decision: Option<Decision>,
    pub op: Option<AudienceOp>,
}

fn resend(campaign: CampaignIdx, user: &str, action: Action, ids: Ids) -> AudienceOp {
    AudienceOp {
        campaign,
        action,
        user: user.into(),
        ids,
    }
}

// === impl Holdback ===

/// Where one upstream (detect) partition's event time stands, as it last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Upstream {
    watermark: EventTime,
    idle: bool,
}

/// Items in the order activate applies them: qualifications by `(at, user_id, campaign)`,
/// then conversions by `(ts, user_id, campaign)`.
type OrderKey = (EventTime, UserId, CampaignIdx);

/// Holds qualifications and conversions back until every upstream partition's watermark has
/// passed them, then releases them in `(at, user_id)` order: what makes the target cap exact
/// in `run`, where qualifications of one campaign arrive from every detect partition in
/// arrival order (DESIGN §4 "Target cap").
///
/// Each detect partition reports its watermark `W` after every output with `at ≤ W` is
/// written (so, on one activate partition, after those outputs); once every partition reported
/// (see [`Holdback::watermark`] for idle ones), everything at
/// or below the least `W` is complete and is released. An item at or below what was already
/// released (a detect restart re-emitting outputs) is applied at once. Replay releases the
/// whole input with one [`Holdback::release_all`]. `T` is whatever the runtime tracks per item
/// (an offset in `run`).
#[derive(Debug)]
pub struct Holdback<T> {
    upstream: Vec<Option<Upstream>>,
    qualifications: std::collections::BTreeMap<OrderKey, (Qualification, T)>,
    conversions: std::collections::BTreeMap<OrderKey, (Conversion, T)>,
    erasures: std::collections::BTreeMap<OrderKey, (Erasure, T)>,
    released: EventTime,
}

/// Holds `item` under `key` (its time first) in `held`, unless that time is at or below
/// `released` (apply it now) or the key is held already (a re-emitted duplicate).
fn hold<V, T>(
    released: EventTime,
    held: &mut std::collections::BTreeMap<OrderKey, (V, T)>,
    key: OrderKey,
    item: V,
    tag: T,
) -> Held<V, T> {
    if key.0 <= released {
        return Held::Now(item, tag);
    }
    match held.entry(key) {
        std::collections::btree_map::Entry::Occupied(_) => Held::Duplicate,
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert((item, tag));
            Held::Held
        }
    }
}

/// What [`Holdback`] lets through, in application order.
#[derive(Debug)]
pub struct Released<T> {
    pub qualifications: Vec<(Qualification, T)>,
    pub conversions: Vec<(Conversion, T)>,
    pub erasures: Vec<(Erasure, T)>,
}

impl<T> Default for Released<T> {
    fn default() -> Self {
        Released {
            qualifications: Vec::new(),
            conversions: Vec::new(),
            erasures: Vec::new(),
        }
    }
}

impl<T> Released<T> {
    pub fn is_empty(&self) -> bool {
        self.qualifications.is_empty() && self.conversions.is_empty() && self.erasures.is_empty()
    }

    /// The tags of every item.
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        let q = self.qualifications.iter().map(|(_, t)| t);
        let c = self.conversions.iter().map(|(_, t)| t);
        q.chain(c).chain(self.erasures.iter().map(|(_, t)| t))
    }

    /// Qualifications, conversions and erasures merged in time order, as the detect stage
    /// made them: at one instant conversions (records), then erasures (records after the
    /// goal events of their instant), then qualifications (timers and runs come after the
    /// records of their instant); qualifications in their `(at, user_id)` order. A user's
    /// earlier decision converts before a later run decides them again, or removes them
    /// (`once_per_user = false`, mirror).
    pub fn into_time_order(self) -> impl Iterator<Item = Item<T>> {
        let mut qs = self.qualifications.into_iter().peekable();
        let mut cs = self.conversions.into_iter().peekable();
        let mut es = self.erasures.into_iter().peekable();
        std::iter::from_fn(move || {
            let c = cs.peek().map(|(c, _)| (c.ts, 0));
            let e = es.peek().map(|(e, _)| (e.ts, 1));
            let q = qs.peek().map(|(q, _)| (q.at, 2));
            match [c, e, q].into_iter().flatten().min()?.1 {
                0 => cs.next().map(Item::Conversion),
                1 => es.next().map(Item::Erasure),
                _ => qs.next().map(Item::Qualification),
            }
        })
    }
}

/// One released item (see [`Released::into_time_order`]).
#[derive(Debug)]
pub enum Item<T> {
    Qualification((Qualification, T)),
    Conversion((Conversion, T)),
    Erasure((Erasure, T)),
}

impl<T> Default for Holdback<T> {
    fn default() -> Self {
        Holdback {
            upstream: Vec::new(),
            qualifications: Default::default(),
            conversions: Default::default(),
            erasures: Default::default(),
            released: EventTime::MIN,
        }
    }
}

impl<T> Holdback<T> {
    /// Upstream partition `partition` of `of` reports watermark `watermark` (`idle`: it has
    /// had no input for a while and does not hold the others back). Watermarks never go back.
    pub fn report(&mut self, partition: u32, of: u32, watermark: EventTime, idle: bool) {
        let of = (of as usize).max(partition as usize + 1);
        if self.upstream.len() < of {
            self.upstream.resize(of, None);
        }
        let slot = &mut self.upstream[partition as usize];
        let watermark = slot.map_or(watermark, |u| u.watermark.max(watermark));
        *slot = Some(Upstream { watermark, idle });
    }

    /// Everything at or below this is complete: the least watermark over every upstream
    /// partition; `MIN` until every partition reported.
    ///
    /// Idle partitions hold the others back too: "idle" is only "no record for
    /// `engine.idle_timeout`", which a broker outage, a consumer still restoring or one not yet
    /// fetching look like as well, and records such a partition produces later would come
    /// behind what was released (both seen as a cap picking other users, in
    /// `broker_faults_on_the_mock_cluster` and the crash test). So a partition that never gets
    /// input holds its campaigns back until it does; the wall-clock watermark of idle inputs
    /// (DESIGN §4, `run`) is what will move it.
    pub fn watermark(&self) -> EventTime {
        if self.upstream.is_empty() || self.upstream.iter().any(Option::is_none) {
            return EventTime::MIN;
        }
        self.upstream
            .iter()
            .flatten()
            .map(|u| u.watermark)
            .min()
            .unwrap_or(EventTime::MIN)
    }

    /// Holds `q`, or hands it back when it is at or below what was released already (apply
    /// it now). A qualification already held (same `at`, user, campaign) is dropped: it is a
    /// re-emitted duplicate; `false` says so.
    pub fn hold_qualification(&mut self, q: Qualification, tag: T) -> Held<Qualification, T> {
        let key = (q.at, q.user.clone(), q.campaign);
        hold(self.released, &mut self.qualifications, key, q, tag)
    }

    /// As [`Holdback::hold_qualification`], for a conversion.
    pub fn hold_conversion(&mut self, c: Conversion, tag: T) -> Held<Conversion, T> {
        let key = (c.ts, c.user.clone(), c.campaign);
        hold(self.released, &mut self.conversions, key, c, tag)
    }

    /// As [`Holdback::hold_qualification`], for an erasure.
    pub fn hold_erasure(&mut self, e: Erasure, tag: T) -> Held<Erasure, T> {
        let key = (e.ts, e.user.clone(), e.campaign);
        hold(self.released, &mut self.erasures, key, e, tag)
    }

    /// Releases everything at or below [`Holdback::watermark`].
    pub fn release(&mut self) -> Released<T> {
        let w = self.watermark();
        self.release_through(w)
    }

    /// Releases everything held (the end of a replay).
    pub fn release_all(&mut self) -> Released<T> {
        self.release_through(EventTime::MAX)
    }

    fn release_through(&mut self, w: EventTime) -> Released<T> {
        if w <= self.released {
            return Released::default();
        }
        self.released = w;
        Released {
            qualifications: take_through(&mut self.qualifications, w),
            conversions: take_through(&mut self.conversions, w),
            erasures: take_through(&mut self.erasures, w),
        }
    }

    /// What each upstream partition last reported, `(watermark, idle)` (`None`: nothing yet),
    /// for logs.
    pub fn upstream(&self) -> Vec<Option<(EventTime, bool)>> {
        self.upstream
            .iter()
            .map(|u| u.map(|u| (u.watermark, u.idle)))
            .collect()
    }

    /// Items held.
    pub fn len(&self) -> usize {
        self.qualifications.len() + self.conversions.len() + self.erasures.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tags of every held item.
    pub fn tags(&self) -> impl Iterator<Item = &T> {
        let q = self.qualifications.values().map(|(_, t)| t);
        let c = self.conversions.values().map(|(_, t)| t);
        q.chain(c).chain(self.erasures.values().map(|(_, t)| t))
    }
}

/// Removes and returns, in key order, the entries of `map` at or below time `w`.
fn take_through<V>(map: &mut std::collections::BTreeMap<OrderKey, V>, w: EventTime) -> Vec<V> {
    let later = match w.checked_add(1) {
        Some(next) => map.split_off(&(next, UserId::default(), 0)),
        None => Default::default(),
    };
    std::mem::replace(map, later).into_values().collect()
}

/// What [`Holdback`] did with an item.
#[derive(Debug, PartialEq, Eq)]
pub enum Held<I, T> {
    /// Held until the upstream watermarks pass it.
    Held,
    /// Already held: a duplicate, dropped.
    Duplicate,
    /// At or below what was released: apply it now.
    Now(I, T),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_decision_is_the_decision_in_32_bytes() {
        assert!(
            std::mem::size_of::<Kept>() <= 32,
            "{}",
            std::mem::size_of::<Kept>()
        );
        let ids = Ids {
            email: Some([1; 32]),
            phone: Some([2; 32]),
        };
        for outcome in [
            Outcome::Exported,
            Outcome::Removed,
            Outcome::Control,
            Outcome::Capped,
            Outcome::Unreachable,
        ] {
            for (converted_at, revenue) in
                [(None, 0.0), (Some(7), 0.0), (None, 2.5), (Some(9), 1.5)]
            {
                let d = Decided {
                    outcome,
                    ids,
                    at: 5,
                    converted_at,
                    ever_exported: outcome == Outcome::Removed,
                    ever_converted: converted_at.is_some(),
                    revenue,
                };
                let kept = Kept::new(&d).decided();
                // Only members and removed members need their ids again (a removal deletes them).
                let with_ids = matches!(outcome, Outcome::Exported | Outcome::Removed);
                let expected = Decided {
                    ids: if with_ids { ids } else { Ids::default() },
                    ..d
                };
                assert_eq!(kept, expected, "{outcome:?}");
            }
        }
    }

    #[test]
    fn decided_users_are_found_in_their_part() {
        let mut m = Decisions::default();
        let d = Kept::new(&Decided {
            outcome: Outcome::Capped,
            ids: Ids::default(),
            at: 1,
            converted_at: None,
            ever_exported: false,
            ever_converted: false,
            revenue: 0.0,
        });
        for i in 0..1000 {
            assert!(m.insert(format!("u{i}").into(), d.clone()).is_none());
        }
        assert!(
            m.0.iter().all(|p| p.len() > 20),
            "users spread over the parts"
        );
        assert_eq!(m.values().count(), 1000);
        assert!(m.get("u7").is_some() && m.get("u1000").is_none());
        m.get_mut("u7").unwrap().at = 3;
        assert_eq!(m.remove("u7").map(|k| k.at), Some(3));
        assert!(m.get("u7").is_none());
    }

    #[test]
    fn control_group_rule_is_the_documented_hash() {
        // Recompute the rule independently for a few users.
        for user in ["u1", "u2", "alice", "bob"] {
            let d = Sha256::digest(format!("cart:{user}").as_bytes());
            let n = u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000;
            for pct in [0u8, 1, 10, 50, 99] {
                assert_eq!(
                    in_control_group("cart", user, pct),
                    n < u64::from(pct) * 100
                );
            }
        }
    }

    #[test]
    fn control_share_is_close_to_the_percent() {
        let n = (0..20_000)
            .filter(|i| in_control_group("c", &format!("u{i}"), 10))
            .count();
        assert!((1_700..2_300).contains(&n), "{n}");
    }

    fn q(user: &str, at: EventTime) -> Qualification {
        Qualification {
            campaign: 0,
            user: user.into(),
            at,
            trigger_ts: at,
            ids: Ids::default(),
            leaves: false,
        }
    }

    fn users<T>(r: &Released<T>) -> Vec<(EventTime, String)> {
        r.qualifications
            .iter()
            .map(|(q, _)| (q.at, q.user.to_string()))
            .collect()
    }

    /// `once_per_user = false`: a decision at every run that qualifies the user (a re-read
    /// one decides nothing), `target_cap` counting distinct exported users, each decision
    /// converting once.
    #[test]
    fn a_decision_per_run_with_once_per_user_false() {
        let text = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "1970-01-01T00:00:00Z"
once_per_user = false
[campaign.schedule]
at = ["1970-01-02T00:00:00Z"]
[campaign.who]
target_cap = 1
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
[campaign.goal]
event = "Charged"
within = "1d"
"#;
        let config = crate::config::Config::parse(text, Vec::new()).unwrap();
        let mut act = Activator::new(&config.campaigns);
        let with_email = |user: &str, at: EventTime, e: u8| {
            let mut q = q(user, at);
            q.ids.email = Some([e; 32]);
            q
        };
        let outcome = |d: Option<Decision>| d.map(|d| d.outcome);
        assert_eq!(
            outcome(act.qualify(&with_email("a", 10, 1))),
            Some(Outcome::Exported)
        );
        assert_eq!(
            outcome(act.qualify(&with_email("b", 10, 2))),
            Some(Outcome::Capped)
        );
        assert_eq!(act.qualify(&with_email("a", 10, 1)), None, "run 1 re-read");
        // Run 2: `a` again (not capped: counted once), `b` still capped.
        let again = act
            .qualify(&with_email("a", 20, 3))
            .expect("a decision per run");
        assert_eq!(
            (again.outcome, again.ids.email),
            (Outcome::Exported, Some([3; 32]))
        );
        assert_eq!(
            outcome(act.qualify(&with_email("b", 20, 2))),
            Some(Outcome::Capped)
        );
        let conv = |ts| Conversion {
            campaign: 0,
            user: "a".into(),
            ts,
            revenue: 0.0,
        };
        act.convert(&conv(25));
        act.convert(&conv(26));
        let c = &act.counts()[0];
        assert_eq!(
            (c.qualified, c.exported, c.capped, c.conversions.exported),
            (4, 2, 2, 1),
            "counts of decision lines; one conversion of run 2's decision"
        );
        assert_eq!(act.decided(0, "a").map(|d| d.at), Some(20));
    }

    /// Released items are applied in time order: a conversion before a later run's
    /// qualification of the same user (else a run that removes or decides the user again
    /// would lose the earlier decision's conversion), one at a run's instant before the run.
    #[test]
    fn released_items_come_in_time_order() {
        let mut hold: Holdback<()> = Holdback::default();
        for (user, at) in [("a", 10), ("b", 10), ("a", 20), ("b", 30)] {
            hold.hold_qualification(q(user, at), ());
        }
        for (user, ts) in [("a", 15), ("b", 20), ("b", 31)] {
            let c = Conversion {
                campaign: 0,
                user: user.into(),
                ts,
                revenue: 0.0,
            };
            hold.hold_conversion(c, ());
        }
        for (user, ts) in [("a", 20), ("b", 5)] {
            let e = Erasure {
                campaign: 0,
                user: user.into(),
                ts,
            };
            assert_eq!(hold.hold_erasure(e.clone(), ()), Held::Held);
            assert_eq!(hold.hold_erasure(e, ()), Held::Duplicate);
        }
        let order: Vec<String> = hold
            .release_all()
            .into_time_order()
            .map(|i| match i {
                Item::Qualification((q, ())) => format!("q {} {}", q.user, q.at),
                Item::Conversion((c, ())) => format!("c {} {}", c.user, c.ts),
                Item::Erasure((e, ())) => format!("e {} {}", e.user, e.ts),
            })
            .collect();
        // At one instant: conversions, erasures, then qualifications (timers and runs).
        assert_eq!(
            order,
            [
                "e b 5", "q a 10", "q b 10", "c a 15", "c b 20", "e a 20", "q a 20", "q b 30",
                "c b 31"
            ]
        );
    }

    /// `sync = "mirror"`: a member still qualifying at a later run is left alone (no decision,
    /// no op); one who no longer qualifies is `removed` with a delete of the ids no other
    /// member holds (a removal seen again sends that delete again); a removed user who
    /// qualifies again is exported again; a non-member goes through the gates at every run.
    #[test]
    fn mirror_runs_remove_who_no_longer_qualifies() {
        let text = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "1970-01-01T00:00:00Z"
[campaign.schedule]
at = ["1970-01-02T00:00:00Z"]
[campaign.who]
target_cap = 2
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
sync = "mirror"
"#;
        let config = crate::config::Config::parse(text, Vec::new()).unwrap();
        let mut act = Activator::new(&config.campaigns);
        let qual = |user: &str, at: EventTime, e: u8, leaves: bool| {
            let mut q = q(user, at);
            q.ids.email = Some([e; 32]);
            q.leaves = leaves;
            q
        };
        let outcome = |s: &Step| s.decision.as_ref().map(|d| d.outcome);
        // Run 1: a and b (sharing an email) exported, c capped.
        for (u, e) in [("a", 1), ("b", 1)] {
            let s = act.step_qualification(&qual(u, 10, e, false));
            assert_eq!(outcome(&s), Some(Outcome::Exported));
        }
        assert_eq!(
            outcome(&act.step_qualification(&qual("c", 10, 3, false))),
            Some(Outcome::Capped)
        );
        // Run 2: a still qualifies (nothing), b leaves (removed; a still holds the email:
        // no delete), c goes through the gates again (capped again).
        let s = act.step_qualification(&qual("a", 20, 1, false));
        assert!(s.decision.is_none() && s.op.is_none(), "{s:?}");
        let s = act.step_qualification(&qual("b", 20, 1, true));
        assert_eq!(outcome(&s), Some(Outcome::Removed));
        assert!(s.op.is_none(), "a holds the shared email: {s:?}");
        assert_eq!(
            outcome(&act.step_qualification(&qual("c", 20, 3, false))),
            Some(Outcome::Capped)
        );
        // Run 3: a leaves: its email goes; seen again, the delete again.
        let s = act.step_qualification(&qual("a", 30, 1, true));
        assert_eq!(outcome(&s), Some(Outcome::Removed));
        let delete = s.op.expect("the last holder left: a delete");
        assert_eq!(delete.action, Action::Delete);
        let again = act.step_qualification(&qual("a", 30, 1, true));
        assert!(again.decision.is_none());
        assert_eq!(again.op.map(|o| o.action), Some(Action::Delete));
        // Run 4: b qualifies again: exported again (counted once by the cap).
        let s = act.step_qualification(&qual("b", 40, 1, false));
        assert_eq!(outcome(&s), Some(Outcome::Exported));
        assert_eq!(s.op.map(|o| o.action), Some(Action::Add));
        let c = &act.counts()[0];
        assert_eq!((c.exported, c.capped, c.removed), (3, 2, 2));
    }

    #[test]
    fn an_erasure_forgets_the_user_and_deletes_only_ids_nobody_else_holds() {
        let text = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "1970-01-01T00:00:00Z"
[campaign.trigger]
event = "E"
[campaign.who]
target_cap = 3
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
"#;
        let config = crate::config::Config::parse(text, Vec::new()).unwrap();
        let mut act = Activator::new(&config.campaigns);
        let qual = |user: &str, at: EventTime, e: u8| {
            let mut q = q(user, at);
            q.ids.email = Some([e; 32]);
            q
        };
        let erase = |user: &str, ts: EventTime| Erasure {
            campaign: 0,
            user: user.into(),
            ts,
        };
        // a and b share an email, c has its own.
        for (u, e) in [("a", 1), ("b", 1), ("c", 2)] {
            act.step_qualification(&qual(u, 10, e));
        }
        let s = act.step_erasure(&erase("a", 20));
        assert!(
            s.decision.is_none() && s.op.is_none(),
            "b holds the email: {s:?}"
        );
        assert_eq!(act.decided(0, "a"), None, "a's decision is forgotten");
        let s = act.step_erasure(&erase("c", 20));
        let op = s.op.expect("c's email goes");
        assert_eq!((op.action, op.ids.email), (Action::Delete, Some([2; 32])));
        let s = act.step_erasure(&erase("b", 21));
        assert_eq!(
            s.op.map(|o| o.ids.email),
            Some(Some([1; 32])),
            "the last holder"
        );
        assert!(
            act.step_erasure(&erase("b", 22)).op.is_none(),
            "nothing left"
        );
        // The report forgets them; the cap still counts them.
        assert_eq!(act.tally(0).users.exported, 0);
        let s = act.step_qualification(&qual("d", 30, 4));
        assert_eq!(s.decision.map(|d| d.outcome), Some(Outcome::Capped));
    }

    #[test]
    fn a_qualification_or_conversion_seen_again_sends_its_op_again_and_decides_nothing() {
        let text = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "1970-01-01T00:00:00Z"
end = "1970-01-02T00:00:00Z"
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
remove_on_goal = true
[campaign.trigger]
event = "Added To Cart"
[campaign.goal]
event = "Charged"
within = "1d"
"#;
        let config = crate::config::Config::parse(text, Vec::new()).unwrap();
        let mut act = Activator::new(&config.campaigns);
        let mut qual = q("a", 5);
        qual.ids.email = Some([7; 32]);
        let first = act.step_qualification(&qual);
        let add = first.op.clone().expect("exported: an add");
        assert_eq!(add.action, Action::Add);
        assert_eq!(first.decision.map(|d| d.outcome), Some(Outcome::Exported));
        let again = act.step_qualification(&qual);
        assert_eq!(
            again,
            Step {
                decision: None,
                op: Some(add.clone())
            }
        );
        let conv = Conversion {
            campaign: 0,
            user: "a".into(),
            ts: 9,
            revenue: 0.0,
        };
        let removed = act.step_conversion(&conv);
        assert_eq!(removed.decision.map(|d| d.outcome), Some(Outcome::Removed));
        let delete = removed.op.expect("removed: a delete");
        assert_eq!((delete.action, delete.ids), (Action::Delete, add.ids));
        assert_eq!(
            act.step_conversion(&conv),
            Step {
                decision: None,
                op: Some(delete)
            }
        );
        // Counted once each.
        assert_eq!(act.counts()[0].qualified, 1);
        assert_eq!(act.counts()[0].removed, 1);
        // A user never exported is not sent anything again.
        let unreachable = q("b", 6);
        assert_eq!(act.step_qualification(&unreachable).op, None);
        assert_eq!(
            act.step_qualification(&unreachable),
            Step {
                decision: None,
                op: None
            }
        );
    }

    #[test]
    fn holdback_waits_for_every_upstream_partition_then_releases_in_order() {
        let mut h = Holdback::default();
        for (u, at, tag) in [("b", 20, 1), ("a", 20, 2), ("c", 10, 3), ("d", 40, 4)] {
            assert_eq!(h.hold_qualification(q(u, at), tag), Held::Held);
        }
        h.report(0, 2, 30, false);
        assert!(h.release().is_empty(), "partition 1 has not reported");
        h.report(1, 2, 25, false);
        let r = h.release();
        assert_eq!(
            users(&r),
            [(10, "c".into()), (20, "a".into()), (20, "b".into())]
        );
        assert_eq!(
            r.qualifications.iter().map(|(_, t)| *t).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        assert_eq!(h.tags().copied().collect::<Vec<_>>(), [4]);
        // A watermark never goes back; an idle partition with input still holds the others.
        h.report(1, 2, 5, true);
        assert_eq!(h.watermark(), 25);
        h.report(0, 2, 50, false);
        assert_eq!(users(&h.release()), []);
        h.report(1, 2, 45, true);
        assert_eq!(users(&h.release()), [(40, "d".into())]);
        assert!(h.is_empty());
        // Nor does an idle partition without input let anything through.
        let mut h = Holdback::default();
        h.hold_qualification(q("e", 7), 5);
        h.report(0, 2, 10, false);
        h.report(1, 2, EventTime::MIN, true);
        assert_eq!(users(&h.release()), []);
        h.report(1, 2, 8, true);
        assert_eq!(users(&h.release()), [(7, "e".into())]);
    }

    #[test]
    fn holdback_applies_what_is_behind_the_release_at_once_and_drops_duplicates() {
        let mut h = Holdback::default();
        assert_eq!(h.hold_qualification(q("a", 5), 1), Held::Held);
        assert_eq!(h.hold_qualification(q("a", 5), 2), Held::Duplicate);
        h.report(0, 1, 10, false);
        assert_eq!(users(&h.release()), [(5, "a".into())]);
        assert!(matches!(
            h.hold_qualification(q("a", 5), 3),
            Held::Now(_, 3)
        ));
        let c = Conversion {
            campaign: 0,
            user: "a".into(),
            ts: 11,
            revenue: 0.0,
        };
        assert_eq!(h.hold_conversion(c, 4), Held::Held);
        h.report(0, 1, 11, true);
        let r = h.release();
        assert_eq!(
            r.conversions.len(),
            1,
            "every partition idle: the largest watermark"
        );
    }

    #[test]
    fn holdback_release_all_takes_everything() {
        let mut h = Holdback::default();
        h.hold_qualification(q("z", EventTime::MAX), ());
        h.hold_qualification(q("y", 1), ());
        assert_eq!(
            users(&h.release_all()),
            [(1, "y".into()), (EventTime::MAX, "z".into())]
        );
    }
}

#[cfg(test)]
mod shared_ids {
    use super::*;
    use crate::config::Config;

    fn activator() -> Activator {
        let text = r#"
[[campaign]]
id = "c"
name = "C"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
[campaign.goal]
event = "Charged"
within = "1d"
[campaign.what]
audience = { existing = "9" }
identifiers = ["email", "phone"]
remove_on_goal = true
"#;
        Activator::new(&Config::parse(text, Vec::new()).unwrap().campaigns)
    }

    fn ids(email: u8, phone: u8) -> Ids {
        Ids {
            email: Some([email; 32]),
            phone: Some([phone; 32]),
        }
    }

    fn qualify(a: &mut Activator, user: &str, ids: Ids) -> Step {
        a.step_qualification(&Qualification {
            campaign: 0,
            user: user.into(),
            at: 1,
            trigger_ts: 1,
            ids,
            leaves: false,
        })
    }

    fn convert(a: &mut Activator, user: &str) -> Step {
        a.step_conversion(&Conversion {
            campaign: 0,
            user: user.into(),
            ts: 2,
            revenue: 0.0,
        })
    }

    #[test]
    fn a_removal_deletes_only_the_ids_no_member_still_holds() {
        let mut a = activator();
        // a and b share the email; each has their own phone.
        assert_eq!(qualify(&mut a, "a", ids(1, 2)).op.unwrap().ids, ids(1, 2));
        assert_eq!(qualify(&mut a, "b", ids(1, 3)).op.unwrap().ids, ids(1, 3));
        let gone = convert(&mut a, "a");
        assert_eq!(
            gone.decision.unwrap().ids,
            ids(1, 2),
            "the decision names the user's ids"
        );
        let op = gone.op.unwrap();
        assert_eq!(
            (op.action, op.ids),
            (
                Action::Delete,
                Ids {
                    email: None,
                    phone: Some([2; 32])
                }
            )
        );
        // Sent again after a restart: still only what nobody holds.
        assert_eq!(convert(&mut a, "a").op.unwrap().ids.email, None);
        // The last holder leaves: the email goes too.
        assert_eq!(convert(&mut a, "b").op.unwrap().ids, ids(1, 3));
    }

    #[test]
    fn restored_members_hold_their_ids() {
        let mut a = activator();
        let member = |outcome| Decided {
            outcome,
            ids: ids(1, 2),
            at: 1,
            converted_at: None,
            ever_exported: true,
            ever_converted: false,
            revenue: 0.0,
        };
        a.restore(0, "a".into(), member(Outcome::Exported));
        a.restore(0, "r".into(), member(Outcome::Removed));
        qualify(&mut a, "b", ids(1, 2));
        assert_eq!(convert(&mut a, "b").op, None, "a still holds both ids");
    }
}
