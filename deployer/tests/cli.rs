//! Bad input at the command line: each case gives one line naming the problem and the fix,
//! exits 1, and changes nothing (no state written, no emulator left running).

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The deployer with a clean environment: its own state dir, no AWS settings from the caller,
/// and no instance-metadata lookups (nothing may leave this machine).
fn deployer(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
    c.current_dir(root())
        .env("DEPLOYER_STATE_DIR", state)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", state)
        .env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") && k != "AWS_EC2_METADATA_DISABLED"
            || k.starts_with("DEPLOYER_") && k != "DEPLOYER_STATE_DIR"
        {
            c.env_remove(k);
        }
    }
    c
}

/// Asserts exit 1 and a single error line containing every needle; returns that line.
fn fails_with(out: Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected: {stderr}");
    for n in needles {
        assert!(errors[0].contains(n), "{n:?} not in {:?}", errors[0]);
    }
    errors[0].to_string()
}

fn nothing_written(state: &Path) {
    let entries: Vec<_> = std::fs::read_dir(state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        entries.iter().all(|e| e != "local" && e != "aws"),
        "state was written: {entries:?}"
    );
}

#[test]
fn unknown_environment() {
    let state = tempfile::tempdir().unwrap();
    let out = deployer(state.path())
        .args(["status", "--env", "prod"])
        .output()
        .unwrap();
    fails_with(out, &["unknown environment 'prod'", "aws, local", "--env"]);
    nothing_written(state.path());
}

