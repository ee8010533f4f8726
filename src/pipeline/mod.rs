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

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("schema file {path}: {problem}")]
    SchemaFile { path: String, problem: String },
    #[error("encoding {path}: {source}")]
    Encode {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("reading {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error("stream {stream}: {source}")]
    Stream {
        stream: String,
        source: crate::kinesis::ApiError,
    },
    /// A broken invariant of the exactly-once protocol (a bug): the run stops before writing.
    #[error("internal error, stopping before anything more is written: {0}")]
    Invariant(String),
    /// A continuous run's final flush outlasted `shutdown_timeout`.
    #[error("the final flush did not finish within the shutdown timeout ({0:?}); the checkpoint was not advanced past unwritten records")]
    ShutdownTimeout(std::time::Duration),
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
            PipelineError::Schema(_) | PipelineError::SchemaFile { .. } => true,
            PipelineError::Encode { .. }
            | PipelineError::Read { .. }
            | PipelineError::Stream { .. }
            | PipelineError::Invariant(_)
            | PipelineError::ShutdownTimeout(_)
            | PipelineError::Internal(_) => false,
        }
    }
}

mod commit;
mod decode_ahead;
mod export;
mod intake;
mod lake;
mod markers;
#[cfg(test)]
mod sim;
pub mod stream;
mod writer;

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
