//! The whole cycle on the local cloud, as a user would go through it: bring up, a 503 before any
//! model, push a data set and see a model trained and staged by itself (with its email), accept
//! it and predict, update to a second model under continuous predictions (no failed request, no
//! flapping back), roll back, restart and find everything again, a model whose server cannot
//! start (the old one keeps serving), a data set of broken images (training fails, nothing
//! changes for users), and a teardown that leaves no process behind.
//!
//! Needs `cargo build -p deployer` first (the binary is run, not built, here). Each step prints
//! `step <name>: <secs> s` to stderr; run with `--nocapture` to see them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use e2e::{
    alive, cmdline, num_field, pids_in, processes_mentioning, replace_in_tar_gz, report_latency,
    rfc3339, split_s3_uri, step, str_field, synthetic_dataset, tar_gz_files, text, utc_stamp,
    wait_until, Api, Cloud, Http, Predictor, Sample,
};
use serde_json::{json, Value};

const SECOND: Duration = Duration::from_secs(1);

/// What `deployer dataset push --output json` reported.
struct Pushed {
    bucket: String,
    prefix: String,
}

/// Writes a synthetic data set and pushes it.
fn push_dataset(cloud: &Cloud, seed: u64) -> Pushed {
    let dir = synthetic_dataset(seed);
    let path = dir.path().to_str().expect("a UTF-8 temporary path");
    let out = cloud.json_ok(&["dataset", "push", path]);
    let what = "`deployer dataset push --output json`";
    let pushed = Pushed {
        bucket: str_field(&out, "bucket", what),
        prefix: str_field(&out, "prefix", what),
    };
    assert!(
        pushed.prefix.starts_with("datasets/"),
        "{what}: expected a prefix under datasets/, got {}",
        pushed.prefix
    );
    eprintln!("pushed s3://{}/{}/", pushed.bucket, pushed.prefix);
    pushed
}

fn find<'a>(models: &'a [Value], id: &str) -> Option<&'a Value> {
    models.iter().find(|m| text(m, "id") == id)
}

fn summary(models: &[Value]) -> String {
    let rows: Vec<String> = models
        .iter()
        .map(|m| {
            let reason = text(m, "failure_reason");
            if reason.is_empty() {
                format!("{}={}", text(m, "id"), text(m, "status"))
            } else {
                format!("{}={} ({reason})", text(m, "id"), text(m, "status"))
            }
        })
        .collect();
    format!("[{}]", rows.join(", "))
}

/// Waits until a model that is not in `known` reaches `want`; fails fast when it reaches
/// another final training outcome instead (staged vs failed).
fn wait_new_model(api: &Api, known: &[&str], want: &str, timeout: Duration) -> Value {
    wait_until(
        &format!("a new model (not one of {known:?}) is {want}"),
        timeout,
        SECOND,
        || {
            let models = api.models();
            let fresh: Vec<&Value> = models
                .iter()
                .filter(|m| !known.contains(&text(m, "id")))
                .collect();
            if let Some(m) = fresh.iter().find(|m| text(m, "status") == want) {
                return Ok((*m).clone());
            }
            for m in &fresh {
                let status = text(m, "status");
                if matches!(status, "staged" | "failed") && status != want {
                    panic!("expected the new model to become {want}, but it is {status}: {m}");
                }
            }
            Err(summary(&models))
        },
    )
}

/// Checks a staged model's metrics and data set reference.
fn check_staged(m: &Value, pushed: &Pushed) {
    let id = text(m, "id");
    let metrics = m
        .get("metrics")
        .unwrap_or_else(|| panic!("staged model {id}: expected metrics, got {m}"));
    let accuracy = num_field(metrics, "accuracy", &format!("model {id}'s metrics"));
    assert!(
        (0.0..=1.0).contains(&accuracy),
        "model {id}: expected accuracy in [0, 1], got {accuracy}"
    );
    assert_eq!(
        text(m, "dataset").trim_end_matches('/'),
        pushed.prefix.trim_end_matches('/'),
        "model {id}: expected its dataset to be the pushed prefix, got {m}"
    );
    assert!(
        text(m, "model_artifact").starts_with("s3://"),
        "staged model {id}: expected an s3:// model_artifact, got {m}"
    );
    eprintln!(
        "model {id} staged: accuracy {accuracy:.3}, dataset {}",
        text(m, "dataset")
    );
}

