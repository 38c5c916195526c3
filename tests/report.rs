//! Campaign reports (DESIGN §9) of `remarket replay`, checked against an independent
//! computation from the recording and `decisions.jsonl`: the users of each group, which of
//! them did a goal event (`goal.where` included) within the window after their decision, the
//! revenue of those events, rates, lift and the Katz interval.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const SAMPLE: &str = "config/sample-events.jsonl";

fn replay(config: &Path, out: &Path) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_remarket"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["replay", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg(SAMPLE)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap()
}

/// A goal as the test reads it from the config: event, window, `where` (`=` and `>=` only),
/// revenue property.
struct Goal {
    event: String,
    within: i64,
    conditions: Vec<(String, String, Value)>,
    revenue: Option<String>,
}

fn goals(config: &str) -> BTreeMap<String, Goal> {
    let t: toml::Table = config.parse().unwrap();
    let mut out = BTreeMap::new();
    for c in t["campaign"].as_array().unwrap() {
        let Some(g) = c.get("goal") else { continue };
        let within = humantime::parse_duration(g["within"].as_str().unwrap()).unwrap();
        let conditions = g.get("where").map_or_else(Vec::new, |w| {
            (w.as_array().unwrap().iter())
                .map(|c| {
                    let v = serde_json::to_value(&c["value"]).unwrap();
                    let prop = c["prop"].as_str().unwrap().to_owned();
                    (prop, c["op"].as_str().unwrap().to_owned(), v)
                })
                .collect()
        });
        out.insert(
            c["id"].as_str().unwrap().to_owned(),
            Goal {
                event: g["event"].as_str().unwrap().to_owned(),
                within: within.as_millis() as i64,
                conditions,
                revenue: g
                    .get("revenue_prop")
                    .map(|r| r.as_str().unwrap().to_owned()),
            },
        );
    }
    out
}

fn holds(props: &Value, (prop, op, value): &(String, String, Value)) -> bool {
    let Some(v) = props.get(prop) else {
        return false;
    };
    match op.as_str() {
        "=" => v == value,
        ">=" => v.as_f64().unwrap() >= value.as_f64().unwrap(),
        other => panic!("the test knows no {other}"),
    }
}

/// Per campaign `(users, converted, revenue)` of the exported and the control group.
type Expected = BTreeMap<String, [(u64, u64, f64); 2]>;

