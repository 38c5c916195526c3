//! Service configuration: the TOML file of DESIGN §3, layered with `REMARKET__SECTION__KEY`
//! environment overrides, parsed into raw serde types and validated into [`Config`].
//!
//! Validation never stops at the first problem: every section and every campaign sub-table is
//! deserialised on its own, and every semantic check runs, so `check-config` can list *all*
//! problems, each with its campaign id and field.

pub use crate::duration;
pub use crate::event::Format;
pub use crate::problems::{ConfigError, Problems};

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::campaign::{self, Campaign, RawCampaign};
use crate::event::Schema;
use duration::HumanDuration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    format: Option<Format>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    allowed_lateness: Option<HumanDuration>,
    idle_timeout: Option<HumanDuration>,
    shards: Option<i64>,
    max_custom_props: Option<i64>,
    max_future: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTikTok {
    base_url: Option<String>,
    access_token_file: Option<PathBuf>,
    access_token_env: Option<String>,
    qps: Option<f64>,
    max_batch: Option<i64>,
    linger: Option<HumanDuration>,
    drain_grace: Option<HumanDuration>,
    retry_for: Option<HumanDuration>,
}

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

/// `[tiktok]`: the audience sink.
#[derive(Debug, Clone)]
pub struct TikTokSettings {
    pub base_url: String,
    pub token: TokenSource,
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
}

/// TikTok's limit on ids per mapping request.
pub const TIKTOK_MAX_BATCH: usize = 10_000;

impl Config {
    /// Reads `path` and applies the process environment's `REMARKET__…` overrides.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
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
        let mut root: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                problems.service("(file)", e.to_string().trim().replace('\n', " "));
                return Err(problems);
            }
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        let overrides = apply_env_overrides(&mut root, env.iter().cloned(), &mut problems);

        fn section<T: Default + for<'de> Deserialize<'de>>(
            root: &mut toml::Table,
            name: &str,
            problems: &mut Problems,
        ) -> T {
            match root.remove(name).map(toml::Value::try_into::<T>) {
                None => T::default(),
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    problems.service(name, e.message().trim().to_owned());
                    T::default()
                }
            }
        }
        for (name, spec) in SECTIONS {
            if let Some(v) = root.get_mut(*name) {
                strip_unknown(v, spec, name, None, &mut problems);
            }
        }
        let source: RawSource = section(&mut root, "source", &mut problems);
        let engine: RawEngine = section(&mut root, "engine", &mut problems);
        let tiktok: RawTikTok = section(&mut root, "tiktok", &mut problems);
        let kafka_raw: Option<RawKafka> = match root.remove("kafka") {
            None => None,
            Some(v) => match v.try_into::<RawKafka>() {
                Ok(k) => Some(k),
                Err(e) => {
                    problems.service("kafka", e.message().trim().to_owned());
                    None
                }
            },
        };
        let http: RawHttp = section(&mut root, "http", &mut problems);
        let raw_campaigns = root.remove("campaign");
        for key in root.keys() {
            problems.service(key, "unknown section");
        }

        let engine = validate_engine(engine, &mut problems);
        let kafka = kafka_raw.and_then(|k| validate_kafka(k, &env, &mut problems));
        let http = validate_http(http, &mut problems);
        let tiktok = validate_tiktok(tiktok, &mut problems);

        let mut schema = Schema::default();
        let mut campaigns = Vec::new();
        match raw_campaigns {
            None => problems.service("campaign", "at least one [[campaign]] is required"),
            Some(toml::Value::Array(items)) => {
                for (i, mut item) in items.into_iter().enumerate() {
                    let label = match item.get("id") {
                        Some(toml::Value::String(id)) => id.clone(),
                        _ => format!("#{}", i + 1),
                    };
                    strip_unknown(&mut item, &CAMPAIGN, "", Some(&label), &mut problems);
                    match RawCampaign::deserialize(item) {
                        Ok(raw) => {
                            if let Some(c) = campaign::validate(raw, i, &mut schema, &mut problems)
                            {
                                campaigns.push(c);
                            }
                        }
                        Err(e) => problems.push(ConfigError {
                            campaign: Some(format!("#{}", i + 1)),
                            field: "(table)".into(),
                            message: e.message().trim().to_owned(),
                        }),
                    }
                }
            }
            Some(_) => problems.service("campaign", "must be an array of tables [[campaign]]"),
        }
        let mut seen = std::collections::HashSet::new();
        for c in &campaigns {
            if !seen.insert(c.id.as_str()) {
                problems.push(ConfigError {
                    campaign: Some(c.id.clone()),
                    field: "id".into(),
                    message: "duplicate campaign id".into(),
                });
            }
        }
        if campaigns.len() > usize::from(u16::MAX) {
            problems.service("campaign", "at most 65535 campaigns");
        }
        // Every canonical property and identifier is kept, whether or not a loaded campaign
        // reads it, and some custom ones: state restored after a restart with a new campaign
        // holds the profile a replay with that campaign would have built.
        schema.keep_profile(engine.as_ref().map_or(0, |e| e.max_custom_props));

        if !problems.is_empty() {
            name_overrides(&mut problems, &overrides);
            return Err(problems);
        }
        Ok(Config {
            source: SourceSettings {
                format: source.format.unwrap_or_default(),
            },
            engine: engine.expect("no problems"),
            tiktok: tiktok.expect("no problems"),
            kafka,
            http: http.expect("no problems"),
            campaigns,
            schema,
        })
    }
}

