//! Snapshot stage: each lake table as it is at the end of an hour, the latest image of every
//! item, as plain Parquet with the change log's columns (docs/DESIGN.md, "Snapshots").
//!
//! Incremental and bounded in memory: a snapshot is the previous one merged with the change-log
//! files it has not taken in yet. Items are bucketed by a stable hash of their key; the new rows
//! are spilled to local disk per bucket (`files`), then each bucket (its previous rows, its
//! tombstones and its new rows) is merged on its own (`merge`, by the order of `order`), several
//! at once, and written sorted by key. The bucket count grows with the table, so a bucket always
//! fits the memory budget.
//!
//! Published atomically: a snapshot's files go to a folder of their own
//! (`{table}_current/{id}/`, the Athena location of `{table}_current`), its manifest and
//! tombstones under `{state}/snapshots/{table}/{id}/`, and only then the pointer
//! `{state}/snapshots/{table}/CURRENT.json` names it. A crash before the pointer leaves the
//! previous snapshot current; the next run computes the same snapshot id from the same inputs
//! and writes the same objects again.

mod files;
mod merge;

use std::sync::Arc;

use arrow_array::RecordBatch;
use std::collections::BTreeSet;

use arrow_schema::SchemaRef;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Settings;
use crate::item::key;
use crate::schema::TableSchema;
use crate::store::{Location, StoreError};

mod sql;
mod state;
pub use sql::{latest_select, Dialect};
pub use state::{current, Manifest, Pointer};
use state::{default_as_of, hour_text, prune, put, state_dir};

/// The key columns of a table (each key attribute's column and its companion, if any), for SQL
/// that groups the change log by item.
pub fn key_columns(schema: &TableSchema) -> Result<Vec<(String, Option<String>)>, String> {
    key::KeyColumns::of(schema, None).map(|k| k.parts().to_vec())
}

/// What a snapshot of the lake's tables needs besides the settings.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Only this table (lake or DynamoDB name); all tables when `None`.
    pub table: Option<String>,
    /// The hour (since the epoch) the snapshot is as of the end of; `None`: the latest complete
    /// hour (the latest hour marker, else the hour before the current one).
    pub as_of: Option<i64>,
    /// Key attributes for a table whose key the lake does not know (with `table`).
    pub key: Vec<String>,
    /// How far a full export's items are moved back in time against changes
    /// ([`crate::item::order::DEFAULT_MARGIN_US`]).
    pub margin_us: i64,
    /// Memory for the buckets merged at once.
    pub memory_budget: usize,
    /// Buckets merged at once.
    pub threads: usize,
    /// Now, in hours since the epoch (for the default `as_of`).
    pub now_hour: i64,
}

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the lake failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An input could not be fetched.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// A Parquet file of the lake could not be read.
    #[error("reading {file}: {source}")]
    Parquet {
        /// The file's URL.
        file: String,
        /// The Parquet reader's error.
        source: parquet::errors::ParquetError,
    },
    /// Arrow data could not be read, aligned or assembled.
    #[error("{what}: {source}")]
    Arrow {
        /// What was being done.
        what: String,
        /// Arrow's error.
        source: arrow_schema::ArrowError,
    },
    /// The local spill files could not be written or read.
    #[error("spill files (TMPDIR): {0}")]
    Spill(std::io::Error),
    /// The table's key is not known, or a key attribute has no column.
    #[error("{0}")]
    Key(String),
    /// A snapshot's own state (pointer, manifest) is not what this version writes.
    #[error("{url}: {problem}")]
    State {
        /// The object's URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// What was asked for cannot be done (an as-of hour before the current snapshot's, no such
    /// table).
    #[error("{0}")]
    Invalid(String),
}

impl SnapshotError {
    /// A wrong request (exit code 3), not a failure.
    pub fn is_configuration(&self) -> bool {
        matches!(self, SnapshotError::Key(_) | SnapshotError::Invalid(_))
            || matches!(self, SnapshotError::Store(e) if e.is_configuration())
    }
}

