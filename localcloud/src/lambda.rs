//! The Lambda runtime. A deployed function runs as its packaged `bootstrap` — taken from the
//! zip the deployer uploaded (its SHA-256 checked against the function's CodeSha256), so
//! packaging is exercised too — in a process that speaks the Lambda Runtime API to a server
//! here. Each process gets its own Runtime API port; all processes of a function pull from
//! one queue, and an invocation that finds no idle process starts another (up to a limit).
//! The function's environment, timeout and memory size are honoured: a timed-out invocation
//! kills its process, a process over its memory size is killed, a crashed process is
//! replaced on the next invocation and its invocation answered as a function error. Output
//! goes to a local log file and to the function's CloudWatch log group.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use sha2::Digest;
use tokio::sync::{mpsc, oneshot};

use crate::cloud::Cloud;
use crate::httpx::{self, full, Req, Resp};

/// Processes per function at most (reserved concurrency is not declared by the stack).
const MAX_PROCS: usize = 8;
/// How long a function's configuration is trusted before a background read checks it again.
/// Deploys through the front door (`deployer up`, `redeploy`, `down`) do not wait for this:
/// they mark every function changed (see [`Lambdas::changed`]) and the next invocation reads
/// its configuration first. This only bounds changes made to the emulator behind our back.
const CONFIG_TTL: Duration = Duration::from_secs(1);
/// Lambda allows 10 s for a runtime's initialisation, on top of the function's timeout.
const INIT_ALLOWANCE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error("Function not found: {0}")]
    NotFound(String),
    #[error("cannot prepare function {name}: {why}")]
    Code { name: String, why: String },
}

/// The result of one invocation. `error` is the function error type (as
/// `X-Amz-Function-Error` would say) when the function failed.
#[derive(Debug)]
pub struct Invoked {
    pub payload: Bytes,
    pub error: Option<String>,
}

type Outcome = Result<Bytes, (String, Bytes)>;

