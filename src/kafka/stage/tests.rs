//! The runner on rdkafka's MockCluster, with a probe stage: commits cover exactly what the
//! stage made durable, a revocation commits before another member takes over, lost writes stop
//! without a commit, retriable errors do not, and pausing holds records back. The stop flag is
//! the injected shutdown; the stage gets the runner's clock reading with every call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use tokio::time::Instant;

use super::{run, Offsets, Round, Stage, StageError};
use crate::config::duration::HumanDuration;
use crate::config::KafkaSettings;
use crate::kafka::{Lag, LostWrites};

const TOPIC: &str = "in";
const PARTITIONS: i32 = 2;

/// What the probe saw and what it is told to do, shared with the test.
#[derive(Default)]
struct Probe {
    /// Every record taken: `(member, partition, offset)`.
    seen: Mutex<Vec<(usize, i32, i64)>>,
    /// `(member, "assign"/"revoke", partitions)`, in order.
    rebalances: Mutex<Vec<(usize, &'static str, Vec<i32>)>>,
    /// Rounds run, all members.
    rounds: AtomicU64,
    /// Errors the next rounds return, first first.
    faults: Mutex<Vec<StageError>>,
    /// Ask for a pause once this many records were taken (0: never), until `release`.
    pause_at: AtomicU64,
    release: AtomicBool,
    pauses: AtomicU64,
}

struct ProbeStage {
    member: usize,
    probe: Arc<Probe>,
    lag: Lag,
    /// Owned partitions → next offset to consume (what is "durable": everything taken).
    owned: BTreeMap<i32, i64>,
}

impl Stage for ProbeStage {
    const NAME: &'static str = "probe";

    fn lag(&self) -> &Lag {
        &self.lag
    }

    fn assign(&mut self, parts: &[i32]) -> Result<(), StageError> {
        for &p in parts {
            self.owned.entry(p).or_insert(0);
        }
        self.probe
            .rebalances
            .lock()
            .unwrap()
            .push((self.member, "assign", parts.to_vec()));
        Ok(())
    }

    fn durable(&mut self, only: Option<&BTreeSet<i32>>) -> Result<Offsets, StageError> {
        Ok(self
            .owned
            .iter()
            .filter(|(p, o)| only.is_none_or(|only| only.contains(p)) && **o > 0)
            .map(|(&p, &o)| (TOPIC.to_owned(), p, o))
            .collect())
    }

    fn revoked(&mut self, parts: &BTreeSet<i32>) {
        for p in parts {
            self.owned.remove(p);
        }
        self.probe.rebalances.lock().unwrap().push((
            self.member,
            "revoke",
            parts.iter().copied().collect(),
        ));
    }

    fn record(&mut self, m: &BorrowedMessage<'_>, _now: Instant) -> Result<(), StageError> {
        self.owned.insert(m.partition(), m.offset() + 1);
        self.probe
            .seen
            .lock()
            .unwrap()
            .push((self.member, m.partition(), m.offset()));
        Ok(())
    }

    fn round(&mut self, _polled: bool, _now: Instant) -> Result<Round, StageError> {
        self.probe.rounds.fetch_add(1, Ordering::Relaxed);
        let fault = {
            let mut faults = self.probe.faults.lock().unwrap();
            (!faults.is_empty()).then(|| faults.remove(0))
        };
        if let Some(e) = fault {
            return Err(e);
        }
        let at = self.probe.pause_at.load(Ordering::Relaxed);
        let taken = self.probe.seen.lock().unwrap().len() as u64;
        let pause = at > 0 && taken >= at && !self.probe.release.load(Ordering::Relaxed);
        Ok(Round {
            commit: self.durable(None)?,
            pause,
            wait: Duration::from_millis(20),
        })
    }

