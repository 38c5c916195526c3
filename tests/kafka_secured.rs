//! `remarket run` against a secured broker, as managed Kafka services are: SASL/SCRAM-SHA-512
//! over TLS (`security.protocol = sasl_ssl`), the username from an environment variable and
//! the password from a file (a mounted Secret), both through `[kafka.client]`.
//!
//! tansu 0.6 authenticates SCRAM users (`tansu broker --authentication`, users made with
//! `tansu user create`) but does not serve TLS itself (its `--cert`/`--key` are accepted and
//! unused), so Debian's `stunnel4` terminates TLS in front of it, and tansu advertises the
//! stunnel port. The certificate is a fresh self-signed one (openssl), trusted through
//! `ssl.ca.location`, with the loopback address as its subject name, so librdkafka's default
//! host name verification holds.
//!
//! Skipped (with a message) when tansu or stunnel is missing and `CI` is unset; with `CI` set
//! a missing tool is a failure (`.ci/run` installs both).

mod common;
#[path = "common/kafka.rs"]
mod kafka;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use kafka::free_port;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::time::Instant;

const TOKEN: &str = "secured-test-token";
const USER: &str = "remarket-svc";
const PASSWORD: &str = "pw-7f3a9c1e-do-not-log";

fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("{name} is not installed, but CI is set: CI must provide it (.ci/run)");
    }
    found
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// tansu with SCRAM authentication behind stunnel; `bootstrap` is the TLS address.
struct SecuredBroker {
    bootstrap: String,
    ca: PathBuf,
    scram: bool,
    _tansu: Proc,
    _stunnel: Proc,
}

impl SecuredBroker {
    /// With `scram`, clients must authenticate as [`USER`]: tansu keeps SCRAM credentials only
    /// in its SQL storage, so it is started once without authentication on a SQLite file to
    /// make the user, then again on that file with authentication.
    fn start(dir: &Path, scram: bool) -> Option<SecuredBroker> {
        let (Some(tansu_bin), Some(stunnel)) =
            (tool("tansu"), tool("stunnel4").or(tool("stunnel")))
        else {
            eprintln!("skipping: tansu or stunnel4 not installed");
            return None;
        };
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(made.success(), "openssl could not make a certificate");
        let (plain, tls) = (free_port(), free_port());
        let plain_url = format!("tcp://127.0.0.1:{plain}");
        // tansu reads a `sqlite://` path relative to its working directory (`dir`).
        let storage = if scram {
            "sqlite://tansu.db".to_owned()
        } else {
            "memory://tansu/".to_owned()
        };
        let tansu = |authentication: bool| {
            let log = std::fs::File::create(dir.join("tansu.log")).unwrap();
            let mut cmd = Command::new(&tansu_bin);
            cmd.current_dir(dir)
                .args(["broker", "--listener-url", &plain_url])
                .args([
                    "--advertised-listener-url",
                    &format!("tcp://127.0.0.1:{tls}"),
                ])
                .args(["--storage-engine", &storage])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log);
            if authentication {
                cmd.arg("--authentication");
            }
            Proc(cmd.spawn().unwrap())
        };
        let mut broker = tansu(false);
        if scram {
            // The SCRAM user, made through tansu's own client once the broker listens.
            let start = Instant::now();
            loop {
                let out = Command::new(&tansu_bin)
                    .args(["user", "create", "--broker", &plain_url, USER, PASSWORD])
                    .args(["--mechanism", "scram512"])
                    .output()
                    .unwrap();
                if out.status.success() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "tansu user create: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    std::fs::read_to_string(dir.join("tansu.log")).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            drop(broker);
            broker = tansu(true);
        }
        let conf = dir.join("stunnel.conf");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\n[kafka]\naccept = 127.0.0.1:{tls}\n\
                 connect = 127.0.0.1:{plain}\ncert = {}\nkey = {}\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        let stunnel_log = std::fs::File::create(dir.join("stunnel.log")).unwrap();
        let stunnel = Proc(
            Command::new(stunnel)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(stunnel_log.try_clone().unwrap())
                .stderr(stunnel_log)
                .spawn()
                .unwrap(),
        );
        Some(SecuredBroker {
            bootstrap: format!("127.0.0.1:{tls}"),
            ca: cert,
            scram,
            _tansu: broker,
            _stunnel: stunnel,
        })
    }

