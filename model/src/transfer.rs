//! Learning from the pretrained backbone ([`crate::effnet`]): the frozen backbone's pooled
//! features of every image (computed once, on the un-augmented image, in parallel), a linear
//! head fitted on them (softmax regression on standardised features, full-batch Adam with L2,
//! early stopping on validation loss), and the teacher's out-of-fold probabilities that the
//! small served CNN is distilled from (`model.arch=fast`). Out-of-fold, because a head scored on
//! the images it was fitted on is near-certain on every one of them and would teach the
//! student nothing its labels do not already say. [`TransferNet`] is the served
//! `model.arch=accurate` classifier: backbone + head.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::data::Sample;
use crate::effnet::{BackboneError, EffNet, FEATURES, NORMALIZATION};
use crate::imageio::to_tensor;
use crate::nn::softmax;

/// Folds used for the teacher's out-of-fold probabilities.
pub const FOLDS: usize = 5;
/// Softening of the teacher's logits before they become targets.
pub const TEMPERATURE: f32 = 2.0;
/// Weight of the teacher's probabilities in a distillation target (the label has the rest).
pub const TEACHER_WEIGHT: f32 = 0.5;

/// The `model.json` description of a backbone + head classifier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TransferArch {
    pub name: String,
    pub backbone: String,
    pub input_size: usize,
    pub features: usize,
    pub classes: usize,
}

/// A linear head over backbone features: `w` is (classes, FEATURES) row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Head {
    pub fn logits(&self, f: &[f32]) -> Vec<f32> {
        self.b
            .iter()
            .enumerate()
            .map(|(k, b)| {
                b + self.w[k * FEATURES..(k + 1) * FEATURES]
                    .iter()
                    .zip(f)
                    .map(|(a, x)| a * x)
                    .sum::<f32>()
            })
            .collect()
    }
}

/// Backbone + head: the `accurate` served model.
#[derive(Debug, Clone)]
pub struct TransferNet {
    pub arch: TransferArch,
    pub backbone: Arc<EffNet>,
    pub head: Head,
}

impl TransferNet {
    pub fn probabilities(&self, input: &[f32]) -> Result<Vec<f32>, BackboneError> {
        let f = self.backbone.features(input, self.arch.input_size)?;
        Ok(softmax(&self.head.logits(&f)))
    }

    pub fn param_count(&self) -> usize {
        self.backbone.param_count() + self.head.w.len() + self.head.b.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Backbone(#[from] BackboneError),
    #[error("training was stopped")]
    Stopped,
}

/// Pooled backbone features of every sample's `teacher` image (`size`x`size`), on `threads`.
pub fn features(
    backbone: &EffNet,
    samples: &[Sample],
    size: usize,
    threads: usize,
    stop: &AtomicBool,
) -> Result<Vec<Vec<f32>>, TransferError> {
    let chunk = samples.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<Vec<f32>>, TransferError>> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|smp| {
                            if stop.load(Ordering::Relaxed) {
                                return Err(TransferError::Stopped);
                            }
                            let x = to_tensor(&smp.teacher, size, &NORMALIZATION);
                            Ok(backbone.features(&x, size)?)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(TransferError::Stopped)))
            .collect()
    });
    let mut out = Vec::with_capacity(samples.len());
    for p in parts {
        out.extend(p?);
    }
    Ok(out)
}

/// Settings of the head's fit.
#[derive(Debug, Clone, Copy)]
pub struct HeadFit {
    pub steps: usize,
    pub learning_rate: f32,
    /// L2 penalty on the standardised-feature weights.
    pub l2: f32,
    pub patience: usize,
}

impl Default for HeadFit {
    fn default() -> Self {
        Self {
            steps: 300,
            learning_rate: 0.05,
            l2: 0.01,
            patience: 30,
        }
    }
}

/// Mean cross-entropy of `head` on (features, label).
pub fn loss(head: &Head, x: &[Vec<f32>], y: &[usize]) -> f64 {
    let n = x.len().max(1) as f64;
    x.iter()
        .zip(y)
        .map(|(f, &l)| -f64::from(softmax(&head.logits(f))[l].max(1e-7)).ln())
        .sum::<f64>()
        / n
}

