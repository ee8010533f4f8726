//! Pure conversions of one DynamoDB value to one column type, and the plain-JSON rendering used
//! for `json` columns and companion text. Numbers keep every digit: they are parsed exactly or not
//! at all.

use std::borrow::Cow;
use std::fmt::Write;

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::decode::AttrValue;
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
pub fn convert<'a>(v: &AttrValue<'a>, ty: &ColumnType, o: ConvertOptions) -> Option<Cell<'a>> {
    if matches!(v, AttrValue::Null) {
        return Some(Cell::Null);
    }
    Some(match (ty, v) {
        (ColumnType::String, AttrValue::S(s) | AttrValue::N(s)) => Cell::Str(s.clone()),
        (ColumnType::Bigint, AttrValue::N(n)) => Cell::I64(parse_int(n)?),
        (ColumnType::Int, AttrValue::N(n)) => Cell::I32(parse_int(n)?.try_into().ok()?),
        (ColumnType::Double, AttrValue::N(n)) => {
            Cell::F64(n.parse::<f64>().ok().filter(|f| f.is_finite())?)
        }
        (ColumnType::Decimal { precision, scale }, AttrValue::N(n)) => {
            Cell::Dec(parse_decimal(n, *precision, *scale)?)
        }
        (ColumnType::Boolean, AttrValue::Bool(b)) => Cell::Bool(*b),
        (ColumnType::Timestamp(f), v) => Cell::Ts(time_us(v, *f)?),
        (ColumnType::Date(f), v) => Cell::Date(days(time_us(v, *f)?)?),
        (ColumnType::Binary, AttrValue::B(b)) => Cell::Bin(decode_binary(b, o)?),
        (ColumnType::Json, v) => Cell::Str(Cow::Owned(to_json(v, o))),
        (ColumnType::List(inner), AttrValue::L(items)) => Cell::List(
            items
                .iter()
                .map(|i| convert(i, inner, o))
                .collect::<Option<_>>()?,
        ),
        (ColumnType::List(inner), AttrValue::Ss(_) | AttrValue::Ns(_) | AttrValue::Bs(_)) => {
            let scalar_tag = match v {
                AttrValue::Ss(_) => AttrValue::S,
                AttrValue::Ns(_) => AttrValue::N,
                _ => AttrValue::B,
            };
            Cell::List(
                sorted_set(v, o)
                    .into_iter()
                    .map(|s| convert(&scalar_tag(s), inner, o))
                    .collect::<Option<_>>()?,
            )
        }
        _ => return None,
    })
}

/// The type a value suggests for a new column; `None` for NULL (no type information).
pub fn infer_type(v: &AttrValue, decimal_scale: u8) -> Option<ColumnType> {
    Some(match v {
        AttrValue::S(_) => ColumnType::String,
        AttrValue::N(n) => {
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
        AttrValue::B(_) => ColumnType::Binary,
        AttrValue::Bool(_) => ColumnType::Boolean,
        AttrValue::Null => return None,
        AttrValue::M(_) | AttrValue::L(_) => ColumnType::Json,
        AttrValue::Ss(_) | AttrValue::Ns(_) => ColumnType::List(Box::new(ColumnType::String)),
        AttrValue::Bs(_) => ColumnType::List(Box::new(ColumnType::Binary)),
    })
}

/// A value as text for a companion column: strings and numbers as they are, the rest as JSON.
pub fn to_text<'a>(v: &AttrValue<'a>, o: ConvertOptions) -> Cow<'a, str> {
    match v {
        AttrValue::S(s) | AttrValue::N(s) | AttrValue::B(s) => s.clone(),
        other => Cow::Owned(to_json(other, o)),
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
    // value = digits * 10^(exp - frac_len); wanted: unscaled = value * 10^scale.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut shift = exp.checked_sub(frac_part.len() as i32)? + scale as i32;
    let mut digits = digits.to_string();
    while shift < 0 {
        // Dropping a digit is allowed only if it is a zero.
        if digits.is_empty() {
            break;
        }
        if !digits.ends_with('0') {
            return None;
        }
        digits.pop();
        shift += 1;
    }
    if digits.is_empty() {
        return Some(0);
    }
    if shift > 0 {
        digits.extend(std::iter::repeat_n('0', shift as usize));
    }
    if digits.len() > precision as usize {
        return None;
    }
    let v: i128 = digits.parse().ok()?;
    Some(if negative { -v } else { v })
}

