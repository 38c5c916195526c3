//! When a past-behaviour campaign runs: one date, several, or a repeat (every N hours, days,
//! weeks or months, at a local time, on weekdays or a day of the month), in the campaign's
//! IANA time zone, until `until`, a number of `runs`, or the campaign's `end`.
//!
//! Time zones and DST come from `jiff` (its bundled tz database, so a slim container image
//! without `tzdata` behaves the same). A local time that does not exist (a DST gap) runs at the
//! first instant after the gap; one that occurs twice (a fold) runs once, at the first.
//! Runs are instants in event time (epoch milliseconds); generating them is pure, so every
//! shard and both runtimes see the same runs.

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

use crate::event::EventTime;

/// The repeating unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Absolute hours (a DST change does not shift them).
    Hour,
    Day,
    Week,
    Month,
}

/// A day of the month to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthDay {
    /// 1..=31; past the month's end, its last day.
    Day(i8),
    Last,
}

/// `repeat = { every, unit, time, weekdays, day }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    pub every: u32,
    pub unit: Unit,
    /// Local time of day (for `Hour`: the minute past the hour is taken).
    pub time: Time,
    /// `Week`: the days to run on; empty = the start's weekday.
    pub weekdays: Vec<Weekday>,
    /// `Month`: the day; `None` = the start's day of month.
    pub day: Option<MonthDay>,
}

/// When the runs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Explicit instants (RFC 3339 in the config).
    At(Vec<EventTime>),
    Repeat(Repeat),
}

/// A campaign's schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub tz: TimeZone,
    pub kind: Kind,
    /// Runs before this instant only (exclusive).
    pub until: Option<EventTime>,
    /// At most this many runs.
    pub runs: Option<u32>,
}

/// Parses `"mon"`..`"sun"` (or full names, any case).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    Some(match s.get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn ms(t: Timestamp) -> EventTime {
    t.as_millisecond()
}

fn timestamp(t: EventTime) -> Timestamp {
    Timestamp::from_millisecond(t).unwrap_or(if t < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The instant of local `dt`: a time in a DST gap runs at the gap's end (the transition), a
/// time that occurs twice at the first.
fn instant(tz: &TimeZone, dt: DateTime) -> Option<Timestamp> {
    let amb = tz.to_ambiguous_timestamp(dt);
    match amb.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
        AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the later offset, `dt` is before the transition; the next transition
            // is the gap's end.
            let early = after.to_timestamp(dt).ok()?;
            Some(tz.following(early).next()?.timestamp())
        }
    }
}

