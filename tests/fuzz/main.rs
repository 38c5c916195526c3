//! Fuzzing inside `cargo test`: the toolchain is stable Rust (`cargo fuzz` needs nightly), so
//! the targets are proptest properties over structured-but-mutated inputs, plus a committed
//! corpus (`tests/fuzz-corpus/`) replayed every time.
//!
//! Targets, one per decoder and one for the config loader:
//! - `native`, `segment`, `clevertap`: valid records of the format (each must decode to its
//!   user and time), mutated — fields retyped, repeated, removed or nested 100,000 deep; edge
//!   numbers and strings; truncated; bytes flipped or inserted (invalid UTF-8, BOM, NUL). Every
//!   line decodes or gets a decode reason, the same one each time; a line that is not UTF-8
//!   is `invalid_utf8`. Whole files go through the replay: every line is counted once, as a
//!   record or a malformed line, and every malformed or late one is dead-lettered.
//! - `kcat`: files of `kcat -C -J` envelopes (several topics and partitions, payloads
//!   escaped as kcat writes them, raw non-UTF-8 bytes included) and plain lines, mutated the
//!   same way; every non-blank line lands in one stream, the streaming reader yields exactly
//!   the in-memory recording's streams and lines, and the replay counts every line.
//! - `config`: the config with every key, with values of the wrong type put anywhere, unknown
//!   keys, any values, removed keys, copied campaigns, environment overrides and broken text.
//!   Nothing panics; each wrong type and unknown key is a problem at its path, named with its
//!   campaign; a config that is accepted holds only values within their documented ranges and
//!   builds a rate limiter and compiled rules.
//!
//! Time: the default case counts take about 20 s in a debug build on two cores. More:
//! `PROPTEST_CASES=20000 cargo test --release --test fuzz` (every target runs that many).
//! A failure is saved by proptest (`tests/proptest-regressions/main.txt`) and replayed first
//! next time; add its minimal input to the corpus too.

mod config;
mod json;
mod records;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;

use remarket::app::execute;
use remarket::config::{Config, Format};
use remarket::event::decode::{Decoder, Malformed, MAX_RECORD_BYTES};
use remarket::event::recording::stream::RecordingStream;
use remarket::event::recording::{Lines, Recording};
use remarket::event::Record;

use json::{Mutation, J};

/// The wall clock replays run at (`engine.max_future`): 2030-01-01.
const NOW_MS: i64 = 1_893_456_000_000;

/// proptest's configuration with `default` cases, unless `PROPTEST_CASES` says otherwise.
fn cases(default: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c
}

const FORMATS: [Format; 3] = [Format::Native, Format::Segment, Format::Clevertap];

/// The decoder targets' config for `format`, parsed once.
fn config_for(format: Format) -> &'static Config {
    static CONFIGS: OnceLock<Vec<Config>> = OnceLock::new();
    let all = CONFIGS.get_or_init(|| {
        FORMATS
            .iter()
            .map(|f| Config::parse(&records::config(*f), Vec::new()).expect("a valid config"))
            .collect()
    });
    &all[FORMATS.iter().position(|f| *f == format).expect("a format")]
}

// === decoders ===

/// Decodes `line` as the replay would, checking what holds for any input.
fn check_line(d: &Decoder, line: &[u8], kafka_ts: Option<i64>) -> Result<Record, Malformed> {
    let got = d.decode_at(line, kafka_ts);
    assert_eq!(
        got,
        d.decode_at(line, kafka_ts),
        "the same line, the same result"
    );
    match &got {
        Err(r) => assert!(
            !matches!(r, Malformed::Late | Malformed::FutureTs),
            "{r} is not a decoder's reason"
        ),
        Ok(rec) => assert!(!rec.user.is_empty(), "a record has a user"),
    }
    if line.len() > MAX_RECORD_BYTES {
        assert_eq!(got, Err(Malformed::Oversize));
    } else if std::str::from_utf8(line).is_err() {
        assert_eq!(got, Err(Malformed::InvalidUtf8));
    }
    got
}

