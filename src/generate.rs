//! Synthetic recordings for samples, tests and benches (`remarket generate`).
//!
//! Owns turning [`GenerateArgs`] into a deterministic stream of JSON lines in one of the input
//! formats of DESIGN.md §2 (native, Segment, CleverTap), optionally wrapped in the envelopes that
//! `kcat -C -J` prints, with a chosen share of malformed lines mixed in.
//!
//! Shape of the data:
//! - users `u0`..`u{users-1}`; each gets one full profile at the start of the timeline (spread over
//!   its first minute, in user order) before any event is written;
//! - events come in sessions along a shopping funnel: `App Launched` → `Product Viewed` ×1–5 →
//!   `Added To Cart` (40%) → `Checkout Started` (60%) → `Charged` (60%; a quarter of purchases land
//!   10–90 minutes after the cart, so there are both abandoned carts and late purchases);
//!   up to min(users, 5000) sessions run at once and a user comes back hours later;
//! - about 1% of records are profile updates (new city, app upgrade, a property set to `null`);
//! - the timeline spans about 3 days × sqrt(events / 1M): hours for tests, days for 1M events.
//!
//! Invariants (checked by `tests/generate.rs`):
//! - the same args give byte-identical output; the valid records do not depend on `format`,
//!   `malformed_pct` or `partitions`, because each concern draws from its own RNG stream;
//! - exactly `events` event records are written; profiles and malformed lines are extra;
//! - in file order, a record's event time is ≥ the largest event time of earlier records minus
//!   `disorder_ms`: records are emitted in order of `ts + jitter`, `jitter ∈ [0, disorder_ms]`
//!   (CleverTap keeps whole seconds, which adds up to 999 ms);
//! - a user's first profile precedes its first event in file order;
//! - envelopes: partition = FNV-1a 64(user id) % `partitions`, offsets count from 0 per partition,
//!   the Kafka timestamp is event time + 0..=50 ms, clamped to be non-decreasing per partition;
//! - malformed lines never contain a newline. In envelope mode the malformed text is the payload,
//!   except the invalid-UTF-8 kind, which is written as a raw line instead of an envelope.
//!
//! Speed: nothing is allocated per record and serde is not used; numbers and timestamps are
//! formatted by hand into one reused buffer (about 10 M native events in seconds).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{self, Write};

use fastrand::Rng;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

// === public API ===

/// Arguments of `remarket generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// number of users, named `u0`..`u{N-1}`
    #[arg(long)]
    pub users: u64,
    /// exact number of event records (profiles and malformed lines are extra)
    #[arg(long)]
    pub events: u64,
    /// RNG seed; the same arguments always give the same bytes
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// record format
    #[arg(long, value_enum, default_value_t = Format::Native)]
    pub format: Format,
    /// start of the generated timeline, RFC 3339
    #[arg(long, default_value = "2026-11-02T00:00:00Z")]
    pub start: String,
    /// percent of lines that are malformed (0..=100, float; values above 99 act as 99)
    #[arg(long, default_value_t = 0.0)]
    pub malformed_pct: f64,
    /// maximum out-of-order displacement in ms of an event relative to event-time order
    #[arg(long, default_value_t = 2000)]
    pub disorder_ms: u64,
    /// 0 = plain JSON lines; N > 0 = `kcat -C -J` envelopes over N partitions
    #[arg(long, default_value_t = 0)]
    pub partitions: u32,
}

/// Record format of the generated lines (DESIGN.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Native,
    Segment,
    Clevertap,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateStats {
    /// every line written, malformed ones included
    pub lines: u64,
    /// valid event records (always `GenerateArgs::events`)
    pub events: u64,
    /// valid profile records (initial profiles and updates)
    pub profiles: u64,
    /// malformed lines
    pub malformed: u64,
}

/// Writes the recording described by `args` to `out`, one record a line, and flushes `out`.
///
/// Fails with `InvalidInput` on bad arguments (unparsable or pre-1970 `start`, `malformed_pct`
/// outside 0..=100, more than `u32::MAX` users, events without users) and with the writer's error.
pub fn generate(args: &GenerateArgs, out: &mut impl Write) -> io::Result<GenerateStats> {
    let start = parse_start(&args.start)?;
    if !(0.0..=100.0).contains(&args.malformed_pct) {
        return Err(invalid("--malformed-pct must be within 0..=100"));
    }
    let users = u32::try_from(args.users).map_err(|_| invalid("--users must be ≤ 4294967295"))?;
    if users == 0 && args.events > 0 {
        return Err(invalid("--events > 0 needs --users > 0"));
    }
    let catalog = Catalog {
        seed: splitmix64(args.seed ^ 0xC47A_1065),
    };
    let mut people = People::new(stream(args.seed, 1), users);
    let mut w = Writer::new(args, catalog, out);

    for user in 0..users {
        let ts = start + u64::from(user) * PROFILE_SPREAD_MS / u64::from(users);
        people.initial(user);
        w.profile(user, ts, Body::Full(&people.profile))?;
    }

    let first_session = start + PROFILE_SPREAD_MS;
    let mut timeline = Timeline::new(
        stream(args.seed, 2),
        catalog,
        users,
        args.events,
        first_session,
    );
    let mut reorder = Reorder::new(stream(args.seed, 3), args.disorder_ms);
    for _ in 0..args.events {
        let Some(mut ev) = timeline.next_event() else {
            break;
        };
        if people.wants_update() {
            let update = people.update(ev.user);
            reorder.push(Rec {
                what: What::Update(update),
                ..ev
            });
        }
        ev.app = people.dev[ev.user as usize].app;
        reorder.push(ev);
        while let Some(rec) = reorder.pop_ready(ev.ts) {
            w.record(&rec, &people)?;
        }
    }
    while let Some(rec) = reorder.pop() {
        w.record(&rec, &people)?;
    }
    w.finish()
}

