//! The wall clock, injected where it is read: `run`'s gauges ("now minus the watermark") and
//! replay's `engine.max_future` check of lines recorded without a Kafka timestamp.

/// A wall clock.
pub trait WallClock: Send + Sync + std::fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> i64 {
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }
}
