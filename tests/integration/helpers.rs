//! Shared helpers: running the binary, generating input, running Python checks.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What `scripts/test.sh` starts and sets for the tests that need more than the binary: a Python
/// with pyarrow, duckdb, boto3 and moto, and the local S3, Kinesis and DynamoDB servers.
const SERVERS: [&str; 4] = [
    "DDB_LAKE_TEST_PYTHON",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_KINESIS",
    "AWS_ENDPOINT_URL_DYNAMODB",
];

/// Whether this test is skipped: it needs the local servers and Python packages that
/// `scripts/test.sh` starts and installs, and they are not there (a plain `cargo test`). It
/// says so on stderr. Under `DDB_LAKE_REQUIRE_SERVERS=1`, which `scripts/test.sh` (and so CI)
/// sets, a missing server fails the test instead: CI never skips.
pub fn skip_without_servers() -> bool {
    let missing: Vec<&str> = SERVERS
        .into_iter()
        .filter(|v| std::env::var_os(v).is_none())
        .collect();
    if missing.is_empty() {
        return false;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    let why = format!(
        "{test} needs the local servers and Python packages that scripts/test.sh starts ({} not set)",
        missing.join(", ")
    );
    assert!(
        std::env::var_os("DDB_LAKE_REQUIRE_SERVERS").is_none(),
        "{why}; DDB_LAKE_REQUIRE_SERVERS is set, so this is a failure, not a skip"
    );
    // Straight to stderr: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
    true
}

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddb-lake"));
    c.env("DDB_LAKE_LOG", "warn");
    c
}

/// Runs the binary; returns its output (any exit code).
pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

/// Runs the binary and requires the given exit code.
pub fn run_ok(args: &[&str], code: i32) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "ddb-lake {args:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs an export with `--json` and returns the parsed summary.
pub fn export_json(args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["export", "--json", "--no-progress"];
    all.extend_from_slice(args);
    let out = run_ok(&all, code);
    serde_json::from_str(&out).expect("JSON summary")
}

/// Generates records with `ddb-lake generate` into `path`.
pub fn generate(path: &Path, records: u64, seed: u64, extra: &[&str]) {
    let n = records.to_string();
    let s = seed.to_string();
    let mut args = vec![
        "generate",
        "--records",
        &n,
        "--seed",
        &s,
        "-o",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_ok(&args, 0);
}

/// The test Python, as a command: with PYTHONOPTIMIZE removed, since the checkers' `assert`s
/// must run.
pub fn python_cmd() -> Command {
    let mut c = Command::new(python());
    c.env_remove("PYTHONOPTIMIZE");
    c
}

pub fn python() -> String {
    std::env::var("DDB_LAKE_TEST_PYTHON").expect(
        "DDB_LAKE_TEST_PYTHON is not set: run the tests with scripts/test.sh, which installs pyarrow, duckdb and moto",
    )
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Runs a Python check script; it must exit 0. Returns its stdout.
pub fn py_script(name: &str, args: &[&str]) -> String {
    let out = python_cmd()
        .arg(script(name))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Python's last words for the checkers: leave without the interpreter's teardown, where pyarrow
/// and DuckDB loaded together sometimes abort ("terminate called without an active exception")
/// after the check has printed its answer. An exception still exits 1 before this is reached.
pub const QUICK_EXIT: &str = "\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n";

/// Runs inline Python code with arguments; it must exit 0. Returns its stdout, trimmed.
pub fn py(code: &str, args: &[&str]) -> String {
    let out = python_cmd()
        .arg("-c")
        .arg(format!("{code}{QUICK_EXIT}"))
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "python failed:\n{code}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// All files under a folder, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Rows in Parquet files under a folder, counted by DuckDB.
pub fn duckdb_count(dir: &Path) -> u64 {
    py(
        "import duckdb,sys; print(duckdb.execute(f\"select count(*) from read_parquet('{sys.argv[1]}/**/*.parquet')\").fetchone()[0])",
        &[s(dir)],
    )
    .parse()
    .unwrap()
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A free TCP port on loopback.
pub fn free_port() -> String {
    py(
        "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])",
        &[],
    )
}

/// Creates a bucket on the local S3 server.
pub fn create_bucket(bucket: &str) {
    std::env::var("AWS_ENDPOINT_URL_S3")
        .expect("run with scripts/test.sh: it starts the local S3 server");
    py(
        "import boto3,os,sys; boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL_S3'], region_name='us-east-1').create_bucket(Bucket=sys.argv[1])",
        &[bucket],
    );
}
