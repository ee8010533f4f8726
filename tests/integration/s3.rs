//! Export from and to S3 on the local S3 server (moto), read back through boto3 with pyarrow.

use crate::helpers::*;

const S3PY: &str = r#"
import boto3, os, sys, io
s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'], region_name='us-east-1')
"#;

fn unique_bucket(name: &str) -> String {
    unique(name)
}

#[test]
fn export_from_s3_to_s3_with_multipart_and_sse() {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .expect("run with scripts/test.sh: it starts the local S3 server");
    let bucket = unique_bucket("ddb-lake");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl.gz");
    generate(&input, 2000, 21, &["--hours", "3"]);
    let upload = format!(
        "{S3PY}s3.create_bucket(Bucket=sys.argv[1])\ns3.upload_file(sys.argv[2], sys.argv[1], 'raw/2026/in.jsonl.gz')\ns3.put_object(Bucket=sys.argv[1], Key='raw/2026/skip.txt', Body=b'x')"
    );
    py(&upload, &[&bucket, s(&input)]);
    // Every Parquet object goes up as a multipart upload (threshold 1 byte), SSE-S3 requested.
    let config = dir.path().join("ddb-lake.toml");
    std::fs::write(
        &config,
        "[s3]\nmultipart_threshold = \"1\"\nsse = \"aes256\"\n",
    )
    .unwrap();
    let summary = export_json(
        &[
            "-i",
            &format!("s3://{bucket}/raw/2026/*.gz"),
            "-o",
            &format!("s3://{bucket}/lake"),
            "-c",
            s(&config),
        ],
        0,
    );
    assert_eq!(summary["input_files"], 1);
    assert_eq!(summary["rows_out"]["orders"], 2000);
    let files = summary["files_written"].as_u64().unwrap();
    assert!(files >= 3);
    let check = format!(
        r#"{S3PY}
import pyarrow.parquet as pq, duckdb
bucket = sys.argv[1]
keys = [o['Key'] for o in s3.list_objects_v2(Bucket=bucket, Prefix='lake/')['Contents']]
data = [k for k in keys if k.startswith('lake/orders/')]
assert all(k.endswith('.parquet') for k in data), data
assert 'lake/_ddb_lake/schemas/orders.toml' in keys, keys
rows = 0
for k in data:
    head = s3.head_object(Bucket=bucket, Key=k)
    assert head.get('ServerSideEncryption') == 'AES256', head
    t = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)['Body'].read()))
    rows += t.num_rows
    assert str(t.schema.field('total').type) == 'decimal128(38, 9)'
print(len(data), rows)
"#
    );
    assert_eq!(py(&check, &[&bucket]), format!("{files} 2000"));
}

#[test]
fn a_prefix_input_reads_every_object_below_it() {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .expect("run with scripts/test.sh: it starts the local S3 server");
    let bucket = unique_bucket("ddb-prefix");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    generate(&a, 100, 1, &[]);
    generate(&b, 150, 2, &["--shape", "concat"]);
    let upload = format!(
        "{S3PY}s3.create_bucket(Bucket=sys.argv[1])\ns3.upload_file(sys.argv[2], sys.argv[1], 'in/a.jsonl')\ns3.upload_file(sys.argv[3], sys.argv[1], 'in/sub/b.jsonl')"
    );
    py(&upload, &[&bucket, s(&a), s(&b)]);
    let lake = dir.path().join("lake");
    let summary = export_json(&["-i", &format!("s3://{bucket}/in/"), "-o", s(&lake)], 0);
    assert_eq!(summary["input_files"], 2);
    assert_eq!(summary["rows_out"]["orders"], 250);
    let files = py(
        "import duckdb,sys; print(duckdb.execute(f\"select string_agg(distinct cdc_source_file, ',' order by cdc_source_file) from read_parquet('{sys.argv[1]}/**/*.parquet')\").fetchone()[0])",
        &[s(&lake.join("orders"))],
    );
    assert_eq!(
        files,
        format!("s3://{bucket}/in/a.jsonl,s3://{bucket}/in/sub/b.jsonl")
    );
}

#[test]
fn s3_credentials_come_from_a_profile_when_the_environment_has_none() {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .expect("run with scripts/test.sh: it starts the local S3 server");
    let bucket = unique_bucket("ddb-profile");
    py(
        &format!("{S3PY}s3.create_bucket(Bucket=sys.argv[1])"),
        &[&bucket],
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 50, 3, &[]);
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[lake]\naws_access_key_id = profilekey\naws_secret_access_key = profilesecret\n",
    )
    .unwrap();
    let out = bin()
        .args([
            "export",
            "--json",
            "--no-progress",
            "-i",
            s(&input),
            "-o",
            &format!("s3://{bucket}/lake"),
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .env("AWS_CONFIG_FILE", dir.path().join("no-config"))
        .env("AWS_PROFILE", "lake")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rows_out"]["orders"], 50);
    // Without any credentials the run fails with a message instead of writing.
    let out = bin()
        .args([
            "export",
            "--no-progress",
            "-i",
            s(&input),
            "-o",
            &format!("s3://{bucket}/lake2"),
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
