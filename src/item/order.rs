//! The order of an item's changes: which of two rows of one item is the later (docs/DESIGN.md,
//! "Snapshots"). One total order over the change log's own columns, so that a snapshot merged
//! hour by hour equals one computed from scratch, and so that SQL can say the same
//! (`ddl::latest_order_by`).
//!
//! Compared in turn, each only when the ones before are equal:
//! 1. the effective time: `cdc_event_time_us`, and for a `SNAPSHOT` row (a full export's item at
//!    the export time `T`) `T - margin`, so that a change made within the handover margin of the
//!    export wins over the item as exported (the export may or may not hold it; docs/DESIGN.md,
//!    "Handover");
//! 2. a change over a `SNAPSHOT` row at the same effective time;
//! 3. the shard: by the number in its id, so a child shard after its parent (Kinesis numbers
//!    shards in order of creation, DynamoDB Streams ids carry their creation time), then by
//!    the id; rows from files and exports (no shard) first;
//! 4. the sequence number within the shard, by value; then the KPL sub-record;
//! 5. the source file and line (files and exports, which have no sequence number);
//! 6. the event id: a last, arbitrary but fixed, tie-break.
//!
//! Time first because it is the one order every source shares: DynamoDB Streams stamps changes
//! in whole seconds in the order it writes them to a shard, so within a second the sequence
//! number decides; the Kinesis destination may deliver an item's changes out of order and more
//! than once, and AWS names `ApproximateCreationDateTime` (to the microsecond) as the order of
//! the changes.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, Int64Array, RecordBatch, StringArray};

use crate::seq::seq_cmp;

/// The handover margin a `SNAPSHOT` row's time is moved back by, unless told otherwise: the
/// same as `bootstrap`'s default.
pub const DEFAULT_MARGIN_US: i64 = 15 * 60 * 1_000_000;

/// The order's columns of one batch (every column a batch of the table holds: older files read
/// as nulls where they lack one).
pub(crate) struct OrderCols {
    op: StringArray,
    shard: StringArray,
    seq: StringArray,
    sub: Int64Array,
    file: StringArray,
    line: Int64Array,
    event_id: StringArray,
    /// Per row: the effective time, the class (0 SNAPSHOT, 1 a change), the shard's number.
    head: Vec<(i64, u8, u128)>,
}

/// The order's column names, as the change log names them.
const OP: &str = "cdc_operation";
const TIME_US: &str = "cdc_event_time_us";
const SHARD: &str = "cdc_shard_id";
const SEQ: &str = "cdc_sequence_number";
const SUB: &str = "cdc_subsequence_number";
const FILE: &str = "cdc_source_file";
const LINE: &str = "cdc_source_line";
const EVENT_ID: &str = "cdc_event_id";

fn strings(batch: &RecordBatch, name: &str) -> StringArray {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>().cloned())
        .unwrap_or_else(|| StringArray::new_null(batch.num_rows()))
}

fn ints(batch: &RecordBatch, name: &str) -> Int64Array {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
        .unwrap_or_else(|| Int64Array::new_null(batch.num_rows()))
}

/// The number in a shard id (`shardId-000000000007`: 7; `shardId-00000001414562045508-2bac9cd2`:
/// 1414562045508): its first run of digits, saturating.
pub(crate) fn shard_number(id: &str) -> u128 {
    id.bytes()
        .skip_while(|b| !b.is_ascii_digit())
        .take_while(u8::is_ascii_digit)
        .fold(0u128, |n, d| {
            n.saturating_mul(10).saturating_add((d - b'0') as u128)
        })
}

impl OrderCols {
    /// The order's columns of `batch`, with `margin_us` for SNAPSHOT rows.
    pub(crate) fn new(batch: &RecordBatch, margin_us: i64) -> Self {
        let op = strings(batch, OP);
        let time_us = ints(batch, TIME_US);
        let shard = strings(batch, SHARD);
        let head = (0..batch.num_rows())
            .map(|i| {
                let t = if time_us.is_null(i) {
                    i64::MIN
                } else {
                    time_us.value(i)
                };
                let snapshot = !op.is_null(i) && op.value(i) == "SNAPSHOT";
                let eff = if snapshot {
                    t.saturating_sub(margin_us)
                } else {
                    t
                };
                let num = if shard.is_null(i) {
                    0
                } else {
                    shard_number(shard.value(i)) + 1
                };
                (eff, u8::from(!snapshot), num)
            })
            .collect();
        OrderCols {
            op,
            shard,
            seq: strings(batch, SEQ),
            sub: ints(batch, SUB),
            file: strings(batch, FILE),
            line: ints(batch, LINE),
            event_id: strings(batch, EVENT_ID),
            head,
        }
    }

