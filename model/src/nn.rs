//! The classifier network and its hand-written forward and backward passes: 3x3 convolutions
//! (padding 1, optional stride 2 for downsampling) as im2col + sgemm, ReLU, global average
//! pooling, a linear head and softmax cross-entropy. Parameters are flat `Vec<f32>` tensors in a
//! fixed order (`conv{i}.weight`, `conv{i}.bias`, ..., `fc.weight`, `fc.bias`) so that saving,
//! loading and the optimiser all walk the same list.

// Index loops mirror the tensor maths (channel o, position j) and keep shapes explicit.
#![allow(clippy::needless_range_loop)]

use ndarray::linalg::general_mat_mul;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Every convolution is 3x3 with padding 1.
pub const KERNEL: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("invalid architecture: {0}")]
    Arch(String),
    #[error("parameter `{name}` has {got} values, the architecture needs {want}; the weights file does not belong to this model.json")]
    ParamSize {
        name: String,
        got: usize,
        want: usize,
    },
    #[error("input has {got} values, the model expects {want} (3 x {size} x {size})")]
    Input {
        got: usize,
        want: usize,
        size: usize,
    },
}

/// One convolution layer: output channels and stride (1 or 2).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConvSpec {
    pub out_channels: usize,
    pub stride: usize,
}

/// The network's shape, saved in model.json so a model directory describes itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Arch {
    pub name: String,
    pub input_size: usize,
    pub in_channels: usize,
    pub convs: Vec<ConvSpec>,
    pub classes: usize,
}

impl Arch {
    /// The default design: four stride-2 stages (the early stride is where latency is won) and
    /// one stride-1 layer at 1/8 resolution that widens the receptive field for shape cues.
    /// `width` scales every layer's channel count (16 is the default).
    pub fn default_for(input_size: usize, width: usize) -> Self {
        let w = width.max(1);
        let c = |m: usize| ConvSpec {
            out_channels: w * m,
            stride: 2,
        };
        Self {
            name: "waste-cnn-v1".to_string(),
            input_size,
            in_channels: 3,
            convs: vec![
                c(1),
                c(2),
                c(4),
                ConvSpec {
                    out_channels: w * 4,
                    stride: 1,
                },
                c(8),
            ],
            classes: 2,
        }
    }

    pub fn validate(&self) -> Result<(), NnError> {
        if self.input_size < 8 || self.input_size > 1024 {
            return Err(NnError::Arch(format!(
                "input_size {} is outside 8..=1024",
                self.input_size
            )));
        }
        if self.convs.is_empty() || self.classes < 2 || self.in_channels == 0 {
            return Err(NnError::Arch(
                "needs at least one convolution, 2 classes and 1 input channel".into(),
            ));
        }
        for (i, c) in self.convs.iter().enumerate() {
            if c.out_channels == 0 || c.out_channels > 4096 || !(1..=2).contains(&c.stride) {
                return Err(NnError::Arch(format!(
                    "conv{i}: out_channels must be 1..=4096 and stride 1 or 2"
                )));
            }
        }
        Ok(())
    }

    /// (channels, height, width) of the input and of every convolution's output.
    pub fn shapes(&self) -> Vec<(usize, usize, usize)> {
        let mut out = vec![(self.in_channels, self.input_size, self.input_size)];
        let mut s = self.input_size;
        for c in &self.convs {
            s = (s + 2 - KERNEL) / c.stride + 1;
            out.push((c.out_channels, s, s));
        }
        out
    }

    /// Names and shapes of every parameter tensor, in storage order.
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        let mut specs = Vec::new();
        let mut cin = self.in_channels;
        for (i, c) in self.convs.iter().enumerate() {
            specs.push((
                format!("conv{i}.weight"),
                vec![c.out_channels, cin, KERNEL, KERNEL],
            ));
            specs.push((format!("conv{i}.bias"), vec![c.out_channels]));
            cin = c.out_channels;
        }
        specs.push(("fc.weight".into(), vec![self.classes, cin]));
        specs.push(("fc.bias".into(), vec![self.classes]));
        specs
    }

    /// Multiply-accumulates of one forward pass, to reason about latency.
    pub fn macs(&self) -> usize {
        let shapes = self.shapes();
        let mut total = 0;
        for (i, c) in self.convs.iter().enumerate() {
            let (cin, _, _) = shapes[i];
            let (_, h, w) = shapes[i + 1];
            total += c.out_channels * cin * KERNEL * KERNEL * h * w;
        }
        total + self.classes * shapes.last().map_or(0, |s| s.0)
    }
}

