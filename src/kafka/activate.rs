//! The activate stage over Kafka: consumer group `<group_prefix>-activate` on
//! `<prefix>.qualified` (key = campaign id, so one campaign lives in one partition and its
//! target cap is exact), decisions to `<prefix>.decisions` (same partition, key
//! `campaign/user`), audience ops to the TikTok sink.
//!
//! # Order
//!
//! Qualifications of one campaign arrive from every detect partition, each in its own time.
//! They are held in a [`Holdback`] until every detect partition's watermark record (sent at
//! each detect checkpoint, after the outputs it covers were written) has passed them, then
//! decided in `(at, user_id)` order — the order `replay` decides in, so the target cap picks
//! the same users. A detect partition that is not consumed (no detect replica running) holds
//! the campaign's decisions back, and so does an idle one (see [`Holdback::watermark`]).
//!
//! # Commit point
//!
//! A qualified record's offset is committed only once it was released from the holdback, its
//! decision is durable (the producer was flushed) and TikTok acknowledged every op it caused. On assignment, the partition's
//! decisions are read back first (last value per key wins); a re-read qualification of a user
//! who is already `exported` sends the add again (TikTok adds are idempotent), so an add that
//! was decided but not acknowledged before a crash is never lost.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{BorrowedMessage, Message};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::read_to_end;
use super::stage::{Offsets, Round, Stage, StageError};
use super::wire::{hex_ids, parse_ids, Qualified};
use crate::activate::{Activator, Decided, Held, Holdback, Item, Outcome, Released};
use crate::config::Config;
use crate::detect::{CampaignIdx, Conversion, Erasure, Qualification};
use crate::sink::service::{TikTokSink, TrySend};
use crate::sink::AudienceOp;

/// A persisted decision (value of the decisions topic): the schema of a `decisions.jsonl`
/// line — `campaign`, `user_id`, `at`, `outcome`, and `ids` (`EMAIL_SHA256`/`PHONE_SHA256`)
/// only on `exported` and `removed` — with the user's latest decision per key, so `at` stays
/// the qualification's time and a conversion adds `converted_at` (an extension).
/// Records of earlier versions (`email_sha256`/`phone_sha256` at the top level, `converted`)
/// still restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub campaign: String,
    pub user_id: String,
    pub at: i64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<IdsRecord>,
    /// When the user converted (the goal event's `ts`); `at` stays the qualification's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_at: Option<i64>,
    /// The revenue of the user's counted conversions (`goal.revenue_prop`; the report's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revenue: f64,
    /// Earlier versions' fields, read only.
    #[serde(default, skip_serializing)]
    pub email_sha256: Option<String>,
    #[serde(default, skip_serializing)]
    pub phone_sha256: Option<String>,
    #[serde(default, skip_serializing)]
    pub converted: bool,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// `ids` of a decision, as in `decisions.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdsRecord {
    #[serde(
        rename = "EMAIL_SHA256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub email: Option<String>,
    #[serde(
        rename = "PHONE_SHA256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub phone: Option<String>,
}

impl DecisionRecord {
    /// The decision's identifiers, from this version's `ids` or an earlier one's fields.
    pub fn ids(&self) -> crate::detect::Ids {
        match &self.ids {
            Some(ids) => parse_ids(&ids.email, &ids.phone),
            None => parse_ids(&self.email_sha256, &self.phone_sha256),
        }
    }
}

