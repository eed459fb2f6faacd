//! Merchants: created by the admin API with their API keys; a key gives read access to
//! that merchant's balance, orders and payments (with delivery addresses for goods).
//! Linked cards are created here too, by the admin API.
//!
//! Keys carry 256 random bits and are stored as SHA-256 hashes, like session tokens:
//! a leaked database reveals no usable key.

use crate::db::{Connection, OptionalExtension, params};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use protocol::ErrorBody;
use protocol::{
    AccountId, AccountView, CreateCard, CreateMerchant, CreateMerchantKey, IdempotencyKey,
    MerchantKey, MerchantPayment, MerchantView, Money, Order, Page, Token,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::accounts::{MAX_NAME_CHARS, account_view, admin};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::ledger::{self, AccountKind};
use crate::orders::{
    ORDER_COLUMN_COUNT, ORDER_COLUMNS, clean_text, funding_from_str, order_from_row, receipt_of,
};
use crate::paging::PageQuery;
use crate::{AppState, sessions};

/// Most API keys one merchant may hold.
pub const MAX_KEYS_PER_MERCHANT: i64 = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_merchant))
        .routes(routes!(create_key))
        .routes(routes!(create_card))
        .routes(routes!(view))
        .routes(routes!(orders))
        .routes(routes!(payments))
}

