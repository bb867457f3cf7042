//! The training-time network: the same convolution stack as [`crate::nn::Network`], with batch
//! normalisation after every convolution. Batch statistics couple the images of a mini-batch,
//! so this module runs the batch layer by layer (images split over threads within a layer).
//! BatchNorm makes this plain stack train quickly and reliably; for inference it is folded
//! into each convolution's weights and bias ([`BnNet::fold`]), so the served model is the
//! plain, fast [`Network`] and costs nothing extra per request.

// Index loops mirror the tensor maths (channel o, position j) and keep shapes explicit.
#![allow(clippy::needless_range_loop)]

use serde::{Deserialize, Serialize};

use crate::nn::{col2im, gemm, im2col, softmax, Arch, Network, NnError};
use crate::rng::Rng;

const BN_EPS: f32 = 1e-5;

/// Parameters (trained by the optimiser) plus running statistics (tracked, not trained).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BnNet {
    pub arch: Arch,
    /// Per conv i: `conv{i}.weight` [O, C*9], `conv{i}.bn_gamma` [O], `conv{i}.bn_beta` [O];
    /// then `fc.weight`, `fc.bias`.
    pub params: Vec<Vec<f32>>,
    /// Per conv: running mean and variance.
    pub running: Vec<(Vec<f32>, Vec<f32>)>,
}

/// Per-image buffers for one training step.
#[derive(Debug)]
struct ImgState {
    /// The target distribution over classes: one-hot for a hard label, or a mix of the label
    /// and a teacher's probabilities when distilling.
    target: Vec<f32>,
    acts: Vec<Vec<f32>>,
    xhat: Vec<Vec<f32>>,
    cols: Vec<Vec<f32>>,
    dact: Vec<f32>,
    dprev: Vec<f32>,
    loss: f32,
    probs: Vec<f32>,
}

