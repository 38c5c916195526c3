//! A 30-day backtest of a past-behaviour campaign through the binary: "viewed a product and
//! did not buy in the last 7 days", run daily at 09:00 New York time across the end of DST,
//! plus a segment ("launched the app at least twice in the last 14 days"). The expected
//! decisions are computed here, from the generated events, by a plain reference (per-event
//! lists, no buckets), and `replay` must give exactly them for any shard count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

const CONFIG: &str = r#"
[[segment]]
id = "regulars"
past = [{ did = "App Launched", agg = "count", op = ">=", value = 2, in_last = "14d" }]

[[campaign]]
id = "viewed-not-bought"
name = "Viewed, no purchase"
ad_account = "7178918106775994370"
start = "2026-10-20T00:00:00Z"
end = "2026-11-19T00:00:00Z"
[campaign.schedule]
timezone = "America/New_York"
repeat = { every = 1, unit = "day", time = "09:00" }
[campaign.who]
segment = "regulars"
past = [
  { did = "Product Viewed", where = [{ prop = "category", op = "=", value = "shoes" }], in_last = "7d" },
  { did_not = "Charged", in_last = "7d" },
]
[campaign.what]
audience = { existing = "6900000000000000000" }
identifiers = ["email"]
"#;

const EVENTS: [&str; 3] = ["App Launched", "Product Viewed", "Charged"];

struct Ev {
    user: usize,
    ts: i64,
    kind: usize,
    shoes: bool,
}

/// 60 users over 30 days, a few events a day each, from a fixed seed.
fn events() -> Vec<Ev> {
    let mut rng = fastrand::Rng::with_seed(30);
    let start = "2026-10-20T00:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond();
    let mut out = Vec::new();
    for user in 0..60 {
        let mut ts = start + rng.i64(0..86_400_000);
        let end = start + 29 * 86_400_000;
        while ts < end {
            out.push(Ev {
                user,
                ts,
                kind: match rng.u8(..10) {
                    0..=3 => 0,
                    4..=6 => 1,
                    _ => 2,
                },
                shoes: rng.bool(),
            });
            ts += rng.i64(1_800_000..2 * 86_400_000);
        }
    }
    out.sort_by_key(|e| (e.ts, e.user));
    out
}

fn local_day(ts: i64, tz: &TimeZone) -> Date {
    Timestamp::from_millisecond(ts)
        .unwrap()
        .to_zoned(tz.clone())
        .date()
}

/// The reference: at each daily run R, a user the shard knows (any record at or before R)
/// qualifies when they viewed shoes and did not buy in the 7 local days ending with R's day,
/// and launched the app twice in 14; once per user, at the first such run.
fn expected(events: &[Ev]) -> BTreeSet<(String, i64)> {
    let tz = TimeZone::get("America/New_York").unwrap();
    let first = Date::new(2026, 10, 20).unwrap();
    let last_ts = events.last().unwrap().ts;
    let end = "2026-11-19T00:00:00Z"
        .parse::<Timestamp>()
        .unwrap()
        .as_millisecond();
    let mut decided: BTreeMap<usize, i64> = BTreeMap::new();
    let mut day = first;
    loop {
        let run = day
            .to_datetime(Time::new(9, 0, 0, 0).unwrap())
            .to_zoned(tz.clone())
            .unwrap()
            .timestamp()
            .as_millisecond();
        // Replay ends at the last record: later runs are not reached.
        if run > last_ts || run >= end {
            break;
        }
        let d = local_day(run, &tz);
        let within = |ts: i64, days: i64| {
            let ed = local_day(ts, &tz);
            let back = d.since(ed).unwrap().get_days() as i64;
            ts <= run && (0..days).contains(&back)
        };
        for user in 0..60 {
            if decided.contains_key(&user) {
                continue;
            }
            let mine = events.iter().filter(|e| e.user == user && e.ts <= run);
            let (mut known, mut viewed, mut bought, mut launches) = (false, false, false, 0);
            for e in mine {
                known = true;
                match e.kind {
                    0 if within(e.ts, 14) => launches += 1,
                    1 if e.shoes && within(e.ts, 7) => viewed = true,
                    2 if within(e.ts, 7) => bought = true,
                    _ => {}
                }
            }
            if known && viewed && !bought && launches >= 2 {
                decided.insert(user, run);
            }
        }
        day = day.tomorrow().unwrap();
    }
    decided
        .into_iter()
        .map(|(u, at)| (format!("u{u}"), at))
        .collect()
}

fn write_recording(dir: &Path, events: &[Ev]) -> std::path::PathBuf {
    let mut text = String::new();
    for u in 0..60 {
        // Profiles first, at the start: every user has an email.
        text.push_str(&format!(
            "{{\"user_id\":\"u{u}\",\"type\":\"profile\",\"ts\":1792454400000,\"props\":{{\"email\":\"u{u}@example.com\"}}}}\n"
        ));
    }
    for e in events {
        let category = if e.shoes { "shoes" } else { "books" };
        text.push_str(&format!(
            "{{\"user_id\":\"u{}\",\"event\":\"{}\",\"ts\":{},\"props\":{{\"category\":\"{category}\"}}}}\n",
            e.user, EVENTS[e.kind], e.ts
        ));
    }
    let path = dir.join("events.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_30_day_backtest_gives_the_reference_decisions_for_any_shard_count() {
    let dir = tempfile::tempdir().unwrap();
    let events = events();
    let rec = write_recording(dir.path(), &events);
    let config = dir.path().join("past.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let want = expected(&events);
    assert!(
        want.len() >= 10,
        "the scenario qualifies few users: {want:?}"
    );
    assert!(
        want.len() < 55,
        "the scenario qualifies nearly everyone: {}",
        want.len()
    );
    let mut outputs = Vec::new();
    for shards in ["1", "4"] {
        let out = dir.path().join(format!("out-{shards}"));
        let status = Command::new(env!("CARGO_BIN_EXE_remarket"))
            .args(["replay", "--quiet", "--shards", shards, "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .arg(&rec)
            .status()
            .unwrap();
        assert!(status.success());
        let decisions = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
        let got: BTreeSet<(String, i64)> = decisions
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["outcome"], "exported", "{l}");
                (
                    v["user_id"].as_str().unwrap().to_owned(),
                    v["at"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{shards} shard(s)");
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        let runs = summary["campaigns"]["viewed-not-bought"]["runs"]
            .as_u64()
            .unwrap();
        assert!((28..=30).contains(&runs), "{runs} runs");
        outputs.push(decisions);
    }
    assert_eq!(outputs[0], outputs[1], "byte-identical for any shard count");
}
