//! The TikTok sink end to end: `replay --sink tiktok` against the simulator on 127.0.0.1,
//! under throttling, 5xx bursts, HTML 504s, resets, an audience-not-ready window and a restart
//! in the middle. What TikTok holds must equal the exported minus removed decisions, exactly.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use remarket::app::{self, ReplayOptions};
use remarket::config::Config;
use remarket::sink::metrics::{Endpoint, Outcome, RequestLabels};
use remarket::sink::replay::ReplayTikTokSink;
use remarket::sink::SinkError;

const TOKEN: &str = "e2e-token-0123456789";

fn setup(dir: &Path, sim: &Sim, qps: u32, max_batch: u32) -> Config {
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let text = config_text(&sim.url, &token_file, qps, max_batch, "100ms");
    std::fs::write(dir.join("config.toml"), &text).unwrap();
    Config::parse(&text, Vec::new()).unwrap()
}

fn replay(
    config: &Config,
    rec: &Path,
    out: &Path,
) -> (Result<app::ReplayReport, anyhow::Error>, ReplayTikTokSink) {
    let mut sink = ReplayTikTokSink::start(config, out).expect("sink starts");
    let opts = ReplayOptions {
        out_dir: out.to_owned(),
        shards: 2,
        progress: false,
        now_ms: remarket::clock::WallClock::now_ms(&remarket::clock::SystemClock),
    };
    let r = app::replay(config, &[rec.to_owned()], &opts, &mut sink);
    (r, sink)
}

fn requests(sink: &ReplayTikTokSink, endpoint: Endpoint, outcome: Outcome) -> u64 {
    sink.metrics
        .requests
        .get_or_create(&RequestLabels { endpoint, outcome })
        .get()
}

#[test]
fn tiktok_holds_exactly_the_decisions_under_faults() {
    let sim = Sim::start(TOKEN, |a| {
        // The app may do 8 requests a second; the sink is told 10: a throttle storm.
        a.qps = Some(8.0);
        a.not_ready_for = Some("3s".parse().unwrap());
        a.faults =
            Some("script@mapping:50002*3,http504,reset,ok,51003,http504,60001,50002*2".into());
    });
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 10, 40);
    let rec = recording(dir.path(), 1500, 12_000, 21);
    let out = dir.path().join("out");
    let (result, sink) = replay(&config, &rec, &out);
    let report = result.expect("replay with the TikTok sink");
    assert_eq!(report.sink.failed, 0);
    assert!(report.sink.adds > 300, "{:?}", report.sink);
    assert!(report.sink.deletes > 0, "{:?}", report.sink);

    let audience_of = audiences_of(&out);
    let want = expected(&out, &audience_of);
    assert_eq!(
        held(&sim.sim),
        want,
        "TikTok's membership differs from the decisions"
    );
    // The report shows the size TikTok reports: the members once there are 1,000, else 0.
    for (campaign, c) in &report.summary.campaigns {
        let n = want
            .get(&audience_of[campaign])
            .map_or(0, |m| m.len() as u64);
        let size = if n >= 1000 { n } else { 0 };
        assert_eq!(
            c.report.audience_size,
            Some(size),
            "{campaign}: {n} members"
        );
    }

    let log = sim.sim.requests();
    assert!(
        log.iter().all(|r| r.rows <= 40),
        "a request exceeded max_batch"
    );
    assert!(
        max_requests_per_second(&sim.sim) <= 10,
        "over the configured QPS"
    );
    assert_eq!(
        sim.sim.audiences().len(),
        4,
        "one existing + three created, no duplicate"
    );
    // The faults really happened, and the sink counted them.
    assert!(requests(&sink, Endpoint::Mapping, Outcome::Throttled) > 0);
    assert!(requests(&sink, Endpoint::Mapping, Outcome::NotReady) > 0);
    assert!(requests(&sink, Endpoint::Mapping, Outcome::Server) >= 6);
    assert!(requests(&sink, Endpoint::Mapping, Outcome::Transport) >= 3);
    assert_eq!(
        requests(&sink, Endpoint::Mapping, Outcome::Ok),
        log.iter()
            .filter(|r| r.path.ends_with("segment/mapping/") && r.code == Some(0))
            .count() as u64
    );
    assert_eq!(sink.metrics.pending_users.get(), 0);
}

