//! Shared test harness: a real moto server per test (killed on drop), the pipeline's tables,
//! bucket and topic in it, an [`App`] over those clients, request builders (signed in as an
//! approver unless they say otherwise), and the OpenAPI document as JSON Schemas so every
//! response is checked against what `openapi.yaml` says.

// Test helpers may unwrap: a failure here is a test failure, reported where it happens.
#![allow(clippy::unwrap_used, dead_code, unused_imports)]

use std::path::Path;

use api::App;
use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderValue, Method};
use pipeline_core::metrics::{ConfusionMatrix, Metrics};
use pipeline_core::repo::{Changes, ModelRecord};
use pipeline_core::status::ModelStatus;
use serde_json::Value;

pub use pipeline_core::testing::{start_moto, Moto, ENDPOINT};

/// The world a test runs in: moto, the app over it, and direct clients to inspect it.
pub struct World {
    pub moto: Moto,
    pub app: App,
    pub cfg: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub topic: String,
}

pub async fn world() -> World {
    let moto = start_moto().unwrap();
    let f = moto.fixture(None).await;
    let (s3, sns) = (f.pipeline.s3.clone(), f.pipeline.sns.clone());
    let app = App {
        runtime: aws_sdk_sagemakerruntime::Client::new(&f.cfg),
        pipeline: f.pipeline,
        code_sha256: "abc123".into(),
    };
    World {
        moto,
        app,
        cfg: f.cfg,
        s3,
        sns,
        topic: f.topic,
    }
}

impl World {
    /// Everything a request could change: the model records, the bucket's keys, the topic's
    /// subscriptions.
    pub async fn snapshot(&self) -> (Vec<ModelRecord>, Vec<String>, Vec<String>) {
        let models = self.app.pipeline.repo.list_models().await.unwrap();
        let keys = self
            .s3
            .list_objects_v2()
            .bucket("data")
            .send()
            .await
            .unwrap()
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        let subs = self
            .sns
            .list_subscriptions_by_topic()
            .topic_arn(&self.topic)
            .send()
            .await
            .unwrap()
            .subscriptions()
            .iter()
            .filter_map(|s| s.endpoint().map(str::to_string))
            .collect();
        (models, keys, subs)
    }

    pub async fn put(&self, key: &str, body: &[u8]) {
        self.s3
            .put_object()
            .bucket("data")
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap();
    }

    /// Seeds a model record in any state, walking it through the state machine from
    /// `training` (create_model records only the fields a new run has).
    pub async fn seed(&self, id: &str, status: ModelStatus, created_at: &str) -> ModelRecord {
        use ModelStatus::*;
        let repo = &self.app.pipeline.repo;
        let m = ModelRecord {
            id: id.into(),
            status: Training,
            created_at: created_at.into(),
            updated_at: created_at.into(),
            dataset: "datasets/20261128T000000Z".into(),
            dataset_etag: Some("\"etag\"".into()),
            training_job: id.into(),
            model_artifact: None,
            endpoint_config: None,
            metrics: None,
            failure_reason: None,
            decisions: vec![],
        };
        assert!(repo.create_model(&m).await.unwrap());
        let path: &[ModelStatus] = match status {
            Training => &[],
            Failed => &[Failed],
            Staged => &[Staged],
            Rejected => &[Staged, Rejected],
            Deploying => &[Staged, Deploying],
            Deployed => &[Staged, Deploying, Deployed],
            DeployFailed => &[Staged, Deploying, DeployFailed],
            Superseded => &[Staged, Deploying, Deployed, Superseded],
            Retired => &[Staged, Deploying, Deployed, Superseded, Retired],
        };
        let mut from = Training;
        let mut out = m;
        for &to in path {
            let changes = match to {
                Failed => Changes {
                    failure_reason: Some("AlgorithmError: boom".into()),
                    ..Default::default()
                },
                Staged => Changes {
                    metrics: Some(metrics()),
                    model_artifact: Some(format!(
                        "s3://data/training-output/{id}/output/model.tar.gz"
                    )),
                    ..Default::default()
                },
                Deploying => Changes {
                    endpoint_config: Some(format!("{id}-cfg")),
                    ..Default::default()
                },
                _ => Changes::default(),
            };
            out = repo
                .transition(id, &[from], to, created_at, changes)
                .await
                .unwrap();
            from = to;
        }
        out
    }
}

pub fn metrics() -> Metrics {
    Metrics {
        accuracy: 0.9,
        precision: 0.8,
        recall: 0.7,
        f1: 0.75,
        auc_roc: 0.93,
        loss: 0.3,
        support: 100,
        confusion_matrix: ConfusionMatrix {
            tp: 35,
            tn: 45,
            fp: 9,
            fn_: 11,
        },
        positive_class: Some("Recyclable".into()),
        dataset: Some(serde_json::json!({ "synthetic": true })),
    }
}

/// The approver the tests act as, and a signed-in user outside the approvers group.
pub const APPROVER: &str = "ana@example.com";
pub const READER: &str = "rita@example.com";

/// An ID token's claims as API Gateway's Cognito user-pool authorizer passes them (REST API,
/// payload v1): every value a string, the groups flattened into one (left out with none).
pub fn claims(email: &str, groups: &[&str]) -> Value {
    let mut c = serde_json::json!({
        "sub": format!("sub-{email}"),
        "email": email,
        "email_verified": "true",
        "cognito:username": email.split('@').next().unwrap_or(email),
        "token_use": "id",
        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_test",
    });
    if !groups.is_empty() {
        c["cognito:groups"] = Value::String(groups.join(","));
    }
    c
}

