//! Deterministic crash simulation of stream runs (docs/DESIGN.md, "Exactly once"), in the spirit
//! of FoundationDB's and TigerBeetle's simulators.
//!
//! A history is a function of its seed: a stream whose shards split and merge between runs, with
//! good, bad and KPL-aggregated records whose event times mostly move forward and sometimes jump
//! back; settings (hourly, daily and column-value templates, size, row-count, age and memory-budget
//! flushes with injected time, hour markers, processing time, multipart uploads); and a sequence of
//! runs, each on a fresh processing side and writer, each killed after a random number of durable
//! writes to an in-memory object store ([`store::Crashing`]) and restarted from what the store
//! holds. The shard readers are played by this driver, one event at a time, in an order drawn from
//! the seed, through the same lineage and start rules as the real coordinator. After the last run
//! the lake is compared with the stream record by record ([`check`]).
//!
//! `cargo test --lib sim` runs the CI histories. `DDB_LAKE_SIM_SEED=N` replays one history (a
//! failing one prints its seed); `DDB_LAKE_SIM_HISTORIES=1000000 cargo test --release --lib
//! sim::tests::histories -- --nocapture` runs a million (README, "Exactly once").

mod check;
mod model;
mod regress;
mod snapshots;
mod store;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::stream::{begin, Begun, Event, Processor};
use super::{Clock, PipelineError};
use crate::buffer::FlushPolicy;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::config::{ConfigFile, PartitionTime, Settings};
use crate::kinesis::{lineage, start_position, Shard, ShardEvent, Start, StartAt};
use crate::store::Location;
use crate::summary::Counters;
use check::Report;
use model::{Flavor, Stream};
use store::Crashing;

/// The stream's name, and where its checkpoint lives in the lake.
const STREAM: &str = "sim";
const CHECKPOINT: &str = "_ddb_lake/checkpoints/sim.json";
/// The filter some histories run with: blue rows are filtered (counted, not written).
pub(super) const NOT_BLUE: &str =
    r#"{"dynamodb": {"NewImage": {"color": {"S": [{"anything-but": "blue"}]}}}}"#;
/// 2026-11-20T08:00:00Z.
const START_MS: i64 = 1_795_680_000_000;

/// Injected time: the driver moves it; nothing sleeps. Each run (each process) has its own
/// monotonic clock, starting at 0; its wall clock starts `start_ms` after [`START_MS`].
pub(super) struct SimClock {
    ms: AtomicU64,
    start_ms: i64,
}

impl SimClock {
    fn new() -> Self {
        Self::at(0)
    }

    fn at(start_ms: i64) -> Self {
        SimClock {
            ms: AtomicU64::new(0),
            start_ms,
        }
    }

    fn advance(&self, ms: u64) {
        self.ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.ms.load(Ordering::SeqCst)
    }
    fn now_utc_us(&self) -> i64 {
        (START_MS + self.start_ms + self.now_ms() as i64) * 1000
    }
}

/// The partition layouts a history can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    Hourly,
    Daily,
    /// Column values only: `{table}/color={color}`.
    Color,
}

impl Layout {
    fn template(self) -> &'static str {
        match self {
            Layout::Hourly => "{table}/{YYYY}/{MM}/{DD}/{HH}",
            Layout::Daily => "{table}/{YYYY}/{MM}/{DD}",
            Layout::Color => "{table}/color={color}",
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every shard read to its end or tip, everything written.
    Finished { files: u64, records: u64 },
    /// Killed after its write budget.
    Crashed,
}

/// One seeded history.
pub(super) struct History {
    pub(super) seed: u64,
    rng: ChaCha8Rng,
    pub(super) settings: Settings,
    pub(super) layout: Layout,
    stream: Stream,
    /// The durable state every run of the history shares.
    lake: Arc<InMemory>,
    rt: Arc<tokio::runtime::Runtime>,
    /// Where shards without a checkpoint start: from their start, or at an arrival time.
    pub(super) start: Start,
    /// Every version written of the hour markers and their manifests, in order.
    pub(super) markers: Arc<std::sync::Mutex<Vec<(String, bytes::Bytes)>>>,
    /// Whether the stream grows while runs read (not in the final, checking runs).
    growing: bool,
    pub(super) runs: u64,
    pub(super) crashes: u64,
    pub(super) writes: u64,
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .expect("a runtime"),
    )
}

