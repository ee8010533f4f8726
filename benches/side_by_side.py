"""Side-by-side whole-process benchmark: ddb-lake against the tools users would pick instead.

Run it with benches/side_by_side.sh (which builds ddb-lake in release mode and prepares a venv
with the peers). Every tool converts the same generated input (Kinesis Data Streams for DynamoDB
records, one per line) into zstd Parquet partitioned by event hour (Hive folders
year=/month=/day=/hour=), with the same attribute columns (taken from the schema ddb-lake
inferred, so no tool is asked for less than another) plus the operation, event id and event time.
The attribute values come from the image ddb-lake writes: NewImage, or OldImage for a REMOVE (the
peers read NewImage alone until 2026-12-05, so a REMOVE's values were null in their output, 15%
of this input's rows, which made their files look smaller than ours for the same columns):

  ddb-lake  `ddb-lake export --layout hive` (it also writes its other cdc_* columns)
  duckdb    read_json_objects + json_extract per column + COPY ... PARTITION_BY
  pyarrow   what a Lambda transform does: json.loads, boto3's TypeDeserializer, flatten in
            Python, pyarrow.Table per 100,000 records, pyarrow.parquet.write_to_dataset
  polars    read_ndjson (schema inferred over every row) + struct field expressions +
            write_parquet(partition_by=...)

Each runs as its own process, with the same thread count, measured by /usr/bin/time -v (wall
time, peak RSS). Row counts of every output are checked with DuckDB. Output size is reported
whole and for the shared columns only (the attribute columns plus operation, event id and event
time, summed from the Parquet footers' column chunk sizes), so that ddb-lake's extra cdc_*
columns do not count against it: the same rows and columns, compared.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v: (seconds, peak RSS bytes, stdout)."""
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], text=True, capture_output=True, env=env)
    if r.returncode not in (0, 2):
        err = r.stderr.split("\tCommand being timed")[0]
        sys.exit(f"{' '.join(cmd[:3])[:200]} failed ({r.returncode}):\n{err[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", r.stderr).group(1)
    parts = [float(p) for p in wall.split(":")]
    secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr).group(1)) * 1024
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", r.stderr).group(1)
    return secs, rss, int(cpu), r.stdout


def write_block(doc, name, table):
    """Replaces the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` in doc (appends the
    block when the markers are missing)."""
    text = open(doc).read()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{table}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += "\n" + block + "\n"
    open(doc, "w").write(text)


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if f.endswith(".parquet"))


def columns_from(schema_path):
    """(name, type, path) of the attribute columns ddb-lake inferred (new image)."""
    with open(schema_path, "rb") as f:
        s = tomllib.load(f)
    return [(c["name"], c["type"], c["path"]) for c in s["columns"] if "path" in c and c.get("image", "new") == "new"]


# --- DuckDB -----------------------------------------------------------------------------------
def duckdb_sql(inp, out, cols, threads):
    def jp(path, code):
        p = ".".join(f'"{k}"' for k in path[:1]) + "".join(f'.M."{k}"' for k in path[1:])
        return f"'$.{p}.{code}'"

    exprs = []
    for name, ty, path in cols:
        s = lambda code: f"json_extract_string(img, {jp(path, code)})"
        if ty == "string":
            e = s("S")
        elif ty in ("bigint", "int", "double") or ty.startswith("decimal"):
            target = {"bigint": "BIGINT", "int": "INTEGER", "double": "DOUBLE"}.get(ty, ty.upper())
            e = f"CAST({s('N')} AS {target})"
        elif ty == "boolean":
            e = f"CAST({s('BOOL')} AS BOOLEAN)"
        elif ty == "binary":
            e = f"from_base64({s('B')})"
        elif ty == "list<string>":
            e = f"CAST(coalesce(json_extract(img, {jp(path, 'SS')}), json_extract(img, {jp(path, 'NS')})) AS VARCHAR[])"
        elif ty == "list<binary>":
            e = f"list_transform(CAST(json_extract(img, {jp(path, 'BS')}) AS VARCHAR[]), lambda x: from_base64(x))"
        else:  # json: the attribute's value as JSON text
            e = f"CAST(coalesce(json_extract(img, {jp(path, 'M')}), json_extract(img, {jp(path, 'L')})) AS VARCHAR)"
        exprs.append(f'{e} AS "{name}"')
    return textwrap.dedent(f"""
        SET threads={threads};
        COPY (
          SELECT j->>'$.eventName' AS cdc_operation, j->>'$.eventID' AS cdc_event_id,
                 make_timestamptz(CAST(j->>'$.dynamodb.ApproximateCreationDateTime' AS BIGINT)
                   * CASE WHEN j->>'$.dynamodb.ApproximateCreationDateTimePrecision' = 'MICROSECOND' THEN 1 ELSE 1000 END) AS cdc_event_time,
                 {", ".join(exprs)},
                 strftime(cdc_event_time AT TIME ZONE 'UTC', '%Y') AS year, strftime(cdc_event_time AT TIME ZONE 'UTC', '%m') AS month,
                 strftime(cdc_event_time AT TIME ZONE 'UTC', '%d') AS day, strftime(cdc_event_time AT TIME ZONE 'UTC', '%H') AS hour
          FROM (SELECT j, CASE WHEN j->>'$.eventName' = 'REMOVE' THEN j->'$.dynamodb.OldImage'
                               ELSE j->'$.dynamodb.NewImage' END AS img
                FROM (SELECT json AS j FROM read_json_objects('{inp}', format = 'newline_delimited')))
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (year, month, day, hour));
    """)


