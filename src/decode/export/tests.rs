use super::*;
use crate::decode::AttrValue as A;

fn meta(export_type: ExportType, format: ExportFormat) -> ExportMeta {
    ExportMeta {
        table: "Orders".into(),
        export_id: "01700000000000-abcd1234".into(),
        export_time_us: 1_795_000_000_123_000,
        export_type,
        format,
        new_images_only: false,
        keys: None,
    }
}

#[test]
fn a_full_json_line_is_a_snapshot_at_the_export_time() {
    let m = meta(ExportType::Full, ExportFormat::DynamoDbJson);
    let line = br#"{"Item":{"Id":{"N":"7"},"Name":{"S":"a\"b"},"Tags":{"SS":["x","y"]}}}"#;
    let r = parse_export_line(line, &m).unwrap();
    assert_eq!(r.operation, Operation::Snapshot);
    assert_eq!(r.operation.as_str(), "SNAPSHOT");
    assert_eq!(r.event_time_us, m.export_time_us);
    assert_eq!(r.event_id.as_deref(), Some("01700000000000-abcd1234"));
    assert_eq!(r.table.as_deref(), Some("Orders"));
    assert!(r.keys.0.is_empty(), "the key attributes are not known");
    let item = r.new_image.unwrap();
    assert_eq!(item.get("Name"), Some(&A::S("a\"b".into())));
    assert_eq!(item.get("Tags"), Some(&A::Ss(vec!["x".into(), "y".into()])));
    // Known key attributes are the row's Keys, taken from its item.
    let keyed = ExportMeta {
        keys: Some(vec!["Id".into()]),
        ..m.clone()
    };
    let r = parse_export_line(line, &keyed).unwrap();
    assert_eq!(r.keys.0, vec![("Id".into(), A::N("7".into()))]);
}

