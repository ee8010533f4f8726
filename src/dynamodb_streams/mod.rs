//! DynamoDB Streams as a shard source: the second implementation of [`StreamApi`], so that a
//! table's own change feed goes through the same shard readers, lineage, exactly-once
//! checkpoints, error output and metrics as a Kinesis data stream.
//!
//! What differs from Kinesis, and where it is handled here:
//! - the shard list comes from DescribeStream, 100 shards a page (`ExclusiveStartShardId`); a
//!   listing that fails part-way keeps the pages it has and the next call goes on from there;
//! - there is no AT_TIMESTAMP iterator: a shard started at a time (`--start latest` or
//!   `at_timestamp`) is read from TRIM_HORIZON and the records created before that minute are
//!   skipped, as AT_TIMESTAMP would; the time travels in the iterator text we hand out;
//! - records arrive as the SDK's types: each one is written back as the DynamoDB Streams JSON
//!   record (the shape a Lambda trigger receives, with `eventSourceARN`), which the decoder reads
//!   like any other and which the error output keeps as the record's bytes;
//! - `ApproximateCreationDateTime` is in seconds; it is also the record's arrival time for
//!   `--until` and the lag metric;
//! - 24-hour retention ([`retention`]): the age of each shard's oldest unread record is a metric,
//!   and past [`RETENTION_WARNING`] a warning; a start the shard no longer holds (a checkpoint
//!   older than its oldest record, a start at a time over 24 hours ago, a child shard whose first
//!   records are gone) or a TrimmedDataAccessException while reading stops the run with the
//!   shard and the lost range, unless acknowledged (`--accept-lost-shard`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use tokio::sync::Mutex;

use crate::kinesis::api::classify;
use crate::kinesis::{ApiError, KinesisRecord, RecordBatch, Shard, StartAt, StreamApi};

mod record;
mod retention;
pub use record::{change_record, record_json, to_record};
use retention::{Lost, Need, Oldest};

/// DynamoDB Streams keeps records for 24 hours; past this age of the oldest unread record a
/// shard read warns (and the lag metric shows it) before records start to be trimmed.
pub const RETENTION_WARNING: Duration = Duration::from_secs(20 * 3600);

/// Shards per DescribeStream page (the most the API returns).
const SHARDS_PER_PAGE: i32 = 100;

/// A table's DynamoDB stream, by its ARN.
pub struct DynamoDbStream {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    table: String,
    listing: Mutex<Listing>,
    /// The shards whose parent the last complete listing listed too (so the parent was read
    /// here before them), for the retention checks.
    parent_listed: std::sync::Mutex<HashSet<String>>,
    /// Shards whose trimmed changes the user acknowledged (`--accept-lost-shard`): read from
    /// their oldest retained record instead of stopping.
    accepted: HashSet<String>,
    /// Shards already warned about nearing the retention limit (once per shard and process).
    warned: std::sync::Mutex<HashSet<String>>,
}

/// A shard listing in progress: the shards of the pages read so far and where the next page
/// starts. Kept across a failed call, so that a retry goes on instead of starting over.
#[derive(Debug, Default)]
struct Listing {
    shards: Vec<Shard>,
    after: Option<String>,
}

/// One DescribeStream page.
#[derive(Debug, Default)]
struct Page {
    shards: Vec<Shard>,
    last_evaluated: Option<String>,
}

/// Whether `source` names a DynamoDB stream by ARN (`arn:aws:dynamodb:...:table/T/stream/L`).
pub fn is_stream_arn(source: &str) -> bool {
    source.starts_with("arn:") && source.contains(":dynamodb:") && source.contains("/stream/")
}

/// The table of a stream ARN.
fn table_of(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":table/")?.1;
    rest.split('/').next().filter(|t| !t.is_empty())
}

