//! The checkpoint writer: a checkpoint's records written in their order on a thread of
//! their own, so that detect goes on consuming while the broker acknowledges them.
//!
//! A checkpoint of a busy partition writes hundreds of thousands of changed users, and its
//! steps each wait for the broker: the records sent before it (the qualifications its state
//! reflects) must be written before its snapshots go, the snapshots before its checkpoint
//! records. Done on the detect thread, a checkpoint stood consumption still for 0.5–1.2 s at
//! 1 M users (`cargo bench --bench kafka`). Detect now only encodes: it seals the producer's
//! epoch ([`crate::kafka::DeliveryGuard::seal`]) and puts the checkpoint's watermark markers,
//! snapshots (one buffer per partition, [`Batch`]) and checkpoint records in a [`Job`]. The
//! writer, for each job in turn:
//!
//! 1. waits until every record of that epoch (and of the previous job's checkpoint
//!    records) is written;
//! 2. sends the watermark markers to every `…qualified` partition, and the snapshots;
//! 3. waits until those are written, then sends the checkpoint records;
//! 4. reports the epoch sealed after them: once it is written, detect commits the job's
//!    offsets.
//!
//! At most one job is with the writer: a checkpoint falling due while it is busy waits for
//! a later round (its changes stay marked), and a revocation and the way out wait for it
//! ([`Writer::settle`]). So the changelog holds each user's snapshots in checkpoint order,
//! each checkpoint record after its snapshots, and no snapshot that reflects an output that
//! could still be lost — as when detect wrote them itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rdkafka::producer::Producer as _;

use crate::kafka::wire::{CHECKPOINT_KEY, WATERMARK_KEY};
use crate::kafka::{LostWrites, StageProducer};

/// One partition's snapshots of a checkpoint: keys and values back to back in one buffer.
#[derive(Debug, Default)]
pub struct Batch {
    partition: i32,
    buf: Vec<u8>,
    /// Per user: the end of its key in `buf` and the end of its value (`None`: a tombstone).
    ends: Vec<(usize, Option<usize>)>,
}

impl Batch {
    /// Adds a user's snapshot (`None`: a tombstone: the user has no state left).
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.buf.extend_from_slice(key);
        let key_end = self.buf.len();
        let value_end = value.map(|v| {
            self.buf.extend_from_slice(v);
            self.buf.len()
        });
        self.ends.push((key_end, value_end));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// The snapshots in the order they were pushed.
    fn entries(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let key = &self.buf[start..key_end];
            let value = value_end.map(|end| &self.buf[key_end..end]);
            start = value_end.unwrap_or(key_end);
            (key, value)
        })
    }
}

/// A checkpoint's records, in the order they are written.
#[derive(Debug, Default)]
pub struct Job {
    /// The epoch sealed when the checkpoint was taken: its records wait until every record
    /// sent before (of this epoch or earlier) is written.
    pub outputs: u64,
    /// Watermark markers: each value goes to every `…qualified` partition.
    pub markers: Vec<Vec<u8>>,
    pub batches: Vec<Batch>,
    /// Checkpoint records: `(changelog partition, value)`.
    pub marks: Vec<(i32, Vec<u8>)>,
}

/// Where the writer writes: its producer (shared with detect) and topics.
pub struct Topics {
    pub changelog: String,
    pub qualified: String,
    pub qualified_partitions: i32,
}

/// What the writer reports for a job: the epoch sealed after its checkpoint records, and
/// the job's buffers for reuse; or the records the producer lost.
type Done = Result<(u64, Vec<Batch>), LostWrites>;

/// The writer thread of one detect worker.
pub struct Writer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    /// Whether a job was handed over and not reported back yet.
    busy: bool,
    /// Buffers of written batches, for the next checkpoint.
    spare: Vec<Batch>,
    /// Set when the writer is dropped: the thread stops at its next record or wait.
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Why a job did not get through.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Lost(#[from] LostWrites),
    /// The writer thread stopped (it panicked): nothing it was given can be taken as sent.
    #[error("the checkpoint writer thread stopped")]
    Gone,
}

