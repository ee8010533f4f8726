//! The snapshot's files: change-log and snapshot Parquet read from the lake (through an anonymous
//! local file, never whole in memory), and the buckets' spill files on local disk (Arrow IPC,
//! in a temporary folder that a crash leaves as nothing any reader sees).

use std::fs::File;
use std::path::{Path as FsPath, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::key::{stable_hash, KeyColumns};
use super::merge::align;
use super::SnapshotError;
use crate::store::Location;

/// Rows per batch read from Parquet.
const BATCH_ROWS: usize = 8192;

/// Reads a Parquet object of the lake into batches aligned with `schema`, one at a time.
pub(super) async fn read_parquet(
    lake: &Location,
    rel: &str,
    schema: &SchemaRef,
    mut each: impl FnMut(RecordBatch) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let path = lake.path(rel);
    let name = lake.display(rel);
    let file = crate::source::spool(lake, &path, &name, |_| {}).await?;
    let parquet = |source| SnapshotError::Parquet {
        file: name.clone(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet)?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(parquet)?;
    for batch in reader {
        let batch = batch.map_err(|e| SnapshotError::Arrow {
            what: name.clone(),
            source: e,
        })?;
        let aligned = align(&batch, schema).map_err(|e| SnapshotError::Arrow {
            what: name.clone(),
            source: e,
        })?;
        each(aligned)?;
    }
    Ok(())
}

/// The buckets' spill files: each row written to its item's bucket, in Arrow IPC.
pub(super) struct Spill {
    dir: tempfile::TempDir,
    schema: SchemaRef,
    writers: Vec<Option<arrow_ipc::writer::FileWriter<File>>>,
    /// Bytes of Arrow data written per bucket.
    pub(super) bytes: Vec<u64>,
    /// Rows without a key value seen while spilling.
    pub(super) keyless: u64,
}

impl Spill {
    /// Spill files for `buckets` buckets (a power of two), in a new temporary folder.
    pub(super) fn new(schema: SchemaRef, buckets: usize) -> Result<Self, SnapshotError> {
        Ok(Spill {
            dir: tempfile::tempdir().map_err(SnapshotError::Spill)?,
            schema,
            writers: (0..buckets).map(|_| None).collect(),
            bytes: vec![0; buckets],
            keyless: 0,
        })
    }

    fn path(&self, bucket: usize) -> PathBuf {
        self.dir.path().join(format!("bucket-{bucket:05}.arrow"))
    }

    /// Writes each row of `batch` to its item's bucket. Rows without a key value are counted
    /// and go nowhere: they name no item.
    pub(super) fn add(
        &mut self,
        batch: &RecordBatch,
        key: &KeyColumns,
    ) -> Result<(), SnapshotError> {
        let n = self.writers.len();
        let mut per: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (row, k) in key.keys(batch).into_iter().enumerate() {
            match k {
                Some(k) => per[bucket_of(&k, n)].push(row as u32),
                None => self.keyless += 1,
            }
        }
        for (b, rows) in per.into_iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let part = take_rows(batch, &rows)?;
            self.bytes[b] += part.get_array_memory_size() as u64;
            if self.writers[b].is_none() {
                let file = File::create(self.path(b)).map_err(SnapshotError::Spill)?;
                self.writers[b] = Some(
                    arrow_ipc::writer::FileWriter::try_new(file, &self.schema)
                        .map_err(|e| arrow_err("a spill file", e))?,
                );
            }
            let w = self.writers[b].as_mut().expect("created above");
            w.write(&part).map_err(|e| arrow_err("a spill file", e))?;
        }
        Ok(())
    }

    /// Closes every spill file; then each bucket's rows can be read back.
    pub(super) fn finish(&mut self) -> Result<(), SnapshotError> {
        for w in self.writers.iter_mut().flatten() {
            w.finish().map_err(|e| arrow_err("a spill file", e))?;
        }
        Ok(())
    }

    /// A bucket's spilled rows.
    pub(super) fn read(&self, bucket: usize) -> Result<Vec<RecordBatch>, SnapshotError> {
        if self.writers[bucket].is_none() {
            return Ok(Vec::new());
        }
        read_ipc(&self.path(bucket))
    }
}

fn read_ipc(path: &FsPath) -> Result<Vec<RecordBatch>, SnapshotError> {
    let file = File::open(path).map_err(SnapshotError::Spill)?;
    arrow_ipc::reader::FileReader::try_new(file, None)
        .map_err(|e| arrow_err("a spill file", e))?
        .map(|b| b.map_err(|e| arrow_err("a spill file", e)))
        .collect()
}

fn arrow_err(what: &str, source: arrow_schema::ArrowError) -> SnapshotError {
    SnapshotError::Arrow {
        what: what.to_string(),
        source,
    }
}

/// The bucket of an item (`buckets` a power of two): the low bits of its key's stable hash, so
/// that doubling the buckets splits each one in two.
pub(super) fn bucket_of(key: &[u8], buckets: usize) -> usize {
    (stable_hash(key) as usize) & (buckets - 1)
}

fn take_rows(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch, SnapshotError> {
    let idx = arrow_array::UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &idx, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| arrow_err("a bucket's rows", e))?;
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| arrow_err("a bucket's rows", e))
}
