//! The API gateway: serves the stack's REST API at `http://127.0.0.1:<port>/<stage>/...`.
//! Routes come from the deployed API in moto (resources, methods, Lambda proxy
//! integrations, stages, binary media types), not a second list. A request becomes an API
//! Gateway v1 proxy event (path and query parameters, headers single- and multi-valued, body
//! base64-encoded when its type is one of the API's binary media types) and the function's
//! answer becomes the HTTP response, with API Gateway's own errors for a missing route (403),
//! a failed function (502), the 29 s integration timeout (504) and the 10 MB payload limit.
//! Methods with Cognito authorization pass through [`crate::authorizer`] first.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::cloud::Cloud;
use crate::httpx::{self, full, Req, Resp};

const PAYLOAD_LIMIT: usize = 10 * 1024 * 1024;
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);
const ROUTES_TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Route {
    pub resource_path: String,
    pub resource_id: String,
    pub method: String,
    pub function: String,
    /// `NONE` or `COGNITO_USER_POOLS` (others are not enforced locally).
    pub authorization: String,
    pub authorizer_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Api {
    pub id: String,
    pub stages: Vec<String>,
    pub binary_types: Vec<String>,
    pub routes: Vec<Route>,
    pub created: f64,
    /// Cognito authorizers: id and the user pool ARNs each accepts.
    pub authorizers: Vec<(String, Vec<String>)>,
}

/// The deployed REST APIs, read from the emulator and trusted for [`ROUTES_TTL`]. Older
/// routes still answer while a background task reads them again (a dozen emulator calls that
/// would otherwise land on some request's path); a request that matches nothing in them waits
/// for a fresh read instead, so a route `up` just added is found at once.
#[derive(Debug, Default)]
pub struct Routes {
    cache: Mutex<Option<(Instant, Arc<Vec<Api>>)>>,
    reloading: std::sync::atomic::AtomicBool,
}

/// API Gateway's limit on a REST request's line and header values together, in bytes.
const HEADER_LIMIT: usize = 10_240;

pub fn serve(cloud: Arc<Cloud>, listener: tokio::net::TcpListener) {
    // Serves for the life of the process: the task handle is not needed.
    drop(httpx::serve(listener, move |req: Request<Incoming>| {
        let cloud = cloud.clone();
        async move {
            // API Gateway's quota on the request line and headers together.
            let head: usize = req.uri().to_string().len()
                + req
                    .headers()
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len() + 4)
                    .sum::<usize>();
            if head > HEADER_LIMIT {
                return gw_error(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "Request Header Fields Too Large",
                );
            }
            match Req::read(req, PAYLOAD_LIMIT).await {
                Ok(r) => handle(&cloud, r).await,
                Err(_) => gw_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Too Long"),
            }
        }
    }));
}

/// The gateway's own refusals in the API's error shape, as the stack's gateway responses
/// (REQUEST_TOO_LARGE, DEFAULT_4XX, DEFAULT_5XX) answer them on AWS; `message` is API
/// Gateway's own (`$context.error.messageString`).
fn gw_error(status: StatusCode, message: &str) -> Resp {
    let (code, fix) = match status.as_u16() {
        413 => (
            "payload_too_large",
            "send at most 10 MB (API Gateway's limit); an image for /api/predict at most 4 MB",
        ),
        431 => (
            "gateway_refused",
            "send at most 10,240 bytes of request line and headers (API Gateway's limit)",
        ),
        400..=499 => (
            "gateway_refused",
            "check the method and path against the API's description (functions/api/openapi.yaml)",
        ),
        _ => (
            "gateway_error",
            "try again; if it keeps failing, the api function's log has the cause",
        ),
    };
    let mut r = httpx::json(
        status,
        &json!({ "error": { "code": code, "message": message, "fix": fix } }),
    );
    r.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_static("ApiGatewayError"),
    );
    r
}

/// API Gateway's answer to a path outside every deployed stage: no API's gateway responses
/// apply there.
fn no_stage() -> Resp {
    let mut r = httpx::json(StatusCode::FORBIDDEN, &json!({ "message": "Forbidden" }));
    r.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_static("ApiGatewayError"),
    );
    r
}

