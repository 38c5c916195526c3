//! Campaign definitions: the `[[campaign]]` tables of DESIGN §3, read field by field and
//! validated into [`Campaign`], which cannot hold an invalid value. Validation reports *every*
//! problem, each with its campaign id and the full path of its field (`who.where[1].op`).
//!
//! Limits (README "Configuration reference"): audience names ≤ [`MAX_AUDIENCE_NAME_CHARS`]
//! (TikTok cuts longer ones), descriptions ≤ [`MAX_DESCRIPTION_CHARS`], `inaction.within` and
//! `goal.within` in [`WITHIN`], and at most [`MAX_NAMES`] distinct property names and as many
//! event names over all campaigns (they are interned as 16-bit ids).

pub mod condition;

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
    pub trigger: Trigger,
    pub who: Who,
    pub what: What,
    pub goal: Option<Goal>,
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
    pub within: HumanDuration,
}

#[derive(Debug, Clone)]
pub struct Who {
    pub conditions: Vec<Condition>,
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
}

#[derive(Debug, Clone)]
pub struct Goal {
    pub event: String,
    pub within: HumanDuration,
}

impl Campaign {
    /// Whether the trigger is an event/inaction pair.
    pub fn within_ms(&self) -> i64 {
        self.trigger
            .inaction
            .as_ref()
            .map_or(0, |i| i.within.as_millis())
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

/// Validates one `[[campaign]]` table; `label` names it in problems (its id, `#N` without
/// one). Interns its names.
pub(crate) fn validate(
    v: &toml::Value,
    label: String,
    names: &mut Names,
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
        Field::Absent => {
            r.err("trigger", "missing");
            None
        }
        Field::Bad => None,
        Field::Ok(tt) => validate_trigger(&tt, names, &mut r),
    };
    let who = match r.sub(&t, "who", &["where", "control_group", "target_cap"]) {
        Field::Absent => Some(Who {
            conditions: Vec::new(),
            control_group: 0,
            target_cap: None,
        }),
        Field::Bad => None,
        Field::Ok(w) => validate_who(&w, names, &mut r),
    };
    let what = match r.sub(&t, "what", &["audience", "identifiers", "remove_on_goal"]) {
        Field::Absent => {
            r.err("what", "missing");
            None
        }
        Field::Bad => None,
        Field::Ok(w) => validate_what(&w, names, &mut r),
    };
    let goal = match r.sub(&t, "goal", &["event", "within"]) {
        Field::Absent => Some(None),
        Field::Bad => None,
        Field::Ok(g) => {
            let event = event_name(&g, names, &mut r);
            let within = within(&g, &mut r);
            Some(Some(Goal {
                event: event?,
                within: within?,
            }))
        }
    };
    if let (Some(w), Some(None)) = (&what, &goal) {
        if w.remove_on_goal {
            r.err("what.remove_on_goal", "needs a [campaign.goal]");
        }
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
        who: who?,
        what: what?,
        goal: goal?,
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
    let inaction = match r.sub(t, "inaction", &["event", "within"]) {
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
            Some(Some(Inaction {
                event: ievent?,
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

fn validate_who(t: &Table, names: &mut Names, r: &mut Reader) -> Option<Who> {
    let conditions = conditions(t, "where", names, r);
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
    Some(Who {
        conditions: conditions?,
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
    names.schema.wants_email |= identifiers.email;
    names.schema.wants_phone |= identifiers.phone;
    if r.count() > before {
        return None;
    }
    Some(What {
        audience: audience?,
        identifiers,
        remove_on_goal: remove_on_goal?,
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
