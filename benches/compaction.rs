//! A day of a stream written by the continuous consumer with a 60 s flush age, once as it is
//! and once with `[markers] compact = true`: files and bytes in the table folder, and the
//! compaction's cost. An in-process Kinesis stream of 2 shards serves a day of generated Orders
//! changes (`DDB_LAKE_BENCH_RECORDS`, default 300,000, spread evenly over 24 hours), and the
//! injected clock follows the records' arrival times, so a day passes in seconds while every
//! partition still flushes when it is 60 s old (a tick every millisecond of real time, each
//! GetRecords call serving at most 20 s of the stream and waiting 2 ms). One record per shard
//! two hours after the day moves the watermark past it, so every hour of the day is complete.
//!
//! Run: `cargo bench --bench compaction`. Prints one line per mode (each in a process of its
//! own, with glibc limited to 2 arenas as the binary is): data files and bytes of the day's
//! hours, staged files left (the sentinel's hour), CPU seconds, wall time, and the peak RSS above
//! what the process held before the run (the generated day, in memory).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ddb_lake::config::ConfigFile;
use ddb_lake::generate::{generate, GenerateOptions, Shape};
use ddb_lake::kinesis::{ApiError, KinesisRecord, RecordBatch, Shard, Start, StartAt, StreamApi};
use ddb_lake::pipeline::stream::{run, Mode, StreamOptions};
use ddb_lake::pipeline::Clock;
use ddb_lake::summary::Counters;

const DAY_START_MS: i64 = 1_780_000_000_000 / 86_400_000 * 86_400_000;
const SHARDS: usize = 2;
/// Most stream time one GetRecords call serves.
const CALL_SPAN_MS: i64 = 20_000;

/// The stream's time: the latest arrival served so far.
struct StreamClock {
    now_ms: AtomicI64,
}

impl Clock for StreamClock {
    fn now_ms(&self) -> u64 {
        (self.now_ms.load(Ordering::SeqCst) - DAY_START_MS) as u64
    }
    fn now_utc_us(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst) * 1000
    }
}

struct Fake {
    records: Vec<Vec<KinesisRecord>>,
    clock: Arc<StreamClock>,
    /// Shards polled again after their last record.
    drained: std::sync::Mutex<std::collections::BTreeSet<usize>>,
    done: tokio::sync::Notify,
}

impl StreamApi for Fake {
    async fn list_shards(&self) -> Result<Vec<Shard>, ApiError> {
        Ok((0..SHARDS)
            .map(|i| Shard {
                id: format!("shardId-{i:012}"),
                parent: None,
                adjacent_parent: None,
            })
            .collect())
    }

    async fn shard_iterator(&self, shard: &str, start: &StartAt) -> Result<String, ApiError> {
        let i: usize = shard[8..].parse().expect("a shard number");
        let pos = match start {
            StartAt::AfterSequence(s) => {
                self.records[i]
                    .iter()
                    .position(|r| &r.sequence_number == s)
                    .expect("a known record")
                    + 1
            }
            _ => 0,
        };
        Ok(format!("{i}|{pos}"))
    }

    async fn get_records(&self, iterator: &str, _limit: i32) -> Result<RecordBatch, ApiError> {
        let (i, pos) = iterator.split_once('|').expect("an iterator");
        let (i, pos): (usize, usize) = (i.parse().unwrap(), pos.parse().unwrap());
        let recs = &self.records[i];
        if pos == recs.len() {
            let all = {
                let mut drained = self.drained.lock().expect("not poisoned");
                drained.insert(i) && drained.len() == SHARDS
            };
            if all {
                self.done.notify_one();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            return Ok(RecordBatch {
                records: Vec::new(),
                next_iterator: Some(iterator.to_string()),
                millis_behind_latest: Some(0),
            });
        }
        // Real time for the ticks that flush aged partitions.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let first = recs[pos].arrival_ms;
        let end = recs[pos..]
            .iter()
            .position(|r| r.arrival_ms > first + CALL_SPAN_MS)
            .map_or(recs.len(), |n| pos + n.max(1));
        self.clock
            .now_ms
            .fetch_max(recs[end - 1].arrival_ms, Ordering::SeqCst);
        Ok(RecordBatch {
            records: recs[pos..end].to_vec(),
            next_iterator: Some(format!("{i}|{end}")),
            millis_behind_latest: Some(if end == recs.len() { 0 } else { 1000 }),
        })
    }
}

/// Peak RSS since the last reset, MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resident memory now, MiB (`VmRSS`).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// The day's records dealt to the shards, arriving at their event time, plus the sentinels.
fn stream(records: u64) -> Vec<Vec<KinesisRecord>> {
    let opts = GenerateOptions {
        records,
        seed: 15,
        shape: Shape::Kinesis,
        table: "Orders".into(),
        start_ms: DAY_START_MS,
        hours: 24,
    };
    let mut text = Vec::new();
    generate(&opts, &mut text).expect("generates");
    let mut lines: Vec<(i64, String)> = String::from_utf8(text)
        .expect("text")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            let t = v["dynamodb"]["ApproximateCreationDateTime"]
                .as_i64()
                .expect("a time");
            let micros = v["dynamodb"]["ApproximateCreationDateTimePrecision"] == "MICROSECOND";
            (if micros { t / 1000 } else { t }, l.to_string())
        })
        .collect();
    lines.sort_by_key(|(ms, _)| *ms);
    let last = lines.last().expect("records").1.clone();
    let later_ms = DAY_START_MS + 26 * 3_600_000;
    let mut v: serde_json::Value = serde_json::from_str(&last).unwrap();
    v["dynamodb"]["ApproximateCreationDateTime"] = later_ms.into();
    v["dynamodb"]["ApproximateCreationDateTimePrecision"] = "MILLISECOND".into();
    let sentinel = v.to_string();
    let mut out: Vec<Vec<KinesisRecord>> = vec![Vec::new(); SHARDS];
    for (n, (ms, line)) in lines.into_iter().enumerate() {
        let shard = &mut out[n % SHARDS];
        shard.push(KinesisRecord {
            sdk: None,
            sequence_number: format!("{:056}", n),
            data: Bytes::from(line),
            arrival_ms: ms,
        });
    }
    for (i, shard) in out.iter_mut().enumerate() {
        shard.push(KinesisRecord {
            sdk: None,
            sequence_number: format!("{:056}", records as usize + i),
            data: Bytes::from(sentinel.clone()),
            arrival_ms: later_ms,
        });
    }
    out
}