fn decoder_case(format: Format, seed: &records::Seed, mutations: &[Mutation]) {
    let d = Decoder::new(format, &config_for(format).schema);
    let valid = seed.record.render();
    let rec = d
        .decode(valid.as_bytes())
        .unwrap_or_else(|r| panic!("the seed {valid} must decode, not {r}"));
    assert_eq!(
        (rec.user.as_str(), rec.ts),
        (seed.user.as_str(), seed.ts_ms)
    );
    let line = json::mutate(&seed.record, mutations);
    let _ = check_line(&d, &line, None);
    let _ = check_line(&d, &line, Some(seed.ts_ms));
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(json::mutation(), 0..4)
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn native_lines_decode_or_get_a_reason(
        seed in records::seed(Format::Native),
        m in mutations(),
    ) {
        decoder_case(Format::Native, &seed, &m);
    }

    #[test]
    fn segment_lines_decode_or_get_a_reason(
        seed in records::seed(Format::Segment),
        m in mutations(),
    ) {
        decoder_case(Format::Segment, &seed, &m);
    }

    #[test]
    fn clevertap_lines_decode_or_get_a_reason(
        seed in records::seed(Format::Clevertap),
        m in mutations(),
    ) {
        decoder_case(Format::Clevertap, &seed, &m);
    }
}

// === recordings and the replay ===

/// Lines the readers keep: all but blank ones (`\r\n` ends a line too).
fn non_blank_lines(data: &[u8]) -> u64 {
    data.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count() as u64
}

/// Replays `files` through the engine: every line is counted once and every malformed or
/// late line is dead-lettered.
fn check_replay(config: &Config, files: &[(PathBuf, Vec<u8>)]) {
    let mut recording = Recording::default();
    for (path, data) in files {
        recording.add(path, data.clone());
    }
    let lines: u64 = files.iter().map(|(_, d)| non_blank_lines(d)).sum();
    let mut dead = 0u64;
    let replayed = execute(
        config,
        &recording,
        2,
        NOW_MS,
        &mut |_, _, _, _| {
            dead += 1;
            Ok(())
        },
        &mut |_| {},
    )
    .expect("an in-memory replay");
    let t = &replayed.totals;
    assert_eq!(t.lines(), lines, "every line counted once: {t:?}");
    assert_eq!(dead, t.malformed + t.late_dropped, "{t:?}");
    assert_eq!(t.events + t.profiles + t.other, t.records, "{t:?}");
}

/// A stream's name and its lines as `(raw, line number, kafka ts, record)`.
type Drained = (
    String,
    Vec<(Vec<u8>, u64, Option<i64>, Result<Vec<u8>, Malformed>)>,
);

fn drain(l: &mut dyn Lines) -> Vec<Drained> {
    (0..l.streams())
        .map(|s| {
            let mut lines = Vec::new();
            while let Some(line) = l.front(s).expect("readable") {
                let record = line.record.as_ref().map(|r| r.to_vec()).map_err(|e| *e);
                lines.push((line.raw.to_vec(), line.origin.line, line.kafka_ts, record));
                l.pop(s);
            }
            (l.name(s).to_owned(), lines)
        })
        .collect()
}

/// What holds for any recorded file: each non-blank line is in one stream, the streaming
/// reader sees what the in-memory one does, each record decodes or gets a reason.
fn check_recording(data: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("topic.jsonl");
    std::fs::write(&path, data).expect("written");
    let mut recording = Recording::default();
    recording.add(&path, data.to_vec());
    let want = drain(&mut recording.cursor());
    let count: usize = want.iter().map(|(_, l)| l.len()).sum();
    assert_eq!(
        count as u64,
        non_blank_lines(data),
        "every line in one stream"
    );
    let mut names: Vec<&String> = want.iter().map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), want.len(), "stream names are distinct");
    // A file starting with gzip's or zstd's magic is read decompressed by the stream.
    if !(data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])) {
        let mut streamed = RecordingStream::open(&[path]).expect("opens");
        assert_eq!(drain(&mut streamed), want, "streamed as in memory");
    }
    let config = config_for(Format::Native);
    let d = Decoder::new(Format::Native, &config.schema);
    for (_, lines) in &want {
        for (_, _, kafka_ts, record) in lines {
            match record {
                Ok(bytes) => {
                    let _ = check_line(&d, bytes, *kafka_ts);
                }
                Err(r) => assert!(!matches!(r, Malformed::Late | Malformed::FutureTs), "{r}"),
            }
        }
    }
    check_replay(config, &[(PathBuf::from("topic.jsonl"), data.to_vec())]);
}

