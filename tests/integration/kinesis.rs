//! Stream runs against the local Kinesis server (kinesis-mock): scheduled exports, resharding,
//! checkpoints and restarts of the continuous consumer.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;

fn stream_name(prefix: &str) -> String {
    unique(prefix)
}

fn ktool(args: &[&str]) -> String {
    std::env::var("AWS_ENDPOINT_URL_KINESIS")
        .expect("run with scripts/test.sh: it starts the local Kinesis server");
    py_script("kinesis_tool.py", args)
}

/// Checks the lake holds exactly the records of the stream: one row per sequence number, parents
/// before children within each file. Prints the row count.
const CHECK_EXACTLY_ONCE: &str = r#"
import pyarrow.parquet as pq, glob, sys, json
files = sorted(glob.glob(sys.argv[1] + '/**/*.parquet', recursive=True))
shards = {s['ShardId']: s for s in json.loads(sys.argv[2])}
seen = set()
for f in files:
    t = pq.read_table(f, columns=['cdc_shard_id', 'cdc_sequence_number', 'cdc_arrival_time', 'cdc_event_id'])
    rows = t.to_pylist()
    for r in rows:
        key = (r['cdc_shard_id'], r['cdc_sequence_number'])
        assert key not in seen, f'duplicate {key}'
        assert r['cdc_arrival_time'] is not None
        seen.add(key)
    # Lineage: in processing order (row order of a file), no parent row after a child row.
    first = {}
    last = {}
    for i, r in enumerate(rows):
        first.setdefault(r['cdc_shard_id'], i)
        last[r['cdc_shard_id']] = i
    for sid, s in shards.items():
        for p in (s.get('ParentShardId'), s.get('AdjacentParentShardId')):
            if p in last and sid in first:
                assert last[p] < first[sid], (p, sid, last[p], first[sid])
print(len(seen))
"#;

/// Checks exactly-once and lineage order of the lake's rows against the stream's shards.
fn assert_exactly_once(lake: &Path, stream: &str, rows: u64) {
    let shards = ktool(&["shards", stream]);
    let got = py(
        CHECK_EXACTLY_ONCE,
        &[s(&lake.join("orders")), shards.trim()],
    );
    assert_eq!(got, rows.to_string());
}

/// The number of shards the checkpoint marks finished.
fn finished_shards(lake: &Path, stream: &str) -> usize {
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.join(format!("_ddb_lake/checkpoints/{stream}.json"))).unwrap(),
    )
    .unwrap();
    cp["shards"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| s["finished"] == true)
        .count()
}

#[test]
fn scheduled_exports_read_every_shard_once_and_resume() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(
        &input,
        1500,
        31,
        &["--hours", "1", "--start", "2026-11-01T08:00:00Z"],
    );
    let name = stream_name("sched");
    ktool(&["create", &name, "4"]);
    assert_eq!(
        ktool(&["put", &name, s(&input), "0", "1000"]).trim(),
        "1000"
    );
    let lake = dir.path().join("lake");
    let run = || export_json(&["--stream", &name, "-o", s(&lake)], 0);
    let first = run();
    assert_eq!(first["records_in"], 1000);
    assert_eq!(first["rows_out"]["orders"], 1000);
    let cp: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lake.join(format!("_ddb_lake/checkpoints/{name}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(cp["shards"].as_object().unwrap().len(), 4);
    // Right after: nothing new, nothing written.
    let second = run();
    assert_eq!(
        (
            second["records_in"].as_u64(),
            second["files_written"].as_u64()
        ),
        (Some(0), Some(0))
    );
    // New records: only they are read.
    ktool(&["put", &name, s(&input), "1000", "1500"]);
    let third = run();
    assert_eq!(third["records_in"], 500);
    assert_exactly_once(&lake, &name, 1500);
}

#[test]
fn split_and_merge_are_read_parents_first_exactly_once() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // One hour: every row lands in one file, whose row order is the processing order.
    generate(
        &input,
        1500,
        32,
        &["--hours", "1", "--start", "2026-11-01T08:00:00Z"],
    );
    let name = stream_name("reshard");
    ktool(&["create", &name, "2"]);
    ktool(&["put", &name, s(&input), "0", "500"]);
    ktool(&["split", &name, "shardId-000000000000"]);
    ktool(&["put", &name, s(&input), "500", "1000"]);
    ktool(&["merge", &name]);
    ktool(&["put", &name, s(&input), "1000", "1500"]);
    let lake = dir.path().join("lake");
    let summary = export_json(&["--stream", &name, "-o", s(&lake)], 0);
    assert_eq!(summary["records_in"], 1500);
    let shards = ktool(&["shards", &name]);
    let n: usize = serde_json::from_str::<serde_json::Value>(shards.trim())
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    assert!(n >= 5, "{shards}");
    assert_exactly_once(&lake, &name, 1500);
    assert_eq!(finished_shards(&lake, &name), 3); // the split parent and the two merged shards are closed
}

