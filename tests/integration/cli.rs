//! The command line as a new user meets it: exit codes, locations that look like URLs,
//! options from the environment, missing AWS credentials, one-line errors.

use std::process::Command;

use crate::helpers::*;

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/orders.jsonl");

/// The binary with no `DDB_LAKE_*` option variables from the caller's environment.
fn clean_bin() -> Command {
    let mut c = bin();
    for (k, _) in std::env::vars() {
        if k.starts_with("DDB_LAKE_") && k != "DDB_LAKE_LOG" && !k.starts_with("DDB_LAKE_TEST") {
            c.env_remove(k);
        }
    }
    c
}

fn code(c: &mut Command) -> (Option<i32>, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Issue 12: clap's usage errors exited with 2, which the README gives to "written, with error
/// entries": a scheduler accepted a mistyped command as a partial success. Every code, pinned.
#[test]
fn every_exit_code_means_one_thing() {
    let dir = tempfile::tempdir().unwrap();
    let out = |name: &str| dir.path().join(name).display().to_string();
    // 0: everything written.
    let (c, ..) =
        code(clean_bin().args(["export", "-i", SAMPLE, "-o", &out("a"), "--no-progress"]));
    assert_eq!(c, Some(0));
    // 2: written, some records in the error output.
    let bad = dir.path().join("bad.jsonl");
    let mut text = std::fs::read_to_string(SAMPLE).unwrap();
    text.push_str("{\"not\": a record\n");
    std::fs::write(&bad, text).unwrap();
    let (c, ..) =
        code(clean_bin().args(["export", "-i", s(&bad), "-o", &out("b"), "--no-progress"]));
    assert_eq!(c, Some(2));
    // 1: the run failed (here: an input cut short).
    let cut = dir.path().join("cut.jsonl.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &std::fs::read(SAMPLE).unwrap()).unwrap();
    let gz = gz.finish().unwrap();
    std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
    let (c, _, err) =
        code(clean_bin().args(["export", "-i", s(&cut), "-o", &out("c"), "--no-progress"]));
    assert_eq!(c, Some(1), "{err}");
    // 3: configuration errors: a bad value, a malformed URL.
    let (c, _, err) = code(clean_bin().args([
        "export",
        "-i",
        SAMPLE,
        "-o",
        &out("d"),
        "--max-buffer-bytes",
        "lots",
    ]));
    assert_eq!(c, Some(3), "{err}");
    let (c, _, err) = code(clean_bin().args(["export", "-i", SAMPLE, "-o", "s3:/bucket/x"]));
    assert_eq!(c, Some(3), "{err}");
    // 64: usage errors, whatever clap would have said.
    for args in [
        vec!["export", "--bogus"],
        vec!["export", "-o", "x"],
        vec!["nonsense"],
    ] {
        let (c, _, err) = code(clean_bin().args(&args));
        assert_eq!(c, Some(64), "{args:?}: {err}");
    }
    // Help is not an error.
    let (c, help, _) = code(clean_bin().args(["export", "--help"]));
    assert_eq!(c, Some(0));
    assert!(help.contains("[env: DDB_LAKE_OUTPUT=]"), "{help}");
}

/// Issue 12: `--output s3:/bucket/x` (one slash) wrote to a local folder named `s3:` and
/// reported success.
#[test]
fn a_location_that_looks_like_a_url_but_is_not_one_is_an_error() {
    if skip_without_servers() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, expected) in [
        ("-o", "s3:/bucket/x", "s3://bucket/prefix"),
        ("-o", "S3:bucket/x", "s3://bucket/prefix"),
        ("-o", "gs://bucket/x", "unsupported scheme `gs:`"),
        ("-o", "file:/tmp/x", "file:///absolute/path"),
        ("-o", "s3://", "needs a bucket"),
        ("-i", "s3:/bucket/in.jsonl", "s3://bucket/prefix"),
    ] {
        let mut args = vec!["export", "--no-progress"];
        if flag == "-o" {
            args.extend(["-i", SAMPLE, "-o", value]);
        } else {
            args.extend(["-i", value, "-o", "lake"]);
        }
        let (c, _, err) = code(clean_bin().current_dir(dir.path()).args(&args));
        assert_eq!(c, Some(3), "{value}: {err}");
        assert!(
            err.contains(value) && err.contains(expected),
            "{value}: {err}"
        );
    }
    assert!(
        tree(dir.path()).is_empty(),
        "nothing was written locally: {:?}",
        tree(dir.path())
    );
}

/// Issue 12: every option can come from `DDB_LAKE_<OPTION>`, and a flag beats the environment,
/// which beats the config file, which beats the default.
#[test]
fn options_come_from_the_flag_then_the_environment_then_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let config = path("ddb-lake.toml");
    std::fs::write(
        &config,
        format!(
            "[output]\nurl = \"{}\"\n\n[buffer]\nmax_records = 60\n",
            path("from_config").display()
        ),
    )
    .unwrap();
    // Where the files went and how many (max_records decides how many files an hour gets).
    let export = |env: &[(&str, String)], flags: &[&str]| -> (String, u64) {
        for l in ["from_config", "from_env", "from_flag"] {
            let _ = std::fs::remove_dir_all(path(l));
        }
        let mut c = clean_bin();
        c.args(["export", "-i", SAMPLE, "--no-progress", "--json"]);
        c.args(flags);
        for (k, v) in env {
            c.env(k, v);
        }
        let (code, out, err) = code(&mut c);
        assert_eq!(code, Some(0), "{env:?} {flags:?}: {err}");
        let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
        let first = summary["objects"][0]["path"].as_str().unwrap().to_string();
        let lake = ["from_config", "from_env", "from_flag"]
            .into_iter()
            .find(|l| path(l).join(&first).exists())
            .unwrap_or("?")
            .to_string();
        (lake, summary["files_written"].as_u64().unwrap())
    };
    let cfg = ("DDB_LAKE_CONFIG", config.display().to_string());
    let env_out = ("DDB_LAKE_OUTPUT", path("from_env").display().to_string());
    let env_max = ("DDB_LAKE_MAX_RECORDS", "25".to_string());
    let flag_out = path("from_flag").display().to_string();
    // The config file (named by the environment) over the default.
    let (lake, files_60) = export(std::slice::from_ref(&cfg), &[]);
    assert_eq!(lake, "from_config");
    let (_, files_default) = export(std::slice::from_ref(&cfg), &["--max-records", "1000000"]);
    assert!(files_60 > files_default, "{files_60} {files_default}");
    // The environment over the config file.
    let (lake, files_25) = export(&[cfg.clone(), env_out.clone(), env_max.clone()], &[]);
    assert_eq!(lake, "from_env");
    assert_eq!(
        files_25,
        export(std::slice::from_ref(&cfg), &["--max-records", "25"]).1,
        "DDB_LAKE_MAX_RECORDS=25 acts as --max-records 25"
    );
    assert!(files_25 > files_60);
    // The flag over the environment.
    let (lake, files) = export(
        &[cfg.clone(), env_out, env_max],
        &["-o", &flag_out, "--max-records", "60"],
    );
    assert_eq!((lake.as_str(), files), ("from_flag", files_60));
    // A switch from the environment.
    let mut c = clean_bin();
    c.args(["export", "-i", SAMPLE, "-o", &flag_out, "--no-progress"])
        .env("DDB_LAKE_JSON", "true");
    let (_, out, _) = code(&mut c);
    assert!(
        serde_json::from_str::<serde_json::Value>(&out).is_ok(),
        "{out}"
    );
}

/// Issue 12: with no AWS credentials, `status` printed a multi-line SDK dump as a warning and
/// then `error: transient: dispatch failure ...`. Now: one line that says what was tried and how
/// to provide credentials, and the configuration exit code.
#[test]
fn missing_aws_credentials_are_one_line_and_a_configuration_error() {
    let home = tempfile::tempdir().unwrap();
    let mut c = clean_bin();
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", "us-east-1")
        .env("DDB_LAKE_LOG", "info")
        .args(["status", "--stream", "x", "-o", "s3://bucket/lake"]);
    let (code, _, err) = code(&mut c);
    assert_eq!(code, Some(3), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("error: no AWS credentials were found")
            && lines[0].contains("AWS_PROFILE")
            && lines[0].contains("instance metadata"),
        "{err}"
    );
}

/// Issue 12: `cannot create folder /proc/nope: No such file or directory (os error 2): No such
/// file or directory (os error 2)`.
#[test]
fn an_error_says_each_cause_once() {
    let (c, _, err) = code(clean_bin().args(["export", "-i", SAMPLE, "-o", "/proc/nope/lake"]));
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("/proc/nope"), "{err}");
    assert_eq!(err.matches("(os error").count(), 1, "{err}");
}
