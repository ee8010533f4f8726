//! DynamoDB Streams records from the SDK's types: read as they are into the decoder's
//! [`ChangeRecord`] (`change_record`: strings borrowed, no JSON text in between), and written
//! as the DynamoDB Streams JSON record, the shape a Lambda trigger receives (`record_json`),
//! which the error output keeps and which the reference decoder reads when `change_record`
//! declines a record.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record, StreamRecord};
use base64::Engine as _;
use serde_json::Value;

use crate::decode::record::{event_time_us, table_from_arn};
use crate::decode::{AttrValue, ChangeRecord, Item, Operation};
use crate::kinesis::{ApiError, KinesisRecord, SdkRecord};

/// One SDK record as a [`KinesisRecord`] that carries it as it is.
pub fn to_record(r: Record, arn: &Arc<str>, shard: &str) -> Result<KinesisRecord, ApiError> {
    let ddb = r.dynamodb();
    let sequence_number = ddb
        .and_then(|d| d.sequence_number())
        .ok_or_else(|| {
            ApiError::Fatal(format!(
                "shard {shard}: a record without a sequence number (event {})",
                r.event_id().unwrap_or("?")
            ))
        })?
        .to_string();
    let created = ddb.and_then(|d| d.approximate_creation_date_time());
    let arrival_ms = created.and_then(|t| t.to_millis().ok()).unwrap_or_default();
    Ok(KinesisRecord {
        sequence_number,
        data: Default::default(),
        arrival_ms,
        sdk: Some(Arc::new(SdkRecord {
            record: r,
            arn: arn.clone(),
        })),
    })
}

/// Attribute nesting `change_record` reads; deeper records (DynamoDB allows 32 levels) go
/// through `record_json` to the reference decoder, whose limit decides.
const MAX_DEPTH: usize = 32;

/// The change record `r` stands for, exactly as the reference decoder reads its
/// [`record_json`], but with no JSON text in between: strings are borrowed from the SDK's, each
/// map's names sorted as the JSON's are, binary as base64 text as in the JSON. `None` for what
/// the reference decoder would refuse (no time, no keys, an unknown operation or attribute
/// type, `NULL: false`) or might read differently (nesting past [`MAX_DEPTH`]): the caller then
/// writes the JSON and runs the reference decoder, whose error the error output keeps.
pub fn change_record<'a>(r: &'a SdkRecord) -> Option<ChangeRecord<'a>> {
    let (rec, arn) = (&r.record, &*r.arn);
    let operation = match rec.event_name()? {
        OperationType::Insert => Operation::Insert,
        OperationType::Modify => Operation::Modify,
        OperationType::Remove => Operation::Remove,
        _ => return None,
    };
    let d = rec.dynamodb()?;
    // As `stream_record` writes it: whole seconds, or seconds with a fraction, which go through
    // their JSON text as the reference decoder reads them (serde_json's parse of the shortest
    // text can be one unit in the last place off the f64 written).
    let t = d.approximate_creation_date_time()?;
    let time = if t.subsec_nanos() == 0 {
        serde_json::Number::from(t.secs())
    } else {
        let text = serde_json::to_string(&t.as_secs_f64()).ok()?;
        serde_json::from_str::<serde_json::Number>(&text).ok()?
    };
    let image = |m: Option<&'a HashMap<String, AttributeValue>>| match m {
        Some(m) => read_item(m, 0).map(Some),
        None => Some(None),
    };
    let ttl_delete = rec.user_identity().is_some_and(|u| {
        u.r#type() == Some("Service") && u.principal_id() == Some("dynamodb.amazonaws.com")
    });
    Some(ChangeRecord {
        operation,
        event_id: rec.event_id().map(Cow::Borrowed),
        table: table_from_arn(arn).map(Cow::Borrowed),
        event_time_us: event_time_us(&time, None, true)?,
        ttl_delete,
        sequence_number: d.sequence_number().map(Cow::Borrowed),
        keys: read_item(d.keys()?, 0)?,
        new_image: image(d.new_image())?,
        old_image: image(d.old_image())?,
    })
}

fn read_item(m: &HashMap<String, AttributeValue>, depth: usize) -> Option<Item<'_>> {
    let mut out = Vec::with_capacity(m.len());
    for (name, v) in m {
        out.push((Cow::Borrowed(name.as_str()), attr_value(v, depth)?));
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Some(Item(out))
}

