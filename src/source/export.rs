//! A DynamoDB table export as an input: the folder (`s3://bucket/prefix/AWSDynamoDB/ID/` or a
//! local copy) that holds `manifest-summary.json` (the export's table, time, type, format and
//! item count) and `manifest-files.json` (one line per data file with its item count and MD5).
//!
//! The data files are the ones the manifest names, never a listing: incremental exports share
//! their `data/` folder with other exports. Each file's MD5 is checked before any of its lines
//! is read, and its item count once it has been read.

use std::io::Read;
use std::path::PathBuf;

use base64::Engine as _;
use md5::{Digest, Md5};
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{InputFile, SourceError};
use crate::decode::{ExportFormat, ExportMeta, ExportType};
use crate::store::{self, S3Options};

/// The summary manifest's name in an export's folder.
pub const SUMMARY: &str = "manifest-summary.json";

/// `manifest-summary.json`, the fields this reader uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SummaryManifest {
    export_arn: String,
    table_arn: String,
    export_time: Option<String>,
    start_time: Option<String>,
    export_to_time: Option<String>,
    #[serde(default)]
    export_type: Option<String>,
    #[serde(default, alias = "outputView")]
    export_view_type: Option<String>,
    output_format: String,
    item_count: Option<u64>,
    manifest_files_s3_key: Option<String>,
}

/// One line of `manifest-files.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileEntry {
    item_count: u64,
    md5_checksum: Option<String>,
    data_file_s3_key: String,
}

/// One data file of an export.
#[derive(Debug, Clone)]
pub struct ExportFile {
    /// Where it is read from.
    pub file: InputFile,
    /// Items (full) or changes (incremental) the manifest says it holds.
    pub item_count: u64,
    /// Base64 MD5 of the object's bytes, from the manifest.
    pub md5: Option<String>,
}

/// An export found at an input, with its data files.
#[derive(Debug, Clone)]
pub struct Export {
    /// The export's folder, as given.
    pub input: String,
    /// What every row of it shares.
    pub meta: ExportMeta,
    /// The export's ARN.
    pub arn: String,
    /// The items (full) or changes (incremental) the summary manifest counts.
    pub item_count: Option<u64>,
    /// The data files, in manifest order.
    pub files: Vec<ExportFile>,
}

/// What the run summary says of an export it loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// The export's ARN.
    pub arn: String,
    /// The export id (every row's `cdc_event_id`).
    pub id: String,
    /// The exported table.
    pub table: String,
    /// `FULL_EXPORT` or `INCREMENTAL_EXPORT`.
    pub export_type: String,
    /// `DYNAMODB_JSON` or `ION`.
    pub format: String,
    /// The export time (full) or the end of its window (incremental), RFC 3339.
    pub export_time: String,
    /// Items or changes, as the manifest counts them (each file's count was checked).
    pub items: u64,
    /// Data files read.
    pub data_files: usize,
}

impl Export {
    /// The run summary's account of it.
    pub fn summary(&self) -> ExportSummary {
        ExportSummary {
            arn: self.arn.clone(),
            id: self.meta.export_id.clone(),
            table: self.meta.table.clone(),
            export_type: match self.meta.export_type {
                ExportType::Full => "FULL_EXPORT",
                ExportType::Incremental => "INCREMENTAL_EXPORT",
            }
            .into(),
            format: match self.meta.format {
                ExportFormat::DynamoDbJson => "DYNAMODB_JSON",
                ExportFormat::Ion => "ION",
            }
            .into(),
            export_time: chrono::DateTime::from_timestamp_micros(self.meta.export_time_us)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default(),
            items: self.files.iter().map(|f| f.item_count).sum(),
            data_files: self.files.len(),
        }
    }
}

fn problem(input: &str, problem: impl Into<String>) -> SourceError {
    SourceError::Export {
        export: input.to_string(),
        problem: problem.into(),
    }
}

