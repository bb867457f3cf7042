//! The front door: the one endpoint (`AWS_ENDPOINT_URL`) every SDK client of the deployer and
//! the handlers uses locally. It routes by the SigV4 credential scope's service: SageMaker
//! and sagemaker-runtime are served here, Lambda `Invoke` runs the function, EventBridge
//! `PutEvents` is delivered here; S3 and SNS pass through to moto and then emit their side
//! effects (Object Created events, mail in the outbox); everything else passes through
//! untouched; Cognito answers CORS, since the web app signs in from the browser.
//! `/_localcloud/*` is the control API behind `deployer local ...`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use crate::cloud::Cloud;
use crate::httpx::{self, aws_json_error, Req, Resp};

/// S3 and Lambda accept bodies far larger than the pipeline sends; 64 MB bounds memory.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub fn serve(cloud: Arc<Cloud>, listener: tokio::net::TcpListener) {
    // Serves for the life of the process: the task handle is not needed.
    drop(httpx::serve(listener, move |req: Request<Incoming>| {
        let cloud = cloud.clone();
        async move {
            match Req::read(req, BODY_LIMIT).await {
                Ok(r) => route(&cloud, r).await,
                Err(e) => {
                    aws_json_error(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge", &e)
                }
            }
        }
    }));
}

async fn route(cloud: &Arc<Cloud>, req: Req) -> Resp {
    let path = req.path().to_string();
    if let Some(rest) = path.strip_prefix("/_localcloud/") {
        return control(cloud, rest, &req).await;
    }
    // Browsers sign in against Cognito directly (unsigned calls from the web app's origin):
    // answer CORS as Cognito does.
    if req.method == Method::OPTIONS && req.header("access-control-request-method").is_some() {
        return cors(httpx::json(StatusCode::OK, &json!({})));
    }
    let service = req.signing_service().unwrap_or_default();
    let cognito = service == "cognito-idp"
        || req
            .header("x-amz-target")
            .is_some_and(|t| t.starts_with("AWSCognitoIdentityProviderService."));
    if service == "sagemaker" || path.starts_with("/endpoints/") {
        if path.starts_with("/endpoints/") && path.ends_with("/invocations") {
            return crate::sagemaker::invoke_endpoint(cloud, &req).await;
        }
        return crate::sagemaker::handle(cloud, &req).await;
    }
    if service == "events" && req.action().as_deref() == Some("PutEvents") {
        return crate::bus::put_events_api(cloud, &req).await;
    }
    if service == "lambda" && req.method == Method::POST {
        if let Some(name) = path
            .strip_prefix("/2015-03-31/functions/")
            .and_then(|r| r.strip_suffix("/invocations"))
        {
            return crate::lambda::invoke_api(cloud, name, &req).await;
        }
    }
    let resp = match forward(cloud, &req).await {
        Ok(r) => r,
        Err(e) => {
            return aws_json_error(
                StatusCode::BAD_GATEWAY,
                "ServiceUnavailable",
                &format!("the emulator did not answer ({e}); is it running? `deployer local status` shows it"),
            )
        }
    };
    let mut resp = resp;
    if cognito {
        return cors(resp.into_response());
    }
    if resp.status.is_success() {
        match service.as_str() {
            "s3" => crate::s3events::after(cloud, &req, &resp).await,
            "sns" => crate::outbox::after(cloud, &req, &mut resp).await,
            _ => {}
        }
    }
    resp.into_response()
}

/// Cognito's CORS answer: any origin may call it (its calls carry no cookies).
fn cors(mut r: Resp) -> Resp {
    use hyper::header::HeaderValue;
    let h = r.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static(
            "content-type, x-amz-target, x-amz-user-agent, authorization, cache-control",
        ),
    );
    h.insert("access-control-max-age", HeaderValue::from_static("600"));
    r
}

