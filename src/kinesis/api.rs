//! The narrow slice of the Kinesis Data Streams API the consumer needs, as a trait with the AWS
//! SDK implementation here and in-memory fakes in tests.

use std::future::Future;
use std::sync::Arc;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::Bytes;

/// One shard and its parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard id (`shardId-000000000000`).
    pub id: String,
    /// The shard this one was split or merged from; `None` for a shard with no parent.
    pub parent: Option<String>,
    /// The second parent when this shard came from a merge; `None` otherwise.
    pub adjacent_parent: Option<String>,
}

/// One record of a shard: a Kinesis record, or a DynamoDB Streams record as the SDK returned it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KinesisRecord {
    /// The record's sequence number within its shard, as the decimal text Kinesis returns.
    pub sequence_number: String,
    /// The payload: one change record as JSON, or a KPL aggregate of several. Empty for a
    /// DynamoDB Streams record, which is in `sdk`.
    pub data: Bytes,
    /// ApproximateArrivalTimestamp, milliseconds since the epoch.
    pub arrival_ms: i64,
    /// A DynamoDB Streams record, read from the SDK's types with no JSON text in between.
    pub sdk: Option<Arc<SdkRecord>>,
}

impl KinesisRecord {
    /// The record's size in bytes, as reported: its data's, or for a DynamoDB Streams record
    /// DynamoDB's `SizeBytes` (the record is never JSON text unless it goes to the error output).
    pub fn size(&self) -> usize {
        match &self.sdk {
            Some(s) => s.size(),
            None => self.data.len(),
        }
    }
}

/// A DynamoDB Streams record as the SDK returned it, and its stream's ARN (the record's
/// `eventSourceARN`).
#[derive(Debug, Clone, PartialEq)]
pub struct SdkRecord {
    /// The record.
    pub record: aws_sdk_dynamodbstreams::types::Record,
    /// The stream's ARN.
    pub arn: Arc<str>,
}

impl SdkRecord {
    /// DynamoDB's `SizeBytes` of the record (0 when it gives none).
    pub fn size(&self) -> usize {
        let size = self.record.dynamodb().and_then(|d| d.size_bytes());
        size.map_or(0, |n| usize::try_from(n).unwrap_or(0))
    }
}

/// Where a shard iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// At the oldest record still retained in the shard.
    TrimHorizon,
    /// Milliseconds since the epoch.
    AtTimestamp(i64),
    /// Just after the record with this sequence number.
    AfterSequence(String),
}

/// One GetRecords answer.
#[derive(Debug, Clone, Default)]
pub struct RecordBatch {
    /// The records read, in shard order; may be empty even when more follow.
    pub records: Vec<KinesisRecord>,
    /// `None` when the shard is closed and fully read.
    pub next_iterator: Option<String>,
    /// How far the read is behind the shard's tip, in milliseconds (0 at the tip);
    /// `None` when the answer does not say.
    pub millis_behind_latest: Option<i64>,
}

/// A failed call, classified by what the caller should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// ProvisionedThroughputExceeded, LimitExceeded, KMS throttling: back off and retry.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The iterator expired (5 minutes): get a new one from the last position.
    #[error("iterator expired: {0}")]
    ExpiredIterator(String),
    /// Network or service errors worth retrying.
    #[error("transient: {0}")]
    Transient(String),
    /// The stream or shard does not exist, access denied, bad request: retrying will not help.
    #[error("{0}")]
    Fatal(String),
}

/// What the consumer calls.
pub trait StreamApi: Send + Sync + 'static {
    /// Every shard of the stream, open and closed, following pagination.
    fn list_shards(&self) -> impl Future<Output = Result<Vec<Shard>, ApiError>> + Send;
    /// A new shard iterator for `shard`, starting at `start`.
    fn shard_iterator(
        &self,
        shard: &str,
        start: &StartAt,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;
    /// Up to `limit` records from `iterator`, with the iterator to use next.
    fn get_records(
        &self,
        iterator: &str,
        limit: i32,
    ) -> impl Future<Output = Result<RecordBatch, ApiError>> + Send;
}

/// The AWS SDK client for one stream (by name or ARN).
#[derive(Clone)]
pub struct AwsStream {
    client: aws_sdk_kinesis::Client,
    stream: String,
}