#[test]
fn a_second_run_reuses_audiences_and_converges() {
    let sim = Sim::start(TOKEN, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 50, 200);
    let rec = recording(dir.path(), 800, 6_000, 5);
    let out = dir.path().join("out");
    replay(&config, &rec, &out).0.unwrap();
    let first = held(&sim.sim);
    let stored = std::fs::read(out.join("audiences.json")).unwrap();
    replay(&config, &rec, &out).0.unwrap();
    assert_eq!(
        held(&sim.sim),
        first,
        "re-sent adds and deletes are idempotent"
    );
    assert_eq!(std::fs::read(out.join("audiences.json")).unwrap(), stored);
    assert_eq!(sim.sim.audiences().len(), 4, "no audience created twice");
}

/// A replay into a fresh output folder (no `audiences.json`) finds the audiences the first
/// created by name instead of creating them again.
#[test]
fn a_fresh_output_folder_reuses_the_audiences_by_name() {
    let sim = Sim::start(TOKEN, |_| {});
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 50, 200);
    let rec = recording(dir.path(), 300, 2_000, 9);
    let (first, second) = (dir.path().join("one"), dir.path().join("two"));
    replay(&config, &rec, &first).0.unwrap();
    let held_first = held(&sim.sim);
    replay(&config, &rec, &second).0.unwrap();
    assert_eq!(sim.sim.audiences().len(), 4, "no audience created twice");
    assert_eq!(audiences_of(&first), audiences_of(&second));
    assert_eq!(held(&sim.sim), held_first);
}

/// The binary, killed with SIGKILL while its requests are slowed down, then run again to the
/// end: no duplicate audience, and the same membership as the decisions.
#[test]
fn restart_in_the_middle() {
    let sim = Sim::start(TOKEN, |a| a.faults = Some("latency@mapping:150ms".into()));
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &sim, 20, 25);
    let rec = recording(dir.path(), 1200, 9_000, 8);
    let out = dir.path().join("out");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_remarket"))
            .args(["replay", "--quiet", "--sink", "tiktok", "--config"])
            .arg(dir.path().join("config.toml"))
            .arg("--out")
            .arg(&out)
            .arg(&rec)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = run();
    // Wait (on the simulator's own log, not on time) until some mappings went through.
    let mut seen = 0;
    for _ in 0..2_000 {
        seen = sim
            .sim
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("segment/mapping/") && r.code == Some(0))
            .count();
        if seen >= 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(seen >= 4, "the first run never reached TikTok");
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = held(&sim.sim).values().map(|m| m.len()).sum::<usize>();

    sim.sim.set_faults("none").unwrap();
    let done = run().wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let want = expected(&out, &audiences_of(&out));
    let total = want.values().map(|m| m.len()).sum::<usize>();
    assert!(partial < total, "the kill came too late to test anything");
    assert_eq!(held(&sim.sim), want);
    assert_eq!(
        sim.sim.audiences().len(),
        4,
        "no duplicate audience after the restart"
    );
}

/// A crash between TikTok creating an audience and the id being stored: the next start adopts
/// the audience instead of creating a second one.
#[test]
fn an_interrupted_create_is_adopted() {
    let sim = Sim::start(TOKEN, |_| {});
    let adopted = sim
        .sim
        .add_audience(remarket::tiktok_sim::AudienceSeed {
            advertiser_id: ADV_A.into(),
            audience_id: None,
            name: Some("Cart abandoners".into()),
            audience_type: "Partner".into(),
        })
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 50, 500);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("audiences.json"),
        format!(r#"{{"cart-abandoners":{{"advertiser_id":"{ADV_A}","name":"Cart abandoners","audience_id":null}}}}"#),
    )
    .unwrap();
    let rec = recording(dir.path(), 300, 2_000, 3);
    replay(&config, &rec, &out).0.unwrap();
    assert_eq!(audiences_of(&out)["cart-abandoners"], adopted.audience_id);
    assert_eq!(sim.sim.audiences().len(), 4);
}

