//! Finding and loading labelled images: class folders `O`/`R` or `organic`/`recyclable` (any
//! case), directly in a directory or under the Kaggle `TRAIN/` + `TEST/` layout. Images are
//! decoded once (in parallel), resized to the model input and kept as RGB8; unreadable files are
//! skipped with a warning and counted. A SHA-256 fingerprint over labels, relative paths and file
//! contents identifies the data set a model was trained on, and a `SYNTHETIC.json` marker labels
//! it as synthetic.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::imageio;
use crate::rng::Rng;
use crate::synth::MARKER;

pub const CLASS_NAMES: [&str; 2] = ["Organic", "Recyclable"];

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("failed to read directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no class folders in {0}: expected O/ and R/ (or organic/ and recyclable/, any case), directly or under TRAIN/ and TEST/")]
    NoClasses(String),
    #[error("class {class} has no readable images in {path} ({skipped} unreadable files skipped); add JPEG or PNG files there")]
    EmptyClass {
        class: &'static str,
        path: String,
        skipped: usize,
    },
}

/// Label of a class folder name, if it is one.
pub fn class_of(name: &str) -> Option<usize> {
    match name.to_ascii_lowercase().as_str() {
        "o" | "organic" => Some(0),
        "r" | "recyclable" => Some(1),
        _ => None,
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    out.sort();
    Ok(out)
}

fn find_subdir(dir: &Path, name: &str) -> Option<PathBuf> {
    read_dir_sorted(dir).ok()?.into_iter().find(|p| {
        p.is_dir()
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// Class folders directly inside `dir` (label, path).
pub fn class_dirs(dir: &Path) -> Result<Vec<(usize, PathBuf)>, DataError> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let label = class_of(p.file_name()?.to_str()?)?;
            Some((label, p))
        })
        .collect())
}

/// Where a directory's labelled images are: its own class folders, or Kaggle `TRAIN`/`TEST`.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The directory holding the class folders to train (or evaluate) on.
    pub main: PathBuf,
    /// Kaggle `TEST/`, when `main` is `TRAIN/`.
    pub kaggle_test: Option<PathBuf>,
}

pub fn resolve(dir: &Path) -> Result<Resolved, DataError> {
    if !class_dirs(dir)?.is_empty() {
        return Ok(Resolved {
            main: dir.to_path_buf(),
            kaggle_test: None,
        });
    }
    let train = find_subdir(dir, "TRAIN").filter(|d| class_dirs(d).is_ok_and(|c| !c.is_empty()));
    let test = find_subdir(dir, "TEST").filter(|d| class_dirs(d).is_ok_and(|c| !c.is_empty()));
    match (train, test) {
        (Some(main), kaggle_test) => Ok(Resolved { main, kaggle_test }),
        (None, Some(main)) => Ok(Resolved {
            main,
            kaggle_test: None,
        }),
        (None, None) => Err(DataError::NoClasses(dir.display().to_string())),
    }
}

/// One decoded, resized image.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub rgb: Vec<u8>,
    pub label: usize,
    /// The same image at the pretrained backbone's input size (empty unless asked for).
    pub teacher: Vec<u8>,
}

/// Counts recorded in the fingerprint and metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SetStats {
    pub images: usize,
    pub organic: usize,
    pub recyclable: usize,
    pub skipped: usize,
}

#[derive(Debug)]
pub struct LoadedSet {
    pub samples: Vec<Sample>,
    pub stats: SetStats,
    /// SHA-256 over (label, relative path, content hash) of every loaded file.
    pub fingerprint: String,
    pub synthetic: bool,
    pub root: PathBuf,
}

/// True when `dir` or its parent carries the synthetic-data marker.
pub fn is_synthetic(dir: &Path) -> bool {
    dir.join(MARKER).is_file() || dir.parent().is_some_and(|p| p.join(MARKER).is_file())
}

/// Decodes every file in the class folders of `root` to `size`×`size` RGB8, on `threads` threads.
pub fn load(root: &Path, size: usize, threads: usize) -> Result<LoadedSet, DataError> {
    load_sized(root, size, None, threads)
}