/// A running `consume`, with its metrics address.
struct Consumer {
    run: Running,
    metrics: String,
}

/// Starts `consume` on the stream into a local lake, serving metrics on a free port; returns
/// once the metrics answer (the consumer has started).
fn consume(name: &str, lake: &Path) -> Consumer {
    let (run, metrics) = start_listening(
        |addr| {
            let mut cmd = bin();
            cmd.args(["consume", "--stream", name, "-o", s(lake)])
                .args([
                    "--max-age",
                    "1s",
                    "--json",
                    "--no-progress",
                    "--metrics",
                    addr,
                ])
                .env("DDB_LAKE_LOG", "warn");
            Running::start(cmd)
        },
        "/metrics",
    );
    Consumer { run, metrics }
}

/// Waits until the lake's files hold `n` rows, with a deadline: the condition, not the time, is
/// what the test waits for.
fn wait_for_rows(lake: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while parquet_rows(&lake.join("orders")) < n {
        assert!(
            Instant::now() < deadline,
            "the consumer did not write {n} rows in time"
        );
        std::thread::sleep(Duration::from_millis(200)); // polling a condition, bounded by the deadline
    }
}

/// Stops a consumer gracefully (SIGTERM); it must exit 0. Returns its summary.
fn stop(c: Consumer) -> serde_json::Value {
    c.run.terminate();
    let out = c.run.wait();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn the_consumer_stops_gracefully_and_resumes_from_its_checkpoint() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 800, 33, &["--hours", "2"]);
    let name = stream_name("consume");
    ktool(&["create", &name, "3"]);
    let lake = dir.path().join("lake");
    let c = consume(&name, &lake);
    ktool(&["put", &name, s(&input), "0", "500"]);
    wait_for_rows(&lake, 500);
    let metrics = http_get(&c.metrics, "/metrics").expect("the metrics answer");
    assert!(
        metrics
            .lines()
            .any(|l| l == "ddb_lake_records_in_total 500"),
        "{metrics}"
    );
    assert_eq!(
        metrics
            .matches("ddb_lake_shard_lag_milliseconds{shard=")
            .count(),
        3,
        "{metrics}"
    );
    for name in [
        "ddb_lake_rows_out_total{table=\"orders\"}",
        "ddb_lake_flushes_total{reason=\"age\"}",
        "ddb_lake_checkpoint_saved_timestamp_seconds",
        "ddb_lake_buffered_bytes",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    let summary = stop(c);
    assert_eq!(summary["records_in"], 500);
    // Status: every shard checkpointed, nothing behind.
    let status: serde_json::Value = serde_json::from_str(&run_ok(
        &["status", "--stream", &name, "-o", s(&lake), "--json"],
        0,
    ))
    .unwrap();
    let shards = status.as_array().unwrap();
    assert_eq!(shards.len(), 3);
    assert!(shards.iter().all(|s| s["lag_ms"] == 0), "{status}");
    // Records put while it is stopped are read by the next run, from the checkpoint.
    ktool(&["put", &name, s(&input), "500", "800"]);
    let status: serde_json::Value = serde_json::from_str(&run_ok(
        &["status", "--stream", &name, "-o", s(&lake), "--json"],
        0,
    ))
    .unwrap();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["lag_ms"].as_i64().unwrap() > 0),
        "{status}"
    );
    let c = consume(&name, &lake);
    wait_for_rows(&lake, 800);
    let summary = stop(c);
    assert_eq!(summary["records_in"], 300);
    assert_exactly_once(&lake, &name, 800);
}

