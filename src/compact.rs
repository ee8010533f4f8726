//! Compaction of a closed hour (pure CPU; `pipeline::compaction` does the I/O around it): rows
//! sorted by item (the table's key, `item::key`) and then by the order of the item's changes
//! (`item::order`), so that Athena can skip row groups by key; an hour's sorted runs merged into
//! files of a target size.
//!
//! The order is total over rows of one table (every stream row has its shard and position), so
//! the files made from the same rows are the same bytes however the rows were split into runs: a
//! compaction redone after a crash names and fills its files exactly as the first attempt did.

use std::cmp::Ordering;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;

use crate::encode::{pad, EncodeOptions};
use crate::item::key::KeyColumns;
use crate::item::order::{self, OrderCols, DEFAULT_MARGIN_US};

/// Rows per batch written (and per batch read from a run).
pub const BATCH_ROWS: usize = 8192;

/// Rows per row group of a staged file.
pub const STAGED_ROW_GROUP: usize = 8192;

/// Compacted files hold this many row groups at their target size or more, so that a reader
/// skips by key within a file.
const ROW_GROUPS_PER_FILE: usize = 8;

/// Sorting or writing failed (a bug or a broken file: the run stops).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// An Arrow kernel failed.
    #[error("sorting rows: {0}")]
    Arrow(#[from] ArrowError),
    /// The Parquet writer failed.
    #[error("writing sorted rows: {0}")]
    Parquet(#[from] ParquetError),
}

/// The sort of one batch's rows: each row's key bytes (`None`: no key value, or no key known)
/// and its order columns.
struct Sorted {
    keys: Vec<Option<Vec<u8>>>,
    order: OrderCols,
}

impl Sorted {
    fn new(batch: &RecordBatch, key: Option<&KeyColumns>) -> Self {
        Sorted {
            keys: match key {
                Some(k) => k.keys(batch),
                None => vec![None; batch.num_rows()],
            },
            order: OrderCols::new(batch, DEFAULT_MARGIN_US),
        }
    }

    fn cmp(&self, i: usize, other: &Sorted, j: usize) -> Ordering {
        self.keys[i]
            .cmp(&other.keys[j])
            .then_with(|| order::cmp(&self.order, i, &other.order, j))
    }
}

/// A flush's rows sorted by item, then by change, encoded as a staged file: row groups of
/// [`STAGED_ROW_GROUP`] rows, so that a merge holds little of each staged file at once. The
/// rows are sorted by index and written a chunk at a time (no sorted copy of the whole flush:
/// its memory is the flush's own plus one chunk and the encoded bytes).
pub(crate) fn encode_sorted(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    key: Option<&KeyColumns>,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, CompactError> {
    let padded = pad_all(batches, schema)?;
    let sorted = padded.iter().map(|b| Sorted::new(b, key)).collect();
    let idx = item_order(&padded, sorted);
    let opts = EncodeOptions {
        row_group_rows: STAGED_ROW_GROUP,
        ..*opts
    };
    let mut w = ArrowWriter::try_new(Vec::new(), Arc::clone(schema), Some(opts.properties()))?;
    write_in_order(&mut w, &padded, &idx)?;
    Ok(w.into_inner()?)
}

/// A data file's rows sorted by item (`[parquet] sort_rows`), with the writer settings
/// `encode::encode` chooses for the rows as read: by `key`, then by the order of each item's
/// changes, so that an item's changes sit together and compress together, and each item's
/// changes keep their order. With `only_if_repeated`, rows of which fewer than one in
/// [`REPEATS_WORTH_SORTING`] repeats an item are left to `encode::encode` (the same bytes as
/// unsorted, the same memory): sorting them would save under 2% (docs/BENCHMARKS.md, "Sorting
/// rows within a file").
pub(crate) fn encode_by_key(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    key: &KeyColumns,
    only_if_repeated: bool,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, CompactError> {
    // Missing columns read as nulls here as they would once padded.
    let keys: Vec<Vec<Option<Vec<u8>>>> = batches.iter().map(|b| key.keys(b)).collect();
    if only_if_repeated && !repeats_enough(&keys) {
        drop(keys);
        return Ok(crate::encode::encode(schema, batches, opts)?);
    }
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let props = opts.properties_for(rows, &batches);
    let padded = pad_all(batches, schema)?;
    let sorted = keys
        .into_iter()
        .zip(&padded)
        .map(|(keys, b)| Sorted {
            keys,
            order: OrderCols::new(b, DEFAULT_MARGIN_US),
        })
        .collect();
    let idx = item_order(&padded, sorted);
    let mut w = ArrowWriter::try_new(Vec::new(), Arc::clone(schema), Some(props))?;
    write_in_order(&mut w, &padded, &idx)?;
    Ok(w.into_inner()?)
}

/// `sort_rows = "auto"` sorts a file when at least one row in this many repeats an item of an
/// earlier row. Measured on daily files of the side-by-side input (`benches/sort_rows.py`),
/// bytes saved by sorting: one row in 2 repeating, 15.6%; one in 3.6, 7.0%; one in 5.2, 4.0%;
/// one in 6.9, 2.1%; one in 8.5, 1.2%; one in 10 or fewer, from 0.6% to -0.8%.
pub(crate) const REPEATS_WORTH_SORTING: usize = 8;

/// Whether at least one row in [`REPEATS_WORTH_SORTING`] repeats the key of an earlier row (a
/// row without a key value is an item of its own), from each batch's row keys.
fn repeats_enough(keys: &[Vec<Option<Vec<u8>>>]) -> bool {
    let rows: usize = keys.iter().map(Vec::len).sum();
    let mut seen = rustc_hash::FxHashSet::default();
    let repeats = keys
        .iter()
        .flat_map(|k| k.iter().flatten())
        .filter(|k| !seen.insert(k.as_slice()))
        .count();
    repeats * REPEATS_WORTH_SORTING >= rows
}

fn pad_all(
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, CompactError> {
    Ok(batches
        .iter()
        .map(|b| pad(b, schema))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The rows of `batches` (with `sorted`, their keys and order columns) as (batch, row) pairs
/// sorted by item, then by change.
fn item_order(batches: &[RecordBatch], sorted: Vec<Sorted>) -> Vec<(usize, usize)> {
    let mut idx: Vec<(usize, usize)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r)))
        .collect();
    idx.sort_unstable_by(|x, y| sorted[x.0].cmp(x.1, &sorted[y.0], y.1));
    idx
}

/// Writes the rows of `batches` in the order of `idx`, a chunk of [`BATCH_ROWS`] at a time.
fn write_in_order(
    w: &mut ArrowWriter<Vec<u8>>,
    batches: &[RecordBatch],
    idx: &[(usize, usize)],
) -> Result<(), CompactError> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    for chunk in idx.chunks(BATCH_ROWS) {
        w.write(&arrow_select::interleave::interleave_record_batch(
            &refs, chunk,
        )?)?;
    }
    Ok(())
}

/// A run being merged: its current batch and the next row of it.
struct Cursor {
    input: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
    batch: RecordBatch,
    sorted: Sorted,
    row: usize,
    /// Bumped with each batch, so that a chunk knows which batches it takes rows from.
    generation: u64,
}

/// Merges sorted runs (each an iterator of batches holding a prefix of `schema`'s columns) into
/// Parquet files with row groups sized for files of `target_bytes`, one file per
/// [`Merger::next_file`].
pub(crate) struct Merger {
    schema: SchemaRef,
    key: Option<KeyColumns>,
    cursors: Vec<Cursor>,
    opts: EncodeOptions,
    /// The writer properties of every file, chosen from the first file's first batch.
    props: Option<WriterProperties>,
    /// Rows of a merged batch left over when a file was cut in its middle.
    leftover: Option<RecordBatch>,
}

impl Merger {
    /// A merger of `runs` into files of `target_bytes`, rows sorted by `key` (`None`: by change).
    pub(crate) fn new(
        schema: SchemaRef,
        runs: Vec<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>>,
        key: Option<KeyColumns>,
        target_bytes: usize,
        opts: &EncodeOptions,
    ) -> Result<Self, CompactError> {
        let opts = EncodeOptions {
            row_group_bytes: opts
                .row_group_bytes
                .min(target_bytes / ROW_GROUPS_PER_FILE)
                .max(1 << 20),
            ..*opts
        };
        let mut m = Merger {
            schema,
            key,
            cursors: Vec::new(),
            opts,
            props: None,
            leftover: None,
        };
        for run in runs {
            if let Some(c) = m.open(run)? {
                m.cursors.push(c);
            }
        }
        Ok(m)
    }

    /// The run's first non-empty batch as a cursor; `None` when the run is empty.
    fn open(
        &self,
        mut input: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
    ) -> Result<Option<Cursor>, CompactError> {
        for batch in input.by_ref() {
            let batch = pad(&batch?, &self.schema)?;
            if batch.num_rows() > 0 {
                let sorted = Sorted::new(&batch, self.key.as_ref());
                return Ok(Some(Cursor {
                    input,
                    batch,
                    sorted,
                    row: 0,
                    generation: 0,
                }));
            }
        }
        Ok(None)
    }

    /// Moves cursor `c` one row on; false when its run has ended.
    fn advance(&mut self, c: usize) -> Result<bool, CompactError> {
        let cur = &mut self.cursors[c];
        cur.row += 1;
        if cur.row < cur.batch.num_rows() {
            return Ok(true);
        }
        for batch in cur.input.by_ref() {
            let batch = pad(&batch?, &self.schema)?;
            if batch.num_rows() > 0 {
                cur.sorted = Sorted::new(&batch, self.key.as_ref());
                cur.batch = batch;
                cur.row = 0;
                cur.generation += 1;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The cursor whose row comes first (few runs per hour: a scan beats a heap's bookkeeping).
    fn first(&self) -> usize {
        let mut best = 0;
        for c in 1..self.cursors.len() {
            let (a, b) = (&self.cursors[c], &self.cursors[best]);
            if a.sorted.cmp(a.row, &b.sorted, b.row).is_lt() {
                best = c;
            }
        }
        best
    }

    /// The next batch of up to [`BATCH_ROWS`] merged rows; `None` when every run has ended.
    pub(crate) fn next_batch(&mut self) -> Result<Option<RecordBatch>, CompactError> {
        let mut sources: Vec<RecordBatch> = Vec::new();
        // Per cursor: the generation of its batch in `sources` and where it is.
        let mut at: Vec<Option<(u64, usize)>> = vec![None; self.cursors.len()];
        let mut rows: Vec<(usize, usize)> = Vec::with_capacity(BATCH_ROWS);
        while rows.len() < BATCH_ROWS && !self.cursors.is_empty() {
            let c = self.first();
            let cur = &self.cursors[c];
            let src = match at[c] {
                Some((g, s)) if g == cur.generation => s,
                _ => {
                    sources.push(cur.batch.clone());
                    at[c] = Some((cur.generation, sources.len() - 1));
                    sources.len() - 1
                }
            };
            rows.push((src, cur.row));
            if !self.advance(c)? {
                self.cursors.remove(c);
                at.remove(c);
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = sources.iter().collect();
        Ok(Some(arrow_select::interleave::interleave_record_batch(
            &refs, &rows,
        )?))
    }

    /// The next compacted file of `rows_per_file` rows (the last one: what is left), with its
    /// bytes and rows, or `None` when every row is in one. Cut by rows, so that the files depend
    /// only on the rows: a compaction redone with other Parquet settings cuts at the same rows.
    pub(crate) fn next_file(
        &mut self,
        rows_per_file: usize,
    ) -> Result<Option<(Vec<u8>, usize)>, CompactError> {
        let mut w: Option<ArrowWriter<Vec<u8>>> = None;
        let mut rows = 0;
        while rows < rows_per_file {
            let batch = match self.leftover.take() {
                Some(b) => b,
                None => match self.next_batch()? {
                    Some(b) => b,
                    None => break,
                },
            };
            let want = rows_per_file - rows;
            let now = if batch.num_rows() > want {
                self.leftover = Some(batch.slice(want, batch.num_rows() - want));
                batch.slice(0, want)
            } else {
                batch
            };
            let writer = match &mut w {
                Some(w) => w,
                None => w.insert(ArrowWriter::try_new(
                    Vec::new(),
                    Arc::clone(&self.schema),
                    // Encodings chosen once, from the hour's first rows: every file of a
                    // compaction (and of its redo) is written alike.
                    Some(
                        self.props
                            .get_or_insert_with(|| {
                                self.opts
                                    .properties_for(usize::MAX, std::slice::from_ref(&now))
                            })
                            .clone(),
                    ),
                )?),
            };
            rows += now.num_rows();
            writer.write(&now)?;
        }
        match w {
            Some(w) => Ok(Some((w.into_inner()?, rows))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, Image, TableSchema};
    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn table() -> (KeyColumns, SchemaRef) {
        let mut s = TableSchema::new("T", None);
        s.add_attr_column(Image::New, &["Id"], ColumnType::String, 100)
            .unwrap();
        s.learn_keys(&["Id"]);
        (KeyColumns::of(&s, None).unwrap(), s.arrow_schema())
    }

    /// Rows of (sequence number, event time, id) in one shard, every other column null.
    fn batch(schema: &SchemaRef, rows: &[(u64, i64, &str)]) -> RecordBatch {
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "cdc_shard_id" => {
                        Arc::new(StringArray::from(vec!["shardId-000000000000"; rows.len()]))
                    }
                    "cdc_sequence_number" => Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| format!("{:056}", r.0)),
                    )),
                    "cdc_event_time_us" => {
                        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1)))
                    }
                    "id" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                    _ => arrow_array::new_null_array(f.data_type(), rows.len()),
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    }

    fn read(bytes: &[u8]) -> Vec<RecordBatch> {
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.to_vec()))
            .unwrap()
            .with_batch_size(1000)
            .build()
            .unwrap()
            .map(|b| b.unwrap())
            .collect()
    }

    /// (id, sequence number) of every row, in order.
    fn ids(batches: &[RecordBatch]) -> Vec<(String, u64)> {
        batches
            .iter()
            .flat_map(|b| {
                let id = b.column_by_name("id").unwrap().as_string::<i32>().clone();
                let seq = b
                    .column_by_name("cdc_sequence_number")
                    .unwrap()
                    .as_string::<i32>()
                    .clone();
                (0..b.num_rows())
                    .map(|i| (id.value(i).to_string(), seq.value(i).parse().unwrap()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn sorts_by_item_then_by_change() {
        let (k, schema) = table();
        let rows = batch(
            &schema,
            &[(1, 10, "b"), (2, 5, "a"), (3, 1, "b"), (4, 7, "a")],
        );
        let sorted =
            read(&encode_sorted(&schema, vec![rows], Some(&k), &Default::default()).unwrap());
        let want: Vec<(String, u64)> = [("a", 2), ("a", 4), ("b", 3), ("b", 1)]
            .iter()
            .map(|(i, s)| (i.to_string(), *s))
            .collect();
        assert_eq!(ids(&sorted), want);
    }

    /// A change of each of `ids` in turn: sequence numbers rising, event times falling (so that
    /// by item, an item's later rows come first).
    fn one_after_another(ids: &[String]) -> Vec<(u64, i64, &str)> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| (i as u64, 100 - i as i64, id.as_str()))
            .collect()
    }

    #[test]
    fn by_key_sorts_always_and_auto_only_where_one_row_in_eight_repeats_an_item() {
        let (k, schema) = table();
        let opts = EncodeOptions::default();
        // 16 rows, `repeats` of them repeating the item of the row before (in reverse order of
        // their ids, so that a sorted file differs from the rows as read).
        let rows = |repeats: u64| {
            let names: Vec<String> = (0..16u64)
                .map(|i| format!("item{:02}", 20 - i.min(15 - repeats)))
                .collect();
            let b = batch(&schema, &one_after_another(&names));
            (ids(std::slice::from_ref(&b)), b)
        };
        let encode = |b: &RecordBatch, only_if_repeated| {
            encode_by_key(&schema, vec![b.clone()], &k, only_if_repeated, &opts).unwrap()
        };
        for repeats in [0, 1, 2, 8] {
            let (as_read, b) = rows(repeats);
            // Independently: by id, then by event time (falling here: the later rows first).
            let mut by_item = as_read.clone();
            by_item.sort_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
            assert_ne!(as_read, by_item);
            assert_eq!(ids(&read(&encode(&b, false))), by_item, "{repeats}");
            let auto = encode(&b, true);
            if repeats * 8 >= 16 {
                assert_eq!(ids(&read(&auto)), by_item, "{repeats}");
            } else {
                assert_eq!(ids(&read(&auto)), as_read, "{repeats}");
                let plain = crate::encode::encode(&schema, vec![b], &opts).unwrap();
                assert!(auto == plain, "left as read, the same bytes as encode()");
            }
        }
    }

    #[test]
    fn auto_counts_rows_without_a_key_value_as_items_of_their_own() {
        let (k, schema) = table();
        let opts = EncodeOptions::default();
        // 16 rows of distinct items, falling ids (sorting would reorder them), the first four
        // without a key value: no row repeats an item, so `auto` leaves them as read.
        let names: Vec<String> = (0..16).map(|i| format!("item{:02}", 20 - i)).collect();
        let b = batch(&schema, &one_after_another(&names));
        let mut cols = b.columns().to_vec();
        cols[schema.index_of("id").unwrap()] = Arc::new(StringArray::from_iter(
            (0..16).map(|i| (i >= 4).then(|| names[i].clone())),
        ));
        let b = RecordBatch::try_new(schema.clone(), cols).unwrap();
        let auto = encode_by_key(&schema, vec![b.clone()], &k, true, &opts).unwrap();
        let plain = crate::encode::encode(&schema, vec![b], &opts).unwrap();
        assert!(
            auto == plain,
            "four rows without a key are four items, not three repeats"
        );
    }

    #[test]
    fn merged_files_hold_every_row_once_in_order_whatever_the_runs() {
        let (k, schema) = table();
        let all: Vec<(u64, i64, String)> = (0..30_000u64)
            .map(|i| {
                (
                    i,
                    (i * 7 % 1000) as i64,
                    format!("item{:05}", i * 13 % 4_001),
                )
            })
            .collect();
        let files_of = |cuts: &[usize]| {
            let mut runs: Vec<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>> =
                Vec::new();
            let mut from = 0;
            for &to in cuts.iter().chain([all.len()].iter()) {
                let part: Vec<(u64, i64, &str)> = all[from..to]
                    .iter()
                    .map(|(s, t, i)| (*s, *t, i.as_str()))
                    .collect();
                // Each run a staged file, cut in two flushes' batches.
                let half = part.len() / 2;
                let flush = vec![batch(&schema, &part[..half]), batch(&schema, &part[half..])];
                let staged = encode_sorted(&schema, flush, Some(&k), &Default::default()).unwrap();
                runs.push(Box::new(read(&staged).into_iter().map(Ok)));
                from = to;
            }
            let mut m = Merger::new(
                schema.clone(),
                runs,
                Some(k.clone()),
                100_000,
                &EncodeOptions::default(),
            )
            .unwrap();
            let mut files = Vec::new();
            while let Some(f) = m.next_file(7_000).unwrap() {
                files.push(f);
            }
            files
        };
        let a = files_of(&[1000, 9000, 9001, 20_000]);
        let b = files_of(&[15_000]);
        let rows: Vec<usize> = a.iter().map(|f| f.1).collect();
        assert_eq!(rows, [7_000, 7_000, 7_000, 7_000, 2_000]);
        assert!(a == b, "the same rows make the same files");
        let mut read = Vec::new();
        for (bytes, rows) in &a {
            let batches: Vec<RecordBatch> =
                ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone()))
                    .unwrap()
                    .build()
                    .unwrap()
                    .map(|b| b.unwrap())
                    .collect();
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), *rows);
            read.extend(ids(&batches));
        }
        // Independently: by id, then by event time, then by sequence number.
        let mut want: Vec<(String, i64, u64)> =
            all.iter().map(|(s, t, i)| (i.clone(), *t, *s)).collect();
        want.sort();
        let want: Vec<(String, u64)> = want.into_iter().map(|(i, _, s)| (i, s)).collect();
        assert_eq!(read, want);
    }
}
