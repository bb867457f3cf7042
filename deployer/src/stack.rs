//! CloudFormation stack operations: bring a stack to a state where it can be changed (recover
//! from a failed first create, continue a failed update rollback, wait for an operation in
//! progress), plan through change sets, deploy through change sets while streaming stack
//! events, and delete.
//!
//! Every path goes through change sets, so `plan` shows exactly what `up` would do. The local
//! emulator cannot produce failure states or per-resource events, so those paths are tested
//! against hand-built responses (tests/stack_recovery.rs).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, StackStatus, Tag, TemplateStage,
};
use aws_sdk_cloudformation::Client;
use serde::Serialize;

use crate::aws::describe_err;
use crate::output::Reporter;
use crate::render::RenderedStack;

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("failed to {action} stack {stack}: {message}")]
    Api {
        action: &'static str,
        stack: String,
        message: String,
    },
    #[error("stack {stack} ended in {status}{reasons}; fix the cause and run the command again (the stack is left ready for it)")]
    Failed {
        stack: String,
        status: String,
        reasons: String,
    },
    #[error("change set for stack {stack} failed: {reason}")]
    ChangeSetFailed { stack: String, reason: String },
    #[error("timed out after {secs} s waiting for stack {stack} ({status}); it is still running, run the command again to keep waiting")]
    Timeout {
        stack: String,
        status: String,
        secs: u64,
    },
}

/// How often to poll and how long to wait. Tests use zero intervals.
#[derive(Debug, Clone, Copy)]
pub struct Poll {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Poll {
    pub fn for_local() -> Self {
        Poll {
            interval: Duration::from_millis(200),
            timeout: Duration::from_secs(600),
        }
    }
    pub fn for_aws() -> Self {
        Poll {
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(3600),
        }
    }
}

/// One row of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub stack: String,
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    /// True, False, Conditional, or "-" when the service does not say (creates; the emulator).
    pub replacement: String,
}

/// The stack's current state as far as deploying is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    Missing,
    Status(String),
}

/// Outcome of `deploy`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deployed {
    pub stack: String,
    pub changed: bool,
    pub status: String,
    pub outputs: Vec<(String, String)>,
}

fn api_err<E>(action: &'static str, stack: &str, e: &E) -> StackError
where
    E: std::error::Error + aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    StackError::Api {
        action,
        stack: stack.to_string(),
        message: describe_err(e),
    }
}

/// Status of a stack, or `Missing`.
pub async fn current(cfn: &Client, stack: &str) -> Result<Current, StackError> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(match out.stacks().first().and_then(|s| s.stack_status()) {
            None => Current::Missing,
            Some(StackStatus::DeleteComplete) => Current::Missing,
            Some(s) => Current::Status(s.as_str().to_string()),
        }),
        Err(e) => {
            let missing = e.as_service_error().is_some_and(|se| {
                se.code() == Some("ValidationError")
                    && se.message().is_some_and(|m| m.contains("does not exist"))
            });
            if missing {
                Ok(Current::Missing)
            } else {
                Err(api_err("describe", stack, &e))
            }
        }
    }
}

