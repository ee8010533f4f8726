//! The batch export: files (local or S3, plain or gzip) through the intake and the writer, and
//! the run's summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::decode_ahead::Parser;
use super::intake::Intake;
use super::lake::{load_tables, TableState};
use super::writer::{write_all, WriterStats};
use super::{Clock, PipelineError, CHANNEL_DEPTH};
use crate::config::Settings;
use crate::decode::export::ExportType;
use crate::decode::ExportMeta;
use crate::reject::Rejects;
use crate::source::{self, export::Export, export::ExportFile, InputFile, SourceError};
use crate::store;
use crate::summary::{Counters, Summary};

/// What the run does besides reading.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Encode but write nothing; report what would be written.
    pub dry_run: bool,
    /// After the run, write each table's schema file into this folder (`schema infer`).
    pub schemas_out: Option<PathBuf>,
}

/// Runs a batch export of `inputs` into the settings' output.
pub async fn export(
    settings: &Settings,
    inputs: &[String],
    opts: &RunOptions,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
) -> Result<Summary, PipelineError> {
    let started = Instant::now();
    let output = if opts.schemas_out.is_some() && opts.dry_run && settings.output.is_empty() {
        None
    } else {
        Some(store::open(&settings.output, &settings.s3)?)
    };
    let tables = load_tables(settings, output.as_ref()).await?;
    let keys_of = |table: &str| {
        if !settings.key.is_empty() {
            return Some(settings.key.clone());
        }
        let t = tables.iter().find(|t| t.schema.table == table)?;
        t.schema.keys().map(<[String]>::to_vec)
    };
    let (work, exports) = inputs_of(inputs, &settings.s3, keys_of).await?;
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let writer = tokio::spawn(write_all(
        rx,
        output,
        None,
        settings.clone(),
        opts.dry_run,
        counters.clone(),
    ));

    let handle = tokio::runtime::Handle::current();
    let settings_r = settings.clone();
    let counters_r = counters.clone();
    let n_files = work.len();
    let reading = tokio::task::spawn_blocking(move || -> Result<_, PipelineError> {
        let mut r = Intake::new(&settings_r, clock.as_ref(), &counters_r, tables, tx, None);
        for item in &work {
            match item {
                Work::File(file) => {
                    tracing::debug!("reading {}", file.name());
                    let reader = handle.block_on(file.open())?;
                    r.file(file, reader, Parser::Change)?;
                }
                Work::Export(meta, f) => {
                    tracing::debug!("reading {} (export {})", f.file.name(), meta.export_id);
                    let reader = handle.block_on(source::export::verify_and_open(f))?;
                    let lines = r.file(&f.file, reader, Parser::Export(meta.clone()))?;
                    if lines != f.item_count {
                        return Err(SourceError::ItemCount {
                            file: f.file.name(),
                            expected: f.item_count,
                            actual: lines,
                        }
                        .into());
                    }
                }
            }
        }
        r.finish()?;
        Ok(r.into_result())
    });
    let (read, stats) = join(reading, writer).await?;

    if let Some(dir) = &opts.schemas_out {
        std::fs::create_dir_all(dir).map_err(|e| PipelineError::SchemaFile {
            path: dir.display().to_string(),
            problem: e.to_string(),
        })?;
        for t in &read.tables {
            let path = dir.join(format!("{}.toml", t.schema.name));
            let text = toml::to_string(&t.schema.to_file()).expect("schemas serialize");
            std::fs::write(&path, text).map_err(|e| PipelineError::SchemaFile {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
        }
    }

    let mut summary = summarize(read, stats, started, opts.dry_run);
    summary.input_files = n_files;
    summary.exports = exports.iter().map(Export::summary).collect();
    Ok(summary)
}

/// One file to read: a file of change records, or a data file of a table export.
enum Work {
    File(InputFile),
    Export(Arc<ExportMeta>, ExportFile),
}

/// The inputs as files to read, in order: an export's folder as its manifest's data files, any
/// other input expanded into files.
async fn inputs_of(
    inputs: &[String],
    s3: &store::S3Options,
    keys_of: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<(Vec<Work>, Vec<Export>), PipelineError> {
    let (mut work, mut exports) = (Vec::new(), Vec::new());
    for input in inputs {
        match source::export::detect(input, s3).await? {
            Some(export) => {
                tracing::info!(
                    "{input}: DynamoDB export {} of table {} ({} data files)",
                    export.meta.export_id,
                    export.meta.table,
                    export.files.len()
                );
                let mut meta = export.meta.clone();
                if meta.export_type == ExportType::Full {
                    meta.keys = keys_of(&meta.table);
                    if meta.keys.is_none() {
                        tracing::warn!(
                            "{input}: the key attributes of table {} are not known (a full export's items do not say which they are): `snapshot` will need them; give them with --key",
                            meta.table
                        );
                    }
                }
                let meta = Arc::new(meta);
                work.extend(
                    export
                        .files
                        .iter()
                        .map(|f| Work::Export(meta.clone(), f.clone())),
                );
                exports.push(export);
            }
            None => work.extend(
                source::resolve(std::slice::from_ref(input), s3)
                    .await?
                    .into_iter()
                    .map(Work::File),
            ),
        }
    }
    Ok((work, exports))
}

/// Waits for the reading side and the writer. The writer's error comes first: it explains a
/// reading side that stopped because the writer went away.
pub(super) async fn join(
    reading: tokio::task::JoinHandle<Result<ReadResult, PipelineError>>,
    writer: tokio::task::JoinHandle<Result<WriterStats, PipelineError>>,
) -> Result<(ReadResult, WriterStats), PipelineError> {
    let read = reading
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
    let stats = writer
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))??;
    Ok((read?, stats))
}

/// What the reading side hands back at the end.
pub(super) struct ReadResult {
    pub(super) late: BTreeMap<String, u64>,
    pub(super) tables: Vec<TableState>,
    pub(super) rejects: Rejects,
    pub(super) records: u64,
    pub(super) bytes: u64,
    pub(super) filtered: BTreeMap<String, u64>,
    pub(super) peak: usize,
    /// Bytes of buffered rows moved to local disk over the budget.
    pub(super) spilled: u64,
}

pub(super) fn summarize(
    read: ReadResult,
    stats: WriterStats,
    started: Instant,
    dry_run: bool,
) -> Summary {
    let mut summary = Summary {
        records_in: read.records,
        bytes_in: read.bytes,
        filtered: read.filtered,
        rows_out: stats.rows_out,
        errors: read
            .rejects
            .counts()
            .iter()
            .map(|(r, n)| (r.as_str().to_string(), *n))
            .collect(),
        files_written: stats.files,
        bytes_written: stats.bytes,
        flushes: stats.flushes,
        objects: stats.objects,
        peak_buffered_bytes: read.peak as u64,
        spilled_bytes: read.spilled,
        peak_rss_bytes: crate::summary::peak_rss_bytes(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        dry_run,
        checkpoint: stats.checkpoint,
        hours_completed: stats.hours_completed,
        late_rows: read.late,
        ..Summary::default()
    };
    for t in &read.tables {
        for (&col, &n) in &t.mismatches {
            let key = format!("{}.{}", t.schema.name, t.schema.columns()[col].name);
            summary.type_mismatches.insert(key, n);
        }
        for (&col, &n) in &t.truncated {
            let key = format!("{}.{}", t.schema.name, t.schema.columns()[col].name);
            summary.truncated_values.insert(key, n);
        }
        if t.unmapped > 0 {
            summary
                .unmapped_rows
                .insert(t.schema.name.clone(), t.unmapped);
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;
    use crate::generate::{generate, GenerateOptions, Shape};
    use crate::pipeline::decode_ahead::CHUNK_FRAMES;
    use crate::pipeline::SystemClock;
    use std::io::Write as _;

    /// Generated change records, one per line, over one hour.
    fn sample(records: u64, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let opts = GenerateOptions {
            records,
            seed,
            shape: Shape::Kinesis,
            table: "orders".into(),
            start_ms: 1_793_520_000_000,
            hours: 1,
        };
        generate(&opts, &mut out).unwrap();
        out
    }

    async fn run(settings: &Settings, input: &std::path::Path) -> Result<Summary, PipelineError> {
        let inputs = [input.display().to_string()];
        let (clock, counters) = (SystemClock::default(), Counters::default());
        export(
            settings,
            &inputs,
            &RunOptions::default(),
            Arc::new(clock),
            Arc::new(counters),
        )
        .await
    }

    fn settings(output: &std::path::Path) -> Settings {
        let mut config = ConfigFile::default();
        config.output.url = Some(output.display().to_string());
        config.validate().expect("valid config")
    }

    /// Files are decoded on their own thread in chunks of `CHUNK_FRAMES`: bad lines on both
    /// sides of chunk boundaries are rejected with their own line numbers, every good line is one
    /// row, and the rows keep the input order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_keep_every_line_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample(2 * CHUNK_FRAMES as u64 + 500, 3);
        let mut lines: Vec<Vec<u8>> = records
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        // 1-based line numbers of bad lines: the last of the first chunk, the first of the
        // second, the last of the second, and the very last line.
        let n = lines.len() + 1;
        let bad = [CHUNK_FRAMES, CHUNK_FRAMES + 1, 2 * CHUNK_FRAMES, n];
        for &b in &bad[..3] {
            lines[b - 1] = format!("{{\"not a record\": {b}").into_bytes();
        }
        lines.push(b"{\"truncated".to_vec());
        let input = dir.path().join("in.jsonl");
        let mut f = std::fs::File::create(&input).unwrap();
        for l in &lines {
            f.write_all(l).unwrap();
            f.write_all(b"\n").unwrap();
        }
        drop(f);
        let out = dir.path().join("lake");
        let s = settings(&out);
        let summary = run(&s, &input).await.unwrap();
        assert_eq!(summary.records_in, n as u64);
        assert_eq!(summary.rows_total(), (n - bad.len()) as u64);
        assert_eq!(summary.errors_total(), bad.len() as u64);

        // The error entries name exactly the bad lines.
        let mut err_lines = Vec::new();
        for entry in walk(&out.join(&s.error_prefix)) {
            for l in std::fs::read_to_string(entry).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                err_lines.push(v["source"]["line"].as_u64().unwrap() as usize);
            }
        }
        err_lines.sort();
        assert_eq!(err_lines, bad);

        // The rows hold every good line's number once, in input order.
        let files: Vec<_> = walk(&out.join("orders"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect();
        assert_eq!(files.len(), 1);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&files[0]).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let mut got = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch
                .column_by_name("cdc_source_line")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap()
                .clone();
            got.extend(col.values().iter().map(|&v| v as usize));
        }
        let want: Vec<usize> = (1..=n).filter(|l| !bad.contains(l)).collect();
        assert_eq!(got, want);
    }

    /// A file that cannot be read to its end (a gzip stream cut short) stops the run with an
    /// error naming the file, after the decoding thread hands over what it read before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let records = sample(3000, 4);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&records).unwrap();
        let gz = gz.finish().unwrap();
        let input = dir.path().join("cut.jsonl.gz");
        std::fs::write(&input, &gz[..gz.len() / 2]).unwrap();
        let out = dir.path().join("lake");
        let err = run(&settings(&out), &input).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, PipelineError::Read { .. }) && text.contains("cut.jsonl.gz"),
            "{text}"
        );
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        crate::source::walk(dir, &mut out).unwrap();
        out
    }
}
