//! The processing side of a stream run: records in through the intake, flush groups and
//! checkpoints out. It holds the exactly-once protocol's moving parts: KPL de-aggregation, the
//! intent and commit of each flush group, re-created batches of a previous run, the event-time
//! watermark and complete hours, and the bounds every checkpoint keeps (docs/DESIGN.md,
//! "Exactly once").

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::Event;
use crate::buffer::StreamSource;
use crate::checkpoint::{Checkpoint, PendingBatch};
use crate::config::Settings;
use crate::flatten::Position;
use crate::kinesis::{kpl, ShardEvent};
use crate::pipeline::commit::{self, Replay};
use crate::pipeline::export::ReadResult;
use crate::pipeline::intake::{Intake, StreamState};
use crate::pipeline::lake::TableState;
use crate::pipeline::markers::{Marks, HOUR_US};
use crate::pipeline::writer::{Msg, Out, Save};
use crate::pipeline::{Clock, PipelineError};
use crate::summary::Counters;

struct ShardProgress {
    id: Arc<str>,
    /// The last sequence number read (or checkpointed before this run).
    last: Option<String>,
    ended: bool,
    /// At its tip: holds no hour open.
    idle: bool,
    start_ms: Option<i64>,
}

/// The processing side: records in, flushes and checkpoints out.
pub(in crate::pipeline) struct Processor<'a> {
    settings: &'a Settings,
    intake: Intake<'a>,
    shards: Vec<ShardProgress>,
    by_id: HashMap<Arc<str>, usize>,
    checkpoint: Checkpoint,
    flushes_at_checkpoint: u64,
    /// Manifests named by the previous run's pending batches.
    previous_manifests: HashSet<String>,
    /// Hours marked complete whose markers are not written yet (saved in the checkpoint).
    completing: BTreeSet<(String, i64)>,
    /// Re-created batches written whose manifest waits for other re-created batches.
    waiting: Vec<PendingBatch>,
    /// Scheduled runs: the arrival time they read up to (µs); records after it are unread.
    until_us: Option<i64>,
    /// Every readable shard has been started since the last one ended (`Event::Settled`).
    settled: bool,
}

impl<'a> Processor<'a> {
    /// The processing side of a run that starts from `checkpoint`, sending to the writer.
    pub(in crate::pipeline) fn new(
        settings: &'a Settings,
        clock: &'a dyn Clock,
        counters: &'a Counters,
        tables: Vec<TableState>,
        checkpoint: Checkpoint,
        tx: mpsc::Sender<Msg>,
    ) -> Self {
        let marks = settings.markers.map(|_| Marks {
            open_hours: checkpoint.open_hours.clone(),
            marked_through: checkpoint.marked_through.clone(),
            ..Marks::default()
        });
        let stream = StreamState::new(Replay::new(&checkpoint), marks);
        let intake = Intake::new(settings, clock, counters, tables, tx, Some(stream));
        Processor {
            settings,
            intake,
            shards: Vec::new(),
            by_id: HashMap::new(),
            previous_manifests: commit::manifests_of(&checkpoint.pending)
                .into_keys()
                .collect(),
            completing: checkpoint
                .completing
                .iter()
                .flat_map(|(t, hours)| hours.iter().map(move |h| (t.clone(), *h)))
                .collect(),
            waiting: Vec::new(),
            checkpoint,
            flushes_at_checkpoint: 0,
            until_us: None,
            settled: false,
        }
    }

    /// A scheduled run's cutoff (`until_ms`): when every shard is at its tip, the watermark
    /// moves to the clock's time, but never past it.
    pub(in crate::pipeline) fn until(mut self, until_ms: i64) -> Self {
        self.until_us = Some(until_ms.saturating_mul(1000));
        self
    }

