//! Routing: one async function from the proxy request to the proxy response. Access is
//! decided first (health is public, everything else needs a signed-in user, changes need an
//! approver); then each route reads and checks its input completely before it calls the
//! pipeline, so a refused request changes nothing; every failure is an [`ApiError`] answered in
//! the one error shape.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use pipeline_core::pipeline::Pipeline;
use pipeline_core::repo::ModelRecord;
use pipeline_core::settings::{Settings, SettingsError};
use pipeline_core::status::ModelStatus;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::errors::ApiError;
use crate::predict;

/// Everything a request needs, built once per cold start.
#[derive(Debug, Clone)]
pub struct App {
    pub pipeline: Pipeline,
    pub runtime: aws_sdk_sagemakerruntime::Client,
    /// The deployed code's hash, shown by /api/health so a caller can tell which build answers.
    pub code_sha256: String,
}

impl App {
    /// The deployed function's app: settings from the environment the stack renders, and
    /// clients from the standard AWS environment (endpoint overrides honoured).
    pub async fn from_env() -> Result<App, SettingsError> {
        let pipeline = Pipeline::from_env(Settings::from_env()?).await;
        let cfg = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(App {
            pipeline,
            runtime: aws_sdk_sagemakerruntime::Client::new(&cfg),
            code_sha256: std::env::var("CODE_SHA256").unwrap_or_default(),
        })
    }
}

type Reply = Result<(i64, Value), ApiError>;

/// Routes one request. The path is the resource path after the stage (`/api/...`).
pub async fn handle(app: &App, req: &ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
    match route(app, req).await {
        Ok((status, body)) => respond(status, &body),
        Err(e) => error_response(&e),
    }
}

async fn route(app: &App, req: &ApiGatewayProxyRequest) -> Reply {
    let path = req.path.as_deref().unwrap_or("/");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let m = &req.http_method;
    let get = m == Method::GET;
    let post = m == Method::POST;
    // The one public path: monitors and benchmarks call it without a token, and it tells
    // nothing about the pipeline's records.
    if parts == ["api", "health"] {
        return if get {
            Ok(health(app))
        } else {
            Err(no_route(m, path, &parts))
        };
    }
    // Who asks is settled before the route reads anything, so a refused request changes
    // nothing and learns nothing, not even whether its body or the record it names is valid.
    // API Gateway's authorizer normally refuses an anonymous request first; this holds if a
    // route is ever left unsecured there. Unknown paths are answered after this check, so an
    // anonymous caller cannot map the API either.
    let caller = Caller::from_request(req)?;
    if needs_approver(&parts, m) {
        caller.require_approver(format!("{m} {path}"))?;
    }
    match parts.as_slice() {
        ["api", "models"] if get => list_models(app).await,
        ["api", "models", id] if get => get_model(app, id).await,
        ["api", "models", id, action @ ("accept" | "reject" | "rollback")] if post => {
            decide(app, &caller, id, action, req).await
        }
        ["api", "training"] if post => start_training(app, req).await,
        ["api", "training"] if get => list_runs(app).await,
        ["api", "training", job] if get => get_run(app, job).await,
        ["api", "deployments"] if get => deployments(app).await,
        ["api", "endpoint"] if get => endpoint(app).await,
        ["api", "predict"] if post => predict_route(app, req).await,
        ["api", "subscriptions"] if post => subscribe(app, req).await,
        _ => Err(no_route(m, path, &parts)),
    }
}

/// The 405 for a known path with another method, else the 404.
fn no_route(m: &Method, path: &str, parts: &[&str]) -> ApiError {
    match allowed(parts) {
        Some(allow) => ApiError {
            allow: Some(allow),
            ..ApiError::new(
                405,
                "method_not_allowed",
                format!("{m} is not allowed on {path}"),
                format!("use {allow}"),
            )
        },
        None => ApiError::new(
            404,
            "not_found",
            format!("no route for {m} {path}"),
            "see functions/api/openapi.yaml for the routes this API serves",
        ),
    }
}

