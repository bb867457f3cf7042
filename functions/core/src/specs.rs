//! What the pipeline asks SageMaker for, as plain data: names (SageMaker's
//! `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`), the training job, and the serverless endpoint
//! deployment. The handlers turn these into SDK calls; keeping them here makes them testable
//! without a client, and keeps every name derivable (so duplicate events collide on purpose).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// SageMaker's name limit.
pub const NAME_MAX: usize = 63;

/// Makes a valid SageMaker name: only letters, digits and single hyphens, at most 63
/// characters, starting and ending with a letter or digit.
pub fn sagemaker_name(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(NAME_MAX);
    out.trim_end_matches('-').to_string()
}

pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= NAME_MAX
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The training job for a data set push, named from the data set and the trigger object's
/// etag: a duplicate event makes the same name, and SageMaker's ResourceInUse refuses it.
pub fn training_job_name(prefix: &str, dataset: &str, trigger_etag: &str) -> String {
    let digest = Sha256::digest(format!("{dataset}\0{trigger_etag}").as_bytes());
    let hash = hex::encode(&digest[..4]);
    let stamp = dataset
        .rsplit('/')
        .next()
        .unwrap_or(dataset)
        .to_ascii_lowercase();
    // Keep the prefix (the rule filters on it) and the hash (it makes the name unique);
    // shorten the readable middle if needed.
    let room = NAME_MAX.saturating_sub(prefix.len() + 1 + 1 + hash.len());
    let middle: String = sagemaker_name(&stamp).chars().take(room).collect();
    sagemaker_name(&format!("{prefix}-{middle}-{hash}"))
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub name: String,
    pub s3_uri: String,
}

/// A SageMaker CreateTrainingJob request in plain data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainingJobSpec {
    pub name: String,
    pub image: String,
    pub role_arn: String,
    pub channels: Vec<Channel>,
    pub output_path: String,
    /// Every value a string, as SageMaker requires.
    pub hyperparameters: BTreeMap<String, String>,
    pub instance_type: String,
    pub instance_count: i32,
    pub volume_gb: i32,
    pub max_runtime_s: i32,
    pub tags: BTreeMap<String, String>,
    /// (name, regex) pairs SageMaker scrapes from the container's log.
    pub metric_definitions: Vec<(String, String)>,
}

/// Inputs for a training job spec.
#[derive(Debug, Clone)]
pub struct TrainingInputs<'a> {
    pub prefix: &'a str,
    pub app: &'a str,
    pub env: &'a str,
    pub bucket: &'a str,
    pub dataset: &'a str,
    pub trigger_etag: &'a str,
    pub has_validation: bool,
    pub image: &'a str,
    pub role_arn: &'a str,
    pub hyperparameters: &'a BTreeMap<String, String>,
    pub max_runtime_s: i32,
}

pub fn training_job(i: &TrainingInputs<'_>) -> TrainingJobSpec {
    let name = training_job_name(i.prefix, i.dataset, i.trigger_etag);
    let mut channels = vec![Channel {
        name: "train".into(),
        s3_uri: format!("s3://{}/{}/train/", i.bucket, i.dataset),
    }];
    if i.has_validation {
        channels.push(Channel {
            name: "validation".into(),
            s3_uri: format!("s3://{}/{}/validation/", i.bucket, i.dataset),
        });
    }
    let tags = BTreeMap::from([
        ("app".to_string(), i.app.to_string()),
        ("env".to_string(), i.env.to_string()),
        ("model".to_string(), name.clone()),
        ("dataset".to_string(), i.dataset.to_string()),
    ]);
    let metric = |n: &str| (format!("validation:{n}"), format!(r"val_{n}=([0-9.]+)"));
    TrainingJobSpec {
        output_path: format!("s3://{}/training-output/", i.bucket),
        image: i.image.into(),
        role_arn: i.role_arn.into(),
        channels,
        hyperparameters: i.hyperparameters.clone(),
        instance_type: "ml.m5.large".into(),
        instance_count: 1,
        volume_gb: 10,
        max_runtime_s: i.max_runtime_s,
        tags,
        metric_definitions: vec![
            ("train:loss".into(), r"train_loss=([0-9.]+)".into()),
            metric("loss"),
            metric("accuracy"),
            metric("f1"),
            metric("auc"),
        ],
        name,
    }
}

/// The serverless endpoint deployment of one model: a new model and a new config per deploy
/// (SageMaker needs a new config for every update), the same variant name every time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointDeployment {
    pub endpoint: String,
    pub model_name: String,
    pub config_name: String,
    pub variant: String,
    pub image: String,
    pub model_data_url: String,
    pub memory_mb: i32,
    pub max_concurrency: i32,
    /// The container's environment: MODEL_ID is what /invocations reports.
    pub environment: BTreeMap<String, String>,
}

