//! DynamoDB Streams' 24-hour retention, on DynamoDB Local: a proxy in front of its Streams API
//! (tests/python/streams_trim.py) plays the records of a shard trimmed below a sequence number,
//! as the service trims them after a day (GetRecords without them, TrimmedDataAccessException
//! for an iterator after one of them). A run whose start the shard no longer holds stops with
//! exit 1, naming the shard and the range, until the loss is acknowledged; a start that the shard
//! still holds is read whole however old. And TTL deletes as DynamoDB Local makes them.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::helpers::*;

/// Creates `table` (argv[1]) with a NEW_IMAGE stream when argv[2] is 0, puts items
/// argv[2]..argv[2]+argv[3], then prints the stream's shard and its records' sequence numbers.
/// With argv[4] = `ttl`, the table's TTL attribute is `Expires`, and item 0 expired an hour ago.
const PUT: &str = r#"
import boto3, os, sys, time
ddb = boto3.client('dynamodb', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB'], region_name='us-east-1')
st = boto3.client('dynamodbstreams', endpoint_url=os.environ['AWS_ENDPOINT_URL_DYNAMODB_STREAMS'], region_name='us-east-1')
t, first, n, ttl = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == 'ttl'
if first == 0:
    ddb.create_table(TableName=t, KeySchema=[{'AttributeName': 'Id', 'KeyType': 'HASH'}],
        AttributeDefinitions=[{'AttributeName': 'Id', 'AttributeType': 'N'}],
        BillingMode='PAY_PER_REQUEST', StreamSpecification={'StreamEnabled': True, 'StreamViewType': 'NEW_IMAGE'})
    if ttl:
        ddb.update_time_to_live(TableName=t, TimeToLiveSpecification={'Enabled': True, 'AttributeName': 'Expires'})
for i in range(first, first + n):
    item = {'Id': {'N': str(i)}, 'Amount': {'N': f'{i}.5'}}
    if ttl and i == 0:
        item['Expires'] = {'N': str(int(time.time()) - 3600)}
    ddb.put_item(TableName=t, Item=item)
arn = ddb.describe_table(TableName=t)['Table']['LatestStreamArn']
shard = st.describe_stream(StreamArn=arn)['StreamDescription']['Shards'][0]['ShardId']
seqs, it = [], st.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType='TRIM_HORIZON')['ShardIterator']
while it:
    page = st.get_records(ShardIterator=it)
    if not page['Records']:
        break
    seqs += [r['dynamodb']['SequenceNumber'] for r in page['Records']]
    it = page.get('NextShardIterator')
print(shard, *seqs)
"#;

/// Puts items `first..first + n` (creating the table when `first` is 0); returns the stream's
/// shard and every sequence number in it so far.
fn put(table: &str, first: u32, n: u32, ttl: bool) -> (String, Vec<String>) {
    let ttl = if ttl { "ttl" } else { "-" };
    let out = py(PUT, &[table, &first.to_string(), &n.to_string(), ttl]);
    let mut parts = out.split_whitespace().map(str::to_string);
    (parts.next().expect("a shard"), parts.collect())
}

/// `export --dynamodb-stream TABLE` into `lake`, with `args`, through `streams` (the proxy's
/// URL) when given.
fn export(table: &str, lake: &Path, streams: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut cmd = bin();
    if let Some(url) = streams {
        cmd.env("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", url);
    }
    cmd.args(["export", "--dynamodb-stream", table, "-o", s(lake)])
        .args(["--json", "--no-progress"])
        .args(args)
        .output()
        .unwrap()
}

/// The JSON summary of a run that exited with `code`.
fn summary(out: &std::process::Output, code: i32) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON summary")
}

/// Two days, in milliseconds: how much older the proxy makes shards look.
const TWO_DAYS_MS: i64 = 2 * 86_400_000;

/// The proxy that trims `shard` below `seq`, making every shard look `age_ms` older.
fn trimming(shard: &str, seq: &str, age_ms: i64) -> (Proxy, String) {
    let upstream =
        std::env::var("AWS_ENDPOINT_URL_DYNAMODB_STREAMS").expect("run with scripts/test.sh");
    let age = age_ms.to_string();
    Proxy::start(
        "streams_trim.py",
        &["0", &upstream, &age, &format!("{shard}={seq}")],
    )
}

/// The id `shard` has behind the proxy that makes it look `age_ms` older.
fn aged(shard: &str, age_ms: i64) -> String {
    let rest = shard.strip_prefix("shardId-").unwrap();
    let (created, tail) = rest.split_once('-').unwrap();
    format!(
        "shardId-{:020}-{tail}",
        created.parse::<i64>().unwrap() - age_ms
    )
}

/// The shards' progress in a checkpoint file.
fn shards(cp: &Path) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(cp).unwrap()).unwrap();
    v["shards"].clone()
}

/// The items in the lake, sorted.
fn ids(lake: &Path) -> String {
    let code = r#"
import sys, glob, pyarrow.parquet as pq, pyarrow as pa
t = pa.concat_tables([pq.read_table(f) for f in glob.glob(f'{sys.argv[1]}/*/**/*.parquet', recursive=True)], promote_options='default')
print(sorted(t.column('id').to_pylist()))
"#;
    py(code, &[s(lake)])
}

