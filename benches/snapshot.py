"""Snapshot cost: time and peak RSS of `ddb-lake snapshot` on a table of ITEMS items with about
CHANGES changes over HOURS hours (from scratch, as of the hour before the last), then of the
incremental snapshot that merges one more hour; the DuckDB query of the latest state over the
change log on the same lake for comparison.

Run it with benches/snapshot.sh (which builds ddb-lake in release mode). The input is generated
once into target/snapshot-bench: each change picks an item uniformly at random (so items get
Poisson-many changes); an item's first change is an INSERT, later ones MODIFY, one in ten a
REMOVE (and a later change inserts it again). Each run is its own process under /usr/bin/time -v;
the table is written into docs/BENCHMARKS.md between the snapshot markers.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import timed, write_block  # noqa: E402

START_MS = 1_795_000_000_000 - 1_795_000_000_000 % 3_600_000


def generate(folder, items, changes, hours, seed):
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    rng = random.Random(seed)
    alive = bytearray(items)
    per_hour = changes // hours
    dumps = json.dumps
    n = 0
    for h in range(hours):
        with open(os.path.join(folder, f"{h:02d}.jsonl"), "w") as f:
            lines = []
            for k in range(per_hour):
                i = rng.randrange(items)
                t = START_MS + h * 3_600_000 + k * 3_600_000 // per_hour
                keys = {"Id": {"N": str(i)}}
                if alive[i] and rng.random() < 0.1:
                    op, alive[i] = "REMOVE", 0
                    images = {"OldImage": {"Id": {"N": str(i)}}}
                else:
                    op = "MODIFY" if alive[i] else "INSERT"
                    alive[i] = 1
                    images = {"NewImage": {
                        "Id": {"N": str(i)}, "Version": {"N": str(n)},
                        "Name": {"S": f"customer {i % 9973}"},
                        "Total": {"N": f"{rng.randrange(100000)}.{rng.randrange(100):02d}"},
                        "Status": {"S": rng.choice(("NEW", "PAID", "SHIPPED", "DELIVERED"))},
                        "Address": {"M": {"city": {"S": f"city {i % 500}"}, "zip": {"S": f"{i % 99999:05d}"}}},
                    }}
                d = {"ApproximateCreationDateTime": t, "Keys": keys, "SizeBytes": 100}
                d.update(images)
                lines.append(dumps({"eventID": f"e{n}", "eventName": op, "tableName": "Accounts",
                                    "eventSource": "aws:dynamodb", "dynamodb": d}))
                n += 1
            f.write("\n".join(lines) + "\n")
    open(done, "w").close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/ddb-lake")
    ap.add_argument("--work", default="target/snapshot-bench")
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=5_000_000)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--doc")
    a = ap.parse_args()
    inp = os.path.join(a.work, f"in-{a.items}-{a.changes}-{a.hours}")
    t0 = time.time()
    generate(inp, a.items, a.changes, a.hours, 7)
    print(f"input ready ({time.time() - t0:.0f} s)", flush=True)
    lake = os.path.join(a.work, "lake")
    shutil.rmtree(lake, ignore_errors=True)
    secs, rss, cpu, _ = timed([a.bin, "export", "-i", inp, "-o", lake, "--no-progress", "--json"])
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lake) for f in fs)
    print(f"export: {secs:.1f} s, {rss / 2**20:.0f} MiB, lake {size / 2**20:.0f} MiB", flush=True)
    hour = lambda h: time.strftime("%Y-%m-%dT%H", time.gmtime(START_MS // 1000 + h * 3600))
    rows = [
        "| step | time | CPU | peak RSS | items | deleted | change-log rows read | buckets |",
        "|---|---|---|---|---|---|---|---|",
        f"| export of the input into the lake (for reference) | {secs:.1f} s | {cpu}% | {rss / 2**20:,.0f} MiB | | | | |",
    ]
    for what, h in (("snapshot from scratch, all hours but the last", a.hours - 2),
                    ("incremental: one more hour", a.hours - 1)):
        secs, rss, cpu, out = timed([a.bin, "snapshot", "-o", lake, "--as-of", hour(h), "--json"])
        s = json.loads(out)[0]
        rows.append(f"| {what} | {secs:.1f} s | {cpu}% | {rss / 2**20:,.0f} MiB | {s['rows']:,} | {s['deleted']:,} "
                    f"| {s['rows_read']:,} | {s['buckets']} |")
        print(rows[-1], flush=True)
    try:
        import duckdb
        c = duckdb.connect()
        c.execute("set threads to 2")
        t0 = time.time()
        n = c.execute(f"""select count(*) from (select *, row_number() over (partition by id order by cdc_event_time_us desc,
            cdc_source_file desc, cdc_source_line desc) as r from read_parquet('{lake}/accounts/**/*.parquet'))
            where r = 1 and cdc_operation <> 'REMOVE'""").fetchone()[0]
        rows.append(f"| DuckDB, latest state over the change log (2 threads, in-process) | {time.time() - t0:.1f} s | | | {n:,} | | | |")
        print(rows[-1], flush=True)
    except ImportError:
        pass
    header = (f"{a.items:,} items, {a.changes:,} changes over {a.hours} hours (one table, `Accounts`), "
              f"release build, 2 cores, default `memory_budget` (64 MiB):")
    table = header + "\n\n" + "\n".join(rows)
    if a.doc:
        write_block(a.doc, "snapshot", table)
    print(table)


if __name__ == "__main__":
    main()
