//! The processes the local cloud runs (Lambda runtimes, training jobs, model servers): a
//! registry for `deployer local status`, signals by pid, and the log files they write. Every
//! child stays in the local cloud's process group, so stopping the group stops them all even
//! if the local cloud itself is killed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ProcInfo {
    pub pid: u32,
    /// `lambda`, `training` or `endpoint`.
    pub kind: &'static str,
    pub name: String,
    pub started: String,
}

#[derive(Debug, Default)]
pub struct Procs {
    live: Mutex<BTreeMap<u32, ProcInfo>>,
}

impl Procs {
    pub fn add(&self, pid: u32, kind: &'static str, name: &str) {
        if let Ok(mut m) = self.live.lock() {
            m.insert(
                pid,
                ProcInfo {
                    pid,
                    kind,
                    name: name.to_string(),
                    started: crate::httpx::now_iso(),
                },
            );
        }
    }

    pub fn remove(&self, pid: u32) {
        if let Ok(mut m) = self.live.lock() {
            m.remove(&pid);
        }
    }

    pub fn list(&self) -> Vec<ProcInfo> {
        self.live
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Signals every registered process (used at shutdown).
    pub fn signal_all(&self, sig: &str) {
        for p in self.list() {
            signal(p.pid, sig);
        }
    }
}

/// Sends a signal by name (`TERM`, `KILL`) with kill(1): the workspace forbids unsafe code,
/// and a signal to a process that already exited is harmless.
pub fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Resident memory of a process in MB (from /proc), if it still runs.
pub fn rss_mb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024)
}

/// The log directory for a kind of process under the state directory.
pub fn log_path(state: &Path, kind: &str, name: &str) -> PathBuf {
    state.join("logs").join(kind).join(format!("{name}.log"))
}

/// Copies a child's output lines to a log file (and hands each line to `sink`).
pub fn pump<R>(
    reader: R,
    file: PathBuf,
    prefix: String,
    sink: Option<tokio::sync::mpsc::UnboundedSender<String>>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    tokio::spawn(async move {
        if let Some(dir) = file.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .await
            .ok();
        let mut lines = tokio::io::BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(f) = out.as_mut() {
                let _ = f
                    .write_all(format!("{} {prefix}{line}\n", crate::httpx::now_iso()).as_bytes())
                    .await;
            }
            if let Some(s) = &sink {
                let _ = s.send(line);
            }
        }
    });
}
