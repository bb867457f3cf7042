//! Teardown's safety net: finds, service by service, everything still named with the
//! `<app>-<env>` prefix or tagged with this app and environment, removes it, and reports what
//! is left with a rough monthly cost.
//!
//! Stack deletion alone is not trusted: the local emulator leaves REST APIs and non-empty buckets
//! behind while reporting DELETE_COMPLETE, and on AWS, resources created at run time (SageMaker
//! endpoints, configs and models; SageMaker's own log streams) were never in a stack. A service
//! that cannot be listed is reported as unchecked and counted as billable: an audit that could
//! not look must not say "clean".

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use serde::Serialize;

use crate::aws::{describe_err, Clients};
use crate::output::Reporter;

/// The date the price table below was written. Prices are rough us-east-1 list prices, for
/// deciding whether a leftover matters, not for billing.
pub const PRICES_AS_OF: &str = "2026-11-28";

/// USD per GB-month of storage.
const S3_GB_MONTH: f64 = 0.023;
const DYNAMODB_GB_MONTH: f64 = 0.25;
const LOGS_GB_MONTH: f64 = 0.03;
const ECR_GB_MONTH: f64 = 0.10;
/// USD per customer-managed KMS key per month (pending deletion: free).
const KMS_KEY_MONTH: f64 = 1.00;

/// One thing the audit found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Finding {
    pub service: &'static str,
    pub kind: &'static str,
    pub id: String,
    /// removed, left, pending-deletion, unchecked
    pub state: String,
    pub billable: bool,
    /// Rough cost per month if left as it is.
    pub monthly_usd: f64,
    pub note: String,
}

impl Finding {
    fn new(service: &'static str, kind: &'static str, id: impl Into<String>) -> Self {
        Finding {
            service,
            kind,
            id: id.into(),
            state: "left".into(),
            billable: true,
            monthly_usd: 0.0,
            note: String::new(),
        }
    }
    fn free(mut self) -> Self {
        self.billable = false;
        self
    }
    fn cost(mut self, usd: f64, note: &str) -> Self {
        self.monthly_usd = usd;
        self.note = note.to_string();
        self
    }
}

/// Who the audit looks for.
#[derive(Debug, Clone)]
pub struct Scope {
    pub app: String,
    pub env: String,
}

impl Scope {
    pub fn prefix(&self) -> String {
        format!("{}-{}", self.app, self.env)
    }
    /// A resource name of this stack: `<app>-<env>` alone or followed by `-...`.
    fn owns(&self, name: &str) -> bool {
        let p = self.prefix();
        name == p || name.starts_with(&format!("{p}-"))
    }
}

fn gb(bytes: i64) -> f64 {
    bytes as f64 / 1_073_741_824.0
}

/// Runs every service check. With `remove`, each finding is removed and reported as such (or
/// as left, with the error, when removal fails).
pub async fn sweep(c: &Clients, scope: &Scope, remove: bool, rep: &Reporter) -> Vec<Finding> {
    let mut all = Vec::new();
    // Order matters for removal: endpoints before their configs and models, functions before
    // their roles, buckets emptied before deletion, keys last (others may use them).
    all.extend(sagemaker(c, scope, remove).await);
    all.extend(lambda(c, scope, remove).await);
    all.extend(apigateway(c, scope, remove).await);
    all.extend(cognito(c, scope, remove).await);
    all.extend(events(c, scope, remove).await);
    all.extend(sns(c, scope, remove).await);
    all.extend(s3(c, scope, remove, rep).await);
    all.extend(dynamodb(c, scope, remove).await);
    all.extend(logs(c, scope, remove).await);
    all.extend(ecr(c, scope, remove).await);
    all.extend(iam(c, scope, remove).await);
    all.extend(kms(c, scope, remove).await);
    all
}

fn unchecked(service: &'static str, e: String) -> Finding {
    let mut f = Finding::new(service, "service", service);
    f.state = "unchecked".into();
    f.note = format!("could not list: {e}");
    f
}

fn outcome(mut f: Finding, r: Result<(), String>) -> Finding {
    match r {
        Ok(()) => f.state = "removed".into(),
        Err(e) => {
            f.state = "left".into();
            f.note = format!("removal failed: {e}");
        }
    }
    f
}

