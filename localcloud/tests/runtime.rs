//! The local cloud's runtime as a user meets it, end to end, against a real moto server
//! started from the project's venv (`./dev setup` installs it): each test starts its own moto
//! and its own `localcloud::run`, and talks to the front door with the ordinary AWS SDK
//! clients (dummy credentials, S3 path-style), as the deployer and the handlers do.
//!
//! Functions under test are real zips uploaded to S3 and created with `CreateFunction`
//! (runtime `provided.al2023`); their `bootstrap` is a Python script that speaks the Lambda
//! Runtime API. What it does is chosen by the event (echo the event and its
//! environment, sleep past the timeout, crash, fail, answer API Gateway).
//!
//! Covered: Lambda `Invoke` (environment, local log file, warm process reuse), timeouts (warm
//! and cold), crashes (mid-invocation and while idle), concurrency (cold and a burst on a warm
//! process), redeploys, EventBridge rules (`prefix`, `anything-but`, disabled rules) and
//! `PutEvents`, `/_localcloud/fire`, AWS-shaped SageMaker errors, and the REST API gateway (v1
//! proxy events, the function's response, 403 and 502).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use localcloud::{Config, RunInfo};
use pipeline_core::testing::{start_moto, Moto};
use serde_json::{json, Value};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
const CODE_BUCKET: &str = "code";

/// The function's code: a custom runtime in Python (the one thing every machine that runs the
/// emulator has). It exits as soon as the Runtime API stops answering, so no process outlives
/// its test.
const BOOTSTRAP: &str = r##"#!/usr/bin/env python3
import json, os, sys, time, urllib.request

version = '@VERSION@'
api = "http://%s/2018-06-01/runtime/invocation" % os.environ["AWS_LAMBDA_RUNTIME_API"]

def post(path, body, headers=None):
    req = urllib.request.Request(api + path, data=body.encode(), method="POST", headers=headers or {})
    urllib.request.urlopen(req).read()

while True:
    try:
        with urllib.request.urlopen(api + "/next") as r:
            rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
            ev = r.read().decode()
    except Exception:
        sys.exit(1)
    print("handling %s" % rid, flush=True)
    if os.environ.get("EVENT_FILE"):
        with open(os.environ["EVENT_FILE"], "a") as f:
            f.write(ev + "\n")
    try:
        if '"mode":"crash"' in ev:
            print("crashing on purpose", flush=True)
            sys.exit(3)
        if '"mode":"error"' in ev or '"proxy":"things/fail"' in ev:
            post("/%s/error" % rid, '{"errorType":"Boom","errorMessage":"asked to fail"}',
                 {"Lambda-Runtime-Function-Error-Type": "Boom"})
            continue
        if '"mode":"sleep"' in ev:
            time.sleep(10)
        if '"mode":"slow"' in ev:
            time.sleep(1)
        if '"httpMethod"' in ev:
            out = {"statusCode": 201, "headers": {"x-from": "fn", "content-type": "text/plain"}, "body": "made it"}
        else:
            out = {"version": version, "pid": os.getpid(), "fn": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", ""),
                   "endpoint": os.environ.get("AWS_ENDPOINT_URL", ""), "greeting": os.environ.get("GREETING", ""),
                   "event": json.loads(ev)}
        post("/%s/response" % rid, json.dumps(out))
    except SystemExit:
        raise
    except Exception:
        sys.exit(1)
"##;

/// A zip holding `bootstrap` (the script above, answering `version`).
fn package(version: &str) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .unix_permissions(0o755);
    zip.start_file("bootstrap", opts).unwrap();
    zip.write_all(BOOTSTRAP.replace("@VERSION@", version).as_bytes())
        .unwrap();
    zip.finish().unwrap().into_inner()
}

