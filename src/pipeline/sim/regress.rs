//! Regression tests for the two ways exactly-once lost records (issue "Exactly once has holes"),
//! each a scripted sequence of runs on the simulation's store and driver events.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use super::check::{objects, read_errors, read_rows, Key};
use super::store::Crashing;
use super::{runtime, SimClock, CHECKPOINT, STREAM};
use crate::checkpoint::{Checkpoint, CheckpointStore, PendingBatch};
use crate::config::{ConfigFile, Settings};
use crate::kinesis::{KinesisRecord, ShardEvent};
use crate::pipeline::stream::{begin, Begun, Event, Processor};
use crate::seq::{SeqPos, ShardRange};
use crate::store::Location;
use crate::summary::Counters;

fn seq(n: u64) -> String {
    format!("{n:030}")
}

/// A change of the `Orders` table at `hour`:`minute` on 2026-11-20.
fn record(n: u64, hour: u32, minute: u32) -> KinesisRecord {
    let ms = chrono::NaiveDate::from_ymd_opt(2026, 11, 20)
        .and_then(|d| d.and_hms_opt(hour, minute, 0))
        .expect("a time")
        .and_utc()
        .timestamp_millis();
    let json = format!(
        r#"{{"eventID":"e{n}","eventName":"INSERT","tableName":"Orders","dynamodb":{{"ApproximateCreationDateTime":{ms},"Keys":{{"id":{{"S":"k{n}"}}}},"NewImage":{{"id":{{"S":"k{n}"}}}}}}}}"#
    );
    KinesisRecord {
        sdk: None,
        sequence_number: seq(n),
        data: json.into(),
        arrival_ms: ms,
    }
}

fn records(shard: &str, rs: &[&KinesisRecord]) -> Event {
    Event::Shard(ShardEvent::Records {
        shard: shard.into(),
        records: rs.iter().map(|r| (*r).clone()).collect(),
    })
}

fn started(shard: &str) -> Event {
    Event::Started {
        shard: shard.into(),
        start_ms: None,
    }
}

/// Scripted runs over one lake.
struct Script {
    rt: Arc<tokio::runtime::Runtime>,
    lake: Arc<InMemory>,
    settings: Settings,
    clock: SimClock,
}

impl Script {
    fn new(template: &str, max_records: usize) -> Self {
        let mut c = ConfigFile::default();
        c.output.url = Some("memory://lake".into());
        c.output.template = Some(template.into());
        let mut settings = c.validate().expect("valid settings");
        settings.flush.max_records = max_records;
        Script {
            rt: runtime(),
            lake: Arc::new(InMemory::new()),
            settings,
            clock: SimClock::new(),
        }
    }

    /// One run through `store` that handles `events`; `finish`: then flushes and saves as a run
    /// that reached its end does, else stops there (killed once the writer did all it was sent).
    fn run(&self, store: Crashing, events: Vec<Event>, finish: bool) {
        let output = Location {
            store: Arc::new(store),
            prefix: Path::default(),
            url: "memory://lake".into(),
            // Objects above the multipart threshold take the staged-copy path, as on S3.
            s3: true,
        };
        let cp = CheckpointStore::at(output.clone(), CHECKPOINT, true);
        let counters = Counters::default();
        let Begun {
            tables,
            checkpoint,
            tx,
            writer,
        } = self
            .rt
            .block_on(begin(
                &self.settings,
                STREAM,
                output,
                cp,
                Arc::new(Counters::default()),
                |_| Ok(()),
            ))
            .expect("a run starts");
        let mut p = Processor::new(
            &self.settings,
            &self.clock,
            &counters,
            tables,
            checkpoint,
            tx,
        );
        let mut ok = true;
        for ev in events {
            if p.handle(ev).is_err() {
                ok = false;
                break;
            }
        }
        if ok && finish {
            let _ = p.finish();
        } else {
            drop(p);
        }
        let _ = self.rt.block_on(writer).expect("the writer does not panic");
    }

    fn clean(&self) -> Crashing {
        Crashing::new(self.lake.clone(), None)
    }

    /// Every user record in the lake, as rows or error entries, with how often it appears.
    fn keys(&self) -> std::collections::BTreeMap<Key, u32> {
        let mut out = std::collections::BTreeMap::new();
        for (path, bytes) in objects(&self.rt, &self.lake) {
            let keys: Vec<Key> = if path.ends_with(".parquet") {
                read_rows(&path, &bytes, &[])
                    .0
                    .into_iter()
                    .map(|r| r.key)
                    .collect()
            } else if path.starts_with("_errors/") {
                read_errors(&path, &bytes)
                    .into_iter()
                    .map(|e| e.key)
                    .collect()
            } else {
                continue;
            };
            for k in keys {
                *out.entry(k).or_default() += 1;
            }
        }
        out
    }
}

fn key(shard: &str, n: u64) -> Key {
    (shard.to_string(), seq(n), None)
}