impl Writer {
    /// Starts the writer of one detect worker (`worker` names its thread).
    pub fn start(producer: Arc<StageProducer>, topics: Topics, worker: usize) -> Writer {
        let (jobs, inbox) = crossbeam_channel::bounded::<Job>(1);
        let (outbox, done) = crossbeam_channel::bounded::<Done>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("checkpoint-{worker}"))
            .spawn(move || {
                let mut last_marks = 0;
                for job in inbox {
                    let Some(done) = write(&producer, &topics, job, &mut last_marks, &stopping)
                    else {
                        return;
                    };
                    let failed = done.is_err();
                    if outbox.send(done).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawning the checkpoint writer");
        Writer {
            jobs: Some(jobs),
            done,
            busy: false,
            spare: Vec::new(),
            stop,
            thread: Some(thread),
        }
    }

    /// An empty batch for `partition` (a written one's buffers, when there is one).
    pub fn batch(&mut self, partition: i32) -> Batch {
        let mut b = self.spare.pop().unwrap_or_default();
        b.partition = partition;
        b.buf.clear();
        b.ends.clear();
        b
    }

    /// Gives a checkpoint to the writer thread. The caller has made sure the previous one
    /// is done ([`Writer::busy`], [`Writer::settle`]).
    pub fn hand_over(&mut self, job: Job) -> Result<(), WriteError> {
        debug_assert!(!self.busy, "one checkpoint with the writer at a time");
        let jobs = self.jobs.as_ref().ok_or(WriteError::Gone)?;
        jobs.send(job).map_err(|_| WriteError::Gone)?;
        self.busy = true;
        Ok(())
    }

    /// Whether a checkpoint is still with the writer.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// The epoch sealed after the checkpoint records of the job with the writer, once they
    /// are sent; `None` while they are not (or no job is with the writer).
    pub fn finished(&mut self) -> Result<Option<u64>, WriteError> {
        if !self.busy {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(done) => self.returned(done).map(Some),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(WriteError::Gone),
        }
    }

    /// Waits until the job with the writer (if any) is done: as [`Writer::finished`].
    pub fn settle(&mut self) -> Result<Option<u64>, WriteError> {
        if !self.busy {
            return Ok(None);
        }
        let done = self.done.recv().map_err(|_| WriteError::Gone)?;
        self.returned(done).map(Some)
    }

    fn returned(&mut self, done: Done) -> Result<u64, WriteError> {
        self.busy = false;
        let (epoch, batches) = done?;
        self.spare.extend(batches);
        Ok(epoch)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // What it has not sent yet is dropped, as librdkafka's queue is when the producer
        // goes: records after the last checkpoint record count for nothing.
        self.stop.store(true, Ordering::Relaxed);
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes one job (see the module doc); `None` when told to stop.
fn write(
    producer: &StageProducer,
    topics: &Topics,
    job: Job,
    last_marks: &mut u64,
    stop: &AtomicBool,
) -> Option<Done> {
    let guard = producer.context();
    let written = |epoch: u64| -> Option<Result<(), LostWrites>> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            match guard.written_through(epoch) {
                Ok(true) => return Some(Ok(())),
                Err(e) => return Some(Err(e)),
                // librdkafka acknowledges in batches (linger.ms 20): a millisecond is fine.
                Ok(false) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    };
    if let Err(e) = written(job.outputs.max(*last_marks))? {
        return Some(Err(e));
    }
    for marker in &job.markers {
        for q in 0..topics.qualified_partitions {
            crate::kafka::send(
                producer,
                &topics.qualified,
                Some(q),
                Some(WATERMARK_KEY),
                Some(marker),
                None,
            );
        }
    }
    for batch in &job.batches {
        for (key, value) in batch.entries() {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let p = Some(batch.partition);
            crate::kafka::send(producer, &topics.changelog, p, Some(key), value, None);
        }
    }
    if let Err(e) = written(guard.seal())? {
        return Some(Err(e));
    }
    for (p, value) in &job.marks {
        let key = Some(CHECKPOINT_KEY);
        crate::kafka::send(
            producer,
            &topics.changelog,
            Some(*p),
            key,
            Some(value),
            None,
        );
    }
    *last_marks = guard.seal();
    Some(Ok((*last_marks, job.batches)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gives_back_its_snapshots_and_tombstones_in_order() {
        let mut b = Batch::default();
        b.push(b"u1", Some(b"state one"));
        b.push(b"u2", None);
        b.push(b"", Some(b""));
        b.push(b"u3", Some(b"3"));
        let got: Vec<_> = b.entries().collect();
        assert_eq!(
            got,
            vec![
                (&b"u1"[..], Some(&b"state one"[..])),
                (&b"u2"[..], None),
                (&b""[..], Some(&b""[..])),
                (&b"u3"[..], Some(&b"3"[..])),
            ]
        );
        assert_eq!(b.len(), 4);
    }
}
