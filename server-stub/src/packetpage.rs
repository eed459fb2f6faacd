//! The red-packet claim link's web page (SPEC R2, R3, R5 for phones without the app):
//! a friend opens the link (`/R/<id>`) in any browser, sees who sent the packets, their
//! message and how many are left, signs in with account + PIN and opens one; then sees
//! what they got and who got how much, the largest marked.
//!
//! The same standards as the pay page (`paypage`): plain HTML, no JavaScript, the signed
//! double-submit CSRF token plus the same-origin check, the PIN only in the POST body and
//! never logged. A double submit cannot claim twice: the database allows one packet per
//! recipient, and the second answer says what the first one got.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use protocol::{AccountId, PacketSet, PacketSetId, PacketSetState, Pin, Token};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::ClientIp;
use crate::packets::{claim_in_tx, load_set};
use crate::paypage::{check_posted_form, csrf_for_page, escape, page, pin_refusal};
use crate::{AppState, pin};

/// The set as the page shows it: sender, message, what is left, who got how much.
fn summary(set: &PacketSet, me: Option<&AccountId>) -> String {
    let left = match set.state {
        PacketSetState::Open => format!(
            "<p class=meta>{} of {} packets left · {} in all</p>",
            set.remaining,
            set.count,
            escape(&set.total.to_string())
        ),
        PacketSetState::Finished => format!(
            "<p class=meta>All {} packets were opened · {} in all</p>",
            set.count,
            escape(&set.total.to_string())
        ),
        PacketSetState::Refunded => format!(
            "<p class=meta>Expired: {} went back to {}</p>",
            escape(&set.refunded.to_string()),
            escape(&set.sender_name)
        ),
    };
    let message = if set.message.is_empty() {
        String::new()
    } else {
        format!("<p class=message>“{}”</p>", escape(&set.message))
    };
    let claims: String = set
        .claims
        .iter()
        .map(|c| {
            let you = if me == Some(&c.recipient) {
                " (you)"
            } else {
                ""
            };
            // Equal packets have no largest.
            let star = if c.largest && !set.fixed {
                " <b>★ largest</b>"
            } else {
                ""
            };
            format!(
                "<li>{}{you}: {}{star}</li>",
                escape(&c.recipient_name),
                escape(&c.amount.to_string())
            )
        })
        .collect();
    let claims = if claims.is_empty() {
        String::new()
    } else {
        format!("<ul class=claims>{claims}</ul>")
    };
    format!(
        "<div class=card><h1>Red packets from {}</h1>{message}{left}{claims}</div>",
        escape(&set.sender_name)
    )
}

fn form(id: &PacketSetId, csrf: &Token, error: Option<&str>, account: &str) -> String {
    format!(
        "{err}<form class=card method=post action='/R/{id}'>\
         <input type=hidden name=csrf value='{csrf}'>\
         <label for=account>Your account</label>\
         <input id=account name=account autocomplete=username autocapitalize=none \
          spellcheck=false required maxlength=40 value='{account}'>\
         <label for=pin>PIN</label>\
         <input id=pin name=pin type=password inputmode=numeric autocomplete=off \
          pattern='[0-9]{{4,12}}' required maxlength=12>\
         <button type=submit>Open a packet</button></form>",
        err = error
            .map(|e| format!("<p class=error role=alert>{}</p>", escape(e)))
            .unwrap_or_default(),
        csrf = csrf.expose(),
        account = escape(account),
    )
}

/// Human words for each refusal.
fn human(e: &ApiError) -> String {
    match e {
        ApiError::AlreadyClaimed => "You already opened a packet from this set.".into(),
        ApiError::SoldOut => "All packets were taken; maybe next time.".into(),
        ApiError::PacketsExpired => "These packets have expired.".into(),
        e @ (ApiError::WrongPin { .. } | ApiError::AccountLocked { .. }) => {
            pin_refusal(e).unwrap_or_default()
        }
        ApiError::UnknownAccount => "There is no wallet with that name.".into(),
        ApiError::NotAllowed(why) => format!("You cannot open these packets: {why}."),
        ApiError::CurrencyMismatch(why) => {
            format!("These packets cannot go to that wallet: {why}.")
        }
        ApiError::InvalidRequest(why) => format!("Please check the form: {why}."),
        _ => "Something went wrong on our side. Please try again.".into(),
    }
}

/// Refusals after which the form is not offered again.
fn is_final(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::AlreadyClaimed | ApiError::SoldOut | ApiError::PacketsExpired
    )
}

/// The closed sets' words: nothing can be claimed here any more.
fn closed_text(state: PacketSetState) -> Option<&'static str> {
    match state {
        PacketSetState::Open => None,
        PacketSetState::Finished => Some("All packets were taken."),
        PacketSetState::Refunded => Some("These packets have expired."),
    }
}