#[test]
fn existing_audiences_are_verified_at_start() {
    let sim = Sim::start(TOKEN, |a| a.audiences.clear());
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 50, 500);
    let err = ReplayTikTokSink::start(&config, &dir.path().join("out"))
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("big-ticket-viewers") && text.contains("does not exist"),
        "{text}"
    );

    sim.sim
        .add_audience(remarket::tiktok_sim::AudienceSeed {
            advertiser_id: ADV_A.into(),
            audience_id: Some(EXISTING.into()),
            name: Some("uploaded list".into()),
            audience_type: "Customer File Audience".into(),
        })
        .unwrap();
    let err = ReplayTikTokSink::start(&config, &dir.path().join("out"))
        .err()
        .unwrap();
    assert!(matches!(err, SinkError::Audience(_)));
    assert!(err.to_string().contains("not Partner"), "{err}");
}

#[test]
fn permanent_refusals_keep_the_users() {
    let sim = Sim::start(TOKEN, |a| a.faults = Some("script@mapping:40001*2".into()));
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 50, 10_000);
    let rec = recording(dir.path(), 400, 3_000, 4);
    let out = dir.path().join("out");
    let (result, sink) = replay(&config, &rec, &out);
    let report = result.expect("the replay writes its outputs");
    let err = report.sink_failure.expect("refused users are reported");
    assert!(out.join("summary.json").exists() && out.join("decisions.jsonl").exists());
    assert_eq!(report.sink.failed, err_count(&err));
    let failed = std::fs::read_to_string(out.join("sink-failed.jsonl")).unwrap();
    let n = failed.lines().count() as u64;
    assert!(n > 0);
    assert!(
        err.to_string().contains(&format!("refused {n} user(s)")),
        "{err}"
    );
    assert_eq!(sink.metrics.failed_users.get(), n);
    for line in failed.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["code"], 40001);
        assert!(v.get("EMAIL_SHA256").is_some() || v.get("PHONE_SHA256").is_some());
    }
}

#[test]
fn too_many_ids_splits_the_batch() {
    let sim = Sim::start(TOKEN, |a| a.faults = Some("script@mapping:40011".into()));
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 50, 10_000);
    let rec = recording(dir.path(), 400, 3_000, 6);
    let out = dir.path().join("out");
    let (result, sink) = replay(&config, &rec, &out);
    result.unwrap();
    assert_eq!(requests(&sink, Endpoint::Mapping, Outcome::Split), 1);
    let maps: Vec<_> = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("segment/mapping/"))
        .collect();
    let refused = maps.iter().find(|r| r.code == Some(40011)).unwrap();
    let (half, rest) = (refused.rows / 2, refused.rows - refused.rows / 2);
    let later: Vec<_> = maps
        .iter()
        .skip_while(|r| r.code != Some(40011))
        .skip(1)
        .filter(|r| r.advertiser_ids == refused.advertiser_ids && r.action == refused.action)
        .map(|r| r.rows)
        .collect();
    assert!(
        later.contains(&half) && later.contains(&rest),
        "{refused:?} then {later:?}"
    );
    assert_eq!(held(&sim.sim), expected(&out, &audiences_of(&out)));
}

