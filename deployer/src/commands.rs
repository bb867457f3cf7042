//! The commands: `render`, `plan`, `up`, `down`, `status` and `local`. Each loads the
//! environment, validates everything it can before making a change (configuration, templates,
//! credentials, emulator), then acts. Errors carry context ("failed to <verb> <noun>").

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::audit::{self, Finding, Scope};
use crate::aws::{self, Clients};
use crate::cli::{Cli, Command, LocalCommand};
use crate::config::{self, Environment, Overrides, Target};
use crate::emulator;
use crate::output::{emit, table, Format, Reporter};
use crate::package::{self, BuiltPackage};
use crate::render::{self, RenderedStack, StackKind, STACKS};
use crate::stack::{self, Poll};
use crate::state::{Artifact, ArtifactManifest, Endpoints, StateDir};

pub(crate) const ARTIFACTS_FILE: &str = "artifacts.json";
/// Present while an `up` runs; left behind by one that was killed.
const UP_MARKER: &str = "up.incomplete";

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    if let Command::Local(LocalCommand::Serve {
        state_dir,
        moto_url,
        port,
        api_port,
        region,
        model_binary,
        model_sha256,
        restore,
    }) = cli.command
    {
        crate::localrun::serve(localcloud::Config {
            state_dir,
            moto_url,
            port,
            api_port,
            region,
            account: "123456789012".into(),
            model_binary,
            model_sha256,
            restore,
        })
        .await?;
        return Ok(ExitCode::SUCCESS);
    }
    let rep = Reporter::new();
    let env = load_env(&cli)?;
    let result = dispatch(cli, &env, &rep).await;
    // The emulator explains its 500s only in its own log: point there.
    if env.target == Target::Local {
        let log = env.state_dir.join("emulator.log");
        if log.exists() {
            return result
                .map_err(|e| anyhow::anyhow!("{e:#} (the emulator's log: {})", log.display()));
        }
    }
    result
}

async fn dispatch(cli: Cli, env: &Environment, rep: &Reporter) -> Result<ExitCode> {
    // Commands that render the stack need the handler packages (their hashes are the code
    // keys) and, locally, the model binary (its hash names the training image); both come from
    // one build, before anything is changed.
    let renders = matches!(cli.command, Command::Up { .. } | Command::Plan)
        || matches!(
            cli.command,
            Command::Render {
                no_build: false,
                ..
            }
        );
    let builds_image = renders && crate::model_image::builds_image(env);
    // An `aws` environment is checked before anything is built or changed.
    if env.target == Target::Aws
        && matches!(
            cli.command,
            Command::Up { .. } | Command::Plan | Command::Redeploy { .. } | Command::Down { .. }
        )
    {
        preflight(env, builds_image, rep).await?;
    }
    // One mutating command at a time per environment, held until the command returns; taken
    // after the checks above, so a command refused by them writes nothing.
    let _lock = match cli.command.mutating_name() {
        Some(name) => Some(crate::lock::acquire(
            &env.state_dir,
            &env.name,
            name,
            !cli.no_wait,
            &|m| rep.info(m),
        )?),
        None => None,
    };
    let built = if renders {
        Some(build(env, rep)?)
    } else {
        None
    };
    let resolved;
    let env = if let Some(b) = &built {
        let env = with_local_image(env, b.model.as_deref(), rep)?;
        resolved = if builds_image {
            crate::model_image::for_up(&env, rep)?
        } else {
            env
        };
        &resolved
    } else {
        env
    };
    let packages = built.map(|b| b.packages).unwrap_or_default();
    match cli.command {
        Command::Render { out, no_build } => {
            render_cmd(env, out, no_build, packages, cli.output, rep)
        }
        Command::Plan => plan_cmd(env, packages, cli.output, rep).await,
        Command::Up { yes } => up_cmd(env, packages, yes, cli.output, rep).await,
        Command::Down { yes } => down_cmd(env, yes, cli.output, rep).await,
        Command::Status => status_cmd(env, cli.output, rep).await,
        Command::Dataset(crate::cli::DatasetCommand::Push { dir, synth, seed }) => {
            match (dir, synth) {
                (Some(dir), _) => crate::dataset::push(env, &dir, cli.output, rep).await,
                (None, Some(n)) => {
                    crate::dataset::push_synthetic(env, n, seed, cli.output, rep).await
                }
                (None, None) => bail!("name a folder to push, or pass --synth N for demo data"),
            }
        }
        Command::Redeploy { functions } => {
            crate::redeploy::run(env, &functions, cli.output, rep).await
        }
        Command::Local(c) => local_cmd(env, c, cli.output),
        Command::Users(c) => users_cmd(env, c, cli.output, rep).await,
        Command::Image(c) => {
            use crate::cli::ImageCommand;
            match c {
                ImageCommand::Build => crate::model_image::build_cmd(env, cli.output),
                ImageCommand::Push { to, plain_http } => {
                    crate::model_image::push_cmd(env, to, plain_http, cli.output, rep).await
                }
                ImageCommand::Inspect { to, plain_http } => {
                    crate::model_image::inspect_cmd(env, to, plain_http, cli.output).await
                }
            }
        }
        Command::Preflight => preflight_cmd(env, cli.output, rep).await,
    }
}

/// The checks that need no AWS call, run before `up`, `plan`, `redeploy` and `down` on `aws`
/// environments; the first failure stops the command with its fix. (Credentials and the
/// account are checked when the clients are built, before any change.)
async fn preflight(env: &Environment, builds_image: bool, rep: &Reporter) -> Result<()> {
    let get = |k: &str| std::env::var(k).ok();
    for c in crate::preflight::local_checks(env, &get, builds_image).await {
        if !c.ok {
            bail!(
                "preflight: {}: {}; {}",
                c.name,
                c.detail,
                c.fix.unwrap_or_default()
            );
        }
        rep.info(&format!("preflight: {}: {}", c.name, c.detail));
    }
    Ok(())
}

