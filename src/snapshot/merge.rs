//! One bucket's merge: the previous snapshot's rows of the bucket (its live items and its
//! tombstones) and the new change-log rows of the bucket, down to the latest row of each item
//! (`order`), split into live items and tombstones (an item whose latest change is a REMOVE is
//! kept as a tombstone, so that an older change read later cannot bring it back), each sorted
//! by key. Pure and synchronous: the caller reads the inputs and writes the outputs.

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, SchemaRef};

use crate::item::key::KeyColumns;
use crate::item::order::{self, OrderCols};

/// What a bucket's merge gives.
#[derive(Debug, Default)]
pub(super) struct Merged {
    /// The latest row of every item that exists, sorted by key.
    pub(super) live: Option<RecordBatch>,
    /// The latest row (a REMOVE) of every deleted item, sorted by key.
    pub(super) tombstones: Option<RecordBatch>,
    /// Rows without a key value: they name no item, so no snapshot holds them.
    pub(super) keyless: u64,
}

/// Aligns a batch read from a file (its columns a prefix of the table's, by name) with the
/// table's full column list: missing columns are nulls.
pub(super) fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => Err(ArrowError::SchemaError(format!(
                "column {} is {} in a file, {} in the table",
                f.name(),
                c.data_type(),
                f.data_type()
            ))),
            None => Ok(arrow_array::new_null_array(f.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// Merges `batches` (each aligned with `schema`): the latest row of each item by `order`.
pub(super) fn merge(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    key: &KeyColumns,
    margin_us: i64,
) -> Result<Merged, ArrowError> {
    let orders: Vec<OrderCols> = batches
        .iter()
        .map(|b| OrderCols::new(b, margin_us))
        .collect();
    let mut keyless = 0u64;
    // Every keyed row as (key, batch, row).
    let mut rows: Vec<(Vec<u8>, usize, usize)> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        for (r, k) in key.keys(batch).into_iter().enumerate() {
            match k {
                Some(k) => rows.push((k, b, r)),
                None => keyless += 1,
            }
        }
    }
    // By key, the latest change first within each key.
    rows.sort_unstable_by(|x, y| {
        x.0.cmp(&y.0)
            .then_with(|| order::cmp(&orders[y.1], y.2, &orders[x.1], x.2))
    });
    let (mut live, mut dead) = (Vec::new(), Vec::new());
    let mut last: Option<&[u8]> = None;
    for (k, b, r) in &rows {
        if last == Some(k.as_slice()) {
            continue;
        }
        last = Some(k);
        if orders[*b].is_remove(*r) {
            dead.push((*b, *r));
        } else {
            live.push((*b, *r));
        }
    }
    Ok(Merged {
        live: take(batches, schema, &live)?,
        tombstones: take(batches, schema, &dead)?,
        keyless,
    })
}

/// The rows `picks` (batch, row) of `batches`, in that order, as one batch.
fn take(
    batches: &[RecordBatch],
    schema: &SchemaRef,
    picks: &[(usize, usize)],
) -> Result<Option<RecordBatch>, ArrowError> {
    if picks.is_empty() {
        return Ok(None);
    }
    let columns = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            arrow_select::interleave::interleave(&arrays, picks)
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map(Some)
}

/// Whether rows come in order of their keys (for tests and checks).
#[cfg(test)]
pub(super) fn sorted_by_key(batch: &RecordBatch, key: &KeyColumns) -> bool {
    let keys = key.keys(batch);
    keys.windows(2).all(|w| w[0] <= w[1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, Image, TableSchema};
    use arrow_array::cast::AsArray;
    use arrow_array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn table() -> (TableSchema, SchemaRef) {
        let mut s = TableSchema::new("T", None);
        s.add_attr_column(Image::New, &["Id"], ColumnType::String, 100)
            .unwrap();
        s.add_attr_column(Image::New, &["V"], ColumnType::Bigint, 100)
            .unwrap();
        s.learn_keys(&["Id"]);
        let arrow = s.arrow_schema();
        (s, arrow)
    }

    /// A batch of (operation, event time µs, id, v), aligned with the table.
    fn rows(schema: &SchemaRef, rows: &[(&str, i64, Option<&str>, i64)]) -> RecordBatch {
        let part = RecordBatch::try_new(
            Arc::new(arrow_schema::Schema::new(vec![
                schema.field_with_name("cdc_operation").unwrap().clone(),
                schema.field_with_name("cdc_event_time_us").unwrap().clone(),
                schema.field_with_name("id").unwrap().clone(),
                schema.field_with_name("v").unwrap().clone(),
            ])),
            vec![
                Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int64Array>()),
                Arc::new(rows.iter().map(|r| r.2).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.3)).collect::<Int64Array>()),
            ],
        )
        .unwrap();
        align(&part, schema).unwrap()
    }

    fn ids_and_values(b: &Option<RecordBatch>) -> Vec<(String, i64)> {
        let Some(b) = b else { return Vec::new() };
        let ids = b.column_by_name("id").unwrap().as_string::<i32>();
        let v = b
            .column_by_name("v")
            .unwrap()
            .as_primitive::<arrow_array::types::Int64Type>();
        (0..b.num_rows())
            .map(|i| (ids.value(i).to_string(), v.value(i)))
            .collect()
    }

    #[test]
    fn the_latest_change_of_each_item_wins_and_deletes_become_tombstones() {
        let (s, schema) = table();
        let key = KeyColumns::of(&s, None).unwrap();
        let first = rows(
            &schema,
            &[
                ("INSERT", 1, Some("b"), 1),
                ("MODIFY", 3, Some("b"), 3),
                ("INSERT", 1, Some("a"), 10),
                ("INSERT", 2, Some("c"), 20),
                ("INSERT", 1, None, 0),
            ],
        );
        // Read later: an older change of b (it must not win), a delete of c, a re-insert of a
        // deleted item d after its delete.
        let second = rows(
            &schema,
            &[
                ("MODIFY", 2, Some("b"), 2),
                ("REMOVE", 5, Some("c"), 20),
                ("REMOVE", 6, Some("d"), 0),
                ("INSERT", 7, Some("d"), 40),
                ("REMOVE", 9, Some("e"), 50),
            ],
        );
        let m = merge(&[first.clone(), second.clone()], &schema, &key, 0).unwrap();
        assert_eq!(
            ids_and_values(&m.live),
            [("a".into(), 10), ("b".into(), 3), ("d".into(), 40)]
        );
        assert_eq!(
            ids_and_values(&m.tombstones),
            [("c".into(), 20), ("e".into(), 50)]
        );
        assert_eq!(m.keyless, 1);
        assert!(sorted_by_key(m.live.as_ref().unwrap(), &key));

        // Merging in two steps (the first snapshot, then the new rows with its live rows and
        // tombstones) gives the same as merging all at once, whatever came when.
        let step1 = merge(&[second], &schema, &key, 0).unwrap();
        let again: Vec<RecordBatch> = [step1.live, step1.tombstones, Some(first)]
            .into_iter()
            .flatten()
            .collect();
        let step2 = merge(&again, &schema, &key, 0).unwrap();
        assert_eq!(ids_and_values(&step2.live), ids_and_values(&m.live));
        assert_eq!(
            ids_and_values(&step2.tombstones),
            ids_and_values(&m.tombstones)
        );
        // A tombstone keeps an older insert read later from bringing the item back.
        let late = rows(&schema, &[("INSERT", 4, Some("c"), 99)]);
        let with_tombstones: Vec<RecordBatch> = [m.live.clone(), m.tombstones.clone(), Some(late)]
            .into_iter()
            .flatten()
            .collect();
        let m3 = merge(&with_tombstones, &schema, &key, 0).unwrap();
        assert_eq!(ids_and_values(&m3.live), ids_and_values(&m.live));
    }
}