#[derive(Debug)]
struct Invocation {
    id: String,
    payload: Bytes,
    deadline_ms: u128,
    reply: oneshot::Sender<Outcome>,
    /// The pid of the process that took the invocation, so a timeout can kill it.
    holder: Arc<Mutex<Option<u32>>>,
    /// Told when a process takes the invocation: the function's timeout runs from then, as
    /// on AWS (a cold start's initialisation has its own allowance).
    taken: Option<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Function {
    name: String,
    arn: String,
    code_sha256: String,
    dir: PathBuf,
    env: Vec<(String, String)>,
    timeout: Duration,
    memory_mb: u64,
    tx: mpsc::UnboundedSender<Invocation>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    idle: AtomicUsize,
    procs: AtomicUsize,
    pids: Mutex<Vec<u32>>,
    checked: Mutex<Instant>,
    /// The [`Lambdas::generation`] its configuration was last read at.
    seen: AtomicU64,
    /// A background read of its configuration is under way.
    rechecking: AtomicBool,
    log: tokio::sync::mpsc::UnboundedSender<String>,
}

#[derive(Debug, Default)]
pub struct Lambdas {
    fns: Mutex<HashMap<String, Arc<Function>>>,
    loading: tokio::sync::Mutex<()>,
    /// Moves on every state-changing Lambda or CloudFormation call through the front door.
    generation: AtomicU64,
}

impl Lambdas {
    /// A deploy changed functions (or may have: a stack update): each function's
    /// configuration is read again before its next invocation, so new code runs at once.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Stops every process of every function (configuration changed or shutdown).
    fn retire(f: &Function) {
        if let Ok(pids) = f.pids.lock() {
            for pid in pids.iter() {
                crate::procs::signal(*pid, "KILL");
            }
        }
    }
}

/// Invokes a function synchronously and waits for its answer.
pub async fn invoke(
    cloud: &Arc<Cloud>,
    name: &str,
    payload: Bytes,
) -> Result<Invoked, LambdaError> {
    let f = function(cloud, name).await?;
    let (reply, rx) = oneshot::channel();
    let holder = Arc::new(Mutex::new(None));
    let id = httpx::new_id();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let _ = f
        .log
        .send(format!("START RequestId: {id} Version: $LATEST"));
    let started = Instant::now();
    let (taken_tx, taken_rx) = oneshot::channel();
    let inv = Invocation {
        id: id.clone(),
        payload,
        deadline_ms: now_ms + f.timeout.as_millis(),
        reply,
        holder: holder.clone(),
        taken: Some(taken_tx),
    };
    if f.idle.load(Ordering::SeqCst) == 0 && f.procs.load(Ordering::SeqCst) < MAX_PROCS {
        spawn_process(cloud, &f).await;
    }
    if f.tx.send(inv).is_err() {
        return Err(LambdaError::Code {
            name: name.into(),
            why: "the function's queue is closed".into(),
        });
    }
    // Waiting for a process: a cold start's initialisation, or a busy function's queue.
    let mut rx = rx;
    let handed = tokio::time::timeout(INIT_ALLOWANCE + f.timeout, taken_rx).await;
    let out = if handed.is_err() {
        Err(())
    } else {
        tokio::time::timeout(f.timeout, &mut rx)
            .await
            .map_err(|_| ())
    };
    let out = match out {
        Ok(Ok(Ok(body))) => Invoked {
            payload: body,
            error: None,
        },
        Ok(Ok(Err((kind, body)))) => Invoked {
            payload: body,
            error: Some(kind),
        },
        Ok(Err(_)) => Invoked {
            payload: error_body("Runtime.Unknown", "the runtime dropped the invocation"),
            error: Some("Unhandled".into()),
        },
        Err(()) => {
            if let Some(pid) = holder.lock().ok().and_then(|h| *h) {
                crate::procs::signal(pid, "KILL");
            }
            let secs = f.timeout.as_secs_f64();
            let _ = f.log.send(format!(
                "{} {id} Task timed out after {secs:.2} seconds",
                httpx::now_iso()
            ));
            Invoked {
                payload: error_body(
                    "Sandbox.Timedout",
                    &format!("RequestId: {id} Error: Task timed out after {secs:.2} seconds"),
                ),
                error: Some("Unhandled".into()),
            }
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let _ = f.log.send(format!("END RequestId: {id}"));
    let _ = f.log.send(format!(
        "REPORT RequestId: {id}\tDuration: {ms:.2} ms\tMemory Size: {} MB",
        f.memory_mb
    ));
    Ok(out)
}

fn error_body(kind: &str, message: &str) -> Bytes {
    serde_json::json!({ "errorType": kind, "errorMessage": message })
        .to_string()
        .into()
}

/// The function as deployed now. After a deploy through the front door its configuration
/// is read before the invocation; otherwise the known one serves, and one older than
/// [`CONFIG_TTL`] is checked in the background (an emulator read of several milliseconds
/// that would otherwise land on every hundredth request of a busy API). A changed code hash
/// or configuration replaces the processes.
async fn function(cloud: &Arc<Cloud>, name: &str) -> Result<Arc<Function>, LambdaError> {
    if let Some(f) = cloud
        .lambda
        .fns
        .lock()
        .ok()
        .and_then(|m| m.get(name).cloned())
    {
        if f.seen.load(Ordering::SeqCst) == cloud.lambda.generation.load(Ordering::SeqCst) {
            let stale = f
                .checked
                .lock()
                .map(|c| c.elapsed() >= CONFIG_TTL)
                .unwrap_or(true);
            if stale && !f.rechecking.swap(true, Ordering::SeqCst) {
                let (cloud, name, f) = (cloud.clone(), name.to_string(), f.clone());
                // Detached: the check outlives the invocation that noticed the age.
                drop(tokio::spawn(async move {
                    if let Err(LambdaError::NotFound(_)) = load_function(&cloud, &name).await {
                        // Deleted behind our back: forget it, so the next invocation asks.
                        if let Ok(mut m) = cloud.lambda.fns.lock() {
                            m.remove(&name);
                        }
                        Lambdas::retire(&f);
                    }
                    f.rechecking.store(false, Ordering::SeqCst);
                }));
            }
            return Ok(f);
        }
    }
    load_function(cloud, name).await
}

/// Reads the function's configuration from the emulator and returns the function it
/// describes: the known one if nothing changed, else a new one (with its code unpacked).
async fn load_function(cloud: &Arc<Cloud>, name: &str) -> Result<Arc<Function>, LambdaError> {
    let _one = cloud.lambda.loading.lock().await;
    // Read before the emulator is asked: a deploy during the read moves it again, so the
    // function is read once more on its next invocation.
    let generation = cloud.lambda.generation.load(Ordering::SeqCst);
    let client = aws_sdk_lambda::Client::new(&cloud.moto);
    let got = client
        .get_function()
        .function_name(name)
        .send()
        .await
        .map_err(|_| LambdaError::NotFound(cloud.arn("lambda", &format!("function:{name}"))))?;
    let cfg = got
        .configuration()
        .ok_or_else(|| LambdaError::NotFound(name.to_string()))?;
    let sha = cfg.code_sha256().unwrap_or_default().to_string();
    let mut env: Vec<(String, String)> = cfg
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    env.sort();
    let timeout = Duration::from_secs(cfg.timeout().unwrap_or(3).max(1) as u64);
    let memory_mb = cfg.memory_size().unwrap_or(128).max(128) as u64;
    let existing = cloud
        .lambda
        .fns
        .lock()
        .ok()
        .and_then(|m| m.get(name).cloned());
    if let Some(f) = existing {
        if f.code_sha256 == sha && f.env == env && f.timeout == timeout && f.memory_mb == memory_mb
        {
            if let Ok(mut c) = f.checked.lock() {
                *c = Instant::now();
            }
            f.seen.store(generation, Ordering::SeqCst);
            return Ok(f);
        }
        Lambdas::retire(&f);
    }
    let location = got
        .code()
        .and_then(|c| c.location())
        .unwrap_or_default()
        .to_string();
    let dir = fetch_code(cloud, name, &location, &sha).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let f = Arc::new(Function {
        name: name.to_string(),
        arn: cfg.function_arn().unwrap_or_default().to_string(),
        code_sha256: sha,
        dir,
        env,
        timeout,
        memory_mb,
        tx,
        rx: Arc::new(tokio::sync::Mutex::new(rx)),
        idle: AtomicUsize::new(0),
        procs: AtomicUsize::new(0),
        pids: Mutex::new(Vec::new()),
        checked: Mutex::new(Instant::now()),
        seen: AtomicU64::new(generation),
        rechecking: AtomicBool::new(false),
        log: log_sink(cloud, name),
    });
    if let Ok(mut m) = cloud.lambda.fns.lock() {
        m.insert(name.to_string(), f.clone());
    }
    Ok(f)
}

/// Finds the uploaded zip (the code location names its key; the bucket is the one holding a
/// zip with the function's hash), checks its hash and unpacks it once per hash.
async fn fetch_code(
    cloud: &Cloud,
    name: &str,
    location: &str,
    sha_b64: &str,
) -> Result<PathBuf, LambdaError> {
    let err = |why: String| LambdaError::Code {
        name: name.to_string(),
        why,
    };
    let hex_sha = base64::engine::general_purpose::STANDARD
        .decode(sha_b64)
        .map(hex::encode)
        .map_err(|_| err(format!("CodeSha256 {sha_b64:?} is not base64")))?;
    let dir = cloud.work_dir().join("lambda").join(name).join(&hex_sha);
    if dir.join("bootstrap").is_file() {
        return Ok(dir);
    }
    let key = location
        .split_once(".amazonaws.com/")
        .map(|(_, k)| k.to_string())
        .ok_or_else(|| err(format!("the code location {location:?} names no key")))?;
    let buckets = cloud
        .s3
        .list_buckets()
        .send()
        .await
        .map_err(|e| err(format!("cannot list buckets: {e}")))?;
    let mut zip = None;
    for b in buckets.buckets() {
        let Some(bn) = b.name() else { continue };
        if let Ok(o) = cloud.s3.get_object().bucket(bn).key(&key).send().await {
            if let Ok(body) = o.body.collect().await {
                let bytes = body.into_bytes();
                if hex::encode(sha2::Sha256::digest(&bytes)) == hex_sha {
                    zip = Some(bytes);
                    break;
                }
            }
        }
    }
    let zip = zip.ok_or_else(|| {
        err(format!(
            "no uploaded package {key} with SHA-256 {hex_sha} was found; run `deployer up`"
        ))
    })?;
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| err(format!("cannot create {}: {e}", tmp.display())))?;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))
        .map_err(|e| err(format!("the package is not a zip: {e}")))?;
    archive
        .extract(&tmp)
        .map_err(|e| err(format!("cannot unpack the package: {e}")))?;
    let boot = tmp.join("bootstrap");
    if !boot.is_file() {
        return Err(err(
            "the package has no `bootstrap` at its root (provided.al2023 needs one)".into(),
        ));
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&boot, std::fs::Permissions::from_mode(0o755));
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(|e| err(format!("cannot move the unpacked code: {e}")))?;
    Ok(dir)
}

