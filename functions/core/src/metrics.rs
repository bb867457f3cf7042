//! A model's quality as the trainer measured it on validation data (fractions, not percent),
//! and the staged-versus-deployed comparison the review email and the web app show.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfusionMatrix {
    pub tp: u64,
    pub tn: u64,
    #[serde(rename = "fp")]
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// The trainer's `metrics.json` (unknown fields ignored, so the trainer may add more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub auc_roc: f64,
    pub loss: f64,
    pub support: u64,
    pub confusion_matrix: ConfusionMatrix,
    #[serde(default)]
    pub positive_class: Option<String>,
    #[serde(default)]
    pub dataset: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.json is not valid: {0}")]
    Parse(String),
    #[error("metric {name} = {value} is outside 0..=1 (metrics are fractions, not percent)")]
    NotAFraction { name: &'static str, value: f64 },
}

impl Metrics {
    /// Parses and checks a trainer's metrics file.
    pub fn from_json(bytes: &[u8]) -> Result<Metrics, MetricsError> {
        let m: Metrics =
            serde_json::from_slice(bytes).map_err(|e| MetricsError::Parse(e.to_string()))?;
        for (name, value) in m.fractions() {
            if !(0.0..=1.0).contains(&value) || value.is_nan() {
                return Err(MetricsError::NotAFraction { name, value });
            }
        }
        Ok(m)
    }

    /// The fraction metrics by name, in display order.
    pub fn fractions(&self) -> [(&'static str, f64); 5] {
        [
            ("accuracy", self.accuracy),
            ("precision", self.precision),
            ("recall", self.recall),
            ("f1", self.f1),
            ("auc_roc", self.auc_roc),
        ]
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "loss" => Some(self.loss),
            _ => self
                .fractions()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v),
        }
    }
}

/// One row of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delta {
    pub metric: &'static str,
    pub staged: f64,
    pub deployed: Option<f64>,
    /// staged − deployed
    pub delta: Option<f64>,
    /// Whether the staged value is better (higher, or lower for loss).
    pub better: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub primary_metric: String,
    pub rows: Vec<Delta>,
    /// Better on the primary metric; `true` when nothing is deployed yet.
    pub staged_is_better: bool,
}

/// Compares a staged model's metrics with the deployed one's (if any) on every metric, and
/// decides on `primary` (e.g. "f1"; "loss" counts lower as better).
pub fn compare(staged: &Metrics, deployed: Option<&Metrics>, primary: &str) -> Comparison {
    let names: [&'static str; 6] = ["accuracy", "precision", "recall", "f1", "auc_roc", "loss"];
    let rows: Vec<Delta> = names
        .iter()
        .map(|&metric| {
            let s = staged.get(metric).unwrap_or(f64::NAN);
            let d = deployed.and_then(|d| d.get(metric));
            let delta = d.map(|d| s - d);
            let better = delta.map(|x| if metric == "loss" { x < 0.0 } else { x > 0.0 });
            Delta {
                metric,
                staged: s,
                deployed: d,
                delta,
                better,
            }
        })
        .collect();
    let staged_is_better = rows
        .iter()
        .find(|r| r.metric == primary)
        .map(|r| r.better.unwrap_or(true))
        .unwrap_or(true);
    Comparison {
        primary_metric: primary.to_string(),
        rows,
        staged_is_better,
    }
}

#[cfg(test)]
pub(crate) fn sample(acc: f64, f1: f64, loss: f64) -> Metrics {
    Metrics {
        accuracy: acc,
        precision: 0.8,
        recall: 0.7,
        f1,
        auc_roc: 0.9,
        loss,
        support: 100,
        confusion_matrix: ConfusionMatrix {
            tp: 35,
            tn: 45,
            fp: 9,
            fn_: 11,
        },
        positive_class: Some("Recyclable".into()),
        dataset: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_trainers_file_and_refuses_percentages() {
        let json = br#"{"accuracy":0.81,"precision":0.8,"recall":0.7,"f1":0.75,"auc_roc":0.88,"loss":0.41,
            "support":200,"confusion_matrix":{"tp":70,"tn":92,"fp":18,"fn":20},"positive_class":"Recyclable",
            "dataset":{"synthetic":true},"extra":"ignored"}"#;
        let m = Metrics::from_json(json).unwrap();
        assert_eq!(m.confusion_matrix.fn_, 20);
        assert_eq!(m.support, 200);
        let pct = br#"{"accuracy":81,"precision":0.8,"recall":0.7,"f1":0.75,"auc_roc":0.88,"loss":0.41,"support":200,"confusion_matrix":{"tp":1,"tn":1,"fp":1,"fn":1}}"#;
        let e = Metrics::from_json(pct).unwrap_err().to_string();
        assert!(e.contains("accuracy = 81"), "{e}");
    }

    #[test]
    fn comparison_deltas_and_the_primary_metric() {
        let staged = sample(0.85, 0.80, 0.30);
        let deployed = sample(0.80, 0.82, 0.35);
        let c = compare(&staged, Some(&deployed), "f1");
        let acc = c.rows.iter().find(|r| r.metric == "accuracy").unwrap();
        assert!((acc.delta.unwrap() - 0.05).abs() < 1e-12);
        assert_eq!(acc.better, Some(true));
        let loss = c.rows.iter().find(|r| r.metric == "loss").unwrap();
        assert_eq!(loss.better, Some(true), "lower loss is better");
        assert!(!c.staged_is_better, "worse on the primary metric f1");
        assert!(compare(&staged, Some(&deployed), "accuracy").staged_is_better);
        let first = compare(&staged, None, "f1");
        assert!(first.staged_is_better && first.rows.iter().all(|r| r.delta.is_none()));
    }
}
