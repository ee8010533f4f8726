//! The intake: the record processing path, one record in (decoded, flattened, routed to its
//! table and partition, buffered) and named flushes out to the writer. Stream runs add their
//! state (the flush group held for the next checkpoint, the replay of a previous run's pending
//! batches, shard ids, hour markers).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::commit::{Held, Replay, Route};
use super::decode_ahead::{decode_ahead, parse_threads, Entry, Parser, CHUNK_FRAMES};
use super::export::ReadResult;
use super::lake::TableState;
use super::markers::{Marks, HOUR_US};
use super::writer::{in_flight_kib, Msg};
use super::{Clock, PipelineError};
use crate::buffer::{Buffers, PartKey, StreamSource};
use crate::config::{PartitionTime, Settings};
use crate::decode::{
    parse_record, ChangeRecord, DecodeError, Item, MapView, Reason, RecordView, Tape,
};
use crate::flatten::{flatten, Position};
use crate::reject::Rejects;
use crate::schema::TableSchema;
use crate::seq::SeqPos;
use crate::source::InputFile;
use crate::summary::Counters;

mod emit;
mod sdk;

use sdk::Raw;

/// Error entries buffered before they are written.
const REJECT_FLUSH_BYTES: usize = 8 * 1024 * 1024;
/// Bad records logged one by one before the log only counts them.
const LOGGED_REJECTS: u64 = 20;

/// The record processing path: owns schemas, buffers and pending error entries.
pub(super) struct Intake<'a> {
    settings: &'a Settings,
    /// The current row's position text (reused between rows).
    position: String,
    /// The fast decoder's tape for stream records, reused from record to record.
    tape: Tape,
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
    /// Records the filter kept out, per DynamoDB table.
    filtered: BTreeMap<String, u64>,
    /// Flushes sent to the writer so far.
    flushes: u64,
    /// Stream runs only.
    stream: Option<StreamState>,
    /// What the metrics have been told so far: error entries per reason, late rows per table.
    reported_errors: BTreeMap<Reason, u64>,
    reported_late: BTreeMap<String, u64>,
    reported_filtered: BTreeMap<String, u64>,
}

/// The intake's part that only stream runs have: what the exactly-once protocol adds.
pub(super) struct StreamState {
    /// The flush group being prepared, written at the next checkpoint.
    pub(super) held: Vec<Held>,
    /// The previous run's progress, while records are read again.
    pub(super) replay: Replay,
    /// Shard ids by index.
    pub(super) shard_ids: Vec<Arc<str>>,
    /// With hour markers: hours seen, hours marked, late rows.
    pub(super) marks: Option<Marks>,
    /// When the oldest error entry not yet written was added (monotonic ms).
    rejects_since_ms: Option<u64>,
}

impl StreamState {
    /// A stream run's state at its start: the previous run's progress to replay, markers if on.
    pub(super) fn new(replay: Replay, marks: Option<Marks>) -> Self {
        StreamState {
            held: Vec::new(),
            replay,
            shard_ids: Vec::new(),
            marks,
            rejects_since_ms: None,
        }
    }
}

impl<'a> Intake<'a> {
    pub(super) fn new(
        settings: &'a Settings,
        clock: &'a dyn Clock,
        counters: &'a Counters,
        tables: Vec<TableState>,
        tx: mpsc::Sender<Msg>,
        stream: Option<StreamState>,
    ) -> Self {
        let by_name = tables
            .iter()
            .enumerate()
            .map(|(i, t)| (t.schema.table.clone(), i))
            .collect();
        Intake {
            settings,
            position: String::new(),
            tape: Tape::default(),
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
            filtered: BTreeMap::new(),
            flushes: 0,
            stream,
            reported_errors: BTreeMap::new(),
            reported_late: BTreeMap::new(),
            reported_filtered: BTreeMap::new(),
        }
    }

    /// Tells the metrics what the last batch of records added (error entries, late rows) and
    /// how much is buffered: once per batch, never per record.
    pub(in crate::pipeline) fn report_batch(&mut self) {
        for (reason, &n) in self.rejects.counts() {
            let told = self.reported_errors.entry(*reason).or_default();
            if n > *told {
                crate::metrics::errors(reason.as_str(), n - *told);
                *told = n;
            }
        }
        if let Some(m) = self.stream.as_ref().and_then(|s| s.marks.as_ref()) {
            for (table, &n) in &m.late {
                let told = self.reported_late.entry(table.clone()).or_default();
                if n > *told {
                    crate::metrics::late_rows(table, n - *told);
                    *told = n;
                }
            }
        }
        for (table, &n) in &self.filtered {
            let told = self.reported_filtered.entry(table.clone()).or_default();
            if n > *told {
                crate::metrics::filtered(table, n - *told);
                *told = n;
            }
        }
        crate::metrics::buffered(self.buffers.buffered_bytes());
    }

    /// Stream runs: the stream-only state.
    pub(super) fn stream(&self) -> Option<&StreamState> {
        self.stream.as_ref()
    }

    /// Stream runs: the stream-only state, to change.
    pub(super) fn stream_mut(&mut self) -> Option<&mut StreamState> {
        self.stream.as_mut()
    }

