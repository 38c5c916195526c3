//! Service configuration: the TOML file of DESIGN §3, layered with `REMARKET__SECTION__KEY`
//! environment overrides, read field by field and validated into [`Config`].
//!
//! Validation never stops at the first problem: every field of every section and campaign is
//! read on its own (see [`crate::problems`]) and every semantic check runs, so `check-config`
//! lists *all* problems, each with its campaign id and full field path. Values that cannot
//! work are refused here rather than failing later: durations have a range per key (past it
//! a value is a typo, as `"100y"` of lateness), `tiktok.qps` is in [`QPS`] (a rate of
//! `1e-300` overflowed the rate limiter's window, `1e-5` waited a day between requests), and
//! names past what a [`Schema`] can intern are problems, not panics.

pub use crate::duration;
pub use crate::event::Format;
pub use crate::problems::{ConfigError, Problems};

use std::path::PathBuf;

use crate::campaign::{self, Campaign, Names};
use crate::event::Schema;
use crate::problems::{Reader, Table};
use duration::{HumanDuration, Range};

/// `[source]`: how records are decoded.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub format: Format,
}

/// `[engine]`: event-time settings of the detect stage.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Bounded out-of-orderness: watermark = max ts − allowed_lateness − 1 ms.
    pub allowed_lateness: HumanDuration,
    /// A partition silent for this long stops holding the watermark back (`run` only).
    pub idle_timeout: HumanDuration,
    /// Number of detect shards; 0 = one per core.
    pub shards: usize,
    /// Custom profile properties kept per user beyond those campaigns read (so a campaign
    /// added later sees them); further ones are dropped and counted.
    pub max_custom_props: u8,
    /// A record whose `ts` is further than this ahead of its reference time (its Kafka
    /// timestamp; for plain recorded lines the wall clock at replay) is dead-lettered as
    /// `future_ts` and does not move the watermark.
    pub max_future: HumanDuration,
    /// What a dead letter keeps of its record.
    pub dead_letter: DeadLetterMode,
}

/// `engine.dead_letter`: `raw` (the default) keeps the malformed record as it came, with the
/// input's sensitivity; `redacted` keeps only its reason, position and SHA-256.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeadLetterMode {
    #[default]
    Raw,
    Redacted,
}

impl EngineSettings {
    /// `shards` with 0 resolved to one per core: replay's shard threads, `run`'s detect
    /// workers.
    pub fn workers(&self) -> usize {
        resolve_workers(self.shards)
    }
}

/// `n`, or one per core for 0.
pub fn resolve_workers(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Where the TikTok access token comes from. Holds no secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    File(PathBuf),
    Env(String),
    None,
}

/// `[[tiktok.account]]`: an ad account with a token of its own (the `[tiktok]` token serves
/// the others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub advertiser_id: String,
    /// Shown by `GET /api/v1/ad-accounts` (TikTok's own name is asked for too).
    pub name: Option<String>,
    pub token: TokenSource,
}

/// `[tiktok]`: the audience sink.
#[derive(Debug, Clone)]
pub struct TikTokSettings {
    pub base_url: String,
    /// The default token: every advertiser without an account of its own.
    pub token: TokenSource,
    pub accounts: Vec<Account>,
    /// Requests per second, > 0.
    pub qps: f64,
    /// Users per mapping request, 1..=10,000.
    pub max_batch: usize,
    pub linger: HumanDuration,
    /// On shutdown, how long `run`'s sink may deliver what it holds (keep it below the pod's
    /// `terminationGracePeriodSeconds`); what it cannot is re-sent after the restart.
    pub drain_grace: HumanDuration,
    /// How long `replay` retries one batch before reporting its users as failed (`run` retries
    /// until TikTok answers, its input paused meanwhile).
    pub retry_for: HumanDuration,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: SourceSettings,
    pub engine: EngineSettings,
    pub tiktok: TikTokSettings,
    /// `[kafka]`: required by `run`, unused by `replay`.
    pub kafka: Option<KafkaSettings>,
    /// `[http]`: the admin server of `run`.
    pub http: HttpSettings,
    pub campaigns: Vec<Campaign>,
    /// Names the campaigns refer to, interned.
    pub schema: Schema,
    /// The TOML document as read (before environment overrides): the campaign store builds
    /// the engine's config on it.
    pub document: toml::Table,
}

