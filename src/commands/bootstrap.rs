//! `bootstrap`: a table's full export (started here, or one the user has) loaded into the lake,
//! then the handover: the stream's checkpoint left so that the next `export`/`consume` of the
//! table's DynamoDB stream (or its Kinesis stream) reads every change since shortly before the
//! export time (docs/DESIGN.md, "Handover").

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ddb_lake::checkpoint::{Checkpoint, CheckpointStore, Handover};
use ddb_lake::cli::BootstrapArgs;
use ddb_lake::config::{parse_duration, ConfigError, Settings};
use ddb_lake::decode::export::ExportType;
use ddb_lake::dynamodb_streams::DynamoDbStream;
use ddb_lake::kinesis::AwsStream;
use ddb_lake::pipeline::handover::{self, rfc3339, StreamFacts};
use ddb_lake::pipeline::{self, PipelineError, RunOptions, SystemClock};
use ddb_lake::report;
use ddb_lake::source::export::{self, Export};
use ddb_lake::source::export_task::{manifest_url, ExportTask, TaskState};
use ddb_lake::store;
use ddb_lake::summary::{Counters, Summary};

use super::{default_checkpoint, exit_code, need_aws, print_summary};

/// DynamoDB Streams keeps records for 24 hours.
const DYNAMODB_STREAMS_RETENTION_MS: i64 = 24 * 3_600_000;

/// DescribeExport calls in a row that may fail before the wait gives up.
const POLL_FAILURES: u32 = 5;

pub(super) fn bootstrap(
    rt: &tokio::runtime::Runtime,
    args: BootstrapArgs,
) -> anyhow::Result<ExitCode> {
    let settings = args.settings()?;
    let margin = parse_duration("--handover-margin", &args.handover_margin)?;
    let poll = parse_duration("--export-poll", &args.export_poll)?;
    rt.block_on(need_aws(&[], true))?;
    let summary = rt.block_on(run(&settings, &args, margin, poll))?;
    print_summary(&summary, args.out.json)?;
    if let (false, Some(h)) = (
        args.out.json,
        summary
            .checkpoint
            .as_ref()
            .and_then(|c| c.handover.as_ref()),
    ) {
        println!(
            "handover: export {} of {} at {}; the stream is read from {} on (the export time less {}): run `export` or `consume` on it next",
            h.export_id,
            h.table,
            rfc3339(h.export_time_ms),
            rfc3339(h.start_ms),
            humantime::format_duration(margin),
        );
    }
    Ok(exit_code(&summary))
}

/// The stream handed over to.
enum Target {
    Kinesis(AwsStream),
    DynamoDb(Box<DynamoDbStream>),
}

impl Target {
    /// The stream as a stream run records it in its checkpoint, and the name of its default
    /// checkpoint: the same as `export`/`consume` use.
    fn ids(&self) -> (String, String) {
        match self {
            Target::Kinesis(api) => (api.stream().to_string(), api.name().to_string()),
            Target::DynamoDb(api) => (api.arn().to_string(), api.name()),
        }
    }

