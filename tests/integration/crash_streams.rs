//! The crash harness on a table's own DynamoDB stream (DynamoDB Local) into S3 (moto): runs of
//! `consume --dynamodb-stream` and `export --dynamodb-stream` killed at random moments and at the
//! write protocol's worst moments while the table changes between them; then the lake is
//! compared with the stream, change by change: nothing missing, nothing twice, nothing pending.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::crash::{run_until, SMALL_FLUSHES};
use crate::helpers::*;

/// Creates table argv[1] (a stream of new and old images) when argv[2] is 0, then writes chunk
/// argv[2]: argv[3] new items, and deletes and rewrites (MODIFY) of the previous chunk's, each
/// item with 64 hex characters of payload (so data files pass the multipart threshold). Prints
/// the number of changes.
const WRITE: &str = r#"
import boto3, os, random, sys
ddb = boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1')
t, chunk, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if chunk == 0:
    ddb.create_table(TableName=t, KeySchema=[{'AttributeName': 'Id', 'KeyType': 'HASH'}],
        AttributeDefinitions=[{'AttributeName': 'Id', 'AttributeType': 'N'}], BillingMode='PAY_PER_REQUEST',
        StreamSpecification={'StreamEnabled': True, 'StreamViewType': 'NEW_AND_OLD_IMAGES'})
rng = random.Random(chunk)
def item(i, v):
    return {'Id': {'N': str(i)}, 'V': {'N': str(v)}, 'P': {'S': '%064x' % rng.getrandbits(256)}}
ops = [{'PutRequest': {'Item': item(chunk * n + j, 0)}} for j in range(n)]
if chunk:
    # The previous chunk's items: every fifth deleted, every other third rewritten.
    prev = (chunk - 1) * n
    ops += [{'DeleteRequest': {'Key': {'Id': {'N': str(prev + j)}}}} for j in range(0, n, 5)]
    ops += [{'PutRequest': {'Item': item(prev + j, chunk)}} for j in range(0, n, 3) if j % 5]
for k in range(0, len(ops), 25):
    left = {t: ops[k:k + 25]}
    while left:
        left = ddb.batch_write_item(RequestItems=left).get('UnprocessedItems') or None
print(len(ops))
"#;

/// Compares the lake under s3://argv[1]/lake with the stream of table argv[2]: every change of
/// the stream (read here with boto3, from the trim horizon) is one row with its event id, its
/// operation and its item's values; no other row; DuckDB counts the same; the checkpoint holds
/// no pending batch. Prints counts as JSON.
const CHECK: &str = r#"
import boto3, collections, io, json, os, sys, tempfile, duckdb
import pyarrow.parquet as pq
bucket, table = sys.argv[1], sys.argv[2]
ep = os.environ['AWS_ENDPOINT_URL_DYNAMODB']
ddb = boto3.client('dynamodb', endpoint_url=ep, region_name='us-east-1')
streams = boto3.client('dynamodbstreams', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB_STREAMS'], region_name='us-east-1')
s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'], region_name='us-east-1')
arn = ddb.describe_table(TableName=table)['Table']['LatestStreamArn']
want = {}
for shard in streams.describe_stream(StreamArn=arn)['StreamDescription']['Shards']:
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard['ShardId'], ShardIteratorType='TRIM_HORIZON')['ShardIterator']
    empty = 0
    while it and empty < 5:
        resp = streams.get_records(ShardIterator=it)
        for r in resp['Records']:
            img = r['dynamodb'].get('NewImage') or r['dynamodb'].get('OldImage')
            want[r['eventID']] = (r['eventName'], int(r['dynamodb']['Keys']['Id']['N']), img['P']['S'])
        empty = 0 if resp['Records'] else empty + 1
        it = resp.get('NextShardIterator')
keys = [o['Key'] for p in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix='lake/') for o in p.get('Contents', [])]
seen = collections.Counter()
c = collections.Counter()
for k in ('unexpected', 'wrong_values', 'files'):
    c[k] += 0
tmp = tempfile.mkdtemp()
for key in keys:
    if not key.endswith('.parquet'):
        continue
    body = s3.get_object(Bucket=bucket, Key=key)['Body'].read()
    with open(os.path.join(tmp, f"{c['files']}.parquet"), 'wb') as f:
        f.write(body)
    c['files'] += 1
    for r in pq.read_table(io.BytesIO(body)).to_pylist():
        seen[r['cdc_event_id']] += 1
        w = want.get(r['cdc_event_id'])
        if w is None:
            c['unexpected'] += 1
        elif (r['cdc_operation'], int(r['id']), r['p']) != w:
            c['wrong_values'] += 1
