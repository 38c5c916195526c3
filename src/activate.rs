//! The activate stage: qualified users → decisions (DESIGN §4 "Order of gates").
//!
//! For each qualification, in `(at, user_id)` order: once per user per campaign →
//! reachability (at least one chosen identifier, else `unreachable`) → control group (the
//! SHA-256 rule) → target cap (`capped` once `target_cap` users were exported) → `exported`.
//! Conversions of exported and control users are counted; with `remove_on_goal` an exported
//! converter gets a `removed` decision. The stage is a plain state machine fed one item at a
//! time, so replay (which sorts first, for an exact cap) and `run` share it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::campaign::Campaign;
use crate::detect::{CampaignIdx, Conversion, Ids, Qualification};
use crate::event::{EventTime, UserId};

/// The outcome of a decision. Declaration order is the sort order of `decisions.jsonl` ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Capped,
    Control,
    Exported,
    Removed,
    Unreachable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Capped => "capped",
            Outcome::Control => "control",
            Outcome::Exported => "exported",
            Outcome::Removed => "removed",
            Outcome::Unreachable => "unreachable",
        }
    }
}

/// One decision about one user in one campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub campaign: CampaignIdx,
    pub user: UserId,
    pub at: EventTime,
    pub outcome: Outcome,
    /// Hashed ids, on `exported` and `removed` only.
    pub ids: Ids,
}

/// Per-campaign counters of the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignCounts {
    pub qualified: u64,
    pub exported: u64,
    pub control: u64,
    pub capped: u64,
    pub unreachable: u64,
    pub removed: u64,
    pub pending: u64,
    pub conversions: Conversions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Conversions {
    pub exported: u64,
    pub control: u64,
}

/// Whether `user_id` is in the control group of `campaign_id` at `percent`:
/// `u64_be(sha256("{campaign_id}:{user_id}")[0..8]) % 10000 < percent * 100`.
pub fn in_control_group(campaign_id: &str, user_id: &str, percent: u8) -> bool {
    if percent == 0 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(campaign_id.as_bytes());
    h.update(b":");
    h.update(user_id.as_bytes());
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    n % 10_000 < u64::from(percent) * 100
}

/// What activate remembers of a decided user.
#[derive(Debug, Clone, Copy)]
struct Decided {
    outcome: Outcome,
    ids: Ids,
    converted: bool,
}

/// What activate needs of a campaign.
#[derive(Debug, Clone)]
struct Gates {
    id: String,
    control_group: u8,
    target_cap: Option<u64>,
    identifiers: crate::campaign::Identifiers,
    remove_on_goal: bool,
}

/// The activate stage's state.
pub struct Activator {
    campaigns: Vec<Gates>,
    decided: Vec<HashMap<UserId, Decided>>,
    counts: Vec<CampaignCounts>,
}

impl Activator {
    pub fn new(campaigns: &[Campaign]) -> Self {
        Activator {
            campaigns: campaigns
                .iter()
                .map(|c| Gates {
                    id: c.id.clone(),
                    control_group: c.who.control_group,
                    target_cap: c.who.target_cap,
                    identifiers: c.what.identifiers,
                    remove_on_goal: c.what.remove_on_goal,
                })
                .collect(),
            decided: vec![HashMap::new(); campaigns.len()],
            counts: vec![CampaignCounts::default(); campaigns.len()],
        }
    }

