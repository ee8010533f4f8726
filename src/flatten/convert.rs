//! Pure conversions of one DynamoDB value to one column type, and the plain-JSON rendering used
//! for `json` columns and companion text. Numbers keep every digit: they are parsed exactly or not
//! at all.

use std::borrow::Cow;
use std::fmt::Write;

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::decode::{AttrView, MapView, Shape};
use crate::schema::{ColumnType, TimeFormat};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One value ready for an Arrow builder.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// A null: a `NULL` attribute, or a value the record does not have.
    Null,
    /// Text, for `string` and `json` columns.
    Str(Cow<'a, str>),
    /// A 64-bit integer, for `bigint` columns.
    I64(i64),
    /// A 32-bit integer, for `int` columns.
    I32(i32),
    /// A finite floating-point number, for `double` columns.
    F64(f64),
    /// Unscaled decimal value at the column's scale.
    Dec(i128),
    /// A boolean, for `boolean` columns.
    Bool(bool),
    /// Microseconds since the epoch.
    Ts(i64),
    /// Days since the epoch.
    Date(i32),
    /// Binary bytes after base64 decoding, for `binary` columns.
    Bin(Vec<u8>),
    /// The converted elements of a list or set, for `list<...>` columns.
    List(Vec<Cell<'a>>),
}

/// Settings that change how values convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertOptions {
    /// How many times binary values are base64-decoded (FORMATS.md 1.1: some sources encode twice).
    pub binary_decode_depth: u8,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            binary_decode_depth: 1,
        }
    }
}

/// Converts a value to a column type; `None` when it does not fit (the caller keeps it as text).
pub fn convert<'a, V: AttrView<'a>>(v: V, ty: &ColumnType, o: ConvertOptions) -> Option<Cell<'a>> {
    let shape = v.shape();
    if matches!(shape, Shape::Null) {
        return Some(Cell::Null);
    }
    let set_kind = SetKind::of(&shape);
    Some(match (ty, shape) {
        (ColumnType::Json, _) => Cell::Str(Cow::Owned(to_json(v, o))),
        (ColumnType::List(inner), Shape::L(items)) => {
            Cell::List(items.map(|i| convert(i, inner, o)).collect::<Option<_>>()?)
        }
        (ColumnType::List(inner), Shape::Ss(set) | Shape::Ns(set) | Shape::Bs(set)) => {
            let kind = set_kind?;
            Cell::List(
                sorted_set(set, kind, o)
                    .into_iter()
                    .map(|s| convert_scalar(kind.scalar(s), inner, o))
                    .collect::<Option<_>>()?,
            )
        }
        (ty, shape) => convert_scalar(shape, ty, o)?,
    })
}

/// Converts a string, number, binary or boolean value (any other shape does not fit).
fn convert_scalar<'a, M, L, S>(
    v: Shape<'a, M, L, S>,
    ty: &ColumnType,
    o: ConvertOptions,
) -> Option<Cell<'a>> {
    Some(match (ty, v) {
        (ColumnType::String, Shape::S(s) | Shape::N(s)) => Cell::Str(Cow::Borrowed(s)),
        (ColumnType::Bigint, Shape::N(n)) => Cell::I64(parse_int(n)?),
        (ColumnType::Int, Shape::N(n)) => Cell::I32(parse_int(n)?.try_into().ok()?),
        (ColumnType::Double, Shape::N(n)) => {
            Cell::F64(n.parse::<f64>().ok().filter(|f| f.is_finite())?)
        }
        (ColumnType::Decimal { precision, scale }, Shape::N(n)) => {
            Cell::Dec(parse_decimal(n, *precision, *scale)?)
        }
        (ColumnType::Boolean, Shape::Bool(b)) => Cell::Bool(b),
        (ColumnType::Timestamp(f), v) => Cell::Ts(time_us(v, *f)?),
        (ColumnType::Date(f), v) => Cell::Date(days(time_us(v, *f)?)?),
        (ColumnType::Binary, Shape::B(b)) => Cell::Bin(decode_binary(b, o)?),
        // A set's member in a `list<json>` column.
        (ColumnType::Json, v @ (Shape::S(_) | Shape::N(_) | Shape::B(_))) => {
            let mut out = String::new();
            write_scalar(v, &mut out, o);
            Cell::Str(Cow::Owned(out))
        }
        _ => return None,
    })
}

/// Which kind of set: its members' scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetKind {
    S,
    N,
    B,
}

impl SetKind {
    fn of<M, L, S>(v: &Shape<'_, M, L, S>) -> Option<SetKind> {
        match v {
            Shape::Ss(_) => Some(SetKind::S),
            Shape::Ns(_) => Some(SetKind::N),
            Shape::Bs(_) => Some(SetKind::B),
            _ => None,
        }
    }

