//! Red packets on a TV (SPEC R, "the family TV as the screen for a red packet"): the
//! sender asks a nearby TV to show a set (`POST /v1/packets/{id}/offer`), the TV hears it
//! on its device stream (`GET /v1/devices/{id}/events`) and asks the room before showing
//! anything; while it shows the set it follows the set's own stream
//! (`GET /v1/packets/{id}/events`: a snapshot, then each claim, until finished or
//! refunded) and offers its short code, which a phone turns back into the set with
//! `GET /v1/packets/by-code/{code}`.
//!
//! The device stream needs no credential: what it carries is what the TV would show the
//! room anyway (a claim link and code), and a TV never shows an offer unasked. A device
//! id names a TV; it authorises nothing. An offer can only come from the set's sender,
//! proved by PIN or session, and only while the set is open.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use protocol::ErrorBody;
use protocol::{
    DeviceEvent, DeviceId, OfferPackets, PacketSet, PacketSetId, PacketSetState, PacketsEvent,
    ShortCode,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::{OptionalExtension, params};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::extract::{ApiJson, ClientIp};
use crate::packets::{LIVE_CLAIMS, load_set_listing};
use crate::sessions::Proof;
use crate::{AppState, sse};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(offer))
        .routes(routes!(set_events))
        .routes(routes!(by_code))
        .routes(routes!(device_events))
}

fn parse_set(id: &str) -> ApiResult<PacketSetId> {
    PacketSetId::parse(id).map_err(|_| ApiError::UnknownPackets)
}

fn parse_device(id: &str) -> ApiResult<DeviceId> {
    DeviceId::parse(id).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

/// The set as a claim's answer lists it, if it exists.
async fn live_set(s: &AppState, id: PacketSetId) -> ApiResult<PacketSet> {
    let server = s.public_url.clone();
    s.store
        .read(move |conn| {
            load_set_listing(conn, &server, &id, Some(LIVE_CLAIMS))?.ok_or(ApiError::UnknownPackets)
        })
        .await
}

/// The sender asks the TV `device_id` to show the set; answers with the set offered.
#[utoipa::path(
    post,
    path = "/v1/packets/{id}/offer",
    operation_id = "offers_offer",
    tag = "packets",
    summary = "Ask a TV to show a red-packet set",
    params(
        ("id" = String, Path, description = "The set id"),
    ),
    request_body = OfferPackets,
    responses(
        (status = 200, description = "OK", body = PacketSet),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_packets`", body = ErrorBody),
        (status = 410, description = "`packets_expired`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn offer(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<OfferPackets>,
) -> ApiResult<Json<PacketSet>> {
    let id = parse_set(&id)?;
    let now = s.clock.now_ms();
    let proof = Proof::of(&s, &req.account, &req.auth, ip, now).await?;
    let server = s.public_url.clone();
    let device = req.device_id.clone();
    let set = s
        .store
        .write(move |conn, events| {
            proof.check(conn, &req.account, now)?;
            let set = load_set_listing(conn, &server, &id, Some(LIVE_CLAIMS))?
                .ok_or(ApiError::UnknownPackets)?;
            if set.sender != req.account {
                return Err(ApiError::NotAllowed(
                    "only the sender can put these packets on a TV".into(),
                ));
            }
            if set.state != PacketSetState::Open || set.expires_at_ms <= now {
                return Err(ApiError::PacketsExpired);
            }
            events.push(Event::Device(
                req.device_id.clone(),
                DeviceEvent::PacketsOffered { set: set.clone() },
            ));
            Ok(set)
        })
        .await?;
    tracing::info!(
        set = set.id.log_prefix(), %device, sender = %set.sender,
        "red packets offered to a TV"
    );
    Ok(Json(set))
}

/// What others ask this TV to show, from now on.
#[utoipa::path(
    get,
    path = "/v1/devices/{id}/events",
    operation_id = "offers_device_events",
    tag = "devices",
    summary = "What others ask this TV to show, as server-sent events",
    params(
        ("id" = String, Path, description = "The device id"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events; each `data:` is one JSON event", body = DeviceEvent, content_type = "text/event-stream"),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn device_events(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_device(&id)?;
    let slot = sse::slot(&s, ip)?;
    let rx = s.hub.subscribe_device(&id)?;
    let first = DeviceEvent::Hello { device: id };
    Ok(sse::stream(slot, first, rx, s.shutdown.clone(), |_| false))
}

/// The set's claims as they happen, after a snapshot, until it closes.
#[utoipa::path(
    get,
    path = "/v1/packets/{id}/events",
    operation_id = "offers_set_events",
    tag = "packets",
    summary = "Follow a set's claims: server-sent events, a snapshot first, until it closes",
    params(
        ("id" = String, Path, description = "The set id"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events; each `data:` is one JSON event", body = PacketsEvent, content_type = "text/event-stream"),
        (status = 404, description = "`unknown_packets`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn set_events(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_set(&id)?;
    let slot = sse::slot(&s, ip)?;
    // Subscribe before reading the snapshot, so no claim falls between the two.
    let rx = s.hub.subscribe_packets(&id)?;
    let first = PacketsEvent::Snapshot {
        set: live_set(&s, id).await?,
    };
    Ok(sse::stream(slot, first, rx, s.shutdown.clone(), |e| {
        e.is_final()
    }))
}

/// The open set with this short code (as a TV shows it).
#[utoipa::path(
    get,
    path = "/v1/packets/by-code/{code}",
    operation_id = "offers_by_code",
    tag = "packets",
    summary = "The open set with this short code (as a TV shows it)",
    params(
        ("code" = String, Path, description = "The short code"),
    ),
    responses(
        (status = 200, description = "OK", body = PacketSet),
        (status = 404, description = "`unknown_packets`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn by_code(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(code): Path<String>,
) -> ApiResult<Json<PacketSet>> {
    // Count every attempt, well-formed or not: guessing is what is being limited.
    s.code_limiter
        .check(ip)
        .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
    let code = ShortCode::parse(&code).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let server = s.public_url.clone();
    // One read: the code's set, as `GET /v1/packets/{id}` shows it.
    let set = s
        .store
        .read(move |conn| {
            let id: String = conn
                .prepare_cached(
                    "SELECT id FROM packet_sets WHERE short_code = ?1 AND state = 'open'",
                )?
                .query_row(params![code.as_str()], |r| r.get(0))
                .optional()?
                .ok_or(ApiError::UnknownPackets)?;
            crate::packets::load_set(conn, &server, &parse_set(&id)?)?
                .ok_or(ApiError::UnknownPackets)
        })
        .await?;
    Ok(Json(set))
}
