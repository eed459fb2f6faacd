//! Pay by phone number (SPEC W2–W6): the TV sends a number typed on its pad; a bound
//! number gets an SMS with a 6-digit code whose reply completes the payment, an unbound
//! number gets an SMS with the pay link.

use crate::db::{OptionalExtension, params};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use protocol::ErrorBody;
use protocol::{
    AccountId, IdempotencyKey, OrderStatus, Page, PhoneConfirm, PhonePayKind, PhonePayRequest,
    PhonePayStarted, Receipt, SmsMessage,
};
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::orders::{load_order, parse_order_id, pay_in_tx};
use crate::paging::PageQuery;
use crate::sms::{Outbox, outbox, parse_phone};
use crate::{AppState, accounts, sessions};

/// How long an SMS code works.
pub const CODE_TTL_S: u64 = 5 * 60;
/// Wrong codes allowed before the code is void.
pub const CODE_ATTEMPTS: u32 = 3;
/// Phone-number requests (SMS sent) per order.
pub const MAX_PHONE_REQUESTS_PER_ORDER: u32 = 3;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(confirm))
        .routes(routes!(account_sms))
        .routes(routes!(admin_outbox))
}

fn code_hash(order: &str, code: &str) -> String {
    protocol::hex(&Sha256::digest(format!("{order}:{code}").as_bytes()))
}

