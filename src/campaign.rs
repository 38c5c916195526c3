//! Campaign definitions: the `[[campaign]]` tables of DESIGN §3, read field by field and
//! validated into [`Campaign`], which cannot hold an invalid value. Validation reports *every*
//! problem, each with its campaign id and the full path of its field (`who.where[1].op`).
//!
//! Limits (README "Configuration reference"): audience names ≤ [`MAX_AUDIENCE_NAME_CHARS`]
//! (TikTok cuts longer ones), descriptions ≤ [`MAX_DESCRIPTION_CHARS`], `inaction.within` and
//! `goal.within` in [`WITHIN`], and at most [`MAX_NAMES`] distinct property names and as many
//! event names over all campaigns (they are interned as 16-bit ids).

pub mod condition;
pub mod past;
pub mod schedule;

use crate::duration::{HumanDuration, Range};
use crate::event::{EventTime, Schema, CANONICAL_PROPS, MAX_NAMES};
use crate::problems::{Field, Problems, Reader, Table};
use condition::{parse_version, Condition, Op, Operand, Scalar, VERSION_PROPS};

/// Maximum length of an audience description (TikTok limit).
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// Maximum length of a new audience's name: TikTok's `segment/audience/` cuts longer names to
/// 67 characters and "...", so the audience would not carry the name the config gives it.
pub const MAX_AUDIENCE_NAME_CHARS: usize = 70;

/// `trigger.inaction.within` and `goal.within`: from 1 ms to a year.
pub const WITHIN: Range = Range::new("1ms", 1, "365d", 365 * 86_400_000);

// === validated types ===

/// A validated campaign.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// `[a-z0-9-]+`, unique.
    pub id: String,
    pub name: String,
    /// TikTok advertiser id.
    pub ad_account: String,
    /// Trigger events count when `start <= ts < end`.
    pub start: EventTime,
    pub end: EventTime,
    /// A live campaign's trigger (exactly one of `trigger` and `schedule`).
    pub trigger: Option<Trigger>,
    /// A past-behaviour campaign's runs.
    pub schedule: Option<schedule::Schedule>,
    pub who: Who,
    pub what: What,
    pub goal: Option<Goal>,
    /// `once_per_user`: one decision per user (`true`, the default) or, for a scheduled
    /// campaign, one per run in which the user qualifies.
    pub once_per_user: bool,
    /// Published from the campaigns topic (DESIGN §9): triggers and runs count from this event
    /// time on (the publish's `effective_at`); `EventTime::MIN` for a campaign of the config.
    pub live_from: EventTime,
    /// Later raises of `who.target_cap`, `(effective_at, cap)` in time order: a qualification
    /// at `at` is capped by the last one at or before `at`.
    pub cap_changes: Vec<(EventTime, Option<u64>)>,
}

#[derive(Debug, Clone)]
pub struct Trigger {
    pub event: String,
    pub conditions: Vec<Condition>,
    pub inaction: Option<Inaction>,
}

#[derive(Debug, Clone)]
pub struct Inaction {
    pub event: String,
    /// Only an inaction event satisfying these closes a window (`inaction.where`).
    pub conditions: Vec<Condition>,
    /// `inaction.match`: interned properties whose values must equal the trigger's.
    pub match_props: Vec<u16>,
    pub within: HumanDuration,
}

#[derive(Debug, Clone)]
pub struct Who {
    /// The campaign's own `where` and its segment's, as one list.
    pub conditions: Vec<Condition>,
    /// The campaign's behaviour rules and its segment's.
    pub past: Vec<past::PastSpec>,
    /// Percent of qualified users held out, 0..=99.
    pub control_group: u8,
    pub target_cap: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    New { name: String, description: String },
    Existing(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identifiers {
    pub email: bool,
    pub phone: bool,
}

#[derive(Debug, Clone)]
pub struct What {
    pub audience: Audience,
    pub identifiers: Identifiers,
    pub remove_on_goal: bool,
    /// `sync = "mirror"`: each run also removes members who no longer qualify.
    pub mirror: bool,
}

#[derive(Debug, Clone)]
pub struct Goal {
    pub event: String,
    pub within: HumanDuration,
    /// `goal.where`: only a goal event satisfying these converts.
    pub conditions: Vec<Condition>,
    /// `goal.revenue_prop`: the (interned) event property whose number is the conversion's
    /// revenue in the report.
    pub revenue_prop: Option<u16>,
}

impl Campaign {
    /// The target cap in force for a qualification at `at`.
    pub fn cap_at(&self, at: EventTime) -> Option<u64> {
        (self.cap_changes.iter().rev())
            .find(|(t, _)| *t <= at)
            .map_or(self.who.target_cap, |(_, c)| *c)
    }

    /// Whether the trigger is an event/inaction pair.
    pub fn within_ms(&self) -> i64 {
        self.trigger
            .as_ref()
            .and_then(|t| t.inaction.as_ref())
            .map_or(0, |i| i.within.as_millis())
    }

    /// The zone of the campaign's days: its schedule's, UTC for live campaigns.
    pub fn zone(&self) -> jiff::tz::TimeZone {
        self.schedule
            .as_ref()
            .map_or(jiff::tz::TimeZone::UTC, |s| s.tz.clone())
    }
}

pub use crate::event::parse_rfc3339_ms;

// === validation ===

const CAMPAIGN_KEYS: &[&str] = &[
    "id",
    "name",
    "ad_account",
    "start",
    "end",
    "trigger",
    "schedule",
    "once_per_user",
    "who",
    "what",
    "goal",
];
const CONDITION_KEYS: &[&str] = &["prop", "op", "value"];

/// The config's names, interned into one [`Schema`] for all campaigns. The first name past a
/// limit is reported where it is; later ones only make their campaign invalid.
pub(crate) struct Names<'s> {
    pub schema: &'s mut Schema,
    props_full: bool,
    events_full: bool,
}

impl<'s> Names<'s> {
    pub fn new(schema: &'s mut Schema) -> Self {
        Names {
            schema,
            props_full: false,
            events_full: false,
        }
    }