#[test]
fn latest_and_at_timestamp_starts() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 300, 34, &[]);
    let name = stream_name("starts");
    ktool(&["create", &name, "2"]);
    ktool(&["put", &name, s(&input), "0", "100"]);
    let t = ktool(&["now", "-"]);
    ktool(&["put", &name, s(&input), "100", "200"]);
    // AT_TIMESTAMP: only what arrived from t on.
    let at = dir.path().join("at");
    let summary = export_json(
        &[
            "--stream",
            &name,
            "-o",
            s(&at),
            "--start",
            "at_timestamp",
            "--start-timestamp",
            t.trim(),
        ],
        0,
    );
    assert_eq!(summary["records_in"], 100);
    // LATEST: nothing of what is there; but the next run reads everything put since.
    let latest = dir.path().join("latest");
    let summary = export_json(
        &["--stream", &name, "-o", s(&latest), "--start", "latest"],
        0,
    );
    assert_eq!(summary["records_in"], 0);
    ktool(&["put", &name, s(&input), "200", "300"]);
    let summary = export_json(
        &["--stream", &name, "-o", s(&latest), "--start", "latest"],
        0,
    );
    assert_eq!(summary["records_in"], 100);
    // Exactly the records put after the LATEST run.
    let check = r#"
import duckdb, json, sys
want = {json.loads(l)['eventID'] for l in open(sys.argv[2]).read().splitlines()[200:300]}
got = [r[0] for r in duckdb.execute(f"select cdc_event_id from read_parquet('{sys.argv[1]}/**/*.parquet')").fetchall()]
assert len(got) == 100 and set(got) == want
print('OK')
"#;
    assert_eq!(py(check, &[s(&latest.join("orders")), s(&input)]), "OK");
}

#[test]
fn s3_checkpoints_are_conditional() {
    if skip_without_servers() {
        return;
    }
    use ddb_lake::checkpoint::{CheckpointError, CheckpointStore, ShardCheckpoint};
    use ddb_lake::store::S3Options;
    std::env::var("AWS_ENDPOINT_URL_S3").expect("run with scripts/test.sh");
    let bucket = stream_name("cp").to_lowercase();
    create_bucket(&bucket);
    let url = format!("s3://{bucket}/state/stream.json");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = S3Options::default();
        let mut a = CheckpointStore::open(&url, &opts).unwrap();
        let mut b = CheckpointStore::open(&url, &opts).unwrap();
        let mut cp = a.load("s").await.unwrap();
        b.load("s").await.unwrap();
        cp.shards.insert(
            "shard-0".into(),
            ShardCheckpoint {
                sequence_number: Some("7".into()),
                ..Default::default()
            },
        );
        cp.owner = Some("process a".into());
        let mut theirs = cp.clone();
        theirs.owner = Some("process b".into());
        a.save(&cp).await.unwrap();
        // b read before a's first write: its write would overwrite a's progress.
        assert!(matches!(
            b.save(&theirs).await,
            Err(CheckpointError::Fenced { owner, .. }) if owner == "process a"
        ));
        // a keeps writing: it holds the current version.
        cp.shards.get_mut("shard-0").unwrap().sequence_number = Some("9".into());
        a.save(&cp).await.unwrap();
        let mut c = CheckpointStore::open(&url, &opts).unwrap();
        let loaded = c.load("s").await.unwrap();
        assert_eq!(
            (loaded.shards.clone(), loaded.revision),
            (cp.shards.clone(), 2)
        );
        // A reader of an older version is refused too.
        b.load("s").await.unwrap();
        a.save(&cp).await.unwrap();
        assert!(matches!(
            b.save(&theirs).await,
            Err(CheckpointError::Fenced { .. })
        ));
    });
}

