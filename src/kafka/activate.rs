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

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;

use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::read_to_end;
use super::wire::{hex_ids, parse_ids, Qualified};
use crate::activate::{Activator, Decided, Held, Holdback, Outcome, Released};
use crate::config::Config;
use crate::detect::{CampaignIdx, Conversion, Ids, Qualification};
use crate::sink::service::{TikTokSink, TrySend};
use crate::sink::{Action, AudienceOp};

/// A persisted decision (value of the decisions topic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub campaign: String,
    pub user_id: String,
    pub at: i64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_sha256: Option<String>,
    #[serde(default)]
    pub converted: bool,
    /// When the user converted (the goal event's `ts`); `at` stays the qualification's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_at: Option<i64>,
}

/// Live counters of the stage.
#[derive(Debug, Default)]
pub struct ActivateStatus {
    pub decisions: std::sync::atomic::AtomicU64,
    /// Decisions by `(campaign, outcome)`.
    pub by_outcome: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// The consumer's lag per `(topic, partition)`, from librdkafka's statistics.
    pub lag: super::Lag,
    pub assigned: std::sync::atomic::AtomicU64,
    pub ready: AtomicBool,
    /// Times consumption was paused because the TikTok sink was full.
    pub pauses: std::sync::atomic::AtomicU64,
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
    error: Option<anyhow::Error>,
    generations: u64,
    /// Token of each op in the sink → `(partition, generation, offset)`.
    inflight: HashMap<u64, (i32, u64, i64)>,
    next_token: u64,
    /// Ops decided but not yet taken by the (full) sink: `(partition, op, token)`. While any
    /// wait, consumption is paused.
    backlog: VecDeque<(i32, AudienceOp, u64)>,
    /// Set by every assignment: newly assigned partitions are not paused.
    reassigned: bool,
}

struct Ctx {
    state: Mutex<State>,
}

