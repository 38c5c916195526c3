//! The `remarket` binary end to end: exit codes, `check-config`, deterministic replay of the
//! bundled sample and of generated recordings.

use std::path::Path;
use std::process::{Command, Output};

fn remarket(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_remarket"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run remarket")
}

/// `remarket replay --quiet` of `input` with the sample config into `out_dir`; must succeed.
fn replay_sample(out_dir: &Path, input: &Path) {
    let out = remarket(&[
        "replay",
        "--quiet",
        "--config",
        "config/sample.toml",
        "--out",
        out_dir.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

#[test]
fn check_config_accepts_the_sample() {
    let out = remarket(&["check-config", "--config", "config/sample.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 campaign(s)"));
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[engine]
allowed_lateness = "a while"
[[campaign]]
id = "one"
name = "One"
ad_account = "1"
start = "2026-11-01T00:00:00Z"
[campaign.trigger]
event = "A"
[campaign.who]
control_group = 150
[campaign.what]
audience = { existing = "5" }
identifiers = ["fax"]
[[campaign]]
id = "two"
name = "Two"
ad_account = "x"
start = "2026-11-01T00:00:00Z"
[campaign.trigger]
event = "A"
[campaign.what]
audience = { existing = "5" }
identifiers = ["email"]
"#,
    )
    .unwrap();
    let out = remarket(&["check-config", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "4 configuration problem(s)",
        "engine.allowed_lateness: invalid duration",
        "campaign one: who.control_group",
        "campaign one: what.identifiers",
        "campaign two: ad_account",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

/// A campaign block with trigger `a`, inaction `b`, goal `g` (events) and `conditions`.
fn campaign_toml(id: &str, a: &str, b: &str, g: &str, conditions: &str) -> String {
    format!(
        "[[campaign]]\nid = {id:?}\nname = \"n\"\nad_account = \"1\"\n\
         start = \"2026-01-01T00:00:00Z\"\n[campaign.trigger]\nevent = {a:?}\n\
         where = [{conditions}]\n[campaign.trigger.inaction]\nevent = {b:?}\nwithin = \"1h\"\n\
         [campaign.what]\naudience = {{ existing = \"5\" }}\nidentifiers = [\"email\"]\n\
         [campaign.goal]\nevent = {g:?}\nwithin = \"1d\"\n"
    )
}

/// Property and event names are 16-bit ids: past 65,535 of either, `check-config` reports a
/// problem and exits 1 (it panicked, exit 101).
#[test]
fn check_config_reports_too_many_names_as_a_problem_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let props: Vec<String> = (0..65_536)
        .map(|i| format!("{{ prop = \"p{i}\", op = \"exists\" }}"))
        .collect();
    let many_props = campaign_toml("props", "A", "B", "G", &props.join(", "));
    let many_events: String = (0..21_846)
        .map(|i| {
            let e = |k: &str| format!("{k}{i}");
            campaign_toml(&format!("c{i}"), &e("a"), &e("b"), &e("g"), "")
        })
        .collect();
    for (name, text, want) in [
        (
            "props.toml",
            many_props,
            "campaign props: trigger.where[65523].prop: more than 65535 distinct property names",
        ),
        (
            "events.toml",
            many_events,
            "campaign c21845: trigger.event: more than 65535 distinct event names",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = remarket(&["check-config", "--config", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("1 configuration problem(s)"), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn run_without_kafka_section_fails_clearly() {
    let out = remarket(&["run", "--config", "config/sample.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a [kafka] section"));
}

#[test]
fn sample_replay_is_identical_for_any_shards_and_runs() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, shards) in dirs.iter().zip(["1", "2", "5"]) {
        let out = remarket(&[
            "replay",
            "--config",
            "config/sample.toml",
            "--shards",
            shards,
            "--out",
            dir.path().to_str().unwrap(),
            "config/sample-events.jsonl",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "no progress bar when stderr is not a terminal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(table.contains("cart-abandoners"), "{table}");
    }
    for name in ["decisions.jsonl", "summary.json", "dead-letter.jsonl"] {
        let first = read(dirs[0].path(), name);
        assert!(!first.is_empty(), "{name} is empty");
        for d in &dirs[1..] {
            assert!(
                first == read(d.path(), name),
                "{name} differs between shard counts"
            );
        }
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&read(dirs[0].path(), "summary.json")).unwrap();
    for (id, c) in summary["campaigns"].as_object().unwrap() {
        let sum: u64 = ["exported", "control", "capped", "unreachable"]
            .iter()
            .map(|k| c[k].as_u64().unwrap())
            .sum();
        assert_eq!(c["qualified"].as_u64().unwrap(), sum, "{id}");
        assert!(c["exported"].as_u64().unwrap() > 0, "{id} exports nobody");
    }
    assert!(
        summary["malformed"].as_u64().unwrap() > 0,
        "the sample has malformed lines"
    );
}

/// The same generated recording, as plain lines and as four `kcat -J` partitions, gives the
/// same decisions: the disorder stays within the allowed lateness, so arrival order is moot.
#[test]
fn generated_recording_gives_the_same_decisions_plain_and_partitioned() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for partitions in ["0", "4"] {
        let rec = dir.path().join(format!("rec-{partitions}.jsonl"));
        let gen = remarket(&[
            "generate",
            "--users",
            "3000",
            "--events",
            "40000",
            "--seed",
            "11",
            "--partitions",
            partitions,
        ]);
        assert!(gen.status.success());
        std::fs::write(&rec, &gen.stdout).unwrap();
        let out_dir = dir.path().join(format!("out-{partitions}"));
        replay_sample(&out_dir, &rec);
        outputs.push(out_dir);
    }
    let a = read(&outputs[0], "decisions.jsonl");
    assert!(a.len() > 1000, "the workload qualifies users");
    assert!(a == read(&outputs[1], "decisions.jsonl"));
    assert_eq!(
        read(&outputs[0], "summary.json"),
        read(&outputs[1], "summary.json")
    );
}

/// A recording replayed gzip- or zstd-compressed, or from stdin, gives byte for byte the
/// outputs of the plain file (kcat envelopes of three partitions and plain lines mixed).
#[test]
fn replay_reads_gzip_zstd_and_stdin_like_the_plain_file() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("rec.jsonl");
    let out = remarket(&[
        "generate", "--users", "300", "--events", "3000", "--seed", "5",
    ]);
    assert!(out.status.success());
    // Sample lines first (plain), then the generated recording as kcat envelopes.
    let mut data = std::fs::read("config/sample-events.jsonl").unwrap();
    for (i, line) in out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        let env = serde_json::json!({
            "topic": "events", "partition": i % 3, "offset": i / 3,
            "ts": v["ts"], "key": v["user_id"],
            "payload": std::str::from_utf8(line).unwrap(),
        });
        data.extend_from_slice(env.to_string().as_bytes());
        data.push(b'\n');
    }
    std::fs::write(&plain, &data).unwrap();
    let gz = dir.path().join("rec.jsonl.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut e, &data).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let zst = dir.path().join("rec.zst");
    std::fs::write(&zst, zstd::encode_all(&data[..], 3).unwrap()).unwrap();

    let replay = |input: &Path, stdin: bool, out: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_remarket"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "replay",
            "--quiet",
            "--config",
            "config/sample.toml",
            "--out",
        ]);
        cmd.arg(out);
        if stdin {
            cmd.arg("-").stdin(std::fs::File::open(input).unwrap());
        } else {
            cmd.arg(input);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let want = dir.path().join("want");
    replay(&plain, false, &want);
    let summary: serde_json::Value = serde_json::from_slice(&read(&want, "summary.json")).unwrap();
    assert!(summary["records"].as_u64().unwrap() > 15_000, "{summary}");
    for (name, input, stdin) in [
        ("gz", &gz, false),
        ("zst", &zst, false),
        ("stdin", &zst, true),
    ] {
        let got = dir.path().join(name);
        replay(input, stdin, &got);
        for file in ["decisions.jsonl", "summary.json"] {
            assert!(
                read(&got, file) == read(&want, file),
                "{name}: {file} differs"
            );
        }
        let names = |dir: &Path| {
            String::from_utf8(read(dir, "dead-letter.jsonl"))
                .unwrap()
                .lines()
                .count()
        };
        assert_eq!(names(&got), names(&want), "{name}: dead letters");
    }
}

/// One CleverTap-style record with `ts` in milliseconds where seconds were meant (the year
/// ~57,000) must not stop the partition: it is dead-lettered as `future_ts` and every later
/// good record is still applied (not `late`). In a `kcat -J` envelope the reference is the
/// Kafka timestamp; for a plain line, the wall clock at replay.
#[test]
fn a_record_from_the_far_future_does_not_stop_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let t0: i64 = 1_764_000_000_000; // 2025-11-24
    let mut plain = String::new();
    let mut kcat = String::new();
    for (i, ts) in [t0, t0 * 1000, t0 + 1_000, t0 + 2_000]
        .into_iter()
        .enumerate()
    {
        let user = format!("u{i}");
        let line = format!(
            r#"{{"user_id":"{user}","event":"Added To Cart","ts":{ts},"props":{{"price":25}}}}"#
        );
        plain.push_str(&line);
        plain.push('\n');
        let kafka_ts = t0 + i as i64 * 1_000;
        kcat.push_str(&format!(
            r#"{{"topic":"events","partition":0,"offset":{i},"tstype":"create","ts":{kafka_ts},"broker":1,"key":"{user}","payload":{}}}"#,
            serde_json::to_string(&line).unwrap()
        ));
        kcat.push('\n');
    }
    for (name, text) in [("plain.jsonl", plain), ("kcat.jsonl", kcat)] {
        let input = dir.path().join(name);
        std::fs::write(&input, text).unwrap();
        let out_dir = dir.path().join(format!("out-{name}"));
        replay_sample(&out_dir, &input);
        let dead = String::from_utf8(read(&out_dir, "dead-letter.jsonl")).unwrap();
        let reasons: Vec<&str> = dead
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                match v["reason"].as_str().unwrap() {
                    "future_ts" => "future_ts",
                    other => panic!("{name}: unexpected dead letter {other}: {l}"),
                }
            })
            .collect();
        assert_eq!(reasons, ["future_ts"], "{name}");
        let summary: serde_json::Value =
            serde_json::from_slice(&read(&out_dir, "summary.json")).unwrap();
        assert_eq!(summary["late_dropped"], 0, "{name}: {summary}");
        assert_eq!(summary["records"], 3, "{name}: {summary}");
    }
}

fn remarket_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_remarket"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("REMARKET_LOG")
        .env_remove("RUST_LOG")
        .env_remove("REMARKET_LOG_FORMAT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run remarket")
}

#[test]
fn log_settings_that_do_not_parse_are_errors_and_rust_log_is_read() {
    let check = ["check-config", "-c", "config/sample.toml"];
    assert!(remarket_env(&check, &[]).status.success());
    for (var, value) in [
        ("REMARKET_LOG", "remarket=notalevel"),
        // Read when REMARKET_LOG is unset: its error names it.
        ("RUST_LOG", "remarket=notalevel"),
        ("REMARKET_LOG_FORMAT", "xml"),
    ] {
        let out = remarket_env(&check, &[(var, value)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}={value}: {err}");
        assert!(err.contains(var), "{var}={value}: {err}");
    }
    // REMARKET_LOG wins over RUST_LOG.
    let out = remarket_env(
        &check,
        &[("REMARKET_LOG", "info"), ("RUST_LOG", "remarket=notalevel")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_logs_stay_json_up_to_the_fatal_line() {
    let out = remarket_env(
        &["run", "-c", "config/sample.toml"],
        &[("REMARKET_LOG_FORMAT", "json")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let mut fatal = 0;
    for line in err.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["level"] == "ERROR" {
            fatal += 1;
            assert!(
                v["fields"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("[kafka]")),
                "{line}"
            );
        }
    }
    assert_eq!(fatal, 1, "{err}");
}

// === the output directory: atomic and owned ===

/// The three result files of `dir`.
fn outputs(dir: &Path) -> Vec<Vec<u8>> {
    ["decisions.jsonl", "summary.json", "dead-letter.jsonl"]
        .iter()
        .map(|n| read(dir, n))
        .collect()
}

/// Temporary files a replay left in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

/// Polls until `ready` holds (every 5 ms, for at most a minute).
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    for _ in 0..12_000 {
        if ready() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("gave up waiting: {what}");
}

/// A replay killed mid-way (SIGKILL while it writes its dead letters) leaves the previous
/// run's files as they were; the next replay replaces its temporary files.
#[test]
fn a_killed_replay_leaves_the_previous_outputs_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sample = Path::new("config/sample-events.jsonl");
    replay_sample(&out, sample);
    let before = outputs(&out);

    let big = dir.path().join("big.jsonl");
    let generated = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .args([
            "generate", "--users", "20000", "--events", "400000", "--seed", "7",
        ])
        .args(["--malformed-pct", "2"])
        .stdout(std::fs::File::create(&big).unwrap())
        .status()
        .unwrap();
    assert!(generated.success());
    let mut child = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "replay",
            "--quiet",
            "--config",
            "config/sample.toml",
            "--out",
        ])
        .arg(&out)
        .arg(&big)
        .spawn()
        .unwrap();
    // Dead letters on disk: the replay is past its start and far from its end.
    let dead = out.join(".dead-letter.jsonl.tmp");
    wait_for("dead letters written", || {
        std::fs::metadata(&dead).is_ok_and(|m| m.len() > 0)
    });
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the replay ended before it was killed");

    assert!(outputs(&out) == before, "the previous outputs changed");
    assert_eq!(
        temporaries(&out),
        [
            ".dead-letter.jsonl.tmp",
            ".decisions.jsonl.tmp",
            ".summary.json.tmp"
        ]
    );
    replay_sample(&out, sample);
    assert!(outputs(&out) == before);
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
}

/// While a replay owns `--out`, a second one into it stops at once with a clear error and
/// touches nothing; the first one's result is what it would have been alone.
#[test]
fn a_second_replay_into_the_same_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sample = std::fs::read("config/sample-events.jsonl").unwrap();
    let from_stdin = |out: &Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_remarket"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "replay",
                "--quiet",
                "--config",
                "config/sample.toml",
                "--out",
            ])
            .arg(out)
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().unwrap()
    };
    // The first replay holds the directory while it waits for the rest of its input.
    let mut first = from_stdin(&out);
    let mut stdin = first.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &sample[..sample.len() / 2]).unwrap();
    wait_for("the first replay's temporary files", || {
        temporaries(&out).len() == 3
    });

    let second = remarket(&[
        "replay",
        "--quiet",
        "--config",
        "config/sample.toml",
        "--out",
        out.to_str().unwrap(),
        "config/sample-events.jsonl",
    ]);
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    let pid = format!("(pid {})", first.id());
    assert!(
        err.contains("is in use by another replay") && err.contains(&pid),
        "{err}"
    );
    assert!(
        err.contains(&out.join(".lock").display().to_string()),
        "{err}"
    );

    std::io::Write::write_all(&mut stdin, &sample[sample.len() / 2..]).unwrap();
    drop(stdin);
    let done = first.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let alone = dir.path().join("alone");
    let mut reference = from_stdin(&alone);
    std::io::Write::write_all(&mut reference.stdin.take().unwrap(), &sample).unwrap();
    assert!(reference.wait().unwrap().success());
    assert!(outputs(&out) == outputs(&alone), "the outputs were mixed");
    assert!(temporaries(&out).is_empty());
}

