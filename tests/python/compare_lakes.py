"""Compares two lakes on S3 made from the same stream: one written as it is, one compacted by the
consumer (`[markers] compact = true`), for the compaction test.

usage: compare_lakes.py BUCKET PLAIN COMPACTED TABLE SKIP_FOLDER

Reads every data file under each lake's table folder whole with pyarrow (every column) except
those in SKIP_FOLDER (an hour left incomplete on purpose), and compares the rows of the two lakes
as Python values, every column, after sorting both by stream position; then the same with DuckDB
(`EXCEPT ALL` both ways over `union_by_name`). Also: each compacted file's rows sorted by key
(order_id), then event time; and the compacted lake's COPY manifests listing each compacted file
once and no staged file.

Prints one JSON object; the caller asserts.
"""
import io
import json
import os
import sys
import tempfile

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

bucket, plain, compacted, table, skip = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")


def keys(prefix):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def body(key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def read(lake):
    """The lake's data files (outside SKIP_FOLDER) as one table, a local copy of each, names."""
    local = tempfile.mkdtemp()
    tables, names = [], []
    for key in keys(f"{lake}/{table}/"):
        if not key.endswith(".parquet") or key.startswith(f"{lake}/{skip}/"):
            continue
        raw = body(key)
        with open(os.path.join(local, f"{len(names)}.parquet"), "wb") as f:
            f.write(raw)
        tables.append(pq.read_table(io.BytesIO(raw)))
        names.append(key)
    return pa.concat_tables(tables, promote_options="default"), local, names


position = ["cdc_shard_id", "cdc_sequence_number", "cdc_subsequence_number"]
a, a_dir, a_names = read(plain)
b, b_dir, b_names = read(compacted)
columns = sorted(set(a.column_names) | set(b.column_names))


def rows(t):
    t = t.sort_by([(c, "ascending") for c in position])
    return [{c: r.get(c) for c in columns} for r in t.to_pylist()]


ra, rb = rows(a), rows(b)
first_diff = next((f"{x} != {y}" for x, y in zip(ra, rb) if x != y), None)

unsorted = []
for key in b_names:
    t = pq.read_table(io.BytesIO(body(key)), columns=["order_id", "cdc_event_time"])
    order = [(r["order_id"], r["cdc_event_time"]) for r in t.to_pylist()]
    if order != sorted(order):
        unsorted.append(key)

listed = {}
for key in keys(f"{compacted}/_ddb_lake/manifests/{table}/"):
    for e in json.loads(body(key))["entries"]:
        rel = e["url"].split(f"s3://{bucket}/", 1)[1]
        listed[rel] = listed.get(rel, 0) + 1

cols = ", ".join(f'"{c}"' for c in sorted(set(a.column_names) & set(b.column_names)))
con = duckdb.connect()
q = lambda d: f"select {cols} from read_parquet('{d}/*.parquet', union_by_name=true)"  # noqa: E731
only_plain = con.execute(f"select count(*) from ({q(a_dir)} except all {q(b_dir)})").fetchone()[0]
only_compacted = con.execute(f"select count(*) from ({q(b_dir)} except all {q(a_dir)})").fetchone()[0]
duck_rows = con.execute(f"select count(*) from read_parquet('{b_dir}/*.parquet')").fetchone()[0]

print(json.dumps({
    "plain_rows": a.num_rows,
    "compacted_rows": b.num_rows,
    "duckdb_compacted_rows": duck_rows,
    "plain_files": len(a_names),
    "compacted_files": len(b_names),
    "plain_bytes": sum(os.path.getsize(os.path.join(a_dir, f)) for f in os.listdir(a_dir)),
    "compacted_bytes": sum(os.path.getsize(os.path.join(b_dir, f)) for f in os.listdir(b_dir)),
    "not_compacted": [k for k in b_names if "-compacted-" not in k and "-late-" not in k],
    "equal": ra == rb,
    "first_diff": first_diff,
    "columns_compared": len(columns),
    "duckdb_only_plain": only_plain,
    "duckdb_only_compacted": only_compacted,
    "unsorted": unsorted,
    "unlisted": [k for k in b_names if listed.get(k, 0) != 1],
    "staged_listed": [k for k in listed if "/_ddb_lake/compacting/" in k],
}))
sys.stdout.flush()
os._exit(0)
