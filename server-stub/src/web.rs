//! Plain HTTP resources: the catalog, poster images and a health check; the
//! link pages live in `paypage` (orders), `voucherpage` and `packetpage` (red packets).

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::Catalog;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::{packetpage, paypage, voucherpage};

/// Largest poster file served.
const MAX_POSTER_BYTES: u64 = 4 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/docs", get(crate::openapi::reference))
        .routes(routes!(catalog))
        .route("/assets/posters/{file}", get(poster))
        .route("/P/{id}", get(paypage::show).post(paypage::submit))
        .route("/p/{id}", get(paypage::show).post(paypage::submit))
        .route("/V/{id}", get(voucherpage::show).post(voucherpage::submit))
        .route("/v/{id}", get(voucherpage::show).post(voucherpage::submit))
        .route("/R/{id}", get(packetpage::show).post(packetpage::submit))
        .route("/r/{id}", get(packetpage::show).post(packetpage::submit))
}

#[utoipa::path(
    get,
    path = "/v1/catalog",
    operation_id = "web_catalog",
    tag = "orders",
    summary = "The catalog the TV sells from",
    responses(
        (status = 200, description = "OK", body = Catalog),
    ),
)]
async fn catalog(State(s): State<AppState>) -> Json<Catalog> {
    Json(s.catalog.catalog.clone())
}

async fn poster(State(s): State<AppState>, Path(file): Path<String>) -> ApiResult<Response> {
    // Only plain file names: no separators, no dot-dot, known image types.
    let ok_name = file
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !file.starts_with('.')
        && !file.contains("..");
    let mime = match file.rsplit_once('.').map(|(_, e)| e) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        _ => return Err(ApiError::InvalidRequest("unsupported poster name".into())),
    };
    if !ok_name {
        return Err(ApiError::InvalidRequest("bad poster name".into()));
    }
    let path = s.config.assets.join("posters").join(&file);
    let meta = tokio::fs::metadata(&path).await;
    match meta {
        Ok(m) if m.is_file() && m.len() <= MAX_POSTER_BYTES => {}
        _ => return Ok(StatusCode::NOT_FOUND.into_response()),
    }
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /`: says what this server is, for someone who opens it in a browser.
async fn home(State(s): State<AppState>) -> Response {
    let body = format!(
        "<div class=card><h1>Couchpay stub server</h1>\
         <p>This server stands in for a bank and a store while you build and test TV apps \
         that are paid for with a phone. TVs and companions talk to its API under \
         <code>/v1</code>; phones without the app open pay links (<code>/P/…</code>) here.</p>\
         <p class=meta>Public address: <code>{url}</code></p>\
         <p class=meta>Health check: <a href=/healthz>/healthz</a> · \
         Catalog: <a href=/v1/catalog>/v1/catalog</a> · Ledger audit: <a href=/v1/audit>/v1/audit</a></p>\
         <p class=hint>The README and ARCHITECTURE.md of the Couchpay repository describe \
         every endpoint.</p></div>",
        url = paypage::escape(s.public_url.as_str()),
    );
    paypage::page(StatusCode::OK, "Couchpay", &body, None)
}

/// Anything unrouted: a JSON `not_found` under `/v1`, a small page elsewhere.
pub async fn not_found(OriginalUri(uri): OriginalUri) -> Response {
    let path = uri.path();
    if path == "/v1" || path.starts_with("/v1/") {
        return ApiError::NotFound("no such endpoint".into()).into_response();
    }
    paypage::page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<div class=card><h1>Nothing here</h1><p>This address is not a page of this \
         Couchpay server. If you scanned a code on a TV, scan it again.</p></div>",
        None,
    )
}
