//! Request rate limiting: at most `N` requests in any window of `W` *as TikTok counts them*,
//! at an adaptive rate that never exceeds `tiktok.qps` (`N = ⌊rate⌋, W = 1 s` for `rate ≥ 1`;
//! `N = 1, W = 1/rate` below).
//!
//! A sliding log of the last `N` requests. TikTok counts a request somewhere between our start
//! and our receipt of its answer — when exactly depends on the network and on when this
//! process gets the CPU (12 starts within 973 ms at the server were seen with three runs on
//! two cores, when the log held start times). So a request's entry holds its *answer* time
//! (an unanswered request blocks its slot) and a new request starts only `W` after the answer
//! of the request `N` before it: then any `N + 1` requests are more than `W` apart at the
//! server, however late each one was sent. The price is `N / (W + latency)` instead of `N / W`
//! under a backlog.
//!
//! Why not a token bucket (GCRA, as `governor` implements): with a burst of `qps` it admits up
//! to `2·qps` requests in some 1 s windows, and it knows nothing of answers.
//!
//! The rate adapts as TCP's congestion window does (AIMD, as Vector's adaptive request
//! concurrency): a throttle answer halves it (at most once per window, since the requests in
//! flight meanwhile were sent at the old rate; never below [`MIN_SHARE`] of `qps`), and every
//! window with answers and no throttle adds [`STEP_SHARE`] of `qps` back, up to `qps`.
//! Time is `tokio::time::Instant`, so tests run on paused time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Added to the window, for the granularity of timers.
const MARGIN: Duration = Duration::from_millis(5);

/// The lowest adaptive rate, as a share of the configured one.
pub const MIN_SHARE: f64 = 1.0 / 16.0;

/// What a window of answers without a throttle adds to the rate, as a share of the configured.
pub const STEP_SHARE: f64 = 1.0 / 10.0;

#[derive(Debug, Clone, Copy)]
enum Entry {
    /// Started, not answered yet: its slot stays taken.
    InFlight(u64),
    Answered(Instant),
}

#[derive(Debug)]
struct State {
    /// The rate in force, in `[MIN_SHARE · max_qps, max_qps]`.
    rate: f64,
    log: VecDeque<Entry>,
    next_id: u64,
    last_decrease: Option<Instant>,
    last_increase: Instant,
}

/// A sliding-window request limiter, shared by the sink's workers.
#[derive(Debug)]
pub struct RateLimiter {
    max_qps: f64,
    state: Mutex<State>,
    /// Keeps waiting requests in FIFO order.
    queue: tokio::sync::Mutex<()>,
    answered: Notify,
}

/// One request's slot; dropping it records the answer time (answered, failed or abandoned).
#[must_use = "a request's slot is freed when its permit is dropped, after the answer"]
#[derive(Debug)]
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
    id: u64,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut s = self.limiter.lock();
        if let Some(e) = s
            .log
            .iter_mut()
            .find(|e| matches!(e, Entry::InFlight(id) if *id == self.id))
        {
            *e = Entry::Answered(now);
        }
        drop(s);
        self.limiter.answered.notify_waiters();
    }
}

/// `(N, W)` for a rate.
fn shape(rate: f64) -> (usize, Duration) {
    if rate >= 1.0 {
        (rate.floor() as usize, Duration::from_secs(1))
    } else {
        (1, Duration::from_secs_f64(1.0 / rate))
    }
}

impl RateLimiter {
    /// At most `qps` (> 0) requests a second.
    pub fn new(qps: f64) -> RateLimiter {
        assert!(qps > 0.0 && qps.is_finite(), "qps must be positive");
        RateLimiter {
            max_qps: qps,
            state: Mutex::new(State {
                rate: qps,
                log: VecDeque::new(),
                next_id: 0,
                last_decrease: None,
                last_increase: Instant::now(),
            }),
            queue: tokio::sync::Mutex::new(()),
            answered: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rate in force (requests per second).
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// Waits until a request may start; its slot is held until the permit is dropped.
    pub async fn acquire(&self) -> Permit<'_> {
        let _turn = self.queue.lock().await;
        loop {
            let notified = self.answered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait = {
                let mut s = self.lock();
                let (max, window) = shape(s.rate);
                let now = Instant::now();
                // Entries beyond the current size (the rate was lowered) age out first.
                loop {
                    match s.log.front() {
                        Some(Entry::Answered(t)) if *t + window + MARGIN <= now => {
                            s.log.pop_front();
                        }
                        _ => break,
                    }
                }
                if s.log.len() < max {
                    let id = s.next_id;
                    s.next_id += 1;
                    s.log.push_back(Entry::InFlight(id));
                    return Permit { limiter: self, id };
                }
                match s.log.front().copied() {
                    Some(Entry::Answered(t)) => Some(t + window + MARGIN),
                    // The oldest request has no answer yet: wait for one.
                    _ => None,
                }
            };
            match wait {
                Some(at) => tokio::time::sleep_until(at).await,
                None => notified.await,
            }
        }
    }

    /// TikTok throttled a request: halve the rate (once per window).
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        let (_, window) = shape(s.rate);
        if s.last_decrease.is_some_and(|t| now < t + window) {
            return;
        }
        s.rate = (s.rate / 2.0).max(self.max_qps * MIN_SHARE);
        s.last_decrease = Some(now);
        s.last_increase = now;
    }

