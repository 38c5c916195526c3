//! `HumanDuration`: a duration written as humantime text (`"90s"`, `"30m"`, `"5d"`).
//!
//! The original text is kept so that `Debug`, errors and `check-config` show what the user wrote.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration parsed from humantime text, keeping the text it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct HumanDuration {
    text: String,
    duration: Duration,
}

impl HumanDuration {
    /// Parses humantime text such as `"5s"` or `"1h 30m"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text)
            .map(|duration| HumanDuration {
                text: text.to_owned(),
                duration,
            })
            .map_err(|e| format!("invalid duration {text:?}: {e}"))
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The duration in whole milliseconds, saturating at `i64::MAX`.
    pub fn as_millis(&self) -> i64 {
        i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The durations a config key accepts, both ends included, as written in messages and the
/// README. Past the maximum a value is a mistake (`"100y"` of lateness), not a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    min: &'static str,
    min_ms: i64,
    max: &'static str,
    max_ms: i64,
}

impl Range {
    /// `min`/`max` are the bounds as text, `min_ms`/`max_ms` the same in milliseconds.
    pub const fn new(min: &'static str, min_ms: i64, max: &'static str, max_ms: i64) -> Range {
        Range {
            min,
            min_ms,
            max,
            max_ms,
        }
    }

    /// Whether `d` (in whole milliseconds) is in the range; the error says what is.
    pub fn check(&self, d: &HumanDuration) -> Result<(), String> {
        let ms = d.as_millis();
        if (self.min_ms..=self.max_ms).contains(&ms) {
            Ok(())
        } else {
            Err(format!(
                "must be from {} to {}, not {:?}",
                self.min, self.max, d.text
            ))
        }
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_keeps_text() {
        let d = HumanDuration::parse("1h 30m").unwrap();
        assert_eq!(d.as_millis(), 90 * 60 * 1000);
        assert_eq!(format!("{d:?}"), "\"1h 30m\"");
        assert!(HumanDuration::parse("soon").is_err());
    }

    #[test]
    fn ranges_include_both_ends_and_count_whole_milliseconds() {
        let r = Range::new("1ms", 1, "1d", 86_400_000);
        let d = |s: &str| HumanDuration::parse(s).unwrap();
        assert!(r.check(&d("1ms")).is_ok());
        assert!(r.check(&d("1d")).is_ok());
        assert!(r.check(&d("24h 1ms")).is_err());
        assert_eq!(
            r.check(&d("500us")).unwrap_err(),
            "must be from 1ms to 1d, not \"500us\""
        );
        assert!(r.check(&d("100y")).is_err());
    }
}
