//! Configuration problems: what `check-config` lists, each with its campaign id and the full
//! path of its field (`who.where[1].op`). Below both the campaign definitions and the service
//! config, which read their TOML through a [`Reader`] that reports into [`Problems`].
//!
//! Why not serde for the tables: deserialising one stops at its first error, and that error
//! names neither the field nor the campaign (`invalid type: integer …`), so one mistake hid the
//! campaign's other problems. A [`Reader`] takes each field on its own: every unknown key,
//! wrong type and bad value is a problem, and the rest of the table is still read.

use std::fmt;

use crate::duration::{HumanDuration, Range};

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The campaign id (`#N` for the N-th `[[campaign]]` without a usable id, `id (#N)` for one
    /// whose id another campaign also has); `None` for service sections.
    pub campaign: Option<String>,
    /// Full field path, e.g. `who.where[1].op` or `engine.allowed_lateness`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.campaign {
            // Quoted only when it could be misread (spaces, colons, line breaks…).
            Some(c) if plain_label(c) => {
                write!(f, "campaign {c}: {}: {}", self.field, self.message)
            }
            Some(c) => write!(f, "campaign {c:?}: {}: {}", self.field, self.message),
            None => write!(f, "{}: {}", self.field, self.message),
        }
    }
}

fn plain_label(c: &str) -> bool {
    let id = c.split_once(" (#").map_or(c, |(id, _)| id);
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.#".contains(&b))
}

/// Every problem found in a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<ConfigError>);

impl Problems {
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub(crate) fn service(&mut self, field: &str, message: impl Into<String>) {
        self.push(ConfigError {
            campaign: None,
            field: field.to_owned(),
            message: message.into(),
        });
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

// === impl Reader ===

/// Reads TOML tables field by field, reporting every problem with its path (and campaign).
pub(crate) struct Reader<'p> {
    campaign: Option<String>,
    problems: &'p mut Problems,
}

/// A table being read, and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Table<'v> {
    pub path: String,
    pub t: &'v toml::Table,
}

impl Table<'_> {
    /// The path of `key` in this table.
    pub fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

fn join(path: &str, key: &str) -> String {
    // A key that is not a bare TOML key is quoted, as TOML would write it.
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        key
    } else {
        format!("{path}.{key}")
    }
}

/// A field as read: absent, present but wrong (already reported), or its value.
#[derive(Debug)]
pub(crate) enum Field<T> {
    Absent,
    Bad,
    Ok(T),
}

impl<T> Field<T> {
    /// The value, or `default` when absent; `None` when it was wrong.
    pub fn or(self, default: T) -> Option<T> {
        match self {
            Field::Absent => Some(default),
            Field::Bad => None,
            Field::Ok(v) => Some(v),
        }
    }

    /// `Some(None)` when absent, `None` when it was wrong.
    pub fn optional(self) -> Option<Option<T>> {
        match self {
            Field::Absent => Some(None),
            Field::Bad => None,
            Field::Ok(v) => Some(Some(v)),
        }
    }
}

/// A TOML value of one Rust type; the error says what was expected and what was found.
pub(crate) trait FromToml: Sized {
    fn from_toml(v: &toml::Value) -> Result<Self, String>;
}

/// What a value is, for type errors: `string "many"`, `integer 5`, `a table`. Long strings
/// are cut: a message is a hint, not a copy of the file.
pub(crate) fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) if s.chars().count() > 40 => {
            format!("string {:?}…", s.chars().take(40).collect::<String>())
        }
        toml::Value::String(s) => format!("string {s:?}"),
        toml::Value::Integer(i) => format!("integer {i}"),
        // As TOML writes them: `nan`, `inf`, `1e300` (not 300 digits).
        toml::Value::Float(x) if x.is_nan() => "float nan".into(),
        toml::Value::Float(x) if x.is_infinite() => {
            format!("float {}inf", if *x < 0.0 { "-" } else { "" })
        }
        toml::Value::Float(x) => format!("float {x:?}"),
        toml::Value::Boolean(b) => format!("boolean {b}"),
        toml::Value::Datetime(d) => format!("date-time {d}"),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

pub(crate) fn type_error(expected: &str, v: &toml::Value) -> String {
    format!("invalid type: {}, expected {expected}", describe(v))
}

impl FromToml for String {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| type_error("a string", v))
    }
}

impl FromToml for i64 {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_integer().ok_or_else(|| type_error("an integer", v))
    }
}

