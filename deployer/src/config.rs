//! `deployer.toml`: named environments and the precedence rules that turn the file, the
//! `DEPLOYER_*` environment variables and command-line flags into one resolved [`Environment`].
//!
//! Precedence, lowest first: built-in defaults < `[defaults]` in the file < `[environments.E]`
//! in the file < `DEPLOYER_*` variables < flags. The file is found by walking up from the
//! working directory (like Cargo finds `Cargo.toml`) unless `DEPLOYER_CONFIG` or `--config`
//! names it; its directory is the project root (stacks, functions, the tool venv).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file name searched for.
pub const CONFIG_FILE: &str = "deployer.toml";

/// Everything that can go wrong reading the configuration. Each message names the problem and
/// the fix, because it is shown to the user as it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no {CONFIG_FILE} found in {start} or any parent; run deployer from the project checkout or pass --config PATH")]
    NotFound { start: String },
    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}; fix that line (see the comments in the project's deployer.toml)")]
    Parse { path: String, message: String },
    #[error("unknown environment '{name}' ({path} defines: {known}); pass --env with one of them or add [environments.{name}] to the file")]
    UnknownEnvironment {
        name: String,
        path: String,
        known: String,
    },
    #[error("invalid setting {key} = {value:?}: {why}")]
    Invalid {
        key: String,
        value: String,
        why: String,
    },
}

/// Where an environment deploys to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The local emulator the deployer starts and stops itself.
    Local,
    /// A real AWS account, reached through the standard credential chain.
    Aws,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Local => "local",
            Target::Aws => "aws",
        })
    }
}

/// Lambda CPU architecture. Each gets its own cargo-lambda output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[serde(rename = "x86_64")]
    X86_64,
    Arm64,
}

impl Architecture {
    /// The name CloudFormation and Lambda use.
    pub fn as_lambda(self) -> &'static str {
        match self {
            Architecture::X86_64 => "x86_64",
            Architecture::Arm64 => "arm64",
        }
    }
}

/// API Gateway stage throttling: steady requests per second and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApiThrottle {
    pub rate: u32,
    pub burst: u32,
}

/// Settings of the SageMaker serverless endpoint the pipeline creates at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointSettings {
    pub name: String,
    pub memory_mb: u32,
    pub max_concurrency: u32,
    pub variant: String,
}

/// One layer of settings as written in the file; every field optional so layers can merge.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub target: Option<Target>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub emulator_port: Option<u16>,
    pub architecture: Option<Architecture>,
    pub log_retention_days: Option<u32>,
    pub notification_email: Option<String>,
    pub retrain_schedule: Option<String>,
    pub retrain_schedule_enabled: Option<bool>,
    pub uploads_expire_days: Option<u32>,
    pub api_stage: Option<String>,
    pub api_throttle_rate: Option<u32>,
    pub api_throttle_burst: Option<u32>,
    pub image_keep: Option<u32>,
    pub endpoint_memory_mb: Option<u32>,
    pub endpoint_max_concurrency: Option<u32>,
    pub endpoint_variant: Option<String>,
    pub training_image: Option<String>,
    pub primary_metric: Option<String>,
    pub training_max_runtime_s: Option<u32>,
    pub hyperparameters: Option<BTreeMap<String, String>>,
}