/// The network: an architecture and its parameters.
#[derive(Debug, Clone)]
pub struct Network {
    pub arch: Arch,
    pub params: Vec<Vec<f32>>,
}

/// Reusable buffers for one forward (and backward) pass, so inference does not allocate.
#[derive(Debug)]
pub struct Workspace {
    acts: Vec<Vec<f32>>,
    cols: Vec<Vec<f32>>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
    dact_a: Vec<f32>,
    dact_b: Vec<f32>,
    dcol: Vec<f32>,
}

impl Workspace {
    pub fn new(arch: &Arch) -> Self {
        let shapes = arch.shapes();
        let acts: Vec<Vec<f32>> = shapes
            .iter()
            .map(|&(c, h, w)| vec![0.0; c * h * w])
            .collect();
        let cols: Vec<Vec<f32>> = (0..arch.convs.len())
            .map(|i| {
                let (cin, _, _) = shapes[i];
                let (_, h, w) = shapes[i + 1];
                vec![0.0; cin * KERNEL * KERNEL * h * w]
            })
            .collect();
        let max_act = acts.iter().map(Vec::len).max().unwrap_or(0);
        let max_col = cols.iter().map(Vec::len).max().unwrap_or(0);
        let last = shapes.last().map_or(0, |s| s.0);
        Self {
            acts,
            cols,
            pooled: vec![0.0; last],
            logits: vec![0.0; arch.classes],
            dact_a: vec![0.0; max_act],
            dact_b: vec![0.0; max_act],
            dcol: vec![0.0; max_col],
        }
    }
}

/// `c = a·b + beta·c`, with `a` (m×k) and `b` (k×n) each optionally stored transposed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    a_t: bool,
    b: &[f32],
    b_t: bool,
    beta: f32,
    c: &mut [f32],
) {
    // Shapes are derived from a validated Arch, so a mismatch is a bug in this module.
    let av = if a_t {
        ArrayView2::from_shape((k, m), a)
            .expect("gemm: a shape")
            .reversed_axes()
    } else {
        ArrayView2::from_shape((m, k), a).expect("gemm: a shape")
    };
    let bv = if b_t {
        ArrayView2::from_shape((n, k), b)
            .expect("gemm: b shape")
            .reversed_axes()
    } else {
        ArrayView2::from_shape((k, n), b).expect("gemm: b shape")
    };
    let mut cv = ndarray::ArrayViewMut2::from_shape((m, n), c).expect("gemm: c shape");
    general_mat_mul(1.0, &av, &bv, beta, &mut cv);
}