impl FromToml for f64 {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        match v {
            toml::Value::Integer(i) => Ok(*i as f64),
            toml::Value::Float(x) => Ok(*x),
            _ => Err(type_error("a number", v)),
        }
    }
}

impl FromToml for bool {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_bool().ok_or_else(|| type_error("a boolean", v))
    }
}

impl FromToml for HumanDuration {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let text = v
            .as_str()
            .ok_or_else(|| type_error("a duration such as \"30s\"", v))?;
        HumanDuration::parse(text)
    }
}

impl<'p> Reader<'p> {
    /// A reader for a service section (`campaign = None`) or one campaign.
    pub fn new(problems: &'p mut Problems, campaign: Option<String>) -> Self {
        Reader { campaign, problems }
    }

    pub fn err(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(ConfigError {
            campaign: self.campaign.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// The problem list itself, for checks that report on their own.
    pub fn problems(&mut self) -> &mut Problems {
        self.problems
    }

    /// Problems reported so far (by any reader).
    pub fn count(&self) -> usize {
        self.problems.len()
    }

    /// `v` as a table whose keys are among `keys`; every other key is reported.
    pub fn table<'v>(
        &mut self,
        path: String,
        v: &'v toml::Value,
        keys: &[&str],
    ) -> Option<Table<'v>> {
        let Some(t) = v.as_table() else {
            self.err(&path, type_error("a table", v));
            return None;
        };
        for k in t.keys().filter(|k| !keys.contains(&k.as_str())) {
            self.err(&join(&path, k), "unknown field");
        }
        Some(Table { path, t })
    }

    /// Field `key` of `t`.
    pub fn get<T: FromToml>(&mut self, t: &Table, key: &str) -> Field<T> {
        match t.t.get(key) {
            None => Field::Absent,
            Some(v) => match T::from_toml(v) {
                Ok(x) => Field::Ok(x),
                Err(e) => {
                    self.err(&t.at(key), e);
                    Field::Bad
                }
            },
        }
    }

    /// Field `key` of `t`, reported as missing when absent.
    pub fn req<T: FromToml>(&mut self, t: &Table, key: &str) -> Option<T> {
        match self.get(t, key) {
            Field::Absent => {
                self.err(&t.at(key), "missing");
                None
            }
            Field::Bad => None,
            Field::Ok(x) => Some(x),
        }
    }

    /// Duration `key` of `t`, which must be in `range`.
    pub fn duration(&mut self, t: &Table, key: &str, range: Range) -> Field<HumanDuration> {
        match self.get::<HumanDuration>(t, key) {
            Field::Ok(d) => match range.check(&d) {
                Ok(()) => Field::Ok(d),
                Err(e) => {
                    self.err(&t.at(key), e);
                    Field::Bad
                }
            },
            other => other,
        }
    }

    /// Sub-table `key` of `t`, with its own `keys`.
    pub fn sub<'v>(&mut self, t: &Table<'v>, key: &str, keys: &[&str]) -> Field<Table<'v>> {
        match t.t.get(key) {
            None => Field::Absent,
            Some(v) => match self.table(t.at(key), v, keys) {
                Some(s) => Field::Ok(s),
                None => Field::Bad,
            },
        }
    }

    /// Array `key` of `t`.
    pub fn array<'v>(&mut self, t: &Table<'v>, key: &str) -> Field<&'v [toml::Value]> {
        match t.t.get(key) {
            None => Field::Absent,
            Some(toml::Value::Array(a)) => Field::Ok(a),
            Some(v) => {
                self.err(&t.at(key), type_error("an array", v));
                Field::Bad
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_be_misread_are_quoted() {
        let e = |c: &str| {
            ConfigError {
                campaign: Some(c.into()),
                field: "name".into(),
                message: "missing".into(),
            }
            .to_string()
        };
        assert_eq!(e("cart-1"), "campaign cart-1: name: missing");
        assert_eq!(e("Bad_Id"), "campaign Bad_Id: name: missing");
        assert_eq!(e("#2"), "campaign #2: name: missing");
        assert_eq!(e("cart (#3)"), "campaign cart (#3): name: missing");
        assert_eq!(e("a: b"), "campaign \"a: b\": name: missing");
        assert_eq!(e("x\ny"), "campaign \"x\\ny\": name: missing");
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted_in_paths() {
        assert_eq!(
            join("kafka.client", "sasl.password"),
            "kafka.client.\"sasl.password\""
        );
        assert_eq!(join("", "who"), "who");
        assert_eq!(join("who", "where"), "who.where");
    }
}