    /// Whether row `i` is a REMOVE (the item is gone after it).
    pub(crate) fn is_remove(&self, i: usize) -> bool {
        !self.op.is_null(i) && self.op.value(i) == "REMOVE"
    }
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

fn opt_i64(a: &Int64Array, i: usize) -> Option<i64> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// Compares row `i` of `a` with row `j` of `b`: `Greater` when `i` is the later change.
pub(crate) fn cmp(a: &OrderCols, i: usize, b: &OrderCols, j: usize) -> Ordering {
    a.head[i]
        .cmp(&b.head[j])
        .then_with(|| opt_str(&a.shard, i).cmp(&opt_str(&b.shard, j)))
        .then_with(|| match (opt_str(&a.seq, i), opt_str(&b.seq, j)) {
            (Some(x), Some(y)) => seq_cmp(x, y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
        .then_with(|| opt_i64(&a.sub, i).cmp(&opt_i64(&b.sub, j)))
        .then_with(|| opt_str(&a.file, i).cmp(&opt_str(&b.file, j)))
        .then_with(|| opt_i64(&a.line, i).cmp(&opt_i64(&b.line, j)))
        .then_with(|| opt_str(&a.event_id, i).cmp(&opt_str(&b.event_id, j)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::ArrayRef;
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;

    /// Rows of (operation, event time µs, shard, sequence number, file, line).
    type Spec<'a> = (
        &'a str,
        i64,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<i64>,
    );

    fn batch(rows: &[Spec<'_>]) -> RecordBatch {
        let s = |f: fn(&Spec<'_>) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let schema = Schema::new(vec![
            Field::new(OP, DataType::Utf8, true),
            Field::new(TIME_US, DataType::Int64, true),
            Field::new(SHARD, DataType::Utf8, true),
            Field::new(SEQ, DataType::Utf8, true),
            Field::new(FILE, DataType::Utf8, true),
            Field::new(LINE, DataType::Int64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                s(|r| Some(r.0.to_string())),
                Arc::new(rows.iter().map(|r| Some(r.1)).collect::<Int64Array>()),
                s(|r| r.2.map(str::to_string)),
                s(|r| r.3.map(str::to_string)),
                s(|r| r.4.map(str::to_string)),
                Arc::new(rows.iter().map(|r| r.5).collect::<Int64Array>()),
            ],
        )
        .unwrap()
    }

    /// Row indices sorted from the earliest change to the latest.
    fn order(rows: &[Spec<'_>], margin_us: i64) -> Vec<usize> {
        let b = batch(rows);
        let cols = OrderCols::new(&b, margin_us);
        let mut idx: Vec<usize> = (0..rows.len()).collect();
        idx.sort_by(|&i, &j| cmp(&cols, i, &cols, j));
        idx
    }

    #[test]
    fn time_first_then_the_stream_position() {
        let k = Some("shardId-000000000001");
        let rows = [
            ("MODIFY", 2_000_000, k, Some("300"), None, None),
            ("INSERT", 1_000_000, k, Some("900"), None, None),
            // Same second (DynamoDB Streams' precision): the sequence number decides, by value.
            ("MODIFY", 2_000_000, k, Some("1000"), None, None),
            ("MODIFY", 2_000_000, k, Some("0299"), None, None),
        ];
        assert_eq!(order(&rows, 0), [1, 3, 0, 2]);
    }

    #[test]
    fn a_child_shard_after_its_parent_at_the_same_time() {
        let rows = [
            (
                "MODIFY",
                5,
                Some("shardId-00000001700000000999-aaaa"),
                Some("1"),
                None,
                None,
            ),
            (
                "MODIFY",
                5,
                Some("shardId-00000001600000000000-ffff"),
                Some("99"),
                None,
                None,
            ),
            (
                "MODIFY",
                5,
                Some("shardId-000000000010"),
                Some("5"),
                None,
                None,
            ),
            (
                "MODIFY",
                5,
                Some("shardId-000000000009"),
                Some("7"),
                None,
                None,
            ),
        ];
        assert_eq!(order(&rows, 0), [3, 2, 1, 0]);
        assert_eq!(shard_number("shardId-000000000010"), 10);
        assert_eq!(
            shard_number("shardId-00000001414562045508-2bac9cd2"),
            1_414_562_045_508
        );
        assert_eq!(shard_number("no digits"), 0);
    }

    #[test]
    fn files_order_by_file_and_line_and_come_before_stream_rows() {
        let rows = [
            ("MODIFY", 5, None, None, Some("b.jsonl"), Some(1)),
            ("MODIFY", 5, None, None, Some("a.jsonl"), Some(9)),
            ("MODIFY", 5, None, None, Some("a.jsonl"), Some(10)),
            (
                "MODIFY",
                5,
                Some("shardId-000000000000"),
                Some("1"),
                None,
                None,
            ),
        ];
        assert_eq!(order(&rows, 0), [1, 2, 0, 3]);
    }

    /// A full export's item at the export time `T`: a change within the margin before `T` may
    /// or may not be in it, and wins; one before the margin is in it, and loses.
    #[test]
    fn an_exported_item_loses_to_changes_within_the_margin_before_it() {
        let t = 100 * 60 * 1_000_000;
        let margin = DEFAULT_MARGIN_US;
        let rows = [
            ("SNAPSHOT", t, None, None, Some("export"), Some(1)),
            ("MODIFY", t - margin - 1, Some("s"), Some("1"), None, None),
            ("MODIFY", t - margin, Some("s"), Some("2"), None, None),
            ("MODIFY", t - 1, Some("s"), Some("3"), None, None),
        ];
        assert_eq!(order(&rows, margin), [1, 0, 2, 3]);
        // Two exports: the later one is the later state.
        let rows = [
            ("SNAPSHOT", t + 1, None, None, Some("e2"), Some(1)),
            ("SNAPSHOT", t, None, None, Some("e1"), Some(1)),
        ];
        assert_eq!(order(&rows, margin), [1, 0]);
        let b = batch(&[("REMOVE", 1, None, None, None, None)]);
        let cols = OrderCols::new(&b, margin);
        assert!(cols.is_remove(0));
    }
}