c['changes'] = len(want)
c['rows'] = sum(seen.values())
c['missing'] = sum(1 for e in want if e not in seen)
c['duplicated'] = sum(n - 1 for n in seen.values() if n > 1)
c['duckdb_rows'] = duckdb.execute(f"select count(*) from read_parquet('{tmp}/*.parquet', union_by_name=true)").fetchone()[0]
cp_keys = [k for k in keys if '/_ddb_lake/checkpoints/' in k]
c['checkpoints'] = len(cp_keys)
cp = json.loads(s3.get_object(Bucket=bucket, Key=cp_keys[0])['Body'].read()) if cp_keys else {}
c['pending'] = len(cp.get('pending', []))
c['incomplete_uploads'] = len(s3.list_multipart_uploads(Bucket=bucket).get('Uploads', []))
print(json.dumps(c))
"#;

#[test]
fn a_dynamodb_stream_killed_again_and_again_reaches_the_lake_exactly_once() {
    if skip_without_servers() {
        return;
    }
    let (chunks, per_chunk) = (12u64, 300u64);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ddb-lake.toml");
    std::fs::write(&config, SMALL_FLUSHES).unwrap();
    let table = unique("CrashStream");
    let bucket = unique("crashddb").to_lowercase();
    create_bucket(&bucket);
    let lake = format!("s3://{bucket}/lake");
    let stderr = dir.path().join("stderr.txt");
    let points = [
        "after-intent",
        "after-data",
        "mid-multipart",
        "after-manifest",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    let mut changes = 0u64;
    for i in 0..chunks {
        let written = py(WRITE, &[&table, &i.to_string(), &per_chunk.to_string()]);
        changes += written.parse::<u64>().unwrap();
        let scheduled = i % 3 == 2;
        let mut cmd = bin();
        if scheduled {
            cmd.args(["export", "--dynamodb-stream", &table]);
        } else {
            cmd.args(["consume", "--dynamodb-stream", &table, "--max-age", "1s"]);
        }
        cmd.args(["-o", &lake, "-c", s(&config), "--no-progress", "--json"]);
        cmd.env("DDB_LAKE_TEST_MIN_PART_SIZE", "16384");
        // Every other run dies at a point of the write protocol (each point in turn, a point
        // not reached yet first), the others at a random moment.
        let point = points
            .iter()
            .cycle()
            .skip(i as usize / 2)
            .take(points.len())
            .find(|p| !outcomes.contains_key(&format!("{p}: crashed at its failpoint")))
            .copied()
            .unwrap_or(points[i as usize / 2 % points.len()]);
        let deadline = if i % 2 == 1 {
            cmd.env("DDB_LAKE_FAILPOINT", format!("{point}:1"));
            Instant::now() + Duration::from_secs(20)
        } else {
            Instant::now() + Duration::from_millis(rng.random_range(300..3000))
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let how = run_until(child, deadline, &stderr);
        let kind = if i % 2 == 1 { point } else { "random" };
        eprintln!("run {i} ({kind}): {how}");
        *outcomes.entry(format!("{kind}: {how}")).or_default() += 1;
    }
    // A last scheduled run catches up.
    let out = bin()
        .args([
            "export",
            "--dynamodb-stream",
            &table,
            "-o",
            &lake,
            "-c",
            s(&config),
        ])
        .args(["--json", "--no-progress"])
        .env("DDB_LAKE_TEST_MIN_PART_SIZE", "16384")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let last: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("outcomes: {outcomes:?}\nlast run: {}", last["records_in"]);
    let check: serde_json::Value = serde_json::from_str(&py(CHECK, &[&bucket, &table])).unwrap();
    eprintln!("lake check: {check}");
    for problem in [
        "missing",
        "duplicated",
        "unexpected",
        "wrong_values",
        "pending",
    ] {
        assert_eq!(check[problem], 0, "{problem}: {check}");
    }
    assert_eq!(check["changes"], changes, "{check}");
    assert_eq!(check["rows"], check["changes"], "{check}");
    assert_eq!(check["duckdb_rows"], check["rows"], "{check}");
    assert_eq!(check["checkpoints"], 1, "{check}");
    let killed: u64 = outcomes
        .iter()
        .filter(|(k, _)| !k.ends_with("finished"))
        .map(|(_, n)| *n as u64)
        .sum();
    assert!(
        // At most one per file being written at a kill (`output.concurrent_writes`: 16).
        check["incomplete_uploads"].as_u64().unwrap() <= killed * 16,
        "{check}"
    );
    for point in points {
        assert!(
            outcomes.contains_key(&format!("{point}: crashed at its failpoint")),
            "{point}: {outcomes:?}"
        );
    }
}
