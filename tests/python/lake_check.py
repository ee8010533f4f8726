"""Compares a lake on S3 with the Kinesis stream it was made from, record by record, for the crash
and fault tests.

usage: lake_check.py BUCKET PREFIX STREAM TABLE [--layout hourly|daily] [--time event|processing]
                     [--compacted]

Reads every record of the stream (all shards, from the trim horizon; KPL aggregates split into
their user records) and every object under PREFIX. A user record that is a DynamoDB change must
be exactly one row, with its event id, key, status and total, in the folder its time gives
(event time, or arrival time with --time processing); any other must be exactly one error entry
with its original bytes. Every data file is read whole with pyarrow and its rows counted again by
DuckDB; its columns must be a prefix of the table's remembered schema. Also checked: every data
file in exactly one COPY manifest with its length, the final checkpoint (nothing pending, closed
shards finished, open shards checkpointed at their last record), incomplete multipart uploads
(counted), and hour markers (each lists every on-time file of its hour).

With --compacted (hours compacted by the consumer): the staged files of hours not complete yet are
read as their hour's rows (they are in no manifest); a staged file of a complete hour, or an
on-time file in a table folder that is not a compacted one, is a problem (`compaction_bad`); and
each compacted file's rows must be sorted by key (OrderId), then by event time.

Prints one JSON object of counts; the caller asserts (no `assert` here, so PYTHONOPTIMIZE cannot
turn a check off). An exact lake has zero in every problem count.
"""
import argparse
import collections
import datetime
import io
import json
import os
import sys
import tempfile
import tomllib

import boto3
import duckdb
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kpl  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("bucket")
ap.add_argument("prefix")
ap.add_argument("stream")
ap.add_argument("table")
ap.add_argument("--layout", default="hourly", choices=["hourly", "daily"])
ap.add_argument("--time", default="event", choices=["event", "processing"])
ap.add_argument("--compacted", action="store_true")
args = ap.parse_args()
bucket, prefix, stream, table = args.bucket, args.prefix.strip("/"), args.stream, args.table
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")
problems = collections.Counter()
details = []


def problem(kind, text):
    problems[kind] += 1
    if len(details) < 20:
        details.append(f"{kind}: {text}")


def folder_of(ms):
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    day = f"{table}/{t.year:04}/{t.month:02}/{t.day:02}"
    return day if args.layout == "daily" else f"{day}/{t.hour:02}"


# The stream's user records: (shard, sequence number, KPL index or None) -> what they must become.
expected = {}
last_of_shard = {}
open_shards = set()
for shard in k.list_shards(StreamName=stream)["Shards"]:
    sid = shard["ShardId"]
    if "EndingSequenceNumber" not in shard["SequenceNumberRange"]:
        open_shards.add(sid)
    it = k.get_shard_iterator(StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        r = k.get_records(ShardIterator=it, Limit=10000)
        for rec in r["Records"]:
            seq = rec["SequenceNumber"]
            last_of_shard[sid] = seq
            arrival_ms = int(rec["ApproximateArrivalTimestamp"].timestamp() * 1000)
            parts = kpl.deaggregate(rec["Data"])
            for sub, data in enumerate(parts) if parts is not None else [(None, rec["Data"])]:
                try:
                    change = json.loads(data)
                    ms = change["dynamodb"]["ApproximateCreationDateTime"]
                    if change["dynamodb"].get("ApproximateCreationDateTimePrecision") == "MICROSECOND":
                        ms = ms / 1000
                    # A REMOVE's row carries the item as it was (OldImage).
                    image = change["dynamodb"].get("NewImage") or change["dynamodb"].get("OldImage") or {}
                    want = {
                        "row": True,
                        "event_id": change["eventID"],
                        "order_id": change["dynamodb"]["Keys"]["OrderId"]["S"],
                        "status": image.get("Status", {}).get("S"),
                        "total": image.get("Total", {}).get("N"),
                        "folder": folder_of(arrival_ms if args.time == "processing" else ms),
                    }
                except (ValueError, KeyError, TypeError) as e:
                    want = {"row": False, "data": bytes(data), "why": repr(e)}
                expected[(sid, seq, sub)] = want
        it = r.get("NextShardIterator")
        if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
            break


def objects(under):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=under):
        for o in page.get("Contents", []):
            out[o["Key"]] = o["Size"]
    return out