/// kcat's escaping of a payload: JSON string escapes, other bytes as they are (a payload
/// that is not UTF-8 makes a line that is not).
fn kcat_escape(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in payload {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

/// One line of a recorded file.
#[derive(Debug, Clone)]
enum FileLine {
    Envelope {
        topic: usize,
        partition: i64,
        ts: i64,
        seed: records::Seed,
        payload: Vec<Mutation>,
        envelope: Vec<Mutation>,
    },
    Plain(records::Seed, Vec<Mutation>),
    Blank(&'static str),
}

const PAYLOAD: &str = "\u{1}payload\u{1}";

impl FileLine {
    fn bytes(&self) -> Vec<u8> {
        match self {
            FileLine::Envelope {
                topic,
                partition,
                ts,
                seed,
                payload,
                envelope,
            } => {
                let env = J::obj(vec![
                    ("topic", J::str(["events", "profiles", ""][topic % 3])),
                    ("partition", J::num(partition)),
                    ("offset", J::num(0)),
                    ("tstype", J::str("create")),
                    ("ts", J::num(ts)),
                    ("broker", J::num(0)),
                    ("key", J::str(&seed.user)),
                    ("payload", J::str(PAYLOAD)),
                ]);
                let text = json::mutate_tree(&env, envelope).render();
                let placeholder = serde_json::to_string(PAYLOAD).expect("a string");
                let record = kcat_escape(&json::mutate(&seed.record, payload));
                let mut bytes = text.into_bytes();
                if let Some(at) = memchr::memmem::find(&bytes, placeholder.as_bytes()) {
                    bytes.splice(at..at + placeholder.len(), record);
                }
                json::mutate_bytes(bytes, envelope)
            }
            FileLine::Plain(seed, m) => json::mutate(&seed.record, m),
            FileLine::Blank(s) => s.as_bytes().to_vec(),
        }
    }
}

/// A line of a recorded file: mostly envelopes (topics `events`, `profiles` and none;
/// partitions -1 to 2; timestamps over a day), some plain lines, some blank ones.
fn file_line() -> impl Strategy<Value = FileLine> {
    let few = || proptest::collection::vec(json::mutation(), 0..2);
    let day = 1_793_491_200_000i64..1_793_577_600_000;
    let envelope = (
        0usize..3,
        -1i64..3,
        day,
        records::seed(Format::Native),
        few(),
        few(),
    );
    prop_oneof![
        6 => envelope.prop_map(|(topic, partition, ts, seed, payload, envelope)| {
            FileLine::Envelope { topic, partition, ts, seed, payload, envelope }
        }),
        2 => (records::seed(Format::Native), few()).prop_map(|(s, m)| FileLine::Plain(s, m)),
        1 => proptest::sample::select(&["", " ", "\t", "\r"][..]).prop_map(FileLine::Blank),
    ]
}

/// A recorded file: lines ending in `\n` or `\r\n`, the last one with or without.
fn file() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::collection::vec((file_line(), any::<bool>()), 1..12),
        any::<bool>(),
    )
        .prop_map(|(lines, last_newline)| {
            let mut out = Vec::new();
            for (i, (line, crlf)) in lines.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(if *crlf { b"\r\n" } else { b"\n" });
                }
                out.extend(line.bytes());
            }
            if last_newline {
                out.push(b'\n');
            }
            out
        })
}

proptest! {
    #![proptest_config(cases(250))]

    #[test]
    fn kcat_files_keep_every_line_in_one_stream_and_replay_counts_them(data in file()) {
        check_recording(&data);
    }

    #[test]
    fn replay_counts_every_mutated_line_once(
        (format, lines) in proptest::sample::select(&FORMATS[..]).prop_flat_map(|f| {
            let line = (
                records::seed(f),
                prop_oneof![
                    2 => Just(Vec::new()),
                    1 => proptest::collection::vec(json::mutation(), 1..3),
                ],
            );
            (Just(f), proptest::collection::vec(line, 1..30))
        }),
    ) {
        let mut data = Vec::new();
        for (seed, m) in &lines {
            data.extend(json::mutate(&seed.record, m));
            data.push(b'\n');
        }
        check_replay(config_for(format), &[(PathBuf::from("in.jsonl"), data)]);
    }
}

// === config ===