# --- pyarrow, Lambda style --------------------------------------------------------------------
PYARROW = r'''
import base64, datetime, decimal, json, sys
import pyarrow as pa, pyarrow.parquet as pq
from boto3.dynamodb.types import TypeDeserializer, Binary
inp, out, cols = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
td = TypeDeserializer()
def arrow_type(t):
    if t == "string" or t == "json": return pa.string()
    if t == "bigint": return pa.int64()
    if t == "int": return pa.int32()
    if t == "double": return pa.float64()
    if t == "boolean": return pa.bool_()
    if t == "binary": return pa.binary()
    if t == "list<string>": return pa.list_(pa.string())
    if t == "list<binary>": return pa.list_(pa.binary())
    p, s = t[8:-1].split(","); return pa.decimal128(int(p), int(s))
def plain(v):
    if isinstance(v, Binary): return base64.b64encode(v.value).decode()
    if isinstance(v, decimal.Decimal): return str(v)
    if isinstance(v, (set, frozenset)): return sorted(plain(x) for x in v)
    if isinstance(v, dict): return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    return v
def convert(v, t):
    if v is None: return None
    if t == "json": return json.dumps(plain(v))
    if t.startswith("decimal"): return v.quantize(decimal.Decimal(1).scaleb(-int(t[:-1].split(",")[1])))
    if t in ("bigint", "int"): return int(v)
    if t == "double": return float(v)
    if t == "binary": return v.value if isinstance(v, Binary) else v
    if t == "list<string>": return sorted(str(x) for x in v)
    if t == "list<binary>": return sorted(x.value for x in v)
    if t == "string": return v if isinstance(v, str) else str(v)
    return v
schema = pa.schema([("cdc_operation", pa.string()), ("cdc_event_id", pa.string()), ("cdc_event_time", pa.timestamp("us", tz="UTC"))]
                   + [(n, arrow_type(t)) for n, t, _ in cols]
                   + [("year", pa.string()), ("month", pa.string()), ("day", pa.string()), ("hour", pa.string())])
def flush(rows):
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_to_dataset(table, out, partition_cols=["year", "month", "day", "hour"], compression="zstd")
def wire(v):
    # The stream's JSON holds binary as base64; TypeDeserializer wants bytes (as botocore gives).
    if "B" in v: return {"B": base64.b64decode(v["B"])}
    if "BS" in v: return {"BS": [base64.b64decode(x) for x in v["BS"]]}
    if "M" in v: return {"M": {k: wire(x) for k, x in v["M"].items()}}
    if "L" in v: return {"L": [wire(x) for x in v["L"]]}
    return v
rows = []
with open(inp) as f:
    for line in f:
        r = json.loads(line)
        d = r["dynamodb"]
        which = "OldImage" if r.get("eventName") == "REMOVE" else "NewImage"  # as ddb-lake does
        image = td.deserialize(wire({"M": d.get(which, {})}))
        scale = 1e6 if d.get("ApproximateCreationDateTimePrecision") == "MICROSECOND" else 1e3
        t = datetime.datetime.fromtimestamp(d["ApproximateCreationDateTime"] / scale, datetime.timezone.utc)
        row = {"cdc_operation": r.get("eventName"), "cdc_event_id": r.get("eventID"), "cdc_event_time": t,
               "year": f"{t.year:04}", "month": f"{t.month:02}", "day": f"{t.day:02}", "hour": f"{t.hour:02}"}
        for name, ty, path in cols:
            v = image
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            row[name] = convert(v, ty)
        rows.append(row)
        if len(rows) == 100_000:  # one Lambda invocation's batch
            flush(rows); rows = []
if rows: flush(rows)
'''

