//! Encode stage: record batches to Parquet bytes. Synchronous and pure CPU work: callers run it
//! off the async executor.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_array::{new_null_array, ArrayRef};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

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

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            codec: Codec::Zstd(3),
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
        self.properties_for(usize::MAX)
    }

    /// The writer properties for a file of `rows` rows: a file of fewer than
    /// [`SMALL_FILE_ROWS`] rows is written uncompressed.
    pub fn properties_for(&self, rows: usize) -> WriterProperties {
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
        WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_max_row_group_bytes(Some(self.row_group_bytes))
            .set_data_page_size_limit(self.data_page_bytes)
            .set_dictionary_enabled(self.dictionary)
            .set_statistics_enabled(if self.statistics {
                EnabledStatistics::Page
            } else {
                EnabledStatistics::None
            })
            .set_created_by(format!("ddb-lake {}", env!("CARGO_PKG_VERSION")))
            .build()
    }
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
    let props = opts.properties_for(rows);
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
