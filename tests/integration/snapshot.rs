//! `snapshot`: the latest image of every item, checked against an independent computation in
//! Python from the generated history itself (tests/python/snapshot_history.py): hour by hour
//! (each snapshot merged from the one before), from scratch, with buckets split by a smaller
//! memory budget, after a crash before the pointer; and the `{table}_latest` view's SQL run in
//! DuckDB over the change log gives the same rows.

use std::path::{Path, PathBuf};

use crate::helpers::*;

/// The first hour of the generated histories, in hours since the epoch.
const START_HOUR: i64 = 1_795_000_000 / 3600;

fn hour_arg(h: i64) -> String {
    chrono::DateTime::from_timestamp((START_HOUR + h) * 3600, 0)
        .unwrap()
        .format("%Y-%m-%dT%H")
        .to_string()
}

/// Writes a history of `items` items over `hours` hours and exports it into `dir/lake`;
/// returns the lake and the last hour with changes.
fn lake_of(dir: &Path, seed: u32, items: u32, hours: u32) -> (PathBuf, i64) {
    let args = [
        s(dir),
        &seed.to_string(),
        &items.to_string(),
        &hours.to_string(),
    ];
    let mut all = vec!["write"];
    all.extend(args);
    py_script("snapshot_history.py", &all);
    let lake = dir.join("lake");
    run_ok(
        &[
            "export",
            "-i",
            s(&dir.join("in")),
            "-o",
            s(&lake),
            "--no-progress",
        ],
        0,
    );
    let last = std::fs::read_dir(dir.join("in")).unwrap().count() as i64 - 1;
    (lake, last)
}

fn snapshot(lake: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["snapshot", "-o", s(lake), "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&run_ok(&args, 0)).expect("a JSON summary")
}

/// The current snapshot's data folder of `table`.
fn current(lake: &Path, table: &str) -> PathBuf {
    let p = lake.join(format!("_ddb_lake/snapshots/{table}/CURRENT.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    lake.join(v["data"].as_str().unwrap())
}

/// Checks both tables' current snapshots against the history up to `hour`.
fn check(dir: &Path, lake: &Path, hour: i64) {
    for (table, lake_table) in [("Accounts", "accounts"), ("Blobs", "blobs")] {
        let truth = dir.join("truth.json");
        let data = current(lake, lake_table);
        let h = hour.to_string();
        py_script(
            "snapshot_history.py",
            &["check", s(&data), s(&truth), table, &h],
        );
    }
}

/// The rows of two snapshot folders, equal (pyarrow, sorted by every column's text).
const SAME_ROWS: &str = r#"
import sys, glob, pyarrow.parquet as pq, pyarrow as pa
def rows(d):
    fs = sorted(glob.glob(d + '/*.parquet'))
    t = pa.concat_tables([pq.read_table(f) for f in fs], promote_options='default')
    return sorted(repr(sorted(r.items())) for r in t.to_pylist())
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert a == b, (len(a), len(b))
print(len(a))
"#;

#[test]
fn snapshots_hold_the_latest_change_of_every_item_hour_by_hour() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lake, last) = lake_of(dir.path(), 7, 600, 6);
    assert!(last >= 2, "a history over several hours");
    let mut ids = Vec::new();
    for h in 0..=last {
        let done = snapshot(&lake, &["--as-of", &hour_arg(h)]);
        check(dir.path(), &lake, h);
        ids.push(done[0]["snapshot"].as_str().unwrap().to_string());
        if h > 0 {
            assert!(
                done[0]["new_files"].as_u64().unwrap() <= 1,
                "{done}: only the new hour is read"
            );
        }
    }
    // Only the current snapshot and the one before it are kept (a local lake keeps the empty
    // folders of the others).
    let kept: Vec<String> = std::fs::read_dir(lake.join("accounts_current"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::read_dir(p).unwrap().next().is_some())
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(ids.len() >= 3 && kept.len() == 2, "{kept:?} of {ids:?}");
    assert!(
        kept.iter().all(|k| ids[ids.len() - 2..].contains(k)),
        "{kept:?}"
    );
    // Nothing new: the pointer moves on, the snapshot stays.
    let again = snapshot(&lake, &["--as-of", &hour_arg(last + 1)]);
    assert_eq!(again[0]["written"], false, "{again}");
    assert_eq!(
        again[0]["snapshot"].as_str(),
        ids.last().map(String::as_str)
    );
    // Earlier hours are refused: a snapshot only moves forward, also from an hour the pointer
    // moved to with nothing new.
    for h in [0, last] {
        let back = run(&["snapshot", "-o", s(&lake), "--as-of", &hour_arg(h)]);
        let err = String::from_utf8_lossy(&back.stderr);
        assert_eq!(back.status.code(), Some(3), "{h}: {err}");
        assert!(err.contains("snapshots only move forward"), "{err}");
    }

    // From scratch, on a copy of the change log: the same rows as hour by hour.
    let scratch = dir.path().join("scratch");
    for part in ["accounts", "blobs", "_ddb_lake/schemas"] {
        copy_dir(&lake.join(part), &scratch.join(part));
    }
    snapshot(&scratch, &["--as-of", &hour_arg(last)]);
    for t in ["accounts", "blobs"] {
        let n = py(
            SAME_ROWS,
            &[s(&current(&lake, t)), s(&current(&scratch, t))],
        );
        assert!(n.parse::<u64>().unwrap() > 50, "{t}: {n} items");
    }
}

/// More data than the memory budget holds: the buckets grow (the previous snapshot's split in
/// two by the next run) and the result is the same.
#[test]
fn a_small_memory_budget_splits_the_buckets_and_changes_nothing() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lake, last) = lake_of(dir.path(), 11, 2000, 4);
    let first = snapshot(&lake, &["--as-of", &hour_arg(0)]);
    assert_eq!(first[0]["buckets"], 1, "{first}");
    let small = snapshot(
        &lake,
        &["--as-of", &hour_arg(last), "--memory-budget", "64KiB"],
    );
    let buckets = small[0]["buckets"].as_u64().unwrap();
    assert!(buckets >= 4, "{small}");
    check(dir.path(), &lake, last);
    let files = std::fs::read_dir(current(&lake, "accounts"))
        .unwrap()
        .count() as u64;
    assert!(
        files > 1 && files <= buckets,
        "{files} files, {buckets} buckets"
    );
}

