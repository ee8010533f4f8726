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
    let plan = plan(out, settings, &c.staged, &staged).await?;
    // More staged files than a merge takes at once: groups of them (spooled group by group)
    // merged into local sorted runs first.
    let mut runs: Vec<Run> = Vec::new();
    if staged.len() <= FAN_IN {
        runs = open_staged(out, &staged).await?;
    } else {
        for group in staged.chunks(FAN_IN) {
            let group = open_staged(out, group).await?;
            runs.push(merge_group(folder, &c, settings, group).await?);
        }
    }
    while runs.len() > FAN_IN {
        let mut next: Vec<Run> = Vec::new();
        let mut left = runs.into_iter();
        loop {
            let group: Vec<Run> = left.by_ref().take(FAN_IN).collect();
            if group.is_empty() {
                break;
            }
            next.push(merge_group(folder, &c, settings, group).await?);
        }
        runs = next;
    }
    let target = settings.compact.unwrap_or(usize::MAX);
    let merger = Merger::new(c.schema, runs, c.key, target, &settings.encode);
    let mut merger = merger.map_err(|e| compact_err(folder, e))?;
    let mut written = Vec::new();
    loop {
        let (m, next) = tokio::task::spawn_blocking(move || {
            let next = merger.next_file(plan.rows_per_file);
            (merger, next)
        })
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
        merger = m;
        let Some((bytes, rows)) = next.map_err(|e| compact_err(folder, e))? else {
            break;
        };
        let path = format!(
            "{folder}/{table}-compacted-{}-{:04}.parquet",
            plan.name,
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

/// How an hour is cut into compacted files: decided once, before its first file, and saved
/// (create-only) in its staging folder, so that a compaction redone after a crash names and cuts
/// its files as the first attempt did, even with other settings (a changed `compact_target`, a
/// new Parquet codec, another version).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Plan {
    /// Part of the files' names: a hash of the staged files' names and the target.
    name: String,
    /// Rows per compacted file (the last one holds the rest).
    rows_per_file: usize,
    /// The target it was computed for, and the hour's staged rows and bytes.
    target_bytes: usize,
    staged_rows: u64,
    staged_bytes: u64,
}

/// The hour's plan: the saved one, else a new one saved now.
async fn plan(
    out: &Location,
    settings: &Settings,
    staged_dir: &str,
    staged: &[(String, u64)],
) -> Result<Plan, PipelineError> {
    let path = format!("{staged_dir}/_plan.json");
    let read = |bytes: Bytes| {
        serde_json::from_slice::<Plan>(&bytes).map_err(|e| PipelineError::Compaction {
            folder: out.display(&path),
            problem: e.to_string(),
        })
    };
    if let Some(bytes) = out.get_opt(&path).await? {
        return read(bytes);
    }
    let target = settings.compact.unwrap_or(usize::MAX);
    let mut id = Vec::new();
    for (p, _) in staged {
        id.extend_from_slice(p.as_bytes());
        id.push(0);
    }
    id.extend_from_slice(&target.to_le_bytes());
    let mut rows = 0u64;
    for (rel, len) in staged {
        rows += footer_rows(out, rel, *len).await?;
    }
    let bytes: u64 = staged.iter().map(|(_, l)| l).sum();
    // Staged files are sorted and compressed as the compacted ones will be: their bytes per row
    // estimate the compacted files'.
    let rows_per_file = (target as u128 * rows as u128 / bytes.max(1) as u128)
        .clamp(1, usize::MAX as u128) as usize;
    let plan = Plan {
        name: crate::store::short_hash(&id, 8),
        rows_per_file,
        target_bytes: target,
        staged_rows: rows,
        staged_bytes: bytes,
    };
    let body = serde_json::to_vec_pretty(&plan).expect("plans serialize");
    match out
        .put_new(&path, Bytes::from(body), usize::MAX, settings.part_size, "")
        .await?
    {
        None => Ok(plan),
        // Another writer's plan landed first: it is the one.
        Some(_) => read(out.get_opt(&path).await?.unwrap_or_default()),
    }
}

/// A staged file's row count, from its footer (two range reads).
async fn footer_rows(out: &Location, rel: &str, len: u64) -> Result<u64, PipelineError> {
    let bad = |problem: String| PipelineError::Compaction {
        folder: out.display(rel),
        problem,
    };
    if len < 12 {
        return Err(bad(format!("{len} bytes is too short for Parquet")));
    }
    let tail = out.get_range(rel, len - 8..len).await?;
    let footer = u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as u64;
    if &tail[4..] != b"PAR1" || footer + 8 > len {
        return Err(bad("no Parquet footer".into()));
    }
    let meta = out.get_range(rel, len - 8 - footer..len - 8).await?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&meta)
        .map_err(|e| bad(e.to_string()))?;
    Ok(meta.file_metadata().num_rows().max(0) as u64)
}