/// What holds for any config text: no panic, the same problems each time, problems name a
/// field and a campaign that exists; an accepted config is within every documented range.
fn check_config(
    text: &str,
    env: &[(String, String)],
) -> Result<Config, Vec<(Option<String>, String, String)>> {
    let result = Config::parse(text, env.to_vec());
    let again = Config::parse(text, env.to_vec());
    match (&result, again) {
        (Err(p), Err(q)) => assert_eq!(p, &q, "the same problems each time"),
        (Ok(_), Ok(_)) => {}
        _ => panic!("parsed differently twice"),
    }
    match result {
        Ok(c) => {
            check_accepted(&c);
            Ok(c)
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            let shown = problems.to_string();
            assert!(shown.starts_with(&format!("{} configuration problem(s):", problems.len())));
            for p in &problems.0 {
                assert!(!p.field.is_empty() && !p.message.is_empty(), "{p:?}");
            }
            Err(problems
                .0
                .into_iter()
                .map(|p| (p.campaign, p.field, p.message))
                .collect())
        }
    }
}

/// An accepted config holds only values the engine can run with.
fn check_accepted(c: &Config) {
    use remarket::config::{ALLOWED_LATENESS, IDLE_TIMEOUT, MAX_FUTURE, QPS, SHORT};
    assert!(QPS.contains(&c.tiktok.qps), "{}", c.tiktok.qps);
    assert!((1..=10_000).contains(&c.tiktok.max_batch));
    for (range, d) in [
        (ALLOWED_LATENESS, &c.engine.allowed_lateness),
        (IDLE_TIMEOUT, &c.engine.idle_timeout),
        (MAX_FUTURE, &c.engine.max_future),
        (SHORT, &c.tiktok.linger),
        (SHORT, &c.tiktok.drain_grace),
    ] {
        assert!(range.check(d).is_ok(), "{d:?}");
    }
    assert!(!c.campaigns.is_empty());
    let mut ids: Vec<&str> = c.campaigns.iter().map(|k| k.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), c.campaigns.len(), "ids are unique");
    for k in &c.campaigns {
        assert!(k.who.control_group <= 99 && k.start < k.end);
        assert!(
            k.trigger.is_some() != k.schedule.is_some(),
            "a trigger or a schedule"
        );
        if let Some(t) = &k.trigger {
            if let Some(i) = &t.inaction {
                assert_ne!(i.event, t.event);
                assert!(remarket::campaign::WITHIN.check(&i.within).is_ok());
            }
        }
        if let remarket::campaign::Audience::New { name, .. } = &k.what.audience {
            assert!(name.chars().count() <= remarket::campaign::MAX_AUDIENCE_NAME_CHARS);
        }
    }
    // What the sink and the engine build from it.
    let _ = remarket::sink::ratelimit::RateLimiter::new(c.tiktok.qps);
    let _ = remarket::detect::Rules::compile(&c.campaigns, &c.schema);
}

/// The config tree `FULL` with `mutations`, as TOML text and as that text parses back.
fn mutated_config(mutations: &[config::Mutation]) -> Option<(String, toml::Table)> {
    let keys = config::typed_keys();
    let mut root: toml::Table = config::FULL.parse().expect("FULL parses");
    for m in mutations {
        match m {
            config::Mutation::WrongType(k, v) => {
                let (path, kind) = &keys[k % keys.len()];
                if !config::fits(*kind, v) {
                    config::put(&mut root, path, Some(v.clone()));
                }
            }
            config::Mutation::Unknown(k) => {
                let (path, kind) = &keys[k % keys.len()];
                let at = if *kind == config::Kind::Table && path != "kafka.client" {
                    format!("{path}.zz_unknown")
                } else {
                    "zz_unknown".to_owned()
                };
                config::put(&mut root, &at, Some(toml::Value::Integer(1)));
            }
            config::Mutation::Set(k, v) => {
                config::put(&mut root, &keys[k % keys.len()].0, Some(v.clone()));
            }
            config::Mutation::Remove(k) => {
                config::put(&mut root, &keys[k % keys.len()].0, None);
            }
            config::Mutation::CopyCampaign(second) => {
                let copy =
                    config::get(&root, &format!("campaign[{}]", usize::from(*second))).cloned();
                if let (Some(c), Some(toml::Value::Array(a))) = (copy, root.get_mut("campaign")) {
                    a.push(c);
                }
            }
        }
    }
    // Some trees have no TOML text (an array of tables beside plain values): skipped.
    let text = toml::to_string(&root).ok()?;
    let back: toml::Table = text.parse().ok()?;
    Some((text, back))
}

