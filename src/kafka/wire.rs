//! What remarket writes to its internal topics, as JSON.

use serde::{Deserialize, Serialize};

use crate::detect::Ids;
use crate::identity::to_hex;

/// Key of the checkpoint record in each changelog partition.
pub const CHECKPOINT_KEY: &[u8] = b"\0checkpoint";

/// A record of the qualified topic (key: campaign id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Qualified {
    Qualification {
        campaign: String,
        user: String,
        at: i64,
        trigger_ts: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email_sha256: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        phone_sha256: Option<String>,
        /// `sync = "mirror"`: the user no longer qualifies at this run.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        leaves: bool,
    },
    Conversion {
        campaign: String,
        user: String,
        ts: i64,
        /// The goal event's `goal.revenue_prop`.
        #[serde(default, skip_serializing_if = "is_zero")]
        revenue: f64,
    },
    /// An erasure request for `user` reached detect at `ts` (one record per campaign).
    Erasure {
        campaign: String,
        user: String,
        ts: i64,
    },
    /// Detect partition `partition` (of `of`) has written every qualification and conversion
    /// with `at`/`ts <= watermark` (`idle`: its inputs are idle). Sent to every qualified
    /// partition at each checkpoint, after those records were acknowledged; activate holds
    /// records back until every detect partition's watermark passed them (exact target cap).
    Watermark {
        partition: i32,
        of: u32,
        watermark: i64,
        #[serde(default)]
        idle: bool,
    },
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Key of the watermark records on the qualified topic.
pub const WATERMARK_KEY: &[u8] = b"\0watermark";

pub fn hex_ids(ids: &Ids) -> (Option<String>, Option<String>) {
    (
        ids.email.as_ref().map(to_hex),
        ids.phone.as_ref().map(to_hex),
    )
}

pub fn parse_ids(email: &Option<String>, phone: &Option<String>) -> Ids {
    let h = |s: &Option<String>| {
        s.as_deref().and_then(|s| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(s, &mut out).ok().map(|()| out)
        })
    };
    Ids {
        email: h(email),
        phone: h(phone),
    }
}

/// One input partition's position in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputMark {
    pub topic: String,
    /// Largest event time seen (for the watermark).
    pub max_ts: Option<i64>,
    /// Next offset to consume when the checkpoint was taken: records below it were seen.
    pub consumed: i64,
}

/// The checkpoint record of a changelog partition: the state above it is exactly the effect
/// of every record with `ts <= watermark` among those below `consumed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub watermark: i64,
    pub inputs: Vec<InputMark>,
    /// The behaviour rules (`campaign#n` keys) whose figures the state holds for every record
    /// it reflects; a rule loaded later is backfilled from the input on restore. Absent in
    /// checkpoints of earlier versions: every rule loaded then counts as held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub past_rules: Option<Vec<String>>,
}
