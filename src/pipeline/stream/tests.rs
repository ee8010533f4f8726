use super::*;
use crate::config::ConfigFile;
use crate::kinesis::fake::FakeStream;
use crate::kinesis::KinesisRecord;
use crate::kinesis::{kpl, Shard};
use crate::pipeline::SystemClock;

fn kinesis_record(seq: u64, id: &str) -> KinesisRecord {
    record_at(seq, id, 1795000000331)
}

fn record_at(seq: u64, id: &str, event_ms: i64) -> KinesisRecord {
    let json = format!(
        r#"{{"eventID":"{id}","eventName":"INSERT","tableName":"T","dynamodb":{{"ApproximateCreationDateTime":{event_ms},"Keys":{{"Id":{{"S":"{id}"}}}},"NewImage":{{"Id":{{"S":"{id}"}}}}}}}}"#
    );
    KinesisRecord {
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

fn opts(cp: &std::path::Path) -> StreamOptions {
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
fn one_shard() -> FakeStream {
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
async fn run_fake(s: &Settings, fake: Arc<FakeStream>, cp: &std::path::Path) -> Summary {
    run(
        s,
        fake,
        opts(cp),
        Arc::new(SystemClock::default()),
        Arc::new(Counters::default()),
        std::future::pending(),
    )
    .await
    .unwrap()
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
async fn hours_are_marked_after_the_watermark_and_late_rows_counted() {
    let dir = tempfile::tempdir().unwrap();
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(&format!("2026-11-20T{t}:00Z"))
            .unwrap()
            .timestamp_millis()
    };
    // Event times in processing order (the fake stream hands out two records per call).
    let times = ["08:10", "08:50", "09:05", "09:16", "08:55", "10:30"];
    let mut fake = one_shard();
    fake.records.insert(
        "s".into(),
        times
            .iter()
            .enumerate()
            .map(|(i, t)| record_at(i as u64 + 1, &format!("r{i}"), at(t)))
            .collect(),
    );
    let lake = dir.path().join("lake");
    let mut c = ConfigFile::default();
    c.output.url = Some(lake.display().to_string());
    c.markers.enabled = true;
    c.markers.allowed_lateness = "10m".into();
    let s = c.validate().unwrap();
    let summary = run_fake(&s, Arc::new(fake), &dir.path().join("cp.json")).await;
    // 08 is complete once 09:16 is read (past 09:00 + 10m); 09 once 10:30 is; 10 is not.
    assert_eq!(
        summary.hours_completed,
        ["t 2026-11-20T08", "t 2026-11-20T09"]
    );
    let hours = lake.join("_ddb_lake/hours/t/2026/11/20");
    assert!(!hours.join("10").exists());
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hours.join("08/_COMPLETE.json")).unwrap()).unwrap();
    assert_eq!(
        (marker["files"].as_u64(), marker["hour"].as_str()),
        (Some(1), Some("2026-11-20T08:00:00Z"))
    );
    // The hour's manifest lists its one on-time file (08:10 and 08:50).
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hours.join("08/manifest.json")).unwrap()).unwrap();
    let listed = manifest["entries"][0]["url"].as_str().unwrap();
    let on_time = summary
        .objects
        .iter()
        .find(|o| o.path.starts_with("t/2026/11/20/08/t-") && !o.path.contains("-late-"))
        .unwrap();
    assert!(listed.ends_with(&on_time.path), "{listed}");
    assert_eq!(on_time.rows, 2);
    // 08:55 arrived after 08 was marked: its own file, flagged and counted.
    let late: Vec<_> = summary
        .objects
        .iter()
        .filter(|o| o.path.contains("-late-"))
        .collect();
    assert_eq!(late.len(), 1);
    assert!(late[0].path.starts_with("t/2026/11/20/08/t-late-"));
    assert_eq!(summary.late_rows["t"], 1);
    assert_eq!(summary.rows_out["t"], 6);
    let saved: Checkpoint =
        serde_json::from_slice(&std::fs::read(dir.path().join("cp.json")).unwrap()).unwrap();
    let hour = |t: &str| at(t) / 3_600_000;
    assert_eq!(saved.marked_through["t"], hour("09:00"));
    assert_eq!(
        saved.open_hours["t"].iter().copied().collect::<Vec<_>>(),
        [hour("10:00")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reading_only_bad_records_writes_them_at_the_flush_age() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = one_shard();
    let bad = |seq: u64| KinesisRecord {
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
        run(
            &s,
            gone.clone(),
            o,
            Arc::new(SystemClock::default()),
            Arc::new(Counters::default()),
            std::future::pending(),
        )
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
