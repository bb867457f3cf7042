//! The inference server on loopback: readiness, every error status, concurrency, and the round
//! trip train -> save -> `serve` binary -> identical predictions to the in-process model.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use waste_model::artifact::{Classifier, Model};
use waste_model::bench::HttpClient;
use waste_model::data::Sample;
use waste_model::hparams::HyperParams;
use waste_model::imageio::{decode, encode_jpeg, encode_png, resize_square, Normalization};
use waste_model::nn::{Arch, Network};
use waste_model::rng::Rng;
use waste_model::serve::{start, MAX_BODY};
use waste_model::synth::{render, render_sized};

fn random_model() -> Model {
    let net = Network::new_random(Arch::default_for(64, 8), &mut Rng::new(1)).unwrap();
    Model::new(
        Classifier::Cnn(net),
        Normalization::default(),
        serde_json::json!({}),
        serde_json::json!({}),
    )
}

fn jpeg(seed: u64, recyclable: bool, size: u32) -> Vec<u8> {
    encode_jpeg(
        &render_sized(&mut Rng::new(seed), recyclable, size, size),
        90,
    )
    .unwrap()
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_503_until_the_model_is_loaded_then_200() {
    let server = start(([127, 0, 0, 1], 0).into(), None).await.unwrap();
    let mut c = HttpClient::connect(server.addr).await.unwrap();
    let (status, body) = c.request("GET", "/ping", None, b"").await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(json(&body)["status"], "loading");
    let (status, body) = c
        .request(
            "POST",
            "/invocations",
            Some("image/jpeg"),
            &jpeg(1, true, 96),
        )
        .await
        .unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));

    let model = random_model();
    let fallback_id = model.fingerprint_id();
    assert!(server.set_model(model));
    let (status, _) = c.request("GET", "/ping", None, b"").await.unwrap();
    assert_eq!(status, 200);
    // Without MODEL_ID the model's own fingerprint identifies it.
    let (status, body) = c
        .request(
            "POST",
            "/invocations",
            Some("image/jpeg"),
            &jpeg(1, true, 96),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(json(&body)["model_id"], fallback_id.as_str());
    server.stop().await;
}

/// A JPEG whose header declares 60000x60000 pixels (a decompression bomb) but is tiny.
fn jpeg_bomb() -> Vec<u8> {
    let mut bytes = jpeg(2, false, 16);
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    // SOF0: marker, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&60000u16.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&60000u16.to_be_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_status_and_a_json_reason() {
    let server = start(([127, 0, 0, 1], 0).into(), Some("m-1".into()))
        .await
        .unwrap();
    server.set_model(random_model());
    let mut c = HttpClient::connect(server.addr).await.unwrap();
    let good = jpeg(3, true, 128);

    // (case, content type, body, expected status, expected words in the reason)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "over 4 MB",
            Some("image/jpeg"),
            vec![0xFF; MAX_BODY + 1],
            413,
            "larger than",
        ),
        (
            "text content type",
            Some("text/plain"),
            good.clone(),
            415,
            "unsupported content type",
        ),
        (
            "no content type",
            None,
            good.clone(),
            415,
            "unsupported content type",
        ),
        (
            "not an image",
            Some("image/jpeg"),
            b"hello, world".to_vec(),
            415,
            "not a JPEG or PNG",
        ),
        (
            "truncated",
            Some("image/jpeg"),
            good[..good.len() / 3].to_vec(),
            400,
            "corrupt or truncated",
        ),
        (
            "corrupt",
            Some("application/x-image"),
            {
                let mut b = good.clone();
                let n = b.len();
                b[n / 2..n - 2].fill(0x00);
                b[20..40].fill(0xFF);
                b
            },
            400,
            "corrupt or truncated",
        ),
        (
            "bomb",
            Some("image/jpeg"),
            jpeg_bomb(),
            400,
            "refused before decoding",
        ),
    ];
    for (name, ctype, body, want, reason) in cases {
        let t = Instant::now();
        let (status, resp) = c
            .request("POST", "/invocations", ctype, &body)
            .await
            .unwrap();
        assert_eq!(status, want, "{name}: {}", String::from_utf8_lossy(&resp));
        let err = json(&resp)["error"].as_str().unwrap().to_string();
        assert!(err.contains(reason), "{name}: {err}");
        if name == "bomb" {
            // Decoding 3.6 gigapixels would take far longer (and 10 GB); refusing takes a header read.
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "bomb took {:?}",
                t.elapsed()
            );
        }
    }
    let (status, _) = c.request("GET", "/invocations", None, b"").await.unwrap();
    assert_eq!(status, 405);
    let (status, _) = c.request("GET", "/nope", None, b"").await.unwrap();
    assert_eq!(status, 404);

    // The same connection still serves good requests, PNG included, with the given model id.
    let png = encode_png(&render(&mut Rng::new(4), false)).unwrap();
    for (ctype, body) in [
        ("image/jpeg", &good),
        ("image/png", &png),
        ("image/jpeg; charset=binary", &good),
    ] {
        let (status, resp) = c
            .request("POST", "/invocations", Some(ctype), body)
            .await
            .unwrap();
        assert_eq!(status, 200, "{ctype}: {}", String::from_utf8_lossy(&resp));
        let v = json(&resp);
        assert_eq!(v["model_id"], "m-1");
        let p = &v["probabilities"];
        let sum = p["Organic"].as_f64().unwrap() + p["Recyclable"].as_f64().unwrap();
        assert!((sum - 1.0).abs() < 1e-5);
        assert!(v["confidence"].as_f64().unwrap() >= 0.5);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_are_answered_correctly_and_ping_stays_responsive() {
    let server = start(([127, 0, 0, 1], 0).into(), Some("m-50".into()))
        .await
        .unwrap();
    let model = random_model();
    let images: Vec<Vec<u8>> = (0..5).map(|i| jpeg(10 + i, i % 2 == 0, 256)).collect();
    let expected: Vec<_> = images
        .iter()
        .map(|b| model.predict_bytes(b).unwrap())
        .collect();
    server.set_model(model);
    let addr = server.addr;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let body = images[i % 5].clone();
            tokio::spawn(async move {
                let mut c = HttpClient::connect(addr).await.unwrap();
                let (status, resp) = c
                    .request("POST", "/invocations", Some("image/jpeg"), &body)
                    .await
                    .unwrap();
                (i, status, resp)
            })
        })
        .collect();
    let mut pinger = HttpClient::connect(addr).await.unwrap();
    let t = Instant::now();
    let (status, _) = pinger.request("GET", "/ping", None, b"").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "ping took {:?} under load",
        t.elapsed()
    );
    for task in tasks {
        let (i, status, resp) = task.await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
        let v = json(&resp);
        let want = &expected[i % 5];
        assert_eq!(v["label"], want.label.as_str());
        assert_eq!(
            v["probabilities"]["Recyclable"].as_f64().unwrap() as f32,
            want.probabilities["Recyclable"]
        );
        assert_eq!(v["model_id"], "m-50");
    }
    server.stop().await;
}

