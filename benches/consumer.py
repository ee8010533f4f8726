"""Consumer throughput: run by benches/consumer.sh, which starts the local Kinesis server.

Fills an N-shard stream with generated records, then reads the backlog with
`ddb-lake export --stream` (the consumer's reading code: one poller per shard, GetRecords of up to
10,000 records) into a local folder. Reports records/s for filling and for reading, and the CPU
seconds ddb-lake and the server each used while reading (from /proc), so that the bottleneck is
visible. The table goes into docs/BENCHMARKS.md between the consumer markers.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import timed, write_block  # noqa: E402


def cpu_seconds(pid):
    """User + system CPU seconds of a process and its waited-for children so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--work", default="target/consumer-bench")
    ap.add_argument("--bin", default="target/release/ddb-lake")
    ap.add_argument("--doc")
    a = ap.parse_args()
    k = boto3.client("kinesis", endpoint_url=os.environ["AWS_ENDPOINT_URL_KINESIS"], region_name="us-east-1")
    name = f"bench-{a.shards}"
    k.create_stream(StreamName=name, ShardCount=a.shards)
    for _ in range(600):
        if k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.05)  # polling the server's state, with a bound
    inp = os.path.join(a.work, "input.jsonl")
    subprocess.run([a.bin, "generate", "--records", str(a.records), "--seed", "7", "--hours", "1", "-o", inp], check=True)
    lines = open(inp, "rb").read().splitlines()
    mb = sum(len(l) for l in lines) / 1e6

    started, server_before = time.monotonic(), cpu_seconds(a.server_pid)
    for i in range(0, len(lines), 500):
        batch = [{"Data": l, "PartitionKey": f"key-{i + j}"} for j, l in enumerate(lines[i : i + 500])]
        r = k.put_records(StreamName=name, Records=batch)
        assert r["FailedRecordCount"] == 0, r
    put_secs = time.monotonic() - started
    put_server = cpu_seconds(a.server_pid) - server_before

    lake = os.path.join(a.work, "lake")
    server_before = cpu_seconds(a.server_pid)
    secs, rss, cpu, out = timed([a.bin, "export", "--stream", name, "-o", lake, "--no-progress", "--json"])
    server_cpu = cpu_seconds(a.server_pid) - server_before
    summary = json.loads(out)
    rows = sum(summary["rows_out"].values())
    assert rows == a.records, f"read {rows} of {a.records} records"

    lines_out = [
        f"{a.records:,} records ({mb:,.0f} MB) on {a.shards} shards of kinesis-mock 0.6.2 (kinesis-local), on loopback, same machine.",
        "",
        "| step | time | records/s | MB/s | ddb-lake CPU | server CPU |",
        "|---|---|---|---|---|---|",
        f"| fill: PutRecords, 500 per call (boto3) | {put_secs:.1f} s | {a.records / put_secs:,.0f} | {mb / put_secs:,.1f} | - | {put_server:.1f} s ({put_server / put_secs:.0%}) |",
        f"| read: `ddb-lake export --stream` | {secs:.1f} s | {a.records / secs:,.0f} | {mb / secs:,.1f} | {cpu * secs / 100:.1f} s ({cpu}%), peak RSS {rss / 2**20:,.0f} MiB | {server_cpu:.1f} s ({server_cpu / secs:.0%}) |",
    ]
    table = "\n".join(lines_out)
    print(table)
    if a.doc:
        write_block(a.doc, "consumer", table)


if __name__ == "__main__":
    main()
