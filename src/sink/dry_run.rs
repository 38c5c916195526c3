//! The dry-run sink: counts audience ops and sends nothing. The decisions themselves are
//! written by the replay (`decisions.jsonl`).

use super::{Action, AudienceOp, AudienceSink, SinkError, SinkReport};

#[derive(Debug, Default)]
pub struct DryRunSink {
    report: SinkReport,
}

impl AudienceSink for DryRunSink {
    fn send(&mut self, op: AudienceOp) -> Result<(), SinkError> {
        match op.action {
            Action::Add => self.report.adds += 1,
            Action::Delete => self.report.deletes += 1,
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<SinkReport, SinkError> {
        Ok(self.report.clone())
    }
}
