//! `status`: each shard's checkpoint and lag.

use std::process::ExitCode;

use ddb_lake::checkpoint::Checkpoint;
use ddb_lake::checkpoint::CheckpointStore;
use ddb_lake::cli::{StatusArgs, StreamSource};
use ddb_lake::dynamodb_streams::DynamoDbStream;
use ddb_lake::kinesis::{AwsStream, ShardStatus, StreamApi};

use super::{default_checkpoint, need_aws};

pub(super) fn status(rt: &tokio::runtime::Runtime, args: StatusArgs) -> anyhow::Result<ExitCode> {
    rt.block_on(need_aws(&[], true))?;
    let rows = rt.block_on(async {
        match args.stream_source() {
            Some(StreamSource::Kinesis(stream)) => {
                let api = AwsStream::connect(&stream).await;
                let name = api.name().to_string();
                shard_rows(&args, &api, &stream, &name).await
            }
            Some(StreamSource::DynamoDb(sources)) => {
                // clap lets one through for `status`.
                let one = sources.first().map(String::as_str).unwrap_or_default();
                let api = DynamoDbStream::connect(one).await?;
                let (arn, name) = (api.arn().to_string(), api.name());
                shard_rows(&args, &api, &arn, &name).await
            }
            None => anyhow::bail!("give --stream or --dynamodb-stream"),
        }
    })?;
    let width = rows
        .iter()
        .map(|r| r.shard.len())
        .max()
        .unwrap_or(0)
        .max(28);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<width$} {:<10} {:>12}  checkpoint",
            "shard", "state", "lag"
        );
        for r in rows {
            let state = if r.finished { "finished" } else { "open" };
            let lag = r.lag_ms.map_or("-".to_string(), |l| format!("{l} ms"));
            println!(
                "{:<width$} {:<10} {:>12}  {}",
                r.shard,
                state,
                lag,
                r.checkpoint.as_deref().unwrap_or("(none)")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each shard's checkpoint and lag, from the checkpoint of `stream` (default file `name`).
async fn shard_rows<A: StreamApi>(
    args: &StatusArgs,
    api: &A,
    stream: &str,
    name: &str,
) -> anyhow::Result<Vec<ShardStatus>> {
    let url = match (&args.checkpoint, &args.output) {
        (Some(c), _) => c.clone(),
        (None, Some(o)) => default_checkpoint(o, "_ddb_lake", name),
        (None, None) => anyhow::bail!("give --output (the lake) or --checkpoint"),
    };
    let mut store = CheckpointStore::open(&url, &Default::default())?;
    let cp: Checkpoint = store.load(stream).await?;
    let now = chrono::Utc::now().timestamp_millis();
    Ok(ddb_lake::kinesis::status(api, &cp, now).await?)
}
