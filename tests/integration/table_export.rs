//! DynamoDB table exports as the input (`export --input` of an export's folder): full and
//! incremental, DynamoDB JSON and Ion, written in AWS's layout by a test-side writer that is
//! independent of the reader (`tests/python/write_export.py`, Ion through the `amazon-ion`
//! package), local and on the local S3 server, read back with pyarrow and DuckDB.

use std::path::{Path, PathBuf};

use crate::helpers::*;

/// Writes an export under `root`; returns its folder.
fn write_export(root: &Path, format: &str, export_type: &str, items: u32, seed: u32) -> PathBuf {
    let out = py_script(
        "write_export.py",
        &[
            s(root),
            "Orders",
            format,
            export_type,
            &items.to_string(),
            "3",
            &seed.to_string(),
        ],
    );
    PathBuf::from(out.trim())
}

/// The writer's expected rows, checked against the lake; returns the row count.
fn check(lake: &Path, root: &Path) -> u64 {
    let out = py_script(
        "check_export.py",
        &[s(lake), s(&root.join("expected.json")), "orders"],
    );
    out.trim().parse().unwrap()
}

#[test]
fn every_format_and_type_loads_each_item_or_change_once() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (format, export_type, rows) in [
        ("DYNAMODB_JSON", "FULL_EXPORT", 40),
        ("ION", "FULL_EXPORT", 40),
        // 40 inserts, 14 modifies (every third), 8 deletes (every fifth).
        ("DYNAMODB_JSON", "INCREMENTAL_EXPORT", 62),
        ("ION", "INCREMENTAL_EXPORT", 62),
    ] {
        let root = dir.path().join(format!("{format}-{export_type}"));
        let folder = write_export(&root, format, export_type, 40, 3);
        let lake = root.join("lake");
        let summary = export_json(&["-i", s(&folder), "-o", s(&lake)], 0);
        assert_eq!(summary["records_in"], rows, "{format} {export_type}");
        assert_eq!(summary["rows_out"]["orders"], rows);
        let e = &summary["exports"][0];
        assert_eq!(e["table"], "Orders");
        assert_eq!(e["format"], format);
        assert_eq!(e["export_type"], export_type);
        assert_eq!(e["items"], rows);
        // Three data files and the empty one; the stray file in data/ is not read.
        assert_eq!(e["data_files"], 4);
        assert_eq!(e["export_time"], "2026-11-20T10:15:30.250Z");
        assert_eq!(check(&lake, &root), rows);
        // A second load into the same lake writes the same objects again: still once each.
        if format == "ION" {
            export_json(
                &[
                    "-i",
                    s(&folder.join("manifest-summary.json")),
                    "-o",
                    s(&lake),
                ],
                0,
            );
            assert_eq!(check(&lake, &root), rows);
        }
    }
}

#[test]
fn an_export_on_s3_is_read_from_its_manifest() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = write_export(dir.path(), "ION", "INCREMENTAL_EXPORT", 30, 4);
    let bucket = unique("export");
    create_bucket(&bucket);
    let id = folder.file_name().unwrap().to_str().unwrap().to_string();
    // The whole AWSDynamoDB folder: an incremental export's data is in the shared data/.
    py(
        "import boto3,os,sys\nfrom pathlib import Path\ns3=boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'], region_name='us-east-1')\nfor p in Path(sys.argv[1]).rglob('*'):\n    if p.is_file(): s3.upload_file(str(p), sys.argv[2], 'exports/AWSDynamoDB/'+str(p.relative_to(sys.argv[1])))",
        &[s(folder.parent().unwrap()), &bucket],
    );
    let lake = dir.path().join("lake");
    let input = format!("s3://{bucket}/exports/AWSDynamoDB/{id}/");
    let summary = export_json(&["-i", &input, "-o", s(&lake)], 0);
    // 30 inserts, 10 modifies, 6 deletes.
    assert_eq!(summary["rows_out"]["orders"], 46);
    assert_eq!(summary["exports"][0]["id"], id.as_str());
    assert_eq!(check(&lake, dir.path()), 46);
}

/// Rewrites a data file's gzip with other compression: the same lines, other bytes.
const RECOMPRESS: &str = "import gzip,sys\np=sys.argv[1]\nb=gzip.decompress(open(p,'rb').read())\nopen(p,'wb').write(gzip.compress(b, compresslevel=1, mtime=1))";

#[test]
fn a_checksum_or_count_mismatch_stops_the_run_naming_the_file() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = write_export(dir.path(), "DYNAMODB_JSON", "FULL_EXPORT", 30, 5);
    let manifest = std::fs::read_to_string(folder.join("manifest-files.json")).unwrap();
    let first: serde_json::Value = serde_json::from_str(manifest.lines().next().unwrap()).unwrap();
    let key = first["dataFileS3Key"].as_str().unwrap();
    let name = key.rsplit('/').next().unwrap();
    let data = folder.join("data").join(name);
    py(RECOMPRESS, &[s(&data)]);
    let lake = dir.path().join("lake");
    let out = run(&["export", "--no-progress", "-i", s(&folder), "-o", s(&lake)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(name) && err.contains("MD5"), "{err}");

    // The manifest's checksum put right, its item count not: the count names the file.
    let fixed = py(
        "import base64,hashlib,sys\nprint(base64.b64encode(hashlib.md5(open(sys.argv[1],'rb').read()).digest()).decode())",
        &[s(&data)],
    );
    let wrong = manifest
        .replacen(first["md5Checksum"].as_str().unwrap(), &fixed, 1)
        .replacen(
            &format!("\"itemCount\": {}", first["itemCount"]),
            "\"itemCount\": 999",
            1,
        );
    assert_ne!(wrong, manifest);
    std::fs::write(folder.join("manifest-files.json"), wrong).unwrap();
    // The summary's total agrees with the files manifest, so the count of the file is what
    // is wrong.
    let summary_path = folder.join("manifest-summary.json");
    let mut summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    let total = summary["itemCount"].as_u64().unwrap();
    summary["itemCount"] = (total + 999 - first["itemCount"].as_u64().unwrap()).into();
    std::fs::write(&summary_path, summary.to_string()).unwrap();
    let out = run(&["export", "--no-progress", "-i", s(&folder), "-o", s(&lake)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(name) && err.contains("the manifest says 999 items"),
        "{err}"
    );

    // The summary's total differs from the files' sum: the manifests do not belong together,
    // and nothing is read.
    summary["itemCount"] = (total + 1).into();
    std::fs::write(&summary_path, summary.to_string()).unwrap();
    let lake = dir.path().join("lake-2");
    let out = run(&["export", "--no-progress", "-i", s(&folder), "-o", s(&lake)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("manifest-summary.json says {} items", total + 1)),
        "{err}"
    );
    assert_eq!(parquet_rows(&lake), 0, "nothing read");
}