/// Files and bytes per kind under the lake: `data` (the day's hours), `late`, `staged`.
fn files(lake: &std::path::Path) -> BTreeMap<&'static str, (u64, u64)> {
    let mut out: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let mut stack = vec![lake.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("a folder") {
            let e = e.expect("an entry");
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p.strip_prefix(lake).unwrap().display().to_string();
            if !rel.ends_with(".parquet") {
                continue;
            }
            let kind = if rel.starts_with("_ddb_lake/compacting/") {
                "staged"
            } else if rel.starts_with('_') {
                continue;
            } else if rel.contains("-late-") {
                "late"
            } else if rel.contains("-compacted-") {
                "compacted"
            } else {
                "data"
            };
            let len = e.metadata().expect("metadata").len();
            let slot = out.entry(kind).or_default();
            slot.0 += 1;
            slot.1 += len;
        }
    }
    out
}

fn main() {
    let records: u64 = std::env::var("DDB_LAKE_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    // Each mode in a process of its own, so that each one's peak RSS is its own.
    let mode = std::env::var("DDB_LAKE_BENCH_COMPACT").ok();
    let Some(mode) = mode else {
        println!("a day of {records} changes on {SHARDS} shards, flush age 60 s\n");
        println!("| mode | plain files | compacted files | late files | staged | rows | hours complete | CPU | wall | peak RSS above the input |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for compact in ["false", "true"] {
            let out = std::process::Command::new(std::env::current_exe().expect("this program"))
                .env("DDB_LAKE_BENCH_COMPACT", compact)
                // As the binary does (`limit_malloc_arenas` in main.rs).
                .env("MALLOC_ARENA_MAX", "2")
                .output()
                .expect("runs");
            assert!(out.status.success(), "{out:?}");
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
        return;
    };
    let shards = stream(records);
    {
        let compact = mode == "true";
        let dir = tempfile::tempdir().expect("a temporary folder");
        let mut c = ConfigFile::default();
        c.output.url = Some(dir.path().join("lake").display().to_string());
        c.markers.enabled = true;
        c.markers.allowed_lateness = "1m".into();
        c.markers.compact = compact;
        let mut settings = c.validate().expect("valid settings");
        settings.flush.max_age_ms = Some(60_000);
        let clock = Arc::new(StreamClock {
            now_ms: AtomicI64::new(DAY_START_MS),
        });
        let fake = Arc::new(Fake {
            records: shards,
            clock: clock.clone(),
            drained: Default::default(),
            done: tokio::sync::Notify::new(),
        });
        let opts = StreamOptions {
            stream: "bench".into(),
            checkpoint: dir.path().join("cp.json").display().to_string(),
            start: Start::TrimHorizon,
            mode: Mode::Continuous,
            idle_poll: Duration::from_millis(5),
            discovery_interval: Duration::from_secs(3600),
            tick: Duration::from_millis(1),
            shutdown_timeout: Duration::from_secs(600),
            accept_lost: Vec::new(),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // Resets the peak RSS to the current RSS (Linux): the peak above the input held here.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let base = rss_mib();
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let stop = fake.clone();
        let summary = rt
            .block_on(run(
                &settings,
                fake,
                opts,
                clock,
                Arc::new(Counters::default()),
                async move { stop.done.notified().await },
            ))
            .expect("the run succeeds");
        let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed());
        let f = files(&dir.path().join("lake"));
        let show = |k: &str| {
            let (n, b) = f.get(k).copied().unwrap_or_default();
            format!("{n} files, {:.1} MiB", b as f64 / (1 << 20) as f64)
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {cpu:.1} s | {:.1} s | {:.0} MiB |",
            if compact {
                "compact = true"
            } else {
                "as written"
            },
            show("data"),
            show("compacted"),
            show("late"),
            show("staged"),
            summary.rows_out.values().sum::<u64>(),
            summary.hours_completed.len(),
            wall.as_secs_f64(),
            peak_rss_mib() - base,
        );
    }
}