impl DynamoDbStream {
    /// The stream of `source`: a stream ARN, or a table name whose latest stream DescribeTable
    /// gives. Clients from the standard AWS configuration (`AWS_ENDPOINT_URL_DYNAMODB`,
    /// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`).
    pub async fn connect(source: &str) -> Result<Self, ApiError> {
        let config = crate::aws::config().await;
        let arn = if is_stream_arn(source) {
            source.to_string()
        } else {
            let ddb = aws_sdk_dynamodb::Client::new(config);
            let resp = ddb
                .describe_table()
                .table_name(source)
                .send()
                .await
                .map_err(classify)?;
            let table = resp.table();
            let enabled = table
                .and_then(|t| t.stream_specification())
                .is_some_and(|s| s.stream_enabled());
            match table.and_then(|t| t.latest_stream_arn()) {
                Some(arn) if enabled => arn.to_string(),
                Some(arn) => {
                    tracing::warn!(
                        "table {source}: its stream is turned off; reading what {arn} still retains"
                    );
                    arn.to_string()
                }
                None => {
                    return Err(ApiError::Fatal(format!(
                        "table {source} has no DynamoDB stream: turn one on (aws dynamodb update-table --table-name {source} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES), or read its Kinesis data stream with --stream"
                    )))
                }
            }
        };
        let table = table_of(&arn)
            .ok_or_else(|| ApiError::Fatal(format!("not a DynamoDB stream ARN: {arn}")))?
            .to_string();
        Ok(DynamoDbStream {
            client: aws_sdk_dynamodbstreams::Client::new(config),
            arn,
            table,
            listing: Mutex::new(Listing::default()),
            parent_listed: Default::default(),
            accepted: HashSet::new(),
            warned: Default::default(),
        })
    }

    /// Shards whose trimmed changes are acknowledged (`--accept-lost-shard`): a start they no
    /// longer hold goes on from their oldest retained record, with a warning.
    pub fn accept_lost(&mut self, shards: &[String]) {
        self.accepted.extend(shards.iter().cloned());
    }

    /// The stream's ARN, which its checkpoint records.
    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// The stream's table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// A name for the stream's files (its default checkpoint): `dynamodb-{table}`.
    pub fn name(&self) -> String {
        format!("dynamodb-{}", self.table)
    }

    /// When the stream was created (DescribeStream's `CreationRequestDateTime`), in milliseconds
    /// since the epoch, where the service says.
    pub async fn created_ms(&self) -> Result<Option<i64>, ApiError> {
        let resp = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .limit(1)
            .send()
            .await
            .map_err(classify)?;
        Ok(resp
            .stream_description()
            .and_then(|d| d.creation_request_date_time())
            .and_then(|t| t.to_millis().ok()))
    }

    async fn page(&self, after: Option<String>) -> Result<Page, ApiError> {
        let resp = self
            .client
            .describe_stream()
            .stream_arn(&self.arn)
            .limit(SHARDS_PER_PAGE)
            .set_exclusive_start_shard_id(after)
            .send()
            .await
            .map_err(classify)?;
        let Some(desc) = resp.stream_description() else {
            return Ok(Page::default());
        };
        Ok(Page {
            shards: desc
                .shards()
                .iter()
                .filter_map(|s| {
                    Some(Shard {
                        id: s.shard_id()?.to_string(),
                        parent: s.parent_shard_id().map(str::to_string),
                        adjacent_parent: None,
                    })
                })
                .collect(),
            last_evaluated: desc.last_evaluated_shard_id().map(str::to_string),
        })
    }

    /// The oldest record still retained in `shard` (`None`: it holds none), following the
    /// empty pages the service may answer first.
    async fn oldest_retained(&self, shard: &str) -> Result<Option<Oldest>, ApiError> {
        let it = self
            .raw_iterator(shard, ShardIteratorType::TrimHorizon, None)
            .await?;
        let fetch = |inner| self.fetch(inner, shard, 1);
        let (records, _) = page_after_empty(it, EMPTY_PAGES_FOLLOWED, fetch).await?;
        Ok(records.into_iter().next().map(|r| Oldest {
            seq: r.sequence_number,
            created_ms: r.arrival_ms,
        }))
    }

