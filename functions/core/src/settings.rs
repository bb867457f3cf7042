//! The deployed functions' settings, read once per cold start from the environment the stack
//! renders into every function (and `deployer render` shows). The same names on AWS and
//! locally: no code path knows where it runs.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("environment variable {0} is not set; the stack sets it on every function (redeploy with `deployer up`)")]
    Missing(&'static str),
    #[error("environment variable {name} = {value:?} is not valid: {why}")]
    Invalid {
        name: &'static str,
        value: String,
        why: String,
    },
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub app: String,
    pub env: String,
    pub data_bucket: String,
    pub models_table: String,
    pub jobs_table: String,
    pub topic_arn: String,
    pub endpoint_name: String,
    pub endpoint_memory_mb: i32,
    pub endpoint_max_concurrency: i32,
    pub endpoint_variant: String,
    pub sagemaker_role_arn: String,
    pub training_image: String,
    pub primary_metric: String,
    /// A training job's MaxRuntimeInSeconds.
    pub training_max_runtime_s: i32,
    pub hyperparameters: BTreeMap<String, String>,
    /// Where the web app's review page lives, for emails.
    pub review_url: String,
}

impl Settings {
    pub fn prefix(&self) -> String {
        format!("{}-{}", self.app, self.env)
    }

    pub fn from_env() -> Result<Settings, SettingsError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let req = |k: &'static str| {
            get(k)
                .filter(|v| !v.is_empty())
                .ok_or(SettingsError::Missing(k))
        };
        let int = |k: &'static str, default: i32| -> Result<i32, SettingsError> {
            match get(k) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| SettingsError::Invalid {
                    name: k,
                    value: v,
                    why: "not a whole number".into(),
                }),
            }
        };
        let hyperparameters = match get("HYPERPARAMETERS") {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_str(&v).map_err(|e| SettingsError::Invalid {
                name: "HYPERPARAMETERS",
                value: v,
                why: format!("a JSON object of strings is expected ({e})"),
            })?,
        };
        Ok(Settings {
            app: req("APP_NAME")?,
            env: req("APP_ENV")?,
            data_bucket: req("DATA_BUCKET")?,
            models_table: req("MODELS_TABLE")?,
            jobs_table: req("JOBS_TABLE")?,
            topic_arn: req("TOPIC_ARN")?,
            endpoint_name: req("ENDPOINT_NAME")?,
            endpoint_memory_mb: int("ENDPOINT_MEMORY_MB", 2048)?,
            endpoint_max_concurrency: int("ENDPOINT_MAX_CONCURRENCY", 5)?,
            endpoint_variant: get("ENDPOINT_VARIANT").unwrap_or_else(|| "primary".into()),
            sagemaker_role_arn: req("SAGEMAKER_ROLE_ARN")?,
            training_image: get("TRAINING_IMAGE").unwrap_or_default(),
            primary_metric: get("PRIMARY_METRIC").unwrap_or_else(|| "f1".into()),
            training_max_runtime_s: int("TRAINING_MAX_RUNTIME_S", 3600)?,
            hyperparameters,
            review_url: get("REVIEW_URL").unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_settings_name_the_variable() {
        let e = Settings::from_lookup(&|_| None).unwrap_err();
        assert!(e.to_string().contains("APP_NAME is not set"), "{e}");
        let get = |k: &str| match k {
            "ENDPOINT_MEMORY_MB" => Some("lots".to_string()),
            // Valid, so the error is the memory size's (hyperparameters are read first).
            "HYPERPARAMETERS" => Some("{}".to_string()),
            _ => Some("x".to_string()),
        };
        let e = Settings::from_lookup(&get).unwrap_err();
        assert!(e.to_string().contains("ENDPOINT_MEMORY_MB"), "{e}");
    }
}