fn validate_engine(e: RawEngine, problems: &mut Problems) -> Option<EngineSettings> {
    let before = problems.len();
    let allowed_lateness = e.allowed_lateness.unwrap_or_else(|| dur("5s"));
    let idle_timeout = e.idle_timeout.unwrap_or_else(|| dur("30s"));
    if idle_timeout.as_millis() <= 0 {
        problems.service("engine.idle_timeout", "must be > 0");
    }
    let shards = match e.shards.unwrap_or(0) {
        n @ 0..=1024 => n as usize,
        _ => {
            problems.service("engine.shards", "must be in 0..=1024 (0 = one per core)");
            0
        }
    };
    let max_future = e.max_future.unwrap_or_else(|| dur("1h"));
    if max_future.as_millis() <= 0 {
        problems.service("engine.max_future", "must be > 0");
    }
    let max_custom_props = match e.max_custom_props.unwrap_or(16) {
        n @ 0..=64 => n as u8,
        _ => {
            problems.service("engine.max_custom_props", "must be in 0..=64");
            0
        }
    };
    (problems.len() == before).then_some(EngineSettings {
        allowed_lateness,
        idle_timeout,
        shards,
        max_custom_props,
        max_future,
    })
}

fn validate_tiktok(t: RawTikTok, problems: &mut Problems) -> Option<TikTokSettings> {
    let before = problems.len();
    let base_url = t
        .base_url
        .unwrap_or_else(|| "https://business-api.tiktok.com".into());
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        problems.service("tiktok.base_url", "must start with http:// or https://");
    }
    let token = match (t.access_token_file, t.access_token_env) {
        (Some(_), Some(_)) => {
            problems.service(
                "tiktok.access_token_file",
                "set access_token_file or access_token_env, not both",
            );
            TokenSource::None
        }
        (Some(f), None) => TokenSource::File(f),
        (None, Some(v)) => TokenSource::Env(v),
        (None, None) => TokenSource::None,
    };
    let qps = t.qps.unwrap_or(10.0);
    if !(qps > 0.0 && qps.is_finite()) {
        problems.service("tiktok.qps", "must be > 0");
    }
    let max_batch = t.max_batch.unwrap_or(TIKTOK_MAX_BATCH as i64);
    if !(1..=TIKTOK_MAX_BATCH as i64).contains(&max_batch) {
        problems.service("tiktok.max_batch", "must be in 1..=10000 (TikTok's limit)");
    }
    let linger = t.linger.unwrap_or_else(|| dur("5s"));
    if linger.as_millis() <= 0 {
        problems.service("tiktok.linger", "must be > 0");
    }
    let drain_grace = t.drain_grace.unwrap_or_else(|| dur("20s"));
    if drain_grace.as_millis() <= 0 {
        problems.service("tiktok.drain_grace", "must be > 0");
    }
    let retry_for = t.retry_for.unwrap_or_else(|| dur("15m"));
    if retry_for.as_millis() <= 0 {
        problems.service("tiktok.retry_for", "must be > 0");
    }
    (problems.len() == before).then_some(TikTokSettings {
        base_url,
        token,
        qps,
        max_batch: max_batch as usize,
        linger,
        drain_grace,
        retry_for,
    })
}

