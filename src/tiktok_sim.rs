//! A faithful local simulator of the TikTok Marketing API (v1.3) endpoints the audience sink
//! uses, so the client can be built and tested without reaching TikTok.
//!
//! The contract is `shared/tiktok-api.md` §1–§8 and its checklist §11:
//!
//! | Endpoint | What it does here |
//! |---|---|
//! | `POST /open_api/v1.3/segment/audience/` | `action` `create` (default; `custom_audience_name`, cut to 67 + `...` above 70 chars, duplicates allowed) → `data.audience_id` (digits), type `Partner`; `delete` (`delete_audience_id`) |
//! | `POST /open_api/v1.3/segment/mapping/` | `add` (default) / `delete` of positional `batch_data` rows against `id_schema`, set semantics |
//! | `GET /open_api/v1.3/dmp/custom_audience/get/` | details + history; `custom_audience_ids` as JSON text |
//! | `GET /open_api/v1.3/dmp/custom_audience/list/` | paged list, `page_info` |
//! | `GET /open_api/v1.3/advertiser/info/` | the token's accounts of `advertiser_ids` (name, status, currency, time zone) |
//! | `/sim/...` | inspection and control, see `inspect.rs` |
//!
//! Every answer from API logic is HTTP 200 with `{code, message, request_id, data}`. The order
//! of checks, and why a rejected request never changes state, is in `handlers.rs`. Codes used:
//! 40104 (no `Access-Token`), 40105 (unknown token), 40001 (token not linked to the
//! advertiser), 40100 (app QPS), 40133 (advertiser QPS), 40011 (more than 10,000 rows),
//! 40002 (every other parameter or state problem). A path without its trailing slash, or any
//! unknown path, is HTTP 404 with a plain-text body.
//!
//! # Choices where tiktok-api.md is ambiguous
//!
//! - **Not-ready window** (`--not-ready-for`, §4.3 says TikTok answers "a 400" for 1–2 min):
//!   HTTP 200, code **40002**, message "Audience is not editable, please check audience
//!   status (ID)", the documented 40002 text for an audience that cannot be edited yet (§6,
//!   §8 "audience still processing"). The whole mapping request is rejected.
//! - **Unknown audience, or one not owned by the request's advertiser(s)**, on mapping, delete
//!   and `get/`: 40002 "Parameter error: invalid audience ID (ID)" (Segment's fixture, §4.2).
//! - **Non-Partner target** (mapping or delete): 40002 "Audience does not exist: ID is not a
//!   Partner audience" (Braze's "Audience Does Not Exist", §4.1).
//! - **Oversized batch**: 40011, not 40061 (§8 gives 40011 for "too many IDs").
//! - **Ids** must be lowercase hex: 64 chars for `*_SHA256`, 32 for `*_MD5` (§5). A row whose
//!   cells are all `{}` is rejected. `id_schema` and `action` values are case-insensitive.
//!   Ids in bodies must be JSON strings (§1).
//! - **QPS**: sliding windows of admitted requests (see `throttle.rs`); requests that fail auth
//!   or permission, or are throttled or faulted, do not count.
//! - **Audience cap**: 400 per advertiser (§6); the 401st create gets 40002.
//! - **Sizes**: no delayed matching model: `cover_num` = member count once ≥ 1,000, else 0.
//!
//! # Fault injection
//!
//! `--faults SPEC` at start, `POST /sim/faults` or [`Simulator::set_faults`] at run time (which
//! replaces the whole plan, scripts included). `SPEC` is clauses separated by `,` `;` or
//! newlines; an item without `:` continues the clause before it:
//!
//! ```text
//! rate[@EP]:FAULT=P[,FAULT=P...]   each request gets FAULT with probability P (one roll for all
//!                                   rate entries that apply, so rates add up)
//! script[@EP]:STEP[,STEP...]        the next requests get these steps, in order; once used up,
//!                                   rates apply again. A script step takes precedence over rates
//! latency[@EP]:DURATION             added to every request before it is processed
//! seed:N                            seed for the rate rolls (reproducible runs)
//! none | (empty)                    no faults
//!
//! FAULT = CODE      HTTP 200 envelope with that business code, e.g. 50002, 51003, 60001, 40100
//!       | httpNNN   HTTP NNN (400-599) with an HTML body, e.g. http504
//!       | reset     the connection is closed with a TCP RST and no response (see net.rs)
//! STEP  = ok | FAULT | latency=DURATION, each optionally repeated with *N (e.g. 50002*3)
//! EP    = audience | mapping | get | list | advertiser  (limit the clause to one endpoint)
//! ```
//!
//! Examples: `rate:50002=0.1,rate:http504=0.05`, `script:40100,40100,ok,http504,reset`,
//! `script@mapping:51003*2,ok;latency:50ms;seed:7`. Faults are decided per request to a
//! TikTok endpoint before authentication; a faulted request changes no state and does not
//! count against the QPS limits. Injected latency is slept first, then the request proceeds
//! normally (or fails if the same decision also holds a fault).

