//! When things happen: the product catalog and the sessions of many users running at once
//! along the shopping funnel, yielded as events in non-decreasing event time.
//!
//! Draws from its own RNG stream, so profiles, formats and malformed lines never shift it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use fastrand::Rng;

use super::{splitmix64, Rec, What, DAY, HOUR, MINUTE};

const MAX_ACTIVE_SESSIONS: u64 = 5_000;
/// Mean events per session: 1 + 3 views + 0.4 × (1 + 0.6 × (1 + 0.6)).
const EVENTS_PER_SESSION: f64 = 4.784;
const CATALOG_SIZE: u32 = 5_000;
#[rustfmt::skip]
static CATEGORIES: [&str; 8] =
    ["electronics", "fashion", "home", "beauty", "sports", "toys", "grocery", "books"];

// === impl Catalog ===

/// Products `p0`..`p4999`; category and price follow from the id, so they never disagree.
#[derive(Clone, Copy)]
pub(super) struct Catalog {
    pub(super) seed: u64,
}

impl Catalog {
    /// Half the views go to the 200 most popular products.
    fn pick(self, r: &mut Rng) -> u32 {
        if r.bool() {
            r.u32(..200)
        } else {
            r.u32(..CATALOG_SIZE)
        }
    }

    /// (category, price in cents within 1.00..=500.00)
    pub(super) fn item(self, product: u32) -> (&'static str, u32) {
        let h = splitmix64(self.seed ^ u64::from(product));
        let category = CATEGORIES[(h >> 32) as usize % CATEGORIES.len()];
        (category, 100 + (h % 49_901) as u32)
    }
}

// === impl Timeline ===

#[derive(Clone, Copy)]
enum Stage {
    Launch,
    View { left: u8 },
    Cart,
    Checkout,
    Charge,
}

#[derive(Clone, Copy)]
struct Session {
    user: u32,
    stage: Stage,
    product: u32,
    qty: u8,
    cents: u32,
    cart_ts: u64,
}

/// Sessions of many users running concurrently; yields events in non-decreasing event time.
pub(super) struct Timeline {
    rng: Rng,
    catalog: Catalog,
    /// (next event ts, tie-break sequence, slot) of every active session
    due: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<Session>,
    free: Vec<u32>,
    /// (ready to start a new session at, user) for users who had a session
    returning: BinaryHeap<Reverse<(u64, u32)>>,
    fresh: FreshUsers,
    max_active: usize,
    next_start: u64,
    now: u64,
    start_gap_mean: f64,
    idle_mean: f64,
    seq: u64,
}

impl Timeline {
    pub(super) fn new(
        mut rng: Rng,
        catalog: Catalog,
        users: u32,
        events: u64,
        first: u64,
        days: u32,
    ) -> Self {
        let span = match days {
            0 => 3.0 * DAY as f64 * (events as f64 / 1e6).sqrt(),
            d => f64::from(d) * DAY as f64,
        };
        let sessions = (events as f64 / EVENTS_PER_SESSION).max(1.0);
        let start_gap_mean = span / sessions;
        // A user comes back after about the time it takes to cycle through all users, kept
        // within 5 minutes (few users, many events) and 12 hours.
        let cycle = 0.8 * f64::from(users) * start_gap_mean;
        let idle_mean = cycle.clamp(5.0 * MINUTE as f64, 12.0 * HOUR as f64);
        let fresh = FreshUsers::new(&mut rng, u64::from(users));
        Self {
            rng,
            catalog,
            due: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            returning: BinaryHeap::new(),
            fresh,
            max_active: u64::from(users).min(MAX_ACTIVE_SESSIONS) as usize,
            next_start: first,
            now: first,
            start_gap_mean,
            idle_mean,
            seq: 0,
        }
    }

    pub(super) fn next_event(&mut self) -> Option<Rec> {
        loop {
            let due = self.due.peek().map_or(u64::MAX, |Reverse((ts, ..))| *ts);
            let active = self.slots.len() - self.free.len();
            if active < self.max_active && self.next_start <= due && self.start_session() {
                continue;
            }
            let Reverse((ts, _, slot)) = self.due.pop()?;
            self.now = ts;
            return Some(self.advance(slot, ts));
        }
    }