    fn prop(&mut self, r: &mut Reader, field: &str, name: &str) -> Option<u16> {
        let id = self.schema.intern_prop(name);
        if id.is_none() && !std::mem::replace(&mut self.props_full, true) {
            r.err(
                field,
                format!(
                    "more than {MAX_NAMES} distinct property names in the config (the {} \
                     canonical profile properties included)",
                    CANONICAL_PROPS.len()
                ),
            );
        }
        id
    }

    fn event(&mut self, r: &mut Reader, field: &str, name: &str) -> Option<u16> {
        let id = self.schema.intern_event(name);
        if id.is_none() && !std::mem::replace(&mut self.events_full, true) {
            r.err(
                field,
                format!("more than {MAX_NAMES} distinct event names in the config"),
            );
        }
        id
    }
}

/// A validated `[[segment]]`: conditions and behaviour rules any campaign can add to its Who.
#[derive(Debug, Clone)]
pub struct Segment {
    pub id: String,
    pub conditions: Vec<Condition>,
    pub past: Vec<past::PastSpec>,
}

/// Validates one `[[segment]]` table (problems labelled `segment ID`).
pub(crate) fn validate_segment(
    v: &toml::Value,
    label: String,
    names: &mut Names,
    problems: &mut Problems,
) -> Option<Segment> {
    let before = problems.len();
    let mut r = Reader::new(problems, Some(label));
    let t = r.table(String::new(), v, &["id", "where", "past"])?;
    let id = r.req::<String>(&t, "id");
    if let Some(id) = &id {
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            r.err("id", "must match [a-z0-9-]+");
        }
    }
    let conditions = conditions(&t, "where", names, &mut r);
    let past = past_rules(&t, names, &mut r);
    if r.count() > before {
        return None;
    }
    Some(Segment {
        id: id?,
        conditions: conditions?,
        past: past?,
    })
}

