//! Preview benchmark (criterion, `cargo bench --bench preview`): one
//! `POST /campaigns/preview` evaluation over 1 M users' live state (the sample campaigns'
//! shard after a generated recording), for a campaign with two profile conditions, a custom
//! property and a behaviour rule the sample keeps — what DESIGN §9 wants "well under a
//! second". All users sit in one shard here; `run` splits them over its partitions.

use std::sync::Arc;

use criterion::{criterion_group, Criterion, Throughput};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use remarket::config::Config;
use remarket::detect::shard::Shard;
use remarket::detect::Rules;
use remarket::event::decode::Decoder;
use remarket::generate::{generate, GenerateArgs};

const USERS: u64 = 1_000_000;

fn preview(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
        .unwrap();
    let cfg = Config::parse(&text, Vec::new()).unwrap();
    let args = GenerateArgs {
        disorder_ms: 0,
        ..GenerateArgs::new(USERS, 2 * USERS, 5)
    };
    let mut data = Vec::new();
    generate(&args, &mut data).unwrap();
    let decoder = Decoder::new(cfg.source.format, &cfg.schema);
    let mut shard = Shard::new(Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema)));
    let mut max_ts = 0;
    for (seq, line) in data.split(|&b| b == b'\n').enumerate() {
        if let Ok(rec) = decoder.decode(line) {
            if rec.is_relevant() {
                max_ts = max_ts.max(rec.ts);
                shard.push(seq as u64, rec);
            }
        }
    }
    shard.advance(max_ts);
    drop(data);
    let definition = json!({
        "id": "preview-bench", "name": "Bench", "ad_account": "7178918106775994370",
        "start": "2026-11-01T00:00:00Z",
        "schedule": {"timezone": "Europe/Berlin", "repeat": {"every": 1, "unit": "day", "time": "06:00"}},
        "who": {
            "where": [
                {"prop": "country", "op": "in", "value": ["India", "Germany", "United States"]},
                {"prop": "age", "op": "between", "value": [18, 65]},
                {"prop": "plan", "op": "=", "value": "free"}
            ],
            "past": [{"did": "Product Viewed", "agg": "count", "op": ">=", "value": 1, "in_last": "7d"}],
            "control_group": 10
        },
        "what": {"audience": {"existing": "6900000000000000001"}, "identifiers": ["email", "phone"]}
    });
    let compiled = remarket::preview::compile(&cfg, &definition, Vec::new()).unwrap();
    let users = shard.users() as u64;
    let mut g = c.benchmark_group("preview");
    g.sample_size(10);
    g.throughput(Throughput::Elements(users));
    g.bench_function("1M-users", |b| {
        b.iter(|| shard.preview(&compiled.preview, compiled.in_control()))
    });
    g.finish();
    let n = shard.preview(&compiled.preview, compiled.in_control());
    eprintln!(
        "preview over {users} users: {n:?}, not kept: {:?}",
        compiled.not_kept
    );
}

criterion_group!(benches, preview);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
