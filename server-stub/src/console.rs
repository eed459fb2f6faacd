//! The developer console (`/console`): one page, in a desktop browser, that shows what
//! the sandbox did — orders with their timeline, payments, ledger transfers and balances,
//! the SMS outbox, webhook deliveries, vouchers, red packets and devices — and follows
//! new events live. It moves the test clock when that is on.
//!
//! The page and its script are static files (no build step, no CDN); everything they
//! show comes from `GET /v1/admin/console` and `GET /v1/admin/events` with the admin
//! token, which the page asks for and keeps in the tab's `sessionStorage`. With no
//! cookie there is nothing to forge: a page from elsewhere cannot act as the console.
//! Values are written with `textContent`, never as HTML.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use protocol::ErrorBody;
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::AppState;
use crate::accounts::admin;
use crate::db::{Connection, Value};
use crate::error::ApiResult;
use crate::extract::ClientIp;

/// Rows shown per section.
const ROWS: i64 = 50;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route("/console", get(page))
        .route("/console/console.js", get(script))
        .routes(routes!(snapshot))
        .routes(routes!(events))
}

fn asset(mime: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, mime)], body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
             connect-src 'self'; frame-ancestors 'none'; form-action 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

async fn page() -> Response {
    asset(
        "text/html; charset=utf-8",
        include_str!("../web/console.html"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../web/console.js"),
    )
}

/// How the page shows a column.
#[derive(Clone, Copy, Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConsoleColumnKind)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Text,
    /// Unix milliseconds, shown in the browser's time zone.
    Time,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConsoleColumn)]
struct Column {
    name: &'static str,
    kind: Kind,
}

