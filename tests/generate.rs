//! `remarket generate`: determinism, counts, formats, envelopes, malformed lines, disorder bound.

use std::collections::{HashMap, HashSet};

use remarket::generate::{generate, Format, GenerateArgs, GenerateStats};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const FORMATS: [Format; 3] = [Format::Native, Format::Segment, Format::Clevertap];

fn args(format: Format, users: u64, events: u64, seed: u64) -> GenerateArgs {
    GenerateArgs {
        users,
        events,
        seed,
        format,
        start: "2026-11-02T00:00:00Z".to_owned(),
        malformed_pct: 0.0,
        disorder_ms: 2000,
        partitions: 0,
        days: 0,
    }
}

fn run(args: &GenerateArgs) -> (Vec<u8>, GenerateStats) {
    let mut out = Vec::new();
    let stats = generate(args, &mut out).expect("generate");
    (out, stats)
}

fn lines(out: &[u8]) -> Vec<&[u8]> {
    assert_eq!(out.last(), Some(&b'\n'), "output ends with a newline");
    out[..out.len() - 1].split(|&b| b == b'\n').collect()
}

/// A decoded line, reduced to what the invariants talk about.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    Event {
        user: String,
        name: String,
        ts: u64,
        props: Value,
    },
    Profile {
        user: String,
        ts: u64,
        props: Value,
    },
    Malformed,
}

impl Line {
    fn user_ts(&self) -> Option<(&str, u64)> {
        match self {
            Line::Event { user, ts, .. } | Line::Profile { user, ts, .. } => Some((user, *ts)),
            Line::Malformed => None,
        }
    }
}

/// A kcat `-J` envelope, when the line is one.
struct Envelope {
    partition: u64,
    offset: u64,
    ts: u64,
    key: String,
}

fn unwrap_envelope(v: Value) -> (Option<Envelope>, Option<Value>) {
    let Some(payload) = v.get("payload").and_then(Value::as_str) else {
        return (None, Some(v));
    };
    let env = Envelope {
        partition: v["partition"].as_u64().expect("partition"),
        offset: v["offset"].as_u64().expect("offset"),
        ts: v["ts"].as_u64().expect("kafka ts"),
        key: v["key"].as_str().expect("key").to_owned(),
    };
    assert_eq!(v["topic"], "events");
    assert_eq!(v["tstype"], "create");
    (Some(env), serde_json::from_str(payload).ok())
}

/// Decodes one line per DESIGN.md §2 (strictly: any missing or mistyped field ⇒ malformed).
fn decode(format: Format, line: &[u8]) -> (Option<Envelope>, Line) {
    assert!(!line.contains(&b'\n'));
    let Ok(v) = serde_json::from_slice::<Value>(line) else {
        return (None, Line::Malformed);
    };
    let (env, record) = unwrap_envelope(v);
    let line = record
        .and_then(|r| decode_record(format, &r))
        .unwrap_or(Line::Malformed);
    (env, line)
}

fn decode_record(format: Format, r: &Value) -> Option<Line> {
    let r = r.as_object()?;
    let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
    match format {
        Format::Native => {
            let user = text("user_id")?;
            let ts = r.get("ts")?.as_u64()?;
            let props = r.get("props")?.as_object()?.clone().into();
            if r.get("type").and_then(Value::as_str) == Some("profile") {
                return Some(Line::Profile { user, ts, props });
            }
            Some(Line::Event {
                user,
                name: text("event")?,
                ts,
                props,
            })
        }
        Format::Segment => {
            let user = text("userId")?;
            let ts = OffsetDateTime::parse(&text("timestamp")?, &Rfc3339).ok()?;
            let ts = u64::try_from(ts.unix_timestamp_nanos() / 1_000_000).ok()?;
            match text("type")?.as_str() {
                "identify" => {
                    let props = r.get("traits")?.as_object()?.clone().into();
                    Some(Line::Profile { user, ts, props })
                }
                "track" => {
                    let props = r.get("properties")?.as_object()?.clone().into();
                    Some(Line::Event {
                        user,
                        name: text("event")?,
                        ts,
                        props,
                    })
                }
                _ => None,
            }
        }
        Format::Clevertap => {
            let user = text("identity")?;
            let ts = r.get("ts")?.as_u64()? * 1000;
            if r.get("type").and_then(Value::as_str) == Some("profile") {
                let props = r.get("profileData")?.as_object()?.clone().into();
                return Some(Line::Profile { user, ts, props });
            }
            let props = r.get("evtData")?.as_object()?.clone().into();
            Some(Line::Event {
                user,
                name: text("evtName")?,
                ts,
                props,
            })
        }
    }
}