/// Killed after its files and manifest, before the pointer: the previous snapshot is still
/// current, and the next run writes the same snapshot again and makes it current.
#[test]
fn a_snapshot_killed_before_its_pointer_leaves_the_previous_one_current() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lake, last) = lake_of(dir.path(), 3, 300, 3);
    let first = snapshot(&lake, &["--as-of", &hour_arg(0)]);
    let before = current(&lake, "accounts");
    let killed = bin()
        .env("DDB_LAKE_FAILPOINT", "before-snapshot-pointer:1")
        .args([
            "snapshot",
            "-o",
            s(&lake),
            "--table",
            "accounts",
            "--as-of",
            &hour_arg(last),
        ])
        .output()
        .unwrap();
    assert!(!killed.status.success(), "the failpoint aborted it");
    assert_eq!(
        current(&lake, "accounts"),
        before,
        "the previous snapshot is current"
    );
    check_hour(dir.path(), &lake, "Accounts", "accounts", 0);
    let done = snapshot(&lake, &["--table", "accounts", "--as-of", &hour_arg(last)]);
    assert_ne!(done[0]["snapshot"], first[0]["snapshot"]);
    check_hour(dir.path(), &lake, "Accounts", "accounts", last);
}

fn check_hour(dir: &Path, lake: &Path, table: &str, lake_table: &str, hour: i64) {
    let data = current(lake, lake_table);
    let truth = dir.join("truth.json");
    py_script(
        "snapshot_history.py",
        &["check", s(&data), s(&truth), table, &hour.to_string()],
    );
}

/// The `{table}_latest` view that `ddl athena` prints, run in DuckDB over the change log,
/// gives exactly the current snapshot's rows; `ddl` also points `{table}_current` at it, and
/// the Redshift statements load its COPY manifest in one transaction.
#[test]
fn the_latest_view_in_duckdb_equals_the_snapshot() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lake, last) = lake_of(dir.path(), 5, 500, 3);
    snapshot(&lake, &["--as-of", &hour_arg(last)]);
    let ddl = run_ok(&["ddl", "athena", "-o", s(&lake), "--database", "cdc"], 0);
    for t in ["accounts", "blobs"] {
        assert!(
            ddl.contains(&format!("CREATE OR REPLACE VIEW \"cdc\".\"{t}_latest\"")),
            "{ddl}"
        );
        let data = format!("{}/", current(&lake, t).display());
        assert!(
            ddl.contains(&format!(
                "ALTER TABLE `cdc`.`{t}_current` SET LOCATION '{data}'"
            )),
            "{ddl}"
        );
    }
    let views = dir.path().join("views.sql");
    std::fs::write(&views, &ddl).unwrap();
    let compare = r#"
