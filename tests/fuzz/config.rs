//! Config inputs: a valid config holding every known key, and mutations of its TOML tree —
//! values of the wrong type (each must be reported at its path, with its campaign), unknown
//! keys (each reported), any value anywhere, removed keys, copied campaigns — and of its text.

use proptest::prelude::*;

/// A config that sets every key there is.
pub const FULL: &str = r#"
[source]
format = "native"
[engine]
allowed_lateness = "5s"
idle_timeout = "30s"
shards = 2
max_custom_props = 16
max_future = "1h"
[tiktok]
base_url = "https://business-api.tiktok.com"
access_token_env = "TIKTOK_ACCESS_TOKEN"
qps = 10
max_batch = 10000
linger = "5s"
drain_grace = "20s"
[kafka]
brokers = "kafka-0:9092"
group_prefix = "remarket"
events_topic = "events"
profiles_topic = "profiles"
topic_prefix = "remarket"
partitions = 0
replication = 3
commit_interval = "5s"
[kafka.client]
"session.timeout.ms" = "10000"
[http]
listen = "0.0.0.0:9898"

[[campaign]]
id = "cart"
name = "Cart abandoners"
ad_account = "7178918106775994370"
start = "2026-11-01T00:00:00Z"
end = "2026-12-01T00:00:00Z"
[campaign.trigger]
event = "Added To Cart"
where = [{ prop = "price", op = ">=", value = 10 }, { prop = "sku", op = "in", value = ["a", "b"] }]
[campaign.trigger.inaction]
event = "Charged"
within = "30m"
[campaign.who]
where = [{ prop = "app_version", op = "between", value = ["5.9", "6"] }, { prop = "email", op = "exists" }]
control_group = 10
target_cap = 1000
[campaign.what]
audience = { new = { name = "Cart abandoners", description = "added, not bought" } }
identifiers = ["email", "phone"]
remove_on_goal = true
[campaign.goal]
event = "Charged"
within = "5d"

[[campaign]]
id = "views"
name = "Views"
ad_account = "7178918106775994370"
start = "2026-11-01T00:00:00Z"
[campaign.trigger]
event = "Product Viewed"
where = [{ prop = "price", op = "between", value = [200, 500] }]
[campaign.who]
where = [{ prop = "country", op = "starts_with", value = "D" }]
[campaign.what]
audience = { existing = "6900000000000000001" }
identifiers = ["email"]
"#;

/// The TOML type a key must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Int,
    /// An integer or a float.
    Num,
    Bool,
    Array,
    Table,
}

/// Every key of [`FULL`] with a fixed type, as a path (`campaign[0].who.where[1].op`).
/// Condition values and `[kafka.client]` values take several types: they are left out.
pub fn typed_keys() -> Vec<(String, Kind)> {
    use Kind::*;
    let mut keys: Vec<(String, Kind)> = [
        ("source", Table),
        ("source.format", Str),
        ("engine", Table),
        ("engine.allowed_lateness", Str),
        ("engine.idle_timeout", Str),
        ("engine.shards", Int),
        ("engine.max_custom_props", Int),
        ("engine.max_future", Str),
        ("tiktok", Table),
        ("tiktok.base_url", Str),
        ("tiktok.access_token_env", Str),
        ("tiktok.qps", Num),
        ("tiktok.max_batch", Int),
        ("tiktok.linger", Str),
        ("tiktok.drain_grace", Str),
        ("kafka", Table),
        ("kafka.brokers", Str),
        ("kafka.group_prefix", Str),
        ("kafka.events_topic", Str),
        ("kafka.profiles_topic", Str),
        ("kafka.topic_prefix", Str),
        ("kafka.partitions", Int),
        ("kafka.replication", Int),
        ("kafka.commit_interval", Str),
        ("kafka.client", Table),
        ("http", Table),
        ("http.listen", Str),
        ("campaign", Array),
    ]
    .iter()
    .map(|(k, t)| (k.to_string(), *t))
    .collect();
    let campaign = |i: usize, conds: &[(&str, usize)], extra: &[(&str, Kind)]| {
        let mut out: Vec<(String, Kind)> = [
            ("", Table),
            ("id", Str),
            ("name", Str),
            ("ad_account", Str),
            ("start", Str),
            ("trigger", Table),
            ("trigger.event", Str),
            ("trigger.where", Array),
            ("who", Table),
            ("who.where", Array),
            ("what", Table),
            ("what.audience", Table),
            ("what.identifiers", Array),
        ]
        .iter()
        .chain(extra)
        .map(|(k, t)| (k.to_string(), *t))
        .collect();
        for (list, n) in conds {
            for j in 0..*n {
                out.push((format!("{list}[{j}]"), Table));
                out.push((format!("{list}[{j}].prop"), Str));
                out.push((format!("{list}[{j}].op"), Str));
            }
        }
        out.into_iter().map(move |(k, t)| {
            let at = if k.is_empty() {
                format!("campaign[{i}]")
            } else {
                format!("campaign[{i}].{k}")
            };
            (at, t)
        })
    };
    keys.extend(campaign(
        0,
        &[("trigger.where", 2), ("who.where", 2)],
        &[
            ("end", Str),
            ("trigger.inaction", Table),
            ("trigger.inaction.event", Str),
            ("trigger.inaction.within", Str),
            ("who.control_group", Int),
            ("who.target_cap", Int),
            ("what.audience.new", Table),
            ("what.audience.new.name", Str),
            ("what.audience.new.description", Str),
            ("what.remove_on_goal", Bool),
            ("goal", Table),
            ("goal.event", Str),
            ("goal.within", Str),
        ],
    ));
    keys.extend(campaign(
        1,
        &[("trigger.where", 1), ("who.where", 1)],
        &[("what.audience.existing", Str)],
    ));
    keys
}

