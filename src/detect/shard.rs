//! One detect shard: the users routed to it, their records buffered until the watermark passes
//! them, and window timers as one FIFO queue per campaign.
//!
//! Order of application (DESIGN §4): records in `(ts, arrival seq)` order; a timer at `T` fires
//! once the watermark is `>= T`, after every record with `ts <= T`. Because records are applied
//! in event-time order and each campaign has one `within`, deadlines of a campaign are created
//! in non-decreasing order — a `VecDeque` per campaign is an exact timer index, with no
//! re-sorting. Stale timers (closed windows) are skipped by [`UserState::fire`].
//!
//! Users live in a slab (`Vec<UserState>`) indexed by a `hashbrown::HashTable<u32>` keyed by
//! the user id stored *inside* the state, so the id is held once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use hashbrown::HashTable;

use super::state::{Ctx, InactionNow, Interner, UserState};
use super::{user_hash, CampaignIdx, Output, Rules};
use crate::event::{EventTime, PropId, Record};

/// A detect shard. Synchronous: a thread (replay) or task (run) drives it.
pub struct Shard {
    rules: std::sync::Arc<Rules>,
    index: HashTable<u32>,
    users: Vec<UserState>,
    /// Records waiting for the watermark: `(ts, seq, slot)` ordered; the records themselves
    /// stay put in `slots` so the heap only moves 24-byte keys.
    buffer: BinaryHeap<Reverse<(EventTime, u64, u32)>>,
    slots: Vec<Option<Record>>,
    free: Vec<u32>,
    timers: Vec<VecDeque<(EventTime, u32)>>,
    /// Per campaign, its next scheduled run (`None`: not scheduled, or no more runs).
    runs: Vec<Option<EventTime>>,
    watermark: EventTime,
    inaction_now: InactionNow,
    strings: Interner,
    new_timers: Vec<(CampaignIdx, EventTime)>,
    out: Output,
    /// Slots changed since the last [`Shard::take_dirty`], for the state changelog (only
    /// when [`Shard::track_changes`] is on: replay has no changelog).
    track: bool,
    dirty: Vec<u32>,
    dirty_bits: Vec<u64>,
}

impl Shard {
    pub fn new(rules: std::sync::Arc<Rules>) -> Shard {
        let n = rules.rules.len();
        let runs = rules
            .rules
            .iter()
            .map(|r| r.next_run(EventTime::MIN))
            .collect();
        Shard {
            rules,
            index: HashTable::new(),
            users: Vec::new(),
            buffer: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            timers: vec![VecDeque::new(); n],
            runs,
            watermark: EventTime::MIN,
            inaction_now: InactionNow::default(),
            strings: Interner::default(),
            new_timers: Vec::new(),
            out: Output::default(),
            track: false,
            dirty: Vec::new(),
            dirty_bits: Vec::new(),
        }
    }

    /// Records which users change, for [`Shard::take_dirty`] (a state changelog).
    pub fn track_changes(&mut self) {
        self.track = true;
    }

