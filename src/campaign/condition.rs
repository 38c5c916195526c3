//! Conditions (`where = [{ prop, op, value }]`): the 13 operators of DESIGN §3, compiled once
//! from config and evaluated against projected properties without allocating.
//!
//! Rules: numbers compare numerically; `app_version`, `os_version`, `sdk_version` compare as
//! dotted versions (`"5.10" > "5.9"`, missing components are 0); strings compare
//! case-sensitively; a condition on a missing property or on a value of the wrong type is false,
//! except `not_exists`, which is true.

use std::cmp::Ordering;

use crate::event::{PropId, Value, ValueRef};

/// Properties compared as dotted versions.
pub const VERSION_PROPS: [&str; 3] = ["app_version", "os_version", "sdk_version"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Between,
    In,
    NotIn,
    Contains,
    StartsWith,
    Exists,
    NotExists,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "between" => Op::Between,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "contains" => Op::Contains,
            "starts_with" => Op::StartsWith,
            "exists" => Op::Exists,
            "not_exists" => Op::NotExists,
            _ => return None,
        })
    }

    /// The operator as the config writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Between => "between",
            Op::In => "in",
            Op::NotIn => "not_in",
            Op::Contains => "contains",
            Op::StartsWith => "starts_with",
            Op::Exists => "exists",
            Op::NotExists => "not_exists",
        }
    }
}

/// A comparable constant from the config.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Num(f64),
    Str(String),
    Bool(bool),
    /// A dotted version (only for [`VERSION_PROPS`]).
    Version(Vec<u64>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    One(Scalar),
    List(Vec<Scalar>),
    Range(Scalar, Scalar),
}

/// A validated condition on one interned property.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub prop: PropId,
    pub op: Op,
    pub operand: Operand,
}

/// Parses a dotted version (`"5.10.1"`, `5`, `"6.0"`).
pub fn parse_version(s: &str) -> Option<Vec<u64>> {
    s.trim().split('.').map(|p| p.parse::<u64>().ok()).collect()
}

/// Compares a dotted version text against parsed components, without allocating.
fn cmp_version_str(a: &str, b: &[u64]) -> Option<Ordering> {
    let mut parts = a.trim().split('.');
    let mut i = 0;
    loop {
        let x = match parts.next() {
            Some(p) => Some(p.parse::<u64>().ok()?),
            None => None,
        };
        let y = b.get(i).copied();
        match (x, y) {
            (None, None) => return Some(Ordering::Equal),
            (x, y) => match x.unwrap_or(0).cmp(&y.unwrap_or(0)) {
                Ordering::Equal => {}
                other => {
                    // Drain the rest so "5.x" is still rejected as malformed.
                    for p in parts {
                        p.parse::<u64>().ok()?;
                    }
                    return Some(other);
                }
            },
        }
        i += 1;
    }
}

