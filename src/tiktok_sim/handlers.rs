//! The TikTok endpoints: routing, the common request pipeline and the request log.
//!
//! Pipeline for every request to a TikTok endpoint (first failure wins, none changes state):
//! 1. fault decision (latency is slept, then a faulted request is answered as injected);
//! 2. `Access-Token` header: missing or empty → 40104, unknown → 40105;
//! 3. app QPS → 40100;
//! 4. advertiser id(s) read from the body or query → 40002 if absent or malformed;
//! 5. every advertiser linked to the token → else 40001;
//! 6. advertiser QPS → 40133 (only now is the request recorded in the QPS windows);
//! 7. endpoint validation (40002, 40011) and state checks (ownership, type, not-ready);
//! 8. the change is applied.
//!
//! Steps 2–8 run synchronously under the state mutex, so a request is applied atomically and no
//! lock is held across an `.await`. Unknown paths (including a path without its trailing
//! slash) get HTTP 404 and a wrong method HTTP 405, both with plain-text bodies, as a gateway
//! would answer.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::time::Instant;

use super::envelope::{self, codes, ApiError};
use super::faults::Outcome;
use super::net::Conn;
use super::throttle::Throttled;
use super::{advertiser, dmp, inspect, segment, Inner, RequestLog, Simulator};

/// Request bodies above this get HTTP 413 (TikTok's own limit is not documented; 10,000 rows
/// of six SHA-256 ids fit well within it).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The simulated TikTok endpoints; also the scopes of fault clauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `POST /open_api/v1.3/segment/audience/`
    SegmentAudience,
    /// `POST /open_api/v1.3/segment/mapping/`
    Mapping,
    /// `GET /open_api/v1.3/dmp/custom_audience/get/`
    Get,
    /// `GET /open_api/v1.3/dmp/custom_audience/list/`
    List,
    /// `GET /open_api/v1.3/advertiser/info/`
    AdvertiserInfo,
}

impl Endpoint {
    /// The name used in fault specs (`script@mapping:...`).
    pub fn from_scope_name(name: &str) -> Option<Endpoint> {
        match name {
            "audience" => Some(Endpoint::SegmentAudience),
            "mapping" => Some(Endpoint::Mapping),
            "get" => Some(Endpoint::Get),
            "list" => Some(Endpoint::List),
            "advertiser" => Some(Endpoint::AdvertiserInfo),
            _ => None,
        }
    }
}

/// What a request carried: a JSON body (or why it is not JSON) or query parameters.
pub(crate) enum Input {
    Body(Result<Value, String>),
    Query(HashMap<String, String>),
}

impl Input {
    fn body(bytes: &Bytes) -> Input {
        Input::Body(serde_json::from_slice(bytes).map_err(|e| e.to_string()))
    }

    /// The JSON object body, or 40002.
    pub fn json(&self) -> Result<&Value, ApiError> {
        match self {
            Input::Body(Ok(v)) if v.is_object() => Ok(v),
            Input::Body(Ok(_)) => Err(ApiError::param("request body must be a JSON object")),
            Input::Body(Err(e)) => Err(ApiError::param(format!("request body is not JSON: {e}"))),
            Input::Query(_) => Err(ApiError::param("request body expected")),
        }
    }

    /// The query parameters, or 40002 for a body request.
    pub fn query(&self) -> Result<&HashMap<String, String>, ApiError> {
        match self {
            Input::Query(q) => Ok(q),
            Input::Body(_) => Err(ApiError::param("query parameters expected")),
        }
    }

    /// Best-effort facts for the request log, whatever the request's fate.
    fn log_facts(&self, ep: Endpoint) -> (Vec<String>, Option<String>, usize) {
        let advertisers = advertisers(ep, self).unwrap_or_default();
        match self {
            Input::Body(Ok(v)) => {
                let action = v.get("action").and_then(Value::as_str).map(str::to_owned);
                let rows = v
                    .get("batch_data")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                (advertisers, action, rows)
            }
            _ => (advertisers, None, 0),
        }
    }
}

