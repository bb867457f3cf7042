//! `./dev bench local [--runs N] [--output table|json]`: figures of the local cloud, measured
//! through the real `deployer` binary and the REST API on a fresh state directory
//! (`DEPLOYER_STATE_DIR`), torn down at the end with `deployer down --yes` (also on a panic, by
//! the harness's drop guard, and on Ctrl-C).
//!
//! 1. **The cycle**, `--runs` times (default 3): `deployer dataset push` of a 300-image
//!    synthetic data set (a different seed each run) → the new model is staged → accept →
//!    a prediction answers with its id. Per step wall time: the push (the command), push →
//!    staged (from the push's return until `GET /models` shows it staged, polled every
//!    200 ms), of which the training container's run (DescribeTrainingJob through the local
//!    cloud's front door: the `Training` secondary-status transition's EndTime − StartTime),
//!    accept → serving (from the accept call until the first prediction answered by the new
//!    model), and the cycle total (push + push → staged + accept → serving) with and without
//!    the training container's time. Median, min and max over the runs. Target: cycle without
//!    training ≤ 30 s.
//! 2. **The UpdateEndpoint switch** (runs 2..N, a model already serving): a background thread
//!    predicts back to back through the local API gateway from 1 s before the accept until 2 s
//!    after the new model is `deployed`; the switch is the time from the accept call's return
//!    to the first prediction answered by the new model id. Median switch (target ≤ 5 s), and
//!    the predictions' p50/p99/max latency and failures over all switches.
//! 3. **Memory**: every 200 ms from the end of `up` until teardown, the summed VmRSS of the
//!    local cloud's process group (its pid from `deployer local status --output json`; members
//!    are the processes whose `/proc/<pid>/stat` pgrp is that pid: the local cloud, Lambda
//!    runtimes, model servers, training jobs) and, separately, of the emulator's. Peak, and
//!    the value at the end with one endpoint serving.
//! 4. **`GET /api/models` with 100 more model versions**: 100 staged records with metrics are
//!    written through the front door with the pipeline's own repository
//!    (`pipeline_core::repo::Repo::create_model`, the item shape the handlers write), then 200
//!    sequential GETs (after 3 untimed warm-ups): median and p99 (target ≤ 20 ms). To show where
//!    the time goes: `GET /api/health` (gateway + Lambda, no DynamoDB), and the one DynamoDB
//!    Query that listing makes, timed straight against the emulator and through the front door.
//!
//! Training uses the e2e test's small fixed hyperparameters (`e2e::HYPERPARAMETERS`). Progress
//! goes to stderr; the table (or one JSON object with `--output json`) to stdout. The local
//! cloud's logs are copied to `target/localbench/<UTC stamp>/` before teardown, since `down`
//! removes the state directory's contents.
//!
//! Needs `cargo build -p deployer -p e2e --bins` first (`./dev bench local` does it): the
//! deployer is found next to this binary and copied to a temporary directory, so a rebuild
//! during the run changes nothing under test.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sagemaker::types::SecondaryStatus;
use e2e::{
    percentile, repo_root, step, str_field, synthetic_dataset, text, utc_stamp, wait_until, Api,
    Cloud, Http, Predictor, Sample, DATASET_IMAGES,
};
use pipeline_core::metrics::{ConfusionMatrix, Metrics};
use pipeline_core::repo::{ModelRecord, Repo};
use pipeline_core::status::ModelStatus;
use serde_json::{json, Value};

const USAGE: &str = "usage: localbench [--runs N (default 3)] [--output table|json]";

/// Targets (from the issue).
const CYCLE_TARGET_S: f64 = 30.0;
const SWITCH_TARGET_S: f64 = 5.0;
const MODELS_P99_TARGET_MS: f64 = 20.0;

const EXTRA_MODELS: usize = 100;
const MODELS_GETS: usize = 200;
const WARMUP_GETS: usize = 3;
const HEALTH_GETS: usize = 50;
const QUERIES: usize = 20;
const MEMORY_EVERY: Duration = Duration::from_millis(200);
const POLL: Duration = Duration::from_millis(200);
const STAGED_TIMEOUT: Duration = Duration::from_secs(300);
const SERVING_TIMEOUT: Duration = Duration::from_secs(180);
const SECOND: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ arguments

#[derive(Debug, Clone, Copy, PartialEq)]
enum Output {
    Table,
    Json,
}

#[derive(Debug)]
struct Args {
    runs: usize,
    output: Output,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        runs: 3,
        output: Output::Table,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => {
                let v = args.next().ok_or("--runs needs a number")?;
                out.runs = v
                    .parse()
                    .map_err(|e| format!("--runs {v}: not a number ({e})"))?;
                if out.runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            "--output" => {
                out.output = match args.next().as_deref() {
                    Some("table") => Output::Table,
                    Some("json") => Output::Json,
                    other => {
                        return Err(format!("--output: expected table or json, got {other:?}"))
                    }
                }
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = bench(args.runs);
    match args.output {
        Output::Table => print!("{}", report.table()),
        Output::Json => println!("{}", report.json()),
    }
    ExitCode::SUCCESS
}

// ------------------------------------------------------------------ statistics

#[derive(Debug, Clone, Copy)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

fn spread(v: &[f64]) -> Option<Spread> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    };
    Some(Spread {
        median,
        min: s[0],
        max: s[n - 1],
    })
}