/// Settings drawn from the seed.
fn settings(rng: &mut ChaCha8Rng) -> (Settings, Layout) {
    let layout = match rng.random_range(0..4) {
        0 => Layout::Daily,
        1 => Layout::Color,
        _ => Layout::Hourly,
    };
    let mut c = ConfigFile::default();
    c.output.url = Some("memory://lake".into());
    c.output.template = Some(layout.template().into());
    if layout == Layout::Hourly && rng.random_ratio(1, 2) {
        c.markers.enabled = true;
        c.markers.allowed_lateness = format!("{}m", rng.random_range(0..30));
    }
    let mut s = c.validate().expect("valid settings");
    // The protocol is the subject here, not compression (zstd contexts dominated the profile).
    s.encode.codec = crate::encode::Codec::Snappy;
    if rng.random_ratio(1, 4) {
        s.partition_time = PartitionTime::Processing;
    }
    const BIG: usize = usize::MAX / 4;
    s.flush = FlushPolicy {
        max_bytes: if rng.random_ratio(1, 3) {
            rng.random_range(20_000..120_000)
        } else {
            BIG
        },
        max_records: rng.random_range(2..40),
        max_age_ms: rng
            .random_ratio(2, 3)
            .then(|| rng.random_range(1_000..60_000)),
        memory_budget: if rng.random_ratio(1, 3) {
            rng.random_range(30_000..200_000)
        } else {
            BIG
        },
    };
    if rng.random_ratio(1, 3) {
        // Data files above this go through the multipart path.
        s.multipart_threshold = 4096;
        // One at a time: concurrent multipart uploads finish in the order the runtime's threads
        // happen to take, and a history must replay from its seed. (Single puts to the in-memory
        // store finish as they start, in the order sent, so the other histories write
        // concurrently; `writer_tests` and the real crash tests cover overlapping uploads.)
        s.concurrent_writes = 1;
    }
    (s, layout)
}

