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
    if skip_without_servers() {
        return;
    }
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

/// One partition per order: hundreds of small files put to the S3 server with several writes
/// allowed in flight (`output.concurrent_writes`; `writer_tests` shows that they overlap), each
/// row in exactly one of them.
#[test]
fn many_small_files_go_up_concurrently_each_row_once() {
    if skip_without_servers() {
        return;
    }
    std::env::var("AWS_ENDPOINT_URL_S3")
        .expect("run with scripts/test.sh: it starts the local S3 server");
    let bucket = unique_bucket("ddb-many");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    generate(&input, 600, 5, &[]);
    py(
        &format!("{S3PY}s3.create_bucket(Bucket=sys.argv[1])"),
        &[&bucket],
    );
    let summary = export_json(
        &[
            "-i",
            s(&input),
            "-o",
            &format!("s3://{bucket}/lake"),
            "--template",
            "{table}/order={order_id}/{YYYY}/{MM}/{DD}",
            "--concurrent-writes",
            "8",
        ],
        0,
    );
    assert_eq!(summary["rows_out"]["orders"], 600);
    let files = summary["files_written"].as_u64().unwrap();
    assert!(files >= 100, "one file per order: {files}");
    let check = format!(
        r#"{S3PY}
import pyarrow.parquet as pq
bucket = sys.argv[1]
keys = [o['Key'] for p in s3.get_paginator('list_objects_v2').paginate(Bucket=bucket, Prefix='lake/orders/') for o in p.get('Contents', [])]
ids = []
for k in keys:
    assert k.endswith('.parquet'), k
    t = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)['Body'].read()))
    order = k.split('/')[2].removeprefix('order=')
    assert set(t.column('order_id').to_pylist()) == {{order}}, (k, t.column('order_id'))
    ids += t.column('cdc_event_id').to_pylist()
print(len(keys), len(ids), len(set(ids)))
"#
    );
    assert_eq!(py(&check, &[&bucket]), format!("{files} 600 600"));
}

#[test]
fn a_prefix_input_reads_every_object_below_it() {
    if skip_without_servers() {
        return;
    }
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
    if skip_without_servers() {
        return;
    }
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
    // A configuration error (README, "Exit codes").
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fencing tests rely on the local S3 server enforcing conditional writes as S3 does: a
/// checkpoint save against a version someone else has replaced since is refused on the wire
/// (`If-Match` on a stale ETag: 412), and the checkpoint store reports the conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_if_match_checkpoint_write_is_rejected_by_the_local_s3_server() {
    if skip_without_servers() {
        return;
    }
    use ddb_lake::checkpoint::{CheckpointError, CheckpointStore, ShardCheckpoint};
    use ddb_lake::store::S3Options;
    use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

    let bucket = unique_bucket("ifmatch").to_lowercase();
    create_bucket(&bucket);
    let s3 = S3Options::default();
    // On the wire: a PUT with If-Match on the first version's ETag after a second version.
    let loc = ddb_lake::store::open(&format!("s3://{bucket}/raw"), &s3).unwrap();
    let path = loc.path("cp.json");
    let v1 = loc.store.put(&path, PutPayload::from("1")).await.unwrap();
    loc.store.put(&path, PutPayload::from("2")).await.unwrap();
    let stale = PutOptions {
        mode: PutMode::Update(UpdateVersion {
            e_tag: v1.e_tag.clone(),
            version: None,
        }),
        ..PutOptions::default()
    };
    let err = loc
        .store
        .put_opts(&path, PutPayload::from("3"), stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::Precondition { .. }),
        "{err:?}"
    );
    let got = loc.store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"2", "the stale write changed nothing");

    // Through the checkpoint store: two stores read the same version; the second one's save
    // after the first one's is refused.
    let url = format!("s3://{bucket}/lake/_ddb_lake/checkpoints/s.json");
    let mut a = CheckpointStore::open(&url, &s3).unwrap();
    let cp = a.load("s").await.unwrap();
    a.save(&cp).await.unwrap();
    let mut b = CheckpointStore::open(&url, &s3).unwrap();
    let mut cp_b = b.load("s").await.unwrap();
    let mut cp_a = cp.clone();
    cp_a.shards.insert("a".into(), ShardCheckpoint::default());
    a.save(&cp_a).await.unwrap();
    cp_b.shards.insert("b".into(), ShardCheckpoint::default());
    let err = b.save(&cp_b).await.unwrap_err();
    assert!(matches!(err, CheckpointError::Conflict { .. }), "{err}");
}

/// Objects above the multipart threshold are created only if absent too: a real multi-part
/// upload to a staging name, then a copy whose CompleteMultipartUpload carries
/// `If-None-Match: *`. A second writer of the same name keeps the first one's object, and no
/// staged copy is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_object_is_created_only_if_absent_without_a_race() {
    if skip_without_servers() {
        return;
    }
    use object_store::ObjectStoreExt;

    let bucket = unique_bucket("createonly").to_lowercase();
    create_bucket(&bucket);
    let loc = ddb_lake::store::open(&format!("s3://{bucket}/lake"), &Default::default()).unwrap();
    // 40 KiB in 16 KiB parts: three parts (the local server accepts parts this small).
    let first = bytes::Bytes::from(vec![1u8; 40 * 1024]);
    let second = bytes::Bytes::from(vec![2u8; 48 * 1024]);
    let name = "t/2026/11/20/10/t-0011223344556677.parquet";
    let put = |data, staging| {
        let loc = loc.clone();
        async move { loc.put_new(name, data, 8 * 1024, 16 * 1024, staging).await }
    };
    assert_eq!(
        put(first.clone(), "_ddb_lake/staging/a/x").await.unwrap(),
        None
    );
    assert_eq!(
        put(second, "_ddb_lake/staging/b/x").await.unwrap(),
        Some(first.len() as u64),
        "the second writer finds the first one's object"
    );
    let got = loc
        .store
        .get(&loc.path(name))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, first);
    let staged = loc.list("_ddb_lake/staging/").await.unwrap();
    assert!(staged.is_empty(), "{staged:?}");
}
