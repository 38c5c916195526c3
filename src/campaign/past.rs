//! Behaviour rules as the config states them (`who.past`, a segment's `past`): what a rule
//! counts and over which days. `detect::past` compiles them into per-user day buckets.

use super::condition::Condition;

/// What a rule aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Agg {
    pub fn parse(s: &str) -> Option<Agg> {
        Some(match s {
            "count" => Agg::Count,
            "sum" => Agg::Sum,
            "avg" => Agg::Avg,
            "min" => Agg::Min,
            "max" => Agg::Max,
            _ => return None,
        })
    }
}

/// The days a rule looks at, counted back from the evaluation's day `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// `in_last = "Nd"`: days `D−N+1 ..= D` (N ≥ 1).
    Last(u16),
    /// `between = ["Nd", "Md"]`: days `D−N ..= D−M` (N ≥ M).
    Between(u16, u16),
    /// `in_last = "all"`: everything the state holds.
    All,
}

/// The longest range, in days.
pub const MAX_DAYS: u16 = 400;

/// One validated behaviour rule.
#[derive(Debug, Clone)]
pub struct PastSpec {
    /// `did_not`.
    pub negated: bool,
    pub event: String,
    /// On the event's properties.
    pub conditions: Vec<Condition>,
    /// `agg`, the interned numeric `prop` (none for `count`), and the comparison of the
    /// aggregate (`op`/`value`; the condition's `prop` is unused).
    pub agg: Option<(Agg, Option<u16>, Condition)>,
    pub range: Range,
}

/// Parses `"Nd"` (whole days, at most [`MAX_DAYS`]).
pub fn parse_days(s: &str) -> Result<u16, String> {
    let n = s
        .strip_suffix('d')
        .and_then(|n| n.parse::<u16>().ok())
        .ok_or_else(|| format!("{s:?} is not a number of whole days such as \"30d\""))?;
    if n > MAX_DAYS {
        return Err(format!("{n} days: at most {MAX_DAYS}"));
    }
    Ok(n)
}
