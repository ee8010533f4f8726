//! Issue 15: hours compacted by a stream run (`[markers] compact = true`), against the local
//! Kinesis and S3 servers: the same stream written as it is and compacted holds the same rows,
//! every column compared by pyarrow and DuckDB; the compacted hours hold a few sorted files, each
//! in one COPY manifest; a run without compaction refuses while hours are staged.

use crate::helpers::*;

/// Generated changes over three hours of 2026-11-01, then one more change dated 2030: when the
/// run has read every shard to its tip, the hours up to now are complete (a quiet stream's
/// watermark is the clock), and that last one's hour stays open.
fn input(path: &std::path::Path) -> String {
    generate(
        path,
        3000,
        151,
        &["--hours", "3", "--start", "2026-11-01T08:00:00Z"],
    );
    let text = std::fs::read_to_string(path).unwrap();
    let last = text.lines().last().unwrap();
    let mut v: serde_json::Value = serde_json::from_str(last).unwrap();
    // 2030-01-01T00:30:00Z, in microseconds.
    v["dynamodb"]["ApproximateCreationDateTime"] = 1_893_457_800_000_000i64.into();
    v["dynamodb"]["ApproximateCreationDateTimePrecision"] = "MICROSECOND".into();
    std::fs::write(path, format!("{text}{v}\n")).unwrap();
    "orders/2030/01/01/00".into()
}

#[test]
fn compacted_hours_hold_the_same_rows_byte_for_byte_in_fewer_sorted_files() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let skip = input(&path);
    let name = unique("compact");
    py_script("kinesis_tool.py", &["create", &name, "2"]);
    py_script(
        "kinesis_tool.py",
        &["put", &name, s(&path), "0", "3001", "0"],
    );
    let bucket = unique("compact").to_lowercase();
    create_bucket(&bucket);
    let base =
        "[buffer]\nmax_records = 100\n\n[markers]\nenabled = true\nallowed_lateness = \"5m\"\n";
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, base).unwrap();
    let compact = dir.path().join("compact.toml");
    std::fs::write(&compact, format!("{base}compact = true\n")).unwrap();
    let run = |lake: &str, config: &std::path::Path, code: i32| {
        let out = bin()
            .args(["export", "--stream", &name, "-o", lake, "-c", s(config)])
            .args(["--json", "--no-progress"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{out:?}");
        out
    };
    let plain_lake = format!("s3://{bucket}/plain");
    let compact_lake = format!("s3://{bucket}/compacted");
    run(&plain_lake, &plain, 0);
    let out = run(&compact_lake, &compact, 0);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rows_out"]["orders"], 3001, "{summary}");

    let got = py_script(
        "compare_lakes.py",
        &[&bucket, "plain", "compacted", "orders", &skip],
    );
    let c: serde_json::Value = serde_json::from_str(got.trim()).unwrap();
    eprintln!("{c}");
    assert_eq!(c["plain_rows"], 3000, "{c}");
    assert_eq!(c["compacted_rows"], 3000, "{c}");
    assert_eq!(c["duckdb_compacted_rows"], 3000, "{c}");
    assert_eq!(c["equal"], true, "{c}");
    assert!(c["columns_compared"].as_u64().unwrap() > 20, "{c}");
    assert_eq!(c["duckdb_only_plain"], 0, "{c}");
    assert_eq!(c["duckdb_only_compacted"], 0, "{c}");
    // One file per hour (the default target is far above an hour here), against one per
    // 100 records or so as written.
    assert_eq!(c["compacted_files"], 3, "{c}");
    assert!(c["plain_files"].as_u64().unwrap() >= 30, "{c}");
    for empty in ["not_compacted", "unsorted", "unlisted", "staged_listed"] {
        assert_eq!(c[empty], serde_json::json!([]), "{empty}: {c}");
    }
    // The open hour waits in the staging folder, outside the table folder.
    let staged = s3_keys(&bucket, "compacted/_ddb_lake/compacting/");
    assert!(!staged.is_empty());
    assert!(s3_keys(&bucket, &format!("compacted/{skip}/")).is_empty());
    // Each complete hour's manifest lists its compacted file only.
    let hour = s3_get(
        &bucket,
        "compacted/_ddb_lake/hours/orders/2026/11/01/09/manifest.json",
    )
    .unwrap();
    let hour: serde_json::Value = serde_json::from_slice(&hour).unwrap();
    let entries = hour["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{hour}");
    assert!(entries[0]["url"]
        .as_str()
        .unwrap()
        .contains("/orders-compacted-"));

    // Compaction turned off while an hour is staged: refused, nothing read.
    let out = run(&compact_lake, &plain, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("staged files of hours not compacted yet") && err.contains("orders: 1 hour"),
        "{err}"
    );
}
