//! The chaos suite: faults a user's machine and a real account produce, each followed by the
//! checks a user relies on. Every fault runs against the real local cloud (moto, localcloud, the
//! packaged handlers, the model binary), on its own state directory:
//!
//! - `up` killed with SIGKILL at three points (a package uploaded, a stack changing, the
//!   reconciliation begun; `DEPLOYER_CHAOS_PAUSE_AT` stops it exactly there), then `up` again;
//!   two `up`s at once; `up` while `down` runs; a lock left by a dead process;
//! - the local cloud and the emulator killed with SIGKILL during a training job and during an
//!   endpoint update, then `up`;
//! - two `dataset push`es at once; one data set's `_READY` written twice (two S3 events, one
//!   trigger); a training job's terminal event delivered twice and a contradicting one after it;
//!   an endpoint event that names an old config; a training job that runs out of time;
//! - the state directory on a full disk and read-only (a small tmpfs when this user may mount
//!   one).
//!
//! After each: [`settled`] waits until no model is in a transient state and checks the
//! invariants: both stacks complete and every function's code the recorded one, at most one
//! deployed model and the endpoint serving exactly it, at most one model that did not fail per
//! data set, every accepted decision still there, and (at the end) `down` leaving nothing. Each
//! test prints `chaos figure:` lines (fault class, cases tried, recovered, data lost) that the
//! soak (`./dev soak`) adds up. Training in a failed update and a broken data set are in
//! `local_cloud.rs`, with predictions running throughout.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{alive, str_field, text, wait_until, Api, Cloud, Http, Run};
use serde_json::{json, Value};

const SECOND: Duration = Duration::from_secs(1);

// ------------------------------------------------------------------ figures

/// One fault class's tally, printed as a `chaos figure:` line when the test ends.
struct Figure {
    class: &'static str,
    tried: u32,
    recovered: u32,
    lost: u32,
    command: &'static str,
}

impl Figure {
    fn new(class: &'static str, command: &'static str) -> Figure {
        Figure {
            class,
            tried: 0,
            recovered: 0,
            lost: 0,
            command,
        }
    }

    /// Counts one case; `lost` is how many records (models, decisions) did not survive it.
    fn case(&mut self, recovered: bool, lost: u32) {
        self.tried += 1;
        self.recovered += u32::from(recovered);
        self.lost += lost;
    }
}

impl Drop for Figure {
    fn drop(&mut self) {
        eprintln!(
            "chaos figure: {} | tried {} | recovered {} | lost {} | {}",
            self.class, self.tried, self.recovered, self.lost, self.command
        );
    }
}

// ------------------------------------------------------------------ processes

fn kill9(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    wait_until(
        &format!("pid {pid} is gone"),
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            if alive(pid) {
                Err("alive".into())
            } else {
                Ok(())
            }
        },
    );
}

fn pid_in(path: &Path, json_key: Option<&str>) -> u32 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let pid = match json_key {
        Some(k) => serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v[k].as_u64()),
        None => text.trim().parse::<u64>().ok(),
    };
    pid.and_then(|p| u32::try_from(p).ok())
        .unwrap_or_else(|| panic!("{} names no pid: {text}", path.display()))
}

fn localcloud_pid(cloud: &Cloud) -> u32 {
    pid_in(&cloud.env_state_dir().join("localcloud.json"), Some("pid"))
}

fn emulator_pid(cloud: &Cloud) -> u32 {
    pid_in(&cloud.env_state_dir().join("emulator.pid"), None)
}

/// The processes the local cloud runs (`deployer local status`: handlers, training jobs,
/// model servers), as (pid, kind, name).
fn cloud_processes(cloud: &Cloud) -> Vec<(u32, String, String)> {
    let s = cloud.json_ok(&["local", "status"]);
    s["processes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| {
            Some((
                u32::try_from(p["pid"].as_u64()?).ok()?,
                text(p, "kind").to_string(),
                text(p, "name").to_string(),
            ))
        })
        .collect()
}