/// Whether `v` has type `kind`.
pub fn fits(kind: Kind, v: &toml::Value) -> bool {
    matches!(
        (kind, v),
        (Kind::Str, toml::Value::String(_))
            | (Kind::Int, toml::Value::Integer(_))
            | (Kind::Num, toml::Value::Integer(_) | toml::Value::Float(_))
            | (Kind::Bool, toml::Value::Boolean(_))
            | (Kind::Array, toml::Value::Array(_))
            | (Kind::Table, toml::Value::Table(_))
    )
}

/// Any TOML value: the edges of each type, and a few that look right.
pub fn value() -> impl Strategy<Value = toml::Value> {
    use toml::Value as V;
    let leaf = prop_oneof![
        proptest::sample::select(
            &[
                "",
                "5s",
                "0s",
                "100y",
                "1ms",
                "500us",
                "soon",
                "30m",
                "365d",
                "366d",
                "=",
                "~",
                "in",
                "between",
                "exists",
                "email",
                "phone",
                "fax",
                "native",
                "x",
                "Cart",
                "http://127.0.0.1:8099",
                "ftp://x",
                "https://h/?q",
                "0.0.0.0:1",
                "a-b",
                "Bad Id",
                "2026-11-01T00:00:00Z",
                "2026-02-30T00:00:00Z",
                "5.10",
                "123",
                "\u{0}",
                "é",
            ][..]
        )
        .prop_map(|s| V::String(s.to_owned())),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(99),
            Just(100),
            Just(1025),
            Just(10_001),
            Just(i64::MAX),
            Just(i64::MIN),
            any::<i64>()
        ]
        .prop_map(V::Integer),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e-300),
            Just(0.00001),
            Just(0.01),
            Just(-0.0),
            Just(2.5),
            Just(1e300),
        ]
        .prop_map(V::Float),
        any::<bool>().prop_map(V::Boolean),
        proptest::sample::select(
            &[
                "2026-11-01T00:00:00Z",
                "1979-05-27",
                "07:32:00",
                "1979-05-27T07:32:00"
            ][..]
        )
        .prop_map(|d| V::Datetime(d.parse().expect("a TOML date-time"))),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(V::Array),
            proptest::collection::btree_map(
                proptest::sample::select(&["prop", "op", "value", "new", "name", "x"][..])
                    .prop_map(str::to_owned),
                inner,
                0..3
            )
            .prop_map(|m| V::Table(m.into_iter().collect())),
        ]
    })
}

