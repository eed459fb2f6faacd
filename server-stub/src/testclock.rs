//! The developer's test clock (`--test-clock`): read and move the server's time through
//! the admin API, so that orders, sessions, locks and SMS codes expire on demand. Moving
//! the clock runs the expiry sweep at once, so TVs get their `expired` events right away.
//! Webhook retries that fall due are sent at once as well. Off by default, and refused
//! (`test_clock_disabled`) when off.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use protocol::ErrorBody;
use protocol::{AdvanceClock, ClockView};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::accounts::admin;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::{AppState, orders};

/// Largest step of one advance: a year.
pub const MAX_ADVANCE_MS: u64 = 366 * 24 * 60 * 60 * 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read, advance))
}

fn view(s: &AppState) -> ClockView {
    ClockView {
        now_ms: s.clock.now_ms(),
        test_clock: s.config.test_clock,
    }
}

#[utoipa::path(
    get,
    path = "/v1/admin/clock",
    operation_id = "testclock_read",
    tag = "admin",
    summary = "Read the server clock",
    responses(
        (status = 200, description = "OK", body = ClockView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn read(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Json<ClockView>> {
    admin(&s, &headers)?;
    Ok(Json(view(&s)))
}

#[utoipa::path(
    post,
    path = "/v1/admin/clock",
    operation_id = "testclock_advance",
    tag = "admin",
    summary = "Move the test clock forward: what expires meanwhile expires now, with its events",
    request_body = AdvanceClock,
    responses(
        (status = 200, description = "OK", body = ClockView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`test_clock_disabled`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn advance(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AdvanceClock>,
) -> ApiResult<Json<ClockView>> {
    admin(&s, &headers)?;
    if !s.config.test_clock {
        return Err(ApiError::TestClockDisabled);
    }
    if req.advance_ms == 0 || req.advance_ms > MAX_ADVANCE_MS {
        return Err(ApiError::InvalidRequest(format!(
            "advance_ms must be 1 to {MAX_ADVANCE_MS}"
        )));
    }
    if !s.clock.advance_ms(req.advance_ms as i64) {
        return Err(ApiError::TestClockDisabled);
    }
    tracing::info!(advance_ms = req.advance_ms, "test clock moved forward");
    // Whatever fell due expires now, with its events; the periodic sweep would get
    // there within a second, but a developer's test should not have to wait.
    while orders::sweep_expired(&s).await? > 0 {}
    // Webhook retries that fell due go out now too.
    s.store.webhooks_due().notify_one();
    Ok(Json(view(&s)))
}
