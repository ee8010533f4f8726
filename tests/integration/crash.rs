//! The crash harness: the consumer and the scheduled export over a Kinesis stream (kinesis-mock)
//! into S3 (moto), killed again and again at random moments and at the protocol's worst moments,
//! restarted each time; then the lake is compared with the stream: nothing missing, nothing
//! duplicated, no partial or orphan object.
//!
//! Sized for CI by default; `DDB_LAKE_CRASH_RECORDS` and `DDB_LAKE_CRASH_KILLS` make it longer
//! (README, "Exactly once").

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::helpers::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes the input: generated change records, with one line in 197 made invalid JSON, so that
/// error entries are held to exactly-once too (and most flush groups write an error file).
pub fn crash_input(path: &Path, records: u64, seed: u64) {
    generate(path, records, seed, &["--hours", "6"]);
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i % 197 == 100 {
                format!("{{\"broken\": {i}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// Compares the lake under `s3://bucket/lake` with the stream; returns the counts.
pub fn lake_check(bucket: &str, stream: &str) -> serde_json::Value {
    lake_check_with(bucket, stream, &[])
}

/// [`lake_check`] with the layout and time arguments of tests/python/lake_check.py.
pub fn lake_check_with(bucket: &str, stream: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![bucket, "lake", stream, "orders"];
    args.extend_from_slice(extra);
    let out = py_script("lake_check.py", &args);
    serde_json::from_str(out.trim()).unwrap()
}

/// Asserts a lake check found every record exactly once, in its right form, place and values,
/// and nothing else.
pub fn assert_exact(check: &serde_json::Value, records: u64) {
    for problem in [
        "missing",
        "duplicated",
        "unexpected",
        "unreadable",
        "unlisted",
        "listed_twice",
        "manifest_bad",
        "wrong_form",
        "wrong_values",
        "wrong_folder",
        "schema_bad",
        "marker_bad",
        "compaction_bad",
        "pending",
        "unfinished",
        "behind",
    ] {
        assert_eq!(check[problem], 0, "{problem}: {check}");
    }
    assert_eq!(check["records"], records, "{check}");
    // Good records are rows, bad ones error entries: one does not stand in for the other.
    assert_eq!(check["rows"], check["good"], "{check}");
    assert_eq!(check["errors"], check["bad"], "{check}");
    assert_eq!(check["duckdb_rows"], check["rows"], "{check}");
    assert!(check["errors"].as_u64().unwrap() > 0, "{check}");
}

/// Flushes small and often, and uploads every data file over 8 KiB as a multipart upload of
/// 16 KiB parts (the local S3 server accepts parts that small; scripts/test.sh).
pub const SMALL_FLUSHES: &str =
    "[buffer]\nmax_records = 1500\n\n[s3]\nmultipart_threshold = \"8KiB\"\npart_size = \"16KiB\"\n";

/// The lake layouts the harness runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{table}/YYYY/MM/DD/HH` by event time, with hour markers.
    Hourly,
    /// As `Hourly`, with each hour compacted when it is complete.
    Compacted,
    /// `{table}/YYYY/MM/DD` by arrival (processing) time.
    Daily,
}

impl Shape {
    fn config(self) -> String {
        let extra = match self {
            Shape::Hourly => "\n[markers]\nenabled = true\nallowed_lateness = \"1m\"\n",
            Shape::Compacted => {
                "\n[markers]\nenabled = true\nallowed_lateness = \"1m\"\ncompact = true\ncompact_target = \"1MiB\"\n"
            }
            Shape::Daily => {
                "\n[output]\ntemplate = \"{table}/{YYYY}/{MM}/{DD}\"\npartition_time = \"processing\"\n"
            }
        };
        format!("{SMALL_FLUSHES}{extra}")
    }

    fn check_args(self) -> &'static [&'static str] {
        match self {
            Shape::Hourly => &[],
            Shape::Compacted => &["--compacted"],
            Shape::Daily => &["--layout", "daily", "--time", "processing"],
        }
    }

    fn failpoints(self) -> &'static [&'static str] {
        match self {
            Shape::Hourly => &[
                "after-schema",
                "after-intent",
                "after-data",
                "mid-multipart",
                "after-manifest",
                "mid-marker",
                "after-errors",
            ],
            Shape::Compacted => &[
                "after-intent",
                "after-data",
                "mid-multipart",
                "mid-compaction",
                "mid-marker",
            ],
            Shape::Daily => &[
                "after-schema",
                "after-intent",
                "after-data",
                "mid-multipart",
                "after-manifest",
                "after-errors",
            ],
        }
    }
}

