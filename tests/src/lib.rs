//! The end-to-end harness: runs the real `deployer` binary against the local cloud and talks to
//! what it brings up the way a user would, over HTTP and S3.
//!
//! - [`Cloud`]: one fresh state directory (`DEPLOYER_STATE_DIR`), the deployer run from the
//!   repository root with small fixed training hyperparameters and a notification address, and a
//!   drop guard that runs `deployer down --yes` so a failing test leaves no processes behind;
//! - [`Http`] and [`Api`]: blocking JSON requests to the REST API (`{api_url}/...`), answering
//!   `(status, json)`;
//! - [`S3`]: a client for the local cloud's S3 endpoint (from `<state>/local/endpoints.json`),
//!   path-style, dummy credentials;
//! - [`Predictor`]: a background thread posting predictions as fast as it can;
//! - [`wait_until`] and [`step`]: polling with a deadline that reports the last observation, and
//!   a per-step timer printed to stderr;
//! - small helpers: synthetic data sets and images (from `waste-model`), UTC stamps in the
//!   `deployer dataset push` format, tar.gz rewriting, `/proc` checks.
//!
//! The deployer binary is not built here: `cargo build -p deployer` first.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Training settings small enough that 300 synthetic images train in a few seconds on 2 cores:
/// the smallest input `hparams.rs` accepts (64), a narrow network, 3 epochs, no augmentation,
/// and the CNN from labels alone (`arch=cnn`): these suites test the pipeline, and the
/// pretrained paths' training through the same binary is `model/tests/transfer.rs`'s.
/// Every value is a string, as SageMaker passes them.
pub const HYPERPARAMETERS: &str = r#"{"arch":"cnn","epochs":"3","image_size":"64","width":"8","batch_size":"32","patience":"3","warmup_epochs":"0","augment":"false","threads":"2"}"#;

/// The address subscribed at bring-up (`DEPLOYER_NOTIFICATION_EMAIL`), so the pipeline's emails
/// have an email subscription to be delivered to.
pub const NOTIFICATION_EMAIL: &str = "e2e@example.com";

/// Images per synthetic data set (80% train, 20% validation).
pub const DATASET_IMAGES: usize = 300;

/// The repository root: the parent of this crate (`tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives inside the repository")
        .to_path_buf()
}