/// `who.past` / a segment's `past`: every rule.
fn past_rules(t: &Table, names: &mut Names, r: &mut Reader) -> Option<Vec<past::PastSpec>> {
    let items = r.array(t, "past").or(&[])?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let keys = [
            "did", "did_not", "where", "agg", "prop", "op", "value", "in_last", "between",
        ];
        match r.table(format!("{}[{i}]", t.at("past")), item, &keys) {
            Some(rt) => match past_rule(&rt, names, r) {
                Some(p) => out.push(p),
                None => ok = false,
            },
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn past_rule(t: &Table, names: &mut Names, r: &mut Reader) -> Option<past::PastSpec> {
    let before = r.count();
    let did = r.get::<String>(t, "did").optional()?;
    let did_not = r.get::<String>(t, "did_not").optional()?;
    let (event, negated) = match (did, did_not) {
        (Some(e), None) => (e, false),
        (None, Some(e)) => (e, true),
        (Some(_), Some(_)) => {
            r.err(&t.path, "did or did_not, not both");
            return None;
        }
        (None, None) => {
            r.err(&t.path, "needs did = \"EVENT\" or did_not = \"EVENT\"");
            return None;
        }
    };
    let key = if negated { "did_not" } else { "did" };
    if event.is_empty() {
        r.err(&t.at(key), "missing");
    } else {
        names.event(r, &t.at(key), &event);
    }
    let conditions = conditions(t, "where", names, r);
    let agg = match r.get::<String>(t, "agg").optional()? {
        None => {
            for k in ["prop", "op", "value"] {
                if t.t.contains_key(k) {
                    r.err(&t.at(k), "only with agg");
                }
            }
            None
        }
        Some(_) if negated => {
            r.err(
                &t.at("agg"),
                "did_not takes no agg (use agg = \"count\" with op = \"=\", value = 0)",
            );
            None
        }
        Some(a) => {
            match past::Agg::parse(&a) {
                None => {
                    r.err(
                        &t.at("agg"),
                        format!("unknown agg {a:?} (count, sum, avg, min or max)"),
                    );
                    None
                }
                Some(agg) => {
                    let prop = match (agg, r.get::<String>(t, "prop").optional()?) {
                        (past::Agg::Count, None) => None,
                        (past::Agg::Count, Some(_)) => {
                            r.err(&t.at("prop"), "count takes no prop");
                            None
                        }
                        (_, None) => {
                            r.err(
                                &t.at("prop"),
                                format!("{a} needs prop (a numeric event property)"),
                            );
                            None
                        }
                        (_, Some(p)) => names.prop(r, &t.at("prop"), &p),
                    };
                    let op = r.req::<String>(t, "op").and_then(|s| {
                    let op = Op::parse(&s).filter(|o| {
                        matches!(o, Op::Eq | Op::Ne | Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Between)
                    });
                    if op.is_none() {
                        r.err(&t.at("op"), format!("{s:?}: an aggregate compares with =, !=, >, >=, <, <= or between"));
                    }
                    op
                });
                    let operand =
                        op.and_then(|op| operand(op, t.t.get("value"), false, &t.at("value"), r));
                    let numeric = |s: &Scalar| matches!(s, Scalar::Num(_));
                    let operand = operand.filter(|o| {
                        let ok = match o {
                            Operand::One(s) => numeric(s),
                            Operand::Range(a, b) => numeric(a) && numeric(b),
                            _ => false,
                        };
                        if !ok {
                            r.err(&t.at("value"), "an aggregate is compared with numbers");
                        }
                        ok
                    });
                    Some((
                        agg,
                        prop,
                        Condition {
                            prop: 0,
                            op: op?,
                            operand: operand?,
                        },
                    ))
                }
            }
        }
    };
    let range = match (
        r.get::<String>(t, "in_last").optional()?,
        t.t.get("between"),
    ) {
        (Some(s), None) if s == "all" => Some(past::Range::All),
        (Some(s), None) => match past::parse_days(&s) {
            Ok(0) => {
                r.err(&t.at("in_last"), "at least \"1d\"");
                None
            }
            Ok(n) => Some(past::Range::Last(n)),
            Err(e) => {
                r.err(&t.at("in_last"), e);
                None
            }
        },
        (None, Some(toml::Value::Array(b))) if b.len() == 2 => {
            let day = |r: &mut Reader, i: usize| match b[i].as_str().map(past::parse_days) {
                Some(Ok(n)) => Some(n),
                Some(Err(e)) => {
                    r.err(&format!("{}[{i}]", t.at("between")), e);
                    None
                }
                None => {
                    r.err(
                        &format!("{}[{i}]", t.at("between")),
                        "a number of days such as \"30d\"",
                    );
                    None
                }
            };
            let (n, m) = (day(r, 0), day(r, 1));
            match (n, m) {
                (Some(n), Some(m)) if n >= m => Some(past::Range::Between(n, m)),
                (Some(_), Some(_)) => {
                    r.err(
                        &t.at("between"),
                        "[\"Nd\", \"Md\"] with N >= M (the older bound first)",
                    );
                    None
                }
                _ => None,
            }
        }
        (None, Some(_)) => {
            r.err(&t.at("between"), "must be [\"Nd\", \"Md\"]");
            None
        }
        (Some(_), Some(_)) => {
            r.err(&t.path, "in_last or between, not both");
            None
        }
        (None, None) => {
            r.err(
                &t.path,
                "needs in_last (\"30d\" or \"all\") or between ([\"90d\", \"31d\"])",
            );
            None
        }
    };
    if r.count() > before {
        return None;
    }
    Some(past::PastSpec {
        negated,
        event,
        conditions: conditions?,
        agg,
        range: range?,
    })
}

/// `[campaign.schedule]`.
fn validate_schedule(t: &Table, r: &mut Reader) -> Option<schedule::Schedule> {
    use schedule::{Kind, MonthDay, Repeat, Unit};
    let before = r.count();
    let zone = r.get::<String>(t, "timezone").or("UTC".into())?;
    let tz = match jiff::tz::TimeZone::get(&zone) {
        Ok(tz) => Some(tz),
        Err(_) => {
            r.err(
                &t.at("timezone"),
                format!("unknown time zone {zone:?} (an IANA name such as \"Europe/Berlin\")"),
            );
            None
        }
    };
    let at = match r.array(t, "at") {
        Field::Absent => None,
        Field::Bad => return None,
        Field::Ok([]) => {
            r.err(&t.at("at"), "at least one time");
            return None;
        }
        Field::Ok(items) => {
            let mut times = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let field = format!("{}[{i}]", t.at("at"));
                match item.as_str().and_then(parse_rfc3339_ms) {
                    Some(x) => times.push(x),
                    None => r.err(
                        &field,
                        "an RFC 3339 time such as \"2026-12-01T09:00:00-05:00\"",
                    ),
                }
            }
            Some(times)
        }
    };
    let repeat = match r.sub(t, "repeat", &["every", "unit", "time", "weekdays", "day"]) {
        Field::Absent => None,
        Field::Bad => return None,
        Field::Ok(rt) => {
            let every = match r.get::<i64>(&rt, "every").or(1)? {
                n @ 1..=1000 => n as u32,
                _ => {
                    r.err(&rt.at("every"), "must be in 1..=1000");
                    1
                }
            };
            let unit = match r.req::<String>(&rt, "unit").as_deref() {
                Some("hour") => Some(Unit::Hour),
                Some("day") => Some(Unit::Day),
                Some("week") => Some(Unit::Week),
                Some("month") => Some(Unit::Month),
                Some(other) => {
                    r.err(
                        &rt.at("unit"),
                        format!("unknown unit {other:?} (hour, day, week or month)"),
                    );
                    None
                }
                None => None,
            };
            let text = r.get::<String>(&rt, "time").or("00:00".into())?;
            let time = match text.parse::<jiff::civil::Time>() {
                Ok(t) => Some(t),
                Err(_) => {
                    r.err(
                        &rt.at("time"),
                        format!("{text:?} is not a time of day such as \"09:30\""),
                    );
                    None
                }
            };
            let mut weekdays = Vec::new();
            if let Field::Ok(items) = r.array(&rt, "weekdays") {
                if unit.is_some_and(|u| u != Unit::Week) {
                    r.err(&rt.at("weekdays"), "only with unit = \"week\"");
                }
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().and_then(schedule::parse_weekday) {
                        Some(d) => weekdays.push(d),
                        None => r.err(
                            &format!("{}[{i}]", rt.at("weekdays")),
                            "a weekday: mon, tue, wed, thu, fri, sat or sun",
                        ),
                    }
                }
            }
            let day = match r.get::<i64>(&rt, "day").optional()? {
                None => None,
                Some(d) => {
                    if unit.is_some_and(|u| u != Unit::Month) {
                        r.err(&rt.at("day"), "only with unit = \"month\"");
                    }
                    match d {
                        -1 => Some(MonthDay::Last),
                        1..=31 => Some(MonthDay::Day(d as i8)),
                        _ => {
                            r.err(
                                &rt.at("day"),
                                "a day of the month 1..=31, or -1 for the last",
                            );
                            None
                        }
                    }
                }
            };
            Some(Repeat {
                every,
                unit: unit?,
                time: time?,
                weekdays,
                day,
            })
        }
    };
    let kind = match (at, repeat) {
        (Some(a), None) => Some(Kind::At(a)),
        (None, Some(rp)) => Some(Kind::Repeat(rp)),
        (Some(_), Some(_)) => {
            r.err(&t.path, "at or repeat, not both");
            None
        }
        (None, None) => {
            r.err(&t.path, "needs at = [times] or repeat = { ... }");
            None
        }
    };
    let until = match r.get::<String>(t, "until").optional()? {
        None => None,
        Some(s) => match parse_rfc3339_ms(&s) {
            Some(x) => Some(x),
            None => {
                r.err(&t.at("until"), format!("not an RFC 3339 time: {s:?}"));
                None
            }
        },
    };
    let runs = match r.get::<i64>(t, "runs").optional()? {
        None => None,
        Some(n @ 1..=1_000_000) => Some(n as u32),
        Some(_) => {
            r.err(&t.at("runs"), "must be >= 1");
            None
        }
    };
    if until.is_some() && runs.is_some() {
        r.err(&t.at("runs"), "until or runs, not both");
    }
    if r.count() > before {
        return None;
    }
    Some(schedule::Schedule {
        tz: tz?,
        kind: kind?,
        until,
        runs,
    })
}