/// The request as a signed-in user sends it: `requestContext.authorizer.claims` filled in.
pub fn signed_in(
    mut r: ApiGatewayProxyRequest,
    email: &str,
    groups: &[&str],
) -> ApiGatewayProxyRequest {
    r.request_context
        .authorizer
        .fields
        .insert("claims".into(), claims(email, groups));
    r
}

/// A request with no signed-in user: what reaches the function if a route is left unsecured.
pub fn anonymous(method: Method, path: &str, body: Option<&str>) -> ApiGatewayProxyRequest {
    let mut r = ApiGatewayProxyRequest::default();
    r.http_method = method;
    r.path = Some(path.to_string());
    r.body = body.map(str::to_string);
    r.request_context.request_time_epoch = 1_795_867_205_000;
    if body.is_some() {
        r.headers
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    r
}

/// A request from [`APPROVER`], who may do everything.
pub fn req(method: Method, path: &str, body: Option<&str>) -> ApiGatewayProxyRequest {
    signed_in(anonymous(method, path, body), APPROVER, &["approvers"])
}

/// A request from [`READER`], signed in but in no group: may read and predict only.
pub fn reader(method: Method, path: &str, body: Option<&str>) -> ApiGatewayProxyRequest {
    signed_in(anonymous(method, path, body), READER, &[])
}

/// A raw binary upload as API Gateway delivers it (base64 with isBase64Encoded), from
/// [`APPROVER`].
pub fn upload(content_type: &'static str, bytes: &[u8]) -> ApiGatewayProxyRequest {
    use base64::Engine;
    let mut r = req(Method::POST, "/api/predict", None);
    r.headers
        .insert("content-type", HeaderValue::from_static(content_type));
    r.body = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    r.is_base64_encoded = true;
    r
}

/// The smallest JPEG-looking bytes (the magic is what the API checks).
pub fn jpeg(len: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8, 0xFF, 0xE0];
    v.resize(len.max(4), 0x11);
    v
}

pub fn body(r: &ApiGatewayProxyResponse) -> Value {
    match &r.body {
        Some(Body::Text(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// The OpenAPI document, with each response schema turned into a JSON Schema validator.
pub struct Spec(Value);

impl Spec {
    pub fn load() -> Spec {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        Spec(serde_yaml_ng::from_str(&text).unwrap())
    }

    /// Every documented (path, method, status).
    pub fn operations(&self) -> Vec<(String, String, i64)> {
        let mut out = Vec::new();
        for (path, item) in self.0["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for status in op["responses"].as_object().unwrap().keys() {
                    out.push((path.clone(), method.clone(), status.parse().unwrap()));
                }
            }
        }
        out
    }

    /// Replaces every local `$ref` by what it points at (the document has no cycles).
    fn inline(&self, v: &Value, depth: usize) -> Value {
        assert!(depth < 32, "$ref cycle in openapi.yaml");
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let target = self
                        .0
                        .pointer(r.trim_start_matches('#'))
                        .unwrap_or_else(|| panic!("unresolved $ref {r}"));
                    return self.inline(target, depth + 1);
                }
                Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), self.inline(v, depth + 1)))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| self.inline(v, depth + 1)).collect()),
            other => other.clone(),
        }
    }

    /// The schema the document gives for this operation's response with this status.
    pub fn schema(&self, path: &str, method: &str, status: i64) -> Value {
        let op = self
            .0
            .pointer(&format!(
                "/paths/{}/{method}",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .unwrap_or_else(|| panic!("{method} {path} is not in openapi.yaml"));
        let resp = op["responses"]
            .get(status.to_string())
            .unwrap_or_else(|| panic!("{method} {path} does not document status {status}"));
        let resp = self.inline(resp, 0);
        resp.pointer("/content/application~1json/schema")
            .unwrap_or_else(|| panic!("{method} {path} {status} has no JSON schema"))
            .clone()
    }

    /// Ok, or every way the body breaks the document.
    pub fn validate(
        &self,
        path: &str,
        method: &str,
        status: i64,
        body: &Value,
    ) -> Result<(), String> {
        let schema = self.schema(path, method, status);
        let v = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("schema for {method} {path} {status} is invalid: {e}"));
        let errors: Vec<String> = v
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Asserts the response is documented and matches; returns its body.
    pub fn check(&self, path: &str, method: &str, r: &ApiGatewayProxyResponse) -> Value {
        assert_eq!(r.headers["content-type"], "application/json");
        let b = body(r);
        if let Err(e) = self.validate(path, method, r.status_code, &b) {
            panic!(
                "{method} {path} answered {} with {b}, which breaks openapi.yaml: {e}",
                r.status_code
            );
        }
        b
    }

    /// Like [`check`], and the answer must be this status with this error code.
    pub fn check_error(
        &self,
        path: &str,
        method: &str,
        r: &ApiGatewayProxyResponse,
        status: i64,
        code: &str,
    ) -> Value {
        let b = self.check(path, method, r);
        assert_eq!(r.status_code, status, "{method} {path}: {b}");
        assert_eq!(b["error"]["code"], code, "{method} {path}: {b}");
        b
    }
}
