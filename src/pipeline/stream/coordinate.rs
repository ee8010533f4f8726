//! Shard coordination of a stream run: shard readers started as lineage allows (children only
//! after their parents are read to their end), the shard list refreshed, age ticks sent, and the
//! stop on catch-up (scheduled) or shutdown (continuous).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::{Event, Mode, StreamOptions};
use crate::checkpoint::Checkpoint;
use crate::kinesis::{
    lineage, list_shards, read_shard, start_position, ApiError, ReadOptions, ReadOutcome, Shard,
    StreamApi,
};
use crate::pipeline::{Clock, PipelineError};

/// Starts shard readers as lineage allows, refreshes the shard list, sends age ticks, and stops
/// on catch-up (scheduled) or shutdown (continuous).
#[allow(clippy::too_many_arguments)]
pub(super) async fn coordinate<A: StreamApi>(
    api: Arc<A>,
    opts: &StreamOptions,
    mut shards: Vec<Shard>,
    checkpoint: &Checkpoint,
    clock: &dyn Clock,
    ev_tx: mpsc::Sender<Event>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), PipelineError> {
    let stream = opts.stream.as_str();
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
    let mut unsettled = true;
    let mut to_start = Vec::new();
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
            to_start.push((s.id.clone(), shard, start));
            started.insert(s.id.clone());
        }
        // Every start is announced before any reader runs, and `Settled` after them: no shard
        // event can come between (docs/DESIGN.md, "Quiet streams").
        if unsettled {
            if ev_tx.send(Event::Settled).await.is_err() {
                return Err(PipelineError::Internal("processing stopped".into()));
            }
            unsettled = false;
        }
        for (id, shard, start) in to_start.drain(..) {
            let (api, tx) = (api.clone(), ev_tx.clone());
            readers.spawn(async move { (id, read_shard(api, shard, start, tx, read_opts).await) });
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
                        shards = shards_of(api.as_ref(), stream).await?;
                        unsettled = true;
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

/// Checks the checkpoint against the stream's shards as listed now. A checkpointed shard that is
/// not finished and no longer listed has passed its retention before it was read to its end:
/// the records after its checkpoint, if there were any, are gone, and no listing can tell
/// whether there were. Such a shard stops the run (naming it and where its checkpoint stands)
/// unless its loss is acknowledged in `accepted`; an acknowledged one is marked finished, so
/// the checkpoint claimed next records the acknowledgement and later runs go on without it.
pub(super) fn settle_vanished(
    cp: &mut Checkpoint,
    listed: &[Shard],
    accepted: &[String],
    stream: &str,
) -> Result<(), PipelineError> {
    let listed: HashSet<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    let mut lost = Vec::new();
    for (id, c) in cp.shards.iter_mut() {
        if c.finished || listed.contains(id.as_str()) {
            continue;
        }
        if accepted.iter().any(|a| a == id) {
            tracing::warn!(
                stream,
                shard = %id,
                "shard no longer listed, not read to its end: its loss is acknowledged (--accept-lost-shard), marking it finished"
            );
            c.finished = true;
            continue;
        }
        let from = match (&c.sequence_number, c.start_timestamp_ms) {
            (Some(seq), _) => format!("after sequence number {seq}"),
            (None, Some(ms)) => format!(
                "from {} on",
                chrono::DateTime::from_timestamp_millis(ms)
                    .map_or(ms.to_string(), |t| t.to_rfc3339())
            ),
            (None, None) => "from its start".to_string(),
        };
        lost.push(format!("shard {id} ({from})"));
    }
    for a in accepted {
        // A listed shard may be acknowledged for its trimmed records (DynamoDB Streams: the
        // source reads it from its oldest retained record).
        if !cp.shards.contains_key(a) && !listed.contains(a.as_str()) {
            tracing::warn!(stream, shard = %a, "--accept-lost-shard: no such shard in the checkpoint or the stream; nothing to acknowledge");
        }
    }
    if lost.is_empty() {
        return Ok(());
    }
    Err(PipelineError::LostShards(format!(
        "changes may have been lost: stream {stream}: {} no longer listed, though this lake had not read {} to the end: the stream's retention passed first, and the records after the checkpoint, if there were any, are gone. Load the missing changes from a table export, then acknowledge with --accept-lost-shard {} and run again",
        lost.join(", "),
        if lost.len() == 1 { "it" } else { "them" },
        cp.shards
            .iter()
            .filter(|(id, c)| !c.finished && !listed.contains(id.as_str()))
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    )))
}

/// Lists the stream's shards (retrying throttles and transient errors).
pub(super) async fn shards_of<A: StreamApi>(
    api: &A,
    stream: &str,
) -> Result<Vec<Shard>, PipelineError> {
    list_shards(api)
        .await
        .map_err(|source| PipelineError::Stream {
            stream: stream.into(),
            source,
        })
}
