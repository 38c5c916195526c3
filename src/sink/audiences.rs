//! Audience resolution: which TikTok audience each campaign writes to.
//!
//! - `existing` audiences are verified at start: the audience must exist for the advertiser
//!   and be of type `Partner` (only those accept mapping calls, tiktok-api.md §4.1).
//! - `new` audiences are created once, one at a time, and their ids remembered durably in an
//!   [`AudienceStore`] (a JSON file; the Kafka issue moves it to a compacted topic). TikTok
//!   allows duplicate names and every create makes a new audience, so the store records the
//!   *intent* before creating: after a crash between TikTok's answer and the store write, the
//!   next start finds the unfinished intent and adopts the newest `Partner` audience with that
//!   exact name instead of creating a second one. Every create is preceded by that lookup
//!   (`dmp/custom_audience/list/`), so fresh output folders and replicas reuse the audience.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::metrics::{Endpoint, Outcome, SinkMetrics};
use super::ratelimit::RateLimiter;
use super::retry::{Backoff, RetryAction, RetryReason};
use super::tiktok::Client;
use crate::campaign::{Audience, Campaign};

/// TikTok keeps names of up to 70 characters and cuts longer ones to 67 + "...".
pub fn tiktok_name(name: &str) -> String {
    if name.chars().count() <= 70 {
        name.to_owned()
    } else {
        let mut s: String = name.chars().take(67).collect();
        s.push_str("...");
        s
    }
}

/// Where one campaign's users go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The campaign's id (for messages).
    pub campaign: String,
    pub advertiser: String,
    pub audience_id: String,
    pub email: bool,
    pub phone: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AudienceError {
    #[error("campaign {campaign}: audience {audience} does not exist for advertiser {advertiser}")]
    NotFound {
        campaign: String,
        audience: String,
        advertiser: String,
    },
    #[error("campaign {campaign}: audience {audience} is of type {kind:?}, not Partner: only Partner audiences accept mappings")]
    NotPartner {
        campaign: String,
        audience: String,
        kind: String,
    },
    #[error("campaign {campaign}: TikTok refused {what}: code {code}: {message}")]
    Refused {
        campaign: String,
        what: &'static str,
        code: i64,
        message: String,
    },
    #[error(
        "campaign {campaign}: TikTok did not answer {what} after {attempts} attempts; last: {last}"
    )]
    Unavailable {
        campaign: String,
        what: &'static str,
        attempts: u32,
        last: String,
    },
    #[error("campaign {campaign}: audience {audience}, remembered in {store}, no longer exists at TikTok (deleted there, or a simulator restarted without its state); remove the campaign's entry from {store} to create a new audience — members already exported are not re-sent by `run`, so prefer a fresh consumer group or a replay")]
    Forgotten {
        campaign: String,
        audience: String,
        store: String,
    },
    #[error("audience store {path}: {reason}")]
    Store { path: PathBuf, reason: String },
}

/// One remembered audience.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreEntry {
    pub advertiser_id: String,
    pub name: String,
    /// `None` while a create is in flight (the intent).
    pub audience_id: Option<String>,
}

/// Writes one changed entry somewhere durable (a compacted topic in `run`).
pub type PersistFn = Box<dyn FnMut(&str, &StoreEntry) -> Result<(), String> + Send>;

/// The outcome of claiming the creation of a campaign's `new` audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This process creates it.
    Won,
    /// Another process (a replica starting at the same time) created it.
    Lost { audience_id: String },
}

/// Claims the creation of `campaign`'s audience against every other process sharing the
/// store, recording the intent durably (see `run`'s audiences topic). It returns once the
/// winner is known and, when another process won, its audience id.
pub type ClaimFn = Box<dyn FnMut(&str, &StoreEntry) -> Result<Claim, String> + Send>;

