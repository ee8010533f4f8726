//! A table's own DynamoDB stream as the source (`--dynamodb-stream`), on DynamoDB Local's real
//! DynamoDB Streams API: every stream view type, checkpoints across runs, the table name and the
//! stream ARN naming the same stream, `consume` until stopped and `status`; the lake read back
//! with pyarrow and DuckDB.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Creates `table` on DynamoDB Local with a stream of `view`, and makes changes to it:
/// `puts` inserts of items `0..puts`, then an update of the first `updates` and a delete of the
/// last `deletes`. Prints the stream's ARN.
const CHANGES: &str = r#"
import boto3, os, sys
ddb = boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1')
t, view, first, puts, updates, deletes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
if view != '-':
    ddb.create_table(TableName=t, KeySchema=[{'AttributeName': 'Id', 'KeyType': 'HASH'}],
        AttributeDefinitions=[{'AttributeName': 'Id', 'AttributeType': 'N'}],
        BillingMode='PAY_PER_REQUEST', StreamSpecification={'StreamEnabled': True, 'StreamViewType': view})
for i in range(first, first + puts):
    ddb.put_item(TableName=t, Item={'Id': {'N': str(i)}, 'Amount': {'N': f'{i}.5'},
        'Customer': {'M': {'name': {'S': f'c{i}'}}}, 'Tags': {'SS': ['b', 'a']}, 'Blob': {'B': bytes([i % 256, 0])}})
for i in range(first, first + updates):
    ddb.update_item(TableName=t, Key={'Id': {'N': str(i)}}, UpdateExpression='SET Amount = :a',
        ExpressionAttributeValues={':a': {'N': '99.25'}})
for i in range(first + puts - deletes, first + puts):
    ddb.delete_item(TableName=t, Key={'Id': {'N': str(i)}})
print(ddb.describe_table(TableName=t)['Table']['LatestStreamArn'])
"#;

/// Checks the lake under argv[1] for table argv[2] written from a stream of view argv[3]:
/// argv[4] inserts, argv[5] updates of the first ones, argv[6] deletes of the last ones, every
/// change once (by event id), values as the view type carries them, all in the table's own
/// folder; DuckDB counts the same.
const CHECK: &str = r#"
import os, sys, glob, decimal, duckdb
import pyarrow.parquet as pq, pyarrow as pa
lake, table, view, puts, updates, deletes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
files = sorted(glob.glob(f'{lake}/**/*.parquet', recursive=True))
t = pa.concat_tables([pq.read_table(f) for f in files], promote_options='default')
rows = [r for r in t.to_pylist() if r['cdc_source_table'] == table]
own = [f for f in files if table in set(pq.read_table(f, columns=['cdc_source_table']).column(0).to_pylist())]
folders = set(os.path.relpath(f, lake).split(os.sep)[0] for f in own)
assert len(folders) == 1, folders
ids = [r['cdc_event_id'] for r in rows]
assert len(ids) == len(set(ids)) == puts + updates + deletes, (len(ids), len(set(ids)))
ops = [r['cdc_operation'] for r in rows]
assert (ops.count('INSERT'), ops.count('MODIFY'), ops.count('REMOVE')) == (puts, updates, deletes), ops
new = view in ('NEW_IMAGE', 'NEW_AND_OLD_IMAGES')
old = view in ('OLD_IMAGE', 'NEW_AND_OLD_IMAGES')
for r in rows:
    i, op = r['id'], r['cdc_operation']
    amount = r.get('amount')
    if op == 'INSERT':
        assert amount == (decimal.Decimal(f'{i}.5') if new else None), r
        if new:
            assert r['customer_name'] == f'c{i}' and r['tags'] == ['a', 'b'] and r['blob'] == bytes([i % 256, 0]), r
    elif op == 'MODIFY':
        assert amount == (decimal.Decimal('99.25') if new else None), r
        if view == 'OLD_IMAGE':
            # The before-image, the only one such a stream carries: kept in old_ columns.
            assert r['old_amount'] == decimal.Decimal(f'{i}.5'), r
    else:
        assert amount == (decimal.Decimal(f'{i}.5') if old else None), r
if view == 'KEYS_ONLY':
    assert 'amount' not in t.column_names, t.column_names
