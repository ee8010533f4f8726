//! The simulated stream: shards that split and merge, and the change records put into them, with
//! what each user record must become in the lake (a row with its values, or an error entry with
//! its reason and bytes).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::kinesis::{kpl, KinesisRecord, Shard};

/// Which kind of stream a history plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// A Kinesis data stream fed by DynamoDB: KPL aggregates, bad records, splits and merges,
    /// records of two tables, event times that jump back.
    Kinesis,
    /// A table's DynamoDB stream: SDK records turned into records by the DynamoDB Streams
    /// adapter (`to_record`), one table, creation times in whole seconds (event time and
    /// arrival time alike), shards that roll over or split (never merge).
    DynamoDb,
}

/// The stream ARN of the DynamoDB flavour (its table is the records' table).
const DDB_ARN: &str =
    "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2026-11-20T08:00:00.000";

/// Lake tables of the simulation (the DynamoDB table name, the lake name).
pub(super) const TABLES: [(&str, &str); 2] = [("Orders", "orders"), ("Users", "users")];
/// Values of the `color` attribute (a column-value template's partition key).
pub(super) const COLORS: [&str; 3] = ["red", "green", "blue"];

/// What one user record must become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Row {
        table: &'static str,
        event_id: String,
        key: String,
        qty: i64,
        color: &'static str,
        /// Set on records written after the schema grew a column.
        note: Option<String>,
        event_ms: i64,
    },
    Error {
        reason: &'static str,
        data: Vec<u8>,
    },
}

/// One user record of the stream (a Kinesis record, or one part of a KPL aggregate).
#[derive(Debug, Clone)]
pub(super) struct Expected {
    pub(super) shard: String,
    pub(super) seq: String,
    /// Index inside a KPL aggregate.
    pub(super) sub: Option<u64>,
    pub(super) arrival_ms: i64,
    pub(super) outcome: Outcome,
}

/// A shard and its records.
#[derive(Debug, Clone)]
pub(super) struct SimShard {
    pub(super) shard: Shard,
    pub(super) records: Vec<KinesisRecord>,
    pub(super) closed: bool,
}

/// The stream, as it grows.
pub(super) struct Stream {
    pub(super) flavor: Flavor,
    pub(super) shards: Vec<SimShard>,
    pub(super) expected: Vec<Expected>,
    next_seq: u64,
    next_shard: u64,
    next_event: u64,
    event_ms: i64,
    arrival_ms: i64,
    /// From this record on, rows carry the `note` attribute (a column added mid-stream).
    notes_from: u64,
}

impl Stream {
    pub(super) fn new(rng: &mut ChaCha8Rng, shards: usize, start_ms: i64, flavor: Flavor) -> Self {
        let mut s = Stream {
            flavor,
            shards: Vec::new(),
            expected: Vec::new(),
            next_seq: 1,
            next_shard: 0,
            next_event: 0,
            event_ms: start_ms,
            arrival_ms: start_ms,
            notes_from: rng.random_range(0..200),
        };
        for _ in 0..shards {
            s.add_shard(None, None);
        }
        s
    }

    fn add_shard(&mut self, parent: Option<String>, adjacent: Option<String>) -> usize {
        let id = format!("shardId-{:012}", self.next_shard);
        self.next_shard += 1;
        self.shards.push(SimShard {
            shard: Shard {
                id,
                parent,
                adjacent_parent: adjacent,
            },
            records: Vec::new(),
            closed: false,
        });
        self.shards.len() - 1
    }

    pub(super) fn open_shards(&self) -> Vec<usize> {
        (0..self.shards.len())
            .filter(|&i| !self.shards[i].closed)
            .collect()
    }

    /// Closes a shard and opens two children.
    pub(super) fn split(&mut self, i: usize) {
        self.shards[i].closed = true;
        let id = self.shards[i].shard.id.clone();
        self.add_shard(Some(id.clone()), None);
        self.add_shard(Some(id), None);
    }