    /// The injected clock's time, µs since the epoch.
    pub(super) fn now_utc_us(&self) -> i64 {
        self.clock.now_utc_us()
    }

    /// Flushes sent to the writer so far.
    pub(super) fn flushes(&self) -> u64 {
        self.flushes
    }

    /// The buffers (for their positions and sizes).
    pub(super) fn buffers(&self) -> &Buffers {
        &self.buffers
    }

    pub(super) fn into_result(self) -> ReadResult {
        ReadResult {
            late: self
                .stream
                .and_then(|s| s.marks)
                .map(|m| m.late)
                .unwrap_or_default(),
            peak: self.buffers.peak_bytes(),
            spilled: self.buffers.spilled().1,
            tables: self.tables,
            rejects: self.rejects,
            records: self.records,
            bytes: self.bytes,
            filtered: self.filtered,
        }
    }

    pub(super) fn table_index(&mut self, name: &str) -> usize {
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
            saved_generation: u64::MAX,
            mismatches: BTreeMap::new(),
            truncated: BTreeMap::new(),
            unmapped: 0,
        });
        let i = self.tables.len() - 1;
        self.by_name.insert(name.to_string(), i);
        i
    }

    /// The index of a table by its lake name.
    fn lake_table(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.schema.name == name)
    }

    /// Routes a record read again after a restart (stream runs).
    fn replay_route(stream: &Option<StreamState>, prefix: &str, pos: &Position) -> Route {
        match (
            stream.as_ref().map(|s| &s.replay),
            pos.shard,
            pos.sequence_number,
        ) {
            (Some(r), Some(shard), Some(seq)) if r.active() => r.route(
                prefix,
                shard,
                &SeqPos::new(seq, pos.subsequence.unwrap_or(0)),
            ),
            _ => Route::New,
        }
    }

    pub(super) fn reject(
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
        match Self::replay_route(&self.stream, &entry.prefix, pos) {
            Route::Skip => {
                if let Some(st) = &mut self.stream {
                    st.replay.skipped += 1;
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
                    .stream
                    .as_mut()
                    .and_then(|st| st.replay.add_entry(i, shard, at, &entry.line));
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
        let now_ms = self.clock.now_ms();
        let at = match (source, &mut self.stream) {
            (Some(s), Some(st)) => {
                st.rejects_since_ms.get_or_insert(now_ms);
                Some((&*st.shard_ids[s.shard], s.prev, SeqPos::new(s.seq, s.sub)))
            }
            (None, Some(st)) => {
                st.rejects_since_ms.get_or_insert(now_ms);
                None
            }
            _ => None,
        };
        self.rejects.push(entry, at);
    }

    /// Decodes, flattens and buffers one record. `source` is the record's stream position, for
    /// checkpoints.
    pub(super) fn record(
        &mut self,
        raw: &[u8],
        pos: &Position,
        source: Option<StreamSource<'_>>,
    ) -> Result<(), PipelineError> {
        self.text(raw, raw.into(), pos, source)
    }

    /// Decodes `text`, the JSON of the record `raw` (its own bytes, or the SDK record it was
    /// written from), then flattens and buffers it.
    fn text(
        &mut self,
        text: &[u8],
        raw: Raw<'_>,
        pos: &Position,
        source: Option<StreamSource<'_>>,
    ) -> Result<(), PipelineError> {
        if self.settings.filter.is_empty() {
            let mut tape = std::mem::take(&mut self.tape);
            tape.clear();
            let fast = std::str::from_utf8(text)
                .ok()
                .and_then(|doc| Some((doc, tape.parse_str(doc)?)));
            let done = match fast {
                Some((doc, head)) => self.parsed(raw, Ok(tape.view(doc, &head)), None, pos, source),
                None => self.decoded(raw, parse_record(text).as_ref(), pos, source),
            };
            self.tape = tape;
            return done;
        }
        self.decoded(raw, parse_record(text).as_ref(), pos, source)
    }

    /// Flattens and buffers one record the reference decoder decoded from `raw` (or rejects it).
    fn decoded(
        &mut self,
        raw: Raw<'_>,
        decoded: Result<&ChangeRecord<'_>, &DecodeError>,
        pos: &Position,
        source: Option<StreamSource<'_>>,
    ) -> Result<(), PipelineError> {
        match decoded {
            Ok(rec) => self.parsed(raw, Ok(rec.view()), Some(rec), pos, source),
            Err(e) => self.parsed::<&Item>(raw, Err(e), None, pos, source),
        }
    }

    /// Flattens and buffers one record decoded from `raw` (or rejects it). `full` is the
    /// reference decoder's record, which the filter reads; `None` only when no filter is set.
    fn parsed<'r, M: MapView<'r>>(
        &mut self,
        raw: Raw<'_>,
        parsed: Result<RecordView<'r, M>, &DecodeError>,
        full: Option<&ChangeRecord<'_>>,
        pos: &Position,
        source: Option<StreamSource<'_>>,
    ) -> Result<(), PipelineError> {
        self.records += 1;
        let size = raw.size();
        self.bytes += size as u64;
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(size as u64, Ordering::Relaxed);
        let rec = match parsed {
            Ok(r) => r,
            Err(e) => {
                self.reject(e.reason, &e.message, None, pos, &raw.bytes(), source);
                return Ok(());
            }
        };
        let settings = self.settings;
        let table = match rec.table.or(settings.default_table.as_deref()) {
            Some(t) => t,
            None => {
                self.reject(
                    Reason::NoTable,
                    "the record names no table (no tableName or eventSourceARN) and input.default_table is not set",
                    None,
                    pos,
                    &raw.bytes(),
                    source,
                );
                return Ok(());
            }
        };
        let passes = || match full {
            Some(full) => settings.filter.passes(full, table),
            None => unreachable!("records without their tree are read only with no filter set"),
        };
        if !settings.filter.is_empty() && !passes() {
            // Counted, and nothing else: its shard's checkpoint moves past it like any record's.
            *self.filtered.entry(table.to_string()).or_default() += 1;
            return Ok(());
        }
        let ti = self.table_index(table);
        let time_us = match self.settings.partition_time {
            PartitionTime::Event => rec.event_time_us,
            // Stream records: the time they arrived, so that a re-read lands in the same place.
            PartitionTime::Processing => pos
                .arrival_ms
                .map_or_else(|| self.clock.now_utc_us(), |ms| ms * 1000),
        };
        let t = &mut self.tables[ti];
        let row = flatten(&mut t.schema, &rec, pos, time_us, self.settings.flatten);
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
                &raw.bytes(),
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
        let marks = self.stream.as_mut().and_then(|st| st.marks.as_mut());
        if let (Some(src), Some(m)) = (source, marks) {
            let e = &mut m.event_max[src.shard];
            *e = Some(e.map_or(time_us, |v| v.max(time_us)));
        }
        // A record read again: in a batch of its partition, or of its partition's late rows.
        let route = match &self.stream {
            Some(st) if st.replay.active() => {
                let name = &t.schema.name;
                let part = (name.as_str(), path.as_str(), hour);
                let on_time = Self::batch_prefix(self.settings, &self.stream, part, false);
                match Self::replay_route(&self.stream, &on_time, pos) {
                    Route::New => Self::replay_route(
                        &self.stream,
                        &Self::batch_prefix(self.settings, &self.stream, part, true),
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
                if let Some(st) = &mut self.stream {
                    st.replay.skipped += 1;
                }
                return Ok(());
            }
            Route::Recreate(i) => {
                let done = self
                    .stream
                    .as_mut()
                    .and_then(|st| st.replay.add_row(i, &t.schema, &row));
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
        let late = match self.stream.as_mut().and_then(|st| st.marks.as_mut()) {
            Some(m) => m.place(&t.schema.name, hour),
            None => false,
        };
        let key = PartKey {
            table: ti,
            path,
            hour: key_hour,
            late,
        };
        let flushes = self
            .buffers
            .push(key, &t.schema, &row, &position, source, self.clock.now_ms())
            .map_err(PipelineError::Spill)?;
        drop(row);
        self.position = position;
        self.emit(flushes)?;
        if self.stream.is_none() && self.rejects.pending_bytes() >= REJECT_FLUSH_BYTES {
            self.flush_rejects()?;
        }
        Ok(())
    }

    /// Reads one file's records; returns how many it held.
    pub(super) fn file(
        &mut self,
        file: &InputFile,
        reader: Box<dyn std::io::BufRead + Send>,
        parser: Parser,
    ) -> Result<u64, PipelineError> {
        let name = file.name();
        let (records, bytes) = (self.records, self.bytes);
        std::thread::scope(|scope| -> Result<(), PipelineError> {
            let fast = self.settings.filter.is_empty();
            let threads = parse_threads(&parser);
            let mut chunks =
                decode_ahead(scope, reader, parser.clone(), fast, threads, CHUNK_FRAMES);
            // Ends when the decoding threads are done; an early return drops `chunks`, which
            // stops them.
            while let Some(chunk) = chunks.next() {
                let chunk = chunk.map_err(|source| PipelineError::Read {
                    file: name.clone(),
                    source,
                })?;
                let cart = chunk.backing_cart();
                for (frame, entry) in cart.frames.iter().zip(&chunk.get().0) {
                    if parser.is_marker(frame) {
                        continue;
                    }
                    let pos = Position {
                        file: Some(&name),
                        line: Some(frame.line),
                        offset: Some(frame.offset),
                        ..Position::default()
                    };
                    match entry {
                        Entry::Fast(head, text) => {
                            let rec = parser.view(&cart.tape, text, head);
                            self.parsed(text.as_bytes().into(), Ok(rec), None, &pos, None)?
                        }
                        Entry::Slow(decoded) => {
                            self.decoded(Raw::Bytes(&frame.bytes), decoded.as_ref(), &pos, None)?
                        }
                    }
                }
                chunks.give_back(chunk);
            }
            Ok(())
        })?;
        crate::metrics::records_in(self.records - records, self.bytes - bytes);
        self.report_batch();
        Ok(self.records - records)
    }
}
