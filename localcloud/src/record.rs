//! Persistence of the emulator's state. moto keeps everything in memory, so the front door
//! appends every *mutating* call it forwards (method, path, the headers that carry meaning,
//! body) to `recording.jsonl`, and a fresh moto is brought back by replaying them in order.
//! Reads are not recorded, so the file grows with changes, not with traffic. Ids moto makes
//! up (KMS keys, REST API ids) may differ after a replay; everything the pipeline addresses
//! by name (buckets, tables, topics, functions, stacks) comes back the same.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::httpx::{Client, Req};

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Mutex<Option<std::fs::File>>,
}

/// Calls that only read: never recorded. Cognito sign-ins and sign-outs only make sessions
/// and tokens, which a replay could not bring back anyway.
fn is_read(action: &str) -> bool {
    if matches!(action, "InitiateAuth" | "GlobalSignOut" | "RevokeToken") {
        return true;
    }
    const READ: [&str; 12] = [
        "Describe", "List", "Get", "Query", "Scan", "BatchGet", "Head", "Select", "Validate",
        "Estimate", "Lookup", "Search",
    ];
    READ.iter().any(|p| action.starts_with(p))
}

/// Whether a forwarded call changes state (and so must be replayed after a restart).
pub fn is_mutating(req: &Req) -> bool {
    use hyper::Method;
    if req.path().starts_with("/moto-api") {
        return false;
    }
    match req.method {
        Method::GET | Method::HEAD | Method::OPTIONS => false,
        Method::POST => match req.action() {
            Some(a) => !is_read(&a),
            // REST-style POSTs (S3 multipart, Lambda, API Gateway) change state, except the
            // S3 multi-object read `select`, which the pipeline never uses.
            None => true,
        },
        _ => true,
    }
}

impl Recorder {
    pub fn new(path: PathBuf) -> Recorder {
        Recorder {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn record(&self, req: &Req) {
        let keep = |k: &str| {
            k.starts_with("x-amz-")
                || k == "content-type"
                || k == "content-md5"
                || k == "authorization"
        };
        let entry = Entry {
            method: req.method.to_string(),
            uri: req.uri.clone(),
            headers: req
                .headers
                .iter()
                .filter(|(k, _)| keep(k.as_str()))
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect(),
            body: base64::engine::general_purpose::STANDARD.encode(&req.body),
        };
        let Ok(line) = serde_json::to_string(&entry) else {
            return;
        };
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            *guard = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .ok();
        }
        if let Some(f) = guard.as_mut() {
            if writeln!(f, "{line}").is_err() {
                tracing::warn!(path = %self.path.display(), "cannot append to the recording");
            }
        }
    }

    /// Replays the recording into moto at `moto_url`; returns how many calls were sent.
    /// Calls that fail now (an id that moto made up differently this time) are skipped.
    pub async fn replay(&self, http: &Client, moto_url: &str) -> usize {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return 0;
        };
        let mut sent = 0;
        let mut failed = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(e) = serde_json::from_str::<Entry>(line) else {
                continue;
            };
            let Ok(body) = base64::engine::general_purpose::STANDARD.decode(&e.body) else {
                continue;
            };
            let headers: Vec<(&str, &str)> = e
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let Ok(method) = e.method.parse::<hyper::Method>() else {
                continue;
            };
            match http
                .simple(moto_url, method, &e.uri, &headers, body.into())
                .await
            {
                Ok(r) if r.status.is_success() => {}
                _ => failed += 1,
            }
            sent += 1;
        }
        tracing::info!(
            sent,
            failed,
            "replayed the recorded calls into the emulator"
        );
        sent
    }
}
