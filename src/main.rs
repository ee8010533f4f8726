//! The `ddb-lake` binary: parses arguments, runs a command, maps the outcome to an exit code
//! (0 success, 1 failure, 2 finished but some records went to the error output).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use ddb_lake::cli::{Cli, Command, SchemaCommand};
use ddb_lake::generate::{generate, GenerateOptions};
use ddb_lake::pipeline::{self, Counters, RunOptions, SystemClock};
use ddb_lake::report;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
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
            let summary = rt.block_on(async {
                let progress = report::Progress::start(counters.clone(), !args.no_progress);
                let r = pipeline::export(
                    &settings,
                    &args.common.input,
                    &RunOptions {
                        dry_run: args.dry_run,
                        schemas_out: None,
                    },
                    Arc::new(SystemClock::default()),
                    counters,
                )
                .await;
                progress.finish().await;
                r
            })?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{}", report::render(&summary));
            }
            Ok(if summary.errors_total() > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Schema(SchemaCommand::Infer(args)) => {
            let settings = args.settings()?;
            let summary = rt.block_on(pipeline::export(
                &settings,
                &args.common.input,
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
            let start = chrono::DateTime::parse_from_rfc3339(&args.start)
                .with_context(|| format!("--start `{}` is not an RFC 3339 time", args.start))?;
            let opts = GenerateOptions {
                records: args.records,
                seed: args.seed,
                shape: args.shape,
                table: args.table,
                start_ms: start.timestamp_millis(),
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
