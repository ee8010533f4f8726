//! Catalog stage: table definitions for the query engines, from a table's schema and the
//! partition layout. `CREATE EXTERNAL TABLE` for Athena with partition projection over the layout,
//! column comments holding the original attribute paths; `CREATE TABLE` for Redshift with types
//! mapped per FORMATS.md 2.

use std::fmt::Write;

use crate::partition::Layout;
use crate::schema::{ColumnType, Source, TableSchema};

/// First hour that partition projection enumerates (DynamoDB streams are younger).
const PROJECTION_START: &str = "2020/01/01/00";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DdlError {
    #[error("partition projection needs one of the preset layouts (hourly, hive, hive_dt); template `{0}` has values Athena cannot enumerate: register its partitions in the catalog instead")]
    NoProjection(String),
}

/// The Athena (Hive DDL) type of a column.
pub fn athena_type(t: &ColumnType) -> String {
    match t {
        ColumnType::String | ColumnType::Json => "string".into(),
        ColumnType::Bigint => "bigint".into(),
        ColumnType::Int => "int".into(),
        ColumnType::Double => "double".into(),
        ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Timestamp(_) => "timestamp".into(),
        ColumnType::Date(_) => "date".into(),
        ColumnType::Binary => "binary".into(),
        ColumnType::List(inner) => format!("array<{}>", athena_type(inner)),
    }
}

/// The Redshift type of a column: strings as VARCHAR(65535) (the most COPY can load), binary as
/// VARBYTE, lists and JSON as SUPER.
pub fn redshift_type(t: &ColumnType) -> String {
    match t {
        ColumnType::String => "VARCHAR(65535)".into(),
        ColumnType::Json | ColumnType::List(_) => "SUPER".into(),
        ColumnType::Bigint => "BIGINT".into(),
        ColumnType::Int => "INTEGER".into(),
        ColumnType::Double => "DOUBLE PRECISION".into(),
        ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
        ColumnType::Boolean => "BOOLEAN".into(),
        ColumnType::Timestamp(_) => "TIMESTAMPTZ".into(),
        ColumnType::Date(_) => "DATE".into(),
        ColumnType::Binary => "VARBYTE(1024000)".into(),
    }
}

/// Where a column's values come from, for comments.
fn origin(schema: &TableSchema, source: &Source) -> String {
    match source {
        Source::Meta(m) => m.doc().to_string(),
        Source::Attr { image, path } => {
            let prefix = match image {
                crate::schema::Image::New => "",
                crate::schema::Image::Old => "OldImage.",
            };
            format!("{prefix}{}", path.join("."))
        }
        Source::Companion(of) => format!(
            "values of {} that did not fit its type, as text",
            schema.columns()[*of].name
        ),
    }
}

fn quote(s: &str) -> String {
    s.replace('\'', "''")
}

