//! Where reading a shard starts, and `ddb-lake status`: the two places a stream's checkpoint is
//! turned back into shard iterator positions.

use super::{ApiError, StartAt, StreamApi};
use crate::checkpoint::{Checkpoint, ShardCheckpoint};

/// Where to start a shard that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record the stream still retains.
    TrimHorizon,
    /// Records arriving from now on (kept as a time in the checkpoint, so no later run skips).
    Latest,
    /// Milliseconds since the epoch.
    AtTimestamp(i64),
}

/// Where a shard's reading starts, from its checkpoint (`None`: never read): after the last
/// durable record, at the time a previous run started it at, from its start for a child shard
/// (its parent was read here), else at the run's `start`. Also the time to remember in the
/// checkpoint when it starts at one.
pub fn start_position(
    cp: Option<&ShardCheckpoint>,
    has_parent: bool,
    start: Start,
    now_ms: i64,
) -> (StartAt, Option<i64>) {
    match (
        cp.and_then(|c| c.sequence_number.clone()),
        cp.and_then(|c| c.start_timestamp_ms),
    ) {
        (Some(seq), _) => (StartAt::AfterSequence(seq), None),
        (None, Some(t)) => (StartAt::AtTimestamp(t), Some(t)),
        (None, None) if has_parent => (StartAt::TrimHorizon, None),
        (None, None) => match start {
            Start::TrimHorizon => (StartAt::TrimHorizon, None),
            Start::Latest => (StartAt::AtTimestamp(now_ms), Some(now_ms)),
            Start::AtTimestamp(t) => (StartAt::AtTimestamp(t), Some(t)),
        },
    }
}

/// One shard's progress, for `ddb-lake status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardStatus {
    /// The shard id.
    pub shard: String,
    /// The shard's parent and adjacent parent ids; empty for a shard with no parent.
    pub parents: Vec<String>,
    /// The last durable sequence number.
    pub checkpoint: Option<String>,
    /// True when the shard is closed and every record of it is durable.
    pub finished: bool,
    /// Age of the oldest record not yet durable (0 when caught up); `None` for finished shards.
    pub lag_ms: Option<i64>,
}

/// Each listed shard's checkpoint and lag: the age of the first record after its checkpoint.
pub async fn status<A: StreamApi>(
    api: &A,
    checkpoint: &Checkpoint,
    now_ms: i64,
) -> Result<Vec<ShardStatus>, ApiError> {
    let mut out = Vec::new();
    for s in api.list_shards().await? {
        let cp = checkpoint.shards.get(&s.id).cloned().unwrap_or_default();
        let lag_ms = if cp.finished {
            None
        } else {
            // Where the shard's next run resumes (a shard never started: from its start).
            let (start, _) = start_position(Some(&cp), true, Start::TrimHorizon, now_ms);
            let it = api.shard_iterator(&s.id, &start).await?;
            let batch = api.get_records(&it, 1).await?;
            Some(match batch.records.first() {
                Some(r) => (now_ms - r.arrival_ms).max(0),
                None => 0,
            })
        };
        out.push(ShardStatus {
            shard: s.id.clone(),
            parents: [s.parent, s.adjacent_parent]
                .into_iter()
                .flatten()
                .collect(),
            checkpoint: cp.sequence_number,
            finished: cp.finished,
            lag_ms,
        });
    }
    Ok(out)
}
