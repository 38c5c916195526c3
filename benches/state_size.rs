//! Bytes of detect state per tracked user (`cargo bench --bench state_size`): the net heap
//! bytes a shard keeps for 1 M users of the abandoned-cart workload, counted by a wrapping
//! allocator (requested bytes; the allocator's own per-chunk overhead is not included), plus
//! the shard's inline per-user struct.

use std::sync::Arc;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

use remarket::config::Config;
use remarket::detect::shard::Shard;
use remarket::detect::Rules;
use remarket::event::decode::Decoder;
use remarket::generate::{generate, GenerateArgs};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const USERS: u64 = 1_000_000;

/// The abandoned-cart campaign of the sample config alone (Who: country, age; ids: email and
/// phone), or the whole sample config (five profile properties) with `all`.
fn config(all: bool) -> Config {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
        .unwrap();
    let text = if all {
        text
    } else {
        let second = text.match_indices("[[campaign]]").nth(1).unwrap().0;
        text[..second].to_string()
    };
    Config::parse(&text, Vec::new()).unwrap()
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

/// Bytes of shard state per tracked user: every user has a full profile (email and phone
/// hashes, the filter properties) and one open cart window with its timer. Measured as the net
/// heap bytes the shard keeps (records are decoded and dropped inside the measured region).
fn state_bytes_per_user(all: bool) {
    let cfg = config(all);
    let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
    let decoder = Decoder::new(cfg.source.format, &cfg.schema);
    let args = GenerateArgs::new(USERS, 1, 5);
    let mut data = Vec::new();
    generate(&args, &mut data).unwrap();
    let mut input: Vec<(i64, Vec<u8>)> = Vec::new();
    for l in lines(&data) {
        let Ok(r) = decoder.decode(l) else { continue };
        if r.profile.is_none() {
            continue;
        }
        let cart = format!(
            r#"{{"user_id":"{}","event":"Added To Cart","ts":{},"props":{{"price":25}}}}"#,
            r.user,
            r.ts + 120_000
        );
        input.push((r.ts, l.to_vec()));
        input.push((r.ts + 120_000, cart.into_bytes()));
    }
    input.sort_by_key(|(ts, _)| *ts);
    let users = input.len() / 2;
    let region = Region::new(GLOBAL);
    let mut shard = Shard::new(rules);
    let mut max = i64::MIN;
    for (i, (ts, line)) in input.iter().enumerate() {
        max = max.max(*ts);
        shard.push(i as u64, decoder.decode(line).unwrap());
        if i % 4096 == 4095 {
            shard.advance(max - 5001);
        }
    }
    shard.advance(max);
    let stats = region.change();
    // Reallocations are already folded into the allocated/deallocated byte counts.
    let net = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    assert_eq!(shard.users(), users);
    println!(
        "state/tracked-user ({}): {users} users, {:.1} bytes per user ({:.1} MiB net heap)",
        if all {
            "all sample campaigns"
        } else {
            "abandoned-cart campaign"
        },
        net as f64 / users as f64,
        net as f64 / f64::from(1 << 20)
    );
    std::hint::black_box(&shard);
}

/// Net heap bytes of a shard holding `users` users, each with a profile and three active days
/// of `Product Viewed` and `App Launched`, under a scheduled campaign with the first `rules` of
/// two behaviour rules (its run far after the records, so nothing fires).
fn past_state_bytes(users: u64, rules: usize) -> i64 {
    let all = [
        r#"{ did = "Product Viewed", in_last = "7d" }"#,
        r#"{ did = "App Launched", agg = "count", op = ">=", value = 2, in_last = "14d" }"#,
    ];
    let past = all[..rules].join(", ");
    let text = format!(
        r#"
[[campaign]]
id = "p"
name = "P"
ad_account = "1"
start = "2026-11-01T00:00:00Z"
[campaign.schedule]
at = ["2027-06-01T00:00:00Z"]
[campaign.who]
past = [{past}]
[campaign.what]
audience = {{ existing = "9" }}
identifiers = ["email"]
"#
    );
    let cfg = Config::parse(&text, Vec::new()).unwrap();
    let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
    let decoder = Decoder::new(cfg.source.format, &cfg.schema);
    const DAY: i64 = 86_400_000;
    let t0: i64 = 1_793_577_600_000; // 2026-11-02
    let region = Region::new(GLOBAL);
    let mut shard = Shard::new(rules);
    let mut seq = 0;
    let mut push = |shard: &mut Shard, line: String| {
        seq += 1;
        shard.push(seq, decoder.decode(line.as_bytes()).unwrap());
    };
    for u in 0..users {
        let line = format!(
            r#"{{"user_id":"u{u}","type":"profile","ts":{t0},"props":{{"email":"u{u}@example.com"}}}}"#
        );
        push(&mut shard, line);
    }
    for day in 0..3 {
        for u in 0..users {
            for event in ["Product Viewed", "App Launched"] {
                let ts = t0 + day * DAY + 1000;
                let line =
                    format!(r#"{{"user_id":"u{u}","event":"{event}","ts":{ts},"props":{{}}}}"#);
                push(&mut shard, line);
            }
        }
        shard.advance(t0 + day * DAY + 2000);
    }
    let stats = region.change();
    let net = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    std::hint::black_box(&shard);
    drop(shard);
    net
}

/// Bytes per (user, behaviour rule) with three active days: the state of two rules, and of
/// one, over none.
fn past_bytes_per_user_rule() {
    const USERS: u64 = 200_000;
    let base = past_state_bytes(USERS, 0);
    for rules in [1, 2] {
        let with = past_state_bytes(USERS, rules);
        println!(
            "state/(user, rule), three active days: {:.1} bytes ({rules} rule(s), {USERS} users)",
            (with - base) as f64 / (USERS as f64 * rules as f64)
        );
    }
}

fn main() {
    state_bytes_per_user(false);
    state_bytes_per_user(true);
    past_bytes_per_user_rule();
}
