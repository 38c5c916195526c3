//! Property test of past-behaviour campaigns (scheduled runs over behaviour rules), wide
//! version (`tests/past_properties.rs` is the small one): on random
//! multi-day inputs with several scheduled campaigns and a segment, detect + activate give
//! exactly the decisions of a plain reference written here — per-user event lists, no day
//! buckets — for any shard count and any arrival order within `engine.allowed_lateness`.
//!
//! The reference follows the README (Configuration reference, behaviour rules) and
//! docs/semantics.md (#past-behaviour):
//! - a campaign's runs are computed here from its schedule (daily at a local time, every N
//!   hours at a minute, or an `at` list), in its zone, within `[start, end)`; replay reaches
//!   the runs at or before the last record's `ts`;
//! - at run `R` (local day `D`), a user not yet decided for the campaign and known to the
//!   engine (a profile record, or an event some behaviour rule counts, with `ts ≤ R`)
//!   qualifies when the campaign's and its segment's `where` hold on the profile as of `R` and
//!   every behaviour rule holds over the user's events with `ts ≤ R` on the rule's local days:
//!   `in_last = "Nd"` is `D−N+1 ..= D`, `between = ["Nd", "Md"]` is `D−N ..= D−M`, `all`
//!   everything; `count`/`sum` of nothing are 0, `avg`/`min`/`max` of no numbers are false;
//! - a qualified user is `exported` with their email's hash when they have an email at `R`,
//!   else `unreachable`; once per user and campaign (control group 0, no target cap).

use std::path::Path;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use remarket::app::execute;
use remarket::config::Config;
use remarket::event::recording::Recording;

/// The wall clock the replays run at: after every generated record (`engine.max_future`).
const NOW_MS: i64 = 1_893_456_000_000; // 2030-01-01

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
/// Generated times of day are often on this grid, as run times are: ties between a record and
/// a run, and records at local midnight, happen.
const SLOT: i64 = 15 * MIN;

const EVENTS: [&str; 3] = ["App Launched", "Product Viewed", "Charged"];
const CATEGORIES: [&str; 3] = ["shoes", "books", "bags"];
const COUNTRIES: [&str; 3] = ["DE", "FR", "US"];
const ZONES: [&str; 3] = ["UTC", "Europe/Berlin", "America/New_York"];
/// First days of the timeline: across the spring and autumn DST changes of Berlin
/// (2027-03-28, 2027-10-31) and New York (2027-03-14, 2027-11-07), and a summer without one.
const BASES: [(i16, i8, i8); 4] = [(2027, 3, 10), (2027, 3, 25), (2027, 10, 27), (2027, 6, 10)];
/// `engine.allowed_lateness` choices, in ms and as written in the config.
const LATENESS: [(i64, &str); 3] = [(5_000, "5s"), (30 * MIN, "30m"), (6 * HOUR, "6h")];

// === generated input ===

#[derive(Debug, Clone, Copy, PartialEq)]
enum Price {
    Missing,
    Num(i64),
    /// A string: neither a number for aggregates nor for `price >= 20`.
    Text,
}

