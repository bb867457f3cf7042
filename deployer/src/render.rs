//! Renders the handlebars CloudFormation sources in `stacks/` into templates, and parses each
//! result back as YAML before anything uses it.
//!
//! Handlebars runs in strict mode (a missing value is an error, never an empty string) with HTML
//! escaping off (a `&` or `"` in a description must reach CloudFormation as written). The YAML
//! parse uses `serde_yaml_ng`, the maintained fork of the archived `serde_yaml`; it keeps
//! CloudFormation's short-form tags (`!Ref`, `!Sub`, `!GetAtt`) as tagged values.

use std::path::{Path, PathBuf};

use handlebars::Handlebars;
use serde::Serialize;
use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use crate::config::{EndpointSettings, Environment};

/// The two stacks, in deployment order.
pub const STACKS: &[StackKind] = &[StackKind::Artifacts, StackKind::App];

/// CloudFormation's limit for an inline `TemplateBody`.
pub const TEMPLATE_BODY_LIMIT: usize = 51_200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StackKind {
    /// The code artifact bucket: created first, removed last.
    Artifacts,
    /// Everything else; its functions' code comes from the artifact bucket.
    App,
}

impl StackKind {
    pub fn source_file(self) -> &'static str {
        match self {
            StackKind::Artifacts => "artifacts.yaml.hbs",
            StackKind::App => "app.yaml.hbs",
        }
    }
    pub fn stem(self) -> &'static str {
        match self {
            StackKind::Artifacts => "artifacts",
            StackKind::App => "app",
        }
    }
    pub fn stack_name(self, env: &Environment) -> String {
        match self {
            StackKind::Artifacts => env.artifacts_stack(),
            StackKind::App => env.app_stack(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read template {path}: {source}; check that the stacks directory is complete (git checkout stacks/)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to render {path}: {message}; fix the template or the setting it names")]
    Template { path: String, message: String },
    #[error("rendered {path} is not valid YAML: {message}; run `deployer render --out DIR` and look at that line")]
    Yaml { path: String, message: String },
    #[error("rendered {path} has no Resources map; a CloudFormation template needs one")]
    NoResources { path: String },
    #[error("rendered {path} is {size} bytes, over CloudFormation's {TEMPLATE_BODY_LIMIT}-byte inline limit; split the stack or shorten it")]
    TooLarge { path: String, size: usize },
}

/// A function as the templates see it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FunctionContext {
    pub name: String,
    pub logical_id: String,
    pub description: String,
    pub architecture: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    /// `functions/<name>/<sha256 hex>.zip` in the artifact bucket.
    pub code_key: String,
    /// Hex SHA-256 of the zip (Lambda reports the base64 form as CodeSha256).
    pub code_sha256: String,
    /// Why a dead-letter queue does not apply, for the security scanner's skip comment.
    pub dlq_reason: String,
}

#[derive(Debug, Clone, Serialize)]
struct Schedule {
    expression: String,
    enabled: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Api {
    stage: String,
    routes_hash: String,
    throttle_rate: u32,
    throttle_burst: u32,
}

/// Everything the templates may use. Serialized into `parameters.json` by `deployer render`.
#[derive(Debug, Clone, Serialize)]
pub struct RenderContext {
    app: String,
    env: String,
    prefix: String,
    stack_name: String,
    log_retention_days: u32,
    notification_email: Option<String>,
    retrain_schedule: Schedule,
    uploads_expire_days: u32,
    image_keep: u32,
    api: Api,
    endpoint: EndpointSettings,
    /// A `!Sub` expression naming the artifacts stack's bucket; the account id and region are
    /// filled in by CloudFormation so rendering needs no AWS call.
    artifact_bucket: String,
    functions: Vec<FunctionContext>,
    training_image: String,
    /// The image names `${AWS::...}` (an ECR image of this account): rendered with `!Sub`.
    training_image_sub: bool,
    primary_metric: String,
    training_max_runtime_s: u32,
    /// The hyperparameters as a JSON object, escaped for a single-quoted YAML string.
    hyperparameters_json: String,
    /// The review page for emails when the web URL is known before deploying (local).
    review_url: Option<String>,
}

/// One rendered, parsed template.
#[derive(Debug, Clone)]
pub struct RenderedStack {
    pub kind: StackKind,
    pub stack_name: String,
    pub body: String,
    /// `(logical id, resource type)` in template order.
    pub resources: Vec<(String, String)>,
    pub context: serde_json::Value,
}

/// The directory of template sources: `$DEPLOYER_STACKS_DIR` or `<root>/stacks`.
pub fn stacks_dir(env: &Environment) -> PathBuf {
    std::env::var_os("DEPLOYER_STACKS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| env.root.join("stacks"))
}

/// Renders one stack.
pub fn render(
    env: &Environment,
    dir: &Path,
    kind: StackKind,
    functions: &[FunctionContext],
) -> Result<RenderedStack, RenderError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);

    let read = |p: PathBuf| {
        std::fs::read_to_string(&p).map_err(|source| RenderError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let tags_path = dir.join("tags.hbs");
    let tags = read(tags_path.clone())?;
    hb.register_partial("tags", &tags)
        .map_err(|e| RenderError::Template {
            path: tags_path.display().to_string(),
            message: one_line(&e.to_string()),
        })?;
    let src_path = dir.join(kind.source_file());
    let src = read(src_path.clone())?;
    let shown = src_path.display().to_string();

    let prefix = env.prefix();
    let stack_name = kind.stack_name(env);
    let ctx = RenderContext {
        app: env.app.clone(),
        env: env.name.clone(),
        prefix: prefix.clone(),
        stack_name: stack_name.clone(),
        log_retention_days: env.log_retention_days,
        notification_email: env.notification_email.clone(),
        retrain_schedule: Schedule {
            expression: env.retrain_schedule.clone(),
            enabled: env.retrain_schedule_enabled,
        },
        uploads_expire_days: env.uploads_expire_days,
        image_keep: env.image_keep,
        api: Api {
            stage: env.api_stage.clone(),
            routes_hash: routes_hash(&src, functions),
            throttle_rate: env.api_throttle.rate,
            throttle_burst: env.api_throttle.burst,
        },
        endpoint: env.endpoint.clone(),
        artifact_bucket: format!(
            "!Sub \"{prefix}-artifacts-${{AWS::AccountId}}-${{AWS::Region}}\""
        ),
        functions: functions.to_vec(),
        training_image: env.training_image.clone(),
        training_image_sub: env.training_image.contains("${AWS::"),
        primary_metric: env.primary_metric.clone(),
        training_max_runtime_s: env.training_max_runtime_s,
        hyperparameters_json: serde_json::to_string(&env.hyperparameters)
            .unwrap_or_else(|_| "{}".into())
            .replace('\'', "''"),
        review_url: env.web_url.as_ref().map(|w| format!("{w}#/review")),
    };
    let body = hb
        .render_template(&src, &ctx)
        .map_err(|e| RenderError::Template {
            path: shown.clone(),
            message: one_line(&e.to_string()),
        })?;
    if body.len() > TEMPLATE_BODY_LIMIT {
        return Err(RenderError::TooLarge {
            path: shown,
            size: body.len(),
        });
    }
    let resources = parse_resources(&body, &shown)?;
    Ok(RenderedStack {
        kind,
        stack_name,
        body,
        resources,
        context: serde_json::to_value(&ctx).unwrap_or(serde_json::Value::Null),
    })
}

/// Parses a rendered template and lists its resources.
pub fn parse_resources(body: &str, shown: &str) -> Result<Vec<(String, String)>, RenderError> {
    let doc: Value = serde_yaml_ng::from_str(body).map_err(|e| RenderError::Yaml {
        path: shown.to_string(),
        message: one_line(&e.to_string()),
    })?;
    let Some(Value::Mapping(resources)) = doc.get("Resources") else {
        return Err(RenderError::NoResources {
            path: shown.to_string(),
        });
    };
    Ok(resources
        .iter()
        .map(|(k, v)| {
            let id = k.as_str().unwrap_or_default().to_string();
            let ty = v
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            (id, ty)
        })
        .collect())
}

/// A short hash naming the API deployment: it changes whenever the template or the set of
/// functions changes, so API Gateway gets a fresh deployment of the routes.
fn routes_hash(src: &str, functions: &[FunctionContext]) -> String {
    let mut h = Sha256::new();
    h.update(src.as_bytes());
    for f in functions {
        h.update(f.name.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
