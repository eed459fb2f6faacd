//! Orders: create, read, look up by short code, pay, cancel, expire, and their events
//! (SPEC P1, P5–P8).

use std::collections::HashSet;

use crate::db::{Connection, OptionalExtension, Row, params};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use protocol::ErrorBody;
use protocol::{
    AccountEvent, AccountId, CancelOrder, CatalogItem, CreateOrder, CreatedOrder, Device, DeviceId,
    Entitlement, Entitlements, FundingSource, IdempotencyKey, ItemId, ItemKind, Merchant, Money,
    Order, OrderEvent, OrderId, OrderItem, OrderStatus, PayLink, PayRequest, Receipt, ServerUrl,
    ShortCode, Token,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::extract::{ApiJson, ClientIp, idempotency_key};
use crate::orderset::NewOrder;
use crate::paging::PageQuery;
use crate::sessions::Proof;
use crate::{AppState, ledger, sessions, sse};

/// Longest friendly device name accepted.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;
/// Longest delivery address accepted.
pub const MAX_ADDRESS_CHARS: usize = 500;
/// Orders expired per sweep transaction.
const SWEEP_BATCH: usize = 500;
/// Attempts to find a short code not used by another live order.
const SHORT_CODE_ATTEMPTS: usize = 8;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(fetch))
        .routes(routes!(by_code))
        .routes(routes!(pay))
        .routes(routes!(cancel))
        .routes(routes!(events))
        .routes(routes!(entitlements))
}

pub fn parse_order_id(s: &str) -> ApiResult<OrderId> {
    OrderId::parse(s).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

/// An order as stored.
#[derive(Clone, Debug)]
pub struct OrderRow {
    pub id: OrderId,
    pub short_code: ShortCode,
    pub item: OrderItem,
    pub period_days: Option<u32>,
    pub amount: Money,
    pub merchant: Merchant,
    pub device: Device,
    pub tv_token_hash: String,
    pub status: OrderStatus,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub paid_at_ms: Option<i64>,
    pub payer: Option<String>,
    pub delivery_address: Option<String>,
    /// The product a paid order registers a device of (SPEC D1), for devices sold here.
    pub device_product: Option<String>,
}

pub(crate) fn kind_str(k: ItemKind) -> &'static str {
    match k {
        ItemKind::Video => "video",
        ItemKind::Membership => "membership",
        ItemKind::Physical => "physical",
    }
}

pub(crate) fn bad_row(what: &'static str) -> crate::db::Error {
    crate::db::Error::Conversion {
        column: 0,
        expected: what,
        found: "a value out of its domain".into(),
    }
}

pub const ORDER_COLUMNS: &str =
    "id, short_code, item_id, item_title, item_kind, period_days, amount,
    currency, merchant_id, merchant_name, device_id, device_name, tv_token_hash, status,
    created_at_ms, expires_at_ms, paid_at_ms, payer, delivery_address, device_product";

/// How many columns [`ORDER_COLUMNS`] selects (the index of a column joined after them).
pub const ORDER_COLUMN_COUNT: usize = 20;

pub fn order_from_row(r: &Row<'_>) -> crate::db::Result<OrderRow> {
    let s = |i: usize| r.get::<_, String>(i);
    let kind = match s(4)?.as_str() {
        "video" => ItemKind::Video,
        "membership" => ItemKind::Membership,
        "physical" => ItemKind::Physical,
        _ => return Err(bad_row("item_kind")),
    };
    let status = match s(13)?.as_str() {
        "pending" => OrderStatus::Pending,
        "paid" => OrderStatus::Paid,
        "expired" => OrderStatus::Expired,
        "cancelled" => OrderStatus::Cancelled,
        _ => return Err(bad_row("status")),
    };
    Ok(OrderRow {
        id: OrderId::parse(&s(0)?).map_err(|_| bad_row("id"))?,
        short_code: ShortCode::parse(&s(1)?).map_err(|_| bad_row("short_code"))?,
        item: OrderItem {
            id: ItemId::parse(&s(2)?).map_err(|_| bad_row("item_id"))?,
            title: s(3)?,
            kind,
        },
        period_days: r.get(5)?,
        amount: Money::new(
            r.get::<_, i64>(6)? as u64,
            protocol::Currency::parse(&s(7)?).map_err(|_| bad_row("currency"))?,
        ),
        merchant: Merchant {
            id: AccountId::parse(&s(8)?).map_err(|_| bad_row("merchant_id"))?,
            name: s(9)?,
        },
        device: Device {
            id: DeviceId::parse(&s(10)?).map_err(|_| bad_row("device_id"))?,
            name: s(11)?,
        },
        tv_token_hash: s(12)?,
        status,
        created_at_ms: r.get(14)?,
        expires_at_ms: r.get(15)?,
        paid_at_ms: r.get(16)?,
        payer: r.get(17)?,
        delivery_address: r.get(18)?,
        device_product: r.get(19)?,
    })
}

