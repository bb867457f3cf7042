//! The repository against a real moto server started on a free loopback port: conditional
//! writes make duplicate and out-of-order events harmless, numbers are stored as numbers, and of
//! two concurrent decisions exactly one wins.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use pipeline_core::metrics::{ConfusionMatrix, Metrics};
use pipeline_core::repo::{Changes, Decision, ModelRecord, Repo, RepoError};
use pipeline_core::status::ModelStatus;
use pipeline_core::testing::{create_table, start_moto};

fn metrics() -> Metrics {
    Metrics {
        accuracy: 0.875,
        precision: 0.8,
        recall: 0.75,
        f1: 0.774,
        auc_roc: 0.91,
        loss: 0.33,
        support: 200,
        confusion_matrix: ConfusionMatrix {
            tp: 60,
            tn: 115,
            fp: 15,
            fn_: 10,
        },
        positive_class: Some("Recyclable".into()),
        dataset: Some(serde_json::json!({"synthetic": true})),
    }
}

fn record(id: &str, created: &str) -> ModelRecord {
    ModelRecord {
        id: id.into(),
        status: ModelStatus::Training,
        created_at: created.into(),
        updated_at: created.into(),
        dataset: "datasets/d1".into(),
        dataset_etag: Some("\"e1\"".into()),
        training_job: format!("wastesort-local-{id}"),
        model_artifact: None,
        endpoint_config: None,
        metrics: None,
        failure_reason: None,
        decisions: vec![],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conditional_writes_make_duplicates_and_races_harmless() {
    let moto = start_moto().unwrap();
    let c = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    create_table(&c, "models").await;
    create_table(&c, "jobs").await;
    let repo = Repo::new(c.clone(), "models", "jobs");

    assert!(repo
        .create_model(&record("m1", "2026-11-28T10:00:00Z"))
        .await
        .unwrap());
    assert!(
        !repo
            .create_model(&record("m1", "2026-11-28T10:00:00Z"))
            .await
            .unwrap(),
        "a duplicate trigger creates nothing"
    );

    // training -> staged with metrics, stored as DynamoDB numbers.
    let staged = repo
        .transition(
            "m1",
            &[ModelStatus::Training],
            ModelStatus::Staged,
            "2026-11-28T10:05:00Z",
            Changes {
                metrics: Some(metrics()),
                model_artifact: Some("s3://b/training-output/m1/output/model.tar.gz".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(staged.status, ModelStatus::Staged);
    assert_eq!(staged.metrics, Some(metrics()));
    let raw = c
        .get_item()
        .table_name("models")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("MODEL".into()),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("m1".into()),
        )
        .send()
        .await
        .unwrap();
    let m = raw.item().unwrap()["metrics"].as_m().unwrap();
    assert_eq!(
        m["accuracy"].as_n().unwrap(),
        "0.875",
        "a number, not a string"
    );
    assert_eq!(
        m["confusion_matrix"].as_m().unwrap()["fn"].as_n().unwrap(),
        "10"
    );

    // The same Completed event again: a conflict that names the current state; nothing changes.
    let again = repo
        .transition(
            "m1",
            &[ModelStatus::Training],
            ModelStatus::Staged,
            "2026-11-28T11:00:00Z",
            Changes::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&again, RepoError::Conflict { current, .. } if current == "staged"),
        "{again}"
    );
    assert_eq!(
        repo.get_model("m1").await.unwrap().updated_at,
        "2026-11-28T10:05:00Z"
    );

    // An out-of-order event (a Failed after Completed) changes nothing either.
    let late = repo
        .transition(
            "m1",
            &[ModelStatus::Training],
            ModelStatus::Failed,
            "2026-11-28T11:00:00Z",
            Changes::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(late, RepoError::Conflict { .. }));

    // Two people accept at once: exactly one wins.
    let decide = |by: &'static str| {
        let repo = repo.clone();
        async move {
            repo.transition(
                "m1",
                &[ModelStatus::Staged, ModelStatus::DeployFailed],
                ModelStatus::Deploying,
                "2026-11-28T12:00:00Z",
                Changes {
                    decision: Some(Decision {
                        action: "accept".into(),
                        by: by.into(),
                        at: "2026-11-28T12:00:00Z".into(),
                        reason: "better".into(),
                    }),
                    ..Default::default()
                },
            )
            .await
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(decide("ana")), tokio::spawn(decide("bo")));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        a.is_ok() ^ b.is_ok(),
        "exactly one decision wins: {a:?} / {b:?}"
    );
    let m1 = repo.get_model("m1").await.unwrap();
    assert_eq!(m1.status, ModelStatus::Deploying);
    assert_eq!(m1.decisions.len(), 1, "the losing decision is not recorded");

    // Unknown ids are NotFound, not a conflict.
    let missing = repo
        .transition(
            "nope",
            &[ModelStatus::Staged],
            ModelStatus::Rejected,
            "2026-11-28T12:00:00Z",
            Changes::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(missing, RepoError::NotFound(_)), "{missing}");

    // Newest first.
    assert!(repo
        .create_model(&record("m2", "2026-11-28T13:00:00Z"))
        .await
        .unwrap());
    assert!(repo
        .create_model(&record("m0", "2026-11-27T09:00:00Z"))
        .await
        .unwrap());
    let ids: Vec<String> = repo
        .list_models()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec!["m2", "m1", "m0"]);
}

/// The cached list follows every write: a transition or a new model moves the models
/// table's version, so the next read sees it (no stale dashboard after an accept).
#[tokio::test]
async fn the_cached_model_list_follows_every_write() {
    let moto = start_moto().unwrap();
    let f = moto.fixture(None).await;
    let repo = &f.pipeline.repo;
    assert_eq!(repo.models_version().await.unwrap(), 0);
    assert!(repo.list_models_cached().await.unwrap().is_empty());

    let m = record("m1", "2026-11-28T10:00:00Z");
    assert!(repo.create_model(&m).await.unwrap());
    let v1 = repo.models_version().await.unwrap();
    assert!(v1 > 0, "a new model moves the version");
    let listed = repo.list_models_cached().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, ModelStatus::Training);

    repo.transition(
        "m1",
        &[ModelStatus::Training],
        ModelStatus::Failed,
        "2026-11-28T10:05:00Z",
        Changes {
            failure_reason: Some("bad data".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(repo.models_version().await.unwrap() > v1);
    let listed = repo.list_models_cached().await.unwrap();
    assert_eq!(
        listed[0].status,
        ModelStatus::Failed,
        "the cache saw the transition"
    );
    // A refused transition writes nothing and leaves the version alone.
    let v2 = repo.models_version().await.unwrap();
    assert!(repo
        .transition(
            "m1",
            &[ModelStatus::Training],
            ModelStatus::Staged,
            "t",
            Changes::default()
        )
        .await
        .is_err());
    assert_eq!(repo.models_version().await.unwrap(), v2);
}

/// Another process's write (here: a second repository with its own cache, as `on_training`
/// is to `api`) shows in a list within `LIST_FRESH`: before that the list is served from
/// memory without asking the table, after it the version is checked and the list read again.
/// A repository with zero freshness checks on every list and sees the write at once.
#[tokio::test]
async fn another_process_write_shows_within_the_list_freshness() {
    use pipeline_core::repo::LIST_FRESH;
    use std::time::{Duration, Instant};
    let moto = start_moto().unwrap();
    let f = moto.fixture(None).await;
    let writer = &f.pipeline.repo;
    // Separate caches: clones of one repository share theirs.
    let reader = Repo::new(
        writer.client.clone(),
        writer.models_table.clone(),
        writer.jobs_table.clone(),
    );
    let strict = Repo::new(
        writer.client.clone(),
        writer.models_table.clone(),
        writer.jobs_table.clone(),
    )
    .with_list_freshness(Duration::ZERO);
    assert!(strict.list_models_cached().await.unwrap().is_empty());
    // The reader's check happens between these two instants.
    let before = Instant::now();
    assert!(reader.list_models_cached().await.unwrap().is_empty());
    let after = Instant::now();

    assert!(writer
        .create_model(&record("m1", "2026-11-28T10:00:00Z"))
        .await
        .unwrap());
    assert_eq!(
        strict.list_models_cached().await.unwrap().len(),
        1,
        "zero freshness: the write is seen at once"
    );
    let early = reader.list_models_cached().await.unwrap();
    if before.elapsed() < LIST_FRESH {
        assert!(
            early.is_empty(),
            "within LIST_FRESH of its check the reader serves its list from memory"
        );
    }
    let deadline = after + LIST_FRESH + Duration::from_millis(50);
    tokio::time::sleep_until(deadline.into()).await;
    let seen = reader.list_models_cached().await.unwrap();
    assert_eq!(
        seen.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        vec!["m1"],
        "after LIST_FRESH the reader checks the version and sees the write"
    );
}