fn parse_start(text: &str) -> io::Result<u64> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| invalid(&format!("--start {text:?} is not RFC 3339: {e}")))?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| invalid("--start must not be before 1970"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned())
}

// === constants and tables ===

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// Initial profiles are spread over the first minute; sessions start after it.
const PROFILE_SPREAD_MS: u64 = MINUTE;
const MAX_ACTIVE_SESSIONS: u64 = 5_000;
/// Mean events per session: 1 + 3 views + 0.4 × (1 + 0.6 × (1 + 0.6)).
const EVENTS_PER_SESSION: f64 = 4.784;
const CATALOG_SIZE: u32 = 5_000;
const FLUSH_AT: usize = 64 * 1024;

struct Location {
    country: &'static str,
    region: &'static str,
    city: &'static str,
    /// phone number style
    dial: Dial,
    /// relative share of users
    weight: u32,
}

#[derive(Clone, Copy)]
enum Dial {
    Us,
    Uk,
    De,
    Fr,
    In,
    Br,
    Jp,
    Es,
    Mx,
}

macro_rules! locations {
    ($(($country:literal, $region:literal, $city:literal, $dial:ident, $weight:literal)),+ $(,)?) => {
        [$(Location { country: $country, region: $region, city: $city, dial: Dial::$dial, weight: $weight }),+]
    };
}

#[rustfmt::skip]
static LOCATIONS: [Location; 15] = locations![
    ("United States", "California", "San Francisco", Us, 12),
    ("United States", "New York", "New York", Us, 10),
    ("United States", "Texas", "Austin", Us, 6),
    ("United Kingdom", "England", "London", Uk, 8),
    ("United Kingdom", "Scotland", "Edinburgh", Uk, 3),
    ("Germany", "Berlin", "Berlin", De, 6),
    ("Germany", "Bayern", "München", De, 4),
    ("France", "Île-de-France", "Paris", Fr, 5),
    ("India", "Maharashtra", "Mumbai", In, 8),
    ("India", "Karnataka", "Bengaluru", In, 6),
    ("Brazil", "São Paulo", "São Paulo", Br, 6),
    ("Japan", "Tōkyō", "Tokyo", Jp, 4),
    ("Canada", "Québec", "Montréal", Us, 4),
    ("Spain", "Catalunya", "Barcelona", Es, 4),
    ("Mexico", "Ciudad de México", "Ciudad de México", Mx, 4),
];

/// (make, model, OS name, OS versions)
type Device = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

#[rustfmt::skip]
static DEVICES: [Device; 9] = [
    ("Apple", "iPhone15,2", "iOS", &["17.1.2", "17.4.1"]),
    ("Apple", "iPhone14,5", "iOS", &["16.6.1", "17.1.2"]),
    ("Apple", "iPhone16,1", "iOS", &["17.4.1", "18.0"]),
    ("samsung", "SM-S918B", "Android", &["14", "13"]),
    ("samsung", "SM-A546B", "Android", &["14", "13"]),
    ("Google", "Pixel 8", "Android", &["14"]),
    ("Google", "Pixel 7a", "Android", &["14", "13"]),
    ("Xiaomi", "2201117TG", "Android", &["13", "12"]),
    ("OnePlus", "CPH2449", "Android", &["14"]),
];

/// Oldest first: an upgrade moves a user to a later entry. "5.10.x" sorts after "5.9.x" only as
/// dotted versions, which is the point.
#[rustfmt::skip]
static APP_VERSIONS: [&str; 7] = ["5.8.2", "5.9.0", "5.9.1", "5.10.0", "5.10.1", "6.0", "6.1.0"];
static SDK_VERSIONS: [&str; 4] = ["4.2.0", "4.3.1", "5.0.2", "5.1.0"];
static FIRST_NAMES: [&str; 16] = [
    "jane", "john", "maria", "li", "ahmed", "sofia", "lukas", "priya", "yuki", "carlos", "emma",
    "noah", "fatima", "ivan", "chloe", "arjun",
];
static LAST_NAMES: [&str; 16] = [
    "doe", "smith", "garcia", "wang", "khan", "rossi", "muller", "patel", "tanaka", "silva",
    "martin", "brown", "ali", "petrov", "dubois", "sharma",
];
#[rustfmt::skip]
static DOMAINS: [&str; 6] =
    ["example.com", "mail.example.org", "example.net", "shop.example", "example.co.uk", "test.example"];
