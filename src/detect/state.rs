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

use smallvec::SmallVec;

use super::{CampaignIdx, Conversion, Ids, Output, Qualification, Role, Rules};
use crate::campaign::condition::all_hold;
use crate::event::{EventTime, IdUpdate, ProfilePatch, PropId, Record, UserId, Value};

/// A campaign's progress for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CampState {
    /// Trigger times of windows still open (for a live trigger, until they fire at `tA`).
    Open(SmallVec<[EventTime; 2]>),
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
    profile: Vec<(PropId, Value)>,
    /// Hashed identifiers; boxed because many users never have any.
    ids: Option<Box<Ids>>,
    camps: Vec<CampEntry>,
}

/// Inaction events applied at the current event time, so that a trigger at the *same* time
/// that arrives after its inaction event is still closed (`tA <= tB` is inclusive).
#[derive(Debug, Default)]
pub struct InactionNow {
    ts: EventTime,
    seen: Vec<(UserId, CampaignIdx)>,
}

impl InactionNow {
    fn note(&mut self, ts: EventTime, user: &UserId, campaign: CampaignIdx) {
        if ts != self.ts {
            self.ts = ts;
            self.seen.clear();
        }
        self.seen.push((user.clone(), campaign));
    }

    fn closed(&self, ts: EventTime, user: &UserId, campaign: CampaignIdx) -> bool {
        ts == self.ts && self.seen.iter().any(|(u, c)| *c == campaign && u == user)
    }
}

/// What a transition may touch besides the user's own state.
pub struct Ctx<'a> {
    pub rules: &'a Rules,
    pub out: &'a mut Output,
    /// New timers: `(campaign, deadline)`.
    pub timers: &'a mut Vec<(CampaignIdx, EventTime)>,
    pub inaction_now: &'a mut InactionNow,
}

static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

impl UserState {
    pub fn new(id: UserId) -> UserState {
        UserState {
            id,
            profile: Vec::new(),
            ids: None,
            camps: Vec::new(),
        }
    }

    /// No profile, no identifiers, no campaign progress: the state can be dropped.
    pub fn is_empty(&self) -> bool {
        self.profile.is_empty() && self.ids.is_none() && self.camps.is_empty()
    }

    pub fn ids(&self) -> Ids {
        self.ids.as_deref().copied().unwrap_or_default()
    }

    /// A profile property as of now; `has_email`/`has_phone` are derived from the identifiers.
    pub fn prop(&self, rules: &Rules, id: PropId) -> Option<&Value> {
        let flag = |b: bool| Some(if b { &TRUE } else { &FALSE });
        if Some(id) == rules.has_email {
            return flag(self.ids().email.is_some());
        }
        if Some(id) == rules.has_phone {
            return flag(self.ids().phone.is_some());
        }
        self.profile.iter().find(|(p, _)| *p == id).map(|(_, v)| v)
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
            self.merge_profile(p);
        }
        let Some(ev) = &rec.event else { return };
        let Some(event_id) = ev.id else { return };
        let ts = rec.ts;
        for &(c, role) in cx.rules.roles(event_id) {
            let rule = &cx.rules.rules[usize::from(c)];
            match role {
                Role::Inaction => {
                    cx.inaction_now.note(ts, &self.id, c);
                    if let Some(e) = self.entry(c) {
                        if let CampState::Open(w) = &mut e.state {
                            w.clear();
                        }
                    }
                    self.camps
                        .retain(|e| e.state != CampState::Open(SmallVec::new()));
                }
                Role::Trigger => {
                    if ts < rule.start || ts >= rule.end {
                        continue;
                    }
                    let props = &ev.props;
                    let lookup = |p: PropId| props.iter().find(|(k, _)| *k == p).map(|(_, v)| v);
                    if !all_hold(&rule.trigger_conditions, lookup) {
                        continue;
                    }
                    if rule.within > 0 && cx.inaction_now.closed(ts, &self.id, c) {
                        continue;
                    }
                    let entry = match self.camps.iter().position(|e| e.campaign == c) {
                        Some(i) => &mut self.camps[i],
                        None => {
                            self.camps.push(CampEntry {
                                campaign: c,
                                state: CampState::Open(SmallVec::new()),
                            });
                            self.camps.last_mut().expect("just pushed")
                        }
                    };
                    if let CampState::Open(w) = &mut entry.state {
                        if w.last() != Some(&ts) {
                            w.push(ts);
                            cx.timers.push((c, ts.saturating_add(rule.within)));
                        }
                    }
                }
                Role::Goal => {
                    let Some(within) = rule.goal_within else {
                        continue;
                    };
                    let Some(e) = self.entry(c) else { continue };
                    if let CampState::Qualified { at } = e.state {
                        if ts > at && ts <= at.saturating_add(within) {
                            e.state = CampState::Done;
                            cx.out.conversions.push(Conversion {
                                campaign: c,
                                user: self.id.clone(),
                                ts,
                            });
                        } else if ts > at.saturating_add(within) {
                            e.state = CampState::Done;
                        }
                    }
                }
            }
        }
    }

    fn merge_profile(&mut self, p: &ProfilePatch) {
        for (k, v) in &p.props {
            let pos = self.profile.iter().position(|(p, _)| p == k);
            match (pos, v) {
                (Some(i), Value::Null) => {
                    self.profile.swap_remove(i);
                }
                (Some(i), v) => self.profile[i].1 = v.clone(),
                (None, Value::Null) => {}
                (None, v) => self.profile.push((*k, v.clone())),
            }
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
        if w.first() != Some(&t_a) {
            return; // stale: the window was closed by an inaction event
        }
        w.remove(0);
        let rules = cx.rules;
        if !all_hold(&rule.who, |p| self.prop(rules, p)) {
            if matches!(&self.camps[i].state, CampState::Open(w) if w.is_empty()) {
                self.camps.swap_remove(i);
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
        });
    }
}

#[cfg(test)]
mod tests;
