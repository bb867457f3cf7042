//! SageMaker, run locally: the JSON API (training jobs, models, endpoint configs, endpoints,
//! tags) and sagemaker-runtime's InvokeEndpoint, on the front door. Training jobs run the
//! model binary's `train` in SageMaker's `/opt/ml` layout under the state directory, with
//! input downloaded from S3 and `model.tar.gz`/`output.tar.gz` uploaded to the job's output
//! path; endpoints run its `serve` on their own loopback port. UpdateEndpoint is blue/green:
//! the new server must answer `/ping` before traffic moves, the old one drains and stops,
//! and a new model that fails to start leaves the old one serving with FailureReason set,
//! as AWS does. State changes are emitted as EventBridge events with AWS's shapes, and the
//! control-plane records persist in `sagemaker.json`, so a restart brings endpoints back.
//!
//! Only the image `local://waste-model@sha256:<hash of the built binary>` runs; any other
//! image is refused with a ValidationException that says how to get the right one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cloud::Cloud;
use crate::httpx::{self, aws_json_error, full, Req, Resp};

/// Serverless endpoints take at most 4 MB per request.
const INVOKE_LIMIT: usize = 4 * 1024 * 1024;
/// Model download plus first successful ping, as on AWS.
const STARTUP_LIMIT: Duration = Duration::from_secs(180);
/// SIGTERM, then SIGKILL this much later (StopTrainingJob and MaxRuntimeInSeconds).
const STOP_GRACE: Duration = Duration::from_secs(120);
const MEMORY_SIZES: [i64; 6] = [1024, 2048, 3072, 4096, 5120, 6144];

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    training_jobs: BTreeMap<String, Value>,
    models: BTreeMap<String, Value>,
    configs: BTreeMap<String, Value>,
    endpoints: BTreeMap<String, Value>,
    tags: BTreeMap<String, Vec<Value>>,
    /// Training jobs whose latest state-change event is not known to have reached its
    /// targets, with the status it announced; delivered again by [`restore`].
    #[serde(default)]
    undelivered: BTreeMap<String, String>,
}

/// A running model server behind an endpoint.
#[derive(Debug)]
struct Backend {
    port: u16,
    pid: u32,
    config: String,
    model_id: Option<String>,
    inflight: AtomicUsize,
}

#[derive(Debug)]
pub struct SageMaker {
    path: PathBuf,
    store: Mutex<Store>,
    live: Mutex<HashMap<String, Arc<Backend>>>,
    jobs: Mutex<HashMap<String, u32>>,
    stopping: Mutex<HashSet<String>>,
    counter: AtomicU64,
    /// Set when the local cloud itself is stopping: a job its shutdown kills is left
    /// InProgress, so the next start fails it as "the local cloud stopped while this job ran"
    /// and announces that, instead of blaming the algorithm for the SIGTERM.
    pub shutting_down: std::sync::atomic::AtomicBool,
}