#[rustfmt::skip]
static CATEGORIES: [&str; 8] =
    ["electronics", "fashion", "home", "beauty", "sports", "toys", "grocery", "books"];
static GENDERS: [(&str, &str); 3] = [("male", "M"), ("female", "F"), ("other", "O")];
static PLANS: [&str; 3] = ["free", "plus", "pro"];

// === records ===

/// One valid record on its way out: an event or a profile update, in the order it was produced.
#[derive(Clone, Copy)]
struct Rec {
    ts: u64,
    user: u32,
    /// the user's app version index when the record was produced (Segment context)
    app: u8,
    what: What,
}

#[derive(Clone, Copy)]
enum What {
    Launched,
    Viewed { product: u32 },
    Carted { product: u32, qty: u8 },
    Checkout { cents: u32, qty: u8 },
    Charged { cents: u32, qty: u8 },
    Update(Update),
}

impl What {
    fn name(self) -> &'static str {
        match self {
            What::Launched | What::Update(_) => "App Launched",
            What::Viewed { .. } => "Product Viewed",
            What::Carted { .. } => "Added To Cart",
            What::Checkout { .. } => "Checkout Started",
            What::Charged { .. } => "Charged",
        }
    }
}

#[derive(Clone, Copy)]
enum Update {
    Location(u8),
    AppVersion(u8),
    Unset(Nullable),
}

#[derive(Clone, Copy)]
enum Nullable {
    Email,
    Phone,
    Plan,
}

/// Device and app of a user: the only per-user state kept after the initial profile.
#[derive(Clone, Copy, Default)]
struct UserDevice {
    device: u8,
    os: u8,
    app: u8,
}

/// The initial profile of one user, rebuilt in place for each user.
#[derive(Default)]
struct Profile {
    /// empty = absent
    email: String,
    /// empty = absent
    phone: String,
    age: u8,
    gender: u8,
    loc: u8,
    sdk: u8,
    dev: UserDevice,
    email_unsubscribed: bool,
    plan: u8,
}

enum Body<'a> {
    Full(&'a Profile),
    Update(Update),
}

// === impl People ===

/// Profiles: the initial one of each user and the rare updates.
struct People {
    rng: Rng,
    dev: Vec<UserDevice>,
    profile: Profile,
}

impl People {
    fn new(rng: Rng, users: u32) -> Self {
        let dev = vec![UserDevice::default(); users as usize];
        Self {
            rng,
            dev,
            profile: Profile::default(),
        }
    }

    fn initial(&mut self, user: u32) {
        let r = &mut self.rng;
        let loc = pick_location(r);
        let device = r.u8(..DEVICES.len() as u8);
        let os = r.u8(..DEVICES[device as usize].3.len() as u8);
        // The newest version is only reached by upgrading.
        let dev = UserDevice {
            device,
            os,
            app: r.u8(..APP_VERSIONS.len() as u8 - 1),
        };
        self.dev[user as usize] = dev;
        let p = &mut self.profile;
        p.email.clear();
        p.phone.clear();
        if r.u8(..100) < 85 {
            push_email(&mut p.email, r);
        }
        if r.u8(..100) < 70 {
            push_phone(&mut p.phone, r, LOCATIONS[loc as usize].dial);
        }
        p.age = r.u8(16..=80);
        p.gender = match r.u8(..100) {
            0..=47 => 0,
            48..=95 => 1,
            _ => 2,
        };
        p.loc = loc;
        p.sdk = r.u8(..SDK_VERSIONS.len() as u8);
        p.dev = dev;
        p.email_unsubscribed = r.u8(..100) < 10;
        p.plan = match r.u8(..100) {
            0..=69 => 0,
            70..=89 => 1,
            _ => 2,
        };
    }

    /// About one record in a hundred is a profile update.
    fn wants_update(&mut self) -> bool {
        self.rng.u8(..100) == 0
    }

    fn update(&mut self, user: u32) -> Update {
        let r = &mut self.rng;
        let dev = &mut self.dev[user as usize];
        let latest = APP_VERSIONS.len() as u8 - 1;
        match r.u8(..10) {
            4..=7 if dev.app < latest => {
                dev.app = r.u8(dev.app + 1..=latest);
                Update::AppVersion(dev.app)
            }
            0..=7 => Update::Location(pick_location(r)),
            _ => Update::Unset([Nullable::Email, Nullable::Phone, Nullable::Plan][r.usize(..3)]),
        }
    }
}

