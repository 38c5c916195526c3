//! QPS limits: per app (all tokens together, code 40100) and per advertiser (code 40133).
//!
//! Each limit is a sliding window over the instants of *admitted* requests: a request is
//! admitted when fewer than `capacity` requests were admitted in the `window` before it. For
//! `qps >= 1` the window is 1 s and the capacity `floor(qps)`; for `qps < 1` the capacity is 1
//! and the window `1/qps` seconds (0.5 → one request per 2 s). Throttled requests are not
//! recorded, so a client that backs off regains capacity exactly one window after its oldest
//! admitted request, and a throttled request changes no state (limiter included).
//!
//! Time is passed in (`tokio::time::Instant`), so tests drive it with paused time or plain
//! instants.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Admitted-request instants within the last window.
#[derive(Debug, Clone)]
pub(crate) struct SlidingWindow {
    capacity: usize,
    window: Duration,
    admitted: VecDeque<Instant>,
}

impl SlidingWindow {
    /// `qps` must be finite and > 0 (checked by the caller).
    pub fn per_second(qps: f64) -> SlidingWindow {
        let (capacity, window) = if qps >= 1.0 {
            (qps.floor() as usize, Duration::from_secs(1))
        } else {
            (1, Duration::from_secs_f64(1.0 / qps))
        };
        SlidingWindow {
            capacity,
            window,
            admitted: VecDeque::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&first) = self.admitted.front() {
            if now.saturating_duration_since(first) >= self.window {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
    }

    /// Whether a request at `now` would be admitted; records nothing.
    pub fn has_room(&mut self, now: Instant) -> bool {
        self.expire(now);
        self.admitted.len() < self.capacity
    }

    /// Requests admitted in the window ending at `now`.
    pub fn current(&mut self, now: Instant) -> usize {
        self.expire(now);
        self.admitted.len()
    }

    pub fn record(&mut self, now: Instant) {
        self.admitted.push_back(now);
    }
}

/// Why a request was throttled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Throttled {
    App,
    Advertiser {
        advertiser_id: String,
        current: usize,
        limit: usize,
    },
}

/// The app window plus one window per advertiser.
#[derive(Debug, Clone)]
pub(crate) struct Throttle {
    app: Option<SlidingWindow>,
    advertiser_qps: Option<f64>,
    advertisers: HashMap<String, SlidingWindow>,
}

impl Throttle {
    pub fn new(qps: Option<f64>, advertiser_qps: Option<f64>) -> Throttle {
        Throttle {
            app: qps.map(SlidingWindow::per_second),
            advertiser_qps,
            advertisers: HashMap::new(),
        }
    }

    /// The app-level check alone, made before the body is read (records nothing).
    pub fn check_app(&mut self, now: Instant) -> Result<(), Throttled> {
        match self.app.as_mut().map(|w| w.has_room(now)) {
            Some(false) => Err(Throttled::App),
            _ => Ok(()),
        }
    }

    /// Checks the app and every advertiser; only if all have room records the request in all of
    /// them, so a throttled request leaves every window unchanged.
    pub fn admit(&mut self, now: Instant, advertisers: &[String]) -> Result<(), Throttled> {
        self.check_app(now)?;
        if let Some(qps) = self.advertiser_qps {
            for id in advertisers {
                let w = self
                    .advertisers
                    .entry(id.clone())
                    .or_insert_with(|| SlidingWindow::per_second(qps));
                if !w.has_room(now) {
                    return Err(Throttled::Advertiser {
                        advertiser_id: id.clone(),
                        current: w.current(now),
                        limit: w.capacity(),
                    });
                }
            }
            for id in advertisers {
                if let Some(w) = self.advertisers.get_mut(id) {
                    w.record(now);
                }
            }
        }
        if let Some(w) = &mut self.app {
            w.record(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn window_admits_capacity_then_refills_one_window_after_each_admission() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::per_second(3.0);
        let mut admitted = Vec::new();
        for at in [0, 100, 200, 300, 999, 1000, 1050, 1100, 1200, 1999, 2000] {
            if w.has_room(ms(t0, at)) {
                w.record(ms(t0, at));
                admitted.push(at);
            }
        }
        assert_eq!(admitted, vec![0, 100, 200, 1000, 1100, 1200, 2000]);
    }

    #[test]
    fn fractional_qps_widens_the_window() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::per_second(0.5);
        assert!(w.has_room(t0));
        w.record(t0);
        assert!(!w.has_room(ms(t0, 1999)));
        assert!(w.has_room(ms(t0, 2000)));
    }

    #[test]
    fn throttled_requests_do_not_consume_capacity() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Some(2.0), None);
        assert!(t.admit(t0, &[]).is_ok());
        assert!(t.admit(ms(t0, 10), &[]).is_ok());
        for i in 0..50 {
            assert_eq!(t.admit(ms(t0, 20 + i), &[]), Err(Throttled::App));
        }
        // Had the rejected ones counted, the window would still be full at 1000 ms.
        assert!(t.admit(ms(t0, 1000), &[]).is_ok());
    }

    #[test]
    fn advertiser_limit_is_per_advertiser_and_atomic() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Some(100.0), Some(1.0));
        let a = vec!["1".to_owned()];
        let ab = vec!["2".to_owned(), "1".to_owned()];
        assert!(t.admit(t0, &a).is_ok());
        let err = t.admit(t0, &ab).unwrap_err();
        assert!(
            matches!(err, Throttled::Advertiser { ref advertiser_id, .. } if advertiser_id == "1")
        );
        // Advertiser 2 was not charged by the rejected request.
        assert!(t.admit(t0, &["2".to_owned()]).is_ok());
        assert!(t.admit(ms(t0, 1000), &ab).is_ok());
    }
}
