//! Stream runs over Kinesis Data Streams: every shard read concurrently (children only after
//! their parents are drained), records through the same decode → flatten → buffer stages as
//! files, and a checkpoint saved after every durable write.
//!
//! ```text
//! shard readers (async, one per shard) ─► events ─► processing thread ─► writer ─► store
//!        ▲ lineage, discovery, shutdown                    │ flush + checkpoint    └► checkpoint
//!        └─────────── coordinator ◄────────────────────────┘
//! ```
//!
//! The writer handles messages in order, so a checkpoint sent after a flush is saved only once
//! that flush is durable. The checkpoint of a shard is the sequence number read just before the
//! earliest of its records still buffered (or the last one read, when none is buffered): every
//! record up to it is in a written file or in the written error output.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::commit::{self, Replay};
use super::export::{summarize, ReadResult};
use super::intake::{Intake, StreamState};
use super::lake::{load_tables, TableState};
use super::markers::{Marks, HOUR_US};
use super::writer::{write_all, Msg, Out, Save, WriterStats};
use super::{Clock, PipelineError, CHANNEL_DEPTH};
use crate::buffer::StreamSource;
use crate::checkpoint::{self, Checkpoint, CheckpointStore, PendingBatch};
use crate::config::Settings;
use crate::flatten::Position;
use crate::kinesis::{
    kpl, lineage, read_shard, start_position, ApiError, ReadOptions, ReadOutcome, Shard,
    ShardEvent, Start, StreamApi,
};
use crate::store;
use crate::summary::{Counters, Summary};

/// Scheduled (catch up and exit) or continuous (run until stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read every shard up to the records that arrived by `until_ms`, then write and exit.
    Scheduled {
        until_ms: i64,
    },
    Continuous,
}

/// Settings of a stream run.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Stream name or ARN.
    pub stream: String,
    /// Checkpoint object URL.
    pub checkpoint: String,
    pub start: Start,
    pub mode: Mode,
    /// Wait between polls of a shard at its tip.
    pub idle_poll: Duration,
    /// How often the shard list is refreshed (continuous mode).
    pub discovery_interval: Duration,
    /// How often buffers are checked for age.
    pub tick: Duration,
    /// Most time between a stop request and the end of the final flush.
    pub shutdown_timeout: Duration,
}

pub(super) enum Event {
    Shard(ShardEvent),
    /// A shard reader starts; `start_ms` when it starts at a time.
    Started {
        shard: Arc<str>,
        start_ms: Option<i64>,
    },
    Tick,
}

impl From<ShardEvent> for Event {
    fn from(e: ShardEvent) -> Self {
        Event::Shard(e)
    }
}

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
pub(super) struct Processor<'a> {
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
}

impl<'a> Processor<'a> {
    /// The processing side of a run that starts from `checkpoint`, sending to the writer.
    pub(super) fn new(
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
        }
    }

    /// Flushes everything, writes the last group and checkpoint, and hands back what was read.
    pub(super) fn finish(mut self) -> Result<ReadResult, PipelineError> {
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

    pub(super) fn handle(&mut self, ev: Event) -> Result<(), PipelineError> {
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
                let bytes: usize = records.iter().map(|r| r.data.len()).sum();
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
                self.save_checkpoint()?;
            }
            Event::Tick => self.intake.flush_aged()?,
        }
        self.complete_hours()?;
        if self.intake.flushes() != self.flushes_at_checkpoint
            || !self.markers_due().is_empty()
            || self.intake.rejects_due()
        {
            self.save_checkpoint()?;
        }
        crate::metrics::buffered(self.intake.buffers().buffered_bytes());
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
            self.intake.send(Out::Checkpoint(intent, Save::Intent))?;
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
        for (table, hour) in markers {
            self.completing.remove(&(table.clone(), hour));
            let folder = self.settings.template.render_time(&table, hour * HOUR_US);
            self.intake.send(Out::HourComplete {
                table,
                hour,
                folder,
            })?;
        }
        let mut done = self.progress(&[], &carried);
        commit::commit(&mut done, &committed);
        self.check(&done)?;
        self.checkpoint = done.clone();
        self.flushes_at_checkpoint = self.intake.flushes();
        self.intake.send(Out::Checkpoint(done, Save::Commit))
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
        watermark(
            self.shards
                .iter()
                .enumerate()
                .map(|(i, p)| (p.ended || p.idle, m.event_max.get(i).copied().flatten())),
        )
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