    /// Closes two shards and opens their merged child.
    pub(super) fn merge(&mut self, a: usize, b: usize) {
        self.shards[a].closed = true;
        self.shards[b].closed = true;
        let (pa, pb) = (
            self.shards[a].shard.id.clone(),
            self.shards[b].shard.id.clone(),
        );
        self.add_shard(Some(pa), Some(pb));
    }

    /// Puts `n` Kinesis records into open shards chosen at random.
    pub(super) fn put(&mut self, rng: &mut ChaCha8Rng, n: usize) {
        let open = self.open_shards();
        for _ in 0..n {
            let i = open[rng.random_range(0..open.len())];
            self.put_one(rng, i);
        }
    }

    /// Puts one Kinesis record into shard `i`.
    pub(super) fn put_one(&mut self, rng: &mut ChaCha8Rng, i: usize) {
        let seq = format!("{:030}", self.next_seq);
        // Sequence numbers grow across the stream, so a child's are above its parents'.
        self.next_seq += rng.random_range(1..5);
        self.arrival_ms += rng.random_range(1..90_000);
        let shard = self.shards[i].shard.id.clone();
        if self.flavor == Flavor::DynamoDb {
            return self.put_sdk_record(rng, i, seq);
        }
        let aggregated = rng.random_ratio(1, 8);
        let parts = if aggregated {
            rng.random_range(2..=4)
        } else {
            1
        };
        let mut bodies = Vec::new();
        for sub in 0..parts {
            let (body, outcome) = self.user_record(rng);
            bodies.push(body);
            self.expected.push(Expected {
                shard: shard.clone(),
                seq: seq.clone(),
                sub: aggregated.then_some(sub as u64),
                arrival_ms: self.arrival_ms,
                outcome,
            });
        }
        let data = if aggregated {
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            kpl::aggregate(&refs)
        } else {
            bodies.pop().expect("one body")
        };
        self.shards[i].records.push(KinesisRecord {
            sdk: None,
            sequence_number: seq,
            data: data.into(),
            arrival_ms: self.arrival_ms,
        });
    }

    /// The DynamoDB flavour's record: built as the SDK gives it, then turned into the record
    /// the pipeline reads by the DynamoDB Streams adapter itself.
    fn put_sdk_record(&mut self, rng: &mut ChaCha8Rng, i: usize, seq: String) {
        use aws_sdk_dynamodbstreams::primitives::DateTime;
        use aws_sdk_dynamodbstreams::types::{
            AttributeValue, OperationType, Record, StreamRecord, StreamViewType,
        };
        let n = self.next_event;
        self.next_event += 1;
        let secs = self.arrival_ms.div_euclid(1000);
        let qty = rng.random_range(-1000..1000i64);
        let color = COLORS[rng.random_range(0..COLORS.len())];
        let note = (n >= self.notes_from).then(|| format!("note {n}"));
        let key = || ("id".to_string(), AttributeValue::S(format!("k{n}")));
        let mut image: std::collections::HashMap<String, AttributeValue> = [
            key(),
            ("qty".into(), AttributeValue::N(qty.to_string())),
            ("color".into(), AttributeValue::S(color.into())),
        ]
        .into();
        if let Some(t) = &note {
            image.insert("note".into(), AttributeValue::S(t.clone()));
        }
        let record = Record::builder()
            .event_id(format!("e{n}"))
            .event_name(OperationType::Modify)
            .event_source("aws:dynamodb")
            .dynamodb(
                StreamRecord::builder()
                    .set_keys(Some([key()].into()))
                    .set_new_image(Some(image))
                    .sequence_number(&seq)
                    .approximate_creation_date_time(DateTime::from_secs(secs))
                    .stream_view_type(StreamViewType::NewImage)
                    .build(),
            )
            .build();
        let shard = self.shards[i].shard.id.clone();
        let record = crate::dynamodb_streams::to_record(record, &DDB_ARN.into(), &shard)
            .expect("a record with a sequence number");
        self.expected.push(Expected {
            shard,
            seq,
            sub: None,
            arrival_ms: record.arrival_ms,
            outcome: Outcome::Row {
                table: TABLES[0].1,
                event_id: format!("e{n}"),
                key: format!("k{n}"),
                qty,
                color,
                note,
                event_ms: secs * 1000,
            },
        });
        self.shards[i].records.push(record);
    }

