//! Hostile input at the REST API (through the local gateway and its Cognito authorizer) and at
//! the model server (the serving endpoint's `waste-model serve`, straight to its port): broken,
//! truncated, huge, empty, mislabelled, polyglot and decompression-bomb images; malformed,
//! deep, huge and wrongly typed JSON; unknown, traversing and oversized ids; header floods;
//! forged, tampered and unsigned tokens and a read-only user on every mutating route. Each case
//! names the status and error code it must get; every answer must be the documented error
//! shape (`{"error": {"code", "message", "fix"}}` from the API, `{"error": "..."}` from the
//! model server); after all of them nothing has changed (models, endpoint, the serving
//! process, stored uploads) and everything still answers. Expired, wrong-audience and
//! wrong-pool tokens, minted with the emulator's own key, are in `auth.rs`.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use e2e::{text, wait_until, Api, Cloud, Http};
use serde_json::{json, Value};

/// One request and what it must get.
struct Case {
    what: String,
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    /// The API's `error.code` (empty for the model server, whose errors are one string).
    code: &'static str,
}

fn case(what: &str, method: &'static str, path: &str, status: u16, code: &'static str) -> Case {
    Case {
        what: what.to_string(),
        method,
        path: path.to_string(),
        headers: Vec::new(),
        body: Vec::new(),
        status,
        code,
    }
}

