//! The admin API (DESIGN §9): campaigns and segments under `/api/v1`, JSON, behind a bearer
//! token compared in constant time. Mounted on the admin listener beside `/metrics`,
//! `/healthz` and `/readyz` (which stay open).
//!
//! The API owns no state of its own: it reads and changes a [`Store`], and every change is
//! first written through the injected [`Persist`] (in `run`: the compacted campaigns topic,
//! acknowledged) and only then applied, so what a client was told is what every replica reads.
//! Campaigns of the config file are listed as `managed_by: "config"` and are read-only.
//!
//! | route | does |
//! | --- | --- |
//! | `GET /campaigns` (`?state=`) | config and store campaigns with their state |
//! | `POST /campaigns` | creates a draft (201); 409 if the id exists, 422 with every problem |
//! | `GET\|PUT\|DELETE /campaigns/{id}` | one campaign; PUT within §9's edit rules (409) |
//! | `POST /campaigns/preview` | the estimated audience of a definition now, from the live state |
//! | `POST /campaigns/{id}/publish`, `/stop` | `{"effective_at"}` optional (RFC 3339 or ms; default now) |
//! | `GET /campaigns/{id}/report` | the report (§9), when the runtime has one |
//! | `GET\|POST /segments`, `GET\|PUT\|DELETE /segments/{id}` | saved segments |
//! | `GET /ad-accounts` | the linked ad accounts, and whether each one's token works |
//! | `POST /users/{id}/erase` | an erasure request (202), applied in event time (§9) |
//! | `GET /openapi.json` | this API as an OpenAPI 3 document |

use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::clock::WallClock;
use crate::event::EventTime;
use crate::problems::ConfigError;
use crate::report::Report;
use crate::store::{Doc, Kind, Refused, State as CampaignState, Store, Stored};

/// Largest request body: a campaign definition is a few kilobytes.
pub const MAX_BODY: usize = 256 * 1024;

/// Writes one change of the store where every replica reads it (`None`: a tombstone); the
/// API applies the change only once this returned `Ok`.
pub type Persist = Arc<dyn Fn(&str, Option<&Doc>) -> anyhow::Result<()> + Send + Sync>;

/// Requests the erasure of a user (DESIGN §9 "Erasure"): in `run`, a `delete` record written
/// to every partition of the profiles topic, so the user's shard applies it in event time
/// whichever partition the producers keyed the user to. Returns the erasure's event time.
pub type Erase = Arc<dyn Fn(&str) -> anyhow::Result<EventTime> + Send + Sync>;

/// Asks TikTok whether an ad account's token works (`GET /ad-accounts`).
pub type CheckAccount = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, crate::sink::tiktok::AccountStatus>
        + Send
        + Sync,
>;

/// Why a preview has no estimate.
pub enum PreviewFailure {
    /// The definition's problems (422).
    Invalid(crate::problems::Problems),
    /// No live state to count (503), and why.
    Unavailable(String),
}

/// Estimates a campaign definition's audience from the live state (`POST /campaigns/preview`).
pub type PreviewFn =
    Arc<dyn Fn(&Value) -> Result<crate::preview::Estimate, PreviewFailure> + Send + Sync>;

/// A campaign's report from the running pipeline, if it has one.
pub type Reports = Arc<dyn Fn(&str) -> Option<Report> + Send + Sync>;

/// What the API serves from.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    /// SHA-256 of the bearer token; `None`: no token configured, the API is closed (503).
    token: Option<[u8; 32]>,
    /// The config file's document: the base of every engine config the store makes.
    base: toml::Table,
    /// The config file's campaigns and segments (read-only here): `(id, definition)`.
    managed: Vec<(String, Value)>,
    managed_segments: Vec<(String, Value)>,
    store: Arc<Mutex<Store>>,
    persist: Persist,
    reports: Reports,
    clock: Arc<dyn WallClock>,
    /// `None`: no runtime that can erase (the route answers 503).
    erase: Option<Erase>,
    /// `None`: no TikTok client (the route lists the accounts without checking them).
    check_account: Option<CheckAccount>,
    /// `None`: no live state (the route answers 503).
    preview: Option<PreviewFn>,
}

