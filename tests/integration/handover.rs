//! `bootstrap`: a table's full export loaded, then the handover to its DynamoDB stream. End to
//! end on DynamoDB Local (which has no exports: `tests/python/export_table.py` scans the table
//! into AWS's export layout) with changes before, during and after the export; the refusals; and
//! the export call itself on moto (PITR off; an export started and followed to its end).

use std::path::Path;

use crate::helpers::*;

/// Changes to the table argv[1] in phase argv[2]; `create` also creates it (a stream of new and
/// old images). Prints the time after the phase, in milliseconds.
pub const CHANGE: &str = r#"
import boto3, os, sys, time
ddb = boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1')
t, phase = sys.argv[1], sys.argv[2]
def put(i, v):
    ddb.put_item(TableName=t, Item={'Id': {'N': str(i)}, 'Amount': {'N': f'{i}.{v}5'}, 'Version': {'N': str(v)},
        'Name': {'S': f'item {i} v{v}'}})
def delete(i):
    ddb.delete_item(TableName=t, Key={'Id': {'N': str(i)}})
if phase == 'create':
    ddb.create_table(TableName=t, KeySchema=[{'AttributeName': 'Id', 'KeyType': 'HASH'}],
        AttributeDefinitions=[{'AttributeName': 'Id', 'AttributeType': 'N'}], BillingMode='PAY_PER_REQUEST',
        StreamSpecification={'StreamEnabled': True, 'StreamViewType': 'NEW_AND_OLD_IMAGES'})
    for i in range(30): put(i, 0)
elif phase == 'during':
    for i in range(5): put(i, 1)
    for i in range(25, 30): delete(i)
    for i in range(100, 103): put(i, 1)
elif phase == 'after':
    for i in range(5, 10): put(i, 2)
    for i in range(20, 22): delete(i)
    for i in range(200, 202): put(i, 2)
    put(0, 3)
    delete(100)
    put(25, 4)
elif phase == 'later':
    put(7, 9)
    delete(200)
print(int(time.time() * 1000))
"#;

/// Checks the lake argv[1] for table argv[2], bootstrapped from an export at argv[3] ms that held
/// argv[4] items: one SNAPSHOT row per exported item; every change of the table's stream since
/// the export time's minute (read here with boto3, independently) exactly once; and the
/// handover rule (a key's latest stream row wins over its SNAPSHOT row) giving the table as a
/// Scan sees it now, in Python and in DuckDB SQL.
const CHECK: &str = r#"
import boto3, decimal, glob, os, sys, duckdb
import pyarrow as pa, pyarrow.parquet as pq
lake, table, t_ms, exported = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ep = os.environ['AWS_ENDPOINT_URL_DYNAMODB']
ddb = boto3.client('dynamodb', endpoint_url=ep, region_name='us-east-1')
streams = boto3.client('dynamodbstreams', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB_STREAMS'], region_name='us-east-1')
files = sorted(glob.glob(f'{lake}/**/*.parquet', recursive=True))
rows = [r for r in pa.concat_tables([pq.read_table(f) for f in files], promote_options='default').to_pylist()
        if r['cdc_source_table'] == table]
snap = [r for r in rows if r['cdc_operation'] == 'SNAPSHOT']
changes = [r for r in rows if r['cdc_operation'] != 'SNAPSHOT']
ids = [int(r['id']) for r in snap]
assert len(ids) == len(set(ids)) == exported, (len(ids), len(set(ids)), exported)
arn = ddb.describe_table(TableName=table)['Table']['LatestStreamArn']
records = []
for shard in streams.describe_stream(StreamArn=arn)['StreamDescription']['Shards']:
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard['ShardId'], ShardIteratorType='TRIM_HORIZON')['ShardIterator']
    empty = 0
    while it and empty < 5:
        resp = streams.get_records(ShardIterator=it)
        records += resp['Records']
        empty = 0 if resp['Records'] else empty + 1
        it = resp.get('NextShardIterator')
minute = t_ms // 60000 * 60000
since = {r['eventID'] for r in records if r['dynamodb']['ApproximateCreationDateTime'].timestamp() * 1000 >= minute}
got = [r['cdc_event_id'] for r in changes]
assert len(got) == len(set(got)), 'a change twice'
assert since <= set(got), ('missing changes', len(since - set(got)))
assert set(got) <= {r['eventID'] for r in records}, 'a change the stream does not have'
state = {int(r['id']): r for r in snap}
for r in sorted(changes, key=lambda r: int(r['cdc_sequence_number'])):
    if r['cdc_operation'] == 'REMOVE':
        state.pop(int(r['id']), None)
    else:
        state[int(r['id'])] = r
