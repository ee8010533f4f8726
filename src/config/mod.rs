//! Configuration: a TOML file parsed into [`ConfigFile`] (unknown fields are errors), overridden
//! by command-line flags, then validated into [`Settings`] with typed values. Every field is
//! documented in `docs/CONFIG.md`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::flatten::StringPolicy;
use crate::partition::{Layout, TemplateError};
use crate::store::Sse;

mod settings;

pub use settings::{parse_bytes, parse_duration, Settings, StreamSettings};

/// 64 MiB: the buffered (Arrow) size of one partition before it is written (about 6 to 10 MiB
/// of zstd Parquet for typical change records).
pub const DEFAULT_MAX_BYTES: &str = "64MiB";
/// 64 MiB: all open partitions together; the largest flush first beyond it. Chosen so that a
/// run stays under 300 MB of peak RSS (docs/BENCHMARKS.md, "Memory").
pub const DEFAULT_MEMORY_BUDGET: &str = "64MiB";
/// Rows per file before a flush, whatever their size.
pub const DEFAULT_MAX_RECORDS: u64 = 5_000_000;
/// 300 s: continuous mode writes a partition at least this often (Firehose's longest interval).
pub const DEFAULT_MAX_AGE: &str = "300s";
/// 16 MiB: objects at least this large go up as multipart uploads.
pub const DEFAULT_MULTIPART_THRESHOLD: &str = "16MiB";
/// 8 MiB parts: above S3's 5 MiB minimum, small enough to retry cheaply.
pub const DEFAULT_PART_SIZE: &str = "8MiB";

/// Why the configuration is unusable: the file, or the field and what is wrong with it
/// (exit code 3).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("reading config {path}: {source}")]
    Read {
        /// The config file, as given.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or has an unknown field or a value of the wrong type.
    #[error("config {path}: {source}")]
    Parse {
        /// The config file, as given.
        path: PathBuf,
        /// The TOML error, with the line and column.
        source: Box<toml::de::Error>,
    },
    /// A value that is not allowed, found by validation (of the merged file and flags).
    #[error("config field `{field}`: {problem}")]
    Invalid {
        /// The config field, such as `buffer.max_bytes`, or the option the value came from.
        field: &'static str,
        /// What is wrong with the value, or what is expected instead.
        problem: String,
    },
    /// The partition template (`output.template`, or the layout's) is not valid.
    #[error(transparent)]
    Template(#[from] TemplateError),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// The config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// `[input]`: how records are read.
    pub input: InputConfig,
    /// `[output]`: where the lake goes and how it is partitioned.
    pub output: OutputConfig,
    /// `[schema]`: declared schemas, and how attributes become columns.
    pub schema: SchemaConfig,
    /// `[buffer]`: when buffered partitions are written.
    pub buffer: BufferConfig,
    /// `[parquet]`: Parquet writer settings.
    pub parquet: ParquetConfig,
    /// `[s3]`: the S3 client: endpoint, encryption, multipart uploads, retries.
    pub s3: S3Config,
    /// `[stream]`: reading a Kinesis data stream.
    pub stream: StreamConfig,
    /// `[redshift]`: the string-length policy.
    pub redshift: RedshiftConfig,
    /// `[markers]`: hour-complete markers of stream runs.
    pub markers: MarkersConfig,
    /// `[filter]`: which records go on to the lake.
    pub filter: FilterConfig,
}

/// `[filter]`: which records go on to the lake; the others are counted as filtered. Every list
/// that is set must let a record through.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// DynamoDB table names (empty: every table).
    pub tables: Vec<String>,
    /// INSERT, MODIFY, REMOVE, SNAPSHOT (empty: every operation).
    pub operations: Vec<String>,
    /// Lambda event source mapping filter patterns (JSON text); a record passes when it
    /// matches any (empty: no pattern condition).
    pub patterns: Vec<String>,
}

