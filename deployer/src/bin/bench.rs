//! `./dev bench`: wall-time benchmarks of the deployer on the local default, side by side with
//! the AWS CLI's own `aws cloudformation deploy` of the same rendered template against the same
//! emulator (pinned awscli in the project venv).
//!
//! Measures: the first `up` (cold emulator, stacks created), the no-op `up` (median and p99 of
//! N runs), the AWS CLI's no-op deploy of the app template (same N), `render`, and `down`.
//! Prints a table, or JSON with `--output json`. Runs in its own state directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args
        .windows(2)
        .any(|w| w[0] == "--output" && w[1] == "json");
    let runs: usize = args
        .windows(2)
        .find(|w| w[0] == "--runs")
        .map(|w| w[1].parse())
        .transpose()
        .context("failed to parse --runs")?
        .unwrap_or(5);
    let exe = std::env::current_exe()?;
    let deployer = exe.with_file_name("deployer");
    if !deployer.exists() {
        bail!(
            "{} is missing; build it first: cargo build -p deployer",
            deployer.display()
        );
    }
    let root = find_root()?;
    let state = tempfile::tempdir()?;
    let run = |args: &[&str]| -> Result<f64> {
        let t = Instant::now();
        let out = Command::new(&deployer)
            .current_dir(&root)
            .env("DEPLOYER_STATE_DIR", state.path())
            .args(args)
            .output()
            .with_context(|| format!("failed to run deployer {args:?}"))?;
        if !out.status.success() {
            bail!(
                "deployer {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let first_up = run(&["up", "--yes"])?;
    let mut noop = Vec::new();
    for _ in 0..runs {
        noop.push(run(&["up", "--yes"])?);
    }
    let render_dir = state.path().join("rendered");
    let render = run(&[
        "render",
        "--no-build",
        "--out",
        &render_dir.display().to_string(),
    ])?;

    // The AWS CLI against the same emulator, same template, same stack.
    let port = std::fs::read_to_string(state.path().join("local/emulator.port"))?;
    let endpoint = format!("http://127.0.0.1:{}", port.trim());
    let aws = root.join(".venv/bin/aws");
    let mut cli = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(&aws)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .args([
                "--endpoint-url",
                &endpoint,
                "cloudformation",
                "deploy",
                "--stack-name",
                "wastesort-local-app",
            ])
            .args([
                "--capabilities",
                "CAPABILITY_NAMED_IAM",
                "--no-fail-on-empty-changeset",
                "--template-file",
            ])
            .arg(render_dir.join("app.yaml"))
            .output()
            .context("failed to run the AWS CLI (./dev setup installs it)")?;
        if !out.status.success() {
            bail!(
                "aws cloudformation deploy failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cli.push(t.elapsed().as_secs_f64());
    }
    let down = run(&["down", "--yes"])?;

    let (m, p) = (median(&noop), p99(&noop));
    let (cm, cp) = (median(&cli), p99(&cli));
    if json {
        println!(
            "{}",
            serde_json::json!({
                "runs": runs,
                "first_up_s": first_up,
                "noop_up_median_s": m, "noop_up_p99_s": p, "noop_up_s": noop,
                "aws_cli_deploy_median_s": cm, "aws_cli_deploy_p99_s": cp, "aws_cli_deploy_s": cli,
                "render_s": render,
                "down_s": down,
            })
        );
    } else {
        println!("benchmark                               median     p99        runs");
        println!("deployer up (no-op)                     {m:>7.3} s  {p:>7.3} s  {runs}");
        println!("aws cloudformation deploy (no-op)       {cm:>7.3} s  {cp:>7.3} s  {runs}");
        println!("deployer up (first, cold emulator)      {first_up:>7.3} s");
        println!("deployer render                         {render:>7.3} s");
        println!("deployer down (with audit)              {down:>7.3} s");
    }
    Ok(())
}

fn find_root() -> Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    deployer::config::find_config(&cwd)
        .map(|p| p.parent().map(Path::to_path_buf).unwrap_or(cwd))
        .context("failed to find the project root")
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

/// Nearest-rank p99 (with few runs, the slowest).
fn p99(v: &[f64]) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((0.99 * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}