/// An API error: its status and JSON body.
#[derive(Debug)]
pub struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, json!({ "error": message.into() }))
}

fn problems_body(problems: &[ConfigError]) -> Value {
    let list: Vec<Value> = problems
        .iter()
        .map(|p| json!({"campaign": p.campaign, "field": p.field, "message": p.message}))
        .collect();
    json!({ "problems": list })
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> ApiError {
        match r {
            Refused::NotFound(..) => error(StatusCode::NOT_FOUND, r.to_string()),
            Refused::Conflict(m) => error(StatusCode::CONFLICT, m),
            Refused::Invalid(p) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, problems_body(&p)),
        }
    }
}

fn digest(s: &[u8]) -> [u8; 32] {
    Sha256::digest(s).into()
}

/// Equal digests, compared without an early exit: the time does not depend on where they
/// differ (and hashing first hides the token's length).
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Api {
    /// `token`: the admin token (`None`: the API answers 503); `base`: the config file as a
    /// TOML document.
    pub fn new(
        token: Option<&str>,
        base: toml::Table,
        store: Arc<Mutex<Store>>,
        persist: Persist,
        reports: Reports,
        clock: Arc<dyn WallClock>,
    ) -> Api {
        // `[[campaign]]` or `[[segment]]` tables of the config, by id.
        let tables = |key: &str| match base.get(key) {
            Some(toml::Value::Array(a)) => a
                .iter()
                .filter_map(|c| {
                    let id = c.get("id")?.as_str()?.to_owned();
                    Some((id, serde_json::to_value(c).ok()?))
                })
                .collect(),
            _ => Vec::new(),
        };
        let (managed, managed_segments) = (tables("campaign"), tables("segment"));
        Api {
            inner: Arc::new(Inner {
                token: token.map(|t| digest(t.as_bytes())),
                base,
                managed,
                managed_segments,
                store,
                persist,
                reports,
                clock,
                erase: None,
                check_account: None,
                preview: None,
            }),
        }
    }

    fn configure(&mut self) -> &mut Inner {
        Arc::get_mut(&mut self.inner).expect("an Api is configured before it is cloned")
    }

    /// Checks the accounts of `GET /ad-accounts` through `check`.
    pub fn with_account_check(mut self, check: CheckAccount) -> Api {
        self.configure().check_account = Some(check);
        self
    }

    /// Serves `POST /campaigns/preview` through `preview`.
    pub fn with_preview(mut self, preview: PreviewFn) -> Api {
        self.configure().preview = Some(preview);
        self
    }

    /// Serves `POST /users/{id}/erase` through `erase`.
    pub fn with_erase(mut self, erase: Erase) -> Api {
        self.configure().erase = Some(erase);
        self
    }

    /// The routes under `/api/v1`.
    pub fn router(self) -> Router {
        let api = Router::new()
            .route("/campaigns", get(list_campaigns).post(create_campaign))
            .route(
                "/campaigns/{id}",
                get(get_campaign).put(put_campaign).delete(delete_campaign),
            )
            .route("/campaigns/preview", post(preview))
            .route("/campaigns/{id}/publish", post(publish))
            .route("/campaigns/{id}/stop", post(stop))
            .route("/campaigns/{id}/report", get(report))
            .route("/segments", get(list_segments).post(create_segment))
            .route(
                "/segments/{id}",
                get(get_segment).put(put_segment).delete(delete_segment),
            )
            .route("/users/{id}/erase", post(erase_user))
            .route("/ad-accounts", get(ad_accounts))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), auth))
            .route("/openapi.json", get(openapi))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self);
        Router::new().nest("/api/v1", api)
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// A campaign (or segment) of the config file.
    fn managed_of(&self, kind: Kind, id: &str) -> Option<&Value> {
        let list = match kind {
            Kind::Campaign => &self.inner.managed,
            Kind::Segment => &self.inner.managed_segments,
        };
        list.iter().find(|(m, _)| m == id).map(|(_, v)| v)
    }

    fn managed(&self, id: &str) -> Option<&Value> {
        self.managed_of(Kind::Campaign, id)
    }

    /// Checks a definition the way `check-config` would, as if `doc` were published now (a
    /// draft must be publishable to be saved).
    fn validate(&self, store: &Store, doc: Doc) -> Result<(), ApiError> {
        match store.check(&self.inner.base, &doc, std::env::vars()) {
            Ok(_) => Ok(()),
            Err(p) => Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                problems_body(&p.0),
            )),
        }
    }

    /// Runs `change` on a copy of the store, persists the doc it names, then keeps the copy.
    fn change(
        &self,
        kind: Kind,
        id: &str,
        change: impl FnOnce(&mut Store) -> Result<(), ApiError>,
    ) -> Result<Option<Doc>, ApiError> {
        let mut store = self.inner.store.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = store.clone();
        change(&mut next)?;
        let doc = next.get(kind, id).cloned();
        (self.inner.persist)(&crate::store::key(kind, id), doc.as_ref()).map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "campaign store write failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the campaign store cannot be written; try again",
            )
        })?;
        *store = next;
        Ok(doc)
    }
}