impl Layer {
    fn merge(&mut self, over: Layer) {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f; } )* };
        }
        take!(
            target,
            region,
            profile,
            endpoint_url,
            emulator_port,
            architecture,
            log_retention_days,
            notification_email,
            retrain_schedule,
            retrain_schedule_enabled,
            uploads_expire_days,
            api_stage,
            api_throttle_rate,
            api_throttle_burst,
            image_keep,
            endpoint_memory_mb,
            endpoint_max_concurrency,
            endpoint_variant,
            training_image,
            primary_metric,
            training_max_runtime_s,
            hyperparameters
        );
    }

    /// The `DEPLOYER_<FIELD>` layer. Read through a lookup function so tests need not touch
    /// the process environment.
    fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Layer, ConfigError> {
        fn parse<T: std::str::FromStr>(
            key: &str,
            v: Option<String>,
        ) -> Result<Option<T>, ConfigError> {
            match v {
                None => Ok(None),
                Some(s) => s
                    .trim()
                    .parse::<T>()
                    .map(Some)
                    .map_err(|_| ConfigError::Invalid {
                        key: key.to_string(),
                        value: s,
                        why: "not a valid value for this setting".into(),
                    }),
            }
        }
        let target = match get("DEPLOYER_TARGET") {
            None => None,
            Some(t) => Some(match t.as_str() {
                "local" => Target::Local,
                "aws" => Target::Aws,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "DEPLOYER_TARGET".into(),
                        value: t,
                        why: "use local or aws".into(),
                    })
                }
            }),
        };
        let architecture = match get("DEPLOYER_ARCHITECTURE") {
            None => None,
            Some(a) => Some(match a.as_str() {
                "x86_64" => Architecture::X86_64,
                "arm64" => Architecture::Arm64,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "DEPLOYER_ARCHITECTURE".into(),
                        value: a,
                        why: "use x86_64 or arm64".into(),
                    })
                }
            }),
        };
        Ok(Layer {
            target,
            region: get("DEPLOYER_REGION"),
            profile: get("DEPLOYER_PROFILE"),
            endpoint_url: get("DEPLOYER_ENDPOINT_URL"),
            emulator_port: parse("DEPLOYER_EMULATOR_PORT", get("DEPLOYER_EMULATOR_PORT"))?,
            architecture,
            log_retention_days: parse(
                "DEPLOYER_LOG_RETENTION_DAYS",
                get("DEPLOYER_LOG_RETENTION_DAYS"),
            )?,
            notification_email: get("DEPLOYER_NOTIFICATION_EMAIL"),
            retrain_schedule: get("DEPLOYER_RETRAIN_SCHEDULE"),
            retrain_schedule_enabled: parse(
                "DEPLOYER_RETRAIN_SCHEDULE_ENABLED",
                get("DEPLOYER_RETRAIN_SCHEDULE_ENABLED"),
            )?,
            uploads_expire_days: parse(
                "DEPLOYER_UPLOADS_EXPIRE_DAYS",
                get("DEPLOYER_UPLOADS_EXPIRE_DAYS"),
            )?,
            api_stage: get("DEPLOYER_API_STAGE"),
            api_throttle_rate: parse(
                "DEPLOYER_API_THROTTLE_RATE",
                get("DEPLOYER_API_THROTTLE_RATE"),
            )?,
            api_throttle_burst: parse(
                "DEPLOYER_API_THROTTLE_BURST",
                get("DEPLOYER_API_THROTTLE_BURST"),
            )?,
            image_keep: parse("DEPLOYER_IMAGE_KEEP", get("DEPLOYER_IMAGE_KEEP"))?,
            endpoint_memory_mb: parse(
                "DEPLOYER_ENDPOINT_MEMORY_MB",
                get("DEPLOYER_ENDPOINT_MEMORY_MB"),
            )?,
            endpoint_max_concurrency: parse(
                "DEPLOYER_ENDPOINT_MAX_CONCURRENCY",
                get("DEPLOYER_ENDPOINT_MAX_CONCURRENCY"),
            )?,
            endpoint_variant: get("DEPLOYER_ENDPOINT_VARIANT"),
            training_image: get("DEPLOYER_TRAINING_IMAGE"),
            primary_metric: get("DEPLOYER_PRIMARY_METRIC"),
            training_max_runtime_s: parse(
                "DEPLOYER_TRAINING_MAX_RUNTIME_S",
                get("DEPLOYER_TRAINING_MAX_RUNTIME_S"),
            )?,
            // A JSON object of strings, as the functions' HYPERPARAMETERS variable holds.
            hyperparameters: match get("DEPLOYER_HYPERPARAMETERS") {
                None => None,
                Some(v) => Some(serde_json::from_str(&v).map_err(|e| ConfigError::Invalid {
                    key: "DEPLOYER_HYPERPARAMETERS".into(),
                    value: v.clone(),
                    why: format!(
                        "a JSON object of strings is expected, e.g. {{\"epochs\": \"3\"}} ({e})"
                    ),
                })?),
            },
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    app: String,
    #[serde(default)]
    default_environment: Option<String>,
    #[serde(default)]
    defaults: Layer,
    #[serde(default)]
    environments: BTreeMap<String, Layer>,
}

/// Flags that override the file and the environment variables.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub env: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
}

