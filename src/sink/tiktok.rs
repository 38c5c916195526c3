//! The TikTok Marketing API client (Business API v1.3, Segment "Partner" audiences).
//!
//! Limits and facts this client honours (from TikTok's Business API v1.3 documentation; the
//! section numbers refer to the team's API notes):
//! - base `https://business-api.tiktok.com/open_api/v1.3/`; every path ends with `/` (404
//!   otherwise); auth is the `Access-Token` header; JSON bodies; array query parameters are
//!   JSON text (§1);
//! - `POST segment/audience/` creates (`custom_audience_name`, cut by TikTok to 67 + "..."
//!   beyond 70 chars) — duplicates are allowed, so creation is serialised and remembered (§4.1);
//! - `POST segment/mapping/`: `advertiser_ids`, `action` `add`|`delete`, positional
//!   `id_schema` rows with `{}` placeholders, at most **10,000 rows** a request (§4.2–4.3);
//! - the Segment API allows about **50 QPS**; app tiers are 10–50 QPS (§4.3, §7);
//! - errors usually come as HTTP 200 with a non-zero `code`: see [`super::retry`] (§8).
//!
//! The token comes from an environment variable or a file (a mounted Kubernetes Secret),
//! re-read when the file changes. It is held in [`Secret`], whose `Debug` prints `***`, and
//! never appears in a log line or an error.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::retry::{RetryAction, RetryReason};
use crate::config::TokenSource;
use crate::identity::to_hex;
use crate::model::Ids;

/// A secret string: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Why the client cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no TikTok access token configured (set tiktok.access_token_env or tiktok.access_token_file)")]
    NoToken,
    #[error("TikTok access token: environment variable {0} is not set or empty")]
    TokenEnv(String),
    #[error("TikTok access token: cannot read {path}: {reason}")]
    TokenFile { path: PathBuf, reason: String },
    #[error("TikTok access token from {0} is not a valid HTTP header value (a control character or a line break inside it?): a local configuration error, nothing was sent")]
    TokenInvalid(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("no TikTok access token for advertiser {0}: set [tiktok] access_token_file or access_token_env, or a [[tiktok.account]] for it")]
    NoTokenFor(String),
}

/// The access token, re-read from its file when the file's modification time changes.
#[derive(Debug)]
pub struct Token {
    source: TokenSource,
    cached: Mutex<(Option<SystemTime>, Secret)>,
}

impl Token {
    pub fn load(source: &TokenSource) -> Result<Token, ClientError> {
        let (mtime, secret) = Self::read(source)?;
        Ok(Token {
            source: source.clone(),
            cached: Mutex::new((mtime, secret)),
        })
    }

    /// A fixed token (tests, tools).
    pub fn fixed(secret: Secret) -> Token {
        Token {
            source: TokenSource::None,
            cached: Mutex::new((None, secret)),
        }
    }

    fn read(source: &TokenSource) -> Result<(Option<SystemTime>, Secret), ClientError> {
        let (mtime, secret) = Self::read_raw(source)?;
        // Checked here, so that a bad token is a configuration error at start (or a kept
        // previous token on rotation), never an answer attributed to TikTok.
        if reqwest::header::HeaderValue::from_str(secret.expose()).is_err() {
            let from = match source {
                TokenSource::Env(var) => format!("environment variable {var}"),
                TokenSource::File(path) => path.display().to_string(),
                TokenSource::None => "the configuration".into(),
            };
            return Err(ClientError::TokenInvalid(from));
        }
        Ok((mtime, secret))
    }

    fn read_raw(source: &TokenSource) -> Result<(Option<SystemTime>, Secret), ClientError> {
        match source {
            TokenSource::None => Err(ClientError::NoToken),
            TokenSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok((None, Secret(v.trim().to_owned()))),
                _ => Err(ClientError::TokenEnv(var.clone())),
            },
            TokenSource::File(path) => {
                let err = |e: std::io::Error| ClientError::TokenFile {
                    path: path.clone(),
                    reason: e.kind().to_string(),
                };
                let mtime = std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .map_err(err)?;
                let text = std::fs::read_to_string(path).map_err(err)?;
                if text.trim().is_empty() {
                    return Err(ClientError::TokenFile {
                        path: path.clone(),
                        reason: "empty".into(),
                    });
                }
                Ok((Some(mtime), Secret(text.trim().to_owned())))
            }
        }
    }

    /// The current token; a changed file is re-read (a rotated Secret), a failed re-read keeps
    /// the last good token.
    pub fn current(&self) -> Secret {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let TokenSource::File(path) = &self.source {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if mtime.is_some() && mtime != cached.0 {
                match Self::read(&self.source) {
                    Ok(fresh) => *cached = fresh,
                    Err(e) => tracing::warn!(error = %e, "keeping the previous TikTok token"),
                }
            }
        }
        cached.1.clone()
    }
}