/// Validates one `[[campaign]]` table; `label` names it in problems (its id, `#N` without
/// one). Interns its names; `segments` are the config's `[[segment]]`s by id.
pub(crate) fn validate(
    v: &toml::Value,
    label: String,
    names: &mut Names,
    segments: &std::collections::BTreeMap<String, Segment>,
    problems: &mut Problems,
) -> Option<Campaign> {
    let before = problems.len();
    let mut r = Reader::new(problems, Some(label));
    let t = r.table(String::new(), v, CAMPAIGN_KEYS)?;

    let id = r.req::<String>(&t, "id");
    if let Some(id) = &id {
        if id.is_empty() {
            r.err("id", "missing");
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            r.err("id", "must match [a-z0-9-]+");
        }
    }
    let name = r.req::<String>(&t, "name");
    if name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        r.err("name", "missing");
    }
    let ad_account = r.req::<String>(&t, "ad_account");
    if let Some(a) = &ad_account {
        if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
            r.err("ad_account", "must be a TikTok advertiser id (digits)");
        }
    }
    let start = r
        .req::<String>(&t, "start")
        .and_then(|s| time(&mut r, "start", &s));
    let end = match r.get::<String>(&t, "end") {
        Field::Absent => Some(EventTime::MAX),
        Field::Bad => None,
        Field::Ok(s) => time(&mut r, "end", &s),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            r.err("end", "must be after start");
        }
    }

    let trigger = match r.sub(&t, "trigger", &["event", "where", "inaction"]) {
        Field::Absent => Some(None),
        Field::Bad => None,
        Field::Ok(tt) => validate_trigger(&tt, names, &mut r).map(Some),
    };
    let schedule = match r.sub(
        &t,
        "schedule",
        &["timezone", "at", "repeat", "until", "runs"],
    ) {
        Field::Absent => Some(None),
        Field::Bad => None,
        Field::Ok(st) => validate_schedule(&st, &mut r).map(Some),
    };
    if let (Some(None), Some(None)) = (&trigger, &schedule) {
        r.err(
            "trigger",
            "a campaign needs [campaign.trigger] (live) or [campaign.schedule] (past behaviour)",
        );
    }
    if let (Some(Some(_)), Some(Some(_))) = (&trigger, &schedule) {
        r.err(
            "schedule",
            "a campaign has [campaign.trigger] or [campaign.schedule], not both",
        );
    }
    let once_per_user = r.get::<bool>(&t, "once_per_user").or(true);
    let live = matches!(&schedule, Some(None));
    if once_per_user == Some(false) && matches!(&schedule, Some(None)) {
        r.err(
            "once_per_user",
            "false (a decision per run) needs [campaign.schedule]: a live campaign decides once per user",
        );
    }
    let who = match r.sub(
        &t,
        "who",
        &["where", "past", "segment", "control_group", "target_cap"],
    ) {
        Field::Absent => Some(Who {
            conditions: Vec::new(),
            past: Vec::new(),
            control_group: 0,
            target_cap: None,
        }),
        Field::Bad => None,
        Field::Ok(w) => validate_who(&w, names, segments, &mut r),
    };
    let what = match r.sub(
        &t,
        "what",
        &["audience", "identifiers", "remove_on_goal", "sync"],
    ) {
        Field::Absent => {
            r.err("what", "missing");
            None
        }
        Field::Bad => None,
        Field::Ok(w) => validate_what(&w, names, &mut r),
    };
    let goal = match r.sub(&t, "goal", &["event", "within", "where", "revenue_prop"]) {
        Field::Absent => Some(None),
        Field::Bad => None,
        Field::Ok(g) => {
            let event = event_name(&g, names, &mut r);
            let within = within(&g, &mut r);
            let conditions = conditions(&g, "where", names, &mut r);
            let revenue_prop = match r.get::<String>(&g, "revenue_prop").optional() {
                Some(Some(p)) if p.is_empty() => {
                    r.err(&g.at("revenue_prop"), "a property name");
                    None
                }
                Some(Some(p)) => names.prop(&mut r, &g.at("revenue_prop"), &p).map(Some),
                Some(None) => Some(None),
                None => None,
            };
            Some(Some(Goal {
                event: event?,
                within: within?,
                conditions: conditions?,
                revenue_prop: revenue_prop?,
            }))
        }
    };
    if let (Some(w), Some(None)) = (&what, &goal) {
        if w.remove_on_goal {
            r.err("what.remove_on_goal", "needs a [campaign.goal]");
        }
    }
    if live && what.as_ref().is_some_and(|w| w.mirror) {
        r.err(
            "what.sync",
            "\"mirror\" needs [campaign.schedule]: the audience follows each run",
        );
    }

    if r.count() > before {
        return None;
    }
    Some(Campaign {
        id: id?,
        name: name?,
        ad_account: ad_account?,
        start: start?,
        end: end?,
        trigger: trigger?,
        schedule: schedule?,
        who: who?,
        what: what?,
        goal: goal?,
        once_per_user: once_per_user.unwrap_or(true),
        live_from: EventTime::MIN,
        cap_changes: Vec::new(),
    })
}