mod advertiser;
mod dmp;
mod envelope;
mod faults;
mod handlers;
mod inspect;
mod net;
mod persist;
mod segment;
mod state;
mod throttle;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use inspect::{AudienceInfo, IdType, Member, RequestLog};
pub use state::AudienceSeed;

use faults::FaultPlan;
use net::{Conn, SimListener};
use persist::Persist;
use state::{Registry, PARTNER};
use throttle::Throttle;

/// Request-log entries kept (oldest dropped first).
const REQUEST_LOG_CAP: usize = 100_000;

/// `remarket tiktok-sim`: run the TikTok API simulator.
#[derive(Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub listen: SocketAddr,
    /// TOKEN=ADVERTISER_ID[,ADVERTISER_ID...]: an access token and the advertisers it may act
    /// for (repeatable). Token values are never logged.
    #[arg(long = "token", value_name = "TOKEN=ADVERTISER_IDS", value_parser = TokenValueParser)]
    pub tokens: Vec<(String, Vec<String>)>,
    /// Requests per second allowed per app (all tokens together); beyond it code 40100.
    #[arg(long)]
    pub qps: Option<f64>,
    /// Requests per second allowed per advertiser; beyond it code 40133.
    #[arg(long)]
    pub advertiser_qps: Option<f64>,
    /// ADVERTISER_ID:AUDIENCE_ID: a pre-existing Partner audience (repeatable).
    #[arg(long = "audience", value_name = "ADVERTISER_ID:AUDIENCE_ID", value_parser = parse_audience)]
    pub audiences: Vec<(String, String)>,
    /// After creation an audience rejects mappings for this long (code 40002, "Audience is not
    /// editable, please check audience status"), e.g. "90s".
    #[arg(long)]
    pub not_ready_for: Option<humantime::Duration>,
    /// Fault plan, e.g. "rate:50002=0.1,rate:http504=0.05" or
    /// "script:40100,40100,ok,http504,reset". Clauses: rate:FAULT=P,...; script:STEP,...;
    /// latency:DURATION; seed:N; "rate@EP:", "script@EP:", "latency@EP:" limit a clause to one
    /// endpoint. FAULT = business code | httpNNN | reset; STEP = ok | FAULT | latency=DURATION,
    /// optionally repeated as STEP*N; EP = audience | mapping | get | list.
    #[arg(long)]
    pub faults: Option<String>,
    /// JSON snapshot of audiences and members: loaded at start if present, rewritten after
    /// every change and at shutdown.
    #[arg(long)]
    pub state_file: Option<PathBuf>,
}

impl Default for SimArgs {
    fn default() -> Self {
        SimArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 8099)),
            tokens: Vec::new(),
            qps: None,
            advertiser_qps: None,
            audiences: Vec::new(),
            not_ready_for: None,
            faults: None,
            state_file: None,
        }
    }
}

