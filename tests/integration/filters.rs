//! Filters (`--filter-table`, `--filter-operation`, `--filter-pattern` in Lambda's filter
//! syntax) on every kind of source: files, a table export in Ion, a DynamoDB stream. Filtered
//! records are counted: records in = rows + error entries + filtered.

use crate::handover::CHANGE;
use crate::helpers::*;

fn accounted(summary: &serde_json::Value) -> (u64, u64) {
    let sum = |k: &str| -> u64 {
        summary[k]
            .as_object()
            .map_or(0, |o| o.values().map(|v| v.as_u64().unwrap()).sum())
    };
    let (rows, filtered) = (sum("rows_out"), sum("filtered"));
    assert_eq!(
        summary["records_in"].as_u64().unwrap(),
        rows + sum("errors") + filtered,
        "{summary}"
    );
    (rows, filtered)
}

#[test]
fn a_pattern_and_an_operation_keep_exactly_the_matching_file_records() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 400, 9, &[]);
    let lake = dir.path().join("lake");
    let summary = export_json(
        &[
            "-i",
            s(&input),
            "-o",
            s(&lake),
            "--filter-operation",
            "MODIFY",
            "--filter-pattern",
            r#"{"dynamodb": {"NewImage": {"Status": {"S": ["PAID", {"prefix": "SHIP"}]}}}}"#,
        ],
        0,
    );
    let (rows, filtered) = accounted(&summary);
    assert!(rows > 0 && filtered > 0, "{summary}");
    // Counted independently from the input, and read back with DuckDB.
    let out = py(
        r#"
import json, sys, duckdb
want = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    s = r['dynamodb'].get('NewImage', {}).get('Status', {}).get('S', '')
    want += r['eventName'] == 'MODIFY' and (s == 'PAID' or s.startswith('SHIP'))
got = duckdb.execute(f"select count(*), count(*) filter (where cdc_operation = 'MODIFY' and (status = 'PAID' or status like 'SHIP%')) from read_parquet('{sys.argv[2]}/orders/**/*.parquet')").fetchone()
print(want, got[0], got[1])
"#,
        &[s(&input), s(&lake)],
    );
    assert_eq!(out, format!("{rows} {rows} {rows}"));
}

#[test]
fn an_ion_export_and_a_dynamodb_stream_are_filtered_the_same_way() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A full export in Ion: half its items have Flag = true.
    let folder = py_script(
        "write_export.py",
        &[
            s(dir.path()),
            "Orders",
            "ION",
            "FULL_EXPORT",
            "40",
            "3",
            "2",
        ],
    );
    let lake = dir.path().join("lake");
    let summary = export_json(
        &[
            "-i",
            folder.trim(),
            "-o",
            s(&lake),
            "--filter-pattern",
            r#"{"eventName": ["SNAPSHOT"], "dynamodb": {"NewImage": {"Flag": {"BOOL": [true]}}}}"#,
        ],
        0,
    );
    assert_eq!(accounted(&summary), (20, 20));
    let flags = py(
        "import sys, duckdb; print(duckdb.execute(f\"select count(*) from read_parquet('{sys.argv[1]}/orders/**/*.parquet') where flag\").fetchone()[0])",
        &[s(&lake)],
    );
    assert_eq!(flags, "20");
    // A DynamoDB stream: the keys that start with 1 (1 and 10 to 19) of 30 inserts; the
    // checkpoint moves past the others.
    let table = unique("Filtered");
    py(CHANGE, &[&table, "create"]);
    let stream = dir.path().join("stream-lake");
    let args = [
        "--dynamodb-stream",
        &table,
        "-o",
        s(&stream),
        "--filter-pattern",
        r#"{"dynamodb": {"Keys": {"Id": {"N": [{"prefix": "1"}]}}}}"#,
    ];
    let first = export_json(&args, 0);
    assert_eq!(accounted(&first), (11, 19));
    assert_eq!(parquet_rows(&stream), 11);
    let again = export_json(&args, 0);
    assert_eq!(again["records_in"], 0, "{again}");
}