/// The problems `tree` must have: one at each typed key holding a value of another type, and
/// one at each `zz_unknown` key.
fn expected_problems(tree: &toml::Table) -> Vec<(Option<String>, String)> {
    let mut want = Vec::new();
    let mut typed = config::typed_keys();
    let copies = tree
        .get("campaign")
        .and_then(toml::Value::as_array)
        .map_or(0, Vec::len);
    // Copies of a campaign have its keys; a key's type does not depend on the campaign.
    let campaign_keys: Vec<(String, config::Kind)> = typed
        .iter()
        .filter_map(|(p, k)| {
            let rest = p
                .strip_prefix("campaign[0]")
                .or(p.strip_prefix("campaign[1]"))?;
            Some((rest.to_owned(), *k))
        })
        .collect();
    for i in 2..copies {
        typed.extend(
            campaign_keys
                .iter()
                .map(|(rest, k)| (format!("campaign[{i}]{rest}"), *k)),
        );
    }
    for (path, kind) in &typed {
        if let Some(v) = config::get(tree, path) {
            if !config::fits(*kind, v) {
                want.push(config::reported_at(tree, path));
            }
        }
        if *kind == config::Kind::Table && path != "kafka.client" {
            let unknown = format!("{path}.zz_unknown");
            if config::get(tree, path).is_some_and(toml::Value::is_table)
                && config::get(tree, &unknown).is_some()
            {
                want.push(config::reported_at(tree, &unknown));
            }
        }
    }
    if tree.contains_key("zz_unknown") {
        want.push((None, "zz_unknown".to_owned()));
    }
    want
}

/// [`config::FULL`] with `mutations`: every expected problem is reported, and only campaigns
/// that exist are named.
fn check_mutated_config(mutations: &[config::Mutation]) {
    let Some((text, tree)) = mutated_config(mutations) else {
        return;
    };
    let want = expected_problems(&tree);
    let got = match check_config(&text, &[]) {
        Ok(_) => {
            assert!(
                want.is_empty(),
                "accepted, but {want:?} are wrong in\n{text}"
            );
            return;
        }
        Err(got) => got,
    };
    let campaigns = tree
        .get("campaign")
        .and_then(toml::Value::as_array)
        .map_or(0, Vec::len);
    let labels: Vec<String> = (0..campaigns).map(|i| config::label(&tree, i)).collect();
    for c in got.iter().filter_map(|(c, _, _)| c.as_ref()) {
        assert!(labels.contains(c), "{c} is no campaign's label: {labels:?}");
    }
    for w in &want {
        assert!(
            got.iter().any(|(c, f, _)| (c, f) == (&w.0, &w.1)),
            "{w:?} not reported; got {got:#?}\nin\n{text}"
        );
    }
}

/// Values an override may be given: TOML of each type, and text that is not TOML.
fn override_text() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "",
                "5",
                "-1",
                "1e-300",
                "nan",
                "inf",
                "true",
                "\"x\"",
                "[1]",
                "{a=1}",
                "1979-05-27",
                "100y",
                "5s",
                "http://h",
                "many",
                "0.0.0.0:1",
                "=",
            ][..]
        )
        .prop_map(str::to_owned),
        "\\PC{0,8}",
    ]
}

/// Applies `overrides` (an index into the service keys, or a variable that names none, and
/// a value) to [`config::FULL`]: nothing panics, and a value that cannot have its key's type
/// is a problem at the key naming the variable.
fn check_overrides(overrides: &[(usize, String)]) {
    const ODD: [&str; 4] = [
        "REMARKET__ENGINE__NOPE",
        "REMARKET__CAMPAIGN__ID",
        "REMARKET__A__B__C",
        "REMARKET__TIKTOK",
    ];
    let keys: Vec<(String, config::Kind)> = config::typed_keys()
        .into_iter()
        .filter(|(p, k)| p.contains('.') && !p.starts_with("campaign") && *k != config::Kind::Table)
        .collect();
    let var_of = |key: &str| format!("REMARKET__{}", key.replace('.', "__").to_uppercase());
    let env: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, raw)| {
            let k = k % (keys.len() + ODD.len());
            let var = keys
                .get(k)
                .map_or(ODD[k % ODD.len()].to_owned(), |(key, _)| var_of(key));
            (var, raw.clone())
        })
        .collect();
    let result = check_config(config::FULL, &env);
    for (key, kind) in &keys {
        let var = var_of(key);
        // The last override of a variable is the one applied.
        let Some((_, raw)) = env.iter().rev().find(|(v, _)| *v == var) else {
            continue;
        };
        // As the README says: read as a TOML value, else as a string.
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        if config::fits(*kind, &value) {
            continue;
        }
        let Err(got) = &result else {
            panic!("{var}={raw:?} was accepted");
        };
        let suffix = format!("(set by {var})");
        assert!(
            got.iter().any(|(_, f, m)| f == key && m.ends_with(&suffix)),
            "{var}={raw:?}: {got:?}"
        );
    }
}