/// Hand-written so token values never reach a log: they print as `***`.
impl std::fmt::Debug for SimArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tokens: Vec<(&str, &Vec<String>)> =
            self.tokens.iter().map(|(_, adv)| ("***", adv)).collect();
        f.debug_struct("SimArgs")
            .field("listen", &self.listen)
            .field("tokens", &tokens)
            .field("qps", &self.qps)
            .field("advertiser_qps", &self.advertiser_qps)
            .field("audiences", &self.audiences)
            .field("not_ready_for", &self.not_ready_for)
            .field("faults", &self.faults)
            .field("state_file", &self.state_file)
            .finish()
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses `TOKEN=ADVERTISER_ID[,ADVERTISER_ID...]`. Errors never contain the token.
pub fn parse_token(text: &str) -> Result<(String, Vec<String>), String> {
    // Split at the last '=': advertiser ids never contain one, tokens might (base64 padding).
    let (token, advertisers) = text
        .rsplit_once('=')
        .ok_or("expected TOKEN=ADVERTISER_ID[,ADVERTISER_ID...] (token ***)")?;
    if token.trim().is_empty() {
        return Err("the token before '=' is empty".to_owned());
    }
    let advertisers: Vec<String> = advertisers
        .split(',')
        .map(|a| a.trim().to_owned())
        .collect();
    if let Some(bad) = advertisers.iter().find(|a| !digits(a)) {
        return Err(format!(
            "advertiser id {bad:?} for token *** must be digits"
        ));
    }
    Ok((token.trim().to_owned(), advertisers))
}

/// Parses `ADVERTISER_ID:AUDIENCE_ID` (both digits).
pub fn parse_audience(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((adv, aud)) if digits(adv.trim()) && digits(aud.trim()) => {
            Ok((adv.trim().to_owned(), aud.trim().to_owned()))
        }
        _ => Err(format!(
            "expected ADVERTISER_ID:AUDIENCE_ID (digits), got {text:?}"
        )),
    }
}

/// clap adapter for [`parse_token`] whose errors do not echo the raw value (clap's default
/// "invalid value '<input>'" would print the token).
#[derive(Clone)]
struct TokenValueParser;

impl clap::builder::TypedValueParser for TokenValueParser {
    type Value = (String, Vec<String>);

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let fail = |msg: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--token: {msg}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| fail("not UTF-8".to_owned()))?;
        parse_token(text).map_err(fail)
    }
}

/// Why the simulator could not start or a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("--{flag} must be a positive number, got {value}")]
    InvalidRate { flag: &'static str, value: f64 },
    #[error("invalid fault spec: {0}")]
    FaultSpec(String),
    #[error("cannot read state file {path}")]
    StateRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is not a simulator snapshot")]
    StateParse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "audience {audience_id} is given for advertiser {advertiser_id} but belongs to {owner}"
    )]
    AudienceConflict {
        audience_id: String,
        advertiser_id: String,
        owner: String,
    },
    #[error("cannot add audience: {0}")]
    Audience(String),
}

/// Everything behind the mutex. Never held across an `.await`.
pub(crate) struct Inner {
    registry: Registry,
    throttle: Throttle,
    faults: FaultPlan,
    log: VecDeque<RequestLog>,
}

impl Inner {
    fn push_log(&mut self, entry: RequestLog) {
        if self.log.len() == REQUEST_LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }
}

struct Shared {
    inner: Mutex<Inner>,
    started: Instant,
    not_ready_for: Option<Duration>,
    persist: Option<Arc<Persist>>,
}

/// The simulator: shared state plus its server. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

fn check_rate(flag: &'static str, value: Option<f64>) -> Result<Option<f64>, SimError> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(SimError::InvalidRate { flag, value: v }),
        other => Ok(other),
    }
}