/// Waits for the child to exit, or kills it (SIGKILL) at `deadline`. Returns how it ended.
pub fn run_until(mut child: Child, deadline: Instant, stderr: &Path) -> String {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(stderr).unwrap_or_default();
            return match status.code() {
                Some(0 | 2) => "finished".into(),
                Some(c) => panic!("ddb-lake failed with {c}:\n{err}"),
                None if err.contains("failpoint") => "crashed at its failpoint".into(),
                None => panic!("ddb-lake died of a signal:\n{err}"),
            };
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return "killed".into();
        }
        std::thread::sleep(Duration::from_millis(10)); // polling the child's exit, bounded
    }
}

/// Runs `kills` runs of `consume` and `export --stream` over a stream fed between them (some
/// records KPL-aggregated), killing each one at a random moment or at a point of the write
/// protocol, splitting a shard and merging two while runs are going; then a last scheduled run,
/// and the lake is compared with the stream record by record.
fn harness(shape: Shape, records: u64, kills: u64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    crash_input(&input, records, seed);
    let config = dir.path().join("ddb-lake.toml");
    std::fs::write(&config, shape.config()).unwrap();
    let name = unique("crash");
    let bucket = unique("crash").to_lowercase();
    create_bucket(&bucket);
    py_script("kinesis_tool.py", &["create", &name, "4"]);
    let lake = format!("s3://{bucket}/lake");
    let stderr = dir.path().join("stderr.txt");

    // Records arrive in chunks between the runs, so that every run has something to read.
    let chunk = records.div_ceil(kills);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    let mut left_pending = 0;
    let points = shape.failpoints();
    for i in 0..kills {
        let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(records));
        if lo < hi {
            // Every third chunk holds KPL aggregates.
            let kpl = if i % 3 == 1 { "4" } else { "0" };
            py_script(
                "kinesis_tool.py",
                &[
                    "put",
                    &name,
                    s(&input),
                    &lo.to_string(),
                    &hi.to_string(),
                    kpl,
                ],
            );
        }
        let scheduled = i % 5 == 4;
        let mut cmd = bin();
        if scheduled {
            cmd.args(["export", "--stream", &name]);
        } else {
            cmd.args(["consume", "--stream", &name, "--max-age", "1s"]);
        }
        cmd.args(["-o", &lake, "-c", s(&config), "--no-progress", "--json"]);
        cmd.env("DDB_LAKE_TEST_MIN_PART_SIZE", "16384");
        // Every other run dies at a point of the write protocol, the others at a random time. A
        // point the runs did not reach yet (an hour is marked only when a chunk of records
        // crosses one) is tried again on the next such run, before the rotation goes on.
        let next = (i as usize / 2) % points.len();
        let point = (0..points.len())
            .map(|k| points[(next + k) % points.len()])
            .find(|p| !outcomes.contains_key(&format!("{p}: crashed at its failpoint")))
            .unwrap_or(points[next]);
        let deadline = if i % 2 == 1 {
            // A point tried before without crashing there (the run was killed first, or finished:
            // a consume run that has one flush group of new records passes a point once) is
            // tried again at its first pass, with more time; so every point is reached whatever
            // the random draws. Else the first or second time for points every flush group
            // passes, else the first.
            let retry = outcomes
                .keys()
                .any(|k| k.starts_with(&format!("{point}: ")))
                && !outcomes.contains_key(&format!("{point}: crashed at its failpoint"));
            let nth = if !retry && matches!(point, "after-intent" | "after-data" | "mid-multipart")
            {
                rng.random_range(1..=2)
            } else {
                1
            };
            cmd.env("DDB_LAKE_FAILPOINT", format!("{point}:{nth}"));
            // Time enough to get there (the local Kinesis server is slow), else a plain kill.
            Instant::now() + Duration::from_secs(if retry { 40 } else { 15 })
        } else {
            Instant::now() + Duration::from_millis(rng.random_range(200..4000))
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        // Resharding while a run reads: a split a third of the way, a merge at two thirds.
        if i == kills / 3 {
            py_script("kinesis_tool.py", &["split", &name, "shardId-000000000000"]);
        } else if i == 2 * kills / 3 {
            py_script("kinesis_tool.py", &["merge", &name]);
        }
        let how = run_until(child, deadline, &stderr);
        let kind = if i % 2 == 1 { point } else { "random" };
        let pending = s3_checkpoint(&bucket, &name)
            .and_then(|cp| cp["pending"].as_array().map(Vec::len))
            .unwrap_or(0);
        if how != "finished" && pending > 0 {
            left_pending += 1;
        }
        eprintln!(
            "run {i} ({kind}, {}): {how} after {:?}, {pending} batches pending",
            if scheduled { "export" } else { "consume" },
            started.elapsed()
        );
        *outcomes.entry(format!("{kind}: {how}")).or_default() += 1;
    }
    // A last scheduled run catches up.
    let out = bin()
        .args(["export", "--stream", &name, "-o", &lake, "-c", s(&config)])
        .args(["--json", "--no-progress"])
        .env("DDB_LAKE_TEST_MIN_PART_SIZE", "16384")
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 2)), "{out:?}");
    let last: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("outcomes: {outcomes:?}\nlast run: {}", last["records_in"]);
    let check = lake_check_with(&bucket, &name, shape.check_args());
    eprintln!("lake check: {check}");
    assert_exact(&check, records);
    assert!(check["kpl"].as_u64().unwrap() > 0, "{check}");
    // The protocol's worst moments were hit, not only random ones.
    for point in points {
        assert!(
            outcomes.contains_key(&format!("{point}: crashed at its failpoint")),
            "{point}: {outcomes:?}"
        );
    }
    // Kills landed in the middle of flush groups (a checkpoint naming batches not yet committed).
    assert!(
        left_pending >= 3,
        "{left_pending} kills left batches pending: {outcomes:?}"
    );
    // Uploads killed midway leave incomplete uploads (invisible), at most one per file being
    // written at the kill: `output.concurrent_writes` (16) per killed run.
    let killed: u64 = outcomes
        .iter()
        .filter(|(k, _)| !k.ends_with("finished"))
        .map(|(_, n)| *n as u64)
        .sum();
    let uploads = check["incomplete_uploads"].as_u64().unwrap();
    assert!(
        uploads >= 1 && uploads <= killed * 16,
        "{uploads} incomplete uploads, {killed} kills"
    );
    if shape != Shape::Daily {
        assert!(check["markers"].as_u64().unwrap() > 0, "{check}");
    }
    if shape == Shape::Compacted {
        assert!(check["compacted"].as_u64().unwrap() > 0, "{check}");
    }
}

