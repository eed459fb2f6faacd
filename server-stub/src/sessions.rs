//! Sessions: account + PIN → a short-lived bearer token, so companions (and the load
//! generator) do not pay the argon2 cost on every payment. Only token hashes are stored.

use crate::db::{Connection, OptionalExtension, params};
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use protocol::ErrorBody;
use protocol::{AccountId, LoginRequest, PayerAuth, Session, Token};
use sha2::{Digest, Sha256};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::config::SESSION_TTL_S;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ClientIp};
use crate::{AppState, ledger, pin};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

/// SHA-256 of a token, hex. Tokens carry 256 random bits, so a fast hash is enough:
/// a leaked database does not reveal usable tokens.
pub fn hash_token(t: &Token) -> String {
    protocol::hex(&Sha256::digest(t.expose().as_bytes()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of a request, if well-formed.
pub fn bearer(headers: &HeaderMap) -> ApiResult<Token> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| Token::parse(t.trim()).ok())
        .ok_or(ApiError::Unauthorized("a session token is required"))
}

/// Checks that the session with token hash `hash` is live and belongs to `account`.
pub fn check(conn: &Connection, hash: &str, account: &AccountId, now_ms: i64) -> ApiResult<()> {
    let found: Option<(String, i64)> = conn
        .prepare_cached("SELECT account, expires_at_ms FROM sessions WHERE token_hash = ?1")?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    verdict(
        found.as_ref().map(|(a, e)| (a.as_str(), *e)),
        account,
        now_ms,
    )
}

/// Whether a session found as `(account, expires_at_ms)` lets `account` in at `now_ms`.
pub fn verdict(found: Option<(&str, i64)>, account: &AccountId, now_ms: i64) -> ApiResult<()> {
    match found {
        Some((acc, exp)) if acc == account.as_str() && exp > now_ms => Ok(()),
        Some((acc, _)) if acc == account.as_str() => Err(ApiError::Unauthorized(
            "the session has expired; log in again",
        )),
        _ => Err(ApiError::Unauthorized(
            "the session is not valid for this account",
        )),
    }
}

/// How the caller of a request with [`PayerAuth`] proved who they are: a PIN checked (with
/// the lockout rules) before the write, or a session checked inside it.
#[derive(Debug)]
pub enum Proof {
    PinChecked,
    Session(String),
}

impl Proof {
    /// Checks a PIN now (it must not wait for the writer); a session is checked in the
    /// write, with [`Proof::check`].
    pub async fn of(
        s: &AppState,
        account: &AccountId,
        auth: &PayerAuth,
        ip: std::net::IpAddr,
        now_ms: i64,
    ) -> ApiResult<Self> {
        Ok(match auth {
            PayerAuth::Pin(p) => {
                crate::pin::check(s, account, p, ip, now_ms).await?;
                Self::PinChecked
            }
            PayerAuth::Session(t) => Self::Session(hash_token(t)),
        })
    }

    /// The token hash of a session proof, checked in the write.
    pub fn session_hash(&self) -> Option<&str> {
        match self {
            Self::PinChecked => None,
            Self::Session(hash) => Some(hash),
        }
    }

    /// In the write: a session must still be live and belong to `account`.
    pub fn check(&self, conn: &Connection, account: &AccountId, now_ms: i64) -> ApiResult<()> {
        match self {
            Self::PinChecked => Ok(()),
            Self::Session(hash) => check(conn, hash, account, now_ms),
        }
    }
}

/// Stores a session (by its token's hash) for `account` until `expires_at_ms`.
pub fn insert_session(
    conn: &Connection,
    token_hash: &str,
    account: &AccountId,
    expires_at_ms: i64,
) -> ApiResult<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (token_hash, account, expires_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![token_hash, account.as_str(), expires_at_ms])?;
    Ok(())
}

/// Checks a bearer session for `account` on a reader connection.
pub async fn authorize(s: &AppState, headers: &HeaderMap, account: &AccountId) -> ApiResult<()> {
    let hash = hash_token(&bearer(headers)?);
    let now = s.clock.now_ms();
    let account = account.clone();
    s.store
        .read(move |conn| check(conn, &hash, &account, now))
        .await
}

#[utoipa::path(
    post,
    path = "/v1/sessions",
    operation_id = "sessions_login",
    tag = "accounts",
    summary = "Log in with account and PIN: a short-lived session token",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "OK", body = Session),
        (status = 401, description = "`wrong_pin`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn login(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<Session>> {
    let now = s.clock.now_ms();
    pin::check(&s, &req.account, &req.pin, ip, now).await?;
    let token = Token::random();
    let hash = hash_token(&token);
    let expires = now + SESSION_TTL_S as i64 * 1000;
    let account = req.account.clone();
    s.store
        .write(move |conn, _| {
            ledger::get_account(conn, account.as_str())?.ok_or(ApiError::UnknownAccount)?;
            conn.prepare_cached("DELETE FROM sessions WHERE expires_at_ms <= ?1")?
                .execute([now])?;
            insert_session(conn, &hash, &account, expires)
        })
        .await?;
    Ok(Json(Session {
        account: req.account,
        token,
        expires_at_ms: expires,
    }))
}