fn spread_json(v: &[f64], target_max: Option<f64>) -> Value {
    match spread(v) {
        Some(s) => json!({
            "median": s.median, "min": s.min, "max": s.max, "values": v,
            "target_max": target_max,
            "met": target_max.map(|t| s.median <= t),
        }),
        None => Value::Null,
    }
}

/// p50, p99 (nearest rank below, as the e2e harness) and max of latencies, in ms.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    n: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn latency(d: &[Duration]) -> Latency {
    let mut s = d.to_vec();
    s.sort_unstable();
    let ms = |x: Duration| x.as_secs_f64() * 1e3;
    Latency {
        n: s.len(),
        p50_ms: ms(percentile(&s, 50)),
        p99_ms: ms(percentile(&s, 99)),
        max_ms: ms(s.last().copied().unwrap_or_default()),
    }
}

fn latency_json(l: &Latency, target_p99_ms: Option<f64>) -> Value {
    json!({
        "n": l.n, "p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms,
        "target_p99_ms": target_p99_ms,
        "met": target_p99_ms.map(|t| l.p99_ms <= t),
    })
}

// ------------------------------------------------------------------ memory

/// Summed VmRSS of one process group.
#[derive(Debug, Clone, Copy, Default)]
struct Rss {
    bytes: u64,
    procs: usize,
}

/// The process group of a live process (`/proc/<pid>/stat`, the third field after `)`).
fn pgrp_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// VmRSS in bytes (absent for kernel threads and zombies).
fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Summed RSS of every process in each of `groups`, in one pass over `/proc`.
fn groups_rss(groups: &[u32]) -> Vec<Rss> {
    let mut out = vec![Rss::default(); groups.len()];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
    {
        let Some(g) = pgrp_of(pid) else { continue };
        if let Some(i) = groups.iter().position(|&x| x == g) {
            if let Some(b) = vm_rss(pid) {
                out[i].bytes += b;
                out[i].procs += 1;
            }
        }
    }
    out
}

#[derive(Debug, Clone, Default)]
struct Peak {
    rss: Rss,
    /// What the benchmark was doing when the peak was sampled.
    during: String,
}

#[derive(Debug, Clone, Default)]
struct MemStats {
    samples: usize,
    cloud: Peak,
    emulator: Peak,
    /// Both groups at the same instant.
    total_bytes: u64,
}

/// Samples both process groups every [`MEMORY_EVERY`] until stopped.
#[derive(Debug)]
struct MemSampler {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<MemStats>>,
    phase: Arc<Mutex<String>>,
    handle: Option<JoinHandle<()>>,
}

