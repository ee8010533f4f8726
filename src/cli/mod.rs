//! Command-line arguments, parsed with clap, then resolved with the config file into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{ConfigError, ConfigFile, PartitionTime, Settings, SortRows};
use crate::generate::Shape;
use crate::partition::Layout;

mod lake;
pub use lake::{Catalog, DdlArgs, DdlCommand, LakeArgs, SnapshotArgs};

/// The command line: a subcommand and the global logging options.
#[derive(Debug, Parser)]
#[command(
    name = "ddb-lake",
    version,
    about = "DynamoDB change records to an hour-partitioned Parquet lake for Athena and Redshift"
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log level filter (error, warn, info, debug) or a tracing filter.
    #[arg(long, global = true, default_value = "info", env = "DDB_LAKE_LOG")]
    pub log: String,
    /// Log format on stderr: text or json (one JSON object per line).
    #[arg(env = "DDB_LAKE_LOG_FORMAT", long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// The subcommands of `ddb-lake`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read change records from files, or from a stream (Kinesis or DynamoDB Streams) up to now, and write the lake.
    Export(ExportArgs),
    /// Read a stream (Kinesis or DynamoDB Streams) continuously and write the lake until stopped (SIGINT/SIGTERM).
    Consume(ConsumeArgs),
    /// Load a table's full export into the lake (starting one, or one you have) and leave its stream's checkpoint so that `export`/`consume` go on with no change missing.
    Bootstrap(BootstrapArgs),
    /// Print each shard's checkpoint and how far it is behind the stream's tip.
    Status(StatusArgs),
    /// Print table definitions for Athena or Redshift from the lake's schemas.
    #[command(subcommand)]
    Ddl(DdlCommand),
    /// Write each table as it is at the end of an hour: the latest image of every item (deleted ones left out), as Parquet in a folder of its own, made current atomically; incremental.
    Snapshot(SnapshotArgs),
    /// Write realistic sample change records for a demo table.
    Generate(GenerateArgs),
    /// Table schema files.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

/// The subcommands of `ddb-lake schema`.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Infer schema files from records, to review and edit.
    Infer(InferArgs),
}

/// Settings shared by commands that read records.
#[derive(Debug, Args, Default)]
pub struct CommonArgs {
    /// Config file (TOML, see docs/CONFIG.md).
    #[arg(env = "DDB_LAKE_CONFIG", long, short)]
    pub config: Option<PathBuf>,
    /// Folder of declared schema files (schema.dir).
    #[arg(env = "DDB_LAKE_SCHEMAS", long)]
    pub schemas: Option<PathBuf>,
    /// Table for records that name none (input.default_table).
    #[arg(env = "DDB_LAKE_DEFAULT_TABLE", long)]
    pub default_table: Option<String>,
    /// The table's key attributes (partition key, then sort key) for a full table export, whose
    /// items do not say which they are; remembered with the schema (input.key).
    #[arg(env = "DDB_LAKE_KEY", long, value_name = "ATTR", num_args = 1.., value_delimiter = ',')]
    pub key: Vec<String>,
    /// Also write OldImage into old_ columns (schema.keep_old_image).
    #[arg(env = "DDB_LAKE_KEEP_OLD_IMAGE", long)]
    pub keep_old_image: bool,
    /// Map levels flattened into columns (schema.flatten_depth).
    #[arg(env = "DDB_LAKE_FLATTEN_DEPTH", long)]
    pub flatten_depth: Option<usize>,
    /// Times binary values are base64-decoded (input.binary_decode_depth).
    #[arg(env = "DDB_LAKE_BINARY_DECODE_DEPTH", long)]
    pub binary_decode_depth: Option<u8>,
    /// Only records of these DynamoDB tables go on to the lake; the others are counted as filtered (filter.tables).
    #[arg(env = "DDB_LAKE_FILTER_TABLE", long, value_name = "TABLE", num_args = 1.., value_delimiter = ',')]
    pub filter_table: Vec<String>,
    /// Only these operations (INSERT, MODIFY, REMOVE, SNAPSHOT) go on to the lake (filter.operations).
    #[arg(env = "DDB_LAKE_FILTER_OPERATION", long, value_name = "OP", num_args = 1.., value_delimiter = ',')]
    pub filter_operation: Vec<String>,
    /// Only records that match this Lambda filter pattern (JSON; several: any) go on to the lake (filter.patterns).
    #[arg(long, value_name = "JSON")]
    pub filter_pattern: Vec<String>,
}

