//! Audience sinks: where decisions become audience membership changes.
//!
//! The activate stage turns `exported` decisions into [`Action::Add`] and `removed` decisions
//! into [`Action::Delete`] ops; a sink delivers them. [`dry_run::DryRunSink`] only counts (the
//! replay default); the TikTok sink (Segment API) plugs in behind the same trait.

pub mod audiences;
pub mod batch;
pub mod dry_run;
pub mod metrics;
pub mod ratelimit;
pub mod replay;
pub mod retry;
pub mod service;
pub mod tiktok;

pub use crate::model::{Action, AudienceOp};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink not available: {0}")]
    Unavailable(String),
    /// Some users could not be delivered (refused for good, or retried for `tiktok.retry_for`);
    /// the rest was, as `report` says.
    #[error("TikTok refused {} user(s) for good; they are listed in {path}", .report.failed)]
    Failed { report: SinkReport, path: String },
    #[error(transparent)]
    Audience(#[from] audiences::AudienceError),
    #[error(transparent)]
    Client(#[from] tiktok::ClientError),
}

/// What a sink did, for the replay report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkReport {
    /// Users acknowledged as added / deleted.
    pub adds: u64,
    pub deletes: u64,
    /// Requests sent (retries included).
    pub requests: u64,
    pub retries: u64,
    /// Users refused for good (kept, reported).
    pub failed: u64,
}

/// Delivers audience ops. Ops of one campaign arrive in decision order.
pub trait AudienceSink {
    fn send(&mut self, op: AudienceOp) -> Result<(), SinkError>;
    /// Delivers everything still buffered.
    fn finish(&mut self) -> Result<SinkReport, SinkError>;
    /// After [`finish`](Self::finish): each campaign's audience size as TikTok reports it
    /// (`None`: not known, as in a dry run, or TikTok did not answer).
    fn audience_sizes(&mut self) -> Vec<Option<u64>> {
        Vec::new()
    }
}
