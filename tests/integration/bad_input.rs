//! Bad input: each kind has a documented outcome (README "Bad input"), none stops the run or
//! loses another record. Every input line ends as one row or one error entry.

use std::path::Path;

use crate::helpers::*;

fn rec(table: Option<&str>, id: &str, attrs: &str, time: Option<u64>) -> String {
    let table = table.map_or(String::new(), |t| format!(r#""tableName":"{t}","#));
    let time = time.map_or(String::new(), |t| {
        format!(r#""ApproximateCreationDateTime":{t},"#)
    });
    format!(
        r#"{{"awsRegion":"us-east-1","eventID":"{id}","eventName":"INSERT",{table}"dynamodb":{{{time}"Keys":{{"Id":{{"S":"{id}"}}}},"NewImage":{{"Id":{{"S":"{id}"}}{attrs}}}}},"eventSource":"aws:dynamodb"}}"#
    )
}

const T: Option<&str> = Some("Bad");
const TIME: Option<u64> = Some(1_795_000_000_331);

fn nested(levels: usize) -> String {
    format!(
        r#","Deep":{}{{"S":"bottom"}}{}"#,
        r#"{"M":{"d":"#.repeat(levels),
        "}}".repeat(levels)
    )
}

#[test]
fn bad_records_go_to_the_error_output_and_the_rest_are_rows() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let good = rec(T, "g1", r#","Qty":{"N":"2"},"State":{"S":"WA"}"#, TIME);
    let mut invalid_utf8 = rec(T, "u1", r#","Name":{"S":"caf#"}"#, TIME).into_bytes();
    let hash = invalid_utf8.iter().position(|&b| b == b'#').unwrap();
    invalid_utf8[hash] = 0xff;
    let lines: Vec<Vec<u8>> = vec![
        good.clone().into_bytes(),                              // 1 row
        good.as_bytes()[..60].to_vec(),                         // 2 invalid_json (truncated)
        b"hello, not json".to_vec(),                            // 3 invalid_json
        rec(T, "x1", r#","Odd":{"X":"1"}"#, TIME).into_bytes(), // 4 unknown_type
        invalid_utf8,                                           // 5 invalid_utf8
        rec(T, "d1", &nested(100), TIME).into_bytes(),          // 6 too_deep
        rec(
            T,
            "big",
            &format!(r#","Blob":{{"S":"{}"}}"#, "x".repeat(400_000)),
            TIME,
        )
        .into_bytes(), // 7 row: a 400 KB item
        rec(T, "m1", r#","cdc_operation":{"S":"hijack"}"#, TIME).into_bytes(), // 8 row: named like a metadata column
        rec(
            T,
            "c1",
            r#","Amount":{"N":"5"},"amount":{"S":"five"}"#,
            TIME,
        )
        .into_bytes(), // 9 row: names collide after lowercasing
        rec(T, "w1", r#","Qty":{"N":"1.5"}"#, TIME).into_bytes(), // 10 row: wrong value for the declared bigint
        rec(T, "p1", r#","State":{"S":"../../etc"}"#, TIME).into_bytes(), // 11 row: hostile partition value
        rec(T, "p2", r#","State":{"S":"a/b"}"#, TIME).into_bytes(),       // 12 row
        rec(T, "p3", r#","State":{"S":""}"#, TIME).into_bytes(),          // 13 row
        rec(None, "n1", "", TIME).into_bytes(),                           // 14 no_table
        rec(T, "t1", "", None).into_bytes(),                              // 15 no_event_time
        rec(T, "g2", r#","Qty":{"N":"3"}"#, TIME).into_bytes(),           // 16 row
        rec(T, "d2", &nested(40), TIME).into_bytes(), // 17 row: deep but legal nesting
    ];
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, lines.join(&b'\n')).unwrap();
    let schemas = dir.path().join("schemas");
    std::fs::create_dir(&schemas).unwrap();
    std::fs::write(
        schemas.join("bad.toml"),
        "table = \"Bad\"\n[[columns]]\nname = \"qty\"\ntype = \"bigint\"\npath = [\"Qty\"]\n",
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let summary = export_json(
        &[
            "-i",
            s(&input),
            "-o",
            s(&lake),
            "--schemas",
            s(&schemas),
            "--template",
            "{table}/state={state}/{YYYY}/{MM}/{DD}/{HH}",
        ],
        2,
    );
    assert_eq!(summary["records_in"], 17);
    assert_eq!(summary["rows_out"]["bad"], 10);
    let errors = &summary["errors"];
    assert_eq!(errors["invalid_json"], 2);
    assert_eq!(errors["unknown_type"], 1);
    assert_eq!(errors["invalid_utf8"], 1);
    assert_eq!(errors["too_deep"], 1);
    assert_eq!(errors["no_table"], 1);
    assert_eq!(errors["no_event_time"], 1);
    assert_eq!(summary["type_mismatches"]["bad.qty"], 1);

    // Partition values stay inside their folder.
    let files = tree(&lake);
    for f in &files {
        assert!(
            f.starts_with("bad/") || f.starts_with("_errors/") || f.starts_with("_ddb_lake/"),
            "{f}"
        );
        assert!(
            !f.split('/').any(|p| p == ".." || p == "." || p.is_empty()),
            "{f}"
        );
    }
    for want in [
        "state=%2E%2E%2F%2E%2E%2Fetc/",
        "state=a%2Fb/",
        "state=__HIVE_DEFAULT_PARTITION__/",
        "state=WA/",
    ] {
        assert!(
            files.iter().any(|f| f.contains(want)),
            "{want} in {files:?}"
        );
    }
    check_error_entries(&lake, &lines);
    let check = r#"
import pyarrow.dataset as ds, sys, json
t = ds.dataset(sys.argv[1] + '/bad', format='parquet').to_table()
rows = {r['id']: r for r in t.to_pylist()}
assert sorted(rows) == sorted(['g1','big','m1','c1','w1','p1','p2','p3','g2','d2']), sorted(rows)
assert len(rows['big']['blob']) == 400000
assert rows['m1']['cdc_operation'] == 'INSERT' and rows['m1']['cdc_operation_2'] == 'hijack'
assert rows['c1']['amount'] == 5 and rows['c1']['amount_2'] == 'five'
assert rows['w1']['qty'] is None and rows['w1']['qty_str'] == '1.5'
assert rows['g2']['qty'] == 3 and rows['g2']['qty_str'] is None
assert rows['p1']['state'] == '../../etc'
deep = json.loads(rows['d2']['deep_d_d'])
for _ in range(38): deep = deep['d']
assert deep == 'bottom', deep
print('OK')
"#;
    assert_eq!(py(check, &[s(&lake)]), "OK");
}

/// Each bad line is one entry with its reason, its line number and its exact bytes.
fn check_error_entries(lake: &Path, lines: &[Vec<u8>]) {
    use base64::Engine;
    let mut entries = Vec::new();
    for f in tree(lake).iter().filter(|f| f.starts_with("_errors/")) {
        assert!(f.ends_with(".jsonl"), "{f}");
        let reason = f.split('/').nth(1).unwrap().to_string();
        for line in std::fs::read_to_string(lake.join(f)).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["reason"], reason.as_str());
            assert!(!v["message"].as_str().unwrap().is_empty());
            entries.push(v);
        }
    }
    let mut got: Vec<(u64, String)> = entries
        .iter()
        .map(|v| {
            (
                v["source"]["line"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(u64, String)> = [
        (2, "invalid_json"),
        (3, "invalid_json"),
        (4, "unknown_type"),
        (5, "invalid_utf8"),
        (6, "too_deep"),
        (14, "no_table"),
        (15, "no_event_time"),
    ]
    .iter()
    .map(|(l, r)| (*l, r.to_string()))
    .collect();
    assert_eq!(got, want);
    for v in &entries {
        let line = v["source"]["line"].as_u64().unwrap() as usize;
        let original = &lines[line - 1];
        let bytes = match v["data"].as_str() {
            Some(text) => text.as_bytes().to_vec(),
            None => base64::engine::general_purpose::STANDARD
                .decode(v["data_base64"].as_str().unwrap())
                .unwrap(),
        };
        assert_eq!(&bytes, original, "line {line}");
        assert!(v["source"]["file"].as_str().unwrap().ends_with("bad.jsonl"));
    }
}

#[test]
fn a_missing_input_is_a_clear_failure() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "export",
        "-i",
        "/nonexistent/input.jsonl",
        "-o",
        s(dir.path()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/input.jsonl") && err.contains("matches no file"),
        "{err}"
    );
}

#[test]
fn truncated_record_in_a_concatenated_archive_loses_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let a = rec(T, "a", "", TIME);
    let b = rec(T, "b", r#","Note":{"S":"cut here"}"#, TIME);
    let c = rec(T, "c", "", TIME);
    let input = dir.path().join("archive");
    // Cut inside a string: a brace-only splitter would swallow record c.
    let cut = b.find("cut here").unwrap() + 3;
    std::fs::write(&input, format!("{a}{}{c}", &b[..cut])).unwrap();
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", s(&input), "-o", s(&lake)], 2);
    assert_eq!(summary["rows_out"]["bad"], 2);
    assert_eq!(summary["errors"]["invalid_json"], 1);
}

#[test]
fn the_redshift_string_policy_truncates_or_rejects_per_column() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let long = "é".repeat(80); // 160 bytes
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        [
            rec(T, "ok", r#","Notes":{"S":"short"}"#, TIME),
            rec(T, "cut", &format!(r#","Notes":{{"S":"{long}"}}"#), TIME),
            rec(T, "secret", &format!(r#","Secret":{{"S":"{long}"}}"#), TIME),
        ]
        .join("\n"),
    )
    .unwrap();
    let config = dir.path().join("redshift.toml");
    std::fs::write(
        &config,
        "[redshift]\nmax_string_bytes = 101\nstring_policy = \"truncate\"\n[redshift.columns]\nsecret = \"reject\"\n",
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", s(&input), "-o", s(&lake), "-c", s(&config)], 2);
    assert_eq!(summary["rows_out"]["bad"], 2);
    assert_eq!(summary["errors"]["string_too_long"], 1);
    assert_eq!(summary["truncated_values"]["bad.notes"], 1);
    let check = r#"
import pyarrow.dataset as ds, sys
rows = {r['id']: r for r in ds.dataset(sys.argv[1] + '/bad', format='parquet').to_table().to_pylist()}
assert rows['cut']['notes'] == 'é' * 50 and rows['cut']['cdc_truncated'] == 'notes', rows['cut']
assert rows['ok']['notes'] == 'short' and rows['ok']['cdc_truncated'] is None
assert 'secret' not in rows
print('OK')
"#;
    assert_eq!(py(check, &[s(&lake)]), "OK");
    let errors: Vec<String> = tree(&lake)
        .into_iter()
        .filter(|f| f.starts_with("_errors/string_too_long/"))
        .collect();
    assert_eq!(errors.len(), 1);
}