/// The advertiser ids a request acts for (step 4).
fn advertisers(ep: Endpoint, input: &Input) -> Result<Vec<String>, ApiError> {
    match ep {
        Endpoint::SegmentAudience => segment::audience_advertiser(input.json()?),
        Endpoint::Mapping => segment::mapping_advertisers(input.json()?),
        Endpoint::Get | Endpoint::List => dmp::query_advertiser(input.query()?),
        Endpoint::AdvertiserInfo => advertiser::query_advertisers(input.query()?),
    }
}

pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .route("/open_api/v1.3/segment/audience/", post(segment_audience))
        .route("/open_api/v1.3/segment/mapping/", post(segment_mapping))
        .route("/open_api/v1.3/dmp/custom_audience/get/", get(dmp_get))
        .route("/open_api/v1.3/dmp/custom_audience/list/", get(dmp_list))
        .route("/open_api/v1.3/advertiser/info/", get(advertiser_info))
        .merge(inspect::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(sim)
}

async fn segment_audience(
    State(sim): State<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = Input::body(&body);
    call(sim, conn, Endpoint::SegmentAudience, &headers, input).await
}

async fn segment_mapping(
    State(sim): State<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let input = Input::body(&body);
    call(sim, conn, Endpoint::Mapping, &headers, input).await
}

async fn dmp_get(
    State(sim): State<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    call(sim, conn, Endpoint::Get, &headers, Input::Query(query)).await
}

async fn dmp_list(
    State(sim): State<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    call(sim, conn, Endpoint::List, &headers, Input::Query(query)).await
}

async fn advertiser_info(
    State(sim): State<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let input = Input::Query(query);
    call(sim, conn, Endpoint::AdvertiserInfo, &headers, input).await
}

async fn not_found(State(sim): State<Simulator>, method: Method, uri: Uri) -> Response {
    log_plain(&sim, &method, &uri, StatusCode::NOT_FOUND);
    (StatusCode::NOT_FOUND, "404 page not found").into_response()
}

async fn method_not_allowed(State(sim): State<Simulator>, method: Method, uri: Uri) -> Response {
    log_plain(&sim, &method, &uri, StatusCode::METHOD_NOT_ALLOWED);
    (StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed").into_response()
}

/// Logs a request to an unknown path or with a wrong method (`/sim/` typos excepted).
fn log_plain(sim: &Simulator, method: &Method, uri: &Uri, status: StatusCode) {
    if uri.path().starts_with("/sim/") {
        return;
    }
    let at_ms = sim.elapsed_ms();
    sim.lock().push_log(RequestLog {
        at_ms,
        method: method.to_string(),
        path: uri.path().to_owned(),
        advertiser_ids: Vec::new(),
        action: None,
        rows: 0,
        http_status: Some(status.as_u16()),
        code: None,
        message: None,
        fault: None,
        request_id: None,
    });
}

fn path_of(ep: Endpoint) -> &'static str {
    match ep {
        Endpoint::SegmentAudience => "/open_api/v1.3/segment/audience/",
        Endpoint::Mapping => "/open_api/v1.3/segment/mapping/",
        Endpoint::Get => "/open_api/v1.3/dmp/custom_audience/get/",
        Endpoint::List => "/open_api/v1.3/dmp/custom_audience/list/",
        Endpoint::AdvertiserInfo => "/open_api/v1.3/advertiser/info/",
    }
}