def body(key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def same_number(a, b):
    if a is None or b is None:
        return a is None and b is None
    return float(a) == float(b)


state = f"{prefix}/_ddb_lake"
schema_text = body(f"{state}/schemas/{table}.toml").decode()
schema_columns = [c["name"] for c in tomllib.loads(schema_text)["columns"]]

seen = collections.Counter()
rows = errors = 0
data = objects(f"{prefix}/{table}/")
# Staged files (compaction): {state}/compacting/{table}/{hours since the epoch}/{name}.
staged = objects(f"{state}/compacting/{table}/")
local = tempfile.mkdtemp()
for n, key in enumerate(sorted(data) + sorted(staged)):
    raw = body(key)
    try:
        t = pq.read_table(io.BytesIO(raw))  # every column, every row group
    except Exception as e:  # any object that is not whole Parquet is a problem
        problem("unreadable", f"{key}: {e}")
        continue
    with open(os.path.join(local, f"{n}.parquet"), "wb") as f:
        f.write(raw)
    names = t.column_names
    if names != schema_columns[: len(names)]:
        problem("schema_bad", f"{key}: columns {names} are not a prefix of the remembered {schema_columns}")
    folder = key[len(prefix) + 1:].rsplit("/", 1)[0]
    name = key.rsplit("/", 1)[1]
    if key in staged:
        hour = int(key[len(f"{state}/compacting/{table}/"):].split("/")[0])
        folder = folder_of(hour * 3_600_000)
        if not args.compacted:
            problem("compaction_bad", f"{key}: staged without compaction")
    elif args.compacted and not name.startswith(f"{table}-compacted-") and "-late-" not in name:
        problem("compaction_bad", f"{key}: an on-time file that is not compacted")
    if "-compacted-" in name:
        order = [(r["order_id"], r["cdc_event_time"]) for r in t.select(["order_id", "cdc_event_time"]).to_pylist()]
        if order != sorted(order):
            problem("compaction_bad", f"{key}: rows not sorted by key, then time")
    for row in t.to_pylist():
        sub = row.get("cdc_subsequence_number")
        rk = (row["cdc_shard_id"], row["cdc_sequence_number"], sub)
        seen[rk] += 1
        rows += 1
        want = expected.get(rk)
        if want is None:
            continue
        if not want["row"]:
            problem("wrong_form", f"{key}: {rk} is a row but should be an error entry ({want['why']})")
            continue
        if (row.get("cdc_event_id"), row.get("order_id"), row.get("status")) != (want["event_id"], want["order_id"], want["status"]) or not same_number(row.get("total"), want["total"]):
            problem("wrong_values", f"{key}: {rk}: {row.get('cdc_event_id')} {row.get('order_id')} {row.get('status')} {row.get('total')} vs {want}")
        if folder != want["folder"]:
            problem("wrong_folder", f"{key}: {rk} belongs in {want['folder']}")
duckdb_rows = duckdb.execute(f"select count(*) from read_parquet('{local}/*.parquet')").fetchone()[0] if data else 0

for key in objects(f"{prefix}/_errors/"):
    for line in body(key).splitlines():
        entry = json.loads(line)
        src = entry["source"]
        rk = (src["shard"], src["sequence_number"], src.get("subsequence_number"))
        seen[rk] += 1
        errors += 1
        want = expected.get(rk)
        if want is None:
            continue
        if want["row"]:
            problem("wrong_form", f"{key}: {rk} is an error entry ({entry['reason']}) but should be a row")
        elif entry.get("data", "").encode() != want["data"]:
            problem("wrong_values", f"{key}: {rk}: the entry's data is not the record's bytes")

listed = collections.Counter()
for key in objects(f"{state}/manifests/{table}/"):
    for e in json.loads(body(key))["entries"]:
        rel = e["url"].split(f"s3://{bucket}/", 1)[1]
        listed[rel] += 1
        if data.get(rel) != e["meta"]["content_length"]:
            problem("manifest_bad", f"{key}: {rel} length {e['meta']['content_length']} vs {data.get(rel)}")

# Hour markers: each lists every on-time file of its hour, and only files that exist.
markers = 0
for key in objects(f"{state}/hours/{table}/"):
    if not key.endswith("/_COMPLETE.json"):
        continue
    markers += 1
    marker = json.loads(body(key))
    listed_files = {e["url"].split(f"s3://{bucket}/", 1)[1] for e in json.loads(body(marker["manifest"].split(f"s3://{bucket}/", 1)[1]))["entries"]}
    hour = key[len(f"{state}/hours/"):].rsplit("/", 1)[0]
    for f in data:
        if f.startswith(f"{prefix}/{hour}/") and "-late-" not in f and f not in listed_files:
            problem("marker_bad", f"{key} does not list {f}")
    for f in listed_files - set(data):
        problem("marker_bad", f"{key} lists {f}, which does not exist")
    for f in staged:
        if f.startswith(f"{state}/compacting/{table}/"):
            h = int(f[len(f"{state}/compacting/{table}/"):].split("/")[0])
            if folder_of(h * 3_600_000) == hour:
                problem("compaction_bad", f"{f} is still staged, though its hour is complete")

cp = json.loads(body(f"{state}/checkpoints/{stream}.json"))
for b in cp.get("pending", []):
    problem("pending", b["object"])
for sid, seq in last_of_shard.items():
    c = cp["shards"].get(sid, {})
    if sid not in open_shards and not c.get("finished"):
        problem("unfinished", f"closed shard {sid}: {c}")
    if sid in open_shards and c.get("sequence_number") != seq:
        problem("behind", f"open shard {sid} checkpointed at {c.get('sequence_number')}, last record {seq}")

uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=f"{prefix}/").get("Uploads", [])
missing = [rk for rk in expected if rk not in seen]


