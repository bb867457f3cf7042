//! The model directory (`<ml-root>/model/`): weights in `model.safetensors` and a self-describing
//! `model.json` (labels, input size, normalisation, architecture, data set fingerprint,
//! training settings and time). Loading checks every tensor against the architecture, so a
//! mismatched or damaged directory is a clear error, never a panic or silent garbage. [`Model`]
//! is what `serve`, `predict`, `evaluate` and `bench` run.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::CLASS_NAMES;
use crate::direct::{DirectWorkspace, PackedCnn};
use crate::effnet::{EffNet, FEATURES};
use crate::imageio::{self, ImageError, Normalization};
use crate::nn::{softmax, Arch, Network, NnError, Workspace};
use crate::transfer::{Head, TransferArch, TransferNet};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "model.json";
pub const FORMAT: &str = "waste-model/1";

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("failed to read {path}: {source} (is --ml-root pointing at a trained model? expected <ml-root>/model/{META_FILE} and {WEIGHTS_FILE})")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid model description: {source}")]
    Meta {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Weights { path: String, reason: String },
    #[error("model in {path} does not fit its description: {source}")]
    Mismatch { path: String, source: NnError },
    #[error("unsupported model format `{0}`; this binary reads `{FORMAT}`")]
    Format(String),
}

/// Everything about a model except its weights.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    pub format: String,
    pub labels: Vec<String>,
    pub input_size: usize,
    pub normalization: Normalization,
    pub architecture: Architecture,
    pub parameters: usize,
    pub weights_file: String,
    pub weights_sha256: String,
    /// Data set fingerprint and counts (`synthetic: true` for `synth` data).
    pub dataset: serde_json::Value,
    /// Hyperparameters, start/end times, epochs run, best epoch.
    pub training: serde_json::Value,
}

/// What `model.json` says the network is: the small CNN (`fast` and `cnn`), or the pretrained
/// backbone with a linear head (`accurate`). Untagged, so model directories written before
/// the backbone existed (a CNN `architecture`) load unchanged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Architecture {
    Cnn(Arch),
    Transfer(TransferArch),
}

/// The network behind a model.
#[derive(Debug, Clone)]
pub enum Classifier {
    Cnn(Network),
    Transfer(TransferNet),
}

impl Classifier {
    pub fn param_count(&self) -> usize {
        match self {
            Self::Cnn(n) => n.param_count(),
            Self::Transfer(t) => t.param_count(),
        }
    }

    /// Multiply-accumulates of one forward pass.
    pub fn macs(&self) -> usize {
        match self {
            Self::Cnn(n) => n.arch.macs(),
            // The backbone's count at its input size (EfficientNet-Lite0: about 400 M at 224).
            Self::Transfer(t) => {
                (400_000_000.0 * (t.arch.input_size as f64 / 224.0).powi(2)) as usize
            }
        }
    }

    fn input_size(&self) -> usize {
        match self {
            Self::Cnn(n) => n.arch.input_size,
            Self::Transfer(t) => t.arch.input_size,
        }
    }

    fn architecture(&self) -> Architecture {
        match self {
            Self::Cnn(n) => Architecture::Cnn(n.arch.clone()),
            Self::Transfer(t) => Architecture::Transfer(t.arch.clone()),
        }
    }
}

/// A loaded (or freshly trained) model, ready for inference.
#[derive(Debug, Clone)]
pub struct Model {
    /// Read-only after construction: the served forward pass is packed from it.
    pub net: Classifier,
    pub meta: ModelMeta,
    /// The CNN's weights packed for the direct-convolution forward pass (`None` for the
    /// backbone, or on a CPU without fused multiply-add, where the sgemm path serves).
    served: Option<Arc<PackedCnn>>,
}

/// One classification, as `/invocations` and `predict` report it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prediction {
    pub label: String,
    pub confidence: f32,
    pub probabilities: BTreeMap<String, f32>,
}