/// What a snapshot of one table did.
#[derive(Debug, Clone, Serialize)]
pub struct TableSnapshot {
    /// The lake table.
    pub table: String,
    /// The current snapshot's id.
    pub snapshot: String,
    /// The hour it is exact as of the end of (RFC 3339).
    pub as_of: String,
    /// Items in it.
    pub rows: u64,
    /// Deleted items it remembers (tombstones).
    pub deleted: u64,
    /// Change-log files merged in by this run.
    pub new_files: usize,
    /// Change-log rows read by this run.
    pub rows_read: u64,
    /// Rows without a key value (all runs).
    pub keyless: u64,
    /// Buckets.
    pub buckets: usize,
    /// False when nothing new was there to merge (the pointer's hour moved, nothing else).
    pub written: bool,
    /// The data folder's URL.
    pub location: String,
    /// The Redshift COPY manifest's URL.
    pub copy_manifest: String,
}

/// Arrow bytes per byte of zstd Parquet, for the bucket plan (a change log compresses about 4 to
/// 8 to 1; the larger guess makes more, smaller buckets).
const EXPANSION: u64 = 8;
/// The most buckets (files per snapshot).
const MAX_BUCKETS: usize = 4096;

/// The bucket count for `bytes` of Arrow data: a power of two, at least `at_least`, so that a
/// bucket's inputs and outputs, for `threads` buckets at once, fit `budget`.
fn plan_buckets(bytes: u64, budget: usize, threads: usize, at_least: usize) -> usize {
    let per_bucket = (budget as u64 / (threads.max(1) as u64 * 3)).max(1);
    let want = bytes.div_ceil(per_bucket).max(1) as usize;
    want.next_power_of_two().clamp(at_least.max(1), MAX_BUCKETS)
}

/// Snapshots every table of the lake (or `opts.table`).
pub async fn run(
    settings: &Settings,
    tables: Vec<TableSchema>,
    opts: &SnapshotOptions,
) -> Result<Vec<TableSnapshot>, SnapshotError> {
    let lake = crate::store::open(&settings.output, &settings.s3)?;
    run_in(&lake, settings, tables, opts).await
}

/// [`run`] on a lake opened by the caller.
pub async fn run_in(
    lake: &Location,
    settings: &Settings,
    tables: Vec<TableSchema>,
    opts: &SnapshotOptions,
) -> Result<Vec<TableSnapshot>, SnapshotError> {
    if !settings.template.fixes_hour() {
        return Err(SnapshotError::Invalid(format!(
            "snapshots are as of the end of an hour, and the partition template `{}` has folders that do not name one hour: use an hourly layout (hourly, hive, hive_dt, or a template with {{YYYY}}, {{MM}}, {{DD}} and {{HH}})",
            settings.template.as_str()
        )));
    }
    let names: BTreeSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    let chosen: Vec<TableSchema> = tables
        .into_iter()
        .filter(|t| {
            opts.table
                .as_deref()
                .is_none_or(|n| n == t.name || n == t.table)
        })
        .collect();
    if chosen.is_empty() {
        return Err(SnapshotError::Invalid(match &opts.table {
            Some(t) => format!("the lake at {} has no table {t}", settings.output),
            None => format!("the lake at {} has no tables yet", settings.output),
        }));
    }
    let mut out = Vec::new();
    for schema in chosen {
        // A table whose key is not known yet is skipped when all tables are snapshotted (the
        // others go on); asked for by name, it is an error.
        if opts.table.is_none() && key::KeyColumns::of(&schema, None).is_err() {
            tracing::warn!(
                "table {}: skipped: its key attributes are not known yet (snapshot it with --table {} --key ATTR[,ATTR])",
                schema.name,
                schema.name
            );
            continue;
        }
        out.push(table(lake, settings, &names, schema, opts).await?);
    }
    Ok(out)
}

/// The parts of one table's run that every step needs.
struct Plan {
    schema: SchemaRef,
    key: key::KeyColumns,
    name: String,
    id: String,
}

