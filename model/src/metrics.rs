//! Binary classification metrics on a validation or evaluation set, with Recyclable as the
//! positive class: confusion matrix, accuracy, precision, recall, F1, ROC AUC (rank statistic,
//! ties averaged) and mean cross-entropy. This is the shape of `metrics.json`, which the
//! pipeline compares between models, so every figure is a fraction, never a percentage.

use serde::{Deserialize, Serialize};

pub const POSITIVE_CLASS: &str = "Recyclable";

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confusion {
    pub tp: u64,
    pub tn: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// `null` when the set holds only one class (AUC is undefined then).
    pub auc_roc: Option<f64>,
    pub loss: f64,
    pub support: u64,
    pub confusion_matrix: Confusion,
    pub positive_class: String,
    pub dataset: serde_json::Value,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// ROC AUC as the Mann-Whitney statistic: the probability that a random positive scores above
/// a random negative, counting ties as one half.
pub fn auc_roc(positive: &[bool], scores: &[f32]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return None;
    }
    // Average ranks (1-based) over runs of equal scores.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += idx[i..=j].iter().filter(|&&k| positive[k]).count() as f64 * avg_rank;
        i = j + 1;
    }
    Some((rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))
}

/// Metrics from labels (1 = Recyclable) and predicted Recyclable probabilities; a prediction is
/// positive at probability >= 0.5.
pub fn compute(labels: &[usize], p_recyclable: &[f32], loss: f64) -> Metrics {
    let mut c = Confusion::default();
    for (&y, &p) in labels.iter().zip(p_recyclable) {
        match (y == 1, p >= 0.5) {
            (true, true) => c.tp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fp += 1,
            (true, false) => c.fn_ += 1,
        }
    }
    let n = c.tp + c.tn + c.fp + c.fn_;
    let precision = ratio(c.tp, c.tp + c.fp);
    let recall = ratio(c.tp, c.tp + c.fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    let positive: Vec<bool> = labels.iter().map(|&y| y == 1).collect();
    Metrics {
        accuracy: ratio(c.tp + c.tn, n),
        precision,
        recall,
        f1,
        auc_roc: auc_roc(&positive, p_recyclable),
        loss,
        support: n,
        confusion_matrix: c,
        positive_class: POSITIVE_CLASS.into(),
        dataset: serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten fixed predictions, counted by hand:
    /// labels  1 1 1 1 0 0 0 0 0 1
    /// scores .9 .8 .4 .6 .3 .7 .2 .1 .5 .35
    /// predicted positive at >= .5: 1 1 0 1 0 1 0 0 1 0
    /// tp = 3 (.9 .8 .6), fn = 2 (.4 .35), fp = 2 (.7 .5), tn = 3 (.3 .2 .1).
    #[test]
    fn confusion_and_ratios_match_hand_counts() {
        let labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1];
        let scores = [0.9, 0.8, 0.4, 0.6, 0.3, 0.7, 0.2, 0.1, 0.5, 0.35];
        let m = compute(&labels, &scores, 0.25);
        assert_eq!(
            m.confusion_matrix,
            Confusion {
                tp: 3,
                tn: 3,
                fp: 2,
                fn_: 2
            }
        );
        assert_eq!(m.accuracy, 0.6);
        assert_eq!(m.precision, 0.6);
        assert_eq!(m.recall, 0.6);
        assert!((m.f1 - 0.6).abs() < 1e-12);
        assert_eq!(m.support, 10);
        // AUC by pair counting: positives .9 .8 .6 .4 .35 vs negatives .7 .5 .3 .2 .1.
        // .9: 5, .8: 5, .6: 4, .4: 3, .35: 3 wins -> 20 / 25.
        assert_eq!(m.auc_roc, Some(0.8));
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["confusion_matrix"]["fn"], 2);
        assert_eq!(json["positive_class"], "Recyclable");
    }

    #[test]
    fn auc_counts_ties_as_half_and_handles_degenerate_sets() {
        // One positive, one negative, same score: AUC one half.
        assert_eq!(auc_roc(&[true, false], &[0.5, 0.5]), Some(0.5));
        // Positives (.8, .5) vs negatives (.5, .2): wins 2 + 1 + 0.5 (tie) = 3.5 of 4.
        assert_eq!(
            auc_roc(&[true, true, false, false], &[0.8, 0.5, 0.5, 0.2]),
            Some(0.875)
        );
        // Perfectly inverted ranking.
        assert_eq!(auc_roc(&[false, true], &[0.9, 0.1]), Some(0.0));
        assert_eq!(auc_roc(&[true, true], &[0.9, 0.1]), None);
    }

    #[test]
    fn precision_is_zero_not_nan_without_positive_predictions() {
        let m = compute(&[1, 0, 0], &[0.1, 0.2, 0.3], 1.0);
        assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
    }
}
