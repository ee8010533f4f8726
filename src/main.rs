//! The `ddb-lake` binary: parses arguments, runs a command, maps the outcome to an exit code
//! (README, "Exit codes": 0 success, 1 failure, 2 finished but some records went to the error
//! output, 3 configuration error, 64 usage error).

use std::process::ExitCode;

use clap::Parser;
use ddb_lake::cli::Cli;

mod commands;

/// mimalloc (its v2, transparent huge pages off) instead of glibc's malloc: half the user CPU of
/// a run writing 40,000 small files (parquet's per-file writer setup is mostly allocations), a
/// little less on one large partition, at a peak RSS within about 30 MiB of glibc's; its v3
/// with huge pages on (the crate's default) took the 1M-record run to 340-370 MiB against
/// 204-218 (docs/BENCHMARKS.md, "Many partitions").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    limit_malloc_arenas();
    reset_purged_pages();
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

/// mimalloc returns memory it no longer uses to the kernel after 10 ms (a purge). By default a
/// purge decommits the pages (`MADV_DONTNEED`), and the next use faults them in again, zeroed:
/// 0.7 s of system time on the 1M side-by-side input. Resetting them instead (`MADV_FREE`: the
/// kernel takes them back only when it needs memory) took 4.6 -> 4.2 s there and 25.9 -> 20.6 s
/// on 5M records, at 28-30 MiB more peak RSS (docs/BENCHMARKS.md, "Many partitions").
fn reset_purged_pages() {
    /// `mi_option_purge_decommits` in mimalloc v2's `mi_option_t` (its `mimalloc.h`, as vendored
    /// by libmimalloc-sys 0.1.49, pinned in Cargo.toml); the crate names no constant for it.
    const MI_OPTION_PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;
    // SAFETY: sets an allocator option; called first in main, before any other thread starts.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DECOMMITS, 0) };
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