/// TikTok's limit on ids per mapping request.
pub const TIKTOK_MAX_BATCH: usize = 10_000;

/// `tiktok.qps`: from one request per 100 s to 10,000 per second (TikTok grants apps tens).
pub const QPS: std::ops::RangeInclusive<f64> = 0.01..=10_000.0;

const MS_HOUR: i64 = 3_600_000;
const MS_DAY: i64 = 24 * MS_HOUR;

/// `engine.allowed_lateness`: records are held this long for reordering.
pub const ALLOWED_LATENESS: Range = Range::new("0s", 0, "1d", MS_DAY);
/// `engine.idle_timeout`.
pub const IDLE_TIMEOUT: Range = Range::new("1ms", 1, "1d", MS_DAY);
/// `engine.max_future`.
pub const MAX_FUTURE: Range = Range::new("1ms", 1, "30d", 30 * MS_DAY);
/// `tiktok.linger`, `tiktok.drain_grace`, `kafka.commit_interval`.
pub const SHORT: Range = Range::new("1ms", 1, "1h", MS_HOUR);
/// `tiktok.retry_for`.
pub const RETRY_FOR: Range = Range::new("1s", 1_000, "7d", 7 * MS_DAY);

const SECTIONS: &[&str] = &[
    "source", "engine", "tiktok", "kafka", "http", "segment", "campaign",
];

impl Config {
    /// Reads `path` and applies the process environment's `REMARKET__…` overrides.
    pub fn load(path: &std::path::Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        Ok(Config::parse(&text, std::env::vars())?)
    }

    /// Parses config text with the given environment (only `REMARKET__…` variables are used).
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Problems> {
        let mut problems = Problems::default();
        let root: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                problems.service("(file)", e.to_string().trim().replace('\n', " "));
                return Err(problems);
            }
        };
        Config::parse_table(root, env)
    }

    /// [`Config::parse`] of a parsed TOML document (the campaign store adds its campaigns).
    pub fn parse_table(
        mut root: toml::Table,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, Problems> {
        let mut problems = Problems::default();
        let document = root.clone();
        let env: Vec<(String, String)> = env.into_iter().collect();
        let overrides = apply_env_overrides(&mut root, env.iter().cloned(), &mut problems);
        for key in root.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            problems.service(key, "unknown section");
        }
        let empty = toml::Value::Table(toml::Table::new());
        let section = |name: &str, keys: &[&str], problems: &mut Problems| {
            let v = root.get(name).unwrap_or(&empty);
            Reader::new(problems, None).table(name.to_owned(), v, keys)
        };
        let source = section("source", &["format"], &mut problems)
            .and_then(|t| read_source(&t, &mut problems));
        let engine = section("engine", ENGINE_KEYS, &mut problems)
            .and_then(|t| read_engine(&t, &mut problems));
        let tiktok = section("tiktok", TIKTOK_KEYS, &mut problems)
            .and_then(|t| read_tiktok(&t, &mut problems));
        let kafka = match root.get("kafka") {
            None => None,
            Some(_) => section("kafka", KAFKA_KEYS, &mut problems)
                .and_then(|t| read_kafka(&t, &env, &mut problems)),
        };
        let http = section(
            "http",
            &["listen", "admin_token_file", "admin_token_env"],
            &mut problems,
        )
        .and_then(|t| read_http(&t, &mut problems));

        // Every canonical property and identifier is kept, whether or not a loaded campaign
        // reads it, and some custom ones: state restored after a restart with a new campaign
        // holds the profile a replay with that campaign would have built. Interned first, so
        // that they always fit.
        let mut schema = Schema::default();
        schema.keep_profile(engine.as_ref().map_or(0, |e| e.max_custom_props));
        let campaigns = read_campaigns(
            root.get("campaign"),
            root.get("segment"),
            &mut schema,
            &mut problems,
        );

        if !problems.is_empty() {
            name_overrides(&mut problems, &overrides);
            return Err(problems);
        }
        Ok(Config {
            source: source.expect("no problems"),
            engine: engine.expect("no problems"),
            tiktok: tiktok.expect("no problems"),
            kafka,
            http: http.expect("no problems"),
            campaigns,
            schema,
            document,
        })
    }
}

