//! The event bus. Rule definitions (pattern, schedule, state, Lambda targets) are read from the
//! deployed stack's rules in moto — never a second list — and cached briefly. Events the local
//! cloud emits (S3 Object Created, SageMaker state changes) and `PutEvents` calls are matched
//! against every enabled rule's pattern and delivered to the rule's Lambda targets as
//! asynchronous invocations (two retries on a function error, as Lambda's async invoke does).
//! Enabled schedule rules fire on time; `deployer local fire RULE` fires one now.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::cloud::Cloud;
use crate::httpx::{self, Req, Resp};
use crate::pattern::Pattern;
use crate::schedule::Schedule;

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub arn: String,
    pub enabled: bool,
    pub pattern: Option<Pattern>,
    pub schedule: Option<Schedule>,
    /// Lambda function names (from the targets' ARNs) and each target's constant input.
    pub targets: Vec<(String, Option<String>)>,
}

#[derive(Debug, Default)]
pub struct Bus {
    rules: Mutex<Option<(Instant, Arc<Vec<Rule>>)>>,
}

const RULES_TTL: Duration = Duration::from_secs(2);

pub async fn rules(cloud: &Cloud) -> Arc<Vec<Rule>> {
    if let Some((at, r)) = cloud.bus.rules.lock().ok().and_then(|g| g.clone()) {
        if at.elapsed() < RULES_TTL {
            return r;
        }
    }
    let fresh = Arc::new(load_rules(cloud).await);
    if let Ok(mut g) = cloud.bus.rules.lock() {
        *g = Some((Instant::now(), fresh.clone()));
    }
    fresh
}

async fn load_rules(cloud: &Cloud) -> Vec<Rule> {
    load_rules_checked(cloud)
        .await
        .unwrap_or_else(|partial| partial)
}