/// `deployer preflight`: every check, then credentials and the account.
async fn preflight_cmd(env: &Environment, format: Format, rep: &Reporter) -> Result<ExitCode> {
    use crate::preflight::Check;
    let get = |k: &str| std::env::var(k).ok();
    let mut checks = crate::preflight::local_checks(env, &get, true).await;
    if env.target == Target::Aws {
        // Credentials (profiles, SSO, credential_process, variables) and the account; the
        // region check comes first.
        let region_ok = checks[0].ok;
        if region_ok {
            match connect(env, rep).await {
                Ok((c, account)) => {
                    checks.push(Check {
                        name: "credentials",
                        ok: true,
                        detail: format!("resolved; account {account}, region {}", c.region),
                        fix: None,
                    });
                }
                Err(e) => checks.push(Check {
                    name: "credentials",
                    ok: false,
                    detail: format!("{e:#}"),
                    fix: Some("see the message: log in (aws sso login), pick a profile (--profile) or export credentials".into()),
                }),
            }
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    emit(format, &checks, || {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                vec![
                    if c.ok { "ok" } else { "FAIL" }.into(),
                    c.name.into(),
                    c.detail.clone(),
                    c.fix.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&["", "CHECK", "FOUND", "FIX"], &rows)
    });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn users_cmd(
    env: &Environment,
    cmd: crate::cli::UsersCommand,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    use crate::cli::UsersCommand;
    let (c, _) = connect(env, rep).await?;
    match cmd {
        UsersCommand::Add { email, approver } => {
            crate::users::add(&c, env, &email, approver, format, rep).await
        }
        UsersCommand::List => crate::users::list(&c, env, format).await,
        UsersCommand::Remove { email } => crate::users::remove(&c, env, &email, format).await,
        UsersCommand::Reset { email } => crate::users::reset(&c, env, &email, format).await,
        UsersCommand::Token { email } => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("failed to read the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!(
                    "no password on stdin; run: echo \"$PASSWORD\" | deployer users token {email}"
                );
            }
            let token = crate::users::sign_in(&c, env, &email, password).await?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_env(cli: &Cli) -> Result<Environment> {
    let path = match &cli.config {
        Some(p) => p.clone(),
        None => {
            let cwd = std::env::current_dir().context("failed to read the working directory")?;
            config::find_config(&cwd)?
        }
    };
    let overrides = Overrides {
        env: cli.env.clone(),
        region: cli.region.clone(),
        profile: cli.profile.clone(),
    };
    Ok(config::load(&path, &overrides, &|k| std::env::var(k).ok())?)
}

/// A local environment whose training image is the default gets the model binary's hashed
/// name (`local://waste-model@sha256:<hex>`), the only image the local cloud runs. `model` is
/// the binary [`build`] made beside the handlers.
fn with_local_image(
    env: &Environment,
    model: Option<&std::path::Path>,
    rep: &Reporter,
) -> Result<Environment> {
    let mut env = env.clone();
    if env.target == Target::Local && env.training_image == crate::localrun::DEFAULT_IMAGE {
        match model {
            Some(exe) => {
                let img = crate::localrun::install_model_image(&env, exe)?;
                rep.info(&format!("model image {}", img.image));
                env.training_image = img.image;
            }
            None => rep.warn(
                "this project has no model/ crate: training jobs cannot run in the local cloud",
            ),
        }
    }
    if env.target == Target::Local {
        let port = crate::localrun::planned_api_port(&env)?;
        env.web_url = Some(format!("http://127.0.0.1:{port}/{}/", env.api_stage));
    }
    Ok(env)
}

/// The REST API's binary media types as the rendered app template declares them.
fn template_binary_types(body: &str) -> Vec<String> {
    serde_yaml_ng::from_str::<serde_yaml_ng::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("Resources")?
                .get("RestApi")?
                .get("Properties")?
                .get("BinaryMediaTypes")?
                .as_sequence()
                .map(|s| {
                    s.iter()
                        .filter_map(|t| t.as_str().map(str::to_string))
                        .collect()
                })
        })
        .unwrap_or_default()
}

/// The API and web URLs: the local gateway's for a local environment, the stack's output
/// on AWS.
fn urls(
    env: &Environment,
    outputs: &std::collections::BTreeMap<String, String>,
) -> (Option<String>, Option<String>) {
    match env.target {
        Target::Local => match crate::localrun::running(&StateDir::new(&env.state_dir)) {
            Some(c) => (
                Some(format!("{}/{}/api", c.api_base, env.api_stage)),
                Some(format!("{}/{}/", c.api_base, env.api_stage)),
            ),
            None => (None, None),
        },
        Target::Aws => {
            let api = outputs.get("ApiUrl").cloned();
            let web = outputs.get("WebUrl").cloned().or_else(|| {
                api.as_deref()
                    .map(|a| format!("{}/", a.trim_end_matches("/api")))
            });
            (api, web)
        }
    }
}

/// On a local environment, the stack outputs that are AWS-shaped URLs the emulator made up
/// (`https://<id>.execute-api.<region>.amazonaws.com/...`): nothing answers there. Each maps to
/// what to use instead.
fn unreachable_outputs(
    env: &Environment,
    outputs: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    if env.target != Target::Local {
        return Default::default();
    }
    [("ApiUrl", "api_url"), ("WebUrl", "web_url")]
        .iter()
        .filter(|(k, _)| outputs.contains_key(*k))
        .map(|(k, instead)| {
            (
                k.to_string(),
                format!("the emulator's AWS-shaped URL, which does not resolve; use {instead} (the local gateway)"),
            )
        })
        .collect()
}

/// A table cell for an output, labelled when nothing answers at that URL.
fn output_cell(
    unreachable: &std::collections::BTreeMap<String, String>,
    key: &str,
    value: &str,
) -> String {
    if unreachable.contains_key(key) {
        format!("{value}  (emulator only, does not resolve)")
    } else {
        value.to_string()
    }
}

pub(crate) fn poll(env: &Environment) -> Poll {
    match env.target {
        Target::Local => Poll::for_local(),
        Target::Aws => Poll::for_aws(),
    }
}

/// Clients for the environment; starts (or reuses) the emulator of a local environment.
pub(crate) async fn connect(env: &Environment, rep: &Reporter) -> Result<(Clients, String)> {
    let endpoints = match env.target {
        Target::Local => {
            let r = crate::localrun::ensure(env).context("failed to start the local cloud")?;
            let e = &r.emulator;
            if e.reused {
                rep.info(&format!(
                    "reusing the local emulator on port {} (pid {})",
                    e.port, e.pid
                ));
            } else {
                rep.info(&format!(
                    "started the local emulator on port {} (pid {}), log {}",
                    e.port,
                    e.pid,
                    e.log.display()
                ));
            }
            if r.reused {
                rep.info(&format!(
                    "reusing the local cloud at {} (pid {})",
                    r.cloud.url, r.cloud.pid
                ));
            } else {
                rep.info(&format!(
                    "started the local cloud at {} (pid {}){}",
                    r.cloud.url,
                    r.cloud.pid,
                    if r.cloud.restored_calls > 0 {
                        format!(
                            ", restored {} recorded calls into the emulator",
                            r.cloud.restored_calls
                        )
                    } else {
                        String::new()
                    }
                ));
            }
            let state = StateDir::new(&env.state_dir);
            Some(
                state
                    .read_json::<Endpoints>(emulator::ENDPOINTS_FILE)?
                    .unwrap_or(Endpoints {
                        default: r.cloud.url.clone(),
                        services: Default::default(),
                    }),
            )
        }
        Target::Aws => None,
    };
    let cfg = aws::sdk_config(env, endpoints.as_ref()).await?;
    let clients = aws::clients(env, &cfg, endpoints.as_ref());
    let account = aws::account_id(&clients).await?;
    Ok((clients, account))
}

pub(crate) fn announce(env: &Environment, c: &Clients, account: &str, rep: &Reporter) {
    let endpoint = match (&c.endpoint, env.target) {
        (Some(e), Target::Local) => format!("{e} (local emulator)"),
        (Some(e), Target::Aws) => e.clone(),
        (None, _) => "AWS default endpoints".into(),
    };
    rep.info(&format!(
        "target: environment {} ({}), account {account}, region {}, endpoint {endpoint}",
        env.name, env.target, c.region
    ));
}

/// Asks before changing a real account; local environments never ask.
fn confirm(env: &Environment, yes: bool, what: &str) -> Result<()> {
    if yes || env.target == Target::Local {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to {what} in environment '{}' without confirmation; pass --yes",
            env.name
        );
    }
    eprint!("{what} in environment '{}'? [y/N] ", env.name);
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("failed to read the confirmation")?;
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("cancelled; nothing was changed")
    }
}

