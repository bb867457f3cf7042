//! `deployer dataset push DIR`: uploads a local labelled image folder as a new data set under
//! `datasets/<timestamp>/{train,validation}/<O|R>/...` in the data bucket, images first (in
//! parallel, with a progress bar), then a `_READY` object holding the manifest. The pipeline's
//! EventBridge rule fires on `_READY` only, so one push starts one training run, never one per
//! image.
//!
//! Accepted layouts (class folder names are the trainer's: `O`/`R` or `organic`/`recyclable`,
//! any case): Kaggle's `TRAIN/` + `TEST/` (→ train + validation), `train/` + `validation/`, or a
//! folder of class folders alone (→ train). Anything else is refused before any upload, naming
//! what was found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::aws;
use crate::commands::{announce, connect};
use crate::config::Environment;
use crate::output::{emit, table, Format, Reporter};

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}; check the path")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} has no class folders (found: {found}); expected O/ and R/ (or organic/ and recyclable/), optionally inside TRAIN/ and TEST/")]
    NoClasses { path: String, found: String },
    #[error("{path} has unknown class folders: {unknown}; rename them to O/R or organic/recyclable (any case)")]
    UnknownClasses { path: String, unknown: String },
    #[error("{path} holds no images (found {other} other files); put .jpg, .jpeg or .png files in the class folders")]
    NoImages { path: String, other: usize },
}

/// One file to upload.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    pub channel: &'static str,
    pub class: &'static str,
    pub relative: String,
}

/// The scanned data set.
#[derive(Debug, Clone)]
pub struct Scan {
    pub items: Vec<Item>,
    pub skipped: usize,
}

