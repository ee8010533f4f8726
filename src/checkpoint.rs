//! Checkpoint stage: per shard, the last sequence number whose record, and every record before it
//! in the shard, is durable (a row in a written file or an entry in the written error output);
//! per output prefix, how far past that each shard's records for it are durable; and the batches
//! whose names were fixed before they were written (see docs/DESIGN.md, "Exactly once").
//!
//! Stored as one JSON object in any object store location: a local file for local runs, or an S3
//! object written with conditional puts (`If-Match` on the ETag read or last written, or
//! `If-None-Match: *` for the first write), so that two processes cannot silently overwrite each
//! other's progress.

use std::collections::BTreeMap;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::seq::{SeqPos, ShardRange};
use crate::store::{self, Location, S3Options, StoreError};

/// Progress of one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// The last durable sequence number (all before it in the shard are durable too). Reading
    /// resumes right after it. `None`: nothing durable yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence_number: Option<String>,
    /// The shard is closed and every record of it is durable: it is never read again, and its
    /// children may be read.
    #[serde(default)]
    pub finished: bool,
    /// For a shard with nothing durable yet that started at a time (LATEST or AT_TIMESTAMP):
    /// that time, in milliseconds since the epoch, so the next run starts there too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp_ms: Option<i64>,
}

/// A batch whose object name was fixed (and saved here) before the object was written. After a
/// crash the next run re-creates it from the same records under the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingBatch {
    /// Object name relative to the output.
    pub object: String,
    /// Output prefix the batch's records map to (the object name up to its hash).
    pub prefix: String,
    /// Lake table (data files) or `None` (error output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Rows in the data file, or entries in the error file: re-creating the batch is complete
    /// once that many have been read again.
    pub rows: u64,
    /// Redshift COPY manifest that lists this file (data files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// With hour markers: the hour (since the epoch) of an on-time data batch. Its hour is not
    /// marked complete while the batch waits to be re-created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<i64>,
    /// Per shard id, the range of that shard's records whose rows (or error entries) the batch
    /// holds.
    pub shards: BTreeMap<String, ShardRange>,
}

/// Progress of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The stream the checkpoint belongs to, as given to the run (name or ARN); set when the
    /// checkpoint is first created.
    pub stream: String,
    /// Incremented by every save, so that every write has new content (and a new ETag) and a
    /// conditional put can tell any two versions apart.
    #[serde(default)]
    pub revision: u64,
    /// The process that owns the checkpoint (set when a run starts); a process that finds
    /// another owner's save in its place has been fenced off and stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Per shard id, that shard's progress; a shard not read yet has no entry.
    pub shards: BTreeMap<String, ShardCheckpoint>,
    /// Per output prefix, per shard: the last record whose rows for that prefix are durable,
    /// where that is past the shard's `sequence_number` (records up to it are skipped when read
    /// again).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub written: BTreeMap<String, BTreeMap<String, SeqPos>>,
    /// Batches named but not known to be durable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingBatch>,
    /// Hour markers: per table, the hours (since the epoch) with rows and no marker yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub open_hours: BTreeMap<String, std::collections::BTreeSet<i64>>,
    /// Hour markers: per table, the last hour marked complete; later rows of it or earlier hours
    /// are late.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub marked_through: BTreeMap<String, i64>,
    /// Hour markers: per table, hours marked complete whose markers may not be written yet
    /// (written once the hour's batches named before a crash are re-created).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub completing: BTreeMap<String, std::collections::BTreeSet<i64>>,
    /// Set by `ddb-lake bootstrap`: the full export the lake was loaded from, and where the
    /// stream's reading starts after it (see docs/DESIGN.md, "Handover").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handover: Option<Handover>,
    /// The filter of the run that saved it (`Filter::fingerprint`): batches pending after a
    /// crash are re-created from the same records only under the same filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Whether the run that saved it staged on-time batches for compaction (`[markers]
    /// compact`): records read again after a crash map to their batches' prefixes by it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compact: bool,
}