/// Where and how the lake is written.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Where the lake goes: a folder, file:// or s3://bucket/prefix (output.url).
    #[arg(env = "DDB_LAKE_OUTPUT", long, short)]
    pub output: Option<String>,
    /// Partition layout (output.layout).
    #[arg(env = "DDB_LAKE_LAYOUT", long, value_parser = parse_layout)]
    pub layout: Option<Layout>,
    /// Partition template such as `{table}/state={ship_to_state}/{YYYY}/{MM}/{DD}/{HH}` (output.template).
    #[arg(env = "DDB_LAKE_TEMPLATE", long)]
    pub template: Option<String>,
    /// Partition by `event` or `processing` time (output.partition_time).
    #[arg(env = "DDB_LAKE_PARTITION_TIME", long, value_parser = parse_partition_time)]
    pub partition_time: Option<PartitionTime>,
    /// zstd, zstd(LEVEL), snappy, gzip, gzip(LEVEL) or none (parquet.compression).
    #[arg(env = "DDB_LAKE_COMPRESSION", long)]
    pub compression: Option<String>,
    /// Buffered size per partition before a file is written, e.g. 64MiB (buffer.max_bytes).
    #[arg(env = "DDB_LAKE_MAX_BUFFER_BYTES", long)]
    pub max_buffer_bytes: Option<String>,
    /// Rows per partition before a file is written (buffer.max_records).
    #[arg(env = "DDB_LAKE_MAX_RECORDS", long)]
    pub max_records: Option<u64>,
    /// Memory for all open partitions together, e.g. 64MiB (buffer.memory_budget).
    #[arg(env = "DDB_LAKE_MEMORY_BUDGET", long)]
    pub memory_budget: Option<String>,
    /// Data files written at once, at most (output.concurrent_writes).
    #[arg(env = "DDB_LAKE_CONCURRENT_WRITES", long)]
    pub concurrent_writes: Option<usize>,
    /// A file's rows as read (`none`), sorted by key (`key`), or by key where items repeat
    /// (`auto`) (parquet.sort_rows).
    #[arg(env = "DDB_LAKE_SORT_ROWS", long, value_parser = parse_sort_rows)]
    pub sort_rows: Option<SortRows>,
    /// Print the summary as JSON on stdout.
    #[arg(env = "DDB_LAKE_JSON", long)]
    pub json: bool,
    /// No progress bar, even on a terminal.
    #[arg(env = "DDB_LAKE_NO_PROGRESS", long)]
    pub no_progress: bool,
}

/// Reading a Kinesis data stream.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Checkpoint file or s3:// object (stream.checkpoint); default: {output}/_ddb_lake/checkpoints/{stream}.json.
    #[arg(env = "DDB_LAKE_CHECKPOINT", long)]
    pub checkpoint: Option<String>,
    /// Where shards without a checkpoint start: trim_horizon, latest or at_timestamp (stream.start).
    #[arg(env = "DDB_LAKE_START", long)]
    pub start: Option<String>,
    /// RFC 3339 time for --start at_timestamp (stream.start_timestamp).
    #[arg(env = "DDB_LAKE_START_TIMESTAMP", long)]
    pub start_timestamp: Option<String>,
    /// Acknowledge that a shard may have lost changes and go on: a checkpointed shard no longer listed (its retention passed before it was read to its end) is marked finished; a DynamoDB Streams shard whose start was trimmed is read from its oldest retained record (stream.accept_lost_shards).
    #[arg(long, value_name = "SHARD", num_args = 1.., value_delimiter = ',')]
    pub accept_lost_shard: Vec<String>,
}

/// Options of `export`: read files, or a stream up to now, into the lake.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("streams").args(["stream", "dynamodb_stream"])))]
pub struct ExportArgs {
    /// Input files, folders, globs or s3:// URLs (JSON lines, concatenated JSON, Lambda events; gzip or not).
    #[arg(env = "DDB_LAKE_INPUT", long, short, num_args = 1.., required_unless_present = "streams", conflicts_with = "streams")]
    pub input: Vec<String>,
    /// A Kinesis data stream (name or ARN) to read from its checkpoint up to now, instead of files.
    #[arg(env = "DDB_LAKE_STREAM", long)]
    pub stream: Option<String>,
    /// Tables' DynamoDB streams (a table's name, for its latest stream, or a stream's ARN; several, each to its own lake table) to read from their checkpoints up to now, instead of files.
    #[arg(env = "DDB_LAKE_DYNAMODB_STREAM", long, num_args = 1.., value_delimiter = ',')]
    pub dynamodb_stream: Vec<String>,
    /// With a stream: read records that arrived up to this RFC 3339 time (default: the start of the run).
    #[arg(env = "DDB_LAKE_UNTIL", long, requires = "streams")]
    pub until: Option<String>,
    /// Checkpoint and start position, with `--stream`.
    #[command(flatten)]
    pub stream_args: StreamArgs,
    /// The config file and the options for reading records and mapping them to columns.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where and how the lake is written.
    #[command(flatten)]
    pub out: OutputArgs,
    /// Read and encode everything, write nothing, and list what would be written (files only).
    #[arg(env = "DDB_LAKE_DRY_RUN", long, conflicts_with = "streams")]
    pub dry_run: bool,
}

