//! `deployer redeploy`: the fast path for changed handler code. Rebuilds the handlers, compares
//! each package's SHA-256 with the deployed function's CodeSha256 (base64 of the same digest),
//! uploads and applies only the ones that differ (UpdateFunctionCode, then wait until the update
//! is Successful), and records the new keys in the state directory. The next `up` then uploads
//! nothing and only brings the stack's code references in line ("reconciling N functions"), so
//! the stack never silently drifts from what runs.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::aws::{self, Clients};
use crate::commands::{announce, build, connect, upload_package, ARTIFACTS_FILE};
use crate::config::Environment;
use crate::output::{emit, table, Format, Reporter};
use crate::package::{self, BuiltPackage};
use crate::state::{Artifact, ArtifactManifest, StateDir};

#[derive(Debug, Serialize)]
struct Row {
    function: String,
    changed: bool,
    sha256: String,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    updated: usize,
    functions: Vec<Row>,
    seconds: f64,
}

pub async fn run(
    env: &Environment,
    names: &[String],
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let started = Instant::now();
    // Unknown names fail before anything is built or changed.
    let specs = package::select(package::discover(&env.root)?, names)?;
    let (c, account) = connect(env, rep).await?;
    announce(env, &c, &account, rep);
    let bucket = crate::stack::outputs(&c.cfn, &env.artifacts_stack())
        .await?
        .into_iter()
        .find(|(k, _)| k == "ArtifactBucketName")
        .map(|(_, v)| v)
        .with_context(|| {
            format!(
                "stack {} is not deployed; run `deployer up` first",
                env.artifacts_stack()
            )
        })?;
    let all = build(env, rep)?.packages;
    let built: Vec<&BuiltPackage> = all
        .iter()
        .filter(|p| specs.iter().any(|s| s.name == p.spec.name))
        .collect();

    let state = StateDir::new(&env.state_dir);
    let mut manifest: ArtifactManifest = state.read_json(ARTIFACTS_FILE)?.unwrap_or_default();
    let mut rows = Vec::new();
    for p in built {
        let t = Instant::now();
        let function = format!("{}-{}", env.prefix(), p.spec.name);
        let deployed = c
            .lambda
            .get_function_configuration()
            .function_name(&function)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
            .with_context(|| {
                format!("failed to read function {function}; run `deployer up` first")
            })?;
        let changed = deployed.code_sha256() != Some(p.code_sha256_b64().as_str());
        if changed {
            upload_package(&c, &bucket, p).await?;
            c.lambda
                .update_function_code()
                .function_name(&function)
                .s3_bucket(&bucket)
                .s3_key(p.key())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| format!("failed to update the code of {function}"))?;
            wait_updated(&c, &function).await?;
            rep.info(&format!(
                "updated {function} in {:.1} s",
                t.elapsed().as_secs_f64()
            ));
        }
        manifest.functions.insert(
            p.spec.name.clone(),
            Artifact {
                key: p.key(),
                sha256_hex: p.sha256_hex.clone(),
                size: p.size,
            },
        );
        rows.push(Row {
            function,
            changed,
            sha256: p.sha256_hex.clone(),
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    state.write_json(ARTIFACTS_FILE, &manifest)?;
    let report = Report {
        updated: rows.iter().filter(|r| r.changed).count(),
        functions: rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    rep.info(&format!(
        "{} of {} function(s) changed; took {:.1} s",
        report.updated,
        report.functions.len(),
        report.seconds
    ));
    emit(format, &report, || {
        table(
            &["FUNCTION", "CHANGED", "SHA-256"],
            &report
                .functions
                .iter()
                .map(|r| {
                    vec![
                        r.function.clone(),
                        if r.changed {
                            "updated".into()
                        } else {
                            "unchanged".into()
                        },
                        r.sha256.clone(),
                    ]
                })
                .collect::<Vec<_>>(),
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Waits until Lambda reports the code update Successful (or says why it failed).
async fn wait_updated(c: &Clients, function: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let cfg = c
            .lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
            .with_context(|| format!("failed to read function {function}"))?;
        match cfg.last_update_status().map(|s| s.as_str()) {
            None | Some("Successful") => return Ok(()),
            Some("Failed") => bail!(
                "the code update of {function} failed: {}",
                cfg.last_update_status_reason().unwrap_or("no reason given")
            ),
            Some(_) if Instant::now() > deadline => {
                bail!("timed out waiting for the code update of {function}; check it with `deployer status`")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