    /// Starts a session at `next_start` (or later, when its user is not back yet).
    fn start_session(&mut self) -> bool {
        let t = self.next_start.max(self.now);
        let ready = self.returning.peek().map(|Reverse((at, _))| *at);
        let (user, launch) = match ready {
            Some(at) if at <= t && (!self.fresh.any_left() || self.rng.bool()) => {
                (self.pop_returning(), t)
            }
            _ if self.fresh.any_left() => (self.fresh.take(), t),
            Some(at) => (self.pop_returning(), at),
            None => return false,
        };
        self.next_start = t + exponential(&mut self.rng, self.start_gap_mean);
        let session = Session {
            user,
            stage: Stage::Launch,
            product: 0,
            qty: 0,
            cents: 0,
            cart_ts: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = session;
                slot
            }
            None => {
                self.slots.push(session);
                (self.slots.len() - 1) as u32
            }
        };
        self.schedule(slot, launch);
        true
    }

    fn pop_returning(&mut self) -> u32 {
        self.returning.pop().map_or(0, |Reverse((_, user))| user)
    }

    fn schedule(&mut self, slot: u32, at: u64) {
        self.seq += 1;
        self.due.push(Reverse((at, self.seq, slot)));
    }

    /// Emits the session's current step at `ts` and schedules its next one (or ends it).
    fn advance(&mut self, slot: u32, ts: u64) -> Rec {
        let r = &mut self.rng;
        let mut s = self.slots[slot as usize];
        let gap = ts + step_gap(r);
        let (what, next) = match s.stage {
            Stage::Launch => {
                s.stage = Stage::View { left: r.u8(1..=5) };
                (What::Launched, Some(gap))
            }
            Stage::View { left } => {
                s.product = self.catalog.pick(r);
                let next = if left > 1 {
                    s.stage = Stage::View { left: left - 1 };
                    Some(gap)
                } else if r.u8(..100) < 40 {
                    s.stage = Stage::Cart;
                    Some(gap)
                } else {
                    None
                };
                (What::Viewed { product: s.product }, next)
            }
            Stage::Cart => {
                s.qty = match r.u8(..100) {
                    0..=74 => 1,
                    75..=92 => 2,
                    _ => 3,
                };
                s.cents = self.catalog.item(s.product).1 * u32::from(s.qty);
                s.cart_ts = ts;
                s.stage = Stage::Checkout;
                let next = (r.u8(..100) < 60).then_some(gap);
                (
                    What::Carted {
                        product: s.product,
                        qty: s.qty,
                    },
                    next,
                )
            }
            Stage::Checkout => {
                s.stage = Stage::Charge;
                let next = (r.u8(..100) < 60).then(|| {
                    if r.u8(..4) == 0 {
                        (s.cart_ts + r.u64(10 * MINUTE..=90 * MINUTE)).max(gap)
                    } else {
                        gap
                    }
                });
                (
                    What::Checkout {
                        cents: s.cents,
                        qty: s.qty,
                    },
                    next,
                )
            }
            Stage::Charge => (
                What::Charged {
                    cents: s.cents,
                    qty: s.qty,
                },
                None,
            ),
        };
        self.slots[slot as usize] = s;
        match next {
            Some(at) => self.schedule(slot, at),
            None => {
                self.free.push(slot);
                let idle = (self.idle_mean * (0.5 + self.rng.f64())) as u64;
                self.returning.push(Reverse((ts + idle, s.user)));
            }
        }
        Rec {
            ts,
            user: s.user,
            app: 0,
            what,
        }
    }
}

/// Gap between two steps of a session: seconds, sometimes minutes.
fn step_gap(r: &mut Rng) -> u64 {
    match r.u8(..100) {
        0..=69 => r.u64(2_000..45_000),
        70..=94 => r.u64(45_000..180_000),
        _ => r.u64(180_000..480_000),
    }
}

fn exponential(r: &mut Rng, mean: f64) -> u64 {
    (-(1.0 - r.f64()).ln() * mean) as u64
}

/// Users who never had a session, in a seeded order: `(k × stride + offset) mod users` with
/// `stride` coprime to `users` visits every user once without storing a permutation.
struct FreshUsers {
    next: u64,
    users: u64,
    stride: u64,
    offset: u64,
}

impl FreshUsers {
    fn new(r: &mut Rng, users: u64) -> Self {
        let mut stride = r.u64(1..=users.max(1));
        while gcd(stride, users) != 1 {
            stride += 1;
        }
        Self {
            next: 0,
            users,
            stride,
            offset: r.u64(..users.max(1)),
        }
    }

    fn any_left(&self) -> bool {
        self.next < self.users
    }

    fn take(&mut self) -> u32 {
        let k = u128::from(self.next) * u128::from(self.stride) + u128::from(self.offset);
        self.next += 1;
        (k % u128::from(self.users)) as u32
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_users_visit_everyone_once() {
        for users in [1u64, 2, 6, 97, 1000] {
            let mut fresh = FreshUsers::new(&mut Rng::with_seed(users), users);
            let mut seen = vec![false; users as usize];
            while fresh.any_left() {
                let u = fresh.take() as usize;
                assert!(!seen[u]);
                seen[u] = true;
            }
            assert!(seen.iter().all(|&s| s));
        }
    }
}
