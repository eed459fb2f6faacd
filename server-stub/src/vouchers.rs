//! Payer-made QR e-cash vouchers (SPEC V1–V6).
//!
//! A payer freezes part of their wallet as a voucher: a hold on the wallet for the face
//! value, and a row in `vouchers` with an unguessable id whose link is the QR content.
//! A payee who has the link (scanned live or from a saved picture) redeems it, all of it
//! or part, into their own wallet; the part not taken goes back to the payer at once.
//!
//! Invariants:
//! - The face value of an `unused` voucher is exactly its active hold: `accounts.held`
//!   covers every unused voucher, so the payer cannot spend that money twice.
//! - A voucher leaves `unused` once, by a conditional update (`… AND state = 'unused'`):
//!   a redemption, a void, the expiry sweep (on any node) or a failed redemption, so at
//!   most one of them wins a race and the hold is released or captured exactly once.
//! - Redeeming releases the hold and moves `used` from the payer to the payee with one
//!   ledger transfer in the same transaction; if that transfer is refused the voucher is
//!   `failed` and the money stays with the payer. Either way nothing is created or lost.
//!
//! The threat: a voucher is a bearer instrument, like cash. Anyone who sees the QR (over a
//! shoulder, in a forwarded picture) can redeem it before the intended payee. What limits
//! the damage: a per-voucher maximum ([`MAX_VOUCHER_MINOR`]) and a cap on live vouchers
//! ([`MAX_LIVE_VOUCHERS`]); a validity that defaults to a day ([`DEFAULT_VALIDITY_S`]);
//! the payer can void it until it is redeemed; the payer hears of every redemption on
//! their account stream; and a voucher can be restricted to one payee account, which makes
//! a copied QR worthless to anyone else. The id is 128 random bits and only its first
//! characters are logged.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use protocol::ErrorBody;
use protocol::{
    AccountEvent, AccountId, CreateVoucher, IdempotencyKey, Money, Page, RedeemMode, RedeemVoucher,
    Redemption, ServerUrl, VoidVoucher, Voucher, VoucherFilter, VoucherId, VoucherKind,
    VoucherLink, VoucherSettings, VoucherState,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::db::{Connection, OptionalExtension, Row, params};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::extract::{ApiJson, ClientIp, idempotency_key};
use crate::paging::PageQuery;
use crate::sessions::Proof;
use crate::{AppState, ledger, sessions};

/// Largest face value of one voucher: 1,000.00.
pub const MAX_VOUCHER_MINOR: u64 = 1_000_00;
/// Most unused vouchers one payer may have at once.
pub const MAX_LIVE_VOUCHERS: i64 = 20;
/// Validity when the payer does not say: one day (SPEC V3).
pub const DEFAULT_VALIDITY_S: u64 = 86_400;
/// Shortest and longest validity a payer may choose.
pub const MIN_VALIDITY_S: u64 = 60;
pub const MAX_VALIDITY_S: u64 = 30 * 86_400;
/// Vouchers expired per sweep transaction.
const SWEEP_BATCH: i64 = 500;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show))
        .routes(routes!(redeem))
        .routes(routes!(void))
        .routes(routes!(list))
        .routes(routes!(get_settings, put_settings))
}

const COLUMNS: &str = "v.id, v.payer, a.name, v.currency, v.face_value, v.used, v.state, \
     v.hold_id, v.restricted_to, v.payee, v.redeem_key, v.created_at_ms, v.expires_at_ms, \
     v.closed_at_ms";
const FROM: &str = "FROM vouchers v JOIN accounts a ON a.id = v.payer";

/// One `vouchers` row as stored.
#[derive(Clone, Debug)]
pub(crate) struct VoucherRow {
    pub(crate) id: VoucherId,
    pub(crate) payer: AccountId,
    pub(crate) payer_name: String,
    pub(crate) face_value: Money,
    pub(crate) used: i64,
    pub(crate) state: VoucherState,
    pub(crate) hold_id: i64,
    pub(crate) restricted_to: Option<AccountId>,
    pub(crate) payee: Option<AccountId>,
    pub(crate) redeem_key: Option<String>,
    pub(crate) created_at_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) closed_at_ms: Option<i64>,
}

/// The columns of [`COLUMNS`] as read, before they are checked.
struct RawRow {
    text: [String; 5],
    optional: [Option<String>; 3],
    numbers: [i64; 5],
    closed_at_ms: Option<i64>,
}

