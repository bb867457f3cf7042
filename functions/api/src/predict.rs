//! `POST /api/predict`: take an image (raw JPEG/PNG bytes, base64 when API Gateway says so, or
//! JSON `{ "image_base64" }`), check it really is one by its magic bytes (a header is only a
//! claim), store it under the user-uploads prefix, and ask the serving endpoint. Input is
//! checked before anything is stored or invoked, so a bad request changes nothing.

use aws_lambda_events::apigw::ApiGatewayProxyRequest;
use aws_sdk_sagemakerruntime::operation::invoke_endpoint::InvokeEndpointError;
use aws_sdk_sagemakerruntime::primitives::Blob;
use base64::Engine;
use serde_json::Value;

use crate::errors::ApiError;

/// API Gateway's payload limit is 10 MB; the model needs far less. Larger uploads are refused.
pub const MAX_IMAGE_BYTES: usize = 4 * 1024 * 1024;

/// The image formats the serving container reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
}

impl ImageKind {
    /// From the file's first bytes, whatever the request claimed.
    pub fn sniff(bytes: &[u8]) -> Option<ImageKind> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageKind::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageKind::Png)
        } else {
            None
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
        }
    }
}

fn unsupported(what: &str) -> ApiError {
    ApiError::new(
        415,
        "unsupported_media_type",
        format!("{what} is not a JPEG or PNG image"),
        "send the image's bytes with Content-Type image/jpeg or image/png, or JSON { \"image_base64\": ... } with Content-Type application/json",
    )
}

fn too_large(n: usize) -> ApiError {
    ApiError::new(
        413,
        "payload_too_large",
        format!("the image is {n} bytes; the limit is {MAX_IMAGE_BYTES} bytes (4 MB)"),
        "resize or recompress the image below 4 MB",
    )
}

/// The request's content type, without parameters, lower case.
fn content_type(req: &ApiGatewayProxyRequest) -> String {
    req.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The uploaded image and its kind, or the 400/413/415 that refuses it.
pub fn read_image(req: &ApiGatewayProxyRequest) -> Result<(Vec<u8>, ImageKind), ApiError> {
    let raw = req.body.as_deref().unwrap_or_default();
    let body = if req.is_base64_encoded {
        base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|_| {
                ApiError::bad_request(
                    "the request body is not valid base64",
                    "send the image bytes unchanged; API Gateway encodes binary bodies itself",
                )
            })?
    } else {
        raw.as_bytes().to_vec()
    };
    let ct = content_type(req);
    let bytes = match ct.as_str() {
        "application/json" => {
            let v: Value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::bad_request(
                    format!("the body is not valid JSON: {e}"),
                    "send { \"image_base64\": \"<base64 of a JPEG or PNG>\" }",
                )
            })?;
            let Some(b64) = v.get("image_base64").and_then(Value::as_str) else {
                return Err(ApiError::bad_request(
                    "field image_base64 (a string) is missing",
                    "send { \"image_base64\": \"<base64 of a JPEG or PNG>\" }",
                ));
            };
            // Browsers hand out data URLs; accept them as they come.
            let b64 = match b64.split_once(";base64,") {
                Some((head, rest)) if head.starts_with("data:") => rest,
                _ => b64,
            };
            // Refuse before decoding: base64 is 4/3 of the bytes it holds.
            if b64.len() / 4 * 3 > MAX_IMAGE_BYTES + 3 {
                return Err(too_large(b64.len() / 4 * 3));
            }
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| {
                    ApiError::bad_request(
                        "image_base64 is not valid base64",
                        "encode the image's bytes with standard base64 (RFC 4648)",
                    )
                })?
        }
        "image/jpeg" | "image/jpg" | "image/png" | "application/octet-stream" => body,
        "" => return Err(unsupported("a body without Content-Type")),
        other => return Err(unsupported(&format!("Content-Type {other}"))),
    };
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(too_large(bytes.len()));
    }
    match ImageKind::sniff(&bytes) {
        Some(kind) => Ok((bytes, kind)),
        None => Err(unsupported("the uploaded content")),
    }
}