fn expected(config: &str, out: &Path) -> Expected {
    let goals = goals(config);
    // Each user's events, in time order (the sample has no late records).
    let mut events: BTreeMap<String, Vec<(i64, String, Value)>> = BTreeMap::new();
    // (Some malformed lines are not UTF-8.)
    for line in std::fs::read(SAMPLE).unwrap().split(|&b| b == b'\n') {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let (Some(u), Some(e), Some(ts)) =
            (v["user_id"].as_str(), v["event"].as_str(), v["ts"].as_i64())
        else {
            continue;
        };
        let props = v.get("props").cloned().unwrap_or(Value::Null);
        events
            .entry(u.to_owned())
            .or_default()
            .push((ts, e.to_owned(), props));
    }
    for e in events.values_mut() {
        e.sort_by_key(|x| x.0);
    }
    let decisions = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
    let mut groups: BTreeMap<String, [BTreeMap<String, i64>; 2]> = BTreeMap::new();
    for line in decisions.lines() {
        let d: Value = serde_json::from_str(line).unwrap();
        let g = match d["outcome"].as_str().unwrap() {
            "exported" => 0,
            "control" => 1,
            _ => continue,
        };
        let user = d["user_id"].as_str().unwrap().to_owned();
        let at = d["at"].as_i64().unwrap();
        let c = groups
            .entry(d["campaign"].as_str().unwrap().to_owned())
            .or_default();
        assert!(
            c[g].insert(user, at).is_none(),
            "each campaign decides once per user"
        );
    }
    let mut exp = Expected::new();
    for (campaign, gs) in groups {
        let mut figures = [(0, 0, 0.0); 2];
        for (g, users) in gs.iter().enumerate() {
            figures[g].0 = users.len() as u64;
            let Some(goal) = goals.get(&campaign) else {
                continue;
            };
            for (user, &at) in users {
                let first = events.get(user).into_iter().flatten().find(|(ts, e, p)| {
                    *ts > at && *e == goal.event && goal.conditions.iter().all(|c| holds(p, c))
                });
                if let Some((_, _, props)) = first.filter(|(ts, ..)| *ts <= at + goal.within) {
                    figures[g].1 += 1;
                    let r = goal.revenue.as_ref().and_then(|r| props.get(r)?.as_f64());
                    figures[g].2 += r.unwrap_or(0.0);
                }
            }
        }
        exp.insert(campaign, figures);
    }
    exp
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

fn check(summary: &Value, expected: &Expected) {
    for (campaign, [(n1, c1, r1), (n2, c2, r2)]) in expected {
        let rep = &summary["campaigns"][campaign]["report"];
        let ctx = format!("{campaign}: {rep}");
        assert_eq!(rep["users"]["exported"], *n1, "{ctx}");
        assert_eq!(rep["users"]["control"], *n2, "{ctx}");
        assert_eq!(rep["converted"]["exported"], *c1, "{ctx}");
        assert_eq!(rep["converted"]["control"], *c2, "{ctx}");
        assert!(
            close(rep["revenue"]["exported"].as_f64().unwrap(), *r1, 1e-5),
            "{ctx}"
        );
        assert!(
            close(rep["revenue"]["control"].as_f64().unwrap(), *r2, 1e-5),
            "{ctx}"
        );
        let rate = |c: u64, n: u64| (n > 0).then(|| c as f64 / n as f64);
        for (key, r) in [("exported", rate(*c1, *n1)), ("control", rate(*c2, *n2))] {
            match r {
                None => assert!(rep["rate"][key].is_null(), "{ctx}"),
                Some(r) => assert!(close(rep["rate"][key].as_f64().unwrap(), r, 5e-5), "{ctx}"),
            }
        }
        if *c1 == 0 || *c2 == 0 {
            assert!(rep["lift"].is_null() && rep["lift_ci95"].is_null(), "{ctx}");
            continue;
        }
        let (c1, n1, c2, n2) = (*c1 as f64, *n1 as f64, *c2 as f64, *n2 as f64);
        let rr = (c1 / n1) / (c2 / n2);
        let se = (1.0 / c1 - 1.0 / n1 + 1.0 / c2 - 1.0 / n2).sqrt();
        assert!(
            close(rep["lift"].as_f64().unwrap(), rr - 1.0, 5e-5),
            "{ctx}"
        );
        let ci = rep["lift_ci95"].as_array().unwrap();
        let lo = (rr.ln() - 1.96 * se).exp() - 1.0;
        let hi = (rr.ln() + 1.96 * se).exp() - 1.0;
        assert!(close(ci[0].as_f64().unwrap(), lo, 5e-5), "{ctx}");
        assert!(close(ci[1].as_f64().unwrap(), hi, 5e-5), "{ctx}");
        assert!(
            rep["audience_size"].is_null(),
            "a dry run knows no size: {ctx}"
        );
    }
}

#[test]
fn replay_reports_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string("config/sample.toml").unwrap();
    let summary = replay(Path::new("config/sample.toml"), &dir.path().join("a"));
    let exp = expected(&sample, &dir.path().join("a"));
    assert_eq!(exp.len(), 4, "every sample campaign decided users");
    let revenue = exp.values().map(|f| f[0].2 + f[1].2).sum::<f64>();
    assert!(revenue > 0.0, "the sample's goals carry revenue");
    check(&summary, &exp);

    // `goal.where` that bites: only purchases of two or more items convert.
    let variant = sample.replace(
        r#"where = [{ prop = "currency", op = "=", value = "USD" }]"#,
        r#"where = [{ prop = "items", op = ">=", value = 2 }]"#,
    );
    assert_ne!(variant, sample, "the sample has a goal filter to vary");
    let config = dir.path().join("variant.toml");
    std::fs::write(&config, &variant).unwrap();
    let filtered = replay(&config, &dir.path().join("b"));
    let fexp = expected(&variant, &dir.path().join("b"));
    check(&filtered, &fexp);
    let conv = |e: &Expected| e["viewed-not-bought"][0].1;
    assert!(
        conv(&fexp) < conv(&exp),
        "the filter drops conversions: {} vs {}",
        conv(&fexp),
        conv(&exp)
    );
}
