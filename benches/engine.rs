//! Engine benchmarks (criterion, `cargo bench --bench engine`):
//! - `decode/<format>`: bytes/s of the decoders on generated recordings;
//! - `detect/abandoned-cart`: events/s of one shard (push + advance) on the sample campaigns
//!   with 1 M users;
//! - `decode+detect/abandoned-cart`: both on one core, the figure the engine targets;
//!
//! Bytes of state per tracked user: `benches/state_size.rs`.

use std::sync::Arc;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};

/// The binary's allocator, so the figures match `remarket replay`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        format,
        ..GenerateArgs::new(users, events, 5)
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

criterion_group!(benches, decode, detect);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
