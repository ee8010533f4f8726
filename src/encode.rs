//! Encode stage: record batches to Parquet bytes. Synchronous and pure CPU work: callers run it
//! off the async executor.

use std::sync::Arc;

use std::hash::BuildHasher;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{new_null_array, Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use rustc_hash::{FxBuildHasher, FxHashSet};

/// Parquet compression codecs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Zstandard at the given level (`zstd` alone: level 3).
    Zstd(i32),
    /// Snappy (no level).
    Snappy,
    /// Gzip at the given level (`gzip` alone: level 6).
    Gzip(u32),
    /// No compression (`none` or `uncompressed`).
    None,
}

impl std::str::FromStr for Codec {
    type Err = String;

    /// `zstd`, `zstd(5)`, `snappy`, `gzip`, `gzip(9)`, `none`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let level = |name: &str| -> Result<Option<i64>, String> {
            match s.strip_prefix(name) {
                Some("") => Ok(None),
                Some(rest) => rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|l| l.trim().parse().ok())
                    .map(Some)
                    .ok_or_else(|| format!("bad compression level in `{s}`")),
                None => Err(String::new()),
            }
        };
        if let Ok(l) = level("zstd") {
            let l = l.unwrap_or(3) as i32;
            ZstdLevel::try_new(l).map_err(|e| e.to_string())?;
            return Ok(Codec::Zstd(l));
        }
        if let Ok(l) = level("gzip") {
            let l = l.unwrap_or(6) as u32;
            GzipLevel::try_new(l).map_err(|e| e.to_string())?;
            return Ok(Codec::Gzip(l));
        }
        match s.as_str() {
            "snappy" => Ok(Codec::Snappy),
            "none" | "uncompressed" => Ok(Codec::None),
            _ => Err(format!(
                "unknown compression `{s}` (expected zstd, zstd(LEVEL), snappy, gzip, gzip(LEVEL) or none)"
            )),
        }
    }
}

/// Files of fewer rows than this are written uncompressed. Compressing a column chunk of a few
/// values saves a few bytes, while the Parquet crate's zstd codec sets up a compressor and a
/// decompressor for every column chunk: with thousands of small partitions that setup was a
/// third of the whole run's time (docs/BENCHMARKS.md, "Many partitions").
pub const SMALL_FILE_ROWS: usize = 256;

/// Parquet writer settings (validated config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Compression of the data pages (`parquet.compression`).
    pub codec: Codec,
    /// Most rows in one row group (`parquet.row_group_rows`, at least 1).
    pub row_group_rows: usize,
    /// Size in bytes at which a row group is closed (`parquet.row_group_size`).
    pub row_group_bytes: usize,
    /// Size in bytes at which a data page is closed (`parquet.data_page_size`).
    pub data_page_bytes: usize,
    /// Whether columns are dictionary encoded (`parquet.dictionary`).
    pub dictionary: bool,
    /// Whether page and column chunk statistics (min, max, null count) are written
    /// (`parquet.statistics`).
    pub statistics: bool,
}

/// The default codec: zstd at level 2, not zstd's own default of 3. On the side-by-side input's
/// 1 MiB pages level 2 wrote 0.2-1.0% fewer bytes than level 3 (0.6% with 600 smaller files) in
/// about 5% less whole-process time (docs/BENCHMARKS.md, "zstd level").
pub const DEFAULT_CODEC: Codec = Codec::Zstd(2);

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            codec: DEFAULT_CODEC,
            row_group_rows: 1024 * 1024,
            row_group_bytes: 128 * 1024 * 1024,
            data_page_bytes: 1024 * 1024,
            dictionary: true,
            statistics: true,
        }
    }
}

impl EncodeOptions {
    /// The Parquet writer properties for these settings (writer version 1.0, `created_by` naming
    /// this crate and version).
    pub fn properties(&self) -> WriterProperties {
        self.properties_for(usize::MAX, &[])
    }