/// The endpoint's settings, declared in the stack and deployer.toml.
#[derive(Debug, Clone)]
pub struct EndpointSettings<'a> {
    pub endpoint: &'a str,
    pub variant: &'a str,
    pub image: &'a str,
    pub memory_mb: i32,
    pub max_concurrency: i32,
}

pub fn endpoint_deployment(
    settings: &EndpointSettings<'_>,
    model_id: &str,
    deployment_id: &str,
    model_data_url: &str,
) -> EndpointDeployment {
    let EndpointSettings {
        endpoint,
        variant,
        image,
        memory_mb,
        max_concurrency,
    } = *settings;
    let suffix = sagemaker_name(deployment_id);
    // One suffix length for both names (room for the longer kind), so a config's model is
    // found by swapping `-cfg-` for `-model-`.
    let name = |kind: &str| {
        let room = NAME_MAX.saturating_sub(endpoint.len() + "model".len() + 2);
        let s: String = suffix
            .chars()
            .rev()
            .take(room)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        sagemaker_name(&format!("{endpoint}-{kind}-{s}"))
    };
    EndpointDeployment {
        endpoint: endpoint.into(),
        model_name: name("model"),
        config_name: name("cfg"),
        variant: variant.into(),
        image: image.into(),
        model_data_url: model_data_url.into(),
        memory_mb,
        max_concurrency,
        environment: BTreeMap::from([("MODEL_ID".to_string(), model_id.to_string())]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_deterministic_and_unique_per_trigger() {
        let a = training_job_name("wastesort-local", "datasets/20261128T120000Z", "\"etag1\"");
        let b = training_job_name("wastesort-local", "datasets/20261128T120000Z", "\"etag1\"");
        let c = training_job_name("wastesort-local", "datasets/20261128T120000Z", "\"etag2\"");
        assert_eq!(a, b, "a duplicate event makes the same job name");
        assert_ne!(a, c, "a new push of the same folder name makes a new job");
        assert!(a.starts_with("wastesort-local-20261128t120000z-"), "{a}");
        assert!(valid_name(&a), "{a}");
        let long = training_job_name(
            &"p".repeat(40),
            &format!("datasets/{}", "x y_z".repeat(20)),
            "e",
        );
        assert!(valid_name(&long) && long.len() <= NAME_MAX, "{long}");
        assert!(long.starts_with(&"p".repeat(40)));
        assert_eq!(sagemaker_name("--a__b--"), "a-b");
    }

    #[test]
    fn training_spec_reads_channels_from_the_dataset_and_tags_everything() {
        let hp = BTreeMap::from([("epochs".to_string(), "3".to_string())]);
        let s = training_job(&TrainingInputs {
            prefix: "wastesort-local",
            app: "wastesort",
            env: "local",
            bucket: "data",
            dataset: "datasets/d1",
            trigger_etag: "e",
            has_validation: true,
            image: "img@sha256:1",
            role_arn: "arn:role",
            hyperparameters: &hp,
            max_runtime_s: 3600,
        });
        assert_eq!(s.channels[0].s3_uri, "s3://data/datasets/d1/train/");
        assert_eq!(s.channels[1].name, "validation");
        assert_eq!(s.output_path, "s3://data/training-output/");
        assert_eq!(s.tags["model"], s.name);
        assert_eq!(s.tags["app"], "wastesort");
        assert!(s
            .metric_definitions
            .iter()
            .all(|(n, r)| n.len() <= 255 && r.len() <= 500));
    }

    #[test]
    fn every_deployment_gets_its_own_config_and_the_same_variant() {
        let s = EndpointSettings {
            endpoint: "wastesort-local-endpoint",
            variant: "primary",
            image: "img",
            memory_mb: 2048,
            max_concurrency: 5,
        };
        let a = endpoint_deployment(&s, "m1", "d-1", "s3://m");
        let b = endpoint_deployment(&s, "m1", "d-2", "s3://m");
        assert_ne!(a.config_name, b.config_name);
        assert_eq!(a.variant, b.variant);
        assert!(
            valid_name(&a.config_name) && valid_name(&a.model_name),
            "{a:?}"
        );
        assert_eq!(a.environment["MODEL_ID"], "m1");
        let long = endpoint_deployment(&s, "m1", &"x".repeat(80), "s3://m");
        assert_eq!(
            long.config_name.replacen("-cfg-", "-model-", 1),
            long.model_name
        );
        assert!(
            valid_name(&long.config_name) && valid_name(&long.model_name),
            "{long:?}"
        );
    }
}