/// Live counters of the stage.
#[derive(Debug, Default)]
pub struct ActivateStatus {
    pub decisions: std::sync::atomic::AtomicU64,
    /// Decisions forgotten by erasure requests.
    pub erased: std::sync::atomic::AtomicU64,
    /// Decisions by `(campaign, outcome)`.
    pub by_outcome: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// The consumer's lag per `(topic, partition)`, from librdkafka's statistics.
    pub lag: super::Lag,
    pub assigned: std::sync::atomic::AtomicU64,
    pub ready: AtomicBool,
    /// Times consumption was paused because the TikTok sink was full.
    pub pauses: std::sync::atomic::AtomicU64,
    /// Per owned partition, its report (tallies, days, latest qualification) as of the last
    /// commit: what the reports topic was last sent for it.
    pub own: Mutex<BTreeMap<i32, super::reports::PartitionReport>>,
    /// Every activate partition's report as the reports topic held it at its last read
    /// (written by each partition's owner).
    pub remote: Mutex<BTreeMap<i32, super::reports::PartitionReport>>,
    /// Per campaign, the size TikTok last reported for its audience and when it was asked.
    pub audience_sizes: Mutex<BTreeMap<String, AudienceSize>>,
}

/// What TikTok last said about an audience's size.
#[derive(Debug, Clone, Copy, Default)]
pub struct AudienceSize {
    /// `None`: TikTok has not answered yet.
    pub size: Option<u64>,
    /// When it was last asked (wall-clock ms), answered or not.
    pub asked_ms: i64,
}

impl ActivateStatus {
    /// Every campaign's tally over the partitions this replica owns.
    pub fn tallies_by_campaign(&self) -> BTreeMap<String, crate::report::Tally> {
        let own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum: BTreeMap<String, crate::report::Tally> = BTreeMap::new();
        for r in own.values() {
            for (c, x) in &r.tallies {
                *sum.entry(c.clone()).or_default() += *x;
            }
        }
        sum
    }

    /// Calls `f` with every activate partition's report known here: those this replica
    /// owns as of its last commit, the others as their owners last wrote them. How many.
    fn each_report(&self, mut f: impl FnMut(&super::reports::PartitionReport)) -> usize {
        let own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        let remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
        let others = remote.iter().filter(|(p, _)| !own.contains_key(p));
        let mut partitions = 0;
        for (_, r) in own.iter().chain(others) {
            partitions += 1;
            f(r);
        }
        partitions
    }

    /// Campaign `id`'s tally over every activate partition known here, with how many those
    /// are.
    pub fn tally(&self, id: &str) -> (crate::report::Tally, usize) {
        let mut sum = crate::report::Tally::default();
        let partitions = self.each_report(|r| {
            if let Some(x) = r.tallies.get(id) {
                sum += *x;
            }
        });
        (sum, partitions)
    }

    /// Campaign `id`'s days over every activate partition known here, and its latest
    /// qualification.
    pub fn daily(&self, id: &str) -> (crate::report::Daily, Option<i64>) {
        let mut sum = crate::report::Daily::new();
        let mut last = None;
        self.each_report(|r| {
            if let Some(d) = r.daily.get(id) {
                crate::report::add_daily(&mut sum, d);
            }
            last = last.max(r.last_qualified.get(id).copied());
        });
        (sum, last)
    }

    /// The size TikTok last reported for `id`'s audience.
    pub fn audience_size(&self, id: &str) -> Option<u64> {
        let m = self
            .audience_sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.get(id).and_then(|s| s.size)
    }
}

impl ActivateStatus {
    fn count(&self, campaign: &str, outcome: Outcome) {
        let mut m = self.by_outcome.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((campaign.to_owned(), outcome.as_str()))
            .or_default() += 1;
    }
}

struct Part {
    /// Which assignment this is: acknowledgements of ops sent under an earlier assignment of
    /// the same partition must not count for this one.
    generation: u64,
    act: Activator,
    /// Offset → ops not yet acknowledged.
    pending: BTreeMap<i64, u32>,
    /// Qualifications and conversions waiting for every detect partition's watermark.
    hold: Holdback<i64>,
    /// Offset → records held in `hold`: the commit stays at or below the first.
    held: BTreeMap<i64, u32>,
    /// Offset → decisions an erasure there forgot, whose tombstones wait for the commit.
    erased: BTreeMap<i64, Vec<(CampaignIdx, crate::event::UserId)>>,
    consumed: i64,
}

