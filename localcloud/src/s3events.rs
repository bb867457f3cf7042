//! S3 → EventBridge: after a successful PutObject, CopyObject or CompleteMultipartUpload has
//! passed through the front door to moto, emit one "Object Created" event with the shape S3
//! sends (bucket, key, size, etag, sequencer, version-id, reason) — but only for buckets whose
//! notification configuration turns EventBridge on, as on AWS. Nothing polls: the event is
//! a consequence of the write that the front door just saw.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hyper::Method;
use serde_json::json;

use crate::cloud::Cloud;
use crate::httpx::{Buffered, Req};

/// Which buckets send events to EventBridge. moto stores a bucket's EventBridge setting but
/// does not return it from GetBucketNotificationConfiguration, so the setting is taken from
/// the PutBucketNotificationConfiguration calls the front door forwards, and kept on disk so
/// it survives a restart.
#[derive(Debug, Default)]
pub struct S3Events {
    enabled: Mutex<HashMap<String, bool>>,
    path: Option<std::path::PathBuf>,
    sequencer: AtomicU64,
}

impl S3Events {
    pub fn load(path: std::path::PathBuf) -> Result<S3Events, crate::Error> {
        let enabled = crate::files::load_json(&path, "which buckets send EventBridge events")?;
        Ok(S3Events {
            enabled: Mutex::new(enabled),
            path: Some(path),
            sequencer: AtomicU64::new(0),
        })
    }

    fn set(&self, bucket: &str, on: bool) {
        let Ok(mut m) = self.enabled.lock() else {
            return;
        };
        m.insert(bucket.to_string(), on);
        if let (Some(p), Ok(text)) = (&self.path, serde_json::to_string(&*m)) {
            if let Err(e) = crate::files::write_atomically(p, text.as_bytes()) {
                tracing::error!(path = %p.display(), error = %e, "cannot save the buckets' EventBridge settings");
            }
        }
    }

    fn enabled(&self, bucket: &str) -> bool {
        self.enabled
            .lock()
            .ok()
            .and_then(|m| m.get(bucket).copied())
            .unwrap_or(false)
    }
}

fn split(path: &str) -> Option<(String, String)> {
    let p = path.strip_prefix('/')?;
    let (bucket, key) = p.split_once('/')?;
    if key.is_empty() {
        return None;
    }
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .into_owned();
    Some((bucket.to_string(), key))
}

fn xml_tag<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

pub async fn after(cloud: &Arc<Cloud>, req: &Req, resp: &Buffered) {
    let query = req.query_pairs();
    let has = |k: &str| query.iter().any(|(q, _)| q == k);
    let path = req.path();
    if req.method == Method::PUT && has("notification") {
        if let Some(bucket) = path.trim_matches('/').split('/').next() {
            let on = String::from_utf8_lossy(&req.body).contains("<EventBridgeConfiguration");
            cloud.s3events.set(bucket, on);
        }
        return;
    }
    let Some((bucket, key)) = split(path) else {
        return;
    };
    let reason = match req.method {
        Method::PUT if has("partNumber") || has("tagging") || has("acl") || has("retention") => {
            return
        }
        Method::PUT if req.header("x-amz-copy-source").is_some() => "CopyObject",
        Method::PUT => "PutObject",
        Method::POST if has("uploadId") => "CompleteMultipartUpload",
        _ => return,
    };
    let body = String::from_utf8_lossy(&resp.body);
    // S3 can answer 200 with an error document for copies and multipart completions.
    if body.contains("<Error>") {
        return;
    }
    if !cloud.s3events.enabled(&bucket) {
        return;
    }
    let etag = resp
        .header("etag")
        .map(str::to_string)
        .or_else(|| xml_tag(&body, "ETag").map(str::to_string))
        .unwrap_or_default()
        .replace("&quot;", "")
        .trim_matches('"')
        .to_string();
    let size = if reason == "PutObject" {
        req.body.len() as u64
    } else {
        head_size(cloud, &bucket, &key).await.unwrap_or(0)
    };
    let seq = cloud.s3events.sequencer.fetch_add(1, Ordering::Relaxed)
        + (time::OffsetDateTime::now_utc().unix_timestamp() as u64) * 1_000_000;
    let mut object = json!({
        "key": key,
        "size": size,
        "etag": etag,
        "sequencer": format!("{seq:018X}"),
    });
    if let Some(v) = resp.header("x-amz-version-id") {
        object["version-id"] = json!(v);
    }
    let detail = json!({
        "version": "0",
        "bucket": { "name": bucket },
        "object": object,
        "request-id": crate::httpx::new_id(),
        "requester": cloud.cfg.account,
        "source-ip-address": "127.0.0.1",
        "reason": reason,
    });
    crate::bus::emit(
        cloud,
        "aws.s3",
        "Object Created",
        vec![format!("arn:aws:s3:::{bucket}")],
        detail,
    )
    .await;
}

async fn head_size(cloud: &Cloud, bucket: &str, key: &str) -> Option<u64> {
    let r = cloud
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    r.content_length().map(|n| n as u64)
}