impl ClientContext for Ctx {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.status.lag.update(&statistics);
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            if let Err(e) = st.commit(consumer, Some(&parts)) {
                if e.is::<super::LostWrites>() {
                    st.error.get_or_insert(e);
                } else {
                    // As in detect: the next owner re-reads from the last commit.
                    tracing::warn!(error = %e, "commit on revocation failed");
                }
            }
            for p in &parts {
                st.parts.remove(p);
            }
            // Not handed over, so not acknowledged: the next owner reads their records again.
            st.backlog.retain(|(p, _, _)| !parts.contains(p));
            st.status
                .assigned
                .store(st.parts.len() as u64, Ordering::Relaxed);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = r {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.reassigned = true;
            let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            for p in parts {
                if st.parts.contains_key(&p) {
                    continue;
                }
                match st.restore(p) {
                    Ok(part) => {
                        st.parts.insert(p, part);
                    }
                    Err(e) => {
                        st.error.get_or_insert(e);
                    }
                }
            }
            st.status
                .assigned
                .store(st.parts.len() as u64, Ordering::Relaxed);
            st.status.ready.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs the activate stage until `stop` is set, sending ops through `sink` on `rt`.
pub fn run(
    config: Arc<Config>,
    rt: tokio::runtime::Handle,
    sink: TikTokSink,
    mut acks: mpsc::UnboundedReceiver<u64>,
    status: Arc<ActivateStatus>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let k = config
        .kafka
        .clone()
        .ok_or_else(|| anyhow::anyhow!("[kafka] is not configured"))?;
    let producer = super::producer(&k)?;
    let campaign_ids = config
        .campaigns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.clone(), i as CampaignIdx))
        .collect();
    let ctx = Ctx {
        state: Mutex::new(State {
            config: config.clone(),
            campaign_ids,
            parts: BTreeMap::new(),
            producer,
            decisions: k.topic("decisions"),
            qualified: k.topic("qualified"),
            status: status.clone(),
            error: None,
            generations: 0,
            inflight: HashMap::new(),
            next_token: 0,
            backlog: VecDeque::new(),
            reassigned: false,
        }),
    };
    let consumer = super::group_consumer(&k, "activate", ctx)?;
    consumer.subscribe(&[k.topic("qualified").as_str()])?;
    tracing::info!(group = %k.group("activate"), "activate stage consuming");
    let interval = k.commit_interval.duration();
    let mut last_commit = Instant::now();
    let mut paused = false;
    while !stop.load(Ordering::Relaxed) {
        // Hand the sink what waits, as far as it takes it; pause consumption (never drop)
        // while anything waits, so polling — heartbeats, rebalances — goes on meanwhile.
        {
            let mut st = consumer
                .context()
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            while let Some((p, op, token)) = st.backlog.pop_front() {
                match sink.try_send_tracked(op, token) {
                    Ok(()) => {}
                    Err(TrySend::Full(op)) => {
                        st.backlog.push_front((p, op, token));
                        break;
                    }
                    Err(TrySend::Stopped) => anyhow::bail!("the TikTok sink stopped"),
                }
            }
            let backlogged = !st.backlog.is_empty();
            let reassigned = std::mem::take(&mut st.reassigned);
            drop(st);
            // Pausing and resuming can fail while the group is in trouble (the coordinator
            // gone, the assignment lost): that is retried on the next round, never fatal.
            if backlogged && (!paused || reassigned) {
                match consumer.assignment().and_then(|a| consumer.pause(&a)) {
                    Ok(()) => {
                        if !paused {
                            tracing::debug!("the TikTok sink is full: consumption paused");
                        }
                        paused = true;
                        status.pauses.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "pausing consumption failed; retrying"),
                }
            } else if !backlogged && paused {
                match consumer.assignment().and_then(|a| consumer.resume(&a)) {
                    Ok(()) => {
                        tracing::debug!("consumption resumed");
                        paused = false;
                    }
                    Err(e) => tracing::warn!(error = %e, "resuming consumption failed; retrying"),
                }
            }
        }
        // While paused, come back soon to offer the backlog again.
        let wait = if paused { 20 } else { 100 };
        let msg = consumer.poll(Duration::from_millis(wait));
        let mut st = consumer
            .context()
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        if let Some(Ok(m)) = &msg {
            let ops = st.on_message(m.partition(), m.offset(), m.payload().unwrap_or(&[]));
            for (offset, op) in ops {
                let token = st.track(m.partition(), offset);
                st.backlog.push_back((m.partition(), op, token));
            }
        }
        while let Ok(t) = acks.try_recv() {
            st.acknowledged(t);
        }
        if last_commit.elapsed() >= interval {
            if let Err(e) = st.commit(&consumer, None) {
                if e.is::<super::LostWrites>() {
                    return Err(e);
                }
                // Nothing is committed past what is durable; the next round tries again.
                tracing::warn!(error = %e, "commit failed; retrying at the next interval");
            }
            last_commit = Instant::now();
        }
    }
    let mut st = consumer
        .context()
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Err(e) = st.commit(&consumer, None) {
        // Nothing is committed past what is durable; the next round tries again.
        tracing::warn!(error = %e, "commit failed; retrying at the next interval");
    }
    drop(st);
    consumer.unsubscribe();
    // Give the sink a grace period to deliver what it holds; what it cannot deliver in time
    // (TikTok down or throttling) is not acknowledged, so its records are read again by the
    // next owner of the partition.
    let grace = Duration::from_secs(20);
    let Ok(outcome) = rt.block_on(async { tokio::time::timeout(grace, sink.finish()).await })
    else {
        tracing::warn!(
            grace_s = grace.as_secs(),
            "the TikTok sink did not drain in time; undelivered ops will be re-sent after restart"
        );
        return Ok(());
    };
    let mut st = consumer
        .context()
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    while let Ok(t) = acks.try_recv() {
        st.acknowledged(t);
    }
    if let Err(e) = st.commit(&consumer, None) {
        // Nothing is committed past what is durable; the next round tries again.
        tracing::warn!(error = %e, "commit failed; retrying at the next interval");
    }
    tracing::info!(
        adds = outcome.report.adds,
        deletes = outcome.report.deletes,
        failed = outcome.report.failed,
        "activate stage stopped"
    );
    Ok(())
}