/// A canary email, phone and token never appear in a log line (at `trace`), an error, or an
/// output file — on success, on retries, and on permanent failures.
#[test]
fn canaries_never_leak() {
    const CANARY_TOKEN: &str = "canary-token-SECRET-4242";
    const CANARY_EMAIL: &str = "Canary.Person@Example.ORG";
    const CANARY_PHONE: &str = "+1 555 010 9999";
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("canary.jsonl");
    std::fs::write(
        &rec,
        format!(
            concat!(
                "{{\"user_id\":\"canary\",\"type\":\"profile\",\"ts\":\"2026-11-02T09:00:00Z\",",
                "\"props\":{{\"email\":\"{e}\",\"phone\":\"{p}\",\"country\":\"Germany\",\"age\":40,",
                "\"app_version\":\"6.0\",\"email_unsubscribed\":false}}}}\n",
                "{{\"user_id\":\"canary\",\"event\":\"Product Viewed\",\"ts\":\"2026-11-02T10:00:00Z\",\"props\":{{\"price\":300}}}}\n",
                "{{\"user_id\":\"canary\",\"event\":\"Added To Cart\",\"ts\":\"2026-11-02T10:00:01Z\",\"props\":{{\"price\":300}}}}\n",
                "{{\"user_id\":\"canary\",\"event\":\"Checkout Started\",\"ts\":\"2026-11-02T10:00:02Z\"}}\n",
                "{{\"user_id\":\"other\",\"event\":\"App Launched\",\"ts\":\"2026-11-03T10:00:00Z\"}}\n",
            ),
            e = CANARY_EMAIL,
            p = CANARY_PHONE
        ),
    )
    .unwrap();
    let scenarios: [(&str, &str, bool); 3] = [
        ("retries", "script@mapping:40100,50002,http504,reset", true),
        ("refused", "rate@mapping:40001=1", false),
        ("bad-token", "none", false),
    ];
    for (name, faults, ok) in scenarios {
        let sim = Sim::start(CANARY_TOKEN, |a| a.faults = Some(faults.into()));
        let token_file = dir.path().join(format!("token-{name}"));
        let token = if name == "bad-token" {
            "canary-token-SECRET-wrong"
        } else {
            CANARY_TOKEN
        };
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join(format!("config-{name}.toml"));
        std::fs::write(&config, config_text(&sim.url, &token_file, 50, 100, "50ms")).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        let run = Command::new(env!("CARGO_BIN_EXE_remarket"))
            .env("REMARKET_LOG", "trace")
            .args(["replay", "--sink", "tiktok", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&out)
            .arg(&rec)
            .output()
            .unwrap();
        assert_eq!(
            run.status.success(),
            ok,
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let mut seen = String::from_utf8_lossy(&run.stdout).into_owned();
        seen.push_str(&String::from_utf8_lossy(&run.stderr));
        for entry in std::fs::read_dir(&out).into_iter().flatten() {
            seen.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default());
        }
        assert!(seen.len() > 100, "{name}: nothing was captured");
        let lower = seen.to_lowercase();
        for canary in [
            CANARY_TOKEN,
            "canary-token-secret",
            "canary.person",
            "5550109999",
            "555 010 9999",
        ] {
            assert!(
                !lower.contains(&canary.to_lowercase()),
                "{name}: {canary:?} leaked"
            );
        }
    }
}

/// While TikTok throttles everything, the sink stops taking ops after a bounded number
/// (input channel + open batch + queued batches), instead of growing memory.
#[test]
fn a_tiktok_outage_pushes_back_on_the_producer() {
    use remarket::detect::Ids;
    use remarket::sink::audiences::Target;
    use remarket::sink::metrics::SinkMetrics;
    use remarket::sink::ratelimit::RateLimiter;
    use remarket::sink::service::{SinkSettings, TikTokSink};
    use remarket::sink::tiktok::{Client, Secret, Token};
    use remarket::sink::{Action, AudienceOp};
    use std::sync::Arc;
    use std::time::Duration;

    let sim = Sim::start(TOKEN, |a| a.faults = Some("rate@mapping:40100=1".into()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = Arc::new(
            Client::new(
                &sim.url,
                Token::fixed(Secret::new(TOKEN)),
                Duration::from_secs(5),
            )
            .unwrap(),
        );
        let mut settings = SinkSettings::new(10, Duration::from_millis(20));
        settings.max_queued = 2;
        settings.max_in_flight = 1;
        let metrics = SinkMetrics::new();
        let sink = TikTokSink::start(
            client,
            Arc::new(RateLimiter::new(100.0)),
            vec![Target {
                campaign: "c".into(),
                advertiser: ADV_A.into(),
                audience_id: EXISTING.into(),
                email: true,
                phone: false,
            }],
            settings,
            metrics.clone(),
        );
        let mut accepted = 0u64;
        for i in 0..10_000u64 {
            let op = AudienceOp {
                campaign: 0,
                action: Action::Add,
                user: format!("u{i}").into(),
                ids: Ids {
                    email: Some([i as u8; 32]),
                    phone: None,
                },
            };
            // A send that does not complete within a second is blocked: the sink is full.
            match tokio::time::timeout(Duration::from_secs(1), sink.send(op)).await {
                Ok(r) => {
                    r.unwrap();
                    accepted += 1;
                }
                Err(_) => break,
            }
        }
        // channel 10 + open batch 9 + 2 queued batches + 1 batch waiting for a slot.
        assert!(
            (20..=10 + 9 + 30).contains(&accepted),
            "accepted {accepted}"
        );
        let pending = metrics.pending_users.get();
        assert!(
            pending > 0 && pending as u64 <= accepted,
            "pending {pending}"
        );
        assert!(
            sim.sim.requests().iter().all(|r| r.code != Some(0)),
            "nothing got through"
        );
    });
}

/// The simulator restarted without its state (or the audience was deleted at TikTok): the
/// `new` audiences remembered in `<out>/audiences.json` are gone. A replay says so, creates
/// them again and sends every member; `run`'s store (which would not re-send members already
/// exported) refuses with a message naming the audience and the fix.
#[test]
fn a_forgotten_audience_is_recreated_by_replay_and_explained_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 400, 3_000, 9);
    let out = dir.path().join("out");
    let first = Sim::start(TOKEN, |_| {});
    let config = setup(dir.path(), &first, 50, 500);
    replay(&config, &rec, &out).0.unwrap();
    let before = audiences_of(&out);
    drop(first);

    let restarted = Sim::start(TOKEN, |_| {});
    let config = setup(dir.path(), &restarted, 50, 500);
    replay(&config, &rec, &out).0.unwrap();
    let after = audiences_of(&out);
    // (The simulator numbers audiences alike after a restart: the ids may repeat.)
    assert_eq!(after.len(), before.len());
    assert_eq!(held(&restarted.sim), expected(&out, &after));
    assert_eq!(restarted.sim.audiences().len(), 4);

    // `run` keeps its store on a topic; here the same entries through `with_persist`.
    let gone = remarket::sink::audiences::AudienceStore::open(&out.join("audiences.json"))
        .unwrap()
        .entries()
        .clone();
    let fresh = Sim::start(TOKEN, |_| {});
    let config = setup(dir.path(), &fresh, 50, 500);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = remarket::sink::tiktok::Token::load(&config.tiktok.token).unwrap();
    let client = remarket::sink::tiktok::Client::new(
        &config.tiktok.base_url,
        token,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let mut store =
        remarket::sink::audiences::AudienceStore::with_persist(gone, Box::new(|_, _| Ok(())));
    let err = rt
        .block_on(remarket::sink::audiences::resolve(
            &client,
            &remarket::sink::ratelimit::RateLimiter::new(50.0),
            &remarket::sink::metrics::SinkMetrics::new(),
            &config.campaigns,
            &mut store,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no longer exists at TikTok")
            && err.contains("the audiences topic")
            && after.iter().any(
                |(c, id)| c != "big-ticket-viewers" && err.contains(&format!("audience {id},"))
            ),
        "{err}"
    );
    assert_eq!(
        fresh.sim.audiences().len(),
        1,
        "nothing created: only the existing audience"
    );
}

/// Households of three share one email and one phone, and converters are removed: an id
/// stays while one member holds it, and TikTok's final state is the same whatever the batch
/// size, and under faults — the ids of the current members.
#[test]
fn shared_identifiers_stay_while_one_member_holds_them() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording_shared(dir.path(), 1200, 9_000, 17, 3);
    let mut finals = Vec::new();
    for (max_batch, faults) in [
        (10_000, None),
        (20, None),
        (1, None),
        (
            20,
            Some("rate@mapping:50002=0.2,rate@mapping:http504=0.1,seed:5"),
        ),
    ] {
        let sim = Sim::start(TOKEN, |a| a.faults = faults.map(str::to_owned));
        let run = dir
            .path()
            .join(format!("run-{max_batch}-{}", faults.is_some()));
        std::fs::create_dir_all(&run).unwrap();
        let config = setup(&run, &sim, 1000, max_batch);
        let out = run.join("out");
        let (result, _sink) = replay(&config, &rec, &out);
        let report = result.expect("replay");
        assert_eq!(report.sink.failed, 0);
        let want = expected(&out, &audiences_of(&out));
        // Some removed user shared an id with a member who stays: the case under test.
        let text = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
        let removed_ids: BTreeSet<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|d| d["outcome"] == "removed")
            .flat_map(|d| {
                d["ids"]
                    .as_object()
                    .unwrap()
                    .values()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let kept: usize = want
            .values()
            .flatten()
            .filter(|(_, id)| removed_ids.contains(id))
            .count();
        assert!(kept > 0, "no removed user shared an id with a member");
        assert_eq!(
            held(&sim.sim),
            want,
            "max_batch {max_batch}, faults {faults:?}"
        );
        finals.push(held(&sim.sim).into_values().collect::<Vec<_>>());
    }
    assert!(finals.windows(2).all(|w| w[0] == w[1]));
}

fn err_count(e: &SinkError) -> u64 {
    match e {
        SinkError::Failed { report, .. } => report.failed,
        other => panic!("{other}"),
    }
}

/// TikTok answers every mapping with a server error: `replay --sink tiktok` retries each batch
/// for `tiktok.retry_for`, then reports its users as failed — it ends, writes every output
/// and its table, and exits 1.
#[test]
fn retries_end_at_retry_for_and_the_replay_still_reports() {
    let sim = Sim::start(TOKEN, |a| a.faults = Some("rate@mapping:50002=1".into()));
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path(), &sim, 50, 10_000);
    let config = dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[tiktok]\n", "[tiktok]\nretry_for = \"2s\"\n"),
    )
    .unwrap();
    let rec = recording(dir.path(), 300, 2_000, 6);
    let out = dir.path().join("out");
    let done = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .args(["replay", "--quiet", "--sink", "tiktok", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .arg(&rec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("user(s) for good"), "{stderr}");
    assert!(out.join("summary.json").exists(), "the summary is written");
    let failed = std::fs::read_to_string(out.join("sink-failed.jsonl")).unwrap();
    let exported = std::fs::read_to_string(out.join("decisions.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"exported\""))
        .count();
    assert!(exported > 0);
    // Every exported user's add failed (no delete: removals wait for their adds, and fail too).
    let adds = failed.lines().filter(|l| l.contains("\"add\"")).count();
    assert_eq!(adds, exported, "{failed}");
    for line in failed.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["code"], -1);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("last answer: server"),
            "{line}"
        );
    }
    assert!(held(&sim.sim).is_empty());
}

