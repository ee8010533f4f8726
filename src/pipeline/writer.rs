//! The writer: the messages the intake sends, and the one task that carries them out in order
//! (data and error objects, schemas, COPY manifests, hour markers, checkpoint saves), encoding
//! data ahead on blocking threads and writing data files that follow each other concurrently.
//! The order is the exactly-once protocol's: a checkpoint sent after a message is saved only once
//! that message is durable, and no data file sent after a message starts before it is done.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use parquet::errors::ParquetError;
use tokio::sync::mpsc;

use super::compaction::{compact_hour, delete_staged, Compaction};
use super::PipelineError;
use crate::buffer::FlushReason;
use crate::config::Settings;
use crate::item::key::KeyColumns;
use crate::store::Location;
use crate::summary::{Counters, ObjectInfo};

/// A data file to write: what the writer needs besides its content.
pub(super) struct DataFile {
    pub(super) path: String,
    pub(super) rows: usize,
    pub(super) table: String,
    pub(super) reason: FlushReason,
    /// Written only if absent (stream runs: a re-created batch may exist already).
    pub(super) create_only: bool,
    pub(super) order: RowOrder,
}

/// The order of a data file's rows.
#[derive(Clone)]
pub(super) enum RowOrder {
    /// As read.
    AsRead,
    /// By item, then by change (`[parquet] sort_rows`); with `only_if_repeated`, only where the
    /// rows repeat items enough to pay.
    ByKey {
        key: KeyColumns,
        only_if_repeated: bool,
    },
    /// Staged for compaction (in no COPY manifest): by item, by these key columns (`None`: the
    /// key is not known, by change only).
    Staged(Option<KeyColumns>),
}

pub(super) enum Out {
    Data {
        file: DataFile,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
    Object {
        path: String,
        bytes: Vec<u8>,
        create_only: bool,
    },
    /// Saved after every message before it is durable (the writer works in order).
    Checkpoint(Box<crate::checkpoint::Checkpoint>, Save),
    /// A Redshift COPY manifest listing these data files (written before this message).
    Manifest { path: String, objects: Vec<String> },
    /// A table's hour is complete: its manifest (every file in `folder`) and its marker.
    HourComplete {
        table: String,
        hour: i64,
        folder: String,
        /// With compaction: the hour's staged files, merged into the folder first.
        compact: Option<Compaction>,
    },
    /// Deletes an hour's staged files (sent after the checkpoint that records it complete).
    DeleteStaged { staged: String },
}

/// A message to the writer, with the share of the in-flight budget its Arrow data holds (released
/// once the data is encoded and freed).
pub(super) type Msg = (Out, Option<tokio::sync::OwnedSemaphorePermit>);

/// KiB of flushed Arrow data allowed between the reading thread and the encoders: the memory
/// budget again, so that a run holds at most twice the budget of Arrow data.
pub(super) fn in_flight_kib(settings: &Settings) -> usize {
    (settings.flush.memory_budget / 1024).clamp(1, u32::MAX as usize)
}

/// A writer message with its data encoded.
pub(super) enum Ready {
    Data { file: DataFile, encoded: Vec<u8> },
    Other(Out),
}

/// Which save of a flush group a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Save {
    /// Names the group's objects before they are written.
    Intent,
    /// The group is durable (or nothing was pending).
    Commit,
}

#[derive(Default)]
pub(super) struct WriterStats {
    pub(super) rows_out: BTreeMap<String, u64>,
    pub(super) files: u64,
    pub(super) bytes: u64,
    pub(super) flushes: BTreeMap<String, u64>,
    pub(super) objects: Vec<ObjectInfo>,
    pub(super) checkpoint: Option<crate::checkpoint::Checkpoint>,
    pub(super) hours_completed: Vec<String>,
}

/// Where a writer saves an object it creates through a copy (`Location::put_new`): under the
/// state prefix, named by the object and this writer.
pub(super) fn staging_name(state_prefix: &str, path: &str, nonce: &str) -> String {
    format!("{state_prefix}/staging/{nonce}/{path}")
}

