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

use crate::artifact::{self, ArtifactError, Classifier, Model};
use crate::bn::BnNet;
use crate::data::{self, DataError, Sample, SetStats};
use crate::effnet::{BackboneError, EffNet, FEATURES, NAME as BACKBONE};
use crate::hparams::{HparamError, HyperParams, ModelArch};
use crate::imageio::{to_tensor, Normalization};
use crate::metrics::{self, Metrics};
use crate::nn::{Arch, Network, NnError, Workspace};
use crate::rng::Rng;
use crate::transfer::{self, Head, HeadFit, TransferArch, TransferError, TransferNet};

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
    #[error(transparent)]
    Backbone(#[from] BackboneError),
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
    par_probabilities(samples, net.arch.input_size, norm, threads, || {
        let mut ws = Workspace::new(&net.arch);
        move |x: &[f32]| net.predict(x, &mut ws)
    })
}

/// P(Recyclable) of every sample and the mean cross-entropy, the samples split over `threads`;
/// `classifier` makes each thread's classifier (its own workspace, if it needs one).
fn par_probabilities<C, F>(
    samples: &[Sample],
    size: usize,
    norm: &Normalization,
    threads: usize,
    classifier: C,
) -> Result<(Vec<f32>, f64), NnError>
where
    C: Fn() -> F + Sync,
    F: FnMut(&[f32]) -> Result<Vec<f32>, NnError>,
{
    let chunk = samples.len().div_ceil(threads.max(1)).max(1);
    let parts: Vec<Result<Vec<(f32, f64)>, NnError>> = std::thread::scope(|s| {
        let handles: Vec<_> = samples
            .chunks(chunk)
            .map(|part| {
                let classifier = &classifier;
                s.spawn(move || {
                    let mut f = classifier();
                    part.iter()
                        .map(|smp| {
                            let p = f(&to_tensor(&smp.rgb, size, norm))?;
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

/// Metrics of any saved model (CNN or backbone + head) on samples at its input size.
pub fn evaluate_model(
    model: &Model,
    samples: &[Sample],
    threads: usize,
) -> Result<Metrics, NnError> {
    let norm = &model.meta.normalization;
    let (probs, loss) = par_probabilities(samples, model.meta.input_size, norm, threads, || {
        |x: &[f32]| model.probabilities(x)
    })?;
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
    fit_distilled(train, None, val, hp, norm, stop, log)
}

/// [`fit`] towards distillation targets: with `teacher` (one probability vector per training
/// sample, e.g. [`transfer::out_of_fold_probabilities`]) each image's target mixes its label
/// with the teacher's probabilities ([`transfer::target`]); validation still scores labels.
pub fn fit_distilled(
    train: &[Sample],
    teacher: Option<&[Vec<f32>]>,
    val: &[Sample],
    hp: &HyperParams,
    norm: &Normalization,
    stop: &AtomicBool,
    log: &mut dyn Write,
) -> Result<(Network, FitReport), TrainError> {
    if teacher.is_some_and(|t| t.len() != train.len()) {
        return Err(TrainError::Nn(NnError::Arch(
            "one teacher probability vector per training sample is needed".into(),
        )));
    }
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
            let inputs: Vec<(Vec<f32>, Vec<f32>)> = idx
                .iter()
                .map(|&i| {
                    let smp = &train[i];
                    let x = if hp.augment {
                        augment(&smp.rgb, hp.image_size, norm, &mut rng)
                    } else {
                        to_tensor(&smp.rgb, hp.image_size, norm)
                    };
                    let target = match teacher {
                        Some(t) => transfer::target(smp.label, &t[i]),
                        None => {
                            let mut t = vec![0.0; 2];
                            t[smp.label.min(1)] = 1.0;
                            t
                        }
                    };
                    (x, target)
                })
                .collect();
            let (loss, _) = bn.step_targets(inputs, &mut grads, 0.1, threads)?;
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

/// The pretrained backbone's linear head fitted on the training set's features, scored on the
/// validation set: the `accurate` model itself, and the teacher of `fast`.
struct Teacher {
    backbone: EffNet,
    head: Head,
    train_features: Vec<Vec<f32>>,
    train_labels: Vec<usize>,
    train_loss: f64,
    metrics: Metrics,
    seconds: f64,
    features_seconds: f64,
    l2: f32,
}

impl Teacher {
    /// Computes both sets' features (freeing their teacher-size images) and fits the head.
    fn fit(
        backbone: EffNet,
        train: &mut [Sample],
        val: &mut [Sample],
        hp: &HyperParams,
        stop: &AtomicBool,
        log: &mut dyn Write,
    ) -> Result<Self, TrainError> {
        if val.is_empty() {
            return Err(TrainError::EmptyValidation);
        }
        let started = Instant::now();
        let size = hp.teacher_size;
        let feats = |set: &mut [Sample]| -> Result<Vec<Vec<f32>>, TrainError> {
            let f = transfer::features(&backbone, set, size, hp.threads, stop).map_err(
                |e| match e {
                    TransferError::Stopped => TrainError::Stopped,
                    TransferError::Backbone(b) => TrainError::Backbone(b),
                },
            )?;
            set.iter_mut().for_each(|s| s.teacher = Vec::new());
            Ok(f)
        };
        let train_features = feats(train)?;
        let val_features = feats(val)?;
        let features_seconds = started.elapsed().as_secs_f64();
        let train_labels: Vec<usize> = train.iter().map(|s| s.label).collect();
        let val_labels: Vec<usize> = val.iter().map(|s| s.label).collect();
        let (head, l2) = transfer::select_head(
            &train_features,
            &train_labels,
            (&val_features, &val_labels),
            2,
        );
        let probs: Vec<f32> = val_features
            .iter()
            .map(|f| crate::nn::softmax(&head.logits(f))[1])
            .collect();
        let val_loss = transfer::loss(&head, &val_features, &val_labels);
        let metrics = metrics::compute(&val_labels, &probs, val_loss);
        let train_loss = transfer::loss(&head, &train_features, &train_labels);
        let seconds = started.elapsed().as_secs_f64();
        let _ = writeln!(
            log,
            "teacher: {BACKBONE} at {size}x{size} + linear head: val_accuracy={:.4} val_loss={:.4} ({} + {} images, features {features_seconds:.1} s, total {seconds:.1} s, l2 {l2})",
            metrics.accuracy,
            metrics.loss,
            train.len(),
            val.len()
        );
        Ok(Self {
            backbone,
            head,
            train_features,
            train_labels,
            train_loss,
            metrics,
            seconds,
            features_seconds,
            l2,
        })
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "backbone": BACKBONE,
            "val_accuracy": self.metrics.accuracy,
            "val_loss": self.metrics.loss,
            "val_f1": self.metrics.f1,
            "seconds": self.seconds,
            "features_seconds": self.features_seconds,
            "l2": self.l2,
        })
    }

    fn net(self, size: usize) -> TransferNet {
        TransferNet {
            arch: TransferArch {
                name: "effnet-lite0-linear".into(),
                backbone: BACKBONE.into(),
                input_size: size,
                features: FEATURES,
                classes: 2,
            },
            backbone: std::sync::Arc::new(self.backbone),
            head: self.head,
        }
    }
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
    // The backbone first: a build without its weights fails before minutes of decoding.
    let backbone = if hp.arch.uses_backbone() {
        Some(EffNet::embedded()?)
    } else {
        None
    };
    let teacher_size = backbone.as_ref().map(|_| hp.teacher_size);
    let load = |dir: &Path| data::load_sized(dir, hp.image_size, teacher_size, hp.threads);
    let loaded = load(&resolved.main)?;
    let val_channel = root.channel("validation");
    let (train, val, val_source, val_loaded) = if val_channel.is_dir() {
        let r = data::resolve(&val_channel)?;
        let dir = r.kaggle_test.unwrap_or(r.main);
        let v = load(&dir)?;
        (
            loaded.samples,
            v.samples,
            "validation channel",
            Some((v.fingerprint, v.stats)),
        )
    } else if let Some(test) = &resolved.kaggle_test {
        let v = load(test)?;
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
    let (net, norm, mut metrics, report, teacher) = match backbone {
        None => {
            let norm = Normalization::default();
            let (net, report) = fit(&train, &val, &hp, &norm, stop, log)?;
            let m = evaluate_samples(&net, &val, &norm, hp.threads)?;
            (Classifier::Cnn(net), norm, m, report, None)
        }
        Some(backbone) => {
            let mut train = train;
            let mut val = val;
            let t = Teacher::fit(backbone, &mut train, &mut val, &hp, stop, log)?;
            let teacher_json = t.json();
            if hp.arch == ModelArch::Accurate {
                let _ = writeln!(
                    log,
                    "epoch=1 train_loss={:.4} val_loss={:.4} val_accuracy={:.4} val_f1={:.4} val_auc={} lr={:.6} seconds={:.2}",
                    t.train_loss,
                    t.metrics.loss,
                    t.metrics.accuracy,
                    t.metrics.f1,
                    t.metrics.auc_roc.map_or("nan".to_string(), |a| format!("{a:.4}")),
                    HeadFit::default().learning_rate,
                    t.seconds
                );
                let report = FitReport {
                    epochs_run: 1,
                    best_epoch: 1,
                    best_val_loss: t.metrics.loss,
                    seconds: t.seconds,
                };
                let m = t.metrics.clone();
                (
                    Classifier::Transfer(t.net(hp.teacher_size)),
                    crate::effnet::NORMALIZATION,
                    m,
                    report,
                    Some(teacher_json),
                )
            } else {
                let soft = transfer::out_of_fold_probabilities(
                    &t.train_features,
                    &t.train_labels,
                    2,
                    t.l2,
                );
                drop(t);
                let norm = Normalization::default();
                let (net, report) =
                    fit_distilled(&train, Some(&soft), &val, &hp, &norm, stop, log)?;
                let m = evaluate_samples(&net, &val, &norm, hp.threads)?;
                (Classifier::Cnn(net), norm, m, report, Some(teacher_json))
            }
        }
    };
    metrics.dataset = dataset.clone();
    let mut training = json!({
        "hyperparameters": hp,
        "started_at": started_at,
        "finished_at": artifact::now_iso8601(),
        "seconds": report.seconds,
        "epochs_run": report.epochs_run,
        "best_epoch": report.best_epoch,
        "best_val_loss": report.best_val_loss,
    });
    if let Some(t) = teacher {
        training["teacher"] = t;
    }
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
    let mut m = evaluate_model(model, &set.samples, threads)?;
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
