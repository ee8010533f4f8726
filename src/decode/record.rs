//! One change record (Kinesis Data Streams for DynamoDB, or DynamoDB Streams) parsed from its
//! JSON bytes into a [`ChangeRecord`] that borrows from those bytes.

use std::borrow::Cow;

use serde::Deserialize;

use super::attr::{Item, Str, UNKNOWN_TAG};
use super::{DecodeError, Reason};

/// INSERT, MODIFY or REMOVE, or SNAPSHOT for an item of a full table export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A new item was written (`INSERT`).
    Insert,
    /// An existing item was changed (`MODIFY`).
    Modify,
    /// An item was deleted (`REMOVE`), by a caller or by TTL.
    Remove,
    /// An item as a full table export holds it at the export time (`SNAPSHOT`): not a change,
    /// the item's state then.
    Snapshot,
}

impl Operation {
    /// The `eventName` text, as written to the `cdc_operation` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Modify => "MODIFY",
            Operation::Remove => "REMOVE",
            Operation::Snapshot => "SNAPSHOT",
        }
    }
}

/// A decoded change record. Attribute values borrow from the input bytes.
#[derive(Debug)]
pub struct ChangeRecord<'a> {
    /// What the change did, from `eventName`.
    pub operation: Operation,
    /// The record's `eventID`; `None` when the record has none.
    pub event_id: Option<Cow<'a, str>>,
    /// The DynamoDB table, from `tableName` or the stream ARN; `None` when the shape has neither.
    pub table: Option<Cow<'a, str>>,
    /// Event time in microseconds since the epoch (UTC).
    pub event_time_us: i64,
    /// True for deletes made by DynamoDB's TTL process.
    pub ttl_delete: bool,
    /// DynamoDB Streams sequence number, when the record carries one.
    pub sequence_number: Option<Cow<'a, str>>,
    /// The item's primary key attributes (`dynamodb.Keys`); always present.
    pub keys: Item<'a>,
    /// The item after the change (`dynamodb.NewImage`); `None` when the record has none,
    /// as for REMOVE or a stream that does not carry new images.
    pub new_image: Option<Item<'a>>,
    /// The item before the change (`dynamodb.OldImage`); `None` when the record has none,
    /// as for INSERT or a stream that does not carry old images.
    pub old_image: Option<Item<'a>>,
}

#[derive(Deserialize)]
struct RawRecord<'a> {
    #[serde(rename = "eventName", borrow)]
    event_name: Option<Str<'a>>,
    #[serde(rename = "eventID", borrow)]
    event_id: Option<Str<'a>>,
    #[serde(rename = "tableName", borrow)]
    table_name: Option<Str<'a>>,
    #[serde(rename = "eventSourceARN", borrow)]
    event_source_arn: Option<Str<'a>>,
    #[serde(rename = "userIdentity", borrow)]
    user_identity: Option<UserIdentity<'a>>,
    #[serde(borrow)]
    dynamodb: Option<RawStreamRecord<'a>>,
}

#[derive(Deserialize)]
struct UserIdentity<'a> {
    #[serde(alias = "Type", borrow)]
    #[serde(rename = "type")]
    kind: Option<Str<'a>>,
    #[serde(rename = "principalId", alias = "PrincipalId", borrow)]
    principal_id: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawStreamRecord<'a> {
    approximate_creation_date_time: Option<serde_json::Number>,
    #[serde(borrow)]
    approximate_creation_date_time_precision: Option<Str<'a>>,
    #[serde(borrow)]
    keys: Option<Item<'a>>,
    #[serde(borrow)]
    new_image: Option<Item<'a>>,
    #[serde(borrow)]
    old_image: Option<Item<'a>>,
    #[serde(borrow)]
    sequence_number: Option<Str<'a>>,
}

/// Plausible event times: 2000-01-01 to 2200-01-01, in seconds.
const MIN_PLAUSIBLE_S: f64 = 946_684_800.0;
const MAX_PLAUSIBLE_S: f64 = 7_258_118_400.0;

