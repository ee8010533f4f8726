//! S3 faults between ddb-lake and the local S3 server: a proxy (tests/python/s3_faults.py)
//! answers a share of requests with 503 SlowDown or 500, lets some hang past the request timeout,
//! cuts connections mid-upload and drops answers to requests S3 carried out. object_store's
//! retries (configured in `[s3]`) absorb them; a run that still fails (a conditional write that
//! timed out is not retried: whether it happened is unknown) is started again, as a scheduler
//! would. The lake must end exact.

use crate::crash::{assert_exact, crash_input, lake_check};
use crate::helpers::*;

fn start_proxy(rate: &str, seed: &str) -> (Proxy, String) {
    let upstream = std::env::var("AWS_ENDPOINT_URL_S3").expect("run with scripts/test.sh");
    Proxy::start("s3_faults.py", &["0", &upstream, rate, seed, "3"])
}

fn injected(url: &str) -> serde_json::Value {
    let addr = url.trim_start_matches("http://");
    serde_json::from_str(&http_get(addr, "/__faults").expect("the proxy answers")).unwrap()
}

#[test]
fn s3_errors_timeouts_and_cut_connections_leave_an_exact_lake() {
    if skip_without_servers() {
        return;
    }
    let records = 6_000;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    crash_input(&input, records, 9);
    let name = unique("s3faults");
    let bucket = unique("s3faults").to_lowercase();
    create_bucket(&bucket);
    py_script("kinesis_tool.py", &["create", &name, "2"]);
    py_script("kinesis_tool.py", &["put", &name, s(&input)]);
    let (_proxy, url) = start_proxy("0.2", "3");
    let config = dir.path().join("ddb-lake.toml");
    std::fs::write(
        &config,
        format!(
            "[buffer]\nmax_records = 250\n\n[s3]\nmultipart_threshold = \"8KiB\"\nendpoint = \"{url}\"\nrequest_timeout = \"1s\"\nmax_retries = 12\nretry_timeout = \"2m\"\n"
        ),
    )
    .unwrap();
    let lake = format!("s3://{bucket}/lake");
    let mut failed = Vec::new();
    for attempt in 1..=15 {
        let out = bin()
            .args(["export", "--stream", &name, "-o", &lake, "-c", s(&config)])
            .args(["--json", "--no-progress"])
            .output()
            .unwrap();
        match out.status.code() {
            Some(0 | 2) => break,
            _ => {
                let err = String::from_utf8_lossy(&out.stderr).to_string();
                eprintln!("attempt {attempt} failed: {err}");
                failed.push(err);
            }
        }
        assert!(attempt < 15, "no run succeeded: {failed:?}");
    }
    let faults = injected(&url);
    eprintln!(
        "injected: {faults}; runs that failed and were restarted: {}",
        failed.len()
    );
    for kind in ["slowdown", "internal", "hang", "cut", "lost"] {
        assert!(faults[kind].as_u64().unwrap() > 0, "{faults}");
    }
    let check = lake_check(&bucket, &name);
    eprintln!("lake check: {check}");
    assert_exact(&check, records);
}