/// Starts `deployer <args>` with `env` set; answers the child and a channel of its stderr
/// lines.
fn spawn(
    cloud: &Cloud,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut c = cloud.command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start deployer {args:?}: {e}"));
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a stderr line containing `needle`; answers every line read until then.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no stderr line containing {needle:?} within {timeout:?}; saw {:?}",
                seen.iter().rev().take(8).collect::<Vec<_>>()
            ),
        }
    }
}

/// Every stderr line until the process ends, and its exit code.
fn finish(mut child: std::process::Child, rx: mpsc::Receiver<String>) -> (Option<i32>, String) {
    let status = child.wait().expect("the deployer ran");
    let mut all = Vec::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        all.push(l);
    }
    (status.code(), all.join("\n"))
}

/// `deployer up` with `env`, stopped at `point` and killed there with SIGKILL.
fn up_killed_at(cloud: &Cloud, point: &str, env: &[(&str, &str)]) {
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.push((deployer::fault::PAUSE_VAR, point));
    let (mut child, rx) = spawn(cloud, &["up"], &all);
    wait_line(
        &rx,
        &format!("chaos: paused at {point}"),
        Duration::from_secs(300),
    );
    kill9(child.id());
    let _ = child.wait();
    eprintln!("killed `deployer up` at {point}");
}

// ------------------------------------------------------------------ invariants

