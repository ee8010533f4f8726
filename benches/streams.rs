//! DynamoDB Streams reading through the whole stream pipeline, without a server: an in-process
//! stream of N shards (default 8, `DDB_LAKE_BENCH_SHARDS`) holding generated Orders changes as
//! the SDK's `Record`s, served 1,000 per GetRecords (DynamoDB Streams' limit), as the real
//! adapter hands them on (`to_record`), so the measured work is reading the SDK's types straight
//! into the decoder's record, flatten, buffering, Parquet encoding, local writes and
//! checkpoints of `export --dynamodb-stream`. MB are of the records' DynamoDB Streams JSON
//! (`record_json`), written once when the input is generated.
//! What the SDK itself costs to parse the wire JSON is not in it (the server's share, below).
//!
//! Run: `cargo bench --bench streams` (`DDB_LAKE_BENCH_RECORDS`, default 200,000). Prints
//! records/s, MB/s of record JSON, and CPU seconds (user + system, from /proc/self/stat).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodbstreams::primitives::DateTime;
use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record, StreamRecord};
use base64::Engine as _;
use ddb_lake::config::ConfigFile;
use ddb_lake::dynamodb_streams::{record_json, to_record};
use ddb_lake::generate::{generate, GenerateOptions, Shape};
use ddb_lake::kinesis::{ApiError, KinesisRecord, RecordBatch, Shard, Start, StartAt, StreamApi};
use ddb_lake::pipeline::stream::{run, Mode, StreamOptions};
use ddb_lake::pipeline::SystemClock;
use ddb_lake::summary::Counters;
use serde_json::Value;

const ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2026-01-01T00:00:00.000";
const PER_CALL: usize = 1000;

struct Fake {
    shards: Vec<Shard>,
    records: HashMap<String, Vec<KinesisRecord>>,
}

fn attr(v: &Value) -> AttributeValue {
    let (t, x) = v
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("a typed value");
    let strings = || -> Vec<String> {
        x.as_array()
            .expect("a set")
            .iter()
            .map(|s| s.as_str().expect("a string").to_string())
            .collect()
    };
    match t.as_str() {
        "S" => AttributeValue::S(x.as_str().expect("text").into()),
        "N" => AttributeValue::N(x.as_str().expect("text").into()),
        "BOOL" => AttributeValue::Bool(x.as_bool().expect("a bool")),
        "NULL" => AttributeValue::Null(true),
        "B" => AttributeValue::B(aws_sdk_dynamodbstreams::primitives::Blob::new(
            base64::engine::general_purpose::STANDARD
                .decode(x.as_str().expect("base64"))
                .expect("base64"),
        )),
        "BS" => AttributeValue::Bs(
            strings()
                .iter()
                .map(|b: &String| {
                    aws_sdk_dynamodbstreams::primitives::Blob::new(
                        base64::engine::general_purpose::STANDARD
                            .decode(b)
                            .expect("base64"),
                    )
                })
                .collect(),
        ),
        "SS" => AttributeValue::Ss(strings()),
        "NS" => AttributeValue::Ns(strings()),
        "L" => AttributeValue::L(x.as_array().expect("a list").iter().map(attr).collect()),
        "M" => AttributeValue::M(item(x)),
        other => panic!("no {other} in the generated records"),
    }
}

fn item(v: &Value) -> HashMap<String, AttributeValue> {
    v.as_object()
        .expect("an item")
        .iter()
        .map(|(k, v)| (k.clone(), attr(v)))
        .collect()
}