async fn load(s: &AppState, id: PacketSetId) -> Result<Option<PacketSet>, ApiError> {
    let server = s.public_url.clone();
    s.store.read(move |conn| load_set(conn, &server, &id)).await
}

/// The set a page's URL names, or the page that says why there is none.
async fn load_page(s: &AppState, raw: &str) -> Result<(PacketSetId, PacketSet), Box<Response>> {
    let Ok(id) = PacketSetId::parse(raw) else {
        return Err(Box::new(not_found(StatusCode::BAD_REQUEST)));
    };
    match load(s, id.clone()).await {
        Ok(Some(set)) => Ok((id, set)),
        Ok(None) => Err(Box::new(not_found(StatusCode::NOT_FOUND))),
        Err(e) => Err(Box::new(e.into_response())),
    }
}

fn not_found(status: StatusCode) -> Response {
    page(
        status,
        "Unknown red packets",
        "<div class=card><h1>No such red packets</h1><p>This link does not name Couchpay \
         red packets. Ask the person who sent it to check it.</p></div>",
        None,
    )
}

/// The set as of `now`: open packets past their time are shown as expired (the sweep
/// refunds them shortly).
fn effective_state(set: &PacketSet, now: i64) -> PacketSetState {
    if set.state == PacketSetState::Open && set.expires_at_ms <= now {
        PacketSetState::Refunded
    } else {
        set.state
    }
}

pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let (id, set) = match load_page(&s, &id).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let now = s.clock.now_ms();
    if let Some(text) = closed_text(effective_state(&set, now)) {
        let body = format!(
            "{}<p class=error role=status>{}</p>",
            summary(&set, None),
            escape(text)
        );
        return page(StatusCode::OK, "Red packets", &body, None);
    }
    let (csrf, cookie) = csrf_for_page(&s.csrf_key, &headers);
    let body = format!("{}{}", summary(&set, None), form(&id, &csrf, None, ""));
    page(StatusCode::OK, "Red packets", &body, cookie.as_deref())
}

#[derive(Deserialize)]
pub struct ClaimForm {
    csrf: String,
    account: String,
    pin: String,
}

impl std::fmt::Debug for ClaimForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the PIN.
        f.debug_struct("ClaimForm")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

pub async fn submit(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ClaimForm>,
) -> Response {
    let (id, set) = match load_page(&s, &id).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let again = "Open the red packets' link again and claim from that page.";
    let csrf = match check_posted_form(&s, &headers, &f.csrf, again) {
        Ok(t) => t,
        Err(refused) => {
            tracing::warn!(
                set = id.log_prefix(),
                "red-packet form refused: cross-site or stale form"
            );
            return *refused;
        }
    };
    let account_text = f.account.trim().to_lowercase();
    let account = AccountId::parse(&account_text).ok();
    let result = claim(&s, &id, &f, account.as_ref(), ip).await;
    // Shown as it is now (with this claim, or closed by whoever got there first).
    let set = load(&s, id.clone()).await.ok().flatten().unwrap_or(set);
    match result {
        Ok(amount) => {
            let body = format!(
                "<p class=ok role=status>You got {} from {}!</p>{}",
                escape(&amount.to_string()),
                escape(&set.sender_name),
                summary(&set, account.as_ref()),
            );
            page(StatusCode::OK, "Packet opened", &body, None)
        }
        Err(e) => {
            let mut words = human(&e);
            if let (ApiError::AlreadyClaimed, Some(me)) = (&e, account.as_ref())
                && let Some(mine) = set.claims.iter().find(|c| &c.recipient == me)
            {
                words = format!(
                    "You already opened a packet from this set: you got {}.",
                    mine.amount
                );
            }
            let body = if is_final(&e) {
                format!(
                    "<p class=error role=alert>{}</p>{}",
                    escape(&words),
                    summary(&set, account.as_ref())
                )
            } else {
                format!(
                    "{}{}",
                    summary(&set, None),
                    form(&id, &csrf, Some(&words), &account_text)
                )
            };
            page(e.status(), "Red packets", &body, None)
        }
    }
}

async fn claim(
    s: &AppState,
    id: &PacketSetId,
    f: &ClaimForm,
    account: Option<&AccountId>,
    ip: std::net::IpAddr,
) -> Result<protocol::Money, ApiError> {
    let account = account.cloned().ok_or(ApiError::UnknownAccount)?;
    let pin = Pin::parse(f.pin.trim())
        .map_err(|_| ApiError::InvalidRequest("a PIN is 4 to 12 digits".into()))?;
    let now = s.clock.now_ms();
    pin::check(s, &account, &pin, ip, now).await?;
    let server = s.public_url.clone();
    let id = id.clone();
    let claimed = s
        .store
        .write(move |conn, events| claim_in_tx(conn, events, &server, &id, &account, now))
        .await?;
    tracing::info!(
        set = claimed.set.id.log_prefix(),
        amount = %claimed.amount,
        "red packet claimed on the web page"
    );
    Ok(claimed.amount)
}
