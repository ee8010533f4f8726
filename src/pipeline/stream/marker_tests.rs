//! Hour markers and compaction in stream runs over a fake stream.

use super::tests::{one_shard, opts, record_at, run_fake, run_opts};
use super::*;
use crate::config::ConfigFile;
use crate::kinesis::fake::FakeStream;

/// Settings of a lake at `lake` with hour markers, 10 minutes of allowed lateness.
fn markers_config(lake: &std::path::Path) -> ConfigFile {
    let mut c = ConfigFile::default();
    c.output.url = Some(lake.display().to_string());
    c.markers.enabled = true;
    c.markers.allowed_lateness = "10m".into();
    c
}

/// 2026-11-20 at `t` (`HH:MM`), in ms since the epoch.
fn at(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(&format!("2026-11-20T{t}:00Z"))
        .unwrap()
        .timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hours_are_marked_after_the_watermark_and_late_rows_counted() {
    let dir = tempfile::tempdir().unwrap();
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
    let s = markers_config(&lake).validate().unwrap();
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

/// A stream gone quiet: once every shard is at its tip, hours complete by the clock (here the
/// scheduled run's cutoff), and with compaction the hour's staged files become one compacted
/// file in the hour's folder, sorted by key, in a COPY manifest; nothing stays staged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_completes_and_compacts_its_hours_by_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut fake = one_shard();
    // Ids out of order; one record per flush (max_records = 1): three staged files.
    let ids = ["c", "a", "b"];
    fake.records.insert(
        "s".into(),
        ids.iter()
            .enumerate()
            .map(|(i, id)| record_at(i as u64 + 1, id, at(&format!("10:{:02}", 30 + i))))
            .collect(),
    );
    let lake = dir.path().join("lake");
    let mut c = markers_config(&lake);
    c.buffer.max_records = 1;
    c.markers.compact = true;
    let s = c.validate().unwrap();
    let mut o = opts(&dir.path().join("cp.json"));
    // Before 11:10 the hour may still get records; after it, not.
    o.mode = Mode::Scheduled {
        until_ms: at("11:05"),
    };
    let summary = run_opts(&s, Arc::new(one_shard_with(&fake)), o.clone())
        .await
        .unwrap();
    assert!(summary.hours_completed.is_empty());
    let staged = lake.join("_ddb_lake/compacting/t");
    assert_eq!(walk(&staged).len(), 3, "{:?}", walk(&lake));
    o.mode = Mode::Scheduled {
        until_ms: at("11:20"),
    };
    let summary = run_opts(&s, Arc::new(one_shard_with(&fake)), o)
        .await
        .unwrap();
    assert_eq!(summary.hours_completed, ["t 2026-11-20T10"]);
    assert!(walk(&staged).is_empty(), "{:?}", walk(&staged));
    let files = walk(&lake.join("t"));
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].contains("/t-compacted-"), "{files:?}");
    let batches: Vec<arrow_array::RecordBatch> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&files[0]).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    use arrow_array::cast::AsArray;
    use arrow_array::Array;
    let ids: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("id").unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.value(i).to_string())
        })
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let manifests = walk(&lake.join("_ddb_lake/manifests/t"));
    let listed: Vec<String> = manifests
        .iter()
        .flat_map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
            v["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["url"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].ends_with(files[0].rsplit("/lake/").next().unwrap()));
}

/// The same shards and records as `fake` (a fake's call counter starts anew).
fn one_shard_with(fake: &FakeStream) -> FakeStream {
    FakeStream {
        shards: fake.shards.clone(),
        records: fake.records.clone(),
        ..FakeStream::default()
    }
}

