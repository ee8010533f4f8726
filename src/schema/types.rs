//! Column types of the lake, their text form in schema files, and their Arrow types.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, TimeUnit};

/// Largest decimal precision Athena and Redshift accept.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// How a timestamp or date column reads its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimeFormat {
    /// Numbers by magnitude (below 1e11 seconds, below 1e14 milliseconds, else microseconds);
    /// text as ISO 8601.
    #[default]
    Auto,
    /// Numbers as seconds since the epoch, fractions allowed (`epoch_s`); text does not fit.
    EpochSeconds,
    /// Numbers as milliseconds since the epoch (`epoch_ms`); text does not fit.
    EpochMillis,
    /// Numbers as microseconds since the epoch (`epoch_us`); text does not fit.
    EpochMicros,
    /// ISO 8601 / RFC 3339 text only (no offset means UTC).
    Iso,
}

impl TimeFormat {
    fn name(self) -> &'static str {
        match self {
            TimeFormat::Auto => "auto",
            TimeFormat::EpochSeconds => "epoch_s",
            TimeFormat::EpochMillis => "epoch_ms",
            TimeFormat::EpochMicros => "epoch_us",
            TimeFormat::Iso => "iso",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            TimeFormat::Auto,
            TimeFormat::EpochSeconds,
            TimeFormat::EpochMillis,
            TimeFormat::EpochMicros,
            TimeFormat::Iso,
        ]
        .into_iter()
        .find(|f| f.name() == s)
    }
}

/// A column's type. Its text form (`decimal(18,2)`, `list<string>`) is what schema files hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// UTF-8 text, from string values or numbers as written (`string`).
    String,
    /// 64-bit integer, from whole numbers (`bigint`).
    Bigint,
    /// 32-bit integer (metadata columns such as the hour).
    Int,
    /// 64-bit floating point, from finite numbers (`double`).
    Double,
    /// Exact decimal, from numbers that fit it without losing a digit (`decimal(p,s)`).
    Decimal {
        /// Total digits, 1 to 38.
        precision: u8,
        /// Digits after the decimal point, at most the precision (and at most 37).
        scale: u8,
    },
    /// True or false, from DynamoDB booleans (`boolean`).
    Boolean,
    /// UTC timestamp in microseconds, read from epoch numbers or ISO 8601 text
    /// (`timestamp`, `timestamp(epoch_ms)`, `timestamp(iso)`...).
    Timestamp(TimeFormat),
    /// A calendar date, from `YYYY-MM-DD` text, ISO timestamps or epoch numbers (`date`,
    /// `date(epoch_s)`...).
    Date(TimeFormat),
    /// Bytes, from DynamoDB binary values, base64 decoded (`binary`).
    Binary,
    /// Any value as plain JSON text (numbers keep every digit).
    Json,
    /// A list of the inner type, from lists and sets (`list<T>`; never a list of lists).
    List(Box<ColumnType>),
}

impl ColumnType {
    /// The Arrow type that stores this column.
    pub fn arrow(&self) -> DataType {
        match self {
            ColumnType::String | ColumnType::Json => DataType::Utf8,
            ColumnType::Bigint => DataType::Int64,
            ColumnType::Int => DataType::Int32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Decimal { precision, scale } => {
                DataType::Decimal128(*precision, *scale as i8)
            }
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Timestamp(_) => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            ColumnType::Date(_) => DataType::Date32,
            ColumnType::Binary => DataType::Binary,
            ColumnType::List(inner) => {
                DataType::List(Arc::new(Field::new("element", inner.arrow(), true)))
            }
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("string"),
            ColumnType::Bigint => f.write_str("bigint"),
            ColumnType::Int => f.write_str("int"),
            ColumnType::Double => f.write_str("double"),
            ColumnType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::Timestamp(TimeFormat::Auto) => f.write_str("timestamp"),
            ColumnType::Timestamp(t) => write!(f, "timestamp({})", t.name()),
            ColumnType::Date(TimeFormat::Auto) => f.write_str("date"),
            ColumnType::Date(t) => write!(f, "date({})", t.name()),
            ColumnType::Binary => f.write_str("binary"),
            ColumnType::Json => f.write_str("json"),
            ColumnType::List(inner) => write!(f, "list<{inner}>"),
        }
    }
}

/// A type text that is not one of the known types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown column type `{0}` (expected string, bigint, int, double, decimal(p,s), boolean, timestamp[(FORMAT)], date[(FORMAT)], binary, json or list<T>; FORMAT is auto, epoch_s, epoch_ms, epoch_us or iso)")]
pub struct BadType(pub String);

impl FromStr for ColumnType {
    type Err = BadType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || BadType(s.to_string());
        Ok(match t.as_str() {
            "string" | "varchar" => ColumnType::String,
            "bigint" | "long" => ColumnType::Bigint,
            "int" | "integer" => ColumnType::Int,
            "double" => ColumnType::Double,
            "boolean" | "bool" => ColumnType::Boolean,
            "timestamp" => ColumnType::Timestamp(TimeFormat::Auto),
            "date" => ColumnType::Date(TimeFormat::Auto),
            "binary" => ColumnType::Binary,
            "json" => ColumnType::Json,
            _ => {
                if let Some(inner) = t.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
                    let inner: ColumnType = inner.parse().map_err(|_| bad())?;
                    if matches!(inner, ColumnType::List(_)) {
                        // Redshift Spectrum forbids arrays of arrays (FORMATS.md 2).
                        return Err(bad());
                    }
                    ColumnType::List(Box::new(inner))
                } else if let Some(f) = t
                    .strip_prefix("timestamp(")
                    .and_then(|r| r.strip_suffix(')'))
                {
                    ColumnType::Timestamp(TimeFormat::parse(f.trim()).ok_or_else(bad)?)
                } else if let Some(f) = t.strip_prefix("date(").and_then(|r| r.strip_suffix(')')) {
                    ColumnType::Date(TimeFormat::parse(f.trim()).ok_or_else(bad)?)
                } else if let Some(args) =
                    t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')'))
                {
                    let (p, s) = args.split_once(',').ok_or_else(bad)?;
                    let precision: u8 = p.trim().parse().map_err(|_| bad())?;
                    let scale: u8 = s.trim().parse().map_err(|_| bad())?;
                    if precision == 0
                        || precision > MAX_DECIMAL_PRECISION
                        || scale > precision.min(37)
                    {
                        return Err(bad());
                    }
                    ColumnType::Decimal { precision, scale }
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

impl serde::Serialize for ColumnType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text() {
        for t in [
            "string",
            "bigint",
            "int",
            "double",
            "decimal(38,9)",
            "boolean",
            "timestamp",
            "timestamp(epoch_ms)",
            "date",
            "date(iso)",
            "binary",
            "json",
            "list<decimal(10,2)>",
        ] {
            let parsed: ColumnType = t.parse().unwrap();
            assert_eq!(parsed.to_string(), t);
        }
    }

    #[test]
    fn rejects_bad_types() {
        for t in [
            "decimal(39,2)",
            "decimal(10,11)",
            "list<list<string>>",
            "map",
            "decimal(38,38)",
        ] {
            assert!(t.parse::<ColumnType>().is_err(), "{t}");
        }
    }

    #[test]
    fn arrow_types_follow_formats_rules() {
        assert_eq!(
            ColumnType::Timestamp(TimeFormat::EpochMillis).arrow(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            "decimal(38,9)".parse::<ColumnType>().unwrap().arrow(),
            DataType::Decimal128(38, 9)
        );
    }
}