fn time(r: &mut Reader, field: &str, s: &str) -> Option<EventTime> {
    let t = parse_rfc3339_ms(s);
    if t.is_none() {
        r.err(field, format!("not an RFC 3339 time: {s:?}"));
    }
    t
}

/// The `event` of `t`: a non-empty name, interned.
fn event_name(t: &Table, names: &mut Names, r: &mut Reader) -> Option<String> {
    let event = r.req::<String>(t, "event")?;
    if event.is_empty() {
        r.err(&t.at("event"), "missing");
        return None;
    }
    names.event(r, &t.at("event"), &event)?;
    Some(event)
}

/// The `within` of `t`, in [`WITHIN`].
fn within(t: &Table, r: &mut Reader) -> Option<HumanDuration> {
    match r.duration(t, "within", WITHIN) {
        Field::Absent => {
            r.err(&t.at("within"), "missing");
            None
        }
        Field::Bad => None,
        Field::Ok(d) => Some(d),
    }
}

fn validate_trigger(t: &Table, names: &mut Names, r: &mut Reader) -> Option<Trigger> {
    let event = event_name(t, names, r);
    let conditions = conditions(t, "where", names, r);
    let inaction = match r.sub(t, "inaction", &["event", "where", "match", "within"]) {
        Field::Absent => Some(None),
        Field::Bad => None,
        Field::Ok(i) => {
            let ievent = event_name(&i, names, r);
            if let (Some(a), Some(b)) = (&event, &ievent) {
                if a == b {
                    r.err(
                        &i.at("event"),
                        "must differ from trigger.event (the trigger would close its own window)",
                    );
                }
            }
            let within = within(&i, r);
            let b_conditions = self::conditions(&i, "where", names, r);
            let mut match_props = Vec::new();
            let mut match_ok = true;
            if let Field::Ok(items) = r.array(&i, "match") {
                for (n, item) in items.iter().enumerate() {
                    let field = format!("{}[{n}]", i.at("match"));
                    match item.as_str() {
                        Some(p) if !p.is_empty() => match names.prop(r, &field, p) {
                            Some(id) => match_props.push(id),
                            None => match_ok = false,
                        },
                        _ => {
                            r.err(&field, "a property name");
                            match_ok = false;
                        }
                    }
                }
            }
            if !match_ok {
                return None;
            }
            Some(Some(Inaction {
                event: ievent?,
                conditions: b_conditions?,
                match_props,
                within: within?,
            }))
        }
    };
    Some(Trigger {
        event: event?,
        conditions: conditions?,
        inaction: inaction?,
    })
}

