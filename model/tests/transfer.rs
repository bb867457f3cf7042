//! Training from the pretrained backbone end to end, through the `train` contract on a small
//! realistic synthetic set (photo-like sizes, light, grey images, PNGs): `model.arch=accurate`
//! (frozen backbone + linear head) writes a self-contained model directory that `serve` answers
//! with exactly the in-process probabilities, and `model.arch=fast` records its teacher and
//! serves the small CNN.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use waste_model::artifact::{Classifier, Model};
use waste_model::bench::HttpClient;
use waste_model::rng::Rng;
use waste_model::synth::render_sized;

fn ml_root(arch: &str) -> tempfile::TempDir {
    common::ml_root_with_synth_args(
        60,
        &format!(r#"{{"model.arch": "{arch}", "epochs": "3", "threads": "2"}}"#),
        &["--seed", "3", "--style", "realistic"],
    )
}

fn train(root: &std::path::Path) -> String {
    let out = common::run(&["train", "--ml-root", root.to_str().unwrap()]);
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accurate_trains_on_the_backbone_and_serves_the_same_answers() {
    let root = ml_root("accurate");
    let log = train(root.path());
    assert!(
        log.contains("teacher: efficientnet-lite0 at 128x128"),
        "{log}"
    );
    assert!(log.contains("val_accuracy="), "{log}");
    let model = Model::load(&root.path().join("model")).unwrap();
    assert!(matches!(model.net, Classifier::Transfer(_)));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join("model/model.json")).unwrap())
            .unwrap();
    assert_eq!(meta["architecture"]["backbone"], "efficientnet-lite0");
    assert_eq!(meta["input_size"], 128);
    assert!(meta["parameters"].as_u64().unwrap() > 4_000_000);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path().join("model/metrics.json")).unwrap())
            .unwrap();
    // 48 training images of a shape-only task: the pretrained features must carry it.
    assert!(metrics["accuracy"].as_f64().unwrap() >= 0.75, "{metrics}");

    let port = common::free_port();
    let mut child = Command::new(common::bin())
        .args([
            "serve",
            "--ml-root",
            root.path().to_str().unwrap(),
            "--host",
            "127.0.0.1",
        ])
        .env("SAGEMAKER_BIND_TO_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        if let Ok(mut c) = HttpClient::connect(addr).await {
            if let Ok((200, _)) = c.request("GET", "/ping", None, b"").await {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut rng = Rng::new(11);
    for i in 0..8 {
        let side = 180 + 40 * i;
        let img = render_sized(&mut rng, i % 2 == 0, side, side);
        let body = if i % 3 == 0 {
            waste_model::imageio::encode_png(&img).unwrap()
        } else {
            waste_model::imageio::encode_jpeg(&img, 85).unwrap()
        };
        let want = model.predict_bytes(&body).unwrap();
        let ctype = if i % 3 == 0 {
            "image/png"
        } else {
            "image/jpeg"
        };
        let (status, resp) = client
            .request("POST", "/invocations", Some(ctype), &body)
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(v["label"], want.label.as_str());
        for (k, p) in &want.probabilities {
            assert_eq!(v["probabilities"][k].as_f64().unwrap() as f32, *p, "{k}");
        }
    }
    common::sigterm(child.id());
    let _ = child.wait();
}

#[test]
fn fast_is_the_small_cnn_distilled_from_the_backbone() {
    let root = ml_root("fast");
    let log = train(root.path());
    assert!(log.contains("teacher: efficientnet-lite0"), "{log}");
    let model = Model::load(&root.path().join("model")).unwrap();
    assert!(matches!(model.net, Classifier::Cnn(_)));
    assert_eq!(model.meta.input_size, 64);
    let teacher = &model.meta.training["teacher"];
    assert_eq!(teacher["backbone"], "efficientnet-lite0", "{teacher}");
    assert!(teacher["val_accuracy"].as_f64().is_some(), "{teacher}");
    assert_eq!(model.meta.training["hyperparameters"]["arch"], "fast");
}