impl History {
    fn new(seed: u64, rt: Arc<tokio::runtime::Runtime>) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (settings, layout) = settings(&mut rng);
        // Drawn apart from the history's own generator, so that a seed's Kinesis history is
        // the one it was before these draws existed.
        let mut side = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_f1a7_0d0b_0001);
        let flavor = if side.random_ratio(1, 3) {
            Flavor::DynamoDb
        } else {
            Flavor::Kinesis
        };
        let mut settings = settings;
        // Half the histories with hour markers compact their hours, into files small enough
        // that an hour makes several.
        if settings.markers.is_some() && side.random_ratio(1, 2) {
            settings.compact = Some(side.random_range(2_000..40_000));
        }
        if side.random_ratio(1, 4) {
            settings.filter =
                crate::filter::Filter::new(&[], &[], &[NOT_BLUE.into()]).expect("a valid pattern");
        }
        let shards = rng.random_range(1..=3);
        let mut stream = Stream::new(&mut rng, shards, START_MS, flavor);
        let n = rng.random_range(5..60);
        stream.put(&mut rng, n);
        // Now and then the shards start at a time: records that arrived before it are not read.
        let start = if rng.random_ratio(1, 5) {
            let e = &stream.expected[rng.random_range(0..stream.expected.len())];
            Start::AtTimestamp(e.arrival_ms)
        } else {
            Start::TrimHorizon
        };
        History {
            start,
            markers: Arc::default(),
            growing: true,
            seed,
            rng,
            settings,
            layout,
            stream,
            lake: Arc::new(InMemory::new()),
            rt,
            runs: 0,
            crashes: 0,
            writes: 0,
        }
    }

    /// Crashing runs with the stream changing between them, then clean runs; checks the lake.
    fn play(&mut self) -> Result<Report, String> {
        let crashing = self.rng.random_range(1..8);
        for _ in 0..crashing {
            let budget = self.rng.random_range(0..30);
            let stop_early = self.rng.random_ratio(1, 3);
            self.run(Some(budget), stop_early)?;
            self.stream.evolve(&mut self.rng);
        }
        // A clean run reads everything and re-creates whatever is pending.
        self.growing = false;
        self.run(None, false)?;
        let report = check::check(self)?;
        // And a run after it finds nothing to do.
        match self.run(None, false)? {
            End::Finished {
                files: 0,
                records: 0,
            } => Ok(report),
            other => Err(format!("a run after everything was written did {other:?}")),
        }
    }

    fn location(&self, store: Arc<Crashing>) -> Location {
        Location {
            store,
            prefix: Path::default(),
            url: "memory://lake".into(),
            // Objects above the multipart threshold take the staged-copy path, as on S3.
            s3: true,
        }
    }

    /// One run, killed after `budget` durable writes (`None`: never); `stop_early` stops it (as a
    /// consumer's shutdown) after a random number of events, with its final flush.
    fn run(&mut self, budget: Option<u64>, stop_early: bool) -> Result<End, String> {
        self.runs += 1;
        // How far a run gets before it notices its crash depends on thread timing, so it draws
        // from a generator of its own (and has a clock of its own): what later runs draw stays
        // a function of the seed.
        let mut rng = ChaCha8Rng::seed_from_u64(self.rng.random());
        let clock = SimClock::at(self.runs as i64 * 3_600_000);
        let store =
            Arc::new(Crashing::new(self.lake.clone(), budget).logging(self.markers.clone()));
        let output = self.location(store.clone());
        let cp_store = CheckpointStore::at(output.clone(), CHECKPOINT, true);
        let counters = Arc::new(Counters::default());
        let begun = self.rt.block_on(begin(
            &self.settings,
            STREAM,
            output,
            cp_store,
            counters.clone(),
            |_| Ok(()),
        ));
        let Begun {
            tables,
            checkpoint,
            tx,
            writer,
        } = match begun {
            Ok(b) => b,
            Err(_) if store.crashed() => return Ok(self.crashed(&store)),
            Err(e) => return Err(format!("starting a run: {e}")),
        };
        let settings = self.settings.clone();
        let mut p = Processor::new(&settings, &clock, &counters, tables, checkpoint.clone(), tx);
        let stop_after = stop_early.then(|| rng.random_range(0..60));
        let read = self
            .drive(&mut p, &checkpoint, stop_after, &mut rng, &clock)
            .and_then(|()| p.finish());
        let written = self.rt.block_on(writer).expect("the writer does not panic");
        // A broken invariant is a bug whether or not the process also crashed.
        if let Err(e @ PipelineError::Invariant(_)) = &read {
            return Err(format!("run {}: {e}", self.runs));
        }
        match (read, written) {
            (Ok(read), Ok(stats)) => {
                self.writes += store.writes();
                Ok(End::Finished {
                    files: stats.files,
                    records: read.records,
                })
            }
            (r, w) if store.crashed() => {
                drop((r, w));
                Ok(self.crashed(&store))
            }
            (Err(e), _) | (_, Err(e)) => Err(format!("run {} failed: {e}", self.runs)),
        }
    }

    fn crashed(&mut self, store: &Crashing) -> End {
        self.crashes += 1;
        self.writes += store.writes();
        End::Crashed
    }

    /// Plays the shard readers and the coordinator: starts shards as lineage allows, from where
    /// the checkpoint says, and hands their records to the processing side in a random
    /// interleaving, with age ticks between them.
    fn drive(
        &mut self,
        p: &mut Processor<'_>,
        cp: &Checkpoint,
        stop_after: Option<u32>,
        rng: &mut ChaCha8Rng,
        clock: &SimClock,
    ) -> Result<(), PipelineError> {
        let shards: Vec<Shard> = self.stream.shards.iter().map(|s| s.shard.clone()).collect();
        let mut done = cp.finished_shards();
        let mut started: HashSet<String> = HashSet::new();
        // (shard index in the model, next record to hand out, at its tip and said so)
        let mut readers: Vec<(usize, usize, bool)> = Vec::new();
        let mut events = 0;
        // Every readable shard started since the last shard ended (as the coordinator says).
        let mut unsettled = true;
        loop {
            let readable: Vec<Shard> = lineage::readable(&shards, &done, &started)
                .into_iter()
                .cloned()
                .collect();
            for s in readable {
                let has_parent = s.parent.is_some() || s.adjacent_parent.is_some();
                let now_ms = clock.now_utc_us() / 1000;
                let (at, start_ms) =
                    start_position(cp.shards.get(&s.id), has_parent, self.start, now_ms);
                let i = self.stream.index(&s.id);
                let records = &self.stream.shards[i].records;
                let pos = match &at {
                    StartAt::TrimHorizon => 0,
                    // The first record that arrived at or after the time.
                    StartAt::AtTimestamp(t) => records
                        .iter()
                        .position(|r| r.arrival_ms >= *t)
                        .unwrap_or(records.len()),
                    StartAt::AfterSequence(seq) => {
                        match records.iter().position(|r| &r.sequence_number == seq) {
                            Some(p) => p + 1,
                            None => panic!("the checkpoint of {} names {seq}, a sequence number the shard does not hold", s.id),
                        }
                    }
                };
                p.handle(Event::Started {
                    shard: s.id.as_str().into(),
                    start_ms,
                })?;
                readers.push((i, pos, false));
                started.insert(s.id.clone());
            }
            if unsettled {
                p.handle(Event::Settled)?;
                unsettled = false;
            }
            if stop_after == Some(events) {
                return Ok(());
            }
            // The stream grows while the run reads (a consumer at its tip gets more), for a while.
            let all_idle = readers.iter().all(|r| r.2);
            let grow =
                self.growing && events < 300 && rng.random_ratio(1, if all_idle { 3 } else { 25 });
            if grow {
                let open = self.stream.open_shards();
                let i = open[rng.random_range(0..open.len())];
                for _ in 0..rng.random_range(1..=3) {
                    self.stream.put_one(rng, i);
                }
                for r in readers.iter_mut().filter(|r| r.0 == i) {
                    r.2 = false;
                }
                events += 1;
                continue;
            } else if all_idle {
                return Ok(());
            }
            events += 1;
            clock.advance(rng.random_range(0..3_000));
            if rng.random_ratio(1, 5) {
                p.handle(Event::Tick)?;
                continue;
            }
            let r = rng.random_range(0..readers.len());
            let (i, pos, idle) = readers[r];
            if idle {
                continue;
            }
            let shard = &self.stream.shards[i];
            let id: Arc<str> = shard.shard.id.as_str().into();
            let most = if rng.random_ratio(1, 5) { 40 } else { 4 };
            let n = rng.random_range(0..=most).min(shard.records.len() - pos);
            if n > 0 {
                let records = shard.records[pos..pos + n].to_vec();
                readers[r].1 += n;
                p.handle(Event::Shard(ShardEvent::Records {
                    shard: id.clone(),
                    records,
                }))?;
            }
            if readers[r].1 == shard.records.len() {
                if shard.closed {
                    p.handle(Event::Shard(ShardEvent::Ended { shard: id.clone() }))?;
                    done.insert(id.to_string());
                    readers.remove(r);
                    unsettled = true;
                } else {
                    p.handle(Event::Shard(ShardEvent::Idle { shard: id }))?;
                    readers[r].2 = true;
                }
            }
        }
    }
}

