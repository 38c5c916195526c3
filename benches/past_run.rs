//! A scheduled run over 1 M users (`cargo bench --bench past_run`): one shard knows 1 M users,
//! each with a profile and three days of events under two behaviour rules; the time is the
//! `advance` that executes the run (every user evaluated), per core — a shard is one thread.
//! Printed, not asserted (performance is measured, not tested).

use std::sync::Arc;
use tokio::time::Instant;

use remarket::config::Config;
use remarket::detect::shard::Shard;
use remarket::detect::Rules;
use remarket::event::decode::Decoder;

const USERS: u64 = 1_000_000;
const DAY: i64 = 86_400_000;
/// 2026-11-02T00:00:00Z.
const T0: i64 = 1_793_577_600_000;

fn main() {
    let text = r#"
[[campaign]]
id = "p"
name = "P"
ad_account = "1"
start = "2026-11-01T00:00:00Z"
[campaign.schedule]
at = ["2026-11-05T06:00:00Z"]
[campaign.who]
where = [{ prop = "country", op = "=", value = "DE" }]
past = [
  { did = "Product Viewed", agg = "count", op = ">=", value = 2, in_last = "7d" },
  { did_not = "Charged", in_last = "7d" },
]
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
"#;
    let cfg = Config::parse(text, Vec::new()).unwrap();
    let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
    let decoder = Decoder::new(cfg.source.format, &cfg.schema);
    let mut shard = Shard::new(rules);
    let mut seq = 0;
    let mut push = |shard: &mut Shard, line: String| {
        seq += 1;
        shard.push(seq, decoder.decode(line.as_bytes()).unwrap());
    };
    for u in 0..USERS {
        let country = if u.is_multiple_of(3) { "DE" } else { "FR" };
        let line = format!(
            r#"{{"user_id":"u{u}","type":"profile","ts":{T0},"props":{{"email":"u{u}@example.com","country":"{country}"}}}}"#
        );
        push(&mut shard, line);
    }
    for day in 0..3 {
        for u in 0..USERS {
            let ts = T0 + day * DAY + 1000;
            let event = if (u + day as u64).is_multiple_of(5) {
                "Charged"
            } else {
                "Product Viewed"
            };
            push(
                &mut shard,
                format!(r#"{{"user_id":"u{u}","event":"{event}","ts":{ts}}}"#),
            );
        }
        shard.advance(T0 + day * DAY + 2000);
    }
    let run = T0 + 3 * DAY + 6 * 3_600_000;
    shard.advance(run - 1);
    let _ = shard.take_output();
    let started = Instant::now();
    shard.advance(run);
    let took = started.elapsed();
    let out = shard.take_output();
    assert_eq!(out.runs.len(), 1, "the run executed");
    println!(
        "past/run over {USERS} users: {:.3} s on one core, {} qualified",
        took.as_secs_f64(),
        out.qualifications.len()
    );
}
