//! The local AWS emulator (moto server, pinned in `tools/requirements.txt`, installed into the
//! project's `.venv` by `./dev setup`). Started in the background on a loopback port, checked for
//! health, reused by later commands, and stopped by `down`. Its pid, port and log live in the
//! environment's state directory, so parallel test runs with their own `DEPLOYER_STATE_DIR` never
//! collide.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Environment;
use crate::http;
use crate::state::{Endpoints, StateDir};

const PID_FILE: &str = "emulator.pid";
const PORT_FILE: &str = "emulator.port";
const LOG_FILE: &str = "emulator.log";
pub const ENDPOINTS_FILE: &str = "endpoints.json";

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("Python not found at {path}; run `./dev setup` to create the project venv (or set DEPLOYER_PYTHON)")]
    PythonMissing { path: String },
    #[error("port {port} is already in use (emulator_port for environment '{env}'); stop what listens there or remove emulator_port to use a free port")]
    PortTaken { port: u16, env: String },
    #[error("the emulator exited while starting: {last_line}; see {log} (run `./dev setup` if moto is missing)")]
    Exited { last_line: String, log: String },
    #[error("the emulator did not answer on port {port} within {secs} s; see {log}")]
    Timeout { port: u16, secs: u64, log: String },
    #[error("cannot start the emulator: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// A running emulator.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub pid: u32,
    pub port: u16,
    pub endpoint: String,
    /// True when an emulator from an earlier command was reused.
    pub reused: bool,
    pub log: PathBuf,
}

/// The Python that runs moto: `$DEPLOYER_PYTHON`, else `<root>/.venv/bin/python`.
pub fn python(env: &Environment) -> PathBuf {
    std::env::var_os("DEPLOYER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.root.join(".venv/bin/python"))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// True when something answers HTTP on the port.
pub fn healthy(port: u16) -> bool {
    http::request(
        addr(port),
        "GET",
        "/moto-api/",
        b"",
        Duration::from_millis(800),
    )
    .is_ok()
}

/// Whether a process runs (a zombie does not count).
pub(crate) fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter says it is dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The emulator recorded in the state directory, if it still runs and answers.
pub fn running(state: &StateDir) -> Option<Emulator> {
    let pid: u32 = std::fs::read_to_string(state.file(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let port: u16 = std::fs::read_to_string(state.file(PORT_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (alive(pid) && healthy(port)).then(|| Emulator {
        pid,
        port,
        endpoint: format!("http://127.0.0.1:{port}"),
        reused: true,
        log: state.file(LOG_FILE),
    })
}

/// Reuses the running emulator or starts one, and records its endpoints.
pub fn ensure_running(env: &Environment) -> Result<Emulator, EmulatorError> {
    let state = StateDir::new(&env.state_dir);
    if let Some(e) = running(&state) {
        return Ok(e);
    }
    let python = python(env);
    if !python.exists() {
        return Err(EmulatorError::PythonMissing {
            path: python.display().to_string(),
        });
    }
    let port = match env.emulator_port {
        Some(p) => {
            if TcpListener::bind(addr(p)).is_err() {
                return Err(EmulatorError::PortTaken {
                    port: p,
                    env: env.name.clone(),
                });
            }
            p
        }
        None => TcpListener::bind(addr(0))?.local_addr()?.port(),
    };
    state.ensure()?;
    let log_path = state.file(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut child = Command::new(&python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        // User pool and app client ids from a hash of their names, not random: the local cloud
        // rebuilds a restarted emulator by replaying the recorded calls, and users, groups and
        // the web app's configuration must still find the same ids afterwards.
        .env("MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY", "HASH")
        .env("MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY", "HASH")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: Ctrl-C in the user's terminal must not kill the emulator that
        // later commands reuse.
        .process_group(0)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                EmulatorError::PythonMissing {
                    path: python.display().to_string(),
                }
            }
            _ => EmulatorError::Io(e),
        })?;
    let pid = child.id();
    let started = Instant::now();
    let limit = Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(EmulatorError::Exited {
                last_line: last_line(&log_path),
                log: log_path.display().to_string(),
            });
        }
        if healthy(port) {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(EmulatorError::Timeout {
                port,
                secs: limit.as_secs(),
                log: log_path.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    state.write(PID_FILE, pid.to_string().as_bytes())?;
    state.write(PORT_FILE, port.to_string().as_bytes())?;
    let endpoint = format!("http://127.0.0.1:{port}");
    state.write_json(
        ENDPOINTS_FILE,
        &Endpoints {
            default: endpoint.clone(),
            services: Default::default(),
        },
    )?;
    // The child is not waited on: it outlives this command on purpose.
    drop(child);
    Ok(Emulator {
        pid,
        port,
        endpoint,
        reused: false,
        log: log_path,
    })
}

/// Stops the recorded emulator (TERM, then KILL after 5 s). Returns whether one was running.
pub fn stop(state: &StateDir) -> bool {
    let Some(pid) = std::fs::read_to_string(state.file(PID_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return false;
    };
    let was_alive = alive(pid);
    if was_alive {
        terminate(pid);
    }
    state.remove(PID_FILE);
    state.remove(PORT_FILE);
    state.remove(ENDPOINTS_FILE);
    was_alive
}

/// Sends SIGTERM, waits up to 5 s, then SIGKILL.
pub fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// The last non-empty line of a log file, for start-up errors.
pub(crate) fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no output".into())
}