/// Campaign id → audience, persisted as JSON (atomically: temp file, fsync, rename), or
/// through a [`PersistFn`].
#[derive(Default)]
pub struct AudienceStore {
    path: Option<PathBuf>,
    entries: BTreeMap<String, StoreEntry>,
    persist: Option<PersistFn>,
    claim: Option<ClaimFn>,
    /// A remembered `new` audience TikTok no longer has is created again (replay, which sends
    /// every member anyway) instead of stopping with [`AudienceError::Forgotten`].
    recreate_forgotten: bool,
}

impl std::fmt::Debug for AudienceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudienceStore")
            .field("path", &self.path)
            .field("entries", &self.entries)
            .finish()
    }
}

impl AudienceStore {
    /// In memory only.
    pub fn ephemeral() -> AudienceStore {
        AudienceStore::default()
    }

    /// Entries loaded elsewhere, each change written through `persist` before it is used.
    pub fn with_persist(entries: BTreeMap<String, StoreEntry>, persist: PersistFn) -> Self {
        AudienceStore {
            path: None,
            entries,
            persist: Some(persist),
            claim: None,
            recreate_forgotten: false,
        }
    }

    /// A remembered audience TikTok no longer has is created again (see `recreate_forgotten`).
    pub fn recreating_forgotten(mut self) -> Self {
        self.recreate_forgotten = true;
        self
    }