type ApiResult = Result<Value, (StatusCode, &'static str, String)>;

fn bad(msg: impl Into<String>) -> (StatusCode, &'static str, String) {
    (StatusCode::BAD_REQUEST, "ValidationException", msg.into())
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn check_name(kind: &str, n: &str) -> Result<(), (StatusCode, &'static str, String)> {
    if valid_name(n) {
        Ok(())
    } else {
        Err(bad(format!(
            "1 validation error detected: Value '{n}' at '{kind}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){{0,62}}"
        )))
    }
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

impl SageMaker {
    pub fn load(work: &Path) -> Result<SageMaker, crate::Error> {
        let path = work.join("sagemaker.json");
        let store = crate::files::load_json(
            &path,
            "the local SageMaker's training jobs, models, endpoint configs and endpoints",
        )?;
        Ok(SageMaker {
            path,
            store: Mutex::new(store),
            live: Mutex::new(HashMap::new()),
            jobs: Mutex::new(HashMap::new()),
            stopping: Mutex::new(HashSet::new()),
            counter: AtomicU64::new(0),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn save(&self) {
        let Ok(store) = self.store.lock() else { return };
        let Ok(text) = serde_json::to_string_pretty(&*store) else {
            return;
        };
        if let Err(e) = crate::files::write_atomically(&self.path, text.as_bytes()) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot save SageMaker's records");
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let out = {
            let mut g = match self.store.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            f(&mut g)
        };
        self.save();
        out
    }

    fn read<T>(&self, f: impl FnOnce(&Store) -> T) -> T {
        let g = match self.store.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&g)
    }

    /// Endpoints and the model each serves, for `deployer local status`.
    pub fn endpoint_summaries(&self) -> Vec<Value> {
        let live = self.live.lock().map(|l| l.clone()).unwrap_or_default();
        self.read(|s| {
            s.endpoints
                .values()
                .map(|e| {
                    let name = e["EndpointName"].as_str().unwrap_or_default();
                    let b = live.get(name);
                    json!({
                        "name": name,
                        "status": e["EndpointStatus"],
                        "config": e["EndpointConfigName"],
                        "failure_reason": e.get("FailureReason"),
                        "port": b.map(|b| b.port),
                        "pid": b.map(|b| b.pid),
                        "model_id": b.and_then(|b| b.model_id.clone()),
                    })
                })
                .collect()
        })
    }
}

fn tags_map(tags: &[Value]) -> Value {
    Value::Object(
        tags.iter()
            .filter_map(|t| Some((t["Key"].as_str()?.to_string(), t["Value"].clone())))
            .collect(),
    )
}

/// Event details carry times as epoch milliseconds and tags as a map.
fn event_detail(describe: &Value, tags: &[Value]) -> Value {
    let mut d = describe.clone();
    if let Some(o) = d.as_object_mut() {
        for (_, v) in o.iter_mut() {
            if let Some(f) = v.as_f64() {
                if f > 1.0e9 && f < 1.0e10 {
                    *v = json!((f * 1000.0) as i64);
                }
            }
        }
        o.insert("Tags".into(), tags_map(tags));
    }
    d
}

fn resolve_image(
    cloud: &Cloud,
    image: &str,
) -> Result<PathBuf, (StatusCode, &'static str, String)> {
    let (Some(bin), Some(sha)) = (&cloud.cfg.model_binary, &cloud.cfg.model_sha256) else {
        return Err(bad(format!(
            "image {image} cannot run: the local cloud was started without a model binary; run `deployer up`"
        )));
    };
    let expected = format!("local://waste-model@sha256:{sha}");
    if image == expected {
        Ok(bin.clone())
    } else {
        Err(bad(format!(
            "image {image} cannot run locally: the local cloud runs only {expected} (the model binary `deployer up` built); run `deployer up` so the stack names it"
        )))
    }
}

/// The JSON API (`X-Amz-Target: SageMaker.<Action>`).
pub async fn handle(cloud: &Arc<Cloud>, req: &Req) -> Resp {
    let action = req.action().unwrap_or_default();
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => {
                return aws_json_error(
                    StatusCode::BAD_REQUEST,
                    "SerializationException",
                    &format!("the request body is not JSON: {e}"),
                )
            }
        }
    };
    let sm = &cloud.sagemaker;
    let result: ApiResult = match action.as_str() {
        "CreateTrainingJob" => create_training_job(cloud, &body),
        "DescribeTrainingJob" => sm.read(|st| {
            let n = s(&body, "TrainingJobName");
            st.training_jobs
                .get(&n)
                .cloned()
                .ok_or_else(|| bad("Requested resource not found."))
        }),
        "ListTrainingJobs" => Ok(list(
            sm,
            &body,
            |st| st.training_jobs.values().cloned().collect(),
            "TrainingJobSummaries",
            &["TrainingJobName", "TrainingJobArn", "CreationTime", "TrainingEndTime", "LastModifiedTime", "TrainingJobStatus"],
            "TrainingJobName",
            "TrainingJobStatus",
        )),
        "StopTrainingJob" => stop_training_job(cloud, &s(&body, "TrainingJobName")),
        "CreateModel" => create_model(cloud, &body),
        "DescribeModel" => describe(sm, |st| &st.models, &s(&body, "ModelName"), "model", cloud),
        "DeleteModel" => delete(sm, |st| &mut st.models, &s(&body, "ModelName"), "model", cloud),
        "ListModels" => Ok(list(
            sm,
            &body,
            |st| st.models.values().cloned().collect(),
            "Models",
            &["ModelName", "ModelArn", "CreationTime"],
            "ModelName",
            "",
        )),
        "CreateEndpointConfig" => create_endpoint_config(cloud, &body),
        "DescribeEndpointConfig" => describe(
            sm,
            |st| &st.configs,
            &s(&body, "EndpointConfigName"),
            "endpoint configuration",
            cloud,
        ),
        "DeleteEndpointConfig" => delete(
            sm,
            |st| &mut st.configs,
            &s(&body, "EndpointConfigName"),
            "endpoint configuration",
            cloud,
        ),
        "ListEndpointConfigs" => Ok(list(
            sm,
            &body,
            |st| st.configs.values().cloned().collect(),
            "EndpointConfigs",
            &["EndpointConfigName", "EndpointConfigArn", "CreationTime"],
            "EndpointConfigName",
            "",
        )),
        "CreateEndpoint" => create_endpoint(cloud, &body),
        "UpdateEndpoint" => update_endpoint(cloud, &body),
        "DescribeEndpoint" => describe(sm, |st| &st.endpoints, &s(&body, "EndpointName"), "endpoint", cloud),
        "DeleteEndpoint" => delete_endpoint(cloud, &s(&body, "EndpointName")),
        "ListEndpoints" => Ok(list(
            sm,
            &body,
            |st| st.endpoints.values().cloned().collect(),
            "Endpoints",
            &["EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime", "EndpointStatus"],
            "EndpointName",
            "EndpointStatus",
        )),
        "AddTags" => {
            let arn = s(&body, "ResourceArn");
            let new = body["Tags"].as_array().cloned().unwrap_or_default();
            sm.with(|st| {
                let t = st.tags.entry(arn).or_default();
                for tag in &new {
                    t.retain(|x| x["Key"] != tag["Key"]);
                    t.push(tag.clone());
                }
            });
            Ok(json!({ "Tags": new }))
        }
        "ListTags" => {
            let arn = s(&body, "ResourceArn");
            Ok(json!({ "Tags": sm.read(|st| st.tags.get(&arn).cloned().unwrap_or_default()) }))
        }
        "DeleteTags" => {
            let arn = s(&body, "ResourceArn");
            let keys: Vec<Value> = body["TagKeys"].as_array().cloned().unwrap_or_default();
            sm.with(|st| {
                if let Some(t) = st.tags.get_mut(&arn) {
                    t.retain(|x| !keys.contains(&x["Key"]));
                }
            });
            Ok(json!({}))
        }
        other => Err((
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!(
                "the local cloud does not implement SageMaker.{other}; it runs training jobs, models, endpoint configs, endpoints and tags"
            ),
        )),
    };
    match result {
        Ok(v) => {
            let mut r = httpx::json(StatusCode::OK, &v);
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            r
        }
        Err((status, code, msg)) => aws_json_error(status, code, &msg),
    }
}

/// "Could not find …" with the resource's ARN, SageMaker's answer for a missing resource.
/// `kind` is how the message names it ("endpoint configuration"); the ARN uses SageMaker's
/// resource type ("endpoint-config").
fn not_found(cloud: &Cloud, kind: &str, name: &str) -> (StatusCode, &'static str, String) {
    let res = kind.replace(' ', "-").replace("configuration", "config");
    bad(format!(
        "Could not find {kind} \"{}\".",
        cloud.arn("sagemaker", &format!("{res}/{}", name.to_lowercase()))
    ))
}

/// Stores a new record and its tags unless one with that name exists; returns whether it
/// was stored.
fn insert_new(
    sm: &SageMaker,
    pick: impl Fn(&mut Store) -> &mut BTreeMap<String, Value>,
    name: &str,
    record: Value,
    arn: &str,
    body: &Value,
) -> bool {
    let tags = body["Tags"].as_array().cloned().unwrap_or_default();
    sm.with(|st| {
        if pick(st).contains_key(name) {
            return false;
        }
        pick(st).insert(name.to_string(), record);
        st.tags.insert(arn.to_string(), tags);
        true
    })
}

fn describe(
    sm: &SageMaker,
    pick: impl Fn(&Store) -> &BTreeMap<String, Value>,
    name: &str,
    kind: &str,
    cloud: &Cloud,
) -> ApiResult {
    sm.read(|st| pick(st).get(name).cloned())
        .ok_or_else(|| not_found(cloud, kind, name))
}

fn delete(
    sm: &SageMaker,
    pick: impl Fn(&mut Store) -> &mut BTreeMap<String, Value>,
    name: &str,
    kind: &str,
    cloud: &Cloud,
) -> ApiResult {
    let arn = sm.with(|st| {
        let gone = pick(st).remove(name);
        gone.map(|v| {
            let arn = v
                .as_object()
                .and_then(|o| {
                    o.iter()
                        .find(|(k, _)| k.ends_with("Arn"))
                        .map(|(_, a)| a.clone())
                })
                .unwrap_or_default();
            if let Some(a) = arn.as_str() {
                st.tags.remove(a);
            }
            arn
        })
    });
    match arn {
        Some(_) => Ok(json!({})),
        None => Err(not_found(cloud, kind, name)),
    }
}

/// List calls: NameContains, StatusEquals, SortOrder (by CreationTime), MaxResults, NextToken.
fn list(
    sm: &SageMaker,
    body: &Value,
    all: impl Fn(&Store) -> Vec<Value>,
    key: &str,
    fields: &[&str],
    name_field: &str,
    status_field: &str,
) -> Value {
    let mut items = sm.read(all);
    if let Some(n) = body["NameContains"].as_str() {
        items.retain(|i| i[name_field].as_str().is_some_and(|x| x.contains(n)));
    }
    if let Some(st) = body["StatusEquals"].as_str() {
        items.retain(|i| i[status_field].as_str() == Some(st));
    }
    items.sort_by(|a, b| {
        a["CreationTime"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&b["CreationTime"].as_f64().unwrap_or(0.0))
    });
    if body["SortOrder"].as_str() == Some("Descending") {
        items.reverse();
    }
    let start: usize = body["NextToken"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let max = body["MaxResults"].as_u64().unwrap_or(10).clamp(1, 100) as usize;
    let page: Vec<Value> = items
        .iter()
        .skip(start)
        .take(max)
        .map(|i| {
            Value::Object(
                fields
                    .iter()
                    .filter_map(|f| i.get(*f).map(|v| (f.to_string(), v.clone())))
                    .collect(),
            )
        })
        .collect();
    let mut out = json!({ key: page });
    if start + max < items.len() {
        out["NextToken"] = json!((start + max).to_string());
    }
    out
}

fn create_training_job(cloud: &Arc<Cloud>, body: &Value) -> ApiResult {
    let name = s(body, "TrainingJobName");
    check_name("trainingJobName", &name)?;
    let image = body["AlgorithmSpecification"]["TrainingImage"]
        .as_str()
        .unwrap_or_default();
    resolve_image(cloud, image)?;
    if body["OutputDataConfig"]["S3OutputPath"].as_str().is_none() {
        return Err(bad("OutputDataConfig.S3OutputPath is required"));
    }
    let arn = cloud.arn(
        "sagemaker",
        &format!("training-job/{}", name.to_lowercase()),
    );
    let now = httpx::now_epoch();
    let mut job = json!({
        "TrainingJobName": name,
        "TrainingJobArn": arn,
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Starting",
        "AlgorithmSpecification": body["AlgorithmSpecification"],
        "RoleArn": body["RoleArn"],
        "InputDataConfig": body["InputDataConfig"],
        "OutputDataConfig": body["OutputDataConfig"],
        "ResourceConfig": body["ResourceConfig"],
        "StoppingCondition": body["StoppingCondition"],
        "HyperParameters": body.get("HyperParameters").cloned().unwrap_or(json!({})),
        "CreationTime": now,
        "TrainingStartTime": now,
        "LastModifiedTime": now,
        "SecondaryStatusTransitions": [{ "Status": "Starting", "StartTime": now, "StatusMessage": "Preparing the instances for training" }],
    });
    if let Some(o) = job.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    if !insert_new(
        &cloud.sagemaker,
        |st| &mut st.training_jobs,
        &name,
        job,
        &arn,
        body,
    ) {
        return Err((
            StatusCode::BAD_REQUEST,
            "ResourceInUse",
            format!("Training job names must be unique within an AWS account and region, and a training job with this name already exists ({arn})"),
        ));
    }
    let c = cloud.clone();
    tokio::spawn(async move {
        training_event(&c, &name).await;
        run_training(c, name).await;
    });
    Ok(json!({ "TrainingJobArn": arn }))
}

fn set_job(cloud: &Cloud, name: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    cloud.sagemaker.with(|st| {
        if let Some(o) = st
            .training_jobs
            .get_mut(name)
            .and_then(|j| j.as_object_mut())
        {
            let before = o.get("TrainingJobStatus").cloned();
            f(o);
            o.insert("LastModifiedTime".into(), json!(httpx::now_epoch()));
            // A status change and its pending event are written together, so a local cloud
            // killed before the event went out still sends it on its next start.
            if o.get("TrainingJobStatus") != before.as_ref() {
                let status = o["TrainingJobStatus"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                st.undelivered.insert(name.to_string(), status);
            }
        }
    });
}

fn secondary(cloud: &Cloud, name: &str, status: &str, message: &str) {
    set_job(cloud, name, |o| {
        o.insert("SecondaryStatus".into(), json!(status));
        if let Some(t) = o
            .get_mut("SecondaryStatusTransitions")
            .and_then(|t| t.as_array_mut())
        {
            let now = httpx::now_epoch();
            if let Some(last) = t.last_mut() {
                last["EndTime"] = json!(now);
            }
            t.push(json!({ "Status": status, "StartTime": now, "StatusMessage": message }));
        }
    });
}

async fn training_event(cloud: &Arc<Cloud>, name: &str) {
    let (job, tags) = cloud.sagemaker.read(|st| {
        let j = st.training_jobs.get(name).cloned().unwrap_or_default();
        let t = st
            .tags
            .get(j["TrainingJobArn"].as_str().unwrap_or_default())
            .cloned()
            .unwrap_or_default();
        (j, t)
    });
    let arn = s(&job, "TrainingJobArn");
    let status = s(&job, "TrainingJobStatus");
    // Recorded before the attempt, cleared after a confirmed delivery: a local cloud killed or
    // stopped in between, or an emulator that is down, leaves the entry for `restore`.
    cloud.sagemaker.with(|st| {
        st.undelivered.insert(name.to_string(), status.clone());
    });
    let delivered = crate::bus::emit_confirmed(
        cloud,
        "aws.sagemaker",
        "SageMaker Training Job State Change",
        vec![arn],
        event_detail(&job, &tags),
    )
    .await;
    if delivered {
        cloud.sagemaker.with(|st| {
            if st.undelivered.get(name) == Some(&status) {
                st.undelivered.remove(name);
            }
        });
    } else {
        tracing::warn!(job = %name, %status, "the training job's state-change event was not delivered; it is sent again when the local cloud restarts");
    }
}

fn parse_s3(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    Some((b.to_string(), k.to_string()))
}

async fn download_prefix(cloud: &Cloud, uri: &str, to: &Path) -> Result<usize, String> {
    let (bucket, prefix) = parse_s3(uri).ok_or_else(|| format!("{uri} is not an s3:// URI"))?;
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = cloud
            .s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot list {uri}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    let mut set = tokio::task::JoinSet::new();
    let n = keys.len();
    for chunk in keys.chunks(n.div_ceil(8).max(1)) {
        let chunk = chunk.to_vec();
        let s3 = cloud.s3.clone();
        let bucket = bucket.clone();
        let prefix = prefix.clone();
        let to = to.to_path_buf();
        set.spawn(async move {
            for key in chunk {
                let rel = key[prefix.len()..].trim_start_matches('/');
                if rel.is_empty() || rel.ends_with('/') {
                    continue;
                }
                let o = s3
                    .get_object()
                    .bucket(&bucket)
                    .key(&key)
                    .send()
                    .await
                    .map_err(|e| format!("cannot download s3://{bucket}/{key}: {e}"))?;
                let data = o
                    .body
                    .collect()
                    .await
                    .map_err(|e| format!("cannot read s3://{bucket}/{key}: {e}"))?
                    .into_bytes();
                let dest = to.join(rel);
                if let Some(d) = dest.parent() {
                    tokio::fs::create_dir_all(d)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                tokio::fs::write(&dest, &data)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| e.to_string())??;
    }
    Ok(n)
}

/// A gzip tarball of a directory's files, paths relative to it (as SageMaker packs them).
pub fn tar_gz_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(enc);
    fn walk(
        tar: &mut tar::Builder<flate2::write::GzEncoder<Vec<u8>>>,
        root: &Path,
        dir: &Path,
    ) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
            if p.is_dir() {
                walk(tar, root, &p)?;
            } else {
                tar.append_path_with_name(&p, rel)?;
            }
        }
        Ok(())
    }
    if dir.is_dir() {
        walk(&mut tar, dir, dir)?;
    }
    tar.into_inner()?.finish()
}

async fn upload(cloud: &Cloud, uri: &str, data: Vec<u8>) -> Result<(), String> {
    let (bucket, key) = parse_s3(uri).ok_or_else(|| format!("{uri} is not an s3:// URI"))?;
    cloud
        .s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(data.into())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "cannot upload {uri}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })
}

async fn run_training(cloud: Arc<Cloud>, name: String) {
    let job = cloud
        .sagemaker
        .read(|st| st.training_jobs.get(&name).cloned())
        .unwrap_or_default();
    let outcome = train(&cloud, &name, &job).await;
    if cloud
        .sagemaker
        .shutting_down
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        tracing::info!(job = %name, "the local cloud is stopping: the job is left for the next start to fail and announce");
        return;
    }
    let stopped = cloud
        .sagemaker
        .stopping
        .lock()
        .map(|mut s| s.remove(&name))
        .unwrap_or(false);
    if let Ok(mut j) = cloud.sagemaker.jobs.lock() {
        j.remove(&name);
    }
    let now = httpx::now_epoch();
    match outcome {
        Ok(artifact) if !stopped => {
            secondary(&cloud, &name, "Completed", "Training job completed");
            set_job(&cloud, &name, |o| {
                o.insert("TrainingJobStatus".into(), json!("Completed"));
                o.insert("TrainingEndTime".into(), json!(now));
                o.insert(
                    "ModelArtifacts".into(),
                    json!({ "S3ModelArtifacts": artifact }),
                );
                let started = o["TrainingStartTime"].as_f64().unwrap_or(now);
                o.insert(
                    "BillableTimeInSeconds".into(),
                    json!(((now - started).ceil() as i64).max(1)),
                );
            });
        }
        _ if stopped => {
            // A job stopped at its time limit keeps MaxRuntimeExceeded as its last secondary
            // status, as SageMaker reports it; one stopped by StopTrainingJob ends Stopped.
            let timed_out = cloud.sagemaker.read(|st| {
                st.training_jobs
                    .get(&name)
                    .is_some_and(|j| j["SecondaryStatus"] == "MaxRuntimeExceeded")
            });
            if !timed_out {
                secondary(&cloud, &name, "Stopped", "Training job stopped");
            }
            set_job(&cloud, &name, |o| {
                o.insert("TrainingJobStatus".into(), json!("Stopped"));
                o.insert("TrainingEndTime".into(), json!(now));
            });
        }
        Ok(_) => {}
        Err(reason) => {
            let reason: String = reason.chars().take(1024).collect();
            secondary(&cloud, &name, "Failed", &reason);
            set_job(&cloud, &name, |o| {
                o.insert("TrainingJobStatus".into(), json!("Failed"));
                o.insert("TrainingEndTime".into(), json!(now));
                o.insert("FailureReason".into(), json!(reason));
            });
        }
    }
    training_event(&cloud, &name).await;
}

/// Runs one job to its end; returns the model artifact's URI or the FailureReason.
async fn train(cloud: &Arc<Cloud>, name: &str, job: &Value) -> Result<String, String> {
    let image = job["AlgorithmSpecification"]["TrainingImage"]
        .as_str()
        .unwrap_or_default();
    let bin = resolve_image(cloud, image).map_err(|e| format!("ClientError: {}", e.2))?;
    let work = cloud.work_dir().join("training").join(name);
    let _ = std::fs::remove_dir_all(&work);
    let ml = work.join("ml");
    let cfg_dir = ml.join("input/config");
    for d in [&cfg_dir, &ml.join("model"), &ml.join("output/data")] {
        std::fs::create_dir_all(d).map_err(|e| format!("InternalServerError: {e}"))?;
    }
    let hp = job.get("HyperParameters").cloned().unwrap_or(json!({}));
    let mut channels = serde_json::Map::new();
    secondary(cloud, name, "Downloading", "Downloading input data");
    for ch in job["InputDataConfig"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let cname = s(&ch, "ChannelName");
        let uri = ch["DataSource"]["S3DataSource"]["S3Uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        download_prefix(cloud, &uri, &ml.join("input/data").join(&cname))
            .await
            .map_err(|e| format!("ClientError: {e}"))?;
        channels.insert(
            cname,
            json!({ "TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None" }),
        );
    }
    let write = |f: &str, v: &Value| {
        std::fs::write(cfg_dir.join(f), v.to_string())
            .map_err(|e| format!("InternalServerError: {e}"))
    };
    write("hyperparameters.json", &hp)?;
    write("inputdataconfig.json", &Value::Object(channels))?;
    write(
        "resourceconfig.json",
        &json!({ "current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0" }),
    )?;
    secondary(
        cloud,
        name,
        "Training",
        "Training image download completed. Training in progress.",
    );
    let log = crate::procs::log_path(&cloud.cfg.state_dir, "training", name);
    let mut child = tokio::process::Command::new(&bin)
        .arg("train")
        .arg("--ml-root")
        .arg(&ml)
        .current_dir(&work)
        .env("TRAINING_JOB_NAME", name)
        .env("SM_TRAINING_ENV", json!({ "job_name": name }).to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("ClientError: cannot start {}: {e}", bin.display()))?;
    let pid = child.id().unwrap_or(0);
    cloud.procs.add(pid, "training", name);
    if let Ok(mut j) = cloud.sagemaker.jobs.lock() {
        j.insert(name.to_string(), pid);
    }
    if let Some(o) = child.stdout.take() {
        crate::procs::pump(o, log.clone(), String::new(), None);
    }
    if let Some(e) = child.stderr.take() {
        crate::procs::pump(e, log.clone(), String::new(), None);
    }
    let max_runtime = job["StoppingCondition"]["MaxRuntimeInSeconds"]
        .as_u64()
        .unwrap_or(86400);
    let status = match tokio::time::timeout(Duration::from_secs(max_runtime), child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            if let Ok(mut s) = cloud.sagemaker.stopping.lock() {
                s.insert(name.to_string());
            }
            secondary(
                cloud,
                name,
                "MaxRuntimeExceeded",
                "Job stopped: MaxRuntimeInSeconds reached",
            );
            crate::procs::signal(pid, "TERM");
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            }
        }
    };
    cloud.procs.remove(pid);
    let status = status.map_err(|e| format!("InternalServerError: {e}"))?;
    if !status.success() {
        let failure = std::fs::read_to_string(ml.join("output/failure")).unwrap_or_default();
        let failure = failure.trim();
        return Err(if failure.is_empty() {
            format!(
                "AlgorithmError: the training container exited with {status}; see {}",
                log.display()
            )
        } else {
            format!("AlgorithmError: {failure}")
        });
    }
    secondary(
        cloud,
        name,
        "Uploading",
        "Uploading generated training model",
    );
    let out = job["OutputDataConfig"]["S3OutputPath"]
        .as_str()
        .unwrap_or_default()
        .trim_end_matches('/');
    let base = format!("{out}/{name}/output");
    let model = tar_gz_dir(&ml.join("model")).map_err(|e| format!("InternalServerError: {e}"))?;
    let artifact = format!("{base}/model.tar.gz");
    upload(cloud, &artifact, model)
        .await
        .map_err(|e| format!("ClientError: {e}"))?;
    let data =
        tar_gz_dir(&ml.join("output/data")).map_err(|e| format!("InternalServerError: {e}"))?;
    upload(cloud, &format!("{base}/output.tar.gz"), data)
        .await
        .map_err(|e| format!("ClientError: {e}"))?;
    Ok(artifact)
}

fn stop_training_job(cloud: &Arc<Cloud>, name: &str) -> ApiResult {
    let status = cloud
        .sagemaker
        .read(|st| {
            st.training_jobs
                .get(name)
                .map(|j| s(j, "TrainingJobStatus"))
        })
        .ok_or_else(|| bad("Requested resource not found."))?;
    if status != "InProgress" {
        return Err(bad(format!(
            "The request was rejected because the training job is in status {status}."
        )));
    }
    if let Ok(mut s) = cloud.sagemaker.stopping.lock() {
        s.insert(name.to_string());
    }
    set_job(cloud, name, |o| {
        o.insert("TrainingJobStatus".into(), json!("Stopping"));
    });
    secondary(cloud, name, "Stopping", "Stopping the training job");
    let pid = cloud
        .sagemaker
        .jobs
        .lock()
        .ok()
        .and_then(|j| j.get(name).copied());
    let c = cloud.clone();
    let n = name.to_string();
    tokio::spawn(async move {
        training_event(&c, &n).await;
        if let Some(pid) = pid {
            crate::procs::signal(pid, "TERM");
            tokio::time::sleep(STOP_GRACE).await;
            if c.sagemaker
                .jobs
                .lock()
                .ok()
                .and_then(|j| j.get(&n).copied())
                == Some(pid)
            {
                crate::procs::signal(pid, "KILL");
            }
        }
    });
    Ok(json!({}))
}

fn create_model(cloud: &Arc<Cloud>, body: &Value) -> ApiResult {
    let name = s(body, "ModelName");
    check_name("modelName", &name)?;
    let container = if body["PrimaryContainer"].is_object() {
        body["PrimaryContainer"].clone()
    } else {
        body["Containers"][0].clone()
    };
    resolve_image(cloud, container["Image"].as_str().unwrap_or_default())?;
    let arn = cloud.arn("sagemaker", &format!("model/{}", name.to_lowercase()));
    let model = json!({
        "ModelName": name, "ModelArn": arn, "PrimaryContainer": container,
        "ExecutionRoleArn": body["ExecutionRoleArn"], "CreationTime": httpx::now_epoch(),
    });
    if !insert_new(
        &cloud.sagemaker,
        |st| &mut st.models,
        &name,
        model,
        &arn,
        body,
    ) {
        return Err(bad(format!(
            "Cannot create already existing model \"{arn}\"."
        )));
    }
    Ok(json!({ "ModelArn": arn }))
}

fn create_endpoint_config(cloud: &Arc<Cloud>, body: &Value) -> ApiResult {
    let name = s(body, "EndpointConfigName");
    check_name("endpointConfigName", &name)?;
    let variants = body["ProductionVariants"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if variants.is_empty() {
        return Err(bad("ProductionVariants must name at least one variant"));
    }
    for v in &variants {
        let model = s(v, "ModelName");
        if !cloud.sagemaker.read(|st| st.models.contains_key(&model)) {
            return Err(not_found(cloud, "model", &model));
        }
        let sc = &v["ServerlessConfig"];
        if sc.is_object() {
            let mem = sc["MemorySizeInMB"].as_i64().unwrap_or(0);
            if !MEMORY_SIZES.contains(&mem) {
                return Err(bad(format!(
                    "Value '{mem}' at 'productionVariants.1.serverlessConfig.memorySizeInMB' failed to satisfy constraint: Member must be one of 1024, 2048, 3072, 4096, 5120, 6144"
                )));
            }
            let c = sc["MaxConcurrency"].as_i64().unwrap_or(0);
            if !(1..=200).contains(&c) {
                return Err(bad(format!(
                    "Value '{c}' at 'productionVariants.1.serverlessConfig.maxConcurrency' failed to satisfy constraint: Member must have value between 1 and 200"
                )));
            }
        }
    }
    let arn = cloud.arn(
        "sagemaker",
        &format!("endpoint-config/{}", name.to_lowercase()),
    );
    let cfg = json!({
        "EndpointConfigName": name, "EndpointConfigArn": arn,
        "ProductionVariants": variants, "CreationTime": httpx::now_epoch(),
    });
    if !insert_new(
        &cloud.sagemaker,
        |st| &mut st.configs,
        &name,
        cfg,
        &arn,
        body,
    ) {
        return Err(bad(format!(
            "Cannot create already existing endpoint configuration \"{arn}\"."
        )));
    }
    Ok(json!({ "EndpointConfigArn": arn }))
}

fn set_endpoint(cloud: &Cloud, name: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    cloud.sagemaker.with(|st| {
        if let Some(o) = st.endpoints.get_mut(name).and_then(|e| e.as_object_mut()) {
            f(o);
            o.insert("LastModifiedTime".into(), json!(httpx::now_epoch()));
        }
    });
}

async fn endpoint_event(cloud: &Arc<Cloud>, name: &str) {
    let (ep, tags) = cloud.sagemaker.read(|st| {
        let e = st.endpoints.get(name).cloned().unwrap_or_default();
        let t = st
            .tags
            .get(e["EndpointArn"].as_str().unwrap_or_default())
            .cloned()
            .unwrap_or_default();
        (e, t)
    });
    let status = s(&ep, "EndpointStatus");
    // Events spell statuses in UPPER_SNAKE (IN_SERVICE), DescribeEndpoint in CamelCase.
    let mut upper = String::new();
    for (i, ch) in status.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            upper.push('_');
        }
        upper.push(ch.to_ascii_uppercase());
    }
    let mut detail = event_detail(&ep, &tags);
    detail["EndpointStatus"] = json!(upper);
    if let Some(o) = detail.as_object_mut() {
        o.remove("ProductionVariants");
    }
    crate::bus::emit(
        cloud,
        "aws.sagemaker",
        "SageMaker Endpoint State Change",
        vec![s(&ep, "EndpointArn")],
        detail,
    )
    .await;
}

fn variants_view(cloud: &Cloud, config: &str) -> Value {
    cloud.sagemaker.read(|st| {
        let cfg = st.configs.get(config).cloned().unwrap_or_default();
        Value::Array(
            cfg["ProductionVariants"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|v| {
                    let image = st
                        .models
                        .get(v["ModelName"].as_str().unwrap_or_default())
                        .map(|m| m["PrimaryContainer"]["Image"].clone())
                        .unwrap_or_default();
                    json!({
                        "VariantName": v["VariantName"],
                        "CurrentServerlessConfig": v["ServerlessConfig"],
                        "DeployedImages": [{ "SpecifiedImage": image, "ResolvedImage": image }],
                    })
                })
                .collect(),
        )
    })
}

fn create_endpoint(cloud: &Arc<Cloud>, body: &Value) -> ApiResult {
    let name = s(body, "EndpointName");
    check_name("endpointName", &name)?;
    let config = s(body, "EndpointConfigName");
    if !cloud.sagemaker.read(|st| st.configs.contains_key(&config)) {
        return Err(not_found(cloud, "endpoint configuration", &config));
    }
    let arn = cloud.arn("sagemaker", &format!("endpoint/{}", name.to_lowercase()));
    let now = httpx::now_epoch();
    let ep = json!({
        "EndpointName": name, "EndpointArn": arn, "EndpointConfigName": config,
        "EndpointStatus": "Creating", "CreationTime": now, "LastModifiedTime": now,
    });
    if !insert_new(
        &cloud.sagemaker,
        |st| &mut st.endpoints,
        &name,
        ep,
        &arn,
        body,
    ) {
        return Err(bad(format!(
            "Cannot create already existing endpoint \"{arn}\"."
        )));
    }
    let c = cloud.clone();
    tokio::spawn(async move {
        endpoint_event(&c, &name).await;
        match start_backend(&c, &name, &config).await {
            Ok(b) => {
                if let Ok(mut l) = c.sagemaker.live.lock() {
                    l.insert(name.clone(), b);
                }
                let pv = variants_view(&c, &config);
                set_endpoint(&c, &name, |o| {
                    o.insert("EndpointStatus".into(), json!("InService"));
                    o.insert("ProductionVariants".into(), pv);
                    o.remove("FailureReason");
                });
            }
            Err(reason) => set_endpoint(&c, &name, |o| {
                o.insert("EndpointStatus".into(), json!("Failed"));
                o.insert("FailureReason".into(), json!(reason));
            }),
        }
        endpoint_event(&c, &name).await;
    });
    Ok(json!({ "EndpointArn": arn }))
}

fn update_endpoint(cloud: &Arc<Cloud>, body: &Value) -> ApiResult {
    let name = s(body, "EndpointName");
    let config = s(body, "EndpointConfigName");
    let status = cloud
        .sagemaker
        .read(|st| st.endpoints.get(&name).map(|e| s(e, "EndpointStatus")))
        .ok_or_else(|| not_found(cloud, "endpoint", &name))?;
    if status != "InService" {
        return Err(bad(format!(
            "Cannot update in-progress endpoint \"{}\" (status {status}).",
            cloud.arn("sagemaker", &format!("endpoint/{}", name.to_lowercase()))
        )));
    }
    if !cloud.sagemaker.read(|st| st.configs.contains_key(&config)) {
        return Err(not_found(cloud, "endpoint configuration", &config));
    }
    set_endpoint(cloud, &name, |o| {
        o.insert("EndpointStatus".into(), json!("Updating"));
    });
    let arn = cloud.arn("sagemaker", &format!("endpoint/{}", name.to_lowercase()));
    let c = cloud.clone();
    tokio::spawn(async move {
        endpoint_event(&c, &name).await;
        switch(&c, &name, &config).await;
        endpoint_event(&c, &name).await;
    });
    Ok(json!({ "EndpointArn": arn }))
}

/// Blue/green: start the new server, wait for its ping, move traffic, drain and stop the old
/// one. If the new one fails, the old one keeps serving and FailureReason says why.
async fn switch(cloud: &Arc<Cloud>, name: &str, config: &str) {
    let started = Instant::now();
    match start_backend(cloud, name, config).await {
        Ok(new) => {
            let old = cloud
                .sagemaker
                .live
                .lock()
                .ok()
                .and_then(|mut l| l.insert(name.to_string(), new));
            let pv = variants_view(cloud, config);
            set_endpoint(cloud, name, |o| {
                o.insert("EndpointStatus".into(), json!("InService"));
                o.insert("EndpointConfigName".into(), json!(config));
                o.insert("ProductionVariants".into(), pv);
                o.remove("FailureReason");
            });
            tracing::info!(
                endpoint = name,
                config,
                secs = started.elapsed().as_secs_f64(),
                "traffic moved to the new model"
            );
            if let Some(old) = old {
                let c = cloud.clone();
                tokio::spawn(async move { drain_and_stop(&c, old).await });
            }
        }
        Err(reason) => set_endpoint(cloud, name, |o| {
            o.insert("EndpointStatus".into(), json!("InService"));
            o.insert("FailureReason".into(), json!(reason));
        }),
    }
}

async fn drain_and_stop(cloud: &Cloud, old: Arc<Backend>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while old.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    crate::procs::signal(old.pid, "TERM");
    tokio::time::sleep(Duration::from_secs(2)).await;
    crate::procs::signal(old.pid, "KILL");
    cloud.procs.remove(old.pid);
}

fn delete_endpoint(cloud: &Arc<Cloud>, name: &str) -> ApiResult {
    let gone = cloud.sagemaker.with(|st| {
        let e = st.endpoints.remove(name);
        if let Some(a) = e.as_ref().and_then(|e| e["EndpointArn"].as_str()) {
            st.tags.remove(a);
        }
        e.is_some()
    });
    if !gone {
        return Err(not_found(cloud, "endpoint", name));
    }
    let old = cloud
        .sagemaker
        .live
        .lock()
        .ok()
        .and_then(|mut l| l.remove(name));
    if let Some(old) = old {
        crate::procs::signal(old.pid, "KILL");
        cloud.procs.remove(old.pid);
    }
    Ok(json!({}))
}

/// Starts a model server for an endpoint config and waits for its first healthy ping.
async fn start_backend(
    cloud: &Arc<Cloud>,
    endpoint: &str,
    config: &str,
) -> Result<Arc<Backend>, String> {
    let (variant, model) = cloud.sagemaker.read(|st| {
        let cfg = st.configs.get(config).cloned().unwrap_or_default();
        let v = cfg["ProductionVariants"][0].clone();
        let m = st
            .models
            .get(v["ModelName"].as_str().unwrap_or_default())
            .cloned();
        (v, m)
    });
    let variant_name = s(&variant, "VariantName");
    let fail = |why: String| {
        format!(
            "The primary container for production variant {variant_name} did not pass the ping health check: {why}. Please check the endpoint's logs (deployer local logs)."
        )
    };
    let model = model.ok_or_else(|| fail("its model no longer exists".into()))?;
    let container = &model["PrimaryContainer"];
    let bin = resolve_image(cloud, container["Image"].as_str().unwrap_or_default())
        .map_err(|e| fail(e.2))?;
    let n = cloud.sagemaker.counter.fetch_add(1, Ordering::SeqCst);
    let dir = cloud
        .work_dir()
        .join("endpoints")
        .join(endpoint)
        .join(format!("{config}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model_dir = dir.join("model");
    std::fs::create_dir_all(&model_dir).map_err(|e| fail(e.to_string()))?;
    if let Some(url) = container["ModelDataUrl"].as_str() {
        let (bucket, key) =
            parse_s3(url).ok_or_else(|| fail(format!("{url} is not an s3:// URI")))?;
        let o = cloud
            .s3
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                fail(format!(
                    "cannot download the model data {url}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ))
            })?;
        let data = o
            .body
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .into_bytes();
        let md = model_dir.clone();
        tokio::task::spawn_blocking(move || {
            tar::Archive::new(flate2::read::GzDecoder::new(std::io::Cursor::new(data))).unpack(&md)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("the model data {url} is not a gzip tarball: {e}")))?;
    }
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| fail(e.to_string()))?;
    let env: Vec<(String, String)> = container["Environment"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let model_id = env
        .iter()
        .find(|(k, _)| k == "MODEL_ID")
        .map(|(_, v)| v.clone());
    let log = crate::procs::log_path(&cloud.cfg.state_dir, "endpoint", endpoint);
    let mut child = tokio::process::Command::new(&bin)
        .arg("serve")
        .arg("--ml-root")
        .arg(&dir)
        .arg("--port")
        .arg(port.to_string())
        .arg("--host")
        .arg("127.0.0.1")
        .envs(env)
        .env("SAGEMAKER_BIND_TO_PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot start {}: {e}", bin.display())))?;
    let pid = child.id().unwrap_or(0);
    let tag = format!("[{config}] ");
    if let Some(o) = child.stdout.take() {
        crate::procs::pump(o, log.clone(), tag.clone(), None);
    }
    if let Some(e) = child.stderr.take() {
        crate::procs::pump(e, log.clone(), tag, None);
    }
    cloud
        .procs
        .add(pid, "endpoint", &format!("{endpoint} ({config})"));
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            cloud.procs.remove(pid);
            return Err(fail(format!(
                "the model server exited ({status}) before answering /ping"
            )));
        }
        if let Ok(r) = cloud
            .http
            .simple(&base, Method::GET, "/ping", &[], Bytes::new())
            .await
        {
            if r.status == StatusCode::OK {
                break;
            }
        }
        if started.elapsed() > STARTUP_LIMIT {
            let _ = child.start_kill();
            cloud.procs.remove(pid);
            return Err(fail(format!(
                "no healthy /ping within {} s",
                STARTUP_LIMIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server outlives this task; it is stopped by pid (drain, delete, shutdown).
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(Arc::new(Backend {
        port,
        pid,
        config: config.to_string(),
        model_id,
        inflight: AtomicUsize::new(0),
    }))
}

struct Inflight(Arc<Backend>);
impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// sagemaker-runtime `InvokeEndpoint`: `POST /endpoints/{name}/invocations`.
pub async fn invoke_endpoint(cloud: &Arc<Cloud>, req: &Req) -> Resp {
    let name = req
        .path()
        .trim_start_matches("/endpoints/")
        .trim_end_matches("/invocations")
        .to_string();
    let name = percent_encoding::percent_decode_str(&name)
        .decode_utf8_lossy()
        .into_owned();
    if req.body.len() > INVOKE_LIMIT {
        return aws_json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ValidationError",
            "Request payload exceeds the 4 MB limit of serverless endpoints.",
        );
    }
    let backend = cloud
        .sagemaker
        .live
        .lock()
        .ok()
        .and_then(|l| l.get(&name).cloned());
    let Some(backend) = backend else {
        return aws_json_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            &format!(
                "Endpoint {name} of account {} not found.",
                cloud.cfg.account
            ),
        );
    };
    backend.inflight.fetch_add(1, Ordering::SeqCst);
    let _guard = Inflight(backend.clone());
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(ct) = req.header("content-type") {
        headers.push(("content-type", ct));
    }
    if let Some(a) = req.header("accept") {
        headers.push(("accept", a));
    }
    let base = format!("http://127.0.0.1:{}", backend.port);
    let variant = cloud.sagemaker.read(|st| {
        st.configs
            .get(&backend.config)
            .map(|c| s(&c["ProductionVariants"][0], "VariantName"))
            .unwrap_or_default()
    });
    match cloud
        .http
        .simple(
            &base,
            Method::POST,
            "/invocations",
            &headers,
            req.body.clone(),
        )
        .await
    {
        Ok(r) if r.status.is_success() => {
            let mut resp = Response::new(full(r.body.clone()));
            if let Some(ct) = r
                .header("content-type")
                .and_then(|v| hyper::header::HeaderValue::from_str(v).ok())
            {
                resp.headers_mut().insert("content-type", ct);
            }
            if let Ok(v) = hyper::header::HeaderValue::from_str(&variant) {
                resp.headers_mut()
                    .insert("x-amzn-invoked-production-variant", v);
            }
            resp
        }
        Ok(r) => {
            let msg = String::from_utf8_lossy(&r.body).into_owned();
            let kind = if r.status.is_client_error() {
                "client"
            } else {
                "server"
            };
            let mut resp = httpx::json(
                StatusCode::FAILED_DEPENDENCY,
                &json!({
                    "OriginalStatusCode": r.status.as_u16(),
                    "OriginalMessage": msg,
                    "LogStreamArn": cloud.arn("logs", &format!("log-group:/aws/sagemaker/Endpoints/{name}")),
                    "message": format!("Received {kind} error ({}) from primary with message \"{msg}\". See the endpoint's logs (deployer local logs) for more information.", r.status.as_u16()),
                }),
            );
            resp.headers_mut().insert(
                "x-amzn-errortype",
                hyper::header::HeaderValue::from_static("ModelError"),
            );
            resp
        }
        Err(e) => aws_json_error(
            StatusCode::FAILED_DEPENDENCY,
            "ModelError",
            &format!("Received server error from primary: {e}"),
        ),
    }
}

/// After a restart: endpoints that were serving come back on their current config;
/// training jobs that were running are failed (their process died with the local cloud).
/// An endpoint caught mid-update comes back on the config it served before (the update never
/// switched traffic), InService with a FailureReason, as AWS leaves a failed update; one caught
/// while being created comes up on its config. Both send the state-change event they still
/// owe, so the pipeline's model record leaves `deploying` (deployed, or deploy_failed to be
/// accepted again) instead of waiting forever.
pub fn restore(cloud: Arc<Cloud>) {
    let (endpoints, jobs) = cloud.sagemaker.read(|st| {
        (
            st.endpoints
                .values()
                .filter(|e| {
                    matches!(
                        e["EndpointStatus"].as_str(),
                        Some("InService" | "Updating" | "Creating")
                    )
                })
                .map(|e| {
                    (
                        s(e, "EndpointName"),
                        s(e, "EndpointConfigName"),
                        s(e, "EndpointStatus"),
                    )
                })
                .collect::<Vec<_>>(),
            st.training_jobs
                .values()
                .filter(|j| {
                    matches!(
                        j["TrainingJobStatus"].as_str(),
                        Some("InProgress" | "Stopping")
                    )
                })
                .map(|j| s(j, "TrainingJobName"))
                .collect::<Vec<_>>(),
        )
    });
    let undelivered: Vec<String> = cloud.sagemaker.read(|st| {
        st.undelivered
            .keys()
            .filter(|n| !jobs.contains(n) && st.training_jobs.contains_key(*n))
            .cloned()
            .collect()
    });
    for job in undelivered {
        tracing::info!(%job, "delivering the training job's state-change event that did not arrive before the restart");
        let c = cloud.clone();
        tokio::spawn(async move { training_event(&c, &job).await });
    }
    for job in jobs {
        set_job(&cloud, &job, |o| {
            o.insert("TrainingJobStatus".into(), json!("Failed"));
            o.insert(
                "FailureReason".into(),
                json!("InternalServerError: the local cloud stopped while this job ran; start the training again"),
            );
            o.insert("TrainingEndTime".into(), json!(httpx::now_epoch()));
        });
        let c = cloud.clone();
        tokio::spawn(async move { training_event(&c, &job).await });
    }
    for (name, config, status) in endpoints {
        let c = cloud.clone();
        tokio::spawn(async move {
            match start_backend(&c, &name, &config).await {
                Ok(b) => {
                    if let Ok(mut l) = c.sagemaker.live.lock() {
                        l.insert(name.clone(), b);
                    }
                    let pv = variants_view(&c, &config);
                    set_endpoint(&c, &name, |o| {
                        o.insert("EndpointStatus".into(), json!("InService"));
                        o.insert("ProductionVariants".into(), pv);
                        if status == "Updating" {
                            o.insert(
                                "FailureReason".into(),
                                json!("the local cloud stopped during this update; the previous model keeps serving: deploy the new one again"),
                            );
                        }
                    });
                }
                Err(reason) => set_endpoint(&c, &name, |o| {
                    o.insert("EndpointStatus".into(), json!("Failed"));
                    o.insert("FailureReason".into(), json!(reason));
                }),
            }
            if status != "InService" {
                endpoint_event(&c, &name).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_sagemakers_pattern() {
        assert!(valid_name("wastesort-local-20261128t100000z-ab12"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("x-"));
        assert!(!valid_name("a_b"));
        assert!(!valid_name(&"a".repeat(64)));
    }

    #[test]
    fn event_details_use_epoch_ms_and_tag_maps() {
        let d = event_detail(
            &json!({ "CreationTime": 1_780_000_000.5, "TrainingJobStatus": "Completed" }),
            &[json!({ "Key": "app", "Value": "wastesort" })],
        );
        assert_eq!(d["CreationTime"], json!(1_780_000_000_500_i64));
        assert_eq!(d["Tags"]["app"], "wastesort");
    }

    #[test]
    fn tarballs_hold_relative_paths() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("metrics.json"), "{}")?;
        std::fs::write(dir.path().join("sub/x"), "1")?;
        let gz = tar_gz_dir(dir.path())?;
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let names: Vec<String> = a
            .entries()?
            .filter_map(|e| e.ok()?.path().ok().map(|p| p.display().to_string()))
            .collect();
        assert_eq!(names, vec!["metrics.json", "sub/x"]);
        Ok(())
    }
}
