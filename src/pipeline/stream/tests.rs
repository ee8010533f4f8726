use super::*;
use crate::config::ConfigFile;
use crate::kinesis::fake::FakeStream;
use crate::kinesis::KinesisRecord;
use crate::kinesis::{kpl, Shard};
use crate::pipeline::SystemClock;

fn kinesis_record(seq: u64, id: &str) -> KinesisRecord {
    record_at(seq, id, 1795000000331)
}

pub(super) fn record_at(seq: u64, id: &str, event_ms: i64) -> KinesisRecord {
    let json = format!(
        r#"{{"eventID":"{id}","eventName":"INSERT","tableName":"T","dynamodb":{{"ApproximateCreationDateTime":{event_ms},"Keys":{{"Id":{{"S":"{id}"}}}},"NewImage":{{"Id":{{"S":"{id}"}}}}}}}}"#
    );
    KinesisRecord {
        sdk: None,
        sequence_number: format!("{seq:030}"),
        data: json.into(),
        arrival_ms: 1_000,
    }
}

fn settings(out: &std::path::Path) -> Settings {
    let mut c = ConfigFile::default();
    c.output.url = Some(out.display().to_string());
    c.validate().unwrap()
}

pub(super) fn opts(cp: &std::path::Path) -> StreamOptions {
    StreamOptions {
        stream: "s".into(),
        checkpoint: cp.display().to_string(),
        start: Start::TrimHorizon,
        mode: Mode::Scheduled { until_ms: 10_000 },
        idle_poll: Duration::from_millis(10),
        discovery_interval: Duration::from_secs(30),
        tick: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(30),
        accept_lost: Vec::new(),
    }
}

/// A fake stream of one open shard `s`, no records yet.
pub(super) fn one_shard() -> FakeStream {
    FakeStream {
        shards: vec![Shard {
            id: "s".into(),
            parent: None,
            adjacent_parent: None,
        }],
        ..FakeStream::default()
    }
}

/// A scheduled run over a fake stream with the real clock, never asked to stop.
pub(super) async fn run_fake(s: &Settings, fake: Arc<FakeStream>, cp: &std::path::Path) -> Summary {
    run_opts(s, fake, opts(cp)).await.unwrap()
}

