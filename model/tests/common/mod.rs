//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_waste-model"))
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

/// A temp ML root with a synthetic training channel and the given hyperparameters JSON.
pub fn ml_root_with_synth(count: usize, hyperparameters: &str) -> tempfile::TempDir {
    ml_root_with_synth_args(count, hyperparameters, &["--seed", "7"])
}

/// [`ml_root_with_synth`] with other `synth` options (seed, style).
pub fn ml_root_with_synth_args(
    count: usize,
    hyperparameters: &str,
    synth: &[&str],
) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let train = root.path().join("input/data/train");
    let count = count.to_string();
    let mut args = vec!["synth", "--out", train.to_str().unwrap(), "--count", &count];
    args.extend_from_slice(synth);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = root.path().join("input/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("hyperparameters.json"), hyperparameters).unwrap();
    root
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends SIGTERM to a child process this test started.
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