n = duckdb.execute(f"select count(distinct cdc_event_id) from read_parquet('{lake}/**/*.parquet', union_by_name=true) where cdc_source_table = ?", [table]).fetchone()[0]
assert n == len(rows), n
print('OK')
"#;

fn changes(table: &str, view: &str, first: u32, puts: u32, updates: u32, deletes: u32) -> String {
    let n = |v: u32| v.to_string();
    py(
        CHANGES,
        &[table, view, &n(first), &n(puts), &n(updates), &n(deletes)],
    )
}

fn check(lake: &Path, table: &str, view: &str, puts: u32, updates: u32, deletes: u32) {
    let n = |v: u32| v.to_string();
    let out = py(
        CHECK,
        &[s(lake), table, view, &n(puts), &n(updates), &n(deletes)],
    );
    assert_eq!(out, "OK", "{view}");
}

#[test]
fn every_stream_view_type_reaches_the_lake_exactly_once_across_runs() {
    if skip_without_servers() {
        return;
    }
    for view in ["NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY"] {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let table = unique("Items");
        let export = |source: &str| export_json(&["--dynamodb-stream", source, "-o", s(&lake)], 0);
        let arn = changes(&table, view, 0, 20, 6, 4);
        assert!(arn.starts_with("arn:aws:dynamodb:"), "{arn}");
        // By the table's name: its latest stream.
        let summary = export(&table);
        assert_eq!(summary["records_in"], 30, "{view}: {summary}");
        check(&lake, &table, view, 20, 6, 4);
        // Nothing new: the checkpoint holds.
        let again = export(&table);
        assert_eq!(again["records_in"], 0, "{view}: {again}");
        // More changes, read by the stream's ARN: the same checkpoint, only the new ones.
        changes(&table, "-", 100, 5, 2, 1);
        let more = export(&arn);
        assert_eq!(more["records_in"], 8, "{view}: {more}");
        check(&lake, &table, view, 25, 8, 5);
    }
}

#[test]
fn consume_reads_a_dynamodb_stream_until_stopped_and_status_shows_its_shards() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = unique("Live");
    changes(&table, "NEW_AND_OLD_IMAGES", 0, 10, 0, 0);
    let mut cmd = bin();
    cmd.args(["consume", "--dynamodb-stream", &table, "-o", s(&lake)])
        .args(["--max-age", "1s", "--json", "--no-progress"]);
    let mut run = Running::start(cmd);
    // Changes made while it runs reach the lake too.
    changes(&table, "-", 10, 5, 3, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while parquet_rows(&lake) < 20 {
        assert!(!run.exited(), "consume exited early");
        assert!(
            Instant::now() < deadline,
            "the changes never reached the lake"
        );
        std::thread::sleep(Duration::from_millis(100)); // polling a condition, bounded
    }
    run.terminate();
    let ended = run.wait();
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    let summary: serde_json::Value = serde_json::from_str(&ended.stdout).expect("JSON summary");
    assert_eq!(summary["records_in"], 20, "{summary}");
    check(&lake, &table, "NEW_AND_OLD_IMAGES", 15, 3, 2);

    let status = run_ok(
        &[
            "status",
            "--dynamodb-stream",
            &table,
            "-o",
            s(&lake),
            "--json",
        ],
        0,
    );
    let rows: serde_json::Value = serde_json::from_str(&status).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty(), "{status}");
    assert!(
        rows.iter().all(|r| r["lag_ms"] == 0),
        "every shard read to its tip: {status}"
    );
    assert!(
        rows.iter().any(|r| r["checkpoint"].is_string()),
        "a shard's checkpoint: {status}"
    );
}

#[test]
fn a_table_without_a_stream_is_a_clear_error() {
    if skip_without_servers() {
        return;
    }
    let table = unique("NoStream");
    let create = r#"
import boto3, os, sys
ddb = boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1')
ddb.create_table(TableName=sys.argv[1], KeySchema=[{'AttributeName': 'Id', 'KeyType': 'HASH'}],
    AttributeDefinitions=[{'AttributeName': 'Id', 'AttributeType': 'N'}], BillingMode='PAY_PER_REQUEST')
print('ok')
"#;
    assert_eq!(py(create, &[&table]), "ok");
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["export", "--dynamodb-stream", &table, "-o", s(dir.path())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains(&format!("table {table} has no DynamoDB stream"))
            && err.contains("StreamEnabled=true"),
        "{err}"
    );
}