    fn scalar(self, s: &str) -> Shape<'_, (), (), ()> {
        match self {
            SetKind::S => Shape::S(s),
            SetKind::N => Shape::N(s),
            SetKind::B => Shape::B(s),
        }
    }
}

/// The type a value suggests for a new column; `None` for NULL (no type information).
pub fn infer_type<'a, V: AttrView<'a>>(v: V, decimal_scale: u8) -> Option<ColumnType> {
    Some(match v.shape() {
        Shape::S(_) => ColumnType::String,
        Shape::N(n) => {
            if parse_int(n).is_some() {
                ColumnType::Bigint
            } else if parse_decimal(n, 38, decimal_scale).is_some() {
                ColumnType::Decimal {
                    precision: 38,
                    scale: decimal_scale,
                }
            } else {
                // Beyond any fixed decimal: exact text.
                ColumnType::String
            }
        }
        Shape::B(_) => ColumnType::Binary,
        Shape::Bool(_) => ColumnType::Boolean,
        Shape::Null => return None,
        Shape::M(_) | Shape::L(_) => ColumnType::Json,
        Shape::Ss(_) | Shape::Ns(_) => ColumnType::List(Box::new(ColumnType::String)),
        Shape::Bs(_) => ColumnType::List(Box::new(ColumnType::Binary)),
    })
}

/// A value as text for a companion column: strings and numbers as they are, the rest as JSON.
pub fn to_text<'a, V: AttrView<'a>>(v: V, o: ConvertOptions) -> Cow<'a, str> {
    match v.shape() {
        Shape::S(s) | Shape::N(s) | Shape::B(s) => Cow::Borrowed(s),
        _ => Cow::Owned(to_json(v, o)),
    }
}

/// An integer literal (`-12`), without exponent or fraction, that fits i64.
pub fn parse_int(n: &str) -> Option<i64> {
    let digits = n.strip_prefix('-').unwrap_or(n);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// Parses decimal text (`-1.50`, `1E+3`, `2.5e-2`) into an unscaled i128 at `scale` with at most
/// `precision` digits, only if that loses no digit.
pub fn parse_decimal(text: &str, precision: u8, scale: u8) -> Option<i128> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits * 10^(exp - frac_len); wanted: unscaled = value * 10^scale. Computed
    // without building the digit string (two allocations per number showed in the profile).
    let digits = || int_part.bytes().chain(frac_part.bytes());
    let leading = digits().take_while(|&b| b == b'0').count();
    let significant = int_part.len() + frac_part.len() - leading;
    if significant == 0 {
        return Some(0);
    }
    let mut shift = exp as i64 - frac_part.len() as i64 + scale as i64;
    let mut keep = significant;
    if shift < 0 {
        // Dropping a digit is allowed only if it is a zero.
        let trailing = digits().rev().take_while(|&b| b == b'0').count();
        let drop = shift.unsigned_abs();
        if drop > trailing as u64 {
            return None;
        }
        keep -= drop as usize;
        shift = 0;
    }
    if keep as i64 + shift > precision as i64 {
        return None;
    }
    let mut v: i128 = 0;
    for d in digits().skip(leading).take(keep) {
        v = v.checked_mul(10)?.checked_add((d - b'0') as i128)?;
    }
    for _ in 0..shift {
        v = v.checked_mul(10)?;
    }
    Some(if negative { -v } else { v })
}

/// A number or text to microseconds since the epoch, as the column's format says.
fn time_us<M, L, S>(v: Shape<'_, M, L, S>, format: TimeFormat) -> Option<i64> {
    match (v, format) {
        (Shape::S(s), TimeFormat::Auto | TimeFormat::Iso) => parse_time_us(s),
        (Shape::N(n), TimeFormat::Auto) => epoch_us(n, None),
        (Shape::N(n), TimeFormat::EpochSeconds) => epoch_us(n, Some(1_000_000)),
        (Shape::N(n), TimeFormat::EpochMillis) => epoch_us(n, Some(1_000)),
        (Shape::N(n), TimeFormat::EpochMicros) => epoch_us(n, Some(1)),
        _ => None,
    }
}

