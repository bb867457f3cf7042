//! Rendering: a snapshot of every template for every environment in the project's
//! deployer.toml, cfn-lint and checkov on each of them, and the errors of broken templates.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use deployer::config::{self, Environment, Overrides};
use deployer::package::{self, FunctionSpec};
use deployer::render::{self, FunctionContext, RenderError, RenderedStack, StackKind, STACKS};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn environment(name: &str) -> Environment {
    let path = root().join("deployer.toml");
    let o = Overrides {
        env: Some(name.into()),
        ..Default::default()
    };
    // Only the file: the test must not depend on the caller's DEPLOYER_* variables.
    let mut env = config::load(&path, &o, &|_| None).unwrap();
    // As `up` names the built model image on AWS (by digest, in the stack's repository).
    if env.training_image.is_empty() {
        env.training_image = deployer::model_image::ecr_image_for_stack(
            &env,
            &format!("sha256:{}", "cd".repeat(32)),
        );
    }
    env
}

/// The real function crates, with a fixed code hash so snapshots are stable.
fn functions(env: &Environment) -> Vec<FunctionContext> {
    let specs: Vec<FunctionSpec> = package::discover(&env.root).unwrap();
    assert!(!specs.is_empty());
    specs
        .iter()
        .map(|s| package::context_for(env, s, &"ab".repeat(32)))
        .collect()
}

fn environments() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("deployer.toml")).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    doc["environments"]
        .as_table()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// One stack of `env`, rendered from the project's templates with the real functions.
fn rendered(env: &Environment, kind: StackKind) -> RenderedStack {
    render::render(env, &root().join("stacks"), kind, &functions(env)).unwrap()
}

fn render_to(dir: &Path, env: &Environment) {
    for kind in STACKS {
        let r = render::render(env, &root().join("stacks"), *kind, &functions(env)).unwrap();
        std::fs::write(
            dir.join(format!("{}-{}.yaml", env.name, kind.stem())),
            &r.body,
        )
        .unwrap();
    }
}

#[test]
fn every_template_of_every_environment_matches_its_snapshot() {
    let names = environments();
    assert!(names.contains(&"local".to_string()) && names.contains(&"aws".to_string()));
    for name in names {
        let env = environment(&name);
        for kind in STACKS {
            let r = render::render(&env, &root().join("stacks"), *kind, &functions(&env)).unwrap();
            insta::assert_snapshot!(format!("{name}-{}", kind.stem()), r.body);
        }
    }
}

