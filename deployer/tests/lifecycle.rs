//! The whole life of a stack against a real moto server that the deployer itself starts on a free
//! loopback port: plan on nothing, up, each important resource confirmed through its own
//! service's API, a no-op up with zero uploads, plan exit codes, status, and a down that removes
//! a planted leftover and leaves nothing (no emulator process either).
//!
//! The emulator does not enforce some settings (see local-emulator.md): bucket versioning reads
//! back in a shape the SDK does not parse, DynamoDB SSE and PITR are ignored, the TLS-only bucket
//! policy is skipped. Those are checked in the rendered templates (render.rs: snapshots,
//! cfn-lint, checkov) instead of here.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use deployer::config::{self, Environment, Overrides};
use deployer::state::Endpoints;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Run {
    state: tempfile::TempDir,
}

impl Run {
    fn deployer(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
        c.current_dir(root())
            .env("DEPLOYER_STATE_DIR", self.state.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1")
            .args(args);
        for (k, _) in std::env::vars() {
            if k.starts_with("DEPLOYER_") && k != "DEPLOYER_STATE_DIR" {
                c.env_remove(k);
            }
        }
        c
    }

    fn json(&self, args: &[&str], expect_code: i32) -> Value {
        let out = self
            .deployer(args)
            .args(["--output", "json"])
            .output()
            .unwrap();
        check(&out, expect_code, args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn env(&self) -> Environment {
        let state = self.state.path().to_path_buf();
        config::load(
            &root().join("deployer.toml"),
            &Overrides::default(),
            &move |k| (k == "DEPLOYER_STATE_DIR").then(|| state.display().to_string()),
        )
        .unwrap()
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.state.path().join("local/emulator.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    async fn clients(&self) -> deployer::aws::Clients {
        let env = self.env();
        let text = std::fs::read(self.state.path().join("local/endpoints.json")).unwrap();
        let endpoints: Endpoints = serde_json::from_slice(&text).unwrap();
        let cfg = deployer::aws::sdk_config(&env, Some(&endpoints))
            .await
            .unwrap();
        deployer::aws::clients(&env, &cfg, Some(&endpoints))
    }
}

impl Drop for Run {
    /// Stops the emulator by its pid even when an assertion failed midway.
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            deployer::emulator::terminate(pid);
        }
    }
}

fn check(out: &Output, code: i32, args: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn up_noop_plan_status_and_down_against_the_emulator() {
    let run = Run {
        state: tempfile::tempdir().unwrap(),
    };
    let prefix = "wastesort-local";

    // plan on nothing: the create-everything table, exit 2, and nothing left behind.
    let plan = run.json(&["plan"], 2);
    let changes = plan.as_array().unwrap();
    assert!(changes.len() > 20, "{plan}");
    assert!(changes.iter().all(|c| c["action"] == "Add"));
    assert!(changes.iter().any(|c| c["logical_id"] == "ArtifactBucket"));
    assert!(changes
        .iter()
        .any(|c| c["resource_type"] == "AWS::Lambda::Function"));
    let c = run.clients().await;
    let stacks = c.cfn.list_stacks().send().await.unwrap();
    assert!(
        stacks.stack_summaries().is_empty(),
        "plan left a stack behind: {stacks:?}"
    );

    // up
    let up = run.json(&["up", "--yes"], 0);
    assert_eq!(up["changed"], true);
    let functions = up["functions"].as_array().unwrap();
    assert_eq!(up["uploaded"].as_u64().unwrap() as usize, functions.len());
    let outputs = &up["outputs"];
    let data_bucket = outputs["DataBucketName"].as_str().unwrap().to_string();
    assert!(data_bucket.starts_with(&format!("{prefix}-data-")));
    assert!(outputs["ApiUrl"].as_str().unwrap().ends_with("/v1/api"));
    assert!(outputs["TopicArn"]
        .as_str()
        .unwrap()
        .ends_with(":wastesort-local-pipeline"));

    // Each important resource, through its own API.
    let enc =
        c.s3.get_bucket_encryption()
            .bucket(&data_bucket)
            .send()
            .await
            .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let pab =
        c.s3.get_public_access_block()
            .bucket(&data_bucket)
            .send()
            .await
            .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.block_public_policy(),
            pab.ignore_public_acls(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let buckets = c.s3.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().iter().any(|b| b
        .name()
        .unwrap()
        .starts_with(&format!("{prefix}-artifacts-"))));

    for table in ["models", "jobs"] {
        let d = c
            .dynamodb
            .describe_table()
            .table_name(format!("{prefix}-{table}"))
            .send()
            .await
            .unwrap();
        let t = d.table().unwrap();
        let keys: Vec<(String, String)> = t
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_string(),
                    k.key_type().as_str().to_string(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        );
        assert_eq!(
            t.billing_mode_summary()
                .unwrap()
                .billing_mode()
                .unwrap()
                .as_str(),
            "PAY_PER_REQUEST"
        );
    }

    let topic = c
        .sns
        .get_topic_attributes()
        .topic_arn(outputs["TopicArn"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(topic.attributes().unwrap().contains_key("TopicArn"));

    let rule = c
        .events
        .describe_rule()
        .name(format!("{prefix}-dataset-ready"))
        .send()
        .await
        .unwrap();
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(pattern["source"][0], "aws.s3");
    assert_eq!(pattern["detail-type"][0], "Object Created");
    assert_eq!(pattern["detail"]["bucket"]["name"][0], data_bucket.as_str());
    assert_eq!(
        pattern["detail"]["object"]["key"][0]["wildcard"],
        "datasets/*/_READY"
    );
    let rule = c
        .events
        .describe_rule()
        .name(format!("{prefix}-training-state"))
        .send()
        .await
        .unwrap();
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(
        pattern["detail"]["TrainingJobName"][0]["prefix"],
        "wastesort-local-"
    );
    let rule = c
        .events
        .describe_rule()
        .name(format!("{prefix}-endpoint-state"))
        .send()
        .await
        .unwrap();
    let pattern: Value = serde_json::from_str(rule.event_pattern().unwrap()).unwrap();
    assert_eq!(
        pattern["detail"]["EndpointName"][0],
        "wastesort-local-endpoint"
    );
    let rule = c
        .events
        .describe_rule()
        .name(format!("{prefix}-retrain-schedule"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        rule.state().unwrap().as_str(),
        "DISABLED",
        "the schedule is off by default"
    );
    assert_eq!(rule.schedule_expression(), Some("rate(7 days)"));

    for f in functions {
        let name = f["name"].as_str().unwrap();
        let got = c
            .lambda
            .get_function()
            .function_name(format!("{prefix}-{name}"))
            .send()
            .await
            .unwrap();
        let cfg = got.configuration().unwrap();
        assert_eq!(
            cfg.code_sha256().unwrap(),
            deployer::package::hex_to_b64(f["sha256"].as_str().unwrap()),
            "the deployed code is the package that was built"
        );
        assert_eq!(cfg.runtime().unwrap().as_str(), "provided.al2023");
        let vars = cfg.environment().unwrap().variables().unwrap();
        assert_eq!(vars["ENDPOINT_NAME"], "wastesort-local-endpoint");
        assert_eq!(vars["DATA_BUCKET"], data_bucket);
        let role = c
            .iam
            .get_role()
            .role_name(format!("{prefix}-{name}-fn"))
            .send()
            .await
            .unwrap();
        assert!(role
            .role()
            .unwrap()
            .assume_role_policy_document()
            .unwrap()
            .contains("lambda.amazonaws.com"));
        let policies = c
            .iam
            .list_role_policies()
            .role_name(format!("{prefix}-{name}-fn"))
            .send()
            .await
            .unwrap();
        assert_eq!(policies.policy_names(), [name.to_string()]);
        let groups = c
            .logs
            .describe_log_groups()
            .log_group_name_prefix(format!("/aws/lambda/{prefix}-{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(groups.log_groups()[0].retention_in_days(), Some(14));
    }
    c.iam
        .get_role()
        .role_name(format!("{prefix}-sagemaker"))
        .send()
        .await
        .unwrap();
    let key = c
        .kms
        .describe_key()
        .key_id(outputs["KeyArn"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(key.key_metadata().unwrap().enabled());
    let apis = c.apigateway.get_rest_apis().send().await.unwrap();
    assert!(apis
        .items()
        .iter()
        .any(|a| a.name() == Some("wastesort-local-api")));

    // A second up changes nothing and uploads nothing.
    let again = run.json(&["up", "--yes"], 0);
    assert_eq!(again["changed"], false, "{again}");
    assert_eq!(again["uploaded"], 0);
    assert_eq!(run.json(&["plan"], 0), Value::Array(vec![]));

    // A settings change shows in plan (exit 2) and leaves no change set behind.
    let out = run
        .deployer(&["plan", "--output", "json"])
        .env("DEPLOYER_LOG_RETENTION_DAYS", "30")
        .output()
        .unwrap();
    check(&out, 2, &["plan with retention 30"]);
    let changes: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["logical_id"] == "ApiFunctionLogGroup" && c["action"] == "Modify"),
        "{changes}"
    );
    let sets = c
        .cfn
        .list_change_sets()
        .stack_name(format!("{prefix}-app"))
        .send()
        .await
        .unwrap();
    assert!(
        sets.summaries().is_empty(),
        "plan left change sets: {sets:?}"
    );

    let status = run.json(&["status"], 0);
    assert_eq!(status["stacks"][0]["status"], "CREATE_COMPLETE");
    assert!(
        status["functions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["in_sync"] == true),
        "{status}"
    );

    // A data set push: images first, then the _READY manifest the training rule fires on.
    let data = tempfile::tempdir().unwrap();
    for (path, bytes) in [
        ("TRAIN/O/banana peel.jpg", &b"\xff\xd8\xff one"[..]),
        ("TRAIN/R/can.png", &b"\x89PNG two"[..]),
        ("TRAIN/R/bottle.JPG", &b"\xff\xd8\xff three"[..]),
        ("TEST/organic/apple.jpeg", &b"\xff\xd8\xff four"[..]),
        ("TEST/R/readme.txt", &b"not an image"[..]),
    ] {
        let p = data.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    let pushed = run.json(&["dataset", "push", data.path().to_str().unwrap()], 0);
    let prefix_ds = pushed["prefix"].as_str().unwrap().to_string();
    assert!(prefix_ds.starts_with("datasets/"), "{pushed}");
    assert_eq!(pushed["manifest"]["images"], 4);
    assert_eq!(pushed["skipped_files"], 1);
    assert_eq!(pushed["manifest"]["counts"]["train"]["R"], 2);
    assert_eq!(pushed["manifest"]["counts"]["validation"]["O"], 1);
    let listed =
        c.s3.list_objects_v2()
            .bucket(&data_bucket)
            .prefix(&prefix_ds)
            .send()
            .await
            .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert!(
        keys.contains(&format!("{prefix_ds}/train/O/banana peel.jpg").as_str()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("{prefix_ds}/validation/O/apple.jpeg").as_str()),
        "{keys:?}"
    );
    let ready =
        c.s3.get_object()
            .bucket(&data_bucket)
            .key(format!("{prefix_ds}/_READY"))
            .send()
            .await
            .unwrap();
    let ready: Value =
        serde_json::from_slice(&ready.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(ready["fingerprint"], pushed["manifest"]["fingerprint"]);
    assert_eq!(ready["dataset"], prefix_ds.as_str());

    // Plant leftovers the stack does not know about: a table, and object versions plus a
    // delete marker in the versioned data bucket.
    c.dynamodb
        .create_table()
        .table_name(format!("{prefix}-planted"))
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for body in ["one", "two"] {
        c.s3.put_object()
            .bucket(&data_bucket)
            .key("datasets/x/train/O/a.jpg")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap();
    }
    c.s3.delete_object()
        .bucket(&data_bucket)
        .key("datasets/x/train/O/a.jpg")
        .send()
        .await
        .unwrap();

    let pid = run.pid().unwrap();
    let down = run.json(&["down", "--yes"], 0);
    let removed = down["removed"].as_array().unwrap();
    assert!(
        removed
            .iter()
            .any(|f| f["service"] == "dynamodb" && f["id"] == format!("{prefix}-planted")),
        "the audit reports the planted table: {down}"
    );
    assert!(
        removed.iter().any(|f| f["service"] == "apigateway"),
        "the emulator leaves the REST API behind after delete-stack; the audit removes it: {down}"
    );
    assert_eq!(down["left"], Value::Array(vec![]), "{down}");
    assert_eq!(down["billable_left"], 0);
    assert_eq!(down["emulator_stopped"], true);
    assert!(!alive(pid), "no emulator process remains");
}