async fn table(
    lake: &Location,
    settings: &Settings,
    tables: &BTreeSet<String>,
    mut schema: TableSchema,
    opts: &SnapshotOptions,
) -> Result<TableSnapshot, SnapshotError> {
    let name = schema.name.clone();
    if tables.contains(&format!("{name}_current")) {
        return Err(SnapshotError::Invalid(format!(
            "table {name}: the lake has a table named {name}_current, whose folder is where {name}'s snapshots would go"
        )));
    }
    // `--key` is for the one table asked for.
    let key_override =
        (!opts.key.is_empty() && opts.table.is_some()).then_some(opts.key.as_slice());
    let key = key::KeyColumns::of(&schema, key_override).map_err(SnapshotError::Key)?;
    let arrow = schema.arrow_schema();
    let dir = state_dir(settings, &name);
    let current_snapshot = current(lake, settings, &name).await?;
    let as_of = match opts.as_of {
        Some(h) => h,
        None => default_as_of(lake, settings, &name, opts.now_hour).await?,
    };
    if let Some((p, m)) = &current_snapshot {
        let current_hour = p.as_of_hour.max(m.as_of_hour);
        if current_hour > as_of {
            return Err(SnapshotError::Invalid(format!(
                "table {name}: the current snapshot is as of {}, later than {}: snapshots only move forward",
                hour_text(current_hour),
                hour_text(as_of)
            )));
        }
    }
    // A snapshot made with another key or margin is not merged with: its winners would not be
    // this order's. The table is snapshotted from scratch.
    let previous = current_snapshot.filter(|(_, m)| {
        let same = m.key == key.parts() && m.margin_us == opts.margin_us;
        if !same {
            tracing::info!(
                "table {name}: the current snapshot was made with another key or handover margin: making one from scratch"
            );
        }
        same
    });
    // The change-log files of the hours up to `as_of` not taken in yet.
    let listed = lake.list(&format!("{name}/")).await?;
    let mut new_files: Vec<(String, u64)> = listed
        .into_iter()
        .map(|(p, size)| (lake.relative(&p), size))
        .filter(|(rel, _)| rel.ends_with(".parquet"))
        .filter(|(rel, _)| {
            // Only files in the table's hour folders (not those of another table whose folder
            // starts alike), of the hours up to `as_of`.
            let folder = rel.rsplit_once('/').map_or("", |(d, _)| d);
            settings
                .template
                .span(&name, folder)
                .is_some_and(|(_, end)| end <= as_of + 1)
        })
        .filter(|(rel, _)| {
            previous
                .as_ref()
                .is_none_or(|(_, m)| !m.included.contains(rel))
        })
        .collect();
    new_files.sort();
    let data_folder = |id: &str| format!("{name}_current/{id}");
    if let Some((pointer, m)) = previous.as_ref().filter(|_| new_files.is_empty()) {
        // Nothing new: the current snapshot is exact as of the later hour too.
        let moved = Pointer {
            as_of: hour_text(as_of),
            as_of_hour: as_of,
            ..pointer.clone()
        };
        put(
            lake,
            settings,
            &format!("{dir}/CURRENT.json"),
            serde_json::to_vec_pretty(&moved).expect("serializes"),
        )
        .await?;
        // Older snapshots a crashed run left behind after its pointer are deleted now.
        let keep: Vec<&str> = [Some(m.id.as_str()), m.previous.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        prune(lake, settings, &name, &keep).await?;
        return Ok(summary(lake, &name, m, &moved, 0, 0, false));
    }
    let prev_manifest = previous.as_ref().map(|(_, m)| m);
    let new_bytes: u64 = new_files.iter().map(|(_, s)| s * EXPANSION).sum();
    let buckets = plan_buckets(
        prev_manifest.map_or(0, |m| m.arrow_bytes) + new_bytes,
        opts.memory_budget,
        opts.threads,
        prev_manifest.map_or(1, |m| m.buckets),
    );
    let id = {
        let mut h = Sha256::new();
        h.update(prev_manifest.map_or("", |m| m.id.as_str()));
        h.update(buckets.to_le_bytes());
        for (f, size) in &new_files {
            h.update(f.as_bytes());
            h.update(size.to_le_bytes());
        }
        let hex: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "{}-{hex}",
            chrono::DateTime::from_timestamp(as_of * 3600, 0)
                .map_or_else(|| as_of.to_string(), |t| t.format("%Y%m%dT%H").to_string())
        )
    };
    let plan = Plan {
        schema: arrow,
        key,
        name: name.clone(),
        id: id.clone(),
    };
    tracing::info!(
        "table {name}: snapshot {id} as of {}: {} new change-log files, {buckets} buckets",
        hour_text(as_of),
        new_files.len()
    );
    // Spill: the new rows, and the previous snapshot's when its buckets are split.
    let mut spill = files::Spill::new(plan.schema.clone(), buckets, opts.memory_budget as u64 / 2)?;
    let mut rows_read = 0u64;
    for (rel, _) in &new_files {
        files::read_parquet(lake, rel, &plan.schema, |b| {
            rows_read += b.num_rows() as u64;
            spill.add(&b, &plan.key)
        })
        .await?;
    }
    let resplit = prev_manifest.filter(|m| m.buckets != buckets);
    if let Some(m) = resplit {
        for (_, rel, _, _) in m.data.iter().chain(&m.tombstones) {
            files::read_parquet(lake, rel, &plan.schema, |b| spill.add(&b, &plan.key)).await?;
        }
    }
    spill.finish()?;
    let same_buckets = prev_manifest.filter(|m| m.buckets == buckets);
    let mut manifest = Manifest {
        table: name.clone(),
        id: id.clone(),
        as_of_hour: as_of,
        previous: prev_manifest.map(|m| m.id.clone()),
        key: plan.key.parts().to_vec(),
        margin_us: opts.margin_us,
        buckets,
        keyless: prev_manifest.map_or(0, |m| m.keyless) + spill.keyless,
        included: prev_manifest
            .map(|m| m.included.clone())
            .unwrap_or_default(),
        ..Manifest::default()
    };
    manifest
        .included
        .extend(new_files.iter().map(|(f, _)| f.clone()));
    let spill = Arc::new(spill);
    let plan = Arc::new(plan);
    // Buckets merged at once: up to one per core, as many as their inputs fit a third of the
    // budget (a bucket larger than that is merged alone).
    let estimate = |b: usize| {
        spill.bytes[b]
            + same_buckets.map_or(0, |m| {
                m.data
                    .iter()
                    .chain(&m.tombstones)
                    .filter(|e| e.0 == b)
                    .map(|e| e.3 * EXPANSION)
                    .sum()
            })
    };
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let (mut wave, mut held) = (Vec::new(), 0u64);
    for b in 0..buckets {
        let e = estimate(b);
        let full = wave.len() >= opts.threads.max(1) || held + e > opts.memory_budget as u64 / 3;
        if !wave.is_empty() && full {
            waves.push(std::mem::take(&mut wave));
            held = 0;
        }
        wave.push(b);
        held += e;
    }
    waves.push(wave);
    for wave in &waves {
        let mut merges = Vec::new();
        for &b in wave {
            // The previous snapshot's rows of this bucket (same buckets: the same items).
            let mut previous_rows = Vec::new();
            if let Some(m) = same_buckets {
                for (_, rel, _, _) in m.data.iter().chain(&m.tombstones).filter(|e| e.0 == b) {
                    files::read_parquet(lake, rel, &plan.schema, |batch| {
                        previous_rows.push(batch);
                        Ok(())
                    })
                    .await?;
                }
            }
            let (spill, plan) = (spill.clone(), plan.clone());
            let margin = opts.margin_us;
            let encode = settings.encode;
            merges.push(tokio::task::spawn_blocking(move || {
                merge_bucket(&plan, &spill, b, previous_rows, margin, &encode)
            }));
        }
        for m in merges {
            let out = m
                .await
                .map_err(|e| SnapshotError::Invalid(format!("a merge stopped: {e}")))??;
            if let Some((bytes, rows, arrow_bytes)) = out.live {
                let rel = format!("{}/part-{:05}.parquet", data_folder(&id), out.bucket);
                let len = bytes.len() as u64;
                put(lake, settings, &rel, bytes).await?;
                manifest.data.push((out.bucket, rel, rows, len));
                manifest.rows += rows;
                manifest.arrow_bytes += arrow_bytes;
            }
            if let Some((bytes, rows, arrow_bytes)) = out.tombstones {
                let rel = format!("{dir}/{id}/tombstones/part-{:05}.parquet", out.bucket);
                let len = bytes.len() as u64;
                put(lake, settings, &rel, bytes).await?;
                manifest.tombstones.push((out.bucket, rel, rows, len));
                manifest.deleted += rows;
                manifest.arrow_bytes += arrow_bytes;
            }
            manifest.keyless += out.keyless;
        }
    }
    // The COPY manifest, the snapshot's manifest, then the pointer: the snapshot is current.
    let urls: Vec<(String, u64)> = manifest
        .data
        .iter()
        .map(|(_, rel, _, len)| (lake.display(rel), *len))
        .collect();
    let copy_manifest = format!("{dir}/{id}/copy-manifest.json");
    put(
        lake,
        settings,
        &copy_manifest,
        crate::manifest::redshift(&urls),
    )
    .await?;
    let manifest_rel = format!("{dir}/{id}/snapshot.json");
    put(
        lake,
        settings,
        &manifest_rel,
        serde_json::to_vec_pretty(&manifest).expect("serializes"),
    )
    .await?;
    crate::failpoint::hit("before-snapshot-pointer");
    let pointer = Pointer {
        snapshot: id.clone(),
        as_of: hour_text(as_of),
        as_of_hour: as_of,
        data: data_folder(&id),
        manifest: manifest_rel,
        copy_manifest,
    };
    put(
        lake,
        settings,
        &format!("{dir}/CURRENT.json"),
        serde_json::to_vec_pretty(&pointer).expect("serializes"),
    )
    .await?;
    let keep: Vec<&str> = [Some(id.as_str()), manifest.previous.as_deref()]
        .into_iter()
        .flatten()
        .collect();
    let pruned = prune(lake, settings, &name, &keep).await?;
    if pruned > 0 {
        tracing::info!(
            "table {name}: deleted {pruned} objects of snapshots older than the previous one"
        );
    }
    Ok(summary(
        lake,
        &name,
        &manifest,
        &pointer,
        new_files.len(),
        rows_read,
        true,
    ))
}