/// A uniformly random 6-digit code (rejection sampling avoids modulo bias).
fn random_code() -> String {
    loop {
        let n = u32::from_le_bytes(protocol::random_bytes::<4>());
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/phone",
    operation_id = "phone_start",
    tag = "phone",
    summary = "Pay by phone number: the server texts a code to the number (or says it is unknown)",
    params(
        ("id" = String, Path, description = "The order id"),
    ),
    request_body = PhonePayRequest,
    responses(
        (status = 200, description = "OK", body = PhonePayStarted),
        (status = 404, description = "`unknown_order`", body = ErrorBody),
        (status = 409, description = "`already_paid`", body = ErrorBody),
        (status = 410, description = "`order_expired`, `order_cancelled`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PhonePayRequest>,
) -> ApiResult<Json<PhonePayStarted>> {
    let id = parse_order_id(&id)?;
    let now = s.clock.now_ms();
    let token_hash = sessions::hash_token(&req.tv_token);
    let code = random_code();
    let hash = code_hash(id.as_str(), &code);
    let expires = now + CODE_TTL_S as i64 * 1000;
    let phone = req.phone.clone();
    let oid = id.clone();
    let (row, bound) = s
        .store
        .write(move |conn, _| {
            let row = load_order(conn, &oid)?.ok_or(ApiError::UnknownOrder)?;
            if !sessions::constant_time_eq(row.tv_token_hash.as_bytes(), token_hash.as_bytes()) {
                return Err(ApiError::Unauthorized(
                    "only the TV showing an order can send it to a phone",
                ));
            }
            match row.effective_status(now) {
                OrderStatus::Pending => {}
                OrderStatus::Paid => return Err(ApiError::AlreadyPaid),
                OrderStatus::Expired => return Err(ApiError::OrderExpired),
                OrderStatus::Cancelled => return Err(ApiError::OrderCancelled),
            }
            let count: u32 = conn
                .prepare_cached(
                    "INSERT INTO phone_requests (order_id, count) VALUES (?1, 1)
                     ON CONFLICT(order_id) DO UPDATE SET count = phone_requests.count + 1
                     RETURNING count",
                )?
                .query_row([oid.as_str()], |r| r.get(0))?;
            if count > MAX_PHONE_REQUESTS_PER_ORDER {
                return Err(ApiError::TooManyAttempts);
            }
            let bound: Option<String> = conn
                .prepare_cached("SELECT account FROM phone_bindings WHERE phone = ?1")?
                .query_row([phone.as_str()], |r| r.get(0))
                .optional()?;
            if let Some(account) = &bound {
                conn.prepare_cached(
                    "INSERT INTO phone_challenges
                        (order_id, phone, account, code_hash, expires_at_ms, attempts_left, used)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                     ON CONFLICT (order_id) DO UPDATE SET phone = excluded.phone,
                        account = excluded.account, code_hash = excluded.code_hash,
                        expires_at_ms = excluded.expires_at_ms,
                        attempts_left = excluded.attempts_left, used = 0",
                )?
                .execute(params![
                    oid.as_str(),
                    phone.as_str(),
                    account,
                    hash,
                    expires,
                    CODE_ATTEMPTS
                ])?;
            }
            Ok((row, bound.is_some()))
        })
        .await?;
    let what = format!("{} ({}) on {}", row.item.title, row.amount, row.device.name);
    let (kind, body) = if bound {
        (
            PhonePayKind::CodeSent,
            format!(
                "Couchpay: pay {what}? Your code is {code}. TV code {}. It works for {} \
                 minutes. Never share it with anyone who calls you.",
                row.short_code.display(),
                CODE_TTL_S / 60
            ),
        )
    } else {
        (
            PhonePayKind::LinkSent,
            format!(
                "Couchpay: {what}. Pay here: {}",
                row.to_order(&s.public_url).pay_link
            ),
        )
    };
    s.sms.send(&req.phone, &body, now).await?;
    tracing::info!(order = %id, phone = %req.phone.masked(), ?kind, "phone payment started");
    Ok(Json(PhonePayStarted {
        kind,
        phone_masked: req.phone.masked(),
        code_expires_at_ms: bound.then_some(expires),
    }))
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/phone/confirm",
    operation_id = "phone_confirm",
    tag = "phone",
    summary = "Confirm a phone payment with the texted code",
    params(
        ("id" = String, Path, description = "The order id"),
    ),
    request_body = PhoneConfirm,
    responses(
        (status = 200, description = "OK", body = Receipt),
        (status = 401, description = "`wrong_code`", body = ErrorBody),
        (status = 402, description = "`insufficient_funds`", body = ErrorBody),
        (status = 404, description = "`unknown_order`", body = ErrorBody),
        (status = 409, description = "`already_paid`, `already_owned`", body = ErrorBody),
        (status = 410, description = "`order_expired`, `order_cancelled`, `code_expired`", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`", body = ErrorBody),
    ),
)]
async fn confirm(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PhoneConfirm>,
) -> ApiResult<Json<Receipt>> {
    let id = parse_order_id(&id)?;
    let code = req.code.trim().to_owned();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::InvalidRequest("the code is 6 digits".into()));
    }
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    s.store
        .write(move |conn, events| {
            let ch: Option<(String, String, String, i64, u32, bool)> = conn
                .prepare_cached(
                    "SELECT phone, account, code_hash, expires_at_ms, attempts_left, used
                     FROM phone_challenges WHERE order_id = ?1",
                )?
                .query_row([id.as_str()], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()?;
            let Some((phone, account, hash, expires, left, used)) = ch else {
                return Err(ApiError::CodeExpired("no code was sent for this order"));
            };
            if phone != req.phone.as_str() {
                return Err(ApiError::CodeExpired(
                    "no code was sent to this number for this order",
                ));
            }
            if left == 0 {
                return Err(ApiError::TooManyAttempts);
            }
            if !used && now >= expires {
                return Err(ApiError::CodeExpired(
                    "the code has expired; ask the TV for a new one",
                ));
            }
            // Spend a try before comparing, with a conditional update: guesses racing
            // through other writers or nodes wait for this row and see what is left, so
            // no more than the allowed number are ever compared.
            let left: Option<u32> = conn
                .prepare_cached(
                    "UPDATE phone_challenges SET attempts_left = attempts_left - 1
                     WHERE order_id = ?1 AND attempts_left > 0 RETURNING attempts_left",
                )?
                .query_row([id.as_str()], |r| r.get(0))
                .optional()?;
            let Some(left) = left else {
                return Err(ApiError::TooManyAttempts);
            };
            if !sessions::constant_time_eq(
                hash.as_bytes(),
                code_hash(id.as_str(), &code).as_bytes(),
            ) {
                // Keep the spent try even though this request fails.
                return Ok(Err(if left == 0 {
                    ApiError::TooManyAttempts
                } else {
                    ApiError::WrongCode { remaining: left }
                }));
            }
            // The right code costs no try (a repeated right reply replays the payment).
            conn.prepare_cached(
                "UPDATE phone_challenges SET attempts_left = attempts_left + 1 WHERE order_id = ?1",
            )?
            .execute([id.as_str()])?;
            let address: Option<String> = conn
                .prepare_cached("SELECT delivery_address FROM phone_bindings WHERE phone = ?1")?
                .query_row([phone.as_str()], |r| r.get(0))
                .optional()?
                .flatten();
            let payer = AccountId::parse(&account).map_err(ApiError::internal)?;
            // One payment per order through this path: a repeated correct reply replays it.
            let key = IdempotencyKey::parse(&format!("sms-{id}")).map_err(ApiError::internal)?;
            let receipt = pay_in_tx(conn, events, &server, &id, &payer, &key, address, now)?;
            conn.prepare_cached("UPDATE phone_challenges SET used = 1 WHERE order_id = ?1")?
                .execute([id.as_str()])?;
            Ok(Ok(receipt))
        })
        .await?
        .inspect(crate::orders::log_paid)
        .map(Json)
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/sms",
    operation_id = "phone_account_sms",
    tag = "phone",
    summary = "The texts sent to the account's phone, newest first",
    params(
        ("id" = String, Path, description = "The account id"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "OK", body = Page<SmsMessage>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn account_sms(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Page<SmsMessage>>> {
    let id = AccountId::parse(&id).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let page = q.parse()?;
    sessions::authorize(&s, &headers, &id).await?;
    let list = s
        .store
        .read(move |conn| outbox(conn, &Outbox::Account(id), &page))
        .await?;
    Ok(Json(list))
}

#[utoipa::path(
    get,
    path = "/v1/admin/sms/{phone}",
    operation_id = "phone_admin_outbox",
    tag = "admin",
    summary = "The stub's SMS outbox for one number (developers read codes here)",
    params(
        ("phone" = String, Path, description = "The phone number"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "OK", body = Page<SmsMessage>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn admin_outbox(
    State(s): State<AppState>,
    Path(phone): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Page<SmsMessage>>> {
    accounts::admin(&s, &headers)?;
    let phone = parse_phone(&phone)?;
    let page = q.parse()?;
    Ok(Json(
        s.store
            .read(move |conn| outbox(conn, &Outbox::Phone(phone), &page))
            .await?,
    ))
}
