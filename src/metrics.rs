//! The metrics facade: every metric ddb-lake emits, with low-cardinality labels, updated per
//! batch or per flush (never per record on the hot path). `--metrics ADDR` serves them in the
//! Prometheus text format at `http://ADDR/metrics`.

use std::net::SocketAddr;

use metrics::{counter, gauge};

/// Starts the Prometheus endpoint. Call from within the async runtime.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("serving metrics on {addr}: {e}"))
}

/// Records and bytes read (per batch of records).
pub fn records_in(records: u64, bytes: u64) {
    counter!("ddb_lake_records_in_total").increment(records);
    counter!("ddb_lake_bytes_in_total").increment(bytes);
}

/// One written data file.
pub fn file_written(table: &str, rows: u64, bytes: u64, reason: &'static str) {
    counter!("ddb_lake_rows_out_total", "table" => table.to_string()).increment(rows);
    counter!("ddb_lake_bytes_out_total").increment(bytes);
    counter!("ddb_lake_files_written_total").increment(1);
    counter!("ddb_lake_flushes_total", "reason" => reason).increment(1);
}

/// One record sent to the error output.
/// Records sent to the error output, per reason (per batch).
pub fn errors(reason: &'static str, n: u64) {
    counter!("ddb_lake_errors_total", "reason" => reason).increment(n);
}

/// Records of `table` the filter kept out (per batch).
pub fn filtered(table: &str, n: u64) {
    counter!("ddb_lake_filtered_records_total", "table" => table.to_string()).increment(n);
}

/// Bytes buffered across all open partitions.
pub fn buffered(bytes: usize) {
    gauge!("ddb_lake_buffered_bytes").set(bytes as f64);
}

/// How far a shard's reader is behind the tip (GetRecords' MillisBehindLatest).
pub fn shard_lag(shard: &str, millis: i64) {
    gauge!("ddb_lake_shard_lag_milliseconds", "shard" => shard.to_string()).set(millis as f64);
}

/// Age of a shard's oldest record not read yet (DynamoDB Streams: 0 at the tip), against its
/// 24-hour retention.
pub fn oldest_unread_age(shard: &str, millis: i64) {
    gauge!("ddb_lake_oldest_unread_age_seconds", "shard" => shard.to_string())
        .set(millis as f64 / 1000.0);
}

/// A checkpoint was saved now (its age is `time() - ddb_lake_checkpoint_saved_timestamp_seconds`).
pub fn checkpoint_saved() {
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    gauge!("ddb_lake_checkpoint_saved_timestamp_seconds").set(now);
    counter!("ddb_lake_checkpoints_total").increment(1);
}

/// A row of an hour already marked complete.
/// Rows of `table` that came after their hour was marked complete (per batch).
pub fn late_rows(table: &str, n: u64) {
    counter!("ddb_lake_late_rows_total", "table" => table.to_string()).increment(n);
}

/// An hour of a table was marked complete.
pub fn hour_completed(table: &str) {
    counter!("ddb_lake_hours_completed_total", "table" => table.to_string()).increment(1);
}