// ---------------------------------------------------------------- S3

/// Deletes every object version and delete marker in a bucket. Returns how many were deleted.
pub async fn empty_bucket(c: &Clients, bucket: &str) -> Result<usize, String> {
    let mut deleted = 0;
    loop {
        let page =
            c.s3.list_object_versions()
                .bucket(bucket)
                .max_keys(1000)
                .send()
                .await
                .map_err(|e| describe_err(&e))?;
        let mut ids = Vec::new();
        for v in page.versions() {
            if let Some(k) = v.key() {
                ids.push((k.to_string(), v.version_id().map(str::to_string)));
            }
        }
        for m in page.delete_markers() {
            if let Some(k) = m.key() {
                ids.push((k.to_string(), m.version_id().map(str::to_string)));
            }
        }
        if ids.is_empty() {
            // An unversioned bucket lists its objects here too, but be sure.
            let plain =
                c.s3.list_objects_v2()
                    .bucket(bucket)
                    .send()
                    .await
                    .map_err(|e| describe_err(&e))?;
            if plain.contents().is_empty() {
                return Ok(deleted);
            }
            for o in plain.contents() {
                if let Some(k) = o.key() {
                    ids.push((k.to_string(), None));
                }
            }
        }
        let objects: Vec<ObjectIdentifier> = ids
            .iter()
            .filter_map(|(k, v)| {
                ObjectIdentifier::builder()
                    .key(k)
                    .set_version_id(v.clone())
                    .build()
                    .ok()
            })
            .collect();
        let n = objects.len();
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| e.to_string())?;
        let out =
            c.s3.delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| describe_err(&e))?;
        if let Some(err) = out.errors().first() {
            return Err(format!(
                "{}: {}",
                err.key().unwrap_or("?"),
                err.message().unwrap_or("delete failed")
            ));
        }
        deleted += n;
    }
}

async fn bucket_bytes(c: &Clients, bucket: &str) -> i64 {
    let mut total = 0;
    if let Ok(page) = c.s3.list_object_versions().bucket(bucket).send().await {
        total += page.versions().iter().filter_map(|v| v.size()).sum::<i64>();
    }
    total
}

async fn s3(c: &Clients, scope: &Scope, remove: bool, rep: &Reporter) -> Vec<Finding> {
    let buckets = match c.s3.list_buckets().send().await {
        Ok(o) => o,
        Err(e) => return vec![unchecked("s3", describe_err(&e))],
    };
    let mut out = Vec::new();
    for b in buckets.buckets() {
        let Some(name) = b.name() else { continue };
        if !scope.owns(name) {
            continue;
        }
        let bytes = bucket_bytes(c, name).await;
        let f = Finding::new("s3", "bucket", name).cost(gb(bytes) * S3_GB_MONTH, "storage");
        if !remove {
            out.push(f);
            continue;
        }
        let r = async {
            let n = empty_bucket(c, name).await?;
            if n > 0 {
                rep.info(&format!("emptied bucket {name} ({n} object versions)"));
            }
            c.s3.delete_bucket()
                .bucket(name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe_err(&e))
        }
        .await;
        out.push(outcome(f, r));
    }
    out
}

// ---------------------------------------------------------------- DynamoDB

