//! A campaign added on a restart sees the profile its users had: detect keeps every canonical
//! property and up to `engine.max_custom_props` custom ones whatever the loaded campaigns read,
//! so state restored from the changelog (the path `run` takes on assignment) decides as a
//! replay of the whole history under the new config does.

use std::collections::BTreeSet;
use std::sync::Arc;

use remarket::app;
use remarket::config::Config;
use remarket::detect::shard::Shard;
use remarket::detect::Rules;
use remarket::event::decode::Decoder;
use remarket::event::recording::Recording;

const BASE: &str = r#"
[engine]
allowed_lateness = "1ms"
max_custom_props = 2
[[campaign]]
id = "carts"
name = "carts"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
[campaign.what]
audience = { existing = "5" }
identifiers = ["email"]
"#;

/// The campaign added on the restart: Who reads a canonical property (`gender`) and a custom
/// one (`tier`) that no campaign of the first config read.
const ADDED: &str = r#"
[[campaign]]
id = "gold-women"
name = "gold women"
ad_account = "1"
start = "2026-01-01T00:00:00Z"
[campaign.trigger]
event = "Viewed"
[campaign.who]
where = [
  { prop = "gender", op = "=", value = "female" },
  { prop = "tier", op = "=", value = "gold" },
]
[campaign.what]
audience = { existing = "6" }
identifiers = ["email", "phone"]
"#;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Profiles before the restart (gender, a custom tier, more custom properties than the limit
/// for one user), trigger events after it.
fn history() -> (Vec<String>, Vec<String>) {
    let mut before = Vec::new();
    for i in 0..8 {
        let gender = if i % 2 == 0 { "female" } else { "male" };
        let tier = if i < 6 { "gold" } else { "silver" };
        before.push(format!(
            r#"{{"user_id":"u{i}","type":"profile","ts":{},"props":{{"email":"u{i}@example.com","gender":"{gender}","tier":"{tier}","plan":"p{i}"}}}}"#,
            T0 + i
        ));
    }
    // A third custom property for u0: over the limit of two, dropped and counted.
    before.push(format!(
        r#"{{"user_id":"u0","type":"profile","ts":{},"props":{{"shoe_size":40}}}}"#,
        T0 + 20
    ));
    before.push(format!(
        r#"{{"user_id":"u1","event":"Added To Cart","ts":{},"props":{{}}}}"#,
        T0 + 30
    ));
    let after = (0..8)
        .map(|i| {
            format!(
                r#"{{"user_id":"u{i}","event":"Viewed","ts":{},"props":{{}}}}"#,
                T0 + 1000 + i
            )
        })
        .collect();
    (before, after)
}

#[test]
fn a_campaign_added_on_restart_sees_earlier_profile_properties() {
    let first = Config::parse(BASE, Vec::new()).unwrap();
    let second = Config::parse(&format!("{BASE}{ADDED}"), Vec::new()).unwrap();
    let (before, after) = history();

    // Before the restart: the first config; the changelog is what the shard writes.
    let rules = Arc::new(Rules::compile(&first.campaigns, &first.schema));
    let decoder = Decoder::new(first.source.format, &first.schema);
    let mut shard = Shard::new(rules);
    shard.track_changes();
    for (seq, line) in before.iter().enumerate() {
        shard.push(seq as u64, decoder.decode(line.as_bytes()).unwrap());
    }
    let watermark = T0 + 100;
    shard.advance(watermark);
    let out = shard.take_output();
    assert_eq!(out.qualifications.len(), 1, "u1's cart");
    assert_eq!(out.custom_props_dropped, 1, "u0's third custom property");
    let mut changelog: Vec<(String, Vec<u8>)> = Vec::new();
    shard.drain_dirty_encoded(|user, value| {
        changelog.push((user.to_string(), value.unwrap().to_vec()));
    });
    assert_eq!(changelog.len(), 8);

    // The restart: the second config, state from the changelog, then the new events.
    let rules = Arc::new(Rules::compile(&second.campaigns, &second.schema));
    let decoder = Decoder::new(second.source.format, &second.schema);
    let mut shard = Shard::new(rules);
    let values = changelog.iter().map(|(u, v)| (u.as_str(), v.as_slice()));
    assert_eq!(shard.restore_encoded(values, watermark), (8, 0));
    for (seq, line) in after.iter().enumerate() {
        shard.push(seq as u64, decoder.decode(line.as_bytes()).unwrap());
    }
    shard.advance(T0 + 10_000);
    let restarted: BTreeSet<String> = shard
        .take_output()
        .qualifications
        .iter()
        .map(|q| q.user.to_string())
        .collect();
    assert_eq!(
        restarted,
        ["u0", "u2", "u4"].map(String::from).into(),
        "women with the gold tier"
    );

    // A replay of the whole history under the second config decides the same users.
    let mut rec = Recording::default();
    let text: String = before
        .iter()
        .chain(&after)
        .map(|l| format!("{l}\n"))
        .collect();
    rec.add(std::path::Path::new("history.jsonl"), text.into_bytes());
    let replayed = app::execute(
        &second,
        &rec,
        2,
        1_893_456_000_000, // 2030-01-01: after every generated record
        &mut |_, _, _, _| Ok(()),
        &mut |_| {},
    )
    .unwrap();
    let replay: BTreeSet<String> = replayed
        .decisions
        .iter()
        .filter(|d| second.campaigns[usize::from(d.campaign)].id == "gold-women")
        .map(|d| d.user.to_string())
        .collect();
    assert_eq!(replay, restarted);
    // Under the second config `tier` is a campaign's property, so u0's `plan` and
    // `shoe_size` fit in its two custom slots.
    assert_eq!(replayed.totals.custom_props_dropped, 0);
}