async fn auth(State(api): State<Api>, req: Request, next: Next) -> Response {
    let Some(want) = api.inner.token else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no admin token configured ([http] admin_token_file or admin_token_env)",
        )
        .into_response();
    };
    let given = (req.headers().get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| digest(t.trim().as_bytes()));
    match given {
        Some(g) if same(&g, &want) => next.run(req).await,
        _ => {
            let mut r =
                error(StatusCode::UNAUTHORIZED, "a valid bearer token is required").into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("valid"));
            r
        }
    }
}

/// A campaign as the API shows it.
#[derive(Debug, Serialize)]
struct CampaignView {
    id: String,
    name: Option<String>,
    /// `live` (a trigger) or `past` (a schedule).
    r#type: &'static str,
    state: &'static str,
    managed_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    published_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    definition: Value,
}

fn iso(ms: EventTime) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn view(def: &Value, state: CampaignState, managed: bool, doc: Option<&Doc>) -> CampaignView {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    CampaignView {
        id: s(def.get("id")).unwrap_or_default(),
        name: s(def.get("name")),
        r#type: if def.get("schedule").is_some() {
            "past"
        } else {
            "live"
        },
        state: state.as_str(),
        managed_by: if managed { "config" } else { "api" },
        published_at: doc.and_then(|d| d.published_at).map(iso),
        stopped_at: doc.and_then(|d| d.stopped_at).map(iso),
        description: s(def.pointer("/what/audience/new/description")),
        definition: def.clone(),
    }
}

fn config_state(def: &Value, now: i64) -> CampaignState {
    let doc = Doc {
        state: Stored::Published,
        ..Doc::draft(Kind::Campaign, String::new(), def.clone(), 0)
    };
    doc.state_at(now)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list_campaigns(State(api): State<Api>, Query(q): Query<ListQuery>) -> Json<Value> {
    let now = api.now();
    let mut all: Vec<CampaignView> = (api.inner.managed.iter())
        .map(|(_, def)| view(def, config_state(def, now), true, None))
        .collect();
    {
        let store = api.inner.store.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(
            store
                .docs(Kind::Campaign)
                .map(|d| view(&d.definition, d.state_at(now), false, Some(d))),
        );
    }
    all.retain(|c| q.state.as_deref().is_none_or(|s| c.state == s));
    Json(json!({ "campaigns": all }))
}

fn body_object(body: Value) -> Result<Value, ApiError> {
    if body.is_object() {
        Ok(body)
    } else {
        Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be a JSON object: the [[campaign]] or [[segment]] table",
        ))
    }
}

async fn create(api: Api, kind: Kind, body: Value) -> Result<Response, ApiError> {
    let body = body_object(body)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if kind == Kind::Campaign && api.managed(&id).is_some() {
        return Err(error(
            StatusCode::CONFLICT,
            format!("campaign {id:?} is managed by config"),
        ));
    }
    let now = api.now();
    let doc = api.change(kind, &id, |s| {
        let doc = s.create(kind, body, now)?.clone();
        api.validate(s, doc)
    })?;
    let doc = doc.expect("created");
    Ok((StatusCode::CREATED, Json(doc_view(&doc, now))).into_response())
}

