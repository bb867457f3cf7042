//! The web app in a real browser against the local cloud (issue 6, "Tests"): bring the stack up
//! on a fresh state dir, push a synthetic data set and wait until its model is staged, then run
//! `frontend/e2e/browser.mjs` (Debian's Chromium driven by playwright-core, headless): load the
//! dashboard, start a second training run on the same data set and see it finish, see the metric
//! chart drawn, accept the staged model and see it deployed, predict an image, find the accept
//! in the history, subscribe an email address; axe-core on every page; no sideways scroll at
//! 360 px. Each step saves a screenshot under `target/tmp/web_app/` with `summary.json`.
//!
//! Then, from here: the address the browser subscribed is listed as `PendingConfirmation` by
//! SNS (ListSubscriptionsByTopic through the local cloud's front door), its confirmation mail
//! is in the outbox (`deployer local mail`), and the endpoint serves the model the browser
//! accepted. Teardown with `deployer down`.
//!
//! Needs `cargo build -p deployer` first, and `./dev setup` (the frontend's `node_modules`, with
//! playwright-core and @axe-core/playwright, and Debian's chromium). Run with `--nocapture` to
//! see the browser's steps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::{repo_root, step, str_field, subscriptions, text, wait_until, Api, Cloud, Http};
use serde_json::Value;

/// Debian's Chromium (`./dev setup` installs it); `CHROMIUM` in the environment overrides it.
const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from)
}

/// The browser script's own watchdog is 15 minutes; this one is a backstop.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(17 * 60);