/// Every `[[campaign]]`. A campaign's problems are labelled with its id, `#N` (its place)
/// when it has no string id, and `id (#N)` when another campaign has the same id, so that the
/// problems of each copy stay apart.
fn read_campaigns(
    v: Option<&toml::Value>,
    segments: Option<&toml::Value>,
    schema: &mut Schema,
    problems: &mut Problems,
) -> Vec<Campaign> {
    let mut names = Names::new(schema);
    let segments = read_segments(segments, &mut names, problems);
    let items = match v {
        None => {
            problems.service("campaign", "at least one [[campaign]] is required");
            return Vec::new();
        }
        Some(toml::Value::Array(items)) if items.is_empty() => {
            problems.service("campaign", "at least one [[campaign]] is required");
            return Vec::new();
        }
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            problems.service("campaign", "must be an array of tables [[campaign]]");
            return Vec::new();
        }
    };
    if items.len() > usize::from(u16::MAX) {
        problems.service("campaign", "at most 65535 campaigns");
    }
    let ids: Vec<Option<&str>> = items
        .iter()
        .map(|c| c.get("id").and_then(toml::Value::as_str))
        .collect();
    let mut count = std::collections::HashMap::<&str, Vec<usize>>::new();
    for (i, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            count.entry(id).or_default().push(i);
        }
    }
    let mut campaigns = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let copies = ids[i].map_or(&[][..], |id| &count[id][..]);
        let label = match ids[i] {
            None => format!("#{}", i + 1),
            Some(id) if copies.len() > 1 => format!("{id} (#{})", i + 1),
            Some(id) => id.to_owned(),
        };
        if !item.is_table() {
            Reader::new(problems, Some(label))
                .err("[[campaign]]", crate::problems::type_error("a table", item));
            continue;
        }
        if copies.len() > 1 && copies[0] != i {
            let first = copies[0] + 1;
            Reader::new(problems, Some(label.clone())).err(
                "id",
                format!("duplicate campaign id: [[campaign]] #{first} has it too"),
            );
        }
        if let Some(c) = campaign::validate(item, label, &mut names, &segments, problems) {
            campaigns.push(c);
        }
    }
    campaigns
}

/// Every `[[segment]]`, by id (problems labelled `segment ID`).
fn read_segments(
    v: Option<&toml::Value>,
    names: &mut Names,
    problems: &mut Problems,
) -> std::collections::BTreeMap<String, campaign::Segment> {
    let mut out = std::collections::BTreeMap::new();
    let items = match v {
        None => return out,
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            problems.service("segment", "must be an array of tables [[segment]]");
            return out;
        }
    };
    for (i, item) in items.iter().enumerate() {
        let label = match item.get("id").and_then(toml::Value::as_str) {
            Some(id) => format!("segment {id}"),
            None => format!("segment #{}", i + 1),
        };
        if let Some(s) = campaign::validate_segment(item, label.clone(), names, problems) {
            if out.contains_key(&s.id) {
                Reader::new(problems, Some(label)).err("id", "duplicate segment id");
            } else {
                out.insert(s.id.clone(), s);
            }
        }
    }
    out
}

const ENGINE_KEYS: &[&str] = &[
    "allowed_lateness",
    "idle_timeout",
    "shards",
    "max_custom_props",
    "max_future",
    "dead_letter",
];
const TIKTOK_KEYS: &[&str] = &[
    "base_url",
    "access_token_file",
    "access_token_env",
    "qps",
    "max_batch",
    "linger",
    "drain_grace",
    "retry_for",
    "account",
];
const KAFKA_KEYS: &[&str] = &[
    "brokers",
    "group_prefix",
    "events_topic",
    "profiles_topic",
    "topic_prefix",
    "partitions",
    "replication",
    "commit_interval",
    "client",
];