/// The export at `input` (its folder, or its `manifest-summary.json`), or `None` when the input
/// is not an export's folder.
pub async fn detect(input: &str, s3: &S3Options) -> Result<Option<Export>, SourceError> {
    let folder = input
        .trim_end_matches('/')
        .strip_suffix(SUMMARY)
        .unwrap_or(input)
        .trim_end_matches('/');
    let folder = if folder.is_empty() { "." } else { folder };
    if matches!(store::parse_url(folder)?, store::Url::Local(p) if !std::path::Path::new(p).is_dir())
    {
        return Ok(None);
    }
    let root = store::open(folder, s3)?;
    let Some(summary) = root.get_opt(SUMMARY).await? else {
        return Ok(None);
    };
    let summary: SummaryManifest = serde_json::from_slice(&summary)
        .map_err(|e| problem(input, format!("{SUMMARY} is not an export's summary: {e}")))?;
    let export_type = match summary.export_type.as_deref() {
        None | Some("FULL_EXPORT") => ExportType::Full,
        Some("INCREMENTAL_EXPORT") => ExportType::Incremental,
        Some(other) => return Err(problem(input, format!("unknown exportType `{other}`"))),
    };
    let format = match summary.output_format.as_str() {
        "DYNAMODB_JSON" => ExportFormat::DynamoDbJson,
        "ION" => ExportFormat::Ion,
        other => return Err(problem(input, format!("unknown outputFormat `{other}`"))),
    };
    let time = match export_type {
        ExportType::Full => summary.export_time.as_ref().or(summary.start_time.as_ref()),
        ExportType::Incremental => summary
            .export_to_time
            .as_ref()
            .or(summary.export_time.as_ref()),
    }
    .ok_or_else(|| problem(input, format!("{SUMMARY} has no exportTime")))?;
    let export_time_us = chrono::DateTime::parse_from_rfc3339(time)
        .map_err(|e| problem(input, format!("exportTime `{time}`: {e}")))?
        .timestamp_micros();
    let table = summary
        .table_arn
        .rsplit_once(":table/")
        .map(|(_, t)| t.split('/').next().unwrap_or(t).to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            problem(
                input,
                format!("tableArn `{}` names no table", summary.table_arn),
            )
        })?;
    let export_id = summary
        .export_arn
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let meta = ExportMeta {
        table,
        export_id: export_id.clone(),
        export_time_us,
        export_type,
        format,
        new_images_only: matches!(
            summary.export_view_type.as_deref(),
            Some("NEW_IMAGE" | "NEW_IMAGES")
        ),
        keys: None,
    };
    // The files manifest: next to the summary, whatever prefix the export was written under.
    let files_name = summary
        .manifest_files_s3_key
        .as_deref()
        .and_then(|k| k.rsplit('/').next())
        .unwrap_or("manifest-files.json");
    let listing = root
        .get_opt(files_name)
        .await?
        .ok_or_else(|| problem(input, format!("{files_name} is missing")))?;
    let mut files = Vec::new();
    for (i, line) in listing.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry: FileEntry = serde_json::from_slice(line)
            .map_err(|e| problem(input, format!("{files_name} line {}: {e}", i + 1)))?;
        let file = data_file(folder, &export_id, &entry.data_file_s3_key, s3)
            .map_err(|p| problem(input, format!("{files_name} line {}: {p}", i + 1)))?;
        files.push(ExportFile {
            file,
            item_count: entry.item_count,
            md5: entry.md5_checksum,
        });
    }
    let listed: u64 = files.iter().map(|f| f.item_count).sum();
    if let Some(total) = summary.item_count.filter(|&t| t != listed) {
        return Err(problem(
            input,
            format!("manifest-summary.json says {total} items, and {files_name} lists {listed} in its data files: the manifests do not belong together; nothing was read"),
        ));
    }
    Ok(Some(Export {
        input: input.to_string(),
        meta,
        arn: summary.export_arn,
        item_count: summary.item_count,
        files,
    }))
}

/// Where a data file the manifest names is, so that a copy of the export elsewhere reads the
/// same: a key under `.../{id}/` (a full export's `data/`) is that part under the export's
/// folder as given; a key under `.../AWSDynamoDB/` but not the export's own folder (the `data/`
/// folder incremental exports share) is that part under the folder's parent. A key that would
/// climb out is refused.
fn data_file(
    folder: &str,
    export_id: &str,
    key: &str,
    s3: &S3Options,
) -> Result<InputFile, String> {
    let after = |marker: &str| {
        key.find(marker)
            .filter(|&i| i == 0 || key[..i].ends_with('/'))
            .map(|i| &key[i + marker.len()..])
    };
    let (base, rel) = match (after(&format!("{export_id}/")), after("AWSDynamoDB/")) {
        (Some(rel), _) => (folder.to_string(), rel),
        (None, Some(rel)) => match folder.rsplit_once('/') {
            Some((parent, _)) if !parent.is_empty() && parent != "s3:/" => {
                (parent.to_string(), rel)
            }
            _ => {
                return Err(format!(
                    "data file `{key}` is outside the export's folder, which has no parent"
                ))
            }
        },
        (None, None) => {
            return Err(format!(
                "data file `{key}` is not under the export's folder"
            ))
        }
    };
    if rel.is_empty()
        || rel
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(format!("data file `{key}` is not a plain path"));
    }
    Ok(match store::parse_url(&base).map_err(|e| e.to_string())? {
        store::Url::Local(p) => InputFile::Local(PathBuf::from(p).join(rel)),
        store::Url::S3 { .. } => {
            let rest = &base["s3://".len()..];
            let bucket = rest.split('/').next().unwrap_or(rest);
            let location = store::open(&format!("s3://{bucket}"), s3).map_err(|e| e.to_string())?;
            let prefix = rest[bucket.len()..].trim_matches('/');
            let full = if prefix.is_empty() {
                rel.to_string()
            } else {
                format!("{prefix}/{rel}")
            };
            InputFile::Object {
                location,
                path: Path::from(full),
            }
        }
    })
}

/// Checks a data file's bytes against the manifest's MD5, before any of its lines is read, and
/// opens it. An object is fetched once, for both, into a local file (never whole in memory).
pub async fn verify_and_open(
    f: &ExportFile,
) -> Result<Box<dyn std::io::BufRead + Send>, SourceError> {
    let Some(want) = &f.md5 else {
        return f.file.open().await;
    };
    let name = f.file.name();
    let io = |source| SourceError::Io {
        name: name.clone(),
        source,
    };
    let (digest, spooled) = match &f.file {
        InputFile::Local(p) => {
            let mut file = std::fs::File::open(p).map_err(io)?;
            let mut md5 = Md5::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                md5.update(&buf[..n]);
            }
            (md5.finalize(), None)
        }
        InputFile::Object { location, path } => {
            let mut md5 = Md5::new();
            let file = super::spool(location, path, &name, |chunk| md5.update(chunk)).await?;
            (md5.finalize(), Some(file))
        }
    };
    let got = base64::engine::general_purpose::STANDARD.encode(digest);
    if &got != want {
        return Err(SourceError::Checksum {
            file: name,
            expected: want.clone(),
            actual: got,
        });
    }
    match spooled {
        Some(file) => super::decompress(Box::new(file), &name),
        None => f.file.open().await,
    }
}