/// L2 penalties tried by [`select_head`]: 1,280 features and a hundred photos need a strong
/// one, 22,000 photos a weak one.
pub const L2_GRID: [f32; 4] = [0.001, 0.01, 0.1, 1.0];

/// Fits a head for each of [`L2_GRID`] and keeps the one with the lowest validation loss;
/// returns it with its penalty.
pub fn select_head(
    x: &[Vec<f32>],
    y: &[usize],
    val: (&[Vec<f32>], &[usize]),
    classes: usize,
) -> (Head, f32) {
    let mut best: Option<(f64, Head, f32)> = None;
    for l2 in L2_GRID {
        let fit = HeadFit {
            l2,
            ..HeadFit::default()
        };
        let head = fit_head(x, y, val, classes, fit);
        let l = loss(&head, val.0, val.1);
        if best.as_ref().is_none_or(|(bl, _, _)| l < *bl) {
            best = Some((l, head, l2));
        }
    }
    match best {
        Some((_, h, l2)) => (h, l2),
        None => (
            fit_head(x, y, val, classes, HeadFit::default()),
            HeadFit::default().l2,
        ),
    }
}

/// Fits a `classes`-way linear head on `x`/`y`, keeping the step with the lowest loss on
/// `val` (or the last step when `val` is empty). Features are standardised for the fit and the
/// standardisation folded into the returned head, which takes raw features.
pub fn fit_head(
    x: &[Vec<f32>],
    y: &[usize],
    val: (&[Vec<f32>], &[usize]),
    classes: usize,
    fit: HeadFit,
) -> Head {
    let n = x.len().max(1);
    let d = FEATURES;
    let mut mean = vec![0.0f32; d];
    let mut sd = vec![0.0f32; d];
    for f in x {
        mean.iter_mut().zip(f).for_each(|(m, v)| *m += v / n as f32);
    }
    for f in x {
        sd.iter_mut()
            .zip(f.iter().zip(&mean))
            .for_each(|(s, (v, m))| *s += (v - m) * (v - m) / n as f32);
    }
    sd.iter_mut().for_each(|s| *s = s.sqrt().max(1e-3));
    let z: Vec<Vec<f32>> = x
        .iter()
        .map(|f| {
            f.iter()
                .zip(mean.iter().zip(&sd))
                .map(|(v, (m, s))| (v - m) / s)
                .collect()
        })
        .collect();
    let fold = |w: &[f32], b: &[f32]| {
        let mut hw = vec![0.0; classes * d];
        let mut hb = b.to_vec();
        for k in 0..classes {
            for j in 0..d {
                hw[k * d + j] = w[k * d + j] / sd[j];
                hb[k] -= w[k * d + j] * mean[j] / sd[j];
            }
        }
        Head { w: hw, b: hb }
    };
    let mut w = vec![0.0f32; classes * d];
    let mut b = vec![0.0f32; classes];
    let (mut mw, mut vw) = (vec![0.0f32; w.len()], vec![0.0f32; w.len()]);
    let (mut mb, mut vb) = (vec![0.0f32; classes], vec![0.0f32; classes]);
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut best: Option<(f64, Head)> = None;
    let mut since_best = 0;
    for step in 1..=fit.steps {
        let mut gw = vec![0.0f32; w.len()];
        let mut gb = vec![0.0f32; classes];
        for (f, &l) in z.iter().zip(y) {
            let logits: Vec<f32> = (0..classes)
                .map(|k| {
                    b[k] + w[k * d..(k + 1) * d]
                        .iter()
                        .zip(f)
                        .map(|(a, v)| a * v)
                        .sum::<f32>()
                })
                .collect();
            let p = softmax(&logits);
            for k in 0..classes {
                let g = (p[k] - f32::from(u8::from(k == l))) / n as f32;
                gb[k] += g;
                gw[k * d..(k + 1) * d]
                    .iter_mut()
                    .zip(f)
                    .for_each(|(a, v)| *a += g * v);
            }
        }
        gw.iter_mut().zip(&w).for_each(|(g, wv)| *g += fit.l2 * wv);
        let (c1, c2) = (1.0 - b1.powi(step as i32), 1.0 - b2.powi(step as i32));
        for i in 0..w.len() {
            mw[i] = b1 * mw[i] + (1.0 - b1) * gw[i];
            vw[i] = b2 * vw[i] + (1.0 - b2) * gw[i] * gw[i];
            w[i] -= fit.learning_rate * (mw[i] / c1) / ((vw[i] / c2).sqrt() + eps);
        }
        for k in 0..classes {
            mb[k] = b1 * mb[k] + (1.0 - b1) * gb[k];
            vb[k] = b2 * vb[k] + (1.0 - b2) * gb[k] * gb[k];
            b[k] -= fit.learning_rate * (mb[k] / c1) / ((vb[k] / c2).sqrt() + eps);
        }
        if !val.0.is_empty() {
            let head = fold(&w, &b);
            let l = loss(&head, val.0, val.1);
            if best.as_ref().is_none_or(|(bl, _)| l < *bl) {
                best = Some((l, head));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= fit.patience {
                    break;
                }
            }
        }
    }
    match best {
        Some((_, h)) => h,
        None => fold(&w, &b),
    }
}