# --- Polars -----------------------------------------------------------------------------------
POLARS = r'''
import json, sys
import polars as pl
inp, out, cols = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
df = pl.read_ndjson(inp, infer_schema_length=None)
image_dtype = df.schema["dynamodb"]
def field_in(image, path, code):
    e = pl.col("dynamodb").struct.field(image)
    for i, k in enumerate(path):
        if i > 0:
            e = e.struct.field("M")
        e = e.struct.field(k)
    return e.struct.field(code)
def has_in(image, path, code):
    dt = dict((f.name, f.dtype) for f in image_dtype.fields).get(image)
    if dt is None: return False
    for i, k in enumerate(path):
        if i > 0:
            dt = dict((f.name, f.dtype) for f in dt.fields).get("M")
            if dt is None: return False
        dt = dict((f.name, f.dtype) for f in dt.fields).get(k)
        if dt is None: return False
    return code in dict((f.name, f.dtype) for f in dt.fields)
def has(path, code):
    return has_in("NewImage", path, code) or has_in("OldImage", path, code)
def field(path, code, each=lambda e: e):
    # NewImage, or OldImage for a REMOVE, as ddb-lake does; `each` turns either image's value
    # into the same type (the images' inferred struct types may differ) before they are joined.
    new = each(field_in("NewImage", path, code)) if has_in("NewImage", path, code) else pl.lit(None)
    if not has_in("OldImage", path, code):
        return new
    return pl.when(pl.col("eventName") == "REMOVE").then(each(field_in("OldImage", path, code))).otherwise(new)
exprs = []
for name, ty, path in cols:
    if ty == "string": e = field(path, "S")
    elif ty == "bigint": e = field(path, "N").cast(pl.Int64)
    elif ty == "int": e = field(path, "N").cast(pl.Int32)
    elif ty == "double": e = field(path, "N").cast(pl.Float64)
    elif ty.startswith("decimal"):
        p, s = ty[8:-1].split(","); e = field(path, "N").cast(pl.Decimal(int(p), int(s)))
    elif ty == "boolean": e = field(path, "BOOL")
    elif ty == "binary": e = field(path, "B").str.decode("base64")
    elif ty == "list<string>":
        parts = [field(path, c) for c in ("SS", "NS") if has(path, c)]
        e = pl.coalesce(parts) if len(parts) > 1 else parts[0]
    elif ty == "list<binary>": e = field(path, "BS").list.eval(pl.element().str.decode("base64"))
    else:
        parts = [field(path, c, lambda e: e.struct.json_encode()) for c in ("M", "L") if has(path, c)]
        e = pl.coalesce(parts) if len(parts) > 1 else parts[0]
    exprs.append(e.alias(name))
d = pl.col("dynamodb")
micros = d.struct.field("ApproximateCreationDateTimePrecision") == "MICROSECOND" if "ApproximateCreationDateTimePrecision" in [f.name for f in image_dtype.fields] else pl.lit(False)
us = pl.when(micros).then(d.struct.field("ApproximateCreationDateTime")).otherwise(d.struct.field("ApproximateCreationDateTime") * 1000)
t = pl.from_epoch(us, time_unit="us").dt.replace_time_zone("UTC")
df = df.with_columns(t.alias("cdc_event_time"))
t = pl.col("cdc_event_time")
out_df = df.select(
    pl.col("eventName").alias("cdc_operation"), pl.col("eventID").alias("cdc_event_id"), t,
    *exprs,
    t.dt.strftime("%Y").alias("year"), t.dt.strftime("%m").alias("month"), t.dt.strftime("%d").alias("day"), t.dt.strftime("%H").alias("hour"),
)
out_df.write_parquet(out, compression="zstd", partition_by=["year", "month", "day", "hour"])
'''


