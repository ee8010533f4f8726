//! Wires the stages of a batch export:
//!
//! ```text
//! source ─► decode ─► flatten ─► partition ─► buffer ═╗   (one blocking thread: CPU work)
//!                 └─► reject (error output)           ║ bounded channel
//!                                     encode ─► store ◄╝  (async writer; encoding off the executor)
//! ```
//!
//! The reading thread owns the schemas and the buffers; the writer owns the output. A table's
//! remembered schema (`{state_prefix}/schemas/{table}.toml` next to the output) is written before
//! any file that uses its new columns, so every file's columns are a prefix of the remembered list.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::buffer::{Buffers, Flush, FlushReason, PartKey, StreamSource};
use crate::checkpoint::PendingBatch;
use crate::config::{PartitionTime, Settings};
use crate::decode::{parse_record, ChangeRecord, DecodeError, Frame, Framer, Reason};
use crate::flatten::{flatten, Position};
use crate::reject::Rejects;
use crate::schema::{SchemaError, SchemaFile, TableSchema};
use crate::seq::SeqPos;
use crate::source::{self, InputFile, SourceError};
use crate::store::{self, Location, StoreError};
use crate::summary::{Counters, ObjectInfo, Summary};
use commit::{Held, Recreated, Replay, Route};

/// Error entries buffered before they are written.
const REJECT_FLUSH_BYTES: usize = 8 * 1024 * 1024;
/// Bad records logged one by one before the log only counts them.
const LOGGED_REJECTS: u64 = 20;
/// Flushes in flight between the reading thread and the writer.
const CHANNEL_DEPTH: usize = 1;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("schema file {path}: {problem}")]
    SchemaFile { path: String, problem: String },
    #[error("encoding {path}: {source}")]
    Encode {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("stream {stream}: {source}")]
    Stream {
        stream: String,
        source: crate::kinesis::ApiError,
    },
    /// A broken invariant of the exactly-once protocol (a bug): the run stops before writing.
    #[error("internal error, stopping before anything more is written: {0}")]
    Invariant(String),
    #[error("internal: {0}")]
    Internal(String),
}

impl PipelineError {
    /// A problem of the configuration (a setting, a URL, a schema file: exit code 3), not of the
    /// data or the services.
    pub fn is_configuration(&self) -> bool {
        match self {
            PipelineError::Source(e) => e.is_configuration(),
            PipelineError::Store(e) => e.is_configuration(),
            PipelineError::Checkpoint(e) => e.is_configuration(),
            PipelineError::Schema(_) | PipelineError::SchemaFile { .. } => true,
            PipelineError::Encode { .. }
            | PipelineError::Read { .. }
            | PipelineError::Stream { .. }
            | PipelineError::Invariant(_)
            | PipelineError::Internal(_) => false,
        }
    }
}

mod commit;
#[cfg(test)]
mod sim;
pub mod stream;

/// Wall and monotonic time, injected so tests control it.
pub trait Clock: Send + Sync {
    /// Milliseconds on a monotonic clock (flush ages).
    fn now_ms(&self) -> u64;
    /// Microseconds since the Unix epoch (processing-time partitions, error hours).
    fn now_utc_us(&self) -> i64;
}

/// The real clock.
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn now_utc_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}

/// What the run does besides reading.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Encode but write nothing; report what would be written.
    pub dry_run: bool,
    /// After the run, write each table's schema file into this folder (`schema infer`).
    pub schemas_out: Option<PathBuf>,
}

/// A data file to write: what the writer needs besides its content.
struct DataFile {
    path: String,
    rows: usize,
    table: String,
    reason: FlushReason,
    /// Written only if absent (stream runs: a re-created batch may exist already).
    create_only: bool,
}

enum Out {
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
    Checkpoint(crate::checkpoint::Checkpoint, Stage),
    /// A Redshift COPY manifest listing these data files (written before this message).
    Manifest { path: String, objects: Vec<String> },
    /// A table's hour is complete: its manifest (every file in `folder`) and its marker.
    HourComplete {
        table: String,
        hour: i64,
        folder: String,
    },
}

/// A message to the writer, with the share of the in-flight budget its Arrow data holds (released
/// once the data is encoded and freed).
type Msg = (Out, Option<tokio::sync::OwnedSemaphorePermit>);

/// KiB of flushed Arrow data allowed between the reading thread and the encoders: the memory
/// budget again, so that a run holds at most twice the budget of Arrow data.
fn in_flight_kib(settings: &Settings) -> usize {
    (settings.flush.memory_budget / 1024).clamp(1, u32::MAX as usize)
}

/// A writer message with its data encoded.
enum Ready {
    Data { file: DataFile, encoded: Vec<u8> },
    Other(Out),
}

/// Which save of a flush group a checkpoint is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Names the group's objects before they are written.
    Intent,
    /// The group is durable (or nothing was pending).
    Commit,
}

struct TableState {
    schema: TableSchema,
    /// Column count at the last save of the remembered schema.
    saved_len: usize,
    mismatches: BTreeMap<usize, u64>,
    truncated: BTreeMap<usize, u64>,
    unmapped: u64,
}