/// Issue 11, first mechanism: a batch carried over from a crashed run bounds its shard's
/// checkpoint by where that batch starts, but the restarted run has not read that far yet. A save
/// made before it does must not move the shard's checkpoint past what this run has read.
#[test]
fn a_carried_batch_does_not_move_the_checkpoint_past_what_was_read() {
    let s = Script::new("{table}/{YYYY}/{MM}/{DD}/{HH}", 2);
    // Shard S: r1 at 10:00, then r2 and r3 at 11:00. Run 1 flushed r2..r3 as batch X (hour 11)
    // and died after the intent, with r1 still buffered: S has nothing durable.
    let (r1, r2, r3) = (record(1, 10, 0), record(2, 11, 0), record(3, 11, 5));
    let (t1, t2) = (record(4, 12, 0), record(5, 12, 1));
    let prefix = "orders/2026/11/20/11/orders-";
    let intent = Checkpoint {
        stream: STREAM.into(),
        revision: 3,
        pending: vec![PendingBatch {
            object: format!("{prefix}00112233aabbccdd.parquet"),
            prefix: prefix.into(),
            table: Some("orders".into()),
            rows: 2,
            manifest: Some("_ddb_lake/manifests/orders/manifest-0011223344556677.json".into()),
            hour: None,
            shards: [(
                "S".to_string(),
                ShardRange {
                    after: Some(seq(1)),
                    first: SeqPos::new(&seq(2), 0),
                    last: SeqPos::new(&seq(3), 0),
                },
            )]
            .into(),
        }],
        ..Checkpoint::default()
    };
    let body = serde_json::to_vec(&intent).unwrap();
    s.rt.block_on(s.lake.put(&Path::from(CHECKPOINT), PutPayload::from(body)))
        .unwrap();
    // Run 2 starts S and T; T's two records flush and are saved before S delivers anything.
    // Then it dies.
    s.run(
        s.clean(),
        vec![started("S"), started("T"), records("T", &[&t1, &t2])],
        false,
    );
    let cp: Checkpoint = serde_json::from_slice(&objects(&s.rt, &s.lake)[CHECKPOINT]).unwrap();
    // Run 3 reads S from its checkpoint: every record of S and T is in the lake once.
    let from = |after: Option<String>| -> Vec<&KinesisRecord> {
        let all = [&r1, &r2, &r3];
        match after {
            None => all.to_vec(),
            Some(a) => all.into_iter().filter(|r| r.sequence_number > a).collect(),
        }
    };
    let s_records = from(cp.shards.get("S").and_then(|c| c.sequence_number.clone()));
    s.run(
        s.clean(),
        vec![started("S"), started("T"), records("S", &s_records)],
        true,
    );
    let want: std::collections::BTreeMap<Key, u32> = [
        key("S", 1),
        key("S", 2),
        key("S", 3),
        key("T", 4),
        key("T", 5),
    ]
    .into_iter()
    .map(|k| (k, 1))
    .collect();
    assert_eq!(s.keys(), want);
    assert_eq!(
        cp.shards.get("S").and_then(|c| c.sequence_number.clone()),
        None,
        "run 2 saved a checkpoint for S past records it never read"
    );
}

/// Issue 11, second mechanism: with a template that has no hour, two hours of one day map to
/// one object prefix; committing one hour's batch must not mark records of the other, still
/// buffered, as written.
#[test]
fn a_daily_template_keeps_every_row_across_a_crash_after_the_second_intent() {
    let s = Script::new("{table}/{YYYY}/{MM}/{DD}", 2);
    let rs: Vec<KinesisRecord> = [(1, 10), (2, 11), (3, 10), (4, 12), (5, 12)]
        .into_iter()
        .map(|(n, h)| record(n, h, n as u32))
        .collect();
    let one_by_one = |from: usize| -> Vec<Event> {
        std::iter::once(started("S"))
            .chain(rs[from..].iter().map(|r| records("S", &[r])))
            .collect()
    };
    // The claim is the first checkpoint write, the first intent the second, its commit the
    // third, the second intent the fourth: die right after it.
    s.run(
        Crashing::after_writes_to(s.lake.clone(), CHECKPOINT, 4),
        one_by_one(0),
        true,
    );
    // Restarts read S again from its checkpoint, to the end.
    for _ in 0..3 {
        let cp: Checkpoint = serde_json::from_slice(&objects(&s.rt, &s.lake)[CHECKPOINT]).unwrap();
        let after = cp.shards.get("S").and_then(|c| c.sequence_number.clone());
        let from = after.map_or(0, |a| {
            rs.iter().position(|r| r.sequence_number == a).unwrap() + 1
        });
        s.run(s.clean(), one_by_one(from), true);
    }
    let want: std::collections::BTreeMap<Key, u32> = (1..=5).map(|n| (key("S", n), 1)).collect();
    assert_eq!(s.keys(), want);
}

/// Found in review: a shard started at a time (LATEST, AT_TIMESTAMP) kept that time in memory
/// until the first flush's checkpoint; a run killed before it left no trace of it, and the next
/// run's LATEST started at its own later "now", skipping what arrived in between.
#[test]
fn a_start_at_a_time_is_saved_before_the_shard_is_read() {
    let s = Script::new("{table}/{YYYY}/{MM}/{DD}/{HH}", 1000);
    let t = 1_795_690_000_000;
    s.run(
        s.clean(),
        vec![
            Event::Started {
                shard: "S".into(),
                start_ms: Some(t),
            },
            records("S", &[&record(1, 10, 0)]),
        ],
        false,
    );
    let cp: Checkpoint = serde_json::from_slice(&objects(&s.rt, &s.lake)[CHECKPOINT]).unwrap();
    assert_eq!(cp.shards["S"].start_timestamp_ms, Some(t));
    assert_eq!(cp.shards["S"].sequence_number, None);
}