/// Whether an operation changes the pipeline and so needs the approvers group. Decided from
/// [`allowed`] rather than a list of writes: every known operation other than a GET is
/// closed to plain users unless named here, so a write route added later starts out closed.
/// Prediction is open to every signed-in user: it only stores the image it classifies.
fn needs_approver(parts: &[&str], m: &Method) -> bool {
    let known = allowed(parts).is_some_and(|a| a.split(", ").any(|x| x == m.as_str()));
    let open = *m == Method::GET || (*m == Method::POST && parts == ["api", "predict"]);
    known && !open
}

/// The methods a known path allows, for 405 and its Allow header.
fn allowed(parts: &[&str]) -> Option<&'static str> {
    match parts {
        ["api", "health" | "models" | "deployments" | "endpoint"] => Some("GET"),
        ["api", "models", _] | ["api", "training", _] => Some("GET"),
        ["api", "models", _, "accept" | "reject" | "rollback"] => Some("POST"),
        ["api", "training"] => Some("GET, POST"),
        ["api", "predict" | "subscriptions"] => Some("POST"),
        _ => None,
    }
}

fn respond(status: i64, body: &Value) -> ApiGatewayProxyResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.headers = headers;
    r.body = Some(Body::Text(body.to_string()));
    r.is_base64_encoded = false;
    r
}

/// The one error shape every route uses.
pub fn error_response(e: &ApiError) -> ApiGatewayProxyResponse {
    let mut r = respond(e.status, &e.body());
    if let Some(allow) = e.allow {
        r.headers.insert("allow", HeaderValue::from_static(allow));
    }
    r
}

fn health(app: &App) -> (i64, Value) {
    let s = &app.pipeline.settings;
    (
        200,
        json!({
            "status": "ok",
            "app": s.app,
            "env": s.env,
            "code_sha256": app.code_sha256,
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

/// Absent values are left out rather than sent as null: the document declares them optional.
fn drop_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, drop_nulls(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(drop_nulls).collect()),
        other => other,
    }
}

fn model_json(m: &ModelRecord) -> Result<Value, ApiError> {
    serde_json::to_value(m)
        .map(drop_nulls)
        .map_err(|e| ApiError::internal(&e))
}

async fn list_models(app: &App) -> Reply {
    let models = app.pipeline.repo.list_models_cached().await?;
    let list = models
        .iter()
        .map(model_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((200, json!({ "models": list })))
}

async fn get_model(app: &App, id: &str) -> Reply {
    let m = app.pipeline.repo.get_model(id).await?;
    Ok((200, model_json(&m)?))
}

/// A request body that must be a JSON object.
/// The largest JSON body a route reads: decisions and subscriptions are a few fields, and a
/// request of megabytes would only cost memory and time (on AWS, Lambda refuses a synchronous
/// request over 6 MB with an opaque 500).
pub const MAX_JSON_BYTES: usize = 64 * 1024;

fn json_body(req: &ApiGatewayProxyRequest, example: &str) -> Result<Map<String, Value>, ApiError> {
    let raw = req.body.as_deref().unwrap_or_default();
    if raw.len() > MAX_JSON_BYTES * 4 / 3 + 4
        || (!req.is_base64_encoded && raw.len() > MAX_JSON_BYTES)
    {
        return Err(ApiError::new(
            413,
            "payload_too_large",
            format!(
                "the body has {} bytes; this route reads at most {MAX_JSON_BYTES}",
                raw.len()
            ),
            format!("send {example}"),
        ));
    }
    let text = if req.is_base64_encoded {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|_| {
                ApiError::bad_request("the body is not valid base64", format!("send {example}"))
            })?;
        String::from_utf8(bytes).map_err(|_| {
            ApiError::bad_request("the body is not UTF-8 text", format!("send {example}"))
        })?
    } else {
        raw.to_string()
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "the body must be a JSON object",
            format!("send {example}"),
        )),
        Err(e) => Err(ApiError::bad_request(
            format!("the body is not valid JSON: {e}"),
            format!("send {example}"),
        )),
    }
}

/// A required, non-empty string field.
fn text_field(m: &Map<String, Value>, name: &str, example: &str) -> Result<String, ApiError> {
    match m.get(name).and_then(Value::as_str).map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(ApiError::bad_request(
            format!("field {name} (a non-empty string) is missing"),
            format!("send {example}"),
        )),
    }
}

