//! `remarket publish` against a broker: tansu when installed, else rdkafka's `MockCluster`
//! (see `tests/common/kafka.rs`). Records are read back by assignment and compared with the
//! recording line by line: count, keys, timestamps, partitions and per-partition order.

#[path = "common/kafka.rs"]
mod kafka;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use kafka::{Cluster, Consumed};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use remarket::generate::{generate, Format, GenerateArgs};
use remarket::publish::{publish, PublishArgs};
use tokio::time::Instant;

/// A generated recording: plain lines (`partitions == 0`) or `kcat -J` envelopes.
fn recording(dir: &Path, format: Format, partitions: u32, malformed_pct: f64) -> PathBuf {
    let args = GenerateArgs {
        users: 25,
        events: 400,
        seed: 7,
        format,
        start: "2026-11-02T00:00:00Z".into(),
        malformed_pct,
        disorder_ms: 2000,
        partitions,
        days: 0,
    };
    let mut out = Vec::new();
    generate(&args, &mut out).unwrap();
    let path = dir.join(format!("rec-{partitions}.jsonl"));
    std::fs::write(&path, out).unwrap();
    path
}

/// The file's lines, and each parsed.
fn lines(path: &Path) -> (Vec<String>, Vec<serde_json::Value>) {
    let text = std::fs::read_to_string(path).unwrap();
    let raw: Vec<String> = text.lines().map(str::to_owned).collect();
    let parsed = raw
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (raw, parsed)
}

fn args(cluster: &Cluster, topic: &str, file: &Path) -> PublishArgs {
    PublishArgs {
        timeout: Duration::from_secs(20).into(),
        ..PublishArgs::new(cluster.bootstrap(), topic, vec![file.to_owned()])
    }
}

fn text(b: &Option<Vec<u8>>) -> Option<&str> {
    b.as_deref().map(|b| std::str::from_utf8(b).unwrap())
}

/// Asserts that every record reached the partition its key always maps to, and that each
/// partition holds its records in the order of `payloads` (file order), offsets from 0.
fn assert_keyed_and_ordered(got: &[Consumed], payloads: &[String]) {
    let index: HashMap<&str, usize> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    assert_eq!(index.len(), payloads.len(), "generated lines are distinct");
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    let mut last: BTreeMap<i32, (usize, i64)> = BTreeMap::new();
    for r in got {
        let key = text(&r.0).expect("every generated record has a user id");
        let p = *partition_of.entry(key).or_insert(r.2);
        assert_eq!(p, r.2, "all records of a key go to one partition");
        let i = index[text(&r.1).unwrap()];
        if let Some(&(prev, off)) = last.get(&r.2) {
            assert!(
                i > prev,
                "partition {} out of file order at offset {}",
                r.2,
                r.3
            );
            assert_eq!(r.3, off + 1);
        } else {
            assert_eq!(r.3, 0, "fresh topic");
        }
        last.insert(r.2, (i, r.3));
    }
}

/// The partition Kafka's Java producer picks for a key: murmur2 of the key bytes (Kafka's
/// `Utils.murmur2`, seed 0x9747b28c), made positive, modulo the partition count.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions as u32) as i32
}

#[test]
fn java_partition_matches_kafkas_published_values() {
    // Kafka's UtilsTest.testMurmur2: "21" → -973932308, "foobar" → -790332482.
    let positive = |v: i32| (v as u32 & 0x7fff_ffff) % 1000;
    assert_eq!(java_partition(b"21", 1000) as u32, positive(-973_932_308));
    assert_eq!(
        java_partition(b"foobar", 1000) as u32,
        positive(-790_332_482)
    );
}

fn counts(got: &[Consumed]) -> BTreeMap<i32, u64> {
    let mut m = BTreeMap::new();
    for r in got {
        *m.entry(r.2).or_default() += 1;
    }
    m
}

#[test]
fn plain_lines_are_keyed_by_user_and_stamped_with_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Native, 0, 0.0);
    let (payloads, expected) = lines(&file);
    let cluster = Cluster::start();
    cluster.create_topic("plain", 3, &[]);

    let report = publish(&args(&cluster, "plain", &file)).unwrap();
    let got = kafka::consume_all(cluster.bootstrap(), "plain");

    assert_eq!(got.len(), expected.len());
    assert_eq!(report.records, expected.len() as u64);
    assert_eq!(report.partitions, counts(&got));
    assert!(
        report.partitions.len() > 1,
        "25 users spread over 3 partitions"
    );
    assert_eq!(
        report.bytes,
        payloads.iter().map(|p| p.len() as u64).sum::<u64>()
    );
    assert_keyed_and_ordered(&got, &payloads);
    for r in &got {
        let key = r.0.as_deref().unwrap();
        assert_eq!(
            r.2,
            java_partition(key, 3),
            "{}: the Java client's partition",
            String::from_utf8_lossy(key)
        );
    }
    let by_payload: HashMap<&str, &serde_json::Value> =
        payloads.iter().map(|p| p.as_str()).zip(&expected).collect();
    for r in &got {
        let v = by_payload[text(&r.1).unwrap()];
        assert_eq!(text(&r.0), v["user_id"].as_str());
        assert_eq!(r.4, v["ts"].as_i64(), "timestamp = the record's ts");
    }
}

