//! The web app as one Lambda function behind API Gateway's proxy integration (payload version
//! 1): `GET /` and `GET /{proxy+}` of the REST API, beside `/api/{proxy+}` (the `api`
//! function). The files of `frontend/dist` are embedded at build time by `build.rs` into
//! [`ASSETS`], so the function reads nothing at run time and a deployed package is one build of
//! the frontend.
//!
//! - `/` (the stage root) answers `index.html`; any other path answers the file of that name,
//!   or 404 with a small page linking back to the app (the app routes by `#hash`, so an unknown
//!   path is a mistake, not a client-side route). A stage root asked for without its trailing
//!   slash (`/v1`) is redirected to `/v1/`, so the app's relative asset URLs keep the stage.
//! - `GET` and `HEAD` only; anything else is 405 with `Allow: GET, HEAD`.
//! - Types by extension ([`content_type`]); image and font types are the API's binary media
//!   types and travel base64-encoded with `isBase64Encoded: true`, text as the plain body.
//! - Caching: `index.html` and other unhashed files `no-cache` (revalidated by their strong
//!   ETag, a SHA-256 prefix; `If-None-Match` answers 304), Vite's content-hashed files under
//!   `assets/` a year, immutable.
//! - Every answer carries the security headers ([`CONTENT_SECURITY_POLICY`], nosniff,
//!   no-referrer, no framing); with a user pool configured, `connect-src` also names Cognito's
//!   endpoint, where the app signs in.
//! - `/config.json` is not a file: it tells the app where to sign in ([`Site`], from the
//!   function's environment: the user pool and client the stack renders, and Cognito's endpoint
//!   as the AWS SDKs resolve it).

mod mime;

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue, Method};
use base64::Engine;

pub use mime::{content_type, is_binary};

/// Only this origin's scripts, styles, fonts and API; images also from `data:` and `blob:`
/// (previews of an image picked for prediction); no plugins, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; \
    object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'";

/// `Cache-Control` of Vite's content-hashed files (under `assets/`): a changed file gets a
/// new name, so a cached one never needs asking again.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of everything else: keep, but revalidate (cheap with the ETag).
pub const CACHE_REVALIDATE: &str = "no-cache";

/// An embedded file's bytes: text (UTF-8, checked at build time) or binary.
#[derive(Debug, Clone, Copy)]
pub enum Data {
    Text(&'static str),
    Binary(&'static [u8]),
}

/// One embedded file of `frontend/dist`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Path under `dist/`, `/`-separated, no leading slash (`assets/index-3f2a.js`).
    pub path: &'static str,
    pub content_type: &'static str,
    /// Strong ETag, quoted: the first 16 hex digits of the file's SHA-256.
    pub etag: &'static str,
    pub data: Data,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Finds an asset by its path under `dist/` in a table sorted by path.
pub fn find<'a>(assets: &'a [Asset], path: &str) -> Option<&'a Asset> {
    assets
        .binary_search_by(|a| a.path.cmp(path))
        .ok()
        .map(|i| &assets[i])
}

/// Where the app signs in: the deployment's Cognito user pool and app client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthConfig {
    pub region: String,
    pub user_pool_id: String,
    pub client_id: String,
    /// Cognito's endpoint URL, ending in `/`.
    pub endpoint: String,
}

/// Per-deployment settings, read once per cold start, and what they make of every answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `None` when the function has no user pool settings (the app then says so).
    pub auth: Option<AuthConfig>,
    /// [`Site::content_security_policy`] and [`Site::config_json`], made once.
    csp: String,
    config: String,
}

impl Default for Site {
    fn default() -> Self {
        Site::new(None)
    }
}

impl Site {
    pub fn new(auth: Option<AuthConfig>) -> Site {
        let mut site = Site {
            auth,
            csp: String::new(),
            config: String::new(),
        };
        site.csp = site.content_security_policy();
        site.config = site.config_json();
        site
    }

