//! Wiring: source → detect (sharded) → activate → sink, and the replay command's lifecycle.
//!
//! The router (the calling thread) decodes, counts, tracks watermarks and rejects late records,
//! so everything that decides *whether* a record is applied happens in one deterministic place;
//! shards (one thread each) only apply records in event-time order. Every batch sent to a shard
//! carries the current watermark. A record reaches a shard only with `ts` above every watermark
//! sent before it, so each shard's sequence of applications — and so the result — does not
//! depend on the number of shards, the batch size or thread timing.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::bounded;

use crate::activate::{Activator, CampaignCounts, Decision, Holdback, Item};
use crate::config::Config;
use crate::detect::router::{route, Routed};
use crate::detect::shard::Shard;
use crate::detect::watermark::Watermarks;
use crate::detect::{shard_for, user_hash, CampaignIdx, Output, Rules};
use crate::event::decode::{Decoder, Malformed};
use crate::event::recording::stream::RecordingStream;
use crate::event::recording::{Lines, Recording};
use crate::event::{EventTime, Record};
use crate::output::spill::{Spill, SpillReader};
use crate::output::{self, OutDir, Summary, Totals};
use crate::report::{Report, Tally};
use crate::sink::{AudienceOp, AudienceSink, SinkError, SinkReport};
use crate::source::replay::ReplaySource;
use crate::source::{Source, SourceItem};

/// Records per routing round; each round ends with a watermark sent to every shard.
const ROUND: usize = 4096;

/// A batch for one shard.
struct Batch {
    records: Vec<(u64, Record)>,
    watermark: EventTime,
}

/// What a shard hands back when its input ends.
struct ShardResult {
    pending: Vec<u64>,
    users: usize,
}

/// The detect stage's result over a whole input (its outputs went to the consumer).
#[derive(Debug, Default)]
pub struct DetectResult {
    pub totals: Totals,
    /// Per campaign: users with an open window and no decision at the end.
    pub pending: Vec<u64>,
    /// Users with state, over all shards.
    pub users: usize,
}

/// What a shard emitted up to a watermark: `(shard, shards, watermark, output)`. Every
/// output at or before the watermark is in this message or an earlier one of that shard.
pub type ShardOutput = (u32, u32, EventTime, Output);

/// A malformed or late line, for the dead-letter output.
pub struct DeadLetter<'r> {
    pub reason: Malformed,
    pub partition: usize,
    /// The partition's source (a file path).
    pub source: &'r str,
    pub line: u64,
    pub raw: &'r [u8],
}

