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
        // Write-then-rename so a crash never leaves half a file behind.
        let tmp = self.file(&format!(".{name}.tmp"));
        std::fs::write(&tmp, contents)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| StateError::Write {
                path: path.display().to_string(),
                source,
            })
    }

    pub fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StateError> {
        read_json(&self.file(name))
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let text = serde_json::to_vec_pretty(value).unwrap_or_default();
        self.write(name, &text)
    }

    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.file(name));
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}
