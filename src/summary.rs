//! What a run did: the live counters behind the progress display and the summary every run
//! returns (printed by `report`, or as JSON). A leaf module, shared by the pipeline and the
//! report.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

/// Live counters for progress display.
#[derive(Debug, Default)]
pub struct Counters {
    pub records: AtomicU64,
    pub bytes_read: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub input_files: usize,
    pub records_in: u64,
    pub bytes_in: u64,
    /// Rows written per lake table.
    pub rows_out: BTreeMap<String, u64>,
    /// Error entries per reason.
    pub errors: BTreeMap<String, u64>,
    /// Values kept in companion columns, per `table.column`.
    pub type_mismatches: BTreeMap<String, u64>,
    /// Values cut at the string limit, per `table.column`.
    pub truncated_values: BTreeMap<String, u64>,
    /// Rows with values in `cdc_unmapped`, per table.
    pub unmapped_rows: BTreeMap<String, u64>,
    pub files_written: u64,
    pub bytes_written: u64,
    pub flushes: BTreeMap<String, u64>,
    /// Objects written (or, in a dry run, that would be): relative name, rows, bytes.
    pub objects: Vec<ObjectInfo>,
    pub peak_buffered_bytes: u64,
    /// Peak resident memory of the process (Linux), when known.
    pub peak_rss_bytes: Option<u64>,
    pub elapsed_ms: u64,
    pub dry_run: bool,
    /// The last checkpoint saved (stream runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::checkpoint::Checkpoint>,
    /// Hour markers written (`table YYYY-MM-DDTHH`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hours_completed: Vec<String>,
    /// Rows of hours already marked complete, per table (in `-late-` files).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub late_rows: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectInfo {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

impl Summary {
    pub fn rows_total(&self) -> u64 {
        self.rows_out.values().sum()
    }
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The peak resident memory of this process (Linux), for the summary.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