impl MemSampler {
    fn start(cloud_pid: u32, emulator_pid: u32) -> MemSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(MemStats::default()));
        let phase = Arc::new(Mutex::new(String::from("after up")));
        let (flag, st, ph) = (stop.clone(), stats.clone(), phase.clone());
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let r = groups_rss(&[cloud_pid, emulator_pid]);
                let during = ph.lock().map(|p| p.clone()).unwrap_or_default();
                if let Ok(mut s) = st.lock() {
                    s.samples += 1;
                    if r[0].bytes > s.cloud.rss.bytes {
                        s.cloud = Peak {
                            rss: r[0],
                            during: during.clone(),
                        };
                    }
                    if r[1].bytes > s.emulator.rss.bytes {
                        s.emulator = Peak { rss: r[1], during };
                    }
                    s.total_bytes = s.total_bytes.max(r[0].bytes + r[1].bytes);
                }
                std::thread::sleep(MEMORY_EVERY);
            }
        });
        MemSampler {
            stop,
            stats,
            phase,
            handle: Some(handle),
        }
    }

    fn phase(&self, what: &str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = what.to_string();
        }
    }

    fn stop(mut self) -> MemStats {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for MemSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------ AWS clients

/// Blocking SDK clients: SageMaker and DynamoDB through the front door, DynamoDB straight
/// against the emulator. Dummy credentials, us-east-1, as the deployer's local environment.
#[derive(Debug)]
struct Aws {
    rt: tokio::runtime::Runtime,
    sagemaker: aws_sdk_sagemaker::Client,
    dynamodb_front: aws_sdk_dynamodb::Client,
    dynamodb_emulator: aws_sdk_dynamodb::Client,
}

impl Aws {
    fn new(front: &str, emulator: &str) -> Aws {
        let rt = tokio::runtime::Runtime::new().expect("a tokio runtime for the SDK clients");
        let config = |endpoint: &str| {
            let creds =
                aws_credential_types::Credentials::new("testing", "testing", None, None, "bench");
            rt.block_on(
                aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new("us-east-1"))
                    .credentials_provider(creds)
                    .endpoint_url(endpoint)
                    .load(),
            )
        };
        let (f, e) = (config(front), config(emulator));
        Aws {
            sagemaker: aws_sdk_sagemaker::Client::new(&f),
            dynamodb_front: aws_sdk_dynamodb::Client::new(&f),
            dynamodb_emulator: aws_sdk_dynamodb::Client::new(&e),
            rt,
        }
    }

    /// The training container's run: the `Training` secondary status's EndTime − StartTime.
    fn training_seconds(&self, job: &str) -> Result<f64, String> {
        self.rt.block_on(async {
            let out = self
                .sagemaker
                .describe_training_job()
                .training_job_name(job)
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "DescribeTrainingJob {job}: {}",
                        aws_sdk_sagemaker::error::DisplayErrorContext(&e)
                    )
                })?;
            let transitions = out.secondary_status_transitions();
            let t = transitions
                .iter()
                .find(|t| t.status() == Some(&SecondaryStatus::Training))
                .ok_or_else(|| {
                    format!("DescribeTrainingJob {job}: no Training transition in {transitions:?}")
                })?;
            match (t.start_time(), t.end_time()) {
                (Some(s), Some(e)) => Ok(e.as_secs_f64() - s.as_secs_f64()),
                _ => Err(format!(
                    "DescribeTrainingJob {job}: the Training transition lacks StartTime or EndTime: {t:?}"
                )),
            }
        })
    }

    /// Writes `n` staged model records with metrics through the front door.
    fn insert_models(&self, models_table: &str, jobs_table: &str, n: usize) -> Vec<String> {
        let repo = Repo::new(self.dynamodb_front.clone(), models_table, jobs_table);
        self.rt.block_on(async {
            let mut ids = Vec::new();
            for i in 0..n {
                let id = format!("localbench-{i:03}");
                // Older than every real model, so they list after them.
                let at = format!("2020-01-01T{:02}:{:02}:00Z", i / 60, i % 60);
                let tp = 20 + (i % 10) as u64;
                let m = ModelRecord {
                    id: id.clone(),
                    status: ModelStatus::Staged,
                    created_at: at.clone(),
                    updated_at: at,
                    dataset: format!("datasets/20200101T{:02}{:02}00Z", i / 60, i % 60),
                    dataset_etag: Some(format!("\"{:032x}\"", i)),
                    training_job: id.clone(),
                    model_artifact: Some(format!("s3://localbench/{id}/output/model.tar.gz")),
                    endpoint_config: None,
                    metrics: Some(Metrics {
                        accuracy: 0.8,
                        precision: 0.8,
                        recall: 0.8,
                        f1: 0.8,
                        auc_roc: 0.85,
                        loss: 0.4,
                        support: 60,
                        confusion_matrix: ConfusionMatrix {
                            tp,
                            tn: 48 - tp,
                            fp: 6,
                            fn_: 6,
                        },
                        positive_class: Some("R".into()),
                        dataset: Some(json!({ "train": 240, "validation": 60 })),
                    }),
                    failure_reason: None,
                    decisions: vec![],
                };
                match repo.create_model(&m).await {
                    Ok(true) => ids.push(id),
                    Ok(false) => panic!("model record {id} already exists in {models_table}"),
                    Err(e) => panic!("writing model record {id} to {models_table}: {e}"),
                }
            }
            ids
        })
    }

    /// Times `n` Queries of the models table (`pk = MODEL`, every page), answering the
    /// latencies and the item count of the last.
    fn time_queries(
        &self,
        client: &aws_sdk_dynamodb::Client,
        table: &str,
        n: usize,
    ) -> (Vec<Duration>, usize) {
        self.rt.block_on(async {
            let mut lat = Vec::new();
            let mut items = 0;
            for _ in 0..n {
                let t = Instant::now();
                let mut start = None;
                items = 0;
                loop {
                    let page = client
                        .query()
                        .table_name(table)
                        .key_condition_expression("pk = :pk")
                        .expression_attribute_values(":pk", AttributeValue::S("MODEL".into()))
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .unwrap_or_else(|e| {
                            panic!(
                                "Query {table}: {}",
                                aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                            )
                        });
                    items += page.items().len();
                    match page.last_evaluated_key() {
                        Some(k) if !k.is_empty() => start = Some(k.clone()),
                        _ => break,
                    }
                }
                lat.push(t.elapsed());
            }
            (lat, items)
        })
    }
}

// ------------------------------------------------------------------ the cycle

/// Predictions made during one switch.
#[derive(Debug, Clone)]
struct Switch {
    /// Accept call returned → first answer from the new model.
    seconds: f64,
    latencies: Vec<Duration>,
    failures: usize,
    first_failures: Vec<String>,
    /// Answers from another model after the first answer from the new one.
    flaps: usize,
    /// Answers from the new model that came back before the accept call returned.
    early: usize,
}

#[derive(Debug, Clone)]
struct Cycle {
    model_id: String,
    push_s: f64,
    push_to_staged_s: f64,
    training_s: f64,
    accept_to_serving_s: f64,
    accept_to_deployed_s: f64,
    switch: Option<Switch>,
}

impl Cycle {
    fn total_s(&self) -> f64 {
        self.push_s + self.push_to_staged_s + self.accept_to_serving_s
    }

    fn excluding_training_s(&self) -> f64 {
        self.total_s() - self.training_s
    }
}

fn model_ids(api: &Api) -> Vec<String> {
    api.models()
        .iter()
        .map(|m| text(m, "id").to_string())
        .collect()
}

fn accept(api: &Api, id: &str) {
    let path = format!("/models/{id}/accept");
    let (status, body) = api.post(&path, &json!({ "reason": "localbench" }));
    assert_eq!(
        status, 202,
        "POST {path}: expected 202 (deployment started), got {status}: {body}"
    );
}