/// Loads declared schema files (`schema.dir`) and remembered ones (next to the output), merging
/// declared columns into the remembered lists.
async fn load_tables(
    settings: &Settings,
    output: Option<&Location>,
) -> Result<Vec<TableState>, PipelineError> {
    let mut declared: BTreeMap<String, TableSchema> = BTreeMap::new();
    if let Some(dir) = &settings.schema_dir {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| PipelineError::SchemaFile {
                path: dir.display().to_string(),
                problem: e.to_string(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| PipelineError::SchemaFile {
                path: p.display().to_string(),
                problem: e.to_string(),
            })?;
            let s = parse_schema(&text, &p.display().to_string())?;
            declared.insert(s.table.clone(), s);
        }
    }
    let mut tables: BTreeMap<String, TableSchema> = BTreeMap::new();
    if let Some(out) = output {
        let dir = format!("{}/schemas", settings.state_prefix);
        for (path, _) in out.list(&dir).await? {
            if !path.as_ref().ends_with(".toml") {
                continue;
            }
            let bytes = out.get_path(&path).await?;
            let text = String::from_utf8_lossy(&bytes);
            let s = parse_schema(&text, &format!("{}/{}", out.url, path))?;
            tables.insert(s.table.clone(), s);
        }
    }
    for (name, d) in declared {
        match tables.get_mut(&name) {
            Some(t) => t.merge_declared(&d)?,
            None => {
                tables.insert(name, d);
            }
        }
    }
    Ok(tables
        .into_values()
        .map(|schema| TableState {
            saved_len: 0,
            schema,
            mismatches: BTreeMap::new(),
            truncated: BTreeMap::new(),
            unmapped: 0,
        })
        .collect())
}

/// The schemas of every known table: remembered next to the output, merged with declared ones.
pub async fn table_schemas(settings: &Settings) -> Result<Vec<TableSchema>, PipelineError> {
    let output = store::open(&settings.output, &settings.s3)?;
    Ok(load_tables(settings, Some(&output))
        .await?
        .into_iter()
        .map(|t| t.schema)
        .collect())
}

/// URLs (under `location`) of a table's COPY manifests, sorted.
pub async fn manifests(
    settings: &Settings,
    table: &str,
    location: &str,
) -> Result<Vec<String>, PipelineError> {
    let output = store::open(&settings.output, &settings.s3)?;
    let dir = format!("{}/manifests/{table}", settings.state_prefix);
    Ok(output
        .list(&dir)
        .await?
        .into_iter()
        .map(|(p, _)| format!("{}/{}", location.trim_end_matches('/'), output.relative(&p)))
        .collect())
}

/// A table's data files, relative to the lake's root, sorted.
pub async fn data_files(settings: &Settings, table: &str) -> Result<Vec<String>, PipelineError> {
    let output = store::open(&settings.output, &settings.s3)?;
    Ok(output
        .list(&format!("{table}/"))
        .await?
        .into_iter()
        .filter(|(p, _)| p.as_ref().ends_with(".parquet"))
        .map(|(p, _)| output.relative(&p))
        .collect())
}

fn parse_schema(text: &str, path: &str) -> Result<TableSchema, PipelineError> {
    let file: SchemaFile = toml::from_str(text).map_err(|e| PipelineError::SchemaFile {
        path: path.into(),
        problem: e.to_string(),
    })?;
    Ok(TableSchema::from_file(&file)?)
}

/// The reading side: owns schemas, buffers and pending error entries.
struct Reader<'a> {
    settings: &'a Settings,
    /// The current row's position text (reused between rows).
    position: String,
    clock: &'a dyn Clock,
    counters: &'a Counters,
    tables: Vec<TableState>,
    by_name: HashMap<String, usize>,
    buffers: Buffers,
    rejects: Rejects,
    tx: mpsc::Sender<Msg>,
    /// KiB of flushed Arrow data not yet encoded (`in_flight_kib`): the reading thread waits
    /// for the encoders rather than holding ever more data in flight.
    in_flight: Arc<tokio::sync::Semaphore>,
    records: u64,
    bytes: u64,
    /// Flushes sent to the writer so far.
    flushes: u64,
    /// Stream runs: the flush group being prepared, written at the next checkpoint.
    hold: Option<Vec<Held>>,
    /// Stream runs: the previous run's progress, while records are read again.
    replay: Option<Replay>,
    /// Stream runs: shard ids by index.
    shard_ids: Vec<Arc<str>>,
    /// Stream runs with hour markers: hours seen, hours marked, late rows.
    marks: Option<Marks>,
    /// Stream runs: when the oldest error entry not yet written was added (monotonic ms).
    rejects_since_ms: Option<u64>,
}

const HOUR_US: i64 = 3_600_000_000;

/// Hour-marker bookkeeping of the reading side.
#[derive(Debug, Default)]
struct Marks {
    /// Per table: hours with rows and no marker yet.
    open_hours: BTreeMap<String, std::collections::BTreeSet<i64>>,
    /// Per table: the last hour marked complete.
    marked_through: BTreeMap<String, i64>,
    /// Per shard (index): the latest partition time processed.
    event_max: Vec<Option<i64>>,
    /// Late rows per table.
    late: BTreeMap<String, u64>,
}

impl Marks {
    /// Notes a row of `table` in `hour`; returns whether it is late (its hour is marked).
    fn place(&mut self, table: &str, hour: i64) -> bool {
        if self.marked_through.get(table).is_some_and(|&m| hour <= m) {
            *self.late.entry(table.to_string()).or_default() += 1;
            crate::metrics::late_row(table);
            return true;
        }
        if !self
            .open_hours
            .get(table)
            .is_some_and(|h| h.contains(&hour))
        {
            self.open_hours
                .entry(table.to_string())
                .or_default()
                .insert(hour);
        }
        false
    }
}