    /// From the function's environment: `USER_POOL_ID` and `USER_POOL_CLIENT_ID` (rendered by
    /// the stack), `AWS_REGION`, and Cognito's endpoint as the SDKs resolve it
    /// (`AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`, then `AWS_ENDPOINT_URL`, then the
    /// regional public endpoint).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Site {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let auth = (|| {
            let region = get("AWS_REGION")?;
            let endpoint = get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER")
                .or_else(|| get("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|| format!("https://cognito-idp.{region}.amazonaws.com/"));
            let endpoint = format!("{}/", endpoint.trim_end_matches('/'));
            Some(AuthConfig {
                user_pool_id: get("USER_POOL_ID")?,
                client_id: get("USER_POOL_CLIENT_ID")?,
                region,
                endpoint,
            })
        })();
        Site::new(auth)
    }

    /// The policy every answer carries: [`CONTENT_SECURITY_POLICY`], plus Cognito's origin in
    /// `connect-src` when the app signs in there.
    pub fn content_security_policy(&self) -> String {
        match &self.auth {
            Some(a) => CONTENT_SECURITY_POLICY.replace(
                "connect-src 'self'",
                &format!("connect-src 'self' {}", origin(&a.endpoint)),
            ),
            None => CONTENT_SECURITY_POLICY.to_string(),
        }
    }

    /// The body of `/config.json`.
    pub fn config_json(&self) -> String {
        let auth = match &self.auth {
            Some(a) => serde_json::json!({
                "region": a.region,
                "user_pool_id": a.user_pool_id,
                "client_id": a.client_id,
                "endpoint": a.endpoint,
            }),
            None => serde_json::Value::Null,
        };
        serde_json::json!({ "auth": auth }).to_string()
    }
}

/// `scheme://host[:port]` of a URL (what CSP source expressions name).
fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
        None => url.trim_end_matches('/').to_string(),
    }
}

/// The requested path under the stage, without its leading slash: the proxy resource's
/// parameter (the root resource has none).
fn proxy_path(req: &ApiGatewayProxyRequest) -> &str {
    match req.path_parameters.get("proxy") {
        Some(p) => p.as_str(),
        None => req.path.as_deref().unwrap_or("/"),
    }
    .trim_start_matches('/')
}

/// Serves one request from the embedded [`ASSETS`].
pub fn handle(site: &Site, req: &ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
    serve_site(ASSETS, site, req)
}

/// Serves one request of a deployment: `/config.json` from `site`, the rest from `assets`.
pub fn serve_site(
    assets: &[Asset],
    site: &Site,
    req: &ApiGatewayProxyRequest,
) -> ApiGatewayProxyResponse {
    let mut r = if proxy_path(req) == "config.json"
        && (req.http_method == Method::GET || req.http_method == Method::HEAD)
    {
        let mut r = text(200, "application/json", &site.config);
        // Settings change with a redeploy: never cached.
        r.headers
            .insert("cache-control", HeaderValue::from_static("no-store"));
        if req.http_method == Method::HEAD {
            r.body = None;
        }
        r
    } else {
        serve(assets, req)
    };
    if let Ok(v) = HeaderValue::from_str(&site.csp) {
        r.headers.insert("content-security-policy", v);
    }
    r
}

/// Serves one request from `assets` (sorted by path).
pub fn serve(assets: &[Asset], req: &ApiGatewayProxyRequest) -> ApiGatewayProxyResponse {
    let method = &req.http_method;
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        let mut r = text(405, "text/plain; charset=utf-8", "405 method not allowed\n");
        r.headers
            .insert("allow", HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = proxy_path(req);
    if path.is_empty() {
        if let Some(to) = stage_root_redirect(req) {
            let mut r = text(301, "text/plain; charset=utf-8", "");
            r.body = None;
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers.insert("location", v);
            }
            return r;
        }
    }
    let name = if path.is_empty() { "index.html" } else { path };
    let Some(asset) = find(assets, name) else {
        let mut r = text(404, "text/html; charset=utf-8", &not_found_page(path));
        if head {
            r.body = None;
        }
        return r;
    };
    let cache = if asset.path.starts_with("assets/") {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    };
    let mut r = response(200);
    r.headers
        .insert("content-type", HeaderValue::from_static(asset.content_type));
    r.headers
        .insert("cache-control", HeaderValue::from_static(cache));
    r.headers
        .insert("etag", HeaderValue::from_static(asset.etag));
    if etag_matches(&req.headers, asset.etag) {
        r.status_code = 304;
        r.headers.remove("content-type");
        return r;
    }
    if !head {
        match asset.data {
            Data::Text(s) => r.body = Some(Body::Text(s.to_string())),
            Data::Binary(b) => {
                r.body = Some(Body::Text(
                    base64::engine::general_purpose::STANDARD.encode(b),
                ));
                r.is_base64_encoded = true;
            }
        }
    }
    r
}

/// `If-None-Match` names this ETag (or `*`). Weak comparison, as RFC 9110 asks for it.
fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

