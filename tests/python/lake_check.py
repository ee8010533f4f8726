"""Compares a lake on S3 with the Kinesis stream it was made from, for the crash and fault tests.

usage: lake_check.py BUCKET PREFIX STREAM TABLE

Reads every record of the stream (all shards, from the trim horizon) and every object under
PREFIX: the table's Parquet files (with pyarrow), the error output and the COPY manifests. Prints
one JSON object of counts; an exact lake has zero in every problem count:
  missing       stream records in neither a row nor an error entry
  duplicated    extra copies of rows or error entries (beyond one per record)
  unexpected    rows or entries with no record in the stream
  unreadable    objects under the table prefix that are not readable Parquet
  unlisted      data files in no manifest; listed_twice: in more than one
  manifest_bad  manifest entries naming a missing file or a wrong content_length
"""
import collections
import io
import json
import os
import sys

import boto3
import pyarrow.parquet as pq

bucket, prefix, stream, table = sys.argv[1:5]
prefix = prefix.strip("/")
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")

# The stream's records.
expected = set()
for shard in k.list_shards(StreamName=stream)["Shards"]:
    sid = shard["ShardId"]
    it = k.get_shard_iterator(StreamName=stream, ShardId=sid, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        r = k.get_records(ShardIterator=it, Limit=10000)
        for rec in r["Records"]:
            expected.add((sid, rec["SequenceNumber"]))
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


seen = collections.Counter()
unreadable = []
data = objects(f"{prefix}/{table}/")
for key in data:
    try:
        t = pq.read_table(io.BytesIO(body(key)), columns=["cdc_shard_id", "cdc_sequence_number"])
    except Exception as e:  # any object that is not whole Parquet is a problem
        unreadable.append(f"{key}: {e}")
        continue
    for sid, seq in zip(t.column("cdc_shard_id").to_pylist(), t.column("cdc_sequence_number").to_pylist()):
        seen[(sid, seq)] += 1
rows = sum(seen.values())
errors = 0
for key in objects(f"{prefix}/_errors/"):
    for line in body(key).splitlines():
        src = json.loads(line)["source"]
        seen[(src["shard"], src["sequence_number"])] += 1
        errors += 1

listed = collections.Counter()
manifest_bad = []
for key in objects(f"{prefix}/_ddb_lake/manifests/{table}/"):
    for e in json.loads(body(key))["entries"]:
        rel = e["url"].split(f"s3://{bucket}/", 1)[1]
        listed[rel] += 1
        if data.get(rel) != e["meta"]["content_length"]:
            manifest_bad.append(f"{key}: {rel} length {e['meta']['content_length']} vs {data.get(rel)}")

def missing_ranges(missing):
    """Per shard: how many records are missing and the first and last missing sequence numbers,
    to tell one lost batch from scattered losses."""
    by_shard = collections.defaultdict(list)
    for sid, seq in missing:
        by_shard[sid].append(int(seq))
    return {sid: [len(v), str(min(v)), str(max(v))] for sid, v in sorted(by_shard.items())}


print(json.dumps({
    "records": len(expected),
    "rows": rows,
    "errors": errors,
    "objects": len(data),
    "object_bytes": sorted(data.values())[len(data) // 2] if data else 0,
    "missing": len(expected - set(seen)),
    "duplicated": sum(n - 1 for n in seen.values() if n > 1),
    "unexpected": len(set(seen) - expected),
    "unreadable": len(unreadable),
    "unlisted": sum(1 for key in data if listed[key] == 0),
    "listed_twice": sum(1 for n in listed.values() if n > 1),
    "manifest_bad": len(manifest_bad),
    "details": (unreadable + manifest_bad)[:10],
    "missing_ranges": missing_ranges(expected - set(seen)),
}))
