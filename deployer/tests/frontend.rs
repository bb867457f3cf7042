//! The frontend step of packaging with the real npm on a tiny project (no dependencies, so
//! `npm ci` needs no network): it installs and builds the first time, skips both when nothing
//! changed, rebuilds only for changed sources, reinstalls for a changed lock, and fails with
//! words when the build fails or npm is missing.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use deployer::package::{self, FrontendRun, PackageError};

const PACKAGE_JSON: &str = r#"{
  "name": "tiny-frontend",
  "version": "1.0.0",
  "private": true,
  "scripts": { "build": "node build.js" }
}
"#;

const PACKAGE_LOCK: &str = r#"{
  "name": "tiny-frontend",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": { "name": "tiny-frontend", "version": "1.0.0" }
  }
}
"#;

/// Writes dist/index.html from src/ and counts its runs in ../builds.txt (outside frontend/).
const BUILD_JS: &str = r#"
const fs = require('fs');
if (fs.existsSync('src/fail')) { console.error('build.js: src/fail says fail'); process.exit(3); }
fs.mkdirSync('dist/assets', { recursive: true });
fs.writeFileSync('dist/index.html', '<!doctype html>' + fs.readFileSync('src/main.txt', 'utf8'));
fs.appendFileSync('../builds.txt', 'built\n');
"#;

fn project() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let fe = root.path().join("frontend");
    std::fs::create_dir_all(fe.join("src")).unwrap();
    std::fs::write(fe.join("package.json"), PACKAGE_JSON).unwrap();
    std::fs::write(fe.join("package-lock.json"), PACKAGE_LOCK).unwrap();
    std::fs::write(fe.join("build.js"), BUILD_JS).unwrap();
    std::fs::write(fe.join(".gitignore"), "node_modules/\ndist/\ncoverage/\n").unwrap();
    std::fs::write(fe.join("src/main.txt"), "one").unwrap();
    root
}

fn npm() -> std::path::PathBuf {
    package::npm_program().expect("npm is needed for this test: install Node.js 20 and npm")
}

fn run(root: &Path) -> Result<FrontendRun, PackageError> {
    package::build_frontend_with(root, &npm(), &|m| eprintln!("{m}"))
}

fn builds(root: &Path) -> usize {
    std::fs::read_to_string(root.join("builds.txt"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn index(root: &Path) -> String {
    std::fs::read_to_string(root.join("frontend/dist/index.html")).unwrap()
}

#[test]
fn the_frontend_is_built_when_its_sources_change_and_skipped_otherwise() {
    let p = project();
    let root = p.path();
    let both = FrontendRun {
        installed: true,
        built: true,
    };
    let neither = FrontendRun::default();
    let built_only = FrontendRun {
        installed: false,
        built: true,
    };

    assert_eq!(run(root).unwrap(), both);
    assert_eq!(index(root), "<!doctype html>one");
    assert_eq!(run(root).unwrap(), neither);
    assert_eq!(builds(root), 1);

    // A changed source rebuilds; the lock did not change, so no install.
    std::fs::write(root.join("frontend/src/main.txt"), "two").unwrap();
    assert_eq!(run(root).unwrap(), built_only);
    assert_eq!(index(root), "<!doctype html>two");

    // Outputs, installed packages and ignored files are not sources.
    std::fs::write(root.join("frontend/dist/assets/extra.js"), "x").unwrap();
    std::fs::create_dir_all(root.join("frontend/coverage")).unwrap();
    std::fs::write(root.join("frontend/coverage/lcov.info"), "x").unwrap();
    std::fs::write(root.join("frontend/node_modules/stray.js"), "x").unwrap();
    assert_eq!(run(root).unwrap(), neither);
    assert_eq!(builds(root), 2);

    // A missing build output builds again; a missing node_modules installs again (and the
    // build, whose inputs did not change, is skipped).
    std::fs::remove_dir_all(root.join("frontend/dist")).unwrap();
    assert_eq!(run(root).unwrap(), built_only);
    std::fs::remove_dir_all(root.join("frontend/node_modules")).unwrap();
    assert_eq!(
        run(root).unwrap(),
        FrontendRun {
            installed: true,
            built: false
        }
    );

    // A changed manifest or lock installs and builds.
    std::fs::write(
        root.join("frontend/package.json"),
        PACKAGE_JSON.replace("\"private\"", "\"description\": \"d\",\n  \"private\""),
    )
    .unwrap();
    assert_eq!(run(root).unwrap(), both);
    assert_eq!(run(root).unwrap(), neither);
    assert_eq!(builds(root), 4);
}

#[test]
fn a_failed_build_is_an_error_and_is_tried_again() {
    let p = project();
    let root = p.path();
    run(root).unwrap();
    std::fs::write(root.join("frontend/src/fail"), "").unwrap();
    let err = run(root).unwrap_err();
    assert!(
        matches!(err, PackageError::FrontendFailed { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("npm run build") && msg.contains("frontend"),
        "{msg}"
    );
    // A failed build is not on record (it may have left dist/ half written): the next run
    // builds again, even for the sources of the last good build.
    std::fs::remove_file(root.join("frontend/src/fail")).unwrap();
    assert!(run(root).unwrap().built);
}

#[test]
fn a_missing_npm_says_what_to_install() {
    let p = project();
    let err =
        package::build_frontend_with(p.path(), Path::new("/nonexistent/npm"), &|_| {}).unwrap_err();
    assert!(matches!(err, PackageError::NpmMissing { .. }), "{err:?}");
    assert!(
        err.to_string().contains("install Node.js 20 and npm"),
        "{err}"
    );
}

#[test]
fn a_project_without_a_frontend_builds_none() {
    let root = tempfile::tempdir().unwrap();
    assert_eq!(package::build_frontend(root.path(), &|_| {}).unwrap(), None);
}