def missing_ranges(missing):
    """Per shard: how many records are missing and the first and last missing sequence numbers,
    to tell one lost batch from scattered losses."""
    by_shard = collections.defaultdict(list)
    for sid, seq, _ in missing:
        by_shard[sid].append(int(seq))
    return {sid: [len(v), str(min(v)), str(max(v))] for sid, v in sorted(by_shard.items())}


print(json.dumps({
    "records": len(expected),
    "good": sum(1 for w in expected.values() if w["row"]),
    "bad": sum(1 for w in expected.values() if not w["row"]),
    "kpl": sum(1 for rk in expected if rk[2] is not None),
    "rows": rows,
    "duckdb_rows": duckdb_rows,
    "errors": errors,
    "objects": len(data),
    "staged": len(staged),
    "compacted": sum(1 for key in data if "-compacted-" in key),
    "markers": markers,
    "incomplete_uploads": len(uploads),
    "missing": len(missing),
    "duplicated": sum(n - 1 for n in seen.values() if n > 1),
    "unexpected": len(set(seen) - set(expected)),
    "unlisted": sum(1 for key in data if listed[key] == 0),
    "listed_twice": sum(1 for n in listed.values() if n > 1),
    **{kind: problems[kind] for kind in ["unreadable", "wrong_form", "wrong_values", "wrong_folder", "schema_bad", "manifest_bad", "marker_bad", "compaction_bad", "pending", "unfinished", "behind"]},
    "details": details,
    "missing_ranges": missing_ranges(missing),
}))
# Leave without the interpreter's teardown, where pyarrow and DuckDB loaded together sometimes
# abort after the answer is printed.
sys.stdout.flush()
os._exit(0)