fn summary(
    lake: &Location,
    name: &str,
    m: &Manifest,
    p: &Pointer,
    new_files: usize,
    rows_read: u64,
    written: bool,
) -> TableSnapshot {
    TableSnapshot {
        table: name.to_string(),
        snapshot: p.snapshot.clone(),
        as_of: p.as_of.clone(),
        rows: m.rows,
        deleted: m.deleted,
        new_files,
        rows_read,
        keyless: m.keyless,
        buckets: m.buckets,
        written,
        location: format!("{}/", lake.display(&p.data)),
        copy_manifest: lake.display(&p.copy_manifest),
    }
}

/// One bucket merged: its live items and its tombstones as Parquet (bytes, rows, Arrow bytes).
struct BucketOut {
    bucket: usize,
    live: Option<(Vec<u8>, u64, u64)>,
    tombstones: Option<(Vec<u8>, u64, u64)>,
    keyless: u64,
}

fn merge_bucket(
    plan: &Plan,
    spill: &files::Spill,
    bucket: usize,
    mut inputs: Vec<RecordBatch>,
    margin_us: i64,
    encode: &crate::encode::EncodeOptions,
) -> Result<BucketOut, SnapshotError> {
    inputs.extend(spill.read(bucket)?);
    let merged = merge::merge(&inputs, &plan.schema, &plan.key, margin_us).map_err(|e| {
        SnapshotError::Arrow {
            what: format!(
                "table {}: merging bucket {bucket} of snapshot {}",
                plan.name, plan.id
            ),
            source: e,
        }
    })?;
    drop(inputs);
    let parquet = |b: Option<RecordBatch>| -> Result<Option<(Vec<u8>, u64, u64)>, SnapshotError> {
        let Some(b) = b else { return Ok(None) };
        let (rows, arrow_bytes) = (b.num_rows() as u64, b.get_array_memory_size() as u64);
        let bytes = crate::encode::encode(&plan.schema, vec![b], encode).map_err(|e| {
            SnapshotError::Parquet {
                file: format!("bucket {bucket} of snapshot {}", plan.id),
                source: e,
            }
        })?;
        Ok(Some((bytes, rows, arrow_bytes)))
    };
    Ok(BucketOut {
        bucket,
        live: parquet(merged.live)?,
        tombstones: parquet(merged.tombstones)?,
        keyless: merged.keyless,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_with_the_data_and_never_shrink() {
        let mib = 1 << 20;
        assert_eq!(plan_buckets(0, 64 * mib, 2, 1), 1);
        // 64 MiB for 2 merges at once, a third of each for the inputs: ~10.7 MiB a bucket.
        assert_eq!(plan_buckets(100 * mib as u64, 64 * mib, 2, 1), 16);
        assert_eq!(
            plan_buckets(1, 64 * mib, 2, 8),
            8,
            "never fewer than before"
        );
        assert_eq!(plan_buckets(u64::MAX / 2, 64 * mib, 2, 1), MAX_BUCKETS);
    }
}
