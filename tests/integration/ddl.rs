//! Table definitions: the Athena DDL parses (Hive dialect) and declares exactly the files' columns
//! and the layout's partition keys.

use sqlparser::ast::{HiveDistributionStyle, Statement};
use sqlparser::dialect::HiveDialect;
use sqlparser::parser::Parser;

use crate::helpers::*;

/// `ddl athena` for a local lake with the given layout, located at s3://bucket/lake.
fn athena_ddl(lake: &std::path::Path, layout: &str, extra: &[&str]) -> String {
    let mut args = vec!["ddl", "athena", "-o", s(lake), "--layout", layout];
    args.extend_from_slice(&["--location", "s3://bucket/lake"]);
    args.extend_from_slice(extra);
    run_ok(&args, 0)
}

#[test]
fn athena_ddl_parses_and_matches_the_files_for_every_layout() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");
    for (layout, keys) in [
        ("hourly", vec!["datehour"]),
        ("hive", vec!["year", "month", "day", "hour"]),
        ("hive_dt", vec!["dt", "hr"]),
    ] {
        let lake = dir.path().join(layout);
        export_json(&["-i", sample, "-o", s(&lake), "--layout", layout], 0);
        let all = athena_ddl(&lake, layout, &["--database", "cdc"]);
        // The table, then the latest-state view (Trino SQL, not Hive DDL).
        let (ddl, view) = all.split_once("CREATE OR REPLACE VIEW").expect("a view");
        let view = format!("CREATE OR REPLACE VIEW{view}");
        let parsed = Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, &view)
            .unwrap_or_else(|e| panic!("{e}\n{view}"));
        assert!(
            matches!(parsed[..], [Statement::CreateView { .. }]),
            "{view}"
        );
        let statements =
            Parser::parse_sql(&HiveDialect {}, ddl).unwrap_or_else(|e| panic!("{e}\n{ddl}"));
        assert_eq!(statements.len(), 1);
        let Statement::CreateTable(ct) = &statements[0] else {
            panic!("not a CREATE TABLE: {ddl}")
        };
        assert!(ct.external);
        assert_eq!(ct.name.to_string(), "`cdc`.`orders`");
        let columns: Vec<String> = ct.columns.iter().map(|c| c.name.value.clone()).collect();
        let HiveDistributionStyle::PARTITIONED { columns: parts } = &ct.hive_distribution else {
            panic!("no partitions: {ddl}")
        };
        let parts: Vec<String> = parts.iter().map(|c| c.name.value.clone()).collect();
        assert_eq!(parts, keys, "{ddl}");
        // The files' columns, in order, as pyarrow reads them.
        let file_columns = py(
            "import pyarrow.parquet as pq, glob, sys; f = sorted(glob.glob(sys.argv[1] + '/orders/**/*.parquet', recursive=True))[0]; print(','.join(pq.read_schema(f).names))",
            &[s(&lake)],
        );
        assert_eq!(columns.join(","), file_columns);
        assert!(ddl.contains("'projection.enabled'='true'"));
        assert!(ddl.contains("'storage.location.template'='s3://bucket/lake/orders/"));
    }
}

#[test]
fn redshift_ddl_lists_the_same_columns_in_order() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");
    let lake = dir.path().join("lake");
    export_json(&["-i", sample, "-o", s(&lake)], 0);
    let ddl = run_ok(
        &["ddl", "redshift", "-o", s(&lake), "--database", "public"],
        0,
    );
    let statements = Parser::parse_sql(&sqlparser::dialect::RedshiftSqlDialect {}, &ddl)
        .unwrap_or_else(|e| panic!("{e}\n{ddl}"));
    let Statement::CreateTable(ct) = &statements[0] else {
        panic!("not a CREATE TABLE: {ddl}")
    };
    let columns: Vec<String> = ct.columns.iter().map(|c| c.name.value.clone()).collect();
    let file_columns = py(
        "import pyarrow.parquet as pq, glob, sys; f = sorted(glob.glob(sys.argv[1] + '/orders/**/*.parquet', recursive=True))[0]; print(','.join(pq.read_schema(f).names))",
        &[s(&lake)],
    );
    assert_eq!(columns.join(","), file_columns);
    assert!(
        ddl.contains("\"thumbnail\" VARBYTE(1024000)") && ddl.contains("\"tags\" SUPER"),
        "{ddl}"
    );
}