/// One environment with every setting resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub app: String,
    pub name: String,
    pub target: Target,
    /// `None` only for `aws` targets whose region comes from the standard chain (profile or
    /// `AWS_REGION`); resolved, or refused, when clients are built.
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub emulator_port: Option<u16>,
    pub architecture: Architecture,
    pub log_retention_days: u32,
    pub notification_email: Option<String>,
    pub retrain_schedule: String,
    pub retrain_schedule_enabled: bool,
    pub uploads_expire_days: u32,
    pub api_stage: String,
    /// The stage's steady request rate per second and burst: API Gateway answers 429 above
    /// them, so a leaked URL or a runaway client cannot run up the bill.
    pub api_throttle: ApiThrottle,
    /// How many model images the ECR repository keeps (its lifecycle policy expires older ones;
    /// a model still deployed must be among them to be rolled back to).
    pub image_keep: u32,
    pub endpoint: EndpointSettings,
    /// The model container image for training jobs and endpoints.
    pub training_image: String,
    /// The metric that decides whether a staged model is better (accuracy, precision, recall,
    /// f1, auc_roc or loss).
    pub primary_metric: String,
    /// A training job's time limit (SageMaker's MaxRuntimeInSeconds): a job still running then
    /// is stopped and fails, so a runaway job cannot run up the bill.
    pub training_max_runtime_s: u32,
    /// Training hyperparameters (all strings, as SageMaker passes them).
    pub hyperparameters: BTreeMap<String, String>,
    /// The directory holding `deployer.toml`: stacks/, functions/ and .venv/ live there.
    pub root: PathBuf,
    /// `.deployer/<env>/` under the root, or `$DEPLOYER_STATE_DIR/<env>/`.
    pub state_dir: PathBuf,
    /// The web app's URL when it is known before deploying (the local gateway's port); emails
    /// link to its review page. `None`: the stack derives it from the REST API.
    pub web_url: Option<String>,
}

impl Environment {
    /// `<app>-<env>`: every resource name starts with it, and the audit searches for it.
    pub fn prefix(&self) -> String {
        format!("{}-{}", self.app, self.name)
    }
    pub fn artifacts_stack(&self) -> String {
        format!("{}-artifacts", self.prefix())
    }
    pub fn app_stack(&self) -> String {
        format!("{}-app", self.prefix())
    }
}

/// Retention values CloudFormation accepts for `AWS::Logs::LogGroup`.
const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// SageMaker serverless memory sizes (aws-contracts.md).
pub const SERVERLESS_MEMORY_MB: &[u32] = &[1024, 2048, 3072, 4096, 5120, 6144];

/// Finds `deployer.toml` from `start` upwards.
pub fn find_config(start: &Path) -> Result<PathBuf, ConfigError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(CONFIG_FILE);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(ConfigError::NotFound {
        start: start.display().to_string(),
    })
}

/// Reads and resolves one environment. `get_env` is the process environment in production.
pub fn load(
    path: &Path,
    overrides: &Overrides,
    get_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Environment, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    resolve(&text, path, overrides, get_env)
}

