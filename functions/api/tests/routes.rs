//! Every route of the `api` function called in-process against a real moto server (DynamoDB,
//! S3, SNS and the SageMaker calls moto implements), each response checked against
//! `openapi.yaml`. Refused requests are checked to change nothing: the model records, the
//! bucket and the topic's subscriptions are compared before and after.

mod common;

use api::handle;
use aws_lambda_events::http::Method;
use common::{anonymous, reader, req, world, Spec, APPROVER, READER};
use pipeline_core::events::{self, EndpointDetail, Envelope};
use pipeline_core::repo::Changes;
use pipeline_core::status::ModelStatus;
use serde_json::json;

#[test]
fn the_document_refuses_bodies_that_break_it() {
    let spec = Spec::load();
    let ok = json!({"error": {"code": "not_found", "message": "m", "fix": "f"}});
    assert!(spec.validate("/api/models/{id}", "get", 404, &ok).is_ok());
    let missing_fix = json!({"error": {"code": "not_found", "message": "m"}});
    assert!(spec
        .validate("/api/models/{id}", "get", 404, &missing_fix)
        .is_err());
    let wrong_status = json!({"id": "m", "status": "sleeping", "created_at": "2026-11-28T00:00:00Z",
        "updated_at": "2026-11-28T00:00:00Z", "dataset": "d", "training_job": "m", "decisions": []});
    assert!(spec
        .validate("/api/models/{id}", "get", 200, &wrong_status)
        .is_err());
    let bad_time = json!({"id": "m", "status": "staged", "created_at": "yesterday",
        "updated_at": "2026-11-28T00:00:00Z", "dataset": "d", "training_job": "m", "decisions": []});
    assert!(spec
        .validate("/api/models/{id}", "get", 200, &bad_time)
        .is_err());
    let percent =
        json!({"label": "Organic", "confidence": 97.0, "probabilities": {}, "model_id": "m"});
    assert!(spec
        .validate("/api/predict", "post", 200, &percent)
        .is_err());
}

#[test]
fn every_documented_response_has_a_schema_that_compiles() {
    let spec = Spec::load();
    let ops = spec.operations();
    assert!(ops.len() > 40, "{ops:?}");
    for (path, method, status) in ops {
        // validate() compiles the schema and panics if it does not; the error shape is checked
        // against every documented error status.
        let error = json!({"error": {"code": "c", "message": "m", "fix": "f"}});
        let r = spec.validate(&path, &method, status, &error);
        assert_eq!(r.is_ok(), status >= 400, "{method} {path} {status}: {r:?}");
    }
}

