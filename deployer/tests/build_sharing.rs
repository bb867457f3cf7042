//! The first-run promise of the local default: after `cargo build -p deployer` (what
//! `cargo run -p deployer -- up` builds first), the handlers and the model that `up` builds
//! compile no third-party crate again. Every workspace member depends on the workspace-hack
//! crate, so each build resolves the AWS SDK and its dependencies with the same features; a
//! dependency added with other features (without `cargo hakari generate`) fails this test with
//! the crates that were compiled twice.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cargo build <args>`; answers the third-party crates cargo compiled (not fresh).
fn compiled_registry_crates(args: &[&str]) -> Vec<String> {
    let out = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("build")
        .args(args)
        .arg("--message-format=json")
        .current_dir(root())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo build {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["fresh"] == false)
        .filter(|v| {
            v["package_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("registry+"))
        })
        .map(|v| {
            format!(
                "{} ({})",
                v["target"]["name"].as_str().unwrap_or("?"),
                v["target"]["kind"]
            )
        })
        .collect()
}

#[test]
fn the_local_handlers_and_model_reuse_the_deployers_dependencies() {
    compiled_registry_crates(&["-p", "deployer"]);
    let specs = deployer::package::discover(&root()).unwrap();
    let mut args = vec!["-p", deployer::package::MODEL_CRATE];
    for s in &specs {
        args.extend(["-p", s.crate_name.as_str()]);
    }
    let again = compiled_registry_crates(&args);
    assert!(
        again.is_empty(),
        "the handlers' build compiled {} third-party crate(s) the deployer's build had already \
         compiled with other features: {}; run `cargo hakari generate && cargo hakari \
         manage-deps` (cargo-hakari 0.9.39) after changing dependencies",
        again.len(),
        again.join(", ")
    );
}
