//! Response classification and backoff: every TikTok response is classified once, from its
//! HTTP status *and* its body `code` (TikTok answers most errors with HTTP 200), into a
//! [`RetryAction`] (tiktok-api.md §8).
//!
//! | answer | action |
//! | --- | --- |
//! | `code` 0, 20001 (partial OK), 40050 (duplicate request) | ok |
//! | 40100, 40016, 40133, 40132, 61000 (throttles) | retry, `throttled` |
//! | 40002 "not editable … audience status" / "processing" (audience not ready) | retry, `not_ready` |
//! | 40201, 40202, 50000, 50002, 51xxx, 52xxx, 60001 | retry, `server` |
//! | 40011 (too many ids) | split the batch and resend |
//! | any other code (auth 4010x, 40001, bad parameters 40000/40002, …) | permanent |
//! | HTTP 429, 5xx, a non-JSON body, a timeout, a reset | retry, `transport` |
//! | other HTTP 4xx (e.g. 404: wrong path) | permanent |

use std::time::Duration;

use serde::Deserialize;

/// Why a request is retried (a closed set: it is a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetryReason {
    Throttled,
    NotReady,
    Server,
    Transport,
}

impl RetryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryReason::Throttled => "throttled",
            RetryReason::NotReady => "not_ready",
            RetryReason::Server => "server",
            RetryReason::Transport => "transport",
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAction {
    Ok(serde_json::Value),
    Retry(RetryReason),
    /// Too many ids: split the batch and send the halves.
    Split,
    /// Will not succeed by retrying. `code` is TikTok's code, or the HTTP status.
    Permanent {
        code: i64,
        message: String,
    },
}

#[derive(Deserialize)]
struct Envelope {
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// Classifies one HTTP answer.
pub fn classify(status: u16, body: &[u8]) -> RetryAction {
    let envelope: Option<Envelope> = serde_json::from_slice(body).ok();
    let Some(env) = envelope else {
        // Gateways answer 5xx (and sometimes 200) with HTML: the API logic was not reached.
        return match status {
            200..=299 | 429 | 500..=599 => RetryAction::Retry(RetryReason::Transport),
            _ => RetryAction::Permanent {
                code: i64::from(status),
                message: format!("HTTP {status} without a JSON body"),
            },
        };
    };
    if status == 429 || status >= 500 {
        return RetryAction::Retry(RetryReason::Transport);
    }
    if !(200..300).contains(&status) {
        return RetryAction::Permanent {
            code: i64::from(status),
            message: format!("HTTP {status}"),
        };
    }
    classify_code(env.code, env.message, env.data)
}

fn classify_code(code: i64, message: String, data: serde_json::Value) -> RetryAction {
    match code {
        0 | 20001 | 40050 => RetryAction::Ok(data),
        40100 | 40016 | 40133 | 40132 | 61000 => RetryAction::Retry(RetryReason::Throttled),
        40002 if is_not_ready(&message) => RetryAction::Retry(RetryReason::NotReady),
        40201 | 40202 | 50000..=52999 | 60001 => RetryAction::Retry(RetryReason::Server),
        40011 => RetryAction::Split,
        _ => RetryAction::Permanent { code, message },
    }
}

/// TikTok reports an audience still being set up as a parameter error (tiktok-api.md §6).
fn is_not_ready(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not editable") || m.contains("processing") || m.contains("not ready")
}

/// Exponential backoff with full jitter: attempt `n` (from 0) waits a uniform time in
/// `[base·2ⁿ / 2, base·2ⁿ]`, capped; a not-ready audience waits at least a second.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    pub fn delay(&self, attempt: u32, reason: RetryReason, rng: &mut fastrand::Rng) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.cap);
        let jittered = exp / 2 + exp.mul_f64(rng.f64() / 2.0);
        match reason {
            RetryReason::NotReady => jittered.max(Duration::from_secs(1)),
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i64, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "code": code, "message": message, "request_id": "r", "data": {"x": 1}
        }))
        .unwrap()
    }

    #[test]
    fn success_codes() {
        for code in [0, 20001, 40050] {
            assert!(
                matches!(classify(200, &body(code, "OK")), RetryAction::Ok(_)),
                "{code}"
            );
        }
        let RetryAction::Ok(data) = classify(200, &body(0, "OK")) else {
            panic!()
        };
        assert_eq!(data["x"], 1);
    }

    #[test]
    fn throttles_and_server_errors_retry() {
        for code in [40100, 40016, 40133, 40132, 61000] {
            assert_eq!(
                classify(200, &body(code, "Requests made too frequently")),
                RetryAction::Retry(RetryReason::Throttled)
            );
        }
        for code in [40201, 40202, 50000, 50002, 51003, 52001, 60001] {
            assert_eq!(
                classify(200, &body(code, "x")),
                RetryAction::Retry(RetryReason::Server)
            );
        }
    }

    #[test]
    fn not_ready_is_retried_other_parameter_errors_are_not() {
        let msg = "Audience is not editable, please check audience status (123)";
        assert_eq!(
            classify(200, &body(40002, msg)),
            RetryAction::Retry(RetryReason::NotReady)
        );
        assert!(matches!(
            classify(200, &body(40002, "Parameter error: invalid audience ID")),
            RetryAction::Permanent { code: 40002, .. }
        ));
    }

    #[test]
    fn auth_errors_are_permanent_and_40011_splits() {
        for code in [40001, 40104, 40105, 40102, 40118, 40000, 40007] {
            assert!(matches!(
                classify(200, &body(code, "x")),
                RetryAction::Permanent { .. }
            ));
        }
        assert_eq!(classify(200, &body(40011, "too many")), RetryAction::Split);
    }

    #[test]
    fn transport_level_answers() {
        let html = b"<html><body>504 Gateway Time-out</body></html>";
        assert_eq!(
            classify(504, html),
            RetryAction::Retry(RetryReason::Transport)
        );
        assert_eq!(
            classify(200, html),
            RetryAction::Retry(RetryReason::Transport)
        );
        assert_eq!(
            classify(503, &body(0, "OK")),
            RetryAction::Retry(RetryReason::Transport)
        );
        assert_eq!(
            classify(429, b"slow down"),
            RetryAction::Retry(RetryReason::Transport)
        );
        assert!(matches!(
            classify(404, b"Not Found"),
            RetryAction::Permanent { code: 404, .. }
        ));
    }

    #[test]
    fn backoff_grows_jittered_and_capped() {
        let b = Backoff::default();
        let mut rng = fastrand::Rng::with_seed(1);
        for attempt in 0..30 {
            let d = b.delay(attempt, RetryReason::Server, &mut rng);
            let exp = (Duration::from_millis(100) * 2u32.pow(attempt.min(20))).min(b.cap);
            assert!(d >= exp / 2 && d <= exp, "{attempt}: {d:?}");
        }
        assert!(b.delay(0, RetryReason::NotReady, &mut rng) >= Duration::from_secs(1));
    }
}