struct State {
    config: Arc<Config>,
    campaign_ids: HashMap<String, CampaignIdx>,
    parts: BTreeMap<i32, Part>,
    producer: super::StageProducer,
    decisions: String,
    qualified: String,
    status: Arc<ActivateStatus>,
    generations: u64,
    /// Token of each op in the sink → `(partition, generation, offset)`.
    inflight: HashMap<u64, (i32, u64, i64)>,
    next_token: u64,
    /// Ops decided but not yet taken by the (full) sink: `(partition, op, token)`. While any
    /// wait, consumption is paused.
    backlog: VecDeque<(i32, AudienceOp, u64)>,
    /// The TikTok sink (taken on the way out, to drain it) and its acknowledgements.
    sink: Option<TikTokSink>,
    acks: mpsc::UnboundedReceiver<u64>,
    rt: tokio::runtime::Handle,
    interval: Duration,
    last_commit: Instant,
    /// When the holdback was last logged (every 10 s while it holds anything).
    last_hold_log: Instant,
}

impl Stage for State {
    const NAME: &'static str = "activate";

    fn lag(&self) -> &super::Lag {
        &self.status.lag
    }

    fn assign(&mut self, parts: &[i32]) -> Result<(), StageError> {
        let mut error = None;
        for &p in parts {
            if self.parts.contains_key(&p) {
                continue;
            }
            match self.restore(p) {
                Ok(part) => {
                    self.parts.insert(p, part);
                }
                Err(e) => {
                    error.get_or_insert(StageError::Fatal(e));
                }
            }
        }
        self.status
            .assigned
            .store(self.parts.len() as u64, Ordering::Relaxed);
        self.status.ready.store(true, Ordering::Relaxed);
        error.map_or(Ok(()), Err)
    }

    fn durable(&mut self, only: Option<&BTreeSet<i32>>) -> Result<Offsets, StageError> {
        self.offsets(only)
    }

    fn revoked(&mut self, parts: &BTreeSet<i32>) {
        for p in parts {
            self.parts.remove(p);
        }
        (self.status.own.lock().unwrap_or_else(|e| e.into_inner()))
            .retain(|p, _| !parts.contains(p));
        // Not handed over, so not acknowledged: the next owner reads their records again.
        self.backlog.retain(|(p, _, _)| !parts.contains(p));
        self.status
            .assigned
            .store(self.parts.len() as u64, Ordering::Relaxed);
    }

    fn record(&mut self, m: &BorrowedMessage<'_>, _now: Instant) -> Result<(), StageError> {
        let ops = self.on_message(m.partition(), m.offset(), m.payload().unwrap_or(&[]));
        for (offset, op) in ops {
            let token = self.track(m.partition(), offset);
            self.backlog.push_back((m.partition(), op, token));
        }
        Ok(())
    }

    fn round(&mut self, _polled: bool, now: Instant) -> Result<Round, StageError> {
        while let Ok(t) = self.acks.try_recv() {
            self.acknowledged(t);
        }
        // Hand the sink what waits, as far as it takes it; consumption is paused (never
        // dropped) while anything waits, so polling — heartbeats, rebalances — goes on.
        let sink = self
            .sink
            .as_ref()
            .expect("the sink is taken only on the way out");
        while let Some((p, op, token)) = self.backlog.pop_front() {
            match sink.try_send_tracked(op, token) {
                Ok(()) => {}
                Err(TrySend::Full(op)) => {
                    self.backlog.push_front((p, op, token));
                    break;
                }
                Err(TrySend::Stopped) => {
                    return Err(StageError::fatal(anyhow::anyhow!(
                        "the TikTok sink stopped"
                    )))
                }
            }
        }
        if now.duration_since(self.last_hold_log) >= Duration::from_secs(10) {
            self.last_hold_log = now;
            for (p, part) in &self.parts {
                if !part.hold.is_empty() {
                    tracing::info!(
                        partition = p,
                        held = part.hold.len(),
                        released_through = part.hold.watermark(),
                        upstream = ?part.hold.upstream(),
                        "holdback: records wait for every detect partition's watermark"
                    );
                }
            }
        }
        let mut commit = Vec::new();
        if now.duration_since(self.last_commit) >= self.interval {
            self.last_commit = now;
            commit = self.offsets(None)?;
            self.publish_tallies();
        }
        let backlogged = !self.backlog.is_empty();
        Ok(Round {
            commit,
            pause: backlogged,
            // While paused, come back soon to offer the backlog again.
            wait: Duration::from_millis(if backlogged { 20 } else { 100 }),
        })
    }