/// `deployer up --output json` with `env`, which must succeed; the API signed in again when
/// this `up` made a new first approver.
fn up_ok(cloud: &Cloud, env: &[(&str, &str)], http: &Http) -> (Value, Api) {
    let mut c = cloud.command(&["up", "--output", "json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("the deployer ran");
    let run = Run {
        args: vec!["up".into()],
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        seconds: 0.0,
    };
    run.expect_code(0, "up recovers");
    let up = run.json();
    let api = Api::from_up(&up, http.clone());
    (up, api)
}

/// The stacks and functions as `status` reports them: both stacks complete, every function's
/// deployed code the package `up` recorded.
fn stacks_consistent(cloud: &Cloud) -> Result<(), String> {
    let s = cloud.json_ok(&["status"]);
    for st in s["stacks"].as_array().cloned().unwrap_or_default() {
        let status = text(&st, "status");
        if !(status == "CREATE_COMPLETE" || status == "UPDATE_COMPLETE") {
            return Err(format!("stack {} is {status}", text(&st, "stack")));
        }
    }
    for f in s["functions"].as_array().cloned().unwrap_or_default() {
        if f["in_sync"] != true {
            return Err(format!(
                "function {} does not run the recorded code: {f}",
                text(&f, "function")
            ));
        }
    }
    Ok(())
}

/// Waits (up to `timeout`) until no model is training or deploying, then checks the models
/// against the endpoint and `accepted` (ids whose acceptance must not be lost). Answers the
/// models.
fn settled(api: &Api, accepted: &[String], timeout: Duration) -> Vec<Value> {
    let what = "no model is training or deploying, and every accepted one has left staged";
    let models = wait_until(what, timeout, SECOND, || {
        let models = api.models();
        // An accepted model still listed as staged is the list's freshness (another api process
        // serves its list for up to 1 s): wait that out too. A decision really lost stays
        // staged and ends the wait with it in the message.
        let busy: Vec<String> = models
            .iter()
            .filter(|m| {
                matches!(text(m, "status"), "training" | "deploying")
                    || (text(m, "status") == "staged"
                        && accepted.iter().any(|a| a == text(m, "id")))
            })
            .map(|m| format!("{}={}", text(m, "id"), text(m, "status")))
            .collect();
        if busy.is_empty() {
            Ok(models)
        } else {
            Err(busy.join(", "))
        }
    });
    let deployed: Vec<&Value> = models
        .iter()
        .filter(|m| text(m, "status") == "deployed")
        .collect();
    assert!(
        deployed.len() <= 1,
        "more than one deployed model: {:?}",
        deployed.iter().map(|m| text(m, "id")).collect::<Vec<_>>()
    );
    let ep = api.endpoint();
    if let Some(d) = deployed.first() {
        wait_until(
            &format!("the endpoint serves the deployed model {}", text(d, "id")),
            Duration::from_secs(60),
            SECOND,
            || {
                let ep = api.endpoint();
                if text(&ep, "status") == "InService"
                    && text(&ep, "serving_model_id") == text(d, "id")
                {
                    Ok(())
                } else {
                    Err(ep.to_string())
                }
            },
        );
    } else {
        assert_ne!(
            text(&ep, "status"),
            "InService",
            "the endpoint serves but no model is deployed: {ep}"
        );
    }
    let mut live_per_dataset: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &models {
        if text(m, "status") != "failed" {
            live_per_dataset
                .entry(text(m, "dataset").trim_end_matches('/').to_string())
                .or_default()
                .push(text(m, "id").to_string());
        }
    }
    for (ds, ids) in &live_per_dataset {
        assert!(
            ids.len() <= 1,
            "data set {ds} has {} models that did not fail: {ids:?}",
            ids.len()
        );
    }
    for id in accepted {
        let m = models
            .iter()
            .find(|m| text(m, "id") == id)
            .unwrap_or_else(|| panic!("the accepted model {id} is gone"));
        assert!(
            matches!(
                text(m, "status"),
                "deployed" | "superseded" | "deploy_failed" | "retired"
            ),
            "the accepted model {id} is {}: the decision was lost",
            text(m, "status")
        );
    }
    models
}

/// Models that existed before a fault and are gone (or lost their decision) after it.
fn lost(before: &[Value], after: &[Value]) -> u32 {
    let mut n = 0;
    for b in before {
        let id = text(b, "id");
        match after.iter().find(|a| text(a, "id") == id) {
            None => n += 1,
            Some(a) => {
                let was = text(b, "status");
                let now = text(a, "status");
                // A decision taken must survive: accepted stays accepted, rejected rejected.
                let kept = match was {
                    "deployed" | "superseded" => {
                        matches!(
                            now,
                            "deployed" | "superseded" | "deploying" | "deploy_failed"
                        )
                    }
                    "rejected" => now == "rejected",
                    "staged" => matches!(now, "staged" | "deploying" | "deployed" | "rejected"),
                    _ => true,
                };
                n += u32::from(!kept);
            }
        }
    }
    n
}

fn push_synth(cloud: &Cloud, seed: u64) -> String {
    let out = cloud.json_ok(&[
        "dataset",
        "push",
        "--synth",
        &e2e::DATASET_IMAGES.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    str_field(&out, "prefix", "`dataset push --output json`")
}

fn model_of<'a>(models: &'a [Value], dataset: &str) -> Vec<&'a Value> {
    models
        .iter()
        .filter(|m| text(m, "dataset").trim_end_matches('/') == dataset.trim_end_matches('/'))
        .collect()
}

/// Waits until data set `dataset` has a model in `want` (one of the statuses); answers it.
fn wait_model(api: &Api, dataset: &str, want: &[&str], timeout: Duration) -> Value {
    wait_until(
        &format!("data set {dataset} has a model that is {want:?}"),
        timeout,
        Duration::from_millis(200),
        || {
            let models = api.models();
            model_of(&models, dataset)
                .into_iter()
                .find(|m| want.contains(&text(m, "status")))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "{:?}",
                        model_of(&models, dataset)
                            .iter()
                            .map(|m| format!("{}={}", text(m, "id"), text(m, "status")))
                            .collect::<Vec<_>>()
                    )
                })
        },
    )
}

fn accept(api: &Api, id: &str) {
    let (status, body) = api.post(&format!("/models/{id}/accept"), &json!({"reason": "chaos"}));
    assert_eq!(status, 202, "accept {id}: {body}");
}

fn predicts_from(api: &Api, id: &str) {
    let png = e2e::png(3, true);
    wait_until(
        &format!("predictions come from {id}"),
        Duration::from_secs(60),
        SECOND,
        || match api
            .http
            .try_post_bytes(&api.at("/predict"), "image/png", &png)
        {
            Ok((200, b)) if text(&b, "model_id") == id => Ok(()),
            Ok((s, b)) => Err(format!("{s}: {b}")),
            Err(e) => Err(e),
        },
    );
}