/// A number or text to microseconds since the epoch, as the column's format says.
fn time_us(v: &AttrValue, format: TimeFormat) -> Option<i64> {
    match (v, format) {
        (AttrValue::S(s), TimeFormat::Auto | TimeFormat::Iso) => parse_time_us(s),
        (AttrValue::N(n), TimeFormat::Auto) => epoch_us(n, None),
        (AttrValue::N(n), TimeFormat::EpochSeconds) => epoch_us(n, Some(1_000_000)),
        (AttrValue::N(n), TimeFormat::EpochMillis) => epoch_us(n, Some(1_000)),
        (AttrValue::N(n), TimeFormat::EpochMicros) => epoch_us(n, Some(1)),
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
fn sorted_set<'a>(v: &AttrValue<'a>, o: ConvertOptions) -> Vec<Cow<'a, str>> {
    match v {
        AttrValue::Ss(items) => {
            let mut items = items.clone();
            items.sort();
            items
        }
        AttrValue::Ns(items) => {
            let mut items = items.clone();
            items.sort_by(|a, b| {
                let (x, y) = (
                    a.parse::<f64>().unwrap_or(f64::NAN),
                    b.parse::<f64>().unwrap_or(f64::NAN),
                );
                x.total_cmp(&y).then_with(|| a.cmp(b))
            });
            items
        }
        AttrValue::Bs(items) => {
            let mut items = items.clone();
            items.sort_by_cached_key(|b| decode_binary(b, o).unwrap_or_default());
            items
        }
        _ => Vec::new(),
    }
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

fn push_json_str(out: &mut String, s: &str) {
    // serde_json's escaping, written straight into the output.
    out.push_str(&serde_json::to_string(s).expect("strings serialize"));
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
pub fn to_json(v: &AttrValue, o: ConvertOptions) -> String {
    let mut out = String::new();
    write_json(v, &mut out, o);
    out
}

/// Like [`to_json`], but appends the JSON to `out`.
pub fn write_json(v: &AttrValue, out: &mut String, o: ConvertOptions) {
    match v {
        AttrValue::S(s) => push_json_str(out, s),
        AttrValue::N(n) => push_number(out, n),
        AttrValue::B(b) => push_binary(out, b, o),
        AttrValue::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        AttrValue::Null => out.push_str("null"),
        AttrValue::M(m) => {
            out.push('{');
            for (i, (k, v)) in m.0.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                write_json(v, out, o);
            }
            out.push('}');
        }
        AttrValue::L(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(v, out, o);
            }
            out.push(']');
        }
        AttrValue::Ss(_) | AttrValue::Ns(_) | AttrValue::Bs(_) => {
            out.push('[');
            for (i, s) in sorted_set(v, o).iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match v {
                    AttrValue::Ss(_) => push_json_str(out, s),
                    AttrValue::Ns(_) => push_number(out, s),
                    _ => push_binary(out, s, o),
                }
            }
            out.push(']');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Item;
    use proptest::prelude::*;

    const O: ConvertOptions = ConvertOptions {
        binary_decode_depth: 1,
    };

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(parse_decimal("1.50", 10, 2), Some(150));
        assert_eq!(parse_decimal("-1.5", 10, 2), Some(-150));
        assert_eq!(parse_decimal("1E+3", 10, 2), Some(100_000));
        assert_eq!(parse_decimal("2.5e-2", 10, 3), Some(25));
        assert_eq!(parse_decimal("1.001", 10, 2), None);
        assert_eq!(parse_decimal("1.000", 10, 2), Some(100));
        assert_eq!(parse_decimal("123456789", 8, 0), None);
        assert_eq!(parse_decimal("0", 1, 0), Some(0));
        assert_eq!(parse_decimal("0.000", 3, 2), Some(0));
        assert_eq!(parse_decimal("abc", 10, 2), None);
        assert_eq!(parse_decimal("1e400", 38, 0), None);
        assert_eq!(
            parse_decimal("12345678901234567890123456789.123456789", 38, 9),
            Some(12345678901234567890123456789123456789)
        );
    }

    proptest! {
        #![proptest_config(crate::test_support::proptest_config())]
        #[test]
        fn decimal_round_trips(v in -10i128.pow(20)..10i128.pow(20), scale in 0u8..10) {
            let s = scale as u32;
            let text = if s == 0 { v.to_string() } else {
                let a = v.unsigned_abs();
                let p = 10u128.pow(s);
                format!("{}{}.{:0width$}", if v < 0 { "-" } else { "" }, a / p, a % p, width = s as usize)
            };
            prop_assert_eq!(parse_decimal(&text, 38, scale), Some(v));
        }
    }

    #[test]
    fn inference() {
        let n = |s: &str| AttrValue::N(s.to_string().into());
        assert_eq!(infer_type(&n("12"), 9), Some(ColumnType::Bigint));
        assert_eq!(
            infer_type(&n("1.25"), 9),
            Some(ColumnType::Decimal {
                precision: 38,
                scale: 9
            })
        );
        assert_eq!(infer_type(&n("1E+125"), 9), Some(ColumnType::String));
        assert_eq!(
            infer_type(&n("99999999999999999999"), 9)
                .unwrap()
                .to_string(),
            "decimal(38,9)"
        );
        assert_eq!(infer_type(&AttrValue::Null, 9), None);
    }

    #[test]
    fn conversions() {
        let n = |s: &'static str| AttrValue::N(s.into());
        assert_eq!(
            convert(&n("42"), &ColumnType::Bigint, O),
            Some(Cell::I64(42))
        );
        assert_eq!(convert(&n("4.2"), &ColumnType::Bigint, O), None);
        assert_eq!(
            convert(&AttrValue::S("x".into()), &ColumnType::Bigint, O),
            None
        );
        assert_eq!(
            convert(
                &n("1795000000"),
                &ColumnType::Timestamp(TimeFormat::Auto),
                O
            ),
            Some(Cell::Ts(1_795_000_000_000_000))
        );
        assert_eq!(
            convert(
                &n("1795000000123"),
                &ColumnType::Timestamp(TimeFormat::Auto),
                O
            ),
            Some(Cell::Ts(1_795_000_000_123_000))
        );
        // An explicit unit reads small values that magnitude would misread.
        assert_eq!(
            convert(
                &n("86400000"),
                &ColumnType::Timestamp(TimeFormat::EpochMillis),
                O
            ),
            Some(Cell::Ts(86_400_000_000))
        );
        assert_eq!(
            convert(
                &n("1.5"),
                &ColumnType::Timestamp(TimeFormat::EpochSeconds),
                O
            ),
            Some(Cell::Ts(1_500_000))
        );
        assert_eq!(
            convert(&n("1795000000"), &ColumnType::Timestamp(TimeFormat::Iso), O),
            None
        );
        assert_eq!(
            convert(
                &AttrValue::S("2026-11-22T03:00:00.5Z".into()),
                &ColumnType::Timestamp(TimeFormat::Auto),
                O
            ),
            Some(Cell::Ts(1_795_316_400_500_000))
        );
        assert_eq!(
            convert(
                &AttrValue::S("1970-01-03".into()),
                &ColumnType::Date(TimeFormat::Auto),
                O
            ),
            Some(Cell::Date(2))
        );
        assert_eq!(
            convert(&AttrValue::B("AAEC".into()), &ColumnType::Binary, O),
            Some(Cell::Bin(vec![0, 1, 2]))
        );
        // Twice-encoded binary with depth 2.
        let twice = B64.encode(B64.encode([7u8, 8]));
        assert_eq!(
            convert(
                &AttrValue::B(twice.into()),
                &ColumnType::Binary,
                ConvertOptions {
                    binary_decode_depth: 2
                }
            ),
            Some(Cell::Bin(vec![7, 8]))
        );
        assert_eq!(
            convert(&AttrValue::B("!!".into()), &ColumnType::Binary, O),
            None
        );
        let ns = AttrValue::Ns(vec!["10".into(), "9.5".into(), "-1".into()]);
        assert_eq!(
            convert(&ns, &ColumnType::List(Box::new(ColumnType::String)), O),
            Some(Cell::List(vec![
                Cell::Str("-1".into()),
                Cell::Str("9.5".into()),
                Cell::Str("10".into())
            ]))
        );
        assert_eq!(
            convert(&AttrValue::Null, &ColumnType::Bigint, O),
            Some(Cell::Null)
        );
    }

    #[test]
    fn json_keeps_every_digit() {
        let item: Item = serde_json::from_str(
            r#"{"m":{"M":{"n":{"N":"12345678901234567890123456789012345678"},"s":{"S":"q\"x"},
              "l":{"L":[{"BOOL":true},{"NULL":true},{"B":"AAE="}]},"ss":{"SS":["b","a"]}}}}"#,
        )
        .unwrap();
        let json = to_json(item.get("m").unwrap(), O);
        assert_eq!(
            json,
            r#"{"n":12345678901234567890123456789012345678,"s":"q\"x","l":[true,null,"AAE="],"ss":["a","b"]}"#
        );
        assert!(is_json_number("-1.5E+10"));
        assert!(!is_json_number("01"));
        assert!(!is_json_number("1."));
        assert!(!is_json_number("NaN"));
    }
}
