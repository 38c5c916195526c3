//! Property tests of the engine as a whole (decode → detect → activate):
//! - the decisions equal those of a simple, obviously-correct reference implementation of
//!   DESIGN §4 written here, on random small inputs;
//! - for any number of shards;
//! - for any arrival order whose disorder stays within `allowed_lateness`.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use remarket::activate::Outcome;
use remarket::app::execute;
use remarket::config::Config;
use remarket::event::recording::Recording;

/// The wall clock the replays run at: after every generated record (`engine.max_future`).
const NOW_MS: i64 = 1_893_456_000_000; // 2030-01-01

const LATENESS: i64 = 15;

const CONFIG: &str = r#"
[engine]
allowed_lateness = "15ms"
[[campaign]]
id = "pair"
name = "pair"
ad_account = "1"
start = "1970-01-01T00:00:00.010Z"
end = "1970-01-01T00:00:00.150Z"
[campaign.trigger]
event = "A"
[campaign.trigger.inaction]
event = "B"
within = "20ms"
[campaign.who]
where = [{ prop = "country", op = "=", value = "DE" }]
control_group = 30
target_cap = 2
[campaign.what]
audience = { existing = "5" }
identifiers = ["email", "phone"]
remove_on_goal = true
[campaign.goal]
event = "G"
within = "50ms"
[[campaign]]
id = "live"
name = "live"
ad_account = "1"
start = "1970-01-01T00:00:00Z"
[campaign.trigger]
event = "A"
where = [{ prop = "price", op = ">=", value = 10 }]
[campaign.what]
audience = { existing = "6" }
identifiers = ["email"]
[campaign.goal]
event = "G"
within = "30ms"
"#;

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    A {
        price: u32,
    },
    B,
    G,
    X,
    Profile {
        country: Option<Option<&'static str>>,
        email: Option<Option<&'static str>>,
        phone: Option<bool>,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct R {
    user: u8,
    ts: i64,
    kind: Kind,
}

fn kind() -> impl Strategy<Value = Kind> {
    let opt3 = |a: &'static str, b: &'static str| {
        prop_oneof![
            Just(None),
            Just(Some(None)),
            Just(Some(Some(a))),
            Just(Some(Some(b)))
        ]
    };
    prop_oneof![
        3 => prop_oneof![Just(5u32), Just(15u32)].prop_map(|price| Kind::A { price }),
        2 => Just(Kind::B),
        1 => Just(Kind::G),
        1 => Just(Kind::X),
        2 => (opt3("DE", "FR"), opt3(" Mixed.Case@Example.COM ", "not-an-email"), proptest::option::of(any::<bool>()))
            .prop_map(|(country, email, phone)| Kind::Profile { country, email, phone }),
    ]
}

fn records() -> impl Strategy<Value = Vec<R>> {
    proptest::collection::vec((0u8..5, 0i64..200, kind()), 0..60).prop_map(|mut v| {
        // Event-time order; records with equal ts keep their generated (stream) order.
        v.sort_by_key(|r| r.1);
        v.into_iter()
            .map(|(user, ts, kind)| R { user, ts, kind })
            .collect()
    })
}

fn email_of(user: u8, raw: &str) -> String {
    raw.replace("Mixed", &format!("Mixed{user}"))
}
fn phone_of(user: u8) -> String {
    format!("+49 151 2345 67{user}")
}

fn line(r: &R) -> String {
    let u = format!("u{}", r.user);
    match &r.kind {
        Kind::A { price } => format!(
            r#"{{"user_id":"{u}","event":"A","ts":{},"props":{{"price":{price}}}}}"#,
            r.ts
        ),
        Kind::B | Kind::G | Kind::X => {
            let name = match r.kind {
                Kind::B => "B",
                Kind::G => "G",
                _ => "X",
            };
            format!(r#"{{"user_id":"{u}","event":"{name}","ts":{}}}"#, r.ts)
        }
        Kind::Profile {
            country,
            email,
            phone,
        } => {
            let mut props = Vec::new();
            match country {
                Some(Some(c)) => props.push(format!(r#""country":"{c}""#)),
                Some(None) => props.push(r#""country":null"#.to_string()),
                None => {}
            }
            match email {
                Some(Some(e)) => props.push(format!(r#""email":"{}""#, email_of(r.user, e))),
                Some(None) => props.push(r#""email":null"#.to_string()),
                None => {}
            }
            match phone {
                Some(true) => props.push(format!(r#""phone":"{}""#, phone_of(r.user))),
                Some(false) => props.push(r#""phone":null"#.to_string()),
                None => {}
            }
            format!(
                r#"{{"user_id":"{u}","type":"profile","ts":{},"props":{{{}}}}}"#,
                r.ts,
                props.join(",")
            )
        }
    }
}

fn sha_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A decision as `(at, campaign, user, outcome, email hash, phone hash)`.
type Dec = (i64, String, String, String, Option<String>, Option<String>);

/// `(pending, conversions exported, conversions control)` per campaign.
type Extra = BTreeMap<String, (u64, u64, u64)>;

// === the reference implementation ===

#[derive(Clone, Default, Debug)]
struct Profile {
    country: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

fn profile_at(recs: &[&R], at: i64) -> Profile {
    let mut p = Profile::default();
    for r in recs.iter().filter(|r| r.ts <= at) {
        if let Kind::Profile {
            country,
            email,
            phone,
        } = &r.kind
        {
            if let Some(c) = country {
                p.country = c.map(str::to_owned);
            }
            if let Some(e) = email {
                p.email = e.and_then(|e| {
                    let e = email_of(r.user, e).trim().to_lowercase();
                    e.contains('@').then(|| sha_hex(&e))
                });
            }
            if let Some(ph) = phone {
                p.phone = ph.then(|| sha_hex(&phone_of(r.user).replace(' ', "")));
            }
        }
    }
    p
}

struct Spec {
    id: &'static str,
    start: i64,
    end: i64,
    within: Option<i64>,
    min_price: u32,
    who_de: bool,
    control: u64,
    cap: Option<u64>,
    email: bool,
    phone: bool,
    goal: i64,
    remove: bool,
}

fn specs() -> [Spec; 2] {
    [
        Spec {
            id: "pair",
            start: 10,
            end: 150,
            within: Some(20),
            min_price: 0,
            who_de: true,
            control: 30,
            cap: Some(2),
            email: true,
            phone: true,
            goal: 50,
            remove: true,
        },
        Spec {
            id: "live",
            start: 0,
            end: i64::MAX,
            within: None,
            min_price: 10,
            who_de: false,
            control: 0,
            cap: None,
            email: true,
            phone: false,
            goal: 30,
            remove: false,
        },
    ]
}

fn in_control(campaign: &str, user: &str, pct: u64) -> bool {
    let d = Sha256::digest(format!("{campaign}:{user}").as_bytes());
    u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000 < pct * 100
}

fn reference(recs: &[R]) -> (Vec<Dec>, Extra) {
    let max_ts = recs.iter().map(|r| r.ts).max().unwrap_or(i64::MIN);
    let mut quals = Vec::new(); // (at, user, spec idx, email, phone)
    let mut extra: Extra = BTreeMap::new();
    for (si, s) in specs().iter().enumerate() {
        let pending = &mut extra.entry(s.id.to_string()).or_default().0;
        for user in 0..5u8 {
            let mine: Vec<&R> = recs.iter().filter(|r| r.user == user).collect();
            let within = s.within.unwrap_or(0);
            let mut triggers: Vec<i64> = mine
                .iter()
                .filter(|r| matches!(r.kind, Kind::A { price } if price >= s.min_price))
                .map(|r| r.ts)
                .filter(|&t| s.start <= t && t < s.end)
                .collect();
            triggers.dedup();
            let closed = |ta: i64| {
                s.within.is_some()
                    && mine
                        .iter()
                        .any(|r| r.kind == Kind::B && ta <= r.ts && r.ts <= ta + within)
            };
            let mut qualified = false;
            let mut open_at_end = false;
            for ta in triggers {
                if closed(ta) {
                    continue;
                }
                let at = ta + within;
                if at > max_ts {
                    open_at_end = true;
                    continue;
                }
                let p = profile_at(&mine, at);
                if s.who_de && p.country.as_deref() != Some("DE") {
                    continue;
                }
                let email = p.email.filter(|_| s.email);
                let phone = p.phone.filter(|_| s.phone);
                quals.push((at, format!("u{user}"), si, email, phone));
                qualified = true;
                break;
            }
            if !qualified && open_at_end {
                *pending += 1;
            }
        }
    }
    quals.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let mut exported = [0u64; 2];
    let mut decs: Vec<Dec> = Vec::new();
    for (at, user, si, email, phone) in quals {
        let s = &specs()[si];
        let outcome = if email.is_none() && phone.is_none() {
            "unreachable"
        } else if in_control(s.id, &user, s.control) {
            "control"
        } else if s.cap.is_some_and(|c| exported[si] >= c) {
            "capped"
        } else {
            exported[si] += 1;
            "exported"
        };
        let ids = outcome == "exported";
        decs.push((
            at,
            s.id.into(),
            user.clone(),
            outcome.into(),
            email.clone().filter(|_| ids),
            phone.clone().filter(|_| ids),
        ));
        if outcome == "exported" || outcome == "control" {
            let first_goal = recs
                .iter()
                .filter(|r| format!("u{}", r.user) == user && r.kind == Kind::G && r.ts > at)
                .map(|r| r.ts)
                .next();
            if let Some(ts) = first_goal.filter(|&ts| ts <= at + s.goal) {
                let e = extra.get_mut(s.id).unwrap();
                if outcome == "exported" {
                    e.1 += 1;
                    if s.remove {
                        decs.push((
                            ts,
                            s.id.into(),
                            user.clone(),
                            "removed".into(),
                            email,
                            phone,
                        ));
                    }
                } else {
                    e.2 += 1;
                }
            }
        }
    }
    decs.sort_by(|a, b| (a.0, &a.1, &a.2, &a.3).cmp(&(b.0, &b.1, &b.2, &b.3)));
    (decs, extra)
}

// === the engine ===

fn engine(config: &Config, arrival: &[R], shards: usize) -> (Vec<Dec>, Extra, u64) {
    let text: String = arrival.iter().map(|r| line(r) + "\n").collect();
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
    let decs = replayed
        .decisions
        .iter()
        .map(|d| {
            (
                d.at,
                config.campaigns[usize::from(d.campaign)].id.clone(),
                d.user.to_string(),
                d.outcome.as_str().to_string(),
                d.ids.email.map(hex::encode),
                d.ids.phone.map(hex::encode),
            )
        })
        .collect();
    let extra = config
        .campaigns
        .iter()
        .zip(&replayed.counts)
        .map(|(c, n)| {
            (
                c.id.clone(),
                (n.pending, n.conversions.exported, n.conversions.control),
            )
        })
        .collect();
    assert!(replayed
        .decisions
        .iter()
        .all(|d| d.outcome != Outcome::Removed || !d.ids.is_empty()));
    (decs, extra, replayed.totals.late_dropped)
}

/// An arrival order whose disorder stays within the allowed lateness: each distinct ts gets a
/// delay in `0..=LATENESS`; records arrive by `ts + delay` (stable, so records with the same ts
/// keep their stream order).
fn arrival(recs: &[R], delays: &[i64]) -> Vec<R> {
    let mut v = recs.to_vec();
    v.sort_by_key(|r| r.ts + delays[r.ts as usize]);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn engine_equals_reference_for_any_shards_and_bounded_disorder(
        recs in records(),
        delays in proptest::collection::vec(0..=LATENESS, 200),
        shards in 1usize..4,
    ) {
        let config = Config::parse(CONFIG, Vec::new()).unwrap();
        let (want, want_extra) = reference(&recs);
        let (in_order, extra, late) = engine(&config, &recs, 1);
        prop_assert_eq!(late, 0);
        prop_assert_eq!(&in_order, &want);
        prop_assert_eq!(&extra, &want_extra);
        let shuffled = arrival(&recs, &delays);
        let (got, got_extra, late) = engine(&config, &shuffled, shards);
        prop_assert_eq!(late, 0, "disorder within lateness is never late");
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&got_extra, &want_extra);
    }
}

#[test]
fn disorder_beyond_lateness_is_dropped_and_counted() {
    let config = Config::parse(CONFIG, Vec::new()).unwrap();
    let recs = vec![
        R {
            user: 0,
            ts: 100,
            kind: Kind::X,
        },
        R {
            user: 1,
            ts: 100 - LATENESS,
            kind: Kind::X,
        },
        R {
            user: 1,
            ts: 100 - LATENESS - 1,
            kind: Kind::X,
        },
    ];
    let (_, _, late) = engine(&config, &recs, 2);
    assert_eq!(late, 1, "ts == max − lateness − 1 is the watermark: late");
}

// === no input panics ===

fn json_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-zA-Z0-9 @.+\\-_\"\\\\é]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"2026-11-28T10:00:00Z\"".to_string()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let keys = prop_oneof![
            Just("user_id"),
            Just("userId"),
            Just("identity"),
            Just("event"),
            Just("evtName"),
            Just("type"),
            Just("ts"),
            Just("timestamp"),
            Just("props"),
            Just("properties"),
            Just("traits"),
            Just("context"),
            Just("evtData"),
            Just("profileData"),
            Just("email"),
            Just("phone"),
            Just("price"),
            Just("country"),
            Just("address"),
            Just("app"),
            Just("version"),
            Just("payload"),
            Just("partition"),
            Just("Email"),
            Just("Gender"),
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec((keys, inner), 0..6).prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes and arbitrary JSON shapes, in every format: a replay never panics, and
    /// every line is either a record or a dead letter.
    #[test]
    fn no_input_panics(
        lines in proptest::collection::vec(
            prop_oneof![
                json_value().prop_map(String::into_bytes),
                proptest::collection::vec(any::<u8>(), 0..40),
            ],
            0..20,
        ),
        format in prop_oneof![Just("native"), Just("segment"), Just("clevertap")],
    ) {
        let cfg = CONFIG.replace("[engine]", &format!("[source]\nformat = \"{format}\"\n[engine]"));
        let config = Config::parse(&cfg, Vec::new()).unwrap();
        let mut data = Vec::new();
        let mut nonblank = 0u64;
        for l in &lines {
            let l: Vec<u8> = l.iter().copied().filter(|&b| b != b'\n').collect();
            let trimmed = l.strip_suffix(b"\r").unwrap_or(&l);
            nonblank += u64::from(!trimmed.iter().all(u8::is_ascii_whitespace));
            data.extend_from_slice(&l);
            data.push(b'\n');
        }
        let mut recording = Recording::default();
        recording.add(Path::new("fuzz.jsonl"), data);
        let mut dead = 0u64;
        let r = execute(&config, &recording, 2, NOW_MS, &mut |_, _, _, _| { dead += 1; Ok(()) }, &mut |_| {})
            .unwrap();
        prop_assert_eq!(r.totals.records + r.totals.malformed, nonblank);
        prop_assert_eq!(dead, r.totals.malformed + r.totals.late_dropped);
    }
}

// === restore mid-stream ===

use remarket::detect::shard::Shard;
use remarket::detect::snapshot::UserSnapshot;
use remarket::detect::{Output, Rules};
use remarket::event::decode::Decoder;

/// `(campaign, user, time)` of qualifications and of conversions, sorted.
type Emitted = (Vec<(u16, String, i64)>, Vec<(u16, String, i64)>);

fn outputs(o: &Output) -> Emitted {
    let mut q: Vec<_> = o
        .qualifications
        .iter()
        .map(|q| (q.campaign, q.user.to_string(), q.at))
        .collect();
    let mut c: Vec<_> = o
        .conversions
        .iter()
        .map(|c| (c.campaign, c.user.to_string(), c.ts))
        .collect();
    q.sort();
    c.sort();
    (q, c)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A shard snapshotted at a watermark, serialised, and restored into a fresh shard that
    /// takes the rest of the input, emits exactly what one uninterrupted shard emits.
    #[test]
    fn restore_mid_stream_equals_uninterrupted(recs in records(), cut in 0i64..200) {
        let config = Config::parse(CONFIG, Vec::new()).unwrap();
        let rules = std::sync::Arc::new(Rules::compile(&config.campaigns, &config.schema));
        let decoder = Decoder::new(config.source.format, &config.schema);
        let decoded: Vec<_> = recs
            .iter()
            .map(|r| decoder.decode(line(r).as_bytes()).unwrap())
            .collect();
        let end = recs.iter().map(|r| r.ts).max().unwrap_or(0).max(cut);

        let mut whole = Shard::new(rules.clone());
        for (i, r) in decoded.iter().enumerate() {
            whole.push(i as u64, r.clone());
        }
        whole.advance(end);
        let want = outputs(&whole.take_output());

        let mut first = Shard::new(rules.clone());
        for (i, r) in decoded.iter().enumerate().filter(|(_, r)| r.ts <= cut) {
            first.push(i as u64, r.clone());
        }
        first.advance(cut);
        let mut got = first.take_output();
        let text = serde_json::to_string(&first.snapshot()).unwrap();
        let snaps: Vec<UserSnapshot> = serde_json::from_str(&text).unwrap();
        let mut second = Shard::new(rules);
        second.restore(&snaps, cut);
        for (i, r) in decoded.iter().enumerate().filter(|(_, r)| r.ts > cut) {
            second.push(i as u64, r.clone());
        }
        second.advance(end);
        let rest = second.take_output();
        got.qualifications.extend(rest.qualifications);
        got.conversions.extend(rest.conversions);
        prop_assert_eq!(outputs(&got), want);
        prop_assert_eq!(second.snapshot(), whole.snapshot());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The changelog bytes written straight from live state are those of the snapshot
    /// encoding, for every changed user (and `None` exactly for users left without state).
    #[test]
    fn encoding_live_state_equals_encoding_its_snapshot(recs in records(), cut in 0i64..200) {
        let config = Config::parse(CONFIG, Vec::new()).unwrap();
        let rules = std::sync::Arc::new(Rules::compile(&config.campaigns, &config.schema));
        let decoder = Decoder::new(config.source.format, &config.schema);
        let run = || {
            let mut shard = Shard::new(rules.clone());
            shard.track_changes();
            for (i, r) in recs.iter().enumerate() {
                shard.push(i as u64, decoder.decode(line(r).as_bytes()).unwrap());
            }
            shard.advance(cut);
            shard
        };
        let want: Vec<(String, Option<Vec<u8>>)> = run()
            .take_dirty()
            .into_iter()
            .map(|(user, snap)| {
                let bytes = snap.map(|s| {
                    let mut out = Vec::new();
                    s.encode(&mut out);
                    out
                });
                (user.to_string(), bytes)
            })
            .collect();
        let mut got = Vec::new();
        let mut original = run();
        original.drain_dirty_encoded(|user, bytes| got.push((user.to_string(), bytes.map(<[u8]>::to_vec))));
        prop_assert_eq!(&got, &want);

        // Restored straight from those bytes: the same state as the shard that wrote them.
        let mut back = Shard::new(rules.clone());
        let values = got.iter().filter_map(|(u, b)| Some((u.as_str(), b.as_deref()?)));
        let (restored, undecodable) = back.restore_encoded(values, cut);
        prop_assert_eq!(undecodable, 0);
        prop_assert_eq!(restored, got.iter().filter(|(_, b)| b.is_some()).count());
        prop_assert_eq!(back.snapshot(), original.snapshot());
        prop_assert_eq!(back.watermark(), original.watermark());
    }
}
