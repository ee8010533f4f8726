//! The handover from a table's full export to its stream (`ddb-lake bootstrap`): the checks that
//! the stream holds every change since shortly before the export time, and the checkpoint that
//! makes the next stream run (`export` or `consume`) start there. The rule, and why no change is
//! missed: docs/DESIGN.md, "Handover".

use crate::checkpoint::{Checkpoint, CheckpointStore, Handover, ShardCheckpoint};
use crate::kinesis::{Shard, StreamApi};
use crate::pipeline::PipelineError;

/// What a stream says of itself that a handover depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFacts {
    /// How long the stream keeps records, in milliseconds (24 hours for DynamoDB Streams).
    pub retention_ms: i64,
    /// When the stream was created, in milliseconds since the epoch, where it says: changes
    /// before then are in no stream.
    pub created_ms: Option<i64>,
}

fn refused(problem: String) -> PipelineError {
    PipelineError::Handover(problem)
}

/// A time in milliseconds since the epoch, as RFC 3339 to the second.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// Fails when `cp` (at `url`) already holds progress of a stream run: a handover is for a stream
/// this lake has not read yet (a previous bootstrap's start times may be replaced).
pub fn check_unread(cp: &Checkpoint, url: &str) -> Result<(), PipelineError> {
    let read = cp
        .shards
        .values()
        .any(|s| s.sequence_number.is_some() || s.finished);
    if read || !cp.pending.is_empty() || !cp.written.is_empty() {
        return Err(refused(format!(
            "checkpoint {url} already holds the progress of reading the stream: this lake reads it already, and a bootstrap now would leave the export's items older than changes already in the lake. Bootstrap into a new output (or give another --checkpoint), or go on with `export`/`consume`"
        )));
    }
    Ok(())
}

/// Where the stream is read from for a full export at `export_ms`: `export_ms - margin_ms`,
/// once checked against what the stream holds at `now_ms`. Fails when the stream is too young
/// (created after that time: changes between it and the stream's start are in neither) or its
/// retention has passed it (changes since then may be trimmed).
pub fn start_of(
    export_ms: i64,
    margin_ms: i64,
    facts: StreamFacts,
    now_ms: i64,
) -> Result<i64, PipelineError> {
    let start = export_ms - margin_ms;
    if start <= now_ms - facts.retention_ms {
        return Err(refused(format!(
            "the stream keeps records for {} hours, and {} (the export time {} less the handover margin) is older: changes since then may already be trimmed. Take a new export (bootstrap --table without --from-export)",
            facts.retention_ms / 3_600_000,
            rfc3339(start),
            rfc3339(export_ms),
        )));
    }
    if let Some(created) = facts.created_ms.filter(|c| *c > start) {
        return Err(refused(format!(
            "the stream was created at {}, after {} (the export time {} less the handover margin of {}): changes made between the two may be in neither the export nor the stream. Bootstrap from an export taken after {}, or give a smaller --handover-margin if nothing wrote the table around the stream's creation",
            rfc3339(created),
            rfc3339(start),
            rfc3339(export_ms),
            humantime::format_duration(std::time::Duration::from_millis(margin_ms.max(0) as u64)),
            rfc3339(created + margin_ms),
        )));
    }
    Ok(start)
}

/// The checkpoint a handover leaves: `cp` with every listed shard (open or closed) starting at
/// `handover.start_ms`. A shard created later is a child of one of them and is read from its
/// start once its parent is done, as always.
pub fn checkpoint_for(mut cp: Checkpoint, shards: &[Shard], handover: Handover) -> Checkpoint {
    cp.shards = shards
        .iter()
        .map(|s| {
            let c = ShardCheckpoint {
                start_timestamp_ms: Some(handover.start_ms),
                ..ShardCheckpoint::default()
            };
            (s.id.clone(), c)
        })
        .collect();
    cp.handover = Some(handover);
    cp
}