    fn paused(&mut self) {
        self.status.pauses.fetch_add(1, Ordering::Relaxed);
    }

    fn after_leave(&mut self) -> Result<Offsets, StageError> {
        // Give the sink a grace period to deliver what it holds; what it cannot deliver in
        // time (TikTok down or throttling) is not acknowledged, so its records are read again
        // by the next owner of the partition.
        let Some(sink) = self.sink.take() else {
            return Ok(Vec::new());
        };
        let grace = self.config.tiktok.drain_grace.duration();
        let finished = self
            .rt
            .block_on(async { tokio::time::timeout(grace, sink.finish()).await });
        let Ok(outcome) = finished else {
            tracing::warn!(
                grace_s = grace.as_secs(),
                "the TikTok sink did not drain in time; undelivered ops will be re-sent after restart"
            );
            return Ok(Vec::new());
        };
        while let Ok(t) = self.acks.try_recv() {
            self.acknowledged(t);
        }
        tracing::info!(
            adds = outcome.report.adds,
            deletes = outcome.report.deletes,
            failed = outcome.report.failed,
            "activate stage stopped"
        );
        self.offsets(None)
    }
}

/// Runs the activate stage until `stop` is set, sending ops through `sink` on `rt`.
pub fn run(
    config: Arc<Config>,
    rt: tokio::runtime::Handle,
    sink: TikTokSink,
    acks: mpsc::UnboundedReceiver<u64>,
    status: Arc<ActivateStatus>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let k = super::settings(&config)?;
    let producer = super::producer(&k)?;
    let campaign_ids = config
        .campaigns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), i as CampaignIdx))
        .collect();
    let state = State {
        config: config.clone(),
        campaign_ids,
        parts: BTreeMap::new(),
        producer,
        decisions: k.topic("decisions"),
        qualified: k.topic("qualified"),
        status,
        generations: 0,
        inflight: HashMap::new(),
        next_token: 0,
        backlog: VecDeque::new(),
        sink: Some(sink),
        acks,
        rt,
        interval: k.commit_interval.duration(),
        last_commit: Instant::now(),
        last_hold_log: Instant::now(),
    };
    let qualified = k.topic("qualified");
    super::stage::run(&k, &[qualified.as_str()], state, &stop)
}

impl State {
    /// Each owned partition's report tallies, for the admin API's report route, here and
    /// (when they changed) on the reports topic for the other replicas.
    fn publish_tallies(&mut self) {
        let campaigns = &self.config.campaigns;
        let fresh: BTreeMap<i32, super::reports::PartitionReport> = (self.parts.iter())
            .map(|(p, part)| {
                let mut r = super::reports::PartitionReport::default();
                for (i, c) in campaigns.iter().enumerate() {
                    let (tally, daily, last) = part.act.summary(i as CampaignIdx);
                    r.tallies.insert(c.id.clone(), tally);
                    r.daily.insert(c.id.clone(), daily);
                    if let Some(at) = last {
                        r.last_qualified.insert(c.id.clone(), at);
                    }
                }
                (*p, r)
            })
            .collect();
        let k = self.config.kafka.as_ref().expect("run has [kafka]");
        let mut own = self.status.own.lock().unwrap_or_else(|e| e.into_inner());
        for (p, r) in &fresh {
            if own.get(p) != Some(r) {
                super::reports::write(&self.producer, k, *p, r);
            }
        }
        *own = fresh;
    }

