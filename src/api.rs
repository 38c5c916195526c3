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
//! | `GET /campaigns/{id}/report/daily` | qualifications and conversions per UTC day |
//! | `GET\|POST /segments`, `GET\|PUT\|DELETE /segments/{id}` | saved segments |
//! | `GET /ad-accounts` | the linked ad accounts, and whether each one's token works |
//! | `GET /ad-accounts/{id}/audiences` | the account's Partner audiences at TikTok |
//! | `POST /users/{id}/erase` | an erasure request (202), applied in event time (§9) |
//! | `GET /openapi.json` | this API as an OpenAPI 3 document |

use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::openapi::path::Operation;
use utoipa::openapi::{OpenApi as Document, RefOr, Response as DocResponse};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

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

/// A Partner audience of an ad account (`GET /ad-accounts/{id}/audiences`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AudienceItem {
    pub audience_id: String,
    pub name: String,
    /// TikTok's size (matched users, 0 below 1,000).
    pub size: u64,
}

/// Why an ad account's audiences are not listed.
pub enum AudienceListError {
    /// TikTok refused (an account the token does not serve, say): 404.
    Refused(String),
    /// TikTok did not answer: 503.
    Unavailable(String),
}

/// Lists an ad account's Partner audiences at TikTok.
pub type ListAudiences = Arc<
    dyn Fn(
            String,
        )
            -> futures::future::BoxFuture<'static, Result<Vec<AudienceItem>, AudienceListError>>
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

/// A campaign's backfill in the running pipeline, if its rules were backfilled.
pub type Backfills = Arc<dyn Fn(&str) -> Option<crate::detect::Backfill> + Send + Sync>;

/// A campaign's days (qualifications and conversions per UTC day) from the running pipeline.
/// With the latest qualification's time.
pub type DailyFn =
    Arc<dyn Fn(&str) -> Option<(crate::report::Daily, Option<EventTime>)> + Send + Sync>;

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
    /// `None`: no running pipeline (views show no backfill).
    backfills: Option<Backfills>,
    /// `None`: no running pipeline (the daily route answers 404).
    daily: Option<DailyFn>,
    /// `None`: no TikTok client (the audiences route answers 503).
    list_audiences: Option<ListAudiences>,
}

/// An API error: its status and JSON body.
#[derive(Debug)]
pub struct ApiError(StatusCode, Value);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

/// Every refusal but a definition's problems: `{"error": "…"}`.
#[derive(Debug, Serialize, ToSchema)]
struct ErrorBody {
    error: String,
}

/// One problem of a definition, as `check-config` lists it.
#[derive(Debug, Serialize, ToSchema)]
struct Problem {
    /// The campaign's (or segment's) id; null for a service section.
    campaign: Option<String>,
    /// The full path of the field (`who.where[1].op`).
    field: String,
    message: String,
}

/// 422: every problem of the definition.
#[derive(Debug, Serialize, ToSchema)]
struct ProblemsBody {
    problems: Vec<Problem>,
}

/// A 422 of one problem with the request itself (`field` names the part: `(body)`,
/// `effective_at`).
fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let body = ProblemsBody {
        problems: vec![Problem {
            campaign: None,
            field: field.to_owned(),
            message: message.into(),
        }],
    };
    let v = serde_json::to_value(body).expect("serialisable");
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, v)
}

/// A JSON request body whose refusals are the API's own JSON: 415 without
/// `Content-Type: application/json`, 400 for text that is not JSON, 422 (a problem of
/// `(body)`) for JSON of the wrong shape.
struct Body<T>(T);

fn rejected(r: axum::extract::rejection::JsonRejection) -> ApiError {
    match r.status() {
        StatusCode::UNPROCESSABLE_ENTITY => invalid("(body)", r.body_text()),
        status => error(status, r.body_text()),
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => Err(rejected(r)),
        }
    }
}

/// An optional body: none without a `Content-Type`.
impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::OptionalFromRequest<S>
    for Body<T>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        match <Json<T> as axum::extract::OptionalFromRequest<S>>::from_request(req, state).await {
            Ok(v) => Ok(v.map(|Json(v)| Body(v))),
            Err(r) => Err(rejected(r)),
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    let body = ErrorBody {
        error: message.into(),
    };
    ApiError(status, serde_json::to_value(body).expect("serialisable"))
}

