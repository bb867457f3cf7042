//! The REST API against its contract: schemathesis (pinned in
//! `tools/requirements-schemathesis.txt`, installed in `.venv-schemathesis` by `./dev setup`)
//! generates requests from `functions/api/openapi.yaml`, valid and invalid ones, for every
//! operation, sends them to a local cloud brought up on a fresh state dir, and checks each answer:
//! never a 5xx, a documented status code and content type, a body that matches the documented
//! schema.
//!
//! The run is deterministic (derandomized generation, no example database) and bounded
//! ([`MAX_EXAMPLES`] per operation, one worker). Its JUnit report is written to
//! `target/tmp/api_contract/junit.xml`.
//!
//! Needs `cargo build -p deployer` first (the binary is run, not built, here); run with
//! `--nocapture` to see schemathesis's output on success too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{repo_root, step, text, wait_until, Api, Cloud, Http};

/// Test cases per API operation and phase.
const MAX_EXAMPLES: u32 = 20;

/// Server errors, and conformance of the status code, content type and body to the spec.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

/// `.venv-schemathesis/bin/schemathesis`, or a panic saying how to install it.
fn schemathesis_bin(root: &Path) -> PathBuf {
    let bin = root.join(".venv-schemathesis/bin/schemathesis");
    assert!(
        bin.is_file(),
        "{} does not exist: run `./dev setup` (it installs tools/requirements-schemathesis.txt \
         into .venv-schemathesis)",
        bin.display()
    );
    bin
}

/// An empty directory under cargo's target tmp dir for the reports (and as schemathesis's working
/// directory, so nothing it writes lands in the repository).
fn report_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("api_contract");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot empty {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

#[test]
fn the_api_answers_as_its_openapi_contract_says() {
    let root = repo_root();
    let bin = schemathesis_bin(&root);
    let spec = root.join("functions/api/openapi.yaml");
    let mut cloud = Cloud::new();

    let api = step("up", || {
        let up = cloud.json_ok(&["up"]);
        let api = Api::from_up(&up, Http::new());
        let health = api.get_ok("/health");
        assert_eq!(
            text(&health, "status"),
            "ok",
            "GET /health: expected status ok, got {health}"
        );
        api
    });
    // The spec's paths start with /api: the base URL is the stage's.
    let base = api.url.strip_suffix("/api").unwrap_or_else(|| {
        panic!(
            "`deployer up` api_url: expected it to end in /api, got {}",
            api.url
        )
    });

    // A model is serving while schemathesis runs, so `POST /api/predict` answers from it (the
    // documented 503 before any deployment is asserted by `local_cloud.rs`) and the stateful
    // phase walks accept, reject and rollback over real records.
    step("push, train, accept a model", || {
        cloud.json_ok(&["dataset", "push", "--synth", "200", "--seed", "7"]);
        let id = wait_until(
            "a model is staged",
            Duration::from_secs(180),
            Duration::from_millis(500),
            || {
                let models = api.models();
                models
                    .iter()
                    .find(|m| text(m, "status") == "staged")
                    .map(|m| text(m, "id").to_string())
                    .ok_or_else(|| format!("{models:?}"))
            },
        );
        let (status, body) = api.post(
            &format!("/models/{id}/accept"),
            &serde_json::json!({ "reason": "contract test" }),
        );
        assert_eq!(
            status, 202,
            "accept {id}: expected 202, got {status}: {body}"
        );
        wait_until(
            "the endpoint is InService",
            Duration::from_secs(120),
            Duration::from_millis(300),
            || {
                let ep = api.endpoint();
                (text(&ep, "status") == "InService" && text(&ep, "serving_model_id") == id)
                    .then_some(())
                    .ok_or_else(|| ep.to_string())
            },
        );
    });

    let reports = report_dir();
    let junit = reports.join("junit.xml");
    let args: Vec<String> = vec![
        "run".into(),
        spec.display().to_string(),
        "--url".into(),
        base.to_string(),
        "--checks".into(),
        CHECKS.into(),
        // Derandomized generation: the same cases every run, and no example database.
        "--generation-deterministic".into(),
        "--max-examples".into(),
        MAX_EXAMPLES.to_string(),
        // Every failing case of an operation, not only the first one.
        "--continue-on-failure".into(),
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "30".into(),
        "--report".into(),
        "junit".into(),
        "--report-junit-path".into(),
        junit.display().to_string(),
        "--output-truncate".into(),
        "false".into(),
        "--no-color".into(),
        // As the first approver: every route is reachable, so schemathesis exercises the
        // handlers, not only the gateway's 401 (which the auth test covers).
        "--header".into(),
        format!(
            "Authorization: {}",
            api.http
                .token()
                .expect("the first approver signed in when the API was built from `up`")
        ),
    ];
    let command_line = format!("{} {}", bin.display(), args.join(" "));

    let (code, stdout, stderr) = step("schemathesis", || {
        eprintln!("{command_line}");
        let mut c = Command::new(&bin);
        c.current_dir(&reports).args(&args).stdin(Stdio::null());
        // Inherited settings must not change the run (hooks, a base URL); the API is on loopback.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SCHEMATHESIS_") {
                c.env_remove(k);
            }
        }
        c.env("NO_COLOR", "1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        let started = Instant::now();
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        eprintln!(
            "schemathesis ran {:.1} s, exit {:?}",
            started.elapsed().as_secs_f64(),
            out.status.code()
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    });
    if code == Some(0) {
        // On failure the assertion below prints it.
        eprintln!("--- schemathesis stdout:\n{stdout}\n--- schemathesis stderr:\n{stderr}");
    }
    eprintln!("JUnit report: {}", junit.display());

    // Down before the verdict, so a contract failure leaves nothing running either; the
    // contract's verdict is reported first.
    let down = step("down", || {
        let down = cloud.run(&["down", "--yes", "--output", "json"]);
        cloud.torn_down();
        down
    });

    assert_eq!(
        code,
        Some(0),
        "schemathesis exited {code:?}, expected 0 (exit 1: the API breaks its contract, \
         functions/api/openapi.yaml; other: schemathesis could not run)\n\
         command: {command_line}\nJUnit report: {}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        junit.display()
    );
    down.expect_code(
        0,
        "exit 1 means the audit found something billable left after down",
    );
}