fn decode_all(format: Format, out: &[u8]) -> Vec<Line> {
    lines(out)
        .into_iter()
        .map(|l| decode(format, l).1)
        .collect()
}

fn count_events(decoded: &[Line]) -> u64 {
    decoded
        .iter()
        .filter(|l| matches!(l, Line::Event { .. }))
        .count() as u64
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    for format in FORMATS {
        let mut a = args(format, 300, 5_000, 7);
        a.malformed_pct = 5.0;
        a.partitions = 3;
        let (first, _) = run(&a);
        let (second, _) = run(&a);
        assert!(first == second, "{format:?}: two runs differ");
        a.seed = 8;
        let (other, _) = run(&a);
        assert!(first != other, "{format:?}: seeds 7 and 8 agree");
    }
}

#[test]
fn exact_event_count_and_stats() {
    for format in FORMATS {
        for (users, events) in [(1, 1), (1, 500), (50, 20_000), (10_000, 3_000), (7, 0)] {
            let (out, stats) = run(&args(format, users, events, 3));
            let decoded = decode_all(format, &out);
            assert_eq!(
                count_events(&decoded),
                events,
                "{format:?} {users}/{events}"
            );
            assert_eq!(stats.events, events);
            assert_eq!(stats.lines, decoded.len() as u64);
            let profiles = decoded
                .iter()
                .filter(|l| matches!(l, Line::Profile { .. }))
                .count();
            assert_eq!(stats.profiles, profiles as u64);
            assert!(stats.profiles >= users, "every user has an initial profile");
            assert_eq!(stats.malformed, 0);
            assert!(!decoded.contains(&Line::Malformed));
        }
    }
}

#[test]
fn records_have_the_fields_of_their_format() {
    let names = [
        "App Launched",
        "Product Viewed",
        "Added To Cart",
        "Checkout Started",
        "Charged",
    ];
    for format in FORMATS {
        let (out, _) = run(&args(format, 2_000, 20_000, 11));
        let mut seen_names = HashSet::new();
        let mut with_email = 0;
        for line in decode_all(format, &out) {
            match line {
                Line::Event {
                    user, name, props, ..
                } => {
                    assert!(user.starts_with('u') && user[1..].parse::<u64>().unwrap() < 2_000);
                    assert!(names.contains(&name.as_str()), "{name}");
                    if name == "Product Viewed" || name == "Added To Cart" {
                        assert!(props["product_id"].is_string(), "{props}");
                        assert!(props["category"].is_string());
                        let price = props["price"].as_f64().unwrap();
                        assert!((1.0..=500.0).contains(&price), "{price}");
                        assert_eq!(props["currency"], "USD");
                    }
                    if name == "Charged" {
                        assert!(props["amount"].as_f64().unwrap() >= 1.0);
                        assert!(props["items"].as_u64().unwrap() >= 1);
                    }
                    seen_names.insert(name);
                }
                Line::Profile { props, .. } => {
                    let key = |native: &'static str, clevertap: &'static str| match format {
                        Format::Clevertap => clevertap,
                        _ => native,
                    };
                    if props.get(key("email", "Email")).is_some() {
                        with_email += 1;
                    }
                    // Initial profiles carry age; updates carry one change.
                    if let Some(age) = props.get(key("age", "Age")) {
                        assert!((16..=80).contains(&age.as_u64().unwrap()));
                        assert!(props["app_version"].is_string());
                        assert!(props["plan"].is_string());
                        let country = match format {
                            Format::Segment => &props["address"]["country"],
                            Format::Native => &props["country"],
                            Format::Clevertap => &props["Country"],
                        };
                        assert!(country.is_string(), "{props}");
                        if format == Format::Clevertap {
                            assert!(props["MSG-email"].is_boolean());
                            assert!(["M", "F", "O"].contains(&props["Gender"].as_str().unwrap()));
                        } else {
                            assert!(props["email_unsubscribed"].is_boolean());
                        }
                    } else {
                        let changed = props.as_object().unwrap().len();
                        assert!(changed == 1 || changed == 3, "an update: {props}");
                    }
                }
                Line::Malformed => panic!("malformed line without --malformed-pct"),
            }
        }
        assert_eq!(
            seen_names.len(),
            names.len(),
            "{format:?}: the whole funnel appears"
        );
        assert!(
            (1_500..1_900).contains(&with_email),
            "{format:?}: ~85% have an email"
        );
    }
}

