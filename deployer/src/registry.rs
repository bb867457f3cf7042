//! Pushing the model image to a registry with `oci-client`: Amazon ECR (Basic auth from
//! `ecr:GetAuthorizationToken`), or any registry speaking the distribution API, such as a
//! plain-HTTP one on loopback for tests. Blobs the registry already holds are not sent again,
//! and an image whose manifest is already there is not pushed at all.
//!
//! ECR specifics handled here: blobs go up in one PUT (`use_monolithic_push`; ECR refuses
//! chunks under 5 MB), and the manifest is pushed to a tag, never to a digest reference (ECR
//! answers a manifest PUT without a `Location` header, which the crate resolves by stripping
//! the tag).

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;

use crate::image::{Image, MANIFEST_MEDIA_TYPE};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0:?} is not a repository reference; write HOST[:PORT]/NAME, e.g. 127.0.0.1:5000/waste-model or 123456789012.dkr.ecr.eu-west-1.amazonaws.com/wastesort-aws-model")]
    BadTarget(String),
    #[error("plain HTTP is only allowed to a loopback registry (127.0.0.1, [::1], localhost), not {0}; use HTTPS")]
    InsecureRemote(String),
    #[error("the registry client could not be set up: {0}")]
    Client(String),
    #[error("failed to {what} at {registry}: {reason}")]
    Registry {
        what: String,
        registry: String,
        reason: String,
    },
    #[error("the ECR authorization token could not be read: {0}; check ecr:GetAuthorizationToken permission")]
    EcrToken(String),
}

/// Where to push: registry host (with port) and repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub registry: String,
    pub repository: String,
}

impl Target {
    /// `HOST[:PORT]/NAME[/NAME...]` (no tag or digest; the push names those).
    pub fn parse(s: &str) -> Result<Target, RegistryError> {
        let bad = || RegistryError::BadTarget(s.to_string());
        let s = s
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        let (registry, repository) = s.split_once('/').ok_or_else(bad)?;
        let host_like = registry.contains('.') || registry.contains(':') || registry == "localhost";
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            });
        if !host_like || !repo_ok || repository.contains('@') {
            return Err(bad());
        }
        Ok(Target {
            registry: registry.to_string(),
            repository: repository.to_string(),
        })
    }

    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]")
    }

    /// `registry/repository@digest`, how the pipeline names the image.
    pub fn by_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub reference: String,
    pub digest: String,
    pub tag: String,
    /// Blobs sent (0 when the registry had them all).
    pub blobs_uploaded: usize,
    /// Bytes sent: the blobs and the manifest.
    pub bytes_uploaded: usize,
    /// Whether the manifest was pushed (false: the image was there already).
    pub manifest_pushed: bool,
    pub seconds: f64,
}

/// The tag an image is pushed under: its digest's first 12 hex digits (tags are immutable in
/// the stack's repository, and this one can only ever name this image).
pub fn tag_for(digest: &str) -> String {
    format!(
        "sha256-{}",
        &digest.trim_start_matches("sha256:")[..12.min(digest.len().saturating_sub(7))]
    )
}

fn client(target: &Target, plain_http: bool) -> Result<Client, RegistryError> {
    if plain_http && !target.is_loopback() {
        return Err(RegistryError::InsecureRemote(target.registry.clone()));
    }
    let protocol = if plain_http {
        ClientProtocol::HttpsExcept(vec![target.registry.clone()])
    } else {
        ClientProtocol::Https
    };
    Client::try_from(ClientConfig {
        protocol,
        use_monolithic_push: true,
        ..Default::default()
    })
    .map_err(|e| RegistryError::Client(e.to_string()))
}