fn validate_who(
    t: &Table,
    names: &mut Names,
    segments: &std::collections::BTreeMap<String, Segment>,
    r: &mut Reader,
) -> Option<Who> {
    let conditions = conditions(t, "where", names, r);
    let past = past_rules(t, names, r);
    let segment = match r.get::<String>(t, "segment") {
        Field::Absent => Some(None),
        Field::Bad => None,
        Field::Ok(id) => match segments.get(&id) {
            Some(s) => Some(Some(s)),
            None => {
                r.err(&t.at("segment"), format!("unknown segment {id:?}"));
                None
            }
        },
    };
    // Each field is read whatever the others hold (no early return on a bad one).
    let control_group = match r.get::<i64>(t, "control_group").or(0) {
        None => None,
        Some(p @ 0..=99) => Some(p as u8),
        Some(_) => {
            r.err(&t.at("control_group"), "must be a percent in 0..=99");
            None
        }
    };
    let target_cap = match r.get::<i64>(t, "target_cap").optional() {
        None => None,
        Some(None) => Some(None),
        Some(Some(c)) if c >= 1 => Some(Some(c as u64)),
        Some(Some(_)) => {
            r.err(&t.at("target_cap"), "must be >= 1");
            None
        }
    };
    let (mut conditions, mut past) = (conditions?, past?);
    if let Some(s) = segment? {
        // The segment's where and past are added to the campaign's own.
        conditions.extend(s.conditions.iter().cloned());
        past.extend(s.past.iter().cloned());
    }
    Some(Who {
        conditions,
        past,
        control_group: control_group?,
        target_cap: target_cap?,
    })
}