/// Asks the endpoint and checks its answer has the documented shape.
pub async fn invoke(
    runtime: &aws_sdk_sagemakerruntime::Client,
    endpoint: &str,
    bytes: Vec<u8>,
    kind: ImageKind,
) -> Result<Value, ApiError> {
    let out = runtime
        .invoke_endpoint()
        .endpoint_name(endpoint)
        .content_type(kind.mime())
        .accept("application/json")
        .body(Blob::new(bytes))
        .send()
        .await
        .map_err(|e| match e.into_service_error() {
            InvokeEndpointError::ModelError(m) => model_error(
                m.original_status_code(),
                m.original_message().or(m.message()),
            ),
            InvokeEndpointError::ModelNotReadyException(_)
            | InvokeEndpointError::ServiceUnavailable(_) => {
                not_serving("the endpoint is not ready yet")
            }
            InvokeEndpointError::ValidationError(v) => {
                // An endpoint deleted between the status check and the call.
                eprintln!("invoke endpoint: {v}");
                not_serving("the endpoint did not accept the request")
            }
            other => ApiError::internal(&other),
        })?;
    let body = out.body().map(|b| b.as_ref()).unwrap_or_default();
    let v: Value = serde_json::from_slice(body).map_err(|_| bad_answer("is not JSON"))?;
    let ok = v.get("label").and_then(Value::as_str).is_some()
        && v.get("confidence").and_then(Value::as_f64).is_some()
        && v.get("probabilities").is_some_and(Value::is_object)
        && v.get("model_id").and_then(Value::as_str).is_some();
    if !ok {
        return Err(bad_answer(
            "lacks label, confidence, probabilities or model_id",
        ));
    }
    Ok(v)
}

fn bad_answer(what: &str) -> ApiError {
    eprintln!("the serving container's answer {what}");
    ApiError::new(
        502,
        "bad_model_answer",
        "the model's answer was not understood",
        "the serving container and this API disagree on the answer's shape: redeploy a model built with the current trainer",
    )
}

/// The container refused the input: answer its own 4xx; its 5xx is the model's failure.
pub fn model_error(status: Option<i32>, message: Option<&str>) -> ApiError {
    // The container's own message is meant for the caller, but keep it short.
    let message: String = message
        .unwrap_or("the model could not classify the image")
        .chars()
        .take(300)
        .collect();
    match status {
        Some(s @ 400..=499) => ApiError::new(
            i64::from(s),
            "model_rejected_input",
            message,
            "send a readable JPEG or PNG photo of a single item",
        ),
        _ => {
            eprintln!("model error {status:?}: {message}");
            ApiError::new(
                502,
                "model_error",
                "the model failed to classify the image",
                "try again; if it keeps failing, the endpoint's log has the cause",
            )
        }
    }
}

/// Endpoint states that answer invocations: an endpoint being updated (or rolled back) keeps
/// serving its current config until the new one takes over.
pub fn serves(endpoint_status: &str) -> bool {
    matches!(
        endpoint_status,
        "InService" | "Updating" | "SystemUpdating" | "RollingBack"
    )
}

pub fn not_serving(why: &str) -> ApiError {
    ApiError::new(
        503,
        "no_model_serving",
        format!("no model is serving predictions: {why}"),
        "accept a staged model (POST /api/models/{id}/accept) and wait until GET /api/endpoint shows InService",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide_not_the_name() {
        assert_eq!(
            ImageKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageKind::Jpeg)
        );
        assert_eq!(
            ImageKind::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageKind::Png)
        );
        assert_eq!(ImageKind::sniff(b"GIF89a"), None);
        assert_eq!(ImageKind::sniff(b""), None);
    }

    #[test]
    fn an_endpoint_serves_while_it_is_updated() {
        assert!(serves("InService") && serves("Updating") && serves("SystemUpdating"));
        assert!(!serves("Creating") && !serves("Failed") && !serves("OutOfService"));
    }

    #[test]
    fn model_errors_keep_their_4xx_and_hide_their_5xx() {
        assert_eq!(model_error(Some(415), Some("not an image")).status, 415);
        assert_eq!(model_error(Some(400), None).status, 400);
        let e = model_error(Some(500), Some("Traceback: /opt/ml/secret"));
        assert_eq!(e.status, 502);
        assert!(!e.message.contains("secret"));
    }
}
