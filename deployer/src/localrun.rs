//! The local cloud's lifecycle, next to the emulator's: the model "image" (the release
//! `waste-model` binary, copied under the state directory and named by its SHA-256 as
//! `local://waste-model@sha256:<hex>`), and the `localcloud` runtime process that this same
//! executable runs in the background (`deployer local serve`, hidden). `up` starts or reuses
//! both; when the emulator had to be started afresh, the runtime replays the recorded calls
//! into it so nothing is lost across `local stop` / `up`. Ports are kept across restarts so
//! the API URL a user bookmarked stays the same.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::Environment;
use crate::emulator::{self, alive, last_line, Emulator};
use crate::state::{Endpoints, StateDir};

pub const IMAGE_FILE: &str = "model-image.json";
pub const LOG_FILE: &str = "localcloud.log";
const PORTS_FILE: &str = "localcloud.ports.json";
/// The training image setting that means "the model binary this project builds".
pub const DEFAULT_IMAGE: &str = "local://waste-model";

#[derive(Debug, thiserror::Error)]
pub enum LocalRunError {
    #[error(
        "failed to build the model binary (cargo build -p waste-model, beside the handlers): {0}"
    )]
    Build(String),
    #[error("the local cloud exited while starting: {last_line}; see {log}")]
    Exited { last_line: String, log: String },
    #[error("the local cloud did not start within {secs} s; see {log}")]
    Timeout { secs: u64, log: String },
    #[error("cannot start the local cloud: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Emulator(#[from] emulator::EmulatorError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// `cargo build --release -p waste-model <extra>` in `root` (the container image's static
/// build); answers the executable cargo reports, wherever the target directory is.
pub fn cargo_build_model(
    root: &std::path::Path,
    extra: &[&str],
    capture_stderr: bool,
) -> Result<PathBuf, CargoBuildError> {
    let mut args = vec!["--release", "-p", crate::package::MODEL_CRATE];
    args.extend(extra);
    crate::package::cargo_build(root, &args, capture_stderr)
        .map_err(CargoBuildError::Cargo)?
        .into_iter()
        .find(|e| e.name == crate::package::MODEL_CRATE)
        .map(|e| e.path)
        .ok_or(CargoBuildError::NoExecutable)
}

