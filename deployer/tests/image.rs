//! The model's container image, checked the way a user would check it, with tools that are not
//! ours: `deployer image build` twice gives the same digest and leaves the layout's blobs as they
//! were; `deployer image push` to a real registry (Debian's `docker-registry`, the CNCF
//! distribution server, on a free loopback port) sends the two blobs and the manifest once and
//! nothing the second time; `skopeo inspect` reads back our digest, platform, layer, entrypoint,
//! port and diff_ids; `skopeo copy` pulls it into an OCI layout and `umoci unpack --rootless`
//! unpacks it; the unpacked binary is the one the image names by SHA-256, and, started from the
//! unpacked filesystem as SageMaker starts the container (`ENTRYPOINT train` over an `/opt/ml`
//! layout), it trains a tiny model. Also the refusals: plain HTTP to a remote registry, a push
//! from the local environment without `--to`, and inspecting before any build.
//!
//! docker-registry, skopeo and umoci are installed by `./dev setup`; the test fails naming it
//! when one is missing.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// An external tool on PATH, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed; run `./dev setup` (it installs docker-registry, skopeo \
                 and umoci, pinned to Debian 12's versions)"
            )
        })
}

/// The deployer with a clean environment: its own state dir, no AWS or DEPLOYER_ settings from
/// the caller, no instance-metadata lookups.
fn deployer(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
    c.current_dir(root())
        .env("DEPLOYER_STATE_DIR", state)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") && k != "AWS_EC2_METADATA_DISABLED"
            || k.starts_with("DEPLOYER_") && k != "DEPLOYER_STATE_DIR"
        {
            c.env_remove(k);
        }
    }
    c
}

fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `deployer ARGS --output json`, which must succeed; its JSON.
fn json(state: &Path, args: &[&str]) -> Value {
    let out = deployer(state)
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    check(&out, &format!("deployer {args:?}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A tool's stdout as JSON (the command must succeed).
fn tool_json(c: &mut Command, what: &str) -> Value {
    let out = c.output().unwrap();
    check(&out, what);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts exit 1 and a single error line containing every needle.
fn fails_with(out: Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "exactly one error line expected: {stderr}");
    for n in needles {
        assert!(errors[0].contains(n), "{n:?} not in {:?}", errors[0]);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Every blob of a layout: file name → (SHA-256 of the bytes, modification time).
fn blobs(layout: &Path) -> BTreeMap<String, (String, SystemTime)> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                (
                    sha256_hex(&bytes),
                    e.metadata().unwrap().modified().unwrap(),
                ),
            )
        })
        .collect()
}

/// The manifest an OCI layout's `index.json` names, read from the files themselves.
fn layout_manifest(layout: &Path) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `docker-registry serve` on a free loopback port with its storage in a temporary directory;
/// killed by its pid when dropped, also when an assertion failed midway.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let bin = tool("docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let log_path = dir.path().join("registry.log");
        // Another process may take the port between picking and binding: try a few.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: {addr}\n",
                    storage.display()
                ),
            )
            .unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&bin)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            if wait_ready(&mut child, &addr, Duration::from_secs(15)) {
                return Registry {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
        }
        panic!("docker-registry did not answer GET /v2/ with 200 in three tries:\n{last_log}");
    }

    fn repo(&self) -> String {
        format!("{}/waste-model", self.addr)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SIGKILL to the child's pid, then reap it; the storage directory goes after.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `GET /v2/` until it answers 200; false if the process exits or time runs out.
fn wait_ready(child: &mut Child, addr: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if http_status(addr, "/v2/") == Some(200) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The status code of a plain-HTTP GET, or None if nothing answers.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    let line = String::from_utf8_lossy(&head[..n]).to_string();
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn build_push_inspect_pull_unpack_and_train_from_the_image() {
    let skopeo = tool("skopeo");
    let umoci = tool("umoci");
    let registry = Registry::start();
    let state = tempfile::tempdir().unwrap();
    let s = state.path();
    let work = tempfile::tempdir().unwrap();

    // Build twice: the same binary gives the same digest, and the layout's blobs stay as they
    // were (same files, same bytes, not rewritten).
    let first = json(s, &["image", "build"]);
    let digest = first["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{first}"
    );
    let layout = PathBuf::from(first["layout"].as_str().unwrap());
    assert_eq!(layout, s.join("local/image"));
    let before = blobs(&layout);
    assert_eq!(before.len(), 3, "manifest, config, layer: {before:?}");
    for (name, (sha, _)) in &before {
        assert_eq!(name, sha, "a blob's name is its SHA-256");
    }
    let second = json(s, &["image", "build"]);
    assert_eq!(second["digest"], first["digest"], "{first}\n{second}");
    assert_eq!(second["binary_sha256"], first["binary_sha256"]);
    assert_eq!(
        blobs(&layout),
        before,
        "the second build changed the layout"
    );
    let manifest = layout_manifest(&layout);
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        manifest["layers"][0]["size"].as_u64(),
        second["layer_bytes"].as_u64()
    );

    let local = json(s, &["image", "inspect"]);
    assert_eq!(local["digest"], digest.as_str());
    assert_eq!(local["in_registry"], Value::Null);

    // The refusals that need a built image.
    let out = deployer(s)
        .args([
            "image",
            "push",
            "--to",
            "registry.example.com/x",
            "--plain-http",
        ])
        .output()
        .unwrap();
    fails_with(
        out,
        &[
            "plain HTTP is only allowed to a loopback registry",
            "registry.example.com",
        ],
    );
    let out = deployer(s).args(["image", "push"]).output().unwrap();
    fails_with(
        out,
        &[
            "environment local runs the model binary in the local cloud",
            "--to",
        ],
    );

    // Push: two blobs and the manifest; then nothing.
    let repo = registry.repo();
    let to = ["--to", repo.as_str(), "--plain-http"];
    let absent = json(s, &[&["image", "inspect"][..], &to].concat());
    assert_eq!(absent["in_registry"], false, "{absent}");
    let push1 = json(s, &[&["image", "push"][..], &to].concat());
    assert_eq!(push1["digest"], digest.as_str(), "{push1}");
    assert_eq!(push1["reference"], format!("{repo}@{digest}"));
    assert_eq!(push1["tag"], format!("sha256-{}", &digest[7..19]));
    assert_eq!(push1["blobs_uploaded"], 2, "{push1}");
    assert_eq!(push1["manifest_pushed"], true, "{push1}");
    assert_eq!(
        push1["bytes_uploaded"], second["image_bytes"],
        "layer + config + manifest"
    );
    let push2 = json(s, &[&["image", "push"][..], &to].concat());
    assert_eq!(push2["digest"], digest.as_str(), "{push2}");
    assert_eq!(push2["blobs_uploaded"], 0, "{push2}");
    assert_eq!(push2["bytes_uploaded"], 0, "{push2}");
    assert_eq!(push2["manifest_pushed"], false, "{push2}");
    let present = json(s, &[&["image", "inspect"][..], &to].concat());
    assert_eq!(present["in_registry"], true, "{present}");

    // What skopeo reads from the registry.
    let by_digest = format!("docker://{repo}@{digest}");
    let remote = tool_json(
        Command::new(&skopeo).args(["inspect", "--tls-verify=false", &by_digest]),
        "skopeo inspect",
    );
    assert_eq!(remote["Digest"], digest.as_str(), "{remote}");
    assert_eq!(remote["Architecture"], "amd64");
    assert_eq!(remote["Os"], "linux");
    assert_eq!(
        remote["Layers"],
        serde_json::json!([layer_digest]),
        "{remote}"
    );
    let raw = Command::new(&skopeo)
        .args(["inspect", "--raw", "--tls-verify=false", &by_digest])
        .output()
        .unwrap();
    check(&raw, "skopeo inspect --raw");
    assert_eq!(
        format!("sha256:{}", sha256_hex(&raw.stdout)),
        digest,
        "the registry serves our manifest bytes"
    );
    let config = tool_json(
        Command::new(&skopeo).args(["inspect", "--config", "--tls-verify=false", &by_digest]),
        "skopeo inspect --config",
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/waste-model"]),
        "{config}"
    );
    assert!(
        config["config"]["ExposedPorts"]["8080/tcp"].is_object(),
        "{config}"
    );
    assert_eq!(config["rootfs"]["diff_ids"], local["diff_ids"], "{config}");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");

    // Pull it back and unpack it as a container runtime would.
    let oci = work.path().join("oci");
    let out = Command::new(&skopeo)
        .args([
            "--insecure-policy",
            "copy",
            "--src-tls-verify=false",
            &by_digest,
        ])
        .arg(format!("oci:{}:waste-model", oci.display()))
        .output()
        .unwrap();
    check(&out, "skopeo copy");
    let bundle = work.path().join("bundle");
    let out = Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:waste-model", oci.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    check(&out, "umoci unpack");
    let runtime: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let args = &runtime["process"]["args"];
    assert_eq!(
        args,
        &serde_json::json!(["/usr/local/bin/waste-model"]),
        "{runtime}"
    );
    let entry = args[0].as_str().unwrap();
    let binary = bundle.join("rootfs").join(entry.trim_start_matches('/'));
    let bytes = std::fs::read(&binary).unwrap();
    assert_eq!(sha256_hex(&bytes), local["binary_sha256"].as_str().unwrap());
    assert_eq!(bytes.len() as u64, second["binary_bytes"].as_u64().unwrap());
    assert!(binary.metadata().unwrap().permissions().mode() & 0o111 != 0);
    for dir in ["opt/ml", "tmp"] {
        assert!(bundle.join("rootfs").join(dir).is_dir(), "/{dir} missing");
    }

    // Run it from the unpacked filesystem as SageMaker runs `IMAGE train`: a tiny synthetic
    // data set in the /opt/ml layout under a temporary root.
    let synth = work.path().join("synth");
    let out = Command::new(&binary)
        .args(["synth", "--count", "80", "--seed", "7", "--out"])
        .arg(&synth)
        .output()
        .unwrap();
    check(&out, "waste-model synth");
    let ml = work.path().join("ml");
    let data = ml.join("input/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(ml.join("input/config")).unwrap();
    std::fs::rename(synth.join("TRAIN"), data.join("train")).unwrap();
    std::fs::rename(synth.join("TEST"), data.join("validation")).unwrap();
    std::fs::write(
        ml.join("input/config/hyperparameters.json"),
        r#"{"epochs":"3","image_size":"64","width":"8","batch_size":"32","patience":"3",
            "warmup_epochs":"0","augment":"false","threads":"2","seed":"7"}"#,
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(&binary)
        .arg("train")
        .arg("--ml-root")
        .arg(&ml)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap();
    let train_seconds = started.elapsed().as_secs_f64();
    check(&out, "waste-model train from the unpacked image");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("epoch=1 ")),
        "no epoch line: {stdout}"
    );
    for f in ["model.safetensors", "model.json", "metrics.json"] {
        assert!(ml.join("model").join(f).is_file(), "model/{f} missing");
    }
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(ml.join("output/data/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["dataset"]["synthetic"], true, "{metrics}");
    assert_eq!(
        metrics["support"], 16,
        "80 images, 20% for validation: {metrics}"
    );
    assert!(!ml.join("output/failure").exists());

    eprintln!(
        "figures: digest {digest}; layer {} B gzip, binary {} B, image {} B; \
         build {:.2} s / {:.2} s (first/second); push {:.2} s / {:.2} s (first/second); \
         train from the unpacked image {train_seconds:.1} s",
        second["layer_bytes"],
        second["binary_bytes"],
        second["image_bytes"],
        first["seconds"].as_f64().unwrap(),
        second["seconds"].as_f64().unwrap(),
        push1["seconds"].as_f64().unwrap(),
        push2["seconds"].as_f64().unwrap(),
    );
}

#[test]
fn inspect_and_push_before_any_build_name_the_build_command() {
    let state = tempfile::tempdir().unwrap();
    let out = deployer(state.path())
        .args(["image", "inspect"])
        .output()
        .unwrap();
    fails_with(out, &["no image has been built", "deployer image build"]);
    let out = deployer(state.path())
        .args([
            "image",
            "push",
            "--to",
            "127.0.0.1:9/waste-model",
            "--plain-http",
        ])
        .output()
        .unwrap();
    fails_with(out, &["no image has been built", "deployer image build"]);
    assert!(
        !state.path().join("local/image").exists(),
        "a failed command wrote an image layout"
    );
}