/// Leaves the checkpoint of `stream` (in `cp_store`) so that its next run starts at the
/// handover's start: the stream's shards listed, the checks above made again at this moment
/// (a load can take long), the checkpoint written.
pub async fn hand_over<A: StreamApi>(
    api: &A,
    stream: &str,
    cp_store: &mut CheckpointStore,
    mut handover: Handover,
    facts: StreamFacts,
    now_ms: i64,
) -> Result<Checkpoint, PipelineError> {
    let cp = cp_store.load(stream).await?;
    check_unread(&cp, &cp_store.url())?;
    handover.start_ms = start_of(handover.export_time_ms, handover.margin_ms, facts, now_ms)?;
    let shards = api
        .list_shards()
        .await
        .map_err(|source| PipelineError::Stream {
            stream: stream.to_string(),
            source,
        })?;
    let left = (handover.start_ms + facts.retention_ms - now_ms) / 3_600_000;
    if left < 2 {
        tracing::warn!(
            "stream {stream}: the handover starts at {}, and the stream keeps records for only about {left} more hours after it: run `export` or `consume` on the stream now",
            rfc3339(handover.start_ms)
        );
    }
    let start_ms = handover.start_ms;
    let cp = checkpoint_for(cp, &shards, handover);
    cp_store.claim(&cp).await?;
    tracing::info!(
        "stream {stream}: {} shards start at {} (checkpoint {})",
        shards.len(),
        rfc3339(start_ms),
        cp_store.url()
    );
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn facts(created_ms: Option<i64>) -> StreamFacts {
        StreamFacts {
            retention_ms: 24 * H,
            created_ms,
        }
    }

    #[test]
    fn the_stream_is_read_from_the_margin_before_the_export() {
        let now = 100 * H;
        assert_eq!(
            start_of(now - H, H / 4, facts(Some(now - 30 * H)), now).unwrap(),
            now - H - H / 4
        );
        // No creation time given: only the retention bounds it.
        assert_eq!(start_of(now - H, 0, facts(None), now).unwrap(), now - H);
    }

    #[test]
    fn a_stream_younger_than_the_window_or_a_window_past_retention_is_refused() {
        let now = 100 * H;
        let young = start_of(now, H / 4, facts(Some(now - H / 8)), now).unwrap_err();
        assert!(young.to_string().contains("after"), "{young}");
        assert!(young.is_configuration());
        let old = start_of(now - 24 * H, H / 4, facts(None), now).unwrap_err();
        assert!(old.to_string().contains("24 hours"), "{old}");
        // Exactly at the retention limit is already too old.
        assert!(start_of(now - 24 * H, 0, facts(None), now).is_err());
        assert!(start_of(now - 24 * H + 1, 0, facts(None), now).is_ok());
    }

    #[test]
    fn a_checkpoint_with_progress_is_refused_and_start_times_alone_are_not() {
        let mut cp = Checkpoint::default();
        let h = Handover {
            start_ms: 7,
            ..Handover::default()
        };
        let shard = |id: &str, parent: Option<&str>| Shard {
            id: id.into(),
            parent: parent.map(str::to_string),
            adjacent_parent: None,
        };
        cp = checkpoint_for(cp, &[shard("a", None), shard("b", Some("a"))], h.clone());
        check_unread(&cp, "u").unwrap();
        assert_eq!(cp.shards.len(), 2);
        assert!(cp
            .shards
            .values()
            .all(|s| s.start_timestamp_ms == Some(7) && s.sequence_number.is_none()));
        assert_eq!(cp.handover, Some(h));
        let mut read = cp.clone();
        read.shards.get_mut("a").unwrap().sequence_number = Some("5".into());
        assert!(check_unread(&read, "u").is_err());
        let mut finished = cp;
        finished.shards.get_mut("b").unwrap().finished = true;
        assert!(check_unread(&finished, "u").is_err());
    }
}