#[test]
fn one_stream_per_run_is_a_usage_rule() {
    let dir = tempfile::tempdir().unwrap();
    let out = s(dir.path());
    for line in [
        "export --stream a --dynamodb-stream b",
        "export --dynamodb-stream b --input x.jsonl",
        "consume",
        "status --stream a --dynamodb-stream b",
    ] {
        let mut args: Vec<&str> = line.split(' ').collect();
        args.extend(["-o", out]);
        let args = &args[..];
        let r = run(args);
        assert_eq!(
            r.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    let help = run_ok(&["export", "--help"], 0);
    assert!(
        help.contains("--dynamodb-stream") && help.contains("[env: DDB_LAKE_DYNAMODB_STREAM="),
        "{help}"
    );
}

#[test]
fn several_tables_in_one_run_each_to_its_own_lake_table() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let (a, b) = (unique("Orders"), unique("Customers"));
    changes(&a, "NEW_AND_OLD_IMAGES", 0, 12, 3, 2);
    changes(&b, "NEW_IMAGE", 0, 7, 1, 1);
    let both = export_json(
        &[
            "--dynamodb-stream",
            &a,
            "--dynamodb-stream",
            &b,
            "-o",
            s(&lake),
        ],
        0,
    );
    assert_eq!(both["records_in"], 26, "{both}");
    assert_eq!(
        both["checkpoints"].as_array().map(Vec::len),
        Some(2),
        "{both}"
    );
    check(&lake, &a, "NEW_AND_OLD_IMAGES", 12, 3, 2);
    check(&lake, &b, "NEW_IMAGE", 7, 1, 1);
    let checkpoints = std::fs::read_dir(lake.join("_ddb_lake/checkpoints"))
        .unwrap()
        .count();
    assert_eq!(checkpoints, 2, "one checkpoint per stream");
    let tables = std::fs::read_dir(&lake)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "_ddb_lake")
        .count();
    assert_eq!(tables, 2, "a folder per lake table");
    // Again, from the environment with a comma: nothing new for either.
    changes(&b, "-", 50, 2, 0, 0);
    let out = bin()
        .args(["export", "--json", "--no-progress", "-o", s(&lake)])
        .env("DDB_LAKE_DYNAMODB_STREAM", format!("{a},{b}"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["records_in"], 2, "{again}");
    check(&lake, &b, "NEW_IMAGE", 9, 1, 1);
    // The same table twice, and one checkpoint for several streams, are configuration errors.
    let twice = run(&["export", "--dynamodb-stream", &a, &a, "-o", s(&lake)]);
    assert_eq!(
        twice.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&twice.stderr)
    );
    assert!(String::from_utf8_lossy(&twice.stderr).contains("named twice"));
    let one_cp = run(&[
        "export",
        "--dynamodb-stream",
        &a,
        &b,
        "--checkpoint",
        s(&dir.path().join("cp.json")),
        "-o",
        s(&lake),
    ]);
    assert_eq!(
        one_cp.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&one_cp.stderr)
    );
}

/// `--start latest` on DynamoDB Streams (no AT_TIMESTAMP iterator there): every change made
/// after the start is read, once; changes stamped with the start's minute may be read too.
#[test]
fn a_start_at_latest_reads_every_change_after_it() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = unique("Latest");
    changes(&table, "NEW_IMAGE", 0, 5, 0, 0);
    let export = || {
        export_json(
            &[
                "--dynamodb-stream",
                &table,
                "--start",
                "latest",
                "-o",
                s(&lake),
            ],
            0,
        )
    };
    let first = export()["records_in"].as_u64().unwrap();
    assert!(first <= 5, "{first}");
    changes(&table, "-", 100, 3, 0, 0);
    let second = export()["records_in"].as_u64().unwrap();
    assert_eq!(
        second, 3,
        "the changes after the start, and only those, in the second run"
    );
    let rows = r#"
import sys, glob, pyarrow.parquet as pq, pyarrow as pa
t = pa.concat_tables([pq.read_table(f) for f in glob.glob(f'{sys.argv[1]}/**/*.parquet', recursive=True)], promote_options='default')
ids = t.column('id').to_pylist()
assert len(ids) == len(set(ids)), ids
print(len(ids), sum(1 for i in ids if i >= 100))
"#;
    assert_eq!(py(rows, &[s(&lake)]), format!("{} 3", first + 3));
}
