//! Exports of generated records into local folders, checked with pyarrow and DuckDB.

use crate::helpers::*;

#[test]
fn every_record_is_one_row_with_exact_values() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("orders.jsonl");
    generate(&input, 3000, 11, &["--hours", "5"]);
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", s(&input), "-o", s(&lake)], 0);
    assert_eq!(summary["records_in"], 3000);
    assert_eq!(summary["rows_out"]["orders"], 3000);
    assert_eq!(summary["errors"], serde_json::json!({}));
    let out = py_script("check_orders.py", &[s(&input), s(&lake.join("orders"))]);
    assert_eq!(out.trim(), "OK 3000");
    // Hour folders as Firehose writes them, objects named *.parquet, state outside the table.
    let files = tree(&lake);
    let parquet: Vec<_> = files.iter().filter(|f| f.starts_with("orders/")).collect();
    assert!(parquet.len() >= 5, "{files:?}");
    for f in &parquet {
        let parts: Vec<_> = f.split('/').collect();
        assert_eq!(parts.len(), 6, "{f}");
        assert!(
            parts[1].len() == 4
                && parts[2].len() == 2
                && parts[3].len() == 2
                && parts[4].len() == 2,
            "{f}"
        );
        assert!(
            parts[5].ends_with(".parquet") && !parts[5].starts_with(['_', '.']),
            "{f}"
        );
    }
    assert!(files.contains(&"_ddb_lake/schemas/orders.toml".to_string()));
}

#[test]
fn same_input_gives_identical_objects() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 1500, 3, &[]);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Small flushes so that a run writes many files per partition.
    for lake in [&a, &b] {
        export_json(&["-i", s(&input), "-o", s(lake), "--max-records", "100"], 0);
    }
    // COPY manifests name files by their absolute location, which differs between a and b.
    let data = |d: &std::path::Path| -> Vec<String> {
        tree(d)
            .into_iter()
            .filter(|f| !f.starts_with("_ddb_lake/manifests/"))
            .collect()
    };
    let (ta, tb) = (data(&a), data(&b));
    assert_eq!(ta, tb);
    assert!(ta.len() > 15, "{ta:?}");
    for f in &ta {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    // A rerun into the same folder overwrites the same objects: nothing is duplicated.
    export_json(&["-i", s(&input), "-o", s(&a), "--max-records", "100"], 0);
    assert_eq!(data(&a), ta);
    assert_eq!(duckdb_count(&a.join("orders")), 1500);
}

#[test]
fn all_input_shapes_and_gzip_give_the_same_rows() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    generate(&inputs.join("a.jsonl"), 400, 5, &["--shape", "kinesis"]);
    generate(&inputs.join("b.json"), 400, 5, &["--shape", "concat"]);
    generate(&inputs.join("c.jsonl.gz"), 400, 5, &["--shape", "kinesis"]);
    generate(&inputs.join("d.json"), 400, 5, &["--shape", "lambda"]);
    generate(&inputs.join("e.jsonl"), 400, 5, &["--shape", "streams"]);
    // gzip detected by magic bytes, not by name.
    std::fs::copy(inputs.join("c.jsonl.gz"), inputs.join("f.data")).unwrap();
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", s(&inputs), "-o", s(&lake)], 0);
    assert_eq!(summary["input_files"], 6);
    assert_eq!(summary["records_in"], 2400);
    assert_eq!(summary["rows_out"]["orders"], 2400);
    // Kinesis-shaped files (plain, concatenated, gzip) hold identical data rows; DynamoDB Streams
    // files carry the same changes with second-precision times.
    let check = r#"
import duckdb, sys
src = f"read_parquet('{sys.argv[1]}/**/*.parquet')"
cols = "cdc_operation, cdc_event_id, cdc_event_time_us, order_id, total, tags, thumbnail, items, ship_to_geo_lat"
per_file = duckdb.execute(f"select cdc_source_file, count(*) from {src} group by 1 order by 1").fetchall()
assert [n for _, n in per_file] == [400] * 6, per_file
base = None
for f in ['a.jsonl', 'b.json', 'c.jsonl.gz', 'f.data']:
    rows = duckdb.execute(f"select {cols} from {src} where cdc_source_file like '%{f}' order by cdc_source_offset").fetchall()
    if base is None: base = rows
    assert rows == base, f
streams = duckdb.execute(f"select cdc_operation, order_id, total, cdc_sequence_number from {src} where cdc_source_file like '%e.jsonl' order by cdc_source_offset").fetchall()
lam = duckdb.execute(f"select cdc_operation, order_id, total, cdc_sequence_number from {src} where cdc_source_file like '%d.json' order by cdc_source_offset").fetchall()
assert streams == lam and all(r[3] for r in streams)
print('OK')
"#;
    assert_eq!(py(check, &[s(&lake)]), "OK");
}