/// Passes a request to moto and records it if it changed state.
pub async fn forward(cloud: &Cloud, req: &Req) -> Result<httpx::Buffered, String> {
    // Written ahead: a change that cannot be recorded would be lost by the next restart, so
    // it is refused before moto sees it (the SDKs retry a 503, then report it).
    let recorded = if crate::record::is_mutating(req) {
        match cloud.recorder.begin(req) {
            Ok(id) => Some(id),
            // A deletion goes through anyway, so `down` can still clean up on a full disk: if
            // the emulator restarts before the deletion is recorded, the replay brings the
            // resource back, which `down` removes again; nothing is lost.
            Err(why) if crate::record::is_deletion(req) => {
                tracing::warn!(%why, "forwarding a deletion that could not be recorded");
                None
            }
            Err(why) => {
                tracing::error!(%why, "refused a change that cannot be recorded");
                return Ok(unavailable(
                    req,
                    &format!(
                        "{why}; free space (or make the state directory writable) and try again"
                    ),
                ));
            }
        }
    } else {
        None
    };
    let resp = match cloud.http.send(&cloud.cfg.moto_url, req).await {
        Ok(r) => r,
        Err(e) => {
            if let Some(id) = recorded {
                cloud.recorder.revoke(id);
            }
            return Err(e);
        }
    };
    if let Some(id) = recorded.filter(|_| !resp.status.is_success()) {
        cloud.recorder.revoke(id);
    }
    if resp.status.is_success() && recorded.is_some() {
        // A deploy: functions are read again before they next run (stack changes reach
        // Lambda inside the emulator, unseen here, hence CloudFormation too).
        if matches!(
            req.signing_service().as_deref(),
            Some("lambda" | "cloudformation")
        ) {
            cloud.lambda.changed();
        }
    }
    Ok(resp)
}

/// A 503 in the error shape of the request's protocol: XML for S3 and the query protocols
/// (SNS, IAM, CloudFormation, STS), JSON for the rest.
fn unavailable(req: &Req, message: &str) -> httpx::Buffered {
    let xml = matches!(
        req.signing_service().as_deref(),
        Some("s3" | "sns" | "iam" | "cloudformation" | "sts")
    );
    let (body, content_type) = if xml {
        let esc = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        (
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code><Message>{esc}</Message></Error>"),
            "application/xml",
        )
    } else {
        (
            json!({ "__type": "ServiceUnavailable", "message": message, "Message": message })
                .to_string(),
            "application/x-amz-json-1.1",
        )
    };
    let mut headers = hyper::HeaderMap::new();
    headers.insert(
        "content-type",
        hyper::header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_static("ServiceUnavailable"),
    );
    httpx::Buffered {
        status: StatusCode::SERVICE_UNAVAILABLE,
        headers,
        body: body.into(),
    }
}

async fn control(cloud: &Arc<Cloud>, rest: &str, req: &Req) -> Resp {
    match (req.method.clone(), rest) {
        (Method::GET, "health") => httpx::json(StatusCode::OK, &json!({ "ok": true })),
        (Method::GET, "status") => httpx::json(
            StatusCode::OK,
            &json!({
                "pid": std::process::id(),
                "url": cloud.front_url,
                "api_base": cloud.api_base,
                "processes": cloud.procs.list(),
                "endpoints": cloud.sagemaker.endpoint_summaries(),
            }),
        ),
        (Method::GET, "mail") => httpx::json(
            StatusCode::OK,
            &serde_json::Value::Array(cloud.outbox.list()),
        ),
        // The link in a subscription's confirmation mail (GET, as a mail client follows it).
        (Method::GET, "sns/confirm") => {
            let arn = req
                .query_pairs()
                .into_iter()
                .find(|(k, _)| k == "arn")
                .map(|(_, v)| v)
                .unwrap_or_default();
            if cloud.outbox.confirm(&arn) {
                httpx::json(
                    StatusCode::OK,
                    &json!({ "confirmed": arn, "message": "Subscription confirmed: this address now receives the pipeline's mail." }),
                )
            } else {
                httpx::json(
                    StatusCode::NOT_FOUND,
                    &json!({ "error": { "code": "NotPending", "message": format!("no subscription {arn} waits for confirmation"), "fix": "use the link from the newest confirmation mail (`deployer local mail`)" } }),
                )
            }
        }
        (Method::POST, r) if r.starts_with("fire/") => {
            let rule = &r["fire/".len()..];
            match crate::bus::fire(cloud, rule).await {
                Ok(n) => httpx::json(StatusCode::OK, &json!({ "rule": rule, "targets": n })),
                Err(e) => httpx::json(
                    StatusCode::NOT_FOUND,
                    &json!({ "error": { "code": "RuleNotFound", "message": e, "fix": "list the stack's rules with `deployer status`; schedule rules are named <app>-<env>-retrain-schedule" } }),
                ),
            }
        }
        _ => httpx::json(
            StatusCode::NOT_FOUND,
            &json!({ "error": { "code": "NotFound", "message": format!("no local cloud control route {rest}"), "fix": "use `deployer local status|logs|mail|fire`" } }),
        ),
    }
}
