//! Plain HTTP resources: the catalog, poster images and a health check; the pay-link
//! page lives in `paypage`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use protocol::Catalog;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::paypage;

/// Largest poster file served.
const MAX_POSTER_BYTES: u64 = 4 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/catalog", get(catalog))
        .route("/assets/posters/{file}", get(poster))
        .route("/P/{id}", get(paypage::show).post(paypage::submit))
        .route("/p/{id}", get(paypage::show).post(paypage::submit))
}

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