fn attr_value<'a>(v: &'a AttributeValue, depth: usize) -> Option<AttrValue<'a>> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let text = |v: &'a [String]| v.iter().map(|s| Cow::Borrowed(s.as_str())).collect();
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    };
    Some(match v {
        AttributeValue::S(s) => AttrValue::S(Cow::Borrowed(s)),
        AttributeValue::N(n) => AttrValue::N(Cow::Borrowed(n)),
        AttributeValue::B(b) => AttrValue::B(b64(b)),
        AttributeValue::Bool(b) => AttrValue::Bool(*b),
        AttributeValue::Null(true) => AttrValue::Null,
        AttributeValue::Ss(v) => AttrValue::Ss(text(v)),
        AttributeValue::Ns(v) => AttrValue::Ns(text(v)),
        AttributeValue::Bs(v) => AttrValue::Bs(v.iter().map(b64).collect()),
        AttributeValue::L(v) => AttrValue::L(
            v.iter()
                .map(|a| attr_value(a, depth + 1))
                .collect::<Option<_>>()?,
        ),
        AttributeValue::M(m) => AttrValue::M(read_item(m, depth + 1)?),
        _ => return None,
    })
}

/// The DynamoDB Streams JSON record (the shape Lambda receives). Object keys are sorted, so
/// the same record always gives the same bytes.
pub fn record_json(r: &Record, arn: &str) -> Vec<u8> {
    let mut o = BTreeMap::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.to_string(), v);
        }
    };
    let text = |s: Option<&str>| s.map(|s| Value::String(s.to_string()));
    put("eventID", text(r.event_id()));
    put("eventName", text(r.event_name().map(|n| n.as_str())));
    put("eventVersion", text(r.event_version()));
    put(
        "eventSource",
        text(Some(r.event_source().unwrap_or("aws:dynamodb"))),
    );
    put("awsRegion", text(r.aws_region()));
    put("eventSourceARN", text(Some(arn)));
    put(
        "userIdentity",
        r.user_identity().map(|u| {
            let mut id = BTreeMap::new();
            if let Some(t) = u.r#type() {
                id.insert("type".to_string(), Value::String(t.to_string()));
            }
            if let Some(p) = u.principal_id() {
                id.insert("principalId".to_string(), Value::String(p.to_string()));
            }
            object(id)
        }),
    );
    put("dynamodb", r.dynamodb().map(stream_record));
    serde_json::to_vec(&object(o)).unwrap_or_default()
}

fn stream_record(d: &StreamRecord) -> Value {
    let mut o = BTreeMap::new();
    if let Some(t) = d.approximate_creation_date_time() {
        // Seconds, as DynamoDB Streams gives them (a fraction only when there is one).
        let v = if t.subsec_nanos() == 0 {
            Value::from(t.secs())
        } else {
            Value::from(t.as_secs_f64())
        };
        o.insert("ApproximateCreationDateTime".to_string(), v);
    }
    for (name, image) in [
        ("Keys", d.keys()),
        ("NewImage", d.new_image()),
        ("OldImage", d.old_image()),
    ] {
        if let Some(image) = image {
            o.insert(name.to_string(), item(image));
        }
    }
    if let Some(s) = d.sequence_number() {
        o.insert("SequenceNumber".to_string(), Value::String(s.to_string()));
    }
    if let Some(n) = d.size_bytes() {
        o.insert("SizeBytes".to_string(), Value::from(n));
    }
    if let Some(v) = d.stream_view_type() {
        o.insert(
            "StreamViewType".to_string(),
            Value::String(v.as_str().to_string()),
        );
    }
    object(o)
}

fn object(m: BTreeMap<String, Value>) -> Value {
    Value::Object(m.into_iter().collect())
}

fn item(m: &HashMap<String, AttributeValue>) -> Value {
    object(m.iter().map(|(k, v)| (k.clone(), attr(v))).collect())
}

