//! The `ddb-lake` binary: parses arguments, runs a command, maps the outcome to an exit code
//! (README, "Exit codes": 0 success, 1 failure, 2 finished but some records went to the error
//! output, 3 configuration error, 64 usage error).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ddb_lake::cli::{Cli, Command, DdlCommand, SchemaCommand};
use ddb_lake::generate::{generate, GenerateOptions};
use std::time::Duration;

use ddb_lake::checkpoint::CheckpointStore;
use ddb_lake::config::Settings;
use ddb_lake::kinesis::AwsStream;
use ddb_lake::pipeline::stream::{self, Mode, StreamOptions};
use ddb_lake::pipeline::{self, RunOptions, SystemClock};
use ddb_lake::report;
use ddb_lake::summary::{Counters, Summary};

/// The run failed: I/O, a service, a write that failed after retries.
const EXIT_FAILED: u8 = 1;
/// Everything was written, but some records went to the error output.
const EXIT_ERRORS_WRITTEN: u8 = 2;
/// The configuration is wrong: a setting, a URL, a schema file, missing AWS credentials.
const EXIT_CONFIG: u8 = 3;
/// The command line is wrong (unknown flag, missing argument): sysexits' EX_USAGE, so that no
/// scheduler mistakes a mistyped command for a partial success.
const EXIT_USAGE: u8 = 64;

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
                _ => ExitCode::from(EXIT_USAGE),
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
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", ddb_lake::errors::chain(e.as_ref()));
            ExitCode::from(failure_code(&e))
        }
    }
}