fn read_source(t: &Table, problems: &mut Problems) -> Option<SourceSettings> {
    let mut r = Reader::new(problems, None);
    let format = match r.get::<String>(t, "format").optional()?.as_deref() {
        None | Some("native") => Format::Native,
        Some("segment") => Format::Segment,
        Some("clevertap") => Format::Clevertap,
        Some(other) => {
            r.err(
                &t.at("format"),
                format!("unknown format {other:?} (native, segment or clevertap)"),
            );
            return None;
        }
    };
    Some(SourceSettings { format })
}

/// Integer `key` of `t` in `range` (`what` describes it in the message).
fn int_in(
    r: &mut Reader,
    t: &Table,
    key: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    what: &str,
) -> Option<i64> {
    let n = r.get::<i64>(t, key).or(default)?;
    if !range.contains(&n) {
        r.err(&t.at(key), format!("must be in {what}"));
        return None;
    }
    Some(n)
}

/// Duration `key` of `t` in `range`, `default` when absent.
fn duration_or(
    r: &mut Reader,
    t: &Table,
    key: &str,
    range: Range,
    default: &str,
) -> Option<HumanDuration> {
    r.duration(t, key, range).or(dur(default))
}

fn read_engine(t: &Table, problems: &mut Problems) -> Option<EngineSettings> {
    let mut r = Reader::new(problems, None);
    let allowed_lateness = duration_or(&mut r, t, "allowed_lateness", ALLOWED_LATENESS, "5s");
    let idle_timeout = duration_or(&mut r, t, "idle_timeout", IDLE_TIMEOUT, "30s");
    let shards = int_in(
        &mut r,
        t,
        "shards",
        0,
        0..=1024,
        "0..=1024 (0 = one per core)",
    );
    let max_future = duration_or(&mut r, t, "max_future", MAX_FUTURE, "1h");
    let max_custom_props = int_in(&mut r, t, "max_custom_props", 16, 0..=64, "0..=64");
    let dead_letter = match r.get::<String>(t, "dead_letter").optional() {
        None => None,
        Some(None) => Some(DeadLetterMode::Raw),
        Some(Some(m)) => match m.as_str() {
            "raw" => Some(DeadLetterMode::Raw),
            "redacted" => Some(DeadLetterMode::Redacted),
            other => {
                r.err(
                    &t.at("dead_letter"),
                    format!("unknown mode {other:?} (raw or redacted)"),
                );
                None
            }
        },
    };
    Some(EngineSettings {
        dead_letter: dead_letter?,
        allowed_lateness: allowed_lateness?,
        idle_timeout: idle_timeout?,
        shards: shards? as usize,
        max_custom_props: max_custom_props? as u8,
        max_future: max_future?,
    })
}

fn read_tiktok(t: &Table, problems: &mut Problems) -> Option<TikTokSettings> {
    let mut r = Reader::new(problems, None);
    let base_url = r
        .get::<String>(t, "base_url")
        .or("https://business-api.tiktok.com".into())
        .and_then(|u| match check_base_url(&u) {
            Ok(()) => Some(u),
            Err(e) => {
                r.err(&t.at("base_url"), e);
                None
            }
        });
    let token = token_source(&mut r, t, "access_token_file", "access_token_env");
    let accounts = read_accounts(&mut r, t);
    let qps = r.get::<f64>(t, "qps").or(10.0).and_then(|q| {
        if QPS.contains(&q) {
            Some(q)
        } else {
            r.err(
                &t.at("qps"),
                format!(
                    "must be from {} to {} requests per second",
                    QPS.start(),
                    QPS.end()
                ),
            );
            None
        }
    });
    let max_batch = int_in(
        &mut r,
        t,
        "max_batch",
        TIKTOK_MAX_BATCH as i64,
        1..=TIKTOK_MAX_BATCH as i64,
        "1..=10000 (TikTok's limit)",
    );
    let linger = duration_or(&mut r, t, "linger", SHORT, "5s");
    let drain_grace = duration_or(&mut r, t, "drain_grace", SHORT, "20s");
    let retry_for = duration_or(&mut r, t, "retry_for", RETRY_FOR, "15m");
    Some(TikTokSettings {
        base_url: base_url?,
        token: token?,
        accounts: accounts?,
        qps: qps?,
        max_batch: max_batch? as usize,
        linger: linger?,
        drain_grace: drain_grace?,
        retry_for: retry_for?,
    })
}

