//! Behaviour rules over past days: `did` / `did_not` an event (with a `where` on its
//! properties), or an aggregate of its events (`count`, `sum`, `avg`, `min`, `max` of a numeric
//! property) compared with a value, over `in_last = "Nd"`, `between = ["Nd", "Md"]` or `"all"`.
//!
//! Ranges are whole days in the evaluating campaign's time zone, counted back from the day `D`
//! that holds the evaluation instant `R`: `in_last = N` covers days `D−N+1 ..= D`,
//! `between = [N, M]` covers `D−N ..= D−M`, `all` everything the user's state holds. Only
//! events applied before the evaluation count (the shard applies records with `ts ≤ R` first).
//!
//! Per user and rule, only sparse day buckets (days without a matching event take no space)
//! with the figures the rule needs, dropped once older than the rule's longest range; `all`
//! keeps one running aggregate.

use jiff::tz::TimeZone;
use jiff::Timestamp;
use smallvec::SmallVec;

use crate::campaign::condition::Condition;
use crate::event::{EventId, EventTime, PropId, ValueRef};

pub use crate::campaign::past::{Agg, Range};

/// `(oldest, newest)` day offsets back from `D`, inclusive; `None` for `All`.
fn days_back(range: Range) -> Option<(i32, i32)> {
    match range {
        Range::Last(n) => Some((i32::from(n) - 1, 0)),
        Range::Between(n, m) => Some((i32::from(n), i32::from(m))),
        Range::All => None,
    }
}

/// One compiled behaviour rule.
#[derive(Debug, Clone)]
pub struct PastRule {
    /// A stable name (`campaign-id#n`, `segment:id#n`): snapshots keep buckets by it.
    pub key: String,
    /// `did_not`.
    pub negated: bool,
    pub event: EventId,
    /// On the event's properties.
    pub conditions: Vec<Condition>,
    /// `agg`, the numeric property it reads (`None` for `count`), and the comparison of the
    /// aggregate (`op`/`value`, its `prop` unused).
    pub agg: Option<(Agg, Option<PropId>, Condition)>,
    pub range: Range,
    /// Day boundaries.
    pub tz: Zone,
}

/// A time zone with its UTC offsets from 1970 to 2100 as a table: the local day of an event
/// is one binary search over a few hundred transitions (jiff answers outside the table, and
/// for a zone whose rules lie beyond its transition data it evaluates them per call).
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
    /// Instants (ms) from which `offsets[i]` (ms) holds; the first is the table's start.
    starts: Box<[i64]>,
    offsets: Box<[i64]>,
    /// Per span of 2^31 ms (~25 days) from the start, the index of the offset holding at the
    /// span's start: a lookup is that entry and a step over each change within the span
    /// (zones change at most twice a year nowadays).
    spans: Box<[u32]>,
    /// The table's end (exclusive).
    end: i64,
}

impl Zone {
    /// 1970-01-01 to 2100-01-01, UTC.
    const FROM: i64 = 0;
    const TO: i64 = 4_102_444_800_000;
    const SPAN: u32 = 31;

    pub fn new(tz: TimeZone) -> Zone {
        let offset_ms = |t: Timestamp| i64::from(tz.to_offset(t).seconds()) * 1000;
        let from = Timestamp::from_millisecond(Zone::FROM).expect("in range");
        let mut starts = vec![Zone::FROM];
        let mut offsets = vec![offset_ms(from)];
        for t in tz.following(from) {
            let at = t.timestamp().as_millisecond();
            if at >= Zone::TO {
                break;
            }
            starts.push(at);
            offsets.push(i64::from(t.offset().seconds()) * 1000);
        }
        let spans = (0..=((Zone::TO - Zone::FROM) >> Zone::SPAN))
            .map(|i| {
                let at = Zone::FROM + (i << Zone::SPAN);
                let n = starts.partition_point(|&s| s <= at) - 1;
                u32::try_from(n).expect("fewer than 2^32 changes")
            })
            .collect();
        Zone {
            tz,
            starts: starts.into(),
            offsets: offsets.into(),
            spans,
            end: Zone::TO,
        }
    }

    /// The zone's offset from UTC at `ts`, in milliseconds (`None`: not a representable
    /// instant).
    fn offset_ms(&self, ts: EventTime) -> Option<i64> {
        if (Zone::FROM..self.end).contains(&ts) {
            let mut i = self.spans[((ts - Zone::FROM) >> Zone::SPAN) as usize] as usize;
            while self.starts.get(i + 1).is_some_and(|&s| s <= ts) {
                i += 1;
            }
            return Some(self.offsets[i]);
        }
        let t = Timestamp::from_millisecond(ts).ok()?;
        Some(i64::from(self.tz.to_offset(t).seconds()) * 1000)
    }
}