fn parse_account(s: &str) -> ApiResult<AccountId> {
    AccountId::parse(s).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

fn merchant_view(conn: &Connection, id: &AccountId) -> ApiResult<MerchantView> {
    let acc = ledger::get_account(conn, id.as_str())?
        .filter(|a| a.kind == "merchant")
        .ok_or(ApiError::UnknownAccount)?;
    Ok(MerchantView {
        id: acc.id.clone(),
        name: acc.name,
        balance: Money::new(acc.balance.max(0) as u64, acc.currency),
    })
}

/// Checks the request's merchant key for merchant `id`.
async fn authorize(s: &AppState, headers: &HeaderMap, id: &AccountId) -> ApiResult<()> {
    let hash = sessions::hash_token(&sessions::bearer(headers)?);
    let id = id.clone();
    s.store
        .read(move |conn| {
            let owner: Option<String> = conn
                .prepare_cached("SELECT merchant FROM merchant_keys WHERE key_hash = ?1")?
                .query_row([&hash], |r| r.get(0))
                .optional()?;
            match owner {
                Some(m) if m == id.as_str() => Ok(()),
                _ => Err(ApiError::Unauthorized(
                    "a merchant API key for this merchant is required",
                )),
            }
        })
        .await
}

#[utoipa::path(
    post,
    path = "/v1/admin/merchants",
    operation_id = "merchants_create_merchant",
    tag = "admin",
    summary = "Create a merchant account",
    request_body = CreateMerchant,
    responses(
        (status = 200, description = "OK", body = MerchantView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn create_merchant(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateMerchant>,
) -> ApiResult<Json<MerchantView>> {
    admin(&s, &headers)?;
    let name = clean_text(&req.name, MAX_NAME_CHARS, "name")?;
    let now = s.clock.now_ms();
    let view = s
        .store
        .write(move |conn, _| {
            ledger::create_account(
                conn,
                req.id.as_str(),
                AccountKind::Merchant,
                None,
                &name,
                req.currency,
                None,
                now,
            )?;
            merchant_view(conn, &req.id)
        })
        .await?;
    Ok(Json(view))
}

#[utoipa::path(
    post,
    path = "/v1/admin/merchants/{id}/keys",
    operation_id = "merchants_create_key",
    tag = "admin",
    summary = "Issue an API key for a merchant back end (shown once)",
    params(
        ("id" = String, Path, description = "The merchant account id"),
    ),
    request_body = CreateMerchantKey,
    responses(
        (status = 200, description = "OK", body = MerchantKey),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn create_key(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateMerchantKey>,
) -> ApiResult<Json<MerchantKey>> {
    admin(&s, &headers)?;
    let id = parse_account(&id)?;
    let label = clean_text(&req.label, MAX_NAME_CHARS, "label")?;
    let key = Token::random();
    let hash = sessions::hash_token(&key);
    let now = s.clock.now_ms();
    let (merchant, l) = (id.clone(), label.clone());
    s.store
        .write(move |conn, _| {
            merchant_view(conn, &merchant)?;
            let held: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM merchant_keys WHERE merchant = ?1")?
                .query_row([merchant.as_str()], |r| r.get(0))?;
            if held >= MAX_KEYS_PER_MERCHANT {
                return Err(ApiError::LimitExceeded(format!(
                    "a merchant holds at most {MAX_KEYS_PER_MERCHANT} keys"
                )));
            }
            conn.prepare_cached(
                "INSERT INTO merchant_keys (key_hash, merchant, label, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![hash, merchant.as_str(), l, now])?;
            Ok(())
        })
        .await?;
    tracing::info!(merchant = %id, "merchant API key created");
    Ok(Json(MerchantKey {
        merchant: id,
        label,
        key,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/admin/cards",
    operation_id = "merchants_create_card",
    tag = "admin",
    summary = "Give a payer a card (a second funding source)",
    request_body = CreateCard,
    responses(
        (status = 200, description = "OK", body = AccountView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn create_card(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CreateCard>,
) -> ApiResult<Json<AccountView>> {
    admin(&s, &headers)?;
    let now = s.clock.now_ms();
    let view = s
        .store
        .write(move |conn, _| {
            let wallet = ledger::get_account(conn, req.owner.as_str())?
                .filter(|a| a.kind == "wallet")
                .ok_or(ApiError::UnknownAccount)?;
            let has_card: bool = conn
                .prepare_cached("SELECT 1 FROM accounts WHERE owner = ?1 AND kind = 'card'")?
                .query_row([req.owner.as_str()], |_| Ok(()))
                .optional()?
                .is_some();
            if has_card {
                return Err(ApiError::InvalidRequest(format!(
                    "wallet {} already has a linked card",
                    req.owner
                )));
            }
            ledger::create_account(
                conn,
                req.id.as_str(),
                AccountKind::Card,
                Some(req.owner.as_str()),
                &format!("Card of {}", wallet.name),
                wallet.currency,
                None,
                now,
            )?;
            account_view(conn, &req.owner)
        })
        .await?;
    Ok(Json(view))
}

#[utoipa::path(
    get,
    path = "/v1/merchants/{id}",
    operation_id = "merchants_view",
    tag = "merchants",
    summary = "A merchant and its balance",
    params(
        ("id" = String, Path, description = "The merchant account id"),
    ),
    responses(
        (status = 200, description = "OK", body = MerchantView),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
    ),
    security(("merchant_key" = [])),
)]
async fn view(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<MerchantView>> {
    let id = parse_account(&id)?;
    authorize(&s, &headers, &id).await?;
    Ok(Json(
        s.store.read(move |conn| merchant_view(conn, &id)).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/merchants/{id}/orders",
    operation_id = "merchants_orders",
    tag = "merchants",
    summary = "The merchant's orders, newest first",
    params(
        ("id" = String, Path, description = "The merchant account id"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "OK", body = Page<Order>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("merchant_key" = [])),
)]
async fn orders(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Page<Order>>> {
    let id = parse_account(&id)?;
    let page = q.parse()?;
    authorize(&s, &headers, &id).await?;
    let server = s.public_url.clone();
    let now = s.clock.now_ms();
    let list = s
        .store
        .read(move |conn| {
            let (ms, after) = page.key();
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE merchant_id = ?1 AND (created_at_ms < ?2 OR (created_at_ms = ?2 AND id < ?3))
                     ORDER BY created_at_ms DESC, id DESC LIMIT ?4"
                ))?
                .query_map(params![id.as_str(), ms, after, page.fetch()], order_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let mut items: Vec<Order> = rows
                .iter()
                .map(|r| {
                    let mut o = r.to_order(&server);
                    o.status = r.effective_status(now);
                    o
                })
                .collect();
            let next_cursor =
                page.finish(&mut items, |o| (o.created_at_ms, o.id.as_str().to_owned()));
            Ok(Page { items, next_cursor })
        })
        .await?;
    Ok(Json(list))
}

#[utoipa::path(
    get,
    path = "/v1/merchants/{id}/payments",
    operation_id = "merchants_payments",
    tag = "merchants",
    summary = "The payments the merchant received, newest first",
    params(
        ("id" = String, Path, description = "The merchant account id"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "OK", body = Page<MerchantPayment>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("merchant_key" = [])),
)]
async fn payments(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Page<MerchantPayment>>> {
    let id = parse_account(&id)?;
    let page = q.parse()?;
    authorize(&s, &headers, &id).await?;
    let list = s
        .store
        .read(move |conn| {
            let (ms, after) = page.key();
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT {cols}, p.idem_key, p.funding, p.payer FROM payments p
                     JOIN orders o ON o.id = p.order_id
                     WHERE o.merchant_id = ?1
                       AND (p.paid_at_ms < ?2 OR (p.paid_at_ms = ?2 AND p.order_id < ?3))
                     ORDER BY p.paid_at_ms DESC, p.order_id DESC LIMIT ?4",
                    cols = ORDER_COLUMNS
                        .split(',')
                        .map(|c| format!("o.{}", c.trim()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))?
                .query_map(params![id.as_str(), ms, after, page.fetch()], |r| {
                    Ok((
                        order_from_row(r)?,
                        r.get::<_, String>(ORDER_COLUMN_COUNT)?,
                        r.get::<_, String>(ORDER_COLUMN_COUNT + 1)?,
                        r.get::<_, String>(ORDER_COLUMN_COUNT + 2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut items = Vec::with_capacity(rows.len());
            for (row, key, funding, payer) in rows {
                let key = IdempotencyKey::parse(&key).map_err(ApiError::internal)?;
                let payer = AccountId::parse(&payer).map_err(ApiError::internal)?;
                items.push(MerchantPayment {
                    receipt: receipt_of(&row, &key, &payer, funding_from_str(&funding)),
                    delivery_address: row.delivery_address.clone(),
                });
            }
            let next_cursor = page.finish(&mut items, |p: &MerchantPayment| {
                (p.receipt.paid_at_ms, p.receipt.order_id.as_str().to_owned())
            });
            Ok(Page { items, next_cursor })
        })
        .await?;
    Ok(Json(list))
}
