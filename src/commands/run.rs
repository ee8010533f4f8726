//! `export` (files, or a stream up to now) and `consume` (a stream until stopped).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ddb_lake::cli::{ConsumeArgs, ExportArgs, StreamSource};
use ddb_lake::config::Settings;
use ddb_lake::dynamodb_streams::DynamoDbStream;
use ddb_lake::kinesis::{AwsStream, StreamApi};
use ddb_lake::pipeline::stream::{self, Mode, StreamOptions};
use ddb_lake::pipeline::{self, RunOptions, SystemClock};
use ddb_lake::report;
use ddb_lake::summary::{Counters, Summary};

use super::{default_checkpoint, exit_code, need_aws, parse_time, print_summary};

pub(super) fn export(rt: &tokio::runtime::Runtime, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let counters = Arc::new(Counters::default());
    let mut urls: Vec<&str> = args.input.iter().map(String::as_str).collect();
    urls.push(&settings.output);
    let source = args.stream_source();
    rt.block_on(need_aws(&urls, source.is_some()))?;
    let summary = rt.block_on(async {
        let progress = report::Progress::start(counters.clone(), !args.out.no_progress);
        let r = match &source {
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

pub(super) fn consume(rt: &tokio::runtime::Runtime, args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let counters = Arc::new(Counters::default());
    rt.block_on(need_aws(&[], true))?;
    let summary = rt.block_on(async {
        if let Some(addr) = args.metrics {
            ddb_lake::metrics::serve(addr).map_err(anyhow::Error::msg)?;
            tracing::info!("serving metrics at http://{addr}/metrics");
        }
        let progress = report::Progress::start(counters.clone(), !args.out.no_progress);
        let source = args
            .stream_source()
            .ok_or_else(|| anyhow::anyhow!("give --stream or --dynamodb-stream"))?;
        let r = run_stream(
            &settings,
            &source,
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

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Connects to the stream of `source` and runs it.
async fn run_stream(
    settings: &Settings,
    source: &StreamSource,
    mode: Mode,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<Summary> {
    match source {
        StreamSource::Kinesis(stream) => {
            let api = AwsStream::connect(stream).await;
            let name = api.name().to_string();
            run_api(settings, api, stream, &name, mode, counters, shutdown).await
        }
        StreamSource::DynamoDb(table_or_arn) => {
            let api = DynamoDbStream::connect(table_or_arn).await?;
            let (arn, name) = (api.arn().to_string(), api.name());
            tracing::info!("reading the DynamoDB stream {arn}");
            run_api(settings, api, &arn, &name, mode, counters, shutdown).await
        }
    }
}

/// Runs `api` (the stream `stream`, whose default checkpoint is named `name`).
async fn run_api<A: StreamApi>(
    settings: &Settings,
    api: A,
    stream: &str,
    name: &str,
    mode: Mode,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<Summary> {
    let checkpoint = settings
        .stream
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint(&settings.output, &settings.state_prefix, name));
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
        Arc::new(api),
        opts,
        Arc::new(SystemClock::default()),
        counters,
        shutdown,
    )
    .await?)
}
