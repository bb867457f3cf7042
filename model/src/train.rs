//! The `train` contract and the training loop. Reads channels and hyperparameters from the
//! SageMaker layout under `--ml-root`, trains with AdamW (decoupled weight decay), linear warm-up
//! then cosine decay, augmentation (shifts, horizontal flips, brightness/contrast/colour jitter),
//! data-parallel gradients over `threads`, and early stopping on validation loss (the best
//! epoch's weights are kept). Writes the model directory and `metrics.json`; on error the caller
//! writes `<root>/output/failure` via [`write_failure`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::json;

use crate::artifact::{self, ArtifactError, Model};
use crate::bn::BnNet;
use crate::data::{self, DataError, Sample, SetStats};
use crate::hparams::{HparamError, HyperParams};
use crate::imageio::{to_tensor, Normalization};
use crate::metrics::{self, Metrics};
use crate::nn::{Arch, Network, NnError, Workspace};
use crate::rng::Rng;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Hparams(#[from] HparamError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Nn(#[from] NnError),
    #[error("no training channel: put images in {0}/O and {0}/R (or the Kaggle TRAIN/ and TEST/ folders)")]
    NoTrainChannel(String),
    #[error("the validation set is empty: add images to the validation channel or more images per class")]
    EmptyValidation,
    #[error("training stopped by SIGTERM before it finished; no model was written")]
    Stopped,
    #[error("training diverged (loss is not finite at epoch {0}); lower learning_rate")]
    Diverged(usize),
    #[error("failed to write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The SageMaker paths under one root.
#[derive(Debug, Clone)]
pub struct MlRoot(pub PathBuf);

impl MlRoot {
    pub fn channel(&self, name: &str) -> PathBuf {
        self.0.join("input").join("data").join(name)
    }
    pub fn hyperparameters(&self) -> PathBuf {
        self.0
            .join("input")
            .join("config")
            .join("hyperparameters.json")
    }
    pub fn model_dir(&self) -> PathBuf {
        self.0.join("model")
    }
    pub fn output_data(&self) -> PathBuf {
        self.0.join("output").join("data")
    }
    pub fn failure(&self) -> PathBuf {
        self.0.join("output").join("failure")
    }
}

/// What a training loop reports besides the weights.
#[derive(Debug, Clone)]
pub struct FitReport {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub seconds: f64,
}

/// Decoupled-weight-decay Adam (AdamW).
struct AdamW {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
    decay: Vec<bool>,
}

impl AdamW {
    fn new(names: &[String], params: &[Vec<f32>]) -> Self {
        let zeros: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        Self {
            m: zeros.clone(),
            v: zeros,
            t: 0,
            // Only weights are decayed: shrinking biases or BatchNorm scales does not regularise.
            decay: names.iter().map(|n| n.ends_with(".weight")).collect(),
        }
    }

    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>], lr: f32, wd: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        self.t += 1;
        let c1 = 1.0 - B1.powi(self.t);
        let c2 = 1.0 - B2.powi(self.t);
        for (i, p) in params.iter_mut().enumerate() {
            let decay = if self.decay[i] { 1.0 - lr * wd } else { 1.0 };
            for (((w, &g), m), v) in p
                .iter_mut()
                .zip(&grads[i])
                .zip(&mut self.m[i])
                .zip(&mut self.v[i])
            {
                *m = B1 * *m + (1.0 - B1) * g;
                *v = B2 * *v + (1.0 - B2) * g * g;
                *w = *w * decay - lr * (*m / c1) / ((*v / c2).sqrt() + 1e-8);
            }
        }
    }
}

/// Learning rate at `step`: linear warm-up, then cosine decay to 2% of the peak.
pub fn lr_at(base: f32, step: usize, warmup: usize, total: usize) -> f32 {
    if step < warmup {
        return base * (step + 1) as f32 / warmup as f32;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f32 / span as f32).min(1.0);
    base * (0.02 + 0.98 * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos()))
}

