//! Read-only DMP endpoints used to verify audiences: `dmp/custom_audience/get/` and `list/`
//! (tiktok-api.md §3.4–3.5).
//!
//! Query parameters follow §1: array parameters are JSON text (`custom_audience_ids=["123"]`).
//! `get/` names the type `type`, `list/` names it `audience_type` (§3.5). There is no delayed
//! size model: `cover_num` is the member count once it reaches 1,000 and 0 below (§6), and
//! `is_valid` is true once the audience is past its not-ready window and has a non-zero
//! `cover_num`.

use std::collections::HashMap;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::envelope::ApiError;
use super::state::{format_time, Audience, Registry};

/// At most this many ids in `custom_audience_ids`, and at most this `page_size`.
const MAX_IDS: usize = 100;
/// Matched users below which TikTok reports a size of 0 (tiktok-api.md §6).
const MIN_REPORTED_SIZE: usize = 1_000;
/// `history_size` when the query does not give one.
const DEFAULT_HISTORY: usize = 10;
const YEAR_SECS: i64 = 365 * 24 * 3600;

pub(crate) fn query_advertiser(query: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    match query.get("advertiser_id").map(String::as_str) {
        Some(id) if !id.is_empty() => Ok(vec![id.to_owned()]),
        _ => Err(ApiError::param("advertiser_id is required")),
    }
}

/// `custom_audience_ids` as JSON text: 1..=100 ids (strings, or integers which are converted).
fn audience_ids(query: &HashMap<String, String>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(text) = query.get("custom_audience_ids") else {
        return Ok(None);
    };
    let bad = || ApiError::param("custom_audience_ids must be a JSON array of 1 to 100 ids");
    let values: Vec<Value> = serde_json::from_str(text).map_err(|_| bad())?;
    if values.is_empty() || values.len() > MAX_IDS {
        return Err(bad());
    }
    values
        .into_iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() => Ok(s),
            Value::Number(n) if n.is_u64() => Ok(n.to_string()),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn number(
    query: &HashMap<String, String>,
    key: &str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ApiError> {
    match query.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                ApiError::param(format!(
                    "{key} must be an integer within {}..={}",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

fn details(a: &Audience, now: Instant, type_key: &str) -> Value {
    let members = a.members.len();
    let cover_num = if members >= MIN_REPORTED_SIZE {
        members
    } else {
        0
    };
    json!({
        "audience_id": a.audience_id,
        "name": a.name,
        type_key: a.audience_type,
        "audience_sub_type": "NORMAL",
        "calculate_type": a.calculate_type,
        "cover_num": cover_num,
        "shared": false,
        "is_creator": true,
        "owner_id": a.advertiser_id,
        "is_valid": a.is_ready(now) && cover_num > 0,
        "is_expiring": false,
        "is_auto_refresh": false,
        "rule": "{\"inclusions\": null, \"exclusions\": null}",
        "lookalike_spec": null,
        "msg": "",
        "error_msg": "",
        "create_time": format_time(a.created_unix),
        "expired_time": format_time(a.created_unix + YEAR_SECS),
    })
}

/// `get/`: details plus newest-first history for 1–100 audiences of the advertiser.
pub(crate) fn get(
    registry: &Registry,
    query: &HashMap<String, String>,
    now: Instant,
) -> Result<Value, ApiError> {
    let advertiser = &query_advertiser(query)?[0];
    let ids =
        audience_ids(query)?.ok_or_else(|| ApiError::param("custom_audience_ids is required"))?;
    let history_size = number(query, "history_size", DEFAULT_HISTORY, 0..=MAX_IDS)?;
    let mut list = Vec::with_capacity(ids.len());
    for id in &ids {
        let a = registry
            .get(id)
            .filter(|a| &a.advertiser_id == advertiser)
            .ok_or_else(|| ApiError::invalid_audience(id))?;
        let history: Vec<_> = a.history.iter().rev().take(history_size).collect();
        list.push(json!({
            "audience_details": details(a, now, "type"),
            "audience_history": history,
        }));
    }
    Ok(json!({ "list": list }))
}

/// `list/`: the advertiser's audiences in creation order, paged.
pub(crate) fn list(
    registry: &Registry,
    query: &HashMap<String, String>,
    now: Instant,
) -> Result<Value, ApiError> {
    let advertiser = &query_advertiser(query)?[0];
    let filter = audience_ids(query)?;
    let page = number(query, "page", 1, 1..=usize::MAX)?;
    let page_size = number(query, "page_size", 10, 1..=MAX_IDS)?;
    let matching: Vec<&Audience> = registry
        .ordered()
        .into_iter()
        .filter(|a| &a.advertiser_id == advertiser)
        .filter(|a| {
            filter
                .as_ref()
                .is_none_or(|ids| ids.contains(&a.audience_id))
        })
        .collect();
    let total = matching.len();
    let list: Vec<Value> = matching
        .iter()
        .skip((page - 1).saturating_mul(page_size))
        .take(page_size)
        .map(|a| details(a, now, "audience_type"))
        .collect();
    Ok(json!({
        "list": list,
        "page_info": {
            "page": page,
            "page_size": page_size,
            "total_number": total,
            "total_page": total.div_ceil(page_size),
        },
    }))
}