impl AwsStream {
    /// A client from the standard AWS configuration (credentials chain, region,
    /// `AWS_ENDPOINT_URL_KINESIS`).
    pub async fn connect(stream: &str) -> Self {
        AwsStream {
            client: aws_sdk_kinesis::Client::new(crate::aws::config().await),
            stream: stream.to_string(),
        }
    }

    fn is_arn(&self) -> bool {
        self.stream.starts_with("arn:")
    }

    /// The stream as given (name or ARN).
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The stream's name (the last part of an ARN), for file names.
    pub fn name(&self) -> &str {
        self.stream.rsplit('/').next().unwrap_or(&self.stream)
    }

    /// The stream's retention and creation time, in milliseconds (DescribeStreamSummary).
    pub async fn retention_and_creation(&self) -> Result<(i64, Option<i64>), ApiError> {
        let call = self.client.describe_stream_summary();
        let call = if self.is_arn() {
            call.stream_arn(&self.stream)
        } else {
            call.stream_name(&self.stream)
        };
        let resp = call.send().await.map_err(classify)?;
        let d = resp.stream_description_summary();
        Ok((
            d.map_or(24, |d| d.retention_period_hours()) as i64 * 3_600_000,
            d.and_then(|d| d.stream_creation_timestamp().to_millis().ok()),
        ))
    }

    /// The underlying SDK client, for calls outside [`StreamApi`].
    pub fn client(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }
}

/// Classifies a failed SDK call of any AWS service (the error codes of Kinesis and of DynamoDB
/// and DynamoDB Streams) by what the caller should do.
pub(crate) fn classify<E, R>(e: SdkError<E, R>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match &e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("");
            let msg = format!("{code}: {}", err.message().unwrap_or(""));
            match code {
                "ProvisionedThroughputExceededException"
                | "LimitExceededException"
                | "RequestLimitExceeded"
                | "KMSThrottlingException"
                | "ThrottlingException" => ApiError::Throttled(msg),
                "ExpiredIteratorException" => ApiError::ExpiredIterator(msg),
                "InternalFailure"
                | "InternalFailureException"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "KMSInternalException" => ApiError::Transient(msg),
                _ => ApiError::Fatal(msg),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ApiError::Transient(crate::errors::chain(&e))
        }
        _ => ApiError::Fatal(crate::errors::chain(&e)),
    }
}

impl StreamApi for AwsStream {
    async fn list_shards(&self) -> Result<Vec<Shard>, ApiError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.client.list_shards();
            req = match &token {
                Some(t) => req.next_token(t),
                None if self.is_arn() => req.stream_arn(&self.stream),
                None => req.stream_name(&self.stream),
            };
            let resp = req.send().await.map_err(classify)?;
            for s in resp.shards() {
                out.push(Shard {
                    id: s.shard_id().to_string(),
                    parent: s.parent_shard_id().map(str::to_string),
                    adjacent_parent: s.adjacent_parent_shard_id().map(str::to_string),
                });
            }
            token = resp.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn shard_iterator(&self, shard: &str, start: &StartAt) -> Result<String, ApiError> {
        let mut req = self.client.get_shard_iterator().shard_id(shard);
        req = if self.is_arn() {
            req.stream_arn(&self.stream)
        } else {
            req.stream_name(&self.stream)
        };
        req = match start {
            StartAt::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            StartAt::AtTimestamp(ms) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(DateTime::from_millis(*ms)),
            StartAt::AfterSequence(s) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(s),
        };
        let resp = req.send().await.map_err(classify)?;
        resp.shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| ApiError::Fatal(format!("no iterator returned for shard {shard}")))
    }

    async fn get_records(&self, iterator: &str, limit: i32) -> Result<RecordBatch, ApiError> {
        let resp = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
            .map_err(classify)?;
        let millis_behind_latest = resp.millis_behind_latest();
        // The records are moved out of the response, their data not copied again.
        let records = resp
            .records
            .into_iter()
            .map(|r| KinesisRecord {
                arrival_ms: r
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .unwrap_or_default(),
                sequence_number: r.sequence_number,
                data: Bytes::from(r.data.into_inner()),
                sdk: None,
            })
            .collect();
        Ok(RecordBatch {
            records,
            next_iterator: resp.next_shard_iterator,
            millis_behind_latest,
        })
    }
}