scan = [it for p in ddb.get_paginator('scan').paginate(TableName=table) for it in p['Items']]
now = {int(it['Id']['N']): (decimal.Decimal(it['Amount']['N']), int(it['Version']['N'])) for it in scan}
assert {i: (r['amount'], int(r['version'])) for i, r in state.items()} == now, 'the rule does not give the table'
sql = f"""
with ranked as (
  select id, amount, version, cdc_operation, row_number() over (partition by id
    order by cdc_operation <> 'SNAPSHOT' desc, cast(cdc_sequence_number as hugeint) desc nulls last) as n
  from read_parquet('{lake}/**/*.parquet', union_by_name=true) where cdc_source_table = ?)
select cast(id as bigint), amount, cast(version as bigint) from ranked where n = 1 and cdc_operation <> 'REMOVE'"""
duck = {i: (decimal.Decimal(a), v) for i, a, v in duckdb.execute(sql, [table]).fetchall()}
assert duck == now, 'DuckDB'
print(len(now), len(changes), len(since))
"#;

fn check(lake: &Path, table: &str, export_ms: &str, exported: usize) -> String {
    py(CHECK, &[s(lake), table, export_ms, &exported.to_string()])
}

#[test]
fn bootstrap_from_an_export_then_the_stream_gives_every_item_and_change_once() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = unique("Handover");
    py(CHANGE, &[&table, "create"]);
    // The export time; then changes made while the export "runs" (in it and in the stream),
    // then the export itself (a Scan), then changes after it.
    let export_ms = py(CHANGE, &[&table, "-"]);
    py(CHANGE, &[&table, "during"]);
    let folder = py_script(
        "export_table.py",
        &[s(&dir.path().join("exports")), &table, &export_ms],
    );
    py(CHANGE, &[&table, "after"]);
    // 30 put, 5 deleted and 3 added during the export.
    let exported = 28;
    let out = run_ok(
        &[
            "bootstrap",
            "--from-export",
            folder.trim(),
            "-o",
            s(&lake),
            "--handover-margin",
            "0s",
            "--json",
        ],
        0,
    );
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows: u64 = summary["rows_out"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(rows, exported as u64, "{summary}");
    assert_eq!(summary["exports"][0]["export_type"], "FULL_EXPORT");
    let h = &summary["checkpoint"]["handover"];
    assert_eq!(h["export_time_ms"].to_string(), export_ms, "{summary}");
    assert_eq!(h["start_ms"], h["export_time_ms"]);
    let shards = summary["checkpoint"]["shards"].as_object().unwrap();
    assert!(!shards.is_empty());
    assert!(shards
        .values()
        .all(|c| c["start_timestamp_ms"] == h["start_ms"] && c.get("sequence_number").is_none()));
    // The stream, from the checkpoint the bootstrap left.
    let first = export_json(&["--dynamodb-stream", &table, "-o", s(&lake)], 0);
    assert!(first["records_in"].as_u64().unwrap() >= 13, "{first}");
    let out = check(&lake, &table, &export_ms, exported);
    eprintln!("items, stream rows, changes since the export minute: {out}");
    // Later changes, read by the continuous consumer from the same checkpoint: only they.
    let before = parquet_rows(&lake);
    let mut cmd = bin();
    cmd.args(["consume", "--dynamodb-stream", &table, "-o", s(&lake)])
        .args(["--max-age", "1s", "--json", "--no-progress"]);
    let consumer = Running::start(cmd);
    py(CHANGE, &[&table, "later"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while parquet_rows(&lake) < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer wrote nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(100)); // polling the lake, bounded
    }
    consumer.terminate();
    let ended = consumer.wait();
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    let second: serde_json::Value = serde_json::from_str(&ended.stdout).unwrap();
    assert_eq!(second["records_in"], 2, "{second}");
    check(&lake, &table, &export_ms, exported);
    // A second bootstrap into a lake that reads the stream already is refused.
    let again = run(&[
        "bootstrap",
        "--from-export",
        folder.trim(),
        "-o",
        s(&lake),
        "--handover-margin",
        "0s",
    ]);
    assert_eq!(again.status.code(), Some(3));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds the progress"), "{err}");
}

#[test]
fn an_export_older_than_the_streams_retention_is_refused_before_loading() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = unique("Old");
    py(CHANGE, &[&table, "create"]);
    // An export from 2026-11-20, older than the 24 hours the stream keeps.
    let folder = py_script(
        "write_export.py",
        &[
            s(dir.path()),
            &table,
            "DYNAMODB_JSON",
            "FULL_EXPORT",
            "5",
            "1",
            "1",
        ],
    );
    let lake = dir.path().join("lake");
    let out = run(&["bootstrap", "--from-export", folder.trim(), "-o", s(&lake)]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("24 hours") && err.contains("trimmed"), "{err}");
    assert!(tree(&lake).is_empty(), "{:?}", tree(&lake));
    // An incremental export is not a start.
    let inc = py_script(
        "write_export.py",
        &[
            s(&dir.path().join("inc")),
            &table,
            "DYNAMODB_JSON",
            "INCREMENTAL_EXPORT",
            "5",
            "1",
            "1",
        ],
    );
    let out = run(&["bootstrap", "--from-export", inc.trim(), "-o", s(&lake)]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("incremental export"), "{err}");
}

