"""How ddb-lake's cost grows: time per record and peak RSS at 100k, 1M and 5M records, and peak
RSS with 1, 100 and 10,000 open partitions under the default memory budget.

Run it with benches/scaling.sh (which builds ddb-lake in release mode). Inputs are generated once
into target/side-by-side (`ddb-lake generate --seed 7`); 5M records take about 6 GB of disk.
Every run is its own process under /usr/bin/time -v; the tables are written into
docs/BENCHMARKS.md between the scaling markers.
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import timed, write_block  # noqa: E402


PIECE = 1_000_000


def generate(bin, work, records, hours):
    """The input file (generated once). Above 1M records the input is pieces of 1M records, each
    over its own next `hours` (the generator keeps every live order in memory, so one 5M-record
    run does not fit): 5M records cover 120 hours with the same density as 1M over 24."""
    path = os.path.join(work, f"input-{records}.jsonl" if hours == 24 else f"input-{records}-h{hours}.jsonl")
    if os.path.exists(path):
        return path
    start = datetime.datetime(2026, 11, 1, 8, tzinfo=datetime.timezone.utc)
    with open(path + ".part", "wb") as out:
        for k in range((records + PIECE - 1) // PIECE):
            n = min(PIECE, records - k * PIECE)
            at = (start + datetime.timedelta(hours=hours * k)).strftime("%Y-%m-%dT%H:%M:%SZ")
            piece = subprocess.run(
                [bin, "generate", "--records", str(n), "--seed", str(7 + k), "--hours", str(hours), "--start", at],
                check=True, stdout=subprocess.PIPE,
            ).stdout
            out.write(piece)
    os.rename(path + ".part", path)
    return path


def export(bin, inp, out, extra=()):
    shutil.rmtree(out, ignore_errors=True)
    secs, rss, cpu, stdout = timed([bin, "export", "-i", inp, "-o", out, "--no-progress", "--json", *extra])
    summary = json.loads(stdout)
    shutil.rmtree(out, ignore_errors=True)
    return secs, rss, cpu, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/ddb-lake")
    ap.add_argument("--work", default="target/side-by-side")
    ap.add_argument("--sizes", default="100000,1000000,5000000")
    ap.add_argument("--partitions", default="1,100,10000")
    ap.add_argument("--partition-records", type=int, default=1_000_000)
    ap.add_argument("--doc")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    out = os.path.join(a.work, "out-scaling")
    lines = [
        "| records | input | time | records/s | µs per record | CPU | peak RSS | peak buffered | files |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in [int(x) for x in a.sizes.split(",")]:
        inp = generate(a.bin, a.work, n, 24)
        secs, rss, cpu, s = export(a.bin, inp, out)
        assert sum(s["rows_out"].values()) == n, s["rows_out"]
        lines.append(
            f"| {n:,} | {os.path.getsize(inp) / 1e6:,.0f} MB | {secs:.1f} s | {n / secs:,.0f} | {secs / n * 1e6:.1f} | {cpu}% "
            f"| {rss / 2**20:,.0f} MiB | {s['peak_buffered_bytes'] / 2**20:,.1f} MiB | {s['files_written']:,} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        f"Open partitions ({a.partition_records:,} records spread evenly over 1, 100 or 10,000 event hours; default `memory_budget`):",
        "",
        "| hour partitions | time | records/s | peak RSS | peak buffered | files | flushes |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in [int(x) for x in a.partitions.split(",")]:
        inp = generate(a.bin, a.work, a.partition_records, p)
        secs, rss, cpu, s = export(a.bin, inp, out)
        assert sum(s["rows_out"].values()) == a.partition_records, s["rows_out"]
        flushes = ", ".join(f"{k} {v:,}" for k, v in sorted(s["flushes"].items()))
        lines.append(
            f"| {p:,} | {secs:.1f} s | {a.partition_records / secs:,.0f} | {rss / 2**20:,.0f} MiB "
            f"| {s['peak_buffered_bytes'] / 2**20:,.1f} MiB | {s['files_written']:,} | {flushes} |"
        )
        print(lines[-1], flush=True)
    # Every partition open at once: 3 rows in each of 10,000 hours, so no partition fills up and
    # only the budget (which charges each open partition its builders) makes room.
    inp = generate(a.bin, a.work, 30_000, 10_000)
    secs, rss, cpu, s = export(a.bin, inp, out)
    assert sum(s["rows_out"].values()) == 30_000, s["rows_out"]
    flushes = ", ".join(f"{k} {v:,}" for k, v in sorted(s["flushes"].items()))
    lines.append(
        f"| 10,000, 3 rows each (30,000 records) | {secs:.1f} s | {30_000 / secs:,.0f} | {rss / 2**20:,.0f} MiB "
        f"| {s['peak_buffered_bytes'] / 2**20:,.1f} MiB | {s['files_written']:,} | {flushes} |"
    )
    table = "\n".join(lines)
    print(table)
    if a.doc:
        write_block(a.doc, "scaling", table)


if __name__ == "__main__":
    main()
