//! Replay's peak memory against the recording's size (`cargo bench --bench replay_memory`;
//! issue 8, target 1): the same 100 k users with 1 M and with 10 M events (181 MB and
//! 1.47 GB of JSON lines), each generated into a pipe and replayed from standard input, so the
//! recording is never on disk and is eight times larger than the replay's memory. Peak RSS
//! comes from GNU time (`/usr/bin/time -f %M`, Debian's `time` package). Runs alternate
//! between the sizes (noise hits both alike); `REMARKET_BENCH_RUNS` of each (default 3).
//! Prints each run, the medians and their ratio (target ≤ 1.25×).

use std::process::{Command, Stdio};

const USERS: &str = "100000";

/// Peak RSS in KiB of `remarket replay` over `events` generated events, and the seconds.
fn replay(events: &str, out: &std::path::Path) -> (u64, f64) {
    let bin = env!("CARGO_BIN_EXE_remarket");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/sample.toml");
    let mut generate = Command::new(bin)
        .args([
            "generate", "--users", USERS, "--events", events, "--seed", "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run remarket generate");
    let started = tokio::time::Instant::now();
    let replay = Command::new("/usr/bin/time")
        .args(["-f", "%M", bin, "replay", "--quiet", "--config", config])
        .args(["--shards", "2", "--out"])
        .arg(out)
        .arg("-")
        .stdin(generate.stdout.take().expect("piped"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run /usr/bin/time (Debian's `time` package)");
    let secs = started.elapsed().as_secs_f64();
    assert!(generate.wait().expect("generate ends").success());
    let err = String::from_utf8_lossy(&replay.stderr);
    assert!(replay.status.success(), "replay failed: {err}");
    let kib = err
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS from /usr/bin/time in: {err}"));
    (kib, secs)
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("REMARKET_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut small, mut large) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        for (events, peaks) in [("1000000", &mut small), ("10000000", &mut large)] {
            let (kib, secs) = replay(events, &dir.path().join(format!("{events}-{run}")));
            println!(
                "replay_memory/{events} events: peak RSS {} MB ({secs:.1} s with the generator)",
                kib / 1024
            );
            peaks.push(kib);
        }
    }
    let (s, l) = (median(small), median(large));
    println!(
        "replay_memory: medians {} MB (1 M events) vs {} MB (10 M events) = {:.2}x (target <= 1.25x)",
        s / 1024,
        l / 1024,
        l as f64 / s as f64
    );
}