/// Runs the detect stage over `source` with `shards` shard threads. `dead_letter` receives
/// malformed and late lines in input order; `progress` is called every round with the records
/// read so far. A line's `ts` may be at most `max_future_ms` ahead of its Kafka timestamp, or
/// for a line recorded without one, of `now_ms` (the wall clock at replay). Each shard hands
/// its outputs to `consume`, on a thread of its own, after every batch together with the
/// batch's watermark ([`ShardOutput`]), so activation runs while detect does.
#[allow(clippy::too_many_arguments)]
pub fn detect(
    rules: Arc<Rules>,
    source: &mut dyn Source,
    allowed_lateness_ms: i64,
    max_future_ms: i64,
    now_ms: EventTime,
    shards: usize,
    dead_letter: &mut dyn FnMut(DeadLetter<'_>) -> std::io::Result<()>,
    progress: &mut dyn FnMut(u64),
    consume: &mut (dyn FnMut(ShardOutput) + Send),
) -> std::io::Result<DetectResult> {
    let shards = shards.max(1);
    let campaigns = rules.rules.len();
    std::thread::scope(|scope| {
        let (out_tx, out_rx) = bounded::<ShardOutput>(4 * shards);
        std::thread::Builder::new()
            .name("activate".into())
            .spawn_scoped(scope, move || out_rx.iter().for_each(consume))
            .expect("spawn the activate thread");
        let mut senders = Vec::with_capacity(shards);
        let mut workers = Vec::with_capacity(shards);
        // Emptied batch buffers go back to the router: no large allocation per round, and
        // no freeing on another thread than the one that allocated.
        let (recycle_tx, recycle_rx) = bounded::<Vec<(u64, Record)>>(8 * shards + 8);
        for i in 0..shards {
            let (tx, rx) = bounded::<Batch>(8);
            let rules = Arc::clone(&rules);
            let recycle = recycle_tx.clone();
            let out_tx = out_tx.clone();
            senders.push(tx);
            let worker = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn_scoped(scope, move || {
                    let mut shard = Shard::new(rules);
                    for mut batch in rx {
                        for (seq, rec) in batch.records.drain(..) {
                            shard.push(seq, rec);
                        }
                        let _ = recycle.try_send(batch.records);
                        shard.advance(batch.watermark);
                        let out = (
                            i as u32,
                            shards as u32,
                            batch.watermark,
                            shard.take_output(),
                        );
                        // The consumer only stops early by panicking; the scope reports that.
                        let _ = out_tx.send(out);
                    }
                    ShardResult {
                        pending: shard.pending(),
                        users: shard.users(),
                    }
                })
                .expect("spawn shard thread");
            workers.push(worker);
        }

        let mut totals = Totals::default();
        let mut wm = Watermarks::new(source.partitions(), allowed_lateness_ms);
        let mut batches: Vec<Vec<(u64, Record)>> = (0..shards).map(|_| Vec::new()).collect();
        let mut seq = 0u64;
        let mut in_round = 0usize;
        let send_round = |batches: &mut Vec<Vec<(u64, Record)>>, watermark: EventTime| {
            for (tx, b) in senders.iter().zip(batches.iter_mut()) {
                let fresh = recycle_rx
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(ROUND / shards + 16));
                let records = std::mem::replace(b, fresh);
                // A worker only stops early by panicking; its join below reports that.
                let _ = tx.send(Batch { records, watermark });
            }
        };
        let mut result = Ok(());
        while let Some(item) = source.next_item() {
            let (partition, name, origin, kafka_ts, raw, record) = match item {
                SourceItem::PartitionEnd { partition } => {
                    wm.finish(partition);
                    continue;
                }
                SourceItem::Line {
                    partition,
                    source,
                    origin,
                    kafka_ts,
                    raw,
                    record,
                } => (partition, source, origin, kafka_ts, raw, record),
            };
            let not_after = kafka_ts.unwrap_or(now_ms).saturating_add(max_future_ms);
            let rec = match route(&mut totals, &mut wm, partition, record, not_after) {
                Routed::DeadLetter(reason) => {
                    result = result.and(dead_letter(DeadLetter {
                        reason,
                        partition,
                        source: name,
                        line: origin.line,
                        raw: &raw,
                    }));
                    continue;
                }
                Routed::Skip => continue,
                Routed::Apply(rec) => rec,
            };
            let s = shard_for(user_hash(&rec.user), shards);
            batches[s].push((seq, rec));
            seq += 1;
            in_round += 1;
            if in_round >= ROUND {
                in_round = 0;
                send_round(&mut batches, wm.current());
                progress(totals.lines());
            }
        }
        // End of input: every partition is exhausted, the watermark is the largest ts seen.
        send_round(&mut batches, wm.max_seen().unwrap_or(EventTime::MIN));
        progress(totals.lines());
        drop(senders);
        drop(out_tx);

        let mut out = DetectResult {
            totals,
            pending: vec![0; campaigns],
            ..DetectResult::default()
        };
        for w in workers {
            let r = w.join().expect("a shard thread panicked");
            for (p, n) in out.pending.iter_mut().zip(r.pending) {
                *p += n;
            }
            out.users += r.users;
        }
        result.map(|()| out)
    })
}

