//! `remarket run` over a real broker (`cargo bench --bench kafka`; needs `tansu` on PATH or in
//! `~/.cargo/bin`): events/s end to end from the broker for the sample campaigns (the
//! abandoned-cart workload) with the sink against the simulator, changelog bytes written per
//! input event, and the time to restore the detect state of every user from the changelogs.
//! Sizes: `REMARKET_BENCH_USERS` (default 50 000), `REMARKET_BENCH_EVENTS` (default 300 000);
//! `REMARKET__SECTION__KEY` overrides apply as in `run` (e.g. `REMARKET__ENGINE__SHARDS=1`).
//! Every producer writes one record per batch, because tansu 0.6 cannot resume a fetch inside
//! a batch (tests/broker_fetch.rs): the figures are tansu's, not Kafka's.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use tokio::time::Instant;

use remarket::config::Config;
use remarket::generate::{generate, GenerateArgs};
use remarket::tiktok_sim::{SimArgs, Simulator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `"ts":<ms>` of a generated line (0 when it has none).
fn ts_of(line: &[u8]) -> i64 {
    let Some(at) = line.windows(5).position(|w| w == b"\"ts\":") else {
        return 0;
    };
    let digits = line[at + 5..].iter().take_while(|b| b.is_ascii_digit());
    digits.fold(0, |n, &d| n * 10 + i64::from(d - b'0'))
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[path = "../tests/common/kafka.rs"]
mod kafka;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // The tests' broker: tansu in memory on a free loopback port, ready, killed on drop.
    let Some(broker) = kafka::Broker::start() else {
        eprintln!("kafka bench skipped: tansu is not installed");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    bench(&rt, &broker.bootstrap);
}

fn bench(rt: &tokio::runtime::Runtime, brokers: &str) {
    // `REMARKET_LOG=remarket=debug` shows the stages' own timings.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("REMARKET_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    let users = env("REMARKET_BENCH_USERS", 50_000);
    let events = env("REMARKET_BENCH_EVENTS", 300_000);
    kafka::create_topic(brokers, "events", 2, &[]);

    // Input: a generated recording, produced keyed by user.
    let mut data = Vec::new();
    generate(&GenerateArgs::new(users, events, 9), &mut data).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        // `REMARKET_BENCH_BATCH` records per producer batch (default 1): tansu 0.6 cannot
        // resume a fetch inside a batch (tests/broker_fetch.rs).
        .set(
            "batch.num.messages",
            env("REMARKET_BENCH_BATCH", 1).to_string(),
        )
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut records = 0u64;
    let mut input_bytes = 0u64;
    let mut max_ts = i64::MIN;
    for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let start = memchr_user(line);
        let mut r = BaseRecord::to("events").key(start).payload(line);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        records += 1;
        input_bytes += line.len() as u64;
        max_ts = max_ts.max(ts_of(line));
    }
    // One marker per partition well after the last event: idle partitions hold the
    // watermark at `max ts − lateness`, so without it the last seconds stay buffered and
    // their offsets uncommitted until `idle_timeout` lets the watermark follow the wall
    // clock. A day after the last record (every window closed), and not ahead of the
    // marker's Kafka timestamp: a `ts` more than `engine.max_future` (1 h) ahead of it is
    // dead-lettered (before 2026-12-08 the marker said 2030, was dead-lettered, and every
    // run waited out the idle timeout).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let marker_ts = (max_ts + 86_400_000).min(now_ms);
    for p in 0..2 {
        let line = format!(r#"{{"user_id":"marker","event":"Marker","ts":{marker_ts}}}"#);
        producer
            .send(
                BaseRecord::to("events")
                    .partition(p)
                    .key("marker")
                    .payload(&line),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        records += 1;
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    drop(data);

    // The simulator, fast: one token for both advertisers, the existing audience.
    let sim = Simulator::new(&SimArgs {
        tokens: vec![(
            "bench".into(),
            vec!["7178918106775994370".into(), "7178918106775994371".into()],
        )],
        audiences: vec![("7178918106775994370".into(), "6900000000000000001".into())],
        ..SimArgs::default()
    })
    .unwrap();
    let (url, _sim) = rt.block_on(sim.clone().spawn()).unwrap();
    let dir = std::env::temp_dir().join(format!("remarket-kafka-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "bench").unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
        .unwrap()
        .replace("https://business-api.tiktok.com", &url)
        .replace(
            "access_token_env = \"TIKTOK_ACCESS_TOKEN\"",
            &format!(
                "access_token_file = {:?}",
                dir.join("token").display().to_string()
            ),
        )
        .replace("qps = 10", "qps = 50")
        .replace("idle_timeout = \"30s\"", "idle_timeout = \"2s\"");
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // remarket's librdkafka settings for this broker. tansu 0.6 holds every fetch for
    // `fetch.wait.max.ms` (half of it when that is ≥ 250 ms) even when it has data to
    // return, and returns at most 5 MiB per fetch: at librdkafka's 500 ms the detect stage
    // gets ~20 MB/s. Kafka answers as soon as it has `fetch.min.bytes`; it needs no such
    // setting. `REMARKET_BENCH_CLIENT="k=v,k=v"` adds or overrides settings.
    let mut client = std::collections::BTreeMap::from([
        (
            "batch.num.messages".to_owned(),
            env("REMARKET_BENCH_BATCH", 1).to_string(),
        ),
        ("fetch.wait.max.ms".to_owned(), "10".to_owned()),
    ]);
    let extra = std::env::var("REMARKET_BENCH_CLIENT").unwrap_or_default();
    for (k, v) in extra.split(',').filter_map(|kv| kv.split_once('=')) {
        client.insert(k.to_owned(), v.to_owned());
    }
    let text = format!(
        "{text}\n[kafka]\nbrokers = \"{brokers}\"\nevents_topic = \"events\"\nprofiles_topic = \"events\"\n\
         {}[kafka.client]\n{}\
         [http]\nlisten = \"127.0.0.1:{admin_port}\"\n",
        // `REMARKET_BENCH_COMMIT=1s`: another commit interval than the default.
        std::env::var("REMARKET_BENCH_COMMIT")
            .map(|c| format!("commit_interval = \"{c}\"\n"))
            .unwrap_or_default(),
        client
            .iter()
            .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
            .collect::<String>()
    );

    let settings = Config::parse(&text, std::env::vars())
        .unwrap()
        .kafka
        .unwrap();
    // The broker's own ceiling: a bare consumer reading the input to its end.
    let t = Instant::now();
    let ceiling = topic_bytes(&settings, "events");
    let secs = t.elapsed().as_secs_f64();
    match ceiling {
        Ok((read, read_bytes)) => println!(
        "kafka/broker: a bare consumer reads the {read} input records ({:.0} MB) in {secs:.1} s: \
         {:.0} records/s, {:.0} MB/s (the broker's ceiling for any consumer here)",
        read_bytes as f64 / 1e6,
        read as f64 / secs,
        read_bytes as f64 / 1e6 / secs
    ),
        // tansu 0.6 can stall a fresh consumer on large producer batches.
        Err(e) => println!("kafka/broker: a bare consumer could not read the input: {e}"),
    }
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let config = Config::parse(&text, std::env::vars()).unwrap();
        let mut env = remarket::run::Env::from_config(&config).unwrap();
        env.shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        std::thread::spawn(move || remarket::run::serve(config, env))
    };
    // Done when the detect group's committed offsets reach the end of the input.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "remarket-detect")
        .create()
        .unwrap();
    let total_in = |c: &BaseConsumer| -> i64 {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition("events", 0);
        tpl.add_partition("events", 1);
        c.committed_offsets(tpl, Duration::from_secs(5))
            .map(|t| {
                t.elements()
                    .iter()
                    .map(|e| e.offset().to_raw().unwrap_or(0).max(0))
                    .sum()
            })
            .unwrap_or(0)
    };
    // Consumption as `/metrics` counts it: from the first record to the last.
    let (mut first, mut last, mut consumed) = (None, None, 0u64);
    loop {
        let now = started.elapsed().as_secs_f64();
        let n = source_records(admin_port);
        if n > consumed {
            first.get_or_insert(now);
            last = Some(now);
            consumed = n;
        }
        let done = total_in(&consumer);
        if std::env::var_os("REMARKET_BENCH_TRACE").is_some() {
            eprintln!(
                "{:>6.1} s: {done} committed",
                started.elapsed().as_secs_f64()
            );
        }
        if done >= records as i64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = started.elapsed().as_secs_f64();
    if let (Some(first), Some(last)) = (first, last) {
        println!(
            "kafka/consume: {consumed} records consumed in {:.1} s from the first to the last: \
             {:.0} records/s (commit_interval {})",
            last - first,
            consumed as f64 / (last - first).max(0.1),
            settings.commit_interval
        );
    }
    let _ = stop.send(());
    runner.join().unwrap().unwrap();

    let t = Instant::now();
    let (changelog_records, changelog_bytes) =
        topic_bytes(&settings, "remarket.changelog").unwrap();
    let reading = t.elapsed().as_secs_f64();
    println!(
        "kafka/run: {records} records ({:.0} MB) consumed and committed in {secs:.1} s: \
         {:.0} records/s end to end from the broker (2 partitions, sink against the simulator); \
         changelog {:.1} MB = {:.1} bytes per input record",
        input_bytes as f64 / 1e6,
        records as f64 / secs,
        changelog_bytes as f64 / 1e6,
        changelog_bytes as f64 / records as f64
    );

    // Restore: a fresh run reads every changelog partition back before consuming.
    let config = Config::parse(&text, std::env::vars()).unwrap();
    let k = config.kafka.clone().unwrap();
    let rules = Arc::new(remarket::detect::Rules::compile(
        &config.campaigns,
        &config.schema,
    ));
    // As `run` does on assignment: the partitions side by side.
    let t0 = Instant::now();
    let restored: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|p| {
                let (k, rules) = (&k, rules.clone());
                scope.spawn(move || {
                    remarket::kafka::detect::restore_shard(k, rules, "remarket.changelog", p)
                        .unwrap()
                        .2
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let restore = t0.elapsed().as_secs_f64();
    println!(
        "kafka/restore: {restored} users' detect state read back and rebuilt in {restore:.2} s \
         ({:.2} s per 1 M users), from {changelog_records} changelog records; reading them \
         alone takes {reading:.2} s (one partition after the other)",
        restore * 1_000_000.0 / restored.max(1) as f64,
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `remarket_source_records_total` of the service's `/metrics` (0 until it answers).
fn source_records(port: u16) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body);
    body.lines()
        .find_map(|l| l.strip_prefix("remarket_source_records_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The record's `user_id` value (the generator writes it first).
fn memchr_user(line: &[u8]) -> &[u8] {
    let start = 12; // {"user_id":"
    let end = line[start..]
        .iter()
        .position(|&b| b == b'"')
        .map_or(start, |i| start + i);
    &line[start..end]
}

/// Reads `topic` (2 partitions, one after the other) to its end with remarket's reader (the
/// one restores use): `(records, key + payload bytes)`.
fn topic_bytes(k: &remarket::config::KafkaSettings, topic: &str) -> Result<(u64, u64), String> {
    let (mut records, mut bytes) = (0u64, 0u64);
    for p in 0..2 {
        remarket::kafka::scan(k, "bench-size", topic, p, |key, value| {
            records += 1;
            bytes += (key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len)) as u64;
        })
        .map_err(|e| format!("{e:#}"))?;
    }
    Ok((records, bytes))
}
