//! Golden scenarios (`tests/scenarios/*/`) run through the `remarket` binary: the output files
//! must equal `expected/` byte for byte, for one shard and for three.

use std::path::{Path, PathBuf};
use std::process::Command;

const OUTPUTS: [&str; 3] = ["decisions.jsonl", "summary.json", "dead-letter.jsonl"];

fn scenarios() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/scenarios exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    // Relative paths, so that dead-letter `source` fields do not depend on the checkout.
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    files
        .into_iter()
        .map(|p| p.strip_prefix(base).unwrap().to_owned())
        .collect()
}

fn replay(dir: &Path, shards: usize, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("replay")
        .arg("--quiet")
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("--out")
        .arg(out)
        .arg("--shards")
        .arg(shards.to_string())
        .args(inputs(dir))
        .status()
        .expect("run remarket");
    assert!(status.success(), "{}: replay failed", dir.display());
}

/// Lines of the scenario's inputs: a last line without `\n` counts.
fn input_lines(dir: &Path) -> u64 {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    inputs(dir)
        .iter()
        .map(|p| {
            let data = std::fs::read(base.join(p)).unwrap();
            let ends = data.iter().filter(|&&b| b == b'\n').count();
            (ends + usize::from(data.last().is_some_and(|&b| b != b'\n'))) as u64
        })
        .sum()
}

/// Every input line is counted once: as a record, a malformed line or a blank one.
fn assert_every_line_counted(dir: &Path, out: &Path) {
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let n = |k: &str| {
        summary[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no {k} in summary.json", dir.display()))
    };
    assert_eq!(
        n("records") + n("malformed") + n("blank_lines"),
        input_lines(dir),
        "{}: records + malformed + blank_lines",
        dir.display()
    );
}

#[test]
fn golden_scenarios() {
    let bless = std::env::var_os("REMARKET_BLESS").is_some();
    let dirs = scenarios();
    assert!(dirs.len() >= 6, "scenarios went missing: {dirs:?}");
    for dir in dirs {
        for shards in [1, 3] {
            let out = tempfile::tempdir().unwrap();
            replay(&dir, shards, out.path());
            assert_every_line_counted(&dir, out.path());
            for name in OUTPUTS {
                let got = std::fs::read(out.path().join(name)).unwrap();
                let want_path = dir.join("expected").join(name);
                if bless {
                    std::fs::create_dir_all(want_path.parent().unwrap()).unwrap();
                    std::fs::write(&want_path, &got).unwrap();
                    continue;
                }
                let want = std::fs::read(&want_path)
                    .unwrap_or_else(|e| panic!("{}: {e}", want_path.display()));
                assert!(
                    got == want,
                    "{} (--shards {shards}) differs from {}:\n--- got\n{}\n--- want\n{}",
                    name,
                    want_path.display(),
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(&want)
                );
            }
        }
    }
}
