//! The shared vocabulary of the stages: what detect emits ([`Qualification`], [`Conversion`]
//! in an [`Output`]), what activate decides ([`Decision`], [`Outcome`]) and what a sink
//! delivers ([`AudienceOp`]). It sits below every stage, so no stage imports another for it.

use serde::{Deserialize, Serialize};

use crate::campaign::Identifiers;
use crate::event::{EventTime, UserId};
use crate::identity::IdHash;

/// Index of a campaign in the config's campaign list.
pub type CampaignIdx = u16;

/// Hashed identifiers of a user, as chosen by a campaign.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ids {
    pub email: Option<IdHash>,
    pub phone: Option<IdHash>,
}

impl Ids {
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.phone.is_none()
    }

    /// Only the identifiers a campaign exports.
    pub fn chosen(&self, which: Identifiers) -> Ids {
        Ids {
            email: self.email.filter(|_| which.email),
            phone: self.phone.filter(|_| which.phone),
        }
    }
}

/// A user met a campaign's trigger (and inaction) and its Who filter at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qualification {
    pub campaign: CampaignIdx,
    pub user: UserId,
    pub at: EventTime,
    /// The trigger event's time (`at − within`).
    pub trigger_ts: EventTime,
    /// The campaign's chosen identifiers the user had at `at` (empty: unreachable).
    pub ids: Ids,
    /// `sync = "mirror"`: the user qualified at the campaign's previous run and does not at
    /// this one (a member gets a `removed` decision).
    pub leaves: bool,
}

/// A qualified user did the goal event within the goal window.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub campaign: CampaignIdx,
    pub user: UserId,
    pub ts: EventTime,
    /// The goal event's `goal.revenue_prop` (0 without it, or when not a number).
    pub revenue: f64,
}

/// An erasure request reached the user's shard at `ts`: activate forgets the user's decision
/// for `campaign` and deletes the ids no other member holds. Detect emits one per campaign
/// (it does not know where the user was decided).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub campaign: CampaignIdx,
    pub user: UserId,
    pub ts: EventTime,
}

/// What the detect stage emits.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Output {
    pub qualifications: Vec<Qualification>,
    pub conversions: Vec<Conversion>,
    pub erasures: Vec<Erasure>,
    /// Custom profile properties dropped over `engine.max_custom_props`.
    pub custom_props_dropped: u64,
    /// Scheduled runs executed, as `(campaign, run time)` (every shard executes each run).
    pub runs: Vec<(CampaignIdx, EventTime)>,
}

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

/// One decision about one user in one campaign (serialized only to be kept on disk: see
/// [`crate::output::spill`]; its JSON line is the output's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub campaign: CampaignIdx,
    pub user: UserId,
    pub at: EventTime,
    pub outcome: Outcome,
    /// Hashed ids, on `exported` and `removed` only.
    pub ids: Ids,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    Add,
    Delete,
}

/// One membership change of one user in one campaign's audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceOp {
    pub campaign: CampaignIdx,
    pub action: Action,
    pub user: UserId,
    pub ids: Ids,
}

impl AudienceOp {
    /// The op a decision implies, if any.
    pub fn from_decision(d: &Decision) -> Option<AudienceOp> {
        let action = match d.outcome {
            Outcome::Exported => Action::Add,
            Outcome::Removed => Action::Delete,
            _ => return None,
        };
        Some(AudienceOp {
            campaign: d.campaign,
            action,
            user: d.user.clone(),
            ids: d.ids,
        })
    }
}
