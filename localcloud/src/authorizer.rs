//! The local gateway's Cognito user-pool authorizer: what API Gateway does before a method with
//! `COGNITO_USER_POOLS` authorization reaches its function. The `Authorization` header must hold
//! an ID token (RS256 JWT) signed by a key in the pool's published key set
//! (`/<pool>/.well-known/jwks.json`, served by the emulator's Cognito), issued by that pool
//! (`iss`), for one of its current app clients (`aud`), and not expired. Anything else is
//! refused with 401 before the function runs. The verified claims reach the function under
//! `requestContext.authorizer.claims`, every value a string as API Gateway passes them
//! (lists, such as `cognito:groups`, comma-separated).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Map, Value};

use crate::cloud::Cloud;

/// How long a pool's key set and client list are trusted before being read again. Short: a
/// removed app client must stop working soon, as on AWS. A stale entry still answers while a
/// background task reads the new one, so the emulator's reads stay off the request path.
const KEYS_TTL: Duration = Duration::from_secs(30);

/// The body of the 401 the gateway answers, the same as the stack's `UNAUTHORIZED` gateway
/// response (`stacks/app.yaml.hbs`, a render test compares them).
pub const UNAUTHORIZED_BODY: &str = r#"{"error":{"code":"unauthorized","message":"no valid sign-in token: the Authorization header is missing, expired or not issued by this deployment's user pool","fix":"sign in to the web app, or send the ID token of a user from `deployer users add` in the Authorization header"}}"#;

/// Why a token was refused (kept in the local cloud's log; the caller only sees 401, as on AWS).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no Authorization header")]
    Missing,
    #[error("not a JWT: {0}")]
    Malformed(String),
    #[error("signature does not verify with any key of the pool")]
    BadSignature,
    #[error("issued by {got}, not {want}")]
    WrongIssuer { got: String, want: String },
    #[error("audience {0} is not an app client of the pool")]
    WrongAudience(String),
    #[error("token_use {0} is not an ID token")]
    NotIdToken(String),
    #[error("expired at {0}")]
    Expired(i64),
    #[error("the pool's keys could not be read: {0}")]
    NoKeys(String),
}

/// One RSA public key of a pool's key set.
#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: String,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

/// What a pool accepts: its issuer, keys and app client ids.
#[derive(Debug, Clone)]
pub struct PoolKeys {
    pub issuer: String,
    pub keys: Vec<Jwk>,
    pub clients: Vec<String>,
}

/// Per-pool cache of [`PoolKeys`].
#[derive(Debug, Default)]
pub struct Authorizers {
    cache: Mutex<HashMap<String, (Instant, PoolKeys)>>,
    /// Pools whose entry a background task is reading now.
    refreshing: Mutex<std::collections::HashSet<String>>,
}

fn b64url(s: &str) -> Result<Vec<u8>, Refused> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| Refused::Malformed(format!("bad base64url ({e})")))
}

