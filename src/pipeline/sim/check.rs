//! The simulation's final check: the lake compared with the stream, record by record.
//!
//! Every good record is exactly one row, with its values, in the folder its time (event or
//! arrival) and its values give; every bad record is exactly one error entry with its reason and
//! its original bytes, in its arrival hour; nothing else is in the lake. Every data file is in
//! exactly one COPY manifest, with its length; every file's columns are a prefix of the remembered
//! schema; error files are named by their content; the final checkpoint has nothing pending and
//! every closed shard finished; every hour marker lists every on-time file of its hour.

use std::collections::{BTreeMap, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type};
use arrow_array::Array;
use arrow_schema::DataType;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::model::{Expected, Outcome};
use super::{History, Layout, Start, CHECKPOINT};
use crate::checkpoint::Checkpoint;
use crate::config::PartitionTime;
use crate::schema::{SchemaFile, TableSchema};

/// What the lake held.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Report {
    pub(super) rows: u64,
    pub(super) errors: u64,
    pub(super) files: u64,
    pub(super) late_files: u64,
    pub(super) markers: u64,
    pub(super) staged: u64,
    /// Staged files of hours not complete yet (compaction).
    pub(super) staged_files: u64,
}

/// Where a user record is in the stream: shard, sequence number, KPL index.
pub(super) type Key = (String, String, Option<u64>);

/// A row as read back from a data file.
#[derive(Debug)]
pub(super) struct FoundRow {
    pub(super) file: String,
    pub(super) key: Key,
    pub(super) values: BTreeMap<String, Option<String>>,
}

/// An error entry as read back.
#[derive(Debug)]
pub(super) struct FoundError {
    pub(super) file: String,
    pub(super) key: Key,
    pub(super) reason: String,
    pub(super) data: Vec<u8>,
}

/// Every object of the lake: path and content.
pub(super) fn objects(rt: &tokio::runtime::Runtime, lake: &InMemory) -> BTreeMap<String, Bytes> {
    rt.block_on(async {
        let metas: Vec<_> = lake.list(None).try_collect().await.expect("listing");
        let mut out = BTreeMap::new();
        for m in metas {
            let body = lake.get(&m.location).await.expect("reading");
            let bytes = body.bytes().await.expect("reading");
            out.insert(m.location.to_string(), bytes);
        }
        out
    })
}

/// The lake's objects other than the checkpoint (whose owner differs between runs), with sizes.
pub(super) fn listing(h: &History) -> Vec<(String, usize)> {
    objects(&h.rt, &h.lake)
        .into_iter()
        .filter(|(p, _)| p != CHECKPOINT)
        .map(|(p, b)| (p, b.len()))
        .collect()
}

fn text(col: &dyn Array, i: usize) -> Option<String> {
    if col.is_null(i) {
        return None;
    }
    Some(match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().value(i).to_string(),
        DataType::Int64 => col.as_primitive::<Int64Type>().value(i).to_string(),
        DataType::Decimal128(..) => col.as_primitive::<Decimal128Type>().value_as_string(i),
        other => panic!("no text for {other}"),
    })
}

/// The rows of a Parquet file, with the values of the named columns (as text), and the file's
/// column names.
pub(super) fn read_rows(
    file: &str,
    bytes: &Bytes,
    columns: &[&str],
) -> (Vec<FoundRow>, Vec<String>) {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        .unwrap_or_else(|e| panic!("{file} is not Parquet: {e}"));
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    for batch in reader.build().expect("a reader") {
        let batch = batch.unwrap_or_else(|e| panic!("{file}: {e}"));
        let col = |name: &str| batch.column_by_name(name).cloned();
        let (shard, seq, sub) = (
            col("cdc_shard_id").expect("a shard column"),
            col("cdc_sequence_number").expect("a sequence column"),
            col("cdc_subsequence_number").expect("a subsequence column"),
        );
        for i in 0..batch.num_rows() {
            let key = (
                text(&shard, i).expect("a shard id"),
                text(&seq, i).expect("a sequence number"),
                text(&sub, i).map(|s| s.parse().expect("a number")),
            );
            let values = columns
                .iter()
                .map(|c| (c.to_string(), col(c).and_then(|a| text(&a, i))))
                .collect();
            rows.push(FoundRow {
                file: file.to_string(),
                key,
                values,
            });
        }
    }
    (rows, names)
}