/// The valid records do not depend on the format: only their rendering does.
#[test]
fn formats_render_the_same_records() {
    let decoded: Vec<Vec<Line>> = FORMATS
        .iter()
        .map(|&f| decode_all(f, &run(&args(f, 500, 10_000, 5)).0))
        .collect();
    assert_eq!(decoded[0].len(), decoded[1].len());
    assert_eq!(decoded[0].len(), decoded[2].len());
    for ((native, segment), clevertap) in decoded[0].iter().zip(&decoded[1]).zip(&decoded[2]) {
        let (user, ts) = native.user_ts().unwrap();
        assert_eq!(segment.user_ts(), Some((user, ts)));
        assert_eq!(clevertap.user_ts(), Some((user, ts / 1000 * 1000)));
    }
}

#[test]
fn envelopes_count_offsets_and_keep_kafka_time_per_partition() {
    for format in FORMATS {
        let mut a = args(format, 1_000, 20_000, 9);
        a.partitions = 4;
        a.malformed_pct = 2.0;
        let (out, stats) = run(&a);
        let mut next_offset: HashMap<u64, u64> = HashMap::new();
        let mut last_ts: HashMap<u64, u64> = HashMap::new();
        let mut events = 0;
        for line in lines(&out) {
            let (env, record) = decode(format, line);
            let Some(env) = env else {
                // Only the invalid-UTF-8 kind is written without an envelope.
                assert!(std::str::from_utf8(line).is_err());
                continue;
            };
            assert!(env.partition < 4);
            assert_eq!(env.partition, fnv1a64(env.key.as_bytes()) % 4);
            let expected = next_offset.entry(env.partition).or_insert(0);
            assert_eq!(
                env.offset, *expected,
                "offsets are consecutive per partition"
            );
            *expected += 1;
            let last = last_ts.entry(env.partition).or_insert(0);
            assert!(env.ts >= *last, "kafka ts is non-decreasing per partition");
            *last = env.ts;
            if let Some((user, ts)) = record.user_ts() {
                assert_eq!(user, env.key);
                assert!(env.ts >= ts, "kafka ts is not before the record");
            }
            events += u64::from(matches!(record, Line::Event { .. }));
        }
        assert_eq!(events, 20_000);
        assert_eq!(next_offset.len(), 4);
        assert!(stats.malformed > 0);
    }
}

#[test]
fn malformed_lines_are_mixed_in_at_the_asked_rate() {
    for format in FORMATS {
        let mut a = args(format, 1_000, 20_000, 13);
        a.malformed_pct = 10.0;
        let (out, stats) = run(&a);
        let decoded = decode_all(format, &out);
        let malformed = decoded.iter().filter(|l| **l == Line::Malformed).count() as u64;
        assert_eq!(
            malformed, stats.malformed,
            "{format:?}: every malformed line fails to decode"
        );
        assert_eq!(count_events(&decoded), 20_000);
        let share = malformed as f64 / decoded.len() as f64;
        assert!((0.09..0.11).contains(&share), "{format:?}: {share}");
        // All kinds appear: invalid UTF-8, arrays, bad ts, truncated JSON...
        let all = lines(&out);
        assert!(all.iter().any(|l| std::str::from_utf8(l).is_err()));
        assert!(all.iter().any(|l| l.starts_with(b"[")));
        assert!(all
            .iter()
            .any(|l| l.windows(11).any(|w| w == b"\"yesterday\"")));
        assert!(all
            .iter()
            .any(|l| serde_json::from_slice::<Value>(l).is_err()));
        // The valid records are those of the clean run.
        let (clean, _) = run(&args(format, 1_000, 20_000, 13));
        let valid: Vec<Line> = decoded
            .into_iter()
            .filter(|l| *l != Line::Malformed)
            .collect();
        assert!(
            valid == decode_all(format, &clean),
            "{format:?}: malformed lines are extra"
        );
    }
}

