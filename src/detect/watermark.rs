//! Per-partition watermarks (DESIGN §4): a partition's watermark is
//! `max ts seen − allowed_lateness − 1 ms` (Flink's bounded out-of-orderness); the combined
//! watermark is the minimum over active partitions. A partition that is exhausted (replay) or
//! idle (run) stops holding it back. A partition that has not produced yet holds it at the
//! minimum. When every partition is done, the watermark moves to the largest ts seen.
//!
//! Cost: every record asks for the combined watermark, so it is kept, not recomputed — a
//! tournament tree of the active partitions' largest ts seen gives it in O(1) and takes an
//! update in O(log partitions) (a recording of 200,000 one-record partitions made the old
//! scan over every partition per record quadratic).

use crate::event::EventTime;

#[derive(Debug, Clone, Copy)]
struct Part {
    max: Option<EventTime>,
    active: bool,
    exhausted: bool,
}

/// The minimum of `n` slots: a complete binary tree over a power-of-two leaf row, each inner
/// node the smaller of its children; [`MinTree::EMPTY`] for a slot that holds nothing.
#[derive(Debug, Clone)]
struct MinTree {
    /// Leaves from `leaves`, the root at 1 (index 0 unused).
    nodes: Vec<EventTime>,
    leaves: usize,
}

impl MinTree {
    const EMPTY: EventTime = EventTime::MAX;

    fn new(n: usize) -> MinTree {
        let leaves = n.max(1).next_power_of_two();
        MinTree {
            nodes: vec![Self::EMPTY; 2 * leaves],
            leaves,
        }
    }

    fn set(&mut self, slot: usize, v: EventTime) {
        let mut i = self.leaves + slot;
        if self.nodes[i] == v {
            return;
        }
        self.nodes[i] = v;
        while i > 1 {
            i /= 2;
            let m = self.nodes[2 * i].min(self.nodes[2 * i + 1]);
            if self.nodes[i] == m {
                break;
            }
            self.nodes[i] = m;
        }
    }

    /// The smallest slot: the root (with one slot, the root is its leaf).
    fn min(&self) -> EventTime {
        self.nodes[1]
    }
}

/// Watermarks of a set of partitions.
#[derive(Debug, Clone)]
pub struct Watermarks {
    lateness: i64,
    parts: Vec<Part>,
    /// Per active partition its largest ts seen (`EventTime::MIN` before its first record).
    active: MinTree,
    /// Per partition `!max` (bitwise not reverses the order without overflow): the largest
    /// ts of any partition, for when every partition is idle.
    all: MinTree,
    active_count: usize,
    exhausted_count: usize,
    max_seen: Option<EventTime>,
    /// A restored watermark: the combined watermark never goes below it.
    floor: EventTime,
}