/// One moto and one local cloud in front of it, with SDK clients on the front door.
struct Env {
    _moto: Moto,
    state: tempfile::TempDir,
    info: RunInfo,
    task: tokio::task::JoinHandle<Result<(), localcloud::Error>>,
    sdk: aws_config::SdkConfig,
    s3: aws_sdk_s3::Client,
    lambda: aws_sdk_lambda::Client,
    role: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Env {
    start_with(None).await
}

/// Starts moto and the local cloud (optionally with a model binary and its hash), waits for
/// the run file and makes the role and the code bucket every function needs.
async fn start_with(model: Option<(PathBuf, String)>) -> Env {
    let moto = start_moto().unwrap_or_else(|e| panic!("cannot start moto: {e}"));
    let state = tempfile::tempdir().unwrap();
    let (model_binary, model_sha256) = match model {
        Some((b, s)) => (Some(b), Some(s)),
        None => (None, None),
    };
    let cfg = Config {
        state_dir: state.path().to_path_buf(),
        moto_url: format!("http://127.0.0.1:{}", moto.port),
        port: 0,
        api_port: 0,
        region: REGION.into(),
        account: ACCOUNT.into(),
        model_binary,
        model_sha256,
        restore: false,
    };
    let task = tokio::spawn(localcloud::run(cfg));
    let run_file = state.path().join(localcloud::RUN_FILE);
    let deadline = Instant::now() + Duration::from_secs(20);
    let info: RunInfo = loop {
        if let Some(info) = std::fs::read_to_string(&run_file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            break info;
        }
        assert!(
            !task.is_finished(),
            "localcloud::run stopped before writing {}",
            run_file.display()
        );
        assert!(
            Instant::now() < deadline,
            "no run file {} within 20 s",
            run_file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(info.port > 0 && info.api_port > 0, "run file: {info:?}");
    assert_eq!(info.url, format!("http://127.0.0.1:{}", info.port));
    assert_eq!(info.api_base, format!("http://127.0.0.1:{}", info.api_port));

    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .endpoint_url(&info.url)
        .load()
        .await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    s3.create_bucket().bucket(CODE_BUCKET).send().await.unwrap();
    let role = aws_sdk_iam::Client::new(&sdk)
        .create_role()
        .role_name("fn-role")
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .role()
        .map(|r| r.arn().to_string())
        .unwrap();
    Env {
        _moto: moto,
        state,
        info,
        task,
        sdk,
        s3,
        lambda,
        role,
    }
}

/// What one `Invoke` returned.
#[derive(Debug)]
struct Answer {
    error: Option<String>,
    payload: Value,
    took: Duration,
}

impl Env {
    /// Uploads the code for `version` to the code bucket under its own key; returns the key.
    async fn upload(&self, name: &str, version: &str) -> String {
        let key = format!("{name}/{version}.zip");
        self.s3
            .put_object()
            .bucket(CODE_BUCKET)
            .key(&key)
            .body(package(version).into())
            .send()
            .await
            .unwrap();
        key
    }

    /// Creates a function from an uploaded zip; returns its ARN.
    async fn deploy(&self, name: &str, timeout: i32, env: &[(&str, &str)]) -> String {
        use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
        let key = self.upload(name, "v1").await;
        let mut vars = Environment::builder();
        for (k, v) in env {
            vars = vars.variables(*k, *v);
        }
        self.lambda
            .create_function()
            .function_name(name)
            .runtime(Runtime::Providedal2023)
            .handler("bootstrap")
            .role(&self.role)
            .timeout(timeout)
            .code(
                FunctionCode::builder()
                    .s3_bucket(CODE_BUCKET)
                    .s3_key(key)
                    .build(),
            )
            .environment(vars.build())
            .send()
            .await
            .unwrap()
            .function_arn()
            .unwrap()
            .to_string()
    }

    /// `Invoke` (RequestResponse) through the front door, bounded at 30 s.
    async fn invoke(&self, name: &str, payload: Value) -> Answer {
        let started = Instant::now();
        let sent = self
            .lambda
            .invoke()
            .function_name(name)
            .payload(Blob::new(payload.to_string()))
            .send();
        let out = match tokio::time::timeout(Duration::from_secs(30), sent).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => panic!("Invoke {name} {payload} failed: {e:?}"),
            Err(_) => panic!("Invoke {name} {payload} did not answer within 30 s"),
        };
        let took = started.elapsed();
        assert_eq!(out.status_code(), 200, "Invoke {name}: status");
        let bytes = out
            .payload()
            .map(|b| b.as_ref().to_vec())
            .unwrap_or_default();
        let payload = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "Invoke {name}: the payload is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Answer {
            error: out.function_error().map(str::to_string),
            payload,
            took,
        }
    }

    /// Invokes and insists on success; returns the echo.
    async fn echo(&self, name: &str, payload: Value) -> Value {
        let a = self.invoke(name, payload).await;
        assert_eq!(a.error, None, "expected a successful invocation: {a:?}");
        a.payload
    }

    fn event_file(&self, name: &str) -> PathBuf {
        self.state.path().join(format!("events-{name}.jsonl"))
    }
}

/// The events a function wrote to its `EVENT_FILE`, one JSON document a line.
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect()
}