fn pick_location(r: &mut Rng) -> u8 {
    let total: u32 = LOCATIONS.iter().map(|l| l.weight).sum();
    let mut x = r.u32(..total);
    for (i, l) in LOCATIONS.iter().enumerate() {
        if x < l.weight {
            return i as u8;
        }
        x -= l.weight;
    }
    0
}

/// "  Jane.Doe42@Example.COM " and friends; ~2% invalid (no `@`, or a space inside).
fn push_email(e: &mut String, r: &mut Rng) {
    let style = r.u8(..4);
    let broken = r.u8(..100) < 2;
    if r.u8(..4) == 0 {
        e.push_str("  ");
    }
    push_cased(e, FIRST_NAMES[r.usize(..FIRST_NAMES.len())], style);
    e.push(if broken && r.bool() { ' ' } else { '.' });
    push_cased(e, LAST_NAMES[r.usize(..LAST_NAMES.len())], style);
    let digits = r.usize(0..=2);
    push_digits(e, r, digits);
    e.push(if broken && !e.contains(' ') { '.' } else { '@' });
    let domain = DOMAINS[r.usize(..DOMAINS.len())];
    let (name, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    push_cased(e, name, style);
    e.push('.');
    push_cased(e, tld, if style == 1 { 2 } else { style });
    if r.u8(..4) == 0 {
        e.push(' ');
    }
}

/// style: 0 and 3 lower case, 1 capitalised, 2 upper case.
fn push_cased(e: &mut String, piece: &str, style: u8) {
    match style {
        1 => {
            let mut chars = piece.chars();
            if let Some(c) = chars.next() {
                e.push(c.to_ascii_uppercase());
                e.push_str(chars.as_str());
            }
        }
        2 => e.extend(piece.chars().map(|c| c.to_ascii_uppercase())),
        _ => e.push_str(piece),
    }
}

fn push_digits(s: &mut String, r: &mut Rng, n: usize) {
    for _ in 0..n {
        s.push(r.digit(10));
    }
}

/// A national format matching the user's country; 5% lack a country code (invalid on purpose).
fn push_phone(p: &mut String, r: &mut Rng, dial: Dial) {
    // (prefix, digit groups, separator between groups)
    let (prefix, groups, sep): (&str, &[usize], char) = if r.u8(..100) < 5 {
        p.push('(');
        p.push(char::from(b'2' + r.u8(..8)));
        push_digits(p, r, 2);
        (") 555-", &[4], ' ')
    } else {
        match dial {
            Dial::Us => ("+1 ", &[3, 3, 4], '-'),
            Dial::Uk => ("+44 20 ", &[4, 4], ' '),
            Dial::De => ("0049 30 ", &[7], ' '),
            Dial::Fr => ("+33.", &[1, 2, 2, 2, 2], '.'),
            Dial::In => ("+91 9", &[4, 5], ' '),
            Dial::Br => ("+55 11 9", &[4, 4], '-'),
            Dial::Jp => ("+81 3-", &[4, 4], '-'),
            Dial::Es => ("+34 6", &[2, 2, 2, 2], ' '),
            Dial::Mx => ("+52 55 ", &[4, 4], ' '),
        }
    };
    p.push_str(prefix);
    for (i, &n) in groups.iter().enumerate() {
        if i > 0 {
            p.push(sep);
        }
        push_digits(p, r, n);
    }
}

// === impl Catalog ===

/// Products `p0`..`p4999`; category and price follow from the id, so they never disagree.
#[derive(Clone, Copy)]
struct Catalog {
    seed: u64,
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
    fn item(self, product: u32) -> (&'static str, u32) {
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
struct Timeline {
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
    fn new(mut rng: Rng, catalog: Catalog, users: u32, events: u64, first: u64) -> Self {
        let span = 3.0 * DAY as f64 * (events as f64 / 1e6).sqrt();
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

    fn next_event(&mut self) -> Option<Rec> {
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

// === impl Reorder ===

/// Bounded disorder: records leave in order of `ts + jitter`, `jitter ∈ [0, max]`.
struct Reorder {
    rng: Rng,
    max: u64,
    seq: u64,
    heap: BinaryHeap<Pending>,
}

struct Pending {
    key: u64,
    seq: u64,
    rec: Rec,
}

impl Ord for Pending {
    /// Reversed, so that `BinaryHeap` pops the smallest `(key, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.key, other.seq).cmp(&(self.key, self.seq))
    }
}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.key, self.seq) == (other.key, other.seq)
    }
}

impl Eq for Pending {}

impl Reorder {
    fn new(rng: Rng, max: u64) -> Self {
        Self {
            rng,
            max,
            seq: 0,
            heap: BinaryHeap::new(),
        }
    }

    fn push(&mut self, rec: Rec) {
        // Most records are nearly in order; one in five may be late by up to the full bound.
        let bound = if self.rng.u8(..5) == 0 {
            self.max
        } else {
            self.max / 8
        };
        let key = rec.ts.saturating_add(self.rng.u64(..=bound));
        self.seq += 1;
        self.heap.push(Pending {
            key,
            seq: self.seq,
            rec,
        });
    }

    /// The next record that no later record (all with `ts ≥ now`) can precede.
    fn pop_ready(&mut self, now: u64) -> Option<Rec> {
        if self.heap.peek()?.key <= now {
            self.pop()
        } else {
            None
        }
    }

    fn pop(&mut self) -> Option<Rec> {
        self.heap.pop().map(|p| p.rec)
    }
}

// === impl Writer ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mangle {
    None,
    NoUser,
    NoEvent,
    BadTs,
    BadUtf8,
}

struct Kafka {
    rng: Rng,
    offsets: Vec<u64>,
    last_ts: Vec<u64>,
}

/// Renders records (and malformed lines) into one buffer, wraps them in envelopes, writes out.
struct Writer<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
    /// one record, when it still has to be wrapped in an envelope
    rec: Vec<u8>,
    format: Format,
    catalog: Catalog,
    malformed_p: f64,
    malformed_rng: Rng,
    context_rng: Rng,
    kafka: Option<Kafka>,
    stats: GenerateStats,
}

