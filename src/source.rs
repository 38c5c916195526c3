//! Sources of records: recorded topics ([`replay`]). A source yields [`SourceItem`]s — a
//! decoded record (or a malformed line) of a partition, or the end of a partition — so the
//! detect stage does not know where records come from. An item borrows from the source until
//! the next one is asked for, so lines are never copied out of the read buffers.

pub mod replay;

use std::borrow::Cow;

use crate::event::decode::Malformed;
use crate::event::recording::Origin;
use crate::event::Record;

/// One item of a source. (`Line` is much larger than `PartitionEnd`, but nearly every item is
/// a line, so boxing it would only add an allocation per record.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum SourceItem<'a> {
    /// A line of partition `partition`: decoded, or the reason it could not be.
    Line {
        partition: usize,
        /// The partition's source, for the dead-letter output (a file path).
        source: &'a str,
        origin: Origin,
        /// The Kafka timestamp the line was recorded with (`kcat -J` envelopes), if any.
        kafka_ts: Option<i64>,
        /// The original bytes, for the dead-letter output.
        raw: Cow<'a, [u8]>,
        record: Result<Record, Malformed>,
    },
    /// Partition `partition` has no more records (replay) or went idle (run).
    PartitionEnd { partition: usize },
}

/// A source of records in arrival order.
pub trait Source {
    /// Number of partitions the items refer to.
    fn partitions(&self) -> usize;
    /// The next item, or `None` at the end of the input.
    fn next_item(&mut self) -> Option<SourceItem<'_>>;
}