/// `down` must leave nothing (it exits 1 when anything billable is left) and no process of
/// this state directory.
fn down_clean(cloud: &mut Cloud) {
    cloud.run_ok(&["down", "--yes"]);
    cloud.torn_down();
    let dir = cloud.state_dir().display().to_string();
    let left = e2e::processes_mentioning(&dir);
    assert!(left.is_empty(), "processes left after down: {left:?}");
}

// ------------------------------------------------------------------ EventBridge

/// PutEvents through the local cloud's front door (the bus delivers to the stack's rules).
fn put_event(cloud: &Cloud, source: &str, detail_type: &str, detail: &Value) {
    let endpoints: Value = serde_json::from_slice(
        &std::fs::read(cloud.env_state_dir().join("endpoints.json")).expect("endpoints.json"),
    )
    .expect("endpoints.json is JSON");
    let front = text(&endpoints, "default").to_string();
    let body = json!({ "Entries": [{
        "Source": source, "DetailType": detail_type, "Detail": detail.to_string(),
    }]});
    let resp = ureq::post(&format!("{front}/"))
        .set("content-type", "application/x-amz-json-1.1")
        .set("x-amz-target", "AWSEvents.PutEvents")
        .set(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/events/aws4_request, SignedHeaders=host, Signature=00",
        )
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("PutEvents: {e}"));
    let v: Value = resp.into_json().expect("PutEvents answers JSON");
    assert_eq!(v["FailedEntryCount"], 0, "PutEvents: {v}");
}

// ------------------------------------------------------------------ the tests

