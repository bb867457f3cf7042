//! Deploying over a live endpoint, rolling back, and an update that falls back: the SageMaker
//! calls moto does not implement (UpdateEndpoint; an endpoint that stays InService on its old
//! config with FailureReason set after a failed update, as aws-contracts.md describes) are
//! answered by a stub SageMaker HTTP client (`infallible_client_fn`) holding the endpoint's
//! state; DynamoDB, S3 and SNS are a real moto server.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use aws_smithy_http_client::test_util::infallible_client_fn;
use pipeline_core::events::{self, EndpointDetail, Envelope};
use pipeline_core::metrics::{ConfusionMatrix, Metrics};
use pipeline_core::pipeline::Pipeline;
use pipeline_core::repo::{Changes, ModelRecord};
use pipeline_core::status::ModelStatus;
use pipeline_core::testing::{start_moto, ENDPOINT};
use serde_json::{json, Value};

/// The stub endpoint: which config it serves, its status and failure reason, and every call.
#[derive(Debug, Default)]
struct Endpoint {
    config: Option<String>,
    status: String,
    failure: Option<String>,
    calls: Vec<(String, Value)>,
}

fn stub_sagemaker(
    state: Arc<Mutex<Endpoint>>,
    cfg: &aws_config::SdkConfig,
) -> aws_sdk_sagemaker::Client {
    let http = infallible_client_fn(move |r: http::Request<aws_smithy_types::body::SdkBody>| {
        let target = r
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_start_matches("SageMaker.")
            .to_string();
        let body: Value =
            serde_json::from_slice(r.body().bytes().unwrap_or_default()).unwrap_or_default();
        let mut s = state.lock().unwrap();
        s.calls.push((target.clone(), body.clone()));
        let arn = |kind: &str, name: &str| {
            format!("arn:aws:sagemaker:us-east-1:123456789012:{kind}/{name}")
        };
        let (status, out) = match target.as_str() {
            "CreateModel" => (
                200,
                json!({"ModelArn": arn("model", body["ModelName"].as_str().unwrap_or_default())}),
            ),
            "CreateEndpointConfig" => (
                200,
                json!({"EndpointConfigArn": arn("endpoint-config", body["EndpointConfigName"].as_str().unwrap_or_default())}),
            ),
            "CreateEndpoint" => {
                s.config = body["EndpointConfigName"].as_str().map(str::to_string);
                s.status = "Creating".into();
                (200, json!({"EndpointArn": arn("endpoint", ENDPOINT)}))
            }
            "DeleteEndpointConfig" | "DeleteModel" => (200, json!({})),
            "UpdateEndpoint" => {
                s.status = "Updating".into();
                (200, json!({"EndpointArn": arn("endpoint", ENDPOINT)}))
            }
            "DescribeEndpoint" => match &s.config {
                None => (
                    400,
                    json!({"__type": "ValidationException", "message": format!("Could not find endpoint \"{ENDPOINT}\".")}),
                ),
                Some(c) => {
                    let mut d = json!({"EndpointName": ENDPOINT, "EndpointArn": arn("endpoint", ENDPOINT), "EndpointConfigName": c,
                        "EndpointStatus": s.status, "CreationTime": 1795867205.0, "LastModifiedTime": 1795867205.0});
                    if let Some(f) = &s.failure {
                        d["FailureReason"] = json!(f);
                    }
                    (200, d)
                }
            },
            other => (
                400,
                json!({"__type": "UnknownOperationException", "message": format!("stub does not answer {other}")}),
            ),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", "application/x-amz-json-1.1")
            .body(aws_smithy_types::body::SdkBody::from(out.to_string()))
            .unwrap()
    });
    aws_sdk_sagemaker::Client::from_conf(
        aws_sdk_sagemaker::config::Builder::from(cfg)
            .http_client(http)
            .build(),
    )
}

fn metrics(f1: f64) -> Metrics {
    Metrics {
        accuracy: f1,
        precision: f1,
        recall: f1,
        f1,
        auc_roc: f1,
        loss: 1.0 - f1,
        support: 100,
        confusion_matrix: ConfusionMatrix {
            tp: 40,
            tn: 40,
            fp: 10,
            fn_: 10,
        },
        positive_class: Some("Recyclable".into()),
        dataset: None,
    }
}

async fn staged_model(p: &Pipeline, id: &str, created: &str, f1: f64) {
    let m = ModelRecord {
        id: id.into(),
        status: ModelStatus::Training,
        created_at: created.into(),
        updated_at: created.into(),
        dataset: format!("datasets/{id}"),
        dataset_etag: Some("e".into()),
        training_job: id.into(),
        model_artifact: None,
        endpoint_config: None,
        metrics: None,
        failure_reason: None,
        decisions: vec![],
    };
    assert!(p.repo.create_model(&m).await.unwrap());
    p.repo
        .transition(
            id,
            &[ModelStatus::Training],
            ModelStatus::Staged,
            created,
            Changes {
                metrics: Some(metrics(f1)),
                model_artifact: Some(format!(
                    "s3://data/training-output/{id}/output/model.tar.gz"
                )),
                ..Default::default()
            },
        )
        .await
        .unwrap();
}

/// The endpoint reaches `status` on `config` (with an optional failure); the event arrives.
async fn settle(
    p: &Pipeline,
    state: &Arc<Mutex<Endpoint>>,
    config: &str,
    status: &str,
    failure: Option<&str>,
) -> Option<ModelRecord> {
    {
        let mut s = state.lock().unwrap();
        s.config = Some(config.into());
        s.status = status.into();
        s.failure = failure.map(str::to_string);
    }
    let v = json!({"detail-type": "SageMaker Endpoint State Change", "source": "aws.sagemaker", "time": "2026-11-28T12:00:00Z",
        "detail": {"EndpointName": ENDPOINT, "EndpointConfigName": config, "EndpointStatus": "IN_SERVICE"}});
    let e: Envelope<EndpointDetail> = events::parse(&v, events::ENDPOINT_STATE_CHANGE).unwrap();
    p.on_endpoint(&e.detail).await.unwrap()
}

fn calls(state: &Arc<Mutex<Endpoint>>, op: &str) -> Vec<Value> {
    state
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(t, _)| t == op)
        .map(|(_, b)| b.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_rollback_and_a_fallen_back_update() {
    let moto = start_moto().unwrap();
    let f = moto.fixture(Some("ops@example.com")).await;
    let state = Arc::new(Mutex::new(Endpoint::default()));
    let base = f.pipeline;
    let p = Pipeline::with_clients(
        base.settings.clone(),
        base.repo.client.clone(),
        base.s3.clone(),
        base.sns.clone(),
        stub_sagemaker(state.clone(), &f.cfg),
    );
    let status = |id: &'static str| {
        let p = p.clone();
        async move { p.repo.get_model(id).await.unwrap().status }
    };

    // First model: no endpoint yet, so CreateEndpoint.
    staged_model(&p, "m1", "2026-11-28T10:00:00Z", 0.80).await;
    let d1 = p.accept("m1", "ana", "first").await.unwrap();
    assert_eq!(calls(&state, "CreateEndpoint").len(), 1);
    assert!(calls(&state, "UpdateEndpoint").is_empty());
    let cfg = &calls(&state, "CreateEndpointConfig")[0];
    assert_eq!(
        cfg["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"],
        2048
    );
    assert_eq!(cfg["ProductionVariants"][0]["VariantName"], "primary");
    let model = &calls(&state, "CreateModel")[0];
    assert_eq!(
        model["PrimaryContainer"]["Environment"]["MODEL_ID"], "m1",
        "the container reports the model id"
    );
    assert_eq!(
        settle(&p, &state, &d1.deployment_id, "InService", None)
            .await
            .unwrap()
            .status,
        ModelStatus::Deployed
    );

    // Second model over the live endpoint: UpdateEndpoint with a new config, same variant.
    staged_model(&p, "m2", "2026-11-28T11:00:00Z", 0.85).await;
    let d2 = p.accept("m2", "bo", "better f1").await.unwrap();
    let updates = calls(&state, "UpdateEndpoint");
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["EndpointConfigName"], d2.deployment_id.as_str());
    assert_ne!(
        d1.deployment_id, d2.deployment_id,
        "every deploy needs a new config"
    );
    // While updating, the endpoint still answers on the old config: an event then changes nothing.
    assert!(settle(&p, &state, &d1.deployment_id, "Updating", None)
        .await
        .is_none());
    assert_eq!(status("m2").await, ModelStatus::Deploying);
    assert_eq!(
        settle(&p, &state, &d2.deployment_id, "InService", None)
            .await
            .unwrap()
            .status,
        ModelStatus::Deployed
    );
    assert_eq!(
        status("m1").await,
        ModelStatus::Superseded,
        "kept for rollback"
    );

    // Roll back to m1; the update falls back: InService on m2's config with FailureReason.
    let d3 = p
        .rollback("m1", "ana", "regression in the field")
        .await
        .unwrap();
    assert_eq!(
        calls(&state, "UpdateEndpoint")[1]["EndpointConfigName"],
        d3.deployment_id.as_str()
    );
    let failed = settle(
        &p,
        &state,
        &d2.deployment_id,
        "InService",
        Some("The new model failed to start"),
    )
    .await
    .unwrap();
    assert_eq!(failed.id, "m1");
    assert_eq!(failed.status, ModelStatus::DeployFailed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("The new model failed to start")
    );
    assert_eq!(
        status("m2").await,
        ModelStatus::Deployed,
        "the old model keeps serving"
    );
    let mails = moto.sent_emails();
    assert!(
        mails
            .iter()
            .any(|(s, m)| s.contains("Deploying model m1 failed") && m.contains("failed to start")),
        "{mails:?}"
    );

    // A deploy_failed model can be accepted again, and this time it serves.
    let d4 = p
        .accept("m1", "ana", "retry after fixing the image")
        .await
        .unwrap();
    assert!(d4.new);
    assert_eq!(
        settle(&p, &state, &d4.deployment_id, "InService", None)
            .await
            .unwrap()
            .status,
        ModelStatus::Deployed
    );
    assert_eq!(status("m2").await, ModelStatus::Superseded);
    let m1 = p.repo.get_model("m1").await.unwrap();
    let who: Vec<(&str, &str)> = m1
        .decisions
        .iter()
        .map(|d| (d.action.as_str(), d.by.as_str()))
        .collect();
    assert_eq!(
        who,
        vec![("accept", "ana"), ("rollback", "ana"), ("accept", "ana")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retiring_deletes_an_old_config_but_never_the_live_one() {
    let moto = start_moto().unwrap();
    let f = moto.fixture(None).await;
    let state = Arc::new(Mutex::new(Endpoint::default()));
    let base = f.pipeline;
    let p = Pipeline::with_clients(
        base.settings.clone(),
        base.repo.client.clone(),
        base.s3.clone(),
        base.sns.clone(),
        stub_sagemaker(state.clone(), &f.cfg),
    );
    staged_model(&p, "m1", "2026-11-28T10:00:00Z", 0.80).await;
    let d1 = p.accept("m1", "ana", "first").await.unwrap();
    settle(&p, &state, &d1.deployment_id, "InService", None)
        .await
        .unwrap();
    staged_model(&p, "m2", "2026-11-28T11:00:00Z", 0.85).await;
    let d2 = p.accept("m2", "bo", "better").await.unwrap();
    settle(&p, &state, &d2.deployment_id, "InService", None)
        .await
        .unwrap();

    // m2 serves (its config is live, and it is not superseded): it cannot be retired.
    let err = p.retire("m2", "ana", "x").await.unwrap_err();
    assert!(
        err.to_string().contains("the one the endpoint runs on"),
        "{err}"
    );
    let r = p.retire("m1", "ana", "too old").await.unwrap();
    assert_eq!(r.status, ModelStatus::Retired);
    let deleted = calls(&state, "DeleteEndpointConfig");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["EndpointConfigName"], d1.deployment_id.as_str());
    assert_eq!(
        calls(&state, "DeleteModel")[0]["ModelName"],
        d1.deployment_id.replacen("-cfg-", "-model-", 1).as_str()
    );
    // A retired model is no rollback target.
    let err = p.rollback("m1", "ana", "x").await.unwrap_err();
    assert!(err.to_string().contains("is retired"), "{err}");
}

/// One deployment at a time: an accept while the endpoint is updating is refused before
/// anything changes (SageMaker would refuse the UpdateEndpoint and leave the model half
/// deployed), and the model can be accepted once the endpoint is InService again.
#[tokio::test]
async fn an_accept_during_an_update_is_refused_and_changes_nothing() {
    let moto = start_moto().unwrap();
    let f = moto.fixture(None).await;
    let state = Arc::new(Mutex::new(Endpoint::default()));
    let base = f.pipeline;
    let p = Pipeline::with_clients(
        base.settings.clone(),
        base.repo.client.clone(),
        base.s3.clone(),
        base.sns.clone(),
        stub_sagemaker(state.clone(), &f.cfg),
    );
    staged_model(&p, "m1", "2026-11-28T10:00:00Z", 0.80).await;
    let d1 = p.accept("m1", "ana", "first").await.unwrap();
    settle(&p, &state, &d1.deployment_id, "InService", None).await;
    staged_model(&p, "m2", "2026-11-28T11:00:00Z", 0.85).await;
    state.lock().unwrap().status = "Updating".into();

    let err = p.accept("m2", "bo", "better").await.unwrap_err();
    assert!(
        matches!(err, pipeline_core::pipeline::PipelineError::Busy(_)),
        "expected Busy, got {err:?}"
    );
    assert_eq!(
        p.repo.get_model("m2").await.unwrap().status,
        ModelStatus::Staged
    );
    assert!(calls(&state, "UpdateEndpoint").is_empty());

    state.lock().unwrap().status = "InService".into();
    let d2 = p.accept("m2", "bo", "better").await.unwrap();
    assert_eq!(calls(&state, "UpdateEndpoint").len(), 1);
    // Two deployments in one second still get distinct SageMaker names.
    assert_ne!(d1.deployment_id, d2.deployment_id);
}