pub(super) async fn write_all(
    mut rx: mpsc::Receiver<Msg>,
    output: Option<Location>,
    checkpoints: Option<crate::checkpoint::CheckpointStore>,
    settings: Settings,
    dry_run: bool,
    counters: Arc<Counters>,
) -> Result<WriterStats, PipelineError> {
    // Staged copies of this writer are its own: two writers of one object never share one.
    let nonce = {
        use rand::Rng;
        format!("{:016x}", rand::rng().random::<u64>())
    };
    // Data is encoded on blocking threads, up to one flush per core at a time, ahead of the
    // messages before it; every message is still carried out strictly in order below (encoding
    // has no effect outside this task, so the durability order is unchanged).
    let encoders = std::thread::available_parallelism().map_or(2, |n| n.get());
    let encode_opts = settings.encode;
    let mut ready = futures::stream::poll_fn(|cx| rx.poll_recv(cx))
        .map(move |(out, permit)| async move {
            match out {
                Out::Data {
                    file,
                    schema,
                    batches,
                } => {
                    let order = file.order.clone();
                    let encoded = tokio::task::spawn_blocking(move || {
                        encode_file(&order, &schema, batches, &encode_opts)
                    })
                    .await
                    .map_err(|e| PipelineError::Internal(e.to_string()))?;
                    // The flush's Arrow data is freed: the reading thread may send more.
                    drop(permit);
                    let encoded = encoded.map_err(|source| PipelineError::Encode {
                        path: file.path.clone(),
                        source,
                    })?;
                    Ok::<_, PipelineError>(Ready::Data { file, encoded })
                }
                other => Ok(Ready::Other(other)),
            }
        })
        .buffered(encoders);
    let mut fx = Effects {
        output: output.as_ref(),
        dry_run,
        checkpoints,
        settings: &settings,
        nonce: &nonce,
        counters: &counters,
        stats: WriterStats::default(),
        lengths: HashMap::new(),
    };
    // Data files are written several at once (an S3 put is a round trip: 40,000 small files one
    // after the other are 40,000 round trips in a row), up to `output.concurrent_writes` files and a
    // quarter of the memory budget of encoded bytes (at least one file). Every other message is a
    // barrier: it waits for the puts before it, and none after it starts before it is done, so
    // a checkpoint is still saved only once everything before it is durable, and an intent
    // checkpoint before the files it names.
    let put_budget = settings.flush.memory_budget / 4;
    let mut puts = FuturesOrdered::new();
    let mut put_bytes = 0usize;
    let target = fx.written_to();
    let put_opts = PutOptions {
        threshold: settings.multipart_threshold,
        part_size: settings.part_size,
        state_prefix: &settings.state_prefix,
        nonce: &nonce,
    };
    // On an error, the puts still in flight are let finish (their results no longer matter: the
    // run fails), so that none is cut off midway and leaves an incomplete upload behind.
    let outcome: Result<(), PipelineError> = async {
        loop {
            let next = if puts.is_empty() {
                ready.next().await
            } else {
                tokio::select! {
                    biased;
                    done = puts.next() => {
                        if let Some(done) = done {
                            put_bytes -= fx.count(done?);
                        }
                        continue;
                    }
                    next = ready.next() => next,
                }
            };
            let Some(out) = next else { break };
            match out? {
                Ready::Data { file, encoded } => {
                    let len = encoded.len();
                    while !puts.is_empty()
                        && (puts.len() >= settings.concurrent_writes
                            || put_bytes + len > put_budget)
                    {
                        if let Some(done) = puts.next().await {
                            put_bytes -= fx.count(done?);
                        }
                    }
                    put_bytes += len;
                    puts.push_back(put_data(target, file, encoded, put_opts));
                }
                Ready::Other(out) => {
                    // A barrier: the puts before this message are durable before it is carried
                    // out.
                    while let Some(done) = puts.next().await {
                        put_bytes -= fx.count(done?);
                    }
                    fx.carry_out(out).await?;
                }
            }
        }
        while let Some(done) = puts.next().await {
            fx.count(done?);
        }
        Ok(())
    }
    .await;
    if outcome.is_err() {
        while let Some(done) = puts.next().await {
            match done {
                Ok(written) => {
                    fx.count(written);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }
    outcome.map(|()| fx.stats)
}

/// What the writer's messages act on, and what it has written so far.
struct Effects<'a> {
    output: Option<&'a Location>,
    dry_run: bool,
    checkpoints: Option<crate::checkpoint::CheckpointStore>,
    settings: &'a Settings,
    nonce: &'a str,
    counters: &'a Counters,
    stats: WriterStats,
    /// Lengths of the data files written and not yet listed in a manifest.
    lengths: HashMap<String, u64>,
}

impl<'a> Effects<'a> {
    /// Where objects are written: the output, unless this is a dry run.
    fn written_to(&self) -> Option<&'a Location> {
        self.output.filter(|_| !self.dry_run)
    }

    /// Carries out a message other than data, every data file before it being durable.
    async fn carry_out(&mut self, out: Out) -> Result<(), PipelineError> {
        let settings = self.settings;
        match out {
            Out::Data { .. } => unreachable!("data messages arrive encoded"),
            Out::Object {
                path,
                bytes,
                create_only,
            } => {
                let Some(out) = self.written_to() else {
                    return Ok(());
                };
                let bytes = Bytes::from(bytes);
                if create_only {
                    out.put_new(&path, bytes, usize::MAX, settings.part_size, "")
                        .await?;
                } else {
                    out.put(&path, bytes, usize::MAX, settings.part_size)
                        .await?;
                }
                tracing::debug!("wrote {}", out.display(&path));
                if path.starts_with(&format!("{}/schemas/", settings.state_prefix)) {
                    crate::failpoint::hit("after-schema");
                } else {
                    crate::failpoint::hit("after-errors");
                }
            }
            Out::Manifest { path, objects } => {
                let Some(out) = self.output else {
                    return Ok(());
                };
                let mut files = Vec::with_capacity(objects.len());
                for o in &objects {
                    let len = match self.lengths.remove(o) {
                        Some(l) => l,
                        None if !self.dry_run => out.size(o).await?,
                        None => 0,
                    };
                    files.push((out.display(o), len));
                }
                if !self.dry_run {
                    put_manifest(out, &path, &files, settings.part_size).await?;
                    tracing::debug!("wrote manifest {}", out.display(&path));
                    crate::failpoint::hit("after-manifest");
                }
            }
            Out::HourComplete {
                table,
                hour,
                folder,
                compact,
            } => {
                if let Some(out) = self.written_to() {
                    let done =
                        complete_hour(out, settings, &table, hour, &folder, compact, self.nonce)
                            .await?;
                    self.stats.hours_completed.push(done);
                }
            }
            Out::DeleteStaged { staged } => {
                if let Some(out) = self.written_to() {
                    delete_staged(out, &staged).await?;
                }
            }
            Out::Checkpoint(cp, save) => {
                if let (Some(store), false) = (self.checkpoints.as_mut(), self.dry_run) {
                    store.save(&cp).await?;
                    crate::metrics::checkpoint_saved();
                    tracing::debug!("saved checkpoint {} ({save:?})", store.url());
                    if save == Save::Intent {
                        crate::failpoint::hit("after-intent");
                    }
                }
                self.stats.checkpoint = Some(*cp);
            }
        }
        Ok(())
    }

    /// Counts a data file written, in the order the files were sent; returns its encoded bytes.
    fn count(&mut self, w: Written) -> usize {
        let Written { file, encoded, len } = w;
        let DataFile {
            path,
            rows,
            table,
            reason,
            order,
            ..
        } = file;
        crate::metrics::file_written(&table, rows as u64, len, reason.as_str());
        // Staged files go in no manifest: nothing would take their length out again.
        if !matches!(order, RowOrder::Staged(_)) {
            self.lengths.insert(path.clone(), len);
        }
        let stats = &mut self.stats;
        *stats.rows_out.entry(table).or_default() += rows as u64;
        *stats
            .flushes
            .entry(reason.as_str().to_string())
            .or_default() += 1;
        stats.files += 1;
        stats.bytes += len;
        self.counters.files_written.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_written
            .fetch_add(len, Ordering::Relaxed);
        stats.objects.push(ObjectInfo {
            path,
            rows: rows as u64,
            bytes: len,
        });
        encoded
    }
}

/// Completes a table's hour: merges its staged files into the folder first when compacting
/// (with their own COPY manifest), then writes the hour's manifest (every on-time file in
/// `folder`) and its `_COMPLETE.json` marker. Returns the hour as the summary lists it.
async fn complete_hour(
    out: &Location,
    settings: &Settings,
    table: &str,
    hour: i64,
    folder: &str,
    compact: Option<Compaction>,
    nonce: &str,
) -> Result<String, PipelineError> {
    if let Some(c) = compact {
        let files = compact_hour(out, settings, table, folder, c, nonce).await?;
        // The compacted files' COPY manifest (staged files are in none).
        if !files.is_empty() {
            let names: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
            let path = super::commit::manifest_name(&settings.state_prefix, table, &names);
            let listed: Vec<(String, u64)> =
                files.iter().map(|(p, l)| (out.display(p), *l)).collect();
            put_manifest(out, &path, &listed, settings.part_size).await?;
        }
    }
    let files: Vec<(String, u64)> = out
        .list(&format!("{folder}/"))
        .await?
        .into_iter()
        // On-time files only: late ones are in the regular COPY manifests (a late file can be
        // there already when a marker is written again after a crash).
        .filter(|(p, _)| {
            let name = p.filename().unwrap_or_default();
            name.ends_with(".parquet") && !name.starts_with(&format!("{table}-late-"))
        })
        .map(|(p, len)| (out.display(&out.relative(&p)), len))
        .collect();
    let start = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default();
    let dir = format!(
        "{}/hours/{table}/{}",
        settings.state_prefix,
        start.format("%Y/%m/%d/%H")
    );
    let manifest = format!("{dir}/manifest.json");
    put_manifest(out, &manifest, &files, settings.part_size).await?;
    crate::failpoint::hit("mid-marker");
    let marker = serde_json::json!({
        "table": table,
        "hour": start.format("%Y-%m-%dT%H:00:00Z").to_string(),
        "files": files.len(),
        "bytes": files.iter().map(|(_, l)| l).sum::<u64>(),
        "manifest": out.display(&manifest),
        "allowed_lateness_seconds": settings.markers.map_or(0, |d| d.as_secs()),
    });
    let body = serde_json::to_vec_pretty(&marker).expect("markers serialize");
    let path = format!("{dir}/_COMPLETE.json");
    out.put(&path, Bytes::from(body), usize::MAX, settings.part_size)
        .await?;
    tracing::info!("hour complete: {}", out.display(&path));
    crate::metrics::hour_completed(table);
    Ok(format!("{table} {}", start.format("%Y-%m-%dT%H")))
}

/// A data file's Parquet bytes, its rows in `order`.
fn encode_file(
    order: &RowOrder,
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    opts: &crate::encode::EncodeOptions,
) -> Result<Vec<u8>, ParquetError> {
    let sorted = match order {
        RowOrder::AsRead => return crate::encode::encode(schema, batches, opts),
        RowOrder::ByKey {
            key,
            only_if_repeated,
        } => crate::compact::encode_by_key(schema, batches, key, *only_if_repeated, opts),
        RowOrder::Staged(key) => crate::compact::encode_sorted(schema, batches, key.as_ref(), opts),
    };
    sorted.map_err(|e| ParquetError::General(e.to_string()))
}

/// How data files are put.
#[derive(Clone, Copy)]
struct PutOptions<'a> {
    threshold: usize,
    part_size: usize,
    state_prefix: &'a str,
    nonce: &'a str,
}

