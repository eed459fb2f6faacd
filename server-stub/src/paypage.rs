//! The pay link's web page (SPEC W1): a phone with no Couchpay app opens the QR's URL
//! and pays in any browser — order details, account + PIN, pay, result.
//!
//! Plain HTML forms, no JavaScript. Cross-site request forgery is stopped by a signed
//! double-submit token: a random nonce in an `HttpOnly`, `SameSite=Strict` cookie signed
//! with the server's key (HMAC-SHA256, the `cookie` crate's signed jar, key kept in the
//! database), which must match a hidden field; a cookie the server never issued fails
//! the signature. The request must also come from this server's own page: `Origin`, or
//! when a browser sends none, `Referer`, must be this server. The PIN travels only in the POST body,
//! never in a URL, and is never logged. Each rendered form carries a fresh idempotency
//! key, so submitting twice (reload, double tap) pays once.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use cookie::{Cookie, CookieJar, Key, SameSite};
use protocol::{AccountId, IdempotencyKey, ItemKind, OrderId, OrderStatus, Pin, Receipt, Token};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::orders::{OrderRow, load_order, parse_order_id, pay_in_tx};
use crate::sessions::constant_time_eq;
use crate::{AppState, pin};

const CSRF_COOKIE: &str = "couchpay_csrf";
/// Lifetime of a CSRF cookie: a pay page left open longer is reloaded.
const CSRF_COOKIE_MAX_AGE_S: i64 = 3600;

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
*{box-sizing:border-box}body{font-family:system-ui,-apple-system,sans-serif;margin:0;\
background:#f4f4f7;color:#16161d}main{max-width:28rem;margin:0 auto;padding:1.25rem}\
.brand{font-weight:800;color:#b7791f;letter-spacing:.02em}.card{background:#fff;\
border-radius:1rem;padding:1.25rem;box-shadow:0 1px 3px #0002;margin:1rem 0}\
h1{font-size:1.4rem;margin:.2rem 0}.amount{font-size:2.2rem;font-weight:800;margin:.4rem 0}\
.meta{color:#555;margin:.2rem 0}.code{font-family:ui-monospace,monospace;font-size:1.2rem;\
letter-spacing:.12em}label{display:block;font-weight:600;margin:.9rem 0 .3rem}\
input,textarea{width:100%;font-size:1.1rem;padding:.75rem;border:1px solid #bbb;\
border-radius:.6rem}button{width:100%;margin-top:1.2rem;padding:1rem;font-size:1.15rem;\
font-weight:700;color:#1a1204;background:#ffb42e;border:0;border-radius:.8rem}\
.error{background:#fde8e8;color:#8a1111;border-radius:.6rem;padding:.8rem;font-weight:600}\
.ok{background:#e5f7ea;color:#0d5b22;border-radius:.6rem;padding:.8rem;font-weight:600;\
font-size:1.2rem}.hint{color:#666;font-size:.9rem}.message{font-size:1.15rem;\
font-style:italic;margin:.4rem 0}.claims{padding-left:1.2rem;margin:.6rem 0 0}\
.claims li{margin:.2rem 0}";

pub(crate) fn page(status: StatusCode, title: &str, body: &str, cookie: Option<&str>) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content='width=device-width,initial-scale=1'>\
         <meta name=referrer content=same-origin>\
         <title>{t} · Couchpay</title><style>{STYLE}</style></head>\
         <body><main><div class=brand>Couchpay</div>{body}</main></body></html>",
        t = escape(title)
    );
    let mut resp = (status, Html(html)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert(header::SET_COOKIE, c);
    }
    resp
}

/// A `Set-Cookie` value carrying `nonce`, signed with the server's key.
pub(crate) fn signed_csrf_cookie(key: &Key, nonce: &Token) -> String {
    let mut jar = CookieJar::new();
    jar.signed_mut(key).add(
        Cookie::build((CSRF_COOKIE, nonce.expose().to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(cookie::time::Duration::seconds(CSRF_COOKIE_MAX_AGE_S)),
    );
    jar.get(CSRF_COOKIE)
        .map(|c| c.to_string())
        .unwrap_or_default()
}

/// The nonce of the request's CSRF cookie, if it carries this server's signature.
pub(crate) fn csrf_cookie(key: &Key, headers: &HeaderMap) -> Option<Token> {
    let mut jar = CookieJar::new();
    for c in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| Cookie::parse(c.trim().to_owned()).ok())
        .filter(|c| c.name() == CSRF_COOKIE)
    {
        jar.add_original(c);
    }
    jar.signed(key)
        .get(CSRF_COOKIE)
        .and_then(|c| Token::parse(c.value()).ok())
}

/// The CSRF nonce for a page with a form: the request's own (signed) cookie, or a fresh
/// one with the `Set-Cookie` value that carries it.
pub(crate) fn csrf_for_page(key: &Key, headers: &HeaderMap) -> (Token, Option<String>) {
    match csrf_cookie(key, headers) {
        Some(t) => (t, None),
        None => {
            let t = Token::random();
            let c = signed_csrf_cookie(key, &t);
            (t, Some(c))
        }
    }
}

/// A posted form's CSRF check: its hidden `posted` nonce must equal the signed cookie's,
/// and it must come from this server's page. `Err` is the page to answer with.
pub(crate) fn check_posted_form(
    s: &AppState,
    headers: &HeaderMap,
    posted: &str,
    again: &str,
) -> Result<Token, Box<Response>> {
    let cookie = csrf_cookie(&s.csrf_key, headers);
    let csrf_ok = cookie
        .as_ref()
        .is_some_and(|c| constant_time_eq(c.expose().as_bytes(), posted.as_bytes()));
    match cookie {
        Some(token) if csrf_ok && same_origin(s, headers) => Ok(token),
        _ => Err(Box::new(page(
            StatusCode::FORBIDDEN,
            "Please try again",
            &format!(
                "<div class=card><h1>This form has expired</h1><p>{}</p></div>",
                escape(again)
            ),
            None,
        ))),
    }
}

/// Human words for a refused PIN, shared by the web pages.
pub(crate) fn pin_refusal(e: &ApiError) -> Option<String> {
    match e {
        ApiError::WrongPin { remaining } => Some(format!(
            "Wrong PIN. {remaining} more wrong {} will block this device from the account for 15 minutes.",
            if *remaining == 1 { "try" } else { "tries" }
        )),
        ApiError::AccountLocked { retry_after_s } => Some(format!(
            "Too many wrong PINs: this account cannot be used from here for now. Try again in {} minutes.",
            retry_after_s.div_ceil(60)
        )),
        _ => None,
    }
}

fn summary(row: &OrderRow) -> String {
    format!(
        "<div class=card><h1>{}</h1><div class=amount>{}</div>\
         <p class=meta>Sold by {}</p><p class=meta>On “{}”</p>\
         <p class=meta>Code on the TV: <span class=code>{}</span></p>\
         <p class=hint>Check that this code matches the one on your TV screen.</p></div>",
        escape(&row.item.title),
        escape(&row.amount.to_string()),
        escape(&row.merchant.name),
        escape(&row.device.name),
        escape(&row.short_code.display()),
    )
}

fn form(row: &OrderRow, csrf: &Token, error: Option<&str>, account: &str, address: &str) -> String {
    // What the person typed is kept across a refused submit; only the PIN is asked again.
    let address = if row.item.kind == ItemKind::Physical {
        format!(
            "<label for=address>Delivery address</label>\
             <textarea id=address name=address rows=3 required maxlength=500>{}</textarea>",
            escape(address)
        )
    } else {
        String::new()
    };
    format!(
        "{err}<form class=card method=post action='/P/{id}'>\
         <input type=hidden name=csrf value='{csrf}'>\
         <input type=hidden name=key value='{key}'>\
         <label for=account>Account</label>\
         <input id=account name=account autocomplete=username autocapitalize=none \
          spellcheck=false required maxlength=40 value='{account}'>\
         <label for=pin>PIN</label>\
         <input id=pin name=pin type=password inputmode=numeric autocomplete=off \
          pattern='[0-9]{{4,12}}' required maxlength=12>\
         {address}<button type=submit>Pay {amount}</button></form>",
        err = error
            .map(|e| format!("<p class=error role=alert>{}</p>", escape(e)))
            .unwrap_or_default(),
        id = row.id,
        csrf = csrf.expose(),
        key = IdempotencyKey::random(),
        account = escape(account),
        amount = escape(&row.amount.to_string()),
    )
}

/// Human words for each refusal.
fn human(e: &ApiError) -> String {
    match e {
        ApiError::OrderExpired => "This code has expired. Ask the TV for a new one.".into(),
        ApiError::OrderCancelled => "This order was cancelled on the TV.".into(),
        ApiError::AlreadyPaid => "This order is already paid.".into(),
        e @ (ApiError::WrongPin { .. } | ApiError::AccountLocked { .. }) => {
            pin_refusal(e).unwrap_or_default()
        }
        ApiError::InsufficientFunds(why) => format!("Not enough money to pay: {why}."),
        ApiError::UnknownAccount => "There is no account with that name.".into(),
        ApiError::DeliveryAddressRequired => "Please enter a delivery address.".into(),
        ApiError::InvalidRequest(why) => format!("Please check the form: {why}."),
        ApiError::Unauthorized(_) => "This account cannot pay here.".into(),
        ApiError::IdempotencyConflict => "Please reload the page and try again.".into(),
        _ => "Something went wrong on our side. Please try again.".into(),
    }
}

/// The final pages: paid (styled as success), expired and cancelled (styled as errors:
/// nothing can be paid here). Returns (title, text, CSS class).
fn closed(row: &OrderRow, now: i64) -> Option<(&'static str, &'static str, &'static str)> {
    match row.effective_status(now) {
        OrderStatus::Pending => None,
        OrderStatus::Paid => Some(("Paid", "This order is paid. Enjoy!", "ok")),
        OrderStatus::Expired => Some((
            "Expired",
            "This code has expired, so nothing can be paid here and nothing was charged. \
             Ask the TV for a new code.",
            "error",
        )),
        OrderStatus::Cancelled => Some((
            "Cancelled",
            "This order was cancelled on the TV, so nothing can be paid here and nothing \
             was charged.",
            "error",
        )),
    }
}

async fn load(s: &AppState, id: OrderId) -> Result<Option<OrderRow>, ApiError> {
    s.store.read(move |conn| load_order(conn, &id)).await
}

fn not_found(status: StatusCode, title: &str) -> Response {
    page(
        status,
        title,
        "<div class=card><h1>No such order</h1><p>This link does not name a Couchpay order. \
         Scan the code on the TV again.</p></div>",
        None,
    )
}

pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = parse_order_id(&id) else {
        return not_found(StatusCode::BAD_REQUEST, "Not a Couchpay link");
    };
    let row = match load(&s, id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(StatusCode::NOT_FOUND, "Unknown order"),
        Err(e) => return e.into_response(),
    };
    if let Some((title, text, class)) = closed(&row, s.clock.now_ms()) {
        let body = format!(
            "{}<p class={class} role=status>{}</p>",
            summary(&row),
            escape(text)
        );
        return page(StatusCode::OK, title, &body, None);
    }
    let (csrf, set) = csrf_for_page(&s.csrf_key, &headers);
    let body = format!("{}{}", summary(&row), form(&row, &csrf, None, "", ""));
    page(StatusCode::OK, &row.item.title, &body, set.as_deref())
}

#[derive(Deserialize)]
pub struct PayForm {
    csrf: String,
    key: String,
    account: String,
    pin: String,
    #[serde(default)]
    address: Option<String>,
}

impl std::fmt::Debug for PayForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the PIN.
        f.debug_struct("PayForm")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Whether the form was posted from this server's own page. Browsers send `Origin` on
/// POSTs; where one does not (older browsers, some privacy settings), `Referer` (which
/// the page asks to be sent same-origin) must name this server. A request with neither
/// is refused: a browser that strips both cannot be told apart from a forged request.
pub(crate) fn same_origin(s: &AppState, headers: &HeaderMap) -> bool {
    let header = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    if let Some(o) = header(header::ORIGIN) {
        return protocol::ServerUrl::parse(o).is_ok_and(|o| o == s.public_url);
    }
    match header(header::REFERER) {
        Some(r) => {
            let base = s.public_url.as_str().trim_end_matches('/');
            r.strip_prefix(base)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }
        None => false,
    }
}

pub async fn submit(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<PayForm>,
) -> Response {
    let Ok(id) = parse_order_id(&id) else {
        return not_found(StatusCode::BAD_REQUEST, "Not a Couchpay link");
    };
    let row = match load(&s, id.clone()).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(StatusCode::NOT_FOUND, "Unknown order"),
        Err(e) => return e.into_response(),
    };
    let again = "Open the link from the TV's code again and pay from that page.";
    let csrf = match check_posted_form(&s, &headers, &f.csrf, again) {
        Ok(t) => t,
        Err(refused) => {
            tracing::warn!(order = %id, "pay form refused: cross-site or stale form");
            return *refused;
        }
    };
    let account_text = f.account.trim().to_lowercase();
    let result = pay(&s, &row, &f, &account_text, ip).await;
    match result {
        Ok(receipt) => {
            let body = format!(
                "{}<p class=ok role=status>Paid {} from your {}. {} is now unlocked on “{}”.</p>",
                summary(&row),
                escape(&receipt.amount.to_string()),
                match receipt.funding {
                    protocol::FundingSource::Wallet => "wallet",
                    protocol::FundingSource::Card => "linked card",
                },
                escape(&receipt.item.title),
                escape(&receipt.device.name),
            );
            page(StatusCode::OK, "Paid", &body, None)
        }
        Err(e) => {
            let status = e.status();
            if let Some((title, _, _)) = closed(&row, s.clock.now_ms()).filter(|_| {
                matches!(
                    e,
                    ApiError::AlreadyPaid | ApiError::OrderExpired | ApiError::OrderCancelled
                )
            }) {
                let body = format!(
                    "{}<p class=error role=alert>{}</p>",
                    summary(&row),
                    escape(&human(&e))
                );
                return page(status, title, &body, None);
            }
            let body = format!(
                "{}{}",
                summary(&row),
                form(
                    &row,
                    &csrf,
                    Some(&human(&e)),
                    &account_text,
                    f.address.as_deref().unwrap_or("")
                )
            );
            page(status, &row.item.title, &body, None)
        }
    }
}

async fn pay(
    s: &AppState,
    row: &OrderRow,
    f: &PayForm,
    account: &str,
    ip: std::net::IpAddr,
) -> Result<Receipt, ApiError> {
    let account = AccountId::parse(account).map_err(|_| ApiError::UnknownAccount)?;
    let pin = Pin::parse(f.pin.trim())
        .map_err(|_| ApiError::InvalidRequest("a PIN is 4 to 12 digits".into()))?;
    let key = IdempotencyKey::parse(&f.key)
        .map_err(|_| ApiError::InvalidRequest("reload the page".into()))?;
    let address = f
        .address
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            if a.chars().count() > crate::orders::MAX_ADDRESS_CHARS {
                Err(ApiError::InvalidRequest("the address is too long".into()))
            } else {
                Ok(a.replace(['\r', '\n'], " "))
            }
        })
        .transpose()?;
    let now = s.clock.now_ms();
    pin::check(s, &account, &pin, ip, now).await?;
    let server = s.public_url.clone();
    let id = row.id.clone();
    let receipt = s
        .store
        .write(move |conn, events| {
            pay_in_tx(
                conn,
                events,
                &server,
                &id,
                &account,
                &key,
                address.clone(),
                now,
            )
        })
        .await?;
    crate::orders::log_paid(&receipt);
    Ok(receipt)
}