/// Waits until `id` is deployed, the endpoint InService serving it, and `previous` (if any)
/// superseded; answers when that was seen.
fn wait_deployed(api: &Api, id: &str, previous: Option<&str>) -> Instant {
    wait_until(
        &format!("model {id} is deployed and served"),
        SERVING_TIMEOUT,
        POLL,
        || {
            let ep = api.endpoint();
            let models = api.models();
            let status = |want: &str| {
                models
                    .iter()
                    .find(|m| text(m, "id") == want)
                    .map(|m| text(m, "status").to_string())
                    .unwrap_or_default()
            };
            if status(id) == "deploy_failed" {
                panic!("model {id} failed to deploy: {models:?}");
            }
            let seen = Instant::now();
            let ok = text(&ep, "status") == "InService"
                && text(&ep, "serving_model_id") == id
                && status(id) == "deployed"
                && previous.is_none_or(|p| status(p) == "superseded");
            if ok {
                Ok(seen)
            } else {
                Err(format!(
                    "endpoint {ep}; {id} {}; previous {previous:?} {}",
                    status(id),
                    previous.map(status).unwrap_or_default()
                ))
            }
        },
    )
}

fn cycle(
    n: usize,
    cloud: &Cloud,
    api: &Api,
    aws: &Aws,
    mem: &MemSampler,
    png: &[u8],
    previous: Option<&str>,
) -> Cycle {
    let seed = 1000 + n as u64;
    let data = synthetic_dataset(seed);
    let path = data.path().to_str().expect("a UTF-8 temporary path");
    let known = model_ids(api);

    mem.phase(&format!("cycle {n}: push"));
    let t = Instant::now();
    let pushed = cloud.json_ok(&["dataset", "push", path]);
    let push_s = t.elapsed().as_secs_f64();
    eprintln!(
        "pushed {DATASET_IMAGES} images (seed {seed}) to s3://{}/{} in {push_s:.2} s",
        text(&pushed, "bucket"),
        text(&pushed, "prefix")
    );

    mem.phase(&format!("cycle {n}: push → staged"));
    let pushed_at = Instant::now();
    let (model, staged_at) = wait_until(
        "the pushed data set's model is staged",
        STAGED_TIMEOUT,
        POLL,
        || {
            let models = api.models();
            let seen = Instant::now();
            let fresh: Vec<&Value> = models
                .iter()
                .filter(|m| !known.iter().any(|k| k == text(m, "id")))
                .collect();
            if let Some(m) = fresh.iter().find(|m| text(m, "status") == "staged") {
                return Ok(((*m).clone(), seen));
            }
            if let Some(m) = fresh.iter().find(|m| text(m, "status") == "failed") {
                panic!("the new model failed to train: {m}");
            }
            Err(format!(
                "new models: {:?}",
                fresh
                    .iter()
                    .map(|m| format!("{}={}", text(m, "id"), text(m, "status")))
                    .collect::<Vec<_>>()
            ))
        },
    );
    let push_to_staged_s = (staged_at - pushed_at).as_secs_f64();
    let id = text(&model, "id").to_string();
    let job = str_field(&model, "training_job", &format!("staged model {id}"));
    let training_s = aws
        .training_seconds(&job)
        .unwrap_or_else(|e| panic!("the training container's time of {job}: {e}"));
    eprintln!("model {id} staged {push_to_staged_s:.2} s after the push (training container {training_s:.2} s)");

    mem.phase(&format!("cycle {n}: accept → serving"));
    let (accept_to_serving_s, accept_to_deployed_s, switch) = match previous {
        None => {
            let t = Instant::now();
            accept(api, &id);
            let served = wait_until(
                &format!("a prediction answers from {id}"),
                SERVING_TIMEOUT,
                Duration::from_millis(100),
                || match api
                    .http
                    .try_post_bytes(&api.at("/predict"), "image/png", png)
                {
                    Ok((200, body)) if text(&body, "model_id") == id => Ok(Instant::now()),
                    Ok((status, body)) => Err(format!("status {status}: {body}")),
                    Err(e) => Err(format!("no answer: {e}")),
                },
            );
            let deployed = wait_deployed(api, &id, None);
            (
                (served - t).as_secs_f64(),
                (deployed - t).as_secs_f64(),
                None,
            )
        }
        Some(prev) => {
            let predictor = Predictor::start(api, png);
            std::thread::sleep(SECOND);
            let t = Instant::now();
            accept(api, &id);
            let returned = Instant::now();
            let deployed = wait_deployed(api, &id, Some(prev));
            std::thread::sleep(2 * SECOND);
            let samples = predictor.stop();
            let (served, sw) = switch_of(&samples, &id, returned);
            eprintln!(
                "switch {prev} → {id}: {:.2} s after the accept returned; {} predictions, {} failed, {} flaps",
                sw.seconds,
                samples.len(),
                sw.failures,
                sw.flaps
            );
            (
                (served - t).as_secs_f64(),
                (deployed - t).as_secs_f64(),
                Some(sw),
            )
        }
    };
    eprintln!("model {id} serving {accept_to_serving_s:.2} s after the accept call (deployed record seen at {accept_to_deployed_s:.2} s)");
    Cycle {
        model_id: id,
        push_s,
        push_to_staged_s,
        training_s,
        accept_to_serving_s,
        accept_to_deployed_s,
        switch,
    }
}

