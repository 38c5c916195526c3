//! The campaign console (DESIGN §9's admin API in a browser): server-rendered HTML pages on
//! the admin listener at `/`, plain forms (one small inline script only counts the
//! description's characters), styles inline, everything compiled into the binary (maud
//! templates). It follows a marketer's walk through a campaign —
//! Start, Who, What, When, Publish — and shows each campaign's report.
//!
//! The console holds no campaign logic: every page is the answer of an admin API route,
//! called in-process through the same axum router the API serves (`tower::ServiceExt::
//! oneshot`), with the bearer token of the session. A definition's problems are the API's
//! 422, shown next to the input they concern ([`form::input_of`]).
//!
//! Sessions: `POST /login` takes the admin token and checks it with the API, then sets a
//! signed cookie `expiry.nonce.HMAC` (`HttpOnly; SameSite=Strict; Path=/`, `Secure` when the
//! request came over TLS as a proxy's `X-Forwarded-Proto: https` says). The key is derived
//! from the admin token, so every replica behind the Service accepts the session and a new
//! token ends every session; nothing is stored per session. The CSRF token every form
//! carries, and every `POST` checks (in constant time), is the HMAC of the session's nonce.
//! Sessions end after [`SESSION_TTL`]; logout clears the cookie and this replica refuses the
//! session from then on.

pub mod form;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::WallClock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form as PostForm, Router};
use serde_json::Value;
use tower::ServiceExt;

use form::Form;

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Logged-out sessions a replica remembers (until they expire).
const MAX_REVOKED: usize = 4096;
const COOKIE: &str = "remarket_session";

/// The console's routes, over the admin API's router.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    api: Router,
    /// The admin token (the console calls the API with it) and the key that signs sessions,
    /// derived from it: every replica with the same token accepts the same sessions, and a
    /// new token ends them all. `None`: no token configured (no one can log in).
    keys: Option<(String, [u8; 32])>,
    clock: Arc<dyn WallClock>,
    /// Sessions logged out here (their nonces, with their expiry).
    revoked: Mutex<HashMap<String, i64>>,
}

#[derive(Clone)]
struct Session {
    token: String,
    csrf: String,
}

/// A signed-in request: the session and whether the page goes over TLS.
struct Signed {
    session: Session,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).expect("the OS has randomness");
    crate::identity::to_hex(&b)
}

fn same(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

fn mac(key: &[u8; 32], message: &str) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    m.update(message.as_bytes());
    crate::identity::to_hex(&m.finalize().into_bytes().into())
}

impl Console {
    /// `api`: the admin API's router (its routes under `/api/v1`); `admin_token`: the API's
    /// token; `clock`: the service's clock (session expiry).
    pub fn new(api: Router, admin_token: Option<&str>, clock: Arc<dyn WallClock>) -> Console {
        use sha2::{Digest, Sha256};
        let keys = admin_token.map(|t| {
            let mut h = Sha256::new();
            h.update(b"remarket console session key\0");
            h.update(t.as_bytes());
            (t.to_owned(), h.finalize().into())
        });
        Console {
            inner: Arc::new(Inner {
                api,
                keys,
                clock,
                revoked: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(list))
            .route("/login", get(login_page).post(login))
            .route("/logout", post(logout))
            .route("/campaigns/new", get(builder_page).post(builder_post))
            .route("/campaigns/{id}/report", get(report))
            .route("/campaigns/{id}/{action}", post(action))
            .with_state(self)
    }

    /// Calls the admin API: `(status, JSON body)`.
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).expect("serialisable"))
            }
            None => Body::empty(),
        };
        let req = req.body(body).expect("a valid request");
        let resp = match self.inner.api.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
            .await
            .unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// The session a cookie `expiry.nonce.mac` stands for, if its MAC is ours, it has not
    /// expired and it was not logged out here.
    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let (token, key) = self.inner.keys.as_ref()?;
        let value = cookie(headers, COOKIE)?;
        let (signed, given) = value.rsplit_once('.')?;
        let (expiry, nonce) = signed.split_once('.')?;
        if !same(given, &mac(key, signed)) {
            return None;
        }
        let expiry: i64 = expiry.parse().ok()?;
        if expiry <= self.inner.clock.now_ms() {
            return None;
        }
        let revoked = self.inner.revoked.lock().unwrap_or_else(|e| e.into_inner());
        if revoked.contains_key(nonce) {
            return None;
        }
        Some(Session {
            token: token.clone(),
            csrf: mac(key, &format!("csrf.{nonce}")),
        })
    }

    fn signed(&self, headers: &HeaderMap) -> Result<Signed, Refusal> {
        match self.session(headers) {
            Some(session) => Ok(Signed { session }),
            None => Err(Refusal::SignIn),
        }
    }

    /// A signed-in `POST` whose form carries the session's CSRF token.
    fn checked(&self, headers: &HeaderMap, form: &Form) -> Result<Signed, Refusal> {
        let s = self.signed(headers)?;
        if !same(form.get("csrf"), &s.session.csrf) {
            return Err(Refusal::Csrf);
        }
        Ok(s)
    }
}