/// Polls `check` every 100 ms until it gives a value; fails after `limit`.
async fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.1 request; returns (status, headers, body).
async fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, hyper::HeaderMap, String) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no answer within 30 s"))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn pid_of(echo: &Value) -> u64 {
    echo["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid in {echo}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_runs_the_function_with_its_environment_and_logs_it() {
    let env = start().await;
    env.deploy("echo", 5, &[("GREETING", "hello")]).await;
    let input = json!({"mode": "echo", "n": 1, "text": "ünïcode"});
    let out = env.echo("echo", input.clone()).await;
    assert_eq!(out["event"], input, "the function saw another event: {out}");
    assert_eq!(out["version"], "v1");
    assert_eq!(out["greeting"], "hello", "configured environment: {out}");
    assert_eq!(out["fn"], "echo", "AWS_LAMBDA_FUNCTION_NAME: {out}");
    assert_eq!(
        out["endpoint"],
        env.info.url.as_str(),
        "AWS_ENDPOINT_URL: {out}"
    );

    let log = env.state.path().join("logs/lambda/echo.log");
    let text = wait_for(
        "START/END/REPORT in the function's log",
        Duration::from_secs(5),
        || {
            let t = std::fs::read_to_string(&log).ok()?;
            (t.contains("END RequestId:") && t.contains("REPORT RequestId:")).then_some(t)
        },
    )
    .await;
    let start = text
        .lines()
        .find_map(|l| l.strip_prefix("START RequestId: "))
        .unwrap_or_else(|| panic!("no START line in {}:\n{text}", log.display()));
    let id = start.split_whitespace().next().unwrap();
    assert!(
        text.contains(&format!("END RequestId: {id}")),
        "no END for {id}:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("REPORT RequestId: {id}")) && l.contains("Duration:")),
        "no REPORT for {id}:\n{text}"
    );
    assert!(
        text.contains(&format!("handling {id}")),
        "the function's own output is not in its log:\n{text}"
    );
}

