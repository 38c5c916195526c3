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
    token: Token,
    last_retry: Mutex<Option<String>>,
}

impl Client {
    pub fn new(base_url: &str, token: Token, timeout: Duration) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Client {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token,
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

    async fn send(&self, req: reqwest::RequestBuilder) -> RetryAction {
        let token = self.token.current();
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
        self.send(self.http.post(self.url("segment/audience/")).json(&body))
            .await
    }

    /// `GET dmp/custom_audience/get/` for one audience.
    pub async fn get_audience(&self, advertiser: &str, audience: &str) -> RetryAction {
        let ids = serde_json::to_string(&[audience]).expect("serialisable");
        let req = self
            .http
            .get(self.url("dmp/custom_audience/get/"))
            .query(&[("advertiser_id", advertiser), ("custom_audience_ids", &ids)]);
        self.send(req).await
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
        self.send(req).await
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
        self.send(self.http.post(self.url("segment/mapping/")).json(&body))
            .await
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