fn problems_body(problems: &[ConfigError]) -> Value {
    let body = ProblemsBody {
        problems: (problems.iter())
            .map(|p| Problem {
                campaign: p.campaign.clone(),
                field: p.field.clone(),
                message: p.message.clone(),
            })
            .collect(),
    };
    serde_json::to_value(body).expect("serialisable")
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
                backfills: None,
                daily: None,
                list_audiences: None,
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

    /// Serves `GET /ad-accounts/{id}/audiences` through `list`.
    pub fn with_audience_list(mut self, list: ListAudiences) -> Api {
        self.configure().list_audiences = Some(list);
        self
    }

    /// Serves `GET /campaigns/{id}/report/daily` through `daily`.
    pub fn with_daily(mut self, daily: DailyFn) -> Api {
        self.configure().daily = Some(daily);
        self
    }

    /// Shows each campaign's backfill (`backfill` of its view) through `backfills`.
    pub fn with_backfills(mut self, backfills: Backfills) -> Api {
        self.configure().backfills = Some(backfills);
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

    /// The routes under `/api/v1`, and `/api/v1/openapi.json` generated from them.
    pub fn router(self) -> Router {
        let (routes, document) = routes();
        let document = Arc::new(serde_json::to_value(document).expect("serialisable"));
        let api = routes
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), auth))
            .route(
                "/openapi.json",
                get(move || {
                    let d = document.clone();
                    async move { Json((*d).clone()) }
                }),
            )
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

/// A `[[campaign]]` (or `[[segment]]`) table of the config, as JSON ([config](docs/config.md)).
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)] // a schema only: handlers take the JSON as it came
struct Definition(Value);

/// A campaign as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
struct CampaignView {
    id: String,
    name: Option<String>,
    /// `live` (a trigger) or `past` (a schedule).
    #[schema(value_type = String, pattern = "^(live|past)$")]
    r#type: &'static str,
    /// `draft`, `scheduled`, `running`, `completed` or `stopped`.
    #[schema(value_type = String, pattern = "^(draft|scheduled|running|completed|stopped)$")]
    state: &'static str,
    /// `config` (read-only here) or `api`.
    #[schema(value_type = String, pattern = "^(config|api)$")]
    managed_by: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    published_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    stopped_at: Option<String>,
    /// The new audience's description (kept here: TikTok's create call has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// How its behaviour rules were backfilled when the running service loaded them.
    #[serde(skip_serializing_if = "Option::is_none")]
    backfill: Option<BackfillView>,
    #[schema(value_type = Object)]
    definition: Value,
}

/// A backfill of a campaign's behaviour rules (over the input partitions this replica
/// restored with them): the records re-read and counted, and whether retention fell short.
#[derive(Debug, Serialize, ToSchema)]
struct BackfillView {
    partitions: u32,
    records: u64,
    counted: u64,
    /// The oldest event time the rules read (null: `all`).
    #[schema(format = DateTime)]
    wanted_from: Option<String>,
    /// Where retention had deleted older records: the figures start here.
    #[schema(format = DateTime)]
    covered_from: Option<String>,
    /// Retention fell short of `wanted_from`.
    short: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct CampaignList {
    campaigns: Vec<CampaignView>,
}

/// A saved segment as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
struct SegmentView {
    id: String,
    /// `config` (read-only here) or `api`.
    #[schema(value_type = String, pattern = "^(config|api)$")]
    managed_by: &'static str,
    #[schema(value_type = Object)]
    definition: Value,
}

#[derive(Debug, Serialize, ToSchema)]
struct SegmentList {
    segments: Vec<SegmentView>,
}

fn segment_view(id: &str, managed: bool, definition: &Value) -> Value {
    let v = SegmentView {
        id: id.to_owned(),
        managed_by: if managed { "config" } else { "api" },
        definition: definition.clone(),
    };
    serde_json::to_value(v).expect("serialisable")
}

fn iso(ms: EventTime) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

fn view(
    api: &Api,
    def: &Value,
    state: CampaignState,
    managed: bool,
    doc: Option<&Doc>,
) -> CampaignView {
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
        backfill: (s(def.get("id")).as_deref())
            .and_then(|id| api.inner.backfills.as_ref()?(id))
            .map(|b| BackfillView {
                partitions: b.partitions,
                records: b.records,
                counted: b.counted,
                wanted_from: b.wanted_from.filter(|&t| t > EventTime::MIN).map(iso),
                covered_from: b.covered_from.map(iso),
                short: b.short,
            }),
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only the campaigns in this state (`draft`, `scheduled`, `running`, `completed`,
    /// `stopped`); another value lists none.
    state: Option<String>,
}

/// The config's and the store's campaigns.
#[utoipa::path(get, path = "/campaigns", operation_id = "listCampaigns", tag = "campaigns",
    params(ListQuery),
    responses((status = 200, description = "the campaigns", body = CampaignList)))]
