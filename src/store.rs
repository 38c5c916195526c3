//! The campaign store (DESIGN §9): campaign and segment definitions published while the
//! service runs, as the compacted `<topic_prefix>.campaigns` topic holds them.
//!
//! A record's key is `campaign/ID` or `segment/ID`; its value a [`Doc`]: the definition (the
//! `[[campaign]]` / `[[segment]]` table as JSON) and its lifecycle in event time — when it was
//! published and stopped, and each later raise of `target_cap`. Each value carries the whole
//! history, so a compacted topic (the latest value per key) still tells every shard, and
//! `replay --campaigns`, which definition held at which event time. A draft deleted is a
//! tombstone (an empty value).
//!
//! The edit rules are [`Store`]'s: drafts change freely; a published campaign changes only
//! `name`, `end` (later), `who.target_cap` (higher) and its new audience's `description`; a
//! stopped campaign is final (clone it). A segment a published campaign uses cannot change:
//! the campaign keeps the definition it was published with.
//!
//! [`Store::config`] makes the engine's [`Config`]: the config file's campaigns ("managed by
//! config") and, after them, the published campaigns in `(published_at, id)` order — an order
//! that only grows, so campaign indices stay stable as campaigns are published.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::event::EventTime;
use crate::problems::{ConfigError, Problems};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Campaign,
    Segment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Campaign => "campaign",
            Kind::Segment => "segment",
        }
    }
}

/// Where a definition is in its life, as stored (`scheduled`, `running` and `completed` are
/// derived from time: see [`Doc::state_at`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    Draft,
    Published,
    Stopped,
}

/// A campaign's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Draft,
    Scheduled,
    Running,
    Completed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::Scheduled => "scheduled",
            State::Running => "running",
            State::Completed => "completed",
            State::Stopped => "stopped",
        }
    }
}

/// A raise of `who.target_cap` after publishing, effective at an event time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapChange {
    pub effective_at: EventTime,
    pub target_cap: Option<u64>,
}

/// One value of the campaigns topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    pub kind: Kind,
    pub id: String,
    pub state: Stored,
    /// The `[[campaign]]` / `[[segment]]` table as JSON, as it stands.
    pub definition: Value,
    /// The event time from which the published definition holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<EventTime>,
    /// The event time at which it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<EventTime>,
    /// `who.target_cap` at publishing, when raised since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_cap: Option<Option<u64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_changes: Vec<CapChange>,
    /// Wall-clock milliseconds of the last change.
    pub updated_at: i64,
}

fn ms(t: &str) -> Option<EventTime> {
    let ts: jiff::Timestamp = t.parse().ok()?;
    Some(ts.as_millisecond())
}

impl Doc {
    /// A new draft of `definition` (its id is `id`), changed at wall-clock `now`.
    pub fn draft(kind: Kind, id: String, definition: Value, now: i64) -> Doc {
        Doc {
            kind,
            id,
            state: Stored::Draft,
            definition,
            published_at: None,
            stopped_at: None,
            published_cap: None,
            cap_changes: Vec::new(),
            updated_at: now,
        }
    }

    fn str_at<'a>(&'a self, path: &[&str]) -> Option<&'a str> {
        let mut v = &self.definition;
        for k in path {
            v = v.get(k)?;
        }
        v.as_str()
    }

    /// The campaign's state at event time `now`: `scheduled` before its start (or before its
    /// first run), `completed` once its end passed, `running` between.
    pub fn state_at(&self, now: EventTime) -> State {
        match self.state {
            Stored::Draft => State::Draft,
            Stored::Stopped => State::Stopped,
            Stored::Published => {
                let start = self
                    .str_at(&["start"])
                    .and_then(ms)
                    .unwrap_or(EventTime::MIN);
                let from = start.max(self.published_at.unwrap_or(EventTime::MIN));
                let end = self.str_at(&["end"]).and_then(ms);
                if end.is_some_and(|e| now >= e) {
                    State::Completed
                } else if now < from {
                    State::Scheduled
                } else {
                    State::Running
                }
            }
        }
    }
}

/// Why the store refused a change (the API's 404, 409 and 422).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("no {kind} {id:?}", kind = .0.as_str(), id = .1)]
    NotFound(Kind, String),
    #[error("{0}")]
    Conflict(String),
    #[error("the definition has problems")]
    Invalid(Vec<ConfigError>),
}

/// The definitions of the campaigns topic, by `(kind, id)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    docs: BTreeMap<(Kind, String), Doc>,
}

/// The keys a published campaign may change; everything else must stay as published.
const EDITABLE: &[&[&str]] = &[
    &["name"],
    &["end"],
    &["who", "target_cap"],
    &["what", "audience", "new", "description"],
];