#[test]
fn killed_at_random_moments_the_lake_holds_every_record_exactly_once() {
    if skip_without_servers() {
        return;
    }
    let records = env_or("DDB_LAKE_CRASH_RECORDS", 20_000);
    let kills = env_or("DDB_LAKE_CRASH_KILLS", 26);
    let seed = env_or("DDB_LAKE_CRASH_SEED", 5);
    harness(Shape::Hourly, records, kills, seed);
}

/// Issue 15: hours compacted by the consumer, killed at the compaction's own moments too.
#[test]
fn killed_at_random_moments_with_compaction_every_record_is_in_the_lake_once() {
    if skip_without_servers() {
        return;
    }
    let records = env_or("DDB_LAKE_CRASH_RECORDS", 20_000) / 2;
    let kills = env_or("DDB_LAKE_CRASH_KILLS", 26) * 2 / 3;
    let seed = env_or("DDB_LAKE_CRASH_SEED", 5) + 2000;
    harness(Shape::Compacted, records, kills, seed);
}

#[test]
fn killed_at_random_moments_with_a_daily_template_and_processing_time() {
    if skip_without_servers() {
        return;
    }
    let records = env_or("DDB_LAKE_CRASH_RECORDS", 20_000) / 2;
    let kills = env_or("DDB_LAKE_CRASH_KILLS", 26) * 2 / 3;
    let seed = env_or("DDB_LAKE_CRASH_SEED", 5) + 1000;
    harness(Shape::Daily, records, kills, seed);
}