/// Canonical class folder for a folder name, if it is one.
pub fn class_of(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "o" | "organic" => Some("O"),
        "r" | "recyclable" => Some("R"),
        _ => None,
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, DatasetError> {
    let rd = std::fs::read_dir(dir).map_err(|source| DatasetError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    let mut out: Vec<(String, PathBuf)> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    out.sort();
    Ok(out)
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DatasetError> {
    let rd = std::fs::read_dir(dir).map_err(|source| DatasetError::Read {
        path: dir.display().to_string(),
        source,
    })?;
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            files_under(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Scans `dir` into channels and classes; refuses anything it does not understand.
pub fn scan(dir: &Path) -> Result<Scan, DatasetError> {
    let top = subdirs(dir)?;
    let channel_of = |n: &str| match n.to_ascii_lowercase().as_str() {
        "train" => Some("train"),
        "test" | "validation" | "val" => Some("validation"),
        _ => None,
    };
    let channels: Vec<(&'static str, PathBuf)> = if top.iter().any(|(n, _)| channel_of(n).is_some())
    {
        let unknown: Vec<&str> = top
            .iter()
            .filter(|(n, _)| channel_of(n).is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(DatasetError::UnknownClasses {
                path: dir.display().to_string(),
                unknown: unknown.join(", "),
            });
        }
        top.iter()
            .filter_map(|(n, p)| channel_of(n).map(|c| (c, p.clone())))
            .collect()
    } else {
        vec![("train", dir.to_path_buf())]
    };
    let mut items = Vec::new();
    let mut skipped = 0;
    for (channel, cdir) in channels {
        let classes = subdirs(&cdir)?;
        if classes.is_empty() {
            let mut found = Vec::new();
            files_under(&cdir, &mut found)?;
            return Err(DatasetError::NoClasses {
                path: cdir.display().to_string(),
                found: format!("{} files, no folders", found.len()),
            });
        }
        let unknown: Vec<&str> = classes
            .iter()
            .filter(|(n, _)| class_of(n).is_none())
            .map(|(n, _)| n.as_str())
            .collect();
        if !unknown.is_empty() {
            return Err(DatasetError::UnknownClasses {
                path: cdir.display().to_string(),
                unknown: unknown.join(", "),
            });
        }
        for (name, cpath) in classes {
            let class = class_of(&name).unwrap_or("O");
            let mut files = Vec::new();
            files_under(&cpath, &mut files)?;
            files.sort();
            for f in files {
                if !is_image(&f) {
                    skipped += 1;
                    continue;
                }
                let rel = f
                    .strip_prefix(&cpath)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .to_string();
                items.push(Item {
                    path: f,
                    channel,
                    class,
                    relative: rel,
                });
            }
        }
    }
    items.sort_by(|a, b| (a.channel, a.class, &a.relative).cmp(&(b.channel, b.class, &b.relative)));
    if items.is_empty() {
        return Err(DatasetError::NoImages {
            path: dir.display().to_string(),
            other: skipped,
        });
    }
    Ok(Scan { items, skipped })
}

/// The `_READY` manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub dataset: String,
    pub created_at: String,
    /// channel → class → count
    pub counts: BTreeMap<String, BTreeMap<String, usize>>,
    pub images: usize,
    pub bytes: u64,
    /// SHA-256 over every image's channel, class, name and content.
    pub fingerprint: String,
    pub source: String,
}

/// `datasets/<UTC second>` that no data set uses yet: two pushes in one second (from two
/// machines, or one right after another) would otherwise write into one folder and mix their
/// images under one `_READY`. A second already taken waits for the next one.
async fn fresh_prefix(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<String> {
    for _ in 0..10 {
        let stamp = time::OffsetDateTime::now_utc()
            .format(&time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default();
        let prefix = format!("datasets/{stamp}");
        let taken = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(format!("{prefix}/"))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
            .with_context(|| format!("failed to list s3://{bucket}/{prefix}/"))?
            .key_count()
            .unwrap_or(0)
            > 0;
        if !taken {
            return Ok(prefix);
        }
        let into_second = time::OffsetDateTime::now_utc().millisecond();
        tokio::time::sleep(std::time::Duration::from_millis(
            1000 - u64::from(into_second) + 5,
        ))
        .await;
    }
    anyhow::bail!(
        "every data set name of the last 10 seconds is taken in s3://{bucket}/datasets/; try again"
    )
}

#[derive(Debug, Serialize)]
struct Report {
    bucket: String,
    prefix: String,
    manifest: Manifest,
    skipped_files: usize,
    seconds: f64,
}

/// Pushes a synthetic data set made by the model binary's `synth` (the binary `up` builds;
/// built here if `up` has not run yet).
pub async fn push_synthetic(
    env: &Environment,
    count: usize,
    seed: u64,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let state = crate::state::StateDir::new(&env.state_dir);
    let recorded: Option<crate::localrun::ModelImage> =
        state.read_json(crate::localrun::IMAGE_FILE)?;
    let image = match recorded {
        Some(i) if i.path.is_file() => i,
        _ => crate::localrun::build_model_image(env)?
            .context("this project has no model/ crate to make synthetic data with")?,
    };
    let dir = tempfile::tempdir().context("failed to create a temporary directory")?;
    let out = std::process::Command::new(&image.path)
        .args([
            "synth",
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("failed to run {}", image.path.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "failed to make a synthetic data set: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    rep.info(&format!("made {count} synthetic images (seed {seed})"));
    push(env, dir.path(), format, rep).await
}

pub async fn push(
    env: &Environment,
    dir: &Path,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    let started = Instant::now();
    // Everything is checked before anything is uploaded.
    let scan = scan(dir)?;
    if scan.skipped > 0 {
        rep.warn(&format!(
            "skipping {} files that are not .jpg, .jpeg or .png",
            scan.skipped
        ));
    }
    let (c, account) = connect(env, rep).await?;
    announce(env, &c, &account, rep);
    let bucket = crate::stack::outputs(&c.cfn, &env.app_stack())
        .await?
        .into_iter()
        .find(|(k, _)| k == "DataBucketName")
        .map(|(_, v)| v)
        .with_context(|| {
            format!(
                "stack {} is not deployed; run `deployer up` first",
                env.app_stack()
            )
        })?;
    let prefix = fresh_prefix(&c.s3, &bucket).await?;
    let now = time::OffsetDateTime::now_utc();

    let bar = indicatif::ProgressBar::new(scan.items.len() as u64);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} images {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for item in scan.items.iter().cloned() {
        let (s3, bucket, prefix, limit, bar) = (
            c.s3.clone(),
            bucket.clone(),
            prefix.clone(),
            limit.clone(),
            bar.clone(),
        );
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let bytes = tokio::fs::read(&item.path)
                .await
                .with_context(|| format!("failed to read {}", item.path.display()))?;
            let key = format!("{prefix}/{}/{}/{}", item.channel, item.class, item.relative);
            let digest = Sha256::digest(&bytes);
            s3.put_object()
                .bucket(&bucket)
                .key(&key)
                .body(bytes.clone().into())
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
                .with_context(|| format!("failed to upload {key}"))?;
            bar.inc(1);
            Ok::<_, anyhow::Error>((item, digest.to_vec(), bytes.len() as u64))
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        done.push(r.context("failed to join an upload task")??);
    }
    bar.finish_and_clear();
    done.sort_by(|a, b| {
        (a.0.channel, a.0.class, &a.0.relative).cmp(&(b.0.channel, b.0.class, &b.0.relative))
    });
    let mut h = Sha256::new();
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let mut bytes = 0;
    for (item, digest, size) in &done {
        h.update(format!("{}/{}/{}\0", item.channel, item.class, item.relative).as_bytes());
        h.update(digest);
        *counts
            .entry(item.channel.into())
            .or_default()
            .entry(item.class.into())
            .or_default() += 1;
        bytes += size;
    }
    let manifest = Manifest {
        dataset: prefix.clone(),
        created_at: now
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        counts,
        images: done.len(),
        bytes,
        fingerprint: hex::encode(h.finalize()),
        source: dir.display().to_string(),
    };
    // The marker goes last: the training rule fires on it, and by then every image is there.
    c.s3.put_object()
        .bucket(&bucket)
        .key(format!("{prefix}/_READY"))
        .content_type("application/json")
        .body(serde_json::to_vec_pretty(&manifest)?.into())
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(aws::describe_err(&e)))
        .context("failed to write the _READY manifest")?;
    let report = Report {
        bucket,
        prefix,
        skipped_files: scan.skipped,
        seconds: started.elapsed().as_secs_f64(),
        manifest,
    };
    rep.info(&format!(
        "pushed {} images ({} bytes) to s3://{}/{}/ in {:.1} s",
        report.manifest.images, report.manifest.bytes, report.bucket, report.prefix, report.seconds
    ));
    emit(format, &report, || {
        let rows: Vec<Vec<String>> = report
            .manifest
            .counts
            .iter()
            .flat_map(|(ch, classes)| {
                classes
                    .iter()
                    .map(move |(cl, n)| vec![ch.clone(), cl.clone(), n.to_string()])
            })
            .collect();
        format!(
            "dataset s3://{}/{}/ (fingerprint {})\n{}",
            report.bucket,
            report.prefix,
            &report.manifest.fingerprint[..12],
            table(&["CHANNEL", "CLASS", "IMAGES"], &rows)
        )
    });
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn kaggle_layout_maps_to_train_and_validation() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("TRAIN/O/a b.jpg"));
        touch(&d.path().join("TRAIN/R/c.PNG"));
        touch(&d.path().join("TEST/organic/d.jpeg"));
        touch(&d.path().join("TEST/R/notes.txt"));
        let s = scan(d.path()).unwrap();
        let got: Vec<(&str, &str, &str)> = s
            .items
            .iter()
            .map(|i| (i.channel, i.class, i.relative.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("train", "O", "a b.jpg"),
                ("train", "R", "c.PNG"),
                ("validation", "O", "d.jpeg")
            ]
        );
        assert_eq!(s.skipped, 1);
    }

    #[test]
    fn class_folders_alone_go_to_train() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("Recyclable/x.jpg"));
        touch(&d.path().join("ORGANIC/y.jpg"));
        let s = scan(d.path()).unwrap();
        assert!(s.items.iter().all(|i| i.channel == "train"));
        assert_eq!(s.items.len(), 2);
    }

    #[test]
    fn refusals_name_what_was_found() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("glass/x.jpg"));
        touch(&d.path().join("O/y.jpg"));
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("unknown class folders: glass"), "{e}");
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("O/readme.txt"));
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(e.contains("holds no images (found 1 other files)"), "{e}");
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("a.jpg"));
        let e = scan(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("has no class folders (found: 1 files, no folders)"),
            "{e}"
        );
    }
}