/// `target/debug/deployer`, found from the running test binary (`target/debug/deps/<test>`),
/// or next to the running binary when that is one of this crate's own (`target/debug/<bin>`).
pub fn deployer_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps/");
    let name = format!("deployer{}", std::env::consts::EXE_SUFFIX);
    let mut bin = profile_dir.join(&name);
    if let Some(beside) = exe.parent().map(|d| d.join(&name)) {
        if !bin.is_file() && beside.is_file() {
            bin = beside;
        }
    }
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo build -p deployer` first",
        bin.display()
    );
    bin
}

// ------------------------------------------------------------------ timing and waiting

/// Runs one step of the scenario and prints `step <name>: <secs> s` to stderr.
pub fn step<T>(name: &str, f: impl FnOnce() -> T) -> T {
    eprintln!("--- step {name}");
    let started = Instant::now();
    let out = f();
    eprintln!("step {name}: {:.1} s", started.elapsed().as_secs_f64());
    out
}

/// Polls `probe` every `poll` until it answers `Ok`, or panics after `timeout` with what the
/// last probe observed (its `Err`). A probe may panic itself to fail fast (a state that can no
/// longer turn into the one awaited).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) => {
                if started.elapsed() >= timeout {
                    panic!(
                        "timed out after {:.0} s waiting until {what}; last observed: {last}",
                        timeout.as_secs_f64()
                    );
                }
                std::thread::sleep(poll);
            }
        }
    }
}

/// The `p`-th percentile (0..=100) of sorted durations, nearest rank below.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p.min(100) / 100]
}

// ------------------------------------------------------------------ the deployer

/// One finished deployer run.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub seconds: f64,
}

impl Run {
    /// `deployer a b c` as typed.
    pub fn command_line(&self) -> String {
        format!("deployer {}", self.args.join(" "))
    }

    /// Panics, with the run's stderr, unless the exit code is `code`.
    pub fn expect_code(&self, code: i32, meaning: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "`{}` exited {:?}, expected {code} ({meaning})\n--- stdout:\n{}\n--- stderr:\n{}",
            self.command_line(),
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`{}` printed no JSON on stdout ({e})\n--- stdout:\n{}\n--- stderr:\n{}",
                self.command_line(),
                self.stdout,
                self.stderr
            )
        })
    }
}

/// A local cloud on a fresh state directory. Dropping it runs `deployer down --yes` unless the
/// test already tore it down (see [`Cloud::torn_down`]).
#[derive(Debug)]
pub struct Cloud {
    /// Removed on drop when the test did not name its own directory.
    _temp: Option<tempfile::TempDir>,
    state: PathBuf,
    bin: PathBuf,
    root: PathBuf,
    torn_down: bool,
}

impl Default for Cloud {
    fn default() -> Self {
        Self::new()
    }
}

impl Cloud {
    pub fn new() -> Cloud {
        Cloud::with_deployer(deployer_bin())
    }

    /// As [`Cloud::new`], running the deployer binary at `bin`.
    pub fn with_deployer(bin: PathBuf) -> Cloud {
        let state = tempfile::Builder::new()
            .prefix("e2e-state-")
            .tempdir()
            .expect("a temporary state directory");
        eprintln!(
            "deployer: {}\nstate dir (DEPLOYER_STATE_DIR): {}",
            bin.display(),
            state.path().display()
        );
        Cloud {
            state: state.path().to_path_buf(),
            _temp: Some(state),
            bin,
            root: repo_root(),
            torn_down: false,
        }
    }

    /// As [`Cloud::new`], with `DEPLOYER_STATE_DIR` at `dir` (kept when the test ends), such as
    /// a small file system the test mounted.
    pub fn with_state_dir(dir: PathBuf) -> Cloud {
        eprintln!("state dir (DEPLOYER_STATE_DIR): {}", dir.display());
        Cloud {
            _temp: None,
            state: dir,
            bin: deployer_bin(),
            root: repo_root(),
            torn_down: false,
        }
    }

    /// `DEPLOYER_STATE_DIR`.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The local environment's own state: `$DEPLOYER_STATE_DIR/local/`.
    pub fn env_state_dir(&self) -> PathBuf {
        self.state.join("local")
    }

    /// The deployer with this cloud's environment, run from the repository root. Inherited
    /// `DEPLOYER_*` variables are dropped so the developer's shell cannot change the run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.root);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("DEPLOYER_") {
                c.env_remove(k);
            }
        }
        c.env("DEPLOYER_STATE_DIR", &self.state)
            .env("DEPLOYER_HYPERPARAMETERS", HYPERPARAMETERS)
            .env("DEPLOYER_NOTIFICATION_EMAIL", NOTIFICATION_EMAIL)
            .env("NO_COLOR", "1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .args(args);
        c
    }

    /// Runs the deployer to completion, capturing stdout and stderr.
    pub fn run(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = self.command(args).output().unwrap_or_else(|e| {
            panic!("cannot run {} {}: {e}", self.bin.display(), args.join(" "))
        });
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// Runs the deployer and asserts exit 0 (printing its stderr otherwise).
    pub fn run_ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        run.expect_code(0, "success");
        run
    }

    /// `deployer ARGS --output json`: asserts exit 0 and parses stdout.
    pub fn json_ok(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.run_ok(&all).json()
    }

    /// An S3 client for the running local cloud (re-read each call: a restart may move ports).
    pub fn s3(&self) -> S3 {
        S3::for_env_state(&self.env_state_dir())
    }

    /// The test tore the cloud down itself; the drop guard has nothing left to do.
    pub fn torn_down(&mut self) {
        self.torn_down = true;
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        eprintln!("cleanup: deployer down --yes (the test did not finish)");
        match self.command(&["down", "--yes"]).output() {
            Ok(out) if !out.status.success() => eprintln!(
                "cleanup: `deployer down --yes` exited {:?}:\n{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Ok(_) => {}
            Err(e) => eprintln!("cleanup: cannot run the deployer: {e}"),
        }
    }
}

// ------------------------------------------------------------------ JSON

/// A string field, or a panic naming what was expected and what came back.
pub fn str_field(v: &Value, key: &str, what: &str) -> String {
    match v.get(key).and_then(Value::as_str) {
        Some(s) => s.to_string(),
        None => panic!("{what}: expected a string field `{key}`, got {v}"),
    }
}

/// A number field, or a panic naming what was expected and what came back.
pub fn num_field(v: &Value, key: &str, what: &str) -> f64 {
    match v.get(key).and_then(Value::as_f64) {
        Some(n) => n,
        None => panic!("{what}: expected a number field `{key}`, got {v}"),
    }
}

/// A field's string value, `""` when absent.
pub fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Every `pid` number anywhere in a JSON document (nested objects and arrays included).
pub fn pids_in(v: &Value) -> Vec<u32> {
    fn walk(v: &Value, out: &mut Vec<u32>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "pid" {
                        if let Some(p) = x.as_u64().and_then(|p| u32::try_from(p).ok()) {
                            out.push(p);
                        }
                    } else {
                        walk(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

// ------------------------------------------------------------------ HTTP

/// A blocking HTTP client for the local API (plain HTTP on loopback).
#[derive(Debug, Clone)]
pub struct Http {
    agent: ureq::Agent,
    /// The signed-in user's ID token, sent as `Authorization` on every request; shared by
    /// clones, so every client of one test speaks as the same user.
    token: Arc<Mutex<Option<String>>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Result<(u16, Value), String> {
    let resp = match r {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let body = resp
        .into_string()
        .map_err(|e| format!("status {status} with an unreadable body: {e}"))?;
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok((status, json))
}

impl Http {
    pub fn new() -> Http {
        Http {
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build(),
            token: Arc::new(Mutex::new(None)),
        }
    }

    /// Speak as the user of this ID token from now on (all clones), or anonymously (`None`).
    pub fn set_token(&self, token: Option<String>) {
        if let Ok(mut t) = self.token.lock() {
            *t = token;
        }
    }

    pub fn token(&self) -> Option<String> {
        self.token.lock().ok().and_then(|t| t.clone())
    }

    /// A client of its own that sends `token` (or nothing), leaving this one as it is.
    pub fn as_user(&self, token: Option<String>) -> Http {
        let h = Http {
            agent: self.agent.clone(),
            token: Arc::new(Mutex::new(None)),
        };
        h.set_token(token);
        h
    }

    fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match self.token() {
            Some(t) => r.set("authorization", &t),
            None => r,
        }
    }

    pub fn try_get(&self, url: &str) -> Result<(u16, Value), String> {
        answer(self.request("GET", url).call())
    }

    pub fn try_post_json(&self, url: &str, body: &Value) -> Result<(u16, Value), String> {
        answer(
            self.request("POST", url)
                .set("content-type", "application/json")
                .send_string(&body.to_string()),
        )
    }

    pub fn try_post_bytes(
        &self,
        url: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<(u16, Value), String> {
        answer(
            self.request("POST", url)
                .set("content-type", content_type)
                .send_bytes(bytes),
        )
    }

    /// GET, answering (status, json); a connection failure panics.
    pub fn get(&self, url: &str) -> (u16, Value) {
        self.try_get(url)
            .unwrap_or_else(|e| panic!("GET {url} got no answer: {e}"))
    }

    pub fn post_json(&self, url: &str, body: &Value) -> (u16, Value) {
        self.try_post_json(url, body)
            .unwrap_or_else(|e| panic!("POST {url} got no answer: {e}"))
    }

    pub fn post_bytes(&self, url: &str, content_type: &str, bytes: &[u8]) -> (u16, Value) {
        self.try_post_bytes(url, content_type, bytes)
            .unwrap_or_else(|e| panic!("POST {url} ({content_type}) got no answer: {e}"))
    }
}

/// The REST API at `api_url` (`http://127.0.0.1:PORT/<stage>/api`), routes per
/// `functions/api/openapi.yaml` (`/health`, `/models`, `/endpoint`, `/predict`, ...).
#[derive(Debug, Clone)]
pub struct Api {
    pub http: Http,
    pub url: String,
}

