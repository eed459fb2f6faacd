//! The voucher link's web page (SPEC V2 for phones without the app): the payee opens the
//! QR's URL (`/V/<id>`) in any browser, sees the voucher the server has (who made it, how
//! much, how long it is valid), signs in with account + PIN and redeems all or part.
//!
//! The same standards as the pay page (`paypage`): plain HTML, no JavaScript, the signed
//! double-submit CSRF token plus the same-origin check, the PIN only in the POST body and
//! never logged, and a fresh idempotency key per rendered form, so a double submit
//! redeems once.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::{AccountId, IdempotencyKey, Money, Pin, Redemption, Token, VoucherId, VoucherState};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::paypage::{check_posted_form, csrf_for_page, escape, page, pin_refusal};
use crate::vouchers::{VoucherRow, load_voucher, redeem_in_tx};
use crate::{AppState, pin};

/// "23 hours", "5 minutes": how long is left, in the largest unit that is at least one.
fn time_left(ms: i64) -> String {
    let mins = (ms / 60_000).max(1);
    let (n, unit) = if mins >= 48 * 60 {
        (mins / (24 * 60), "day")
    } else if mins >= 120 {
        (mins / 60, "hour")
    } else {
        (mins, "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn summary(row: &VoucherRow, now: i64) -> String {
    let validity = match row.effective_state(now) {
        VoucherState::Unused => format!(
            "<p class=meta>Valid for {} more</p><p class=hint>Only redeem a voucher you \
             were meant to get: whoever has this link can use it.</p>",
            time_left(row.expires_at_ms - now)
        ),
        _ => String::new(),
    };
    format!(
        "<div class=card><h1>Voucher from {}</h1><div class=amount>{}</div>{validity}</div>",
        escape(&row.payer_name),
        escape(&row.face_value.to_string()),
    )
}

fn form(id: &VoucherId, face: Money, csrf: &Token, error: Option<&str>, account: &str) -> String {
    format!(
        "{err}<form class=card method=post action='/V/{id}'>\
         <input type=hidden name=csrf value='{csrf}'>\
         <input type=hidden name=key value='{key}'>\
         <label for=account>Your account</label>\
         <input id=account name=account autocomplete=username autocapitalize=none \
          spellcheck=false required maxlength=40 value='{account}'>\
         <label for=pin>PIN</label>\
         <input id=pin name=pin type=password inputmode=numeric autocomplete=off \
          pattern='[0-9]{{4,12}}' required maxlength=12>\
         <label for=amount>Amount to take (leave empty for all of it)</label>\
         <input id=amount name=amount inputmode=decimal autocomplete=off maxlength=20 \
          placeholder='{face}'>\
         <button type=submit>Redeem</button></form>",
        err = error
            .map(|e| format!("<p class=error role=alert>{}</p>", escape(e)))
            .unwrap_or_default(),
        csrf = csrf.expose(),
        key = IdempotencyKey::random(),
        account = escape(account),
        face = escape(&face.to_string()),
    )
}

/// Human words for each refusal.
fn human(e: &ApiError) -> String {
    match e {
        ApiError::VoucherRedeemed => "This voucher was redeemed already.".into(),
        ApiError::VoucherVoided => "This voucher was taken back by the person who made it.".into(),
        ApiError::VoucherExpired => "This voucher has expired.".into(),
        ApiError::VoucherFailed(_) => {
            "This voucher could not be paid out, and its money went back to the person who \
             made it. Ask them for a new one."
                .into()
        }
        e @ (ApiError::WrongPin { .. } | ApiError::AccountLocked { .. }) => {
            pin_refusal(e).unwrap_or_default()
        }
        ApiError::UnknownAccount => "There is no wallet with that name.".into(),
        ApiError::NotAllowed(why) => format!("You cannot redeem this voucher: {why}."),
        ApiError::CurrencyMismatch(why) => format!("This voucher cannot go to that wallet: {why}."),
        ApiError::InvalidRequest(why) => format!("Please check the form: {why}."),
        ApiError::IdempotencyConflict => "Please reload the page and try again.".into(),
        _ => "Something went wrong on our side. Please try again.".into(),
    }
}

/// The final pages: nothing can be redeemed here any more.
fn closed_text(state: VoucherState) -> Option<&'static str> {
    match state {
        VoucherState::Unused => None,
        VoucherState::Redeemed => Some("This voucher was redeemed already."),
        VoucherState::Voided => Some("This voucher was taken back by the person who made it."),
        VoucherState::Expired => Some("This voucher has expired; nothing can be redeemed here."),
        VoucherState::Failed => {
            Some("This voucher could not be paid out; its money went back to its maker.")
        }
    }
}

async fn load(s: &AppState, id: VoucherId) -> Result<Option<VoucherRow>, ApiError> {
    s.store.read(move |conn| load_voucher(conn, &id)).await
}

fn not_found(status: StatusCode) -> Response {
    page(
        status,
        "Unknown voucher",
        "<div class=card><h1>No such voucher</h1><p>This link does not name a Couchpay \
         voucher. Ask the person who sent it to check it.</p></div>",
        None,
    )
}

pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = VoucherId::parse(&id) else {
        return not_found(StatusCode::BAD_REQUEST);
    };
    let row = match load(&s, id.clone()).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(StatusCode::NOT_FOUND),
        Err(e) => return e.into_response(),
    };
    let now = s.clock.now_ms();
    if let Some(text) = closed_text(row.effective_state(now)) {
        let body = format!(
            "{}<p class=error role=status>{}</p>",
            summary(&row, now),
            escape(text)
        );
        return page(StatusCode::OK, "Voucher", &body, None);
    }
    let (csrf, set) = csrf_for_page(&s.csrf_key, &headers);
    let body = format!(
        "{}{}",
        summary(&row, now),
        form(&id, row.face_value, &csrf, None, "")
    );
    page(StatusCode::OK, "Voucher", &body, set.as_deref())
}