/// The stream's checkpoint object on S3, parsed.
fn s3_checkpoint(bucket: &str, stream: &str) -> Option<serde_json::Value> {
    let key = format!("lake/_ddb_lake/checkpoints/{stream}.json");
    s3_get(bucket, &key).map(|b| serde_json::from_slice(&b).expect("a checkpoint is JSON"))
}

/// Polls `cond` until it holds, with a deadline.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100)); // polling a condition, bounded
    }
}

#[test]
fn a_second_consumer_on_the_same_checkpoint_fences_the_first_off() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    crash_input(&input, 1200, 13);
    let name = unique("fence");
    let bucket = unique("fence").to_lowercase();
    create_bucket(&bucket);
    py_script("kinesis_tool.py", &["create", &name, "2"]);
    py_script("kinesis_tool.py", &["put", &name, s(&input), "0", "600"]);
    let lake = format!("s3://{bucket}/lake");
    let consumer = || {
        let mut cmd = bin();
        cmd.args(["consume", "--stream", &name, "-o", &lake, "--max-age", "1s"])
            .args(["--json", "--no-progress"]);
        Running::start(cmd)
    };
    let mut first = consumer();
    let first_pid = format!("pid {} ", first.id());
    wait_until("the first consumer committed a flush", || {
        s3_checkpoint(&bucket, &name).is_some_and(|cp| {
            cp["owner"].as_str().unwrap_or("").contains(&first_pid) && cp["written"].is_object()
                || cp["shards"]
                    .as_object()
                    .is_some_and(|s| s.values().any(|v| v["sequence_number"].is_string()))
        })
    });
    let mut second = consumer();
    let second_pid = format!("pid {} ", second.id());
    wait_until("the second consumer claimed the checkpoint", || {
        assert!(
            !second.exited(),
            "the second consumer stopped before claiming"
        );
        s3_checkpoint(&bucket, &name)
            .is_some_and(|cp| cp["owner"].as_str().unwrap_or("").contains(&second_pid))
    });
    // New records: the first consumer's next save finds the checkpoint taken and it stops.
    py_script("kinesis_tool.py", &["put", &name, s(&input), "600", "1200"]);
    let out = {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !first.exited() {
            assert!(
                Instant::now() < deadline,
                "the first consumer was not fenced off"
            );
            std::thread::sleep(Duration::from_millis(100)); // polling its exit, bounded
        }
        first.wait()
    };
    let err = &out.stderr;
    assert_eq!(out.code, Some(1), "{err}");
    assert!(
        err.contains("was taken over by another ddb-lake process") && err.contains(&second_pid),
        "{err}"
    );
    // The second one carries on; stopped, it leaves the lake exact.
    wait_until("the second consumer wrote everything", || {
        lake_check(&bucket, &name)["missing"] == 0
    });
    second.terminate();
    let out = second.wait();
    assert!(matches!(out.code, Some(0 | 2)), "{}", out.stderr);
    assert_exact(&lake_check(&bucket, &name), 1200);
}