    /// A token for one op of record `offset` of partition `p` (current assignment).
    fn track(&mut self, p: i32, offset: i64) -> u64 {
        let generation = self.parts.get(&p).map_or(0, |part| part.generation);
        self.next_token += 1;
        self.inflight
            .insert(self.next_token, (p, generation, offset));
        self.next_token
    }

    /// TikTok acknowledged the op of `token`: one op less holds its record's offset back —
    /// if the partition is still under the assignment that sent it.
    fn acknowledged(&mut self, token: u64) {
        let Some((p, generation, offset)) = self.inflight.remove(&token) else {
            return;
        };
        let Some(part) = self
            .parts
            .get_mut(&p)
            .filter(|part| part.generation == generation)
        else {
            return;
        };
        if let Some(n) = part.pending.get_mut(&offset) {
            *n = n.saturating_sub(1);
        }
    }

    fn restore(&mut self, p: i32) -> anyhow::Result<Part> {
        let k = self.config.kafka.as_ref().expect("run has [kafka]");
        let latest = read_to_end(
            k,
            &format!("{}-restore", k.group("activate")),
            &self.decisions,
            p,
        )?;
        let mut act = Activator::new(&self.config.campaigns);
        let mut n = 0usize;
        for v in latest.into_values().flatten() {
            let Ok(d) = serde_json::from_slice::<DecisionRecord>(&v) else {
                continue;
            };
            let Some(&c) = self.campaign_ids.get(&d.campaign) else {
                continue;
            };
            // Records of earlier versions carry `converted` without its time.
            let converted_at = d.converted_at.or(d.converted.then_some(d.at));
            act.restore(
                c,
                d.user_id.as_str().into(),
                Decided {
                    outcome: d.outcome,
                    ids: d.ids(),
                    at: d.at,
                    converted_at,
                    ever_exported: matches!(d.outcome, Outcome::Exported | Outcome::Removed),
                    ever_converted: converted_at.is_some(),
                    revenue: d.revenue,
                },
            );
            n += 1;
        }
        tracing::info!(partition = p, decisions = n, "activate partition restored");
        self.generations += 1;
        Ok(Part {
            generation: self.generations,
            act,
            pending: BTreeMap::new(),
            hold: Holdback::default(),
            held: BTreeMap::new(),
            erased: BTreeMap::new(),
            consumed: 0,
        })
    }

    /// Writes the user's decision as it stands (the decisions topic holds one per user).
    fn persist(&self, p: i32, campaign: CampaignIdx, user: &str) {
        let Some(d) = self
            .parts
            .get(&p)
            .and_then(|part| part.act.decided(campaign, user))
        else {
            return;
        };
        let id = &self.config.campaigns[usize::from(campaign)].id;
        let with_ids = matches!(d.outcome, Outcome::Exported | Outcome::Removed);
        let rec = DecisionRecord {
            campaign: id.clone(),
            user_id: user.to_owned(),
            at: d.at,
            outcome: d.outcome,
            ids: with_ids.then(|| {
                let (email, phone) = hex_ids(&d.ids);
                IdsRecord { email, phone }
            }),
            converted_at: d.converted_at,
            revenue: d.revenue,
            email_sha256: None,
            phone_sha256: None,
            converted: false,
        };
        let key = format!("{id}/{user}");
        let value = serde_json::to_vec(&rec).expect("serialisable");
        super::send(
            &self.producer,
            &self.decisions,
            Some(p),
            Some(key.as_bytes()),
            Some(&value),
            None,
        );
    }