#[derive(Deserialize)]
pub struct RedeemForm {
    csrf: String,
    key: String,
    account: String,
    pin: String,
    #[serde(default)]
    amount: Option<String>,
}

impl std::fmt::Debug for RedeemForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the PIN.
        f.debug_struct("RedeemForm")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

pub async fn submit(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<RedeemForm>,
) -> Response {
    let Ok(id) = VoucherId::parse(&id) else {
        return not_found(StatusCode::BAD_REQUEST);
    };
    let row = match load(&s, id.clone()).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(StatusCode::NOT_FOUND),
        Err(e) => return e.into_response(),
    };
    let again = "Open the voucher's link again and redeem it from that page.";
    let csrf = match check_posted_form(&s, &headers, &f.csrf, again) {
        Ok(t) => t,
        Err(refused) => {
            tracing::warn!(
                voucher = id.log_prefix(),
                "voucher form refused: cross-site or stale form"
            );
            return *refused;
        }
    };
    let account_text = f.account.trim().to_lowercase();
    let now = s.clock.now_ms();
    let result = redeem(&s, &row, &f, &account_text, ip).await;
    // Shown as it is now (redeemed, or closed by whoever got there first).
    let row = load(&s, id.clone()).await.ok().flatten().unwrap_or(row);
    match result {
        Ok(r) => {
            let back = if r.released.minor > 0 {
                format!(
                    " {} went back to {}.",
                    escape(&r.released.to_string()),
                    escape(&r.voucher.payer_name)
                )
            } else {
                String::new()
            };
            let body = format!(
                "{}<p class=ok role=status>Redeemed {} into your wallet.{back}</p>",
                summary(&row, now),
                escape(&r.amount.to_string()),
            );
            page(StatusCode::OK, "Redeemed", &body, None)
        }
        Err(e) => {
            let status = e.status();
            let final_state = matches!(
                e,
                ApiError::VoucherRedeemed
                    | ApiError::VoucherVoided
                    | ApiError::VoucherExpired
                    | ApiError::VoucherFailed(_)
            );
            let body = if final_state {
                format!(
                    "{}<p class=error role=alert>{}</p>",
                    summary(&row, now),
                    escape(&human(&e))
                )
            } else {
                format!(
                    "{}{}",
                    summary(&row, now),
                    form(&id, row.face_value, &csrf, Some(&human(&e)), &account_text)
                )
            };
            page(status, "Voucher", &body, None)
        }
    }
}

async fn redeem(
    s: &AppState,
    row: &VoucherRow,
    f: &RedeemForm,
    account: &str,
    ip: std::net::IpAddr,
) -> Result<Redemption, ApiError> {
    let account = AccountId::parse(account).map_err(|_| ApiError::UnknownAccount)?;
    let pin = Pin::parse(f.pin.trim())
        .map_err(|_| ApiError::InvalidRequest("a PIN is 4 to 12 digits".into()))?;
    let key = IdempotencyKey::parse(&f.key)
        .map_err(|_| ApiError::InvalidRequest("reload the page".into()))?;
    let face = row.face_value;
    let amount = f
        .amount
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            Money::parse_decimal(a, face.currency)
                .map_err(|_| ApiError::InvalidRequest(format!("{a} is not an amount like {face}")))
        })
        .transpose()?;
    let now = s.clock.now_ms();
    pin::check(s, &account, &pin, ip, now).await?;
    let server = s.public_url.clone();
    let id = row.id.clone();
    let outcome = s
        .store
        .write(move |conn, events| {
            redeem_in_tx(conn, events, &server, &id, &account, amount, &key, now)
        })
        .await?;
    outcome.into_result()
}