/// [`load`], also resizing each image to `teacher`×`teacher` (from the same decode) when asked.
pub fn load_sized(
    root: &Path,
    size: usize,
    teacher: Option<usize>,
    threads: usize,
) -> Result<LoadedSet, DataError> {
    let classes = class_dirs(root)?;
    if classes.is_empty() {
        return Err(DataError::NoClasses(root.display().to_string()));
    }
    let mut files: Vec<(usize, PathBuf)> = Vec::new();
    for (label, dir) in &classes {
        for p in read_dir_sorted(dir)? {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_none_or(|n| n.starts_with('.'));
            if p.is_file() && !hidden {
                files.push((*label, p));
            }
        }
    }
    type Decoded = (usize, PathBuf, Result<(Vec<u8>, Vec<u8>, [u8; 32]), String>);
    let decode_one = |(label, path): &(usize, PathBuf)| -> Decoded {
        let res = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let hash: [u8; 32] = Sha256::digest(&bytes).into();
                let need = teacher.map_or(size, |t| t.max(size));
                let img = imageio::decode_for(&bytes, need).map_err(|e| e.to_string())?;
                let big = teacher.map_or_else(Vec::new, |t| imageio::resize_square(&img, t));
                Ok((imageio::resize_square(&img, size), big, hash))
            });
        (*label, path.clone(), res)
    };
    let threads = threads.clamp(1, 64);
    let chunk = files.len().div_ceil(threads).max(1);
    let decoded: Vec<Decoded> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(decode_one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut hasher = Sha256::new();
    let mut samples = Vec::with_capacity(decoded.len());
    let mut stats = SetStats::default();
    for (label, path, res) in decoded {
        match res {
            Ok((rgb, teacher, hash)) => {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                hasher.update(format!(
                    "{label}\t{}\t{}\n",
                    rel.display(),
                    hex::encode(hash)
                ));
                if label == 0 {
                    stats.organic += 1;
                } else {
                    stats.recyclable += 1;
                }
                samples.push(Sample {
                    rgb,
                    label,
                    teacher,
                });
            }
            Err(reason) => {
                stats.skipped += 1;
                eprintln!(
                    "warning: skipping unreadable image {}: {reason}",
                    path.display()
                );
            }
        }
    }
    stats.images = samples.len();
    if stats.skipped > 0 {
        eprintln!(
            "warning: skipped {} unreadable files under {}",
            stats.skipped,
            root.display()
        );
    }
    for (label, class) in CLASS_NAMES.iter().enumerate() {
        if !samples.iter().any(|s| s.label == label) {
            return Err(DataError::EmptyClass {
                class,
                path: root.display().to_string(),
                skipped: stats.skipped,
            });
        }
    }
    Ok(LoadedSet {
        samples,
        stats,
        fingerprint: hex::encode(hasher.finalize()),
        synthetic: is_synthetic(root),
        root: root.to_path_buf(),
    })
}

/// Stratified, seeded split: returns (train, validation) with about `fraction` of each class in
/// validation (at least one image of a class that has two or more).
pub fn stratified_split(
    samples: Vec<Sample>,
    fraction: f32,
    seed: u64,
) -> (Vec<Sample>, Vec<Sample>) {
    let mut rng = Rng::new(seed ^ 0x5EED_5B11_7000_0001);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for label in 0..CLASS_NAMES.len() {
        let mut class: Vec<Sample> = samples
            .iter()
            .filter(|s| s.label == label)
            .cloned()
            .collect();
        rng.shuffle(&mut class);
        let n = class.len();
        let mut k = (n as f32 * fraction).round() as usize;
        if n >= 2 {
            k = k.clamp(1, n - 1);
        } else {
            k = 0;
        }
        val.extend(class.drain(..k));
        train.extend(class);
    }
    (train, val)
}

pub fn stats_of(samples: &[Sample]) -> SetStats {
    let organic = samples.iter().filter(|s| s.label == 0).count();
    SetStats {
        images: samples.len(),
        organic,
        recyclable: samples.len() - organic,
        skipped: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_folder_names_are_case_insensitive() {
        for (name, want) in [("O", Some(0)), ("organic", Some(0)), ("ORGANIC", Some(0))] {
            assert_eq!(class_of(name), want);
        }
        for (name, want) in [("r", Some(1)), ("Recyclable", Some(1)), ("glass", None)] {
            assert_eq!(class_of(name), want);
        }
    }

    #[test]
    fn split_is_stratified_seeded_and_keeps_every_sample() {
        let samples: Vec<Sample> = (0..100)
            .map(|i| Sample {
                rgb: vec![i as u8],
                label: usize::from(i >= 56),
                ..Sample::default()
            })
            .collect();
        let (train, val) = stratified_split(samples.clone(), 0.25, 7);
        assert_eq!(train.len() + val.len(), 100);
        assert_eq!(stats_of(&val).organic, 14); // 25% of 56
        assert_eq!(stats_of(&val).recyclable, 11); // 25% of 44, rounded
        let (_, again) = stratified_split(samples.clone(), 0.25, 7);
        assert_eq!(
            val.iter().map(|s| s.rgb[0]).collect::<Vec<_>>(),
            again.iter().map(|s| s.rgb[0]).collect::<Vec<_>>()
        );
        let (_, other) = stratified_split(samples, 0.25, 8);
        assert_ne!(
            val.iter().map(|s| s.rgb[0]).collect::<Vec<_>>(),
            other.iter().map(|s| s.rgb[0]).collect::<Vec<_>>()
        );
    }

    #[test]
    fn kaggle_layout_resolves_to_train_with_test_aside() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["TRAIN/O", "TRAIN/R", "TEST/O", "TEST/R"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let r = resolve(dir.path()).unwrap();
        assert!(r.main.ends_with("TRAIN"));
        assert!(r.kaggle_test.unwrap().ends_with("TEST"));
        let empty = tempfile::tempdir().unwrap();
        let err = resolve(empty.path()).unwrap_err().to_string();
        assert!(err.contains("expected O/ and R/"), "{err}");
    }
}
