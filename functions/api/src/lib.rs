//! The pipeline's REST API as one Lambda function behind API Gateway's proxy integration
//! (payload version 1). Routing is a pure function from the proxy request to the proxy response,
//! so every route is tested in-process; `main.rs` only hands it to the Lambda runtime.
//!
//! Every error answers `{ "error": { "code", "message", "fix" } }`.

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

/// The deployed function's settings, read once per cold start from its environment.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub app: String,
    pub env: String,
    pub code_sha256: String,
}

impl Settings {
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).unwrap_or_default();
        Settings {
            app: get("APP_NAME"),
            env: get("APP_ENV"),
            code_sha256: get("CODE_SHA256"),
        }
    }
}

/// Routes one request. The path is the resource path after the stage (`/api/...`).
pub fn handle(settings: &Settings, req: &ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
    let path = req.path.as_deref().unwrap_or("/");
    let method = req.http_method.as_str();
    match (method, path.trim_end_matches('/')) {
        ("GET", "/api/health") => respond(
            200,
            &json!({
                "status": "ok",
                "app": settings.app,
                "env": settings.env,
                "code_sha256": settings.code_sha256,
                "version": env!("CARGO_PKG_VERSION"),
            }),
        ),
        (_, "/api/health") => error(
            405,
            "method_not_allowed",
            &format!("{method} is not allowed on /api/health"),
            "use GET",
        ),
        _ => error(
            404,
            "not_found",
            &format!("no route for {method} {path}"),
            "see functions/api/openapi.yaml for the routes this API serves",
        ),
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
pub fn error(status: i64, code: &str, message: &str, fix: &str) -> ApiGatewayProxyResponse {
    respond(
        status,
        &json!({ "error": { "code": code, "message": message, "fix": fix } }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::http::Method;

    fn req(method: Method, path: &str) -> ApiGatewayProxyRequest {
        let mut r = ApiGatewayProxyRequest::default();
        r.http_method = method;
        r.path = Some(path.to_string());
        r
    }

    fn body(r: &ApiGatewayProxyResponse) -> Value {
        match &r.body {
            Some(Body::Text(t)) => serde_json::from_str(t).unwrap(),
            other => panic!("expected a text body, got {other:?}"),
        }
    }

    #[test]
    fn health_answers_ok_with_the_code_hash() {
        let s = Settings {
            app: "wastesort".into(),
            env: "local".into(),
            code_sha256: "abc".into(),
        };
        let r = handle(&s, &req(Method::GET, "/api/health"));
        assert_eq!(r.status_code, 200);
        assert_eq!(r.headers["content-type"], "application/json");
        let b = body(&r);
        assert_eq!(b["status"], "ok");
        assert_eq!(b["code_sha256"], "abc");
    }

    #[test]
    fn unknown_routes_and_methods_answer_the_error_shape() {
        let s = Settings::default();
        let r = handle(&s, &req(Method::GET, "/api/nope"));
        assert_eq!(r.status_code, 404);
        let b = body(&r);
        assert_eq!(b["error"]["code"], "not_found");
        assert!(b["error"]["fix"].as_str().unwrap().contains("openapi"));
        let r = handle(&s, &req(Method::POST, "/api/health"));
        assert_eq!(r.status_code, 405);
        assert_eq!(body(&r)["error"]["code"], "method_not_allowed");
    }
}