/// When the first answer from `id` came back, and the switch's figures.
fn switch_of(samples: &[Sample], id: &str, returned: Instant) -> (Instant, Switch) {
    let is_new = |s: &Sample| s.status == 200 && s.model_id.as_deref() == Some(id);
    let first = samples.iter().position(is_new).unwrap_or_else(|| {
        panic!(
            "no prediction was answered by {id} during the switch ({} made; last: {:?})",
            samples.len(),
            samples.last()
        )
    });
    let served = samples[first].done;
    let failed: Vec<(usize, &Sample)> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.status != 200)
        .collect();
    (
        served,
        Switch {
            seconds: served.saturating_duration_since(returned).as_secs_f64(),
            latencies: samples.iter().map(|s| s.elapsed).collect(),
            failures: failed.len(),
            first_failures: failed
                .iter()
                .take(3)
                .map(|(i, s)| format!("#{i}: status {} {}", s.status, s.detail))
                .collect(),
            flaps: samples[first..]
                .iter()
                .filter(|s| s.status == 200 && !is_new(s))
                .count(),
            early: samples
                .iter()
                .filter(|s| is_new(s) && s.done < returned)
                .count(),
        },
    )
}

// ------------------------------------------------------------------ the run

#[derive(Debug)]
struct ApiFigures {
    models_listed: usize,
    models: Latency,
    health: Latency,
    query_emulator: Latency,
    query_front: Latency,
    query_items: usize,
}

#[derive(Debug)]
struct Report {
    runs: usize,
    state_dir: String,
    logs_dir: String,
    up_s: f64,
    cycles: Vec<Cycle>,
    memory: MemStats,
    end_cloud: Rss,
    end_emulator: Rss,
    end_endpoints: usize,
    api: ApiFigures,
    down_s: f64,
    down_code: Option<i32>,
}

/// The cloud, and the local cloud's logs copied out before the state directory goes.
#[derive(Debug)]
struct Guard {
    cloud: Cloud,
    logs: PathBuf,
    saved: bool,
    /// The deployer binary the cloud runs; dropped after the cloud (its guard runs `down`).
    _bin: tempfile::TempDir,
}

impl Guard {
    fn save_logs(&mut self) {
        self.saved = true;
        let from = self.cloud.env_state_dir();
        let n = copy_logs(&from, &from, &self.logs);
        eprintln!("copied {n} log files to {}", self.logs.display());
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.saved {
            self.save_logs();
        }
    }
}

/// Copies every `*.log` and `outbox.jsonl` under `dir` (keeping the layout) into `to`.
fn copy_logs(root: &Path, dir: &Path, to: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            n += copy_logs(root, &p, to);
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".log") || name == "outbox.jsonl") {
            continue;
        }
        let Ok(rel) = p.strip_prefix(root) else {
            continue;
        };
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::copy(&p, &dest).is_ok() {
            n += 1;
        }
    }
    n
}

/// On Ctrl-C: `deployer down --yes` on this state directory, then exit 130.
fn on_ctrl_c(cloud: &Cloud) {
    let mut down = cloud.command(&["down", "--yes"]);
    let state = cloud.state_dir().to_path_buf();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
            eprintln!("interrupted: deployer down --yes");
            let _ = down.status();
            let _ = std::fs::remove_dir_all(&state);
            std::process::exit(130);
        }
    });
}

fn pid_at(status: &Value, part: &str) -> u32 {
    status
        .get(part)
        .and_then(|p| p.get("pid"))
        .and_then(Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| {
            panic!("`deployer local status --output json`: no {part}.pid in {status}")
        })
}

fn endpoint_processes(cloud: &Cloud) -> usize {
    let status = cloud.json_ok(&["local", "status"]);
    status
        .get("processes")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter(|p| text(p, "kind") == "endpoint").count())
        .unwrap_or(0)
}

