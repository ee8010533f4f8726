//! Integration tests: the `ddb-lake` binary on real files and against a local S3 server, with
//! output read back by independent Parquet readers (pyarrow, DuckDB).
//!
//! Run them with `scripts/test.sh`, which installs and starts what they need and sets
//! `DDB_LAKE_TEST_PYTHON` (a Python with pyarrow, duckdb and boto3) and `AWS_ENDPOINT_URL_S3`.
//! Without them (a plain `cargo test`) the tests that need them are skipped, and say so
//! (`helpers::skip_without_servers`); `scripts/test.sh` sets `DDB_LAKE_REQUIRE_SERVERS=1`, which
//! makes a skip a failure.

mod bad_input;
mod cli;
mod compaction;
mod crash;
mod crash_streams;
mod ddl;
mod dynamodb;
mod dynamodb_retention;
mod export;
mod faults;
mod filters;
mod handover;
mod helpers;
mod kinesis;
mod layout;
mod s3;
mod schema;
mod snapshot;
mod table_export;
