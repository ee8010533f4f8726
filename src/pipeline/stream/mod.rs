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

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::export::{join, summarize};
use super::lake::{load_tables, TableState};
use super::writer::{write_all, Msg, WriterStats};
use super::{Clock, PipelineError, CHANNEL_DEPTH};
use crate::checkpoint::{self, Checkpoint, CheckpointError, CheckpointStore};
use crate::config::Settings;
use crate::kinesis::{ShardEvent, Start, StreamApi};
use crate::store;
use crate::summary::{Counters, Summary};

mod coordinate;
mod processor;

use coordinate::coordinate;
pub(super) use processor::Processor;

/// Scheduled (catch up and exit) or continuous (run until stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read every shard up to the records that arrived by `until_ms`, then write and exit.
    Scheduled {
        /// Arrival time cutoff, in milliseconds since the epoch (`--until`, or the time the run
        /// started): later records are left for the next run.
        until_ms: i64,
    },
    /// Poll every shard at its tip until a stop is requested, then flush within the shutdown
    /// timeout.
    Continuous,
}

/// Settings of a stream run.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Stream name or ARN.
    pub stream: String,
    /// Checkpoint object URL.
    pub checkpoint: String,
    /// Where to start shards that have no checkpoint yet.
    pub start: Start,
    /// Whether the run catches up and exits or runs until stopped.
    pub mode: Mode,
    /// Wait between polls of a shard at its tip.
    pub idle_poll: Duration,
    /// How often the shard list is refreshed (continuous mode).
    pub discovery_interval: Duration,
    /// How often buffers are checked for age.
    pub tick: Duration,
    /// Most time between a stop request and the end of the final flush.
    pub shutdown_timeout: Duration,
    /// Checkpointed shards no longer listed, not read to their end, whose loss is acknowledged:
    /// marked finished instead of stopping the run (see [`coordinate::settle_vanished`]).
    pub accept_lost: Vec<String>,
}