async fn decide(
    app: &App,
    caller: &Caller,
    id: &str,
    action: &str,
    req: &ApiGatewayProxyRequest,
) -> Reply {
    const EXAMPLE: &str = "{ \"reason\": \"why\" }";
    let body = json_body(req, EXAMPLE)?;
    let reason = text_field(&body, "reason", EXAMPLE)?;
    // The actor is whoever the verified token names. A body's `by` (older clients send one)
    // is a claim anyone can make, so it is accepted and ignored.
    let by = caller.actor();
    let p = &app.pipeline;
    match action {
        "accept" => {
            let d = p.accept(id, by, &reason).await?;
            Ok((
                202,
                json!({ "deployment_id": d.deployment_id, "model_id": d.model_id }),
            ))
        }
        "rollback" => {
            // Checked first so a model in any other state answers 409 before anything moves.
            let m = p.repo.get_model(id).await?;
            if !m.status.rollback_target() {
                return Err(ApiError::new(
                    409,
                    "conflict",
                    format!("model {id} is {}, not superseded: only an earlier deployed model can be rolled back to", m.status),
                    "GET /api/deployments lists the models that were deployed before",
                ));
            }
            let d = p.rollback(id, by, &reason).await?;
            Ok((
                202,
                json!({ "deployment_id": d.deployment_id, "model_id": d.model_id }),
            ))
        }
        _ => {
            let m = p.reject(id, by, &reason).await?;
            Ok((200, model_json(&m)?))
        }
    }
}

fn request_time_ms(req: &ApiGatewayProxyRequest) -> i64 {
    let t = req.request_context.request_time_epoch;
    if t > 0 {
        t
    } else {
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
    }
}

async fn start_training(app: &App, req: &ApiGatewayProxyRequest) -> Reply {
    let p = &app.pipeline;
    if let Some(running) = p.training_in_progress().await? {
        return Err(ApiError::new(
            409,
            "training_in_progress",
            format!(
                "training job {} is still running on {}",
                running.training_job, running.dataset
            ),
            "wait until GET /api/training shows it finished, then start another",
        ));
    }
    let Some((dataset, etag)) = p.latest_dataset().await? else {
        return Err(ApiError::new(
            409,
            "no_dataset",
            "there is no complete data set to train on",
            "push one with `deployer dataset push DIR`",
        ));
    };
    // A manual start is its own trigger: the request time makes its job name new, while the
    // dataset's etag keeps the name tied to the data it trains on.
    let trigger = format!("{}@{}", etag.trim_matches('"'), request_time_ms(req));
    let s = p.start_training(&dataset, &trigger).await?;
    Ok((
        202,
        json!({ "job": s.job, "model_id": s.model_id, "dataset": dataset }),
    ))
}

fn run_json(m: &ModelRecord) -> Value {
    let state = match m.status {
        ModelStatus::Training => "in_progress",
        ModelStatus::Failed => "failed",
        _ => "completed",
    };
    drop_nulls(json!({
        "job": m.training_job,
        "model_id": m.id,
        "dataset": m.dataset,
        "dataset_etag": m.dataset_etag,
        "status": state,
        "model_status": m.status,
        "started_at": m.created_at,
        "updated_at": m.updated_at,
        "failure_reason": if m.status == ModelStatus::Failed { m.failure_reason.clone() } else { None },
    }))
}

async fn list_runs(app: &App) -> Reply {
    let runs: Vec<Value> = app
        .pipeline
        .repo
        .list_models()
        .await?
        .iter()
        .map(run_json)
        .collect();
    Ok((200, json!({ "runs": runs })))
}

async fn get_run(app: &App, job: &str) -> Reply {
    let models = app.pipeline.repo.list_models().await?;
    match models.iter().find(|m| m.training_job == job) {
        Some(m) => Ok((200, run_json(m))),
        None => Err(ApiError::new(
            404,
            "not_found",
            format!("training job {job} does not exist"),
            "GET /api/training lists the runs",
        )),
    }
}

async fn deployments(app: &App) -> Reply {
    let models = app.pipeline.repo.list_models().await?;
    let mut events: Vec<Value> = models
        .iter()
        .flat_map(|m| {
            m.decisions.iter().map(move |d| {
                json!({
                    "at": d.at,
                    "action": d.action,
                    "by": d.by,
                    "reason": d.reason,
                    "model_id": m.id,
                    "outcome": m.status,
                })
            })
        })
        .collect();
    // ISO-8601 UTC strings sort as times.
    events.sort_by(|a, b| b["at"].as_str().cmp(&a["at"].as_str()));
    Ok((200, json!({ "deployments": events })))
}