/// A randomly shifted, flipped and colour-jittered copy of a sample, normalised.
pub fn augment(rgb: &[u8], size: usize, norm: &Normalization, rng: &mut Rng) -> Vec<f32> {
    let max_shift = (size / 8) as isize;
    let dx = rng.below(2 * max_shift as usize + 1) as isize - max_shift;
    let dy = rng.below(2 * max_shift as usize + 1) as isize - max_shift;
    let flip = rng.bool();
    let brightness = rng.range(0.8, 1.2);
    let contrast = rng.range(0.8, 1.2);
    let gains: [f32; 3] = std::array::from_fn(|_| rng.range(0.92, 1.08));
    let mut out = vec![0u8; size * size * 3];
    let s = size as isize;
    for y in 0..s {
        let sy = (y + dy).clamp(0, s - 1);
        for x in 0..s {
            let sx = if flip { s - 1 - x } else { x };
            let sx = (sx + dx).clamp(0, s - 1);
            let src = ((sy * s + sx) * 3) as usize;
            let dst = ((y * s + x) * 3) as usize;
            for c in 0..3 {
                let v = f32::from(rgb[src + c]);
                let v = ((v - 128.0) * contrast + 128.0) * brightness * gains[c];
                out[dst + c] = v.clamp(0.0, 255.0) as u8;
            }
        }
    }
    to_tensor(&out, size, norm)
}

/// Probabilities of every sample (parallel over `threads`), plus the mean cross-entropy.
pub fn predict_samples(
    net: &Network,
    samples: &[Sample],
    norm: &Normalization,
    threads: usize,
) -> Result<(Vec<f32>, f64), NnError> {
    let size = net.arch.input_size;
    let chunk = samples.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<(f32, f64)>, NnError>> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let mut ws = Workspace::new(&net.arch);
                    part.iter()
                        .map(|smp| {
                            let p = net.predict(&to_tensor(&smp.rgb, size, norm), &mut ws)?;
                            Ok((p[1], -f64::from(p[smp.label].max(1e-7)).ln()))
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(NnError::Arch("prediction thread panicked".into())))
            })
            .collect()
    });
    let mut probs = Vec::with_capacity(samples.len());
    let mut loss = 0.0;
    for part in parts {
        for (p, l) in part? {
            probs.push(p);
            loss += l;
        }
    }
    Ok((probs, loss / samples.len().max(1) as f64))
}

/// Metrics of `net` on labelled samples.
pub fn evaluate_samples(
    net: &Network,
    samples: &[Sample],
    norm: &Normalization,
    threads: usize,
) -> Result<Metrics, NnError> {
    let (probs, loss) = predict_samples(net, samples, norm, threads)?;
    let labels: Vec<usize> = samples.iter().map(|s| s.label).collect();
    Ok(metrics::compute(&labels, &probs, loss))
}