/// Options of `consume`: read a stream into the lake continuously.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("streams").required(true).args(["stream", "dynamodb_stream"])))]
pub struct ConsumeArgs {
    /// The Kinesis data stream (name or ARN).
    #[arg(env = "DDB_LAKE_STREAM", long)]
    pub stream: Option<String>,
    /// Or tables' DynamoDB streams: a table's name (its latest stream) or a stream's ARN; several, each to its own lake table.
    #[arg(env = "DDB_LAKE_DYNAMODB_STREAM", long, num_args = 1.., value_delimiter = ',')]
    pub dynamodb_stream: Vec<String>,
    /// Checkpoint and start position.
    #[command(flatten)]
    pub stream_args: StreamArgs,
    /// The config file and the options for reading records and mapping them to columns.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where and how the lake is written.
    #[command(flatten)]
    pub out: OutputArgs,
    /// Write a partition at least this often, e.g. 300s (buffer.max_age).
    #[arg(env = "DDB_LAKE_MAX_AGE", long)]
    pub max_age: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9898.
    #[arg(env = "DDB_LAKE_METRICS", long)]
    pub metrics: Option<std::net::SocketAddr>,
}

/// Options of `bootstrap`: a table's full export into the lake, then the handover to its stream.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["table", "from_export"])))]
pub struct BootstrapArgs {
    /// The table: an export of it is started (point-in-time recovery must be on) and its latest DynamoDB stream is handed over to.
    #[arg(env = "DDB_LAKE_TABLE", long)]
    pub table: Option<String>,
    /// Or a full export you already have: its folder (s3://bucket/prefix/AWSDynamoDB/ID/ or a local copy) or its manifest-summary.json.
    #[arg(env = "DDB_LAKE_FROM_EXPORT", long)]
    pub from_export: Option<String>,
    /// The bucket the export is written to (default: the output's bucket, under {output}/_ddb_lake/exports/).
    #[arg(env = "DDB_LAKE_EXPORT_BUCKET", long)]
    pub export_bucket: Option<String>,
    /// The key prefix of the export in --export-bucket.
    #[arg(env = "DDB_LAKE_EXPORT_PREFIX", long, requires = "export_bucket")]
    pub export_prefix: Option<String>,
    /// Hand over to this Kinesis data stream (the table's Kinesis destination) instead of the table's DynamoDB stream.
    #[arg(env = "DDB_LAKE_STREAM", long, conflicts_with = "dynamodb_stream")]
    pub stream: Option<String>,
    /// Hand over to this DynamoDB stream (a table name or stream ARN; default: the table's latest stream).
    #[arg(env = "DDB_LAKE_DYNAMODB_STREAM", long)]
    pub dynamodb_stream: Option<String>,
    /// How long before the export time the stream is read from: at least how far the export may be from consistent (its changes around the export time may or may not be in it).
    #[arg(env = "DDB_LAKE_HANDOVER_MARGIN", long, default_value = "15m")]
    pub handover_margin: String,
    /// How often a running export is asked how it stands.
    #[arg(env = "DDB_LAKE_EXPORT_POLL", long, default_value = "20s")]
    pub export_poll: String,
    /// The stream's checkpoint (stream.checkpoint); default: {output}/_ddb_lake/checkpoints/{stream}.json, where `export`/`consume` look.
    #[arg(env = "DDB_LAKE_CHECKPOINT", long)]
    pub checkpoint: Option<String>,
    /// The config file and the options for reading records and mapping them to columns.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where and how the lake is written.
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Options of `status`: the stream, and where its checkpoint is.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("streams").required(true).args(["stream", "dynamodb_stream"])))]
pub struct StatusArgs {
    /// The Kinesis data stream (name or ARN).
    #[arg(env = "DDB_LAKE_STREAM", long)]
    pub stream: Option<String>,
    /// Or a table's DynamoDB stream: the table's name (its latest stream) or the stream's ARN.
    #[arg(env = "DDB_LAKE_DYNAMODB_STREAM", long)]
    pub dynamodb_stream: Option<String>,
    /// The lake the consumer writes (to find the default checkpoint).
    #[arg(env = "DDB_LAKE_OUTPUT", long, short)]
    pub output: Option<String>,
    /// Checkpoint file or s3:// object, when not the default next to the output.
    #[arg(env = "DDB_LAKE_CHECKPOINT", long)]
    pub checkpoint: Option<String>,
    /// Print JSON.
    #[arg(env = "DDB_LAKE_JSON", long)]
    pub json: bool,
}

