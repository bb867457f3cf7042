//! The pipeline's operations against a real moto server: S3 (data set, model archive with
//! metrics.json), DynamoDB (conditional transitions), SNS (emails read back from moto's data
//! endpoint) and the SageMaker calls moto implements (CreateTrainingJob, CreateModel,
//! CreateEndpointConfig, CreateEndpoint, DescribeEndpoint). moto does not implement
//! UpdateEndpoint and runs no training: those paths are covered end to end by the local cloud.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use pipeline_core::events::{self, EndpointDetail, Envelope, TrainingDetail};
use pipeline_core::status::ModelStatus;
use pipeline_core::testing::start_moto;
use serde_json::json;

fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut t = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, *data).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap()
}

fn metrics_json(acc: f64, f1: f64) -> Vec<u8> {
    json!({"accuracy": acc, "precision": 0.8, "recall": 0.7, "f1": f1, "auc_roc": 0.9, "loss": 0.3,
           "support": 100, "confusion_matrix": {"tp": 35, "tn": 45, "fp": 9, "fn": 11},
           "positive_class": "Recyclable", "dataset": {"synthetic": true}})
    .to_string()
    .into_bytes()
}

fn training_event(
    job: &str,
    status: &str,
    artifact: Option<&str>,
    reason: Option<&str>,
) -> TrainingDetail {
    let v = json!({"detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker", "time": "2026-11-28T12:00:00Z",
        "detail": {"TrainingJobName": job, "TrainingJobStatus": status, "FailureReason": reason,
                   "ModelArtifacts": {"S3ModelArtifacts": artifact}, "Tags": {"model": job}, "TrainingEndTime": "1795867205000"}});
    let e: Envelope<TrainingDetail> = events::parse(&v, events::TRAINING_STATE_CHANGE).unwrap();
    e.detail
}