/// The handover from a table's full export to its stream, as `ddb-lake bootstrap` left it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The export's id (its SNAPSHOT rows' `cdc_event_id`).
    pub export_id: String,
    /// The export's table.
    pub table: String,
    /// The export time (its SNAPSHOT rows' `cdc_event_time`), milliseconds since the epoch.
    pub export_time_ms: i64,
    /// How far before the export time the stream is read, in milliseconds.
    pub margin_ms: i64,
    /// Where every shard listed at the handover starts: `export_time_ms - margin_ms`.
    pub start_ms: i64,
}

impl Checkpoint {
    /// The shards read to their end with every record durable: never read again, and their
    /// children may be read.
    pub fn finished_shards(&self) -> std::collections::HashSet<String> {
        self.shards
            .iter()
            .filter(|(_, c)| c.finished)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Why a checkpoint could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint's location is wrong or cannot be opened, or reading the checkpoint failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored object is not a checkpoint's JSON.
    #[error("checkpoint {url} is not a ddb-lake checkpoint: {source}")]
    Parse {
        /// The checkpoint object's URL.
        url: String,
        /// What serde_json found wrong.
        source: serde_json::Error,
    },
    /// A conditional put failed and the stored checkpoint is neither this write nor another
    /// owner's claim: another process wrote it since this one read or last wrote it.
    #[error("checkpoint {url} was changed by another process since this one read it; two consumers must not share a checkpoint (stop the other, or give each its own --checkpoint)")]
    Conflict {
        /// The checkpoint object's URL.
        url: String,
    },
    /// Another process has claimed the checkpoint since this one did: this one must stop
    /// writing.
    #[error("checkpoint {url} was taken over by another ddb-lake process ({owner}); this one stops without writing more, so that the two never both write (if that is unexpected, two consumers share a checkpoint: give each its own --checkpoint)")]
    Fenced {
        /// The checkpoint object's URL.
        url: String,
        /// The claiming process, as named by [`owner_token`].
        owner: String,
    },
    /// Writing the checkpoint object failed for another reason than a failed precondition.
    #[error("writing checkpoint {url}: {source}")]
    Write {
        /// The checkpoint object's URL.
        url: String,
        /// object_store's error.
        source: object_store::Error,
    },
}

impl CheckpointError {
    /// A wrong checkpoint location (exit code 3).
    pub fn is_configuration(&self) -> bool {
        matches!(self, CheckpointError::Store(e) if e.is_configuration())
    }
}

/// Where a stream's checkpoint lives, with the version last seen for conditional writes.
pub struct CheckpointStore {
    location: Location,
    name: String,
    /// Conditional puts (S3); a local folder is written with a plain atomic replace.
    conditional: bool,
    version: Option<UpdateVersion>,
    /// Revision of the version read or last written.
    revision: u64,
}

impl CheckpointStore {
    /// Opens `url` (a file path, `file://` or `s3://` URL of the checkpoint object).
    pub fn open(url: &str, s3: &S3Options) -> Result<Self, CheckpointError> {
        let (dir, name) = url.rsplit_once('/').unwrap_or((".", url));
        let dir = if dir.is_empty() { "/" } else { dir };
        let conditional = matches!(store::parse_url(url)?, store::Url::S3 { .. });
        let location = store::open(dir, s3)?;
        Ok(CheckpointStore {
            conditional,
            location,
            name: name.to_string(),
            version: None,
            revision: 0,
        })
    }

    /// The checkpoint object `name` in `location`, written with conditional puts if
    /// `conditional` (stores that enforce them: S3, memory).
    pub fn at(location: Location, name: &str, conditional: bool) -> Self {
        CheckpointStore {
            location,
            name: name.to_string(),
            conditional,
            version: None,
            revision: 0,
        }
    }

    /// The checkpoint object's URL, for messages.
    pub fn url(&self) -> String {
        self.location.display(&self.name)
    }

