//! The fast decoder against the reference one: for any input the fast decoder accepts, the
//! reference decoder accepts it too and both give the flatten stage the same rows and the same
//! schema; the fast decoder accepts every well-formed record.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{flatten, FlattenOptions, Position, Row};
use crate::decode::{
    parse_export_line, parse_record, ChangeRecord, DecodeError, ExportFormat, ExportMeta,
    ExportType, MapView, RecordView, Tape, TapeMap,
};
use crate::schema::TableSchema;

/// Flattens `raw` with both decoders into two schemas; `None` when the fast decoder declines it.
/// Panics when they disagree.
fn compare(raw: &[u8], opts: FlattenOptions) -> Option<()> {
    let mut tape = Tape::default();
    let head = tape.parse(raw);
    let reference = parse_record(raw);
    let head = head?;
    agree(
        raw,
        tape.view(std::str::from_utf8(raw).unwrap(), &head),
        reference,
        opts,
    );
    Some(())
}

/// Like [`compare`], for a line of the table export `meta` describes.
fn compare_export(raw: &[u8], meta: &ExportMeta, opts: FlattenOptions) -> Option<()> {
    let mut tape = Tape::default();
    let doc = std::str::from_utf8(raw).ok();
    let head = doc.and_then(|doc| tape.parse_export(doc, meta));
    let reference = parse_export_line(raw, meta);
    let head = head?;
    let fast = tape.view_export(doc.unwrap(), &head, meta);
    if let Ok(rec) = &reference {
        let names = |m: Vec<&str>| m.join(",");
        assert_eq!(
            names(fast.keys.entries().map(|(k, _)| k).collect()),
            names(rec.keys.0.iter().map(|(k, _)| k.as_ref()).collect()),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    agree(raw, fast, reference, opts);
    Some(())
}

/// Panics unless the fast decoder's `fast` and the reference's `reference` (of `raw`) flatten
/// alike.
fn agree(
    raw: &[u8],
    fast: RecordView<'_, TapeMap<'_>>,
    reference: Result<ChangeRecord<'_>, DecodeError>,
    opts: FlattenOptions,
) {
    let rec = match &reference {
        Ok(r) => r,
        Err(e) => panic!(
            "fast decoder accepted what the reference refuses ({e}): {}",
            String::from_utf8_lossy(raw)
        ),
    };
    let pos = Position {
        file: Some("f"),
        line: Some(1),
        ..Position::default()
    };
    let (mut a, mut b) = (TableSchema::new("t", None), TableSchema::new("t", None));
    // Twice: the second pass meets the columns the first one added (companions, mismatches).
    for _ in 0..2 {
        let x = flatten(&mut a, &fast, &pos, 7, opts);
        let y = flatten(&mut b, &rec.view(), &pos, 7, opts);
        assert_rows_eq(&x, &y, raw);
    }
    assert_eq!(fast.table, rec.table.as_deref());
    assert_eq!(fast.event_id, rec.event_id.as_deref());
    assert_eq!(fast.operation, rec.operation);
    assert_eq!(fast.event_time_us, rec.event_time_us);
    assert_eq!(
        format!("{:?}", a.columns()),
        format!("{:?}", b.columns()),
        "{}",
        String::from_utf8_lossy(raw)
    );
}

fn assert_rows_eq(x: &Row, y: &Row, raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    assert_eq!(x.cells, y.cells, "{text}");
    assert_eq!(x.mismatched, y.mismatched, "{text}");
    assert_eq!(x.unmapped, y.unmapped, "{text}");
    assert_eq!(x.truncated, y.truncated, "{text}");
    assert_eq!(x.too_long, y.too_long, "{text}");
}

fn record(image: Value) -> Value {
    json!({
        "awsRegion": "us-east-1",
        "eventID": "e-1",
        "eventName": "MODIFY",
        "tableName": "Orders",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_795_000_000_331u64,
            "ApproximateCreationDateTimePrecision": "MILLISECOND",
            "Keys": {"Id": {"S": "k1"}},
            "NewImage": image,
            "OldImage": {"Id": {"S": "k1"}, "Old": {"N": "1"}},
        },
    })
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{0,6}",
        // Escapes, controls, non-ASCII and astral characters.
        "[a-z\"\\\\/\n\t\u{1}é€😀]{0,6}",
        Just("1E+3".to_string()),
        Just("2026-11-22T03:00:00Z".to_string()),
    ]
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        (any::<i32>(), 0u32..1_000_000).prop_map(|(a, b)| format!("{a}.{b}")),
        Just("1e400".to_string()),
        Just("123456789012345678901234567890123456789".to_string()),
    ]
}

fn attr() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        text().prop_map(|s| json!({ "S": s })),
        number().prop_map(|n| json!({ "N": n })),
        prop_oneof![Just("AAE="), Just("!!"), Just("")].prop_map(|b| json!({ "B": b })),
        any::<bool>().prop_map(|b| json!({ "BOOL": b })),
        Just(json!({"NULL": true})),
        prop::collection::vec(text(), 0..3).prop_map(|v| json!({ "SS": v })),
        prop::collection::vec(number(), 0..3).prop_map(|v| json!({ "NS": v })),
        prop::collection::vec(Just("AQ=="), 0..2).prop_map(|v| json!({ "BS": v })),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({ "L": v })),
            prop::collection::btree_map("[a-c]{1,2}", inner, 0..4).prop_map(|m| json!({ "M": m })),
        ]
    })
}