pub(super) enum Event {
    Shard(ShardEvent),
    /// Every shard readable now has been started (sent after the first start pass, and after
    /// each pass that follows a shard's end): until then an ended shard's children may be
    /// unread, so a stream whose started shards are all idle is not yet quiet.
    Settled,
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

/// Times a start reads the checkpoint again when another process wrote it between the read and
/// the claim (a consumer taking over from one still saving).
const CLAIM_ATTEMPTS: u32 = 5;

/// Loads the tables and the checkpoint, lets `prepare` check and amend the checkpoint, claims it
/// (a process still writing to it is fenced off at its next save) and starts the writer. When
/// another process saved the checkpoint between the read and the claim, all of it is read again
/// (the other process's progress included) and claimed anew.
pub(super) async fn begin(
    settings: &Settings,
    stream: &str,
    output: store::Location,
    mut cp_store: CheckpointStore,
    counters: Arc<Counters>,
    mut prepare: impl FnMut(&mut Checkpoint) -> Result<(), PipelineError>,
) -> Result<Begun, PipelineError> {
    let mut attempt = 1;
    let (tables, checkpoint) = loop {
        let tables = load_tables(settings, Some(&output)).await?;
        let mut checkpoint = cp_store.load(stream).await?;
        prepare(&mut checkpoint)?;
        let filter = settings.filter.fingerprint();
        if !checkpoint.pending.is_empty() && checkpoint.filter != filter {
            return Err(PipelineError::FilterChanged(format!(
                "stream {stream}: the filter changed since the last run, which left {} batches to re-create from the same records under its filter ({}); run once more with that filter, then change it",
                checkpoint.pending.len(),
                checkpoint.filter.as_deref().unwrap_or("none"),
            )));
        }
        checkpoint.filter = filter;
        // Compaction decides the prefix of an hour's on-time batches: what a crashed run named
        // or wrote is found again only under the same setting (and a completing hour's staged
        // files are compacted only with it).
        let compact = settings.compact.is_some();
        let unfinished = !checkpoint.pending.is_empty()
            || !checkpoint.written.is_empty()
            || !checkpoint.completing.is_empty();
        if unfinished && checkpoint.compact != compact {
            return Err(PipelineError::CompactionOff(format!(
                "stream {stream}: the last run stopped with [markers] compact = {} before finishing its flush groups; run once more with that setting (it finishes them, and a clean stop leaves nothing to finish), then change it",
                checkpoint.compact
            )));
        }
        checkpoint.compact = compact;
        tracing::info!(
            "stream {stream}: checkpoint {} ({} shards known, {} batches to re-create)",
            cp_store.url(),
            checkpoint.shards.len(),
            checkpoint.pending.len()
        );
        let previous_owner = checkpoint.owner.replace(checkpoint::owner_token());
        if let Some(prev) = &previous_owner {
            tracing::info!(
                "stream {stream}: taking the checkpoint over from {prev} (if that process still runs, it stops at its next save)"
            );
        }
        match cp_store.claim(&checkpoint).await {
            Ok(()) => break (tables, checkpoint),
            Err(CheckpointError::Conflict { .. }) if attempt < CLAIM_ATTEMPTS => {
                tracing::info!(
                    "stream {stream}: {} saved the checkpoint while this run read it; reading it again",
                    previous_owner.as_deref().unwrap_or("another process")
                );
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // Staged hours: those the checkpoint records complete were compacted (their cleanup did not
    // finish); the others wait for their hour, which only a run with compaction completes.
    let done = |table: &str, hour: i64| {
        checkpoint
            .marked_through
            .get(table)
            .is_some_and(|&m| hour <= m)
            && !checkpoint
                .completing
                .get(table)
                .is_some_and(|c| c.contains(&hour))
    };
    let mut left = super::compaction::sweep(&output, settings, done).await?;
    // Only this stream's tables: another stream of the lake may stage its own.
    left.retain(|t, _| {
        checkpoint.open_hours.contains_key(t) || checkpoint.completing.contains_key(t)
    });
    if settings.compact.is_none() && !left.is_empty() {
        let hours: Vec<String> = left
            .iter()
            .map(|(t, h)| format!("{t}: {} hour(s)", h.len()))
            .collect();
        return Err(PipelineError::CompactionOff(format!(
            "the lake has staged files of hours not compacted yet ({}, under {}/compacting/): run with [markers] compact = true until those hours are complete, then turn it off",
            hours.join(", "),
            output.display(&settings.state_prefix)
        )));
    }
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
    // Listed before the checkpoint is claimed: a checkpointed shard that is gone stops the run
    // before anything is written, or is marked finished in the claimed checkpoint.
    let shards = coordinate::shards_of(api.as_ref(), &opts.stream).await?;
    let settle = |cp: &mut Checkpoint| {
        coordinate::settle_vanished(cp, &shards, &opts.accept_lost, &opts.stream)
    };
    let Begun {
        tables,
        checkpoint,
        tx,
        writer,
    } = begin(
        settings,
        &opts.stream,
        output,
        cp_store,
        counters.clone(),
        settle,
    )
    .await?;

    let (ev_tx, mut ev_rx) = mpsc::channel::<Event>(16);
    let settings_p = settings.clone();
    let counters_p = counters.clone();
    let clock_p = clock.clone();
    let cp_p = checkpoint.clone();
    let mode = opts.mode;
    let processing = tokio::task::spawn_blocking(move || -> Result<_, PipelineError> {
        let mut p = Processor::new(&settings_p, clock_p.as_ref(), &counters_p, tables, cp_p, tx);
        if let Mode::Scheduled { until_ms } = mode {
            p = p.until(until_ms);
        }
        while let Some(ev) = ev_rx.blocking_recv() {
            p.handle(ev)?;
        }
        p.finish()
    });

    let coordinated = coordinate(
        api,
        &opts,
        shards,
        &checkpoint,
        clock.as_ref(),
        ev_tx,
        shutdown,
    )
    .await;
    // The coordinator has dropped the event sender: processing drains and writes everything.
    let finish = join(processing, writer);
    let (read, stats) = match opts.mode {
        Mode::Continuous => tokio::time::timeout(opts.shutdown_timeout, finish)
            .await
            .map_err(|_| PipelineError::ShutdownTimeout(opts.shutdown_timeout))??,
        Mode::Scheduled { .. } => finish.await?,
    };
    coordinated?;
    Ok(summarize(read, stats, started_at, false))
}

#[cfg(test)]
mod marker_tests;
#[cfg(test)]
mod tests;