fn validate_what(t: &Table, names: &mut Names, r: &mut Reader) -> Option<What> {
    let before = r.count();
    let audience = match r.sub(t, "audience", &["new", "existing"]) {
        Field::Absent => {
            r.err(&t.at("audience"), "missing");
            None
        }
        Field::Bad => None,
        Field::Ok(a) => audience(&a, r),
    };
    let mut identifiers = Identifiers::default();
    match r.array(t, "identifiers") {
        Field::Absent => r.err(&t.at("identifiers"), "missing"),
        Field::Bad => {}
        Field::Ok([]) => r.err(&t.at("identifiers"), "at least one of \"email\", \"phone\""),
        Field::Ok(items) => {
            for (i, item) in items.iter().enumerate() {
                let field = format!("{}[{i}]", t.at("identifiers"));
                let slot = match item.as_str() {
                    Some("email") => &mut identifiers.email,
                    Some("phone") => &mut identifiers.phone,
                    Some(other) => {
                        r.err(&field, format!("unknown identifier {other:?}"));
                        continue;
                    }
                    None => {
                        r.err(
                            &field,
                            crate::problems::type_error("\"email\" or \"phone\"", item),
                        );
                        continue;
                    }
                };
                if std::mem::replace(slot, true) {
                    r.err(&field, format!("{item} listed twice"));
                }
            }
        }
    }
    let remove_on_goal = r.get::<bool>(t, "remove_on_goal").or(false);
    let mirror = match r.get::<String>(t, "sync").or("add".into()).as_deref() {
        Some("add") | None => false,
        Some("mirror") => true,
        Some(other) => {
            r.err(
                &t.at("sync"),
                format!("unknown sync {other:?} (add or mirror)"),
            );
            false
        }
    };
    names.schema.wants_email |= identifiers.email;
    names.schema.wants_phone |= identifiers.phone;
    if r.count() > before {
        return None;
    }
    Some(What {
        audience: audience?,
        identifiers,
        remove_on_goal: remove_on_goal?,
        mirror,
    })
}

fn audience(t: &Table, r: &mut Reader) -> Option<Audience> {
    let new = r.sub(t, "new", &["name", "description"]);
    let existing = r.get::<String>(t, "existing");
    match (new, existing) {
        (Field::Ok(n), Field::Absent) => {
            let name = r.req::<String>(&n, "name");
            let chars = name.as_ref().map_or(0, |s| s.chars().count());
            if name.as_ref().is_some_and(|s| s.trim().is_empty()) {
                r.err(&n.at("name"), "missing");
            } else if chars > MAX_AUDIENCE_NAME_CHARS {
                r.err(
                    &n.at("name"),
                    format!(
                        "{chars} characters, at most {MAX_AUDIENCE_NAME_CHARS} (TikTok cuts \
                         longer audience names)"
                    ),
                );
            }
            let description = r.get::<String>(&n, "description").or(String::new());
            if let Some(d) = &description {
                if d.chars().count() > MAX_DESCRIPTION_CHARS {
                    r.err(
                        &n.at("description"),
                        format!("longer than {MAX_DESCRIPTION_CHARS} characters"),
                    );
                }
            }
            Some(Audience::New {
                name: name?,
                description: description?,
            })
        }
        (Field::Absent, Field::Ok(id)) => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                r.err(&t.at("existing"), "must be a TikTok audience id (digits)");
                return None;
            }
            Some(Audience::Existing(id))
        }
        (Field::Absent, Field::Absent) => {
            r.err(
                &t.path,
                "one of { new = { name, description } } or { existing = \"<id>\" }",
            );
            None
        }
        (Field::Ok(_) | Field::Bad, Field::Ok(_) | Field::Bad) => {
            r.err(&t.path, "new or existing, not both");
            None
        }
        _ => None,
    }
}

