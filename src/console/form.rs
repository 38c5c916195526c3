//! The builder's form and the campaign definition it stands for (the `[[campaign]]` table
//! of [the config](../../docs/config.md), as the admin API takes it). Both ways: a form
//! becomes a definition for the API, and a definition (cloning) fills a form. Each condition
//! and rule remembers the input it came from, so that a problem the API reports at
//! `who.where[2].value` is shown next to that input.

use serde_json::{json, Map, Value};

/// The form as posted: every `(name, value)` pair, in order (checkboxes repeat a name).
#[derive(Debug, Clone, Default)]
pub struct Form(pub Vec<(String, String)>);

/// Rows of each repeated group the builder shows.
pub const CUSTOM_ROWS: usize = 3;
pub const APP_ROWS: usize = 2;
pub const PAST_ROWS: usize = 2;
pub const TRIGGER_ROWS: usize = 2;

/// Where the parts of a definition came from: the input of each `who.where[i]`,
/// `trigger.where[i]` and `who.past[i]`.
#[derive(Debug, Default)]
pub struct Origins {
    pub who_where: Vec<String>,
    pub trigger_where: Vec<String>,
    pub past: Vec<String>,
}

impl Form {
    pub fn get(&self, name: &str) -> &str {
        (self.0.iter())
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    pub fn has(&self, name: &str, value: &str) -> bool {
        self.0.iter().any(|(k, v)| k == name && v == value)
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if value.is_empty() {
            return;
        }
        self.0.push((name.to_owned(), value));
    }

    /// The campaign definition, and where its parts came from.
    pub fn definition(&self) -> (Value, Origins) {
        let mut o = Origins::default();
        let mut def = Map::new();
        let put = |m: &mut Map<String, Value>, k: &str, v: &str| {
            if !v.is_empty() {
                m.insert(k.into(), v.into());
            }
        };
        put(&mut def, "id", self.get("id"));
        put(&mut def, "name", self.get("name"));
        put(&mut def, "ad_account", self.get("ad_account"));
        if let Some(t) = utc(self.get("start")) {
            def.insert("start".into(), t.into());
        }
        if let Some(t) = utc(self.get("end")) {
            def.insert("end".into(), t.into());
        }

        // Who.
        let mut who = Map::new();
        put(&mut who, "segment", self.get("segment"));
        let mut wh = Vec::new();
        let mut cond = |wh: &mut Vec<Value>, origin: &str, c: Value| {
            wh.push(c);
            o.who_where.push(origin.to_owned());
        };
        let (lo, hi) = (number(self.get("age_min")), number(self.get("age_max")));
        match (lo, hi) {
            (Some(l), Some(h)) => cond(
                &mut wh,
                "age_min",
                json!({"prop": "age", "op": "between", "value": [l, h]}),
            ),
            (Some(l), None) => cond(
                &mut wh,
                "age_min",
                json!({"prop": "age", "op": ">=", "value": l}),
            ),
            (None, Some(h)) => cond(
                &mut wh,
                "age_max",
                json!({"prop": "age", "op": "<=", "value": h}),
            ),
            (None, None) => {}
        }
        if !self.get("gender").is_empty() {
            let c = json!({"prop": "gender", "op": "=", "value": self.get("gender")});
            cond(&mut wh, "gender", c);
        }
        for geo in ["country", "region", "city"] {
            let list = split_list(self.get(geo));
            if !list.is_empty() {
                let c = json!({"prop": geo, "op": "in", "value": list});
                cond(&mut wh, geo, c);
            }
        }
        for (name, prop) in [("reach_email", "has_email"), ("reach_phone", "has_phone")] {
            if self.has(name, "on") {
                cond(
                    &mut wh,
                    name,
                    json!({"prop": prop, "op": "=", "value": true}),
                );
            }
        }
        for (name, prop) in [
            ("subscribed_email", "email_unsubscribed"),
            ("subscribed_sms", "sms_unsubscribed"),
        ] {
            if self.has(name, "on") {
                cond(
                    &mut wh,
                    name,
                    json!({"prop": prop, "op": "!=", "value": true}),
                );
            }
        }
        for (prefix, rows) in [("prop", CUSTOM_ROWS), ("app", APP_ROWS)] {
            for i in 0..rows {
                if let Some(c) = self.condition(&format!("{prefix}{i}")) {
                    cond(&mut wh, &format!("{prefix}{i}_prop"), c);
                }
            }
        }
        if !wh.is_empty() {
            who.insert("where".into(), wh.into());
        }
        let mut past = Vec::new();
        for i in 0..PAST_ROWS {
            let event = self.get(&format!("past{i}_event"));
            if event.is_empty() {
                continue;
            }
            let mut r = Map::new();
            let did = if self.get(&format!("past{i}_kind")) == "did_not" {
                "did_not"
            } else {
                "did"
            };
            r.insert(did.into(), event.into());
            let agg = self.get(&format!("past{i}_agg"));
            if !agg.is_empty() {
                r.insert("agg".into(), agg.into());
                put(&mut r, "prop", self.get(&format!("past{i}_prop")));
                put(&mut r, "op", self.get(&format!("past{i}_op")));
                if let Some(v) = number(self.get(&format!("past{i}_value"))) {
                    r.insert("value".into(), v.into());
                }
            }
            let days = self.get(&format!("past{i}_days"));
            let range = if days == "all" {
                "all".to_owned()
            } else {
                format!("{}d", if days.is_empty() { "1" } else { days })
            };
            r.insert("in_last".into(), range.into());
            past.push(Value::Object(r));
            o.past.push(format!("past{i}_event"));
        }
        if !past.is_empty() {
            who.insert("past".into(), past.into());
        }
        if let Some(n) = number(self.get("control_group")) {
            who.insert("control_group".into(), n.into());
        }
        if let Some(n) = number(self.get("target_cap")) {
            who.insert("target_cap".into(), n.into());
        }
        if !who.is_empty() {
            def.insert("who".into(), who.into());
        }

        // What.
        let audience = if self.get("audience_mode") == "existing" {
            json!({"existing": self.get("audience_existing")})
        } else {
            let mut new = Map::new();
            new.insert("name".into(), self.get("audience_name").into());
            put(&mut new, "description", self.get("audience_description"));
            json!({ "new": new })
        };
        let identifiers: Vec<&str> = ["email", "phone"]
            .into_iter()
            .filter(|i| self.has("identifiers", i))
            .collect();
        def.insert(
            "what".into(),
            json!({"audience": audience, "identifiers": identifiers}),
        );

        // Goal.
        if !self.get("goal_event").is_empty() {
            let mut g = Map::new();
            g.insert("event".into(), self.get("goal_event").into());
            let within = self.get("goal_within");
            g.insert(
                "within".into(),
                (if within.is_empty() { "7d" } else { within }).into(),
            );
            put(&mut g, "revenue_prop", self.get("goal_revenue_prop"));
            def.insert("goal".into(), g.into());
        }

        // When.
        if self.get("kind") == "past" {
            let mut s = Map::new();
            put(&mut s, "timezone", self.get("timezone"));
            if self.get("schedule_mode") == "repeat" {
                let mut r = Map::new();
                r.insert(
                    "every".into(),
                    number(self.get("repeat_every")).unwrap_or(1.into()).into(),
                );
                r.insert("unit".into(), self.get("repeat_unit").into());
                put(&mut r, "time", self.get("repeat_time"));
                let days: Vec<&str> = WEEKDAYS
                    .iter()
                    .map(|(d, _)| *d)
                    .filter(|d| self.has("repeat_weekdays", d))
                    .collect();
                if !days.is_empty() {
                    r.insert("weekdays".into(), days.into());
                }
                if let Some(d) = number(self.get("repeat_day")) {
                    r.insert("day".into(), d.into());
                }
                s.insert("repeat".into(), r.into());
                if let Some(t) = utc(self.get("repeat_until")) {
                    s.insert("until".into(), t.into());
                }
            } else {
                let at: Vec<String> = (self.get("schedule_at").split([',', '\n']))
                    .filter_map(|t| utc(t.trim()))
                    .collect();
                s.insert("at".into(), at.into());
            }
            def.insert("schedule".into(), s.into());
        } else {
            let mut t = Map::new();
            t.insert("event".into(), self.get("trigger_event").into());
            let mut wh = Vec::new();
            for i in 0..TRIGGER_ROWS {
                if let Some(c) = self.condition(&format!("trig{i}")) {
                    wh.push(c);
                    o.trigger_where.push(format!("trig{i}_prop"));
                }
            }
            if !wh.is_empty() {
                t.insert("where".into(), wh.into());
            }
            if !self.get("inaction_event").is_empty() {
                let within = self.get("inaction_within");
                t.insert(
                    "inaction".into(),
                    json!({"event": self.get("inaction_event"),
                           "within": if within.is_empty() { "30m" } else { within }}),
                );
            }
            def.insert("trigger".into(), t.into());
        }
        (Value::Object(def), o)
    }

    /// The condition of row `row` (`{row}_prop`, `_op`, `_value`), if it names a property.
    fn condition(&self, row: &str) -> Option<Value> {
        let prop = self.get(&format!("{row}_prop"));
        if prop.is_empty() {
            return None;
        }
        let op = self.get(&format!("{row}_op"));
        let op = if op.is_empty() { "=" } else { op };
        let raw = self.get(&format!("{row}_value"));
        let mut c = json!({"prop": prop, "op": op});
        match op {
            "exists" | "not_exists" => {}
            "in" | "not_in" => c["value"] = split_list(raw).into_iter().map(scalar).collect(),
            "between" => {
                c["value"] = split_list(raw).into_iter().map(scalar).collect();
            }
            _ => c["value"] = scalar(raw),
        }
        Some(c)
    }

    /// A form showing `def` (to clone or edit it). Parts the builder has no input for are
    /// left out; the TOML of the result shows what is kept.
    pub fn from_definition(def: &Value) -> Form {
        let mut f = Form::default();
        let s = |p: &str| def.pointer(p).and_then(Value::as_str).unwrap_or("");
        f.set("id", s("/id"));
        f.set("name", s("/name"));
        f.set("ad_account", s("/ad_account"));
        f.set("start", local(s("/start")));
        f.set("end", local(s("/end")));
        f.set("segment", s("/who/segment"));
        let num = |p: &str| def.pointer(p).map(|v| v.to_string()).unwrap_or_default();
        f.set("control_group", num("/who/control_group"));
        f.set("target_cap", num("/who/target_cap"));
        let mut custom = 0;
        for c in (def.pointer("/who/where").and_then(Value::as_array))
            .into_iter()
            .flatten()
        {
            let prop = c["prop"].as_str().unwrap_or("");
            let op = c["op"].as_str().unwrap_or("");
            match (prop, op) {
                ("age", "between") => {
                    f.set("age_min", c["value"][0].to_string());
                    f.set("age_max", c["value"][1].to_string());
                }
                ("age", ">=") => f.set("age_min", c["value"].to_string()),
                ("age", "<=") => f.set("age_max", c["value"].to_string()),
                ("gender", "=") => f.set("gender", c["value"].as_str().unwrap_or("")),
                ("country" | "region" | "city", "in") => f.set(prop, join_list(&c["value"])),
                ("has_email", "=") => f.set("reach_email", "on"),
                ("has_phone", "=") => f.set("reach_phone", "on"),
                ("email_unsubscribed", "!=") => f.set("subscribed_email", "on"),
                ("sms_unsubscribed", "!=") => f.set("subscribed_sms", "on"),
                _ if custom < CUSTOM_ROWS => {
                    let row = if crate::event::APP_FIELDS.contains(&prop) {
                        "app0".to_owned()
                    } else {
                        custom += 1;
                        format!("prop{}", custom - 1)
                    };
                    f.set(&format!("{row}_prop"), prop);
                    f.set(&format!("{row}_op"), op);
                    f.set(&format!("{row}_value"), join_list(&c["value"]));
                }
                _ => {}
            }
        }
        for (i, r) in (def.pointer("/who/past").and_then(Value::as_array))
            .into_iter()
            .flatten()
            .take(PAST_ROWS)
            .enumerate()
        {
            let (kind, event) = match (r["did"].as_str(), r["did_not"].as_str()) {
                (Some(e), _) => ("did", e),
                (_, Some(e)) => ("did_not", e),
                _ => continue,
            };
            f.set(&format!("past{i}_kind"), kind);
            f.set(&format!("past{i}_event"), event);
            f.set(&format!("past{i}_agg"), r["agg"].as_str().unwrap_or(""));
            f.set(&format!("past{i}_prop"), r["prop"].as_str().unwrap_or(""));
            f.set(&format!("past{i}_op"), r["op"].as_str().unwrap_or(""));
            if !r["value"].is_null() {
                f.set(&format!("past{i}_value"), r["value"].to_string());
            }
            let days = r["in_last"].as_str().unwrap_or("1d");
            f.set(&format!("past{i}_days"), days.trim_end_matches('d'));
        }
        if let Some(n) = def
            .pointer("/what/audience/existing")
            .and_then(Value::as_str)
        {
            f.set("audience_mode", "existing");
            f.set("audience_existing", n);
        } else {
            f.set("audience_mode", "new");
            f.set("audience_name", s("/what/audience/new/name"));
            f.set("audience_description", s("/what/audience/new/description"));
        }
        for i in (def.pointer("/what/identifiers").and_then(Value::as_array))
            .into_iter()
            .flatten()
        {
            f.set("identifiers", i.as_str().unwrap_or(""));
        }
        f.set("goal_event", s("/goal/event"));
        f.set("goal_within", s("/goal/within"));
        f.set("goal_revenue_prop", s("/goal/revenue_prop"));
        if def.get("schedule").is_some() {
            f.set("kind", "past");
            f.set("timezone", s("/schedule/timezone"));
            if def.pointer("/schedule/repeat").is_some() {
                f.set("schedule_mode", "repeat");
                f.set("repeat_every", num("/schedule/repeat/every"));
                f.set("repeat_unit", s("/schedule/repeat/unit"));
                f.set("repeat_time", s("/schedule/repeat/time"));
                f.set("repeat_day", num("/schedule/repeat/day"));
                for d in (def
                    .pointer("/schedule/repeat/weekdays")
                    .and_then(Value::as_array))
                .into_iter()
                .flatten()
                {
                    f.set("repeat_weekdays", d.as_str().unwrap_or(""));
                }
                f.set("repeat_until", local(s("/schedule/until")));
            } else {
                f.set("schedule_mode", "at");
                let at: Vec<String> = (def.pointer("/schedule/at").and_then(Value::as_array))
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(local))
                    .collect();
                f.set("schedule_at", at.join(", "));
            }
        } else {
            f.set("kind", "live");
            f.set("trigger_event", s("/trigger/event"));
            for (i, c) in (def.pointer("/trigger/where").and_then(Value::as_array))
                .into_iter()
                .flatten()
                .take(TRIGGER_ROWS)
                .enumerate()
            {
                f.set(&format!("trig{i}_prop"), c["prop"].as_str().unwrap_or(""));
                f.set(&format!("trig{i}_op"), c["op"].as_str().unwrap_or(""));
                f.set(&format!("trig{i}_value"), join_list(&c["value"]));
            }
            f.set("inaction_event", s("/trigger/inaction/event"));
            f.set("inaction_within", s("/trigger/inaction/within"));
        }
        f
    }
}