/// Resolves an environment from the file's text (split from [`load`] for tests).
pub fn resolve(
    text: &str,
    path: &Path,
    overrides: &Overrides,
    get_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Environment, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.display().to_string(),
        message: one_line(&e.to_string()),
    })?;
    validate_name("app", &file.app, 20)?;

    let name = overrides
        .env
        .clone()
        .or_else(|| get_env("DEPLOYER_ENV"))
        .or(file.default_environment.clone())
        .unwrap_or_else(|| "local".to_string());
    let Some(env_layer) = file.environments.get(&name).cloned() else {
        return Err(ConfigError::UnknownEnvironment {
            known: if file.environments.is_empty() {
                "none".into()
            } else {
                file.environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            name,
            path: path.display().to_string(),
        });
    };
    validate_name("environment name", &name, 12)?;

    let mut layer = file.defaults.clone();
    layer.merge(env_layer);
    layer.merge(Layer::from_env(get_env)?);
    layer.merge(Layer {
        region: overrides.region.clone(),
        profile: overrides.profile.clone(),
        ..Layer::default()
    });

    let target = layer.target.ok_or_else(|| ConfigError::Invalid {
        key: format!("environments.{name}.target"),
        value: String::new(),
        why: "every environment needs target = \"local\" or \"aws\"".into(),
    })?;
    let region = match (target, layer.region) {
        // The emulator accepts any region; us-east-1 keeps ARNs familiar.
        (Target::Local, r) => Some(r.unwrap_or_else(|| "us-east-1".into())),
        (Target::Aws, r) => r,
    };
    let log_retention_days = layer.log_retention_days.unwrap_or(14);
    if !RETENTION_DAYS.contains(&log_retention_days) {
        return Err(ConfigError::Invalid {
            key: "log_retention_days".into(),
            value: log_retention_days.to_string(),
            why: format!("CloudWatch Logs accepts only {RETENTION_DAYS:?}"),
        });
    }
    let endpoint_memory_mb = layer.endpoint_memory_mb.unwrap_or(2048);
    if !SERVERLESS_MEMORY_MB.contains(&endpoint_memory_mb) {
        return Err(ConfigError::Invalid {
            key: "endpoint_memory_mb".into(),
            value: endpoint_memory_mb.to_string(),
            why: format!("SageMaker serverless endpoints accept only {SERVERLESS_MEMORY_MB:?}"),
        });
    }
    let endpoint_max_concurrency = layer.endpoint_max_concurrency.unwrap_or(5);
    if !(1..=200).contains(&endpoint_max_concurrency) {
        return Err(ConfigError::Invalid {
            key: "endpoint_max_concurrency".into(),
            value: endpoint_max_concurrency.to_string(),
            why: "SageMaker serverless endpoints accept 1 to 200".into(),
        });
    }
    if let Some(email) = &layer.notification_email {
        if !email.is_empty() && !looks_like_email(email) {
            return Err(ConfigError::Invalid {
                key: "notification_email".into(),
                value: email.clone(),
                why: "not an email address; write name@example.com or remove the setting".into(),
            });
        }
    }
    let retrain_schedule = layer
        .retrain_schedule
        .unwrap_or_else(|| "rate(7 days)".into());
    if !(retrain_schedule.starts_with("rate(") || retrain_schedule.starts_with("cron("))
        || !retrain_schedule.ends_with(')')
    {
        return Err(ConfigError::Invalid {
            key: "retrain_schedule".into(),
            value: retrain_schedule,
            why: "EventBridge needs rate(...) or cron(...), e.g. rate(7 days)".into(),
        });
    }
    let api_stage = layer.api_stage.unwrap_or_else(|| "v1".into());
    if api_stage.is_empty()
        || !api_stage
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ConfigError::Invalid {
            key: "api_stage".into(),
            value: api_stage,
            why: "API Gateway stage names use letters, digits and _".into(),
        });
    }
    // API Gateway's account-level defaults are 10,000 requests per second and a burst of
    // 5,000; a stage limit above them would never apply.
    let api_throttle = ApiThrottle {
        rate: layer.api_throttle_rate.unwrap_or(25),
        burst: layer.api_throttle_burst.unwrap_or(50),
    };
    if !(1..=10_000).contains(&api_throttle.rate) {
        return Err(ConfigError::Invalid {
            key: "api_throttle_rate".into(),
            value: api_throttle.rate.to_string(),
            why: "requests per second, 1 to 10000 (API Gateway's account limit)".into(),
        });
    }
    if !(1..=5_000).contains(&api_throttle.burst)
        || api_throttle.burst < api_throttle.rate.min(5_000)
    {
        return Err(ConfigError::Invalid {
            key: "api_throttle_burst".into(),
            value: api_throttle.burst.to_string(),
            why: format!(
                "1 to 5000 (API Gateway's account limit) and at least api_throttle_rate ({})",
                api_throttle.rate.min(5_000)
            ),
        });
    }

    let image_keep = layer.image_keep.unwrap_or(20);
    if !(1..=1000).contains(&image_keep) {
        return Err(ConfigError::Invalid {
            key: "image_keep".into(),
            value: image_keep.to_string(),
            why: "how many model images ECR keeps: 1 to 1000".into(),
        });
    }

    let primary_metric = layer.primary_metric.unwrap_or_else(|| "f1".into());
    if !["accuracy", "precision", "recall", "f1", "auc_roc", "loss"]
        .contains(&primary_metric.as_str())
    {
        return Err(ConfigError::Invalid {
            key: "primary_metric".into(),
            value: primary_metric,
            why: "use one of accuracy, precision, recall, f1, auc_roc, loss".into(),
        });
    }
    // SageMaker accepts 1 s to 28 days.
    let training_max_runtime_s = layer.training_max_runtime_s.unwrap_or(3600);
    if !(1..=2_419_200).contains(&training_max_runtime_s) {
        return Err(ConfigError::Invalid {
            key: "training_max_runtime_s".into(),
            value: training_max_runtime_s.to_string(),
            why: "a training job's time limit in seconds: 1 to 2419200 (28 days, SageMaker's maximum)".into(),
        });
    }
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let root = if root.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        root
    };
    let state_base = get_env("DEPLOYER_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".deployer"));
    let prefix = format!("{}-{}", file.app, name);
    Ok(Environment {
        web_url: None,
        state_dir: state_base.join(&name),
        endpoint: EndpointSettings {
            name: format!("{prefix}-endpoint"),
            memory_mb: endpoint_memory_mb,
            max_concurrency: endpoint_max_concurrency,
            variant: layer.endpoint_variant.unwrap_or_else(|| "primary".into()),
        },
        training_image: layer.training_image.unwrap_or_else(|| match target {
            // The local runtime runs the model binary it builds; issue "local cloud" pins it
            // by hash.
            Target::Local => "local://waste-model".into(),
            Target::Aws => String::new(),
        }),
        primary_metric,
        training_max_runtime_s,
        hyperparameters: layer.hyperparameters.unwrap_or_default(),
        app: file.app,
        name,
        target,
        region,
        profile: layer.profile,
        endpoint_url: layer.endpoint_url,
        emulator_port: layer.emulator_port,
        architecture: layer.architecture.unwrap_or(Architecture::X86_64),
        log_retention_days,
        notification_email: layer.notification_email.filter(|e| !e.is_empty()),
        retrain_schedule,
        retrain_schedule_enabled: layer.retrain_schedule_enabled.unwrap_or(false),
        uploads_expire_days: layer.uploads_expire_days.unwrap_or(30),
        api_stage,
        api_throttle,
        image_keep,
        root,
    })
}