/// Trains a fresh network on `train`, early-stopping on `val`; returns the best epoch's network.
/// One line per epoch goes to `log` in the format the README's MetricDefinitions scrape.
pub fn fit(
    train: &[Sample],
    val: &[Sample],
    hp: &HyperParams,
    norm: &Normalization,
    stop: &AtomicBool,
    log: &mut dyn Write,
) -> Result<(Network, FitReport), TrainError> {
    if val.is_empty() {
        return Err(TrainError::EmptyValidation);
    }
    let started = Instant::now();
    let mut rng = Rng::new(hp.seed);
    let arch = Arch::default_for(hp.image_size, hp.width);
    let mut bn = BnNet::new_random(arch, &mut rng)?;
    let mut opt = AdamW::new(&BnNet::param_names(&bn.arch), &bn.params);
    let threads = hp.threads.max(1);
    let batch = hp.batch_size.min(train.len()).max(2);
    let steps_per_epoch = train.len().div_ceil(batch);
    let total = steps_per_epoch * hp.epochs;
    let warmup = (steps_per_epoch * hp.warmup_epochs).min(total / 2);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut grads = bn.zero_grads();
    let mut best: (f64, usize, Option<Network>) = (f64::INFINITY, 0, None);
    let mut step = 0;
    let mut epochs_run = 0;
    for epoch in 1..=hp.epochs {
        let epoch_start = Instant::now();
        rng.shuffle(&mut order);
        let mut train_loss = 0.0f64;
        let mut seen = 0usize;
        let mut lr = hp.learning_rate;
        for idx in order.chunks(batch) {
            if stop.load(Ordering::Relaxed) {
                return Err(TrainError::Stopped);
            }
            // A one-image tail batch has no batch statistics worth normalising with.
            if idx.len() < 2 {
                continue;
            }
            lr = lr_at(hp.learning_rate, step, warmup, total);
            let inputs: Vec<(Vec<f32>, usize)> = idx
                .iter()
                .map(|&i| {
                    let smp = &train[i];
                    let x = if hp.augment {
                        augment(&smp.rgb, hp.image_size, norm, &mut rng)
                    } else {
                        to_tensor(&smp.rgb, hp.image_size, norm)
                    };
                    (x, smp.label)
                })
                .collect();
            let (loss, _) = bn.step(inputs, &mut grads, 0.1, threads)?;
            train_loss += f64::from(loss) * idx.len() as f64;
            seen += idx.len();
            opt.step(&mut bn.params, &grads, lr, hp.weight_decay);
            step += 1;
        }
        train_loss /= seen.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(TrainError::Diverged(epoch));
        }
        let net = bn.fold()?;
        let m = evaluate_samples(&net, val, norm, threads)?;
        epochs_run = epoch;
        let _ = writeln!(
            log,
            "epoch={epoch} train_loss={train_loss:.4} val_loss={:.4} val_accuracy={:.4} val_f1={:.4} val_auc={} lr={lr:.6} seconds={:.2}",
            m.loss,
            m.accuracy,
            m.f1,
            m.auc_roc.map_or("nan".to_string(), |a| format!("{a:.4}")),
            epoch_start.elapsed().as_secs_f64()
        );
        let _ = log.flush();
        if m.loss < best.0 {
            best = (m.loss, epoch, Some(net));
        } else if epoch - best.1 >= hp.patience {
            let _ = writeln!(
                log,
                "early stop: no validation-loss improvement for {} epochs; keeping epoch {}",
                hp.patience, best.1
            );
            break;
        }
    }
    let net = match best.2 {
        Some(n) => n,
        None => bn.fold()?,
    };
    Ok((
        net,
        FitReport {
            epochs_run,
            best_epoch: best.1,
            best_val_loss: best.0,
            seconds: started.elapsed().as_secs_f64(),
        },
    ))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), TrainError> {
    let werr = |source| TrainError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(werr)?;
    }
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    std::fs::write(path, bytes).map_err(werr)
}

/// Writes the failure reason (first 1024 characters, as SageMaker shows) to `<root>/output/failure`.
pub fn write_failure(root: &MlRoot, reason: &str) -> std::io::Result<()> {
    let path = root.failure();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let text: String = reason.chars().take(1024).collect();
    std::fs::write(path, text)
}

fn set_json(stats: &SetStats) -> serde_json::Value {
    serde_json::to_value(stats).unwrap_or_default()
}

