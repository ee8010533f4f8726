//! Error output: records that could not be decoded, as JSON lines under
//! `{error_prefix}/{reason}/YYYY/MM/DD/HH/` outside every table folder. Each entry holds the
//! reason, a message, where the record came from, and its original bytes (as text when UTF-8,
//! else base64), so that nothing is lost and everything can be replayed.

use base64::Engine;
use chrono::{DateTime, Datelike, Timelike};
use serde::Serialize;
use std::collections::BTreeMap;

use crate::decode::Reason;
use crate::flatten::Position;
use crate::seq::{SeqPos, ShardRange};

#[derive(Serialize)]
struct Entry<'a> {
    reason: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    table: Option<&'a str>,
    source: SourceRef<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

#[derive(Serialize)]
struct SourceRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subsequence_number: Option<u64>,
}

/// An entry's place in a stream (shard id, position), when it came from one.
pub type StreamKey = (String, SeqPos);

/// The content of an error file: its entries' lines, those from streams in stream order (by shard
/// id, then position), whatever order the shards were read in. A file re-created after a crash
/// then has the same bytes, and so the same content-derived name, as the first attempt.
pub fn assemble(mut entries: Vec<(Option<StreamKey>, Vec<u8>)>) -> Vec<u8> {
    if entries.iter().all(|(k, _)| k.is_some()) {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
    }
    entries.into_iter().flat_map(|(_, line)| line).collect()
}

/// Entries of one reason and hour, waiting to be written.
#[derive(Default)]
struct Group {
    entries: Vec<(Option<StreamKey>, Vec<u8>)>,
    rows: u64,
    /// Stream sources, per shard id.
    ranges: BTreeMap<String, ShardRange>,
}

/// One error file to write.
pub struct RejectFile {
    /// Object name relative to the output.
    pub path: String,
    /// The object name up to its hash: `{error_prefix}/{reason}/YYYY/MM/DD/HH/errors-`.
    pub prefix: String,
    /// The file's bytes: its entries' JSON lines, ordered by [`assemble`].
    pub data: Vec<u8>,
    /// Number of entries in the file.
    pub rows: u64,
    /// Stream sources, per shard id: the records whose entries it holds (empty for file input).
    pub ranges: BTreeMap<String, ShardRange>,
}

/// One rendered entry: the prefix of the file it belongs in and its JSON line.
pub struct RenderedEntry {
    /// Why the record could not be decoded.
    pub reason: Reason,
    /// The name of its error file up to the hash: `{error_prefix}/{reason}/YYYY/MM/DD/HH/errors-`.
    pub prefix: String,
    /// The entry as one JSON line, ending in a newline.
    pub line: Vec<u8>,
}

/// Error entries waiting to be written, grouped by reason and hour.
#[derive(Default)]
pub struct Rejects {
    prefix: String,
    pending: BTreeMap<(Reason, String), Group>,
    bytes: usize,
    counts: BTreeMap<Reason, u64>,
}

impl Rejects {
    /// No pending entries; error files go under `prefix` (`output.error_prefix`, slashes trimmed).
    pub fn new(prefix: &str) -> Self {
        Rejects {
            prefix: prefix.trim_matches('/').to_string(),
            ..Rejects::default()
        }
    }

    /// Renders one entry; `time_us` chooses the hour folder.
    pub fn render(
        &self,
        reason: Reason,
        message: &str,
        table: Option<&str>,
        pos: &Position,
        raw: &[u8],
        time_us: i64,
    ) -> RenderedEntry {
        let text = std::str::from_utf8(raw).ok();
        let entry = Entry {
            reason: reason.as_str(),
            message,
            table,
            source: SourceRef {
                file: pos.file,
                line: pos.line,
                offset: pos.offset,
                shard: pos.shard,
                sequence_number: pos.sequence_number,
                subsequence_number: pos.subsequence,
            },
            data: text,
            data_base64: text
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(raw)),
        };
        let t = DateTime::from_timestamp_micros(time_us).unwrap_or_default();
        let prefix = format!(
            "{}/{}/{:04}/{:02}/{:02}/{:02}/errors-",
            self.prefix,
            reason.as_str(),
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        );
        let mut line = serde_json::to_vec(&entry).expect("entries serialize");
        line.push(b'\n');
        RenderedEntry {
            reason,
            prefix,
            line,
        }
    }

    /// Adds one rendered entry; `source` is its stream position (shard id, sequence number read
    /// before it, its own position).
    pub fn push(&mut self, entry: RenderedEntry, source: Option<(&str, Option<&str>, SeqPos)>) {
        self.count(entry.reason);
        let group = self
            .pending
            .entry((entry.reason, entry.prefix))
            .or_default();
        group.rows += 1;
        self.bytes += entry.line.len();
        let key = source
            .as_ref()
            .map(|(shard, _, at)| (shard.to_string(), at.clone()));
        group.entries.push((key, entry.line));
        if let Some((shard, prev, at)) = source {
            match group.ranges.get_mut(shard) {
                Some(r) => r.last = at,
                None => {
                    group.ranges.insert(
                        shard.to_string(),
                        ShardRange {
                            after: prev.map(str::to_string),
                            first: at.clone(),
                            last: at,
                        },
                    );
                }
            }
        }
    }

    /// Counts an entry written by other means (a re-created batch).
    pub fn count(&mut self, reason: Reason) {
        *self.counts.entry(reason).or_default() += 1;
    }

    /// Bytes waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Entries so far, by reason.
    pub fn counts(&self) -> &BTreeMap<Reason, u64> {
        &self.counts
    }

    /// The objects to write, named by their content's hash.
    pub fn take(&mut self) -> Vec<RejectFile> {
        self.bytes = 0;
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((_, prefix), g)| {
                let data = assemble(g.entries);
                RejectFile {
                    path: format!("{prefix}{}.jsonl", crate::store::short_hash(&data, 8)),
                    prefix,
                    data,
                    rows: g.rows,
                    ranges: g.ranges,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_original_bytes_and_position() {
        let mut r = Rejects::new("_errors");
        let pos = Position {
            file: Some("in.jsonl"),
            line: Some(7),
            offset: Some(120),
            ..Position::default()
        };
        for (reason, message, table, raw) in [
            (Reason::InvalidJson, "EOF", None, &b"{\"a\":"[..]),
            (Reason::InvalidUtf8, "bad", Some("T"), &b"\xff\x00"[..]),
        ] {
            let entry = r.render(reason, message, table, &pos, raw, 0);
            r.push(entry, None);
        }
        assert_eq!(r.counts()[&Reason::InvalidJson], 1);
        let files = r.take();
        assert_eq!(files.len(), 2);
        assert!(files[0]
            .path
            .starts_with("_errors/invalid_json/1970/01/01/00/errors-"));
        assert!(files[0].path.starts_with(&files[0].prefix));
        let v: serde_json::Value = serde_json::from_slice(&files[0].data).unwrap();
        assert_eq!(v["data"], "{\"a\":");
        assert_eq!(v["source"]["line"], 7);
        let v: serde_json::Value = serde_json::from_slice(&files[1].data).unwrap();
        assert_eq!(v["data_base64"], "/wA=");
        assert_eq!(r.pending_bytes(), 0);
    }
}