/// Spools staged files to local disk and opens each as a run.
async fn open_staged(out: &Location, staged: &[(String, u64)]) -> Result<Vec<Run>, PipelineError> {
    let mut runs: Vec<Run> = Vec::new();
    for (rel, _) in staged {
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
    Ok(runs)
}

/// Merges a group of runs into one local run, on a blocking thread.
async fn merge_group(
    folder: &str,
    c: &Compaction,
    settings: &Settings,
    group: Vec<Run>,
) -> Result<Run, PipelineError> {
    let (schema, key, opts) = (c.schema.clone(), c.key.clone(), settings.encode);
    tokio::task::spawn_blocking(move || merge_to_local(schema, group, key, &opts))
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?
        .map_err(|problem| PipelineError::Compaction {
            folder: folder.to_string(),
            problem,
        })
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

    struct Hour {
        dir: tempfile::TempDir,
        out: Location,
        settings: Settings,
        schema: SchemaRef,
        key: KeyColumns,
    }

    /// An hour of the same 20,000 changes staged as `cuts` flushes.
    async fn staged_hour(cuts: u64) -> Hour {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::config::ConfigFile::default();
        c.output.url = Some(dir.path().display().to_string());
        c.markers.enabled = true;
        c.markers.compact = true;
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
        Hour {
            dir,
            out,
            settings,
            schema,
            key,
        }
    }

    /// Compacts the hour into files of about `target` bytes: the files and their bytes.
    async fn compact(h: &Hour, target: usize) -> (Vec<(String, u64)>, Vec<Vec<u8>>) {
        let mut settings = h.settings.clone();
        settings.compact = Some(target);
        let c = Compaction {
            staged: staged_dir(&settings, "t", 10),
            schema: h.schema.clone(),
            key: Some(h.key.clone()),
        };
        let files = compact_hour(&h.out, &settings, "t", "t/hour", c, "n")
            .await
            .unwrap();
        let bytes = files
            .iter()
            .map(|(p, _)| std::fs::read(h.dir.path().join(p)).unwrap())
            .collect();
        (files, bytes)
    }

    /// Every row's id, file by file.
    fn ids(files: &[Vec<u8>]) -> Vec<String> {
        let mut ids = Vec::new();
        for b in files {
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
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_hour_of_many_staged_files_is_merged_in_passes_to_the_same_files() {
        let (many, many_bytes) = compact(&staged_hour(40).await, 60_000).await;
        let (few, few_bytes) = compact(&staged_hour(4).await, 60_000).await;
        const { assert!(40 > 2 * FAN_IN) };
        assert!(many.len() > 1 && few.len() > 1, "{many:?} {few:?}");
        // The same rows in the same order, whether merged in passes or at once (the cut points
        // differ: they are planned from the staged files' bytes per row).
        let ids = ids(&many_bytes);
        assert_eq!(ids, self::ids(&few_bytes));
        assert_eq!(ids.len(), 20_000);
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "sorted by key");
    }

    /// A compaction redone after a crash, with another target and codec: the plan saved by the
    /// first attempt names and cuts the files, so the files that landed are kept and the rest
    /// hold exactly the other rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compaction_redone_with_other_settings_follows_the_first_plan() {
        let mut h = staged_hour(8).await;
        let (first, first_bytes) = compact(&h, 60_000).await;
        assert!(first.len() > 2, "{first:?}");
        // The crash: the last two files never landed.
        for (p, _) in &first[first.len() - 2..] {
            std::fs::remove_file(h.dir.path().join(p)).unwrap();
        }
        h.settings.encode.codec = crate::encode::Codec::Snappy;
        let (again, again_bytes) = compact(&h, 1 << 20).await;
        let names = |f: &[(String, u64)]| f.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        assert_eq!(names(&again), names(&first));
        assert!(again_bytes[..first.len() - 2] == first_bytes[..first.len() - 2]);
        assert_eq!(ids(&again_bytes), ids(&first_bytes));
    }
}
