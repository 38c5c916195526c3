//! `POST /api/v1/campaigns/preview` (DESIGN §9): a campaign definition compiled against the
//! running pipeline's campaigns and schema (see [`crate::detect::preview`]), and the answer
//! assembled from the detect workers' counts: who qualifies now, of them who is reachable,
//! in the control group, over the target cap, and the estimated audience.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::detect::preview::{Preview, PreviewCounts};
use crate::detect::Rules;
use crate::problems::Problems;

/// A definition compiled for the running pipeline.
pub struct Compiled {
    /// The campaign's id (its control group is decided by it).
    pub id: String,
    pub preview: Arc<Preview>,
    pub control_group: u8,
    pub target_cap: Option<u64>,
    /// `who.past[i]` of rules the state keeps no figures for.
    pub not_kept: Vec<String>,
}

/// Compiles `definition` (a `[[campaign]]` table as JSON) after `running`'s campaigns.
pub fn compile(
    running: &Config,
    definition: &Value,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Compiled, Problems> {
    let mut def = definition.clone();
    let id = def
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("preview")
        .to_owned();
    // A published campaign previewed again: parsed under another id (its control group
    // stays the one its id decides).
    let parse_id = if running.campaigns.iter().any(|c| c.id == id) {
        format!("{id}-preview")
    } else {
        id.clone()
    };
    if let Some(o) = def.as_object_mut() {
        o.insert("id".into(), parse_id.into());
    }
    let table = serde_json::from_value::<toml::Value>(def).map_err(|e| {
        let mut p = Problems::default();
        p.service("(definition)", format!("not a TOML table: {e}"));
        p
    })?;
    let mut doc = running.document.clone();
    let list = doc
        .entry("campaign")
        .or_insert_with(|| toml::Value::Array(Vec::new()));
    if let toml::Value::Array(a) = list {
        a.push(table);
    }
    let config = Config::parse_table(doc, env)?;
    let n = running.campaigns.len();
    let running_props = running.schema.prop_names();
    if config.campaigns.len() != n + 1
        || config.schema.prop_names().get(..running_props.len()) != Some(running_props)
    {
        let mut p = Problems::default();
        p.service(
            "(definition)",
            "cannot be compiled beside the running campaigns",
        );
        return Err(p);
    }
    let running_past = Rules::compile(&running.campaigns, &running.schema)
        .past
        .len();
    let rules = Arc::new(Rules::compile(&config.campaigns, &config.schema));
    let campaign = &config.campaigns[n];
    let preview = Preview::new(
        rules,
        n as crate::detect::CampaignIdx,
        running_past,
        campaign.what.identifiers,
    );
    let not_kept = (preview.not_kept().into_iter())
        .map(|i| format!("who.past[{i}]"))
        .collect();
    Ok(Compiled {
        id,
        preview: Arc::new(preview),
        control_group: campaign.who.control_group,
        target_cap: campaign.who.target_cap,
        not_kept,
    })
}

/// The preview's answer.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Estimate {
    pub campaign: String,
    #[serde(flatten)]
    pub counts: PreviewCounts,
    /// Qualified users without the campaign's identifiers.
    pub unreachable: u64,
    /// Reachable users over `target_cap` (after the control group).
    pub capped: u64,
    /// Reachable, not in the control group, within the cap: who would be exported now.
    pub estimated_audience: u64,
    /// Behaviour rules read as "no such events" (the state keeps no figures for them).
    pub not_kept: Vec<String>,
    /// Input partitions counted, and whether every detect worker answered.
    pub partitions: usize,
    pub complete: bool,
}

impl Compiled {
    pub fn estimate(&self, counts: PreviewCounts, partitions: usize, complete: bool) -> Estimate {
        let candidates = counts.reachable - counts.control;
        let capped = self
            .target_cap
            .map_or(0, |cap| candidates.saturating_sub(cap));
        Estimate {
            campaign: self.id.clone(),
            counts,
            unreachable: counts.qualified - counts.reachable,
            capped,
            estimated_audience: candidates - capped,
            not_kept: self.not_kept.clone(),
            partitions,
            complete,
        }
    }