fn doc_view(doc: &Doc, now: i64) -> Value {
    match doc.kind {
        Kind::Campaign => {
            serde_json::to_value(view(&doc.definition, doc.state_at(now), false, Some(doc)))
                .expect("serialisable")
        }
        Kind::Segment => json!({"id": doc.id, "managed_by": "api", "definition": doc.definition}),
    }
}

async fn create_campaign(
    State(api): State<Api>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    create(api, Kind::Campaign, body).await
}

async fn create_segment(
    State(api): State<Api>,
    Json(body): Json<Value>,
) -> Result<Response, ApiError> {
    create(api, Kind::Segment, body).await
}

fn read(api: &Api, kind: Kind, id: &str) -> Result<Value, ApiError> {
    let now = api.now();
    if kind == Kind::Campaign {
        if let Some(def) = api.managed(id) {
            return Ok(
                serde_json::to_value(view(def, config_state(def, now), true, None))
                    .expect("serialisable"),
            );
        }
    }
    let store = api.inner.store.lock().unwrap_or_else(|e| e.into_inner());
    match store.get(kind, id) {
        Some(d) => Ok(doc_view(d, now)),
        None if kind == Kind::Segment => api
            .managed_of(kind, id)
            .map(|s| json!({"id": id, "managed_by": "config", "definition": s}))
            .ok_or_else(|| Refused::NotFound(kind, id.to_owned()).into()),
        None => Err(Refused::NotFound(kind, id.to_owned()).into()),
    }
}

async fn get_campaign(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read(&api, Kind::Campaign, &id).map(Json)
}

async fn get_segment(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read(&api, Kind::Segment, &id).map(Json)
}

fn read_only(api: &Api, kind: Kind, id: &str) -> Result<(), ApiError> {
    if api.managed_of(kind, id).is_some() {
        return Err(error(
            StatusCode::CONFLICT,
            format!(
                "{} {id:?} is managed by config: edit the config file",
                kind.as_str()
            ),
        ));
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct When {
    /// RFC 3339 or milliseconds since the epoch; default: now.
    effective_at: Option<Value>,
}

fn effective_at(api: &Api, when: Option<Json<When>>) -> Result<EventTime, ApiError> {
    let bad = || {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "effective_at: an RFC 3339 time or milliseconds since the epoch",
        )
    };
    match when.and_then(|Json(w)| w.effective_at) {
        None => Ok(api.now()),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad),
        Some(Value::String(s)) => s
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

async fn update(api: Api, kind: Kind, id: String, body: Value) -> Result<Json<Value>, ApiError> {
    read_only(&api, kind, &id)?;
    let body = body_object(body)?;
    let now = api.now();
    let doc = api.change(kind, &id, |s| {
        let doc = s.update(kind, &id, body, now, now)?.clone();
        api.validate(s, doc)
    })?;
    Ok(Json(doc_view(&doc.expect("updated"), now)))
}

async fn put_campaign(
    State(api): State<Api>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    update(api, Kind::Campaign, id, body).await
}

async fn put_segment(
    State(api): State<Api>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    update(api, Kind::Segment, id, body).await
}

async fn delete(api: Api, kind: Kind, id: String) -> Result<StatusCode, ApiError> {
    read_only(&api, kind, &id)?;
    api.change(kind, &id, |s| Ok(s.delete(kind, &id)?))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_campaign(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(api, Kind::Campaign, id).await
}

async fn delete_segment(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(api, Kind::Segment, id).await
}

async fn publish(
    State(api): State<Api>,
    Path(id): Path<String>,
    when: Option<Json<When>>,
) -> Result<Json<Value>, ApiError> {
    read_only(&api, Kind::Campaign, &id)?;
    let at = effective_at(&api, when)?;
    let now = api.now();
    let base = api.inner.base.clone();
    let doc = api.change(Kind::Campaign, &id, |s| {
        // Campaign indices follow the publish order: it may not go back in time.
        if let Some(last) = s.published().last().and_then(|d| d.published_at) {
            if at < last {
                return Err(error(
                    StatusCode::CONFLICT,
                    format!("effective_at precedes the latest publish ({})", iso(last)),
                ));
            }
        }
        s.publish(&id, at, now, |next| {
            next.config(&base, std::env::vars()).map(|_| ())
        })?;
        Ok(())
    })?;
    Ok(Json(doc_view(&doc.expect("published"), now)))
}

async fn stop(
    State(api): State<Api>,
    Path(id): Path<String>,
    when: Option<Json<When>>,
) -> Result<Json<Value>, ApiError> {
    read_only(&api, Kind::Campaign, &id)?;
    let at = effective_at(&api, when)?;
    let now = api.now();
    let doc = api.change(Kind::Campaign, &id, |s| {
        s.stop(&id, at, now)?;
        Ok(())
    })?;
    Ok(Json(doc_view(&doc.expect("stopped"), now)))
}

async fn report(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Report>, ApiError> {
    read(&api, Kind::Campaign, &id)?;
    (api.inner.reports)(&id).map(Json).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no report for {id:?} yet: the pipeline has not decided any user"),
        )
    })
}

async fn list_segments(State(api): State<Api>) -> Json<Value> {
    let mut all: Vec<Value> = (api.inner.managed_segments.iter())
        .map(|(id, s)| json!({"id": id, "managed_by": "config", "definition": s}))
        .collect();
    let store = api.inner.store.lock().unwrap_or_else(|e| e.into_inner());
    all.extend(store.docs(Kind::Segment).map(|d| doc_view(d, 0)));
    Json(json!({ "segments": all }))
}

/// `POST /campaigns/preview`: the estimated audience of a definition, now.
async fn preview(State(api): State<Api>, Json(body): Json<Value>) -> Result<Response, ApiError> {
    let body = body_object(body)?;
    let Some(f) = api.inner.preview.clone() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "a preview needs the running service's live state (remarket run)",
        ));
    };
    let started = tokio::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || f(&body))
        .await
        .map_err(|e| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("preview task: {e}"),
            )
        })?;
    match result {
        Ok(estimate) => {
            let mut v = serde_json::to_value(estimate).expect("serialisable");
            v["elapsed_ms"] = json!(started.elapsed().as_millis() as u64);
            Ok(Json(v).into_response())
        }
        Err(PreviewFailure::Invalid(p)) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            problems_body(&p.0),
        )),
        Err(PreviewFailure::Unavailable(m)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, m)),
    }
}

