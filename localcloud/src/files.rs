//! The local cloud's own state files (SageMaker records, pending SNS subscriptions, buckets'
//! EventBridge settings, the run file): written atomically, so a crash leaves the old file or
//! the new one and never half of one; read strictly, so a corrupt one stops the start with its
//! name and the fix instead of being silently read as empty (which would forget every
//! endpoint and model).

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` through a temporary file beside it (named by this process),
/// flushed to disk and renamed over the old file, then flushes the directory. On failure (a
/// full disk) the old file is untouched and the temporary one removed.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // Linux can fsync a directory opened read-only; elsewhere this may fail harmlessly.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A JSON state file: its default when missing, an error naming the file and the fix when it
/// cannot be read or parsed.
pub fn load_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    holds: &str,
) -> Result<T, crate::Error> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| crate::Error::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
            holds: holds.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(crate::Error::Io {
            what: format!("read {}", path.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomically(&p, b"{\"a\":1}").unwrap();
        write_atomically(&p, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":2}");
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the file itself remains");
    }

    #[test]
    fn a_missing_file_is_the_default_and_a_corrupt_one_an_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sagemaker.json");
        let v: std::collections::BTreeMap<String, u32> = load_json(&p, "x").unwrap();
        assert!(v.is_empty());
        std::fs::write(&p, b"{\"endpoints\": {").unwrap();
        let e = load_json::<std::collections::BTreeMap<String, u32>>(&p, "SageMaker's records")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sagemaker.json") && e.contains("is corrupt"),
            "{e}"
        );
        assert!(e.contains("move it away"), "{e}");
    }
}
