//! TikTok sink benchmark (`cargo bench --bench sink`), against the simulator:
//! 1. backlog: 1 M qualified users handed to the sink at once, 50 QPS, batches of 10,000,
//!    the simulator in a child process so this process's CPU time is the sink's own:
//!    users per request, QPS utilisation, CPU seconds per 1 M users;
//! 2. steady trickle (not backlogged): 400 users/s for 8 s with `linger` 1 s: p50/p99 time
//!    from handing a user to the sink to the arrival of the request that carries it.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use remarket::detect::Ids;
use remarket::sink::audiences::Target;
use remarket::sink::metrics::SinkMetrics;
use remarket::sink::ratelimit::RateLimiter;
use remarket::sink::service::{SinkSettings, TikTokSink};
use remarket::sink::tiktok::{Client, Secret, Token};
use remarket::sink::{Action, AudienceOp};
use remarket::tiktok_sim::{SimArgs, Simulator};
use tokio::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADV: &str = "7000000000000000001";
const AUD: &str = "6000000000000000001";
const TOKEN: &str = "bench-token";

fn op(i: u64) -> AudienceOp {
    let mut email = [0u8; 32];
    email[..8].copy_from_slice(&i.to_be_bytes());
    AudienceOp {
        campaign: 0,
        action: Action::Add,
        user: format!("u{i}").into(),
        ids: Ids {
            email: Some(email),
            phone: None,
        },
    }
}

fn target() -> Vec<Target> {
    vec![Target {
        campaign: "c".into(),
        advertiser: ADV.into(),
        audience_id: AUD.into(),
        email: true,
        phone: false,
    }]
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (12 and 13 after the comm).
    (ticks(11) + ticks(12)) / 100.0
}

async fn backlog() {
    const USERS: u64 = 1_000_000;
    const QPS: f64 = 50.0;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .args(["tiktok-sim", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--token",
            &format!("{TOKEN}={ADV}"),
            "--audience",
            &format!("{ADV}:{AUD}"),
        ])
        .args(["--qps", "50"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ops: Vec<AudienceOp> = (0..USERS).map(op).collect();
    let client = Arc::new(
        Client::new(
            &url,
            Token::fixed(Secret::new(TOKEN)),
            Duration::from_secs(60),
        )
        .unwrap(),
    );
    let metrics = SinkMetrics::new();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let sink = TikTokSink::start(
        client,
        Arc::new(RateLimiter::new(QPS)),
        target(),
        SinkSettings::new(10_000, Duration::from_secs(5)),
        metrics.clone(),
    );
    for o in ops {
        sink.send(o).await.unwrap();
    }
    let outcome = sink.finish().await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    // Arrival times at the simulator: the rate TikTok would see.
    let log: serde_json::Value = reqwest::get(format!("{url}/sim/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at: Vec<f64> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("segment/mapping/")
        })
        .map(|r| r["at_ms"].as_f64().unwrap())
        .collect();
    let span = (at.last().unwrap() - at.first().unwrap()) / 1000.0;
    let steady = (at.len() - 1) as f64 / span / QPS;
    let _ = child.kill();
    let _ = child.wait();
    let r = &outcome.report;
    assert_eq!(r.adds, USERS, "{r:?}");
    println!(
        "sink/backlog: {USERS} users in {} requests ({} retried): {:.0} users/request; \
         {:.2} s wall; QPS utilisation {:.1}% ({} requests over {span:.2} s between the first \
         and last arrival at {QPS} QPS); sink CPU {:.2} s per 1 M users",
        r.requests,
        r.retries,
        USERS as f64 / r.requests as f64,
        secs,
        100.0 * steady,
        at.len(),
        cpu * 1_000_000.0 / USERS as f64,
    );
}

async fn trickle() {
    const RATE: u64 = 400;
    const SECS: u64 = 8;
    let args = SimArgs {
        tokens: vec![(TOKEN.into(), vec![ADV.into()])],
        audiences: vec![(ADV.into(), AUD.into())],
        ..SimArgs::default()
    };
    let sim_start = Instant::now();
    let sim = Simulator::new(&args).unwrap();
    let (url, _handle) = sim.clone().spawn().await.unwrap();
    let client = Arc::new(
        Client::new(
            &url,
            Token::fixed(Secret::new(TOKEN)),
            Duration::from_secs(60),
        )
        .unwrap(),
    );
    let linger = Duration::from_secs(1);
    let sink = TikTokSink::start(
        client,
        Arc::new(RateLimiter::new(50.0)),
        target(),
        SinkSettings::new(10_000, linger),
        SinkMetrics::new(),
    );
    let mut submitted = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    for i in 0..RATE * SECS {
        tick.tick().await;
        submitted.push(Instant::now());
        sink.send(op(i)).await.unwrap();
    }
    sink.finish().await;
    // Requests of one key carry users in submission order.
    let mut lat = Vec::new();
    let mut next = 0usize;
    for r in sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("segment/mapping/"))
    {
        let arrived = sim_start + Duration::from_millis(r.at_ms);
        for t in &submitted[next..next + r.rows] {
            lat.push(arrived.saturating_duration_since(*t));
        }
        next += r.rows;
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "sink/trickle: {} users at {RATE}/s, linger {linger:?}: qualification -> request p50 {:?}, \
         p99 {:?}, max {:?} (target: p99 <= linger + 100 ms)",
        lat.len(),
        p(0.50),
        p(0.99),
        lat.last().unwrap()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(backlog());
    rt.block_on(trickle());
}
