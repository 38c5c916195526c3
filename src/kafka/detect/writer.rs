//! The changelog writer: a checkpoint's snapshots handed to librdkafka on a thread of their
//! own, so that detect goes on consuming while they are queued.
//!
//! A checkpoint of a busy partition writes hundreds of thousands of changed users. Encoding
//! them is quick; handing each to librdkafka (a copy, a queue lock, the delivery
//! bookkeeping) took the detect thread 0.5–1 s per checkpoint at 1 M users, and consumption
//! stood still meanwhile. Detect now encodes the snapshots into one buffer per partition
//! ([`Batch`]) and gives them to the writer; the writer sends them in order and then seals
//! the producer's epoch ([`super::super::DeliveryGuard::seal`]): the epoch whose records must
//! be written before the checkpoint's next step.
//!
//! At most one checkpoint is with the writer: the next checkpoint, a revocation and the way
//! out first wait for it ([`Writer::settle`]), so the order of the changelog (a user's
//! snapshots in checkpoint order, a checkpoint record after its snapshots) is the order in
//! which detect took them, as before.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rdkafka::producer::Producer as _;

use crate::kafka::StageProducer;

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

/// A checkpoint's batches, and (on the way back) the epoch sealed after them.
struct Job {
    batches: Vec<Batch>,
    epoch: u64,
}

/// The writer thread of one detect worker, and its producer.
pub struct Writer {
    jobs: Option<Sender<Job>>,
    done: Receiver<Job>,
    /// Jobs handed over and not reported back yet (0 or 1).
    pending: usize,
    /// Buffers of written batches, for the next checkpoint.
    spare: Vec<Batch>,
    /// Set when the writer is dropped: the thread stops at its next record.
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The writer thread stopped (it panicked): nothing it was given can be taken as sent.
#[derive(Debug, thiserror::Error)]
#[error("the changelog writer thread stopped")]
pub struct WriterGone;

impl Writer {
    /// Starts the writer of `topic`'s snapshots through `producer`; `worker` names its thread.
    pub fn start(producer: Arc<StageProducer>, topic: String, worker: usize) -> Writer {
        let (jobs, inbox) = crossbeam_channel::bounded::<Job>(1);
        let (outbox, done) = crossbeam_channel::bounded::<Job>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("changelog-{worker}"))
            .spawn(move || {
                for mut job in inbox {
                    for batch in &job.batches {
                        for (key, value) in batch.entries() {
                            if stopping.load(Ordering::Relaxed) {
                                return;
                            }
                            crate::kafka::send(
                                &producer,
                                &topic,
                                Some(batch.partition),
                                Some(key),
                                value,
                                None,
                            );
                        }
                    }
                    job.epoch = producer.context().seal();
                    if outbox.send(job).is_err() {
                        return;
                    }
                }
            })
            .expect("spawning the changelog writer");
        Writer {
            jobs: Some(jobs),
            done,
            pending: 0,
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

    /// Keeps the buffers of batches that were not handed over.
    pub fn recycle(&mut self, batches: Vec<Batch>) {
        self.spare.extend(batches);
    }

    /// Gives a checkpoint's batches to the writer thread. The caller has settled the
    /// previous one ([`Writer::settle`]).
    pub fn hand_over(&mut self, batches: Vec<Batch>) -> Result<(), WriterGone> {
        debug_assert_eq!(self.pending, 0, "one checkpoint with the writer at a time");
        let jobs = self.jobs.as_ref().ok_or(WriterGone)?;
        jobs.send(Job { batches, epoch: 0 })
            .map_err(|_| WriterGone)?;
        self.pending += 1;
        Ok(())
    }

    /// The epoch sealed after the checkpoint with the writer, once every one of its
    /// snapshots is with librdkafka; `None` while it is not (or none is with the writer).
    pub fn finished(&mut self) -> Result<Option<u64>, WriterGone> {
        if self.pending == 0 {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(job) => Ok(Some(self.returned(job))),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(WriterGone),
        }
    }

    /// Waits until the checkpoint with the writer (if any) is with librdkafka: its epoch.
    pub fn settle(&mut self) -> Result<Option<u64>, WriterGone> {
        if self.pending == 0 {
            return Ok(None);
        }
        let job = self.done.recv().map_err(|_| WriterGone)?;
        Ok(Some(self.returned(job)))
    }

    fn returned(&mut self, job: Job) -> u64 {
        self.pending -= 1;
        let epoch = job.epoch;
        self.spare.extend(job.batches);
        epoch
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // What it has not handed over yet is dropped, as librdkafka's queue is when the
        // producer goes: snapshots after the last checkpoint record count for nothing.
        self.stop.store(true, Ordering::Relaxed);
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