/// Options of `schema infer`.
#[derive(Debug, Args)]
pub struct InferArgs {
    /// Input files, folders, globs or s3:// URLs.
    #[arg(env = "DDB_LAKE_INPUT", long, short, required = true, num_args = 1..)]
    pub input: Vec<String>,
    /// The config file and the options that shape the inferred columns (flatten depth,
    /// old images, binary decoding).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Folder to write the schema files into.
    #[arg(env = "DDB_LAKE_OUT_DIR", long, default_value = "schemas")]
    pub out_dir: PathBuf,
}

/// `generate` is a demo tool: its options are flags only (`--output` here is a file, not a lake,
/// so `DDB_LAKE_OUTPUT` must not reach it).
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of change records.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Random seed: the same seed gives the same records.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Record shape.
    #[arg(long, value_enum, default_value_t = Shape::Kinesis)]
    pub shape: Shape,
    /// DynamoDB table name in the records.
    #[arg(long, default_value = "Orders")]
    pub table: String,
    /// First event time (RFC 3339).
    #[arg(long, default_value = "2026-11-01T08:00:00Z")]
    pub start: String,
    /// Hours the events spread over.
    #[arg(long, default_value_t = 6)]
    pub hours: u32,
    /// Output file (stdout when absent); gzip-compressed when it ends in .gz.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// An hour given as `YYYY-MM-DD`, `YYYY-MM-DDTHH` or an RFC 3339 time (UTC), in hours since the
/// epoch.
pub fn parse_hour(s: &str) -> Result<i64, ConfigError> {
    let t = s.trim();
    let parsed = chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.to_utc())
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(&format!("{t}:00:00"), "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|d| d.and_utc())
        })
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        });
    match parsed {
        Some(d) => Ok(d.timestamp().div_euclid(3600)),
        None => Err(ConfigError::Invalid {
            field: "projection_start",
            problem: format!("`{s}` is not a time such as 2019-06-01 or 2019-06-01T08"),
        }),
    }
}

fn parse_layout(s: &str) -> Result<Layout, String> {
    match s {
        "hourly" => Ok(Layout::Hourly),
        "hive" => Ok(Layout::Hive),
        "hive_dt" | "hive-dt" => Ok(Layout::HiveDt),
        _ => Err("expected hourly, hive or hive_dt".into()),
    }
}

fn parse_sort_rows(s: &str) -> Result<SortRows, String> {
    match s {
        "none" => Ok(SortRows::None),
        "key" => Ok(SortRows::Key),
        "auto" => Ok(SortRows::Auto),
        _ => Err("expected none, key or auto".into()),
    }
}

fn parse_partition_time(s: &str) -> Result<PartitionTime, String> {
    match s {
        "event" => Ok(PartitionTime::Event),
        "processing" => Ok(PartitionTime::Processing),
        _ => Err("expected event or processing".into()),
    }
}