    /// Flushes everything, writes the last group and checkpoint, and hands back what was read.
    pub(in crate::pipeline) fn finish(mut self) -> Result<ReadResult, PipelineError> {
        self.intake.finish()?;
        self.save_checkpoint()?;
        {
            let r = &self.st().replay;
            for b in r.incomplete() {
                tracing::warn!(
                    "{} of the previous run was not re-created: not all of its {} records were read again; it stays pending for the next run",
                    b.object,
                    b.rows
                );
            }
            if r.skipped > 0 {
                tracing::info!("{} records read again were already written", r.skipped);
            }
        }
        Ok(self.intake.into_result())
    }

    /// The intake's stream state (a stream run's intake always has it).
    fn st(&self) -> &StreamState {
        self.intake
            .stream()
            .expect("a stream run's intake has its stream state")
    }

    fn st_mut(&mut self) -> &mut StreamState {
        self.intake
            .stream_mut()
            .expect("a stream run's intake has its stream state")
    }

    fn shard(&mut self, id: &Arc<str>) -> usize {
        if let Some(&i) = self.by_id.get(id) {
            return i;
        }
        let last = self
            .checkpoint
            .shards
            .get(&**id)
            .and_then(|c| c.sequence_number.clone());
        self.shards.push(ShardProgress {
            id: id.clone(),
            last,
            ended: false,
            idle: false,
            start_ms: None,
        });
        let st = self.st_mut();
        st.shard_ids.push(id.clone());
        if let Some(m) = &mut st.marks {
            m.event_max.push(None);
        }
        self.by_id.insert(id.clone(), self.shards.len() - 1);
        self.shards.len() - 1
    }

    pub(in crate::pipeline) fn handle(&mut self, ev: Event) -> Result<(), PipelineError> {
        match ev {
            Event::Started { shard, start_ms } => {
                let i = self.shard(&shard);
                self.shards[i].start_ms = start_ms;
                // A start at a time (LATEST, AT_TIMESTAMP) is saved before anything of the shard
                // is written: a restart starts there too instead of at its own "now", which would
                // skip what arrived in between.
                let known = self
                    .checkpoint
                    .shards
                    .get(&*shard)
                    .and_then(|c| c.start_timestamp_ms);
                if start_ms.is_some() && known != start_ms {
                    self.save_checkpoint()?;
                }
            }
            Event::Shard(ShardEvent::Idle { shard }) => {
                let i = self.shard(&shard);
                self.shards[i].idle = true;
            }
            Event::Shard(ShardEvent::Records { shard, records }) => {
                let i = self.shard(&shard);
                self.shards[i].idle = false;
                let bytes: usize = records.iter().map(|r| r.size()).sum();
                crate::metrics::records_in(records.len() as u64, bytes as u64);
                for rec in &records {
                    let prev = self.shards[i].last.take();
                    let source = |sub| {
                        Some(StreamSource {
                            shard: i,
                            prev: prev.as_deref(),
                            seq: &rec.sequence_number,
                            sub,
                        })
                    };
                    let pos = Position {
                        shard: Some(&shard),
                        sequence_number: Some(&rec.sequence_number),
                        arrival_ms: Some(rec.arrival_ms),
                        ..Position::default()
                    };
                    if let Some(sdk) = &rec.sdk {
                        self.intake.sdk_record(sdk, &pos, source(0))?;
                        self.shards[i].last = Some(rec.sequence_number.clone());
                        continue;
                    }
                    match kpl::deaggregate(&rec.data) {
                        Some(parts) => {
                            for (sub, part) in parts.iter().enumerate() {
                                let pos = Position {
                                    subsequence: Some(sub as u64),
                                    ..pos.clone()
                                };
                                self.intake.record(part, &pos, source(sub as u64))?;
                            }
                        }
                        None => self.intake.record(&rec.data, &pos, source(0))?,
                    }
                    self.shards[i].last = Some(rec.sequence_number.clone());
                }
                if let Some(last) = records.last() {
                    let r = &mut self.st_mut().replay;
                    r.passed(&shard, &last.sequence_number);
                }
            }
            Event::Shard(ShardEvent::Ended { shard }) => {
                let i = self.shard(&shard);
                self.shards[i].ended = true;
                // Its children (if any) are started next: until then the stream is not quiet.
                self.settled = false;
                self.save_checkpoint()?;
            }
            Event::Tick => self.intake.flush_aged()?,
            Event::Settled => self.settled = true,
        }
        self.complete_hours()?;
        if self.intake.flushes() != self.flushes_at_checkpoint
            || !self.markers_due().is_empty()
            || self.intake.rejects_due()
        {
            self.save_checkpoint()?;
        }
        self.intake.report_batch();
        Ok(())
    }