/// Names end up in bucket names (lowercase, digits, hyphens, 63 characters in all).
fn validate_name(what: &str, value: &str, max: usize) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: what.into(),
            value: value.into(),
            why: format!(
                "use 1 to {max} lowercase letters, digits or inner hyphens (it becomes part of S3 bucket names)"
            ),
        })
    }
}

/// A deliberately simple check: one @, something before it, a dot in the domain.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
app = "wastesort"
[defaults]
log_retention_days = 30
[environments.local]
target = "local"
[environments.aws]
target = "aws"
region = "eu-west-1"
profile = "ml"
log_retention_days = 90
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn local_is_the_default_and_gets_a_region() {
        let e = resolve(
            FILE,
            Path::new("/p/deployer.toml"),
            &Overrides::default(),
            &no_env,
        )
        .unwrap();
        assert_eq!(e.name, "local");
        assert_eq!(e.target, Target::Local);
        assert_eq!(e.region.as_deref(), Some("us-east-1"));
        assert_eq!(e.log_retention_days, 30, "[defaults] applies");
        assert_eq!(e.prefix(), "wastesort-local");
        assert_eq!(e.state_dir, PathBuf::from("/p/.deployer/local"));
    }

    #[test]
    fn precedence_file_then_env_then_flags() {
        let env = |k: &str| match k {
            "DEPLOYER_ENV" => Some("aws".to_string()),
            "DEPLOYER_REGION" => Some("us-west-2".to_string()),
            "DEPLOYER_LOG_RETENTION_DAYS" => Some("7".to_string()),
            "DEPLOYER_STATE_DIR" => Some("/tmp/s".to_string()),
            _ => None,
        };
        let e = resolve(
            FILE,
            Path::new("deployer.toml"),
            &Overrides::default(),
            &env,
        )
        .unwrap();
        assert_eq!(e.name, "aws");
        assert_eq!(e.region.as_deref(), Some("us-west-2"), "env beats file");
        assert_eq!(e.log_retention_days, 7);
        assert_eq!(e.profile.as_deref(), Some("ml"));
        assert_eq!(e.state_dir, PathBuf::from("/tmp/s/aws"));
        let flags = Overrides {
            env: Some("aws".into()),
            region: Some("ap-south-1".into()),
            profile: None,
        };
        let e = resolve(FILE, Path::new("deployer.toml"), &flags, &env).unwrap();
        assert_eq!(e.region.as_deref(), Some("ap-south-1"), "flag beats env");
    }

    #[test]
    fn unknown_environment_names_the_known_ones() {
        let o = Overrides {
            env: Some("prod".into()),
            ..Default::default()
        };
        let err = resolve(FILE, Path::new("deployer.toml"), &o, &no_env).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown environment 'prod'"), "{msg}");
        assert!(msg.contains("aws, local"), "{msg}");
        assert!(msg.contains("[environments.prod]"), "{msg}");
    }

    #[test]
    fn malformed_file_and_bad_values_are_named() {
        let err = resolve(
            "app = ",
            Path::new("d.toml"),
            &Overrides::default(),
            &no_env,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("d.toml is not valid"), "{err}");
        let err = resolve(
            "app = \"x\"\n[environments.local]\ntarget = \"local\"\nretention = 3\n",
            Path::new("d.toml"),
            &Overrides::default(),
            &no_env,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("retention"),
            "unknown keys are refused: {err}"
        );
        let bad =
            "app = \"x\"\n[environments.local]\ntarget = \"local\"\nendpoint_memory_mb = 1000\n";
        let err = resolve(bad, Path::new("d.toml"), &Overrides::default(), &no_env).unwrap_err();
        assert!(err.to_string().contains("1024, 2048"), "{err}");
        let bad =
            "app = \"x\"\n[environments.local]\ntarget = \"local\"\ntraining_max_runtime_s = 0\n";
        let err = resolve(bad, Path::new("d.toml"), &Overrides::default(), &no_env).unwrap_err();
        assert!(
            err.to_string().contains("training_max_runtime_s")
                && err.to_string().contains("28 days"),
            "{err}"
        );
        let bad = "app = \"Waste_Sort\"\n[environments.local]\ntarget = \"local\"\n";
        let err = resolve(bad, Path::new("d.toml"), &Overrides::default(), &no_env).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }

    #[test]
    fn emails() {
        assert!(looks_like_email("a@b.co"));
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.co"] {
            assert!(!looks_like_email(bad), "{bad}");
        }
    }
}