    /// TikTok answered a request without throttling it: after a whole window of that, raise
    /// the rate by a step.
    pub fn succeeded(&self) {
        let now = Instant::now();
        let mut s = self.lock();
        let (_, window) = shape(s.rate);
        if s.rate < self.max_qps && now >= s.last_increase + window {
            s.rate = (s.rate + self.max_qps * STEP_SHARE).min(self.max_qps);
            s.last_increase = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// `(start, answer)` of requests through `limiter` by `workers` tasks, each answered
    /// `latency(i)` after its start.
    async fn drive(
        limiter: Arc<RateLimiter>,
        workers: usize,
        each: usize,
        latency: fn(usize) -> Duration,
    ) -> Vec<(Instant, Instant)> {
        let mut tasks = Vec::new();
        for w in 0..workers {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                let mut spans = Vec::new();
                for i in 0..each {
                    let permit = l.acquire().await;
                    let start = Instant::now();
                    tokio::time::sleep(latency(w * each + i)).await;
                    drop(permit);
                    spans.push((start, Instant::now()));
                }
                spans
            }));
        }
        let mut spans = Vec::new();
        for t in tasks {
            spans.extend(t.await.unwrap());
        }
        spans.sort();
        spans
    }

    /// However TikTok places each request within `[start, answer]`, no `n + 1` of them fall
    /// in one second: the `(i + n)`th start is a second after the `i`th answer.
    fn at_most_per_second(spans: &[(Instant, Instant)], n: usize) -> bool {
        spans
            .iter()
            .zip(spans.iter().skip(n))
            .all(|((_, answered), (start, _))| {
                start.duration_since(*answered) >= Duration::from_secs(1)
            })
    }

    #[tokio::test(start_paused = true)]
    async fn never_more_than_qps_in_any_second_at_the_server_and_full_rate_on_backlog() {
        let limiter = Arc::new(RateLimiter::new(10.0));
        let begin = Instant::now();
        let spans = drive(limiter, 4, 25, |_| Duration::ZERO).await;
        assert_eq!(spans.len(), 100);
        assert!(at_most_per_second(&spans, 10));
        // 100 requests at 10/s: 9 full windows after the first burst.
        let took = spans.last().unwrap().0.duration_since(begin);
        assert!(took <= Duration::from_millis(9 * 1005 + 10), "{took:?}");
        assert!(took >= Duration::from_secs(9), "{took:?}");
    }

    /// Answers that take long and vary (a busy CPU, a slow network) would let a log of start
    /// times put 11 requests in one server second; answer times cannot.
    #[tokio::test(start_paused = true)]
    async fn slow_and_uneven_answers_still_keep_the_server_side_rate() {
        let limiter = Arc::new(RateLimiter::new(10.0));
        let spans = drive(limiter, 4, 20, |i| {
            Duration::from_millis([5, 400, 30, 900][i % 4])
        })
        .await;
        assert_eq!(spans.len(), 80);
        assert!(at_most_per_second(&spans, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rates_space_requests() {
        let limiter = RateLimiter::new(0.5);
        let begin = Instant::now();
        drop(limiter.acquire().await);
        drop(limiter.acquire().await);
        assert!(Instant::now().duration_since(begin) >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn throttles_halve_the_rate_and_quiet_windows_bring_it_back() {
        let limiter = RateLimiter::new(16.0);
        limiter.throttled();
        assert_eq!(limiter.rate(), 8.0);
        limiter.throttled();
        assert_eq!(
            limiter.rate(),
            8.0,
            "once per window: the others were sent at the old rate"
        );
        tokio::time::advance(Duration::from_millis(1001)).await;
        for _ in 0..4 {
            limiter.throttled();
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert_eq!(limiter.rate(), 1.0, "never below 1/16 of qps");
        let mut windows = 0;
        while limiter.rate() < 16.0 {
            limiter.succeeded();
            tokio::time::advance(Duration::from_millis(1001)).await;
            windows += 1;
            assert!(windows < 100);
        }
        // +1.6 a window from 1 to 16: 10 windows.
        assert_eq!(windows, 10);
        limiter.succeeded();
        assert_eq!(limiter.rate(), 16.0, "never above qps");
    }
}
