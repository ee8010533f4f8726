//! A snapshot's state in the lake: its manifest (`snapshot.json`: what it holds and what it was
//! made from) and the pointer naming a table's current snapshot (`CURRENT.json`), read and
//! written; and the default hour a snapshot is as of.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::SnapshotError;
use crate::config::Settings;

use crate::store::Location;

/// The pointer to a table's current snapshot (`CURRENT.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pointer {
    /// The current snapshot's id.
    pub snapshot: String,
    /// The hour it is exact as of the end of (RFC 3339).
    pub as_of: String,
    /// The same hour, in hours since the epoch.
    pub as_of_hour: i64,
    /// Its data folder, relative to the lake (the Athena location of `{table}_current`).
    pub data: String,
    /// Its manifest, relative to the lake.
    pub manifest: String,
    /// Its Redshift COPY manifest, relative to the lake.
    pub copy_manifest: String,
}

/// A snapshot's manifest (`snapshot.json`): what it holds and what it was made from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// The lake table.
    pub table: String,
    /// This snapshot's id.
    pub id: String,
    /// The hour it is exact as of the end of, in hours since the epoch.
    pub as_of_hour: i64,
    /// The snapshot it was merged from.
    pub previous: Option<String>,
    /// The key columns it was made with (each key attribute's column and its companion).
    pub key: Vec<(String, Option<String>)>,
    /// The handover margin it was made with, in microseconds.
    pub margin_us: i64,
    /// Buckets (a power of two): an item's bucket is the low bits of its key's hash.
    pub buckets: usize,
    /// Live items' files, relative to the lake, per bucket that has any: (bucket, file, rows, bytes).
    pub data: Vec<(usize, String, u64, u64)>,
    /// Deleted items' latest rows (tombstones), per bucket that has any.
    pub tombstones: Vec<(usize, String, u64, u64)>,
    /// Items that exist.
    pub rows: u64,
    /// Items whose latest change is a delete.
    pub deleted: u64,
    /// Arrow bytes of all the snapshot's rows, for the next bucket plan.
    pub arrow_bytes: u64,
    /// Rows without a key value in the change-log files taken in (they name no item).
    pub keyless: u64,
    /// Every change-log file taken in, relative to the lake (with those of the snapshots before).
    pub included: BTreeSet<String>,
}

/// An hour (since the epoch) as RFC 3339 text.
pub(super) fn hour_text(hour: i64) -> String {
    chrono::DateTime::from_timestamp(hour * 3600, 0).map_or_else(
        || hour.to_string(),
        |t| t.format("%Y-%m-%dT%H:00:00Z").to_string(),
    )
}

/// The snapshot state's folder of a table.
pub(super) fn state_dir(settings: &Settings, table: &str) -> String {
    format!("{}/snapshots/{table}", settings.state_prefix)
}

pub(super) async fn read_json<T: for<'de> Deserialize<'de>>(
    lake: &Location,
    rel: &str,
) -> Result<Option<T>, SnapshotError> {
    let Some(bytes) = lake.get_opt(rel).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| SnapshotError::State {
            url: lake.display(rel),
            problem: e.to_string(),
        })
}

pub(super) async fn put(
    lake: &Location,
    settings: &Settings,
    rel: &str,
    bytes: Vec<u8>,
) -> Result<(), SnapshotError> {
    lake.put(
        rel,
        bytes.into(),
        settings.multipart_threshold,
        settings.part_size,
    )
    .await?;
    Ok(())
}

/// A table's current snapshot: its pointer and manifest, if it has one.
pub async fn current(
    lake: &Location,
    settings: &Settings,
    table: &str,
) -> Result<Option<(Pointer, Manifest)>, SnapshotError> {
    let dir = state_dir(settings, table);
    let Some(pointer) = read_json::<Pointer>(lake, &format!("{dir}/CURRENT.json")).await? else {
        return Ok(None);
    };
    let manifest = read_json::<Manifest>(lake, &pointer.manifest)
        .await?
        .ok_or_else(|| SnapshotError::State {
            url: lake.display(&pointer.manifest),
            problem: "the current snapshot's manifest is missing".into(),
        })?;
    Ok(Some((pointer, manifest)))
}

/// The latest complete hour of a table: its latest hour marker, else the hour before `now_hour`.
pub(super) async fn default_as_of(
    lake: &Location,
    settings: &Settings,
    table: &str,
    now_hour: i64,
) -> Result<i64, SnapshotError> {
    let hourly = crate::partition::Template::parse("{table}/{YYYY}/{MM}/{DD}/{HH}")
        .expect("a valid template");
    let markers = lake
        .list(&format!("{}/hours/{table}/", settings.state_prefix))
        .await?;
    let prefix = format!("{}/hours/", settings.state_prefix);
    let latest = markers
        .iter()
        .filter_map(|(p, _)| {
            let rel = lake.relative(p);
            let rest = rel.strip_prefix(&prefix)?.strip_suffix("/_COMPLETE.json")?;
            hourly.span(table, rest).map(|(start, _)| start)
        })
        .max();
    Ok(latest.unwrap_or(now_hour - 1))
}

/// Deletes the snapshots of `table` older than the two named in `keep` (the current one and the
/// one before it, which a query that started before the pointer moved may still read): their
/// data folders and their state folders. Returns the objects deleted.
pub(super) async fn prune(
    lake: &Location,
    settings: &Settings,
    table: &str,
    keep: &[&str],
) -> Result<usize, SnapshotError> {
    let dir = state_dir(settings, table);
    let mut deleted = 0;
    for prefix in [format!("{table}_current/"), format!("{dir}/")] {
        for (path, _) in lake.list(&prefix).await? {
            let rel = lake.relative(&path);
            let Some(rest) = rel.strip_prefix(&prefix) else {
                continue;
            };
            // The snapshot id is the first part after the prefix; CURRENT.json stays.
            let Some((id, _)) = rest.split_once('/') else {
                continue;
            };
            if keep.contains(&id) {
                continue;
            }
            lake.delete(&rel).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