async fn list_campaigns(State(api): State<Api>, Query(q): Query<ListQuery>) -> Json<Value> {
    let now = api.now();
    let mut all: Vec<CampaignView> = (api.inner.managed.iter())
        .map(|(_, def)| view(&api, def, config_state(def, now), true, None))
        .collect();
    {
        let store = api.inner.store.lock().unwrap_or_else(|e| e.into_inner());
        all.extend(
            store
                .docs(Kind::Campaign)
                .map(|d| view(&api, &d.definition, d.state_at(now), false, Some(d))),
        );
    }
    all.retain(|c| q.state.as_deref().is_none_or(|s| c.state == s));
    Json(serde_json::to_value(CampaignList { campaigns: all }).expect("serialisable"))
}

fn body_object(body: Value) -> Result<Value, ApiError> {
    if body.is_object() {
        Ok(body)
    } else {
        Err(invalid(
            "(body)",
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
    Ok((StatusCode::CREATED, Json(doc_view(&api, &doc, now))).into_response())
}

fn doc_view(api: &Api, doc: &Doc, now: i64) -> Value {
    match doc.kind {
        Kind::Campaign => serde_json::to_value(view(
            api,
            &doc.definition,
            doc.state_at(now),
            false,
            Some(doc),
        ))
        .expect("serialisable"),
        Kind::Segment => segment_view(&doc.id, false, &doc.definition),
    }
}

/// Creates a draft; it must be publishable to be saved.
#[utoipa::path(post, path = "/campaigns", operation_id = "createCampaign", tag = "campaigns",
    request_body(content = Definition, description = "the `[[campaign]]` table"),
    responses(
        (status = 201, description = "the draft", body = CampaignView),
        (status = 409, description = "the id exists or is managed by config", body = ErrorBody),
        (status = 422, description = "every problem of the definition", body = ProblemsBody)))]
async fn create_campaign(
    State(api): State<Api>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    create(api, Kind::Campaign, body).await
}

/// Saves a segment.
#[utoipa::path(post, path = "/segments", operation_id = "createSegment", tag = "segments",
    request_body(content = Definition, description = "the `[[segment]]` table"),
    responses(
        (status = 201, description = "the segment", body = SegmentView),
        (status = 409, description = "the id exists", body = ErrorBody),
        (status = 422, description = "every problem of the definition", body = ProblemsBody)))]
async fn create_segment(
    State(api): State<Api>,
    Body(body): Body<Value>,
) -> Result<Response, ApiError> {
    create(api, Kind::Segment, body).await
}

fn read(api: &Api, kind: Kind, id: &str) -> Result<Value, ApiError> {
    let now = api.now();
    if kind == Kind::Campaign {
        if let Some(def) = api.managed(id) {
            return Ok(
                serde_json::to_value(view(api, def, config_state(def, now), true, None))
                    .expect("serialisable"),
            );
        }
    }
    let store = api.inner.store.lock().unwrap_or_else(|e| e.into_inner());
    match store.get(kind, id) {
        Some(d) => Ok(doc_view(api, d, now)),
        None if kind == Kind::Segment => api
            .managed_of(kind, id)
            .map(|s| segment_view(id, true, s))
            .ok_or_else(|| Refused::NotFound(kind, id.to_owned()).into()),
        None => Err(Refused::NotFound(kind, id.to_owned()).into()),
    }
}

