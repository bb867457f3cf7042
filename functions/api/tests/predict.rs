//! `POST /api/predict`. Refusals (400, 413, 415) and the 503 with nothing serving run against
//! moto. moto's sagemaker-runtime InvokeEndpoint is a stub, so the happy path and the
//! ModelError mapping use a sagemaker-runtime client whose HTTP client is
//! `aws_smithy_http_client::test_util::infallible_client_fn`, answering recorded
//! InvokeEndpoint responses, while everything else (records, endpoint, upload) is moto.

mod common;

use std::sync::{Arc, Mutex};

use api::handle;
use aws_lambda_events::http::{HeaderValue, Method};
use aws_smithy_http_client::test_util::infallible_client_fn;
use base64::Engine;
use common::{jpeg, reader, req, upload, world, Spec, World};
use pipeline_core::events::{self, EndpointDetail, Envelope};
use serde_json::json;

const BIG: usize = 4 * 1024 * 1024 + 1;

fn json_upload(b64: &str) -> aws_lambda_events::apigw::ApiGatewayProxyRequest {
    req(
        Method::POST,
        "/api/predict",
        Some(&json!({ "image_base64": b64 }).to_string()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_and_no_model_serving_change_nothing() {
    let w = world().await;
    let spec = Spec::load();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let mut text_plain = upload("image/jpeg", b"hello");
    text_plain
        .headers
        .insert("content-type", HeaderValue::from_static("text/plain"));
    let mut no_type = upload("image/jpeg", &jpeg(10));
    no_type.headers.clear();
    let cases = vec![
        (
            "oversized raw",
            upload("image/jpeg", &jpeg(BIG)),
            413,
            "payload_too_large",
        ),
        (
            "oversized json",
            json_upload(&b64(&jpeg(BIG))),
            413,
            "payload_too_large",
        ),
        (
            "text as jpeg",
            upload("image/jpeg", b"just some text, not an image"),
            415,
            "unsupported_media_type",
        ),
        (
            "gif as png",
            upload("image/png", b"GIF89a\x01\x00\x01\x00"),
            415,
            "unsupported_media_type",
        ),
        ("text/plain", text_plain, 415, "unsupported_media_type"),
        ("no content type", no_type, 415, "unsupported_media_type"),
        (
            "json of text",
            json_upload(&b64(b"%PDF-1.7")),
            415,
            "unsupported_media_type",
        ),
        (
            "bad json",
            req(Method::POST, "/api/predict", Some("{\"image_base64\":")),
            400,
            "bad_request",
        ),
        (
            "json without image",
            req(Method::POST, "/api/predict", Some("{}")),
            400,
            "bad_request",
        ),
        ("json bad base64", json_upload("***"), 400, "bad_request"),
        // A valid image, but no model is deployed.
        (
            "nothing serving",
            upload("image/png", &png),
            503,
            "no_model_serving",
        ),
        (
            "nothing serving json",
            json_upload(&format!("data:image/jpeg;base64,{}", b64(&jpeg(64)))),
            503,
            "no_model_serving",
        ),
    ];
    let before = w.snapshot().await;
    for (what, r, status, code) in cases {
        let resp = handle(&w.app, &r).await;
        let b = spec.check("/api/predict", "post", &resp);
        assert_eq!(
            (resp.status_code, b["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {b}"
        );
        assert_eq!(w.snapshot().await, before, "{what} changed something");
    }
}

/// Makes `m-a` the deployed model on an InService endpoint (in moto).
// A test helper: a failure here is a test failure.
#[allow(clippy::unwrap_used)]
async fn deploy(w: &World) {
    w.seed(
        "m-a",
        pipeline_core::status::ModelStatus::Staged,
        "2026-11-28T00:00:00Z",
    )
    .await;
    let d = w.app.pipeline.accept("m-a", "ana", "good").await.unwrap();
    let v = json!({"detail-type": "SageMaker Endpoint State Change", "source": "aws.sagemaker",
        "detail": {"EndpointName": common::ENDPOINT, "EndpointConfigName": d.deployment_id, "EndpointStatus": "IN_SERVICE"}});
    let e: Envelope<EndpointDetail> = events::parse(&v, events::ENDPOINT_STATE_CHANGE).unwrap();
    w.app
        .pipeline
        .on_endpoint(&e.detail)
        .await
        .unwrap()
        .unwrap();
}

/// What the stub saw: (uri, content-type, body length).
type Seen = Arc<Mutex<Vec<(String, String, usize)>>>;

/// A sagemaker-runtime client answering every InvokeEndpoint with this recorded response.
// A test helper: a failure here is a test failure.
#[allow(clippy::unwrap_used)]
fn stub_runtime(
    w: &World,
    status: u16,
    headers: &[(&str, &str)],
    body: &str,
) -> (aws_sdk_sagemakerruntime::Client, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let body = body.to_string();
    let http = infallible_client_fn(move |r: http::Request<aws_smithy_types::body::SdkBody>| {
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let len = r.body().bytes().map(<[u8]>::len).unwrap_or_default();
        log.lock().unwrap().push((r.uri().to_string(), ct, len));
        let mut b = http::Response::builder().status(status);
        for (k, v) in &headers {
            b = b.header(k.as_str(), v.as_str());
        }
        b.body(body.clone()).unwrap()
    });
    let conf = aws_sdk_sagemakerruntime::config::Builder::from(&w.cfg)
        .http_client(http)
        .build();
    (aws_sdk_sagemakerruntime::Client::from_conf(conf), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_served_prediction_is_stored_and_answered() {
    let w = world().await;
    let spec = Spec::load();
    deploy(&w).await;
    let answer = r#"{"label":"Recyclable","confidence":0.91,"probabilities":{"Organic":0.09,"Recyclable":0.91},"model_id":"m-a"}"#;
    let (runtime, seen) = stub_runtime(&w, 200, &[("content-type", "application/json")], answer);
    let mut app = w.app.clone();
    app.runtime = runtime;

    let image = jpeg(2048);
    let r = handle(&app, &upload("image/jpeg", &image)).await;
    assert_eq!(r.status_code, 200, "{:?}", r.body);
    let b = spec.check("/api/predict", "post", &r);
    assert_eq!(
        (b["label"].as_str(), b["model_id"].as_str()),
        (Some("Recyclable"), Some("m-a"))
    );
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0]
            .0
            .contains(&format!("/endpoints/{}/invocations", common::ENDPOINT)),
        "{calls:?}"
    );
    assert_eq!((calls[0].1.as_str(), calls[0].2), ("image/jpeg", 2048));
    let keys = w.snapshot().await.1;
    let uploads: Vec<&String> = keys.iter().filter(|k| k.starts_with("uploads/")).collect();
    assert_eq!(uploads.len(), 1, "{keys:?}");
    let k = uploads[0];
    let parts: Vec<&str> = k.split('/').collect();
    assert_eq!(parts.len(), 3, "{k}");
    assert!(
        parts[1].len() == 10 && parts[1].as_bytes()[4] == b'-',
        "a date: {k}"
    );
    assert!(
        parts[2].ends_with(".jpg") && parts[2].len() == 64 + 4,
        "sha256.jpg: {k}"
    );

    // The same image as JSON: a PNG this time, named .png, from a user outside the approvers
    // group (prediction needs only a signed-in user).
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let body = json!({ "image_base64": base64::engine::general_purpose::STANDARD.encode(png) })
        .to_string();
    let r = handle(&app, &reader(Method::POST, "/api/predict", Some(&body))).await;
    assert_eq!(r.status_code, 200);
    spec.check("/api/predict", "post", &r);
    assert_eq!(seen.lock().unwrap()[1].1, "image/png");
    assert!(w
        .snapshot()
        .await
        .1
        .iter()
        .any(|k| k.starts_with("uploads/") && k.ends_with(".png")));

    // Without a signed-in user nothing is stored and the endpoint is not asked.
    let calls_before = seen.lock().unwrap().len();
    let keys_before = w.snapshot().await.1;
    let mut anon = upload("image/jpeg", &image);
    anon.request_context.authorizer.fields.clear();
    let r = handle(&app, &anon).await;
    spec.check_error("/api/predict", "post", &r, 401, "unauthorized");
    assert_eq!(seen.lock().unwrap().len(), calls_before);
    assert_eq!(w.snapshot().await.1, keys_before);

    // A container answering something else is a 502, not a pass-through.
    let (runtime, _) = stub_runtime(
        &w,
        200,
        &[("content-type", "application/json")],
        r#"{"label":"Organic"}"#,
    );
    app.runtime = runtime;
    let r = handle(&app, &upload("image/jpeg", &image)).await;
    spec.check_error("/api/predict", "post", &r, 502, "bad_model_answer");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_containers_4xx_comes_back_as_that_status() {
    let w = world().await;
    let spec = Spec::load();
    deploy(&w).await;
    // SageMaker wraps the container's answer in a 424 ModelError carrying its status.
    let model_error = |code: u16, msg: &str| {
        json!({"message": format!("Received client error ({code}) from primary with message \"{msg}\""),
               "OriginalStatusCode": code, "OriginalMessage": msg,
               "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x"})
        .to_string()
    };
    for (code, msg, status, err) in [
        (415, "cannot decode the image", 415, "model_rejected_input"),
        (400, "image is 1x1 pixels", 400, "model_rejected_input"),
        (413, "too large for the model", 413, "model_rejected_input"),
        (
            500,
            "Traceback (most recent call last): /opt/ml/model",
            502,
            "model_error",
        ),
    ] {
        let (runtime, seen) = stub_runtime(
            &w,
            424,
            &[
                ("x-amzn-ErrorType", "ModelError"),
                ("content-type", "application/json"),
            ],
            &model_error(code, msg),
        );
        let mut app = w.app.clone();
        app.runtime = runtime;
        let r = handle(&app, &upload("image/jpeg", &jpeg(100))).await;
        let b = spec.check_error("/api/predict", "post", &r, status, err);
        assert_eq!(seen.lock().unwrap().len(), 1);
        let text = b.to_string();
        assert!(
            !text.contains("arn:aws:logs") && !text.contains("Traceback"),
            "{text}"
        );
        if status < 500 {
            assert!(text.contains(msg), "{text}");
        }
    }
}