#[test]
fn killed_and_racing_deployer_commands_recover() {
    let mut cloud = Cloud::new();
    let http = Http::new();
    let mut killed = Figure::new(
        "kill -9 of `deployer up` (upload, stack change, reconciliation)",
        "cargo test -p e2e --test chaos killed_and_racing",
    );
    let mut racing = Figure::new(
        "concurrent mutating commands (two up, up during down, stale lock)",
        "cargo test -p e2e --test chaos killed_and_racing",
    );

    // A first `up` killed after its first upload: the next one finishes the job.
    up_killed_at(&cloud, "upload", &[]);
    let (_, api) = up_ok(&cloud, &[], &http);
    stacks_consistent(&cloud).unwrap_or_else(|e| panic!("after the kill at upload: {e}"));
    let again = cloud.json_ok(&["up"]);
    assert_eq!(again["changed"], false, "a second up is a no-op: {again}");
    settled(&api, &[], Duration::from_secs(30));
    killed.case(true, 0);

    // A model, so later faults have something to lose.
    let ds = push_synth(&cloud, 1);
    let first = text(
        &wait_model(&api, &ds, &["staged"], Duration::from_secs(180)),
        "id",
    )
    .to_string();
    accept(&api, &first);
    let mut accepted = vec![first.clone()];
    let before = settled(&api, &accepted, Duration::from_secs(120));

    // Killed while a stack changes (a new log retention), then while reconciling.
    for (point, days) in [("stack", "7"), ("reconcile", "3")] {
        let env = [("DEPLOYER_LOG_RETENTION_DAYS", days)];
        up_killed_at(&cloud, point, &env);
        let (up, api) = up_ok(&cloud, &env, &http);
        stacks_consistent(&cloud).unwrap_or_else(|e| panic!("after the kill at {point}: {e}"));
        let after = settled(&api, &accepted, Duration::from_secs(60));
        predicts_from(&api, &first);
        let l = lost(&before, &after);
        assert_eq!(l, 0, "records lost after the kill at {point}: {after:?}");
        if point == "reconcile" {
            let (again, _) = up_ok(&cloud, &env, &http);
            assert_eq!(
                again["changed"], false,
                "up after the recovery is a no-op: {again} (first: {up})"
            );
        }
        killed.case(true, l);
    }
    // The pipeline still runs end to end after the interrupted reconciliation.
    let ds2 = push_synth(&cloud, 2);
    let second = text(
        &wait_model(&api, &ds2, &["staged"], Duration::from_secs(180)),
        "id",
    )
    .to_string();

    // Two `up`s at once: one waits for the other, both succeed.
    let (a, arx) = spawn(&cloud, &["up"], &[]);
    let (b, brx) = spawn(&cloud, &["up"], &[]);
    let (ca, ea) = finish(a, arx);
    let (cb, eb) = finish(b, brx);
    assert_eq!(
        (ca, cb),
        (Some(0), Some(0)),
        "both ups succeed:\n{ea}\n---\n{eb}"
    );
    assert!(
        ea.contains("waiting for environment") || eb.contains("waiting for environment"),
        "one up waits for the other, naming it:\n{ea}\n---\n{eb}"
    );
    stacks_consistent(&cloud).unwrap_or_else(|e| panic!("after two ups: {e}"));
    racing.case(true, 0);

    // A lock left by a dead process is free: `up` neither waits nor fails.
    let dead = Command::new("true").spawn().expect("true runs");
    let dead_pid = dead.id();
    let _ = { dead }.wait();
    std::fs::write(
        cloud.env_state_dir().join("deployer.lock"),
        json!({"pid": dead_pid, "command": "up", "since": 0}).to_string(),
    )
    .expect("the lock file is writable");
    let run = cloud.run_ok(&["up", "--no-wait"]);
    assert!(!run.stderr.contains("busy"), "{}", run.stderr);
    racing.case(true, 0);

    // `up` started while `down` runs waits for it and brings everything back.
    let (d, drx) = spawn(&cloud, &["down", "--yes"], &[]);
    wait_until(
        "down holds the environment's lock",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || match deployer::lock::holder(&cloud.env_state_dir()) {
            Some(h) if h.command == "down" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (u, urx) = spawn(&cloud, &["up"], &[]);
    let (cd, ed) = finish(d, drx);
    let (cu, eu) = finish(u, urx);
    assert_eq!(
        (cd, cu),
        (Some(0), Some(0)),
        "down then up:\n{ed}\n---\n{eu}"
    );
    assert!(
        eu.contains("runs `deployer down`"),
        "up names the down it waits for:\n{eu}"
    );
    stacks_consistent(&cloud).unwrap_or_else(|e| panic!("after up during down: {e}"));
    racing.case(true, 0);
    accepted.clear();
    let _ = second;

    down_clean(&mut cloud);
}

#[test]
fn local_cloud_and_emulator_killed_mid_training_and_update_recover() {
    let mut cloud = Cloud::new();
    let http = Http::new();
    let mut fig_cloud = Figure::new(
        "kill -9 of the local cloud (training, endpoint update)",
        "cargo test -p e2e --test chaos local_cloud_and_emulator",
    );
    let mut fig_emu = Figure::new(
        "kill -9 of the emulator (training, endpoint update)",
        "cargo test -p e2e --test chaos local_cloud_and_emulator",
    );
    let (_, mut api) = up_ok(&cloud, &[], &http);
    let ds_a = push_synth(&cloud, 11);
    let a = text(
        &wait_model(&api, &ds_a, &["staged"], Duration::from_secs(180)),
        "id",
    )
    .to_string();
    accept(&api, &a);
    let mut accepted = vec![a.clone()];
    settled(&api, &accepted, Duration::from_secs(120));
    predicts_from(&api, &a);
    let mut serving = a.clone();

    for (victim, fig) in [("local cloud", &mut fig_cloud), ("emulator", &mut fig_emu)] {
        // During training.
        let before = api.models();
        let ds = push_synth(&cloud, 20 + before.len() as u64);
        wait_model(&api, &ds, &["training"], Duration::from_secs(60));
        let old = cloud_processes(&cloud);
        wait_until(
            "the training job's process runs",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                if cloud_processes(&cloud).iter().any(|p| p.1 == "training") {
                    Ok(())
                } else {
                    Err("no training process yet".into())
                }
            },
        );
        let pid = if victim == "emulator" {
            emulator_pid(&cloud)
        } else {
            localcloud_pid(&cloud)
        };
        kill9(pid);
        eprintln!("killed the {victim} (pid {pid}) during training");
        let (_, api2) = up_ok(&cloud, &[], &http);
        api = api2;
        let after = settled(&api, &accepted, Duration::from_secs(180));
        let retrain = model_of(&after, &ds)
            .iter()
            .all(|m| text(m, "status") == "failed");
        if retrain {
            // The job died with the local cloud: its model failed, with the reason, and a
            // new run on the same data set trains.
            let m = model_of(&after, &ds)[0];
            assert!(
                text(m, "failure_reason").contains("stopped while this job ran"),
                "the failed model says why: {m}"
            );
            let (status, body) = api.post("/training", &json!({}));
            assert_eq!(status, 202, "POST /training: {body}");
        }
        let staged = wait_model(&api, &ds, &["staged"], Duration::from_secs(180));
        predicts_from(&api, &serving);
        for (p, kind, name) in &old {
            if kind != "lambda" {
                assert!(
                    !alive(*p) || victim == "emulator",
                    "the old {kind} process {p} ({name}) outlived the killed local cloud"
                );
            }
        }
        let l = lost(&before, &settled(&api, &accepted, Duration::from_secs(60)));
        fig.case(l == 0, l);

        // During an endpoint update: accept and kill at once.
        let before = api.models();
        let id = text(&staged, "id").to_string();
        accept(&api, &id);
        accepted.push(id.clone());
        let pid = if victim == "emulator" {
            emulator_pid(&cloud)
        } else {
            localcloud_pid(&cloud)
        };
        std::thread::sleep(Duration::from_millis(150));
        kill9(pid);
        eprintln!("killed the {victim} (pid {pid}) during the endpoint update");
        let (_, api2) = up_ok(&cloud, &[], &http);
        api = api2;
        let after = settled(&api, &accepted, Duration::from_secs(180));
        let m = after
            .iter()
            .find(|m| text(m, "id") == id)
            .expect("the accepted model");
        if text(m, "status") == "deploy_failed" {
            // The update died with the local cloud: the old model kept serving, and accepting
            // again deploys it.
            accept(&api, &id);
            settled(&api, &accepted, Duration::from_secs(120));
        }
        predicts_from(&api, &id);
        serving = id;
        let l = lost(&before, &settled(&api, &accepted, Duration::from_secs(60)));
        fig.case(l == 0, l);
    }
    down_clean(&mut cloud);
}

#[test]
fn duplicate_late_and_parallel_inputs_change_nothing_twice() {
    let mut cloud = Cloud::new();
    let http = Http::new();
    let mut fig = Figure::new(
        "duplicate, out-of-order and parallel inputs; a job out of time",
        "cargo test -p e2e --test chaos duplicate_late",
    );
    let (_, api) = up_ok(&cloud, &[], &http);

    // Two pushes at once: two data sets, one model each.
    let (p1, r1) = spawn(
        &cloud,
        &["dataset", "push", "--synth", "300", "--seed", "31"],
        &[],
    );
    let (p2, r2) = spawn(
        &cloud,
        &["dataset", "push", "--synth", "300", "--seed", "32"],
        &[],
    );
    let ((c1, e1), (c2, e2)) = (finish(p1, r1), finish(p2, r2));
    assert_eq!((c1, c2), (Some(0), Some(0)), "{e1}\n---\n{e2}");
    let models = wait_until(
        "both pushes are staged",
        Duration::from_secs(240),
        SECOND,
        || {
            let m = api.models();
            let staged = m.iter().filter(|m| text(m, "status") == "staged").count();
            if staged == 2 {
                Ok(m)
            } else {
                Err(format!("{} staged of {}", staged, m.len()))
            }
        },
    );
    let datasets: BTreeSet<&str> = models.iter().map(|m| text(m, "dataset")).collect();
    assert_eq!(datasets.len(), 2, "two pushes, two data sets: {models:?}");
    settled(&api, &[], Duration::from_secs(30));
    fig.case(true, 0);

    // The same marker written again (S3 sends a second event with the same ETag): no new
    // training run.
    let ds = text(&models[0], "dataset")
        .trim_end_matches('/')
        .to_string();
    let bucket = cloud.json_ok(&["status"])["stacks"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|s| s["outputs"]["DataBucketName"].as_str().map(str::to_string))
        .expect("the data bucket output");
    let s3 = cloud.s3();
    let marker = s3.get(&bucket, &format!("{ds}/_READY"));
    for _ in 0..2 {
        s3.put(
            &bucket,
            &format!("{ds}/_READY"),
            marker.clone(),
            "application/json",
        );
    }
    std::thread::sleep(3 * SECOND);
    let now = settled(&api, &[], Duration::from_secs(60));
    assert_eq!(now.len(), 2, "a repeated marker starts nothing: {now:?}");
    fig.case(true, lost(&models, &now));

    // A training job's Completed event again, then a Failed one for the same job: the staged
    // model keeps its status and metrics.
    let staged = &now[0];
    let id = text(staged, "id").to_string();
    let job = text(staged, "training_job").to_string();
    let metrics = staged["metrics"].clone();
    for (status, reason) in [("Completed", ""), ("Failed", "a late, contradicting event")] {
        put_event(
            &cloud,
            "aws.sagemaker",
            "SageMaker Training Job State Change",
            &json!({
                "TrainingJobName": job, "TrainingJobStatus": status, "FailureReason": reason,
                "ModelArtifacts": {"S3ModelArtifacts": staged["model_artifact"]},
                "Tags": {"model": id},
            }),
        );
    }
    std::thread::sleep(3 * SECOND);
    let m = api.model(&id);
    assert_eq!(text(&m, "status"), "staged", "{m}");
    assert_eq!(m["metrics"], metrics, "the metrics did not change");
    fig.case(true, 0);

    // Accepted, then an endpoint event naming an old config: nothing moves back.
    accept(&api, &id);
    settled(&api, std::slice::from_ref(&id), Duration::from_secs(120));
    let ep = api.endpoint();
    put_event(
        &cloud,
        "aws.sagemaker",
        "SageMaker Endpoint State Change",
        &json!({
            "EndpointName": text(&ep, "name"), "EndpointStatus": "IN_SERVICE",
            "EndpointConfigName": "wastesort-local-an-old-config",
        }),
    );
    std::thread::sleep(3 * SECOND);
    let after = settled(&api, std::slice::from_ref(&id), Duration::from_secs(60));
    assert_eq!(
        text(
            after
                .iter()
                .find(|m| text(m, "id") == id)
                .expect("the model"),
            "status"
        ),
        "deployed"
    );
    predicts_from(&api, &id);
    fig.case(true, lost(&now, &after));

    // A job out of time fails with the reason; what serves does not change.
    // Enough epochs that the job runs well past its 1 s limit.
    let limited = [
        ("DEPLOYER_TRAINING_MAX_RUNTIME_S", "1"),
        (
            "DEPLOYER_HYPERPARAMETERS",
            r#"{"arch":"cnn","epochs":"500","image_size":"64","width":"8","batch_size":"32","patience":"500","warmup_epochs":"0","augment":"false","threads":"2"}"#,
        ),
    ];
    let (_, api) = up_ok(&cloud, &limited, &http);
    let ds3 = push_synth(&cloud, 33);
    let m = wait_model(&api, &ds3, &["failed", "staged"], Duration::from_secs(120));
    assert_eq!(
        text(&m, "status"),
        "failed",
        "a 1 s limit stops the job: {m}"
    );
    assert!(
        text(&m, "failure_reason").contains("time limit"),
        "the reason names the limit: {m}"
    );
    predicts_from(&api, &id);
    let _ = up_ok(&cloud, &[], &http);
    fig.case(true, 0);
    down_clean(&mut cloud);
}

/// A tmpfs mounted for the test (root with CAP_SYS_ADMIN); unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("chaos-disk-")
            .tempdir()
            .ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A read-only view of this file system (a read-only bind mount): what the deployer sees
    /// when its state directory is read-only, while the running local cloud keeps its own
    /// (writable) path.
    fn read_only_view(&self) -> ReadOnlyView {
        let dir = tempfile::Builder::new()
            .prefix("chaos-ro-")
            .tempdir()
            .expect("a mount point");
        let run = |args: &[&str]| {
            let ok = Command::new("mount")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mount {args:?}");
        };
        let (from, to) = (
            self.path().display().to_string(),
            dir.path().display().to_string(),
        );
        run(&["--bind", &from, &to]);
        run(&["-o", "remount,bind,ro", &to]);
        ReadOnlyView { dir }
    }
}

