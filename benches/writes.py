"""Concurrent writes: run by benches/writes.sh, which starts the local S3 server (moto).

Writes one small Parquet file per partition (generated records, one partition per order and day:
about one file per two records) to S3 through a proxy on loopback that delays every request and
every response by half a round trip, as a far-away S3 endpoint would. Each run is timed with
`output.concurrent_writes` 1 (one put after the other) and with the default, with no added latency
and with the given round trip. The table goes into docs/BENCHMARKS.md between the writes markers.
"""
import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import timed, write_block  # noqa: E402


async def pump(reader, writer, delay):
    """Copies bytes from reader to writer, each chunk `delay` seconds after it arrived (a line
    with latency, not a slow one: chunks in flight overlap)."""
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            if data is None:
                writer.close()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the simulated latency itself
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(65536):
            await queue.put((time.monotonic() + delay, data))
    finally:
        await queue.put((0, None))
        await sender


def start_proxy(target_port, rtt):
    """A TCP proxy on loopback to target_port adding `rtt` seconds per round trip; returns its
    port."""
    ready = threading.Event()
    port = []

    async def handle(cr, cw):
        sr, sw = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pump(cr, sw, rtt / 2), pump(sr, cw, rtt / 2), return_exceptions=True)

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait()
    return port[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=4_000)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--s3-port", type=int, required=True)
    ap.add_argument("--work", default="target/writes-bench")
    ap.add_argument("--bin", default="target/release/ddb-lake")
    ap.add_argument("--doc")
    a = ap.parse_args()
    inp = os.path.join(a.work, "input.jsonl")
    subprocess.run([a.bin, "generate", "--records", str(a.records), "--seed", "3", "-o", inp], check=True)
    direct = f"http://127.0.0.1:{a.s3_port}"
    s3 = boto3.client("s3", endpoint_url=direct, region_name="us-east-1")
    s3.create_bucket(Bucket="bench")
    far = f"http://127.0.0.1:{start_proxy(a.s3_port, a.rtt_ms / 1000)}"
    template = "{table}/order={order_id}/{YYYY}/{MM}/{DD}"
    rows = []
    for latency, endpoint in [("none (loopback)", direct), (f"{a.rtt_ms:.0f} ms round trip", far)]:
        for writes in [1, 16]:
            prefix = f"run-{len(rows)}"
            env = dict(os.environ, AWS_ENDPOINT_URL_S3=endpoint)
            secs, rss, cpu, out = timed(
                [a.bin, "export", "-i", inp, "-o", f"s3://bench/{prefix}", "--template", template,
                 "--concurrent-writes", str(writes), "--no-progress", "--json"],
                env=env,
            )
            summary = json.loads(out)
            assert sum(summary["rows_out"].values()) == a.records, summary["rows_out"]
            listed = sum(
                1
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=f"{prefix}/orders/")
                for o in page.get("Contents", [])
                if o["Key"].endswith(".parquet")
            )
            assert listed == summary["files_written"], (listed, summary["files_written"])
            rows.append((latency, writes, summary["files_written"], secs, cpu, rss))
    lines = [
        f"{a.records:,} generated records (seed 3) into one partition per order and day "
        f"(`--template '{template}'`): {rows[0][2]:,} files of a few rows each, to moto's S3 server "
        "on loopback, directly and through a proxy that delays every request and response by half "
        "the round trip.",
        "",
        "| added latency | `--concurrent-writes` | files | time | files/s | CPU | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for latency, writes, files, secs, cpu, rss in rows:
        lines.append(
            f"| {latency} | {writes} | {files:,} | {secs:.1f} s | {files / secs:,.0f} | {cpu}% | {rss / 2**20:,.0f} MiB |"
        )
    table = "\n".join(lines)
    print(table)
    if a.doc:
        write_block(a.doc, "writes", table)


if __name__ == "__main__":
    main()