/// Why [`cargo_build_model`] gave no binary.
#[derive(Debug)]
pub enum CargoBuildError {
    Cargo(crate::package::CargoBuildError),
    NoExecutable,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelImage {
    pub image: String,
    pub path: PathBuf,
    pub sha256: String,
    /// The built binary it was copied from (path, size, modification time in ns), so an
    /// unchanged one is not read and hashed again (70 MB with the pretrained weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<(PathBuf, u64, u128)>,
}

fn file_identity(path: &std::path::Path) -> Option<(PathBuf, u64, u128)> {
    let meta = std::fs::metadata(path).ok()?;
    let ns = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((path.to_path_buf(), meta.len(), ns))
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ports {
    port: u16,
    api_port: u16,
}

/// The local cloud as `up` found or started it.
#[derive(Debug, Clone)]
pub struct Running {
    pub emulator: Emulator,
    pub cloud: localcloud::RunInfo,
    pub reused: bool,
}

/// Builds the model binary beside the handlers (see [`crate::package::build`]; a no-op when it
/// is current) and installs it as the local image. `None` when the project has no model crate.
pub fn build_model_image(env: &Environment) -> Result<Option<ModelImage>, LocalRunError> {
    let built = crate::package::build(env, &[]).map_err(|e| LocalRunError::Build(e.to_string()))?;
    match built.model {
        Some(exe) => install_model_image(env, &exe).map(Some),
        None => Ok(None),
    }
}

/// Copies the model binary under the state directory by hash (the local image the training
/// jobs and endpoints run) and records it.
pub fn install_model_image(
    env: &Environment,
    exe: &std::path::Path,
) -> Result<ModelImage, LocalRunError> {
    let state = StateDir::new(&env.state_dir);
    state.ensure()?;
    let source = file_identity(exe);
    if let Ok(Some(previous)) = state.read_json::<ModelImage>(IMAGE_FILE) {
        if source.is_some() && previous.source == source && previous.path.is_file() {
            return Ok(previous);
        }
    }
    let bytes = std::fs::read(exe)?;
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let dir = env.state_dir.join("images");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("waste-model-{}", &sha[..16]));
    if !path.is_file() {
        // Content-addressed: a crash leaves at most a `.partial` file, never a wrong binary
        // under the hash's name.
        let tmp = path.with_extension(format!("{}.partial", std::process::id()));
        {
            use std::io::Write;
            use std::os::unix::fs::PermissionsExt;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
    }
    let image = ModelImage {
        image: format!("{DEFAULT_IMAGE}@sha256:{sha}"),
        path,
        sha256: sha,
        source,
    };
    state.write_json(IMAGE_FILE, &image)?;
    Ok(image)
}

fn healthy(port: u16) -> bool {
    crate::http::request(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        "GET",
        "/_localcloud/health",
        b"",
        Duration::from_millis(800),
    )
    .map(|(status, _)| status == 200)
    .unwrap_or(false)
}

/// The port the local API gateway will listen on: the one it had (kept across restarts), else
/// a free one, recorded now so the rendered stack can name the web URL before it starts.
pub fn planned_api_port(env: &Environment) -> Result<u16, LocalRunError> {
    let state = StateDir::new(&env.state_dir);
    if let Some(c) = running(&state) {
        return Ok(c.api_port);
    }
    let mut ports: Ports = state.read_json(PORTS_FILE)?.unwrap_or_default();
    if ports.api_port == 0 || std::net::TcpListener::bind(("127.0.0.1", ports.api_port)).is_err() {
        ports.api_port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        state.ensure()?;
        state.write_json(PORTS_FILE, &ports)?;
    }
    Ok(ports.api_port)
}

/// The local cloud recorded in the state directory, if it runs and answers.
pub fn running(state: &StateDir) -> Option<localcloud::RunInfo> {
    let info: localcloud::RunInfo = state.read_json(localcloud::RUN_FILE).ok()??;
    // A busy local cloud (replaying, or under load) may miss one health check: a live
    // process gets three before it counts as not answering.
    (alive(info.pid) && (0..3).any(|_| healthy(info.port))).then_some(info)
}

/// Starts (or reuses) the emulator and the local cloud, and points `endpoints.json` at the
/// local cloud's front door.
pub fn ensure(env: &Environment) -> Result<Running, LocalRunError> {
    let state = StateDir::new(&env.state_dir);
    let emu = emulator::ensure_running(env)?;
    let image: Option<ModelImage> = state.read_json(IMAGE_FILE)?;
    let current = running(&state);
    if current.is_none() {
        reap_orphans(&state);
    }
    let reusable = current.as_ref().is_some_and(|c| {
        emu.reused
            && same_executable(c.pid)
            && c.moto_url == emu.endpoint
            && image
                .as_ref()
                .is_none_or(|i| model_sha_of(c.pid).as_deref() == Some(i.sha256.as_str()))
    });
    let (cloud, reused) = match current {
        Some(c) if reusable => (c, true),
        other => {
            if let Some(c) = other {
                stop_pid(c.pid);
            }
            (start(env, &emu, image.as_ref(), !emu.reused)?, false)
        }
    };
    let endpoints = Endpoints {
        default: cloud.url.clone(),
        services: Default::default(),
    };
    // Written only when it changes: a command on a full disk (`down` above all) must not fail
    // for rewriting what is already there.
    if state
        .read_json::<Endpoints>(emulator::ENDPOINTS_FILE)?
        .as_ref()
        != Some(&endpoints)
    {
        state.write_json(emulator::ENDPOINTS_FILE, &endpoints)?;
    }
    Ok(Running {
        emulator: emu,
        cloud,
        reused,
    })
}

/// Whether a running local cloud runs this very deployer build (a rebuilt deployer
/// replaces the file, and /proc then shows the old one as deleted).
fn same_executable(pid: u32) -> bool {
    let Ok(theirs) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let Ok(ours) = std::env::current_exe() else {
        return false;
    };
    theirs == ours
}

/// The model hash a running local cloud was started with (from its command line).
fn model_sha_of(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let i = args.iter().position(|a| a == "--model-sha256")?;
    args.get(i + 1).cloned()
}

fn start(
    env: &Environment,
    emu: &Emulator,
    image: Option<&ModelImage>,
    restore: bool,
) -> Result<localcloud::RunInfo, LocalRunError> {
    let state = StateDir::new(&env.state_dir);
    state.ensure()?;
    state.remove(localcloud::RUN_FILE);
    let ports: Ports = state.read_json(PORTS_FILE)?.unwrap_or_default();
    let free = |p: u16| p != 0 && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let port = if free(ports.port) { ports.port } else { 0 };
    let api_port = if free(ports.api_port) {
        ports.api_port
    } else {
        0
    };
    let log_path = state.file(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["local", "serve", "--state-dir"])
        .arg(&env.state_dir)
        .args(["--moto-url", &emu.endpoint])
        .args(["--port", &port.to_string()])
        .args(["--api-port", &api_port.to_string()])
        .args(["--region", env.region.as_deref().unwrap_or("us-east-1")]);
    if let Some(i) = image {
        cmd.arg("--model-binary")
            .arg(&i.path)
            .args(["--model-sha256", &i.sha256]);
    }
    if restore {
        cmd.arg("--restore");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: the runtime's children (handlers, training, model servers)
        // share it, so `local stop` ends them all, and Ctrl-C in the user's terminal does not.
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    let started = Instant::now();
    // Replaying a long recording takes a while; a minute covers thousands of calls.
    let limit = Duration::from_secs(120);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(LocalRunError::Exited {
                last_line: last_line(&log_path),
                log: log_path.display().to_string(),
            });
        }
        if let Ok(Some(info)) = state.read_json::<localcloud::RunInfo>(localcloud::RUN_FILE) {
            if info.pid == pid && healthy(info.port) {
                state.write_json(
                    PORTS_FILE,
                    &Ports {
                        port: info.port,
                        api_port: info.api_port,
                    },
                )?;
                drop(child);
                return Ok(info);
            }
        }
        if started.elapsed() > limit {
            stop_pid(pid);
            let _ = child.wait();
            return Err(LocalRunError::Timeout {
                secs: limit.as_secs(),
                log: log_path.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A local cloud that died without stopping its children (kill -9, a crash) leaves them
/// running in its process group: model servers holding ports, handler processes, a training
/// job. Its group is ended before a new local cloud starts.
fn reap_orphans(state: &StateDir) {
    let Ok(Some(info)) = state.read_json::<localcloud::RunInfo>(localcloud::RUN_FILE) else {
        return;
    };
    if alive(info.pid) {
        // Alive but not answering: it and its group are stopped, or two local clouds would
        // serve one state directory.
        stop_pid(info.pid);
        return;
    }
    // Only members of that group that belong to this state directory: the group id is a
    // dead process's pid, which the system may since have given to someone else.
    let dir = state.path.display().to_string();
    for pid in group_members(info.pid) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&dir)
            || exe.display().to_string().starts_with(&dir)
        {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The processes whose process group is `pgid` (from /proc/<pid>/stat).
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
                    let rest = &stat[stat.rfind(')')? + 1..];
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .collect()
}

/// SIGTERM to the local cloud's process group (it and every process it started), then
/// SIGKILL after 5 s.
fn stop_pid(pid: u32) {
    let group = format!("-{pid}");
    let _ = Command::new("kill")
        .args(["-TERM", "--", &group])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
}

/// Stops the local cloud and the emulator. Returns (cloud was running, emulator was running).
pub fn stop(state: &StateDir) -> (bool, bool) {
    let info: Option<localcloud::RunInfo> = state.read_json(localcloud::RUN_FILE).ok().flatten();
    let cloud = match info {
        Some(i) if alive(i.pid) => {
            stop_pid(i.pid);
            true
        }
        _ => false,
    };
    state.remove(localcloud::RUN_FILE);
    (cloud, emulator::stop(state))
}

/// After `down`: the recording, SageMaker records, outbox and work files describe resources
/// that no longer exist.
pub fn forget(env: &Environment) {
    let _ = std::fs::remove_dir_all(env.state_dir.join("localcloud"));
    let _ = std::fs::remove_dir_all(env.state_dir.join("logs"));
}

/// Runs the local cloud in this process (the hidden `deployer local serve`).
pub async fn serve(cfg: localcloud::Config) -> anyhow::Result<()> {
    use anyhow::Context;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        // Its log is a file in the state directory: when that disk is full, a log line is
        // lost, but reporting the loss on stderr (the same full file) would panic the task
        // that serves the request.
        .log_internal_errors(false)
        .try_init();
    localcloud::run(cfg)
        .await
        .context("failed to run the local cloud")
}
