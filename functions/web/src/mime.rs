//! Content types by file extension, shared by `build.rs` (which records each asset's type) and
//! the handler (which answers with it).

/// The `Content-Type` of a file named `path`, by its extension (case-insensitive). Unknown
/// extensions are `application/octet-stream`, served as binary.
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    };
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        _ => "application/octet-stream",
    }
}

/// Whether API Gateway treats this type as binary: the REST API's `BinaryMediaTypes`
/// (`image/*`, `font/*`, `application/octet-stream`). Such bodies travel base64-encoded with
/// `isBase64Encoded: true` and the gateway decodes them; every other type is UTF-8 text.
pub fn is_binary(content_type: &str) -> bool {
    content_type.starts_with("image/")
        || content_type.starts_with("font/")
        || content_type == "application/octet-stream"
}