    /// One GetRecords page of `shard` at the service's iterator `inner`.
    async fn fetch(&self, inner: String, shard: &str, limit: i32) -> Result<RawPage, ApiError> {
        let mut resp = self
            .client
            .get_records()
            .shard_iterator(inner)
            .limit(limit)
            .send()
            .await
            .map_err(classify)?;
        let arn: Arc<str> = Arc::from(self.arn.as_str());
        let records = resp
            .records
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|r| to_record(r, &arn, shard))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, resp.next_shard_iterator().map(str::to_string)))
    }

    /// A start the shard no longer holds: an error naming the shard and the range, or, for a
    /// shard whose loss was acknowledged, an iterator at its oldest retained record.
    async fn lost(&self, shard: &str, lost: Lost) -> Result<String, ApiError> {
        if !self.accepted.contains(shard) {
            return Err(ApiError::Fatal(retention::trimmed_message(
                &self.arn, shard, &lost,
            )));
        }
        tracing::warn!(
            shard,
            "the records after {} and before {} were trimmed before this lake read them; acknowledged (--accept-lost-shard): reading on from the oldest retained record",
            lost.from,
            lost.to
        );
        let it = self
            .raw_iterator(shard, ShardIteratorType::TrimHorizon, None)
            .await?;
        Ok(Iter::format(shard, None, true, None, &it))
    }

    async fn raw_iterator(
        &self,
        shard: &str,
        kind: ShardIteratorType,
        sequence: Option<&str>,
    ) -> Result<String, ApiError> {
        let resp = self
            .client
            .get_shard_iterator()
            .stream_arn(&self.arn)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_sequence_number(sequence.map(str::to_string))
            .send()
            .await
            .map_err(classify)?;
        resp.shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Fatal(format!("no iterator returned for shard {shard}")))
    }
}

/// Reads every page, going on from `listing` (what an earlier, failed call had read). On an
/// error the pages read so far stay in `listing`.
async fn list_all<F, Fut>(listing: &Mutex<Listing>, mut page: F) -> Result<Vec<Shard>, ApiError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Page, ApiError>>,
{
    let mut l = listing.lock().await;
    loop {
        let p = page(l.after.clone()).await?;
        l.shards.extend(p.shards);
        match p.last_evaluated {
            Some(id) => l.after = Some(id),
            None => {
                l.after = None;
                return Ok(std::mem::take(&mut l.shards));
            }
        }
    }
}

/// The iterator text handed to the shard reader: the shard (for messages and metrics), the
/// time before which records are skipped (a start at a time; empty once passed), whether it is
/// fresh from GetShardIterator, the last sequence number read before it (for the message about
/// trimmed changes), and the service's iterator.
struct Iter<'a> {
    shard: &'a str,
    from_ms: Option<i64>,
    fresh: bool,
    last: Option<&'a str>,
    inner: &'a str,
}

/// Empty pages followed at once after a fresh iterator. DynamoDB Streams may answer empty
/// pages before a part of the shard that holds records (after trimmed records, say); a shard
/// reader takes an empty page for the tip, where a scheduled run stops.
const EMPTY_PAGES_FOLLOWED: u32 = 4;

impl<'a> Iter<'a> {
    fn format(
        shard: &str,
        from_ms: Option<i64>,
        fresh: bool,
        last: Option<&str>,
        inner: &str,
    ) -> String {
        let from = from_ms.map(|t| t.to_string()).unwrap_or_default();
        let fresh = if fresh { "fresh" } else { "" };
        let last = last.unwrap_or_default();
        format!("{shard}\n{from}\n{fresh}\n{last}\n{inner}")
    }