/// `[markers]`: hour-complete markers of stream runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarkersConfig {
    /// Write a marker and a manifest for each hour once the event-time watermark passes its end
    /// plus `allowed_lateness`.
    pub enabled: bool,
    /// How long past an hour's end the event-time watermark must be before the hour is marked,
    /// such as `15m`.
    pub allowed_lateness: String,
    /// Keep each hour's files out of the table folder until the hour is complete, then write
    /// them as files of `compact_target` sorted by key (docs/DESIGN.md, "Compaction").
    pub compact: bool,
    /// The size of a compacted file, such as `128MiB`.
    pub compact_target: String,
}

impl Default for MarkersConfig {
    fn default() -> Self {
        MarkersConfig {
            enabled: false,
            allowed_lateness: "15m".into(),
            compact: false,
            compact_target: "128MiB".into(),
        }
    }
}

/// `[redshift]`: the string-length policy (Redshift VARCHAR stops at 65,535 bytes and COPY from
/// Parquet cannot truncate).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedshiftConfig {
    /// Longest text value, in bytes.
    pub max_string_bytes: usize,
    /// `keep`, `truncate` (cut and name the column in cdc_truncated) or `reject` (the record goes
    /// to the error output).
    pub string_policy: StringPolicy,
    /// Per-column policies by column name, overriding `string_policy`.
    pub columns: std::collections::BTreeMap<String, StringPolicy>,
}

impl Default for RedshiftConfig {
    fn default() -> Self {
        RedshiftConfig {
            max_string_bytes: 65_535,
            string_policy: StringPolicy::Keep,
            columns: Default::default(),
        }
    }
}

/// `[stream]`: reading a Kinesis data stream (`consume`, `export --stream`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Checkpoint object (file path, file:// or s3:// URL); default: next to the output.
    pub checkpoint: Option<String>,
    /// Where shards without a checkpoint start: `trim_horizon`, `latest` or `at_timestamp`.
    pub start: String,
    /// RFC 3339 time for `start = "at_timestamp"`.
    pub start_timestamp: Option<String>,
    /// Wait between polls of a shard with nothing new.
    pub poll_interval: String,
    /// How often the consumer looks for new shards.
    pub discovery_interval: String,
    /// Most time from a stop request to the end of the final flush.
    pub shutdown_timeout: String,
    /// Shards whose loss is acknowledged: checkpointed, not read to their end, and no longer
    /// listed by the stream (retention passed). Normally given once, on the command line.
    pub accept_lost_shards: Vec<String>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            checkpoint: None,
            start: "trim_horizon".into(),
            start_timestamp: None,
            poll_interval: "1s".into(),
            discovery_interval: "30s".into(),
            shutdown_timeout: "60s".into(),
            accept_lost_shards: Vec::new(),
        }
    }
}

/// `[input]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Table for records that name none (DynamoDB Streams records without an ARN).
    pub default_table: Option<String>,
    /// A full table export's key attributes (its items do not say which they are); empty: the
    /// ones the lake remembers for the table, if any.
    pub key: Vec<String>,
    /// Times binary values are base64-decoded (2 for sources that encode twice).
    pub binary_decode_depth: u8,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            default_table: None,
            key: Vec::new(),
            binary_decode_depth: 1,
        }
    }
}

/// The order of the rows within a data file (`[parquet] sort_rows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortRows {
    /// In the order read.
    #[default]
    None,
    /// By the table's key, then by the order of the item's changes.
    Key,
    /// As `key` where the file's rows repeat items (at least one row in eight), else as read.
    Auto,
}

/// Which time chooses a record's partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionTime {
    /// The record's ApproximateCreationDateTime.
    #[default]
    Event,
    /// When ddb-lake processed it (stream records: when they arrived in the stream, so that a
    /// record read again after a crash lands in the same partition).
    Processing,
}

/// Data files written at once: S3 puts are round trips, and small files one after the other are
/// bound by their latency (docs/BENCHMARKS.md, "Concurrent writes").
pub const DEFAULT_CONCURRENT_WRITES: usize = 16;

