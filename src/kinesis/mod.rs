//! Source stage for Kinesis Data Streams: the API slice ([`api`]), shard lineage ([`lineage`])
//! and the per-shard polling loop ([`read_shard`]) that survives throttling, expired iterators and
//! transient failures by backing off and retrying, never by skipping.

pub mod api;
pub mod faults;
pub mod kpl;
pub mod lineage;
pub mod start;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;

pub use api::{
    ApiError, AwsStream, KinesisRecord, RecordBatch, SdkRecord, Shard, StartAt, StreamApi,
};
pub use start::{start_position, status, ShardStatus, Start};

/// Records per GetRecords call (the API's maximum).
pub const RECORDS_PER_CALL: i32 = 10_000;
/// First back-off after a throttle or failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Consecutive failures of one shard after which each retry is logged as an error.
const LOUD_AFTER: u32 = 5;

/// What a shard reader sends to the processing side, in order.
#[derive(Debug)]
pub enum ShardEvent {
    /// Records from one GetRecords call; never sent empty.
    Records {
        /// The shard id the records were read from.
        shard: Arc<str>,
        /// The records in shard order; when `until_ms` is set, none that arrived after it.
        records: Vec<KinesisRecord>,
    },
    /// The shard is closed and every record of it was sent.
    Ended {
        /// The id of the closed shard.
        shard: Arc<str>,
    },
    /// The shard has nothing more to read for now (at its tip).
    Idle {
        /// The id of the shard at its tip.
        shard: Arc<str>,
    },
}

/// How a shard reader stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The shard is closed and fully read.
    Ended,
    /// Reached the tip (or a record that arrived after `until`): scheduled runs stop here.
    CaughtUp,
    /// The processing side went away.
    Stopped,
}

/// Settings of a shard reader.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Stop at the tip, or at the first record that arrived after this time (ms), instead of
    /// polling on.
    pub until_ms: Option<i64>,
    /// Wait between polls of a shard with nothing new (continuous mode).
    pub idle_poll: Duration,
}

fn backoff_with_jitter(b: Duration) -> Duration {
    let jitter = rand::rng().random_range(0.5..1.0);
    b.mul_f64(jitter)
}

/// Reads one shard from `start` until it ends, catches up (scheduled), or the receiver goes away.
pub async fn read_shard<A: StreamApi, E: From<ShardEvent> + Send>(
    api: Arc<A>,
    shard: Arc<str>,
    start: StartAt,
    tx: mpsc::Sender<E>,
    opts: ReadOptions,
) -> Result<ReadOutcome, ApiError> {
    let mut last_seq: Option<String> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    let mut iterator: Option<String> = None;
    loop {
        let it = match &iterator {
            Some(it) => it.clone(),
            None => {
                // A new iterator: from the start, or right after the last record sent.
                let from = last_seq
                    .clone()
                    .map_or(start.clone(), StartAt::AfterSequence);
                match api.shard_iterator(&shard, &from).await {
                    Ok(it) => {
                        iterator = Some(it.clone());
                        it
                    }
                    Err(e) => {
                        retry_or_fail(&shard, e, &mut backoff, &mut failures).await?;
                        continue;
                    }
                }
            }
        };
        let batch = match api.get_records(&it, RECORDS_PER_CALL).await {
            Ok(b) => b,
            Err(ApiError::ExpiredIterator(msg)) => {
                tracing::info!(
                    shard = &*shard,
                    "iterator expired ({msg}); resuming after the last record read"
                );
                iterator = None;
                continue;
            }
            Err(e) => {
                retry_or_fail(&shard, e, &mut backoff, &mut failures).await?;
                continue;
            }
        };
        backoff = FIRST_BACKOFF;
        failures = 0;
        if let Some(lag) = batch.millis_behind_latest {
            crate::metrics::shard_lag(&shard, lag);
        }
        let mut records = batch.records;
        let mut caught_up = false;
        if let Some(until) = opts.until_ms {
            if let Some(i) = records.iter().position(|r| r.arrival_ms > until) {
                records.truncate(i);
                caught_up = true;
            }
        }
        let empty = records.is_empty();
        if let Some(last) = records.last() {
            last_seq = Some(last.sequence_number.clone());
            let event = ShardEvent::Records {
                shard: shard.clone(),
                records,
            };
            if tx.send(event.into()).await.is_err() {
                return Ok(ReadOutcome::Stopped);
            }
        }
        if caught_up {
            return Ok(ReadOutcome::CaughtUp);
        }
        match batch.next_iterator {
            None => {
                let sent = tx
                    .send(
                        ShardEvent::Ended {
                            shard: shard.clone(),
                        }
                        .into(),
                    )
                    .await;
                return Ok(if sent.is_ok() {
                    ReadOutcome::Ended
                } else {
                    ReadOutcome::Stopped
                });
            }
            Some(next) => iterator = Some(next),
        }
        if empty {
            let at_tip = batch.millis_behind_latest.is_none_or(|b| b == 0);
            if at_tip {
                let idle = ShardEvent::Idle {
                    shard: shard.clone(),
                };
                if tx.send(idle.into()).await.is_err() {
                    return Ok(ReadOutcome::Stopped);
                }
            }
            if at_tip && opts.until_ms.is_some() {
                return Ok(ReadOutcome::CaughtUp);
            }
            if at_tip {
                tokio::time::sleep(opts.idle_poll).await;
            }
        }
    }
}