    /// Buffers a record. `seq` is its position in the input stream (ties at equal `ts`).
    /// The caller guarantees `rec.ts` is above every watermark passed so far (late records are
    /// rejected before routing).
    pub fn push(&mut self, seq: u64, rec: Record) {
        debug_assert!(rec.ts > self.watermark, "late record reached a shard");
        let ts = rec.ts;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(rec);
                s
            }
            None => {
                self.slots.push(Some(rec));
                u32::try_from(self.slots.len() - 1).expect("fewer than 4G buffered records")
            }
        };
        self.buffer.push(Reverse((ts, seq, slot)));
    }

    /// Moves the watermark to `wm`: applies due records, fires due timers and executes due
    /// scheduled runs in order (at one instant: records, then timers, then runs).
    pub fn advance(&mut self, wm: EventTime) {
        loop {
            let rec_ts = self.buffer.peek().map(|b| b.0 .0).filter(|&t| t <= wm);
            let timer = self.next_timer().filter(|&(d, _)| d <= wm);
            let run = self.next_run().filter(|&(r, _)| r <= wm);
            if let Some((r, c)) = run {
                if rec_ts.is_none_or(|t| r < t) && timer.is_none_or(|(d, _)| r < d) {
                    self.execute_run(c, r);
                    continue;
                }
            }
            match (rec_ts, timer) {
                (Some(t), Some((d, c))) if d < t => self.fire(c),
                (Some(_), _) => {
                    let Reverse((_, _, slot)) = self.buffer.pop().expect("peeked");
                    let rec = self.slots[slot as usize].take().expect("buffered slot");
                    self.free.push(slot);
                    self.apply(rec);
                }
                (None, Some((_, c))) => self.fire(c),
                (None, None) => break,
            }
        }
        self.watermark = self.watermark.max(wm);
    }

    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    fn next_run(&self) -> Option<(EventTime, CampaignIdx)> {
        self.runs
            .iter()
            .enumerate()
            .filter_map(|(c, r)| r.map(|r| (r, c as CampaignIdx)))
            .min()
    }

    /// A scheduled run of campaign `c` at `r`: every user the shard knows is evaluated.
    fn execute_run(&mut self, c: CampaignIdx, r: EventTime) {
        // Each rule's day of the run, once for every user.
        let rule = &self.rules.rules[usize::from(c)];
        let days: Vec<i32> = (rule.past.iter())
            .map(|&p| self.rules.past[usize::from(p)].day(r))
            .collect();
        for slot in 0..self.users.len() {
            let user = &mut self.users[slot];
            if let Some(q) = user.evaluate(&self.rules, &self.strings, c, r, &days) {
                self.out.qualifications.push(q);
                self.mark_dirty(slot as u32);
            }
        }
        self.out.runs.push((c, r));
        self.runs[usize::from(c)] = self.rules.rules[usize::from(c)].next_run(r);
    }

    fn next_timer(&self) -> Option<(EventTime, CampaignIdx)> {
        self.timers
            .iter()
            .enumerate()
            .filter_map(|(c, q)| q.front().map(|&(d, _)| (d, c as CampaignIdx)))
            .min()
    }

    fn fire(&mut self, c: CampaignIdx) {
        let (deadline, slot) = self.timers[usize::from(c)].pop_front().expect("peeked");
        let mut cx = Ctx {
            rules: &self.rules,
            out: &mut self.out,
            timers: &mut self.new_timers,
            inaction_now: &mut self.inaction_now,
            strings: &mut self.strings,
        };
        self.users[slot as usize].fire(c, deadline, &mut cx);
        debug_assert!(self.new_timers.is_empty(), "a timer created a timer");
        self.mark_dirty(slot);
    }

    fn apply(&mut self, rec: Record) {
        if rec.erase {
            return self.erase(rec);
        }
        let slot = match self.find(&rec.user) {
            Some(s) => s,
            None if Self::creates_state(&self.rules, &rec) => self.insert(rec.user.clone()),
            None => {
                // Still note inaction events: a trigger at the same ts may follow.
                let mut probe = UserState::new(rec.user.clone());
                let mut cx = Ctx {
                    rules: &self.rules,
                    out: &mut self.out,
                    timers: &mut self.new_timers,
                    inaction_now: &mut self.inaction_now,
                    strings: &mut self.strings,
                };
                probe.apply(&rec, &mut cx);
                debug_assert!(probe.is_empty() && self.new_timers.is_empty());
                return;
            }
        };
        let mut cx = Ctx {
            rules: &self.rules,
            out: &mut self.out,
            timers: &mut self.new_timers,
            inaction_now: &mut self.inaction_now,
            strings: &mut self.strings,
        };
        self.users[slot as usize].apply(&rec, &mut cx);
        self.mark_dirty(slot);
        for (c, deadline) in self.new_timers.drain(..) {
            let q = &mut self.timers[usize::from(c)];
            // Records come in event-time order, so deadlines (ts + the campaign's window) do
            // too, and this is a push at the back; should one ever come earlier, it still
            // takes its place in order instead of waiting behind a later one.
            if q.back().is_none_or(|&(d, _)| d <= deadline) {
                q.push_back((deadline, slot));
            } else {
                let at = q.partition_point(|&(d, _)| d <= deadline);
                q.insert(at, (deadline, slot));
            }
        }
    }

    /// Counts an event already applied into behaviour rules `only`, which were not loaded
    /// when it was (a backfill, see [`crate::kafka::detect`]): as if they had been, so a user
    /// it alone would have given state gets some. Nothing else changes and nothing is
    /// emitted. Whether it counted.
    pub fn backfill(&mut self, rec: &Record, only: &[u16]) -> bool {
        let Some(ev) = &rec.event else { return false };
        let Some(event_id) = ev.id else { return false };
        if rec.erase
            || !self
                .rules
                .past_of(event_id)
                .iter()
                .any(|r| only.contains(r))
        {
            return false;
        }
        let slot = match self.find(&rec.user) {
            Some(s) => s,
            None => self.insert(rec.user.clone()),
        };
        let user = &mut self.users[slot as usize];
        let counted = user.record_past(&self.rules, event_id, &ev.props, rec.ts, Some(only));
        if counted {
            self.mark_dirty(slot);
        }
        counted
    }

    /// The behaviour rules' keys, by index.
    pub fn past_keys(&self) -> impl Iterator<Item = &str> {
        self.rules.past.iter().map(|r| r.key.as_str())
    }

    /// An erasure request: the user's state (profile, aggregates, open windows) is dropped —
    /// a changelog tombstone — and every campaign's activate stage is told. Timers of the
    /// dropped windows find no window and are skipped.
    fn erase(&mut self, rec: Record) {
        if let Some(slot) = self.find(&rec.user) {
            self.users[slot as usize] = UserState::new(rec.user.clone());
            self.mark_dirty(slot);
        }
        let n = self.rules.rules.len();
        self.out.erasures.extend((0..n).map(|c| super::Erasure {
            campaign: c as CampaignIdx,
            user: rec.user.clone(),
            ts: rec.ts,
        }));
    }

    /// Whether a record for an unknown user needs state: a profile patch, or a trigger event.
    fn creates_state(rules: &Rules, rec: &Record) -> bool {
        rec.profile.as_ref().is_some_and(|p| !p.is_empty())
            || rec
                .event
                .as_ref()
                .and_then(|e| e.id)
                .is_some_and(|id| !rules.past_of(id).is_empty())
            || rec.event.as_ref().and_then(|e| e.id).is_some_and(|id| {
                rules
                    .roles(id)
                    .iter()
                    .any(|&(_, r)| r == super::Role::Trigger)
            })
    }

    fn find(&self, user: &str) -> Option<u32> {
        let users = &self.users;
        self.index
            .find(user_hash(user), |&s| users[s as usize].id == user)
            .copied()
    }

    fn insert(&mut self, user: crate::event::UserId) -> u32 {
        let slot = u32::try_from(self.users.len()).expect("more than 4G users in one shard");
        let users = &self.users;
        self.index.insert_unique(user_hash(&user), slot, |&s| {
            user_hash(&users[s as usize].id)
        });
        self.users.push(UserState::new(user));
        slot
    }

    fn mark_dirty(&mut self, slot: u32) {
        if !self.track {
            return;
        }
        let (word, bit) = ((slot / 64) as usize, slot % 64);
        if self.dirty_bits.len() <= word {
            self.dirty_bits.resize(word + 1, 0);
        }
        if self.dirty_bits[word] & (1 << bit) == 0 {
            self.dirty_bits[word] |= 1 << bit;
            self.dirty.push(slot);
        }
    }

    /// Users changed since the last call: `(user id, snapshot)`, `None` when the state became
    /// empty (a changelog tombstone).
    pub fn take_dirty(
        &mut self,
    ) -> Vec<(crate::event::UserId, Option<super::snapshot::UserSnapshot>)> {
        let slots = std::mem::take(&mut self.dirty);
        self.dirty_bits.iter_mut().for_each(|w| *w = 0);
        slots
            .into_iter()
            .map(|s| {
                let u = &self.users[s as usize];
                let snap = (!u.is_empty()).then(|| u.snapshot(&self.rules, &self.strings));
                (u.id.clone(), snap)
            })
            .collect()
    }

    /// Calls `f` with each user changed since the last call (or [`Shard::take_dirty`]) and
    /// the changelog encoding of its state ([`UserSnapshot::encode`](super::snapshot::UserSnapshot::encode)
    /// of [`Shard::take_dirty`]'s snapshot), or `None` when the user has no state left.
    pub fn drain_dirty_encoded(&mut self, mut f: impl FnMut(&crate::event::UserId, Option<&[u8]>)) {
        let slots = std::mem::take(&mut self.dirty);
        self.dirty_bits.iter_mut().for_each(|w| *w = 0);
        let mut buf = Vec::with_capacity(256);
        for &s in &slots {
            let u = &self.users[s as usize];
            if u.is_empty() {
                f(&u.id, None);
            } else {
                buf.clear();
                u.encode_snapshot(&self.rules, &self.strings, &mut buf);
                f(&u.id, Some(&buf));
            }
        }
        // Keep the allocation for the next round.
        self.dirty = slots;
        self.dirty.clear();
    }

    /// Takes what the shard emitted so far.
    pub fn take_output(&mut self) -> Output {
        std::mem::take(&mut self.out)
    }

    /// Number of users with state.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Number of records waiting for the watermark.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Per campaign, the users with an open window and no decision.
    pub fn pending(&self) -> Vec<u64> {
        let n = self.rules.rules.len();
        (0..n)
            .map(|c| {
                self.users
                    .iter()
                    .filter(|u| u.is_pending(c as CampaignIdx))
                    .count() as u64
            })
            .collect()
    }

    /// Snapshots of every user, sorted by user id. Records still buffered (ahead of the
    /// watermark) are not part of a snapshot: the caller resumes its input from the position
    /// the watermark had reached.
    pub fn snapshot(&self) -> Vec<super::snapshot::UserSnapshot> {
        let mut out: Vec<_> = self
            .users
            .iter()
            .filter(|u| !u.is_empty())
            .map(|u| u.snapshot(&self.rules, &self.strings))
            .collect();
        out.sort_by(|a, b| a.user.cmp(&b.user));
        out
    }

    /// Restores users into an empty shard at `watermark`, rebuilding timers in deadline order.
    pub fn restore<'s>(
        &mut self,
        snapshots: impl IntoIterator<Item = &'s super::snapshot::UserSnapshot>,
        watermark: EventTime,
    ) {
        let users: Vec<_> = snapshots
            .into_iter()
            .map(|snap| UserState::restore(snap, &self.rules, &mut self.strings))
            .collect();
        self.place(users, watermark);
    }

    /// [`Shard::restore`] from changelog values (`(user, value)` as
    /// [`UserSnapshot::encode`](super::snapshot::UserSnapshot::encode) wrote them, or JSON),
    /// decoded straight into live state; returns `(users restored, values undecodable)`.
    pub fn restore_encoded<'v>(
        &mut self,
        values: impl IntoIterator<Item = (&'v str, &'v [u8])>,
        watermark: EventTime,
    ) -> (usize, usize) {
        let mut undecodable = 0;
        let users: Vec<_> = values
            .into_iter()
            .filter_map(|(user, value)| {
                let user = UserState::restore_encoded(user, value, &self.rules, &mut self.strings);
                undecodable += usize::from(user.is_err());
                user.ok()
            })
            .collect();
        (self.place(users, watermark), undecodable)
    }

    /// Puts restored users (and their open windows' timers) into an empty shard at
    /// `watermark`; the first of duplicate ids wins. Returns the number placed.
    fn place(
        &mut self,
        users: Vec<(UserState, Vec<(CampaignIdx, EventTime)>)>,
        watermark: EventTime,
    ) -> usize {
        assert!(self.users.is_empty(), "restore into a fresh shard");
        let mut timers = Vec::new();
        let mut placed = 0;
        for (user, ts) in users {
            if self.find(&user.id).is_some() {
                continue; // a duplicate key: the first one wins
            }
            let slot = self.insert(user.id.clone());
            self.users[slot as usize] = user;
            timers.extend(ts.into_iter().map(|(c, d)| (d, c, slot)));
            placed += 1;
        }
        timers.sort_unstable();
        for (d, c, slot) in timers {
            self.timers[usize::from(c)].push_back((d, slot));
        }
        self.watermark = watermark;
        // Runs at or before the restored watermark were executed before the snapshot.
        self.runs = self
            .rules
            .rules
            .iter()
            .map(|r| r.next_run(watermark))
            .collect();
        placed
    }

    /// Counts [`Preview`](super::preview::Preview) `p` over the shard's users at its
    /// watermark; `control` tells whether a user is in the campaign's control group.
    pub fn preview(
        &self,
        p: &super::preview::Preview,
        control: impl Fn(&str) -> bool,
    ) -> super::preview::PreviewCounts {
        let mut n = super::preview::PreviewCounts::default();
        // Properties the running campaigns do not read are this shard's custom ones: their
        // ids are the shard's (a name no user here has matches nobody).
        let base = self.rules.custom_base;
        let local = |c: &crate::campaign::condition::Condition| {
            let mut c = c.clone();
            // (`has_email`/`has_phone` are derived from the identifiers, not stored.)
            let derived = [p.rules.has_email, p.rules.has_phone].contains(&Some(c.prop));
            if c.prop >= base && !derived {
                let name = &p.rules.prop_names[usize::from(c.prop)];
                c.prop = self.strings.find_custom(name, base).unwrap_or(PropId::MAX);
            }
            c
        };
        let mut rule = p.rules.rules[usize::from(p.campaign)].clone();
        rule.who = rule.who.iter().map(local).collect();
        rule.who_app = rule.who_app.iter().map(local).collect();
        let rule = &rule;
        for u in self.users.iter().filter(|u| !u.is_empty()) {
            n.users += 1;
            if !u.who_holds(&p.rules, &self.strings, rule) {
                continue;
            }
            let past = (rule.past.iter().zip(&p.sources)).all(|(&r, &source)| {
                let buckets = source.and_then(|s| u.buckets(s));
                p.rules.past[usize::from(r)].holds(buckets, self.watermark)
            });
            if !past {
                continue;
            }
            n.qualified += 1;
            if u.ids().chosen(p.identifiers).is_empty() {
                continue;
            }
            n.reachable += 1;
            n.control += u64::from(control(&u.id));
        }
        n
    }

    /// A user's state, for tests and inspection.
    pub fn user(&self, id: &str) -> Option<&UserState> {
        self.find(id).map(|s| &self.users[s as usize])
    }
}