/// A write that fails — here every file is limited to 4 KiB (`ulimit -f`, which binds root
/// too), as a full disk would stop it — is reported with the file's name, and the previous
/// outputs stay; so does a `--out` that cannot be created.
#[cfg(unix)]
#[test]
fn output_errors_name_the_file_and_keep_the_previous_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sample = Path::new("config/sample-events.jsonl");
    replay_sample(&out, sample);
    let before = outputs(&out);

    let limited = Command::new("sh")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-c", r#"trap "" XFSZ; ulimit -f 8; exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_remarket"))
        .args([
            "replay",
            "--quiet",
            "--config",
            "config/sample.toml",
            "--out",
        ])
        .arg(&out)
        .arg(sample)
        .output()
        .unwrap();
    assert_eq!(limited.status.code(), Some(1));
    let err = String::from_utf8_lossy(&limited.stderr);
    // One of the set's files, or the unnamed file in the directory that keeps the
    // decisions until the end of the input.
    let spill = format!(
        "cannot write a temporary file in {}: File too large",
        out.display()
    );
    let named = ["dead-letter.jsonl", "decisions.jsonl", "summary.json"]
        .iter()
        .any(|n| {
            let file = out.join(format!(".{n}.tmp"));
            err.contains(&format!("cannot write {}: File too large", file.display()))
        })
        || err.contains(&spill);
    assert!(named, "{err}");
    assert!(outputs(&out) == before, "the previous outputs changed");
    assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));

    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, "").unwrap();
    let bad = not_a_dir.join("out");
    let o = remarket(&[
        "replay",
        "--config",
        "config/sample.toml",
        "--out",
        bad.to_str().unwrap(),
        "config/sample-events.jsonl",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("cannot create {}: Not a directory", bad.display())),
        "{err}"
    );
}

