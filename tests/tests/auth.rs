//! Sign-in and permissions on the local cloud (issue 8), as users meet them: `up` creates the
//! user pool and a first approver (password shown once), who signs in; the web app's files, its
//! `config.json` and `GET /api/health` are public, while every other route of
//! `functions/api/openapi.yaml` answers 401 `unauthorized` without a token and changes nothing;
//! a read-only user from `deployer users add` must choose a new password at first sign-in, may
//! read (and predict), and gets 403 `forbidden` on every route that changes the pipeline, again
//! changing nothing; `users list` tells approver from read-only; forged and misused tokens
//! (a tampered payload, expired, another issuer, another audience, an access token) are refused
//! with 401; an approver's changes reach the handlers, and a decision records the signed-in
//! approver, not the `by` its body claims; `users remove` removes; `down`.
//!
//! Tokens with bad claims (expired, another issuer, another audience) are minted by
//! `tests/tools/mint_token.py` with the emulator's own signing key (moto's, loaded as moto loads
//! it), because Cognito would never issue them; a control token minted the same way from a real
//! token's claims is accepted, so each 401 proves a claim check and not a broken minting script.
//!
//! Needs `cargo build -p deployer` first and the project's `.venv` (`./dev setup`, for moto).
//! Each step prints `step <name>: <secs> s` to stderr; run with `--nocapture` to see them.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::{
    cognito_call, repo_root, sign_in, sign_in_with, step, str_field, text, wait_until, Api, Cloud,
    Http,
};
use serde_json::{json, Value};

/// The read-only user this test adds.
const RITA: &str = "rita@example.com";
/// What Rita chooses at first sign-in: the pool wants 12+ characters, upper, lower and digit.
const RITA_PASSWORD: &str = "Rita-chose-Th1s-one";
/// The actor a request body claims; no decision may record it.
const MALLORY: &str = "mallory";

// ------------------------------------------------------------------ base64url and tokens

fn b64url_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(s: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| e.to_string())
}

/// A JWT's claims (its payload segment, decoded).
fn claims_of(token: &str) -> Value {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a JWT (no payload segment): {token}"));
    let bytes = b64url_decode(payload).unwrap_or_else(|e| panic!("a JWT payload: {e}"));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("a JWT payload that is not JSON ({e}): {payload}"))
}

/// `token` with its payload replaced by `claims`, header and signature kept: a forgery.
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(claims.to_string().as_bytes()),
        parts[2]
    )
}