/// Where to send a stage root asked for without its trailing slash: API Gateway hands
/// `https://host/v1` to the root resource, and relative asset URLs in a page at `/v1` would
/// resolve outside the stage. The stage-qualified path is `requestContext.path`.
fn stage_root_redirect(req: &ApiGatewayProxyRequest) -> Option<String> {
    let full = req.request_context.path.as_deref()?;
    (!full.is_empty() && full != "/" && !full.ends_with('/')).then(|| format!("{full}/"))
}

/// The 404 page: plain HTML (no inline style or script, which the policy forbids) with a
/// relative link to the stage root, so it works under any stage or custom-domain prefix.
fn not_found_page(path: &str) -> String {
    let back = match path.matches('/').count() {
        0 => "./".to_string(),
        n => "../".repeat(n),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Not found</title></head>\n<body><main><h1>Not found</h1>\
         <p>There is nothing at this address.</p>\
         <p><a href=\"{back}\">Back to the app</a></p></main></body>\n</html>\n"
    )
}

fn text(status: i64, content_type: &'static str, body: &str) -> ApiGatewayProxyResponse {
    let mut r = response(status);
    r.headers
        .insert("content-type", HeaderValue::from_static(content_type));
    r.headers
        .insert("cache-control", HeaderValue::from_static(CACHE_REVALIDATE));
    r.body = Some(Body::Text(body.to_string()));
    r
}