/// A request as API Gateway sends it (payload v1 JSON, capitalised header names, base64 body)
/// goes through the same deserialisation the Lambda runtime uses.
#[tokio::test(flavor = "multi_thread")]
async fn real_shaped_proxy_events_route() {
    let w = world().await;
    let spec = Spec::load();
    let event = |method: &str,
                 path: &str,
                 headers: serde_json::Value,
                 body: Option<&str>,
                 b64: bool| {
        serde_json::from_value::<aws_lambda_events::apigw::ApiGatewayProxyRequest>(json!({
            "resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
            "multiValueHeaders": {}, "queryStringParameters": null, "pathParameters": {"proxy": path},
            "stageVariables": null, "body": body, "isBase64Encoded": b64, "unknownField": 1,
            "requestContext": {"accountId": "123456789012", "resourceId": "abc", "stage": "prod",
                "requestId": "r-1", "requestTimeEpoch": 1795867205000_i64, "httpMethod": method,
                "path": format!("/prod{path}"), "resourcePath": "/{proxy+}", "apiId": "api1",
                "identity": {"sourceIp": "203.0.113.9"},
                // What the Cognito user-pool authorizer adds: the ID token's claims, strings
                // only, the groups in the bracketed form.
                "authorizer": {"claims": {"sub": "5f1c-77", "email": "ana@example.com",
                    "email_verified": "true", "cognito:username": "ana",
                    "cognito:groups": "[approvers readers]", "token_use": "id",
                    "auth_time": "1795867000", "exp": "Sat Nov 28 01:00:05 UTC 2026"}}}
        }))
        .unwrap()
    };
    let r = handle(
        &w.app,
        &event(
            "GET",
            "/api/health",
            json!({"Accept": "application/json"}),
            None,
            false,
        ),
    )
    .await;
    assert_eq!(r.status_code, 200);
    spec.check("/api/health", "get", &r);
    let before = w.snapshot().await;
    let r = handle(
        &w.app,
        &event(
            "POST",
            "/api/predict",
            json!({"Content-Type": "image/png"}),
            Some("aGVsbG8="),
            true,
        ),
    )
    .await;
    spec.check_error("/api/predict", "post", &r, 415, "unsupported_media_type");
    let r = handle(
        &w.app,
        &event(
            "POST",
            "/api/subscriptions",
            json!({"Content-Type": "application/json"}),
            Some("eyJlbWFpbCI6ICJ4In0="),
            true,
        ),
    )
    .await;
    let e = spec.check_error("/api/subscriptions", "post", &r, 400, "bad_request");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("\"x\""),
        "{e}"
    );
    // The same kind of request through a route the gateway left unsecured: no claims (API
    // Gateway sends a null authorizer), refused before its valid body is read.
    let mut unsecured = serde_json::to_value(event(
        "POST",
        "/api/subscriptions",
        json!({"Content-Type": "application/json"}),
        Some(r#"{"email":"ops@example.com"}"#),
        false,
    ))
    .unwrap();
    unsecured["requestContext"]["authorizer"] = serde_json::Value::Null;
    let r = handle(&w.app, &serde_json::from_value(unsecured).unwrap()).await;
    spec.check_error("/api/subscriptions", "post", &r, 401, "unauthorized");
    assert_eq!(w.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_unknown_routes_and_wrong_methods() {
    let w = world().await;
    let spec = Spec::load();
    let r = handle(&w.app, &req(Method::GET, "/api/health", None)).await;
    let b = spec.check("/api/health", "get", &r);
    assert_eq!(r.status_code, 200);
    assert_eq!(
        (b["status"].as_str(), b["code_sha256"].as_str()),
        (Some("ok"), Some("abc123"))
    );

    let r = handle(&w.app, &req(Method::GET, "/api/nope", None)).await;
    assert_eq!(r.status_code, 404);
    assert!(common::body(&r)["error"]["fix"]
        .as_str()
        .unwrap()
        .contains("openapi"));

    for (m, path, doc, allow) in [
        (Method::POST, "/api/health", "/api/health", "GET"),
        (Method::DELETE, "/api/models/m1", "/api/models/{id}", "GET"),
        (
            Method::GET,
            "/api/models/m1/accept",
            "/api/models/{id}/accept",
            "POST",
        ),
        (Method::PUT, "/api/training", "/api/training", "GET, POST"),
        (Method::GET, "/api/predict", "/api/predict", "POST"),
        (
            Method::GET,
            "/api/subscriptions",
            "/api/subscriptions",
            "POST",
        ),
    ] {
        let r = handle(&w.app, &req(m.clone(), path, None)).await;
        // A 405 is documented on the path's documented operation.
        let op = if allow.starts_with("GET") {
            "get"
        } else {
            "post"
        };
        spec.check_error(doc, op, &r, 405, "method_not_allowed");
        assert_eq!(r.headers["allow"], allow, "{m} {path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn models_accept_reject_and_the_deployment_timeline() {
    let w = world().await;
    let spec = Spec::load();
    let p = &w.app.pipeline;
    w.seed("m-old-failed", ModelStatus::Failed, "2026-11-26T00:00:00Z")
        .await;
    w.seed("m-b", ModelStatus::Staged, "2026-11-27T00:00:00Z")
        .await;
    w.seed("m-a", ModelStatus::Staged, "2026-11-28T00:00:00Z")
        .await;

    // Listing: newest first, metrics as numbers, nulls left out.
    let r = handle(&w.app, &req(Method::GET, "/api/models", None)).await;
    assert_eq!(r.status_code, 200);
    let b = spec.check("/api/models", "get", &r);
    let ids: Vec<&str> = b["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m-a", "m-b", "m-old-failed"]);
    assert_eq!(b["models"][0]["metrics"]["f1"], 0.75);
    assert_eq!(b["models"][0]["metrics"]["confusion_matrix"]["fn"], 11);
    assert_eq!(b["models"][2]["failure_reason"], "AlgorithmError: boom");

    let r = handle(&w.app, &req(Method::GET, "/api/models/m-a", None)).await;
    assert_eq!(r.status_code, 200);
    assert_eq!(
        spec.check("/api/models/{id}", "get", &r)["status"],
        "staged"
    );
    let r = handle(&w.app, &req(Method::GET, "/api/models/nope", None)).await;
    spec.check_error("/api/models/{id}", "get", &r, 404, "not_found");

    // Refused decisions change nothing.
    let before = w.snapshot().await;
    let good = r#"{"reason":"better f1","by":"ana"}"#;
    for (path, doc, body, status, code) in [
        (
            "/api/models/m-a/accept",
            "/api/models/{id}/accept",
            Some("{not json"),
            400,
            "bad_request",
        ),
        (
            "/api/models/m-a/accept",
            "/api/models/{id}/accept",
            None,
            400,
            "bad_request",
        ),
        (
            "/api/models/m-a/accept",
            "/api/models/{id}/accept",
            Some(r#"["a"]"#),
            400,
            "bad_request",
        ),
        (
            "/api/models/m-a/accept",
            "/api/models/{id}/accept",
            Some(r#"{"by":"ana"}"#),
            400,
            "bad_request",
        ),
        (
            "/api/models/m-a/accept",
            "/api/models/{id}/accept",
            Some(r#"{"reason":" ","by":"ana"}"#),
            400,
            "bad_request",
        ),
        (
            "/api/models/m-a/reject",
            "/api/models/{id}/reject",
            Some(r#"{"reason":7,"by":"ana"}"#),
            400,
            "bad_request",
        ),
        (
            "/api/models/m-a/rollback",
            "/api/models/{id}/rollback",
            Some("{}"),
            400,
            "bad_request",
        ),
        (
            "/api/models/nope/accept",
            "/api/models/{id}/accept",
            Some(good),
            404,
            "not_found",
        ),
        (
            "/api/models/nope/reject",
            "/api/models/{id}/reject",
            Some(good),
            404,
            "not_found",
        ),
        (
            "/api/models/nope/rollback",
            "/api/models/{id}/rollback",
            Some(good),
            404,
            "not_found",
        ),
        (
            "/api/models/m-old-failed/accept",
            "/api/models/{id}/accept",
            Some(good),
            409,
            "conflict",
        ),
        (
            "/api/models/m-old-failed/reject",
            "/api/models/{id}/reject",
            Some(good),
            409,
            "conflict",
        ),
        (
            "/api/models/m-a/rollback",
            "/api/models/{id}/rollback",
            Some(good),
            409,
            "conflict",
        ),
    ] {
        let r = handle(&w.app, &req(Method::POST, path, body)).await;
        spec.check_error(doc, "post", &r, status, code);
        assert_eq!(
            w.snapshot().await,
            before,
            "POST {path} {body:?} changed something"
        );
    }

    // Reject: a decision from staged only.
    let r = handle(
        &w.app,
        &req(
            Method::POST,
            "/api/models/m-b/reject",
            Some(r#"{"reason":"worse recall","by":"bo"}"#),
        ),
    )
    .await;
    assert_eq!(r.status_code, 200);
    let b = spec.check("/api/models/{id}/reject", "post", &r);
    assert_eq!(b["status"], "rejected");
    assert_eq!(
        b["decisions"][0]["by"], APPROVER,
        "the token's user, not the body's by"
    );
    let before = w.snapshot().await;
    let r = handle(
        &w.app,
        &req(Method::POST, "/api/models/m-b/reject", Some(good)),
    )
    .await;
    let e = spec.check_error("/api/models/{id}/reject", "post", &r, 409, "conflict");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("rejected"),
        "{e}"
    );
    let r = handle(
        &w.app,
        &req(Method::POST, "/api/models/m-b/accept", Some(good)),
    )
    .await;
    spec.check_error("/api/models/{id}/accept", "post", &r, 409, "conflict");
    assert_eq!(w.snapshot().await, before);

    // Before any deployment the endpoint does not exist.
    let r = handle(&w.app, &req(Method::GET, "/api/endpoint", None)).await;
    assert_eq!(r.status_code, 200);
    let b = spec.check("/api/endpoint", "get", &r);
    assert_eq!(b["status"], "none");
    assert!(b.get("serving_model_id").is_none());

    // Accept twice: one deployment, the same id.
    let r = handle(
        &w.app,
        &req(Method::POST, "/api/models/m-a/accept", Some(good)),
    )
    .await;
    assert_eq!(r.status_code, 202);
    let first = spec.check("/api/models/{id}/accept", "post", &r);
    assert_eq!(first["model_id"], "m-a");
    let after_first = w.snapshot().await;
    let r = handle(
        &w.app,
        &req(
            Method::POST,
            "/api/models/m-a/accept",
            Some(r#"{"reason":"again","by":"ana"}"#),
        ),
    )
    .await;
    assert_eq!(r.status_code, 202);
    let second = spec.check("/api/models/{id}/accept", "post", &r);
    assert_eq!(first["deployment_id"], second["deployment_id"]);
    assert_eq!(
        w.snapshot().await,
        after_first,
        "a repeated accept deploys once"
    );
    let m = p.repo.get_model("m-a").await.unwrap();
    assert_eq!(m.status, ModelStatus::Deploying);
    assert_eq!(
        m.endpoint_config.as_deref(),
        first["deployment_id"].as_str()
    );

    // The endpoint reports InService: the model is deployed and shown as serving.
    let v = json!({"detail-type": "SageMaker Endpoint State Change", "source": "aws.sagemaker",
        "detail": {"EndpointName": common::ENDPOINT, "EndpointConfigName": first["deployment_id"], "EndpointStatus": "IN_SERVICE"}});
    let e: Envelope<EndpointDetail> = events::parse(&v, events::ENDPOINT_STATE_CHANGE).unwrap();
    assert_eq!(
        p.on_endpoint(&e.detail).await.unwrap().unwrap().status,
        ModelStatus::Deployed
    );
    let r = handle(&w.app, &req(Method::GET, "/api/endpoint", None)).await;
    let b = spec.check("/api/endpoint", "get", &r);
    assert_eq!(b["status"], "InService");
    assert_eq!(b["serving_model_id"], "m-a");
    assert_eq!(b["config_name"], first["deployment_id"]);
    assert_eq!(b["name"], common::ENDPOINT);

    // A deployed model cannot be rolled back to, nor rejected.
    let before = w.snapshot().await;
    let r = handle(
        &w.app,
        &req(Method::POST, "/api/models/m-a/rollback", Some(good)),
    )
    .await;
    spec.check_error("/api/models/{id}/rollback", "post", &r, 409, "conflict");
    let r = handle(
        &w.app,
        &req(Method::POST, "/api/models/m-a/reject", Some(good)),
    )
    .await;
    spec.check_error("/api/models/{id}/reject", "post", &r, 409, "conflict");
    assert_eq!(w.snapshot().await, before);

    // The timeline: newest first, with who, why and the model's current status.
    let r = handle(&w.app, &req(Method::GET, "/api/deployments", None)).await;
    assert_eq!(r.status_code, 200);
    let b = spec.check("/api/deployments", "get", &r);
    let d = b["deployments"].as_array().unwrap();
    assert_eq!(d.len(), 2, "{b}");
    assert!(d[0]["at"].as_str() >= d[1]["at"].as_str(), "{b}");
    let accept = d.iter().find(|x| x["action"] == "accept").unwrap();
    assert_eq!(
        (
            accept["model_id"].as_str(),
            accept["by"].as_str(),
            accept["reason"].as_str(),
            accept["outcome"].as_str()
        ),
        (
            Some("m-a"),
            Some(APPROVER),
            Some("better f1"),
            Some("deployed")
        )
    );
    let reject = d.iter().find(|x| x["action"] == "reject").unwrap();
    assert_eq!(
        (reject["model_id"].as_str(), reject["outcome"].as_str()),
        (Some("m-b"), Some("rejected"))
    );
}

/// Rollback's happy path with no endpoint yet (moto implements CreateEndpoint but not
/// UpdateEndpoint), and then the 500 that UpdateEndpoint's absence causes, which must name no
/// internals.
#[tokio::test(flavor = "multi_thread")]
async fn rollback_serves_a_superseded_model_and_failures_leak_nothing() {
    let w = world().await;
    let spec = Spec::load();
    let p = &w.app.pipeline;
    w.seed("m-old", ModelStatus::Superseded, "2026-11-26T00:00:00Z")
        .await;
    w.seed("m-older", ModelStatus::Superseded, "2026-11-25T00:00:00Z")
        .await;
    w.seed("m-new", ModelStatus::Deployed, "2026-11-27T00:00:00Z")
        .await;
    let r = handle(
        &w.app,
        &req(
            Method::POST,
            "/api/models/m-old/rollback",
            Some(r#"{"reason":"new one misreads cans","by":"mallory"}"#),
        ),
    )
    .await;
    assert_eq!(r.status_code, 202, "{:?}", r.body);
    let b = spec.check("/api/models/{id}/rollback", "post", &r);
    assert_eq!(b["model_id"], "m-old");
    let m = p.repo.get_model("m-old").await.unwrap();
    assert_eq!(m.status, ModelStatus::Deploying);
    assert_eq!(m.decisions[0].action, "rollback");
    assert_eq!(
        m.decisions[0].by, APPROVER,
        "the token's user, not the body's by"
    );
    assert_eq!(m.endpoint_config.as_deref(), b["deployment_id"].as_str());

    let r = handle(&w.app, &req(Method::GET, "/api/deployments", None)).await;
    let t = spec.check("/api/deployments", "get", &r);
    assert_eq!(t["deployments"][0]["action"], "rollback");
    assert_eq!(t["deployments"][0]["outcome"], "deploying");

    // The endpoint exists now, so a second rollback needs UpdateEndpoint, which moto lacks:
    // the API answers a bare 500.
    let r = handle(
        &w.app,
        &req(
            Method::POST,
            "/api/models/m-older/rollback",
            Some(r#"{"reason":"r","by":"ana"}"#),
        ),
    )
    .await;
    let e = spec.check_error("/api/models/{id}/rollback", "post", &r, 500, "internal");
    let text = e.to_string();
    for secret in ["UpdateEndpoint", "update the endpoint", "127.0.0.1", "arn:"] {
        assert!(!text.contains(secret), "500 leaks {secret}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn training_start_conflicts_and_runs() {
    let w = world().await;
    let spec = Spec::load();
    let p = &w.app.pipeline;

    // No data set: a clear 409, nothing recorded.
    let before = w.snapshot().await;
    let r = handle(&w.app, &req(Method::POST, "/api/training", None)).await;
    let e = spec.check_error("/api/training", "post", &r, 409, "no_dataset");
    assert!(e["error"]["fix"].as_str().unwrap().contains("dataset push"));
    assert_eq!(w.snapshot().await, before);
    let r = handle(&w.app, &req(Method::GET, "/api/training", None)).await;
    assert_eq!(spec.check("/api/training", "get", &r)["runs"], json!([]));

    // An older, failed run, then a start on the newest data set.
    w.seed(
        "wastesort-local-old-0000",
        ModelStatus::Failed,
        "2026-11-01T00:00:00Z",
    )
    .await;
    for key in [
        "datasets/20261127T000000Z/train/O/a.jpg",
        "datasets/20261127T000000Z/_READY",
        "datasets/20261128T000000Z/train/O/a.jpg",
        "datasets/20261128T000000Z/_READY",
    ] {
        w.put(key, b"x").await;
    }
    let r = handle(&w.app, &req(Method::POST, "/api/training", None)).await;
    assert_eq!(r.status_code, 202, "{:?}", r.body);
    let started = spec.check("/api/training", "post", &r);
    assert_eq!(started["dataset"], "datasets/20261128T000000Z");
    let job = started["job"].as_str().unwrap().to_string();
    let m = p
        .repo
        .get_model(started["model_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(m.status, ModelStatus::Training);
    let trigger = m.dataset_etag.clone().unwrap();
    assert!(
        trigger.ends_with("@1795867205000") && !trigger.starts_with('"'),
        "{trigger}"
    );

    // A second start while one runs: 409, nothing new.
    let before = w.snapshot().await;
    let r = handle(&w.app, &req(Method::POST, "/api/training", None)).await;
    let e = spec.check_error("/api/training", "post", &r, 409, "training_in_progress");
    assert!(e["error"]["message"].as_str().unwrap().contains(&job));
    assert_eq!(w.snapshot().await, before);

    // Runs newest first; one by its job name; an unknown job is 404.
    let r = handle(&w.app, &req(Method::GET, "/api/training", None)).await;
    let b = spec.check("/api/training", "get", &r);
    let runs = b["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[0]["job"].as_str(), runs[0]["status"].as_str()),
        (Some(job.as_str()), Some("in_progress"))
    );
    assert_eq!(
        (
            runs[1]["status"].as_str(),
            runs[1]["failure_reason"].as_str()
        ),
        (Some("failed"), Some("AlgorithmError: boom"))
    );
    let r = handle(
        &w.app,
        &req(Method::GET, &format!("/api/training/{job}"), None),
    )
    .await;
    assert_eq!(r.status_code, 200);
    assert_eq!(
        spec.check("/api/training/{job}", "get", &r)["dataset"],
        "datasets/20261128T000000Z"
    );
    let r = handle(&w.app, &req(Method::GET, "/api/training/no-such-job", None)).await;
    spec.check_error("/api/training/{job}", "get", &r, 404, "not_found");

    // It fails: the run shows why, and a new start is allowed again.
    p.repo
        .transition(
            &m.id,
            &[ModelStatus::Training],
            ModelStatus::Failed,
            "2026-11-28T01:00:00Z",
            Changes {
                failure_reason: Some("ClientError: no images".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let r = handle(
        &w.app,
        &req(Method::GET, &format!("/api/training/{job}"), None),
    )
    .await;
    let run = spec.check("/api/training/{job}", "get", &r);
    assert_eq!(
        (run["status"].as_str(), run["failure_reason"].as_str()),
        (Some("failed"), Some("ClientError: no images"))
    );
    let mut again = req(Method::POST, "/api/training", None);
    again.request_context.request_time_epoch += 60_000;
    let r = handle(&w.app, &again).await;
    assert_eq!(r.status_code, 202);
    assert_ne!(
        spec.check("/api/training", "post", &r)["job"],
        job.as_str(),
        "a new start is a new job"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_validate_the_address() {
    let w = world().await;
    let spec = Spec::load();
    let before = w.snapshot().await;
    for body in [
        Some("nope"),
        None,
        Some("{}"),
        Some(r#"{"email": 5}"#),
        Some(r#"{"email":"not-an-address"}"#),
        Some(r#"{"email":"a b@example.com"}"#),
        Some(r#"{"email":"a@example"}"#),
    ] {
        let r = handle(&w.app, &req(Method::POST, "/api/subscriptions", body)).await;
        spec.check_error("/api/subscriptions", "post", &r, 400, "bad_request");
        assert_eq!(w.snapshot().await, before, "{body:?} changed something");
    }
    let r = handle(
        &w.app,
        &req(
            Method::POST,
            "/api/subscriptions",
            Some(r#"{"email":"ops@example.com"}"#),
        ),
    )
    .await;
    assert_eq!(r.status_code, 202);
    assert_eq!(
        spec.check("/api/subscriptions", "post", &r)["subscription"],
        "pending confirmation"
    );
    assert_eq!(w.snapshot().await.2, vec!["ops@example.com".to_string()]);
}

/// Every documented operation but health, made concrete: a path naming records that exist and a
/// body the operation would accept, so only the caller decides the answer.
// A test helper: a failure here is a test failure.
#[allow(clippy::unwrap_used)]
fn concrete_operations(spec: &Spec) -> Vec<(String, Method, String, Option<String>)> {
    let image = json!({ "image_base64": "/9j/4AAQSkZJRgABAQ==" }).to_string();
    let mut ops: Vec<(String, String)> = spec
        .operations()
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .filter(|(path, _)| path != "/api/health")
        .collect();
    ops.dedup();
    ops.into_iter()
        .map(|(doc, method)| {
            let path = doc
                .replace("{id}/rollback", "m-old/rollback")
                .replace("{id}", "m-a")
                .replace("{job}", "m-a");
            let body = match doc.as_str() {
                d if d.starts_with("/api/models/{id}/") => {
                    Some(r#"{"reason":"looks good","by":"ana"}"#.to_string())
                }
                "/api/subscriptions" => Some(r#"{"email":"ops@example.com"}"#.to_string()),
                "/api/predict" => Some(image.clone()),
                _ => None,
            };
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            (doc, m, path, body)
        })
        .collect()
}

/// Records every operation could act on: a staged model, a superseded one behind a deployed
/// one, and a complete data set to train on.
async fn seed_everything(w: &common::World) {
    w.seed("m-a", ModelStatus::Staged, "2026-11-28T00:00:00Z")
        .await;
    w.seed("m-old", ModelStatus::Superseded, "2026-11-26T00:00:00Z")
        .await;
    w.seed("m-new", ModelStatus::Deployed, "2026-11-27T00:00:00Z")
        .await;
    for key in [
        "datasets/20261128T000000Z/train/O/a.jpg",
        "datasets/20261128T000000Z/_READY",
    ] {
        w.put(key, b"x").await;
    }
}

const SIGN_IN: &str = "sign in to the web app, or send the ID token of a user from `deployer users add` in the Authorization header";
const ASK: &str = "ask an approver to run `deployer users add <email> --approver`";

#[tokio::test(flavor = "multi_thread")]
async fn without_claims_every_route_but_health_is_401() {
    let w = world().await;
    let spec = Spec::load();
    seed_everything(&w).await;
    let before = w.snapshot().await;
    let ops = concrete_operations(&spec);
    assert_eq!(
        ops.len(),
        12,
        "{:?}",
        ops.iter().map(|o| &o.2).collect::<Vec<_>>()
    );
    for (doc, m, path, body) in ops {
        let r = handle(&w.app, &anonymous(m.clone(), &path, body.as_deref())).await;
        let e = spec.check_error(&doc, &m.as_str().to_lowercase(), &r, 401, "unauthorized");
        assert_eq!(e["error"]["fix"], SIGN_IN, "{m} {path}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no signed-in user"),
            "{m} {path}: {e}"
        );
        assert_eq!(w.snapshot().await, before, "{m} {path} changed something");
    }

    // Unknown paths and wrong methods too: an anonymous caller cannot map the API.
    for (m, path) in [
        (Method::GET, "/api/nope"),
        (Method::GET, "/"),
        (Method::DELETE, "/api/models/m-a"),
        (Method::PUT, "/api/training"),
        (Method::GET, "/api/predict"),
        (Method::GET, "/api/models/m-a/accept"),
    ] {
        let r = handle(&w.app, &anonymous(m.clone(), path, None)).await;
        let b = common::body(&r);
        assert_eq!(
            (r.status_code, b["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{m} {path}: {b}"
        );
        assert!(!r.headers.contains_key("allow"), "{m} {path}");
        spec.validate("/api/models", "get", 401, &b).unwrap();
    }

    // Claims without a subject, or an empty set, name nobody.
    let mut no_sub = anonymous(Method::GET, "/api/models", None);
    no_sub.request_context.authorizer.fields.insert(
        "claims".into(),
        json!({"email": "ana@example.com", "cognito:groups": "approvers"}),
    );
    let r = handle(&w.app, &no_sub).await;
    let e = spec.check_error("/api/models", "get", &r, 401, "unauthorized");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("sub"),
        "{e}"
    );
    let mut empty = anonymous(Method::GET, "/api/models", None);
    empty
        .request_context
        .authorizer
        .fields
        .insert("claims".into(), json!({}));
    let r = handle(&w.app, &empty).await;
    spec.check_error("/api/models", "get", &r, 401, "unauthorized");

    // Health stays public, and its wrong methods are still 405.
    let r = handle(&w.app, &anonymous(Method::GET, "/api/health", None)).await;
    assert_eq!(r.status_code, 200);
    spec.check("/api/health", "get", &r);
    let r = handle(&w.app, &anonymous(Method::POST, "/api/health", Some("{}"))).await;
    spec.check_error("/api/health", "get", &r, 405, "method_not_allowed");
    assert_eq!(w.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_cannot_change_anything() {
    let w = world().await;
    let spec = Spec::load();
    seed_everything(&w).await;
    let before = w.snapshot().await;
    let timeline = |r: aws_lambda_events::apigw::ApiGatewayProxyResponse| {
        assert_eq!(r.status_code, 200);
        spec.check("/api/deployments", "get", &r)
    };
    let deployments_before =
        timeline(handle(&w.app, &reader(Method::GET, "/api/deployments", None)).await);
    let writes: Vec<_> = concrete_operations(&spec)
        .into_iter()
        .filter(|(doc, m, ..)| *m == Method::POST && doc != "/api/predict")
        .collect();
    assert_eq!(writes.len(), 5, "{writes:?}");
    for (doc, m, path, body) in writes {
        // A valid body, and one that is not even JSON: the answer is the same 403, so a
        // refused caller learns nothing about the request it could not make.
        for body in [body.as_deref(), Some("{not json")] {
            let r = handle(&w.app, &reader(m.clone(), &path, body)).await;
            let e = spec.check_error(&doc, "post", &r, 403, "forbidden");
            assert_eq!(e["error"]["fix"], ASK, "{path}");
            let msg = e["error"]["message"].as_str().unwrap();
            assert!(
                msg.contains(READER)
                    && msg.contains(&format!("POST {path}"))
                    && msg.contains("approvers"),
                "{path}: {msg}"
            );
            assert_eq!(
                w.snapshot().await,
                before,
                "{path} {body:?} changed something"
            );
        }
    }
    let p = &w.app.pipeline;
    assert_eq!(
        p.repo.get_model("m-a").await.unwrap().status,
        ModelStatus::Staged
    );
    assert_eq!(
        p.repo.get_model("m-old").await.unwrap().status,
        ModelStatus::Superseded
    );
    assert_eq!(
        timeline(handle(&w.app, &reader(Method::GET, "/api/deployments", None)).await),
        deployments_before
    );
    // A method no path has is still a 405 for a reader, not a 403.
    let r = handle(&w.app, &reader(Method::PUT, "/api/training", None)).await;
    spec.check_error("/api/training", "get", &r, 405, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_can_read_and_predict() {
    let w = world().await;
    let spec = Spec::load();
    seed_everything(&w).await;
    let reads: Vec<_> = concrete_operations(&spec)
        .into_iter()
        .filter(|(_, m, ..)| *m == Method::GET)
        .collect();
    assert_eq!(reads.len(), 6, "{reads:?}");
    for (doc, m, path, _) in reads {
        let r = handle(&w.app, &reader(m, &path, None)).await;
        assert_eq!(r.status_code, 200, "GET {path}: {:?}", r.body);
        spec.check(&doc, "get", &r);
    }
    let r = handle(&w.app, &reader(Method::GET, "/api/models/m-a", None)).await;
    assert_eq!(common::body(&r)["status"], "staged");
    // Prediction is open to readers: here it gets as far as finding no endpoint.
    let before = w.snapshot().await;
    let r = handle(
        &w.app,
        &reader(
            Method::POST,
            "/api/predict",
            Some(&json!({ "image_base64": "/9j/4AAQSkZJRgABAQ==" }).to_string()),
        ),
    )
    .await;
    spec.check_error("/api/predict", "post", &r, 503, "no_model_serving");
    assert_eq!(w.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_record_the_signed_in_user_not_the_body() {
    let w = world().await;
    let spec = Spec::load();
    let p = &w.app.pipeline;
    w.seed("m-a", ModelStatus::Staged, "2026-11-28T00:00:00Z")
        .await;
    w.seed("m-b", ModelStatus::Staged, "2026-11-27T00:00:00Z")
        .await;

    let r = handle(
        &w.app,
        &req(
            Method::POST,
            "/api/models/m-a/accept",
            Some(r#"{"reason":"better f1","by":"mallory"}"#),
        ),
    )
    .await;
    assert_eq!(r.status_code, 202, "{:?}", r.body);
    spec.check("/api/models/{id}/accept", "post", &r);
    let m = p.repo.get_model("m-a").await.unwrap();
    assert_eq!(
        (m.decisions[0].action.as_str(), m.decisions[0].by.as_str()),
        ("accept", APPROVER)
    );

    // An approver whose token has no email is recorded by user name; `by` may be left out.
    let mut no_email = anonymous(
        Method::POST,
        "/api/models/m-b/reject",
        Some(r#"{"reason":"worse recall"}"#),
    );
    no_email.request_context.authorizer.fields.insert(
        "claims".into(),
        json!({"sub": "u-9", "cognito:username": "bo", "cognito:groups": "[readers approvers]"}),
    );
    let r = handle(&w.app, &no_email).await;
    assert_eq!(r.status_code, 200, "{:?}", r.body);
    let b = spec.check("/api/models/{id}/reject", "post", &r);
    assert_eq!(b["decisions"][0]["by"], "bo");

    let r = handle(&w.app, &reader(Method::GET, "/api/deployments", None)).await;
    let t = spec.check("/api/deployments", "get", &r);
    let by: Vec<&str> = t["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["by"].as_str().unwrap())
        .collect();
    assert_eq!(by.len(), 2);
    assert!(
        by.contains(&APPROVER) && by.contains(&"bo") && !by.contains(&"mallory"),
        "{by:?}"
    );
}
