//! `export` (files, or a stream up to now) and `consume` (a stream until stopped).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ddb_lake::cli::{ConsumeArgs, ExportArgs, StreamSource};
use ddb_lake::config::{ConfigError, Settings};
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
        StreamSource::DynamoDb(sources) => {
            let mut apis = Vec::new();
            for source in sources {
                let mut api = DynamoDbStream::connect(source).await?;
                api.accept_lost(&settings.stream.accept_lost_shards);
                tracing::info!("reading the DynamoDB stream {}", api.arn());
                if let Some(twice) = apis
                    .iter()
                    .find(|a: &&DynamoDbStream| a.table() == api.table())
                {
                    return Err(ConfigError::Invalid {
                        field: "--dynamodb-stream",
                        problem: format!(
                            "table {} is named twice ({} and {}): one stream per table",
                            api.table(),
                            twice.arn(),
                            api.arn()
                        ),
                    }
                    .into());
                }
                apis.push(api);
            }
            if apis.len() > 1 && settings.stream.checkpoint.is_some() {
                return Err(ConfigError::Invalid {
                    field: "stream.checkpoint",
                    problem: "names one checkpoint, and several streams each need their own: leave it out (each stream's is kept next to the output, named after its table)".into(),
                }
                .into());
            }
            run_all(settings, apis, mode, counters, shutdown).await
        }
    }
}

/// Runs several DynamoDB streams at once, each with its own checkpoint and buffers, into one
/// lake; one summary of them all. A stop request stops them all, and so does a failed one.
async fn run_all(
    settings: &Settings,
    mut apis: Vec<DynamoDbStream>,
    mode: Mode,
    counters: Arc<Counters>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<Summary> {
    if apis.len() == 1 {
        let api = apis.remove(0);
        let (arn, name) = (api.arn().to_string(), api.name());
        return run_api(settings, api, &arn, &name, mode, counters, shutdown).await;
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runs = apis.into_iter().map(|api| {
        let mut stop = stop_rx.clone();
        let (stop_tx, counters) = (&stop_tx, counters.clone());
        async move {
            let (arn, name) = (api.arn().to_string(), api.name());
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let r = run_api(settings, api, &arn, &name, mode, counters, stopped).await;
            if let Err(e) = &r {
                tracing::error!("stream {arn}: {e:#}; stopping the other streams");
                let _ = stop_tx.send(true);
            }
            r.map_err(|e| e.context(format!("stream {arn}")))
        }
    });
    let all = futures::future::join_all(runs);
    tokio::pin!(all);
    let results = tokio::select! {
        results = &mut all => results,
        _ = shutdown => {
            let _ = stop_tx.send(true);
            all.await
        }
    };
    let mut total = Summary::default();
    let mut failed = None;
    for r in results {
        match r {
            Ok(s) => total.merge(s),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(total),
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
        accept_lost: settings.stream.accept_lost_shards.clone(),
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