    /// Writes the flush group prepared since the last checkpoint: the intent checkpoint naming
    /// its objects, the objects, their manifests, then the commit checkpoint (docs/DESIGN.md,
    /// "Exactly once"). With nothing to write, just the progress.
    fn save_checkpoint(&mut self) -> Result<(), PipelineError> {
        let group = self.intake.take_group();
        let carried = self.carried();
        let batches: Vec<PendingBatch> = group.iter().map(|h| h.batch.clone()).collect();
        let markers = self.markers_due();
        // The intent also records the hours this save marks complete: once a marker may exist,
        // a restart must treat its hour as marked (docs/DESIGN.md, "Hour markers").
        if !group.is_empty() || !markers.is_empty() {
            let intent = self.progress(&batches, &carried);
            self.check(&intent)?;
            self.intake
                .send(Out::Checkpoint(Box::new(intent), Save::Intent))?;
        }
        for h in group {
            self.intake.send(h.out)?;
        }
        // Manifests: a new group's at once; a re-created group's once its last file is.
        let mut completed: HashSet<String> = HashSet::new();
        for (name, objects) in commit::manifests_of(&batches) {
            let objects = if self.previous_manifests.contains(&name) {
                let r = &mut self.st_mut().replay;
                let mut all = None;
                for _ in &objects {
                    all = all.or(r.manifest_done(&name));
                }
                all
            } else {
                Some(objects)
            };
            if let Some(objects) = objects {
                completed.insert(name.clone());
                self.intake.send(Out::Manifest {
                    path: name,
                    objects,
                })?;
            }
        }
        // A re-created batch whose manifest is not written yet stays pending (it is committed
        // with the manifest's last batch); everything else is committed now.
        let waits = |b: &PendingBatch| {
            b.manifest
                .as_ref()
                .is_some_and(|m| self.previous_manifests.contains(m) && !completed.contains(m))
        };
        let (now_waiting, mut committed): (Vec<PendingBatch>, Vec<PendingBatch>) =
            batches.into_iter().partition(|b| waits(b));
        let (still, released): (Vec<PendingBatch>, Vec<PendingBatch>) =
            std::mem::take(&mut self.waiting)
                .into_iter()
                .partition(|b| waits(b));
        committed.extend(released);
        self.waiting = still.into_iter().chain(now_waiting).collect();
        let carried = self.carried();
        // Hours complete: after their files, before the commit that records them as written.
        let mut staged = Vec::new();
        for (table, hour) in markers {
            self.completing.remove(&(table.clone(), hour));
            let folder = self.settings.template.render_time(&table, hour * HOUR_US);
            let compact = self.intake.compaction(&table, hour);
            staged.extend(compact.as_ref().map(|c| c.staged.clone()));
            self.intake.send(Out::HourComplete {
                table,
                hour,
                folder,
                compact,
            })?;
        }
        let mut done = self.progress(&[], &carried);
        commit::commit(&mut done, &committed);
        self.check(&done)?;
        self.checkpoint = done.clone();
        self.flushes_at_checkpoint = self.intake.flushes();
        self.intake
            .send(Out::Checkpoint(Box::new(done), Save::Commit))?;
        // Compacted hours' staged files go once the checkpoint records the hours complete.
        for staged in staged {
            self.intake.send(Out::DeleteStaged { staged })?;
        }
        Ok(())
    }