impl Watermarks {
    pub fn new(partitions: usize, allowed_lateness_ms: i64) -> Watermarks {
        let mut active = MinTree::new(partitions);
        for p in 0..partitions {
            active.set(p, EventTime::MIN);
        }
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
            active,
            all: MinTree::new(partitions),
            active_count: partitions,
            exhausted_count: 0,
            max_seen: None,
            floor: EventTime::MIN,
        }
    }

    /// Partition `p`'s own watermark for a largest ts seen of `max`.
    fn of(&self, max: EventTime) -> EventTime {
        max.saturating_sub(self.lateness).saturating_sub(1)
    }

    /// Puts partition `p`'s state into the trees.
    fn update(&mut self, p: usize) {
        let part = self.parts[p];
        let v = if part.active {
            part.max.unwrap_or(EventTime::MIN)
        } else {
            MinTree::EMPTY
        };
        self.active.set(p, v);
        self.all.set(p, part.max.map_or(MinTree::EMPTY, |m| !m));
    }

    fn set_active(&mut self, p: usize, active: bool) {
        if self.parts[p].active != active {
            self.parts[p].active = active;
            if active {
                self.active_count += 1;
            } else {
                self.active_count -= 1;
            }
        }
    }

    /// Restores partition `p`'s largest ts seen (after a restart).
    pub fn restore(&mut self, p: usize, max: Option<EventTime>) {
        self.parts[p].max = max;
        if let Some(m) = max {
            self.max_seen = Some(self.max_seen.map_or(m, |x| x.max(m)));
        }
        self.update(p);
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
        let current = self.current();
        if ts <= current {
            return true;
        }
        if !self.parts[p].active {
            // Back from idleness: its records may be behind the others' watermark, which
            // the shards have already reached. The combined watermark never goes back
            // (Flink's status valve does the same), so that nothing behind what a shard
            // applied is taken as on time.
            self.floor = self.floor.max(current);
        }
        self.set_active(p, true);
        let part = &mut self.parts[p];
        part.max = Some(part.max.map_or(ts, |m| m.max(ts)));
        self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
        self.update(p);
        false
    }

    /// The watermark is at least `w` from now on (an idle input following the wall clock):
    /// records at or below it are late.
    pub fn raise_floor(&mut self, w: EventTime) {
        self.floor = self.floor.max(w);
    }

    /// Partition `p` is idle: it no longer holds the watermark back (until its next record).
    pub fn deactivate(&mut self, p: usize) {
        self.set_active(p, false);
        self.update(p);
    }

    /// Partition `p` has no more records (the end of a recorded partition).
    pub fn finish(&mut self, p: usize) {
        self.set_active(p, false);
        if !self.parts[p].exhausted {
            self.parts[p].exhausted = true;
            self.exhausted_count += 1;
        }
        self.update(p);
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
        if self.active_count > 0 {
            let min = self.active.min();
            return if min == EventTime::MIN {
                // An active partition that has not produced yet.
                EventTime::MIN
            } else {
                self.of(min)
            };
        }
        if self.exhausted_count == self.parts.len() {
            // Everything exhausted: the end of the input.
            return self.max_seen.unwrap_or(EventTime::MIN);
        }
        // Everything idle: the most advanced partition's own watermark.
        match self.all.min() {
            MinTree::EMPTY => EventTime::MIN,
            not_max => self.of(!not_max),
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

    /// The watermarks as they were computed before the tree: a scan over every partition.
    /// An input back from idleness with records behind the others' watermark: the
    /// watermark stays where it was, and those records are late, not applied behind what
    /// the shard has applied already.
    #[test]
    fn a_partition_back_from_idleness_does_not_take_the_watermark_back() {
        let mut w = Watermarks::new(2, 10);
        assert!(!w.observe(0, 100));
        assert!(!w.observe(1, 50));
        assert_eq!(w.current(), 39);
        w.deactivate(1);
        assert_eq!(w.current(), 89, "partition 1 idle");
        assert!(!w.observe(1, 95), "ahead of the watermark: on time");
        assert_eq!(w.current(), 89, "not back to 95 - 11");
        assert!(w.observe(0, 85), "behind it: late");
        assert!(!w.observe(0, 120));
        assert!(!w.observe(1, 130));
        assert_eq!(w.current(), 109, "both active again: the minimum");
    }

    #[derive(Debug, Clone)]
    struct Scan {
        lateness: i64,
        parts: Vec<Part>,
        max_seen: Option<EventTime>,
        floor: EventTime,
    }

    impl Scan {
        fn new(partitions: usize, lateness: i64) -> Scan {
            let part = Part {
                max: None,
                active: true,
                exhausted: false,
            };
            Scan {
                lateness,
                parts: vec![part; partitions],
                max_seen: None,
                floor: EventTime::MIN,
            }
        }

        fn observe(&mut self, p: usize, ts: EventTime) -> bool {
            let current = self.current();
            if ts <= current {
                return true;
            }
            if !self.parts[p].active {
                self.floor = self.floor.max(current);
            }
            let part = &mut self.parts[p];
            part.active = true;
            part.max = Some(part.max.map_or(ts, |m| m.max(ts)));
            self.max_seen = Some(self.max_seen.map_or(ts, |m| m.max(ts)));
            false
        }

        fn restore(&mut self, p: usize, max: Option<EventTime>) {
            self.parts[p].max = max;
            if let Some(m) = max {
                self.max_seen = Some(self.max_seen.map_or(m, |x| x.max(m)));
            }
        }

        fn current(&self) -> EventTime {
            let wm = |m: EventTime| m.saturating_sub(self.lateness).saturating_sub(1);
            let mut min: Option<EventTime> = None;
            for p in self.parts.iter().filter(|p| p.active) {
                let w = match p.max {
                    None => return self.floor,
                    Some(m) => wm(m),
                };
                min = Some(min.map_or(w, |x| x.min(w)));
            }
            let computed = match min {
                Some(w) => w,
                None if self.parts.iter().all(|p| p.exhausted) => {
                    self.max_seen.unwrap_or(EventTime::MIN)
                }
                None => self
                    .parts
                    .iter()
                    .filter_map(|p| p.max)
                    .max()
                    .map_or(EventTime::MIN, wm),
            };
            computed.max(self.floor)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Observe(usize, EventTime),
        Deactivate(usize),
        Finish(usize),
        Restore(usize, Option<EventTime>),
        Floor(EventTime),
    }

    fn op(partitions: usize) -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let p = 0..partitions;
        let ts = prop_oneof![
            8 => 0..1_000i64,
            1 => Just(EventTime::MIN),
            1 => Just(EventTime::MAX),
        ];
        prop_oneof![
            20 => (p.clone(), ts.clone()).prop_map(|(p, t)| Op::Observe(p, t)),
            2 => p.clone().prop_map(Op::Deactivate),
            2 => p.clone().prop_map(Op::Finish),
            1 => (p, proptest::option::of(ts)).prop_map(|(p, t)| Op::Restore(p, t)),
            1 => (0..500i64).prop_map(Op::Floor),
        ]
    }

    fn layout() -> impl proptest::strategy::Strategy<Value = (usize, i64, Vec<Op>)> {
        use proptest::prelude::*;
        (0..40usize, 0..20i64).prop_flat_map(|(n, lateness)| {
            let ops = if n == 0 {
                Just(Vec::new()).boxed()
            } else {
                proptest::collection::vec(op(n), 0..300).boxed()
            };
            (Just(n), Just(lateness), ops)
        })
    }

    proptest::proptest! {
        /// Any partition layout and any sequence of records, idle marks, ends and restores:
        /// the same lateness verdicts and the same watermark after every step as the scan.
        #[test]
        fn the_tree_agrees_with_a_scan_over_every_partition((n, lateness, ops) in layout()) {
            let mut tree = Watermarks::new(n, lateness);
            let mut scan = Scan::new(n, lateness);
            proptest::prop_assert_eq!(tree.current(), scan.current());
            for op in ops {
                let before = tree.current();
                match op {
                    Op::Observe(p, ts) => {
                        proptest::prop_assert_eq!(tree.observe(p, ts), scan.observe(p, ts));
                    }
                    Op::Deactivate(p) => {
                        tree.deactivate(p);
                        scan.parts[p].active = false;
                    }
                    Op::Finish(p) => {
                        tree.finish(p);
                        scan.parts[p].active = false;
                        scan.parts[p].exhausted = true;
                    }
                    Op::Restore(p, max) => {
                        tree.restore(p, max);
                        scan.restore(p, max);
                    }
                    Op::Floor(w) => {
                        tree.set_floor(w);
                        scan.floor = w;
                    }
                }
                proptest::prop_assert_eq!(tree.current(), scan.current(), "after {:?}", op);
                // Only a restart's restore sets it anew.
                if !matches!(op, Op::Restore(..) | Op::Floor(_)) {
                    proptest::prop_assert!(tree.current() >= before, "went back after {:?}", op);
                }
                proptest::prop_assert_eq!(tree.max_seen(), scan.max_seen);
            }
        }
    }
}