/// Lines for the function's log: a local file and the CloudWatch log group, in batches.
fn log_sink(cloud: &Arc<Cloud>, name: &str) -> mpsc::UnboundedSender<String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let file = crate::procs::log_path(&cloud.cfg.state_dir, "lambda", name);
    let group = format!("/aws/lambda/{name}");
    let logs = aws_sdk_cloudwatchlogs::Client::new(&cloud.moto);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        if let Some(d) = file.parent() {
            let _ = tokio::fs::create_dir_all(d).await;
        }
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .await
            .ok();
        let day = time::OffsetDateTime::now_utc();
        let stream = format!(
            "{:04}/{:02}/{:02}/[$LATEST]{}",
            day.year(),
            day.month() as u8,
            day.day(),
            httpx::new_id().replace('-', "")
        );
        let mut stream_made = false;
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            if let Some(f) = out.as_mut() {
                for l in &batch {
                    let _ = f.write_all(format!("{l}\n").as_bytes()).await;
                }
            }
            if !stream_made {
                stream_made = logs
                    .create_log_stream()
                    .log_group_name(&group)
                    .log_stream_name(&stream)
                    .send()
                    .await
                    .is_ok();
            }
            if stream_made {
                let ts = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
                let events: Vec<_> = batch
                    .iter()
                    .filter_map(|m| {
                        aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                            .timestamp(ts as i64)
                            .message(m)
                            .build()
                            .ok()
                    })
                    .collect();
                let _ = logs
                    .put_log_events()
                    .log_group_name(&group)
                    .log_stream_name(&stream)
                    .set_log_events(Some(events))
                    .send()
                    .await;
            }
        }
    });
    tx
}

