//! Training hyperparameters: defaults, and parsing of SageMaker's `hyperparameters.json`, where
//! every value is a string. Unknown keys are rejected (a typo must not silently train with a
//! default), except keys starting with `_`, which SageMaker's tuner adds on its own.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum HparamError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a JSON object of string values: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("unknown hyperparameter `{key}`; known: {known} (keys starting with `_` are ignored)")]
    Unknown { key: String, known: String },
    #[error("hyperparameter `{key}` = {value:?} is invalid: {why}")]
    Invalid {
        key: String,
        value: String,
        why: String,
    },
}

/// Which network a training run produces (`arch`, also accepted as `model.arch`).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelArch {
    /// The small CNN, distilled from the pretrained backbone's linear head: served fast.
    Fast,
    /// The pretrained backbone (frozen) with a linear head: served as is, several ms a photo.
    Accurate,
    /// The small CNN from its labels alone (no pretrained weights involved).
    Cnn,
}

impl ModelArch {
    pub fn uses_backbone(self) -> bool {
        self != Self::Cnn
    }
}

/// Every setting of a training run; all are recorded in model.json.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HyperParams {
    pub epochs: usize,
    pub learning_rate: f32,
    pub batch_size: usize,
    pub image_size: usize,
    pub seed: u64,
    pub weight_decay: f32,
    pub validation_fraction: f32,
    /// Epochs without a validation-loss improvement before stopping early.
    pub patience: usize,
    /// Channel multiplier of the network (16 gives about 0.2 M parameters).
    pub width: usize,
    pub augment: bool,
    pub warmup_epochs: usize,
    pub threads: usize,
    pub arch: ModelArch,
    /// Input size of the pretrained backbone (the teacher, or the `accurate` model itself).
    pub teacher_size: usize,
}

impl Default for HyperParams {
    /// Chosen to train without tuning on small (about 100) and large (22,000) photo sets:
    /// AdamW with warm-up and a cosine decay, augmentation on, early stopping on validation loss.
    fn default() -> Self {
        Self {
            epochs: 40,
            learning_rate: 0.003,
            batch_size: 32,
            image_size: 64,
            seed: 42,
            weight_decay: 0.02,
            validation_fraction: 0.2,
            patience: 8,
            width: 16,
            augment: true,
            warmup_epochs: 1,
            threads: 2,
            arch: ModelArch::Fast,
            teacher_size: 128,
        }
    }
}

pub const KNOWN: [&str; 14] = [
    "arch",
    "teacher_size",
    "epochs",
    "learning_rate",
    "batch_size",
    "image_size",
    "seed",
    "weight_decay",
    "validation_fraction",
    "patience",
    "width",
    "augment",
    "warmup_epochs",
    "threads",
];

fn parse<T: std::str::FromStr>(
    key: &str,
    value: &str,
    ok: impl Fn(&T) -> bool,
    why: &str,
) -> Result<T, HparamError> {
    let invalid = || HparamError::Invalid {
        key: key.into(),
        value: value.into(),
        why: why.into(),
    };
    let v: T = value.trim().parse().map_err(|_| invalid())?;
    if ok(&v) {
        Ok(v)
    } else {
        Err(invalid())
    }
}