/// A run over a fake stream with these options and the real clock, never asked to stop.
pub(super) async fn run_opts(
    s: &Settings,
    fake: Arc<FakeStream>,
    o: StreamOptions,
) -> Result<Summary, PipelineError> {
    let (clock, counters) = (SystemClock::default(), Counters::default());
    run(
        s,
        fake,
        o,
        Arc::new(clock),
        Arc::new(counters),
        std::future::pending(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_shards_are_read_parent_first_and_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = FakeStream {
        shards: vec![
            Shard {
                id: "p".into(),
                parent: None,
                adjacent_parent: None,
            },
            Shard {
                id: "c1".into(),
                parent: Some("p".into()),
                adjacent_parent: None,
            },
            Shard {
                id: "c2".into(),
                parent: Some("p".into()),
                adjacent_parent: None,
            },
        ],
        ..FakeStream::default()
    };
    fake.records.insert(
        "p".into(),
        (1..=5)
            .map(|i| kinesis_record(i, &format!("p{i}")))
            .collect(),
    );
    fake.records.insert(
        "c1".into(),
        (6..=8)
            .map(|i| kinesis_record(i, &format!("c{i}")))
            .collect(),
    );
    fake.records.insert(
        "c2".into(),
        (9..=9)
            .map(|i| kinesis_record(i, &format!("c{i}")))
            .collect(),
    );
    fake.closed.push("p".into());
    let fake = Arc::new(fake);
    let lake = dir.path().join("lake");
    let cp = dir.path().join("cp.json");
    let s = settings(&lake);
    let summary = run_fake(&s, fake.clone(), &cp).await;
    assert_eq!(summary.records_in, 9);
    assert_eq!(summary.rows_out["t"], 9);
    let saved: Checkpoint = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    assert!(saved.shards["p"].finished);
    assert_eq!(
        saved.shards["c1"].sequence_number.as_deref(),
        Some(format!("{:030}", 8).as_str())
    );
    assert_eq!(
        saved.shards["c2"].sequence_number.as_deref(),
        Some(format!("{:030}", 9).as_str())
    );
    // A second run reads nothing new and writes nothing.
    let again = run_fake(&s, fake, &cp).await;
    assert_eq!(again.records_in, 0);
    assert_eq!(again.files_written, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregated_records_are_deaggregated() {
    let dir = tempfile::tempdir().unwrap();
    let inner: Vec<Vec<u8>> = (0..3)
        .map(|i| kinesis_record(i, &format!("a{i}")).data.to_vec())
        .collect();
    let refs: Vec<&[u8]> = inner.iter().map(|v| v.as_slice()).collect();
    let mut aggregated = kinesis_record(10, "unused");
    aggregated.data = kpl::aggregate(&refs).into();
    let mut fake = one_shard();
    fake.records
        .insert("s".into(), vec![kinesis_record(5, "plain"), aggregated]);
    let lake = dir.path().join("lake");
    let summary = run_fake(
        &settings(&lake),
        Arc::new(fake),
        &dir.path().join("cp.json"),
    )
    .await;
    assert_eq!(summary.records_in, 4);
    assert_eq!(summary.rows_out["t"], 4);
    let files: Vec<_> = std::fs::read_dir(lake.join("t/2026/11/18/11"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let file = std::fs::File::open(&files[0]).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let subs = batch
        .column_by_name("cdc_subsequence_number")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap()
        .iter()
        .collect::<Vec<_>>();
    assert_eq!(subs, vec![None, Some(0), Some(1), Some(2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reading_only_bad_records_writes_them_at_the_flush_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = one_shard();
    let bad = |seq: u64| KinesisRecord {
        sdk: None,
        sequence_number: format!("{seq:030}"),
        data: bytes::Bytes::from_static(b"{not json"),
        arrival_ms: 1_000,
    };
    fake.records.insert("s".into(), vec![bad(1), bad(2)]);
    let lake = dir.path().join("lake");
    let mut s = settings(&lake);
    s.flush.max_age_ms = Some(1);
    let mut o = opts(&dir.path().join("cp.json"));
    o.mode = Mode::Continuous;
    o.tick = Duration::from_millis(10);
    // Stop only once the error file is there: no partition ever flushes, so only the
    // errors' own age can have written it.
    let errors = lake.join("_errors/invalid_json");
    let written = {
        let errors = errors.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !errors.exists() {
                assert!(
                    Instant::now() < deadline,
                    "the error entries were not written"
                );
                tokio::time::sleep(Duration::from_millis(20)).await; // polling a condition
            }
        }
    };
    let summary = run(
        &s,
        Arc::new(fake),
        o,
        Arc::new(SystemClock::default()),
        Arc::new(Counters::default()),
        written,
    )
    .await
    .unwrap();
    assert_eq!(summary.errors["invalid_json"], 2);
    let saved: Checkpoint =
        serde_json::from_slice(&std::fs::read(dir.path().join("cp.json")).unwrap()).unwrap();
    assert_eq!(
        saved.shards["s"].sequence_number.as_deref(),
        Some(format!("{:030}", 2).as_str())
    );
}

/// A checkpointed shard that is gone from the listing before it was read to its end stops
/// the run, naming it and its checkpoint, with nothing written; once acknowledged, it is
/// marked finished and later runs go on without the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_shard_stops_the_run_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, cp) = (dir.path().join("lake"), dir.path().join("cp.json"));
    let s = settings(&lake);
    let mut fake = one_shard();
    fake.records.insert(
        "s".into(),
        (1..=3)
            .map(|i| kinesis_record(i, &format!("a{i}")))
            .collect(),
    );
    assert_eq!(run_fake(&s, Arc::new(fake), &cp).await.records_in, 3);

    // Shard `s` passed its retention; a new shard `n` holds a record.
    let mut gone = FakeStream {
        shards: vec![Shard {
            id: "n".into(),
            parent: None,
            adjacent_parent: None,
        }],
        ..FakeStream::default()
    };
    gone.records
        .insert("n".into(), vec![kinesis_record(9, "n9")]);
    let gone = Arc::new(gone);
    let before = std::fs::read(&cp).unwrap();
    let run_gone = |accept: Vec<String>| {
        let mut o = opts(&cp);
        o.accept_lost = accept;
        run_opts(&s, gone.clone(), o)
    };
    let err = run_gone(Vec::new()).await.unwrap_err().to_string();
    let seq = format!("{:030}", 3);
    assert!(
        err.contains("shard s (after sequence number") && err.contains(&seq),
        "{err}"
    );
    assert!(err.contains("--accept-lost-shard s"), "{err}");
    assert_eq!(std::fs::read(&cp).unwrap(), before, "nothing saved");

    // Acknowledged: read on, and `s` is finished in the checkpoint.
    let summary = run_gone(vec!["s".into()]).await.unwrap();
    assert_eq!(summary.records_in, 1);
    let saved: Checkpoint = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    assert!(saved.shards["s"].finished);
    // Later runs need no flag.
    assert_eq!(run_gone(Vec::new()).await.unwrap().records_in, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_records_are_counted_and_the_checkpoint_moves_past_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = one_shard();
    // Records 1..=6; the pattern keeps the even ones. The last two are filtered: the
    // checkpoint still ends at the last record read.
    fake.records.insert(
        "s".into(),
        (1..=6)
            .map(|i| kinesis_record(i, &format!("k{}", i % 2)))
            .collect(),
    );
    let fake = Arc::new(fake);
    let lake = dir.path().join("lake");
    let cp = dir.path().join("cp.json");
    let mut c = ConfigFile::default();
    c.output.url = Some(lake.display().to_string());
    c.filter.patterns = vec![r#"{"dynamodb": {"Keys": {"Id": {"S": ["k0"]}}}}"#.into()];
    let s = c.validate().unwrap();
    let summary = run_fake(&s, fake.clone(), &cp).await;
    assert_eq!(summary.records_in, 6);
    assert_eq!(summary.rows_out["t"], 3);
    assert_eq!(summary.filtered["T"], 3);
    let saved: Checkpoint = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    assert_eq!(
        saved.shards["s"].sequence_number.as_deref(),
        Some(format!("{:030}", 6).as_str())
    );
    assert_eq!(saved.filter, s.filter.fingerprint());
    // Nothing is read twice.
    let again = run_fake(&s, fake, &cp).await;
    assert_eq!((again.records_in, again.files_written), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_filter_with_batches_pending_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let cp = dir.path().join("cp.json");
    let pending = Checkpoint {
        stream: "s".into(),
        pending: vec![crate::checkpoint::PendingBatch {
            object: "t/x/t-0.parquet".into(),
            prefix: "t/x/t-".into(),
            table: Some("t".into()),
            rows: 1,
            manifest: None,
            hour: None,
            shards: Default::default(),
        }],
        ..Checkpoint::default()
    };
    std::fs::write(&cp, serde_json::to_vec(&pending).unwrap()).unwrap();
    let mut c = ConfigFile::default();
    c.output.url = Some(lake.display().to_string());
    c.filter.operations = vec!["INSERT".into()];
    let s = c.validate().unwrap();
    let err = run(
        &s,
        Arc::new(one_shard()),
        opts(&cp),
        Arc::new(SystemClock::default()),
        Arc::new(Counters::default()),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PipelineError::FilterChanged(_)), "{err}");
    assert!(err.to_string().contains("1 batches"), "{err}");
}

/// A DynamoDB stream's retained history: its shards roll over about every four hours, so a
/// listing holds hundreds of closed shards. 4 lineages of 80 shards each (316 closed), every
/// shard holding two updates of its lineage's item, as SDK records turned into records by the
/// adapter's own conversion: one run reads every change once, each lineage in order (a child
/// after its parent), and finishes every closed shard; a second run reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_rolled_over_shards_are_read_in_lineage_order_exactly_once() {
    use aws_sdk_dynamodbstreams::primitives::DateTime;
    use aws_sdk_dynamodbstreams::types::{
        AttributeValue, OperationType, Record, StreamRecord, StreamViewType,
    };
    const ARN: &str = "arn:aws:dynamodb:us-east-1:1:table/Rolled/stream/2026-11-20T00:00:00.000";
    let (lineages, generations) = (4usize, 80usize);
    let id =
        |l: usize, g: usize| format!("shardId-{:020}-{l:08x}", 1_795_000_000_000u64 + g as u64);
    let mut fake = FakeStream::default();
    let mut seq = 0u64;
    for g in 0..generations {
        for l in 0..lineages {
            let shard = id(l, g);
            fake.shards.push(Shard {
                id: shard.clone(),
                parent: g.checked_sub(1).map(|p| id(l, p)),
                adjacent_parent: None,
            });
            let records = (0..2)
                .map(|k| {
                    seq += 1;
                    let n = g * 2 + k;
                    let key = || ("Id".to_string(), AttributeValue::S(format!("item{l}")));
                    let image = [key(), ("Step".into(), AttributeValue::N(n.to_string()))];
                    let r = Record::builder()
                        .event_id(format!("{l}-{n}"))
                        .event_name(OperationType::Modify)
                        .dynamodb(
                            StreamRecord::builder()
                                .set_keys(Some([key()].into()))
                                .set_new_image(Some(image.into()))
                                .sequence_number(format!("{seq:021}"))
                                .approximate_creation_date_time(DateTime::from_secs(1_795_000_000))
                                .stream_view_type(StreamViewType::NewImage)
                                .build(),
                        )
                        .build();
                    crate::dynamodb_streams::to_record(r, &ARN.into(), &shard).unwrap()
                })
                .collect();
            fake.records.insert(shard.clone(), records);
            if g + 1 < generations {
                fake.closed.push(shard);
            }
        }
    }
    assert_eq!(fake.shards.len(), 320);
    let fake = Arc::new(fake);
    let dir = tempfile::tempdir().unwrap();
    let (lake, cp) = (dir.path().join("lake"), dir.path().join("cp.json"));
    let s = settings(&lake);
    let run_all = || {
        let mut o = opts(&cp);
        o.mode = Mode::Scheduled {
            until_ms: 2_000_000_000_000,
        };
        run_opts(&s, fake.clone(), o)
    };
    let summary = run_all().await.unwrap();
    let changes = (lineages * generations * 2) as u64;
    assert_eq!(summary.records_in, changes);
    assert_eq!(summary.rows_out["rolled"], changes);
    // Every change once, and each item's steps in order: a child's rows after its parent's.
    let mut steps: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for o in &summary.objects {
        let file = std::fs::File::open(lake.join(&o.path)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = |name: &str| batch.column_by_name(name).unwrap().clone();
            let (ids, step) = (col("id"), col("step"));
            let ids = ids
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .unwrap();
            let step = step
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            for i in 0..batch.num_rows() {
                steps
                    .entry(ids.value(i).to_string())
                    .or_default()
                    .push(step.value(i));
            }
        }
    }
    assert_eq!(steps.len(), lineages);
    for (item, got) in &steps {
        let want: Vec<i64> = (0..(generations * 2) as i64).collect();
        assert_eq!(got, &want, "{item}");
    }
    let saved: Checkpoint = serde_json::from_slice(&std::fs::read(&cp).unwrap()).unwrap();
    let finished = saved.shards.values().filter(|c| c.finished).count();
    assert_eq!(finished, lineages * (generations - 1));
    let again = run_all().await.unwrap();
    assert_eq!((again.records_in, again.files_written), (0, 0));
}

/// A DynamoDB Streams record counts its `SizeBytes` as read whichever way it is decoded: straight
/// from the SDK's types, or (what the direct reading declines, here a `NULL: false`) through its
/// JSON by the reference decoder. The second had counted the JSON's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_streams_record_counts_its_size_bytes_however_it_is_decoded() {
    use aws_sdk_dynamodbstreams::primitives::DateTime;
    use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record, StreamRecord};
    const ARN: &str = "arn:aws:dynamodb:us-east-1:1:table/Sized/stream/2026-11-20T00:00:00.000";
    let record = |n: u64, extra: AttributeValue, size: i64| {
        let key = || ("Id".to_string(), AttributeValue::S(format!("item{n}")));
        let r = Record::builder()
            .event_id(format!("e{n}"))
            .event_name(OperationType::Insert)
            .dynamodb(
                StreamRecord::builder()
                    .set_keys(Some([key()].into()))
                    .set_new_image(Some([key(), ("X".to_string(), extra)].into()))
                    .sequence_number(format!("{n:021}"))
                    .approximate_creation_date_time(DateTime::from_secs(1_795_000_000))
                    .size_bytes(size)
                    .build(),
            )
            .build();
        crate::dynamodb_streams::to_record(r, &ARN.into(), "s").unwrap()
    };
    let mut fake = one_shard();
    fake.records.insert(
        "s".into(),
        vec![
            record(1, AttributeValue::Bool(true), 100),
            record(2, AttributeValue::Null(false), 200),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let (lake, cp) = (dir.path().join("lake"), dir.path().join("cp.json"));
    let mut o = opts(&cp);
    o.mode = Mode::Scheduled {
        until_ms: 2_000_000_000_000,
    };
    let summary = run_opts(&settings(&lake), Arc::new(fake), o).await.unwrap();
    assert_eq!(summary.records_in, 2);
    assert_eq!(summary.bytes_in, 300);
    // The second goes to the error output (NULL must be true), written as its JSON again.
    assert_eq!(summary.rows_out["sized"], 1);
    assert_eq!(summary.errors["invalid_record"], 1);
    let mut errors = String::new();
    let mut folders = vec![lake.join("_errors/invalid_record")];
    while let Some(folder) = folders.pop() {
        for e in std::fs::read_dir(folder).unwrap() {
            let path = e.unwrap().path();
            match path.is_dir() {
                true => folders.push(path),
                false => errors.push_str(&std::fs::read_to_string(path).unwrap()),
            }
        }
    }
    assert!(errors.contains(r#"\"NULL\":false"#), "{errors}");
}

/// A consumer taking over while the previous one still saves: the previous one writes the
/// checkpoint between this run's read and its claim. The claim's precondition fails; the run
/// reads the checkpoint again (the other process's progress with it) and claims that, instead
/// of stopping with a conflict.
#[tokio::test]
async fn a_takeover_reads_again_a_checkpoint_saved_while_it_was_read() {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt as _, PutPayload};
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir.path().join("lake"));
    let output = crate::store::open(&s.output, &s.s3).unwrap();
    let memory = Arc::new(InMemory::new());
    let location = crate::store::Location {
        store: memory.clone(),
        prefix: object_store::path::Path::from(""),
        url: "memory://".into(),
        s3: true,
    };
    let saved = |seq: &str| {
        let mut cp = Checkpoint {
            stream: "s".into(),
            owner: Some("the previous consumer".into()),
            ..Checkpoint::default()
        };
        cp.shards.insert(
            "s".into(),
            crate::checkpoint::ShardCheckpoint {
                sequence_number: Some(seq.into()),
                ..Default::default()
            },
        );
        PutPayload::from(serde_json::to_vec(&cp).unwrap())
    };
    let path = object_store::path::Path::from("cp.json");
    memory.put(&path, saved("1")).await.unwrap();
    let cp_store = CheckpointStore::at(location, "cp.json", true);
    // The previous consumer saves once more while this run reads (between load and claim).
    let mut interfered = false;
    let prepare = |_: &mut Checkpoint| {
        if !std::mem::replace(&mut interfered, true) {
            futures::executor::block_on(memory.put(&path, saved("2"))).unwrap();
        }
        Ok(())
    };
    let begun = begin(
        &s,
        "s",
        output,
        cp_store,
        Arc::new(Counters::default()),
        prepare,
    )
    .await
    .expect("the takeover reads again and claims");
    assert_eq!(
        begun.checkpoint.shards["s"].sequence_number.as_deref(),
        Some("2"),
        "the other process's last save is where this run goes on"
    );
    let stored: Checkpoint =
        serde_json::from_slice(&memory.get(&path).await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(stored.owner, begun.checkpoint.owner);
    assert_ne!(stored.owner.as_deref(), Some("the previous consumer"));
    drop(begun.tx);
    begun.writer.await.unwrap().unwrap();
}
