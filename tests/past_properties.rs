//! Property test of past-behaviour campaigns (issue 11): detect + activate equal a plain
//! reference written here — per-event lists, no buckets, run times computed by hand — on
//! random multi-day inputs with two scheduled campaigns (one in UTC, one in Berlin time), a
//! segment, and behaviour rules of every kind of range and aggregate, for any shard count and
//! any arrival order within the allowed lateness.

use std::collections::BTreeSet;
use std::path::Path;

use proptest::prelude::*;

use remarket::app::execute;
use remarket::config::Config;
use remarket::event::recording::Recording;

const DAY: i64 = 86_400_000;
const HOUR: i64 = 3_600_000;
/// 2026-11-02T00:00:00Z (Berlin is at UTC+1 all month: summer time ended on 25 October).
const T0: i64 = 1_793_577_600_000;
/// The replay's wall clock: after every record (`engine.max_future`).
const NOW_MS: i64 = 1_893_456_000_000;
const LATENESS: i64 = 1_000;
const EVENTS: [&str; 3] = ["App Launched", "Product Viewed", "Charged"];

fn config(days: i64) -> String {
    let end = jiff::Timestamp::from_millisecond(T0 + (days + 2) * DAY).unwrap();
    format!(
        r#"
[engine]
allowed_lateness = "1s"

[[segment]]
id = "de-regulars"
where = [{{ prop = "country", op = "=", value = "DE" }}]
past = [{{ did = "App Launched", in_last = "3d" }}]

[[campaign]]
id = "daily"
name = "daily"
ad_account = "1"
start = "2026-11-02T00:00:00Z"
end = "{end}"
[campaign.schedule]
repeat = {{ every = 1, unit = "day", time = "06:00" }}
[campaign.who]
segment = "de-regulars"
past = [
  {{ did = "Product Viewed", agg = "count", op = ">=", value = 2, in_last = "5d" }},
  {{ did_not = "Charged", in_last = "2d" }},
]
[campaign.what]
audience = {{ existing = "5" }}
identifiers = ["email"]

[[campaign]]
id = "berlin"
name = "berlin"
ad_account = "1"
start = "2026-11-02T00:00:00Z"
end = "{end}"
[campaign.schedule]
timezone = "Europe/Berlin"
repeat = {{ every = 1, unit = "day", time = "20:00" }}
[campaign.who]
past = [
  {{ did = "Charged", agg = "sum", prop = "price", op = ">", value = 50, between = ["3d", "1d"] }},
  {{ did = "Product Viewed", where = [{{ prop = "price", op = ">=", value = 30 }}], in_last = "all" }},
]
[campaign.what]
audience = {{ existing = "6" }}
identifiers = ["email"]
"#
    )
}

#[derive(Debug, Clone)]
struct Ev {
    user: u8,
    ts: i64,
    kind: usize,
    price: u32,
}

/// Users (each with a profile at T0, in DE or FR), the days the events span, and the events
/// (distinct times: the arrival shuffle never reorders two records of one instant).
fn input() -> impl Strategy<Value = (Vec<bool>, i64, Vec<Ev>)> {
    (3usize..16, 3i64..10).prop_flat_map(|(users, days)| {
        let ev = (0..users as u8, 0..days * DAY, 0..3usize, 1u32..100);
        (
            proptest::collection::vec(any::<bool>(), users),
            Just(days),
            proptest::collection::vec(ev, 0..120),
        )
            .prop_map(|(de, days, evs)| {
                let evs = evs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (user, at, kind, price))| Ev {
                        user,
                        // Distinct: the index in the low digits (ms).
                        ts: T0 + HOUR + at / 1000 * 1000 + i as i64,
                        kind,
                        price,
                    })
                    .collect();
                (de, days, evs)
            })
    })
}

fn lines(de: &[bool], evs: &[Ev]) -> Vec<(i64, String)> {
    let mut out: Vec<(i64, String)> = de
        .iter()
        .enumerate()
        .map(|(u, &de)| {
            let country = if de { "DE" } else { "FR" };
            let line = format!(
                r#"{{"user_id":"u{u}","type":"profile","ts":{T0},"props":{{"email":"u{u}@example.com","country":"{country}"}}}}"#
            );
            (T0, line)
        })
        .collect();
    for e in evs {
        let line = format!(
            r#"{{"user_id":"u{}","event":"{}","ts":{},"props":{{"price":{}}}}}"#,
            e.user, EVENTS[e.kind], e.ts, e.price
        );
        out.push((e.ts, line));
    }
    out
}