impl CommonArgs {
    /// Loads the config file (or defaults) and applies these flags over it.
    pub fn config(&self) -> Result<ConfigFile, ConfigError> {
        let mut c = match &self.config {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        if let Some(d) = &self.schemas {
            c.schema.dir = Some(d.clone());
        }
        if let Some(t) = &self.default_table {
            c.input.default_table = Some(t.clone());
        }
        if !self.key.is_empty() {
            c.input.key = self.key.clone();
        }
        if self.keep_old_image {
            c.schema.keep_old_image = true;
        }
        if let Some(d) = self.flatten_depth {
            c.schema.flatten_depth = d;
        }
        if let Some(d) = self.binary_decode_depth {
            c.input.binary_decode_depth = d;
        }
        c.filter.tables.extend(self.filter_table.iter().cloned());
        c.filter
            .operations
            .extend(self.filter_operation.iter().cloned());
        c.filter
            .patterns
            .extend(self.filter_pattern.iter().cloned());
        Ok(c)
    }
}

/// `--output`, `--layout` and `--template` over the config file (a layout replaces its template).
fn set_location(
    c: &mut ConfigFile,
    output: &Option<String>,
    layout: Option<Layout>,
    template: &Option<String>,
) {
    if let Some(o) = output {
        c.output.url = Some(o.clone());
    }
    if let Some(l) = layout {
        c.output.layout = l;
        c.output.template = None;
    }
    if let Some(t) = template {
        c.output.template = Some(t.clone());
    }
}

impl OutputArgs {
    fn apply(&self, c: &mut ConfigFile) {
        set_location(c, &self.output, self.layout, &self.template);
        if let Some(p) = self.partition_time {
            c.output.partition_time = p;
        }
        if let Some(v) = &self.compression {
            c.parquet.compression = v.clone();
        }
        if let Some(v) = &self.max_buffer_bytes {
            c.buffer.max_bytes = v.clone();
        }
        if let Some(v) = self.max_records {
            c.buffer.max_records = v;
        }
        if let Some(v) = &self.memory_budget {
            c.buffer.memory_budget = v.clone();
        }
        if let Some(v) = self.concurrent_writes {
            c.output.concurrent_writes = v;
        }
        if let Some(v) = self.sort_rows {
            c.parquet.sort_rows = v;
        }
    }
}

impl StreamArgs {
    fn apply(&self, c: &mut ConfigFile) {
        if let Some(v) = &self.checkpoint {
            c.stream.checkpoint = Some(v.clone());
        }
        if let Some(v) = &self.start {
            c.stream.start = v.clone();
        }
        if let Some(v) = &self.start_timestamp {
            c.stream.start_timestamp = Some(v.clone());
        }
        c.stream
            .accept_lost_shards
            .extend(self.accept_lost_shard.iter().cloned());
    }
}

/// The stream a run reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamSource {
    /// A Kinesis data stream, by name or ARN.
    Kinesis(String),
    /// Tables' DynamoDB streams, each a table's name or a stream's ARN; one or more.
    DynamoDb(Vec<String>),
}

/// The source of `--stream` or `--dynamodb-stream` (clap lets at most one of them through).
fn stream_source(kinesis: &Option<String>, dynamodb: &[String]) -> Option<StreamSource> {
    match (kinesis, dynamodb) {
        (Some(k), _) => Some(StreamSource::Kinesis(k.clone())),
        (None, []) => None,
        (None, d) => Some(StreamSource::DynamoDb(d.to_vec())),
    }
}

impl ExportArgs {
    /// The stream to read, when not files.
    pub fn stream_source(&self) -> Option<StreamSource> {
        stream_source(&self.stream, &self.dynamodb_stream)
    }

    /// The config file with these flags applied over it, validated.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut c = self.common.config()?;
        self.out.apply(&mut c);
        self.stream_args.apply(&mut c);
        c.validate()
    }
}

impl BootstrapArgs {
    /// The config file with these flags applied over it, validated.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut c = self.common.config()?;
        self.out.apply(&mut c);
        if let Some(v) = &self.checkpoint {
            c.stream.checkpoint = Some(v.clone());
        }
        c.validate()
    }
}

impl ConsumeArgs {
    /// The stream to read (clap requires one).
    pub fn stream_source(&self) -> Option<StreamSource> {
        stream_source(&self.stream, &self.dynamodb_stream)
    }

    /// The config file with these flags applied over it, validated; continuous mode, so
    /// partitions also flush by age (`buffer.max_age`).
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut c = self.common.config()?;
        self.out.apply(&mut c);
        self.stream_args.apply(&mut c);
        if let Some(v) = &self.max_age {
            c.buffer.max_age = v.clone();
        }
        let mut s = c.validate()?;
        s.flush.max_age_ms = Some(s.max_age.as_millis() as u64);
        Ok(s)
    }
}

impl StatusArgs {
    /// The stream to report on (clap requires one).
    pub fn stream_source(&self) -> Option<StreamSource> {
        stream_source(&self.stream, self.dynamodb_stream.as_slice())
    }
}

impl InferArgs {
    /// The config file with these flags applied over it, validated, with an empty output:
    /// inference writes no lake.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut c = self.common.config()?;
        // Inference writes no lake: an empty output means "none".
        c.output.url = Some(String::new());
        c.validate()
    }
}