impl<'a, W: Write> Writer<'a, W> {
    fn new(args: &GenerateArgs, catalog: Catalog, out: &'a mut W) -> Self {
        let kafka = (args.partitions > 0).then(|| Kafka {
            rng: stream(args.seed, 4),
            offsets: vec![0; args.partitions as usize],
            last_ts: vec![0; args.partitions as usize],
        });
        Self {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            rec: Vec::with_capacity(1024),
            format: args.format,
            catalog,
            malformed_p: (args.malformed_pct / 100.0).min(0.99),
            malformed_rng: stream(args.seed, 5),
            context_rng: stream(args.seed, 6),
            kafka,
            stats: GenerateStats::default(),
        }
    }

    fn record(&mut self, rec: &Rec, people: &People) -> io::Result<()> {
        match rec.what {
            What::Update(update) => self.profile(rec.user, rec.ts, Body::Update(update)),
            what => {
                self.malformed(rec.user, rec.ts, what)?;
                let (fmt, catalog) = (self.format, self.catalog);
                let context = (fmt == Format::Segment && self.context_rng.u8(..5) == 0)
                    .then(|| (rec.app, people.dev[rec.user as usize]));
                self.begin();
                render_event(self.target(), fmt, catalog, rec, Mangle::None, context);
                self.stats.events += 1;
                self.end(rec.user, rec.ts, true)
            }
        }
    }

    fn profile(&mut self, user: u32, ts: u64, body: Body<'_>) -> io::Result<()> {
        self.malformed(user, ts, What::Launched)?;
        let fmt = self.format;
        self.begin();
        render_profile(self.target(), fmt, user, ts, body);
        self.stats.profiles += 1;
        self.end(user, ts, true)
    }

    /// Before each valid line, a geometric number of malformed ones: their share of all lines
    /// is `malformed_p`. They copy the user and time of the line that follows.
    fn malformed(&mut self, user: u32, ts: u64, what: What) -> io::Result<()> {
        while self.malformed_p > 0.0 && self.malformed_rng.f64() < self.malformed_p {
            let kind = self.malformed_rng.u8(..6);
            let cut = self.malformed_rng.f64();
            let (fmt, catalog) = (self.format, self.catalog);
            let rec = Rec {
                ts,
                user,
                app: 0,
                what,
            };
            let start = self.begin();
            let buf = self.target();
            let mangle = match kind {
                1 => Mangle::NoUser,
                2 => Mangle::NoEvent,
                3 => Mangle::BadTs,
                5 => Mangle::BadUtf8,
                _ => Mangle::None,
            };
            match kind {
                0 => {
                    // A strict, non-empty prefix of an object is never valid JSON.
                    render_event(buf, fmt, catalog, &rec, mangle, None);
                    let len = buf.len() - start;
                    let mut at = start + 1 + ((len - 1) as f64 * cut) as usize;
                    while at > start + 1 && (buf[at] & 0xC0) == 0x80 {
                        at -= 1; // keep the prefix valid UTF-8
                    }
                    buf.truncate(at);
                }
                4 => {
                    buf.extend_from_slice(b"[");
                    push_user(buf, user);
                    buf.push(b',');
                    push_str(buf, what.name());
                    buf.push(b',');
                    push_u64(buf, ts);
                    buf.push(b']');
                }
                _ => render_event(buf, fmt, catalog, &rec, mangle, None),
            }
            self.stats.malformed += 1;
            self.end(user, ts, mangle != Mangle::BadUtf8)?;
        }
        Ok(())
    }