    fn parse(text: &'a str) -> Result<Self, ApiError> {
        let bad = || ApiError::Fatal("malformed shard iterator".into());
        let mut parts = text.splitn(5, '\n');
        let shard = parts.next().ok_or_else(bad)?;
        let from = parts.next().ok_or_else(bad)?;
        let fresh = parts.next().ok_or_else(bad)? == "fresh";
        let last = Some(parts.next().ok_or_else(bad)?).filter(|l| !l.is_empty());
        let inner = parts.next().ok_or_else(bad)?;
        let from_ms = if from.is_empty() {
            None
        } else {
            Some(from.parse().map_err(|_| bad())?)
        };
        Ok(Iter {
            shard,
            from_ms,
            fresh,
            last,
            inner,
        })
    }
}

/// One GetRecords page: the records and the next iterator.
type RawPage = (Vec<KinesisRecord>, Option<String>);

/// Fetches the page at `iterator`, following up to `follows` empty pages to the next one.
async fn page_after_empty<F, Fut>(
    mut iterator: String,
    mut follows: u32,
    mut fetch: F,
) -> Result<RawPage, ApiError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<RawPage, ApiError>>,
{
    loop {
        let (records, next) = fetch(iterator).await?;
        match next {
            Some(n) if records.is_empty() && follows > 0 => {
                follows -= 1;
                iterator = n;
            }
            next => return Ok((records, next)),
        }
    }
}

/// Drops the leading records created before the minute of `from_ms` (an AT_TIMESTAMP start);
/// returns whether a record at or after it was seen, after which nothing more is dropped (so
/// that records with slightly out-of-order creation times are all kept). The minute, not the
/// second: creation times can be rounded down to the minute (DynamoDB Local's are, and so are
/// the examples in AWS's documentation), and a record created after the start must never be
/// dropped; a few from before it are kept instead.
fn skip_before(records: &mut Vec<KinesisRecord>, from_ms: i64) -> bool {
    let from_minute_ms = from_ms.div_euclid(60_000) * 60_000;
    let keep = records
        .iter()
        .position(|r| r.arrival_ms >= from_minute_ms)
        .unwrap_or(records.len());
    records.drain(..keep);
    !records.is_empty()
}

/// A page after a start at a time (`from_ms`): the records before it skipped ([`skip_before`]);
/// returns the start still to apply to the next pages (`None` once passed) and how far behind
/// the tip the page is. That is `None` (the tip) only for an empty page: a page skipped whole is
/// behind, so the reader asks again at once and a scheduled run does not stop there.
fn after_start(
    records: &mut Vec<KinesisRecord>,
    from_ms: Option<i64>,
    now_ms: i64,
) -> (Option<i64>, Option<i64>) {
    let last_read = records.last().map(|r| r.arrival_ms);
    let from_ms = match from_ms {
        Some(t) if skip_before(records, t) => None,
        other => other,
    };
    let behind = match (records.last(), last_read) {
        (Some(last), _) => Some((now_ms - last.arrival_ms).max(0)),
        (None, Some(t)) => Some((now_ms - t).max(1)),
        (None, None) => None,
    };
    (from_ms, behind)
}

impl StreamApi for DynamoDbStream {
    async fn list_shards(&self) -> Result<Vec<Shard>, ApiError> {
        let shards = list_all(&self.listing, |after| self.page(after)).await?;
        let ids: HashSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
        if let Ok(mut known) = self.parent_listed.lock() {
            *known = shards
                .iter()
                .filter(|s| s.parent.as_deref().is_some_and(|p| ids.contains(p)))
                .map(|s| s.id.clone())
                .collect();
        }
        Ok(shards)
    }