pub fn load_order(conn: &Connection, id: &OrderId) -> ApiResult<Option<OrderRow>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))?
        .query_row([id.as_str()], order_from_row)
        .optional()?)
}

impl OrderRow {
    pub fn to_order(&self, server: &ServerUrl) -> Order {
        Order {
            id: self.id.clone(),
            short_code: self.short_code.clone(),
            pay_link: PayLink::new(server.clone(), self.id.clone()),
            item: self.item.clone(),
            amount: self.amount,
            merchant: self.merchant.clone(),
            device: self.device.clone(),
            status: self.status,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            paid_at_ms: self.paid_at_ms,
        }
    }

    /// The status as payers must see it: a pending order past its expiry is expired
    /// even before the sweeper has marked it.
    pub fn effective_status(&self, now_ms: i64) -> OrderStatus {
        if self.status == OrderStatus::Pending && now_ms >= self.expires_at_ms {
            OrderStatus::Expired
        } else {
            self.status
        }
    }
}

/// Checks text a person will read as a check (see `protocol::text`).
pub fn clean_text(s: &str, max_chars: usize, what: &str) -> ApiResult<String> {
    protocol::text::display_text(s, max_chars)
        .map_err(|e| ApiError::InvalidRequest(format!("{what} {e}")))
}

/// Whether `device` already has `item` in a way that makes buying it again pointless:
/// a film it owns, or a membership that is still active. Goods can always be bought again.
fn already_owned(
    conn: &Connection,
    device: &DeviceId,
    item: &ItemId,
    kind: ItemKind,
    now: i64,
) -> ApiResult<bool> {
    if kind == ItemKind::Physical {
        return Ok(false);
    }
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM entitlements e JOIN orders o ON o.id = e.order_id
             WHERE e.device_id = ?1 AND o.item_id = ?2
               AND (e.valid_until_ms IS NULL OR e.valid_until_ms > ?3) LIMIT 1",
        )?
        .query_row(params![device.as_str(), item.as_str(), now], |_| Ok(()))
        .optional()?
        .is_some())
}

#[utoipa::path(
    post,
    path = "/v1/orders",
    operation_id = "orders_create",
    tag = "orders",
    summary = "Create an order for one catalog item (the TV)",
    request_body = CreateOrder,
    responses(
        (status = 200, description = "OK", body = CreatedOrder),
        (status = 404, description = "`unknown_item`", body = ErrorBody),
        (status = 409, description = "`already_owned`", body = ErrorBody),
    ),
)]
async fn create(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<CreateOrder>,
) -> ApiResult<Json<CreatedOrder>> {
    let item = s
        .catalog
        .item(&req.item_id)
        .ok_or(ApiError::UnknownItem)?
        .clone();
    let device_name = clean_text(&req.device_name, MAX_DEVICE_NAME_CHARS, "device_name")?;
    let now = s.clock.now_ms();
    let expires = now + (s.config.order_ttl_s as i64) * 1000;
    let tv_token = Token::random();
    let token_hash = sessions::hash_token(&tv_token);
    let input = NewOrder {
        item,
        device: req.device_id,
        device_name,
        token_hash,
        now,
        expires,
        server: s.public_url.clone(),
    };
    let alone = input.clone();
    let order = s
        .store
        .create_order(input, move |conn, _| create_in_tx(conn, &alone))
        .await?;
    tracing::info!(order = %order.id, item = %order.item.id, device = %order.device.id, "order created");
    Ok(Json(CreatedOrder { order, tv_token }))
}

/// Creates the order `o` asks for, unless its device owns the item already.
fn create_in_tx(conn: &Connection, o: &NewOrder) -> ApiResult<Order> {
    if already_owned(conn, &o.device, &o.item.id, o.item.kind, o.now)? {
        return Err(ApiError::AlreadyOwned);
    }
    let row = insert_order(
        conn,
        &o.item,
        &o.device,
        &o.device_name,
        &o.token_hash,
        o.now,
        o.expires,
    )?;
    Ok(row.to_order(&o.server))
}

