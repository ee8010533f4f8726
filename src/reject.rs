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
}

/// Error entries waiting to be written, grouped by reason and hour.
#[derive(Default)]
pub struct Rejects {
    prefix: String,
    pending: BTreeMap<(Reason, String), Vec<u8>>,
    bytes: usize,
    counts: BTreeMap<Reason, u64>,
}

impl Rejects {
    pub fn new(prefix: &str) -> Self {
        Rejects {
            prefix: prefix.trim_matches('/').to_string(),
            ..Rejects::default()
        }
    }

    /// Adds one entry; `time_us` chooses the hour folder.
    pub fn add(
        &mut self,
        reason: Reason,
        message: &str,
        table: Option<&str>,
        pos: &Position,
        raw: &[u8],
        time_us: i64,
    ) {
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
            },
            data: text,
            data_base64: text
                .is_none()
                .then(|| base64::engine::general_purpose::STANDARD.encode(raw)),
        };
        let t = DateTime::from_timestamp_micros(time_us).unwrap_or_default();
        let hour = format!(
            "{:04}/{:02}/{:02}/{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        );
        let buf = self.pending.entry((reason, hour)).or_default();
        let before = buf.len();
        serde_json::to_writer(&mut *buf, &entry).expect("entries serialize");
        buf.push(b'\n');
        self.bytes += buf.len() - before;
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

    /// The objects to write (relative name, JSON lines), named by their content's hash.
    pub fn take(&mut self) -> Vec<(String, Vec<u8>)> {
        self.bytes = 0;
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((reason, hour), data)| {
                let hash = crate::store::short_hash(&data, 8);
                (
                    format!(
                        "{}/{}/{hour}/errors-{hash}.jsonl",
                        self.prefix,
                        reason.as_str()
                    ),
                    data,
                )
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
        r.add(Reason::InvalidJson, "EOF", None, &pos, b"{\"a\":", 0);
        r.add(Reason::InvalidUtf8, "bad", Some("T"), &pos, b"\xff\x00", 0);
        assert_eq!(r.counts()[&Reason::InvalidJson], 1);
        let files = r.take();
        assert_eq!(files.len(), 2);
        assert!(files[0]
            .0
            .starts_with("_errors/invalid_json/1970/01/01/00/errors-"));
        let v: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
        assert_eq!(v["data"], "{\"a\":");
        assert_eq!(v["source"]["line"], 7);
        let v: serde_json::Value = serde_json::from_slice(&files[1].1).unwrap();
        assert_eq!(v["data_base64"], "/wA=");
        assert_eq!(r.pending_bytes(), 0);
    }
}