impl Case {
    fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Case {
        self.headers
            .push(("content-type".into(), content_type.to_string()));
        self.body = body.into();
        self
    }
    fn header(mut self, k: &str, v: &str) -> Case {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
}

/// Sends a case; answers (status, body as JSON, or the raw text as a JSON string).
fn send(base: &str, token: Option<&str>, c: &Case) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let mut r = agent.request(c.method, &format!("{base}{}", c.path));
    if let Some(t) = token {
        if !c.headers.iter().any(|(k, _)| k == "authorization") {
            r = r.set("authorization", t);
        }
    }
    for (k, v) in &c.headers {
        r = r.set(k, v);
    }
    let resp = match r.send_bytes(&c.body) {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("{}: no answer: {e}", c.what),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

// ------------------------------------------------------------------ images

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// A real grey PNG of `w` x `h` zero pixels: a few kilobytes that decode to w*h bytes.
fn grey_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; w as usize + 1];
    for _ in 0..h {
        z.write_all(&row).expect("zlib in memory");
    }
    png_chunk(&mut out, b"IDAT", &z.finish().expect("zlib in memory"));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A valid PNG whose header claims `w` x `h` (the pixel data is the original's).
fn png_claiming(png: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = png.to_vec();
    out[16..20].copy_from_slice(&w.to_be_bytes());
    out[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

fn a_jpeg() -> Vec<u8> {
    let dir = e2e::synthetic_dataset(5);
    fn find(d: &std::path::Path) -> Option<std::path::PathBuf> {
        for e in std::fs::read_dir(d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(f) = find(&p) {
                    return Some(f);
                }
            } else if p.extension().is_some_and(|x| x == "jpg") {
                return Some(p);
            }
        }
        None
    }
    std::fs::read(find(dir.path()).expect("the synthetic set has JPEGs")).expect("readable")
}

/// Every image case, for a target whose predict path is `path` (the API's `/predict` or the
/// model server's `/invocations`); `api` picks the API's statuses and codes.
fn image_cases(path: &str, api: bool) -> Vec<Case> {
    let jpeg = a_jpeg();
    let png = e2e::png(9, false);
    let code = |api_code: &'static str| if api { api_code } else { "" };
    let mut corrupt = jpeg[..4].to_vec();
    corrupt.extend(std::iter::repeat_n(0x5a, 2000));
    let mut polyglot = jpeg[..20].to_vec();
    polyglot.extend_from_slice(b"<html><script>alert(1)</script></html>");
    let mut png_zip = b"\x89PNG\r\n\x1a\n".to_vec();
    png_zip.extend_from_slice(b"PK\x03\x04 a zip file after a PNG signature");
    let mut over_4mb = jpeg.clone();
    over_4mb.resize(4 * 1024 * 1024 + 1024, 0);
    let (bomb_status, unsupported) = (400, 415);
    let mut cases = vec![
        case("corrupt JPEG (a JPEG signature, then noise)", "POST", path, 400, code("model_rejected_input"))
            .body("image/jpeg", corrupt),
        case("truncated JPEG (first half)", "POST", path, 400, code("model_rejected_input"))
            .body("image/jpeg", jpeg[..jpeg.len() / 2].to_vec()),
        case("truncated PNG (first 100 bytes)", "POST", path, 400, code("model_rejected_input"))
            .body("image/png", png[..100].to_vec()),
        case("PNG header claiming 100000 x 100000 px", "POST", path, bomb_status, code("model_rejected_input"))
            .body("image/png", png_claiming(&png, 100_000, 100_000)),
        case("PNG header claiming 12001 x 10 px (one side too long)", "POST", path, bomb_status, code("model_rejected_input"))
            .body("image/png", png_claiming(&png, 12_001, 10)),
        case("decompression bomb: a real 8000 x 8000 PNG (64 Mpx) of a few KB", "POST", path, bomb_status, code("model_rejected_input"))
            .body("image/png", grey_png(8000, 8000)),
        case("polyglot: JPEG signature with an HTML payload", "POST", path, 400, code("model_rejected_input"))
            .body("image/jpeg", polyglot),
        case("polyglot: PNG signature, then a ZIP", "POST", path, 400, code("model_rejected_input"))
            .body("image/png", png_zip),
        case("over 4 MB", "POST", path, 413, code("payload_too_large"))
            .body("image/jpeg", over_4mb),
        case("zero bytes", "POST", path, if api { unsupported } else { 415 }, code("unsupported_media_type"))
            .body("image/jpeg", Vec::new()),
        case("a JPEG sent as text/plain", "POST", path, unsupported, code("unsupported_media_type"))
            .body("text/plain", jpeg.clone()),
        case("no Content-Type", "POST", path, unsupported, code("unsupported_media_type")),
        case("a GIF", "POST", path, unsupported, code("unsupported_media_type"))
            .body("image/jpeg", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec()),
        case("a BMP", "POST", path, unsupported, code("unsupported_media_type"))
            .body("image/jpeg", b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00".to_vec()),
        case("an SVG with a script", "POST", path, unsupported, code("unsupported_media_type"))
            .body("image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec()),
        case("a PDF labelled image/png", "POST", path, unsupported, code("unsupported_media_type"))
            .body("image/png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec()),
    ];
    if api {
        let b64 = base64::engine::general_purpose::STANDARD;
        cases.extend([
            case(
                "JSON image_base64 that is not base64",
                "POST",
                path,
                400,
                "bad_request",
            )
            .body(
                "application/json",
                json!({"image_base64": "***not base64***"}).to_string(),
            ),
            case(
                "JSON without image_base64",
                "POST",
                path,
                400,
                "bad_request",
            )
            .body("application/json", json!({"image": "x"}).to_string()),
            case(
                "JSON image_base64 of a number",
                "POST",
                path,
                400,
                "bad_request",
            )
            .body("application/json", json!({"image_base64": 42}).to_string()),
            case(
                "JSON image_base64 of 5 MB",
                "POST",
                path,
                413,
                "payload_too_large",
            )
            .body(
                "application/json",
                json!({"image_base64": b64.encode(vec![0u8; 5 * 1024 * 1024])}).to_string(),
            ),
            case(
                "over 10 MB (API Gateway's payload limit)",
                "POST",
                path,
                413,
                "payload_too_large",
            )
            .body("image/jpeg", vec![0xffu8; 10 * 1024 * 1024 + 1]),
        ]);
    }
    cases
}

/// The API's JSON, id and header cases, as an approver.
fn api_cases() -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let long_id = "m".repeat(5000);
    vec![
        case(
            "malformed JSON",
            "POST",
            "/models/any/accept",
            400,
            "bad_request",
        )
        .body("application/json", "{\"reason\": "),
        case(
            "JSON nested 20000 deep (40 KB)",
            "POST",
            "/models/any/reject",
            400,
            "bad_request",
        )
        .body("application/json", deep),
        case(
            "JSON that is an array, not an object",
            "POST",
            "/models/any/reject",
            400,
            "bad_request",
        )
        .body("application/json", "[1,2,3]"),
        case(
            "JSON with a non-string reason",
            "POST",
            "/models/any/reject",
            400,
            "bad_request",
        )
        .body(
            "application/json",
            json!({"reason": {"$gt": ""}}).to_string(),
        ),
        case(
            "a 6 MB JSON reason",
            "POST",
            "/models/any/reject",
            413,
            "payload_too_large",
        )
        .body(
            "application/json",
            json!({"reason": "r".repeat(6 * 1024 * 1024)}).to_string(),
        ),
        case(
            "accept an unknown model",
            "POST",
            "/models/wastesort-local-19990101t000000z-00000000/accept",
            404,
            "not_found",
        )
        .body("application/json", json!({"reason": "x"}).to_string()),
        case(
            "roll back to an unknown model",
            "POST",
            "/models/nope/rollback",
            404,
            "not_found",
        )
        .body("application/json", json!({"reason": "x"}).to_string()),
        case(
            "a model id traversing up (..%2F..%2Fetc%2Fpasswd)",
            "GET",
            "/models/..%2F..%2Fetc%2Fpasswd",
            404,
            "not_found",
        ),
        case(
            "a model id with a NUL byte",
            "GET",
            "/models/abc%00def",
            404,
            "not_found",
        ),
        case(
            "a 5000-character model id",
            "GET",
            &format!("/models/{long_id}"),
            404,
            "not_found",
        ),
        case(
            "a training job id traversing up",
            "GET",
            "/training/..%2F..%2Fmodels",
            404,
            "not_found",
        ),
        case(
            "an email with a header injection",
            "POST",
            "/subscriptions",
            400,
            "bad_request",
        )
        .body(
            "application/json",
            json!({"email": "a@example.com\r\nBcc: all@example.com"}).to_string(),
        ),
        case(
            "a 300-character email",
            "POST",
            "/subscriptions",
            400,
            "bad_request",
        )
        .body(
            "application/json",
            json!({"email": format!("{}@example.com", "a".repeat(290))}).to_string(),
        ),
        case(
            "an email that is a number",
            "POST",
            "/subscriptions",
            400,
            "bad_request",
        )
        .body("application/json", json!({"email": 7}).to_string()),
        case(
            "an unknown route",
            "GET",
            "/no-such-route",
            404,
            "not_found",
        ),
        case(
            "a route traversing up, encoded (%2e%2e%2f)",
            "GET",
            "/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            404,
            "not_found",
        ),
        case(
            "a method the route does not have",
            "DELETE",
            "/models",
            405,
            "method_not_allowed",
        ),
        case(
            "a 12 KB header (API Gateway's limit is 10,240 bytes)",
            "GET",
            "/models",
            431,
            "gateway_refused",
        )
        .header("x-padding", &"p".repeat(12 * 1024)),
        case("a garbage token", "GET", "/models", 401, "unauthorized")
            .header("authorization", "not-a-jwt"),
        case("an empty token", "GET", "/models", 401, "unauthorized").header("authorization", ""),
    ]
}

/// Token cases derived from a real ID token: tampered signature, tampered claims (a read-only
/// user claiming the approvers group), `alg: none`, a `Bearer ` prefix.
fn token_cases(token: &str) -> Vec<Case> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "an ID token is header.payload.signature");
    let mut sig = b64.decode(parts[2]).expect("the signature is base64url");
    sig[0] ^= 0x55;
    let tampered_sig = format!("{}.{}.{}", parts[0], parts[1], b64.encode(sig));
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("claims")).expect("JSON claims");
    claims["cognito:groups"] = json!(["approvers"]);
    claims["email"] = json!("mallory@example.com");
    let tampered_claims = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
        parts[1]
    );
    vec![
        case(
            "a token with a tampered signature",
            "GET",
            "/models",
            401,
            "unauthorized",
        )
        .header("authorization", &tampered_sig),
        case(
            "a token whose claims were changed (groups, email)",
            "POST",
            "/models/any/reject",
            401,
            "unauthorized",
        )
        .header("authorization", &tampered_claims)
        .body("application/json", "{}"),
        case(
            "an unsigned token (alg: none)",
            "GET",
            "/models",
            401,
            "unauthorized",
        )
        .header("authorization", &none),
        case(
            "the token with a `Bearer ` prefix",
            "GET",
            "/models",
            401,
            "unauthorized",
        )
        .header("authorization", &format!("Bearer {token}")),
    ]
}

/// Every mutating route, as a read-only user.
fn read_only_cases(model: &str) -> Vec<Case> {
    let j = |what: &str, path: &str| {
        case(what, "POST", path, 403, "forbidden")
            .body("application/json", json!({"reason": "x"}).to_string())
    };
    vec![
        j(
            "a read-only user accepts",
            &format!("/models/{model}/accept"),
        ),
        j(
            "a read-only user rejects",
            &format!("/models/{model}/reject"),
        ),
        j(
            "a read-only user rolls back",
            &format!("/models/{model}/rollback"),
        ),
        j("a read-only user starts training", "/training"),
        case(
            "a read-only user subscribes an email",
            "POST",
            "/subscriptions",
            403,
            "forbidden",
        )
        .body(
            "application/json",
            json!({"email": "ro@example.com"}).to_string(),
        ),
    ]
}

/// Checks one answer: the status, and the documented error shape with its code.
fn check(c: &Case, status: u16, body: &Value, api: bool) -> Result<(), String> {
    if status != c.status {
        return Err(format!("status {status}, expected {}: {body}", c.status));
    }
    if api {
        let e = &body["error"];
        let shaped = ["code", "message", "fix"]
            .iter()
            .all(|k| e[*k].as_str().is_some_and(|s| !s.is_empty()));
        if !shaped {
            return Err(format!(
                "not the error shape {{error: {{code, message, fix}}}}: {body}"
            ));
        }
        if !c.code.is_empty() && e["code"] != c.code {
            return Err(format!("code {}, expected {}", e["code"], c.code));
        }
    } else if body["error"].as_str().is_none_or(|s| s.is_empty()) {
        return Err(format!(
            "not the model server's error shape {{error: \"...\"}}: {body}"
        ));
    }
    Ok(())
}

fn run_all(base: &str, token: Option<&str>, cases: &[Case], api: bool, failures: &mut Vec<String>) {
    for c in cases {
        let (status, body) = send(base, token, c);
        let line = format!(
            "{} {} — {}",
            c.method,
            c.path.chars().take(60).collect::<String>(),
            c.what
        );
        match check(c, status, &body, api) {
            Ok(()) => eprintln!("hostile ok   {status} {line}"),
            Err(e) => {
                eprintln!("hostile FAIL {line}: {e}");
                failures.push(format!("{line}: {e}"));
            }
        }
    }
}

#[test]
fn hostile_input_is_refused_with_its_documented_error_and_changes_nothing() {
    let mut cloud = Cloud::new();
    let http = Http::new();
    let up = cloud.json_ok(&["up"]);
    let api = Api::from_up(&up, http.clone());
    let token = http.token().expect("signed in as the first approver");

    // A model serving, so image cases reach it.
    let pushed = cloud.json_ok(&["dataset", "push", "--synth", "300", "--seed", "61"]);
    let ds = text(&pushed, "prefix").to_string();
    let model = wait_until(
        "the model is staged",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || {
            api.models()
                .into_iter()
                .find(|m| {
                    text(m, "dataset").trim_end_matches('/') == ds && text(m, "status") == "staged"
                })
                .ok_or_else(|| "not yet".to_string())
        },
    );
    let id = text(&model, "id").to_string();
    let (s, b) = api.post(
        &format!("/models/{id}/accept"),
        &json!({"reason": "hostile"}),
    );
    assert_eq!(s, 202, "{b}");
    let server = wait_until(
        "the endpoint serves the model",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || {
            let st = cloud.json_ok(&["local", "status"]);
            st["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| {
                    text(e, "status") == "InService"
                        && e["port"].as_u64().is_some()
                        && text(e, "model_id") == id
                })
                .cloned()
                .ok_or_else(|| st.to_string())
        },
    );
    let server_pid = server["pid"].as_u64().expect("the server's pid");
    let server_url = format!("http://127.0.0.1:{}", server["port"]);