/// A page for signed-in users only: without a session, to the login page.
impl axum::extract::FromRequestParts<Console> for Signed {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        c: &Console,
    ) -> Result<Self, Refusal> {
        c.signed(&parts.headers)
    }
}

/// Why a request gets no page.
enum Refusal {
    /// No session: to the login page.
    SignIn,
    /// A form without the session's CSRF token: 403.
    Csrf,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::SignIn => Redirect::to("/login").into_response(),
            Refusal::Csrf => (
                StatusCode::FORBIDDEN,
                pages::message(
                    "Refused",
                    "The form's CSRF token is missing or wrong: reload the page and try again.",
                ),
            )
                .into_response(),
        }
    }
}

/// The value of cookie `name` in `headers`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    (headers.get_all(header::COOKIE).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn over_tls(headers: &HeaderMap) -> bool {
    (headers.get("x-forwarded-proto"))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

async fn login_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if c.session(&headers).is_some() {
        return Redirect::to("/").into_response();
    }
    login_form(StatusCode::OK, None, &headers)
}

const LOGIN_COOKIE: &str = "remarket_login";

/// The login page with a fresh login CSRF nonce, in the form and in a cookie only the login
/// route sees (a double submit: a cross-site form cannot read or set the cookie).
fn login_form(status: StatusCode, error: Option<&str>, headers: &HeaderMap) -> Response {
    let nonce = random_hex();
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{LOGIN_COOKIE}={nonce}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=600{secure}"
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        pages::login(error, &nonce),
    )
        .into_response()
}

