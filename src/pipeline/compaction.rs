//! Compaction of closed hours by a stream run (`[markers] compact`): where an hour's files wait
//! until the hour is complete (its staging folder, outside every table folder), and the
//! compaction itself: the staged files (each sorted by `compact::sort` when it was encoded)
//! merged into files of the target size in the hour's folder, then the staged files deleted
//! once the checkpoint records the hour as complete (docs/DESIGN.md, "Compaction").

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::PipelineError;
use crate::compact::Merger;
use crate::config::Settings;
use crate::item::key::KeyColumns;
use crate::store::Location;

/// Rows per batch read from a run: every run of a merge is open at once.
const READ_ROWS: usize = 1024;

/// Most runs merged at once. Each open run holds a row group of its staged file (8,192 rows,
/// compressed) and a batch of `READ_ROWS` rows: memory stays small however many files an hour
/// has (a busy stream flushing at `max_bytes` makes hundreds).
const FAN_IN: usize = 16;

/// A sorted run: a staged file or a local merge of some, read a batch at a time.
type Run = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// The staging folder of `table`'s `hour` (hours since the epoch).
pub(super) fn staged_dir(settings: &Settings, table: &str, hour: i64) -> String {
    format!("{}/compacting/{table}/{hour}", settings.state_prefix)
}

/// Whether an object name is a staged file (it goes in no COPY manifest, and is sorted).
pub(super) fn is_staged(settings: &Settings, object: &str) -> bool {
    settings.compact.is_some()
        && object.starts_with(&format!("{}/compacting/", settings.state_prefix))
}

/// What the writer needs to compact an hour.
pub(super) struct Compaction {
    /// The staging folder.
    pub(super) staged: String,
    /// The table's columns (every staged file holds a prefix of them).
    pub(super) schema: SchemaRef,
    /// The table's key columns (`None`: not known, rows sorted by change only).
    pub(super) key: Option<KeyColumns>,
}

/// Merges the hour's staged files into compacted files in `folder`, each created only if
/// absent: the names and contents depend only on the staged files, so a compaction redone after
/// a crash keeps what the first attempt wrote and adds the rest. Returns the files with their
/// lengths.
pub(super) async fn compact_hour(
    out: &Location,
    settings: &Settings,
    table: &str,
    folder: &str,
    c: Compaction,
    nonce: &str,
) -> Result<Vec<(String, u64)>, PipelineError> {
    let staged: Vec<(String, u64)> = out
        .list(&format!("{}/", c.staged))
        .await?
        .into_iter()
        .map(|(p, len)| (out.relative(&p), len))
        .filter(|(p, _)| p.ends_with(".parquet"))
        .collect();
    if staged.is_empty() {
        return Ok(Vec::new());
    }
    // Named by the staged files (deterministic names of the hour's batches) and the target.
    let mut id = Vec::new();
    for (p, _) in &staged {
        id.extend_from_slice(p.as_bytes());
        id.push(0);
    }
    id.extend_from_slice(&settings.compact.unwrap_or_default().to_le_bytes());
    let hash = crate::store::short_hash(&id, 8);
    let mut runs: Vec<Run> = Vec::new();
    for (rel, _) in &staged {
        let name = out.display(rel);
        let file = crate::source::spool(out, &out.path(rel), &name, |_| {}).await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(READ_ROWS).build())
            .map_err(|e| PipelineError::Compaction {
                folder: name.clone(),
                problem: e.to_string(),
            })?;
        runs.push(Box::new(reader));
    }
    // More runs than a merge takes at once: groups of them merged into local sorted runs first.
    while runs.len() > FAN_IN {
        let mut next: Vec<Run> = Vec::new();
        let mut left = runs.into_iter();
        loop {
            let group: Vec<Run> = left.by_ref().take(FAN_IN).collect();
            if group.is_empty() {
                break;
            }
            let (schema, key, opts) = (c.schema.clone(), c.key.clone(), settings.encode);
            let run =
                tokio::task::spawn_blocking(move || merge_to_local(schema, group, key, &opts))
                    .await
                    .map_err(|e| PipelineError::Internal(e.to_string()))?
                    .map_err(|problem| PipelineError::Compaction {
                        folder: folder.to_string(),
                        problem,
                    })?;
            next.push(run);
        }
        runs = next;
    }
    let target = settings.compact.unwrap_or(usize::MAX);
    let merger = Merger::new(c.schema, runs, c.key, target, &settings.encode);
    let mut merger = merger.map_err(|e| compact_err(folder, e))?;
    let mut written = Vec::new();
    loop {
        let (m, next) = tokio::task::spawn_blocking(move || {
            let next = merger.next_file();
            (merger, next)
        })
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
        merger = m;
        let Some((bytes, rows)) = next.map_err(|e| compact_err(folder, e))? else {
            break;
        };
        let path = format!(
            "{folder}/{table}-compacted-{hash}-{:04}.parquet",
            written.len()
        );
        let mut len = bytes.len() as u64;
        let staging = super::writer::staging_name(&settings.state_prefix, &path, nonce);
        let (threshold, part) = (settings.multipart_threshold, settings.part_size);
        if let Some(existing) = out
            .put_new(&path, Bytes::from(bytes), threshold, part, &staging)
            .await?
        {
            tracing::info!("{} was written before a restart; kept", out.display(&path));
            len = existing;
        }
        crate::failpoint::hit("mid-compaction");
        tracing::info!(rows, bytes = len, "compacted {}", out.display(&path));
        written.push((path, len));
    }
    let bytes: u64 = staged.iter().map(|(_, l)| l).sum();
    tracing::info!(
        "table {table}: compacted {} staged file(s), {bytes} bytes, into {} file(s) in {}",
        staged.len(),
        written.len(),
        out.display(folder)
    );
    Ok(written)
}

