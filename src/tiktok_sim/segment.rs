//! The Segment ("Streaming", Partner audience) API: `/segment/audience/` and `/segment/mapping/`
//! (tiktok-api.md §4, checklist §11.3–4).
//!
//! Validation is complete before anything is applied, so a rejected request changes nothing.
//! Every parameter problem is code 40002 ("Parameter error: ..."), except more than
//! [`MAX_ROWS`] rows, which is 40011. Unknown body fields are ignored, as TikTok does.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::envelope::{codes, ApiError};
use super::state::{truncate_name, AudienceSeed, Registry, PARTNER};
use super::IdType;

/// Users (`batch_data` rows) per mapping request (tiktok-api.md §4.3).
pub(crate) const MAX_ROWS: usize = 10_000;

fn str_field<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::param(format!("{key} must be a string"))),
    }
}

fn required_str<'a>(body: &'a Value, key: &str) -> Result<&'a str, ApiError> {
    str_field(body, key)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::param(format!("{key} is required")))
}

/// A non-empty array of non-empty strings.
fn string_array(value: Option<&Value>, what: &str) -> Result<Vec<String>, ApiError> {
    let items = value
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::param(format!("{what} must be a non-empty array of strings")))?;
    items
        .iter()
        .map(|v| match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            _ => Err(ApiError::param(format!(
                "{what} must contain only non-empty strings"
            ))),
        })
        .collect()
}

/// Whether the id of an audience the advertisers may map into or delete, or the error why not.
fn check_target(
    registry: &Registry,
    advertisers: &[String],
    audience_id: &str,
) -> Result<(), ApiError> {
    let audience = registry
        .get(audience_id)
        .filter(|a| advertisers.contains(&a.advertiser_id))
        .ok_or_else(|| ApiError::invalid_audience(audience_id))?;
    if audience.audience_type != PARTNER {
        // Braze reports "Audience Does Not Exist" for Customer File / Lookalike targets (§4.1).
        return Err(ApiError::new(
            codes::INVALID_PARAM,
            format!("Audience does not exist: {audience_id} is not a Partner audience"),
        ));
    }
    Ok(())
}

// === /segment/audience/ ===

pub(crate) fn audience_advertiser(body: &Value) -> Result<Vec<String>, ApiError> {
    Ok(vec![required_str(body, "advertiser_id")?.to_owned()])
}

/// Create (default) or delete a Partner audience. Returns `(data, changed)`.
pub(crate) fn audience(
    registry: &mut Registry,
    body: &Value,
    ready_at: Option<Instant>,
) -> Result<(Value, bool), ApiError> {
    let advertiser_id = required_str(body, "advertiser_id")?;
    let action = str_field(body, "action")?
        .unwrap_or("create")
        .to_ascii_lowercase();
    match action.as_str() {
        "create" => {
            let name = required_str(body, "custom_audience_name")?;
            let seed = AudienceSeed {
                advertiser_id: advertiser_id.to_owned(),
                audience_id: None,
                name: Some(truncate_name(name)),
                audience_type: PARTNER.to_owned(),
            };
            let id = registry.insert(seed, ready_at)?;
            Ok((json!({ "audience_id": id }), true))
        }
        "delete" => {
            let id = required_str(body, "delete_audience_id")?;
            check_target(registry, &[advertiser_id.to_owned()], id)?;
            registry.remove(id);
            Ok((json!({}), true))
        }
        _ => Err(ApiError::param("action must be create or delete")),
    }
}

// === /segment/mapping/ ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MappingAction {
    Add,
    Delete,
}

/// One id of one user, with the audiences it goes to.
struct Entry {
    id_type: IdType,
    id: String,
    audience_ids: Vec<String>,
}

/// `advertiser_ids`, duplicates dropped (so a repeated id is not charged twice for QPS).
pub(crate) fn mapping_advertisers(body: &Value) -> Result<Vec<String>, ApiError> {
    let mut ids = string_array(body.get("advertiser_ids"), "advertiser_ids")?;
    let mut seen = BTreeSet::new();
    ids.retain(|id| seen.insert(id.clone()));
    Ok(ids)
}

