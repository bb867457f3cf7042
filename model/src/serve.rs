//! The inference server on SageMaker's contract: `GET /ping` (200 only once the model is
//! loaded) and `POST /invocations` (JPEG/PNG bytes in, JSON prediction out), on hyper's HTTP/1
//! server. Each inference runs on tokio's blocking pool so the async threads, and therefore
//! `/ping`, are never held up by decoding or the forward pass. Bad requests get a status and a
//! JSON `{"error": ...}` naming the problem: 413 over 4 MB, 415 for a non-image content type or
//! body, 400 for corrupt or truncated images and for declared dimensions large enough to be a
//! decompression bomb (checked from the header, before any pixel is decoded).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::artifact::Model;
use crate::imageio::ImageError;

/// SageMaker serverless endpoints cap requests at 4 MB.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Oversized bodies up to this size are read and discarded before answering 413, so the client
/// sees the response instead of a connection reset; beyond it the connection is just closed.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

const ACCEPTED_TYPES: [&str; 4] = [
    "image/jpeg",
    "image/jpg",
    "image/png",
    "application/x-image",
];

#[derive(Clone)]
struct State {
    model: Arc<OnceLock<Arc<Model>>>,
    model_id: Option<String>,
}

/// A running server: its address, a way to hand it the model, and a way to stop it.
#[derive(Debug)]
pub struct ServerHandle {
    pub addr: SocketAddr,
    model: Arc<OnceLock<Arc<Model>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Makes the server ready (`/ping` answers 200 from now on). Returns false if a model was
    /// already set.
    pub fn set_model(&self, model: Model) -> bool {
        self.model.set(Arc::new(model)).is_ok()
    }

    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response<Full<Bytes>> {
    json_response(status, serde_json::json!({ "error": reason.into() }))
}

async fn drain(body: Incoming) {
    let _ = Limited::new(body, DRAIN_LIMIT).collect().await;
}

async fn invocations(req: Request<Incoming>, state: State) -> Response<Full<Bytes>> {
    let Some(model) = state.model.get().cloned() else {
        // Read the body anyway: an unread body makes hyper close the keep-alive connection.
        drain(req.into_body()).await;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model is still loading; retry when GET /ping answers 200",
        );
    };
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !ACCEPTED_TYPES.contains(&ctype.as_str()) {
        drain(req.into_body()).await;
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported content type `{ctype}`; send the image bytes as image/jpeg, image/png or application/x-image"),
        );
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {MAX_BODY} bytes (4 MB); send a smaller image"),
        )
    };
    if declared.is_some_and(|n| n > MAX_BODY) {
        drain(req.into_body()).await;
        return too_large();
    }
    let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("failed to read the request body: {e}"),
            )
        }
    };
    let model_id = state
        .model_id
        .clone()
        .unwrap_or_else(|| model.fingerprint_id());
    let result = tokio::task::spawn_blocking(move || model.predict_bytes(&bytes)).await;
    match result {
        Ok(Ok(p)) => json_response(
            StatusCode::OK,
            serde_json::json!({
                "label": p.label,
                "confidence": p.confidence,
                "probabilities": p.probabilities,
                "model_id": model_id,
            }),
        ),
        Ok(Err(e @ ImageError::NotAnImage)) => {
            error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("inference failed: {e}"),
        ),
    }
}

async fn handle(req: Request<Incoming>, state: State) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    Ok(match (method, path.as_str()) {
        (Method::GET, "/ping") => {
            if state.model.get().is_some() {
                json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
            } else {
                json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    serde_json::json!({"status": "loading"}),
                )
            }
        }
        (Method::POST, "/invocations") => invocations(req, state).await,
        (_, "/ping" | "/invocations") => {
            drain(req.into_body()).await;
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET /ping and POST /invocations",
            )
        }
        _ => {
            drain(req.into_body()).await;
            error(
                StatusCode::NOT_FOUND,
                format!("no route {path}; use GET /ping and POST /invocations"),
            )
        }
    })
}

/// Binds `addr` and serves in the background on the current tokio runtime. `/ping` answers
/// 503 until [`ServerHandle::set_model`] is called. `model_id` is reported with every
/// prediction (the pipeline passes `MODEL_ID`); `None` falls back to the model's fingerprint.
pub async fn start(addr: SocketAddr, model_id: Option<String>) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let model: Arc<OnceLock<Arc<Model>>> = Arc::new(OnceLock::new());
    let state = State {
        model: model.clone(),
        model_id,
    };
    let (tx, mut rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
    Ok(ServerHandle {
        addr,
        model,
        shutdown: Some(tx),
        task,
    })
}