fn samples(n: usize, seed: u64) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let img = render(&mut rng, i % 2 == 1);
            let jpeg = encode_jpeg(&img, 90).unwrap();
            Sample {
                rgb: resize_square(&decode(&jpeg).unwrap(), 64),
                label: i % 2,
                ..Sample::default()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trained_model_served_by_the_binary_predicts_exactly_like_in_process() {
    // Train in process (small, fixed settings), save, serve with the real binary.
    let hp = HyperParams {
        epochs: 2,
        width: 8,
        ..HyperParams::default()
    };
    let norm = Normalization::default();
    let (net, _) = waste_model::train::fit(
        &samples(200, 1),
        &samples(40, 2),
        &hp,
        &norm,
        &AtomicBool::new(false),
        &mut std::io::sink(),
    )
    .unwrap();
    let mut model = Model::new(
        Classifier::Cnn(net),
        norm,
        serde_json::json!({"synthetic": true}),
        serde_json::json!({}),
    );
    let root = tempfile::tempdir().unwrap();
    model.save(&root.path().join("model")).unwrap();

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
        .env("MODEL_ID", "round-trip-7")
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
    let mut rng = Rng::new(99);
    for i in 0..20 {
        let body = encode_jpeg(&render(&mut rng, i % 2 == 0), 90).unwrap();
        let want = model.predict_bytes(&body).unwrap();
        let (status, resp) = client
            .request("POST", "/invocations", Some("image/jpeg"), &body)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let v = json(&resp);
        assert_eq!(v["label"], want.label.as_str());
        assert_eq!(v["model_id"], "round-trip-7");
        for (k, p) in &want.probabilities {
            assert_eq!(v["probabilities"][k].as_f64().unwrap() as f32, *p, "{k}");
        }
    }
    // SIGTERM shuts the server down cleanly.
    common::sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_without_a_model_exits_with_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let port = common::free_port().to_string();
    let out = Command::new(common::bin())
        .args([
            "serve",
            "--ml-root",
            root.path().to_str().unwrap(),
            "--host",
            "127.0.0.1",
            "--port",
            &port,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("failed to load the model"), "{stderr}");
    assert!(stderr.contains("model.json"), "{stderr}");
}
