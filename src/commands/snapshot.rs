//! `snapshot`: each table as it is at the end of an hour, made current atomically.

use std::process::ExitCode;

use ddb_lake::cli::{parse_hour, SnapshotArgs};
use ddb_lake::config::{parse_duration, ConfigError};
use ddb_lake::pipeline;
use ddb_lake::snapshot::{self, SnapshotOptions};

use super::need_aws;

pub(super) fn snapshot(
    rt: &tokio::runtime::Runtime,
    args: SnapshotArgs,
) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    rt.block_on(need_aws(&[&settings.output], false))?;
    let as_of = args
        .as_of
        .as_deref()
        .map(|h| {
            parse_hour(h).map_err(|_| ConfigError::Invalid {
                field: "--as-of",
                problem: format!("`{h}` is not an hour such as 2026-11-01T10 (UTC)"),
            })
        })
        .transpose()?;
    let margin = parse_duration("--handover-margin", &args.handover_margin)?;
    let opts = SnapshotOptions {
        table: args.table.clone(),
        as_of,
        key: settings.key.clone(),
        margin_us: margin.as_micros() as i64,
        memory_budget: settings.flush.memory_budget,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        now_hour: chrono::Utc::now().timestamp().div_euclid(3600),
    };
    let tables = rt.block_on(pipeline::table_schemas(&settings))?;
    let done = rt.block_on(snapshot::run(&settings, tables, &opts))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        for t in &done {
            let what = if t.written {
                format!(
                    "{} new change-log file(s), {} rows read",
                    t.new_files, t.rows_read
                )
            } else {
                "nothing new".to_string()
            };
            println!(
                "{}: snapshot {} as of {}: {} items, {} deleted; {what}\n  data: {}\n  COPY manifest: {}",
                t.table, t.snapshot, t.as_of, t.rows, t.deleted, t.location, t.copy_manifest
            );
            if t.keyless > 0 {
                println!(
                    "  {} change-log rows have no key value and name no item (they are in the change log only)",
                    t.keyless
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