    /// Reads the checkpoint (empty when none exists yet) and remembers its version.
    pub async fn load(&mut self, stream: &str) -> Result<Checkpoint, CheckpointError> {
        let path = self.location.path(&self.name);
        match self.location.store.get(&path).await {
            Ok(r) => {
                self.version = Some(UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                });
                let bytes = r.bytes().await.map_err(|source| StoreError::Io {
                    op: "reading",
                    url: self.url(),
                    source,
                })?;
                let cp: Checkpoint =
                    serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Parse {
                        url: self.url(),
                        source,
                    })?;
                self.revision = cp.revision;
                Ok(cp)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Checkpoint {
                stream: stream.to_string(),
                ..Checkpoint::default()
            }),
            Err(source) => Err(StoreError::Io {
                op: "reading",
                url: self.url(),
                source,
            }
            .into()),
        }
    }

    /// Writes the checkpoint; with conditional puts, fails if another process wrote it since.
    /// When `cp.owner` is set and the stored checkpoint names another owner, fails with
    /// [`CheckpointError::Fenced`] (a local file, without conditional puts, is read and compared
    /// first).
    pub async fn save(&mut self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.write(cp, true).await
    }

    /// Writes the checkpoint under a new owner (`cp.owner`), replacing whichever process owned it:
    /// that one is fenced off at its next save. Still fails if the checkpoint changed since it
    /// was loaded.
    pub async fn claim(&mut self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.write(cp, false).await
    }

    async fn write(&mut self, cp: &Checkpoint, fence: bool) -> Result<(), CheckpointError> {
        self.revision += 1;
        let mut cp = cp.clone();
        cp.revision = self.revision;
        let body = serde_json::to_vec_pretty(&cp).expect("checkpoints serialize");
        let path = self.location.path(&self.name);
        if fence && !self.conditional && cp.owner.is_some() {
            if let Some(stored) = self.read().await? {
                if stored.owner.is_some() && stored.owner != cp.owner {
                    return Err(self.fenced(stored));
                }
            }
        }
        let mode = match (&self.version, self.conditional) {
            (_, false) => PutMode::Overwrite,
            (None, true) => PutMode::Create,
            (Some(v), true) => PutMode::Update(v.clone()),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .location
            .store
            .put_opts(&path, PutPayload::from(Bytes::from(body)), opts)
            .await
        {
            Ok(r) => {
                self.version = Some(UpdateVersion {
                    e_tag: r.e_tag,
                    version: r.version,
                });
                Ok(())
            }
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. },
            ) => {
                // Either another process wrote it, or this very write landed and its answer was
                // lost (the retry then fails its own precondition): the stored content tells.
                let stored = self.read().await?;
                match stored {
                    Some(s) if s == cp => {
                        let meta = self.location.store.head(&path).await.map_err(|source| {
                            CheckpointError::Write {
                                url: self.url(),
                                source,
                            }
                        })?;
                        self.version = Some(UpdateVersion {
                            e_tag: meta.e_tag,
                            version: meta.version,
                        });
                        Ok(())
                    }
                    Some(s) if fence && s.owner.is_some() && s.owner != cp.owner => {
                        Err(self.fenced(s))
                    }
                    _ => Err(CheckpointError::Conflict { url: self.url() }),
                }
            }
            Err(source) => Err(CheckpointError::Write {
                url: self.url(),
                source,
            }),
        }
    }

    fn fenced(&self, stored: Checkpoint) -> CheckpointError {
        CheckpointError::Fenced {
            url: self.url(),
            owner: stored.owner.unwrap_or_default(),
        }
    }

    /// The stored checkpoint, if any, without changing the version this store writes against.
    async fn read(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let rel = self.name.clone();
        let Some(bytes) = self.location.get_opt(&rel).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| CheckpointError::Parse {
                url: self.url(),
                source,
            })
    }
}

/// A name for this process in checkpoints: host, process id, start time and a random part.
pub fn owner_token() -> String {
    use rand::Rng;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    let nonce: u32 = rand::rng().random();
    format!(
        "{host} pid {} started {} #{nonce:08x}",
        std::process::id(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("{}/cp/stream.json", dir.path().display());
        let mut store = CheckpointStore::open(&url, &S3Options::default()).unwrap();
        let empty = store.load("s").await.unwrap();
        assert!(empty.shards.is_empty());
        let mut cp = empty.clone();
        cp.shards.insert(
            "shardId-0".into(),
            ShardCheckpoint {
                sequence_number: Some("42".into()),
                finished: false,
                start_timestamp_ms: None,
            },
        );
        store.save(&cp).await.unwrap();
        let mut again = CheckpointStore::open(&url, &S3Options::default()).unwrap();
        let loaded = again.load("s").await.unwrap();
        assert_eq!((loaded.shards, loaded.revision), (cp.shards, 1));
    }
}
