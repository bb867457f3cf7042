//! The model's container image, made without Docker: `waste-model` built as a static Linux
//! x86_64 binary (musl), one gzip layer holding it at `/usr/local/bin/waste-model`, an image
//! config with the exec-form entrypoint SageMaker starts as `IMAGE train` / `IMAGE serve`
//! (port 8080), and a manifest. Everything is byte-for-byte deterministic (fixed timestamps,
//! owners and modes; no creation date), so the same binary always gives the same digest and an
//! unchanged image is never pushed again.
//!
//! The media types are Docker's v2 schema 2 ones, which every registry and every AWS service
//! that runs images reads; the files are written as an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), which skopeo, umoci and the pushing code read back.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Manifest, config and layer media types (Docker image manifest v2, schema 2).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Where the binary lives in the image, and so the entrypoint.
pub const BINARY_IN_IMAGE: &str = "usr/local/bin/waste-model";
/// The Rust target of the image's binary: static, so the image needs no base.
pub const TARGET: &str = "x86_64-unknown-linux-musl";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to run cargo to build the image's binary: {0}")]
    Cargo(std::io::Error),
    #[error("the static model binary did not build (cargo exit {code:?}){hint}")]
    Build { code: Option<i32>, hint: String },
    #[error("no image has been built in {0}; run `deployer image build` first")]
    NotBuilt(PathBuf),
    #[error("the image layout in {path} is damaged ({why}); run `deployer image build` again")]
    Damaged { path: PathBuf, why: String },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One content-addressed blob of the image.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha256_digest(&bytes),
            bytes,
        }
    }
}

/// A built image: its blobs and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Blob,
    /// The uncompressed layer's digest (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// SHA-256 of the binary inside.
    pub binary_sha256: String,
}

impl Image {
    /// The image's digest: the manifest's.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }
    pub fn size(&self) -> usize {
        self.config.bytes.len() + self.layer.bytes.len() + self.manifest.bytes.len()
    }
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

fn descriptor(b: &Blob) -> Descriptor {
    Descriptor {
        media_type: b.media_type.to_string(),
        size: b.bytes.len() as u64,
        digest: b.digest.clone(),
        annotations: None,
    }
}

/// The layer: the directories SageMaker's contract names and the binary, owned by root, all
/// timestamps 0, in a fixed order.
pub fn layer_tar(binary: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut entry = |path: &str, mode: u32, data: Option<&[u8]>| {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mode(mode);
        match data {
            Some(d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(d.len() as u64);
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
            }
        }
        // Writing into a Vec cannot fail; the path is ours and short.
        let _ = b.append_data(&mut h, path, data.unwrap_or(&[]));
    };
    for dir in [
        "opt/",
        "opt/ml/",
        "tmp/",
        "usr/",
        "usr/local/",
        "usr/local/bin/",
    ] {
        entry(dir, if dir == "tmp/" { 0o1777 } else { 0o755 }, None);
    }
    entry(BINARY_IN_IMAGE, 0o755, Some(binary));
    b.into_inner().unwrap_or_default()
}

/// gzip with no name and mtime 0: the same tar always compresses to the same bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    // Writes into a Vec: no I/O error is possible.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Assembles the image around a built binary. `revision` (e.g. the binary's crate version)
/// goes into a label.
pub fn assemble(binary: &[u8], revision: &str) -> Image {
    let tar = layer_tar(binary);
    let diff_id = sha256_digest(&tar);
    let layer = Blob::new(LAYER_MEDIA_TYPE, gzip(&tar));
    let binary_sha256 = hex::encode(Sha256::digest(binary));
    // serde_json writes struct fields in declaration order and maps sorted (BTreeMap), so the
    // config's bytes depend only on these values.
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": [format!("/{BINARY_IN_IMAGE}")],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "ExposedPorts": { "8080/tcp": {} },
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": "waste-model",
                "org.opencontainers.image.description": "Waste photo classifier: SageMaker training (IMAGE train) and inference (IMAGE serve) container",
                "org.opencontainers.image.revision": revision,
                "waste-model.binary.sha256": binary_sha256,
            },
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": "deployer image build: waste-model static binary" }],
    });
    let config = Blob::new(
        CONFIG_MEDIA_TYPE,
        serde_json::to_vec(&config).unwrap_or_default(),
    );
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        config: descriptor(&config),
        layers: vec![descriptor(&layer)],
    };
    let manifest = Blob::new(
        MANIFEST_MEDIA_TYPE,
        serde_json::to_vec(&manifest).unwrap_or_default(),
    );
    Image {
        config,
        layer,
        manifest,
        diff_id,
        binary_sha256,
    }
}