/// A change to the config tree. Paths index [`typed_keys`] (modulo its length).
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Sets a typed key to a value of another type: it must be reported at its path.
    WrongType(usize, toml::Value),
    /// Adds a key no table knows: it must be reported.
    Unknown(usize),
    /// Sets a typed key to any value.
    Set(usize, toml::Value),
    /// Removes a key.
    Remove(usize),
    /// Appends a copy of campaign 0 or 1 (same id).
    CopyCampaign(bool),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), value()).prop_map(|(k, v)| Mutation::WrongType(k, v)),
        1 => any::<usize>().prop_map(Mutation::Unknown),
        3 => (any::<usize>(), value()).prop_map(|(k, v)| Mutation::Set(k, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => any::<bool>().prop_map(Mutation::CopyCampaign),
    ]
}

/// One step of a path: a key or an array index.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        out.push(Step::Key(key.to_owned()));
        for idx in rest.split('[') {
            if let Some(n) = idx.strip_suffix(']') {
                out.push(Step::Index(n.parse().expect("an index")));
            }
        }
    }
    out
}

/// The value at `path`, if the tree still has it.
pub fn get<'t>(root: &'t toml::Table, path: &str) -> Option<&'t toml::Value> {
    let steps = steps(path);
    let (first, rest) = steps.split_first()?;
    let Step::Key(k) = first else { return None };
    let mut v = root.get(k)?;
    for s in rest {
        v = match s {
            Step::Key(k) => v.as_table()?.get(k)?,
            Step::Index(i) => v.as_array()?.get(*i)?,
        };
    }
    Some(v)
}

/// Sets (`Some`) or removes (`None`) the value at `path`; `false` when its parent is gone.
pub fn put(root: &mut toml::Table, path: &str, value: Option<toml::Value>) -> bool {
    let steps = steps(path);
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut here: &mut toml::Value = match parents.first() {
        None => {
            let Step::Key(k) = last else { return false };
            match value {
                Some(v) => root.insert(k.clone(), v),
                None => root.remove(k),
            };
            return true;
        }
        Some(Step::Key(k)) => match root.get_mut(k) {
            Some(v) => v,
            None => return false,
        },
        Some(Step::Index(_)) => return false,
    };
    for s in &parents[1..] {
        let next = match (s, here) {
            (Step::Key(k), toml::Value::Table(t)) => t.get_mut(k),
            (Step::Index(i), toml::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => here = v,
            None => return false,
        }
    }
    match (last, here, value) {
        (Step::Key(k), toml::Value::Table(t), Some(v)) => {
            t.insert(k.clone(), v);
            true
        }
        (Step::Key(k), toml::Value::Table(t), None) => t.remove(k).is_some(),
        (Step::Index(i), toml::Value::Array(a), Some(v)) if *i < a.len() => {
            a[*i] = v;
            true
        }
        (Step::Index(i), toml::Value::Array(a), None) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Where a problem at `path` is reported: `(campaign label, field)` as `check-config` names
/// them (README "Configuration reference"), computed from the final tree.
pub fn reported_at(root: &toml::Table, path: &str) -> (Option<String>, String) {
    let Some(rest) = path.strip_prefix("campaign[") else {
        return (None, path.to_owned());
    };
    let (i, field) = rest.split_once(']').expect("an index");
    let i: usize = i.parse().expect("an index");
    let field = match field.strip_prefix('.') {
        Some(f) => f.to_owned(),
        // The entry itself (not a table).
        None => "[[campaign]]".to_owned(),
    };
    (Some(label(root, i)), field)
}

/// The label of campaign `i`: its id, `#N` without a string id, `id (#N)` when shared.
pub fn label(root: &toml::Table, i: usize) -> String {
    let items = root
        .get("campaign")
        .and_then(toml::Value::as_array)
        .map_or(&[][..], |a| a.as_slice());
    let id_of = |c: &toml::Value| c.get("id").and_then(toml::Value::as_str).map(str::to_owned);
    match id_of(&items[i]) {
        None => format!("#{}", i + 1),
        Some(id)
            if items
                .iter()
                .filter(|c| id_of(c).as_deref() == Some(&id))
                .count()
                > 1 =>
        {
            format!("{id} (#{})", i + 1)
        }
        Some(id) => id,
    }
}