/// The shape of a config table, for reporting every unknown key (serde would stop at the
/// first one of each table).
enum Spec {
    Leaf,
    Table(&'static [(&'static str, Spec)]),
    ArrayOf(&'static Spec),
}

const CONDITIONS: Spec = Spec::ArrayOf(&Spec::Table(&[
    ("prop", Spec::Leaf),
    ("op", Spec::Leaf),
    ("value", Spec::Leaf),
]));
const DURATION_EVENT: Spec = Spec::Table(&[("event", Spec::Leaf), ("within", Spec::Leaf)]);
const CAMPAIGN: Spec = Spec::Table(&[
    ("id", Spec::Leaf),
    ("name", Spec::Leaf),
    ("ad_account", Spec::Leaf),
    ("start", Spec::Leaf),
    ("end", Spec::Leaf),
    (
        "trigger",
        Spec::Table(&[
            ("event", Spec::Leaf),
            ("where", CONDITIONS),
            ("inaction", DURATION_EVENT),
        ]),
    ),
    (
        "who",
        Spec::Table(&[
            ("where", CONDITIONS),
            ("control_group", Spec::Leaf),
            ("target_cap", Spec::Leaf),
        ]),
    ),
    (
        "what",
        Spec::Table(&[
            (
                "audience",
                Spec::Table(&[
                    (
                        "new",
                        Spec::Table(&[("name", Spec::Leaf), ("description", Spec::Leaf)]),
                    ),
                    ("existing", Spec::Leaf),
                ]),
            ),
            ("identifiers", Spec::Leaf),
            ("remove_on_goal", Spec::Leaf),
        ]),
    ),
    ("goal", DURATION_EVENT),
]);
const SECTIONS: &[(&str, Spec)] = &[
    (
        "kafka",
        Spec::Table(&[
            ("brokers", Spec::Leaf),
            ("group_prefix", Spec::Leaf),
            ("events_topic", Spec::Leaf),
            ("profiles_topic", Spec::Leaf),
            ("topic_prefix", Spec::Leaf),
            ("partitions", Spec::Leaf),
            ("replication", Spec::Leaf),
            ("commit_interval", Spec::Leaf),
            ("client", Spec::Leaf),
        ]),
    ),
    ("http", Spec::Table(&[("listen", Spec::Leaf)])),
    ("source", Spec::Table(&[("format", Spec::Leaf)])),
    (
        "engine",
        Spec::Table(&[
            ("allowed_lateness", Spec::Leaf),
            ("idle_timeout", Spec::Leaf),
            ("shards", Spec::Leaf),
            ("max_custom_props", Spec::Leaf),
            ("max_future", Spec::Leaf),
        ]),
    ),
    (
        "tiktok",
        Spec::Table(&[
            ("base_url", Spec::Leaf),
            ("access_token_file", Spec::Leaf),
            ("access_token_env", Spec::Leaf),
            ("qps", Spec::Leaf),
            ("max_batch", Spec::Leaf),
            ("linger", Spec::Leaf),
            ("drain_grace", Spec::Leaf),
            ("retry_for", Spec::Leaf),
        ]),
    ),
];

