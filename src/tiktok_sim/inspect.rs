//! The `/sim/` inspection and control API and the public types it returns.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /sim/audiences` | JSON array of [`AudienceInfo`] in creation order |
//! | `POST /sim/audiences` | body [`AudienceSeed`]: inserts an audience of any type (e.g. a `"Customer File Audience"` to test the Partner-only rule); answers its [`AudienceInfo`] |
//! | `GET /sim/audiences/{audience_id}/members` | JSON array of [`Member`], sorted; 404 if unknown |
//! | `GET /sim/requests` | JSON array of [`RequestLog`], oldest first |
//! | `GET /sim/faults` | the current fault spec as text |
//! | `POST /sim/faults` | body: a fault spec (text); replaces the plan; 400 with `{"error"}` if invalid |
//!
//! `/sim/` requests bypass auth, throttling and faults and are not logged.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::state::AudienceSeed;
use super::Simulator;

/// The six `id_schema` values of `/segment/mapping/` (tiktok-api.md §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdType {
    EmailSha256,
    PhoneSha256,
    IdfaSha256,
    IdfaMd5,
    AaidSha256,
    AaidMd5,
}

impl IdType {
    pub const ALL: [IdType; 6] = [
        IdType::EmailSha256,
        IdType::PhoneSha256,
        IdType::IdfaSha256,
        IdType::IdfaMd5,
        IdType::AaidSha256,
        IdType::AaidMd5,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IdType::EmailSha256 => "EMAIL_SHA256",
            IdType::PhoneSha256 => "PHONE_SHA256",
            IdType::IdfaSha256 => "IDFA_SHA256",
            IdType::IdfaMd5 => "IDFA_MD5",
            IdType::AaidSha256 => "AAID_SHA256",
            IdType::AaidMd5 => "AAID_MD5",
        }
    }

    /// Case-insensitive, as TikTok accepts lowercase enum values (§4.2).
    pub fn parse(name: &str) -> Option<IdType> {
        IdType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }

    /// Length of the lowercase hex digest: 64 for SHA-256, 32 for MD5.
    pub fn hex_len(self) -> usize {
        match self {
            IdType::IdfaMd5 | IdType::AaidMd5 => 32,
            _ => 64,
        }
    }
}

impl std::fmt::Display for IdType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audience as `/sim/audiences` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceInfo {
    pub advertiser_id: String,
    pub audience_id: String,
    pub name: String,
    /// `"Partner"` for audiences made through `/segment/audience/`.
    #[serde(rename = "type")]
    pub audience_type: String,
    pub member_count: usize,
}

/// One member of an audience.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Member {
    pub id_type: IdType,
    pub id: String,
}

/// One request to a TikTok path (known or not), as the simulator saw and answered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLog {
    /// Arrival, in ms since the simulator was created (`tokio::time::Instant`).
    pub at_ms: u64,
    pub method: String,
    pub path: String,
    /// Advertiser ids the request named (best effort, also for rejected requests).
    pub advertiser_ids: Vec<String>,
    /// The body's `action`, as sent.
    pub action: Option<String>,
    /// `batch_data` rows (mapping requests), else 0.
    pub rows: usize,
    /// `None` when the connection was reset without a response.
    pub http_status: Option<u16>,
    /// The envelope's `code`; `None` for non-JSON answers (404, HTML 5xx, reset).
    pub code: Option<i64>,
    pub message: Option<String>,
    /// The injected fault, e.g. `"50002"`, `"http504"`, `"reset"`, `"latency=2s"`.
    pub fault: Option<String>,
    pub request_id: Option<String>,
}

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/sim/audiences", get(audiences).post(add_audience))
        .route("/sim/audiences/{audience_id}/members", get(members))
        .route("/sim/requests", get(requests))
        .route("/sim/faults", get(faults).post(set_faults))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

async fn audiences(State(sim): State<Simulator>) -> Json<Vec<AudienceInfo>> {
    Json(sim.audiences())
}

async fn add_audience(State(sim): State<Simulator>, body: Bytes) -> Response {
    let seed: AudienceSeed = match serde_json::from_slice(&body) {
        Ok(seed) => seed,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad audience: {e}")),
    };
    match sim.add_audience(seed) {
        Ok(info) => Json(info).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn members(State(sim): State<Simulator>, Path(audience_id): Path<String>) -> Response {
    match sim.members(&audience_id) {
        Some(m) => Json(m).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no audience {audience_id}")),
    }
}

async fn requests(State(sim): State<Simulator>) -> Json<Vec<RequestLog>> {
    Json(sim.requests())
}

async fn faults(State(sim): State<Simulator>) -> String {
    sim.faults()
}

async fn set_faults(State(sim): State<Simulator>, body: String) -> Response {
    match sim.set_faults(&body) {
        Ok(()) => Json(json!({ "faults": sim.faults() })).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}