/// Activation over a replay, as `run` does it: each shard's outputs are held back
/// ([`Holdback`]) until every shard's watermark has passed them, then decided in time order —
/// qualifications in `(at, user_id)` order, so the target cap is exact whatever the shard
/// count. What is left is released by [`Activation::finish`] at the end of the input. What
/// it decides goes to `K` ([`Keep`]).
pub struct Activation<'c, K> {
    config: &'c Config,
    hold: Holdback<()>,
    act: Activator,
    kept: K,
    erased: Vec<crate::model::Erasure>,
    /// Scheduled runs executed (every shard executes each run: counted once).
    runs: std::collections::BTreeSet<(CampaignIdx, EventTime)>,
    custom_props_dropped: u64,
}

/// Where an [`Activation`] keeps its decisions (in the order made, which is time order) and
/// its audience ops (in the order applied) until the end of the input.
pub trait Keep: Send {
    fn decision(&mut self, d: Decision);
    fn op(&mut self, op: AudienceOp);
}

/// Everything in memory: [`execute`] and the tests.
#[derive(Debug, Default)]
pub struct InMemory {
    decisions: Vec<Decision>,
    ops: Vec<AudienceOp>,
}

impl Keep for InMemory {
    fn decision(&mut self, d: Decision) {
        self.decisions.push(d);
    }

    fn op(&mut self, op: AudienceOp) {
        self.ops.push(op);
    }
}

impl InMemory {
    /// The decisions sorted (erasures' forgotten ones left out) and the ops.
    fn finish(
        self,
        erased: &Forgotten,
        campaigns: &[crate::campaign::Campaign],
    ) -> (Vec<Decision>, Vec<AudienceOp>) {
        (in_output_order(self.decisions, erased, campaigns), self.ops)
    }
}

/// `decisions` sorted as the output wants them, without those the erasures forgot.
fn in_output_order(
    mut decisions: Vec<Decision>,
    erased: &Forgotten,
    campaigns: &[crate::campaign::Campaign],
) -> Vec<Decision> {
    decisions.retain(|d| !erased.forgot(d));
    output::sort_decisions(&mut decisions, campaigns);
    decisions
}

/// On disk ([`Spill`]): `replay`, whose memory then does not grow with the recording. The
/// decisions of one `at` are sorted among themselves as the output wants them before they go
/// (activation decides in time order); one decided out of time order — which a replay does
/// not make, but nothing here relies on it — sends every decision through memory at the
/// end, sorted as [`InMemory`] does.
pub struct Spilled<'c> {
    campaigns: &'c [crate::campaign::Campaign],
    decisions: Spill<Decision>,
    /// Decisions of the latest `at`, not yet spilled.
    group: Vec<Decision>,
    /// Decisions older than one already spilled.
    late: Vec<Decision>,
    ops: Spill<AudienceOp>,
}

impl<'c> Spilled<'c> {
    /// Spills into unnamed files in `dir` (the output directory: see [`crate::output::spill`]).
    pub fn new(
        campaigns: &'c [crate::campaign::Campaign],
        dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        Ok(Spilled {
            campaigns,
            decisions: Spill::new(dir)?,
            group: Vec::new(),
            late: Vec::new(),
            ops: Spill::new(dir)?,
        })
    }

    fn flush_group(&mut self) {
        output::sort_decisions(&mut self.group, self.campaigns);
        for d in self.group.drain(..) {
            self.decisions.push(&d);
        }
    }

    /// The decisions in output order (erasures' forgotten ones left out) and the ops in
    /// application order.
    #[allow(clippy::type_complexity)]
    fn finish(
        mut self,
        erased: Forgotten,
    ) -> std::io::Result<(
        Box<dyn Iterator<Item = std::io::Result<Decision>> + 'c>,
        SpillReader<AudienceOp>,
    )> {
        self.flush_group();
        let ops = self.ops.read()?;
        let spilled = self.decisions.read()?;
        if self.late.is_empty() {
            let kept = spilled.filter(move |d| d.as_ref().map_or(true, |d| !erased.forgot(d)));
            return Ok((Box::new(kept), ops));
        }
        let mut all = spilled.collect::<std::io::Result<Vec<_>>>()?;
        all.append(&mut self.late);
        let all = in_output_order(all, &erased, self.campaigns);
        Ok((Box::new(all.into_iter().map(Ok)), ops))
    }
}

