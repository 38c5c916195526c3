//! The replay's output files (DESIGN §5): `decisions.jsonl`, `summary.json`,
//! `dead-letter.jsonl`. Formats are contracts; field order is fixed by the structs below.
//! [`dir`] owns the directory they go to and writes them as one set.

pub mod dir;
pub mod spill;

pub use dir::{OutDir, OutputError, OutputSet};

use std::collections::BTreeMap;
use std::io::{self, Write};

use base64::Engine as _;
use serde::Serialize;

use crate::activate::{CampaignCounts, Decision, Outcome};
use crate::campaign::Campaign;
use crate::config::DeadLetterMode;
use crate::event::decode::Malformed;
use crate::identity::Hex;
use crate::report::Report;

/// Sorts decisions by `(at, campaign id, user_id, outcome)`.
pub fn sort_decisions(decisions: &mut [Decision], campaigns: &[Campaign]) {
    decisions.sort_by(|a, b| {
        let ca = &campaigns[usize::from(a.campaign)].id;
        let cb = &campaigns[usize::from(b.campaign)].id;
        (a.at, ca, &a.user, a.outcome.as_str()).cmp(&(b.at, cb, &b.user, b.outcome.as_str()))
    });
}

/// Writes sorted decisions, one JSON object a line.
pub fn write_decisions(
    w: &mut impl Write,
    decisions: &[Decision],
    campaigns: &[Campaign],
) -> io::Result<()> {
    for d in decisions {
        write_decision(w, d, campaigns)?;
    }
    Ok(())
}

/// Writes one decision's line: `{"campaign":…,"user_id":…,"at":…,"outcome":…}`, with
/// `"ids":{"EMAIL_SHA256":…,"PHONE_SHA256":…}` (those it has) on `exported` and `removed`.
/// Written field by field (what `serde_json` gives a struct of these fields, without escaping
/// the keys and the hex digits).
pub fn write_decision(w: &mut impl Write, d: &Decision, campaigns: &[Campaign]) -> io::Result<()> {
    w.write_all(b"{\"campaign\":")?;
    serde_json::to_writer(&mut *w, &campaigns[usize::from(d.campaign)].id)?;
    w.write_all(b",\"user_id\":")?;
    serde_json::to_writer(&mut *w, &d.user)?;
    w.write_all(b",\"at\":")?;
    w.write_all(itoa::Buffer::new().format(d.at).as_bytes())?;
    w.write_all(b",\"outcome\":\"")?;
    w.write_all(d.outcome.as_str().as_bytes())?;
    w.write_all(b"\"")?;
    if matches!(d.outcome, Outcome::Exported | Outcome::Removed) {
        w.write_all(b",\"ids\":{")?;
        let mut sep = "";
        for (key, id) in [
            ("EMAIL_SHA256", &d.ids.email),
            ("PHONE_SHA256", &d.ids.phone),
        ] {
            if let Some(h) = id {
                for part in [sep, "\"", key, "\":\"", Hex::of(h).as_str(), "\""] {
                    w.write_all(part.as_bytes())?;
                }
                sep = ",";
            }
        }
        w.write_all(b"}")?;
    }
    w.write_all(b"}\n")
}

pub use crate::detect::router::Totals;

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub records: u64,
    pub events: u64,
    pub profiles: u64,
    /// Records that are neither events nor profiles (Segment `alias`, `group`): an extension.
    #[serde(skip_serializing_if = "is_zero")]
    pub other: u64,
    /// Erasure requests (`delete` records) applied: an extension.
    #[serde(skip_serializing_if = "is_zero")]
    pub erasures: u64,
    pub malformed: u64,
    pub late_dropped: u64,
    pub campaigns: BTreeMap<String, CampaignSummary>,
    pub malformed_by_reason: BTreeMap<&'static str, u64>,
    /// Lines of only whitespace, skipped: records + malformed + blank_lines = input lines. An
    /// extension.
    pub blank_lines: u64,
    /// Custom profile properties not kept because a user had `engine.max_custom_props`.
    #[serde(skip_serializing_if = "is_zero")]
    pub custom_props_dropped: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One campaign in `summary.json`: DESIGN §5's counts and §9's `report`.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignSummary {
    #[serde(flatten)]
    pub counts: CampaignCounts,
    pub report: Report,
}

impl std::ops::Deref for CampaignSummary {
    type Target = CampaignCounts;
    fn deref(&self) -> &CampaignCounts {
        &self.counts
    }
}

impl Summary {
    pub fn new(
        totals: &Totals,
        campaigns: &[Campaign],
        counts: &[CampaignCounts],
        reports: &[Report],
    ) -> Summary {
        Summary {
            records: totals.records,
            events: totals.events,
            profiles: totals.profiles,
            other: totals.other,
            erasures: totals.erasures,
            malformed: totals.malformed,
            late_dropped: totals.late_dropped,
            campaigns: campaigns
                .iter()
                .zip(counts.iter().zip(reports))
                .map(|(c, (n, r))| {
                    let s = CampaignSummary {
                        counts: n.clone(),
                        report: r.clone(),
                    };
                    (c.id.clone(), s)
                })
                .collect(),
            malformed_by_reason: totals.reasons().map(|(r, n)| (r.as_str(), n)).collect(),
            blank_lines: totals.blank_lines,
            custom_props_dropped: totals.custom_props_dropped,
        }
    }

    /// A per-campaign table for people.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<24} {:>9} {:>9} {:>8} {:>8} {:>11} {:>8} {:>8} {:>10} {:>10}\n",
            "campaign",
            "qualified",
            "exported",
            "control",
            "capped",
            "unreachable",
            "removed",
            "pending",
            "conv.exp",
            "conv.ctl"
        );
        for (id, c) in &self.campaigns {
            s.push_str(&format!(
                "{:<24} {:>9} {:>9} {:>8} {:>8} {:>11} {:>8} {:>8} {:>10} {:>10}\n",
                id,
                c.qualified,
                c.exported,
                c.control,
                c.capped,
                c.unreachable,
                c.removed,
                c.pending,
                c.conversions.exported,
                c.conversions.control
            ));
        }
        s
    }

    /// The campaigns' reports, as lines under [`table`](Self::table).
    pub fn reports(&self) -> String {
        let mut s = String::new();
        for (id, c) in &self.campaigns {
            for line in c.report.lines(id) {
                s.push_str(&line);
                s.push('\n');
            }
        }
        s
    }
}

#[derive(Serialize)]
struct DeadLetterLine<'a> {
    reason: &'static str,
    source: &'a str,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
    /// The raw bytes when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_base64: Option<String>,
    /// `engine.dead_letter = "redacted"`: the SHA-256 of the bytes instead of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

/// Writes one dead-letter line: the reason, where it came from, and the original bytes (or,
/// redacted, their SHA-256 only).
pub fn write_dead_letter(
    w: &mut impl Write,
    mode: DeadLetterMode,
    reason: Malformed,
    source: &str,
    line: u64,
    raw: &[u8],
) -> io::Result<()> {
    let redacted = mode == DeadLetterMode::Redacted;
    let text = std::str::from_utf8(raw).ok().filter(|_| !redacted);
    let entry = DeadLetterLine {
        reason: reason.as_str(),
        source,
        line,
        raw: text,
        raw_base64: (text.is_none() && !redacted)
            .then(|| base64::engine::general_purpose::STANDARD.encode(raw)),
        sha256: redacted.then(|| crate::identity::to_hex(&crate::identity::sha256(raw))),
    };
    serde_json::to_writer(&mut *w, &entry)?;
    w.write_all(b"\n")
}