/// The `(device, item)` pairs among those asked for (one per index of the three
/// arrays) that the device owns at the time given beside them (PostgreSQL: arrays).
pub(crate) fn owned_among(
    conn: &Connection,
    devices: &[String],
    items: &[String],
    nows: &[i64],
) -> crate::db::Result<HashSet<(String, String)>> {
    let mut owned = HashSet::new();
    conn.prepare_cached(
        "SELECT DISTINCT e.device_id, o.item_id FROM entitlements e
         JOIN orders o ON o.id = e.order_id
         JOIN unnest(?1::text[], ?2::text[], ?3::bigint[]) AS k(device, item, now)
           ON e.device_id = k.device AND o.item_id = k.item
         WHERE e.valid_until_ms IS NULL OR e.valid_until_ms > k.now",
    )?
    .for_each(params![devices, items, nows], |r| {
        owned.insert((r.get(0)?, r.get(1)?));
        Ok(())
    })?;
    Ok(owned)
}

/// Inserts a pending order for `item` on `device` with a fresh id and short code.
pub(crate) fn insert_order(
    conn: &Connection,
    item: &CatalogItem,
    device: &DeviceId,
    device_name: &str,
    token_hash: &str,
    now: i64,
    expires: i64,
) -> ApiResult<OrderRow> {
    let id = OrderId::random();
    for _ in 0..SHORT_CODE_ATTEMPTS {
        let code = ShortCode::random();
        let inserted = conn
            .prepare_cached(&format!(
                "INSERT INTO orders (id, short_code, item_id, item_title, item_kind,
                    period_days, amount, currency, merchant_id, merchant_name, device_id,
                    device_name, tv_token_hash, status, created_at_ms, expires_at_ms,
                    device_product)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13,
                    'pending', ?14, ?15, ?16)
                 ON CONFLICT DO NOTHING
                 RETURNING {ORDER_COLUMNS}",
            ))?
            .query_row(
                params![
                    id.as_str(),
                    code.as_str(),
                    item.id.as_str(),
                    item.title,
                    kind_str(item.kind),
                    item.period_days,
                    item.price.minor as i64,
                    item.price.currency.as_str(),
                    item.merchant.id.as_str(),
                    item.merchant.name,
                    device.as_str(),
                    device_name,
                    token_hash,
                    now,
                    expires,
                    item.device_product,
                ],
                order_from_row,
            )
            .optional()?;
        if let Some(row) = inserted {
            return Ok(row);
        }
        // Another live order holds this short code: draw again.
    }
    Err(ApiError::Unavailable)
}

