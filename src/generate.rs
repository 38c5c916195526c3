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
//! - each user has one device, `d<n>`: every record that sets app fields names it (native
//!   `device_id`, Segment `context.device.id`, CleverTap `objectId`), so the app fields are
//!   that device's in every format; product events carry `product_id`, `sku` and `price`;
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
//!
//! Layout: this file holds the public API, the main loop and the bounded reordering;
//! `people` the tables and the per-user profiles, `timeline` the product catalog and the
//! sessions along the funnel, `render` the three formats, malformed lines, envelopes and
//! buffered writing, and `json` the hand-written JSON, number and timestamp writers.

mod json;
mod people;
mod render;
mod timeline;

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::{self, Write};

use fastrand::Rng;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use people::{Body, People, Update};
use render::Writer;
use timeline::{Catalog, Timeline};

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
    /// days the events span (users come back across days, for behaviour rules over days);
    /// 0 = about 3 days × sqrt(events / 1M)
    #[arg(long, default_value_t = 0)]
    pub days: u32,
}

impl GenerateArgs {
    /// `users` users and `events` events from `seed`, every other setting at the CLI's
    /// default (native format, from 2026-11-02, 2 s of disorder, no malformed lines, one
    /// plain stream, no day spread): what benches and tests start from.
    pub fn new(users: u64, events: u64, seed: u64) -> Self {
        GenerateArgs {
            users,
            events,
            seed,
            format: Format::Native,
            start: "2026-11-02T00:00:00Z".into(),
            malformed_pct: 0.0,
            disorder_ms: 2000,
            partitions: 0,
            days: 0,
        }
    }
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
        args.days,
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

// === constants ===

const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// Initial profiles are spread over the first minute; sessions start after it.
const PROFILE_SPREAD_MS: u64 = MINUTE;

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

// === seeding ===

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