    /// The writer properties for a file of `rows` rows that start with `batches`: a file of
    /// fewer than [`SMALL_FILE_ROWS`] rows is written uncompressed and with its statistics per
    /// column chunk only, without a page index (a column index of min/max per page and an offset
    /// index of where pages start: its columns are one page or a few, and the chunk's statistics
    /// say nearly as much; the 40,000-partition run's bytes: 560 -> 475 MB), a file
    /// of fewer than `DICTIONARY_MIN_VALUES` rows without dictionaries, and a column whose first
    /// values (across the batches) are mostly distinct without a dictionary.
    pub fn properties_for(&self, rows: usize, batches: &[RecordBatch]) -> WriterProperties {
        let codec = if rows < SMALL_FILE_ROWS {
            Codec::None
        } else {
            self.codec
        };
        let compression = match codec {
            Codec::Zstd(l) => Compression::ZSTD(ZstdLevel::try_new(l).expect("validated")),
            Codec::Snappy => Compression::SNAPPY,
            Codec::Gzip(l) => Compression::GZIP(GzipLevel::try_new(l).expect("validated")),
            Codec::None => Compression::UNCOMPRESSED,
        };
        let mut builder = WriterProperties::builder();
        let widest = batches.iter().max_by_key(|b| b.num_columns());
        if let (true, Some(widest)) = (self.dictionary, widest) {
            for (c, field) in widest.schema().fields().iter().enumerate() {
                let parts = batches.iter().filter_map(|b| b.columns().get(c));
                if dictionary_pays(parts) == Some(false) {
                    let path = ColumnPath::new(vec![field.name().clone()]);
                    builder = builder.set_column_dictionary_enabled(path, false);
                }
            }
        }
        builder
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_data_page_size_limit(self.data_page_bytes)
            .set_dictionary_enabled(self.dictionary && rows >= DICTIONARY_MIN_VALUES)
            .set_offset_index_disabled(rows < SMALL_FILE_ROWS)
            .set_statistics_enabled(if self.statistics && rows < SMALL_FILE_ROWS {
                EnabledStatistics::Chunk
            } else if self.statistics {
                EnabledStatistics::Page
            } else {
                EnabledStatistics::None
            })
            .set_created_by(format!("ddb-lake {}", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// Values sampled from the start of a column to choose its encoding: two chunks' worth, so that
/// a column of a few hundred distinct values (names, states, coupon codes) shows its repeats. With
/// 1,024, a column of 499 names looked mostly distinct and was written plain, at 1.8x its
/// bytes with a dictionary (docs/BENCHMARKS.md, "Output size").
const DICTIONARY_SAMPLE: usize = 16_384;
/// Fewest sampled values to decide on; below, the column keeps the default (a dictionary). A whole
/// file of fewer rows has no dictionaries: a dictionary page per column in a file of a few rows
/// cost bytes and a dictionary encoder's setup per column (the 40,000-partition run: 11% of its
/// CPU, and 4% of its bytes; docs/BENCHMARKS.md, "Many partitions").
const DICTIONARY_MIN_VALUES: usize = 64;
/// A dictionary pays when the sample holds at most one distinct value in this many. Measured on
/// the side-by-side input: a dictionary of mostly distinct values (ids, timestamps, coordinates)
/// took 1.5x to 1.7x the bytes of plain values under zstd, as the Parquet crate keeps
/// dictionary-encoding until its dictionary page is full (docs/BENCHMARKS.md).
const DICTIONARY_RATIO: usize = 8;

/// Whether a dictionary pays for a column, from its first values across its parts (the column
/// in each batch, in order): `None` for too few values or a type never dictionary-encoded here
/// (booleans, lists).
fn dictionary_pays<'a>(parts: impl Iterator<Item = &'a ArrayRef>) -> Option<bool> {
    let h = FxBuildHasher;
    // Past this many distinct values no sample can make a dictionary pay, so the scan stops
    // there: a mostly distinct column costs an eighth of the sample, not all of it.
    const MOST_DISTINCT: usize = DICTIONARY_SAMPLE / DICTIONARY_RATIO;
    let mut seen = FxHashSet::with_capacity_and_hasher(MOST_DISTINCT + 1, h);
    let (mut values, mut scanned) = (0, 0);
    for column in parts {
        let n = column.len().min(DICTIONARY_SAMPLE - scanned);
        let mut too_many = false;
        let mut sample = |hash: &dyn Fn(usize) -> u64| {
            for i in (0..n).filter(|&i| column.is_valid(i)) {
                values += 1;
                seen.insert(hash(i));
                if seen.len() > MOST_DISTINCT {
                    too_many = true;
                    return;
                }
            }
        };
        match column.data_type() {
            DataType::Utf8 => sample(&|i| h.hash_one(column.as_string::<i32>().value(i))),
            DataType::Binary => sample(&|i| h.hash_one(column.as_binary::<i32>().value(i))),
            DataType::Int64 => sample(&|i| h.hash_one(column.as_primitive::<Int64Type>().value(i))),
            DataType::Int32 => sample(&|i| h.hash_one(column.as_primitive::<Int32Type>().value(i))),
            DataType::Date32 => {
                sample(&|i| h.hash_one(column.as_primitive::<Date32Type>().value(i)))
            }
            DataType::Float64 => {
                sample(&|i| h.hash_one(column.as_primitive::<Float64Type>().value(i).to_bits()))
            }
            DataType::Decimal128(..) => {
                sample(&|i| h.hash_one(column.as_primitive::<Decimal128Type>().value(i)))
            }
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                sample(&|i| h.hash_one(column.as_primitive::<TimestampMicrosecondType>().value(i)))
            }
            _ => return None,
        }
        if too_many {
            return Some(false);
        }
        scanned += n;
        if scanned == DICTIONARY_SAMPLE {
            break;
        }
    }
    (values >= DICTIONARY_MIN_VALUES).then(|| seen.len() * DICTIONARY_RATIO <= values)
}

/// Extends a batch holding a prefix of the table's columns with null columns for the rest.
pub fn pad(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for field in schema.fields().iter().skip(columns.len()) {
        columns.push(new_null_array(field.data_type(), batch.num_rows()));
    }
    RecordBatch::try_new(schema.clone(), columns)
}

/// Encodes batches (each a prefix of `schema`'s columns) into one Parquet file holding the full
/// column list. Each batch is freed as soon as it is encoded, so a flush's Arrow data and its
/// encoded form are not both held whole.
pub fn encode(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    opts: &EncodeOptions,
) -> Result<Vec<u8>, ParquetError> {
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let props = opts.properties_for(rows, &batches);
    let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(schema), Some(props))?;
    for b in batches {
        writer.write(&pad(&b, schema)?)?;
    }
    writer.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array};
    use arrow_schema::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn codecs_parse() {
        assert_eq!("zstd".parse(), Ok(Codec::Zstd(3)));
        assert_eq!("ZSTD(9)".parse(), Ok(Codec::Zstd(9)));
        assert_eq!("gzip".parse(), Ok(Codec::Gzip(6)));
        assert_eq!("snappy".parse(), Ok(Codec::Snappy));
        assert_eq!("none".parse(), Ok(Codec::None));
        assert!("lz5".parse::<Codec>().is_err());
        assert!("zstd(x)".parse::<Codec>().is_err());
    }