/// The Glue table as boto3 reads it from the local server: columns, partition keys, parameters,
/// and the registered partitions' values.
pub(crate) fn glue_table(database: &str, table: &str) -> serde_json::Value {
    let out = py(
        r#"
import boto3, json, os, sys
g = boto3.client('glue', endpoint_url=os.environ['AWS_ENDPOINT_URL_GLUE'], region_name='us-east-1')
t = g.get_table(DatabaseName=sys.argv[1], Name=sys.argv[2])['Table']
parts = [p['Values'] for p in g.get_partitions(DatabaseName=sys.argv[1], TableName=sys.argv[2])['Partitions']]
print(json.dumps({
    'columns': [c['Name'] for c in t['StorageDescriptor']['Columns']],
    'types': [c['Type'] for c in t['StorageDescriptor']['Columns']],
    'keys': [k['Name'] for k in t.get('PartitionKeys', [])],
    'location': t['StorageDescriptor']['Location'],
    'parameters': t.get('Parameters', {}),
    'partitions': sorted(parts),
}))
"#,
        &[database, table],
    );
    serde_json::from_str(&out).unwrap()
}

fn file_columns(lake: &std::path::Path) -> Vec<String> {
    py(
        "import pyarrow.parquet as pq, glob, sys; f = max(glob.glob(sys.argv[1] + '/orders/**/*.parquet', recursive=True), key=lambda f: len(pq.read_schema(f).names)); print(','.join(pq.read_schema(f).names))",
        &[s(lake)],
    )
    .split(',')
    .map(str::to_string)
    .collect()
}

#[test]
fn glue_registration_creates_alters_and_registers_partitions() {
    if skip_without_servers() {
        return;
    }
    std::env::var("AWS_ENDPOINT_URL_GLUE").expect("run with scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");
    let lake = dir.path().join("lake");
    let db = unique("cdc").replace('-', "_");
    export_json(&["-i", sample, "-o", s(&lake)], 0);
    let ddl = |extra: &[&str]| {
        let mut args = vec![
            "ddl",
            "athena",
            "-o",
            s(&lake),
            "--database",
            &db,
            "--location",
            "s3://bucket/lake",
        ];
        args.extend_from_slice(extra);
        run_ok(&args, 0)
    };
    // Nothing in the catalog: --changes prints the CREATE.
    assert!(ddl(&["--changes"]).starts_with("CREATE EXTERNAL TABLE"));
    let out = ddl(&["--apply", "glue"]);
    assert!(out.contains(&format!("created database {db}")), "{out}");
    assert!(out.contains(&format!("created table {db}.orders")), "{out}");
    let t = glue_table(&db, "orders");
    assert_eq!(t["columns"], serde_json::json!(file_columns(&lake)));
    assert_eq!(t["keys"], serde_json::json!(["datehour"]));
    assert_eq!(t["location"], "s3://bucket/lake/orders/");
    assert_eq!(t["parameters"]["projection.enabled"], "true");
    assert_eq!(
        t["parameters"]["storage.location.template"],
        "s3://bucket/lake/orders/${datehour}/"
    );
    // Up to date: no statements, nothing to do.
    assert_eq!(ddl(&["--changes"]), "");
    assert!(ddl(&["--apply", "glue"]).contains("is up to date"));

    // A new attribute: the change is ALTER TABLE ... ADD COLUMNS, then applied.
    let text = std::fs::read_to_string(sample).unwrap();
    let first = text.lines().next().unwrap().replacen(
        "\"Paid\":{\"BOOL\":false}",
        "\"Paid\":{\"BOOL\":false},\"LoyaltyTier\":{\"S\":\"gold\"}",
        1,
    );
    assert!(first.contains("LoyaltyTier"));
    let more = dir.path().join("more.jsonl");
    std::fs::write(&more, first + "\n").unwrap();
    export_json(&["-i", s(&more), "-o", s(&lake)], 0);
    let alter = ddl(&["--changes"]);
    assert_eq!(
        alter,
        format!(
            "ALTER TABLE `{db}`.`orders` ADD COLUMNS (\n  `loyalty_tier` string COMMENT 'LoyaltyTier'\n);\n"
        )
    );
    assert!(ddl(&["--apply", "glue"]).contains("added 1 columns"));
    let t = glue_table(&db, "orders");
    assert_eq!(t["columns"], serde_json::json!(file_columns(&lake)));
    assert_eq!(
        t["columns"].as_array().unwrap().last().unwrap(),
        "loyalty_tier"
    );

    // A layout Athena cannot project: partitions are registered one by one.
    let by_status = dir.path().join("by_status");
    export_json(
        &[
            "-i",
            sample,
            "-o",
            s(&by_status),
            "--template",
            "{table}/status={status}",
        ],
        0,
    );
    let folders: std::collections::BTreeSet<String> = tree(&by_status)
        .into_iter()
        .filter(|f| f.ends_with(".parquet"))
        .map(|f| f.rsplit_once('/').unwrap().0.to_string())
        .collect();
    let db2 = format!("{db}_status");
    let args = |extra: &'static str| {
        vec![
            "ddl".to_string(),
            "athena".into(),
            "-o".into(),
            s(&by_status).into(),
            "--template".into(),
            "{table}/status={status}".into(),
            "--database".into(),
            db2.clone(),
            "--location".into(),
            "s3://bucket/by_status".into(),
            extra.into(),
        ]
    };
    let printed = run_ok(
        &args("--changes")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        0,
    );
    assert_eq!(
        printed.matches("ADD IF NOT EXISTS PARTITION").count(),
        folders.len()
    );
    // The CREATE (first statement) parses and partitions by the template's column.
    let create = &printed[..printed.find(";\n").unwrap() + 2];
    let statements = Parser::parse_sql(&HiveDialect {}, create).unwrap();
    let Statement::CreateTable(ct) = &statements[0] else {
        panic!("{create}")
    };
    let HiveDistributionStyle::PARTITIONED { columns: keys } = &ct.hive_distribution else {
        panic!("{create}")
    };
    assert_eq!(keys[0].name.value, "status");
    let mut apply = args("--apply");
    apply.push("glue".into());
    let out = run_ok(&apply.iter().map(String::as_str).collect::<Vec<_>>(), 0);
    assert!(
        out.contains(&format!("registered {} partitions", folders.len())),
        "{out}"
    );
    let t = glue_table(&db2, "orders");
    assert_eq!(t["keys"], serde_json::json!(["status"]));
    let expected: Vec<Vec<String>> = folders
        .iter()
        .map(|f| vec![f.split_once("status=").unwrap().1.to_string()])
        .collect();
    assert_eq!(t["partitions"], serde_json::json!(expected));
    assert!(t["parameters"].get("projection.enabled").is_none());
    // Again: nothing new to register.
    assert!(
        !run_ok(&apply.iter().map(String::as_str).collect::<Vec<_>>(), 0).contains("registered")
    );
}

