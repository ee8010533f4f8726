//! The buffer stage's flush policy, spilling and checkpoint bounds.
use super::*;
use crate::flatten::Cell;
use crate::schema::{ColumnType, Image};
use arrow_array::cast::AsArray;
use arrow_array::Array;
use proptest::prelude::*;

fn setup() -> (TableSchema, usize) {
    let mut s = TableSchema::new("t", None);
    let c = s
        .add_attr_column(Image::New, &["v"], ColumnType::String, 100)
        .unwrap();
    (s, c)
}

fn row(col: usize, len: usize) -> Row<'static> {
    Row {
        cells: vec![(col, Cell::Str("x".repeat(len).into()))],
        ..Row::default()
    }
}

fn key(p: &str) -> PartKey {
    PartKey {
        table: 0,
        path: p.into(),
        hour: 0,
        late: false,
    }
}

const BIG: usize = usize::MAX / 2;

fn drain(b: &mut Buffers) -> Vec<Flush> {
    let keys = b.all();
    take_all(b, &keys, FlushReason::EndOfInput)
}

fn take_all(b: &mut Buffers, keys: &[PartKey], reason: FlushReason) -> Vec<Flush> {
    keys.iter()
        .filter_map(|k| b.take(k, reason).unwrap())
        .collect()
}

/// Over the budget, the largest partitions' rows go to local disk, not into files: each
/// partition still flushes once, at the end, with every row in the order pushed.
#[test]
fn over_the_budget_rows_are_spilled_and_come_back_in_order() {
    let (s, c) = setup();
    let mut b = Buffers::new(FlushPolicy {
        max_bytes: BIG,
        max_records: BIG,
        max_age_ms: None,
        memory_budget: 40_000,
    });
    let value = |i: usize| Row {
        cells: vec![(c, Cell::Str(format!("{i:0200}").into()))],
        ..Row::default()
    };
    for i in 0..3000 {
        let flushed = b
            .push(
                key(&(i % 7).to_string()),
                &s,
                &value(i),
                &i.to_string(),
                None,
                0,
            )
            .unwrap();
        assert!(flushed.is_empty(), "no file before the end");
        assert!(b.buffered_bytes() <= 40_000);
    }
    let (batches, bytes) = b.spilled();
    assert!(
        batches > 7 && bytes > 3000 * 200,
        "{batches} batches, {bytes} bytes"
    );
    let flushes = drain(&mut b);
    assert_eq!(flushes.len(), 7);
    for f in flushes {
        let p: usize = f.key.path.parse().unwrap();
        let got: Vec<String> = f
            .batches
            .iter()
            .flat_map(|batch| {
                let a = batch.column(c).as_string::<i32>().clone();
                (0..a.len()).map(move |i| a.value(i).to_string())
            })
            .collect();
        let want: Vec<String> = (0..3000)
            .filter(|i| i % 7 == p)
            .map(|i| format!("{i:0200}"))
            .collect();
        assert_eq!(got, want);
        assert_eq!(f.rows, want.len());
    }
    assert_eq!(b.spill.on_disk(), 0);
}

/// Over the budget, a large partition that has had no row for a while (an hour that is over)
/// is written as a file rather than spilled; partitions that all still get rows are spilled.
#[test]
fn over_the_budget_idle_partitions_are_written_and_busy_ones_spilled() {
    let (s, c) = setup();
    let budget = 3 << 20;
    let policy = FlushPolicy {
        max_bytes: BIG,
        max_records: BIG,
        max_age_ms: None,
        memory_budget: budget,
    };
    let value = |i: usize| Row {
        cells: vec![(c, Cell::Str(format!("{i:0200}").into()))],
        ..Row::default()
    };
    // In order: the first hour's rows, then only the next hour's.
    let mut b = Buffers::new(policy);
    let mut flushes = Vec::new();
    for i in 0..16_000 {
        let hour = if i < 6_000 { "h0" } else { "h1" };
        let part = b.push(key(hour), &s, &value(i), &i.to_string(), None, 0);
        flushes.extend(part.unwrap());
        assert!(b.buffered_bytes() <= budget);
    }
    let idle: Vec<(&str, FlushReason, usize)> = flushes
        .iter()
        .map(|f| (f.key.path.as_str(), f.reason, f.rows))
        .collect();
    assert_eq!(idle, [("h0", FlushReason::Idle, 6_000)]);
    assert_eq!(b.spilled(), (0, 0), "nothing went to local disk");
    // Interleaved: every partition gets rows all along, so none is idle.
    let mut b = Buffers::new(policy);
    for i in 0..20_000 {
        let part = if i % 2 == 0 { "a" } else { "b" };
        let flushed = b.push(key(part), &s, &value(i), &i.to_string(), None, 0);
        assert!(flushed.unwrap().is_empty(), "no file before the end");
    }
    assert!(b.spilled().1 > 0);
    assert_eq!(drain(&mut b).iter().map(|f| f.rows).sum::<usize>(), 20_000);
}