#[test]
fn incremental_lines_map_to_insert_modify_and_remove() {
    let m = meta(ExportType::Incremental, ExportFormat::DynamoDbJson);
    let op =
        |line: &str, m: &ExportMeta| parse_export_line(line.as_bytes(), m).map(|r| r.operation);
    let meta_ts = r#""Metadata":{"WriteTimestampMicros":{"N":"1795000000654321"}}"#;
    let keys = r#""Keys":{"Id":{"N":"1"}}"#;
    let insert = format!(r#"{{{meta_ts},{keys},"NewImage":{{"Id":{{"N":"1"}}}}}}"#);
    let modify = format!(
        r#"{{{meta_ts},{keys},"NewImage":{{"Id":{{"N":"1"}}}},"OldImage":{{"Id":{{"N":"1"}}}}}}"#
    );
    let remove = format!(r#"{{{meta_ts},{keys},"OldImage":{{"Id":{{"N":"1"}}}}}}"#);
    let keys_only = format!(r#"{{{meta_ts},{keys}}}"#);
    assert_eq!(op(&insert, &m), Ok(Operation::Insert));
    assert_eq!(op(&modify, &m), Ok(Operation::Modify));
    assert_eq!(op(&remove, &m), Ok(Operation::Remove));
    assert_eq!(op(&keys_only, &m), Ok(Operation::Remove));
    let r = parse_export_line(insert.as_bytes(), &m).unwrap();
    assert_eq!(r.event_time_us, 1_795_000_000_654_321);
    assert_eq!(r.keys.get("Id"), Some(&A::N("1".into())));
    // A NEW_IMAGE export cannot tell a new item from a changed one.
    let new_only = ExportMeta {
        new_images_only: true,
        ..m.clone()
    };
    assert_eq!(op(&insert, &new_only), Ok(Operation::Modify));
    // No write time: the line goes to the error output.
    let err = parse_export_line(format!(r#"{{{keys}}}"#).as_bytes(), &m).unwrap_err();
    assert_eq!(err.reason, Reason::NoEventTime);
    // A full export's shape in an incremental export, and the other way round.
    let full = meta(ExportType::Full, ExportFormat::DynamoDbJson);
    assert_eq!(
        parse_export_line(insert.as_bytes(), &full)
            .unwrap_err()
            .reason,
        Reason::InvalidRecord
    );
    assert_eq!(
        parse_export_line(br#"{"Item":{}}"#, &m).unwrap_err().reason,
        Reason::NoEventTime
    );
}

#[test]
fn ion_lines_map_every_type() {
    let m = meta(ExportType::Full, ExportFormat::Ion);
    let line = br#"$ion_1_0 {Item:{Id:7.,Amount:12.50,Big:1d40,Tiny:-15d-3,Name:"x",Ok:true,Gone:null,Raw:{{AAE=}},Tags:$dynamodb_SS::["b","a"],Nums:$dynamodb_NS::[1.,2.5],Bins:$dynamodb_BS::[{{AQ==}}],L:[1,"s",[true]],M:{a:{b:"c"}}}}"#;
    let r = parse_export_line(line, &m).unwrap();
    let item = r.new_image.unwrap();
    let get = |k: &str| item.get(k).cloned().unwrap();
    assert_eq!(get("Id"), A::N("7".into()));
    assert_eq!(get("Amount"), A::N("12.5".into()));
    assert_eq!(get("Big"), A::N("1E+40".into()));
    assert_eq!(get("Tiny"), A::N("-0.015".into()));
    assert_eq!(get("Name"), A::S("x".into()));
    assert_eq!(get("Ok"), A::Bool(true));
    assert_eq!(get("Gone"), A::Null);
    assert_eq!(get("Raw"), A::B("AAE=".into()));
    assert_eq!(get("Tags"), A::Ss(vec!["b".into(), "a".into()]));
    assert_eq!(get("Nums"), A::Ns(vec!["1".into(), "2.5".into()]));
    assert_eq!(get("Bins"), A::Bs(vec!["AQ==".into()]));
    assert_eq!(
        get("L"),
        A::L(vec![
            A::N("1".into()),
            A::S("s".into()),
            A::L(vec![A::Bool(true)])
        ])
    );
    let A::M(map) = get("M") else { panic!() };
    assert_eq!(
        map.get_path(&["a".into(), "b".into()]),
        Some(&A::S("c".into()))
    );
    // Incremental Ion: the write time is an int.
    let inc = meta(ExportType::Incremental, ExportFormat::Ion);
    let line =
        br#"{Metadata:{WriteTimestampMicros:1795000000000001},Keys:{Id:1.},OldImage:{Id:1.}}"#;
    let r = parse_export_line(line, &inc).unwrap();
    assert_eq!(
        (r.operation, r.event_time_us),
        (Operation::Remove, 1_795_000_000_000_001)
    );
    // Bad Ion, two values, a timestamp value, an unknown set annotation.
    let reason = |l: &str| parse_export_line(l.as_bytes(), &m).unwrap_err().reason;
    assert_eq!(reason("{Item:{a:"), Reason::InvalidJson);
    assert_eq!(reason("{Item:{}} {Item:{}}"), Reason::InvalidRecord);
    assert_eq!(reason("{Item:{t:2020-01-01T}}"), Reason::UnknownType);
    assert_eq!(reason("{Item:{t:$dynamodb_XS::[1]}}"), Reason::UnknownType);
}

#[test]
fn ion_numbers_keep_every_digit() {
    let n = |c: i64, e: i64| ion_number(&ion_rs::Decimal::new(c, e));
    assert_eq!(n(0, 5), "0");
    assert_eq!(n(-0, -2), "0");
    assert_eq!(n(12345, -2), "123.45");
    assert_eq!(n(5, -3), "0.005");
    assert_eq!(n(-5, 2), "-500");
    assert_eq!(n(100, -2), "1");
    assert_eq!(n(1, -130), "1E-130");
    assert_eq!(n(999, 123), "999E+123");
}
