//! Builds the AWS SDK clients for an environment. Local environments point every client at the
//! emulator's endpoints (from `endpoints.json`) with fixed dummy credentials, so a user's real
//! credentials are never sent to a local port; `aws` environments use the standard chain
//! (profiles, SSO, credential_process, env) and honour `AWS_ENDPOINT_URL*`. A region is never
//! guessed: it comes from the settings or the standard chain, or the command stops.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;

use crate::config::{Environment, Target};
use crate::state::Endpoints;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    #[error("no region for environment '{env}'; set region in deployer.toml, DEPLOYER_REGION, --region or AWS_REGION")]
    NoRegion { env: String },
    #[error("no AWS credentials for environment '{env}'{profile}: {reason}; run `aws sso login{sso_profile}` or `aws configure`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    NoCredentials {
        env: String,
        profile: String,
        sso_profile: String,
        reason: String,
    },
    #[error("cannot identify the account (sts:GetCallerIdentity failed: {reason}); check the credentials and the endpoint")]
    Identity { reason: String },
}

/// Every client the deployer uses, built once per command.
#[derive(Debug, Clone)]
pub struct Clients {
    pub region: String,
    /// The endpoint override in force, if any (shown before any change).
    pub endpoint: Option<String>,
    pub cfn: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub iam: aws_sdk_iam::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sns: aws_sdk_sns::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub apigateway: aws_sdk_apigateway::Client,
    pub sagemaker: aws_sdk_sagemaker::Client,
    pub kms: aws_sdk_kms::Client,
    pub ecr: aws_sdk_ecr::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub sts: aws_sdk_sts::Client,
    pub cognito: aws_sdk_cognitoidentityprovider::Client,
}

/// Loads the SDK configuration for the environment. `endpoints` is the local emulator's map,
/// present only for local targets.
pub async fn sdk_config(
    env: &Environment,
    endpoints: Option<&Endpoints>,
) -> Result<SdkConfig, AwsError> {
    match env.target {
        Target::Local => {
            let endpoints = endpoints.cloned().unwrap_or_default();
            let region = env.region.clone().unwrap_or_else(|| "us-east-1".into());
            Ok(aws_config::defaults(BehaviorVersion::latest())
                .region(Region::new(region))
                .credentials_provider(Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "local-emulator",
                ))
                .endpoint_url(endpoints.default)
                .load()
                .await)
        }
        Target::Aws => {
            let mut loader = aws_config::defaults(BehaviorVersion::latest());
            if let Some(p) = &env.profile {
                loader = loader.profile_name(p);
            }
            if let Some(r) = &env.region {
                loader = loader.region(Region::new(r.clone()));
            }
            if let Some(u) = &env.endpoint_url {
                loader = loader.endpoint_url(u);
            }
            let cfg = loader.load().await;
            if cfg.region().is_none() {
                return Err(AwsError::NoRegion {
                    env: env.name.clone(),
                });
            }
            check_credentials(env, &cfg).await?;
            Ok(cfg)
        }
    }
}

/// Resolves credentials once, before any change, so a missing login fails fast and clearly.
async fn check_credentials(env: &Environment, cfg: &SdkConfig) -> Result<(), AwsError> {
    let (profile, sso_profile) = match &env.profile {
        Some(p) => (format!(" (profile '{p}')"), format!(" --profile {p}")),
        None => (String::new(), String::new()),
    };
    let err = |reason: String| AwsError::NoCredentials {
        env: env.name.clone(),
        profile: profile.clone(),
        sso_profile: sso_profile.clone(),
        reason,
    };
    let provider = cfg
        .credentials_provider()
        .ok_or_else(|| err("no credential provider configured".into()))?;
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| err(error_chain(&e)))
}

/// Builds every client from one SDK config. S3 uses path-style addressing against an emulator.
pub fn clients(env: &Environment, cfg: &SdkConfig, endpoints: Option<&Endpoints>) -> Clients {
    let local = env.target == Target::Local;
    let s3_conf = {
        let mut b = aws_sdk_s3::config::Builder::from(cfg);
        if let Some(e) = endpoints {
            b = b.endpoint_url(e.for_service("s3"));
        }
        if local || env.endpoint_url.is_some() {
            b = b.force_path_style(true);
        }
        b.build()
    };
    macro_rules! client {
        ($krate:ident, $id:literal) => {{
            let mut b = $krate::config::Builder::from(cfg);
            if let Some(e) = endpoints {
                b = b.endpoint_url(e.for_service($id));
            }
            $krate::Client::from_conf(b.build())
        }};
    }
    Clients {
        region: cfg.region().map(|r| r.to_string()).unwrap_or_default(),
        endpoint: endpoints
            .map(|e| e.default.clone())
            .or_else(|| env.endpoint_url.clone())
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()),
        cfn: client!(aws_sdk_cloudformation, "cloudformation"),
        s3: aws_sdk_s3::Client::from_conf(s3_conf),
        lambda: client!(aws_sdk_lambda, "lambda"),
        iam: client!(aws_sdk_iam, "iam"),
        dynamodb: client!(aws_sdk_dynamodb, "dynamodb"),
        sns: client!(aws_sdk_sns, "sns"),
        events: client!(aws_sdk_eventbridge, "eventbridge"),
        apigateway: client!(aws_sdk_apigateway, "apigateway"),
        sagemaker: client!(aws_sdk_sagemaker, "sagemaker"),
        kms: client!(aws_sdk_kms, "kms"),
        ecr: client!(aws_sdk_ecr, "ecr"),
        logs: client!(aws_sdk_cloudwatchlogs, "logs"),
        sts: client!(aws_sdk_sts, "sts"),
        cognito: client!(aws_sdk_cognitoidentityprovider, "cognito-idp"),
    }
}

/// The account id behind the credentials.
pub async fn account_id(c: &Clients) -> Result<String, AwsError> {
    c.sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| AwsError::Identity {
            reason: describe_err(&e),
        })
        .map(|o| o.account().unwrap_or_default().to_string())
}

/// Formats an SDK error on one line: the service's code and message when it answered, else the
/// cause chain (connection refused, timeout, ...). Never the raw response dump.
pub fn describe_err<E>(e: &E) -> String
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    match (e.code(), e.message()) {
        (Some(code), Some(msg)) => format!("{code}: {}", one_line(msg)),
        (Some(code), None) => code.to_string(),
        _ => {
            // Skip the top "dispatch failure"/"service error" wrapper; keep the causes.
            let mut parts = Vec::new();
            let mut cur: Option<&dyn std::error::Error> = Some(e);
            while let Some(err) = cur {
                let s = err.to_string();
                if !parts.contains(&s) {
                    parts.push(s);
                }
                cur = err.source();
            }
            one_line(&parts.join(": "))
        }
    }
}

/// The error and its first cause: enough to say what failed without the provider-by-provider
/// list the credential chain appends.
fn error_chain(e: &dyn std::error::Error) -> String {
    let first = e.source().map(|s| s.to_string());
    let text = match first {
        Some(f) => format!("{e}: {}", f.split(". Attempted").next().unwrap_or(&f)),
        None => e.to_string(),
    };
    one_line(&text)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