/// `(at, campaign, user)` of every `exported` decision, as the engine makes them.
fn engine(
    config: &Config,
    arrival: &[(i64, String)],
    shards: usize,
) -> BTreeSet<(i64, String, String)> {
    let text: String = arrival.iter().map(|(_, l)| format!("{l}\n")).collect();
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
    assert_eq!(replayed.totals.late_dropped, 0, "disorder within lateness");
    replayed
        .decisions
        .iter()
        .map(|d| {
            assert_eq!(d.outcome.as_str(), "exported", "everyone is reachable");
            (
                d.at,
                config.campaigns[usize::from(d.campaign)].id.clone(),
                d.user.to_string(),
            )
        })
        .collect()
}

/// The reference: run times by hand (06:00 UTC; 20:00 in Berlin = 19:00 UTC in November),
/// only those a replay reaches (at or before the last record), and each rule over the raw
/// events with `ts ≤ R` on whole local days back from R's day.
fn reference(de: &[bool], days: i64, evs: &[Ev]) -> BTreeSet<(i64, String, String)> {
    let last = evs.iter().map(|e| e.ts).max().unwrap_or(T0).max(T0);
    let end = T0 + (days + 2) * DAY;
    // Days since 1970 of `ts` at UTC offset `offset` (ms).
    let day = |ts: i64, offset: i64| (ts + offset).div_euclid(DAY);
    // Events of `user` of `kind` with `ts ≤ r` on local days `lo..=hi` (offset `offset`).
    let of = |user: usize, kind: usize, r: i64, lo: i64, hi: i64, offset: i64| {
        evs.iter()
            .filter(move |e| usize::from(e.user) == user && e.kind == kind && e.ts <= r)
            .filter(move |e| (lo..=hi).contains(&day(e.ts, offset)))
    };
    let mut out = BTreeSet::new();
    let campaigns: [(&str, i64, i64); 2] = [("daily", 6 * HOUR, 0), ("berlin", 19 * HOUR, HOUR)];
    for (id, time, offset) in campaigns {
        let mut qualified = vec![false; de.len()];
        let mut r = T0 + time;
        while r < end && r <= last {
            let d = day(r, offset);
            for u in 0..de.len() {
                if qualified[u] {
                    continue;
                }
                let holds = match id {
                    "daily" => {
                        de[u]
                            && of(u, 0, r, d - 2, d, offset).count() > 0
                            && of(u, 1, r, d - 4, d, offset).count() >= 2
                            && of(u, 2, r, d - 1, d, offset).count() == 0
                    }
                    _ => {
                        let spent: u32 = of(u, 2, r, d - 3, d - 1, offset).map(|e| e.price).sum();
                        let viewed = of(u, 1, r, i64::MIN, i64::MAX, offset).any(|e| e.price >= 30);
                        spent > 50 && viewed
                    }
                };
                if holds {
                    qualified[u] = true;
                    out.insert((r, id.to_owned(), format!("u{u}")));
                }
            }
            r += DAY;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn scheduled_campaigns_equal_the_reference_for_any_shards_and_bounded_disorder(
        (de, days, evs) in input(),
        delays in proptest::collection::vec(0..=LATENESS, 200),
        shards in 1usize..4,
    ) {
        let config = Config::parse(&config(days), Vec::new()).unwrap();
        let want = reference(&de, days, &evs);
        let mut recs = lines(&de, &evs);
        recs.sort_by_key(|(ts, _)| *ts);
        prop_assert_eq!(&engine(&config, &recs, 1), &want);
        // Arrival by `ts + delay`, the delay within the allowed lateness.
        let mut shuffled: Vec<(usize, (i64, String))> = recs.into_iter().enumerate().collect();
        shuffled.sort_by_key(|(i, (ts, _))| ts + delays[i % delays.len()]);
        let shuffled: Vec<(i64, String)> = shuffled.into_iter().map(|(_, r)| r).collect();
        prop_assert_eq!(&engine(&config, &shuffled, shards), &want);
    }
}
