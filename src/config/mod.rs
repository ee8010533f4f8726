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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("config field `{field}`: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
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
    pub input: InputConfig,
    pub output: OutputConfig,
    pub schema: SchemaConfig,
    pub buffer: BufferConfig,
    pub parquet: ParquetConfig,
    pub s3: S3Config,
    pub stream: StreamConfig,
    pub redshift: RedshiftConfig,
    pub markers: MarkersConfig,
}

/// `[markers]`: hour-complete markers of stream runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarkersConfig {
    /// Write a marker and a manifest for each hour once the event-time watermark passes its end
    /// plus `allowed_lateness`.
    pub enabled: bool,
    pub allowed_lateness: String,
}

impl Default for MarkersConfig {
    fn default() -> Self {
        MarkersConfig {
            enabled: false,
            allowed_lateness: "15m".into(),
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
        }
    }
}

/// `[input]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Table for records that name none (DynamoDB Streams records without an ARN).
    pub default_table: Option<String>,
    /// Times binary values are base64-decoded (2 for sources that encode twice).
    pub binary_decode_depth: u8,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            default_table: None,
            binary_decode_depth: 1,
        }
    }
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
    pub max_bytes: String,
    pub max_records: u64,
    pub max_age: String,
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
    pub compression: String,
    pub row_group_rows: usize,
    pub row_group_size: String,
    pub data_page_size: String,
    pub dictionary: bool,
    pub statistics: bool,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            compression: "zstd".into(),
            row_group_rows: 1024 * 1024,
            row_group_size: "128MiB".into(),
            data_page_size: "1MiB".into(),
            dictionary: true,
            statistics: true,
        }
    }
}

/// `[s3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub allow_http: bool,
    pub sse: Sse,
    pub kms_key_id: Option<String>,
    pub bucket_key: bool,
    pub multipart_threshold: String,
    pub part_size: String,
    /// object_store's retries of failed S3 requests (5xx, 429, timeouts of idempotent requests,
    /// cut connections), with exponential backoff.
    pub max_retries: usize,
    pub retry_timeout: String,
    pub request_timeout: String,
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
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors() {
        assert!(toml::from_str::<ConfigFile>("[buffer]\nmax_byte = \"1MiB\"").is_err());
        assert!(toml::from_str::<ConfigFile>("nope = 1").is_err());
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
        assert!(bad("[stream]\nstart = \"at_timestamp\"").contains("stream.start_timestamp"));
        assert!(bad("[stream]\nstart = \"oldest\"").contains("stream.start"));
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
