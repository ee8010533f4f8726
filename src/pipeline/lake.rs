//! What a run loads from the lake and lists of it: the tables' schemas (declared files merged
//! into the remembered ones), and for `ddl` the COPY manifests and data files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::PipelineError;
use crate::config::Settings;
use crate::schema::{SchemaFile, TableSchema};
use crate::store::{self, Location};

pub(super) struct TableState {
    pub(super) schema: TableSchema,
    /// The schema's generation at its last save (none yet: `u64::MAX`).
    pub(super) saved_generation: u64,
    pub(super) mismatches: BTreeMap<usize, u64>,
    pub(super) truncated: BTreeMap<usize, u64>,
    pub(super) unmapped: u64,
}

/// Loads declared schema files (`schema.dir`) and remembered ones (next to the output), merging
/// declared columns into the remembered lists.
pub(super) async fn load_tables(
    settings: &Settings,
    output: Option<&Location>,
) -> Result<Vec<TableState>, PipelineError> {
    let mut declared: BTreeMap<String, TableSchema> = BTreeMap::new();
    if let Some(dir) = &settings.schema_dir {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| PipelineError::SchemaFile {
                path: dir.display().to_string(),
                problem: e.to_string(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| PipelineError::SchemaFile {
                path: p.display().to_string(),
                problem: e.to_string(),
            })?;
            let s = parse_schema(&text, &p.display().to_string())?;
            declared.insert(s.table.clone(), s);
        }
    }
    let mut tables: BTreeMap<String, TableSchema> = BTreeMap::new();
    if let Some(out) = output {
        let dir = format!("{}/schemas", settings.state_prefix);
        for (path, _) in out.list(&dir).await? {
            if !path.as_ref().ends_with(".toml") {
                continue;
            }
            let bytes = out.get_path(&path).await?;
            let text = String::from_utf8_lossy(&bytes);
            let s = parse_schema(&text, &format!("{}/{}", out.url, path))?;
            tables.insert(s.table.clone(), s);
        }
    }
    for (name, d) in declared {
        match tables.get_mut(&name) {
            Some(t) => t.merge_declared(&d)?,
            None => {
                tables.insert(name, d);
            }
        }
    }
    Ok(tables
        .into_values()
        .map(|schema| TableState {
            saved_generation: u64::MAX,
            schema,
            mismatches: BTreeMap::new(),
            truncated: BTreeMap::new(),
            unmapped: 0,
        })
        .collect())
}

/// The schemas of every known table: remembered next to the output, merged with declared ones.
pub async fn table_schemas(settings: &Settings) -> Result<Vec<TableSchema>, PipelineError> {
    let output = store::open(&settings.output, &settings.s3)?;
    Ok(load_tables(settings, Some(&output))
        .await?
        .into_iter()
        .map(|t| t.schema)
        .collect())
}

/// URLs (under `location`) of a table's COPY manifests, sorted.
pub async fn manifests(
    settings: &Settings,
    table: &str,
    location: &str,
) -> Result<Vec<String>, PipelineError> {
    let output = store::open(&settings.output, &settings.s3)?;
    let dir = format!("{}/manifests/{table}", settings.state_prefix);
    Ok(output
        .list(&dir)
        .await?
        .into_iter()
        .map(|(p, _)| format!("{}/{}", location.trim_end_matches('/'), output.relative(&p)))
        .collect())
}

/// A table's data files, relative to the lake's root, sorted.
pub async fn data_files(settings: &Settings, table: &str) -> Result<Vec<String>, PipelineError> {
    let output = store::open(&settings.output, &settings.s3)?;
    Ok(output
        .list(&format!("{table}/"))
        .await?
        .into_iter()
        .filter(|(p, _)| p.as_ref().ends_with(".parquet"))
        .map(|(p, _)| output.relative(&p))
        .collect())
}

pub(super) fn parse_schema(text: &str, path: &str) -> Result<TableSchema, PipelineError> {
    let file: SchemaFile = toml::from_str(text).map_err(|e| PipelineError::SchemaFile {
        path: path.into(),
        problem: e.to_string(),
    })?;
    Ok(TableSchema::from_file(&file)?)
}
