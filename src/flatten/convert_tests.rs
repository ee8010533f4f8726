//! Tests of the per-type conversions and the JSON rendering.

use super::*;
use crate::decode::{AttrValue, Item};
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

proptest! {
    #![proptest_config(crate::test_support::proptest_config())]
    #[test]
    fn escapes_as_serde_json_does(s in "[a-z\"\\\\/\u{0}-\u{1f}\u{7f}é😀]{0,12}") {
        let mut out = String::new();
        push_json_str(&mut out, &s);
        prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
    }
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