fn image() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[A-Da-b]{1,2}", attr(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// Byte edits that keep most of a record and break or bend the rest.
fn mutate(raw: &[u8], at: usize, edit: u8) -> Vec<u8> {
    let mut v = raw.to_vec();
    let at = at % (v.len() + 1);
    let insert: &[u8] = match edit % 8 {
        0 => b"\"",
        1 => b"\\",
        2 => b"{",
        3 => b" ",
        4 => b"null",
        5 => b"\xff",
        6 => b"\\u00e9",
        _ => b"",
    };
    if edit % 8 == 7 || edit >= 128 {
        if at < v.len() {
            v.remove(at);
        }
    } else {
        v.splice(at..at, insert.iter().copied());
    }
    v
}

proptest! {
    #![proptest_config(crate::test_support::proptest_config())]

    #[test]
    fn fast_and_reference_decoders_flatten_alike(
        new in image(),
        depth in 1usize..5,
        infer in any::<bool>(),
        old in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
    ) {
        let opts = FlattenOptions {
            max_depth: depth,
            infer,
            keep_old_image: old,
            max_columns: 40,
            ..FlattenOptions::default()
        };
        let raw = serde_json::to_vec(&record(new)).unwrap();
        prop_assert!(compare(&raw, opts).is_some(), "declined: {}", String::from_utf8_lossy(&raw));
        let pretty = serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&raw).unwrap()).unwrap();
        prop_assert!(compare(&pretty, opts).is_some());
        let mut bent = raw.clone();
        for (at, edit) in edits {
            bent = mutate(&bent, at, edit);
            compare(&bent, opts);
        }
    }
}

/// An export line with the given fields (each present or not), of any export type's shape.
fn export_line(
    item: Option<Value>,
    micros: Option<Value>,
    keys: Option<Value>,
    new: Option<Value>,
    old: Option<Value>,
) -> Value {
    let mut o = serde_json::Map::new();
    let fields = [
        ("Item", item),
        (
            "Metadata",
            micros.map(|m| json!({ "WriteTimestampMicros": m })),
        ),
        ("Keys", keys),
        ("NewImage", new),
        ("OldImage", old),
    ];
    for (name, value) in fields {
        if let Some(v) = value {
            o.insert(name.to_string(), v);
        }
    }
    Value::Object(o)
}

fn export_meta(full: bool, keys: u8, new_images_only: bool) -> ExportMeta {
    ExportMeta {
        table: "Orders".into(),
        export_id: "01700000000000-abcd1234".into(),
        export_time_us: 1_795_000_000_123_000,
        export_type: if full {
            ExportType::Full
        } else {
            ExportType::Incremental
        },
        format: ExportFormat::DynamoDbJson,
        new_images_only,
        keys: match keys % 3 {
            0 => None,
            1 => Some(vec!["A".into()]),
            _ => Some(vec!["b".into(), "A".into(), "Zz".into()]),
        },
    }
}

proptest! {
    #![proptest_config(crate::test_support::proptest_config())]

    #[test]
    fn fast_and_reference_decoders_read_export_lines_alike(
        item in prop::option::of(image()),
        micros in prop::option::of(prop_oneof![
            any::<i64>().prop_map(|n| json!({ "N": n.to_string() })),
            Just(json!({"N": "1.5"})),
            Just(json!({"S": "1"})),
            Just(Value::Null),
        ]),
        keys in prop::option::of(image()),
        new in prop::option::of(image()),
        old in prop::option::of(image()),
        (full, key_names, new_only) in (any::<bool>(), any::<u8>(), any::<bool>()),
        infer in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>()), 0..3),
    ) {
        let opts = FlattenOptions { infer, max_columns: 40, ..FlattenOptions::default() };
        let meta = export_meta(full, key_names, new_only);
        let integer = |m: &Value| m["N"].as_str().is_some_and(|n| n.parse::<i64>().is_ok());
        // Every export type reads the time when there is one.
        let time_ok = micros.as_ref().is_none_or(|m| m.is_null() || integer(m));
        let well_formed = time_ok && if full {
            item.is_some()
        } else {
            keys.is_some() && micros.as_ref().is_some_and(integer)
        };
        let raw = serde_json::to_vec(&export_line(item, micros, keys, new, old)).unwrap();
        let read = compare_export(&raw, &meta, opts).is_some();
        prop_assert!(read || !well_formed, "declined: {}", String::from_utf8_lossy(&raw));
        let mut bent = raw.clone();
        for (at, edit) in edits {
            bent = mutate(&bent, at, edit);
            compare_export(&bent, &meta, opts);
        }
    }
}