/// TikTok allows 5 requests a second while `tiktok.qps` is 10: the sink halves its rate on
/// throttle answers and climbs back in quiet windows, so few requests are throttled (before
/// adaptive rates, 456 of 824 were), the server never sees more than `qps` in a second, and
/// the audience is exact.
#[test]
fn throttles_slow_the_sink_down() {
    let sim = Sim::start(TOKEN, |a| a.qps = Some(5.0));
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), &sim, 10, 8);
    let rec = recording(dir.path(), 1000, 8_000, 12);
    let out = dir.path().join("out");
    let (result, sink) = replay(&config, &rec, &out);
    let report = result.expect("replay");
    assert_eq!(report.sink.failed, 0);
    assert_eq!(held(&sim.sim), expected(&out, &audiences_of(&out)));
    let mappings: Vec<_> = sim
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("segment/mapping/"))
        .collect();
    let throttled = mappings
        .iter()
        .filter(|r| matches!(r.code, Some(40100 | 40133)))
        .count();
    eprintln!(
        "{throttled} of {} mapping requests throttled",
        mappings.len()
    );
    assert!(mappings.len() > 60, "{}", mappings.len());
    assert!(
        throttled * 5 < mappings.len(),
        "{throttled} of {} throttled",
        mappings.len()
    );
    assert!(max_requests_per_second(&sim.sim) <= 10);
    assert!(
        requests(&sink, Endpoint::Mapping, Outcome::Throttled) > 0,
        "the server did throttle"
    );
}

