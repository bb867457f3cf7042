//! HTTP plumbing shared by every server here: the buffered request/response types, AWS-shaped
//! error bodies for the JSON and REST protocols, the client that forwards to moto and to
//! model servers, and free-port binding on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

pub type Body = Full<Bytes>;
pub type Resp = Response<Body>;

/// A request with its body read in full: every local service needs the whole body (to sign
/// nothing, to parse, to record, to forward), and AWS limits keep them small enough.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    /// Path and query exactly as received (still percent-encoded).
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    pub async fn read(req: Request<Incoming>, limit: usize) -> Result<Req, String> {
        let (parts, body) = req.into_parts();
        let body = http_body_util::Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| format!("failed to read the request body: {e}"))?
            .to_bytes();
        Ok(Req {
            method: parts.method,
            uri: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into()),
            headers: parts.headers,
            body,
        })
    }

    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("/")
    }

    pub fn query(&self) -> &str {
        self.uri.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query().as_bytes())
            .into_owned()
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The AWS service a SigV4-signed request is for (the credential scope's service part).
    pub fn signing_service(&self) -> Option<String> {
        let auth = self.header("authorization")?;
        let cred = auth.split("Credential=").nth(1)?;
        let scope = cred.split([',', ' ']).next()?;
        scope.split('/').nth(3).map(str::to_string)
    }

    /// `X-Amz-Target` action (`DynamoDB_20120810.PutItem` → `PutItem`), or the Query
    /// protocol's `Action=` form field.
    pub fn action(&self) -> Option<String> {
        if let Some(t) = self.header("x-amz-target") {
            return t.rsplit('.').next().map(str::to_string);
        }
        let form = if self.method == Method::POST {
            &self.body[..]
        } else {
            self.query().as_bytes()
        };
        form_urlencoded::parse(form)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
    }

    pub fn form(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
}

pub fn json(status: StatusCode, v: &serde_json::Value) -> Resp {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// An error in the AWS JSON 1.1 protocol (SageMaker, EventBridge): `__type` carries the code.
pub fn aws_json_error(status: StatusCode, code: &str, message: &str) -> Resp {
    let mut r = json(
        status,
        &serde_json::json!({ "__type": code, "message": message, "Message": message }),
    );
    r.headers_mut().insert(
        "x-amzn-errortype",
        hyper::header::HeaderValue::from_str(code)
            .unwrap_or(hyper::header::HeaderValue::from_static("InternalFailure")),
    );
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    r
}

/// A client for loopback HTTP/1.1 (moto, model servers).
#[derive(Debug, Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Body>,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Client {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        Client {
            inner: HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(conn),
        }
    }

    /// Sends `req` to `base` (scheme://host:port) and reads the whole response.
    pub async fn send(&self, base: &str, req: &Req) -> Result<Buffered, String> {
        let uri: hyper::Uri = format!("{base}{}", req.uri)
            .parse()
            .map_err(|e| format!("bad URI {base}{}: {e}", req.uri))?;
        let mut b = Request::builder().method(req.method.clone()).uri(uri);
        for (k, v) in &req.headers {
            if k == hyper::header::HOST || k == hyper::header::CONNECTION {
                continue;
            }
            b = b.header(k, v);
        }
        let authority = base.split("://").nth(1).unwrap_or(base);
        b = b.header(hyper::header::HOST, authority);
        let request = b
            .body(full(req.body.clone()))
            .map_err(|e| format!("cannot build request: {e}"))?;
        let resp = self
            .inner
            .request(request)
            .await
            .map_err(|e| format!("request to {base} failed: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the response from {base} failed: {e}"))?
            .to_bytes();
        Ok(Buffered {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn simple(
        &self,
        base: &str,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Buffered, String> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                hyper::header::HeaderName::from_bytes(k.as_bytes()),
                hyper::header::HeaderValue::from_str(v),
            ) {
                h.insert(k, v);
            }
        }
        self.send(
            base,
            &Req {
                method,
                uri: uri.to_string(),
                headers: h,
                body,
            },
        )
        .await
    }
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Buffered {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Buffered {
    pub fn into_response(self) -> Resp {
        let mut r = Response::new(full(self.body));
        *r.status_mut() = self.status;
        for (k, v) in &self.headers {
            if k == hyper::header::TRANSFER_ENCODING || k == hyper::header::CONNECTION {
                continue;
            }
            r.headers_mut().append(k, v.clone());
        }
        r
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Binds 127.0.0.1:`port` (0 = a free port).
pub async fn bind(port: u16, what: &'static str) -> Result<tokio::net::TcpListener, crate::Error> {
    tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                crate::Error::PortTaken { port, what }
            } else {
                crate::Error::Io {
                    what: format!("listen on port {port} ({what})"),
                    source: e,
                }
            }
        })
}

/// Serves `handler` on `listener` until the returned task is aborted. Each connection gets
/// its own task.
pub fn serve<F, Fut>(listener: tokio::net::TcpListener, handler: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Resp> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let h = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let h = h.clone();
                    async move { Ok::<_, std::convert::Infallible>(h(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

pub fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn now_epoch() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

/// A random-enough id (request ids, event ids): time plus a process-wide counter, hashed.
pub fn new_id() -> String {
    use sha2::Digest;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let h = sha2::Sha256::digest(format!(
        "{}-{}-{n}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    let x = hex::encode(&h[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}