/// A column of a section: what the SQL gives, in order.
#[derive(Clone, Copy)]
enum Col {
    Text(&'static str),
    Time(&'static str),
    /// Two SQL columns: minor units and currency, shown as `4.99 EUR`.
    Money(&'static str),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConsoleSection)]
struct Section {
    id: &'static str,
    title: &'static str,
    columns: Vec<Column>,
    rows: Vec<Vec<serde_json::Value>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ConsoleSnapshot)]
struct Snapshot {
    now_ms: i64,
    test_clock: bool,
    sections: Vec<Section>,
}

fn json_of(v: Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => i.into(),
        Value::Real(f) => f.into(),
        Value::Text(s) => s.into(),
        Value::Blob(b) => format!("({} bytes)", b.len()).into(),
    }
}

fn money(minor: Value, currency: Value) -> serde_json::Value {
    let (Value::Integer(minor), Value::Text(cur)) = (minor, currency) else {
        return serde_json::Value::Null;
    };
    let shown = protocol::Currency::parse(&cur)
        .map(|c| protocol::Money::new(minor.unsigned_abs(), c).to_string())
        .unwrap_or_else(|_| format!("{minor} {cur}"));
    if minor < 0 {
        format!("−{shown}").into()
    } else {
        shown.into()
    }
}

fn section(
    conn: &Connection,
    id: &'static str,
    title: &'static str,
    cols: &[Col],
    sql: &str,
) -> ApiResult<Section> {
    let rows = conn
        .prepare_cached(sql)?
        .query_map([ROWS], |r| {
            let mut out = Vec::with_capacity(cols.len());
            let mut i = 0;
            for c in cols {
                match c {
                    Col::Text(_) | Col::Time(_) => {
                        out.push(json_of(r.get(i)?));
                        i += 1;
                    }
                    Col::Money(_) => {
                        out.push(money(r.get(i)?, r.get(i + 1)?));
                        i += 2;
                    }
                }
            }
            Ok(out)
        })?
        .collect::<crate::db::Result<_>>()?;
    let columns = cols
        .iter()
        .map(|c| match *c {
            Col::Text(name) | Col::Money(name) => Column {
                name,
                kind: Kind::Text,
            },
            Col::Time(name) => Column {
                name,
                kind: Kind::Time,
            },
        })
        .collect();
    Ok(Section {
        id,
        title,
        columns,
        rows,
    })
}

fn sections(conn: &Connection) -> ApiResult<Vec<Section>> {
    use Col::{Money, Text, Time};
    Ok(vec![
        section(
            conn,
            "orders",
            "Orders",
            &[
                Time("Created"),
                Text("Order"),
                Text("Item"),
                Money("Amount"),
                Text("Merchant"),
                Text("TV"),
                Text("Status"),
                Time("Paid"),
                Time("Expires"),
                Text("Payer"),
            ],
            "SELECT created_at_ms, id, item_title, amount, currency, merchant_id, device_name,
                    status, paid_at_ms, expires_at_ms, payer
             FROM orders ORDER BY created_at_ms DESC LIMIT ?1",
        )?,
        section(
            conn,
            "payments",
            "Payments",
            &[
                Time("Paid"),
                Text("Payer"),
                Text("Order"),
                Money("Amount"),
                Text("Merchant"),
                Text("Funding"),
                Text("Idempotency key"),
            ],
            "SELECT p.paid_at_ms, p.payer, p.order_id, t.amount, t.currency, t.credit, p.funding,
                    p.idem_key
             FROM transfers t JOIN payments p ON p.order_id = t.reference
             WHERE t.kind = 'payment' ORDER BY t.id DESC LIMIT ?1",
        )?,
        section(
            conn,
            "transfers",
            "Ledger transfers",
            &[
                Time("At"),
                Text("#"),
                Text("Kind"),
                Text("Debit"),
                Text("Credit"),
                Money("Amount"),
                Text("Reference"),
            ],
            "SELECT created_at_ms, id, kind, debit, credit, amount, currency, reference
             FROM transfers ORDER BY id DESC LIMIT ?1",
        )?,
        section(
            conn,
            "balances",
            "Balances",
            &[
                Text("Account"),
                Text("Kind"),
                Text("Name"),
                Money("Balance"),
                Money("Held"),
            ],
            "SELECT id, kind, name, balance, currency, held, currency FROM accounts
             ORDER BY CASE kind WHEN 'merchant' THEN 0 WHEN 'wallet' THEN 1 WHEN 'card' THEN 2
                      ELSE 3 END, created_at_ms DESC, id LIMIT ?1",
        )?,
        section(
            conn,
            "sms",
            "SMS outbox",
            &[Time("Sent"), Text("To"), Text("Message")],
            "SELECT sent_at_ms, phone, body FROM sms_outbox ORDER BY id DESC LIMIT ?1",
        )?,
        section(
            conn,
            "webhooks",
            "Webhook deliveries",
            &[
                Time("Created"),
                Text("#"),
                Text("Event"),
                Text("Endpoint"),
                Text("State"),
                Text("Attempts"),
                Time("Next attempt"),
                Time("Delivered"),
            ],
            "SELECT d.created_at_ms, d.id, e.kind, w.url, d.state, d.attempts,
                    CASE WHEN d.state = 'pending' THEN d.next_attempt_ms END, d.delivered_at_ms
             FROM webhook_deliveries d
             JOIN webhook_events e ON e.id = d.event_id
             JOIN webhook_endpoints w ON w.id = d.endpoint_id
             ORDER BY d.id DESC LIMIT ?1",
        )?,
        section(
            conn,
            "vouchers",
            "Vouchers",
            &[
                Time("Created"),
                Text("Voucher"),
                Text("Payer"),
                Money("Face value"),
                Money("Used"),
                Text("State"),
                Text("Payee"),
                Time("Expires"),
            ],
            "SELECT created_at_ms, id, payer, face_value, currency, used, currency, state, payee,
                    expires_at_ms
             FROM vouchers ORDER BY created_at_ms DESC, id LIMIT ?1",
        )?,
        section(
            conn,
            "packets",
            "Red packets",
            &[
                Time("Created"),
                Text("Set"),
                Text("Sender"),
                Money("Total"),
                Text("Packets"),
                Text("Claimed"),
                Text("State"),
                Text("Message"),
                Time("Expires"),
            ],
            "SELECT created_at_ms, id, sender, total, currency, count, claimed, state, message,
                    expires_at_ms
             FROM packet_sets ORDER BY created_at_ms DESC, id LIMIT ?1",
        )?,
        section(
            conn,
            "devices",
            "Devices",
            &[
                Time("Registered"),
                Text("Device"),
                Text("Kind"),
                Text("Product"),
                Text("Software"),
                Text("Sale"),
                Time("Refunded"),
            ],
            "SELECT registered_at_ms, id, id_kind, product, os_version, order_id, refunded_at_ms
             FROM devices ORDER BY registered_at_ms DESC, id LIMIT ?1",
        )?,
    ])
}

/// `GET /v1/admin/console`: the newest rows of every section.
#[utoipa::path(
    get,
    path = "/v1/admin/console",
    operation_id = "console_snapshot",
    tag = "admin",
    summary = "The developer console's data: the newest rows of every section",
    responses(
        (status = 200, description = "OK", body = Snapshot),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn snapshot(State(s): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Snapshot>> {
    admin(&s, &headers)?;
    let sections = s.store.read(sections).await?;
    Ok(Json(Snapshot {
        now_ms: s.clock.now_ms(),
        test_clock: s.config.test_clock,
        sections,
    }))
}

/// `GET /v1/admin/events`: every event the server commits, as server-sent events
/// (`hello`, then `event` with the event as JSON), for the console to follow.
#[utoipa::path(
    get,
    path = "/v1/admin/events",
    operation_id = "console_events",
    tag = "admin",
    summary = "Every event the server commits, as server-sent events (`hello`, then `event`)",
    responses(
        (status = 200, description = "A stream of server-sent events; each `data:` is one JSON event", content_type = "text/event-stream"),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn events(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Response> {
    admin(&s, &headers)?;
    let slot = crate::sse::slot(&s, ip)?;
    let rx = s.hub.subscribe_all();
    Ok(crate::sse::stream(
        slot,
        crate::events::Activity::Hello,
        rx,
        s.shutdown.clone(),
        |_| false,
    )
    .into_response())
}
