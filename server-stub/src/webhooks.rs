//! Merchant webhooks: a merchant's back end hears of its orders being paid, cancelled or
//! expiring, and of refunds of devices it sold, without polling.
//!
//! - *Durable outbox.* For every batch whose events concern a merchant with endpoints,
//!   the writer ([`record`]) inserts the event (its JSON body, fixed once) and one
//!   delivery per endpoint **in the batch's own transaction**, so an acknowledged
//!   payment always has its deliveries, even if the process dies right after the commit.
//! - *Delivery workers* ([`delivery_loop`], one per node) claim due deliveries with a
//!   conditional update that leases them (`next_attempt_ms` moved past the HTTP timeout),
//!   so nodes sharing a database never send one at the same time, and a delivery whose
//!   node died is taken again when its lease runs out. Each POST is signed
//!   (`protocol::webhook::sign`), carries the event id, and is logged as an attempt.
//! - *At least once, with backoff.* A delivery that is not answered 2xx is tried again
//!   after `retry_base × 2^(attempt−1)` (±20 % jitter), at most an hour apart, for a day
//!   ([`GIVE_UP_AFTER_MS`]); then it is `failed` until someone resends it.
//! - *Payments never wait for merchants.* Deliveries run on their own tasks, at most
//!   [`MAX_IN_FLIGHT`] at once; a slow or dead endpoint only delays its own deliveries.

use protocol::ErrorBody;
use std::sync::Arc;
use std::time::{Duration, Instant};
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use protocol::webhook::{
    CreateWebhook, DeliveryState, EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookAttempt,
    WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookPayload,
};
use protocol::{AccountEvent, AccountId, OrderEvent, OrderId};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::accounts::admin;
use crate::db::{Connection, OptionalExtension, params};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::extract::ApiJson;
use crate::{AppState, ledger};

/// Default time an endpoint has to answer one delivery.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default wait before the first retry; it doubles with every further attempt.
pub const DEFAULT_RETRY_BASE_MS: u64 = 1_000;
/// Longest wait between two attempts.
pub const MAX_RETRY_INTERVAL_MS: i64 = 60 * 60 * 1000;
/// A delivery still failing this long after its event is given up (`failed`).
pub const GIVE_UP_AFTER_MS: i64 = 24 * 60 * 60 * 1000;
/// Most deliveries in flight per node.
pub const MAX_IN_FLIGHT: usize = 32;
/// Most live endpoints per merchant.
pub const MAX_ENDPOINTS_PER_MERCHANT: i64 = 16;
/// Longest endpoint URL.
pub const MAX_URL_CHARS: usize = 2_048;
/// Deliveries shown per endpoint in its log, and attempts per delivery.
const LOG_LIMIT: i64 = 100;
/// How often a node looks for due deliveries when nothing woke it.
const POLL_MS: u64 = 500;
/// Longest error text kept per attempt.
const MAX_ERROR_CHARS: usize = 300;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(disable))
        .routes(routes!(deliveries))
        .routes(routes!(resend))
}

fn check_url(url: &str) -> ApiResult<String> {
    let url = url.trim();
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ApiError::InvalidRequest(format!("url is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ApiError::InvalidRequest(
            "url must be an http:// or https:// address".into(),
        ));
    }
    if url.chars().count() > MAX_URL_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "url is longer than {MAX_URL_CHARS} characters"
        )));
    }
    Ok(url.to_owned())
}

fn new_secret() -> String {
    format!("whsec_{}", protocol::hex(&protocol::random_bytes::<32>()))
}

