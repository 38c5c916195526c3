//! The JSON parser A/B of issue 8 (`cargo bench --bench json`): the parse remarket's decoder
//! makes of a native record, with serde_json (what the decoder uses) and with sonic-rs, on the
//! generator's lines, beside the decoder itself.
//!
//! - `two-pass/*`: the decoder's shape: the top level into raw (borrowed, unparsed) values,
//!   then the `props` object parsed again on its own;
//! - `one-pass/*`: the top level with `props` parsed in place (what a single-pass decoder
//!   would do);
//! - `decoder`: [`Decoder::decode`] itself (serde_json, two passes, typing and projection).
//!
//! sonic-rs parses a whole line faster than serde_json, but each `from_str`/`from_slice`
//! copies its input into a padded buffer first, and a two-pass decoder makes several per line
//! (see the README's figures table for what a drop-in switch measured).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use remarket::config::Config;
use remarket::event::decode::Decoder;
use remarket::generate::{generate, GenerateArgs};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Deserialize)]
struct TopSerde<'a> {
    #[serde(borrow)]
    user_id: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    ts: Option<&'a RawValue>,
    #[serde(borrow)]
    props: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TopSonic<'a> {
    #[serde(borrow)]
    user_id: Option<sonic_rs::LazyValue<'a>>,
    #[serde(borrow)]
    event: Option<sonic_rs::LazyValue<'a>>,
    #[serde(borrow)]
    ts: Option<sonic_rs::LazyValue<'a>>,
    #[serde(borrow)]
    props: Option<sonic_rs::LazyValue<'a>>,
}

#[derive(Deserialize)]
struct OnePass<'a> {
    #[serde(borrow)]
    user_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<std::borrow::Cow<'a, str>>,
    ts: Option<i64>,
    props: Option<IgnoredAny>,
}

fn lines() -> Vec<Vec<u8>> {
    let args = GenerateArgs::new(20_000, 200_000, 5);
    let mut out = Vec::new();
    generate(&args, &mut out).unwrap();
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn json(c: &mut Criterion) {
    let lines = lines();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("json");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("two-pass/serde_json", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for l in &lines {
                let t: TopSerde = serde_json::from_slice(l).unwrap();
                if let Some(p) = t.props {
                    let _: IgnoredAny = serde_json::from_str(p.get()).unwrap();
                }
                n += t.user_id.map_or(0, |u| u.get().len())
                    + t.event.map_or(0, |e| e.get().len())
                    + t.ts.map_or(0, |t| t.get().len());
            }
            n
        })
    });
    g.bench_function("two-pass/sonic-rs", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for l in &lines {
                let t: TopSonic = sonic_rs::from_slice(l).unwrap();
                if let Some(p) = &t.props {
                    let _: IgnoredAny = sonic_rs::from_str(p.as_raw_str()).unwrap();
                }
                n += t.user_id.map_or(0, |u| u.as_raw_str().len())
                    + t.event.map_or(0, |e| e.as_raw_str().len())
                    + t.ts.map_or(0, |t| t.as_raw_str().len());
            }
            n
        })
    });
    g.bench_function("one-pass/serde_json", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| {
                    let t: OnePass = serde_json::from_slice(l).unwrap();
                    t.user_id.map_or(0, |u| u.len())
                        + t.event.map_or(0, |e| e.len())
                        + usize::from(t.ts.is_some() && t.props.is_some())
                })
                .sum::<usize>()
        })
    });
    g.bench_function("one-pass/sonic-rs", |b| {
        b.iter(|| {
            lines
                .iter()
                .map(|l| {
                    let t: OnePass = sonic_rs::from_slice(l).unwrap();
                    t.user_id.map_or(0, |u| u.len())
                        + t.event.map_or(0, |e| e.len())
                        + usize::from(t.ts.is_some() && t.props.is_some())
                })
                .sum::<usize>()
        })
    });
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
        .unwrap();
    let cfg = Config::parse(&text, Vec::new()).unwrap();
    let decoder = Decoder::new(remarket::event::Format::Native, &cfg.schema);
    g.bench_function("decoder", |b| {
        b.iter(|| lines.iter().filter(|l| decoder.decode(l).is_ok()).count())
    });
    g.finish();
}

criterion_group!(benches, json);
criterion_main!(benches);