/// Where a secret comes from: `file_key` (a path) or `env_key` (a variable's name), at most
/// one of them; neither is [`TokenSource::None`].
fn token_source(r: &mut Reader, t: &Table, file_key: &str, env_key: &str) -> Option<TokenSource> {
    let file = r.get::<String>(t, file_key).optional();
    let env = r.get::<String>(t, env_key).optional();
    let mut ok = true;
    if let Some(Some(f)) = &file {
        if f.is_empty() {
            r.err(&t.at(file_key), "is empty (a path to the token file)");
            ok = false;
        }
    }
    if let Some(Some(name)) = &env {
        if name.is_empty() || name.contains(['=', '\0']) {
            r.err(
                &t.at(env_key),
                "must be the name of an environment variable (not empty, no '=')",
            );
            ok = false;
        }
    }
    match (file?, env?) {
        (Some(_), Some(_)) => {
            r.err(
                &t.at(file_key),
                format!("set {file_key} or {env_key}, not both"),
            );
            None
        }
        _ if !ok => None,
        (Some(f), None) => Some(TokenSource::File(PathBuf::from(f))),
        (None, Some(v)) => Some(TokenSource::Env(v)),
        (None, None) => Some(TokenSource::None),
    }
}

const ACCOUNT_KEYS: &[&str] = &[
    "advertiser_id",
    "name",
    "access_token_file",
    "access_token_env",
];

/// `[[tiktok.account]]`: ad accounts with their own token, each id once.
fn read_accounts(r: &mut Reader, t: &Table) -> Option<Vec<Account>> {
    let list = match t.t.get("account") {
        None => return Some(Vec::new()),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            r.err(
                &t.at("account"),
                "must be an array of tables ([[tiktok.account]])",
            );
            return None;
        }
    };
    let before = r.count();
    let mut out: Vec<Account> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let Some(a) = r.table(format!("{}[{i}]", t.at("account")), v, ACCOUNT_KEYS) else {
            continue;
        };
        let id = r.req::<String>(&a, "advertiser_id");
        if let Some(id) = &id {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                r.err(
                    &a.at("advertiser_id"),
                    "must be a TikTok advertiser id (digits)",
                );
            } else if out.iter().any(|o| o.advertiser_id == *id) {
                r.err(&a.at("advertiser_id"), format!("{id} is listed twice"));
            }
        }
        let name = r.get::<String>(&a, "name").optional();
        let token = token_source(r, &a, "access_token_file", "access_token_env");
        if token == Some(TokenSource::None) {
            r.err(
                &a.at("access_token_file"),
                "missing (an account's token: access_token_file or access_token_env)",
            );
        }
        if let (Some(advertiser_id), Some(name), Some(token)) = (id, name, token) {
            out.push(Account {
                advertiser_id,
                name,
                token,
            });
        }
    }
    (r.count() == before).then_some(out)
}

/// An absolute `http`/`https` URL with a host, which API paths are appended to (so no query
/// or fragment). The URL is not repeated: it could hold credentials.
fn check_base_url(u: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http:// or https:// URL, not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment (API paths are appended to it)".into());
    }
    Ok(())
}