    /// A client configuration of the test's own clients (the same settings as remarket's).
    fn client(&self, password: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("ssl.ca.location", self.ca.display().to_string());
        if self.scram {
            c.set("security.protocol", "sasl_ssl")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", USER)
                .set("sasl.password", password);
        } else {
            c.set("security.protocol", "ssl");
        }
        c
    }

    /// The `[kafka.client]` table of remarket's config: with SCRAM, the username from
    /// `KAFKA_USERNAME`, the password from `password_file`.
    fn client_table(&self, password_file: &Path) -> String {
        let mut t = format!(
            "\"ssl.ca.location\" = {:?}\n",
            self.ca.display().to_string()
        );
        if self.scram {
            t += &format!(
                "\"security.protocol\" = \"sasl_ssl\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
                 \"sasl.username\" = {{ env = \"KAFKA_USERNAME\" }}\n\
                 \"sasl.password\" = {{ file = {:?} }}\n",
                password_file.display().to_string()
            );
        } else {
            t += "\"security.protocol\" = \"ssl\"\n";
        }
        t
    }
}

/// The sample recording, keyed by user, on `events` (two partitions).
fn publish_sample(b: &SecuredBroker) {
    let admin: AdminClient<DefaultClientContext> = b.client(PASSWORD).create().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let made = rt
        .block_on(admin.create_topics(
            &[NewTopic::new("events", 2, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .unwrap();
    assert!(made.iter().all(Result::is_ok), "{made:?}");
    let producer: ThreadedProducer<_> = b
        .client(PASSWORD)
        // tansu 0.6 cannot resume a fetch inside a batch (tests/broker_fetch.rs).
        .set("batch.num.messages", "1")
        .create()
        .unwrap();
    // Malformed lines included (the sample has some): they go to the dead-letter topic.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sample-events.jsonl"
    ))
    .unwrap();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let key = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["user_id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        producer
            .send(BaseRecord::to("events").key(&key).payload(line))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(120)).unwrap();
}

/// Every record value of `topic` so far, read over the secured connection.
fn read_all(b: &SecuredBroker, topic: &str) -> Vec<String> {
    read_full(b, topic, PASSWORD)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or(&[])).into_owned())
        .collect()
}

/// A record with its coordinates and headers.
struct Full {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: std::collections::BTreeMap<String, String>,
}

/// Every record of `topic`, with keys and headers, read as the user with `password`.
fn read_full(
    b: &SecuredBroker,
    topic: &str,
    password: &str,
) -> Result<Vec<Full>, rdkafka::error::KafkaError> {
    use rdkafka::message::Headers;
    let consumer: BaseConsumer = b
        .client(password)
        .set("group.id", "secured-test-reader")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let parts = md.topics()[0].partitions().len();
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut eof, mut out) = (0, Vec::new());
    let start = Instant::now();
    while eof < parts && start.elapsed() < Duration::from_secs(20) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Full {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or(&[])).into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
            _ => {}
        }
    }
    Ok(out)
}

/// The sample config against the simulator and the secured broker.
fn write_config(dir: &Path, sim: &Sim, b: &SecuredBroker, password_file: &Path) -> PathBuf {
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let text = config_text(&sim.url, &token_file, 50, 10_000, "200ms");
    let config = dir.join("remarket.toml");
    std::fs::write(
        &config,
        format!(
            "{text}\n[kafka]\nbrokers = \"{}\"\nevents_topic = \"events\"\n\
             profiles_topic = \"events\"\ncommit_interval = \"200ms\"\n[kafka.client]\n{}\
             \"session.timeout.ms\" = \"6000\"\n\"batch.num.messages\" = \"1\"\n\
             \"fetch.wait.max.ms\" = \"10\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            b.bootstrap,
            b.client_table(password_file),
        ),
    )
    .unwrap();
    config
}

/// `remarket run` with the config, its log lines sent to a channel as they come.
fn spawn_run(config: &Path) -> (Proc, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .args(["run", "-c"])
        .arg(config)
        .env("KAFKA_USERNAME", USER)
        .env("REMARKET_LOG", "info")
        .env_remove("REMARKET_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Proc(child), rx)
}

/// Log lines until `want` matches one (or `within` passes); every line read.
fn lines_until(
    rx: &std::sync::mpsc::Receiver<String>,
    within: Duration,
    want: impl Fn(&str) -> bool,
) -> (bool, Vec<String>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    while let Some(left) = within.checked_sub(start.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = want(&line);
                seen.push(line);
                if hit {
                    return (true, seen);
                }
            }
            Err(_) => break,
        }
    }
    (false, seen)
}

