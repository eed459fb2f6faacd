//! Request extractors that turn every malformed input into an [`ApiError`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Json<T>` whose rejections are API errors (`invalid_request`, `payload_too_large`).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::PayloadTooLarge)
            }
            Err(e) => Err(ApiError::InvalidRequest(e.body_text())),
        }
    }
}

/// The peer's IP address (never a forwarded header: those can be forged). In-process
/// tests without a socket get the unspecified address.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

/// The `Idempotency-Key` header every money-moving request carries.
pub fn idempotency_key(
    headers: &axum::http::HeaderMap,
) -> crate::error::ApiResult<protocol::IdempotencyKey> {
    headers
        .get(protocol::IDEMPOTENCY_KEY_HEADER)
        .ok_or_else(|| ApiError::InvalidRequest("the Idempotency-Key header is required".into()))?
        .to_str()
        .ok()
        .and_then(|k| protocol::IdempotencyKey::parse(k).ok())
        .ok_or_else(|| ApiError::InvalidRequest("malformed Idempotency-Key header".into()))
}
