//! Schema files: inference, declared types, and append-only evolution across runs.

use crate::helpers::*;

fn record(id: &str, attrs: &str) -> String {
    format!(
        r#"{{"eventID":"{id}","eventName":"INSERT","tableName":"Evo","dynamodb":{{"ApproximateCreationDateTime":1795000000331,"Keys":{{"Id":{{"S":"{id}"}}}},"NewImage":{{"Id":{{"S":"{id}"}}{attrs}}}}}}}"#
    )
}

#[test]
fn infer_writes_an_editable_schema_that_export_then_follows() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 300, 8, &[]);
    let schemas = dir.path().join("schemas");
    let out = run_ok(
        &["schema", "infer", "-i", s(&input), "--out-dir", s(&schemas)],
        0,
    );
    assert!(out.contains("orders.toml"), "{out}");
    let text = std::fs::read_to_string(schemas.join("orders.toml")).unwrap();
    assert!(
        text.contains("name = \"total\"") && text.contains("type = \"decimal(38,9)\""),
        "{text}"
    );
    // Edit it: total as decimal(12,2), renamed; the rest as inferred.
    let edited = text.replace(
        "name = \"total\"\ntype = \"decimal(38,9)\"",
        "name = \"order_total\"\ntype = \"decimal(12,2)\"",
    );
    assert_ne!(edited, text);
    std::fs::write(schemas.join("orders.toml"), edited).unwrap();
    let lake = dir.path().join("lake");
    export_json(
        &["-i", s(&input), "-o", s(&lake), "--schemas", s(&schemas)],
        0,
    );
    let check = r#"
import pyarrow.dataset as ds, sys
t = ds.dataset(sys.argv[1], format='parquet').to_table()
assert str(t.schema.field('order_total').type) == 'decimal128(12, 2)', t.schema
assert 'total' not in t.schema.names
assert t.num_rows == 300 and t.column('order_total').null_count == 0
print('OK')
"#;
    assert_eq!(py(check, &[s(&lake.join("orders"))]), "OK");
}

