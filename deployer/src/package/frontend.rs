//! The web app's build, run before the handlers are compiled: the `web` function embeds
//! `frontend/dist` at compile time, so packaging first makes `dist/` the build of the current
//! sources.
//!
//! - `npm ci` runs when `package.json` or `package-lock.json` changed since its last
//!   successful run, or `node_modules/` is missing.
//! - `npm run build` runs when anything the build reads changed since its last successful run
//!   (every file under `frontend/` except `node_modules/`, `dist/`, hidden directories and
//!   what `frontend/.gitignore` names, plus the installed lock), or `dist/index.html` is
//!   missing.
//!
//! The fingerprints of the last successful runs are kept in `<root>/target/frontend/`, beside
//! a lock file that keeps two deployers from running npm in the same checkout at once. npm's
//! output goes to stderr (stdout is for data).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::PackageError;

/// What [`build_frontend`] ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrontendRun {
    /// `npm ci` ran.
    pub installed: bool,
    /// `npm run build` ran.
    pub built: bool,
}

/// The npm executable: `$DEPLOYER_NPM`, or `npm` on PATH.
pub fn npm_program() -> Result<PathBuf, PackageError> {
    if let Some(p) = std::env::var_os("DEPLOYER_NPM") {
        return Ok(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("npm"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| PackageError::NpmMissing {
            looked: "DEPLOYER_NPM and PATH".into(),
        })
}

/// Brings `<root>/frontend/dist` up to date when the project has a frontend (a
/// `frontend/package.json`); `None` when it has none. `progress` hears one line per npm step.
pub fn build_frontend(
    root: &Path,
    progress: &dyn Fn(&str),
) -> Result<Option<FrontendRun>, PackageError> {
    if !root.join("frontend/package.json").is_file() {
        return Ok(None);
    }
    build_frontend_with(root, &npm_program()?, progress).map(Some)
}

/// [`build_frontend`] with a given npm executable.
pub fn build_frontend_with(
    root: &Path,
    npm: &Path,
    progress: &dyn Fn(&str),
) -> Result<FrontendRun, PackageError> {
    let dir = root.join("frontend");
    let state = root.join("target/frontend");
    std::fs::create_dir_all(&state).map_err(|source| PackageError::Write {
        path: state.display().to_string(),
        source,
    })?;
    let lock_path = state.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(|source| PackageError::Write {
        path: lock_path.display().to_string(),
        source,
    })?;
    lock.lock().map_err(|source| PackageError::Write {
        path: lock_path.display().to_string(),
        source,
    })?;

    let mut run = FrontendRun::default();
    let install_print = install_fingerprint(&dir);
    let install_file = state.join("npm-ci.sha256");
    let why = if !dir.join("node_modules").is_dir() {
        Some("node_modules is missing")
    } else if recorded(&install_file) != install_print {
        Some("package.json or package-lock.json changed")
    } else {
        None
    };
    if let Some(why) = why {
        progress(&format!("frontend: npm ci ({why})"));
        forget(&install_file);
        npm_step(npm, &dir, &["ci", "--no-audit", "--no-fund"])?;
        // npm makes no node_modules for a project without dependencies.
        let modules = dir.join("node_modules");
        std::fs::create_dir_all(&modules).map_err(|source| PackageError::Write {
            path: modules.display().to_string(),
            source,
        })?;
        record(&install_file, &install_print)?;
        run.installed = true;
    }

    let build_print = build_fingerprint(&dir, &install_print);
    let build_file = state.join("build.sha256");
    let index = dir.join("dist/index.html");
    let why = if !index.is_file() {
        Some("dist/index.html is missing")
    } else if recorded(&build_file) != build_print {
        Some("its sources changed")
    } else {
        None
    };
    if let Some(why) = why {
        progress(&format!("frontend: npm run build ({why})"));
        // A failed build may leave dist/ half written: then nothing is on record and the next
        // run builds again, whatever the sources.
        forget(&build_file);
        npm_step(npm, &dir, &["run", "build"])?;
        if !index.is_file() {
            return Err(PackageError::FrontendMissingOutput {
                path: index.display().to_string(),
            });
        }
        record(&build_file, &build_print)?;
        run.built = true;
    }
    Ok(run)
}

fn npm_step(npm: &Path, dir: &Path, args: &[&str]) -> Result<(), PackageError> {
    let step = format!("npm {}", args.join(" "));
    let status = Command::new(npm)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                PackageError::NpmMissing {
                    looked: npm.display().to_string(),
                }
            }
            _ => PackageError::FrontendFailed {
                step: step.clone(),
                dir: dir.display().to_string(),
                status: e.to_string(),
            },
        })?;
    if !status.success() {
        return Err(PackageError::FrontendFailed {
            step,
            dir: dir.display().to_string(),
            status: status.to_string(),
        });
    }
    Ok(())
}

