//! The router's decision, shared by both runtimes: what becomes of a decoded line before any
//! shard sees it — counted, then malformed (dead letter), late (behind the watermark: dead
//! letter), irrelevant (no campaign can be moved by it), or applied. Lateness is decided here,
//! once, against the watermark of the records' own set of partitions (replay: the recording;
//! `run`: one input partition's topics), so a shard only ever applies records in event-time
//! order. `replay` and `run` differ only in what comes before (where lines come from; `run`
//! skips what a restart re-reads) and after (threads and channels, or one shard inline).

use serde::Serialize;

use super::watermark::Watermarks;
use crate::event::decode::Malformed;
use crate::event::{EventTime, Record};

/// Input counters: replay's summary, `run`'s `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Well-formed records (events + profiles), late ones included.
    pub records: u64,
    pub events: u64,
    pub profiles: u64,
    /// Records that are neither (Segment `alias` and `group` calls): accepted, counted, no
    /// effect.
    pub other: u64,
    /// Erasure requests (`{"type": "delete"}` records), applied however late they come.
    pub erasures: u64,
    /// Lines that could not be decoded.
    pub malformed: u64,
    /// Records behind the watermark on arrival.
    pub late_dropped: u64,
    /// Dead letters by reason (`Malformed as usize`; an extension of DESIGN §5's summary).
    #[serde(skip)]
    pub by_reason: [u64; Malformed::ALL.len()],
    /// Custom profile properties not kept (`engine.max_custom_props`).
    pub custom_props_dropped: u64,
    /// Lines of only whitespace in a recording: skipped, neither records nor malformed (so
    /// records + malformed + blank lines = the recording's lines).
    pub blank_lines: u64,
}

impl Totals {
    /// Dead letters by reason, those that occurred.
    pub fn reasons(&self) -> impl Iterator<Item = (Malformed, u64)> + '_ {
        Malformed::ALL
            .iter()
            .zip(self.by_reason)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (*r, n))
    }

    /// Lines seen: well-formed records and malformed lines.
    pub fn lines(&self) -> u64 {
        self.records + self.malformed
    }

    /// Adds `other`'s counts (several detect workers report one total).
    pub fn add(&mut self, other: &Totals) {
        self.records += other.records;
        self.events += other.events;
        self.profiles += other.profiles;
        self.other += other.other;
        self.erasures += other.erasures;
        self.malformed += other.malformed;
        self.late_dropped += other.late_dropped;
        for (a, b) in self.by_reason.iter_mut().zip(other.by_reason) {
            *a += b;
        }
        self.custom_props_dropped += other.custom_props_dropped;
        self.blank_lines += other.blank_lines;
    }
}

/// What becomes of a line.
#[derive(Debug)]
pub enum Routed {
    /// To the dead-letter output with this reason (malformed, or `Late`).
    DeadLetter(Malformed),
    /// Well-formed, but no campaign can be moved by it.
    Skip,
    /// To the user's shard.
    Apply(Record),
}

/// Routes one decoded line of partition `input` of `wm`'s set, counting it into `totals`.
/// A record whose `ts` is above `not_after` (its reference time plus `engine.max_future`) is
/// malformed (`future_ts`): it never reaches the watermark.
pub fn route(
    totals: &mut Totals,
    wm: &mut Watermarks,
    input: usize,
    decoded: Result<Record, Malformed>,
    not_after: EventTime,
) -> Routed {
    let decoded = decoded.and_then(|rec| {
        if rec.ts > not_after {
            Err(Malformed::FutureTs)
        } else {
            Ok(rec)
        }
    });
    let rec = match decoded {
        Err(reason) => {
            totals.malformed += 1;
            totals.by_reason[reason as usize] += 1;
            return Routed::DeadLetter(reason);
        }
        Ok(rec) => rec,
    };
    totals.records += 1;
    let mut rec = rec;
    if rec.erase {
        // An erasure is honoured whenever it comes: one behind the watermark is applied just
        // above it.
        totals.erasures += 1;
        rec.ts = rec.ts.max(wm.current().saturating_add(1));
    } else if rec.event.is_some() {
        totals.events += 1;
    } else if rec.profile.is_some() {
        totals.profiles += 1;
    } else {
        totals.other += 1;
    }
    if wm.observe(input, rec.ts) {
        totals.late_dropped += 1;
        totals.by_reason[Malformed::Late as usize] += 1;
        return Routed::DeadLetter(Malformed::Late);
    }
    if !rec.is_relevant() {
        return Routed::Skip;
    }
    Routed::Apply(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_from_the_far_future_is_dead_lettered_and_does_not_move_the_watermark() {
        let schema = crate::event::Schema::default();
        let decoder = crate::event::decode::Decoder::new(crate::event::Format::Native, &schema);
        let line = |ts: i64| {
            decoder.decode(
                format!(r#"{{"user_id":"u","event":"Added To Cart","ts":{ts}}}"#).as_bytes(),
            )
        };
        let mut totals = Totals::default();
        let mut wm = Watermarks::new(1, 5_000);
        let now = 1_764_000_000_000;
        let limit = now + 3_600_000;
        assert!(matches!(
            route(&mut totals, &mut wm, 0, line(now - 1_000), limit),
            Routed::Apply(_) | Routed::Skip
        ));
        // Milliseconds where seconds were meant: the year ~57,000.
        let far = (now - 500) * 1000;
        assert!(matches!(
            route(&mut totals, &mut wm, 0, line(far), limit),
            Routed::DeadLetter(Malformed::FutureTs)
        ));
        assert!(matches!(
            route(&mut totals, &mut wm, 0, line(now), limit),
            Routed::Apply(_) | Routed::Skip
        ));
        assert_eq!(totals.late_dropped, 0, "later good records are not late");
        assert_eq!(totals.malformed, 1);
        assert_eq!(totals.by_reason[Malformed::FutureTs as usize], 1);
        assert_eq!(totals.records, 2);
    }

    #[test]
    fn reason_indexes_follow_the_declaration_order() {
        for (i, r) in Malformed::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
