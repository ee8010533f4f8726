//! One line of a DynamoDB table export's data file (DynamoDB JSON or Amazon Ion, full or
//! incremental) parsed into a [`ChangeRecord`], with the export's own metadata (table, id,
//! time) from its manifest.
//!
//! - Full export: `{"Item":{...}}` per line, a row with operation SNAPSHOT at the export time.
//! - Incremental export: `{"Metadata":{"WriteTimestampMicros":...},"Keys":{...},"NewImage":...,
//!   "OldImage":...}`: a row per change at its write time. Keys only is a delete (REMOVE); both
//!   images a MODIFY; a new image alone an INSERT, or, in a NEW_IMAGE export (which never
//!   carries old images), a MODIFY: such an export cannot tell a new item from a changed one.
//! - Ion: the same shapes with Ion values (docs/FORMATS.md 1.3): strings, decimals for numbers,
//!   blobs, bools, nulls, lists, structs for maps, and sets as lists annotated
//!   `$dynamodb_SS`, `$dynamodb_NS`, `$dynamodb_BS`.

use std::borrow::Cow;

use base64::Engine as _;
use ion_rs::{Element, Value};
use serde::Deserialize;

use super::attr::{AttrValue, Item};
use super::record::{classify_json_error, ChangeRecord, Operation};
use super::{DecodeError, Reason};

/// A full export (the table's items at one time) or an incremental one (changes in a window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportType {
    /// `FULL_EXPORT`: `{"Item":...}` lines.
    Full,
    /// `INCREMENTAL_EXPORT`: change lines with `Metadata`, `Keys`, `NewImage`, `OldImage`.
    Incremental,
}

/// The data files' format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `DYNAMODB_JSON`: DynamoDB's typed JSON, one object per line.
    DynamoDbJson,
    /// `ION`: Amazon Ion text, one value per line.
    Ion,
}

/// What every line of one export shares, from its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportMeta {
    /// The exported table's name (from `tableArn`).
    pub table: String,
    /// The export's id: the last part of its ARN; written as every row's `cdc_event_id`.
    pub export_id: String,
    /// The time the export reflects (full) or the end of its window (incremental), in
    /// microseconds since the epoch: a full export's rows' event time.
    pub export_time_us: i64,
    /// Full or incremental.
    pub export_type: ExportType,
    /// DynamoDB JSON or Ion.
    pub format: ExportFormat,
    /// An incremental export of new images only (`NEW_IMAGE`): a new image alone is a MODIFY.
    pub new_images_only: bool,
    /// The table's key attributes, when known: a full export's items do not say which they
    /// are, and each row's `Keys` are taken from its item by these names.
    pub keys: Option<Vec<String>>,
}

impl ExportMeta {
    /// What an incremental export's change did, by which images it has.
    pub(crate) fn operation(&self, new_image: bool, old_image: bool) -> Operation {
        match (new_image, old_image) {
            (false, _) => Operation::Remove,
            (true, true) => Operation::Modify,
            (true, false) if self.new_images_only => Operation::Modify,
            (true, false) => Operation::Insert,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonLine<'a> {
    #[serde(borrow)]
    item: Option<Item<'a>>,
    #[serde(borrow)]
    metadata: Option<JsonMetadata<'a>>,
    #[serde(borrow)]
    keys: Option<Item<'a>>,
    #[serde(borrow)]
    new_image: Option<Item<'a>>,
    #[serde(borrow)]
    old_image: Option<Item<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct JsonMetadata<'a> {
    #[serde(borrow)]
    write_timestamp_micros: Option<AttrValue<'a>>,
}

fn invalid(message: String) -> DecodeError {
    DecodeError {
        reason: Reason::InvalidRecord,
        message,
    }
}

/// Parses one data-file line of the export described by `meta`.
pub fn parse_export_line<'a>(
    bytes: &'a [u8],
    meta: &ExportMeta,
) -> Result<ChangeRecord<'a>, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError {
        reason: Reason::InvalidUtf8,
        message: format!("line is not valid UTF-8: {e}"),
    })?;
    let parts = match meta.format {
        ExportFormat::DynamoDbJson => {
            let line: JsonLine = serde_json::from_str(text).map_err(|e| DecodeError {
                reason: classify_json_error(&e),
                message: e.to_string(),
            })?;
            let micros = match line.metadata.and_then(|m| m.write_timestamp_micros) {
                Some(AttrValue::N(n)) => Some(n.parse::<i64>().map_err(|_| {
                    invalid(format!("WriteTimestampMicros `{n}` is not an integer"))
                })?),
                Some(other) => {
                    return Err(invalid(format!(
                        "WriteTimestampMicros is a {} value, not a number",
                        other.tag()
                    )))
                }
                None => None,
            };
            Parts {
                item: line.item,
                micros,
                keys: line.keys,
                new_image: line.new_image,
                old_image: line.old_image,
            }
        }
        ExportFormat::Ion => ion_parts(text)?,
    };
    assemble(parts, meta)
}