    /// Whether `user` is in the campaign's control group.
    pub fn in_control(&self) -> impl Fn(&str) -> bool + Send + Sync + 'static {
        let (id, pct) = (self.id.clone(), self.control_group);
        move |user: &str| crate::activate::in_control_group(&id, user, pct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::shard::Shard;
    use crate::event::decode::Decoder;
    use serde_json::json;

    const RUNNING: &str = r#"
[[campaign]]
id = "carts"
name = "Carts"
ad_account = "1"
start = "2026-11-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
[campaign.who]
past = [{ did = "Viewed", in_last = "7d" }]
[campaign.what]
audience = { existing = "9" }
identifiers = ["email"]
"#;

    /// `(user, email?, country, plan, viewed?)`
    const USERS: &[(&str, bool, &str, &str, bool)] = &[
        ("u1", true, "DE", "gold", true),
        ("u2", true, "DE", "gold", false),
        ("u3", false, "DE", "gold", true),
        ("u4", true, "FR", "gold", true),
        ("u5", true, "DE", "silver", true),
        ("u6", true, "DE", "silver", true),
        ("u7", true, "DE", "silver", true),
    ];

    fn shard(config: &Config) -> Shard {
        let rules = Arc::new(Rules::compile(&config.campaigns, &config.schema));
        let mut shard = Shard::new(rules);
        let decoder = Decoder::new(crate::event::Format::Native, &config.schema);
        let t0 = 1_793_577_600_000i64; // 2026-11-02
        let mut seq = 0;
        for (i, (u, email, country, plan, viewed)) in USERS.iter().enumerate() {
            let mut props = json!({"country": country, "plan": plan});
            if *email {
                props["email"] = json!(format!("{u}@example.com"));
            }
            let mut lines =
                vec![json!({"user_id": u, "type": "profile", "ts": t0 + i as i64, "props": props})];
            if *viewed {
                lines.push(json!({"user_id": u, "event": "Viewed", "ts": t0 + 100 + i as i64}));
            }
            for l in lines {
                seq += 1;
                let rec = decoder.decode(l.to_string().as_bytes()).unwrap();
                shard.push(seq, rec);
            }
        }
        shard.advance(t0 + 3_600_000);
        shard
    }

    fn definition(who: Value) -> Value {
        json!({
            "id": "p", "name": "P", "ad_account": "1", "start": "2026-11-01T00:00:00Z",
            "trigger": {"event": "Added To Cart"}, "who": who,
            "what": {"audience": {"existing": "9"}, "identifiers": ["email"]}
        })
    }

    /// Users of `USERS` passing `f`, and of them those with an email.
    fn expect(f: impl Fn(&(&str, bool, &str, &str, bool)) -> bool) -> (u64, Vec<&'static str>) {
        let q: Vec<_> = USERS.iter().filter(|u| f(u)).collect();
        let reachable = q.iter().filter(|u| u.1).map(|u| u.0).collect();
        (q.len() as u64, reachable)
    }

    #[test]
    fn a_preview_counts_who_and_kept_behaviour_rules_in_the_live_state() {
        let running = Config::parse(RUNNING, Vec::new()).unwrap();
        let shard = shard(&running);
        let cases = [
            (
                json!({"where": [{"prop": "country", "op": "=", "value": "DE"}],
                       "past": [{"did": "Viewed", "in_last": "3d"}], "control_group": 50}),
                expect(|u| u.2 == "DE" && u.4),
                Vec::<String>::new(),
            ),
            // `plan` is a property no running campaign reads: the shard's own custom one.
            (
                json!({"where": [{"prop": "plan", "op": "=", "value": "silver"}], "target_cap": 1}),
                expect(|u| u.3 == "silver"),
                vec![],
            ),
            // No running rule counts `Charged`: read as no such events.
            (
                json!({"past": [{"did_not": "Charged", "in_last": "7d"}]}),
                expect(|_| true),
                vec!["who.past[0]".to_owned()],
            ),
            (
                json!({"past": [{"did": "Viewed", "in_last": "30d"}]}),
                expect(|_| false),
                vec!["who.past[0]".to_owned()],
            ),
        ];
        for (who, (qualified, reachable), not_kept) in cases {
            let compiled = compile(&running, &definition(who.clone()), Vec::new()).unwrap();
            let counts = shard.preview(&compiled.preview, compiled.in_control());
            let control = (reachable.iter())
                .filter(|u| crate::activate::in_control_group("p", u, compiled.control_group))
                .count() as u64;
            assert_eq!(
                counts,
                PreviewCounts {
                    users: USERS.len() as u64,
                    qualified,
                    reachable: reachable.len() as u64,
                    control,
                },
                "{who}"
            );
            let e = compiled.estimate(counts, 1, true);
            let cap = who["target_cap"].as_u64().unwrap_or(u64::MAX);
            let candidates = reachable.len() as u64 - control;
            assert_eq!(e.estimated_audience, candidates.min(cap), "{who}");
            assert_eq!(e.not_kept, not_kept, "{who}");
        }
    }

    #[test]
    fn a_definition_with_problems_lists_them() {
        let running = Config::parse(RUNNING, Vec::new()).unwrap();
        let def = definition(json!({"control_group": 101}));
        let p = compile(&running, &def, Vec::new()).err().expect("invalid");
        assert!(p.0.iter().any(|e| e.field.contains("control_group")), "{p}");
    }
}