fn row_of(r: &Row<'_>) -> crate::db::Result<RawRow> {
    Ok(RawRow {
        // id, payer, payer name, currency, state
        text: [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(6)?],
        // restricted_to, payee, redeem_key
        optional: [r.get(8)?, r.get(9)?, r.get(10)?],
        // face value, used, hold id, created, expires
        numbers: [r.get(4)?, r.get(5)?, r.get(7)?, r.get(11)?, r.get(12)?],
        closed_at_ms: r.get(13)?,
    })
}

fn parse_row(raw: RawRow) -> ApiResult<VoucherRow> {
    fn bad(e: impl std::fmt::Display) -> ApiError {
        ApiError::internal(e)
    }
    let RawRow {
        text: [id, payer, payer_name, currency, state],
        optional: [restricted_to, payee, redeem_key],
        numbers: [face, used, hold_id, created_at_ms, expires_at_ms],
        closed_at_ms,
    } = raw;
    let account = |s: Option<String>| s.map(|s| AccountId::parse(&s).map_err(bad)).transpose();
    let currency = protocol::Currency::parse(&currency).map_err(bad)?;
    Ok(VoucherRow {
        id: VoucherId::parse(&id).map_err(bad)?,
        payer: AccountId::parse(&payer).map_err(bad)?,
        payer_name,
        face_value: Money::new(u64::try_from(face).map_err(bad)?, currency),
        used,
        state: VoucherState::parse(&state).ok_or_else(|| bad("unknown voucher state"))?,
        hold_id,
        restricted_to: account(restricted_to)?,
        payee: account(payee)?,
        redeem_key,
        created_at_ms,
        expires_at_ms,
        closed_at_ms,
    })
}

fn rows(
    conn: &Connection,
    sql: &str,
    params: &[&dyn crate::db::ToSql],
) -> ApiResult<Vec<VoucherRow>> {
    conn.prepare_cached(sql)?
        .query_map(params, row_of)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(parse_row)
        .collect()
}

impl VoucherRow {
    /// Expired as soon as the clock passes its expiry, even before the sweep marks it.
    pub(crate) fn effective_state(&self, now_ms: i64) -> VoucherState {
        match self.state {
            VoucherState::Unused if now_ms >= self.expires_at_ms => VoucherState::Expired,
            s => s,
        }
    }

    pub(crate) fn to_voucher(&self, server: &ServerUrl, now_ms: i64) -> Voucher {
        Voucher {
            id: self.id.clone(),
            link: VoucherLink::new(server.clone(), self.id.clone()),
            payer: self.payer.clone(),
            payer_name: self.payer_name.clone(),
            face_value: self.face_value,
            used: Money::new(self.used.max(0) as u64, self.face_value.currency),
            state: self.effective_state(now_ms),
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            closed_at_ms: self.closed_at_ms,
            payee: self.payee.clone(),
            restricted_to: self.restricted_to.clone(),
        }
    }

    /// Why this voucher cannot be redeemed or voided any more.
    fn closed_error(&self, now_ms: i64) -> ApiError {
        match self.effective_state(now_ms) {
            VoucherState::Redeemed => ApiError::VoucherRedeemed,
            VoucherState::Voided => ApiError::VoucherVoided,
            VoucherState::Expired => ApiError::VoucherExpired,
            VoucherState::Failed => ApiError::VoucherFailed(
                "an earlier redemption failed and its money went back to the payer".into(),
            ),
            VoucherState::Unused => ApiError::internal("the voucher is unused"),
        }
    }
}

pub(crate) fn load_voucher(conn: &Connection, id: &VoucherId) -> ApiResult<Option<VoucherRow>> {
    let sql = format!("SELECT {COLUMNS} {FROM} WHERE v.id = ?1");
    Ok(rows(conn, &sql, params![id.as_str()])?.pop())
}

fn parse_voucher_id(s: &str) -> ApiResult<VoucherId> {
    VoucherId::parse(s).map_err(|_| ApiError::UnknownVoucher)
}

