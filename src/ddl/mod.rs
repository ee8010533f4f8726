//! Catalog stage: table definitions for the query engines, from a table's schema and the
//! partition layout. `CREATE EXTERNAL TABLE` for Athena with partition projection over the layout,
//! column comments holding the original attribute paths; `CREATE TABLE` for Redshift with types
//! mapped per FORMATS.md 2.

use std::fmt::Write;

use crate::partition::{Layout, Template};
use crate::schema::{ColumnType, Source, TableSchema};

mod current;
pub use current::{athena_current, athena_current_table, latest_view, redshift_current};

/// First hour that partition projection enumerates (DynamoDB streams are younger).
/// The first hour partition projection covers when the lake has no files yet and no start is
/// configured: 2020-01-01T00:00Z, in hours since the epoch.
pub const DEFAULT_PROJECTION_START_HOUR: i64 = 438_288;

/// Why a table definition cannot be made for a partition template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DdlError {
    /// The template is not one of the preset layouts, so partition projection cannot cover it.
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

pub(crate) fn quote(s: &str) -> String {
    s.replace('\'', "''")
}

/// An Athena (Glue catalog) table over a lake table: what `CREATE EXTERNAL TABLE` and the Glue
/// `CreateTable` call both say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AthenaTable {
    /// The catalog table's name: the lake table's name.
    pub name: String,
    /// Name, Athena type, comment (the attribute path).
    pub columns: Vec<(String, String, String)>,
    /// Partition keys (all `string`), in folder order.
    pub partition_keys: Vec<String>,
    /// The table's folder, with a trailing slash.
    pub location: String,
    /// Table properties: partition projection for the preset layouts (empty for other
    /// templates, whose partitions are registered one by one).
    pub properties: Vec<(String, String)>,
}

impl AthenaTable {
    /// Whether Athena finds the partitions itself (projection), or they must be registered.
    pub fn projected(&self) -> bool {
        !self.properties.is_empty()
    }
}

/// The Athena table of a lake table under `location` (the lake's root), for its template.
/// The Athena table over a lake table. Partition projection starts at `start_hour` (hours since
/// the epoch): the lake's earliest hour, or an earlier configured start; Athena returns no rows
/// for hours before it.
pub fn athena_table(
    schema: &TableSchema,
    template: &Template,
    location: &str,
    start_hour: i64,
) -> AthenaTable {
    let start = chrono::DateTime::from_timestamp(start_hour * 3600, 0).unwrap_or_default();
    let root = format!("{}/{}", location.trim_end_matches('/'), schema.name);
    let columns = athena_columns(schema);
    let strs = |v: &[&str]| v.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let (partition_keys, template_url, mut properties): (
        Vec<String>,
        String,
        Vec<(String, String)>,
    ) = match preset(template.as_str()) {
        Ok(Layout::Hourly) => (
            strs(&["datehour"]),
            format!("{root}/${{datehour}}/"),
            vec![
                ("projection.datehour.type".into(), "date".into()),
                ("projection.datehour.format".into(), "yyyy/MM/dd/HH".into()),
                (
                    "projection.datehour.range".into(),
                    format!("{},NOW", start.format("%Y/%m/%d/%H")),
                ),
                ("projection.datehour.interval".into(), "1".into()),
                ("projection.datehour.interval.unit".into(), "HOURS".into()),
            ],
        ),
        Ok(Layout::Hive) => (
            strs(&["year", "month", "day", "hour"]),
            format!("{root}/year=${{year}}/month=${{month}}/day=${{day}}/hour=${{hour}}/"),
            [
                ("year", format!("{},2100", start.format("%Y")), 4),
                ("month", "1,12".into(), 2),
                ("day", "1,31".into(), 2),
                ("hour", "0,23".into(), 2),
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
        Ok(Layout::HiveDt) => (
            strs(&["dt", "hr"]),
            format!("{root}/dt=${{dt}}/hr=${{hr}}/"),
            vec![
                ("projection.dt.type".into(), "date".into()),
                ("projection.dt.format".into(), "yyyy-MM-dd".into()),
                (
                    "projection.dt.range".into(),
                    format!("{},NOW", start.format("%Y-%m-%d")),
                ),
                ("projection.hr.type".into(), "integer".into()),
                ("projection.hr.range".into(), "0,23".into()),
                ("projection.hr.digits".into(), "2".into()),
            ],
        ),
        Err(_) => (template.keys(), String::new(), Vec::new()),
    };
    if !properties.is_empty() {
        properties.insert(0, ("projection.enabled".into(), "true".into()));
        properties.push(("storage.location.template".into(), template_url));
    }
    AthenaTable {
        name: schema.name.clone(),
        columns,
        partition_keys,
        location: format!("{root}/"),
        properties,
    }
}

/// A table's columns for Athena: name, type, comment (the attribute path).
pub(crate) fn athena_columns(schema: &TableSchema) -> Vec<(String, String, String)> {
    schema
        .columns()
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                athena_type(&c.ty),
                origin(schema, &c.source),
            )
        })
        .collect()
}