impl Keep for Spilled<'_> {
    fn decision(&mut self, d: Decision) {
        match self.group.first().map(|g| g.at) {
            Some(at) if d.at < at => self.late.push(d),
            Some(at) if d.at > at => {
                self.flush_group();
                self.group.push(d);
            }
            _ => self.group.push(d),
        }
    }

    fn op(&mut self, op: AudienceOp) {
        self.ops.push(&op);
    }
}

impl<'c, K: Keep> Activation<'c, K> {
    pub fn new(config: &'c Config, kept: K) -> Self {
        Activation {
            config,
            hold: Holdback::default(),
            act: Activator::new(&config.campaigns),
            kept,
            erased: Vec::new(),
            runs: Default::default(),
            custom_props_dropped: 0,
        }
    }

    /// Takes a shard's outputs up to its watermark and decides what every shard has passed.
    pub fn take(&mut self, (shard, shards, watermark, output): ShardOutput) {
        use crate::activate::Held;
        let mut now = crate::activate::Released::default();
        for q in output.qualifications {
            if let Held::Now(q, t) = self.hold.hold_qualification(q, ()) {
                now.qualifications.push((q, t));
            }
        }
        for c in output.conversions {
            if let Held::Now(c, t) = self.hold.hold_conversion(c, ()) {
                now.conversions.push((c, t));
            }
        }
        for e in output.erasures {
            if let Held::Now(e, t) = self.hold.hold_erasure(e, ()) {
                now.erasures.push((e, t));
            }
        }
        self.runs.extend(output.runs);
        self.custom_props_dropped += output.custom_props_dropped;
        self.apply(now);
        self.hold.report(shard, shards, watermark, false);
        let released = self.hold.release();
        self.apply(released);
    }

    fn apply(&mut self, released: crate::activate::Released<()>) {
        // As `run` applies them; a recording holds each qualification once, so nothing is
        // sent again here.
        for item in released.into_time_order() {
            let step = match item {
                Item::Qualification((q, ())) => self.act.step_qualification(&q),
                Item::Conversion((c, ())) => self.act.step_conversion(&c),
                Item::Erasure((e, ())) => {
                    self.erased.push(e.clone());
                    self.act.step_erasure(&e)
                }
            };
            if let Some(d) = step.decision {
                self.kept.decision(d);
            }
            if let Some(op) = step.op {
                self.kept.op(op);
            }
        }
    }

    /// Decides what is still held and hands the result over.
    pub fn finish(mut self) -> Activated<K> {
        let released = self.hold.release_all();
        self.apply(released);
        let campaigns = &self.config.campaigns;
        let tallies = (0..campaigns.len())
            .map(|c| self.act.tally(c as crate::model::CampaignIdx))
            .collect();
        let mut counts = self.act.into_counts();
        for ((i, c), campaign) in counts.iter_mut().enumerate().zip(campaigns) {
            if campaign.schedule.is_some() {
                let runs = self.runs.iter().filter(|(r, _)| usize::from(*r) == i);
                c.runs = Some(runs.count() as u64);
            }
        }
        Activated {
            kept: self.kept,
            erased: Forgotten::new(&self.erased),
            counts,
            tallies,
            custom_props_dropped: self.custom_props_dropped,
        }
    }
}

/// The decisions an erasure forgot (those of its user and campaign at or before it), as the
/// tombstones of `run`'s decisions topic do: an erased user's hashed ids leave the output.
#[derive(Debug, Default)]
pub struct Forgotten(HashMap<(CampaignIdx, crate::event::UserId), EventTime>);