/// Orders a property value against a constant; `None` when their types differ.
fn compare(v: ValueRef<'_>, s: &Scalar) -> Option<Ordering> {
    match (v, s) {
        (ValueRef::Num(a), Scalar::Num(b)) => a.partial_cmp(b),
        (ValueRef::Str(a), Scalar::Str(b)) => Some(a.cmp(b.as_str())),
        (ValueRef::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
        (ValueRef::Str(a), Scalar::Version(b)) => cmp_version_str(a, b),
        (ValueRef::Num(a), Scalar::Version(b)) if a.fract() == 0.0 && a >= 0.0 => {
            let mut buf = [0u8; 24];
            let text = format_u64(a as u64, &mut buf);
            cmp_version_str(text, b)
        }
        _ => None,
    }
}

/// `compare(v, s) == Some(Equal)`, with texts compared by length first (a list of
/// countries, say, is mostly told apart without reading a byte).
fn equals(v: ValueRef<'_>, s: &Scalar) -> Option<bool> {
    match (v, s) {
        (ValueRef::Str(a), Scalar::Str(b)) => Some(a == b.as_str()),
        (ValueRef::Bool(a), Scalar::Bool(b)) => Some(a == *b),
        _ => compare(v, s).map(Ordering::is_eq),
    }
}

fn format_u64(mut n: u64, buf: &mut [u8; 24]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

impl Condition {
    /// Evaluates the condition on a stored value (`None` = the property is missing).
    pub fn eval_value(&self, value: Option<&Value>) -> bool {
        self.eval(value.and_then(Value::as_ref))
    }

    /// [`Condition::eval`] on a number (a behaviour rule's aggregate, at every user of every
    /// scheduled run): a comparison with one number is made directly.
    pub fn eval_num(&self, x: f64) -> bool {
        let Operand::One(Scalar::Num(v)) = &self.operand else {
            return self.eval(Some(ValueRef::Num(x)));
        };
        let o = x.partial_cmp(v);
        match self.op {
            Op::Eq => o.is_some_and(Ordering::is_eq),
            Op::Ne => o.is_some_and(Ordering::is_ne),
            Op::Gt => o.is_some_and(Ordering::is_gt),
            Op::Ge => o.is_some_and(Ordering::is_ge),
            Op::Lt => o.is_some_and(Ordering::is_lt),
            Op::Le => o.is_some_and(Ordering::is_le),
            _ => self.eval(Some(ValueRef::Num(x))),
        }
    }

    /// Evaluates the condition on `value` (`None` = the property is missing or null).
    pub fn eval(&self, value: Option<ValueRef<'_>>) -> bool {
        let Some(v) = value else {
            return self.op == Op::NotExists;
        };
        let one = |f: fn(Ordering) -> bool| match &self.operand {
            Operand::One(s) => compare(v, s).is_some_and(f),
            _ => false,
        };
        match self.op {
            Op::Exists => true,
            Op::NotExists => false,
            Op::Eq | Op::Ne => match &self.operand {
                Operand::One(s) => equals(v, s) == Some(self.op == Op::Eq),
                _ => false,
            },
            Op::Gt => one(Ordering::is_gt),
            Op::Ge => one(Ordering::is_ge),
            Op::Lt => one(Ordering::is_lt),
            Op::Le => one(Ordering::is_le),
            Op::Between => match &self.operand {
                Operand::Range(lo, hi) => {
                    compare(v, lo).is_some_and(Ordering::is_ge)
                        && compare(v, hi).is_some_and(Ordering::is_le)
                }
                _ => false,
            },
            Op::In | Op::NotIn => {
                let Operand::List(items) = &self.operand else {
                    return false;
                };
                let mut typed = false;
                let mut found = false;
                for s in items {
                    if let Some(eq) = equals(v, s) {
                        typed = true;
                        found |= eq;
                        if found {
                            break; // `in` holds, `not_in` does not, whatever follows
                        }
                    }
                }
                match self.op {
                    Op::In => found,
                    _ => typed && !found,
                }
            }
            Op::Contains | Op::StartsWith => match (v, &self.operand) {
                (ValueRef::Str(a), Operand::One(Scalar::Str(b))) => {
                    if self.op == Op::Contains {
                        a.contains(b.as_str())
                    } else {
                        a.starts_with(b.as_str())
                    }
                }
                _ => false,
            },
        }
    }
}

/// Evaluates every condition against `lookup`; all must hold.
pub fn all_hold<'a>(conds: &[Condition], lookup: impl Fn(PropId) -> Option<ValueRef<'a>>) -> bool {
    conds.iter().all(|c| c.eval(lookup(c.prop)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(op: Op, operand: Operand) -> Condition {
        Condition {
            prop: 0,
            op,
            operand,
        }
    }
    fn num(n: f64) -> Operand {
        Operand::One(Scalar::Num(n))
    }
    fn s(x: &str) -> Value {
        Value::Str(x.into())
    }
    fn ver(x: &str) -> Scalar {
        Scalar::Version(parse_version(x).unwrap())
    }

    #[test]
    fn numeric_comparisons() {
        let v = Value::Num(21.0);
        assert!(cond(Op::Gt, num(20.0)).eval_value(Some(&v)));
        assert!(!cond(Op::Gt, num(21.0)).eval_value(Some(&v)));
        assert!(cond(Op::Ge, num(21.0)).eval_value(Some(&v)));
        assert!(cond(Op::Lt, num(22.0)).eval_value(Some(&v)));
        assert!(cond(Op::Le, num(21.0)).eval_value(Some(&v)));
        assert!(cond(Op::Eq, num(21.0)).eval_value(Some(&v)));
        assert!(cond(Op::Ne, num(20.0)).eval_value(Some(&v)));
        let between = |lo, hi| {
            cond(
                Op::Between,
                Operand::Range(Scalar::Num(lo), Scalar::Num(hi)),
            )
        };
        assert!(
            between(21.0, 30.0).eval_value(Some(&v)),
            "inclusive low bound"
        );
        assert!(
            between(10.0, 21.0).eval_value(Some(&v)),
            "inclusive high bound"
        );
        assert!(!between(22.0, 30.0).eval_value(Some(&v)));
    }

    #[test]
    fn missing_and_wrong_type_are_false_except_not_exists() {
        for op in [
            Op::Eq,
            Op::Ne,
            Op::Gt,
            Op::In,
            Op::NotIn,
            Op::Contains,
            Op::Exists,
        ] {
            let c = cond(op, Operand::List(vec![Scalar::Num(1.0)]));
            assert!(!c.eval_value(None), "{op:?} on missing");
            assert!(!c.eval_value(Some(&Value::Null)), "{op:?} on null");
        }
        assert!(cond(Op::NotExists, Operand::None).eval_value(None));
        assert!(!cond(Op::NotExists, Operand::None).eval_value(Some(&s("x"))));
        assert!(cond(Op::Exists, Operand::None).eval_value(Some(&Value::Other)));
        assert!(
            !cond(Op::Eq, num(20.0)).eval_value(Some(&s("20"))),
            "string is not a number"
        );
        assert!(
            !cond(Op::Ne, num(20.0)).eval_value(Some(&s("20"))),
            "!= on wrong type is false"
        );
        let not_in = cond(Op::NotIn, Operand::List(vec![Scalar::Num(1.0)]));
        assert!(
            !not_in.eval_value(Some(&s("a"))),
            "not_in on wrong type is false"
        );
        assert!(not_in.eval_value(Some(&Value::Num(2.0))));
    }

    #[test]
    fn strings_are_case_sensitive() {
        let c = cond(Op::Eq, Operand::One(Scalar::Str("US".into())));
        assert!(c.eval_value(Some(&s("US"))));
        assert!(!c.eval_value(Some(&s("us"))));
        let starts = cond(Op::StartsWith, Operand::One(Scalar::Str("San".into())));
        assert!(starts.eval_value(Some(&s("San Jose"))));
        assert!(!starts.eval_value(Some(&s("san jose"))));
        let contains = cond(Op::Contains, Operand::One(Scalar::Str("@gmail".into())));
        assert!(contains.eval_value(Some(&s("x@gmail.com"))));
        let list = Operand::List(vec![Scalar::Str("DE".into()), Scalar::Str("FR".into())]);
        assert!(cond(Op::In, list.clone()).eval_value(Some(&s("FR"))));
        assert!(!cond(Op::In, list.clone()).eval_value(Some(&s("fr"))));
        assert!(cond(Op::NotIn, list).eval_value(Some(&s("IT"))));
    }

    #[test]
    fn dotted_versions_compare_numerically() {
        let gt = |a: &str, b: &str| cond(Op::Gt, Operand::One(ver(b))).eval_value(Some(&s(a)));
        assert!(gt("5.10", "5.9"));
        assert!(gt("10.0.1", "9.9.9"));
        assert!(!gt("5.9.0", "5.9"));
        assert!(cond(Op::Eq, Operand::One(ver("6"))).eval_value(Some(&s("6.0.0"))));
        assert!(cond(Op::Eq, Operand::One(ver("6"))).eval_value(Some(&Value::Num(6.0))));
        assert!(!gt("5.x", "1.0"), "malformed versions never match");
        assert!(!gt("5.0.x", "4"), "malformed tail never matches");
        let between = cond(Op::Between, Operand::Range(ver("5.9"), ver("5.10.2")));
        assert!(between.eval_value(Some(&s("5.10"))));
        assert!(!between.eval_value(Some(&s("5.11"))));
    }

    #[test]
    fn numbers_compare_as_numbers_on_either_path() {
        // Rust's own comparisons are the reference; a NaN (a sum gone to inf - inf) is
        // unordered, so only `not_exists`-like answers could hold, and none here do.
        let expected = |op: Op, x: f64| match op {
            Op::Eq => x == 2.0,
            Op::Ne => x != 2.0 && !x.is_nan(),
            Op::Gt => x > 2.0,
            Op::Ge => x >= 2.0,
            Op::Lt => x < 2.0,
            Op::Le => x <= 2.0,
            _ => unreachable!(),
        };
        let values = [
            f64::NEG_INFINITY,
            -1.0,
            0.0,
            2.0,
            2.5,
            f64::INFINITY,
            f64::NAN,
        ];
        for op in [Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le] {
            let c = cond(op, num(2.0));
            for x in values {
                assert_eq!(c.eval_num(x), expected(op, x), "{op:?} {x}");
                assert_eq!(
                    c.eval(Some(ValueRef::Num(x))),
                    expected(op, x),
                    "{op:?} {x}"
                );
            }
        }
        let range = cond(
            Op::Between,
            Operand::Range(Scalar::Num(1.0), Scalar::Num(2.0)),
        );
        assert!(range.eval_num(2.0) && !range.eval_num(2.5) && !range.eval_num(f64::NAN));
        let list = cond(Op::NotIn, Operand::List(vec![Scalar::Num(2.0)]));
        assert!(list.eval_num(1.0) && !list.eval_num(2.0));
    }

    #[test]
    fn texts_of_other_lengths_and_types_never_match_a_list() {
        let list = Operand::List(vec![
            Scalar::Str("United States".into()),
            Scalar::Str("Germany".into()),
        ]);
        let is_in = cond(Op::In, list.clone());
        let not_in = cond(Op::NotIn, list);
        for (v, found) in [("Germany", true), ("German", false), ("germany", false)] {
            assert_eq!(is_in.eval_value(Some(&s(v))), found, "{v}");
            assert_eq!(not_in.eval_value(Some(&s(v))), !found, "{v}");
        }
        // A value of another type is neither in nor out of a list of texts.
        assert!(!is_in.eval_value(Some(&Value::Bool(true))));
        assert!(!not_in.eval_value(Some(&Value::Num(1.0))));
        let ne = cond(Op::Ne, Operand::One(Scalar::Str("Germany".into())));
        assert!(ne.eval_value(Some(&s("France"))) && !ne.eval_value(Some(&s("Germany"))));
        assert!(
            !ne.eval_value(Some(&Value::Num(1.0))),
            "!= of another type is false"
        );
    }

    #[test]
    fn booleans_compare_for_equality() {
        let c = cond(Op::Eq, Operand::One(Scalar::Bool(false)));
        assert!(c.eval_value(Some(&Value::Bool(false))));
        assert!(!c.eval_value(Some(&Value::Bool(true))));
    }
}