#[test]
fn rendering_keeps_special_characters_and_lists_resources() {
    let env = environment("local");
    let app = rendered(&env, StackKind::App);
    // No HTML escaping: quotes and ampersands reach CloudFormation as written.
    assert!(app.body.contains(r#""Version": "2012-10-17""#));
    assert!(!app.body.contains("&quot;") && !app.body.contains("&#x27;"));
    let types: Vec<&str> = app.resources.iter().map(|(_, t)| t.as_str()).collect();
    for t in [
        "AWS::KMS::Key",
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::Events::Rule",
        "AWS::ApiGateway::RestApi",
        "AWS::Lambda::Function",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
    ] {
        assert!(types.contains(&t), "{t} missing from the app stack");
    }
    // The four rules, the schedule disabled by default.
    let rules = app
        .resources
        .iter()
        .filter(|(_, t)| t == "AWS::Events::Rule")
        .count();
    assert_eq!(rules, 4);
    assert!(app
        .body
        .contains("ScheduleExpression: \"rate(7 days)\"\n      State: DISABLED"));
    let art = rendered(&env, StackKind::Artifacts);
    assert_eq!(art.stack_name, "wastesort-local-artifacts");
    assert!(art.resources.iter().any(|(id, _)| id == "ArtifactBucket"));
}

#[test]
fn the_stage_root_and_every_other_path_go_to_the_web_function() {
    let env = environment("local");
    let app = rendered(&env, StackKind::App);
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&app.body).unwrap();
    let res = &doc["Resources"];
    let uri = |method: &str| format!("{:?}", res[method]["Properties"]["Integration"]["Uri"]);
    for method in ["WebRootMethod", "WebProxyMethod"] {
        let props = &res[method]["Properties"];
        assert_eq!(props["Integration"]["Type"].as_str(), Some("AWS_PROXY"));
        assert!(
            uri(method).contains("${WebFunction.Arn}"),
            "{}",
            uri(method)
        );
    }
    assert!(
        format!("{:?}", res["WebRootMethod"]["Properties"]["ResourceId"])
            .contains("RestApi.RootResourceId")
    );
    assert_eq!(
        res["WebProxyResource"]["Properties"]["PathPart"].as_str(),
        Some("{proxy+}")
    );
    // /api/{proxy+} stays the api function's.
    assert!(uri("ApiProxyMethod").contains("${ApiFunction.Arn}"));
    let (deployment, _) = app
        .resources
        .iter()
        .find(|(_, t)| t == "AWS::ApiGateway::Deployment")
        .unwrap();
    let depends: Vec<&str> = res[deployment.as_str()]["DependsOn"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        depends,
        [
            "ApiProxyMethod",
            "ApiHealthMethod",
            "WebRootMethod",
            "WebProxyMethod",
            "UnauthorizedResponse",
            "ThrottledResponse"
        ]
    );
    assert!(format!(
        "{:?}",
        res["ApiInvokesWebFunction"]["Properties"]["SourceArn"]
    )
    .contains("${RestApi}/*/*/*"));
    assert!(format!("{:?}", doc["Outputs"]["WebUrl"]["Value"]).contains("/v1/\""));
    // The web function reads no table.
    let web_role = format!("{:?}", res["WebFunctionRole"]);
    assert!(!web_role.contains("dynamodb"), "{web_role}");
}

/// Every API Gateway method of a rendered app stack: (logical id, resource path, properties).
fn methods(doc: &serde_yaml_ng::Value) -> Vec<(String, serde_yaml_ng::Value)> {
    doc["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::ApiGateway::Method"))
        .map(|(k, r)| (k.as_str().unwrap().to_string(), r["Properties"].clone()))
        .collect()
}