/// Invocations in sequence are served by the warm process, as on Lambda, rather than each
/// paying for a new process (a cold start). The pause lets the runtime get back to
/// `GET .../invocation/next` (an invocation arriving before that finds no idle process and
/// rightly starts another).
#[tokio::test(flavor = "multi_thread")]
async fn invocations_in_sequence_reuse_the_warm_process() {
    let env = start().await;
    env.deploy("warm", 5, &[]).await;
    let mut pids = BTreeSet::new();
    for i in 0..5 {
        pids.insert(pid_of(
            &env.echo("warm", json!({"mode": "echo", "i": i})).await,
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        pids.len(),
        1,
        "5 sequential invocations started {} processes: {pids:?}",
        pids.len()
    );
}

/// Timeout=2 on an idle warm process: the sleeping invocation is cut at ~2 s and the next one
/// is served by a new process.
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_on_a_warm_process_is_a_function_error_and_the_next_invocation_works() {
    let env = start().await;
    env.deploy("sleepy", 2, &[]).await;
    let first = pid_of(&env.echo("sleepy", json!({"mode": "echo"})).await);
    // Let the process get back to `GET .../invocation/next`, so the next invocation finds it
    // idle and starts no process (a started process would give it the 10 s init allowance).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let a = env.invoke("sleepy", json!({"mode": "sleep"})).await;
    assert_eq!(a.error.as_deref(), Some("Unhandled"), "{a:?}");
    assert_eq!(a.payload["errorType"], "Sandbox.Timedout", "{a:?}");
    let msg = a.payload["errorMessage"].as_str().unwrap_or_default();
    assert!(msg.contains("Task timed out after 2.00 seconds"), "{a:?}");
    assert!(
        a.took >= Duration::from_millis(1900) && a.took < Duration::from_secs(5),
        "a 2 s timeout answered after {:?}",
        a.took
    );

    let next = pid_of(&env.echo("sleepy", json!({"mode": "echo"})).await);
    assert_ne!(next, first, "the timed-out process was reused");
}

/// Timeout=2 on the very first (cold) invocation: Lambda gives initialisation its own 10 s,
/// but the handler itself still only gets its 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_enforced_on_a_cold_start() {
    let env = start().await;
    env.deploy("cold", 2, &[]).await;
    let a = env.invoke("cold", json!({"mode": "sleep"})).await;
    assert!(
        a.error.is_some()
            && a.payload["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("Task timed out")),
        "a function with Timeout=2 that sleeps 10 s on a cold start answered after {:?} with {:?} \
         instead of timing out",
        a.took,
        a
    );
    assert!(a.took < Duration::from_secs(13), "{:?}", a.took);
    env.echo("cold", json!({"mode": "echo"})).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_invocation_is_an_exit_error_and_the_next_invocation_works() {
    let env = start().await;
    env.deploy("crashy", 5, &[]).await;
    let a = env.invoke("crashy", json!({"mode": "crash"})).await;
    assert_eq!(a.error.as_deref(), Some("Unhandled"), "{a:?}");
    assert_eq!(a.payload["errorType"], "Runtime.ExitError", "{a:?}");
    assert!(
        a.payload["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("exit status: 3")),
        "{a:?}"
    );
    assert!(a.took < Duration::from_secs(5), "{:?}", a.took);
    let out = env
        .echo("crashy", json!({"mode": "echo", "after": "crash"}))
        .await;
    assert_eq!(out["event"]["after"], "crash");

    // A function error the function reports itself comes back as such.
    let a = env.invoke("crashy", json!({"mode": "error"})).await;
    assert_eq!(a.error.as_deref(), Some("Unhandled"), "{a:?}");
    assert_eq!(a.payload["errorType"], "Boom", "{a:?}");
}

/// A runtime process that dies while waiting for work (killed, out of memory) must not take
/// the next invocation with it.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_process_that_dies_is_replaced() {
    let env = start().await;
    env.deploy("fragile", 3, &[]).await;
    let pid = pid_of(&env.echo("fragile", json!({"mode": "echo"})).await);
    // Let it get back to waiting for the next invocation (`GET .../invocation/next`).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = format!("{}/_localcloud/status", env.info.url);
    let mut gone = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !gone {
        let (_, _, body) = http("GET", &status, &[], "").await;
        let v: Value = serde_json::from_str(&body).unwrap();
        gone = !v["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["pid"].as_u64() == Some(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the killed process {pid} is still listed");

    let a = env.invoke("fragile", json!({"mode": "echo"})).await;
    assert_eq!(
        a.error, None,
        "the invocation after an idle process died failed (after {:?}): {}",
        a.took, a.payload
    );
    assert_ne!(pid_of(&a.payload), pid);
    assert!(a.took < Duration::from_secs(2), "{:?}", a.took);
}

/// Three 1 s invocations at once; returns how long they took together and the processes
/// that served them.
async fn three_slow_at_once(env: &Env, name: &str) -> (Duration, BTreeSet<u64>) {
    let started = Instant::now();
    let (a, b, c) = tokio::join!(
        env.invoke(name, json!({"mode": "slow", "i": 0})),
        env.invoke(name, json!({"mode": "slow", "i": 1})),
        env.invoke(name, json!({"mode": "slow", "i": 2})),
    );
    let took = started.elapsed();
    let mut pids = BTreeSet::new();
    for a in [a, b, c] {
        assert_eq!(a.error, None, "{a:?}");
        pids.insert(pid_of(&a.payload));
    }
    (took, pids)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_invocations_run_in_parallel_processes() {
    let env = start().await;
    env.deploy("slow", 5, &[]).await;
    let (took, pids) = three_slow_at_once(&env, "slow").await;
    assert!(
        took < Duration::from_millis(2500),
        "3 concurrent 1 s invocations took {took:?} (pids {pids:?})"
    );
    assert_eq!(pids.len(), 3, "expected three processes, got {pids:?}");
}

/// Three invocations at once on a function with one idle process: two more processes must
/// start rather than the three queueing on the one.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_on_one_warm_process_scales_out() {
    let env = start().await;
    env.deploy("burst", 5, &[]).await;
    env.echo("burst", json!({"mode": "echo"})).await;
    // Let it get back to `GET .../invocation/next`: one idle process.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (took, pids) = three_slow_at_once(&env, "burst").await;
    assert!(
        took < Duration::from_millis(2500),
        "3 concurrent 1 s invocations on a warm function took {took:?} (pids {pids:?})"
    );
}

/// A deploy through the front door (as `deployer redeploy` and `up` make) takes effect on
/// the very next invocation; one made behind its back, straight to the emulator, within the
/// configuration's trust time (a background check notices it).
#[tokio::test(flavor = "multi_thread")]
async fn a_redeploy_takes_effect() {
    let env = start().await;
    env.deploy("svc", 5, &[]).await;
    let before = env.echo("svc", json!({"mode": "echo"})).await;
    assert_eq!(before["version"], "v1");
    let key = env.upload("svc", "v2").await;
    let updated = env
        .lambda
        .update_function_code()
        .function_name("svc")
        .s3_bucket(CODE_BUCKET)
        .s3_key(key)
        .send()
        .await
        .unwrap();
    assert_ne!(
        updated.code_sha256(),
        None,
        "moto did not report the new code's hash"
    );
    let after = env.echo("svc", json!({"mode": "echo"})).await;
    assert_eq!(
        after["version"], "v2",
        "the invocation right after the update ran the old code: {after}"
    );
    assert_ne!(pid_of(&after), pid_of(&before));

    // Behind the front door's back: straight to the emulator.
    let direct = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&env.sdk)
            .endpoint_url(format!("http://127.0.0.1:{}", env._moto.port))
            .build(),
    );
    let key = env.upload("svc", "v3").await;
    direct
        .update_function_code()
        .function_name("svc")
        .s3_bucket(CODE_BUCKET)
        .s3_key(key)
        .send()
        .await
        .unwrap();
    let changed = std::time::Instant::now();
    let deadline = changed + Duration::from_secs(3);
    loop {
        let now = env.echo("svc", json!({"mode": "echo"})).await;
        if now["version"] == "v3" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "3 s after an update made straight to the emulator the old code still answers: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn eventbridge_rules_deliver_matching_events_to_their_functions() {
    use aws_sdk_eventbridge::types::{PutEventsRequestEntry, RuleState, Target};
    let env = start().await;
    let file = env.event_file("listener");
    let arn = env
        .deploy("listener", 5, &[("EVENT_FILE", file.to_str().unwrap())])
        .await;
    let events_api = aws_sdk_eventbridge::Client::new(&env.sdk);
    let rules = [
        (
            "orders",
            json!({"source": [{"prefix": "shop."}], "detail-type": ["Order Placed"],
                   "detail": {"status": [{"anything-but": "test"}]}}),
            RuleState::Enabled,
        ),
        (
            "switched-off",
            json!({"source": ["disabled.only"]}),
            RuleState::Disabled,
        ),
    ];
    for (name, pattern, state) in rules {
        events_api
            .put_rule()
            .name(name)
            .event_pattern(pattern.to_string())
            .state(state)
            .send()
            .await
            .unwrap();
        events_api
            .put_targets()
            .rule(name)
            .targets(Target::builder().id("fn").arn(&arn).build().unwrap())
            .send()
            .await
            .unwrap();
    }
    let entry = |source: &str, status: &str, order: &str| {
        PutEventsRequestEntry::builder()
            .source(source)
            .detail_type("Order Placed")
            .detail(json!({"status": status, "order": order}).to_string())
            .resources("arn:aws:shop:::order/1")
            .build()
    };
    let put = events_api
        .put_events()
        .entries(entry("other.app", "new", "wrong-source"))
        .entries(entry("shop.web", "test", "excluded-status"))
        .entries(entry("disabled.only", "new", "disabled-rule"))
        .entries(entry("shop.web", "new", "o-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.failed_entry_count(), 0);
    assert_eq!(put.entries().len(), 4);
    assert!(put.entries().iter().all(|e| e.event_id().is_some()));

    wait_for("the matching event", Duration::from_secs(10), || {
        events(&file)
            .iter()
            .any(|e| e["detail"]["order"] == "o-1")
            .then_some(())
    })
    .await;
    // Whatever else was going to be delivered was sent before the matching event.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = events(&file);
    let orders: Vec<&Value> = got.iter().map(|e| &e["detail"]["order"]).collect();
    assert_eq!(orders, [&json!("o-1")], "delivered: {got:?}");
    let e = &got[0];
    assert_eq!(e["source"], "shop.web");
    assert_eq!(e["detail-type"], "Order Placed");
    assert_eq!(e["account"], ACCOUNT);
    assert_eq!(e["region"], REGION);
    assert_eq!(e["resources"], json!(["arn:aws:shop:::order/1"]));
    assert!(e["id"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn firing_a_schedule_rule_invokes_its_target_with_a_scheduled_event() {
    use aws_sdk_eventbridge::types::{RuleState, Target};
    let env = start().await;
    let file = env.event_file("cron");
    let arn = env
        .deploy("cron", 5, &[("EVENT_FILE", file.to_str().unwrap())])
        .await;
    let events_api = aws_sdk_eventbridge::Client::new(&env.sdk);
    let rule_arn = events_api
        .put_rule()
        .name("nightly")
        .schedule_expression("rate(1 day)")
        .state(RuleState::Enabled)
        .send()
        .await
        .unwrap()
        .rule_arn()
        .unwrap()
        .to_string();
    events_api
        .put_targets()
        .rule("nightly")
        .targets(Target::builder().id("fn").arn(&arn).build().unwrap())
        .send()
        .await
        .unwrap();

    let (status, _, body) = http(
        "POST",
        &format!("{}/_localcloud/fire/nightly", env.info.url),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"rule": "nightly", "targets": 1}));
    let e = wait_for("the scheduled event", Duration::from_secs(10), || {
        events(&file).into_iter().next()
    })
    .await;
    assert_eq!(e["detail-type"], "Scheduled Event", "{e}");
    assert_eq!(e["source"], "aws.events", "{e}");
    assert_eq!(e["resources"], json!([rule_arn]), "{e}");
    assert_eq!(e["detail"], json!({}), "{e}");

    let (status, headers, body) = http(
        "POST",
        &format!("{}/_localcloud/fire/no-such-rule", env.info.url),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "RuleNotFound", "{body}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-rule")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sagemaker_errors_are_aws_shaped() {
    use aws_sdk_sagemaker::error::ProvideErrorMetadata;
    use aws_sdk_sagemaker::types::{
        AlgorithmSpecification, OutputDataConfig, ResourceConfig, StoppingCondition,
        TrainingInputMode, TrainingInstanceType,
    };
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("waste-model");
    std::fs::write(&bin, b"#!/bin/sh\nexit 1\n").unwrap();
    let sha = "0123abcd".to_string();
    let env = start_with(Some((bin, sha.clone()))).await;

    // An action the local cloud does not implement, as a raw signed-looking request.
    let (status, headers, body) = http(
        "POST",
        &format!("{}/", env.info.url),
        &[
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", "SageMaker.CreateCluster"),
            ("x-amz-date", "20240101T000000Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sagemaker/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-target, Signature=0000",
            ),
        ],
        "{}",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["__type"], "UnknownOperationException", "{body}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("CreateCluster")),
        "{body}"
    );
    assert_eq!(
        headers
            .get("x-amzn-errortype")
            .and_then(|h| h.to_str().ok()),
        Some("UnknownOperationException")
    );

    let sm = aws_sdk_sagemaker::Client::new(&env.sdk);
    // The same through the SDK.
    let err = sm.list_notebook_instances().send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnknownOperationException"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));

    // A training image the local cloud cannot run: the message names the one it can.
    let err = sm
        .create_training_job()
        .training_job_name("job-1")
        .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/sm"))
        .algorithm_specification(
            AlgorithmSpecification::builder()
                .training_image(format!(
                    "{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/waste-model:latest"
                ))
                .training_input_mode(TrainingInputMode::File)
                .build(),
        )
        .output_data_config(
            OutputDataConfig::builder()
                .s3_output_path("s3://out/models/")
                .build(),
        )
        .resource_config(
            ResourceConfig::builder()
                .instance_type(TrainingInstanceType::MlM5Large)
                .instance_count(1)
                .volume_size_in_gb(1)
                .build(),
        )
        .stopping_condition(
            StoppingCondition::builder()
                .max_runtime_in_seconds(60)
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    let msg = err.message().unwrap_or_default();
    assert!(
        msg.contains(&format!("local://waste-model@sha256:{sha}")) && msg.contains("deployer up"),
        "the message does not say how to fix it: {msg}"
    );
    let jobs = sm.list_training_jobs().send().await.unwrap();
    assert!(
        jobs.training_job_summaries().is_empty(),
        "a refused job was recorded"
    );

    let err = sm
        .describe_endpoint()
        .endpoint_name("missing")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(
        err.message()
            .is_some_and(|m| m.contains("Could not find endpoint")),
        "{err:?}"
    );

    use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
    let rt = aws_sdk_sagemakerruntime::Client::new(&env.sdk);
    let err = rt
        .invoke_endpoint()
        .endpoint_name("missing")
        .content_type("application/json")
        .body(aws_sdk_sagemakerruntime::primitives::Blob::new("{}"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sagemakerruntime::error::ProvideErrorMetadata::code(&err),
        Some("ValidationError"),
        "{err:?}"
    );
    assert!(
        matches!(
            err.as_service_error(),
            Some(InvokeEndpointError::ValidationError(_))
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_gateway_serves_the_rest_api_through_lambda_proxy() {
    use aws_sdk_apigateway::types::IntegrationType;
    let env = start().await;
    let file = env.event_file("api");
    let arn = env
        .deploy("api", 5, &[("EVENT_FILE", file.to_str().unwrap())])
        .await;
    let gw = aws_sdk_apigateway::Client::new(&env.sdk);
    let api = gw
        .create_rest_api()
        .name("shop")
        .send()
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    let root = gw
        .get_resources()
        .rest_api_id(&api)
        .send()
        .await
        .unwrap()
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id().map(str::to_string))
        .unwrap();
    let proxy = gw
        .create_resource()
        .rest_api_id(&api)
        .parent_id(root)
        .path_part("{proxy+}")
        .send()
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    gw.put_method()
        .rest_api_id(&api)
        .resource_id(&proxy)
        .http_method("ANY")
        .authorization_type("NONE")
        .send()
        .await
        .unwrap();
    gw.put_integration()
        .rest_api_id(&api)
        .resource_id(&proxy)
        .http_method("ANY")
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(format!(
            "arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{arn}/invocations"
        ))
        .send()
        .await
        .unwrap();
    gw.create_deployment()
        .rest_api_id(&api)
        .stage_name("v1")
        .send()
        .await
        .unwrap();

    let base = &env.info.api_base;
    let (status, headers, body) = http(
        "GET",
        &format!("{base}/v1/things/a%20b?x=1&x=2"),
        &[("x-custom", "yes")],
        "",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, "made it");
    assert_eq!(
        headers.get("x-from").and_then(|h| h.to_str().ok()),
        Some("fn")
    );
    assert_eq!(
        headers.get("content-type").and_then(|h| h.to_str().ok()),
        Some("text/plain")
    );

    let got = events(&file);
    assert_eq!(got.len(), 1, "{got:?}");
    let e = &got[0];
    let decoded = |v: &Value| {
        percent_encoding::percent_decode_str(v.as_str().unwrap_or_default())
            .decode_utf8_lossy()
            .into_owned()
    };
    assert_eq!(e["resource"], "/{proxy+}", "{e}");
    assert_eq!(e["httpMethod"], "GET", "{e}");
    assert_eq!(decoded(&e["path"]), "/things/a b", "{e}");
    assert_eq!(decoded(&e["pathParameters"]["proxy"]), "things/a b", "{e}");
    assert_eq!(
        e["multiValueQueryStringParameters"]["x"],
        json!(["1", "2"]),
        "{e}"
    );
    assert_eq!(e["queryStringParameters"]["x"], "2", "{e}");
    assert_eq!(e["headers"]["x-custom"], "yes", "{e}");
    assert_eq!(e["requestContext"]["stage"], "v1", "{e}");
    assert_eq!(e["requestContext"]["apiId"], api.as_str(), "{e}");
    assert_eq!(e["requestContext"]["resourcePath"], "/{proxy+}", "{e}");
    assert_eq!(e["body"], Value::Null, "{e}");
    assert_eq!(e["isBase64Encoded"], false, "{e}");

    let (status, _, body) = http("GET", &format!("{base}/v9/things/x"), &[], "").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"message": "Forbidden"})
    );

    let (status, _, body) = http("GET", &format!("{base}/v1/things/fail"), &[], "").await;
    assert_eq!(status, 502, "{body}");
    // In the API's error shape, as the stack's DEFAULT_5XX gateway response gives it on AWS
    // (moto does not model gateway responses from CloudFormation; the local gateway does).
    let err: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["error"]["code"], "gateway_error", "{body}");
    assert_eq!(err["error"]["message"], "Internal server error", "{body}");
    assert!(
        err["error"]["fix"].as_str().is_some_and(|f| !f.is_empty()),
        "{body}"
    );
}

/// SNS email as a user meets it: a new email subscription answers "pending confirmation", is
/// listed as `PendingConfirmation`, gets a confirmation mail with a link, and receives nothing
/// until the link is followed; after that, published mail names it as a recipient.
#[tokio::test(flavor = "multi_thread")]
async fn email_subscriptions_wait_for_confirmation_and_mail_lands_in_the_outbox() {
    let env = start().await;
    let sns = aws_sdk_sns::Client::new(&env.sdk);
    let topic = sns
        .create_topic()
        .name("pipeline")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let sub = sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("email")
        .endpoint("ana@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(sub.subscription_arn(), Some("pending confirmation"));
    let listed = sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.subscriptions()[0].subscription_arn(),
        Some("PendingConfirmation")
    );

    let mail = |env: &Env| {
        let url = format!("{}/_localcloud/mail", env.info.url);
        async move {
            let (status, _, body) = http("GET", &url, &[], "").await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Vec<Value>>(&body).unwrap()
        }
    };
    let box1 = mail(&env).await;
    assert_eq!(box1.len(), 1, "{box1:?}");
    assert_eq!(
        box1[0]["subject"],
        "AWS Notification - Subscription Confirmation"
    );
    assert_eq!(box1[0]["recipients"], json!(["ana@example.com"]));
    let link = box1[0]["confirm_url"].as_str().unwrap().to_string();
    assert!(box1[0]["body"].as_str().unwrap().contains(&link));

    sns.publish()
        .topic_arn(&topic)
        .subject("before")
        .message("not delivered yet")
        .send()
        .await
        .unwrap();
    let box2 = mail(&env).await;
    assert_eq!(box2[1]["subject"], "before");
    assert_eq!(box2[1]["recipients"], json!([]));
    assert_eq!(
        box2[1]["not_delivered_pending_confirmation"],
        json!(["ana@example.com"])
    );

    let (status, _, body) = http("GET", &link, &[], "").await;
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = http("GET", &link, &[], "").await;
    assert_eq!(status, 404, "a link confirms once");
    sns.publish()
        .topic_arn(&topic)
        .subject("after")
        .message("delivered")
        .send()
        .await
        .unwrap();
    let box3 = mail(&env).await;
    assert_eq!(box3[2]["subject"], "after");
    assert_eq!(box3[2]["recipients"], json!(["ana@example.com"]));
    let listed = sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    assert!(listed.subscriptions()[0]
        .subscription_arn()
        .unwrap()
        .starts_with("arn:aws:sns:"));
}
