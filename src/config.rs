//! Configuration: a TOML file parsed into [`ConfigFile`] (unknown fields are errors), overridden
//! by command-line flags, then validated into [`Settings`] with typed values. Every field is
//! documented in `docs/CONFIG.md`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::buffer::FlushPolicy;
use crate::encode::{Codec, EncodeOptions};
use crate::flatten::{ConvertOptions, FlattenOptions, StringLimit, StringPolicy};
use crate::kinesis::Start;
use crate::partition::{Layout, Template, TemplateError};
use crate::store::{S3Options, Sse};

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

    /// Validates into settings.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let output = self
            .output
            .url
            .clone()
            .ok_or_else(|| invalid("output.url", "no output given (use --output)"))?;
        let template = Template::parse(
            self.output
                .template
                .as_deref()
                .unwrap_or(self.output.layout.template()),
        )?;
        for (field, prefix) in [
            ("output.error_prefix", &self.output.error_prefix),
            ("output.state_prefix", &self.output.state_prefix),
        ] {
            if !prefix.starts_with('_') || prefix.contains("..") || prefix.contains('\\') {
                return Err(invalid(
                    field,
                    "must start with `_` (so no table folder or Athena table can include it)",
                ));
            }
        }
        if !(1..=3).contains(&self.input.binary_decode_depth) {
            return Err(invalid("input.binary_decode_depth", "must be 1, 2 or 3"));
        }
        let s = &self.schema;
        if !(1..=32).contains(&s.flatten_depth) {
            return Err(invalid("schema.flatten_depth", "must be 1 to 32"));
        }
        if s.max_columns < crate::schema::Meta::ALL.len() + 1 {
            return Err(invalid(
                "schema.max_columns",
                "too small to hold the metadata columns and one attribute",
            ));
        }
        if self.redshift.max_string_bytes == 0 {
            return Err(invalid("redshift.max_string_bytes", "must be at least 1"));
        }
        if s.decimal_scale > 37 {
            return Err(invalid("schema.decimal_scale", "must be 0 to 37"));
        }
        let b = &self.buffer;
        let max_bytes = parse_bytes("buffer.max_bytes", &b.max_bytes)?;
        let memory_budget = parse_bytes("buffer.memory_budget", &b.memory_budget)?;
        if b.max_records == 0 {
            return Err(invalid("buffer.max_records", "must be at least 1"));
        }
        let max_age = parse_duration("buffer.max_age", &b.max_age)?;
        let p = &self.parquet;
        let codec: Codec = p
            .compression
            .parse()
            .map_err(|e| invalid("parquet.compression", e))?;
        if p.row_group_rows == 0 {
            return Err(invalid("parquet.row_group_rows", "must be at least 1"));
        }
        let multipart_threshold =
            parse_bytes("s3.multipart_threshold", &self.s3.multipart_threshold)?;
        let part_size = parse_bytes("s3.part_size", &self.s3.part_size)?;
        // S3's minimum part size; a local test server can be told to accept smaller parts, so
        // that tests make real multi-part uploads of small files (docs/CONFIG.md).
        let min_part = std::env::var("DDB_LAKE_TEST_MIN_PART_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5 * 1024 * 1024);
        if part_size < min_part {
            return Err(invalid("s3.part_size", "S3 parts must be at least 5MiB"));
        }
        if self.s3.kms_key_id.is_some() && self.s3.sse != Sse::Kms {
            return Err(invalid("s3.kms_key_id", "only used with sse = \"kms\""));
        }
        let st = &self.stream;
        let start = match (st.start.as_str(), &st.start_timestamp) {
            ("trim_horizon", None) => Start::TrimHorizon,
            ("latest", None) => Start::Latest,
            ("at_timestamp", Some(t)) => Start::AtTimestamp(
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| invalid("stream.start_timestamp", format!("`{t}`: {e}")))?
                    .timestamp_millis(),
            ),
            ("at_timestamp", None) => {
                return Err(invalid(
                    "stream.start_timestamp",
                    "required with start = \"at_timestamp\"",
                ))
            }
            (_, Some(_)) => {
                return Err(invalid(
                    "stream.start_timestamp",
                    "only used with start = \"at_timestamp\"",
                ))
            }
            (other, _) => {
                return Err(invalid(
                    "stream.start",
                    format!("`{other}`: expected trim_horizon, latest or at_timestamp"),
                ))
            }
        };
        let stream = StreamSettings {
            checkpoint: st.checkpoint.clone(),
            start,
            poll_interval: parse_duration("stream.poll_interval", &st.poll_interval)?,
            discovery_interval: parse_duration(
                "stream.discovery_interval",
                &st.discovery_interval,
            )?,
            shutdown_timeout: parse_duration("stream.shutdown_timeout", &st.shutdown_timeout)?,
        };
        let markers = match self.markers.enabled {
            false => None,
            true => {
                if template.columns().next().is_some() {
                    return Err(invalid(
                        "markers.enabled",
                        "hour markers need a partition layout made of the table and the time only (no column values)",
                    ));
                }
                if !template.fixes_hour() {
                    return Err(invalid(
                        "markers.enabled",
                        "hour markers need hourly partitions ({YYYY}, {MM}, {DD} and {HH} in the template)",
                    ));
                }
                Some(parse_duration(
                    "markers.allowed_lateness",
                    &self.markers.allowed_lateness,
                )?)
            }
        };
        Ok(Settings {
            markers,
            stream,
            output,
            template,
            partition_time: self.output.partition_time,
            error_prefix: self.output.error_prefix.trim_end_matches('/').into(),
            state_prefix: self.output.state_prefix.trim_end_matches('/').into(),
            default_table: self.input.default_table.clone(),
            schema_dir: s.dir.clone(),
            flatten: FlattenOptions {
                max_depth: s.flatten_depth,
                max_columns: s.max_columns,
                infer: s.infer,
                keep_old_image: s.keep_old_image,
                decimal_scale: s.decimal_scale,
                convert: ConvertOptions {
                    binary_decode_depth: self.input.binary_decode_depth,
                },
                strings: StringLimit {
                    max_bytes: self.redshift.max_string_bytes,
                    policy: self.redshift.string_policy,
                    // Settings live for the whole process: the small per-column list is leaked
                    // once so that the flatten options stay `Copy` on the hot path.
                    columns: Box::leak(
                        self.redshift
                            .columns
                            .iter()
                            .map(|(k, v)| (k.clone(), *v))
                            .collect::<Vec<_>>()
                            .into_boxed_slice(),
                    ),
                },
            },
            flush: FlushPolicy {
                max_bytes,
                max_records: b.max_records as usize,
                max_age_ms: None,
                memory_budget,
            },
            max_age,
            encode: EncodeOptions {
                codec,
                row_group_rows: p.row_group_rows,
                row_group_bytes: parse_bytes("parquet.row_group_size", &p.row_group_size)?,
                data_page_bytes: parse_bytes("parquet.data_page_size", &p.data_page_size)?,
                dictionary: p.dictionary,
                statistics: p.statistics,
            },
            s3: S3Options {
                region: self.s3.region.clone(),
                endpoint: self.s3.endpoint.clone(),
                allow_http: self.s3.allow_http,
                sse: self.s3.sse.clone(),
                kms_key_id: self.s3.kms_key_id.clone(),
                bucket_key: self.s3.bucket_key,
                retry: crate::store::Retry {
                    max_retries: self.s3.max_retries,
                    retry_timeout: parse_duration("s3.retry_timeout", &self.s3.retry_timeout)?,
                    request_timeout: parse_duration(
                        "s3.request_timeout",
                        &self.s3.request_timeout,
                    )?,
                    connect_timeout: parse_duration(
                        "s3.connect_timeout",
                        &self.s3.connect_timeout,
                    )?,
                },
            },
            multipart_threshold,
            part_size,
        })
    }
}

