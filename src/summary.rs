//! What a run did: the live counters behind the progress display and the summary every run
//! returns (printed by `report`, or as JSON). A leaf module, shared by the pipeline and the
//! report.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

/// Live counters for progress display.
#[derive(Debug, Default)]
pub struct Counters {
    /// Change records read so far, rejected ones included.
    pub records: AtomicU64,
    /// Bytes of those records' raw text (after decompression), so far.
    pub bytes_read: AtomicU64,
    /// Parquet data files written so far (in a dry run: encoded).
    pub files_written: AtomicU64,
    /// Encoded bytes of those data files, so far.
    pub bytes_written: AtomicU64,
}

/// What a run did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    /// Input files the inputs expanded into (batch exports; 0 for stream runs).
    pub input_files: usize,
    /// Change records read, rejected ones included.
    pub records_in: u64,
    /// Bytes of the records' raw text (after decompression).
    pub bytes_in: u64,
    /// Rows written per lake table.
    pub rows_out: BTreeMap<String, u64>,
    /// Records the filter kept out (`[filter]`), per DynamoDB table: records in = rows out +
    /// error entries + filtered.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub filtered: BTreeMap<String, u64>,
    /// Error entries per reason.
    pub errors: BTreeMap<String, u64>,
    /// Values kept in companion columns, per `table.column`.
    pub type_mismatches: BTreeMap<String, u64>,
    /// Values cut at the string limit, per `table.column`.
    pub truncated_values: BTreeMap<String, u64>,
    /// Rows with values in `cdc_unmapped`, per table.
    pub unmapped_rows: BTreeMap<String, u64>,
    /// Parquet data files written (in a dry run: that would be); error files and manifests are
    /// not counted.
    pub files_written: u64,
    /// Total size of those data files, in bytes.
    pub bytes_written: u64,
    /// Data files per flush reason (`size`, `age`, `end_of_input`...).
    pub flushes: BTreeMap<String, u64>,
    /// Objects written (or, in a dry run, that would be): relative name, rows, bytes.
    pub objects: Vec<ObjectInfo>,
    /// The most bytes held in the row buffers at once (between two rows).
    pub peak_buffered_bytes: u64,
    /// Bytes of buffered rows moved to local disk because the open partitions outgrew the
    /// memory budget (read back when their partitions were written).
    pub spilled_bytes: u64,
    /// Peak resident memory of the process (Linux), when known.
    pub peak_rss_bytes: Option<u64>,
    /// Wall time of the run, in milliseconds.
    pub elapsed_ms: u64,
    /// Nothing was written: files were encoded only, to report what would be written.
    pub dry_run: bool,
    /// The last checkpoint saved (stream runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::checkpoint::Checkpoint>,
    /// The last checkpoint saved of each stream, when one run read several at once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<crate::checkpoint::Checkpoint>,
    /// Hour markers written (`table YYYY-MM-DDTHH`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hours_completed: Vec<String>,
    /// Rows of hours already marked complete, per table (in `-late-` files).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub late_rows: BTreeMap<String, u64>,
    /// DynamoDB table exports read (`export --input` of an export's folder).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<crate::source::export::ExportSummary>,
}

/// One data file a run wrote (or, in a dry run, would have written).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ObjectInfo {
    /// Object name relative to the output.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file, in bytes (encoded, or as found when it was written before a restart).
    pub bytes: u64,
}

impl Summary {
    /// Rows written over all lake tables.
    pub fn rows_total(&self) -> u64 {
        self.rows_out.values().sum()
    }
    /// Error entries over all reasons.
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds a run that went on at the same time as this one (another stream of the same
    /// command): counts and sizes summed (peak buffers too: each run has its own), maps merged,
    /// objects and markers appended, the longer time and the larger process peak, its checkpoint
    /// kept in `checkpoints`.
    pub fn merge(&mut self, other: Summary) {
        fn add(to: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
            for (k, v) in from {
                *to.entry(k).or_default() += v;
            }
        }
        self.input_files += other.input_files;
        self.records_in += other.records_in;
        self.bytes_in += other.bytes_in;
        add(&mut self.rows_out, other.rows_out);
        add(&mut self.errors, other.errors);
        add(&mut self.filtered, other.filtered);
        add(&mut self.type_mismatches, other.type_mismatches);
        add(&mut self.truncated_values, other.truncated_values);
        add(&mut self.unmapped_rows, other.unmapped_rows);
        add(&mut self.flushes, other.flushes);
        add(&mut self.late_rows, other.late_rows);
        self.files_written += other.files_written;
        self.bytes_written += other.bytes_written;
        self.objects.extend(other.objects);
        self.peak_buffered_bytes += other.peak_buffered_bytes;
        self.spilled_bytes += other.spilled_bytes;
        self.peak_rss_bytes = self.peak_rss_bytes.max(other.peak_rss_bytes);
        self.elapsed_ms = self.elapsed_ms.max(other.elapsed_ms);
        self.dry_run |= other.dry_run;
        self.checkpoints.extend(other.checkpoint);
        self.checkpoints.extend(other.checkpoints);
        self.hours_completed.extend(other.hours_completed);
        self.exports.extend(other.exports);
    }
}

/// The peak resident memory of this process (Linux), for the summary.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