impl Forgotten {
    fn new(erased: &[crate::model::Erasure]) -> Forgotten {
        let mut last = HashMap::new();
        for e in erased {
            let t = last.entry((e.campaign, e.user.clone())).or_insert(e.ts);
            *t = (*t).max(e.ts);
        }
        Forgotten(last)
    }

    fn forgot(&self, d: &Decision) -> bool {
        !self.0.is_empty()
            && (self.0.get(&(d.campaign, d.user.clone()))).is_some_and(|&t| d.at <= t)
    }
}

/// What an [`Activation`] decided.
#[derive(Debug)]
pub struct Activated<K> {
    /// The decisions and audience ops, as kept.
    pub kept: K,
    /// What the erasures forgot.
    pub erased: Forgotten,
    pub counts: Vec<CampaignCounts>,
    /// Per campaign, what its report counts.
    pub tallies: Vec<Tally>,
    /// Custom profile properties dropped over `engine.max_custom_props`.
    pub custom_props_dropped: u64,
}

/// Options of `remarket replay`.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub out_dir: PathBuf,
    pub shards: usize,
    pub progress: bool,
    /// The wall clock at replay (milliseconds since the epoch): lines recorded without a
    /// Kafka timestamp may be at most `engine.max_future` ahead of it.
    pub now_ms: EventTime,
}

/// What a replay produced.
#[derive(Debug)]
pub struct ReplayReport {
    pub summary: Summary,
    pub decisions: usize,
    pub users: usize,
    pub sink: SinkReport,
    /// Users the sink could not deliver (listed in `sink-failed.jsonl`): the replay wrote
    /// every output, and `remarket replay` exits 1 after its table.
    pub sink_failure: Option<SinkError>,
}

/// The engine's result over a whole recording, before anything is written.
#[derive(Debug)]
pub struct Replayed<D = Vec<Decision>, O = Vec<AudienceOp>> {
    pub totals: Totals,
    /// Sorted by `(at, campaign, user_id, outcome)`.
    pub decisions: D,
    /// The audience ops, in application order (see [`Activator::step_qualification`]): the
    /// order a sink must keep per hashed id (a delete of an id some other member still holds
    /// is never among them).
    pub ops: O,
    /// Per campaign, `pending` filled in.
    pub counts: Vec<CampaignCounts>,
    /// Per campaign, what its report counts.
    pub tallies: Vec<Tally>,
    pub users: usize,
}

/// Receives `(reason, source name, line number, raw bytes)` of each malformed or late line.
pub type DeadLetterFn<'f> = dyn FnMut(Malformed, &str, u64, &[u8]) -> std::io::Result<()> + 'f;

/// Runs detect and activate over a loaded recording. Malformed and late lines go to
/// `dead_letter` as `(reason, source name, line number, raw bytes)`. `now_ms` is the wall
/// clock that lines recorded without a Kafka timestamp are checked against
/// (`engine.max_future`).
pub fn execute(
    config: &Config,
    recording: &Recording,
    shards: usize,
    now_ms: EventTime,
    dead_letter: &mut DeadLetterFn<'_>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Replayed> {
    execute_lines(
        config,
        recording.cursor(),
        shards,
        now_ms,
        dead_letter,
        progress,
    )
}

/// [`execute`] over any [`Lines`]: a loaded recording, or files read as they are merged.
pub fn execute_lines(
    config: &Config,
    lines: impl Lines,
    shards: usize,
    now_ms: EventTime,
    dead_letter: &mut DeadLetterFn<'_>,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<Replayed> {
    let (r, kept, erased) = execute_kept(
        config,
        lines,
        shards,
        now_ms,
        dead_letter,
        progress,
        InMemory::default(),
    )?;
    let (decisions, ops) = kept.finish(&erased, &config.campaigns);
    Ok(Replayed {
        decisions,
        ops,
        totals: r.totals,
        counts: r.counts,
        tallies: r.tallies,
        users: r.users,
    })
}

