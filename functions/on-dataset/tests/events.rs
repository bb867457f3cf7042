//! The event handlers with real-shaped EventBridge events against a moto server: the
//! `_READY` marker (key with a space) starts one run and its duplicate none, images start
//! nothing, a schedule retrains on the newest data set; training and endpoint state changes
//! with epoch-ms strings and numbers, `IN_SERVICE` casing and unknown fields, twice and out of
//! order.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use pipeline_core::status::ModelStatus;
use pipeline_core::testing::start_moto;
use serde_json::json;

fn object_created(key: &str, etag: &str) -> serde_json::Value {
    json!({
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": "123456789012", "time": "2026-11-28T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:s3:::data"],
        "detail": {"version": "0", "bucket": {"name": "data"},
                   "object": {"key": key, "size": 5, "etag": etag, "version-id": "v1", "sequencer": "00617F08299329D189"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": "123456789012", "reason": "PutObject", "new-field": 1}
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn events_drive_the_pipeline_idempotently() {
    let moto = start_moto().unwrap();
    let p = moto.pipeline().await;
    for key in [
        "datasets/2026 11 28/train/O/a.jpg",
        "datasets/2026 11 28/_READY",
    ] {
        p.s3.put_object()
            .bucket("data")
            .key(key)
            .body(b"x".to_vec().into())
            .send()
            .await
            .unwrap();
    }

    // An image is not a trigger.
    let none = on_dataset::handle(
        &p,
        &object_created("datasets/2026 11 28/train/O/a.jpg", "e0"),
    )
    .await
    .unwrap();
    assert!(none.is_empty());
    // The marker starts one run; the same event again starts nothing new.
    let ready = object_created("datasets/2026 11 28/_READY", "\"e1\"");
    let first = on_dataset::handle(&p, &ready).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].new);
    let again = on_dataset::handle(&p, &ready).await.unwrap();
    assert_eq!(
        (again[0].job.as_str(), again[0].new),
        (first[0].job.as_str(), false)
    );
    // Another bucket's marker is not ours.
    let mut other = ready.clone();
    other["detail"]["bucket"]["name"] = json!("someone-else");
    assert!(on_dataset::handle(&p, &other).await.unwrap().is_empty());

    // The schedule retrains on the newest data set, once per period.
    let tick = json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events",
        "time": "2026-12-05T00:00:00Z", "resources": ["arn:aws:events:us-east-1:123456789012:rule/wastesort-local-retrain-schedule"], "detail": {}});
    let scheduled = on_dataset::handle(&p, &tick).await.unwrap();
    assert_eq!(scheduled.len(), 1);
    assert!(scheduled[0].new && scheduled[0].job != first[0].job);
    assert!(
        !on_dataset::handle(&p, &tick).await.unwrap()[0].new,
        "a retried delivery of one tick"
    );

    // Training failed (end time as an epoch-ms number), twice, then a late Completed.
    let job = first[0].job.clone();
    let failed = json!({"detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker", "time": "2026-11-28T12:10:00Z",
        "detail": {"TrainingJobName": job, "TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: corrupt JPEG",
                   "TrainingEndTime": 1795867800000u64, "Tags": {"model": job}, "Unknown": [1, 2]}});
    let m = on_training::handle(&p, &failed).await.unwrap().unwrap();
    assert_eq!(m.status, ModelStatus::Failed);
    assert!(on_training::handle(&p, &failed).await.unwrap().is_none());
    let mut late = failed.clone();
    late["detail"]["TrainingJobStatus"] = json!("Completed");
    late["detail"]["TrainingEndTime"] = json!("1795867800000");
    late["detail"]["ModelArtifacts"] =
        json!({"S3ModelArtifacts": "s3://data/training-output/x/output/model.tar.gz"});
    let after = on_training::handle(&p, &late).await;
    assert!(
        matches!(after, Ok(None)),
        "a late Completed after Failed changes nothing: {after:?}"
    );
    assert_eq!(
        p.repo.get_model(&job).await.unwrap().status,
        ModelStatus::Failed
    );
    let mails = moto.sent_emails();
    assert_eq!(
        mails.iter().filter(|(s, _)| s.contains("failed")).count(),
        1,
        "one email for one failure: {mails:?}"
    );

    // Endpoint events: another stack's endpoint is ignored; ours with nothing deploying too.
    let ep = json!({"detail-type": "SageMaker Endpoint State Change", "source": "aws.sagemaker", "time": "2026-11-28T12:20:00Z",
        "detail": {"EndpointName": "someone-elses-endpoint", "EndpointStatus": "IN_SERVICE", "LastModifiedTime": "1795868400000"}});
    assert!(on_endpoint::handle(&p, &ep).await.unwrap().is_none());
    let mut ours = ep.clone();
    ours["detail"]["EndpointName"] = json!("wastesort-local-endpoint");
    assert!(on_endpoint::handle(&p, &ours).await.unwrap().is_none());
    // Not an event of this handler: a clear error, nothing changed.
    let err = on_training::handle(&p, &ours).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("SageMaker Training Job State Change"),
        "{err}"
    );
}
