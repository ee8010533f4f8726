"""Would sorting rows by item key make ddb-lake's files smaller? (docs/BENCHMARKS.md, "Sorting rows within a file")

usage: python benches/sort_rows.py 'LAKE/orders/year=2026/month=11/day=01/hour=12/*.parquet' [--key order_id]

Reads the given ddb-lake Parquet files as one table and writes it twice with pyarrow, zstd(3) and
ddb-lake's dictionary choices (the columns its first file dictionary-encodes): in the order read,
and sorted by the item key and then by change order (event time, then sequence number, or the
input line for file input, as `[parquet] sort_rows` does). Prints both sizes. One hour's file shows
what sorting each flushed file would give; a whole day's files what compacting would."""
import argparse
import glob
import os
import tempfile

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def dictionary_columns(path):
    """The top-level columns ddb-lake dictionary-encoded in this file."""
    rg = pq.ParquetFile(path).metadata.row_group(0)
    cols = set()
    for i in range(rg.num_columns):
        c = rg.column(i)
        if any("DICTIONARY" in e for e in c.encodings):
            cols.add(c.path_in_schema.split(".")[0])
    return sorted(cols)


def written_size(table, dict_cols):
    with tempfile.NamedTemporaryFile(suffix=".parquet") as f:
        pq.write_table(table, f.name, compression="zstd", compression_level=3,
                       use_dictionary=dict_cols, row_group_size=1 << 20)
        return os.path.getsize(f.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+", help="Parquet files or glob patterns")
    ap.add_argument("--key", default="order_id", help="the item key column")
    a = ap.parse_args()
    paths = sorted(p for f in a.files for p in glob.glob(f))
    t = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default")
    dict_cols = dictionary_columns(paths[0])
    seq = t.column("cdc_sequence_number")
    order = "cdc_sequence_number" if seq.null_count < len(t) else "cdc_source_line"
    as_read = written_size(t, dict_cols)
    by = [(a.key, "ascending"), ("cdc_event_time_us", "ascending"), (order, "ascending")]
    sorted_idx = pc.sort_indices(t, sort_keys=by)
    by_key = written_size(t.take(sorted_idx), dict_cols)
    keys = pc.count_distinct(t.column(a.key)).as_py()
    print(f"{len(paths)} files, {len(t):,} rows, {keys:,} distinct keys: "
          f"in the order read {as_read:,} B, sorted by key {by_key:,} B "
          f"({(by_key - as_read) / as_read:+.1%})")


if __name__ == "__main__":
    main()
