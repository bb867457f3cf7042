//! The ECR sign-in of `deployer up`/`image push` against a recorded GetAuthorizationToken
//! answer. The local emulator's token is a fixed string for a registry that does not exist, so
//! the call and its decoding into registry credentials are tested here with the response shape
//! of the ECR API reference (JSON 1.1, `authorizationData[].authorizationToken` = base64 of
//! `AWS:<password>`, `proxyEndpoint`), and the push itself against a real registry in
//! `tests/image.rs`.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use aws_sdk_ecr::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::test_util::infallible_client_fn;
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use deployer::registry::{ecr_auth, RegistryError};
use oci_client::secrets::RegistryAuth;

/// An ECR client whose every call is answered with `status` and `body`; records the targets.
fn ecr(status: u16, body: &'static str) -> (aws_sdk_ecr::Client, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let http = infallible_client_fn(move |req: http::Request<SdkBody>| {
        let target = req
            .headers()
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        log.lock().unwrap().push(target);
        let mut resp = http::Response::new(SdkBody::from(body));
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        resp.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/x-amz-json-1.1"),
        );
        resp
    });
    let conf = aws_sdk_ecr::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("a", "b", None, None, "t"))
        .http_client(http)
        .build();
    (aws_sdk_ecr::Client::from_conf(conf), seen)
}

#[tokio::test]
async fn the_token_becomes_basic_credentials_for_the_accounts_registry() {
    let token = base64::engine::general_purpose::STANDARD.encode("AWS:eyJwYXlsb2FkIjoiZm9vIn0=");
    let body: &'static str = Box::leak(
        format!(
            r#"{{"authorizationData":[{{"authorizationToken":"{token}","expiresAt":1.7955e9,"proxyEndpoint":"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"}}]}}"#
        )
        .into_boxed_str(),
    );
    let (client, seen) = ecr(200, body);
    let (registry, auth) = ecr_auth(&client).await.unwrap();
    assert_eq!(registry, "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    match auth {
        RegistryAuth::Basic(user, password) => {
            assert_eq!(user, "AWS");
            assert_eq!(password, "eyJwYXlsb2FkIjoiZm9vIn0=");
        }
        other => panic!("expected Basic credentials, got {other:?}"),
    }
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"]
    );
}

#[tokio::test]
async fn a_refused_token_names_the_permission() {
    let (client, _) = ecr(
        400,
        r#"{"__type":"AccessDeniedException","message":"User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:GetAuthorizationToken"}"#,
    );
    let err = ecr_auth(&client).await.unwrap_err();
    assert!(matches!(err, RegistryError::EcrToken(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("ecr:GetAuthorizationToken"), "{msg}");
}