#[derive(Debug)]
struct ProcState {
    current: Option<Invocation>,
    pid: u32,
    /// Set when the process has exited: its Runtime API must not take more invocations.
    exited: tokio::sync::watch::Receiver<bool>,
}

/// Counts a process as idle while its `invocation/next` waits, however the wait ends.
struct IdleGuard<'a>(&'a AtomicUsize);
impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts one more runtime process for the function, with its own Runtime API server.
async fn spawn_process(cloud: &Arc<Cloud>, f: &Arc<Function>) {
    let Ok(listener) = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await else {
        return;
    };
    let Ok(port) = listener.local_addr().map(|a| a.port()) else {
        return;
    };
    let (exited_tx, exited_rx) = tokio::sync::watch::channel(false);
    let state = Arc::new(Mutex::new(ProcState {
        current: None,
        pid: 0,
        exited: exited_rx,
    }));
    let server = {
        let f = f.clone();
        let state = state.clone();
        httpx::serve(listener, move |req| {
            runtime_api(f.clone(), state.clone(), req)
        })
    };
    let mut cmd = tokio::process::Command::new(f.dir.join("bootstrap"));
    cmd.current_dir(&f.dir)
        .env_clear()
        .envs(f.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", &f.name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string())
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", f.name),
        )
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_REGION", &cloud.cfg.region)
        .env("AWS_DEFAULT_REGION", &cloud.cfg.region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("AWS_ENDPOINT_URL", &cloud.front_url)
        .env("LAMBDA_TASK_ROOT", &f.dir)
        .env("_HANDLER", "bootstrap")
        .env("TZ", ":UTC")
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            server.abort();
            tracing::error!(function = %f.name, error = %e, "cannot start bootstrap");
            return;
        }
    };
    let pid = child.id().unwrap_or(0);
    if let Ok(mut s) = state.lock() {
        s.pid = pid;
    }
    f.procs.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut p) = f.pids.lock() {
        p.push(pid);
    }
    cloud.procs.add(pid, "lambda", &f.name);
    for (out, tag) in [
        (
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            "",
        ),
        (
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            "",
        ),
    ] {
        if let Some(o) = out {
            forward_lines(o, f.log.clone(), tag);
        }
    }
    let cloud = cloud.clone();
    let f = f.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut oom = false;
        let status = loop {
            tokio::select! {
                s = child.wait() => break s,
                _ = tick.tick() => {
                    if crate::procs::rss_mb(pid).is_some_and(|mb| mb > f.memory_mb) {
                        oom = true;
                        let _ = child.start_kill();
                    }
                }
            }
        };
        let _ = exited_tx.send(true);
        server.abort();
        f.procs.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut p) = f.pids.lock() {
            p.retain(|x| *x != pid);
        }
        cloud.procs.remove(pid);
        let held = state.lock().ok().and_then(|mut s| s.current.take());
        if let Some(inv) = held {
            let why = if oom {
                ("Runtime.OutOfMemory", format!("RequestId: {} Error: Runtime exited with error: signal: killed (memory size {} MB exceeded)", inv.id, f.memory_mb))
            } else {
                let code = status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                (
                    "Runtime.ExitError",
                    format!(
                        "RequestId: {} Error: Runtime exited with error: {code}",
                        inv.id
                    ),
                )
            };
            let _ = f.log.send(format!("{} {}", httpx::now_iso(), why.1));
            let _ = inv
                .reply
                .send(Err(("Unhandled".into(), error_body(why.0, &why.1))));
        }
    });
}