/// Merges sorted runs into one sorted run in an anonymous local Arrow IPC file (a crash leaves
/// nothing anyone reads), read back a batch at a time.
fn merge_to_local(
    schema: SchemaRef,
    group: Vec<Run>,
    key: Option<KeyColumns>,
    opts: &crate::encode::EncodeOptions,
) -> Result<Run, String> {
    use std::io::{Seek as _, SeekFrom};
    let mut merger =
        Merger::new(schema.clone(), group, key, usize::MAX, opts).map_err(|e| e.to_string())?;
    let file = tempfile::tempfile().map_err(|e| e.to_string())?;
    let mut w = arrow_ipc::writer::FileWriter::try_new(file, &schema).map_err(|e| e.to_string())?;
    while let Some(batch) = merger.next_batch().map_err(|e| e.to_string())? {
        for at in (0..batch.num_rows()).step_by(READ_ROWS) {
            let rows = READ_ROWS.min(batch.num_rows() - at);
            w.write(&batch.slice(at, rows)).map_err(|e| e.to_string())?;
        }
    }
    w.finish().map_err(|e| e.to_string())?;
    let mut file = w.into_inner().map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let reader = arrow_ipc::reader::FileReader::try_new(file, None).map_err(|e| e.to_string())?;
    Ok(Box::new(reader))
}

fn compact_err(folder: &str, e: crate::compact::CompactError) -> PipelineError {
    PipelineError::Compaction {
        folder: folder.to_string(),
        problem: e.to_string(),
    }
}

/// Deletes the staged files of `hour` (after the checkpoint recorded it as complete).
pub(super) async fn delete_staged(out: &Location, staged: &str) -> Result<(), PipelineError> {
    for (p, _) in out.list(&format!("{staged}/")).await? {
        out.delete(&out.relative(&p)).await?;
    }
    Ok(())
}