    // A read-only user.
    let added = cloud.json_ok(&["users", "add", "reader@example.com"]);
    let temporary = text(&added, "temporary_password").to_string();
    let reader = e2e::sign_in_with(
        &up,
        "reader@example.com",
        &temporary,
        Some("Reader-password-1!"),
    )
    .expect("the read-only user signs in");

    let before = (api.models(), api.endpoint());
    let bucket = cloud.json_ok(&["status"])["stacks"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|s| s["outputs"]["DataBucketName"].as_str().map(str::to_string))
        .expect("the data bucket");
    let uploads_before = cloud.s3().list(&bucket, "uploads/").len();

    let mut failures = Vec::new();
    let image_api = image_cases("/predict", true);
    let image_server = image_cases("/invocations", false);
    let json_cases = api_cases();
    let tokens = token_cases(&token);
    let readers = read_only_cases(&id);
    run_all(&api.url, Some(&token), &image_api, true, &mut failures);
    run_all(&server_url, None, &image_server, false, &mut failures);
    run_all(&api.url, Some(&token), &json_cases, true, &mut failures);
    run_all(&api.url, None, &tokens, true, &mut failures);
    run_all(&api.url, Some(&reader), &readers, true, &mut failures);
    let total =
        image_api.len() + image_server.len() + json_cases.len() + tokens.len() + readers.len();
    eprintln!(
        "chaos figure: hostile input (API and model server) | tried {total} | recovered {} | lost 0 | cargo test -p e2e --test hostile",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} hostile cases got the wrong answer:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing changed, nothing crashed.
    let after = (api.models(), api.endpoint());
    assert_eq!(after.0, before.0, "the models changed");
    assert_eq!(text(&after.1, "serving_model_id"), id, "{}", after.1);
    assert!(
        e2e::alive(u32::try_from(server_pid).unwrap_or(0)),
        "the model server died"
    );
    assert_eq!(
        cloud.s3().list(&bucket, "uploads/").len(),
        uploads_before,
        "a refused image was stored"
    );
    let (status, body) = api.predict_png(&e2e::png(1, true));
    assert_eq!(status, 200, "a good prediction still works: {body}");
    cloud.run_ok(&["down", "--yes"]);
    cloud.torn_down();
}
