//! The model image's flows: `deployer image build|push|inspect`, and what `up` does with the
//! image on an `aws` environment (build it before rendering, so the stack names it by digest;
//! push it to the stack's ECR repository after the artifacts stack exists, skipping an image
//! the repository already holds). The image is kept as an OCI layout in `<state>/image/`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use oci_client::secrets::RegistryAuth;
use serde::Serialize;

use crate::aws::Clients;
use crate::config::{Environment, Target as EnvTarget};
use crate::image::{self, Image, Layout};
use crate::output::{emit, table, Format, Reporter};
use crate::registry::{self, Pushed, Target};

pub fn layout(env: &Environment) -> Layout {
    Layout::new(env.state_dir.join("image"))
}

/// The stack's repository: `<app>-<env>-model`.
pub fn repository(env: &Environment) -> String {
    format!("{}-model", env.prefix())
}

/// How the stack names an ECR image by digest (CloudFormation fills in account and region).
pub fn ecr_image_for_stack(env: &Environment, digest: &str) -> String {
    format!(
        "${{AWS::AccountId}}.dkr.ecr.${{AWS::Region}}.${{AWS::URLSuffix}}/{}@{digest}",
        repository(env)
    )
}

#[derive(Debug, Clone, Serialize)]
pub struct Built {
    pub digest: String,
    pub layout: PathBuf,
    pub binary: PathBuf,
    pub binary_bytes: usize,
    pub binary_sha256: String,
    pub layer_bytes: usize,
    pub image_bytes: usize,
    pub seconds: f64,
}