    fn target(&mut self) -> &mut Vec<u8> {
        if self.kafka.is_some() {
            &mut self.rec
        } else {
            &mut self.buf
        }
    }

    /// Starts a line; returns where it starts in [`Self::target`].
    fn begin(&mut self) -> usize {
        self.rec.clear();
        self.target().len()
    }

    /// Ends a line: wraps it in an envelope when asked to (and in envelope mode), adds the
    /// newline, and writes out a full buffer.
    fn end(&mut self, user: u32, ts: u64, envelope: bool) -> io::Result<()> {
        if let Some(kafka) = &mut self.kafka {
            if envelope {
                push_envelope(&mut self.buf, kafka, user, ts, &self.rec);
            } else {
                self.buf.extend_from_slice(&self.rec);
            }
        }
        self.buf.push(b'\n');
        self.stats.lines += 1;
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn finish(self) -> io::Result<GenerateStats> {
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.stats)
    }
}

// === rendering ===

fn render_event(
    buf: &mut Vec<u8>,
    fmt: Format,
    catalog: Catalog,
    rec: &Rec,
    mangle: Mangle,
    context: Option<(u8, UserDevice)>,
) {
    let start = buf.len();
    buf.push(b'{');
    let (user_key, name_key, props_key) = match fmt {
        Format::Native => ("user_id", "event", "props"),
        Format::Segment => ("userId", "event", "properties"),
        Format::Clevertap => ("identity", "evtName", "evtData"),
    };
    if fmt == Format::Segment {
        str_field(buf, "type", "track");
    }
    if mangle != Mangle::NoUser {
        push_key(buf, user_key);
        push_user(buf, rec.user);
        buf.push(b',');
    }
    if mangle != Mangle::NoEvent {
        push_key(buf, name_key);
        push_str(buf, rec.what.name());
        if mangle == Mangle::BadUtf8 {
            buf.pop(); // the closing quote: put raw 0xff 0xfe inside the string
            buf.extend_from_slice(&[0xff, 0xfe, b'"']);
        }
        buf.push(b',');
    }
    if fmt != Format::Clevertap {
        ts_field(buf, fmt, rec.ts, mangle == Mangle::BadTs);
    }
    push_key(buf, props_key);
    push_props(buf, catalog, rec.what);
    buf.push(b',');
    if fmt == Format::Clevertap {
        ts_field(buf, fmt, rec.ts, mangle == Mangle::BadTs);
    }
    if let Some((app, dev)) = context {
        let (make, model, os, os_versions) = DEVICES[dev.device as usize];
        push_key(buf, "context");
        buf.extend_from_slice(b"{\"app\":{\"version\":");
        push_str(buf, APP_VERSIONS[app as usize]);
        buf.extend_from_slice(b"},\"os\":{\"name\":");
        push_str(buf, os);
        buf.extend_from_slice(b",\"version\":");
        push_str(buf, os_versions[dev.os as usize]);
        buf.extend_from_slice(b"},\"device\":{\"manufacturer\":");
        push_str(buf, make);
        buf.extend_from_slice(b",\"model\":");
        push_str(buf, model);
        buf.extend_from_slice(b"}},");
    }
    close(buf, start);
}

fn push_props(buf: &mut Vec<u8>, catalog: Catalog, what: What) {
    let start = buf.len();
    buf.push(b'{');
    match what {
        What::Launched | What::Update(_) => {}
        What::Viewed { product } => product_fields(buf, catalog, product),
        What::Carted { product, qty } => {
            product_fields(buf, catalog, product);
            u64_field(buf, "quantity", u64::from(qty));
        }
        What::Checkout { cents, qty } | What::Charged { cents, qty } => {
            push_key(buf, "amount");
            push_cents(buf, cents);
            buf.push(b',');
            u64_field(buf, "items", u64::from(qty));
            str_field(buf, "currency", "USD");
        }
    }
    close(buf, start);
}

fn product_fields(buf: &mut Vec<u8>, catalog: Catalog, product: u32) {
    let (category, cents) = catalog.item(product);
    buf.extend_from_slice(b"\"product_id\":\"p");
    push_u64(buf, u64::from(product));
    buf.extend_from_slice(b"\",");
    str_field(buf, "category", category);
    push_key(buf, "price");
    push_cents(buf, cents);
    buf.push(b',');
    str_field(buf, "currency", "USD");
}