    #[test]
    fn pads_and_round_trips_deterministically() {
        let full = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        let part = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let bytes = encode(&full, vec![part.clone()], &EncodeOptions::default()).unwrap();
        assert_eq!(
            bytes,
            encode(&full, vec![part], &EncodeOptions::default()).unwrap()
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches[0].num_columns(), 2);
        assert_eq!(batches[0].column(1).null_count(), 2);
    }

    /// Mostly distinct columns are written plain, repetitive ones with a dictionary.
    #[test]
    fn dictionaries_only_where_values_repeat() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("unique", DataType::Int64, true),
            Field::new("repeated", DataType::Utf8, true),
        ]));
        let rows = 2000;
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows)),
                Arc::new(arrow_array::StringArray::from_iter_values(
                    (0..rows).map(|i| ["a", "b", "c"][i as usize % 3]),
                )),
            ],
        )
        .unwrap();
        let dictionary = |opts: &EncodeOptions| {
            let bytes = encode(&schema, vec![batch.clone()], opts).unwrap();
            let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
                .unwrap()
                .metadata()
                .clone();
            let rg = meta.row_group(0);
            (0..2)
                .map(|c| {
                    rg.column(c)
                        .encodings()
                        .any(|e| e == parquet::basic::Encoding::RLE_DICTIONARY)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(dictionary(&EncodeOptions::default()), [false, true]);
        // Decided on the first values across batches, not on a short first batch alone.
        let split = encode(
            &schema,
            vec![batch.slice(0, 30), batch.slice(30, 1970)],
            &EncodeOptions::default(),
        )
        .unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(split))
            .unwrap()
            .metadata()
            .clone();
        let unique = meta.row_group(0).column(0);
        assert!(!unique
            .encodings()
            .any(|e| e == parquet::basic::Encoding::RLE_DICTIONARY));
        // A few hundred values, all seen within the first thousand rows, then repeated: a
        // dictionary pays, which the first thousand values alone do not show.
        let names = arrow_array::StringArray::from_iter_values(
            (0..20_000).map(|i| format!("customer name {}", i % 500)),
        );
        let batch = RecordBatch::try_from_iter([("names", Arc::new(names) as ArrayRef)]).unwrap();
        let bytes = encode(&batch.schema(), vec![batch], &EncodeOptions::default()).unwrap();
        let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
            .unwrap()
            .metadata()
            .clone();
        assert!(meta
            .row_group(0)
            .column(0)
            .encodings()
            .any(|e| e == parquet::basic::Encoding::RLE_DICTIONARY));
        let off = EncodeOptions {
            dictionary: false,
            ..EncodeOptions::default()
        };
        assert_eq!(dictionary(&off), [false, false]);
    }

    /// The decision stops early only where it cannot change: just under one distinct value in 8
    /// of the sample still pays, just over does not.
    #[test]
    fn a_dictionary_pays_up_to_one_distinct_value_in_eight_of_the_sample() {
        let pays = |distinct: i64| {
            let column: ArrayRef = Arc::new(Int64Array::from_iter_values(
                (0..40_000).map(|i| i % distinct),
            ));
            dictionary_pays([&column].into_iter())
        };
        let most = (DICTIONARY_SAMPLE / DICTIONARY_RATIO) as i64;
        assert_eq!(pays(most), Some(true));
        assert_eq!(pays(most + 1), Some(false));
        assert_eq!(pays(30_000), Some(false));
        assert_eq!(pays(3), Some(true));
    }

    /// Dictionaries from `DICTIONARY_MIN_VALUES` rows on, a page index (column and offset
    /// index) from `SMALL_FILE_ROWS` rows on (below, statistics per column chunk only).
    #[test]
    fn small_files_have_no_dictionaries_and_no_page_index() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let layout = |rows: usize| {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from_iter_values(
                    (0..rows as i64).map(|i| i % 3),
                ))],
            )
            .unwrap();
            let bytes = encode(&schema, vec![batch], &EncodeOptions::default()).unwrap();
            let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
                .unwrap()
                .metadata()
                .clone();
            let column = meta.row_group(0).column(0);
            assert!(column.statistics().is_some(), "statistics are kept");
            (
                column.dictionary_page_offset().is_some(),
                column.column_index_offset().is_some(),
                column.offset_index_offset().is_some(),
            )
        };
        assert_eq!(layout(DICTIONARY_MIN_VALUES - 1), (false, false, false));
        assert_eq!(layout(DICTIONARY_MIN_VALUES), (true, false, false));
        assert_eq!(layout(SMALL_FILE_ROWS - 1), (true, false, false));
        assert_eq!(layout(SMALL_FILE_ROWS), (true, true, true));
    }

    /// Files under `SMALL_FILE_ROWS` rows are uncompressed; larger ones use the configured codec.
    #[test]
    fn small_files_are_written_uncompressed() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        let codec_of = |rows: usize, opts: &EncodeOptions| {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int64Array::from_iter_values(0..rows as i64))],
            )
            .unwrap();
            let bytes = encode(&schema, vec![batch], opts).unwrap();
            let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes))
                .unwrap()
                .metadata()
                .clone();
            meta.row_group(0).column(0).compression()
        };
        let zstd = EncodeOptions::default();
        assert_eq!(
            codec_of(SMALL_FILE_ROWS - 1, &zstd),
            Compression::UNCOMPRESSED
        );
        assert!(matches!(
            codec_of(SMALL_FILE_ROWS, &zstd),
            Compression::ZSTD(_)
        ));
        let snappy = EncodeOptions {
            codec: Codec::Snappy,
            ..zstd
        };
        assert_eq!(codec_of(10_000, &snappy), Compression::SNAPPY);
    }
}