/// Builds the static binary with cargo (release, [`TARGET`]); answers its path.
pub fn build_binary(root: &Path) -> Result<PathBuf, ImageError> {
    use crate::localrun::{cargo_build_model, CargoBuildError};
    use crate::package::CargoBuildError as Cargo;
    cargo_build_model(root, &["--quiet", "--target", TARGET], true).map_err(|e| match e {
        CargoBuildError::Cargo(Cargo::Spawn(e)) => ImageError::Cargo(e),
        CargoBuildError::Cargo(Cargo::Failed { status, stderr }) => {
            let hint = if stderr.contains("target may not be installed")
                || stderr.contains("can't find crate for `std`")
            {
                format!(": the Rust standard library for {TARGET} is missing; run `rustup target add {TARGET}` (./dev setup does)")
            } else {
                format!(":\n{}", stderr.trim())
            };
            ImageError::Build {
                code: status.code(),
                hint,
            }
        }
        CargoBuildError::NoExecutable => ImageError::Build {
            code: Some(0),
            hint: ": cargo reported no waste-model executable".into(),
        },
    })
}

/// An OCI image layout directory holding one image.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Layout {
        Layout { dir: dir.into() }
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Writes the image (blobs, `oci-layout`, `index.json` naming it with `tag`).
    pub fn write(&self, image: &Image, tag: &str) -> Result<(), ImageError> {
        let blobs = self.dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(io("create", &blobs))?;
        for b in [&image.config, &image.layer, &image.manifest] {
            let p = self.blob_path(&b.digest);
            if !p.exists() {
                std::fs::write(&p, &b.bytes).map_err(io("write", &p))?;
            }
        }
        let layout = self.dir.join("oci-layout");
        std::fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io("write", &layout))?;
        let mut d = descriptor(&image.manifest);
        d.annotations = Some(
            [(
                "org.opencontainers.image.ref.name".to_string(),
                tag.to_string(),
            )]
            .into(),
        );
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": [d] });
        let path = self.dir.join("index.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&index).unwrap_or_default())
            .map_err(io("write", &path))
    }

    /// Reads back the image `index.json` names, checking every blob's digest.
    pub fn read(&self) -> Result<Image, ImageError> {
        let index_path = self.dir.join("index.json");
        let index = std::fs::read(&index_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::NotBuilt(self.dir.clone())
            } else {
                ImageError::Io {
                    what: "read",
                    path: index_path.clone(),
                    source: e,
                }
            }
        })?;
        let damaged = |why: String| ImageError::Damaged {
            path: self.dir.clone(),
            why,
        };
        let index: serde_json::Value =
            serde_json::from_slice(&index).map_err(|e| damaged(format!("index.json: {e}")))?;
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .ok_or_else(|| damaged("index.json names no manifest".into()))?
            .to_string();
        let load = |digest: &str, media_type: &'static str| -> Result<Blob, ImageError> {
            let p = self.blob_path(digest);
            let bytes = std::fs::read(&p).map_err(io("read", &p))?;
            if sha256_digest(&bytes) != digest {
                return Err(damaged(format!("blob {digest} does not match its digest")));
            }
            Ok(Blob {
                media_type,
                digest: digest.to_string(),
                bytes,
            })
        };
        let manifest = load(&digest, MANIFEST_MEDIA_TYPE)?;
        let m: Manifest = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| damaged(format!("manifest: {e}")))?;
        let config = load(&m.config.digest, CONFIG_MEDIA_TYPE)?;
        let layer_desc = m
            .layers
            .first()
            .ok_or_else(|| damaged("the manifest has no layer".into()))?;
        let layer = load(&layer_desc.digest, LAYER_MEDIA_TYPE)?;
        let c: serde_json::Value =
            serde_json::from_slice(&config.bytes).map_err(|e| damaged(format!("config: {e}")))?;
        Ok(Image {
            diff_id: c["rootfs"]["diff_ids"][0]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            binary_sha256: c["config"]["Labels"]["waste-model.binary.sha256"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            config,
            layer,
            manifest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_same_binary_gives_the_same_digest_and_another_a_different_one() {
        let a = assemble(b"\x7fELF binary one", "0.1.0");
        let b = assemble(b"\x7fELF binary one", "0.1.0");
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.layer.bytes, b.layer.bytes);
        let c = assemble(b"\x7fELF binary two", "0.1.0");
        assert_ne!(a.digest(), c.digest());
        assert_ne!(a.layer.digest, c.layer.digest);
    }

    #[test]
    fn the_layer_holds_the_binary_executable_owned_by_root_at_time_zero() {
        let img = assemble(b"#!binary", "0.1.0");
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&img.layer.bytes[..])
            .read_to_end(&mut tar_bytes)
            .unwrap_or_default();
        assert_eq!(sha256_digest(&tar_bytes), img.diff_id);
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut seen = Vec::new();
        for e in archive.entries().into_iter().flatten().flatten() {
            let h = e.header().clone();
            let path = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            assert_eq!(h.mtime().unwrap_or(1), 0, "{path}");
            assert_eq!(h.uid().unwrap_or(1), 0, "{path}");
            if path == BINARY_IN_IMAGE {
                assert_eq!(h.mode().unwrap_or(0) & 0o777, 0o755);
            }
            seen.push(path);
        }
        assert!(seen.contains(&BINARY_IN_IMAGE.to_string()), "{seen:?}");
        assert!(seen.contains(&"tmp/".to_string()), "{seen:?}");
    }

    #[test]
    fn config_and_manifest_say_what_sagemaker_needs() {
        let img = assemble(b"bin", "0.1.0");
        let c: serde_json::Value = serde_json::from_slice(&img.config.bytes).unwrap_or_default();
        assert_eq!(c["architecture"], "amd64");
        assert_eq!(c["os"], "linux");
        assert_eq!(
            c["config"]["Entrypoint"],
            serde_json::json!(["/usr/local/bin/waste-model"])
        );
        assert!(c["config"]["ExposedPorts"]["8080/tcp"].is_object());
        assert!(c.get("created").is_none(), "a creation time breaks digests");
        let m: Manifest =
            serde_json::from_slice(&img.manifest.bytes).unwrap_or_else(|e| panic!("manifest: {e}"));
        assert_eq!(m.media_type, MANIFEST_MEDIA_TYPE);
        assert_eq!(m.config.digest, img.config.digest);
        assert_eq!(m.layers[0].size, img.layer.bytes.len() as u64);
    }

    #[test]
    fn a_layout_reads_back_what_was_written_and_notices_damage() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let l = Layout::new(dir.path());
        assert!(matches!(l.read(), Err(ImageError::NotBuilt(_))));
        let img = assemble(b"bin", "0.1.0");
        l.write(&img, "latest").unwrap_or_else(|e| panic!("{e}"));
        let back = l.read().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.digest(), img.digest());
        assert_eq!(back.binary_sha256, img.binary_sha256);
        std::fs::write(l.blob_path(&img.layer.digest), b"tampered")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(l.read(), Err(ImageError::Damaged { .. })));
    }
}