/// Zones are equal when their time zones are (the tables follow from them).
impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.tz == other.tz
    }
}

impl From<TimeZone> for Zone {
    fn from(tz: TimeZone) -> Zone {
        Zone::new(tz)
    }
}

/// The figures of one day (or of everything, for `all`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Days since 1970-01-01 in the rule's zone (`i32::MIN` for the `all` aggregate).
    pub day: i32,
    /// Matching events.
    pub count: u32,
    /// Matching events whose `prop` is a number, and their sum, min and max.
    pub numbers: u32,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Bucket {
    fn empty(day: i32) -> Bucket {
        Bucket {
            day,
            count: 0,
            numbers: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    fn add(&mut self, value: Option<f64>) {
        self.count = self.count.saturating_add(1);
        if let Some(v) = value {
            self.numbers = self.numbers.saturating_add(1);
            self.sum += v;
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
    }

    fn merge(&mut self, other: &Bucket) {
        self.count = self.count.saturating_add(other.count);
        self.numbers = self.numbers.saturating_add(other.numbers);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// One user's days for one rule, oldest first, packed into 8-byte cells: per day the day and
/// its count (`day << 32 | count`), then only the figures the rule's aggregate needs (`sum`:
/// the sum; `avg`: the count of numbers and the sum; `min` / `max`: that extreme). A
/// `did` / `did_not` / `count` rule takes 8 bytes a day.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets(Box<[u64]>);

/// How a rule's days are packed (see [`Buckets`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl Layout {
    fn stride(self) -> usize {
        match self {
            Layout::Count => 1,
            Layout::Avg => 3,
            Layout::Sum | Layout::Min | Layout::Max => 2,
        }
    }
}

fn head(day: i32, count: u32) -> u64 {
    (u64::from(day as u32) << 32) | u64::from(count)
}

fn head_day(cell: u64) -> i32 {
    (cell >> 32) as u32 as i32
}

impl std::ops::Deref for Buckets {
    type Target = [u64];

    fn deref(&self) -> &[u64] {
        &self.0
    }
}

/// Packed days (see [`Buckets`]), unpacked (figures the layout does not keep are those of no
/// numbers).
pub fn days(cells: &[u64], layout: Layout) -> impl ExactSizeIterator<Item = Bucket> + Clone + '_ {
    cells.chunks_exact(layout.stride()).map(move |c| {
        let mut b = Bucket::empty(head_day(c[0]));
        b.count = c[0] as u32;
        let f = |i: usize| f64::from_bits(c[i]);
        match layout {
            Layout::Count => {}
            Layout::Sum => b.sum = f(1),
            Layout::Avg => (b.numbers, b.sum) = (c[1] as u32, f(2)),
            Layout::Min => b.min = f(1),
            Layout::Max => b.max = f(1),
        }
        if matches!(layout, Layout::Min | Layout::Max) {
            b.numbers = u32::from(b.min.is_finite() || b.max.is_finite());
        }
        b
    })
}

impl Buckets {
    pub fn new() -> Buckets {
        Buckets::default()
    }

    /// The days, unpacked.
    pub fn days(&self, layout: Layout) -> impl ExactSizeIterator<Item = Bucket> + Clone + '_ {
        days(&self.0, layout)
    }

    /// Packs `days` (oldest first) in `layout`.
    pub fn pack(layout: Layout, days: impl IntoIterator<Item = Bucket>) -> Buckets {
        Buckets(pack(layout, days).into_boxed_slice())
    }
}

/// Packs `days` (oldest first) in `layout` (see [`Buckets`]).
pub fn pack(layout: Layout, days: impl IntoIterator<Item = Bucket>) -> Vec<u64> {
    let mut cells = Vec::new();
    for b in days {
        push_day(&mut cells, layout, &b);
    }
    cells
}

/// Appends one day's cells (see [`Buckets`]).
fn push_day(cells: &mut impl Extend<u64>, layout: Layout, b: &Bucket) {
    let head = head(b.day, b.count);
    match layout {
        Layout::Count => cells.extend([head]),
        Layout::Sum => cells.extend([head, b.sum.to_bits()]),
        Layout::Avg => cells.extend([head, u64::from(b.numbers), b.sum.to_bits()]),
        Layout::Min => cells.extend([head, b.min.to_bits()]),
        Layout::Max => cells.extend([head, b.max.to_bits()]),
    }
}

/// A rule's days as [`PastRule::record_cells`] repacks them: on the stack for up to 16 cells
/// (a week of `count` days, five of `avg`).
pub type Cells = SmallVec<[u64; 16]>;

/// Adds an event (with its number, if any) to `day` of packed days in place; `false` if the
/// day is not there.
fn add_to(cells: &mut [u64], layout: Layout, day: i32, value: Option<f64>) -> bool {
    let Some(c) = cells
        .chunks_exact_mut(layout.stride())
        .find(|c| head_day(c[0]) == day)
    else {
        return false;
    };
    let count = (c[0] as u32).saturating_add(1);
    c[0] = head(day, count);
    if let Some(v) = value {
        let f = |x: u64| f64::from_bits(x);
        match layout {
            Layout::Count => {}
            Layout::Sum => c[1] = (f(c[1]) + v).to_bits(),
            Layout::Avg => {
                c[1] = c[1].saturating_add(1);
                c[2] = (f(c[2]) + v).to_bits();
            }
            Layout::Min => c[1] = f(c[1]).min(v).to_bits(),
            Layout::Max => c[1] = f(c[1]).max(v).to_bits(),
        }
    }
    true
}

/// The day (days since 1970-01-01) that holds `ts` in `tz`; a local midnight belongs to the
/// new day.
///
/// The local time is `ts` plus the zone's offset at `ts`, so the local day is that sum in
/// whole days: one offset lookup, no calendar arithmetic (this runs for every event a rule
/// counts).
pub fn day_of(ts: EventTime, zone: &Zone) -> i32 {
    let Some(offset_ms) = zone.offset_ms(ts) else {
        return if ts < 0 { i32::MIN + 1 } else { i32::MAX };
    };
    let day = (ts + offset_ms).div_euclid(86_400_000);
    i32::try_from(day).unwrap_or(if day < 0 { i32::MIN + 1 } else { i32::MAX })
}

impl PastRule {
    /// Whether an event of this rule's name counts (its `where` holds).
    pub fn matches<'v>(&self, prop: impl Fn(PropId) -> Option<ValueRef<'v>>) -> bool {
        self.conditions.iter().all(|c| c.eval(prop(c.prop)))
    }

    /// The number the rule aggregates, if the event carries one.
    pub fn value<'v>(&self, prop: impl Fn(PropId) -> Option<ValueRef<'v>>) -> Option<f64> {
        let (_, Some(p), _) = self.agg.as_ref()? else {
            return None;
        };
        match prop(*p)? {
            ValueRef::Num(n) if n.is_finite() => Some(n),
            _ => None,
        }
    }

    /// Days of state this rule needs behind the newest (`None`: `all`, one aggregate).
    pub fn keep_days(&self) -> Option<i32> {
        days_back(self.range).map(|(oldest, _)| oldest)
    }

    /// How this rule's days are packed.
    pub fn layout(&self) -> Layout {
        match &self.agg {
            None | Some((Agg::Count, ..)) => Layout::Count,
            Some((Agg::Sum, ..)) => Layout::Sum,
            Some((Agg::Avg, ..)) => Layout::Avg,
            Some((Agg::Min, ..)) => Layout::Min,
            Some((Agg::Max, ..)) => Layout::Max,
        }
    }

    /// Records a matching event at `ts` (with the aggregated number, if any) into `buckets`,
    /// dropping days no evaluation from `ts` on can reach. A day already there is updated in
    /// place; a new one repacks the user's few days.
    pub fn record(&self, buckets: &mut Buckets, ts: EventTime, value: Option<f64>) {
        if let Some(cells) = self.record_cells(&mut buckets.0, ts, value) {
            buckets.0 = cells[..].into();
        }
    }

    /// [`PastRule::record`] on packed days: updated in place, or (a new day) the days to
    /// keep instead.
    pub fn record_cells(
        &self,
        cells: &mut [u64],
        ts: EventTime,
        value: Option<f64>,
    ) -> Option<Cells> {
        let layout = self.layout();
        let keep = self.keep_days();
        let day = match keep {
            Some(_) => day_of(ts, &self.tz),
            // `all`: one running aggregate.
            None => i32::MIN,
        };
        if add_to(cells, layout, day, value) {
            return None;
        }
        // A new day, in its place among the others (oldest first), then only the days an
        // evaluation from the newest on can reach.
        let stride = layout.stride();
        let day_at = |i: usize| head_day(cells[i * stride]);
        let n = cells.len() / stride;
        let at = (0..n).take_while(|&i| day_at(i) < day).count();
        let newest = if at == n { day } else { day_at(n - 1) };
        let oldest_kept = keep.map_or(i32::MIN, |k| newest.saturating_sub(k));
        let mut b = Bucket::empty(day);
        b.add(value);
        let mut out = Cells::new();
        let kept = |i: &usize| day_at(*i) >= oldest_kept;
        for i in (0..at).filter(kept) {
            out.extend_from_slice(&cells[i * stride..(i + 1) * stride]);
        }
        if day >= oldest_kept {
            push_day(&mut out, layout, &b);
        }
        for i in (at..n).filter(kept) {
            out.extend_from_slice(&cells[i * stride..(i + 1) * stride]);
        }
        Some(out)
    }

    /// Whether the rule holds at `at` for a user with `buckets` (`None`: never recorded).
    pub fn holds(&self, buckets: Option<&[u64]>, at: EventTime) -> bool {
        self.holds_on(buckets, self.day(at))
    }

    /// The day of `at` in this rule's zone (what [`PastRule::holds_on`] takes).
    pub fn day(&self, at: EventTime) -> i32 {
        day_of(at, &self.tz)
    }

    /// [`PastRule::holds`] at an instant of day `d` ([`PastRule::day`]): a scheduled run
    /// looks the day up once for every user it evaluates.
    pub fn holds_on(&self, buckets: Option<&[u64]>, d: i32) -> bool {
        let layout = self.layout();
        if layout == Layout::Count {
            // `did`, `did_not`, `count` (most rules): one cell a day, its count.
            let (lo, hi) = match days_back(self.range) {
                None => (i32::MIN, i32::MAX),
                Some((oldest, newest)) => (d.saturating_sub(oldest), d.saturating_sub(newest)),
            };
            let in_range = buckets.unwrap_or_default().iter().copied();
            let in_range = in_range.filter(|&c| (lo..=hi).contains(&head_day(c)));
            let count = in_range.fold(0u32, |n, c| n.saturating_add(c as u32));
            return match &self.agg {
                None => (count > 0) != self.negated,
                Some((_, _, cmp)) => cmp.eval_num(f64::from(count)),
            };
        }
        let mut total = Bucket::empty(0);
        if let Some(buckets) = buckets {
            let days = days(buckets, layout);
            match days_back(self.range) {
                None => days.for_each(|b| total.merge(&b)),
                Some((oldest, newest)) => {
                    let (lo, hi) = (d.saturating_sub(oldest), d.saturating_sub(newest));
                    for b in days.filter(|b| (lo..=hi).contains(&b.day)) {
                        total.merge(&b);
                    }
                }
            }
        }
        let Some((agg, _, cmp)) = &self.agg else {
            return (total.count > 0) != self.negated;
        };
        let value = match agg {
            Agg::Count => f64::from(total.count),
            Agg::Sum => total.sum,
            Agg::Avg if total.numbers > 0 => total.sum / f64::from(total.numbers),
            Agg::Min if total.numbers > 0 => total.min,
            Agg::Max if total.numbers > 0 => total.max,
            // avg, min, max of no values are false.
            _ => return false,
        };
        cmp.eval_num(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::condition::{Op, Operand, Scalar};

    const DAY: i64 = 86_400_000;
    /// 2027-01-10T00:00:00Z.
    const T0: i64 = 1_799_539_200_000;

    fn cmp(op: Op, v: f64) -> Condition {
        Condition {
            prop: 0,
            op,
            operand: Operand::One(Scalar::Num(v)),
        }
    }

    fn rule(range: Range, agg: Option<(Agg, Option<PropId>, Condition)>) -> PastRule {
        PastRule {
            key: "c#0".into(),
            negated: false,
            event: 0,
            conditions: Vec::new(),
            agg,
            range,
            tz: TimeZone::UTC.into(),
        }
    }

    #[test]
    fn in_last_counts_whole_days_back_from_the_evaluation_day() {
        let r = rule(Range::Last(7), None);
        let mut b = Buckets::new();
        r.record(&mut b, T0 - 7 * DAY + 1, None); // day D−7: outside 7 days
        assert!(!r.holds(Some(&b[..]), T0 + 10));
        r.record(&mut b, T0 - 6 * DAY, None); // day D−6: inside
        assert!(r.holds(Some(&b[..]), T0 + 10));
        // Evaluated a day later, D−6 became D−7.
        assert!(!r.holds(Some(&b[..]), T0 + DAY));
        let not = PastRule { negated: true, ..r };
        assert!(not.holds(None, T0), "did_not of nothing holds");
        assert!(!not.holds(Some(&b[..]), T0));
    }

    #[test]
    fn between_and_aggregates() {
        // Sum over days D−90 ..= D−31.
        let r = rule(
            Range::Between(90, 31),
            Some((Agg::Sum, Some(1), cmp(Op::Gt, 100.0))),
        );
        let mut b = Buckets::new();
        r.record(&mut b, T0 - 90 * DAY, Some(60.0)); // the oldest day in range
        r.record(&mut b, T0 - 31 * DAY, Some(50.0)); // the newest
        r.record(&mut b, T0 - 30 * DAY, Some(500.0)); // too recent
        assert!(r.holds(Some(&b[..]), T0), "60 + 50 > 100");
        // A day later the oldest is out of range: 50 + 500 would hold, but D−30 became D−31…
        assert!(r.holds(Some(&b[..]), T0 + DAY), "50 + 500");
        // …and a day earlier, only 60 is in range.
        assert!(!r.holds(Some(&b[..]), T0 - DAY), "60 alone");
        let avg = rule(Range::All, Some((Agg::Avg, Some(1), cmp(Op::Lt, 10.0))));
        assert!(!avg.holds(None, T0), "avg of no values is false");
        let count = rule(Range::Last(30), Some((Agg::Count, None, cmp(Op::Lt, 2.0))));
        assert!(count.holds(None, T0), "count of nothing is 0, and compared");
        let min = rule(Range::Last(30), Some((Agg::Min, Some(1), cmp(Op::Le, 5.0))));
        let mut m = Buckets::new();
        min.record(&mut m, T0, None); // an event without the number: counted, not aggregated
        assert!(!min.holds(Some(&m[..]), T0));
        min.record(&mut m, T0, Some(5.0));
        min.record(&mut m, T0, Some(9.0));
        assert!(min.holds(Some(&m[..]), T0));
    }

    #[test]
    fn old_days_are_dropped_and_all_keeps_one_aggregate() {
        let r = rule(Range::Last(3), None);
        let mut b = Buckets::new();
        for d in 0..10 {
            r.record(&mut b, T0 + d * DAY, None);
        }
        assert_eq!(
            b.days(r.layout()).count(),
            3,
            "only the days a 3-day range can reach"
        );
        let all = rule(Range::All, Some((Agg::Count, None, cmp(Op::Ge, 10.0))));
        let mut a = Buckets::new();
        for d in 0..10 {
            all.record(&mut a, T0 + d * 100 * DAY, None);
        }
        assert_eq!(a.days(all.layout()).count(), 1);
        assert!(all.holds(Some(&a[..]), T0));
    }

    #[test]
    fn days_are_local_to_the_zone() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let (ny_zone, utc) = (Zone::new(ny.clone()), Zone::new(TimeZone::UTC));
        // 2027-01-10T03:00Z is still the 9th in New York; 05:00Z is the 10th (midnight EST).
        assert_eq!(day_of(T0 + 3 * 3_600_000, &ny_zone), day_of(T0 - DAY, &utc));
        assert_eq!(day_of(T0 + 5 * 3_600_000, &ny_zone), day_of(T0, &utc));
        // The calendar's count of days agrees, in zones and across DST changes.
        let calendar = |ts: i64, tz: &TimeZone| {
            let date = tz
                .to_datetime(Timestamp::from_millisecond(ts).unwrap())
                .date();
            date.since((jiff::Unit::Day, jiff::civil::date(1970, 1, 1)))
                .unwrap()
                .get_days()
        };
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        for tz in [&ny, &berlin, &TimeZone::UTC] {
            let zone = Zone::new(tz.clone());
            for h in (-24 * 400..24 * 400).step_by(7) {
                let ts = T0 + h * 3_600_000 + 59_999;
                assert_eq!(day_of(ts, &zone), calendar(ts, tz), "{ts}");
            }
            // Either side of every change of offset the table holds, its ends, and beyond
            // them (where jiff answers).
            let changes = tz.following(Timestamp::from_millisecond(0).unwrap());
            let edges = changes
                .take_while(|t| t.timestamp().as_millisecond() < Zone::TO)
                .map(|t| t.timestamp().as_millisecond())
                .chain([0, Zone::TO, 5_000_000_000_000, -DAY]);
            for at in edges {
                for ts in [at - 1, at, at + 1] {
                    assert_eq!(day_of(ts, &zone), calendar(ts, tz), "{ts}");
                }
            }
        }
    }
}