/// `[output]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Where the lake goes: a local folder, `file://` or `s3://bucket/prefix`.
    pub url: Option<String>,
    /// `hourly` (`{table}/YYYY/MM/DD/HH`), `hive` or `hive_dt`.
    pub layout: Layout,
    /// A custom partition template; overrides `layout`.
    pub template: Option<String>,
    /// `event` or `processing`.
    pub partition_time: PartitionTime,
    /// Folder for the error output, outside every table folder.
    pub error_prefix: String,
    /// Folder for state (remembered schemas), outside every table folder.
    pub state_prefix: String,
    /// Data files written at once, at most (1 to 256).
    pub concurrent_writes: usize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            url: None,
            layout: Layout::Hourly,
            template: None,
            partition_time: PartitionTime::Event,
            error_prefix: "_errors".into(),
            state_prefix: "_ddb_lake".into(),
            concurrent_writes: DEFAULT_CONCURRENT_WRITES,
        }
    }
}

/// `[schema]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaConfig {
    /// Folder of declared schema files (`*.toml`), one per table.
    pub dir: Option<PathBuf>,
    /// Add columns for attributes no schema declares.
    pub infer: bool,
    /// Map levels flattened into columns.
    pub flatten_depth: usize,
    /// Column budget per table, metadata columns included.
    pub max_columns: usize,
    /// Also write OldImage into `old_` columns.
    pub keep_old_image: bool,
    /// Scale of inferred decimal(38,s) columns for non-integer numbers.
    pub decimal_scale: u8,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            dir: None,
            infer: true,
            flatten_depth: 3,
            max_columns: 1000,
            keep_old_image: false,
            decimal_scale: 9,
        }
    }
}

/// `[buffer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// Buffered (Arrow) size of one partition that triggers writing it, such as `64MiB`.
    pub max_bytes: String,
    /// Buffered rows of one partition that trigger writing it (at least 1).
    pub max_records: u64,
    /// Continuous mode: a partition is written at least this often, such as `300s` (batch runs
    /// write at the end of input).
    pub max_age: String,
    /// All open partitions together, such as `64MiB`; past it the largest are written first.
    pub memory_budget: String,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            max_bytes: DEFAULT_MAX_BYTES.into(),
            max_records: DEFAULT_MAX_RECORDS,
            max_age: DEFAULT_MAX_AGE.into(),
            memory_budget: DEFAULT_MEMORY_BUDGET.into(),
        }
    }
}

/// `[parquet]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    /// `zstd` (level 3), `zstd(LEVEL)` (default `zstd(2)`), `snappy`, `gzip` (level 6),
    /// `gzip(LEVEL)` or `none`.
    pub compression: String,
    /// Most rows per row group (at least 1).
    pub row_group_rows: usize,
    /// Most bytes per row group, such as `128MiB`.
    pub row_group_size: String,
    /// Target size of a data page, such as `1MiB`.
    pub data_page_size: String,
    /// Whether columns are dictionary-encoded.
    pub dictionary: bool,
    /// Write page and column-chunk statistics (min/max, for predicate pushdown).
    pub statistics: bool,
    /// The order of a file's rows: `none` (as read), `key` or `auto`.
    pub sort_rows: SortRows,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            compression: "zstd(2)".into(),
            row_group_rows: 1024 * 1024,
            row_group_size: "128MiB".into(),
            data_page_size: "1MiB".into(),
            dictionary: true,
            statistics: true,
            sort_rows: SortRows::None,
        }
    }
}

