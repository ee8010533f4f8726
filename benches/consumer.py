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
import resource
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


def children_cpu():
    """User + system CPU seconds of this process's waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


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
    server_before, lake_before = cpu_seconds(a.server_pid), children_cpu()
    secs, rss, cpu, out = timed([a.bin, "export", "--stream", name, "-o", lake, "--no-progress", "--json"])
    server_cpu = cpu_seconds(a.server_pid) - server_before
    stream_cpu = children_cpu() - lake_before
    summary = json.loads(out)
    rows = sum(summary["rows_out"].values())
    assert rows == a.records, f"read {rows} of {a.records} records"
    # The same records from a file: the per-record CPU the stream path is compared with.
    file_lake, file_before = os.path.join(a.work, "lake-file"), children_cpu()
    fsecs, frss, fcpu, fout = timed([a.bin, "export", "-i", inp, "-o", file_lake, "--no-progress", "--json"])
    file_cpu = children_cpu() - file_before
    assert sum(json.loads(fout)["rows_out"].values()) == a.records
    per_m = lambda c: c / a.records * 1e6  # noqa: E731

    lines_out = [
        f"{a.records:,} records ({mb:,.0f} MB) on {a.shards} shards of kinesis-mock 0.6.2 (kinesis-local), on loopback, same machine.",
        "",
        "| step | time | records/s | MB/s | ddb-lake CPU | server CPU |",
        "|---|---|---|---|---|---|",
        f"| fill: PutRecords, 500 per call (boto3) | {put_secs:.1f} s | {a.records / put_secs:,.0f} | {mb / put_secs:,.1f} | - | {put_server:.1f} s ({put_server / put_secs:.0%}) |",
        f"| read: `ddb-lake export --stream` | {secs:.1f} s | {a.records / secs:,.0f} | {mb / secs:,.1f} | {stream_cpu:.2f} s ({cpu}%), peak RSS {rss / 2**20:,.0f} MiB | {server_cpu:.1f} s ({server_cpu / secs:.0%}) |",
        f"| the same records from a file: `ddb-lake export -i` | {fsecs:.1f} s | {a.records / fsecs:,.0f} | {mb / fsecs:,.1f} | {file_cpu:.2f} s ({fcpu}%), peak RSS {frss / 2**20:,.0f} MiB | - |",
        "",
        f"ddb-lake's CPU per million records (user + system, the server's excluded): {per_m(stream_cpu):.1f} s reading the stream, {per_m(file_cpu):.1f} s reading the file: the stream path costs {stream_cpu / file_cpu:.2f}x the file path per record.",
    ]
    table = "\n".join(lines_out)
    print(table)
    if a.doc:
        write_block(a.doc, "consumer", table)


if __name__ == "__main__":
    main()