/// The whole `train` subcommand: channels in, model and metrics out.
pub fn run(root: &MlRoot, stop: &AtomicBool, log: &mut dyn Write) -> Result<Metrics, TrainError> {
    let started_at = artifact::now_iso8601();
    let hp = HyperParams::from_file(&root.hyperparameters())?;
    let train_dir = root.channel("train");
    if !train_dir.is_dir() {
        return Err(TrainError::NoTrainChannel(train_dir.display().to_string()));
    }
    let resolved = data::resolve(&train_dir)?;
    let loaded = data::load(&resolved.main, hp.image_size, hp.threads)?;
    let val_channel = root.channel("validation");
    let (train, val, val_source, val_loaded) = if val_channel.is_dir() {
        let r = data::resolve(&val_channel)?;
        let dir = r.kaggle_test.unwrap_or(r.main);
        let v = data::load(&dir, hp.image_size, hp.threads)?;
        (
            loaded.samples,
            v.samples,
            "validation channel",
            Some((v.fingerprint, v.stats)),
        )
    } else if let Some(test) = &resolved.kaggle_test {
        let v = data::load(test, hp.image_size, hp.threads)?;
        (
            loaded.samples,
            v.samples,
            "Kaggle TEST folder",
            Some((v.fingerprint, v.stats)),
        )
    } else {
        let (t, v) = data::stratified_split(loaded.samples, hp.validation_fraction, hp.seed);
        (t, v, "stratified split of train", None)
    };
    let synthetic = loaded.synthetic;
    let mut dataset = json!({
        "fingerprint": loaded.fingerprint,
        "synthetic": synthetic,
        "train": set_json(&data::stats_of(&train)),
        "validation": set_json(&data::stats_of(&val)),
        "validation_source": val_source,
        "skipped_unreadable": loaded.stats.skipped,
    });
    if let Some((fp, stats)) = val_loaded {
        dataset["validation_fingerprint"] = json!(fp);
        dataset["skipped_unreadable"] = json!(loaded.stats.skipped + stats.skipped);
    }
    let _ = writeln!(
        log,
        "data: {} train, {} validation ({val_source}){}",
        train.len(),
        val.len(),
        if synthetic {
            ", SYNTHETIC data set"
        } else {
            ""
        }
    );
    let norm = Normalization::default();
    let (net, report) = fit(&train, &val, &hp, &norm, stop, log)?;
    let mut metrics = evaluate_samples(&net, &val, &norm, hp.threads)?;
    metrics.dataset = dataset.clone();
    let training = json!({
        "hyperparameters": hp,
        "started_at": started_at,
        "finished_at": artifact::now_iso8601(),
        "seconds": report.seconds,
        "epochs_run": report.epochs_run,
        "best_epoch": report.best_epoch,
        "best_val_loss": report.best_val_loss,
    });
    let mut model = Model::new(net, norm, dataset, training);
    model.save(&root.model_dir())?;
    let mj = serde_json::to_value(&metrics).unwrap_or_default();
    write_json(&root.model_dir().join("metrics.json"), &mj)?;
    write_json(&root.output_data().join("metrics.json"), &mj)?;
    Ok(metrics)
}

/// The `evaluate` subcommand: metrics of a saved model on a labelled folder (class folders, or
/// the Kaggle layout, where `TEST/` is used).
pub fn evaluate_dir(model: &Model, dir: &Path, threads: usize) -> Result<Metrics, TrainError> {
    let r = data::resolve(dir)?;
    let target = r.kaggle_test.unwrap_or(r.main);
    let set = data::load(&target, model.meta.input_size, threads)?;
    let mut m = evaluate_samples(&model.net, &set.samples, &model.meta.normalization, threads)?;
    m.dataset = json!({
        "fingerprint": set.fingerprint,
        "synthetic": set.synthetic,
        "path": target.display().to_string(),
        "evaluated": set_json(&set.stats),
    });
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!((lr_at(1.0, 0, 10, 100) - 0.1).abs() < 1e-6);
        assert!((lr_at(1.0, 10, 10, 100) - 1.0).abs() < 1e-6);
        assert!(lr_at(1.0, 55, 10, 100) < 0.6);
        assert!((lr_at(1.0, 100, 10, 100) - 0.02).abs() < 1e-6);
    }

    #[test]
    fn augment_keeps_shape_and_varies() {
        let rgb: Vec<u8> = (0..64 * 64 * 3).map(|i| (i % 251) as u8).collect();
        let norm = Normalization::default();
        let a = augment(&rgb, 64, &norm, &mut Rng::new(1));
        let b = augment(&rgb, 64, &norm, &mut Rng::new(2));
        assert_eq!(a.len(), 3 * 64 * 64);
        assert_ne!(a, b);
    }
}
