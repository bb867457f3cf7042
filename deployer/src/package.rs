//! Builds the Lambda handlers in `functions/` and packages each as a deterministic zip named by
//! its content hash: with cargo-lambda (release, `provided.al2023`) for AWS, natively for this
//! host in the deployer's own profile for the local cloud (see [`build`]).
//!
//! A function is a crate under `functions/` with a `[package.metadata.deployer]` table. The zip
//! holds one entry, `bootstrap`, with a fixed timestamp and mode, so an unchanged binary gives a
//! byte-identical zip and the same key `functions/<name>/<sha256>.zip`: unchanged code is never
//! uploaded twice, and Lambda's CodeSha256 (base64 of the same SHA-256) can be compared directly.
//!
//! The `web` function embeds the frontend's build, so [`build_frontend`] (npm, see
//! `frontend.rs`) runs before cargo-lambda, and `frontend/dist` is part of the handlers'
//! source fingerprint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Architecture, Environment, Target};
use crate::render::FunctionContext;

mod frontend;
pub use frontend::{build_frontend, build_frontend_with, npm_program, FrontendRun, Ignore};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read {path}: {message}")]
    Read { path: String, message: String },
    #[error("no Lambda functions found under {dir}: a function is a crate with a [package.metadata.deployer] table")]
    NoFunctions { dir: String },
    #[error("unknown function '{name}'; known functions: {known}")]
    UnknownFunction { name: String, known: String },
    #[error("cargo-lambda not found (looked for {looked}); run `./dev setup` to install cargo-lambda 1.9.2 into .venv, or set DEPLOYER_CARGO_LAMBDA")]
    CargoLambdaMissing { looked: String },
    #[error("failed to build the handlers: cargo lambda build exited with {status}; the compiler output above names the error")]
    BuildFailed { status: String },
    #[error("failed to build the handlers: cargo build exited with {status}; the compiler output above names the error")]
    NativeBuildFailed { status: String },
    #[error("cargo not found: the local environment builds the handlers with the Rust toolchain that builds the deployer; install Rust 1.95 (rustup) or set CARGO")]
    CargoMissing,
    #[error("cargo lambda build finished but {path} is missing; check the crate's [[bin]] name")]
    MissingBinary { path: String },
    #[error("npm not found (looked for {looked}): the web function embeds the frontend's build; install Node.js 20 and npm, or set DEPLOYER_NPM")]
    NpmMissing { looked: String },
    #[error("the frontend build failed: `{step}` in {dir} exited with {status}; its output above names the error")]
    FrontendFailed {
        step: String,
        dir: String,
        status: String,
    },
    #[error("`npm run build` finished but {path} is missing; the web function embeds frontend/dist (check vite.config's outDir)")]
    FrontendMissingOutput { path: String },
    #[error("failed to write package {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// A function crate's deployment settings.
#[derive(Debug, Clone, Deserialize)]
struct Metadata {
    #[serde(default = "default_memory")]
    memory_mb: u32,
    #[serde(default = "default_timeout")]
    timeout_s: u32,
    dlq_reason: String,
}
fn default_memory() -> u32 {
    256
}
fn default_timeout() -> u32 {
    29
}

#[derive(Debug, Deserialize)]
struct Manifest {
    package: Package,
}
#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<PackageMetadata>,
}
#[derive(Debug, Deserialize)]
struct PackageMetadata {
    deployer: Option<Metadata>,
}

/// A function found in `functions/`.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Crate and binary name.
    pub crate_name: String,
    /// Name in resource names (`<app>-<env>-<name>`).
    pub name: String,
    pub description: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub dlq_reason: String,
}

/// A built package.
#[derive(Debug, Clone)]
pub struct BuiltPackage {
    pub spec: FunctionSpec,
    pub zip_path: PathBuf,
    pub sha256_hex: String,
    pub size: u64,
}

impl BuiltPackage {
    pub fn key(&self) -> String {
        code_key(&self.spec.name, &self.sha256_hex)
    }
    /// Lambda's CodeSha256 form: base64 of the raw digest.
    pub fn code_sha256_b64(&self) -> String {
        hex_to_b64(&self.sha256_hex)
    }
}

pub fn code_key(name: &str, sha256_hex: &str) -> String {
    format!("functions/{name}/{sha256_hex}.zip")
}

pub fn hex_to_b64(hex_digest: &str) -> String {
    hex::decode(hex_digest)
        .map(|raw| base64::engine::general_purpose::STANDARD.encode(raw))
        .unwrap_or_default()
}

