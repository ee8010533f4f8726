//! Table definitions: the Athena DDL parses (Hive dialect) and declares exactly the files' columns
//! and the layout's partition keys.

use sqlparser::ast::{HiveDistributionStyle, Statement};
use sqlparser::dialect::HiveDialect;
use sqlparser::parser::Parser;

use crate::helpers::*;

#[test]
fn athena_ddl_parses_and_matches_the_files_for_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");
    for (layout, keys) in [
        ("hourly", vec!["datehour"]),
        ("hive", vec!["year", "month", "day", "hour"]),
        ("hive_dt", vec!["dt", "hr"]),
    ] {
        let lake = dir.path().join(layout);
        export_json(&["-i", sample, "-o", s(&lake), "--layout", layout], 0);
        let ddl = run_ok(
            &[
                "ddl",
                "athena",
                "-o",
                s(&lake),
                "--layout",
                layout,
                "--location",
                "s3://bucket/lake",
                "--database",
                "cdc",
            ],
            0,
        );
        let statements =
            Parser::parse_sql(&HiveDialect {}, &ddl).unwrap_or_else(|e| panic!("{e}\n{ddl}"));
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
