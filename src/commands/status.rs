//! `status`: each shard's checkpoint and lag.

use std::process::ExitCode;

use ddb_lake::checkpoint::CheckpointStore;
use ddb_lake::cli::StatusArgs;
use ddb_lake::kinesis::AwsStream;

use super::{default_checkpoint, need_aws};

pub(super) fn status(rt: &tokio::runtime::Runtime, args: StatusArgs) -> anyhow::Result<ExitCode> {
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