async fn login(
    State(c): State<Console>,
    headers: HeaderMap,
    PostForm(f): PostForm<Vec<(String, String)>>,
) -> Response {
    let f = Form(f);
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if nonce.is_empty() || !same(f.get("csrf"), &nonce) {
        let why = "The login form expired or came from elsewhere: log in again.";
        return login_form(StatusCode::FORBIDDEN, Some(why), &headers);
    }
    let token = f.get("token").to_owned();
    let (status, body) = c.call(&token, Method::GET, "/campaigns", None).await;
    if status != StatusCode::OK {
        let why = match status {
            StatusCode::UNAUTHORIZED => "That is not the admin token.".to_owned(),
            _ => body["error"]
                .as_str()
                .unwrap_or("The API refused.")
                .to_owned(),
        };
        return login_form(StatusCode::UNAUTHORIZED, Some(&why), &headers);
    }
    let Some((_, key)) = c.inner.keys.as_ref() else {
        return login_form(
            StatusCode::UNAUTHORIZED,
            Some("No admin token is configured."),
            &headers,
        );
    };
    let expiry = c.inner.clock.now_ms() + SESSION_TTL.as_millis() as i64;
    let signed = format!("{expiry}.{}", random_hex());
    let id = format!("{signed}.{}", mac(key, &signed));
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout(
    State(c): State<Console>,
    headers: HeaderMap,
    PostForm(f): PostForm<Vec<(String, String)>>,
) -> Response {
    if let Err(r) = c.checked(&headers, &Form(f)) {
        return r.into_response();
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        let mut parts = id.split('.');
        if let (Some(expiry), Some(nonce)) = (parts.next(), parts.next()) {
            let now = c.inner.clock.now_ms();
            let mut revoked = c.inner.revoked.lock().unwrap_or_else(|e| e.into_inner());
            revoked.retain(|_, e| *e > now);
            if revoked.len() < MAX_REVOKED {
                revoked.insert(nonce.to_owned(), expiry.parse().unwrap_or(i64::MAX));
            }
        }
    }
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[derive(serde::Deserialize)]
struct ListQuery {
    state: Option<String>,
}

async fn list(State(c): State<Console>, s: Signed, Query(q): Query<ListQuery>) -> Response {
    let token = &s.session.token;
    let path = match q.state.as_deref().filter(|x| !x.is_empty()) {
        Some(state) => format!("/campaigns?state={}", urlencode(state)),
        None => "/campaigns".to_owned(),
    };
    let (_, body) = c.call(token, Method::GET, &path, None).await;
    let campaigns = body["campaigns"].as_array().cloned().unwrap_or_default();
    let mut rows = Vec::with_capacity(campaigns.len());
    for v in campaigns {
        let id = v["id"].as_str().unwrap_or("").to_owned();
        let (status, report) = (c.call(
            token,
            Method::GET,
            &format!("/campaigns/{}/report", urlencode(&id)),
            None,
        ))
        .await;
        let daily = format!("/campaigns/{}/report/daily", urlencode(&id));
        let (_, daily) = c.call(token, Method::GET, &daily, None).await;
        let last = daily["last_qualified_at"].as_str().map(str::to_owned);
        rows.push((v, (status == StatusCode::OK).then_some(report), last));
    }
    pages::list(&rows, q.state.as_deref().unwrap_or(""), &s.session.csrf).into_response()
}

#[derive(serde::Deserialize)]
struct BuilderQuery {
    from: Option<String>,
}

/// What the builder shows besides the form.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Problems by input name (`""`: shown at the top).
    pub problems: Vec<(String, String)>,
    pub preview: Option<Result<Value, String>>,
    pub toml: Option<String>,
    pub notice: Option<String>,
}

/// The lists the builder offers: ad accounts, segments.
async fn choices(c: &Console, token: &str) -> Choices {
    let (_, accounts) = c.call(token, Method::GET, "/ad-accounts", None).await;
    let (_, segments) = c.call(token, Method::GET, "/segments", None).await;
    let accounts = (accounts["ad_accounts"].as_array().cloned()).unwrap_or_default();
    let mut audiences = Vec::new();
    // Each account's audiences, for the existing-audience picker (a few accounts at most).
    for a in accounts
        .iter()
        .filter(|a| a["ok"] != false)
        .take(MAX_PICKER_ACCOUNTS)
    {
        let id = a["advertiser_id"].as_str().unwrap_or("").to_owned();
        let path = format!("/ad-accounts/{}/audiences", urlencode(&id));
        let (status, list) = c.call(token, Method::GET, &path, None).await;
        if status == StatusCode::OK {
            let list = list["audiences"].as_array().cloned().unwrap_or_default();
            audiences.push((id, list));
        }
    }
    Choices {
        accounts,
        segments: segments["segments"].as_array().cloned().unwrap_or_default(),
        audiences,
    }
}

/// Ad accounts whose audiences the builder lists.
const MAX_PICKER_ACCOUNTS: usize = 10;

/// What the builder offers to pick from.
pub(crate) struct Choices {
    pub accounts: Vec<Value>,
    pub segments: Vec<Value>,
    /// Per ad account, its Partner audiences at TikTok.
    pub audiences: Vec<(String, Vec<Value>)>,
}

async fn builder_page(
    State(c): State<Console>,
    s: Signed,
    Query(q): Query<BuilderQuery>,
) -> Response {
    let token = &s.session.token;
    let mut f = Form::default();
    if let Some(from) = q.from.as_deref() {
        let (status, v) = c
            .call(
                token,
                Method::GET,
                &format!("/campaigns/{}", urlencode(from)),
                None,
            )
            .await;
        if status == StatusCode::OK {
            f = Form::from_definition(&v["definition"]);
            let id = format!("{}-copy", f.get("id"));
            f.0.retain(|(k, _)| k != "id");
            f.set("id", id);
        }
    } else {
        f.set("kind", "live");
        f.set("audience_mode", "new");
        f.set("identifiers", "email");
        f.set("schedule_mode", "repeat");
    }
    let choices = choices(&c, token).await;
    pages::builder(&f, &Outcome::default(), &choices, &s.session.csrf).into_response()
}

async fn builder_post(
    State(c): State<Console>,
    headers: HeaderMap,
    PostForm(pairs): PostForm<Vec<(String, String)>>,
) -> Response {
    let f = Form(pairs);
    let s = match c.checked(&headers, &f) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let token = &s.session.token;
    let (def, origins) = f.definition();
    let mut out = Outcome {
        toml: toml_of(&def),
        ..Outcome::default()
    };
    let problems_of = |body: &Value| -> Vec<(String, String)> {
        (body["problems"].as_array().into_iter().flatten())
            .map(|p| {
                let field = p["field"].as_str().unwrap_or("");
                let input = form::input_of(field, &origins).unwrap_or_default();
                let message = p["message"].as_str().unwrap_or("").to_owned();
                (
                    input,
                    if field.is_empty() {
                        message
                    } else {
                        format!("{field}: {message}")
                    },
                )
            })
            .collect()
    };
    match f.get("action") {
        "preview" => {
            let (status, body) = c
                .call(token, Method::POST, "/campaigns/preview", Some(&def))
                .await;
            match status {
                StatusCode::OK => out.preview = Some(Ok(body)),
                StatusCode::UNPROCESSABLE_ENTITY => out.problems = problems_of(&body),
                _ => {
                    let why = body["error"].as_str().unwrap_or("no answer").to_owned();
                    out.preview = Some(Err(why));
                }
            }
        }
        action @ ("save" | "publish") => {
            let mut def = def.clone();
            // The Who filters saved as a new segment, which the campaign then names.
            let segment = f.get("new_segment");
            if !segment.is_empty() {
                let who = def.get("who").cloned().unwrap_or_default();
                let mut seg = serde_json::json!({"id": segment});
                for k in ["where", "past"] {
                    if let Some(v) = who.get(k) {
                        seg[k] = v.clone();
                    }
                }
                let (status, body) = c.call(token, Method::POST, "/segments", Some(&seg)).await;
                if status != StatusCode::CREATED {
                    let mut problems = problems_of(&body);
                    for p in &mut problems {
                        p.0 = "new_segment".into();
                    }
                    if let Some(e) = body["error"].as_str() {
                        problems.push(("new_segment".into(), format!("segment {segment}: {e}")));
                    }
                    out.problems = problems;
                    let choices = choices(&c, token).await;
                    let page = pages::builder(&f, &out, &choices, &s.session.csrf);
                    return (StatusCode::UNPROCESSABLE_ENTITY, page).into_response();
                }
                if let Some(w) = def.get_mut("who").and_then(Value::as_object_mut) {
                    w.remove("where");
                    w.remove("past");
                    w.insert("segment".into(), segment.into());
                }
            }
            let (status, body) = c.call(token, Method::POST, "/campaigns", Some(&def)).await;
            match status {
                StatusCode::CREATED if action == "save" => {
                    return Redirect::to("/").into_response();
                }
                StatusCode::CREATED => {
                    let id = urlencode(def["id"].as_str().unwrap_or(""));
                    let (status, body) = c
                        .call(
                            token,
                            Method::POST,
                            &format!("/campaigns/{id}/publish"),
                            None,
                        )
                        .await;
                    if status == StatusCode::OK {
                        return Redirect::to("/").into_response();
                    }
                    out.problems = problems_of(&body);
                    if let Some(e) = body["error"].as_str() {
                        out.problems.push((String::new(), e.to_owned()));
                    }
                    out.notice = Some("Saved as a draft; publishing was refused.".into());
                }
                StatusCode::UNPROCESSABLE_ENTITY => out.problems = problems_of(&body),
                _ => {
                    let e = body["error"]
                        .as_str()
                        .unwrap_or("the API refused")
                        .to_owned();
                    out.problems.push((String::new(), e));
                }
            }
        }
        _ => {}
    }
    let choices = choices(&c, token).await;
    let status = if out.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (status, pages::builder(&f, &out, &choices, &s.session.csrf)).into_response()
}

/// `POST /campaigns/{id}/publish|stop`.
async fn action(
    State(c): State<Console>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    PostForm(pairs): PostForm<Vec<(String, String)>>,
) -> Response {
    let s = match c.checked(&headers, &Form(pairs)) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    if action != "publish" && action != "stop" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let path = format!("/campaigns/{}/{action}", urlencode(&id));
    let (status, body) = c.call(&s.session.token, Method::POST, &path, None).await;
    if status == StatusCode::OK {
        return Redirect::to("/").into_response();
    }
    let why = body["error"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| {
            let p = body["problems"].as_array()?;
            Some(
                p.iter()
                    .filter_map(|p| p["message"].as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .unwrap_or_else(|| status.to_string());
    (
        status,
        pages::message("Refused", &format!("{action} {id}: {why}")),
    )
        .into_response()
}

async fn report(State(c): State<Console>, s: Signed, Path(id): Path<String>) -> Response {
    let token = &s.session.token;
    let (status, view) = c
        .call(
            token,
            Method::GET,
            &format!("/campaigns/{}", urlencode(&id)),
            None,
        )
        .await;
    if status != StatusCode::OK {
        return (
            StatusCode::NOT_FOUND,
            pages::message("Not found", &format!("No campaign {id}.")),
        )
            .into_response();
    }
    let (status, report) = c
        .call(
            token,
            Method::GET,
            &format!("/campaigns/{}/report", urlencode(&id)),
            None,
        )
        .await;
    let daily_path = format!("/campaigns/{}/report/daily", urlencode(&id));
    let (_, daily) = c.call(token, Method::GET, &daily_path, None).await;
    let days = daily["days"].as_array().cloned().unwrap_or_default();
    pages::report(
        &view,
        (status == StatusCode::OK).then_some(&report),
        &days,
        &s.session.csrf,
    )
    .into_response()
}

/// The definition as the config file's `[[campaign]]` table.
fn toml_of(def: &Value) -> Option<String> {
    let table: toml::Value = serde_json::from_value(def.clone()).ok()?;
    let mut doc = toml::Table::new();
    doc.insert("campaign".into(), toml::Value::Array(vec![table]));
    toml::to_string(&doc).ok()
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::store::Store;

    #[derive(Debug)]
    struct Clock(AtomicI64);

    impl WallClock for Clock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A console over a real admin API (in-memory store) with token `secret`.
    fn console(clock: Arc<Clock>) -> Router {
        let api = crate::api::Api::new(
            Some("secret"),
            toml::Table::new(),
            Arc::new(Mutex::new(Store::default())),
            Arc::new(|_: &str, _: Option<&crate::store::Doc>| Ok(())),
            Arc::new(|_: &str| None),
            clock.clone(),
        );
        Console::new(api.router(), Some("secret"), clock).router()
    }

    async fn send(app: &Router, req: Request<Body>) -> Response {
        match app.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    async fn login(app: &Router, token: &str) -> Option<String> {
        let page = send(app, Request::get("/login").body(Body::empty()).unwrap()).await;
        let set = page.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        let login_cookie = set.split(';').next().unwrap().to_owned();
        let nonce = login_cookie.split_once('=').unwrap().1.to_owned();
        // Without the login cookie the form is refused.
        let bare = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf={nonce}&token={token}")))
            .unwrap();
        assert_eq!(send(app, bare).await.status(), StatusCode::FORBIDDEN);
        let req = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &login_cookie)
            .body(Body::from(format!("csrf={nonce}&token={token}")))
            .unwrap();
        let resp = send(app, req).await;
        if resp.status() != StatusCode::SEE_OTHER {
            return None;
        }
        let cookie = resp.headers().get(header::SET_COOKIE)?.to_str().ok()?;
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        Some(cookie.split(';').next()?.to_owned())
    }

    async fn list_status(app: &Router, cookie: &str) -> StatusCode {
        let req = Request::get("/")
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        send(app, req).await.status()
    }

    /// A session made by one replica is accepted by another with the same token, until it
    /// expires; a cookie with another MAC, and a wrong token, get none.
    #[tokio::test]
    async fn sessions_hold_on_every_replica_until_they_expire() {
        let clock = Arc::new(Clock(AtomicI64::new(1_800_000_000_000)));
        let (a, b) = (console(clock.clone()), console(clock.clone()));
        assert_eq!(login(&a, "wrong").await, None);
        let cookie = login(&a, "secret").await.expect("a session");
        assert_eq!(list_status(&b, &cookie).await, StatusCode::OK);
        let forged = format!("{}0", &cookie[..cookie.len() - 1]);
        let forged = if forged == cookie {
            format!("{}1", &cookie[..cookie.len() - 1])
        } else {
            forged
        };
        assert_eq!(list_status(&b, &forged).await, StatusCode::SEE_OTHER);
        clock
            .0
            .fetch_add(SESSION_TTL.as_millis() as i64, Ordering::SeqCst);
        assert_eq!(list_status(&a, &cookie).await, StatusCode::SEE_OTHER);
    }
}