impl Schedule {
    /// Every run in `[start, end)` (and before `until`, at most `runs`), in order.
    pub fn runs(
        &self,
        start: EventTime,
        end: Option<EventTime>,
    ) -> impl Iterator<Item = EventTime> + '_ {
        let stop = match (end, self.until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let limit = self.runs.map_or(usize::MAX, |n| n as usize);
        let candidates: Box<dyn Iterator<Item = EventTime> + '_> = match &self.kind {
            Kind::At(times) => {
                let mut t = times.clone();
                t.sort_unstable();
                t.dedup();
                Box::new(t.into_iter().filter(move |&t| t >= start))
            }
            Kind::Repeat(r) => Box::new(self.repeat(r, start)),
        };
        candidates
            .take_while(move |&t| stop.is_none_or(|s| t < s))
            .take(limit)
    }

    /// The first run after `t` (exclusive) among [`Schedule::runs`].
    pub fn next_after(
        &self,
        t: EventTime,
        start: EventTime,
        end: Option<EventTime>,
    ) -> Option<EventTime> {
        self.runs(start, end).find(|&r| r > t)
    }

    fn repeat<'a>(
        &'a self,
        r: &'a Repeat,
        start: EventTime,
    ) -> Box<dyn Iterator<Item = EventTime> + 'a> {
        let tz = &self.tz;
        let start_ts = timestamp(start);
        let local_start = tz.to_datetime(start_ts);
        let every = i64::from(r.every.max(1));
        let mut out: Box<dyn Iterator<Item = EventTime> + 'a> = match r.unit {
            Unit::Hour => {
                // The first instant at or after `start` whose local minute is `time`'s, found
                // in absolute time: a start inside a DST fold then takes the fold's second
                // occurrence if the first is already past (a civil-time search would jump
                // over it). Two hours of minutes cover any offset change.
                let minute = i64::from(r.time.minute());
                let mut at = ms(start_ts).div_euclid(60_000) * 60_000;
                if at < ms(start_ts) {
                    at += 60_000;
                }
                let found = (0..120)
                    .map(|i| at + i * 60_000)
                    .find(|&t| i64::from(tz.to_datetime(timestamp(t)).minute()) == minute);
                let Some(first) = found else {
                    return Box::new(std::iter::empty());
                };
                let step = every * 3_600_000;
                Box::new((0..).map(move |i: i64| first + i * step))
            }
            Unit::Day => {
                // With `every > 1`, days count from the first occurrence at or after `start`:
                // the start's day if its run time is not past yet, else the next day.
                let start_day = local_start.date();
                let first_day = match instant(tz, start_day.to_datetime(r.time)) {
                    Some(t) if t >= start_ts => start_day,
                    _ => start_day.tomorrow().unwrap_or(start_day),
                };
                Box::new(
                    (0..)
                        .filter_map(move |i: i64| {
                            first_day
                                .checked_add(jiff::Span::new().days(i * every))
                                .ok()
                        })
                        .filter_map(move |d| instant(tz, d.to_datetime(r.time)))
                        .filter(move |t| *t >= start_ts)
                        .map(ms),
                )
            }
            Unit::Week => {
                let days: Vec<Weekday> = if r.weekdays.is_empty() {
                    vec![local_start.weekday()]
                } else {
                    r.weekdays.clone()
                };
                // Weeks are Monday-based; with `every > 1` they count from the first
                // occurrence's week, which is found first.
                let monday = |d: Date| {
                    d.checked_sub(
                        jiff::Span::new().days(i64::from(d.weekday().to_monday_zero_offset())),
                    )
                    .unwrap_or(d)
                };
                let day_instants = move |d: Date| instant(tz, d.to_datetime(r.time));
                let first = (0..8i64)
                    .filter_map(|i| {
                        local_start
                            .date()
                            .checked_add(jiff::Span::new().days(i))
                            .ok()
                    })
                    .filter(|d| days.contains(&d.weekday()))
                    .find(|d| day_instants(*d).is_some_and(|t| t >= start_ts));
                let Some(first) = first else {
                    return Box::new(std::iter::empty());
                };
                let week0 = monday(first);
                Box::new(
                    (0..)
                        .filter_map(move |w: i64| {
                            week0.checked_add(jiff::Span::new().weeks(w * every)).ok()
                        })
                        .flat_map(move |m| {
                            (0..7i64)
                                .filter_map(move |i| m.checked_add(jiff::Span::new().days(i)).ok())
                        })
                        .filter(move |d| days.contains(&d.weekday()))
                        .filter_map(day_instants)
                        .filter(move |t| *t >= start_ts)
                        .map(ms),
                )
            }
            Unit::Month => {
                let day = r.day.unwrap_or(MonthDay::Day(local_start.day()));
                let on = move |y: i16, m: i8| -> Option<Date> {
                    let first = Date::new(y, m, 1).ok()?;
                    let last = first.last_of_month().day();
                    let d = match day {
                        MonthDay::Last => last,
                        MonthDay::Day(d) => d.min(last),
                    };
                    Date::new(y, m, d).ok()
                };
                let at =
                    move |y: i16, m: i8| on(y, m).and_then(|d| instant(tz, d.to_datetime(r.time)));
                let (y0, m0) = (local_start.year(), local_start.month());
                let months = move |i: i64| {
                    let n = i64::from(y0) * 12 + i64::from(m0 - 1) + i;
                    (
                        i16::try_from(n.div_euclid(12)).ok(),
                        (n.rem_euclid(12) + 1) as i8,
                    )
                };
                // The first occurrence: this month's, or the next month's.
                let offset = if at(y0, m0).is_some_and(|t| t >= start_ts) {
                    0
                } else {
                    1
                };
                Box::new(
                    (0..)
                        .map(move |i: i64| months(offset + i * every))
                        .map_while(|(y, m)| y.map(|y| (y, m)))
                        .filter_map(move |(y, m)| at(y, m))
                        .map(ms),
                )
            }
        };
        // Runs are increasing; a fold or a gap cannot reorder them, but guard anyway.
        let mut last = EventTime::MIN;
        Box::new(std::iter::from_fn(move || loop {
            let t = out.next()?;
            if t > last {
                last = t;
                return Some(t);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn t(s: &str) -> EventTime {
        ms(s.parse::<Timestamp>().unwrap())
    }

    fn show(tz: &TimeZone, runs: impl Iterator<Item = EventTime>) -> Vec<String> {
        runs.map(|r| {
            timestamp(r)
                .to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M %z")
                .to_string()
        })
        .collect()
    }

    fn repeat(every: u32, unit: Unit, time: &str) -> Repeat {
        Repeat {
            every,
            unit,
            time: time.parse().unwrap(),
            weekdays: Vec::new(),
            day: None,
        }
    }

    fn schedule(zone: &str, kind: Kind) -> Schedule {
        Schedule {
            tz: tz(zone),
            kind,
            until: None,
            runs: None,
        }
    }

    #[test]
    fn daily_runs_keep_local_time_across_dst_and_a_gap_runs_at_its_end() {
        let s = schedule(
            "America/New_York",
            Kind::Repeat(repeat(1, Unit::Day, "02:30")),
        );
        // 2027-03-14: 02:00 → 03:00 in New York; 2027-11-07: 02:00 → 01:00.
        let got = show(
            &s.tz,
            s.runs(t("2027-03-13T00:00:00Z"), Some(t("2027-03-16T12:00:00Z"))),
        );
        assert_eq!(
            got,
            [
                "2027-03-13 02:30 -0500",
                "2027-03-14 03:00 -0400",
                "2027-03-15 02:30 -0400",
                "2027-03-16 02:30 -0400"
            ]
        );
        let s = schedule(
            "America/New_York",
            Kind::Repeat(repeat(1, Unit::Day, "01:30")),
        );
        let got = show(
            &s.tz,
            s.runs(t("2027-11-06T12:00:00Z"), Some(t("2027-11-08T12:00:00Z"))),
        );
        // The fold: 01:30 happens twice on 7 November; it runs once, at the first (EDT).
        assert_eq!(got, ["2027-11-07 01:30 -0400", "2027-11-08 01:30 -0500"]);
    }

    #[test]
    fn berlin_dst_gap_and_fold() {
        let s = schedule("Europe/Berlin", Kind::Repeat(repeat(1, Unit::Day, "02:15")));
        // 2027-03-28: 02:00 → 03:00; 2027-10-31: 03:00 → 02:00.
        let got = show(
            &s.tz,
            s.runs(t("2027-03-27T00:00:00Z"), Some(t("2027-03-29T12:00:00Z"))),
        );
        assert_eq!(
            got,
            [
                "2027-03-27 02:15 +0100",
                "2027-03-28 03:00 +0200",
                "2027-03-29 02:15 +0200"
            ]
        );
        let s = schedule("Europe/Berlin", Kind::Repeat(repeat(1, Unit::Day, "02:15")));
        let got = show(
            &s.tz,
            s.runs(t("2027-10-30T12:00:00Z"), Some(t("2027-11-01T12:00:00Z"))),
        );
        assert_eq!(got, ["2027-10-31 02:15 +0200", "2027-11-01 02:15 +0100"]);
    }

    #[test]
    fn month_ends_and_the_last_day_including_29_february_2028() {
        let mut r = repeat(1, Unit::Month, "08:00");
        r.day = Some(MonthDay::Day(31));
        let s = schedule("UTC", Kind::Repeat(r.clone()));
        let got = show(&s.tz, s.runs(t("2027-12-01T00:00:00Z"), None).take(4));
        assert_eq!(
            got,
            [
                "2027-12-31 08:00 +0000",
                "2028-01-31 08:00 +0000",
                "2028-02-29 08:00 +0000",
                "2028-03-31 08:00 +0000"
            ]
        );
        r.day = Some(MonthDay::Last);
        r.every = 2;
        let s = schedule("UTC", Kind::Repeat(r));
        let got = show(&s.tz, s.runs(t("2028-01-31T09:00:00Z"), None).take(3));
        // January's run is over at 09:00: the first is February's, then every second month.
        assert_eq!(
            got,
            [
                "2028-02-29 08:00 +0000",
                "2028-04-30 08:00 +0000",
                "2028-06-30 08:00 +0000"
            ]
        );
    }

    #[test]
    fn weekdays_every_second_week_counted_from_the_first_week() {
        let mut r = repeat(2, Unit::Week, "18:30");
        r.weekdays = vec![Weekday::Monday, Weekday::Thursday];
        let s = schedule("Europe/Berlin", Kind::Repeat(r));
        // 2027-01-06 is a Wednesday: the first run is Thursday the 7th; its week is the first.
        let got = show(&s.tz, s.runs(t("2027-01-06T12:00:00Z"), None).take(5));
        assert_eq!(
            got,
            [
                "2027-01-07 18:30 +0100",
                "2027-01-18 18:30 +0100",
                "2027-01-21 18:30 +0100",
                "2027-02-01 18:30 +0100",
                "2027-02-04 18:30 +0100",
            ]
        );
        // Without weekdays: the start's weekday.
        let s = schedule("UTC", Kind::Repeat(repeat(1, Unit::Week, "00:00")));
        let got = show(&s.tz, s.runs(t("2027-01-06T00:00:00Z"), None).take(2));
        assert_eq!(got, ["2027-01-06 00:00 +0000", "2027-01-13 00:00 +0000"]);
    }

    /// `every = 2` days counts from the first run at or after `start`, not from the start's day
    /// (a start after the day's run time: the first run is the next day's).
    #[test]
    fn every_second_day_counts_from_the_first_run() {
        let s = schedule("UTC", Kind::Repeat(repeat(2, Unit::Day, "06:00")));
        let start = "2026-06-10T12:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond();
        let got: Vec<String> = s
            .runs(start, None)
            .take(3)
            .map(|t| Timestamp::from_millisecond(t).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "2026-06-11T06:00:00Z",
                "2026-06-13T06:00:00Z",
                "2026-06-15T06:00:00Z"
            ]
        );
    }

    #[test]
    fn runs_until_and_end_bound_the_runs() {
        let mut s = schedule("UTC", Kind::Repeat(repeat(1, Unit::Day, "09:00")));
        s.runs = Some(3);
        assert_eq!(s.runs(t("2027-01-01T00:00:00Z"), None).count(), 3);
        s.runs = None;
        s.until = Some(t("2027-01-03T09:00:00Z"));
        // `until` is exclusive: the 3rd's run is not.
        assert_eq!(
            show(&s.tz, s.runs(t("2027-01-01T00:00:00Z"), None)),
            ["2027-01-01 09:00 +0000", "2027-01-02 09:00 +0000"]
        );
        let got = s
            .runs(t("2027-01-01T00:00:00Z"), Some(t("2027-01-02T09:00:00Z")))
            .count();
        assert_eq!(got, 1, "end is exclusive too, and the earlier bound wins");
        assert_eq!(
            s.next_after(t("2027-01-01T09:00:00Z"), t("2027-01-01T00:00:00Z"), None),
            Some(t("2027-01-02T09:00:00Z"))
        );
    }

    #[test]
    fn explicit_times_outside_the_campaign_are_dropped_and_hours_are_absolute() {
        let s = schedule(
            "UTC",
            Kind::At(vec![
                t("2027-01-05T00:00:00Z"),
                t("2026-12-01T00:00:00Z"),
                t("2027-01-02T00:00:00Z"),
                t("2027-01-02T00:00:00Z"),
            ]),
        );
        let got: Vec<_> = s
            .runs(t("2027-01-01T00:00:00Z"), Some(t("2027-01-05T00:00:00Z")))
            .collect();
        assert_eq!(got, [t("2027-01-02T00:00:00Z")]);
        // Every 6 hours at :15 from 23:00 EST, across New York's spring gap (07:00Z): 6
        // absolute hours apart.
        let s = schedule(
            "America/New_York",
            Kind::Repeat(repeat(6, Unit::Hour, "00:15")),
        );
        let got: Vec<_> = s.runs(t("2027-03-14T04:00:00Z"), None).take(3).collect();
        assert_eq!(
            got,
            [
                t("2027-03-14T04:15:00Z"),
                t("2027-03-14T10:15:00Z"),
                t("2027-03-14T16:15:00Z")
            ]
        );
    }

    #[test]
    fn an_hourly_repeat_starting_inside_a_fold_takes_its_second_occurrence() {
        // Berlin falls back at 01:00Z on 2027-10-31 (03:00 CEST -> 02:00 CET): 02:45 local
        // happens at 00:45Z and again at 01:45Z. Starting at 01:00Z, the first run is 01:45Z
        // (found in CI by the past-behaviour reference property).
        let s = schedule(
            "Europe/Berlin",
            Kind::Repeat(repeat(1, Unit::Hour, "00:45")),
        );
        let got: Vec<_> = s.runs(t("2027-10-31T01:00:00Z"), None).take(2).collect();
        assert_eq!(got, [t("2027-10-31T01:45:00Z"), t("2027-10-31T02:45:00Z")]);
        // Starting on the minute itself runs at once.
        let got: Vec<_> = s.runs(t("2027-10-31T00:45:00Z"), None).take(2).collect();
        assert_eq!(got, [t("2027-10-31T00:45:00Z"), t("2027-10-31T01:45:00Z")]);
    }
}