    fn paused(&mut self) {
        self.probe.pauses.fetch_add(1, Ordering::Relaxed);
    }
}

struct Setup {
    _mock: MockCluster<'static, DefaultProducerContext>,
    k: KafkaSettings,
}

fn setup(records: i64) -> Setup {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(TOPIC, PARTITIONS, 1).unwrap();
    let k = KafkaSettings {
        brokers: mock.bootstrap_servers(),
        group_prefix: "t".into(),
        events_topic: TOPIC.into(),
        profiles_topic: TOPIC.into(),
        topic_prefix: "t".into(),
        partitions: 0,
        replication: 1,
        commit_interval: HumanDuration::parse("1s").unwrap(),
        // The mock coordinator lets a new member in only after the session timeout of the
        // group's earlier one (45 s by default); a short one keeps these tests quick.
        client: vec![
            ("session.timeout.ms".into(), "6000".into()),
            ("heartbeat.interval.ms".into(), "500".into()),
        ],
    };
    let s = Setup { _mock: mock, k };
    produce(&s, 0, records);
    s
}

/// Records `from..to`, alternating partitions.
fn produce(s: &Setup, from: i64, to: i64) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &s.k.brokers)
        .create()
        .unwrap();
    for i in from..to {
        let payload = i.to_string();
        producer
            .send(
                BaseRecord::<(), _>::to(TOPIC)
                    .partition((i % i64::from(PARTITIONS)) as i32)
                    .payload(&payload),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
}

/// A member running in a thread; `stop` is its shutdown.
struct Member {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

fn start(s: &Setup, member: usize, probe: &Arc<Probe>) -> Member {
    let stop = Arc::new(AtomicBool::new(false));
    let stage = ProbeStage {
        member,
        probe: probe.clone(),
        lag: Lag::default(),
        owned: BTreeMap::new(),
    };
    let (k, flag) = (s.k.clone(), stop.clone());
    let thread = std::thread::spawn(move || run(&k, &[TOPIC], stage, &flag));
    Member { stop, thread }
}

impl Member {
    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// Polls `cond` until it holds or 30 s pass (a bound on the wait, not a synchronisation).
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The group's committed offset per partition (`None`: nothing committed).
fn committed(s: &Setup) -> BTreeMap<i32, Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &s.k.brokers)
        .set("group.id", s.k.group("probe"))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let tpl = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    tpl.elements()
        .iter()
        .map(|e| {
            let o = match e.offset() {
                rdkafka::Offset::Offset(o) => Some(o),
                _ => None,
            };
            (e.partition(), o)
        })
        .collect()
}

fn seen(probe: &Probe) -> Vec<(usize, i32, i64)> {
    probe.seen.lock().unwrap().clone()
}

/// The offsets of partition `p` taken (by any member), in the order taken.
fn taken_of(probe: &Probe, p: i32) -> Vec<i64> {
    seen(probe)
        .iter()
        .filter(|(_, q, _)| *q == p)
        .map(|(_, _, o)| *o)
        .collect()
}

#[test]
fn commits_what_the_stage_made_durable_and_stops_on_request() {
    let s = setup(100);
    let probe = Arc::new(Probe::default());
    let m = start(&s, 0, &probe);
    eventually("all records taken", || seen(&probe).len() == 100);
    m.stop().unwrap();
    assert_eq!(
        committed(&s),
        BTreeMap::from([(0, Some(50)), (1, Some(50))])
    );
    // Each record once, in offset order per partition.
    for p in 0..PARTITIONS {
        assert_eq!(taken_of(&probe, p), (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn a_restart_resumes_from_the_commit() {
    let s = setup(40);
    let probe = Arc::new(Probe::default());
    let m = start(&s, 0, &probe);
    eventually("the first records taken", || seen(&probe).len() == 40);
    m.stop().unwrap();
    produce(&s, 40, 60);
    let again = Arc::new(Probe::default());
    let m = start(&s, 1, &again);
    eventually("the new records taken", || seen(&again).len() == 20);
    m.stop().unwrap();
    let mut offsets: Vec<(i32, i64)> = seen(&again).iter().map(|(_, p, o)| (*p, *o)).collect();
    offsets.sort_unstable();
    let want: Vec<(i32, i64)> = (0..PARTITIONS)
        .flat_map(|p| (20..30).map(move |o| (p, o)))
        .collect();
    assert_eq!(
        offsets, want,
        "only records after the commit are read again"
    );
}

#[test]
fn a_revocation_commits_before_the_next_member_takes_over() {
    let s = setup(200);
    let probe = Arc::new(Probe::default());
    let a = start(&s, 0, &probe);
    eventually("member 0 took everything", || seen(&probe).len() == 200);
    let b = start(&s, 1, &probe);
    // Cooperative-sticky: member 0 gives up one partition, member 1 gets it.
    eventually("member 1 was assigned a partition", || {
        probe
            .rebalances
            .lock()
            .unwrap()
            .iter()
            .any(|(m, what, parts)| *m == 1 && *what == "assign" && !parts.is_empty())
    });
    produce(&s, 200, 260);
    eventually("the new records taken", || seen(&probe).len() == 260);
    let rebalances = probe.rebalances.lock().unwrap().clone();
    let revoked: Vec<i32> = rebalances
        .iter()
        .filter(|(m, what, _)| *m == 0 && *what == "revoke")
        .flat_map(|(_, _, parts)| parts.clone())
        .collect();
    assert_eq!(revoked.len(), 1, "{rebalances:?}");
    // Member 1 read the handed-over partition from member 0's commit on: no record twice.
    let taken = seen(&probe);
    let by_1: Vec<i64> = taken
        .iter()
        .filter(|(m, p, _)| *m == 1 && *p == revoked[0])
        .map(|(_, _, o)| *o)
        .collect();
    assert_eq!(by_1, (100..130).collect::<Vec<_>>(), "{taken:?}");
    a.stop().unwrap();
    b.stop().unwrap();
    assert_eq!(
        committed(&s),
        BTreeMap::from([(0, Some(130)), (1, Some(130))])
    );
}

#[test]
fn lost_writes_stop_the_stage_without_committing() {
    let s = setup(30);
    let probe = Arc::new(Probe::default());
    probe
        .faults
        .lock()
        .unwrap()
        .push(StageError::Lost(LostWrites(3)));
    let m = start(&s, 0, &probe);
    // It ends by itself: it is never told to stop.
    let err = m
        .thread
        .join()
        .unwrap()
        .expect_err("lost writes end the stage");
    assert!(
        format!("{err:#}").contains("could not be written"),
        "{err:#}"
    );
    // The final commit is skipped too: the fault was the first round's.
    assert_eq!(committed(&s), BTreeMap::from([(0, None), (1, None)]));
}

#[test]
fn retriable_errors_are_retried_and_fatal_ones_end_the_stage() {
    let s = setup(30);
    let probe = Arc::new(Probe::default());
    probe.faults.lock().unwrap().extend([
        StageError::retry(anyhow::anyhow!("broker away")),
        StageError::retry(anyhow::anyhow!("broker away")),
    ]);
    let m = start(&s, 0, &probe);
    eventually("all records taken", || seen(&probe).len() == 30);
    m.stop().unwrap();
    assert_eq!(
        committed(&s),
        BTreeMap::from([(0, Some(15)), (1, Some(15))])
    );

    let probe = Arc::new(Probe::default());
    probe
        .faults
        .lock()
        .unwrap()
        .push(StageError::fatal(anyhow::anyhow!("restore failed")));
    let m = start(&s, 0, &probe);
    let err = m
        .thread
        .join()
        .unwrap()
        .expect_err("a fatal error ends the stage");
    assert!(format!("{err:#}").contains("restore failed"), "{err:#}");
}

#[test]
fn a_pause_holds_records_back_until_the_stage_resumes() {
    let s = setup(400);
    let probe = Arc::new(Probe::default());
    probe.pause_at.store(10, Ordering::Relaxed);
    let m = start(&s, 0, &probe);
    eventually("paused", || probe.pauses.load(Ordering::Relaxed) > 0);
    let at_pause = seen(&probe).len();
    // Fifty rounds later (each polls), nothing more was delivered.
    let rounds = probe.rounds.load(Ordering::Relaxed);
    eventually("fifty rounds while paused", || {
        probe.rounds.load(Ordering::Relaxed) >= rounds + 50
    });
    assert_eq!(seen(&probe).len(), at_pause, "records arrived while paused");
    probe.release.store(true, Ordering::Relaxed);
    eventually("everything after the resume", || seen(&probe).len() == 400);
    m.stop().unwrap();
    // Nothing skipped or repeated across the pause.
    for p in 0..PARTITIONS {
        assert_eq!(taken_of(&probe, p), (0..200).collect::<Vec<_>>());
    }
}