impl Api {
    /// From `deployer up --output json`: its top-level `api_url`. When this `up` created the
    /// local first approver (`auth.first_user`, shown once), `http` and its clones sign in as
    /// that user; otherwise they keep the identity they had.
    pub fn from_up(up: &Value, http: Http) -> Api {
        let url = str_field(up, "api_url", "`deployer up --output json`");
        assert!(
            url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
            "`deployer up` api_url: expected a loopback http URL, got {url}"
        );
        if let Some(user) = up["auth"]["first_user"].as_object() {
            let (email, password) = (
                user["email"].as_str().unwrap_or_default(),
                user["password"].as_str().unwrap_or_default(),
            );
            let token = sign_in(up, email, password)
                .unwrap_or_else(|e| panic!("cannot sign in as the first approver {email}: {e}"));
            http.set_token(Some(token));
        }
        Api {
            http,
            url: url.trim_end_matches('/').to_string(),
        }
    }

    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.http.get(&self.at(path))
    }

    /// GET that must answer 200.
    pub fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(
            status,
            200,
            "GET {}: expected 200, got {status}: {body}",
            self.at(path)
        );
        body
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.http.post_json(&self.at(path), body)
    }

    /// `GET /models` → its `models` array.
    pub fn models(&self) -> Vec<Value> {
        let body = self.get_ok("/models");
        match body.get("models").and_then(Value::as_array) {
            Some(m) => m.clone(),
            None => panic!("GET /models: expected {{\"models\": [...]}}, got {body}"),
        }
    }

    /// `GET /models/{id}`.
    pub fn model(&self, id: &str) -> Value {
        self.get_ok(&format!("/models/{id}"))
    }

    /// `GET /endpoint`.
    pub fn endpoint(&self) -> Value {
        self.get_ok("/endpoint")
    }

    /// `POST /predict` with raw PNG bytes.
    pub fn predict_png(&self, png: &[u8]) -> (u16, Value) {
        self.http.post_bytes(&self.at("/predict"), "image/png", png)
    }
}