fn forward_lines(
    reader: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    sink: mpsc::UnboundedSender<String>,
    tag: &'static str,
) {
    use tokio::io::AsyncBufReadExt;
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(reader).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = sink.send(format!("{tag}{l}"));
        }
    });
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r
}

/// One process's Runtime API (`/2018-06-01/runtime/...`).
async fn runtime_api(
    f: Arc<Function>,
    state: Arc<Mutex<ProcState>>,
    req: Request<Incoming>,
) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Ok(req) = Req::read(req, 6 * 1024 * 1024 + 1024).await else {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "response too large (6 MB limit)",
        );
    };
    let rest = path.strip_prefix("/2018-06-01/runtime/").unwrap_or("");
    match (method, rest) {
        (Method::GET, "invocation/next") => {
            let Ok(mut exited) = state.lock().map(|s| s.exited.clone()) else {
                return text(StatusCode::GONE, "shutting down");
            };
            f.idle.fetch_add(1, Ordering::SeqCst);
            let idle = IdleGuard(&f.idle);
            // An invocation whose caller gave up (timed out while queued) is not run; a
            // process that died while waiting gives up its place in the queue.
            let inv = tokio::select! {
                inv = async {
                    let mut rx = f.rx.lock().await;
                    loop {
                        match rx.recv().await {
                            Some(i) if i.reply.is_closed() => continue,
                            other => break other,
                        }
                    }
                } => inv,
                _ = exited.wait_for(|e| *e) => None,
            };
            drop(idle);
            let Some(mut inv) = inv else {
                return text(StatusCode::GONE, "shutting down");
            };
            if *exited.borrow() {
                let _ = f.tx.send(inv);
                return text(StatusCode::GONE, "the process exited");
            }
            if let Some(t) = inv.taken.take() {
                let _ = t.send(());
            }
            inv.deadline_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
                + f.timeout.as_millis();
            let pid = state.lock().map(|s| s.pid).unwrap_or(0);
            if let Ok(mut h) = inv.holder.lock() {
                *h = Some(pid);
            }
            let mut r = Response::new(full(inv.payload.clone()));
            let h = r.headers_mut();
            let set = |h: &mut hyper::HeaderMap, k: &'static str, v: String| {
                if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            };
            set(h, "lambda-runtime-aws-request-id", inv.id.clone());
            set(h, "lambda-runtime-deadline-ms", inv.deadline_ms.to_string());
            set(h, "lambda-runtime-invoked-function-arn", f.arn.clone());
            set(
                h,
                "lambda-runtime-trace-id",
                format!("Root=1-{}", inv.id.replace('-', "")),
            );
            set(h, "content-type", "application/json".into());
            if let Ok(mut s) = state.lock() {
                // The process may have died since: then its monitor has already looked for
                // an invocation to fail, so this one goes back to the queue.
                if *s.exited.borrow() {
                    let _ = f.tx.send(inv);
                    return text(StatusCode::GONE, "the process exited");
                }
                s.current = Some(inv);
            }
            r
        }
        (Method::POST, r) if r.starts_with("invocation/") => {
            let mut parts = r.split('/');
            let (_, id, what) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let inv = state.lock().ok().and_then(|mut s| {
                if s.current.as_ref().is_some_and(|c| c.id == id) {
                    s.current.take()
                } else {
                    None
                }
            });
            let Some(inv) = inv else {
                return text(StatusCode::BAD_REQUEST, "unknown request id");
            };
            let outcome = if what == "response" {
                Ok(req.body)
            } else {
                Err(("Unhandled".to_string(), req.body))
            };
            let _ = inv.reply.send(outcome);
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        (Method::POST, "init/error") => {
            let _ = f.log.send(format!(
                "{} INIT_ERROR {}",
                httpx::now_iso(),
                String::from_utf8_lossy(&req.body)
            ));
            text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
        }
        _ => text(StatusCode::NOT_FOUND, "unknown Runtime API route"),
    }
}

