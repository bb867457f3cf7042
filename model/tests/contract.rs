//! The SageMaker training contract, through the real binary: the files a run produces, the
//! failure file and exit status, hyperparameter handling and SIGTERM.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{files_under, ml_root_with_synth, run};

const SMALL: &str = r#"{"epochs": "2", "batch_size": "16", "width": "8", "seed": "3",
    "_tuning_objective_metric": "validation:accuracy"}"#;

#[test]
fn training_run_writes_exactly_the_contract_files() {
    let root = ml_root_with_synth(120, SMALL);
    let r = root.path().to_str().unwrap();
    let out = run(&["train", "--ml-root", r]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One scrapable line per epoch.
    let epoch_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("epoch=")).collect();
    assert_eq!(epoch_lines.len(), 2, "{stdout}");
    for key in [
        "train_loss=",
        "val_loss=",
        "val_accuracy=",
        "val_f1=",
        "val_auc=",
    ] {
        assert!(
            epoch_lines[0].contains(key),
            "{key} missing in {}",
            epoch_lines[0]
        );
    }

    assert_eq!(
        files_under(&root.path().join("model")),
        ["metrics.json", "model.json", "model.safetensors"]
    );
    assert_eq!(
        files_under(&root.path().join("output")),
        ["data/metrics.json"]
    );

    let metrics: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.path().join("output/data/metrics.json")).unwrap(),
    )
    .unwrap();
    let same: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join("model/metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics, same);
    for key in ["accuracy", "precision", "recall", "f1", "auc_roc", "loss"] {
        let v = metrics[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} not a number: {metrics}"));
        if key != "loss" {
            assert!((0.0..=1.0).contains(&v), "{key} = {v} is not a fraction");
        }
    }
    let c = &metrics["confusion_matrix"];
    let total: u64 = ["tp", "tn", "fp", "fn"]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum();
    assert_eq!(total, metrics["support"].as_u64().unwrap());
    // 120 images, 20% in TEST (used as validation in the Kaggle layout).
    assert_eq!(total, 24);
    assert_eq!(metrics["positive_class"], "Recyclable");
    assert_eq!(metrics["dataset"]["synthetic"], true);
    assert_eq!(
        metrics["dataset"]["fingerprint"].as_str().unwrap().len(),
        64
    );

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join("model/model.json")).unwrap())
            .unwrap();
    assert_eq!(meta["labels"], serde_json::json!(["Organic", "Recyclable"]));
    assert_eq!(meta["input_size"], 64);
    assert_eq!(meta["dataset"]["synthetic"], true);
    assert_eq!(meta["training"]["hyperparameters"]["epochs"], 2);
    assert!(meta["normalization"]["mean"].is_array());
    assert!(meta["architecture"]["convs"].is_array());
    assert!(meta["training"]["seconds"].as_f64().unwrap() > 0.0);

    // The trained model classifies files through `predict`.
    let img = root.path().join("input/data/train/TEST/R");
    let first = std::fs::read_dir(&img)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = run(&[
        "predict",
        "--ml-root",
        r,
        "--output",
        "json",
        first.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let preds: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let label = preds[0]["prediction"]["label"].as_str().unwrap();
    assert!(label == "Organic" || label == "Recyclable");

    // `evaluate` on the same folder reproduces the validation metrics.
    let data = root.path().join("input/data/train");
    let out = run(&[
        "evaluate",
        "--ml-root",
        r,
        "--data",
        data.to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["confusion_matrix"], metrics["confusion_matrix"]);
    assert_eq!(eval["dataset"]["synthetic"], true);
}

fn assert_fails_with(hyperparameters: &str, expected: &str) {
    let root = ml_root_with_synth(20, hyperparameters);
    let out = run(&["train", "--ml-root", root.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let failure = std::fs::read_to_string(root.path().join("output/failure")).unwrap();
    assert!(failure.contains(expected), "failure file says: {failure}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(expected));
    assert!(files_under(&root.path().join("model")).is_empty());
}

#[test]
fn unknown_hyperparameter_fails_with_a_clear_reason() {
    assert_fails_with(r#"{"epoch": "3"}"#, "unknown hyperparameter `epoch`");
}

#[test]
fn invalid_hyperparameter_value_fails_with_a_clear_reason() {
    assert_fails_with(
        r#"{"learning_rate": "fast"}"#,
        "hyperparameter `learning_rate`",
    );
    assert_fails_with(r#"{"epochs": ["3"]}"#, "must be a string");
}

#[test]
fn missing_training_channel_fails_and_says_where_to_put_images() {
    let root = tempfile::tempdir().unwrap();
    let out = run(&["train", "--ml-root", root.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let failure = std::fs::read_to_string(root.path().join("output/failure")).unwrap();
    assert!(failure.contains("no training channel"), "{failure}");
    assert!(failure.contains("input/data/train/O"), "{failure}");
}

#[test]
fn a_class_with_only_unreadable_files_fails_and_counts_them() {
    let root = tempfile::tempdir().unwrap();
    let train = root.path().join("input/data/train");
    std::fs::create_dir_all(train.join("organic")).unwrap();
    std::fs::create_dir_all(train.join("Recyclable")).unwrap();
    std::fs::write(train.join("Recyclable/broken.jpg"), b"not a jpeg").unwrap();
    let img = image::RgbImage::from_pixel(70, 70, image::Rgb([10, 120, 30]));
    let jpeg = waste_model::imageio::encode_jpeg(&img, 90).unwrap();
    for i in 0..3 {
        std::fs::write(train.join(format!("organic/{i}.jpg")), &jpeg).unwrap();
    }
    let out = run(&["train", "--ml-root", root.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("skipping unreadable image"), "{stderr}");
    let failure = std::fs::read_to_string(root.path().join("output/failure")).unwrap();
    assert!(
        failure.contains("class Recyclable has no readable images")
            && failure.contains("1 unreadable"),
        "{failure}"
    );
}

#[test]
fn sigterm_stops_training_cleanly() {
    let root = ml_root_with_synth(200, r#"{"epochs": "200", "patience": "200", "width": "8"}"#);
    let mut child = Command::new(common::bin())
        .args(["train", "--ml-root", root.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first epoch so that the signal lands mid-training.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines.next().unwrap().unwrap();
        if line.starts_with("epoch=") {
            break;
        }
    }
    common::sigterm(child.id());
    let sent = Instant::now();
    let status = child.wait().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert!(!status.success());
    let failure = std::fs::read_to_string(root.path().join("output/failure")).unwrap();
    assert!(failure.contains("SIGTERM"), "{failure}");
    assert!(files_under(&root.path().join("model")).is_empty());
}

fn write_class_folders(dir: &std::path::Path, per_class: usize, seed: u64) {
    let mut rng = waste_model::rng::Rng::new(seed);
    for (folder, recyclable) in [("organic", false), ("RECYCLABLE", true)] {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        for i in 0..per_class {
            let img = waste_model::synth::render(&mut rng, recyclable);
            let bytes = if i % 2 == 0 {
                waste_model::imageio::encode_jpeg(&img, 85).unwrap()
            } else {
                waste_model::imageio::encode_png(&img).unwrap()
            };
            std::fs::write(dir.join(folder).join(format!("{i}.img")), bytes).unwrap();
        }
    }
}

fn train_metrics(root: &std::path::Path) -> serde_json::Value {
    let config = root.join("input/config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("hyperparameters.json"),
        r#"{"epochs": "1", "width": "8"}"#,
    )
    .unwrap();
    let out = run(&["train", "--ml-root", root.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(root.join("output/data/metrics.json")).unwrap()).unwrap()
}

#[test]
fn class_folders_without_a_validation_channel_use_a_stratified_split() {
    let root = tempfile::tempdir().unwrap();
    write_class_folders(&root.path().join("input/data/train"), 20, 1);
    let m = train_metrics(root.path());
    assert_eq!(
        m["dataset"]["validation_source"],
        "stratified split of train"
    );
    // 20% of 20 per class.
    assert_eq!(m["support"], 8);
    assert_eq!(m["dataset"]["validation"]["organic"], 4);
    // Not produced by `synth`, so not marked synthetic.
    assert_eq!(m["dataset"]["synthetic"], false);
}

#[test]
fn a_validation_channel_is_used_as_given() {
    let root = tempfile::tempdir().unwrap();
    write_class_folders(&root.path().join("input/data/train"), 15, 2);
    write_class_folders(&root.path().join("input/data/validation"), 6, 3);
    let m = train_metrics(root.path());
    assert_eq!(m["dataset"]["validation_source"], "validation channel");
    assert_eq!(m["support"], 12);
    assert_eq!(m["dataset"]["train"]["images"], 30);
}