/// The entries of an error file.
pub(super) fn read_errors(file: &str, bytes: &Bytes) -> Vec<FoundError> {
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_slice(line).unwrap_or_else(|e| panic!("{file}: {e}"));
        let src = &v["source"];
        let data = match (v["data"].as_str(), v["data_base64"].as_str()) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64"),
            _ => panic!("{file}: an entry without its data"),
        };
        out.push(FoundError {
            file: file.to_string(),
            key: (
                src["shard"].as_str().expect("a shard").to_string(),
                src["sequence_number"]
                    .as_str()
                    .expect("a sequence number")
                    .to_string(),
                src["subsequence_number"].as_u64(),
            ),
            reason: v["reason"].as_str().expect("a reason").to_string(),
            data,
        });
    }
    out
}

fn hour_folder(ms: i64) -> String {
    let t = DateTime::from_timestamp_millis(ms).expect("a time");
    format!(
        "{:04}/{:02}/{:02}/{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    )
}

/// The folder a good record's row belongs in, computed here rather than by the template code.
fn expected_folder(h: &History, e: &Expected, table: &str, color: &str, event_ms: i64) -> String {
    let ms = match h.settings.partition_time {
        PartitionTime::Event => event_ms,
        PartitionTime::Processing => e.arrival_ms,
    };
    let hour = hour_folder(ms);
    match h.layout {
        Layout::Hourly => format!("{table}/{hour}"),
        Layout::Daily => format!("{table}/{}", &hour[..10]),
        Layout::Color => format!("{table}/color={color}"),
    }
}

/// Compares the lake of a finished history with its stream.
pub(super) fn check(h: &History) -> Result<Report, String> {
    let objects = objects(&h.rt, &h.lake);
    let mut report = Report::default();
    let mut rows: Vec<FoundRow> = Vec::new();
    let mut errors: Vec<FoundError> = Vec::new();
    let mut columns_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut listed: HashMap<String, u32> = HashMap::new();
    let mut markers: Vec<(String, serde_json::Value)> = Vec::new();
    // Staged files (for compaction) and the folders of their hours.
    let mut staged: Vec<(String, String)> = Vec::new();
    let mut schemas: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut checkpoint: Option<Checkpoint> = None;
    let wanted = ["cdc_event_id", "id", "qty", "color", "note"];
    for (path, bytes) in &objects {
        if path == CHECKPOINT {
            checkpoint = Some(serde_json::from_slice(bytes).map_err(|e| e.to_string())?);
        } else if let Some(rest) = path.strip_prefix("_ddb_lake/schemas/") {
            let file: SchemaFile =
                toml::from_str(std::str::from_utf8(bytes).expect("text")).expect("a schema");
            let schema = TableSchema::from_file(&file).map_err(|e| e.to_string())?;
            let names = schema.columns().iter().map(|c| c.name.clone()).collect();
            schemas.insert(rest.trim_end_matches(".toml").to_string(), names);
        } else if path.starts_with("_ddb_lake/manifests/") {
            let m: serde_json::Value = serde_json::from_slice(bytes).expect("a manifest");
            for e in m["entries"].as_array().expect("entries") {
                let url = e["url"].as_str().expect("a url");
                let rel = url
                    .strip_prefix("memory://lake/")
                    .ok_or_else(|| format!("manifest {path}: {url} is outside the lake"))?;
                let len = e["meta"]["content_length"].as_u64().expect("a length");
                match objects.get(rel) {
                    Some(b) if b.len() as u64 == len => {}
                    other => {
                        return Err(format!(
                            "manifest {path} lists {rel} with length {len}; the lake has {:?}",
                            other.map(Bytes::len)
                        ))
                    }
                }
                *listed.entry(rel.to_string()).or_default() += 1;
            }
        } else if let Some(rest) = path.strip_prefix("_ddb_lake/compacting/") {
            // An hour's staged file, waiting for its hour: its rows count as its hour's.
            let mut parts = rest.split('/');
            let (table, hour, name) = (
                parts.next().unwrap_or_default(),
                parts
                    .next()
                    .and_then(|h| h.parse::<i64>().ok())
                    .ok_or("an hour")?,
                parts.next().unwrap_or_default(),
            );
            if h.settings.compact.is_none() {
                return Err(format!("{path}: staged without compaction"));
            }
            let folder = format!("{table}/{}", hour_folder(hour * 3_600_000));
            staged.push((path.clone(), folder.clone()));
            let (found, _) = read_rows(&format!("{folder}/{name}"), bytes, &wanted);
            rows.extend(found);
            report.staged_files += 1;
        } else if path.starts_with("_ddb_lake/staging/") {
            // A staged copy whose writer crashed before deleting it (expired by a lifecycle
            // rule; outside every table folder).
            report.staged += 1;
        } else if path.starts_with("_ddb_lake/hours/") {
            if path.ends_with("/_COMPLETE.json") {
                let m: serde_json::Value = serde_json::from_slice(bytes).expect("a marker");
                markers.push((path.clone(), m));
            }
        } else if let Some(rest) = path.strip_prefix("_errors/") {
            // {reason}/YYYY/MM/DD/HH/errors-{hash of the content}.jsonl
            let name = rest.rsplit('/').next().unwrap_or_default();
            let hash = crate::store::short_hash(bytes, 8);
            if name != format!("errors-{hash}.jsonl") {
                return Err(format!(
                    "error file {path} is not named by its content ({hash}): a re-created error file differs from the first"
                ));
            }
            errors.extend(read_errors(path, bytes));
        } else if path.ends_with(".parquet") && !path.starts_with('_') {
            let (found, names) = read_rows(path, bytes, &wanted);
            if path.contains("-late-") {
                report.late_files += 1;
            }
            columns_of.insert(path.clone(), names);
            rows.extend(found);
            report.files += 1;
        } else {
            return Err(format!("unexpected object {path}"));
        }
    }
    report.rows = rows.len() as u64;
    report.errors = errors.len() as u64;

    // Staged files are in no manifest, and with compaction the table folders hold no file of
    // an hour that was not compacted (late files aside).
    for (file, _) in &staged {
        if listed.contains_key(file) {
            return Err(format!("staged file {file} is in a manifest"));
        }
    }
    if h.settings.compact.is_some() {
        for file in columns_of.keys() {
            let name = file.rsplit('/').next().unwrap_or_default();
            let table = file.split('/').next().unwrap_or_default();
            if !name.starts_with(&format!("{table}-compacted-")) && !name.contains("-late-") {
                return Err(format!("{file}: a file neither compacted nor late"));
            }
        }
    }

    // Every data file in exactly one manifest; its columns a prefix of its table's schema.
    for (file, names) in &columns_of {
        match listed.get(file) {
            Some(1) => {}
            n => {
                return Err(format!(
                    "data file {file} is in {} manifests",
                    n.unwrap_or(&0)
                ))
            }
        }
        let table = file.split('/').next().unwrap_or_default();
        let schema = schemas
            .get(table)
            .ok_or_else(|| format!("{file}: no remembered schema for {table}"))?;
        if !schema.starts_with(names) {
            return Err(format!(
                "{file}: columns {names:?} are not a prefix of the remembered {schema:?}"
            ));
        }
    }

    compare(h, rows, errors)?;

    // The final checkpoint: nothing pending, every closed shard finished, every open one at its end.
    let cp = checkpoint.ok_or("no checkpoint")?;
    if !cp.pending.is_empty() {
        return Err(format!("batches still pending: {:?}", cp.pending));
    }
    for s in &h.stream.shards {
        let c = cp.shards.get(&s.shard.id).cloned().unwrap_or_default();
        let last = s
            .records
            .iter()
            .rfind(|r| is_read(h, &s.shard.id, r.arrival_ms))
            .map(|r| r.sequence_number.clone());
        if s.closed && !c.finished {
            return Err(format!(
                "closed shard {} is not finished: {c:?}",
                s.shard.id
            ));
        }
        if !s.closed && c.sequence_number != last {
            return Err(format!(
                "open shard {} checkpointed at {:?}, its last record is {last:?}",
                s.shard.id, c.sequence_number
            ));
        }
    }

    // Every version written of a marker or an hour manifest is the same: a marker once out is
    // never contradicted by a later one.
    let mut versions: BTreeMap<String, Bytes> = BTreeMap::new();
    for (path, body) in h.markers.lock().expect("not poisoned").iter() {
        if let Some(first) = versions.get(path) {
            if first != body {
                return Err(format!(
                    "{path} was written twice with different content:\n{}\n{}",
                    String::from_utf8_lossy(first),
                    String::from_utf8_lossy(body)
                ));
            }
        } else {
            versions.insert(path.clone(), body.clone());
        }
    }
    // Hour markers list every on-time file of their hour, no late one, and only files that exist.
    for (path, m) in &markers {
        report.markers += 1;
        let manifest = m["manifest"].as_str().expect("a manifest url");
        let rel = manifest
            .strip_prefix("memory://lake/")
            .expect("in the lake");
        let body = objects
            .get(rel)
            .ok_or_else(|| format!("{path}: its manifest {rel} is missing"))?;
        let listed: Vec<String> = serde_json::from_slice::<serde_json::Value>(body)
            .expect("a manifest")["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                let url = e["url"].as_str().expect("a url");
                url.strip_prefix("memory://lake/")
                    .unwrap_or(url)
                    .to_string()
            })
            .collect();
        let table = m["table"].as_str().expect("a table");
        let hour = m["hour"].as_str().expect("an hour");
        let folder = format!(
            "{table}/{}/{}/{}/{}/",
            &hour[0..4],
            &hour[5..7],
            &hour[8..10],
            &hour[11..13]
        );
        for f in &listed {
            if !objects.contains_key(f) {
                return Err(format!("{path} lists {f}, which does not exist"));
            }
            if f.contains("-late-") {
                return Err(format!("{path} lists {f}, a late file"));
            }
        }
        if let Some((file, _)) = staged.iter().find(|(_, f)| format!("{f}/") == folder) {
            return Err(format!(
                "{file} is still staged, though its hour is complete ({path})"
            ));
        }
        for f in columns_of.keys() {
            if f.starts_with(&folder) && !f.contains("-late-") && !listed.contains(f) {
                return Err(format!(
                    "{path} does not list {f}, an on-time file of its hour"
                ));
            }
        }
    }
    Ok(report)
}