#[test]
fn flushes_on_records_and_size() {
    let (s, c) = setup();
    let mut b = Buffers::new(FlushPolicy {
        max_bytes: BIG,
        max_records: 3,
        max_age_ms: None,
        memory_budget: BIG,
    });
    assert!(b
        .push(key("a"), &s, &row(c, 1), "p1", None, 0)
        .unwrap()
        .is_empty());
    assert!(b
        .push(key("a"), &s, &row(c, 1), "p2", None, 0)
        .unwrap()
        .is_empty());
    let f = b.push(key("a"), &s, &row(c, 1), "p3", None, 0).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].rows, f[0].reason), (3, FlushReason::Records));
    assert_eq!((f[0].first.as_str(), f[0].last.as_str()), ("p1", "p3"));
    assert_eq!(b.buffered_bytes(), 0);

    // Sizes include the builders' fixed cost per column.
    let limit = 1000 + s.len() * super::chunk::COLUMN_OVERHEAD;
    let mut b = Buffers::new(FlushPolicy {
        max_bytes: limit,
        max_records: BIG,
        max_age_ms: None,
        memory_budget: BIG,
    });
    let mut flushes = Vec::new();
    for i in 0..10 {
        flushes.extend(
            b.push(key("a"), &s, &row(c, 300), &i.to_string(), None, 0)
                .unwrap(),
        );
    }
    assert!(flushes
        .iter()
        .all(|f| f.reason == FlushReason::Size && f.bytes >= limit));
    assert_eq!(flushes.len(), 3);
}

#[test]
fn flushes_by_age_with_injected_time() {
    let (s, c) = setup();
    let mut b = Buffers::new(FlushPolicy {
        max_bytes: BIG,
        max_records: BIG,
        max_age_ms: Some(5_000),
        memory_budget: BIG,
    });
    b.push(key("old"), &s, &row(c, 1), "1", None, 1_000)
        .unwrap();
    b.push(key("new"), &s, &row(c, 1), "2", None, 4_000)
        .unwrap();
    assert!(b.aged(5_999).is_empty());
    let keys = b.aged(6_000);
    let f = take_all(&mut b, &keys, FlushReason::Age);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].key.path.as_str(), f[0].reason),
        ("old", FlushReason::Age)
    );
    assert_eq!(b.open_partitions(), 1);
}

#[test]
fn pending_sources_give_the_checkpoint_bound() {
    let (s, c) = setup();
    let mut b = Buffers::new(FlushPolicy {
        max_bytes: BIG,
        max_records: BIG,
        max_age_ms: None,
        memory_budget: BIG,
    });
    assert_eq!(b.pending_since(0), None);
    let src = |shard, prev, seq| {
        Some(StreamSource {
            shard,
            prev,
            seq,
            sub: 0,
        })
    };
    b.push(key("a"), &s, &row(c, 1), "x", src(0, Some("100"), "101"), 0)
        .unwrap();
    b.push(key("b"), &s, &row(c, 1), "x", src(0, Some("99"), "100"), 0)
        .unwrap();
    b.push(key("a"), &s, &row(c, 1), "x", src(0, Some("101"), "102"), 0)
        .unwrap();
    b.push(key("a"), &s, &row(c, 1), "x", src(1, None, "7"), 0)
        .unwrap();
    assert_eq!(b.pending_since(0), Some(Some("99")));
    assert_eq!(b.pending_since(1), Some(None));
    assert_eq!(b.pending_since(2), None);
    // The batch of `a` holds shard 0's records from 101 to 102, read after 100.
    let a = drain(&mut b)
        .into_iter()
        .find(|f| f.key.path == "a")
        .unwrap();
    let r0 = &a.ranges.iter().find(|(s, _)| *s == 0).unwrap().1;
    assert_eq!(r0.after.as_deref(), Some("100"));
    assert_eq!(
        (r0.first.seq.as_str(), r0.last.seq.as_str()),
        ("101", "102")
    );
}

proptest! {
    #![proptest_config(crate::test_support::proptest_config())]
    /// Whatever the partitions and sizes: the budget holds after every push, and every row
    /// comes out in exactly one flush.
    #[test]
    fn budget_holds_and_no_row_is_lost(
        rows in proptest::collection::vec((0usize..50, 1usize..400), 1..400),
        budget in 2_000usize..20_000,
    ) {
        let (s, c) = setup();
        let mut b = Buffers::new(FlushPolicy {
            max_bytes: BIG, max_records: BIG, max_age_ms: None, memory_budget: budget,
        });
        let mut out = 0;
        for (i, (p, len)) in rows.iter().enumerate() {
            for f in b.push(key(&p.to_string()), &s, &row(c, *len), &i.to_string(), None, 0).unwrap() {
                prop_assert_eq!(f.rows, f.batches.iter().map(|b| b.num_rows()).sum::<usize>());
                out += f.rows;
            }
            prop_assert!(b.buffered_bytes() <= budget);
        }
        for f in drain(&mut b) {
            prop_assert_eq!(f.rows, f.batches.iter().map(|b| b.num_rows()).sum::<usize>());
            out += f.rows;
        }
        prop_assert_eq!(out, rows.len());
        prop_assert_eq!(b.buffered_bytes(), 0);
    }
}