def shared_bytes(folder, names):
    """Compressed bytes of the columns named `names` in every Parquet file under folder, from the
    files' footers: the same columns compared across tools, whatever else each one writes."""
    import pyarrow.parquet as pq
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            if not f.endswith(".parquet"):
                continue
            meta = pq.ParquetFile(os.path.join(root, f)).metadata
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                for c in range(rg.num_columns):
                    col = rg.column(c)
                    if col.path_in_schema.split(".")[0] in names:
                        total += col.total_compressed_size
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--work", default="target/side-by-side")
    ap.add_argument("--bin", default="target/release/ddb-lake")
    ap.add_argument("--tools", default="ddb-lake,duckdb,polars,pyarrow")
    ap.add_argument("--doc", help="write the results table into this Markdown file")
    ap.add_argument("--floor", help="the parse-only floor program (benches/floor.rs)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    inp = os.path.join(a.work, f"input-{a.records}.jsonl")
    if not os.path.exists(inp):
        sh([a.bin, "generate", "--records", str(a.records), "--seed", "7", "--hours", "24", "-o", inp])
    mb = os.path.getsize(inp) / 1e6
    env = dict(os.environ, POLARS_MAX_THREADS=str(a.threads), RAYON_NUM_THREADS=str(a.threads))
    results = {}
    outs = {t: os.path.join(a.work, f"out-{t}") for t in a.tools.split(",")}
    for o in outs.values():
        shutil.rmtree(o, ignore_errors=True)
    # ddb-lake first: its inferred schema gives every tool the same columns.
    lake = outs.get("ddb-lake") or os.path.join(a.work, "out-ddb-lake")
    results["ddb-lake"] = timed([a.bin, "export", "-i", inp, "-o", lake, "--layout", "hive", "--no-progress", "--json"], env)
    cols = columns_from(os.path.join(lake, "_ddb_lake", "schemas", "orders.toml"))
    py = sys.executable
    for tool in a.tools.split(","):
        if tool == "duckdb":
            sql = duckdb_sql(inp, outs[tool], cols, a.threads)
            results[tool] = timed([py, "-c", f"import duckdb; duckdb.execute({sql!r})"], env)
        elif tool == "pyarrow":
            results[tool] = timed([py, "-c", PYARROW, inp, outs[tool], json.dumps(cols)], env)
        elif tool == "polars":
            results[tool] = timed([py, "-c", POLARS, inp, outs[tool], json.dumps(cols)], env)
    floors = []
    if a.floor:
        for parser in ("serde", "tape"):
            for t in sorted({1, a.threads}):
                secs, rss, cpu, out = timed([a.floor, inp, str(t), parser])
                floors.append((parser, t, json.loads(out)["seconds"], rss, cpu))
    import duckdb
    lines = [
        f"Input: {a.records:,} records, {mb:,.0f} MB (`ddb-lake generate --seed 7 --hours 24`); {a.threads} threads for every tool; {len(cols)} attribute columns + operation, event id, event time; zstd; Hive hour folders.",
        "",
        "| tool | time | records/s | MB/s | CPU | peak RSS | output | the shared columns | bytes/row, shared columns | rows | ddb-lake faster by |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    shared_names = {c[0] for c in cols} | {"cdc_operation", "cdc_event_id", "cdc_event_time"}
    base = a.records / results["ddb-lake"][0]
    for tool, (secs, rss, cpu, _) in results.items():
        out = outs.get(tool, lake)
        rows = duckdb.execute(f"SELECT count(*) FROM read_parquet('{out}/**/*.parquet')").fetchone()[0]
        rate = a.records / secs
        shared = shared_bytes(out, shared_names)
        lines.append(
            f"| {tool} | {secs:.1f} s | {rate:,.0f} | {mb / secs:,.1f} | {cpu}% | {rss / 2**20:,.0f} MiB | {du(out) / 2**20:,.1f} MiB | {shared / 2**20:,.1f} MiB | {shared / max(rows, 1):,.1f} | {rows:,} | {base / rate:.1f}x |"
        )
        if rows != a.records:
            lines.append(f"| ^ row count differs from the input ({a.records:,}) | | | | | | | | | | |")
    if floors:
        lake_secs = results["ddb-lake"][0]
        lines += [
            "",
            "Parse-only floors (`benches/floor.rs`: read every line and parse it, nothing flattened or written; `serde`: serde_json into `IgnoredAny`; `tape`: ddb-lake's fast decoder, the parser the pipeline uses):",
            "",
            "| parser | threads | time | records/s | MB/s | CPU | ddb-lake's time / floor |",
            "|---|---|---|---|---|---|---|",
        ]
        for parser, t, secs, rss, cpu in floors:
            lines.append(f"| {parser} | {t} | {secs:.2f} s | {a.records / secs:,.0f} | {mb / secs:,.0f} | {cpu}% | {lake_secs / secs:.1f}x |")
    table = "\n".join(lines)
    print(table)
    if a.doc:
        write_block(a.doc, "side-by-side", table)


if __name__ == "__main__":
    main()