/// `GET /ad-accounts`: the `[[tiktok.account]]`s and every campaign's `ad_account` (config and
/// store), each with the campaigns on it, the token that serves it and whether TikTok accepts
/// that token for it (`ok`, TikTok's name, status, currency, time zone).
async fn ad_accounts(State(api): State<Api>) -> Json<Value> {
    // advertiser id → (configured name, campaigns)
    let mut accounts: Vec<(String, Option<String>, Vec<String>)> = Vec::new();
    fn entry(accounts: &mut Vec<(String, Option<String>, Vec<String>)>, id: &str) -> usize {
        match accounts.iter().position(|a| a.0 == id) {
            Some(i) => i,
            None => {
                accounts.push((id.to_owned(), None, Vec::new()));
                accounts.len() - 1
            }
        }
    }
    let configured = (api.inner.base.get("tiktok"))
        .and_then(|t| t.get("account"))
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut named = Vec::new();
    for a in &configured {
        if let Some(id) = a.get("advertiser_id").and_then(toml::Value::as_str) {
            let i = entry(&mut accounts, id);
            named.push((
                i,
                a.get("name")
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned),
            ));
        }
    }
    let mut campaigns: Vec<(String, String)> = (api.inner.managed.iter())
        .filter_map(|(id, def)| Some((id.clone(), def.get("ad_account")?.as_str()?.to_owned())))
        .collect();
    {
        let store = api.inner.store.lock().unwrap_or_else(|e| e.into_inner());
        campaigns.extend(store.docs(Kind::Campaign).filter_map(|d| {
            let account = d.definition.get("ad_account")?.as_str()?.to_owned();
            Some((d.id.clone(), account))
        }));
    }
    for (campaign, account) in campaigns {
        let i = entry(&mut accounts, &account);
        accounts[i].2.push(campaign);
    }
    for (i, name) in named {
        accounts[i].1 = name;
    }
    let checks = accounts.iter().map(|(id, _, _)| {
        let check = api.inner.check_account.clone();
        let id = id.clone();
        async move {
            match check {
                Some(c) => Some(c(id).await),
                None => None,
            }
        }
    });
    let checked = futures::future::join_all(checks).await;
    let list: Vec<Value> = accounts
        .into_iter()
        .zip(checked)
        .map(|((id, configured_name, campaigns), status)| {
            let mut v = match status {
                Some(s) => serde_json::to_value(s).expect("serialisable"),
                None => json!({"advertiser_id": id, "ok": null, "error": "no TikTok client in this process"}),
            };
            v["configured_name"] = json!(configured_name);
            v["campaigns"] = json!(campaigns);
            v
        })
        .collect();
    Json(json!({ "ad_accounts": list }))
}

