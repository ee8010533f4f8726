//! The statements of a table's current state: `{table}_current` over the current snapshot
//! (Athena, Redshift) and the `{table}_latest` view over the change log.

use std::fmt::Write;

use super::{athena_columns, column_list, quote, redshift_create, AthenaTable};
use crate::schema::TableSchema;

/// The columns' names of a table, in order.
fn names(schema: &TableSchema) -> Vec<String> {
    schema.columns().iter().map(|c| c.name.clone()).collect()
}

/// The catalog table `{table}_current` over a snapshot's folder (`data`, its URL): the change
/// log's columns, no partitions.
pub fn athena_current_table(schema: &TableSchema, data: &str) -> AthenaTable {
    AthenaTable {
        name: format!("{}_current", schema.name),
        columns: athena_columns(schema),
        partition_keys: Vec::new(),
        location: format!("{}/", data.trim_end_matches('/')),
        properties: Vec::new(),
    }
}

/// Athena's `{table}_current`: the table's current snapshot (`data`, its folder's URL), the
/// change log's columns without partitions; `CREATE` once, then `SET LOCATION` moves it to each
/// new snapshot in one statement.
pub fn athena_current(schema: &TableSchema, database: &str, data: &str) -> String {
    let t = athena_current_table(schema, data);
    let (columns, name, location) = (t.columns, t.name, t.location);
    let mut o = format!(
        "CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{name}` (
"
    );
    column_list(&mut o, &columns);
    let _ = writeln!(
        o,
        ")
STORED AS PARQUET
LOCATION '{}';",
        quote(&location)
    );
    let _ = writeln!(
        o,
        "ALTER TABLE `{database}`.`{name}` SET LOCATION '{}';",
        quote(&location)
    );
    o
}

/// A view of the latest state of every item over the change log (`{table}_latest`), for
/// Athena or Redshift: the same rows a snapshot holds (docs/DESIGN.md, "Snapshots"). `None`
/// when the table's key is not known yet.
pub fn latest_view(
    schema: &TableSchema,
    dialect: crate::snapshot::Dialect,
    database: &str,
    margin_us: i64,
) -> Option<String> {
    let key = crate::snapshot::key_columns(schema).ok()?;
    let from = format!("\"{database}\".\"{}\"", schema.name);
    let select = crate::snapshot::latest_select(dialect, &from, &names(schema), &key, margin_us);
    Some(format!(
        "CREATE OR REPLACE VIEW \"{database}\".\"{}_latest\" AS\n{select};\n",
        schema.name
    ))
}

/// Redshift's `{table}_current`: created once with the change log's columns, then replaced by
/// each snapshot in one transaction (readers see the old rows or the new ones, never a mix).
pub fn redshift_current(
    schema: &TableSchema,
    redshift_schema: &str,
    copy_manifest: &str,
    iam_role: &str,
) -> String {
    let name = format!("{}_current", schema.name);
    let mut o = redshift_create(schema, redshift_schema).replacen(
        &format!("\"{redshift_schema}\".\"{}\"", schema.name),
        &format!("\"{redshift_schema}\".\"{name}\""),
        1,
    );
    let _ = writeln!(
        o,
        "BEGIN;\nDELETE FROM \"{redshift_schema}\".\"{name}\";\nCOPY \"{redshift_schema}\".\"{name}\" FROM '{}' IAM_ROLE '{}' FORMAT AS PARQUET MANIFEST;\nEND;",
        quote(copy_manifest),
        quote(iam_role)
    );
    o
}