    async fn facts(&self) -> anyhow::Result<StreamFacts> {
        let (stream, _) = self.ids();
        let failed = |source| PipelineError::Stream {
            stream: stream.clone(),
            source,
        };
        Ok(match self {
            Target::Kinesis(api) => {
                let (retention_ms, created_ms) =
                    api.retention_and_creation().await.map_err(failed)?;
                StreamFacts {
                    retention_ms,
                    created_ms,
                }
            }
            Target::DynamoDb(api) => StreamFacts {
                retention_ms: DYNAMODB_STREAMS_RETENTION_MS,
                created_ms: api.created_ms().await.map_err(failed)?,
            },
        })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn invalid(field: &'static str, problem: String) -> anyhow::Error {
    ConfigError::Invalid { field, problem }.into()
}

async fn run(
    settings: &Settings,
    args: &BootstrapArgs,
    margin: Duration,
    poll: Duration,
) -> anyhow::Result<Summary> {
    let margin_ms = margin.as_millis() as i64;
    let given = match &args.from_export {
        Some(url) => Some(export_at(url, settings).await?),
        None => None,
    };
    let table = match (&args.table, &given) {
        (Some(t), _) => t.clone(),
        (None, Some(e)) => e.meta.table.clone(),
        (None, None) => unreachable!("clap requires --table or --from-export"),
    };
    if let Some(e) = given.as_ref().filter(|e| e.meta.table != table) {
        return Err(invalid(
            "--from-export",
            format!("is an export of table {}, not of {table}", e.meta.table),
        ));
    }
    let target = match (&args.stream, &args.dynamodb_stream) {
        (Some(k), _) => Target::Kinesis(AwsStream::connect(k).await),
        (None, d) => {
            let source = d.as_deref().unwrap_or(&table);
            let api = DynamoDbStream::connect(source)
                .await
                .map_err(|source_err| PipelineError::Stream {
                    stream: source.to_string(),
                    source: source_err,
                })?;
            if api.table() != table {
                return Err(invalid(
                    "--dynamodb-stream",
                    format!("is the stream of table {}, not of {table}", api.table()),
                ));
            }
            Target::DynamoDb(Box::new(api))
        }
    };
    let facts = target.facts().await?;
    let (stream, name) = target.ids();
    let checkpoint = settings
        .stream
        .checkpoint
        .clone()
        .unwrap_or_else(|| default_checkpoint(&settings.output, &settings.state_prefix, &name));
    let mut cp_store = CheckpointStore::open(&checkpoint, &settings.s3)?;
    // Refused before an export is paid for.
    handover::check_unread(&cp_store.load(&stream).await?, &cp_store.url())?;
    let (input, export) = match (given, &args.from_export) {
        (Some(e), Some(url)) => (url.clone(), e),
        _ => {
            handover::start_of(now_ms(), margin_ms, facts, now_ms())?;
            let (arn, manifest) = start_and_wait(&table, settings, args, poll).await?;
            let e = export::detect(&manifest, &settings.s3).await?.ok_or_else(|| {
                ddb_lake::source::SourceError::TableExport {
                    table: table.clone(),
                    problem: format!("export {arn} completed, but its manifest-summary.json is not at {manifest}, where AWS writes it: nothing was loaded"),
                }
            })?;
            (manifest, e)
        }
    };
    if export.meta.export_type != ExportType::Full {
        return Err(invalid(
            "--from-export",
            format!("{input} is an incremental export: a bootstrap starts from a full export (load incremental ones with `export --input`)"),
        ));
    }
    let export_time_ms = export.meta.export_time_us / 1000;
    // A too-old export is refused before it is loaded.
    handover::start_of(export_time_ms, margin_ms, facts, now_ms())?;
    // The export's items do not say which attributes are the key: DynamoDB does.
    let mut settings = settings.clone();
    if settings.key.is_empty() {
        match ExportTask::connect().await.table(&table).await {
            Ok(info) => settings.key = info.keys,
            Err(e) => tracing::warn!(
                "{e}: the table's key attributes come from the lake's remembered schema or --key"
            ),
        }
    }
    let settings = &settings;
    let counters = Arc::new(Counters::default());
    let progress = report::Progress::start(counters.clone(), !args.out.no_progress);
    let loaded = pipeline::export(
        settings,
        std::slice::from_ref(&input),
        &RunOptions::default(),
        Arc::new(SystemClock::default()),
        counters,
    )
    .await;
    progress.finish().await;
    let mut summary = loaded.with_context(|| format!("loading the export {input}"))?;
    let plan = Handover {
        export_id: export.meta.export_id.clone(),
        table: table.clone(),
        export_time_ms,
        margin_ms,
        start_ms: export_time_ms - margin_ms,
    };
    let cp: Checkpoint = match &target {
        Target::Kinesis(api) => {
            handover::hand_over(api, &stream, &mut cp_store, plan, facts, now_ms()).await?
        }
        Target::DynamoDb(api) => {
            handover::hand_over(&**api, &stream, &mut cp_store, plan, facts, now_ms()).await?
        }
    };
    summary.checkpoint = Some(cp);
    Ok(summary)
}

/// The full export at `url` (its folder or its `manifest-summary.json`).
async fn export_at(url: &str, settings: &Settings) -> anyhow::Result<Export> {
    export::detect(url, &settings.s3).await?.ok_or_else(|| {
        invalid(
            "--from-export",
            format!("{url} is not a DynamoDB export: it has no manifest-summary.json"),
        )
    })
}

/// The bucket and prefix the export goes to: as given, or the output's bucket under
/// `{output}/{state_prefix}/exports`.
fn export_location(args: &BootstrapArgs, settings: &Settings) -> anyhow::Result<(String, String)> {
    if let Some(bucket) = &args.export_bucket {
        let prefix = args.export_prefix.clone().unwrap_or_default();
        return Ok((bucket.clone(), prefix.trim_matches('/').to_string()));
    }
    match store::parse_url(&settings.output)? {
        store::Url::S3 { bucket, key } => {
            let key = key.trim_matches('/');
            let state = format!("{}/exports", settings.state_prefix);
            let prefix = match key {
                "" => state,
                k => format!("{k}/{state}"),
            };
            Ok((bucket.to_string(), prefix))
        }
        store::Url::Local(_) => Err(invalid(
            "--export-bucket",
            "is needed: DynamoDB writes exports to S3 and the output is a local folder (or load an export you have with --from-export)".into(),
        )),
    }
}

/// Starts the export and waits for it, with a spinner on a terminal; its ARN and the URL of its
/// `manifest-summary.json`.
async fn start_and_wait(
    table: &str,
    settings: &Settings,
    args: &BootstrapArgs,
    poll: Duration,
) -> anyhow::Result<(String, String)> {
    let (bucket, prefix) = export_location(args, settings)?;
    let task = ExportTask::connect().await;
    task.require_pitr(table).await?;
    let info = task.table(table).await?;
    let arn = task.start(&info, &bucket, &prefix).await?;
    let folder = manifest_url(&bucket, &prefix, None, &arn);
    let folder = folder.trim_end_matches("manifest-summary.json");
    tracing::info!(
        "export {arn} of table {table} started; should this process stop, load it once it has completed with `ddb-lake bootstrap --from-export {folder}`"
    );
    let bar = if !args.out.no_progress && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut failures = 0;
    let result = loop {
        match task.state(table, &arn).await {
            Ok(TaskState::Completed { manifest }) => break Ok(manifest),
            Ok(TaskState::Failed { reason }) => {
                break Err(anyhow::anyhow!(
                    "export {arn} of table {table} failed: {reason}"
                ))
            }
            Ok(TaskState::InProgress) => failures = 0,
            Err(e) if failures + 1 < POLL_FAILURES => {
                failures += 1;
                tracing::warn!("asking how export {arn} stands failed ({e}); asking again");
            }
            Err(e) => break Err(e.into()),
        }
        let waited = humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()));
        bar.set_message(format!("export of {table} in progress ({waited})"));
        tracing::debug!("export {arn}: in progress after {waited}");
        tokio::time::sleep(poll).await;
    };
    bar.finish_and_clear();
    let manifest = result?;
    tracing::info!(
        "export {arn} completed after {}",
        humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
    );
    Ok((arn, manifest))
}