/// Longest user id the erase route takes (ids are opaque; this bounds what is hashed).
const MAX_USER_ID: usize = 1024;

/// `POST /users/{id}/erase`: 202 once the request is durable; the response and the log name
/// the user only by the SHA-256 of the id.
async fn erase_user(State(api): State<Api>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if id.is_empty() || id.len() > MAX_USER_ID {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("a user id is 1 to {MAX_USER_ID} bytes"),
        ));
    }
    let Some(erase) = api.inner.erase.clone() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "erasure needs the running service (remarket run)",
        ));
    };
    let user_sha256 = crate::identity::to_hex(&crate::identity::sha256(id.as_bytes()));
    let at = tokio::task::spawn_blocking(move || erase(&id))
        .await
        .map_err(|e| anyhow::anyhow!("erase task: {e}"))
        .and_then(|r| r)
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), user_sha256 = %user_sha256, "erasure request not written");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the erasure request cannot be written; try again",
            )
        })?;
    tracing::info!(user_sha256 = %user_sha256, effective_at = at, "erasure requested");
    let body = json!({"user_sha256": user_sha256, "effective_at": iso(at)});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

/// The OpenAPI 3 document of these routes.
pub fn openapi_document() -> Value {
    let err = json!({"$ref": "#/components/schemas/Error"});
    let resp = |desc: &str, schema: Value| json!({"description": desc, "content": {"application/json": {"schema": schema}}});
    let errors = json!({
        "401": resp("missing or wrong bearer token", err.clone()),
        "404": resp("no such campaign or segment", err.clone()),
        "409": resp("the change conflicts with the lifecycle (§9)", err.clone()),
        "413": {"description": "body over 256 KiB"},
        "422": resp("every problem of the definition", json!({"$ref": "#/components/schemas/Problems"})),
        "503": resp("no admin token configured, or the store cannot be written", err.clone()),
    });
    let with = |ok: (&str, &str, Value)| {
        let mut r = errors.clone();
        r[ok.0] = resp(ok.1, ok.2);
        r
    };
    let id = json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let def =
        json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}});
    let when = json!({"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/When"}}}});
    let obj = json!({"type": "object"});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "remarket admin API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/campaigns": {
                "get": {"operationId": "listCampaigns", "parameters": [{"name": "state", "in": "query", "required": false, "schema": {"type": "string", "enum": ["draft", "scheduled", "running", "completed", "stopped"]}}], "responses": with(("200", "campaigns", obj.clone()))},
                "post": {"operationId": "createCampaign", "requestBody": def.clone(), "responses": with(("201", "the draft", obj.clone()))}
            },
            "/campaigns/{id}": {
                "parameters": id.clone(),
                "get": {"operationId": "getCampaign", "responses": with(("200", "the campaign", obj.clone()))},
                "put": {"operationId": "updateCampaign", "requestBody": def.clone(), "responses": with(("200", "the campaign", obj.clone()))},
                "delete": {"operationId": "deleteCampaign", "responses": with(("204", "deleted", json!(null)))}
            },
            "/campaigns/preview": {
                "post": {"operationId": "previewCampaign", "requestBody": def.clone(), "responses": {
                    "200": resp("the estimated audience now, from the live state", json!({"$ref": "#/components/schemas/Estimate"})),
                    "401": resp("missing or wrong bearer token", err.clone()),
                    "413": {"description": "body over 256 KiB"},
                    "422": resp("every problem of the definition", json!({"$ref": "#/components/schemas/Problems"})),
                    "503": resp("no admin token, or no live state to count (not the running service, or it is restarting)", err.clone())
                }}
            },
            "/campaigns/{id}/publish": {"parameters": id.clone(), "post": {"operationId": "publishCampaign", "requestBody": when.clone(), "responses": with(("200", "published", obj.clone()))}},
            "/campaigns/{id}/stop": {"parameters": id.clone(), "post": {"operationId": "stopCampaign", "requestBody": when.clone(), "responses": with(("200", "stopped", obj.clone()))}},
            "/campaigns/{id}/report": {"parameters": id.clone(), "get": {"operationId": "campaignReport", "responses": with(("200", "the report", json!({"$ref": "#/components/schemas/Report"})))}},
            "/segments": {
                "get": {"operationId": "listSegments", "responses": with(("200", "segments", obj.clone()))},
                "post": {"operationId": "createSegment", "requestBody": def.clone(), "responses": with(("201", "the segment", obj.clone()))}
            },
            "/users/{id}/erase": {
                "parameters": id.clone(),
                "post": {"operationId": "eraseUser", "responses": {
                    "202": resp("the erasure is requested: it takes effect in event time, in every shard and audience", json!({"type": "object", "required": ["user_sha256", "effective_at"], "properties": {"user_sha256": {"type": "string"}, "effective_at": {"type": "string", "format": "date-time"}}})),
                    "401": resp("missing or wrong bearer token", err.clone()),
                    "422": resp("the id is empty or too long", err.clone()),
                    "503": resp("no admin token, no running service, or the request cannot be written", err.clone())
                }}
            },
            "/ad-accounts": {
                "get": {"operationId": "listAdAccounts", "responses": {
                    "200": resp("the linked ad accounts and whether each token works", json!({"type": "object", "required": ["ad_accounts"], "properties": {"ad_accounts": {"type": "array", "items": {"$ref": "#/components/schemas/AdAccount"}}}})),
                    "401": resp("missing or wrong bearer token", err.clone()),
                    "503": resp("no admin token configured", err.clone())
                }}
            },
            "/segments/{id}": {
                "parameters": id,
                "get": {"operationId": "getSegment", "responses": with(("200", "the segment", obj.clone()))},
                "put": {"operationId": "updateSegment", "requestBody": def, "responses": with(("200", "the segment", obj))},
                "delete": {"operationId": "deleteSegment", "responses": with(("204", "deleted", json!(null)))}
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Problems": {"type": "object", "required": ["problems"], "properties": {"problems": {"type": "array", "items": {"type": "object", "properties": {"campaign": {"type": "string", "nullable": true}, "field": {"type": "string"}, "message": {"type": "string"}}}}}},
                "When": {"type": "object", "properties": {"effective_at": {"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}]}}},
                "Report": {"type": "object"},
                "Estimate": {"type": "object", "required": ["campaign", "users", "qualified", "reachable", "control", "unreachable", "capped", "estimated_audience", "not_kept", "partitions", "complete"], "properties": {
                    "campaign": {"type": "string"},
                    "users": {"type": "integer"}, "qualified": {"type": "integer"}, "reachable": {"type": "integer"},
                    "control": {"type": "integer"}, "unreachable": {"type": "integer"}, "capped": {"type": "integer"},
                    "estimated_audience": {"type": "integer"},
                    "not_kept": {"type": "array", "items": {"type": "string"}},
                    "partitions": {"type": "integer"}, "complete": {"type": "boolean"}, "elapsed_ms": {"type": "integer"}
                }},
                "AdAccount": {"type": "object", "required": ["advertiser_id", "ok", "campaigns"], "properties": {
                    "advertiser_id": {"type": "string"},
                    "token": {"type": "string", "enum": ["account", "default", "none"]},
                    "ok": {"type": "boolean", "nullable": true},
                    "name": {"type": "string"}, "status": {"type": "string"}, "currency": {"type": "string"}, "timezone": {"type": "string"},
                    "error": {"type": "string"},
                    "configured_name": {"type": "string", "nullable": true},
                    "campaigns": {"type": "array", "items": {"type": "string"}}
                }}
            }
        }
    })
}