fn render_profile(buf: &mut Vec<u8>, fmt: Format, user: u32, ts: u64, body: Body<'_>) {
    let start = buf.len();
    buf.push(b'{');
    let props_key = match fmt {
        Format::Native => {
            push_key(buf, "user_id");
            push_user(buf, user);
            buf.push(b',');
            str_field(buf, "type", "profile");
            ts_field(buf, fmt, ts, false);
            "props"
        }
        Format::Segment => {
            str_field(buf, "type", "identify");
            push_key(buf, "userId");
            push_user(buf, user);
            buf.push(b',');
            ts_field(buf, fmt, ts, false);
            "traits"
        }
        Format::Clevertap => {
            push_key(buf, "identity");
            push_user(buf, user);
            buf.push(b',');
            str_field(buf, "type", "profile");
            ts_field(buf, fmt, ts, false);
            "profileData"
        }
    };
    push_key(buf, props_key);
    let props = buf.len();
    buf.push(b'{');
    let ct = fmt == Format::Clevertap;
    match body {
        Body::Full(p) => {
            if !p.email.is_empty() {
                str_field(buf, if ct { "Email" } else { "email" }, &p.email);
            }
            if !p.phone.is_empty() {
                str_field(buf, if ct { "Phone" } else { "phone" }, &p.phone);
            }
            u64_field(buf, if ct { "Age" } else { "age" }, u64::from(p.age));
            let (gender, ct_gender) = GENDERS[p.gender as usize];
            if ct {
                str_field(buf, "Gender", ct_gender);
            } else {
                str_field(buf, "gender", gender);
            }
            location_fields(buf, fmt, p.loc);
            let (make, model, _, os_versions) = DEVICES[p.dev.device as usize];
            str_field(buf, "device_make", make);
            str_field(buf, "device_model", model);
            str_field(buf, "os_version", os_versions[p.dev.os as usize]);
            str_field(buf, "app_version", APP_VERSIONS[p.dev.app as usize]);
            str_field(buf, "sdk_version", SDK_VERSIONS[p.sdk as usize]);
            if ct {
                bool_field(buf, "MSG-email", !p.email_unsubscribed);
            } else {
                bool_field(buf, "email_unsubscribed", p.email_unsubscribed);
            }
            str_field(buf, "plan", PLANS[p.plan as usize]);
        }
        Body::Update(Update::Location(loc)) => location_fields(buf, fmt, loc),
        Body::Update(Update::AppVersion(app)) => {
            str_field(buf, "app_version", APP_VERSIONS[app as usize]);
        }
        Body::Update(Update::Unset(field)) => {
            let key = match (field, ct) {
                (Nullable::Email, false) => "email",
                (Nullable::Email, true) => "Email",
                (Nullable::Phone, false) => "phone",
                (Nullable::Phone, true) => "Phone",
                (Nullable::Plan, _) => "plan",
            };
            push_key(buf, key);
            buf.extend_from_slice(b"null,");
        }
    }
    close(buf, props);
    buf.push(b',');
    close(buf, start);
}

/// Always the whole consistent triple; Segment nests it as `address` with `state`.
fn location_fields(buf: &mut Vec<u8>, fmt: Format, loc: u8) {
    let l = &LOCATIONS[loc as usize];
    match fmt {
        Format::Native => {
            str_field(buf, "country", l.country);
            str_field(buf, "region", l.region);
            str_field(buf, "city", l.city);
        }
        Format::Segment => {
            push_key(buf, "address");
            let start = buf.len();
            buf.push(b'{');
            str_field(buf, "country", l.country);
            str_field(buf, "state", l.region);
            str_field(buf, "city", l.city);
            close(buf, start);
            buf.push(b',');
        }
        Format::Clevertap => {
            str_field(buf, "Country", l.country);
            str_field(buf, "Region", l.region);
            str_field(buf, "City", l.city);
        }
    }
}

/// `{"topic":"events","partition":P,"offset":O,"tstype":"create","ts":…,"broker":0,"key":…,
/// "payload":…}` as `kcat -C -J` prints it.
fn push_envelope(buf: &mut Vec<u8>, kafka: &mut Kafka, user: u32, ts: u64, payload: &[u8]) {
    let (id, len) = user_id(user);
    let partition = (fnv1a64(&id[..len]) % kafka.offsets.len() as u64) as usize;
    let offset = kafka.offsets[partition];
    kafka.offsets[partition] += 1;
    let kafka_ts = (ts + kafka.rng.u64(..=50)).max(kafka.last_ts[partition]);
    kafka.last_ts[partition] = kafka_ts;
    buf.extend_from_slice(b"{\"topic\":\"events\",\"partition\":");
    push_u64(buf, partition as u64);
    buf.extend_from_slice(b",\"offset\":");
    push_u64(buf, offset);
    buf.extend_from_slice(b",\"tstype\":\"create\",\"ts\":");
    push_u64(buf, kafka_ts);
    buf.extend_from_slice(b",\"broker\":0,\"key\":\"");
    buf.extend_from_slice(&id[..len]);
    buf.extend_from_slice(b"\",\"payload\":");
    push_json_string(buf, payload);
    buf.push(b'}');
}

// === small writers ===

fn push_key(buf: &mut Vec<u8>, key: &str) {
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(b"\":");
}

fn str_field(buf: &mut Vec<u8>, key: &str, value: &str) {
    push_key(buf, key);
    push_str(buf, value);
    buf.push(b',');
}