/// The frontend (when its sources changed), then the handler packages and, locally, the model
/// binary beside them ([`package::build`]).
pub(crate) fn build(env: &Environment, rep: &Reporter) -> Result<package::Built> {
    let specs = package::discover(&env.root)?;
    let started = Instant::now();
    // The web function embeds frontend/dist: build it first when its sources changed.
    if let Some(run) = package::build_frontend(&env.root, &|m| rep.info(m))
        .context("failed to build the web app (frontend/)")?
    {
        if run.installed || run.built {
            rep.info(&format!(
                "frontend ready in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
    }
    let started = Instant::now();
    let built = package::build(env, &specs).context("failed to build the Lambda handlers")?;
    rep.info(&format!(
        "built {} handler package(s){} in {:.1} s",
        built.packages.len(),
        if built.model.is_some() {
            " and the model"
        } else {
            ""
        },
        started.elapsed().as_secs_f64()
    ));
    Ok(built)
}

pub(crate) fn render_all(
    env: &Environment,
    functions: &[render::FunctionContext],
) -> Result<Vec<RenderedStack>> {
    let dir = render::stacks_dir(env);
    STACKS
        .iter()
        .map(|k| render::render(env, &dir, *k, functions).map_err(anyhow::Error::from))
        .collect()
}

pub(crate) fn stack_tags(env: &Environment) -> Vec<(String, String)> {
    vec![
        ("app".into(), env.app.clone()),
        ("env".into(), env.name.clone()),
        ("managed-by".into(), "deployer".into()),
    ]
}

// ---------------------------------------------------------------- render

fn render_cmd(
    env: &Environment,
    out: Option<PathBuf>,
    no_build: bool,
    built: Vec<BuiltPackage>,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let functions = if no_build {
        let specs = package::discover(&env.root)?;
        let recorded: ArtifactManifest = StateDir::new(&env.state_dir)
            .read_json(ARTIFACTS_FILE)?
            .unwrap_or_default();
        specs
            .iter()
            .map(|s| {
                let sha = match recorded.functions.get(&s.name) {
                    Some(a) => a.sha256_hex.clone(),
                    None => {
                        rep.warn(&format!(
                            "function {} was never built here; its code key is a zero hash until `deployer up` or `deployer render` builds it",
                            s.name
                        ));
                        "0".repeat(64)
                    }
                };
                package::context_for(env, s, &sha)
            })
            .collect::<Vec<_>>()
    } else {
        built
            .iter()
            .map(|p| package::function_context(env, p))
            .collect()
    };
    let stacks = render_all(env, &functions)?;
    let dir = out.unwrap_or_else(|| env.state_dir.join("rendered"));
    std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut written = Vec::new();
    let mut params = serde_json::Map::new();
    for s in &stacks {
        let path = dir.join(format!("{}.yaml", s.kind.stem()));
        std::fs::write(&path, &s.body)
            .with_context(|| format!("failed to write {}", path.display()))?;
        params.insert(s.kind.stem().to_string(), s.context.clone());
        written.push(RenderedFile {
            stack: s.stack_name.clone(),
            path: path.display().to_string(),
            resources: s.resources.len(),
            bytes: s.body.len(),
        });
    }
    let ppath = dir.join("parameters.json");
    std::fs::write(&ppath, serde_json::to_vec_pretty(&params)?)
        .with_context(|| format!("failed to write {}", ppath.display()))?;
    emit(format, &written, || {
        table(
            &["STACK", "FILE", "RESOURCES", "BYTES"],
            &written
                .iter()
                .map(|w| {
                    vec![
                        w.stack.clone(),
                        w.path.clone(),
                        w.resources.to_string(),
                        w.bytes.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        )
    });
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct RenderedFile {
    stack: String,
    path: String,
    resources: usize,
    bytes: usize,
}

// ---------------------------------------------------------------- plan

async fn plan_cmd(
    env: &Environment,
    built: Vec<BuiltPackage>,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let functions: Vec<_> = built
        .iter()
        .map(|p| package::function_context(env, p))
        .collect();
    let stacks = render_all(env, &functions)?;
    let (c, account) = connect(env, rep).await?;
    announce(env, &c, &account, rep);
    let mut changes = Vec::new();
    for s in &stacks {
        changes.extend(
            stack::plan(&c.cfn, s, poll(env))
                .await
                .with_context(|| format!("failed to plan stack {}", s.stack_name))?,
        );
    }
    emit(format, &changes, || {
        if changes.is_empty() {
            "No changes: the deployed stacks match the templates.\n".to_string()
        } else {
            table(
                &["STACK", "ACTION", "LOGICAL ID", "TYPE", "REPLACEMENT"],
                &changes
                    .iter()
                    .map(|c| {
                        vec![
                            c.stack.clone(),
                            c.action.clone(),
                            c.logical_id.clone(),
                            c.resource_type.clone(),
                            c.replacement.clone(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            )
        }
    });
    Ok(if changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

// ---------------------------------------------------------------- up

#[derive(Debug, Serialize)]
struct UpReport {
    environment: String,
    /// The pipeline API's base URL (`…/<stage>/api`).
    api_url: Option<String>,
    /// The web app's URL (`…/<stage>/`).
    web_url: Option<String>,
    account: String,
    region: String,
    endpoint: Option<String>,
    changed: bool,
    uploaded: usize,
    stacks: Vec<stack::Deployed>,
    functions: Vec<FunctionReport>,
    reconciled: Vec<String>,
    /// Functions whose code already ran (from `redeploy`) and whose stack references were updated.
    reconciling: Vec<String>,
    outputs: std::collections::BTreeMap<String, String>,
    /// The local user pool `up` stands in for (with the first approver, the one time it is
    /// created); `None` on AWS, where the stack's outputs name the pool.
    auth: Option<crate::users::LocalAuth>,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct FunctionReport {
    name: String,
    key: String,
    sha256: String,
    bytes: u64,
    uploaded: bool,
}

async fn up_cmd(
    env: &Environment,
    built: Vec<BuiltPackage>,
    yes: bool,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let started = Instant::now();
    // Everything that can fail without AWS (the build above included) is checked before any
    // change.
    let functions: Vec<_> = built
        .iter()
        .map(|p| package::function_context(env, p))
        .collect();
    let stacks = render_all(env, &functions)?;
    let (c, account) = connect(env, rep).await?;
    announce(env, &c, &account, rep);
    confirm(env, yes, "deploy")?;

    // A marker for the whole deploy: an `up` that was killed part-way leaves it, and the next
    // one then reconciles even though its stacks show no change (the killed one may have
    // deployed them and stopped before reconciling).
    let state = StateDir::new(&env.state_dir);
    let interrupted = state.file(UP_MARKER).exists();
    state.write(UP_MARKER, b"an `up` is running or was interrupted\n")?;
    let tags = stack_tags(env);
    let mut deployed = Vec::new();
    let artifacts = stack::deploy(&c.cfn, &stacks[0], &tags, poll(env), rep)
        .await
        .with_context(|| format!("failed to deploy stack {}", stacks[0].stack_name))?;
    let bucket = artifacts
        .outputs
        .iter()
        .find(|(k, _)| k == "ArtifactBucketName")
        .map(|(_, v)| v.clone())
        .with_context(|| {
            format!(
                "stack {} has no ArtifactBucketName output",
                stacks[0].stack_name
            )
        })?;
    deployed.push(artifacts);
    // The model image, now that its repository exists (aws environments; nothing when ECR
    // has it already).
    crate::model_image::push_for_up(env, &c, rep).await?;

    let mut reports = Vec::new();
    let mut uploaded = 0;
    for p in &built {
        let key = p.key();
        let new = upload_package(&c, &bucket, p).await?;
        if new {
            uploaded += 1;
            rep.info(&format!("uploaded {key} ({} bytes)", p.size));
            crate::fault::checkpoint("upload");
        }
        reports.push(FunctionReport {
            name: p.spec.name.clone(),
            key,
            sha256: p.sha256_hex.clone(),
            bytes: p.size,
            uploaded: new,
        });
    }

    // Functions whose new code already runs (from `deployer redeploy`) but whose stack still
    // names the old package: the stack update below only brings its references in line.
    let mut reconciling = Vec::new();
    if let Some(body) = stack::deployed_template(&c.cfn, &stacks[1].stack_name).await {
        for p in built.iter().filter(|p| !body.contains(&p.key())) {
            let running = c
                .lambda
                .get_function_configuration()
                .function_name(format!("{}-{}", env.prefix(), p.spec.name))
                .send()
                .await
                .ok()
                .and_then(|cfg| cfg.code_sha256().map(str::to_string));
            if running.as_deref() == Some(p.code_sha256_b64().as_str()) {
                reconciling.push(p.spec.name.clone());
            }
        }
    }
    if !reconciling.is_empty() {
        rep.info(&format!(
            "reconciling {} functions ({}): their code already runs from `deployer redeploy`; updating the stack's code references",
            reconciling.len(),
            reconciling.join(", ")
        ));
    }
    let app = stack::deploy(&c.cfn, &stacks[1], &tags, poll(env), rep)
        .await
        .with_context(|| format!("failed to deploy stack {}", stacks[1].stack_name))?;
    let outputs: std::collections::BTreeMap<String, String> = app.outputs.iter().cloned().collect();
    deployed.push(app);
    let mut with_artifacts = outputs.clone();
    with_artifacts.insert("ArtifactBucketName".into(), bucket.clone());
    for (k, v) in &tags {
        with_artifacts.insert(format!("tag:{k}"), v.clone());
    }
    // Only after a stack changed: the emulator accepts some of these settings through the API
    // but does not report them back, so checking them on every run would re-apply them forever.
    crate::fault::checkpoint("reconcile");
    if interrupted {
        rep.info("the last `up` was interrupted: reconciling everything it may have skipped");
    }
    let mut reconciled = if interrupted || deployed.iter().any(|d| d.changed) {
        reconcile(&c, &with_artifacts, rep).await?
    } else {
        Vec::new()
    };
    reconciled.extend(
        reconcile_binary_types(
            &c,
            &with_artifacts,
            &template_binary_types(&stacks[1].body),
            rep,
        )
        .await?,
    );

    // The emulator's CloudFormation skips Cognito and API Gateway authorizers: create them
    // through their APIs, as the template names them.
    let auth = if env.target == Target::Local {
        let api = outputs
            .get("RestApiId")
            .context("the app stack has no RestApiId output")?;
        let names: Vec<String> = built
            .iter()
            .map(|p| format!("{}-{}", env.prefix(), p.spec.name))
            .collect();
        let a = crate::users::ensure_local(&c, env, api, &names)
            .await
            .context("failed to set up the local user pool")?;
        for what in &a.changed {
            rep.info(&format!("local users: set up {what}"));
        }
        reconciled.extend(a.changed.iter().map(|w| format!("local users: {w}")));
        Some(a)
    } else {
        None
    };

    let manifest = ArtifactManifest {
        functions: built
            .iter()
            .map(|p| {
                (
                    p.spec.name.clone(),
                    Artifact {
                        key: p.key(),
                        sha256_hex: p.sha256_hex.clone(),
                        size: p.size,
                    },
                )
            })
            .collect(),
    };
    state.write_json(ARTIFACTS_FILE, &manifest)?;
    state.remove(UP_MARKER);

    let changed = deployed.iter().any(|d| d.changed) || uploaded > 0 || !reconciled.is_empty();
    let (api_url, web_url) = urls(env, &outputs);
    let report = UpReport {
        environment: env.name.clone(),
        api_url,
        web_url,
        account,
        region: c.region.clone(),
        endpoint: c.endpoint.clone(),
        changed,
        uploaded,
        stacks: deployed,
        functions: reports,
        reconciled,
        reconciling,
        outputs,
        auth,
        seconds: started.elapsed().as_secs_f64(),
    };
    if !changed {
        rep.info("no changes: both stacks are up to date and nothing was uploaded");
    }
    emit(format, &report, || {
        let mut rows: Vec<Vec<String>> = Vec::new();
        if let Some(u) = &report.web_url {
            rows.push(vec!["web URL".into(), u.clone()]);
        }
        if let Some(u) = &report.api_url {
            rows.push(vec!["API URL".into(), u.clone()]);
        }
        let unreachable = unreachable_outputs(env, &report.outputs);
        rows.extend(
            report
                .outputs
                .iter()
                .map(|(k, v)| vec![k.clone(), output_cell(&unreachable, k, v)])
                .collect::<Vec<_>>(),
        );
        rows.push(vec!["ArtifactBucketName".into(), bucket.clone()]);
        if let Some(a) = &report.auth {
            rows.push(vec!["UserPoolId".into(), a.user_pool_id.clone()]);
            rows.push(vec!["UserPoolClientId".into(), a.client_id.clone()]);
        }
        let mut out = table(&["OUTPUT", "VALUE"], &rows);
        if let Some(u) = report.auth.as_ref().and_then(|a| a.first_user.as_ref()) {
            out.push_str(&format!(
                "\nfirst approver (shown once): {}  password: {}\nsign in to the web app with it; add people with `deployer users add EMAIL [--approver]`",
                u.email, u.password
            ));
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}

/// Uploads a package under its content-hash key unless that key is already there (then the
/// bytes are the same). Returns whether it uploaded. Shared by `up` and `redeploy`.
pub(crate) async fn upload_package(c: &Clients, bucket: &str, p: &BuiltPackage) -> Result<bool> {
    let key = p.key();
    if c.s3
        .head_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .is_ok()
    {
        return Ok(false);
    }
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&p.zip_path)
        .await
        .with_context(|| format!("failed to read package {}", p.zip_path.display()))?;
    c.s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(body)
        .checksum_sha256(p.code_sha256_b64())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
        .with_context(|| format!("failed to upload {key} to {bucket}"))?;
    Ok(true)
}

/// Confirms settings CloudFormation was asked for and applies any that did not take. On AWS
/// these are no-ops; the local emulator ignores bucket versioning, EventBridge notifications and
/// DynamoDB point-in-time recovery in templates (local-emulator.md), so they are set here through
/// each service's own API rather than accepted as a gap.
/// The REST API's binary media types. The emulator skips them in templates but reports
/// them back, so unlike [`reconcile`] this check runs on every `up` (a restored emulator has
/// a new API without them).
async fn reconcile_binary_types(
    c: &Clients,
    outputs: &std::collections::BTreeMap<String, String>,
    binary_types: &[String],
    rep: &Reporter,
) -> Result<Option<String>> {
    let mut applied = Vec::new();
    if let Some(api) = outputs.get("RestApiId") {
        let have: Vec<String> = c
            .apigateway
            .get_rest_api()
            .rest_api_id(api)
            .send()
            .await
            .map(|a| a.binary_media_types().to_vec())
            .unwrap_or_default();
        let missing: Vec<&String> = binary_types.iter().filter(|t| !have.contains(t)).collect();
        if !missing.is_empty() {
            let ops: Vec<aws_sdk_apigateway::types::PatchOperation> = missing
                .iter()
                .map(|t| {
                    aws_sdk_apigateway::types::PatchOperation::builder()
                        .op(aws_sdk_apigateway::types::Op::Add)
                        // JSON Pointer: '/' inside a value is written '~1'. AWS reads the type
                        // from the path; the emulator from the value, so both carry it.
                        .path(format!("/binaryMediaTypes/{}", t.replace('/', "~1")))
                        .value(t.as_str())
                        .build()
                })
                .collect();
            c.apigateway
                .update_rest_api()
                .rest_api_id(api)
                .set_patch_operations(Some(ops))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| format!("failed to set binary media types on REST API {api}"))?;
            applied.push(format!("API Gateway binary media types on {api}"));
        }
    }
    for a in &applied {
        rep.info(&format!(
            "applied {a} (the template asks for it; the target had not set it)"
        ));
    }
    Ok(applied.pop())
}

async fn reconcile(
    c: &Clients,
    outputs: &std::collections::BTreeMap<String, String>,
    rep: &Reporter,
) -> Result<Vec<String>> {
    let mut applied = Vec::new();
    let buckets = [
        (outputs.get("ArtifactBucketName"), false),
        (outputs.get("DataBucketName"), true),
    ];
    for (bucket, notifications) in buckets {
        let Some(bucket) = bucket else { continue };
        // The TLS-only bucket policy is not reconciled: the emulator skips
        // AWS::S3::BucketPolicy but does enforce bucket policies, and it is reached over plain
        // HTTP on loopback, so that policy would deny every local request. On AWS CloudFormation
        // applies it; the integration test checks the rendered template holds it.
        let blocked =
            c.s3.get_public_access_block()
                .bucket(bucket)
                .send()
                .await
                .ok()
                .and_then(|o| o.public_access_block_configuration().cloned())
                .is_some_and(|p| {
                    p.block_public_acls() == Some(true)
                        && p.block_public_policy() == Some(true)
                        && p.ignore_public_acls() == Some(true)
                        && p.restrict_public_buckets() == Some(true)
                });
        if !blocked {
            c.s3.put_public_access_block()
                .bucket(bucket)
                .public_access_block_configuration(
                    aws_sdk_s3::types::PublicAccessBlockConfiguration::builder()
                        .block_public_acls(true)
                        .block_public_policy(true)
                        .ignore_public_acls(true)
                        .restrict_public_buckets(true)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| format!("failed to block public access on {bucket}"))?;
            applied.push(format!("s3 public access block on {bucket}"));
        }
        let v =
            c.s3.get_bucket_versioning()
                .bucket(bucket)
                .send()
                .await
                .ok();
        if v.and_then(|v| v.status().cloned())
            != Some(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
        {
            c.s3.put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| format!("failed to enable versioning on {bucket}"))?;
            applied.push(format!("s3 versioning on {bucket}"));
        }
        if !notifications {
            continue;
        }
        let n =
            c.s3.get_bucket_notification_configuration()
                .bucket(bucket)
                .send()
                .await
                .ok();
        if n.and_then(|n| n.event_bridge_configuration().cloned())
            .is_none()
        {
            c.s3.put_bucket_notification_configuration()
                .bucket(bucket)
                .notification_configuration(
                    aws_sdk_s3::types::NotificationConfiguration::builder()
                        .event_bridge_configuration(
                            aws_sdk_s3::types::EventBridgeConfiguration::builder().build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| {
                    format!("failed to enable EventBridge notifications on {bucket}")
                })?;
            applied.push(format!("s3 EventBridge notifications on {bucket}"));
        }
    }
    for key in ["ModelsTableName", "JobsTableName"] {
        let Some(table) = outputs.get(key) else {
            continue;
        };
        let on = c
            .dynamodb
            .describe_continuous_backups()
            .table_name(table)
            .send()
            .await
            .ok()
            .and_then(|d| {
                d.continuous_backups_description()
                    .and_then(|b| b.point_in_time_recovery_description().cloned())
            })
            .and_then(|p| p.point_in_time_recovery_status().cloned())
            == Some(aws_sdk_dynamodb::types::PointInTimeRecoveryStatus::Enabled);
        if !on {
            c.dynamodb
                .update_continuous_backups()
                .table_name(table)
                .point_in_time_recovery_specification(
                    aws_sdk_dynamodb::types::PointInTimeRecoverySpecification::builder()
                        .point_in_time_recovery_enabled(true)
                        .build()
                        .map_err(|e| anyhow::anyhow!(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| format!("failed to enable point-in-time recovery on {table}"))?;
            applied.push(format!("dynamodb point-in-time recovery on {table}"));
        }
    }
    if let Some(key) = outputs.get("KeyArn") {
        let tags = c.kms.list_resource_tags().key_id(key).send().await.ok();
        let has_app = tags.is_some_and(|t| t.tags().iter().any(|t| t.tag_key() == "app"));
        if !has_app {
            let tags: Vec<aws_sdk_kms::types::Tag> = stack_tags_from(outputs)
                .into_iter()
                .filter_map(|(k, v)| {
                    aws_sdk_kms::types::Tag::builder()
                        .tag_key(k)
                        .tag_value(v)
                        .build()
                        .ok()
                })
                .collect();
            c.kms
                .tag_resource()
                .key_id(key)
                .set_tags(Some(tags))
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| format!("failed to tag KMS key {key}"))?;
            applied.push(format!("kms tags on {key}"));
        }
    }
    for a in &applied {
        rep.info(&format!(
            "applied {a} (the template asks for it; the target had not set it)"
        ));
    }
    Ok(applied)
}

/// The stack tags, carried in the reconcile map under `tag:<key>`.
fn stack_tags_from(outputs: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    outputs
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("tag:").map(|t| (t.to_string(), v.clone())))
        .collect()
}

// ---------------------------------------------------------------- down

#[derive(Debug, Serialize)]
struct DownReport {
    environment: String,
    account: String,
    region: String,
    stacks_deleted: Vec<String>,
    removed: Vec<Finding>,
    left: Vec<Finding>,
    billable_left: usize,
    monthly_usd_left: f64,
    prices_as_of: &'static str,
    emulator_stopped: bool,
    seconds: f64,
}

async fn down_cmd(
    env: &Environment,
    yes: bool,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let started = Instant::now();
    let (c, account) = connect(env, rep).await?;
    announce(env, &c, &account, rep);
    confirm(env, yes, "delete everything")?;
    let scope = Scope {
        app: env.app.clone(),
        env: env.name.clone(),
    };

    // Buckets first: CloudFormation cannot delete a bucket that still holds objects.
    let buckets =
        c.s3.list_buckets()
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
            .context("failed to list buckets")?;
    for b in buckets.buckets().iter().filter_map(|b| b.name()) {
        if b.starts_with(&format!("{}-", env.prefix())) {
            let n = audit::empty_bucket(&c, b)
                .await
                .map_err(|e| anyhow::anyhow!(e))
                .with_context(|| format!("failed to empty bucket {b}"))?;
            rep.info(&format!(
                "emptied bucket {b} ({n} object versions and delete markers)"
            ));
        }
    }
    // Remember the key: once the stack is gone its alias is too, and `down` must say what
    // became of it.
    let key_arn = stack::outputs(&c.cfn, &env.app_stack())
        .await
        .ok()
        .and_then(|o| o.into_iter().find(|(k, _)| k == "KeyArn").map(|(_, v)| v));
    let mut stacks_deleted = Vec::new();
    for kind in [StackKind::App, StackKind::Artifacts] {
        let name = kind.stack_name(env);
        if stack::delete(&c.cfn, &name, poll(env), rep)
            .await
            .with_context(|| format!("failed to delete stack {name}"))?
        {
            rep.info(&format!("deleted stack {name}"));
            stacks_deleted.push(name);
        }
    }
    let removed: Vec<Finding> = audit::sweep(&c, &scope, true, rep)
        .await
        .into_iter()
        .filter(|f| f.state == "removed")
        .collect();
    for f in &removed {
        rep.info(&format!(
            "audit removed a leftover {} {}: {}",
            f.service, f.kind, f.id
        ));
    }
    let left = audit::sweep(&c, &scope, false, rep).await;
    if let Some(arn) = &key_arn {
        if !left
            .iter()
            .any(|f| f.service == "kms" && arn.ends_with(&f.id))
        {
            match c.kms.describe_key().key_id(arn).send().await {
                Ok(d) => {
                    let meta = d.key_metadata();
                    let state = meta
                        .and_then(|m| m.key_state())
                        .map(|s| s.as_str().to_string());
                    let date = meta
                        .and_then(|m| m.deletion_date())
                        .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok());
                    rep.info(&format!(
                        "KMS key {arn}: {}{}",
                        state.unwrap_or_default(),
                        date.map(|d| format!(", deleted on {d}"))
                            .unwrap_or_default()
                    ));
                }
                Err(_) => rep.info(&format!("KMS key {arn} is deleted")),
            }
        }
    }
    for f in left
        .iter()
        .filter(|f| f.service == "kms" && f.state == "pending-deletion")
    {
        rep.info(&format!("KMS key {} {}", f.id, f.note));
    }
    let billable: Vec<&Finding> = left.iter().filter(|f| f.billable).collect();
    let monthly: f64 = billable.iter().map(|f| f.monthly_usd).sum();
    let emulator_stopped = if env.target == Target::Local {
        let (cloud, emu) = crate::localrun::stop(&StateDir::new(&env.state_dir));
        crate::localrun::forget(env);
        if cloud {
            rep.info("stopped the local cloud and every process it ran");
        }
        emu
    } else {
        false
    };
    if emulator_stopped {
        rep.info("stopped the local emulator");
    }
    StateDir::new(&env.state_dir).remove(ARTIFACTS_FILE);
    let report = DownReport {
        environment: env.name.clone(),
        account,
        region: c.region.clone(),
        stacks_deleted,
        billable_left: billable.len(),
        monthly_usd_left: monthly,
        removed,
        left: left.clone(),
        prices_as_of: audit::PRICES_AS_OF,
        emulator_stopped,
        seconds: started.elapsed().as_secs_f64(),
    };
    emit(format, &report, || {
        if report.left.is_empty() {
            "Nothing is left: every service was checked and holds nothing of this environment.\n"
                .to_string()
        } else {
            let rows = report
                .left
                .iter()
                .map(|f| {
                    vec![
                        f.service.to_string(),
                        f.kind.to_string(),
                        f.id.clone(),
                        f.state.clone(),
                        if f.billable {
                            format!("{:.2}", f.monthly_usd)
                        } else {
                            "-".into()
                        },
                        f.note.clone(),
                    ]
                })
                .collect::<Vec<_>>();
            format!(
                "Left after teardown (prices as of {}, rough USD per month):\n{}",
                audit::PRICES_AS_OF,
                table(
                    &["SERVICE", "KIND", "ID", "STATE", "USD/MONTH", "NOTE"],
                    &rows
                )
            )
        }
    });
    if !billable.is_empty() {
        bail!(
            "{} billable resource(s) are left (about {:.2} USD per month, listed above); remove them by hand or run `deployer down` again",
            billable.len(),
            monthly
        );
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- status

#[derive(Debug, Serialize)]
struct StatusReport {
    environment: String,
    /// The URLs that answer: the local gateway's on a local environment (as `up` prints them),
    /// the stack's outputs on AWS.
    api_url: Option<String>,
    web_url: Option<String>,
    /// Locally: the outputs that name AWS-shaped URLs (the emulator's `ApiUrl`, `WebUrl`),
    /// which do not resolve, each with what to use instead.
    unreachable_outputs: std::collections::BTreeMap<String, String>,
    account: String,
    region: String,
    stacks: Vec<StackStatus>,
    functions: Vec<FunctionStatus>,
    endpoint: EndpointStatus,
}

#[derive(Debug, Serialize)]
struct StackStatus {
    stack: String,
    status: String,
    outputs: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct FunctionStatus {
    name: String,
    function: String,
    deployed_sha256: Option<String>,
    recorded_sha256: Option<String>,
    in_sync: bool,
}

#[derive(Debug, Serialize)]
struct EndpointStatus {
    name: String,
    status: String,
    config: Option<String>,
    failure_reason: Option<String>,
}

async fn status_cmd(env: &Environment, format: Format, rep: &Reporter) -> Result<ExitCode> {
    let (c, account) = connect(env, rep).await?;
    announce(env, &c, &account, rep);
    let mut stacks = Vec::new();
    for kind in STACKS {
        let name = kind.stack_name(env);
        let status = match stack::current(&c.cfn, &name).await? {
            stack::Current::Missing => "NOT_DEPLOYED".to_string(),
            stack::Current::Status(s) => s,
        };
        let outputs = if status == "NOT_DEPLOYED" {
            Default::default()
        } else {
            stack::outputs(&c.cfn, &name).await?.into_iter().collect()
        };
        stacks.push(StackStatus {
            stack: name,
            status,
            outputs,
        });
    }
    let recorded: ArtifactManifest = StateDir::new(&env.state_dir)
        .read_json(ARTIFACTS_FILE)?
        .unwrap_or_default();
    let mut functions = Vec::new();
    for spec in package::discover(&env.root)? {
        let fname = format!("{}-{}", env.prefix(), spec.name);
        let deployed = c
            .lambda
            .get_function()
            .function_name(&fname)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.configuration()
                    .and_then(|cfg| cfg.code_sha256().map(str::to_string))
            })
            .and_then(|b64| package::b64_to_hex(&b64));
        let rec = recorded
            .functions
            .get(&spec.name)
            .map(|a| a.sha256_hex.clone());
        functions.push(FunctionStatus {
            name: spec.name.clone(),
            function: fname,
            in_sync: deployed.is_some() && deployed == rec,
            deployed_sha256: deployed,
            recorded_sha256: rec,
        });
    }
    let endpoint = match c
        .sagemaker
        .describe_endpoint()
        .endpoint_name(&env.endpoint.name)
        .send()
        .await
    {
        Ok(d) => EndpointStatus {
            name: env.endpoint.name.clone(),
            status: d
                .endpoint_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            config: d.endpoint_config_name().map(str::to_string),
            failure_reason: d.failure_reason().map(str::to_string),
        },
        Err(_) => EndpointStatus {
            name: env.endpoint.name.clone(),
            status: "none (created by the pipeline when a model is accepted)".into(),
            config: None,
            failure_reason: None,
        },
    };
    let all_outputs: std::collections::BTreeMap<String, String> = stacks
        .iter()
        .flat_map(|s| s.outputs.iter().map(|(k, v)| (k.clone(), v.clone())))
        .collect();
    let (api_url, web_url) = urls(env, &all_outputs);
    let unreachable_outputs = unreachable_outputs(env, &all_outputs);
    let report = StatusReport {
        environment: env.name.clone(),
        api_url,
        web_url,
        unreachable_outputs,
        account,
        region: c.region.clone(),
        stacks,
        functions,
        endpoint,
    };
    emit(format, &report, || {
        let mut s = table(
            &["STACK", "STATUS"],
            &report
                .stacks
                .iter()
                .map(|s| vec![s.stack.clone(), s.status.clone()])
                .collect::<Vec<_>>(),
        );
        let mut outputs: Vec<Vec<String>> = Vec::new();
        if let Some(u) = &report.web_url {
            outputs.push(vec!["web URL".into(), u.clone()]);
        }
        if let Some(u) = &report.api_url {
            outputs.push(vec!["API URL".into(), u.clone()]);
        }
        outputs.extend(report.stacks.iter().flat_map(|s| {
            s.outputs
                .iter()
                .map(|(k, v)| vec![k.clone(), output_cell(&report.unreachable_outputs, k, v)])
        }));
        if !outputs.is_empty() {
            s.push('\n');
            s.push_str(&table(&["OUTPUT", "VALUE"], &outputs));
        }
        s.push('\n');
        s.push_str(&table(
            &["FUNCTION", "DEPLOYED SHA-256", "MATCHES LAST UP"],
            &report
                .functions
                .iter()
                .map(|f| {
                    vec![
                        f.function.clone(),
                        f.deployed_sha256
                            .clone()
                            .unwrap_or_else(|| "not deployed".into()),
                        if f.in_sync { "yes".into() } else { "no".into() },
                    ]
                })
                .collect::<Vec<_>>(),
        ));
        s.push('\n');
        s.push_str(&table(
            &["ENDPOINT", "STATUS"],
            &[vec![
                report.endpoint.name.clone(),
                report.endpoint.status.clone(),
            ]],
        ));
        s
    });
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- local

#[derive(Debug, Serialize)]
struct ProcStatus {
    running: bool,
    pid: Option<u32>,
    port: Option<u16>,
    endpoint: Option<String>,
    log: String,
}

#[derive(Debug, Serialize)]
struct LocalStatus {
    emulator: ProcStatus,
    localcloud: LocalCloudStatus,
    processes: Vec<serde_json::Value>,
    endpoints: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct LocalCloudStatus {
    #[serde(flatten)]
    proc: ProcStatus,
    api_port: Option<u16>,
    api_url: Option<String>,
    web_url: Option<String>,
}

fn local_get(port: u16, method: &str, path: &str) -> Result<serde_json::Value> {
    let (status, body) = crate::http::request(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        method,
        path,
        b"",
        std::time::Duration::from_secs(10),
    )
    .with_context(|| format!("failed to reach the local cloud on port {port}"))?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status >= 400 {
        let msg = v["error"]["message"].as_str().unwrap_or("request failed");
        let fix = v["error"]["fix"].as_str().unwrap_or("");
        bail!("{msg}; {fix}");
    }
    Ok(v)
}

fn local_cmd(env: &Environment, cmd: LocalCommand, format: Format) -> Result<ExitCode> {
    if env.target != Target::Local {
        bail!(
            "environment '{}' targets AWS; `deployer local` works on local environments only",
            env.name
        );
    }
    let state = StateDir::new(&env.state_dir);
    let not_running = || {
        anyhow::anyhow!(
            "the local cloud of environment '{}' is not running; start it with `deployer up`",
            env.name
        )
    };
    match cmd {
        LocalCommand::Status => {
            let e = emulator::running(&state);
            let c = crate::localrun::running(&state);
            let detail = c
                .as_ref()
                .and_then(|c| local_get(c.port, "GET", "/_localcloud/status").ok());
            let s = LocalStatus {
                emulator: ProcStatus {
                    running: e.is_some(),
                    pid: e.as_ref().map(|e| e.pid),
                    port: e.as_ref().map(|e| e.port),
                    endpoint: e.as_ref().map(|e| e.endpoint.clone()),
                    log: state.file("emulator.log").display().to_string(),
                },
                localcloud: LocalCloudStatus {
                    proc: ProcStatus {
                        running: c.is_some(),
                        pid: c.as_ref().map(|c| c.pid),
                        port: c.as_ref().map(|c| c.port),
                        endpoint: c.as_ref().map(|c| c.url.clone()),
                        log: state.file(crate::localrun::LOG_FILE).display().to_string(),
                    },
                    api_port: c.as_ref().map(|c| c.api_port),
                    api_url: c
                        .as_ref()
                        .map(|c| format!("{}/{}/api", c.api_base, env.api_stage)),
                    web_url: c
                        .as_ref()
                        .map(|c| format!("{}/{}/", c.api_base, env.api_stage)),
                },
                processes: detail
                    .as_ref()
                    .and_then(|d| d["processes"].as_array().cloned())
                    .unwrap_or_default(),
                endpoints: detail
                    .as_ref()
                    .and_then(|d| d["endpoints"].as_array().cloned())
                    .unwrap_or_default(),
            };
            emit(format, &s, || {
                let mut out = match &e {
                    Some(e) => format!("emulator     running: pid {}, {}\n", e.pid, e.endpoint),
                    None => "emulator     not running\n".into(),
                };
                match &c {
                    Some(c) => out.push_str(&format!(
                        "local cloud  running: pid {}, AWS endpoint {}, API {}/{}/api\n",
                        c.pid, c.url, c.api_base, env.api_stage
                    )),
                    None => out.push_str("local cloud  not running\n"),
                }
                let rows: Vec<Vec<String>> = s
                    .processes
                    .iter()
                    .map(|p| {
                        vec![
                            p["pid"].to_string(),
                            p["kind"].as_str().unwrap_or_default().to_string(),
                            p["name"].as_str().unwrap_or_default().to_string(),
                            p["started"].as_str().unwrap_or_default().to_string(),
                        ]
                    })
                    .collect();
                if !rows.is_empty() {
                    out.push('\n');
                    out.push_str(&table(&["PID", "KIND", "NAME", "STARTED"], &rows));
                }
                out
            });
        }
        LocalCommand::Logs => {
            for (title, file) in [
                ("local cloud", state.file(crate::localrun::LOG_FILE)),
                ("emulator", state.file("emulator.log")),
            ] {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                println!("==> {title}: {} <==", file.display());
                print!("{text}");
            }
            let logs = env.state_dir.join("logs");
            if logs.is_dir() {
                eprintln!(
                    "function, training and endpoint logs: {}/{{lambda,training,endpoint}}/",
                    logs.display()
                );
            }
        }
        LocalCommand::Stop => {
            let (cloud, emu) = crate::localrun::stop(&state);
            eprintln!(
                "{}",
                match (cloud, emu) {
                    (false, false) => "the local cloud and the emulator were not running".to_string(),
                    _ => "stopped the local cloud and the emulator; `deployer up` brings them back with their state".to_string(),
                }
            );
        }
        LocalCommand::Mail => {
            let c = crate::localrun::running(&state);
            let mail: Vec<serde_json::Value> = match &c {
                Some(c) => local_get(c.port, "GET", "/_localcloud/mail")?
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                // Stopped: the outbox file is still there.
                None => std::fs::read_to_string(env.state_dir.join("localcloud/outbox.jsonl"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect(),
            };
            emit(format, &mail, || {
                if mail.is_empty() {
                    return "no mail yet\n".to_string();
                }
                let mut out = String::new();
                for m in &mail {
                    let to: Vec<&str> = m["recipients"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "--- {}  to: {}\nSubject: {}\n\n{}\n\n",
                        m["time"].as_str().unwrap_or_default(),
                        if to.is_empty() {
                            "(no email subscribers)".to_string()
                        } else {
                            to.join(", ")
                        },
                        m["subject"].as_str().unwrap_or_default(),
                        m["body"].as_str().unwrap_or_default().trim_end()
                    ));
                }
                out
            });
        }
        LocalCommand::Fire { rule } => {
            let c = crate::localrun::running(&state).ok_or_else(not_running)?;
            let full = if rule.starts_with(&format!("{}-", env.prefix())) {
                rule
            } else {
                format!("{}-{rule}", env.prefix())
            };
            let v = local_get(c.port, "POST", &format!("/_localcloud/fire/{full}"))?;
            emit(format, &v, || {
                format!(
                    "fired {full}: {} target(s) invoked\n",
                    v["targets"].as_u64().unwrap_or(0)
                )
            });
        }
        LocalCommand::Serve { .. } => bail!("`deployer local serve` is started by `deployer up`"),
    }
    Ok(ExitCode::SUCCESS)
}