    /// Restores one persisted decision (the decisions changelog), counts included.
    pub fn restore(
        &mut self,
        campaign: CampaignIdx,
        user: UserId,
        outcome: Outcome,
        ids: Ids,
        converted: bool,
    ) {
        let c = usize::from(campaign);
        let counts = &mut self.counts[c];
        let prev = self.decided[c].insert(
            user,
            Decided {
                outcome,
                ids,
                converted,
            },
        );
        debug_assert!(prev.is_none(), "one record per user");
        match outcome {
            Outcome::Exported | Outcome::Removed => counts.exported += 1,
            Outcome::Control => counts.control += 1,
            Outcome::Capped => counts.capped += 1,
            Outcome::Unreachable => counts.unreachable += 1,
        }
        counts.qualified += 1;
        if outcome == Outcome::Removed {
            counts.removed += 1;
        }
        if converted {
            match outcome {
                Outcome::Exported | Outcome::Removed => counts.conversions.exported += 1,
                Outcome::Control => counts.conversions.control += 1,
                _ => {}
            }
        }
    }

    /// A user's decision: outcome (`removed` once removed), ids, converted.
    pub fn decided(&self, campaign: CampaignIdx, user: &str) -> Option<(Outcome, Ids, bool)> {
        self.decided[usize::from(campaign)]
            .get(user)
            .map(|d| (d.outcome, d.ids, d.converted))
    }

    /// Decides one qualification; `None` if the user already had a decision.
    pub fn qualify(&mut self, q: &Qualification) -> Option<Decision> {
        let c = usize::from(q.campaign);
        let campaign = &self.campaigns[c];
        if self.decided[c].contains_key(&q.user) {
            return None;
        }
        let counts = &mut self.counts[c];
        let ids = q.ids.chosen(campaign.identifiers);
        let outcome = if ids.is_empty() {
            counts.unreachable += 1;
            Outcome::Unreachable
        } else if in_control_group(&campaign.id, &q.user, campaign.control_group) {
            counts.control += 1;
            Outcome::Control
        } else if campaign
            .target_cap
            .is_some_and(|cap| counts.exported >= cap)
        {
            counts.capped += 1;
            Outcome::Capped
        } else {
            counts.exported += 1;
            Outcome::Exported
        };
        counts.qualified += 1;
        self.decided[c].insert(
            q.user.clone(),
            Decided {
                outcome,
                ids,
                converted: false,
            },
        );
        Some(Decision {
            campaign: q.campaign,
            user: q.user.clone(),
            at: q.at,
            outcome,
            ids: if outcome == Outcome::Exported {
                ids
            } else {
                Ids::default()
            },
        })
    }

    /// Counts a conversion; returns a `removed` decision when the campaign removes converters.
    pub fn convert(&mut self, conv: &Conversion) -> Option<Decision> {
        let c = usize::from(conv.campaign);
        let d = self.decided[c].get_mut(&conv.user)?;
        if d.converted {
            return None;
        }
        d.converted = true;
        let counts = &mut self.counts[c];
        match d.outcome {
            Outcome::Exported => {
                counts.conversions.exported += 1;
                if self.campaigns[c].remove_on_goal {
                    counts.removed += 1;
                    d.outcome = Outcome::Removed;
                    return Some(Decision {
                        campaign: conv.campaign,
                        user: conv.user.clone(),
                        at: conv.ts,
                        outcome: Outcome::Removed,
                        ids: d.ids,
                    });
                }
            }
            Outcome::Control => counts.conversions.control += 1,
            _ => {}
        }
        None
    }

    pub fn counts(&self) -> &[CampaignCounts] {
        &self.counts
    }

    pub fn into_counts(self) -> Vec<CampaignCounts> {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_group_rule_is_the_documented_hash() {
        // Recompute the rule independently for a few users.
        for user in ["u1", "u2", "alice", "bob"] {
            let d = Sha256::digest(format!("cart:{user}").as_bytes());
            let n = u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000;
            for pct in [0u8, 1, 10, 50, 99] {
                assert_eq!(
                    in_control_group("cart", user, pct),
                    n < u64::from(pct) * 100
                );
            }
        }
    }

    #[test]
    fn control_share_is_close_to_the_percent() {
        let n = (0..20_000)
            .filter(|i| in_control_group("c", &format!("u{i}"), 10))
            .count();
        assert!((1_700..2_300).contains(&n), "{n}");
    }
}