/// Pushes `image` to `target`, skipping what is there.
pub async fn push(
    image: &Image,
    target: &Target,
    auth: &RegistryAuth,
    plain_http: bool,
) -> Result<Pushed, RegistryError> {
    let started = std::time::Instant::now();
    let c = client(target, plain_http)?;
    let err = |what: &str| {
        let registry = target.registry.clone();
        let what = what.to_string();
        move |e: oci_client::errors::OciDistributionError| RegistryError::Registry {
            what,
            registry,
            reason: e.to_string(),
        }
    };
    let tag = tag_for(image.digest());
    let by_tag = Reference::with_tag(
        target.registry.clone(),
        target.repository.clone(),
        tag.clone(),
    );
    let by_digest = Reference::with_digest(
        target.registry.clone(),
        target.repository.clone(),
        image.digest().to_string(),
    );
    // Authenticates for pull and push (the blob and manifest calls below reuse it).
    c.auth(&by_tag, auth, oci_client::RegistryOperation::Push)
        .await
        .map_err(err("sign in to the registry"))?;
    let reference = target.by_digest(image.digest());
    if c.pull_manifest_raw(&by_digest, auth, &[MANIFEST_MEDIA_TYPE])
        .await
        .is_ok()
    {
        return Ok(Pushed {
            reference,
            digest: image.digest().to_string(),
            tag,
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            manifest_pushed: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    let mut blobs_uploaded = 0;
    let mut bytes_uploaded = 0;
    // Layer and config before the manifest: a registry checks that what it names exists.
    for blob in [&image.layer, &image.config] {
        if c.blob_exists(&by_tag, &blob.digest)
            .await
            .map_err(err("check a blob"))?
        {
            continue;
        }
        c.push_blob(&by_tag, Bytes::from(blob.bytes.clone()), &blob.digest)
            .await
            .map_err(err("upload a blob"))?;
        blobs_uploaded += 1;
        bytes_uploaded += blob.bytes.len();
    }
    c.push_manifest_raw(
        &by_tag,
        Bytes::from(image.manifest.bytes.clone()),
        http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
    )
    .await
    .map_err(err("push the manifest"))?;
    Ok(Pushed {
        reference,
        digest: image.digest().to_string(),
        tag,
        blobs_uploaded,
        bytes_uploaded: bytes_uploaded + image.manifest.bytes.len(),
        manifest_pushed: true,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Whether `target` holds the image (its manifest by digest).
pub async fn has_image(
    target: &Target,
    digest: &str,
    auth: &RegistryAuth,
    plain_http: bool,
) -> Result<bool, RegistryError> {
    let c = client(target, plain_http)?;
    let r = Reference::with_digest(
        target.registry.clone(),
        target.repository.clone(),
        digest.to_string(),
    );
    Ok(c.pull_manifest_raw(&r, auth, &[MANIFEST_MEDIA_TYPE])
        .await
        .is_ok())
}

/// ECR's registry and Basic credentials from `GetAuthorizationToken` (base64 of
/// `AWS:<password>`, valid 12 hours).
pub async fn ecr_auth(ecr: &aws_sdk_ecr::Client) -> Result<(String, RegistryAuth), RegistryError> {
    let out = ecr
        .get_authorization_token()
        .send()
        .await
        .map_err(|e| RegistryError::EcrToken(crate::aws::describe_err(&e)))?;
    ecr_auth_from(out.authorization_data())
}

/// [`ecr_auth`]'s decoding, separate so recorded responses can test it.
pub fn ecr_auth_from(
    data: &[aws_sdk_ecr::types::AuthorizationData],
) -> Result<(String, RegistryAuth), RegistryError> {
    use base64::Engine;
    let d = data
        .first()
        .ok_or_else(|| RegistryError::EcrToken("no authorizationData in the answer".into()))?;
    let token = d
        .authorization_token()
        .ok_or_else(|| RegistryError::EcrToken("no authorizationToken".into()))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|e| RegistryError::EcrToken(format!("the token is not base64 ({e})")))?;
    let text = String::from_utf8(raw)
        .map_err(|_| RegistryError::EcrToken("the token is not text".into()))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| RegistryError::EcrToken("the token is not USER:PASSWORD".into()))?;
    let registry = d
        .proxy_endpoint()
        .ok_or_else(|| RegistryError::EcrToken("no proxyEndpoint".into()))?
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    Ok((
        registry,
        RegistryAuth::Basic(user.to_string(), password.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_host_and_a_repository() {
        let t = Target::parse("127.0.0.1:5000/waste-model").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.registry, "127.0.0.1:5000");
        assert!(t.is_loopback());
        let e = Target::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com/wastesort-aws-model")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!e.is_loopback());
        assert_eq!(
            e.by_digest("sha256:ab"),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/wastesort-aws-model@sha256:ab"
        );
        for bad in [
            "waste-model",
            "ubuntu/waste",
            "127.0.0.1:5000/",
            "127.0.0.1:5000/Waste",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let t = Target::parse("registry.example.com/x").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            client(&t, true),
            Err(RegistryError::InsecureRemote(_))
        ));
    }

    #[test]
    fn tags_come_from_the_digest() {
        assert_eq!(
            tag_for("sha256:0123456789abcdef0123"),
            "sha256-0123456789ab"
        );
    }

    /// A GetAuthorizationToken answer as ECR sends it (shape from the ECR API reference; the
    /// emulator's token is a fixed string, so the decoding is tested here).
    #[test]
    fn ecr_tokens_decode_to_basic_credentials_for_the_proxy_endpoint() {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:eyJwYXlsb2FkIjoi");
        let d = aws_sdk_ecr::types::AuthorizationData::builder()
            .authorization_token(token)
            .proxy_endpoint("https://123456789012.dkr.ecr.eu-west-1.amazonaws.com")
            .build();
        let (registry, auth) = ecr_auth_from(&[d]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(registry, "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        assert!(matches!(auth, RegistryAuth::Basic(u, p) if u == "AWS" && p == "eyJwYXlsb2FkIjoi"));
        assert!(ecr_auth_from(&[]).is_err());
        let garbage = aws_sdk_ecr::types::AuthorizationData::builder()
            .authorization_token("%%%")
            .proxy_endpoint("https://x")
            .build();
        assert!(matches!(
            ecr_auth_from(&[garbage]),
            Err(RegistryError::EcrToken(m)) if m.contains("base64")
        ));
    }
}