/// Erasure requests in the input (`{"type": "delete"}` records after the recording): the
/// erased users' decisions leave `decisions.jsonl`, TikTok holds exactly the ids of the
/// members left (an id a household member still holds stays), and the summary counts them.
#[test]
fn erasure_records_take_users_out_of_every_audience() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording_shared(dir.path(), 600, 5_000, 29, 2);
    let before = {
        let sim = Sim::start(TOKEN, |_| {});
        let run = dir.path().join("before");
        std::fs::create_dir_all(&run).unwrap();
        let config = setup(&run, &sim, 1000, 200);
        let out = run.join("out");
        replay(&config, &rec, &out).0.expect("replay");
        (out, held(&sim.sim))
    };
    let text = std::fs::read_to_string(before.0.join("decisions.jsonl")).unwrap();
    let decisions: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let exported: BTreeSet<String> = (decisions.iter())
        .filter(|d| d["outcome"] == "exported")
        .map(|d| d["user_id"].as_str().unwrap().to_owned())
        .collect();
    let erased: Vec<String> = exported.into_iter().step_by(3).take(40).collect();
    assert!(
        erased.len() >= 10,
        "enough exported users: {}",
        erased.len()
    );
    let input = std::fs::read_to_string(&rec).unwrap();
    let last_ts = (input.lines())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"]
                .as_i64()
                .unwrap()
        })
        .max()
        .unwrap();
    let mut with_erasures = input.clone();
    for (i, u) in erased.iter().enumerate() {
        let ts = last_ts + 1 + i as i64;
        with_erasures.push_str(&format!(
            "{{\"type\":\"delete\",\"user_id\":\"{u}\",\"ts\":{ts}}}\n"
        ));
    }
    let rec2 = dir.path().join("with-erasures.jsonl");
    std::fs::write(&rec2, with_erasures).unwrap();

    let sim = Sim::start(TOKEN, |_| {});
    let run = dir.path().join("after");
    std::fs::create_dir_all(&run).unwrap();
    let config = setup(&run, &sim, 1000, 200);
    let out = run.join("out");
    let (result, _sink) = replay(&config, &rec2, &out);
    let report = result.expect("replay");
    assert_eq!(report.sink.failed, 0);
    assert_eq!(report.summary.erasures, erased.len() as u64);
    let text = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
    for line in text.lines() {
        let d: serde_json::Value = serde_json::from_str(line).unwrap();
        let user = d["user_id"].as_str().unwrap();
        assert!(
            !erased.iter().any(|e| e == user),
            "{user}'s decision stayed"
        );
    }
    let want = expected(&out, &audiences_of(&out));
    assert_eq!(held(&sim.sim), want);
    let count = |m: &std::collections::BTreeMap<String, Members>| {
        m.values().map(|s| s.len()).sum::<usize>()
    };
    assert!(
        count(&want) < count(&before.1),
        "the erasures took ids out: {} vs {}",
        count(&want),
        count(&before.1)
    );
}