/// Unfolds 3x3 patches (padding 1) of a CHW input into a (C*9) × (Ho*Wo) matrix.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col(
    input: &[f32],
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
    ho: usize,
    wo: usize,
    col: &mut [f32],
) {
    let p = ho * wo;
    for ci in 0..c {
        let plane = &input[ci * h * w..(ci + 1) * h * w];
        for ky in 0..KERNEL {
            for kx in 0..KERNEL {
                let row = &mut col[(ci * 9 + ky * 3 + kx) * p..(ci * 9 + ky * 3 + kx + 1) * p];
                for oy in 0..ho {
                    let iy = (oy * stride + ky) as isize - 1;
                    let dst = &mut row[oy * wo..(oy + 1) * wo];
                    if iy < 0 || iy >= h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = (ox * stride + kx) as isize - 1;
                        *d = if ix < 0 || ix >= w as isize {
                            0.0
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: scatters a column-matrix gradient back onto the input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn col2im(
    col: &[f32],
    c: usize,
    h: usize,
    w: usize,
    stride: usize,
    ho: usize,
    wo: usize,
    out: &mut [f32],
) {
    out.fill(0.0);
    let p = ho * wo;
    for ci in 0..c {
        let plane = &mut out[ci * h * w..(ci + 1) * h * w];
        for ky in 0..KERNEL {
            for kx in 0..KERNEL {
                let row = &col[(ci * 9 + ky * 3 + kx) * p..(ci * 9 + ky * 3 + kx + 1) * p];
                for oy in 0..ho {
                    let iy = (oy * stride + ky) as isize - 1;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                    for ox in 0..wo {
                        let ix = (ox * stride + kx) as isize - 1;
                        if ix >= 0 && ix < w as isize {
                            dst[ix as usize] += row[oy * wo + ox];
                        }
                    }
                }
            }
        }
    }
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

impl Network {
    /// He-initialised weights (fan-in), zero biases.
    pub fn new_random(arch: Arch, rng: &mut Rng) -> Result<Self, NnError> {
        arch.validate()?;
        let params = arch
            .param_specs()
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                if name.ends_with(".bias") {
                    return vec![0.0; n];
                }
                let fan_in: usize = shape[1..].iter().product();
                // ReLU layers keep variance with gain 2; the linear head uses gain 1.
                let gain = if name.starts_with("fc") { 1.0 } else { 2.0 };
                let std = (gain / fan_in as f32).sqrt();
                (0..n).map(|_| rng.normal() * std).collect()
            })
            .collect();
        Ok(Self { arch, params })
    }

    /// Builds a network from loaded tensors, checking every size against the architecture.
    pub fn from_params(arch: Arch, params: Vec<Vec<f32>>) -> Result<Self, NnError> {
        arch.validate()?;
        let specs = arch.param_specs();
        if specs.len() != params.len() {
            return Err(NnError::Arch(format!(
                "{} parameter tensors given, the architecture has {}",
                params.len(),
                specs.len()
            )));
        }
        for ((name, shape), p) in specs.iter().zip(&params) {
            let want: usize = shape.iter().product();
            if p.len() != want {
                return Err(NnError::ParamSize {
                    name: name.clone(),
                    got: p.len(),
                    want,
                });
            }
            if p.iter().any(|v| !v.is_finite()) {
                return Err(NnError::Arch(format!(
                    "parameter `{name}` holds NaN or infinity"
                )));
            }
        }
        Ok(Self { arch, params })
    }

    pub fn input_len(&self) -> usize {
        self.arch.in_channels * self.arch.input_size * self.arch.input_size
    }

    pub fn param_count(&self) -> usize {
        self.params.iter().map(Vec::len).sum()
    }

    /// Forward pass of one CHW image; returns the logits. Activations stay in `ws` for backward.
    pub fn forward<'w>(&self, input: &[f32], ws: &'w mut Workspace) -> Result<&'w [f32], NnError> {
        if input.len() != self.input_len() {
            return Err(NnError::Input {
                got: input.len(),
                want: self.input_len(),
                size: self.arch.input_size,
            });
        }
        let shapes = self.arch.shapes();
        ws.acts[0].copy_from_slice(input);
        for (i, conv) in self.arch.convs.iter().enumerate() {
            let (cin, h, w) = shapes[i];
            let (cout, ho, wo) = shapes[i + 1];
            let p = ho * wo;
            let (before, after) = ws.acts.split_at_mut(i + 1);
            let src = &before[i];
            let dst = &mut after[0];
            im2col(src, cin, h, w, conv.stride, ho, wo, &mut ws.cols[i]);
            let weight = &self.params[2 * i];
            let bias = &self.params[2 * i + 1];
            // Seed the output with the bias so the sgemm accumulates onto it (beta = 1).
            for (o, chunk) in dst.chunks_exact_mut(p).enumerate() {
                chunk.fill(bias[o]);
            }
            gemm(
                cout,
                cin * 9,
                p,
                weight,
                false,
                &ws.cols[i],
                false,
                1.0,
                dst,
            );
            for v in dst.iter_mut() {
                *v = v.max(0.0);
            }
        }
        let (f, h, w) = shapes[shapes.len() - 1];
        let last = &ws.acts[shapes.len() - 1];
        let inv = 1.0 / (h * w) as f32;
        for (c, pooled) in ws.pooled.iter_mut().enumerate() {
            *pooled = last[c * h * w..(c + 1) * h * w].iter().sum::<f32>() * inv;
        }
        let n = self.params.len();
        let (fw, fb) = (&self.params[n - 2], &self.params[n - 1]);
        for (k, logit) in ws.logits.iter_mut().enumerate() {
            *logit = fb[k]
                + fw[k * f..(k + 1) * f]
                    .iter()
                    .zip(&ws.pooled)
                    .map(|(a, b)| a * b)
                    .sum::<f32>();
        }
        Ok(&ws.logits)
    }

    /// Class probabilities of one CHW image.
    pub fn predict(&self, input: &[f32], ws: &mut Workspace) -> Result<Vec<f32>, NnError> {
        Ok(softmax(self.forward(input, ws)?))
    }

    /// Forward and backward for one image: adds `scale` × d(loss)/d(param) into `grads` and
    /// returns the (unscaled) cross-entropy loss and the probabilities.
    pub fn accumulate_grads(
        &self,
        input: &[f32],
        label: usize,
        scale: f32,
        grads: &mut [Vec<f32>],
        ws: &mut Workspace,
    ) -> Result<(f32, Vec<f32>), NnError> {
        if label >= self.arch.classes {
            return Err(NnError::Arch(format!("label {label} out of range")));
        }
        let probs = softmax(self.forward(input, ws)?);
        let loss = -probs[label].max(1e-12).ln();
        let shapes = self.arch.shapes();
        let n = self.params.len();
        let (f, h, w) = shapes[shapes.len() - 1];
        let hw = h * w;

        // Softmax cross-entropy: d/dlogit = p - onehot.
        let dlogits: Vec<f32> = probs
            .iter()
            .enumerate()
            .map(|(k, &p)| (p - if k == label { 1.0 } else { 0.0 }) * scale)
            .collect();
        let mut dpooled = vec![0.0f32; f];
        {
            let fw = &self.params[n - 2];
            let (gw_part, gb_part) = grads.split_at_mut(n - 1);
            let gw = &mut gw_part[n - 2];
            let gb = &mut gb_part[0];
            for (k, &d) in dlogits.iter().enumerate() {
                gb[k] += d;
                for j in 0..f {
                    gw[k * f + j] += d * ws.pooled[j];
                    dpooled[j] += fw[k * f + j] * d;
                }
            }
        }
        // Global average pooling spreads the gradient evenly over each channel's plane.
        let mut cur = std::mem::take(&mut ws.dact_a);
        let mut prev = std::mem::take(&mut ws.dact_b);
        for c in 0..f {
            cur[c * hw..(c + 1) * hw].fill(dpooled[c] / hw as f32);
        }
        for i in (0..self.arch.convs.len()).rev() {
            let (cin, hi, wi) = shapes[i];
            let (cout, ho, wo) = shapes[i + 1];
            let p = ho * wo;
            let out = &ws.acts[i + 1];
            let dz = &mut cur[..cout * p];
            // ReLU: no gradient where the unit was clamped.
            for (d, &o) in dz.iter_mut().zip(out.iter()) {
                if o <= 0.0 {
                    *d = 0.0;
                }
            }
            {
                let gb = &mut grads[2 * i + 1];
                for (o, chunk) in dz.chunks_exact(p).enumerate() {
                    gb[o] += chunk.iter().sum::<f32>();
                }
            }
            gemm(
                cout,
                p,
                cin * 9,
                dz,
                false,
                &ws.cols[i],
                true,
                1.0,
                &mut grads[2 * i],
            );
            if i > 0 {
                let dcol = &mut ws.dcol[..cin * 9 * p];
                gemm(
                    cin * 9,
                    cout,
                    p,
                    &self.params[2 * i],
                    true,
                    dz,
                    false,
                    0.0,
                    dcol,
                );
                let stride = self.arch.convs[i].stride;
                col2im(
                    dcol,
                    cin,
                    hi,
                    wi,
                    stride,
                    ho,
                    wo,
                    &mut prev[..cin * hi * wi],
                );
                std::mem::swap(&mut cur, &mut prev);
            }
        }
        ws.dact_a = cur;
        ws.dact_b = prev;
        Ok((loss, probs))
    }

    pub fn zero_grads(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|p| vec![0.0; p.len()]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_arch() -> Arch {
        Arch {
            name: "test".into(),
            input_size: 9,
            in_channels: 3,
            convs: vec![
                ConvSpec {
                    out_channels: 4,
                    stride: 2,
                },
                ConvSpec {
                    out_channels: 5,
                    stride: 1,
                },
                ConvSpec {
                    out_channels: 6,
                    stride: 2,
                },
            ],
            classes: 2,
        }
    }

    fn loss_of(net: &Network, inputs: &[Vec<f32>], labels: &[usize]) -> f64 {
        let mut ws = Workspace::new(&net.arch);
        inputs
            .iter()
            .zip(labels)
            .map(|(x, &y)| {
                let p = net.predict(x, &mut ws).unwrap();
                -(p[y] as f64).ln()
            })
            .sum::<f64>()
            / inputs.len() as f64
    }

    /// Every parameter tensor's analytic gradient (conv stride 1 and 2, ReLU, pooling, linear
    /// head, softmax cross-entropy) against central finite differences.
    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(7);
        let mut net = Network::new_random(tiny_arch(), &mut rng).unwrap();
        // Non-zero biases so ReLUs are mixed and the bias gradients are exercised.
        for (i, p) in net.params.iter_mut().enumerate() {
            if i % 2 == 1 {
                p.iter_mut().for_each(|v| *v = rng.range(-0.2, 0.2));
            }
        }
        let inputs: Vec<Vec<f32>> = (0..3)
            .map(|_| (0..net.input_len()).map(|_| rng.normal()).collect())
            .collect();
        let labels = [0usize, 1, 1];
        let mut grads = net.zero_grads();
        let mut ws = Workspace::new(&net.arch);
        for (x, &y) in inputs.iter().zip(&labels) {
            net.accumulate_grads(x, y, 1.0 / 3.0, &mut grads, &mut ws)
                .unwrap();
        }
        let mut checked = 0;
        let mut bad = Vec::new();
        for t in 0..net.params.len() {
            let len = net.params[t].len();
            for j in (0..len).step_by((len / 12).max(1)) {
                let analytic = grads[t][j] as f64;
                checked += 1;
                // A step can cross a ReLU kink and make one difference quotient wrong; the
                // gradient is only reported bad if two step sizes both disagree with it.
                let ok = [1e-2f32, 2e-3].iter().any(|&eps| {
                    let orig = net.params[t][j];
                    net.params[t][j] = orig + eps;
                    let lp = loss_of(&net, &inputs, &labels);
                    net.params[t][j] = orig - eps;
                    let lm = loss_of(&net, &inputs, &labels);
                    net.params[t][j] = orig;
                    let numeric = (lp - lm) / (2.0 * eps as f64);
                    (numeric - analytic).abs() <= 2e-3 + 2e-2 * numeric.abs().max(analytic.abs())
                });
                if !ok {
                    bad.push((t, j, analytic));
                }
            }
        }
        assert!(checked > 60);
        assert!(bad.is_empty(), "gradient mismatches: {bad:?}");
    }

    /// col2im must be the exact adjoint of im2col: <im2col(x), y> == <x, col2im(y)>.
    #[test]
    fn col2im_is_adjoint_of_im2col() {
        let mut rng = Rng::new(3);
        for stride in [1, 2] {
            let (c, h, w) = (2, 7, 6);
            let ho = (h - 1) / stride + 1;
            let wo = (w - 1) / stride + 1;
            let x: Vec<f32> = (0..c * h * w).map(|_| rng.normal()).collect();
            let y: Vec<f32> = (0..c * 9 * ho * wo).map(|_| rng.normal()).collect();
            let mut col = vec![0.0; y.len()];
            im2col(&x, c, h, w, stride, ho, wo, &mut col);
            let mut back = vec![0.0; x.len()];
            col2im(&y, c, h, w, stride, ho, wo, &mut back);
            let lhs: f64 = col.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }

    /// A direct (loop) convolution agrees with the im2col + sgemm forward pass.
    #[test]
    fn forward_matches_direct_convolution() {
        let mut rng = Rng::new(11);
        let arch = Arch {
            convs: vec![ConvSpec {
                out_channels: 3,
                stride: 2,
            }],
            ..tiny_arch()
        };
        let net = Network::new_random(arch, &mut rng).unwrap();
        let x: Vec<f32> = (0..net.input_len()).map(|_| rng.normal()).collect();
        let mut ws = Workspace::new(&net.arch);
        net.forward(&x, &mut ws).unwrap();
        let (s, w, b) = (9usize, &net.params[0], &net.params[1]);
        let so = (s - 1) / 2 + 1;
        for o in 0..3 {
            for oy in 0..so {
                for ox in 0..so {
                    let mut acc = b[o];
                    for c in 0..3 {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy * 2 + ky) as isize - 1;
                                let ix = (ox * 2 + kx) as isize - 1;
                                if iy >= 0 && ix >= 0 && iy < s as isize && ix < s as isize {
                                    acc += w[((o * 3 + c) * 3 + ky) * 3 + kx]
                                        * x[c * s * s + iy as usize * s + ix as usize];
                                }
                            }
                        }
                    }
                    let got = ws.acts[1][o * so * so + oy * so + ox];
                    assert!((got - acc.max(0.0)).abs() < 1e-4, "{got} vs {acc}");
                }
            }
        }
    }

    #[test]
    fn wrong_input_size_is_an_error_not_a_panic() {
        let net = Network::new_random(tiny_arch(), &mut Rng::new(1)).unwrap();
        let mut ws = Workspace::new(&net.arch);
        let err = net.forward(&[0.0; 5], &mut ws).unwrap_err();
        assert!(err.to_string().contains("expects 243"), "{err}");
    }
}