/// Lists the stream's shards, backing off (with jitter) on throttling and transient errors.
pub async fn list_shards<A: StreamApi>(api: &A) -> Result<Vec<Shard>, ApiError> {
    let (mut backoff, mut failures) = (FIRST_BACKOFF, 0);
    loop {
        match api.list_shards().await {
            Ok(s) => return Ok(s),
            Err(e) => retry_or_fail("(listing shards)", e, &mut backoff, &mut failures).await?,
        }
    }
}

/// Backs off (with jitter) on throttling and transient errors; returns fatal ones. `shard`
/// names what failed in the log.
async fn retry_or_fail(
    shard: &str,
    e: ApiError,
    backoff: &mut Duration,
    failures: &mut u32,
) -> Result<(), ApiError> {
    match &e {
        ApiError::Throttled(_) => tracing::debug!(shard, "throttled: {e}"),
        ApiError::Transient(_) | ApiError::ExpiredIterator(_) => {
            *failures += 1;
            if *failures >= LOUD_AFTER {
                tracing::error!(
                    shard,
                    failures = *failures,
                    "shard keeps failing, retrying: {e}"
                );
            } else {
                tracing::warn!(shard, "retrying: {e}");
            }
        }
        ApiError::Fatal(_) => return Err(e),
    }
    tokio::time::sleep(backoff_with_jitter(*backoff)).await;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    Ok(())
}

#[cfg(test)]
pub mod fake {
    //! An in-memory stream for tests, with injectable faults.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// Shards and their records in memory; `get_records` hands out two records per call.
    #[derive(Default)]
    pub struct FakeStream {
        /// The shards `list_shards` returns, in order.
        pub shards: Vec<Shard>,
        /// Records per shard; a shard listed in `closed` ends after its records.
        pub records: BTreeMap<String, Vec<KinesisRecord>>,
        /// Shards that end (no next iterator) once their records are read.
        pub closed: Vec<String>,
        /// Faults returned by get_records calls, by call number (1-based); consumed when hit.
        pub faults: Mutex<BTreeMap<u32, ApiError>>,
        /// `get_records` calls so far.
        pub calls: Mutex<u32>,
    }

    impl StreamApi for FakeStream {
        async fn list_shards(&self) -> Result<Vec<Shard>, ApiError> {
            Ok(self.shards.clone())
        }

        async fn shard_iterator(&self, shard: &str, start: &StartAt) -> Result<String, ApiError> {
            let recs = self.records.get(shard).cloned().unwrap_or_default();
            let pos = match start {
                StartAt::TrimHorizon | StartAt::AtTimestamp(_) => 0,
                StartAt::AfterSequence(s) => recs
                    .iter()
                    .position(|r| &r.sequence_number == s)
                    .map_or(recs.len(), |i| i + 1),
            };
            Ok(format!("{shard}|{pos}"))
        }

        async fn get_records(&self, iterator: &str, _limit: i32) -> Result<RecordBatch, ApiError> {
            let call = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            if let Some(f) = self.faults.lock().unwrap().remove(&call) {
                return Err(f);
            }
            let (shard, pos) = iterator.split_once('|').unwrap();
            let pos: usize = pos.parse().unwrap();
            let recs = self.records.get(shard).cloned().unwrap_or_default();
            // Two records per call, to exercise iteration.
            let end = (pos + 2).min(recs.len());
            let closed = self.closed.iter().any(|c| c == shard);
            Ok(RecordBatch {
                records: recs[pos..end].to_vec(),
                next_iterator: (!(closed && end == recs.len())).then(|| format!("{shard}|{end}")),
                millis_behind_latest: Some(if end == recs.len() { 0 } else { 1000 }),
            })
        }
    }