/// Removes and reports every key `spec` does not know, at any depth.
fn strip_unknown(
    v: &mut toml::Value,
    spec: &Spec,
    path: &str,
    campaign: Option<&str>,
    problems: &mut Problems,
) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (spec, v) {
        (Spec::Table(keys), toml::Value::Table(t)) => {
            let unknown: Vec<String> = t
                .keys()
                .filter(|k| !keys.iter().any(|(n, _)| n == k))
                .cloned()
                .collect();
            for k in unknown {
                t.remove(&k);
                problems.push(ConfigError {
                    campaign: campaign.map(str::to_owned),
                    field: join(&k),
                    message: "unknown field".into(),
                });
            }
            for (k, sub) in keys.iter() {
                if let Some(child) = t.get_mut(*k) {
                    strip_unknown(child, sub, &join(k), campaign, problems);
                }
            }
        }
        (Spec::ArrayOf(item), toml::Value::Array(a)) => {
            for (i, x) in a.iter_mut().enumerate() {
                strip_unknown(x, item, &format!("{path}[{i}]"), campaign, problems);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    brokers: Option<String>,
    group_prefix: Option<String>,
    events_topic: Option<String>,
    profiles_topic: Option<String>,
    topic_prefix: Option<String>,
    partitions: Option<i64>,
    replication: Option<i64>,
    commit_interval: Option<HumanDuration>,
    #[serde(default)]
    client: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
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
}

fn validate_kafka(
    k: RawKafka,
    env: &[(String, String)],
    problems: &mut Problems,
) -> Option<KafkaSettings> {
    let before = problems.len();
    let brokers = k.brokers.unwrap_or_default();
    if brokers.trim().is_empty() {
        problems.service("kafka.brokers", "missing (host:port[,host:port…])");
    }
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 200
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let mut name = |field: &str, v: Option<String>, default: &str| -> String {
        let v = v.unwrap_or_else(|| default.to_owned());
        if !name_ok(&v) {
            problems.service(
                field,
                "must be a Kafka name: [A-Za-z0-9._-], 1 to 200 characters",
            );
        }
        v
    };
    let group_prefix = name("kafka.group_prefix", k.group_prefix, "remarket");
    let events_topic = name("kafka.events_topic", k.events_topic, "events");
    let profiles_topic = name("kafka.profiles_topic", k.profiles_topic, "profiles");
    let topic_prefix = name("kafka.topic_prefix", k.topic_prefix, "remarket");
    let partitions = match k.partitions.unwrap_or(0) {
        n @ 0..=10_000 => n as i32,
        _ => {
            problems.service(
                "kafka.partitions",
                "must be in 0..=10000 (0 = as the events topic)",
            );
            0
        }
    };
    let replication = match k.replication.unwrap_or(1) {
        n @ 1..=32 => n as i32,
        _ => {
            problems.service("kafka.replication", "must be in 1..=32");
            1
        }
    };
    // Kafka Streams commits every 30 s. 5 s bounds what a crash re-reads while a user
    // touched several times within it is written to the changelog once.
    let commit_interval = k.commit_interval.unwrap_or_else(|| dur("5s"));
    if commit_interval.as_millis() <= 0 {
        problems.service("kafka.commit_interval", "must be > 0");
    }
    let client = k
        .client
        .into_iter()
        .filter_map(|(key, v)| Some((key.clone(), client_value(&key, v, env, problems)?)))
        .collect();
    (problems.len() == before).then_some(KafkaSettings {
        brokers,
        group_prefix,
        events_topic,
        profiles_topic,
        topic_prefix,
        partitions,
        replication,
        commit_interval,
        client,
    })
}

fn validate_http(h: RawHttp, problems: &mut Problems) -> Option<HttpSettings> {
    let text = h.listen.unwrap_or_else(|| "0.0.0.0:9898".into());
    match text.parse() {
        Ok(listen) => Some(HttpSettings { listen }),
        Err(_) => {
            problems.service("http.listen", format!("not a socket address: {text:?}"));
            None
        }
    }
}

fn dur(s: &str) -> HumanDuration {
    HumanDuration::parse(s).expect("valid default duration")
}

/// Says which environment variable set a field that has a problem: `engine.shards: must be
/// in 0..=1024 (set by REMARKET__ENGINE__SHARDS)`. A section-wide type error names neither
/// field nor key, only the value: it is matched by the value, and given the field.
fn name_overrides(problems: &mut Problems, overrides: &[Override]) {
    for p in problems.0.iter_mut().filter(|p| p.campaign.is_none()) {
        for o in overrides {
            let field = format!("{}.{}", o.section, o.key);
            let exact = p.field == field;
            let by_value = p.field == o.section
                && (p.message.contains(&format!("`{}`", o.key))
                    || p.message.contains(&format!("\"{}\"", o.raw))
                    || p.message.contains(&format!(" {},", o.raw)));
            if exact || by_value {
                p.field = field;
                p.message = format!("{} (set by {})", p.message, o.var);
            }
        }
    }
}

/// An environment override that was applied.
struct Override {
    section: String,
    key: String,
    var: String,
    raw: String,
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
                    raw: raw.clone(),
                });
            }
            _ => problems.service(section, "must be a table"),
        }
    }
    applied
}

#[cfg(test)]
mod tests;