// ------------------------------------------------------------------ sign-in

/// One Cognito JSON call (`AWSCognitoIdentityProviderService.<op>`) to the local cloud's front
/// door, unsigned, as the web app makes it. Answers (status, body).
pub fn cognito_call(front_url: &str, op: &str, body: &Value) -> Result<(u16, Value), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    answer(
        agent
            .post(&format!("{}/", front_url.trim_end_matches('/')))
            .set("content-type", "application/x-amz-json-1.1")
            .set(
                "x-amz-target",
                &format!("AWSCognitoIdentityProviderService.{op}"),
            )
            .send_string(&body.to_string()),
    )
}

/// Signs in with email and password against the user pool of an `up` report (its `endpoint`
/// and `auth.client_id`); a user with a temporary password must choose `new_password`.
/// Answers the ID token.
pub fn sign_in_with(
    up: &Value,
    email: &str,
    password: &str,
    new_password: Option<&str>,
) -> Result<String, String> {
    let front = up["endpoint"]
        .as_str()
        .ok_or("the up report has no endpoint")?;
    let client = up["auth"]["client_id"]
        .as_str()
        .ok_or("the up report has no auth.client_id")?;
    let (status, out) = cognito_call(
        front,
        "InitiateAuth",
        &serde_json::json!({
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": client,
            "AuthParameters": { "USERNAME": email, "PASSWORD": password },
        }),
    )?;
    if status != 200 {
        return Err(format!("InitiateAuth answered {status}: {out}"));
    }
    let out = if out["ChallengeName"] == "NEW_PASSWORD_REQUIRED" {
        let new = new_password.ok_or("the user must choose a new password")?;
        let (status, out) = cognito_call(
            front,
            "RespondToAuthChallenge",
            &serde_json::json!({
                "ChallengeName": "NEW_PASSWORD_REQUIRED",
                "ClientId": client,
                "Session": out["Session"],
                "ChallengeResponses": {
                    // As the web app answers: the id Cognito names for SRP, else the email
                    // (not ChallengeParameters.USERNAME: in an email-username pool that is the
                    // user's uuid, and the emulator then puts it in the token's email claim).
                    "USERNAME": out["ChallengeParameters"]["USER_ID_FOR_SRP"].as_str().unwrap_or(email),
                    "NEW_PASSWORD": new,
                },
            }),
        )?;
        if status != 200 {
            return Err(format!("RespondToAuthChallenge answered {status}: {out}"));
        }
        out
    } else {
        out
    };
    out["AuthenticationResult"]["IdToken"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no ID token in {out}"))
}

/// [`sign_in_with`] for a user whose password is permanent.
pub fn sign_in(up: &Value, email: &str, password: &str) -> Result<String, String> {
    sign_in_with(up, email, password, None)
}

// ------------------------------------------------------------------ predictions under load

/// One prediction made by a [`Predictor`]: status 0 means no HTTP answer (`detail` says why).
#[derive(Debug, Clone)]
pub struct Sample {
    pub status: u16,
    pub model_id: Option<String>,
    pub elapsed: Duration,
    pub detail: String,
    /// When the answer (or the failure) came back.
    pub done: Instant,
}

/// A background thread posting one image to `/predict` back to back until stopped. Bounded on
/// its own (15 minutes, 200,000 requests) so a lost handle cannot load the machine forever.
#[derive(Debug)]
pub struct Predictor {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Predictor {
    pub fn start(api: &Api, png: &[u8]) -> Predictor {
        const MAX_REQUESTS: usize = 200_000;
        const MAX_TIME: Duration = Duration::from_secs(15 * 60);
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, http, url, png) = (
            stop.clone(),
            api.http.clone(),
            api.at("/predict"),
            png.to_vec(),
        );
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed)
                && samples.len() < MAX_REQUESTS
                && started.elapsed() < MAX_TIME
            {
                let t = Instant::now();
                let r = http.try_post_bytes(&url, "image/png", &png);
                let done = Instant::now();
                let elapsed = done - t;
                samples.push(match r {
                    Ok((status, body)) => Sample {
                        status,
                        model_id: body
                            .get("model_id")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                        elapsed,
                        detail: body.to_string(),
                        done,
                    },
                    Err(e) => Sample {
                        status: 0,
                        model_id: None,
                        elapsed,
                        detail: e,
                        done,
                    },
                });
            }
            samples
        });
        Predictor {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns every prediction it made, in order.
    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(samples)) => samples,
            Some(Err(_)) => panic!("the prediction thread panicked"),
            None => Vec::new(),
        }
    }
}

