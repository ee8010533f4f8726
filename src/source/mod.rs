//! Source stage for files: local paths, folders and globs, and `s3://` objects, prefixes and
//! globs, each opened as a byte stream with gzip detected by its magic bytes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path as FsPath, PathBuf};

use flate2::read::MultiGzDecoder;
use object_store::path::Path;
use object_store::ObjectStoreExt;

use crate::store::{self, Location, S3Options, StoreError};

pub mod export;
pub mod export_task;

/// Read buffer for input files.
const READ_BUFFER: usize = 256 * 1024;

/// Why the inputs could not be expanded into files, or an input file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An input (path, folder, prefix or glob) that names no file at all.
    #[error("input `{input}` matches no file")]
    NoMatch {
        /// The input as given.
        input: String,
    },
    /// An input's glob pattern is malformed (a configuration error).
    #[error("bad glob `{input}`: {source}")]
    Glob {
        /// The input as given.
        input: String,
        /// What the glob parser found wrong.
        source: glob::PatternError,
    },
    /// A local folder could not be walked, or a local file could not be opened, or the first
    /// bytes of an input file could not be read.
    #[error("reading {name}: {source}")]
    Io {
        /// The folder as given, or the file's name (its local path or object URL).
        name: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An export's manifests are missing or malformed, or name a data file outside the export.
    #[error("export {export}: {problem}")]
    Export {
        /// The export's folder, as given.
        export: String,
        /// What is wrong.
        problem: String,
    },
    /// A data file's bytes do not have the MD5 its export's manifest gives.
    #[error("export data file {file}: its MD5 is {actual}, the manifest says {expected}: the file is damaged or not the one exported; nothing of it was read")]
    Checksum {
        /// The data file.
        file: String,
        /// The manifest's checksum (base64).
        expected: String,
        /// The file's (base64).
        actual: String,
    },
    /// A data file holds another number of lines than its export's manifest counts.
    #[error("export data file {file}: {actual} lines, the manifest says {expected} items")]
    ItemCount {
        /// The data file.
        file: String,
        /// The manifest's item count.
        expected: u64,
        /// Lines read.
        actual: u64,
    },
    /// Point-in-time recovery is off for a table to export (exports need it).
    #[error("table {table} has point-in-time recovery (PITR) turned off, and DynamoDB exports need it: turn it on (aws dynamodb update-continuous-backups --table-name {table} --point-in-time-recovery-specification PointInTimeRecoveryEnabled=true) and run bootstrap again, or load an export you already have with --from-export")]
    PitrOff {
        /// The table.
        table: String,
    },
    /// Starting or following a table's export failed.
    #[error("table {table}: {problem}")]
    TableExport {
        /// The table.
        table: String,
        /// The call that failed and why, or how the export failed.
        problem: String,
    },
    /// An input is not a valid location (an unknown scheme, a malformed S3 URL), or opening an
    /// S3 bucket, listing it or reading an object failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SourceError {
    /// A wrong input given by the user (a malformed URL or glob: exit code 3).
    pub fn is_configuration(&self) -> bool {
        match self {
            SourceError::Glob { .. } | SourceError::PitrOff { .. } => true,
            SourceError::Store(e) => e.is_configuration(),
            SourceError::NoMatch { .. }
            | SourceError::Io { .. }
            | SourceError::Export { .. }
            | SourceError::TableExport { .. }
            | SourceError::Checksum { .. }
            | SourceError::ItemCount { .. } => false,
        }
    }
}

/// One input file.
#[derive(Debug, Clone)]
pub enum InputFile {
    /// A local file, by its path.
    Local(PathBuf),
    /// An S3 object.
    Object {
        /// The object's bucket (opened as `s3://bucket`, with an empty prefix).
        location: Location,
        /// The object's full key in the bucket.
        path: Path,
    },
}

impl InputFile {
    /// The name positions and messages use: the local path, or the object's URL.
    pub fn name(&self) -> String {
        match self {
            InputFile::Local(p) => p.display().to_string(),
            InputFile::Object { location, path } => {
                let bucket_url = location
                    .url
                    .split('/')
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("/");
                format!("{bucket_url}/{path}")
            }
        }
    }

    /// Opens the file as a stream of decompressed bytes.
    pub async fn open(&self) -> Result<Box<dyn BufRead + Send>, SourceError> {
        let name = self.name();
        let raw: Box<dyn Read + Send> = match self {
            InputFile::Local(p) => {
                Box::new(std::fs::File::open(p).map_err(|source| SourceError::Io {
                    name: name.clone(),
                    source,
                })?)
            }
            InputFile::Object { location, path } => {
                Box::new(spool(location, path, &name, |_| {}).await?)
            }
        };
        decompress(raw, &name)
    }
}

