//! The simulator's data: tokens, audiences and their members, plus the JSON snapshot format.
//!
//! Invariants:
//! - an audience id is unique across advertisers and never reused (ids come from a counter that
//!   is persisted and moved past every pre-existing id);
//! - members are a set of `(id_type, id)` pairs (adds are idempotent, deletes of absent ids are
//!   no-ops), kept sorted;
//! - at most [`MAX_AUDIENCES_PER_ADVERTISER`] audiences per advertiser (tiktok-api.md §6).
//!
//! Tokens are never part of a snapshot or of any error text.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::envelope::ApiError;
use super::{AudienceInfo, IdType, Member};

/// "Audiences per ad account: 400" (tiktok-api.md §6).
pub(crate) const MAX_AUDIENCES_PER_ADVERTISER: usize = 400;
/// The type every `/segment/audience/` create gets (tiktok-api.md §4.1).
pub(crate) const PARTNER: &str = "Partner";
const MULTIPLE_TYPES: &str = "MULTIPLE_TYPES";
/// First id handed out; ten digits, like the ids in Segment's fixtures.
const FIRST_AUDIENCE_ID: u64 = 1_700_000_001;
/// History entries kept per audience (oldest dropped first).
const HISTORY_CAP: usize = 100;

/// One `audience_history` row of `dmp/custom_audience/get/`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HistoryEntry {
    pub action: String,
    pub action_detail: String,
    pub editor: String,
    pub msg: String,
    pub opt_time: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Audience {
    pub advertiser_id: String,
    pub audience_id: String,
    pub name: String,
    pub audience_type: String,
    pub calculate_type: String,
    /// Unix seconds of creation (for `create_time` / `expired_time`).
    pub created_unix: i64,
    /// Creation order, for listing.
    pub seq: u64,
    /// Mappings are rejected before this instant (`--not-ready-for`).
    pub ready_at: Option<Instant>,
    pub members: BTreeSet<(IdType, String)>,
    pub history: VecDeque<HistoryEntry>,
}

impl Audience {
    pub fn is_ready(&self, now: Instant) -> bool {
        self.ready_at.is_none_or(|t| now >= t)
    }

    pub fn info(&self) -> AudienceInfo {
        AudienceInfo {
            advertiser_id: self.advertiser_id.clone(),
            audience_id: self.audience_id.clone(),
            name: self.name.clone(),
            audience_type: self.audience_type.clone(),
            member_count: self.members.len(),
        }
    }

    pub fn push_history(&mut self, action: &str, detail: String) {
        if self.history.len() == HISTORY_CAP {
            self.history.pop_front();
        }
        self.history.push_back(HistoryEntry {
            action: action.to_owned(),
            action_detail: detail,
            editor: "open_api".to_owned(),
            msg: String::new(),
            opt_time: format_time(unix_now()),
        });
    }
}

/// An audience to insert directly (pre-existing audiences, `POST /sim/audiences`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceSeed {
    pub advertiser_id: String,
    /// `None` allocates the next id.
    #[serde(default)]
    pub audience_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Audience type as TikTok names it (§3.4), e.g. `"Partner"`, `"Customer File Audience"`.
    #[serde(rename = "type", default = "partner")]
    pub audience_type: String,
}

fn partner() -> String {
    PARTNER.to_owned()
}

pub(crate) struct Registry {
    tokens: HashMap<String, Vec<String>>,
    audiences: HashMap<String, Audience>,
    next_id: u64,
    next_seq: u64,
}

impl Registry {
    pub fn new(tokens: &[(String, Vec<String>)]) -> Registry {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (token, advertisers) in tokens {
            let entry = map.entry(token.clone()).or_default();
            for a in advertisers {
                if !entry.contains(a) {
                    entry.push(a.clone());
                }
            }
        }
        Registry {
            tokens: map,
            audiences: HashMap::new(),
            next_id: FIRST_AUDIENCE_ID,
            next_seq: 0,
        }
    }

    /// The advertisers a token may act for; `None` for an unknown token.
    pub fn advertisers_of(&self, token: &str) -> Option<&[String]> {
        self.tokens.get(token).map(Vec::as_slice)
    }

    pub fn get(&self, audience_id: &str) -> Option<&Audience> {
        self.audiences.get(audience_id)
    }

    pub fn get_mut(&mut self, audience_id: &str) -> Option<&mut Audience> {
        self.audiences.get_mut(audience_id)
    }

    /// Audiences in creation order.
    pub fn ordered(&self) -> Vec<&Audience> {
        let mut all: Vec<&Audience> = self.audiences.values().collect();
        all.sort_by_key(|a| a.seq);
        all
    }

    fn allocate_id(&mut self) -> String {
        loop {
            let id = self.next_id.to_string();
            self.next_id += 1;
            if !self.audiences.contains_key(&id) {
                return id;
            }
        }
    }