/// One campaign.
#[utoipa::path(get, path = "/campaigns/{id}", operation_id = "getCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "the campaign's id")),
    responses(
        (status = 200, description = "the campaign", body = CampaignView),
        (status = 404, description = "no such campaign", body = ErrorBody)))]
async fn get_campaign(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    read(&api, Kind::Campaign, &id).map(Json)
}

/// One segment.
#[utoipa::path(get, path = "/segments/{id}", operation_id = "getSegment", tag = "segments",
    params(("id" = String, Path, description = "the segment's id")),
    responses(
        (status = 200, description = "the segment", body = SegmentView),
        (status = 404, description = "no such segment", body = ErrorBody)))]
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

/// When a publish or a stop takes effect, in event time.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct When {
    /// RFC 3339 or milliseconds since the epoch; default: now.
    #[schema(schema_with = time_or_ms)]
    effective_at: Option<Value>,
}

fn time_or_ms() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .build();
    utoipa::openapi::schema::Schema::OneOf(one_of)
}

fn effective_at(api: &Api, when: Option<Body<When>>) -> Result<EventTime, ApiError> {
    let bad = || {
        invalid(
            "effective_at",
            "an RFC 3339 time or milliseconds since the epoch",
        )
    };
    match when.and_then(|Body(w)| w.effective_at) {
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
    Ok(Json(doc_view(&api, &doc.expect("updated"), now)))
}

/// Replaces a campaign's definition (a published one only within §9's edit rules).
#[utoipa::path(put, path = "/campaigns/{id}", operation_id = "updateCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "the campaign's id")),
    request_body(content = Definition, description = "the whole `[[campaign]]` table"),
    responses(
        (status = 200, description = "the campaign", body = CampaignView),
        (status = 404, description = "no such campaign", body = ErrorBody),
        (status = 409, description = "outside the edit rules, or managed by config", body = ErrorBody),
        (status = 422, description = "every problem of the definition", body = ProblemsBody)))]
async fn put_campaign(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> Result<Json<Value>, ApiError> {
    update(api, Kind::Campaign, id, body).await
}

/// Replaces a segment's definition.
#[utoipa::path(put, path = "/segments/{id}", operation_id = "updateSegment", tag = "segments",
    params(("id" = String, Path, description = "the segment's id")),
    request_body(content = Definition, description = "the whole `[[segment]]` table"),
    responses(
        (status = 200, description = "the segment", body = SegmentView),
        (status = 404, description = "no such segment", body = ErrorBody),
        (status = 409, description = "managed by config", body = ErrorBody),
        (status = 422, description = "every problem of the definition", body = ProblemsBody)))]
async fn put_segment(
    State(api): State<Api>,
    Path(id): Path<String>,
    Body(body): Body<Value>,
) -> Result<Json<Value>, ApiError> {
    update(api, Kind::Segment, id, body).await
}

async fn delete(api: Api, kind: Kind, id: String) -> Result<StatusCode, ApiError> {
    read_only(&api, kind, &id)?;
    api.change(kind, &id, |s| Ok(s.delete(kind, &id)?))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a draft.
#[utoipa::path(delete, path = "/campaigns/{id}", operation_id = "deleteCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "the campaign's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such campaign", body = ErrorBody),
        (status = 409, description = "not a draft, or managed by config", body = ErrorBody)))]
async fn delete_campaign(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(api, Kind::Campaign, id).await
}

/// Deletes a segment no campaign uses.
#[utoipa::path(delete, path = "/segments/{id}", operation_id = "deleteSegment", tag = "segments",
    params(("id" = String, Path, description = "the segment's id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "no such segment", body = ErrorBody),
        (status = 409, description = "in use, or managed by config", body = ErrorBody)))]
async fn delete_segment(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(api, Kind::Segment, id).await
}