/// `[[tiktok.account]]`: a campaign on an advertiser the default token does not cover is
/// served with that account's token (the simulator answers 40001 to the default one).
#[test]
fn an_account_token_serves_its_advertiser() {
    let dir = tempfile::tempdir().unwrap();
    let rec = recording(dir.path(), 400, 3_000, 31);
    let sim = Sim::start(TOKEN, |a| {
        a.tokens = vec![
            (TOKEN.to_owned(), vec![ADV_A.to_owned()]),
            ("b-token".to_owned(), vec![ADV_B.to_owned()]),
        ];
    });
    let b_token = dir.path().join("b-token");
    std::fs::write(&b_token, "b-token\n").unwrap();
    let mut results: Vec<u64> = Vec::new();
    for with_account in [false, true] {
        let run = dir.path().join(format!("run-{with_account}"));
        std::fs::create_dir_all(&run).unwrap();
        let token_file = run.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let mut text = config_text(&sim.url, &token_file, 1000, 500, "100ms");
        if with_account {
            text.push_str(&format!(
                "\n[[tiktok.account]]\nadvertiser_id = \"{ADV_B}\"\nname = \"Brand B\"\naccess_token_file = {:?}\n",
                b_token.display().to_string()
            ));
        }
        let config = Config::parse(&text, Vec::new()).unwrap();
        let out = run.join("out");
        if with_account {
            results.push(replay(&config, &rec, &out).0.unwrap().sink.failed);
        } else {
            // The sink looks ADV_B's audiences up at start: refused with the default token.
            let e = ReplayTikTokSink::start(&config, &out)
                .err()
                .expect("refused");
            assert!(e.to_string().contains("40001"), "{e}");
        }
    }
    assert_eq!(results, [0]);
    let out = dir.path().join("run-true/out");
    let want = expected(&out, &audiences_of(&out));
    let got = held(&sim.sim);
    for (audience, members) in &want {
        assert_eq!(got.get(audience), Some(members), "audience {audience}");
    }
}