thread_local! {
    // One workspace per thread (server blocking threads, bench), reused across requests so
    // inference never allocates its activation buffers.
    static WORKSPACE: RefCell<Option<(Arch, Workspace)>> = const { RefCell::new(None) };
    // Keyed by the packed network's id, so a thread serving a newly loaded model builds
    // buffers for it instead of reusing another model's.
    static DIRECT: RefCell<Option<(u64, DirectWorkspace)>> = const { RefCell::new(None) };
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The weights file: the CNN's tensors, or the pretrained backbone's tensors exactly as
/// converted (PyTorch names, BatchNorm unfolded, so the file is the package's weights plus the
/// head) and `head.weight`/`head.bias`.
fn weights_bytes(net: &Classifier) -> Result<Vec<u8>, String> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let backbone = match net {
        Classifier::Cnn(n) => {
            for ((name, shape), p) in n.arch.param_specs().into_iter().zip(&n.params) {
                owned.push((name, shape, le_bytes(p)));
            }
            None
        }
        Classifier::Transfer(t) => {
            let classes = t.arch.classes;
            owned.push((
                "head.weight".into(),
                vec![classes, FEATURES],
                le_bytes(&t.head.w),
            ));
            owned.push(("head.bias".into(), vec![classes], le_bytes(&t.head.b)));
            Some(SafeTensors::deserialize(crate::effnet::EMBEDDED).map_err(|e| {
                format!("the embedded backbone weights are unreadable ({e}); rebuild waste-model after ./dev setup")
            })?)
        }
    };
    let mut views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    if let Some(st) = &backbone {
        views.extend(st.tensors());
    }
    let mut info = HashMap::new();
    info.insert("format".to_string(), FORMAT.to_string());
    safetensors::tensor::serialize(views, &Some(info)).map_err(|e| e.to_string())
}