/// Reads an order with its effective status.
async fn read_order(s: &AppState, id: OrderId) -> ApiResult<Order> {
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    s.store
        .read(move |conn| {
            let row = load_order(conn, &id)?.ok_or(ApiError::UnknownOrder)?;
            let mut order = row.to_order(&server);
            order.status = row.effective_status(now);
            Ok(order)
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    operation_id = "orders_fetch",
    tag = "orders",
    summary = "Read an order",
    params(
        ("id" = String, Path, description = "The order id"),
    ),
    responses(
        (status = 200, description = "OK", body = Order),
        (status = 404, description = "`unknown_order`", body = ErrorBody),
    ),
)]
async fn fetch(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Order>> {
    Ok(Json(read_order(&s, parse_order_id(&id)?).await?))
}

#[utoipa::path(
    get,
    path = "/v1/orders/by-code/{code}",
    operation_id = "orders_by_code",
    tag = "orders",
    summary = "Find a pending order by its short code (typed on the phone)",
    params(
        ("code" = String, Path, description = "The short code, in any case, with or without the dash"),
    ),
    responses(
        (status = 200, description = "OK", body = Order),
        (status = 404, description = "`unknown_order`", body = ErrorBody),
        (status = 409, description = "`already_paid`", body = ErrorBody),
        (status = 410, description = "`order_expired`, `order_cancelled`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn by_code(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(code): Path<String>,
) -> ApiResult<Json<Order>> {
    // Count every attempt, well-formed or not: guessing is what is being limited.
    s.code_limiter
        .check(ip)
        .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
    let code = ShortCode::parse(&code).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let id = s
        .store
        .read(move |conn| {
            conn.prepare_cached(
                "SELECT id FROM orders WHERE short_code = ?1 AND status = 'pending'",
            )?
            .query_row([code.as_str()], |r| r.get::<_, String>(0))
            .optional()?
            .ok_or(ApiError::UnknownOrder)
        })
        .await?;
    Ok(Json(read_order(&s, parse_order_id(&id)?).await?))
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/pay",
    operation_id = "orders_pay",
    tag = "orders",
    summary = "Pay an order; repeat with the same Idempotency-Key to get the same answer",
    params(
        ("id" = String, Path, description = "The order id"),
        ("Idempotency-Key" = String, Header, description = "Client-generated key of this payment (8 to 64 of A-Za-z0-9_-)"),
    ),
    request_body = PayRequest,
    responses(
        (status = 200, description = "OK", body = Receipt),
        (status = 400, description = "`delivery_address_required`", body = ErrorBody),
        (status = 401, description = "`wrong_pin`, `unauthorized`", body = ErrorBody),
        (status = 402, description = "`insufficient_funds`", body = ErrorBody),
        (status = 404, description = "`unknown_order`, `unknown_account`", body = ErrorBody),
        (status = 409, description = "`already_paid`, `already_owned`", body = ErrorBody),
        (status = 410, description = "`order_expired`, `order_cancelled`", body = ErrorBody),
        (status = 422, description = "`idempotency_conflict`, `limit_exceeded`", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
    ),
)]
async fn pay(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<PayRequest>,
) -> ApiResult<Json<Receipt>> {
    let id = parse_order_id(&id)?;
    let key = idempotency_key(&headers)?;
    let address = req
        .delivery_address
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .map(|a| clean_text(a, MAX_ADDRESS_CHARS, "delivery_address"))
        .transpose()?;
    let now = s.clock.now_ms();
    let proof = Proof::of(&s, &req.account, &req.auth, ip, now).await?;
    let server = s.public_url.clone();
    let payer = req.account;
    let input = crate::payset::PayInput {
        order: id.clone(),
        payer: payer.clone(),
        key: key.clone(),
        address: address.clone(),
        session: proof.session_hash().map(str::to_owned),
        now,
        server: server.clone(),
    };
    let receipt = s
        .store
        .pay(input, move |conn, events| {
            proof.check(conn, &payer, now)?;
            pay_in_tx(
                conn,
                events,
                &server,
                &id,
                &payer,
                &key,
                address.clone(),
                now,
            )
        })
        .await?;
    log_paid(&receipt);
    Ok(Json(receipt))
}

/// The one log line of every completed payment (no secrets: ids, amount, funding).
pub fn log_paid(r: &Receipt) {
    tracing::info!(
        order = %r.order_id, payer = %r.payer, merchant = %r.merchant.id,
        amount = %r.amount, funding = ?r.funding, "payment"
    );
}

pub fn receipt_of(
    row: &OrderRow,
    key: &IdempotencyKey,
    payer: &AccountId,
    funding: FundingSource,
) -> Receipt {
    Receipt {
        payment_id: key.clone(),
        order_id: row.id.clone(),
        item: row.item.clone(),
        amount: row.amount,
        merchant: row.merchant.clone(),
        device: row.device.clone(),
        payer: payer.clone(),
        funding,
        paid_at_ms: row.paid_at_ms.unwrap_or(row.created_at_ms),
    }
}

/// Only goods are delivered: an address sent for anything else is not kept.
pub(crate) fn kept_address(row: &OrderRow, address: &Option<String>) -> Option<String> {
    match row.item.kind {
        ItemKind::Physical => address.clone(),
        _ => None,
    }
}

pub fn funding_from_str(s: &str) -> FundingSource {
    if s == "card" {
        FundingSource::Card
    } else {
        FundingSource::Wallet
    }
}

pub(crate) fn funding_str(f: FundingSource) -> &'static str {
    match f {
        FundingSource::Wallet => "wallet",
        FundingSource::Card => "card",
    }
}

/// A replay answers with the original result; the same key for something else is refused.
fn replay(
    conn: &Connection,
    id: &OrderId,
    payer: &AccountId,
    key: &IdempotencyKey,
    address: &Option<String>,
) -> ApiResult<Option<Receipt>> {
    let previous: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT order_id, funding FROM payments WHERE payer = ?1 AND idem_key = ?2",
        )?
        .query_row([payer.as_str(), key.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let Some((order_id, funding)) = previous else {
        return Ok(None);
    };
    match load_order(conn, id)? {
        Some(row)
            if order_id == id.as_str() && row.delivery_address == kept_address(&row, address) =>
        {
            Ok(Some(receipt_of(
                &row,
                key,
                payer,
                funding_from_str(&funding),
            )))
        }
        _ => Err(ApiError::IdempotencyConflict),
    }
}

/// The atomic payment step: checks, debits the payer (wallet, else linked card),
/// credits the merchant, marks the order paid, records the idempotency key, grants
/// the entitlement and queues the events, all in the caller's transaction.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one checked input of the payment"
)]
pub fn pay_in_tx(
    conn: &Connection,
    events: &mut Vec<Event>,
    server: &ServerUrl,
    id: &OrderId,
    payer: &AccountId,
    key: &IdempotencyKey,
    address: Option<String>,
    now: i64,
) -> ApiResult<Receipt> {
    if let Some(replayed) = replay(conn, id, payer, key, &address)? {
        return Ok(replayed);
    }

    let row = load_order(conn, id)?.ok_or(ApiError::UnknownOrder)?;
    match row.effective_status(now) {
        OrderStatus::Pending => {}
        OrderStatus::Paid => return Err(ApiError::AlreadyPaid),
        OrderStatus::Expired => return Err(ApiError::OrderExpired),
        OrderStatus::Cancelled => return Err(ApiError::OrderCancelled),
    }
    let address = kept_address(&row, &address);
    if row.item.kind == ItemKind::Physical && address.is_none() {
        return Err(ApiError::DeliveryAddressRequired);
    }
    // Two orders for the same film, paid one after the other, must not charge twice;
    // nor paid at the same moment through two writers: the second waits for the first.
    if row.item.kind != ItemKind::Physical {
        conn.lock_key(&ownership_key(&row))?;
    }
    if already_owned(conn, &row.device.id, &row.item.id, row.item.kind, now)? {
        // On PostgreSQL each statement sees the newest commits: if this very order was
        // paid since it was loaded above (through another node), that is the answer.
        let now_paid = load_order(conn, id)?.is_some_and(|o| o.status == OrderStatus::Paid);
        return if now_paid {
            replay(conn, id, payer, key, &address)?.ok_or(ApiError::AlreadyPaid)
        } else {
            Err(ApiError::AlreadyOwned)
        };
    }

    let (wallet, card) = ledger::wallet_and_card(conn, payer.as_str())?;
    let wallet = wallet
        .filter(|a| a.kind == "wallet")
        .ok_or(ApiError::UnknownAccount)?;
    let (source, funding) = choose_funding(
        row.amount,
        &wallet,
        card.as_ref(),
        ledger::Account::available,
    )?;
    let source = source.id.to_string();

    let changed = conn
        .prepare_cached(
            "UPDATE orders SET status = 'paid', paid_at_ms = ?2, payer = ?3, delivery_address = ?4
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![id.as_str(), now, payer.as_str(), address])?;
    if changed != 1 {
        // Another node paid it meanwhile (this statement waited for its commit): if that
        // was this very payment, retried through another node, answer with its receipt.
        // Nothing has moved yet: the order is claimed before the money moves.
        return replay(conn, id, payer, key, &address)?.ok_or(ApiError::AlreadyPaid);
    }
    let transfer = ledger::pay_merchant(
        conn,
        &source,
        row.merchant.id.as_str(),
        row.amount,
        Some(id.as_str()),
        now,
    )?;
    conn.prepare_cached(
        "INSERT INTO payments (payer, idem_key, order_id, funding, transfer_id, paid_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        payer.as_str(),
        key.as_str(),
        id.as_str(),
        funding_str(funding),
        transfer,
        now
    ])?;

    let valid_until = valid_until(&row, now);
    conn.prepare_cached(
        "INSERT INTO entitlements (order_id, device_id, granted_at_ms, valid_until_ms)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        id.as_str(),
        row.device.id.as_str(),
        now,
        valid_until
    ])?;
    // A device sold here enters the register of sold devices (SPEC D1).
    if let Some(product) = &row.device_product {
        crate::devices::register_sale(conn, product, id, now)?;
    }

    let mut paid = row;
    paid.status = OrderStatus::Paid;
    paid.paid_at_ms = Some(now);
    let receipt = receipt_of(&paid, key, payer, funding);
    push_paid_events(events, &paid, &receipt, server);
    Ok(receipt)
}