/// At the start of a stream run: deletes the staging folders of hours the checkpoint records as
/// complete (a run that stopped between an hour's commit and its cleanup leaves them), and
/// returns the hours still staged, per table.
pub(super) async fn sweep(
    out: &Location,
    settings: &Settings,
    done: impl Fn(&str, i64) -> bool,
) -> Result<BTreeMap<String, Vec<i64>>, PipelineError> {
    let root = format!("{}/compacting/", settings.state_prefix);
    let mut left: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut deleted = 0;
    for (p, _) in out.list(&root).await? {
        let rel = out.relative(&p);
        let mut parts = rel[root.len().min(rel.len())..].split('/');
        let (Some(table), Some(Ok(hour))) = (parts.next(), parts.next().map(str::parse::<i64>))
        else {
            continue;
        };
        if done(table, hour) {
            out.delete(&rel).await?;
            deleted += 1;
        } else {
            let hours = left.entry(table.to_string()).or_default();
            if hours.last() != Some(&hour) {
                hours.push(hour);
            }
        }
    }
    if deleted > 0 {
        tracing::info!("deleted {deleted} staged file(s) of hours already compacted");
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{ColumnType, Image, TableSchema};
    use arrow_array::cast::AsArray;
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    /// `rows` changes of 500 items in one shard, as a table's full column list.
    fn table_rows(schema: &SchemaRef, rows: std::ops::Range<u64>) -> RecordBatch {
        let n = (rows.end - rows.start) as usize;
        let cols: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "cdc_shard_id" => Arc::new(StringArray::from(vec!["shardId-000000000001"; n])),
                    "cdc_sequence_number" => Arc::new(StringArray::from_iter_values(
                        rows.clone().map(|i| format!("{i:030}")),
                    )),
                    "cdc_event_time_us" => Arc::new(Int64Array::from_iter_values(
                        rows.clone().map(|i| i as i64 * 1000),
                    )),
                    "id" => Arc::new(StringArray::from_iter_values(
                        rows.clone().map(|i| format!("item{:03}", i * 7 % 500)),
                    )),
                    _ => arrow_array::new_null_array(f.data_type(), n),
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), cols).unwrap()
    }

    /// Stages `cuts` flushes of the same 20,000 changes and compacts the hour: the files.
    async fn compacted(cuts: u64) -> (Vec<(String, u64)>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::config::ConfigFile::default();
        c.output.url = Some(dir.path().display().to_string());
        c.markers.enabled = true;
        c.markers.compact = true;
        c.markers.compact_target = "1MiB".into();
        let settings = c.validate().unwrap();
        let out = crate::store::open(&settings.output, &settings.s3).unwrap();
        let mut t = TableSchema::new("T", None);
        t.add_attr_column(Image::New, &["Id"], ColumnType::String, 100)
            .unwrap();
        t.learn_keys(&["Id"]);
        let key = KeyColumns::of(&t, None).unwrap();
        let schema = t.arrow_schema();
        let staged = staged_dir(&settings, "t", 10);
        let per = 20_000 / cuts;
        for i in 0..cuts {
            let rows = table_rows(&schema, i * per..(i + 1) * per);
            let bytes =
                crate::compact::encode_sorted(&schema, vec![rows], Some(&key), &settings.encode)
                    .unwrap();
            out.put(
                &format!("{staged}/t-{i:04}.parquet"),
                Bytes::from(bytes),
                usize::MAX,
                5 << 20,
            )
            .await
            .unwrap();
        }
        let c = Compaction {
            staged,
            schema,
            key: Some(key),
        };
        let files = compact_hour(&out, &settings, "t", "t/hour", c, "n")
            .await
            .unwrap();
        let bytes = files
            .iter()
            .map(|(p, _)| std::fs::read(dir.path().join(p)).unwrap())
            .collect();
        (files, bytes)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_hour_of_many_staged_files_is_merged_in_passes_to_the_same_files() {
        let (many, many_bytes) = compacted(40).await;
        let (few, few_bytes) = compacted(4).await;
        const { assert!(40 > 2 * FAN_IN) };
        // Named by the staged files, so the names differ; the contents do not.
        assert_eq!(many.len(), few.len());
        assert!(many_bytes == few_bytes, "the same rows make the same files");
        let mut ids = Vec::new();
        for b in &many_bytes {
            for batch in ParquetRecordBatchReaderBuilder::try_new(Bytes::from(b.clone()))
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let id = batch.column_by_name("id").unwrap().as_string::<i32>();
                ids.extend((0..batch.num_rows()).map(|i| id.value(i).to_string()));
            }
        }
        assert_eq!(ids.len(), 20_000);
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "sorted by key");
    }
}