fn u64_field(buf: &mut Vec<u8>, key: &str, value: u64) {
    push_key(buf, key);
    push_u64(buf, value);
    buf.push(b',');
}

fn bool_field(buf: &mut Vec<u8>, key: &str, value: bool) {
    push_key(buf, key);
    buf.extend_from_slice(if value { b"true," } else { b"false," });
}

/// `"ts":ms` (native), `"timestamp":"…Z"` (Segment) or `"ts":seconds` (CleverTap).
fn ts_field(buf: &mut Vec<u8>, fmt: Format, ts: u64, bad: bool) {
    push_key(
        buf,
        if fmt == Format::Segment {
            "timestamp"
        } else {
            "ts"
        },
    );
    if bad {
        buf.extend_from_slice(b"\"yesterday\"");
    } else {
        match fmt {
            Format::Native => push_u64(buf, ts),
            Format::Segment => {
                buf.push(b'"');
                push_iso_ms(buf, ts);
                buf.push(b'"');
            }
            Format::Clevertap => push_u64(buf, ts / 1000),
        }
    }
    buf.push(b',');
}

/// Closes an object opened at `start`: drops the trailing comma of its last field.
fn close(buf: &mut Vec<u8>, start: usize) {
    if buf.len() > start + 1 && buf.last() == Some(&b',') {
        buf.pop();
    }
    buf.push(b'}');
}

fn user_id(user: u32) -> ([u8; 11], usize) {
    let mut id = [0u8; 11];
    id[0] = b'u';
    let mut digits = [0u8; 10];
    let n = format_u64(&mut digits, u64::from(user));
    id[1..=n.len()].copy_from_slice(n);
    (id, n.len() + 1)
}

fn push_user(buf: &mut Vec<u8>, user: u32) {
    buf.extend_from_slice(b"\"u");
    push_u64(buf, u64::from(user));
    buf.push(b'"');
}

fn push_str(buf: &mut Vec<u8>, s: &str) {
    push_json_string(buf, s.as_bytes());
}

/// A JSON string: escapes `"`, `\` and control characters; other bytes (UTF-8 or not) pass.
fn push_json_string(buf: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.push(b'"');
    let mut run = 0;
    for (i, &b) in s.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ],
            _ => continue,
        };
        buf.extend_from_slice(&s[run..i]);
        buf.extend_from_slice(escaped);
        run = i + 1;
    }
    buf.extend_from_slice(&s[run..]);
    buf.push(b'"');
}

fn format_u64(tmp: &mut [u8], mut v: u64) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &tmp[i..];
        }
    }
}

fn push_u64(buf: &mut Vec<u8>, v: u64) {
    let mut tmp = [0u8; 20];
    buf.extend_from_slice(format_u64(&mut tmp, v));
}

fn push_2(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8]);
}

/// 1234 → `12.34`
fn push_cents(buf: &mut Vec<u8>, cents: u32) {
    push_u64(buf, u64::from(cents / 100));
    buf.push(b'.');
    push_2(buf, u64::from(cents % 100));
}

/// `2026-11-28T10:00:00.123Z`
fn push_iso_ms(buf: &mut Vec<u8>, ms: u64) {
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    push_2(buf, year / 100);
    push_2(buf, year % 100);
    buf.push(b'-');
    push_2(buf, month);
    buf.push(b'-');
    push_2(buf, day);
    buf.push(b'T');
    push_2(buf, sod / 3600);
    buf.push(b':');
    push_2(buf, sod / 60 % 60);
    buf.push(b':');
    push_2(buf, sod % 60);
    buf.push(b'.');
    let milli = ms % 1000;
    buf.extend_from_slice(&[
        b'0' + (milli / 100) as u8,
        b'0' + (milli / 10 % 10) as u8,
        b'0' + (milli % 10) as u8,
        b'Z',
    ]);
}

/// Days since 1970-01-01 → (year, month, day); H. Hinnant's `civil_from_days`, unsigned.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

// === hashing and seeding ===

/// FNV-1a 64: the stable partitioner of generated envelopes.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An independent RNG stream per concern, so that e.g. `--malformed-pct` does not change the
/// valid records.
fn stream(seed: u64, id: u64) -> Rng {
    Rng::with_seed(splitmix64(seed ^ splitmix64(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_matches_time_crate() {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        for ms in [
            0u64,
            951_782_400_123,
            1_764_324_000_123,
            4_102_444_799_999,
            1_709_164_800_000,
        ] {
            let mut buf = Vec::new();
            push_iso_ms(&mut buf, ms);
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
            assert_eq!(String::from_utf8(buf).unwrap(), at.format(fmt).unwrap());
        }
    }

    #[test]
    fn escaper_round_trips() {
        let s = "a\"b\\c\n\u{1}é ok";
        let mut buf = Vec::new();
        push_json_string(&mut buf, s.as_bytes());
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, s);
    }

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
