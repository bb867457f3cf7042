//! The deployer's local state for one environment: `.deployer/<env>/` (or
//! `$DEPLOYER_STATE_DIR/<env>/`). Holds emulator pid/port/log, `endpoints.json` (which URL
//! answers for each AWS service, since locally several services may answer on different
//! ports), built packages and `artifacts.json` (the code keys and hashes last deployed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}; check permissions or set DEPLOYER_STATE_DIR to a writable directory")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt ({message}); delete it and run the command again")]
    Corrupt { path: String, message: String },
    #[error("cannot read {path}: {source}; check its permissions, or set DEPLOYER_STATE_DIR to a directory this user owns")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
}

/// The state directory of one environment.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub path: PathBuf,
}

/// Which endpoint URL answers for each service; `default` for the rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Endpoints {
    pub default: String,
    #[serde(flatten)]
    pub services: BTreeMap<String, String>,
}

impl Endpoints {
    /// The URL for a service id as the SDK names it (`s3`, `sagemaker`, `sagemaker_runtime`).
    pub fn for_service(&self, id: &str) -> &str {
        self.services
            .get(id)
            .map(String::as_str)
            .unwrap_or(&self.default)
    }
}

/// A built function package as last uploaded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Artifact {
    pub key: String,
    pub sha256_hex: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ArtifactManifest {
    pub functions: BTreeMap<String, Artifact>,
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn ensure(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.path).map_err(|source| StateError::Write {
            path: self.path.display().to_string(),
            source,
        })
    }

    pub fn write(&self, name: &str, contents: &[u8]) -> Result<(), StateError> {
        self.ensure()?;
        let path = self.file(name);
        write_atomically(&path, contents).map_err(|source| StateError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads a state file; `None` when it is missing. Every file here is one the deployer
    /// writes and rebuilds (ports, endpoints, the model image record, recorded hashes), so a
    /// corrupt or truncated one (a disk that filled, a hand edit) is not fatal: it is moved
    /// aside to `<name>.corrupt` with a one-line warning naming it, and read as missing, so the
    /// command rebuilds it. An unreadable one (permissions) is an error naming the file.
    pub fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        let path = self.file(name);
        match read_json(&path) {
            Err(StateError::Corrupt { message, .. }) => {
                let aside = self.file(&format!("{name}.corrupt"));
                let moved = std::fs::rename(&path, &aside).is_ok();
                eprintln!(
                    "warning: {} is corrupt ({message}); {}",
                    path.display(),
                    if moved {
                        format!("moved it to {} and rebuilding it", aside.display())
                    } else {
                        "reading it as missing (delete it to stop this warning)".to_string()
                    }
                );
                Ok(None)
            }
            other => other,
        }
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(value).unwrap_or_default();
        self.write(name, &text)
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.file(name));
    }
}

/// Writes `contents` to `path` so that a crash (kill -9, power loss) leaves either the old file
/// or the new one, never half of one (the local cloud's implementation: temporary file, fsync,
/// rename, directory fsync).
pub use localcloud::files::write_atomically;

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        // An empty file is what a crash between create and write leaves (before writes were
        // atomic) or a full disk: corrupt, not missing.
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Unreadable {
            path: path.display().to_string(),
            source: e,
        }),
    }
}