fn bench(runs: usize) -> Report {
    let logs = repo_root()
        .join("target/localbench")
        .join(utc_stamp(SystemTime::now()));
    // A private copy of the deployer: a rebuild of target/debug/deployer during the run (someone
    // else's cargo build) must not change the binary under test, nor the path `up` re-executes
    // for `deployer local serve`.
    let bin = tempfile::Builder::new()
        .prefix("localbench-bin-")
        .tempdir()
        .expect("a temporary directory for the deployer binary");
    let deployer = bin.path().join("deployer");
    std::fs::copy(e2e::deployer_bin(), &deployer)
        .unwrap_or_else(|e| panic!("copying the deployer binary to {}: {e}", deployer.display()));
    let mut guard = Guard {
        cloud: Cloud::with_deployer(deployer),
        logs,
        saved: false,
        _bin: bin,
    };
    on_ctrl_c(&guard.cloud);
    let cloud = &guard.cloud;
    let http = Http::new();
    let png = e2e::png(7, true);

    let t = Instant::now();
    let up = step("up", || cloud.json_ok(&["up"]));
    let up_s = t.elapsed().as_secs_f64();
    let api = Api::from_up(&up, http);
    let outputs = up
        .get("outputs")
        .unwrap_or_else(|| panic!("`deployer up --output json`: no outputs in {up}"));
    let models_table = str_field(outputs, "ModelsTableName", "`deployer up` outputs");
    let jobs_table = str_field(outputs, "JobsTableName", "`deployer up` outputs");
    let status = cloud.json_ok(&["local", "status"]);
    let (cloud_pid, emulator_pid) = (pid_at(&status, "localcloud"), pid_at(&status, "emulator"));
    let emulator_url = status
        .get("emulator")
        .map(|e| str_field(e, "endpoint", "`deployer local status` emulator"))
        .unwrap_or_else(|| panic!("`deployer local status`: no emulator in {status}"));
    let endpoints_file = cloud.env_state_dir().join("endpoints.json");
    let endpoints: Value = std::fs::read_to_string(&endpoints_file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| panic!("cannot read {} as JSON", endpoints_file.display()));
    let front = str_field(&endpoints, "default", &endpoints_file.display().to_string());
    eprintln!(
        "api {}\nfront door {front}\nemulator {emulator_url} (pid {emulator_pid})\nlocal cloud pid {cloud_pid}\nmodels table {models_table}",
        api.url
    );
    let mem = MemSampler::start(cloud_pid, emulator_pid);
    let aws = Aws::new(&front, &emulator_url);

    let mut cycles: Vec<Cycle> = Vec::new();
    for n in 1..=runs {
        let previous = cycles.last().map(|c| c.model_id.clone());
        let c = step(&format!("cycle {n}/{runs}"), || {
            cycle(n, cloud, &api, &aws, &mem, &png, previous.as_deref())
        });
        cycles.push(c);
    }

    mem.phase("one endpoint serving");
    step("wait until one model server is left", || {
        wait_until(
            "`deployer local status` lists one endpoint process",
            Duration::from_secs(30),
            POLL,
            || match endpoint_processes(cloud) {
                1 => Ok(()),
                n => Err(format!("{n} endpoint processes")),
            },
        )
    });

    mem.phase(&format!("GET /models with {EXTRA_MODELS} more models"));
    let api_figures = step("GET /models latency", || {
        let ids = aws.insert_models(&models_table, &jobs_table, EXTRA_MODELS);
        let mut listed = 0;
        for _ in 0..WARMUP_GETS {
            let models = api.models();
            listed = models.len();
            let missing = ids
                .iter()
                .filter(|id| !models.iter().any(|m| text(m, "id") == id.as_str()))
                .count();
            assert_eq!(
                missing, 0,
                "GET /models does not list {missing} of the {EXTRA_MODELS} inserted records"
            );
        }
        let url = api.at("/models");
        let timed = |url: &str, n: usize| -> Vec<Duration> {
            (0..n)
                .map(|_| {
                    let t = Instant::now();
                    let (status, body) = api.http.get(url);
                    let d = t.elapsed();
                    assert_eq!(status, 200, "GET {url}: {status} {body}");
                    d
                })
                .collect()
        };
        let models = latency(&timed(&url, MODELS_GETS));
        let health = latency(&timed(&api.at("/health"), HEALTH_GETS));
        let (q_emu, items) = aws.time_queries(&aws.dynamodb_emulator, &models_table, QUERIES);
        let (q_front, _) = aws.time_queries(&aws.dynamodb_front, &models_table, QUERIES);
        ApiFigures {
            models_listed: listed,
            models,
            health,
            query_emulator: latency(&q_emu),
            query_front: latency(&q_front),
            query_items: items,
        }
    });

    let end_endpoints = endpoint_processes(cloud);
    let end = groups_rss(&[cloud_pid, emulator_pid]);
    let memory = mem.stop();

    guard.save_logs();
    let t = Instant::now();
    let down = step("down", || {
        guard.cloud.run(&["down", "--yes", "--output", "json"])
    });
    let down_s = t.elapsed().as_secs_f64();
    guard.cloud.torn_down();
    if down.code != Some(0) {
        eprintln!(
            "`deployer down --yes` exited {:?}:\n{}\n{}",
            down.code, down.stdout, down.stderr
        );
    }
    Report {
        runs,
        state_dir: guard.cloud.state_dir().display().to_string(),
        logs_dir: guard.logs.display().to_string(),
        up_s,
        cycles,
        memory,
        end_cloud: end[0],
        end_emulator: end[1],
        end_endpoints,
        api: api_figures,
        down_s,
        down_code: down.code,
    }
}

// ------------------------------------------------------------------ output

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    }
}

impl Report {
    fn series(&self, f: impl Fn(&Cycle) -> f64) -> Vec<f64> {
        self.cycles.iter().map(f).collect()
    }

    fn switches(&self) -> Vec<&Switch> {
        self.cycles
            .iter()
            .filter_map(|c| c.switch.as_ref())
            .collect()
    }

    fn switch_latency(&self) -> Latency {
        let all: Vec<Duration> = self
            .switches()
            .iter()
            .flat_map(|s| s.latencies.iter().copied())
            .collect();
        latency(&all)
    }

