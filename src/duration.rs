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
}