    /// Takes one qualified record: a qualification or conversion is held (see [`Holdback`])
    /// or, when behind what was released, decided at once; a watermark record releases what
    /// every detect partition has passed. Returns the audience ops caused, each with the
    /// offset of the record that caused it.
    fn on_message(&mut self, p: i32, offset: i64, payload: &[u8]) -> Vec<(i64, AudienceOp)> {
        let Ok(q) = serde_json::from_slice::<Qualified>(payload) else {
            tracing::warn!(partition = p, offset, "unreadable qualified record skipped");
            return Vec::new();
        };
        let Some(part) = self.parts.get_mut(&p) else {
            return Vec::new();
        };
        part.consumed = part.consumed.max(offset + 1);
        let mut now = Released::default();
        match q {
            Qualified::Watermark {
                partition,
                of,
                watermark,
                idle,
            } => {
                part.hold
                    .report(partition.max(0) as u32, of, watermark, idle);
                now = part.hold.release();
                for off in now.tags() {
                    if let Some(n) = part.held.get_mut(off) {
                        *n = n.saturating_sub(1);
                    }
                }
                part.held.retain(|_, n| *n > 0);
            }
            Qualified::Qualification {
                campaign,
                user,
                at,
                trigger_ts,
                email_sha256,
                phone_sha256,
                leaves,
            } => {
                let Some(&c) = self.campaign_ids.get(&campaign) else {
                    return Vec::new();
                };
                let qual = Qualification {
                    campaign: c,
                    user: user.as_str().into(),
                    at,
                    trigger_ts,
                    ids: parse_ids(&email_sha256, &phone_sha256),
                    leaves,
                };
                match part.hold.hold_qualification(qual, offset) {
                    Held::Held => *part.held.entry(offset).or_default() += 1,
                    Held::Duplicate => {}
                    Held::Now(q, o) => now.qualifications.push((q, o)),
                }
            }
            Qualified::Conversion {
                campaign,
                user,
                ts,
                revenue,
            } => {
                let Some(&c) = self.campaign_ids.get(&campaign) else {
                    return Vec::new();
                };
                let conv = Conversion {
                    campaign: c,
                    user: user.as_str().into(),
                    ts,
                    revenue,
                };
                match part.hold.hold_conversion(conv, offset) {
                    Held::Held => *part.held.entry(offset).or_default() += 1,
                    Held::Duplicate => {}
                    Held::Now(c, o) => now.conversions.push((c, o)),
                }
            }
            Qualified::Erasure { campaign, user, ts } => {
                let Some(&c) = self.campaign_ids.get(&campaign) else {
                    return Vec::new();
                };
                let e = Erasure {
                    campaign: c,
                    user: user.as_str().into(),
                    ts,
                };
                match part.hold.hold_erasure(e, offset) {
                    Held::Held => *part.held.entry(offset).or_default() += 1,
                    Held::Duplicate => {}
                    Held::Now(e, o) => now.erasures.push((e, o)),
                }
            }
        }
        let mut ops = Vec::new();
        for item in now.into_time_order() {
            match item {
                Item::Qualification((q, o)) => self.decide(p, o, &q, &mut ops),
                Item::Conversion((c, o)) => self.convert(p, o, &c, &mut ops),
                Item::Erasure((e, o)) => self.erase(p, o, &e, &mut ops),
            }
        }
        let part = self.parts.get_mut(&p).expect("present");
        for &(o, _) in &ops {
            *part.pending.entry(o).or_default() += 1;
        }
        ops
    }

    /// Decides one released qualification (the record at `offset`) into `ops`.
    fn decide(&mut self, p: i32, offset: i64, q: &Qualification, ops: &mut Vec<(i64, AudienceOp)>) {
        let part = self.parts.get_mut(&p).expect("present");
        let step = part.act.step_qualification(q);
        ops.extend(step.op.map(|op| (offset, op)));
        if let Some(d) = step.decision {
            let campaign = &self.config.campaigns[usize::from(q.campaign)].id;
            self.status.decisions.fetch_add(1, Ordering::Relaxed);
            self.status.count(campaign, d.outcome);
            self.persist(p, q.campaign, &q.user);
        }
        tracing::debug!(partition = p, offset, user = %q.user, "activate qualification");
    }