import sys, re, duckdb
lake, views = sys.argv[1], open(sys.argv[2]).read()
c = duckdb.connect()
c.execute("create schema cdc")
for t in ['accounts', 'blobs']:
    c.execute(f"create view cdc.{t} as select * from read_parquet('{lake}/{t}/**/*.parquet', union_by_name=true)")
    view = re.search(r'CREATE OR REPLACE VIEW "cdc"."' + t + r'_latest" AS\n.*?;\n', views, re.S).group(0)
    c.execute(view)
    cur = open(f'{lake}/_ddb_lake/snapshots/{t}/CURRENT.json').read()
    data = re.search(r'"data": "([^"]+)"', cur).group(1)
    snap = f"read_parquet('{lake}/{data}/*.parquet')"
    n = c.execute(f"select count(*) from cdc.{t}_latest").fetchone()[0]
    m = c.execute(f"select count(*) from {snap}").fetchone()[0]
    a = c.execute(f"select count(*) from (select * from cdc.{t}_latest except all select * from {snap})").fetchone()[0]
    b = c.execute(f"select count(*) from (select * from {snap} except all select * from cdc.{t}_latest)").fetchone()[0]
    assert n == m and a == 0 and b == 0, (t, n, m, a, b)
    print(t, n)
"#;
    let out = py(compare, &[s(&lake), s(&views)]);
    assert!(out.contains("accounts") && out.contains("blobs"), "{out}");
    let rs = run_ok(
        &["ddl", "redshift", "-o", s(&lake), "--database", "public"],
        0,
    );
    assert!(
        rs.contains("CREATE OR REPLACE VIEW \"public\".\"accounts_latest\""),
        "{rs}"
    );
    assert!(rs.contains("regexp_substr"), "{rs}");
    assert!(rs.contains("BEGIN;\nDELETE FROM \"public\".\"accounts_current\";\nCOPY \"public\".\"accounts_current\" FROM '"), "{rs}");
    assert!(rs.contains("copy-manifest.json"), "{rs}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// The same history through a Kinesis stream (kinesis-mock) whose shards split and merge while
/// the changes go in, each item's changes to one shard at a time (its key as the partition
/// key), the phases cut where an item's changes share a millisecond: there only the stream's
/// order (a child shard after its parent) says which is the later. The snapshot holds exactly
/// what the history says.
#[test]
fn a_stream_that_splits_and_merges_gives_each_item_its_latest_change() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    py_script("snapshot_history.py", &["write", s(d), "13", "240", "3"]);
    // One file in the order the changes were made, and three cut points between the last two
    // changes of an item, made in one millisecond.
    let cuts = r#"
import sys, glob, json
d = sys.argv[1]
lines = [l for f in sorted(glob.glob(d + '/in/*.jsonl')) for l in open(f).read().splitlines()]
open(d + '/all.jsonl', 'w').write('\n'.join(lines) + '\n')
t = json.load(open(d + '/truth.json'))
last = {c['key']: i for i, c in enumerate(t)}
# An item's last two changes in one millisecond: its state is the second only by stream order.
ties = [i for i in range(1, len(t)) if t[i]['key'] == t[i - 1]['key'] and t[i]['time_ms'] == t[i - 1]['time_ms'] and last[t[i]['key']] == i]
n = len(t)
cuts = [min(ties, key=lambda i: abs(i - n * k // 4)) for k in (1, 2, 3)]
assert len(set(cuts)) == 3, cuts
print(len(t), *cuts)
"#;
    let out = py(cuts, &[s(d)]);
    let v: Vec<usize> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    let (n, cuts) = (v[0], &v[1..]);
    let stream = unique("snapshot-shards");
    let kt = |args: &[&str]| py_script("kinesis_tool.py", args);
    kt(&["create", &stream, "1"]);
    let all = d.join("all.jsonl");
    let put = |lo: usize, hi: usize| {
        kt(&[
            "put-keyed",
            &stream,
            s(&all),
            &lo.to_string(),
            &hi.to_string(),
        ]);
    };
    put(0, cuts[0]);
    kt(&["split", &stream, "shardId-000000000000"]);
    put(cuts[0], cuts[1]);
    kt(&["split", &stream, "shardId-000000000001"]);
    put(cuts[1], cuts[2]);
    kt(&["merge", &stream]);
    put(cuts[2], n);
    let shards: serde_json::Value = serde_json::from_str(&kt(&["shards", &stream])).unwrap();
    assert!(shards.as_array().unwrap().len() >= 6, "{shards}");
    let lake = d.join("lake");
    run_ok(
        &[
            "export",
            "--stream",
            &stream,
            "-o",
            s(&lake),
            "--no-progress",
        ],
        0,
    );
    let last = std::fs::read_dir(d.join("in")).unwrap().count() as i64 - 1;
    snapshot(&lake, &["--as-of", &hour_arg(last)]);
    check(d, &lake, last);
}

/// `ddl athena --apply glue` points `{table}_current` at the current snapshot, creating it the
/// first time and moving it (columns and location in one UpdateTable) after the next snapshot.
#[test]
fn glue_moves_the_current_table_to_each_new_snapshot() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (lake, last) = lake_of(dir.path(), 9, 200, 3);
    let db = unique("snapdb").to_lowercase().replace('-', "_");
    let apply = || {
        run_ok(
            &[
                "ddl",
                "athena",
                "-o",
                s(&lake),
                "--location",
                "s3://bucket/lake",
            ]
            .into_iter()
            .chain(["--database", &db, "--apply", "glue"])
            .collect::<Vec<_>>(),
            0,
        )
    };
    let located = |lake_table: &str| {
        let data = current(&lake, lake_table);
        let rel = data.strip_prefix(&lake).unwrap().display().to_string();
        format!("s3://bucket/lake/{rel}/")
    };
    snapshot(&lake, &["--as-of", &hour_arg(0)]);
    let out = apply();
    assert!(
        out.contains(&format!("{db}.accounts_current is snapshot")),
        "{out}"
    );
    let t = crate::ddl::glue_table(&db, "accounts_current");
    assert_eq!(t["location"], located("accounts"), "{t}");
    assert!(
        t["keys"].as_array().unwrap().is_empty(),
        "no partitions: {t}"
    );
    snapshot(&lake, &["--as-of", &hour_arg(last)]);
    apply();
    let moved = crate::ddl::glue_table(&db, "accounts_current");
    assert_eq!(moved["location"], located("accounts"), "{moved}");
    assert_ne!(moved["location"], t["location"]);
}

/// A full export's items (at the export time T) against changes read from the stream: a change
/// made before the handover margin (15 minutes) is already in the export, and the exported item
/// stays; one within the margin, or after T, is the item's state; a delete after T removes it.
#[test]
fn exported_items_give_way_to_changes_within_the_margin_and_after() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = py_script(
        "write_export.py",
        &[
            s(d),
            "Orders",
            "DYNAMODB_JSON",
            "FULL_EXPORT",
            "20",
            "2",
            "1",
        ],
    );
    let lake = d.join("lake");
    // A full export's items do not say which attributes are the key.
    run_ok(
        &[
            "export",
            "-i",
            folder.trim(),
            "-o",
            s(&lake),
            "--key",
            "Id",
            "--no-progress",
        ],
        0,
    );
    let t_ms: i64 = 1_795_169_730_250; // the export time, 2026-11-20T10:15:30.250Z
    let change = |id: u32, op: &str, at_ms: i64| {
        let image = format!(r#"{{"Id":{{"N":"{id}"}},"Note":{{"S":"{op} at {at_ms}"}}}}"#);
        let images = if op == "REMOVE" {
            format!(r#""OldImage":{image}"#)
        } else {
            format!(r#""NewImage":{image}"#)
        };
        format!(
            r#"{{"eventID":"c{id}","eventName":"{op}","tableName":"Orders","dynamodb":{{"ApproximateCreationDateTime":{at_ms},"Keys":{{"Id":{{"N":"{id}"}}}},{images}}}}}"#
        )
    };
    let minute = 60_000;
    let lines = [
        change(1, "MODIFY", t_ms - 20 * minute), // before the margin: in the export already
        change(2, "MODIFY", t_ms - 5 * minute),  // within it: may or may not be; it wins
        change(3, "REMOVE", t_ms + minute),
        change(4, "MODIFY", t_ms + 120 * minute),
        change(99, "INSERT", t_ms + minute),
    ];
    let changes = d.join("changes.jsonl");
    std::fs::write(&changes, lines.join("\n") + "\n").unwrap();
    run_ok(
        &["export", "-i", s(&changes), "-o", s(&lake), "--no-progress"],
        0,
    );
    snapshot(&lake, &["--as-of", "2026-11-20T12"]);
    let check = r#"
import sys, glob, pyarrow.parquet as pq, pyarrow as pa
t = pa.concat_tables([pq.read_table(f) for f in glob.glob(sys.argv[1] + '/*.parquet')], promote_options='default')
rows = {r['id']: r for r in t.to_pylist()}
assert len(rows) == 20 and 3 not in rows and 99 in rows, sorted(rows)
ops = {i: rows[i]['cdc_operation'] for i in (1, 2, 4, 5, 99)}
assert ops == {1: 'SNAPSHOT', 2: 'MODIFY', 4: 'MODIFY', 5: 'SNAPSHOT', 99: 'INSERT'}, ops
print('OK')
"#;
    assert_eq!(py(check, &[s(&current(&lake, "orders"))]), "OK");
    // With a 30-minute margin the change 20 minutes before the export wins too: the snapshot
    // made with 15 minutes is not merged with but made again.
    snapshot(
        &lake,
        &["--as-of", "2026-11-20T12", "--handover-margin", "30m"],
    );
    let wider = check.replace("1: 'SNAPSHOT'", "1: 'MODIFY'");
    assert_eq!(py(&wider, &[s(&current(&lake, "orders"))]), "OK");
}

/// A lake table named `{table}_current` holds the folder `{table}`'s snapshots go to. Here
/// `items` was snapshotted before table `Items_Current` appeared: the new table's snapshot reads
/// only its own hour folders (not `items`' snapshot files beside them), and a snapshot of
/// `items` is then refused, touching nothing. Snapshots need hourly folders.
#[test]
fn a_table_named_like_a_snapshot_folder_is_not_overwritten() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let line = |table: &str, id: &str| {
        format!(
            r#"{{"eventID":"e{id}","eventName":"INSERT","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":1795000000000,"Keys":{{"Id":{{"S":"{id}"}}}},"NewImage":{{"Id":{{"S":"{id}"}}}}}}}}"#
        )
    };
    let lake = dir.path().join("lake");
    let export = |name: &str, lines: String| {
        let input = dir.path().join(name);
        std::fs::write(&input, lines).unwrap();
        run_ok(
            &["export", "-i", s(&input), "-o", s(&lake), "--no-progress"],
            0,
        );
    };
    export(
        "items.jsonl",
        format!("{}\n{}\n", line("Items", "a"), line("Items", "b")),
    );
    let as_of = ["--as-of", "2026-11-18T12"];
    assert_eq!(
        snapshot(&lake, &[&["--table", "items"][..], &as_of].concat())[0]["rows"],
        2
    );
    export("other.jsonl", format!("{}\n", line("Items_Current", "c")));
    let done = snapshot(&lake, &[&["--table", "items_current"][..], &as_of].concat());
    assert_eq!(done[0]["rows"], 1, "{done}");
    let before = tree(&lake.join("items_current"));
    let out = run(&[
        &["snapshot", "-o", s(&lake), "--table", "items"][..],
        &as_of,
    ]
    .concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("a table named items_current"), "{err}");
    assert_eq!(tree(&lake.join("items_current")), before);
    // A daily layout's folders name no hour.
    let daily = run(&[
        &[
            "snapshot",
            "-o",
            s(&lake),
            "--template",
            "{table}/{YYYY}/{MM}/{DD}",
        ][..],
        &as_of,
    ]
    .concat());
    let err = String::from_utf8_lossy(&daily.stderr);
    assert_eq!(daily.status.code(), Some(3), "{err}");
    assert!(err.contains("do not name one hour"), "{err}");
}
