//! An item's identity in the change log: its key attributes' values, read from their columns
//! (a value that did not fit a column's type is in its companion, `NAME_str`), as bytes that
//! sort the way the values do, and a stable hash of them that picks the item's bucket.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::schema::{Image, Source, TableSchema};

/// Where a table's key attributes are: per attribute, its column's and its companion's names.
#[derive(Debug, Clone)]
pub(crate) struct KeyColumns {
    parts: Vec<(String, Option<String>)>,
}

impl KeyColumns {
    /// The key columns of `schema` (its remembered key attributes, or `names`); `None` when the
    /// key is not known, or an attribute of it has no column (it would be in `cdc_unmapped`).
    pub(crate) fn of(schema: &TableSchema, names: Option<&[String]>) -> Result<Self, String> {
        let names = names.or(schema.keys()).ok_or_else(|| {
            format!(
                "table {}: its key attributes are not known (no change record has said them yet): give them with --key",
                schema.table
            )
        })?;
        let cols = schema.columns();
        let parts = names
            .iter()
            .map(|name| {
                let i = cols
                    .iter()
                    .position(|c| {
                        matches!(&c.source, Source::Attr { image: Image::New, path }
                            if path.len() == 1 && &path[0] == name)
                    })
                    .ok_or_else(|| {
                        format!("table {}: key attribute {name} has no column", schema.table)
                    })?;
                let companion = cols
                    .iter()
                    .find(|c| matches!(c.source, Source::Companion(of) if of == i))
                    .map(|c| c.name.clone());
                if !encodable(&cols[i].ty.arrow()) {
                    return Err(format!(
                        "table {}: key attribute {name} is in column {} of type {}, which cannot key an item",
                        schema.table, cols[i].name, cols[i].ty
                    ));
                }
                Ok((cols[i].name.clone(), companion))
            })
            .collect::<Result<_, String>>()?;
        Ok(KeyColumns { parts })
    }

    /// Each key attribute's column and its companion, if any.
    pub(crate) fn parts(&self) -> &[(String, Option<String>)] {
        &self.parts
    }

    /// Each row's key as order-preserving bytes; `None` for a row missing a key value.
    pub(crate) fn keys(&self, batch: &RecordBatch) -> Vec<Option<Vec<u8>>> {
        let cols: Vec<(Option<&ArrayRef>, Option<&ArrayRef>)> = self
            .parts
            .iter()
            .map(|(c, comp)| {
                (
                    batch.column_by_name(c),
                    comp.as_ref().and_then(|n| batch.column_by_name(n)),
                )
            })
            .collect();
        (0..batch.num_rows())
            .map(|row| {
                let mut out = Vec::with_capacity(24);
                for (col, comp) in &cols {
                    match (col, comp) {
                        (Some(c), _) if c.is_valid(row) => {
                            out.push(1);
                            encode(c, row, &mut out)?;
                        }
                        (_, Some(c)) if c.is_valid(row) => {
                            out.push(2);
                            encode(c, row, &mut out)?;
                        }
                        _ => return None,
                    }
                }
                Some(out)
            })
            .collect()
    }
}

/// Whether values of `t` can be part of a key (every type a key attribute's column can have:
/// DynamoDB keys are strings, numbers and binary, and a schema file may read a string as a time).
fn encodable(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::Binary
            | DataType::Int64
            | DataType::Int32
            | DataType::Decimal128(_, _)
            | DataType::Float64
            | DataType::Date32
            | DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _)
            | DataType::Boolean
    )
}

