//! `ddl athena` and `ddl redshift`: the statements for the lake's tables, or (Athena) only the
//! Glue catalog's missing parts, or those applied.

use std::process::ExitCode;

use ddb_lake::cli::{DdlArgs, DdlCommand};
use ddb_lake::config::Settings;
use ddb_lake::pipeline;

use super::need_aws;

pub(super) fn ddl(rt: &tokio::runtime::Runtime, cmd: DdlCommand) -> anyhow::Result<ExitCode> {
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
    let margin_us = ddb_lake::config::parse_duration("--handover-margin", &args.handover_margin)?
        .as_micros() as i64;
    if athena {
        rt.block_on(athena_ddl(args, &settings, &tables, &location))?;
        if args.changes || args.apply.is_some() {
            rt.block_on(current_in_glue(args, &settings, &tables, &location))?;
            return Ok(ExitCode::SUCCESS);
        }
        for t in &tables {
            let dialect = ddb_lake::snapshot::Dialect::Athena;
            if let Some(view) = ddb_lake::ddl::latest_view(t, dialect, &args.database, margin_us) {
                print!("{view}");
            }
            if let Some(p) = rt.block_on(current_snapshot(&settings, &t.name))? {
                let data = format!("{}/{}", location.trim_end_matches('/'), p.data);
                print!(
                    "{}",
                    ddb_lake::ddl::athena_current(t, &args.database, &data)
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
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
        let dialect = ddb_lake::snapshot::Dialect::Redshift;
        if let Some(view) = ddb_lake::ddl::latest_view(t, dialect, &args.database, margin_us) {
            print!("{view}");
        }
        if let Some(p) = rt.block_on(current_snapshot(&settings, &t.name))? {
            let manifest = format!("{}/{}", location.trim_end_matches('/'), p.copy_manifest);
            print!(
                "{}",
                ddb_lake::ddl::redshift_current(t, &args.database, &manifest, &args.iam_role)
            );
        }
    }
    if let Some(db) = &args.spectrum_database {
        print!(
            "{}",
            ddb_lake::ddl::spectrum_schema("spectrum", db, &args.iam_role)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `{table}_current` in the Glue catalog: with `--apply glue` created or moved to the current
/// snapshot in one UpdateTable; with `--changes` the statement that would do it, if needed.
/// (The `{table}_latest` views are SQL to run in Athena: `ddl athena` prints them.)
async fn current_in_glue(
    args: &DdlArgs,
    settings: &Settings,
    tables: &[ddb_lake::schema::TableSchema],
    location: &str,
) -> anyhow::Result<()> {
    let glue = ddb_lake::catalog::Glue::connect().await;
    let db = &args.database;
    for t in tables {
        let Some(p) = current_snapshot(settings, &t.name).await? else {
            continue;
        };
        let data = format!("{}/{}", location.trim_end_matches('/'), p.data);
        let table = ddb_lake::ddl::athena_current_table(t, &data);
        let now = glue.location(db, &table.name).await?;
        if now.as_deref() == Some(table.location.as_str()) && args.apply.is_none() {
            continue;
        }
        if args.apply.is_some() {
            glue.put_unpartitioned(db, &table).await?;
            println!(
                "{db}.{} is snapshot {} ({})",
                table.name, p.snapshot, table.location
            );
        } else {
            print!("{}", ddb_lake::ddl::athena_current(t, db, &data));
        }
    }
    Ok(())
}

/// The pointer to a table's current snapshot, if it has one.
async fn current_snapshot(
    settings: &Settings,
    table: &str,
) -> anyhow::Result<Option<ddb_lake::snapshot::Pointer>> {
    let lake = ddb_lake::store::open(&settings.output, &settings.s3)?;
    Ok(ddb_lake::snapshot::current(&lake, settings, table)
        .await?
        .map(|(p, _)| p))
}

/// `ddl athena`: the statements, or only the catalog's missing parts, or those applied to Glue.
async fn athena_ddl(
    args: &DdlArgs,
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
