//! Kafka for the integration tests: a real broker (tansu, in memory, on a free loopback port)
//! when it is installed, else rdkafka's in-process `MockCluster`; topic creation; reading a
//! whole topic back.
//!
//! `Broker::start()` returns `None` when tansu is missing and `CI` is unset (the caller prints
//! "skipping: tansu not installed"); with `CI` set a missing tansu is a failure. `Cluster::start()`
//! picks tansu when it exists and falls back to the mock otherwise (always the mock for tests
//! that inject faults: `mock_cluster()`).
//!
//! The mock does not implement the CreateTopics admin API: `Cluster::create_topic` creates its
//! topics through the mock API instead, and code under test must find them existing.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

/// How long a broker may take to answer its first metadata request.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A consumed record: `(key, payload, partition, offset, timestamp ms)`.
pub type Consumed = (Option<Vec<u8>>, Option<Vec<u8>>, i32, i64, Option<i64>);

/// The tansu binary: on `PATH`, else `$HOME/.cargo/bin/tansu`.
pub fn tansu_path() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("tansu"));
    let in_home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    on_path.chain(in_home).find(|p| p.is_file())
}

/// A tansu broker with in-memory storage, killed on drop.
pub struct Broker {
    pub bootstrap: String,
    child: Child,
    /// The broker's stderr, shown when it fails to come up.
    log: tempfile::NamedTempFile,
}

impl Broker {
    /// Starts tansu on a free loopback port and waits until it answers a metadata request.
    /// `None` when tansu is not installed and `CI` is unset; panics when it is missing in CI.
    pub fn start() -> Option<Broker> {
        let Some(bin) = tansu_path() else {
            if std::env::var_os("CI").is_some() {
                panic!("tansu is not installed, but CI is set: CI must provide it (.ci/run)");
            }
            return None;
        };
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut broker = Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            child,
            log,
        };
        broker.wait_ready();
        Some(broker)
    }

    fn wait_ready(&mut self) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("log_level", "3")
            .create()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "tansu exited with {status} before it was ready:\n{}",
                    self.stderr()
                );
            }
            match consumer.fetch_metadata(None, Duration::from_millis(500)) {
                Ok(md) if !md.brokers().is_empty() => return,
                Ok(_) | Err(_) if start.elapsed() < READY_WITHIN => {}
                other => panic!(
                    "tansu at {} not ready after {READY_WITHIN:?} ({:?}):\n{}",
                    self.bootstrap,
                    other.err(),
                    self.stderr()
                ),
            }
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `REMARKET_TEST_BROKER_LOG=DIR` keeps each broker's log, for diagnosing the broker.
        if let Some(dir) = std::env::var_os("REMARKET_TEST_BROKER_LOG") {
            let name = format!("tansu-{}.log", self.bootstrap.replace([':', '.'], "-"));
            let _ = std::fs::copy(self.log.path(), PathBuf::from(dir).join(name));
        }
    }
}

/// A port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An in-process mock cluster of one broker and its bootstrap servers.
pub fn mock_cluster() -> (MockCluster<'static, DefaultProducerContext>, String) {
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    (mock, bootstrap)
}

/// Whichever Kafka a test gets: tansu when installed, else the mock.
pub enum Cluster {
    Tansu(Broker),
    Mock(MockCluster<'static, DefaultProducerContext>, String),
}

impl Cluster {
    /// Tansu when installed, else (outside CI) a mock cluster.
    pub fn start() -> Cluster {
        match Broker::start() {
            Some(b) => Cluster::Tansu(b),
            None => {
                eprintln!("tansu not installed: using rdkafka's MockCluster");
                let (m, bs) = mock_cluster();
                Cluster::Mock(m, bs)
            }
        }
    }

    pub fn bootstrap(&self) -> &str {
        match self {
            Cluster::Tansu(b) => &b.bootstrap,
            Cluster::Mock(_, bs) => bs,
        }
    }

    pub fn is_mock(&self) -> bool {
        matches!(self, Cluster::Mock(..))
    }

    /// Creates a topic (replication 1); the topic config applies to tansu only.
    pub fn create_topic(&self, name: &str, partitions: i32, config: &[(&str, &str)]) {
        match self {
            Cluster::Tansu(b) => create_topic(&b.bootstrap, name, partitions, config),
            Cluster::Mock(m, _) => m.create_topic(name, partitions, 1).unwrap(),
        }
    }
}

/// Creates a topic through the admin API (not for the mock: see the module docs).
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts)).unwrap();
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
    }
}

/// Every record of every partition of `topic`, read from the beginning up to the high watermark,
/// by assignment (no consumer group). Sorted by partition, then offset.
///
/// The end is the partition EOF librdkafka signals when it reaches the high watermark of a Fetch
/// response, not `fetch_watermarks`: tansu 0.6 (memory storage) answers ListOffsets(latest) with
/// the base offset of the partition's last batch + 1, not the log end.
pub fn consume_all(bootstrap: &str, topic: &str) -> Vec<Consumed> {
    let timeout = Duration::from_secs(10);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Assigned, not subscribed; librdkafka still wants a group id for its consumer queue.
        .set("group.id", "remarket-tests-consume-all")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .unwrap_or_else(|| panic!("no topic {topic}"));
    assert!(t.error().is_none(), "topic {topic}: {:?}", t.error());

    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut open: BTreeSet<i32> = t.partitions().iter().map(|p| p.id()).collect();
    let mut out = Vec::new();
    let start = Instant::now();
    while !open.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "topic {topic}: partitions {open:?} not read to their end within 30s"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(m)) => out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                m.partition(),
                m.offset(),
                m.timestamp().to_millis(),
            )),
        }
    }
    out.sort_by_key(|r| (r.2, r.3));
    out
}
