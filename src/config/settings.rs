//! Validation: a parsed [`ConfigFile`] (file and flags merged) into [`Settings`] with typed
//! values, every problem named by its field.

use std::path::PathBuf;
use std::time::Duration;

use super::{invalid, ConfigError, ConfigFile, PartitionTime};
use crate::buffer::FlushPolicy;
use crate::encode::{Codec, EncodeOptions};
use crate::flatten::{ConvertOptions, FlattenOptions, StringLimit};
use crate::kinesis::Start;
use crate::partition::Template;
use crate::store::{S3Options, Sse};

impl ConfigFile {
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
        if !(1..=256).contains(&self.output.concurrent_writes) {
            return Err(invalid("output.concurrent_writes", "must be 1 to 256"));
        }
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
            accept_lost_shards: st.accept_lost_shards.clone(),
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
        let compact = match (self.markers.compact, markers.is_some()) {
            (false, _) => None,
            (true, false) => {
                return Err(invalid(
                    "markers.compact",
                    "compaction happens when an hour is complete: it needs hour markers (markers.enabled = true)",
                ))
            }
            (true, true) => {
                let target = parse_bytes("markers.compact_target", &self.markers.compact_target)?;
                // A compacted file is built in memory before it is written.
                if !(1 << 20..=1 << 30).contains(&target) {
                    return Err(invalid(
                        "markers.compact_target",
                        "a compacted file's target size is from 1MiB to 1GiB (it is built in memory before it is written)",
                    ));
                }
                Some(target)
            }
        };
        let f = &self.filter;
        let filter = crate::filter::Filter::new(&f.tables, &f.operations, &f.patterns)
            .map_err(|e| invalid("filter", e.to_string()))?;
        Ok(Settings {
            filter,
            markers,
            compact,
            stream,
            output,
            template,
            partition_time: self.output.partition_time,
            error_prefix: self.output.error_prefix.trim_end_matches('/').into(),
            state_prefix: self.output.state_prefix.trim_end_matches('/').into(),
            concurrent_writes: self.output.concurrent_writes,
            sort_rows: p.sort_rows,
            default_table: self.input.default_table.clone(),
            key: self.input.key.clone(),
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
    /// Checkpoint object (file path, `file://` or `s3://` URL); `None`:
    /// `{output}/{state_prefix}/checkpoints/{stream}.json`.
    pub checkpoint: Option<String>,
    /// Where shards without a checkpoint start.
    pub start: Start,
    /// Wait between polls of a shard with nothing new.
    pub poll_interval: Duration,
    /// How often the consumer lists shards to find new ones.
    pub discovery_interval: Duration,
    /// Most time from a stop request (SIGINT/SIGTERM) to the end of the final flush and
    /// checkpoint.
    pub shutdown_timeout: Duration,
    /// Checkpointed shards, no longer listed before they were read to their end, whose loss the
    /// user acknowledged: marked finished instead of stopping the run.
    pub accept_lost_shards: Vec<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `[stream]`: reading a Kinesis data stream (unused when reading files).
    pub stream: StreamSettings,
    /// The lake's root: a local folder, `file://` or `s3://` URL (empty for `schema infer`,
    /// which writes no lake).
    pub output: String,
    /// The partition template: `output.template`, else the layout's.
    pub template: Template,
    /// Which time chooses a record's partition.
    pub partition_time: PartitionTime,
    /// Folder of the error output under the lake's root; starts with `_`, no trailing slash.
    pub error_prefix: String,
    /// Folder of state (remembered schemas, default checkpoints) under the lake's root;
    /// starts with `_`, no trailing slash.
    pub state_prefix: String,
    /// Table for records that name none; `None`: such records go to the error output.
    pub default_table: Option<String>,
    /// A full table export's key attributes; empty: the ones the lake remembers.
    pub key: Vec<String>,
    /// Folder of declared schema files (`*.toml`); `None`: only remembered and inferred columns.
    pub schema_dir: Option<PathBuf>,
    /// How DynamoDB items become columns: depth, column budget, inference, old images, decimals,
    /// binary decoding and the string-length policy.
    pub flatten: FlattenOptions,
    /// When buffered partitions are written (by age only in continuous mode, which sets
    /// `max_age_ms`).
    pub flush: FlushPolicy,
    /// Continuous mode's flush age (batch runs flush at the end of input).
    pub max_age: Duration,
    /// Parquet writer settings (`[parquet]`).
    pub encode: EncodeOptions,
    /// The S3 client's settings (`[s3]`): region, endpoint, encryption, retries.
    pub s3: S3Options,
    /// Objects at least this many bytes go up as multipart uploads.
    pub multipart_threshold: usize,
    /// Multipart part size, in bytes (at least 5 MiB, S3's minimum).
    pub part_size: usize,
    /// Data files written at once, at most (`output.concurrent_writes`).
    pub concurrent_writes: usize,
    /// The order of a data file's rows (`parquet.sort_rows`).
    pub sort_rows: super::SortRows,
    /// Stream runs: hour-complete markers after this lateness (`None`: no markers).
    pub markers: Option<Duration>,
    /// Stream runs with markers: an hour's files are staged and compacted into files of about
    /// this many bytes when the hour is complete (`None`: written in place).
    pub compact: Option<usize>,
    /// Which records go on to the lake (`[filter]`).
    pub filter: crate::filter::Filter,
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