    /// Closes a shard and opens one child (a DynamoDB stream's rollover).
    fn roll_over(&mut self, i: usize) {
        self.shards[i].closed = true;
        let id = self.shards[i].shard.id.clone();
        self.add_shard(Some(id), None);
    }

    /// One user record: mostly good changes of two tables, with event times that mostly move
    /// forward and sometimes jump back (late rows); some bad records of three kinds.
    fn user_record(&mut self, rng: &mut ChaCha8Rng) -> (Vec<u8>, Outcome) {
        let n = self.next_event;
        self.next_event += 1;
        if rng.random_ratio(1, 10) {
            self.event_ms -= rng.random_range(0..40 * 60_000);
        } else {
            self.event_ms += rng.random_range(0..6 * 60_000);
        }
        let event_ms = self.event_ms;
        match rng.random_range(0..20) {
            0 => {
                let data = format!("{{\"broken\": {n}").into_bytes();
                let outcome = Outcome::Error {
                    reason: "invalid_json",
                    data: data.clone(),
                };
                (data, outcome)
            }
            1 => {
                let mut data = vec![0xff, 0xfe];
                data.extend_from_slice(n.to_string().as_bytes());
                let outcome = Outcome::Error {
                    reason: "invalid_utf8",
                    data: data.clone(),
                };
                (data, outcome)
            }
            2 => {
                let data = format!(
                    r#"{{"eventID":"e{n}","eventName":"INSERT","dynamodb":{{"ApproximateCreationDateTime":{event_ms},"Keys":{{"id":{{"S":"k{n}"}}}},"NewImage":{{"id":{{"S":"k{n}"}}}}}}}}"#
                )
                .into_bytes();
                let outcome = Outcome::Error {
                    reason: "no_table",
                    data: data.clone(),
                };
                (data, outcome)
            }
            _ => {
                let (table, lake) = TABLES[rng.random_range(0..TABLES.len())];
                let qty = rng.random_range(-1000..1000i64);
                let color = COLORS[rng.random_range(0..COLORS.len())];
                let note = (n >= self.notes_from).then(|| format!("note {n}"));
                let note_attr = note
                    .as_ref()
                    .map_or(String::new(), |t| format!(r#","note":{{"S":"{t}"}}"#));
                let data = format!(
                    r#"{{"eventID":"e{n}","eventName":"MODIFY","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":{event_ms},"Keys":{{"id":{{"S":"k{n}"}}}},"NewImage":{{"id":{{"S":"k{n}"}},"qty":{{"N":"{qty}"}},"color":{{"S":"{color}"}}{note_attr}}}}}}}"#
                )
                .into_bytes();
                let outcome = Outcome::Row {
                    table: lake,
                    event_id: format!("e{n}"),
                    key: format!("k{n}"),
                    qty,
                    color,
                    note,
                    event_ms,
                };
                (data, outcome)
            }
        }
    }

    /// Changes the stream between runs: more records, and now and then a split or a merge.
    pub(super) fn evolve(&mut self, rng: &mut ChaCha8Rng) {
        let open = self.open_shards();
        match rng.random_range(0..10) {
            0 if open.len() < 6 => self.split(open[rng.random_range(0..open.len())]),
            1 if self.flavor == Flavor::DynamoDb => {
                self.roll_over(open[rng.random_range(0..open.len())])
            }
            1 if open.len() >= 2 => {
                let a = rng.random_range(0..open.len() - 1);
                self.merge(open[a], open[a + 1]);
            }
            _ => {}
        }
        let n = rng.random_range(0..40);
        self.put(rng, n);
    }

    /// Whether a shard was there from the start (no parents).
    pub(super) fn is_root(&self, id: &str) -> bool {
        let s = &self.shards[self.index(id)].shard;
        s.parent.is_none() && s.adjacent_parent.is_none()
    }

    pub(super) fn index(&self, id: &str) -> usize {
        self.shards
            .iter()
            .position(|s| s.shard.id == id)
            .expect("a shard of the stream")
    }
}