/// Stack outputs as (key, value) pairs.
pub async fn outputs(cfn: &Client, stack: &str) -> Result<Vec<(String, String)>, StackError> {
    let out = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| api_err("describe", stack, &e))?;
    Ok(out
        .stacks()
        .first()
        .map(|s| {
            s.outputs()
                .iter()
                .map(|o| {
                    (
                        o.output_key().unwrap_or_default().to_string(),
                        o.output_value().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn in_progress(status: &str) -> bool {
    status.ends_with("_IN_PROGRESS") && status != "REVIEW_IN_PROGRESS"
}

/// Waits until the stack is not in an `_IN_PROGRESS` state, streaming its events.
async fn wait_settled(
    cfn: &Client,
    stack: &str,
    poll: Poll,
    since: aws_smithy_types::DateTime,
    rep: &Reporter,
) -> Result<Current, StackError> {
    let started = Instant::now();
    let mut seen = HashSet::new();
    loop {
        let cur = current(cfn, stack).await?;
        stream_events(cfn, stack, since, &mut seen, rep).await;
        match &cur {
            Current::Status(s) if in_progress(s) => {
                if started.elapsed() > poll.timeout {
                    return Err(StackError::Timeout {
                        stack: stack.into(),
                        status: s.clone(),
                        secs: poll.timeout.as_secs(),
                    });
                }
                rep.progress(&format!("{stack}: {s}"));
                tokio::time::sleep(poll.interval).await;
            }
            _ => {
                rep.progress_done();
                return Ok(cur);
            }
        }
    }
}

/// Prints stack events newer than `since` that were not printed yet, oldest first.
async fn stream_events(
    cfn: &Client,
    stack: &str,
    since: aws_smithy_types::DateTime,
    seen: &mut HashSet<String>,
    rep: &Reporter,
) {
    // Newest first, paged; one page is enough between two polls of a normal deployment.
    let Ok(out) = cfn.describe_stack_events().stack_name(stack).send().await else {
        return;
    };
    let mut fresh: Vec<_> = out
        .stack_events()
        .iter()
        .filter(|e| e.timestamp().is_some_and(|t| t.secs() >= since.secs()))
        .filter(|e| seen.insert(e.event_id().unwrap_or_default().to_string()))
        .collect();
    fresh.reverse();
    for e in fresh {
        rep.event(
            e.timestamp().map(|t| t.secs()).unwrap_or_default(),
            e.resource_status().map(|s| s.as_str()).unwrap_or("?"),
            e.logical_resource_id().unwrap_or("?"),
            e.resource_type().unwrap_or("?"),
            e.resource_status_reason().unwrap_or(""),
        );
    }
}

/// Failure reasons of the resources in the current operation's events: those at or after
/// `since`, or, without it (a stack found in DELETE_FAILED), those newer than the stack's own
/// latest DELETE_IN_PROGRESS. Older failures belong to earlier operations and would mislead.
async fn failure_reasons(
    cfn: &Client,
    stack: &str,
    since: Option<aws_smithy_types::DateTime>,
) -> String {
    let Ok(out) = cfn.describe_stack_events().stack_name(stack).send().await else {
        return String::new();
    };
    let mut current_operation = Vec::new();
    for e in out.stack_events() {
        match since {
            Some(t) if e.timestamp().is_none_or(|ts| ts.secs() < t.secs()) => continue,
            Some(_) => current_operation.push(e),
            None => {
                current_operation.push(e);
                // Newest first: stop at the start of the latest delete.
                if e.logical_resource_id() == Some(stack)
                    && e.resource_status().map(|s| s.as_str()) == Some("DELETE_IN_PROGRESS")
                {
                    break;
                }
            }
        }
    }
    let reasons: Vec<String> = current_operation
        .iter()
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
                && e.logical_resource_id() != Some(stack)
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_status_reason().unwrap_or("no reason given")
            )
        })
        .collect();
    if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join("; "))
    }
}

/// Brings the stack to a state a change set can be made from, and says which type.
pub async fn prepare(
    cfn: &Client,
    stack: &str,
    poll: Poll,
    rep: &Reporter,
) -> Result<ChangeSetType, StackError> {
    loop {
        let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
        match current(cfn, stack).await? {
            // A stack made by a change set that was never executed takes a CREATE change set.
            Current::Missing => return Ok(ChangeSetType::Create),
            Current::Status(s) if s == "REVIEW_IN_PROGRESS" => return Ok(ChangeSetType::Create),
            Current::Status(s) if in_progress(&s) => {
                rep.info(&format!(
                    "stack {stack} is {s}; waiting for that operation to finish"
                ));
                wait_settled(cfn, stack, poll, now, rep).await?;
            }
            // A first create that failed cannot be updated: delete it and create again.
            Current::Status(s) if s == "ROLLBACK_COMPLETE" || s == "ROLLBACK_FAILED" => {
                rep.info(&format!(
                    "stack {stack} is {s} after a failed first create; deleting it to create it again"
                ));
                delete(cfn, stack, poll, rep).await?;
            }
            Current::Status(s) if s == "UPDATE_ROLLBACK_FAILED" => {
                rep.info(&format!("stack {stack} is {s}; continuing the rollback"));
                cfn.continue_update_rollback()
                    .stack_name(stack)
                    .send()
                    .await
                    .map_err(|e| api_err("continue the rollback of", stack, &e))?;
                match wait_settled(cfn, stack, poll, now, rep).await? {
                    Current::Status(s) if s == "UPDATE_ROLLBACK_COMPLETE" => {}
                    Current::Status(s) => {
                        return Err(StackError::Failed {
                            stack: stack.into(),
                            reasons: failure_reasons(cfn, stack, Some(now)).await,
                            status: s,
                        })
                    }
                    Current::Missing => return Ok(ChangeSetType::Create),
                }
            }
            Current::Status(s) if s == "DELETE_FAILED" => {
                return Err(StackError::Failed {
                    stack: stack.into(),
                    reasons: failure_reasons(cfn, stack, None).await,
                    status: s,
                })
            }
            Current::Status(_) => return Ok(ChangeSetType::Update),
        }
    }
}

/// The template body the stack was last deployed with, if it exists.
pub async fn deployed_template(cfn: &Client, stack: &str) -> Option<String> {
    cfn.get_template()
        .stack_name(stack)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .ok()
        .and_then(|o| o.template_body().map(str::to_string))
}

/// True when the deployed template is byte-identical to the rendered one.
async fn template_unchanged(cfn: &Client, stack: &str, body: &str) -> bool {
    match cfn
        .get_template()
        .stack_name(stack)
        .template_stage(TemplateStage::Original)
        .send()
        .await
    {
        Ok(out) => out.template_body() == Some(body),
        Err(_) => false,
    }
}

fn change_set_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("deployer-{nanos}")
}

