"""DynamoDB Streams reading and export loading: run by benches/dynamodb.sh, which starts
DynamoDB Local.

1. Writes CHANGES changes (generated Orders items put 25 per BatchWriteItem: inserts, then
   rewrites of earlier items as modifies) to a table with a NEW_AND_OLD_IMAGES stream, then times
   `ddb-lake export --dynamodb-stream` reading them all into a local folder, with the CPU
   seconds of ddb-lake and of the server.
2. Writes a full export of ITEMS items in 8 data files, in DynamoDB JSON and in Ion
   (tests/python/write_export.py), and times `ddb-lake export --input` loading each: MB/s of gzip
   data files per CPU second of ddb-lake (its whole work: MD5, gunzip, parse, flatten, encode).
The table goes into docs/BENCHMARKS.md between the dynamodb markers.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from consumer import cpu_seconds  # noqa: E402
from side_by_side import timed, write_block  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=300_000)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--work", default="target/dynamodb-bench")
    ap.add_argument("--bin", default="target/release/ddb-lake")
    ap.add_argument("--doc")
    a = ap.parse_args()
    ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"], region_name="us-east-1")
    streams = boto3.client("dynamodbstreams", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB_STREAMS"], region_name="us-east-1")
    table = "BenchOrders"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "OrderId", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "OrderId", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
                     StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    inp = os.path.join(a.work, "input.jsonl")
    subprocess.run([a.bin, "generate", "--records", str(a.changes), "--seed", "7", "--hours", "1", "-o", inp], check=True)
    images = []
    for line in open(inp):
        r = json.loads(line)
        img = r["dynamodb"].get("NewImage") or r["dynamodb"].get("OldImage")
        images.append(img)
    started, server_before = time.monotonic(), cpu_seconds(a.server_pid)
    for i in range(0, len(images), 25):
        # Keys repeat (the generator's orders change several times): one request per key per call.
        batch = {}
        for img in images[i:i + 25]:
            batch[img["OrderId"]["S"]] = {"PutRequest": {"Item": img}}
        left = {table: list(batch.values())}
        while left:
            left = ddb.batch_write_item(RequestItems=left).get("UnprocessedItems") or None
    put_secs = time.monotonic() - started
    put_server = cpu_seconds(a.server_pid) - server_before
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    shards = len(streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"])

    lake = os.path.join(a.work, "stream-lake")
    server_before = cpu_seconds(a.server_pid)
    secs, rss, cpu, out = timed([a.bin, "export", "--dynamodb-stream", table, "-o", lake, "--no-progress", "--json"])
    server_cpu = cpu_seconds(a.server_pid) - server_before
    summary = json.loads(out)
    n = summary["records_in"]
    mb = summary["bytes_in"] / 1e6
    rows = [
        f"DynamoDB Local 3.3.0 on loopback, same machine: {n:,} changes ({mb:,.1f} MB by DynamoDB's SizeBytes) on {shards} shard(s) of one table's stream.",
        "",
        "| step | time | records/s | MB/s | ddb-lake CPU | server CPU |",
        "|---|---|---|---|---|---|",
        f"| write: BatchWriteItem, 25 per call (boto3) | {put_secs:.1f} s | {n / put_secs:,.0f} | - | - | {put_server:.1f} s ({put_server / put_secs:.0%}) |",
        f"| read: `ddb-lake export --dynamodb-stream` | {secs:.1f} s | {n / secs:,.0f} | {mb / secs:,.1f} | {cpu * secs / 100:.1f} s ({cpu}%), peak RSS {rss / 2**20:,.0f} MiB | {server_cpu:.1f} s ({server_cpu / secs:.0%}) |",
        "",
        f"Full exports of {a.items:,} items in 8 gzip data files (tests/python/write_export.py), loaded into a local folder:",
        "",
        "| format | gzip MB | JSON/Ion MB | time | items/s | ddb-lake CPU | gzip MB per CPU second | JSON/Ion MB per CPU second | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for fmt in ("DYNAMODB_JSON", "ION"):
        root = os.path.join(a.work, fmt)
        folder = subprocess.run([sys.executable, "tests/python/write_export.py", root, "Orders", fmt, "FULL_EXPORT",
                                 str(a.items), "8", "1"], check=True, capture_output=True, text=True).stdout.strip()
        gz = sum(os.path.getsize(os.path.join(folder, "data", f)) for f in os.listdir(os.path.join(folder, "data")) if not f.startswith("zzzz")) / 1e6
        out_dir = os.path.join(a.work, f"{fmt}-lake")
        secs, rss, cpu, out = timed([a.bin, "export", "-i", folder, "-o", out_dir, "--no-progress", "--json"])
        s = json.loads(out)
        assert s["records_in"] == a.items, s["records_in"]
        cpu_s = cpu * secs / 100
        rows.append(f"| {fmt} | {gz:,.1f} | {s['bytes_in'] / 1e6:,.1f} | {secs:.1f} s | {a.items / secs:,.0f} | {cpu_s:.1f} s ({cpu}%) | {gz / cpu_s:,.1f} | {s['bytes_in'] / 1e6 / cpu_s:,.1f} | {rss / 2**20:,.0f} MiB |")
    table_md = "\n".join(rows)
    print(table_md)
    if a.doc:
        write_block(a.doc, "dynamodb", table_md)


if __name__ == "__main__":
    main()