#[test]
fn injected_throttling_expiry_and_failures_are_survived_without_loss() {
    if skip_without_servers() {
        return;
    }
    use ddb_lake::config::ConfigFile;
    use ddb_lake::kinesis::faults::Faulty;
    use ddb_lake::kinesis::AwsStream;
    use ddb_lake::kinesis::Start;
    use ddb_lake::pipeline::stream::{run, Mode, StreamOptions};
    use ddb_lake::pipeline::SystemClock;
    use ddb_lake::summary::Counters;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 1200, 35, &[]);
    let name = stream_name("faults");
    ktool(&["create", &name, "3"]);
    ktool(&["put", &name, s(&input)]);
    let lake = dir.path().join("lake");
    let mut config = ConfigFile::default();
    config.output.url = Some(s(&lake).to_string());
    let settings = config.validate().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (summary, injected) = rt.block_on(async {
        // Besides the random faults, one shard is down for its first 6 calls.
        let api = Arc::new(
            Faulty::new(AwsStream::connect(&name).await, 0.3, 7)
                .with_outage("shardId-000000000001", 6),
        );
        let opts = StreamOptions {
            stream: name.clone(),
            checkpoint: s(&dir.path().join("cp.json")).to_string(),
            start: Start::TrimHorizon,
            mode: Mode::Scheduled { until_ms: i64::MAX },
            idle_poll: Duration::from_millis(50),
            discovery_interval: Duration::from_secs(30),
            tick: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(60),
            accept_lost: Vec::new(),
        };
        let summary = run(
            &settings,
            api.clone(),
            opts,
            Arc::new(SystemClock::default()),
            Arc::new(Counters::default()),
            std::future::pending(),
        )
        .await
        .unwrap();
        (summary, api.injected())
    });
    assert!(
        injected.throttled > 0 && injected.expired > 0 && injected.transient > 0,
        "{injected:?}"
    );
    assert_eq!(injected.outage, 6);
    assert_eq!(summary.records_in, 1200);
    assert_exactly_once(&lake, &name, 1200);
}

#[test]
fn dynamodb_changes_reach_parquet_on_s3_through_the_stream() {
    if skip_without_servers() {
        return;
    }
    std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        .expect("run with scripts/test.sh: it starts DynamoDB Local");
    let table = stream_name("Invoices");
    let name = stream_name("e2e");
    let bucket = stream_name("e2e").to_lowercase();
    ktool(&["create", &name, "2"]);
    // Writes to a table on DynamoDB Local: 30 inserts, 10 updates, 5 deletes.
    let writes = r#"
import boto3, os, sys, decimal
ddb = boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1')
s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'], region_name='us-east-1')
s3.create_bucket(Bucket=sys.argv[2])
t = sys.argv[1]
ddb.create_table(TableName=t, KeySchema=[{'AttributeName': 'InvoiceNumber', 'KeyType': 'HASH'}],
    AttributeDefinitions=[{'AttributeName': 'InvoiceNumber', 'AttributeType': 'N'}],
    BillingMode='PAY_PER_REQUEST', StreamSpecification={'StreamEnabled': True, 'StreamViewType': 'NEW_AND_OLD_IMAGES'})
for i in range(30):
    ddb.put_item(TableName=t, Item={'InvoiceNumber': {'N': str(1000 + i)}, 'Amount': {'N': f'{i}.25'},
        'Customer': {'M': {'name': {'S': f'c{i}'}, 'tier': {'N': str(i % 3)}}}, 'Tags': {'SS': ['b', 'a']},
        'Blob': {'B': bytes([i, 0, 255])}})
for i in range(10):
    ddb.update_item(TableName=t, Key={'InvoiceNumber': {'N': str(1000 + i)}},
        UpdateExpression='SET Amount = :a', ExpressionAttributeValues={':a': {'N': '99.99'}})
for i in range(25, 30):
    ddb.delete_item(TableName=t, Key={'InvoiceNumber': {'N': str(1000 + i)}})
print('ok')
"#;
    assert_eq!(py(writes, &[&table, &bucket]), "ok");
    assert_eq!(
        py_script("ddb_bridge.py", &[&table, &name, "45"]).trim(),
        "45"
    );
    let out = format!("s3://{bucket}/lake");
    let summary = export_json(&["--stream", &name, "-o", &out], 0);
    assert_eq!(summary["records_in"], 45);
    let check = r#"
import boto3, os, sys, io, decimal
import pyarrow.parquet as pq, pyarrow as pa
s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'], region_name='us-east-1')
bucket, table = sys.argv[1], sys.argv[2]
keys = [o['Key'] for o in s3.list_objects_v2(Bucket=bucket, Prefix='lake/')['Contents'] if o['Key'].endswith('.parquet')]
t = pa.concat_tables([pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)['Body'].read())) for k in keys], promote_options='default')
rows = t.to_pylist()
ops = sorted(r['cdc_operation'] for r in rows)
assert ops.count('INSERT') == 30 and ops.count('MODIFY') == 10 and ops.count('REMOVE') == 5, ops
assert all(r['cdc_source_table'] == table for r in rows)
for r in rows:
    n = r['invoice_number']
    i = n - 1000
    if r['cdc_operation'] == 'INSERT':
        assert r['amount'] == decimal.Decimal(f'{i}.25') and r['customer_name'] == f'c{i}' and r['customer_tier'] == i % 3
        assert r['tags'] == ['a', 'b'] and r['blob'] == bytes([i, 0, 255]), r
    elif r['cdc_operation'] == 'MODIFY':
        assert r['amount'] == decimal.Decimal('99.99') and i < 10, r
    else:
        assert 25 <= i < 30 and r['amount'] == decimal.Decimal(f'{i}.25'), r