/// A data file written (or, with no output, only encoded).
struct Written {
    file: DataFile,
    /// The bytes encoded (the put's share of the writer's budget).
    encoded: usize,
    /// The object's length: the one written, or the existing one's that a re-created batch
    /// found in place.
    len: u64,
}

/// Writes one encoded data file to `out` (nothing when `None`: a dry run or no output).
async fn put_data(
    out: Option<&Location>,
    file: DataFile,
    encoded: Vec<u8>,
    o: PutOptions<'_>,
) -> Result<Written, PipelineError> {
    let encoded_len = encoded.len();
    let mut len = encoded_len as u64;
    if let Some(out) = out {
        let bytes = Bytes::from(encoded);
        if file.create_only {
            let staging = staging_name(o.state_prefix, &file.path, o.nonce);
            if let Some(existing) = out
                .put_new(&file.path, bytes, o.threshold, o.part_size, &staging)
                .await?
            {
                tracing::info!(
                    "{} was written before a restart; kept",
                    out.display(&file.path)
                );
                len = existing;
            }
        } else {
            out.put(&file.path, bytes, o.threshold, o.part_size).await?;
        }
        crate::failpoint::hit("after-data");
        tracing::info!(
            rows = file.rows,
            bytes = len,
            reason = file.reason.as_str(),
            "wrote {}",
            out.display(&file.path)
        );
    }
    Ok(Written {
        file,
        encoded: encoded_len,
        len,
    })
}

/// Writes a Redshift COPY manifest listing `files` (their URLs and lengths).
async fn put_manifest(
    out: &Location,
    path: &str,
    files: &[(String, u64)],
    part_size: usize,
) -> Result<(), crate::store::StoreError> {
    let body = crate::manifest::redshift(files);
    out.put(path, Bytes::from(body), usize::MAX, part_size)
        .await
}