pub fn b64_to_hex(b64: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .ok()
        .map(hex::encode)
}

/// Lists the function crates under `<root>/functions`, sorted by name.
pub fn discover(root: &Path) -> Result<Vec<FunctionSpec>, PackageError> {
    let dir = root.join("functions");
    let entries = std::fs::read_dir(&dir).map_err(|e| PackageError::Read {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let manifest_path = entry.path().join("Cargo.toml");
        if !manifest_path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| PackageError::Read {
            path: manifest_path.display().to_string(),
            message: e.to_string(),
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|e| PackageError::Read {
            path: manifest_path.display().to_string(),
            message: e.to_string(),
        })?;
        let Some(meta) = manifest.package.metadata.and_then(|m| m.deployer) else {
            continue; // a library crate such as functions/core
        };
        out.push(FunctionSpec {
            name: manifest.package.name.replace('_', "-"),
            description: manifest.package.description.unwrap_or_default(),
            crate_name: manifest.package.name,
            memory_mb: meta.memory_mb,
            timeout_s: meta.timeout_s,
            dlq_reason: meta.dlq_reason,
        });
    }
    if out.is_empty() {
        return Err(PackageError::NoFunctions {
            dir: dir.display().to_string(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Keeps only the named functions (all when `names` is empty).
pub fn select(
    specs: Vec<FunctionSpec>,
    names: &[String],
) -> Result<Vec<FunctionSpec>, PackageError> {
    if names.is_empty() {
        return Ok(specs);
    }
    for n in names {
        if !specs.iter().any(|s| &s.name == n || &s.crate_name == n) {
            return Err(PackageError::UnknownFunction {
                name: n.clone(),
                known: specs
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    Ok(specs
        .into_iter()
        .filter(|s| names.iter().any(|n| n == &s.name || n == &s.crate_name))
        .collect())
}

/// `FooBar` + `Function` from `foo-bar`, a CloudFormation logical id.
pub fn logical_id(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_']) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out + "Function"
}

/// The cargo-lambda executable: `$DEPLOYER_CARGO_LAMBDA`, the project venv's, or PATH's.
fn cargo_lambda(root: &Path) -> Result<PathBuf, PackageError> {
    if let Some(p) = std::env::var_os("DEPLOYER_CARGO_LAMBDA") {
        return Ok(PathBuf::from(p));
    }
    let venv = root.join(".venv/bin/cargo-lambda");
    if venv.is_file() {
        return Ok(venv);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("cargo-lambda"))
            .find(|p| p.is_file())
    });
    on_path.ok_or_else(|| PackageError::CargoLambdaMissing {
        looked: venv.display().to_string(),
    })
}

/// A fingerprint of everything a cargo-lambda build reads: the architecture, every file under
/// `functions/` and `tools/workspace-hack/` (build outputs excluded) and `frontend/dist/` (embedded by the web function),
/// the workspace manifest and lock file. Equal
/// fingerprints mean cargo would rebuild nothing, so the packages from the last build stand.
pub fn source_fingerprint(root: &Path, arch: Architecture) -> String {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            if name == "target" || name == "node_modules" || name.to_string_lossy().starts_with('.')
            {
                continue;
            }
            if p.is_dir() {
                walk(&p, files);
            } else {
                files.push(p);
            }
        }
    }
    let mut files = vec![root.join("Cargo.toml"), root.join("Cargo.lock")];
    walk(&root.join("functions"), &mut files);
    // Every handler depends on the workspace-hack crate (the unified dependency features).
    walk(&root.join("tools/workspace-hack"), &mut files);
    // The web function embeds the frontend's build: a rebuilt frontend rebuilds its zip.
    walk(&root.join("frontend/dist"), &mut files);
    files.sort();
    let mut h = Sha256::new();
    h.update(arch.as_lambda().as_bytes());
    for f in files {
        h.update(
            f.strip_prefix(root)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update([0]);
        h.update(std::fs::read(&f).unwrap_or_default());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Packages from the last build when nothing they were built from has changed.
fn unchanged_packages(
    env: &Environment,
    specs: &[FunctionSpec],
    fingerprint: &str,
) -> Option<Vec<BuiltPackage>> {
    let out_dir = env.state_dir.join("build");
    let recorded = std::fs::read_to_string(out_dir.join("fingerprint")).ok()?;
    if recorded.trim() != fingerprint {
        return None;
    }
    specs
        .iter()
        .map(|spec| {
            let zip_path = out_dir.join(format!("{}.zip", spec.name));
            let zip = std::fs::read(&zip_path).ok()?;
            Some(BuiltPackage {
                spec: spec.clone(),
                sha256_hex: hex::encode(Sha256::digest(&zip)),
                size: zip.len() as u64,
                zip_path,
            })
        })
        .collect()
}

/// What a build produced: the handler packages and, on a local environment, the model
/// binary built in the same cargo invocation.
#[derive(Debug, Clone)]
pub struct Built {
    pub packages: Vec<BuiltPackage>,
    /// `waste-model` (dev profile, this host), for the local cloud's training and endpoints.
    pub model: Option<PathBuf>,
}

/// The model crate built beside the handlers on a local environment.
pub const MODEL_CRATE: &str = "waste-model";

/// Builds the functions and zips them.
///
/// - `aws`: cargo-lambda (release, `provided.al2023`, the environment's architecture), unless
///   their sources are unchanged since the last build (then the last packages are returned).
/// - `local`: a native build for this host in the dev profile, the same profile, target and
///   (through the workspace-hack crate) dependency features as the deployer itself, so the AWS
///   SDK compiled for `cargo build -p deployer` is reused rather than compiled again in release
///   for another target. The model binary is built in the same invocation: built alone it would
///   resolve its dependencies' features differently and come out as a different binary.
pub fn build(env: &Environment, specs: &[FunctionSpec]) -> Result<Built, PackageError> {
    match env.target {
        Target::Local => build_native(env, specs),
        Target::Aws => {
            let fingerprint = source_fingerprint(&env.root, env.architecture);
            if let Some(same) = unchanged_packages(env, specs, &fingerprint) {
                return Ok(Built {
                    packages: same,
                    model: None,
                });
            }
            let built = build_with_cargo_lambda(env, specs)?;
            let path = env.state_dir.join("build/fingerprint");
            crate::state::write_atomically(&path, fingerprint.as_bytes()).map_err(|source| {
                PackageError::Write {
                    path: path.display().to_string(),
                    source,
                }
            })?;
            Ok(Built {
                packages: built,
                model: None,
            })
        }
    }
}

/// One executable cargo reported.
#[derive(Debug, Clone)]
pub struct Executable {
    /// The binary target's name.
    pub name: String,
    pub path: PathBuf,
}

/// Why [`cargo_build`] gave no binary.
#[derive(Debug)]
pub enum CargoBuildError {
    /// cargo could not be started.
    Spawn(std::io::Error),
    /// cargo failed; `stderr` is what it said when it was captured.
    Failed {
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// `cargo build <args>` in `root` with the cargo that runs us (`$CARGO`, so a
/// `CARGO_TARGET_DIR` or toolchain override applies); answers the executables cargo reports,
/// wherever the target directory is. Cargo's progress goes to the user's terminal (stderr)
/// unless `capture_stderr` keeps it for the error.
pub fn cargo_build(
    root: &Path,
    args: &[&str],
    capture_stderr: bool,
) -> Result<Vec<Executable>, CargoBuildError> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("build")
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(if capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .output()
        .map_err(CargoBuildError::Spawn)?;
    if !out.status.success() {
        return Err(CargoBuildError::Failed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact")
        .filter_map(|v| {
            Some(Executable {
                name: v["target"]["name"].as_str()?.to_string(),
                path: PathBuf::from(v["executable"].as_str()?),
            })
        })
        .collect())
}

/// The record of the last native build's zips: which executable (path, size, modification
/// time) each was made from, so an unchanged binary is not zipped again.
#[derive(Debug, Default, serde::Serialize, Deserialize)]
struct NativeRecord {
    functions: std::collections::BTreeMap<String, NativeEntry>,
    /// [`sources_fingerprint`] when cargo last built, and what it built (name, identity).
    #[serde(default)]
    sources: String,
    #[serde(default)]
    executables: Vec<(String, NativeEntry)>,
    /// Each zip's hash and size, by function, with the zip file's own identity.
    #[serde(default)]
    zips: std::collections::BTreeMap<String, (NativeEntry, String)>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
struct NativeEntry {
    executable: PathBuf,
    len: u64,
    modified_ns: u128,
}

/// Everything a native build of the handlers and the model reads from the workspace, as a
/// hash of each file's path, size and modification time (not contents: a no-op `up` must stay
/// well under cargo's own 0.2 s no-op check), plus the environment variables that change what
/// cargo builds. Equal fingerprints and unchanged executables mean cargo would do nothing, so
/// it is not asked. A toolchain update is not in it: the binaries built by the old one still run.
fn sources_fingerprint(root: &Path) -> String {
    fn walk(dir: &Path, h: &mut Sha256) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            if matches!(name.to_str(), Some("target" | "node_modules" | ".git")) {
                continue;
            }
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&path, h),
                Ok(_) => file(&path, h),
                Err(_) => {}
            }
        }
    }
    fn file(path: &Path, h: &mut Sha256) {
        h.update(path.to_string_lossy().as_bytes());
        if let Some(id) = identity(path) {
            h.update(id.len.to_le_bytes());
            h.update(id.modified_ns.to_le_bytes());
        }
        h.update([0]);
    }
    let mut h = Sha256::new();
    for dir in ["functions", "model", "tools/workspace-hack", ".cargo"] {
        walk(&root.join(dir), &mut h);
    }
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "rust-toolchain",
        "rust-toolchain.toml",
    ] {
        file(&root.join(f), &mut h);
    }
    for (k, v) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_") && !k.starts_with("CARGO_PKG_") && !k.starts_with("CARGO_BIN_")
            || k.starts_with("RUST")
            || k == "CARGO"
        {
            h.update(k.as_bytes());
            h.update(v.to_string_lossy().as_bytes());
            h.update([0]);
        }
    }
    hex::encode(h.finalize())
}

const NATIVE_RECORD: &str = "native.json";

fn identity(path: &Path) -> Option<NativeEntry> {
    let meta = std::fs::metadata(path).ok()?;
    let modified_ns = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(NativeEntry {
        executable: path.to_path_buf(),
        len: meta.len(),
        modified_ns,
    })
}

fn build_native(env: &Environment, specs: &[FunctionSpec]) -> Result<Built, PackageError> {
    let root = &env.root;
    // Always every function and the model, whatever `specs` asks for: one package set means one
    // feature resolution, so each build is a no-op for what did not change.
    let all = discover(root)?;
    let with_model = root.join("model/Cargo.toml").is_file();
    let mut args: Vec<&str> = Vec::new();
    for s in &all {
        args.extend(["-p", s.crate_name.as_str()]);
    }
    if with_model {
        args.extend(["-p", MODEL_CRATE]);
    }
    let out_dir = env.state_dir.join("build");
    std::fs::create_dir_all(&out_dir).map_err(|source| PackageError::Write {
        path: out_dir.display().to_string(),
        source,
    })?;
    let record_path = out_dir.join(NATIVE_RECORD);
    let previous: NativeRecord = std::fs::read(&record_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let sources = sources_fingerprint(root);
    let unchanged = !previous.executables.is_empty()
        && previous.sources == sources
        && previous
            .executables
            .iter()
            .all(|(_, e)| identity(&e.executable).as_ref() == Some(e));
    let exes: Vec<Executable> = if unchanged {
        previous
            .executables
            .iter()
            .map(|(name, e)| Executable {
                name: name.clone(),
                path: e.executable.clone(),
            })
            .collect()
    } else {
        cargo_build(root, &args, false).map_err(|e| match e {
            CargoBuildError::Spawn(_) => PackageError::CargoMissing,
            CargoBuildError::Failed { status, .. } => PackageError::NativeBuildFailed {
                status: status.to_string(),
            },
        })?
    };
    let find = |name: &str| exes.iter().find(|e| e.name == name).map(|e| e.path.clone());
    let jobs: Vec<(FunctionSpec, PathBuf)> = specs
        .iter()
        .map(|spec| {
            find(&spec.crate_name)
                .map(|p| (spec.clone(), p))
                .ok_or_else(|| PackageError::MissingBinary {
                    path: format!("the {} binary (cargo reported none)", spec.crate_name),
                })
        })
        .collect::<Result<_, _>>()?;
    // Debug binaries are tens of megabytes: zip them in parallel, at a fast level (the
    // packages only travel over loopback to the emulator).
    let results: Vec<Result<(BuiltPackage, Option<NativeEntry>), PackageError>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(spec, exe)| {
                    let out_dir = &out_dir;
                    let previous = &previous;
                    scope.spawn(move || {
                        package_native(
                            spec,
                            exe,
                            out_dir,
                            previous.functions.get(&spec.name),
                            previous.zips.get(&spec.name),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(PackageError::Write {
                            path: out_dir.display().to_string(),
                            source: std::io::Error::other("a packaging thread panicked"),
                        })
                    })
                })
                .collect()
        });
    let mut record = previous;
    let mut packages = Vec::new();
    for r in results {
        let (pkg, entry) = r?;
        match entry {
            Some(e) => record.functions.insert(pkg.spec.name.clone(), e),
            None => record.functions.remove(&pkg.spec.name),
        };
        match identity(&pkg.zip_path) {
            Some(z) => record
                .zips
                .insert(pkg.spec.name.clone(), (z, pkg.sha256_hex.clone())),
            None => record.zips.remove(&pkg.spec.name),
        };
        packages.push(pkg);
    }
    record.sources = sources;
    record.executables = exes
        .iter()
        .filter_map(|e| Some((e.name.clone(), identity(&e.path)?)))
        .collect();
    let text = serde_json::to_vec_pretty(&record).unwrap_or_default();
    crate::state::write_atomically(&record_path, &text).map_err(|source| PackageError::Write {
        path: record_path.display().to_string(),
        source,
    })?;
    Ok(Built {
        packages,
        model: if with_model { find(MODEL_CRATE) } else { None },
    })
}

/// One function's zip from a native build: the last one when the executable is the very file
/// it was made from, else a new one.
fn package_native(
    spec: &FunctionSpec,
    exe: &Path,
    out_dir: &Path,
    previous: Option<&NativeEntry>,
    previous_zip: Option<&(NativeEntry, String)>,
) -> Result<(BuiltPackage, Option<NativeEntry>), PackageError> {
    let zip_path = out_dir.join(format!("{}.zip", spec.name));
    let now = identity(exe);
    if now.is_some() && now.as_ref() == previous {
        // The zip is the very file its hash was taken of: no need to read 20 MB again.
        if let Some((z, sha)) = previous_zip {
            if identity(&zip_path).as_ref() == Some(z) {
                return Ok((
                    BuiltPackage {
                        spec: spec.clone(),
                        sha256_hex: sha.clone(),
                        size: z.len,
                        zip_path,
                    },
                    now,
                ));
            }
        }
        if let Ok(zip) = std::fs::read(&zip_path) {
            return Ok((
                BuiltPackage {
                    spec: spec.clone(),
                    sha256_hex: hex::encode(Sha256::digest(&zip)),
                    size: zip.len() as u64,
                    zip_path,
                },
                now,
            ));
        }
    }
    let bytes = std::fs::read(exe).map_err(|_| PackageError::MissingBinary {
        path: exe.display().to_string(),
    })?;
    let zip = deterministic_zip_level(&bytes, 1).map_err(|source| PackageError::Write {
        path: exe.display().to_string(),
        source,
    })?;
    write_atomically(&zip_path, &zip)?;
    Ok((
        BuiltPackage {
            spec: spec.clone(),
            sha256_hex: hex::encode(Sha256::digest(&zip)),
            size: zip.len() as u64,
            zip_path,
        },
        now,
    ))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    crate::state::write_atomically(path, bytes).map_err(|source| PackageError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn build_with_cargo_lambda(
    env: &Environment,
    specs: &[FunctionSpec],
) -> Result<Vec<BuiltPackage>, PackageError> {
    let root = &env.root;
    let tool = cargo_lambda(root)?;
    let arch = env.architecture;
    // One output directory per architecture, so switching never mixes binaries.
    let lambda_dir = root.join("target/lambda").join(arch.as_lambda());
    let mut cmd = Command::new(&tool);
    cmd.current_dir(root)
        .args(["lambda", "build", "--release", "--quiet"])
        .arg(match arch {
            Architecture::X86_64 => "--x86-64",
            Architecture::Arm64 => "--arm64",
        })
        .arg("--lambda-dir")
        .arg(&lambda_dir);
    for s in specs {
        cmd.args(["--package", &s.crate_name]);
    }
    // cargo-lambda finds zig through the venv's python-zig.
    let venv_bin = root.join(".venv/bin");
    if let Some(path) = std::env::var_os("PATH") {
        let mut paths = vec![venv_bin];
        paths.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(paths) {
            cmd.env("PATH", joined);
        }
    }
    // Build output is for the user's terminal (stderr); stdout stays for data.
    cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
    let status = cmd.status().map_err(|_| PackageError::CargoLambdaMissing {
        looked: tool.display().to_string(),
    })?;
    if !status.success() {
        return Err(PackageError::BuildFailed {
            status: status.to_string(),
        });
    }
    let out_dir = env.state_dir.join("build");
    std::fs::create_dir_all(&out_dir).map_err(|source| PackageError::Write {
        path: out_dir.display().to_string(),
        source,
    })?;
    specs
        .iter()
        .map(|spec| {
            let bin = lambda_dir.join(&spec.crate_name).join("bootstrap");
            let bytes = std::fs::read(&bin).map_err(|_| PackageError::MissingBinary {
                path: bin.display().to_string(),
            })?;
            let zip = deterministic_zip(&bytes).map_err(|source| PackageError::Write {
                path: bin.display().to_string(),
                source,
            })?;
            let sha256_hex = hex::encode(Sha256::digest(&zip));
            let zip_path = out_dir.join(format!("{}.zip", spec.name));
            write_atomically(&zip_path, &zip)?;
            Ok(BuiltPackage {
                spec: spec.clone(),
                zip_path,
                sha256_hex,
                size: zip.len() as u64,
            })
        })
        .collect()
}

/// A zip with one executable `bootstrap` entry and no varying metadata (deflate level 6, for
/// packages that travel to AWS).
pub fn deterministic_zip(bootstrap: &[u8]) -> std::io::Result<Vec<u8>> {
    deterministic_zip_level(bootstrap, 6)
}

/// [`deterministic_zip`] at a given deflate level: the same bytes and level always give the
/// same zip.
pub fn deterministic_zip_level(bootstrap: &[u8], level: i64) -> std::io::Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(level))
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o755);
        w.start_file("bootstrap", opts)
            .map_err(std::io::Error::other)?;
        w.write_all(bootstrap)?;
        w.finish().map_err(std::io::Error::other)?;
    }
    Ok(buf.into_inner())
}

/// The template's view of a package.
pub fn function_context(env: &Environment, p: &BuiltPackage) -> FunctionContext {
    context_for(env, &p.spec, &p.sha256_hex)
}

/// The template's view of a function whose package hash is known.
pub fn context_for(env: &Environment, spec: &FunctionSpec, sha256_hex: &str) -> FunctionContext {
    FunctionContext {
        name: spec.name.clone(),
        logical_id: logical_id(&spec.name),
        description: spec.description.clone(),
        architecture: env.architecture.as_lambda().to_string(),
        memory_mb: spec.memory_mb,
        timeout_s: spec.timeout_s,
        code_key: code_key(&spec.name, sha256_hex),
        code_sha256: sha256_hex.to_string(),
        dlq_reason: spec.dlq_reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_are_byte_identical_for_the_same_binary() {
        let a = deterministic_zip(b"\x7fELF pretend").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = deterministic_zip(b"\x7fELF pretend").unwrap();
        assert_eq!(a, b);
        let c = deterministic_zip(b"\x7fELF other").unwrap();
        assert_ne!(a, c);
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(a)).unwrap();
        let f = z.by_name("bootstrap").unwrap();
        assert_eq!(f.unix_mode().unwrap() & 0o777, 0o755);
    }

    #[test]
    fn hashes_convert_between_lambda_and_hex_forms() {
        let hex_digest = hex::encode(Sha256::digest(b"abc"));
        let b64 = hex_to_b64(&hex_digest);
        assert_eq!(b64, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
        assert_eq!(b64_to_hex(&b64).unwrap(), hex_digest);
    }

    #[test]
    fn the_source_fingerprint_follows_the_frontend_build() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("functions/web/src")).unwrap();
        std::fs::create_dir_all(root.join("frontend/dist/assets")).unwrap();
        std::fs::create_dir_all(root.join("frontend/src")).unwrap();
        std::fs::write(root.join("functions/web/src/lib.rs"), "").unwrap();
        std::fs::write(root.join("frontend/dist/index.html"), "a").unwrap();
        std::fs::write(root.join("frontend/src/main.ts"), "a").unwrap();
        let first = source_fingerprint(root, Architecture::X86_64);
        // The frontend's sources count through its build, not by themselves.
        std::fs::write(root.join("frontend/src/main.ts"), "b").unwrap();
        assert_eq!(source_fingerprint(root, Architecture::X86_64), first);
        std::fs::write(root.join("frontend/dist/assets/app-1.js"), "x").unwrap();
        let second = source_fingerprint(root, Architecture::X86_64);
        assert_ne!(second, first);
        std::fs::write(root.join("frontend/dist/index.html"), "b").unwrap();
        assert_ne!(source_fingerprint(root, Architecture::X86_64), second);
    }

    #[test]
    fn logical_ids() {
        assert_eq!(logical_id("api"), "ApiFunction");
        assert_eq!(logical_id("on-dataset"), "OnDatasetFunction");
    }
}