/// Every file under a folder (none if it does not exist), sorted.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Compaction decides where an hour's on-time batches go: a run that stopped in the middle of
/// its flush groups is finished under its own setting, and a change is refused until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_compaction_on_or_off_after_a_crash_is_refused_until_the_groups_finish() {
    let dir = tempfile::tempdir().unwrap();
    let cp_path = dir.path().join("cp.json");
    let lake = dir.path().join("lake");
    let mut c = markers_config(&lake);
    for (saved_with, now) in [(false, true), (true, false)] {
        // A crashed run's checkpoint: records past the shard's checkpoint already written.
        let mut cp = Checkpoint {
            stream: "s".into(),
            compact: saved_with,
            ..Checkpoint::default()
        };
        cp.written
            .entry("t/2026/11/20/10/t-".into())
            .or_default()
            .insert(
                "s".into(),
                crate::seq::SeqPos::new(&format!("{:030}", 1), 0),
            );
        std::fs::write(&cp_path, serde_json::to_vec(&cp).unwrap()).unwrap();
        c.markers.compact = now;
        let s = c.validate().unwrap();
        let err = run_opts(&s, Arc::new(one_shard()), opts(&cp_path))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PipelineError::CompactionOff(_)) && err.is_configuration(),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("compact = {saved_with}")),
            "{err}"
        );
        // Under its own setting, the run goes on.
        c.markers.compact = saved_with;
        let s = c.validate().unwrap();
        run_opts(&s, Arc::new(one_shard()), opts(&cp_path))
            .await
            .unwrap();
    }
}

/// A shard that ends does not make the stream quiet before its child is started: the child's
/// changes of the same hour are on time, not late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_shard_does_not_complete_hours_before_its_child_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let shard = |id: &str, parent: Option<&str>| crate::kinesis::Shard {
        id: id.into(),
        parent: parent.map(str::to_string),
        adjacent_parent: None,
    };
    let mut fake = FakeStream {
        shards: vec![shard("p", None), shard("c", Some("p"))],
        closed: vec!["p".into()],
        ..FakeStream::default()
    };
    fake.records.insert(
        "p".into(),
        vec![
            record_at(1, "a", at("09:20")),
            record_at(2, "b", at("09:30")),
        ],
    );
    fake.records.insert(
        "c".into(),
        vec![
            record_at(3, "c", at("09:45")),
            record_at(4, "d", at("09:50")),
        ],
    );
    let lake = dir.path().join("lake");
    let s = markers_config(&lake).validate().unwrap();
    let mut o = opts(&dir.path().join("cp.json"));
    o.mode = Mode::Scheduled {
        until_ms: at("11:30"),
    };
    let summary = run_opts(&s, Arc::new(fake), o).await.unwrap();
    assert_eq!(summary.hours_completed, ["t 2026-11-20T09"]);
    assert_eq!(summary.late_rows.get("t"), None, "{:?}", summary.late_rows);
    assert_eq!(summary.rows_out["t"], 4);
}

/// Staged hours of a table this stream does not write (another stream's, sharing the lake) do
/// not stop a run without compaction, and are left alone; this stream's own do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_streams_staged_hours_do_not_stop_a_run_without_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let staged = lake.join("_ddb_lake/compacting/other/492000/other-0123.parquet");
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    std::fs::write(&staged, b"staged by another stream").unwrap();
    let s = markers_config(&lake).validate().unwrap();
    let cp_path = dir.path().join("cp.json");
    run_opts(&s, Arc::new(one_shard()), opts(&cp_path))
        .await
        .unwrap();
    assert!(staged.exists());
    // Once this stream's checkpoint has the table's hour open, the run is refused.
    let mut cp: Checkpoint = serde_json::from_slice(&std::fs::read(&cp_path).unwrap()).unwrap();
    cp.open_hours
        .entry("other".into())
        .or_default()
        .insert(492000);
    std::fs::write(&cp_path, serde_json::to_vec(&cp).unwrap()).unwrap();
    let err = run_opts(&s, Arc::new(one_shard()), opts(&cp_path))
        .await
        .unwrap_err();
    assert!(matches!(err, PipelineError::CompactionOff(_)), "{err}");
}
