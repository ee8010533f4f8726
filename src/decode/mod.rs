//! Decode stage: input bytes to change records.
//!
//! [`frame`] splits a decompressed input stream into one byte slice per record (JSON lines,
//! records concatenated with no separator as Firehose archives them, or a Lambda event
//! `{"Records":[...]}`), remembering where each came from. [`record`] parses one record's bytes
//! into a [`ChangeRecord`] whose attribute values ([`attr`]) borrow from those bytes.
//! A record that cannot be decoded is data, not an `Err` that stops the run: it carries a
//! [`Reason`] to the error output.

pub mod attr;
pub mod export;
pub mod frame;
pub mod record;
pub mod tape;
pub mod view;

pub use attr::{AttrValue, Item};
pub use export::{parse_export_line, ExportFormat, ExportMeta, ExportType};
pub use frame::{Frame, Framer};
pub use record::{parse_record, ChangeRecord, Operation};
pub use tape::{Head, Tape, TapeMap};
pub use view::{AttrView, MapView, RecordView, Shape};

/// Why a record went to the error output. A closed set: it names folders under the error prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// Not JSON, or JSON cut short.
    InvalidJson,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// JSON, but not a change record (missing or wrong fields, a malformed attribute value).
    InvalidRecord,
    /// An attribute value with a type tag DynamoDB does not have.
    UnknownType,
    /// Nesting deeper than the JSON parser's limit (128 levels; DynamoDB allows 32).
    TooDeep,
    /// No usable `ApproximateCreationDateTime`.
    NoEventTime,
    /// The record names no table and no default table is configured.
    NoTable,
    /// A text value over the string limit, in a column whose policy is `reject`.
    StringTooLong,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 8] = [
        Reason::InvalidJson,
        Reason::InvalidUtf8,
        Reason::InvalidRecord,
        Reason::UnknownType,
        Reason::TooDeep,
        Reason::NoEventTime,
        Reason::NoTable,
        Reason::StringTooLong,
    ];

    /// The reason's snake_case name, used as its folder under the error prefix and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidJson => "invalid_json",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidRecord => "invalid_record",
            Reason::UnknownType => "unknown_type",
            Reason::TooDeep => "too_deep",
            Reason::NoEventTime => "no_event_time",
            Reason::NoTable => "no_table",
            Reason::StringTooLong => "string_too_long",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record that could not be decoded, with the reason and a message for the error output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct DecodeError {
    /// Why the record was rejected; chooses its folder in the error output.
    pub reason: Reason,
    /// A human-readable description of the problem, written with the record.
    pub message: String,
}