    fn table(&self) -> String {
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut row = |figure: &str, value: String, target: &str, met: Option<bool>| {
            rows.push([
                figure.to_string(),
                value,
                target.to_string(),
                verdict(met).to_string(),
            ])
        };
        let secs = |v: &[f64]| match spread(v) {
            Some(s) => format!("{:>6.2} s  (min {:.2}, max {:.2})", s.median, s.min, s.max),
            None => "n/a".into(),
        };
        let runs = self.runs;
        row(
            "deployer up (fresh state)",
            format!("{:>6.2} s", self.up_s),
            "none given",
            None,
        );
        row(
            &format!("cycle: dataset push ({DATASET_IMAGES} images)"),
            secs(&self.series(|c| c.push_s)),
            "none given",
            None,
        );
        row(
            "cycle: push → staged",
            secs(&self.series(|c| c.push_to_staged_s)),
            "none given",
            None,
        );
        row(
            "  of which the training container",
            secs(&self.series(|c| c.training_s)),
            "none given",
            None,
        );
        row(
            "cycle: accept → serving (prediction)",
            secs(&self.series(|c| c.accept_to_serving_s)),
            "none given",
            None,
        );
        row(
            "  (accept → record deployed, seen)",
            secs(&self.series(|c| c.accept_to_deployed_s)),
            "none given",
            None,
        );
        row(
            "cycle total",
            secs(&self.series(Cycle::total_s)),
            "none given",
            None,
        );
        let excl = self.series(Cycle::excluding_training_s);
        row(
            "cycle total excluding training",
            secs(&excl),
            &format!("≤ {CYCLE_TARGET_S:.0} s"),
            spread(&excl).map(|s| s.median <= CYCLE_TARGET_S),
        );
        let switches = self.switches();
        let sw: Vec<f64> = switches.iter().map(|s| s.seconds).collect();
        row(
            &format!("switch: accept returned → new id ({}x)", sw.len()),
            secs(&sw),
            &format!("≤ {SWITCH_TARGET_S:.0} s"),
            spread(&sw).map(|s| s.median <= SWITCH_TARGET_S),
        );
        let l = self.switch_latency();
        row(
            "switch: predict p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} ms  (n {})",
                l.p50_ms, l.p99_ms, l.max_ms, l.n
            ),
            "none given",
            None,
        );
        let failures: usize = switches.iter().map(|s| s.failures).sum();
        let flaps: usize = switches.iter().map(|s| s.flaps).sum();
        row(
            "switch: failed predictions",
            format!("{failures} of {}", l.n),
            "0",
            (!switches.is_empty()).then_some(failures == 0),
        );
        row(
            "switch: answers from the old model after",
            format!("{flaps}"),
            "0",
            (!switches.is_empty()).then_some(flaps == 0),
        );
        let m = &self.memory;
        row(
            "memory peak: local cloud group",
            format!(
                "{:>6.1} MiB ({} procs, during {})",
                mib(m.cloud.rss.bytes),
                m.cloud.rss.procs,
                m.cloud.during
            ),
            "none given",
            None,
        );
        row(
            "memory peak: emulator",
            format!(
                "{:>6.1} MiB ({} procs, during {})",
                mib(m.emulator.rss.bytes),
                m.emulator.rss.procs,
                m.emulator.during
            ),
            "none given",
            None,
        );
        row(
            "memory peak: both (same sample)",
            format!("{:>6.1} MiB ({} samples)", mib(m.total_bytes), m.samples),
            "none given",
            None,
        );
        row(
            &format!(
                "memory at end: local cloud ({} endpoint)",
                self.end_endpoints
            ),
            format!(
                "{:>6.1} MiB ({} procs)",
                mib(self.end_cloud.bytes),
                self.end_cloud.procs
            ),
            "none given",
            None,
        );
        row(
            "memory at end: emulator",
            format!(
                "{:>6.1} MiB ({} procs)",
                mib(self.end_emulator.bytes),
                self.end_emulator.procs
            ),
            "none given",
            None,
        );
        let a = &self.api;
        let lat = |l: &Latency| {
            format!(
                "{:.1} / {:.1} ms  (max {:.1}, n {})",
                l.p50_ms, l.p99_ms, l.max_ms, l.n
            )
        };
        row(
            &format!("GET /api/models ({} models) p50 / p99", a.models_listed),
            lat(&a.models),
            &format!("p99 ≤ {MODELS_P99_TARGET_MS:.0} ms"),
            Some(a.models.p99_ms <= MODELS_P99_TARGET_MS),
        );
        row(
            "  GET /api/health p50 / p99",
            lat(&a.health),
            "none given",
            None,
        );
        row(
            &format!("  DynamoDB Query ({} items), emulator", a.query_items),
            lat(&a.query_emulator),
            "none given",
            None,
        );
        row(
            "  DynamoDB Query, via the front door",
            lat(&a.query_front),
            "none given",
            None,
        );
        row(
            "deployer down --yes",
            format!("{:>6.2} s  (exit {:?})", self.down_s, self.down_code),
            "none given",
            None,
        );

