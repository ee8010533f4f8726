//! Reading SDK records straight (`change_record`) against writing their JSON and running the
//! reference decoder (`record_json`, then `parse_record`): the same records accepted, with the
//! same fields and the same attribute values, so the flatten stage makes the same rows.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodbstreams::primitives::{Blob, DateTime};
use aws_sdk_dynamodbstreams::types::{
    AttributeValue as V, Identity, OperationType, Record, StreamRecord,
};
use proptest::prelude::*;

use super::{change_record, record_json};
use crate::decode::parse_record;
use crate::kinesis::SdkRecord;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{0,4}",
        "[a-z\"\\\\/\n\t\u{1}é€😀]{0,5}",
        Just("1E+3".to_string()),
    ]
}

fn value() -> impl Strategy<Value = V> {
    let leaf = prop_oneof![
        text().prop_map(V::S),
        prop_oneof![Just("12.50"), Just("-7"), Just("1e400"), Just("x")]
            .prop_map(|n| V::N(n.into())),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| V::B(Blob::new(b))),
        any::<bool>().prop_map(V::Bool),
        // `NULL: false` is what the reference decoder refuses.
        prop_oneof![9 => Just(V::Null(true)), 1 => Just(V::Null(false))],
        prop::collection::vec(text(), 0..3).prop_map(V::Ss),
        prop::collection::vec(Just("3".to_string()), 0..2).prop_map(V::Ns),
        prop::collection::vec(Just(Blob::new(vec![1u8])), 0..2).prop_map(V::Bs),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(V::L),
            prop::collection::hash_map("[a-c]{1,2}", inner, 0..4).prop_map(V::M),
        ]
    })
}

fn image() -> impl Strategy<Value = HashMap<String, V>> {
    // Names that sort differently bytewise and by case, to check the order.
    prop::collection::hash_map("[A-Ca-b_é]{1,2}", value(), 0..6)
}

prop_compose! {
    fn record()(
        name in prop_oneof![
            Just(Some(OperationType::Insert)),
            Just(Some(OperationType::Modify)),
            Just(Some(OperationType::Remove)),
            Just(Some(OperationType::from("UPSERT"))),
            Just(None),
        ],
        time in prop_oneof![
            Just(Some(DateTime::from_secs(1_795_000_000))),
            Just(Some(DateTime::from_secs_and_nanos(1_795_000_000, 250_000_000))),
            Just(Some(DateTime::from_secs_and_nanos(1_795_000_000, 123_456_789))),
            // One in about 30 such fractions reads back one unit in the last place off.
            (1_790_000_000i64..1_800_000_000, 1u32..1_000_000_000)
                .prop_map(|(s, n)| Some(DateTime::from_secs_and_nanos(s, n))),
            Just(Some(DateTime::from_secs_and_nanos(1_796_843_463, 860_954_510))),
            Just(Some(DateTime::from_secs(12))),
            Just(None),
        ],
        keys in prop::option::weighted(0.9, image()),
        new in prop::option::of(image()),
        old in prop::option::of(image()),
        id in prop::option::of(prop_oneof![
            Just(("Service", "dynamodb.amazonaws.com")),
            Just(("Service", "other")),
            Just(("User", "dynamodb.amazonaws.com")),
        ]),
        event_id in prop::option::of("[a-f0-9-]{1,8}"),
    ) -> Record {
        let mut d = StreamRecord::builder()
            .set_approximate_creation_date_time(time)
            .set_keys(keys)
            .set_new_image(new)
            .set_old_image(old)
            .sequence_number("4421584500000000017450439091")
            .size_bytes(40);
        if let Some(t) = time {
            d = d.approximate_creation_date_time(t);
        }
        Record::builder()
            .set_event_id(event_id)
            .set_event_name(name)
            .set_user_identity(id.map(|(t, p)| Identity::builder().r#type(t).principal_id(p).build()))
            .dynamodb(d.build())
            .build()
    }
}

proptest! {
    #![proptest_config(crate::test_support::proptest_config())]

    #[test]
    fn sdk_records_read_straight_as_from_their_json(
        r in record(),
        arn in prop_oneof![
            Just("arn:aws:dynamodb:us-east-1:1:table/Orders/stream/2026-01-01T00:00:00.000"),
            Just("arn:aws:dynamodb:us-east-1:1:stream/none"),
        ],
    ) {
        let sdk = SdkRecord { record: r, arn: Arc::from(arn) };
        let json = record_json(&sdk.record, arn);
        let reference = parse_record(&json);
        let direct = change_record(&sdk);
        prop_assert_eq!(direct.is_some(), reference.is_ok(), "{}", String::from_utf8_lossy(&json));
        if let (Some(a), Ok(b)) = (direct, reference) {
            prop_assert_eq!(a.operation, b.operation);
            prop_assert_eq!(a.event_id, b.event_id);
            prop_assert_eq!(a.table, b.table);
            prop_assert_eq!(a.event_time_us, b.event_time_us);
            prop_assert_eq!(a.ttl_delete, b.ttl_delete);
            prop_assert_eq!(a.sequence_number, b.sequence_number);
            prop_assert_eq!(a.keys, b.keys);
            prop_assert_eq!(a.new_image, b.new_image);
            prop_assert_eq!(a.old_image, b.old_image);
        }
    }
}

#[test]
fn nesting_past_dynamodb_limit_goes_to_the_reference_decoder() {
    let mut v = V::S("deep".into());
    for _ in 0..40 {
        v = V::L(vec![v]);
    }
    let r = Record::builder()
        .event_name(OperationType::Insert)
        .dynamodb(
            StreamRecord::builder()
                .approximate_creation_date_time(DateTime::from_secs(1_795_000_000))
                .keys("Id", V::S("1".into()))
                .new_image("Deep", v)
                .sequence_number("1")
                .build(),
        )
        .build();
    let sdk = SdkRecord {
        record: r,
        arn: Arc::from("arn:aws:dynamodb:us-east-1:1:table/T/stream/x"),
    };
    assert!(change_record(&sdk).is_none());
    // Which still reads it, as it reads any JSON record this deep.
    assert!(parse_record(&record_json(&sdk.record, &sdk.arn)).is_ok());
}
