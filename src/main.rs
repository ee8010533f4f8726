//! The `ddb-lake` binary: parses arguments, runs a command, maps the outcome to an exit code
//! (README, "Exit codes": 0 success, 1 failure, 2 finished but some records went to the error
//! output, 3 configuration error, 64 usage error).

use std::process::ExitCode;

use clap::Parser;
use ddb_lake::cli::Cli;

mod commands;

/// mimalloc (its v2, transparent huge pages off) instead of glibc's malloc: half the user CPU of
/// a run writing 40,000 small files (parquet's per-file writer setup is mostly allocations), a
/// little less on one large partition, at about the same peak RSS; with huge pages on (the
/// crate's default) the RSS of the 1M-record run was 340-370 MiB against 204-218
/// (docs/BENCHMARKS.md, "Many partitions").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(commands::EXIT_USAGE),
            };
        }
    };
    // The AWS SDK's own chatter (a credentials chain trying its providers, retries) only when
    // asked for by name.
    let directives = if cli.log.contains("aws_") {
        cli.log.clone()
    } else {
        format!("{},aws_config=error,aws_smithy_runtime=error", cli.log)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ddb_lake::errors::chain(e.as_ref()));
            ExitCode::from(commands::failure_code(&e))
        }
    }
}

/// What still allocates through glibc's malloc (the C libraries: zstd's contexts) keeps to two
/// arenas: glibc gives every thread that allocates its own (up to 8 per core), and memory freed
/// in one is not reused by another (docs/BENCHMARKS.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it is called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
