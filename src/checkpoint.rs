//! Checkpoint stage: per shard, the last sequence number whose record, and every record before it
//! in the shard, is durable (a row in a written file or an entry in the written error output).
//!
//! Stored as one JSON object in any object store location: a local file for local runs, or an S3
//! object written with conditional puts (`If-Match` on the ETag read or last written, or
//! `If-None-Match: *` for the first write), so that two processes cannot silently overwrite each
//! other's progress.

use std::collections::BTreeMap;

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

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

/// Progress of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub stream: String,
    /// Incremented by every save, so that every write has new content (and a new ETag) and a
    /// conditional put can tell any two versions apart.
    #[serde(default)]
    pub revision: u64,
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("checkpoint {url} is not a ddb-lake checkpoint: {source}")]
    Parse {
        url: String,
        source: serde_json::Error,
    },
    #[error("checkpoint {url} was changed by another process since this one read it; two consumers must not share a checkpoint (stop the other, or give each its own --checkpoint)")]
    Conflict { url: String },
    #[error("writing checkpoint {url}: {source}")]
    Write {
        url: String,
        source: object_store::Error,
    },
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
        let location = store::open(dir, s3)?;
        Ok(CheckpointStore {
            conditional: url.starts_with("s3://"),
            location,
            name: name.to_string(),
            version: None,
            revision: 0,
        })
    }

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
                revision: 0,
                shards: BTreeMap::new(),
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
    pub async fn save(&mut self, cp: &Checkpoint) -> Result<(), CheckpointError> {
        self.revision += 1;
        let mut cp = cp.clone();
        cp.revision = self.revision;
        let body = serde_json::to_vec_pretty(&cp).expect("checkpoints serialize");
        let path = self.location.path(&self.name);
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
            ) => Err(CheckpointError::Conflict { url: self.url() }),
            Err(source) => Err(CheckpointError::Write {
                url: self.url(),
                source,
            }),
        }
    }
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