/// `run` decides the sample's users from the secured broker, and logs neither credential nor
/// a configuration warning.
fn decides_over(b: &SecuredBroker, dir: &Path, sim: &Sim, password_file: &Path) {
    let config = write_config(dir, sim, b, password_file);
    let (run, rx) = spawn_run(&config);
    let start = Instant::now();
    let mut decisions = Vec::new();
    let mut log = Vec::new();
    while decisions.is_empty() && start.elapsed() < Duration::from_secs(120) {
        let (_, seen) = lines_until(&rx, Duration::from_secs(2), |_| false);
        log.extend(seen);
        decisions = read_all(b, "remarket.decisions");
    }
    drop(run);
    let log = log.join("\n");
    assert!(!decisions.is_empty(), "run decided nothing:\n{log}");
    assert!(
        !held(&sim.sim).values().all(|m| m.is_empty()),
        "TikTok got the exported users"
    );
    for secret in [PASSWORD, "not-the-password-4c2e"] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
    // The decisions topic speaks `decisions.jsonl`'s schema: ids (EMAIL_SHA256/PHONE_SHA256)
    // only on exported and removed users.
    for d in &decisions {
        let v: serde_json::Value = serde_json::from_str(d).unwrap();
        let with_ids = v["outcome"] == "exported" || v["outcome"] == "removed";
        assert_eq!(v.get("ids").is_some(), with_ids, "{d}");
        if with_ids {
            let ids = v["ids"].as_object().unwrap();
            assert!(
                ids.keys()
                    .all(|k| k == "EMAIL_SHA256" || k == "PHONE_SHA256")
                    && !ids.is_empty(),
                "{d}"
            );
        }
        assert!(
            v.get("email_sha256").is_none() && v.get("phone_sha256").is_none(),
            "{d}"
        );
    }
    // Each dead letter is the input record as it was (key and value), with headers naming
    // its reason and where it came from. The sample has malformed lines.
    let dead = read_full(b, "remarket.dead-letter", PASSWORD).unwrap();
    assert!(
        !dead.is_empty(),
        "the sample's malformed lines are dead-lettered"
    );
    let input = read_full(b, "events", PASSWORD).unwrap();
    for d in &dead {
        let (topic, partition, offset) = (
            &d.headers["source_topic"],
            d.headers["source_partition"].parse::<i32>().unwrap(),
            d.headers["source_offset"].parse::<i64>().unwrap(),
        );
        assert_eq!(topic, "events");
        assert!(!d.headers["reason"].is_empty());
        assert_eq!(
            d.partition, partition,
            "a dead letter stays in its partition"
        );
        let original = input
            .iter()
            .find(|r| r.partition == partition && r.offset == offset)
            .expect("the source record exists");
        assert_eq!(d.key, original.key);
        assert_eq!(d.payload, original.payload);
    }
    // Client settings went only where they apply: librdkafka warned about none.
    assert!(
        !log.contains("will be ignored"),
        "configuration warnings:\n{log}"
    );
}

#[test]
fn run_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = SecuredBroker::start(dir.path(), false) else {
        return;
    };
    publish_sample(&broker);
    let sim = Sim::start(TOKEN, |_| {});
    decides_over(&broker, dir.path(), &sim, Path::new("/unused"));
}

#[test]
fn run_over_sasl_scram_and_tls_with_credentials_from_a_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = SecuredBroker::start(dir.path(), true) else {
        return;
    };
    publish_sample(&broker);
    let sim = Sim::start(TOKEN, |_| {});

    // A wrong password: the brokers are retried (Kafka answers with an authentication error,
    // which librdkafka logs; tansu 0.6 closes the connection), and the password is never
    // shown.
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password-4c2e\n").unwrap();
    let config = write_config(dir.path(), &sim, &broker, &wrong);
    let (run, rx) = spawn_run(&config);
    let (failed, seen) = lines_until(&rx, Duration::from_secs(60), |l| {
        l.contains("Authentication failed")
            || l.contains("SASL authentication error")
            || l.contains("kafka brokers unreachable")
    });
    drop(run);
    let log = seen.join("\n");
    assert!(failed, "a wrong password is reported:\n{log}");
    assert!(!log.contains("not-the-password-4c2e"), "{log}");
    assert!(
        read_full(&broker, "remarket.decisions", "not-the-password-4c2e").is_err(),
        "the broker refuses the wrong password"
    );

    // The right one (with the line break a Secret file often has).
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    decides_over(&broker, dir.path(), &sim, &password);
}