    /// The invariants a checkpoint must hold before it is saved (docs/DESIGN.md, "What bounds a
    /// checkpoint"): no shard's checkpoint passes the last record read from it, and no two
    /// pending batches of one prefix hold records of one shard in overlapping ranges (a record
    /// read again must belong to one batch only). A breach is a bug: the run stops before it
    /// writes anything more.
    fn check(&self, cp: &Checkpoint) -> Result<(), PipelineError> {
        for p in &self.shards {
            let saved = cp
                .shards
                .get(&*p.id)
                .and_then(|c| c.sequence_number.as_deref());
            let passes = match (saved, p.last.as_deref()) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(s), Some(read)) => crate::seq::seq_cmp(s, read).is_gt(),
            };
            if passes {
                return Err(PipelineError::Invariant(format!(
                    "the checkpoint of shard {} ({saved:?}) would pass the last record read ({:?})",
                    p.id, p.last
                )));
            }
        }
        for b in &cp.pending {
            for shard in b.shards.keys() {
                if cp.shards.get(shard).is_some_and(|c| c.finished) {
                    return Err(PipelineError::Invariant(format!(
                        "shard {shard} would be finished while {} holds records of it",
                        b.object
                    )));
                }
            }
        }
        let mut ranges: Vec<(&str, &str, &crate::seq::ShardRange)> = cp
            .pending
            .iter()
            .flat_map(|b| {
                b.shards
                    .iter()
                    .map(|(s, r)| (b.prefix.as_str(), s.as_str(), r))
            })
            .collect();
        ranges.sort_by(|a, b| (a.0, a.1, &a.2.first).cmp(&(b.0, b.1, &b.2.first)));
        for w in ranges.windows(2) {
            let ((pa, sa, ra), (pb, sb, rb)) = (w[0], w[1]);
            if pa == pb && sa == sb && rb.first <= ra.last {
                return Err(PipelineError::Invariant(format!(
                    "two pending batches of {pa} hold overlapping records of shard {sa}"
                )));
            }
        }
        Ok(())
    }

    /// Batches that stay pending whatever this save writes: the previous run's not re-created
    /// yet, and re-created ones waiting for the rest of their manifest (so that a restart counts
    /// them again).
    fn carried(&self) -> Vec<PendingBatch> {
        let incomplete = self.st().replay.incomplete();
        incomplete.chain(&self.waiting).cloned().collect()
    }

    /// The event-time watermark: the earliest of the latest partition times processed per shard,
    /// over the shards that are neither ended nor idle (the latest of all when every shard is);
    /// `None` while a shard with something to read has processed nothing yet.
    fn watermark(&self) -> Option<i64> {
        let m = self.st().marks.as_ref()?;
        let wm = watermark(
            self.shards
                .iter()
                .enumerate()
                .map(|(i, p)| (p.ended || p.idle, m.event_max.get(i).copied().flatten())),
        );
        // Every shard at its tip (or ended): a record still to come arrives from now on, so its
        // time is now or later, less the delivery delay that the allowed lateness covers. So a
        // quiet stream still completes its hours (and a scheduled run its last one).
        let quiet = self.settled
            && !self.shards.is_empty()
            && self.shards.iter().all(|p| p.ended || p.idle);
        if quiet {
            let now = self.intake.now_utc_us();
            let bound = self.until_us.map_or(now, |u| u.min(now));
            return Some(wm.map_or(bound, |w| w.max(bound)));
        }
        wm
    }

    /// Marks the hours the watermark passed (plus the allowed lateness): their open partitions
    /// flush now, and the next checkpoint writes their manifests and markers.
    fn complete_hours(&mut self) -> Result<(), PipelineError> {
        let (Some(lateness), Some(wm)) = (self.settings.markers, self.watermark()) else {
            return Ok(());
        };
        let lateness_us = lateness.as_micros() as i64;
        let marks = self.st_mut().marks.as_mut().expect("markers are on");
        let mut done: Vec<(String, i64)> = Vec::new();
        for (table, hours) in &mut marks.open_hours {
            while let Some(&h) = hours.first() {
                if (h + 1) * HOUR_US + lateness_us > wm {
                    break;
                }
                hours.remove(&h);
                done.push((table.clone(), h));
            }
        }
        marks.open_hours.retain(|_, h| !h.is_empty());
        for (table, h) in &done {
            let m = marks.marked_through.entry(table.clone()).or_insert(*h);
            *m = (*m).max(*h);
        }
        for (table, h) in done {
            self.intake.flush_hour(&table, h)?;
            self.completing.insert((table, h));
        }
        Ok(())
    }

    /// Hours marked complete whose markers can be written now: every on-time file of the hour
    /// is, or is about to be, written. A batch of the hour that the previous run named and this
    /// one has not re-created yet holds its marker back (its file would come after the marker).
    fn markers_due(&self) -> Vec<(String, i64)> {
        let blocked: HashSet<(&str, i64)> = self
            .st()
            .replay
            .incomplete()
            .filter_map(|b| Some((b.table.as_deref()?, b.hour?)))
            .collect();
        self.completing
            .iter()
            .filter(|(t, h)| !blocked.contains(&(t.as_str(), *h)))
            .cloned()
            .collect()
    }

    /// The checkpoint for the progress so far, with `group` and `carried` pending: no shard
    /// passes a record still buffered or pending.
    fn progress(&self, group: &[PendingBatch], carried: &[PendingBatch]) -> Checkpoint {
        let mut cp = self.checkpoint.clone();
        cp.pending = carried.iter().chain(group).cloned().collect();
        if let Some(m) = &self.st().marks {
            cp.open_hours = m.open_hours.clone();
            cp.marked_through = m.marked_through.clone();
        }
        cp.completing = BTreeMap::new();
        for (t, h) in &self.completing {
            cp.completing.entry(t.clone()).or_default().insert(*h);
        }
        for (i, p) in self.shards.iter().enumerate() {
            let mut pending = self.intake.buffers().pending_since(i);
            for b in cp.pending.iter() {
                if let Some(r) = b.shards.get(&*p.id) {
                    pending = commit::earlier(pending, r.after.as_deref());
                }
            }
            let entry = cp.shards.entry(p.id.to_string()).or_default();
            // Never past the last record this run read (or the checkpoint it started from): a
            // batch carried over from a crashed run may start beyond it, and the records in
            // between are in no durable object yet.
            if let Some(Some(seq)) = commit::earlier(pending, p.last.as_deref()) {
                entry.sequence_number = Some(seq.to_string());
            }
            entry.finished = p.ended && pending.is_none();
            entry.start_timestamp_ms = match entry.sequence_number {
                Some(_) => None,
                None => p.start_ms.or(entry.start_timestamp_ms),
            };
        }
        cp
    }
}

/// The watermark over shards given as (done for now: ended or idle, latest time processed).
fn watermark(shards: impl Iterator<Item = (bool, Option<i64>)>) -> Option<i64> {
    let mut holding: Option<i64> = None;
    let mut latest: Option<i64> = None;
    for (done, e) in shards {
        latest = latest.max(e);
        if done {
            continue;
        }
        let e = e?;
        holding = Some(holding.map_or(e, |h| h.min(e)));
    }
    holding.or(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_the_earliest_shard_still_reading() {
        // Two shards reading: the earlier one holds it.
        assert_eq!(
            watermark([(false, Some(10)), (false, Some(30))].into_iter()),
            Some(10)
        );
        // Idle or ended shards do not hold it back.
        assert_eq!(
            watermark([(true, Some(10)), (false, Some(30))].into_iter()),
            Some(30)
        );
        // A shard with records to read and none processed yet: no watermark.
        assert_eq!(
            watermark([(false, None), (false, Some(30))].into_iter()),
            None
        );
        // Everything read: the latest time processed.
        assert_eq!(
            watermark([(true, Some(10)), (true, Some(30)), (true, None)].into_iter()),
            Some(30)
        );
    }
}