/// The rules, or (as `Err`) what could be read before the emulator stopped answering.
async fn load_rules_checked(cloud: &Cloud) -> Result<Vec<Rule>, Vec<Rule>> {
    let events = aws_sdk_eventbridge::Client::new(&cloud.moto);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let Ok(page) = events
            .list_rules()
            .set_next_token(token.clone())
            .send()
            .await
        else {
            return Err(out);
        };
        for r in page.rules() {
            let name = r.name().unwrap_or_default().to_string();
            let pattern = r.event_pattern().and_then(|p| match Pattern::parse(p) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "rule pattern not understood; the rule will not match");
                    None
                }
            });
            let schedule = r.schedule_expression().and_then(|s| match Schedule::parse(s) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "schedule not understood; the rule will not fire");
                    None
                }
            });
            let targets = events
                .list_targets_by_rule()
                .rule(&name)
                .send()
                .await
                .map(|t| {
                    t.targets()
                        .iter()
                        .filter(|t| t.arn().contains(":lambda:"))
                        .map(|t| {
                            let fname = t.arn().rsplit(':').next().unwrap_or_default().to_string();
                            (fname, t.input().map(str::to_string))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Rule {
                arn: r.arn().unwrap_or_default().to_string(),
                enabled: r.state().map(|s| s.as_str() == "ENABLED").unwrap_or(true),
                name,
                pattern,
                schedule,
                targets,
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

/// [`emit`], waiting for the outcome: true when the rules could be read and every matching
/// target ran without error (after Lambda's retries). A state change whose event is not
/// confirmed is delivered again when the local cloud restarts (the handlers are idempotent),
/// so an event is not lost to an emulator that was down or a local cloud that was stopping.
pub async fn emit_confirmed(
    cloud: &Arc<Cloud>,
    source: &str,
    detail_type: &str,
    resources: Vec<String>,
    detail: Value,
) -> bool {
    let event = envelope(cloud, source, detail_type, resources, detail);
    let Ok(rules) = load_rules_checked(cloud).await else {
        return false;
    };
    let mut all = true;
    for rule in &rules {
        let Some(p) = &rule.pattern else { continue };
        if !rule.enabled || !p.matches(&event) {
            continue;
        }
        for (function, input) in &rule.targets {
            let payload = input.clone().unwrap_or_else(|| event.to_string());
            all &= invoke_with_retries(cloud, function, &payload, &rule.name).await;
        }
    }
    all
}

async fn invoke_with_retries(
    cloud: &Arc<Cloud>,
    function: &str,
    payload: &str,
    rule: &str,
) -> bool {
    for attempt in 0..3 {
        match crate::lambda::invoke(cloud, function, payload.to_string().into()).await {
            Ok(out) if out.error.is_none() => return true,
            Ok(out) => {
                tracing::warn!(%function, %rule, attempt, error = ?out.error, "target failed")
            }
            Err(e) => {
                tracing::warn!(%function, %rule, attempt, error = %e, "target could not be invoked")
            }
        }
        tokio::time::sleep(Duration::from_secs(1 + attempt)).await;
    }
    false
}

/// An EventBridge event as a rule's target receives it.
fn envelope(
    cloud: &Cloud,
    source: &str,
    detail_type: &str,
    resources: Vec<String>,
    detail: Value,
) -> Value {
    json!({
        "version": "0",
        "id": httpx::new_id(),
        "detail-type": detail_type,
        "source": source,
        "account": cloud.cfg.account,
        "time": httpx::now_iso(),
        "region": cloud.cfg.region,
        "resources": resources,
        "detail": detail,
    })
}

/// Builds an event envelope and delivers it.
pub async fn emit(
    cloud: &Arc<Cloud>,
    source: &str,
    detail_type: &str,
    resources: Vec<String>,
    detail: Value,
) {
    let event = envelope(cloud, source, detail_type, resources, detail);
    deliver(cloud, event).await;
}

/// Matches one event against every enabled rule and invokes the targets in the background.
pub async fn deliver(cloud: &Arc<Cloud>, event: Value) -> usize {
    let mut n = 0;
    for rule in rules(cloud).await.iter() {
        let Some(p) = &rule.pattern else { continue };
        if !rule.enabled || !p.matches(&event) {
            continue;
        }
        for (function, input) in &rule.targets {
            n += 1;
            let payload = input.clone().unwrap_or_else(|| event.to_string());
            invoke_async(cloud.clone(), function.clone(), payload, rule.name.clone());
        }
    }
    n
}

/// Lambda's asynchronous invocation: up to two retries after a function error, a minute
/// apart on AWS, a second apart here so a local run does not stall.
fn invoke_async(cloud: Arc<Cloud>, function: String, payload: String, rule: String) {
    tokio::spawn(async move {
        invoke_with_retries(&cloud, &function, &payload, &rule).await;
    });
}

/// EventBridge `PutEvents` (JSON 1.1): each entry becomes an event on the default bus.
pub async fn put_events_api(cloud: &Arc<Cloud>, req: &Req) -> Resp {
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return httpx::aws_json_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "the request body is not JSON",
        );
    };
    let mut results = Vec::new();
    for e in body["Entries"].as_array().cloned().unwrap_or_default() {
        let detail = e["Detail"]
            .as_str()
            .and_then(|d| serde_json::from_str::<Value>(d).ok());
        let (Some(source), Some(dt), Some(detail)) =
            (e["Source"].as_str(), e["DetailType"].as_str(), detail)
        else {
            results.push(json!({ "ErrorCode": "MalformedDetail", "ErrorMessage": "Source, DetailType and a JSON object Detail are required" }));
            continue;
        };
        let id = httpx::new_id();
        let event = json!({
            "version": "0", "id": id, "detail-type": dt, "source": source,
            "account": cloud.cfg.account, "time": e["Time"].as_str().map(str::to_string).unwrap_or_else(httpx::now_iso),
            "region": cloud.cfg.region, "resources": e["Resources"].clone(), "detail": detail,
        });
        deliver(cloud, event).await;
        results.push(json!({ "EventId": id }));
    }
    let failed = results
        .iter()
        .filter(|r| r.get("ErrorCode").is_some())
        .count();
    httpx::json(
        StatusCode::OK,
        &json!({ "FailedEntryCount": failed, "Entries": results }),
    )
}

fn scheduled_event(cloud: &Cloud, rule: &Rule) -> Value {
    json!({
        "version": "0", "id": httpx::new_id(), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": cloud.cfg.account, "time": httpx::now_iso(), "region": cloud.cfg.region,
        "resources": [rule.arn], "detail": {},
    })
}

/// Fires a rule's targets now with a Scheduled Event (`deployer local fire`). Returns how
/// many targets were invoked.
pub async fn fire(cloud: &Arc<Cloud>, name: &str) -> Result<usize, String> {
    let rules = rules(cloud).await;
    let rule = rules
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("no rule named {name} is deployed"))?;
    let event = scheduled_event(cloud, rule);
    for (function, input) in &rule.targets {
        let payload = input.clone().unwrap_or_else(|| event.to_string());
        invoke_async(cloud.clone(), function.clone(), payload, rule.name.clone());
    }
    Ok(rule.targets.len())
}

/// Fires enabled schedule rules on time. Rule definitions are re-read every tick, so a rule
/// turned on by a deploy starts firing without a restart.
pub fn start_scheduler(cloud: Arc<Cloud>) {
    tokio::spawn(async move {
        let mut next: std::collections::HashMap<String, time::OffsetDateTime> = Default::default();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let now = time::OffsetDateTime::now_utc();
            for rule in rules(&cloud).await.iter() {
                let Some(s) = &rule.schedule else { continue };
                if !rule.enabled {
                    next.remove(&rule.name);
                    continue;
                }
                let due = *next.entry(rule.name.clone()).or_insert_with(|| {
                    s.next_after(now)
                        .unwrap_or(now + Duration::from_secs(86400 * 365))
                });
                if due <= now {
                    let event = scheduled_event(&cloud, rule);
                    for (function, input) in &rule.targets {
                        let payload = input.clone().unwrap_or_else(|| event.to_string());
                        invoke_async(cloud.clone(), function.clone(), payload, rule.name.clone());
                    }
                    if let Some(n) = s.next_after(now) {
                        next.insert(rule.name.clone(), n);
                    }
                }
            }
        }
    });
}