/// `[s3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Region of the buckets; `None`: the environment's (`AWS_REGION`).
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible store (path-style requests); `None`:
    /// `AWS_ENDPOINT_URL_S3`, else AWS's own endpoint.
    pub endpoint: Option<String>,
    /// Allow plain HTTP endpoints (local test servers); `AWS_ALLOW_HTTP=true` allows them too.
    pub allow_http: bool,
    /// Server-side encryption of written objects: `none` (the bucket's default), `aes256`
    /// (SSE-S3) or `kms` (SSE-KMS).
    pub sse: Sse,
    /// KMS key for `sse = "kms"` (an error with any other `sse`); `None`: the account's
    /// default key.
    pub kms_key_id: Option<String>,
    /// Use an S3 Bucket Key with SSE-KMS.
    pub bucket_key: bool,
    /// Objects at least this large go up as multipart uploads, such as `16MiB`.
    pub multipart_threshold: String,
    /// Multipart part size, such as `8MiB`; at least 5 MiB (S3's minimum).
    pub part_size: String,
    /// object_store's retries of failed S3 requests (5xx, 429, timeouts of idempotent requests,
    /// cut connections), with exponential backoff.
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt, such as `3m`.
    pub retry_timeout: String,
    /// Time limit of one request, an upload part included, such as `30s`.
    pub request_timeout: String,
    /// Time limit of setting up a connection, such as `5s`.
    pub connect_timeout: String,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            region: None,
            endpoint: None,
            allow_http: false,
            sse: Sse::None,
            kms_key_id: None,
            bucket_key: false,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD.into(),
            part_size: DEFAULT_PART_SIZE.into(),
            max_retries: 10,
            retry_timeout: "3m".into(),
            request_timeout: "30s".into(),
            connect_timeout: "5s".into(),
        }
    }
}

impl ConfigFile {
    /// Reads and parses a TOML configuration file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn defaults_validate() {
        let mut c = ConfigFile::default();
        assert!(c.validate().is_err());
        c.output.url = Some("out".into());
        let s = c.validate().unwrap();
        assert_eq!(s.flush.max_bytes, 64 << 20);
        assert_eq!(s.flush.memory_budget, 64 << 20);
        assert_eq!(s.max_age, Duration::from_secs(300));
        assert_eq!(s.template.as_str(), "{table}/{YYYY}/{MM}/{DD}/{HH}");
        assert_eq!(s.sort_rows, SortRows::None);
        assert_eq!(s.encode.codec, crate::encode::DEFAULT_CODEC);
        assert_eq!(
            s.encode.codec,
            crate::encode::EncodeOptions::default().codec
        );
        let mut c: ConfigFile = toml::from_str("[parquet]\nsort_rows = \"auto\"").unwrap();
        c.output.url = Some("out".into());
        assert_eq!(c.validate().unwrap().sort_rows, SortRows::Auto);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(toml::from_str::<ConfigFile>("[buffer]\nmax_byte = \"1MiB\"").is_err());
        assert!(toml::from_str::<ConfigFile>("nope = 1").is_err());
        assert!(toml::from_str::<ConfigFile>("[parquet]\nsort_rows = \"random\"").is_err());
        let bad = |toml_text: &str| {
            let mut c: ConfigFile = toml::from_str(toml_text).unwrap();
            c.output.url = Some("out".into());
            c.validate().unwrap_err().to_string()
        };
        assert!(bad("[buffer]\nmax_bytes = \"12 parsecs\"").contains("buffer.max_bytes"));
        assert!(bad("[parquet]\ncompression = \"lz5\"").contains("parquet.compression"));
        assert!(bad("[output]\ntemplate = \"{YYYY}\"").contains("{table}"));
        assert!(bad("[output]\nerror_prefix = \"errors\"").contains("error_prefix"));
        assert!(bad("[s3]\npart_size = \"1MiB\"").contains("s3.part_size"));
        assert!(bad("[output]\nconcurrent_writes = 0").contains("output.concurrent_writes"));
        assert!(bad("[output]\nconcurrent_writes = 257").contains("output.concurrent_writes"));
        assert!(bad("[stream]\nstart = \"at_timestamp\"").contains("stream.start_timestamp"));
        assert!(bad("[stream]\nstart = \"oldest\"").contains("stream.start"));
        // Compaction happens when an hour completes: it needs markers, and files of some size.
        assert!(bad("[markers]\ncompact = true").contains("markers.compact"));
        assert!(
            bad("[markers]\nenabled = true\ncompact = true\ncompact_target = \"64KiB\"")
                .contains("markers.compact_target")
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("f", "128MiB").unwrap(), 128 << 20);
        assert_eq!(parse_bytes("f", "1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("f", "64KB").unwrap(), 64_000);
        assert_eq!(parse_bytes("f", "4096").unwrap(), 4096);
        assert!(parse_bytes("f", "0").is_err());
    }
}