/// Detect and activate over `lines`, what activation decided going to `kept`: the result
/// (its decisions and ops in `kept`), `kept`, and what the erasures forgot.
fn execute_kept<K: Keep>(
    config: &Config,
    lines: impl Lines,
    shards: usize,
    now_ms: EventTime,
    dead_letter: &mut DeadLetterFn<'_>,
    progress: &mut dyn FnMut(u64),
    kept: K,
) -> std::io::Result<(Replayed<(), ()>, K, Forgotten)> {
    let rules = Arc::new(Rules::compile(&config.campaigns, &config.schema));
    let decoder = Decoder::new(config.source.format, &config.schema);
    let mut source = ReplaySource::new(lines, decoder);
    let started = tokio::time::Instant::now();
    let mut activation = Activation::new(config, kept);
    let result = detect(
        rules,
        &mut source,
        config.engine.allowed_lateness.as_millis(),
        config.engine.max_future.as_millis(),
        now_ms,
        shards,
        &mut |d| dead_letter(d.reason, d.source, d.line, d.raw),
        progress,
        &mut |out| activation.take(out),
    )?;
    if let Some(e) = source.take_error() {
        return Err(e);
    }
    let mut totals = result.totals;
    totals.blank_lines = source.lines().blank_lines();
    let detected = started.elapsed();
    let Activated {
        kept,
        erased,
        mut counts,
        tallies,
        custom_props_dropped,
    } = activation.finish();
    totals.custom_props_dropped += custom_props_dropped;
    tracing::debug!(detected = ?detected, activated = ?started.elapsed(), "execute phases (cumulative)");
    for (c, p) in counts.iter_mut().zip(result.pending) {
        c.pending = p;
    }
    let replayed = Replayed {
        totals,
        decisions: (),
        ops: (),
        counts,
        tallies,
        users: result.users,
    };
    Ok((replayed, kept, erased))
}

/// Replays recorded topics through the engine and writes the output files into
/// `opts.out_dir`, which it locks first (see [`replay_into`]).
pub fn replay(
    config: &Config,
    inputs: &[PathBuf],
    opts: &ReplayOptions,
    sink: &mut dyn AudienceSink,
) -> anyhow::Result<ReplayReport> {
    let out = OutDir::lock(&opts.out_dir)?;
    replay_into(config, inputs, &out, opts, sink)
}