/// Lambda `Invoke` through the front door: RequestResponse answers the payload (with
/// `X-Amz-Function-Error` on failure); Event answers 202 at once.
pub async fn invoke_api(cloud: &Arc<Cloud>, name: &str, req: &Req) -> Resp {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let rest_error = |status: StatusCode, code: &str, msg: &str| {
        let mut r = httpx::json(
            status,
            &serde_json::json!({ "Type": "User", "message": msg }),
        );
        if let Ok(v) = hyper::header::HeaderValue::from_str(code) {
            r.headers_mut().insert("x-amzn-errortype", v);
        }
        r
    };
    if req.header("x-amz-invocation-type") == Some("Event") {
        let cloud = cloud.clone();
        let body = req.body.clone();
        tokio::spawn(async move {
            let _ = invoke(&cloud, &name, body).await;
        });
        return text(StatusCode::ACCEPTED, "");
    }
    match invoke(cloud, &name, req.body.clone()).await {
        Ok(out) => {
            let mut r = text(StatusCode::OK, out.payload);
            r.headers_mut().insert(
                "x-amz-executed-version",
                hyper::header::HeaderValue::from_static("$LATEST"),
            );
            if let Some(e) = out
                .error
                .and_then(|e| hyper::header::HeaderValue::from_str(&e).ok())
            {
                r.headers_mut().insert("x-amz-function-error", e);
            }
            r
        }
        Err(LambdaError::NotFound(arn)) => rest_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {arn}"),
        ),
        Err(e) => rest_error(StatusCode::BAD_GATEWAY, "ServiceException", &e.to_string()),
    }
}