    /// Inserts an audience (any type). Fails on a duplicate id or the per-advertiser cap.
    pub fn insert(
        &mut self,
        seed: AudienceSeed,
        ready_at: Option<Instant>,
    ) -> Result<String, ApiError> {
        let owned = self
            .audiences
            .values()
            .filter(|a| a.advertiser_id == seed.advertiser_id)
            .count();
        if owned >= MAX_AUDIENCES_PER_ADVERTISER {
            return Err(ApiError::param(format!(
                "the advertiser already has {MAX_AUDIENCES_PER_ADVERTISER} audiences"
            )));
        }
        let audience_id = match seed.audience_id {
            Some(id) if self.audiences.contains_key(&id) => {
                return Err(ApiError::param(format!("audience {id} already exists")));
            }
            Some(id) => {
                if let Ok(n) = id.parse::<u64>() {
                    self.next_id = self.next_id.max(n.saturating_add(1));
                }
                id
            }
            None => self.allocate_id(),
        };
        let calculate_type = if seed.audience_type == PARTNER {
            MULTIPLE_TYPES
        } else {
            "EMAIL_SHA256"
        };
        let mut audience = Audience {
            advertiser_id: seed.advertiser_id,
            name: seed
                .name
                .unwrap_or_else(|| format!("audience {audience_id}")),
            audience_id: audience_id.clone(),
            audience_type: seed.audience_type,
            calculate_type: calculate_type.to_owned(),
            created_unix: unix_now(),
            seq: self.next_seq,
            ready_at,
            members: BTreeSet::new(),
            history: VecDeque::new(),
        };
        self.next_seq += 1;
        audience.push_history("Create", format!("Create audience {}", audience.name));
        self.audiences.insert(audience_id.clone(), audience);
        Ok(audience_id)
    }

    pub fn remove(&mut self, audience_id: &str) -> Option<Audience> {
        self.audiences.remove(audience_id)
    }

    pub fn infos(&self) -> Vec<AudienceInfo> {
        self.ordered().into_iter().map(Audience::info).collect()
    }

    pub fn members(&self, audience_id: &str) -> Option<Vec<Member>> {
        self.audiences.get(audience_id).map(|a| {
            a.members
                .iter()
                .map(|(id_type, id)| Member {
                    id_type: *id_type,
                    id: id.clone(),
                })
                .collect()
        })
    }

    // === snapshots ===

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            version: 1,
            next_audience_id: self.next_id,
            audiences: self
                .ordered()
                .into_iter()
                .map(|a| SnapshotAudience {
                    advertiser_id: a.advertiser_id.clone(),
                    audience_id: a.audience_id.clone(),
                    name: a.name.clone(),
                    audience_type: a.audience_type.clone(),
                    calculate_type: a.calculate_type.clone(),
                    created_unix: a.created_unix,
                    members: self.members(&a.audience_id).unwrap_or_default(),
                    history: a.history.iter().cloned().collect(),
                })
                .collect(),
        }
    }

    /// Replaces the audiences with a snapshot's. Restored audiences are ready at once.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.audiences.clear();
        self.next_id = snapshot.next_audience_id.max(FIRST_AUDIENCE_ID);
        for a in snapshot.audiences {
            if let Ok(n) = a.audience_id.parse::<u64>() {
                self.next_id = self.next_id.max(n.saturating_add(1));
            }
            let audience = Audience {
                advertiser_id: a.advertiser_id,
                audience_id: a.audience_id.clone(),
                name: a.name,
                audience_type: a.audience_type,
                calculate_type: a.calculate_type,
                created_unix: a.created_unix,
                seq: self.next_seq,
                ready_at: None,
                members: a.members.into_iter().map(|m| (m.id_type, m.id)).collect(),
                history: a.history.into(),
            };
            self.next_seq += 1;
            self.audiences.insert(a.audience_id, audience);
        }
    }
}

/// The `--state-file` format: audiences and members, never tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub version: u32,
    pub next_audience_id: u64,
    pub audiences: Vec<SnapshotAudience>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotAudience {
    pub advertiser_id: String,
    pub audience_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub audience_type: String,
    pub calculate_type: String,
    pub created_unix: i64,
    pub members: Vec<Member>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

/// Names over 70 characters are cut to 67 plus "..." (tiktok-api.md §4.1).
pub(crate) fn truncate_name(name: &str) -> String {
    if name.chars().count() > 70 {
        let mut cut: String = name.chars().take(67).collect();
        cut.push_str("...");
        cut
    } else {
        name.to_owned()
    }
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

/// TikTok's `"YYYY-MM-DD HH:MM:SS"` (UTC).
pub(crate) fn format_time(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_over_70_chars_are_cut_to_67_plus_dots() {
        let seventy = "n".repeat(70);
        assert_eq!(truncate_name(&seventy), seventy);
        let long = "é".repeat(71);
        let cut = truncate_name(&long);
        assert_eq!(cut.chars().count(), 70);
        assert!(cut.ends_with("..."));
        assert_eq!(&cut[..cut.len() - 3], "é".repeat(67));
    }

    #[test]
    fn times_use_tiktok_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
    }

    #[test]
    fn ids_skip_pre_existing_ones_and_snapshots_round_trip() {
        let mut r = Registry::new(&[]);
        let seed = |id: Option<&str>| AudienceSeed {
            advertiser_id: "1".into(),
            audience_id: id.map(str::to_owned),
            name: None,
            audience_type: PARTNER.into(),
        };
        r.insert(seed(Some("1700000005")), None).unwrap();
        let next = r.insert(seed(None), None).unwrap();
        assert_eq!(next, "1700000006");
        assert!(r.insert(seed(Some("1700000005")), None).is_err());
        r.get_mut(&next)
            .unwrap()
            .members
            .insert((IdType::EmailSha256, "ab".into()));
        let mut back = Registry::new(&[]);
        back.restore(serde_json::from_str(&serde_json::to_string(&r.snapshot()).unwrap()).unwrap());
        assert_eq!(back.infos(), r.infos());
        assert_eq!(back.members(&next), r.members(&next));
        assert_eq!(back.insert(seed(None), None).unwrap(), "1700000007");
    }
}