fn parse_schema(body: &Value) -> Result<Vec<IdType>, ApiError> {
    let names = string_array(body.get("id_schema"), "id_schema")?;
    let mut seen = BTreeSet::new();
    names
        .iter()
        .map(|name| {
            let t = IdType::parse(name).ok_or_else(|| {
                ApiError::param(format!(
                    "id_schema value {name:?} is not one of EMAIL_SHA256, PHONE_SHA256, \
                     IDFA_SHA256, IDFA_MD5, AAID_SHA256, AAID_MD5"
                ))
            })?;
            if !seen.insert(t) {
                return Err(ApiError::param(format!("id_schema repeats {}", t.as_str())));
            }
            Ok(t)
        })
        .collect()
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn parse_cell(cell: &Value, id_type: IdType, at: &str) -> Result<Option<Entry>, ApiError> {
    let obj = cell
        .as_object()
        .ok_or_else(|| ApiError::param(format!("{at} must be an object or {{}}")))?;
    if obj.is_empty() {
        return Ok(None);
    }
    let id = match obj.get("id") {
        Some(Value::String(s)) => s,
        _ => return Err(ApiError::param(format!("{at}.id must be a string"))),
    };
    let hex_len = id_type.hex_len();
    if !is_lower_hex(id, hex_len) {
        return Err(ApiError::param(format!(
            "{at}.id must be {hex_len} lowercase hex characters ({})",
            id_type.as_str()
        )));
    }
    let audience_ids = string_array(obj.get("audience_ids"), &format!("{at}.audience_ids"))?;
    Ok(Some(Entry {
        id_type,
        id: id.clone(),
        audience_ids,
    }))
}

fn parse_rows(body: &Value, schema: &[IdType]) -> Result<Vec<Entry>, ApiError> {
    let rows = body
        .get("batch_data")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::param("batch_data must be a non-empty array"))?;
    if rows.len() > MAX_ROWS {
        return Err(ApiError::new(
            codes::TOO_MANY_IDS,
            format!(
                "Too many IDs: batch_data has {} users, the maximum is {MAX_ROWS}",
                rows.len()
            ),
        ));
    }
    let mut entries = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let cells = row
            .as_array()
            .ok_or_else(|| ApiError::param(format!("batch_data[{i}] must be an array")))?;
        if cells.len() != schema.len() {
            return Err(ApiError::param(format!(
                "batch_data[{i}] has {} elements but id_schema has {}",
                cells.len(),
                schema.len()
            )));
        }
        let before = entries.len();
        for (j, (cell, id_type)) in cells.iter().zip(schema).enumerate() {
            entries.extend(parse_cell(
                cell,
                *id_type,
                &format!("batch_data[{i}][{j}]"),
            )?);
        }
        if entries.len() == before {
            return Err(ApiError::param(format!("batch_data[{i}] contains no id")));
        }
    }
    Ok(entries)
}

/// Add or delete ids (set semantics). Returns `(data, changed)`.
pub(crate) fn mapping(
    registry: &mut Registry,
    body: &Value,
    now: Instant,
) -> Result<(Value, bool), ApiError> {
    let advertisers = mapping_advertisers(body)?;
    let action = match str_field(body, "action")?
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("add") => MappingAction::Add,
        Some("delete") => MappingAction::Delete,
        Some(_) => return Err(ApiError::param("action must be add or delete")),
    };
    let schema = parse_schema(body)?;
    let entries = parse_rows(body, &schema)?;

    let targets: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.audience_ids.iter().map(String::as_str))
        .collect();
    for id in &targets {
        check_target(registry, &advertisers, id)?;
        if registry.get(id).is_some_and(|a| !a.is_ready(now)) {
            // The documented 40002 text for an audience that cannot be edited yet (§6).
            return Err(ApiError::new(
                codes::INVALID_PARAM,
                format!("Audience is not editable, please check audience status ({id})"),
            ));
        }
    }

    let mut changed_per_audience = std::collections::BTreeMap::<&str, usize>::new();
    for entry in &entries {
        for audience_id in &entry.audience_ids {
            let Some(audience) = registry.get_mut(audience_id) else {
                continue;
            };
            let key = (entry.id_type, entry.id.clone());
            let changed = match action {
                MappingAction::Add => audience.members.insert(key),
                MappingAction::Delete => audience.members.remove(&key),
            };
            *changed_per_audience.entry(audience_id).or_default() += usize::from(changed);
        }
    }
    let (verb, name) = match action {
        MappingAction::Add => ("added", "Add"),
        MappingAction::Delete => ("deleted", "Delete"),
    };
    for (id, n) in &changed_per_audience {
        if let Some(audience) = registry.get_mut(id) {
            audience.push_history(name, format!("{n} ids {verb}"));
        }
    }
    Ok((json!({}), !changed_per_audience.is_empty()))
}
