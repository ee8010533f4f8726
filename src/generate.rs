//! `ddb-lake generate`: realistic change records for a demo `Orders` table, deterministic for a
//! seed. INSERTs, MODIFYs with both images, REMOVEs (some by TTL); nested maps, lists, sets,
//! binary, numbers with fractions, sparse attributes; spread over several hours.

use std::io::Write;

use base64::Engine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};

/// Output shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Kinesis Data Streams for DynamoDB records, one per line.
    Kinesis,
    /// The same records concatenated with no separator (Firehose raw archives).
    Concat,
    /// DynamoDB Streams records in a Lambda event (`{"Records":[...]}`).
    Lambda,
    /// DynamoDB Streams records, one per line.
    Streams,
}

/// What `generate` writes: how many records, from which seed, in which shape.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of change records to write.
    pub records: u64,
    /// Random seed: the same seed and options give the same records.
    pub seed: u64,
    /// How the records are framed in the output.
    pub shape: Shape,
    /// The DynamoDB table name the records carry (`tableName` and the stream ARN).
    pub table: String,
    /// First event time, epoch milliseconds.
    pub start_ms: i64,
    /// Hours the events spread over.
    pub hours: u32,
}

const CITIES: &[(&str, &str)] = &[
    ("Seattle", "WA"),
    ("Portland", "OR"),
    ("Austin", "TX"),
    ("Boston", "MA"),
    ("Denver", "CO"),
    ("Chicago", "IL"),
];
const STATUSES: &[&str] = &["PENDING", "PAID", "SHIPPED", "DELIVERED"];
const TAGS: &[&str] = &["gift", "express", "fragile", "bulk", "promo", "repeat"];
const PRODUCTS: &[&str] = &["widget", "gadget", "doohickey", "sprocket", "gizmo"];

fn s(v: impl Into<String>) -> Value {
    json!({ "S": v.into() })
}
fn n(v: impl ToString) -> Value {
    json!({ "N": v.to_string() })
}

struct Order {
    id: String,
    image: Map<String, Value>,
}