fn iso8601(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (H. Hinnant), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Current time as ISO-8601 UTC.
pub fn now_iso8601() -> String {
    iso8601(std::time::SystemTime::now())
}

impl Model {
    /// Wraps a trained network with its description; `weights_sha256` is filled in on save.
    pub fn new(
        net: Classifier,
        normalization: Normalization,
        dataset: serde_json::Value,
        training: serde_json::Value,
    ) -> Self {
        let meta = ModelMeta {
            format: FORMAT.into(),
            labels: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
            input_size: net.input_size(),
            normalization,
            parameters: net.param_count(),
            architecture: net.architecture(),
            weights_file: WEIGHTS_FILE.into(),
            weights_sha256: String::new(),
            dataset,
            training,
        };
        Self::assemble(net, meta)
    }

    fn assemble(net: Classifier, meta: ModelMeta) -> Self {
        let served = match &net {
            Classifier::Cnn(n) => PackedCnn::new(n).map(Arc::new),
            Classifier::Transfer(_) => None,
        };
        Self { net, meta, served }
    }

    /// Writes `model.safetensors` and `model.json` into `dir` (created if needed).
    pub fn save(&mut self, dir: &Path) -> Result<(), ArtifactError> {
        let werr = |path: &Path| {
            let path = path.display().to_string();
            move |source| ArtifactError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(werr(dir))?;
        let bytes = weights_bytes(&self.net).map_err(|reason| ArtifactError::Weights {
            path: dir.join(WEIGHTS_FILE).display().to_string(),
            reason,
        })?;
        self.meta.weights_sha256 = hex::encode(Sha256::digest(&bytes));
        let wpath = dir.join(WEIGHTS_FILE);
        std::fs::write(&wpath, &bytes).map_err(werr(&wpath))?;
        let mpath = dir.join(META_FILE);
        let json = serde_json::to_vec_pretty(&self.meta).map_err(|source| ArtifactError::Meta {
            path: mpath.display().to_string(),
            source,
        })?;
        std::fs::write(&mpath, json).map_err(werr(&mpath))
    }

    /// Loads a model directory written by [`Model::save`].
    pub fn load(dir: &Path) -> Result<Self, ArtifactError> {
        let rerr = |path: &PathBuf| {
            let path = path.display().to_string();
            move |source| ArtifactError::Read { path, source }
        };
        let mpath = dir.join(META_FILE);
        let text = std::fs::read(&mpath).map_err(rerr(&mpath))?;
        let meta: ModelMeta =
            serde_json::from_slice(&text).map_err(|source| ArtifactError::Meta {
                path: mpath.display().to_string(),
                source,
            })?;
        if meta.format != FORMAT {
            return Err(ArtifactError::Format(meta.format));
        }
        let wpath = dir.join(&meta.weights_file);
        let bytes = std::fs::read(&wpath).map_err(rerr(&wpath))?;
        let werr = |reason: String| ArtifactError::Weights {
            path: wpath.display().to_string(),
            reason,
        };
        let st = SafeTensors::deserialize(&bytes).map_err(|e| werr(e.to_string()))?;
        let mismatch = |why: &str| ArtifactError::Mismatch {
            path: dir.display().to_string(),
            source: NnError::Arch(why.into()),
        };
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ArtifactError> {
            let t = st
                .tensor(name)
                .map_err(|e| werr(format!("tensor `{name}`: {e}")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(werr(format!(
                    "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                )));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect())
        };
        let net = match &meta.architecture {
            Architecture::Cnn(arch) => {
                let mut params = Vec::new();
                for (name, shape) in arch.param_specs() {
                    params.push(read(&name, &shape)?);
                }
                let net = Network::from_params(arch.clone(), params).map_err(|source| {
                    ArtifactError::Mismatch {
                        path: dir.display().to_string(),
                        source,
                    }
                })?;
                Classifier::Cnn(net)
            }
            Architecture::Transfer(arch) => {
                if arch.backbone != crate::effnet::NAME || arch.features != FEATURES {
                    return Err(mismatch(&format!(
                        "backbone `{}` with {} features is not one this binary has ({} with {FEATURES})",
                        arch.backbone,
                        arch.features,
                        crate::effnet::NAME
                    )));
                }
                let backbone =
                    EffNet::from_safetensors(&bytes).map_err(|e| werr(format!("backbone: {e}")))?;
                let head = Head {
                    w: read("head.weight", &[arch.classes, FEATURES])?,
                    b: read("head.bias", &[arch.classes])?,
                };
                Classifier::Transfer(TransferNet {
                    arch: arch.clone(),
                    backbone: std::sync::Arc::new(backbone),
                    head,
                })
            }
        };
        let classes = match &meta.architecture {
            Architecture::Cnn(a) => a.classes,
            Architecture::Transfer(a) => a.classes,
        };
        if meta.labels.len() != classes || meta.input_size != net.input_size() {
            return Err(mismatch(
                "labels or input_size disagree with the architecture",
            ));
        }
        Ok(Self::assemble(net, meta))
    }

    /// The id reported when `MODEL_ID` is not set: derived from the weights' hash.
    pub fn fingerprint_id(&self) -> String {
        let h = if self.meta.weights_sha256.is_empty() {
            weights_bytes(&self.net)
                .map(|b| hex::encode(Sha256::digest(b)))
                .unwrap_or_default()
        } else {
            self.meta.weights_sha256.clone()
        };
        format!("waste-model-{}", &h[..h.len().min(16)])
    }

    /// Class probabilities of one prepared (normalised CHW) input.
    pub fn probabilities(&self, input: &[f32]) -> Result<Vec<f32>, NnError> {
        if let Some(packed) = &self.served {
            let key = packed.id();
            return DIRECT.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.as_ref().is_none_or(|(k, _)| *k != key) {
                    *slot = Some((key, packed.workspace()));
                }
                match slot.as_mut() {
                    Some((_, ws)) => packed.forward(input, ws).map(softmax),
                    None => Err(NnError::Arch("workspace missing".into())),
                }
            });
        }
        match &self.net {
            Classifier::Transfer(t) => t
                .probabilities(input)
                .map_err(|e| NnError::Arch(e.to_string())),
            Classifier::Cnn(_) => self
                .sgemm_probabilities(input)
                .unwrap_or_else(|| Err(NnError::Arch("not a CNN".into()))),
        }
    }

    /// The small CNN's im2col + sgemm forward pass (the training path), whichever pass serves;
    /// `None` for the backbone. For benchmarks and tests that compare the two.
    pub fn sgemm_probabilities(&self, input: &[f32]) -> Option<Result<Vec<f32>, NnError>> {
        let Classifier::Cnn(net) = &self.net else {
            return None;
        };
        Some(WORKSPACE.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(a, _)| *a != net.arch) {
                *slot = Some((net.arch.clone(), Workspace::new(&net.arch)));
            }
            match slot.as_mut() {
                Some((_, ws)) => net.predict(input, ws),
                None => Err(NnError::Arch("workspace missing".into())),
            }
        }))
    }

    /// Which forward pass `probabilities` runs, for benchmark reports.
    pub fn forward_kernel(&self) -> String {
        match (&self.net, &self.served) {
            (_, Some(p)) => format!("direct 3x3 convolution, {}", p.instruction_set()),
            (Classifier::Cnn(_), None) => "im2col + sgemm (no FMA on this CPU)".into(),
            (Classifier::Transfer(_), None) => "EfficientNet-Lite0 backbone (sgemm)".into(),
        }
    }

    /// Decoded image bytes to a prepared input.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Vec<f32>, ImageError> {
        imageio::prepare(bytes, self.meta.input_size, &self.meta.normalization)
    }

    pub fn prediction_from(&self, probs: &[f32]) -> Prediction {
        let best = if probs.get(1).copied().unwrap_or(0.0) >= 0.5 {
            1
        } else {
            0
        };
        Prediction {
            label: self.meta.labels[best].clone(),
            confidence: probs[best],
            probabilities: self
                .meta
                .labels
                .iter()
                .cloned()
                .zip(probs.iter().copied())
                .collect(),
        }
    }

    /// Image bytes to a prediction (decode, resize, normalise, forward).
    pub fn predict_bytes(&self, bytes: &[u8]) -> Result<Prediction, ImageError> {
        let x = self.prepare(bytes)?;
        let probs = self
            .probabilities(&x)
            .map_err(|e| ImageError::Corrupt(e.to_string()))?;
        Ok(self.prediction_from(&probs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn weights_round_trip_exactly_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let net = Network::new_random(Arch::default_for(64, 4), &mut Rng::new(5)).unwrap();
        let mut m = Model::new(
            Classifier::Cnn(net),
            Normalization::default(),
            serde_json::json!({}),
            serde_json::json!({}),
        );
        m.save(dir.path()).unwrap();
        let back = Model::load(dir.path()).unwrap();
        match (&back.net, &m.net) {
            (Classifier::Cnn(a), Classifier::Cnn(b)) => assert_eq!(a.params, b.params),
            _ => panic!("a CNN came back as another kind of network"),
        }
        assert_eq!(back.meta, m.meta);
        assert!(back.fingerprint_id().starts_with("waste-model-"));

        let w = dir.path().join(WEIGHTS_FILE);
        let bytes = std::fs::read(&w).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() - 10]).unwrap();
        let err = Model::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid safetensors"), "{err}");
        let err = Model::load(&dir.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is --ml-root pointing at a trained model"),
            "{err}"
        );
    }

    #[test]
    fn iso8601_formats_known_instants() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_709_251_199);
        assert_eq!(iso8601(t), "2024-02-29T23:59:59Z");
        assert_eq!(iso8601(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