fn read_kafka(
    t: &Table,
    env: &[(String, String)],
    problems: &mut Problems,
) -> Option<KafkaSettings> {
    let mut r = Reader::new(problems, None);
    let before = r.count();
    let brokers = r.get::<String>(t, "brokers").or(String::new());
    if brokers.as_ref().is_some_and(|b| b.trim().is_empty()) {
        r.err(&t.at("brokers"), "missing (host:port[,host:port…])");
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 200
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let mut name = |key: &str, default: &str| -> Option<String> {
        let v = r.get::<String>(t, key).or(default.to_owned())?;
        if !name_ok(&v) {
            r.err(
                &t.at(key),
                "must be a Kafka name: [A-Za-z0-9._-], 1 to 200 characters",
            );
        }
        Some(v)
    };
    let group_prefix = name("group_prefix", "remarket");
    let events_topic = name("events_topic", "events");
    let profiles_topic = name("profiles_topic", "profiles");
    let topic_prefix = name("topic_prefix", "remarket");
    let partitions = int_in(
        &mut r,
        t,
        "partitions",
        0,
        0..=10_000,
        "0..=10000 (0 = as the events topic)",
    );
    let replication = int_in(&mut r, t, "replication", 1, 1..=32, "1..=32");
    // Kafka Streams commits every 30 s. 5 s bounds what a crash re-reads while a user
    // touched several times within it is written to the changelog once.
    let commit_interval = duration_or(&mut r, t, "commit_interval", SHORT, "5s");
    let client = match t.t.get("client") {
        None => Some(Vec::new()),
        Some(toml::Value::Table(c)) => Some(
            c.iter()
                .filter_map(|(key, v)| {
                    Some((
                        key.clone(),
                        client_value(key, v.clone(), env, r.problems())?,
                    ))
                })
                .collect(),
        ),
        Some(v) => {
            r.err(&t.at("client"), crate::problems::type_error("a table", v));
            None
        }
    };
    if r.count() > before {
        return None;
    }
    Some(KafkaSettings {
        brokers: brokers?,
        group_prefix: group_prefix?,
        events_topic: events_topic?,
        profiles_topic: profiles_topic?,
        topic_prefix: topic_prefix?,
        partitions: partitions? as i32,
        replication: replication? as i32,
        commit_interval: commit_interval?,
        client: client?,
    })
}

fn read_http(t: &Table, problems: &mut Problems) -> Option<HttpSettings> {
    let mut r = Reader::new(problems, None);
    let admin_token = token_source(&mut r, t, "admin_token_file", "admin_token_env");
    let text = r.get::<String>(t, "listen").or("0.0.0.0:9898".into())?;
    match text.parse() {
        Ok(listen) => Some(HttpSettings {
            listen,
            admin_token: admin_token?,
        }),
        Err(_) => {
            r.err(&t.at("listen"), format!("not a socket address: {text:?}"));
            None
        }
    }
}

fn dur(s: &str) -> HumanDuration {
    HumanDuration::parse(s).expect("valid default duration")
}

/// Says which environment variable set a field that has a problem: `engine.shards: must be
/// in 0..=1024 (set by REMARKET__ENGINE__SHARDS)`.
fn name_overrides(problems: &mut Problems, overrides: &[Override]) {
    for p in problems.0.iter_mut().filter(|p| p.campaign.is_none()) {
        for o in overrides {
            let field = format!("{}.{}", o.section, o.key);
            let within = p.field.strip_prefix(&field);
            if within.is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '['])) {
                p.message = format!("{} (set by {})", p.message, o.var);
            }
        }
    }
}

/// `[kafka]`: brokers, consumer groups and topics of `run`.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Consumer groups are `<group_prefix>-detect` and `<group_prefix>-activate`.
    pub group_prefix: String,
    pub events_topic: String,
    /// May equal `events_topic`.
    pub profiles_topic: String,
    /// Internal topics: `<topic_prefix>.qualified`, `.decisions`, `.dead-letter`,
    /// `.changelog`, `.audiences`.
    pub topic_prefix: String,
    /// Partitions of the qualified/decisions topics; 0 = as many as the events topic.
    pub partitions: i32,
    pub replication: i32,
    /// How often state is written to the changelog and offsets committed.
    pub commit_interval: HumanDuration,
    /// Extra librdkafka properties (e.g. `security.protocol`), passed through.
    pub client: Vec<(String, ClientValue)>,
}

/// One `[kafka.client]` value: written in the file, or read from a file (`{ file = "…" }`,
/// e.g. a mounted Kubernetes Secret) or an environment variable (`{ env = "…" }`). Its
/// `Debug` shows neither a value so read nor that of a credential property.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientValue {
    value: String,
    secret: bool,
}

