//! The binary's subcommands, one function each, and what they share: the exit codes, the
//! AWS credentials check, the summary printout. Part of the binary, not the library: this is
//! the only place (with `main.rs`) that uses `anyhow`.

use std::process::ExitCode;

use anyhow::Context;
use ddb_lake::cli::{Cli, Command, SchemaCommand};
use ddb_lake::pipeline;
use ddb_lake::report;
use ddb_lake::summary::Summary;

mod bootstrap;
mod ddl;
mod generate;
mod run;
mod schema;
mod snapshot;
mod status;

/// The run failed: I/O, a service, a write that failed after retries.
const EXIT_FAILED: u8 = 1;
/// Everything was written, but some records went to the error output.
const EXIT_ERRORS_WRITTEN: u8 = 2;
/// The configuration is wrong: a setting, a URL, a schema file, missing AWS credentials.
const EXIT_CONFIG: u8 = 3;
/// The command line is wrong (unknown flag, missing argument): sysexits' EX_USAGE, so that no
/// scheduler mistakes a mistyped command for a partial success.
pub const EXIT_USAGE: u8 = 64;

/// Runs one subcommand on a new async runtime.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Export(args) => run::export(&rt, args),
        Command::Consume(args) => run::consume(&rt, args),
        Command::Bootstrap(args) => bootstrap::bootstrap(&rt, args),
        Command::Status(args) => status::status(&rt, args),
        Command::Ddl(cmd) => ddl::ddl(&rt, cmd),
        Command::Snapshot(args) => snapshot::snapshot(&rt, args),
        Command::Schema(SchemaCommand::Infer(args)) => schema::infer(&rt, args),
        Command::Generate(args) => generate::generate(args),
    }
}

/// The exit code of a failed run: configuration errors apart from the rest.
pub fn failure_code(e: &anyhow::Error) -> u8 {
    use ddb_lake::aws::CredentialsError;
    use ddb_lake::config::ConfigError;
    let config = e.chain().any(|c| {
        c.is::<ConfigError>()
            || c.downcast_ref::<CredentialsError>()
                .is_some_and(CredentialsError::is_configuration)
            || c.downcast_ref::<pipeline::PipelineError>()
                .is_some_and(pipeline::PipelineError::is_configuration)
            || c.downcast_ref::<ddb_lake::source::SourceError>()
                .is_some_and(ddb_lake::source::SourceError::is_configuration)
            || c.downcast_ref::<ddb_lake::store::StoreError>()
                .is_some_and(ddb_lake::store::StoreError::is_configuration)
            || c.downcast_ref::<ddb_lake::checkpoint::CheckpointError>()
                .is_some_and(ddb_lake::checkpoint::CheckpointError::is_configuration)
            || c.downcast_ref::<ddb_lake::snapshot::SnapshotError>()
                .is_some_and(ddb_lake::snapshot::SnapshotError::is_configuration)
    });
    if config {
        EXIT_CONFIG
    } else {
        EXIT_FAILED
    }
}

/// Stops with a clear message when AWS is needed and no credentials are found.
async fn need_aws(urls: &[&str], always: bool) -> anyhow::Result<()> {
    if always || urls.iter().any(|u| u.starts_with("s3://")) {
        ddb_lake::aws::require_credentials().await?;
    }
    Ok(())
}

/// The default checkpoint: next to the output, outside every table folder.
fn default_checkpoint(output: &str, state_prefix: &str, stream: &str) -> String {
    format!(
        "{}/{state_prefix}/checkpoints/{stream}.json",
        output.trim_end_matches('/')
    )
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        print!("{}", report::render(summary));
    }
    Ok(())
}

fn exit_code(summary: &Summary) -> ExitCode {
    if summary.errors_total() > 0 {
        ExitCode::from(EXIT_ERRORS_WRITTEN)
    } else {
        ExitCode::SUCCESS
    }
}

/// An RFC 3339 time given for `field`, in milliseconds since the epoch.
fn parse_time(field: &'static str, t: &str) -> anyhow::Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(t)
        .map_err(|e| ddb_lake::config::ConfigError::Invalid {
            field,
            problem: format!("`{t}` is not an RFC 3339 time: {e}"),
        })?
        .timestamp_millis())
}