/// Copies an object into an anonymous local file (the system removes it once closed, so a crash
/// leaves nothing behind) chunk by chunk, handing every chunk to `each` on the way, and returns
/// the file at its start: an input object is never held whole in memory, whatever its size.
pub(crate) async fn spool(
    location: &Location,
    path: &Path,
    name: &str,
    mut each: impl FnMut(&[u8]),
) -> Result<std::fs::File, SourceError> {
    use futures::StreamExt as _;
    use std::io::{Seek as _, Write as _};
    let io = |source| SourceError::Io {
        name: name.to_string(),
        source,
    };
    let store_err = |source| StoreError::Io {
        op: "reading",
        url: name.to_string(),
        source,
    };
    let mut file = tempfile::tempfile().map_err(io)?;
    let mut chunks = location
        .store
        .get(path)
        .await
        .map_err(store_err)?
        .into_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(store_err)?;
        each(&chunk);
        file.write_all(&chunk).map_err(io)?;
    }
    file.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    Ok(file)
}

/// A file's bytes, decompressed when they start with gzip's magic bytes.
fn decompress(
    raw: Box<dyn Read + Send>,
    name: &str,
) -> Result<Box<dyn BufRead + Send>, SourceError> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, raw);
    let head = reader.fill_buf().map_err(|source| SourceError::Io {
        name: name.to_string(),
        source,
    })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(reader),
        )))
    } else {
        Ok(Box::new(reader))
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Files of a local folder, recursively, sorted; hidden files (`.x`) and folders are skipped.
pub(crate) fn walk(dir: &FsPath, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Expands inputs into files, in a deterministic order (each input's matches sorted).
pub async fn resolve(inputs: &[String], s3: &S3Options) -> Result<Vec<InputFile>, SourceError> {
    let mut files = Vec::new();
    for input in inputs {
        let before = files.len();
        match store::parse_url(input)? {
            store::Url::S3 { .. } => resolve_s3(input, s3, &mut files).await?,
            store::Url::Local(local) => resolve_local(input, local, &mut files)?,
        }
        if files.len() == before {
            return Err(SourceError::NoMatch {
                input: input.clone(),
            });
        }
    }
    Ok(files)
}

/// Expands a local input (a path, a folder or a glob) into files.
fn resolve_local(input: &str, local: &str, files: &mut Vec<InputFile>) -> Result<(), SourceError> {
    if has_glob(local) {
        let paths = glob::glob(local).map_err(|source| SourceError::Glob {
            input: input.to_string(),
            source,
        })?;
        let mut matched: Vec<PathBuf> = paths
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect();
        matched.sort();
        files.extend(matched.into_iter().map(InputFile::Local));
    } else {
        let p = PathBuf::from(local);
        if p.is_dir() {
            let mut found = Vec::new();
            walk(&p, &mut found).map_err(|source| SourceError::Io {
                name: input.to_string(),
                source,
            })?;
            files.extend(found.into_iter().map(InputFile::Local));
        } else if p.is_file() {
            files.push(InputFile::Local(p));
        }
    }
    Ok(())
}

async fn resolve_s3(
    input: &str,
    s3: &S3Options,
    files: &mut Vec<InputFile>,
) -> Result<(), SourceError> {
    let rest = &input["s3://".len()..];
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let location = store::open(&format!("s3://{bucket}"), s3)?;
    let push = |files: &mut Vec<InputFile>, path: Path| {
        files.push(InputFile::Object {
            location: location.clone(),
            path,
        })
    };
    if has_glob(key) {
        let cut = key.find(['*', '?', '[']).unwrap_or(key.len());
        let dir = key[..cut].rsplit_once('/').map_or("", |(d, _)| d);
        let pattern = glob::Pattern::new(key).map_err(|source| SourceError::Glob {
            input: input.into(),
            source,
        })?;
        for (path, _) in location.list(dir).await? {
            if pattern.matches(path.as_ref()) {
                push(files, path);
            }
        }
        return Ok(());
    }
    let key = key.trim_end_matches('/');
    if !key.is_empty() {
        let path = Path::from(key);
        if location.store.head(&path).await.is_ok() {
            push(files, path);
            return Ok(());
        }
    }
    for (path, _) in location.list(key).await? {
        let hidden = path
            .filename()
            .is_some_and(|f| f.starts_with('.') || f.starts_with('_'));
        if !hidden {
            push(files, path);
        }
    }
    Ok(())
}