/// Registers an endpoint (unless the merchant has a live one at that URL: then that one).
fn register(
    conn: &Connection,
    merchant: &AccountId,
    url: &str,
    secret: Option<String>,
    now: i64,
) -> ApiResult<WebhookEndpoint> {
    ledger::get_account(conn, merchant.as_str())?
        .filter(|a| a.kind == "merchant")
        .ok_or(ApiError::UnknownAccount)?;
    // Nodes registering for one merchant at once (each reading the same webhooks file
    // at start) take turns, so the checks below see each other's endpoints.
    conn.lock_key(&format!("webhooks:{merchant}"))?;
    if let Some(existing) = endpoint_by_url(conn, merchant, url)? {
        return Ok(existing);
    }
    let live: i64 = conn.query_row(
        "SELECT COUNT(*) FROM webhook_endpoints WHERE merchant = ?1 AND disabled_at_ms IS NULL",
        [merchant.as_str()],
        |r| r.get(0),
    )?;
    if live >= MAX_ENDPOINTS_PER_MERCHANT {
        return Err(ApiError::LimitExceeded(format!(
            "a merchant may have at most {MAX_ENDPOINTS_PER_MERCHANT} webhook endpoints"
        )));
    }
    let endpoint = WebhookEndpoint {
        id: format!("we_{}", OrderId::random()),
        merchant: merchant.clone(),
        url: url.to_owned(),
        secret: secret.unwrap_or_else(new_secret),
        created_at_ms: now,
    };
    conn.execute(
        "INSERT INTO webhook_endpoints (id, merchant, url, secret, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            endpoint.id,
            endpoint.merchant.as_str(),
            endpoint.url,
            endpoint.secret,
            now
        ],
    )?;
    tracing::info!(endpoint = %endpoint.id, merchant = %merchant, url = %endpoint.url, "webhook endpoint registered");
    Ok(endpoint)
}

const ENDPOINT_COLUMNS: &str = "id, merchant, url, secret, created_at_ms";

fn endpoint_from_row(
    r: &crate::db::Row<'_>,
) -> crate::db::Result<(String, String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_endpoint(row: (String, String, String, String, i64)) -> ApiResult<WebhookEndpoint> {
    let (id, merchant, url, secret, created_at_ms) = row;
    Ok(WebhookEndpoint {
        id,
        merchant: AccountId::parse(&merchant).map_err(ApiError::internal)?,
        url,
        secret,
        created_at_ms,
    })
}

fn endpoint_by_url(
    conn: &Connection,
    merchant: &AccountId,
    url: &str,
) -> ApiResult<Option<WebhookEndpoint>> {
    conn.prepare_cached(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
         WHERE merchant = ?1 AND url = ?2 AND disabled_at_ms IS NULL"
    ))?
    .query_row([merchant.as_str(), url], endpoint_from_row)
    .optional()?
    .map(to_endpoint)
    .transpose()
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks",
    operation_id = "webhooks_create",
    tag = "webhooks",
    summary = "Register a merchant webhook endpoint (the signing secret is shown once)",
    request_body = CreateWebhook,
    responses(
        (status = 200, description = "OK", body = WebhookEndpoint),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateWebhook>,
) -> ApiResult<Json<WebhookEndpoint>> {
    admin(&s, &headers)?;
    let url = check_url(&req.url)?;
    let now = s.clock.now_ms();
    let endpoint = s
        .store
        .write(move |conn, _| register(conn, &req.merchant, &url, None, now))
        .await?;
    Ok(Json(endpoint))
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks",
    operation_id = "webhooks_list",
    tag = "webhooks",
    summary = "The registered webhook endpoints",
    responses(
        (status = 200, description = "OK", body = Vec<WebhookEndpoint>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn list(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<WebhookEndpoint>>> {
    admin(&s, &headers)?;
    let rows = s
        .store
        .read(|conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                     WHERE disabled_at_ms IS NULL ORDER BY created_at_ms, id"
                ))?
                .query_map((), endpoint_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            rows.into_iter().map(to_endpoint).collect()
        })
        .await?;
    Ok(Json(rows))
}

/// Removes an endpoint: nothing more is sent to it, and what was still pending fails.
#[utoipa::path(
    delete,
    path = "/v1/admin/webhooks/{id}",
    operation_id = "webhooks_disable",
    tag = "webhooks",
    summary = "Remove an endpoint: nothing more is sent to it, pending deliveries fail",
    params(
        ("id" = String, Path, description = "The endpoint id"),
    ),
    responses(
        (status = 200, description = "OK", body = WebhookEndpoint),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn disable(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<WebhookEndpoint>> {
    admin(&s, &headers)?;
    let now = s.clock.now_ms();
    let endpoint = s
        .store
        .write(move |conn, _| {
            let endpoint = conn
                .prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                     WHERE id = ?1 AND disabled_at_ms IS NULL"
                ))?
                .query_row([id.as_str()], endpoint_from_row)
                .optional()?
                .ok_or_else(|| ApiError::NotFound("no such webhook endpoint".into()))?;
            conn.execute(
                "UPDATE webhook_endpoints SET disabled_at_ms = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            conn.execute(
                "UPDATE webhook_deliveries SET state = 'failed'
                 WHERE endpoint_id = ?1 AND state = 'pending'",
                [id.as_str()],
            )?;
            to_endpoint(endpoint)
        })
        .await?;
    tracing::info!(endpoint = %endpoint.id, "webhook endpoint removed");
    Ok(Json(endpoint))
}

fn state_from_str(s: &str) -> DeliveryState {
    match s {
        "delivered" => DeliveryState::Delivered,
        "failed" => DeliveryState::Failed,
        _ => DeliveryState::Pending,
    }
}

const DELIVERY_COLUMNS: &str = "d.id, d.endpoint_id, d.event_id, e.kind, d.state, d.created_at_ms,
     d.next_attempt_ms, d.delivered_at_ms";

fn delivery_from_row(r: &crate::db::Row<'_>) -> crate::db::Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.get(0)?,
        endpoint: r.get(1)?,
        event_id: r.get(2)?,
        kind: r.get(3)?,
        state: state_from_str(&r.get::<_, String>(4)?),
        created_at_ms: r.get(5)?,
        next_attempt_ms: r.get(6)?,
        delivered_at_ms: r.get(7)?,
        attempts: Vec::new(),
    })
}

fn with_attempts(conn: &Connection, mut d: WebhookDelivery) -> ApiResult<WebhookDelivery> {
    d.attempts = conn
        .prepare_cached(
            "SELECT at_ms, status, error, duration_ms FROM webhook_attempts
             WHERE delivery_id = ?1 ORDER BY at_ms DESC LIMIT ?2",
        )?
        .query_map(params![d.id, LOG_LIMIT], |r| {
            Ok(WebhookAttempt {
                at_ms: r.get(0)?,
                status: r
                    .get::<_, Option<i64>>(1)?
                    .and_then(|s| u16::try_from(s).ok()),
                error: r.get(2)?,
                duration_ms: r.get(3)?,
            })
        })?
        .collect::<crate::db::Result<_>>()?;
    Ok(d)
}

fn delivery(conn: &Connection, id: i64) -> ApiResult<Option<WebhookDelivery>> {
    conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
         JOIN webhook_events e ON e.id = d.event_id WHERE d.id = ?1"
    ))?
    .query_row([id], delivery_from_row)
    .optional()?
    .map(|d| with_attempts(conn, d))
    .transpose()
}