print('OK')
"#;
    assert_eq!(py(check, &[&bucket, &table]), "OK");
}

/// Freshness with a 5 s flush age: from a put until the row is an object on S3. Measured and
/// printed (run with --nocapture to see it), never asserted.
#[test]
fn freshness_from_put_to_s3_is_measured() {
    if skip_without_servers() {
        return;
    }
    let bucket = stream_name("fresh").to_lowercase();
    create_bucket(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 5, 36, &[]);
    let name = stream_name("fresh");
    ktool(&["create", &name, "1"]);
    let lake = format!("s3://{bucket}/lake");
    let (run, addr) = start_listening(
        |addr| {
            let mut cmd = bin();
            cmd.args(["consume", "--stream", &name, "-o", &lake]).args([
                "--max-age",
                "5s",
                "--json",
                "--no-progress",
                "--metrics",
                addr,
            ]);
            Running::start(cmd)
        },
        "/metrics",
    );
    let c = Consumer { run, metrics: addr };
    // Wait until the consumer is reading (its shard lag gauge exists), so startup is not counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(&c.metrics, "/metrics")
        .unwrap_or_default()
        .contains("ddb_lake_shard_lag_milliseconds")
    {
        assert!(
            Instant::now() < deadline,
            "the consumer did not start reading"
        );
        std::thread::sleep(Duration::from_millis(100)); // polling a condition, bounded
    }
    let put_at = Instant::now();
    ktool(&["put", &name, s(&input), "0", "1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s3_keys(&bucket, "lake/orders/")
        .iter()
        .any(|k| k.ends_with(".parquet"))
    {
        assert!(Instant::now() < deadline, "the row never reached S3");
        std::thread::sleep(Duration::from_millis(50)); // polling a condition, bounded
    }
    let freshness = put_at.elapsed();
    eprintln!(
        "freshness with max_age 5s: {:.2} s from put to object on S3",
        freshness.as_secs_f64()
    );
    let summary = stop(c);
    assert_eq!(summary["records_in"], 1);
}

#[test]
fn a_split_and_a_merge_while_the_consumer_runs() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(
        &input,
        900,
        37,
        &["--hours", "1", "--start", "2026-11-01T08:00:00Z"],
    );
    let name = stream_name("live-reshard");
    ktool(&["create", &name, "2"]);
    let lake = dir.path().join("lake");
    let c = consume(&name, &lake);
    ktool(&["put", &name, s(&input), "0", "300"]);
    wait_for_rows(&lake, 300);
    ktool(&["split", &name, "shardId-000000000000"]);
    ktool(&["put", &name, s(&input), "300", "600"]);
    wait_for_rows(&lake, 600);
    ktool(&["merge", &name]);
    ktool(&["put", &name, s(&input), "600", "900"]);
    wait_for_rows(&lake, 900);
    let summary = stop(c);
    assert_eq!(summary["records_in"], 900);
    assert_exactly_once(&lake, &name, 900);
    // The closed parents are finished in the checkpoint; the open shards hold their last record.
    assert_eq!(finished_shards(&lake, &name), 3);
}