/// On moto (argv[1] its endpoint): creates table argv[2] with a stream, point-in-time recovery
/// on when argv[3] is `on`, and the bucket argv[4]; or, with argv[3] `exports`, prints the
/// table's exports' states.
const MOTO: &str = r#"
import boto3, sys
ep, t, what = sys.argv[1], sys.argv[2], sys.argv[3]
ddb = boto3.client('dynamodb', endpoint_url=ep, region_name='us-east-1')
if what == 'exports':
    arn = ddb.describe_table(TableName=t)['Table']['TableArn']
    arns = [e['ExportArn'] for e in ddb.list_exports(TableArn=arn)['ExportSummaries']]
    print(' '.join(ddb.describe_export(ExportArn=a)['ExportDescription']['ExportStatus'] for a in arns))
    sys.exit()
ddb.create_table(TableName=t, KeySchema=[{'AttributeName': 'Id', 'KeyType': 'HASH'}],
    AttributeDefinitions=[{'AttributeName': 'Id', 'AttributeType': 'S'}], BillingMode='PAY_PER_REQUEST',
    StreamSpecification={'StreamEnabled': True, 'StreamViewType': 'NEW_AND_OLD_IMAGES'})
for i in range(3):
    ddb.put_item(TableName=t, Item={'Id': {'S': f'k{i}'}})
if what == 'on':
    ddb.update_continuous_backups(TableName=t, PointInTimeRecoverySpecification={'PointInTimeRecoveryEnabled': True})
print('ok')
"#;

#[test]
fn the_export_call_needs_pitr_and_is_followed_to_its_end() {
    if skip_without_servers() {
        return;
    }
    let moto = std::env::var("AWS_ENDPOINT_URL_S3").unwrap();
    let bucket = unique("boot");
    create_bucket(&bucket);
    let output = format!("s3://{bucket}/lake");
    let bootstrap = |table: &str| {
        bin()
            .env("AWS_ENDPOINT_URL_DYNAMODB", &moto)
            .env("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", &moto)
            .args([
                "bootstrap",
                "--table",
                table,
                "-o",
                &output,
                "--handover-margin",
                "0s",
                "--export-poll",
                "50ms",
            ])
            .output()
            .unwrap()
    };
    // Point-in-time recovery off: said so, with the command that turns it on; nothing started.
    let off = unique("NoPitr");
    py(MOTO, &[&moto, &off, "off"]);
    let out = bootstrap(&off);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("point-in-time recovery") && err.contains("update-continuous-backups"),
        "{err}"
    );
    assert_eq!(py(MOTO, &[&moto, &off, "exports"]), "");
    // On: the export is started into the output's bucket and followed until it completes.
    // moto writes no manifests (it is simplified), so the load stops there, saying where the
    // manifest should be, and no checkpoint is left.
    let on = unique("Pitr");
    py(MOTO, &[&moto, &on, "on"]);
    let out = bootstrap(&on);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("completed, but its manifest-summary.json is not at s3://"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "s3://{bucket}/lake/_ddb_lake/exports/AWSDynamoDB/"
        )),
        "{err}"
    );
    assert_eq!(py(MOTO, &[&moto, &on, "exports"]), "COMPLETED");
    let keys = s3_keys(&bucket, "lake/");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("lake/_ddb_lake/exports/AWSDynamoDB/")),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("checkpoints")), "{keys:?}");
}

#[test]
fn a_handover_to_a_kinesis_stream_starts_its_shards_at_the_export_time() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = unique("ToKinesis");
    let stream = unique("handover");
    py(CHANGE, &[&table, "create"]);
    py_script("kinesis_tool.py", &["create", &stream, "2"]);
    let input = dir.path().join("records.jsonl");
    generate(&input, 20, 5, &[]);
    // Ten records arrive before the export time, ten after the bootstrap.
    py_script("kinesis_tool.py", &["put", &stream, s(&input), "0", "10"]);
    let export_ms = (py(CHANGE, &[&table, "-"]).parse::<i64>().unwrap() + 1).to_string();
    let folder = py_script(
        "export_table.py",
        &[s(&dir.path().join("exports")), &table, &export_ms],
    );
    let summary: serde_json::Value = serde_json::from_str(&run_ok(
        &[
            "bootstrap",
            "--from-export",
            folder.trim(),
            "--stream",
            &stream,
            "-o",
            s(&lake),
            "--handover-margin",
            "0s",
            "--json",
        ],
        0,
    ))
    .unwrap();
    assert_eq!(summary["records_in"], 30, "{summary}");
    let cp = &summary["checkpoint"];
    assert_eq!(cp["stream"], stream.as_str());
    assert_eq!(cp["shards"].as_object().unwrap().len(), 2, "{cp}");
    py_script("kinesis_tool.py", &["put", &stream, s(&input), "10", "20"]);
    // The next run on the stream reads from the export time: only the ten after it.
    let next = export_json(&["--stream", &stream, "-o", s(&lake)], 0);
    assert_eq!(next["records_in"], 10, "{next}");
    assert_eq!(parquet_rows(&lake), 30 + 10);
}
