//! Persistence of the emulator's state. moto keeps everything in memory, so the front door
//! appends every *mutating* call it forwards (method, path, the headers that carry meaning,
//! body) to `recording.jsonl`, and a fresh moto is brought back by replaying them in order.
//! Reads are not recorded, so the file grows with changes, not with traffic. Ids moto makes
//! up (KMS keys, REST API ids) may differ after a replay; everything the pipeline addresses
//! by name (buckets, tables, topics, functions, stacks) comes back the same.
//!
//! The recording is written ahead: a call is appended (with a sequence number) *before* it is
//! forwarded, and a call moto refused gets a `{"revoked": n}` line after it. A change that
//! cannot be recorded (a full or read-only disk) is refused before moto sees it, so nothing is
//! acknowledged that a restart would lose. A crash mid-append leaves a torn last line: the next
//! append starts on a fresh line and the replay skips what does not parse.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::httpx::{Client, Req};

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// Sequence number, so a later `revoked` line can name it (absent in old recordings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Revoked {
    revoked: u64,
}

#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    file: Mutex<Option<(std::fs::File, u64)>>,
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

/// Whether a call removes something (a DELETE, or an action named Delete…/Remove…/Stop…).
pub fn is_deletion(req: &Req) -> bool {
    req.method == hyper::Method::DELETE
        || req.action().is_some_and(|a| {
            [
                "Delete",
                "Remove",
                "Stop",
                "Unsubscribe",
                "Deregister",
                "Detach",
            ]
            .iter()
            .any(|p| a.starts_with(p))
        })
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

    /// Appends `req` before it is forwarded; answers its sequence number, or why it cannot be
    /// recorded (then it must not be forwarded).
    pub fn begin(&self, req: &Req) -> Result<u64, String> {
        let keep = |k: &str| {
            k.starts_with("x-amz-")
                || k == "content-type"
                || k == "content-md5"
                || k == "authorization"
        };
        let mut guard = self
            .file
            .lock()
            .map_err(|_| "the recorder is poisoned".to_string())?;
        let (file, next) = self.open(&mut guard)?;
        let entry = Entry {
            id: Some(*next),
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
        let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        let id = *next;
        if let Err(e) = append_line(file, &line) {
            // The file may now end in a torn line: reopen (and so repair) on the next call.
            *guard = None;
            return Err(format!(
                "cannot record the change in {}: {e}",
                self.path.display()
            ));
        }
        *next += 1;
        Ok(id)
    }

    /// Marks a recorded call that moto refused, so a replay skips it.
    pub fn revoke(&self, id: u64) {
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        let Ok((file, _)) = self.open(&mut guard) else {
            return;
        };
        let line = serde_json::to_string(&Revoked { revoked: id }).unwrap_or_default();
        if append_line(file, &line).is_err() {
            *guard = None;
            tracing::warn!(path = %self.path.display(), id, "cannot mark a refused call in the recording");
        }
    }

    /// The open recording and the next sequence number. Opening finds the highest number
    /// written so far and ends a torn last line.
    fn open<'a>(
        &self,
        guard: &'a mut Option<(std::fs::File, u64)>,
    ) -> Result<&'a mut (std::fs::File, u64), String> {
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let text = std::fs::read(&self.path).unwrap_or_default();
            let next = String::from_utf8_lossy(&text)
                .lines()
                .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
                .filter_map(|e| e.id)
                .max()
                .map_or(0, |m| m + 1);
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
            if text.last().is_some_and(|b| *b != b'\n') {
                f.write_all(b"\n")
                    .map_err(|e| format!("cannot repair {}: {e}", self.path.display()))?;
            }
            *guard = Some((f, next));
        }
        guard
            .as_mut()
            .ok_or_else(|| "the recording is not open".to_string())
    }

    /// Replays the recording into moto at `moto_url`; returns how many calls were sent.
    /// Calls that fail now (an id that moto made up differently this time) are skipped.
    pub async fn replay(&self, http: &Client, moto_url: &str) -> usize {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return 0;
        };
        let mut sent = 0;
        let mut failed = 0;
        let revoked: std::collections::HashSet<u64> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Revoked>(l).ok())
            .map(|r| r.revoked)
            .collect();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(e) = serde_json::from_str::<Entry>(line) else {
                continue;
            };
            if e.id.is_some_and(|id| revoked.contains(&id)) {
                continue;
            }
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

/// One line, written with a single `write` so concurrent readers never see half of it.
fn append_line(f: &mut std::fs::File, line: &str) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    f.write_all(&buf)
}
