//! What the intake sends to the writer: flushes named as objects (with their table's schema
//! first when it grew, then a COPY manifest per table), error files, re-created batches, and,
//! in stream runs, the flush group held for the next checkpoint.

use std::collections::BTreeMap;

use super::{Intake, StreamState, REJECT_FLUSH_BYTES};
use crate::buffer::{Flush, FlushReason, PartKey};
use crate::checkpoint::PendingBatch;
use crate::config::{Settings, SortRows};
use crate::item::key::KeyColumns;
use crate::pipeline::commit::{self, Held, Recreated};
use crate::pipeline::compaction::{is_staged, staged_dir, Compaction};
use crate::pipeline::writer::{in_flight_kib, DataFile, Out, RowOrder};
use crate::pipeline::PipelineError;
use crate::store;

impl Intake<'_> {
    /// Sends the partitions of `table`'s `hour` (a lake table name; hours since the epoch).
    pub(in crate::pipeline) fn flush_hour(
        &mut self,
        table: &str,
        hour: i64,
    ) -> Result<(), PipelineError> {
        match self.lake_table(table) {
            Some(ti) => {
                let keys = self.buffers.hour(ti, hour);
                self.emit_each(keys, FlushReason::HourComplete)
            }
            None => Ok(()),
        }
    }

    /// Stream runs: whether the error entries waiting should be written now (they are as large as
    /// a batch run's error flush, or as old as the flush age), even if no partition flushes.
    pub(in crate::pipeline) fn rejects_due(&self) -> bool {
        let Some(since) = self.stream.as_ref().and_then(|s| s.rejects_since_ms) else {
            return false;
        };
        self.rejects.pending_bytes() >= REJECT_FLUSH_BYTES
            || self
                .settings
                .flush
                .max_age_ms
                .is_some_and(|age| self.clock.now_ms().saturating_sub(since) >= age)
    }

    /// The object prefix of a partition's batches: `{folder}/{table}-`, `{folder}/{table}-late-`
    /// for late rows, or with compaction an on-time hour's staging folder.
    pub(super) fn batch_prefix(
        settings: &Settings,
        stream: &Option<StreamState>,
        (table, folder, hour): (&str, &str, i64),
        late: bool,
    ) -> String {
        let marks = stream.as_ref().is_some_and(|st| st.marks.is_some());
        match (late, marks && settings.compact.is_some()) {
            (true, _) => format!("{folder}/{table}-late-"),
            (false, true) => format!("{}/{table}-", staged_dir(settings, table, hour)),
            (false, false) => format!("{folder}/{table}-"),
        }
    }

    /// What the writer needs to compact `table`'s `hour` (`None` without compaction).
    pub(in crate::pipeline) fn compaction(&mut self, table: &str, hour: i64) -> Option<Compaction> {
        self.settings.compact?;
        let ti = self.lake_table(table)?;
        Some(Compaction {
            staged: staged_dir(self.settings, table, hour),
            schema: self.tables[ti].schema.arrow_schema(),
            key: self.key_columns(ti),
        })
    }

    /// A table's key columns, for sorting (`None` when its key is not known yet).
    pub(in crate::pipeline) fn key_columns(&self, table: usize) -> Option<KeyColumns> {
        KeyColumns::of(&self.tables[table].schema, None).ok()
    }

    /// The order of a data file's rows: a staged file's by item, for compaction; others as
    /// `[parquet] sort_rows` says, as read while the table's key is not known.
    fn row_order(&self, table: usize, object: &str) -> RowOrder {
        if is_staged(self.settings, object) {
            return RowOrder::Staged(self.key_columns(table));
        }
        let only_if_repeated = match self.settings.sort_rows {
            SortRows::None => return RowOrder::AsRead,
            SortRows::Key => false,
            SortRows::Auto => true,
        };
        match self.key_columns(table) {
            Some(key) => RowOrder::ByKey {
                key,
                only_if_repeated,
            },
            None => RowOrder::AsRead,
        }
    }

    pub(in crate::pipeline) fn send(&self, out: Out) -> Result<(), PipelineError> {
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
    pub(super) fn save_schema_if_grown(&mut self, table: usize) -> Result<(), PipelineError> {
        let t = &mut self.tables[table];
        if t.schema.generation() == t.saved_generation {
            return Ok(());
        }
        t.saved_generation = t.schema.generation();
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
    pub(in crate::pipeline) fn flush_aged(&mut self) -> Result<(), PipelineError> {
        let keys = self.buffers.aged(self.clock.now_ms());
        self.emit_each(keys, FlushReason::Age)
    }

    /// Flushes these partitions one at a time (a spilled partition's rows come back from disk
    /// as it is sent), as one group: one COPY manifest per table (batch runs).
    fn emit_each(&mut self, keys: Vec<PartKey>, reason: FlushReason) -> Result<(), PipelineError> {
        let mut group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in keys {
            if let Some(f) = self
                .buffers
                .take(&k, reason)
                .map_err(PipelineError::Spill)?
            {
                self.emit_one(f, &mut group)?;
            }
        }
        self.send_manifests(group)
    }

    /// Sends flushes to the writer (each preceded by its table's schema when it grew) and then a
    /// COPY manifest per table; stream runs hold them for the next checkpoint instead.
    pub(super) fn emit(&mut self, flushes: Vec<Flush>) -> Result<(), PipelineError> {
        let mut group: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in flushes {
            self.emit_one(f, &mut group)?;
        }
        self.send_manifests(group)
    }

    /// A COPY manifest per table for the files of a group (batch runs; empty in stream runs).
    fn send_manifests(
        &mut self,
        group: BTreeMap<String, Vec<String>>,
    ) -> Result<(), PipelineError> {
        for (table, objects) in group {
            let path = commit::manifest_name(&self.settings.state_prefix, &table, &objects);
            self.send(Out::Manifest { path, objects })?;
        }
        Ok(())
    }

    /// Names one flush and sends it (batch runs, adding it to `group`) or holds it for the next
    /// checkpoint (stream runs).
    fn emit_one(
        &mut self,
        f: Flush,
        group: &mut BTreeMap<String, Vec<String>>,
    ) -> Result<(), PipelineError> {
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
        let table = t.schema.name.clone();
        let part = (table.as_str(), f.key.path.as_str(), f.key.hour);
        let prefix = Self::batch_prefix(self.settings, &self.stream, part, f.key.late);
        let path = format!("{prefix}{hash}.parquet");
        let order = self.row_order(f.key.table, &path);
        let t = &mut self.tables[f.key.table];
        let out = Out::Data {
            file: DataFile {
                path: path.clone(),
                rows: f.rows,
                table: table.clone(),
                reason: f.reason,
                create_only: self.stream.is_some(),
                order,
            },
            schema: t.schema.arrow_schema(),
            batches: f.batches,
        };
        match &mut self.stream {
            Some(st) => {
                let batch = PendingBatch {
                    object: path,
                    prefix,
                    table: Some(table),
                    rows: f.rows as u64,
                    manifest: None,
                    hour: (st.marks.is_some() && !f.key.late).then_some(f.key.hour),
                    shards: f
                        .ranges
                        .into_iter()
                        .map(|(i, r)| (st.shard_ids[i].to_string(), r))
                        .collect(),
                };
                st.held.push(Held { out, batch });
            }
            None => {
                self.send(out)?;
                group.entry(table).or_default().push(path);
            }
        }
        Ok(())
    }

    /// Takes the flush group prepared since the last checkpoint, with the error files, each
    /// data file assigned to its table's manifest.
    pub(in crate::pipeline) fn take_group(&mut self) -> Vec<Held> {
        let mut held = match &mut self.stream {
            Some(st) => {
                st.rejects_since_ms = None;
                std::mem::take(&mut st.held)
            }
            None => Vec::new(),
        };
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
            // Staged files are in no COPY manifest: their hour's compacted files are.
            if is_staged(self.settings, &h.batch.object) {
                continue;
            }
            if let (Some(t), None) = (&h.batch.table, &h.batch.manifest) {
                by_table
                    .entry(t.clone())
                    .or_default()
                    .push(h.batch.object.clone());
            }
        }
        for h in &mut held {
            if is_staged(self.settings, &h.batch.object) {
                continue;
            }
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

    /// Holds a re-created batch for the next checkpoint, and its manifest once all its files are.
    pub(super) fn recreated(&mut self, batch: PendingBatch, content: Recreated) {
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
                        order: self.row_order(ti, &batch.object),
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
        if let Some(st) = &mut self.stream {
            st.held.push(Held { out, batch });
        }
    }

    /// Writes the pending error entries (batch runs; stream runs write them with their group).
    pub(super) fn flush_rejects(&mut self) -> Result<(), PipelineError> {
        if self.stream.is_some() {
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

    /// Flushes everything and sends the final schemas.
    pub(in crate::pipeline) fn finish(&mut self) -> Result<(), PipelineError> {
        let keys = self.buffers.all();
        self.emit_each(keys, FlushReason::EndOfInput)?;
        self.flush_rejects()?;
        for i in 0..self.tables.len() {
            self.save_schema_if_grown(i)?;
        }
        Ok(())
    }
}