impl<'a> Reader<'a> {
    fn new(
        settings: &'a Settings,
        clock: &'a dyn Clock,
        counters: &'a Counters,
        tables: Vec<TableState>,
        tx: mpsc::Sender<Msg>,
    ) -> Self {
        let by_name = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.schema.table.clone(), i))
            .collect();
        Reader {
            settings,
            position: String::new(),
            clock,
            counters,
            tables,
            by_name,
            buffers: Buffers::new(settings.flush),
            rejects: Rejects::new(&settings.error_prefix),
            tx,
            in_flight: Arc::new(tokio::sync::Semaphore::new(in_flight_kib(settings))),
            records: 0,
            bytes: 0,
            flushes: 0,
            hold: None,
            replay: None,
            shard_ids: Vec::new(),
            marks: None,
            rejects_since_ms: None,
        }
    }

    /// Stream runs: whether the error entries waiting should be written now (they are as large as
    /// a batch run's error flush, or as old as the flush age), even if no partition flushes.
    fn rejects_due(&self) -> bool {
        let Some(since) = self.rejects_since_ms else {
            return false;
        };
        self.rejects.pending_bytes() >= REJECT_FLUSH_BYTES
            || self
                .settings
                .flush
                .max_age_ms
                .is_some_and(|age| self.clock.now_ms().saturating_sub(since) >= age)
    }

    fn into_result(self) -> ReadResult {
        ReadResult {
            late: self.marks.map(|m| m.late).unwrap_or_default(),
            peak: self.buffers.peak_bytes(),
            tables: self.tables,
            rejects: self.rejects,
            records: self.records,
            bytes: self.bytes,
        }
    }

    fn table_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        // A new table: its lake name must not collide with another table's folder.
        let mut schema = TableSchema::new(name, None);
        let base = schema.name.clone();
        let taken = |n: &str| self.tables.iter().any(|t| t.schema.name == n);
        schema.name = crate::schema::naming::unique_name(base, taken);
        self.tables.push(TableState {
            schema,
            saved_len: 0,
            mismatches: BTreeMap::new(),
            truncated: BTreeMap::new(),
            unmapped: 0,
        });
        let i = self.tables.len() - 1;
        self.by_name.insert(name.to_string(), i);
        i
    }

    fn send(&self, out: Out) -> Result<(), PipelineError> {
        let permit = match &out {
            Out::Data { batches, .. } => {
                let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
                let kib = (bytes / 1024).clamp(1, in_flight_kib(self.settings)) as u32;
                // Waits (on this blocking thread) until the encoders have taken enough.
                let permit =
                    futures::executor::block_on(self.in_flight.clone().acquire_many_owned(kib))
                        .map_err(|_| PipelineError::Internal("the writer stopped".into()))?;
                Some(permit)
            }
            _ => None,
        };
        self.tx
            .blocking_send((out, permit))
            .map_err(|_| PipelineError::Internal("the writer stopped".into()))
    }

    /// Sends the table's remembered schema to the writer if it has columns not yet saved.
    fn save_schema_if_grown(&mut self, table: usize) -> Result<(), PipelineError> {
        let t = &mut self.tables[table];
        if t.schema.len() == t.saved_len {
            return Ok(());
        }
        t.saved_len = t.schema.len();
        let text = toml::to_string(&t.schema.to_file()).expect("schemas serialize");
        let path = format!(
            "{}/schemas/{}.toml",
            self.settings.state_prefix, t.schema.name
        );
        self.send(Out::Object {
            path,
            bytes: text.into_bytes(),
            create_only: false,
        })
    }

    /// Writes the partitions that reached their age.
    fn flush_aged(&mut self) -> Result<(), PipelineError> {
        let aged = self.buffers.aged(self.clock.now_ms());
        self.emit(aged)
    }

    /// Sends flushes to the writer (each preceded by its table's schema when it grew) and then a
    /// COPY manifest per table; stream runs hold them for the next checkpoint instead.
    fn emit(&mut self, flushes: Vec<Flush>) -> Result<(), PipelineError> {
        let mut group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in flushes {
            self.flushes += 1;
            self.save_schema_if_grown(f.key.table)?;
            let t = &mut self.tables[f.key.table];
            // Named by the batch's identity: table, partition, first and last position, rows.
            let mut id = Vec::new();
            for part in [
                t.schema.name.as_str(),
                &f.key.path,
                &f.first,
                &f.last,
                &f.rows.to_string(),
            ] {
                id.extend_from_slice(part.as_bytes());
                id.push(0);
            }
            let hash = store::short_hash(&id, 8);
            let late = if f.key.late { "late-" } else { "" };
            let prefix = format!("{}/{}-{late}", f.key.path, t.schema.name);
            let path = format!("{prefix}{hash}.parquet");
            let table = t.schema.name.clone();
            let out = Out::Data {
                file: DataFile {
                    path: path.clone(),
                    rows: f.rows,
                    table: table.clone(),
                    reason: f.reason,
                    create_only: self.hold.is_some(),
                },
                schema: t.schema.arrow_schema(),
                batches: f.batches,
            };
            match &mut self.hold {
                Some(held) => {
                    let batch = PendingBatch {
                        object: path,
                        prefix,
                        table: Some(table),
                        rows: f.rows as u64,
                        manifest: None,
                        hour: (self.marks.is_some() && !f.key.late).then_some(f.key.hour),
                        shards: f
                            .ranges
                            .into_iter()
                            .map(|(i, r)| (self.shard_ids[i].to_string(), r))
                            .collect(),
                    };
                    held.push(Held { out, batch });
                }
                None => {
                    self.send(out)?;
                    group.entry(table).or_default().push(path);
                }
            }
        }
        for (table, objects) in group {
            let path = commit::manifest_name(&self.settings.state_prefix, &table, &objects);
            self.send(Out::Manifest { path, objects })?;
        }
        Ok(())
    }

    /// Takes the flush group prepared since the last checkpoint, with the error files, each
    /// data file assigned to its table's manifest.
    fn take_group(&mut self) -> Vec<Held> {
        let mut held = self.hold.as_mut().map(std::mem::take).unwrap_or_default();
        self.rejects_since_ms = None;
        for f in self.rejects.take() {
            held.push(Held {
                out: Out::Object {
                    path: f.path.clone(),
                    bytes: f.data,
                    create_only: true,
                },
                batch: PendingBatch {
                    object: f.path,
                    prefix: f.prefix,
                    table: None,
                    rows: f.rows,
                    manifest: None,
                    hour: None,
                    shards: f.ranges,
                },
            });
        }
        let mut by_table: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for h in &held {
            if let (Some(t), None) = (&h.batch.table, &h.batch.manifest) {
                by_table
                    .entry(t.clone())
                    .or_default()
                    .push(h.batch.object.clone());
            }
        }
        for h in &mut held {
            if let (Some(t), None) = (&h.batch.table, &h.batch.manifest) {
                h.batch.manifest = Some(commit::manifest_name(
                    &self.settings.state_prefix,
                    t,
                    &by_table[t],
                ));
            }
        }
        held
    }

    /// The index of a table by its lake name.
    fn lake_table(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.schema.name == name)
    }

    /// Routes a record read again after a restart (stream runs).
    fn replay_route(replay: &Option<Replay>, prefix: &str, pos: &Position) -> Route {
        match (replay, pos.shard, pos.sequence_number) {
            (Some(r), Some(shard), Some(seq)) if r.active() => r.route(
                prefix,
                shard,
                &SeqPos::new(seq, pos.subsequence.unwrap_or(0)),
            ),
            _ => Route::New,
        }
    }

    /// Holds a re-created batch for the next checkpoint, and its manifest once all its files are.
    fn recreated(&mut self, batch: PendingBatch, content: Recreated) {
        let out = match content {
            Recreated::Data(batches) => {
                let t = batch.table.as_deref().unwrap_or_default();
                let ti = self
                    .lake_table(t)
                    .expect("a re-created batch's table is known");
                Out::Data {
                    file: DataFile {
                        path: batch.object.clone(),
                        rows: batch.rows as usize,
                        table: t.to_string(),
                        reason: FlushReason::Recreated,
                        create_only: true,
                    },
                    schema: self.tables[ti].schema.arrow_schema(),
                    batches,
                }
            }
            Recreated::Errors(bytes) => Out::Object {
                path: batch.object.clone(),
                bytes,
                create_only: true,
            },
        };
        tracing::info!("re-created {} after a restart", batch.object);
        self.flushes += 1;
        if let Some(held) = &mut self.hold {
            held.push(Held { out, batch });
        }
    }

    fn reject(
        &mut self,
        reason: Reason,
        message: &str,
        table: Option<&str>,
        pos: &Position,
        raw: &[u8],
        source: Option<StreamSource<'_>>,
    ) {
        // Stream records go to the hour they arrived in, so that a re-read gives the same file.
        let time = pos
            .arrival_ms
            .map_or_else(|| self.clock.now_utc_us(), |ms| ms * 1000);
        let entry = self.rejects.render(reason, message, table, pos, raw, time);
        match Self::replay_route(&self.replay, &entry.prefix, pos) {
            Route::Skip => {
                if let Some(r) = &mut self.replay {
                    r.skipped += 1;
                }
                return;
            }
            Route::Recreate(i) => {
                self.rejects.count(reason);
                let at = SeqPos::new(
                    pos.sequence_number.unwrap_or_default(),
                    pos.subsequence.unwrap_or(0),
                );
                let shard = pos.shard.unwrap_or_default();
                let done = self
                    .replay
                    .as_mut()
                    .and_then(|r| r.add_entry(i, shard, at, &entry.line));
                if let Some((batch, content)) = done {
                    self.recreated(batch, content);
                }
                return;
            }
            Route::New => {}
        }
        let n = self.rejects.counts().values().sum::<u64>();
        if n < LOGGED_REJECTS {
            let at = match (pos.file, pos.line) {
                (Some(f), Some(l)) => format!("{f}:{l}"),
                _ => format!(
                    "{}:{}",
                    pos.shard.unwrap_or("?"),
                    pos.sequence_number.unwrap_or("?")
                ),
            };
            tracing::warn!("{at}: {reason}: {message}");
        } else if n == LOGGED_REJECTS {
            tracing::warn!("more bad records: see the error output and the summary");
        }
        if self.hold.is_some() && self.rejects_since_ms.is_none() {
            self.rejects_since_ms = Some(self.clock.now_ms());
        }
        let at = source.map(|s| (&*self.shard_ids[s.shard], s.prev, SeqPos::new(s.seq, s.sub)));
        self.rejects.push(entry, at);
        crate::metrics::error(reason.as_str());
    }

    /// Decodes, flattens and buffers one record. `source` is the record's stream position, for
    /// checkpoints.
    fn record(
        &mut self,
        raw: &[u8],
        pos: &Position,
        source: Option<StreamSource<'_>>,
    ) -> Result<(), PipelineError> {
        self.parsed(raw, parse_record(raw).as_ref(), pos, source)
    }

    /// Flattens and buffers one record decoded from `raw` (or rejects it).
    fn parsed(
        &mut self,
        raw: &[u8],
        parsed: Result<&ChangeRecord<'_>, &DecodeError>,
        pos: &Position,
        source: Option<StreamSource<'_>>,
    ) -> Result<(), PipelineError> {
        self.records += 1;
        self.bytes += raw.len() as u64;
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(raw.len() as u64, Ordering::Relaxed);
        let rec = match parsed {
            Ok(r) => r,
            Err(e) => {
                self.reject(e.reason, &e.message, None, pos, raw, source);
                return Ok(());
            }
        };
        let settings = self.settings;
        let table = match rec.table.as_deref().or(settings.default_table.as_deref()) {
            Some(t) => t,
            None => {
                self.reject(
                    Reason::NoTable,
                    "the record names no table (no tableName or eventSourceARN) and input.default_table is not set",
                    None,
                    pos,
                    raw,
                    source,
                );
                return Ok(());
            }
        };
        let ti = self.table_index(table);
        let time_us = match self.settings.partition_time {
            PartitionTime::Event => rec.event_time_us,
            // Stream records: the time they arrived, so that a re-read lands in the same place.
            PartitionTime::Processing => pos
                .arrival_ms
                .map_or_else(|| self.clock.now_utc_us(), |ms| ms * 1000),
        };
        let t = &mut self.tables[ti];
        let row = flatten(&mut t.schema, rec, pos, time_us, self.settings.flatten);
        if let Some(col) = row.too_long {
            let message = format!(
                "column `{}` holds more than {} bytes and its string policy is `reject`",
                t.schema.columns()[col].name,
                self.settings.flatten.strings.max_bytes
            );
            let table = t.schema.table.clone();
            drop(row);
            self.reject(
                Reason::StringTooLong,
                &message,
                Some(&table),
                pos,
                raw,
                source,
            );
            return Ok(());
        }
        for &c in &row.mismatched {
            *t.mismatches.entry(c).or_default() += 1;
        }
        for &c in &row.truncated {
            *t.truncated.entry(c).or_default() += 1;
        }
        t.unmapped += row.unmapped as u64;
        let path = self.settings.template.render(&t.schema, &row, time_us);
        let hour = time_us.div_euclid(HOUR_US);
        // Partitions are keyed as the exactly-once bookkeeping keys batches: by object prefix.
        // A folder that does not fix the hour holds several hours: one partition for all.
        let key_hour = if self.settings.template.fixes_hour() {
            hour
        } else {
            0
        };
        if let (Some(src), Some(m)) = (source, &mut self.marks) {
            let e = &mut m.event_max[src.shard];
            *e = Some(e.map_or(time_us, |v| v.max(time_us)));
        }
        // A record read again: in a batch of its partition, or of its partition's late rows.
        let route = match &self.replay {
            Some(r) if r.active() => {
                match Self::replay_route(&self.replay, &format!("{path}/{}-", t.schema.name), pos) {
                    Route::New => Self::replay_route(
                        &self.replay,
                        &format!("{path}/{}-late-", t.schema.name),
                        pos,
                    ),
                    r => r,
                }
            }
            _ => Route::New,
        };
        match route {
            Route::New => {}
            Route::Skip => {
                if let Some(r) = &mut self.replay {
                    r.skipped += 1;
                }
                return Ok(());
            }
            Route::Recreate(i) => {
                let done = self
                    .replay
                    .as_mut()
                    .and_then(|r| r.add_row(i, &t.schema, &row));
                drop(row);
                if let Some((batch, content)) = done {
                    self.recreated(batch, content);
                }
                return Ok(());
            }
        }
        // One reused buffer: formatting a new string per row showed in the profile.
        let mut position = std::mem::take(&mut self.position);
        position.clear();
        // Writing to a String cannot fail.
        let _ = match (pos.file, pos.shard) {
            (Some(f), _) => write!(position, "{f}#{}", pos.offset.unwrap_or_default()),
            (None, shard) => write!(
                position,
                "{}#{}#{}",
                shard.unwrap_or_default(),
                pos.sequence_number.unwrap_or_default(),
                pos.subsequence.map_or(String::new(), |s| s.to_string())
            ),
        };
        let late = match &mut self.marks {
            Some(m) => m.place(&t.schema.name, hour),
            None => false,
        };
        let key = PartKey {
            table: ti,
            path,
            hour: key_hour,
            late,
        };
        let flushes =
            self.buffers
                .push(key, &t.schema, &row, &position, source, self.clock.now_ms());
        drop(row);
        self.position = position;
        self.emit(flushes)?;
        if self.hold.is_none() && self.rejects.pending_bytes() >= REJECT_FLUSH_BYTES {
            self.flush_rejects()?;
        }
        Ok(())
    }

    /// Writes the pending error entries (batch runs; stream runs write them with their group).
    fn flush_rejects(&mut self) -> Result<(), PipelineError> {
        if self.hold.is_some() {
            return Ok(());
        }
        for f in self.rejects.take() {
            self.send(Out::Object {
                path: f.path,
                bytes: f.data,
                create_only: false,
            })?;
        }
        Ok(())
    }

    fn file(
        &mut self,
        file: &InputFile,
        reader: Box<dyn std::io::BufRead + Send>,
    ) -> Result<(), PipelineError> {
        let name = file.name();
        let (records, bytes) = (self.records, self.bytes);
        std::thread::scope(|scope| -> Result<(), PipelineError> {
            let (tx, rx) = std::sync::mpsc::sync_channel(DECODE_AHEAD);
            let (back_tx, back_rx) = std::sync::mpsc::channel();
            scope.spawn(move || decode_ahead(reader, tx, back_rx));
            // Ends when the decoding thread is done; an early return drops `rx`, which stops it.
            for chunk in rx {
                let chunk = chunk.map_err(|source| PipelineError::Read {
                    file: name.clone(),
                    source,
                })?;
                for (frame, parsed) in chunk.backing_cart().iter().zip(&chunk.get().0) {
                    let pos = Position {
                        file: Some(&name),
                        line: Some(frame.line),
                        offset: Some(frame.offset),
                        ..Position::default()
                    };
                    self.parsed(&frame.bytes, parsed.as_ref(), &pos, None)?;
                }
                // Freed by the thread that allocated it: glibc's allocator makes frees from another
                // thread contend (measured: 2.79 s against 1.9 s for 200,000 records).
                let _ = back_tx.send(chunk);
            }
            Ok(())
        })?;
        crate::metrics::records_in(self.records - records, self.bytes - bytes);
        crate::metrics::buffered(self.buffers.buffered_bytes());
        Ok(())
    }

    /// Flushes everything and sends the final schemas.
    fn finish(&mut self) -> Result<(), PipelineError> {
        let flushes = self.buffers.drain();
        self.emit(flushes)?;
        self.flush_rejects()?;
        for i in 0..self.tables.len() {
            self.save_schema_if_grown(i)?;
        }
        Ok(())
    }
}

