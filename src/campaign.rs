//! Campaign definitions: the `[[campaign]]` tables of DESIGN §3, parsed into raw serde types and
//! validated into [`Campaign`], which cannot hold an invalid value. Validation reports *every*
//! problem, each with its campaign id and field.

pub mod condition;
pub mod schedule;

use serde::Deserialize;

use crate::duration::HumanDuration;
use crate::event::{EventTime, Schema};
use crate::problems::{ConfigError, Problems};
use condition::{parse_version, Condition, Op, Operand, Scalar, VERSION_PROPS};

/// Maximum length of an audience description (TikTok limit).
pub const MAX_DESCRIPTION_CHARS: usize = 200;

// === raw (serde) types ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaign {
    pub id: Option<String>,
    pub name: Option<String>,
    pub ad_account: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub trigger: Option<toml::Value>,
    pub who: Option<toml::Value>,
    pub what: Option<toml::Value>,
    pub goal: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    event: String,
    #[serde(default, rename = "where")]
    where_: Vec<RawCondition>,
    inaction: Option<RawInaction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInaction {
    event: String,
    within: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition {
    prop: String,
    op: String,
    value: Option<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWho {
    #[serde(default, rename = "where")]
    where_: Vec<RawCondition>,
    #[serde(default)]
    control_group: i64,
    target_cap: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhat {
    audience: RawAudience,
    identifiers: Vec<String>,
    #[serde(default)]
    remove_on_goal: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawAudience {
    New {
        name: String,
        #[serde(default)]
        description: String,
    },
    Existing(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGoal {
    event: String,
    within: HumanDuration,
}

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

/// Validation context: collects problems for one campaign.
struct Ctx<'p> {
    campaign: String,
    problems: &'p mut Problems,
}

impl Ctx<'_> {
    fn err(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(ConfigError {
            campaign: Some(self.campaign.clone()),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn table<T: for<'de> Deserialize<'de>>(&mut self, field: &str, v: toml::Value) -> Option<T> {
        match v.try_into() {
            Ok(t) => Some(t),
            Err(e) => {
                let e: toml::de::Error = e;
                self.err(field, e.message().trim().to_owned());
                None
            }
        }
    }
}

/// Validates one raw campaign; interns its names into `schema`. `index` names campaigns without
/// an id in error messages.
pub fn validate(
    raw: RawCampaign,
    index: usize,
    schema: &mut Schema,
    problems: &mut Problems,
) -> Option<Campaign> {
    let before = problems.len();
    let label = raw.id.clone().unwrap_or_else(|| format!("#{}", index + 1));
    let mut cx = Ctx {
        campaign: label,
        problems,
    };

    let id = raw.id.unwrap_or_default();
    if id.is_empty() {
        cx.err("id", "missing");
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        cx.err("id", "must match [a-z0-9-]+");
    }
    let name = raw.name.unwrap_or_default();
    if name.trim().is_empty() {
        cx.err("name", "missing");
    }
    let ad_account = raw.ad_account.unwrap_or_default();
    if ad_account.is_empty() || !ad_account.bytes().all(|b| b.is_ascii_digit()) {
        cx.err("ad_account", "must be a TikTok advertiser id (digits)");
    }
    let start = match raw.start.as_deref() {
        None => {
            cx.err("start", "missing");
            None
        }
        Some(s) => parse_rfc3339_ms(s).or_else(|| {
            cx.err("start", format!("not an RFC 3339 time: {s:?}"));
            None
        }),
    };
    let end = match raw.end.as_deref() {
        None => Some(EventTime::MAX),
        Some(s) => parse_rfc3339_ms(s).or_else(|| {
            cx.err("end", format!("not an RFC 3339 time: {s:?}"));
            None
        }),
    };
    if let (Some(s), Some(e)) = (start, end) {
        if e <= s {
            cx.err("end", "must be after start");
        }
    }

    let trigger = match raw.trigger {
        None => {
            cx.err("trigger", "missing");
            None
        }
        Some(v) => cx
            .table::<RawTrigger>("trigger", v)
            .and_then(|t| validate_trigger(t, schema, &mut cx)),
    };
    let who = match raw.who {
        None => Some(RawWho::default()),
        Some(v) => cx.table::<RawWho>("who", v),
    }
    .and_then(|w| validate_who(w, schema, &mut cx));
    let what = match raw.what {
        None => {
            cx.err("what", "missing");
            None
        }
        Some(v) => cx
            .table::<RawWhat>("what", v)
            .and_then(|w| validate_what(w, schema, &mut cx)),
    };
    let goal = match raw.goal {
        None => Some(None),
        Some(v) => cx.table::<RawGoal>("goal", v).map(|g| {
            if g.event.is_empty() {
                cx.err("goal.event", "missing");
            }
            if g.within.as_millis() <= 0 {
                cx.err("goal.within", "must be > 0");
            }
            schema.intern_event(&g.event);
            Some(Goal {
                event: g.event,
                within: g.within,
            })
        }),
    };
    if let (Some(w), Some(None)) = (&what, &goal) {
        if w.remove_on_goal {
            cx.err("what.remove_on_goal", "needs a [campaign.goal]");
        }
    }

    if problems.len() > before {
        return None;
    }
    Some(Campaign {
        id,
        name,
        ad_account,
        start: start?,
        end: end?,
        trigger: trigger?,
        who: who?,
        what: what?,
        goal: goal?,
    })
}

fn validate_trigger(t: RawTrigger, schema: &mut Schema, cx: &mut Ctx) -> Option<Trigger> {
    if t.event.is_empty() {
        cx.err("trigger.event", "missing");
    }
    schema.intern_event(&t.event);
    let conditions = validate_conditions(t.where_, "trigger.where", schema, cx);
    let inaction = match t.inaction {
        None => None,
        Some(i) => {
            if i.event.is_empty() {
                cx.err("trigger.inaction.event", "missing");
            }
            if i.within.as_millis() <= 0 {
                cx.err("trigger.inaction.within", "must be > 0");
            }
            schema.intern_event(&i.event);
            Some(Inaction {
                event: i.event,
                within: i.within,
            })
        }
    };
    Some(Trigger {
        event: t.event,
        conditions: conditions?,
        inaction,
    })
}

fn validate_who(w: RawWho, schema: &mut Schema, cx: &mut Ctx) -> Option<Who> {
    let conditions = validate_conditions(w.where_, "who.where", schema, cx);
    let control_group = match u8::try_from(w.control_group) {
        Ok(p) if p <= 99 => Some(p),
        _ => {
            cx.err("who.control_group", "must be a percent in 0..=99");
            None
        }
    };
    let target_cap = match w.target_cap {
        None => Some(None),
        Some(c) if c >= 1 => Some(Some(c as u64)),
        Some(_) => {
            cx.err("who.target_cap", "must be >= 1");
            None
        }
    };
    Some(Who {
        conditions: conditions?,
        control_group: control_group?,
        target_cap: target_cap?,
    })
}

fn validate_what(w: RawWhat, schema: &mut Schema, cx: &mut Ctx) -> Option<What> {
    let mut ok = true;
    let audience = match w.audience {
        RawAudience::New { name, description } => {
            if name.trim().is_empty() {
                cx.err("what.audience.new.name", "missing");
                ok = false;
            }
            if description.chars().count() > MAX_DESCRIPTION_CHARS {
                cx.err(
                    "what.audience.new.description",
                    format!("longer than {MAX_DESCRIPTION_CHARS} characters"),
                );
                ok = false;
            }
            Audience::New { name, description }
        }
        RawAudience::Existing(id) => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                cx.err(
                    "what.audience.existing",
                    "must be a TikTok audience id (digits)",
                );
                ok = false;
            }
            Audience::Existing(id)
        }
    };
    let mut identifiers = Identifiers::default();
    if w.identifiers.is_empty() {
        cx.err("what.identifiers", "at least one of \"email\", \"phone\"");
        ok = false;
    }
    for i in &w.identifiers {
        let slot = match i.as_str() {
            "email" => &mut identifiers.email,
            "phone" => &mut identifiers.phone,
            other => {
                cx.err("what.identifiers", format!("unknown identifier {other:?}"));
                ok = false;
                continue;
            }
        };
        if *slot {
            cx.err("what.identifiers", format!("{i:?} listed twice"));
            ok = false;
        }
        *slot = true;
    }
    schema.wants_email |= identifiers.email;
    schema.wants_phone |= identifiers.phone;
    ok.then_some(What {
        audience,
        identifiers,
        remove_on_goal: w.remove_on_goal,
    })
}

fn validate_conditions(
    raw: Vec<RawCondition>,
    field: &str,
    schema: &mut Schema,
    cx: &mut Ctx,
) -> Option<Vec<Condition>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut ok = true;
    for (i, c) in raw.into_iter().enumerate() {
        let field = format!("{field}[{i}]");
        match validate_condition(c, schema) {
            Ok(c) => out.push(c),
            Err(msg) => {
                cx.err(&field, msg);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn scalar(v: &toml::Value, version: bool) -> Result<Scalar, String> {
    match v {
        toml::Value::Integer(i) if version => parse_version(&i.to_string())
            .map(Scalar::Version)
            .ok_or_else(|| format!("{v} is not a dotted version")),
        toml::Value::String(s) if version => parse_version(s)
            .map(Scalar::Version)
            .ok_or_else(|| format!("{s:?} is not a dotted version")),
        toml::Value::Integer(i) => Ok(Scalar::Num(*i as f64)),
        toml::Value::Float(f) => Ok(Scalar::Num(*f)),
        toml::Value::String(s) => Ok(Scalar::Str(s.clone())),
        toml::Value::Boolean(b) => Ok(Scalar::Bool(*b)),
        other => Err(format!("{other} is not a number, string or boolean")),
    }
}

fn validate_condition(c: RawCondition, schema: &mut Schema) -> Result<Condition, String> {
    if c.prop.is_empty() {
        return Err("prop is empty".into());
    }
    let op = Op::parse(&c.op).ok_or_else(|| format!("unknown op {:?}", c.op))?;
    let version = VERSION_PROPS.contains(&c.prop.as_str());
    let operand = match (op, &c.value) {
        (Op::Exists | Op::NotExists, None) => Operand::None,
        (Op::Exists | Op::NotExists, Some(_)) => return Err(format!("{} takes no value", c.op)),
        (_, None) => return Err(format!("{} needs a value", c.op)),
        (Op::In | Op::NotIn, Some(toml::Value::Array(items))) => {
            if items.is_empty() {
                return Err(format!("{} needs a non-empty list", c.op));
            }
            Operand::List(
                items
                    .iter()
                    .map(|v| scalar(v, version))
                    .collect::<Result<_, _>>()?,
            )
        }
        (Op::In | Op::NotIn, Some(_)) => return Err(format!("{} needs a list value", c.op)),
        (Op::Between, Some(toml::Value::Array(items))) if items.len() == 2 => {
            let (lo, hi) = (scalar(&items[0], version)?, scalar(&items[1], version)?);
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
                _ => return Err("between needs two values of the same type".into()),
            };
            if !ordered {
                return Err("between needs [low, high] with low <= high".into());
            }
            Operand::Range(lo, hi)
        }
        (Op::Between, Some(_)) => return Err("between needs a value [low, high]".into()),
        (Op::Contains | Op::StartsWith, Some(toml::Value::String(s))) => {
            Operand::One(Scalar::Str(s.clone()))
        }
        (Op::Contains | Op::StartsWith, Some(_)) => {
            return Err(format!("{} needs a string value", c.op))
        }
        (_, Some(v)) => {
            let s = scalar(v, version)?;
            if matches!(s, Scalar::Bool(_)) && !matches!(op, Op::Eq | Op::Ne) {
                return Err(format!("{} does not apply to a boolean", c.op));
            }
            Operand::One(s)
        }
    };
    let operand = if c.prop == "gender" {
        let canon = |s: Scalar| match s {
            Scalar::Str(v) => Scalar::Str(crate::event::canonical_gender(&v).into()),
            other => other,
        };
        match operand {
            Operand::One(s) => Operand::One(canon(s)),
            Operand::List(l) => Operand::List(l.into_iter().map(canon).collect()),
            Operand::Range(a, b) => Operand::Range(canon(a), canon(b)),
            Operand::None => Operand::None,
        }
    } else {
        operand
    };
    Ok(Condition {
        prop: schema.intern_prop(&c.prop),
        op,
        operand,
    })
}
