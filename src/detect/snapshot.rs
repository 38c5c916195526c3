//! Snapshots of per-user detect state, so a shard's users can be written out (a changelog, a
//! file) and restored into a fresh shard that then continues as if uninterrupted.
//!
//! Snapshots name properties and campaigns by name and id, not by interned index, so they stay
//! valid when the config changes: properties and campaigns that no longer exist are dropped on
//! restore. Identifiers are kept as hashes only. Timers are not stored: they are rebuilt from
//! the open windows, in deadline order.

use serde::{Deserialize, Serialize};

use super::state::CampState;
use crate::event::EventTime;

/// A stored property value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SnapValue {
    Bool(bool),
    Num(f64),
    Str(String),
    /// An array or object value (it exists, nothing compares equal to it).
    Other(Vec<()>),
}

/// A campaign's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapCampaign {
    Open(Vec<EventTime>),
    Qualified(EventTime),
    Done,
}

/// One user's detect state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSnapshot {
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<(String, SnapValue)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub campaigns: Vec<(String, SnapCampaign)>,
}

impl SnapCampaign {
    pub(crate) fn from_state(s: &CampState) -> SnapCampaign {
        match s {
            CampState::Open(w) => SnapCampaign::Open(w.to_vec()),
            CampState::Qualified { at } => SnapCampaign::Qualified(*at),
            CampState::Done => SnapCampaign::Done,
        }
    }

    pub(crate) fn to_state(&self) -> CampState {
        match self {
            SnapCampaign::Open(w) => CampState::Open(w.iter().copied().collect()),
            SnapCampaign::Qualified(at) => CampState::Qualified { at: *at },
            SnapCampaign::Done => CampState::Done,
        }
    }
}