/// Plays and checks the history of `seed`; on failure, the message names the seed.
pub(super) fn play(seed: u64, rt: Arc<tokio::runtime::Runtime>) -> Result<History, String> {
    let mut h = History::new(seed, rt);
    match h.play() {
        Ok(_) => Ok(h),
        Err(e) => Err(format!(
            "history {} failed ({:?} layout, {} runs, {} crashes): {e}\nreplay it with DDB_LAKE_SIM_SEED={seed} cargo test --lib sim::tests::histories",
            h.seed, h.layout, h.runs, h.crashes
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    /// Thousands of histories in CI, on every core; `DDB_LAKE_SIM_SEED` replays one,
    /// `DDB_LAKE_SIM_HISTORIES` sets how many (from `DDB_LAKE_SIM_FIRST`), `DDB_LAKE_SIM_TRACE`
    /// prints every durable write.
    #[test]
    fn histories() {
        if let Some(seed) = env("DDB_LAKE_SIM_SEED") {
            let h = play(seed, runtime()).unwrap_or_else(|e| panic!("{e}"));
            eprintln!(
                "history {seed}: {:?} stream, {:?} layout, filter {}, compaction {:?}, {} runs, {} crashes, {} durable writes",
                h.stream.flavor,
                h.layout,
                !h.settings.filter.is_empty(),
                h.settings.compact,
                h.runs,
                h.crashes,
                h.writes
            );
            return;
        }
        let n = env("DDB_LAKE_SIM_HISTORIES").unwrap_or(HISTORIES);
        let first = env("DDB_LAKE_SIM_FIRST").unwrap_or(0);
        let threads = std::thread::available_parallelism().map_or(2, |t| t.get()) as u64;
        let started = std::time::Instant::now();
        let next = AtomicU64::new(first);
        let totals: Vec<[u64; 6]> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let rt = runtime();
                        // runs, crashes, durable writes, DynamoDB histories, filtered ones,
                        // compacting ones
                        let mut t = [0u64; 6];
                        loop {
                            let seed = next.fetch_add(1, Ordering::SeqCst);
                            if seed >= first + n {
                                return t;
                            }
                            let h = play(seed, rt.clone()).unwrap_or_else(|e| panic!("{e}"));
                            t[0] += h.runs;
                            t[1] += h.crashes;
                            t[2] += h.writes;
                            t[3] += (h.stream.flavor == Flavor::DynamoDb) as u64;
                            t[4] += !h.settings.filter.is_empty() as u64;
                            t[5] += h.settings.compact.is_some() as u64;
                            if (seed - first + 1).is_multiple_of(10_000) {
                                eprintln!(
                                    "{} histories, {:?}",
                                    seed - first + 1,
                                    started.elapsed()
                                );
                            }
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().expect("no panic"))
                .collect()
        });
        let [runs, crashes, writes, ddb, filtered, compacting] = totals
            .iter()
            .fold([0; 6], |a, t| std::array::from_fn(|i| a[i] + t[i]));
        eprintln!(
            "{n} histories (seeds {first}..{}): {runs} runs, {crashes} crashes, {writes} durable writes; {ddb} on a DynamoDB stream, {filtered} with a filter, {compacting} compacting; {:?}",
            first + n,
            started.elapsed()
        );
        assert!(crashes > n, "most histories crash more than once");
        // Both kinds of stream, and filtered histories, are played (a third and a quarter).
        if n >= 100 {
            assert!(
                ddb > n / 5 && ddb < n / 2,
                "{ddb} of {n} on a DynamoDB stream"
            );
            assert!(
                filtered > n / 8 && filtered < n / 2,
                "{filtered} of {n} filtered"
            );
            assert!(compacting > n / 20, "{compacting} of {n} compacting");
        }
    }

    /// Histories in CI.
    const HISTORIES: u64 = 2000;

    #[test]
    fn a_history_replays_to_the_same_lake() {
        let rt = runtime();
        let lake = |seed| {
            let h = play(seed, rt.clone()).unwrap_or_else(|e| panic!("{e}"));
            check::listing(&h)
        };
        assert_eq!(lake(7), lake(7));
    }
}