#[test]
fn layouts_and_templates() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 500, 9, &["--hours", "3"]);
    let hive = dir.path().join("hive");
    export_json(&["-i", s(&input), "-o", s(&hive), "--layout", "hive"], 0);
    let dt = dir.path().join("dt");
    export_json(&["-i", s(&input), "-o", s(&dt), "--layout", "hive_dt"], 0);
    let tpl = dir.path().join("tpl");
    export_json(
        &[
            "-i",
            s(&input),
            "-o",
            s(&tpl),
            "--template",
            "raw/{table}/state={ship_to_state}/{YYYY}{MM}{DD}",
        ],
        0,
    );
    assert!(tree(&hive)
        .iter()
        .any(|f| f.starts_with("orders/year=2026/month=11/day=01/hour=0")));
    assert!(tree(&dt)
        .iter()
        .any(|f| f.starts_with("orders/dt=2026-11-01/hr=0")));
    assert!(tree(&tpl)
        .iter()
        .any(|f| f.starts_with("raw/orders/state=WA/20261101/")));
    // Hive-style partitions read back as partition columns that agree with the data columns.
    let check = r#"
import duckdb, sys
hive, dt = sys.argv[1], sys.argv[2]
r = duckdb.execute(f"select count(*), count(*) filter (where cast(hour as int) <> cdc_hour or make_date(cast(year as int), cast(month as int), cast(day as int)) <> cdc_date) from read_parquet('{hive}/orders/**/*.parquet', hive_partitioning=true)").fetchone()
assert r == (500, 0), r
r = duckdb.execute(f"select count(*), count(*) filter (where cast(dt as date) <> cdc_date or cast(hr as int) <> cdc_hour) from read_parquet('{dt}/orders/**/*.parquet', hive_partitioning=true)").fetchone()
assert r == (500, 0), r
print('OK')
"#;
    assert_eq!(py(check, &[s(&hive), s(&dt)]), "OK");
    assert_eq!(duckdb_count(&tpl.join("raw/orders")), 500);
}

#[test]
fn dry_run_writes_nothing_and_lists_objects() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 200, 2, &[]);
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", s(&input), "-o", s(&lake), "--dry-run"], 0);
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["rows_out"]["orders"], 200);
    let objects = summary["objects"].as_array().unwrap();
    assert!(!objects.is_empty());
    assert!(objects.iter().all(|o| o["bytes"].as_u64().unwrap() > 0));
    assert!(tree(&lake).is_empty(), "{:?}", tree(&lake));
}

#[test]
fn thousands_of_partitions_stay_within_the_memory_budget() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 6000, 4, &[]);
    let lake = dir.path().join("lake");
    // One partition per order: thousands open at once, with a 1 MiB budget.
    let budget = 1024 * 1024;
    let summary = export_json(
        &[
            "-i",
            s(&input),
            "-o",
            s(&lake),
            "--template",
            "{table}/order={order_id}",
            "--memory-budget",
            "1MiB",
        ],
        0,
    );
    assert_eq!(summary["rows_out"]["orders"], 6000);
    assert!(summary["peak_buffered_bytes"].as_u64().unwrap() <= budget);
    // The process as a whole: the budget plus a fixed overhead (runtime, readers, encoders).
    let rss = summary["peak_rss_bytes"]
        .as_u64()
        .expect("Linux reports VmHWM");
    assert!(rss < budget + 150 * 1024 * 1024, "peak RSS {rss}");
    // Over the budget, rows go to local disk rather than into tiny files (issue 16): one file
    // per partition.
    assert!(summary["spilled_bytes"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["flushes"].get("memory_budget"), None, "{summary}");
    let files = tree(&lake.join("orders"));
    let partitions: std::collections::HashSet<_> = files
        .iter()
        .map(|f| f.split('/').next().unwrap().to_string())
        .collect();
    assert!(partitions.len() > 2000, "{}", partitions.len());
    assert_eq!(files.len(), partitions.len());
    assert_eq!(duckdb_count(&lake.join("orders")), 6000);
}

#[test]
fn readme_first_command_on_the_committed_sample() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");
    let lake = dir.path().join("lake");
    let out = run_ok(&["export", "--input", sample, "--output", s(&lake)], 0);
    assert!(out.contains("rows out:   300"), "{out}");
    assert!(out.contains("errors:     0"), "{out}");
    let check = py_script("check_orders.py", &[sample, s(&lake.join("orders"))]);
    assert_eq!(check.trim(), "OK 300");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "not json\n").unwrap();
    let out = bin()
        .args([
            "--log-format",
            "json",
            "export",
            "-i",
            s(&input),
            "-o",
            s(&dir.path().join("lake")),
            "--no-progress",
        ])
        .env("DDB_LAKE_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("in.jsonl:1: invalid_json")),
        "{stderr}"
    );
}