/// The `key` list of conditions of `t`.
fn conditions(t: &Table, key: &str, names: &mut Names, r: &mut Reader) -> Option<Vec<Condition>> {
    let items = r.array(t, key).or(&[])?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        match r.table(format!("{}[{i}]", t.at(key)), item, CONDITION_KEYS) {
            Some(c) => match condition(&c, names, r) {
                Some(c) => out.push(c),
                None => ok = false,
            },
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn condition(t: &Table, names: &mut Names, r: &mut Reader) -> Option<Condition> {
    let before = r.count();
    let prop = r.req::<String>(t, "prop");
    if prop.as_deref() == Some("") {
        r.err(&t.at("prop"), "is empty");
    }
    let op_text = r.req::<String>(t, "op");
    let op = op_text.as_deref().and_then(|s| {
        let op = Op::parse(s);
        if op.is_none() {
            r.err(&t.at("op"), format!("unknown operator {s:?}"));
        }
        op
    });
    let version = prop.as_deref().is_some_and(|p| VERSION_PROPS.contains(&p));
    let value = t.t.get("value");
    let operand = op.and_then(|op| operand(op, value, version, &t.at("value"), r));
    // Gender values are compared in their canonical vocabulary (as profiles store them).
    let operand = match operand {
        Some(o) if prop.as_deref() == Some("gender") => {
            let canon = |s: Scalar| match s {
                Scalar::Str(v) => Scalar::Str(crate::event::canonical_gender(&v).into()),
                other => other,
            };
            Some(match o {
                Operand::One(s) => Operand::One(canon(s)),
                Operand::List(l) => Operand::List(l.into_iter().map(canon).collect()),
                Operand::Range(a, b) => Operand::Range(canon(a), canon(b)),
                Operand::None => Operand::None,
            })
        }
        other => other,
    };
    let prop = match prop {
        Some(p) if !p.is_empty() && r.count() == before => names.prop(r, &t.at("prop"), &p),
        _ => None,
    };
    Some(Condition {
        prop: prop?,
        op: op?,
        operand: operand?,
    })
}

/// The operand of `op`, from `value` (at `field`).
fn operand(
    op: Op,
    value: Option<&toml::Value>,
    version: bool,
    field: &str,
    r: &mut Reader,
) -> Option<Operand> {
    let name = op.as_str();
    let fail = |r: &mut Reader, msg: String| {
        r.err(field, msg);
        None
    };
    let value = match (op, value) {
        (Op::Exists | Op::NotExists, None) => return Some(Operand::None),
        (Op::Exists | Op::NotExists, Some(_)) => return fail(r, format!("{name} takes no value")),
        (_, None) => return fail(r, format!("{name} needs a value")),
        (_, Some(v)) => v,
    };
    let item = |i: usize| format!("{field}[{i}]");
    match (op, value) {
        (Op::In | Op::NotIn, toml::Value::Array(items)) => {
            if items.is_empty() {
                return fail(r, format!("{name} needs a non-empty list"));
            }
            let scalars: Vec<Option<Scalar>> = items
                .iter()
                .enumerate()
                .map(|(i, v)| scalar(v, version, &item(i), r))
                .collect();
            scalars
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(Operand::List)
        }
        (Op::In | Op::NotIn, _) => fail(r, format!("{name} needs a list value")),
        (Op::Between, toml::Value::Array(items)) if items.len() == 2 => {
            let lo = scalar(&items[0], version, &item(0), r);
            let hi = scalar(&items[1], version, &item(1), r);
            let (lo, hi) = (lo?, hi?);
            let ordered = match (&lo, &hi) {
                (Scalar::Num(a), Scalar::Num(b)) => a <= b,
                (Scalar::Str(a), Scalar::Str(b)) => a <= b,
                (Scalar::Version(a), Scalar::Version(b)) => {
                    let n = a.len().max(b.len());
                    let pad = |v: &Vec<u64>| -> Vec<u64> {
                        (0..n).map(|i| *v.get(i).unwrap_or(&0)).collect()
                    };
                    pad(a) <= pad(b)
                }
                _ => {
                    r.err(field, "between needs two values of the same type");
                    return None;
                }
            };
            if !ordered {
                r.err(field, "between needs [low, high] with low <= high");
                return None;
            }
            Some(Operand::Range(lo, hi))
        }
        (Op::Between, _) => fail(r, "between needs a value [low, high]".into()),
        (Op::Contains | Op::StartsWith, toml::Value::String(s)) => {
            Some(Operand::One(Scalar::Str(s.clone())))
        }
        (Op::Contains | Op::StartsWith, _) => fail(r, format!("{name} needs a string value")),
        (_, v) => {
            let s = scalar(v, version, field, r)?;
            if matches!(s, Scalar::Bool(_)) && !matches!(op, Op::Eq | Op::Ne) {
                r.err(field, format!("{name} does not apply to a boolean"));
                return None;
            }
            Some(Operand::One(s))
        }
    }
}

/// A comparable constant. Values are not repeated in messages (a condition may hold an email
/// address), only their kind.
fn scalar(v: &toml::Value, version: bool, field: &str, r: &mut Reader) -> Option<Scalar> {
    let s = match v {
        toml::Value::Integer(i) if version => parse_version(&i.to_string()).map(Scalar::Version),
        toml::Value::String(s) if version => parse_version(s).map(Scalar::Version),
        toml::Value::Float(f) if !f.is_finite() => {
            r.err(field, "must be a finite number");
            return None;
        }
        toml::Value::Integer(i) => Some(Scalar::Num(*i as f64)),
        toml::Value::Float(f) => Some(Scalar::Num(*f)),
        toml::Value::String(s) => Some(Scalar::Str(s.clone())),
        toml::Value::Boolean(b) => Some(Scalar::Bool(*b)),
        toml::Value::Datetime(_) => {
            r.err(
                field,
                "a TOML date-time is not a condition value (properties hold numbers, strings \
                 and booleans)",
            );
            return None;
        }
        toml::Value::Array(_) | toml::Value::Table(_) => {
            r.err(field, "must be a number, string or boolean");
            return None;
        }
    };
    if s.is_none() {
        r.err(field, "not a dotted version (such as \"5.10\")");
    }
    s
}
