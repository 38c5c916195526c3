//! Per-partition watermarks (DESIGN §4): a partition's watermark is
//! `max ts seen − allowed_lateness − 1 ms` (Flink's bounded out-of-orderness); the combined
//! watermark is the minimum over active partitions. A partition that is exhausted (replay) or
//! idle (run) stops holding it back. A partition that has not produced yet holds it at the
//! minimum. When every partition is done, the watermark moves to the largest ts seen.

use crate::event::EventTime;

#[derive(Debug, Clone, Copy)]
struct Part {
    max: Option<EventTime>,
    active: bool,
    exhausted: bool,
}

/// Watermarks of a set of partitions.
#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness: i64,
    parts: Vec<Part>,
    max_seen: Option<EventTime>,
    /// A restored watermark: the combined watermark never goes below it.
    floor: EventTime,
}

impl Watermarks {
    pub fn new(partitions: usize, allowed_lateness_ms: i64) -> Watermarks {
        Watermarks {
            lateness: allowed_lateness_ms,
            parts: vec![
                Part {
                    max: None,
                    active: true,
                    exhausted: false,
                };
                partitions
            ],
            max_seen: None,
            floor: EventTime::MIN,
        }
    }

    /// Restores partition `p`'s largest ts seen (after a restart).
    pub fn restore(&mut self, p: usize, max: Option<EventTime>) {
        self.parts[p].max = max;
        if let Some(m) = max {
            self.max_seen = Some(self.max_seen.map_or(m, |x| x.max(m)));
        }
    }

    /// The watermark never goes below `w` (a restored checkpoint's watermark).
    pub fn set_floor(&mut self, w: EventTime) {
        self.floor = w;
    }

    /// Partition `p`'s largest ts seen.
    pub fn max_of(&self, p: usize) -> Option<EventTime> {
        self.parts[p].max
    }

    /// Whether partition `p` holds the watermark back.
    pub fn is_active(&self, p: usize) -> bool {
        self.parts[p].active
    }

    /// Notes a record of partition `p`; returns whether it is late (`ts <= watermark` before
    /// the record is seen). A late record does not move the watermark.
    pub fn observe(&mut self, p: usize, ts: EventTime) -> bool {
        if ts <= self.current() {
            return true;
        }
        let part = &mut self.parts[p];
        part.active = true;
        part.max = Some(part.max.map_or(ts, |m| m.max(ts)));
        self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
        false
    }

    /// Partition `p` is idle: it no longer holds the watermark back (until its next record).
    pub fn deactivate(&mut self, p: usize) {
        self.parts[p].active = false;
    }

    /// Partition `p` has no more records (the end of a recorded partition).
    pub fn finish(&mut self, p: usize) {
        self.parts[p].active = false;
        self.parts[p].exhausted = true;
    }

    /// The largest ts seen so far.
    pub fn max_seen(&self) -> Option<EventTime> {
        self.max_seen
    }

    /// The combined watermark.
    pub fn current(&self) -> EventTime {
        self.computed().max(self.floor)
    }

    fn computed(&self) -> EventTime {
        let mut wm: Option<EventTime> = None;
        for p in self.parts.iter().filter(|p| p.active) {
            let w = match p.max {
                None => return EventTime::MIN,
                Some(m) => m.saturating_sub(self.lateness).saturating_sub(1),
            };
            wm = Some(wm.map_or(w, |x| x.min(w)));
        }
        match wm {
            Some(w) => w,
            // Everything exhausted: the end of the input.
            None if self.parts.iter().all(|p| p.exhausted) => {
                self.max_seen.unwrap_or(EventTime::MIN)
            }
            // Everything idle: the most advanced partition's own watermark.
            None => self
                .parts
                .iter()
                .filter_map(|p| p.max)
                .max()
                .map_or(EventTime::MIN, |m| {
                    m.saturating_sub(self.lateness).saturating_sub(1)
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness() {
        let mut w = Watermarks::new(1, 5);
        assert_eq!(w.current(), EventTime::MIN);
        assert!(!w.observe(0, 100));
        assert_eq!(w.current(), 94);
        assert!(!w.observe(0, 95), "within lateness");
        assert!(w.observe(0, 94), "ts == watermark is late");
        assert!(!w.observe(0, 100));
        assert_eq!(w.current(), 94, "late or old records do not move it");
    }

    #[test]
    fn minimum_over_active_partitions() {
        let mut w = Watermarks::new(2, 0);
        w.observe(0, 100);
        assert_eq!(w.current(), EventTime::MIN, "partition 1 has not produced");
        w.observe(1, 50);
        assert_eq!(w.current(), 49);
        w.deactivate(1);
        assert_eq!(w.current(), 99);
        w.deactivate(0);
        assert_eq!(
            w.current(),
            99,
            "all idle: the most advanced partition's watermark"
        );
        w.finish(0);
        w.finish(1);
        assert_eq!(w.current(), 100, "end of input: the largest ts seen");
    }
}