/// The tokens of the sink: one per `[[tiktok.account]]`, and the default for every other
/// advertiser.
#[derive(Debug)]
pub struct Tokens {
    default: Option<Token>,
    accounts: Vec<(String, Token)>,
}

impl From<Token> for Tokens {
    fn from(t: Token) -> Tokens {
        Tokens {
            default: Some(t),
            accounts: Vec::new(),
        }
    }
}

impl Tokens {
    /// Reads every configured token; at least one must be configured.
    pub fn load(settings: &crate::config::TikTokSettings) -> Result<Tokens, ClientError> {
        let default = match &settings.token {
            TokenSource::None if !settings.accounts.is_empty() => None,
            source => Some(Token::load(source)?),
        };
        let accounts = (settings.accounts.iter())
            .map(|a| Ok((a.advertiser_id.clone(), Token::load(&a.token)?)))
            .collect::<Result<_, ClientError>>()?;
        Ok(Tokens { default, accounts })
    }

    /// The token for `advertiser`: its account's, else the default.
    pub fn for_advertiser(&self, advertiser: &str) -> Option<&Token> {
        (self.accounts.iter())
            .find(|(a, _)| a == advertiser)
            .map(|(_, t)| t)
            .or(self.default.as_ref())
    }

    /// Whether `advertiser` has a token of its own (not the default).
    pub fn has_own(&self, advertiser: &str) -> bool {
        self.accounts.iter().any(|(a, _)| a == advertiser)
    }
}

/// An error and its sources, `: `-joined (reqwest's own text stops at "error sending request").
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Mapping action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapAction {
    Add,
    Delete,
}

impl MapAction {
    pub fn as_str(self) -> &'static str {
        match self {
            MapAction::Add => "add",
            MapAction::Delete => "delete",
        }
    }
}

/// The HTTP client for the endpoints the sink uses.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    tokens: Tokens,
    last_retry: Mutex<Option<String>>,
}