/// The exit code of a failed run: configuration errors apart from the rest.
fn failure_code(e: &anyhow::Error) -> u8 {
    use ddb_lake::aws::CredentialsError;
    use ddb_lake::config::ConfigError;
    let config = e.chain().any(|c| {
        c.is::<ConfigError>()
            || c.downcast_ref::<CredentialsError>()
                .is_some_and(CredentialsError::is_configuration)
            || c.downcast_ref::<pipeline::PipelineError>()
                .is_some_and(pipeline::PipelineError::is_configuration)
            || c.downcast_ref::<ddb_lake::store::StoreError>()
                .is_some_and(ddb_lake::store::StoreError::is_configuration)
            || c.downcast_ref::<ddb_lake::checkpoint::CheckpointError>()
                .is_some_and(ddb_lake::checkpoint::CheckpointError::is_configuration)
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

/// `ddl athena`: the statements, or only the catalog's missing parts, or those applied to Glue.
async fn athena_ddl(
    args: &ddb_lake::cli::DdlArgs,
    settings: &Settings,
    tables: &[ddb_lake::schema::TableSchema],
    location: &str,
) -> anyhow::Result<ExitCode> {
    use ddb_lake::catalog::{Glue, TableChange};
    use ddb_lake::ddl;
    let db = &args.database;
    let glue = match (args.changes, args.apply) {
        (false, None) => None,
        _ => Some(Glue::connect().await),
    };
    let has_db = match &glue {
        Some(g) => g.has_database(db).await?,
        None => false,
    };
    if let (Some(g), Some(_), false) = (&glue, args.apply, has_db) {
        g.create_database(db).await?;
        println!("created database {db}");
    }
    let configured = args
        .projection_start
        .as_deref()
        .map(ddb_lake::cli::parse_hour)
        .transpose()?;
    for t in tables {
        let files = pipeline::data_files(settings, &t.name).await?;
        // Projection starts at the lake's earliest hour (or the configured start, if earlier).
        let start = [
            ddl::earliest_hour(&settings.template, &t.name, &files),
            configured,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(ddl::DEFAULT_PROJECTION_START_HOUR);
        let table = ddl::athena_table(t, &settings.template, location, start);
        let partitions = if table.projected() {
            Vec::new()
        } else {
            ddl::partitions_of(&table, &settings.template, location, &files)
        };
        let change = match &glue {
            Some(g) if has_db || args.apply.is_some() => g.plan(db, table, partitions).await?,
            _ => TableChange {
                known_columns: 0,
                create: true,
                table,
                partitions,
                properties: Vec::new(),
            },
        };
        match (&glue, args.apply) {
            (Some(g), Some(_)) => {
                g.apply(db, &change).await?;
                let name = &change.table.name;
                if change.create {
                    println!(
                        "created table {db}.{name} ({} columns)",
                        change.table.columns.len()
                    );
                } else if change.known_columns < change.table.columns.len() {
                    println!(
                        "added {} columns to {db}.{name}",
                        change.table.columns.len() - change.known_columns
                    );
                } else if change.properties.is_empty() {
                    println!("table {db}.{name} is up to date");
                }
                for (k, v) in &change.properties {
                    println!("widened {k} of {db}.{name} to {v} (older hours in the lake)");
                }
                if !change.partitions.is_empty() {
                    println!(
                        "registered {} partitions of {db}.{name}",
                        change.partitions.len()
                    );
                }
            }
            _ => print!("{}", change.sql(db)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run_stream(
    settings: &Settings,
    stream: &str,
    mode: Mode,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<Summary> {
    let api = Arc::new(AwsStream::connect(stream).await);
    let checkpoint = settings.stream.checkpoint.clone().unwrap_or_else(|| {
        default_checkpoint(&settings.output, &settings.state_prefix, api.name())
    });
    let opts = StreamOptions {
        stream: stream.to_string(),
        checkpoint,
        start: settings.stream.start,
        mode,
        idle_poll: settings.stream.poll_interval,
        discovery_interval: settings.stream.discovery_interval,
        tick: Duration::from_secs(1).min(settings.max_age),
        shutdown_timeout: settings.stream.shutdown_timeout,
    };
    Ok(stream::run(
        settings,
        api,
        opts,
        Arc::new(SystemClock::default()),
        counters,
        shutdown,
    )
    .await?)
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

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Export(args) => {
            let settings = args.settings()?;
            let counters = Arc::new(Counters::default());
            let mut urls: Vec<&str> = args.input.iter().map(String::as_str).collect();
            urls.push(&settings.output);
            rt.block_on(need_aws(&urls, args.stream.is_some()))?;
            let summary = rt.block_on(async {
                let progress = report::Progress::start(counters.clone(), !args.out.no_progress);
                let r = match &args.stream {
                    Some(stream) => {
                        let until_ms = match &args.until {
                            Some(t) => parse_time("--until", t)?,
                            None => chrono::Utc::now().timestamp_millis(),
                        };
                        run_stream(
                            &settings,
                            stream,
                            Mode::Scheduled { until_ms },
                            counters,
                            std::future::pending(),
                        )
                        .await
                    }
                    None => pipeline::export(
                        &settings,
                        &args.input,
                        &RunOptions {
                            dry_run: args.dry_run,
                            schemas_out: None,
                        },
                        Arc::new(SystemClock::default()),
                        counters,
                    )
                    .await
                    .map_err(anyhow::Error::from),
                };
                progress.finish().await;
                r
            })?;
            print_summary(&summary, args.out.json)?;
            Ok(exit_code(&summary))
        }
        Command::Consume(args) => {
            let settings = args.settings()?;
            let counters = Arc::new(Counters::default());
            rt.block_on(need_aws(&[], true))?;
            let summary = rt.block_on(async {
                if let Some(addr) = args.metrics {
                    ddb_lake::metrics::serve(addr).map_err(anyhow::Error::msg)?;
                    tracing::info!("serving metrics at http://{addr}/metrics");
                }
                let progress = report::Progress::start(counters.clone(), !args.out.no_progress);
                let r = run_stream(
                    &settings,
                    &args.stream,
                    Mode::Continuous,
                    counters,
                    stop_signal(),
                )
                .await;
                progress.finish().await;
                r
            })?;
            print_summary(&summary, args.out.json)?;
            Ok(exit_code(&summary))
        }
        Command::Status(args) => {
            rt.block_on(need_aws(&[], true))?;
            let rows = rt.block_on(async {
                let api = AwsStream::connect(&args.stream).await;
                let url = match (&args.checkpoint, &args.output) {
                    (Some(c), _) => c.clone(),
                    (None, Some(o)) => default_checkpoint(o, "_ddb_lake", api.name()),
                    (None, None) => anyhow::bail!("give --output (the lake) or --checkpoint"),
                };
                let mut store = CheckpointStore::open(&url, &Default::default())?;
                let cp = store.load(&args.stream).await?;
                let now = chrono::Utc::now().timestamp_millis();
                Ok(ddb_lake::kinesis::status(&api, &cp, now).await?)
            })?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<28} {:<10} {:>12}  checkpoint", "shard", "state", "lag");
                for r in rows {
                    let state = if r.finished { "finished" } else { "open" };
                    let lag = r.lag_ms.map_or("-".to_string(), |l| format!("{l} ms"));
                    println!(
                        "{:<28} {:<10} {:>12}  {}",
                        r.shard,
                        state,
                        lag,
                        r.checkpoint.as_deref().unwrap_or("(none)")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ddl(cmd) => {
            let (args, athena) = match &cmd {
                DdlCommand::Athena(a) => (a, true),
                DdlCommand::Redshift(a) => (a, false),
            };
            let settings = args.settings()?;
            rt.block_on(need_aws(
                &[&settings.output],
                args.changes || args.apply.is_some(),
            ))?;
            let tables = rt.block_on(pipeline::table_schemas(&settings))?;
            if tables.is_empty() {
                anyhow::bail!(
                    "no table schemas at {} (run an export first, or pass --schemas)",
                    settings.output
                );
            }
            let location = args
                .location
                .clone()
                .unwrap_or_else(|| settings.output.clone());
            if athena {
                return rt.block_on(athena_ddl(args, &settings, &tables, &location));
            }
            if args.changes || args.apply.is_some() {
                anyhow::bail!("--changes and --apply are for `ddl athena` (the Glue catalog)");
            }
            for t in &tables {
                print!("{}", ddb_lake::ddl::redshift_create(t, &args.database));
                let manifests = rt.block_on(pipeline::manifests(&settings, &t.name, &location))?;
                print!(
                    "{}",
                    ddb_lake::ddl::redshift_copy(t, &args.database, &manifests, &args.iam_role)
                );
            }
            if let Some(db) = &args.spectrum_database {
                print!(
                    "{}",
                    ddb_lake::ddl::spectrum_schema("spectrum", db, &args.iam_role)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema(SchemaCommand::Infer(args)) => {
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
        Command::Generate(args) => {
            let start_ms = parse_time("--start", &args.start)?;
            let opts = GenerateOptions {
                records: args.records,
                seed: args.seed,
                shape: args.shape,
                table: args.table,
                start_ms,
                hours: args.hours,
            };
            match &args.output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w: Box<dyn Write> = if path.extension().is_some_and(|e| e == "gz") {
                        Box::new(flate2::write::GzEncoder::new(
                            std::io::BufWriter::new(file),
                            flate2::Compression::default(),
                        ))
                    } else {
                        Box::new(std::io::BufWriter::new(file))
                    };
                    generate(&opts, &mut w)?;
                    drop(w);
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    generate(&opts, &mut w)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), and memory freed in
/// one is not reused by another: with the decoding, reading and encoding threads that held up to
/// 90 MiB more peak RSS for the same run. Two arenas keep the speed (docs/BENCHMARKS.md).
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it is called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
