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
use crate::compact::{Merger, BATCH_ROWS};
use crate::config::Settings;
use crate::item::key::KeyColumns;
use crate::store::Location;

/// Rows per batch read from a staged file: every staged file of an hour is open at once.
const READ_ROWS: usize = 1024;

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
    let mut runs: Vec<Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>> =
        Vec::new();
    for (rel, _) in &staged {
        let name = out.display(rel);
        let file = crate::source::spool(out, &out.path(rel), &name, |_| {}).await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(READ_ROWS.min(BATCH_ROWS)).build())
            .map_err(|e| PipelineError::Compaction {
                folder: name.clone(),
                problem: e.to_string(),
            })?;
        runs.push(Box::new(reader));
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