/// Retries listing shards on throttling and transient errors.
async fn list_shards<A: StreamApi>(api: &A, stream: &str) -> Result<Vec<Shard>, PipelineError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match api.list_shards().await {
            Ok(s) => return Ok(s),
            Err(ApiError::Fatal(m)) => {
                return Err(PipelineError::Stream {
                    stream: stream.into(),
                    source: ApiError::Fatal(m),
                })
            }
            Err(e) => {
                tracing::warn!(stream, "listing shards: {e}; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Runs a stream export until caught up (scheduled) or until `shutdown` resolves (continuous).
pub async fn run<A: StreamApi>(
    settings: &Settings,
    api: Arc<A>,
    opts: StreamOptions,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, PipelineError> {
    let output = store::open(&settings.output, &settings.s3)?;
    let cp_store = CheckpointStore::open(&opts.checkpoint, &settings.s3)?;
    run_with(
        settings, api, opts, output, cp_store, clock, counters, shutdown,
    )
    .await
}

/// What a stream run starts from: the lake's tables, the claimed checkpoint, and the writer.
pub(super) struct Begun {
    pub tables: Vec<TableState>,
    pub checkpoint: Checkpoint,
    pub tx: mpsc::Sender<Msg>,
    pub writer: tokio::task::JoinHandle<Result<WriterStats, PipelineError>>,
}

/// Loads the tables and the checkpoint, claims the checkpoint (a process still writing to it is
/// fenced off at its next save) and starts the writer.
pub(super) async fn begin(
    settings: &Settings,
    stream: &str,
    output: store::Location,
    mut cp_store: CheckpointStore,
    counters: Arc<Counters>,
) -> Result<Begun, PipelineError> {
    let tables = load_tables(settings, Some(&output)).await?;
    let mut checkpoint = cp_store.load(stream).await?;
    tracing::info!(
        "stream {stream}: checkpoint {} ({} shards known, {} batches to re-create)",
        cp_store.url(),
        checkpoint.shards.len(),
        checkpoint.pending.len()
    );
    let previous_owner = checkpoint.owner.replace(checkpoint::owner_token());
    if let Some(prev) = previous_owner {
        tracing::info!(
            "stream {stream}: taking the checkpoint over from {prev} (if that process still runs, it stops at its next save)"
        );
    }
    cp_store.claim(&checkpoint).await?;
    let (tx, out_rx) = mpsc::channel(CHANNEL_DEPTH);
    let writer = tokio::spawn(write_all(
        out_rx,
        Some(output),
        Some(cp_store),
        settings.clone(),
        false,
        counters,
    ));
    Ok(Begun {
        tables,
        checkpoint,
        tx,
        writer,
    })
}

/// [`run`] with the output and the checkpoint store opened by the caller.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_with<A: StreamApi>(
    settings: &Settings,
    api: Arc<A>,
    opts: StreamOptions,
    output: store::Location,
    cp_store: CheckpointStore,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, PipelineError> {
    let started_at = Instant::now();
    let Begun {
        tables,
        checkpoint,
        tx,
        writer,
    } = begin(settings, &opts.stream, output, cp_store, counters.clone()).await?;

    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(16);
    let settings_p = settings.clone();
    let counters_p = counters.clone();
    let clock_p = clock.clone();
    let cp_p = checkpoint.clone();
    let processing = tokio::task::spawn_blocking(move || -> Result<_, PipelineError> {
        let mut p = Processor::new(&settings_p, clock_p.as_ref(), &counters_p, tables, cp_p, tx);
        while let Some(ev) = ev_rx.blocking_recv() {
            p.handle(ev)?;
        }
        p.finish()
    });

    let coordinated = coordinate(api, &opts, &checkpoint, clock.as_ref(), ev_tx, shutdown).await;
    // The coordinator has dropped the event sender: processing drains and writes everything.
    let finish = async {
        let read = processing
            .await
            .map_err(|e| PipelineError::Internal(e.to_string()))?;
        let stats = writer
            .await
            .map_err(|e| PipelineError::Internal(e.to_string()))??;
        Ok::<_, PipelineError>((read?, stats))
    };
    let (read, stats) = match opts.mode {
        Mode::Continuous => tokio::time::timeout(opts.shutdown_timeout, finish)
            .await
            .map_err(|_| {
                PipelineError::Internal(format!(
                    "the final flush did not finish within the shutdown timeout ({:?}); the checkpoint was not advanced past unwritten records",
                    opts.shutdown_timeout
                ))
            })??,
        Mode::Scheduled { .. } => finish.await?,
    };
    coordinated?;
    Ok(summarize(read, stats, started_at, false))
}

/// Starts shard readers as lineage allows, refreshes the shard list, sends age ticks, and stops
/// on catch-up (scheduled) or shutdown (continuous).
async fn coordinate<A: StreamApi>(
    api: Arc<A>,
    opts: &StreamOptions,
    checkpoint: &Checkpoint,
    clock: &dyn Clock,
    ev_tx: mpsc::Sender<Event>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), PipelineError> {
    let stream = opts.stream.as_str();
    let mut shards = list_shards(api.as_ref(), stream).await?;
    let mut done = checkpoint.finished_shards();
    let mut started: HashSet<String> = HashSet::new();
    let mut readers: JoinSet<(String, Result<ReadOutcome, ApiError>)> = JoinSet::new();
    let read_opts = ReadOptions {
        until_ms: match opts.mode {
            Mode::Scheduled { until_ms } => Some(until_ms),
            Mode::Continuous => None,
        },
        idle_poll: opts.idle_poll,
    };
    let continuous = opts.mode == Mode::Continuous;
    let mut tick = tokio::time::interval(opts.tick);
    let mut discovery = tokio::time::interval(opts.discovery_interval);
    tokio::pin!(shutdown);
    let mut result = Ok(());
    loop {
        for s in lineage::readable(&shards, &done, &started) {
            let has_parent = s.parent.is_some() || s.adjacent_parent.is_some();
            let now_ms = clock.now_utc_us() / 1000;
            let (start, start_ms) =
                start_position(checkpoint.shards.get(&s.id), has_parent, opts.start, now_ms);
            tracing::info!(stream, shard = %s.id, "reading from {start:?}");
            let shard: Arc<str> = s.id.as_str().into();
            if ev_tx
                .send(Event::Started {
                    shard: shard.clone(),
                    start_ms,
                })
                .await
                .is_err()
            {
                return Err(PipelineError::Internal("processing stopped".into()));
            }
            let api = api.clone();
            let tx = ev_tx.clone();
            let id = s.id.clone();
            readers.spawn(async move { (id, read_shard(api, shard, start, tx, read_opts).await) });
            started.insert(s.id.clone());
        }
        if !continuous && readers.is_empty() {
            break;
        }
        tokio::select! {
            Some(joined) = readers.join_next(), if !readers.is_empty() => {
                let (id, outcome) = joined.map_err(|e| PipelineError::Internal(e.to_string()))?;
                match outcome {
                    Ok(ReadOutcome::Ended) => {
                        tracing::info!(stream, shard = %id, "shard read to its end");
                        done.insert(id);
                        // Its children may be listed now.
                        shards = list_shards(api.as_ref(), stream).await?;
                    }
                    Ok(ReadOutcome::CaughtUp) => tracing::debug!(stream, shard = %id, "caught up"),
                    Ok(ReadOutcome::Stopped) => break,
                    Err(source) => {
                        tracing::error!(stream, shard = %id, "stopping: {source}");
                        result = Err(PipelineError::Stream { stream: stream.into(), source });
                        break;
                    }
                }
            }
            _ = tick.tick(), if continuous => {
                if ev_tx.send(Event::Tick).await.is_err() {
                    break;
                }
            }
            _ = discovery.tick(), if continuous => {
                match api.list_shards().await {
                    Ok(s) => shards = s,
                    Err(e) => tracing::warn!(stream, "refreshing shards: {e}"),
                }
            }
            _ = &mut shutdown, if continuous => {
                tracing::info!(stream, "stopping: flushing buffers and saving the checkpoint");
                break;
            }
        }
    }
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    drop(ev_tx);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::kinesis::fake::FakeStream;
    use crate::kinesis::KinesisRecord;
    use crate::pipeline::SystemClock;

    fn kinesis_record(seq: u64, id: &str) -> KinesisRecord {
        record_at(seq, id, 1795000000331)
    }

    fn record_at(seq: u64, id: &str, event_ms: i64) -> KinesisRecord {
        let json = format!(
            r#"{{"eventID":"{id}","eventName":"INSERT","tableName":"T","dynamodb":{{"ApproximateCreationDateTime":{event_ms},"Keys":{{"Id":{{"S":"{id}"}}}},"NewImage":{{"Id":{{"S":"{id}"}}}}}}}}"#
        );
        KinesisRecord {
            sequence_number: format!("{seq:030}"),
            data: json.into(),
            arrival_ms: 1_000,
        }
    }

    fn settings(out: &std::path::Path) -> Settings {
        let mut c = ConfigFile::default();
        c.output.url = Some(out.display().to_string());
        c.validate().unwrap()
    }

    fn opts(cp: &std::path::Path) -> StreamOptions {
        StreamOptions {
            stream: "s".into(),
            checkpoint: cp.display().to_string(),
            start: Start::TrimHorizon,
            mode: Mode::Scheduled { until_ms: 10_000 },
            idle_poll: Duration::from_millis(10),
            discovery_interval: Duration::from_secs(30),
            tick: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    /// A fake stream of one open shard `s`, no records yet.
    fn one_shard() -> FakeStream {
        FakeStream {
            shards: vec![Shard {
                id: "s".into(),
                parent: None,
                adjacent_parent: None,
            }],
            ..FakeStream::default()
        }
    }

    /// A scheduled run over a fake stream with the real clock, never asked to stop.
    async fn run_fake(s: &Settings, fake: Arc<FakeStream>, cp: &std::path::Path) -> Summary {
        run(
            s,
            fake,
            opts(cp),
            Arc::new(SystemClock::default()),
            Arc::new(Counters::default()),
            std::future::pending(),
        )
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn split_shards_are_read_parent_first_and_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = FakeStream {
            shards: vec![
                Shard {
                    id: "p".into(),
                    parent: None,
                    adjacent_parent: None,
                },
                Shard {
                    id: "c1".into(),
                    parent: Some("p".into()),
                    adjacent_parent: None,
                },
                Shard {
                    id: "c2".into(),
                    parent: Some("p".into()),
                    adjacent_parent: None,
                },
            ],
            ..FakeStream::default()
        };
        fake.records.insert(
            "p".into(),
            (1..=5)
                .map(|i| kinesis_record(i, &format!("p{i}")))
                .collect(),
        );
        fake.records.insert(
            "c1".into(),
            (6..=8)
                .map(|i| kinesis_record(i, &format!("c{i}")))
                .collect(),
        );
        fake.records.insert(
            "c2".into(),
            (9..=9)
                .map(|i| kinesis_record(i, &format!("c{i}")))
                .collect(),
        );
        fake.closed.push("p".into());
        let fake = Arc::new(fake);
        let lake = dir.path().join("lake");
        let cp = dir.path().join("cp.json");
        let s = settings(&lake);
        let summary = run_fake(&s, fake.clone(), &cp).await;
        assert_eq!(summary.records_in, 9);
        assert_eq!(summary.rows_out["t"], 9);
        let saved: Checkpoint = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
        assert!(saved.shards["p"].finished);
        assert_eq!(
            saved.shards["c1"].sequence_number.as_deref(),
            Some(format!("{:030}", 8).as_str())
        );
        assert_eq!(
            saved.shards["c2"].sequence_number.as_deref(),
            Some(format!("{:030}", 9).as_str())
        );
        // A second run reads nothing new and writes nothing.
        let again = run_fake(&s, fake, &cp).await;
        assert_eq!(again.records_in, 0);
        assert_eq!(again.files_written, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kpl_aggregated_records_are_deaggregated() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Vec<Vec<u8>> = (0..3)
            .map(|i| kinesis_record(i, &format!("a{i}")).data.to_vec())
            .collect();
        let refs: Vec<&[u8]> = inner.iter().map(|v| v.as_slice()).collect();
        let mut aggregated = kinesis_record(10, "unused");
        aggregated.data = kpl::aggregate(&refs).into();
        let mut fake = one_shard();
        fake.records
            .insert("s".into(), vec![kinesis_record(5, "plain"), aggregated]);
        let lake = dir.path().join("lake");
        let summary = run_fake(
            &settings(&lake),
            Arc::new(fake),
            &dir.path().join("cp.json"),
        )
        .await;
        assert_eq!(summary.records_in, 4);
        assert_eq!(summary.rows_out["t"], 4);
        let files: Vec<_> = std::fs::read_dir(lake.join("t/2026/11/18/11"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let file = std::fs::File::open(&files[0]).unwrap();
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let subs = batch
            .column_by_name("cdc_subsequence_number")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap()
            .iter()
            .collect::<Vec<_>>();
        assert_eq!(subs, vec![None, Some(0), Some(1), Some(2)]);
    }

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hours_are_marked_after_the_watermark_and_late_rows_counted() {
        let dir = tempfile::tempdir().unwrap();
        let at = |t: &str| {
            chrono::DateTime::parse_from_rfc3339(&format!("2026-11-20T{t}:00Z"))
                .unwrap()
                .timestamp_millis()
        };
        // Event times in processing order (the fake stream hands out two records per call).
        let times = ["08:10", "08:50", "09:05", "09:16", "08:55", "10:30"];
        let mut fake = one_shard();
        fake.records.insert(
            "s".into(),
            times
                .iter()
                .enumerate()
                .map(|(i, t)| record_at(i as u64 + 1, &format!("r{i}"), at(t)))
                .collect(),
        );
        let lake = dir.path().join("lake");
        let mut c = ConfigFile::default();
        c.output.url = Some(lake.display().to_string());
        c.markers.enabled = true;
        c.markers.allowed_lateness = "10m".into();
        let s = c.validate().unwrap();
        let summary = run_fake(&s, Arc::new(fake), &dir.path().join("cp.json")).await;
        // 08 is complete once 09:16 is read (past 09:00 + 10m); 09 once 10:30 is; 10 is not.
        assert_eq!(
            summary.hours_completed,
            ["t 2026-11-20T08", "t 2026-11-20T09"]
        );
        let hours = lake.join("_ddb_lake/hours/t/2026/11/20");
        assert!(!hours.join("10").exists());
        let marker: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hours.join("08/_COMPLETE.json")).unwrap())
                .unwrap();
        assert_eq!(
            (marker["files"].as_u64(), marker["hour"].as_str()),
            (Some(1), Some("2026-11-20T08:00:00Z"))
        );
        // The hour's manifest lists its one on-time file (08:10 and 08:50).
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(hours.join("08/manifest.json")).unwrap())
                .unwrap();
        let listed = manifest["entries"][0]["url"].as_str().unwrap();
        let on_time = summary
            .objects
            .iter()
            .find(|o| o.path.starts_with("t/2026/11/20/08/t-") && !o.path.contains("-late-"))
            .unwrap();
        assert!(listed.ends_with(&on_time.path), "{listed}");
        assert_eq!(on_time.rows, 2);
        // 08:55 arrived after 08 was marked: its own file, flagged and counted.
        let late: Vec<_> = summary
            .objects
            .iter()
            .filter(|o| o.path.contains("-late-"))
            .collect();
        assert_eq!(late.len(), 1);
        assert!(late[0].path.starts_with("t/2026/11/20/08/t-late-"));
        assert_eq!(summary.late_rows["t"], 1);
        assert_eq!(summary.rows_out["t"], 6);
        let saved: Checkpoint =
            serde_json::from_slice(&std::fs::read(dir.path().join("cp.json")).unwrap()).unwrap();
        let hour = |t: &str| at(t) / 3_600_000;
        assert_eq!(saved.marked_through["t"], hour("09:00"));
        assert_eq!(
            saved.open_hours["t"].iter().copied().collect::<Vec<_>>(),
            [hour("10:00")]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_consumer_reading_only_bad_records_writes_them_at_the_flush_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut fake = one_shard();
        let bad = |seq: u64| KinesisRecord {
            sequence_number: format!("{seq:030}"),
            data: bytes::Bytes::from_static(b"{not json"),
            arrival_ms: 1_000,
        };
        fake.records.insert("s".into(), vec![bad(1), bad(2)]);
        let lake = dir.path().join("lake");
        let mut s = settings(&lake);
        s.flush.max_age_ms = Some(1);
        let mut o = opts(&dir.path().join("cp.json"));
        o.mode = Mode::Continuous;
        o.tick = Duration::from_millis(10);
        // Stop only once the error file is there: no partition ever flushes, so only the
        // errors' own age can have written it.
        let errors = lake.join("_errors/invalid_json");
        let written = {
            let errors = errors.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !errors.exists() {
                    assert!(
                        Instant::now() < deadline,
                        "the error entries were not written"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await; // polling a condition
                }
            }
        };
        let summary = run(
            &s,
            Arc::new(fake),
            o,
            Arc::new(SystemClock::default()),
            Arc::new(Counters::default()),
            written,
        )
        .await
        .unwrap();
        assert_eq!(summary.errors["invalid_json"], 2);
        let saved: Checkpoint =
            serde_json::from_slice(&std::fs::read(dir.path().join("cp.json")).unwrap()).unwrap();
        assert_eq!(
            saved.shards["s"].sequence_number.as_deref(),
            Some(format!("{:030}", 2).as_str())
        );
    }
}