/// Epoch number to microseconds: `per_unit` microseconds per unit, or by magnitude when `None`
/// (below 1e11 seconds, below 1e14 milliseconds, else microseconds).
fn epoch_us(n: &str, per_unit: Option<i64>) -> Option<i64> {
    let by_magnitude = |a: f64| {
        if a < 1e11 {
            1_000_000
        } else if a < 1e14 {
            1_000
        } else {
            1
        }
    };
    if let Some(i) = parse_int(n) {
        let unit = per_unit.unwrap_or_else(|| by_magnitude(i.unsigned_abs() as f64));
        return i.checked_mul(unit);
    }
    let f: f64 = n.parse().ok().filter(|f: &f64| f.is_finite())?;
    let unit = per_unit.unwrap_or_else(|| by_magnitude(f.abs()));
    let us = (f * unit as f64).round();
    (us.abs() < 9.2e18).then_some(us as i64)
}

/// ISO 8601 text to microseconds: with an offset, or without one (taken as UTC), or a date.
fn parse_time_us(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

/// Days since the epoch for a microsecond time.
pub fn days(us: i64) -> Option<i32> {
    us.div_euclid(86_400_000_000).try_into().ok()
}

fn decode_binary(text: &str, o: ConvertOptions) -> Option<Vec<u8>> {
    let mut bytes = B64.decode(text.as_bytes()).ok()?;
    for _ in 1..o.binary_decode_depth {
        bytes = B64.decode(&bytes).ok()?;
    }
    Some(bytes)
}

/// Set members sorted: strings by bytes, numbers by value (ties by text), binary by bytes.
fn sorted_set<'a>(
    members: impl Iterator<Item = &'a str>,
    kind: SetKind,
    o: ConvertOptions,
) -> Vec<&'a str> {
    let mut items: Vec<&'a str> = members.collect();
    match kind {
        SetKind::S => items.sort(),
        SetKind::N => items.sort_by(|a, b| {
            let (x, y) = (
                a.parse::<f64>().unwrap_or(f64::NAN),
                b.parse::<f64>().unwrap_or(f64::NAN),
            );
            x.total_cmp(&y).then_with(|| a.cmp(b))
        }),
        SetKind::B => items.sort_by_cached_key(|b| decode_binary(b, o).unwrap_or_default()),
    }
    items
}

/// True if the text is a valid JSON number (DynamoDB's numbers always are; this guards output).
fn is_json_number(n: &str) -> bool {
    let b = n.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == int_start || (b[int_start] == b'0' && i - int_start > 1) {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == b.len()
}

/// Appends `s` as a JSON string, escaped as serde_json escapes (`"`, `\\`, and control
/// characters: short forms where JSON has them, else `\u00xx`). Written here rather than through
/// `serde_json::to_string`, whose new string per value showed in the profile; the test
/// `escapes_as_serde_json_does` compares the two.
pub(super) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        plain = i + 1;
        if short.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

fn push_number(out: &mut String, n: &str) {
    if is_json_number(n) {
        out.push_str(n);
    } else {
        push_json_str(out, n);
    }
}

fn push_binary(out: &mut String, b: &str, o: ConvertOptions) {
    match decode_binary(b, o) {
        Some(bytes) => push_json_str(out, &B64.encode(bytes)),
        None => push_json_str(out, b),
    }
}

/// Plain JSON for a value: numbers as exact number literals, binary as base64 of the raw bytes,
/// sets as sorted arrays.
pub fn to_json<'a, V: AttrView<'a>>(v: V, o: ConvertOptions) -> String {
    let mut out = String::new();
    write_json(v, &mut out, o);
    out
}

/// Like [`to_json`], but appends the JSON to `out`.
pub fn write_json<'a, V: AttrView<'a>>(v: V, out: &mut String, o: ConvertOptions) {
    let shape = v.shape();
    let kind = SetKind::of(&shape);
    match shape {
        Shape::M(m) => {
            out.push('{');
            for (i, (k, v)) in m.entries().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                write_json(v, out, o);
            }
            out.push('}');
        }
        Shape::L(items) => {
            out.push('[');
            for (i, v) in items.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(v, out, o);
            }
            out.push(']');
        }
        Shape::Ss(set) | Shape::Ns(set) | Shape::Bs(set) => {
            let kind = kind.expect("a set");
            out.push('[');
            for (i, s) in sorted_set(set, kind, o).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_scalar(kind.scalar(s), out, o);
            }
            out.push(']');
        }
        scalar => write_scalar(scalar, out, o),
    }
}

/// Appends the JSON of a string, number, binary, boolean or null (nothing for a container).
fn write_scalar<M, L, S>(v: Shape<'_, M, L, S>, out: &mut String, o: ConvertOptions) {
    match v {
        Shape::S(s) => push_json_str(out, s),
        Shape::N(n) => push_number(out, n),
        Shape::B(b) => push_binary(out, b, o),
        Shape::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Shape::Null => out.push_str("null"),
        Shape::M(_) | Shape::L(_) | Shape::Ss(_) | Shape::Ns(_) | Shape::Bs(_) => {}
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
