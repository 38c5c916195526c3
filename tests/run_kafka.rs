//! `remarket run` end to end on an in-process Kafka (rdkafka's MockCluster: consumer groups,
//! offsets, cooperative rebalancing) and the TikTok simulator: the audiences it builds equal
//! those of `replay` over the same recording; a second run (a restart) changes nothing.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

use remarket::app::{self, ReplayOptions};
use remarket::config::Config;
use remarket::sink::replay::ReplayTikTokSink;

const TOKEN: &str = "run-token";
const PARTITIONS: i32 = 3;

/// The sample campaigns without target caps (a cap is exact per activate partition in `run`
/// and globally in `replay`, so capped campaigns may legitimately differ).
fn config_text(url: &str, token_file: &Path, brokers: &str) -> String {
    let text = common::config_text(url, token_file, 50, 500, "100ms");
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("target_cap"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.replace("idle_timeout = \"30s\"", "idle_timeout = \"1s\"");
    format!(
        "{text}\n[kafka]\nbrokers = \"{brokers}\"\nevents_topic = \"events\"\nprofiles_topic = \"events\"\n\
         commit_interval = \"200ms\"\n[kafka.client]\n\"session.timeout.ms\" = \"6000\"\n\
         \"heartbeat.interval.ms\" = \"500\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// Produces every line of `rec` keyed by user id, then one marker per partition three hours
/// after the recording's largest ts: past every window of the sample campaigns and the
/// allowed lateness, so every window closes in `run` (where idle partitions hold the
/// watermark at `max ts − lateness`) as at the end of a replay.
fn publish(brokers: &str, rec: &Path) -> Vec<u8> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let text = std::fs::read_to_string(rec).unwrap();
    let mut max_ts = 0i64;
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        max_ts = max_ts.max(v["ts"].as_i64().unwrap());
        let key = v["user_id"].as_str().unwrap().to_owned();
        let mut r = BaseRecord::to("events").key(&key).payload(line);
        while let Err((_, back)) = producer.send(r) {
            r = back;
            producer.poll(Duration::from_millis(5));
        }
    }
    let mut markers = Vec::new();
    let marker_ts = max_ts + 3 * 3600 * 1000;
    for p in 0..PARTITIONS {
        let line = format!(r#"{{"user_id":"marker-{p}","event":"Marker","ts":{marker_ts}}}"#);
        producer
            .send(
                BaseRecord::to("events")
                    .partition(p)
                    .key("marker")
                    .payload(&line),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        markers.extend_from_slice(line.as_bytes());
        markers.push(b'\n');
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    markers
}

#[test]
fn run_builds_the_same_audiences_as_replay() {
    let cluster = MockCluster::new(1).unwrap();
    // The mock broker does not implement CreateTopics: make the internal topics up front
    // (against a real broker `run` creates them itself).
    for t in [
        "events",
        "remarket.changelog",
        "remarket.qualified",
        "remarket.decisions",
    ] {
        cluster.create_topic(t, PARTITIONS, 1).unwrap();
    }
    cluster
        .create_topic("remarket.dead-letter", PARTITIONS, 1)
        .unwrap();
    cluster.create_topic("remarket.audiences", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();

    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let rec = recording(dir.path(), 600, 5_000, 13);
    let markers = publish(&brokers, &rec);
    let mut with_markers = std::fs::read(&rec).unwrap();
    with_markers.extend_from_slice(&markers);
    std::fs::write(&rec, with_markers).unwrap();

    // What replay sends to a fresh simulator.
    let replay_sim = Sim::start(TOKEN, |_| {});
    let text = config_text(&replay_sim.url, &token_file, &brokers);
    let config = Config::parse(&text, Vec::new()).unwrap();
    let out = dir.path().join("replay");
    let mut sink = ReplayTikTokSink::start(&config, &out).unwrap();
    let opts = ReplayOptions {
        out_dir: out.clone(),
        shards: 2,
        progress: false,
    };
    app::replay(&config, std::slice::from_ref(&rec), &opts, &mut sink).unwrap();
    let want: Vec<_> = held(&replay_sim.sim).into_values().collect();
    assert!(
        want.iter().map(|m| m.len()).sum::<usize>() > 100,
        "the workload reaches TikTok"
    );

    let total: usize = want.iter().map(|m| m.len()).sum();

    // `run` against another fresh simulator whose mapping calls are slow, so that it can be
    // stopped part-way: first gracefully, then with SIGKILL, then to the end.
    let run_sim = Sim::start(TOKEN, |a| a.faults = Some("latency@mapping:80ms".into()));
    let text = config_text(&run_sim.url, &token_file, &brokers)
        .replace("max_batch = 500", "max_batch = 40");
    let members = || held(&run_sim.sim).values().map(|m| m.len()).sum::<usize>();
    // Polls the simulator (a condition, not a clock) for at most ~60 s.
    let wait_for = |done: &dyn Fn() -> bool| {
        for _ in 0..1200 {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };

    let config_path = dir.path().join("run.toml");
    std::fs::write(&config_path, &text).unwrap();
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_remarket"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("run.log")).unwrap())
            .spawn()
            .unwrap()
    };

    let t0 = tokio::time::Instant::now();
    // 1. The binary, killed with SIGKILL a third of the way.
    let mut child = spawn();
    assert!(wait_for(&|| members() >= total / 3), "run made no progress");
    child.kill().unwrap();
    child.wait().unwrap();
    let after_kill = members();
    eprintln!(
        "run_kafka: killed at {:?} with {after_kill}/{total}",
        t0.elapsed()
    );
    assert!(after_kill < total, "killed too late to test a restart");

    // 2. In-process, stopped gracefully (SIGTERM's path) once it added more.
    let config = Config::parse(&text, Vec::new()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let runner = {
        let stop = stop.clone();
        std::thread::spawn(move || remarket::run::run_until(config, stop))
    };
    assert!(
        wait_for(&|| members() > after_kill),
        "the restarted run made no progress"
    );
    stop.store(true, Ordering::Relaxed);
    runner.join().unwrap().unwrap();
    eprintln!(
        "run_kafka: graceful stop at {:?} with {}",
        t0.elapsed(),
        members()
    );

    // 3. Restarted again, until it converges; then SIGTERM, which must exit cleanly.
    run_sim.sim.set_faults("none").unwrap();
    let mut child = spawn();
    let log = dir.path().join("run.log");
    let restored =
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("activate partition restored"));
    assert!(wait_for(&restored), "the last run never got its partitions");
    let converged = wait_for(&|| held(&run_sim.sim).into_values().collect::<Vec<_>>() == want);
    let got: Vec<_> = held(&run_sim.sim).into_values().collect();
    eprintln!("run_kafka: converged={converged} at {:?}", t0.elapsed());
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(
        converged,
        "run's audiences differ from replay's: {} vs {total} members",
        got.iter().map(|m| m.len()).sum::<usize>()
    );
    assert!(
        status.success(),
        "SIGTERM exit: {status:?}\n{}",
        std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default()
    );
    assert_eq!(
        run_sim.sim.audiences().len(),
        3,
        "restarts created no audience"
    );
}