#[test]
fn every_api_method_but_health_needs_a_user_of_the_stacks_pool() {
    for name in environments() {
        let env = environment(&name);
        let app = rendered(&env, StackKind::App);
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&app.body).unwrap();
        let res = &doc["Resources"];
        let mut open = Vec::new();
        for (id, props) in methods(&doc) {
            let target = format!("{:?}", props["Integration"]["Uri"]);
            match props["AuthorizationType"].as_str() {
                Some("COGNITO_USER_POOLS") => {
                    assert!(
                        format!("{:?}", props["AuthorizerId"]).contains("ApiAuthorizer"),
                        "{name}: {id} names no authorizer"
                    );
                }
                Some("NONE") => open.push((id, target)),
                other => panic!("{name}: {id} has authorization {other:?}"),
            }
        }
        // Open: the health probe (api function) and the web app's files (web function).
        open.sort();
        let open_ids: Vec<&str> = open.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            open_ids,
            ["ApiHealthMethod", "WebProxyMethod", "WebRootMethod"],
            "{name}"
        );
        assert_eq!(
            res["ApiHealthMethod"]["Properties"]["HttpMethod"].as_str(),
            Some("GET")
        );
        assert_eq!(
            res["ApiHealthResource"]["Properties"]["PathPart"].as_str(),
            Some("health")
        );
        for (id, target) in &open[1..] {
            assert!(
                target.contains("WebFunction"),
                "{name}: open {id} is not the web app's: {target}"
            );
        }
        // The authorizer trusts this stack's pool only; users are made by administrators.
        let auth = &res["ApiAuthorizer"]["Properties"];
        assert_eq!(auth["Type"].as_str(), Some("COGNITO_USER_POOLS"));
        assert!(format!("{:?}", auth["ProviderARNs"]).contains("UserPool.Arn"));
        let pool = &res["UserPool"]["Properties"];
        assert_eq!(
            pool["UserPoolName"].as_str(),
            Some(deployer::users::pool_name(&env).as_str())
        );
        assert_eq!(
            pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"].as_bool(),
            Some(true)
        );
        assert_eq!(pool["DeletionProtection"].as_str(), Some("INACTIVE"));
        let client = &res["UserPoolClient"]["Properties"];
        assert_eq!(
            client["ClientName"].as_str(),
            Some(deployer::users::client_name(&env).as_str())
        );
        assert_eq!(client["GenerateSecret"].as_bool(), Some(false));
        assert_eq!(
            res["ApproversGroup"]["Properties"]["GroupName"].as_str(),
            Some(deployer::users::APPROVERS)
        );
        // Throttling on the stage, from deployer.toml.
        let (deployment, _) = app
            .resources
            .iter()
            .find(|(_, t)| t == "AWS::ApiGateway::Deployment")
            .unwrap();
        let stage = &res[deployment.as_str()]["Properties"]["StageDescription"];
        assert_eq!(
            stage["ThrottlingRateLimit"].as_u64(),
            Some(u64::from(env.api_throttle.rate))
        );
        assert_eq!(
            stage["ThrottlingBurstLimit"].as_u64(),
            Some(u64::from(env.api_throttle.burst))
        );
        // API Gateway's own 401 says what the local gateway says, in the API's error shape.
        let body = res["UnauthorizedResponse"]["Properties"]["ResponseTemplates"]
            ["application/json"]
            .as_str()
            .unwrap();
        assert_eq!(body, localcloud::authorizer::UNAUTHORIZED_BODY, "{name}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
        // The web app learns where to sign in from its function's environment.
        let web_env = format!("{:?}", res["WebFunction"]["Properties"]["Environment"]);
        assert!(web_env.contains("USER_POOL_ID") && web_env.contains("USER_POOL_CLIENT_ID"));
    }
}

#[test]
fn the_model_image_repository_scans_encrypts_keeps_the_newest_and_is_emptied_on_delete() {
    for name in environments() {
        let mut env = environment(&name);
        env.image_keep = 7;
        let art = rendered(&env, StackKind::Artifacts);
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&art.body).unwrap();
        let repo = &doc["Resources"]["ModelRepository"]["Properties"];
        assert_eq!(
            repo["RepositoryName"].as_str(),
            Some(deployer::model_image::repository(&env).as_str())
        );
        assert_eq!(
            repo["ImageScanningConfiguration"]["ScanOnPush"].as_bool(),
            Some(true)
        );
        assert_eq!(
            repo["EncryptionConfiguration"]["EncryptionType"].as_str(),
            Some("KMS")
        );
        assert_eq!(repo["EmptyOnDelete"].as_bool(), Some(true));
        assert_eq!(repo["ImageTagMutability"].as_str(), Some("IMMUTABLE"));
        let policy: serde_json::Value = serde_json::from_str(
            repo["LifecyclePolicy"]["LifecyclePolicyText"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let rule = &policy["rules"][0];
        assert_eq!(rule["selection"]["tagStatus"], "any");
        assert_eq!(rule["selection"]["countType"], "imageCountMoreThan");
        assert_eq!(rule["selection"]["countNumber"], 7);
        assert_eq!(rule["action"]["type"], "expire");
        // SageMaker may pull from this repository only.
        let app = rendered(&env, StackKind::App);
        let role = format!(
            "{:?}",
            serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&app.body).unwrap()["Resources"]
                ["SageMakerRole"]
        );
        assert!(
            role.contains(&format!(
                "repository/{}",
                deployer::model_image::repository(&env)
            )),
            "{role}"
        );
    }
}