/// The routes as last read, refreshed in the background when older than [`ROUTES_TTL`]; read
/// now when there are none yet.
async fn apis(cloud: &Arc<Cloud>) -> Arc<Vec<Api>> {
    use std::sync::atomic::Ordering;
    if let Some((at, a)) = cloud.routes.cache.lock().ok().and_then(|g| g.clone()) {
        if at.elapsed() >= ROUTES_TTL && !cloud.routes.reloading.swap(true, Ordering::SeqCst) {
            let cloud = cloud.clone();
            // Detached: the reload outlives the request that noticed the old routes.
            drop(tokio::spawn(async move {
                reload(&cloud).await;
                cloud.routes.reloading.store(false, Ordering::SeqCst);
            }));
        }
        return a;
    }
    reload(cloud).await
}

/// Reads the routes now (a request found none that match, or there were none yet).
async fn reload(cloud: &Cloud) -> Arc<Vec<Api>> {
    let fresh = Arc::new(load(cloud).await);
    if let Ok(mut g) = cloud.routes.cache.lock() {
        *g = Some((Instant::now(), fresh.clone()));
    }
    fresh
}

/// The API serving `stage`, and the route and path parameters of `method rest` in it.
fn find<'a>(
    apis: &'a [Api],
    stage: &str,
    method: &str,
    rest: &str,
) -> Option<(&'a Api, &'a Route, BTreeMap<String, String>)> {
    let api = apis
        .iter()
        .filter(|a| a.stages.iter().any(|s| s == stage))
        .max_by(|a, b| a.created.total_cmp(&b.created))?;
    let (route, params) = api
        .routes
        .iter()
        .filter(|r| r.method == method || r.method == "ANY")
        .filter_map(|r| match_path(&r.resource_path, rest).map(|(p, s)| (r, p, s)))
        .max_by_key(|(r, _, s)| (*s, r.method != "ANY"))
        .map(|(r, p, _)| (r, p))?;
    Some((api, route, params))
}

fn function_from_uri(uri: &str) -> Option<String> {
    let arn = uri
        .split("/functions/")
        .nth(1)?
        .split("/invocations")
        .next()?;
    let after = arn.split(":function:").nth(1)?;
    Some(after.split(':').next()?.to_string())
}

async fn load(cloud: &Cloud) -> Vec<Api> {
    let gw = aws_sdk_apigateway::Client::new(&cloud.moto);
    let Ok(list) = gw.get_rest_apis().limit(500).send().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for api in list.items() {
        let Some(id) = api.id() else { continue };
        let stages = gw
            .get_stages()
            .rest_api_id(id)
            .send()
            .await
            .map(|s| {
                s.item()
                    .iter()
                    .filter_map(|st| st.stage_name().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut routes = Vec::new();
        if let Ok(res) = gw.get_resources().rest_api_id(id).limit(500).send().await {
            for r in res.items() {
                let (Some(path), Some(rid)) = (r.path(), r.id()) else {
                    continue;
                };
                for method in r
                    .resource_methods()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    let Ok(m) = gw
                        .get_method()
                        .rest_api_id(id)
                        .resource_id(rid)
                        .http_method(&method)
                        .send()
                        .await
                    else {
                        continue;
                    };
                    let function = m
                        .method_integration()
                        .and_then(|i| i.uri())
                        .and_then(function_from_uri);
                    if let Some(function) = function {
                        routes.push(Route {
                            resource_path: path.to_string(),
                            resource_id: rid.to_string(),
                            method,
                            function,
                            authorization: m.authorization_type().unwrap_or("NONE").to_string(),
                            authorizer_id: m.authorizer_id().map(str::to_string),
                        });
                    }
                }
            }
        }
        let authorizers = gw
            .get_authorizers()
            .rest_api_id(id)
            .send()
            .await
            .map(|a| {
                a.items()
                    .iter()
                    .filter(|a| {
                        a.r#type()
                            == Some(&aws_sdk_apigateway::types::AuthorizerType::CognitoUserPools)
                    })
                    .filter_map(|a| Some((a.id()?.to_string(), a.provider_arns().to_vec())))
                    .collect()
            })
            .unwrap_or_default();
        out.push(Api {
            authorizers,
            id: id.to_string(),
            stages,
            binary_types: api.binary_media_types().to_vec(),
            routes,
            created: api.created_date().map(|d| d.as_secs_f64()).unwrap_or(0.0),
        });
    }
    out
}

/// Matches a request path against a resource template; returns the path parameters and a
/// specificity score (literal segments count more than variables, greedy last).
pub fn match_path(template: &str, path: &str) -> Option<(BTreeMap<String, String>, usize)> {
    let t: Vec<&str> = template.split('/').filter(|s| !s.is_empty()).collect();
    let p: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut params = BTreeMap::new();
    let mut score = 0;
    for (i, seg) in t.iter().enumerate() {
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            if p.len() <= i {
                return None;
            }
            params.insert(name.to_string(), p[i..].join("/"));
            return Some((params, score));
        }
        let got = p.get(i)?;
        if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            params.insert(
                name.to_string(),
                percent_encoding::percent_decode_str(got)
                    .decode_utf8_lossy()
                    .into_owned(),
            );
            score += 1;
        } else if seg == got {
            score += 3;
        } else {
            return None;
        }
    }
    (t.len() == p.len()).then_some((params, score))
}