    async fn shard_iterator(&self, shard: &str, start: &StartAt) -> Result<String, ApiError> {
        let parent_listed = self.parent_listed.lock().is_ok_and(|p| p.contains(shard));
        let need = match start {
            StartAt::AfterSequence(s) => Some(Need::After(s)),
            StartAt::AtTimestamp(t) => Some(Need::Time(*t)),
            StartAt::TrimHorizon if parent_listed => Some(Need::ShardStart),
            StartAt::TrimHorizon => None,
        };
        let now_ms = chrono::Utc::now().timestamp_millis();
        if let Some(need) = need.filter(|&n| retention::worth_checking(n, shard, now_ms)) {
            let oldest = self.oldest_retained(shard).await?;
            if let Some(lost) = retention::missing(need, oldest.as_ref()) {
                return self.lost(shard, lost).await;
            }
        }
        let (kind, sequence, from_ms) = match start {
            StartAt::TrimHorizon => (ShardIteratorType::TrimHorizon, None, None),
            StartAt::AtTimestamp(ms) => (ShardIteratorType::TrimHorizon, None, Some(*ms)),
            StartAt::AfterSequence(s) => (
                ShardIteratorType::AfterSequenceNumber,
                Some(s.as_str()),
                None,
            ),
        };
        match self.raw_iterator(shard, kind, sequence).await {
            Ok(it) => Ok(Iter::format(shard, from_ms, true, sequence, &it)),
            // Refused: a checkpoint older than the shard's oldest record? (AWS answers
            // TrimmedDataAccessException, DynamoDB Local a ValidationException.)
            Err(ApiError::Fatal(msg)) if sequence.is_some() => {
                let Some(need) = need else {
                    return Err(ApiError::Fatal(msg));
                };
                let Ok(oldest) = self.oldest_retained(shard).await else {
                    return Err(ApiError::Fatal(msg));
                };
                match retention::missing(need, oldest.as_ref()) {
                    Some(lost) => self.lost(shard, lost).await,
                    None => Err(ApiError::Fatal(msg)),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn get_records(&self, iterator: &str, limit: i32) -> Result<RecordBatch, ApiError> {
        let it = Iter::parse(iterator)?;
        let follows = if it.fresh { EMPTY_PAGES_FOLLOWED } else { 0 };
        let fetch = |inner| self.fetch(inner, it.shard, limit.min(1000));
        let (mut records, next) = match page_after_empty(it.inner.to_string(), follows, fetch).await
        {
            Ok(page) => page,
            Err(ApiError::Fatal(msg)) if msg.starts_with("TrimmedDataAccessException") => {
                // Trimmed while this reader was behind: name what is missing.
                let oldest = self.oldest_retained(it.shard).await.ok().flatten();
                let lost = Lost {
                    from: it.last.map_or("the records this lake read".into(), |s| {
                        format!("sequence number {s}")
                    }),
                    to: oldest.map_or("the shard's oldest retained record".into(), |o| {
                        format!("sequence number {}, the oldest still retained", o.seq)
                    }),
                };
                return Err(ApiError::Fatal(retention::trimmed_message(
                    &self.arn, it.shard, &lost,
                )));
            }
            Err(e) => return Err(e),
        };
        let last_read = records
            .last()
            .map(|r| r.sequence_number.clone())
            .or(it.last.map(str::to_string));
        let now_ms = chrono::Utc::now().timestamp_millis();
        let (from_ms, behind) = after_start(&mut records, it.from_ms, now_ms);
        let oldest_unread_ms = records
            .first()
            .map_or(0, |r| (now_ms - r.arrival_ms).max(0));
        crate::metrics::oldest_unread_age(it.shard, oldest_unread_ms);
        if let Some(warning) =
            retention::nearing_message(oldest_unread_ms, RETENTION_WARNING.as_millis() as i64)
        {
            let first_time = self
                .warned
                .lock()
                .map(|mut w| w.insert(it.shard.to_string()))
                .unwrap_or(true);
            if first_time {
                tracing::warn!(shard = it.shard, "{warning}");
            }
        }
        Ok(RecordBatch {
            millis_behind_latest: behind,
            records,
            next_iterator: next
                .map(|n| Iter::format(it.shard, from_ms, false, last_read.as_deref(), &n)),
        })
    }
}

#[cfg(test)]
mod tests;