    /// A record with a zero-padded sequence number `seq` and the text `record {seq}`.
    pub fn record(seq: u64, arrival_ms: i64) -> KinesisRecord {
        KinesisRecord {
            sdk: None,
            sequence_number: format!("{seq:020}"),
            data: bytes::Bytes::from(format!("record {seq}")),
            arrival_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    fn opts(until_ms: Option<i64>) -> ReadOptions {
        ReadOptions {
            until_ms,
            idle_poll: Duration::from_secs(1),
        }
    }

    async fn collect(rx: &mut mpsc::Receiver<ShardEvent>) -> (Vec<String>, bool) {
        let mut seqs = Vec::new();
        let mut ended = false;
        while let Ok(ev) = rx.try_recv() {
            match ev {
                ShardEvent::Records { records, .. } => {
                    seqs.extend(records.into_iter().map(|r| r.sequence_number))
                }
                ShardEvent::Ended { .. } => ended = true,
                ShardEvent::Idle { .. } => {}
            }
        }
        (seqs, ended)
    }

    #[tokio::test(start_paused = true)]
    async fn survives_throttling_expiry_and_failures_without_loss() {
        let mut fake = FakeStream::default();
        fake.records
            .insert("s0".into(), (1..=7).map(|i| record(i, 1000)).collect());
        fake.closed.push("s0".into());
        fake.faults = std::sync::Mutex::new(
            [
                (1, ApiError::Throttled("slow down".into())),
                (2, ApiError::Transient("connection reset".into())),
                (4, ApiError::ExpiredIterator("expired".into())),
                (6, ApiError::Throttled("slow down".into())),
            ]
            .into(),
        );
        let fake = Arc::new(fake);
        let (tx, mut rx) = mpsc::channel(100);
        let out = read_shard(
            fake.clone(),
            "s0".into(),
            StartAt::TrimHorizon,
            tx,
            opts(None),
        )
        .await
        .unwrap();
        assert_eq!(out, ReadOutcome::Ended);
        assert!(
            fake.faults.lock().unwrap().is_empty(),
            "every fault was hit"
        );
        let (seqs, ended) = collect(&mut rx).await;
        assert!(ended);
        assert_eq!(
            seqs,
            (1..=7).map(|i| format!("{i:020}")).collect::<Vec<_>>()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_reads_stop_at_until_and_at_the_tip() {
        let mut fake = FakeStream::default();
        fake.records.insert(
            "s0".into(),
            vec![
                record(1, 100),
                record(2, 200),
                record(3, 300),
                record(4, 400),
            ],
        );
        let fake = Arc::new(fake);
        let (tx, mut rx) = mpsc::channel(100);
        let out = read_shard(
            fake.clone(),
            "s0".into(),
            StartAt::TrimHorizon,
            tx,
            opts(Some(250)),
        )
        .await
        .unwrap();
        assert_eq!(out, ReadOutcome::CaughtUp);
        assert_eq!(collect(&mut rx).await.0.len(), 2);
        // An open shard read to its tip.
        let (tx, mut rx) = mpsc::channel(100);
        let out = read_shard(
            fake,
            "s0".into(),
            StartAt::AfterSequence(format!("{:020}", 2)),
            tx,
            opts(Some(1000)),
        )
        .await
        .unwrap();
        assert_eq!(out, ReadOutcome::CaughtUp);
        assert_eq!(
            collect(&mut rx).await.0,
            vec![format!("{:020}", 3), format!("{:020}", 4)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_are_returned() {
        let fake = FakeStream {
            faults: std::sync::Mutex::new([(1, ApiError::Fatal("AccessDenied".into()))].into()),
            ..FakeStream::default()
        };
        let (tx, _rx) = mpsc::channel::<ShardEvent>(100);
        let r = read_shard(
            Arc::new(fake),
            "s0".into(),
            StartAt::TrimHorizon,
            tx,
            opts(None),
        )
        .await;
        assert_eq!(r, Err(ApiError::Fatal("AccessDenied".into())));
    }
}