async fn endpoint(app: &App) -> Reply {
    let p = &app.pipeline;
    let serving = p.deployed().await?.map(|m| m.id);
    let name = p.settings.endpoint_name.clone();
    let body = match p.endpoint_status().await? {
        None => json!({ "name": name, "status": "none", "serving_model_id": serving }),
        Some(e) => json!({
            "name": e.name,
            "status": e.status,
            "config_name": e.config_name,
            "failure_reason": e.failure_reason,
            "last_modified": e.last_modified,
            "serving_model_id": serving,
        }),
    };
    Ok((200, drop_nulls(body)))
}

async fn predict_route(app: &App, req: &ApiGatewayProxyRequest) -> Reply {
    let (bytes, kind) = predict::read_image(req)?;
    let p = &app.pipeline;
    if p.deployed().await?.is_none() {
        return Err(predict::not_serving("no model has been deployed"));
    }
    match p.endpoint_status().await? {
        Some(e) if predict::serves(&e.status) => {}
        Some(e) => {
            return Err(predict::not_serving(&format!(
                "the endpoint is {}",
                e.status
            )))
        }
        None => return Err(predict::not_serving("the endpoint does not exist")),
    }
    // The image is kept for later review and retraining once the model has classified it: an
    // image the model refuses (corrupt, a bomb) is not stored. A store that fails (a full
    // bucket quota, the local cloud's disk) is logged, and the user still gets the answer.
    let answer =
        predict::invoke(&app.runtime, &p.settings.endpoint_name, bytes.clone(), kind).await?;
    if let Err(e) = p.store_upload(&bytes, kind.ext(), kind.mime()).await {
        eprintln!("warning: the upload was not kept: {e}");
    }
    Ok((200, answer))
}

/// Deliberately modest: one `@`, a dotted domain, no spaces; SNS's confirmation email is the
/// real check.
pub fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    e.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

async fn subscribe(app: &App, req: &ApiGatewayProxyRequest) -> Reply {
    const EXAMPLE: &str = "{ \"email\": \"you@example.com\" }";
    let body = json_body(req, EXAMPLE)?;
    let email = text_field(&body, "email", EXAMPLE)?;
    if !valid_email(&email) {
        return Err(ApiError::bad_request(
            format!("{email:?} is not an email address"),
            format!("send {EXAMPLE}"),
        ));
    }
    app.pipeline.subscribe(&email).await?;
    Ok((202, json!({ "subscription": "pending confirmation" })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_modestly() {
        for ok in ["a@b.co", "first.last+tag@mail.example.org"] {
            assert!(valid_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@.co", "a@b.co.", "a@b..co",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn known_paths_allow_their_methods() {
        assert_eq!(allowed(&["api", "training"]), Some("GET, POST"));
        assert_eq!(allowed(&["api", "models", "m1", "accept"]), Some("POST"));
        assert_eq!(allowed(&["api", "nope"]), None);
    }

    #[test]
    fn every_write_but_prediction_needs_an_approver() {
        let writes: [&[&str]; 5] = [
            &["api", "training"],
            &["api", "models", "m1", "accept"],
            &["api", "models", "m1", "reject"],
            &["api", "models", "m1", "rollback"],
            &["api", "subscriptions"],
        ];
        for parts in writes {
            assert!(needs_approver(parts, &Method::POST), "{parts:?}");
        }
        let reads: [&[&str]; 7] = [
            &["api", "models"],
            &["api", "models", "m1"],
            &["api", "training"],
            &["api", "training", "j1"],
            &["api", "deployments"],
            &["api", "endpoint"],
            &["api", "health"],
        ];
        for parts in reads {
            assert!(!needs_approver(parts, &Method::GET), "{parts:?}");
        }
        assert!(!needs_approver(&["api", "predict"], &Method::POST));
        // Not an operation at all: answered 404/405 to any signed-in user, never 403.
        assert!(!needs_approver(&["api", "training"], &Method::PUT));
        assert!(!needs_approver(&["api", "models", "m1"], &Method::DELETE));
        assert!(!needs_approver(&["api", "nope"], &Method::POST));
    }
}