/// Runs `f` over `items` split into at most `threads` contiguous chunks, in parallel.
fn par_chunks<T: Send, R: Send>(
    items: &mut [T],
    threads: usize,
    f: impl Fn(&mut [T]) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() <= 1 {
        return vec![f(items)];
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks_mut(chunk)
            .map(|c| s.spawn(move || f(c)))
            .collect();
        // A panic in a worker is a bug in this module; re-raise it rather than hide it.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

impl BnNet {
    pub fn param_names(arch: &Arch) -> Vec<String> {
        let mut names = Vec::new();
        for i in 0..arch.convs.len() {
            names.push(format!("conv{i}.weight"));
            names.push(format!("conv{i}.bn_gamma"));
            names.push(format!("conv{i}.bn_beta"));
        }
        names.push("fc.weight".into());
        names.push("fc.bias".into());
        names
    }

    pub fn new_random(arch: Arch, rng: &mut Rng) -> Result<Self, NnError> {
        arch.validate()?;
        let shapes = arch.shapes();
        let mut params = Vec::new();
        let mut running = Vec::new();
        for (i, c) in arch.convs.iter().enumerate() {
            let fan_in = shapes[i].0 * 9;
            let std = (2.0 / fan_in as f32).sqrt();
            params.push(
                (0..c.out_channels * fan_in)
                    .map(|_| rng.normal() * std)
                    .collect(),
            );
            params.push(vec![1.0; c.out_channels]);
            params.push(vec![0.0; c.out_channels]);
            running.push((vec![0.0; c.out_channels], vec![1.0; c.out_channels]));
        }
        let f = shapes.last().map_or(0, |s| s.0);
        let std = (1.0 / f as f32).sqrt();
        params.push((0..arch.classes * f).map(|_| rng.normal() * std).collect());
        params.push(vec![0.0; arch.classes]);
        Ok(Self {
            arch,
            params,
            running,
        })
    }

    pub fn zero_grads(&self) -> Vec<Vec<f32>> {
        self.params.iter().map(|p| vec![0.0; p.len()]).collect()
    }

    /// The inference network: each BatchNorm (with running statistics) folded into its conv.
    pub fn fold(&self) -> Result<Network, NnError> {
        let mut out = Vec::new();
        for (i, (rm, rv)) in self.running.iter().enumerate() {
            let w = &self.params[3 * i];
            let (gamma, beta) = (&self.params[3 * i + 1], &self.params[3 * i + 2]);
            let k = w.len() / gamma.len();
            let mut fw = w.clone();
            let mut fb = vec![0.0; gamma.len()];
            for o in 0..gamma.len() {
                let s = gamma[o] / (rv[o] + BN_EPS).sqrt();
                fw[o * k..(o + 1) * k].iter_mut().for_each(|v| *v *= s);
                fb[o] = beta[o] - rm[o] * s;
            }
            out.push(fw);
            out.push(fb);
        }
        let n = self.params.len();
        out.push(self.params[n - 2].clone());
        out.push(self.params[n - 1].clone());
        Network::from_params(self.arch.clone(), out)
    }

    /// One training step's forward and backward over a mini-batch (batch statistics).
    /// Returns the mean loss and each image's probabilities; gradients of the mean loss go to
    /// `grads` (overwritten). `momentum` updates the running statistics (0 leaves them).
    pub fn step(
        &mut self,
        inputs: Vec<(Vec<f32>, usize)>,
        grads: &mut [Vec<f32>],
        momentum: f32,
        threads: usize,
    ) -> Result<(f32, Vec<Vec<f32>>), NnError> {
        let classes = self.arch.classes;
        let mut targeted = Vec::with_capacity(inputs.len());
        for (x, label) in inputs {
            if label >= classes {
                return Err(NnError::Arch(format!("label {label} out of range")));
            }
            let mut t = vec![0.0; classes];
            t[label] = 1.0;
            targeted.push((x, t));
        }
        self.step_targets(targeted, grads, momentum, threads)
    }

    /// [`BnNet::step`] with a target distribution per image (soft-target cross-entropy
    /// `-sum q log p`, whose gradient at the logits is `p - q`): distillation's loss.
    pub fn step_targets(
        &mut self,
        inputs: Vec<(Vec<f32>, Vec<f32>)>,
        grads: &mut [Vec<f32>],
        momentum: f32,
        threads: usize,
    ) -> Result<(f32, Vec<Vec<f32>>), NnError> {
        let arch = &self.arch;
        let shapes = arch.shapes();
        let want = arch.in_channels * arch.input_size * arch.input_size;
        let max_act = shapes.iter().map(|&(c, h, w)| c * h * w).max().unwrap_or(0);
        let mut states = Vec::with_capacity(inputs.len());
        for (x, target) in inputs {
            if x.len() != want {
                return Err(NnError::Input {
                    got: x.len(),
                    want,
                    size: arch.input_size,
                });
            }
            if target.len() != arch.classes || target.iter().any(|q| !q.is_finite()) {
                return Err(NnError::Arch(format!(
                    "a target needs {} finite probabilities",
                    arch.classes
                )));
            }
            let mut acts = vec![x];
            let mut xhat = Vec::new();
            let mut cols = Vec::new();
            for i in 0..arch.convs.len() {
                let (c, h, w) = shapes[i + 1];
                acts.push(vec![0.0; c * h * w]);
                xhat.push(vec![0.0; c * h * w]);
                cols.push(vec![0.0; shapes[i].0 * 9 * h * w]);
            }
            states.push(ImgState {
                target,
                acts,
                xhat,
                cols,
                dact: vec![0.0; max_act],
                dprev: vec![0.0; max_act],
                loss: 0.0,
                probs: Vec::new(),
            });
        }
        let n_img = states.len();
        if n_img == 0 {
            return Err(NnError::Arch("empty batch".into()));
        }
        let mut inv_stds = Vec::new();
        for (i, conv) in arch.convs.iter().enumerate() {
            let (cin, h, w) = shapes[i];
            let (cout, ho, wo) = shapes[i + 1];
            let p = ho * wo;
            let weight = &self.params[3 * i];
            par_chunks(&mut states, threads, |chunk| {
                for st in chunk {
                    im2col(&st.acts[i], cin, h, w, conv.stride, ho, wo, &mut st.cols[i]);
                    gemm(
                        cout,
                        cin * 9,
                        p,
                        weight,
                        false,
                        &st.cols[i],
                        false,
                        0.0,
                        &mut st.xhat[i],
                    );
                }
            });
            let m = (n_img * p) as f64;
            let mut mean = vec![0.0f32; cout];
            let mut inv_std = vec![0.0f32; cout];
            for o in 0..cout {
                let (mut s, mut s2) = (0.0f64, 0.0f64);
                for st in &states {
                    for &v in &st.xhat[i][o * p..(o + 1) * p] {
                        s += f64::from(v);
                        s2 += f64::from(v) * f64::from(v);
                    }
                }
                let mu = s / m;
                let var = (s2 / m - mu * mu).max(0.0);
                mean[o] = mu as f32;
                inv_std[o] = 1.0 / (var as f32 + BN_EPS).sqrt();
                let (rm, rv) = &mut self.running[i];
                rm[o] = (1.0 - momentum) * rm[o] + momentum * mu as f32;
                rv[o] = (1.0 - momentum) * rv[o] + momentum * var as f32;
            }
            let (gamma, beta) = (&self.params[3 * i + 1], &self.params[3 * i + 2]);
            let (mean, is) = (&mean, &inv_std);
            par_chunks(&mut states, threads, |chunk| {
                for st in chunk {
                    let (xh, out) = (&mut st.xhat[i], &mut st.acts[i + 1]);
                    for o in 0..cout {
                        for j in o * p..(o + 1) * p {
                            xh[j] = (xh[j] - mean[o]) * is[o];
                            out[j] = (gamma[o] * xh[j] + beta[o]).max(0.0);
                        }
                    }
                }
            });
            inv_stds.push(inv_std);
        }
        // Head: global average pooling, linear, softmax cross-entropy (mean over the batch).
        let n = self.params.len();
        let (f, h, w) = shapes[shapes.len() - 1];
        let hw = h * w;
        let last = shapes.len() - 1;
        grads.iter_mut().for_each(|g| g.fill(0.0));
        let scale = 1.0 / n_img as f32;
        let mut total = 0.0;
        let mut all_probs = Vec::with_capacity(n_img);
        {
            let (fw, fb) = (&self.params[n - 2], &self.params[n - 1]);
            let (gpart, gb) = grads.split_at_mut(n - 1);
            let gw = &mut gpart[n - 2];
            for st in states.iter_mut() {
                let pooled: Vec<f32> = st.acts[last]
                    .chunks_exact(hw)
                    .map(|c| c.iter().sum::<f32>() / hw as f32)
                    .collect();
                let logits: Vec<f32> = (0..arch.classes)
                    .map(|k| {
                        fb[k]
                            + fw[k * f..(k + 1) * f]
                                .iter()
                                .zip(&pooled)
                                .map(|(a, b)| a * b)
                                .sum::<f32>()
                    })
                    .collect();
                st.probs = softmax(&logits);
                st.loss = -st
                    .target
                    .iter()
                    .zip(&st.probs)
                    .map(|(q, p)| q * p.max(1e-12).ln())
                    .sum::<f32>();
                total += st.loss;
                let mut dpooled = vec![0.0f32; f];
                for k in 0..arch.classes {
                    let d = (st.probs[k] - st.target[k]) * scale;
                    gb[0][k] += d;
                    for j in 0..f {
                        gw[k * f + j] += d * pooled[j];
                        dpooled[j] += fw[k * f + j] * d;
                    }
                }
                for c in 0..f {
                    st.dact[c * hw..(c + 1) * hw].fill(dpooled[c] / hw as f32);
                }
                all_probs.push(st.probs.clone());
            }
        }
        for i in (0..arch.convs.len()).rev() {
            let (cin, hi, wi) = shapes[i];
            let (cout, ho, wo) = shapes[i + 1];
            let p = ho * wo;
            // ReLU mask, then BatchNorm's parameter gradients (sums over the whole batch).
            par_chunks(&mut states, threads, |chunk| {
                for st in chunk {
                    for (d, &a) in st.dact[..cout * p].iter_mut().zip(&st.acts[i + 1]) {
                        if a <= 0.0 {
                            *d = 0.0;
                        }
                    }
                }
            });
            let mut dgamma = vec![0.0f32; cout];
            let mut dbeta = vec![0.0f32; cout];
            for st in &states {
                for o in 0..cout {
                    let dy = &st.dact[o * p..(o + 1) * p];
                    let xh = &st.xhat[i][o * p..(o + 1) * p];
                    dbeta[o] += dy.iter().sum::<f32>();
                    dgamma[o] += dy.iter().zip(xh).map(|(a, b)| a * b).sum::<f32>();
                }
            }
            let m = (n_img * p) as f32;
            let gamma = &self.params[3 * i + 1];
            let weight = &self.params[3 * i];
            let is = &inv_stds[i];
            let (dg, db) = (&dgamma, &dbeta);
            let stride = arch.convs[i].stride;
            let partials = par_chunks(&mut states, threads, |chunk| {
                let mut gw = vec![0.0f32; weight.len()];
                let mut dcol = vec![0.0f32; if i > 0 { cin * 9 * p } else { 0 }];
                for st in chunk {
                    let dz = &mut st.dact[..cout * p];
                    let xh = &st.xhat[i];
                    for o in 0..cout {
                        let k = gamma[o] * is[o] / m;
                        for j in o * p..(o + 1) * p {
                            dz[j] = k * (m * dz[j] - db[o] - xh[j] * dg[o]);
                        }
                    }
                    gemm(cout, p, cin * 9, dz, false, &st.cols[i], true, 1.0, &mut gw);
                    if i > 0 {
                        gemm(cin * 9, cout, p, weight, true, dz, false, 0.0, &mut dcol);
                        col2im(
                            &dcol,
                            cin,
                            hi,
                            wi,
                            stride,
                            ho,
                            wo,
                            &mut st.dprev[..cin * hi * wi],
                        );
                        std::mem::swap(&mut st.dact, &mut st.dprev);
                    }
                }
                gw
            });
            for part in partials {
                for (g, v) in grads[3 * i].iter_mut().zip(part) {
                    *g += v;
                }
            }
            grads[3 * i + 1].copy_from_slice(&dgamma);
            grads[3 * i + 2].copy_from_slice(&dbeta);
        }
        Ok((total / n_img as f32, all_probs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{ConvSpec, Workspace};

    fn arch() -> Arch {
        Arch {
            name: "t".into(),
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

    fn batch(rng: &mut Rng, n: usize) -> Vec<(Vec<f32>, usize)> {
        (0..n)
            .map(|k| ((0..243).map(|_| rng.normal()).collect(), k % 2))
            .collect()
    }

    /// Every parameter's gradient through conv, BatchNorm (batch statistics), ReLU, pooling
    /// and the head, against central finite differences of the batch loss.
    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(9);
        let mut net = BnNet::new_random(arch(), &mut rng).unwrap();
        for (i, p) in net.params.iter_mut().enumerate() {
            if i % 3 != 0 {
                p.iter_mut().for_each(|v| *v += rng.range(-0.3, 0.3));
            }
        }
        let data = batch(&mut rng, 4);
        let mut grads = net.zero_grads();
        net.step(data.clone(), &mut grads, 0.0, 2).unwrap();
        let mut scratch = net.zero_grads();
        let mut bad = Vec::new();
        let mut checked = 0;
        for t in 0..net.params.len() {
            let len = net.params[t].len();
            for j in (0..len).step_by((len / 10).max(1)) {
                checked += 1;
                let analytic = grads[t][j] as f64;
                let ok = [1e-2f32, 2e-3].iter().any(|&eps| {
                    let orig = net.params[t][j];
                    net.params[t][j] = orig + eps;
                    let lp = net.step(data.clone(), &mut scratch, 0.0, 1).unwrap().0 as f64;
                    net.params[t][j] = orig - eps;
                    let lm = net.step(data.clone(), &mut scratch, 0.0, 1).unwrap().0 as f64;
                    net.params[t][j] = orig;
                    let numeric = (lp - lm) / (2.0 * eps as f64);
                    (numeric - analytic).abs() <= 3e-3 + 3e-2 * numeric.abs().max(analytic.abs())
                });
                if !ok {
                    bad.push((t, j, analytic));
                }
            }
        }
        assert!(checked > 60);
        assert!(bad.is_empty(), "gradient mismatches: {bad:?}");
    }

    /// With running statistics equal to one batch's statistics, the folded inference network
    /// reproduces the training-mode outputs of that batch.
    #[test]
    fn folding_preserves_outputs() {
        let mut rng = Rng::new(4);
        let mut net = BnNet::new_random(arch(), &mut rng).unwrap();
        for (i, p) in net.params.iter_mut().enumerate() {
            if i % 3 != 0 {
                p.iter_mut().for_each(|v| *v += rng.range(-0.3, 0.3));
            }
        }
        let data = batch(&mut rng, 5);
        let mut grads = net.zero_grads();
        let (_, probs) = net.step(data.clone(), &mut grads, 1.0, 2).unwrap();
        let folded = net.fold().unwrap();
        let mut ws = Workspace::new(&folded.arch);
        for ((x, _), want) in data.iter().zip(&probs) {
            let got = folded.predict(x, &mut ws).unwrap();
            for (a, b) in got.iter().zip(want) {
                assert!((a - b).abs() < 1e-4, "{got:?} vs {want:?}");
            }
        }
    }
}
