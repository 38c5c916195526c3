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
/// count. What is left is released by [`Activation::finish`] at the end of the input.
pub struct Activation<'c> {
    config: &'c Config,
    hold: Holdback<()>,
    act: Activator,
    decisions: Vec<Decision>,
    ops: Vec<AudienceOp>,
    erased: Vec<crate::model::Erasure>,
    /// Scheduled runs executed (every shard executes each run: counted once).
    runs: std::collections::BTreeSet<(CampaignIdx, EventTime)>,
    custom_props_dropped: u64,
}

impl<'c> Activation<'c> {
    pub fn new(config: &'c Config) -> Self {
        Activation {
            config,
            hold: Holdback::default(),
            act: Activator::new(&config.campaigns),
            decisions: Vec::new(),
            ops: Vec::new(),
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
            self.decisions.extend(step.decision);
            self.ops.extend(step.op);
        }
    }

    /// Decides what is still held and hands the result over.
    pub fn finish(mut self) -> Activated {
        let released = self.hold.release_all();
        self.apply(released);
        let campaigns = &self.config.campaigns;
        let mut decisions = self.decisions;
        forget_erased(&mut decisions, &self.erased);
        output::sort_decisions(&mut decisions, campaigns);
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
            decisions,
            ops: self.ops,
            counts,
            tallies,
            custom_props_dropped: self.custom_props_dropped,
        }
    }
}

/// Drops the decisions an erasure forgot (those of its user and campaign at or before it), as
/// the tombstones of `run`'s decisions topic do: an erased user's hashed ids leave the output.
fn forget_erased(decisions: &mut Vec<Decision>, erased: &[crate::model::Erasure]) {
    if erased.is_empty() {
        return;
    }
    let mut last: HashMap<(CampaignIdx, &str), EventTime> = HashMap::new();
    for e in erased {
        let t = last.entry((e.campaign, &e.user)).or_insert(e.ts);
        *t = (*t).max(e.ts);
    }
    decisions.retain(|d| last.get(&(d.campaign, &*d.user)).is_none_or(|&t| d.at > t));
}

/// What an [`Activation`] decided.
#[derive(Debug)]
pub struct Activated {
    /// Sorted by `(at, campaign, user_id, outcome)`.
    pub decisions: Vec<Decision>,
    /// The audience ops, in the order activate applied them (the order a sink must keep per
    /// hashed id: a delete of an id some other member still holds is never among them).
    pub ops: Vec<AudienceOp>,
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
pub struct Replayed {
    pub totals: Totals,
    /// Sorted by `(at, campaign, user_id, outcome)`.
    pub decisions: Vec<Decision>,
    /// The audience ops, in application order (see [`Activated::ops`]).
    pub ops: Vec<AudienceOp>,
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
    let rules = Arc::new(Rules::compile(&config.campaigns, &config.schema));
    let decoder = Decoder::new(config.source.format, &config.schema);
    let mut source = ReplaySource::new(lines, decoder);
    let started = tokio::time::Instant::now();
    let mut activation = Activation::new(config);
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
        decisions,
        ops,
        mut counts,
        tallies,
        custom_props_dropped,
    } = activation.finish();
    totals.custom_props_dropped += custom_props_dropped;
    tracing::debug!(detected = ?detected, activated = ?started.elapsed(), "execute phases (cumulative)");
    for (c, p) in counts.iter_mut().zip(result.pending) {
        c.pending = p;
    }
    Ok(Replayed {
        totals,
        decisions,
        ops,
        counts,
        tallies,
        users: result.users,
    })
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
    let replayed = execute_lines(
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
    )?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let executed = started.elapsed();

    output::write_decisions(set.decisions(), &replayed.decisions, &config.campaigns)?;
    for op in replayed.ops {
        sink.send(op)?;
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
        decisions: replayed.decisions.len(),
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