/// Which account pays `amount`: the wallet, else the linked card, each if it has the
/// currency and `available` money (SPEC W4); else `insufficient_funds`, saying what
/// each has.
pub(crate) fn choose_funding<'a>(
    amount: Money,
    wallet: &'a ledger::Account,
    card: Option<&'a ledger::Account>,
    available: impl Fn(&ledger::Account) -> i64,
) -> ApiResult<(&'a ledger::Account, FundingSource)> {
    let need = amount.minor as i64;
    let usable = |a: &ledger::Account| a.currency == amount.currency && available(a) >= need;
    if usable(wallet) {
        return Ok((wallet, FundingSource::Wallet));
    }
    if let Some(c) = card.filter(|c| usable(c)) {
        return Ok((c, FundingSource::Card));
    }
    let show = |a: &ledger::Account| Money::new(available(a).max(0) as u64, a.currency);
    let mut why = format!("{amount} needed, wallet has {}", show(wallet));
    match card {
        Some(c) => why.push_str(&format!(", linked card has {}", show(c))),
        None => why.push_str(", no linked card"),
    }
    Err(ApiError::InsufficientFunds(why))
}

/// The advisory lock that keeps two orders of one item for one device from being paid
/// at once (through two writers or nodes).
pub(crate) fn ownership_key(row: &OrderRow) -> String {
    format!("owns:{}:{}", row.device.id, row.item.id)
}