/// Steps 1–8 for one request, plus its log entry.
async fn call(
    sim: Simulator,
    conn: Conn,
    ep: Endpoint,
    headers: &HeaderMap,
    input: Input,
) -> Response {
    let at_ms = sim.elapsed_ms();
    let decision = sim.lock().faults.decide(ep);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    let token = headers
        .get("access-token")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let (advertiser_ids, action, rows) = input.log_facts(ep);
    let request_id = envelope::next_request_id();

    let (response, http_status, result) = match decision.outcome {
        Some(Outcome::Reset) => {
            conn.reset();
            (
                StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                None,
                None,
            )
        }
        Some(Outcome::Http(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::GATEWAY_TIMEOUT);
            (envelope::html_error(status), Some(status.as_u16()), None)
        }
        Some(Outcome::Code(code)) => {
            let result = Err(ApiError::new(code, envelope::message_for(code)));
            (
                envelope::envelope(&result, &request_id),
                Some(200),
                Some(result),
            )
        }
        None => {
            let now = Instant::now();
            let outcome = process(&mut sim.lock(), &sim, now, ep, token, &input);
            if matches!(outcome, Ok((_, true))) {
                sim.state_changed();
            }
            let result = outcome.map(|(data, _)| data);
            (
                envelope::envelope(&result, &request_id),
                Some(200),
                Some(result),
            )
        }
    };
    let (code, message) = match &result {
        Some(Ok(_)) => (Some(codes::OK), Some("OK".to_owned())),
        Some(Err(e)) => (Some(e.code), Some(e.message.clone())),
        None => (None, None),
    };
    sim.lock().push_log(RequestLog {
        at_ms,
        method: if matches!(
            ep,
            Endpoint::Get | Endpoint::List | Endpoint::AdvertiserInfo
        ) {
            "GET"
        } else {
            "POST"
        }
        .to_owned(),
        path: path_of(ep).to_owned(),
        advertiser_ids,
        action,
        rows,
        http_status,
        code,
        message,
        fault: decision.label,
        request_id: result.is_some().then_some(request_id),
    });
    response
}

/// Steps 2–8, under the lock. Returns the data and whether state changed.
fn process(
    inner: &mut Inner,
    sim: &Simulator,
    now: Instant,
    ep: Endpoint,
    token: Option<&str>,
    input: &Input,
) -> Result<(Value, bool), ApiError> {
    let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::new(
            codes::TOKEN_EMPTY,
            "Access token is null, you should set it in http header with key Access-Token.",
        )
    })?;
    let allowed = inner.registry.advertisers_of(token).ok_or_else(|| {
        ApiError::new(
            codes::TOKEN_INVALID,
            "Access token is incorrect or has been revoked.",
        )
    })?;
    let allowed = allowed.to_vec();
    inner.throttle.check_app(now).map_err(throttled)?;
    let advertisers = advertisers(ep, input)?;
    if let Some(denied) = advertisers.iter().find(|a| !allowed.contains(a)) {
        return Err(ApiError::new(
            codes::NO_PERMISSION,
            format!("No permission to operate advertiser {denied}"),
        ));
    }
    inner.throttle.admit(now, &advertisers).map_err(throttled)?;
    let registry = &mut inner.registry;
    match ep {
        Endpoint::SegmentAudience => {
            let ready_at = sim.not_ready_for().map(|d| now + d);
            segment::audience(registry, input.json()?, ready_at)
        }
        Endpoint::Mapping => segment::mapping(registry, input.json()?, now),
        Endpoint::Get => Ok((dmp::get(registry, input.query()?, now)?, false)),
        Endpoint::List => Ok((dmp::list(registry, input.query()?, now)?, false)),
        Endpoint::AdvertiserInfo => Ok((advertiser::info(input.query()?)?, false)),
    }
}

fn throttled(t: Throttled) -> ApiError {
    match t {
        Throttled::App => ApiError::new(codes::APP_QPS, "Requests made too frequently"),
        Throttled::Advertiser {
            advertiser_id,
            current,
            limit,
        } => ApiError::new(
            codes::ADVERTISER_QPS,
            format!(
                "Advertiser ({advertiser_id})'s QPS ({current}) reaches QPS limit ({limit}) \
                 for current path"
            ),
        ),
    }
}