#[test]
fn malformed_config_file() {
    let state = tempfile::tempdir().unwrap();
    let bad = state.path().join("deployer.toml");
    std::fs::write(
        &bad,
        "app = \"wastesort\"\n[environments.local\ntarget = \"local\"\n",
    )
    .unwrap();
    let out = deployer(state.path())
        .args(["status", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    fails_with(
        out,
        &["deployer.toml is not valid", "line 2", "fix that line"],
    );
    nothing_written(state.path());
}

#[test]
fn missing_credentials_for_an_aws_environment() {
    let state = tempfile::tempdir().unwrap();
    let out = deployer(state.path())
        .args(["status", "--env", "aws"])
        .output()
        .unwrap();
    fails_with(
        out,
        &[
            "no AWS credentials for environment 'aws'",
            "profile 'wastesort'",
            "aws sso login --profile wastesort",
        ],
    );
    nothing_written(state.path());
}

#[test]
fn an_aws_environment_without_a_region_is_refused_not_guessed() {
    let state = tempfile::tempdir().unwrap();
    let cfg = state.path().join("deployer.toml");
    std::fs::write(
        &cfg,
        "app = \"wastesort\"\n[environments.aws]\ntarget = \"aws\"\n",
    )
    .unwrap();
    let out = deployer(state.path())
        .args(["status", "--env", "aws", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    fails_with(out, &["no region for environment 'aws'", "DEPLOYER_REGION"]);
}

#[test]
fn a_template_that_fails_to_render_or_parse() {
    let state = tempfile::tempdir().unwrap();
    let stacks = tempfile::tempdir().unwrap();
    for f in ["artifacts.yaml.hbs", "tags.hbs"] {
        std::fs::copy(root().join("stacks").join(f), stacks.path().join(f)).unwrap();
    }
    let out_dir = state.path().join("out");
    std::fs::write(
        stacks.path().join("app.yaml.hbs"),
        "Resources:\n  X:\n    Type: {{typo}}\n",
    )
    .unwrap();
    let out = deployer(state.path())
        .env("DEPLOYER_STACKS_DIR", stacks.path())
        .args(["render", "--no-build", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    fails_with(
        out,
        &[
            "failed to render",
            "app.yaml.hbs",
            "typo",
            "fix the template",
        ],
    );
    assert!(
        !out_dir.exists(),
        "nothing is written when a template fails"
    );

    std::fs::write(stacks.path().join("app.yaml.hbs"), "Resources: [\n").unwrap();
    let out = deployer(state.path())
        .env("DEPLOYER_STACKS_DIR", stacks.path())
        .args(["render", "--no-build", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    fails_with(
        out,
        &["is not valid YAML", "app.yaml.hbs", "deployer render --out"],
    );
    assert!(!out_dir.exists());
}

#[test]
fn emulator_port_already_taken() {
    let state = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = deployer(state.path())
        .env("DEPLOYER_EMULATOR_PORT", port.to_string())
        .arg("status")
        .output()
        .unwrap();
    fails_with(
        out,
        &[
            &format!("port {port} is already in use"),
            "remove emulator_port",
        ],
    );
    assert!(!state.path().join("local/emulator.pid").exists());
}

#[test]
fn python_missing_for_the_emulator() {
    let state = tempfile::tempdir().unwrap();
    let out = deployer(state.path())
        .env("DEPLOYER_PYTHON", "/nonexistent/python3")
        .arg("status")
        .output()
        .unwrap();
    fails_with(
        out,
        &["Python not found at /nonexistent/python3", "./dev setup"],
    );
    assert!(!state.path().join("local/emulator.pid").exists());
}

#[test]
fn help_shows_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for cmd in [
        "render",
        "plan",
        "up",
        "down",
        "status",
        "Examples:",
        "deployer up --yes",
    ] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
}

/// `deployer preflight --output json` for the project's `aws` environment with `extra` settings.
fn preflight(state: &Path, extra: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let mut c = deployer(state);
    c.args(["preflight", "--env", "aws", "--output", "json"]);
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "preflight printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json)
}

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn preflight_names_each_failure_and_its_fix() {
    let state = tempfile::tempdir().unwrap();
    // Credentials: the profile in deployer.toml does not exist here.
    let (code, report) = preflight(state.path(), &[]);
    assert_eq!(code, Some(1), "{report}");
    let creds = check(&report, "credentials");
    assert_eq!(creds["ok"], false, "{creds}");
    assert!(
        creds["detail"]
            .as_str()
            .unwrap()
            .contains("aws sso login --profile wastesort"),
        "{creds}"
    );
    // The region comes from deployer.toml; the serverless settings are within the limits.
    assert_eq!(check(&report, "region")["ok"], true, "{report}");
    assert_eq!(
        check(&report, "serverless settings")["ok"],
        true,
        "{report}"
    );
    // No region anywhere: refused, with where to set one; credentials are not even tried.
    let cfg = state.path().join("deployer.toml");
    std::fs::write(
        &cfg,
        "app = \"wastesort\"\n[environments.aws]\ntarget = \"aws\"\n",
    )
    .unwrap();
    let out = deployer(state.path())
        .args(["preflight", "--env", "aws", "--output", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let region = check(&report, "region");
    assert_eq!(region["ok"], false, "{region}");
    assert!(
        region["fix"]
            .as_str()
            .unwrap()
            .contains("[environments.aws]"),
        "{region}"
    );
    // Serverless settings outside AWS's limits never get this far: the configuration is refused.
    let out = deployer(state.path())
        .args(["preflight", "--env", "aws"])
        .env("DEPLOYER_ENDPOINT_MAX_CONCURRENCY", "500")
        .output()
        .unwrap();
    fails_with(out, &["endpoint_max_concurrency", "1 to 200"]);
    let out = deployer(state.path())
        .args(["preflight", "--env", "aws"])
        .env("DEPLOYER_ENDPOINT_MEMORY_MB", "1000")
        .output()
        .unwrap();
    fails_with(out, &["endpoint_memory_mb", "1024"]);
}

#[test]
fn up_on_aws_stops_at_the_preflight_before_building_anything() {
    let state = tempfile::tempdir().unwrap();
    let cfg = state.path().join("deployer.toml");
    std::fs::write(
        &cfg,
        "app = \"wastesort\"\n[environments.aws]\ntarget = \"aws\"\n",
    )
    .unwrap();
    let out = deployer(state.path())
        .args(["up", "--yes", "--env", "aws", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    fails_with(
        out,
        &["preflight: region", "no region for environment 'aws'"],
    );
    nothing_written(state.path());
}