/// Until when a payment of `row` at `now` entitles its device (SPEC P7): a membership
/// for its period (one is only sold while none is active, see `already_owned`, so it
/// runs from now), anything else for good.
pub(crate) fn valid_until(row: &OrderRow, now: i64) -> Option<i64> {
    match row.period_days {
        Some(days) if row.item.kind == ItemKind::Membership => {
            Some(now + i64::from(days) * 86_400_000)
        }
        _ => None,
    }
}

/// The events of a payment: the order paid (the TV), the receipt (the payer).
pub(crate) fn push_paid_events(
    events: &mut Vec<Event>,
    paid: &OrderRow,
    receipt: &Receipt,
    server: &ServerUrl,
) {
    events.push(Event::Order(OrderEvent::Paid {
        order: paid.to_order(server),
    }));
    events.push(Event::Account(
        receipt.payer.clone(),
        AccountEvent::Receipt {
            receipt: receipt.clone(),
        },
    ));
}

#[utoipa::path(
    post,
    path = "/v1/orders/{id}/cancel",
    operation_id = "orders_cancel",
    tag = "orders",
    summary = "Cancel a pending order (the TV that created it)",
    params(
        ("id" = String, Path, description = "The order id"),
    ),
    request_body = CancelOrder,
    responses(
        (status = 200, description = "OK", body = Order),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_order`", body = ErrorBody),
        (status = 409, description = "`already_paid`", body = ErrorBody),
        (status = 410, description = "`order_expired`", body = ErrorBody),
    ),
)]
async fn cancel(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CancelOrder>,
) -> ApiResult<Json<Order>> {
    let id = parse_order_id(&id)?;
    let hash = sessions::hash_token(&req.tv_token);
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    let order = s
        .store
        .write(move |conn, events| {
            let mut row = load_order(conn, &id)?.ok_or(ApiError::UnknownOrder)?;
            if !sessions::constant_time_eq(row.tv_token_hash.as_bytes(), hash.as_bytes()) {
                return Err(ApiError::Unauthorized(
                    "only the TV that created an order can cancel it",
                ));
            }
            match row.effective_status(now) {
                OrderStatus::Pending => {}
                // Cancelling twice is harmless: answer with the order as it is.
                OrderStatus::Cancelled => return Ok(row.to_order(&server)),
                OrderStatus::Paid => return Err(ApiError::AlreadyPaid),
                OrderStatus::Expired => return Err(ApiError::OrderExpired),
            }
            conn.prepare_cached(
                "UPDATE orders SET status = 'cancelled' WHERE id = ?1 AND status = 'pending'",
            )?
            .execute([id.as_str()])?;
            row.status = OrderStatus::Cancelled;
            let order = row.to_order(&server);
            events.push(Event::Order(OrderEvent::Cancelled {
                order: order.clone(),
            }));
            Ok(order)
        })
        .await?;
    tracing::info!(order = %order.id, "order cancelled");
    Ok(Json(order))
}

/// Marks pending orders past their expiry as expired and queues their events.
/// Returns how many were expired.
pub async fn sweep_expired(s: &AppState) -> ApiResult<usize> {
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    s.store
        .write(move |conn, events| {
            let rows: Vec<OrderRow> = conn
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders
                     WHERE status = 'pending' AND expires_at_ms <= ?1 ORDER BY id LIMIT ?2"
                ))?
                .query_map(params![now, SWEEP_BATCH as i64], order_from_row)?
                .collect::<Result<_, _>>()?;
            let mut expired = 0;
            for mut row in rows {
                // Conditional, so that when several nodes sweep the same database (each
                // waits for the other's row lock, then re-checks) an order expires once.
                let changed = conn
                    .prepare_cached(
                        "UPDATE orders SET status = 'expired' WHERE id = ?1 AND status = 'pending'",
                    )?
                    .execute([row.id.as_str()])?;
                if changed == 1 {
                    expired += 1;
                    row.status = OrderStatus::Expired;
                    events.push(Event::Order(OrderEvent::Expired {
                        order: row.to_order(&server),
                    }));
                }
            }
            Ok(expired)
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/orders/{id}/events",
    operation_id = "orders_events",
    tag = "orders",
    summary = "Follow an order: server-sent events, a snapshot first, until it is final",
    params(
        ("id" = String, Path, description = "The order id"),
    ),
    responses(
        (status = 200, description = "A stream of server-sent events; each `data:` is one JSON event", body = OrderEvent, content_type = "text/event-stream"),
        (status = 404, description = "`unknown_order`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn events(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_order_id(&id)?;
    let slot = sse::slot(&s, ip)?;
    // Subscribe before reading the snapshot, so no event can fall between the two.
    let rx = s.hub.subscribe_order(&id)?;
    let order = read_order(&s, id).await?;
    let first = OrderEvent::Snapshot { order };
    Ok(sse::stream(
        slot,
        first,
        rx,
        s.shutdown.clone(),
        |e: &OrderEvent| e.order().status.is_final(),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/devices/{id}/entitlements",
    operation_id = "orders_entitlements",
    tag = "orders",
    summary = "What a device has bought and may unlock, newest first",
    params(
        ("id" = String, Path, description = "The device id"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "OK", body = Entitlements),
    ),
)]
async fn entitlements(
    State(s): State<AppState>,
    Path(device): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Entitlements>> {
    let device = DeviceId::parse(&device).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let page = q.parse()?;
    let d = device.clone();
    let (list, next_cursor) = s
        .store
        .read(move |conn| {
            let (ms, after) = page.key();
            let mut stmt = conn.prepare_cached(
                "SELECT e.order_id, o.item_id, o.item_title, o.item_kind, e.granted_at_ms, e.valid_until_ms
                 FROM entitlements e JOIN orders o ON o.id = e.order_id
                 WHERE e.device_id = ?1
                   AND (e.granted_at_ms < ?2 OR (e.granted_at_ms = ?2 AND e.order_id < ?3))
                 ORDER BY e.granted_at_ms DESC, e.order_id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![d.as_str(), ms, after, page.fetch()], |r| {
                let kind = match r.get::<_, String>(3)?.as_str() {
                    "video" => ItemKind::Video,
                    "membership" => ItemKind::Membership,
                    _ => ItemKind::Physical,
                };
                Ok(Entitlement {
                    order_id: OrderId::parse(&r.get::<_, String>(0)?).map_err(|_| bad_row("order_id"))?,
                    item: OrderItem {
                        id: ItemId::parse(&r.get::<_, String>(1)?).map_err(|_| bad_row("item_id"))?,
                        title: r.get(2)?,
                        kind,
                    },
                    granted_at_ms: r.get(4)?,
                    valid_until_ms: r.get(5)?,
                })
            })?;
            let mut list = rows.collect::<Result<Vec<_>, _>>()?;
            let next = page.finish(&mut list, |e: &Entitlement| {
                (e.granted_at_ms, e.order_id.as_str().to_owned())
            });
            Ok((list, next))
        })
        .await?;
    Ok(Json(Entitlements {
        device_id: device,
        entitlements: list,
        next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_column_count_matches_the_list() {
        assert_eq!(ORDER_COLUMNS.split(',').count(), ORDER_COLUMN_COUNT);
    }
}