impl Client {
    pub fn new(
        base_url: &str,
        tokens: impl Into<Tokens>,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            tokens: tokens.into(),
            last_retry: Mutex::new(None),
        })
    }

    /// What the last retried answer was (a transport error's cause chain, or the answer's
    /// class and HTTP status), for "did not answer after N attempts" messages.
    pub fn last_retry(&self) -> Option<String> {
        self.last_retry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note(&self, what: String) {
        *self.last_retry.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }

    fn url(&self, path: &str) -> String {
        format!("{}/open_api/v1.3/{path}", self.base)
    }

    /// Whether requests for `advertiser` have a token, and which (`true`: its own account's).
    pub fn token_for(&self, advertiser: &str) -> Option<bool> {
        (self.tokens.for_advertiser(advertiser)).map(|_| self.tokens.has_own(advertiser))
    }

    /// Every advertiser the config gives a token of its own, in config order.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        self.tokens.accounts.iter().map(|(a, _)| a.as_str())
    }

    async fn send(&self, advertiser: &str, req: reqwest::RequestBuilder) -> RetryAction {
        let Some(token) = self.tokens.for_advertiser(advertiser) else {
            return RetryAction::Permanent {
                code: 0,
                message: ClientError::NoTokenFor(advertiser.to_owned()).to_string(),
            };
        };
        let token = token.current();
        let Ok(mut value) = reqwest::header::HeaderValue::from_str(token.expose()) else {
            // `Token` refuses such tokens when it reads them; only a `Token::fixed` gets here.
            return RetryAction::Permanent {
                code: 0,
                message: "the configured access token is not a valid HTTP header value (local \
                          configuration error; nothing was sent)"
                    .into(),
            };
        };
        // Marked sensitive, so no HTTP-layer debug output ever prints it.
        value.set_sensitive(true);
        let resp = req.header("Access-Token", value).send().await;
        // Transport errors keep their cause chain (connection refused, DNS, TLS, timeout): it
        // names hosts and the request URL (advertiser and audience ids), never the token
        // (a header) or user data (the body).
        let action = match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(body) => {
                        let action = super::retry::classify(status, &body);
                        if let RetryAction::Retry(reason) = &action {
                            self.note(format!("{} answer (HTTP {status})", reason.as_str()));
                        }
                        action
                    }
                    Err(e) => {
                        self.note(format!("reading the answer: {}", causes(&e)));
                        RetryAction::Retry(RetryReason::Transport)
                    }
                }
            }
            Err(e) => {
                self.note(causes(&e));
                RetryAction::Retry(RetryReason::Transport)
            }
        };
        action
    }

    /// `POST segment/audience/` create; `Ok(data)` carries `audience_id`.
    pub async fn create_audience(&self, advertiser: &str, name: &str) -> RetryAction {
        let body = json!({
            "advertiser_id": advertiser,
            "action": "create",
            "custom_audience_name": name,
        });
        self.send(
            advertiser,
            self.http.post(self.url("segment/audience/")).json(&body),
        )
        .await
    }

    /// `GET dmp/custom_audience/get/` for one audience.
    pub async fn get_audience(&self, advertiser: &str, audience: &str) -> RetryAction {
        let ids = serde_json::to_string(&[audience]).expect("serialisable");
        let req = self
            .http
            .get(self.url("dmp/custom_audience/get/"))
            .query(&[("advertiser_id", advertiser), ("custom_audience_ids", &ids)]);
        self.send(advertiser, req).await
    }

    /// `GET dmp/custom_audience/list/`, one page of 100.
    pub async fn list_audiences(&self, advertiser: &str, page: u32) -> RetryAction {
        let page = page.to_string();
        let req = self
            .http
            .get(self.url("dmp/custom_audience/list/"))
            .query(&[
                ("advertiser_id", advertiser),
                ("page", &page),
                ("page_size", "100"),
            ]);
        self.send(advertiser, req).await
    }

    /// `POST segment/mapping/`: one row per user, positional against the schema.
    pub async fn mapping(
        &self,
        advertiser: &str,
        audience: &str,
        action: MapAction,
        email: bool,
        phone: bool,
        users: &[Ids],
    ) -> RetryAction {
        let body = mapping_body(advertiser, audience, action, email, phone, users);
        self.send(
            advertiser,
            self.http.post(self.url("segment/mapping/")).json(&body),
        )
        .await
    }

    /// `GET advertiser/info/` for one advertiser, with its token: whether the token works for
    /// it (and TikTok's name, status, currency and time zone of the account).
    pub async fn advertiser_info(&self, advertiser: &str) -> RetryAction {
        let ids = serde_json::to_string(&[advertiser]).expect("serialisable");
        let fields = r#"["advertiser_id","name","status","currency","timezone"]"#;
        let req = self
            .http
            .get(self.url("advertiser/info/"))
            .query(&[("advertiser_ids", ids.as_str()), ("fields", fields)]);
        self.send(advertiser, req).await
    }
}

/// An ad account as `GET /api/v1/ad-accounts` shows it: which token serves it and whether
/// TikTok's `advertiser/info/` accepts that token for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccountStatus {
    pub advertiser_id: String,
    /// `account` (its own `[[tiktok.account]]` token), `default` (`[tiktok]`'s), `none`.
    pub token: &'static str,
    /// The token works for the account.
    pub ok: bool,
    /// TikTok's name of the account, and its status, currency and time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Why not `ok` (TikTok's code and message, or the transport's failure; never a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Client {
    /// Asks TikTok once whether `advertiser`'s token works for it (no retries: a status page
    /// answers now).
    pub async fn account_status(&self, advertiser: &str) -> AccountStatus {
        let token = match self.token_for(advertiser) {
            Some(true) => "account",
            Some(false) => "default",
            None => "none",
        };
        let mut status = AccountStatus {
            advertiser_id: advertiser.to_owned(),
            token,
            ok: false,
            name: None,
            status: None,
            currency: None,
            timezone: None,
            error: None,
        };
        match self.advertiser_info(advertiser).await {
            RetryAction::Ok(data) => {
                let entry = (data
                    .get("list")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten())
                .find(|e| e.get("advertiser_id").and_then(Value::as_str) == Some(advertiser));
                let field = |k: &str| {
                    entry
                        .and_then(|e| e.get(k))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                status.ok = entry.is_some();
                status.name = field("name");
                status.status = field("status");
                status.currency = field("currency");
                status.timezone = field("timezone");
                if entry.is_none() {
                    status.error = Some("TikTok did not list the account".into());
                }
            }
            RetryAction::Permanent { code, message } => {
                status.error = Some(format!("{code}: {message}"));
            }
            RetryAction::Retry(reason) => {
                let last = self
                    .last_retry()
                    .unwrap_or_else(|| reason.as_str().to_owned());
                status.error = Some(format!("TikTok did not answer ({last})"));
            }
            RetryAction::Split => status.error = Some("unexpected answer".into()),
        }
        status
    }
}