impl Drop for Predictor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Prints how many predictions were made and their p50/p99 latency.
pub fn report_latency(what: &str, samples: &[Sample]) {
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.elapsed).collect();
    lat.sort_unstable();
    eprintln!(
        "{what}: {} predictions, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(&lat, 50).as_secs_f64() * 1e3,
        percentile(&lat, 99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

// ------------------------------------------------------------------ S3

/// The S3 URL in a local `endpoints.json`: `services.s3`, else a top-level `s3` (the deployer's
/// flattened form), else `default`.
pub fn s3_endpoint(endpoints: &Value) -> Option<String> {
    endpoints
        .get("services")
        .and_then(|s| s.get("s3"))
        .and_then(Value::as_str)
        .or_else(|| endpoints.get("s3").and_then(Value::as_str))
        .or_else(|| endpoints.get("default").and_then(Value::as_str))
        .map(str::to_string)
}

/// Splits `s3://bucket/key`.
pub fn split_s3_uri(uri: &str) -> Option<(String, String)> {
    let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then(|| (bucket.to_string(), key.to_string()))
}

/// A blocking S3 client for the local cloud (its own small runtime).
#[derive(Debug)]
pub struct S3 {
    rt: tokio::runtime::Runtime,
    client: aws_sdk_s3::Client,
    pub endpoint: String,
}

impl S3 {
    /// From `<env state>/endpoints.json`, with dummy credentials, us-east-1, path-style.
    pub fn for_env_state(env_state: &Path) -> S3 {
        let path = env_state.join("endpoints.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}): is the local cloud up?",
                path.display()
            )
        });
        let endpoints: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
        let endpoint = s3_endpoint(&endpoints).unwrap_or_else(|| {
            panic!(
                "{}: expected {{\"default\": URL, \"services\": {{\"s3\": URL}}}}, got {text}",
                path.display()
            )
        });
        let rt = tokio::runtime::Runtime::new().expect("a tokio runtime for the S3 client");
        let creds = aws_credential_types::Credentials::new("testing", "testing", None, None, "e2e");
        let cfg = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(creds)
                .endpoint_url(&endpoint)
                .load(),
        );
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&cfg)
                .force_path_style(true)
                .build(),
        );
        S3 {
            rt,
            client,
            endpoint,
        }
    }

    /// Every key under `prefix`.
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.rt.block_on(async {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "S3 ListObjectsV2 s3://{bucket}/{prefix} at {}: {}",
                            self.endpoint,
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        )
                    });
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => return keys,
                }
            }
        })
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.rt.block_on(async {
            let obj = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "S3 GetObject s3://{bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )
                });
            obj.body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("reading s3://{bucket}/{key}: {e}"))
                .into_bytes()
                .to_vec()
        })
    }

    pub fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) {
        self.rt.block_on(async {
            self.client
                .put_object()
                .bucket(bucket)
                .key(key)
                .content_type(content_type)
                .body(aws_sdk_s3::primitives::ByteStream::from(body))
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "S3 PutObject s3://{bucket}/{key}: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&e)
                    )
                });
        });
    }
}

