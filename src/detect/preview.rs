//! Preview (DESIGN §9 `POST /campaigns/preview`): how many users a campaign would find in the
//! live state now — who pass its Who and behaviour rules, of them who are reachable by its
//! identifiers and who fall in its control group. Nothing changes; a live campaign's trigger
//! is not asked for (its users would qualify at their next trigger).
//!
//! A campaign being previewed is compiled with the running ones, appended last, against the
//! running schema extended by the names only it uses (so every id the state holds means what
//! it meant). Behaviour rules keep figures only for the rules loaded: a previewed rule reads
//! the figures of a running rule that counts the same events (event, conditions, summed
//! property, time zone) over at least its range; one without such a rule is *not kept* and
//! reads as no matching events (a `did_not` holds, a `did` does not) — the answer says so.

use std::sync::Arc;

use serde::Serialize;

use super::past::PastRule;
use super::{CampaignIdx, Rules};
use crate::campaign::past::Range;
use crate::campaign::Identifiers;

/// One preview, as every shard evaluates it.
#[derive(Debug)]
pub struct Preview {
    /// The running campaigns and the previewed one (last).
    pub rules: Arc<Rules>,
    pub campaign: CampaignIdx,
    /// Per behaviour rule of the campaign (`rules.rules[campaign].past`), the rule whose
    /// figures it reads; `None`: not kept.
    pub sources: Vec<Option<u16>>,
    pub identifiers: Identifiers,
}

/// A preview's counts over some users.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PreviewCounts {
    /// Users with state.
    pub users: u64,
    /// Of them, who pass Who and the behaviour rules.
    pub qualified: u64,
    /// Of those, who have one of the campaign's identifiers.
    pub reachable: u64,
    /// Of those, who are in the control group.
    pub control: u64,
}

impl PreviewCounts {
    pub fn add(&mut self, o: &PreviewCounts) {
        self.users += o.users;
        self.qualified += o.qualified;
        self.reachable += o.reachable;
        self.control += o.control;
    }
}

/// The oldest day a range reads, in days before the evaluation's (`None`: `all`).
fn days_back(r: Range) -> Option<u16> {
    match r {
        Range::Last(n) => Some(n.saturating_sub(1)),
        Range::Between(n, _) => Some(n),
        Range::All => None,
    }
}

/// Whether `have`'s figures answer `want`: the same events counted, over at least its days.
fn covers(have: &PastRule, want: &PastRule) -> bool {
    let prop = |r: &PastRule| r.agg.as_ref().and_then(|a| a.1);
    let span = match (days_back(have.range), days_back(want.range)) {
        (None, None) => true,
        (Some(h), Some(w)) => h >= w,
        _ => false,
    };
    have.event == want.event
        && have.conditions == want.conditions
        && prop(have) == prop(want)
        && have.tz == want.tz
        && span
}

impl Preview {
    /// The preview of campaign `campaign` of `rules`, whose first `running` behaviour rules
    /// are those the state keeps figures for.
    pub fn new(
        rules: Arc<Rules>,
        campaign: CampaignIdx,
        running: usize,
        identifiers: Identifiers,
    ) -> Preview {
        let rule = &rules.rules[usize::from(campaign)];
        let sources = (rule.past.iter())
            .map(|&r| {
                let want = &rules.past[usize::from(r)];
                (0..running.min(rules.past.len()))
                    .find(|&h| covers(&rules.past[h], want))
                    .map(|h| h as u16)
            })
            .collect();
        Preview {
            rules,
            campaign,
            sources,
            identifiers,
        }
    }

    /// Positions (in `who.past`) of the behaviour rules that are not kept.
    pub fn not_kept(&self) -> Vec<usize> {
        (self.sources.iter().enumerate())
            .filter(|(_, s)| s.is_none())
            .map(|(i, _)| i)
            .collect()
    }
}