/// The endpoint's delivery log: its newest deliveries, each with its attempts.
#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/{id}/deliveries",
    operation_id = "webhooks_deliveries",
    tag = "webhooks",
    summary = "The endpoint's delivery log: newest deliveries, each with its attempts",
    params(
        ("id" = String, Path, description = "The endpoint id"),
    ),
    responses(
        (status = 200, description = "OK", body = Vec<WebhookDelivery>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn deliveries(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Vec<WebhookDelivery>>> {
    admin(&s, &headers)?;
    let log = s
        .store
        .read(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM webhook_endpoints WHERE id = ?1")?
                .query_row([id.as_str()], |_| Ok(()))
                .optional()?;
            known.ok_or_else(|| ApiError::NotFound("no such webhook endpoint".into()))?;
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
                     JOIN webhook_events e ON e.id = d.event_id
                     WHERE d.endpoint_id = ?1 ORDER BY d.id DESC LIMIT ?2"
                ))?
                .query_map(params![id, LOG_LIMIT], delivery_from_row)?
                .collect::<crate::db::Result<Vec<_>>>()?;
            rows.into_iter().map(|d| with_attempts(conn, d)).collect()
        })
        .await?;
    Ok(Json(log))
}

/// Tries a delivery again now, whatever its state (a merchant fixed its endpoint).
#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/deliveries/{id}/resend",
    operation_id = "webhooks_resend",
    tag = "webhooks",
    summary = "Try a delivery again now, whatever its state",
    params(
        ("id" = String, Path, description = "The delivery id"),
    ),
    responses(
        (status = 200, description = "OK", body = WebhookDelivery),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn resend(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<WebhookDelivery>> {
    admin(&s, &headers)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound("no such webhook delivery".into()))?;
    let now = s.clock.now_ms();
    let d = s
        .store
        .write(move |conn, _| {
            let live = conn.execute(
                "UPDATE webhook_deliveries SET state = 'pending', next_attempt_ms = ?2
                 WHERE id = ?1 AND endpoint_id IN
                   (SELECT id FROM webhook_endpoints WHERE disabled_at_ms IS NULL)",
                params![id, now],
            )?;
            if live != 1 {
                return Err(ApiError::NotFound(
                    "no such webhook delivery to a live endpoint".into(),
                ));
            }
            delivery(conn, id)?.ok_or_else(|| ApiError::internal("resent delivery vanished"))
        })
        .await?;
    s.store.webhooks_due().notify_one();
    Ok(Json(d))
}

/// One line of the `--webhooks` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfiguredEndpoint {
    merchant: AccountId,
    url: String,
    /// The HMAC key, so the merchant's back end can keep it in its own configuration;
    /// made up when absent (read it with `GET /v1/admin/webhooks`).
    #[serde(default)]
    secret: Option<String>,
}