/// Publishes a draft at `effective_at` (the campaign set with it is checked whole).
#[utoipa::path(post, path = "/campaigns/{id}/publish", operation_id = "publishCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "the campaign's id")),
    request_body(content = Option<When>, description = "optional"),
    responses(
        (status = 200, description = "published", body = CampaignView),
        (status = 404, description = "no such campaign", body = ErrorBody),
        (status = 409, description = "not a draft, managed by config, or before the latest publish", body = ErrorBody),
        (status = 422, description = "the campaign set with it has problems, or a bad effective_at", body = ProblemsBody)))]
async fn publish(
    State(api): State<Api>,
    Path(id): Path<String>,
    when: Option<Body<When>>,
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
    Ok(Json(doc_view(&api, &doc.expect("published"), now)))
}

/// Stops a published campaign at `effective_at`.
#[utoipa::path(post, path = "/campaigns/{id}/stop", operation_id = "stopCampaign", tag = "campaigns",
    params(("id" = String, Path, description = "the campaign's id")),
    request_body(content = Option<When>, description = "optional"),
    responses(
        (status = 200, description = "stopped", body = CampaignView),
        (status = 404, description = "no such campaign", body = ErrorBody),
        (status = 409, description = "not published, or managed by config", body = ErrorBody),
        (status = 422, description = "a bad effective_at", body = ProblemsBody)))]
async fn stop(
    State(api): State<Api>,
    Path(id): Path<String>,
    when: Option<Body<When>>,
) -> Result<Json<Value>, ApiError> {
    read_only(&api, Kind::Campaign, &id)?;
    let at = effective_at(&api, when)?;
    let now = api.now();
    let doc = api.change(Kind::Campaign, &id, |s| {
        s.stop(&id, at, now)?;
        Ok(())
    })?;
    Ok(Json(doc_view(&api, &doc.expect("stopped"), now)))
}

/// The campaign's report (§9) over the activate partitions this replica owns.
#[utoipa::path(get, path = "/campaigns/{id}/report", operation_id = "campaignReport", tag = "campaigns",
    params(("id" = String, Path, description = "the campaign's id")),
    responses(
        (status = 200, description = "the report", body = Report),
        (status = 404, description = "no such campaign, or no decision yet", body = ErrorBody)))]
async fn report(State(api): State<Api>, Path(id): Path<String>) -> Result<Json<Report>, ApiError> {
    read(&api, Kind::Campaign, &id)?;
    (api.inner.reports)(&id).map(Json).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no report for {id:?} yet: the pipeline has not decided any user"),
        )
    })
}

/// One UTC day of a campaign.
#[derive(Debug, Serialize, ToSchema)]
struct DayView {
    /// `YYYY-MM-DD`, UTC.
    #[schema(format = Date)]
    day: String,
    /// Users whose latest qualification fell on the day (exported or control).
    qualified: u64,
    /// Conversions on the day.
    converted: u64,
}

#[derive(Debug, Serialize, ToSchema)]
struct DailyBody {
    days: Vec<DayView>,
    /// The latest qualification's time among the users counted.
    #[schema(format = DateTime)]
    last_qualified_at: Option<String>,
}

/// The campaign's qualifications and conversions per UTC day, over every activate
/// partition (as the report).
#[utoipa::path(get, path = "/campaigns/{id}/report/daily", operation_id = "campaignReportDaily", tag = "campaigns",
    params(("id" = String, Path, description = "the campaign's id")),
    responses(
        (status = 200, description = "the days, oldest first", body = DailyBody),
        (status = 404, description = "no such campaign, or no decision yet", body = ErrorBody)))]