fn no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

/// Creates a change set and waits for it. `Ok(None)` means it has no changes (and was deleted).
async fn create_change_set(
    cfn: &Client,
    rendered: &RenderedStack,
    kind: ChangeSetType,
    tags: &[(String, String)],
    poll: Poll,
) -> Result<Option<String>, StackError> {
    let stack = rendered.stack_name.as_str();
    let name = change_set_name();
    let tags = cfn_tags(tags);
    cfn.create_change_set()
        .stack_name(stack)
        .change_set_name(&name)
        .change_set_type(kind)
        .template_body(&rendered.body)
        .capabilities(Capability::CapabilityNamedIam)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| api_err("create a change set for", stack, &e))?;
    let started = Instant::now();
    loop {
        let d = cfn
            .describe_change_set()
            .stack_name(stack)
            .change_set_name(&name)
            .send()
            .await
            .map_err(|e| api_err("describe the change set of", stack, &e))?;
        match d.status() {
            Some(ChangeSetStatus::CreateComplete) => return Ok(Some(name)),
            Some(ChangeSetStatus::Failed) => {
                let reason = d.status_reason().unwrap_or("no reason given").to_string();
                let _ = cfn
                    .delete_change_set()
                    .stack_name(stack)
                    .change_set_name(&name)
                    .send()
                    .await;
                if no_changes(&reason) {
                    return Ok(None);
                }
                return Err(StackError::ChangeSetFailed {
                    stack: stack.into(),
                    reason,
                });
            }
            _ => {}
        }
        if started.elapsed() > poll.timeout {
            return Err(StackError::Timeout {
                stack: stack.into(),
                status: "change set CREATE_PENDING".into(),
                secs: poll.timeout.as_secs(),
            });
        }
        tokio::time::sleep(poll.interval).await;
    }
}

/// All changes of a change set (every page).
async fn change_set_changes(
    cfn: &Client,
    stack: &str,
    name: &str,
) -> Result<Vec<Change>, StackError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let d = cfn
            .describe_change_set()
            .stack_name(stack)
            .change_set_name(name)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| api_err("describe the change set of", stack, &e))?;
        for c in d.changes() {
            if let Some(rc) = c.resource_change() {
                out.push(Change {
                    stack: stack.into(),
                    action: rc
                        .action()
                        .map(|a| a.as_str().to_string())
                        .unwrap_or_default(),
                    logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
                    resource_type: rc.resource_type().unwrap_or_default().to_string(),
                    replacement: rc
                        .replacement()
                        .map(|r| r.as_str().to_string())
                        .unwrap_or_else(|| "-".into()),
                });
            }
        }
        token = d.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// What `up` would change in this stack. Leaves nothing behind: for a stack that does not exist
/// no change set is made (that would leave a REVIEW_IN_PROGRESS stack); the template's resources
/// are listed as additions instead.
pub async fn plan(
    cfn: &Client,
    rendered: &RenderedStack,
    poll: Poll,
) -> Result<Vec<Change>, StackError> {
    let stack = rendered.stack_name.as_str();
    let create_all = || {
        rendered
            .resources
            .iter()
            .map(|(id, ty)| Change {
                stack: stack.into(),
                action: "Add".into(),
                logical_id: id.clone(),
                resource_type: ty.clone(),
                replacement: "-".into(),
            })
            .collect::<Vec<_>>()
    };
    match current(cfn, stack).await? {
        Current::Missing => return Ok(create_all()),
        Current::Status(s) if s == "REVIEW_IN_PROGRESS" || s == "ROLLBACK_COMPLETE" => {
            return Ok(create_all())
        }
        Current::Status(_) => {}
    }
    if template_unchanged(cfn, stack, &rendered.body).await {
        return Ok(Vec::new());
    }
    // Always UPDATE for an existing stack: the emulator defaults change sets to CREATE.
    let Some(name) = create_change_set(cfn, rendered, ChangeSetType::Update, &[], poll).await?
    else {
        return Ok(Vec::new());
    };
    let changes = change_set_changes(cfn, stack, &name).await;
    let _ = cfn
        .delete_change_set()
        .stack_name(stack)
        .change_set_name(&name)
        .send()
        .await;
    changes
}