/// Converts `ApproximateCreationDateTime` to microseconds. The unit comes from the precision field
/// when present, else seconds for DynamoDB Streams records and milliseconds for Kinesis ones; a
/// value implausible in that unit is re-read by its magnitude (FORMATS.md 1.1).
pub(crate) fn event_time_us(
    value: &serde_json::Number,
    precision: Option<&str>,
    streams: bool,
) -> Option<i64> {
    let v = value.as_f64()?;
    let declared = match precision {
        Some(p) if p.eq_ignore_ascii_case("MICROSECOND") => 1e-6,
        Some(p) if p.eq_ignore_ascii_case("MILLISECOND") => 1e-3,
        _ if streams => 1.0,
        _ => 1e-3,
    };
    let plausible = |unit: f64| (MIN_PLAUSIBLE_S..MAX_PLAUSIBLE_S).contains(&(v * unit));
    let unit = [declared, 1.0, 1e-3, 1e-6]
        .into_iter()
        .find(|u| plausible(*u))?;
    if let (Some(i), true) = (value.as_i64(), unit != 1.0) {
        // Exact integer arithmetic for ms and µs.
        return Some(if unit == 1e-3 { i * 1000 } else { i });
    }
    Some((v * unit * 1e6).round() as i64)
}

/// The table name inside a DynamoDB stream ARN (`arn:aws:dynamodb:r:a:table/NAME/stream/...`).
pub(crate) fn table_from_arn(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":table/")?.1;
    Some(rest.split('/').next().unwrap_or(rest)).filter(|t| !t.is_empty())
}

/// Classifies a JSON parse failure.
pub fn classify_json_error(e: &serde_json::Error) -> Reason {
    let msg = e.to_string();
    if msg.contains("recursion limit") {
        Reason::TooDeep
    } else if msg.contains(UNKNOWN_TAG) {
        Reason::UnknownType
    } else if e.is_eof() || e.is_syntax() {
        Reason::InvalidJson
    } else {
        Reason::InvalidRecord
    }
}