fn b64(b: &aws_sdk_dynamodbstreams::primitives::Blob) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// One attribute value in DynamoDB JSON (`{"S": "..."}`, binary as base64).
fn attr(v: &AttributeValue) -> Value {
    let (tag, value) = match v {
        AttributeValue::S(s) => ("S", Value::String(s.clone())),
        AttributeValue::N(n) => ("N", Value::String(n.clone())),
        AttributeValue::B(b) => ("B", b64(b)),
        AttributeValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        AttributeValue::Null(b) => ("NULL", Value::Bool(*b)),
        AttributeValue::Ss(v) => ("SS", strings(v)),
        AttributeValue::Ns(v) => ("NS", strings(v)),
        AttributeValue::Bs(v) => ("BS", Value::Array(v.iter().map(b64).collect())),
        AttributeValue::L(v) => ("L", Value::Array(v.iter().map(attr).collect())),
        AttributeValue::M(m) => ("M", item(m)),
        // A type this SDK does not know: kept with a tag the decoder rejects, so the record goes
        // to the error output with a clear reason instead of losing the attribute silently.
        _ => ("UNKNOWN", Value::Null),
    };
    let mut o = serde_json::Map::new();
    o.insert(tag.to_string(), value);
    Value::Object(o)
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod direct_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
    use aws_sdk_dynamodbstreams::types::{Identity, OperationType, StreamViewType};

    const ARN: &str =
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2019-12-16T17:21:37.013";

    fn sample() -> Record {
        let mut keys = HashMap::new();
        keys.insert("Id".to_string(), AttributeValue::N("101".into()));
        let mut image = keys.clone();
        image.insert("Name".into(), AttributeValue::S("a \"q\"\n".into()));
        image.insert("Blob".into(), AttributeValue::B(Blob::new(vec![0u8, 255])));
        image.insert(
            "Tags".into(),
            AttributeValue::Ss(vec!["x".into(), "y".into()]),
        );
        image.insert(
            "Nested".into(),
            AttributeValue::M(HashMap::from([
                ("ok".to_string(), AttributeValue::Bool(true)),
                (
                    "l".to_string(),
                    AttributeValue::L(vec![
                        AttributeValue::Null(true),
                        AttributeValue::N("2".into()),
                    ]),
                ),
            ])),
        );
        Record::builder()
            .event_id("e1")
            .event_name(OperationType::Remove)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .user_identity(
                Identity::builder()
                    .r#type("Service")
                    .principal_id("dynamodb.amazonaws.com")
                    .build(),
            )
            .dynamodb(
                StreamRecord::builder()
                    .approximate_creation_date_time(DateTime::from_secs(1_576_516_897))
                    .set_keys(Some(keys))
                    .set_old_image(Some(image))
                    .sequence_number("4421584500000000017450439091")
                    .size_bytes(26)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build(),
            )
            .build()
    }

    #[test]
    fn sdk_records_become_the_streams_json_the_decoder_reads() {
        let r = sample();
        let bytes = record_json(&r, ARN);
        // Deterministic: the same record gives the same bytes, map keys sorted.
        assert_eq!(bytes, record_json(&r, ARN));
        let c = crate::decode::record::parse_record(&bytes).unwrap();
        assert_eq!(c.operation, crate::decode::record::Operation::Remove);
        assert_eq!(c.table.as_deref(), Some("Orders"));
        assert_eq!(
            c.event_time_us, 1_576_516_897_000_000,
            "seconds, not milliseconds"
        );
        assert!(c.ttl_delete, "a TTL delete keeps its userIdentity");
        assert_eq!(
            c.sequence_number.as_deref(),
            Some("4421584500000000017450439091")
        );
        assert!(c.new_image.is_none());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let old = &v["dynamodb"]["OldImage"];
        assert_eq!(old["Name"]["S"], "a \"q\"\n");
        assert_eq!(old["Blob"]["B"], "AP8=");
        assert_eq!(old["Tags"]["SS"], serde_json::json!(["x", "y"]));
        assert_eq!(old["Nested"]["M"]["l"]["L"][0]["NULL"], true);
        assert_eq!(old["Nested"]["M"]["ok"]["BOOL"], true);
        let names: Vec<&String> = old.as_object().unwrap().keys().collect();
        assert_eq!(names, ["Blob", "Id", "Name", "Nested", "Tags"]);
        let k = to_record(r.clone(), &ARN.into(), "shardId-1").unwrap();
        assert_eq!(k.arrival_ms, 1_576_516_897_000);
        assert_eq!(k.sequence_number, "4421584500000000017450439091");
        assert_eq!(k.size(), 26, "DynamoDB's SizeBytes");
        assert_eq!(k.sdk.map(|s| s.record.clone()), Some(r));
    }

    #[test]
    fn a_record_without_a_sequence_number_stops_the_shard() {
        let r = Record::builder().event_id("e2").build();
        let e = to_record(r, &ARN.into(), "shardId-7").unwrap_err();
        assert!(
            matches!(&e, ApiError::Fatal(m) if m.contains("shardId-7") && m.contains("e2")),
            "{e}"
        );
    }
}