fn without_editable(v: &Value) -> Value {
    let mut v = v.clone();
    for path in EDITABLE {
        let (last, parent) = path.split_last().expect("non-empty");
        let pointer: String = parent.iter().map(|k| format!("/{k}")).collect();
        if let Some(o) = v.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            o.remove(*last);
        }
    }
    v
}

fn cap_of(v: &Value) -> Option<u64> {
    v.get("who")?.get("target_cap")?.as_u64()
}

/// The record key of a definition.
pub fn key(kind: Kind, id: &str) -> String {
    format!("{}/{id}", kind.as_str())
}

impl Store {
    pub fn get(&self, kind: Kind, id: &str) -> Option<&Doc> {
        self.docs.get(&(kind, id.to_owned()))
    }

    pub fn docs(&self, kind: Kind) -> impl Iterator<Item = &Doc> {
        self.docs.values().filter(move |d| d.kind == kind)
    }

    /// Applies one record of the campaigns topic: the latest value per key wins; an empty
    /// value (tombstone) deletes.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) -> Result<(), String> {
        let (kind, id) = match key.split_once('/') {
            Some(("campaign", id)) => (Kind::Campaign, id),
            Some(("segment", id)) => (Kind::Segment, id),
            _ => return Err(format!("key {key:?} is not campaign/ID or segment/ID")),
        };
        match value.filter(|v| !v.is_empty()) {
            None => {
                self.docs.remove(&(kind, id.to_owned()));
            }
            Some(v) => {
                let doc: Doc = serde_json::from_slice(v).map_err(|e| format!("{key}: {e}"))?;
                if doc.kind != kind || doc.id != id {
                    return Err(format!(
                        "{key}: the value is {}/{}",
                        doc.kind.as_str(),
                        doc.id
                    ));
                }
                self.docs.insert((kind, id.to_owned()), doc);
            }
        }
        Ok(())
    }

    /// Reads a recording of the campaigns topic: `kcat -C -J` envelopes (key and payload) or
    /// plain JSON lines each holding a [`Doc`] (keyed by its kind and id). Later lines win.
    pub fn read_recording(text: &str) -> Result<Store, String> {
        let mut store = Store::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
            let at = |e: String| format!("line {}: {e}", n + 1);
            if v.get("topic").is_some() && v.get("payload").is_some() {
                let key = v["key"]
                    .as_str()
                    .ok_or_else(|| at("an envelope without a key".into()))?;
                let payload = v["payload"].as_str().map(str::as_bytes);
                store.apply(key, payload).map_err(at)?;
            } else {
                let doc: Doc = serde_json::from_value(v).map_err(|e| at(e.to_string()))?;
                let k = key(doc.kind, &doc.id);
                store.apply(&k, Some(line.as_bytes())).map_err(at)?;
            }
        }
        Ok(store)
    }

    /// Creates a draft.
    pub fn create(&mut self, kind: Kind, definition: Value, now: i64) -> Result<&Doc, Refused> {
        let id = definition
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Refused::Invalid(vec![ConfigError {
                    campaign: None,
                    field: "id".into(),
                    message: "missing".into(),
                }])
            })?
            .to_owned();
        let k = (kind, id.clone());
        if self.docs.contains_key(&k) {
            return Err(Refused::Conflict(format!(
                "{} {id:?} exists",
                kind.as_str()
            )));
        }
        Ok(self
            .docs
            .entry(k)
            .or_insert(Doc::draft(kind, id, definition, now)))
    }

    fn doc_mut(&mut self, kind: Kind, id: &str) -> Result<&mut Doc, Refused> {
        self.docs
            .get_mut(&(kind, id.to_owned()))
            .ok_or_else(|| Refused::NotFound(kind, id.to_owned()))
    }

    /// Whether a published (not stopped) campaign uses segment `id`.
    fn segment_in_use(&self, id: &str) -> Option<&str> {
        self.docs(Kind::Campaign)
            .filter(|d| d.state == Stored::Published)
            .find(|d| d.str_at(&["who", "segment"]) == Some(id))
            .map(|d| d.id.as_str())
    }

    /// Replaces a definition: a draft's freely; a published campaign's within the edit rules
    /// (a raised cap takes effect at `effective_at`).
    pub fn update(
        &mut self,
        kind: Kind,
        id: &str,
        definition: Value,
        effective_at: EventTime,
        now: i64,
    ) -> Result<&Doc, Refused> {
        if definition.get("id").and_then(Value::as_str) != Some(id) {
            return Err(Refused::Conflict(format!(
                "the definition's id must stay {id:?}"
            )));
        }
        if kind == Kind::Segment {
            if let Some(c) = self.segment_in_use(id) {
                return Err(Refused::Conflict(format!(
                    "segment {id:?} is used by published campaign {c:?}: clone it"
                )));
            }
        }
        let doc = self.doc_mut(kind, id)?;
        match doc.state {
            Stored::Draft => {}
            Stored::Stopped => {
                return Err(Refused::Conflict(format!(
                    "{id:?} is stopped: a stopped campaign is cloned, not changed"
                )))
            }
            Stored::Published => {
                if without_editable(&doc.definition) != without_editable(&definition) {
                    return Err(Refused::Conflict(
                        "a published campaign can change only name, end (later), \
                         who.target_cap (higher) and what.audience.new.description"
                            .into(),
                    ));
                }
                let end = |v: &Value| v.get("end").and_then(Value::as_str).and_then(ms);
                if let (Some(old), new) = (end(&doc.definition), end(&definition)) {
                    if new.is_none_or(|n| n < old) {
                        return Err(Refused::Conflict("end can only move later".into()));
                    }
                }
                let (old, new) = (cap_of(&doc.definition), cap_of(&definition));
                if old != new {
                    if old.is_none() || new.is_some_and(|n| n < old.unwrap_or(0)) {
                        return Err(Refused::Conflict("target_cap can only be raised".into()));
                    }
                    if doc.published_cap.is_none() {
                        doc.published_cap = Some(old);
                    }
                    doc.cap_changes.push(CapChange {
                        effective_at,
                        target_cap: new,
                    });
                }
            }
        }
        doc.definition = definition;
        doc.updated_at = now;
        Ok(doc)
    }

    /// Deletes a draft.
    pub fn delete(&mut self, kind: Kind, id: &str) -> Result<(), Refused> {
        let doc = self.doc_mut(kind, id)?;
        if kind == Kind::Campaign && doc.state != Stored::Draft {
            return Err(Refused::Conflict(format!(
                "{id:?} is published: stop it instead"
            )));
        }
        if kind == Kind::Segment {
            if let Some(c) = self.segment_in_use(id) {
                return Err(Refused::Conflict(format!(
                    "segment {id:?} is used by published campaign {c:?}"
                )));
            }
        }
        self.docs.remove(&(kind, id.to_owned()));
        Ok(())
    }

    /// Publishes a draft campaign at `effective_at`; `valid` checks the store's engine config
    /// with it published (every problem, as `check-config` lists them).
    pub fn publish(
        &mut self,
        id: &str,
        effective_at: EventTime,
        now: i64,
        valid: impl FnOnce(&Store) -> Result<(), Problems>,
    ) -> Result<&Doc, Refused> {
        let doc = self.doc_mut(Kind::Campaign, id)?;
        if doc.state != Stored::Draft {
            return Err(Refused::Conflict(format!("{id:?} is already published")));
        }
        let mut next = self.clone();
        let d = next.doc_mut(Kind::Campaign, id)?;
        d.state = Stored::Published;
        d.published_at = Some(effective_at);
        d.updated_at = now;
        valid(&next).map_err(|p| Refused::Invalid(p.0))?;
        *self = next;
        Ok(self.get(Kind::Campaign, id).expect("just published"))
    }

    /// Stops a published campaign at `effective_at` (final).
    pub fn stop(&mut self, id: &str, effective_at: EventTime, now: i64) -> Result<&Doc, Refused> {
        let doc = self.doc_mut(Kind::Campaign, id)?;
        match doc.state {
            Stored::Published => {}
            Stored::Draft => {
                return Err(Refused::Conflict(format!(
                    "{id:?} is a draft: delete it instead"
                )))
            }
            Stored::Stopped => return Err(Refused::Conflict(format!("{id:?} is stopped"))),
        }
        doc.state = Stored::Stopped;
        doc.stopped_at = Some(effective_at);
        doc.updated_at = now;
        Ok(doc)
    }

    /// Campaigns by state at `now`: those of the config (`config`: their tables as JSON, always
    /// published) and the store's. Every state is listed, 0 included.
    pub fn states(&self, config: &[Value], now: i64) -> BTreeMap<&'static str, u64> {
        let mut m: BTreeMap<&'static str, u64> = [
            State::Draft,
            State::Scheduled,
            State::Running,
            State::Completed,
            State::Stopped,
        ]
        .into_iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for def in config {
            let doc = Doc {
                state: Stored::Published,
                ..Doc::draft(Kind::Campaign, String::new(), def.clone(), 0)
            };
            *m.entry(doc.state_at(now).as_str()).or_default() += 1;
        }
        for d in self.docs(Kind::Campaign) {
            *m.entry(d.state_at(now).as_str()).or_default() += 1;
        }
        m
    }

    /// The published (and stopped) campaigns in the engine's order: `(published_at, id)`.
    pub fn published(&self) -> Vec<&Doc> {
        let mut v: Vec<&Doc> = self
            .docs(Kind::Campaign)
            .filter(|d| d.state != Stored::Draft)
            .collect();
        v.sort_by_key(|d| (d.published_at, d.id.clone()));
        v
    }

    /// The engine's config as if `doc` (a draft campaign included) were published: every
    /// problem `check-config` would list for it.
    pub fn check(
        &self,
        base: &toml::Table,
        doc: &Doc,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Problems> {
        let mut virt = self.clone();
        let mut doc = doc.clone();
        if doc.kind == Kind::Campaign && doc.state == Stored::Draft {
            doc.state = Stored::Published;
            doc.published_at = Some(EventTime::MAX);
        }
        virt.docs.insert((doc.kind, doc.id.clone()), doc);
        virt.config(base, env)
    }

    /// The engine's config from the config file at `path` and this store.
    pub fn load_config(&self, path: &std::path::Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let base: toml::Table = match text.parse() {
            Ok(t) => t,
            // Config::parse words the syntax error.
            Err(_) => return Ok(Config::parse(&text, std::env::vars())?),
        };
        Ok(self.config(&base, std::env::vars())?)
    }

    /// The engine's config: `base`'s campaigns, then the published ones (each with its
    /// publish time, stop and cap raises), with the store's segments.
    pub fn config(
        &self,
        base: &toml::Table,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Problems> {
        let mut root = base.clone();
        let to_toml = |v: &Value| -> Result<toml::Value, Problems> {
            serde_json::from_value::<toml::Value>(v.clone()).map_err(|e| {
                let mut p = Problems::default();
                p.service("(definition)", format!("not a TOML table: {e}"));
                p
            })
        };
        let published = self.published();
        let mut push = |key: &str, v: toml::Value| {
            let arr = root
                .entry(key)
                .or_insert_with(|| toml::Value::Array(Vec::new()));
            if let toml::Value::Array(a) = arr {
                a.push(v);
            }
        };
        for d in self.docs(Kind::Segment) {
            push("segment", to_toml(&d.definition)?);
        }
        for d in &published {
            let mut def = d.definition.clone();
            // The cap at publishing; raises apply in event time.
            if let (Some(cap), Some(who)) = (d.published_cap, def.get_mut("who")) {
                if let Some(o) = who.as_object_mut() {
                    match cap {
                        Some(c) => o.insert("target_cap".into(), c.into()),
                        None => o.remove("target_cap"),
                    };
                }
            }
            push("campaign", to_toml(&def)?);
        }
        let mut config = Config::parse_table(root, env)?;
        let n = config.campaigns.len() - published.len();
        for (c, d) in config.campaigns[n..].iter_mut().zip(&published) {
            c.live_from = d.published_at.unwrap_or(EventTime::MIN);
            if let Some(stop) = d.stopped_at {
                c.end = c.end.min(stop);
            }
            c.cap_changes = (d.cap_changes.iter())
                .map(|x| (x.effective_at, x.target_cap))
                .collect();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn campaign() -> Value {
        json!({
            "id": "c", "name": "C", "ad_account": "1",
            "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z",
            "trigger": {"event": "Added To Cart"},
            "who": {"target_cap": 10},
            "what": {"audience": {"new": {"name": "A", "description": "d"}},
                     "identifiers": ["email"]}
        })
    }

    fn base() -> toml::Table {
        toml::Table::new()
    }

    fn published() -> Store {
        let mut s = Store::default();
        s.create(Kind::Campaign, campaign(), 0).unwrap();
        s.publish("c", 100, 1, |s| s.config(&base(), Vec::new()).map(|_| ()))
            .unwrap();
        s
    }

    fn conflict(r: Result<&Doc, Refused>) -> String {
        match r {
            Err(Refused::Conflict(m)) => m,
            other => panic!("expected a conflict, got {other:?}"),
        }
    }

    #[test]
    fn a_published_campaign_changes_only_name_end_cap_and_description() {
        let mut s = published();
        let mut ok = campaign();
        ok["name"] = "C2".into();
        ok["end"] = "2026-12-05T00:00:00Z".into();
        ok["who"]["target_cap"] = 20.into();
        ok["what"]["audience"]["new"]["description"] = "longer".into();
        s.update(Kind::Campaign, "c", ok.clone(), 500, 2).unwrap();
        let doc = s.get(Kind::Campaign, "c").unwrap();
        assert_eq!(doc.published_cap, Some(Some(10)));
        assert_eq!(
            doc.cap_changes,
            vec![CapChange {
                effective_at: 500,
                target_cap: Some(20)
            }]
        );

        let edit = |f: &dyn Fn(&mut Value)| {
            let mut v = ok.clone();
            f(&mut v);
            v
        };
        for (what, v) in [
            (
                "trigger",
                edit(&|v| v["trigger"]["event"] = "Charged".into()),
            ),
            (
                "earlier end",
                edit(&|v| v["end"] = "2026-11-20T00:00:00Z".into()),
            ),
            ("lower cap", edit(&|v| v["who"]["target_cap"] = 5.into())),
            (
                "audience name",
                edit(&|v| v["what"]["audience"]["new"]["name"] = "B".into()),
            ),
        ] {
            let m = conflict(s.update(Kind::Campaign, "c", v, 600, 3));
            assert!(!m.is_empty(), "{what}");
        }
        assert_eq!(
            s.get(Kind::Campaign, "c").unwrap().definition,
            ok,
            "unchanged"
        );
        // Dropping the cap raises it to no cap.
        let uncapped = edit(&|v| {
            v["who"].as_object_mut().unwrap().remove("target_cap");
        });
        s.update(Kind::Campaign, "c", uncapped.clone(), 650, 3)
            .unwrap();
        let back = conflict(s.update(Kind::Campaign, "c", ok.clone(), 660, 3));
        assert!(back.contains("raised"), "{back}");
        assert!(matches!(
            s.delete(Kind::Campaign, "c"),
            Err(Refused::Conflict(_))
        ));
        s.stop("c", 700, 4).unwrap();
        assert!(conflict(s.update(Kind::Campaign, "c", ok, 800, 5)).contains("cloned"));
        assert!(conflict(s.stop("c", 900, 6)).contains("stopped"));
    }

    #[test]
    fn publishing_an_invalid_draft_lists_its_problems_and_keeps_the_draft() {
        let mut s = Store::default();
        let mut bad = campaign();
        bad["who"]["control_group"] = 150.into();
        bad["start"] = "yesterday".into();
        s.create(Kind::Campaign, bad, 0).unwrap();
        let r = s.publish("c", 100, 1, |s| s.config(&base(), Vec::new()).map(|_| ()));
        let Err(Refused::Invalid(problems)) = r else {
            panic!("{r:?}")
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(
            fields.contains(&"who.control_group") && fields.contains(&"start"),
            "{fields:?}"
        );
        assert!(problems.iter().all(|p| p.campaign.as_deref() == Some("c")));
        assert_eq!(s.get(Kind::Campaign, "c").unwrap().state, Stored::Draft);
        assert!(matches!(
            s.create(Kind::Campaign, campaign(), 2),
            Err(Refused::Conflict(_))
        ));
    }

    #[test]
    fn a_segment_in_use_is_frozen_and_states_follow_event_time() {
        let mut s = Store::default();
        s.create(Kind::Segment, json!({"id": "s", "where": []}), 0)
            .unwrap();
        let mut c = campaign();
        c["who"]["segment"] = "s".into();
        s.create(Kind::Campaign, c, 0).unwrap();
        assert_eq!(
            s.get(Kind::Campaign, "c").unwrap().state_at(0),
            State::Draft
        );
        s.publish("c", ms("2026-11-10T00:00:00Z").unwrap(), 1, |s| {
            s.config(&base(), Vec::new()).map(|_| ())
        })
        .unwrap();
        let seg = json!({"id": "s", "where": [{"prop": "age", "op": ">", "value": 3}]});
        assert!(conflict(s.update(Kind::Segment, "s", seg, 5, 2)).contains("clone"));
        assert!(matches!(
            s.delete(Kind::Segment, "s"),
            Err(Refused::Conflict(_))
        ));
        let doc = s.get(Kind::Campaign, "c").unwrap();
        let at = |t: &str| doc.state_at(ms(t).unwrap());
        assert_eq!(
            at("2026-11-05T00:00:00Z"),
            State::Scheduled,
            "before publishing"
        );
        assert_eq!(at("2026-11-10T00:00:00Z"), State::Running);
        assert_eq!(at("2026-12-01T00:00:00Z"), State::Completed);
        s.stop("c", 0, 3).unwrap();
        assert_eq!(
            s.get(Kind::Campaign, "c").unwrap().state_at(0),
            State::Stopped
        );
    }
}
