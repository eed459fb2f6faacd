//! Payer accounts: balance view, receipts and the account event stream (for the companion),
//! plus the developer endpoints that create accounts and top them up.

use crate::db::{Connection, OptionalExtension};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use protocol::ErrorBody;
use protocol::{
    AccountEvent, AccountId, AccountView, AuditReport, CreateAccount, IdempotencyKey, Money,
    OrderId, Page, Receipt, TopUp,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ClientIp};
use crate::ledger::{self, AccountKind};
use crate::orders::{funding_from_str, load_order, receipt_of};
use crate::paging::PageQuery;
use crate::{AppState, pin, sessions, sse};

/// Longest account or merchant name.
pub const MAX_NAME_CHARS: usize = 64;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(view))
        .routes(routes!(receipts))
        .routes(routes!(payment))
        .routes(routes!(events))
        .routes(routes!(create))
        .routes(routes!(top_up))
        .routes(routes!(audit))
}

fn parse_account(s: &str) -> ApiResult<AccountId> {
    AccountId::parse(s).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

pub fn account_view(conn: &Connection, id: &AccountId) -> ApiResult<AccountView> {
    let acc = ledger::get_account(conn, id.as_str())?.ok_or(ApiError::UnknownAccount)?;
    let card: Option<String> = conn
        .prepare_cached("SELECT id FROM accounts WHERE owner = ?1 AND kind = 'card'")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    let card_available = card
        .map(|c| ledger::get_account(conn, &c))
        .transpose()?
        .flatten()
        .map(|c| Money::new(c.available().max(0) as u64, c.currency));
    Ok(AccountView {
        id: acc.id.clone(),
        name: acc.name.clone(),
        balance: Money::new(acc.balance.max(0) as u64, acc.currency),
        held: Money::new(acc.held.max(0) as u64, acc.currency),
        card_available,
    })
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}",
    operation_id = "accounts_view",
    tag = "accounts",
    summary = "An account: balances and card",
    params(
        ("id" = String, Path, description = "The account id"),
    ),
    responses(
        (status = 200, description = "OK", body = AccountView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn view(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<AccountView>> {
    let id = parse_account(&id)?;
    sessions::authorize(&s, &headers, &id).await?;
    Ok(Json(
        s.store.read(move |conn| account_view(conn, &id)).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/receipts",
    operation_id = "accounts_receipts",
    tag = "accounts",
    summary = "The account's receipts, newest first",
    params(
        ("id" = String, Path, description = "The account id"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "OK", body = Page<Receipt>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn receipts(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Page<Receipt>>> {
    let id = parse_account(&id)?;
    let page = q.parse()?;
    sessions::authorize(&s, &headers, &id).await?;
    let list = s
        .store
        .read(move |conn| {
            let (ms, key) = page.key();
            let rows: Vec<(String, String, String)> = conn
                .prepare_cached(
                    "SELECT order_id, idem_key, funding FROM payments
                     WHERE payer = ?1 AND (paid_at_ms < ?2 OR (paid_at_ms = ?2 AND idem_key < ?3))
                     ORDER BY paid_at_ms DESC, idem_key DESC LIMIT ?4",
                )?
                .query_map(
                    crate::db::params![id.as_str(), ms, key, page.fetch()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?
                .collect::<Result<_, _>>()?;
            let mut items = Vec::with_capacity(rows.len());
            for (order_id, key, funding) in rows {
                items.push(receipt_row(conn, &id, &order_id, &key, &funding)?);
            }
            let next_cursor = page.finish(&mut items, |r: &Receipt| {
                (r.paid_at_ms, r.payment_id.as_str().to_owned())
            });
            Ok(Page { items, next_cursor })
        })
        .await?;
    Ok(Json(list))
}

fn receipt_row(
    conn: &Connection,
    payer: &AccountId,
    order_id: &str,
    key: &str,
    funding: &str,
) -> ApiResult<Receipt> {
    let order_id = OrderId::parse(order_id).map_err(ApiError::internal)?;
    let row = load_order(conn, &order_id)?.ok_or(ApiError::UnknownOrder)?;
    Ok(receipt_of(
        &row,
        &IdempotencyKey::parse(key).map_err(ApiError::internal)?,
        payer,
        funding_from_str(funding),
    ))
}

/// `GET /v1/accounts/{id}/payments/{key}`: the payment made with idempotency key `key`,
/// or `unknown_payment`. A client whose pay request timed out asks this instead of
/// paying again: the answer says for certain whether money moved.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/payments/{key}",
    operation_id = "accounts_payment",
    tag = "accounts",
    summary = "Did the payment with this idempotency key happen? Ask this after a timeout instead of paying again",
    params(
        ("id" = String, Path, description = "The account id"),
        ("key" = String, Path, description = "The idempotency key of the payment"),
    ),
    responses(
        (status = 200, description = "OK", body = Receipt),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_payment`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn payment(
    State(s): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Json<Receipt>> {
    let id = parse_account(&id)?;
    let key = IdempotencyKey::parse(&key).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    sessions::authorize(&s, &headers, &id).await?;
    let receipt = s
        .store
        .read(move |conn| {
            let row: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT order_id, funding FROM payments WHERE payer = ?1 AND idem_key = ?2",
                )?
                .query_row([id.as_str(), key.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let (order_id, funding) = row.ok_or(ApiError::UnknownPayment)?;
            receipt_row(conn, &id, &order_id, key.as_str(), &funding)
        })
        .await?;
    Ok(Json(receipt))
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/events",
    operation_id = "accounts_events",
    tag = "accounts",
    summary = "Follow an account: receipts as server-sent events",
    params(
        ("id" = String, Path, description = "The account id"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events; each `data:` is one JSON event", body = AccountEvent, content_type = "text/event-stream"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn events(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let id = parse_account(&id)?;
    sessions::authorize(&s, &headers, &id).await?;
    let slot = sse::slot(&s, ip)?;
    let rx = s.hub.subscribe_account(&id)?;
    let first = AccountEvent::Hello { account: id };
    Ok(sse::stream(slot, first, rx, s.shutdown.clone(), |_| false))
}

/// Checks the developer bearer token; the endpoints are off when none is configured.
pub fn admin(s: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let configured = s
        .config
        .admin_token
        .as_deref()
        .ok_or(ApiError::Unauthorized(
            "developer endpoints are disabled (no --admin-token)",
        ))?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if sessions::constant_time_eq(given.as_bytes(), configured.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("wrong admin token"))
    }
}

#[utoipa::path(
    post,
    path = "/v1/admin/accounts",
    operation_id = "accounts_create",
    tag = "admin",
    summary = "Create a payer account",
    request_body = CreateAccount,
    responses(
        (status = 200, description = "OK", body = AccountView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateAccount>,
) -> ApiResult<Json<AccountView>> {
    admin(&s, &headers)?;
    let pin = req.pin.clone();
    let hash = tokio::task::spawn_blocking(move || pin::hash_pin(&pin))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let now = s.clock.now_ms();
    let view = s
        .store
        .write(move |conn, _| {
            let name = &crate::orders::clean_text(&req.name, MAX_NAME_CHARS, "name")?;
            ledger::create_account(
                conn,
                req.id.as_str(),
                AccountKind::Wallet,
                None,
                name,
                req.currency,
                Some(&hash),
                now,
            )?;
            account_view(conn, &req.id)
        })
        .await?;
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/v1/admin/topups",
    operation_id = "accounts_top_up",
    tag = "admin",
    summary = "Add money to a wallet (from the sandbox's funding account)",
    request_body = TopUp,
    responses(
        (status = 200, description = "OK", body = AccountView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn top_up(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<TopUp>,
) -> ApiResult<Json<AccountView>> {
    admin(&s, &headers)?;
    ledger::check_amount(req.amount)?;
    let now = s.clock.now_ms();
    let view = s
        .store
        .write(move |conn, _| {
            let acc = ledger::get_account(conn, req.account.as_str())?
                .filter(|a| a.kind == "wallet" || a.kind == "card")
                .ok_or(ApiError::UnknownAccount)?;
            if acc.currency != req.amount.currency {
                return Err(ApiError::InvalidRequest(format!(
                    "account {} holds {}",
                    acc.id, acc.currency
                )));
            }
            ledger::top_up(conn, req.account.as_str(), req.amount, now)?;
            account_view(conn, &req.account)
        })
        .await?;
    Ok(Json(view))
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "accounts_audit",
    tag = "ledger",
    summary = "Check the ledger: every transfer balanced, every balance the sum of its transfers",
    responses(
        (status = 200, description = "OK", body = AuditReport),
    ),
)]
async fn audit(State(s): State<AppState>) -> ApiResult<Json<AuditReport>> {
    Ok(Json(s.store.read(ledger::audit).await?))
}