fn decide(api: &Api, id: &str, action: &str, reason: &str) -> String {
    let path = format!("/models/{id}/{action}");
    let (status, body) = api.post(&path, &json!({ "reason": reason }));
    assert_eq!(
        status, 202,
        "POST {path}: expected 202 (deployment started), got {status}: {body}"
    );
    let deployment = str_field(&body, "deployment_id", &format!("POST {path}"));
    assert!(!deployment.is_empty(), "POST {path}: empty deployment_id");
    assert_eq!(
        text(&body, "model_id"),
        id,
        "POST {path}: expected model_id {id}, got {body}"
    );
    eprintln!("{action} {id}: deployment {deployment}");
    deployment
}

/// Waits until the endpoint is InService serving `id`, `id` is deployed, and each of `others`
/// is superseded. Fails fast if `id` ends deploy_failed.
fn wait_serving(api: &Api, id: &str, superseded: &[&str], timeout: Duration) {
    wait_until(
        &format!("the endpoint is InService serving {id}, deployed (superseded: {superseded:?})"),
        timeout,
        SECOND,
        || {
            let ep = api.endpoint();
            let models = api.models();
            let m = find(&models, id).unwrap_or_else(|| panic!("model {id} vanished: {models:?}"));
            if text(m, "status") == "deploy_failed" {
                panic!("expected model {id} to deploy, but it is deploy_failed: {m}");
            }
            let ok = text(&ep, "status") == "InService"
                && text(&ep, "serving_model_id") == id
                && text(m, "status") == "deployed"
                && superseded
                    .iter()
                    .all(|s| find(&models, s).is_some_and(|x| text(x, "status") == "superseded"));
            if ok {
                Ok(())
            } else {
                Err(format!("endpoint {ep}; models {}", summary(&models)))
            }
        },
    );
}

/// `deployer local mail --output json`.
fn mail(cloud: &Cloud) -> Vec<Value> {
    let v = cloud.json_ok(&["local", "mail"]);
    match v.as_array() {
        Some(a) => a.clone(),
        None => panic!("`deployer local mail --output json`: expected an array, got {v}"),
    }
}

fn subjects(mails: &[Value]) -> Vec<String> {
    mails
        .iter()
        .map(|m| text(m, "subject").to_string())
        .collect()
}

/// Waits (30 s) for a mail whose subject passes `want`; returns it.
fn wait_mail(cloud: &Cloud, what: &str, want: impl Fn(&str) -> bool) -> Value {
    wait_until(
        &format!("a mail {what} is in the outbox"),
        Duration::from_secs(30),
        SECOND,
        || {
            let mails = mail(cloud);
            match mails.iter().find(|m| want(text(m, "subject"))) {
                Some(m) => {
                    eprintln!("mail: {}", text(m, "subject"));
                    Ok(m.clone())
                }
                None => Err(format!("subjects {:?}", subjects(&mails))),
            }
        },
    )
}

/// One prediction that must succeed and come from `model`.
fn predict_from(api: &Api, png: &[u8], model: &str) -> Value {
    let (status, body) = api.predict_png(png);
    assert_eq!(
        status, 200,
        "POST /predict: expected 200, got {status}: {body}"
    );
    let label = text(&body, "label");
    assert!(
        matches!(label, "Organic" | "Recyclable"),
        "POST /predict: expected label Organic or Recyclable, got {body}"
    );
    let confidence = num_field(&body, "confidence", "POST /predict");
    assert!(
        (0.0..=1.0).contains(&confidence),
        "POST /predict: expected confidence in [0, 1], got {confidence}"
    );
    assert_eq!(
        text(&body, "model_id"),
        model,
        "POST /predict: expected an answer from model {model}, got {body}"
    );
    body
}