/// Validated `[stream]` settings.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    pub checkpoint: Option<String>,
    pub start: Start,
    pub poll_interval: Duration,
    pub discovery_interval: Duration,
    pub shutdown_timeout: Duration,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stream: StreamSettings,
    pub output: String,
    pub template: Template,
    pub partition_time: PartitionTime,
    pub error_prefix: String,
    pub state_prefix: String,
    pub default_table: Option<String>,
    pub schema_dir: Option<PathBuf>,
    pub flatten: FlattenOptions,
    pub flush: FlushPolicy,
    /// Continuous mode's flush age (batch runs flush at the end of input).
    pub max_age: Duration,
    pub encode: EncodeOptions,
    pub s3: S3Options,
    pub multipart_threshold: usize,
    pub part_size: usize,
    /// Stream runs: hour-complete markers after this lateness (`None`: no markers).
    pub markers: Option<Duration>,
}

/// Parses `128MiB`, `1 GiB`, `64KB` (KB, MB, GB are powers of 1000), or plain bytes.
pub fn parse_bytes(field: &'static str, s: &str) -> Result<usize, ConfigError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| invalid(field, format!("`{s}` is not a size such as 128MiB")))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        other => return Err(invalid(field, format!("unknown size unit `{other}`"))),
    };
    let v = num * mult;
    if v < 1.0 {
        return Err(invalid(field, "must be at least 1 byte"));
    }
    Ok(v as usize)
}

/// Parses `300s`, `5m`, `1h 30m` (humantime).
pub fn parse_duration(field: &'static str, s: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(s).map_err(|e| invalid(field, format!("`{s}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

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