/// `CREATE EXTERNAL TABLE` with partition projection for a preset layout. `location` is the
/// lake's root (the table's folder is appended).
pub fn athena_create(
    schema: &TableSchema,
    layout: Layout,
    location: &str,
    database: &str,
) -> String {
    let root = format!("{}/{}", location.trim_end_matches('/'), schema.name);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{}` (",
        schema.name
    );
    let n = schema.columns().len();
    for (i, c) in schema.columns().iter().enumerate() {
        let _ = writeln!(
            o,
            "  `{}` {} COMMENT '{}'{}",
            c.name,
            athena_type(&c.ty),
            quote(&origin(schema, &c.source)),
            if i + 1 < n { "," } else { "" }
        );
    }
    o.push_str(")\n");
    let (keys, template, props): (&str, String, Vec<(String, String)>) = match layout {
        Layout::Hourly => (
            "`datehour` string",
            format!("{root}/${{datehour}}/"),
            vec![
                ("projection.datehour.type".into(), "date".into()),
                ("projection.datehour.format".into(), "yyyy/MM/dd/HH".into()),
                (
                    "projection.datehour.range".into(),
                    format!("{PROJECTION_START},NOW"),
                ),
                ("projection.datehour.interval".into(), "1".into()),
                ("projection.datehour.interval.unit".into(), "HOURS".into()),
            ],
        ),
        Layout::Hive => (
            "`year` string, `month` string, `day` string, `hour` string",
            format!("{root}/year=${{year}}/month=${{month}}/day=${{day}}/hour=${{hour}}/"),
            [
                ("year", "2020,2100", 4),
                ("month", "1,12", 2),
                ("day", "1,31", 2),
                ("hour", "0,23", 2),
            ]
            .iter()
            .flat_map(|(k, range, digits)| {
                [
                    (format!("projection.{k}.type"), "integer".to_string()),
                    (format!("projection.{k}.range"), range.to_string()),
                    (format!("projection.{k}.digits"), digits.to_string()),
                ]
            })
            .collect(),
        ),
        Layout::HiveDt => (
            "`dt` string, `hr` string",
            format!("{root}/dt=${{dt}}/hr=${{hr}}/"),
            vec![
                ("projection.dt.type".into(), "date".into()),
                ("projection.dt.format".into(), "yyyy-MM-dd".into()),
                ("projection.dt.range".into(), "2020-01-01,NOW".into()),
                ("projection.hr.type".into(), "integer".into()),
                ("projection.hr.range".into(), "0,23".into()),
                ("projection.hr.digits".into(), "2".into()),
            ],
        ),
    };
    let _ = writeln!(o, "PARTITIONED BY ({keys})");
    o.push_str("STORED AS PARQUET\n");
    let _ = writeln!(o, "LOCATION '{}/'", quote(&root));
    o.push_str("TBLPROPERTIES (\n  'projection.enabled'='true',\n");
    for (k, v) in &props {
        let _ = writeln!(o, "  '{k}'='{}',", quote(v));
    }
    let _ = writeln!(o, "  'storage.location.template'='{}'", quote(&template));
    o.push_str(");\n");
    o
}

/// `CREATE TABLE` for Redshift: the same columns in the same order, for `COPY ... FORMAT AS PARQUET`.
pub fn redshift_create(schema: &TableSchema, redshift_schema: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "CREATE TABLE IF NOT EXISTS \"{redshift_schema}\".\"{}\" (",
        schema.name
    );
    let n = schema.columns().len();
    for (i, c) in schema.columns().iter().enumerate() {
        let _ = writeln!(
            o,
            "  \"{}\" {}{}",
            c.name,
            redshift_type(&c.ty),
            if i + 1 < n { "," } else { "" }
        );
    }
    o.push_str(");\n");
    o
}

/// `COPY` statements loading each manifest into the table (Redshift reads the files' columns by
/// position, which is why every file holds the table's columns in the same order).
pub fn redshift_copy(
    schema: &TableSchema,
    redshift_schema: &str,
    manifests: &[String],
    iam_role: &str,
) -> String {
    let mut o = String::new();
    for m in manifests {
        let _ = writeln!(
            o,
            "COPY \"{redshift_schema}\".\"{}\" FROM '{}' IAM_ROLE '{}' FORMAT AS PARQUET MANIFEST;",
            schema.name,
            quote(m),
            quote(iam_role)
        );
    }
    o
}

/// The external schema through which Redshift Spectrum queries the Athena (Glue) tables.
pub fn spectrum_schema(spectrum_schema: &str, glue_database: &str, iam_role: &str) -> String {
    format!(
        "CREATE EXTERNAL SCHEMA IF NOT EXISTS \"{spectrum_schema}\" FROM DATA CATALOG DATABASE '{}' IAM_ROLE '{}' CREATE EXTERNAL DATABASE IF NOT EXISTS;\n",
        quote(glue_database),
        quote(iam_role)
    )
}

/// Which preset a template is, if any.
pub fn preset(template: &str) -> Result<Layout, DdlError> {
    [Layout::Hourly, Layout::Hive, Layout::HiveDt]
        .into_iter()
        .find(|l| l.template() == template)
        .ok_or_else(|| DdlError::NoProjection(template.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Image;

    #[test]
    fn athena_ddl_for_each_layout() {
        let mut s = TableSchema::new("Orders", None);
        s.add_attr_column(Image::New, &["Ship", "state"], ColumnType::String, 100);
        s.add_attr_column(
            Image::New,
            &["It's"],
            ColumnType::List(Box::new(ColumnType::Decimal {
                precision: 12,
                scale: 2,
            })),
            100,
        );
        let hourly = athena_create(&s, Layout::Hourly, "s3://b/lake/", "cdc");
        assert!(
            hourly.contains("`ship_state` string COMMENT 'Ship.state',"),
            "{hourly}"
        );
        assert!(
            hourly.contains("`it_s` array<decimal(12,2)> COMMENT 'It''s'"),
            "{hourly}"
        );
        assert!(hourly.contains("LOCATION 's3://b/lake/orders/'"));
        assert!(hourly.contains("'storage.location.template'='s3://b/lake/orders/${datehour}/'"));
        let hive = athena_create(&s, Layout::Hive, "s3://b/lake", "cdc");
        assert!(hive.contains(
            "PARTITIONED BY (`year` string, `month` string, `day` string, `hour` string)"
        ));
        assert!(hive.contains("'projection.month.digits'='2'"));
        let dt = athena_create(&s, Layout::HiveDt, "s3://b/lake", "cdc");
        assert!(dt.contains("'storage.location.template'='s3://b/lake/orders/dt=${dt}/hr=${hr}/'"));
        assert_eq!(preset("{table}/{YYYY}/{MM}/{DD}/{HH}"), Ok(Layout::Hourly));
        assert!(preset("{table}/state={state}").is_err());
    }

    #[test]
    fn copy_and_spectrum_statements() {
        let s = TableSchema::new("Orders", None);
        let copy = redshift_copy(
            &s,
            "public",
            &["s3://b/l/_ddb_lake/manifests/orders/m1.json".into()],
            "arn:aws:iam::1:role/r",
        );
        assert_eq!(copy, "COPY \"public\".\"orders\" FROM 's3://b/l/_ddb_lake/manifests/orders/m1.json' IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT AS PARQUET MANIFEST;\n");
        assert!(spectrum_schema("lake", "cdc", "arn:r").starts_with(
            "CREATE EXTERNAL SCHEMA IF NOT EXISTS \"lake\" FROM DATA CATALOG DATABASE 'cdc'"
        ));
    }

    #[test]
    fn redshift_types() {
        assert_eq!(redshift_type(&ColumnType::Binary), "VARBYTE(1024000)");
        assert_eq!(
            redshift_type(&ColumnType::List(Box::new(ColumnType::String))),
            "SUPER"
        );
        let s = TableSchema::new("T", None);
        let ddl = redshift_create(&s, "public");
        assert!(ddl.starts_with(
            "CREATE TABLE IF NOT EXISTS \"public\".\"t\" (\n  \"cdc_operation\" VARCHAR(65535),"
        ));
    }
}