#[test]
fn changes_trimmed_before_they_were_read_stop_the_run_until_acknowledged() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = unique("Trimmed");
    put(&table, 0, 5, false);
    assert_eq!(
        summary(&export(&table, &lake, None, &[]), 0)["records_in"],
        5
    );
    // Five more changes; the lake was away for a day, and the shard kept only the last three.
    let (shard, seqs) = put(&table, 5, 5, false);
    assert_eq!(seqs.len(), 10, "{seqs:?}");
    let (_proxy, url) = trimming(&shard, &seqs[7], 0);
    let cp = lake.join(format!("_ddb_lake/checkpoints/dynamodb-{table}.json"));
    let before = shards(&cp);
    let out = export(&table, &lake, Some(&url), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for part in [
        format!("shard {shard}"),
        format!("after sequence number {}", seqs[4]),
        format!("before sequence number {}", seqs[7]),
        format!("--accept-lost-shard {shard}"),
    ] {
        assert!(err.contains(&part), "{part} not in: {err}");
    }
    assert_eq!(shards(&cp), before, "no progress saved");
    assert_eq!(ids(&lake), "[0, 1, 2, 3, 4]");
    // Acknowledged: read on from the oldest record left.
    let accepted = export(&table, &lake, Some(&url), &["--accept-lost-shard", &shard]);
    assert_eq!(summary(&accepted, 0)["records_in"], 3);
    assert_eq!(ids(&lake), "[0, 1, 2, 3, 4, 7, 8, 9]");
    // Later runs go on from the new checkpoint, without the flag.
    let later = export(&table, &lake, Some(&url), &[]);
    assert_eq!(summary(&later, 0)["records_in"], 0);
}

/// A start saved more than a day ago (a bootstrap, say, and no run since) in a shard made two
/// days ago whose oldest records are gone: the changes since the start may be missing, and the
/// run says so. A shard made since the start has lost nothing: it is read whole.
#[test]
fn a_start_over_a_day_ago_is_read_only_while_the_shard_can_hold_everything_since() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = unique("DayOld");
    let (shard, seqs) = put(&table, 0, 5, false);
    let day_ago = (chrono::Utc::now() - chrono::Duration::hours(25)).to_rfc3339();
    let start = ["--start", "at_timestamp", "--start-timestamp", &day_ago];
    {
        let lake = dir.path().join("old-shard");
        let (_proxy, url) = trimming(&shard, &seqs[2], TWO_DAYS_MS);
        let out = export(&table, &lake, Some(&url), &start);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let named = format!("shard {}", aged(&shard, TWO_DAYS_MS));
        assert!(
            err.contains(&named)
                && err.contains("where the shard's reading starts")
                && err.contains(&format!("before sequence number {}", seqs[2])),
            "{err}"
        );
        assert_eq!(parquet_rows(&lake), 0, "nothing written");
    }
    let lake = dir.path().join("young-shard");
    assert_eq!(
        summary(&export(&table, &lake, None, &start), 0)["records_in"],
        5
    );
    assert_eq!(ids(&lake), "[0, 1, 2, 3, 4]");
}

/// DynamoDB Local 3.3.0 deletes expired items, but writes the deletes' stream records with the
/// event name `UNKNOWN_TO_SDK_VERSION` and no `userIdentity` (AWS writes REMOVE with the TTL
/// service's identity, which the unit tests cover). Such a record is no change record we know:
/// it goes to the error output with its shard, sequence number and bytes, and the rest is read.
#[test]
fn ttl_deletes_as_dynamodb_local_writes_them_reach_the_error_output() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let table = unique("Expiring");
    let (shard, mut seqs) = put(&table, 0, 2, true);
    let deadline = Instant::now() + Duration::from_secs(300);
    while seqs.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "DynamoDB Local did not delete the expired item"
        );
        std::thread::sleep(Duration::from_secs(2)); // polling the server's TTL sweep, bounded
        seqs = put(&table, 2, 0, true).1;
    }
    // Exit 2: the run went through, and a record went to the error output.
    let sum = summary(&export(&table, &lake, None, &[]), 2);
    assert_eq!(sum["records_in"], 3, "{sum}");
    assert_eq!(sum["errors"]["invalid_record"], 1, "{sum}");
    assert_eq!(ids(&lake), "[0, 1]");
    let entries: Vec<serde_json::Value> = tree(&lake)
        .iter()
        .filter(|f| f.starts_with("_errors/invalid_record/"))
        .flat_map(|f| {
            let text = std::fs::read_to_string(lake.join(f)).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e["source"]["shard"], shard.as_str(), "{e}");
    assert_eq!(e["source"]["sequence_number"], seqs[2].as_str(), "{e}");
    let data: serde_json::Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["eventName"], "UNKNOWN_TO_SDK_VERSION", "{data}");
    assert_eq!(data["dynamodb"]["Keys"]["Id"]["N"], "0", "{data}");
}
