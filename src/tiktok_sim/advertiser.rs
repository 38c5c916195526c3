//! `GET /open_api/v1.3/advertiser/info/` (TikTok's "Get ad account details"): the accounts of
//! `advertiser_ids` (JSON text, 1–100 ids), each linked to the request's token (else the
//! request gets 40001 in the common pipeline). `fields` (JSON text) limits what is returned;
//! `advertiser_id` always is. The simulator's accounts are all `STATUS_ENABLE`, in USD and
//! `Etc/GMT`, named `Simulated advertiser ID`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::envelope::ApiError;

const MAX_IDS: usize = 100;
const FIELDS: &[&str] = &["advertiser_id", "name", "status", "currency", "timezone"];

fn ids(query: &HashMap<String, String>, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    let Some(text) = query.get(key) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::param(format!(
            "{key} must be a JSON array of 1 to {MAX_IDS} strings"
        ))
    };
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

/// The advertisers the request asks for (step 4 of the pipeline).
pub(crate) fn query_advertisers(query: &HashMap<String, String>) -> Result<Vec<String>, ApiError> {
    ids(query, "advertiser_ids")?.ok_or_else(|| ApiError::param("advertiser_ids is required"))
}

/// The answer's `data`.
pub(crate) fn info(query: &HashMap<String, String>) -> Result<Value, ApiError> {
    let advertisers = query_advertisers(query)?;
    let fields = match ids(query, "fields")? {
        None => FIELDS.iter().map(|f| (*f).to_owned()).collect(),
        Some(f) => f,
    };
    let list: Vec<Value> = advertisers
        .iter()
        .map(|id| {
            let all = json!({
                "advertiser_id": id,
                "name": format!("Simulated advertiser {id}"),
                "status": "STATUS_ENABLE",
                "currency": "USD",
                "timezone": "Etc/GMT",
            });
            let mut out = Map::new();
            for (k, v) in all.as_object().expect("object") {
                if k == "advertiser_id" || fields.iter().any(|f| f == k) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Value::Object(out)
        })
        .collect();
    Ok(json!({ "list": list }))
}