async fn dynamodb(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let mut names = Vec::new();
    let mut start: Option<String> = None;
    loop {
        match c
            .dynamodb
            .list_tables()
            .set_exclusive_start_table_name(start.clone())
            .send()
            .await
        {
            Ok(o) => {
                names.extend(o.table_names().iter().cloned());
                start = o.last_evaluated_table_name().map(str::to_string);
                if start.is_none() {
                    break;
                }
            }
            Err(e) => return vec![unchecked("dynamodb", describe_err(&e))],
        }
    }
    let mut out = Vec::new();
    for name in names.into_iter().filter(|n| scope.owns(n)) {
        let bytes = c
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .ok()
            .and_then(|d| d.table().and_then(|t| t.table_size_bytes()))
            .unwrap_or(0);
        let f = Finding::new("dynamodb", "table", &name)
            .cost(gb(bytes) * DYNAMODB_GB_MONTH, "storage and backups");
        if remove {
            let r = c
                .dynamodb
                .delete_table()
                .table_name(&name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe_err(&e));
            out.push(outcome(f, r));
        } else {
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------- Lambda

async fn lambda(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        match c
            .lambda
            .list_functions()
            .set_marker(marker.clone())
            .send()
            .await
        {
            Ok(o) => {
                names.extend(
                    o.functions()
                        .iter()
                        .filter_map(|f| f.function_name().map(str::to_string)),
                );
                marker = o.next_marker().map(str::to_string);
                if marker.is_none() {
                    break;
                }
            }
            Err(e) => return vec![unchecked("lambda", describe_err(&e))],
        }
    }
    let mut out = Vec::new();
    for name in names.into_iter().filter(|n| scope.owns(n)) {
        let f = Finding::new("lambda", "function", &name).cost(0.0, "billed per invocation");
        if remove {
            let r = c
                .lambda
                .delete_function()
                .function_name(&name)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe_err(&e));
            out.push(outcome(f, r));
        } else {
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------- API Gateway

async fn apigateway(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let mut apis = Vec::new();
    let mut position: Option<String> = None;
    loop {
        match c
            .apigateway
            .get_rest_apis()
            .limit(500)
            .set_position(position.clone())
            .send()
            .await
        {
            Ok(o) => {
                for a in o.items() {
                    let tagged = a.tags().is_some_and(|t| {
                        t.get("app") == Some(&scope.app) && t.get("env") == Some(&scope.env)
                    });
                    if a.name().is_some_and(|n| scope.owns(n)) || tagged {
                        apis.push((
                            a.id().unwrap_or_default().to_string(),
                            a.name().unwrap_or_default().to_string(),
                        ));
                    }
                }
                position = o.position().map(str::to_string);
                if position.is_none() || o.items().is_empty() {
                    break;
                }
            }
            Err(e) => return vec![unchecked("apigateway", describe_err(&e))],
        }
    }
    let mut out = Vec::new();
    for (id, name) in apis {
        let f = Finding::new("apigateway", "rest-api", format!("{name} ({id})"))
            .cost(0.0, "billed per request");
        if remove {
            let r = c
                .apigateway
                .delete_rest_api()
                .rest_api_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe_err(&e));
            out.push(outcome(f, r));
        } else {
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------- EventBridge

async fn events(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let rules = match c
        .events
        .list_rules()
        .name_prefix(scope.prefix())
        .send()
        .await
    {
        Ok(o) => o
            .rules()
            .iter()
            .filter_map(|r| r.name().map(str::to_string))
            .filter(|n| scope.owns(n))
            .collect::<Vec<_>>(),
        Err(e) => return vec![unchecked("eventbridge", describe_err(&e))],
    };
    let mut out = Vec::new();
    for name in rules {
        let f = Finding::new("eventbridge", "rule", &name).cost(0.0, "invokes targets");
        if !remove {
            out.push(f);
            continue;
        }
        let r = async {
            let targets = c
                .events
                .list_targets_by_rule()
                .rule(&name)
                .send()
                .await
                .map_err(|e| describe_err(&e))?;
            let ids: Vec<String> = targets
                .targets()
                .iter()
                .map(|t| t.id().to_string())
                .collect();
            if !ids.is_empty() {
                c.events
                    .remove_targets()
                    .rule(&name)
                    .set_ids(Some(ids))
                    .send()
                    .await
                    .map_err(|e| describe_err(&e))?;
            }
            c.events
                .delete_rule()
                .name(&name)
                .send()
                .await
                .map_err(|e| describe_err(&e))?;
            Ok::<(), String>(())
        }
        .await;
        out.push(outcome(f, r));
    }
    out
}

// ---------------------------------------------------------------- SNS

async fn sns(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let mut arns = Vec::new();
    let mut token: Option<String> = None;
    loop {
        match c
            .sns
            .list_topics()
            .set_next_token(token.clone())
            .send()
            .await
        {
            Ok(o) => {
                arns.extend(
                    o.topics()
                        .iter()
                        .filter_map(|t| t.topic_arn().map(str::to_string)),
                );
                token = o.next_token().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            Err(e) => return vec![unchecked("sns", describe_err(&e))],
        }
    }
    let mut out = Vec::new();
    for arn in arns {
        let name = arn.rsplit(':').next().unwrap_or_default();
        if !scope.owns(name) {
            continue;
        }
        let f = Finding::new("sns", "topic", &arn).cost(0.0, "billed per message");
        if remove {
            let r = c
                .sns
                .delete_topic()
                .topic_arn(&arn)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe_err(&e));
            out.push(outcome(f, r));
        } else {
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------- CloudWatch Logs

async fn logs(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let p = scope.prefix();
    let group_prefixes = [
        format!("/aws/lambda/{p}-"),
        format!("/aws/sagemaker/Endpoints/{p}-"),
        format!("/aws/apigateway/{p}-"),
        format!("{p}-"),
    ];
    let mut out = Vec::new();
    for gp in &group_prefixes {
        let groups = match c
            .logs
            .describe_log_groups()
            .log_group_name_prefix(gp)
            .send()
            .await
        {
            Ok(o) => o.log_groups().to_vec(),
            Err(e) => return vec![unchecked("logs", describe_err(&e))],
        };
        for g in groups {
            let Some(name) = g.log_group_name() else {
                continue;
            };
            let f = Finding::new("logs", "log-group", name)
                .cost(gb(g.stored_bytes().unwrap_or(0)) * LOGS_GB_MONTH, "storage");
            if remove {
                let r = c
                    .logs
                    .delete_log_group()
                    .log_group_name(name)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| describe_err(&e));
                out.push(outcome(f, r));
            } else {
                out.push(f);
            }
        }
    }
    // SageMaker training jobs log into one shared group, a stream per job.
    let shared = "/aws/sagemaker/TrainingJobs";
    if let Ok(o) = c
        .logs
        .describe_log_streams()
        .log_group_name(shared)
        .log_stream_name_prefix(format!("{p}-"))
        .send()
        .await
    {
        for s in o.log_streams() {
            let Some(name) = s.log_stream_name() else {
                continue;
            };
            let f = Finding::new("logs", "log-stream", format!("{shared}/{name}"))
                .cost(0.0, "storage (counted on the group)");
            if remove {
                let r = c
                    .logs
                    .delete_log_stream()
                    .log_group_name(shared)
                    .log_stream_name(name)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| describe_err(&e));
                out.push(outcome(f, r));
            } else {
                out.push(f);
            }
        }
    }
    out
}

// ---------------------------------------------------------------- SageMaker

async fn sagemaker(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let p = scope.prefix();
    let mut out = Vec::new();
    // Training jobs cannot be deleted; running ones are stopped (they bill by the second).
    match c
        .sagemaker
        .list_training_jobs()
        .name_contains(&p)
        .status_equals(aws_sdk_sagemaker::types::TrainingJobStatus::InProgress)
        .send()
        .await
    {
        Ok(o) => {
            for j in o.training_job_summaries() {
                let name = j.training_job_name().unwrap_or_default();
                if !scope.owns(name) {
                    continue;
                }
                let f = Finding::new("sagemaker", "training-job", name)
                    .cost(0.0, "billed per second while running");
                if remove {
                    let r = c
                        .sagemaker
                        .stop_training_job()
                        .training_job_name(name)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe_err(&e));
                    out.push(outcome(f, r));
                } else {
                    out.push(f);
                }
            }
        }
        Err(e) => out.push(unchecked("sagemaker", describe_err(&e))),
    }
    match c.sagemaker.list_endpoints().name_contains(&p).send().await {
        Ok(o) => {
            for e in o.endpoints() {
                let name = e.endpoint_name().unwrap_or_default();
                if !scope.owns(name) {
                    continue;
                }
                let f = Finding::new("sagemaker", "endpoint", name)
                    .cost(0.0, "serverless: billed per inference");
                if remove {
                    let r = c
                        .sagemaker
                        .delete_endpoint()
                        .endpoint_name(name)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe_err(&e));
                    out.push(outcome(f, r));
                } else {
                    out.push(f);
                }
            }
        }
        Err(e) => out.push(unchecked("sagemaker", describe_err(&e))),
    }
    match c
        .sagemaker
        .list_endpoint_configs()
        .name_contains(&p)
        .send()
        .await
    {
        Ok(o) => {
            for e in o.endpoint_configs() {
                let name = e.endpoint_config_name().unwrap_or_default();
                if !scope.owns(name) {
                    continue;
                }
                let f = Finding::new("sagemaker", "endpoint-config", name).free();
                if remove {
                    let r = c
                        .sagemaker
                        .delete_endpoint_config()
                        .endpoint_config_name(name)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe_err(&e));
                    out.push(outcome(f, r));
                } else {
                    out.push(f);
                }
            }
        }
        Err(e) => out.push(unchecked("sagemaker", describe_err(&e))),
    }
    match c.sagemaker.list_models().name_contains(&p).send().await {
        Ok(o) => {
            for m in o.models() {
                let name = m.model_name().unwrap_or_default();
                if !scope.owns(name) {
                    continue;
                }
                let f = Finding::new("sagemaker", "model", name).free();
                if remove {
                    let r = c
                        .sagemaker
                        .delete_model()
                        .model_name(name)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe_err(&e));
                    out.push(outcome(f, r));
                } else {
                    out.push(f);
                }
            }
        }
        Err(e) => out.push(unchecked("sagemaker", describe_err(&e))),
    }
    out
}

// ---------------------------------------------------------------- ECR

async fn ecr(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let repos = match c.ecr.describe_repositories().send().await {
        Ok(o) => o.repositories().to_vec(),
        Err(e) => return vec![unchecked("ecr", describe_err(&e))],
    };
    let mut out = Vec::new();
    for r in repos {
        let Some(name) = r.repository_name() else {
            continue;
        };
        if !scope.owns(name) {
            continue;
        }
        let f = Finding::new("ecr", "repository", name)
            .cost(0.0, &format!("{ECR_GB_MONTH} USD per GB-month of images"));
        if remove {
            let res = c
                .ecr
                .delete_repository()
                .repository_name(name)
                .force(true)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe_err(&e));
            out.push(outcome(f, res));
        } else {
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------- Cognito

/// User pools named `<prefix>-users`. The local emulator's CloudFormation never made them (the
/// deployer did), so stack deletion cannot remove them there.
async fn cognito(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let pools = match crate::users::list_pools(c).await {
        Ok(p) => p,
        Err(e) => return vec![unchecked("cognito-idp", e)],
    };
    let mut out = Vec::new();
    for (name, id) in pools.into_iter().filter(|(n, _)| scope.owns(n)) {
        // No charge while nobody signs in (priced per monthly active user), but it holds
        // people's email addresses: teardown removes it all the same.
        let f = Finding::new("cognito-idp", "user pool", format!("{name} ({id})"))
            .free()
            .cost(0.0, "priced per monthly active user; holds users' emails");
        if remove {
            let res = c
                .cognito
                .delete_user_pool()
                .user_pool_id(&id)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| describe_err(&e));
            out.push(outcome(f, res));
        } else {
            out.push(f);
        }
    }
    out
}

// ---------------------------------------------------------------- IAM

async fn iam(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let mut roles = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        match c.iam.list_roles().set_marker(marker.clone()).send().await {
            Ok(o) => {
                roles.extend(o.roles().iter().map(|r| r.role_name().to_string()));
                marker = o.marker().map(str::to_string);
                if !o.is_truncated() || marker.is_none() {
                    break;
                }
            }
            Err(e) => return vec![unchecked("iam", describe_err(&e))],
        }
    }
    let mut out = Vec::new();
    for role in roles.into_iter().filter(|r| scope.owns(r)) {
        let f = Finding::new("iam", "role", &role).free();
        if !remove {
            out.push(f);
            continue;
        }
        let r = async {
            for p in c
                .iam
                .list_role_policies()
                .role_name(&role)
                .send()
                .await?
                .policy_names()
            {
                c.iam
                    .delete_role_policy()
                    .role_name(&role)
                    .policy_name(p)
                    .send()
                    .await?;
            }
            for p in c
                .iam
                .list_attached_role_policies()
                .role_name(&role)
                .send()
                .await?
                .attached_policies()
            {
                if let Some(arn) = p.policy_arn() {
                    c.iam
                        .detach_role_policy()
                        .role_name(&role)
                        .policy_arn(arn)
                        .send()
                        .await?;
                }
            }
            for ip in c
                .iam
                .list_instance_profiles_for_role()
                .role_name(&role)
                .send()
                .await?
                .instance_profiles()
            {
                c.iam
                    .remove_role_from_instance_profile()
                    .role_name(&role)
                    .instance_profile_name(ip.instance_profile_name())
                    .send()
                    .await?;
            }
            c.iam.delete_role().role_name(&role).send().await?;
            Ok::<(), aws_sdk_iam::Error>(())
        }
        .await
        .map_err(|e| describe_err(&e));
        out.push(outcome(f, r));
    }
    match c
        .iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .send()
        .await
    {
        Ok(o) => {
            for p in o.policies() {
                let (Some(name), Some(arn)) = (p.policy_name(), p.arn()) else {
                    continue;
                };
                if !scope.owns(name) {
                    continue;
                }
                let f = Finding::new("iam", "policy", name).free();
                if remove {
                    let r = c
                        .iam
                        .delete_policy()
                        .policy_arn(arn)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe_err(&e));
                    out.push(outcome(f, r));
                } else {
                    out.push(f);
                }
            }
        }
        Err(e) => out.push(unchecked("iam", describe_err(&e))),
    }
    out
}

// ---------------------------------------------------------------- KMS

async fn kms(c: &Clients, scope: &Scope, remove: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    // Aliases of this stack, and the keys they point at.
    match c.kms.list_aliases().send().await {
        Ok(o) => {
            for a in o.aliases() {
                let Some(alias) = a.alias_name() else {
                    continue;
                };
                let bare = alias.trim_start_matches("alias/");
                if !scope.owns(bare) {
                    continue;
                }
                if let Some(k) = a.target_key_id() {
                    keys.push(k.to_string());
                }
                let f = Finding::new("kms", "alias", alias).free();
                if remove {
                    let r = c
                        .kms
                        .delete_alias()
                        .alias_name(alias)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| describe_err(&e));
                    out.push(outcome(f, r));
                } else {
                    out.push(f);
                }
            }
        }
        Err(e) => return vec![unchecked("kms", describe_err(&e))],
    }
    // Keys tagged with this app and environment (the alias is gone once the stack is).
    if let Ok(o) = c.kms.list_keys().send().await {
        for k in o.keys() {
            let Some(id) = k.key_id() else { continue };
            if keys.iter().any(|x| x == id) {
                continue;
            }
            let Ok(tags) = c.kms.list_resource_tags().key_id(id).send().await else {
                continue;
            };
            let tag = |key: &str| {
                tags.tags()
                    .iter()
                    .find(|t| t.tag_key() == key)
                    .map(|t| t.tag_value().to_string())
            };
            if tag("app").as_deref() == Some(&scope.app)
                && tag("env").as_deref() == Some(&scope.env)
            {
                keys.push(id.to_string());
            }
        }
    }
    for id in keys {
        let Ok(d) = c.kms.describe_key().key_id(&id).send().await else {
            continue;
        };
        let Some(meta) = d.key_metadata() else {
            continue;
        };
        let state = meta
            .key_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let mut f = Finding::new("kms", "key", &id);
        if state == "PendingDeletion" {
            f.state = "pending-deletion".into();
            f.billable = false;
            f.note = deletion_note(meta.deletion_date());
            out.push(f);
            continue;
        }
        f = f.cost(KMS_KEY_MONTH, "per key per month");
        if remove {
            match c
                .kms
                .schedule_key_deletion()
                .key_id(&id)
                .pending_window_in_days(7)
                .send()
                .await
            {
                Ok(o) => {
                    f.state = "pending-deletion".into();
                    f.billable = false;
                    f.monthly_usd = 0.0;
                    f.note = deletion_note(o.deletion_date());
                }
                Err(e) => f.note = format!("scheduling deletion failed: {}", describe_err(&e)),
            }
        }
        out.push(f);
    }
    out
}

fn deletion_note(date: Option<&aws_smithy_types::DateTime>) -> String {
    match date.and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()) {
        Some(d) => format!("scheduled for deletion on {d} (not billed while pending)"),
        None => "scheduled for deletion (not billed while pending)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_by_whole_prefix_segment() {
        let s = Scope {
            app: "wastesort".into(),
            env: "local".into(),
        };
        assert!(s.owns("wastesort-local-models"));
        assert!(s.owns("wastesort-local"));
        assert!(
            !s.owns("wastesort-localx-models"),
            "another environment is not ours"
        );
        assert!(!s.owns("other-wastesort-local"));
    }
}