struct ReadOnlyView {
    dir: tempfile::TempDir,
}

impl Drop for ReadOnlyView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_or_read_only_state_dir_loses_nothing() {
    let mut fig = Figure::new(
        "state dir on a full disk, then read-only",
        "cargo test -p e2e --test chaos a_full_or_read_only",
    );
    // A disk too small for even the handler packages: `up` fails before it starts anything.
    let Some(tiny) = Tmpfs::mount("2m") else {
        eprintln!(
            "chaos: this user cannot mount a tmpfs (needs root with CAP_SYS_ADMIN); the full-disk \
             and read-only cases did not run"
        );
        panic!("mounting a tmpfs failed; run the chaos suite as root (CI does), or skip this test by name");
    };
    let mut cloud = Cloud::with_state_dir(tiny.path());
    let run = cloud.run(&["up"]);
    assert_eq!(run.code, Some(1), "up on a full disk fails: {}", run.stderr);
    assert!(
        run.stderr.contains("No space left on device"),
        "the error names the cause: {}",
        run.stderr
    );
    assert!(
        e2e::processes_mentioning(&tiny.path().display().to_string()).is_empty(),
        "nothing was started"
    );
    cloud.torn_down();
    drop(cloud);
    fig.case(true, 0);

    // Room for the stack, then the disk fills while it runs.
    let disk = Tmpfs::mount("3g").expect("a second tmpfs mounts");
    let mut cloud = Cloud::with_state_dir(disk.path());
    let http = Http::new();
    let (_, api) = up_ok(&cloud, &[], &http);
    let ds = push_synth(&cloud, 41);
    let id = text(
        &wait_model(&api, &ds, &["staged"], Duration::from_secs(180)),
        "id",
    )
    .to_string();
    accept(&api, &id);
    let before = settled(&api, std::slice::from_ref(&id), Duration::from_secs(120));
    let filler = disk.path().join("filler");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat /dev/zero > {} 2>/dev/null; true",
            filler.display()
        ))
        .status()
        .expect("sh runs");
    assert!(status.success());
    let push = cloud.run(&["dataset", "push", "--synth", "300", "--seed", "42"]);
    assert_ne!(
        push.code,
        Some(0),
        "a push onto a full disk fails: {}",
        push.stdout
    );
    assert!(
        push.stderr.contains("No space left on device") || push.stderr.contains("cannot record"),
        "the error names the full disk: {}",
        push.stderr
    );
    let during = api.models();
    assert_eq!(
        lost(&before, &during),
        0,
        "nothing lost while the disk is full"
    );
    // Reading and classifying go on: the model still serves (the upload it cannot keep is
    // logged), and `status` still answers.
    predicts_from(&api, &id);
    cloud.run_ok(&["status"]);
    std::fs::remove_file(&filler).expect("the filler is removable");
    let ds2 = push_synth(&cloud, 43);
    wait_model(&api, &ds2, &["staged"], Duration::from_secs(180));
    let after = settled(&api, std::slice::from_ref(&id), Duration::from_secs(60));
    fig.case(true, lost(&before, &after));

    // Read-only: mutating commands refuse with the reason and change nothing; reading ones
    // still answer, and the model still serves.
    let ro = disk.read_only_view();
    let mut ro_cloud = Cloud::with_state_dir(ro.dir.path().to_path_buf());
    ro_cloud.torn_down();
    for args in [
        &["up"][..],
        &["dataset", "push", "--synth", "50"],
        &["down", "--yes"],
    ] {
        let run = ro_cloud.run(args);
        assert_eq!(run.code, Some(1), "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("Read-only file system"),
            "{args:?}: the error names the read-only state dir: {}",
            run.stderr
        );
    }
    ro_cloud.run_ok(&["status"]);
    ro_cloud.run_ok(&["local", "status"]);
    predicts_from(&api, &id);
    drop(ro);
    let (_, api) = up_ok(&cloud, &[], &http);
    let after = settled(&api, std::slice::from_ref(&id), Duration::from_secs(60));
    fig.case(true, lost(&before, &after));
    down_clean(&mut cloud);
}