fn parse_account(s: &str) -> ApiResult<AccountId> {
    AccountId::parse(s).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

/// The account's settings, or the defaults, and whether a voucher was ever made with its PIN.
fn settings(conn: &Connection, account: &AccountId) -> ApiResult<(VoucherSettings, bool)> {
    let row: Option<(i64, String, i64)> = conn
        .prepare_cached(
            "SELECT pin_every_voucher, redeem_mode, pin_verified FROM voucher_settings
             WHERE account = ?1",
        )?
        .query_row([account.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(match row {
        None => (VoucherSettings::default(), false),
        Some((every, mode, verified)) => (
            VoucherSettings {
                pin_every_voucher: every != 0,
                redeem_mode: if mode == "redeem_on_scan" {
                    RedeemMode::RedeemOnScan
                } else {
                    RedeemMode::ScanThenConfirm
                },
            },
            verified != 0,
        ),
    })
}

fn save_settings(
    conn: &Connection,
    account: &AccountId,
    settings: VoucherSettings,
    pin_verified: bool,
) -> ApiResult<()> {
    let mode = match settings.redeem_mode {
        RedeemMode::RedeemOnScan => "redeem_on_scan",
        RedeemMode::ScanThenConfirm => "scan_then_confirm",
    };
    conn.prepare_cached(
        "INSERT INTO voucher_settings (account, pin_every_voucher, redeem_mode, pin_verified)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (account) DO UPDATE SET pin_every_voucher = excluded.pin_every_voucher,
           redeem_mode = excluded.redeem_mode,
           pin_verified = CASE WHEN excluded.pin_verified > voucher_settings.pin_verified
                             THEN excluded.pin_verified ELSE voucher_settings.pin_verified END",
    )?
    .execute(params![
        account.as_str(),
        i64::from(settings.pin_every_voucher),
        mode,
        i64::from(pin_verified)
    ])?;
    Ok(())
}

/// Checks a requested face value against the limits.
fn check_face_value(amount: Money) -> ApiResult<i64> {
    if amount.minor == 0 {
        return Err(ApiError::InvalidRequest(
            "a voucher's amount must be positive".into(),
        ));
    }
    if amount.minor > MAX_VOUCHER_MINOR {
        return Err(ApiError::LimitExceeded(format!(
            "a voucher can hold at most {}",
            Money::new(MAX_VOUCHER_MINOR, amount.currency)
        )));
    }
    ledger::check_amount(amount)
}

fn check_validity(valid_for_s: Option<u64>) -> ApiResult<i64> {
    let s = valid_for_s.unwrap_or(DEFAULT_VALIDITY_S);
    if !(MIN_VALIDITY_S..=MAX_VALIDITY_S).contains(&s) {
        return Err(ApiError::InvalidRequest(format!(
            "a voucher is valid for {MIN_VALIDITY_S} s to {} days",
            MAX_VALIDITY_S / 86_400
        )));
    }
    Ok(s as i64 * 1000)
}

#[utoipa::path(
    post,
    path = "/v1/vouchers",
    operation_id = "vouchers_create",
    tag = "vouchers",
    summary = "Make a QR e-cash voucher: the amount is held from the payer's wallet",
    request_body = CreateVoucher,
    responses(
        (status = 200, description = "OK", body = Voucher),
        (status = 401, description = "`wrong_pin`, `unauthorized`", body = ErrorBody),
        (status = 402, description = "`insufficient_funds`", body = ErrorBody),
        (status = 403, description = "`not_allowed`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn create(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<CreateVoucher>,
) -> ApiResult<Json<Voucher>> {
    check_face_value(req.amount)?;
    let validity_ms = check_validity(req.valid_for_s)?;
    let now = s.clock.now_ms();
    let proof = Proof::of(&s, &req.account, &req.auth, ip, now).await?;
    let server = s.public_url.clone();
    let voucher = s
        .store
        .write(move |conn, _| {
            proof.check(conn, &req.account, now)?;
            create_in_tx(conn, &server, &req, &proof, validity_ms, now)
        })
        .await?;
    tracing::info!(
        voucher = voucher.id.log_prefix(), payer = %voucher.payer,
        amount = %voucher.face_value, "voucher created"
    );
    Ok(Json(voucher))
}

fn create_in_tx(
    conn: &Connection,
    server: &ServerUrl,
    req: &CreateVoucher,
    proof: &Proof,
    validity_ms: i64,
    now: i64,
) -> ApiResult<Voucher> {
    let payer = &req.account;
    let (settings, pin_verified) = settings(conn, payer)?;
    if let Proof::Session(_) = proof {
        if settings.pin_every_voucher {
            return Err(ApiError::PinRequired(
                "your settings ask for the PIN on every voucher",
            ));
        }
        if !pin_verified {
            return Err(ApiError::PinRequired("your first voucher needs the PIN"));
        }
    }
    let wallet = ledger::get_account(conn, payer.as_str())?
        .filter(|a| a.kind == "wallet")
        .ok_or(ApiError::UnknownAccount)?;
    if wallet.currency != req.amount.currency {
        return Err(ApiError::CurrencyMismatch(format!(
            "the wallet holds {}, not {}",
            wallet.currency, req.amount.currency
        )));
    }
    if let Some(payee) = &req.restrict_to {
        let ok = ledger::get_account(conn, payee.as_str())?
            .is_some_and(|a| a.kind == "wallet" && a.currency == req.amount.currency);
        if !ok || payee == payer {
            return Err(ApiError::InvalidRequest(format!(
                "{payee} is not another wallet in {} that could redeem it",
                req.amount.currency
            )));
        }
    }
    let live: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM vouchers WHERE payer = ?1 AND state = 'unused' AND expires_at_ms > ?2",
        )?
        .query_row(params![payer.as_str(), now], |r| r.get(0))?;
    if live >= MAX_LIVE_VOUCHERS {
        return Err(ApiError::LimitExceeded(format!(
            "you have {MAX_LIVE_VOUCHERS} unused vouchers, the most allowed: void one first"
        )));
    }
    let hold = ledger::hold(conn, payer.as_str(), req.amount, "voucher", now)?;
    let id = VoucherId::random();
    conn.prepare_cached(
        "INSERT INTO vouchers (id, payer, currency, face_value, state, hold_id, restricted_to,
                               created_at_ms, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, 'unused', ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        id.as_str(),
        payer.as_str(),
        req.amount.currency.as_str(),
        req.amount.minor as i64,
        hold,
        req.restrict_to.as_ref().map(AccountId::as_str),
        now,
        now + validity_ms
    ])?;
    if let Proof::PinChecked = proof
        && !pin_verified
    {
        save_settings(conn, payer, settings, true)?;
    }
    let row = load_voucher(conn, &id)?.ok_or_else(|| ApiError::internal("voucher vanished"))?;
    Ok(row.to_voucher(server, now))
}

/// `GET /v1/vouchers/{id}`: anyone with the link sees what it is worth and whose it is.
#[utoipa::path(
    get,
    path = "/v1/vouchers/{id}",
    operation_id = "vouchers_show",
    tag = "vouchers",
    summary = "What a voucher is worth and whose it is",
    params(
        ("id" = String, Path, description = "The voucher id"),
    ),
    responses(
        (status = 200, description = "OK", body = Voucher),
        (status = 404, description = "`unknown_voucher`", body = ErrorBody),
    ),
)]
async fn show(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Voucher>> {
    let id = parse_voucher_id(&id)?;
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    let row = s
        .store
        .read(move |conn| load_voucher(conn, &id)?.ok_or(ApiError::UnknownVoucher))
        .await?;
    Ok(Json(row.to_voucher(&server, now)))
}

/// What a redemption job decided.
pub(crate) enum Redeemed {
    Done(Box<Redemption>),
    /// The money could not move: the voucher is now `failed` (committed), and this says why.
    Failed(String),
}

impl Redeemed {
    /// What the caller is told: the redemption, or `voucher_failed` with the reason.
    pub(crate) fn into_result(self) -> ApiResult<Redemption> {
        match self {
            Self::Done(r) => Ok(*r),
            Self::Failed(why) => Err(ApiError::VoucherFailed(why)),
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/vouchers/{id}/redeem",
    operation_id = "vouchers_redeem",
    tag = "vouchers",
    summary = "Redeem a voucher into an account (at most once)",
    params(
        ("id" = String, Path, description = "The voucher id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional client key: a retry gets the same answer"),
    ),
    request_body = RedeemVoucher,
    responses(
        (status = 200, description = "OK", body = Redemption),
        (status = 401, description = "`pin_required`", body = ErrorBody),
        (status = 403, description = "`not_allowed`", body = ErrorBody),
        (status = 404, description = "`unknown_voucher`, `unknown_account`", body = ErrorBody),
        (status = 409, description = "`voucher_redeemed`, `voucher_failed`", body = ErrorBody),
        (status = 410, description = "`voucher_voided`, `voucher_expired`", body = ErrorBody),
        (status = 422, description = "`currency_mismatch`, `limit_exceeded`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn redeem(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RedeemVoucher>,
) -> ApiResult<Json<Redemption>> {
    let id = parse_voucher_id(&id)?;
    let key = idempotency_key(&headers)?;
    let now = s.clock.now_ms();
    let proof = Proof::of(&s, &req.account, &req.auth, ip, now).await?;
    let server = s.public_url.clone();
    let outcome = s
        .store
        .write(move |conn, events| {
            proof.check(conn, &req.account, now)?;
            redeem_in_tx(
                conn,
                events,
                &server,
                &id,
                &req.account,
                req.amount,
                &key,
                now,
            )
        })
        .await?;
    let r = outcome.into_result()?;
    tracing::info!(
        voucher = r.voucher.id.log_prefix(), payee = ?r.voucher.payee,
        amount = %r.amount, released = %r.released, "voucher redeemed"
    );
    Ok(Json(r))
}

/// Redeems `amount` (default all) of voucher `id` into `payee`'s wallet; see the module
/// comment for the invariants.
#[allow(
    clippy::too_many_arguments,
    reason = "each is one checked input of the redemption"
)]
pub(crate) fn redeem_in_tx(
    conn: &Connection,
    events: &mut Vec<Event>,
    server: &ServerUrl,
    id: &VoucherId,
    payee: &AccountId,
    amount: Option<Money>,
    key: &IdempotencyKey,
    now: i64,
) -> ApiResult<Redeemed> {
    let row = load_voucher(conn, id)?.ok_or(ApiError::UnknownVoucher)?;
    // A replay of this very redemption answers as the first time did.
    if row.state == VoucherState::Redeemed
        && row.redeem_key.as_deref() == Some(key.as_str())
        && row.payee.as_ref() == Some(payee)
    {
        return Ok(Redeemed::Done(Box::new(redemption_of(&row, server, now))));
    }
    if row.effective_state(now) != VoucherState::Unused {
        return Err(row.closed_error(now));
    }
    if &row.payer == payee {
        return Err(ApiError::NotAllowed(
            "this is your own voucher: void it to take the money back".into(),
        ));
    }
    if row.restricted_to.as_ref().is_some_and(|r| r != payee) {
        return Err(ApiError::NotAllowed(
            "this voucher is meant for another account".into(),
        ));
    }
    let face = row.face_value;
    let take = amount.unwrap_or(face);
    if take.currency != face.currency {
        return Err(ApiError::CurrencyMismatch(format!(
            "the voucher is in {}, not {}",
            face.currency, take.currency
        )));
    }
    if take.minor == 0 {
        return Err(ApiError::InvalidRequest(
            "the amount must be positive".into(),
        ));
    }
    if take.minor > face.minor {
        return Err(ApiError::InvalidRequest(format!(
            "the voucher is worth {face}: {take} is more"
        )));
    }
    let wallet = ledger::get_account(conn, payee.as_str())?
        .filter(|a| a.kind == "wallet")
        .ok_or(ApiError::UnknownAccount)?;
    if wallet.currency != face.currency {
        return Err(ApiError::CurrencyMismatch(format!(
            "your wallet holds {}, the voucher is in {}",
            wallet.currency, face.currency
        )));
    }

    // Claim it first: of racing redemptions, voids and sweeps (on any node) exactly one
    // changes the row; the others wait for its commit and then change nothing.
    let claimed = conn
        .prepare_cached(
            "UPDATE vouchers SET state = 'redeemed', used = ?2, payee = ?3, redeem_key = ?4,
                                 closed_at_ms = ?5
             WHERE id = ?1 AND state = 'unused'",
        )?
        .execute(params![
            id.as_str(),
            take.minor as i64,
            payee.as_str(),
            key.as_str(),
            now
        ])?;
    if claimed != 1 {
        let now_row = load_voucher(conn, id)?.ok_or(ApiError::UnknownVoucher)?;
        return Err(now_row.closed_error(now));
    }
    ledger::release_hold(conn, row.hold_id, false)?;
    let moved = ledger::transfer(
        conn,
        row.payer.as_str(),
        payee.as_str(),
        take,
        "voucher",
        Some(id.as_str()),
        now,
    );
    let event = match moved {
        Ok(transfer) => {
            conn.prepare_cached("UPDATE vouchers SET transfer_id = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), transfer])?;
            conn.prepare_cached("UPDATE holds SET state = 'captured' WHERE id = ?1")?
                .execute([row.hold_id])?;
            None
        }
        Err(e @ (ApiError::Conflict(_) | ApiError::Internal(_))) => return Err(e),
        Err(e) => Some(e.to_string()),
    };
    let after = load_voucher(conn, id)?.ok_or_else(|| ApiError::internal("voucher vanished"))?;
    if let Some(why) = event {
        // The money cannot move (the payee's wallet would pass its limit, say): the
        // voucher fails and its whole value stays with the payer (SPEC V3).
        conn.prepare_cached("UPDATE vouchers SET state = 'failed', used = 0 WHERE id = ?1")?
            .execute([id.as_str()])?;
        let failed =
            load_voucher(conn, id)?.ok_or_else(|| ApiError::internal("voucher vanished"))?;
        events.push(Event::Account(
            failed.payer.clone(),
            AccountEvent::VoucherFailed {
                voucher: failed.to_voucher(server, now),
            },
        ));
        return Ok(Redeemed::Failed(why));
    }
    let redemption = redemption_of(&after, server, now);
    events.push(Event::Account(
        after.payer.clone(),
        AccountEvent::VoucherRedeemed {
            voucher: redemption.voucher.clone(),
        },
    ));
    Ok(Redeemed::Done(Box::new(redemption)))
}

fn redemption_of(row: &VoucherRow, server: &ServerUrl, now: i64) -> Redemption {
    let voucher = row.to_voucher(server, now);
    let used = row.used.max(0) as u64;
    Redemption {
        amount: Money::new(used, row.face_value.currency),
        released: Money::new(row.face_value.minor - used, row.face_value.currency),
        voucher,
    }
}

#[utoipa::path(
    post,
    path = "/v1/vouchers/{id}/void",
    operation_id = "vouchers_void",
    tag = "vouchers",
    summary = "Void an unredeemed voucher: the hold goes back to the payer",
    params(
        ("id" = String, Path, description = "The voucher id"),
    ),
    request_body = VoidVoucher,
    responses(
        (status = 200, description = "OK", body = Voucher),
        (status = 401, description = "`wrong_pin`, `unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_voucher`", body = ErrorBody),
        (status = 409, description = "`voucher_redeemed`", body = ErrorBody),
        (status = 410, description = "`voucher_expired`", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
    ),
)]
async fn void(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<VoidVoucher>,
) -> ApiResult<Json<Voucher>> {
    let id = parse_voucher_id(&id)?;
    let now = s.clock.now_ms();
    let proof = Proof::of(&s, &req.account, &req.auth, ip, now).await?;
    let server = s.public_url.clone();
    let voucher = s
        .store
        .write(move |conn, _| {
            proof.check(conn, &req.account, now)?;
            let row = load_voucher(conn, &id)?.ok_or(ApiError::UnknownVoucher)?;
            if row.payer != req.account {
                // Not the payer's: as if it did not exist, so ids cannot be probed.
                return Err(ApiError::UnknownVoucher);
            }
            if row.effective_state(now) != VoucherState::Unused {
                return Err(row.closed_error(now));
            }
            let voided = close(conn, &row, VoucherState::Voided, now)?;
            let row = load_voucher(conn, &id)?.ok_or(ApiError::UnknownVoucher)?;
            if !voided {
                // Redeemed through another writer (or node) since it was loaded.
                return Err(row.closed_error(now));
            }
            Ok(row.to_voucher(&server, now))
        })
        .await?;
    tracing::info!(voucher = voucher.id.log_prefix(), "voucher voided");
    Ok(Json(voucher))
}

/// Moves an unused voucher to `state` (voided, expired or failed) and releases its hold;
/// `false` if it was no longer unused (another node or request got there first).
fn close(conn: &Connection, row: &VoucherRow, state: VoucherState, now: i64) -> ApiResult<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE vouchers SET state = ?2, closed_at_ms = ?3 WHERE id = ?1 AND state = 'unused'",
        )?
        .execute(params![row.id.as_str(), state.as_str(), now])?;
    if changed == 1 {
        ledger::release_hold(conn, row.hold_id, false)?;
    }
    Ok(changed == 1)
}

/// Expires due vouchers, releasing each hold once and telling each payer once.
pub async fn sweep_expired(s: &AppState) -> ApiResult<usize> {
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    s.store
        .write(move |conn, events| {
            let due = rows(
                conn,
                &format!(
                    "SELECT {COLUMNS} {FROM}
                     WHERE v.state = 'unused' AND v.expires_at_ms <= ?1 ORDER BY v.id LIMIT ?2"
                ),
                params![now, SWEEP_BATCH],
            )?;
            let mut expired = 0;
            for mut row in due {
                if close(conn, &row, VoucherState::Expired, now)? {
                    expired += 1;
                    row.state = VoucherState::Expired;
                    row.closed_at_ms = Some(now);
                    events.push(Event::Account(
                        row.payer.clone(),
                        AccountEvent::VoucherExpired {
                            voucher: row.to_voucher(&server, now),
                        },
                    ));
                }
            }
            Ok(expired)
        })
        .await
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/vouchers",
    operation_id = "vouchers_list",
    tag = "vouchers",
    summary = "The account's vouchers, newest first, filtered",
    params(
        ("id" = String, Path, description = "The account id"),
        VoucherFilter,
    ),
    responses(
        (status = 200, description = "OK", body = Page<Voucher>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn list(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<VoucherFilter>,
    headers: HeaderMap,
) -> ApiResult<Json<Page<Voucher>>> {
    let id = parse_account(&id)?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .parse()?;
    sessions::authorize(&s, &headers, &id).await?;
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    let whose = match q.kind.unwrap_or_default() {
        VoucherKind::Issued => "v.payer",
        VoucherKind::Redeemed => "v.payee",
    };
    let list = s
        .store
        .read(move |conn| {
            let (ms, after) = page.key();
            let from = q.from_ms.unwrap_or(i64::MIN);
            let to = q.to_ms.unwrap_or(i64::MAX);
            let found = rows(
                conn,
                &format!(
                    "SELECT {COLUMNS} {FROM}
                     WHERE {whose} = ?1 AND v.created_at_ms >= ?2 AND v.created_at_ms < ?3
                       AND (v.created_at_ms < ?4 OR (v.created_at_ms = ?4 AND v.id < ?5))
                     ORDER BY v.created_at_ms DESC, v.id DESC LIMIT ?6"
                ),
                params![id.as_str(), from, to, ms, after, page.fetch()],
            )?;
            // The state filter is on the effective state (an unused voucher past its
            // expiry is `expired`), so it is applied here, page by page.
            let mut items: Vec<Voucher> =
                found.iter().map(|r| r.to_voucher(&server, now)).collect();
            let next_cursor = page.finish(&mut items, |v: &Voucher| {
                (v.created_at_ms, v.id.as_str().to_owned())
            });
            if let Some(state) = q.state {
                items.retain(|v| v.state == state);
            }
            Ok(Page { items, next_cursor })
        })
        .await?;
    Ok(Json(list))
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/voucher-settings",
    operation_id = "vouchers_get_settings",
    tag = "vouchers",
    summary = "The account's voucher limits and rules",
    params(
        ("id" = String, Path, description = "The account id"),
    ),
    responses(
        (status = 200, description = "OK", body = VoucherSettings),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn get_settings(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<VoucherSettings>> {
    let id = parse_account(&id)?;
    sessions::authorize(&s, &headers, &id).await?;
    let (settings, _) = s.store.read(move |conn| settings(conn, &id)).await?;
    Ok(Json(settings))
}

#[utoipa::path(
    put,
    path = "/v1/accounts/{id}/voucher-settings",
    operation_id = "vouchers_put_settings",
    tag = "vouchers",
    summary = "Change the account's voucher limits and rules",
    params(
        ("id" = String, Path, description = "The account id"),
    ),
    request_body = VoucherSettings,
    responses(
        (status = 200, description = "OK", body = VoucherSettings),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn put_settings(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(new): ApiJson<VoucherSettings>,
) -> ApiResult<Json<VoucherSettings>> {
    let id = parse_account(&id)?;
    let hash = sessions::hash_token(&sessions::bearer(&headers)?);
    let now = s.clock.now_ms();
    let saved = s
        .store
        .write(move |conn, _| {
            sessions::check(conn, &hash, &id, now)?;
            let (_, verified) = settings(conn, &id)?;
            save_settings(conn, &id, new, verified)?;
            Ok(settings(conn, &id)?.0)
        })
        .await?;
    Ok(Json(saved))
}