/// Appends value `row` of `a` in an order-preserving form: integers and decimals big-endian
/// with the sign bit flipped; text and bytes with 0x00 escaped as 0x00 0xFF and ended by
/// 0x00 0x00, so that a prefix sorts first.
fn encode(a: &ArrayRef, row: usize, out: &mut Vec<u8>) -> Option<()> {
    let bytes = |b: &[u8], out: &mut Vec<u8>| {
        for &x in b {
            out.push(x);
            if x == 0 {
                out.push(0xFF);
            }
        }
        out.extend_from_slice(&[0, 0]);
    };
    match a.data_type() {
        DataType::Utf8 => bytes(a.as_string::<i32>().value(row).as_bytes(), out),
        DataType::Binary => bytes(a.as_binary::<i32>().value(row), out),
        DataType::Int64 => {
            let v = a.as_primitive::<Int64Type>().value(row);
            out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
        }
        DataType::Int32 => {
            let v = a.as_primitive::<Int32Type>().value(row);
            out.extend_from_slice(&((v as u32) ^ (1 << 31)).to_be_bytes());
        }
        DataType::Decimal128(_, _) => {
            let v = a.as_primitive::<Decimal128Type>().value(row);
            out.extend_from_slice(&((v as u128) ^ (1 << 127)).to_be_bytes());
        }
        DataType::Float64 => {
            // IEEE 754's total order: negatives with every bit flipped, the rest with the sign.
            let b = a.as_primitive::<Float64Type>().value(row).to_bits();
            let ordered = if b >> 63 == 1 { !b } else { b ^ (1 << 63) };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        DataType::Date32 => {
            let v = a.as_primitive::<Date32Type>().value(row);
            out.extend_from_slice(&((v as u32) ^ (1 << 31)).to_be_bytes());
        }
        DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, _) => {
            let v = a.as_primitive::<TimestampMicrosecondType>().value(row);
            out.extend_from_slice(&((v as u64) ^ (1 << 63)).to_be_bytes());
        }
        DataType::Boolean => out.push(u8::from(a.as_boolean().value(row))),
        _ => return None,
    }
    Some(())
}

/// FNV-1a, 64 bits: a hash that stays the same across runs, machines and versions (an item's
/// bucket is kept from one snapshot to the next), unlike the standard library's.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ColumnType;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn keys_come_from_the_columns_and_their_companions_and_sort_as_values() {
        let mut s = TableSchema::new("T", None);
        let pk = s
            .add_attr_column(Image::New, &["Pk"], ColumnType::Bigint, 100)
            .unwrap();
        s.add_attr_column(Image::New, &["Sk"], ColumnType::String, 100)
            .unwrap();
        let companion = s.companion(pk, 100).unwrap();
        assert!(KeyColumns::of(&s, None).is_err(), "no key known yet");
        s.learn_keys(&["Pk", "Sk"]);
        let k = KeyColumns::of(&s, None).unwrap();
        let companion_name = s.columns()[companion].name.clone();
        assert_eq!(
            k.parts(),
            [
                ("pk".to_string(), Some(companion_name.clone())),
                ("sk".to_string(), None)
            ]
        );
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("pk", DataType::Int64, true),
                Field::new(&companion_name, DataType::Utf8, true),
                Field::new("sk", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![
                    Some(-5),
                    Some(3),
                    Some(3),
                    None,
                    None,
                ])),
                Arc::new(StringArray::from(vec![None, None, None, Some("1.5"), None])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("a\0b"),
                    Some("a"),
                    Some("z"),
                    Some("q"),
                ])),
            ],
        )
        .unwrap();
        let keys = k.keys(&batch);
        assert_eq!(keys[4], None, "no key value: no key");
        let (neg, a, a0b) = (
            keys[0].clone().unwrap(),
            keys[2].clone().unwrap(),
            keys[1].clone().unwrap(),
        );
        assert!(neg < a, "-5 before 3");
        assert!(a < a0b, "a prefix first");
        assert_ne!(keys[3], keys[0], "a companion's value is another key");
        assert_ne!(stable_hash(&a), stable_hash(&a0b));
        assert_eq!(
            stable_hash(b"abc"),
            0xe71f_a219_0541_574b,
            "FNV-1a as published"
        );
    }

    #[test]
    fn numbers_and_times_sort_as_values_and_other_types_are_refused() {
        let f: ArrayRef = Arc::new(arrow_array::Float64Array::from(vec![-2.5, -0.5, 0.0, 3.0]));
        let enc = |a: &ArrayRef, i| {
            let mut v = Vec::new();
            encode(a, i, &mut v).unwrap();
            v
        };
        assert!(enc(&f, 0) < enc(&f, 1) && enc(&f, 1) < enc(&f, 2) && enc(&f, 2) < enc(&f, 3));
        let d: ArrayRef = Arc::new(arrow_array::Date32Array::from(vec![-3, 5]));
        assert!(enc(&d, 0) < enc(&d, 1));
        let mut s = TableSchema::new("T", None);
        s.add_attr_column(Image::New, &["Doc"], ColumnType::Json, 100)
            .unwrap();
        let list = ColumnType::List(Box::new(ColumnType::String));
        s.add_attr_column(Image::New, &["Tags"], list, 100).unwrap();
        s.learn_keys(&["Tags"]);
        let err = KeyColumns::of(&s, None).unwrap_err();
        assert!(err.contains("cannot key an item"), "{err}");
    }
}