#[test]
fn every_file_is_in_exactly_one_copy_manifest_with_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 1200, 12, &["--hours", "3"]);
    let lake = dir.path().join("lake");
    let summary = export_json(
        &["-i", s(&input), "-o", s(&lake), "--max-records", "150"],
        0,
    );
    let files = tree(&lake);
    let parquet: Vec<String> = files
        .iter()
        .filter(|f| f.ends_with(".parquet"))
        .map(|f| s(&lake.join(f)).to_string())
        .collect();
    assert_eq!(
        parquet.len() as u64,
        summary["files_written"].as_u64().unwrap()
    );
    let mut listed = Vec::new();
    for m in files
        .iter()
        .filter(|f| f.starts_with("_ddb_lake/manifests/orders/"))
    {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(lake.join(m)).unwrap()).unwrap();
        for e in v["entries"].as_array().unwrap() {
            let url = e["url"].as_str().unwrap().to_string();
            assert_eq!(e["mandatory"], true);
            assert_eq!(
                e["meta"]["content_length"].as_u64().unwrap(),
                std::fs::metadata(&url).unwrap().len()
            );
            listed.push(url);
        }
    }
    listed.sort();
    let mut want = parquet.clone();
    want.sort();
    assert_eq!(listed, want, "each file in exactly one manifest");
}

#[test]
fn rows_sorted_by_key_are_the_same_rows_grouped_by_item() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // 3,000 changes of about 1,500 orders over a day: a daily file repeats items, hourly ones
    // fewer.
    generate(&input, 3000, 5, &["--hours", "24"]);
    for (layout, template) in [("daily", "{table}/{YYYY}/{MM}/{DD}"), ("hourly", "")] {
        let lake = |sort: &str| {
            let out = dir.path().join(format!("{layout}-{sort}"));
            let mut args = vec!["-i", s(&input), "-o", s(&out), "--sort-rows", sort];
            if !template.is_empty() {
                args.extend(["--template", template]);
            }
            let summary = export_json(&args, 0);
            assert_eq!(summary["rows_out"]["orders"], 3000);
            out
        };
        let (plain, key, auto) = (lake("none"), lake("key"), lake("auto"));
        // Independently of ddb-lake's readers: pyarrow checks each file's order (the key's rows
        // together, by key, each item's changes by time then input line) and which files `auto`
        // sorted; DuckDB that each lake holds the same rows.
        let check = r#"
import glob, os, sys
import duckdb, pyarrow.parquet as pq
plain, key, auto = sys.argv[1:4]
def files(d):
    return sorted(os.path.relpath(p, d) for p in glob.glob(f"{d}/orders/**/*.parquet", recursive=True))
assert files(plain) == files(key) == files(auto) and files(plain), "the same file names"
sorted_files = as_read = 0
for f in files(plain):
    tp, tk = pq.read_table(os.path.join(plain, f)), pq.read_table(os.path.join(key, f))
    lines = tp["cdc_source_line"].to_pylist()
    assert lines == sorted(lines), f"{f}: not in input order"
    k = list(zip(*(tk[c].to_pylist() for c in ["order_id", "cdc_event_time_us", "cdc_source_line"])))
    assert k == sorted(k), f"{f}: not sorted by key"
    assert sorted(k) == sorted(zip(*(tp[c].to_pylist() for c in ["order_id", "cdc_event_time_us", "cdc_source_line"])))
    ids = tp["order_id"].to_pylist()
    repeats = len(ids) - len(set(ids))
    same_as = key if repeats * 8 >= len(ids) else plain
    with open(os.path.join(auto, f), "rb") as a, open(os.path.join(same_as, f), "rb") as b:
        assert a.read() == b.read(), f"{f}: auto, {repeats} repeats in {len(ids)} rows"
    if same_as == key:
        sorted_files += 1
    else:
        as_read += 1
for d in (key, auto):
    for x, y in ((d, plain), (plain, d)):
        q = f"select count(*) from (select * from read_parquet('{x}/orders/**/*.parquet') except all select * from read_parquet('{y}/orders/**/*.parquet'))"
        assert duckdb.sql(q).fetchall() == [(0,)], (x, y)
print(sorted_files, as_read)
"#;
        let out = py(check, &[s(&plain), s(&key), s(&auto)]);
        let counts: Vec<u32> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
        match layout {
            // Daily files (two: the day starts at 08:00): an order changes about twice a day.
            "daily" => assert_eq!(counts[1], 0, "auto left a daily file as read: {out}"),
            _ => assert!(counts[1] > 0, "auto sorted every hourly file: {out}"),
        }
    }
}