proptest! {
    #![proptest_config(cases(600))]

    #[test]
    fn every_wrong_type_and_unknown_key_is_reported_at_its_path(
        mutations in proptest::collection::vec(config::mutation(), 0..6),
    ) {
        check_mutated_config(&mutations);
    }

    #[test]
    fn overrides_of_any_key_with_any_text_are_problems_or_applied(
        overrides in proptest::collection::vec((any::<usize>(), override_text()), 1..4),
    ) {
        check_overrides(&overrides);
    }

    #[test]
    fn broken_config_text_is_one_problem_not_a_panic(
        m in proptest::collection::vec(json::mutation(), 1..5),
    ) {
        let bytes = json::mutate_bytes(config::FULL.as_bytes().to_vec(), &m);
        let text = String::from_utf8_lossy(&bytes);
        let parses = text.parse::<toml::Table>().is_ok();
        match check_config(&text, &[]) {
            Ok(_) => prop_assert!(parses),
            Err(got) if !parses => {
                prop_assert_eq!(got.len(), 1);
                prop_assert_eq!(&got[0].1, "(file)");
            }
            Err(_) => {}
        }
    }
}

// === the corpus ===

fn corpus(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("an entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("readable");
            (p, data)
        })
        .collect()
}

/// Every line of every corpus file decodes or gets a reason, and each file replays with
/// every line counted; inputs too large to commit are made here.
#[test]
fn the_decoder_corpus_replays() {
    for (format, dir) in FORMATS.iter().zip(["native", "segment", "clevertap"]) {
        let config = config_for(*format);
        let d = Decoder::new(*format, &config.schema);
        for (path, data) in corpus(dir) {
            for line in data.split(|&b| b == b'\n') {
                let _ = check_line(&d, line, None);
                let _ = check_line(&d, line, Some(NOW_MS - 1));
            }
            check_replay(config, &[(path, data)]);
        }
        let huge = format!(
            "{{\"user_id\":\"u\",\"event\":\"A\",\"ts\":1,\"props\":{{\"x\":\"{}\"}}}}",
            "x".repeat(MAX_RECORD_BYTES)
        );
        assert_eq!(
            check_line(&d, huge.as_bytes(), None),
            Err(Malformed::Oversize)
        );
        let n = 500_000;
        for deep in [
            format!(
                "{{\"user_id\":\"u\",\"event\":\"Added To Cart\",\"ts\":1,\"props\":{}1{}}}",
                "[".repeat(n),
                "]".repeat(n)
            ),
            format!(
                "{{\"user_id\":\"u\",\"event\":\"A\",\"ts\":1,\"x\":{}1{}}}",
                "{\"a\":".repeat(n),
                "}".repeat(n)
            ),
            format!("{}{}", "[".repeat(n), "]".repeat(n)),
        ] {
            assert!(check_line(&d, deep.as_bytes(), None).is_err());
        }
    }
}

#[test]
fn the_kcat_corpus_replays() {
    for (_, data) in corpus("kcat") {
        check_recording(&data);
    }
}

/// Each corpus config lists what it must give: `# ok`, or `# problem: <line>` for each
/// problem, as `check-config` prints them.
#[test]
fn the_config_corpus_gives_its_listed_problems() {
    for (path, data) in corpus("config") {
        let text = String::from_utf8(data).expect("UTF-8");
        let mut want: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# problem: "))
            .collect();
        want.sort();
        let ok = text.lines().any(|l| l == "# ok");
        assert!(
            ok == want.is_empty(),
            "{}: # ok or # problem: lines",
            path.display()
        );
        match Config::parse(&text, Vec::new()) {
            Ok(c) => {
                assert!(ok, "{} was accepted", path.display());
                check_accepted(&c);
            }
            Err(problems) => {
                let mut got: Vec<String> = problems.0.iter().map(ToString::to_string).collect();
                got.sort();
                assert_eq!(got, want, "{}", path.display());
            }
        }
    }
}