/// Registers the endpoints listed in the `--webhooks` file (a JSON array of
/// `{"merchant", "url", "secret"?}`); those already registered are kept as they are.
pub async fn load_config(s: &AppState, path: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading webhooks file {}: {e}", path.display()))?;
    let list: Vec<ConfiguredEndpoint> = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("webhooks file {}: {e}", path.display()))?;
    for e in list {
        let url = check_url(&e.url).map_err(|err| anyhow::anyhow!("webhooks file: {err}"))?;
        if let Some(secret) = &e.secret {
            anyhow::ensure!(
                secret.len() >= 16,
                "webhooks file: the secret for {url} is shorter than 16 characters"
            );
        }
        let now = s.clock.now_ms();
        let merchant = e.merchant.clone();
        s.store
            .write(move |conn, _| register(conn, &merchant, &url, e.secret.clone(), now))
            .await
            .map_err(|err| anyhow::anyhow!("webhooks file, merchant {}: {err}", e.merchant))?;
    }
    Ok(())
}

/// The merchant an event concerns, and what its endpoints are sent.
fn payload_of(conn: &Connection, event: &Event) -> ApiResult<Option<(String, WebhookPayload)>> {
    Ok(match event {
        Event::Order(e) => {
            let order = e.order().clone();
            let merchant = order.merchant.id.to_string();
            match e {
                OrderEvent::Paid { .. } => Some((merchant, WebhookPayload::OrderPaid { order })),
                OrderEvent::Cancelled { .. } => {
                    Some((merchant, WebhookPayload::OrderCancelled { order }))
                }
                OrderEvent::Expired { .. } => {
                    Some((merchant, WebhookPayload::OrderExpired { order }))
                }
                OrderEvent::Snapshot { .. } => None,
            }
        }
        Event::Account(_, AccountEvent::DeviceRefunded { refund }) => conn
            .prepare_cached("SELECT merchant_id FROM orders WHERE id = ?1")?
            .query_row([refund.order.as_str()], |r| r.get::<_, String>(0))
            .optional()?
            .map(|m| {
                (
                    m,
                    WebhookPayload::DeviceRefunded {
                        refund: refund.clone(),
                    },
                )
            }),
        _ => None,
    })
}