#[test]
fn an_email_at_bring_up_becomes_an_inline_subscription() {
    let mut env = environment("local");
    env.notification_email = Some("ops@example.com".into());
    let app = rendered(&env, StackKind::App);
    assert!(app.body.contains("Endpoint: \"ops@example.com\""));
}

fn tool(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(p.is_file(), "{} is missing: run ./dev setup", p.display());
    p
}

#[test]
fn cfn_lint_finds_no_errors_or_warnings() {
    let dir = tempfile::tempdir().unwrap();
    for name in environments() {
        render_to(dir.path(), &environment(&name));
    }
    let mut cmd = Command::new(tool(".venv/bin/cfn-lint"));
    for f in std::fs::read_dir(dir.path()).unwrap() {
        cmd.arg(f.unwrap().path());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cfn-lint found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn checkov_fails_nothing_and_every_skip_has_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    for name in environments() {
        render_to(dir.path(), &environment(&name));
    }
    let out = Command::new(tool(".venv-checkov/bin/checkov"))
        .args([
            "--framework",
            "cloudformation",
            "--skip-download",
            "-o",
            "json",
            "-d",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary = &report["summary"];
    assert_eq!(
        summary["failed"], 0,
        "checkov failed checks: {}",
        report["results"]["failed_checks"]
    );
    assert_eq!(summary["parsing_errors"], 0);
    assert!(
        summary["passed"].as_u64().unwrap() > 40,
        "too few checks ran: {summary}"
    );
    // No API method without authorization except those skipped with a reason: the health
    // probe and the web app's public files.
    let mut open: Vec<String> = report["results"]["skipped_checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["check_id"] == "CKV_AWS_59")
        .filter_map(|c| c["resource"].as_str().map(str::to_string))
        .collect();
    open.sort();
    open.dedup();
    assert_eq!(
        open,
        [
            "AWS::ApiGateway::Method.ApiHealthMethod",
            "AWS::ApiGateway::Method.WebProxyMethod",
            "AWS::ApiGateway::Method.WebRootMethod"
        ]
    );
    assert!(
        report["results"]["passed_checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["check_id"] == "CKV_AWS_59"
                && c["resource"] == "AWS::ApiGateway::Method.ApiProxyMethod"),
        "checkov should have checked the API's proxy method for authorization and passed it"
    );
    for skipped in report["results"]["skipped_checks"].as_array().unwrap() {
        let why = skipped["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or("");
        assert!(why.len() > 20, "skip without a reason: {skipped}");
    }
}

fn broken_stacks(app_source: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["artifacts.yaml.hbs", "tags.hbs"] {
        std::fs::copy(root().join("stacks").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(dir.path().join("app.yaml.hbs"), app_source).unwrap();
    dir
}

#[test]
fn a_missing_value_is_an_error_naming_the_file_not_an_empty_string() {
    let dir = broken_stacks("Resources:\n  X:\n    Type: {{no_such_value}}\n");
    let env = environment("local");
    let err = render::render(&env, dir.path(), StackKind::App, &functions(&env)).unwrap_err();
    assert!(matches!(err, RenderError::Template { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("app.yaml.hbs") && msg.contains("no_such_value"),
        "{msg}"
    );
}

#[test]
fn rendered_text_that_is_not_yaml_is_an_error_with_its_position() {
    let dir = broken_stacks("Resources:\n  X: [unclosed\n");
    let env = environment("local");
    let err = render::render(&env, dir.path(), StackKind::App, &functions(&env)).unwrap_err();
    assert!(matches!(err, RenderError::Yaml { .. }), "{err:?}");
    assert!(err.to_string().contains("line"), "{err}");
    let dir = broken_stacks("Description: nothing\n");
    let err = render::render(&env, dir.path(), StackKind::App, &functions(&env)).unwrap_err();
    assert!(matches!(err, RenderError::NoResources { .. }), "{err:?}");
}
