//! Wires the stages: a batch export of files (`export`) and stream runs (`stream`) share the
//! intake (one record in: decode, flatten, route, buffer; named flushes out) and the ordered
//! writer (encode, store, manifests, markers, checkpoints).
//!
//! ```text
//! source ─► decode_ahead ─► intake: flatten ─► partition ─► buffer ═╗ (one blocking thread: CPU)
//!                              └─► reject (error output)           ║ bounded channel
//!                                          writer: encode ─► store ◄╝ (async; encoding off the executor)
//! ```
//!
//! - `intake`: the record processing path, with the stream-only state (held flush group, replay
//!   of a previous run's pending batches, hour markers) as its optional part.
//! - `writer`: the messages to the writer and the one task that carries them out in order.
//! - `lake`: what a run loads from the lake (schemas) and lists of it (manifests, data files).
//! - `decode_ahead`: framing and parsing a file on its own thread.
//! - `markers`: hour-marker bookkeeping.
//! - `commit`: the exactly-once protocol's pure part (intent, replay, commit).
//! - `export`, `stream`: the two kinds of run.
//!
//! The reading thread owns the schemas and the buffers; the writer owns the output. A table's
//! remembered schema (`{state_prefix}/schemas/{table}.toml` next to the output) is written before
//! any file that uses its new columns, so every file's columns are a prefix of the remembered list.

use std::time::Instant;

use crate::schema::SchemaError;
use crate::source::SourceError;
use crate::store::StoreError;

/// Flushes in flight between the reading thread and the writer.
const CHANNEL_DEPTH: usize = 1;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The inputs could not be expanded into files, or an input file could not be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The output could not be opened, listed, read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A schema file's column is invalid, or a declared column's type differs from the
    /// remembered one.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A schema file or folder could not be read, parsed or written.
    #[error("schema file {path}: {problem}")]
    SchemaFile {
        /// The file or folder: a local path, or the URL of a remembered schema in the output.
        path: String,
        /// The I/O or TOML error, as text.
        problem: String,
    },
    /// Parquet encoding of a data file failed.
    #[error("encoding {path}: {source}")]
    Encode {
        /// The data file's object name relative to the output.
        path: String,
        /// The Parquet writer's error.
        source: parquet::errors::ParquetError,
    },
    /// An input file could not be read or decompressed part way through.
    #[error("reading {file}: {source}")]
    Read {
        /// The input file's name (its local path or object URL).
        file: String,
        /// The I/O error (a gzip error included).
        source: std::io::Error,
    },
    /// The checkpoint could not be loaded or saved, or another process took it over.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A Kinesis Data Streams call failed in a way retrying cannot fix (a missing stream or
    /// shard, denied access, a bad request).
    #[error("stream {stream}: {source}")]
    Stream {
        /// The stream's name or ARN, as given.
        stream: String,
        /// The failed call's error.
        source: crate::kinesis::ApiError,
    },
    /// A checkpointed shard is no longer listed, though it was not read to its end: changes after
    /// its checkpoint, if there were any, were trimmed before they were read.
    #[error("{0}")]
    LostShards(String),
    /// A bootstrap cannot hand over from the export to the stream without a gap or a conflict:
    /// the text says why and what to do.
    #[error("handover: {0}")]
    Handover(String),
    /// The filter changed while batches named under the previous one wait to be re-created.
    #[error("{0}")]
    FilterChanged(String),
    /// A broken invariant of the exactly-once protocol (a bug): the run stops before writing.
    #[error("internal error, stopping before anything more is written: {0}")]
    Invariant(String),
    /// A continuous run's final flush outlasted `shutdown_timeout`.
    #[error("the final flush did not finish within the shutdown timeout ({0:?}); the checkpoint was not advanced past unwritten records")]
    ShutdownTimeout(std::time::Duration),
    /// Buffered rows could not be moved to or read back from local disk (`TMPDIR`).
    #[error("spilling buffered rows to local disk: {0}")]
    Spill(std::io::Error),
    /// Compaction is off, but hours staged by a run with compaction wait to be compacted.
    #[error("{0}")]
    CompactionOff(String),
    /// An hour's staged files could not be read or merged into compacted files.
    #[error("compacting {folder}: {problem}")]
    Compaction {
        /// The hour's folder (or the staged file).
        folder: String,
        /// What failed.
        problem: String,
    },
    /// A thread or task ended abnormally (a panic), or a stage stopped while another still sent
    /// to it; the text says which.
    #[error("internal: {0}")]
    Internal(String),
}

impl PipelineError {
    /// A problem of the configuration (a setting, a URL, a schema file: exit code 3), not of the
    /// data or the services.
    pub fn is_configuration(&self) -> bool {
        match self {
            PipelineError::Source(e) => e.is_configuration(),
            PipelineError::Store(e) => e.is_configuration(),
            PipelineError::Checkpoint(e) => e.is_configuration(),
            PipelineError::Schema(_)
            | PipelineError::SchemaFile { .. }
            | PipelineError::Handover(_)
            | PipelineError::CompactionOff(_)
            | PipelineError::FilterChanged(_) => true,
            PipelineError::Encode { .. }
            | PipelineError::Read { .. }
            | PipelineError::Stream { .. }
            | PipelineError::LostShards(_)
            | PipelineError::Invariant(_)
            | PipelineError::ShutdownTimeout(_)
            | PipelineError::Compaction { .. }
            | PipelineError::Spill(_)
            | PipelineError::Internal(_) => false,
        }
    }
}

mod commit;
mod compaction;
mod decode_ahead;
mod export;
pub mod handover;
mod intake;
mod lake;
mod markers;
#[cfg(test)]
mod sim;
pub mod stream;
mod writer;
#[cfg(test)]
mod writer_tests;

pub use export::{export, RunOptions};
pub use lake::{data_files, manifests, table_schemas};

/// Wall and monotonic time, injected so tests control it.
pub trait Clock: Send + Sync {
    /// Milliseconds on a monotonic clock (flush ages).
    fn now_ms(&self) -> u64;
    /// Microseconds since the Unix epoch (processing-time partitions, error hours).
    fn now_utc_us(&self) -> i64;
}

/// The real clock.
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    fn now_utc_us(&self) -> i64 {
        chrono::Utc::now().timestamp_micros()
    }
}