fn recorded(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn record(path: &Path, fingerprint: &str) -> Result<(), PackageError> {
    std::fs::write(path, fingerprint).map_err(|source| PackageError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// What `npm ci` installs from: SHA-256 of the manifest followed by the lock file, the same
/// record `./dev setup` keeps (`cat package.json package-lock.json | sha256sum`).
pub fn install_fingerprint(dir: &Path) -> String {
    let mut h = Sha256::new();
    for f in ["package.json", "package-lock.json"] {
        h.update(std::fs::read(dir.join(f)).unwrap_or_default());
    }
    hex::encode(h.finalize())
}

/// What `npm run build` reads: the installed lock and the build's sources (see the module
/// documentation for what is left out).
pub fn build_fingerprint(dir: &Path, install_fingerprint: &str) -> String {
    let ignore = Ignore::read(&dir.join(".gitignore"));
    let mut files = Vec::new();
    walk(dir, "", &ignore, &mut files);
    files.sort();
    let mut h = Sha256::new();
    h.update(install_fingerprint.as_bytes());
    for (rel, path) in files {
        h.update([0]);
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(std::fs::read(&path).unwrap_or_default()));
    }
    hex::encode(h.finalize())
}

fn walk(dir: &Path, prefix: &str, ignore: &Ignore, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        // Symbolic links count as the file they name; linked directories are not followed.
        let is_dir = ft.is_dir();
        let is_file = ft.is_file() || (ft.is_symlink() && path.is_file());
        if is_dir {
            let output = prefix.is_empty() && name == "dist";
            if name == "node_modules" || name.starts_with('.') || output {
                continue;
            }
            if !ignore.matches(&rel, &name, true) {
                walk(&path, &format!("{rel}/"), ignore, files);
            }
        } else if is_file && !ignore.matches(&rel, &name, false) {
            files.push((rel, path));
        }
    }
}

/// The simple forms of a `.gitignore`: names and globs (`coverage/`, `*.tsbuildinfo`), and
/// paths from its directory (`/out`, `test/output/`). Negations are ignored.
#[derive(Debug, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

#[derive(Debug)]
struct Pattern {
    glob: String,
    dir_only: bool,
    /// Matched against the path from the ignore file's directory, not the name.
    anchored: bool,
}

impl Ignore {
    pub fn read(path: &Path) -> Ignore {
        Ignore::parse(&std::fs::read_to_string(path).unwrap_or_default())
    }

    pub fn parse(text: &str) -> Ignore {
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
            .map(|l| {
                let dir_only = l.ends_with('/');
                let l = l.trim_end_matches('/');
                let anchored = l.contains('/');
                Pattern {
                    glob: l.trim_start_matches('/').to_string(),
                    dir_only,
                    anchored,
                }
            })
            .filter(|p| !p.glob.is_empty())
            .collect();
        Ignore { patterns }
    }

    /// Whether the entry at `rel` (`/`-separated, from the ignore file's directory) named
    /// `name` is ignored.
    pub fn matches(&self, rel: &str, name: &str, is_dir: bool) -> bool {
        self.patterns.iter().any(|p| {
            (is_dir || !p.dir_only)
                && glob(
                    p.glob.as_bytes(),
                    if p.anchored { rel } else { name }.as_bytes(),
                )
        })
    }
}

/// `*` (any run of characters but `/`) and `?` (one character but `/`).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&p[1..], s) || (s.first().is_some_and(|c| *c != b'/') && glob(p, &s[1..]))
        }
        (Some(b'?'), Some(c)) if *c != b'/' => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitignore_names_globs_and_anchored_paths() {
        let i = Ignore::parse("# comment\nnode_modules/\ndist/\ncoverage/\n*.tsbuildinfo\n/out\ntest/output/\n!keep\n");
        assert!(i.matches("coverage", "coverage", true));
        assert!(!i.matches("coverage", "coverage", false), "dir-only");
        assert!(i.matches("tsconfig.tsbuildinfo", "tsconfig.tsbuildinfo", false));
        assert!(i.matches("src/x.tsbuildinfo", "x.tsbuildinfo", false));
        assert!(i.matches("out", "out", false));
        assert!(!i.matches("src/out", "out", false), "anchored to the top");
        assert!(i.matches("test/output", "output", true));
        assert!(!i.matches("src/main.ts", "main.ts", false));
        assert!(!i.matches("keep", "keep", false));
    }

    #[test]
    fn the_install_record_is_the_one_dev_setup_keeps() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("package.json"), "{\"name\": \"x\"}\n").unwrap();
        std::fs::write(d.path().join("package-lock.json"), "{}\n").unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg("cat package.json package-lock.json | sha256sum | cut -d' ' -f1")
            .current_dir(d.path())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            install_fingerprint(d.path())
        );
    }

    #[test]
    fn build_fingerprint_follows_sources_not_outputs() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::create_dir_all(dir.join("dist")).unwrap();
        std::fs::create_dir_all(dir.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(dir.join("coverage")).unwrap();
        std::fs::write(dir.join(".gitignore"), "coverage/\n").unwrap();
        std::fs::write(dir.join("package.json"), "{}").unwrap();
        std::fs::write(dir.join("src/main.ts"), "a").unwrap();
        let first = build_fingerprint(dir, "lock1");
        for (f, text) in [
            ("dist/index.html", "x"),
            ("node_modules/x/i.js", "x"),
            ("coverage/r.json", "x"),
        ] {
            std::fs::write(dir.join(f), text).unwrap();
        }
        assert_eq!(build_fingerprint(dir, "lock1"), first);
        assert_ne!(build_fingerprint(dir, "lock2"), first);
        std::fs::write(dir.join("src/main.ts"), "b").unwrap();
        assert_ne!(build_fingerprint(dir, "lock1"), first);
        // A source folder named dist below the top is a source.
        std::fs::write(dir.join("src/main.ts"), "a").unwrap();
        std::fs::create_dir_all(dir.join("src/dist")).unwrap();
        std::fs::write(dir.join("src/dist/x.ts"), "x").unwrap();
        assert_ne!(build_fingerprint(dir, "lock1"), first);
    }
}