/// The JSON body of a mapping request: `id_schema` in the fixed order EMAIL, PHONE (only the
/// campaign's identifiers), `{}` where a user lacks one.
pub fn mapping_body(
    advertiser: &str,
    audience: &str,
    action: MapAction,
    email: bool,
    phone: bool,
    users: &[Ids],
) -> Value {
    let mut schema = Vec::new();
    if email {
        schema.push("EMAIL_SHA256");
    }
    if phone {
        schema.push("PHONE_SHA256");
    }
    let cell = |h: &Option<crate::identity::IdHash>| match h {
        Some(h) => json!({ "id": to_hex(h), "audience_ids": [audience] }),
        None => json!({}),
    };
    let rows: Vec<Value> = users
        .iter()
        .map(|ids| {
            let mut row = Vec::with_capacity(2);
            if email {
                row.push(cell(&ids.email));
            }
            if phone {
                row.push(cell(&ids.phone));
            }
            Value::Array(row)
        })
        .collect();
    json!({
        "advertiser_ids": [advertiser],
        "action": action.as_str(),
        "id_schema": schema,
        "batch_data": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_that_is_no_header_value_is_a_local_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "canary-part-one\ncanary-part-two\n").unwrap();
        let err = Token::load(&TokenSource::File(path.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a valid HTTP header value"), "{err}");
        assert!(err.contains(&path.display().to_string()) && !err.contains("TikTok refused"));
        assert!(!err.contains("canary"), "the token never appears: {err}");
    }

    /// A refused connection is retried, and its cause is kept for the final message.
    #[tokio::test]
    async fn transport_errors_keep_their_cause() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Client::new(
            &format!("http://127.0.0.1:{port}"),
            Token::fixed(Secret::new("t")),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            client.get_audience("1", "2").await,
            RetryAction::Retry(RetryReason::Transport)
        );
        let last = client.last_retry().unwrap();
        assert!(last.to_lowercase().contains("connection refused"), "{last}");
    }

    #[test]
    fn secret_debug_hides_the_value() {
        let s = Secret::new("canary-secret");
        assert_eq!(format!("{s:?}"), "***");
        let t = Token::fixed(s);
        assert!(!format!("{t:?}").contains("canary"));
    }

    #[test]
    fn a_rotated_token_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let token = Token::load(&TokenSource::File(path.clone())).unwrap();
        assert_eq!(token.current().expose(), "first");
        std::fs::write(&path, "second").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(token.current().expose(), "second");
        let err = Token::load(&TokenSource::File(dir.path().join("missing"))).unwrap_err();
        assert!(err.to_string().contains("cannot read"));
        assert!(matches!(
            Token::load(&TokenSource::None),
            Err(ClientError::NoToken)
        ));
    }

    #[test]
    fn mapping_rows_are_positional_with_placeholders() {
        let ids = [
            Ids {
                email: Some([1; 32]),
                phone: None,
            },
            Ids {
                email: None,
                phone: Some([2; 32]),
            },
        ];
        let body = mapping_body("7", "9", MapAction::Delete, true, true, &ids);
        assert_eq!(body["action"], "delete");
        assert_eq!(body["advertiser_ids"], json!(["7"]));
        assert_eq!(body["id_schema"], json!(["EMAIL_SHA256", "PHONE_SHA256"]));
        assert_eq!(body["batch_data"][0][0]["id"], to_hex(&[1; 32]));
        assert_eq!(body["batch_data"][0][0]["audience_ids"], json!(["9"]));
        assert_eq!(body["batch_data"][0][1], json!({}));
        assert_eq!(body["batch_data"][1][0], json!({}));
        let email_only = mapping_body("7", "9", MapAction::Add, true, false, &ids);
        assert_eq!(email_only["id_schema"], json!(["EMAIL_SHA256"]));
        assert_eq!(email_only["batch_data"][1], json!([{}]));
    }
}
