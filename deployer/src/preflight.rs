//! The checks an `aws` environment must pass before the deployer changes anything: the region
//! is set (never guessed), credentials resolve through the standard chain (profiles, SSO,
//! credential_process, variables), the account is identified and shown, the SageMaker
//! serverless settings are within AWS's limits, and the static model image can be built (the
//! Rust standard library for its musl target is installed). `deployer preflight` prints them
//! all; `up` runs them first and stops at the first failure, naming its fix.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Environment, SERVERLESS_MEMORY_MB};

/// One check's outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// What was found (the value, or what is wrong).
    pub detail: String,
    /// How to fix it, when it failed.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The serverless endpoint's settings against SageMaker's limits (memory from the allowed
/// list, concurrency 1..200). Values come validated from deployer.toml; this also guards
/// settings made in code.
pub fn serverless_limits(env: &Environment) -> Check {
    let e = &env.endpoint;
    if !SERVERLESS_MEMORY_MB.contains(&e.memory_mb) {
        return Check::fail(
            "serverless settings",
            format!(
                "endpoint memory {} MB is not a size SageMaker serverless offers",
                e.memory_mb
            ),
            format!("set endpoint_memory_mb to one of {SERVERLESS_MEMORY_MB:?} in deployer.toml"),
        );
    }
    if !(1..=200).contains(&e.max_concurrency) {
        return Check::fail(
            "serverless settings",
            format!(
                "endpoint max concurrency {} is outside 1..200",
                e.max_concurrency
            ),
            "set endpoint_max_concurrency between 1 and 200 in deployer.toml",
        );
    }
    Check::pass(
        "serverless settings",
        format!("{} MB, max concurrency {}", e.memory_mb, e.max_concurrency),
    )
}

/// Where the region comes from, in the order the SDK looks (the deployer's own setting,
/// the variables, the profile in the AWS config file); a failure when nothing names one.
pub async fn region_source(env: &Environment, get: &dyn Fn(&str) -> Option<String>) -> Check {
    if let Some(r) = &env.region {
        return Check::pass(
            "region",
            format!("{r} (deployer.toml, DEPLOYER_REGION or --region)"),
        );
    }
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(r) = get(var).filter(|r| !r.is_empty()) {
            return Check::pass("region", format!("{r} ({var})"));
        }
    }
    if let Some(r) = profile_region(env).await {
        let profile = env.profile.as_deref().unwrap_or("default");
        return Check::pass("region", format!("{r} (profile '{profile}')"));
    }
    Check::fail(
        "region",
        format!("no region for environment '{}'", env.name),
        format!(
            "set region in [environments.{}] of deployer.toml, DEPLOYER_REGION, --region or AWS_REGION; the deployer never guesses one",
            env.name
        ),
    )
}

/// The region the environment's profile (or the default one) sets in the AWS config files.
async fn profile_region(env: &Environment) -> Option<String> {
    use aws_config::meta::region::ProvideRegion;
    let mut b = aws_config::profile::ProfileFileRegionProvider::builder();
    if let Some(p) = &env.profile {
        b = b.profile_name(p);
    }
    b.build().region().await.map(|r| r.to_string())
}

/// Whether the Rust standard library for `target` is installed in `sysroot`.
pub fn target_installed(sysroot: &Path, target: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// The image's build target, checked in the active toolchain's sysroot.
pub fn image_target(root: &Path) -> Check {
    let target = crate::image::TARGET;
    let sysroot = std::process::Command::new("rustc")
        .current_dir(root)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match sysroot {
        None => Check::fail(
            "image build target",
            "rustc did not answer `--print sysroot`",
            "install the Rust toolchain (rustup) and run ./dev setup",
        ),
        Some(s) if target_installed(&s, target) => {
            Check::pass("image build target", format!("{target} installed"))
        }
        Some(_) => Check::fail(
            "image build target",
            format!("the Rust standard library for {target} is not installed"),
            format!("run `rustup target add {target}` (./dev setup does)"),
        ),
    }
}

/// Everything checkable without AWS, in order; the image's build target only when the
/// command builds the image.
pub async fn local_checks(
    env: &Environment,
    get: &dyn Fn(&str) -> Option<String>,
    builds_image: bool,
) -> Vec<Check> {
    let mut checks = vec![region_source(env, get).await, serverless_limits(env)];
    if builds_image {
        checks.push(image_target(&env.root));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Overrides};

    fn aws_env(extra: &str) -> Environment {
        let toml = format!("app = \"wastesort\"\n[environments.aws]\ntarget = \"aws\"\n{extra}");
        let o = Overrides {
            env: Some("aws".into()),
            ..Default::default()
        };
        config::resolve(&toml, Path::new("deployer.toml"), &o, &|_| None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_region_must_be_named_somewhere() {
        let env = aws_env("");
        let none = region_source(&env, &|_| None).await;
        assert!(!none.ok);
        assert!(none
            .fix
            .as_deref()
            .unwrap_or("")
            .contains("[environments.aws]"));
        let from_var =
            region_source(&env, &|k| (k == "AWS_REGION").then(|| "eu-west-1".into())).await;
        assert!(from_var.ok, "{from_var:?}");
        let env = aws_env("region = \"eu-central-1\"\n");
        assert!(region_source(&env, &|_| None)
            .await
            .detail
            .starts_with("eu-central-1"));
    }

    #[test]
    fn serverless_settings_outside_the_limits_are_named_with_the_fix() {
        let mut env = aws_env("region = \"eu-west-1\"\n");
        assert!(serverless_limits(&env).ok);
        env.endpoint.memory_mb = 1500;
        let c = serverless_limits(&env);
        assert!(!c.ok && c.detail.contains("1500"), "{c:?}");
        assert!(c.fix.as_deref().unwrap_or("").contains("1024"), "{c:?}");
        env.endpoint.memory_mb = 2048;
        env.endpoint.max_concurrency = 0;
        let c = serverless_limits(&env);
        assert!(
            !c.ok && c.fix.as_deref().unwrap_or("").contains("between 1 and 200"),
            "{c:?}"
        );
    }

    #[test]
    fn a_missing_musl_standard_library_is_found_and_its_fix_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert!(!target_installed(dir.path(), "x86_64-unknown-linux-musl"));
        std::fs::create_dir_all(dir.path().join("lib/rustlib/x86_64-unknown-linux-musl/lib"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(target_installed(dir.path(), "x86_64-unknown-linux-musl"));
    }
}