/// Deploys the rendered template through a change set and waits for the result.
pub async fn deploy(
    cfn: &Client,
    rendered: &RenderedStack,
    tags: &[(String, String)],
    poll: Poll,
    rep: &Reporter,
) -> Result<Deployed, StackError> {
    let stack = rendered.stack_name.as_str();
    let kind = prepare(cfn, stack, poll, rep).await?;
    if kind == ChangeSetType::Update && template_unchanged(cfn, stack, &rendered.body).await {
        return Ok(Deployed {
            stack: stack.into(),
            changed: false,
            status: status_text(cfn, stack).await,
            outputs: outputs(cfn, stack).await?,
        });
    }
    if kind == ChangeSetType::Create {
        return create(cfn, rendered, tags, poll, rep).await;
    }
    let Some(name) = create_change_set(cfn, rendered, kind.clone(), tags, poll).await? else {
        return Ok(Deployed {
            stack: stack.into(),
            changed: false,
            status: status_text(cfn, stack).await,
            outputs: outputs(cfn, stack).await?,
        });
    };
    crate::fault::checkpoint("stack");
    let since = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    rep.info(&format!("updating stack {stack} (change set {name})"));
    cfn.execute_change_set()
        .stack_name(stack)
        .change_set_name(&name)
        .send()
        .await
        .map_err(|e| api_err("execute the change set of", stack, &e))?;
    finish(cfn, stack, poll, since, rep).await
}

/// Creates a stack that does not exist yet. CreateStack rather than a CREATE change set: both are
/// AWS forms, but the local emulator drops a stack's Outputs when a CREATE change set is executed
/// (UPDATE change sets keep them), and the first create has nothing to review that `plan` does not
/// already list. A failed create ends in ROLLBACK_COMPLETE, which the next `up` deletes and
/// recreates.
async fn create(
    cfn: &Client,
    rendered: &RenderedStack,
    tags: &[(String, String)],
    poll: Poll,
    rep: &Reporter,
) -> Result<Deployed, StackError> {
    let stack = rendered.stack_name.as_str();
    // A stack left in REVIEW_IN_PROGRESS by an unexecuted change set holds the name.
    if current(cfn, stack).await? != Current::Missing {
        delete(cfn, stack, poll, rep).await?;
    }
    let since = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    rep.info(&format!("creating stack {stack}"));
    cfn.create_stack()
        .stack_name(stack)
        .template_body(&rendered.body)
        .capabilities(Capability::CapabilityNamedIam)
        .set_tags(Some(cfn_tags(tags)))
        .send()
        .await
        .map_err(|e| api_err("create", stack, &e))?;
    crate::fault::checkpoint("stack");
    finish(cfn, stack, poll, since, rep).await
}

/// Waits for a create or update to end and turns the final status into a result.
async fn finish(
    cfn: &Client,
    stack: &str,
    poll: Poll,
    since: aws_smithy_types::DateTime,
    rep: &Reporter,
) -> Result<Deployed, StackError> {
    let end = wait_settled(cfn, stack, poll, since, rep).await?;
    match end {
        Current::Status(s) if s == "CREATE_COMPLETE" || s == "UPDATE_COMPLETE" => Ok(Deployed {
            stack: stack.into(),
            changed: true,
            status: s,
            outputs: outputs(cfn, stack).await?,
        }),
        Current::Status(s) => Err(StackError::Failed {
            stack: stack.into(),
            reasons: failure_reasons(cfn, stack, Some(since)).await,
            status: s,
        }),
        Current::Missing => Err(StackError::Failed {
            stack: stack.into(),
            status: "DELETE_COMPLETE".into(),
            reasons: " (the stack disappeared while deploying)".into(),
        }),
    }
}

fn cfn_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

async fn status_text(cfn: &Client, stack: &str) -> String {
    match current(cfn, stack).await {
        Ok(Current::Status(s)) => s,
        Ok(Current::Missing) => "MISSING".into(),
        Err(e) => e.to_string(),
    }
}

/// Deletes the stack and waits until it is gone. A missing stack is fine.
pub async fn delete(
    cfn: &Client,
    stack: &str,
    poll: Poll,
    rep: &Reporter,
) -> Result<bool, StackError> {
    let now = aws_smithy_types::DateTime::from(std::time::SystemTime::now());
    match current(cfn, stack).await? {
        Current::Missing => return Ok(false),
        Current::Status(s) if in_progress(&s) => {
            rep.info(&format!("stack {stack} is {s}; waiting before deleting"));
            wait_settled(cfn, stack, poll, now, rep).await?;
        }
        Current::Status(_) => {}
    }
    cfn.delete_stack()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| api_err("delete", stack, &e))?;
    match wait_settled(cfn, stack, poll, now, rep).await? {
        Current::Missing => Ok(true),
        Current::Status(s) => Err(StackError::Failed {
            stack: stack.into(),
            reasons: failure_reasons(cfn, stack, Some(now)).await,
            status: s,
        }),
    }
}