impl HyperParams {
    /// Applies string settings on top of the defaults.
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, HparamError> {
        let mut h = Self::default();
        for (key, value) in map {
            if key.starts_with('_') {
                continue;
            }
            let v = value.as_str();
            match key.as_str() {
                "epochs" => {
                    h.epochs = parse(key, v, |&n| (1..=1000).contains(&n), "an integer 1..=1000")?
                }
                "learning_rate" => {
                    h.learning_rate =
                        parse(key, v, |&x: &f32| x > 0.0 && x <= 1.0, "a number in (0, 1]")?
                }
                "batch_size" => {
                    h.batch_size =
                        parse(key, v, |&n| (1..=1024).contains(&n), "an integer 1..=1024")?
                }
                "image_size" => {
                    h.image_size = parse(
                        key,
                        v,
                        |&n| (64..=512).contains(&n),
                        "an integer 64..=512 (the input is at least 64x64)",
                    )?
                }
                "seed" => h.seed = parse(key, v, |_: &u64| true, "a non-negative integer")?,
                "weight_decay" => {
                    h.weight_decay = parse(
                        key,
                        v,
                        |&x: &f32| (0.0..=1.0).contains(&x),
                        "a number in [0, 1]",
                    )?
                }
                "validation_fraction" => {
                    h.validation_fraction = parse(
                        key,
                        v,
                        |&x: &f32| x > 0.0 && x <= 0.5,
                        "a number in (0, 0.5]",
                    )?
                }
                "patience" => {
                    h.patience = parse(key, v, |&n| (1..=1000).contains(&n), "an integer 1..=1000")?
                }
                "width" => {
                    h.width = parse(key, v, |&n| (4..=128).contains(&n), "an integer 4..=128")?
                }
                "augment" => {
                    h.augment = parse(
                        key,
                        &v.to_ascii_lowercase(),
                        |_: &bool| true,
                        "true or false",
                    )?
                }
                "warmup_epochs" => {
                    h.warmup_epochs = parse(key, v, |&n| n <= 100, "an integer 0..=100")?
                }
                "arch" | "model.arch" => {
                    h.arch = match v.trim().to_ascii_lowercase().as_str() {
                        "fast" => ModelArch::Fast,
                        "accurate" => ModelArch::Accurate,
                        "cnn" => ModelArch::Cnn,
                        _ => {
                            return Err(HparamError::Invalid {
                                key: key.clone(),
                                value: v.into(),
                                why: "one of fast (the small CNN distilled from the pretrained backbone; the default), accurate (the pretrained backbone with a linear head, slower to serve) or cnn (the small CNN from labels alone)".into(),
                            })
                        }
                    }
                }
                "teacher_size" => {
                    h.teacher_size = parse(
                        key,
                        v,
                        |&n| (64..=320).contains(&n),
                        "an integer 64..=320 (the pretrained backbone's input size)",
                    )?
                }
                "threads" => {
                    h.threads = parse(key, v, |&n| (1..=64).contains(&n), "an integer 1..=64")?
                }
                _ => {
                    return Err(HparamError::Unknown {
                        key: key.clone(),
                        known: KNOWN.join(", "),
                    })
                }
            }
        }
        Ok(h)
    }

    /// Reads `hyperparameters.json`; a missing file means all defaults. SageMaker writes every
    /// value as a string; plain JSON numbers and booleans are accepted too for hand-written files.
    pub fn from_file(path: &Path) -> Result<Self, HparamError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(HparamError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|source| HparamError::Json {
                path: path.display().to_string(),
                source,
            })?;
        let mut map = BTreeMap::new();
        for (k, v) in raw {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other if k.starts_with('_') => other.to_string(),
                other => {
                    return Err(HparamError::Invalid {
                        key: k,
                        value: other.to_string(),
                        why: "must be a string (SageMaker passes every hyperparameter as one)"
                            .into(),
                    })
                }
            };
            map.insert(k, s);
        }
        Self::from_map(&map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn string_values_override_defaults_and_underscore_keys_are_ignored() {
        let h = HyperParams::from_map(&map(&[
            ("epochs", "3"),
            ("learning_rate", "0.01"),
            ("augment", "False"),
            ("_tuning_objective_metric", "validation:accuracy"),
        ]))
        .unwrap();
        assert_eq!(h.epochs, 3);
        assert_eq!(h.learning_rate, 0.01);
        assert!(!h.augment);
        assert_eq!(h.batch_size, HyperParams::default().batch_size);
    }

    #[test]
    fn unknown_and_invalid_values_are_rejected_with_the_fix() {
        let err = HyperParams::from_map(&map(&[("epoch", "3")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown hyperparameter `epoch`") && err.contains("epochs"),
            "{err}"
        );
        let err = HyperParams::from_map(&map(&[("image_size", "32")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("64..=512"), "{err}");
        let err = HyperParams::from_map(&map(&[("batch_size", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch_size") && err.contains("lots"), "{err}");
        let err = HyperParams::from_map(&map(&[("model.arch", "huge")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fast") && err.contains("accurate"), "{err}");
        let h = HyperParams::from_map(&map(&[("model.arch", "Accurate")])).unwrap();
        assert_eq!(h.arch, ModelArch::Accurate);
        assert_eq!(HyperParams::default().arch, ModelArch::Fast);
    }
}