/// Panics, naming `./dev setup`, unless node, the frontend's browser-test packages and
/// Chromium are there.
fn check_prerequisites(root: &Path, chromium: &Path) {
    let frontend = root.join("frontend");
    for package in ["playwright-core", "@axe-core/playwright"] {
        let manifest = frontend
            .join("node_modules")
            .join(package)
            .join("package.json");
        assert!(
            manifest.is_file(),
            "{} is missing: run `./dev setup` (it runs `npm ci` in frontend/, which installs \
             the browser test's playwright-core and @axe-core/playwright)",
            manifest.display()
        );
    }
    assert!(
        chromium.is_file(),
        "{} is missing: run `./dev setup` (it installs Debian's chromium package for the \
         browser test)",
        chromium.display()
    );
    let node = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node --version` failed ({node:?}): install Node.js 20 and npm, then run `./dev setup`"
    );
}

/// An empty `target/tmp/web_app/` for the screenshots, the summary and the sample image.
fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web_app");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot empty {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// `deployer local mail --output json`.
fn mail(cloud: &Cloud) -> Vec<Value> {
    let v = cloud.json_ok(&["local", "mail"]);
    match v.as_array() {
        Some(a) => a.clone(),
        None => panic!("`deployer local mail --output json`: expected an array, got {v}"),
    }
}

/// The local cloud's front door (`"default"` in `<state>/local/endpoints.json`): the one
/// endpoint every AWS client uses locally.
fn front_door(cloud: &Cloud) -> String {
    let path = cloud.env_state_dir().join("endpoints.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): is the local cloud up?",
            path.display()
        )
    });
    let endpoints: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
    str_field(&endpoints, "default", &path.display().to_string())
}

/// Runs the browser script to completion (output to files, so a full pipe cannot stall it),
/// killing it after [`BROWSER_TIMEOUT`]. Returns (exit code, stdout, stderr).
fn run_browser(root: &Path, env: &[(&str, String)], out: &Path) -> (Option<i32>, String, String) {
    let stdout_path = out.join("browser.stdout.log");
    let stderr_path = out.join("browser.stderr.log");
    let file = |p: &Path| {
        std::fs::File::create(p).unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()))
    };
    let mut c = Command::new("node");
    c.current_dir(root.join("frontend"))
        .arg("e2e/browser.mjs")
        .stdin(Stdio::null())
        .stdout(file(&stdout_path))
        .stderr(file(&stderr_path))
        // The page is on loopback: no proxy may stand in between.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for (k, v) in env {
        c.env(k, v);
    }
    eprintln!(
        "cd frontend && {} node e2e/browser.mjs",
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node e2e/browser.mjs: {e}"));
    let started = Instant::now();
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if started.elapsed() > BROWSER_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "the browser test ran over {} s and was killed",
                    BROWSER_TIMEOUT.as_secs()
                );
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => panic!("waiting for node e2e/browser.mjs: {e}"),
        }
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&stdout_path), read(&stderr_path))
}

#[test]
fn the_web_app_works_in_a_real_browser_against_the_local_cloud() {
    let root = repo_root();
    let chromium = chromium();
    check_prerequisites(&root, &chromium);
    let out = out_dir();
    let mut cloud = Cloud::new();
    let http = Http::new();

    // 1. Bring-up: the API, and the app at web_url.
    let (api, web_url, topic, reviewer, password) = step("up", || {
        let up = cloud.json_ok(&["up"]);
        // The first approver `up` creates (its password shown once): the browser signs in as it.
        let reviewer = str_field(
            &up["auth"]["first_user"],
            "email",
            "`deployer up` auth.first_user",
        );
        let password = str_field(
            &up["auth"]["first_user"],
            "password",
            "`deployer up` auth.first_user",
        );
        let api = Api::from_up(&up, http.clone());
        let web_url = str_field(&up, "web_url", "`deployer up --output json`");
        let topic = up
            .get("outputs")
            .map(|o| str_field(o, "TopicArn", "`deployer up --output json` outputs"))
            .unwrap_or_else(|| panic!("`deployer up --output json`: no outputs in {up}"));
        assert!(
            web_url.starts_with("http://127.0.0.1:") && web_url.ends_with('/'),
            "`deployer up` web_url: expected http://127.0.0.1:PORT/<stage>/ (ending in /, the \
             app resolves api/ and assets/ against it), got {web_url}"
        );
        let (status, body) = http.get(&web_url);
        let html = body.as_str().unwrap_or_default();
        assert!(
            status == 200 && html.contains("<div id=\"app\">"),
            "GET {web_url}: expected 200 and the app's index.html, got {status}: {}",
            body.to_string().chars().take(300).collect::<String>()
        );
        eprintln!("api_url {}\nweb_url {web_url}\ntopic {topic}", api.url);
        (api, web_url, topic, reviewer, password)
    });

    // 2. A data set trains and stages a model by itself; the browser then starts a second run
    //    on the same data set.
    let first = step("push, train, stage", || {
        cloud.json_ok(&["dataset", "push", "--synth", "200", "--seed", "11"]);
        wait_until(
            "a model is staged",
            Duration::from_secs(180),
            Duration::from_millis(500),
            || {
                let models = api.models();
                if let Some(m) = models.iter().find(|m| text(m, "status") == "failed") {
                    panic!("expected the data set's model to be staged, it failed: {m}");
                }
                models
                    .iter()
                    .find(|m| text(m, "status") == "staged")
                    .map(|m| text(m, "id").to_string())
                    .ok_or_else(|| format!("{models:?}"))
            },
        )
    });
    eprintln!("staged: {first}");

    // 3. The browser.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let email = format!("web-app-{}-{nanos}@example.com", std::process::id());
    let sample = out.join("sample.png");
    std::fs::write(&sample, e2e::png(11, true))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", sample.display()));
    let env = [
        ("WEB_URL", web_url.clone()),
        ("OUT_DIR", out.display().to_string()),
        ("CHROMIUM", chromium.display().to_string()),
        ("SAMPLE_IMAGE", sample.display().to_string()),
        ("EMAIL", email.clone()),
        ("E2E_EMAIL", reviewer.clone()),
        ("E2E_PASSWORD", password.clone()),
    ];
    let (code, stdout, stderr) = step("browser", || run_browser(&root, &env, &out));
    eprintln!("--- browser stdout:\n{stdout}\n--- browser stderr:\n{stderr}");
    let summary_path = out.join("summary.json");
    assert_eq!(
        code,
        Some(0),
        "the browser test exited {code:?}, expected 0 (its failures are listed at the end of its \
         stderr above and in {}; screenshots in {})",
        summary_path.display(),
        out.display()
    );
    let summary: Value = std::fs::read_to_string(&summary_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("{} is missing or not JSON", summary_path.display()));
    let accepted = str_field(&summary, "accepted_model_id", "the browser's summary.json");
    assert_ne!(
        accepted, first,
        "the browser should have accepted the model of the run it started, not the data set's own"
    );

    // 4. What the browser did, seen from the API.
    step("the accept, from the API", || {
        let ep = api.endpoint();
        assert!(
            text(&ep, "status") == "InService" && text(&ep, "serving_model_id") == accepted,
            "GET /endpoint: expected InService serving {accepted} (accepted in the browser), got {ep}"
        );
        let deployments = api.get_ok("/deployments");
        let events = deployments
            .get("deployments")
            .and_then(Value::as_array)
            .unwrap_or_else(|| {
                panic!("GET /deployments: expected {{\"deployments\": [...]}}, got {deployments}")
            });
        assert!(
            events.iter().any(|e| text(e, "action") == "accept"
                && text(e, "model_id") == accepted
                && text(e, "by") == reviewer),
            "GET /deployments: expected an accept of {accepted} by the signed-in {reviewer}, got {events:?}"
        );
    });

    // 5. The subscription is pending confirmation, and its confirmation mail is in the outbox.
    step("subscription pending, confirmation mail", || {
        let front = front_door(&cloud);
        let listed = wait_until(
            &format!("SNS lists {email} on the topic"),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let subs = subscriptions(&front, &topic);
                match subs.into_iter().find(|s| s.endpoint == email) {
                    Some(s) => Ok(s),
                    None => Err(format!("no subscription for {email} on {topic}")),
                }
            },
        );
        assert_eq!(
            (listed.protocol.as_str(), listed.arn.as_str()),
            ("email", "PendingConfirmation"),
            "SNS ListSubscriptionsByTopic: expected {email} as an email subscription pending \
             confirmation, got {listed:?}"
        );
        let confirmation = wait_until(
            &format!("the confirmation mail to {email} is in the outbox"),
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                let mails = mail(&cloud);
                mails
                    .iter()
                    .find(|m| {
                        text(m, "kind") == "subscription-confirmation"
                            && m.get("recipients") == Some(&serde_json::json!([email]))
                    })
                    .cloned()
                    .ok_or_else(|| {
                        let kinds: Vec<String> = mails
                            .iter()
                            .map(|m| format!("{} → {}", text(m, "subject"), m["recipients"]))
                            .collect();
                        format!("mail {kinds:?}")
                    })
            },
        );
        assert_eq!(
            text(&confirmation, "topic_arn"),
            topic,
            "the confirmation mail should be for the pipeline topic: {confirmation}"
        );
        let link = text(&confirmation, "confirm_url");
        assert!(
            link.starts_with("http://") && text(&confirmation, "body").contains(link),
            "the confirmation mail should carry its confirmation link in the body: {confirmation}"
        );
        eprintln!("pending: {email}; confirmation mail with {link}");
    });

    // 6. Teardown.
    let down = step("down", || {
        let down = cloud.run(&["down", "--yes", "--output", "json"]);
        cloud.torn_down();
        down
    });
    down.expect_code(
        0,
        "exit 1 means the audit found something billable left after down",
    );
    eprintln!("screenshots and summary.json: {}", out.display());
}