/// [`replay`] into `out`, a directory this process already owns (`opts.out_dir` is not read):
/// lock it before starting a sink that writes there (the TikTok sink's `audiences.json`).
/// The output files appear together at the end (see [`crate::output::dir`]): a replay that
/// fails before then leaves the previous ones as they were. Users the sink could not deliver
/// do not stop the set from being written (see [`ReplayReport::sink_failure`]).
pub fn replay_into(
    config: &Config,
    inputs: &[PathBuf],
    out: &OutDir,
    opts: &ReplayOptions,
    sink: &mut dyn AudienceSink,
) -> anyhow::Result<ReplayReport> {
    // Before the inputs are read: an unusable directory is reported at once.
    let mut set = out.begin()?;
    let started = tokio::time::Instant::now();
    let recording = RecordingStream::open(inputs)?;
    let opened = started.elapsed();
    let bar = progress_bar(opts.progress);
    let shards = crate::config::resolve_workers(opts.shards);
    let dead = set.dead_letter();
    let mode = config.engine.dead_letter;
    // What activation decides waits on disk for the end of the input (see `Spilled`).
    let (replayed, kept, erased) = execute_kept(
        config,
        recording,
        shards,
        opts.now_ms,
        &mut |reason, src, line, raw| output::write_dead_letter(dead, mode, reason, src, line, raw),
        &mut |n| {
            if let Some(b) = &bar {
                b.set_position(n);
            }
        },
        Spilled::new(&config.campaigns, out.path())?,
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let executed = started.elapsed();

    let (decisions, ops) = kept.finish(erased)?;
    let mut decided = 0;
    let w = set.decisions();
    for d in decisions {
        output::write_decision(w, &d?, &config.campaigns)?;
        decided += 1;
    }
    for op in ops {
        sink.send(op?)?;
    }
    // Users the sink could not deliver are reported after the outputs are written: the
    // decisions stand, and the table says what was done.
    let (sink_report, sink_failure) = match sink.finish() {
        Ok(report) => (report, None),
        Err(SinkError::Failed { report, path }) => {
            let failure = SinkError::Failed {
                report: report.clone(),
                path,
            };
            (report, Some(failure))
        }
        Err(e) => return Err(e.into()),
    };

    let sizes = sink.audience_sizes();
    let reports: Vec<Report> = (replayed.tallies.iter().enumerate())
        .map(|(i, t)| t.report(sizes.get(i).copied().flatten()))
        .collect();
    let summary = Summary::new(
        &replayed.totals,
        &config.campaigns,
        &replayed.counts,
        &reports,
    );
    let w = set.summary();
    serde_json::to_writer_pretty(&mut *w, &summary)?;
    w.write_all(b"\n")?;
    set.commit()?;
    tracing::debug!(
        opened = ?opened,
        executed = ?executed,
        written = ?started.elapsed(),
        "replay phases (cumulative)"
    );
    Ok(ReplayReport {
        summary,
        decisions: decided,
        users: replayed.users,
        sink: sink_report,
        sink_failure,
    })
}

fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {human_pos} records  {per_sec}  {elapsed}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Erasure, Ids, Outcome};

    fn decision(campaign: CampaignIdx, user: &str, at: EventTime, outcome: Outcome) -> Decision {
        Decision {
            campaign,
            user: user.into(),
            at,
            outcome,
            ids: Ids::default(),
        }
    }

    /// What `replay` keeps on disk comes back as what the tests' in-memory keeping gives:
    /// sorted as the output is, without what erasures forgot — decided in time order (ties
    /// sorted by campaign id, user and outcome) or, as nothing promises otherwise, not.
    #[test]
    fn spilled_decisions_come_back_as_kept_in_memory() {
        let config = Config::load(std::path::Path::new("config/sample.toml")).unwrap();
        let campaigns = &config.campaigns;
        assert!(campaigns.len() >= 3);
        let in_order = vec![
            decision(2, "b", 10, Outcome::Exported),
            decision(0, "b", 10, Outcome::Control),
            decision(0, "a", 10, Outcome::Exported),
            decision(1, "c", 11, Outcome::Exported),
            decision(0, "a", 12, Outcome::Removed),
            decision(2, "z", 12, Outcome::Capped),
        ];
        let mut out_of_order = in_order.clone();
        out_of_order.push(decision(1, "late", 9, Outcome::Exported));
        out_of_order.push(decision(0, "x", 13, Outcome::Exported));
        let erasures = [Erasure {
            campaign: 0,
            user: "a".into(),
            ts: 11,
        }];
        for decided in [in_order, out_of_order] {
            for erased in [&[][..], &erasures[..]] {
                let dir = tempfile::tempdir().unwrap();
                let mut memory = InMemory::default();
                let mut disk = Spilled::new(campaigns, dir.path()).unwrap();
                for d in &decided {
                    memory.decision(d.clone());
                    disk.decision(d.clone());
                }
                let op = AudienceOp::from_decision(&decided[0]).unwrap();
                disk.op(op.clone());
                let (want, _) = memory.finish(&Forgotten::new(erased), campaigns);
                let (got, ops) = disk.finish(Forgotten::new(erased)).unwrap();
                let got: Vec<_> = got.collect::<std::io::Result<_>>().unwrap();
                assert_eq!(got, want);
                assert_eq!(ops.map(Result::unwrap).collect::<Vec<_>>(), vec![op]);
                assert_eq!(
                    want.len(),
                    decided.len() - if erased.is_empty() { 0 } else { 1 }
                );
            }
        }
    }
}
