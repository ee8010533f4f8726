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

/// A child process whose stdout and stderr go to files, so that it never blocks on a full pipe
/// that nobody reads while it runs. Killed when dropped.
pub struct Running {
    pub child: std::process::Child,
    dir: tempfile::TempDir,
}

/// What a [`Running`] child printed, once it exited.
pub struct Ended {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Running {
    /// Starts `cmd` with its output going to files.
    pub fn start(mut cmd: Command) -> Running {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let out = std::fs::File::create(dir.path().join("stdout")).expect("a file");
        let err = std::fs::File::create(dir.path().join("stderr")).expect("a file");
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the child starts");
        Running { child, dir }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let pid = self.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.expect("kill runs").success(), "kill -TERM {pid}");
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().expect("the child's state").is_some()
    }

    /// Waits for it to exit and returns what it printed.
    pub fn wait(mut self) -> Ended {
        let status = self.child.wait().expect("the child exits");
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        Ended {
            code: status.code(),
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on loopback that was free a moment ago. Another process can take it before the
/// child that is given it binds it: children given one are started again on another port when
/// they find it taken (`start_listening`).
pub fn free_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    l.local_addr().expect("its address").port().to_string()
}

/// Starts a child that listens on the loopback port it is given (`start(port)`), and waits
/// until `path` answers there over HTTP, or the child exits (it found the port taken): then it
/// tries again on another port. Returns the child and its `host:port`.
pub fn start_listening(mut start: impl FnMut(&str) -> Running, path: &str) -> (Running, String) {
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = start(&addr);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if http_get(&addr, path).is_some() {
                return (child, addr);
            }
            if child.exited() {
                break; // its port was taken: another one
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing answered at http://{addr}{path}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50)); // polling a listener, bounded
        }
    }
    panic!("five children in a row found their port taken");
}

/// The body of `GET http://{addr}{path}` when it answers 200 OK, in Rust (no Python started per
/// poll).
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read as _;
    let timeout = std::time::Duration::from_secs(5);
    let mut conn = std::net::TcpStream::connect(addr).ok()?;
    conn.set_read_timeout(Some(timeout)).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then(|| head.split_whitespace().nth(1) == Some("200"))?
        .then(|| body.to_string())
}

/// The rows of the Parquet files under `dir` (from their footers, read with the parquet crate;
/// no Python per poll). A file that disappears while it is read (a staged upload renamed) is
/// counted at its new name or on the next call.
pub fn parquet_rows(dir: &Path) -> u64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut rows = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                let Ok(file) = std::fs::File::open(&p) else {
                    continue;
                };
                if let Ok(r) = SerializedFileReader::new(file) {
                    rows += r.metadata().file_metadata().num_rows() as u64;
                }
            }
        }
    }
    rows
}

/// An object of the local S3 server, or `None` when it does not exist (through object_store:
/// no Python per poll).
pub fn s3_get(bucket: &str, key: &str) -> Option<Vec<u8>> {
    let (rt, loc) = s3_bucket(bucket);
    rt.block_on(loc.get_opt(key))
        .expect("the local S3 server answers")
        .map(|b| b.to_vec())
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

/// The keys of the local S3 server's objects under `prefix` (through object_store).
pub fn s3_keys(bucket: &str, prefix: &str) -> Vec<String> {
    let (rt, loc) = s3_bucket(bucket);
    rt.block_on(loc.list(prefix))
        .expect("the local S3 server answers")
        .into_iter()
        .map(|(p, _)| loc.relative(&p))
        .collect()
}

/// A bucket of the local S3 server, with a runtime to call it on.
fn s3_bucket(bucket: &str) -> (tokio::runtime::Runtime, ddb_lake::store::Location) {
    let loc = ddb_lake::store::open(&format!("s3://{bucket}"), &Default::default())
        .expect("an S3 location");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    (rt, loc)
}

/// A test-side Python proxy (tests/python/NAME) in front of a local server. Killed when dropped.
pub struct Proxy(std::process::Child);

impl Proxy {
    /// Starts `tests/python/{script}` with `args` (its first argument its port: "0" lets the
    /// system choose); the script prints its port once it listens. Returns it with its URL.
    pub fn start(script: &str, args: &[&str]) -> (Proxy, String) {
        use std::io::BufRead as _;
        let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
        let mut child = python_cmd()
            .arg(path)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("its stdout"))
            .read_line(&mut line)
            .expect("the proxy says its port");
        let port: u16 = line.trim().parse().expect("the proxy's port");
        (Proxy(child), format!("http://127.0.0.1:{port}"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
