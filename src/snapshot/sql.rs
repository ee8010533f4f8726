//! The latest state of a table in SQL, over its change log: the same order as `order` (a
//! snapshot and this query give the same rows), in the dialects of Athena (Trino), Redshift and
//! DuckDB.

use std::fmt::Write as _;

/// Which SQL engine the query is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Amazon Athena (Trino).
    Athena,
    /// Amazon Redshift.
    Redshift,
    /// DuckDB (to check a lake locally).
    DuckDb,
}

/// The time of a row without one: earlier than any, with room below it for the margin.
pub(super) const NO_TIME: i64 = -(1 << 62);

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `SELECT` of the latest row of every item of `from` (a table reference, already quoted) that
/// exists (its latest change is no REMOVE), with `columns` (the change log's, in order); `key`
/// the key columns (each key attribute's column and its companion, if any), `margin_us` the
/// handover margin a full export's items are moved back by.
pub fn latest_select(
    dialect: Dialect,
    from: &str,
    columns: &[String],
    key: &[(String, Option<String>)],
    margin_us: i64,
) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let list = cols.join(", ");
    let digits = match dialect {
        Dialect::Redshift => "regexp_substr(\"cdc_shard_id\", '[0-9]+')",
        Dialect::Athena | Dialect::DuckDb => "regexp_extract(\"cdc_shard_id\", '[0-9]+')",
    };
    let snapshot = "\"cdc_operation\" = 'SNAPSHOT'";
    let time = format!("coalesce(\"cdc_event_time_us\", {NO_TIME})");
    let order = [
        format!("CASE WHEN {snapshot} THEN {time} - {margin_us} ELSE {time} END DESC"),
        format!("CASE WHEN {snapshot} THEN 0 ELSE 1 END DESC"),
        // The shard's number by value (as text padded to one width: any number of digits).
        format!(
            "CASE WHEN \"cdc_shard_id\" IS NULL THEN '' ELSE lpad(coalesce(nullif(regexp_replace({digits}, '^0+', ''), ''), '0'), 40, '0') END DESC"
        ),
        "coalesce(\"cdc_shard_id\", '') DESC".to_string(),
        "lpad(coalesce(\"cdc_sequence_number\", ''), 160, '0') DESC".to_string(),
        "coalesce(\"cdc_subsequence_number\", -1) DESC".to_string(),
        "coalesce(\"cdc_source_file\", '') DESC".to_string(),
        "coalesce(\"cdc_source_line\", -1) DESC".to_string(),
        "coalesce(\"cdc_event_id\", '') DESC".to_string(),
    ];
    let partition: Vec<String> = key
        .iter()
        .flat_map(|(c, comp)| std::iter::once(c).chain(comp))
        .map(|k| quote(k))
        .collect();
    // A row names an item when each key attribute has a value (in its column or its companion).
    let has_key: Vec<String> = key
        .iter()
        .map(|(c, comp)| match comp {
            Some(comp) => format!("({} IS NOT NULL OR {} IS NOT NULL)", quote(c), quote(comp)),
            None => format!("{} IS NOT NULL", quote(c)),
        })
        .collect();
    let mut sql = String::new();
    let _ = write!(
        sql,
        "SELECT {list}\nFROM (\n  SELECT {list},\n    row_number() OVER (\n      PARTITION BY {}\n      ORDER BY {}) AS \"cdc_rank\"\n  FROM {from}\n  WHERE {}) AS \"changes\"\nWHERE \"cdc_rank\" = 1 AND \"cdc_operation\" <> 'REMOVE'",
        partition.join(", "),
        order.join(",\n        "),
        has_key.join(" AND ")
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_partitions_by_the_key_and_orders_as_snapshots_do() {
        let cols = [
            "cdc_operation".to_string(),
            "pk".into(),
            "pk_str".into(),
            "v".into(),
        ];
        let key = [("pk".to_string(), Some("pk_str".to_string()))];
        let sql = latest_select(Dialect::Athena, "\"db\".\"t\"", &cols, &key, 900_000_000);
        assert!(sql.contains("PARTITION BY \"pk\", \"pk_str\""), "{sql}");
        assert!(
            sql.contains("(\"pk\" IS NOT NULL OR \"pk_str\" IS NOT NULL)"),
            "{sql}"
        );
        assert!(sql.contains("- 900000000 ELSE"), "{sql}");
        assert!(sql.contains("regexp_extract"), "{sql}");
        assert!(sql.ends_with("\"cdc_operation\" <> 'REMOVE'"), "{sql}");
        let rs = latest_select(Dialect::Redshift, "t", &cols, &key, 0);
        assert!(rs.contains("regexp_substr"), "{rs}");
    }
}
