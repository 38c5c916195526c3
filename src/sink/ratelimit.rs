//! Request rate limiting: at most `N` request starts in any window of `W`, as a sliding log
//! of the last `N` start times (`N = ⌊qps⌋, W = 1 s` for `qps ≥ 1`; `N = 1, W = 1/qps` below).
//!
//! Why not a token bucket (GCRA, as `governor` implements): with a burst of `qps` it admits up
//! to `2·qps` requests in some 1 s windows, and with a burst of 1 it spaces requests evenly but
//! cannot use a quiet period. The log is exact for the contract we need — TikTok counts
//! requests per second — and still lets a backlog go out at the full rate. A small margin
//! absorbs the difference between when we start a request and when TikTok counts it.
//! Time is `tokio::time::Instant`, so tests run on paused time.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Added to the window, for request starts that reach TikTok at slightly different delays.
const MARGIN: Duration = Duration::from_millis(30);

/// A sliding-window request limiter, shared by the sink's workers.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    starts: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// `qps` > 0.
    pub fn new(qps: f64) -> RateLimiter {
        assert!(qps > 0.0 && qps.is_finite(), "qps must be positive");
        let (max, window) = if qps >= 1.0 {
            (qps.floor() as usize, Duration::from_secs(1))
        } else {
            (1, Duration::from_secs_f64(1.0 / qps))
        };
        RateLimiter {
            max,
            window: window + MARGIN,
            starts: Mutex::new(VecDeque::with_capacity(max)),
        }
    }

    /// Waits until a request may start, and records its start.
    pub async fn acquire(&self) {
        let mut starts = self.starts.lock().await;
        if starts.len() >= self.max {
            let oldest = starts.pop_front().expect("non-empty");
            // Holding the lock while waiting keeps waiters in FIFO order.
            tokio::time::sleep_until(oldest + self.window).await;
        }
        starts.push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The most starts in any window of one second.
    fn max_in_any_second(starts: &[Instant]) -> usize {
        let mut best = 0;
        for (i, s) in starts.iter().enumerate() {
            let n = starts[i..]
                .iter()
                .take_while(|t| t.duration_since(*s) < Duration::from_secs(1))
                .count();
            best = best.max(n);
        }
        best
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_qps_in_any_second_and_full_rate_on_backlog() {
        let limiter = std::sync::Arc::new(RateLimiter::new(10.0));
        let begin = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let mut starts = Vec::new();
                for _ in 0..25 {
                    l.acquire().await;
                    starts.push(Instant::now());
                }
                starts
            }));
        }
        let mut starts = Vec::new();
        for t in tasks {
            starts.extend(t.await.unwrap());
        }
        starts.sort();
        assert_eq!(starts.len(), 100);
        assert_eq!(max_in_any_second(&starts), 10);
        // 100 requests at 10/s: 9 full windows after the first burst.
        let took = starts.last().unwrap().duration_since(begin);
        assert!(took <= Duration::from_millis(9 * 1030 + 10), "{took:?}");
        assert!(took >= Duration::from_secs(9), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rates_space_requests() {
        let limiter = RateLimiter::new(0.5);
        let begin = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert!(Instant::now().duration_since(begin) >= Duration::from_secs(2));
    }
}
