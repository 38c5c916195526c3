//! `remarket run` while Kafka cannot be reached: `/healthz` answers from the start, `/readyz`
//! says in JSON what start-up waits for (the brokers are retried with backoff, not given up
//! on), and SIGTERM during that wait is a clean exit (code 0).

use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

/// `GET path` on `addr`: status code and body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

#[test]
fn health_while_the_brokers_are_unreachable_and_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml"))
            .unwrap();
    // Nothing listens on port 1.
    let config = dir.path().join("remarket.toml");
    std::fs::write(
        &config,
        format!(
            "{sample}\n[kafka]\nbrokers = \"127.0.0.1:1\"\nevents_topic = \"events\"\n\
             profiles_topic = \"events\"\n[http]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .args(["run", "-c", config.to_str().unwrap()])
        .env("TIKTOK_ACCESS_TOKEN", "test-token")
        .env("REMARKET_LOG", "remarket=info")
        .env_remove("REMARKET_LOG_FORMAT")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The admin address is logged first thing.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("run exited before serving: {:?}", child.wait());
        }
        addr = line
            .split("listen=")
            .nth(1)
            .map(|a| a.split_whitespace().next().unwrap_or("").to_owned());
    }
    let addr = addr.unwrap();
    // Keep reading its log so that it never blocks on a full pipe.
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        rest
    });
    assert_eq!(get(&addr, "/healthz").0, 200);
    // Not ready, and says why: first "asking", then "unreachable" once an attempt failed
    // (each takes up to 10 s). Polled with a deadline, not slept on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (code, body) = get(&addr, "/readyz");
        assert_eq!(code, 503, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
        assert_eq!(v["ready"], false);
        if v["waiting_for"][0]
            .as_str()
            .is_some_and(|w| w.contains("brokers unreachable"))
        {
            break body;
        }
        assert!(Instant::now() < deadline, "never said why: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("retrying"), "{body}");
    // Still alive, still healthy: it retries instead of exiting.
    assert!(
        child.try_wait().unwrap().is_none(),
        "run gave up on the brokers"
    );
    assert_eq!(get(&addr, "/healthz").0, 200);

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains("test-token"), "the token was logged");
}