/// Records parsed from a run of frames, borrowing from the frames' bytes.
#[derive(yoke::Yokeable)]
struct Parsed<'a>(Vec<Result<ChangeRecord<'a>, DecodeError>>);

/// A run of frames with their parsed records, sent from the decoding thread to the reading one.
type ParsedChunk = yoke::Yoke<Parsed<'static>, Vec<Frame>>;

/// Frames per chunk, and bytes per chunk, handed from the decoding thread to the reading one.
const CHUNK_FRAMES: usize = 1024;
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks decoded ahead of the reading thread (bounds the memory they hold).
const DECODE_AHEAD: usize = 4;

/// Frames and parses a file's records on its own thread, so that parsing (about half of the
/// reading side's work) runs beside flattening and buffering. Chunks arrive in input order.
fn decode_ahead(
    reader: Box<dyn std::io::BufRead + Send>,
    tx: std::sync::mpsc::SyncSender<std::io::Result<ParsedChunk>>,
    used: std::sync::mpsc::Receiver<ParsedChunk>,
) {
    let parse = |frames: Vec<Frame>| {
        yoke::Yoke::attach_to_cart(frames, |frames: &[Frame]| {
            Parsed(frames.iter().map(|f| parse_record(&f.bytes)).collect())
        })
    };
    let mut frames = Vec::with_capacity(CHUNK_FRAMES);
    let mut bytes = 0;
    for frame in Framer::new(reader) {
        match frame {
            Ok(frame) => {
                bytes += frame.bytes.len();
                frames.push(frame);
                if frames.len() == CHUNK_FRAMES || bytes >= CHUNK_BYTES {
                    used.try_iter().for_each(drop);
                    let full = std::mem::replace(&mut frames, Vec::with_capacity(CHUNK_FRAMES));
                    bytes = 0;
                    if tx.send(Ok(parse(full))).is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                if !frames.is_empty() {
                    let _ = tx.send(Ok(parse(std::mem::take(&mut frames))));
                }
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
    if !frames.is_empty() {
        let _ = tx.send(Ok(parse(frames)));
    }
}

#[derive(Default)]
struct WriterStats {
    rows_out: BTreeMap<String, u64>,
    files: u64,
    bytes: u64,
    flushes: BTreeMap<String, u64>,
    objects: Vec<ObjectInfo>,
    checkpoint: Option<crate::checkpoint::Checkpoint>,
    hours_completed: Vec<String>,
}

/// Where a writer stages an object it creates through a copy (`Location::put_new`): under the
/// state prefix, named by the object and this writer.
fn staging_name(state_prefix: &str, path: &str, nonce: &str) -> String {
    format!("{state_prefix}/staging/{nonce}/{path}")
}

async fn write_all(
    mut rx: mpsc::Receiver<Msg>,
    output: Option<Location>,
    mut checkpoints: Option<crate::checkpoint::CheckpointStore>,
    settings: Settings,
    dry_run: bool,
    counters: Arc<Counters>,
) -> Result<WriterStats, PipelineError> {
    let mut stats = WriterStats::default();
    // Staged copies of this writer are its own: two writers of one object never share one.
    let nonce = {
        use rand::Rng;
        format!("{:016x}", rand::rng().random::<u64>())
    };
    // Lengths of the data files written and not yet listed in a manifest.
    let mut lengths: HashMap<String, u64> = HashMap::new();
    let write = !dry_run && output.is_some();
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
                    let encoded = tokio::task::spawn_blocking(move || {
                        crate::encode::encode(&schema, batches, &encode_opts)
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
    while let Some(out) = ready.next().await {
        let out = match out? {
            Ready::Other(out) => out,
            Ready::Data {
                file:
                    DataFile {
                        path,
                        rows,
                        table,
                        reason,
                        create_only,
                    },
                encoded,
            } => {
                let mut len = encoded.len() as u64;
                if let (Some(out), true) = (&output, write) {
                    let bytes = Bytes::from(encoded);
                    let (threshold, part) = (settings.multipart_threshold, settings.part_size);
                    if create_only {
                        let staging = staging_name(&settings.state_prefix, &path, &nonce);
                        if let Some(existing) =
                            out.put_new(&path, bytes, threshold, part, &staging).await?
                        {
                            tracing::info!(
                                "{} was written before a restart; kept",
                                out.display(&path)
                            );
                            len = existing;
                        }
                    } else {
                        out.put(&path, bytes, threshold, part).await?;
                    }
                    crate::failpoint::hit("after-data");
                    tracing::info!(
                        rows,
                        bytes = len,
                        reason = reason.as_str(),
                        "wrote {}",
                        out.display(&path)
                    );
                }
                crate::metrics::file_written(&table, rows as u64, len, reason.as_str());
                lengths.insert(path.clone(), len);
                *stats.rows_out.entry(table).or_default() += rows as u64;
                *stats
                    .flushes
                    .entry(reason.as_str().to_string())
                    .or_default() += 1;
                stats.files += 1;
                stats.bytes += len;
                counters.files_written.fetch_add(1, Ordering::Relaxed);
                counters.bytes_written.fetch_add(len, Ordering::Relaxed);
                stats.objects.push(ObjectInfo {
                    path,
                    rows: rows as u64,
                    bytes: len,
                });
                continue;
            }
        };
        match out {
            Out::Data { .. } => unreachable!("data messages arrive encoded"),
            Out::Object {
                path,
                bytes,
                create_only,
            } => {
                if let (Some(out), true) = (&output, write) {
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
            }
            Out::Manifest { path, objects } => {
                let Some(out) = &output else { continue };
                let mut files = Vec::with_capacity(objects.len());
                for o in &objects {
                    let len = match lengths.remove(o) {
                        Some(l) => l,
                        None if write => out.size(o).await?,
                        None => 0,
                    };
                    files.push((out.display(o), len));
                }
                let body = crate::manifest::redshift(&files);
                if write {
                    out.put(&path, Bytes::from(body), usize::MAX, settings.part_size)
                        .await?;
                    tracing::debug!("wrote manifest {}", out.display(&path));
                    crate::failpoint::hit("after-manifest");
                }
            }
            Out::HourComplete {
                table,
                hour,
                folder,
            } => {
                let Some(out) = &output else { continue };
                if !write {
                    continue;
                }
                let files: Vec<(String, u64)> = out
                    .list(&format!("{folder}/"))
                    .await?
                    .into_iter()
                    // On-time files only: late ones are in the regular COPY manifests (a late
                    // file can be there already when a marker is written again after a crash).
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
                let body = crate::manifest::redshift(&files);
                out.put(&manifest, Bytes::from(body), usize::MAX, settings.part_size)
                    .await?;
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
                crate::metrics::hour_completed(&table);
                stats
                    .hours_completed
                    .push(format!("{table} {}", start.format("%Y-%m-%dT%H")));
            }
            Out::Checkpoint(cp, stage) => {
                if let (Some(store), false) = (checkpoints.as_mut(), dry_run) {
                    store.save(&cp).await?;
                    crate::metrics::checkpoint_saved();
                    tracing::debug!("saved checkpoint {} ({stage:?})", store.url());
                    if stage == Stage::Intent {
                        crate::failpoint::hit("after-intent");
                    }
                }
                stats.checkpoint = Some(cp);
            }
        }
    }
    Ok(stats)
}

/// Runs a batch export of `inputs` into the settings' output.
pub async fn export(
    settings: &Settings,
    inputs: &[String],
    opts: &RunOptions,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let output = if opts.schemas_out.is_some() && opts.dry_run && settings.output.is_empty() {
        None
    } else {
        Some(store::open(&settings.output, &settings.s3)?)
    };
    let tables = load_tables(settings, output.as_ref()).await?;
    let files = source::resolve(inputs, &settings.s3).await?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let writer = tokio::spawn(write_all(
        rx,
        output,
        None,
        settings.clone(),
        opts.dry_run,
        counters.clone(),
    ));

    let handle = tokio::runtime::Handle::current();
    let settings_r = settings.clone();
    let counters_r = counters.clone();
    let n_files = files.len();
    let reading = tokio::task::spawn_blocking(move || -> Result<_, PipelineError> {
        let mut r = Reader::new(&settings_r, clock.as_ref(), &counters_r, tables, tx);
        for file in &files {
            tracing::debug!("reading {}", file.name());
            let reader = handle.block_on(file.open())?;
            r.file(file, reader)?;
        }
        r.finish()?;
        Ok(r.into_result())
    });
    let read_result = reading
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
    // The writer's error explains a reader that stopped because the writer went away.
    let stats = writer
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))??;
    let read = read_result?;

    if let Some(dir) = &opts.schemas_out {
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::SchemaFile {
            path: dir.display().to_string(),
            problem: e.to_string(),
        })?;
        for t in &read.tables {
            let path = dir.join(format!("{}.toml", t.schema.name));
            let text = toml::to_string(&t.schema.to_file()).expect("schemas serialize");
            std::fs::write(&path, text).map_err(|e| PipelineError::SchemaFile {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
        }
    }

    let mut summary = summarize(read, stats, started, opts.dry_run);
    summary.input_files = n_files;
    Ok(summary)
}

/// What the reading side hands back at the end.
struct ReadResult {
    late: BTreeMap<String, u64>,
    tables: Vec<TableState>,
    rejects: Rejects,
    records: u64,
    bytes: u64,
    peak: usize,
}

fn summarize(read: ReadResult, stats: WriterStats, started: Instant, dry_run: bool) -> Summary {
    let mut summary = Summary {
        records_in: read.records,
        bytes_in: read.bytes,
        rows_out: stats.rows_out,
        errors: read
            .rejects
            .counts()
            .iter()
            .map(|(r, n)| (r.as_str().to_string(), *n))
            .collect(),
        files_written: stats.files,
        bytes_written: stats.bytes,
        flushes: stats.flushes,
        objects: stats.objects,
        peak_buffered_bytes: read.peak as u64,
        peak_rss_bytes: crate::summary::peak_rss_bytes(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        dry_run,
        checkpoint: stats.checkpoint,
        hours_completed: stats.hours_completed,
        late_rows: read.late,
        ..Summary::default()
    };
    for t in &read.tables {
        for (&col, &n) in &t.mismatches {
            let key = format!("{}.{}", t.schema.name, t.schema.columns()[col].name);
            summary.type_mismatches.insert(key, n);
        }
        for (&col, &n) in &t.truncated {
            let key = format!("{}.{}", t.schema.name, t.schema.columns()[col].name);
            summary.truncated_values.insert(key, n);
        }
        if t.unmapped > 0 {
            summary
                .unmapped_rows
                .insert(t.schema.name.clone(), t.unmapped);
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::generate::{generate, GenerateOptions, Shape};
    use std::io::Write as _;

    /// Generated change records, one per line, over one hour.
    fn sample(records: u64, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let opts = GenerateOptions {
            records,
            seed,
            shape: Shape::Kinesis,
            table: "orders".into(),
            start_ms: 1_793_520_000_000,
            hours: 1,
        };
        generate(&opts, &mut out).unwrap();
        out
    }

    async fn run(settings: &Settings, input: &std::path::Path) -> Result<Summary, PipelineError> {
        let inputs = [input.display().to_string()];
        let (clock, counters) = (SystemClock::default(), Counters::default());
        export(
            settings,
            &inputs,
            &RunOptions::default(),
            Arc::new(clock),
            Arc::new(counters),
        )
        .await
    }

    fn settings(output: &std::path::Path) -> Settings {
        let mut config = ConfigFile::default();
        config.output.url = Some(output.display().to_string());
        config.validate().expect("valid config")
    }

    /// Files are decoded on their own thread in chunks of `CHUNK_FRAMES`: bad lines on both
    /// sides of chunk boundaries are rejected with their own line numbers, every good line is one
    /// row, and the rows keep the input order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_keep_every_line_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample(2 * CHUNK_FRAMES as u64 + 500, 3);
        let mut lines: Vec<Vec<u8>> = records
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        // 1-based line numbers of bad lines: the last of the first chunk, the first of the
        // second, the last of the second, and the very last line.
        let n = lines.len() + 1;
        let bad = [CHUNK_FRAMES, CHUNK_FRAMES + 1, 2 * CHUNK_FRAMES, n];
        for &b in &bad[..3] {
            lines[b - 1] = format!("{{\"not a record\": {b}").into_bytes();
        }
        lines.push(b"{\"truncated".to_vec());
        let input = dir.path().join("in.jsonl");
        let mut f = std::fs::File::create(&input).unwrap();
        for l in &lines {
            f.write_all(l).unwrap();
            f.write_all(b"\n").unwrap();
        }
        drop(f);
        let out = dir.path().join("lake");
        let s = settings(&out);
        let summary = run(&s, &input).await.unwrap();
        assert_eq!(summary.records_in, n as u64);
        assert_eq!(summary.rows_total(), (n - bad.len()) as u64);
        assert_eq!(summary.errors_total(), bad.len() as u64);

        // The error entries name exactly the bad lines.
        let mut err_lines = Vec::new();
        for entry in walk(&out.join(&s.error_prefix)) {
            for l in std::fs::read_to_string(entry).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                err_lines.push(v["source"]["line"].as_u64().unwrap() as usize);
            }
        }
        err_lines.sort();
        assert_eq!(err_lines, bad);

        // The rows hold every good line's number once, in input order.
        let files: Vec<_> = walk(&out.join("orders"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        assert_eq!(files.len(), 1);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&files[0]).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let mut got = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch
                .column_by_name("cdc_source_line")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap()
                .clone();
            got.extend(col.values().iter().map(|&v| v as usize));
        }
        let want: Vec<usize> = (1..=n).filter(|l| !bad.contains(l)).collect();
        assert_eq!(got, want);
    }

    /// A file that cannot be read to its end (a gzip stream cut short) stops the run with an
    /// error naming the file, after the decoding thread hands over what it read before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample(3000, 4);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&records).unwrap();
        let gz = gz.finish().unwrap();
        let input = dir.path().join("cut.jsonl.gz");
        std::fs::write(&input, &gz[..gz.len() / 2]).unwrap();
        let out = dir.path().join("lake");
        let err = run(&settings(&out), &input).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, PipelineError::Read { .. }) && text.contains("cut.jsonl.gz"),
            "{text}"
        );
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        crate::source::walk(dir, &mut out).unwrap();
        out
    }
}