fn failures(samples: &[Sample]) -> Vec<String> {
    samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.status != 200)
        .take(5)
        .map(|(i, s)| format!("#{i}: status {} {}", s.status, s.detail))
        .collect()
}

fn dataset_manifest(prefix: &str, files: usize, bytes: usize) -> Value {
    let per = files / 4;
    json!({
        "dataset": prefix,
        "created_at": rfc3339(SystemTime::now()),
        "counts": { "train": { "O": per, "R": per }, "validation": { "O": per, "R": per } },
        "images": files,
        "bytes": bytes,
        "fingerprint": "0".repeat(64),
        "source": "e2e: corrupt JPEG files",
    })
}

#[test]
fn local_cloud_trains_serves_updates_rolls_back_restarts_and_tears_down() {
    let mut cloud = Cloud::new();
    let http = Http::new();
    let png = e2e::png(7, true);

    // 1. Bring-up on a fresh state dir.
    let mut api = step("1 up", || {
        let up = cloud.json_ok(&["up"]);
        let api = Api::from_up(&up, http.clone());
        let web = str_field(&up, "web_url", "`deployer up --output json`");
        assert!(
            web.starts_with("http://"),
            "`deployer up` web_url: expected an http URL, got {web}"
        );
        eprintln!("api_url {}\nweb_url {web}", api.url);
        let health = api.get_ok("/health");
        assert_eq!(
            text(&health, "status"),
            "ok",
            "GET /health: expected status ok, got {health}"
        );
        api
    });

    // 2. Nothing serves yet.
    step("2 predict before any model", || {
        let (status, body) = api.predict_png(&png);
        assert_eq!(
            status, 503,
            "POST /predict with no model deployed: expected 503, got {status}: {body}"
        );
        let err = body.get("error").unwrap_or_else(|| {
            panic!("expected {{\"error\": {{code, message, fix}}}}, got {body}")
        });
        for k in ["code", "message", "fix"] {
            let v = str_field(err, k, "the 503 error body");
            assert!(!v.is_empty(), "the 503 error's {k} is empty: {body}");
        }
    });

    // 3. A push trains and stages a model by itself: nothing calls POST /training.
    let (first, data_bucket) = step("3 push, train, stage", || {
        let pushed = push_dataset(&cloud, 1);
        let m = wait_new_model(&api, &[], "staged", Duration::from_secs(180));
        let models = api.models();
        assert_eq!(
            models.len(),
            1,
            "GET /models: expected exactly one model after one push, got {}",
            summary(&models)
        );
        check_staged(&m, &pushed);
        let id = text(&m, "id").to_string();
        let runs = api.get_ok("/training");
        let runs = runs
            .get("runs")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("GET /training: expected {{\"runs\": [...]}}, got {runs}"));
        assert!(
            runs.iter().any(|r| text(r, "model_id") == id),
            "GET /training: expected the run of {id}, got {runs:?}"
        );
        (id, pushed.bucket)
    });

    // 4. The staged email.
    step("4 staged mail", || {
        let m = wait_mail(&cloud, &format!("'Model {first} staged'"), |s| {
            s.contains(&format!("Model {first} staged"))
        });
        assert!(
            text(&m, "body").contains("accuracy"),
            "the staged mail's body should show the accuracy: {m}"
        );
        // Recipients are not asserted: an unconfirmed email subscription may have none.
    });

    // 5. Accept → InService.
    step("5 accept the first model", || {
        decide(&api, &first, "accept", "e2e first model");
        wait_serving(&api, &first, &[], Duration::from_secs(120));
        wait_mail(&cloud, &format!("'Model {first} is InService'"), |s| {
            s.contains(&format!("Model {first} is InService"))
        });
    });

    // 6. A prediction.
    step("6 predict", || {
        let p = predict_from(&api, &png, &first);
        eprintln!("prediction: {p}");
    });

    // 7. Update to a second model under continuous predictions.
    let second = step("7a push a second data set", || {
        let pushed = push_dataset(&cloud, 2);
        let m = wait_new_model(&api, &[&first], "staged", Duration::from_secs(180));
        check_staged(&m, &pushed);
        text(&m, "id").to_string()
    });
    step("7b accept the second model under load", || {
        let predictor = Predictor::start(&api, &png);
        std::thread::sleep(SECOND);
        decide(&api, &second, "accept", "e2e second model");
        wait_serving(&api, &second, &[&first], Duration::from_secs(120));
        std::thread::sleep(2 * SECOND);
        let samples = predictor.stop();
        report_latency("predictions during the update", &samples);
        let failed = failures(&samples);
        assert!(
            failed.is_empty(),
            "expected every prediction during the update to answer 200; {} did not, first: {failed:?}",
            samples.iter().filter(|s| s.status != 200).count()
        );
        assert!(
            samples.len() >= 20,
            "expected at least 20 predictions during the update, made {}",
            samples.len()
        );
        let ids: Vec<&str> = samples
            .iter()
            .map(|s| s.model_id.as_deref().unwrap_or(""))
            .collect();
        let switch = ids
            .iter()
            .position(|id| *id == second)
            .unwrap_or_else(|| panic!("expected answers from {second} after the update, got none"));
        assert!(
            switch > 0,
            "expected answers from {first} before the switch, the first answer was already {second}"
        );
        let before_bad = ids[..switch].iter().filter(|id| **id != first).count();
        assert_eq!(
            before_bad, 0,
            "expected only {first} before the switch at #{switch}; {before_bad} answers were from others"
        );
        let after_bad: Vec<usize> = (switch..ids.len())
            .filter(|&i| ids[i] != second)
            .take(5)
            .collect();
        assert!(
            after_bad.is_empty(),
            "answers went back from {second} after the switch at #{switch}: at {after_bad:?} ({:?})",
            after_bad.iter().map(|&i| ids[i]).collect::<Vec<_>>()
        );
        eprintln!(
            "switched from {first} to {second} at prediction #{switch} of {}",
            ids.len()
        );
    });

    // 8. Rollback to the first model.
    step("8 roll back to the first model", || {
        decide(&api, &first, "rollback", "e2e rollback");
        wait_serving(&api, &first, &[&second], Duration::from_secs(120));
        for _ in 0..3 {
            predict_from(&api, &png, &first);
        }
    });

    // 9. A restart keeps everything.
    api = step("9 stop and up again", || {
        let snapshot = |models: &[Value]| -> BTreeMap<String, (String, Value)> {
            models
                .iter()
                .map(|m| {
                    (
                        text(m, "id").to_string(),
                        (
                            text(m, "status").to_string(),
                            m.get("metrics").cloned().unwrap_or(Value::Null),
                        ),
                    )
                })
                .collect()
        };
        let before = snapshot(&api.models());
        let mails_before = mail(&cloud);
        cloud.run_ok(&["local", "stop"]);
        let up = cloud.json_ok(&["up"]);
        let api = Api::from_up(&up, http.clone());
        eprintln!("api_url after restart: {}", api.url);
        let after = snapshot(&api.models());
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "GET /models after the restart: expected the same model ids"
        );
        for (id, (status, metrics)) in &before {
            let (s, m) = &after[id];
            assert_eq!(
                s, status,
                "model {id}: status {status} before the restart, {s} after"
            );
            assert_eq!(m, metrics, "model {id}: metrics changed across the restart");
        }
        let mails_after = mail(&cloud);
        for m in &mails_before {
            assert!(
                mails_after
                    .iter()
                    .any(|x| text(x, "subject") == text(m, "subject")
                        && text(x, "time") == text(m, "time")),
                "the mail {m} was lost in the restart; outbox now: {:?}",
                subjects(&mails_after)
            );
        }
        let uploads = cloud.s3().list(&data_bucket, "uploads/");
        assert!(
            uploads.iter().any(|k| k.ends_with(".png")),
            "expected the predict uploads (PNG) under s3://{data_bucket}/uploads/ after the restart, found {uploads:?}"
        );
        wait_until(
            &format!("predictions come from {first} again after the restart"),
            Duration::from_secs(60),
            SECOND,
            || match api
                .http
                .try_post_bytes(&api.at("/predict"), "image/png", &png)
            {
                Ok((200, body)) if text(&body, "model_id") == first => Ok(()),
                Ok((status, body)) => Err(format!("status {status}: {body}")),
                Err(e) => Err(format!("no answer: {e}")),
            },
        );
        predict_from(&api, &png, &first);
        api
    });

    // 10. A model whose server cannot start: the first keeps serving.
    let third = step("10a push a third data set", || {
        let pushed = push_dataset(&cloud, 3);
        let m = wait_new_model(&api, &[&first, &second], "staged", Duration::from_secs(180));
        check_staged(&m, &pushed);
        text(&m, "id").to_string()
    });
    step("10b break the third model's weights", || {
        let m = api.model(&third);
        let uri = str_field(&m, "model_artifact", &format!("model {third}"));
        let (bucket, key) = split_s3_uri(&uri).unwrap_or_else(|| {
            panic!("model {third}: model_artifact is not s3://bucket/key: {uri}")
        });
        let s3 = cloud.s3();
        let original = s3.get(&bucket, &key);
        let weights = waste_model::artifact::WEIGHTS_FILE;
        let broken = replace_in_tar_gz(&original, weights, b"this is not a safetensors file")
            .unwrap_or_else(|e| panic!("{uri} is not a readable tar.gz: {e}"));
        s3.put(&bucket, &key, broken, "application/gzip");
        let files = tar_gz_files(&s3.get(&bucket, &key)).expect("the rewritten archive reads back");
        assert!(
            files
                .iter()
                .any(|(n, d)| n.ends_with(weights) && d.starts_with(b"this is not")),
            "the rewritten {uri} should hold a garbage {weights}: {:?}",
            files.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
    });
    step("10c accept the broken model under load", || {
        let predictor = Predictor::start(&api, &png);
        std::thread::sleep(SECOND);
        decide(&api, &third, "accept", "e2e broken model");
        let m = wait_until(
            &format!("model {third} is deploy_failed"),
            Duration::from_secs(120),
            SECOND,
            || {
                let m = api.model(&third);
                match text(&m, "status") {
                    "deploy_failed" => Ok(m),
                    "deployed" => panic!(
                        "expected {third} (garbage weights) to fail to deploy, but it is deployed: {m}"
                    ),
                    _ => Err(m.to_string()),
                }
            },
        );
        eprintln!(
            "model {third} deploy_failed: {}",
            text(&m, "failure_reason")
        );
        let ep = wait_until(
            &format!("the endpoint is InService serving {first} after the failed update"),
            Duration::from_secs(30),
            SECOND,
            || {
                let ep = api.endpoint();
                if text(&ep, "status") == "InService" && text(&ep, "serving_model_id") == first {
                    Ok(ep)
                } else {
                    Err(ep.to_string())
                }
            },
        );
        assert!(
            !text(&ep, "failure_reason").is_empty(),
            "GET /endpoint after the failed update: expected a failure_reason, got {ep}"
        );
        eprintln!("endpoint failure_reason: {}", text(&ep, "failure_reason"));
        wait_mail(&cloud, &format!("'Deploying model {third} failed'"), |s| {
            s.contains(&format!("Deploying model {third} failed"))
        });
        let samples = predictor.stop();
        report_latency("predictions during the failed update", &samples);
        let failed = failures(&samples);
        assert!(
            failed.is_empty(),
            "expected every prediction during the failed update to answer 200; first failures: {failed:?}"
        );
        assert!(!samples.is_empty(), "the prediction thread made no request");
        let others: Vec<&str> = samples
            .iter()
            .map(|s| s.model_id.as_deref().unwrap_or("<no model_id>"))
            .filter(|id| *id != first)
            .take(5)
            .collect();
        assert!(
            others.is_empty(),
            "expected every answer from {first} during the failed update, some came from {others:?}"
        );
        predict_from(&api, &png, &first);
    });

    // 11. A data set of broken images: training fails, users see no change.
    step("11 broken data set", || {
        let models = api.models();
        let known: Vec<String> = models.iter().map(|m| text(m, "id").to_string()).collect();
        let newest = models
            .iter()
            .map(|m| text(m, "dataset").to_string())
            .max()
            .unwrap_or_default();
        let prefix = wait_until(
            "the clock gives a data set name later than every earlier one",
            Duration::from_secs(5),
            Duration::from_millis(250),
            || {
                let p = format!("datasets/{}", utc_stamp(SystemTime::now()));
                if p > newest {
                    Ok(p)
                } else {
                    Err(format!("{p} <= {newest}"))
                }
            },
        );
        let s3 = cloud.s3();
        let bad: &[u8] = b"not a jpeg";
        let mut n = 0;
        for channel in ["train", "validation"] {
            for class in ["O", "R"] {
                for i in 0..5 {
                    let key = format!("{prefix}/{channel}/{class}/broken_{i:03}.jpg");
                    s3.put(&data_bucket, &key, bad.to_vec(), "image/jpeg");
                    n += 1;
                }
            }
        }
        let manifest = dataset_manifest(&prefix, n, n * bad.len());
        s3.put(
            &data_bucket,
            &format!("{prefix}/_READY"),
            serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"),
            "application/json",
        );
        eprintln!(
            "wrote {n} corrupt JPEGs and the _READY marker under s3://{data_bucket}/{prefix}/"
        );
        let known_refs: Vec<&str> = known.iter().map(String::as_str).collect();
        let m = wait_new_model(&api, &known_refs, "failed", Duration::from_secs(180));
        assert_eq!(
            text(&m, "dataset").trim_end_matches('/'),
            prefix,
            "the failed model should name the broken data set: {m}"
        );
        let reason = text(&m, "failure_reason");
        assert!(
            !reason.is_empty(),
            "the failed model should say why training failed: {m}"
        );
        eprintln!("training on broken images failed: {reason}");
        let job = text(&m, "training_job").to_string();
        wait_mail(&cloud, &format!("'Training {job} failed'"), |s| {
            s.contains("Training") && s.contains("failed") && s.contains(&job)
        });
        let ep = api.endpoint();
        assert!(
            text(&ep, "status") == "InService" && text(&ep, "serving_model_id") == first,
            "after the failed training the endpoint should still serve {first}, got {ep}"
        );
        predict_from(&api, &png, &first);
    });

    // 12. Teardown leaves nothing running.
    step("12 down", || {
        let status = cloud.json_ok(&["local", "status"]);
        eprintln!("local status: {status}");
        for part in ["emulator", "localcloud"] {
            if let Some(running) = status.get(part).and_then(|p| p.get("running")) {
                assert_eq!(
                    running,
                    &Value::Bool(true),
                    "`deployer local status`: expected {part} running before down, got {status}"
                );
            }
        }
        let pids = pids_in(&status);
        assert!(
            !pids.is_empty(),
            "`deployer local status --output json` reported no pid: {status}"
        );
        let down = cloud.run(&["down", "--yes", "--output", "json"]);
        cloud.torn_down();
        down.expect_code(
            0,
            "exit 1 means the audit found something billable left after down",
        );
        eprintln!("down: {}", down.stdout.trim());
        wait_until(
            "every process local status reported is gone",
            Duration::from_secs(10),
            Duration::from_millis(200),
            || {
                let left: Vec<String> = pids
                    .iter()
                    .filter(|&&p| alive(p))
                    .map(|&p| format!("{p} ({})", cmdline(p)))
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still running: {left:?}"))
                }
            },
        );
        let state = cloud.state_dir().display().to_string();
        let left = processes_mentioning(&state);
        assert!(
            left.is_empty(),
            "after down, processes still name the state dir {state}: {left:?}"
        );
    });
}