/// `engine.dead_letter = "redacted"`: each dead letter keeps its reason and position and the
/// SHA-256 of the line instead of it — the same lines as the raw mode's, one for one.
#[test]
fn redacted_dead_letters_keep_only_reason_position_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string("config/sample.toml").unwrap();
    let redacted = sample.replace("[engine]\n", "[engine]\ndead_letter = \"redacted\"\n");
    assert_ne!(redacted, sample);
    let config = dir.path().join("redacted.toml");
    std::fs::write(&config, redacted).unwrap();
    let (raw_out, red_out) = (dir.path().join("raw"), dir.path().join("red"));
    replay_sample(&raw_out, Path::new("config/sample-events.jsonl"));
    let out = remarket(&[
        "replay",
        "--quiet",
        "--config",
        config.to_str().unwrap(),
        "--out",
        red_out.to_str().unwrap(),
        "config/sample-events.jsonl",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = |d: &Path| -> Vec<serde_json::Value> {
        String::from_utf8(read(d, "dead-letter.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (raw, red) = (lines(&raw_out), lines(&red_out));
    assert_eq!(raw.len(), red.len());
    assert!(!raw.is_empty());
    let input = std::fs::read("config/sample-events.jsonl").unwrap();
    let input: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    for (a, b) in raw.iter().zip(&red) {
        let keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["line", "reason", "sha256", "source"], "{b}");
        assert_eq!(
            (&a["reason"], &a["line"], &a["source"]),
            (&b["reason"], &b["line"], &b["source"])
        );
        let line = input[b["line"].as_u64().unwrap() as usize - 1];
        assert_eq!(
            b["sha256"],
            remarket::identity::to_hex(&remarket::identity::sha256(line))
        );
    }
}

/// `check-config --campaign FILE` checks one campaign as the admin API would publish it with
/// the config: the sample's segment is known, and every problem is listed.
#[test]
fn check_config_checks_a_single_campaign_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[campaign]]\nid = \"seg\"\nname = \"S\"\nad_account = \"1\"\nstart = \"2026-11-01T00:00:00Z\"\n\
         [campaign.trigger]\nevent = \"Added To Cart\"\n\
         [campaign.who]\nsegment = \"reachable-shoppers\"\n\
         [campaign.what]\naudience = { existing = \"9\" }\nidentifiers = [\"email\"]\n",
    )
    .unwrap();
    let out = remarket(&[
        "check-config",
        "-c",
        "config/sample.toml",
        "--campaign",
        good.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok, 5 campaign(s)"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "id = \"bad\"\nname = \"B\"\nad_account = \"1\"\nstart = \"soon\"\n\
         [trigger]\nevent = \"Added To Cart\"\n[who]\nsegment = \"nope\"\ncontrol_group = 200\n\
         [what]\naudience = { existing = \"9\" }\nidentifiers = [\"email\"]\n",
    )
    .unwrap();
    let out = remarket(&[
        "check-config",
        "-c",
        "config/sample.toml",
        "--campaign",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for field in ["start", "who.segment", "who.control_group"] {
        assert!(
            err.contains(&format!("campaign bad: {field}:")),
            "{field}: {err}"
        );
    }
}