// ------------------------------------------------------------------ data

/// A synthetic data set of [`DATASET_IMAGES`] images (Kaggle `TRAIN/` + `TEST/` layout).
pub fn synthetic_dataset(seed: u64) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("e2e-data-{seed}-"))
        .tempdir()
        .expect("a temporary data set directory");
    waste_model::synth::write_dataset(dir.path(), DATASET_IMAGES, seed)
        .unwrap_or_else(|e| panic!("synth write_dataset(seed {seed}): {e}"));
    dir
}

/// One synthetic photo, PNG-encoded.
pub fn png(seed: u64, recyclable: bool) -> Vec<u8> {
    let mut rng = waste_model::rng::Rng::new(seed);
    let img = waste_model::synth::render(&mut rng, recyclable);
    waste_model::imageio::encode_png(&img).expect("a synthetic image encodes as PNG")
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn utc_parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, m, d, s / 3600, s / 60 % 60, s % 60)
}

/// `YYYYMMDDTHHMMSSZ`, the data set name `deployer dataset push` uses.
pub fn utc_stamp(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss) = utc_parts(t);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

/// RFC 3339 UTC, whole seconds.
pub fn rfc3339(t: SystemTime) -> String {
    let (y, m, d, hh, mm, ss) = utc_parts(t);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// A gzip tarball with every file named `name` (at any depth) replaced by `contents`, or
/// `name` added at the top when there was none; everything else is kept as it was.
pub fn replace_in_tar_gz(archive: &[u8], name: &str, contents: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut input = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut out = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut replaced = false;
    for entry in input.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        // Extension headers describe the entry after them; the builder writes its own.
        if kind.is_pax_local_extensions() || kind.is_pax_global_extensions() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let mut header = entry.header().clone();
        let is_target =
            header.entry_type().is_file() && path.file_name().is_some_and(|n| n == name);
        let data = if is_target {
            replaced = true;
            contents.to_vec()
        } else {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            data
        };
        header.set_size(data.len() as u64);
        out.append_data(&mut header, &path, &data[..])?;
    }
    if !replaced {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(contents.len() as u64);
        out.append_data(&mut header, name, contents)?;
    }
    out.into_inner()?.finish()
}