/// Parses one change record from its bytes.
pub fn parse_record(bytes: &[u8]) -> Result<ChangeRecord<'_>, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError {
        reason: Reason::InvalidUtf8,
        message: format!("record is not valid UTF-8: {e}"),
    })?;
    let raw: RawRecord = serde_json::from_str(text).map_err(|e| DecodeError {
        reason: classify_json_error(&e),
        message: e.to_string(),
    })?;
    let invalid = |message: String| DecodeError {
        reason: Reason::InvalidRecord,
        message,
    };
    let operation = match raw.event_name.as_ref().map(Str::as_str) {
        Some("INSERT") => Operation::Insert,
        Some("MODIFY") => Operation::Modify,
        Some("REMOVE") => Operation::Remove,
        Some(other) => return Err(invalid(format!("unknown eventName `{other}`"))),
        None => return Err(invalid("missing eventName".into())),
    };
    let ddb = raw
        .dynamodb
        .ok_or_else(|| invalid("missing `dynamodb` object".into()))?;
    let streams = ddb.sequence_number.is_some() || raw.event_source_arn.is_some();
    let time = ddb
        .approximate_creation_date_time
        .as_ref()
        .ok_or_else(|| DecodeError {
            reason: Reason::NoEventTime,
            message: "missing dynamodb.ApproximateCreationDateTime".into(),
        })?;
    let event_time_us = event_time_us(
        time,
        ddb.approximate_creation_date_time_precision
            .as_ref()
            .map(Str::as_str),
        streams,
    )
    .ok_or_else(|| DecodeError {
        reason: Reason::NoEventTime,
        message: format!("implausible ApproximateCreationDateTime {time}"),
    })?;
    let keys = ddb
        .keys
        .ok_or_else(|| invalid("missing dynamodb.Keys".into()))?;
    let table = match (raw.table_name, raw.event_source_arn) {
        (Some(t), _) => Some(t.0),
        (None, Some(arn)) => match arn.0 {
            Cow::Borrowed(a) => table_from_arn(a).map(Cow::Borrowed),
            Cow::Owned(a) => table_from_arn(&a).map(|t| Cow::Owned(t.to_owned())),
        },
        (None, None) => None,
    };
    let ttl_delete = raw.user_identity.is_some_and(|u| {
        u.kind.is_some_and(|k| k.as_str() == "Service")
            && u.principal_id
                .is_some_and(|p| p.as_str() == "dynamodb.amazonaws.com")
    });
    Ok(ChangeRecord {
        operation,
        event_id: raw.event_id.map(|s| s.0),
        table,
        event_time_us,
        ttl_delete,
        sequence_number: ddb.sequence_number.map(|s| s.0),
        keys,
        new_image: ddb.new_image,
        old_image: ddb.old_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINESIS: &str = r#"{"awsRegion":"us-east-1","eventID":"6b4c","eventName":"MODIFY",
 "userIdentity":null,"recordFormat":"application/json","tableName":"InvoiceTransactions",
 "dynamodb":{"ApproximateCreationDateTime":1795000000331,
   "ApproximateCreationDateTimePrecision":"MILLISECOND",
   "Keys":{"InvoiceNumber":{"N":"1212121"}},
   "NewImage":{"InvoiceNumber":{"N":"1212121"},"Amount":{"N":"1.5"}},"SizeBytes":847},
 "eventSource":"aws:dynamodb"}"#;

    #[test]
    fn parses_kinesis_shape() {
        let r = parse_record(KINESIS.as_bytes()).unwrap();
        assert_eq!(r.operation, Operation::Modify);
        assert_eq!(r.table.as_deref(), Some("InvoiceTransactions"));
        assert_eq!(r.event_time_us, 1_795_000_000_331_000);
        assert!(!r.ttl_delete);
        assert_eq!(r.new_image.unwrap().0.len(), 2);
        assert!(r.old_image.is_none());
    }

    #[test]
    fn event_time_units() {
        let n = |s: &str| serde_json::from_str::<serde_json::Number>(s).unwrap();
        // Microsecond precision declared.
        assert_eq!(
            event_time_us(&n("1795000000331123"), Some("MICROSECOND"), false),
            Some(1_795_000_000_331_123)
        );
        // Old Kinesis records: no precision, milliseconds.
        assert_eq!(
            event_time_us(&n("1795000000331"), None, false),
            Some(1_795_000_000_331_000)
        );
        // DynamoDB Streams: seconds, possibly fractional.
        assert_eq!(
            event_time_us(&n("1795000000"), None, true),
            Some(1_795_000_000_000_000)
        );
        assert_eq!(
            event_time_us(&n("1795000000.5"), None, true),
            Some(1_795_000_000_500_000)
        );
        // Precision says MILLISECOND but the magnitude is microseconds: re-read by magnitude.
        assert_eq!(
            event_time_us(&n("1795000000331123"), Some("MILLISECOND"), false),
            Some(1_795_000_000_331_123)
        );
        assert_eq!(event_time_us(&n("12"), None, false), None);
    }

    #[test]
    fn streams_shape_takes_table_from_arn_and_detects_ttl() {
        let rec = r#"{"eventID":"1","eventName":"REMOVE","eventVersion":"1.1",
          "eventSource":"aws:dynamodb","awsRegion":"us-east-1",
          "userIdentity":{"Type":"Service","PrincipalId":"dynamodb.amazonaws.com"},
          "dynamodb":{"ApproximateCreationDateTime":1795000000,"Keys":{"Id":{"N":"101"}},
            "OldImage":{"Id":{"N":"101"}},"SequenceNumber":"222","SizeBytes":26,
            "StreamViewType":"NEW_AND_OLD_IMAGES"},
          "eventSourceARN":"arn:aws:dynamodb:us-east-1:111:table/Barks/stream/2026-01-01T00:00:00.000"}"#;
        let r = parse_record(rec.as_bytes()).unwrap();
        assert_eq!(r.operation, Operation::Remove);
        assert_eq!(r.table.as_deref(), Some("Barks"));
        assert!(r.ttl_delete);
        assert_eq!(r.sequence_number.as_deref(), Some("222"));
        assert_eq!(r.event_time_us, 1_795_000_000_000_000);
    }

    #[test]
    fn classifies_bad_input() {
        let reason = |b: &[u8]| parse_record(b).unwrap_err().reason;
        assert_eq!(reason(b"{\"eventName\":\"INS"), Reason::InvalidJson);
        assert_eq!(reason(b"hello"), Reason::InvalidJson);
        assert_eq!(reason(b"{\"eventName\":\"X\xff\"}"), Reason::InvalidUtf8);
        assert_eq!(reason(br#"{"eventName":"UPSERT"}"#), Reason::InvalidRecord);
        let unknown = KINESIS.replace(r#"{"N":"1.5"}"#, r#"{"Q":"1.5"}"#);
        assert_eq!(reason(unknown.as_bytes()), Reason::UnknownType);
        let deep = format!(
            r#"{{"eventName":"INSERT","dynamodb":{{"ApproximateCreationDateTime":1795000000331,"Keys":{{}},"NewImage":{{"a":{}}}}}}}"#,
            "{\"M\":{\"a\":".repeat(100) + "{\"S\":\"x\"}" + &"}}".repeat(100)
        );
        assert_eq!(reason(deep.as_bytes()), Reason::TooDeep);
    }
}