/// A line's fields, whatever its format.
struct Parts<'a> {
    item: Option<Item<'a>>,
    micros: Option<i64>,
    keys: Option<Item<'a>>,
    new_image: Option<Item<'a>>,
    old_image: Option<Item<'a>>,
}

fn assemble<'a>(p: Parts<'a>, meta: &ExportMeta) -> Result<ChangeRecord<'a>, DecodeError> {
    let record = |operation, event_time_us, keys, new_image, old_image| ChangeRecord {
        operation,
        event_id: Some(Cow::Owned(meta.export_id.clone())),
        table: Some(Cow::Owned(meta.table.clone())),
        event_time_us,
        ttl_delete: false,
        sequence_number: None,
        keys,
        new_image,
        old_image,
    };
    match meta.export_type {
        ExportType::Full => {
            let item = p
                .item
                .ok_or_else(|| invalid("a full export's line without `Item`".into()))?;
            let keys = meta.keys.as_ref().map_or_else(Item::default, |names| {
                Item(
                    names
                        .iter()
                        .filter_map(|n| Some((Cow::Owned(n.clone()), item.get(n)?.clone())))
                        .collect(),
                )
            });
            Ok(record(
                Operation::Snapshot,
                meta.export_time_us,
                keys,
                Some(item),
                None,
            ))
        }
        ExportType::Incremental => {
            let micros = p.micros.ok_or_else(|| DecodeError {
                reason: Reason::NoEventTime,
                message: "an incremental export's line without Metadata.WriteTimestampMicros"
                    .into(),
            })?;
            let keys = p
                .keys
                .ok_or_else(|| invalid("an incremental export's line without `Keys`".into()))?;
            let operation = meta.operation(p.new_image.is_some(), p.old_image.is_some());
            Ok(record(operation, micros, keys, p.new_image, p.old_image))
        }
    }
}

/// The fields of one Ion line: a struct, after the version marker of the file's first line.
fn ion_parts(text: &str) -> Result<Parts<'static>, DecodeError> {
    let values = Element::read_all(text.as_bytes()).map_err(|e| DecodeError {
        reason: Reason::InvalidJson,
        message: format!("not Ion: {e}"),
    })?;
    let mut values = values.iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(invalid(
            "a line of an Ion export must hold exactly one value".into(),
        ));
    };
    let Value::Struct(s) = value.value() else {
        return Err(invalid(format!(
            "a line of an Ion export is a {}, not a struct",
            value.ion_type()
        )));
    };
    let image = |name: &str| -> Result<Option<Item<'static>>, DecodeError> {
        match s.get(name) {
            None => Ok(None),
            Some(e) if e.is_null() => Ok(None),
            Some(e) => ion_item(e, 1).map(Some),
        }
    };
    let micros = match s.get("Metadata").map(Element::value) {
        Some(Value::Struct(m)) => match m.get("WriteTimestampMicros").map(Element::value) {
            Some(Value::Int(i)) => Some(
                i64::try_from(i.clone())
                    .map_err(|_| invalid("WriteTimestampMicros out of range".into()))?,
            ),
            Some(Value::Decimal(d)) => Some(
                ion_number(d)
                    .parse::<i64>()
                    .map_err(|_| invalid("WriteTimestampMicros is not an integer".into()))?,
            ),
            _ => None,
        },
        _ => None,
    };
    Ok(Parts {
        item: image("Item")?,
        micros,
        keys: image("Keys")?,
        new_image: image("NewImage")?,
        old_image: image("OldImage")?,
    })
}

/// DynamoDB allows 32 levels of nesting; deeper Ion is refused like deep JSON.
const MAX_DEPTH: usize = 64;

