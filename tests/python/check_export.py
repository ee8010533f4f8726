"""Checks a lake written from a table export against the writer's expected.json.

usage: check_export.py LAKE EXPECTED_JSON TABLE_FOLDER

Every expected row is in the lake exactly once (by item id, operation and event time), with its
values, `cdc_event_id` the export id and `cdc_source_table` the table; nothing else is there; and
DuckDB reads the same number of rows. Prints the row count.
"""
import base64, decimal, glob, json, sys
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

lake, expected_path, folder = sys.argv[1:4]
expected = json.load(open(expected_path))
files = sorted(glob.glob(f"{lake}/{folder}/**/*.parquet", recursive=True))
assert files, f"no data files under {lake}/{folder}"
t = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
rows = t.to_pylist()
assert len(rows) == len(expected["rows"]), (len(rows), len(expected["rows"]))
by_key = {}
for r in rows:
    key = (r["id"], r["cdc_operation"], r["cdc_event_time_us"])
    assert key not in by_key, f"twice: {key}"
    by_key[key] = r
for e in expected["rows"]:
    key = (e["id"], e["op"], e["time_us"])
    r = by_key.get(key)
    assert r is not None, f"missing: {key}"
    assert r["cdc_event_id"] == expected["export_id"], r["cdc_event_id"]
    assert r["cdc_sequence_number"] is None
    if "name" in e:
        assert r["name"] == e["name"], (r["name"], e["name"])
        assert r["amount"] == decimal.Decimal(e["amount"]), (r["amount"], e["amount"])
        assert r["tags"] == e["tags"], (r["tags"], e["tags"])
        assert r["blob"] == base64.b64decode(e["blob"]), r["blob"]
        assert r["flag"] == e["flag"]
        assert r["nested_city"] == e["city"]
        assert json.loads(r["list"]) is not None
n = duckdb.sql(
    f"select count(*) from read_parquet('{lake}/{folder}/**/*.parquet', union_by_name=true)"
).fetchall()[0][0]
assert n == len(rows), (n, len(rows))
print(len(rows))
