//! `deployer redeploy` against the emulator, on a copy of the project (so the test can change a
//! handler's source without touching the checkout): no change updates 0 functions; a changed
//! handler updates exactly 1, a changed web app build only the web function; the next `up`
//! uploads nothing and reports the reconciliation.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        if name == "target" || name == "node_modules" {
            continue;
        }
        let (src, dst) = (e.path(), to.join(&name));
        if src.is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// A workspace holding only the function crates (and the web app's build that one embeds),
/// sharing the checkout's target directory so registry dependencies are not rebuilt.
fn project_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = root();
    copy_dir(&r.join("functions"), &dir.path().join("functions"));
    copy_dir(&r.join("stacks"), &dir.path().join("stacks"));
    // Every function crate depends on the workspace-hack crate (the unified features).
    copy_dir(
        &r.join("tools/workspace-hack"),
        &dir.path().join("tools/workspace-hack"),
    );
    // The web function embeds the frontend's build; the copy takes the checkout's dist/ only
    // (no package.json, so packaging runs no npm here).
    let dist = r.join("frontend/dist");
    assert!(
        dist.join("index.html").is_file(),
        "{} is missing: run ./dev setup",
        dist.display()
    );
    copy_dir(&dist, &dir.path().join("frontend/dist"));
    std::fs::copy(r.join("deployer.toml"), dir.path().join("deployer.toml")).unwrap();
    std::fs::copy(r.join("Cargo.lock"), dir.path().join("Cargo.lock")).unwrap();
    let manifest = std::fs::read_to_string(r.join("Cargo.toml")).unwrap();
    let mut doc: toml::Table = toml::from_str(&manifest).unwrap();
    let mut members: Vec<toml::Value> = std::fs::read_dir(dir.path().join("functions"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| toml::Value::String(format!("functions/{}", e.file_name().to_string_lossy())))
        .collect();
    members.push(toml::Value::String("tools/workspace-hack".into()));
    doc["workspace"]
        .as_table_mut()
        .unwrap()
        .insert("members".into(), toml::Value::Array(members));
    std::fs::write(
        dir.path().join("Cargo.toml"),
        toml::to_string(&doc).unwrap(),
    )
    .unwrap();
    dir
}

struct Project {
    dir: tempfile::TempDir,
    state: tempfile::TempDir,
}

impl Project {
    fn json(&self, args: &[&str]) -> Value {
        let r = root();
        let path = format!(
            "{}:{}",
            r.join(".venv/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
        c.current_dir(self.dir.path())
            .env("DEPLOYER_STATE_DIR", self.state.path())
            .env("DEPLOYER_PYTHON", r.join(".venv/bin/python"))
            .env("CARGO_TARGET_DIR", r.join("target"))
            .env("PATH", path)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(args)
            .args(["--output", "json"]);
        for (k, _) in std::env::vars() {
            if k.starts_with("DEPLOYER_") {
                c.env_remove(k);
            }
        }
        c.env("DEPLOYER_STATE_DIR", self.state.path())
            .env("DEPLOYER_PYTHON", r.join(".venv/bin/python"));
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.state.path().join("local/emulator.pid")) {
            if let Ok(pid) = pid.trim().parse() {
                deployer::emulator::terminate(pid);
            }
        }
    }
}

#[test]
fn redeploy_updates_only_changed_functions_and_up_then_reconciles() {
    let p = Project {
        dir: project_copy(),
        state: tempfile::tempdir().unwrap(),
    };
    let up = p.json(&["up", "--yes"]);
    let n = up["functions"].as_array().unwrap().len();

    let same = p.json(&["redeploy"]);
    assert_eq!(same["updated"], 0, "{same}");
    assert_eq!(same["functions"].as_array().unwrap().len(), n);

    // Change what the api handler answers: its health route reports the crate version, so a
    // version bump changes the binary (a comment-only edit would not).
    let manifest = p.dir.path().join("functions/api/Cargo.toml");
    let src = std::fs::read_to_string(&manifest).unwrap();
    let changed = src.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1);
    assert_ne!(src, changed, "the test's edit must apply");
    std::fs::write(&manifest, changed).unwrap();

    let one = p.json(&["redeploy"]);
    assert_eq!(one["updated"], 1, "{one}");
    let updated: Vec<&Value> = one["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["changed"] == true)
        .collect();
    assert!(updated[0]["function"].as_str().unwrap().ends_with("-api"));

    // A new build of the web app changes the web function's package, and only that.
    let index = p.dir.path().join("frontend/dist/index.html");
    let page = std::fs::read_to_string(&index).unwrap();
    std::fs::write(&index, format!("{page}<!-- rebuilt -->\n")).unwrap();
    let web = p.json(&["redeploy"]);
    assert_eq!(web["updated"], 1, "{web}");
    let updated: Vec<&Value> = web["functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["changed"] == true)
        .collect();
    assert!(updated[0]["function"].as_str().unwrap().ends_with("-web"));

    let again = p.json(&["up", "--yes"]);
    assert_eq!(
        again["uploaded"], 0,
        "redeploy already uploaded the package: {again}"
    );
    assert_eq!(
        again["reconciling"],
        serde_json::json!(["api", "web"]),
        "{again}"
    );
    let status = p.json(&["status"]);
    assert!(
        status["functions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["in_sync"] == true),
        "{status}"
    );
    let last = p.json(&["up", "--yes"]);
    assert_eq!(
        last["changed"], false,
        "the stack now matches what runs: {last}"
    );
    p.json(&["down", "--yes"]);
}