fn ion_item(e: &Element, depth: usize) -> Result<Item<'static>, DecodeError> {
    let Value::Struct(s) = e.value() else {
        return Err(invalid(format!(
            "an Ion item or map is a {}, not a struct",
            e.ion_type()
        )));
    };
    let mut out = Vec::new();
    for (name, v) in s.fields() {
        let name = name
            .text()
            .ok_or_else(|| invalid("an Ion field name without text".into()))?;
        out.push((Cow::Owned(name.to_owned()), ion_attr(v, depth + 1)?));
    }
    Ok(Item(out))
}

fn ion_attr(e: &Element, depth: usize) -> Result<AttrValue<'static>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError {
            reason: Reason::TooDeep,
            message: format!("Ion values nested deeper than {MAX_DEPTH} levels"),
        });
    }
    let annotation = e.annotations().first();
    let b64 = |b: &[u8]| Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b));
    Ok(match (e.value(), annotation) {
        (Value::Null(_), _) => AttrValue::Null,
        (Value::Bool(b), _) => AttrValue::Bool(*b),
        (Value::String(s), _) => AttrValue::S(Cow::Owned(s.text().to_owned())),
        (Value::Symbol(s), _) => AttrValue::S(Cow::Owned(s.text().unwrap_or_default().to_owned())),
        (Value::Int(i), _) => AttrValue::N(Cow::Owned(i.to_string())),
        (Value::Decimal(d), _) => AttrValue::N(Cow::Owned(ion_number(d))),
        (Value::Float(f), _) if f.is_finite() => AttrValue::N(Cow::Owned(f.to_string())),
        (Value::Blob(b), _) | (Value::Clob(b), _) => AttrValue::B(b64(b.as_ref())),
        (Value::Struct(_), _) => AttrValue::M(ion_item(e, depth)?),
        (Value::List(l), Some(set)) if set.starts_with("$dynamodb_") => {
            let members = |f: fn(&Element) -> Option<Cow<'static, str>>| {
                l.iter()
                    .map(|m| {
                        f(m).ok_or_else(|| {
                            invalid(format!("a member of an Ion {set} is a {}", m.ion_type()))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            match set {
                "$dynamodb_SS" => AttrValue::Ss(members(|m| {
                    m.as_string().map(|s| Cow::Owned(s.to_owned()))
                })?),
                "$dynamodb_NS" => AttrValue::Ns(members(|m| match m.value() {
                    Value::Int(i) => Some(Cow::Owned(i.to_string())),
                    Value::Decimal(d) => Some(Cow::Owned(ion_number(d))),
                    _ => None,
                })?),
                "$dynamodb_BS" => AttrValue::Bs(members(|m| match m.value() {
                    Value::Blob(b) => Some(Cow::Owned(
                        base64::engine::general_purpose::STANDARD.encode(b.as_ref()),
                    )),
                    _ => None,
                })?),
                other => {
                    return Err(DecodeError {
                        reason: Reason::UnknownType,
                        message: format!("unknown Ion set annotation `{other}`"),
                    })
                }
            }
        }
        (Value::List(l), _) | (Value::SExp(l), _) => AttrValue::L(
            l.iter()
                .map(|m| ion_attr(m, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        (Value::Float(_), _) | (Value::Timestamp(_), _) => {
            return Err(DecodeError {
                reason: Reason::UnknownType,
                message: format!("an Ion {} has no DynamoDB type", e.ion_type()),
            })
        }
    })
}

/// An Ion decimal as the exact decimal text DynamoDB writes for a number: plain digits with a
/// point where the exponent puts it, scientific notation only past 38 places either way.
pub fn ion_number(d: &ion_rs::Decimal) -> String {
    let coefficient = d.coefficient();
    let digits = coefficient.magnitude().to_string();
    let sign = if coefficient.sign() == ion_rs::decimal::Sign::Negative && digits != "0" {
        "-"
    } else {
        ""
    };
    let exp = d.exponent();
    if digits == "0" {
        return "0".into();
    }
    if exp >= 0 {
        if digits.len() as i64 + exp <= 38 {
            return format!("{sign}{digits}{}", "0".repeat(exp as usize));
        }
        return format!("{sign}{digits}E+{exp}");
    }
    let places = (-exp) as usize;
    if places > 38 + digits.len() {
        return format!("{sign}{digits}E{exp}");
    }
    let (int, frac) = if digits.len() > places {
        let (i, f) = digits.split_at(digits.len() - places);
        (i.to_string(), f.to_string())
    } else {
        ("0".to_string(), format!("{digits:0>places$}"))
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests;
