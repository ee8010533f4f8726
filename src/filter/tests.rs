use serde_json::json;

use super::*;
use crate::decode::parse_record;

fn event() -> Value {
    json!({
        "eventName": "MODIFY",
        "tableName": "Orders",
        "dynamodb": {
            "Keys": {"id": {"S": "ORD-1"}},
            "NewImage": {"id": {"S": "ORD-1"}, "status": {"S": "PAID"}, "tags": {"SS": ["a", "vip"]}},
            "ApproximateCreationDateTime": 1795680000
        }
    })
}

fn m(p: Value) -> bool {
    check_pattern(&p).unwrap();
    matches(&p, &event())
}

#[test]
fn values_prefixes_suffixes_and_case() {
    assert!(m(
        json!({"dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}})
    ));
    assert!(!m(
        json!({"dynamodb": {"NewImage": {"status": {"S": ["SHIPPED"]}}}})
    ));
    assert!(m(json!({"eventName": ["INSERT", "MODIFY"]})));
    assert!(m(
        json!({"dynamodb": {"Keys": {"id": {"S": [{"prefix": "ORD-"}]}}}})
    ));
    assert!(m(
        json!({"dynamodb": {"Keys": {"id": {"S": [{"suffix": "-1"}]}}}})
    ));
    assert!(m(
        json!({"dynamodb": {"Keys": {"id": {"S": [{"prefix": {"equals-ignore-case": "ord-"}}]}}}})
    ));
    assert!(m(json!({"tableName": [{"equals-ignore-case": "orders"}]})));
    assert!(m(json!({"tableName": [{"wildcard": "Or*s"}]})));
    assert!(!m(json!({"tableName": [{"wildcard": "Or*x"}]})));
    // A field that is a list matches when any element does.
    assert!(m(
        json!({"dynamodb": {"NewImage": {"tags": {"SS": ["vip"]}}}})
    ));
}

#[test]
fn anything_but_numeric_exists_and_or() {
    assert!(m(json!({"eventName": [{"anything-but": "REMOVE"}]})));
    assert!(!m(
        json!({"eventName": [{"anything-but": ["MODIFY", "REMOVE"]}]})
    ));
    assert!(m(
        json!({"eventName": [{"anything-but": {"prefix": "INS"}}]})
    ));
    assert!(m(
        json!({"dynamodb": {"ApproximateCreationDateTime": [{"numeric": [">=", 1795680000, "<", 1795690000]}]}})
    ));
    assert!(!m(
        json!({"dynamodb": {"ApproximateCreationDateTime": [{"numeric": ["<", 5]}]}})
    ));
    assert!(m(
        json!({"dynamodb": {"NewImage": {"status": {"S": [{"exists": true}]}}}})
    ));
    assert!(m(
        json!({"dynamodb": {"NewImage": {"gone": {"S": [{"exists": false}]}}}})
    ));
    assert!(!m(
        json!({"dynamodb": {"NewImage": {"status": {"S": [{"exists": false}]}}}})
    ));
    // `exists` is for leaves: an object is not one.
    assert!(!m(
        json!({"dynamodb": {"NewImage": {"status": [{"exists": true}]}}})
    ));
    assert!(m(
        json!({"$or": [{"eventName": ["INSERT"]}, {"dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}}]})
    ));
    assert!(!m(
        json!({"$or": [{"eventName": ["INSERT"]}, {"tableName": ["Users"]}]})
    ));
    // A field the event lacks does not match a value.
    assert!(!m(json!({"awsRegion": ["us-east-1"]})));
}

#[test]
fn bad_patterns_are_refused_with_their_place() {
    let bad = |p: &str| {
        Filter::new(&[], &[], &["{}".into(), p.into()])
            .unwrap_err()
            .to_string()
    };
    assert!(bad("{\"a\": [").contains("pattern 2"));
    assert!(bad("[1]").contains("a pattern is a JSON object"));
    assert!(bad("{\"a\": \"x\"}").contains("non-empty list"));
    assert!(bad("{\"a\": [{\"regex\": \"x\"}]}").contains("unknown matcher `regex`"));
    assert!(bad("{\"a\": [{\"numeric\": [\">\"]}]}").contains("bad argument"));
    let op = Filter::new(&[], &["UPSERT".into()], &[]).unwrap_err();
    assert!(op.to_string().contains("UPSERT"));
}

#[test]
fn a_record_is_seen_as_a_dynamodb_streams_record_whatever_its_source() {
    // A Kinesis-for-DynamoDB record, and a Kinesis event source mapping's pattern (under `data`).
    let raw = br#"{"awsRegion":"us-east-1","eventID":"e1","eventName":"REMOVE","userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"},"recordFormat":"application/json","tableName":"Orders","dynamodb":{"ApproximateCreationDateTime":1795680000123,"Keys":{"id":{"S":"ORD-1"}},"OldImage":{"id":{"S":"ORD-1"},"n":{"N":"5"},"b":{"B":"AAE="},"m":{"M":{"x":{"NULL":true}}}}},"eventSource":"aws:dynamodb"}"#;
    let rec = parse_record(raw).unwrap();
    let view = stream_view(&rec, "Orders");
    assert_eq!(view["dynamodb"]["ApproximateCreationDateTime"], 1795680000);
    assert_eq!(view["dynamodb"]["OldImage"]["n"], json!({"N": "5"}));
    assert_eq!(view["dynamodb"]["OldImage"]["b"], json!({"B": "AAE="}));
    assert_eq!(
        view["dynamodb"]["OldImage"]["m"],
        json!({"M": {"x": {"NULL": true}}})
    );
    assert_eq!(
        view["userIdentity"]["principalId"],
        "dynamodb.amazonaws.com"
    );
    let f = |p: &str| Filter::new(&[], &[], &[p.into()]).unwrap();
    assert!(
        f(r#"{"data": {"userIdentity": {"principalId": ["dynamodb.amazonaws.com"]}}}"#)
            .passes(&rec, "Orders")
    );
    assert!(!f(r#"{"eventName": ["INSERT"]}"#).passes(&rec, "Orders"));
    // Tables and operations; every condition that is set must hold.
    let t = Filter::new(&["Users".into()], &[], &[]).unwrap();
    assert!(!t.passes(&rec, "Orders"));
    let o = Filter::new(&["Orders".into()], &["remove".into()], &[]).unwrap();
    assert!(o.passes(&rec, "Orders"));
    assert!(Filter::default().is_empty() && Filter::default().fingerprint().is_none());
    assert_ne!(o.fingerprint(), t.fingerprint());
}