#[tokio::test(flavor = "multi_thread")]
async fn train_stage_email_accept_and_serve() {
    let moto = start_moto().unwrap();
    let p = moto.pipeline().await;
    let (s3, sagemaker) = (p.s3.clone(), p.sagemaker.clone());

    // A data set with both channels; the trigger starts one run, its duplicate none.
    for key in [
        "datasets/d1/train/O/a.jpg",
        "datasets/d1/validation/R/b.jpg",
        "datasets/d1/_READY",
    ] {
        s3.put_object()
            .bucket("data")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    let (latest, etag) = p.latest_dataset().await.unwrap().unwrap();
    assert_eq!(latest, "datasets/d1");
    assert!(!etag.is_empty());
    let started = p.start_training("datasets/d1", "\"etag-1\"").await.unwrap();
    assert_eq!(
        p.training_in_progress().await.unwrap().unwrap().id,
        started.model_id
    );
    assert!(started.new);
    let job = sagemaker
        .describe_training_job()
        .training_job_name(&started.job)
        .send()
        .await
        .unwrap();
    let channels: Vec<&str> = job
        .input_data_config()
        .iter()
        .filter_map(|c| c.channel_name())
        .collect();
    assert_eq!(channels, vec!["train", "validation"]);
    assert_eq!(job.hyper_parameters().unwrap()["epochs"], "2");
    let dup = p.start_training("datasets/d1", "\"etag-1\"").await.unwrap();
    assert_eq!(
        (dup.job.as_str(), dup.new),
        (started.job.as_str(), false),
        "a duplicate event starts nothing"
    );
    assert_eq!(p.repo.list_models().await.unwrap().len(), 1);

    // Completed: metrics read from the model archive, staged, comparison emailed.
    let artifact = format!(
        "s3://data/training-output/{}/output/model.tar.gz",
        started.job
    );
    s3.put_object()
        .bucket("data")
        .key(artifact.trim_start_matches("s3://data/"))
        .body(
            targz(&[
                ("model.safetensors", b"w"),
                ("metrics.json", &metrics_json(0.9, 0.85)),
            ])
            .into(),
        )
        .send()
        .await
        .unwrap();
    let done = training_event(&started.job, "Completed", Some(&artifact), None);
    let staged = p.on_training(&done).await.unwrap().unwrap();
    assert_eq!(staged.status, ModelStatus::Staged);
    assert_eq!(staged.metrics.as_ref().unwrap().f1, 0.85);
    assert!(
        p.on_training(&done).await.unwrap().is_none(),
        "the same event twice changes nothing"
    );
    let late_failure = training_event(&started.job, "Failed", None, Some("late"));
    assert!(
        p.on_training(&late_failure).await.unwrap().is_none(),
        "an out-of-order event changes nothing"
    );
    let mails = moto.sent_emails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0]
            .0
            .contains("staged: f1 0.850 (nothing deployed yet)"),
        "{mails:?}"
    );
    assert!(mails[0].1.contains("accuracy"), "{mails:?}");

    // Accept twice: one deployment.
    let d1 = p
        .accept(&staged.id, "ana", "better than nothing")
        .await
        .unwrap();
    let d2 = p.accept(&staged.id, "ana", "again").await.unwrap();
    assert!(d1.new && !d2.new);
    assert_eq!(d1.deployment_id, d2.deployment_id);
    let ep = sagemaker
        .describe_endpoint()
        .endpoint_name("wastesort-local-endpoint")
        .send()
        .await
        .unwrap();
    assert_eq!(ep.endpoint_config_name(), Some(d1.deployment_id.as_str()));
    let cfg = sagemaker
        .describe_endpoint_config()
        .endpoint_config_name(&d1.deployment_id)
        .send()
        .await
        .unwrap();
    let variant = &cfg.production_variants()[0];
    assert_eq!(variant.variant_name(), Some("primary"));
    assert_eq!(
        variant.serverless_config().unwrap().memory_size_in_mb(),
        Some(2048)
    );

    // InService on our config: deployed, emailed.
    let v = json!({"detail-type": "SageMaker Endpoint State Change", "source": "aws.sagemaker",
        "detail": {"EndpointName": "wastesort-local-endpoint", "EndpointConfigName": d1.deployment_id, "EndpointStatus": "IN_SERVICE"}});
    let e: Envelope<EndpointDetail> = events::parse(&v, events::ENDPOINT_STATE_CHANGE).unwrap();
    let deployed = p.on_endpoint(&e.detail).await.unwrap().unwrap();
    assert_eq!(deployed.status, ModelStatus::Deployed);
    assert_eq!(deployed.decisions[0].by, "ana");
    assert!(
        p.on_endpoint(&e.detail).await.unwrap().is_none(),
        "a repeated InService changes nothing"
    );
    let mails = moto.sent_emails();
    assert!(
        mails.iter().any(|(s, _)| s.contains("is InService")),
        "{mails:?}"
    );

    // A second run fails: recorded with its reason, emailed, the deployed model untouched.
    for key in ["datasets/d2/train/O/a.jpg", "datasets/d2/_READY"] {
        s3.put_object()
            .bucket("data")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        p.latest_dataset().await.unwrap().unwrap().0,
        "datasets/d2",
        "the newest push"
    );
    let second = p.start_training("datasets/d2", "\"etag-2\"").await.unwrap();
    let job = sagemaker
        .describe_training_job()
        .training_job_name(&second.job)
        .send()
        .await
        .unwrap();
    assert_eq!(
        job.input_data_config().len(),
        1,
        "no validation channel without validation data"
    );
    let failed = p
        .on_training(&training_event(
            &second.job,
            "Failed",
            None,
            Some("AlgorithmError: class R is empty"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, ModelStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("AlgorithmError: class R is empty")
    );
    assert!(moto
        .sent_emails()
        .iter()
        .any(|(s, m)| s.contains("failed") && m.contains("class R is empty")));
    assert_eq!(p.deployed().await.unwrap().unwrap().id, staged.id);

    // Reject is a decision from staged only.
    let err = p.reject(&staged.id, "bo", "no").await.unwrap_err();
    assert!(err.to_string().contains("is deployed, not staged"), "{err}");
}