/// `claims` with the fields of `over` set.
fn with(claims: &Value, over: Value) -> Value {
    let mut c = claims.clone();
    if let (Some(c), Some(o)) = (c.as_object_mut(), over.as_object()) {
        for (k, v) in o {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The project's Python (moto is installed there).
fn venv_python() -> PathBuf {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `./dev setup` (it installs moto, whose signing key mints the test's \
         tokens, into .venv)",
        python.display()
    );
    python
}

/// A token with `claims`, signed by the emulator's own Cognito key (`tests/tools/mint_token.py`).
fn mint(claims: &Value) -> String {
    let script = repo_root().join("tests/tools/mint_token.py");
    let mut child = Command::new(venv_python())
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(claims.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("cannot write the claims to {}: {e}", script.display()));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{} did not finish: {e}", script.display()));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && token.split('.').count() == 3,
        "{} exited {:?} without a token\n--- stdout:\n{token}\n--- stderr:\n{}",
        script.display(),
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    token
}

// ------------------------------------------------------------------ what a user can see

/// One route of `functions/api/openapi.yaml` with a body that would pass the handler's checks.
#[derive(Debug)]
struct Route {
    method: &'static str,
    path: String,
    body: Option<Value>,
}

impl Route {
    fn get(path: String) -> Route {
        Route {
            method: "GET",
            path,
            body: None,
        }
    }

    fn post(path: String, body: Value) -> Route {
        Route {
            method: "POST",
            path,
            body: Some(body),
        }
    }

    fn name(&self) -> String {
        format!("{} /api{}", self.method, self.path)
    }

    /// `METHOD /api/...` with the path's parameters as the OpenAPI document names them.
    fn operation(&self) -> String {
        let mut parts: Vec<&str> = self.path.trim_start_matches('/').split('/').collect();
        match parts.as_mut_slice() {
            ["models", id, ..] => *id = "{id}",
            ["training", job] => *job = "{job}",
            _ => {}
        }
        format!("{} /api/{}", self.method, parts.join("/"))
    }

    fn call(&self, api: &Api, png: &[u8]) -> (u16, Value) {
        match (self.method, &self.body) {
            ("GET", _) => api.get(&self.path),
            ("POST", _) if self.path == "/predict" => api.predict_png(png),
            (_, Some(body)) => api.post(&self.path, body),
            (_, None) => api.post(&self.path, &json!({})),
        }
    }
}

/// The routes that change the pipeline (approvers only), naming the staged model.
fn mutating_routes(model: &str, subscriber: &str) -> Vec<Route> {
    let decision = || json!({ "reason": "auth test", "by": MALLORY });
    vec![
        Route::post(format!("/models/{model}/accept"), decision()),
        Route::post(format!("/models/{model}/reject"), decision()),
        Route::post(format!("/models/{model}/rollback"), decision()),
        Route::post("/training".into(), json!({})),
        Route::post("/subscriptions".into(), json!({ "email": subscriber })),
    ]
}

/// Every route but health: the reads, predict, and the changes.
fn all_routes(model: &str, job: &str, subscriber: &str) -> Vec<Route> {
    let mut routes = vec![
        Route::get("/models".into()),
        Route::get(format!("/models/{model}")),
        Route::get("/training".into()),
        Route::get(format!("/training/{job}")),
        Route::get("/deployments".into()),
        Route::get("/endpoint".into()),
        Route::post("/predict".into(), Value::Null),
    ];
    routes.extend(mutating_routes(model, subscriber));
    routes
}

/// Every operation (`METHOD /api/...`) of `functions/api/openapi.yaml`, read off its `paths:`
/// section (two-space path keys, four-space method keys).
fn openapi_operations() -> BTreeSet<String> {
    let file = repo_root().join("functions/api/openapi.yaml");
    let doc = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let mut ops = BTreeSet::new();
    let mut path: Option<&str> = None;
    for line in doc
        .lines()
        .skip_while(|l| *l != "paths:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
    {
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = Some(p);
        } else if let (Some(p), Some(m)) = (
            path,
            line.strip_prefix("    ")
                .and_then(|m| m.strip_suffix(':'))
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(m)),
        ) {
            ops.insert(format!("{} /{p}", m.to_uppercase()));
        }
    }
    assert!(
        ops.contains("GET /api/health"),
        "{}: expected to find GET /api/health among its operations, found {ops:?}",
        file.display()
    );
    ops
}

/// Asserts `{"error": {"code": CODE, "message", "fix"}}`.
fn assert_error(what: &str, status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(
        status, want_status,
        "{what}: expected {want_status} {code}, got {status}: {body}"
    );
    let err = body.get("error").unwrap_or_else(|| {
        panic!("{what}: expected {{\"error\": {{code, message, fix}}}}, got {body}")
    });
    assert_eq!(
        text(err, "code"),
        code,
        "{what}: expected error code {code}, got {body}"
    );
    for k in ["message", "fix"] {
        assert!(
            !text(err, k).is_empty(),
            "{what}: the error's {k} is empty or missing: {body}"
        );
    }
}

/// A topic's subscriptions as SNS lists them (every page): (protocol, endpoint).
fn subscription_set(front: &str, topic: &str) -> BTreeSet<(String, String)> {
    e2e::subscriptions(front, topic)
        .into_iter()
        .map(|s| (s.protocol, s.endpoint))
        .collect()
}

/// What refused requests must leave as it was, read as the approver.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// (id, status, decisions) of every model.
    models: Vec<(String, String, Value)>,
    runs: Vec<Value>,
    deployments: Value,
    endpoint: String,
    subscriptions: BTreeSet<(String, String)>,
}

fn snapshot(api: &Api, front: &str, topic: &str) -> Snapshot {
    let models = api
        .models()
        .iter()
        .map(|m| {
            (
                text(m, "id").to_string(),
                text(m, "status").to_string(),
                m.get("decisions").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let runs = api.get_ok("/training");
    let runs = runs
        .get("runs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| panic!("GET /training: expected {{\"runs\": [...]}}, got {runs}"));
    Snapshot {
        models,
        runs,
        deployments: api.get_ok("/deployments"),
        endpoint: text(&api.endpoint(), "status").to_string(),
        subscriptions: subscription_set(front, topic),
    }
}

fn assert_unchanged(before: &Snapshot, after: &Snapshot, what: &str) {
    assert_eq!(
        before, after,
        "{what} changed the pipeline (left: before, right: after)"
    );
}

/// `deployer users list --output json` as email → approver.
fn users(cloud: &Cloud) -> Vec<(String, bool)> {
    let listed = cloud.json_ok(&["users", "list"]);
    let rows = listed.as_array().unwrap_or_else(|| {
        panic!("`deployer users list --output json`: expected an array, got {listed}")
    });
    rows.iter()
        .map(|u| {
            let approver = u
                .get("approver")
                .and_then(Value::as_bool)
                .unwrap_or_else(|| {
                    panic!(
                        "`deployer users list --output json`: expected a boolean approver in {u}"
                    )
                });
            (text(u, "email").to_string(), approver)
        })
        .collect()
}

#[test]
fn only_signed_in_users_reach_the_api_and_only_approvers_change_it() {
    let mut cloud = Cloud::new();
    let http = Http::new();
    let anonymous = http.as_user(None);
    let png = e2e::png(3, false);

    // 1. Bring-up: the first approver signs in; health, the app and its config are public.
    let (up, api, approver) = step("1 up, first approver signs in", || {
        let up = cloud.json_ok(&["up"]);
        let what = "`deployer up --output json` auth";
        let auth = up
            .get("auth")
            .unwrap_or_else(|| panic!("{what}: no auth in {up}"));
        let approver = str_field(&auth["first_user"], "email", &format!("{what}.first_user"));
        assert!(
            !str_field(
                &auth["first_user"],
                "password",
                &format!("{what}.first_user")
            )
            .is_empty(),
            "{what}: the first approver's password is empty"
        );
        for k in ["user_pool_id", "client_id"] {
            assert!(!str_field(auth, k, what).is_empty(), "{what}: {k} is empty");
        }
        let api = Api::from_up(&up, http.clone());
        assert!(
            api.http.token().is_some(),
            "the first approver {approver} should be signed in after `up`"
        );
        let health = Api {
            http: anonymous.clone(),
            url: api.url.clone(),
        }
        .get_ok("/health");
        assert_eq!(
            text(&health, "status"),
            "ok",
            "GET /api/health without a token: expected status ok, got {health}"
        );
        let web = str_field(&up, "web_url", "`deployer up --output json`");
        let (status, page) = anonymous.get(&web);
        assert!(
            status == 200
                && page
                    .as_str()
                    .is_some_and(|h| h.contains("<div id=\"app\">")),
            "GET {web} without a token: expected 200 and the app's index.html, got {status}"
        );
        let (status, config) = anonymous.get(&format!("{web}config.json"));
        assert_eq!(
            status, 200,
            "GET {web}config.json without a token: expected 200, got {status}: {config}"
        );
        for k in ["user_pool_id", "client_id"] {
            assert_eq!(
                text(&config["auth"], k),
                text(auth, k),
                "{web}config.json: expected auth.{k} to name the pool `up` reported, got {config}"
            );
        }
        eprintln!("api_url {}\nfirst approver {approver}", api.url);
        (up, api, approver)
    });
    let front = str_field(&up, "endpoint", "`deployer up --output json`");
    let topic = up
        .get("outputs")
        .map(|o| str_field(o, "TopicArn", "`deployer up --output json` outputs"))
        .unwrap_or_else(|| panic!("`deployer up --output json`: no outputs in {up}"));
    let anon_api = Api {
        http: anonymous.clone(),
        url: api.url.clone(),
    };

    // 2. A staged model, so the refused decisions below name a real one (and a POST /training
    //    that slipped through would find a data set and start a run).
    let (model, job) = step("2 push a small data set, staged", || {
        cloud.json_ok(&["dataset", "push", "--synth", "120", "--seed", "8"]);
        let m = wait_until(
            "the data set's model is staged",
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
                    .cloned()
                    .ok_or_else(|| format!("{models:?}"))
            },
        );
        let id = text(&m, "id").to_string();
        let job = text(&m, "training_job").to_string();
        assert!(!job.is_empty(), "staged model {id}: no training_job in {m}");
        eprintln!("staged {id} (job {job})");
        (id, job)
    });

    // 3. Without a token every route but health is refused, and nothing changes.
    step("3 every route without a token: 401", || {
        let before = snapshot(&api, &front, &topic);
        let routes = all_routes(&model, &job, "anonymous@example.com");
        let tested: BTreeSet<String> = routes.iter().map(Route::operation).collect();
        let mut documented = openapi_operations();
        documented.remove("GET /api/health");
        assert_eq!(
            tested, documented,
            "the routes tried without a token (left) should be every operation of \
             functions/api/openapi.yaml but health (right)"
        );
        for r in &routes {
            let (status, body) = r.call(&anon_api, &png);
            assert_error(
                &format!("{} without a token", r.name()),
                status,
                &body,
                401,
                "unauthorized",
            );
        }
        let after = snapshot(&api, &front, &topic);
        assert_unchanged(&before, &after, "anonymous requests");
        eprintln!("{} routes refused without a token", routes.len());
    });

    // 4. A read-only user: a new password at first sign-in, reads, but no changes.
    let rita = step("4 read-only user", || {
        let added = cloud.json_ok(&["users", "add", RITA]);
        let what = format!("`deployer users add {RITA} --output json`");
        let temporary = str_field(&added, "temporary_password", &what);
        assert_eq!(
            added.get("approver"),
            Some(&Value::Bool(false)),
            "{what}: expected approver false without --approver, got {added}"
        );
        let refused = sign_in(&up, RITA, &temporary);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("must choose a new password")),
            "signing in as {RITA} with the temporary password should require a new one, got {refused:?}"
        );
        let first = sign_in_with(&up, RITA, &temporary, Some(RITA_PASSWORD))
            .unwrap_or_else(|e| panic!("{RITA} cannot sign in and choose a new password: {e}"));
        assert_eq!(
            text(&claims_of(&first), "email"),
            RITA,
            "the token {RITA} got on choosing her password names another email"
        );
        let (status, body) = http.as_user(Some(first)).get(&api.at("/models"));
        assert_eq!(
            status, 200,
            "GET /api/models with the ID token {RITA} got on choosing her password: expected \
             200, got {status}: {body}"
        );
        // The password is hers now.
        let token = sign_in(&up, RITA, RITA_PASSWORD)
            .unwrap_or_else(|e| panic!("{RITA} cannot sign in with the password she chose: {e}"));
        let claims = claims_of(&token);
        assert_eq!(
            text(&claims, "email"),
            RITA,
            "{RITA}'s ID token names another email: {claims}"
        );
        let rita = Api {
            http: http.as_user(Some(token.clone())),
            url: api.url.clone(),
        };
        for r in all_routes(&model, &job, RITA)
            .iter()
            .filter(|r| r.method == "GET")
        {
            let (status, body) = r.call(&rita, &png);
            assert_eq!(
                status,
                200,
                "{} as read-only {RITA}: expected 200, got {status}: {body}",
                r.name()
            );
        }
        // Predicting is open to every signed-in user: no model serves yet, so the handler's 503.
        let (status, body) = rita.predict_png(&png);
        assert_eq!(
            status, 503,
            "POST /api/predict as read-only {RITA} with no model serving: expected the handler's \
             503, got {status}: {body}"
        );
        let before = snapshot(&api, &front, &topic);
        for r in mutating_routes(&model, RITA) {
            let (status, body) = r.call(&rita, &png);
            assert_error(
                &format!("{} as read-only {RITA}", r.name()),
                status,
                &body,
                403,
                "forbidden",
            );
        }
        let after = snapshot(&api, &front, &topic);
        assert_unchanged(&before, &after, "a read-only user's refused requests");
        let listed = users(&cloud);
        assert!(
            listed.contains(&(RITA.to_string(), false)),
            "`deployer users list`: expected {RITA} read-only, got {listed:?}"
        );
        assert!(
            listed.contains(&(approver.clone(), true)),
            "`deployer users list`: expected {approver} as approver, got {listed:?}"
        );
        token
    });

    // 5. Forged and misused tokens are refused; a correctly minted one is not.
    step("5 bad tokens: 401", || {
        let claims = claims_of(&rita);
        let as_token = |t: String| Api {
            http: http.as_user(Some(t)),
            url: api.url.clone(),
        };
        let control = mint(&with(&claims, json!({ "exp": now_s() + 600 })));
        let (status, body) = as_token(control).get("/models");
        assert_eq!(
            status, 200,
            "GET /api/models with a minted token carrying a real token's claims (the control: \
             tests/tools/mint_token.py signs with the emulator's key): expected 200, got \
             {status}: {body}"
        );
        // A real access token from the same sign-in flow (Cognito does issue these).
        let (status, signed_in) = cognito_call(
            &front,
            "InitiateAuth",
            &json!({
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": text(&up["auth"], "client_id"),
                "AuthParameters": { "USERNAME": RITA, "PASSWORD": RITA_PASSWORD },
            }),
        )
        .unwrap_or_else(|e| panic!("InitiateAuth as {RITA}: {e}"));
        assert_eq!(status, 200, "InitiateAuth as {RITA}: {signed_in}");
        let access = str_field(
            &signed_in["AuthenticationResult"],
            "AccessToken",
            "InitiateAuth's AuthenticationResult",
        );
        let pool = text(&up["auth"], "user_pool_id");
        let bad = [
            (
                "tampered (payload re-encoded as an approver named mallory, signature kept)",
                with_payload(
                    &rita,
                    &with(
                        &claims,
                        json!({ "email": "mallory@example.com", "cognito:groups": ["approvers"] }),
                    ),
                ),
            ),
            (
                "expired a minute ago",
                mint(&with(
                    &claims,
                    json!({ "iat": now_s() - 3660, "auth_time": now_s() - 3660, "exp": now_s() - 60 }),
                )),
            ),
            (
                "issued by another pool",
                mint(&with(
                    &claims,
                    json!({
                        "iss": format!("https://cognito-idp.us-east-1.amazonaws.com/{pool}x"),
                        "exp": now_s() + 600,
                    }),
                )),
            ),
            (
                "for another app client (aud)",
                mint(&with(
                    &claims,
                    json!({ "aud": "not-a-client-of-this-pool", "exp": now_s() + 600 }),
                )),
            ),
            ("an access token, not an ID token", access),
        ];
        assert_eq!(
            text(&claims_of(&bad[0].1), "email"),
            "mallory@example.com",
            "the tampered token should carry the forged payload"
        );
        for (what, token) in bad {
            let (status, body) = as_token(token).get("/models");
            assert_error(
                &format!("GET /api/models with a token {what}"),
                status,
                &body,
                401,
                "unauthorized",
            );
        }
    });

    // 6. An approver's changes reach the handlers; the decision records the signed-in approver.
    step("6 approver changes reach the handlers", || {
        let subscriber = "subscriber@example.com";
        let (status, body) = api.post("/subscriptions", &json!({ "email": subscriber }));
        assert!(
            (200..300).contains(&status),
            "POST /api/subscriptions as approver {approver}: expected 2xx, got {status}: {body}"
        );
        let subs = subscription_set(&front, &topic);
        assert!(
            subs.contains(&("email".to_string(), subscriber.to_string())),
            "SNS should list {subscriber} on {topic} after the approver subscribed it, got {subs:?}"
        );
        let (status, body) = api.post(
            "/models/does-not-exist/accept",
            &json!({ "reason": "x", "by": MALLORY }),
        );
        assert_error(
            &format!("POST /api/models/does-not-exist/accept as approver {approver}"),
            status,
            &body,
            404,
            "not_found",
        );
        let (status, body) = api.post(
            &format!("/models/{model}/accept"),
            &json!({ "reason": "auth test", "by": MALLORY }),
        );
        assert_eq!(
            status, 202,
            "POST /api/models/{model}/accept as approver {approver}: expected 202, got {status}: {body}"
        );
        let deployments = api.get_ok("/deployments");
        let events = deployments
            .get("deployments")
            .and_then(Value::as_array)
            .unwrap_or_else(|| {
                panic!(
                    "GET /api/deployments: expected {{\"deployments\": [...]}}, got {deployments}"
                )
            });
        assert!(
            events.iter().any(|e| text(e, "action") == "accept"
                && text(e, "model_id") == model
                && text(e, "by") == approver),
            "GET /api/deployments: expected the accept of {model} by the signed-in {approver} \
             (the body's by {MALLORY:?} ignored), got {events:?}"
        );
        assert!(
            !events.iter().any(|e| text(e, "by").contains(MALLORY)),
            "GET /api/deployments: a decision records the body's by {MALLORY:?}: {events:?}"
        );
        let m = api.model(&model);
        let decisions = m
            .get("decisions")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("GET /api/models/{model}: expected decisions, got {m}"));
        assert!(
            decisions
                .iter()
                .any(|d| text(d, "action") == "accept" && text(d, "by") == approver),
            "GET /api/models/{model}: expected an accept by {approver} in its decisions, got {decisions:?}"
        );
    });

    // 7. Removing a user.
    step("7 users remove", || {
        cloud.json_ok(&["users", "remove", RITA]);
        let listed = users(&cloud);
        assert!(
            !listed.iter().any(|(email, _)| email == RITA),
            "`deployer users list` after `users remove {RITA}`: expected her gone, got {listed:?}"
        );
        assert!(
            listed.contains(&(approver.clone(), true)),
            "`deployer users list` after removing {RITA}: expected {approver} still an approver, got {listed:?}"
        );
        let refused = sign_in(&up, RITA, RITA_PASSWORD);
        assert!(
            refused.is_err(),
            "{RITA} was removed but can still sign in: {refused:?}"
        );
    });

    // 8. Teardown.
    step("8 down", || {
        let down = cloud.run(&["down", "--yes", "--output", "json"]);
        cloud.torn_down();
        down.expect_code(
            0,
            "exit 1 means the audit found something billable left after down",
        );
    });
}