        let widths: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
                    .max(["FIGURE", "VALUE", "TARGET", "RESULT"][i].len())
            })
            .collect();
        let line = |cells: [&str; 4]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(c);
                if i < 3 {
                    s.push_str(&" ".repeat(pad + 2));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = format!(
            "local cloud benchmark: {runs} cycles, hyperparameters {}\n\n",
            e2e::HYPERPARAMETERS
        );
        out.push_str(&line(["FIGURE", "VALUE", "TARGET", "RESULT"]));
        for r in &rows {
            out.push_str(&line([&r[0], &r[1], &r[2], &r[3]]));
        }
        out.push_str("\nper run:\n");
        for (i, c) in self.cycles.iter().enumerate() {
            out.push_str(&format!(
                "  {}  {}  push {:.2} s, push→staged {:.2} s (training {:.2} s), accept→serving {:.2} s, total {:.2} s, excl. training {:.2} s{}\n",
                i + 1,
                c.model_id,
                c.push_s,
                c.push_to_staged_s,
                c.training_s,
                c.accept_to_serving_s,
                c.total_s(),
                c.excluding_training_s(),
                c.switch
                    .as_ref()
                    .map(|s| format!(", switch {:.2} s ({} predictions, {} failed)", s.seconds, s.latencies.len(), s.failures))
                    .unwrap_or_default()
            ));
        }
        for s in self.switches() {
            for f in &s.first_failures {
                out.push_str(&format!("  failed prediction: {f}\n"));
            }
            if s.early > 0 {
                out.push_str(&format!(
                    "  note: {} answers from the new model came back before the accept call returned\n",
                    s.early
                ));
            }
        }
        out.push_str(&format!(
            "\nlogs: {}\nstate dir (removed): {}\n",
            self.logs_dir, self.state_dir
        ));
        out
    }

    fn json(&self) -> Value {
        let switches = self.switches();
        let sw: Vec<f64> = switches.iter().map(|s| s.seconds).collect();
        let l = self.switch_latency();
        let excl = self.series(Cycle::excluding_training_s);
        let rss = |r: &Rss| json!({ "bytes": r.bytes, "mib": mib(r.bytes), "procs": r.procs });
        let m = &self.memory;
        let a = &self.api;
        json!({
            "runs": self.runs,
            "dataset_images": DATASET_IMAGES,
            "hyperparameters": serde_json::from_str::<Value>(e2e::HYPERPARAMETERS).unwrap_or_default(),
            "up_s": self.up_s,
            "cycle": {
                "push_s": spread_json(&self.series(|c| c.push_s), None),
                "push_to_staged_s": spread_json(&self.series(|c| c.push_to_staged_s), None),
                "training_container_s": spread_json(&self.series(|c| c.training_s), None),
                "accept_to_serving_s": spread_json(&self.series(|c| c.accept_to_serving_s), None),
                "accept_to_deployed_s": spread_json(&self.series(|c| c.accept_to_deployed_s), None),
                "total_s": spread_json(&self.series(Cycle::total_s), None),
                "total_excluding_training_s": spread_json(&excl, Some(CYCLE_TARGET_S)),
            },
            "switch": {
                "count": sw.len(),
                "seconds": spread_json(&sw, Some(SWITCH_TARGET_S)),
                "predict_latency": latency_json(&l, None),
                "failures": switches.iter().map(|s| s.failures).sum::<usize>(),
                "failures_target": 0,
                "first_failures": switches.iter().flat_map(|s| s.first_failures.clone()).collect::<Vec<_>>(),
                "old_model_answers_after_switch": switches.iter().map(|s| s.flaps).sum::<usize>(),
            },
            "memory": {
                "samples": m.samples,
                "interval_ms": MEMORY_EVERY.as_millis() as u64,
                "local_cloud_peak": rss(&m.cloud.rss),
                "local_cloud_peak_during": m.cloud.during,
                "emulator_peak": rss(&m.emulator.rss),
                "emulator_peak_during": m.emulator.during,
                "both_peak_bytes": m.total_bytes,
                "local_cloud_end": rss(&self.end_cloud),
                "emulator_end": rss(&self.end_emulator),
                "endpoint_processes_at_end": self.end_endpoints,
                "target": Value::Null,
            },
            "api_models": {
                "models_listed": a.models_listed,
                "get_models": latency_json(&a.models, Some(MODELS_P99_TARGET_MS)),
                "get_health": latency_json(&a.health, None),
                "dynamodb_query_emulator": latency_json(&a.query_emulator, None),
                "dynamodb_query_front_door": latency_json(&a.query_front, None),
                "query_items": a.query_items,
            },
            "per_run": self.cycles.iter().map(|c| json!({
                "model_id": c.model_id,
                "push_s": c.push_s,
                "push_to_staged_s": c.push_to_staged_s,
                "training_container_s": c.training_s,
                "accept_to_serving_s": c.accept_to_serving_s,
                "accept_to_deployed_s": c.accept_to_deployed_s,
                "total_s": c.total_s(),
                "total_excluding_training_s": c.excluding_training_s(),
                "switch": c.switch.as_ref().map(|s| json!({
                    "seconds": s.seconds,
                    "predictions": s.latencies.len(),
                    "failures": s.failures,
                    "old_model_answers_after_switch": s.flaps,
                    "new_model_answers_before_accept_returned": s.early,
                    "latency": latency_json(&latency(&s.latencies), None),
                })),
            })).collect::<Vec<_>>(),
            "down_s": self.down_s,
            "down_exit_code": self.down_code,
            "logs_dir": self.logs_dir,
            "state_dir": self.state_dir,
        })
    }
}
