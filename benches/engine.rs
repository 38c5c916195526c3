//! Engine benchmarks (criterion, `cargo bench --bench engine`):
//! - `decode/<format>`: bytes/s of the decoders on generated recordings;
//! - `detect/abandoned-cart`: events/s of one shard (push + advance) on the sample campaigns
//!   with 1 M users;
//! - `decode+detect/abandoned-cart`: both on one core, the figure the engine targets;
//! - after the groups: bytes of state per tracked user (net heap bytes over 1 M users).

use std::sync::Arc;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

use remarket::config::Config;
use remarket::detect::shard::Shard;
use remarket::detect::Rules;
use remarket::event::decode::Decoder;
use remarket::event::Record;
use remarket::generate::{generate, Format, GenerateArgs};

fn config(format: &str) -> Config {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
        .unwrap()
        .replace("format = \"native\"", &format!("format = \"{format}\""));
    Config::parse(&text, Vec::new()).unwrap()
}

fn recording(users: u64, events: u64, format: Format) -> Vec<u8> {
    let args = GenerateArgs {
        users,
        events,
        seed: 5,
        format,
        start: "2026-11-02T00:00:00Z".into(),
        malformed_pct: 0.0,
        disorder_ms: 2000,
        partitions: 0,
    };
    let mut out = Vec::new();
    generate(&args, &mut out).unwrap();
    out
}

fn lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    for (name, format) in [
        ("native", Format::Native),
        ("segment", Format::Segment),
        ("clevertap", Format::Clevertap),
    ] {
        let cfg = config(name);
        let data = recording(100_000, 500_000, format);
        let lines = lines(&data);
        let decoder = Decoder::new(cfg.source.format, &cfg.schema);
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut ok = 0usize;
                for l in &lines {
                    ok += decoder.decode(l).is_ok() as usize;
                }
                ok
            })
        });
    }
    g.finish();
}

const USERS: u64 = 1_000_000;
const EVENTS: u64 = 3_000_000;

fn detect(c: &mut Criterion) {
    let cfg = config("native");
    let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
    let data = recording(USERS, EVENTS, Format::Native);
    let lines = lines(&data);
    let decoder = Decoder::new(cfg.source.format, &cfg.schema);
    let records: Vec<Record> = lines
        .iter()
        .filter_map(|l| decoder.decode(l).ok())
        .filter(Record::is_relevant)
        .collect();
    let mut g = c.benchmark_group("detect");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("abandoned-cart", |b| {
        b.iter_batched(
            || records.clone(),
            |records| run_shard(&rules, records),
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("decode+detect");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("abandoned-cart", |b| {
        b.iter(|| {
            let recs = lines
                .iter()
                .filter_map(|l| decoder.decode(l).ok())
                .filter(Record::is_relevant);
            run_shard(&rules, recs)
        })
    });
    g.finish();
}

/// One shard, fed like the router does: records in rounds of 4096, a watermark after each.
fn run_shard(rules: &Arc<Rules>, records: impl IntoIterator<Item = Record>) -> usize {
    let mut shard = Shard::new(Arc::clone(rules));
    let mut max = i64::MIN;
    for (seq, r) in records.into_iter().enumerate() {
        max = max.max(r.ts);
        shard.push(seq as u64, r);
        if seq % 4096 == 4095 {
            shard.advance(max - 5001);
        }
    }
    shard.advance(max);
    shard.take_output().qualifications.len()
}

/// Bytes of shard state per tracked user: every user has a full profile (email and phone
/// hashes, the filter properties) and one open cart window with its timer. Measured as the net
/// heap bytes the shard keeps (records are decoded and dropped inside the measured region).
fn state_bytes_per_user() {
    let cfg = config("native");
    let rules = Arc::new(Rules::compile(&cfg.campaigns, &cfg.schema));
    let decoder = Decoder::new(cfg.source.format, &cfg.schema);
    let data = recording(USERS, 1, Format::Native);
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
    let net = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
        + stats.bytes_reallocated as i64;
    assert_eq!(shard.users(), users);
    println!(
        "state/tracked-user: {users} users, {:.1} bytes per user ({:.1} MiB net heap)",
        net as f64 / users as f64,
        net as f64 / f64::from(1 << 20)
    );
    std::hint::black_box(&shard);
}

criterion_group!(benches, decode, detect);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    state_bytes_per_user();
}