/// The weekdays of a weekly repeat: the config's names and the labels shown.
pub const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

/// A `datetime-local` value (UTC) as RFC 3339; an RFC 3339 value as it is.
fn utc(t: &str) -> Option<String> {
    if t.is_empty() {
        return None;
    }
    if t.parse::<jiff::Timestamp>().is_ok() {
        return Some(t.to_owned());
    }
    let with_seconds = if t.len() == 16 {
        format!("{t}:00")
    } else {
        t.to_owned()
    };
    Some(format!("{with_seconds}Z"))
}

/// An RFC 3339 time as a `datetime-local` value in UTC.
fn local(t: &str) -> String {
    match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M").to_string(),
        Err(_) => t.to_owned(),
    }
}

fn number(s: &str) -> Option<serde_json::Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(i.into());
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
}

/// A number, `true`/`false`, or else the text.
fn scalar(s: &str) -> Value {
    match s {
        "true" => true.into(),
        "false" => false.into(),
        _ => number(s).map_or_else(|| Value::String(s.to_owned()), Value::Number),
    }
}

fn split_list(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect()
}

fn join_list(v: &Value) -> String {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        x => x.to_string(),
    }
}

/// The input a problem at `field` (`who.where[2].value`) belongs to, given the origins.
pub fn input_of(field: &str, o: &Origins) -> Option<String> {
    let index = |prefix: &str| -> Option<usize> {
        let rest = field.strip_prefix(prefix)?.strip_prefix('[')?;
        rest[..rest.find(']')?].parse().ok()
    };
    if let Some(i) = index("who.where") {
        return o.who_where.get(i).cloned();
    }
    if let Some(i) = index("trigger.where") {
        return o.trigger_where.get(i).cloned();
    }
    if let Some(i) = index("who.past") {
        return o.past.get(i).cloned();
    }
    let table = [
        ("what.audience.new.description", "audience_description"),
        ("what.audience.new.name", "audience_name"),
        ("what.audience.new", "audience_name"),
        ("what.audience.existing", "audience_existing"),
        ("what.audience", "audience_name"),
        ("what.identifiers", "identifiers"),
        ("trigger.inaction", "inaction_event"),
        ("trigger.event", "trigger_event"),
        ("trigger", "trigger_event"),
        ("who.control_group", "control_group"),
        ("who.target_cap", "target_cap"),
        ("who.segment", "segment"),
        ("goal.revenue_prop", "goal_revenue_prop"),
        ("goal.within", "goal_within"),
        ("goal", "goal_event"),
        ("schedule.repeat", "repeat_every"),
        ("schedule.at", "schedule_at"),
        ("schedule.until", "repeat_until"),
        ("schedule.timezone", "timezone"),
        ("schedule", "schedule_at"),
        ("ad_account", "ad_account"),
        ("start", "start"),
        ("end", "end"),
        ("name", "name"),
        ("id", "id"),
    ];
    (table.iter())
        .find(|(p, _)| field == *p || field.starts_with(&format!("{p}.")))
        .map(|(_, i)| (*i).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    #[test]
    fn a_live_form_is_the_definition_and_back() {
        let f = form(&[
            ("id", "carts"),
            ("name", "Carts"),
            ("kind", "live"),
            ("ad_account", "7178918106775994370"),
            ("start", "2026-11-01T00:00"),
            ("country", "India, Germany"),
            ("reach_email", "on"),
            ("prop0_prop", "plan"),
            ("prop0_op", "="),
            ("prop0_value", "free"),
            ("control_group", "10"),
            ("audience_mode", "new"),
            ("audience_name", "Cart abandoners"),
            ("identifiers", "email"),
            ("identifiers", "phone"),
            ("trigger_event", "Added To Cart"),
            ("inaction_event", "Charged"),
            ("inaction_within", "30m"),
        ]);
        let (def, o) = f.definition();
        assert_eq!(
            def,
            json!({
                "id": "carts", "name": "Carts", "ad_account": "7178918106775994370",
                "start": "2026-11-01T00:00:00Z",
                "who": {"where": [
                    {"prop": "country", "op": "in", "value": ["India", "Germany"]},
                    {"prop": "has_email", "op": "=", "value": true},
                    {"prop": "plan", "op": "=", "value": "free"}
                ], "control_group": 10},
                "what": {"audience": {"new": {"name": "Cart abandoners"}}, "identifiers": ["email", "phone"]},
                "trigger": {"event": "Added To Cart", "inaction": {"event": "Charged", "within": "30m"}}
            })
        );
        assert_eq!(
            input_of("who.where[2].value", &o).as_deref(),
            Some("prop0_prop")
        );
        assert_eq!(
            input_of("what.audience.new.description", &o).as_deref(),
            Some("audience_description")
        );
        let (again, _) = Form::from_definition(&def).definition();
        assert_eq!(again, def);
    }

    #[test]
    fn a_weekly_repeat_is_a_schedule() {
        let f = form(&[
            ("kind", "past"),
            ("schedule_mode", "repeat"),
            ("repeat_every", "1"),
            ("repeat_unit", "week"),
            ("repeat_weekdays", "mon"),
            ("repeat_weekdays", "thu"),
            ("repeat_time", "06:00"),
            ("timezone", "Europe/Berlin"),
            ("past0_kind", "did"),
            ("past0_event", "Product Viewed"),
            ("past0_agg", "count"),
            ("past0_op", ">="),
            ("past0_value", "2"),
            ("past0_days", "7"),
            ("identifiers", "email"),
            ("audience_name", "Viewers"),
        ]);
        let (def, _) = f.definition();
        assert_eq!(
            def["schedule"],
            json!({"timezone": "Europe/Berlin", "repeat": {"every": 1, "unit": "week", "time": "06:00", "weekdays": ["mon", "thu"]}})
        );
        assert_eq!(
            def["who"]["past"],
            json!([{"did": "Product Viewed", "agg": "count", "op": ">=", "value": 2, "in_last": "7d"}])
        );
        let (again, _) = Form::from_definition(&def).definition();
        assert_eq!(again, def);
    }
}