fn is_binary(types: &[String], content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    types.iter().any(|t| {
        let t = t.replace("~1", "/").to_ascii_lowercase();
        t == "*/*"
            || t == ct
            || t.strip_suffix("/*")
                .is_some_and(|major| ct.split('/').next() == Some(major))
    })
}

async fn handle(cloud: &Arc<Cloud>, req: Req) -> Resp {
    let full_path = req.path().to_string();
    let mut segs = full_path.trim_start_matches('/').splitn(2, '/');
    let stage = segs.next().unwrap_or("").to_string();
    let rest = format!("/{}", segs.next().unwrap_or(""));
    let method = req.method.as_str().to_string();
    let mut apis = apis(cloud).await;
    if find(&apis, &stage, &method, &rest).is_none() {
        // Perhaps deployed since the routes were read: look again before refusing.
        apis = reload(cloud).await;
    }
    let Some((api, route, params)) = find(&apis, &stage, &method, &rest) else {
        let stage_known = apis.iter().any(|a| a.stages.iter().any(|s| s == &stage));
        return if stage_known {
            gw_error(StatusCode::FORBIDDEN, "Missing Authentication Token")
        } else {
            no_stage()
        };
    };
    let claims = if route.authorization == "COGNITO_USER_POOLS" {
        // The template attaches the authorizer by id; the emulator cannot (no UpdateMethod),
        // so a method without one uses the API's Cognito authorizers, which `deployer up`
        // creates. None at all: refuse, as an unconfigured authorizer would.
        let arns: Vec<String> = api
            .authorizers
            .iter()
            .filter(|(id, _)| route.authorizer_id.as_deref().is_none_or(|want| want == id))
            .flat_map(|(_, arns)| arns.iter().cloned())
            .collect();
        match crate::authorizer::authorize(cloud, &arns, req.header("authorization")).await {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::info!(path = %rest, %why, "authorizer refused the request");
                let mut r = httpx::json(
                    StatusCode::UNAUTHORIZED,
                    &serde_json::from_str::<Value>(crate::authorizer::UNAUTHORIZED_BODY)
                        .unwrap_or_default(),
                );
                r.headers_mut().insert(
                    "x-amzn-errortype",
                    hyper::header::HeaderValue::from_static("UnauthorizedException"),
                );
                return r;
            }
        }
    } else {
        None
    };
    let mut event = proxy_event(cloud, api, route, &stage, &rest, &params, &req);
    if let Some(c) = claims {
        event["requestContext"]["authorizer"] = json!({ "claims": c });
    }
    let invoked = tokio::time::timeout(
        INTEGRATION_TIMEOUT,
        crate::lambda::invoke(cloud, &route.function, event.to_string().into()),
    )
    .await;
    let out = match invoked {
        Err(_) => return gw_error(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "API integration failed");
            return gw_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
        Ok(Ok(out)) => out,
    };
    if out.error.is_some() {
        return gw_error(StatusCode::BAD_GATEWAY, "Internal server error");
    }
    proxy_response(&out.payload)
        .unwrap_or_else(|| gw_error(StatusCode::BAD_GATEWAY, "Internal server error"))
}

