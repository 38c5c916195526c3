//! The alert rules (deploy/base): `promtool check rules` and `promtool test rules` (alerts_test.yml has
//! cases for every alert, the first failure of a new series and the fully stalled sink among
//! them), every alert has a test, and the PrometheusRule copy equals the rules file.

#[path = "common/monitoring.rs"]
mod monitoring;

use monitoring::{deploy_dir, promtool, run_promtool};

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() {
    let Some(tool) = promtool() else { return };
    let dir = deploy_dir();
    if let Err(out) = run_promtool(&tool, &dir, &["check", "rules", "alerts.rules.yml"], None) {
        panic!("promtool check rules:\n{out}");
    }
    if let Err(out) = run_promtool(&tool, &dir, &["test", "rules", "alerts_test.yml"], None) {
        panic!("promtool test rules:\n{out}");
    }
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it() {
    let rules = std::fs::read_to_string(deploy_dir().join("alerts.rules.yml")).unwrap();
    let tests = std::fs::read_to_string(deploy_dir().join("alerts_test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 6, "{alerts:?}");
    // A case that expects the alert: its `alertname:` followed (before the next case) by
    // `exp_alerts:` with at least one entry.
    let fired: Vec<&str> = tests
        .split("- eval_time:")
        .filter(|case| case.contains("exp_labels:"))
        .filter_map(|case| {
            case.lines()
                .find_map(|l| l.trim().strip_prefix("alertname: "))
        })
        .collect();
    let missing: Vec<_> = alerts.iter().filter(|a| !fired.contains(a)).collect();
    assert!(missing.is_empty(), "alerts no test fires: {missing:?}");
}

#[test]
fn the_prometheus_rule_carries_the_rules_file() {
    let rules = std::fs::read_to_string(deploy_dir().join("alerts.rules.yml")).unwrap();
    let crd = std::fs::read_to_string(deploy_dir().join("alerts.yaml")).unwrap();
    let groups = &rules[rules.find("\ngroups:").expect("groups") + 1..];
    let spec = &crd[crd.find("\nspec:\n").expect("spec") + "\nspec:\n".len()..];
    let unindented: String = spec
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        unindented.trim_end(),
        groups.trim_end(),
        "alerts.yaml's spec differs from alerts.rules.yml: regenerate it (deploy/README.md)"
    );
}

#[test]
fn references_are_read_from_promql() {
    let (metrics, labels) = monitoring::references(
        "sum by (namespace, kind) (rate(remarket_source_records_total{job=\"remarket\", \
         outcome!=\"ok\"}[5m])) > 0 and on (pod, partition) remarket_ready == 0",
    );
    assert_eq!(
        metrics.into_iter().collect::<Vec<_>>(),
        ["remarket_ready", "remarket_source_records_total"]
    );
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["kind", "outcome", "partition"]
    );
    let all = monitoring::expressions();
    assert!(all.iter().any(|(p, _)| p == "alert RemarketSinkStalled"));
    assert!(all.iter().filter(|(p, _)| p == "dashboard").count() >= 20);
}
