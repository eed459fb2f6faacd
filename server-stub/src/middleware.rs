//! Router-wide middleware: request-head limits, JSON bodies for every `/v1` error
//! (including the rejections that axum's extractors and routing produce on their own),
//! and one log line per request. [`edge`] runs all three as one layer: each layer costs
//! a boxed future and a service clone per request, on the hot path of every payment.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use protocol::{ErrorBody, ErrorCode, ErrorDetail};

use crate::error::ApiError;

/// Longest request URI (path and query) accepted. Pay links and ids are far shorter.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest total size of request header names and values accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of a non-JSON error body kept as the JSON error's message.
const MAX_MESSAGE_BYTES: usize = 512;

/// The one router-wide layer. It refuses over-long URIs (414) and over-large header
/// sets (431) with JSON bodies (the connection layer lets heads up to
/// [`crate::conn::MAX_HEAD_BUF_BYTES`] through so that these limits, not hyper's bare
/// responses, are what clients meet); turns every non-JSON `/v1` error into the JSON
/// error shape; and logs one `info` line per request: method, route (the matched
/// pattern, so ids, codes and tokens in paths are not logged), status and latency.
/// Bodies and headers are never logged: they carry PINs and tokens.
pub async fn edge(req: Request, next: Next) -> Response {
    if let Some(refused) = refuse_head(&req) {
        return refused;
    }
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let path = req.uri().path();
    let api = path == "/v1" || path.starts_with("/v1/");
    let started = Instant::now();
    let resp = next.run(req).await;
    log(&method, route.as_ref(), resp.status().as_u16(), started);
    if api { to_json_error(resp).await } else { resp }
}

fn refuse_head(req: &Request) -> Option<Response> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Some(ApiError::UriTooLong(MAX_URI_BYTES).into_response());
    }
    let headers = req.headers();
    if headers.len() > MAX_HEADERS {
        return Some(ApiError::HeadersTooLarge(MAX_HEADER_BYTES, MAX_HEADERS).into_response());
    }
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Some(ApiError::HeadersTooLarge(MAX_HEADER_BYTES, MAX_HEADERS).into_response());
    }
    None
}

fn log(method: &axum::http::Method, route: Option<&MatchedPath>, status: u16, started: Instant) {
    let route = route.map_or("(unmatched)", MatchedPath::as_str);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(%method, %route, status, latency_ms = ms, "request");
    } else {
        tracing::info!(target: "couchpay::http", %method, %route, status, latency_ms = ms, "request");
    }
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn code_for(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::URI_TOO_LONG => ErrorCode::UriTooLong,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Unavailable,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorCode::Unauthorized,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::InvalidRequest,
    }
}

fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "no such endpoint",
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not support that method",
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large",
        s if s.is_server_error() => "internal error",
        _ => "the request is malformed",
    }
}

/// Turns a non-JSON error response (of a `/v1` request) into the documented
/// `{"error": {"code", "message"}}` shape, keeping its status and headers (`Allow`).
async fn to_json_error(resp: Response) -> Response {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let mut message: String = text.trim().chars().take(MAX_MESSAGE_BYTES).collect();
    // Internal details never leave the server; an empty body gets a plain sentence.
    if message.is_empty() || status.is_server_error() {
        message = default_message(status).into();
    }
    let body = ErrorBody {
        error: ErrorDetail {
            code: code_for(status),
            message,
            retry_after_s: None,
        },
    };
    let json = Json(body).into_response();
    let (jparts, jbody) = json.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        jparts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    Response::from_parts(parts, Body::new(jbody))
}
