//! `schema infer`: a dry run that writes each table's schema file.

use std::process::ExitCode;
use std::sync::Arc;

use ddb_lake::cli::InferArgs;
use ddb_lake::pipeline::{self, RunOptions, SystemClock};
use ddb_lake::summary::Counters;

use super::need_aws;

pub(super) fn infer(rt: &tokio::runtime::Runtime, args: InferArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let urls: Vec<&str> = args.input.iter().map(String::as_str).collect();
    rt.block_on(need_aws(&urls, false))?;
    let summary = rt.block_on(pipeline::export(
        &settings,
        &args.input,
        &RunOptions {
            dry_run: true,
            schemas_out: Some(args.out_dir.clone()),
        },
        Arc::new(SystemClock::default()),
        Arc::new(Counters::default()),
    ))?;
    for t in summary.rows_out.keys() {
        println!("{}", args.out_dir.join(format!("{t}.toml")).display());
    }
    Ok(ExitCode::SUCCESS)
}