async fn report_daily(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<DailyBody>, ApiError> {
    read(&api, Kind::Campaign, &id)?;
    let (days, last) = (api.inner.daily.as_ref())
        .and_then(|f| f(&id))
        .filter(|(d, _)| !d.is_empty())
        .ok_or_else(|| {
            error(
                StatusCode::NOT_FOUND,
                format!("no days for {id:?} yet: the pipeline has not decided any user"),
            )
        })?;
    let days = (days.into_iter())
        .map(|(d, c)| DayView {
            day: jiff::Timestamp::from_millisecond(i64::from(d) * 86_400_000)
                .map(|t| t.strftime("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            qualified: c.qualified,
            converted: c.converted,
        })
        .collect();
    Ok(Json(DailyBody {
        days,
        last_qualified_at: last.map(iso),
    }))
}

/// The config's and the store's segments.
#[utoipa::path(get, path = "/segments", operation_id = "listSegments", tag = "segments",
    responses((status = 200, description = "the segments", body = SegmentList)))]
async fn list_segments(State(api): State<Api>) -> Json<Value> {
    let mut all: Vec<Value> = (api.inner.managed_segments.iter())
        .map(|(id, s)| segment_view(id, true, s))
        .collect();
    let store = api.inner.store.lock().unwrap_or_else(|e| e.into_inner());
    all.extend(store.docs(Kind::Segment).map(|d| doc_view(&api, d, 0)));
    Json(json!({ "segments": all }))
}

/// A preview's answer.
#[derive(Debug, Serialize, ToSchema)]
struct EstimateBody {
    #[serde(flatten)]
    estimate: crate::preview::Estimate,
    /// How long the workers took to answer.
    elapsed_ms: u64,
}

/// The estimated audience of a definition now, from the live state; nothing is stored.
#[utoipa::path(post, path = "/campaigns/preview", operation_id = "previewCampaign", tag = "campaigns",
    request_body(content = Definition, description = "a `[[campaign]]` table"),
    responses(
        (status = 200, description = "the estimate", body = EstimateBody),
        (status = 422, description = "every problem of the definition", body = ProblemsBody)))]
async fn preview(State(api): State<Api>, Body(body): Body<Value>) -> Result<Response, ApiError> {
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
        Ok(estimate) => Ok(Json(EstimateBody {
            estimate,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
        .into_response()),
        Err(PreviewFailure::Invalid(p)) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            problems_body(&p.0),
        )),
        Err(PreviewFailure::Unavailable(m)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, m)),
    }
}

/// An ad account: which token serves it, whether TikTok accepts it, and its campaigns.
#[derive(Debug, Serialize, ToSchema)]
struct AdAccount {
    advertiser_id: String,
    /// `account` (its own `[[tiktok.account]]` token), `default` (`[tiktok]`'s) or `none`;
    /// absent without a TikTok client.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(account|default|none)$")]
    token: Option<&'static str>,
    /// The token works for the account; null without a TikTok client.
    ok: Option<bool>,
    /// TikTok's name of the account, and its status, currency and time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<String>,
    /// Why not `ok` (never a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The `[[tiktok.account]]`'s `name`.
    configured_name: Option<String>,
    campaigns: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AdAccountList {
    ad_accounts: Vec<AdAccount>,
}

/// `GET /ad-accounts`: the `[[tiktok.account]]`s and every campaign's `ad_account` (config and
/// store), each with the campaigns on it, the token that serves it and whether TikTok accepts
/// that token for it (`ok`, TikTok's name, status, currency, time zone).
#[utoipa::path(get, path = "/ad-accounts", operation_id = "listAdAccounts", tag = "ad-accounts",
    responses((status = 200, description = "the linked ad accounts and whether each token works", body = AdAccountList)))]
async fn ad_accounts(State(api): State<Api>) -> Json<AdAccountList> {
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
    let ad_accounts = accounts
        .into_iter()
        .zip(checked)
        .map(|((id, configured_name, campaigns), status)| match status {
            Some(s) => AdAccount {
                advertiser_id: s.advertiser_id,
                token: Some(s.token),
                ok: Some(s.ok),
                name: s.name,
                status: s.status,
                currency: s.currency,
                timezone: s.timezone,
                error: s.error,
                configured_name,
                campaigns,
            },
            None => AdAccount {
                advertiser_id: id,
                token: None,
                ok: None,
                name: None,
                status: None,
                currency: None,
                timezone: None,
                error: Some("no TikTok client in this process".into()),
                configured_name,
                campaigns,
            },
        })
        .collect();
    Json(AdAccountList { ad_accounts })
}

#[derive(Debug, Serialize, ToSchema)]
struct AudienceList {
    audiences: Vec<AudienceItem>,
}

