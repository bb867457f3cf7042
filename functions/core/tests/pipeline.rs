//! The pipeline's operations against a real moto server: S3 (data set, model archive with
//! metrics.json), DynamoDB (conditional transitions), SNS (emails read back from moto's data
//! endpoint) and the SageMaker calls moto implements (CreateTrainingJob, CreateModel,
//! CreateEndpointConfig, CreateEndpoint, DescribeEndpoint). moto does not implement
//! UpdateEndpoint and runs no training: those paths are covered end to end by the local cloud.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use pipeline_core::events::{self, EndpointDetail, Envelope, TrainingDetail};
use pipeline_core::pipeline::Pipeline;
use pipeline_core::settings::Settings;
use pipeline_core::status::ModelStatus;
use serde_json::json;

struct Moto(Child, u16);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> Moto {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run ./dev setup",
        python.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto(child, port)
}

/// Emails moto recorded for the topic: (subject, message).
fn sent(port: u16) -> Vec<(String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /moto-api/data.json HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let body = &raw[raw.find("\r\n\r\n").unwrap() + 4..];
    let data: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut out = Vec::new();
    for topic in data["sns"]["Topic"].as_array().cloned().unwrap_or_default() {
        for n in topic["sent_notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            // [message id, message, subject, attributes, group id]
            out.push((
                n[2].as_str().unwrap_or_default().to_string(),
                n[1].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    out
}

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
    let moto = start_moto();
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "t",
        ))
        .endpoint_url(format!("http://127.0.0.1:{}", moto.1))
        .load()
        .await;
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&cfg)
            .force_path_style(true)
            .build(),
    );
    let sns = aws_sdk_sns::Client::new(&cfg);
    let sagemaker = aws_sdk_sagemaker::Client::new(&cfg);
    for t in ["models", "jobs"] {
        let attr = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap()
        };
        let key = |n: &str, k| {
            KeySchemaElement::builder()
                .attribute_name(n)
                .key_type(k)
                .build()
                .unwrap()
        };
        ddb.create_table()
            .table_name(t)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .send()
            .await
            .unwrap();
    }
    s3.create_bucket().bucket("data").send().await.unwrap();
    let topic = sns
        .create_topic()
        .name("wastesort-local-pipeline")
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("email")
        .endpoint("ops@example.com")
        .send()
        .await
        .unwrap();
    let settings = Settings::from_lookup(&|k| {
        Some(
            match k {
                "APP_NAME" => "wastesort",
                "APP_ENV" => "local",
                "DATA_BUCKET" => "data",
                "MODELS_TABLE" => "models",
                "JOBS_TABLE" => "jobs",
                "TOPIC_ARN" => topic.as_str(),
                "ENDPOINT_NAME" => "wastesort-local-endpoint",
                "SAGEMAKER_ROLE_ARN" => "arn:aws:iam::123456789012:role/wastesort-local-sagemaker",
                "TRAINING_IMAGE" => {
                    "123456789012.dkr.ecr.us-east-1.amazonaws.com/waste-model@sha256:abc"
                }
                "HYPERPARAMETERS" => "{\"epochs\": \"2\"}",
                _ => return None,
            }
            .to_string(),
        )
    })
    .unwrap();
    let p = Pipeline::with_clients(settings, ddb, s3.clone(), sns, sagemaker.clone());

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
    let mails = sent(moto.1);
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
    let mails = sent(moto.1);
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
    assert!(sent(moto.1)
        .iter()
        .any(|(s, m)| s.contains("failed") && m.contains("class R is empty")));
    assert_eq!(p.deployed().await.unwrap().unwrap().id, staged.id);

    // Reject is a decision from staged only.
    let err = p.reject(&staged.id, "bo", "no").await.unwrap_err();
    assert!(err.to_string().contains("is deployed, not staged"), "{err}");
}
