//! The snapshot's files: change-log and snapshot Parquet read from the lake (through an anonymous
//! local file, never whole in memory), and the buckets' spill files on local disk (Arrow IPC,
//! in a temporary folder that a crash leaves as nothing any reader sees).

use std::fs::File;
use std::path::{Path as FsPath, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::merge::align;
use super::SnapshotError;
use crate::item::key::{stable_hash, KeyColumns};
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

/// The buckets' spill files: each row goes to its item's bucket. A bucket's rows are held in
/// memory until the rows held for all buckets pass a limit, then the largest buckets are written
/// out, each as an Arrow IPC file of its own (so no file stays open, however many buckets).
pub(super) struct Spill {
    dir: tempfile::TempDir,
    schema: SchemaRef,
    pending: Vec<Vec<RecordBatch>>,
    pending_bytes: Vec<u64>,
    held: u64,
    limit: u64,
    files: Vec<Vec<PathBuf>>,
    /// Bytes of Arrow data spilled per bucket.
    pub(super) bytes: Vec<u64>,
    /// Rows without a key value seen while spilling.
    pub(super) keyless: u64,
}

impl Spill {
    /// Spill files for `buckets` buckets (a power of two), in a new temporary folder, holding up
    /// to `limit` bytes of rows in memory.
    pub(super) fn new(
        schema: SchemaRef,
        buckets: usize,
        limit: u64,
    ) -> Result<Self, SnapshotError> {
        Ok(Spill {
            dir: tempfile::tempdir().map_err(SnapshotError::Spill)?,
            schema,
            pending: vec![Vec::new(); buckets],
            pending_bytes: vec![0; buckets],
            held: 0,
            limit: limit.max(1),
            files: vec![Vec::new(); buckets],
            bytes: vec![0; buckets],
            keyless: 0,
        })
    }

    /// Puts each row of `batch` in its item's bucket. Rows without a key value are counted and
    /// go nowhere: they name no item.
    pub(super) fn add(
        &mut self,
        batch: &RecordBatch,
        key: &KeyColumns,
    ) -> Result<(), SnapshotError> {
        let n = self.pending.len();
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
            let size = part.get_array_memory_size() as u64;
            self.bytes[b] += size;
            self.pending_bytes[b] += size;
            self.held += size;
            self.pending[b].push(part);
        }
        while self.held > self.limit {
            let largest = (0..n)
                .max_by_key(|&b| self.pending_bytes[b])
                .expect("buckets");
            self.write(largest)?;
        }
        Ok(())
    }

    /// Writes a bucket's held rows to a new spill file.
    fn write(&mut self, bucket: usize) -> Result<(), SnapshotError> {
        let batches = std::mem::take(&mut self.pending[bucket]);
        self.held -= std::mem::take(&mut self.pending_bytes[bucket]);
        if batches.is_empty() {
            return Ok(());
        }
        let path = self.dir.path().join(format!(
            "bucket-{bucket:05}-{:05}.arrow",
            self.files[bucket].len()
        ));
        let file = std::io::BufWriter::new(File::create(&path).map_err(SnapshotError::Spill)?);
        let mut w = arrow_ipc::writer::FileWriter::try_new(file, &self.schema)
            .map_err(|e| arrow_err("a spill file", e))?;
        let one = arrow_select::concat::concat_batches(&self.schema, &batches)
            .map_err(|e| arrow_err("a spill file", e))?;
        drop(batches);
        w.write(&one).map_err(|e| arrow_err("a spill file", e))?;
        w.finish().map_err(|e| arrow_err("a spill file", e))?;
        self.files[bucket].push(path);
        Ok(())
    }

    /// Writes every bucket's held rows; then each bucket's rows can be read back.
    pub(super) fn finish(&mut self) -> Result<(), SnapshotError> {
        for b in 0..self.pending.len() {
            self.write(b)?;
        }
        Ok(())
    }

    /// A bucket's spilled rows.
    pub(super) fn read(&self, bucket: usize) -> Result<Vec<RecordBatch>, SnapshotError> {
        let mut out = Vec::new();
        for path in &self.files[bucket] {
            out.extend(read_ipc(path)?);
        }
        Ok(out)
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