#[test]
fn disorder_stays_within_the_bound() {
    for format in FORMATS {
        for disorder_ms in [0, 2_000, 30_000] {
            let mut a = args(format, 3_000, 30_000, 17);
            a.disorder_ms = disorder_ms;
            let (out, _) = run(&a);
            let slack = disorder_ms
                + if format == Format::Clevertap {
                    1_000
                } else {
                    0
                };
            let mut max_ts = 0;
            let mut displaced = 0;
            for line in decode_all(format, &out) {
                let (_, ts) = line.user_ts().unwrap();
                assert!(
                    ts + slack >= max_ts,
                    "{format:?} {disorder_ms}: {ts} vs {max_ts}"
                );
                displaced += u64::from(ts < max_ts);
                max_ts = max_ts.max(ts);
            }
            if disorder_ms == 0 && format != Format::Clevertap {
                assert_eq!(displaced, 0);
            } else if disorder_ms > 0 {
                assert!(
                    displaced > 0,
                    "{format:?} {disorder_ms}: some records are late"
                );
            }
        }
    }
}

#[test]
fn a_users_profile_precedes_its_first_event() {
    for format in FORMATS {
        let mut a = args(format, 5_000, 20_000, 19);
        a.partitions = 2;
        let (out, _) = run(&a);
        let mut profiled = HashSet::new();
        for line in decode_all(format, &out) {
            match line {
                Line::Profile { user, .. } => {
                    profiled.insert(user);
                }
                Line::Event { user, .. } => assert!(profiled.contains(&user), "{user}"),
                Line::Malformed => {}
            }
        }
    }
}

#[test]
fn timeline_looks_like_shopping() {
    let (out, _) = run(&args(Format::Native, 2_000, 50_000, 23));
    let decoded = decode_all(Format::Native, &out);
    let mut count: HashMap<&str, u64> = HashMap::new();
    let mut cart_at: HashMap<&str, u64> = HashMap::new();
    let (mut late_charges, mut updates) = (0, 0);
    let (mut first, mut last) = (u64::MAX, 0);
    for line in &decoded {
        match line {
            Line::Event { user, name, ts, .. } => {
                *count.entry(name).or_default() += 1;
                first = first.min(*ts);
                last = last.max(*ts);
                if name == "Added To Cart" {
                    cart_at.insert(user, *ts);
                }
                if name == "Charged" && ts - cart_at[user.as_str()] > 30 * 60_000 {
                    late_charges += 1;
                }
            }
            Line::Profile { props, .. } => updates += u64::from(props.get("age").is_none()),
            Line::Malformed => {}
        }
    }
    let carts = count["Added To Cart"] as f64;
    let sessions = count["App Launched"] as f64;
    assert!((0.3..0.5).contains(&(carts / sessions)), "{count:?}");
    assert!(
        (0.25..0.45).contains(&(count["Charged"] as f64 / carts)),
        "{count:?}"
    );
    assert!(
        late_charges > 0,
        "some purchases come after a 30-minute window"
    );
    assert!(
        (250..750).contains(&updates),
        "~1% profile updates: {updates}"
    );
    let hours = (last - first) as f64 / 3_600_000.0;
    assert!((6.0..72.0).contains(&hours), "span {hours} h");
}

#[test]
fn bad_arguments_are_rejected() {
    let mut a = args(Format::Native, 10, 10, 1);
    a.start = "yesterday".to_owned();
    assert!(generate(&a, &mut Vec::new()).is_err());
    let mut a = args(Format::Native, 10, 10, 1);
    a.malformed_pct = 101.0;
    assert!(generate(&a, &mut Vec::new()).is_err());
    assert!(generate(&args(Format::Native, 0, 10, 1), &mut Vec::new()).is_err());
    let (out, stats) = run(&args(Format::Native, 0, 0, 1));
    assert!(out.is_empty());
    assert_eq!(stats, GenerateStats::default());
}

/// `--days 30`: the events span 30 days and users come back across them (behaviour rules
/// over days have something to count).
#[test]
fn days_spreads_the_events_and_users_return_across_days() {
    let mut a = args(Format::Native, 200, 20_000, 3);
    a.days = 30;
    let (out, _) = run(&a);
    let mut days_of: HashMap<String, HashSet<i64>> = HashMap::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for line in lines(&out) {
        let v: Value = serde_json::from_slice(line).unwrap();
        if v.get("event").is_none() {
            continue;
        }
        let ts = v["ts"].as_i64().unwrap();
        lo = lo.min(ts);
        hi = hi.max(ts);
        let user = v["user_id"].as_str().unwrap().to_owned();
        days_of.entry(user).or_default().insert(ts / 86_400_000);
    }
    let span = (hi - lo) as f64 / 86_400_000.0;
    assert!((27.0..=31.0).contains(&span), "{span} days");
    let returning = days_of.values().filter(|d| d.len() >= 5).count();
    assert!(
        returning * 2 > days_of.len(),
        "{returning} of {} users on 5+ days",
        days_of.len()
    );
}
