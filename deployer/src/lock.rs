//! One lock per environment's state directory, so two mutating commands (`up`, `down`,
//! `redeploy`, `dataset push`, `users add|remove|reset`, `local stop`) never interleave on one
//! environment: the second waits, saying who holds the lock, or exits 1 with `--no-wait`.
//! Read-only commands (`status`, `plan`, `render`, `local status|logs|mail`, `users list`) never
//! take it.
//!
//! The lock is an advisory `flock` on `<state>/deployer.lock` (std's `File::lock`). The kernel
//! releases it when its holder exits, however it exits (kill -9 included), so a lock left by a
//! dead process is simply free: the next command takes it and overwrites the holder record.
//! The file is opened close-on-exec, so the emulator and the local cloud that `up` starts in the
//! background never hold it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const LOCK_FILE: &str = "deployer.lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("environment '{env}' is busy: {holder}; wait for it to finish, or run without --no-wait to wait for it")]
    Busy { env: String, holder: String },
    #[error("cannot lock {path}: {source}; check that the state directory is writable, or set DEPLOYER_STATE_DIR to one that is")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Who holds the lock, as its holder wrote it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ago = now().saturating_sub(self.since);
        write!(
            f,
            "pid {} runs `deployer {}` (for {} s)",
            self.pid, self.command, ago
        )
    }
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct EnvLock {
    file: File,
    path: PathBuf,
}

impl EnvLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EnvLock {
    fn drop(&mut self) {
        // Leave an empty record, so nobody reads a finished command as the holder.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The holder record in the lock file, if one is there and readable.
pub fn holder(state_dir: &Path) -> Option<Holder> {
    let mut text = String::new();
    File::open(state_dir.join(LOCK_FILE))
        .ok()?
        .read_to_string(&mut text)
        .ok()?;
    serde_json::from_str(&text).ok()
}

/// Takes the environment's lock for `command`. When another process holds it: with `wait`,
/// calls `waiting` with the holder (once) and blocks until it is free; without, fails with
/// [`LockError::Busy`] naming the holder.
pub fn acquire(
    state_dir: &Path,
    env_name: &str,
    command: &str,
    wait: bool,
    waiting: &dyn Fn(&str),
) -> Result<EnvLock, LockError> {
    let path = state_dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let who = holder(state_dir)
                .map(|h| h.to_string())
                .unwrap_or_else(|| "another deployer command holds its lock".into());
            if !wait {
                return Err(LockError::Busy {
                    env: env_name.to_string(),
                    holder: who,
                });
            }
            waiting(&format!(
                "waiting for environment '{env_name}': {who} (pass --no-wait to exit instead)"
            ));
            file.lock().map_err(io)?;
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let mut lock = EnvLock { file, path };
    let record = Holder {
        pid: std::process::id(),
        command: command.to_string(),
        since: now(),
    };
    // The record is only for the message others print: failing to write it (a full disk)
    // does not make the lock less held.
    let _ = (|| -> std::io::Result<()> {
        lock.file.set_len(0)?;
        lock.file.seek(SeekFrom::Start(0))?;
        lock.file.write_all(
            serde_json::to_string(&record)
                .unwrap_or_default()
                .as_bytes(),
        )?;
        lock.file.flush()
    })();
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_command() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path(), "local", "up", false, &|_| {}).unwrap();
        assert_eq!(holder(d.path()).unwrap().command, "up");
        assert_eq!(holder(d.path()).unwrap().pid, std::process::id());
        let err = acquire(d.path(), "local", "down", false, &|_| {}).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("environment 'local' is busy"), "{msg}");
        assert!(
            msg.contains(&format!("pid {} runs `deployer up`", std::process::id())),
            "{msg}"
        );
        drop(first);
        assert!(holder(d.path()).is_none(), "a released lock names nobody");
        let again = acquire(d.path(), "local", "down", false, &|_| {}).unwrap();
        assert_eq!(holder(d.path()).unwrap().command, "down");
        assert!(again.path().ends_with(LOCK_FILE));
    }

    #[test]
    fn a_waiting_command_says_whom_it_waits_for_and_gets_the_lock_when_it_is_released() {
        let d = tempfile::tempdir().unwrap();
        let first = acquire(d.path(), "local", "up", false, &|_| {}).unwrap();
        let dir = d.path().to_path_buf();
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let said2 = said.clone();
        let waiter = std::thread::spawn(move || {
            let l = acquire(&dir, "local", "dataset push", true, &|m| {
                said2.lock().unwrap().push(m.to_string())
            })
            .unwrap();
            holder(&dir).unwrap().command == "dataset push" && l.path().exists()
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!waiter.is_finished(), "the second command must wait");
        drop(first);
        assert!(waiter.join().unwrap());
        let said = said.lock().unwrap();
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("runs `deployer up`"), "{said:?}");
    }
}