/// A response with the security headers every answer carries.
fn response(status: i64) -> ApiGatewayProxyResponse {
    let mut h = HeaderMap::new();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.headers = h;
    r.is_base64_encoded = false;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const WOFF2: &[u8] = b"wOF2\0\x01\0\0\xff";

    /// A table like build.rs makes, sorted by path.
    static TABLE: &[Asset] = &[
        Asset {
            path: "assets/app-abc123.js",
            content_type: "text/javascript; charset=utf-8",
            etag: "\"00000000000000a1\"",
            data: Data::Text("console.log('hi');"),
        },
        Asset {
            path: "assets/font-77.woff2",
            content_type: "font/woff2",
            etag: "\"00000000000000a2\"",
            data: Data::Binary(WOFF2),
        },
        Asset {
            path: "assets/logo-9f.png",
            content_type: "image/png",
            etag: "\"00000000000000a3\"",
            data: Data::Binary(PNG),
        },
        Asset {
            path: "favicon.ico",
            content_type: "image/x-icon",
            etag: "\"00000000000000a4\"",
            data: Data::Binary(b"\0\0\x01\0"),
        },
        Asset {
            path: "index.html",
            content_type: "text/html; charset=utf-8",
            etag: "\"00000000000000a5\"",
            data: Data::Text("<!doctype html><title>app</title>"),
        },
    ];

    fn req(method: Method, path: &str) -> ApiGatewayProxyRequest {
        let mut r = ApiGatewayProxyRequest::default();
        r.http_method = method;
        r.path = Some(path.to_string());
        r.request_context.path = Some(format!("/v1{path}"));
        let proxy = path.trim_start_matches('/');
        if !proxy.is_empty() {
            r.resource = Some("/{proxy+}".into());
            r.path_parameters.insert("proxy".into(), proxy.into());
        } else {
            r.resource = Some("/".into());
        }
        r
    }

    fn get(path: &str) -> ApiGatewayProxyResponse {
        serve(TABLE, &req(Method::GET, path))
    }

    fn header<'a>(r: &'a ApiGatewayProxyResponse, name: &str) -> &'a str {
        r.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn body_text(r: &ApiGatewayProxyResponse) -> &str {
        match &r.body {
            Some(Body::Text(s)) => s,
            None => "",
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn content_types_by_extension() {
        for (file, ty) in [
            ("index.html", "text/html; charset=utf-8"),
            ("assets/index-1a.js", "text/javascript; charset=utf-8"),
            ("assets/index-1a.css", "text/css; charset=utf-8"),
            ("assets/logo.SVG", "image/svg+xml"),
            ("assets/a.png", "image/png"),
            ("assets/a.jpg", "image/jpeg"),
            ("assets/a.jpeg", "image/jpeg"),
            ("favicon.ico", "image/x-icon"),
            ("assets/inter-3b.woff2", "font/woff2"),
            ("manifest.json", "application/json"),
            ("assets/index-1a.js.map", "application/json"),
            ("assets/blob.bin", "application/octet-stream"),
            ("LICENSE", "application/octet-stream"),
            (".png", "application/octet-stream"),
        ] {
            assert_eq!(content_type(file), ty, "{file}");
        }
        assert!(is_binary("image/png") && is_binary("image/svg+xml") && is_binary("font/woff2"));
        assert!(is_binary("application/octet-stream"));
        assert!(!is_binary("text/html; charset=utf-8") && !is_binary("application/json"));
    }

    #[test]
    fn the_stage_root_is_index_html_revalidated() {
        let r = get("/");
        assert_eq!(r.status_code, 200);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        assert_eq!(header(&r, "etag"), "\"00000000000000a5\"");
        assert!(!r.is_base64_encoded);
        assert_eq!(body_text(&r), "<!doctype html><title>app</title>");
        // By name too, and the root resource (no proxy parameter, path "/").
        assert_eq!(body_text(&get("/index.html")), body_text(&r));
    }

    #[test]
    fn hashed_assets_are_immutable_other_files_revalidated() {
        let js = get("/assets/app-abc123.js");
        assert_eq!(js.status_code, 200);
        assert_eq!(header(&js, "cache-control"), CACHE_IMMUTABLE);
        assert_eq!(
            header(&js, "content-type"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(body_text(&js), "console.log('hi');");
        assert!(!js.is_base64_encoded);
        let ico = get("/favicon.ico");
        assert_eq!(header(&ico, "cache-control"), "no-cache");
    }

    #[test]
    fn binary_types_are_base64_encoded() {
        for (path, bytes, ty) in [
            ("/assets/logo-9f.png", PNG, "image/png"),
            ("/assets/font-77.woff2", WOFF2, "font/woff2"),
        ] {
            let r = get(path);
            assert_eq!(r.status_code, 200, "{path}");
            assert!(r.is_base64_encoded, "{path}");
            assert_eq!(header(&r, "content-type"), ty);
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(body_text(&r))
                .unwrap();
            assert_eq!(decoded, bytes);
        }
    }

    #[test]
    fn a_matching_if_none_match_is_304_without_a_body() {
        let mut q = req(Method::GET, "/assets/logo-9f.png");
        q.headers.insert(
            "if-none-match",
            HeaderValue::from_static("\"nope\", W/\"00000000000000a3\""),
        );
        let r = serve(TABLE, &q);
        assert_eq!(r.status_code, 304);
        assert!(r.body.is_none() && !r.is_base64_encoded);
        assert_eq!(header(&r, "etag"), "\"00000000000000a3\"");
        assert_eq!(header(&r, "cache-control"), CACHE_IMMUTABLE);
        q.headers
            .insert("if-none-match", HeaderValue::from_static("*"));
        assert_eq!(serve(TABLE, &q).status_code, 304);
        q.headers
            .insert("if-none-match", HeaderValue::from_static("\"other\""));
        let r = serve(TABLE, &q);
        assert_eq!(r.status_code, 200);
        assert!(r.is_base64_encoded);
    }

    #[test]
    fn unknown_paths_are_404_pages_linking_back_not_index_html() {
        for (path, back) in [
            ("/nope", "./"),
            ("/assets/gone-1.js", "../"),
            ("/a/b/c", "../../"),
            ("/models/", "../"),
        ] {
            let r = get(path);
            assert_eq!(r.status_code, 404, "{path}");
            assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
            let page = body_text(&r);
            assert!(page.contains(&format!("href=\"{back}\"")), "{path}: {page}");
            assert!(!page.contains("<title>app</title>"));
            assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        }
        // A traversal is only a name that is not in the table.
        assert_eq!(get("/assets/../index.html").status_code, 404);
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        for m in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            let r = serve(TABLE, &req(m.clone(), "/"));
            assert_eq!(r.status_code, 405, "{m}");
            assert_eq!(header(&r, "allow"), "GET, HEAD");
        }
    }

    #[test]
    fn head_has_the_headers_and_no_body() {
        let r = serve(TABLE, &req(Method::HEAD, "/assets/logo-9f.png"));
        assert_eq!(r.status_code, 200);
        assert_eq!(header(&r, "content-type"), "image/png");
        assert_eq!(header(&r, "etag"), "\"00000000000000a3\"");
        assert!(r.body.is_none() && !r.is_base64_encoded);
        let r = serve(TABLE, &req(Method::HEAD, "/missing"));
        assert_eq!(r.status_code, 404);
        assert!(r.body.is_none());
    }

    #[test]
    fn every_answer_has_the_security_headers() {
        let mut q = req(Method::GET, "/");
        q.headers.insert(
            "if-none-match",
            HeaderValue::from_static("\"00000000000000a5\""),
        );
        for r in [
            get("/"),
            get("/assets/logo-9f.png"),
            get("/missing"),
            serve(TABLE, &req(Method::POST, "/")),
            serve(TABLE, &q),
        ] {
            let csp = header(&r, "content-security-policy");
            for part in [
                "script-src 'self'",
                "style-src 'self'",
                "img-src 'self' data: blob:",
                "connect-src 'self'",
                "frame-ancestors 'none'",
            ] {
                assert!(csp.contains(part), "{} lacks {part}: {csp}", r.status_code);
            }
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(header(&r, "x-content-type-options"), "nosniff");
            assert_eq!(header(&r, "referrer-policy"), "no-referrer");
        }
    }

    #[test]
    fn the_stage_root_without_its_slash_redirects() {
        let mut q = req(Method::GET, "/");
        q.request_context.path = Some("/v1".into());
        let r = serve(TABLE, &q);
        assert_eq!(r.status_code, 301);
        assert_eq!(header(&r, "location"), "/v1/");
        // With the slash, or with no stage in sight, it is the page.
        q.request_context.path = Some("/v1/".into());
        assert_eq!(serve(TABLE, &q).status_code, 200);
        q.request_context.path = None;
        assert_eq!(serve(TABLE, &q).status_code, 200);
    }

    #[test]
    fn the_embedded_table_is_sorted_and_has_the_page() {
        assert!(ASSETS.windows(2).all(|w| w[0].path < w[1].path));
        let index = find(ASSETS, "index.html").expect("frontend/dist/index.html is embedded");
        assert_eq!(index.content_type, "text/html; charset=utf-8");
        assert_eq!(index.etag.len(), 18);
        for a in ASSETS {
            assert_eq!(a.content_type, content_type(a.path), "{}", a.path);
            assert_eq!(
                matches!(a.data, Data::Binary(_)),
                is_binary(a.content_type),
                "{}",
                a.path
            );
        }
        assert_eq!(
            handle(&Site::default(), &req(Method::GET, "/")).status_code,
            200
        );
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn config_json_names_the_pool_and_cognito_as_the_sdks_resolve_it() {
        let pool = [
            ("AWS_REGION", "eu-west-1"),
            ("USER_POOL_ID", "eu-west-1_abc"),
            ("USER_POOL_CLIENT_ID", "client1"),
        ];
        let aws = Site::from_env(env(&pool));
        let a = aws.auth.clone().unwrap_or_default();
        assert_eq!(a.endpoint, "https://cognito-idp.eu-west-1.amazonaws.com/");
        let mut local = pool.to_vec();
        local.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"));
        let l = Site::from_env(env(&local)).auth.unwrap_or_default();
        assert_eq!(l.endpoint, "http://127.0.0.1:4566/");
        let mut q = req(Method::GET, "/config.json");
        q.path_parameters
            .insert("proxy".into(), "config.json".into());
        let r = serve_site(TABLE, &aws, &q);
        assert_eq!(r.status_code, 200);
        assert_eq!(header(&r, "cache-control"), "no-store");
        let v: serde_json::Value = serde_json::from_str(body_text(&r)).unwrap_or_default();
        assert_eq!(v["auth"]["user_pool_id"], "eu-west-1_abc");
        assert_eq!(v["auth"]["client_id"], "client1");
        assert_eq!(v["auth"]["region"], "eu-west-1");
        // Every answer lets the page reach Cognito, and nothing else new.
        let csp = header(&r, "content-security-policy").to_string();
        assert!(
            csp.contains("connect-src 'self' https://cognito-idp.eu-west-1.amazonaws.com;"),
            "{csp}"
        );
        let page = serve_site(TABLE, &aws, &req(Method::GET, "/"));
        assert_eq!(header(&page, "content-security-policy"), csp);
    }

    #[test]
    fn without_pool_settings_config_says_so_and_the_policy_stays_strict() {
        let site = Site::from_env(env(&[("AWS_REGION", "eu-west-1"), ("USER_POOL_ID", "")]));
        assert_eq!(site.auth, None);
        let mut q = req(Method::GET, "/config.json");
        q.path_parameters
            .insert("proxy".into(), "config.json".into());
        let r = serve_site(TABLE, &site, &q);
        assert_eq!(body_text(&r), r#"{"auth":null}"#);
        assert_eq!(
            header(&r, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
    }
}
