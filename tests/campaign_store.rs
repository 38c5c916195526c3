//! Campaigns published, raised and stopped in event time (DESIGN §9), through
//! `remarket replay --campaigns`: a recording of the campaigns topic gives the decisions a
//! campaign configured with the same start, end and cap gives, whatever else the topic holds.

use std::path::Path;
use std::process::Command;

use remarket::store::{Kind, Store};
use serde_json::Value;

const SAMPLE: &str = "config/sample-events.jsonl";

fn replay(config: &Path, campaigns: Option<&Path>, out: &Path) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_remarket"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["replay", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out);
    if let Some(c) = campaigns {
        cmd.arg("--campaigns").arg(c);
    }
    let o = cmd.arg(SAMPLE).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(out.join("decisions.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of(decisions: &[Value], campaign: &str) -> Vec<Value> {
    decisions
        .iter()
        .filter(|d| d["campaign"] == campaign)
        .cloned()
        .collect()
}

/// The sample config's root table, and `cart-abandoners`' table as JSON.
fn split_sample() -> (toml::Table, Value) {
    let mut root: toml::Table = std::fs::read_to_string("config/sample.toml")
        .unwrap()
        .parse()
        .unwrap();
    let toml::Value::Array(campaigns) = root.get_mut("campaign").unwrap() else {
        panic!("campaigns")
    };
    let i = (campaigns.iter())
        .position(|c| c["id"].as_str() == Some("cart-abandoners"))
        .unwrap();
    let cart = campaigns.remove(i);
    (root, serde_json::to_value(cart).unwrap())
}

fn ms(t: &str) -> i64 {
    t.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

fn write_lines(path: &Path, store: &Store) {
    let lines: Vec<String> = (store.docs(Kind::Campaign).chain(store.docs(Kind::Segment)))
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn a_campaign_published_raised_and_stopped_decides_as_configured_in_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let (base, mut cart) = split_sample();
    let base_path = dir.path().join("base.toml");
    std::fs::write(&base_path, toml::to_string(&base).unwrap()).unwrap();

    // Published on 3 November with a cap of 40, raised to 70 on the 5th, stopped on the 7th.
    let (publish, raise, stop) = (
        ms("2026-11-03T00:00:00Z"),
        ms("2026-11-05T00:00:00Z"),
        ms("2026-11-07T00:00:00Z"),
    );
    cart["who"]["target_cap"] = 40.into();
    let mut store = Store::default();
    store.create(Kind::Campaign, cart.clone(), 0).unwrap();
    let config_of = |s: &Store| s.config(&base, Vec::new()).map(|_| ());
    store
        .publish("cart-abandoners", publish, 1, config_of)
        .unwrap();
    let mut raised = cart.clone();
    raised["who"]["target_cap"] = 70.into();
    raised["name"] = "Cart abandoners (raised)".into();
    store
        .update(Kind::Campaign, "cart-abandoners", raised, raise, 2)
        .unwrap();
    store.stop("cart-abandoners", stop, 3).unwrap();
    // A draft in the topic changes nothing.
    let mut draft = cart.clone();
    draft["id"] = "draft-copy".into();
    store.create(Kind::Campaign, draft, 4).unwrap();
    let recording = dir.path().join("campaigns.jsonl");
    write_lines(&recording, &store);

    let got = replay(&base_path, Some(&recording), &dir.path().join("a"));
    let cart_got = of(&got, "cart-abandoners");
    assert!(of(&got, "draft-copy").is_empty());

    // The independent reading: only triggers from publish to stop count (a qualification
    // `at` is its trigger's time + 30 min), and before the raise at most 40 are exported.
    let exported = |at_below: i64| {
        (cart_got.iter())
            .filter(|d| d["outcome"] == "exported" && d["at"].as_i64().unwrap() < at_below)
            .count()
    };
    let within = 30 * 60 * 1000;
    for d in &cart_got {
        let at = d["at"].as_i64().unwrap();
        if d["outcome"] != "removed" {
            assert!(at - within >= publish && at - within < stop, "{d}");
        }
    }
    assert_eq!(
        exported(raise),
        40,
        "the cap at publishing holds until the raise"
    );
    assert_eq!(exported(i64::MAX), 70, "then the raised cap");
    let capped_before = (cart_got.iter())
        .filter(|d| d["outcome"] == "capped" && d["at"].as_i64().unwrap() < raise)
        .count();
    assert!(capped_before > 0, "the first cap bit: {capped_before}");

    // The full campaign in the config with the same window decides the same users until the
    // raise (a config cap cannot change in event time).
    let mut root = base.clone();
    let mut windowed = cart.clone();
    let iso = |t: i64| jiff::Timestamp::from_millisecond(t).unwrap().to_string();
    windowed["start"] = iso(publish).into();
    windowed["end"] = iso(stop).into();
    let toml::Value::Array(cs) = root.get_mut("campaign").unwrap() else {
        panic!()
    };
    cs.push(serde_json::from_value(windowed).unwrap());
    let windowed_path = dir.path().join("windowed.toml");
    std::fs::write(&windowed_path, toml::to_string(&root).unwrap()).unwrap();
    let want = replay(&windowed_path, None, &dir.path().join("b"));
    let before_raise = |v: Vec<Value>| -> Vec<Value> {
        v.into_iter()
            .filter(|d| d["at"].as_i64().unwrap() < raise)
            .collect()
    };
    assert_eq!(
        before_raise(cart_got),
        before_raise(of(&want, "cart-abandoners"))
    );
    // The other campaigns are untouched by the store.
    for id in ["big-ticket-viewers", "checkout-sms", "viewed-not-bought"] {
        assert_eq!(of(&got, id), of(&want, id), "{id}");
    }
}

#[test]
fn a_kcat_recording_of_the_compacted_topic_keeps_the_latest_value_per_key() {
    let (_, cart) = split_sample();
    let mut store = Store::default();
    store.create(Kind::Campaign, cart.clone(), 0).unwrap();
    let draft =
        serde_json::to_string(store.get(Kind::Campaign, "cart-abandoners").unwrap()).unwrap();
    let mut seg = serde_json::json!({"id": "s1", "where": []});
    store.create(Kind::Segment, seg.clone(), 0).unwrap();
    seg["where"] = serde_json::json!([{"prop": "country", "op": "=", "value": "Germany"}]);
    let envelope = |key: &str, payload: Option<&str>| {
        serde_json::json!({"topic": "remarket.campaigns", "partition": 0, "offset": 0,
                           "key": key, "payload": payload})
        .to_string()
    };
    let seg_doc = serde_json::to_string(store.get(Kind::Segment, "s1").unwrap()).unwrap();
    let text = [
        envelope("campaign/cart-abandoners", Some(&draft)),
        envelope("segment/s1", Some(&seg_doc)),
        envelope("campaign/cart-abandoners", None),
    ]
    .join("\n");
    let read = Store::read_recording(&text).unwrap();
    assert!(
        read.get(Kind::Campaign, "cart-abandoners").is_none(),
        "tombstoned"
    );
    assert_eq!(
        read.get(Kind::Segment, "s1"),
        store.get(Kind::Segment, "s1")
    );
    let bad = envelope("campaign/other", Some(&draft));
    assert!(
        Store::read_recording(&bad)
            .unwrap_err()
            .contains("the value is campaign/cart-abandoners"),
        "a value under another key is refused"
    );
}