fn proxy_event(
    cloud: &Cloud,
    api: &Api,
    route: &Route,
    stage: &str,
    rest: &str,
    params: &BTreeMap<String, String>,
    req: &Req,
) -> Value {
    let mut headers = serde_json::Map::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &req.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        headers.insert(k.to_string(), json!(v));
        multi.entry(k.to_string()).or_default().push(v);
    }
    let mut query = serde_json::Map::new();
    let mut mquery: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.query_pairs() {
        query.insert(k.clone(), json!(v));
        mquery.entry(k).or_default().push(v);
    }
    let binary = is_binary(&api.binary_types, req.header("content-type"));
    let body = if req.body.is_empty() {
        Value::Null
    } else if binary {
        json!(base64::engine::general_purpose::STANDARD.encode(&req.body))
    } else {
        json!(String::from_utf8_lossy(&req.body))
    };
    let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    json!({
        "resource": route.resource_path,
        "path": rest,
        "httpMethod": req.method.as_str(),
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
        "multiValueQueryStringParameters": if mquery.is_empty() { Value::Null } else { json!(mquery) },
        "pathParameters": if params.is_empty() { Value::Null } else { json!(params) },
        "stageVariables": Value::Null,
        "requestContext": {
            "accountId": cloud.cfg.account,
            "apiId": api.id,
            "resourceId": route.resource_id,
            "resourcePath": route.resource_path,
            "httpMethod": req.method.as_str(),
            "path": format!("/{stage}{rest}"),
            "stage": stage,
            "protocol": "HTTP/1.1",
            "requestId": httpx::new_id(),
            "requestTime": httpx::now_iso(),
            "requestTimeEpoch": now_ms,
            "domainName": req.header("host").unwrap_or("127.0.0.1"),
            "identity": { "sourceIp": "127.0.0.1", "userAgent": req.header("user-agent") },
        },
        "body": body,
        "isBase64Encoded": binary && !req.body.is_empty(),
    })
}

fn proxy_response(payload: &Bytes) -> Option<Resp> {
    let v: Value = serde_json::from_slice(payload).ok()?;
    let status = StatusCode::from_u16(v["statusCode"].as_u64().unwrap_or(200) as u16).ok()?;
    let body = match v["body"].as_str() {
        None => Bytes::new(),
        Some(b) if v["isBase64Encoded"].as_bool().unwrap_or(false) => {
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()?
                .into()
        }
        Some(b) => Bytes::from(b.to_string()),
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Some(m) = v["headers"].as_object() {
        for (k, val) in m {
            if let (Ok(k), Some(Ok(val))) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                val.as_str().map(hyper::header::HeaderValue::from_str),
            ) {
                h.insert(k, val);
            }
        }
    }
    if let Some(m) = v["multiValueHeaders"].as_object() {
        for (k, vals) in m {
            let Ok(k) = hyper::header::HeaderName::from_bytes(k.as_bytes()) else {
                continue;
            };
            h.remove(&k);
            for val in vals.as_array().into_iter().flatten() {
                if let Some(Ok(val)) = val.as_str().map(hyper::header::HeaderValue::from_str) {
                    h.append(k.clone(), val);
                }
            }
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_templates_by_specificity() {
        let (p, s1) = match_path("/api/{proxy+}", "/api/models/m1/accept").unwrap_or_default();
        assert_eq!(p["proxy"], "models/m1/accept");
        let (p2, s2) = match_path("/api/models/{id}", "/api/models/m%201").unwrap_or_default();
        assert_eq!(p2["id"], "m 1");
        assert!(s2 > s1);
        assert!(match_path("/api/{proxy+}", "/api").is_none());
        assert!(match_path("/api/health", "/api/models").is_none());
        assert!(match_path("/", "/").is_some());
    }

    #[test]
    fn binary_types_match_like_api_gateway() {
        let types = vec!["image/*".to_string(), "font~1woff2".to_string()];
        assert!(is_binary(&types, Some("image/png")));
        assert!(is_binary(&types, Some("font/woff2")));
        assert!(!is_binary(&types, Some("application/json")));
        assert!(!is_binary(&types, None));
    }

    #[test]
    fn integration_uris_name_the_function() {
        assert_eq!(
            function_from_uri("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:wastesort-local-api/invocations").as_deref(),
            Some("wastesort-local-api")
        );
    }
}