#[test]
fn envelopes_keep_key_timestamp_partition_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Native, 3, 0.0);
    let (_, expected) = lines(&file);
    let cluster = Cluster::start();
    let mut a = args(&cluster, "kcat", &file);
    a.keep_partitions = true;
    a.create_partitions = Some(3);
    if cluster.is_mock() {
        // The mock has no CreateTopics: the topic must exist, and the count check passes.
        cluster.create_topic("kcat", 3, &[]);
    }

    let report = publish(&a).unwrap();
    let got = kafka::consume_all(cluster.bootstrap(), "kcat");

    assert_eq!(got.len(), expected.len());
    assert_eq!(report.records, expected.len() as u64);
    assert_eq!(report.partitions, counts(&got));
    let mut want: Vec<Consumed> = expected
        .iter()
        .map(|e| {
            (
                e["key"].as_str().map(|k| k.as_bytes().to_vec()),
                e["payload"].as_str().map(|p| p.as_bytes().to_vec()),
                e["partition"].as_i64().unwrap() as i32,
                e["offset"].as_i64().unwrap(),
                e["ts"].as_i64(),
            )
        })
        .collect();
    want.sort_by_key(|r| (r.2, r.3));
    assert_eq!(
        got, want,
        "same key, payload, partition, offset and timestamp as recorded"
    );
}

#[test]
fn envelopes_without_keep_partitions_are_partitioned_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Segment, 3, 0.0);
    let (_, expected) = lines(&file);
    let cluster = Cluster::start();
    cluster.create_topic("rekeyed", 2, &[]);

    let report = publish(&args(&cluster, "rekeyed", &file)).unwrap();
    let got = kafka::consume_all(cluster.bootstrap(), "rekeyed");

    assert_eq!(report.records, expected.len() as u64);
    assert_eq!(
        report.partitions.keys().copied().collect::<Vec<_>>(),
        [0, 1]
    );
    // One user's records all sit in one recorded partition, in file order there.
    let payloads: Vec<String> = expected
        .iter()
        .map(|e| e["payload"].as_str().unwrap().to_owned())
        .collect();
    assert_keyed_and_ordered(&got, &payloads);
}

#[test]
fn malformed_lines_are_published_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Native, 0, 10.0);
    // Some malformed lines are not UTF-8.
    let n = std::fs::read(&file)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let cluster = Cluster::start();
    cluster.create_topic("bad", 2, &[]);

    let report = publish(&args(&cluster, "bad", &file)).unwrap();
    let got = kafka::consume_all(cluster.bootstrap(), "bad");

    assert_eq!(report.records, n as u64);
    assert_eq!(got.len(), n);
    assert!(
        got.iter().any(|r| r.0.is_none()),
        "unparsable lines go without a key"
    );
}

#[test]
fn topic_must_exist_or_be_created_with_the_asked_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Native, 3, 0.0);
    let cluster = Cluster::start();

    let missing = publish(&args(&cluster, "absent", &file)).unwrap_err();
    assert!(
        format!("{missing:#}").contains("does not exist"),
        "{missing:#}"
    );

    cluster.create_topic("two", 2, &[]);
    let mut a = args(&cluster, "two", &file);
    a.create_partitions = Some(3);
    let err = publish(&a).unwrap_err();
    assert!(
        format!("{err:#}").contains("exists with 2 partitions"),
        "{err:#}"
    );

    a.create_partitions = None;
    a.keep_partitions = true;
    let err = publish(&a).unwrap_err();
    assert!(format!("{err:#}").contains("has partition 2"), "{err:#}");
    assert!(kafka::consume_all(cluster.bootstrap(), "two").is_empty());

    if !cluster.is_mock() {
        let mut a = args(&cluster, "created", &file);
        a.create_partitions = Some(3);
        a.keep_partitions = true;
        let report = publish(&a).unwrap();
        assert_eq!(report.partitions.len(), 3);
        assert_eq!(
            kafka::consume_all(cluster.bootstrap(), "created").len() as u64,
            report.records
        );
    }
}

#[test]
fn missing_broker_fails_clearly_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Native, 0, 0.0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut a = PublishArgs::new(format!("127.0.0.1:{port}"), "t", vec![file]);
    a.timeout = Duration::from_secs(2).into();

    let start = Instant::now();
    let err = publish(&a).unwrap_err();
    let took = start.elapsed();

    assert!(took < Duration::from_secs(10), "took {took:?}");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no metadata from the brokers at 127.0.0.1:"),
        "{msg}"
    );
}

#[test]
fn delivery_errors_fail_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Native, 0, 0.0);
    let (mock, bootstrap) = kafka::mock_cluster();
    mock.create_topic("denied", 1, 1).unwrap();
    // Every produce request is refused with a non-retriable error.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 500],
    );
    let mut a = PublishArgs::new(bootstrap, "denied", vec![file]);
    a.timeout = Duration::from_secs(5).into();

    let start = Instant::now();
    let err = publish(&a).unwrap_err();

    assert!(start.elapsed() < Duration::from_secs(20));
    let msg = format!("{err:#}");
    assert!(
        msg.contains("were not delivered to topic \"denied\""),
        "{msg}"
    );
}

#[test]
fn the_binary_publishes_and_prints_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let file = recording(dir.path(), Format::Native, 2, 0.0);
    let cluster = Cluster::start();
    if cluster.is_mock() {
        cluster.create_topic("cli", 2, &[]);
    }
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_remarket"))
            .args([
                "publish",
                "--brokers",
                cluster.bootstrap(),
                "--topic",
                "cli",
            ])
            .args([
                "--create-partitions",
                "2",
                "--keep-partitions",
                "--timeout",
                "20s",
            ])
            .args(extra)
            .arg(&file)
            .output()
            .unwrap()
    };

    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let n = std::fs::read_to_string(&file).unwrap().lines().count();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with(&format!("published to cli: {n} records, ")),
        "{stdout}"
    );
    assert!(
        !stderr.contains("\"user_id\""),
        "no record content in logs: {stderr}"
    );
    assert_eq!(kafka::consume_all(cluster.bootstrap(), "cli").len(), n);

    let bad = run(&["-X", "no.such.property=1"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no.such.property"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