#[test]
fn columns_are_only_appended_and_never_change_type() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let run1 = dir.path().join("1.jsonl");
    std::fs::write(&run1, record("a", r#","Price":{"N":"10"}"#)).unwrap();
    export_json(&["-i", s(&run1), "-o", s(&lake)], 0);
    let run2 = dir.path().join("2.jsonl");
    std::fs::write(
        &run2,
        [
            record("b", r#","Color":{"S":"red"},"Price":{"N":"12.5"}"#),
            record("c", r#","Price":{"N":"7"}"#),
        ]
        .join("\n"),
    )
    .unwrap();
    let summary = export_json(&["-i", s(&run2), "-o", s(&lake)], 0);
    // Price stays bigint (remembered from run 1); 12.5 is kept as text and counted.
    assert_eq!(summary["type_mismatches"]["evo.price"], 1);
    let check = r#"
import pyarrow.parquet as pq, glob, sys
files = sorted(glob.glob(sys.argv[1] + '/evo/**/*.parquet', recursive=True))
schemas = [pq.read_schema(f).names for f in files]
longest = max(schemas, key=len)
for s in schemas:
    assert longest[:len(s)] == s, (s, longest)
assert longest[-3:] == ['price', 'color', 'price_str'], longest
rows = {}
for f in files:
    for r in pq.read_table(f).to_pylist():
        rows[r['id']] = r
assert rows['a']['price'] == 10 and rows['c']['price'] == 7
assert rows['b']['price'] is None and rows['b']['price_str'] == '12.5' and rows['b']['color'] == 'red'
state = open(sys.argv[1] + '/_ddb_lake/schemas/evo.toml').read()
assert state.index('"price"') < state.index('"color"') < state.index('"price_str"'), state
print('OK')
"#;
    assert_eq!(py(check, &[s(&lake)]), "OK");
}

#[test]
fn a_declared_type_that_conflicts_with_the_remembered_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, record("a", r#","Price":{"N":"10"}"#)).unwrap();
    export_json(&["-i", s(&input), "-o", s(&lake)], 0);
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(
        schemas.join("evo.toml"),
        "table = \"Evo\"\n[[columns]]\nname = \"price\"\ntype = \"string\"\npath = [\"Price\"]\n",
    )
    .unwrap();
    let out = run(&[
        "export",
        "-i",
        s(&input),
        "-o",
        s(&lake),
        "--schemas",
        s(&schemas),
    ]);
    // A configuration error (README, "Exit codes").
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("price") && err.contains("never changes"),
        "{err}"
    );
}

#[test]
fn several_tables_in_one_input_go_to_separate_tables() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    generate(&a, 120, 1, &["--table", "Orders"]);
    generate(&b, 80, 2, &["--table", "Returns"]);
    let mixed = dir.path().join("mixed.jsonl");
    let (ta, tb) = (
        std::fs::read_to_string(&a).unwrap(),
        std::fs::read_to_string(&b).unwrap(),
    );
    let mut lines: Vec<&str> = ta.lines().chain(tb.lines()).collect();
    lines.sort_by_key(|l| l.len()); // interleave the tables
    std::fs::write(&mixed, lines.join("\n")).unwrap();
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", s(&mixed), "-o", s(&lake)], 0);
    assert_eq!(summary["rows_out"]["orders"], 120);
    assert_eq!(summary["rows_out"]["returns"], 80);
    assert_eq!(duckdb_count(&lake.join("orders")), 120);
    assert_eq!(duckdb_count(&lake.join("returns")), 80);
}

#[test]
fn declared_types_old_image_default_table_and_processing_time() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rec = |id: &str, price: &str| {
        format!(
            r#"{{"eventID":"{id}","eventName":"MODIFY","dynamodb":{{"ApproximateCreationDateTime":1795000000331,"Keys":{{"Id":{{"S":"{id}"}}}},"NewImage":{{"Id":{{"S":"{id}"}},"Ts1":{{"N":"1795000000"}},"Ts2":{{"S":"2026-11-18T11:06:40.5Z"}},"Day":{{"S":"2026-11-18"}},"Score":{{"N":"3.25"}},"Nums":{{"L":[{{"N":"1"}},{{"N":"2"}}]}},"Raw":{{"B":"AAEC"}},"Doc":{{"M":{{"a":{{"N":"1"}}}}}},"Price":{{"N":"{price}"}}}},"OldImage":{{"Id":{{"S":"{id}"}},"Price":{{"N":"18.00"}}}}}}}}"#
        )
    };
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, [rec("a", "19.99"), rec("b", "5")].join("\n")).unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(
        schemas.join("typed.toml"),
        r#"table = "Typed"
[[columns]]
name = "ts1"
type = "timestamp(epoch_s)"
path = ["Ts1"]
[[columns]]
name = "ts2"
type = "timestamp(iso)"
path = ["Ts2"]
[[columns]]
name = "day"
type = "date"
path = ["Day"]
[[columns]]
name = "score"
type = "double"
path = ["Score"]
[[columns]]
name = "nums"
type = "list<bigint>"
path = ["Nums"]
[[columns]]
name = "raw"
type = "binary"
path = ["Raw"]
[[columns]]
name = "doc"
type = "json"
path = ["Doc"]
[[columns]]
name = "price"
type = "decimal(10,2)"
path = ["Price"]
"#,
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let url = format!("file://{}", lake.display());
    // The run's hours: its two records can fall on both sides of an hour boundary.
    let hour = || (chrono::Utc::now().timestamp() / 3600).to_string();
    let first_hour = hour();
    export_json(
        &[
            "-i",
            s(&input),
            "-o",
            &url,
            "--schemas",
            s(&schemas),
            "--default-table",
            "Typed",
            "--keep-old-image",
            "--partition-time",
            "processing",
        ],
        0,
    );
    let last_hour = hour();
    let check = r#"
import pyarrow.dataset as ds, sys, datetime, decimal, os
root = sys.argv[1] + '/typed'
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
first_hour, last_hour = int(sys.argv[2]), int(sys.argv[3])
assert 1 <= len(files) <= 1 + last_hour - first_hour, files
t = ds.dataset(root, format='parquet').to_table()
types = {f.name: str(f.type) for f in t.schema}
assert types['ts1'] == 'timestamp[us, tz=UTC]' and types['ts2'] == 'timestamp[us, tz=UTC]', types
assert types['day'] == 'date32[day]' and types['score'] == 'double' and types['nums'] == 'list<element: int64>', types
assert types['raw'] == 'binary' and types['doc'] == 'string' and types['price'] == 'decimal128(10, 2)', types
rows = {r['id']: r for r in t.to_pylist()}
a = rows['a']
utc = datetime.timezone.utc
assert a['ts1'] == datetime.datetime(2026, 11, 18, 11, 6, 40, tzinfo=utc), a['ts1']
assert a['ts2'] == datetime.datetime(2026, 11, 18, 11, 6, 40, 500000, tzinfo=utc), a['ts2']
assert a['day'] == datetime.date(2026, 11, 18) and a['score'] == 3.25 and a['nums'] == [1, 2]
assert a['raw'] == b'\x00\x01\x02' and a['doc'] == '{"a":1}'
assert a['price'] == decimal.Decimal('19.99') and rows['b']['price'] == decimal.Decimal('5.00')
assert a['old_price'] == decimal.Decimal('18') and a['old_id'] == 'a'
assert a['cdc_source_table'] == 'Typed'
# Processing time: each file's folder is an hour of the run, not the event's hour, and its rows'
# data columns agree with it.
for f in files:
    parts = os.path.relpath(f, root).split('/')
    folder = datetime.datetime(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), tzinfo=utc)
    assert first_hour <= int(folder.timestamp()) // 3600 <= last_hour, (parts, first_hour, last_hour)
    for r in ds.dataset(f, format='parquet').to_table().to_pylist():
        assert r['cdc_date'] == folder.date() and r['cdc_hour'] == folder.hour, (r, parts)
print('OK')
"#;
    assert_eq!(py(check, &[s(&lake), &first_hour, &last_hour]), "OK");
}

#[test]
fn the_committed_example_schema_applies_to_the_sample() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let lake = dir.path().join("lake");
    let summary = export_json(
        &[
            "-i",
            &format!("{root}/schemas/examples/orders.jsonl"),
            "-o",
            s(&lake),
            "--schemas",
            &format!("{root}/schemas"),
        ],
        0,
    );
    assert_eq!(summary["rows_out"]["orders"], 300);
    assert_eq!(summary["type_mismatches"], serde_json::json!({}));
    let check = r#"
import pyarrow.dataset as ds, sys
t = ds.dataset(sys.argv[1], format='parquet').to_table()
types = {f.name: str(f.type) for f in t.schema}
want = {'total': 'decimal128(12, 2)', 'item_count': 'int32', 'created_at': 'timestamp[us, tz=UTC]',
        'ship_lat': 'double', 'ratings': 'list<element: int32>', 'checksums': 'list<element: binary>'}
for k, v in want.items():
    assert types[k] == v, (k, types[k])
names = t.schema.names
assert names.index('checksums') < names.index('notes'), names  # undeclared attributes come after
assert t.column('created_at').null_count == 0 and t.column('total').null_count == 0
print('OK')
"#;
    assert_eq!(py(check, &[s(&lake.join("orders"))]), "OK");
}