    /// Where the entries live, for messages.
    fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "the audiences topic".into(),
        }
    }

    /// Shared by several processes: creations are claimed through `claim` first.
    pub fn with_claim(mut self, claim: ClaimFn) -> Self {
        self.claim = Some(claim);
        self
    }

    /// Records the intent to create `campaign`'s audience (`entry` has no id yet); with a
    /// [`ClaimFn`], only the winner of the claim creates.
    fn claim(&mut self, campaign: &str, entry: StoreEntry) -> Result<Claim, AudienceError> {
        let Some(claim) = &mut self.claim else {
            self.put(campaign, entry)?;
            return Ok(Claim::Won);
        };
        let outcome = claim(campaign, &entry).map_err(|reason| AudienceError::Store {
            path: PathBuf::from("(topic)"),
            reason,
        })?;
        self.entries.insert(campaign.to_owned(), entry);
        Ok(outcome)
    }

    /// Loads `path` if it exists.
    pub fn open(path: &Path) -> Result<AudienceStore, AudienceError> {
        let err = |reason: String| AudienceError::Store {
            path: path.to_owned(),
            reason,
        };
        let entries = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(AudienceStore {
            path: Some(path.to_owned()),
            entries,
            persist: None,
            claim: None,
            recreate_forgotten: false,
        })
    }

    pub fn get(&self, campaign: &str) -> Option<&StoreEntry> {
        self.entries.get(campaign)
    }

    pub fn entries(&self) -> &BTreeMap<String, StoreEntry> {
        &self.entries
    }

    fn put(&mut self, campaign: &str, entry: StoreEntry) -> Result<(), AudienceError> {
        if let Some(persist) = &mut self.persist {
            persist(campaign, &entry).map_err(|reason| AudienceError::Store {
                path: PathBuf::from("(topic)"),
                reason,
            })?;
        }
        self.entries.insert(campaign.to_owned(), entry);
        let Some(path) = &self.path else {
            return Ok(());
        };
        let err = |e: std::io::Error| AudienceError::Store {
            path: path.clone(),
            reason: e.to_string(),
        };
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(&self.entries).expect("serialisable");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(err)?;
            f.write_all(&bytes).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// Attempts for one start-up call before giving up (each waits per [`Backoff`]).
const SETUP_ATTEMPTS: u32 = 12;

/// Calls TikTok with rate limiting and retries; `Err` on a permanent answer or when retries
/// run out.
async fn call<F, Fut>(
    client: &Client,
    limiter: &RateLimiter,
    metrics: &SinkMetrics,
    endpoint: Endpoint,
    campaign: &str,
    what: &'static str,
    mut f: F,
) -> Result<Value, AudienceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = RetryAction>,
{
    let backoff = Backoff::default();
    let mut rng = fastrand::Rng::new();
    for attempt in 0..SETUP_ATTEMPTS {
        let slot = limiter.acquire().await;
        let answer = f().await;
        drop(slot);
        match &answer {
            RetryAction::Retry(RetryReason::Throttled) => limiter.throttled(),
            RetryAction::Retry(_) => {}
            _ => limiter.succeeded(),
        }
        match answer {
            RetryAction::Ok(data) => {
                metrics.request(endpoint, Outcome::Ok);
                return Ok(data);
            }
            RetryAction::Retry(reason) => {
                metrics.request(endpoint, outcome_of(reason));
                tokio::time::sleep(backoff.delay(attempt, reason, &mut rng)).await;
            }
            RetryAction::Split => {
                metrics.request(endpoint, Outcome::Permanent);
                return Err(AudienceError::Refused {
                    campaign: campaign.to_owned(),
                    what,
                    code: 40011,
                    message: "too many ids".into(),
                });
            }
            RetryAction::Permanent { code, message } => {
                metrics.request(endpoint, Outcome::Permanent);
                return Err(AudienceError::Refused {
                    campaign: campaign.to_owned(),
                    what,
                    code,
                    message,
                });
            }
        }
    }
    Err(AudienceError::Unavailable {
        campaign: campaign.to_owned(),
        what,
        attempts: SETUP_ATTEMPTS,
        last: client.last_retry().unwrap_or_else(|| "no answer".into()),
    })
}

pub(crate) fn outcome_of(reason: RetryReason) -> Outcome {
    match reason {
        RetryReason::Throttled => Outcome::Throttled,
        RetryReason::NotReady => Outcome::NotReady,
        RetryReason::Server => Outcome::Server,
        RetryReason::Transport => Outcome::Transport,
    }
}

/// The type TikTok reports for an audience in `get/` (`type`) or `list/` (`audience_type`).
fn audience_type(details: &Value) -> String {
    details
        .get("type")
        .or_else(|| details.get("audience_type"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// Verifies that `audience` exists for `advertiser` and is a Partner audience.
async fn verify(
    client: &Client,
    limiter: &RateLimiter,
    metrics: &SinkMetrics,
    campaign: &str,
    advertiser: &str,
    audience: &str,
) -> Result<(), AudienceError> {
    let not_found = || AudienceError::NotFound {
        campaign: campaign.to_owned(),
        audience: audience.to_owned(),
        advertiser: advertiser.to_owned(),
    };
    let data = match call(
        client,
        limiter,
        metrics,
        Endpoint::Get,
        campaign,
        "get",
        || client.get_audience(advertiser, audience),
    )
    .await
    {
        Ok(d) => d,
        Err(AudienceError::Refused {
            code: 40002 | 40007,
            ..
        }) => return Err(not_found()),
        Err(e) => return Err(e),
    };
    let details = data
        .get("list")
        .and_then(|l| l.get(0))
        .and_then(|x| x.get("audience_details"))
        .ok_or_else(not_found)?;
    let kind = audience_type(details);
    if kind != "Partner" {
        return Err(AudienceError::NotPartner {
            campaign: campaign.to_owned(),
            audience: audience.to_owned(),
            kind,
        });
    }
    Ok(())
}

/// The size TikTok reports for `target`'s audience (`cover_num` of `get/`: matched users,
/// 0 below 1,000).
pub async fn audience_size(
    client: &Client,
    limiter: &RateLimiter,
    metrics: &SinkMetrics,
    target: &Target,
) -> Result<u64, AudienceError> {
    let data = call(
        client,
        limiter,
        metrics,
        Endpoint::Get,
        &target.campaign,
        "get",
        || client.get_audience(&target.advertiser, &target.audience_id),
    )
    .await?;
    Ok(data
        .get("list")
        .and_then(|l| l.get(0))
        .and_then(|x| x.get("audience_details"))
        .and_then(|d| d.get("cover_num"))
        .and_then(Value::as_u64)
        .unwrap_or(0))
}

/// How often TikTok is asked for an audience's size (DESIGN §9: at most hourly; TikTok
/// itself refreshes it every 24–48 hours).
pub const SIZE_EVERY_MS: i64 = 3_600_000;

/// Each target's size (`None` where TikTok did not answer; the reason is logged).
pub async fn audience_sizes(
    client: &Client,
    limiter: &RateLimiter,
    metrics: &SinkMetrics,
    targets: &[Target],
) -> Vec<Option<u64>> {
    let mut sizes = Vec::with_capacity(targets.len());
    for t in targets {
        sizes.push(match audience_size(client, limiter, metrics, t).await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(campaign = %t.campaign, error = %e, "audience size not known");
                None
            }
        });
    }
    sizes
}

/// The newest Partner audience of `advertiser` named exactly `name`, if any.
async fn find_by_name(
    client: &Client,
    limiter: &RateLimiter,
    metrics: &SinkMetrics,
    campaign: &str,
    advertiser: &str,
    name: &str,
) -> Result<Option<String>, AudienceError> {
    let all = partner_audiences(client, limiter, metrics, campaign, advertiser).await?;
    // `list/` is oldest first: the last match is the newest.
    Ok((all.iter().rev())
        .find(|a| a.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|a| a.get("audience_id")?.as_str().map(str::to_owned)))
}

/// Every Partner audience of `advertiser` (`list/`'s entries, oldest first, all pages);
/// `label` names the asker in errors and metrics (a campaign id).
pub async fn partner_audiences(
    client: &Client,
    limiter: &RateLimiter,
    metrics: &SinkMetrics,
    label: &str,
    advertiser: &str,
) -> Result<Vec<Value>, AudienceError> {
    let mut found = Vec::new();
    let mut page = 1u32;
    loop {
        let data = call(
            client,
            limiter,
            metrics,
            Endpoint::List,
            label,
            "list",
            || client.list_audiences(advertiser, page),
        )
        .await?;
        let empty = Vec::new();
        let list = data.get("list").and_then(Value::as_array).unwrap_or(&empty);
        found.extend(
            list.iter()
                .filter(|a| audience_type(a) == "Partner")
                .cloned(),
        );
        let total_pages = data
            .get("page_info")
            .and_then(|p| p.get("total_page"))
            .and_then(Value::as_u64)
            .unwrap_or(1);
        if u64::from(page) >= total_pages || list.is_empty() {
            return Ok(found);
        }
        page += 1;
    }
}

/// Resolves every campaign's audience, in campaign order, one call at a time.
pub async fn resolve(
    client: &Client,
    limiter: &RateLimiter,
    metrics: &SinkMetrics,
    campaigns: &[Campaign],
    store: &mut AudienceStore,
) -> Result<Vec<Target>, AudienceError> {
    let mut targets = Vec::with_capacity(campaigns.len());
    for c in campaigns {
        let advertiser = c.ad_account.as_str();
        let audience_id = match &c.what.audience {
            Audience::Existing(id) => {
                verify(client, limiter, metrics, &c.id, advertiser, id).await?;
                id.clone()
            }
            Audience::New { name, .. } => {
                let name = tiktok_name(name);
                let mut entry = store.get(&c.id).cloned();
                if let Some(StoreEntry {
                    audience_id: Some(id),
                    advertiser_id,
                    ..
                }) = &entry
                {
                    if advertiser_id == advertiser {
                        match verify(client, limiter, metrics, &c.id, advertiser, id).await {
                            Ok(()) => {}
                            Err(AudienceError::NotFound { .. }) if store.recreate_forgotten => {
                                tracing::warn!(campaign = %c.id, audience = %id, store = %store.describe(), "the remembered audience no longer exists at TikTok (deleted, or a simulator restarted without its state): creating a new one, every member is sent again");
                                entry = None;
                            }
                            Err(AudienceError::NotFound { .. }) => {
                                return Err(AudienceError::Forgotten {
                                    campaign: c.id.clone(),
                                    audience: id.clone(),
                                    store: store.describe(),
                                });
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                match entry {
                    Some(StoreEntry {
                        audience_id: Some(id),
                        advertiser_id,
                        ..
                    }) if advertiser_id == advertiser => id,
                    entry => {
                        // Creating is idempotent by name: a fresh output folder, another
                        // replica or an interrupted start finds the Partner audience that
                        // exists under the campaign's name instead of making a second one.
                        let interrupted = entry.is_some_and(|e| e.audience_id.is_none());
                        let adopted =
                            find_by_name(client, limiter, metrics, &c.id, advertiser, &name)
                                .await?;
                        let id = match adopted {
                            Some(id) => {
                                if interrupted {
                                    tracing::info!(campaign = %c.id, audience = %id, "adopted the audience an interrupted start created");
                                } else {
                                    tracing::info!(campaign = %c.id, audience = %id, "adopted the existing audience of the same name");
                                }
                                id
                            }
                            None => {
                                let intent = StoreEntry {
                                    advertiser_id: advertiser.to_owned(),
                                    name: name.clone(),
                                    audience_id: None,
                                };
                                if let Claim::Lost { audience_id } = store.claim(&c.id, intent)? {
                                    tracing::info!(campaign = %c.id, audience = %audience_id, "another replica created the audience");
                                    verify(
                                        client,
                                        limiter,
                                        metrics,
                                        &c.id,
                                        advertiser,
                                        &audience_id,
                                    )
                                    .await?;
                                    audience_id
                                } else {
                                    let data = call(
                                        client,
                                        limiter,
                                        metrics,
                                        Endpoint::Audience,
                                        &c.id,
                                        "audience create",
                                        || client.create_audience(advertiser, &name),
                                    )
                                    .await?;
                                    let id = data
                                        .get("audience_id")
                                        .and_then(|v| {
                                            v.as_str()
                                                .map(str::to_owned)
                                                .or_else(|| v.as_u64().map(|n| n.to_string()))
                                        })
                                        .ok_or_else(|| AudienceError::Refused {
                                            campaign: c.id.clone(),
                                            what: "audience create",
                                            code: 0,
                                            message: "no audience_id in the answer".into(),
                                        })?;
                                    tracing::info!(campaign = %c.id, audience = %id, "created audience");
                                    id
                                }
                            }
                        };
                        store.put(
                            &c.id,
                            StoreEntry {
                                advertiser_id: advertiser.to_owned(),
                                name,
                                audience_id: Some(id.clone()),
                            },
                        )?;
                        id
                    }
                }
            }
        };
        targets.push(Target {
            campaign: c.id.clone(),
            advertiser: advertiser.to_owned(),
            audience_id,
            email: c.what.identifiers.email,
            phone: c.what.identifiers.phone,
        });
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_like_tiktok_does() {
        assert_eq!(tiktok_name("short"), "short");
        let long = "x".repeat(71);
        let cut = tiktok_name(&long);
        assert_eq!(cut.chars().count(), 70);
        assert!(cut.ends_with("..."));
        assert_eq!(tiktok_name(&"y".repeat(70)), "y".repeat(70));
    }

    #[test]
    fn store_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audiences.json");
        let mut s = AudienceStore::open(&path).unwrap();
        let e = StoreEntry {
            advertiser_id: "1".into(),
            name: "n".into(),
            audience_id: Some("42".into()),
        };
        s.put("c", e.clone()).unwrap();
        assert_eq!(AudienceStore::open(&path).unwrap().get("c"), Some(&e));
        assert!(!path.with_extension("json.tmp").exists());
    }
}