/// The generated DynamoDB Streams lines as SDK records, dealt to `shards` shards.
fn fake(records: u64, shards: usize) -> (Fake, u64) {
    let mut text = Vec::new();
    let opts = GenerateOptions {
        records,
        seed: 7,
        shape: Shape::Streams,
        table: "orders".into(),
        start_ms: 1_793_520_000_000,
        hours: 1,
    };
    generate(&opts, &mut text).expect("generates");
    let ids: Vec<String> = (0..shards).map(|i| format!("shardId-{i:012}")).collect();
    let mut by_shard: HashMap<String, Vec<KinesisRecord>> = HashMap::new();
    let arn: Arc<str> = ARN.into();
    let mut bytes = 0;
    for (n, line) in text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let v: Value = serde_json::from_slice(line).expect("JSON");
        let d = &v["dynamodb"];
        let mut s = StreamRecord::builder()
            .sequence_number(format!("{:021}", n + 1))
            .approximate_creation_date_time(DateTime::from_secs(
                d["ApproximateCreationDateTime"].as_i64().expect("seconds"),
            ))
            .set_keys(Some(item(&d["Keys"])));
        if d.get("NewImage").is_some() {
            s = s.set_new_image(Some(item(&d["NewImage"])));
        }
        if d.get("OldImage").is_some() {
            s = s.set_old_image(Some(item(&d["OldImage"])));
        }
        let r = Record::builder()
            .event_id(v["eventID"].as_str().expect("an id"))
            .event_name(OperationType::from(
                v["eventName"].as_str().expect("a name"),
            ))
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .dynamodb(s.build())
            .build();
        bytes += record_json(&r, ARN).len() as u64;
        let shard = &ids[n % shards];
        let r = to_record(r, &arn, shard).expect("a sequence number");
        by_shard.entry(shard.clone()).or_default().push(r);
    }
    let shards = ids
        .into_iter()
        .map(|id| Shard {
            id,
            parent: None,
            adjacent_parent: None,
        })
        .collect();
    (
        Fake {
            shards,
            records: by_shard,
        },
        bytes,
    )
}

impl StreamApi for Fake {
    async fn list_shards(&self) -> Result<Vec<Shard>, ApiError> {
        Ok(self.shards.clone())
    }

    async fn shard_iterator(&self, shard: &str, start: &StartAt) -> Result<String, ApiError> {
        let recs = &self.records[shard];
        let pos = match start {
            StartAt::AfterSequence(s) => recs
                .iter()
                .position(|r| &r.sequence_number == s)
                .map_or(recs.len(), |i| i + 1),
            _ => 0,
        };
        Ok(format!("{shard}|{pos}"))
    }

    async fn get_records(&self, iterator: &str, _limit: i32) -> Result<RecordBatch, ApiError> {
        let (shard, pos) = iterator.split_once('|').expect("our iterator");
        let pos: usize = pos.parse().expect("a position");
        let recs = &self.records[shard];
        let end = (pos + PER_CALL).min(recs.len());
        // What the adapter hands on per GetRecords: each SDK record as it is, with its stream's
        // ARN (cloning one shares the record).
        let records = recs[pos..end].to_vec();
        Ok(RecordBatch {
            records,
            // Closed shards: read to their end, the run finishes.
            next_iterator: (end < recs.len()).then(|| format!("{shard}|{end}")),
            millis_behind_latest: Some(0),
        })
    }
}

/// User + system CPU seconds of this process so far (Linux; 100 ticks per second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, r)| r.split_whitespace().collect());
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let records = env("DDB_LAKE_BENCH_RECORDS", 200_000);
    let shards = env("DDB_LAKE_BENCH_SHARDS", 8) as usize;
    let (fake, bytes) = fake(records, shards);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut c = ConfigFile::default();
    c.output.url = Some(dir.path().join("lake").display().to_string());
    let settings = c.validate().expect("default settings");
    let opts = StreamOptions {
        stream: ARN.into(),
        checkpoint: dir.path().join("cp.json").display().to_string(),
        start: Start::TrimHorizon,
        mode: Mode::Scheduled { until_ms: i64::MAX },
        idle_poll: Duration::from_millis(10),
        discovery_interval: Duration::from_secs(30),
        tick: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(60),
        accept_lost: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let summary = rt
        .block_on(run(
            &settings,
            Arc::new(fake),
            opts,
            Arc::new(SystemClock::default()),
            Arc::new(Counters::default()),
            std::future::pending(),
        ))
        .expect("the run");
    let (secs, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    assert_eq!(summary.records_in, records);
    assert_eq!(
        summary.rows_out.values().sum::<u64>(),
        records,
        "{:?}",
        summary.errors
    );
    println!(
        "dynamodb_streams_fake: {records} records ({:.1} MB of record JSON) on {shards} shards, {} per GetRecords: {:.2} s, {:.0} records/s, {:.1} MB/s; CPU {:.2} s ({:.0}% of one core, {:.0} records per CPU second); {} files, {:.1} MB of Parquet",
        bytes as f64 / 1e6,
        PER_CALL,
        secs,
        records as f64 / secs,
        bytes as f64 / 1e6 / secs,
        cpu,
        100.0 * cpu / secs,
        records as f64 / cpu.max(0.001),
        summary.files_written,
        summary.bytes_written as f64 / 1e6,
    );
}