fn new_order(rng: &mut ChaCha8Rng, i: u64, time_ms: i64) -> Order {
    let id = format!("ORD-{i:08}");
    let (city, state) = CITIES[rng.random_range(0..CITIES.len())];
    let lines = rng.random_range(1..4);
    let mut items = Vec::new();
    let mut total_cents: i64 = 0;
    for _ in 0..lines {
        let qty: i64 = rng.random_range(1..5);
        let cents: i64 = rng.random_range(199..19999);
        total_cents += qty * cents;
        items.push(json!({"M": {
            "sku": s(PRODUCTS[rng.random_range(0..PRODUCTS.len())]),
            "qty": n(qty),
            "price": n(format!("{}.{:02}", cents / 100, cents % 100)),
        }}));
    }
    let mut image = Map::new();
    image.insert("OrderId".into(), s(&id));
    image.insert(
        "CustomerName".into(),
        s(format!("Customer {}", rng.random_range(1..500))),
    );
    image.insert("Status".into(), s(STATUSES[0]));
    image.insert(
        "Total".into(),
        n(format!("{}.{:02}", total_cents / 100, total_cents % 100)),
    );
    image.insert("ItemCount".into(), n(lines));
    image.insert(
        "CreatedAt".into(),
        s(chrono::DateTime::from_timestamp_millis(time_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    image.insert("Paid".into(), json!({"BOOL": false}));
    image.insert(
        "ShipTo".into(),
        json!({"M": {
            "street": s(format!("{} Main St", rng.random_range(1..9999))),
            "city": s(city),
            "state": s(state),
            "geo": {"M": {"lat": n(format!("{:.6}", rng.random_range(25.0..49.0f64))),
                          "lon": n(format!("{:.6}", -rng.random_range(70.0..124.0f64)))}},
        }}),
    );
    image.insert("Items".into(), json!({"L": items}));
    let mut tags: Vec<&str> = TAGS
        .iter()
        .copied()
        .filter(|_| rng.random_bool(0.3))
        .collect();
    if tags.is_empty() {
        tags.push(TAGS[0]);
    }
    image.insert("Tags".into(), json!({"SS": tags}));
    image.insert(
        "Ratings".into(),
        json!({"NS": (0..rng.random_range(1..4)).map(|_| rng.random_range(1..=5).to_string()).collect::<std::collections::BTreeSet<_>>()}),
    );
    // Sparse attributes.
    if rng.random_bool(0.2) {
        image.insert(
            "Coupon".into(),
            s(format!("SAVE{}", rng.random_range(5..50))),
        );
    }
    if rng.random_bool(0.15) {
        let bytes: Vec<u8> = (0..rng.random_range(4..32)).map(|_| rng.random()).collect();
        image.insert(
            "Thumbnail".into(),
            json!({"B": base64::engine::general_purpose::STANDARD.encode(bytes)}),
        );
    }
    if rng.random_bool(0.1) {
        let set: std::collections::BTreeSet<String> = (0..2)
            .map(|_| {
                let b: [u8; 4] = rng.random();
                base64::engine::general_purpose::STANDARD.encode(b)
            })
            .collect();
        image.insert("Checksums".into(), json!({"BS": set}));
    }
    if rng.random_bool(0.1) {
        image.insert("GiftNote".into(), json!({"NULL": true}));
    }
    Order { id, image }
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let b: [u8; 16] = rng.random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Writes `opts.records` change records to `out`.
pub fn generate(opts: &GenerateOptions, out: &mut dyn Write) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut live: Vec<Order> = Vec::new();
    let span_ms = opts.hours.max(1) as i64 * 3_600_000;
    let step = span_ms / opts.records.max(1) as i64;
    let lambda = opts.shape == Shape::Lambda;
    if lambda {
        out.write_all(b"{\"Records\":[\n")?;
    }
    let mut next_id = 0u64;
    for i in 0..opts.records {
        let time_ms = opts.start_ms + i as i64 * step + rng.random_range(0..step.max(1));
        let roll: f64 = rng.random();
        let (event, keys, new_image, old_image, ttl) = if live.is_empty() || roll < 0.5 {
            let o = new_order(&mut rng, next_id, time_ms);
            next_id += 1;
            let keys = json!({"OrderId": s(&o.id)});
            let img = Value::Object(o.image.clone());
            live.push(o);
            ("INSERT", keys, Some(img), None, false)
        } else if roll < 0.85 {
            let idx = rng.random_range(0..live.len());
            let o = &mut live[idx];
            let old = Value::Object(o.image.clone());
            let status_idx = STATUSES
                .iter()
                .position(|st| o.image["Status"]["S"] == *st)
                .unwrap_or(0);
            o.image.insert(
                "Status".into(),
                s(STATUSES[(status_idx + 1).min(STATUSES.len() - 1)]),
            );
            o.image.insert("Paid".into(), json!({"BOOL": true}));
            if rng.random_bool(0.3) {
                o.image
                    .insert("Notes".into(), s(format!("updated at step {i}")));
            }
            let keys = json!({"OrderId": s(&o.id)});
            (
                "MODIFY",
                keys,
                Some(Value::Object(o.image.clone())),
                Some(old),
                false,
            )
        } else {
            let idx = rng.random_range(0..live.len());
            let o = live.swap_remove(idx);
            let keys = json!({"OrderId": s(&o.id)});
            let ttl = rng.random_bool(0.3);
            ("REMOVE", keys, None, Some(Value::Object(o.image)), ttl)
        };
        let user_identity = if ttl {
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        } else {
            Value::Null
        };
        let mut ddb = Map::new();
        let record = match opts.shape {
            Shape::Kinesis | Shape::Concat => {
                // A tenth of the records use microsecond precision, as tables switched to it do.
                if rng.random_bool(0.1) {
                    ddb.insert(
                        "ApproximateCreationDateTime".into(),
                        json!(time_ms * 1000 + rng.random_range(0..1000)),
                    );
                    ddb.insert(
                        "ApproximateCreationDateTimePrecision".into(),
                        json!("MICROSECOND"),
                    );
                } else {
                    ddb.insert("ApproximateCreationDateTime".into(), json!(time_ms));
                    ddb.insert(
                        "ApproximateCreationDateTimePrecision".into(),
                        json!("MILLISECOND"),
                    );
                }
                ddb.insert("Keys".into(), keys);
                if let Some(v) = new_image {
                    ddb.insert("NewImage".into(), v);
                }
                if let Some(v) = old_image {
                    ddb.insert("OldImage".into(), v);
                }
                ddb.insert("SizeBytes".into(), json!(rng.random_range(100..2000)));
                json!({
                    "awsRegion": "us-east-1",
                    "eventID": uuid(&mut rng),
                    "eventName": event,
                    "userIdentity": user_identity,
                    "recordFormat": "application/json",
                    "tableName": opts.table,
                    "dynamodb": ddb,
                    "eventSource": "aws:dynamodb",
                })
            }
            Shape::Lambda | Shape::Streams => {
                ddb.insert("ApproximateCreationDateTime".into(), json!(time_ms / 1000));
                ddb.insert("Keys".into(), keys);
                if let Some(v) = new_image {
                    ddb.insert("NewImage".into(), v);
                }
                if let Some(v) = old_image {
                    ddb.insert("OldImage".into(), v);
                }
                ddb.insert(
                    "SequenceNumber".into(),
                    json!(format!("{}", 100_000_000_000_000_000_000u128 + i as u128)),
                );
                ddb.insert("SizeBytes".into(), json!(rng.random_range(100..2000)));
                ddb.insert("StreamViewType".into(), json!("NEW_AND_OLD_IMAGES"));
                let mut r = json!({
                    "eventID": uuid(&mut rng),
                    "eventName": event,
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "dynamodb": ddb,
                    "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:123456789012:table/{}/stream/2026-01-01T00:00:00.000", opts.table),
                });
                if ttl {
                    r["userIdentity"] =
                        json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
                }
                r
            }
        };
        let text = serde_json::to_string(&record).expect("records serialize");
        match opts.shape {
            Shape::Concat => out.write_all(text.as_bytes())?,
            Shape::Lambda => {
                if i > 0 {
                    out.write_all(b",\n")?;
                }
                out.write_all(text.as_bytes())?;
            }
            _ => {
                out.write_all(text.as_bytes())?;
                out.write_all(b"\n")?;
            }
        }
    }
    if lambda {
        out.write_all(b"\n]}\n")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{parse_record, Framer};

    fn gen(shape: Shape, seed: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let opts = GenerateOptions {
            records: 200,
            seed,
            shape,
            table: "Orders".into(),
            start_ms: 1_795_000_000_000,
            hours: 3,
        };
        generate(&opts, &mut out).unwrap();
        out
    }

    #[test]
    fn deterministic_and_parseable_in_every_shape() {
        assert_eq!(gen(Shape::Kinesis, 7), gen(Shape::Kinesis, 7));
        assert_ne!(gen(Shape::Kinesis, 7), gen(Shape::Kinesis, 8));
        for shape in [Shape::Kinesis, Shape::Concat, Shape::Lambda, Shape::Streams] {
            let bytes = gen(shape, 1);
            let frames: Vec<_> = Framer::new(bytes.as_slice()).map(|f| f.unwrap()).collect();
            assert_eq!(frames.len(), 200, "{shape:?}");
            let mut ops = std::collections::HashSet::new();
            for f in &frames {
                let r = parse_record(&f.bytes).unwrap();
                assert_eq!(r.table.as_deref(), Some("Orders"));
                ops.insert(r.operation.as_str());
            }
            assert_eq!(ops.len(), 3, "{shape:?}");
        }
    }
}