impl State {
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
                    ids: parse_ids(&d.email_sha256, &d.phone_sha256),
                    at: d.at,
                    converted_at,
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
        let (email_sha256, phone_sha256) = hex_ids(&d.ids);
        let id = &self.config.campaigns[usize::from(campaign)].id;
        let rec = DecisionRecord {
            campaign: id.clone(),
            user_id: user.to_owned(),
            at: d.at,
            outcome: d.outcome,
            email_sha256,
            phone_sha256,
            converted: d.converted(),
            converted_at: d.converted_at,
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
        let mut now = Released {
            qualifications: Vec::new(),
            conversions: Vec::new(),
        };
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
                for off in now
                    .qualifications
                    .iter()
                    .map(|(_, o)| o)
                    .chain(now.conversions.iter().map(|(_, o)| o))
                {
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
                };
                match part.hold.hold_qualification(qual, offset) {
                    Held::Held => *part.held.entry(offset).or_default() += 1,
                    Held::Duplicate => {}
                    Held::Now(q, o) => now.qualifications.push((q, o)),
                }
            }
            Qualified::Conversion { campaign, user, ts } => {
                let Some(&c) = self.campaign_ids.get(&campaign) else {
                    return Vec::new();
                };
                let conv = Conversion {
                    campaign: c,
                    user: user.as_str().into(),
                    ts,
                };
                match part.hold.hold_conversion(conv, offset) {
                    Held::Held => *part.held.entry(offset).or_default() += 1,
                    Held::Duplicate => {}
                    Held::Now(c, o) => now.conversions.push((c, o)),
                }
            }
        }
        let mut ops = Vec::new();
        for (q, o) in now.qualifications {
            self.decide(p, o, &q, &mut ops);
        }
        for (c, o) in now.conversions {
            self.convert(p, o, &c, &mut ops);
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
        let campaign = &self.config.campaigns[usize::from(q.campaign)].id;
        match part.act.qualify(q) {
            Some(d) => {
                self.status.decisions.fetch_add(1, Ordering::Relaxed);
                self.status.count(campaign, d.outcome);
                ops.extend(AudienceOp::from_decision(&d).map(|op| (offset, op)));
                self.persist(p, q.campaign, &q.user);
            }
            None => {
                // Already decided: re-send an add that may not have been acknowledged.
                if let Some(d) = part.act.decided(q.campaign, &q.user) {
                    if d.outcome == Outcome::Exported {
                        ops.push((offset, op(q.campaign, &q.user, Action::Add, d.ids)));
                    }
                }
            }
        }
        tracing::debug!(partition = p, offset, user = %q.user, "activate qualification");
    }

    /// Counts one released conversion (the record at `offset`) into `ops`.
    fn convert(&mut self, p: i32, offset: i64, c: &Conversion, ops: &mut Vec<(i64, AudienceOp)>) {
        let part = self.parts.get_mut(&p).expect("present");
        let before = part.act.decided(c.campaign, &c.user);
        if let Some(d) = part.act.convert(c) {
            let campaign = &self.config.campaigns[usize::from(c.campaign)].id;
            self.status.decisions.fetch_add(1, Ordering::Relaxed);
            self.status.count(campaign, d.outcome);
            ops.extend(AudienceOp::from_decision(&d).map(|op| (offset, op)));
        } else if let Some(d) = before.filter(|d| d.outcome == Outcome::Removed && d.converted()) {
            // Already removed: re-send a delete that may not have been acknowledged.
            ops.push((offset, op(c.campaign, &c.user, Action::Delete, d.ids)));
        }
        if part.act.decided(c.campaign, &c.user) != before {
            self.persist(p, c.campaign, &c.user);
        }
    }

    /// Flushes decisions, then commits each partition up to its first unacknowledged record.
    fn commit(
        &mut self,
        consumer: &BaseConsumer<Ctx>,
        only: Option<&BTreeSet<i32>>,
    ) -> anyhow::Result<()> {
        super::flush_durable(&self.producer)?;
        let mut tpl = TopicPartitionList::new();
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
                tpl.add_partition_offset(&self.qualified, p, Offset::Offset(upto))?;
            }
        }
        if tpl.count() > 0 {
            tracing::debug!(offsets = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(), "activate commit");
            consumer.commit(&tpl, CommitMode::Sync)?;
        }
        Ok(())
    }
}

fn op(campaign: CampaignIdx, user: &str, action: Action, ids: Ids) -> AudienceOp {
    AudienceOp {
        campaign,
        action,
        user: user.into(),
        ids,
    }
}
