//! What the dashboard and the alert rules read, and promtool: shared by the rule tests
//! (`tests/alerts.rs`) and the live scrape check of `tests/run_kafka.rs`.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Labels Prometheus adds or that come from other exporters, not from remarket.
const TARGET_LABELS: [&str; 5] = ["job", "namespace", "pod", "instance", "deployment"];

/// `promtool` on `PATH`; `None` (skip) when missing and `CI` is unset, a panic in CI.
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed, but CI is set: CI must provide it (.ci/run)"
        );
        eprintln!("skipping: promtool not installed (Debian: apt-get install prometheus)");
    }
    found
}

/// Runs promtool with `args` in `dir` (stdin from `input`); its output on failure.
pub fn run_promtool(
    tool: &Path,
    dir: &Path,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().unwrap();
    if let Some(text) = input {
        stdin.write_all(text.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base")
}

/// Every PromQL expression of the dashboard and the alert rules, named by where it is.
pub fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dashboard = std::fs::read_to_string(deploy_dir().join("dashboards/remarket.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    fn walk(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => {
                            out.push(("dashboard".into(), e.replace("$__rate_interval", "5m")));
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut out);
    // The rules file's `expr: |` blocks: the lines indented deeper than `expr:`.
    let rules = std::fs::read_to_string(deploy_dir().join("alerts.rules.yml")).unwrap();
    let mut lines = rules.lines().peekable();
    let mut alert = String::new();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            alert = name.to_owned();
        } else if line.trim() == "expr: |" {
            let mut expr = String::new();
            while let Some(next) =
                lines.next_if(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            {
                expr.push_str(next.trim());
                expr.push(' ');
            }
            out.push((format!("alert {alert}"), expr));
        } else if let Some(e) = line.trim().strip_prefix("expr: ") {
            out.push((format!("alert {alert}"), e.to_owned()));
        }
    }
    out
}

/// The `remarket_*` series an expression reads, and the labels it matches or groups by
/// (except those Prometheus or other exporters add).
pub fn references(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut metrics = BTreeSet::new();
    let mut labels = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        if !ident(bytes[i]) || (i > 0 && ident(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && ident(bytes[i]) {
            i += 1;
        }
        let word: String = bytes[start..i].iter().collect();
        let rest: String = bytes[i..].iter().collect::<String>();
        let rest = rest.trim_start();
        if word.starts_with("remarket_") {
            metrics.insert(word);
        } else if matches!(word.as_str(), "by" | "on" | "without" | "ignoring")
            && rest.starts_with('(')
        {
            let group = &rest[1..rest.find(')').unwrap_or(rest.len())];
            labels.extend(
                group
                    .split(',')
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty()),
            );
        } else if ["=~", "!~", "!=", "="]
            .iter()
            .any(|op| rest.starts_with(op))
            && !rest.starts_with("==")
        {
            labels.insert(word);
        }
    }
    labels.retain(|l| !TARGET_LABELS.contains(&l.as_str()));
    (metrics, labels)
}