pub(crate) fn column_list(o: &mut String, columns: &[(String, String, String)]) {
    let n = columns.len();
    for (i, (name, ty, comment)) in columns.iter().enumerate() {
        let _ = writeln!(
            o,
            "  `{name}` {ty} COMMENT '{}'{}",
            quote(comment),
            if i + 1 < n { "," } else { "" }
        );
    }
}

/// `CREATE EXTERNAL TABLE`, with partition projection for the preset layouts.
pub fn athena_create(t: &AthenaTable, database: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{}` (",
        t.name
    );
    column_list(&mut o, &t.columns);
    o.push_str(")\n");
    let keys: Vec<String> = t
        .partition_keys
        .iter()
        .map(|k| format!("`{k}` string"))
        .collect();
    let _ = writeln!(o, "PARTITIONED BY ({})", keys.join(", "));
    o.push_str("STORED AS PARQUET\n");
    let _ = write!(o, "LOCATION '{}'", quote(&t.location));
    if t.properties.is_empty() {
        o.push_str(";\n");
        return o;
    }
    o.push_str("\nTBLPROPERTIES (\n");
    let props: Vec<String> = t
        .properties
        .iter()
        .map(|(k, v)| format!("  '{k}'='{}'", quote(v)))
        .collect();
    o.push_str(&props.join(",\n"));
    o.push_str("\n);\n");
    o
}

/// `ALTER TABLE ... ADD COLUMNS` for columns added to a lake table after `known` (the number of
/// columns the catalog's table has: the lake's lists only grow at the end).
pub fn athena_add_columns(t: &AthenaTable, database: &str, known: usize) -> Option<String> {
    let new = t.columns.get(known..).filter(|c| !c.is_empty())?;
    let mut o = format!("ALTER TABLE `{database}`.`{}` ADD COLUMNS (\n", t.name);
    column_list(&mut o, new);
    o.push_str(");\n");
    Some(o)
}

/// `ALTER TABLE ... ADD IF NOT EXISTS PARTITION` for partitions of a table without projection.
pub fn athena_add_partitions(t: &AthenaTable, database: &str, partitions: &[Partition]) -> String {
    let mut o = String::new();
    for p in partitions {
        let spec: Vec<String> = t
            .partition_keys
            .iter()
            .zip(&p.values)
            .map(|(k, v)| format!("`{k}`='{}'", quote(v)))
            .collect();
        let _ = writeln!(
            o,
            "ALTER TABLE `{database}`.`{}` ADD IF NOT EXISTS PARTITION ({}) LOCATION '{}';",
            t.name,
            spec.join(", "),
            quote(&p.location)
        );
    }
    o
}

/// A partition of a table without projection: its key values and folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    /// The partition key values read from the folder, in the order of `partition_keys`.
    pub values: Vec<String>,
    /// The partition's folder under the lake's location, with a trailing slash.
    pub location: String,
}

/// The partitions holding `files` (paths relative to the lake's root), under `location`.
pub fn partitions_of(
    t: &AthenaTable,
    template: &Template,
    location: &str,
    files: &[String],
) -> Vec<Partition> {
    let mut out: Vec<Partition> = files
        .iter()
        .filter_map(|f| {
            let dir = f.rsplit_once('/')?.0;
            let values = template.match_path(&t.name, dir)?;
            Some(Partition {
                values,
                location: format!("{}/{dir}/", location.trim_end_matches('/')),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The earliest hour (since the epoch) of a table's data files, from their folders: the year,
/// month, day and hour parts the template has (a missing part counts as its first value).
/// `None` when no file's folder names a time.
pub fn earliest_hour(template: &Template, table: &str, files: &[String]) -> Option<i64> {
    files
        .iter()
        .filter_map(|f| template.span(table, f.rsplit_once('/')?.0))
        .map(|(start, _)| start)
        .min()
}

/// `ALTER TABLE ... SET TBLPROPERTIES`: partition projection ranges widened to older hours.
pub fn athena_set_properties(
    t: &AthenaTable,
    database: &str,
    properties: &[(String, String)],
) -> Option<String> {
    if properties.is_empty() {
        return None;
    }
    let list: Vec<String> = properties
        .iter()
        .map(|(k, v)| format!("'{}'='{}'", quote(k), quote(v)))
        .collect();
    Some(format!(
        "ALTER TABLE `{database}`.`{}` SET TBLPROPERTIES ({});\n",
        t.name,
        list.join(", ")
    ))
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
        let t = |layout: Layout, loc: &str| {
            let template = Template::parse(layout.template()).unwrap();
            athena_create(
                &athena_table(&s, &template, loc, DEFAULT_PROJECTION_START_HOUR),
                "cdc",
            )
        };
        let hourly = t(Layout::Hourly, "s3://b/lake/");
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
        let hive = t(Layout::Hive, "s3://b/lake");
        assert!(hive.contains(
            "PARTITIONED BY (`year` string, `month` string, `day` string, `hour` string)"
        ));
        assert!(hive.contains("'projection.month.digits'='2'"));
        let dt = t(Layout::HiveDt, "s3://b/lake");
        assert!(dt.contains("'storage.location.template'='s3://b/lake/orders/dt=${dt}/hr=${hr}/'"));
        assert_eq!(preset("{table}/{YYYY}/{MM}/{DD}/{HH}"), Ok(Layout::Hourly));
        assert!(preset("{table}/state={state}").is_err());
    }

    /// Issue 12: hours before 2020 were outside every projection range, invisible in Athena.
    #[test]
    fn projection_ranges_start_at_the_lakes_earliest_hour() {
        let s = TableSchema::new("my_test_table", None);
        // The DynamoDB Streams documentation's sample event: 2019-12-16T17:xx.
        let files = [
            "my_test_table/2020/03/01/00/my_test_table-1.parquet".to_string(),
            "my_test_table/2019/12/16/17/my_test_table-2.parquet".to_string(),
        ];
        let range = |layout: Layout, key: &str, files: &[String]| {
            let template = Template::parse(layout.template()).unwrap();
            let start = earliest_hour(&template, "my_test_table", files).unwrap();
            let t = athena_table(&s, &template, "s3://b/l", start);
            t.properties
                .iter()
                .find(|(k, _)| k == &format!("projection.{key}.range"))
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(
            range(Layout::Hourly, "datehour", &files),
            "2019/12/16/17,NOW"
        );
        let hive: Vec<String> = files
            .iter()
            .map(|f| {
                let p: Vec<&str> = f.split('/').collect();
                format!(
                    "{}/year={}/month={}/day={}/hour={}/{}",
                    p[0], p[1], p[2], p[3], p[4], p[5]
                )
            })
            .collect();
        assert_eq!(range(Layout::Hive, "year", &hive), "2019,2100");
        let dt: Vec<String> = files
            .iter()
            .map(|f| {
                let p: Vec<&str> = f.split('/').collect();
                format!(
                    "{}/dt={}-{}-{}/hr={}/{}",
                    p[0], p[1], p[2], p[3], p[4], p[5]
                )
            })
            .collect();
        assert_eq!(range(Layout::HiveDt, "dt", &dt), "2019-12-16,NOW");
        assert_eq!(
            earliest_hour(
                &Template::parse(Layout::Hourly.template()).unwrap(),
                "my_test_table",
                &[]
            ),
            None
        );
    }

    #[test]
    fn custom_templates_get_registered_partitions_and_schema_changes_alter() {
        let mut s = TableSchema::new("Orders", None);
        let template = Template::parse("{table}/state={ship_state}/{YYYY}{MM}").unwrap();
        let t = athena_table(&s, &template, "s3://b/l", DEFAULT_PROJECTION_START_HOUR);
        assert!(!t.projected());
        assert_eq!(t.partition_keys, ["ship_state", "year", "month"]);
        let ddl = athena_create(&t, "cdc");
        assert!(ddl.ends_with("LOCATION 's3://b/l/orders/';\n"), "{ddl}");
        let files = [
            "orders/state=WA/202611/orders-1.parquet".to_string(),
            "orders/state=WA/202611/orders-2.parquet".to_string(),
            "orders/state=O%27R/202612/orders-3.parquet".to_string(),
            "_ddb_lake/schemas/orders.toml".to_string(),
        ];
        let parts = partitions_of(&t, &template, "s3://b/l", &files);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].values, ["WA", "2026", "11"]);
        assert_eq!(parts[1].location, "s3://b/l/orders/state=WA/202611/");
        let add = athena_add_partitions(&t, "cdc", &parts);
        assert!(add.contains("ADD IF NOT EXISTS PARTITION (`ship_state`='O%27R', `year`='2026', `month`='12') LOCATION 's3://b/l/orders/state=O%27R/202612/';"), "{add}");
        // A schema change: only the new columns.
        let known = t.columns.len();
        assert_eq!(athena_add_columns(&t, "cdc", known), None);
        s.add_attr_column(Image::New, &["Total"], ColumnType::Double, 100);
        let grown = athena_table(&s, &template, "s3://b/l", DEFAULT_PROJECTION_START_HOUR);
        assert_eq!(
            athena_add_columns(&grown, "cdc", known).unwrap(),
            "ALTER TABLE `cdc`.`orders` ADD COLUMNS (\n  `total` double COMMENT 'Total'\n);\n"
        );
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