    /// Counts one released conversion (the record at `offset`) into `ops`.
    fn convert(&mut self, p: i32, offset: i64, c: &Conversion, ops: &mut Vec<(i64, AudienceOp)>) {
        let part = self.parts.get_mut(&p).expect("present");
        let before = part.act.decided(c.campaign, &c.user);
        let step = part.act.step_conversion(c);
        ops.extend(step.op.map(|op| (offset, op)));
        if let Some(d) = step.decision {
            let campaign = &self.config.campaigns[usize::from(c.campaign)].id;
            self.status.decisions.fetch_add(1, Ordering::Relaxed);
            self.status.count(campaign, d.outcome);
        }
        let part = self.parts.get(&p).expect("present");
        if part.act.decided(c.campaign, &c.user) != before {
            self.persist(p, c.campaign, &c.user);
        }
    }

    /// Applies one released erasure (the record at `offset`) into `ops`. The decision's
    /// tombstone is written once the record is committable (its delete acknowledged): a crash
    /// before that re-reads the erasure and finds the decision, so the delete is sent again.
    fn erase(&mut self, p: i32, offset: i64, e: &Erasure, ops: &mut Vec<(i64, AudienceOp)>) {
        let part = self.parts.get_mut(&p).expect("present");
        let had = part.act.decided(e.campaign, &e.user).is_some();
        let step = part.act.step_erasure(e);
        ops.extend(step.op.map(|op| (offset, op)));
        if had {
            part.erased
                .entry(offset)
                .or_default()
                .push((e.campaign, e.user.clone()));
            self.status.erased.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Writes the tombstones of erasures at offsets below `upto` (see [`State::erase`]); a
    /// user decided again since gets that decision instead.
    fn write_tombstones(&mut self, p: i32, upto: i64) {
        let Some(part) = self.parts.get_mut(&p) else {
            return;
        };
        let later = part.erased.split_off(&upto);
        let due = std::mem::replace(&mut part.erased, later);
        for (campaign, user) in due.into_values().flatten() {
            let decided = self.parts[&p].act.decided(campaign, &user).is_some();
            if decided {
                self.persist(p, campaign, &user);
            } else {
                let id = &self.config.campaigns[usize::from(campaign)].id;
                let key = format!("{id}/{user}");
                super::send(
                    &self.producer,
                    &self.decisions,
                    Some(p),
                    Some(key.as_bytes()),
                    None,
                    None,
                );
            }
        }
    }

    /// Flushes decisions, then the offsets to commit: each partition up to its first
    /// unacknowledged or held record.
    fn offsets(&mut self, only: Option<&BTreeSet<i32>>) -> Result<Offsets, StageError> {
        let mut offsets = Vec::new();
        for (&p, part) in self.parts.iter_mut() {
            if only.is_some_and(|o| !o.contains(&p)) {
                continue;
            }
            part.pending.retain(|_, n| *n > 0);

            let first_pending = part.pending.keys().next().copied();
            let first_held = part.held.keys().next().copied();
            let upto = [first_pending, first_held]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(part.consumed);
            if upto > 0 {
                offsets.push((self.qualified.clone(), p, upto));
            }
        }
        for &(_, p, upto) in &offsets {
            self.write_tombstones(p, upto);
        }
        super::flush_durable(&self.producer)?;
        if !offsets.is_empty() {
            tracing::debug!(offsets = ?offsets.iter().map(|(_, p, o)| (p, o)).collect::<Vec<_>>(), "activate commit");
        }
        Ok(offsets)
    }
}