/// Parses a JWKS document into its RSA keys.
pub fn parse_jwks(doc: &Value) -> Vec<Jwk> {
    doc["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter(|k| k["kty"] == "RSA")
                .filter_map(|k| {
                    Some(Jwk {
                        kid: k["kid"].as_str()?.to_string(),
                        n: b64url(k["n"].as_str()?).ok()?,
                        e: b64url(k["e"].as_str()?).ok()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Verifies a raw ID token against a pool; returns its claims.
pub fn verify(token: &str, pool: &PoolKeys, now_s: i64) -> Result<Map<String, Value>, Refused> {
    let token = token.trim();
    if token.is_empty() {
        return Err(Refused::Missing);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts.as_slice() else {
        return Err(Refused::Malformed(format!(
            "{} dot-separated parts, not 3",
            parts.len()
        )));
    };
    let header: Value = serde_json::from_slice(&b64url(h)?)
        .map_err(|e| Refused::Malformed(format!("header is not JSON ({e})")))?;
    if header["alg"] != "RS256" {
        return Err(Refused::Malformed(format!(
            "algorithm {} is not RS256",
            header["alg"]
        )));
    }
    let sig = b64url(s)?;
    let signed = format!("{h}.{p}");
    let kid = header["kid"].as_str().unwrap_or_default();
    let ok = pool.keys.iter().filter(|k| k.kid == kid).any(|k| {
        aws_lc_rs::signature::RsaPublicKeyComponents {
            n: &k.n[..],
            e: &k.e[..],
        }
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &sig,
        )
        .is_ok()
    });
    if !ok {
        return Err(Refused::BadSignature);
    }
    let claims: Map<String, Value> = serde_json::from_slice(&b64url(p)?)
        .map_err(|e| Refused::Malformed(format!("payload is not a JSON object ({e})")))?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if iss != pool.issuer {
        return Err(Refused::WrongIssuer {
            got: iss.to_string(),
            want: pool.issuer.clone(),
        });
    }
    let token_use = claims
        .get("token_use")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if token_use != "id" {
        // A method without OAuth scopes takes ID tokens only, as on AWS.
        return Err(Refused::NotIdToken(token_use.to_string()));
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !pool.clients.iter().any(|c| c == aud) {
        return Err(Refused::WrongAudience(aud.to_string()));
    }
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= now_s {
        return Err(Refused::Expired(exp));
    }
    Ok(claims)
}

/// Claims as API Gateway hands them to a proxy integration: every value a string.
pub fn claims_as_strings(claims: &Map<String, Value>) -> Map<String, Value> {
    claims
        .iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Array(items) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| i.to_string())
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k.clone(), Value::String(s))
        })
        .collect()
}

/// `arn:aws:cognito-idp:<region>:<account>:userpool/<id>` → (region, id).
pub fn pool_of_arn(arn: &str) -> Option<(String, String)> {
    let mut parts = arn.split(':');
    let (_, _, service, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if service != "cognito-idp" {
        return None;
    }
    let id = arn.rsplit("userpool/").next()?;
    Some((region.to_string(), id.to_string()))
}

/// Checks a request's `Authorization` header against the pools an authorizer names; returns
/// the verified claims.
pub async fn authorize(
    cloud: &std::sync::Arc<Cloud>,
    provider_arns: &[String],
    header: Option<&str>,
) -> Result<Map<String, Value>, Refused> {
    let token = header.ok_or(Refused::Missing)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut last = Refused::NoKeys("the authorizer names no user pool".into());
    for arn in provider_arns {
        let Some((region, id)) = pool_of_arn(arn) else {
            continue;
        };
        let keys = match pool_keys(cloud, &region, &id).await {
            Ok(k) => k,
            Err(e) => {
                last = Refused::NoKeys(e);
                continue;
            }
        };
        match verify(token, &keys, now) {
            Ok(c) => return Ok(claims_as_strings(&c)),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn pool_keys(
    cloud: &std::sync::Arc<Cloud>,
    region: &str,
    id: &str,
) -> Result<PoolKeys, String> {
    if let Some((at, k)) = cloud
        .authorizers
        .cache
        .lock()
        .ok()
        .and_then(|c| c.get(id).cloned())
    {
        if at.elapsed() >= KEYS_TTL {
            let first = cloud
                .authorizers
                .refreshing
                .lock()
                .map(|mut r| r.insert(id.to_string()))
                .unwrap_or(false);
            if first {
                let (cloud, region, id) = (cloud.clone(), region.to_string(), id.to_string());
                // Detached: the refresh outlives the request that noticed the stale entry.
                drop(tokio::spawn(async move {
                    if let Err(e) = read_pool_keys(&cloud, &region, &id).await {
                        // Forget the old keys: the next request reads them itself and is
                        // refused if the pool is gone.
                        tracing::warn!(pool = %id, error = %e, "cannot refresh the pool's keys");
                        if let Ok(mut c) = cloud.authorizers.cache.lock() {
                            c.remove(&id);
                        }
                    }
                    if let Ok(mut r) = cloud.authorizers.refreshing.lock() {
                        r.remove(&id);
                    }
                }));
            }
        }
        return Ok(k);
    }
    read_pool_keys(cloud, region, id).await
}

/// Reads a pool's key set and app clients from the emulator into the cache.
async fn read_pool_keys(cloud: &Cloud, region: &str, id: &str) -> Result<PoolKeys, String> {
    let host = format!("cognito-idp.{region}.amazonaws.com");
    let jwks = cloud
        .http
        .simple(
            &cloud.cfg.moto_url,
            hyper::Method::GET,
            &format!("/{id}/.well-known/jwks.json"),
            &[("host", host.as_str())],
            bytes::Bytes::new(),
        )
        .await?;
    if !jwks.status.is_success() {
        return Err(format!("the key set answered {}", jwks.status));
    }
    let doc: Value = serde_json::from_slice(&jwks.body).map_err(|e| e.to_string())?;
    let body = serde_json::json!({ "UserPoolId": id, "MaxResults": 60 }).to_string();
    let listed = cloud
        .http
        .simple(
            &cloud.cfg.moto_url,
            hyper::Method::POST,
            "/",
            &[
                ("content-type", "application/x-amz-json-1.1"),
                (
                    "x-amz-target",
                    "AWSCognitoIdentityProviderService.ListUserPoolClients",
                ),
            ],
            body.into(),
        )
        .await?;
    if !listed.status.is_success() {
        return Err(format!(
            "listing the pool's app clients answered {}",
            listed.status
        ));
    }
    let clients: Value = serde_json::from_slice(&listed.body).map_err(|e| e.to_string())?;
    let keys = PoolKeys {
        issuer: format!("https://{host}/{id}"),
        keys: parse_jwks(&doc),
        clients: clients["UserPoolClients"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["ClientId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
    };
    if let Ok(mut c) = cloud.authorizers.cache.lock() {
        c.insert(id.to_string(), (Instant::now(), keys.clone()));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};

    const ISS: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool";

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A fresh signing key and the pool that publishes its public half.
    fn key_and_pool() -> (KeyPair, PoolKeys) {
        let kp = KeyPair::generate(KeySize::Rsa2048).expect("generate an RSA key");
        let (n, e) = pkcs1_components(kp.public_key().as_ref());
        let pool = PoolKeys {
            issuer: ISS.into(),
            keys: vec![Jwk {
                kid: "k1".into(),
                n,
                e,
            }],
            clients: vec!["client-1".into()],
        };
        (kp, pool)
    }

    /// n and e from a PKCS#1 RSAPublicKey (SEQUENCE { INTEGER n, INTEGER e }), as a JWKS
    /// publishes them (big-endian, no leading zero).
    fn pkcs1_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
        fn read(d: &[u8]) -> (u8, &[u8], &[u8]) {
            let tag = d[0];
            let (len, at) = if d[1] & 0x80 == 0 {
                (d[1] as usize, 2)
            } else {
                let k = (d[1] & 0x7f) as usize;
                (
                    d[2..2 + k].iter().fold(0usize, |a, b| a << 8 | *b as usize),
                    2 + k,
                )
            };
            (tag, &d[at..at + len], &d[at + len..])
        }
        let (seq, body, _) = read(der);
        assert_eq!(seq, 0x30);
        let (_, n, rest) = read(body);
        let (_, e, _) = read(rest);
        let strip = |v: &[u8]| {
            v.iter()
                .skip_while(|b| **b == 0)
                .copied()
                .collect::<Vec<u8>>()
        };
        (strip(n), strip(e))
    }

    fn sign(kp: &KeyPair, kid: &str, claims: &Value) -> String {
        let h = b64(serde_json::json!({ "alg": "RS256", "kid": kid })
            .to_string()
            .as_bytes());
        let p = b64(claims.to_string().as_bytes());
        let msg = format!("{h}.{p}");
        let mut sig = vec![0u8; kp.public_modulus_len()];
        kp.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            msg.as_bytes(),
            &mut sig,
        )
        .expect("sign");
        format!("{msg}.{}", b64(&sig))
    }

    fn claims(over: Value) -> Value {
        let mut c = serde_json::json!({
            "iss": ISS, "aud": "client-1", "token_use": "id", "exp": 2_000,
            "email": "ana@example.com", "cognito:groups": ["approvers"],
        });
        if let (Some(c), Some(o)) = (c.as_object_mut(), over.as_object()) {
            for (k, v) in o {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    }

    #[test]
    fn a_valid_id_token_passes_with_its_claims() {
        let (kp, pool) = key_and_pool();
        let t = sign(&kp, "k1", &claims(serde_json::json!({})));
        let c = verify(&t, &pool, 1_000).expect("valid token");
        assert_eq!(c["email"], "ana@example.com");
    }

    #[test]
    fn expired_wrong_issuer_wrong_audience_and_access_tokens_are_refused() {
        let (kp, pool) = key_and_pool();
        let t = |over| sign(&kp, "k1", &claims(over));
        assert_eq!(
            verify(&t(serde_json::json!({})), &pool, 2_000),
            Err(Refused::Expired(2_000))
        );
        assert!(matches!(
            verify(
                &t(
                    serde_json::json!({ "iss": "https://cognito-idp.us-east-1.amazonaws.com/other" })
                ),
                &pool,
                1_000
            ),
            Err(Refused::WrongIssuer { .. })
        ));
        assert_eq!(
            verify(
                &t(serde_json::json!({ "aud": "someone-else" })),
                &pool,
                1_000
            ),
            Err(Refused::WrongAudience("someone-else".into()))
        );
        assert_eq!(
            verify(
                &t(serde_json::json!({ "token_use": "access" })),
                &pool,
                1_000
            ),
            Err(Refused::NotIdToken("access".into()))
        );
    }

    #[test]
    fn tampered_tokens_and_unknown_keys_are_refused() {
        let (kp, pool) = key_and_pool();
        let good = sign(&kp, "k1", &claims(serde_json::json!({})));
        // The payload changed after signing: promote oneself.
        let parts: Vec<&str> = good.split('.').collect();
        let forged = b64(
            claims(serde_json::json!({ "email": "mallory@example.com" }))
                .to_string()
                .as_bytes(),
        );
        let tampered = format!("{}.{}.{}", parts[0], forged, parts[2]);
        assert_eq!(verify(&tampered, &pool, 1_000), Err(Refused::BadSignature));
        // Signed by another key, or naming a key the pool does not publish.
        let (other, _) = key_and_pool();
        let foreign = sign(&other, "k1", &claims(serde_json::json!({})));
        assert_eq!(verify(&foreign, &pool, 1_000), Err(Refused::BadSignature));
        let unknown_kid = sign(&kp, "k2", &claims(serde_json::json!({})));
        assert_eq!(
            verify(&unknown_kid, &pool, 1_000),
            Err(Refused::BadSignature)
        );
    }

    #[test]
    fn pool_arns_name_region_and_id() {
        assert_eq!(
            pool_of_arn("arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_abc"),
            Some(("eu-west-1".into(), "eu-west-1_abc".into()))
        );
        assert_eq!(pool_of_arn("arn:aws:s3:::bucket"), None);
    }

    #[test]
    fn claims_become_strings_and_lists_comma_separated() {
        let c: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "email": "a@example.com", "exp": 1700000000, "cognito:groups": ["approvers", "x"]
        }))
        .unwrap_or_default();
        let s = claims_as_strings(&c);
        assert_eq!(s["email"], "a@example.com");
        assert_eq!(s["exp"], "1700000000");
        assert_eq!(s["cognito:groups"], "approvers,x");
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_key_is_used() {
        let pool = PoolKeys {
            issuer: "https://cognito-idp.us-east-1.amazonaws.com/p".into(),
            keys: vec![],
            clients: vec!["c".into()],
        };
        assert_eq!(verify("", &pool, 0), Err(Refused::Missing));
        assert!(matches!(
            verify("abc", &pool, 0),
            Err(Refused::Malformed(_))
        ));
        assert!(matches!(
            verify("Bearer a.b.c", &pool, 0),
            Err(Refused::Malformed(_))
        ));
        // alg none is never accepted.
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"iss":"x"}"#);
        assert!(matches!(
            verify(&format!("{h}.{p}."), &pool, 0),
            Err(Refused::Malformed(_))
        ));
    }
}