/// Whether a record is read at all: with a start at a time, the first shards' records that
/// arrived before it are not.
fn is_read(h: &History, shard: &str, arrival_ms: i64) -> bool {
    match h.start {
        Start::AtTimestamp(t) => arrival_ms >= t || !h.stream.is_root(shard),
        _ => true,
    }
}

/// Whether the history's filter keeps a record out of the lake (blue rows, under
/// [`super::NOT_BLUE`]).
fn is_filtered(h: &History, e: &Expected) -> bool {
    !h.settings.filter.is_empty() && matches!(e.outcome, Outcome::Row { color: "blue", .. })
}

/// Each expected record exactly once, in the form and place it belongs; filtered ones not at
/// all.
fn compare(h: &History, rows: Vec<FoundRow>, errors: Vec<FoundError>) -> Result<(), String> {
    let expected: HashMap<Key, &Expected> = h
        .stream
        .expected
        .iter()
        .filter(|e| is_read(h, &e.shard, e.arrival_ms) && !is_filtered(h, e))
        .map(|e| ((e.shard.clone(), e.seq.clone(), e.sub), e))
        .collect();
    let mut seen: HashMap<Key, String> = HashMap::new();
    let mut once = |key: &Key, file: &str| -> Result<(), String> {
        match seen.insert(key.clone(), file.to_string()) {
            Some(first) => Err(format!("{key:?} is in the lake twice: {first} and {file}")),
            None => Ok(()),
        }
    };
    for r in &rows {
        once(&r.key, &r.file)?;
        let e = expected.get(&r.key).ok_or_else(|| {
            format!(
                "{}: a row for {:?}, which the stream never held",
                r.file, r.key
            )
        })?;
        let Outcome::Row {
            table,
            event_id,
            key,
            qty,
            color,
            note,
            event_ms,
        } = &e.outcome
        else {
            return Err(format!(
                "{}: {:?} should be an error entry, not a row",
                r.file, r.key
            ));
        };
        let v = |c: &str| r.values.get(c).cloned().flatten();
        let qty_found = v("qty").and_then(|q| q.parse::<f64>().ok());
        if v("cdc_event_id").as_deref() != Some(event_id)
            || v("id").as_deref() != Some(key)
            || qty_found != Some(*qty as f64)
            || v("color").as_deref() != Some(color)
            || v("note") != *note
        {
            return Err(format!(
                "{}: row {:?} has values {:?}, expected {:?}",
                r.file, r.key, r.values, e.outcome
            ));
        }
        let folder = expected_folder(h, e, table, color, *event_ms);
        let (dir, name) = r.file.rsplit_once('/').unwrap_or_default();
        if dir != folder || !name.starts_with(&format!("{table}-")) {
            return Err(format!(
                "{}: row {:?} belongs in {folder}/{table}-*",
                r.file, r.key
            ));
        }
    }
    for x in &errors {
        once(&x.key, &x.file)?;
        let e = expected.get(&x.key).ok_or_else(|| {
            format!(
                "{}: an error entry for {:?}, which the stream never held",
                x.file, x.key
            )
        })?;
        match &e.outcome {
            Outcome::Error { reason, data } if *reason == x.reason && *data == x.data => {}
            other => {
                return Err(format!(
                    "{}: error entry {:?} ({}, {:?}) should be {other:?}",
                    x.file,
                    x.key,
                    x.reason,
                    String::from_utf8_lossy(&x.data)
                ))
            }
        }
        let folder = format!("_errors/{}/{}", x.reason, hour_folder(e.arrival_ms));
        if !x.file.starts_with(&format!("{folder}/errors-")) {
            return Err(format!("{}: entry {:?} belongs in {folder}", x.file, x.key));
        }
    }
    let missing: Vec<&Key> = expected.keys().filter(|k| !seen.contains_key(*k)).collect();
    if !missing.is_empty() {
        let mut m = missing.clone();
        m.sort();
        return Err(format!(
            "{} of {} records are missing, e.g. {:?}",
            missing.len(),
            expected.len(),
            &m[..m.len().min(5)]
        ));
    }
    Ok(())
}