impl ClientValue {
    /// The value, for the librdkafka configuration only.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

/// A value written in the config (shown by `Debug`).
impl From<&str> for ClientValue {
    fn from(value: &str) -> Self {
        ClientValue {
            value: value.to_owned(),
            secret: false,
        }
    }
}

impl std::fmt::Debug for ClientValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secret {
            f.write_str("\"<redacted>\"")
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

/// librdkafka properties that hold credentials: never shown, wherever their value came from.
fn is_credential(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || matches!(key, "ssl.key.pem" | "sasl.oauthbearer.config" | "ssl_key")
}

/// A `[kafka.client]` value: a string, a number or boolean (written as TOML writes it), or
/// `{ file = PATH }` / `{ env = NAME }`. A file's trailing line break is dropped.
fn client_value(
    key: &str,
    v: toml::Value,
    env: &[(String, String)],
    problems: &mut Problems,
) -> Option<ClientValue> {
    let field = format!("kafka.client.{key:?}");
    let secret = is_credential(key);
    let table = match v {
        toml::Value::String(value) => return Some(ClientValue { value, secret }),
        toml::Value::Table(t) => t,
        toml::Value::Array(_) | toml::Value::Datetime(_) => {
            problems.service(
                &field,
                "must be a string, number or boolean, or { file = PATH } or { env = NAME }",
            );
            return None;
        }
        other => {
            return Some(ClientValue {
                value: other.to_string(),
                secret,
            })
        }
    };
    let mut entries = table.into_iter();
    let source = match (entries.next(), entries.next()) {
        (Some((how, toml::Value::String(from))), None) if how == "file" || how == "env" => {
            (how, from)
        }
        _ => {
            problems.service(&field, "a table must be { file = PATH } or { env = NAME }");
            return None;
        }
    };
    let value = match source {
        (how, path) if how == "file" => match std::fs::read_to_string(&path) {
            Ok(text) => text
                .strip_suffix('\n')
                .map(|t| t.strip_suffix('\r').unwrap_or(t))
                .unwrap_or(&text)
                .to_owned(),
            Err(e) => {
                problems.service(&field, format!("cannot read {path}: {e}"));
                return None;
            }
        },
        (_, name) => match env.iter().find(|(k, _)| *k == name) {
            Some((_, value)) => value.clone(),
            None => {
                problems.service(&field, format!("environment variable {name} is not set"));
                return None;
            }
        },
    };
    Some(ClientValue {
        value,
        secret: true,
    })
}

impl KafkaSettings {
    pub fn topic(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.topic_prefix)
    }
    pub fn group(&self, stage: &str) -> String {
        format!("{}-{stage}", self.group_prefix)
    }
}

/// `[http]`: the admin server (`/metrics`, `/healthz`, `/readyz`).
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: std::net::SocketAddr,
    /// The admin API's bearer token (`admin_token_file` / `admin_token_env`); without one the
    /// API under `/api/v1` answers 503 and `/metrics`, `/healthz`, `/readyz` stay open.
    pub admin_token: TokenSource,
}

/// An environment override that was applied.
struct Override {
    section: String,
    key: String,
    var: String,
}

/// Applies `REMARKET__SECTION__KEY=value` overrides to the service sections, and returns them
/// as `(section, key, variable)`. The value is read
/// as a TOML value when it parses as one (`10`, `true`, `"x"`), else as a plain string.
fn apply_env_overrides(
    root: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
    problems: &mut Problems,
) -> Vec<Override> {
    let mut applied = Vec::new();
    for (key, raw) in env {
        let Some(path) = key.strip_prefix("REMARKET__") else {
            continue;
        };
        let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
        let [section, field] = parts.as_slice() else {
            problems.service(&key, "overrides take the form REMARKET__SECTION__KEY");
            continue;
        };
        if !matches!(
            section.as_str(),
            "source" | "engine" | "tiktok" | "kafka" | "http"
        ) {
            problems.service(
                &key,
                "only [source], [engine], [tiktok], [kafka], [http] can be overridden",
            );
            continue;
        }
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let table = root
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match table {
            toml::Value::Table(t) => {
                t.insert(field.clone(), value);
                applied.push(Override {
                    section: section.clone(),
                    key: field.clone(),
                    var: key.clone(),
                });
            }
            _ => problems.service(section, "must be a table"),
        }
    }
    applied
}

#[cfg(test)]
mod tests;
