//! The pipeline's emails: a subject within SNS's limit (at most 100 printable ASCII characters,
//! no line breaks) and a plain-text body with a fixed-width table, readable in any mail client.

use crate::metrics::Comparison;

/// SNS rejects subjects over 100 characters.
pub const SUBJECT_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub subject: String,
    pub body: String,
}

/// Makes a subject SNS accepts: printable ASCII only, one line, at most 100 characters.
pub fn subject(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.len() <= SUBJECT_LIMIT {
        clean
    } else {
        format!("{}...", &clean[..SUBJECT_LIMIT - 3])
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

fn signed(v: Option<f64>) -> String {
    v.map(|v| format!("{v:+.4}")).unwrap_or_else(|| "-".into())
}

/// "A model is staged": the comparison with the deployed model and how to decide.
pub fn staged(
    app_env: &str,
    model_id: &str,
    dataset: &str,
    c: &Comparison,
    review_url: &str,
) -> Email {
    let primary = c.rows.iter().find(|r| r.metric == c.primary_metric);
    let headline = match primary {
        Some(r) => match r.delta {
            Some(d) => format!("{} {:.3} ({:+.3} vs deployed)", r.metric, r.staged, d),
            None => format!("{} {:.3} (nothing deployed yet)", r.metric, r.staged),
        },
        None => String::new(),
    };
    let mut body = format!(
        "A new model is staged and waits for review.\n\nModel:    {model_id}\nData set: {dataset}\n\n{:<10} {:>9} {:>9} {:>9}  {}\n",
        "metric", "staged", "deployed", "delta", "better"
    );
    for r in &c.rows {
        body.push_str(&format!(
            "{:<10} {:>9} {:>9} {:>9}  {}\n",
            r.metric,
            fmt(Some(r.staged)),
            fmt(r.deployed),
            signed(r.delta),
            match r.better {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            }
        ));
    }
    body.push_str(&format!(
        "\nOn the primary metric ({}) the staged model is {}.\nAccept or reject it: {review_url}\n",
        c.primary_metric,
        if c.staged_is_better {
            "better"
        } else {
            "not better"
        }
    ));
    Email {
        subject: subject(&format!("[{app_env}] Model {model_id} staged: {headline}")),
        body,
    }
}

pub fn training_failed(app_env: &str, job: &str, dataset: &str, reason: &str) -> Email {
    Email {
        subject: subject(&format!("[{app_env}] Training {job} failed")),
        body: format!(
            "Training job {job} on {dataset} failed.\n\nReason: {reason}\n\nThe deployed model is unchanged.\n"
        ),
    }
}

pub fn deployed(app_env: &str, model_id: &str, endpoint: &str, config: &str) -> Email {
    Email {
        subject: subject(&format!("[{app_env}] Model {model_id} is InService")),
        body: format!(
            "Model {model_id} now serves on endpoint {endpoint} (config {config}).\nThe previous model stays available for rollback.\n"
        ),
    }
}

pub fn deploy_failed(app_env: &str, model_id: &str, endpoint: &str, reason: &str) -> Email {
    Email {
        subject: subject(&format!("[{app_env}] Deploying model {model_id} failed")),
        body: format!(
            "Deploying model {model_id} to {endpoint} failed; the previous model keeps serving.\n\nReason: {reason}\n\nThe model is marked deploy_failed; it can be accepted again.\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{compare, sample};

    #[test]
    fn subjects_fit_sns() {
        let long = format!("[wastesort local] {}\nsecond line\t é", "x".repeat(200));
        let s = subject(&long);
        assert!(s.len() <= SUBJECT_LIMIT);
        assert!(s.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        assert!(s.ends_with("..."));
    }

    #[test]
    fn staged_email_has_a_table_and_a_verdict() {
        let c = compare(
            &sample(0.85, 0.80, 0.3),
            Some(&sample(0.8, 0.82, 0.35)),
            "f1",
        );
        let e = staged(
            "wastesort local",
            "m-1",
            "datasets/2026",
            &c,
            "https://x/review",
        );
        assert!(
            e.subject
                .starts_with("[wastesort local] Model m-1 staged: f1 0.800 (-0.020 vs deployed)"),
            "{}",
            e.subject
        );
        assert!(
            e.body
                .contains("accuracy      0.8500    0.8000   +0.0500  yes"),
            "{}",
            e.body
        );
        assert!(e.body.contains("the staged model is not better"));
        assert!(e.body.contains("https://x/review"));
    }
}