#[derive(Debug, Clone)]
struct Ev {
    user: usize,
    ts: i64,
    name: usize,
    price: Price,
    /// Index into [`CATEGORIES`]; `None`: no `category`.
    category: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EmailChange {
    Keep,
    Clear,
    Set,
}

#[derive(Debug, Clone)]
struct Prof {
    user: usize,
    ts: i64,
    country: usize,
    email: EmailChange,
}

/// A behaviour rule's days.
#[derive(Debug, Clone, Copy)]
enum Range {
    Last(i64),
    Between(i64, i64),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Agg {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

const OPS: [&str; 7] = ["=", "!=", ">", ">=", "<", "<=", "between"];

/// `where` on the rule's event (index into [`FILTERS`]).
const FILTERS: [&str; 4] = [
    r#"{ prop = "category", op = "=", value = "shoes" }"#,
    r#"{ prop = "price", op = ">=", value = 20 }"#,
    r#"{ prop = "category", op = "!=", value = "books" }"#,
    r#"{ prop = "category", op = "in", value = ["shoes", "bags"] }"#,
];

#[derive(Debug, Clone)]
struct Rule {
    negated: bool,
    event: usize,
    filter: Option<usize>,
    /// `(agg, op index, value, upper bound for between)`.
    agg: Option<(Agg, usize, f64, f64)>,
    range: Range,
}

#[derive(Debug, Clone)]
enum Sched {
    /// `repeat = { every, unit = "day", time = "hh:mm" }`, optionally `runs`.
    Daily {
        every: i64,
        hh: i8,
        mm: i8,
        runs: Option<usize>,
    },
    /// `repeat = { every, unit = "hour", time = "00:mm" }`.
    Hourly { every: i64, mm: i8 },
    /// `at = [...]`: instants as slots from the day before the timeline.
    At(Vec<i64>),
}

#[derive(Debug, Clone)]
struct Camp {
    zone: usize,
    sched: Sched,
    /// Hours from the timeline's start (whole hours: the hourly first run is then plain).
    start_h: i64,
    /// Hours after `start`.
    end_h: Option<i64>,
    segment: bool,
    /// `who.where = country = …`.
    country: Option<usize>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Seg {
    rules: Vec<Rule>,
    /// `where = country in [DE, FR]`.
    countries: bool,
    has_email: bool,
}

#[derive(Debug, Clone)]
struct Case {
    base: usize,
    days: i64,
    users: usize,
    events: Vec<Ev>,
    profiles: Vec<Prof>,
    camps: Vec<Camp>,
    seg: Seg,
    lateness: usize,
    shards: usize,
    seed: u64,
}

impl Case {
    fn t0(&self) -> i64 {
        let (y, m, d) = BASES[self.base];
        Date::new(y, m, d)
            .unwrap()
            .to_zoned(TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_millisecond()
    }
}

fn range() -> impl Strategy<Value = Range> {
    prop_oneof![
        3 => (1i64..=10).prop_map(Range::Last),
        2 => (0i64..=10).prop_flat_map(|n| (Just(n), 0..=n)).prop_map(|(n, m)| Range::Between(n, m)),
        1 => Just(Range::All),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    let filter = proptest::option::weighted(0.4, 0..FILTERS.len());
    let agg = prop_oneof![
        Just(Agg::Count),
        Just(Agg::Sum),
        Just(Agg::Avg),
        Just(Agg::Min),
        Just(Agg::Max)
    ];
    prop_oneof![
        (0..EVENTS.len(), filter.clone(), range()).prop_map(|(event, filter, range)| Rule {
            negated: false,
            event,
            filter,
            agg: None,
            range,
        }),
        (0..EVENTS.len(), filter.clone(), range()).prop_map(|(event, filter, range)| Rule {
            negated: true,
            event,
            filter,
            agg: None,
            range,
        }),
        (
            0..EVENTS.len(),
            filter,
            range(),
            agg,
            0..OPS.len(),
            0i64..=6,
            0i64..=6
        )
            .prop_map(|(event, filter, range, agg, op, a, b)| {
                // Counts compare with small numbers, the others with prices (0..100).
                let scale = if agg == Agg::Count {
                    1.0
                } else if agg == Agg::Sum {
                    40.0
                } else {
                    15.0
                };
                let (lo, hi) = (a.min(b) as f64 * scale, a.max(b) as f64 * scale);
                Rule {
                    negated: false,
                    event,
                    filter,
                    agg: Some((agg, op, if op == 6 { lo } else { a as f64 * scale }, hi)),
                    range,
                }
            }),
    ]
}

fn sched(days: i64) -> impl Strategy<Value = Sched> {
    let minute = prop_oneof![Just(0i8), Just(15i8), Just(30i8), Just(45i8)];
    prop_oneof![
        3 => (
            1i64..=3,
            prop_oneof![Just(2i8), 0i8..24],
            minute.clone(),
            proptest::option::weighted(0.3, 1usize..=5),
        )
            .prop_map(|(every, hh, mm, runs)| Sched::Daily { every, hh, mm, runs }),
        2 => (prop_oneof![1i64..=8, Just(24i64)], minute)
            .prop_map(|(every, mm)| Sched::Hourly { every, mm }),
        2 => proptest::collection::vec(0..(days + 2) * (DAY / SLOT), 1..=6).prop_map(Sched::At),
    ]
}

fn camp(days: i64) -> impl Strategy<Value = Camp> {
    (
        0..ZONES.len(),
        sched(days),
        -24..days * 24,
        proptest::option::weighted(0.3, 1..=days * 24),
        any::<bool>(),
        proptest::option::weighted(0.3, 0..COUNTRIES.len()),
        proptest::collection::vec(rule(), 1..=3),
    )
        .prop_map(
            |(zone, sched, start_h, end_h, segment, country, rules)| Camp {
                zone,
                sched,
                start_h,
                end_h,
                segment,
                country,
                rules,
            },
        )
}

fn time_of_day() -> impl Strategy<Value = i64> {
    prop_oneof![(0..DAY / SLOT).prop_map(|s| s * SLOT), 0..DAY]
}

fn event(users: usize, days: i64) -> impl Strategy<Value = Ev> {
    let price = prop_oneof![
        4 => (0i64..100).prop_map(Price::Num),
        1 => Just(Price::Missing),
        1 => Just(Price::Text),
    ];
    (
        0..users,
        0..days,
        time_of_day(),
        0..EVENTS.len(),
        price,
        proptest::option::weighted(0.85, 0..CATEGORIES.len()),
    )
        .prop_map(|(user, day, tod, name, price, category)| Ev {
            user,
            ts: day * DAY + tod,
            name,
            price,
            category,
        })
}

/// A user's profile records: most users have one at the start (an hour before the first
/// day), some only later or never (they are then known only through their events, and
/// unreachable until they have an email); a few updates change the country or the email.
fn profiles(user: usize, days: i64) -> impl Strategy<Value = Vec<Prof>> {
    let first = prop_oneof![
        5 => Just(Some(-HOUR)),
        1 => (0..days * DAY).prop_map(Some),
        2 => Just(None),
    ];
    let change = prop_oneof![
        3 => Just(EmailChange::Keep),
        1 => Just(EmailChange::Clear),
        1 => Just(EmailChange::Set),
    ];
    (
        first,
        0..COUNTRIES.len(),
        proptest::collection::vec(
            (
                (0..days, time_of_day()).prop_map(|(d, tod)| d * DAY + tod),
                0..COUNTRIES.len(),
                change,
            ),
            0..=2,
        ),
    )
        .prop_map(move |(first, country, updates)| {
            let mut v: Vec<Prof> = first
                .map(|ts| Prof {
                    user,
                    ts,
                    country,
                    email: EmailChange::Set,
                })
                .into_iter()
                .collect();
            v.extend(updates.into_iter().map(|(ts, country, email)| Prof {
                user,
                ts,
                country,
                email,
            }));
            v
        })
}

fn case() -> impl Strategy<Value = Case> {
    (5usize..=40, 3i64..=20, 0..BASES.len())
        .prop_flat_map(|(users, days, base)| {
            let max_events = (users * days as usize * 2).min(1200);
            let profs: Vec<_> = (0..users).map(|u| profiles(u, days)).collect();
            (
                Just((users, days, base)),
                proptest::collection::vec(event(users, days), 0..=max_events),
                profs,
                proptest::collection::vec(camp(days), 2..=3),
                (
                    proptest::collection::vec(rule(), 1..=2),
                    any::<bool>(),
                    proptest::bool::weighted(0.25),
                )
                    .prop_map(|(rules, countries, has_email)| Seg {
                        rules,
                        countries,
                        has_email,
                    }),
                0..LATENESS.len(),
                1usize..=3,
                any::<u64>(),
            )
        })
        .prop_map(
            |((users, days, base), events, profs, mut camps, seg, lateness, shards, seed)| {
                // The segment is used by at least one campaign.
                camps[0].segment = true;
                Case {
                    base,
                    days,
                    users,
                    events,
                    profiles: profs.into_iter().flatten().collect(),
                    camps,
                    seg,
                    lateness,
                    shards,
                    seed,
                }
            },
        )
}

// === the config and the recording ===

fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms).unwrap().to_string()
}

fn rule_toml(r: &Rule) -> String {
    let mut s = format!(
        "{{ {} = \"{}\"",
        if r.negated { "did_not" } else { "did" },
        EVENTS[r.event]
    );
    if let Some(f) = r.filter {
        s += &format!(", where = [{}]", FILTERS[f]);
    }
    if let Some((agg, op, v, hi)) = r.agg {
        let (name, prop) = match agg {
            Agg::Count => ("count", ""),
            Agg::Sum => ("sum", ", prop = \"price\""),
            Agg::Avg => ("avg", ", prop = \"price\""),
            Agg::Min => ("min", ", prop = \"price\""),
            Agg::Max => ("max", ", prop = \"price\""),
        };
        let value = if OPS[op] == "between" {
            format!("[{v}, {hi}]")
        } else {
            format!("{v}")
        };
        s += &format!(
            ", agg = \"{name}\"{prop}, op = \"{}\", value = {value}",
            OPS[op]
        );
    }
    s += &match r.range {
        Range::Last(n) => format!(", in_last = \"{n}d\""),
        Range::Between(n, m) => format!(", between = [\"{n}d\", \"{m}d\"]"),
        Range::All => ", in_last = \"all\"".to_string(),
    };
    s + " }"
}

fn rules_toml(rules: &[Rule]) -> String {
    let items: Vec<String> = rules.iter().map(rule_toml).collect();
    format!("[\n  {},\n]", items.join(",\n  "))
}

fn camp_start(case: &Case, c: &Camp) -> i64 {
    case.t0() + c.start_h * HOUR
}

fn camp_end(case: &Case, c: &Camp) -> Option<i64> {
    c.end_h.map(|h| camp_start(case, c) + h * HOUR)
}

fn at_instant(case: &Case, slot: i64) -> i64 {
    case.t0() - DAY + slot * SLOT
}

fn config_text(case: &Case) -> String {
    let mut s = format!(
        "[engine]\nallowed_lateness = \"{}\"\n\n[[segment]]\nid = \"seg\"\npast = {}\n",
        LATENESS[case.lateness].1,
        rules_toml(&case.seg.rules)
    );
    let mut wh = Vec::new();
    if case.seg.countries {
        wh.push(r#"{ prop = "country", op = "in", value = ["DE", "FR"] }"#.to_string());
    }
    if case.seg.has_email {
        wh.push(r#"{ prop = "has_email", op = "=", value = true }"#.to_string());
    }
    if !wh.is_empty() {
        s += &format!("where = [{}]\n", wh.join(", "));
    }
    for (i, c) in case.camps.iter().enumerate() {
        s += &format!(
            "\n[[campaign]]\nid = \"c{i}\"\nname = \"c{i}\"\nad_account = \"1\"\nstart = \"{}\"\n",
            rfc3339(camp_start(case, c))
        );
        if let Some(end) = camp_end(case, c) {
            s += &format!("end = \"{}\"\n", rfc3339(end));
        }
        s += &format!("[campaign.schedule]\ntimezone = \"{}\"\n", ZONES[c.zone]);
        match &c.sched {
            Sched::Daily {
                every,
                hh,
                mm,
                runs,
            } => {
                s += &format!(
                    "repeat = {{ every = {every}, unit = \"day\", time = \"{hh:02}:{mm:02}\" }}\n"
                );
                if let Some(n) = runs {
                    s += &format!("runs = {n}\n");
                }
            }
            Sched::Hourly { every, mm } => {
                s += &format!(
                    "repeat = {{ every = {every}, unit = \"hour\", time = \"00:{mm:02}\" }}\n"
                );
            }
            Sched::At(slots) => {
                let at: Vec<String> = slots
                    .iter()
                    .map(|&sl| format!("\"{}\"", rfc3339(at_instant(case, sl))))
                    .collect();
                s += &format!("at = [{}]\n", at.join(", "));
            }
        }
        s += "[campaign.who]\n";
        if c.segment {
            s += "segment = \"seg\"\n";
        }
        if let Some(k) = c.country {
            s += &format!(
                "where = [{{ prop = \"country\", op = \"=\", value = \"{}\" }}]\n",
                COUNTRIES[k]
            );
        }
        s += &format!("past = {}\n", rules_toml(&c.rules));
        s += &format!(
            "[campaign.what]\naudience = {{ existing = \"{}\" }}\nidentifiers = [\"email\"]\n",
            7_000_000 + i
        );
    }
    s
}

fn email(user: usize) -> String {
    format!("u{user}@example.com")
}

/// The records in stream (event-time) order, with absolute times: `(ts, line)`.
fn stream(case: &Case) -> Vec<(i64, String)> {
    let t0 = case.t0();
    let mut v: Vec<(i64, String)> = Vec::new();
    for p in &case.profiles {
        let email = match p.email {
            EmailChange::Keep => String::new(),
            EmailChange::Clear => ",\"email\":null".to_string(),
            EmailChange::Set => format!(",\"email\":\"{}\"", email(p.user)),
        };
        v.push((
            t0 + p.ts,
            format!(
                r#"{{"user_id":"u{}","type":"profile","ts":{},"props":{{"country":"{}"{email}}}}}"#,
                p.user,
                t0 + p.ts,
                COUNTRIES[p.country]
            ),
        ));
    }
    for e in &case.events {
        let mut props = Vec::new();
        match e.price {
            Price::Missing => {}
            Price::Num(n) => props.push(format!("\"price\":{n}")),
            Price::Text => props.push("\"price\":\"12\"".to_string()),
        }
        if let Some(c) = e.category {
            props.push(format!("\"category\":\"{}\"", CATEGORIES[c]));
        }
        v.push((
            t0 + e.ts,
            format!(
                r#"{{"user_id":"u{}","event":"{}","ts":{},"props":{{{}}}}}"#,
                e.user,
                EVENTS[e.name],
                t0 + e.ts,
                props.join(",")
            ),
        ));
    }
    // Stable: records with one ts keep the order above (profiles first).
    v.sort_by_key(|r| r.0);
    v
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An arrival order whose disorder stays within the allowed lateness `l`: each distinct ts
/// gets a delay in `0..=l` and records arrive by `ts + delay` (a stable sort, so records with
/// one ts keep their stream order). A record then arrives at most `l` after a later one: never
/// at or below the watermark (max ts − `l` − 1 ms).
fn shuffled(recs: &[(i64, String)], l: i64, seed: u64) -> Vec<(i64, String)> {
    let delay = |ts: i64| (splitmix(seed ^ ts as u64) % (l as u64 + 1)) as i64;
    let mut v = recs.to_vec();
    v.sort_by_key(|r| r.0 + delay(r.0));
    v
}

// === the reference ===

fn zone(i: usize) -> TimeZone {
    TimeZone::get(ZONES[i]).unwrap()
}

fn local(ts: i64, tz: &TimeZone) -> DateTime {
    Timestamp::from_millisecond(ts)
        .unwrap()
        .to_zoned(tz.clone())
        .datetime()
}

/// The local day of `ts` as a day count (any fixed origin).
fn day_number(ts: i64, tz: &TimeZone) -> i64 {
    let epoch = Date::new(1970, 1, 1).unwrap();
    local(ts, tz).date().since(epoch).unwrap().get_days() as i64
}

/// The first instant whose local wall time is at or after `dt`: `dt` itself, the end of a DST
/// gap holding `dt`, or the first of the two instants of a fold. Scanned on the 15-minute grid
/// (every local time generated is on it, and every transition of the zones used is).
fn first_at_or_after(dt: DateTime, tz: &TimeZone) -> i64 {
    let mut t = dt
        .to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond()
        - 15 * HOUR;
    while local(t, tz) < dt {
        t += SLOT;
    }
    t
}

/// The campaign's runs at or before `last` (the end of the replay), computed from the README.
fn runs(case: &Case, c: &Camp, last: i64) -> Vec<i64> {
    let tz = zone(c.zone);
    let start = camp_start(case, c);
    let stop = camp_end(case, c).unwrap_or(i64::MAX).min(last + 1);
    let mut out = Vec::new();
    match &c.sched {
        Sched::Daily {
            every,
            hh,
            mm,
            runs,
        } => {
            // The first occurrence at or after start, then every `every` local days.
            let time = Time::new(*hh, *mm, 0, 0).unwrap();
            let mut day = local(start, &tz).date();
            while first_at_or_after(day.to_datetime(time), &tz) < start {
                day = day.tomorrow().unwrap();
            }
            loop {
                let r = first_at_or_after(day.to_datetime(time), &tz);
                if r >= stop || runs.is_some_and(|n| out.len() >= n) {
                    break;
                }
                out.push(r);
                day = day.checked_add(jiff::Span::new().days(*every)).unwrap();
            }
        }
        Sched::Hourly { every, mm } => {
            // The first instant at or after start at the local minute, then every N hours.
            let mut r = start;
            while local(r, &tz).minute() != *mm {
                r += SLOT;
            }
            while r < stop {
                out.push(r);
                r += every * HOUR;
            }
        }
        Sched::At(slots) => {
            let mut t: Vec<i64> = slots.iter().map(|&s| at_instant(case, s)).collect();
            t.sort_unstable();
            t.dedup();
            out.extend(t.into_iter().filter(|&t| t >= start && t < stop));
        }
    }
    out
}

/// An event as the reference sees it: absolute time and its local day in each zone.
struct RefEv {
    ts: i64,
    days: [i64; ZONES.len()],
    name: usize,
    price: Price,
    category: Option<&'static str>,
}

fn filter_holds(f: usize, e: &RefEv) -> bool {
    match f {
        0 => e.category == Some("shoes"),
        1 => matches!(e.price, Price::Num(n) if n >= 20),
        2 => e.category.is_some_and(|c| c != "books"),
        3 => matches!(e.category, Some("shoes" | "bags")),
        _ => unreachable!(),
    }
}

fn matches_rule(r: &Rule, e: &RefEv) -> bool {
    e.name == r.event && r.filter.is_none_or(|f| filter_holds(f, e))
}

fn compare(op: usize, x: f64, v: f64, hi: f64) -> bool {
    match OPS[op] {
        "=" => x == v,
        "!=" => x != v,
        ">" => x > v,
        ">=" => x >= v,
        "<" => x < v,
        "<=" => x <= v,
        "between" => v <= x && x <= hi,
        _ => unreachable!(),
    }
}

/// Whether rule `r` holds at run `at` (local day `d` in zone `z`) over `events` (the user's,
/// all of them).
fn rule_holds(r: &Rule, events: &[RefEv], at: i64, d: i64, z: usize) -> bool {
    let in_range = |day: i64| match r.range {
        Range::Last(n) => d - n < day && day <= d,
        Range::Between(n, m) => d - n <= day && day <= d - m,
        Range::All => true,
    };
    let counted: Vec<&RefEv> = events
        .iter()
        .filter(|e| e.ts <= at && in_range(e.days[z]) && matches_rule(r, e))
        .collect();
    let Some((agg, op, v, hi)) = r.agg else {
        return counted.is_empty() == r.negated;
    };
    let numbers: Vec<f64> = counted
        .iter()
        .filter_map(|e| match e.price {
            Price::Num(n) => Some(n as f64),
            _ => None,
        })
        .collect();
    let x = match agg {
        Agg::Count => counted.len() as f64,
        Agg::Sum => numbers.iter().sum(),
        _ if numbers.is_empty() => return false,
        Agg::Avg => numbers.iter().sum::<f64>() / numbers.len() as f64,
        Agg::Min => numbers.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    };
    compare(op, x, v, hi)
}

/// A decision: `(at, campaign, user, outcome, email hash)`.
type Dec = (i64, String, String, String, Option<String>);

/// The expected decisions and each campaign's number of runs.
fn reference(case: &Case) -> (Vec<Dec>, Vec<u64>) {
    let t0 = case.t0();
    let recs = stream(case);
    let last = recs.iter().map(|r| r.0).max().unwrap_or(i64::MIN);
    let zones: Vec<TimeZone> = (0..ZONES.len()).map(zone).collect();
    let mut events: Vec<Vec<RefEv>> = (0..case.users).map(|_| Vec::new()).collect();
    for e in &case.events {
        let ts = t0 + e.ts;
        events[e.user].push(RefEv {
            ts,
            days: std::array::from_fn(|z| day_number(ts, &zones[z])),
            name: e.name,
            price: e.price,
            category: e.category.map(|c| CATEGORIES[c]),
        });
    }
    // Profile records per user in stream order (the sort by ts is stable).
    let mut profs: Vec<&Prof> = case.profiles.iter().collect();
    profs.sort_by_key(|p| p.ts);
    // Every behaviour rule the engine compiles (a campaign's, and the segment's for each
    // campaign using it): an event one of them counts gives its user state.
    let all_rules: Vec<&Rule> = case
        .camps
        .iter()
        .flat_map(|c| {
            let seg = if c.segment { &case.seg.rules[..] } else { &[] };
            c.rules.iter().chain(seg)
        })
        .collect();
    let mut decs = Vec::new();
    let mut run_counts = Vec::new();
    for (ci, c) in case.camps.iter().enumerate() {
        let tz = &zones[c.zone];
        let runs = runs(case, c, last);
        run_counts.push(runs.len() as u64);
        let mut decided = vec![false; case.users];
        for &at in &runs {
            let d = day_number(at, tz);
            for user in 0..case.users {
                if decided[user] {
                    continue;
                }
                let mine = &events[user];
                // The profile as of `at`: country and email.
                let (mut country, mut has_email, mut profiled) = (None, false, false);
                for p in profs.iter().filter(|p| p.user == user && t0 + p.ts <= at) {
                    profiled = true;
                    country = Some(COUNTRIES[p.country]);
                    match p.email {
                        EmailChange::Keep => {}
                        EmailChange::Clear => has_email = false,
                        EmailChange::Set => has_email = true,
                    }
                }
                let known = profiled
                    || mine
                        .iter()
                        .any(|e| e.ts <= at && all_rules.iter().any(|r| matches_rule(r, e)));
                if !known {
                    continue;
                }
                let mut who = c.country.is_none_or(|k| country == Some(COUNTRIES[k]));
                if c.segment {
                    who &= !case.seg.countries || matches!(country, Some("DE" | "FR"));
                    who &= !case.seg.has_email || has_email;
                }
                if !who {
                    continue;
                }
                let seg: &[Rule] = if c.segment { &case.seg.rules } else { &[] };
                if !c
                    .rules
                    .iter()
                    .chain(seg)
                    .all(|r| rule_holds(r, mine, at, d, c.zone))
                {
                    continue;
                }
                decided[user] = true;
                let (outcome, ids) = if has_email {
                    ("exported", Some(hex::encode(Sha256::digest(email(user)))))
                } else {
                    ("unreachable", None)
                };
                decs.push((
                    at,
                    format!("c{ci}"),
                    format!("u{user}"),
                    outcome.to_string(),
                    ids,
                ));
            }
        }
    }
    decs.sort();
    (decs, run_counts)
}

// === the engine ===

struct Engine {
    decisions: Vec<Dec>,
    runs: Vec<u64>,
    late: u64,
    malformed: u64,
}

fn engine(config: &Config, arrival: &[(i64, String)], shards: usize) -> Engine {
    let text: String = arrival.iter().map(|r| r.1.clone() + "\n").collect();
    let mut recording = Recording::default();
    recording.add(Path::new("input.jsonl"), text.into_bytes());
    let replayed = execute(
        config,
        &recording,
        shards,
        NOW_MS,
        &mut |_, _, _, _| Ok(()),
        &mut |_| {},
    )
    .expect("in-memory replay");
    let mut decisions: Vec<Dec> = replayed
        .decisions
        .iter()
        .map(|d| {
            (
                d.at,
                config.campaigns[usize::from(d.campaign)].id.clone(),
                d.user.to_string(),
                d.outcome.as_str().to_string(),
                d.ids.email.map(hex::encode),
            )
        })
        .collect();
    decisions.sort();
    Engine {
        decisions,
        runs: replayed
            .counts
            .iter()
            .map(|c| c.runs.expect("a scheduled campaign counts its runs"))
            .collect(),
        late: replayed.totals.late_dropped,
        malformed: replayed.totals.malformed,
    }
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let text = config_text(case);
    let config = Config::parse(&text, Vec::new())
        .map_err(|e| TestCaseError::fail(format!("config refused: {e}\n{text}")))?;
    let (want, want_runs) = reference(case);
    let recs = stream(case);
    let timeline = case.t0() - HOUR..case.t0() + case.days * DAY;
    prop_assert!(recs.iter().all(|r| timeline.contains(&r.0)));
    let in_order = engine(&config, &recs, 1);
    prop_assert_eq!(in_order.late + in_order.malformed, 0);
    prop_assert_eq!(&in_order.runs, &want_runs, "runs\n{}", text);
    prop_assert_eq!(&in_order.decisions, &want, "in order, 1 shard\n{}", text);
    let arrival = shuffled(&recs, LATENESS[case.lateness].0, case.seed);
    let got = engine(&config, &arrival, case.shards);
    prop_assert_eq!(got.late, 0, "disorder within lateness is never late");
    prop_assert_eq!(&got.runs, &want_runs);
    prop_assert_eq!(
        &got.decisions,
        &want,
        "shuffled, {} shard(s)\n{}",
        case.shards,
        text
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn scheduled_runs_equal_the_reference_for_any_shards_and_bounded_disorder(case in case()) {
        check(&case)?;
    }
}

// === chosen cases ===

/// A case of `users` users, each with a profile (and an email) an hour before the first day,
/// one campaign and a segment whose only rule always holds (`count >= 0`).
fn chosen(base: usize, days: i64, users: usize, camp: Camp, events: Vec<Ev>) -> Case {
    Case {
        base,
        days,
        users,
        events,
        profiles: (0..users)
            .map(|user| Prof {
                user,
                ts: -HOUR,
                country: 0,
                email: EmailChange::Set,
            })
            .collect(),
        camps: vec![camp],
        seg: Seg {
            rules: vec![Rule {
                negated: false,
                event: 0,
                filter: None,
                agg: Some((Agg::Count, 3, 0.0, 0.0)),
                range: Range::All,
            }],
            countries: false,
            has_email: false,
        },
        lateness: 1,
        shards: 2,
        seed: 7,
    }
}

fn launched(user: usize, ts: i64) -> Ev {
    Ev {
        user,
        ts,
        name: 0,
        price: Price::Missing,
        category: None,
    }
}

/// "Launched the app today", daily at 02:30 local.
fn daily_0230(zone: usize) -> Camp {
    Camp {
        zone,
        sched: Sched::Daily {
            every: 1,
            hh: 2,
            mm: 30,
            runs: None,
        },
        start_h: 0,
        end_h: None,
        segment: true,
        country: None,
        rules: vec![Rule {
            negated: false,
            event: 0,
            filter: None,
            agg: None,
            range: Range::Last(1),
        }],
    }
}

/// A daily run in a DST gap runs at the gap's end, one in a fold once, at the first: users
/// who launched the app just before and just after those instants tell them apart.
#[test]
fn daily_runs_in_a_dst_gap_or_fold_match_the_reference() {
    // Berlin, 2027-03-28 (day 3 from 03-25): 02:00 CET → 03:00 CEST at 01:00Z, so the run is
    // at 01:00Z. u0 launched at 00:30Z (01:30 CET), u1 at 01:15Z (03:15 CEST).
    let gap = chosen(
        1,
        5,
        2,
        daily_0230(1),
        vec![
            launched(0, 3 * DAY + 30 * MIN),
            launched(1, 3 * DAY + 75 * MIN),
            launched(0, 4 * DAY + 12 * HOUR),
        ],
    );
    // Berlin, 2027-10-31 (day 4 from 10-27): 03:00 CEST → 02:00 CET at 01:00Z; 02:30 is at
    // 00:30Z and again at 01:30Z. u0 launched at 00:15Z, u1 at 01:00Z.
    let fold = chosen(
        2,
        6,
        2,
        daily_0230(1),
        vec![
            launched(0, 4 * DAY + 15 * MIN),
            launched(1, 4 * DAY + HOUR),
            launched(0, 5 * DAY + 12 * HOUR),
        ],
    );
    // New York, 2027-03-14 (day 4 from 03-10): 02:00 EST → 03:00 EDT at 07:00Z.
    let ny = chosen(
        0,
        6,
        2,
        daily_0230(2),
        vec![
            launched(0, 4 * DAY + 6 * HOUR + 45 * MIN),
            launched(1, 4 * DAY + 7 * HOUR + 15 * MIN),
            launched(0, 5 * DAY + 12 * HOUR),
        ],
    );
    for case in [gap, fold, ny] {
        let (want, _) = reference(&case);
        assert_eq!(want.len(), 1, "only u0, at the day's first 02:30: {want:?}");
        check(&case).unwrap();
    }
}

/// README: a repeat "runs from the first occurrence at or after `start`: every `every`
/// `unit`". With `every = 2` days and a start after the day's run time, the runs are on 11 and
/// 13 June (the engine once counted from the start's day: 12 and 14 June).
#[test]
fn daily_every_second_day_counts_from_the_first_run() {
    let camp = Camp {
        zone: 0,
        sched: Sched::Daily {
            every: 2,
            hh: 6,
            mm: 0,
            runs: None,
        },
        // 2027-06-10T12:00Z: the first 06:00 at or after it is on the 11th.
        start_h: 12,
        end_h: None,
        segment: true,
        country: None,
        rules: vec![Rule {
            negated: false,
            event: 0,
            filter: None,
            agg: None,
            range: Range::All,
        }],
    };
    let case = chosen(
        3,
        5,
        1,
        camp,
        vec![launched(0, 12 * HOUR), launched(0, 4 * DAY)],
    );
    check(&case).unwrap();
}