/// The teacher's probabilities for every training sample, each from a head fitted without it
/// ([`FOLDS`]-fold, folds by index so each class is spread over all of them), at
/// [`TEMPERATURE`]. The head of each fold stops at a fixed number of steps: a fold has no
/// validation set of its own.
pub fn out_of_fold_probabilities(
    x: &[Vec<f32>],
    y: &[usize],
    classes: usize,
    l2: f32,
) -> Vec<Vec<f32>> {
    let folds = FOLDS.min(x.len()).max(2);
    let mut out = vec![Vec::new(); x.len()];
    let fit = HeadFit {
        steps: 150,
        l2,
        ..HeadFit::default()
    };
    for k in 0..folds {
        let (mut tx, mut ty) = (Vec::new(), Vec::new());
        for (i, (f, &l)) in x.iter().zip(y).enumerate() {
            if i % folds != k {
                tx.push(f.clone());
                ty.push(l);
            }
        }
        let head = fit_head(&tx, &ty, (&[], &[]), classes, fit);
        for i in (k..x.len()).step_by(folds) {
            let logits: Vec<f32> = head
                .logits(&x[i])
                .into_iter()
                .map(|v| v / TEMPERATURE)
                .collect();
            out[i] = softmax(&logits);
        }
    }
    out
}

/// A distillation target: the label's one-hot mixed with the teacher's probabilities.
pub fn target(label: usize, teacher: &[f32]) -> Vec<f32> {
    teacher
        .iter()
        .enumerate()
        .map(|(k, p)| (1.0 - TEACHER_WEIGHT) * f32::from(u8::from(k == label)) + TEACHER_WEIGHT * p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Two classes that differ in a few feature directions among noise: the head separates
    /// them, takes raw features (standardisation folded in) and the out-of-fold teacher is
    /// right on most held-out samples without being certain of all of them.
    #[test]
    fn the_head_learns_a_separable_feature_task() {
        let mut rng = Rng::new(3);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..120 {
            let l = i % 2;
            let f: Vec<f32> = (0..FEATURES)
                .map(|j| {
                    let shift = if j < 8 && l == 1 { 1.5 } else { 0.0 };
                    3.0 + 0.5 * rng.normal() + shift
                })
                .collect();
            x.push(f);
            y.push(l);
        }
        let (tx, vx) = x.split_at(90);
        let (ty, vy) = y.split_at(90);
        let (head, l2) = select_head(tx, ty, (vx, vy), 2);
        let right = vx
            .iter()
            .zip(vy)
            .filter(|(f, &l)| {
                let p = softmax(&head.logits(f));
                (p[1] >= 0.5) == (l == 1)
            })
            .count();
        assert!(right >= 27, "{right} of 30 held-out samples right");
        let oof = out_of_fold_probabilities(&x, &y, 2, l2);
        let agree = oof
            .iter()
            .zip(&y)
            .filter(|(p, &l)| (p[1] >= 0.5) == (l == 1))
            .count();
        assert!(agree >= 100, "out-of-fold teacher right on {agree} of 120");
        assert!(oof.iter().all(|p| (p[0] + p[1] - 1.0).abs() < 1e-5));
        let t = target(1, &oof[1]);
        assert!((t[0] + t[1] - 1.0).abs() < 1e-5 && t[1] >= 0.5);
    }
}