/// The files (name → bytes) of a gzip tarball.
pub fn tar_gz_files(archive: &[u8]) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut input = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let mut files = Vec::new();
    for entry in input.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        files.push((path, data));
    }
    Ok(files)
}

// ------------------------------------------------------------------ processes

/// True while the process exists and is not a zombie (state `Z` in `/proc/<pid>/stat`).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A live process's command line, arguments joined by spaces.
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .replace('\0', " ")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// Live processes (other than this one) whose command line contains `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|&pid| pid != me && alive(pid))
        .map(|pid| (pid, cmdline(pid)))
        .filter(|(_, cmd)| cmd.contains(needle))
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_match_the_dataset_push_format() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        // 2024-02-29T23:59:58Z, a leap day.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_198);
        assert_eq!(utc_stamp(t), "20240229T235958Z");
        assert_eq!(rfc3339(t), "2024-02-29T23:59:58Z");
    }

    #[test]
    fn s3_endpoint_prefers_the_service_entry() {
        let nested = serde_json::json!({"default": "http://127.0.0.1:1", "services": {"s3": "http://127.0.0.1:2"}});
        let flat = serde_json::json!({"default": "http://127.0.0.1:1", "s3": "http://127.0.0.1:3"});
        let plain = serde_json::json!({"default": "http://127.0.0.1:1", "services": {}});
        assert_eq!(s3_endpoint(&nested).as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(s3_endpoint(&flat).as_deref(), Some("http://127.0.0.1:3"));
        assert_eq!(s3_endpoint(&plain).as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(
            split_s3_uri("s3://b/training-output/j/output/model.tar.gz"),
            Some(("b".into(), "training-output/j/output/model.tar.gz".into()))
        );
        assert_eq!(split_s3_uri("s3://b"), None);
    }

    #[test]
    fn a_file_in_a_tarball_is_replaced_and_the_rest_kept() {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        for (name, data) in [
            ("model.json", &b"{}"[..]),
            ("model.safetensors", b"weights"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, data).expect("append");
        }
        let archive = b.into_inner().expect("tar").finish().expect("gzip");
        let out = replace_in_tar_gz(&archive, "model.safetensors", b"garbage").expect("rewrite");
        let files = tar_gz_files(&out).expect("read back");
        assert_eq!(
            files,
            vec![
                ("model.json".to_string(), b"{}".to_vec()),
                ("model.safetensors".to_string(), b"garbage".to_vec())
            ]
        );
    }

    #[test]
    fn pids_are_found_at_any_depth() {
        let v = serde_json::json!({
            "emulator": {"pid": 10, "port": 1, "running": true},
            "localcloud": {"pid": 11, "running": true},
            "processes": [{"pid": 12, "kind": "lambda"}, {"pid": 10}]
        });
        assert_eq!(pids_in(&v), vec![10, 11, 12]);
    }
}

/// One of a topic's subscriptions as SNS lists it.
#[derive(Debug)]
pub struct Subscription {
    pub protocol: String,
    pub endpoint: String,
    pub arn: String,
}

/// SNS ListSubscriptionsByTopic (every page) through the front door.
pub fn subscriptions(front: &str, topic: &str) -> Vec<Subscription> {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime for the SNS client");
    rt.block_on(async {
        let creds = aws_credential_types::Credentials::new("testing", "testing", None, None, "e2e");
        let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(front)
            .load()
            .await;
        let sns = aws_sdk_sns::Client::new(&cfg);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = sns
                .list_subscriptions_by_topic()
                .topic_arn(topic)
                .set_next_token(token.take())
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "SNS ListSubscriptionsByTopic {topic} at {front}: {}",
                        aws_sdk_sns::error::DisplayErrorContext(&e)
                    )
                });
            out.extend(page.subscriptions().iter().map(|s| Subscription {
                protocol: s.protocol().unwrap_or_default().to_string(),
                endpoint: s.endpoint().unwrap_or_default().to_string(),
                arn: s.subscription_arn().unwrap_or_default().to_string(),
            }));
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return out,
            }
        }
    })
}
