//! The TikTok response envelope and the business codes the simulator answers with.
//!
//! Every TikTok answer that reaches API logic is HTTP 200 with
//! `{"code", "message", "request_id", "data"}` (tiktok-api.md §1); `code == 0` is success and
//! carries `message: "OK"`. Codes and their meaning follow tiktok-api.md §8.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Business codes (tiktok-api.md §8), named after the official SDK where it names them.
pub(crate) mod codes {
    pub const OK: i64 = 0;
    /// No permission for the operation (token not linked to the advertiser).
    pub const NO_PERMISSION: i64 = 40001;
    /// Invalid or erroneous parameters; also "audience still processing".
    pub const INVALID_PARAM: i64 = 40002;
    /// Too many IDs in one request.
    pub const TOO_MANY_IDS: i64 = 40011;
    /// App-level QPS limit.
    pub const APP_QPS: i64 = 40100;
    /// Access token is null (header missing).
    pub const TOKEN_EMPTY: i64 = 40104;
    /// Access token is invalid.
    pub const TOKEN_INVALID: i64 = 40105;
    /// Advertiser-level QPS limit.
    pub const ADVERTISER_QPS: i64 = 40133;
}

/// A non-zero business answer: HTTP 200, `code != 0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub code: i64,
    pub message: String,
}

impl ApiError {
    pub fn new(code: i64, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// 40002 with TikTok's "Parameter error: ..." prefix.
    pub fn param(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(codes::INVALID_PARAM, format!("Parameter error: {detail}"))
    }

    /// The one 40002 text seen for a bad audience id (Segment fixture, tiktok-api.md §4.2).
    pub fn invalid_audience(audience_id: &str) -> ApiError {
        ApiError::new(
            codes::INVALID_PARAM,
            format!("Parameter error: invalid audience ID ({audience_id})"),
        )
    }
}

/// Message for an injected business code, so faults read like the real thing.
pub(crate) fn message_for(code: i64) -> &'static str {
    match code {
        codes::APP_QPS => "Requests made too frequently",
        codes::ADVERTISER_QPS => "Advertiser's QPS reaches QPS limit for current path",
        40200 => "Task error",
        40201 => "Task is not ready",
        40202 => "Write conflict, please retry",
        50000 => "System error",
        50002 => "Internal service error, please retry later",
        51003 => "DMP service error",
        60001 => "System is under maintenance, please retry later",
        _ => "Injected fault",
    }
}

/// Unique, TikTok-looking request ids: UTC timestamp digits plus a hex sequence number.
pub(crate) fn next_request_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:014}{seq:020X}")
}

/// The JSON envelope for a business result, always HTTP 200.
pub(crate) fn envelope(result: &Result<Value, ApiError>, request_id: &str) -> Response {
    let body = match result {
        Ok(data) => json!({"code": codes::OK, "message": "OK", "request_id": request_id,
            "data": data}),
        Err(e) => json!({"code": e.code, "message": e.message, "request_id": request_id,
            "data": {}}),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// A gateway-style HTML error page (e.g. the non-JSON 504 of tiktok-api.md §1).
pub(crate) fn html_error(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let body = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{code} {reason}</h1></center>\r\n</body>\r\n</html>\r\n"
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}