#[test]
fn declines_what_the_reference_refuses_or_reads_differently() {
    let base = record(json!({"A": {"S": "x"}})).to_string();
    let cases = [
        base.replace(
            r#""eventName":"MODIFY""#,
            r#""eventName":"MODIFY","eventName":"INSERT""#,
        ),
        base.replace(r#"{"S":"x"}"#, r#"{"S":"x","N":"1"}"#),
        base.replace(r#"{"S":"x"}"#, r#"{}"#),
        base.replace(r#"{"S":"x"}"#, r#"{"NULL":false}"#),
        base.replace(r#"{"S":"x"}"#, r#"{"Q":"x"}"#),
        base.replace(r#"{"S":"x"}"#, r#"{"S":1}"#),
        base.replace(r#"{"S":"x"}"#, r#"{"SS":[1]}"#),
        base.replace(r#""x""#, "\"\\ud800\""),
        base.replace(r#""x""#, "\"a\u{1}\""),
        base.replace("1795000000331", r#""1795000000331""#),
        base.replace("1795000000331", "12"),
        base.replace(r#""MODIFY""#, r#""UPSERT""#),
        format!("{base} x"),
        format!("[{base}]"),
        base.replace(
            r#""awsRegion""#,
            r#""userIdentity":{"type":"Service","Type":"x"},"awsRegion""#,
        ),
        base.replace(r#"{"Id":{"S":"k1"}}"#, "null"),
    ];
    for case in &cases {
        assert!(
            Tape::default().parse(case.as_bytes()).is_none(),
            "accepted: {case}"
        );
    }
}

#[test]
fn reads_escapes_nulls_and_identities_as_the_reference_does() {
    let opts = FlattenOptions::default();
    let base = record(json!({"A": {"S": "x"}})).to_string();
    let cases = [
        base.replace(r#""x""#, r#""tab\tq\"é\u00e9\ud83d\ude00\/""#),
        base.replace(r#""A""#, r#""\u0041b""#),
        base.replace(r#""eventName""#, r#""event\u004eame""#),
        base.replace(r#""eventID":"e-1""#, r#""eventID":null"#),
        base.replace(r#""tableName":"Orders""#, r#""eventSourceARN":"arn:aws:dynamodb:r:1:table/T/stream/x""#),
        base.replace(r#""tableName":"Orders""#, r#""tableName":null"#),
        base.replace(r#""awsRegion""#, r#""userIdentity":{"Type":"Service","PrincipalId":"dynamodb.amazonaws.com"},"awsRegion""#),
        base.replace(r#""awsRegion""#, r#""userIdentity":null,"awsRegion""#),
        base.replace(r#""NewImage""#, r#""SequenceNumber":"42","NewImage""#),
        base.replace(r#"{"A":{"S":"x"}}"#, "null"),
        base.replace("1795000000331", "1795000000.25"),
        base.replace(r#""MODIFY""#, r#""REMOVE""#),
        format!(" \n{base}\t"),
    ];
    for case in &cases {
        assert!(compare(case.as_bytes(), opts).is_some(), "declined: {case}");
    }
}

#[test]
fn declines_export_lines_the_reference_refuses() {
    let full = export_meta(true, 1, false);
    let incremental = export_meta(false, 0, false);
    let cases = [
        (r#"{"Item":{"A":{"S":"x"}},"Item":{"A":{"S":"y"}}}"#, &full),
        (r#"{"Item":[{"A":{"S":"x"}}]}"#, &full),
        (r#"{"Item":{"A":{"S":"x"}},"Keys":{"A":1}}"#, &full),
        (r#"{"OldImage":{"A":{"S":"x"}}}"#, &full),
        (
            r#"{"Metadata":{"WriteTimestampMicros":{"N":"1"},"WriteTimestampMicros":{"N":"2"}},"Keys":{}}"#,
            &incremental,
        ),
        (
            r#"{"Metadata":{"WriteTimestampMicros":{"N":"1e3"}},"Keys":{}}"#,
            &incremental,
        ),
        (
            r#"{"Metadata":{"WriteTimestampMicros":{"N":"1"}}}"#,
            &incremental,
        ),
    ];
    for (line, meta) in cases {
        assert!(
            Tape::default().parse_export(line, meta).is_none(),
            "accepted: {line}"
        );
        assert!(parse_export_line(line.as_bytes(), meta).is_err(), "{line}");
    }
    // What it reads: a full export's keys by name, in the manifest's order, whatever the item's.
    let keyed = export_meta(true, 2, false);
    let line = r#"{"Item":{"A":{"M":{"x":{"L":[{"N":"1"}]}}},"b":{"S":"k"},"c":{"N":"2"}}}"#;
    assert!(compare_export(line.as_bytes(), &keyed, FlattenOptions::default()).is_some());
    let mut tape = Tape::default();
    let head = tape.parse_export(line, &keyed).unwrap();
    let rec = tape.view_export(line, &head, &keyed);
    let names: Vec<&str> = rec.keys.entries().map(|(k, _)| k).collect();
    assert_eq!(names, ["b", "A"]);
}