/// The ad account's Partner audiences at TikTok (those a campaign can add to), oldest first.
#[utoipa::path(get, path = "/ad-accounts/{id}/audiences", operation_id = "listAudiences", tag = "ad-accounts",
    params(("id" = String, Path, description = "the advertiser id (digits)")),
    responses(
        (status = 200, description = "the audiences", body = AudienceList),
        (status = 404, description = "TikTok refused: the token serves no such account", body = ErrorBody),
        (status = 422, description = "not an advertiser id", body = ProblemsBody)))]
async fn list_audiences(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<AudienceList>, ApiError> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("id", "an advertiser id is 1 to 20 digits"));
    }
    let Some(list) = api.inner.list_audiences.clone() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "listing audiences needs the running service's TikTok client (remarket run)",
        ));
    };
    match list(id).await {
        Ok(audiences) => Ok(Json(AudienceList { audiences })),
        Err(AudienceListError::Refused(m)) => Err(error(StatusCode::NOT_FOUND, m)),
        Err(AudienceListError::Unavailable(m)) => Err(error(StatusCode::SERVICE_UNAVAILABLE, m)),
    }
}

/// Longest user id the erase route takes (ids are opaque; this bounds what is hashed).
const MAX_USER_ID: usize = 1024;

/// An erasure request, accepted.
#[derive(Debug, Serialize, ToSchema)]
struct Erasure {
    /// SHA-256 of the user id, hex.
    user_sha256: String,
    /// When it takes effect, in event time.
    #[schema(format = DateTime)]
    effective_at: String,
}

/// `POST /users/{id}/erase`: 202 once the request is durable; the response and the log name
/// the user only by the SHA-256 of the id.
#[utoipa::path(post, path = "/users/{id}/erase", operation_id = "eraseUser", tag = "users",
    params(("id" = String, Path, description = "the user's id, as the input records carry it")),
    responses(
        (status = 202, description = "requested: it takes effect in event time, in every shard and audience", body = Erasure),
        (status = 422, description = "an empty or over-1 KiB id", body = ErrorBody)))]
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
    let body = Erasure {
        user_sha256,
        effective_at: iso(at),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "remarket admin API", description = "Campaigns, segments, reports, previews, ad accounts and erasure (DESIGN §9)."),
    servers((url = "/api/v1")),
    security(("bearer" = []))
)]
struct ApiDoc;

/// What every route shares: the bearer scheme, 401 and 503, and 413 where a body is taken.
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, doc: &mut Document) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let json = || {
            ContentBuilder::new()
                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                .build()
        };
        let response = |description: &str, body: bool| -> RefOr<DocResponse> {
            let r = ResponseBuilder::new().description(description);
            let r = if body {
                r.content("application/json", json())
            } else {
                r
            };
            RefOr::T(r.build())
        };
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let add = |op: &mut Operation, status: &str, r: RefOr<DocResponse>| {
                    op.responses.responses.entry(status.into()).or_insert(r);
                };
                add(op, "401", response("a missing or wrong bearer token", true));
                add(
                    op,
                    "503",
                    response(
                        "no admin token configured, the store cannot be written, or the running service is needed",
                        true,
                    ),
                );
                if op.request_body.is_some() {
                    add(op, "400", response("a body that is not JSON", true));
                    add(op, "413", response("a body over 256 KiB", true));
                    add(
                        op,
                        "415",
                        response("no `Content-Type: application/json`", true),
                    );
                }
            }
        }
    }
}

/// The routes and the OpenAPI 3 document generated from them.
fn routes() -> (Router<Api>, Document) {
    use utoipa::Modify;
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign, put_campaign, delete_campaign))
        .routes(routes!(preview))
        .routes(routes!(publish))
        .routes(routes!(stop))
        .routes(routes!(report))
        .routes(routes!(report_daily))
        .routes(routes!(list_segments, create_segment))
        .routes(routes!(get_segment, put_segment, delete_segment))
        .routes(routes!(erase_user))
        .routes(routes!(ad_accounts))
        .routes(routes!(list_audiences))
        .split_for_parts();
    // After the routes: it reads their operations.
    Common.modify(&mut doc);
    (router, doc)
}

/// The OpenAPI 3 document of these routes.
pub fn openapi_document() -> Value {
    serde_json::to_value(routes().1).expect("serialisable")
}