/// In the writer's transaction, before its commit: the webhook events of this batch's
/// `events` and their deliveries. Returns whether any delivery was written.
pub fn record(conn: &Connection, events: &[Event], now: i64) -> ApiResult<bool> {
    let relevant = events.iter().any(|e| {
        matches!(
            e,
            Event::Order(
                OrderEvent::Paid { .. } | OrderEvent::Cancelled { .. } | OrderEvent::Expired { .. }
            ) | Event::Account(_, AccountEvent::DeviceRefunded { .. })
        )
    });
    if !relevant {
        return Ok(false);
    }
    // One read per batch; almost always tiny (or empty: then nothing else happens).
    let endpoints: Vec<(String, String)> = conn
        .prepare_cached("SELECT id, merchant FROM webhook_endpoints WHERE disabled_at_ms IS NULL")?
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<crate::db::Result<_>>()?;
    if endpoints.is_empty() {
        return Ok(false);
    }
    let mut wrote = false;
    for event in events {
        let Some((merchant, payload)) = payload_of(conn, event)? else {
            continue;
        };
        let targets: Vec<&String> = endpoints
            .iter()
            .filter(|(_, m)| *m == merchant)
            .map(|(id, _)| id)
            .collect();
        if targets.is_empty() {
            continue;
        }
        let event = WebhookEvent {
            id: format!("evt_{}", OrderId::random()),
            created_at_ms: now,
            payload,
        };
        let body = serde_json::to_string(&event).map_err(ApiError::internal)?;
        conn.prepare_cached(
            "INSERT INTO webhook_events (id, kind, created_at_ms, body) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![event.id, event.payload.kind(), now, body])?;
        for endpoint in targets {
            conn.prepare_cached(
                "INSERT INTO webhook_deliveries
                   (event_id, endpoint_id, state, attempts, created_at_ms, next_attempt_ms)
                 VALUES (?1, ?2, 'pending', 0, ?3, ?3)",
            )?
            .execute(params![event.id, endpoint, now])?;
        }
        wrote = true;
    }
    Ok(wrote)
}

/// A delivery claimed by this node.
struct Due {
    id: i64,
    /// Which try this is (1-based), counted when it is claimed. It is also the lease's
    /// fence: the outcome is recorded only while the row still counts this try, so a
    /// node whose lease ran out, or a try overtaken by a resend, does not overwrite
    /// what happened since.
    attempt: i64,
    event_id: String,
    created_at_ms: i64,
    body: String,
    url: String,
    secret: String,
}

/// Leases up to `n` due deliveries to this node until `lease_until`.
fn claim(conn: &Connection, now: i64, lease_until: i64, n: usize) -> ApiResult<Vec<Due>> {
    // The outer conditions are checked again on the row as it is when its lock is
    // granted (PostgreSQL), so a delivery another node just leased is skipped.
    let claimed: Vec<(i64, i64)> = conn
        .prepare_cached(
            "UPDATE webhook_deliveries SET next_attempt_ms = ?1, attempts = attempts + 1
             WHERE id IN (SELECT d.id FROM webhook_deliveries d
                          JOIN webhook_endpoints w ON w.id = d.endpoint_id
                          WHERE d.state = 'pending' AND d.next_attempt_ms <= ?2
                            AND w.disabled_at_ms IS NULL
                          ORDER BY d.next_attempt_ms LIMIT ?3)
               AND state = 'pending' AND next_attempt_ms <= ?2
             RETURNING id, attempts",
        )?
        .query_map(params![lease_until, now, n as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<crate::db::Result<_>>()?;
    let mut due = Vec::with_capacity(claimed.len());
    for (id, attempt) in claimed {
        let row = conn
            .prepare_cached(
                "SELECT d.event_id, e.created_at_ms, e.body, w.url, w.secret
                 FROM webhook_deliveries d
                 JOIN webhook_events e ON e.id = d.event_id
                 JOIN webhook_endpoints w ON w.id = d.endpoint_id
                 WHERE d.id = ?1 AND w.disabled_at_ms IS NULL",
            )?
            .query_row([id], |r| {
                Ok(Due {
                    id,
                    attempt,
                    event_id: r.get(0)?,
                    created_at_ms: r.get(1)?,
                    body: r.get(2)?,
                    url: r.get(3)?,
                    secret: r.get(4)?,
                })
            })
            .optional()?;
        due.extend(row);
    }
    Ok(due)
}

/// The wait after the `attempt`th failed try (1-based), with ±20 % jitter.
fn backoff_ms(base_ms: u64, attempt: i64) -> i64 {
    let shift = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(40);
    let plain = (base_ms as i64)
        .saturating_mul(1_i64 << shift)
        .min(MAX_RETRY_INTERVAL_MS);
    let jitter = f64::from(protocol::random_bytes::<1>()[0]) / 255.0 * 0.4 + 0.8;
    (plain as f64 * jitter) as i64
}

fn clip(mut s: String) -> String {
    if let Some((at, _)) = s.char_indices().nth(MAX_ERROR_CHARS) {
        s.truncate(at);
    }
    s
}

/// Sends one delivery and records the attempt.
async fn deliver(s: AppState, http: reqwest::Client, due: Due) {
    let signed_at_s = crate::clock::Clock::now_ms(&crate::clock::SystemClock) / 1000;
    let signature = protocol::webhook::sign(&due.secret, signed_at_s, due.body.as_bytes());
    let started = Instant::now();
    let sent = http
        .post(&due.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::USER_AGENT, "Couchpay-Webhooks/1")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, &due.event_id)
        .body(due.body.clone())
        .send()
        .await;
    let duration_ms = started.elapsed().as_millis() as i64;
    let (status, error) = match sent {
        Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
        Ok(r) => (
            Some(r.status().as_u16()),
            Some(format!(
                "the endpoint answered HTTP {}",
                r.status().as_u16()
            )),
        ),
        Err(e) if e.is_timeout() => (None, Some("the endpoint did not answer in time".into())),
        Err(e) if e.is_connect() => (None, Some("could not connect to the endpoint".into())),
        Err(e) => (None, Some(clip(format!("sending failed: {e}")))),
    };
    let now = s.clock.now_ms();
    let base = s.config.webhook_retry_base_ms;
    let (id, attempt) = (due.id, due.attempt);
    let ok = error.is_none();
    let recorded = s
        .store
        .write(move |conn, _| {
            conn.prepare_cached(
                "INSERT INTO webhook_attempts (delivery_id, at_ms, status, error, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                id,
                now,
                status.map(i64::from),
                error.clone(),
                duration_ms
            ])?;
            // Only while the row still counts this try (see `Due::attempt`).
            let (state, next) = if ok {
                ("delivered", now)
            } else if now - due.created_at_ms >= GIVE_UP_AFTER_MS {
                ("failed", now)
            } else {
                ("pending", now + backoff_ms(base, attempt))
            };
            let held = conn
                .prepare_cached(
                    "UPDATE webhook_deliveries
                     SET state = ?3, next_attempt_ms = ?4,
                         delivered_at_ms = CASE WHEN ?3 = 'delivered' THEN CAST(?5 AS BIGINT)
                                                ELSE delivered_at_ms END
                     WHERE id = ?1 AND state = 'pending' AND attempts = ?2",
                )?
                .execute(params![id, attempt, state, next, now])?;
            if held == 0 {
                tracing::debug!(
                    delivery = id,
                    "webhook lease lost meanwhile; outcome only logged"
                );
            }
            Ok(())
        })
        .await;
    match (&recorded, ok) {
        (Err(e), _) => {
            tracing::warn!(delivery = id, error = %e, "webhook attempt not recorded; its lease will run out and it is sent again")
        }
        (Ok(()), true) => {
            tracing::debug!(delivery = id, event = %due.event_id, attempt, "webhook delivered")
        }
        (Ok(()), false) => {
            tracing::info!(delivery = id, event = %due.event_id, attempt, status = ?status, "webhook delivery failed; will retry")
        }
    }
}

/// Delivers due webhooks until the task is dropped: woken by the writer when a batch
/// wrote deliveries, and every [`POLL_MS`] (retries, and other nodes' deliveries).
pub async fn delivery_loop(s: AppState) {
    let timeout = Duration::from_millis(s.config.webhook_timeout_ms.max(1));
    let http = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "webhook deliveries are off: no HTTP client");
            return;
        }
    };
    // Longer than any attempt can take, so a lease only runs out when its node is gone.
    let lease_ms = 2 * timeout.as_millis() as i64 + 1_000;
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let due_signal = s.store.webhooks_due();
    loop {
        tokio::select! {
            () = due_signal.notified() => {}
            () = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
        }
        loop {
            let free = slots.available_permits();
            if free == 0 {
                break;
            }
            let now = s.clock.now_ms();
            let claimed = s
                .store
                .write(move |conn, _| claim(conn, now, now + lease_ms, free))
                .await;
            let due = match claimed {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "could not claim webhook deliveries");
                    break;
                }
            };
            let full = due.len() == free;
            for d in due {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (s, http) = (s.clone(), http.clone());
                tokio::spawn(async move {
                    deliver(s, http, d).await;
                    drop(permit);
                });
            }
            if !full {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped_at_an_hour() {
        for attempt in 1..=5 {
            let plain = 1_000 * (1 << (attempt - 1));
            let b = backoff_ms(1_000, attempt);
            assert!(
                b >= plain * 8 / 10 && b <= plain * 12 / 10,
                "{attempt}: {b}"
            );
        }
        assert!(backoff_ms(1_000, 60) <= MAX_RETRY_INTERVAL_MS * 12 / 10);
        assert!(backoff_ms(1_000, 60) >= MAX_RETRY_INTERVAL_MS * 8 / 10);
    }

    #[test]
    fn only_web_urls_are_endpoints() {
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("https://shop.example/hook").is_ok());
        assert!(check_url("ftp://shop.example/hook").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url(&format!("https://a.example/{}", "x".repeat(3000))).is_err());
    }
}