/// Builds the static binary and writes its image (the same binary gives the same digest).
pub fn build(env: &Environment) -> Result<(Image, Built)> {
    let started = Instant::now();
    let binary =
        image::build_binary(&env.root).context("failed to build the model's static binary")?;
    let bytes = std::fs::read(&binary)
        .with_context(|| format!("failed to read the built binary {}", binary.display()))?;
    let img = image::assemble(&bytes, env!("CARGO_PKG_VERSION"));
    let l = layout(env);
    l.write(&img, &registry::tag_for(img.digest()))
        .context("failed to write the image layout")?;
    let built = Built {
        digest: img.digest().to_string(),
        layout: l.dir.clone(),
        binary,
        binary_bytes: bytes.len(),
        binary_sha256: img.binary_sha256.clone(),
        layer_bytes: img.layer.bytes.len(),
        image_bytes: img.size(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((img, built))
}

/// Whether rendering `env` builds the model image: an `aws` environment whose training image
/// deployer.toml does not set.
pub fn builds_image(env: &Environment) -> bool {
    env.target == EnvTarget::Aws && env.training_image.is_empty()
}

/// `up` on an `aws` environment whose training image is not set in deployer.toml: the built
/// image, named by digest in the stack's repository.
pub fn for_up(env: &Environment, rep: &Reporter) -> Result<Environment> {
    let mut env = env.clone();
    if builds_image(&env) {
        let (_, b) = build(&env)?;
        rep.info(&format!(
            "model image {} ({} bytes, {:.1} s)",
            b.digest, b.image_bytes, b.seconds
        ));
        env.training_image = ecr_image_for_stack(&env, &b.digest);
    }
    Ok(env)
}

/// The ECR repository of `env` and credentials for it.
async fn ecr_target(env: &Environment, c: &Clients) -> Result<(Target, RegistryAuth)> {
    let (registry, auth) = registry::ecr_auth(&c.ecr).await?;
    Ok((
        Target {
            registry,
            repository: repository(env),
        },
        auth,
    ))
}

/// `up`'s push: the built image to the stack's repository (nothing when it is there).
pub async fn push_for_up(env: &Environment, c: &Clients, rep: &Reporter) -> Result<Option<Pushed>> {
    // Only the image `for_up` built and rendered: an image deployer.toml names is the user's.
    let Some((_, digest)) = env.training_image.rsplit_once('@') else {
        return Ok(None);
    };
    if env.target != EnvTarget::Aws || env.training_image != ecr_image_for_stack(env, digest) {
        return Ok(None);
    }
    let img = layout(env).read()?;
    if img.digest() != digest {
        bail!(
            "the model image in {} is {}, not the {digest} the stack names; run `deployer up` again",
            layout(env).dir.display(),
            img.digest()
        );
    }
    let (target, auth) = ecr_target(env, c).await?;
    let p = registry::push(&img, &target, &auth, false)
        .await
        .with_context(|| format!("failed to push the model image to {}", target.repository))?;
    if p.manifest_pushed {
        rep.info(&format!(
            "pushed the model image {} ({} blobs, {} bytes, {:.1} s)",
            p.reference, p.blobs_uploaded, p.bytes_uploaded, p.seconds
        ));
    } else {
        rep.info(&format!(
            "the model image {} is in ECR already",
            p.reference
        ));
    }
    Ok(Some(p))
}

fn built_text(b: &Built) -> String {
    table(
        &["IMAGE", "VALUE"],
        &[
            vec!["digest".into(), b.digest.clone()],
            vec!["layout".into(), b.layout.display().to_string()],
            vec![
                "binary".into(),
                format!("{} ({} bytes)", b.binary.display(), b.binary_bytes),
            ],
            vec!["binary sha256".into(), b.binary_sha256.clone()],
            vec!["layer (gzip)".into(), format!("{} bytes", b.layer_bytes)],
            vec!["build".into(), format!("{:.1} s", b.seconds)],
        ],
    )
}

/// `deployer image build`.
pub fn build_cmd(env: &Environment, format: Format) -> Result<ExitCode> {
    let (_, b) = build(env)?;
    emit(format, &b, || built_text(&b));
    Ok(ExitCode::SUCCESS)
}

/// `deployer image push [--to HOST/NAME] [--plain-http]`.
pub async fn push_cmd(
    env: &Environment,
    to: Option<String>,
    plain_http: bool,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let img = layout(env).read()?;
    let (target, auth) = match to {
        Some(t) => (Target::parse(&t)?, RegistryAuth::Anonymous),
        None if env.target == EnvTarget::Aws => {
            let (c, _) = crate::commands::connect(env, rep).await?;
            ecr_target(env, &c).await?
        }
        None => bail!(
            "environment {} runs the model binary in the local cloud, which has no registry; name one with --to HOST[:PORT]/NAME (add --plain-http for a loopback registry without TLS)",
            env.name
        ),
    };
    let p = registry::push(&img, &target, &auth, plain_http)
        .await
        .with_context(|| {
            format!(
                "failed to push the model image to {}/{}",
                target.registry, target.repository
            )
        })?;
    emit(format, &p, || {
        table(
            &["PUSH", "VALUE"],
            &[
                vec!["reference".into(), p.reference.clone()],
                vec!["tag".into(), p.tag.clone()],
                vec![
                    "uploaded".into(),
                    if p.manifest_pushed {
                        format!("{} blobs, {} bytes", p.blobs_uploaded, p.bytes_uploaded)
                    } else {
                        "nothing: the registry has this image".into()
                    },
                ],
                vec!["time".into(), format!("{:.2} s", p.seconds)],
            ],
        )
    });
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct Inspected {
    digest: String,
    layout: PathBuf,
    architecture: String,
    os: String,
    entrypoint: Vec<String>,
    exposed_ports: Vec<String>,
    layers: Vec<image::Descriptor>,
    diff_ids: Vec<String>,
    binary_sha256: String,
    /// With `--to`: whether that registry holds the image.
    in_registry: Option<bool>,
}

/// `deployer image inspect [--to HOST/NAME] [--plain-http]`.
pub async fn inspect_cmd(
    env: &Environment,
    to: Option<String>,
    plain_http: bool,
    format: Format,
) -> Result<ExitCode> {
    let l = layout(env);
    let img = l.read()?;
    let m: image::Manifest = serde_json::from_slice(&img.manifest.bytes)
        .context("failed to parse the image manifest")?;
    let c: serde_json::Value =
        serde_json::from_slice(&img.config.bytes).context("failed to parse the image config")?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let in_registry = match to {
        Some(t) => Some(
            registry::has_image(
                &Target::parse(&t)?,
                img.digest(),
                &RegistryAuth::Anonymous,
                plain_http,
            )
            .await?,
        ),
        None => None,
    };
    let out = Inspected {
        digest: img.digest().to_string(),
        layout: l.dir.clone(),
        architecture: c["architecture"].as_str().unwrap_or_default().to_string(),
        os: c["os"].as_str().unwrap_or_default().to_string(),
        entrypoint: strings(&c["config"]["Entrypoint"]),
        exposed_ports: c["config"]["ExposedPorts"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default(),
        layers: m.layers.clone(),
        diff_ids: strings(&c["rootfs"]["diff_ids"]),
        binary_sha256: img.binary_sha256.clone(),
        in_registry,
    };
    emit(format, &out, || {
        let mut rows = vec![
            vec!["digest".into(), out.digest.clone()],
            vec![
                "platform".into(),
                format!("{}/{}", out.os, out.architecture),
            ],
            vec!["entrypoint".into(), out.entrypoint.join(" ")],
            vec!["ports".into(), out.exposed_ports.join(", ")],
            vec!["binary sha256".into(), out.binary_sha256.clone()],
        ];
        for l in &out.layers {
            rows.push(vec![
                "layer".into(),
                format!("{} ({} bytes)", l.digest, l.size),
            ]);
        }
        if let Some(r) = out.in_registry {
            rows.push(vec![
                "in registry".into(),
                if r { "yes" } else { "no" }.into(),
            ]);
        }
        table(&["IMAGE", "VALUE"], &rows)
    });
    Ok(ExitCode::SUCCESS)
}