impl Simulator {
    /// Validates the arguments and loads `state_file` if it exists. Pre-existing audiences
    /// (`--audience`) are added when the snapshot does not already hold them.
    pub fn new(args: &SimArgs) -> Result<Simulator, SimError> {
        let qps = check_rate("qps", args.qps)?;
        let advertiser_qps = check_rate("advertiser-qps", args.advertiser_qps)?;
        let faults = FaultPlan::parse(args.faults.as_deref().unwrap_or(""))
            .map_err(|e| SimError::FaultSpec(e.to_string()))?;
        let mut registry = Registry::new(&args.tokens);
        if let Some(path) = &args.state_file {
            if let Some(snapshot) = persist::load(path)? {
                registry.restore(snapshot);
            }
        }
        for (advertiser_id, audience_id) in &args.audiences {
            match registry.get(audience_id) {
                Some(a) if &a.advertiser_id == advertiser_id => {}
                Some(a) => {
                    return Err(SimError::AudienceConflict {
                        audience_id: audience_id.clone(),
                        advertiser_id: advertiser_id.clone(),
                        owner: a.advertiser_id.clone(),
                    })
                }
                None => {
                    let seed = AudienceSeed {
                        advertiser_id: advertiser_id.clone(),
                        audience_id: Some(audience_id.clone()),
                        name: None,
                        audience_type: PARTNER.to_owned(),
                    };
                    registry
                        .insert(seed, None)
                        .map_err(|e| SimError::Audience(e.message))?;
                }
            }
        }
        let persist = args.state_file.as_ref().map(|path| {
            Arc::new(Persist {
                path: path.clone(),
                changed: tokio::sync::Notify::new(),
            })
        });
        Ok(Simulator {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner {
                    registry,
                    throttle: Throttle::new(qps, advertiser_qps),
                    faults,
                    log: VecDeque::new(),
                }),
                started: Instant::now(),
                not_ready_for: args.not_ready_for.map(Into::into),
                persist,
            }),
        })
    }

    /// Serves on an already-bound listener until `shutdown` resolves, then lets in-flight
    /// requests finish and writes the state file a last time.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_writer, writer_stopped) = oneshot::channel();
        let writer = self
            .shared
            .persist
            .clone()
            .map(|p| tokio::spawn(persist::writer(self.clone(), p, writer_stopped)));
        let app = handlers::router(self.clone()).into_make_service_with_connect_info::<Conn>();
        let result = axum::serve(SimListener(listener), app)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_writer.send(());
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        result
    }

    /// Binds 127.0.0.1:0 and serves on the current runtime. Returns the base URL
    /// (`http://127.0.0.1:PORT`) and a handle that stops the server when dropped or stopped.
    pub async fn spawn(self) -> std::io::Result<(String, SimHandle)> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = rx.await;
        }));
        let handle = SimHandle {
            shutdown: Some(tx),
            task: Some(task),
        };
        Ok((format!("http://{addr}"), handle))
    }

    /// All audiences, in creation order.
    pub fn audiences(&self) -> Vec<AudienceInfo> {
        self.lock().registry.infos()
    }

    /// An audience's members, sorted by id type then id; `None` if there is no such audience.
    pub fn members(&self, audience_id: &str) -> Option<Vec<Member>> {
        self.lock().registry.members(audience_id)
    }

    /// The request log, oldest first (at most 100,000 entries).
    pub fn requests(&self) -> Vec<RequestLog> {
        self.lock().log.iter().cloned().collect()
    }

    /// Replaces the fault plan (and any remaining script steps).
    pub fn set_faults(&self, spec: &str) -> Result<(), SimError> {
        let plan = FaultPlan::parse(spec).map_err(|e| SimError::FaultSpec(e.to_string()))?;
        self.lock().faults = plan;
        Ok(())
    }

    /// The current fault spec text.
    pub fn faults(&self) -> String {
        self.lock().faults.text().to_owned()
    }

    /// Inserts an audience directly, of any type (e.g. a `"Customer File Audience"`), ready
    /// at once. Equivalent to `POST /sim/audiences`.
    pub fn add_audience(&self, seed: AudienceSeed) -> Result<AudienceInfo, SimError> {
        let info = {
            let mut inner = self.lock();
            let id = inner
                .registry
                .insert(seed, None)
                .map_err(|e| SimError::Audience(e.message))?;
            inner.registry.get(&id).map(state::Audience::info)
        };
        self.state_changed();
        info.ok_or_else(|| SimError::Audience("audience vanished".to_owned()))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.shared.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn not_ready_for(&self) -> Option<Duration> {
        self.shared.not_ready_for
    }

    pub(crate) fn state_changed(&self) {
        if let Some(p) = &self.shared.persist {
            p.changed.notify_one();
        }
    }
}

/// Stops a [`Simulator::spawn`]ed server when dropped (without waiting) or [`stop`]ped.
///
/// [`stop`]: SimHandle::stop
#[derive(Debug)]
pub struct SimHandle {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl SimHandle {
    /// Shuts the server down and waits until it has stopped and the state file is written.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `remarket tiktok-sim`: binds `args.listen`, logs the address and serves until Ctrl-C (or
/// SIGTERM on Unix).
pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let sim = Simulator::new(&args).context("invalid simulator arguments")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        tokens = args.tokens.len(),
        audiences = sim.audiences().len(),
        faults = %sim.faults(),
        "TikTok simulator listening on http://{addr}"
    );
    sim.serve(listener, shutdown_signal()).await?;
    tracing::info!("TikTok simulator stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