/// The DuckDB type of an Athena (Hive DDL) type.
fn duckdb_type(athena: &str) -> String {
    let t = athena.to_ascii_lowercase();
    if let Some(inner) = t.strip_prefix("array<").and_then(|r| r.strip_suffix('>')) {
        return format!("{}[]", duckdb_type(inner));
    }
    if let Some(ps) = t.strip_prefix("decimal") {
        return format!("DECIMAL{}", ps.replace(' ', ""));
    }
    match t.as_str() {
        "string" => "VARCHAR",
        "bigint" => "BIGINT",
        "int" => "INTEGER",
        "double" => "DOUBLE",
        "boolean" => "BOOLEAN",
        "timestamp" => "TIMESTAMP WITH TIME ZONE",
        "date" => "DATE",
        "binary" => "BLOB",
        other => panic!("unmapped type {other}"),
    }
    .to_string()
}

#[test]
fn duckdb_reads_the_lake_with_the_rows_and_types_the_ddl_declares() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", sample, "-o", s(&lake), "--layout", "hive"], 0);
    let ddl = athena_ddl(&lake, "hive", &[]);
    let statements = Parser::parse_sql(&HiveDialect {}, &ddl).unwrap();
    let Statement::CreateTable(ct) = &statements[0] else {
        panic!("{ddl}")
    };
    let mut declared: Vec<(String, String)> = ct
        .columns
        .iter()
        .map(|c| (c.name.value.clone(), duckdb_type(&c.data_type.to_string())))
        .collect();
    let HiveDistributionStyle::PARTITIONED { columns: keys } = &ct.hive_distribution else {
        panic!("{ddl}")
    };
    declared.extend(
        keys.iter()
            .map(|k| (k.name.value.clone(), duckdb_type(&k.data_type.to_string()))),
    );
    // DuckDB over the same partition scheme: Hive folders, keys as text like the DDL's.
    let out = py(
        r#"
import duckdb, json, sys
src = f"read_parquet('{sys.argv[1]}/orders/**/*.parquet', hive_partitioning=true, hive_types_autocast=false, union_by_name=true)"
cols = [(r[0], r[1]) for r in duckdb.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
rows = duckdb.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
# Every row sits in the folder of its event hour (UTC), as the partition keys declare.
wrong = duckdb.execute(f"""SELECT count(*) FROM {src} WHERE
  year <> strftime(cdc_event_time AT TIME ZONE 'UTC', '%Y') OR month <> strftime(cdc_event_time AT TIME ZONE 'UTC', '%m')
  OR day <> strftime(cdc_event_time AT TIME ZONE 'UTC', '%d') OR hour <> strftime(cdc_event_time AT TIME ZONE 'UTC', '%H')""").fetchone()[0]
print(json.dumps({"columns": cols, "rows": rows, "misplaced": wrong}))
"#,
        &[s(&lake)],
    );
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut got_cols: Vec<(String, String)> = got["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
        .collect();
    // Data columns in file order; DuckDB lists the Hive keys after them in its own order.
    let n = ct.columns.len();
    got_cols[n..].sort();
    declared[n..].sort();
    assert_eq!(got_cols, declared);
    assert_eq!(got["rows"], summary["rows_out"]["orders"]);
    assert_eq!(got["misplaced"], 0);
}

/// Issue 12: the DynamoDB Streams documentation's sample event (December 2019) landed in a lake
/// whose Athena projection started at 2020: Athena returned nothing for it. The range now starts
/// at the lake's earliest hour; with Glue, `--changes` and `--apply glue` widen it when older
/// hours appear, and never narrow it.
#[test]
fn the_projection_range_covers_the_lakes_oldest_hour_and_widens_in_glue() {
    if skip_without_servers() {
        return;
    }
    std::env::var("AWS_ENDPOINT_URL_GLUE").expect("run with scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let event = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/lambda_event_2019.json"
    );
    let summary = export_json(&["-i", event, "-o", s(&lake)], 0);
    assert_eq!(summary["rows_out"]["my_test_table"], 2);
    assert!(lake.join("my_test_table/2019/12/16/17").is_dir());
    let printed = athena_ddl(&lake, "hourly", &[]);
    assert!(
        printed.contains("'projection.datehour.range'='2019/12/16/17,NOW'"),
        "{printed}"
    );
    // A configured start earlier than the lake's wins.
    let earlier = athena_ddl(&lake, "hourly", &["--projection-start", "2019-06-01"]);
    assert!(
        earlier.contains("'projection.datehour.range'='2019/06/01/00,NOW'"),
        "{earlier}"
    );

    // Glue: registered from a lake whose oldest hour is in 2026...
    let db = unique("widen").replace('-', "_");
    let newer = dir.path().join("newer");
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");
    export_json(&["-i", sample, "-o", s(&newer)], 0);
    let ddl = |extra: &[&str]| {
        let mut args = vec!["ddl", "athena", "-o", s(&newer), "--database", &db];
        args.extend_from_slice(&["--location", "s3://bucket/newer"]);
        args.extend_from_slice(extra);
        run_ok(&args, 0)
    };
    ddl(&["--apply", "glue"]);
    let range = || glue_table(&db, "orders")["parameters"]["projection.datehour.range"].clone();
    assert_eq!(range(), "2026/11/01/08,NOW");
    assert!(ddl(&["--changes"]).is_empty(), "nothing to change yet");
    // ...then a backfill brings older hours: the range widens.
    let old = dir.path().join("old.jsonl");
    generate(
        &old,
        50,
        3,
        &["--start", "2025-03-01T05:00:00Z", "--hours", "1"],
    );
    export_json(&["-i", s(&old), "-o", s(&newer)], 0);
    let changes = ddl(&["--changes"]);
    assert_eq!(
        changes,
        format!(
            "ALTER TABLE `{db}`.`orders` SET TBLPROPERTIES ('projection.datehour.range'='2025/03/01/05,NOW');\n"
        )
    );
    let out = ddl(&["--apply", "glue"]);
    assert!(out.contains("widened projection.datehour.range"), "{out}");
    assert_eq!(range(), "2025/03/01/05,NOW");
    // A configured earlier start widens it further; the lake's later start does not narrow it.
    ddl(&["--apply", "glue", "--projection-start", "2024-01-01"]);
    assert_eq!(range(), "2024/01/01/00,NOW");
    assert!(ddl(&["--apply", "glue"]).contains("is up to date"));
    assert_eq!(range(), "2024/01/01/00,NOW");
}
